//! VRRP advertisement wire format: VRRPv2 (RFC 3768 §5) and VRRPv3 (RFC 5798 §5), IPv4 and IPv6.
//!
//! This module only turns bytes into an [`Advert`] and back. It checks everything that can be checked
//! from the packet and its IP addresses alone (length, version, type, checksum, auth type); whether an
//! advert is meant for a given instance (VRID, password, TTL, sender) is decided by
//! [`crate::receive`]. No input may panic: every failure is a [`DecodeError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::checksum;
use crate::interval::Interval;

/// IP protocol number of VRRP.
pub const IP_PROTOCOL: u8 = 112;
/// IPv4 multicast group for VRRP adverts.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group for VRRP adverts.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit every VRRP advert is sent with and (multicast) must arrive with.
pub const REQUIRED_TTL: u8 = 255;
/// The only packet type VRRP defines.
const TYPE_ADVERTISEMENT: u8 = 1;
/// Fixed part of a v2 packet before the addresses, and the auth data after them.
const V2_HEADER_LEN: usize = 8;
const V2_AUTH_LEN: usize = 8;
/// Fixed part of a v3 packet before the addresses.
const V3_HEADER_LEN: usize = 8;

/// Protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: interval in seconds, optional simple-password authentication.
    V2,
    /// RFC 5798: interval in centiseconds, no authentication, IPv4 and IPv6.
    V3,
}

impl Version {
    /// The number carried in the version nibble.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// VRRPv2 authentication (v3 has none).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Auth type 0.
    None,
    /// Auth type 1, "simple text password": 8 bytes, zero-padded, sent in the clear.
    Password([u8; 8]),
}

impl Auth {
    /// Wire code of the auth type.
    pub fn type_code(&self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::Password(_) => 1,
        }
    }

    /// A password of 1 to 8 bytes, zero-padded as keepalived does.
    pub fn password(text: &str) -> Result<Auth, PasswordError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(PasswordError::Empty);
        }
        if bytes.len() > 8 {
            return Err(PasswordError::TooLong(bytes.len()));
        }
        let mut data = [0u8; 8];
        data[..bytes.len()].copy_from_slice(bytes);
        Ok(Auth::Password(data))
    }
}

/// Never print a password, not even in debug output.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Password(_) => f.write_str("Password(********)"),
        }
    }
}

/// Why a password cannot be used for VRRPv2 PASS authentication.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the password is {0} bytes long; VRRPv2 carries at most 8")]
    TooLong(usize),
}

/// How the v3 checksum covers an IPv4 packet. RFC 5798 is ambiguous here; keepalived (the peer we
/// must interoperate with) includes the IPv4 pseudo-header, RFC 9568 and some routers do not. IPv6
/// always uses the pseudo-header and v2 never does, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum V3Checksum {
    /// keepalived's behaviour: source, destination, zero, protocol 112, VRRP length.
    #[default]
    PseudoHeader,
    /// The VRRP message alone.
    VrrpOnly,
}

/// Checksum rules for decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Expected form of the v3 IPv4 checksum.
    pub v3_checksum: V3Checksum,
    /// Also accept the other v3 IPv4 form (mixed-vendor networks during a migration).
    pub accept_either_checksum: bool,
}

/// One VRRP advertisement, independent of version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    /// 0 = master resigning, 1..=254 backup range, 255 = address owner.
    pub priority: u8,
    /// Advert interval. v2 carries whole seconds; v3 centiseconds.
    pub interval: Interval,
    /// Always [`Auth::None`] for v3.
    pub auth: Auth,
    /// The virtual addresses; all of one family.
    pub addresses: Vec<IpAddr>,
}

/// Why a received packet is not a well-formed advert. One variant per reason so each is counted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("packet of {len} bytes is shorter than the smallest advert")]
    Truncated { len: usize },
    #[error("version {0} is not 2 or 3")]
    UnknownVersion(u8),
    #[error("packet type {0} is not 1 (advertisement)")]
    UnknownType(u8),
    #[error("VRRPv2 cannot be carried over IPv6")]
    V2OverIpv6,
    #[error("source and destination addresses are of different families")]
    MixedFamilies,
    #[error("packet is {actual} bytes but its address count says {expected}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("advert interval is zero")]
    ZeroInterval,
    #[error("auth type {0} is not supported (0 = none, 1 = simple password)")]
    UnsupportedAuth(u8),
    #[error("checksum mismatch")]
    BadChecksum,
}

/// Why an advert cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("VRRPv2 carries the interval in whole seconds from 1 to 255; {0} cannot be sent")]
    V2Interval(Interval),
    #[error("VRRPv3 has no authentication")]
    AuthInV3,
    #[error("VRRPv2 is IPv4 only")]
    V2OverIpv6,
    #[error("addresses, source and destination must all be of one family")]
    MixedFamilies,
    #[error("{0} addresses do not fit in one advert (at most 255)")]
    TooManyAddresses(usize),
    #[error("the interval is zero")]
    ZeroInterval,
}

/// Encode `advert` as sent from `src` to `dst` (both needed for the checksum pseudo-header).
pub fn encode(
    advert: &Advert,
    src: IpAddr,
    dst: IpAddr,
    v3_checksum: V3Checksum,
) -> Result<Vec<u8>, EncodeError> {
    let ipv6 = family_of(src, dst).ok_or(EncodeError::MixedFamilies)?;
    if advert.addresses.iter().any(|a| a.is_ipv6() != ipv6) {
        return Err(EncodeError::MixedFamilies);
    }
    let count = u8::try_from(advert.addresses.len())
        .map_err(|_| EncodeError::TooManyAddresses(advert.addresses.len()))?;
    if advert.interval.centis() == 0 {
        return Err(EncodeError::ZeroInterval);
    }
    let mut out = Vec::with_capacity(40);
    match advert.version {
        Version::V2 => {
            if ipv6 {
                return Err(EncodeError::V2OverIpv6);
            }
            let seconds = advert
                .interval
                .whole_seconds()
                .ok_or(EncodeError::V2Interval(advert.interval))?;
            out.extend_from_slice(&[
                (2 << 4) | TYPE_ADVERTISEMENT,
                advert.vrid,
                advert.priority,
                count,
                advert.auth.type_code(),
                seconds,
                0,
                0,
            ]);
            push_addresses(&mut out, &advert.addresses);
            match &advert.auth {
                Auth::None => out.extend_from_slice(&[0; V2_AUTH_LEN]),
                Auth::Password(data) => out.extend_from_slice(data),
            }
        }
        Version::V3 => {
            if advert.auth != Auth::None {
                return Err(EncodeError::AuthInV3);
            }
            let [hi, lo] = advert.interval.centis().to_be_bytes();
            out.extend_from_slice(&[
                (3 << 4) | TYPE_ADVERTISEMENT,
                advert.vrid,
                advert.priority,
                count,
                hi & 0x0f,
                lo,
                0,
                0,
            ]);
            push_addresses(&mut out, &advert.addresses);
        }
    }
    let sum = checksum_for(advert.version, &out, src, dst, v3_checksum);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    Ok(out)
}

/// Decode the VRRP payload of an IP packet that went from `src` to `dst`.
pub fn decode(
    buf: &[u8],
    src: IpAddr,
    dst: IpAddr,
    options: &DecodeOptions,
) -> Result<Advert, DecodeError> {
    let ipv6 = family_of(src, dst).ok_or(DecodeError::MixedFamilies)?;
    let first = *buf.first().ok_or(DecodeError::Truncated { len: 0 })?;
    let version = match first >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        other => return Err(DecodeError::UnknownVersion(other)),
    };
    if first & 0x0f != TYPE_ADVERTISEMENT {
        return Err(DecodeError::UnknownType(first & 0x0f));
    }
    if version == Version::V2 && ipv6 {
        return Err(DecodeError::V2OverIpv6);
    }
    let header_len = match version {
        Version::V2 => V2_HEADER_LEN,
        Version::V3 => V3_HEADER_LEN,
    };
    if buf.len() < header_len {
        return Err(DecodeError::Truncated { len: buf.len() });
    }
    let count = usize::from(buf[3]);
    let address_len = if ipv6 { 16 } else { 4 };
    let trailer = match version {
        Version::V2 => V2_AUTH_LEN,
        Version::V3 => 0,
    };
    let expected = header_len + count * address_len + trailer;
    if buf.len() != expected {
        return Err(DecodeError::LengthMismatch {
            expected,
            actual: buf.len(),
        });
    }
    let (interval, auth) = match version {
        Version::V2 => {
            let auth = match buf[4] {
                0 => Auth::None,
                1 => {
                    let mut data = [0u8; 8];
                    data.copy_from_slice(&buf[expected - V2_AUTH_LEN..]);
                    Auth::Password(data)
                }
                other => return Err(DecodeError::UnsupportedAuth(other)),
            };
            (Interval::from_secs(buf[5]), auth)
        }
        Version::V3 => {
            let centis = u16::from_be_bytes([buf[4] & 0x0f, buf[5]]);
            (Interval::from_centis(centis), Auth::None)
        }
    };
    if interval.centis() == 0 {
        return Err(DecodeError::ZeroInterval);
    }
    verify_checksum(version, buf, src, dst, options)?;
    let addresses = buf[header_len..header_len + count * address_len]
        .chunks_exact(address_len)
        .map(|chunk| match <[u8; 16]>::try_from(chunk) {
            Ok(v6) => IpAddr::V6(Ipv6Addr::from(v6)),
            Err(_) => IpAddr::V4(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3])),
        })
        .collect();
    Ok(Advert {
        version,
        vrid: buf[1],
        priority: buf[2],
        interval,
        auth,
        addresses,
    })
}

/// `Some(true)` for IPv6, `Some(false)` for IPv4, `None` when the two differ.
fn family_of(src: IpAddr, dst: IpAddr) -> Option<bool> {
    (src.is_ipv6() == dst.is_ipv6()).then_some(src.is_ipv6())
}

fn push_addresses(out: &mut Vec<u8>, addresses: &[IpAddr]) {
    for address in addresses {
        match address {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
    }
}

/// The checksum a sender puts in the packet (computed with the checksum field zeroed).
fn checksum_for(version: Version, packet: &[u8], src: IpAddr, dst: IpAddr, v3: V3Checksum) -> u16 {
    match (version, src, dst) {
        (Version::V2, _, _) => checksum::internet(packet),
        (Version::V3, IpAddr::V4(s), IpAddr::V4(d)) if v3 == V3Checksum::PseudoHeader => {
            checksum::with_pseudo_header_v4(s, d, packet)
        }
        (Version::V3, IpAddr::V4(_), IpAddr::V4(_)) => checksum::internet(packet),
        (Version::V3, IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::with_pseudo_header_v6(s, d, packet)
        }
        // Mixed families are rejected before any checksum is computed.
        (Version::V3, _, _) => checksum::internet(packet),
    }
}

/// A received packet's checksum is right when summing it *including* the checksum field gives zero.
fn verify_checksum(
    version: Version,
    buf: &[u8],
    src: IpAddr,
    dst: IpAddr,
    options: &DecodeOptions,
) -> Result<(), DecodeError> {
    let valid = |mode: V3Checksum| checksum_for(version, buf, src, dst, mode) == 0;
    let ipv4_v3 = version == Version::V3 && src.is_ipv4();
    let ok = if ipv4_v3 && options.accept_either_checksum {
        valid(V3Checksum::PseudoHeader) || valid(V3Checksum::VrrpOnly)
    } else {
        valid(options.v3_checksum)
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::BadChecksum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn sample(version: Version) -> Advert {
        Advert {
            version,
            vrid: 51,
            priority: 100,
            interval: match version {
                Version::V2 => Interval::from_secs(1),
                Version::V3 => Interval::from_centis(10),
            },
            auth: Auth::None,
            addresses: vec![v4([192, 168, 56, 100])],
        }
    }

    #[test]
    fn v2_layout_matches_rfc_3768() {
        let mut advert = sample(Version::V2);
        advert.auth = Auth::password("secret").unwrap();
        let bytes = encode(
            &advert,
            v4([10, 0, 0, 1]),
            v4([10, 0, 0, 2]),
            V3Checksum::default(),
        )
        .unwrap();
        assert_eq!(bytes.len(), 20);
        assert_eq!(&bytes[..6], &[0x21, 51, 100, 1, 1, 1]);
        assert_eq!(&bytes[8..12], &[192, 168, 56, 100]);
        assert_eq!(&bytes[12..], b"secret\0\0");
        assert_eq!(
            checksum::internet(&bytes),
            0,
            "a correct checksum sums to zero"
        );
    }

    #[test]
    fn v3_layout_matches_rfc_5798() {
        let bytes = encode(
            &sample(Version::V3),
            v4([10, 0, 0, 1]),
            IpAddr::V4(MULTICAST_V4),
            V3Checksum::PseudoHeader,
        )
        .unwrap();
        assert_eq!(bytes.len(), 12);
        assert_eq!(&bytes[..6], &[0x31, 51, 100, 1, 0, 10]);
    }

    #[test]
    fn v3_pseudo_header_choice_changes_the_checksum_and_is_enforced() {
        let src = v4([10, 0, 0, 1]);
        let dst = IpAddr::V4(MULTICAST_V4);
        let with = encode(&sample(Version::V3), src, dst, V3Checksum::PseudoHeader).unwrap();
        let without = encode(&sample(Version::V3), src, dst, V3Checksum::VrrpOnly).unwrap();
        assert_ne!(with[6..8], without[6..8]);
        let strict = DecodeOptions::default();
        assert!(decode(&with, src, dst, &strict).is_ok());
        assert_eq!(
            decode(&without, src, dst, &strict),
            Err(DecodeError::BadChecksum)
        );
        let lenient = DecodeOptions {
            accept_either_checksum: true,
            ..DecodeOptions::default()
        };
        assert!(decode(&without, src, dst, &lenient).is_ok());
        // The pseudo-header binds the packet to its addresses: another source fails.
        assert_eq!(
            decode(&with, v4([10, 0, 0, 9]), dst, &strict),
            Err(DecodeError::BadChecksum)
        );
    }

    #[test]
    fn v3_ipv6_round_trip() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MULTICAST_V6);
        let advert = Advert {
            addresses: vec![
                "fe80::100".parse().unwrap(),
                "2001:db8::100".parse().unwrap(),
            ],
            ..sample(Version::V3)
        };
        let bytes = encode(&advert, src, dst, V3Checksum::VrrpOnly).unwrap();
        assert_eq!(bytes.len(), 8 + 32);
        assert_eq!(
            decode(&bytes, src, dst, &DecodeOptions::default()),
            Ok(advert)
        );
    }

    #[test]
    fn each_malformation_has_its_own_error() {
        let src = v4([10, 0, 0, 1]);
        let dst = v4([10, 0, 0, 2]);
        let opts = DecodeOptions::default();
        let good = encode(&sample(Version::V2), src, dst, V3Checksum::default()).unwrap();

        assert_eq!(
            decode(&[], src, dst, &opts),
            Err(DecodeError::Truncated { len: 0 })
        );
        assert_eq!(
            decode(&good[..5], src, dst, &opts),
            Err(DecodeError::Truncated { len: 5 })
        );
        assert_eq!(
            decode(&good[..19], src, dst, &opts),
            Err(DecodeError::LengthMismatch {
                expected: 20,
                actual: 19
            })
        );
        let mut bad = good.clone();
        bad[0] = 0x41;
        assert_eq!(
            decode(&bad, src, dst, &opts),
            Err(DecodeError::UnknownVersion(4))
        );
        bad = good.clone();
        bad[0] = 0x22;
        assert_eq!(
            decode(&bad, src, dst, &opts),
            Err(DecodeError::UnknownType(2))
        );
        bad = good.clone();
        bad[4] = 2;
        assert_eq!(
            decode(&bad, src, dst, &opts),
            Err(DecodeError::UnsupportedAuth(2))
        );
        bad = good.clone();
        bad[5] = 0;
        assert_eq!(
            decode(&bad, src, dst, &opts),
            Err(DecodeError::ZeroInterval)
        );
        bad = good.clone();
        bad[2] ^= 1;
        assert_eq!(decode(&bad, src, dst, &opts), Err(DecodeError::BadChecksum));
        let six: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            decode(&good, src, six, &opts),
            Err(DecodeError::MixedFamilies)
        );
        assert_eq!(decode(&good, six, six, &opts), Err(DecodeError::V2OverIpv6));
    }

    #[test]
    fn encode_refuses_what_the_wire_cannot_carry() {
        let src = v4([10, 0, 0, 1]);
        let dst = v4([10, 0, 0, 2]);
        let mut v2 = sample(Version::V2);
        v2.interval = Interval::from_centis(150);
        assert!(matches!(
            encode(&v2, src, dst, V3Checksum::default()),
            Err(EncodeError::V2Interval(_))
        ));
        let mut v3 = sample(Version::V3);
        v3.auth = Auth::password("x").unwrap();
        assert_eq!(
            encode(&v3, src, dst, V3Checksum::default()),
            Err(EncodeError::AuthInV3)
        );
        assert_eq!(Auth::password(""), Err(PasswordError::Empty));
        assert_eq!(Auth::password("123456789"), Err(PasswordError::TooLong(9)));
        assert_eq!(
            format!("{:?}", Auth::password("secret").unwrap()),
            "Password(********)"
        );
    }
}
