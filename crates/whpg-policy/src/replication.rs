//! Does the local standby hold everything the primary acknowledged? Replication, as far as the
//! policy needs it to answer that before a promotion.
//!
//! Two views feed it: snapshots of the primary (its `pg_current_wal_lsn()` and the walsender row
//! it lists for this standby, in one query, so they are consistent with each other) and samples of
//! the local standby (the WAL it received and flushed). What the standby *has* is the larger of its
//! own received position and the flush position the primary lists for it: both are WAL on the
//! standby's disk.
//!
//! A standby falls out while the primary is seen alive — that is when the primary commits alone —
//! in three ways, each of which marks it **not promotable** at once:
//! - the primary lists no streaming walsender for it (two snapshots in a row: a primary being
//!   killed loses its walsender a moment before the backend that answers us);
//! - the primary's position is more than `maximum_lag` bytes ahead of what the standby has;
//! - WAL the primary had `maximum_lag_time` ago has still not arrived (a silent cut: the walsender
//!   and the WAL receiver both still say "streaming" until their timeouts, 60 s by default).
//!
//! The mark is kept (the daemon writes it to disk) until a snapshot shows the standby streaming and
//! caught up again. When the primary vanishes, the last observation decides: no mark and in sync,
//! or the standby's own WAL reaches the primary's last known position (it caught up after all).
//! Anything that cannot be read is unknown, and unknown is not promotable.
//!
//! A standby the primary lists as synchronous (`sync_state` sync or quorum, while streaming)
//! holds every commit the primary acknowledged, whatever its byte lag: the bytes beyond it are
//! WAL of transactions whose commits still wait for it. Neither lag limit marks it then (this
//! assumes `synchronous_commit` is `on` or `remote_apply`; `remote_write` leaves a standby crash
//! able to lose what its OS had not written, `local` and `off` do not wait at all).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Settings, from `[failover]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Bytes the standby may be behind the primary's position at the last observation.
    pub maximum_lag: u64,
    /// WAL the primary had this long ago must be on the standby.
    pub maximum_lag_time: Duration,
    /// `[replication] mode` is `sync` or `sync-strict`: the primary commits alone unless it
    /// lists this standby as synchronous, so only a standby it listed so is promotable.
    pub synchronous_required: bool,
}

/// The walsender row a primary lists for this standby (`pg_stat_replication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyRow {
    /// `state = 'streaming'` (not `startup`, `catchup`, `backup`, `stopping`).
    pub streaming: bool,
    /// `sync_state` is `sync` or `quorum`: commits wait for this standby.
    pub synchronous: bool,
    /// `flush_lsn`: WAL the standby reported on its disk. `None` when hidden from our user.
    pub flush: Option<u64>,
}

/// A primary's position and what it lists for its standby, from one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryPosition {
    /// `pg_current_wal_lsn()`.
    pub current: u64,
    /// The standby's walsender row; `None`: the primary lists none for it.
    pub standby: Option<StandbyRow>,
}

/// Why a standby was marked not promotable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkReason {
    /// The primary listed no streaming walsender for it.
    NotStreaming,
    /// More than `maximum_lag` bytes behind.
    TooFarBehind { bytes: u64 },
    /// The primary's position of `age_ms` ago had not arrived.
    WalNotArriving { age_ms: u64 },
    /// Marked before the daemon restarted (kept on disk).
    BeforeRestart,
}

impl std::fmt::Display for MarkReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MarkReason::NotStreaming => {
                f.write_str("the primary lists no streaming WAL sender for this standby")
            }
            MarkReason::TooFarBehind { bytes } => write!(
                f,
                "{} behind the primary, more than failover.maximum_lag",
                bytes_text(*bytes)
            ),
            MarkReason::WalNotArriving { age_ms } => write!(
                f,
                "WAL the primary had {age_ms} ms ago has not arrived (failover.maximum_lag_time)"
            ),
            MarkReason::BeforeRestart => {
                f.write_str("marked before the daemon restarted, not caught up since")
            }
        }
    }
}

/// The standby fell out while the primary was seen alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub reason: MarkReason,
    pub since: Instant,
    /// The primary's position when it was marked (`None`: restored from disk without one).
    pub primary: Option<u64>,
    /// What the standby had then.
    pub had: Option<u64>,
}

/// Why the standby may not be promoted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpromotable {
    /// Marked: it fell out while the primary was alive and has not caught up.
    Behind(Mark),
    /// No snapshot of the primary's position since start-up.
    NeverObserved,
    /// The primary's position or what the standby has could not be read (permissions: the
    /// monitoring user needs `pg_monitor`).
    Unreadable,
    /// The last observation found it not streaming, or behind, before the mark could be set.
    NotInSync,
    /// Synchronous replication is configured, but the primary did not list this standby as
    /// synchronous at the last observation: it may have acknowledged commits alone since.
    NotSynchronous,
}

impl std::fmt::Display for Unpromotable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unpromotable::Behind(mark) => write!(f, "{}", mark.reason),
            Unpromotable::NeverObserved => f.write_str(
                "the primary's WAL position was never observed since this daemon started",
            ),
            Unpromotable::Unreadable => f.write_str(
                "the primary's WAL position or the standby's could not be read (grant pg_monitor \
                 to database.user)",
            ),
            Unpromotable::NotInSync => {
                f.write_str("the last observation found the standby not streaming")
            }
            Unpromotable::NotSynchronous => f.write_str(
                "replication.mode is synchronous, but the primary did not list this standby as \
                 synchronous at the last observation: it may have acknowledged commits alone",
            ),
        }
    }
}

/// A change of the mark, for the journal and the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkChange {
    Marked(Mark),
    Cleared,
}

/// What `/status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// The highest position the primary was seen at.
    pub primary: Option<u64>,
    /// When the latest snapshot of the live primary was taken.
    pub primary_seen_at: Option<Instant>,
    /// What the standby has (the larger of its own and the primary's view).
    pub have: Option<u64>,
    /// The primary's position minus what the standby has.
    pub lag_bytes: Option<u64>,
    /// Since when WAL the primary had has been missing here (`None`: nothing missing).
    pub missing_since: Option<Instant>,
    /// The primary's row for this standby at the latest snapshot.
    pub row: Option<StandbyRow>,
    pub mark: Option<Mark>,
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    position: Option<PrimaryPosition>,
}

/// Positions kept while waiting for them to arrive: one per probe interval for
/// `maximum_lag_time`; beyond this the middle ones are dropped (the oldest decides).
const PENDING_CAP: usize = 256;

#[derive(Debug, Clone)]
pub struct Replication {
    config: ReplicationConfig,
    latest: Option<Snapshot>,
    /// The highest position the primary was seen at, and when.
    last_known: Option<(Instant, u64)>,
    /// Positions of the primary the standby has not been seen to have yet, oldest first.
    pending: VecDeque<(Instant, u64)>,
    local_received: Option<u64>,
    /// The highest flush position the primary listed for the standby.
    flushed: Option<u64>,
    not_streaming_in_a_row: u32,
    /// The latest row the primary listed for the standby said `sync_state` sync (cleared when
    /// it listed no streaming WAL sender twice in a row).
    synchronous_seen: bool,
    /// The last conclusive snapshot found the standby streaming and within both limits.
    in_sync: bool,
    mark: Option<Mark>,
}

impl Replication {
    pub fn new(config: ReplicationConfig) -> Replication {
        Replication {
            config,
            latest: None,
            last_known: None,
            pending: VecDeque::new(),
            local_received: None,
            flushed: None,
            not_streaming_in_a_row: 0,
            synchronous_seen: false,
            in_sync: false,
            mark: None,
        }
    }

    pub fn mark(&self) -> Option<Mark> {
        self.mark
    }

    /// The mark kept on disk from before a restart.
    pub fn restore_mark(&mut self, primary: Option<u64>, had: Option<u64>, now: Instant) {
        self.mark = Some(Mark {
            reason: MarkReason::BeforeRestart,
            since: now,
            primary,
            had,
        });
        self.in_sync = false;
    }

    /// What the standby has: the higher of its own received position and the primary's view
    /// of its flush position (WAL on its disk stays there).
    fn have(&self) -> Option<u64> {
        max_known(self.local_received, self.flushed)
    }

    fn prune_arrived(&mut self) {
        if let Some(have) = self.have() {
            while self.pending.front().is_some_and(|&(_, p)| p <= have) {
                self.pending.pop_front();
            }
        }
    }

    /// A sample of the local standby: the WAL it received and flushed.
    pub fn local_standby(&mut self, received: Option<u64>) {
        self.local_received = max_known(self.local_received, received);
        self.prune_arrived();
    }

    /// The local database is a primary now (promoted): nothing is missing any more.
    pub fn local_primary(&mut self) -> Option<MarkChange> {
        self.pending.clear();
        self.latest = None;
        self.last_known = None;
        self.local_received = None;
        self.flushed = None;
        self.in_sync = false;
        self.mark.take().map(|_| MarkChange::Cleared)
    }

    /// A snapshot of the live primary (`None`: its position could not be read).
    pub fn primary_seen(
        &mut self,
        position: Option<PrimaryPosition>,
        now: Instant,
    ) -> Option<MarkChange> {
        self.latest = Some(Snapshot { at: now, position });
        let position = position?;
        let flush = position.standby.and_then(|row| row.flush);
        self.flushed = max_known(self.flushed, flush);
        if self.last_known.is_none_or(|(_, p)| position.current >= p) {
            self.last_known = Some((now, position.current));
        }
        if self
            .pending
            .back()
            .is_none_or(|&(_, p)| position.current > p)
        {
            if self.pending.len() >= PENDING_CAP {
                self.pending.remove(1);
            }
            self.pending.push_back((now, position.current));
        }
        self.prune_arrived();
        if position
            .standby
            .is_some_and(|row| row.streaming && row.synchronous)
        {
            // Nothing acknowledged is missing: positions seen so far are not owed.
            self.pending.clear();
        }
        let have = self.have();
        let streaming = position.standby.is_some_and(|row| row.streaming);
        self.not_streaming_in_a_row = if streaming {
            0
        } else {
            self.not_streaming_in_a_row.saturating_add(1)
        };
        let lag = have.map(|h| position.current.saturating_sub(h));
        let missing_for = self
            .pending
            .front()
            .map(|&(at, _)| now.saturating_duration_since(at));
        // The primary waits for this standby (`sync_state` sync): every commit it acknowledged
        // is on the standby's disk, so bytes beyond it are WAL of commits not yet acknowledged
        // (in flight), and WAL that does not arrive holds commits back instead of losing them.
        let synchronous = position
            .standby
            .is_some_and(|row| row.streaming && row.synchronous);
        if streaming {
            self.synchronous_seen = synchronous;
        } else if self.not_streaming_in_a_row >= 2 {
            self.synchronous_seen = false;
        }
        let out = if self.not_streaming_in_a_row >= 2 {
            Some(MarkReason::NotStreaming)
        } else if synchronous {
            None
        } else if let Some(bytes) = lag.filter(|&l| l > self.config.maximum_lag) {
            Some(MarkReason::TooFarBehind { bytes })
        } else {
            missing_for
                .filter(|&a| a >= self.config.maximum_lag_time)
                .map(|age| MarkReason::WalNotArriving {
                    age_ms: age.as_millis() as u64,
                })
        };
        match out {
            Some(reason) => {
                self.in_sync = false;
                if self.mark.is_none() {
                    let mark = Mark {
                        reason,
                        since: now,
                        primary: Some(position.current),
                        had: have,
                    };
                    self.mark = Some(mark);
                    return Some(MarkChange::Marked(mark));
                }
                None
            }
            // One snapshot without a walsender is not conclusive (see the module's notes).
            None if !streaming => None,
            None if lag.is_none() => {
                self.in_sync = false;
                None
            }
            None => {
                self.in_sync = true;
                // Caught up: it has everything the primary had when it fell out, too.
                let caught_up = self
                    .mark
                    .is_some_and(|m| m.primary.is_none_or(|p| have.is_some_and(|h| h >= p)));
                if caught_up {
                    self.mark = None;
                    return Some(MarkChange::Cleared);
                }
                None
            }
        }
    }

    /// Whether the standby may be promoted, asked once the primary is known gone.
    pub fn promotable(&self) -> Result<(), Unpromotable> {
        // Synchronous replication: only a standby the primary waited for holds every commit it
        // acknowledged; once it stopped waiting, what it had when last seen proves nothing.
        if self.config.synchronous_required && !self.synchronous_seen {
            if let Some(mark) = self.mark {
                return Err(Unpromotable::Behind(mark));
            }
            return Err(if self.latest.is_none() {
                Unpromotable::NeverObserved
            } else {
                Unpromotable::NotSynchronous
            });
        }
        // It holds everything the primary was last seen with: nothing known is missing.
        if let (Some(have), Some((_, known))) = (self.have(), self.last_known) {
            if have >= known {
                return Ok(());
            }
        }
        if let Some(mark) = self.mark {
            return Err(Unpromotable::Behind(mark));
        }
        let Some(latest) = self.latest else {
            return Err(Unpromotable::NeverObserved);
        };
        if latest.position.is_none() || self.have().is_none() {
            return Err(Unpromotable::Unreadable);
        }
        if self.in_sync {
            Ok(())
        } else {
            Err(Unpromotable::NotInSync)
        }
    }

    pub fn status(&self) -> ReplicationStatus {
        let position = self.latest.and_then(|s| s.position);
        let have = self.have();
        let primary = self.last_known.map(|(_, p)| p);
        ReplicationStatus {
            primary,
            primary_seen_at: self.latest.map(|s| s.at),
            have,
            lag_bytes: match (primary, have) {
                (Some(p), Some(h)) => Some(p.saturating_sub(h)),
                _ => None,
            },
            missing_since: self.pending.front().map(|&(at, _)| at),
            row: position.and_then(|p| p.standby),
            mark: self.mark,
        }
    }

    /// When a pending position would cross `maximum_lag_time` (a snapshot then decides).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.pending
            .front()
            .map(|&(at, _)| at + self.config.maximum_lag_time)
    }
}

fn max_known(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Bytes for people: "512 bytes", "3.1 MB" (decimal, as PostgreSQL's `pg_size_pretty` is not).
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [(&str, f64); 3] = [("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    for (unit, size) in UNITS {
        if bytes as f64 >= size {
            return format!("{:.1} {unit}", bytes as f64 / size);
        }
    }
    format!("{bytes} bytes")
}

/// An LSN as PostgreSQL writes it: `X/Y` in hex.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ReplicationConfig {
        ReplicationConfig {
            maximum_lag: 1000,
            maximum_lag_time: Duration::from_secs(1),
            synchronous_required: false,
        }
    }

    fn streaming(current: u64, flush: u64) -> Option<PrimaryPosition> {
        Some(PrimaryPosition {
            current,
            standby: Some(StandbyRow {
                streaming: true,
                synchronous: false,
                flush: Some(flush),
            }),
        })
    }

    fn without_walsender(current: u64) -> Option<PrimaryPosition> {
        Some(PrimaryPosition {
            current,
            standby: None,
        })
    }

    #[test]
    fn a_streaming_standby_in_step_is_promotable() {
        let t = Instant::now();
        let mut r = Replication::new(config());
        assert_eq!(r.promotable(), Err(Unpromotable::NeverObserved));
        assert_eq!(r.primary_seen(streaming(5000, 4900), t), None);
        assert_eq!(r.promotable(), Ok(()));
        assert_eq!(r.status().lag_bytes, Some(100));
    }

    #[test]
    fn one_snapshot_without_a_walsender_is_not_yet_a_mark_two_are() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Replication::new(config());
        r.primary_seen(streaming(5000, 5000), t);
        assert_eq!(r.primary_seen(without_walsender(5000), t + ms(100)), None);
        assert_eq!(r.promotable(), Ok(()), "nothing known is missing");
        let change = r.primary_seen(without_walsender(5200), t + ms(200));
        assert!(matches!(
            change,
            Some(MarkChange::Marked(Mark {
                reason: MarkReason::NotStreaming,
                primary: Some(5200),
                had: Some(5000),
                ..
            }))
        ));
        assert!(matches!(r.promotable(), Err(Unpromotable::Behind(_))));
    }

    #[test]
    fn wal_that_does_not_arrive_within_the_lag_time_marks_a_silent_cut() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Replication::new(config());
        r.primary_seen(streaming(5000, 5000), t);
        // Both ends still say streaming; the flush position stops moving; 100 bytes a step.
        for step in 1..10 {
            assert_eq!(
                r.primary_seen(streaming(5000 + 100 * step, 5000), t + ms(100 * step)),
                None,
                "step {step}: under the byte and the time limits"
            );
        }
        let change = r.primary_seen(streaming(6000, 5000), t + ms(1100));
        assert!(matches!(
            change,
            Some(MarkChange::Marked(Mark {
                reason: MarkReason::WalNotArriving { age_ms: 1000 },
                ..
            }))
        ));
    }

    #[test]
    fn too_far_behind_marks_at_once_and_catching_up_clears() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Replication::new(config());
        let change = r.primary_seen(streaming(9000, 5000), t);
        assert!(matches!(
            change,
            Some(MarkChange::Marked(Mark {
                reason: MarkReason::TooFarBehind { bytes: 4000 },
                ..
            }))
        ));
        r.local_standby(Some(8500));
        assert!(
            r.primary_seen(streaming(9100, 8500), t + ms(100)).is_none(),
            "600 bytes behind, but the mark stays until a snapshot finds it caught up"
        );
        assert_eq!(
            r.primary_seen(streaming(9100, 9100), t + ms(200)),
            Some(MarkChange::Cleared)
        );
        assert_eq!(r.promotable(), Ok(()));
    }

    #[test]
    fn a_marked_standby_that_reaches_the_last_known_position_is_promotable() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Replication::new(config());
        r.primary_seen(without_walsender(7000), t);
        r.primary_seen(without_walsender(7000), t + ms(100));
        r.local_standby(Some(6000));
        assert!(matches!(r.promotable(), Err(Unpromotable::Behind(_))));
        // The primary is gone; the standby's received position reaches what it was last seen at.
        r.local_standby(Some(7000));
        assert_eq!(r.promotable(), Ok(()));
    }

    #[test]
    fn an_unreadable_position_is_unknown_and_not_promotable() {
        let t = Instant::now();
        let mut r = Replication::new(config());
        r.primary_seen(None, t);
        assert_eq!(r.promotable(), Err(Unpromotable::Unreadable));
        let hidden = Some(PrimaryPosition {
            current: 100,
            standby: Some(StandbyRow {
                streaming: true,
                synchronous: false,
                flush: None,
            }),
        });
        r.primary_seen(hidden, t);
        assert_eq!(r.promotable(), Err(Unpromotable::Unreadable));
    }

    #[test]
    fn a_restored_mark_holds_until_caught_up() {
        let t = Instant::now();
        let mut r = Replication::new(config());
        r.restore_mark(Some(7000), Some(6000), t);
        assert!(matches!(r.promotable(), Err(Unpromotable::Behind(_))));
        assert_eq!(
            r.primary_seen(streaming(7100, 7100), t),
            Some(MarkChange::Cleared)
        );
    }

    #[test]
    fn a_synchronous_standby_beyond_the_byte_lag_is_still_promotable() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let sync = |current, flush| {
            Some(PrimaryPosition {
                current,
                standby: Some(StandbyRow {
                    streaming: true,
                    synchronous: true,
                    flush: Some(flush),
                }),
            })
        };
        let mut r = Replication::new(ReplicationConfig {
            synchronous_required: true,
            ..config()
        });
        // 4000 bytes in flight (more than maximum_lag 1000), for longer than maximum_lag_time.
        assert_eq!(r.primary_seen(sync(9000, 5000), t), None);
        assert_eq!(r.primary_seen(sync(9000, 5000), t + ms(1500)), None);
        assert_eq!(r.mark(), None);
        assert_eq!(r.promotable(), Ok(()));
        // Once the primary stops waiting for it, it is not promotable at once, and the same lag
        // marks it.
        assert!(matches!(
            r.primary_seen(streaming(9000, 5000), t + ms(1600)),
            Some(MarkChange::Marked(_))
        ));
    }

    #[test]
    fn with_synchronous_replication_only_a_standby_listed_synchronous_is_promotable() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Replication::new(ReplicationConfig {
            synchronous_required: true,
            ..config()
        });
        // Caught up, but the primary commits alone (async row): it may acknowledge more alone.
        r.primary_seen(streaming(5000, 5000), t);
        assert_eq!(r.promotable(), Err(Unpromotable::NotSynchronous));
        let sync = Some(PrimaryPosition {
            current: 5100,
            standby: Some(StandbyRow {
                streaming: true,
                synchronous: true,
                flush: Some(5100),
            }),
        });
        r.primary_seen(sync, t + ms(100));
        assert_eq!(r.promotable(), Ok(()));
        // A primary being killed loses its WAL sender a moment before it stops answering: one
        // snapshot without it changes nothing.
        r.primary_seen(without_walsender(5100), t + ms(200));
        assert_eq!(r.promotable(), Ok(()));
    }

    #[test]
    fn sizes_and_positions_read_like_postgresql() {
        assert_eq!(bytes_text(88), "88 bytes");
        assert_eq!(bytes_text(3_100_000), "3.1 MB");
        assert_eq!(lsn_text(0x05A3_F2C8), "0/5A3F2C8");
        assert_eq!(lsn_text(0x1_0000_0010), "1/10");
    }
}
