//! Helpers shared by lab tests: running code inside a lab host's network namespace.
//!
//! Netlink sockets, raw sockets and addresses belong to the network namespace of the thread that
//! creates them. These helpers move one fresh thread into a namespace (`setns` changes only the
//! calling thread) so the test process itself, and the machine's root namespace, are never touched.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod daemon;
pub mod pg;

use std::future::Future;
use std::time::Duration;

/// Runs `f` on a new thread that has joined network namespace `ns` (a name under `/run/netns`, as
/// created by `ip netns add`). Panics of `f` propagate; failing to enter the namespace panics.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    whpg_lab::netns::run_in(ns, f).unwrap_or_else(|e| panic!("{e:#}"))
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
