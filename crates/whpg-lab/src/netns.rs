//! Entering a lab namespace from the test process: one thread at a time moves, never the process.
//!
//! Sockets, netlink handles and routes belong to the network namespace of the thread that creates
//! them. `setns(CLONE_NEWNET)` changes only the calling thread, so these helpers run the caller's
//! code on a fresh thread that has joined the namespace, and the process (and the machine's root
//! namespace) is never touched.

use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};

/// Moves the calling thread into network namespace `ns` (a name under `/run/netns`).
pub fn enter(ns: &str) -> Result<()> {
    if ns.is_empty() || ns.contains('/') {
        bail!("bad namespace name {ns:?}");
    }
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: `file` is an open namespace file; setns only changes this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "setns({path}, CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Runs `f` on a new thread that has joined namespace `ns`, and returns its result. A panic in
/// `f` propagates; failing to enter the namespace is an error and `f` never runs.
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn_scoped(scope, move || -> Result<T> {
                enter(ns)?;
                Ok(f())
            })
            .context("spawning a namespace thread")?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Like [`run_in`], but returns at once: the thread keeps running in namespace `ns` until `f`
/// returns (for code that must run in two namespaces at the same time). A namespace that cannot
/// be entered makes the thread panic before `f` runs; joining re-raises it.
pub fn spawn_in<T, F>(ns: &str, f: F) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_string();
    std::thread::spawn(move || {
        if let Err(e) = enter(&ns) {
            panic!("{e:#}");
        }
        f()
    })
}
