//! Threads that live in a lab host's network namespace.
//!
//! `setns` moves only the calling thread, so the benchmark's own threads (and the machine's root
//! namespace) are never touched: each client or sampler gets a fresh thread that enters its
//! namespace first and then runs a current-thread tokio runtime there.

use std::future::Future;
use std::thread::JoinHandle;

use anyhow::{Context, Result};

use whpg_lab::netns::enter;

/// Runs the future built by `make` on a current-thread runtime, on a new thread inside `ns`.
pub fn spawn_in<T, F, Fut>(ns: &str, name: &str, make: F) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let ns = ns.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            enter(&ns)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime")?;
            runtime.block_on(make())
        })
        .context("spawning a namespace thread")
}

/// Runs `f` on a new thread inside `ns` and waits for it.
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || enter(ns).map(|()| f()));
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
