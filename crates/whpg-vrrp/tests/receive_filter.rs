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
