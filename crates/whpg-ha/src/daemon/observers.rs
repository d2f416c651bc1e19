//! Background observers: the local database, the peer's database, the local postmaster and the
//! witnesses, each on its own task and cadence, each reporting plain facts to the policy.
//!
//! They keep the policy's knowledge fresh so that a decision never waits on a probe (design:
//! "decisions never wait on probes"). Every probe is bounded by its timeout; a slow one skips
//! ticks instead of piling up.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::{interval, MissedTickBehavior};
use tracing::{info, warn};
use whpg_policy::{Input, LocalSample, PeerSample, WalReceiver};

use crate::config::Config;
use crate::db::query::WalReceiverStatus;
use crate::db::{observe, probe, ConnParams, DbFacts, PostmasterWatch, ProbeOutcome, ProbeTarget};
use crate::net::witness;

/// At most one warning per this period per observer for a repeating problem.
const WARN_PERIOD: Duration = Duration::from_secs(30);

/// Start every observer; they stop when the receiving end of `tx` is dropped. The returned
/// handle starts a witness round at once (a no-op without witnesses).
pub fn spawn_all(config: &Config, tx: &mpsc::Sender<Input>) -> Arc<Notify> {
    let witness_now = Arc::new(Notify::new());
    tokio::spawn(local_database(config.clone(), tx.clone()));
    if let Some(peer) = config.peer() {
        tokio::spawn(peer_database(
            config.clone(),
            IpAddr::V4(peer.address),
            tx.clone(),
        ));
    }
    tokio::spawn(postmaster(config.clone(), tx.clone()));
    if config.witness.enabled() {
        tokio::spawn(witnesses(
            config.clone(),
            tx.clone(),
            Arc::clone(&witness_now),
        ));
    }
    witness_now
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

async fn local_database(config: Config, tx: mpsc::Sender<Input>) {
    let db = &config.database;
    let target = ProbeTarget::local(db);
    let params = ConnParams::local(db);
    let timeout = config.health.timeout;
    let mut ticker = ticker(config.health.interval);
    let mut warner = Warner::new();
    loop {
        ticker.tick().await;
        let started = tokio::time::Instant::now();
        let sample = match probe(&target, timeout).await {
            ProbeOutcome::Accepting => match observe(&params, timeout).await {
                Ok(facts) => local_from_facts(&facts),
                Err(e) => {
                    // Accepting but unqueryable: the role cannot be told, so it cannot serve.
                    warner.warn(|| format!("local database at {target} accepts connections but cannot be queried: {e} (check database.user, dbname, password_file and pg_hba.conf)"));
                    LocalSample::Down
                }
            },
            ProbeOutcome::StandbyReady { .. } => LocalSample::Standby {
                timeline: None,
                wal_receiver: None,
            },
            ProbeOutcome::NotAccepting => LocalSample::NotAccepting,
            ProbeOutcome::Rejected { sqlstate } => {
                warner.warn(|| format!("local database at {target} refuses our login (SQLSTATE {sqlstate}): check database.user and pg_hba.conf"));
                LocalSample::Down
            }
            ProbeOutcome::Refused | ProbeOutcome::TimedOut | ProbeOutcome::Failed(_) => {
                LocalSample::Down
            }
        };
        crate::metrics::observe_probe("local", started.elapsed());
        if tx.send(Input::Local(sample)).await.is_err() {
            return;
        }
    }
}

fn local_from_facts(facts: &DbFacts) -> LocalSample {
    if !facts.in_recovery {
        return LocalSample::Primary {
            timeline: Some(facts.timeline),
        };
    }
    LocalSample::Standby {
        timeline: Some(facts.timeline),
        wal_receiver: facts.wal_receiver.as_ref().map(|w| WalReceiver {
            streaming: w.status == Some(WalReceiverStatus::Streaming),
            last_message_age: w.last_msg_age,
        }),
    }
}

async fn peer_database(config: Config, address: IpAddr, tx: mpsc::Sender<Input>) {
    let db = &config.database;
    let target = ProbeTarget::peer(db, address);
    let params = ConnParams::peer(db, address);
    let timeout = config.health.timeout;
    let mut ticker = ticker(config.health.interval);
    let mut warner = Warner::new();
    loop {
        ticker.tick().await;
        let started = tokio::time::Instant::now();
        let sample = match probe(&target, timeout).await {
            ProbeOutcome::Accepting => match observe(&params, timeout).await {
                Ok(facts) if facts.in_recovery => PeerSample::Standby,
                Ok(facts) => PeerSample::Primary {
                    timeline: Some(facts.timeline),
                },
                Err(e) => {
                    warner.warn(|| format!("the peer's database at {target} accepts connections but cannot be queried: {e}; it counts as a live primary, so no promotion can happen while it answers"));
                    PeerSample::AcceptingUnknownRole
                }
            },
            ProbeOutcome::StandbyReady { .. } => PeerSample::Standby,
            ProbeOutcome::NotAccepting | ProbeOutcome::Refused => PeerSample::DatabaseDown,
            ProbeOutcome::Rejected { sqlstate } => {
                warner.warn(|| format!("the peer's database at {target} refuses our login (SQLSTATE {sqlstate}); it counts as a live primary: allow this node in the peer's pg_hba.conf"));
                PeerSample::AcceptingUnknownRole
            }
            ProbeOutcome::TimedOut => PeerSample::Unreachable,
            ProbeOutcome::Failed(kind) => match kind {
                std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                    PeerSample::Unreachable
                }
                // Something answered, if not like PostgreSQL: the host is there.
                _ => PeerSample::DatabaseDown,
            },
        };
        crate::metrics::observe_probe("peer", started.elapsed());
        if tx.send(Input::Peer(sample)).await.is_err() {
            return;
        }
    }
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
            Ok(answered) => answered >= witness.quorum,
            Err(e) => {
                warner
                    .warn(|| format!("cannot ping the witnesses: {e} (needs root or CAP_NET_RAW)"));
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
