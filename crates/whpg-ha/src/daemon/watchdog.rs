//! systemd's watchdog (`WatchdogSec=` in the unit): `WATCHDOG=1` is sent from the decision loop
//! itself, between two inputs, never from a side task. A loop that wedges (a blocking call, a
//! busy spin) stops feeding it, and systemd restarts the daemon, which resigns on the way.

use std::time::{Duration, Instant};

use tracing::warn;

pub struct Watchdog {
    /// Half the interval systemd allows, as sd_watchdog_enabled(3) advises.
    every: Option<Duration>,
    next: Option<Instant>,
}

impl Watchdog {
    /// From `WATCHDOG_USEC` / `WATCHDOG_PID` as systemd sets them; disabled without them.
    pub fn from_env() -> Watchdog {
        Watchdog::every(sd_notify::watchdog_enabled().map(|allowed| allowed / 2))
    }

    pub fn every(every: Option<Duration>) -> Watchdog {
        Watchdog {
            every: every.filter(|d| !d.is_zero()),
            next: None,
        }
    }

    /// When the loop must wake to feed the watchdog.
    pub fn next_due(&self) -> Option<Instant> {
        self.every
            .map(|every| self.next.unwrap_or_else(|| Instant::now() + every))
    }

    /// Called on every turn of the loop: sends `WATCHDOG=1` when it is due.
    pub fn feed(&mut self) {
        let Some(every) = self.every else { return };
        let now = Instant::now();
        if self.next.is_some_and(|next| now < next) {
            return;
        }
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
            warn!("could not feed the systemd watchdog: {e}");
        }
        self.next = Some(now + every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_interval_there_is_nothing_to_feed_or_wake_for() {
        for every in [None, Some(Duration::ZERO)] {
            let mut watchdog = Watchdog::every(every);
            assert_eq!(watchdog.next_due(), None, "{every:?}");
            watchdog.feed();
            assert_eq!(watchdog.next_due(), None, "{every:?}");
        }
    }

    #[test]
    fn the_first_turn_feeds_and_later_turns_wait_for_the_interval() {
        let every = Duration::from_secs(3600);
        let mut watchdog = Watchdog::every(Some(every));
        let before = Instant::now();
        watchdog.feed();
        let due = watchdog.next_due().expect("enabled");
        assert!(
            due >= before + every && due <= Instant::now() + every,
            "due {:?} after the feed",
            due - before
        );
        // Turns before the due time leave it where it is.
        watchdog.feed();
        watchdog.feed();
        assert_eq!(watchdog.next_due(), Some(due));
    }
}
