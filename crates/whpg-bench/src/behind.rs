//! The faults in which the standby falls behind a primary that is still alive, and then the
//! primary dies: the replication stream cut silently while everything else works, the standby's
//! database restarted and still catching up, the standby's HA daemon restarted while behind, and a
//! cut stream that heals before the crash (see [`Fault::StreamCut`] and the ones after it).
//!
//! [`prepare`] runs the part before the crash, checks that it did what it says (a cut that does
//! not hold, or a standby that is not behind, fails the trial), and reads n1's flushed WAL
//! position just before the crash; [`check_at_crash`] then proves from n2's received position
//! whether n2 was behind at the crash.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use whpg_lab::{wait_until, Host, Process};

use crate::contenders::Contender;
use crate::lab::{whpg_ha_status, Topology, PG_PORT};
use crate::trial::Fault;

/// How long the client writes through the VIP to n1 after the stream is cut, before the crash.
pub const CUT_WRITES: Duration = Duration::from_secs(3);
/// After the cut, in-flight WAL has landed on n2 within this (its received position is then
/// taken as where the stream stopped).
const CUT_SETTLE: Duration = Duration::from_millis(300);
/// standby-daemon-restart-behind: the daemon is restarted this long after the cut...
const RESTART_AFTER_CUT: Duration = Duration::from_secs(1);
/// ...and the crash waits at least this long after it is back as a settled backup.
const AFTER_RESTART: Duration = Duration::from_secs(1);
/// Bound on the restarted daemon reporting a settled backup again.
const RESTART_LIMIT: Duration = Duration::from_secs(20);
/// stream-cut-heal: bound on n2 catching up after the heal, and how long writes go on after it
/// has (its HA daemon sees a caught-up, streaming standby for a while before the crash).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(20);
const AFTER_CATCH_UP: Duration = Duration::from_millis(1500);
/// standby-restart-crash: rows of about 1 kB inserted on n1 while n2's database is down: about
/// 100 MB of WAL, so that n2 is still receiving it when n1 is killed.
const BULK_ROWS: u32 = 100_000;
/// Bound on n2's WAL receiver streaming again after n2's database was started.
const STREAMING_LIMIT: Duration = Duration::from_secs(10);

/// nftables table of the stream cut, in n1's and n2's namespaces.
const CUT_TABLE: &str = "whpg_bench_stream_cut";
/// nftables table limiting n2's catch-up in standby-restart-crash, in n2's namespace.
const CATCH_UP_TABLE: &str = "whpg_bench_catch_up";
/// The rate at which n2 can receive WAL while it catches up in standby-restart-crash: 100 MB take
/// several seconds.
const CATCH_UP_RATE: &str = "16 mbytes/second";

/// What [`prepare`] left for the crash and for the report.
#[derive(Debug)]
pub struct Prepared {
    /// n1's `pg_current_wal_flush_lsn()` read just before the crash: every commit n1 had
    /// acknowledged by then lies below it.
    pub n1_flushed: u64,
    /// A position the fault claims n2 had not received at the crash (n1's flushed one for the
    /// cut faults, the end of the bulk insert for standby-restart-crash): a trial where n2 had
    /// fails. `None` for stream-cut-heal, where n2 is caught up.
    pub not_reached: Option<u64>,
    /// When the stream was cut (the cut faults).
    pub cut_at: Option<Instant>,
    pub notes: Vec<String>,
}

/// Whether `fault` is one of this module's.
pub fn is_behind_fault(fault: Fault) -> bool {
    matches!(
        fault,
        Fault::StreamCut
            | Fault::StandbyRestartCrash
            | Fault::StandbyDaemonRestartBehind
            | Fault::StreamCutHeal
    )
}

/// Runs the part of `fault` before the crash (nothing for the other faults). `procs[1]` is
/// replaced when n2's HA daemon is restarted.
pub fn prepare(
    fault: Fault,
    which: Contender,
    topo: &Topology,
    procs: &mut [Process],
    daemon: &std::path::Path,
) -> Result<Option<Prepared>> {
    if !is_behind_fault(fault) {
        return Ok(None);
    }
    let mut notes = Vec::new();
    let mut cut_at = None;
    let mut not_reached = None;
    if fault == Fault::StandbyRestartCrash {
        not_reached = Some(restart_standby_database(
            topo, which, &procs[1], &mut notes,
        )?);
    } else {
        let port = walreceiver_port(topo)?;
        cut_stream(topo, port, true)?;
        let at = Instant::now();
        cut_at = Some(at);
        std::thread::sleep(CUT_SETTLE);
        let stalled = n2_received(topo)?;
        let mut earliest_crash = at + CUT_WRITES;
        if fault == Fault::StandbyDaemonRestartBehind {
            sleep_until(at + RESTART_AFTER_CUT);
            let started = Instant::now();
            let old = procs.get(1).context("no HA daemon on n2")?;
            let new = which.restart(&topo.lab, daemon, &topo.n2, old)?;
            procs[1] = new;
            wait_settled_backup(topo, which, &procs[1], RESTART_LIMIT)
                .context("n2's HA daemon after its restart")?;
            notes.push(format!(
                "n2's HA daemon restarted {:.1} s after the cut, a settled backup again after \
                 {:.1} s",
                (started - at).as_secs_f64(),
                started.elapsed().as_secs_f64()
            ));
            earliest_crash = earliest_crash.max(Instant::now() + AFTER_RESTART);
        }
        sleep_until(earliest_crash);
        let received = n2_received(topo)?;
        let flushed = n1_flushed(topo)?;
        if received != stalled || flushed <= received {
            bail!(
                "the stream cut did not hold: n2 had received {} {:.1} s after the cut and {} \
                 {:.1} s after it, n1 has flushed {} (expected n2 to stay put and n1 to move on)",
                lsn(stalled),
                CUT_SETTLE.as_secs_f64(),
                lsn(received),
                at.elapsed().as_secs_f64(),
                lsn(flushed)
            );
        }
        notes.push(format!(
            "stream cut (walreceiver port {port}): after {:.1} s of writes n2 stood at {}, n1 at \
             {} ({} behind)",
            at.elapsed().as_secs_f64(),
            lsn(received),
            lsn(flushed),
            bytes(flushed - received)
        ));
        if fault == Fault::StreamCutHeal {
            cut_stream(topo, port, false)?;
            let healed = Instant::now();
            let target = n1_flushed(topo)?;
            wait_until(
                CATCH_UP_LIMIT,
                Duration::from_millis(20),
                &format!(
                    "n2 to receive n1's WAL up to {} after the heal",
                    lsn(target)
                ),
                || n2_received(topo).is_ok_and(|r| r >= target),
            )?;
            notes.push(format!(
                "stream healed; n2 caught up {:.0} ms later",
                healed.elapsed().as_secs_f64() * 1000.0
            ));
            std::thread::sleep(AFTER_CATCH_UP);
        }
    }
    let n1_flushed = n1_flushed(topo)?;
    if matches!(fault, Fault::StreamCut | Fault::StandbyDaemonRestartBehind) {
        not_reached = Some(n1_flushed);
    }
    Ok(Some(Prepared {
        n1_flushed,
        not_reached,
        cut_at,
        notes,
    }))
}

/// n2's received position after the crash: whatever n2 had at the crash is at most this, as the
/// position only grows (and stays put once n2 is promoted). Retried for a short while, as n2 may
/// be busy promoting.
pub fn received_after_crash(topo: &Topology) -> Result<u64> {
    let start = Instant::now();
    loop {
        match n2_received(topo) {
            Ok(r) => return Ok(r),
            Err(e) if start.elapsed() >= Duration::from_secs(3) => {
                return Err(e.context("reading n2's received WAL position after the crash"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Compares n2's position read after the crash with n1's before it: returns how far n2 was
/// behind at the crash at least (negative: it was not behind), and fails when the fault claims
/// n2 had not reached a position it had.
pub fn check_at_crash(prepared: &Prepared, received: u64) -> Result<i64> {
    if let Some(position) = prepared.not_reached.filter(|&p| received >= p) {
        bail!(
            "n2 was not behind at the crash: it had received {} by just after it, at or past {} \
             (n1 had flushed {} just before): the trial does not test what it says",
            lsn(received),
            lsn(position),
            lsn(prepared.n1_flushed)
        );
    }
    Ok(prepared.n1_flushed as i64 - received as i64)
}

/// standby-restart-crash up to the crash: n2's database stopped (fast), about 100 MB of WAL
/// written on n1, n2 started again, its WAL receiver streaming and its HA daemon `n2_daemon`
/// settled with n2 still behind. Returns the end of the bulk insert's WAL, which n2 must not have
/// received by the crash.
///
/// Over the lab's veth links n2 would receive 100 MB in a fraction of a second, before anything
/// can be observed; a real standby catches up for seconds or minutes (more WAL, a real network).
/// So while n2 catches up, the large segments of n1's WAL stream to n2 beyond [`CATCH_UP_RATE`]
/// are dropped (a slow link): small packets (the HA daemons' probes, new connections, VRRP) are
/// not touched.
fn restart_standby_database(
    topo: &Topology,
    which: Contender,
    n2_daemon: &Process,
    notes: &mut Vec<String>,
) -> Result<u64> {
    // n1 keeps the WAL n2 will ask for even if a checkpoint comes in between (no slot is used).
    topo.primary
        .psql("ALTER SYSTEM SET wal_keep_size = '1GB'")?;
    topo.primary.psql("SELECT pg_reload_conf()")?;
    let stopped = Instant::now();
    topo.standby.stop_fast().context("stopping n2's database")?;
    let from = n1_flushed(topo)?;
    topo.primary.psql(&format!(
        "CREATE TABLE bulk (id bigint, pad text); \
         INSERT INTO bulk SELECT g, repeat('x', 1000) FROM generate_series(1, {BULK_ROWS}) g"
    ))?;
    let to = n1_flushed(topo)?;
    let (n1, n2) = (topo.n1.address(), topo.n2.address());
    apply_nft(
        topo,
        &topo.n2,
        CATCH_UP_TABLE,
        Some(&format!(
            "ip saddr {n1} tcp sport {PG_PORT} ip daddr {n2} meta length > 1000 limit rate over \
             {CATCH_UP_RATE} drop"
        )),
    )?;
    topo.standby.start().context("starting n2's database")?;
    let started = Instant::now();
    wait_until(
        STREAMING_LIMIT,
        Duration::from_millis(10),
        "n2's WAL receiver to stream after n2's start",
        || {
            topo.standby
                .psql("SELECT status FROM pg_stat_wal_receiver")
                .is_ok_and(|s| s == "streaming")
        },
    )?;
    let streaming = started.elapsed();
    // The crash should find n2 a standby its HA daemon has seen healthy again, only behind.
    wait_settled_backup(topo, which, n2_daemon, RESTART_LIMIT)
        .context("n2's HA daemon after n2's database restart")?;
    let received = n2_received(topo)?;
    let flushed = n1_flushed(topo)?;
    if received >= to {
        bail!(
            "n2 caught up before the crash: {:.0} ms after its start it had received {}, past \
             the end of the bulk insert at {} (write more than {} of WAL while n2 is down, or \
             lower the catch-up rate {CATCH_UP_RATE})",
            started.elapsed().as_secs_f64() * 1000.0,
            lsn(received),
            lsn(to),
            bytes(to - from)
        );
    }
    notes.push(format!(
        "n2's database down {:.1} s while n1 wrote {} of WAL; n2 streaming {:.0} ms after its \
         start (catch-up limited to {CATCH_UP_RATE}), its daemon settled after {:.0} ms, at {} \
         with n1 at {} ({} behind)",
        (started - stopped).as_secs_f64(),
        bytes(to - from),
        streaming.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0,
        lsn(received),
        lsn(flushed),
        bytes(flushed - received)
    ));
    Ok(to)
}

/// The source port of n2's WAL receiver connection to n1, from n1's `pg_stat_replication`: the
/// one connection there must be n2's and streaming.
fn walreceiver_port(topo: &Topology) -> Result<u16> {
    let rows = topo.primary.psql(
        "SELECT host(client_addr) || ' ' || client_port || ' ' || state FROM pg_stat_replication",
    )?;
    let lines: Vec<&str> = rows.lines().filter(|l| !l.is_empty()).collect();
    let n2 = topo.n2.address();
    let fields: Vec<&str> = match lines.as_slice() {
        [one] => one.split(' ').collect(),
        _ => bail!(
            "cannot cut the stream: n1's pg_stat_replication has {} rows ({lines:?}), expected \
             n2's one WAL receiver",
            lines.len()
        ),
    };
    match fields.as_slice() {
        [addr, port, "streaming"] if *addr == n2 => port
            .parse()
            .with_context(|| format!("client_port {port:?} in pg_stat_replication")),
        _ => bail!(
            "cannot cut the stream: n1's pg_stat_replication shows {:?}, expected `{n2} <port> \
             streaming`",
            lines[0]
        ),
    }
}

/// Drops (or no longer drops) the packets of n2's WAL receiver connection, by its 4-tuple, at
/// both ends on the way in: as a fault in the network would, silently, without a reset, while
/// every other connection between the two hosts (probes, VRRP, new connections) goes on.
fn cut_stream(topo: &Topology, port: u16, cut: bool) -> Result<()> {
    let (n1, n2) = (topo.n1.address(), topo.n2.address());
    let rules = [
        (
            &topo.n2,
            format!("ip saddr {n1} tcp sport {PG_PORT} ip daddr {n2} tcp dport {port} drop"),
        ),
        (
            &topo.n1,
            format!("ip saddr {n2} tcp sport {port} ip daddr {n1} tcp dport {PG_PORT} drop"),
        ),
    ];
    for (host, rule) in rules {
        apply_nft(topo, host, CUT_TABLE, cut.then_some(rule.as_str()))?;
    }
    Ok(())
}

/// Replaces nftables table `table` in `host`'s namespace by one holding `rule` on input, or
/// removes it. The tables go with the lab's namespaces.
fn apply_nft(topo: &Topology, host: &Host, table: &str, rule: Option<&str>) -> Result<()> {
    // Declaring then deleting the table makes the delete succeed whether or not it existed.
    let mut script = format!("table inet {table}\ndelete table inet {table}\n");
    if let Some(rule) = rule {
        script.push_str(&format!(
            "table inet {table} {{\n  chain input {{\n    type filter hook input priority 0; \
             policy accept;\n    {rule}\n  }}\n}}\n"
        ));
    }
    let what = if rule.is_some() { "add" } else { "remove" };
    let file = topo
        .lab
        .write_file(&format!("{}-{table}-{what}.nft", host.name()), &script)?;
    host.exec_ok(&["nft".as_ref(), "-f".as_ref(), file.as_os_str()])
        .with_context(|| format!("{what} nftables table {table} in {}", host.name()))?;
    Ok(())
}

/// Waits until n2's HA daemon `proc` is a settled backup: whpg-ha's `/status` says BACKUP with a
/// standby database; keepalived has run two check periods and last entered BACKUP.
pub fn wait_settled_backup(
    topo: &Topology,
    which: Contender,
    proc: &Process,
    limit: Duration,
) -> Result<()> {
    if which.is_whpg_ha() {
        wait_until(
            limit,
            Duration::from_millis(50),
            "whpg-ha on n2 to report a BACKUP with a standby database",
            || {
                whpg_ha_status(&topo.n2).is_some_and(|s| {
                    s["vrrp"]["state"] == "BACKUP" && s["database"]["role"] == "standby"
                })
            },
        )?;
    } else {
        std::thread::sleep(Duration::from_millis(2100));
        if !proc.is_running() {
            bail!("keepalived on n2 exited: {}", proc.log_contents());
        }
        let log = proc.log_contents();
        let last = log.lines().rev().find(|l| l.contains("Entering "));
        if !last.is_some_and(|l| l.contains("BACKUP")) {
            bail!("keepalived on n2 is not BACKUP: {last:?}");
        }
    }
    Ok(())
}

/// n2's received WAL position: `pg_last_wal_receive_lsn()`, or its replayed one before its WAL
/// receiver has received anything since its start.
fn n2_received(topo: &Topology) -> Result<u64> {
    parse_lsn(&topo.standby.psql(
        "SELECT GREATEST(COALESCE(pg_last_wal_receive_lsn(), '0/0'), \
         COALESCE(pg_last_wal_replay_lsn(), '0/0'))",
    )?)
}

/// n1's flushed WAL position.
fn n1_flushed(topo: &Topology) -> Result<u64> {
    parse_lsn(&topo.primary.psql("SELECT pg_current_wal_flush_lsn()")?)
}

fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// A `pg_lsn` (`16/B374D848`) as a byte position.
pub fn parse_lsn(text: &str) -> Result<u64> {
    let (hi, lo) = text
        .trim()
        .split_once('/')
        .with_context(|| format!("{text:?} is not an LSN (expected HI/LO in hex)"))?;
    let part =
        |p: &str| u32::from_str_radix(p, 16).with_context(|| format!("{text:?} is not an LSN"));
    Ok((u64::from(part(hi)?) << 32) | u64::from(part(lo)?))
}

/// A byte position as `pg_lsn` text.
pub fn lsn(position: u64) -> String {
    format!("{:X}/{:X}", position >> 32, position & 0xffff_ffff)
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} kB", n as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_and_print_back() {
        assert_eq!(parse_lsn("0/0").unwrap(), 0);
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(lsn(0x16_B374_D848), "16/B374D848");
        assert!(parse_lsn("B374D848").is_err());
        assert!(parse_lsn("1/xyz").is_err());
    }

    #[test]
    fn a_standby_not_behind_fails_the_trial_only_where_it_must_be() {
        let mut prepared = Prepared {
            n1_flushed: 1000,
            not_reached: Some(900),
            cut_at: None,
            notes: Vec::new(),
        };
        assert_eq!(check_at_crash(&prepared, 400).unwrap(), 600);
        let error = check_at_crash(&prepared, 900).unwrap_err().to_string();
        assert!(error.contains("not behind"), "{error}");
        prepared.not_reached = None;
        assert_eq!(check_at_crash(&prepared, 1200).unwrap(), -200);
    }
}
