//! Forged and malformed packets never change an instance's state; each is counted by reason.

mod sim;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sim::{addr, v2_seed_config, v3_config, VIP};
use whpg_vrrp::packet::{encode, MULTICAST_V4};
use whpg_vrrp::{Action, Advert, Auth, Event, Instance, Interval, State, V3Checksum, Version};

fn seed_advert(priority: u8) -> Advert {
    Advert {
        version: Version::V2,
        vrid: 51,
        priority,
        interval: Interval::from_secs(1),
        auth: Auth::password("whpg2025").unwrap(),
        addresses: vec![VIP],
    }
}

/// An IPv4 datagram around `payload`, as a raw socket would return it.
fn datagram(src: IpAddr, dst: IpAddr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        unreachable!()
    };
    let total = (20 + payload.len()) as u16;
    let mut out = vec![0x45, 0xc0];
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, ttl, 112, 0, 0]);
    out.extend_from_slice(&s.octets());
    out.extend_from_slice(&d.octets());
    out.extend_from_slice(payload);
    out
}

fn started_backup(config: whpg_vrrp::InstanceConfig) -> (Instance, Instant) {
    let now = Instant::now();
    let mut instance = Instance::new(config);
    instance.handle(Event::Startup, now);
    assert_eq!(instance.state(), State::Backup);
    (instance, now)
}

#[test]
fn forged_adverts_change_nothing_and_are_counted_by_reason() {
    // Node 12 is a backup of the seed's unicast pair; its peer is node 11.
    let (mut backup, now) = started_backup(v2_seed_config(12, 98, &[11]));
    let me = addr(12);
    let peer = addr(11);
    let good = encode(&seed_advert(150), peer, me, V3Checksum::default()).unwrap();
    let wrong_password = {
        let mut a = seed_advert(150);
        a.auth = Auth::password("guess").unwrap();
        encode(&a, peer, me, V3Checksum::default()).unwrap()
    };
    let no_auth = {
        let mut a = seed_advert(150);
        a.auth = Auth::None;
        encode(&a, peer, me, V3Checksum::default()).unwrap()
    };
    let other_vrid = {
        let mut a = seed_advert(150);
        a.vrid = 52;
        encode(&a, peer, me, V3Checksum::default()).unwrap()
    };
    let other_interval = {
        let mut a = seed_advert(150);
        a.interval = Interval::from_secs(2);
        encode(&a, peer, me, V3Checksum::default()).unwrap()
    };
    let v3 = {
        let a = Advert {
            version: Version::V3,
            auth: Auth::None,
            ..seed_advert(150)
        };
        encode(&a, peer, me, V3Checksum::default()).unwrap()
    };
    let mut bad_checksum = good.clone();
    bad_checksum[7] ^= 0xff;
    let stranger = addr(99);
    let from_stranger = encode(&seed_advert(150), stranger, me, V3Checksum::default()).unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("password", datagram(peer, me, 255, &wrong_password)),
        ("auth_type", datagram(peer, me, 255, &no_auth)),
        ("vrid", datagram(peer, me, 255, &other_vrid)),
        ("interval", datagram(peer, me, 255, &other_interval)),
        ("version", datagram(peer, me, 255, &v3)),
        ("checksum", datagram(peer, me, 255, &bad_checksum)),
        ("length", datagram(peer, me, 255, &good[..good.len() - 1])),
        ("truncated", datagram(peer, me, 255, &good[..3])),
        ("unknown_peer", datagram(stranger, me, 255, &from_stranger)),
        ("destination", datagram(peer, addr(13), 255, &good)),
        ("bad_ip_header", good[..10].to_vec()),
    ];
    let deadline = backup.poll_timeout();
    for (label, bytes) in &cases {
        let actions = backup.handle(Event::Ipv4Datagram(bytes), now + Duration::from_millis(10));
        assert!(
            matches!(actions.as_slice(), [Action::Dropped { reason, .. }] if reason.label() == *label),
            "{label}: {actions:?}"
        );
        assert_eq!(backup.state(), State::Backup, "{label}");
        assert_eq!(
            backup.poll_timeout(),
            deadline,
            "{label} must not touch the timer"
        );
        assert_eq!(backup.stats().drops.get(label), Some(&1), "{label}");
    }
    assert_eq!(backup.stats().adverts_received, 0);

    // The genuine advert is accepted and restarts the master-down timer.
    let later = now + Duration::from_millis(20);
    backup.handle(Event::Ipv4Datagram(&datagram(peer, me, 255, &good)), later);
    assert_eq!(backup.stats().adverts_received, 1);
    assert_eq!(
        backup.poll_timeout(),
        Some(later + backup.master_down_interval())
    );
}

#[test]
fn multicast_requires_ttl_255_and_the_vrrp_group() {
    let (mut backup, now) = started_backup(v3_config(12, 98, 10));
    let peer = addr(11);
    let group = IpAddr::V4(MULTICAST_V4);
    let advert = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 100,
        interval: Interval::from_centis(10),
        auth: Auth::None,
        addresses: vec![VIP],
    };
    let to_group = encode(&advert, peer, group, V3Checksum::PseudoHeader).unwrap();
    let deadline = backup.poll_timeout();

    let ttl64 = backup.handle(
        Event::Ipv4Datagram(&datagram(peer, group, 64, &to_group)),
        now,
    );
    assert!(
        matches!(ttl64.as_slice(), [Action::Dropped { reason, .. }] if reason.label() == "ttl")
    );
    let own = encode(&advert, addr(12), group, V3Checksum::PseudoHeader).unwrap();
    let looped = backup.handle(
        Event::Ipv4Datagram(&datagram(addr(12), group, 255, &own)),
        now,
    );
    assert!(
        matches!(looped.as_slice(), [Action::Dropped { reason, .. }] if reason.label() == "own_advert")
    );
    let other_protocol = {
        let mut d = datagram(peer, group, 255, &to_group);
        d[9] = 17;
        d
    };
    let udp = backup.handle(Event::Ipv4Datagram(&other_protocol), now);
    assert!(
        matches!(udp.as_slice(), [Action::Dropped { reason, .. }] if reason.label() == "not_vrrp")
    );
    // A v3 advert checksummed without the pseudo-header is refused unless configured otherwise.
    let rfc9568 = encode(&advert, peer, group, V3Checksum::VrrpOnly).unwrap();
    let strict = backup.handle(
        Event::Ipv4Datagram(&datagram(peer, group, 255, &rfc9568)),
        now,
    );
    assert!(
        matches!(strict.as_slice(), [Action::Dropped { reason, .. }] if reason.label() == "checksum")
    );
    assert_eq!(backup.poll_timeout(), deadline);

    let mut lenient_config = v3_config(12, 98, 10);
    lenient_config.accept_either_checksum = true;
    let (mut lenient, now) = started_backup(lenient_config);
    lenient.handle(
        Event::Ipv4Datagram(&datagram(peer, group, 255, &rfc9568)),
        now,
    );
    assert_eq!(lenient.stats().adverts_received, 1);
}

#[test]
fn a_differing_address_list_is_counted_but_accepted_like_keepalived() {
    let (mut backup, now) = started_backup(v3_config(12, 98, 10));
    let group = IpAddr::V4(MULTICAST_V4);
    let advert = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 100,
        interval: Interval::from_centis(10),
        auth: Auth::None,
        addresses: vec![addr(200)],
    };
    let bytes = encode(&advert, addr(11), group, V3Checksum::PseudoHeader).unwrap();
    backup.handle(
        Event::Ipv4Datagram(&datagram(addr(11), group, 255, &bytes)),
        now,
    );
    assert_eq!(backup.stats().adverts_received, 1);
    assert_eq!(backup.stats().address_list_mismatches, 1);
}

/// What a whpg-ha peer configured at priority 100 can send: resign, gave up, standby, primary
/// (100 + the primary bonus of 100), newest primary.
const PEER_100: [u8; 5] = [0, 1, 100, 200, 254];

fn with_accepted(
    mut config: whpg_vrrp::InstanceConfig,
    accepted: &[u8],
) -> whpg_vrrp::InstanceConfig {
    config.accepted_priorities = Some(accepted.to_vec());
    config
}

/// A master of the seed's pair: node 11 at `priority`, peer node 12, after its master-down time.
fn started_master(config: whpg_vrrp::InstanceConfig) -> (Instance, Instant) {
    let (mut master, _) = started_backup(config);
    let at = master.poll_timeout().expect("backup timer");
    master.handle(Event::Timeout, at);
    assert_eq!(master.state(), State::Master);
    (master, at)
}

#[test]
fn a_forged_priority_from_the_peers_address_is_dropped_counted_and_changes_nothing() {
    let me = addr(12);
    let peer = addr(11);
    let (mut backup, now) = started_backup(with_accepted(v2_seed_config(12, 98, &[11]), &PEER_100));
    let genuine = encode(&seed_advert(200), peer, me, V3Checksum::default()).unwrap();
    backup.handle(Event::Ipv4Datagram(&datagram(peer, me, 255, &genuine)), now);
    assert_eq!(backup.stats().adverts_received, 1);
    let master_before = backup.last_master();
    let deadline = backup.poll_timeout();

    // The right password, the peer's address, the right interval: only the priority is wrong.
    let forged = encode(&seed_advert(253), peer, me, V3Checksum::default()).unwrap();
    let later = now + Duration::from_millis(10);
    let actions = backup.handle(
        Event::Ipv4Datagram(&datagram(peer, me, 255, &forged)),
        later,
    );
    let [Action::Dropped { src, reason }] = actions.as_slice() else {
        panic!("expected one drop: {actions:?}");
    };
    assert_eq!(*src, Some(peer));
    assert_eq!(reason.label(), "priority");
    assert_eq!(
        reason.to_string(),
        "priority 253 is not one the peer can send (accepted: 0, 1, 100, 200, 254)"
    );
    assert_eq!(backup.state(), State::Backup);
    assert_eq!(backup.poll_timeout(), deadline, "the timer must not move");
    assert_eq!(backup.last_master(), master_before);
    assert_eq!(backup.stats().adverts_received, 1);
    assert_eq!(backup.stats().drops.get("priority"), Some(&1));
    // 0 is always in the set: a forged priority 0 gets through this filter, and the policy asks
    // for corroboration before it believes it.
}

#[test]
fn a_forged_higher_priority_preempts_a_master_without_the_set_and_not_with_it() {
    let peer = addr(12);
    let me = addr(11);
    let forged = encode(&seed_advert(253), peer, me, V3Checksum::default()).unwrap();
    let bytes = datagram(peer, me, 255, &forged);

    // Control: as keepalived does, any priority is believed, and the master steps down.
    let (mut open, at) = started_master(v2_seed_config(11, 200, &[12]));
    open.handle(Event::Ipv4Datagram(&bytes), at + Duration::from_millis(5));
    assert_eq!(open.state(), State::Backup);

    let (mut guarded, at) = started_master(with_accepted(
        v2_seed_config(11, 200, &[12]),
        &[0, 1, 98, 198, 254],
    ));
    let next_advert = guarded.poll_timeout();
    let transitions = guarded.stats().transitions;
    let actions = guarded.handle(Event::Ipv4Datagram(&bytes), at + Duration::from_millis(5));
    assert!(
        matches!(actions.as_slice(), [Action::Dropped { reason, .. }] if reason.label() == "priority"),
        "{actions:?}"
    );
    assert_eq!(guarded.state(), State::Master);
    assert_eq!(guarded.poll_timeout(), next_advert);
    assert_eq!(guarded.stats().transitions, transitions);
    assert_eq!(guarded.stats().drops.get("priority"), Some(&1));
}

#[test]
fn a_forgery_without_the_password_counts_as_password_not_priority() {
    let me = addr(12);
    let peer = addr(11);
    let (mut backup, now) = started_backup(with_accepted(v2_seed_config(12, 98, &[11]), &PEER_100));
    let mut advert = seed_advert(253);
    advert.auth = Auth::password("guess").unwrap();
    let bytes = encode(&advert, peer, me, V3Checksum::default()).unwrap();
    backup.handle(Event::Ipv4Datagram(&datagram(peer, me, 255, &bytes)), now);
    assert_eq!(backup.stats().drops.get("password"), Some(&1));
    assert_eq!(backup.stats().drops.get("priority"), None);
}

#[test]
fn priority_zero_and_every_legitimate_priority_are_accepted() {
    let me = addr(12);
    let peer = addr(11);
    for priority in PEER_100 {
        let (mut backup, now) =
            started_backup(with_accepted(v2_seed_config(12, 98, &[11]), &PEER_100));
        let bytes = encode(&seed_advert(priority), peer, me, V3Checksum::default()).unwrap();
        let actions = backup.handle(Event::Ipv4Datagram(&datagram(peer, me, 255, &bytes)), now);
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Dropped { .. })),
            "{priority}: {actions:?}"
        );
        assert_eq!(backup.stats().adverts_received, 1, "{priority}");
        assert!(backup.stats().drops.is_empty(), "{priority}");
        assert_eq!(
            backup.last_master().map(|m| m.priority),
            Some(priority),
            "{priority}"
        );
    }
    // Priority 0 still makes the backup take over after Skew_Time, not Master_Down_Interval.
    let (mut backup, now) = started_backup(with_accepted(v2_seed_config(12, 98, &[11]), &PEER_100));
    let resign = encode(&seed_advert(0), peer, me, V3Checksum::default()).unwrap();
    backup.handle(Event::Ipv4Datagram(&datagram(peer, me, 255, &resign)), now);
    assert_eq!(backup.stats().priority_zero_received, 1);
    assert_eq!(
        backup.poll_timeout(),
        Some(now + whpg_vrrp::timers::skew_time(Version::V2, Interval::from_secs(1), 98))
    );
}

#[test]
fn the_accepted_set_is_replaced_at_run_time() {
    let me = addr(12);
    let peer = addr(11);
    let (mut backup, now) = started_backup(with_accepted(v2_seed_config(12, 98, &[11]), &PEER_100));
    let advert_150 = datagram(
        peer,
        me,
        255,
        &encode(&seed_advert(150), peer, me, V3Checksum::default()).unwrap(),
    );
    let advert_100 = datagram(
        peer,
        me,
        255,
        &encode(&seed_advert(100), peer, me, V3Checksum::default()).unwrap(),
    );
    backup.handle(Event::Ipv4Datagram(&advert_150), now);
    assert_eq!(backup.stats().drops.get("priority"), Some(&1));

    // The peer's file now says 150: given unsorted and with a duplicate, kept as a set.
    backup.handle(
        Event::SetAcceptedPriorities(Some(vec![254, 150, 0, 250, 1, 150])),
        now,
    );
    assert_eq!(
        backup.config().accepted_priorities.as_deref(),
        Some(&[0, 1, 150, 250, 254][..])
    );
    backup.handle(Event::Ipv4Datagram(&advert_150), now);
    assert_eq!(backup.stats().adverts_received, 1);
    backup.handle(Event::Ipv4Datagram(&advert_100), now);
    assert_eq!(
        backup.stats().drops.get("priority"),
        Some(&2),
        "100 is old now"
    );
    assert_eq!(backup.stats().adverts_received, 1);

    // `None` accepts any priority again.
    backup.handle(Event::SetAcceptedPriorities(None), now);
    backup.handle(Event::Ipv4Datagram(&advert_100), now);
    assert_eq!(backup.stats().adverts_received, 2);
    assert_eq!(backup.stats().drops.get("priority"), Some(&2));
    assert_eq!(backup.state(), State::Backup);
}
