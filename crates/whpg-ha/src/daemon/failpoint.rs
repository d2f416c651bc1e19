//! Fault injection for tests, compiled only with the `failpoints` feature: no package and no
//! default build contains it (`cargo build` leaves this module out entirely).
//!
//! [`stall_loop`] wedges the decision loop on request, the way an effect that never completes
//! would (a netlink request the kernel never answers, a send that never becomes writable): the
//! loop awaits instead of taking its next input, while every other task of the process (the HTTP
//! API, the observers, the link watcher) keeps running. tests/watchdog.rs uses it to show that the
//! systemd watchdog notices a stalled loop and not only a dead process.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::warn;

/// The variable naming the file whose existence stalls the loop.
pub const STALL_LOOP_ENV: &str = "WHPG_HA_FAILPOINT_STALL_LOOP";

/// How often a stalled loop looks whether the file is gone.
const POLL: Duration = Duration::from_millis(20);

fn stall_file() -> Option<&'static PathBuf> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os(STALL_LOOP_ENV).map(PathBuf::from))
        .as_ref()
}

/// Called once per turn of the decision loop: while the file named by `$WHPG_HA_FAILPOINT_STALL_LOOP`
/// exists, the turn does not end (an async wait, so the rest of the process runs on).
pub async fn stall_loop() {
    let Some(file) = stall_file() else { return };
    if !file.exists() {
        return;
    }
    warn!(
        "failpoint: the decision loop stalls while {} exists",
        file.display()
    );
    while file.exists() {
        tokio::time::sleep(POLL).await;
    }
    warn!("failpoint: the decision loop resumes");
}
