//! What the policy knows about the world: the local database (with fall/rise hysteresis), the peer
//! and the witnesses, each with the time it was last seen in a given condition.
//!
//! Observations arrive continuously from background probes; the policy only reads what is already
//! known here, so a decision never waits on the network.

use std::time::{Duration, Instant};

use crate::replication::PrimaryPosition;

/// Role of a database, as a probe saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// Accepting connections, not in recovery: writable.
    Primary,
    /// Streaming (or trying to) from a primary.
    Standby,
}

/// The WAL receiver of a standby, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalReceiver {
    /// `pg_stat_wal_receiver.status = 'streaming'`.
    pub streaming: bool,
    /// Age of the last message from the primary when the sample was taken.
    pub last_message_age: Option<Duration>,
}

/// One probe of the local database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalSample {
    Primary {
        timeline: Option<u32>,
        /// Its WAL position and its standby's walsender row (`None`: not read).
        position: Option<PrimaryPosition>,
    },
    Standby {
        timeline: Option<u32>,
        wal_receiver: Option<WalReceiver>,
        /// `pg_last_wal_receive_lsn()`: WAL received and flushed (`None`: not read).
        received: Option<u64>,
    },
    /// Answering but refusing work: starting up, shutting down, recovering (57P03).
    NotAccepting,
    /// Refused, timed out, or failed.
    Down,
    /// The probe failed for a reason of our own (descriptor or memory exhaustion, our own
    /// deadline): it says nothing about the database, so it changes no count either way.
    Unknown,
}

/// One probe of the peer's database at the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSample {
    /// No answer at all within the timeout: the host or the network is gone.
    Unreachable,
    /// The host answered, the database refused or is not accepting: host alive, database not serving.
    DatabaseDown,
    /// A standby (57M02, or in recovery on a query connection).
    Standby,
    /// A writable primary, with its WAL position and the walsender row it lists for this node's
    /// standby, from the same query (`None`: not read, or hidden from the monitoring user).
    Primary {
        timeline: Option<u32>,
        position: Option<PrimaryPosition>,
    },
    /// Accepting, but the role could not be queried (no credentials): counted as a live primary,
    /// because guessing "standby" could promote beside a live primary.
    AcceptingUnknownRole,
    /// The probe failed for a reason of our own (descriptor or memory exhaustion): neither alive
    /// nor down. While it is the latest sample, nothing may be concluded about the peer.
    Unknown,
}

/// The local database after hysteresis.
#[derive(Debug, Clone)]
pub struct LocalDb {
    fall: u32,
    rise: u32,
    /// `None` until the first good sample.
    pub role: Option<DbRole>,
    pub healthy: bool,
    /// At least one sample has arrived.
    pub observed: bool,
    pub timeline: Option<u32>,
    pub wal_receiver: Option<WalReceiver>,
    /// When the last standby sample was taken (for the WAL receiver's age).
    pub sampled_at: Option<Instant>,
    /// The postmaster exited (or was fenced) and the database has not answered since.
    pub exited: bool,
    /// When a write proved this database's promotion (`promoted`).
    promoted_at: Option<Instant>,
    /// How long after that proof an answer "in recovery" may still be from a probe that started
    /// before it (the probe timeout).
    stale_after_promotion: Duration,
    consecutive_good: u32,
    consecutive_bad: u32,
}

impl LocalDb {
    pub fn new(fall: u32, rise: u32) -> LocalDb {
        LocalDb {
            fall: fall.max(1),
            rise: rise.max(1),
            role: None,
            healthy: false,
            observed: false,
            timeline: None,
            wal_receiver: None,
            sampled_at: None,
            exited: false,
            promoted_at: None,
            stale_after_promotion: Duration::ZERO,
            consecutive_good: 0,
            consecutive_bad: 0,
        }
    }

    /// Answers "in recovery" that arrive within `window` of a proven promotion are stale: see
    /// [`LocalDb::sample`].
    pub fn with_stale_after_promotion(mut self, window: Duration) -> LocalDb {
        self.stale_after_promotion = window;
        self
    }

    /// Apply one probe result: `fall` bad ones in a row make it unhealthy, `rise` good ones healthy.
    pub fn sample(&mut self, sample: LocalSample, now: Instant) {
        if sample == LocalSample::Unknown {
            return;
        }
        self.observed = true;
        match sample {
            LocalSample::Primary { timeline, .. } => {
                self.good(DbRole::Primary);
                self.timeline = timeline.or(self.timeline);
                self.wal_receiver = None;
            }
            LocalSample::Standby { .. }
                if self.promoted_at.is_some_and(|at| {
                    now.saturating_duration_since(at) < self.stale_after_promotion
                }) =>
            {
                // The probe asked before the write proved the promotion and answered after it:
                // a database out of recovery goes back only through a restart, which the
                // postmaster watch and the probes see first (and which ends this window).
                // Taken as news, it would make the node promote its primary again and take the
                // VIP off meanwhile.
            }
            LocalSample::Standby {
                timeline,
                wal_receiver,
                ..
            } => {
                self.good(DbRole::Standby);
                self.timeline = timeline.or(self.timeline);
                self.wal_receiver = wal_receiver;
                self.sampled_at = Some(now);
            }
            LocalSample::Unknown => {}
            LocalSample::NotAccepting | LocalSample::Down => {
                // It went down after the proof: what answers next is news.
                self.promoted_at = None;
                self.consecutive_good = 0;
                self.consecutive_bad = self.consecutive_bad.saturating_add(1);
                if self.consecutive_bad >= self.fall {
                    self.healthy = false;
                }
            }
        }
    }

    /// The postmaster died: certain, no need to wait for `fall` probes.
    pub fn crashed(&mut self) {
        self.observed = true;
        self.healthy = false;
        self.exited = true;
        self.promoted_at = None;
        self.consecutive_good = 0;
        self.consecutive_bad = self.fall;
        self.wal_receiver = None;
    }

    /// A verified promotion: the database is now a writable primary on `timeline`.
    pub fn promoted(&mut self, timeline: Option<u32>, now: Instant) {
        self.promoted_at = Some(now);
        self.role = Some(DbRole::Primary);
        self.healthy = true;
        self.exited = false;
        self.consecutive_bad = 0;
        self.consecutive_good = self.rise;
        self.timeline = timeline.or(self.timeline);
        self.wal_receiver = None;
    }

    fn good(&mut self, role: DbRole) {
        // A role change (a promotion) keeps the health: the database answered in both roles.
        // Resetting it here would make a node that is being promoted fault and resign.
        self.role = Some(role);
        self.exited = false;
        self.consecutive_bad = 0;
        self.consecutive_good = self.consecutive_good.saturating_add(1);
        if self.consecutive_good >= self.rise {
            self.healthy = true;
        }
    }

    /// Enough samples to call it either way: healthy, or failed `fall` times in a row.
    pub fn settled(&self) -> bool {
        self.healthy || self.consecutive_bad >= self.fall
    }

    /// The latest sample answered in `role` (health, which needs `rise` of them, aside).
    pub fn answers_as(&self, role: DbRole) -> bool {
        self.consecutive_good > 0 && self.role == Some(role)
    }

    pub fn is_healthy(&self, role: DbRole) -> bool {
        self.healthy && self.role == Some(role)
    }

    /// Our WAL receiver heard from the primary within `window` (invariant 2's second test).
    pub fn primary_heard_within(&self, window: Duration, now: Instant) -> bool {
        let (Some(receiver), Some(at)) = (self.wal_receiver, self.sampled_at) else {
            return false;
        };
        match (receiver.streaming, receiver.last_message_age) {
            (true, Some(age)) => age + now.saturating_duration_since(at) < window,
            // Streaming without a timestamp: assume it is fresh (the conservative reading).
            (true, None) => true,
            (false, _) => false,
        }
    }
}

/// The peer, as seen through its database port.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Any answer at all (host reachable).
    pub reachable_at: Option<Instant>,
    /// Answered as a live primary (or accepting with an unknown role).
    pub primary_at: Option<Instant>,
    /// Timeline of the peer when it last answered as primary.
    pub primary_timeline: Option<u32>,
    pub observed: bool,
    /// The latest sample was a live primary: no newer answer (down, standby, no answer within
    /// the probe's timeout) has contradicted it yet.
    pub latest_primary: bool,
    /// The latest answer that told the peer's role said primary (not standby). Down or silent
    /// does not change it: a primary's data directory stays one until it is rebuilt.
    pub last_role_primary: bool,
    /// The latest probe failed for a local reason: the peer's state is unknown, which is
    /// evidence of nothing (not of a dead peer, not of a silent one).
    pub latest_unknown: bool,
    /// The latest answer said the peer's database is down or a standby: what corroborates a
    /// priority-0 advert (anyone on the link can send one).
    pub latest_not_serving: bool,
}

impl Peer {
    pub fn sample(&mut self, sample: PeerSample, now: Instant) {
        self.latest_unknown = sample == PeerSample::Unknown;
        if self.latest_unknown {
            // Keep `latest_primary`: a live primary's answer is not contradicted by our failure.
            return;
        }
        self.observed = true;
        self.latest_not_serving = matches!(sample, PeerSample::DatabaseDown | PeerSample::Standby);
        self.latest_primary = matches!(
            sample,
            PeerSample::Primary { .. } | PeerSample::AcceptingUnknownRole
        );
        match sample {
            PeerSample::Unreachable | PeerSample::Unknown => {}
            PeerSample::DatabaseDown => self.reachable_at = Some(now),
            PeerSample::Standby => {
                self.reachable_at = Some(now);
                self.last_role_primary = false;
            }
            PeerSample::Primary { timeline, .. } => {
                self.reachable_at = Some(now);
                self.last_role_primary = true;
                self.primary_at = Some(now);
                self.primary_timeline = timeline.or(self.primary_timeline);
            }
            PeerSample::AcceptingUnknownRole => {
                self.reachable_at = Some(now);
                self.primary_at = Some(now);
            }
        }
    }

    /// The peer's database answered as a primary within `window`, or its latest answer was a
    /// live primary and the next one may still be on its way: samples arrive when probes finish,
    /// so one interval after a good answer the next probe can still be in flight, for up to
    /// `in_flight` (the probe timeout). Its answer, not the clock, tells whether the primary died.
    ///
    /// An answer since then that its database is down or a standby settles it: the samples of
    /// one peer arrive in order, so that answer is newer than the primary's. (A backend whose
    /// postmaster was just killed can still answer one query as a primary; the refused
    /// connection right after it is the newer evidence.)
    pub fn primary_within(&self, window: Duration, in_flight: Duration, now: Instant) -> bool {
        if self.latest_not_serving {
            return false;
        }
        self.primary_at.is_some_and(|at| {
            let age = now.saturating_duration_since(at);
            age < window || (self.latest_primary && age < window + in_flight)
        })
    }
}

/// Witness quorum, as last evaluated.
#[derive(Debug, Clone, Default)]
pub struct Witnesses {
    /// `None` until the first check.
    pub quorum: Option<bool>,
    /// Since when the quorum has been lost.
    pub lost_since: Option<Instant>,
    /// When the latest round that reached the quorum was sent: the answers came after that.
    pub answered_round_sent_at: Option<Instant>,
}

impl Witnesses {
    /// The result of a round of probes sent at `round_sent_at`, known at `now`.
    pub fn sample(&mut self, quorum: bool, round_sent_at: Instant, now: Instant) {
        if quorum {
            self.answered_round_sent_at = Some(
                self.answered_round_sent_at
                    .map_or(round_sent_at, |t| t.max(round_sent_at)),
            );
            self.lost_since = None;
        } else if self.quorum != Some(false) {
            self.lost_since = Some(now);
        }
        self.quorum = Some(quorum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise() {
        let t = Instant::now();
        let mut db = LocalDb::new(3, 2);
        let primary = LocalSample::Primary {
            timeline: Some(1),
            position: None,
        };
        db.sample(primary, t);
        assert!(!db.healthy, "one good sample is not enough with rise 2");
        db.sample(primary, t);
        assert!(db.is_healthy(DbRole::Primary));
        db.sample(LocalSample::Down, t);
        db.sample(LocalSample::Down, t);
        assert!(db.healthy, "two failures are below fall 3");
        db.sample(primary, t);
        db.sample(LocalSample::Down, t);
        db.sample(LocalSample::Down, t);
        assert!(db.healthy, "the count restarts after a good sample");
        db.sample(LocalSample::Down, t);
        assert!(!db.healthy);
        db.crashed();
        assert!(!db.healthy);
    }

    #[test]
    fn wal_receiver_freshness_ages_with_time() {
        let t = Instant::now();
        let mut db = LocalDb::new(1, 1);
        let receiver = WalReceiver {
            streaming: true,
            last_message_age: Some(Duration::from_millis(300)),
        };
        db.sample(
            LocalSample::Standby {
                timeline: Some(1),
                wal_receiver: Some(receiver),
                received: None,
            },
            t,
        );
        let window = Duration::from_secs(1);
        assert!(db.primary_heard_within(window, t + Duration::from_millis(600)));
        assert!(!db.primary_heard_within(window, t + Duration::from_millis(700)));
    }
}
