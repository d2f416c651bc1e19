//! Background observers: the local database, the peer's database, the local postmaster and the
//! witnesses, each on its own task and cadence, each reporting plain facts to the policy.
//!
//! They keep the policy's knowledge fresh so that a decision never waits on a probe (design:
//! "decisions never wait on probes"). Every probe is bounded by its timeout; a slow one skips
//! ticks instead of piling up.
//!
//! The local database's monitor also carries the default postgres promotion
//! ([`PromoteSignal`]): its held session is already logged in when the promotion is due.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::{interval, MissedTickBehavior};
use tracing::{info, warn};
use whpg_policy::{Input, LocalSample, PeerSample, PrimaryPosition, StandbyRow, WalReceiver};

use crate::config::{Config, Health};
use crate::db::lsn::Lsn;
use crate::db::postmaster::PostmasterStatus;
use crate::db::query::{Role, StandbyIdentity, WalReceiverStatus, WalSenderRow};
use crate::db::{
    observe, probe, ConnParams, DbFacts, HeldSession, PostmasterPid, PostmasterWatch, ProbeOutcome,
    ProbeTarget, QueryError,
};
use crate::net::witness;

/// At most one warning per this period per observer for a repeating problem.
const WARN_PERIOD: Duration = Duration::from_secs(30);

/// Start a round of an observer at once, without waiting for its next tick.
#[derive(Clone, Default)]
pub struct Nudges {
    /// A witness round (a no-op without witnesses).
    pub witnesses: Arc<Notify>,
    /// A round of the local database's monitor.
    pub local: Arc<Notify>,
    /// A round of the peer database's monitor (after an advert from the peer). It restarts the
    /// probe interval, and is skipped when the last round started less than half an interval
    /// ago.
    pub peer: Arc<Notify>,
}

/// Asks the local database's monitor to signal a promotion on its held session
/// ([`Monitor::signal_promotion`]).
#[derive(Clone)]
pub struct PromoteSignal(mpsc::Sender<PromoteRequest>);

/// One promote request: where the monitor sends its answer.
type PromoteRequest = oneshot::Sender<Result<(), SignalError>>;

/// Why the held session did not carry the promote signal.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("no monitoring session is held to the local database")]
    NoSession,
    #[error("the local database's monitor did not answer within {0:?}")]
    NoAnswer(Duration),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl PromoteSignal {
    /// The monitor's answer, within `wait` (it may be in the middle of a round).
    pub async fn ask(&self, wait: Duration) -> Result<(), SignalError> {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            self.0.send(reply).await.ok()?;
            answer.await.ok()
        };
        match tokio::time::timeout(wait, asked).await {
            Ok(Some(result)) => result,
            _ => Err(SignalError::NoAnswer(wait)),
        }
    }
}

/// Start every observer; they stop when the receiving end of `tx` is dropped.
pub fn spawn_all(config: &Config, tx: &mpsc::Sender<Input>) -> (Nudges, PromoteSignal) {
    let nudges = Nudges::default();
    let (promote_tx, promote_rx) = mpsc::channel(1);
    tokio::spawn(local_database(
        config.clone(),
        tx.clone(),
        Arc::clone(&nudges.local),
        promote_rx,
    ));
    if let Some(peer) = config.peer() {
        tokio::spawn(peer_database(
            config.clone(),
            IpAddr::V4(peer.address),
            tx.clone(),
            Arc::clone(&nudges.peer),
        ));
    }
    tokio::spawn(postmaster(config.clone(), tx.clone()));
    if config.witness.enabled() {
        tokio::spawn(witnesses(
            config.clone(),
            tx.clone(),
            Arc::clone(&nudges.witnesses),
        ));
    }
    (nudges, PromoteSignal(promote_tx))
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut ticker = interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker
}

/// Rate-limits a repeating warning.
struct Warner {
    last: Option<tokio::time::Instant>,
}

impl Warner {
    fn new() -> Warner {
        Warner { last: None }
    }

    fn warn(&mut self, text: impl FnOnce() -> String) {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= WARN_PERIOD)
        {
            self.last = Some(now);
            warn!("{}", text());
        }
    }
}

/// What one round of watching a database found: the raw evidence, before it becomes a
/// [`LocalSample`] or [`PeerSample`] ([`local_sample`], [`peer_sample`]).
#[derive(Debug)]
pub enum Seen {
    /// A logged-in answer: on the held session, or on a new connection; with a primary's
    /// position and the pair's standby's walsender row when they were read.
    Facts {
        facts: DbFacts,
        position: Option<(Lsn, Option<WalSenderRow>)>,
    },
    /// A logged-in answer with the role only (the held session's cheaper question).
    Role(Role),
    /// The startup-packet probe's answer, when it did not say "accepting".
    Probe(ProbeOutcome),
    /// Accepting, but it could not be queried (`local_errno`: for a reason of our own).
    Unqueryable {
        reason: String,
        local_errno: Option<i32>,
    },
    /// The local `postmaster.pid` says the server is shutting down.
    ShuttingDown,
}

impl Seen {
    /// Facts without the replication rows (the held session's state row).
    fn facts_only(facts: DbFacts) -> Seen {
        Seen::Facts {
            facts,
            position: None,
        }
    }

    fn unqueryable(e: &QueryError) -> Seen {
        Seen::Unqueryable {
            reason: e.to_string(),
            local_errno: e.local_errno(),
        }
    }
}

/// The local database's sample for what was seen. A failure of our own is unknown.
pub fn local_sample(seen: &Seen) -> LocalSample {
    match seen {
        Seen::Facts { facts, position } => local_from_facts(facts, *position),
        Seen::Role(Role::Primary {
            timeline,
            current,
            standby,
        }) => LocalSample::Primary {
            timeline: Some(*timeline),
            position: policy_position(current.map(|c| (c, *standby))),
        },
        // The monitor asks the state row of a local standby; without it, no WAL receiver facts.
        Seen::Role(Role::InRecovery) => LocalSample::Standby {
            timeline: None,
            wal_receiver: None,
            received: None,
        },
        Seen::ShuttingDown => LocalSample::NotAccepting,
        Seen::Unqueryable {
            local_errno: Some(_),
            ..
        } => LocalSample::Unknown,
        // Accepting but unqueryable: the role cannot be told, so it cannot serve.
        Seen::Unqueryable { .. } => LocalSample::Down,
        Seen::Probe(outcome) => match outcome {
            ProbeOutcome::LocalFailure { .. } => LocalSample::Unknown,
            // Accepting without a login attempt does not happen; count it as serving nothing.
            ProbeOutcome::Accepting => LocalSample::Down,
            ProbeOutcome::StandbyReady { .. } => LocalSample::Standby {
                timeline: None,
                wal_receiver: None,
                received: None,
            },
            ProbeOutcome::NotAccepting => LocalSample::NotAccepting,
            ProbeOutcome::Rejected { .. }
            | ProbeOutcome::Refused
            | ProbeOutcome::TimedOut
            | ProbeOutcome::Failed(_) => LocalSample::Down,
        },
    }
}

/// The peer's sample for what was seen. A failure of our own is unknown: it neither refreshes
/// nor erases the evidence that the peer's primary lives.
pub fn peer_sample(seen: &Seen) -> PeerSample {
    match seen {
        Seen::Facts { facts, .. } if facts.in_recovery => PeerSample::Standby,
        Seen::Facts { facts, position } => PeerSample::Primary {
            timeline: Some(facts.timeline),
            position: policy_position(*position),
        },
        Seen::Role(Role::InRecovery) => PeerSample::Standby,
        Seen::Role(Role::Primary {
            timeline,
            current,
            standby,
        }) => PeerSample::Primary {
            timeline: Some(*timeline),
            position: policy_position(current.map(|c| (c, *standby))),
        },
        // Only the local database has a postmaster.pid to read.
        Seen::ShuttingDown => PeerSample::DatabaseDown,
        Seen::Unqueryable {
            local_errno: Some(_),
            ..
        } => PeerSample::Unknown,
        Seen::Unqueryable { .. } => PeerSample::AcceptingUnknownRole,
        Seen::Probe(outcome) => match outcome {
            ProbeOutcome::LocalFailure { .. } => PeerSample::Unknown,
            ProbeOutcome::Accepting => PeerSample::AcceptingUnknownRole,
            ProbeOutcome::StandbyReady { .. } => PeerSample::Standby,
            ProbeOutcome::NotAccepting | ProbeOutcome::Refused => PeerSample::DatabaseDown,
            ProbeOutcome::Rejected { .. } => PeerSample::AcceptingUnknownRole,
            ProbeOutcome::TimedOut => PeerSample::Unreachable,
            ProbeOutcome::Failed(kind) => match kind {
                std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                    PeerSample::Unreachable
                }
                // Something answered, if not like PostgreSQL: the host is there.
                _ => PeerSample::DatabaseDown,
            },
        },
    }
}

/// A primary's position and its standby's walsender row, as the policy takes them.
fn policy_position(seen: Option<(Lsn, Option<WalSenderRow>)>) -> Option<PrimaryPosition> {
    seen.map(|(current, row)| PrimaryPosition {
        current: current.0,
        standby: row.map(|r| StandbyRow {
            streaming: r.streaming,
            synchronous: r.synchronous,
            flush: r.flush.map(|lsn| lsn.0),
        }),
    })
}

/// Delays between login attempts after failed ones, while the server accepts connections but
/// the login fails (wrong credentials, no slot): interval, doubling, at most [`LOGIN_BACKOFF_MAX`].
const LOGIN_BACKOFF_MAX: Duration = Duration::from_secs(2);

struct Backoff {
    base: Duration,
    failures: u32,
    next_at: Option<tokio::time::Instant>,
}

impl Backoff {
    fn new(base: Duration) -> Backoff {
        Backoff {
            base,
            failures: 0,
            next_at: None,
        }
    }

    fn ready(&self, now: tokio::time::Instant) -> bool {
        self.next_at.is_none_or(|t| now >= t)
    }

    fn failed(&mut self, now: tokio::time::Instant) {
        self.failures = self.failures.saturating_add(1);
        self.next_at = Some(now + Self::delay(self.base, self.failures));
    }

    fn reset(&mut self) {
        self.failures = 0;
        self.next_at = None;
    }

    /// The wait after `failures` failed attempts in a row.
    fn delay(base: Duration, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        base.saturating_mul(factor).min(LOGIN_BACKOFF_MAX)
    }
}

/// Watches one database: the held session when it is on (see [`crate::db::session`]), a fresh
/// startup-packet probe every `connect_interval` beside it (and every round while no session is
/// held), and for the local database its `postmaster.pid` status line each round.
pub struct Monitor {
    target: ProbeTarget,
    params: ConnParams,
    timeout: Duration,
    /// `None`: a new connection for every probe (`health.held_session = false`).
    connect_interval: Option<Duration>,
    /// The local database's data directory, whose `postmaster.pid` tells a shutdown at once.
    data_dir: Option<PathBuf>,
    session: Option<HeldSession>,
    last_fresh: Option<tokio::time::Instant>,
    backoff: Backoff,
    /// The reason of the latest failed login, repeated while the next one waits.
    login_error: Option<(String, Option<i32>)>,
    /// The latest session answer said "not in recovery": the role row is enough until it
    /// says otherwise (for the local database; the peer's always gets the role row).
    last_primary: bool,
    /// How a primary here lists the pair's standby (the other node) in `pg_stat_replication`.
    standby: StandbyIdentity,
}

impl Monitor {
    /// The local database as configured.
    pub fn local(config: &Config) -> Monitor {
        let db = &config.database;
        let monitor = Monitor::new(
            ProbeTarget::local(db),
            ConnParams::local(db),
            &config.health,
            Some(db.data_directory.clone()),
        );
        match config.peer() {
            Some(peer) => monitor.with_standby(standby_identity(peer)),
            None => monitor,
        }
    }

    /// The peer's database at `address`.
    pub fn peer(config: &Config, address: IpAddr) -> Monitor {
        let db = &config.database;
        Monitor::new(
            ProbeTarget::peer(db, address),
            ConnParams::peer(db, address),
            &config.health,
            None,
        )
        .with_standby(standby_identity(&config.local))
    }

    /// A primary seen by this monitor lists `standby` as the pair's standby.
    pub fn with_standby(mut self, standby: StandbyIdentity) -> Monitor {
        self.standby = standby;
        self
    }

    /// A monitor of `target` (probe) / `params` (login) with the `[health]` settings; with
    /// `data_dir`, the local database's `postmaster.pid` is read each round too.
    pub fn new(
        target: ProbeTarget,
        params: ConnParams,
        health: &Health,
        data_dir: Option<PathBuf>,
    ) -> Monitor {
        Monitor {
            target,
            params,
            timeout: health.timeout,
            connect_interval: health.held_session.then_some(health.connect_interval),
            data_dir,
            session: None,
            last_fresh: None,
            backoff: Backoff::new(health.interval),
            login_error: None,
            last_primary: false,
            standby: StandbyIdentity {
                address: String::new(),
                application_name: None,
            },
        }
    }

    fn facts(&self, facts: DbFacts) -> Seen {
        Seen::Facts {
            position: facts.primary_position(&self.standby),
            facts,
        }
    }

    /// Whether a monitoring session is held now.
    pub fn holds_session(&self) -> bool {
        self.session.as_ref().is_some_and(HeldSession::is_open)
    }

    /// Resolves when the held session ends (never while none is held). Cancel-safe.
    pub async fn session_ended(&mut self) {
        match &mut self.session {
            Some(session) => session.ended().await,
            None => std::future::pending().await,
        }
    }

    fn let_go(&mut self, why: &str) {
        if self.session.take().is_some() {
            info!("closed the monitoring session to {}: {why}", self.target);
        }
    }

    /// Signals a promotion on the held session. A refusal keeps the session; any other error
    /// ends it, as in a round.
    pub async fn signal_promotion(&mut self) -> Result<(), SignalError> {
        let session = match self.session.as_mut() {
            Some(session) if session.is_open() => session,
            _ => return Err(SignalError::NoSession),
        };
        let result = session.signal_promotion(self.timeout).await;
        if let Err(e) = &result {
            if e.sqlstate().is_none() {
                self.last_primary = false;
                self.let_go(&e.to_string());
            }
        }
        Ok(result?)
    }

    /// One round: what the database looks like now. Each step is bounded by the probe timeout.
    pub async fn round(&mut self) -> Seen {
        if let Some(dir) = &self.data_dir {
            if let Ok(PostmasterPid {
                status: Some(PostmasterStatus::Stopping),
                ..
            }) = PostmasterPid::read(dir)
            {
                // A smart shutdown waits for every session to end: ours must not hold it up.
                self.let_go("the server is shutting down (postmaster.pid)");
                return Seen::ShuttingDown;
            }
        }
        let Some(every) = self.connect_interval else {
            return match probe(&self.target, self.timeout).await {
                ProbeOutcome::Accepting => match observe(&self.params, self.timeout).await {
                    Ok(facts) => self.facts(facts),
                    Err(e) => Seen::unqueryable(&e),
                },
                other => Seen::Probe(other),
            };
        };
        if self.session.as_ref().is_some_and(|s| !s.is_open()) {
            let reason = self
                .session
                .as_ref()
                .and_then(HeldSession::end_error)
                .map_or_else(|| "closed".to_string(), |e| e.to_string());
            self.let_go(&format!("it ended ({reason})"));
        }
        let now = tokio::time::Instant::now();
        let fresh_due = self.session.is_none()
            || self
                .last_fresh
                .is_none_or(|t| now.duration_since(t) >= every);
        if fresh_due {
            self.last_fresh = Some(now);
            let outcome = probe(&self.target, self.timeout).await;
            if outcome != ProbeOutcome::Accepting {
                // Whatever keeps new connections out (a shutdown, a refusal, our own failure)
                // ends the session too: from here on every round probes afresh, as without one.
                self.let_go(&format!("a new connection found it {outcome}"));
                return Seen::Probe(outcome);
            }
        }
        if self.session.is_none() {
            if !self.backoff.ready(tokio::time::Instant::now()) {
                let (reason, local_errno) = self.login_error.clone().unwrap_or_default();
                return Seen::Unqueryable {
                    reason,
                    local_errno,
                };
            }
            match HeldSession::open(&self.params, self.timeout).await {
                Ok(session) => {
                    info!("holding a monitoring session to {}", self.params);
                    self.backoff.reset();
                    self.login_error = None;
                    self.session = Some(session);
                }
                Err(e) => {
                    if e.local_errno().is_none() {
                        self.backoff.failed(tokio::time::Instant::now());
                    }
                    self.login_error = Some((e.to_string(), e.local_errno()));
                    return match e {
                        QueryError::TimedOut { .. } => Seen::Probe(ProbeOutcome::TimedOut),
                        e => Seen::unqueryable(&e),
                    };
                }
            }
        }
        let Some(session) = self.session.as_mut() else {
            return Seen::Probe(ProbeOutcome::Accepting);
        };
        // The local standby's WAL receiver matters (state row); otherwise the role is enough.
        let wants_receiver = self.data_dir.is_some();
        let answer = if !wants_receiver || self.last_primary {
            match session.role(self.timeout, &self.standby).await {
                Ok(role @ Role::Primary { .. }) => Ok(Seen::Role(role)),
                Ok(Role::InRecovery) if !wants_receiver => Ok(Seen::Role(Role::InRecovery)),
                // A local primary that is in recovery now: ask for the whole state at once.
                Ok(Role::InRecovery) => session.observe(self.timeout).await.map(Seen::facts_only),
                Err(e) => Err(e),
            }
        } else {
            session.observe(self.timeout).await.map(Seen::facts_only)
        };
        match answer {
            Ok(seen) => {
                self.last_primary = match &seen {
                    Seen::Role(Role::Primary { .. }) => true,
                    Seen::Facts { facts, .. } => !facts.in_recovery,
                    _ => false,
                };
                seen
            }
            Err(e) => {
                self.last_primary = false;
                let local = e.local_errno().or_else(|| session.ended_for_local_reason());
                self.let_go(&format!("{e}"));
                if let Some(errno) = local {
                    return Seen::Unqueryable {
                        reason: e.to_string(),
                        local_errno: Some(errno),
                    };
                }
                if matches!(e, QueryError::TimedOut { .. }) {
                    return Seen::Probe(ProbeOutcome::TimedOut);
                }
                // The session broke (the server ended it, crashed, or the network reset it): a
                // new connection tells what the server is now.
                self.last_fresh = Some(tokio::time::Instant::now());
                match probe(&self.target, self.timeout).await {
                    ProbeOutcome::Accepting => Seen::unqueryable(&e),
                    other => Seen::Probe(other),
                }
            }
        }
    }
}

/// Runs `monitor` every `every`, and at once when its held session ends or `nudge` is notified
/// (not within its `min_gap` of the last round; a nudge restarts the interval either way);
/// each round's evidence goes through `sample` to the policy. Between rounds it answers
/// `promotes` (the local database's only). Returns when the policy side hangs up.
async fn watch(
    mut monitor: Monitor,
    every: Duration,
    nudge: Nudge<'_>,
    mut promotes: Option<mpsc::Receiver<PromoteRequest>>,
    tx: mpsc::Sender<Input>,
    which: &'static str,
    sample: impl Fn(&Seen) -> Input,
) {
    let mut ticker = ticker(every);
    let mut warner = Warner::new();
    let mut last_round: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = monitor.session_ended() => {}
            () = nudge.notify.notified() => {
                // A nudge restarts the interval, so later rounds keep its phase (the peer's: one
                // per advert). It runs a round unless one ran within `min_gap`, so a stream of
                // nudges, forged adverts included, costs at most one round per gap.
                ticker.reset();
                if last_round.is_some_and(|at| at.elapsed() < nudge.min_gap) {
                    continue;
                }
            }
            request = recv_promote(&mut promotes) => {
                match request {
                    Some(reply) => {
                        let _ = reply.send(monitor.signal_promotion().await);
                    }
                    None => promotes = None,
                }
                continue;
            }
        }
        let started = tokio::time::Instant::now();
        last_round = Some(started);
        let seen = monitor.round().await;
        warn_about(&mut warner, which, &monitor.target, &seen);
        crate::metrics::observe_probe(which, started.elapsed());
        if tx.send(sample(&seen)).await.is_err() {
            return;
        }
    }
}

/// What starts a round before its tick, and how soon after the last one it may.
struct Nudge<'a> {
    notify: &'a Notify,
    min_gap: Duration,
}

/// The next promote request; pending forever without a channel.
async fn recv_promote(
    promotes: &mut Option<mpsc::Receiver<PromoteRequest>>,
) -> Option<PromoteRequest> {
    match promotes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn warn_about(warner: &mut Warner, which: &str, target: &ProbeTarget, seen: &Seen) {
    let (what, consequence) = if which == "local" {
        (
            format!("local database at {target}"),
            " (check database.user, dbname, password_file and pg_hba.conf)",
        )
    } else {
        (
            format!("peer's database at {target}"),
            "; it counts as a live primary, so no promotion can happen while it answers",
        )
    };
    match seen {
        Seen::Unqueryable {
            reason,
            local_errno: Some(_),
        } => warner.warn(|| {
            format!("cannot observe the {what} for a reason of our own: {reason}; the sample is unknown (neither down nor alive)")
        }),
        Seen::Unqueryable { reason, .. } => warner.warn(|| {
            format!("the {what} accepts connections but cannot be queried: {reason}{consequence}")
        }),
        Seen::Probe(ProbeOutcome::Rejected { sqlstate }) => warner.warn(|| {
            format!("the {what} refuses our login (SQLSTATE {sqlstate}): check database.user and pg_hba.conf{consequence}")
        }),
        Seen::Probe(outcome @ ProbeOutcome::LocalFailure { .. }) => warner.warn(|| {
            format!("cannot probe the {what}: {outcome}; the sample is unknown (neither down nor alive)")
        }),
        _ => {}
    }
}

async fn local_database(
    config: Config,
    tx: mpsc::Sender<Input>,
    now: Arc<Notify>,
    promotes: mpsc::Receiver<PromoteRequest>,
) {
    let every = config.health.interval;
    let monitor = Monitor::local(&config);
    let nudge = Nudge {
        notify: &now,
        min_gap: Duration::ZERO,
    };
    watch(monitor, every, nudge, Some(promotes), tx, "local", |seen| {
        Input::Local(local_sample(seen))
    })
    .await;
}

/// How the node `node` shows in its primary's `pg_stat_replication`.
fn standby_identity(node: &crate::config::Node) -> StandbyIdentity {
    StandbyIdentity {
        address: node.address.to_string(),
        application_name: node.application_name.clone(),
    }
}

fn local_from_facts(facts: &DbFacts, position: Option<(Lsn, Option<WalSenderRow>)>) -> LocalSample {
    if !facts.in_recovery {
        return LocalSample::Primary {
            timeline: Some(facts.timeline),
            position: policy_position(position),
        };
    }
    LocalSample::Standby {
        timeline: Some(facts.timeline),
        wal_receiver: facts.wal_receiver.as_ref().map(|w| WalReceiver {
            streaming: w.status == Some(WalReceiverStatus::Streaming),
            last_message_age: w.last_msg_age,
        }),
        received: facts.receive_lsn.map(|lsn| lsn.0),
    }
}

async fn peer_database(config: Config, address: IpAddr, tx: mpsc::Sender<Input>, now: Arc<Notify>) {
    let every = config.health.interval;
    watch(
        Monitor::peer(&config, address),
        every,
        Nudge {
            notify: &now,
            min_gap: every / 2,
        },
        None,
        tx,
        "peer",
        |seen| Input::Peer(peer_sample(seen)),
    )
    .await;
}

/// Watches the local postmaster with a pidfd, so a crash is known within milliseconds.
async fn postmaster(config: Config, tx: mpsc::Sender<Input>) {
    let data_dir = config.database.data_directory.clone();
    let mut warner = Warner::new();
    loop {
        match PostmasterWatch::open(&data_dir) {
            Ok(watch) => {
                info!(
                    "watching postmaster pid {} of {}",
                    watch.pid(),
                    data_dir.display()
                );
                watch.exited().await;
                warn!(
                    "postmaster pid {} of {} exited",
                    watch.pid(),
                    data_dir.display()
                );
                if tx.send(Input::PostmasterExited).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Not running (yet, or any more): the probes report that; just look again soon.
                warner.warn(|| format!("not watching the postmaster: {e}"));
                if tx.is_closed() {
                    return;
                }
            }
        }
        tokio::time::sleep(config.health.interval).await;
    }
}

async fn witnesses(config: Config, tx: mpsc::Sender<Input>, now: Arc<Notify>) {
    let witness = &config.witness;
    let mut ticker = ticker(witness.interval);
    let mut warner = Warner::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = now.notified() => {}
        }
        let round_sent_at = std::time::Instant::now();
        let quorum = match witness::reachable(&witness.hosts, witness.timeout).await {
            Ok(round) => match round.quorum(witness.quorum) {
                Some(quorum) => quorum,
                None => {
                    warner.warn(|| format!("witness round not counted: {} of {} request(s) could not be sent for a reason of our own (ENOBUFS/ENOMEM), and {} answered", round.not_sent, witness.hosts.len(), round.answered));
                    // Unknown is not "lost": never fence on our own inability to ask.
                    continue;
                }
            },
            Err(e) => {
                match crate::db::local_failure::local_errno(&e) {
                    Some(errno) => warner.warn(|| {
                        format!(
                            "cannot ping the witnesses: {}; round not counted",
                            crate::db::local_failure::describe(errno)
                        )
                    }),
                    None => warner.warn(|| {
                        format!("cannot ping the witnesses: {e} (needs root or CAP_NET_RAW)")
                    }),
                }
                // Unknown is not "lost": never fence on our own inability to ping.
                continue;
            }
        };
        let input = Input::Witness {
            quorum,
            round_sent_at,
        };
        if tx.send(input).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::SqlState;
    use std::io::ErrorKind;

    fn unqueryable(local_errno: Option<i32>) -> Seen {
        Seen::Unqueryable {
            reason: "x".into(),
            local_errno,
        }
    }

    #[test]
    fn failures_of_our_own_are_unknown_for_both_databases() {
        for errno in crate::db::local_failure::LOCAL_ERRNOS {
            let probe = Seen::Probe(ProbeOutcome::LocalFailure { errno });
            assert_eq!(local_sample(&probe), LocalSample::Unknown);
            assert_eq!(peer_sample(&probe), PeerSample::Unknown);
            let query = unqueryable(Some(errno));
            assert_eq!(local_sample(&query), LocalSample::Unknown);
            assert_eq!(peer_sample(&query), PeerSample::Unknown);
        }
    }

    #[test]
    fn the_server_s_own_answers_keep_their_meaning() {
        let cases: &[(Seen, LocalSample, PeerSample)] = &[
            (
                Seen::Probe(ProbeOutcome::NotAccepting),
                LocalSample::NotAccepting,
                PeerSample::DatabaseDown,
            ),
            (
                Seen::Probe(ProbeOutcome::Refused),
                LocalSample::Down,
                PeerSample::DatabaseDown,
            ),
            (
                Seen::Probe(ProbeOutcome::TimedOut),
                LocalSample::Down,
                PeerSample::Unreachable,
            ),
            (
                Seen::Probe(ProbeOutcome::Failed(ErrorKind::HostUnreachable)),
                LocalSample::Down,
                PeerSample::Unreachable,
            ),
            (
                Seen::Probe(ProbeOutcome::Failed(ErrorKind::ConnectionReset)),
                LocalSample::Down,
                PeerSample::DatabaseDown,
            ),
            (
                Seen::Probe(ProbeOutcome::Rejected {
                    sqlstate: SqlState::parse("53300").unwrap(),
                }),
                LocalSample::Down,
                PeerSample::AcceptingUnknownRole,
            ),
            (
                Seen::Probe(ProbeOutcome::StandbyReady { replay_lsn: None }),
                LocalSample::Standby {
                    timeline: None,
                    wal_receiver: None,
                    received: None,
                },
                PeerSample::Standby,
            ),
            (
                unqueryable(None),
                LocalSample::Down,
                PeerSample::AcceptingUnknownRole,
            ),
            (
                Seen::ShuttingDown,
                LocalSample::NotAccepting,
                PeerSample::DatabaseDown,
            ),
        ];
        for (seen, local, peer) in cases {
            assert_eq!(local_sample(seen), *local, "{seen:?}");
            assert_eq!(peer_sample(seen), *peer, "{seen:?}");
        }
    }

    #[test]
    fn login_backoff_doubles_up_to_its_cap() {
        let base = Duration::from_millis(100);
        let delays: Vec<_> = (1..=7).map(|n| Backoff::delay(base, n)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 2000, 2000].map(Duration::from_millis)
        );
        assert_eq!(Backoff::delay(base, u32::MAX), LOGIN_BACKOFF_MAX);
        let now = tokio::time::Instant::now();
        let mut backoff = Backoff::new(base);
        assert!(backoff.ready(now));
        backoff.failed(now);
        assert!(!backoff.ready(now + Duration::from_millis(99)));
        assert!(backoff.ready(now + Duration::from_millis(100)));
        backoff.reset();
        assert!(backoff.ready(now));
    }
}
