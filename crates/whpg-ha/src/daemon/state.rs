//! What the daemon must remember across restarts, beside the journal in `[journal] path`:
//! maintenance mode, and that the standby is not promotable. An operator who turned maintenance
//! on before patching a host must not find it silently off because a daemon was restarted (or
//! the host rebooted) in between; a standby that fell behind while the primary lived must not
//! become promotable because its daemon restarted and forgot.
//!
//! The file is replaced atomically (a temporary file, fsync, rename, fsync of the directory), so
//! a crash leaves the old or the new state, never a torn one. It is never followed through a
//! symbolic link. An unreadable or unparsable file is an error at start-up, never silently "off".

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "state.json";

/// The remembered state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Maintenance mode, and since when (Unix ms) it has been on.
    #[serde(default)]
    pub maintenance: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_since_unix_ms: Option<u64>,
    /// The standby misses WAL the primary had (set while the primary was seen alive), until it
    /// is seen streaming and caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_promotable: Option<crate::node::NotPromotableRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}; fix the file, or remove it (it records maintenance mode and whether the standby is promotable: without it the standby counts as never observed until it is seen in sync)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a valid state file ({source}); fix it, or remove it (it records maintenance mode and whether the standby is promotable: without it the standby counts as never observed until it is seen in sync)"
    )]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The state file of the journal directory `dir`.
pub struct StateStore {
    path: PathBuf,
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: &Path) -> StateStore {
        StateStore {
            path: dir.join(STATE_FILE),
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The remembered state; the default when there is none yet.
    pub fn load(&self) -> Result<PersistedState, StateError> {
        let read = || -> std::io::Result<Option<String>> {
            match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)
            {
                Ok(mut file) => {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut file, &mut text)?;
                    Ok(Some(text))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        match read() {
            Ok(None) => Ok(PersistedState::default()),
            Ok(Some(text)) => serde_json::from_str(&text).map_err(|source| StateError::Parse {
                path: self.path.clone(),
                source,
            }),
            Err(source) => Err(StateError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replace the state atomically and durably.
    pub fn save(&self, state: &PersistedState) -> Result<(), StateError> {
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let _ = fs::remove_file(&tmp);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(crate::journal::FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            let text = serde_json::to_string(state).expect("the state serializes");
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_survives_a_reload_and_a_missing_file_is_off() {
        let dir = std::env::temp_dir().join(format!("whpg-ha-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let store = StateStore::new(&dir);
        let _ = fs::remove_file(store.path());
        assert_eq!(store.load().unwrap(), PersistedState::default());
        let on = PersistedState {
            maintenance: true,
            maintenance_since_unix_ms: Some(1_700_000_000_000),
            not_promotable: Some(crate::node::NotPromotableRecord {
                since_unix_ms: 1_700_000_000_500,
                reason: "the primary lists no streaming WAL sender for this standby".into(),
                primary_lsn: Some(0x3000060),
                had_lsn: None,
            }),
        };
        store.save(&on).unwrap();
        assert_eq!(StateStore::new(&dir).load().unwrap(), on);
        fs::write(store.path(), "{not json").unwrap();
        let error = store.load().unwrap_err().to_string();
        assert!(error.contains("not a valid state file"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
