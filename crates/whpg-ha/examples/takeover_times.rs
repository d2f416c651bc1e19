//! Takeover times of whpg-ha pairs and keepalived pairs with the same VRRP settings, measured in the
//! namespace lab. Run as root:
//!
//! ```text
//! cargo run -p whpg-ha --example takeover_times -- --runs 5
//! ```
//!
//! For the seed setting (VRRPv2, 1 s adverts, unicast, PASS auth) and the fast one (VRRPv3, 100 ms
//! adverts, multicast), each implementation runs as a pair (n1 priority 100, n2 priority 98) in a
//! fresh lab per measurement, with a client on cl. Faults of the master n1:
//! - its link goes down (`Lab::link_down`): time until the VIP is on n2, and until the client gets
//!   its first echo reply from the VIP (one ICMP echo request every 20 ms from a raw socket in the
//!   client's namespace, so a request stuck behind a stale ARP entry does not hide the next ones);
//! - it is stopped gracefully (SIGTERM, it resigns with priority 0): time until the VIP is on n2.
//!   No ping here: the old master answers until it has removed the VIP, so the first reply says
//!   nothing about the takeover.
//!
//! The fault comes at a random moment of the master's advert cycle, so link-down times spread
//! over one advert interval (Master_Down_Interval minus the time since the last advert). The VIP
//! is detected by polling `ip addr` in n2's namespace (a few ms per poll); times start just
//! before the fault is injected, so they include the few ms the `ip`/`kill` call takes. This is a
//! measurement tool: it prints a markdown table and asserts nothing about the times.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use whpg_lab::{wait_until, Host, KeepalivedConf, Lab, Process, Signal};

// The shared lab helpers of the tests start the daemon from `env!("CARGO_BIN_EXE_whpg-ha")`, which
// Cargo defines for integration tests only. For this example that one name resolves to the binary
// found (and freshly built) at start-up; every other name is the standard macro.
macro_rules! env {
    ("CARGO_BIN_EXE_whpg-ha") => {
        $crate::daemon_binary()
    };
    ($name:literal) => {
        ::std::env!($name)
    };
}

#[path = "../tests/common/mod.rs"]
mod common;

use common::daemon::{pair_config, start_daemon, vrrp_state, PairSettings};

const N1: &str = "10.77.0.11";
const N2: &str = "10.77.0.12";
const CLIENT: &str = "10.77.0.99";
/// Bound on every wait (start-up, takeover, ping).
const DEADLINE: Duration = Duration::from_secs(20);
/// One echo request every this often.
const PING_EVERY: Duration = Duration::from_millis(20);

static DAEMON: OnceLock<String> = OnceLock::new();

/// Path of the `whpg-ha` binary the pairs run.
fn daemon_binary() -> &'static str {
    DAEMON.get().expect("daemon binary resolved at start-up")
}

#[derive(Parser, Debug)]
#[command(about = "Takeover times of whpg-ha and keepalived pairs in the namespace lab (root)")]
struct Args {
    /// Measurements per scenario and implementation.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only this setting: `seed` or `fast`.
    #[arg(long)]
    only: Option<String>,
    /// The whpg-ha binary (default: built with cargo next to this example).
    #[arg(long)]
    daemon: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    WhpgHa,
    Keepalived,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::WhpgHa => "whpg-ha",
            Impl::Keepalived => "keepalived 2.2.7",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    LinkDown,
    Sigterm,
}

/// One VRRP setting for both implementations.
struct Setting {
    key: &'static str,
    label: &'static str,
    advert_interval: Duration,
    daemon: PairSettings,
    keepalived: fn(priority: u8, src: &str, peer: &str) -> KeepalivedConf,
}

fn settings() -> Vec<Setting> {
    let mut fast = PairSettings::fast();
    fast.vrid = 52;
    vec![
        Setting {
            key: "seed",
            label: "seed (v2, 1 s, unicast, PASS)",
            advert_interval: Duration::from_secs(1),
            daemon: PairSettings::seed(),
            keepalived: |priority, src, peer| {
                KeepalivedConf::new(51, priority, PairSettings::seed().vip)
                    .state(if priority == 100 { "MASTER" } else { "BACKUP" })
                    .unicast(src, &[peer])
                    .auth_pass("whpg2025")
            },
        },
        Setting {
            key: "fast",
            label: "fast (v3, 100 ms, multicast)",
            advert_interval: Duration::from_millis(100),
            daemon: fast,
            keepalived: |priority, _src, _peer| {
                KeepalivedConf::new(52, priority, PairSettings::fast().vip)
                    .state(if priority == 100 { "MASTER" } else { "BACKUP" })
                    .version(3)
                    .advert_int(Duration::from_millis(100))
            },
        },
    ]
}

/// What one run measured.
struct Sample {
    vip: Duration,
    ping: Option<Duration>,
}

/// A running pair in its own lab. Field order matters: the processes go before the lab.
struct Pair {
    n1_process: Process,
    n2_process: Process,
    n1: Host,
    n2: Host,
    client: Host,
    lab: Lab,
}

fn start_pair(setting: &Setting, kind: Impl) -> Result<Pair> {
    let lab = Lab::new(&format!("takeover_{}_{}", setting.key, kind.name()))?;
    let n1 = lab.add_host("n1", &format!("{N1}/24"))?;
    let n2 = lab.add_host("n2", &format!("{N2}/24"))?;
    let client = lab.add_host("cl", &format!("{CLIENT}/24"))?;
    let (p1, p2) = match kind {
        Impl::WhpgHa => {
            let config = pair_config(&setting.daemon, &[("n1", N1, 100), ("n2", N2, 98)]);
            (
                start_daemon(&lab, &n1, "n1", &config),
                start_daemon(&lab, &n2, "n2", &config),
            )
        }
        Impl::Keepalived => (
            n1.spawn_keepalived(&(setting.keepalived)(100, N1, N2).render())?,
            n2.spawn_keepalived(&(setting.keepalived)(98, N2, N1).render())?,
        ),
    };
    let pair = Pair {
        n1_process: p1,
        n2_process: p2,
        n1,
        n2,
        client,
        lab,
    };
    pair.wait_steady(setting, kind)?;
    Ok(pair)
}

impl Pair {
    /// n1 master and the only holder of the VIP for a while, n2 a backup that hears it, and the
    /// client's ARP entry for the VIP pointing at n1.
    fn wait_steady(&self, setting: &Setting, kind: Impl) -> Result<()> {
        let vip = setting.daemon.vip_address();
        let settle = Duration::from_millis(1500);
        let start = Instant::now();
        'outer: loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            wait_until(left, Duration::from_millis(10), "VIP only on n1", || {
                self.n1.has_address(vip) && !self.n2.has_address(vip)
            })?;
            let held = Instant::now();
            while held.elapsed() < settle {
                if !self.n1.has_address(vip) || self.n2.has_address(vip) {
                    continue 'outer;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        match kind {
            Impl::WhpgHa => {
                wait_until(
                    Duration::from_secs(5),
                    Duration::from_millis(20),
                    "n2 BACKUP",
                    || vrrp_state(&self.n2).as_deref() == Some("BACKUP"),
                )?;
            }
            Impl::Keepalived => {
                let log = std::fs::read_to_string(self.n2_process.log_path())?;
                let last = log.lines().rev().find(|l| l.contains("Entering "));
                if !last.is_some_and(|l| l.contains("BACKUP")) {
                    bail!("keepalived on n2 is not BACKUP: {last:?}");
                }
            }
        }
        if !self.client.ping(vip, Duration::from_secs(5)) {
            bail!("the client does not reach the VIP before the fault");
        }
        Ok(())
    }

    fn inject(&self, fault: Fault, kind: Impl) -> Result<()> {
        match (fault, kind) {
            (Fault::LinkDown, _) => self.lab.link_down(&self.n1),
            (Fault::Sigterm, Impl::WhpgHa) => self.n1_process.sigterm(),
            (Fault::Sigterm, Impl::Keepalived) => self.n1_process.kill(Signal::Term),
        }
    }
}

/// Echo requests from the client's namespace to `target` every [`PING_EVERY`] until one is
/// answered; returns the time of the first reply since `t0`.
fn first_echo_reply(target: Ipv4Addr, t0: Instant, deadline: Duration) -> Result<Option<Duration>> {
    let socket =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).context("raw ICMP socket")?;
    let dest = SockAddr::from(SocketAddrV4::new(target, 0));
    let ident = (std::process::id() & 0xffff) as u16;
    let mut seq: u16 = 0;
    let mut next_send = Instant::now();
    let mut buf = [0u8; 1500];
    while t0.elapsed() < deadline {
        let now = Instant::now();
        if now >= next_send {
            seq = seq.wrapping_add(1);
            socket
                .send_to(&echo_request(ident, seq), &dest)
                .context("sending an echo request")?;
            next_send += PING_EVERY;
            continue;
        }
        let wait = (next_send - now).max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait))?;
        let len = match (&socket).read(&mut buf) {
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e).context("receiving ICMP"),
        };
        if is_echo_reply(&buf[..len], target, ident) {
            return Ok(Some(t0.elapsed()));
        }
    }
    Ok(None)
}

fn echo_request(ident: u16, seq: u16) -> [u8; 16] {
    let mut packet = [0u8; 16];
    packet[0] = 8; // echo request, code 0
    packet[4..6].copy_from_slice(&ident.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..].copy_from_slice(b"whpg-lab");
    let sum = internet_checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 datagram (as a raw socket returns it) carrying an echo reply from `from` to `ident`.
fn is_echo_reply(datagram: &[u8], from: Ipv4Addr, ident: u16) -> bool {
    let Some(&first) = datagram.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if datagram.len() < ihl + 8 || ihl < 20 {
        return false;
    }
    let src = Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]);
    let icmp = &datagram[ihl..];
    src == from && icmp[0] == 0 && icmp[4..6] == ident.to_be_bytes()
}

fn measure(setting: &Setting, kind: Impl, fault: Fault) -> Result<Sample> {
    let pair = start_pair(setting, kind)?;
    let vip = setting.daemon.vip_address();
    let target: Ipv4Addr = vip.parse()?;
    let client_ns = pair.client.netns().to_string();
    // Set-up takes about the same time on every run, so without this the fault would always hit
    // the same moment of the master's advert cycle, and link-down times would hardly vary.
    std::thread::sleep(random_phase(setting.advert_interval));
    let t0 = Instant::now();
    pair.inject(fault, kind)?;
    std::thread::scope(|scope| -> Result<Sample> {
        // Started once the fault is in place: during a link-down the old master cannot answer.
        let pinger = (fault == Fault::LinkDown).then(|| {
            let ns = client_ns.clone();
            scope.spawn(move || common::in_netns(&ns, || first_echo_reply(target, t0, DEADLINE)))
        });
        let vip_result = wait_until(
            DEADLINE.saturating_sub(t0.elapsed()),
            Duration::from_millis(2),
            "VIP on n2",
            || pair.n2.has_address(vip),
        )
        .map(|_| t0.elapsed());
        let ping = match pinger {
            Some(handle) => handle
                .join()
                .map_err(|_| anyhow::anyhow!("the pinger panicked"))??,
            None => None,
        };
        let vip = vip_result?;
        if fault == Fault::LinkDown && ping.is_none() {
            bail!("no echo reply from the VIP within {DEADLINE:?}");
        }
        Ok(Sample { vip, ping })
    })
}

/// A pseudo-random delay in `[0, interval)` (from the clock: good enough to spread the phase).
fn random_phase(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let scrambled = u64::from(nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    let micros = interval.as_micros().max(1) as u64;
    Duration::from_micros(scrambled % micros)
}

fn resolve_daemon(args: &Args) -> Result<String> {
    if let Some(path) = &args.daemon {
        return Ok(path.to_string_lossy().into_owned());
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/takeover_times -> target/<profile>/whpg-ha
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .context("locating the target directory")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-p", "whpg-ha", "--bin", "whpg-ha"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build for whpg-ha")?;
    if !status.success() {
        bail!("cargo build of whpg-ha failed ({status})");
    }
    let path = profile_dir.join("whpg-ha");
    if !path.exists() {
        bail!("{} does not exist; pass --daemon PATH", path.display());
    }
    Ok(path.to_string_lossy().into_owned())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

struct Row {
    scenario: String,
    implementation: &'static str,
    samples: Vec<Duration>,
    failures: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !whpg_lab::require_for("takeover_times", &["ip", "keepalived", "ping"]) {
        std::process::exit(2);
    }
    DAEMON
        .set(resolve_daemon(&args)?)
        .expect("resolved only once");
    let mut rows: Vec<Row> = Vec::new();
    for setting in settings() {
        if args.only.as_deref().is_some_and(|o| o != setting.key) {
            continue;
        }
        for fault in [Fault::LinkDown, Fault::Sigterm] {
            let base = rows.len();
            let scenarios: Vec<String> = match fault {
                Fault::LinkDown => vec![
                    format!("{}: master link down → VIP on backup", setting.label),
                    format!("{}: master link down → first ping reply", setting.label),
                ],
                Fault::Sigterm => {
                    vec![format!("{}: master SIGTERM → VIP on backup", setting.label)]
                }
            };
            for scenario in &scenarios {
                for kind in [Impl::WhpgHa, Impl::Keepalived] {
                    rows.push(Row {
                        scenario: scenario.clone(),
                        implementation: kind.name(),
                        samples: Vec::new(),
                        failures: 0,
                    });
                }
            }
            for run in 1..=args.runs {
                // Alternate the implementations run by run so machine load hits both alike.
                for (k, kind) in [Impl::WhpgHa, Impl::Keepalived].into_iter().enumerate() {
                    let vip_row = base + k;
                    let ping_row = base + 2 + k;
                    match measure(&setting, kind, fault) {
                        Ok(sample) => {
                            eprintln!(
                                "{} {:?} {} run {run}: VIP {}{}",
                                setting.key,
                                fault,
                                kind.name(),
                                ms(sample.vip),
                                sample
                                    .ping
                                    .map(|p| format!(", ping {}", ms(p)))
                                    .unwrap_or_default()
                            );
                            rows[vip_row].samples.push(sample.vip);
                            if let Some(ping) = sample.ping {
                                rows[ping_row].samples.push(ping);
                            }
                        }
                        Err(e) => {
                            eprintln!(
                                "{} {:?} {} run {run}: failed: {e:#}",
                                setting.key,
                                fault,
                                kind.name()
                            );
                            rows[vip_row].failures += 1;
                            if fault == Fault::LinkDown {
                                rows[ping_row].failures += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    println!();
    println!("| scenario | implementation | median | min | max | runs |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for row in &mut rows {
        row.samples.sort();
        let runs = if row.failures == 0 {
            row.samples.len().to_string()
        } else {
            format!("{} ({} failed)", row.samples.len(), row.failures)
        };
        if row.samples.is_empty() {
            println!(
                "| {} | {} | – | – | – | {runs} |",
                row.scenario, row.implementation
            );
            continue;
        }
        let n = row.samples.len();
        let median = if n % 2 == 1 {
            row.samples[n / 2]
        } else {
            (row.samples[n / 2 - 1] + row.samples[n / 2]) / 2
        };
        println!(
            "| {} | {} | {} | {} | {} | {runs} |",
            row.scenario,
            row.implementation,
            ms(median),
            ms(row.samples[0]),
            ms(row.samples[n - 1]),
        );
    }
    Ok(())
}
