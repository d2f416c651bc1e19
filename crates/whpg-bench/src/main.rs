//! Failover benchmark of whpg-ha against keepalived on a PostgreSQL 15 pair in the namespace lab.
//!
//! For each fault (`db-crash`: kill -9 of the primary's postmaster; `link-loss`: the primary's
//! link goes down; and the rest of the design's fault model, see [`trial::Fault`]) and each
//! implementation, N trials each in a fresh lab measure the time from the fault to the first
//! committed write through the VIP, seen by a client in its own namespace that starts a new INSERT
//! every 25 ms on its own connection. Each trial also records whether the standby was promoted
//! (and whether it should have been), split brain (VIP on both live hosts, or both databases
//! writable, for longer than one advert interval, sampled every 10 ms), how long n2 held the VIP
//! while its database was read-only, and acknowledged commits missing from the final primary. Run
//! as root:
//!
//! ```text
//! cargo run --release -p whpg-bench -- --trials 10 --faults db-crash,link-loss --out docs/bench-results
//! cargo run --release -p whpg-bench -- --smoke
//! ```
//!
//! A measurement tool: slow numbers never fail it; only a harness failure (a lab that cannot be
//! built or observed) makes it exit non-zero.

mod behind;
mod chart;
mod contenders;
mod etcd;
mod idle;
mod lab;
mod netns;
mod report;
mod sampler;
mod trial;
mod writer;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;

use contenders::Contender;
use trial::{Fault, Outcome, Status};

#[derive(Parser, Debug)]
#[command(about = "Fault-to-first-write benchmark of whpg-ha and keepalived (run as root)")]
struct Args {
    /// Measured trials per fault and implementation.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Faults, comma-separated, or `all` (the design's whole fault model; about 4 hours at 10
    /// trials on 2 cores): db-crash, link-loss, db-stop, standby-down, blip-1s, daemon-kill,
    /// daemon-kill-backup, partition, partition-15s, partition-witness-n1, isolation, flapping-link,
    /// flapping-db, promote-fails, promote-hangs, old-primary-restart, switchover, stream-cut,
    /// standby-restart-crash, standby-daemon-restart-behind, stream-cut-heal, etcd-member-down,
    /// etcd-down, etcd-down-crash (the etcd faults start the lab's etcd cluster for every stack).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    faults: Vec<String>,
    /// Implementations, comma-separated: whpg-ha, whpg-ha-fast, whpg-ha-arbiter (the default
    /// profile with the etcd arbiter, on a 3-member etcd cluster in n1, n2 and gw),
    /// keepalived-seed, keepalived-fast.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "whpg-ha,whpg-ha-fast,keepalived-seed,keepalived-fast"
    )]
    implementations: Vec<String>,
    /// Directory for results.md, results.json and the logs of unusual trials.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the logs of every trial in `<out>/logs`, not only those of unusual ones.
    #[arg(long)]
    all_logs: bool,
    /// One trial of db-crash and link-loss for whpg-ha-fast and keepalived-fast, and one of
    /// partition for whpg-ha-arbiter (with its etcd cluster): checks the harness.
    #[arg(long)]
    smoke: bool,
    /// The whpg-ha binary (default: built with cargo, same profile as this benchmark).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Idle cost instead of faults: CPU of a settled pair's HA processes on both nodes and of both
    /// PostgreSQL clusters, new connections/s on each database, and the master's RSS, for whpg-ha
    /// (monitor off; on with held sessions; on with a connection per probe), keepalived-seed,
    /// keepalived-fast and keepalived doing VRRP only.
    #[arg(long)]
    idle: bool,
    /// Length of each idle measurement.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// With --idle: skip the measurement with whpg-ha's database monitor on.
    #[arg(long)]
    no_monitor: bool,
    /// Only draw `results.svg` into `--out` from these `results.json` files (comma-separated; a
    /// later file's row replaces an earlier one's for the same fault and implementation).
    #[arg(long, value_delimiter = ',')]
    chart_from: Vec<PathBuf>,
    /// Advert interval of whpg-ha, whpg-ha-fast and keepalived-fast in ms (a multiple of 10;
    /// keepalived-seed keeps 1 s). The settings lines of the report say 100 ms regardless.
    #[arg(long, default_value_t = 100)]
    advert_interval_ms: u64,
    /// Replicate synchronously (n1 waits for n2 to confirm each commit; n2, once promoted, does
    /// not wait). With it the standby-down fault blocks every write on n1, as it should.
    #[arg(long)]
    synchronous: bool,
    /// whpg-ha's `[replication] mode` (`async`, `sync`, `sync-strict`; sync_timeout 10 s): the
    /// daemon itself requires and relaxes the standby. Each trial starts once n1 lists n2 as
    /// `sync`. keepalived has no such mode (see `--synchronous` for a static setting).
    #[arg(long, default_value = "async")]
    whpg_replication_mode: String,
}

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    kernel: String,
    build: &'static str,
    date: String,
    load_before: String,
}

#[derive(Serialize)]
struct Results<'a> {
    command: String,
    machine: &'a Machine,
    wall_clock_s: f64,
    advert_interval_ms: u64,
    replication: &'static str,
    settings: Vec<(&'static str, &'static str)>,
    rows: &'a [report::Row],
    trials: &'a [Outcome],
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("whpg-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<i32> {
    let args = Args::parse();
    if !args.chart_from.is_empty() {
        let out = args.out.as_ref().context("--chart-from needs --out")?;
        return chart_from(&args.chart_from, out);
    }
    let (faults, contenders, trials) = if args.smoke {
        (
            vec![Fault::DbCrash, Fault::LinkLoss, Fault::Partition],
            vec![
                Contender::WhpgHaFast,
                Contender::KeepalivedFast,
                Contender::WhpgHaArbiter,
            ],
            1,
        )
    } else {
        let faults = if args.faults.iter().any(|f| f == "all") {
            Fault::ALL.to_vec()
        } else {
            args.faults
                .iter()
                .map(|f| Fault::parse(f).with_context(|| format!("unknown fault {f:?}")))
                .collect::<Result<Vec<_>>>()?
        };
        let contenders = args
            .implementations
            .iter()
            .map(|c| Contender::parse(c).with_context(|| format!("unknown implementation {c:?}")))
            .collect::<Result<Vec<_>>>()?;
        (faults, contenders, args.trials)
    };
    if trials == 0 {
        bail!("--trials must be at least 1");
    }
    if args.advert_interval_ms < 10 || args.advert_interval_ms % 10 != 0 {
        bail!("--advert-interval-ms must be a multiple of 10, at least 10");
    }
    contenders::set_advert_interval(std::time::Duration::from_millis(args.advert_interval_ms));
    lab::set_synchronous(args.synchronous);
    contenders::set_replication_mode(&args.whpg_replication_mode)?;
    if args.synchronous && contenders::replication_mode() != "async" {
        bail!("--synchronous sets synchronous_standby_names by hand; whpg-ha's sync modes set it themselves: use one or the other");
    }
    let mut needs = vec![
        "ip",
        "runuser",
        "keepalived",
        "user:postgres",
        "/usr/lib/postgresql/15/bin/initdb",
        "/usr/lib/postgresql/15/bin/pg_isready",
    ];
    // The smoke run's one arbiter trial is the partition; the other pairs run without it.
    let selected = |fault: Fault, which: Contender| {
        !args.smoke || (fault == Fault::Partition) == which.has_arbiter()
    };
    let etcd_needed = faults.iter().any(|&f| {
        contenders
            .iter()
            .any(|&c| selected(f, c) && (c.has_arbiter() || f.uses_etcd()))
    });
    if !args.idle && etcd_needed {
        needs.extend(["etcd", "etcdctl"]);
    }
    let (missing, packages) = whpg_lab::prereq::missing(&needs);
    if !missing.is_empty() {
        bail!(
            "prerequisites missing: {}; packages: {}",
            missing.join("; "),
            packages.join(" ")
        );
    }
    let daemon = resolve_daemon(args.daemon.as_deref())?;
    let machine = machine()?;
    if args.idle {
        return idle_run(&args, &daemon, &machine);
    }
    let logs = args.out.as_ref().map(|o| o.join("logs"));
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    eprintln!(
        "whpg-bench: {} trial(s) x {} fault(s) x {} implementation(s), {} build, daemon {}, \
         adverts {} ms, {} replication",
        trials,
        faults.len(),
        contenders.len(),
        machine.build,
        daemon.display(),
        args.advert_interval_ms,
        lab::replication()
    );

    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for &fault in &faults {
        // Implementations alternate trial by trial, so machine load hits them alike.
        for n in 1..=trials {
            for &which in contenders.iter().filter(|&&c| selected(fault, c)) {
                // A start-up that promoted the standby before the fault measures nothing: rerun
                // it, at most `trials` extra times per row.
                let mut reruns = 0;
                loop {
                    let outcome =
                        one_trial(fault, which, n, &daemon, logs.as_deref(), args.all_logs);
                    let again = outcome.status == Status::PromotedBeforeFault && reruns < trials;
                    outcomes.push(outcome);
                    if !again {
                        break;
                    }
                    reruns += 1;
                }
            }
        }
    }
    let wall = started.elapsed();

    let rows = report::rows(&outcomes, &faults, &contenders);
    let table = report::table(&rows);
    let ratios = report::ratios(&rows);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!();
    println!("{table}");
    println!("Median ratios (lower is faster for whpg-ha):");
    println!("{ratios}");
    println!(
        "{} build, nproc {}, kernel {}, {}, load before: {}; wall clock {:.0} s",
        machine.build,
        machine.nproc,
        machine.kernel,
        machine.date,
        machine.load_before,
        wall.as_secs_f64()
    );
    if let Some(out) = &args.out {
        let settings = contenders
            .iter()
            .map(|c| (c.name(), c.settings()))
            .collect();
        let md = format!(
            "# whpg-bench results\n\nCommand: `{command}`\n\nAdvert interval (all but \
             keepalived-seed): {} ms. Replication: {} (whpg-ha `[replication] mode = {}`).\n\n\
             Machine: nproc {}, kernel {}, {} build, {}, load average before the run: {}; wall \
             clock {:.0} s.\n\n{table}\nMedian ratios:\n\n{ratios}\n",
            args.advert_interval_ms,
            lab::replication(),
            contenders::replication_mode(),
            machine.nproc,
            machine.kernel,
            machine.build,
            machine.date,
            machine.load_before,
            wall.as_secs_f64()
        );
        std::fs::write(out.join("results.md"), md)?;
        let json = Results {
            command,
            machine: &machine,
            wall_clock_s: wall.as_secs_f64(),
            advert_interval_ms: args.advert_interval_ms,
            replication: lab::replication(),
            settings,
            rows: &rows,
            trials: &outcomes,
        };
        std::fs::write(
            out.join("results.json"),
            serde_json::to_string_pretty(&json)? + "\n",
        )?;
        let bars: Vec<chart::Bar> = rows.iter().filter_map(chart::Bar::from_row).collect();
        std::fs::write(out.join("results.svg"), chart::svg(&bars, CHART_TITLE))?;
        eprintln!(
            "whpg-bench: wrote {}/results.{{md,json,svg}}",
            out.display()
        );
    }
    let harness_errors = outcomes
        .iter()
        .filter(|o| o.status == Status::HarnessError)
        .count();
    if harness_errors > 0 {
        eprintln!("whpg-bench: {harness_errors} trial(s) failed in the harness");
        return Ok(1);
    }
    Ok(0)
}

const CHART_TITLE: &str = "whpg-ha vs keepalived: fault to first committed write through the VIP";

/// `--chart-from`: `results.svg` in `out` from the rows of earlier `results.json` files.
fn chart_from(files: &[PathBuf], out: &Path) -> Result<i32> {
    let mut bars: Vec<chart::Bar> = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let rows = json["rows"]
            .as_array()
            .with_context(|| format!("{} has no rows", file.display()))?;
        for bar in rows.iter().filter_map(chart::Bar::from_json) {
            match bars
                .iter_mut()
                .find(|b| b.fault == bar.fault && b.implementation == bar.implementation)
            {
                Some(old) => *old = bar,
                None => bars.push(bar),
            }
        }
    }
    // Group order: faults as first seen; within a fault, the implementations in their usual order.
    let rank = |name: &str| Contender::ALL.iter().position(|c| c.name() == name);
    let faults: Vec<String> = bars.iter().fold(Vec::new(), |mut v, b| {
        if !v.contains(&b.fault) {
            v.push(b.fault.clone());
        }
        v
    });
    bars.sort_by_key(|b| {
        (
            faults.iter().position(|f| *f == b.fault),
            rank(&b.implementation),
        )
    });
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("results.svg");
    std::fs::write(&path, chart::svg(&bars, CHART_TITLE))?;
    eprintln!("whpg-bench: wrote {} ({} bars)", path.display(), bars.len());
    Ok(0)
}

/// `--idle`: prints the idle-cost table and writes `idle.{md,json}` into `--out`.
fn idle_run(args: &Args, daemon: &Path, machine: &Machine) -> Result<i32> {
    let rows = idle::run(daemon, args.seconds, !args.no_monitor)?;
    let table = idle::table(&rows);
    println!("{table}");
    let facts = format!(
        "{} build, nproc {}, kernel {}, {}, load average before: {}",
        machine.build, machine.nproc, machine.kernel, machine.date, machine.load_before
    );
    println!("{facts}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(
            out.join("idle.md"),
            format!("# whpg-bench idle cost\n\nMachine: {facts}.\n\n{table}"),
        )?;
        let json = serde_json::json!({ "machine": machine, "rows": rows });
        std::fs::write(
            out.join("idle.json"),
            serde_json::to_string_pretty(&json)? + "\n",
        )?;
        eprintln!("whpg-bench: wrote {}/idle.{{md,json}}", out.display());
    }
    Ok(0)
}

/// Runs one trial; errors and panics become a harness error in the outcome. The lab is torn down
/// by its guard in both cases.
fn one_trial(
    fault: Fault,
    which: Contender,
    n: usize,
    daemon: &Path,
    logs: Option<&Path>,
    all_logs: bool,
) -> Outcome {
    let mut outcome = Outcome::new(fault, which, n);
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        trial::run(&mut outcome, daemon, logs, all_logs)
    }));
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(panic) => Some(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        ),
    };
    if let Some(e) = error {
        outcome.status = Status::HarnessError;
        outcome.error = Some(e);
    }
    eprintln!(
        "{} {} #{n}: {:?} first write {} on {} | VIP on n2 {} | failover {} (expected {}) | split \
         brain {} (VIP {:.0} ms, writable {:.0} ms) | VIP on read-only n2 {:.0} ms | longest write \
         gap {:.0} ms | acked {} lost \
         {} | n2 MASTER before fault {} | {:.1} s{}{}",
        fault.name(),
        which.name(),
        outcome.status,
        outcome
            .first_write_ms
            .map_or("–".into(), |v| format!("{v:.0} ms")),
        outcome.first_write_node.as_deref().unwrap_or("–"),
        outcome
            .vip_on_n2_ms
            .map_or("–".into(), |v| format!("{v:.0} ms")),
        outcome.failover,
        outcome
            .failover_expected
            .map_or("either".to_string(), |e| e.to_string()),
        outcome.split_brain,
        outcome.vip_on_both_ms,
        outcome.both_writable_ms,
        outcome.vip_on_read_only_ms,
        outcome.longest_write_gap_ms,
        outcome.acknowledged,
        match outcome.lost {
            Some(0) => "0".to_string(),
            Some(l) => {
                // The first and last few; the JSON has them all.
                let acks = &outcome.lost_acks;
                let show = |a: &trial::LostAck| {
                    format!("#{} by {} at {:+.0} ms", a.id, a.node, a.acked_ms)
                };
                let listed: Vec<String> = if acks.len() <= 10 {
                    acks.iter().map(show).collect()
                } else {
                    let mut v: Vec<String> = acks[..5].iter().map(show).collect();
                    v.push(format!("… {} more …", acks.len() - 10));
                    v.extend(acks[acks.len() - 5..].iter().map(show));
                    v
                };
                format!("{l} {listed:?}")
            }
            None => "?".to_string(),
        },
        outcome.n2_master_before_fault,
        started.elapsed().as_secs_f64(),
        if outcome.notes.is_empty() {
            String::new()
        } else {
            format!(" | {}", outcome.notes.join("; "))
        },
        outcome
            .error
            .as_deref()
            .map_or(String::new(), |e| format!(" | error: {e}")),
    );
    outcome
}

fn machine() -> Result<Machine> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let date = whpg_lab::run(
        &["date", "-u", "+%Y-%m-%d %H:%M UTC"],
        whpg_lab::DEFAULT_TIMEOUT,
    )?
    .stdout
    .trim()
    .to_string();
    Ok(Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        date,
        load_before,
    })
}

/// The whpg-ha binary: `--daemon`, or built now by cargo in this benchmark's profile.
fn resolve_daemon(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        // Daemons run with the lab directory as working directory: the path must be absolute.
        return std::fs::canonicalize(path).with_context(|| format!("{}", path.display()));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/whpg-bench -> target/<profile>/whpg-ha
    let profile_dir = exe.parent().context("locating the target directory")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-p", "whpg-ha", "--bin", "whpg-ha"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build for whpg-ha")?;
    if !status.success() {
        bail!("cargo build of whpg-ha failed ({status}); pass --daemon PATH");
    }
    let path = profile_dir.join("whpg-ha");
    if !path.exists() {
        bail!("{} does not exist; pass --daemon PATH", path.display());
    }
    Ok(path)
}
