//! Idle cost: CPU and resident memory of the master node of a settled pair doing nothing but VRRP
//! (and, for whpg-ha with the database monitor on, probing its database), whpg-ha against
//! keepalived with the same VRRP settings (v3, 100 ms adverts, multicast, no scripts).
//!
//! CPU % = (utime + stime of every process of the daemon, from `/proc/<pid>/stat`) over wall time;
//! RSS = `VmRSS` from `/proc/<pid>/status`, summed over the same processes (for keepalived: the
//! parent and its VRRP child), sampled once a second, the mean reported.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use whpg_lab::{wait_until, KeepalivedConf, Process};

use crate::contenders::{spawn_keepalived, whpg_ha_config, Contender};
use crate::lab::{whpg_ha_status, Topology, VIP, VIP_CIDR};

/// Time the pair gets after the VIP has settled before the measurement starts.
const SETTLE: Duration = Duration::from_secs(5);

/// One measured stack.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRow {
    pub implementation: &'static str,
    pub settings: &'static str,
    pub seconds: f64,
    pub processes: usize,
    pub cpu_percent: f64,
    pub rss_kib_mean: f64,
    pub rss_kib_max: u64,
}

/// The process `root` and all its descendants, from the parent ids in `/proc/*/stat`.
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(fields) = stat_fields(pid) {
                // Field 4 (ppid) is the second field after the command name.
                if let Some(ppid) = fields.get(1).and_then(|f| f.parse().ok()) {
                    parents.push((pid, ppid));
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    tree
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, comes first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // Fields 14 and 15 of the file; index 0 here is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Measures the processes under `root` for `seconds`.
fn measure(
    implementation: &'static str,
    settings: &'static str,
    root: u32,
    seconds: u64,
) -> Result<IdleRow> {
    let pids = process_tree(root);
    let ticks = |pids: &[u32]| -> Result<u64> {
        pids.iter()
            .map(|&p| {
                cpu_ticks(p).with_context(|| format!("process {p} of {implementation} ended"))
            })
            .sum()
    };
    let start_ticks = ticks(&pids)?;
    let start = Instant::now();
    let mut rss = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        let total: u64 = pids.iter().filter_map(|&p| rss_kib(p)).sum();
        rss.push(total);
        std::thread::sleep(Duration::from_secs(1));
    }
    let end_ticks = ticks(&pids)?;
    let wall = start.elapsed().as_secs_f64();
    let used = (end_ticks - start_ticks) as f64 / clock_ticks_per_second();
    Ok(IdleRow {
        implementation,
        settings,
        seconds: wall,
        processes: pids.len(),
        cpu_percent: 100.0 * used / wall,
        rss_kib_mean: rss.iter().sum::<u64>() as f64 / rss.len().max(1) as f64,
        rss_kib_max: rss.iter().copied().max().unwrap_or(0),
    })
}

/// Waits until n1 alone holds the VIP, then [`SETTLE`].
fn settle(topo: &Topology, procs: &[Process]) -> Result<()> {
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "the VIP on n1 only",
        || topo.n1.has_address(VIP) && !topo.n2.has_address(VIP),
    )?;
    std::thread::sleep(SETTLE);
    for proc in procs {
        if !proc.is_running() {
            bail!("{} exited: {}", proc.label(), proc.log_contents());
        }
    }
    if !topo.n1.has_address(VIP) || topo.n2.has_address(VIP) {
        bail!("the VIP moved while settling");
    }
    Ok(())
}

fn whpg_ha(daemon: &Path, seconds: u64, monitor: bool) -> Result<IdleRow> {
    let topo = Topology::build(if monitor {
        "bench_idle_whpg_monitor"
    } else {
        "bench_idle_whpg"
    })?;
    let nodes = [
        (topo.n1.name(), topo.n1.address(), 100u8),
        (topo.n2.name(), topo.n2.address(), 98u8),
    ];
    let mut procs = Vec::new();
    for (host, db) in [(&topo.n1, &topo.primary), (&topo.n2, &topo.standby)] {
        let mut config = whpg_ha_config(Contender::WhpgHa, db, &nodes, &Default::default());
        if !monitor {
            config = config.replace("[database]\n", "[database]\nmonitor = false\n");
        }
        let journal = topo.lab.dir().join(format!("{}.journal", host.name()));
        config.push_str(&format!("\n[journal]\npath = \"{}\"\n", journal.display()));
        let path = topo
            .lab
            .write_file(&format!("{}.whpg-ha.toml", host.name()), &config)?;
        let path = path.to_string_lossy().into_owned();
        let daemon = daemon.to_string_lossy().into_owned();
        procs.push(host.spawn(
            &[&daemon, "run", "--config", &path, "--node", host.name()],
            "whpg-ha",
        )?);
    }
    settle(&topo, &procs)?;
    if monitor {
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            "whpg-ha on n1 to report a primary",
            || whpg_ha_status(&topo.n1).is_some_and(|s| s["database"]["role"] == "primary"),
        )?;
    }
    let row = if monitor {
        measure(
            "whpg-ha (database monitor on)",
            "VRRPv3 100 ms multicast; health probe every 100 ms, peer probe, API",
            procs[0].pid(),
            seconds,
        )
    } else {
        measure(
            "whpg-ha (monitor = false)",
            "VRRPv3 100 ms multicast, plain VRRP daemon; API on",
            procs[0].pid(),
            seconds,
        )
    }?;
    drop(procs);
    Ok(row)
}

fn keepalived(seconds: u64) -> Result<IdleRow> {
    let topo = Topology::build("bench_idle_keepalived")?;
    let mut procs = Vec::new();
    for (host, priority, state) in [(&topo.n1, 100u8, "MASTER"), (&topo.n2, 98u8, "BACKUP")] {
        let conf = KeepalivedConf::new(51, priority, VIP_CIDR)
            .version(3)
            .advert_int(Duration::from_millis(100))
            .state(state)
            .render();
        procs.push(spawn_keepalived(&topo.lab, host, &conf)?);
    }
    settle(&topo, &procs)?;
    let row = measure(
        "keepalived 2.2.7",
        "VRRPv3 0.1 s multicast, no scripts (-P: VRRP only)",
        procs[0].pid(),
        seconds,
    )?;
    drop(procs);
    Ok(row)
}

/// Runs the idle measurements and returns the rows (each in its own lab, one after the other).
pub fn run(daemon: &Path, seconds: u64, with_monitor: bool) -> Result<Vec<IdleRow>> {
    let mut rows = Vec::new();
    eprintln!("idle: whpg-ha, monitor off, {seconds} s");
    rows.push(whpg_ha(daemon, seconds, false)?);
    if with_monitor {
        eprintln!("idle: whpg-ha, monitor on, {seconds} s");
        rows.push(whpg_ha(daemon, seconds, true)?);
    }
    eprintln!("idle: keepalived, {seconds} s");
    rows.push(keepalived(seconds)?);
    Ok(rows)
}

/// The rows as a markdown table.
pub fn table(rows: &[IdleRow]) -> String {
    let mut s = String::from(
        "| implementation (master node) | settings | processes | measured | CPU | RSS mean | RSS max |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} s | {:.2} % | {:.1} MB | {:.1} MB |\n",
            r.implementation,
            r.settings,
            r.processes,
            r.seconds,
            r.cpu_percent,
            r.rss_kib_mean / 1024.0,
            r.rss_kib_max as f64 / 1024.0
        ));
    }
    s
}
