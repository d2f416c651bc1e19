//! Helpers shared by lab tests: running code inside a lab host's network namespace.
//!
//! Netlink sockets, raw sockets and addresses belong to the network namespace of the thread that
//! creates them. These helpers move one fresh thread into a namespace (`setns` changes only the
//! calling thread) so the test process itself, and the machine's root namespace, are never touched.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod daemon;
pub mod pg;

use std::future::Future;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Runs `f` on a new thread that has joined network namespace `ns` (a name under `/run/netns`, as
/// created by `ip netns add`). Panics of `f` propagate; failing to enter the namespace panics.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn_scoped(scope, move || {
                enter_netns(ns);
                f()
            })
            .expect("spawning the namespace thread");
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs the future built by `make` on a current-thread tokio runtime inside namespace `ns`, and
/// fails the test if it does not finish within `limit`.
pub fn block_on_in_netns<T, F, Fut>(ns: &str, limit: Duration, make: F) -> T
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
{
    in_netns(ns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        runtime.block_on(async move {
            match tokio::time::timeout(limit, make()).await {
                Ok(value) => value,
                Err(_) => panic!("test body in namespace {ns} did not finish within {limit:?}"),
            }
        })
    })
}

fn enter_netns(ns: &str) {
    assert!(
        !ns.is_empty() && !ns.contains('/'),
        "bad namespace name {ns:?}"
    );
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    // SAFETY: `file` is an open namespace file; setns only changes this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        panic!(
            "setns({path}, CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
    }
}
