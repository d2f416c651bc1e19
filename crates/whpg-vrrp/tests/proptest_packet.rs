//! Properties of the VRRP codec over generated adverts and arbitrary bytes: round trips, no panics,
//! single-bit corruption caught by the checksum, truncation always rejected.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use whpg_vrrp::ip::parse_ipv4;
use whpg_vrrp::packet::{
    decode, encode, Advert, Auth, DecodeError, DecodeOptions, V3Checksum, Version, IP_PROTOCOL,
    MULTICAST_V4,
};
use whpg_vrrp::Interval;

/// A valid advert together with how it is sent.
#[derive(Debug, Clone)]
struct Sent {
    advert: Advert,
    src: IpAddr,
    dst: IpAddr,
    mode: V3Checksum,
}

impl Sent {
    fn bytes(&self) -> Vec<u8> {
        encode(&self.advert, self.src, self.dst, self.mode).expect("a valid advert encodes")
    }

    fn strict(&self) -> DecodeOptions {
        DecodeOptions {
            v3_checksum: self.mode,
            accept_either_checksum: false,
        }
    }
}

fn v4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
}

fn v6() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
}

fn any_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![v4(), v6()]
}

fn mode() -> impl Strategy<Value = V3Checksum> {
    prop_oneof![Just(V3Checksum::PseudoHeader), Just(V3Checksum::VrrpOnly)]
}

fn options() -> impl Strategy<Value = DecodeOptions> {
    (mode(), any::<bool>()).prop_map(|(v3_checksum, accept_either_checksum)| DecodeOptions {
        v3_checksum,
        accept_either_checksum,
    })
}

fn v2() -> impl Strategy<Value = Sent> {
    (
        (v4(), v4(), any::<u8>(), any::<u8>()),
        1..=255u8,
        proptest::option::of(any::<[u8; 8]>()),
        proptest::collection::vec(v4(), 0..16),
        mode(),
    )
        .prop_map(
            |((src, dst, vrid, priority), secs, pass, addresses, mode)| Sent {
                advert: Advert {
                    version: Version::V2,
                    vrid,
                    priority,
                    interval: Interval::from_secs(secs),
                    auth: pass.map_or(Auth::None, Auth::Password),
                    addresses,
                },
                src,
                dst,
                mode,
            },
        )
}

fn v3(ipv6: bool) -> impl Strategy<Value = Sent> {
    let addr = move || if ipv6 { v6().boxed() } else { v4().boxed() };
    (
        (addr(), addr(), any::<u8>(), any::<u8>()),
        1..=Interval::V3_MAX_CENTIS,
        proptest::collection::vec(addr(), 0..16),
        mode(),
    )
        .prop_map(
            |((src, dst, vrid, priority), centis, addresses, mode)| Sent {
                advert: Advert {
                    version: Version::V3,
                    vrid,
                    priority,
                    interval: Interval::from_centis(centis),
                    auth: Auth::None,
                    addresses,
                },
                src,
                dst,
                mode,
            },
        )
}

fn valid() -> impl Strategy<Value = Sent> {
    prop_oneof![v2(), v3(false), v3(true)]
}

/// The IPv4 pseudo-header's contribution to the ones' complement sum, reduced modulo 0xffff.
fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u32 {
    let words = |o: [u8; 4]| {
        u32::from(u16::from_be_bytes([o[0], o[1]])) + u32::from(u16::from_be_bytes([o[2], o[3]]))
    };
    (words(src.octets()) + words(dst.octets()) + u32::from(IP_PROTOCOL) + len as u32) % 0xffff
}

/// Wrap a VRRP payload in a minimal IPv4 header (checksum left zero: `parse_ipv4` does not check it).
fn datagram(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap().to_be_bytes();
    let mut out = vec![
        0x45,
        0xc0,
        total[0],
        total[1],
        0,
        1,
        0,
        0,
        255,
        IP_PROTOCOL,
        0,
        0,
    ];
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(payload);
    out
}

proptest! {
    #[test]
    fn every_valid_advert_round_trips(sent in valid(), either in any::<bool>()) {
        let bytes = sent.bytes();
        let opts = DecodeOptions { accept_either_checksum: either, ..sent.strict() };
        prop_assert_eq!(decode(&bytes, sent.src, sent.dst, &opts), Ok(sent.advert.clone()));
        // Encoding is canonical: decode then encode gives the same bytes back.
        let again = encode(&sent.advert, sent.src, sent.dst, sent.mode).unwrap();
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn ipv4_datagrams_carry_the_advert_through_parse_ipv4(sent in v2()) {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (sent.src, sent.dst) else { unreachable!() };
        let bytes = sent.bytes();
        let wire = datagram(src, dst, &bytes);
        let ip = parse_ipv4(&wire).unwrap();
        prop_assert_eq!((ip.src, ip.dst, ip.ttl, ip.protocol), (src, dst, 255, IP_PROTOCOL));
        prop_assert_eq!(ip.payload, &bytes[..]);
        for cut in 0..wire.len() {
            prop_assert!(parse_ipv4(&wire[..cut]).is_err(), "datagram cut to {} bytes parsed", cut);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        buf in proptest::collection::vec(any::<u8>(), 0..200),
        src in any_addr(),
        dst in any_addr(),
        opts in options(),
    ) {
        let _ = decode(&buf, src, dst, &opts);
        if let Ok(ip) = parse_ipv4(&buf) {
            prop_assert!(ip.payload.len() + 20 <= buf.len());
            let _ = decode(ip.payload, IpAddr::V4(ip.src), IpAddr::V4(ip.dst), &opts);
        }
    }

    #[test]
    fn arbitrary_vrrp_looking_bytes_never_panic(
        first in prop_oneof![Just(0x21u8), Just(0x31u8), any::<u8>()],
        count in any::<u8>(),
        rest in proptest::collection::vec(any::<u8>(), 0..200),
        src in any_addr(),
        dst in any_addr(),
        opts in options(),
    ) {
        // Steer past the version/type checks so the length and checksum paths get exercised too.
        let mut buf = vec![first, 1, 100, count];
        buf.extend_from_slice(&rest);
        if let Ok(advert) = decode(&buf, src, dst, &opts) {
            prop_assert_eq!(advert.addresses.len(), usize::from(count));
        }
    }

    /// The ones' complement sum changes by ±2^k (never a multiple of 0xffff) when one bit flips, so
    /// under one checksum form every single-bit error is caught.
    #[test]
    fn a_flipped_bit_is_always_rejected_under_one_checksum_form(
        sent in valid(),
        bit in any::<proptest::sample::Index>(),
    ) {
        let mut bytes = sent.bytes();
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        let result = decode(&bytes, sent.src, sent.dst, &sent.strict());
        prop_assert!(result.is_err(), "flipped bit {} decoded to {:?}", i, result);
    }

    /// With `accept_either_checksum` a flipped bit passes only when it moves the sum by exactly the
    /// pseudo-header's share, i.e. when that share is ±2^k modulo 0xffff for the flipped bit's weight
    /// 2^k. It can then even decode to the *same* advert (a bit in the checksum or reserved field):
    /// the price of accepting both forms, see `accepting_either_form_can_hide_a_flipped_checksum_bit`.
    #[test]
    fn with_either_checksum_a_flipped_bit_passes_only_in_the_arithmetic_corner(
        sent in v3(false),
        bit in any::<proptest::sample::Index>(),
    ) {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (sent.src, sent.dst) else { unreachable!() };
        let mut bytes = sent.bytes();
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        let lenient = DecodeOptions { accept_either_checksum: true, ..sent.strict() };
        if let Ok(advert) = decode(&bytes, sent.src, sent.dst, &lenient) {
            let weight = (i % 8) + if (i / 8) % 2 == 0 { 8 } else { 0 };
            let delta = 1u32 << weight;
            let share = pseudo_header_sum(src, dst, bytes.len());
            prop_assert!(
                share == delta || share == 0xffff - delta,
                "bit {} accepted as {:?} though the pseudo-header share is {:#x}", i, advert, share
            );
        }
    }

    #[test]
    fn every_truncation_of_a_valid_packet_is_rejected(sent in valid()) {
        let bytes = sent.bytes();
        for cut in 0..bytes.len() {
            let result = decode(&bytes[..cut], sent.src, sent.dst, &sent.strict());
            prop_assert!(
                matches!(result, Err(DecodeError::Truncated { .. } | DecodeError::LengthMismatch { .. })),
                "cut to {} of {} bytes: {:?}", cut, bytes.len(), result
            );
        }
    }

    #[test]
    fn trailing_bytes_after_a_valid_packet_are_rejected(
        sent in valid(),
        extra in proptest::collection::vec(any::<u8>(), 1..20),
    ) {
        let mut bytes = sent.bytes();
        bytes.extend_from_slice(&extra);
        let result = decode(&bytes, sent.src, sent.dst, &sent.strict());
        prop_assert!(matches!(result, Err(DecodeError::LengthMismatch { .. })), "{:?}", result);
    }
}

/// A concrete case of the corner above: for a source whose pseudo-header share is 1 modulo 0xffff,
/// flipping the checksum's lowest bit turns keepalived's form into a valid RFC 9568 form of the
/// *same* advert, so a receiver accepting either form cannot see the corruption. Strict decoding
/// (the default) rejects it.
#[test]
fn accepting_either_form_can_hide_a_flipped_checksum_bit() {
    let advert = Advert {
        version: Version::V3,
        vrid: 52,
        priority: 150,
        interval: Interval::from_centis(10),
        auth: Auth::None,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100))],
    };
    let dst = MULTICAST_V4;
    let lenient = DecodeOptions {
        accept_either_checksum: true,
        ..DecodeOptions::default()
    };
    let mut found = None;
    'search: for a in 0..=255u8 {
        for b in 0..=255u8 {
            let src = Ipv4Addr::new(10, 77, a, b);
            let mut bytes = encode(
                &advert,
                IpAddr::V4(src),
                IpAddr::V4(dst),
                V3Checksum::PseudoHeader,
            )
            .unwrap();
            bytes[7] ^= 1;
            if decode(&bytes, IpAddr::V4(src), IpAddr::V4(dst), &lenient).as_ref() == Ok(&advert) {
                found = Some((src, bytes));
                break 'search;
            }
        }
    }
    let (src, corrupted) = found.expect("some source address in 10.77.0.0/16 hits the corner");
    let share = pseudo_header_sum(src, dst, corrupted.len());
    assert!(share == 1 || share == 0xfffe, "share {share:#x}");
    assert_eq!(
        decode(
            &corrupted,
            IpAddr::V4(src),
            IpAddr::V4(dst),
            &DecodeOptions::default()
        ),
        Err(DecodeError::BadChecksum)
    );
}
