//! The writer: a client in its own namespace that starts a new INSERT through the VIP every
//! [`ATTEMPT_EVERY`], each attempt on its own connection, attempts overlapping.
//!
//! Overlap matters: an attempt whose SYN went to a dead MAC (a stale ARP entry) is only
//! retransmitted after a second; later attempts are not held up behind it. Every attempt inserts a
//! unique id and returns `cluster_name` of the server that committed it, so the benchmark knows
//! which ids were acknowledged, when and by whom.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::task::JoinSet;
use tokio_postgres::NoTls;

use crate::netns;

/// A new attempt this often.
pub const ATTEMPT_EVERY: Duration = Duration::from_millis(25);
/// Connection timeout of one attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on one whole attempt (connect, INSERT, commit).
const ATTEMPT_LIMIT: Duration = Duration::from_millis(2500);

/// One acknowledged commit.
#[derive(Debug, Clone)]
pub struct Commit {
    pub id: i64,
    /// `cluster_name` of the server that committed it (`n1` or `n2`).
    pub node: String,
    pub started: Instant,
    pub acked: Instant,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    commits: Mutex<Vec<Commit>>,
    attempts: Mutex<u64>,
}

/// A running writer; [`Writer::stop`] ends it and returns what it saw.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Writer {
    /// Starts writing to `vip:port` from namespace `ns`.
    pub fn start(ns: &str, vip: &str, port: u16) -> Result<Writer> {
        let shared = Arc::new(Shared::default());
        let mut config = tokio_postgres::Config::new();
        config
            .host(vip)
            .port(port)
            .user("postgres")
            .dbname("postgres")
            .application_name("whpg-bench")
            .connect_timeout(CONNECT_TIMEOUT);
        let inner = Arc::clone(&shared);
        let thread = netns::spawn_in(ns, "writer", move || run(inner, config))?;
        Ok(Writer {
            shared,
            thread: Some(thread),
        })
    }

    /// Commits acknowledged so far.
    pub fn commits(&self) -> Vec<Commit> {
        lock(&self.shared.commits).clone()
    }

    /// The first commit of an attempt started at or after `t`, by server `node` if given.
    pub fn first_commit_started_after(&self, t: Instant, node: Option<&str>) -> Option<Commit> {
        lock(&self.shared.commits)
            .iter()
            .filter(|c| c.started >= t && node.is_none_or(|n| c.node == n))
            .min_by_key(|c| c.acked)
            .cloned()
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u64 {
        *lock(&self.shared.attempts)
    }

    /// Stops starting attempts, waits (bounded) for those in flight and returns every commit.
    pub fn stop(mut self) -> Result<Vec<Commit>> {
        self.halt()?;
        Ok(lock(&self.shared.commits).clone())
    }

    fn halt(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(thread) => match thread.join() {
                Ok(result) => result,
                Err(_) => anyhow::bail!("the writer thread panicked"),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn run(shared: Arc<Shared>, config: tokio_postgres::Config) -> Result<()> {
    let config = Arc::new(config);
    let mut tick = tokio::time::interval(ATTEMPT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = JoinSet::new();
    // Ids are unique per lab: every lab starts from an empty table.
    let mut next_id: i64 = 1;
    while !shared.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        while in_flight.try_join_next().is_some() {}
        let id = next_id;
        next_id += 1;
        *lock(&shared.attempts) += 1;
        let config = Arc::clone(&config);
        let shared = Arc::clone(&shared);
        in_flight.spawn(async move {
            let started = Instant::now();
            if let Ok(Some(node)) = tokio::time::timeout(ATTEMPT_LIMIT, attempt(&config, id)).await
            {
                lock(&shared.commits).push(Commit {
                    id,
                    node,
                    started,
                    acked: Instant::now(),
                });
            }
        });
    }
    // Let attempts in flight finish (each is bounded), then drop any straggler.
    let _ = tokio::time::timeout(ATTEMPT_LIMIT + Duration::from_millis(200), async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    in_flight.abort_all();
    Ok(())
}

/// One attempt: connect, INSERT (autocommit), return the committing server's `cluster_name`.
async fn attempt(config: &tokio_postgres::Config, id: i64) -> Option<String> {
    let (client, connection) = config.connect(NoTls).await.ok()?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "INSERT INTO writes (id) VALUES ($1) RETURNING current_setting('cluster_name')",
            &[&id],
        )
        .await;
    drop(client);
    driver.abort();
    row.ok().map(|r| r.get::<_, String>(0))
}
