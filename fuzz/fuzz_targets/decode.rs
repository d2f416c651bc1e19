//! Fuzz the receive path: IPv4 header parsing and VRRP decoding must never panic, and whatever
//! decodes must survive a re-encode/decode round trip unchanged.
//!
//! Input layout: one flag byte, then either
//! - flag bit 4 set: a whole IPv4 datagram (addresses come from its header), or
//! - flag bit 4 clear: the source address, the destination address (4 bytes each, or 16 when flag
//!   bit 0 / bit 1 says IPv6), then the VRRP payload.
//!
//! Flag bit 2 selects the RFC 9568 (VRRP-only) v3 checksum instead of keepalived's pseudo-header
//! form; flag bit 3 accepts either form.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use whpg_vrrp::ip::parse_ipv4;
use whpg_vrrp::packet::{decode, encode, DecodeOptions, V3Checksum};

fn take_addr(data: &mut &[u8], ipv6: bool) -> Option<IpAddr> {
    if ipv6 {
        let (head, rest) = data.split_first_chunk::<16>()?;
        *data = rest;
        Some(IpAddr::V6(Ipv6Addr::from(*head)))
    } else {
        let (head, rest) = data.split_first_chunk::<4>()?;
        *data = rest;
        Some(IpAddr::V4(Ipv4Addr::from(*head)))
    }
}

fn check(packet: &[u8], src: IpAddr, dst: IpAddr, options: &DecodeOptions) {
    let Ok(advert) = decode(packet, src, dst, options) else {
        return;
    };
    let bytes = encode(&advert, src, dst, options.v3_checksum)
        .unwrap_or_else(|e| panic!("decoded advert {advert:?} does not encode: {e}"));
    let strict = DecodeOptions {
        accept_either_checksum: false,
        ..*options
    };
    assert_eq!(
        decode(&bytes, src, dst, &strict),
        Ok(advert),
        "re-encoded advert decodes differently"
    );
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, mut data)) = input.split_first() else {
        return;
    };
    let options = DecodeOptions {
        v3_checksum: if flags & 0x04 != 0 {
            V3Checksum::VrrpOnly
        } else {
            V3Checksum::PseudoHeader
        },
        accept_either_checksum: flags & 0x08 != 0,
    };
    if flags & 0x10 != 0 {
        if let Ok(ip) = parse_ipv4(data) {
            assert!(ip.payload.len() + 20 <= data.len());
            check(ip.payload, IpAddr::V4(ip.src), IpAddr::V4(ip.dst), &options);
        }
        return;
    }
    let Some(src) = take_addr(&mut data, flags & 0x01 != 0) else {
        return;
    };
    let Some(dst) = take_addr(&mut data, flags & 0x02 != 0) else {
        return;
    };
    let _ = parse_ipv4(data);
    check(data, src, dst, &options);
});
