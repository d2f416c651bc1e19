//! Split-brain sampling: every [`SAMPLE_EVERY`], inside each database host's namespace, whether the
//! host holds the VIP on a live link and whether its database is writable on a live link.
//!
//! A host whose link is down cannot be reached by clients, so an address or a primary there is not
//! counted. After the trial the two hosts' timelines are intersected: the longest stretch during
//! which both held the VIP, and the longest during which both databases accepted writes.

use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio_postgres::NoTls;

use crate::netns;

pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);
const DB_PROBE_LIMIT: Duration = Duration::from_millis(100);

/// One observation of a host.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// The VIP is on an interface that is up and running.
    pub vip: bool,
    /// The local database answers `pg_is_in_recovery() = false` and `eth0` is up.
    pub writable: bool,
    /// What the database probe itself found (`eth0` aside).
    pub db: DbSeen,
}

/// The answer of one database probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbSeen {
    Primary,
    InRecovery,
    /// No answer within [`DB_PROBE_LIMIT`].
    TimedOut,
    /// The connection or the query failed.
    Failed,
}

impl DbSeen {
    pub fn text(self) -> &'static str {
        match self {
            DbSeen::Primary => "primary",
            DbSeen::InRecovery => "in recovery",
            DbSeen::TimedOut => "no answer within 100 ms",
            DbSeen::Failed => "connection or query failed",
        }
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    samples: Mutex<Vec<Sample>>,
}

/// A sampler running in one host's namespace.
pub struct Sampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Sampler {
    pub fn start(ns: &str, vip: Ipv4Addr, db_port: u16) -> Result<Sampler> {
        let shared = Arc::new(Shared::default());
        let inner = Arc::clone(&shared);
        let thread = netns::spawn_in(ns, "sampler", move || run(inner, vip, db_port))?;
        Ok(Sampler {
            shared,
            thread: Some(thread),
        })
    }

    /// Stops sampling and returns the timeline.
    pub fn stop(mut self) -> Result<Vec<Sample>> {
        self.halt()?;
        Ok(std::mem::take(&mut *lock(&self.shared.samples)))
    }

    fn halt(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(thread) => match thread.join() {
                Ok(result) => result,
                Err(_) => anyhow::bail!("a sampler thread panicked"),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn run(shared: Arc<Shared>, vip: Ipv4Addr, port: u16) -> Result<()> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .application_name("whpg-bench-sampler")
        .connect_timeout(DB_PROBE_LIMIT);
    let mut client: Option<tokio_postgres::Client> = None;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !shared.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let at = Instant::now();
        let links = interfaces(vip);
        let db = match tokio::time::timeout(DB_PROBE_LIMIT, probe(&config, &mut client)).await {
            Ok(Some(false)) => DbSeen::Primary,
            Ok(Some(true)) => DbSeen::InRecovery,
            Ok(None) => DbSeen::Failed,
            Err(_) => {
                client = None;
                DbSeen::TimedOut
            }
        };
        lock(&shared.samples).push(Sample {
            at,
            vip: links.vip_live,
            writable: db == DbSeen::Primary && links.eth0_live,
            db,
        });
    }
    Ok(())
}

/// `pg_is_in_recovery()` on a kept connection, reconnecting when it broke.
async fn probe(
    config: &tokio_postgres::Config,
    client: &mut Option<tokio_postgres::Client>,
) -> Option<bool> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        let (c, connection) = config.connect(NoTls).await.ok()?;
        tokio::spawn(connection);
        *client = Some(c);
    }
    let row = client
        .as_ref()?
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await;
    match row {
        Ok(row) => Some(row.get(0)),
        Err(_) => {
            *client = None;
            None
        }
    }
}

struct Links {
    vip_live: bool,
    eth0_live: bool,
}

/// Reads the interfaces of this thread's namespace with `getifaddrs` (one netlink dump).
fn interfaces(vip: Ipv4Addr) -> Links {
    let mut links = Links {
        vip_live: false,
        eth0_live: false,
    };
    let live = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return links;
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        let up = entry.ifa_flags & live == live;
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) };
        if up && name.to_bytes() == b"eth0" {
            links.eth0_live = true;
        }
        if up && !entry.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family tells its real type.
            let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                if Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == vip {
                    links.vip_live = true;
                }
            }
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    links
}

/// Stretches `[from, to)` during which `holds` was true, from a timeline sampled in order.
fn stretches(samples: &[Sample], holds: impl Fn(&Sample) -> bool) -> Vec<(Instant, Instant)> {
    let mut out: Vec<(Instant, Instant)> = Vec::new();
    for pair in samples.windows(2) {
        if !holds(&pair[0]) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.1 == pair[0].at => last.1 = pair[1].at,
            _ => out.push((pair[0].at, pair[1].at)),
        }
    }
    out
}

/// The longest time during which `holds` was true on both hosts at once.
pub fn longest_overlap(a: &[Sample], b: &[Sample], holds: impl Fn(&Sample) -> bool) -> Duration {
    let sa = stretches(a, &holds);
    let sb = stretches(b, &holds);
    let mut overlaps: Vec<(Instant, Instant)> = Vec::new();
    for &(a0, a1) in &sa {
        for &(b0, b1) in &sb {
            let from = a0.max(b0);
            let to = a1.min(b1);
            if from < to {
                overlaps.push((from, to));
            }
        }
    }
    overlaps.sort();
    // Merge touching overlaps: a stretch of one host may span several of the other's.
    let mut longest = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (from, to) in overlaps {
        current = match current {
            Some((c0, c1)) if from <= c1 => Some((c0, c1.max(to))),
            Some((c0, c1)) => {
                longest = longest.max(c1 - c0);
                Some((from, to))
            }
            None => Some((from, to)),
        };
    }
    if let Some((c0, c1)) = current {
        longest = longest.max(c1 - c0);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(t0: Instant, flags: &[bool]) -> Vec<Sample> {
        flags
            .iter()
            .enumerate()
            .map(|(i, &f)| Sample {
                at: t0 + Duration::from_millis(10 * i as u64),
                vip: f,
                writable: false,
                db: DbSeen::InRecovery,
            })
            .collect()
    }

    #[test]
    fn overlap_of_two_timelines() {
        let t0 = Instant::now();
        let a = timeline(t0, &[true, true, true, true, false, false]);
        let b = timeline(t0, &[false, false, true, true, true, true]);
        assert_eq!(
            longest_overlap(&a, &b, |s| s.vip),
            Duration::from_millis(20)
        );
        assert_eq!(longest_overlap(&a, &b, |s| s.writable), Duration::ZERO);
    }

    #[test]
    fn no_overlap_when_the_vip_moves_cleanly() {
        let t0 = Instant::now();
        let a = timeline(t0, &[true, true, false, false]);
        let b = timeline(t0, &[false, false, true, true]);
        assert_eq!(longest_overlap(&a, &b, |s| s.vip), Duration::ZERO);
    }
}
