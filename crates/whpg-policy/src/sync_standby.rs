//! Synchronous replication managed by the primary's daemon (`[replication] mode`, postgres
//! flavor): whether `synchronous_standby_names` should name the pair's standby, so a commit is
//! acknowledged only once the standby has it on disk, or be empty, so the primary commits alone.
//!
//! Requiring the standby is easy: while it streams and is within `maximum_lag`. Relaxing is the
//! hard part. When its standby vanishes, the primary cannot tell a dead standby host from a
//! partition in which the standby is about to be promoted; a relaxed primary that keeps the VIP
//! in a partition acknowledges commits the new primary will never have. So the primary commits
//! alone only on evidence that the standby cannot be promoted, or (`sync`) after `timeout`:
//!
//! | what the primary sees (first row that applies) | `sync` | `sync-strict` |
//! | --- | --- | --- |
//! | the standby's host does not answer at all (`Unreachable`) for `timeout` | alone | (next rows) |
//! | the standby streams, within `maximum_lag` | require it | require it |
//! | this node was just promoted: the peer is the old primary (it needs a rejoin) | alone at once | alone at once |
//! | for `not_streaming_grace`, the primary listed no streaming WAL sender for the standby while every probe of its host had an answer; the latest says its database refuses or is not accepting, or it is a standby | alone | alone |
//! | the standby's host does not answer at all | unchanged: writes wait | unchanged: writes wait, for good |
//! | anything else (a probe that failed for a local reason, an unreadable row) | unchanged | unchanged |
//!
//! Why such a standby cannot be promoted: a host that answers our probe can reach us (the TCP
//! handshake went both ways), and one that answers `not_streaming_grace` after its WAL sender
//! went has been reachable through it, so its daemon's probes of this primary saw it alive and
//! listing no streaming WAL sender for it, and marked it not promotable after two such snapshots
//! ([`crate::replication`], kept on disk); the grace covers those two probes and one still in
//! flight. An answer from before the grace is no evidence: the hosts may have lost each other
//! in between, before the standby could mark itself. A standby whose database is down cannot be
//! promoted before it runs again either, and then it still carries the mark. That mark is what
//! the standby reads when it comes back: a relaxed primary lists it as not streaming, or
//! behind, and never as synchronous.
//!
//! Nothing is decided before the first observation: at start-up the setting is left as it is
//! until the standby is seen streaming or one of the rows above applies, so a restarted daemon
//! never relaxes on ignorance.

use std::time::{Duration, Instant};

use crate::observe::PeerSample;
use crate::replication::{PrimaryPosition, StandbyRow};

/// `[replication] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// The daemon never touches `synchronous_standby_names`.
    #[default]
    Async,
    /// Commits wait for the standby; alone on evidence it cannot be promoted or after the
    /// timeout.
    Sync,
    /// Like `sync`, but never alone while the standby's host does not answer.
    SyncStrict,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Async => "async",
            SyncMode::Sync => "sync",
            SyncMode::SyncStrict => "sync-strict",
        }
    }
}

/// Settings, from `[replication]` and `[failover]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    pub mode: SyncMode,
    /// `sync`: how long the standby's host may not answer before the primary commits alone.
    pub timeout: Duration,
    /// The standby is required only once it is within this many bytes (`failover.maximum_lag`).
    pub maximum_lag: u64,
    /// The standby answers but is not streaming: alone after this (its own daemon has marked
    /// itself not promotable by then).
    pub not_streaming_grace: Duration,
    /// A setting that failed is tried again after this.
    pub retry_delay: Duration,
}

impl SyncConfig {
    /// Asynchronous replication: nothing is ever set.
    pub fn disabled() -> SyncConfig {
        SyncConfig {
            mode: SyncMode::Async,
            timeout: Duration::from_secs(10),
            maximum_lag: 0,
            not_streaming_grace: Duration::from_secs(1),
            retry_delay: Duration::from_secs(2),
        }
    }
}

/// What `synchronous_standby_names` should say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTarget {
    /// The standby's `application_name`, as the primary lists it: commits wait for it.
    Standby,
    /// Empty: the primary commits alone.
    Alone,
}

/// Why the primary commits alone, or why it requires the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncReason {
    /// The standby streams within `maximum_lag`.
    StandbyStreaming,
    /// This node was promoted: the peer is the old primary and cannot be promoted.
    Promoted,
    /// The standby's host answers and its database does not.
    StandbyDatabaseDown,
    /// The standby answers as a standby but has not streamed for this long.
    StandbyNotStreaming { for_ms: u64 },
    /// `sync`: the standby's host has not answered for this long (`sync_timeout`).
    StandbyUnreachable { for_ms: u64 },
}

impl std::fmt::Display for SyncReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncReason::StandbyStreaming => f.write_str("the standby streams and is caught up"),
            SyncReason::Promoted => {
                f.write_str("this node was promoted: the peer is the old primary, not a standby")
            }
            SyncReason::StandbyDatabaseDown => {
                f.write_str("the standby's host answers and its database is down")
            }
            SyncReason::StandbyNotStreaming { for_ms } => write!(
                f,
                "the standby answers but has not streamed for {for_ms} ms: it has marked itself \
                 not promotable"
            ),
            SyncReason::StandbyUnreachable { for_ms } => write!(
                f,
                "the standby's host has not answered for {for_ms} ms (replication.sync_timeout)"
            ),
        }
    }
}

/// What `/status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    pub mode: SyncMode,
    /// What the daemon set last, confirmed (`None`: nothing set since start).
    pub set: Option<SyncTarget>,
    /// The value it set `synchronous_standby_names` to (`""`: alone).
    pub value: Option<String>,
    /// Why it was set so.
    pub reason: Option<SyncReason>,
    /// When it was set.
    pub since: Option<Instant>,
    /// The latest attempt failed: why, and what to fix.
    pub error: Option<String>,
    /// The primary's latest row for its standby says `sync_state` sync: commits wait for it.
    pub waiting_for_standby: Option<bool>,
}

/// The rules' state on a primary.
#[derive(Debug, Clone)]
pub struct SyncStandby {
    config: SyncConfig,
    set: Option<SyncTarget>,
    value: Option<String>,
    reason: Option<SyncReason>,
    since: Option<Instant>,
    /// What the rules want now (sticky: kept until another row of the table applies).
    want: Option<(SyncTarget, SyncReason)>,
    in_flight: Option<SyncTarget>,
    retry_at: Option<Instant>,
    error: Option<String>,
    row: Option<StandbyRow>,
    current: Option<u64>,
    /// Since when the primary has listed no streaming WAL sender for the standby.
    not_streaming_since: Option<Instant>,
    /// Since when the standby's host has not answered (its last answer before the silence).
    unreachable_since: Option<Instant>,
    /// The latest answer of the standby's host.
    peer: Option<PeerSample>,
    /// When its host last answered as a standby or with its database down.
    answered_at: Option<Instant>,
    /// Since when every probe of its host has had an answer (`None`: the latest had none).
    answering_since: Option<Instant>,
    /// When its host last answered at all.
    last_answer_at: Option<Instant>,
}

impl SyncStandby {
    pub fn new(config: SyncConfig) -> SyncStandby {
        SyncStandby {
            config,
            set: None,
            value: None,
            reason: None,
            since: None,
            want: None,
            in_flight: None,
            retry_at: None,
            error: None,
            row: None,
            current: None,
            not_streaming_since: None,
            unreachable_since: None,
            peer: None,
            answered_at: None,
            answering_since: None,
            last_answer_at: None,
        }
    }

    pub fn mode(&self) -> SyncMode {
        self.config.mode
    }

    /// A sample of the local primary: its position and its standby's row (`None`: not read,
    /// which changes nothing).
    pub fn local_primary(&mut self, position: Option<PrimaryPosition>, now: Instant) {
        let Some(position) = position else { return };
        self.current = Some(position.current);
        self.row = position.standby;
        if position.standby.is_some_and(|row| row.streaming) {
            self.not_streaming_since = None;
        } else {
            self.not_streaming_since.get_or_insert(now);
        }
    }

    /// The local database is not a primary (any more): what was seen of a standby is void.
    pub fn local_not_primary(&mut self) {
        self.row = None;
        self.current = None;
        self.not_streaming_since = None;
    }

    /// The peer's database, as this node's probe saw it.
    pub fn peer(&mut self, sample: PeerSample, now: Instant) {
        match sample {
            // Our own failure: evidence of nothing.
            PeerSample::Unknown => {}
            PeerSample::Unreachable => {
                // Silent since its last answer: this result comes a probe timeout later.
                let since = self.last_answer_at.unwrap_or(now);
                self.unreachable_since.get_or_insert(since);
                self.answering_since = None;
                self.peer = Some(sample);
            }
            _ => {
                self.unreachable_since = None;
                self.answering_since.get_or_insert(now);
                self.last_answer_at = Some(now);
                self.peer = Some(sample);
                if matches!(sample, PeerSample::Standby | PeerSample::DatabaseDown) {
                    self.answered_at = Some(now);
                }
            }
        }
    }

    /// This node's promotion was verified: the peer is the old primary now.
    pub fn promoted(&mut self) {
        self.want = Some((SyncTarget::Alone, SyncReason::Promoted));
        self.local_not_primary();
    }

    /// The job's answer to [`SyncStandby::decide`]'s setting.
    pub fn finished(&mut self, target: SyncTarget, result: Result<String, String>, now: Instant) {
        self.in_flight = None;
        match result {
            Ok(value) => {
                self.set = Some(target);
                self.value = Some(value);
                self.reason = self.want.map(|(_, why)| why);
                self.since = Some(now);
                self.error = None;
                self.retry_at = None;
            }
            Err(e) => {
                self.error = Some(e);
                self.retry_at = Some(now + self.config.retry_delay);
            }
        }
    }

    /// Which row of the module's table applies now, if one does.
    fn rule(&self, now: Instant) -> Option<(SyncTarget, SyncReason)> {
        let c = &self.config;
        let caught_up = self.row.is_some_and(|row| {
            row.streaming
                && match (row.flush, self.current) {
                    (Some(flush), Some(current)) => current.saturating_sub(flush) <= c.maximum_lag,
                    // Hidden from our user: streaming is all that is known.
                    _ => true,
                }
        });
        let ms = |since: Instant| now.saturating_duration_since(since).as_millis() as u64;
        // First: in a silent partition the WAL sender still says "streaming" (until
        // `wal_sender_timeout`) while commits wait for acknowledgements that never come.
        if c.mode == SyncMode::Sync && self.peer == Some(PeerSample::Unreachable) {
            if let Some(since) = self
                .unreachable_since
                .filter(|&s| now.saturating_duration_since(s) >= c.timeout)
            {
                return Some((
                    SyncTarget::Alone,
                    SyncReason::StandbyUnreachable { for_ms: ms(since) },
                ));
            }
        }
        // Streaming beats a probe that says "not accepting": a standby with `hot_standby = off`
        // refuses connections (57P03) while it streams.
        if caught_up {
            return Some((SyncTarget::Standby, SyncReason::StandbyStreaming));
        }
        // Evidence: for the whole grace, the standby's host kept answering while the primary
        // listed no streaming WAL sender for it, so its daemon, reaching this primary too, saw
        // that twice and marked it not promotable. Answers from before a silence do not count:
        // while the hosts could not reach each other, the standby saw nothing.
        let since = self.not_streaming_since?.max(self.answering_since?);
        let evidence = self
            .answered_at
            .is_some_and(|at| at >= since + c.not_streaming_grace);
        match self.peer {
            Some(PeerSample::DatabaseDown) if evidence => {
                Some((SyncTarget::Alone, SyncReason::StandbyDatabaseDown))
            }
            Some(PeerSample::Standby) if evidence => Some((
                SyncTarget::Alone,
                SyncReason::StandbyNotStreaming { for_ms: ms(since) },
            )),
            _ => None,
        }
    }

    /// While the local database is a healthy primary: what the rules want now (sticky), without
    /// asking for it.
    pub fn wants(&mut self, primary: bool, now: Instant) -> Option<SyncTarget> {
        if self.config.mode == SyncMode::Async || !primary {
            return None;
        }
        if let Some(rule) = self.rule(now) {
            self.want = Some(rule);
        }
        self.want.map(|(target, _)| target)
    }

    /// This primary set `synchronous_standby_names` to its standby and lists it streaming and
    /// `sync`: commits wait for it.
    pub fn standby_listed_sync(&self) -> bool {
        self.set == Some(SyncTarget::Standby)
            && self.row.is_some_and(|row| row.streaming && row.synchronous)
    }

    /// While the local database is a healthy primary: the setting to carry out now, if any
    /// (answer with [`SyncStandby::finished`]). `may_relax` false holds a setting to empty
    /// (with an arbiter: until etcd's sync record says none).
    pub fn decide(&mut self, primary: bool, may_relax: bool, now: Instant) -> Option<SyncTarget> {
        let target = self.wants(primary, now)?;
        if target == SyncTarget::Alone && !may_relax {
            return None;
        }
        if self.in_flight.is_some()
            || self.set == Some(target)
            || self.retry_at.is_some_and(|at| now < at)
        {
            return None;
        }
        self.in_flight = Some(target);
        Some(target)
    }

    /// When a row of the table could start to apply with no new input (each of them: the
    /// caller drops those it has already evaluated).
    pub fn wakeups(&self) -> Vec<Instant> {
        if self.config.mode == SyncMode::Async {
            return Vec::new();
        }
        let c = &self.config;
        [
            self.retry_at,
            self.not_streaming_since.map(|s| s + c.not_streaming_grace),
            self.unreachable_since
                .filter(|_| c.mode == SyncMode::Sync)
                .map(|s| s + c.timeout),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn status(&self) -> SyncStatus {
        SyncStatus {
            mode: self.config.mode,
            set: self.set,
            value: self.value.clone(),
            reason: self.reason,
            since: self.since,
            error: self.error.clone(),
            waiting_for_standby: self.row.map(|row| row.synchronous),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: SyncMode) -> SyncConfig {
        SyncConfig {
            mode,
            timeout: Duration::from_secs(10),
            maximum_lag: 1000,
            not_streaming_grace: Duration::from_millis(500),
            retry_delay: Duration::from_secs(2),
        }
    }

    fn position(streaming: bool, current: u64, flush: u64) -> Option<PrimaryPosition> {
        Some(PrimaryPosition {
            current,
            standby: Some(StandbyRow {
                streaming,
                synchronous: false,
                flush: Some(flush),
            }),
        })
    }

    #[test]
    fn async_mode_never_sets_anything() {
        let t = Instant::now();
        let mut s = SyncStandby::new(config(SyncMode::Async));
        s.local_primary(position(true, 100, 100), t);
        assert_eq!(s.decide(true, true, t), None);
        assert!(s.wakeups().is_empty());
    }

    #[test]
    fn a_standby_too_far_behind_is_not_required_until_it_catches_up() {
        let t = Instant::now();
        let mut s = SyncStandby::new(config(SyncMode::SyncStrict));
        s.local_primary(position(true, 5000, 1000), t);
        assert_eq!(
            s.decide(true, true, t),
            None,
            "4000 bytes behind, more than 1000"
        );
        s.local_primary(position(true, 5000, 4500), t);
        assert_eq!(s.decide(true, true, t), Some(SyncTarget::Standby));
        assert_eq!(s.decide(true, true, t), None, "in flight: not twice");
        s.finished(SyncTarget::Standby, Ok("\"b\"".into()), t);
        assert_eq!(s.status().set, Some(SyncTarget::Standby));
        assert_eq!(s.decide(true, true, t), None, "already set");
    }

    #[test]
    fn a_failed_setting_is_retried_after_the_delay() {
        let t = Instant::now();
        let mut s = SyncStandby::new(config(SyncMode::Sync));
        s.local_primary(position(true, 100, 100), t);
        assert_eq!(s.decide(true, true, t), Some(SyncTarget::Standby));
        s.finished(SyncTarget::Standby, Err("permission denied".into()), t);
        assert_eq!(s.decide(true, true, t + Duration::from_secs(1)), None);
        assert!(s.wakeups().contains(&(t + Duration::from_secs(2))));
        assert_eq!(
            s.decide(true, true, t + Duration::from_secs(2)),
            Some(SyncTarget::Standby)
        );
        assert_eq!(s.status().error.as_deref(), Some("permission denied"));
    }
}
