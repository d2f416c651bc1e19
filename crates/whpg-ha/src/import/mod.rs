//! `whpg-ha import-keepalived`: turn an existing keepalived setup (one node's keepalived.conf or both
//! nodes', and the check / notify scripts they name) into one whpg-ha configuration.
//!
//! Layout: [`keepalived`] parses keepalived's grammar into statements with file:line (and expands
//! `include`), [`scripts`] reads shell scripts as text for the values whpg-ha needs, [`convert`] maps
//! both to the configuration and lists what it could not map. This module is the thin file-reading
//! layer and the command. The output is checked with the same loader as `check-config` before it is
//! written.

pub mod convert;
pub mod keepalived;
pub mod scripts;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use convert::{ConfInput, ImportError, Imported, Note, Options, ScriptLookup};

use crate::cli::ImportKeepalivedArgs;

/// Scripts larger than this are not read (a check or notify script is a few kilobytes).
const MAX_SCRIPT_BYTES: u64 = 1 << 20;

/// Where the scripts are looked up: `--scripts` directories (one for all files, or one per file),
/// else each configuration's own directory and then the path as written.
#[derive(Debug, Clone, Default)]
pub struct ScriptDirs {
    pub dirs: Vec<PathBuf>,
}

impl ScriptDirs {
    fn candidates(&self, written: &str, conf: &Path, conf_index: usize) -> Vec<PathBuf> {
        let base = Path::new(written)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(written));
        if !self.dirs.is_empty() {
            let dir = self
                .dirs
                .get(conf_index)
                .or(self.dirs.last())
                .cloned()
                .unwrap_or_default();
            return vec![dir.join(&base)];
        }
        let mut out = vec![conf.parent().unwrap_or(Path::new(".")).join(&base)];
        if Path::new(written).is_absolute() && !out.contains(&PathBuf::from(written)) {
            out.push(PathBuf::from(written));
        }
        out
    }
}

/// Reads the files, converts them and checks the result with the configuration loader. Errors are
/// complete messages (place, problem, fix).
pub fn import_files(
    files: &[PathBuf],
    script_dirs: &ScriptDirs,
    opts: &Options,
) -> Result<(Imported, crate::config::Config), Vec<String>> {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match keepalived::load(f) {
            Ok(loaded) => inputs.push(ConfInput {
                path: f.display().to_string(),
                loaded,
            }),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut read = |written: &str, conf: &str| -> ScriptLookup {
        let index = files
            .iter()
            .position(|f| f.display().to_string() == conf)
            .unwrap_or(0);
        let candidates = script_dirs.candidates(written, Path::new(conf), index);
        for c in &candidates {
            let Ok(meta) = std::fs::metadata(c) else {
                continue;
            };
            if !meta.is_file() || meta.len() > MAX_SCRIPT_BYTES {
                continue;
            }
            if let Ok(bytes) = std::fs::read(c) {
                return ScriptLookup::Found {
                    path: c.display().to_string(),
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                };
            }
        }
        ScriptLookup::Missing {
            tried: candidates.iter().map(|c| c.display().to_string()).collect(),
        }
    };
    let imported = convert::convert(&inputs, opts, &mut read)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let config = validate(&imported)?;
    Ok((imported, config))
}

/// The output must load with the same code `check-config` uses, for either node.
pub fn validate(imported: &Imported) -> Result<crate::config::Config, Vec<String>> {
    let no_host = || Err("the imported file is checked for a named node".to_string());
    let mut first = None;
    for name in &imported.node_names {
        match crate::config::parse_with_hostname(&imported.toml, Some(name), &no_host) {
            Ok(c) => {
                first.get_or_insert(c);
            }
            Err(errs) => {
                return Err(errs
                    .iter()
                    .map(|e| {
                        format!(
                        "the imported configuration does not pass check-config (node {name}): {e}"
                    )
                    })
                    .collect())
            }
        }
    }
    first.ok_or_else(|| vec!["no nodes were imported".to_string()])
}

/// `whpg-ha import-keepalived`: the configuration on stdout (or `--out FILE`), what was not imported
/// on stderr. Exit 0, or 1 with one line per problem.
pub fn import_keepalived_command(args: &ImportKeepalivedArgs) -> ExitCode {
    if let Some(out) = &args.out {
        if out.exists() && !args.force {
            eprintln!(
                "error: {} exists — fix: choose another --out file, or add --force to overwrite it",
                out.display()
            );
            return ExitCode::from(1);
        }
    }
    let opts = Options {
        node_names: args.node_names.clone(),
        node_addresses: args.node_addresses.clone(),
        instance: args.instance.clone(),
        data_directory: args.data_directory.clone(),
    };
    let dirs = ScriptDirs {
        dirs: args.scripts.clone(),
    };
    let (imported, config) = match import_files(&args.files, &dirs, &opts) {
        Ok(x) => x,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(1);
        }
    };
    // Nothing below prints a value of the configuration itself, so the password stays in the output.
    for a in &imported.assumptions {
        eprintln!("assumed: {a}");
    }
    if imported.not_imported.is_empty() {
        eprintln!("not imported: nothing");
    } else {
        eprintln!("not imported ({}):", imported.not_imported.len());
        for n in &imported.not_imported {
            eprintln!("  {n}");
        }
    }
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    match &args.out {
        None => {
            print!("{}", imported.toml);
            ExitCode::SUCCESS
        }
        Some(path) => match write_private(path, &imported.toml, args.force) {
            Ok(()) => {
                eprintln!(
                    "wrote {} (mode 0600: it holds the VRRP password); check it with: whpg-ha check-config {} --node {}",
                    path.display(),
                    path.display(),
                    imported.node_names.first().map(String::as_str).unwrap_or("NAME")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: cannot write {}: {e} — fix: check the directory and its permissions",
                    path.display()
                );
                ExitCode::from(1)
            }
        },
    }
}

/// Writes `text` to `path` readable by its owner only; refuses an existing file unless `force`.
fn write_private(path: &Path, text: &str, force: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = options.open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
