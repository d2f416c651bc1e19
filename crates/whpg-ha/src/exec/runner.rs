//! Spawning a [`PreparedCommand`]: user switch, no inherited capabilities, clean environment, own
//! process group, bounded output capture, and a timeout that kills the whole group.
//!
//! Every wait here is bounded: the command by its timeout, the SIGTERM → SIGKILL escalation by the
//! kill grace, the reaping after SIGKILL and the draining of pipes held open by a stray grandchild
//! by fixed limits. If the caller drops the future mid-run, the process group is killed.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::caps;
use super::user::{current_user, lookup_user, UserInfo};
use super::{CapturedOutput, CommandOutcome, ExecError, Exit, PreparedCommand};

/// Bound on the user database lookup (NSS may ask a directory service that does not answer).
const USER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// After SIGKILL, how long we wait for the kernel to end the child before giving up on reaping
/// (a process stuck in uninterruptible IO); tokio reaps it later in the background.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// After the child exited, how long we keep reading pipes that a leftover grandchild holds open.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `cmd` to its end or its timeout. A non-zero exit is an `Ok` outcome; the caller judges it.
pub async fn run(cmd: &PreparedCommand) -> Result<CommandOutcome, ExecError> {
    let key = cmd.key();
    let Some(program) = cmd.argv().first() else {
        return Err(ExecError::EmptyArgv { key: key.into() });
    };
    let target = resolve_user(cmd).await?;

    let mut env = cmd.environment().clone();
    env.set("HOME", target.info.home.display().to_string());
    env.set("USER", target.info.name.clone());
    env.set("LOGNAME", target.info.name.clone());
    let executable = resolve_program(key, program, &env.path_dirs())?;
    let cwd = if target.info.home.is_dir() {
        target.info.home.clone()
    } else {
        PathBuf::from("/")
    };

    let mut command = tokio::process::Command::new(&executable);
    command
        .arg0(program)
        .args(&cmd.argv()[1..])
        .env_clear()
        .envs(env.iter())
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout can kill everything it started (but not what it daemonized
        // with setsid, such as a postmaster started by pg_ctl).
        .process_group(0)
        .kill_on_drop(true);
    let switch = target
        .switch
        .then(|| (target.info.groups.clone(), target.info.gid, target.info.uid));
    let target_is_root = target.info.uid == 0;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls on data captured before the fork.
    // The user switch is done here rather than with `Command::uid/gid`: std applies those *before*
    // running pre_exec closures, after which `setgroups` is no longer permitted, and std itself
    // would only clear the supplementary groups instead of setting the user's. The capability sets
    // are cleared after the switch, always (see `caps`).
    unsafe {
        command.pre_exec(move || {
            if let Some((groups, gid, uid)) = &switch {
                drop_privileges(groups, *gid, *uid)?;
            }
            caps::clear_inherited(target_is_root)
        });
    }

    tracing::debug!(
        key,
        user = %target.info.name,
        argv = %cmd.display_argv(),
        timeout = ?cmd.timeout(),
        "running command"
    );
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ExecError::NotFound {
            key: key.into(),
            program: program.clone(),
            searched: format!("`{}` vanished before it could run", executable.display()),
        },
        _ => ExecError::Spawn {
            key: key.into(),
            program: program.clone(),
            source,
        },
    })?;
    let Some(pid) = child.id() else {
        return Err(ExecError::Wait {
            key: key.into(),
            program: program.clone(),
            source: std::io::Error::other("the child has no process id right after spawning"),
        });
    };
    let pgid = pid as libc::pid_t;
    let mut guard = GroupGuard { pgid, armed: true };
    let stdout = Tail::start(child.stdout.take(), cmd.output_cap());
    let stderr = Tail::start(child.stderr.take(), cmd.output_cap());

    let deadline = tokio::time::Instant::from_std(start + cmd.timeout());
    let finished = tokio::select! {
        status = child.wait() => Some(status),
        () = tokio::time::sleep_until(deadline) => None,
    };
    match finished {
        Some(Ok(status)) => {
            // A normal end: whatever it left running in its group is its own business.
            guard.armed = false;
            let duration = start.elapsed();
            let output = collect(stdout, stderr).await;
            let outcome = CommandOutcome {
                key: key.into(),
                argv: cmd.argv().to_vec(),
                exit: exit_of(status),
                duration,
                output,
            };
            tracing::debug!(key, exit = %outcome.exit, ?duration, "command finished");
            Ok(outcome)
        }
        Some(Err(source)) => Err(ExecError::Wait {
            key: key.into(),
            program: program.clone(),
            source,
        }),
        None => {
            tracing::warn!(key, timeout = ?cmd.timeout(), "command timed out; terminating its process group");
            signal_group(pgid, libc::SIGTERM);
            let _ = tokio::time::timeout(cmd.kill_grace(), child.wait()).await;
            // Always, even if the leader is gone: grandchildren may ignore SIGTERM.
            signal_group(pgid, libc::SIGKILL);
            let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
            guard.armed = false;
            let output = collect(stdout, stderr).await;
            Err(ExecError::TimedOut {
                key: key.into(),
                program: program.clone(),
                timeout: cmd.timeout(),
                output: Box::new(output),
            })
        }
    }
}

/// Who runs the command, and whether we must switch to them.
struct Target {
    info: UserInfo,
    switch: bool,
}

async fn resolve_user(cmd: &PreparedCommand) -> Result<Target, ExecError> {
    let wanted = cmd.user().map(str::to_string);
    let label = wanted.clone().unwrap_or_else(|| "(current user)".into());
    let lookup = tokio::task::spawn_blocking(move || match wanted {
        Some(name) => lookup_user(&name),
        None => current_user(),
    });
    let info = match tokio::time::timeout(USER_LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => {
            return Err(ExecError::UserLookup {
                user: label,
                message: format!("the lookup task failed: {join}"),
            })
        }
        Err(_) => {
            return Err(ExecError::UserLookup {
                user: label,
                message: format!(
                    "no answer from the user database within {USER_LOOKUP_TIMEOUT:?}; check NSS (nsswitch.conf, sssd, LDAP)"
                ),
            })
        }
    };
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    if cmd.user().is_none() || info.uid == euid {
        return Ok(Target {
            info,
            switch: false,
        });
    }
    if euid != 0 {
        return Err(ExecError::CannotSwitchUser {
            key: cmd.key().into(),
            user: info.name,
            current_uid: euid,
        });
    }
    Ok(Target { info, switch: true })
}

/// Finds the file to execute: a path as given, else the first executable match in the command's
/// own `PATH` (not the daemon's).
pub(crate) fn resolve_program(
    key: &str,
    program: &str,
    path: &[PathBuf],
) -> Result<PathBuf, ExecError> {
    if program.is_empty() {
        return Err(ExecError::EmptyArgv { key: key.into() });
    }
    if program.contains('/') {
        // Relative to the daemon's directory, not the child's (it starts in the user's home).
        let candidate = std::env::current_dir()
            .map(|cwd| cwd.join(program))
            .unwrap_or_else(|_| PathBuf::from(program));
        return match std::fs::metadata(&candidate) {
            Err(_) => Err(ExecError::NotFound {
                key: key.into(),
                program: program.into(),
                searched: "no such file".into(),
            }),
            Ok(meta) if is_executable(&meta) => Ok(candidate),
            Ok(_) => Err(ExecError::NotExecutable {
                key: key.into(),
                program: program.into(),
            }),
        };
    }
    path.iter()
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| is_executable(&m))
                .unwrap_or(false)
        })
        .ok_or_else(|| ExecError::NotFound {
            key: key.into(),
            program: program.into(),
            searched: format!(
                "searched the command's PATH {}",
                path.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        })
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

/// Sets the supplementary groups, group and user, in the order that keeps the right to do so.
fn drop_privileges(groups: &[libc::gid_t], gid: u32, uid: u32) -> std::io::Result<()> {
    // SAFETY: plain system calls on valid pointers; async-signal-safe.
    unsafe {
        if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setgid(gid) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid <= 1 {
        return; // never signal "every process" or init's group
    }
    // SAFETY: kill has no memory preconditions; a vanished group yields ESRCH, which is fine.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Kills the command's process group if `run` is abandoned mid-way (its future dropped).
struct GroupGuard {
    pgid: libc::pid_t,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

fn exit_of(status: ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(sig),
        // Neither exited nor signalled cannot happen for a reaped child; report it as a failure.
        (None, None) => Exit::Code(-1),
    }
}

/// The last `cap` bytes of a stream, and how many bytes it carried.
#[derive(Default)]
struct TailBuf {
    data: VecDeque<u8>,
    total: u64,
    cap: usize,
}

impl TailBuf {
    fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let keep = chunk.len().min(self.cap);
        let chunk = &chunk[chunk.len() - keep..];
        let overflow = (self.data.len() + chunk.len()).saturating_sub(self.cap);
        self.data.drain(..overflow);
        self.data.extend(chunk);
    }
}

/// A task reading one pipe into a shared [`TailBuf`]; the buffer survives aborting the task.
struct Tail {
    buf: Arc<Mutex<TailBuf>>,
    task: Option<JoinHandle<()>>,
}

impl Tail {
    fn start<R: AsyncRead + Unpin + Send + 'static>(reader: Option<R>, cap: usize) -> Tail {
        let buf = Arc::new(Mutex::new(TailBuf {
            cap,
            ..TailBuf::default()
        }));
        let task = reader.map(|mut reader| {
            let buf = Arc::clone(&buf);
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = reader.read(&mut chunk).await {
                    buf.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(&chunk[..n]);
                }
            })
        });
        Tail { buf, task }
    }

    fn take(self) -> (String, u64) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes: Vec<u8> = buf.data.iter().copied().collect();
        (String::from_utf8_lossy(&bytes).into_owned(), buf.total)
    }
}

/// Waits (bounded) for both pipes to reach end of file, then takes what was read.
async fn collect(mut stdout: Tail, mut stderr: Tail) -> CapturedOutput {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        for task in [stdout.task.as_mut(), stderr.task.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = task.await;
        }
    })
    .await;
    let (out, out_bytes) = stdout.take();
    let (err, err_bytes) = stderr.take();
    CapturedOutput {
        stdout: out,
        stderr: err,
        stdout_bytes: out_bytes,
        stderr_bytes: err_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes_and_counts_all() {
        let mut tail = TailBuf {
            cap: 4,
            ..TailBuf::default()
        };
        tail.push(b"ab");
        tail.push(b"cdef");
        assert_eq!(tail.data.iter().copied().collect::<Vec<_>>(), b"cdef");
        tail.push(b"0123456789");
        assert_eq!(tail.data.iter().copied().collect::<Vec<_>>(), b"6789");
        assert_eq!(tail.total, 16);
    }

    #[test]
    fn program_lookup_uses_the_given_path_only() {
        let err = resolve_program(
            "commands.promote",
            "no-such-tool-xyz",
            &[PathBuf::from("/bin")],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("commands.promote.argv[0]"), "{msg}");
        assert!(msg.contains("no-such-tool-xyz"), "{msg}");
        assert!(resolve_program("k", "sh", &[PathBuf::from("/bin")]).is_ok());
        assert!(resolve_program("k", "sh", &[]).is_err());
    }
}
