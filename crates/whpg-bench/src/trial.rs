//! One trial: a fresh lab, a stack started on it, a writer and two split-brain samplers running, a
//! fault at a random moment of the advert cycle, and what followed, bounded by [`TRIAL_LIMIT`].

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use whpg_lab::{wait_until, Process};

use crate::contenders::Contender;
use crate::lab::{in_recovery, stored_ids, whpg_ha_status, Topology, PG_PORT, VIP};
use crate::sampler::{longest_overlap, Sampler};
use crate::writer::Writer;

/// Longest wait from the fault for the first committed write.
pub const TRIAL_LIMIT: Duration = Duration::from_secs(30);
/// How long the writer and samplers go on after the first write (late flaps, split brain).
const TAIL: Duration = Duration::from_secs(1);
/// Bound on reaching a steady pair before the fault.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// The VIP must stay on n1 alone this long before the pair counts as settled.
const SETTLE_HOLD: Duration = Duration::from_millis(1500);

/// A fault injected on n1, the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// `kill -9` of the primary's postmaster.
    #[serde(rename = "db-crash")]
    DbCrash,
    /// n1's link goes down.
    #[serde(rename = "link-loss")]
    LinkLoss,
    /// `pg_ctl stop -m fast` of the primary.
    #[serde(rename = "db-stop")]
    DbStop,
    /// `kill -9` of the standby's postmaster: no failover allowed.
    #[serde(rename = "standby-down")]
    StandbyDown,
    /// n1's link down for 1 s, then up again: no failover allowed where the profile tolerates it.
    #[serde(rename = "blip-1s")]
    Blip,
    /// SIGKILL of the HA daemon (its whole process group) on n1, the master: the database is
    /// fine, so no failover allowed.
    #[serde(rename = "daemon-kill")]
    DaemonKill,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::DbCrash,
        Fault::LinkLoss,
        Fault::DbStop,
        Fault::StandbyDown,
        Fault::Blip,
        Fault::DaemonKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::DbCrash => "db-crash",
            Fault::LinkLoss => "link-loss",
            Fault::DbStop => "db-stop",
            Fault::StandbyDown => "standby-down",
            Fault::Blip => "blip-1s",
            Fault::DaemonKill => "daemon-kill",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Whether `which` should promote the standby after this fault; `None` when either is
    /// acceptable (a 1 s blip is a real outage for a profile that fails over in 0.5 s).
    pub fn failover_expected(self, which: Contender) -> Option<bool> {
        match self {
            Fault::DbCrash | Fault::LinkLoss | Fault::DbStop => Some(true),
            Fault::StandbyDown | Fault::DaemonKill => Some(false),
            Fault::Blip => match which {
                Contender::WhpgHa | Contender::KeepalivedSeed => Some(false),
                Contender::WhpgHaFast | Contender::KeepalivedFast => None,
            },
        }
    }

    /// How long the trial goes on after the first write: longer for the faults that must not
    /// fail over, so a late promotion is seen.
    fn tail(self) -> Duration {
        match self {
            Fault::DbCrash | Fault::LinkLoss => TAIL,
            _ => Duration::from_secs(5),
        }
    }
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// A write committed through the VIP after the fault.
    Ok,
    /// No write committed within [`TRIAL_LIMIT`]: the stack failed this trial.
    NoWrite,
    /// The standby was already promoted before the fault (a start-up race): not measured.
    PromotedBeforeFault,
    /// The harness could not set up or observe the trial.
    HarnessError,
}

/// When and by whom a commit that was later lost had been acknowledged.
#[derive(Debug, Clone, Serialize)]
pub struct LostAck {
    pub id: i64,
    pub node: String,
    pub acked_ms: f64,
}

fn signed_ms(t: Instant, t0: Instant) -> f64 {
    if t >= t0 {
        ms(t - t0)
    } else {
        -ms(t0 - t)
    }
}

/// Everything recorded about one trial.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub fault: Fault,
    pub implementation: Contender,
    pub trial: usize,
    pub status: Status,
    /// Random delay before the fault, within one advert interval.
    pub phase_ms: f64,
    /// How long the fault injection call took (included in the times).
    pub injection_ms: f64,
    /// Fault → first commit acknowledged to an attempt started after the fault.
    pub first_write_ms: Option<f64>,
    /// `cluster_name` of the server that acknowledged it.
    pub first_write_node: Option<String>,
    /// Fault → VIP seen live on n2.
    pub vip_on_n2_ms: Option<f64>,
    /// n2's database had left recovery at the end.
    pub failover: bool,
    /// Whether a failover should have happened (`None`: either is acceptable).
    pub failover_expected: Option<bool>,
    /// n2's keepalived entered MASTER before the fault (start-up), promoted or not.
    pub n2_master_before_fault: bool,
    /// Longest time both hosts held the VIP on a live link.
    pub vip_on_both_ms: f64,
    /// Longest time both databases were writable on a live link.
    pub both_writable_ms: f64,
    /// One of the two above lasted longer than one advert interval.
    pub split_brain: bool,
    /// Commits acknowledged to the writer during the whole trial.
    pub acknowledged: usize,
    /// INSERT attempts the writer started.
    pub attempts: u64,
    /// Acknowledged ids missing from the final primary (`None`: no primary to ask).
    pub lost: Option<usize>,
    pub lost_ids: Vec<i64>,
    /// For each lost id: the node that acknowledged it and when, in ms from the fault (negative:
    /// before it).
    pub lost_acks: Vec<LostAck>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn new(fault: Fault, implementation: Contender, trial: usize) -> Outcome {
        Outcome {
            fault,
            implementation,
            trial,
            status: Status::HarnessError,
            phase_ms: 0.0,
            injection_ms: 0.0,
            first_write_ms: None,
            first_write_node: None,
            vip_on_n2_ms: None,
            failover: false,
            failover_expected: fault.failover_expected(implementation),
            n2_master_before_fault: false,
            vip_on_both_ms: 0.0,
            both_writable_ms: 0.0,
            split_brain: false,
            acknowledged: 0,
            attempts: 0,
            lost: None,
            lost_ids: Vec::new(),
            lost_acks: Vec::new(),
            error: None,
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// A pseudo-random delay in `[0, interval)`, from the clock's nanoseconds.
pub fn random_phase(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) | 1;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let micros = interval.as_micros().max(1) as u64;
    Duration::from_micros(x % micros)
}

/// Runs one trial; `out` is filled as far as it got (also on error).
pub fn run(out: &mut Outcome, daemon: &Path, logs: Option<&Path>) -> Result<()> {
    let (fault, which) = (out.fault, out.implementation);
    let topo = Topology::build(&format!("bench_{}_{}", fault.name(), which.name()))?;
    let result = measure(out, &topo, daemon);
    let keep_logs = result.is_err()
        || out.status != Status::Ok
        || out.split_brain
        || out.lost.unwrap_or(0) > 0
        || out.n2_master_before_fault;
    if let (true, Some(dir)) = (keep_logs, logs) {
        let dest = dir.join(format!("{}-{}-{}", fault.name(), which.name(), out.trial));
        if let Err(e) = copy_logs(topo.lab.dir(), &dest) {
            eprintln!("cannot keep the logs in {}: {e:#}", dest.display());
        }
    }
    result
}

fn copy_logs(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_file()
            && (name.ends_with(".log") || name.ends_with(".conf") || name.ends_with(".toml"))
        {
            std::fs::copy(&path, to.join(&*name))?;
        } else if path.is_dir() && name.ends_with(".notify") {
            let log = path.join("notify.log");
            if log.exists() {
                std::fs::copy(&log, to.join(format!("{name}.log")))?;
            }
        }
    }
    Ok(())
}

fn measure(out: &mut Outcome, topo: &Topology, daemon: &Path) -> Result<()> {
    let which = out.implementation;
    let procs = which.start(
        &topo.lab,
        daemon,
        [(&topo.n1, &topo.primary), (&topo.n2, &topo.standby)],
    )?;
    settle(topo, which, &procs)?;
    let vip: Ipv4Addr = VIP.parse()?;
    let s1 = Sampler::start(topo.n1.netns(), vip, PG_PORT)?;
    let s2 = Sampler::start(topo.n2.netns(), vip, PG_PORT)?;
    let writer = Writer::start(topo.client.netns(), VIP, PG_PORT)?;
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "the writer to commit through the VIP",
        || writer.commits().len() >= 5,
    )?;
    out.n2_master_before_fault = !which.is_whpg_ha()
        && procs
            .get(1)
            .is_some_and(|p| p.log_contents().contains("Entering MASTER STATE"));
    if in_recovery(&topo.standby) != Some(true) {
        out.status = Status::PromotedBeforeFault;
        return Ok(());
    }

    let phase = random_phase(which.advert_interval());
    out.phase_ms = ms(phase);
    std::thread::sleep(phase);
    // Times run from just before the fault is injected; only attempts started once the injection
    // has returned count (`ip link set` takes a few ms, during which n1 still answers).
    let t0 = Instant::now();
    match out.fault {
        Fault::DbCrash => {
            topo.primary.kill9()?;
        }
        Fault::LinkLoss => topo.lab.link_down(&topo.n1)?,
        Fault::DbStop => topo.primary.stop_fast()?,
        Fault::StandbyDown => {
            topo.standby.kill9()?;
        }
        Fault::Blip => {
            topo.lab.link_down(&topo.n1)?;
            std::thread::sleep(Duration::from_secs(1));
            topo.lab.link_up(&topo.n1)?;
        }
        Fault::DaemonKill => {
            let group = procs.first().map_or(0, |p| p.pid() as i32);
            // SAFETY: kill(2) with a negative pid signals that process group, the daemon's own.
            if group <= 0 || unsafe { libc::kill(-group, libc::SIGKILL) } != 0 {
                bail!("cannot SIGKILL the daemon on n1");
            }
        }
    }
    let injected = Instant::now();
    out.injection_ms = ms(injected - t0);
    let first = loop {
        if let Some(commit) = writer.first_commit_started_after(injected) {
            break Some(commit);
        }
        if t0.elapsed() >= TRIAL_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if first.is_some() {
        std::thread::sleep(out.fault.tail());
    }
    out.attempts = writer.attempts();
    let commits = writer.stop()?;
    let n1_samples = s1.stop()?;
    let n2_samples = s2.stop()?;

    match &first {
        Some(commit) => {
            out.status = Status::Ok;
            out.first_write_ms = Some(ms(commit.acked - t0));
            out.first_write_node = Some(commit.node.clone());
        }
        None => out.status = Status::NoWrite,
    }
    out.vip_on_n2_ms = n2_samples
        .iter()
        .find(|s| s.at >= t0 && s.vip)
        .map(|s| ms(s.at - t0));
    let vip_both = longest_overlap(&n1_samples, &n2_samples, |s| s.vip);
    let writable_both = longest_overlap(&n1_samples, &n2_samples, |s| s.writable);
    out.vip_on_both_ms = ms(vip_both);
    out.both_writable_ms = ms(writable_both);
    out.split_brain = vip_both.max(writable_both) > which.advert_interval();

    out.failover = in_recovery(&topo.standby) == Some(false);
    out.acknowledged = commits.len();
    let final_primary = if out.failover {
        Some(&topo.standby)
    } else if in_recovery(&topo.primary) == Some(false) {
        Some(&topo.primary)
    } else {
        None
    };
    if let Some(node) = final_primary {
        let stored: std::collections::HashSet<i64> = stored_ids(node)?.into_iter().collect();
        let mut lost: Vec<i64> = commits
            .iter()
            .map(|c| c.id)
            .filter(|id| !stored.contains(id))
            .collect();
        lost.sort_unstable();
        out.lost_acks = commits
            .iter()
            .filter(|c| lost.contains(&c.id))
            .map(|c| LostAck {
                id: c.id,
                node: c.node.clone(),
                acked_ms: signed_ms(c.acked, t0),
            })
            .collect();
        out.lost = Some(lost.len());
        out.lost_ids = lost;
    }
    drop(procs);
    Ok(())
}

/// Waits until n1 alone holds the VIP (for [`SETTLE_HOLD`]) and n2 is a settled backup whose
/// health check has run.
fn settle(topo: &Topology, which: Contender, procs: &[Process]) -> Result<()> {
    let start = Instant::now();
    'again: loop {
        let left = SETTLE_LIMIT.saturating_sub(start.elapsed());
        wait_until(
            left,
            Duration::from_millis(20),
            "the VIP on n1 only",
            || topo.n1.has_address(VIP) && !topo.n2.has_address(VIP),
        )?;
        let held = Instant::now();
        while held.elapsed() < SETTLE_HOLD {
            if !topo.n1.has_address(VIP) || topo.n2.has_address(VIP) {
                continue 'again;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        break;
    }
    if which.is_whpg_ha() {
        wait_until(
            SETTLE_LIMIT.saturating_sub(start.elapsed()),
            Duration::from_millis(50),
            "whpg-ha on n2 to report a BACKUP with a standby database",
            || {
                whpg_ha_status(&topo.n2).is_some_and(|s| {
                    s["vrrp"]["state"] == "BACKUP" && s["database"]["role"] == "standby"
                })
            },
        )?;
    } else {
        // Two check periods: both nodes have run pg_isready and applied its weight.
        std::thread::sleep(Duration::from_millis(2100));
        for (name, proc) in ["n1", "n2"].iter().zip(procs) {
            if !proc.is_running() {
                bail!("keepalived on {name} exited: {}", proc.log_contents());
            }
        }
        let log = procs[1].log_contents();
        let last = log.lines().rev().find(|l| l.contains("Entering "));
        if !last.is_some_and(|l| l.contains("BACKUP")) {
            bail!("keepalived on n2 is not BACKUP: {last:?}");
        }
    }
    Ok(())
}
