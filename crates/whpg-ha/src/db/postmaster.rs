//! The local postmaster as a process: reading `postmaster.pid` of a data directory, and
//! [`PostmasterWatch`], which learns of the postmaster's death within milliseconds through a
//! pidfd instead of waiting for the next probe to fail. A crash seen this way is a *certain*
//! failure (design: "Certain vs uncertain failures").
//!
//! Identity: a pid from a file may be stale and reused by an unrelated process. The watch opens a
//! pidfd first (which pins that exact process from then on), then checks that the process is the
//! postmaster of this data directory: its working directory is the data directory (the
//! postmaster changes into it at startup and never leaves; compared by device and inode, so
//! symlinks and spellings do not matter), and it is not a child of such a process (backends and
//! auxiliary processes share the working directory but have the postmaster, same executable, as
//! parent). Finally the file is read again and must still name the same pid. Reading another
//! user's `/proc/<pid>/cwd` needs root or the same OS user, which is how the daemon runs.
//!
//! This module watches; it never signals or stops the database.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

/// The file's name inside the data directory.
pub const PID_FILE: &str = "postmaster.pid";

/// The postmaster's own state as written on line 8 (PostgreSQL 10 and later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostmasterStatus {
    Starting,
    Stopping,
    /// Accepting connections (a primary, or a hot standby once consistent).
    Ready,
    /// A standby that does not accept connections (`hot_standby = off`).
    Standby,
    Other(String),
}

impl PostmasterStatus {
    fn parse(text: &str) -> PostmasterStatus {
        match text.trim() {
            "starting" => PostmasterStatus::Starting,
            "stopping" => PostmasterStatus::Stopping,
            "ready" => PostmasterStatus::Ready,
            "standby" => PostmasterStatus::Standby,
            other => PostmasterStatus::Other(other.to_string()),
        }
    }
}

/// The content of `postmaster.pid`. Lines after the second are written later during startup, so
/// they may be absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostmasterPid {
    /// Line 1.
    pub pid: u32,
    /// Line 1 was negative: a single-user backend holds the directory, not a postmaster.
    pub standalone: bool,
    /// Line 2.
    pub data_dir: PathBuf,
    /// Line 3: start time, seconds since the epoch.
    pub start_time: Option<i64>,
    /// Line 4.
    pub port: Option<u16>,
    /// Line 5: the first Unix socket directory (empty = none).
    pub socket_dir: Option<PathBuf>,
    /// Line 6: the first listen address (empty = none, `*` = all).
    pub listen_addr: Option<String>,
    /// Line 8.
    pub status: Option<PostmasterStatus>,
}

/// `postmaster.pid` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("no postmaster.pid at {path}: the server is not running (or stopped cleanly)")]
    Missing { path: PathBuf },
    #[error("unreadable postmaster.pid {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "partial postmaster.pid {path}: {complete_lines} complete line(s), need 2 \
         (the postmaster may be writing it)"
    )]
    Partial {
        path: PathBuf,
        complete_lines: usize,
    },
    #[error("invalid postmaster.pid {path}, line {line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Parse failures of the text, before a path is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidTextError {
    Partial { complete_lines: usize },
    Invalid { line: usize, reason: String },
}

impl PostmasterPid {
    /// Parses the file's text. Only lines ended by a newline count (the file is written in
    /// place, so a reader can catch it half-written).
    pub fn parse(text: &str) -> Result<PostmasterPid, PidTextError> {
        let complete = text.matches('\n').count();
        let lines: Vec<&str> = text.split('\n').take(complete).collect();
        if lines.len() < 2 {
            return Err(PidTextError::Partial {
                complete_lines: lines.len(),
            });
        }
        let invalid = |line: usize, reason: String| PidTextError::Invalid { line, reason };
        let raw_pid: i64 = lines[0]
            .trim()
            .parse()
            .map_err(|_| invalid(1, format!("{:?} is not a process id", lines[0])))?;
        let pid = u32::try_from(raw_pid.unsigned_abs())
            .ok()
            .filter(|&p| p >= 1 && p <= i32::MAX as u32)
            .ok_or_else(|| invalid(1, format!("{raw_pid} is not a valid process id")))?;
        if lines[1].is_empty() {
            return Err(invalid(2, "empty data directory".into()));
        }
        let optional = |n: usize| {
            lines
                .get(n - 1)
                .map(|l| l.trim_end())
                .filter(|l| !l.is_empty())
        };
        let start_time = optional(3)
            .map(|t| {
                t.parse::<i64>()
                    .map_err(|_| invalid(3, format!("{t:?} is not a start time")))
            })
            .transpose()?;
        let port = optional(4)
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| invalid(4, format!("{p:?} is not a port")))
            })
            .transpose()?;
        Ok(PostmasterPid {
            pid,
            standalone: raw_pid < 0,
            data_dir: PathBuf::from(lines[1]),
            start_time,
            port,
            socket_dir: optional(5).map(PathBuf::from),
            listen_addr: optional(6).map(str::to_string),
            status: optional(8).map(PostmasterStatus::parse),
        })
    }

    /// Reads and parses `<data_dir>/postmaster.pid`.
    pub fn read(data_dir: &Path) -> Result<PostmasterPid, PidFileError> {
        let path = data_dir.join(PID_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PidFileError::Missing { path })
            }
            Err(source) => return Err(PidFileError::Unreadable { path, source }),
        };
        let text = String::from_utf8_lossy(&bytes);
        PostmasterPid::parse(&text).map_err(|e| match e {
            PidTextError::Partial { complete_lines } => PidFileError::Partial {
                path,
                complete_lines,
            },
            PidTextError::Invalid { line, reason } => PidFileError::Invalid { path, line, reason },
        })
    }
}

/// The postmaster of a data directory could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("{data_dir} is held by a single-user backend (pid {pid}), not a postmaster")]
    Standalone { pid: u32, data_dir: PathBuf },
    #[error("postmaster pid {pid} from {data_dir}/postmaster.pid is not running (stale file)")]
    NotRunning { pid: u32, data_dir: PathBuf },
    #[error("pid {pid} is not the postmaster of {data_dir}: {reason}")]
    NotPostmaster {
        pid: u32,
        data_dir: PathBuf,
        reason: String,
    },
    #[error("cannot check that pid {pid} is the postmaster of {data_dir}: {source}")]
    Unverifiable {
        pid: u32,
        data_dir: PathBuf,
        source: io::Error,
    },
    #[error("pidfd_open({pid}): {source} (Linux 5.3 or later is needed)")]
    PidfdOpen { pid: u32, source: io::Error },
    #[error("registering the pidfd of {pid} with the runtime: {source}")]
    Register { pid: u32, source: io::Error },
}

/// A live handle on the postmaster of one data directory; [`PostmasterWatch::exited`] resolves
/// when that process is gone.
#[derive(Debug)]
pub struct PostmasterWatch {
    pid: u32,
    data_dir: PathBuf,
    pidfd: AsyncFd<OwnedFd>,
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Whether a pidfd polls readable now: its process has exited.
fn fd_readable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on an open descriptor, zero timeout.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0
}

/// Device and inode of a directory (following symlinks, including `/proc/<pid>/cwd`).
fn dir_identity(path: &Path) -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The parent pid from `/proc/<pid>/stat` (field 4, after the parenthesised command name).
fn parent_pid(pid: u32) -> io::Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))?;
    after_name
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
}

/// Whether `pid` is the postmaster of the directory identified by `data_dir_id` (see the module
/// documentation for the rule).
fn check_identity(pid: u32, data_dir: &Path, data_dir_id: (u64, u64)) -> Result<(), WatchError> {
    let unverifiable = |source| WatchError::Unverifiable {
        pid,
        data_dir: data_dir.to_path_buf(),
        source,
    };
    let not_postmaster = |reason: String| WatchError::NotPostmaster {
        pid,
        data_dir: data_dir.to_path_buf(),
        reason,
    };
    let cwd = dir_identity(Path::new(&format!("/proc/{pid}/cwd"))).map_err(unverifiable)?;
    if cwd != data_dir_id {
        return Err(not_postmaster(
            "its working directory is not the data directory".into(),
        ));
    }
    let ppid = parent_pid(pid).map_err(unverifiable)?;
    if ppid > 1 {
        let parent_cwd = dir_identity(Path::new(&format!("/proc/{ppid}/cwd")));
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
        let parent_exe = std::fs::read_link(format!("/proc/{ppid}/exe"));
        if let (Ok(parent_cwd), Ok(exe), Ok(parent_exe)) = (parent_cwd, exe, parent_exe) {
            if parent_cwd == data_dir_id && parent_exe == exe {
                return Err(not_postmaster(format!(
                    "it is a child of pid {ppid}, the same program in the same directory"
                )));
            }
        }
    }
    Ok(())
}

impl PostmasterWatch {
    /// Reads `postmaster.pid` of `data_dir`, pins the process with a pidfd and checks it is that
    /// directory's postmaster. Must be called inside a tokio runtime (the pidfd is registered with
    /// its reactor).
    pub fn open(data_dir: &Path) -> Result<PostmasterWatch, WatchError> {
        let info = PostmasterPid::read(data_dir)?;
        let pid = info.pid;
        if info.standalone {
            return Err(WatchError::Standalone {
                pid,
                data_dir: data_dir.to_path_buf(),
            });
        }
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(WatchError::NotRunning {
                    pid,
                    data_dir: data_dir.to_path_buf(),
                })
            }
            Err(source) => return Err(WatchError::PidfdOpen { pid, source }),
        };
        // A crashed postmaster that is not reaped yet (a zombie) still has a pid; it has exited.
        if fd_readable(pidfd.as_raw_fd()) {
            return Err(WatchError::NotRunning {
                pid,
                data_dir: data_dir.to_path_buf(),
            });
        }
        let data_dir_id = dir_identity(data_dir).map_err(|source| WatchError::Unverifiable {
            pid,
            data_dir: data_dir.to_path_buf(),
            source,
        })?;
        check_identity(pid, data_dir, data_dir_id)?;
        // The pid we pinned must still be the one the file names.
        let again = PostmasterPid::read(data_dir)?;
        if again.pid != pid {
            return Err(WatchError::NotPostmaster {
                pid,
                data_dir: data_dir.to_path_buf(),
                reason: format!("postmaster.pid now names pid {}", again.pid),
            });
        }
        // SAFETY: the OwnedFd moves into the AsyncFd, which keeps it open and unchanged until
        // the AsyncFd is dropped.
        let pidfd =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                .map_err(|e| WatchError::Register {
                    pid,
                    source: e.into(),
                })?;
        Ok(PostmasterWatch {
            pid,
            data_dir: data_dir.to_path_buf(),
            pidfd,
        })
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The data directory it serves.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the process has exited, without waiting (a pidfd polls readable once it has).
    pub fn has_exited(&self) -> bool {
        fd_readable(self.pidfd.get_ref().as_raw_fd())
    }

    /// Resolves once the postmaster has exited (killed, crashed or stopped). Cancel-safe. If the
    /// runtime's reactor goes away it never resolves: a death that was not seen is never
    /// reported.
    pub async fn exited(&self) {
        loop {
            match self.pidfd.readable().await {
                Ok(mut guard) => {
                    if self.has_exited() {
                        return;
                    }
                    guard.clear_ready();
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "4242\n/var/lib/postgresql/15/main\n1717000000\n5432\n/var/run/postgresql\n*\n  5432001  32768\nready   \n";

    #[test]
    fn parses_a_complete_file() {
        let p = PostmasterPid::parse(FULL).unwrap();
        assert_eq!(p.pid, 4242);
        assert!(!p.standalone);
        assert_eq!(p.data_dir, PathBuf::from("/var/lib/postgresql/15/main"));
        assert_eq!(p.start_time, Some(1_717_000_000));
        assert_eq!(p.port, Some(5432));
        assert_eq!(p.socket_dir, Some(PathBuf::from("/var/run/postgresql")));
        assert_eq!(p.listen_addr.as_deref(), Some("*"));
        assert_eq!(p.status, Some(PostmasterStatus::Ready));
    }

    #[test]
    fn parses_the_early_startup_form() {
        // What the postmaster writes first: no socket directory yet, no status.
        let p =
            PostmasterPid::parse("77\n/data/coordinator/gpseg-1\n1717000000\n5432\n\n").unwrap();
        assert_eq!(p.pid, 77);
        assert_eq!(p.port, Some(5432));
        assert_eq!(p.socket_dir, None);
        assert_eq!(p.status, None);
        let p = PostmasterPid::parse("77\n/d\n").unwrap();
        assert_eq!((p.start_time, p.port), (None, None));
        let standby = FULL.replace("ready   ", "standby ");
        assert_eq!(
            PostmasterPid::parse(&standby).unwrap().status,
            Some(PostmasterStatus::Standby)
        );
    }

    #[test]
    fn negative_pid_is_a_standalone_backend() {
        let p = PostmasterPid::parse("-4242\n/d\n").unwrap();
        assert_eq!((p.pid, p.standalone), (4242, true));
        // In a container the postmaster may well be pid 1.
        assert_eq!(PostmasterPid::parse("1\n/d\n").unwrap().pid, 1);
    }

    #[test]
    fn partial_files_are_reported_as_partial() {
        for (text, lines) in [
            ("", 0),
            ("4242", 0),
            ("4242\n", 1),
            ("4242\n/var/lib/pg", 1),
        ] {
            assert_eq!(
                PostmasterPid::parse(text),
                Err(PidTextError::Partial {
                    complete_lines: lines
                }),
                "{text:?}"
            );
        }
        // A half-written third line is ignored, not misread.
        let p = PostmasterPid::parse("4242\n/d\n17170").unwrap();
        assert_eq!(p.start_time, None);
    }

    #[test]
    fn invalid_lines_are_named() {
        let line_of = |text: &str| match PostmasterPid::parse(text) {
            Err(PidTextError::Invalid { line, .. }) => line,
            other => panic!("{text:?}: {other:?}"),
        };
        assert_eq!(line_of("abc\n/d\n"), 1);
        assert_eq!(line_of("0\n/d\n"), 1);
        assert_eq!(line_of("99999999999\n/d\n"), 1);
        assert_eq!(line_of("42\n\n"), 2);
        assert_eq!(line_of("42\n/d\nnoon\n"), 3);
        assert_eq!(line_of("42\n/d\n1\n70000\n"), 4);
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = std::env::temp_dir().join(format!("whpg-ha-pm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join(PID_FILE);
        let _ = std::fs::remove_file(&pid_file);
        let err = PostmasterPid::read(&dir).unwrap_err();
        assert!(matches!(err, PidFileError::Missing { .. }), "{err}");
        assert!(err.to_string().contains(&*pid_file.to_string_lossy()));

        std::fs::write(&pid_file, "12").unwrap();
        let err = PostmasterPid::read(&dir).unwrap_err();
        assert!(matches!(err, PidFileError::Partial { .. }), "{err}");
        assert!(err.to_string().contains(&*pid_file.to_string_lossy()));

        // A directory where the file should be: unreadable, with the path in the message.
        std::fs::remove_file(&pid_file).unwrap();
        std::fs::create_dir(&pid_file).unwrap();
        let err = PostmasterPid::read(&dir).unwrap_err();
        assert!(matches!(err, PidFileError::Unreadable { .. }), "{err}");
        assert!(
            err.to_string().starts_with("unreadable postmaster.pid ")
                && err.to_string().contains(&*pid_file.to_string_lossy()),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_pid_that_is_not_the_postmaster_is_refused() {
        // Our own pid, named by a file in a directory we are not running in.
        let dir = std::env::temp_dir().join(format!("whpg-ha-pm-self-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(PID_FILE),
            format!("{}\n{}\n", std::process::id(), dir.display()),
        )
        .unwrap();
        let err = PostmasterWatch::open(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(
                err,
                WatchError::NotPostmaster { .. } | WatchError::Unverifiable { .. }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn watches_a_child_that_lives_in_the_directory_and_sees_it_die() {
        let dir = std::env::temp_dir().join(format!("whpg-ha-pm-child-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&dir)
            .spawn()
            .unwrap();
        std::fs::write(
            dir.join(PID_FILE),
            format!("{}\n{}\n", child.id(), dir.display()),
        )
        .unwrap();
        let watch = PostmasterWatch::open(&dir).unwrap();
        assert_eq!(watch.pid(), child.id());
        assert!(!watch.has_exited());
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), watch.exited()).await;
        assert!(pending.is_err(), "exited() resolved for a live process");
        child.kill().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), watch.exited())
            .await
            .expect("exit seen");
        assert!(watch.has_exited());
        let _ = child.wait();
        let err = PostmasterWatch::open(&dir).unwrap_err();
        assert!(matches!(err, WatchError::NotRunning { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
