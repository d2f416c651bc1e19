//! whpg-ha and Debian's keepalived (2.2.x) as the two members of one virtual router.
//!
//! whpg-ha runs on n1, keepalived on n2, a client on cl. For the seed's setting (VRRPv2, PASS auth,
//! 1 s adverts, unicast, VRID 51) and the fast one (VRRPv3, 100 ms adverts, multicast, VRID 52),
//! and with either implementation holding the higher priority:
//! - the higher priority becomes master and is the only one holding the VIP, which the client
//!   reaches;
//! - SIGTERM of the master (it resigns with priority 0) moves the VIP to the other node;
//! - restarting the stopped node moves the VIP back (both preempt).
//!
//! So across the four tests the VIP moves whpg-ha → keepalived and keepalived → whpg-ha both by
//! resignation and by preemption. Afterwards neither side may have complained about the other's
//! packets: keepalived's log must be free of its receive-check messages ([`KEEPALIVED_COMPLAINTS`])
//! and whpg-ha's `/status` must count no dropped packet.
//!
//! Times are printed; the deadlines asserted are generous on purpose (a busy 2-core machine must
//! not make these flake). Precise takeover times come from `examples/takeover_times.rs`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::daemon::{pair_config, start_daemon, status, vrrp_state, PairSettings};
use whpg_lab::{lab_or_skip, wait_until, Host, KeepalivedConf, Lab, Process, Signal};

const N1: &str = "10.77.0.11";
const N2: &str = "10.77.0.12";
/// Deadline for anything the VRRP timers decide (the slowest: a seed-setting master-down
/// interval of 3.6 s, plus keepalived's start-up).
const DEADLINE: Duration = Duration::from_secs(20);
/// How long the VIP must stay put to count as settled.
const SETTLE: Duration = Duration::from_millis(1500);

/// What keepalived 2.2.7 logs when it refuses or distrusts a received advert (`vrrp_check_packet`,
/// the backup/master receive paths in `vrrp.c`, and the dispatcher in `vrrp_scheduler.c`), matched
/// case-insensitively. Any of them in its log means whpg-ha sent something keepalived did not
/// like.
const KEEPALIVED_COMPLAINTS: &[&str] = &[
    // Length, IP header and address count.
    "vrrp packet too",
    "ip_tot_len mismatch",
    "unexpected ip number count",
    "vips but received",
    "ip address associated with vrid",
    "message truncated",
    // TTL (multicast must be 255; unicast peers have an optional range).
    "invalid ttl",
    "ttl/hl",
    // Version, type, VRID.
    "wrong version",
    "invalid packet type",
    "unknown vrid",
    // Authentication (v2 PASS).
    "invalid auth type",
    "auth, expecting",
    "invalid passwd",
    "ah header",
    // Interval: v2 drops a mismatch; v3 adopts the master's and logs it.
    "advertisement interval mismatch",
    "advertisement interval updated",
    "changing advert interval",
    // Checksum, including the v3 unicast pseudo-header fallback.
    "checksum",
    // Destination and sender.
    "icast packet but received",
    "not a unicast peer",
    // Priority conflicts that only a broken peer causes.
    "with our ip address",
    "configuration error",
    // Generic words, in case another keepalived version phrases things differently.
    "bogus",
    "invalid",
    "mismatch",
    "wrong",
];

/// Which of the two implementations a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    WhpgHa,
    Keepalived,
}

/// One VRRP setting, spelled for both implementations.
struct Setting {
    name: &'static str,
    daemon: PairSettings,
    /// keepalived's configuration for a node of this priority on n2.
    keepalived: fn(u8) -> KeepalivedConf,
}

/// The seed's keepalived.conf: v2, `auth_type PASS`, `advert_int 1`, unicast, VRID 51, the
/// priority-100 node in state MASTER and the other in BACKUP.
fn seed_setting() -> Setting {
    Setting {
        name: "seed (v2, 1 s, unicast, PASS)",
        daemon: PairSettings::seed(),
        keepalived: |priority| {
            let vip = PairSettings::seed().vip;
            KeepalivedConf::new(51, priority, vip)
                .state(if priority == 100 { "MASTER" } else { "BACKUP" })
                .unicast(N2, &[N1])
                .auth_pass("whpg2025")
                // Stricter and more verbose than the seed, without changing its behaviour: refuse
                // adverts from anyone but the configured peer, and log unknown VRIDs.
                .instance_line("check_unicast_src")
                .global_line("log_unknown_vrids")
        },
    }
}

/// v3, `advert_int 0.1`, multicast, VRID 52.
fn fast_setting() -> Setting {
    let mut daemon = PairSettings::fast();
    daemon.vrid = 52;
    Setting {
        name: "fast (v3, 100 ms, multicast)",
        daemon,
        keepalived: |priority| {
            KeepalivedConf::new(52, priority, PairSettings::fast().vip)
                .version(3)
                .advert_int(Duration::from_millis(100))
                .global_line("log_unknown_vrids")
        },
    }
}

/// A node of the mixed pair: its host, what it runs, and every log it produced.
struct Node {
    host: Host,
    kind: Impl,
    priority: u8,
    process: Option<Process>,
    logs: Vec<PathBuf>,
    /// Dropped-packet counters of every whpg-ha run, read just before it was stopped.
    drops: Vec<serde_json::Value>,
}

impl Node {
    fn name(&self) -> String {
        let kind = match self.kind {
            Impl::WhpgHa => "whpg-ha",
            Impl::Keepalived => "keepalived",
        };
        format!(
            "{kind} on {} (priority {})",
            self.host.name(),
            self.priority
        )
    }

    fn start(&mut self, lab: &Lab, setting: &Setting, whpg_priority: u8, ka_priority: u8) {
        assert!(self.process.is_none(), "{} already running", self.name());
        let process = match self.kind {
            Impl::WhpgHa => {
                let nodes = [("n1", N1, whpg_priority), ("n2", N2, ka_priority)];
                let config = pair_config(&setting.daemon, &nodes);
                start_daemon(lab, &self.host, "n1", &config)
            }
            Impl::Keepalived => {
                let conf = (setting.keepalived)(ka_priority).render();
                self.host
                    .spawn_keepalived(&conf)
                    .unwrap_or_else(|e| panic!("starting keepalived: {e:#}"))
            }
        };
        if !self.logs.contains(&process.log_path().to_path_buf()) {
            self.logs.push(process.log_path().to_path_buf());
        }
        self.process = Some(process);
    }

    /// Graceful stop request: SIGTERM (keepalived and whpg-ha both resign with priority 0).
    /// Reads whpg-ha's drop counters first, since they die with the process.
    fn sigterm(&mut self) {
        let process = self
            .process
            .as_ref()
            .expect("stopping a node that is not running");
        if self.kind == Impl::WhpgHa {
            self.drops.push(whpg_drops(&self.host));
        }
        match self.kind {
            Impl::WhpgHa => process.sigterm().expect("SIGTERM to whpg-ha"),
            Impl::Keepalived => process.kill(Signal::Term).expect("SIGTERM to keepalived"),
        }
    }

    /// Waits for the process stopped by [`Node::sigterm`] to exit.
    fn reap(&mut self) {
        let process = self
            .process
            .take()
            .expect("reaping a node that is not running");
        let status = process
            .wait_exit(Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("{} did not stop: {e:#}", self.name()));
        assert!(status.success(), "{} exited with {status}", self.name());
    }
}

/// whpg-ha's dropped-packet counters (`{}` when it drops nothing).
fn whpg_drops(host: &Host) -> serde_json::Value {
    let s = status(host).expect("whpg-ha answers /status");
    s["vrrp"]["counters"]["dropped"].clone()
}

/// Waits until `holder` has the VIP and `other` has not, and that stays so for [`SETTLE`].
/// Returns the time until it first held.
fn wait_vip_only_on(holder: &Node, other: &Node, vip: &str) -> Duration {
    let start = Instant::now();
    loop {
        let what = format!("VIP {vip} only on {}", holder.name());
        wait_until(
            DEADLINE.saturating_sub(start.elapsed()),
            Duration::from_millis(5),
            &what,
            || holder.host.has_address(vip) && !other.host.has_address(vip),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let took = start.elapsed();
        let held_at = Instant::now();
        let mut stable = true;
        while held_at.elapsed() < SETTLE {
            if !holder.host.has_address(vip) || other.host.has_address(vip) {
                stable = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if stable {
            return took;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the VIP did not settle on {} within {DEADLINE:?}",
            holder.name()
        );
    }
}

/// Checks that `node` reports `state`: whpg-ha through `/status` (as a backup, including the
/// master it learned from the peer's adverts), keepalived through its log.
fn check_state(node: &Node, state: &str, master: &Node) {
    match node.kind {
        Impl::WhpgHa => {
            let what = format!("{} in state {state}", node.name());
            wait_until(
                Duration::from_secs(10),
                Duration::from_millis(20),
                &what,
                || vrrp_state(&node.host).as_deref() == Some(state),
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
            if state == "BACKUP" {
                let s = status(&node.host).expect("whpg-ha status");
                assert_eq!(s["vrrp"]["last_master"]["address"], master.host.address());
                assert_eq!(s["vrrp"]["last_master"]["priority"], master.priority);
            }
        }
        Impl::Keepalived => {
            let process = node.process.as_ref().expect("keepalived running");
            let log = process.log_contents();
            let last = log
                .lines()
                .rev()
                .find(|l| l.contains("Entering ") && l.contains(" STATE"))
                .unwrap_or("");
            assert!(
                last.contains(&format!("Entering {state} STATE")),
                "keepalived's last state change is {last:?}, expected {state}"
            );
        }
    }
}

/// Lines of keepalived's logs that complain about received packets.
fn keepalived_complaints(node: &Node) -> Vec<String> {
    let mut found = Vec::new();
    for path in &node.logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let lower = line.to_lowercase();
            if KEEPALIVED_COMPLAINTS.iter().any(|p| lower.contains(p)) {
                found.push(line.to_string());
            }
        }
    }
    found
}

fn ping(client: &Host, vip: &str) {
    assert!(
        client.ping(vip, Duration::from_secs(10)),
        "the client does not reach the VIP {vip}"
    );
}

/// The whole scenario for one setting and one priority assignment.
fn interop(test: &str, setting: Setting, whpg_priority: u8, ka_priority: u8) {
    let lab = lab_or_skip!(test, &["keepalived", "ping"]);
    let n1 = lab.add_host("n1", &format!("{N1}/24")).expect("n1");
    let n2 = lab.add_host("n2", &format!("{N2}/24")).expect("n2");
    let client = lab.add_host("cl", "10.77.0.99/24").expect("client");
    let vip = setting.daemon.vip_address();
    println!(
        "{}: whpg-ha priority {whpg_priority}, keepalived priority {ka_priority}",
        setting.name
    );

    let mut whpg = Node {
        host: n1,
        kind: Impl::WhpgHa,
        priority: whpg_priority,
        process: None,
        logs: Vec::new(),
        drops: Vec::new(),
    };
    let mut ka = Node {
        host: n2,
        kind: Impl::Keepalived,
        priority: ka_priority,
        process: None,
        logs: Vec::new(),
        drops: Vec::new(),
    };
    whpg.start(&lab, &setting, whpg_priority, ka_priority);
    ka.start(&lab, &setting, whpg_priority, ka_priority);
    let (mut high, mut low) = if whpg_priority > ka_priority {
        (whpg, ka)
    } else {
        (ka, whpg)
    };

    // Election.
    let took = wait_vip_only_on(&high, &low, vip);
    println!("  election: VIP on {} {took:?} after start", high.name());
    check_state(&high, "MASTER", &high);
    check_state(&low, "BACKUP", &high);
    ping(&client, vip);

    // The master resigns: the backup takes over.
    high.sigterm();
    let took = wait_vip_only_on(&low, &high, vip);
    println!(
        "  SIGTERM of {}: VIP on {} after {took:?}",
        high.name(),
        low.name()
    );
    high.reap();
    check_state(&low, "MASTER", &low);
    ping(&client, vip);

    // The higher priority comes back and preempts.
    high.start(&lab, &setting, whpg_priority, ka_priority);
    let took = wait_vip_only_on(&high, &low, vip);
    println!("  restart of {}: VIP back after {took:?}", high.name());
    check_state(&high, "MASTER", &high);
    check_state(&low, "BACKUP", &high);
    ping(&client, vip);

    // Neither side complained about the other's packets.
    let (whpg, ka) = if high.kind == Impl::WhpgHa {
        (&mut high, &mut low)
    } else {
        (&mut low, &mut high)
    };
    whpg.drops.push(whpg_drops(&whpg.host));
    // The counters mean something only if keepalived's adverts did reach whpg-ha.
    let received = status(&whpg.host).expect("whpg-ha status")["vrrp"]["counters"]
        ["adverts_received"]
        .as_u64()
        .unwrap_or(0);
    assert!(received > 0, "whpg-ha received no advert from keepalived");
    for (run, drops) in whpg.drops.iter().enumerate() {
        let empty = drops.as_object().is_some_and(|m| m.is_empty());
        assert!(
            empty,
            "whpg-ha (run {}) dropped packets from keepalived: {drops}",
            run + 1
        );
    }
    let complaints = keepalived_complaints(ka);
    assert!(
        complaints.is_empty(),
        "keepalived complained about whpg-ha's packets:\n{}",
        complaints.join("\n")
    );
    assert!(
        !ka.logs.is_empty() && ka.logs.iter().all(|p| p.exists()),
        "keepalived's logs are missing"
    );
}

#[test]
fn seed_setting_whpg_ha_master_keepalived_backup() {
    interop("interop_seed_whpg_master", seed_setting(), 100, 98);
}

#[test]
fn seed_setting_keepalived_master_whpg_ha_backup() {
    interop("interop_seed_keepalived_master", seed_setting(), 98, 100);
}

#[test]
fn fast_setting_whpg_ha_master_keepalived_backup() {
    interop("interop_fast_whpg_master", fast_setting(), 100, 98);
}

#[test]
fn fast_setting_keepalived_master_whpg_ha_backup() {
    interop("interop_fast_keepalived_master", fast_setting(), 98, 100);
}
