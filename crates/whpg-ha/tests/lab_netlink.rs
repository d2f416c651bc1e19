//! Lab tests of the netlink shells (`net::vip`, `net::link`) against a real kernel, inside lab host
//! namespaces: VIP add/remove with labels and idempotence, interface lookup, link and address
//! events. They need root and `ip`; without them each test prints SKIPPED (and fails under CI=true).

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::block_on_in_netns;
use whpg_ha::net::link::{self, InterfaceFault, InterfaceHealth, LinkEvent, LinkWatcher};
use whpg_ha::net::vip::{Change, NetError, Vip, VipManager};
use whpg_lab::{lab_or_skip, Host};

/// Upper bound of each test body run inside a namespace.
const LIMIT: Duration = Duration::from_secs(20);
/// How long an expected link event may take (carrier changes go through the kernel's link-watch
/// work, which may lag by about a second).
const EVENT_DEADLINE: Duration = Duration::from_secs(5);

fn vip(address: &str, prefix_len: u8, label: Option<&str>) -> Vip {
    Vip {
        address: address.parse().expect("test address"),
        prefix_len,
        device: "eth0".to_string(),
        label: label.map(str::to_string),
    }
}

/// `ip -o addr show dev eth0` lines inside the host.
fn addr_lines(host: &Host, family: &str) -> Vec<String> {
    let out = host
        .exec_ok(&["ip", "-o", family, "addr", "show", "dev", "eth0"])
        .expect("ip addr show");
    out.stdout.lines().map(str::to_string).collect()
}

/// Waits for the next event that `want` accepts and returns the events skipped before it; panics
/// after the deadline.
async fn expect_event(
    watcher: &mut LinkWatcher,
    what: &str,
    want: impl Fn(&LinkEvent) -> bool,
) -> Vec<LinkEvent> {
    let result = tokio::time::timeout(EVENT_DEADLINE, async {
        let mut seen = Vec::new();
        loop {
            match watcher.recv().await {
                Some(event) if want(&event) => return seen,
                Some(event) => seen.push(event),
                None => panic!("watcher stopped while waiting for {what} (seen: {seen:?})"),
            }
        }
    })
    .await;
    match result {
        Ok(seen) => seen,
        Err(_) => panic!("no {what} event within {EVENT_DEADLINE:?}"),
    }
}

#[test]
fn vip_with_label_is_added_once_and_removed_once() {
    let lab = lab_or_skip!("vip_with_label_is_added_once_and_removed_once");
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("host n1");
    let labelled = vip("10.77.0.100", 24, Some("eth0:vip"));
    let host_route = vip("10.77.0.101", 32, None);
    block_on_in_netns(n1.netns(), LIMIT, || async {
        let vips = VipManager::new().await.expect("netlink connection");
        assert!(!vips.is_present(&labelled).await.expect("query"));

        assert_eq!(vips.add(&labelled).await.expect("add"), Change::Done);
        let lines = addr_lines(&n1, "-4");
        let line = lines
            .iter()
            .find(|l| l.contains("inet 10.77.0.100/24"))
            .unwrap_or_else(|| panic!("VIP missing from {lines:#?}"));
        assert!(line.contains("eth0:vip"), "label missing: {line}");
        assert!(
            !line.contains(" brd "),
            "VIP got a broadcast address: {line}"
        );
        assert!(vips.is_present(&labelled).await.expect("query"));
        assert_eq!(
            vips.add(&labelled).await.expect("second add"),
            Change::Unchanged
        );

        // The same address under another prefix length is a different VIP (IPv4 allows both).
        let other_prefix = vip("10.77.0.100", 32, None);
        assert!(!vips.is_present(&other_prefix).await.expect("query"));

        assert_eq!(vips.add(&host_route).await.expect("add /32"), Change::Done);
        assert!(n1.has_address("10.77.0.101/32"));

        assert_eq!(vips.remove(&labelled).await.expect("remove"), Change::Done);
        assert!(
            !n1.has_address("10.77.0.100"),
            "{:#?}",
            addr_lines(&n1, "-4")
        );
        assert_eq!(
            vips.remove(&labelled).await.expect("second remove"),
            Change::Unchanged
        );
        assert!(!vips.is_present(&labelled).await.expect("query"));

        // Removal ignores the label: a VIP added under another label still goes.
        assert_eq!(
            vips.remove(&vip("10.77.0.101", 32, Some("eth0:x")))
                .await
                .expect("remove"),
            Change::Done
        );
        assert!(!n1.has_address("10.77.0.101"));
        // The node's own address was never touched.
        assert!(n1.has_address("10.77.0.11/24"));
    });
}

#[test]
fn ipv6_vip_skips_dad_and_a_prefix_conflict_is_named() {
    let lab = lab_or_skip!("ipv6_vip_skips_dad_and_a_prefix_conflict_is_named");
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("host n1");
    n1.exec_ok(&[
        "ip",
        "addr",
        "add",
        "fd00:77::200/64",
        "dev",
        "eth0",
        "nodad",
    ])
    .expect("adding a plain IPv6 address");
    block_on_in_netns(n1.netns(), LIMIT, || async {
        let vips = VipManager::new().await.expect("netlink connection");
        let v6 = vip("fd00:77::100", 64, None);
        assert_eq!(vips.add(&v6).await.expect("add"), Change::Done);
        let lines = addr_lines(&n1, "-6");
        let line = lines
            .iter()
            .find(|l| l.contains("fd00:77::100/64"))
            .unwrap_or_else(|| panic!("IPv6 VIP missing from {lines:#?}"));
        assert!(!line.contains("tentative"), "VIP waits for DAD: {line}");
        assert_eq!(vips.add(&v6).await.expect("second add"), Change::Unchanged);

        // IPv6 refuses the same address under another prefix; that must not pass as "already there".
        let conflict = vip("fd00:77::200", 128, None);
        let err = vips.add(&conflict).await.expect_err("prefix conflict");
        assert!(
            matches!(
                err,
                NetError::AddressConflict {
                    existing_prefix_len: 64,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "adding fd00:77::200/128 to eth0: the address is already there as fd00:77::200/64"
        );

        assert_eq!(vips.remove(&v6).await.expect("remove"), Change::Done);
        assert_eq!(
            vips.remove(&v6).await.expect("second remove"),
            Change::Unchanged
        );
        assert!(!n1.has_address("fd00:77::100"));
    });
}

#[test]
fn missing_interface_is_an_error_naming_it() {
    let lab = lab_or_skip!("missing_interface_is_an_error_naming_it");
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("host n1");
    block_on_in_netns(n1.netns(), LIMIT, || async {
        let vips = VipManager::new().await.expect("netlink connection");
        let mut on_eth9 = vip("10.77.0.100", 24, None);
        on_eth9.device = "eth9".to_string();
        for err in [
            vips.add(&on_eth9).await.expect_err("add on eth9"),
            vips.remove(&on_eth9).await.expect_err("remove on eth9"),
            vips.lookup("eth9").await.expect_err("lookup eth9"),
            link::watch("eth9").await.expect_err("watch eth9"),
        ] {
            assert!(matches!(err, NetError::InterfaceNotFound { .. }), "{err:?}");
            assert_eq!(err.to_string(), "interface eth9 not found");
        }
        let err = vips
            .lookup("a-name-too-long-for-linux")
            .await
            .expect_err("invalid name");
        assert!(
            matches!(err, NetError::InvalidInterfaceName { .. }),
            "{err:?}"
        );
    });
}

#[test]
fn lookup_reports_index_mac_state_and_addresses() {
    let lab = lab_or_skip!("lookup_reports_index_mac_state_and_addresses");
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("host n1");
    // `2: eth0@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> ... link/ether 4a:..:ff brd ff:ff:ff:ff:ff:ff`
    let shown = n1
        .exec_ok(&["ip", "-o", "link", "show", "dev", "eth0"])
        .expect("ip link show")
        .stdout;
    let index: u32 = shown
        .split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .unwrap_or_else(|| panic!("no index in {shown}"));
    let mac_text = shown
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {shown}"))
        .to_string();
    block_on_in_netns(n1.netns(), LIMIT, || async {
        let vips = VipManager::new().await.expect("netlink connection");
        let eth0 = vips.lookup("eth0").await.expect("lookup eth0");
        assert_eq!(eth0.name, "eth0");
        assert_eq!(eth0.index, index);
        let mac = eth0.mac.expect("eth0 has a MAC");
        let mac_hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(mac_hex.join(":"), mac_text);
        assert!(eth0.up, "eth0 should be up with carrier");
        assert_eq!(eth0.ipv4, vec![(Ipv4Addr::new(10, 77, 0, 11), 24)]);
        assert!(eth0.has_ipv4(Ipv4Addr::new(10, 77, 0, 11)));

        // Loopback reports no carrier state (operstate UNKNOWN) and still counts as up.
        let lo = vips.lookup("lo").await.expect("lookup lo");
        assert!(lo.up);
        assert!(lo.has_ipv4(Ipv4Addr::LOCALHOST));
        assert_eq!(lo.mac, Some([0; 6]));
    });
}

#[test]
fn watcher_reports_link_down_and_up() {
    let lab = lab_or_skip!("watcher_reports_link_down_and_up");
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("host n1");
    block_on_in_netns(n1.netns(), LIMIT, || async {
        let mut watcher = link::watch("eth0").await.expect("watch eth0");
        assert!(watcher.initial().up);
        let mut health =
            InterfaceHealth::new(watcher.initial(), Some(Ipv4Addr::new(10, 77, 0, 11)));
        assert_eq!(health.fault(), None);

        lab.link_down(&n1).expect("link down");
        expect_event(&mut watcher, "link down", |e| {
            *e == LinkEvent::Link { up: false }
        })
        .await;
        assert_eq!(
            health.apply(&LinkEvent::Link { up: false }),
            Some(Some(InterfaceFault::LinkDown))
        );

        lab.link_up(&n1).expect("link up");
        expect_event(&mut watcher, "link up", |e| {
            *e == LinkEvent::Link { up: true }
        })
        .await;
        assert_eq!(health.apply(&LinkEvent::Link { up: true }), Some(None));

        // The peer end going down (the switch port) is a link fault too: carrier loss, while eth0
        // itself stays administratively up.
        let ports = whpg_lab::run(
            &[
                "ip",
                "-n",
                lab.switch_netns(),
                "-o",
                "link",
                "show",
                "master",
                "br0",
            ],
            Duration::from_secs(5),
        )
        .and_then(|o| o.ok())
        .expect("listing switch ports")
        .stdout;
        // `7: v0n1@if2: <...>`; the lab has one host, so one port.
        let port = ports
            .split(':')
            .nth(1)
            .and_then(|p| p.trim().split('@').next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no switch port in {ports:?}"));
        whpg_lab::run(
            &["ip", "-n", lab.switch_netns(), "link", "set", &port, "down"],
            Duration::from_secs(5),
        )
        .and_then(|o| o.ok())
        .expect("switch port down");
        expect_event(&mut watcher, "carrier loss", |e| {
            *e == LinkEvent::Link { up: false }
        })
        .await;
    });
}

#[test]
fn watcher_reports_address_changes() {
    let lab = lab_or_skip!("watcher_reports_address_changes");
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("host n1");
    let node = Ipv4Addr::new(10, 77, 0, 11);
    let promote_secondaries = n1
        .exec_ok(&["cat", "/proc/sys/net/ipv4/conf/eth0/promote_secondaries"])
        .expect("reading promote_secondaries")
        .stdout
        .trim()
        == "1";
    block_on_in_netns(n1.netns(), LIMIT, || async {
        let vips = VipManager::new().await.expect("netlink connection");
        let mut watcher = link::watch("eth0").await.expect("watch eth0");
        let mut health = InterfaceHealth::new(watcher.initial(), Some(node));

        // A VIP coming and going is reported but is no fault.
        let v = vip("10.77.0.100", 24, Some("eth0:vip"));
        vips.add(&v).await.expect("add VIP");
        let vip_added = LinkEvent::AddressAdded {
            address: Ipv4Addr::new(10, 77, 0, 100),
            prefix_len: 24,
        };
        expect_event(&mut watcher, "VIP added", |e| *e == vip_added).await;
        assert_eq!(health.apply(&vip_added), None);

        n1.exec_ok(&["ip", "addr", "del", "10.77.0.11/24", "dev", "eth0"])
            .expect("removing the node address");
        let removed = LinkEvent::AddressRemoved {
            address: node,
            prefix_len: 24,
        };
        let before = expect_event(&mut watcher, "node address removed", |e| *e == removed).await;
        assert_eq!(
            health.apply(&removed),
            Some(Some(InterfaceFault::AddressMissing(node)))
        );
        // The VIP is in the node address's subnet, so the kernel made it a secondary of it.
        // Deleting a primary deletes its secondaries too unless promote_secondaries is set.
        let vip_change_after_node_removal = if promote_secondaries {
            assert!(
                vips.is_present(&v).await.expect("query"),
                "promoted VIP vanished"
            );
            Change::Done
        } else {
            let vip_removed = LinkEvent::AddressRemoved {
                address: Ipv4Addr::new(10, 77, 0, 100),
                prefix_len: 24,
            };
            // The kernel reports the secondaries' removal before the primary's.
            assert_eq!(before, vec![vip_removed]);
            assert!(!vips.is_present(&v).await.expect("query"));
            Change::Unchanged
        };

        n1.exec_ok(&["ip", "addr", "add", "10.77.0.11/24", "dev", "eth0"])
            .expect("restoring the node address");
        let added = LinkEvent::AddressAdded {
            address: node,
            prefix_len: 24,
        };
        expect_event(&mut watcher, "node address added", |e| *e == added).await;
        assert_eq!(health.apply(&added), Some(None));

        // Dropping the watcher ends its task; changes after that go nowhere and block nothing.
        drop(watcher);
        assert_eq!(
            vips.remove(&v).await.expect("remove VIP"),
            vip_change_after_node_removal
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
}
