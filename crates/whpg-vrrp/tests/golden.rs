//! Golden packets: adverts captured from real keepalived 2.2.7 (`scripts/capture-golden.sh`) must
//! decode to the configured fields, and re-encoding them must reproduce keepalived's bytes exactly
//! (checksum and password padding included). This is the wire-compatibility contract with the peer
//! we replace; the fixtures are committed so these tests need neither root nor keepalived.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use whpg_vrrp::checksum;
use whpg_vrrp::ip::parse_ipv4;
use whpg_vrrp::packet::{
    decode, encode, Advert, Auth, DecodeError, DecodeOptions, V3Checksum, Version, IP_PROTOCOL,
    MULTICAST_V4, REQUIRED_TTL,
};
use whpg_vrrp::Interval;

/// What keepalived puts in the IPv4 TOS byte of every advert (precedence 6, "internetwork control").
const KEEPALIVED_TOS: u8 = 0xc0;

/// Every scenario the capture script produces; a missing fixture is a failure, not a silent skip.
const SCENARIOS: [&str; 10] = [
    "v2-pass-unicast",
    "v2-pass-unicast-priority0",
    "v2-pass-short-unicast",
    "v2-pass-short-unicast-priority0",
    "v2-multicast-noauth",
    "v2-multicast-noauth-priority0",
    "v3-multicast-100ms",
    "v3-multicast-100ms-priority0",
    "v3-unicast-100ms",
    "v3-unicast-100ms-priority0",
];

/// One captured datagram and the fields its `expect` line says it carries.
#[derive(Debug)]
struct Golden {
    /// `file:line` of the hex, for failure messages.
    origin: String,
    datagram: Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    advert: Advert,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn hex(text: &str, origin: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "{origin}: odd number of hex digits");
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .unwrap_or_else(|e| panic!("{origin}: bad hex {:?}: {e}", &text[i..i + 2]))
        })
        .collect()
}

fn parse_expect(line: &str, origin: &str) -> (Ipv4Addr, Ipv4Addr, Advert) {
    let fields: BTreeMap<&str, &str> = line
        .split_whitespace()
        .skip(1)
        .map(|kv| {
            kv.split_once('=')
                .unwrap_or_else(|| panic!("{origin}: {kv:?} is not key=value"))
        })
        .collect();
    let get = |key: &str| -> &str {
        fields
            .get(key)
            .unwrap_or_else(|| panic!("{origin}: expect line lacks {key}"))
    };
    let num = |key: &str| -> u16 {
        get(key)
            .parse()
            .unwrap_or_else(|e| panic!("{origin}: {key}: {e}"))
    };
    let addr = |text: &str| -> Ipv4Addr {
        text.parse()
            .unwrap_or_else(|e| panic!("{origin}: address {text:?}: {e}"))
    };
    let version = match get("version") {
        "2" => Version::V2,
        "3" => Version::V3,
        other => panic!("{origin}: version {other}"),
    };
    let auth = match get("auth") {
        "none" => Auth::None,
        other => {
            let pass = other
                .strip_prefix("pass:")
                .unwrap_or_else(|| panic!("{origin}: auth {other:?}"));
            Auth::password(pass).unwrap_or_else(|e| panic!("{origin}: {e}"))
        }
    };
    let advert = Advert {
        version,
        vrid: u8::try_from(num("vrid")).expect("vrid fits a byte"),
        priority: u8::try_from(num("priority")).expect("priority fits a byte"),
        interval: Interval::from_centis(num("interval_cs")),
        auth,
        addresses: get("addresses")
            .split(',')
            .map(|a| IpAddr::V4(addr(a)))
            .collect(),
    };
    (addr(get("src")), addr(get("dst")), advert)
}

/// All packets of one fixture file, in file order.
fn load(scenario: &str) -> Vec<Golden> {
    let path = golden_dir().join(format!("{scenario}.txt"));
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    let mut packets = Vec::new();
    let mut pending: Option<(String, Vec<u8>)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let origin = format!("{scenario}.txt:{}", index + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("expect ") {
            let (origin, datagram) = pending
                .take()
                .unwrap_or_else(|| panic!("{origin}: expect line without a packet before it"));
            let (src, dst, advert) = parse_expect(line, &origin);
            packets.push(Golden {
                origin,
                datagram,
                src,
                dst,
                advert,
            });
        } else {
            assert!(
                pending.is_none(),
                "{origin}: packet line while the previous packet has no expect line"
            );
            pending = Some((origin.clone(), hex(line, &origin)));
        }
    }
    assert!(
        pending.is_none(),
        "{scenario}: last packet has no expect line"
    );
    assert!(!packets.is_empty(), "{scenario}: fixture holds no packet");
    packets
}

fn all() -> Vec<Golden> {
    SCENARIOS.iter().flat_map(|s| load(s)).collect()
}

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

#[test]
fn every_scenario_has_a_fixture_and_nothing_else_is_in_the_folder() {
    let mut on_disk: Vec<String> = fs::read_dir(golden_dir())
        .expect("fixture folder")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let mut wanted: Vec<String> = SCENARIOS.iter().map(|s| format!("{s}.txt")).collect();
    wanted.sort();
    assert_eq!(on_disk, wanted, "fixtures on disk vs scenarios tested");
    for scenario in SCENARIOS {
        let packets = load(scenario);
        assert!(
            (2..=20).contains(&packets.len()),
            "{scenario}: {} packets; keep a handful",
            packets.len()
        );
    }
}

#[test]
fn keepalived_sends_ttl_255_protocol_112_and_tos_c0() {
    for g in all() {
        let ip = parse_ipv4(&g.datagram).unwrap_or_else(|e| panic!("{}: {e}", g.origin));
        assert_eq!(ip.ttl, REQUIRED_TTL, "{}", g.origin);
        assert_eq!(ip.protocol, IP_PROTOCOL, "{}", g.origin);
        assert_eq!(ip.tos, KEEPALIVED_TOS, "{}", g.origin);
        assert_eq!((ip.src, ip.dst), (g.src, g.dst), "{}", g.origin);
        assert_eq!(
            ip.payload.len() + 20,
            g.datagram.len(),
            "{}: no IP options",
            g.origin
        );
        assert_eq!(
            checksum::internet(&g.datagram[..20]),
            0,
            "{}: IP header checksum",
            g.origin
        );
    }
}

#[test]
fn keepalived_adverts_decode_to_the_configured_fields() {
    for g in all() {
        let ip = parse_ipv4(&g.datagram).unwrap();
        let advert = decode(
            ip.payload,
            v4(ip.src),
            v4(ip.dst),
            &DecodeOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", g.origin));
        assert_eq!(advert, g.advert, "{}", g.origin);
    }
}

#[test]
fn reencoding_reproduces_keepalived_bytes_exactly() {
    for g in all() {
        let ip = parse_ipv4(&g.datagram).unwrap();
        let advert = decode(
            ip.payload,
            v4(ip.src),
            v4(ip.dst),
            &DecodeOptions::default(),
        )
        .unwrap();
        let bytes = encode(&advert, v4(ip.src), v4(ip.dst), V3Checksum::default())
            .unwrap_or_else(|e| panic!("{}: {e}", g.origin));
        assert_eq!(bytes, ip.payload, "{}: re-encoded bytes differ", g.origin);
        // And from the expected fields alone, without looking at the capture.
        let fresh = encode(&g.advert, v4(g.src), v4(g.dst), V3Checksum::default()).unwrap();
        assert_eq!(fresh, ip.payload, "{}: encoded from config", g.origin);
    }
}

#[test]
fn v3_fixtures_carry_the_pseudo_header_checksum_and_v2_fixtures_do_not() {
    let strict_rfc9568 = DecodeOptions {
        v3_checksum: V3Checksum::VrrpOnly,
        accept_either_checksum: false,
    };
    let lenient = DecodeOptions {
        v3_checksum: V3Checksum::VrrpOnly,
        accept_either_checksum: true,
    };
    let mut v3_seen = 0;
    for g in all() {
        let ip = parse_ipv4(&g.datagram).unwrap();
        let (src, dst) = (v4(ip.src), v4(ip.dst));
        match g.advert.version {
            Version::V3 => {
                v3_seen += 1;
                assert_eq!(
                    decode(ip.payload, src, dst, &strict_rfc9568),
                    Err(DecodeError::BadChecksum),
                    "{}",
                    g.origin
                );
                assert_eq!(
                    decode(ip.payload, src, dst, &lenient).as_ref(),
                    Ok(&g.advert),
                    "{}",
                    g.origin
                );
            }
            // v2 never uses a pseudo-header: the v3 setting is irrelevant.
            Version::V2 => assert_eq!(
                decode(ip.payload, src, dst, &strict_rfc9568).as_ref(),
                Ok(&g.advert),
                "{}",
                g.origin
            ),
        }
    }
    assert!(v3_seen >= 4, "too few v3 packets: {v3_seen}");
}

#[test]
fn v3_unicast_checksum_binds_the_peer_address_as_destination() {
    for g in load("v3-unicast-100ms")
        .into_iter()
        .chain(load("v3-unicast-100ms-priority0"))
    {
        let ip = parse_ipv4(&g.datagram).unwrap();
        assert!(!ip.dst.is_multicast(), "{}", g.origin);
        let opts = DecodeOptions::default();
        assert_eq!(
            decode(ip.payload, v4(ip.src), v4(MULTICAST_V4), &opts),
            Err(DecodeError::BadChecksum),
            "{}: summed with 224.0.0.18 instead of the peer",
            g.origin
        );
        assert!(decode(ip.payload, v4(ip.src), v4(ip.dst), &opts).is_ok());
    }
}

#[test]
fn short_password_is_zero_padded_and_eight_char_password_fills_the_field() {
    for g in load("v2-pass-short-unicast") {
        assert!(
            g.datagram.ends_with(b"secret\0\0"),
            "{}: auth data",
            g.origin
        );
        assert_eq!(g.datagram[20 + 4], 1, "{}: auth type PASS", g.origin);
    }
    for g in load("v2-pass-unicast") {
        assert!(g.datagram.ends_with(b"whpg2025"), "{}", g.origin);
    }
    for g in load("v2-multicast-noauth") {
        assert!(g.datagram.ends_with(&[0; 8]), "{}: zeroed auth", g.origin);
        assert_eq!(g.datagram[20 + 4], 0, "{}: auth type none", g.origin);
    }
}

#[test]
fn interval_is_whole_seconds_in_v2_and_centiseconds_in_v3() {
    for g in load("v2-pass-unicast") {
        assert_eq!(g.datagram[20 + 5], 1, "{}: advert_int 1 -> 1 s", g.origin);
    }
    for g in load("v3-multicast-100ms") {
        assert_eq!(
            &g.datagram[20 + 4..20 + 6],
            &[0, 10],
            "{}: advert_int 0.1 -> 10 cs, reserved bits zero",
            g.origin
        );
    }
}

#[test]
fn resigning_master_sends_priority_zero_with_everything_else_unchanged() {
    for base in [
        "v2-pass-unicast",
        "v2-pass-short-unicast",
        "v2-multicast-noauth",
        "v3-multicast-100ms",
        "v3-unicast-100ms",
    ] {
        let steady = load(base);
        let resign = load(&format!("{base}-priority0"));
        for r in &resign {
            assert_eq!(r.advert.priority, 0, "{}", r.origin);
            let same_sender = steady
                .iter()
                .find(|s| s.src == r.src)
                .unwrap_or_else(|| panic!("{}: no steady advert from {}", r.origin, r.src));
            assert_eq!(
                Advert {
                    priority: same_sender.advert.priority,
                    ..r.advert.clone()
                },
                same_sender.advert,
                "{}: only the priority changes",
                r.origin
            );
            assert_eq!(r.dst, same_sender.dst, "{}: sent the same way", r.origin);
        }
    }
}
