//! Configuration: one TOML file, identical on both nodes, parsed, validated and rendered.

use std::path::Path;
use std::process::ExitCode;

/// `whpg-ha check-config FILE`: print the effective configuration or every error; exit 0 / 1.
pub fn check_config_command(_file: &Path, _node: Option<&str>) -> ExitCode {
    eprintln!("check-config: not implemented yet");
    ExitCode::from(2)
}
