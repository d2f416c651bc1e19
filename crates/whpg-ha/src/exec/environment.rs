//! The complete, explicit environment of a command: nothing is inherited from the daemon.
//!
//! Every command gets `PATH`, `LANG=C` and, at run time, `HOME`, `USER` and `LOGNAME` of the OS user
//! it runs as. On top of that, the flavor's variables:
//!
//! **PostgreSQL**: `PGPORT` and `PGDATA`; `PATH` starts with `database.bin_dir` when set.
//!
//! **WarehousePG**: what sourcing `greenplum_path.sh` would give, derived without a shell. The
//! script is generated at install time by `gpMgmt/bin/generate-greenplum-path.sh` (Greenplum 7, which
//! WarehousePG inherits); the generated file
//! - sets `GPHOME` to the directory holding the script (if that directory is a symlink, to its
//!   parent joined with the link target's last component, as the script's `readlink` does),
//! - when the build vendors Python (`$GPHOME/ext/python`), sets `PYTHONHOME` to it and prepends
//!   `$PYTHONHOME/bin` to `PATH` and `$PYTHONHOME/lib` to `LD_LIBRARY_PATH`,
//! - sets `PYTHONPATH=$GPHOME/lib/python` (gppylib: without it the gp tools fail with "Cannot import
//!   modules. Please check that you have sourced greenplum_path.sh"),
//! - prepends `$GPHOME/bin` to `PATH` and `$GPHOME/lib` to `LD_LIBRARY_PATH` (so `$GPHOME/bin` comes
//!   first, then `$PYTHONHOME/bin`),
//! - sets `OPENSSL_CONF=$GPHOME/etc/openssl.cnf` when that file exists.
//!
//! We set the same, checking for `ext/python` and `etc/openssl.cnf` on disk as the script's
//! generation and its `-e` test do. `database.bin_dir` is added after `$GPHOME/bin` when it differs.
//! Then what gpadmin's profile normally adds and the tools read: `PGPORT` (`gpactivatestandby`
//! exits 2 without it), `COORDINATOR_DATA_DIRECTORY` (its fallback for `-d`, and what `gpstart`,
//! `gpstop` and `gpstate` use), and `MASTER_DATA_DIRECTORY`, the same for tools before the renaming.
//! No `PGHOST`: the tools default to the local server, as they do for gpadmin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ExecError;
use crate::config::{Database, Flavor};

/// The `PATH` tail every command gets after the flavor's directories.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables a command receives, in full.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// An environment with nothing at all.
    pub fn empty() -> Self {
        Environment::default()
    }

    /// `PATH` = [`SYSTEM_PATH`], `LANG=C`: what every command gets.
    pub fn base() -> Self {
        let mut env = Environment::empty();
        env.set("PATH", SYSTEM_PATH);
        env.set("LANG", "C");
        env
    }

    /// [`Environment::base`] plus the variables of `db`'s flavor (see the module documentation).
    pub fn for_database(db: &Database) -> Result<Self, ExecError> {
        let mut env = Environment::base();
        let mut path: Vec<PathBuf> = Vec::new();
        match db.flavor {
            Flavor::Postgres => {
                path.extend(db.bin_dir.iter().cloned());
                env.set("PGDATA", db.data_directory.display().to_string());
            }
            Flavor::WarehousePg => {
                let script =
                    db.greenplum_path
                        .as_deref()
                        .ok_or_else(|| ExecError::Environment {
                            key: "database.greenplum_path".into(),
                            message: "flavor = \"warehousepg\" needs greenplum_path.sh; set \
                                  database.greenplum_path to the installation's script"
                                .into(),
                        })?;
                let gphome = gphome_of(script).ok_or_else(|| ExecError::Environment {
                    key: "database.greenplum_path".into(),
                    message: format!(
                        "`{}` has no parent directory; give the full path of greenplum_path.sh",
                        script.display()
                    ),
                })?;
                let python_home = gphome.join("ext/python");
                let vendored_python = python_home.is_dir();
                let mut libs = vec![gphome.join("lib")];
                path.push(gphome.join("bin"));
                if vendored_python {
                    path.push(python_home.join("bin"));
                    libs.push(python_home.join("lib"));
                    env.set("PYTHONHOME", python_home.display().to_string());
                }
                if let Some(bin_dir) = &db.bin_dir {
                    if !path.contains(bin_dir) {
                        path.push(bin_dir.clone());
                    }
                }
                let openssl_conf = gphome.join("etc/openssl.cnf");
                if openssl_conf.exists() {
                    env.set("OPENSSL_CONF", openssl_conf.display().to_string());
                }
                env.set("LD_LIBRARY_PATH", join_paths(&libs));
                env.set(
                    "PYTHONPATH",
                    gphome.join("lib/python").display().to_string(),
                );
                env.set("GPHOME", gphome.display().to_string());
                let data_dir = db.data_directory.display().to_string();
                env.set("COORDINATOR_DATA_DIRECTORY", data_dir.clone());
                env.set("MASTER_DATA_DIRECTORY", data_dir);
            }
        }
        env.set("PGPORT", db.port.to_string());
        if !path.is_empty() {
            env.set("PATH", format!("{}:{SYSTEM_PATH}", join_paths(&path)));
        }
        Ok(env)
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.vars.remove(name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// All variables, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The directories of `PATH`, in order (empty entries skipped).
    pub fn path_dirs(&self) -> Vec<PathBuf> {
        self.get("PATH")
            .unwrap_or("")
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect()
    }
}

/// `GPHOME` as `greenplum_path.sh` computes it: the script's directory, with a symlinked last
/// component replaced by the link target's last component.
pub fn gphome_of(greenplum_path: &Path) -> Option<PathBuf> {
    let dir = greenplum_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())?;
    let is_link = std::fs::symlink_metadata(dir)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    if is_link {
        if let (Ok(target), Some(parent)) = (std::fs::read_link(dir), dir.parent()) {
            if let Some(name) = target.file_name() {
                return Some(parent.join(name));
            }
        }
    }
    Some(dir.to_path_buf())
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database section parsed from a configuration file, so the tests do not depend on every
    /// field of [`Database`].
    fn db(flavor: &str, greenplum_path: Option<&str>, bin_dir: Option<&str>) -> Database {
        let mut config = crate::config::testing::TestConfig::warehousepg()
            .database("flavor", flavor)
            .database("port", 5433)
            .without("database", "greenplum_path");
        if let Some(p) = greenplum_path {
            config = config.database("greenplum_path", p);
        }
        if let Some(b) = bin_dir {
            config = config.database("bin_dir", b);
        }
        config.parse("cdw").database
    }

    #[test]
    fn postgres_gets_port_data_and_bin_dir_first() {
        let env =
            Environment::for_database(&db("postgres", None, Some("/usr/lib/postgresql/15/bin")))
                .unwrap();
        assert_eq!(env.get("PGPORT"), Some("5433"));
        assert_eq!(env.get("PGDATA"), Some("/data/coordinator/gpseg-1"));
        assert_eq!(
            env.get("PATH"),
            Some(format!("/usr/lib/postgresql/15/bin:{SYSTEM_PATH}").as_str())
        );
        assert_eq!(env.get("LANG"), Some("C"));
        assert_eq!(env.get("GPHOME"), None);
    }

    #[test]
    fn warehousepg_gets_what_greenplum_path_sets() {
        let env = Environment::for_database(&db(
            "warehousepg",
            Some("/nonexistent/greenplum-db/greenplum_path.sh"),
            Some("/nonexistent/greenplum-db/bin"),
        ))
        .unwrap();
        assert_eq!(env.get("GPHOME"), Some("/nonexistent/greenplum-db"));
        assert_eq!(
            env.get("PATH"),
            Some(format!("/nonexistent/greenplum-db/bin:{SYSTEM_PATH}").as_str())
        );
        assert_eq!(
            env.get("LD_LIBRARY_PATH"),
            Some("/nonexistent/greenplum-db/lib")
        );
        assert_eq!(
            env.get("PYTHONPATH"),
            Some("/nonexistent/greenplum-db/lib/python")
        );
        assert_eq!(env.get("PYTHONHOME"), None);
        assert_eq!(env.get("OPENSSL_CONF"), None);
        assert_eq!(env.get("PGPORT"), Some("5433"));
        assert_eq!(
            env.get("COORDINATOR_DATA_DIRECTORY"),
            Some("/data/coordinator/gpseg-1")
        );
        assert_eq!(
            env.get("MASTER_DATA_DIRECTORY"),
            Some("/data/coordinator/gpseg-1")
        );
    }

    #[test]
    fn warehousepg_without_script_is_an_error_naming_the_key() {
        let mut database = db("warehousepg", None, None);
        database.greenplum_path = None;
        let err = Environment::for_database(&database).unwrap_err();
        assert!(err.to_string().contains("database.greenplum_path"), "{err}");
    }
}
