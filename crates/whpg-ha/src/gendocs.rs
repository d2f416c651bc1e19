//! `whpg-ha generate-docs --out DIR` (hidden): the manual pages and shell completions, generated
//! from the same clap definitions the binary parses, so they cannot drift from the real options.
//! The packages ship what this writes.
//!
//! Written into `DIR` (created if missing):
//! - `whpg-ha.1` and one page per subcommand (`whpg-ha-run.1`, `whpg-ha-status.1`, …);
//! - `whpg-ha.bash`, `_whpg-ha` (zsh) and `whpg-ha.fish`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The name the completions complete: the installed binary's.
const BIN_NAME: &str = "whpg-ha";

/// Writes the manual pages and completions into `out`; returns the files written, sorted.
pub fn generate_docs(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    clap_mangen::generate_to(Cli::command(), out)?;
    let mut written = Vec::new();
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "1") {
            written.push(path);
        }
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = visible_command();
        written.push(clap_complete::generate_to(shell, &mut cmd, BIN_NAME, out)?);
    }
    written.sort();
    Ok(written)
}

/// [`Cli`] without its hidden subcommands (the shells' generators would offer them).
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut cmd = clap::Command::new(BIN_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(visible);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// The subcommand: prints each file written, or what failed.
pub fn generate_docs_command(out: &Path) -> ExitCode {
    match generate_docs(out) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "generate-docs: cannot write into {}: {e}; give a writable directory with --out",
                out.display()
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_man_pages_and_completions_for_every_visible_subcommand() {
        let dir = std::env::temp_dir().join(format!("whpg-ha-gendocs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = generate_docs(&dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "whpg-ha.1",
            "whpg-ha-run.1",
            "whpg-ha-switchover.1",
            "whpg-ha.bash",
            "_whpg-ha",
            "whpg-ha.fish",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.contains("generate-docs")),
            "the hidden subcommand got a page: {names:?}"
        );
        let page = std::fs::read_to_string(dir.join("whpg-ha.1")).unwrap();
        assert!(page.contains(".TH whpg-ha 1"), "{page}");
        assert!(page.contains("switchover"), "{page}");
        for completion in ["whpg-ha.bash", "_whpg-ha", "whpg-ha.fish"] {
            let text = std::fs::read_to_string(dir.join(completion)).unwrap();
            assert!(text.contains("check-config"), "{completion}: {text}");
            assert!(text.contains("switchover"), "{completion}: {text}");
            assert!(
                !text.contains("generate-docs"),
                "{completion} offers the hidden subcommand"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
