//! The receive filter: whether a decoded advert is meant for this instance and may touch its state.
//!
//! It applies the checks RFC 3768 §7.1 / RFC 5798 §7.1 and keepalived make after decoding (TTL,
//! version, VRID, auth, v2 interval, destination, sender), plus one of our own: the priorities a
//! sender may advertise, when the caller knows them (a peer whose policy can send only a few
//! values). Every refusal is a [`DropReason`] so the caller can count it; none of them changes the
//! state machine.

use std::fmt;
use std::net::IpAddr;

use crate::ip::Ipv4Error;
use crate::packet::{Advert, Auth, DecodeError, Version, REQUIRED_TTL};
use crate::Interval;

/// Where a received packet came from and went to, as the IP layer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
}

/// Why a received packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The IPv4 header itself is unusable.
    BadIpHeader(Ipv4Error),
    /// An IPv4 datagram of another protocol reached the VRRP socket.
    NotVrrp { protocol: u8 },
    /// The VRRP message is malformed (length, version nibble, type, checksum, ...).
    Malformed(DecodeError),
    /// Multicast adverts must arrive with TTL / hop limit 255 (they never cross a router).
    Ttl { ttl: u8 },
    /// An advert of the other protocol version.
    Version { got: Version },
    /// An advert for another virtual router.
    Vrid { got: u8 },
    /// Auth type differs from ours (v2).
    AuthType { got: u8 },
    /// Password differs from ours (v2 PASS).
    Password,
    /// v2 adverts must carry our interval (v3 adopts the master's instead).
    Interval { got: Interval },
    /// Sent to neither the VRRP group (multicast) nor our address (unicast).
    Destination { dst: IpAddr },
    /// Unicast mode accepts adverts only from configured peers.
    UnknownPeer { src: IpAddr },
    /// Our own advert looped back.
    OwnAdvert,
    /// A priority the sender cannot legitimately advertise (see
    /// [`InstanceConfig::accepted_priorities`](crate::InstanceConfig::accepted_priorities)).
    Priority { got: u8, accepted: Vec<u8> },
}

impl DropReason {
    /// A stable, short name per reason, for counters and metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            DropReason::BadIpHeader(_) => "bad_ip_header",
            DropReason::NotVrrp { .. } => "not_vrrp",
            DropReason::Malformed(e) => match e {
                DecodeError::Truncated { .. } => "truncated",
                DecodeError::UnknownVersion(_) => "unknown_version",
                DecodeError::UnknownType(_) => "unknown_type",
                DecodeError::V2OverIpv6 => "v2_over_ipv6",
                DecodeError::MixedFamilies => "mixed_families",
                DecodeError::LengthMismatch { .. } => "length",
                DecodeError::ZeroInterval => "zero_interval",
                DecodeError::UnsupportedAuth(_) => "unsupported_auth",
                DecodeError::BadChecksum => "checksum",
            },
            DropReason::Ttl { .. } => "ttl",
            DropReason::Version { .. } => "version",
            DropReason::Vrid { .. } => "vrid",
            DropReason::AuthType { .. } => "auth_type",
            DropReason::Password => "password",
            DropReason::Interval { .. } => "interval",
            DropReason::Destination { .. } => "destination",
            DropReason::UnknownPeer { .. } => "unknown_peer",
            DropReason::OwnAdvert => "own_advert",
            DropReason::Priority { .. } => "priority",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::BadIpHeader(e) => write!(f, "bad IPv4 header: {e}"),
            DropReason::NotVrrp { protocol } => write!(f, "IP protocol {protocol} is not VRRP"),
            DropReason::Malformed(e) => write!(f, "malformed advert: {e}"),
            DropReason::Ttl { ttl } => write!(f, "TTL {ttl}, expected 255"),
            DropReason::Version { got } => {
                write!(f, "VRRP version {} differs from ours", got.number())
            }
            DropReason::Vrid { got } => write!(f, "VRID {got} is not ours"),
            DropReason::AuthType { got } => write!(f, "auth type {got} differs from ours"),
            DropReason::Password => f.write_str("wrong password"),
            DropReason::Interval { got } => write!(f, "advert interval {got} differs from ours"),
            DropReason::Destination { dst } => write!(f, "sent to {dst}, not to us"),
            DropReason::UnknownPeer { src } => write!(f, "sender {src} is not a configured peer"),
            DropReason::OwnAdvert => f.write_str("our own advert"),
            DropReason::Priority { got, accepted } => {
                write!(f, "priority {got} is not one the peer can send (accepted: ")?;
                for (i, p) in accepted.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// What the filter compares an advert against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations<'a> {
    pub version: Version,
    pub vrid: u8,
    pub auth: &'a Auth,
    pub interval: Interval,
    pub own_address: IpAddr,
    /// `None` for multicast; the accepted senders for unicast.
    pub unicast_peers: Option<&'a [IpAddr]>,
    pub multicast_group: IpAddr,
    /// The priorities a sender may advertise; `None` accepts any.
    pub accepted_priorities: Option<&'a [u8]>,
}

/// Check a decoded advert against this instance; `Ok` means it may drive the state machine.
pub fn check(
    expect: &Expectations<'_>,
    meta: &PacketMeta,
    advert: &Advert,
) -> Result<(), DropReason> {
    if meta.src == expect.own_address {
        return Err(DropReason::OwnAdvert);
    }
    match expect.unicast_peers {
        None => {
            if meta.ttl != REQUIRED_TTL {
                return Err(DropReason::Ttl { ttl: meta.ttl });
            }
            if meta.dst != expect.multicast_group {
                return Err(DropReason::Destination { dst: meta.dst });
            }
        }
        Some(peers) => {
            // Unicast may cross routers, so like keepalived we do not insist on TTL 255 here.
            if meta.dst != expect.own_address {
                return Err(DropReason::Destination { dst: meta.dst });
            }
            if !peers.contains(&meta.src) {
                return Err(DropReason::UnknownPeer { src: meta.src });
            }
        }
    }
    if advert.version != expect.version {
        return Err(DropReason::Version {
            got: advert.version,
        });
    }
    if advert.vrid != expect.vrid {
        return Err(DropReason::Vrid { got: advert.vrid });
    }
    if advert.auth.type_code() != expect.auth.type_code() {
        return Err(DropReason::AuthType {
            got: advert.auth.type_code(),
        });
    }
    if advert.auth != *expect.auth {
        return Err(DropReason::Password);
    }
    if advert.version == Version::V2 && advert.interval != expect.interval {
        return Err(DropReason::Interval {
            got: advert.interval,
        });
    }
    // Last, so a forgery without the password is still counted as `password`.
    if let Some(accepted) = expect.accepted_priorities {
        if !accepted.contains(&advert.priority) {
            return Err(DropReason::Priority {
                got: advert.priority,
                accepted: accepted.to_vec(),
            });
        }
    }
    Ok(())
}
