//! Idle cost of a settled pair: CPU of the HA processes on both nodes **and** of both
//! PostgreSQL clusters (whose backends the HA stack's probes make them fork), the connections per
//! second each database is made to open, and the resident memory of the master's HA processes.
//! Measured for whpg-ha (database monitor off; on with its held sessions; on with a new
//! connection for every probe, `health.held_session = false`), keepalived as the seed configures
//! it and as fast as it allows (both with their `pg_isready` check scripts), and keepalived doing
//! VRRP alone.
//!
//! - CPU % = the CPU time used over the window / wall time. For a process tree (an HA daemon
//!   with its children, a postmaster with its backends) the time is the sum over the live tree of
//!   utime + stime + cutime + cstime (`/proc/<pid>/stat`), taken at the start and at the end of
//!   the window: children that ended inside it (probe backends, check scripts) are in their
//!   parent's cutime / cstime once reaped, so short-lived processes are counted too.
//! - Connections/s = the growth of `sum(sessions)` of `pg_stat_database` (every session that got
//!   past authentication; PostgreSQL 14 and later) over the window, less our own reading.
//! - RSS = `VmRSS` from `/proc/<pid>/status`, summed over the master's HA processes, sampled once
//!   a second, the mean reported.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use whpg_lab::{wait_until, KeepalivedConf, PgNode, Process};

use crate::contenders::{spawn_keepalived, whpg_ha_config, Contender, Options};
use crate::lab::{whpg_ha_status, Topology, VIP, VIP_CIDR};

/// Time the pair gets after the VIP has settled before the measurement starts.
const SETTLE: Duration = Duration::from_secs(5);

/// One measured stack.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRow {
    pub implementation: &'static str,
    pub settings: &'static str,
    pub seconds: f64,
    /// HA processes on n1 (the master) at the end of the window.
    pub processes: usize,
    /// CPU of the HA processes of both nodes (with their reaped children), % of one core.
    pub ha_cpu_percent: f64,
    /// Of which the master n1's.
    pub ha_cpu_percent_n1: f64,
    /// CPU of both PostgreSQL clusters (postmaster, backends, reaped backends), % of one core.
    pub pg_cpu_percent: f64,
    pub total_cpu_percent: f64,
    /// New sessions per second on n1's (the primary's) and n2's (the standby's) database.
    pub connections_per_s_n1: f64,
    pub connections_per_s_n2: f64,
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

/// utime + stime + cutime + cstime of `pid` in clock ticks: its own time and that of its
/// children it has reaped.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // Fields 14 to 17 of the file; index 0 here is field 3.
    (11..=14).map(|i| fields.get(i)?.parse::<u64>().ok()).sum()
}

/// [`cpu_ticks`] summed over the live tree of `root` (parents first: a child that exits while
/// the tree is read is missed, never counted twice).
fn tree_ticks(root: u32) -> u64 {
    process_tree(root).into_iter().filter_map(cpu_ticks).sum()
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

/// `sum(sessions)` of `pg_stat_database` on `node`.
fn sessions(node: &PgNode) -> Result<u64> {
    let text = node.psql("SELECT sum(sessions) FROM pg_stat_database")?;
    text.trim()
        .parse()
        .with_context(|| format!("sum(sessions) {text:?}"))
}

/// What is measured in one settled lab: the HA processes of n1 and n2 and both databases.
struct Subjects<'a> {
    ha: [u32; 2],
    databases: [&'a PgNode; 2],
}

/// Measures `subjects` for `seconds`.
fn measure(
    implementation: &'static str,
    settings: &'static str,
    subjects: &Subjects,
    seconds: u64,
) -> Result<IdleRow> {
    let postmasters = subjects
        .databases
        .iter()
        .map(|db| db.postmaster_pid())
        .collect::<Result<Vec<_>>>()?;
    let sessions_before = subjects
        .databases
        .iter()
        .map(|db| sessions(db))
        .collect::<Result<Vec<_>>>()?;
    // The backend of that reading ends and is reaped before the window opens.
    std::thread::sleep(Duration::from_millis(300));
    let ha_ticks = |i: usize| tree_ticks(subjects.ha[i]);
    let pg_ticks = || postmasters.iter().map(|&p| tree_ticks(p)).sum::<u64>();
    let ha_start = [ha_ticks(0), ha_ticks(1)];
    let pg_start = pg_ticks();
    let start = Instant::now();
    let mut rss = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        let total: u64 = process_tree(subjects.ha[0])
            .iter()
            .filter_map(|&p| rss_kib(p))
            .sum();
        rss.push(total);
        std::thread::sleep(Duration::from_secs(1));
    }
    let ha_end = [ha_ticks(0), ha_ticks(1)];
    let pg_end = pg_ticks();
    let wall = start.elapsed().as_secs_f64();
    let sessions_after = subjects
        .databases
        .iter()
        .map(|db| sessions(db))
        .collect::<Result<Vec<_>>>()?;
    for (i, &pid) in subjects.ha.iter().enumerate() {
        if cpu_ticks(pid).is_none() {
            bail!("HA process {pid} of {implementation} on n{} ended", i + 1);
        }
    }
    let percent = |ticks: u64| 100.0 * ticks as f64 / clock_ticks_per_second() / wall;
    let ha = [
        ha_end[0].saturating_sub(ha_start[0]),
        ha_end[1].saturating_sub(ha_start[1]),
    ];
    let pg = pg_end.saturating_sub(pg_start);
    // Less the reading before the window (the one after is not counted yet when it reads).
    let per_s = |i: usize| {
        sessions_after[i]
            .saturating_sub(sessions_before[i])
            .saturating_sub(1) as f64
            / wall
    };
    Ok(IdleRow {
        implementation,
        settings,
        seconds: wall,
        processes: process_tree(subjects.ha[0]).len(),
        ha_cpu_percent: percent(ha[0] + ha[1]),
        ha_cpu_percent_n1: percent(ha[0]),
        pg_cpu_percent: percent(pg),
        total_cpu_percent: percent(ha[0] + ha[1] + pg),
        connections_per_s_n1: per_s(0),
        connections_per_s_n2: per_s(1),
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

/// How whpg-ha watches its databases in one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// `database.monitor = false`: a plain VRRP daemon.
    Off,
    /// The default: a held session per database, a new connection every 2 s beside it.
    Held,
    /// `health.held_session = false`: two new connections per probe (the earlier design).
    PerProbe,
}

fn whpg_ha(daemon: &Path, seconds: u64, monitor: Monitor) -> Result<IdleRow> {
    let topo = Topology::build(match monitor {
        Monitor::Off => "bench_idle_whpg",
        Monitor::Held => "bench_idle_whpg_held",
        Monitor::PerProbe => "bench_idle_whpg_perprobe",
    })?;
    let nodes = [
        (topo.n1.name(), topo.n1.address(), 100u8),
        (topo.n2.name(), topo.n2.address(), 98u8),
    ];
    let mut procs = Vec::new();
    for (host, db) in [(&topo.n1, &topo.primary), (&topo.n2, &topo.standby)] {
        let mut config = whpg_ha_config(
            Contender::WhpgHa,
            db.data_dir(),
            &nodes,
            &Default::default(),
        );
        match monitor {
            Monitor::Off => {
                config = config.replace("[database]\n", "[database]\nmonitor = false\n");
            }
            Monitor::Held => {}
            Monitor::PerProbe => {
                config = config.replace("[health]\n", "[health]\nheld_session = false\n");
            }
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
    if monitor != Monitor::Off {
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            "whpg-ha on n1 to report a primary",
            || whpg_ha_status(&topo.n1).is_some_and(|s| s["database"]["role"] == "primary"),
        )?;
    }
    let subjects = Subjects {
        ha: [procs[0].pid(), procs[1].pid()],
        databases: [&topo.primary, &topo.standby],
    };
    let row = match monitor {
        Monitor::Off => measure(
            "whpg-ha (monitor = false)",
            "VRRPv3 100 ms multicast, plain VRRP daemon; API on",
            &subjects,
            seconds,
        ),
        Monitor::Held => measure(
            "whpg-ha (database monitor on)",
            "VRRPv3 100 ms multicast; local and peer database every 100 ms on held sessions, \
             a new connection to each every 2 s; API on",
            &subjects,
            seconds,
        ),
        Monitor::PerProbe => measure(
            "whpg-ha (monitor on, held_session = false)",
            "as above, but two new connections to each database every 100 ms (the earlier design)",
            &subjects,
            seconds,
        ),
    }?;
    drop(procs);
    Ok(row)
}

/// keepalived: `which` with its check scripts, or (`None`) VRRP alone at 100 ms adverts.
fn keepalived(daemon: &Path, seconds: u64, which: Option<Contender>) -> Result<IdleRow> {
    let topo = Topology::build(match which {
        Some(Contender::KeepalivedSeed) => "bench_idle_ka_seed",
        Some(_) => "bench_idle_ka_fast",
        None => "bench_idle_keepalived",
    })?;
    let procs = match which {
        Some(contender) => contender.start(
            &topo.lab,
            daemon,
            [(&topo.n1, &topo.primary), (&topo.n2, &topo.standby)],
            topo.gw.address(),
            None,
            Options::default(),
        )?,
        None => {
            let mut procs = Vec::new();
            for (host, priority, state) in [(&topo.n1, 100u8, "MASTER"), (&topo.n2, 98u8, "BACKUP")]
            {
                let conf = KeepalivedConf::new(51, priority, VIP_CIDR)
                    .version(3)
                    .advert_int(Duration::from_millis(100))
                    .state(state)
                    .render();
                procs.push(spawn_keepalived(&topo.lab, host, &conf)?);
            }
            procs
        }
    };
    settle(&topo, &procs)?;
    let subjects = Subjects {
        ha: [procs[0].pid(), procs[1].pid()],
        databases: [&topo.primary, &topo.standby],
    };
    let row = match which {
        Some(Contender::KeepalivedSeed) => measure(
            "keepalived-seed",
            "keepalived 2.2.7 as the seed: VRRPv2 1 s unicast, pg_isready every 1 s (script)",
            &subjects,
            seconds,
        ),
        Some(_) => measure(
            "keepalived-fast",
            "keepalived 2.2.7: VRRPv3 0.1 s unicast, pg_isready every 1 s (its minimum)",
            &subjects,
            seconds,
        ),
        None => measure(
            "keepalived (VRRP only)",
            "keepalived 2.2.7: VRRPv3 0.1 s multicast, no scripts (-P: VRRP only)",
            &subjects,
            seconds,
        ),
    }?;
    drop(procs);
    Ok(row)
}

/// Runs the idle measurements and returns the rows (each in its own lab, one after the other).
pub fn run(daemon: &Path, seconds: u64, with_monitor: bool) -> Result<Vec<IdleRow>> {
    let mut rows = Vec::new();
    eprintln!("idle: whpg-ha, monitor off, {seconds} s");
    rows.push(whpg_ha(daemon, seconds, Monitor::Off)?);
    if with_monitor {
        eprintln!("idle: whpg-ha, monitor on (held sessions), {seconds} s");
        rows.push(whpg_ha(daemon, seconds, Monitor::Held)?);
        eprintln!("idle: whpg-ha, monitor on (a new connection per probe), {seconds} s");
        rows.push(whpg_ha(daemon, seconds, Monitor::PerProbe)?);
    }
    for which in [Contender::KeepalivedSeed, Contender::KeepalivedFast] {
        eprintln!("idle: {}, {seconds} s", which.name());
        rows.push(keepalived(daemon, seconds, Some(which))?);
    }
    eprintln!("idle: keepalived, VRRP only, {seconds} s");
    rows.push(keepalived(daemon, seconds, None)?);
    Ok(rows)
}

/// The rows as a markdown table, with each total against keepalived-seed's and -fast's.
pub fn table(rows: &[IdleRow]) -> String {
    let total_of = |name: &str| {
        rows.iter()
            .find(|r| r.implementation == name)
            .map(|r| r.total_cpu_percent)
    };
    let (seed, fast) = (total_of("keepalived-seed"), total_of("keepalived-fast"));
    let ratio = |total: f64, of: Option<f64>| match of {
        Some(of) if of > 0.0 => format!("{:.2}×", total / of),
        _ => "–".to_string(),
    };
    let mut s = String::from(
        "| stack | settings | HA CPU (both nodes; n1) | PostgreSQL CPU (both) | total | vs keepalived-seed | vs keepalived-fast | new connections/s (n1, n2) | RSS n1 mean / max |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.2} %; {:.2} % | {:.2} % | **{:.2} %** | {} | {} | {:.1}, {:.1} | {:.1} / {:.1} MB |\n",
            r.implementation,
            r.settings,
            r.ha_cpu_percent,
            r.ha_cpu_percent_n1,
            r.pg_cpu_percent,
            r.total_cpu_percent,
            ratio(r.total_cpu_percent, seed),
            ratio(r.total_cpu_percent, fast),
            r.connections_per_s_n1,
            r.connections_per_s_n2,
            r.rss_kib_mean / 1024.0,
            r.rss_kib_max as f64 / 1024.0
        ));
    }
    s
}
