//! When to send gratuitous ARPs: a burst on becoming master, a second burst after a delay, and
//! an optional periodic refresh while master. Pure timing; the sending is `net::garp`'s job.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Settings, as configured under `[vrrp.garp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpTiming {
    /// ARPs per burst (per virtual address).
    pub repeat: u32,
    /// Gap between the ARPs of one burst.
    pub interval: Duration,
    /// A second burst this long after the first (zero: none).
    pub master_delay: Duration,
    /// Re-announce this often while master (zero: never).
    pub refresh: Duration,
}

/// The pending announcements of one instance.
#[derive(Debug)]
pub struct GarpSchedule {
    timing: GarpTiming,
    due: BTreeSet<Instant>,
    refresh_at: Option<Instant>,
}

impl GarpSchedule {
    pub fn new(timing: GarpTiming) -> GarpSchedule {
        GarpSchedule {
            timing,
            due: BTreeSet::new(),
            refresh_at: None,
        }
    }

    pub fn set_timing(&mut self, timing: GarpTiming) {
        self.timing = timing;
    }

    /// We just became master (or must re-announce): a burst now, the delayed one, the refresh.
    pub fn announce(&mut self, now: Instant) {
        self.push_burst(now);
        if !self.timing.master_delay.is_zero() {
            self.push_burst(now + self.timing.master_delay);
        }
        if !self.timing.refresh.is_zero() {
            self.refresh_at = Some(now + self.timing.refresh);
        }
    }

    /// A single extra burst (e.g. after healing a split) without re-arming the delayed one.
    pub fn reannounce(&mut self, now: Instant) {
        self.push_burst(now);
    }

    /// We are no longer master: nothing more to announce.
    pub fn stop(&mut self) {
        self.due.clear();
        self.refresh_at = None;
    }

    pub fn next_due(&self) -> Option<Instant> {
        let burst = self.due.first().copied();
        match (burst, self.refresh_at) {
            (Some(b), Some(r)) => Some(b.min(r)),
            (b, r) => b.or(r),
        }
    }

    /// How many announcement rounds are due at `now` (each round = one ARP per address).
    pub fn take_due(&mut self, now: Instant) -> usize {
        let later = self.due.split_off(&(now + Duration::from_nanos(1)));
        let count = self.due.len();
        self.due = later;
        let mut rounds = count;
        if let Some(at) = self.refresh_at.filter(|&at| at <= now) {
            rounds += 1;
            // Keep a fixed cadence, but never schedule in the past after a long stall.
            let next = at + self.timing.refresh;
            self.refresh_at = Some(if next > now {
                next
            } else {
                now + self.timing.refresh
            });
        }
        rounds
    }

    fn push_burst(&mut self, start: Instant) {
        for i in 0..self.timing.repeat {
            // Distinct instants even with a zero interval, so none collapses in the set.
            let at = start + self.timing.interval * i + Duration::from_nanos(u64::from(i));
            self.due.insert(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timing() -> GarpTiming {
        GarpTiming {
            repeat: 3,
            interval: 10 * MS,
            master_delay: 5000 * MS,
            refresh: Duration::ZERO,
        }
    }

    #[test]
    fn burst_then_delayed_burst() {
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(timing());
        s.announce(t0);
        assert_eq!(s.take_due(t0), 1);
        assert_eq!(s.next_due(), Some(t0 + 10 * MS + Duration::from_nanos(1)));
        assert_eq!(s.take_due(t0 + 25 * MS), 2);
        assert_eq!(s.take_due(t0 + 4999 * MS), 0);
        assert_eq!(s.take_due(t0 + 6000 * MS), 3);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn zero_interval_burst_is_all_due_at_once() {
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(GarpTiming {
            repeat: 5,
            interval: Duration::ZERO,
            master_delay: Duration::ZERO,
            refresh: Duration::ZERO,
        });
        s.announce(t0);
        assert_eq!(s.take_due(t0 + MS), 5);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn refresh_repeats_until_stopped() {
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(GarpTiming {
            repeat: 1,
            master_delay: Duration::ZERO,
            refresh: 1000 * MS,
            ..timing()
        });
        s.announce(t0);
        assert_eq!(s.take_due(t0), 1);
        assert_eq!(s.next_due(), Some(t0 + 1000 * MS));
        assert_eq!(s.take_due(t0 + 1000 * MS), 1);
        assert_eq!(s.next_due(), Some(t0 + 2000 * MS));
        s.stop();
        assert_eq!(s.next_due(), None);
        assert_eq!(s.take_due(t0 + 9000 * MS), 0);
    }
}
