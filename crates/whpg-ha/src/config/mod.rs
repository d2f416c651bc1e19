//! Configuration: one TOML file, identical on both nodes, parsed, validated and rendered.
//!
//! The file lists both nodes; each daemon finds its own entry (`--node` > the `node` key > the host
//! name). Layout: `schema` (the file as written) → `validate` (all rules, all errors) → `model` (the
//! typed [`Config`]); `render` writes the effective configuration back out. `docs/configuration.md`
//! documents every key.

mod defaults;
mod duration;
mod error;
mod model;
mod render;
mod schema;
mod spans;
mod template;
mod validate;

use std::path::Path;
use std::process::ExitCode;

pub use defaults::CommandKind;
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrors};
pub use model::*;
pub use template::PLACEHOLDERS;

use spans::SpanIndex;

/// Reads, validates and resolves the configuration file at `path` for `node` (see [`parse`]).
pub fn load(path: &Path, node: Option<&str>) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError {
            line: None,
            key: String::new(),
            value: None,
            message: format!("cannot read {}: {e}", path.display()),
            fix: "check the path and its permissions, or pass the right file".into(),
        })
    })?;
    parse(&text, node)
}

/// Validates and resolves configuration `text`. This node is `node` if given (the `--node` flag), else
/// the file's top-level `node` key, else this host's name (full, then up to the first dot).
pub fn parse(text: &str, node: Option<&str>) -> Result<Config, ConfigErrors> {
    parse_with_hostname(text, node, &host_name)
}

/// [`parse`] with the host name supplied by the caller (for tests and tools).
pub fn parse_with_hostname(
    text: &str,
    node: Option<&str>,
    hostname: &dyn Fn() -> Result<String, String>,
) -> Result<Config, ConfigErrors> {
    let spans = SpanIndex::build(text);
    let raw: schema::RawConfig = toml::from_str(text).map_err(|e| structural_error(&e, &spans))?;
    validate::resolve(raw, &spans, node, hostname)
}

/// Turns a TOML syntax or shape error (unknown key, wrong type) into a [`ConfigError`] with its line.
fn structural_error(e: &toml::de::Error, spans: &SpanIndex) -> ConfigErrors {
    let span = e.span();
    let line = span.as_ref().map(|s| spans.line_of(s.start));
    let key = span
        .as_ref()
        .and_then(|s| spans.path_at(s))
        .unwrap_or_default()
        .to_string();
    let message = e
        .message()
        .trim()
        .replace("expected i64", "expected an integer");
    let fix = if message.starts_with("unknown field") {
        "remove the key or correct its spelling (the message lists the keys allowed here)"
    } else if message.starts_with("invalid type") {
        "write the value with the type documented in docs/configuration.md"
    } else if message.starts_with("duplicate key") {
        "keep one of the two definitions"
    } else {
        "correct the TOML syntax on that line"
    };
    // An unknown key named in the message is also the last segment of the path found by its span.
    ConfigErrors::single(ConfigError {
        line,
        key,
        value: None,
        message,
        fix: fix.into(),
    })
}

/// This host's name, from the kernel.
fn host_name() -> Result<String, String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| format!("cannot read /proc/sys/kernel/hostname: {e}"))?;
    let name = name.trim();
    if name.is_empty() {
        Err("the host name is empty".into())
    } else {
        Ok(name.to_string())
    }
}

/// `whpg-ha check-config FILE`: print the effective configuration or every error; exit 0 / 1.
///
/// Warnings go to stderr as `warning: FILE: ...` and do not change the exit status.
pub fn check_config_command(file: &Path, node: Option<&str>) -> ExitCode {
    match load(file, node) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {}: {warning}", file.display());
            }
            print!("{}", config.render_effective());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {}: {error}", file.display());
            }
            ExitCode::from(1)
        }
    }
}
