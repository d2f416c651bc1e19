//! The demo's client: a writer in the client namespace that starts a new INSERT through the VIP
//! every few milliseconds, each attempt on its own connection, so attempts overlap and one stuck
//! on a stale ARP entry or a dead server does not hide the others.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_postgres::NoTls;

/// How often a new attempt starts.
pub const ATTEMPT_EVERY: Duration = Duration::from_millis(25);
/// Connect timeout of each attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound of a whole attempt (connect, INSERT, commit).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2500);

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (autocommit INSERT acknowledged) by the server named (its `cluster_name`).
    Committed { server: String },
    /// Could not connect, or the INSERT failed: a short description.
    Failed(String),
}

/// One INSERT attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: i64,
    pub started: Instant,
    /// When the attempt ended (the commit acknowledgement for a committed one).
    pub finished: Instant,
    pub outcome: Outcome,
}

impl Attempt {
    pub fn committed_on(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Committed { server } => Some(server),
            Outcome::Failed(_) => None,
        }
    }
}

/// The running writer; [`Writer::stop`] ends it and returns every attempt.
pub struct Writer {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Writer {
    /// Starts writing to `address:port` as `user` from inside namespace `netns`.
    pub fn start(netns: &str, address: IpAddr, port: u16, user: &str) -> Result<Writer> {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let mut config = tokio_postgres::Config::new();
        config
            .host(address.to_string())
            .hostaddr(address)
            .port(port)
            .user(user)
            .dbname("postgres")
            .application_name("whpg-ha-demo")
            .connect_timeout(CONNECT_TIMEOUT);
        let netns = netns.to_string();
        let (stop2, attempts2) = (Arc::clone(&stop), Arc::clone(&attempts));
        let thread = std::thread::Builder::new()
            .name("demo-writer".into())
            .spawn(move || -> Result<()> {
                // Sockets belong to the namespace of the thread creating them: a current-thread
                // runtime keeps every connection on this thread, inside the client namespace.
                whpg_lab::netns::enter(&netns)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building the writer's runtime")?;
                runtime.block_on(write_loop(config, stop2, attempts2));
                Ok(())
            })
            .context("starting the writer thread")?;
        Ok(Writer {
            stop,
            attempts,
            thread: Some(thread),
        })
    }

    /// The attempts finished so far.
    pub fn snapshot(&self) -> Vec<Attempt> {
        lock(&self.attempts).clone()
    }

    /// Stops starting attempts, waits for those in flight (bounded) and returns all of them,
    /// ordered by start.
    pub fn stop(mut self) -> Result<Vec<Attempt>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(result) => result?,
                Err(_) => anyhow::bail!("the writer thread panicked"),
            }
        }
        let mut all = lock(&self.attempts).clone();
        all.sort_by_key(|a| a.started);
        Ok(all)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn write_loop(
    config: tokio_postgres::Config,
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
) {
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(ATTEMPT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut id: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        id += 1;
        let (config, attempts) = (Arc::clone(&config), Arc::clone(&attempts));
        tasks.spawn(async move {
            let started = Instant::now();
            let (outcome, finished) =
                match tokio::time::timeout(ATTEMPT_TIMEOUT, insert(&config, id)).await {
                    Ok(Ok((server, at))) => (Outcome::Committed { server }, at),
                    Ok(Err(e)) => (Outcome::Failed(e), Instant::now()),
                    Err(_) => (
                        Outcome::Failed(format!("no answer within {ATTEMPT_TIMEOUT:?}")),
                        Instant::now(),
                    ),
                };
            lock(&attempts).push(Attempt {
                id,
                started,
                finished,
                outcome,
            });
        });
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(ATTEMPT_TIMEOUT + Duration::from_millis(500), drain).await;
    tasks.abort_all();
}

/// One attempt: a fresh connection, an autocommit INSERT; returns the committing server's name and
/// when the commit was acknowledged.
async fn insert(config: &tokio_postgres::Config, id: i64) -> Result<(String, Instant), String> {
    let (client, connection) = config.connect(NoTls).await.map_err(describe)?;
    // The connection ends on its own once the client is dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let row = client
        .query_one(
            "INSERT INTO writes (id) VALUES ($1) RETURNING current_setting('cluster_name')",
            &[&id],
        )
        .await
        .map_err(describe)?;
    let acknowledged = Instant::now();
    let server = row.try_get::<_, String>(0).map_err(describe)?;
    Ok((server, acknowledged))
}

fn describe(e: tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    };
    text.chars().take(120).collect()
}
