//! `whpg-ha demo`: a failover on one machine, with nothing to configure.
//!
//! It builds a namespace lab (a switch, hosts `n1` and `n2` and a client), runs a PostgreSQL 15
//! primary on `n1` and a streaming standby on `n2`, starts this binary's daemon on both, shows
//! both nodes, starts a client writing through the VIP, kills the primary's postmaster and prints
//! the failover as a millisecond timeline built from both daemons' `/status` and the client's
//! attempts. Then it stops everything and shows that nothing is left: the lab removes its
//! namespaces and processes when dropped, on errors and panics too.
//!
//! - [`setup`]: the lab pair, the daemon configuration, `/status` over HTTP inside a namespace.
//! - [`client`]: the writer.
//! - [`timeline`]: the timeline and node tables.

pub mod client;
pub mod setup;
pub mod timeline;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use whpg_lab::postgres::{PG_BIN_DIR, PG_SUPERUSER};
use whpg_lab::{Host, Lab, PgNode, Process};

use self::client::Writer;
use self::setup::{NodeView, CLIENT_ADDRESS, CLIENT_NAME, N1, N2, PG_PORT, VIP};
use self::timeline::{FaultTime, Inputs, Timeline};

/// What a user without root sees.
pub const NEEDS_ROOT: &str =
    "whpg-ha demo needs root: it builds network namespaces; run it with sudo";

/// Exit status for missing prerequisites (root, programs, the `postgres` user).
const EXIT_PREREQUISITES: u8 = 2;

/// How long the whole failover may take before the demo calls it a failure.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(20);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs the demo; 0 on success, 1 on failure, 2 when prerequisites are missing.
pub fn demo_command() -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{NEEDS_ROOT}");
        return ExitCode::from(EXIT_PREREQUISITES);
    }
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        packages.dedup();
        eprintln!("whpg-ha demo: missing prerequisites:");
        for (what, package) in &missing {
            eprintln!("  - {what} (Debian package {package})");
        }
        eprintln!(
            "install them with: apt-get install -y {} (or run scripts/demo.sh, which installs \
             everything and runs the demo)",
            packages.join(" ")
        );
        return ExitCode::from(EXIT_PREREQUISITES);
    }
    install_interrupt_handler();
    let started = Instant::now();
    let mut progress = Progress::new(started);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut progress)));
    match outcome {
        Ok(Ok(())) => {
            println!(
                "\nDemo finished in {:.1} s.",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            progress.fail();
            eprintln!("whpg-ha demo: failed: {e:#}");
            ExitCode::from(1)
        }
        Err(_) => {
            progress.fail();
            eprintln!("whpg-ha demo: failed: internal error (see the panic message above)");
            ExitCode::from(1)
        }
    }
}

/// What is missing, with the Debian package providing it.
fn missing_prerequisites() -> Vec<(String, &'static str)> {
    let mut missing = Vec::new();
    let commands: [(&str, &str); 3] = [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("runuser", "util-linux"),
    ];
    for (command, package) in commands {
        if whpg_lab::find_command(command).is_none() {
            missing.push((format!("command `{command}` not found"), package));
        }
    }
    for (program, package) in [
        ("initdb", "postgresql-15"),
        ("pg_ctl", "postgresql-15"),
        ("pg_basebackup", "postgresql-15"),
        ("postgres", "postgresql-15"),
        ("psql", "postgresql-client-15"),
    ] {
        let path = format!("{PG_BIN_DIR}/{program}");
        if !Path::new(&path).is_file() {
            missing.push((format!("PostgreSQL 15 `{path}` not found"), package));
        }
    }
    let (reasons, _) = whpg_lab::prereq::missing(&["user:postgres"]);
    if reasons.iter().any(|r| r.contains("postgres")) {
        missing.push((
            "OS user `postgres` does not exist".to_string(),
            "postgresql-15",
        ));
    }
    missing
}

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM end the demo at its next wait, through the normal teardown.
fn install_interrupt_handler() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Numbered steps with the time since the start.
struct Progress {
    started: Instant,
    step: usize,
    open: Option<Instant>,
}

impl Progress {
    fn new(started: Instant) -> Progress {
        Progress {
            started,
            step: 0,
            open: None,
        }
    }

    fn step(&mut self, text: &str) {
        self.close("");
        self.step += 1;
        print!(
            "[{:>5.1}s] {:>2}. {text} ... ",
            self.started.elapsed().as_secs_f64(),
            self.step
        );
        let _ = std::io::stdout().flush();
        self.open = Some(Instant::now());
    }

    fn done(&mut self, detail: &str) {
        self.close(detail);
    }

    fn close(&mut self, detail: &str) {
        if let Some(at) = self.open.take() {
            let ms = at.elapsed().as_millis();
            if detail.is_empty() {
                println!("ok ({ms} ms)");
            } else {
                println!("ok ({ms} ms): {detail}");
            }
        }
    }

    fn fail(&mut self) {
        if self.open.take().is_some() {
            println!("FAILED");
        }
    }
}

/// Everything that must be stopped at the end.
#[derive(Default)]
struct Running {
    daemons: Vec<(String, Process)>,
    databases: Vec<PgNode>,
}

fn run(progress: &mut Progress) -> Result<()> {
    println!(
        "whpg-ha demo: a PostgreSQL 15 primary (n1) and standby (n2), a whpg-ha daemon on each, a \
         client writing through the VIP {VIP}, then a crash of the primary.\nEverything runs in \
         private network namespaces and is removed at the end; the machine's own network is not \
         touched.\n"
    );
    progress.step("Building the lab: a switch and hosts n1, n2 and client");
    let lab = Lab::new("demo").context("building the namespace lab")?;
    let mut running = Running::default();
    let result = scenario(&lab, progress, &mut running);
    if result.is_err() {
        progress.fail();
        for (name, daemon) in &running.daemons {
            eprintln!("--- last lines of the {name} daemon's log ---");
            eprintln!(
                "{}",
                timeline::strip_ansi(&tail(&daemon.log_contents(), 15))
            );
        }
    }
    let cleaned = teardown(progress, lab, running);
    result.and(cleaned)
}

fn scenario(lab: &Lab, progress: &mut Progress, running: &mut Running) -> Result<()> {
    let n1 = lab.add_host(N1.name, &format!("{}/24", N1.address))?;
    let n2 = lab.add_host(N2.name, &format!("{}/24", N2.address))?;
    let client = lab.add_host(CLIENT_NAME, &format!("{CLIENT_ADDRESS}/24"))?;
    progress.done(&format!(
        "n1 {}, n2 {}, client {} (namespaces {}-*)",
        N1.address,
        N2.address,
        CLIENT_ADDRESS,
        lab.name()
    ));
    check_interrupted()?;

    progress.step("initdb of the primary on n1, start it, create table `writes`");
    let primary = setup::start_primary(lab, &n1)?;
    running.databases.push(primary.clone());
    progress.done(&format!("PostgreSQL 15 on {}:{PG_PORT}", n1.address()));
    check_interrupted()?;

    progress.step("pg_basebackup of the standby on n2, start it, wait until it streams");
    let standby = setup::start_standby(lab, &n2, &primary)?;
    running.databases.push(standby.clone());
    progress.done("streaming from n1");
    check_interrupted()?;

    progress.step(&format!(
        "Starting whpg-ha on n1 (priority {}) and n2 (priority {})",
        N1.priority, N2.priority
    ));
    for (host, node, db) in [(&n1, N1, &primary), (&n2, N2, &standby)] {
        let config = setup::daemon_config(db.data_dir());
        let daemon = setup::start_daemon(lab, host, node.name, &config)?;
        running.daemons.push((node.name.to_string(), daemon));
    }
    progress.done(&format!(
        "pids {}",
        running
            .daemons
            .iter()
            .map(|(_, d)| d.pid().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    ));

    progress.step(&format!(
        "Waiting for n1 to hold the VIP {VIP} and n2 to report a streaming standby"
    ));
    wait_for("the VIP on n1", Duration::from_secs(20), running, || {
        let n1_ready = setup::status(&n1).is_some_and(|s| {
            s.vrrp.state == "MASTER" && s.holds_vips && role(&s) == Some("primary")
        });
        let n2_ready = setup::status(&n2)
            .is_some_and(|s| s.vrrp.state == "BACKUP" && role(&s) == Some("standby"));
        n1_ready && n2_ready && n1.has_address(VIP) && !n2.has_address(VIP)
    })?;
    progress.done("");
    println!();
    print_nodes(&n1, &n2);

    progress.step("Starting the client on 10.77.0.99: a new INSERT through the VIP every 25 ms, each on its own connection");
    let writer = Writer::start(client.netns(), VIP.parse()?, PG_PORT, PG_SUPERUSER)?;
    let steady = Instant::now();
    wait_for(
        "writes through the VIP",
        Duration::from_secs(10),
        running,
        || {
            let committed = writer
                .snapshot()
                .iter()
                .filter(|a| a.committed_on() == Some(N1.name))
                .count();
            committed >= 20 && steady.elapsed() >= Duration::from_secs(1)
        },
    )?;
    let before = writer.snapshot();
    progress.done(&format!(
        "{} of {} attempts committed on n1",
        before.iter().filter(|a| a.committed_on().is_some()).count(),
        before.len()
    ));

    progress.step("Crashing the primary: kill -9 of n1's postmaster");
    let fault = FaultTime {
        instant: Instant::now(),
        unix_ms: unix_ms_now(),
    };
    let killed_pid = primary.kill9()?;
    progress.done(&format!("pid {killed_pid} killed at T0"));

    progress.step(
        "Waiting for the failover: n2 promoted, holding the VIP, a write committed through it",
    );
    wait_for(
        "a write committed by n2 through the VIP",
        FAILOVER_DEADLINE,
        running,
        || {
            writer
                .snapshot()
                .iter()
                .any(|a| a.committed_on() == Some(N2.name) && a.started >= fault.instant)
        },
    )?;
    let failover_seen = fault.instant.elapsed();
    // Let the daemons publish their last events and the client show steady writes again.
    let settle = Instant::now();
    let _ = wait_for(
        "n2's status to settle",
        Duration::from_secs(3),
        running,
        || {
            settle.elapsed() >= Duration::from_millis(700)
                && setup::status(&n2).is_some_and(|s| {
                    s.holds_vips
                        && s.events
                            .iter()
                            .any(|e| e.detail.starts_with("promotion verified"))
                })
        },
    );
    let attempts = writer.stop()?;
    progress.done(&format!("seen after {} ms", failover_seen.as_millis()));

    let old_view = read_status(&n1)?;
    let new_view = read_status(&n2)?;
    let old_log = running
        .daemons
        .iter()
        .find(|(name, _)| name == N1.name)
        .map(|(_, d)| d.log_contents())
        .unwrap_or_default();
    let timeline = Timeline::build(&Inputs {
        fault,
        killed_pid,
        old_primary: &old_view,
        new_primary: &new_view,
        old_primary_log: &old_log,
        attempts: &attempts,
    });
    let lost = lost_writes(&standby, &attempts);

    println!("\nFailover timeline (ms from the kill, T0; daemon times have 1 ms resolution):\n");
    print!("{}", timeline.render());
    println!();
    match timeline.first_write_ms {
        Some(ms) => println!("  fault -> first committed write: {ms:.0} ms"),
        None => println!("  fault -> first committed write: not observed"),
    }
    if let Some(gap) = timeline.write_gap_ms {
        println!(
            "  write gap seen by the client (last commit on n1 -> first commit on n2): {gap:.0} ms"
        );
    }
    println!(
        "  client: {} attempts, {} committed, {} failed",
        timeline.attempts, timeline.committed, timeline.failed
    );
    if timeline.committed_on_old_after_fault > 0 {
        println!(
            "  {} commit(s) were acknowledged by n1's backends after its postmaster was killed",
            timeline.committed_on_old_after_fault
        );
    }
    if !timeline.failures.is_empty() {
        println!(
            "  failed attempts (attempts overlap: one stuck on a connect does not delay the next):"
        );
    }
    for (message, count) in &timeline.failures {
        println!("    {count:>4} x {message}");
    }
    match lost {
        Ok(0) => println!("  every acknowledged write is in n2's table"),
        Ok(n) => println!(
            "  {n} acknowledged write(s) are missing on n2: replication is asynchronous, the last \
             WAL of the crashed primary was not streamed"
        ),
        Err(e) => println!("  could not compare the acknowledged writes with n2: {e:#}"),
    }
    let missing = timeline.missing();
    if !missing.is_empty() {
        println!("  not observed: {}", missing.join("; "));
    }
    println!("\nAfter the failover:");
    print_nodes(&n1, &n2);
    if timeline.first_write_ms.is_none() {
        bail!("no write was committed by n2 through the VIP");
    }
    Ok(())
}

/// Stops the daemons (SIGTERM) and the databases, drops the lab and shows what is left.
fn teardown(progress: &mut Progress, lab: Lab, running: Running) -> Result<()> {
    let Running { daemons, databases } = running;
    if !daemons.is_empty() {
        progress.step("Restoring: stopping both daemons with SIGTERM");
        let mut exits = Vec::new();
        for (name, daemon) in &daemons {
            let _ = daemon.sigterm();
            match daemon.wait_exit(Duration::from_secs(10)) {
                Ok(status) => exits.push(format!("{name} {status}")),
                Err(e) => exits.push(format!("{name}: {e:#}")),
            }
        }
        progress.done(&exits.join(", "));
    }
    let alive: Vec<&PgNode> = databases.iter().filter(|db| postmaster_alive(db)).collect();
    if !alive.is_empty() {
        progress.step("Stopping PostgreSQL (fast shutdown)");
        let names: Vec<&str> = alive.iter().map(|db| db.host().name()).collect();
        for db in &alive {
            if let Err(e) = db.stop_fast() {
                println!("\n    {}: {e:#}", db.host().name());
            }
        }
        progress.done(&names.join(", "));
    }
    progress.step("Tearing down the lab: killing what is left in its namespaces, deleting them");
    let namespaces = lab.netns_names().unwrap_or_default();
    let pids: Vec<u32> = namespaces.iter().flat_map(|ns| netns_pids(ns)).collect();
    let dir: PathBuf = lab.dir().to_path_buf();
    let prefix = format!("{}-", lab.name());
    drop(daemons);
    drop(databases);
    drop(lab);
    let namespaces_left = whpg_lab::netns_list()
        .map(|all| all.iter().filter(|n| n.starts_with(&prefix)).count())
        .context("listing namespaces")?;
    let processes_left = pids.iter().filter(|&&pid| process_alive(pid)).count();
    let dir_left = dir.exists();
    progress.done(&format!(
        "removed {} namespaces and {} processes",
        namespaces.len(),
        pids.len()
    ));
    println!(
        "\nLeft behind: {namespaces_left} namespaces, {processes_left} processes, lab directory {}.",
        if dir_left { "still present" } else { "removed" }
    );
    if namespaces_left > 0 || processes_left > 0 {
        bail!("the teardown left {namespaces_left} namespaces and {processes_left} processes");
    }
    Ok(())
}

fn role(view: &NodeView) -> Option<&str> {
    view.database.as_ref().map(|d| d.role.as_str())
}

fn print_nodes(n1: &Host, n2: &Host) {
    let v1 = setup::status(n1);
    let v2 = setup::status(n2);
    print!(
        "{}",
        timeline::node_table(&[(N1.name, v1.as_ref()), (N2.name, v2.as_ref())])
    );
    println!();
}

fn read_status(host: &Host) -> Result<NodeView> {
    let mut view = None;
    let _ = whpg_lab::wait_until(
        Duration::from_secs(3),
        Duration::from_millis(50),
        "status",
        || {
            view = setup::status(host);
            view.is_some()
        },
    );
    view.with_context(|| format!("the daemon on {} does not answer /status", host.name()))
}

/// Polls `f` every 10 ms; fails on the deadline, on Ctrl-C, or when a daemon has exited.
fn wait_for(
    what: &str,
    deadline: Duration,
    running: &Running,
    mut f: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    loop {
        check_interrupted()?;
        if f() {
            return Ok(());
        }
        for (name, daemon) in &running.daemons {
            if let Some(status) = daemon.try_status() {
                bail!("the {name} daemon exited ({status}) while waiting for {what}");
            }
        }
        if start.elapsed() >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many of the acknowledged writes are missing from `db`'s table.
fn lost_writes(db: &PgNode, attempts: &[client::Attempt]) -> Result<usize> {
    let ids: Vec<String> = attempts
        .iter()
        .filter(|a| a.committed_on().is_some())
        .map(|a| a.id.to_string())
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let present: usize = db
        .psql(&format!(
            "SELECT count(*) FROM writes WHERE id IN ({})",
            ids.join(",")
        ))?
        .trim()
        .parse()
        .context("count(*)")?;
    Ok(ids.len().saturating_sub(present))
}

fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn postmaster_alive(db: &PgNode) -> bool {
    db.postmaster_pid().is_ok_and(process_alive)
}

/// Whether `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn netns_pids(ns: &str) -> Vec<u32> {
    whpg_lab::run(&["ip", "netns", "pids", ns], Duration::from_secs(5))
        .map(|out| {
            out.stdout
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
