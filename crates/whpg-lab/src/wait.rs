//! Bounded polling: the only way lab tests wait for a condition.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Polls `f` every `poll` until it returns true or `deadline` has passed.
///
/// Returns the time it took (measured from the call), or an error naming `what` and the deadline.
/// `f` is checked once more at the deadline, so a condition that becomes true just in time still
/// counts.
pub fn wait_until(
    deadline: Duration,
    poll: Duration,
    what: &str,
    mut f: impl FnMut() -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Ok(start.elapsed());
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(poll.min(deadline - elapsed).max(Duration::from_millis(1)));
    }
}
