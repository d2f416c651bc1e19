//! Witness reachability: ICMP echo to the configured witness hosts (typically the gateway, as the
//! seed's gateway ping), to tell "the peer is gone" from "I am cut off".
//!
//! One raw ICMP socket per round: every host gets one echo request and the round ends when all
//! have answered or the timeout passes. Only replies carrying this round's identifier count.

use std::collections::BTreeSet;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use whpg_vrrp::checksum;
use whpg_vrrp::ip::parse_ipv4;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;

/// An ICMP echo request with this identifier and sequence number.
pub fn echo_request(identifier: u16, sequence: u16) -> [u8; 16] {
    let mut packet = [0u8; 16];
    packet[0] = ICMP_ECHO_REQUEST;
    packet[4..6].copy_from_slice(&identifier.to_be_bytes());
    packet[6..8].copy_from_slice(&sequence.to_be_bytes());
    packet[8..16].copy_from_slice(b"whpg-ha\0");
    let sum = checksum::internet(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// The sender of an echo reply to `identifier` in a received IPv4 datagram, if it is one.
pub fn echo_reply_from(datagram: &[u8], identifier: u16) -> Option<Ipv4Addr> {
    let ip = parse_ipv4(datagram).ok()?;
    let icmp = ip.payload;
    if ip.protocol != 1 || icmp.len() < 8 || icmp[0] != ICMP_ECHO_REPLY {
        return None;
    }
    (u16::from_be_bytes([icmp[4], icmp[5]]) == identifier).then_some(ip.src)
}

/// What one round of echo requests found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Round {
    /// Hosts that answered within the timeout.
    pub answered: usize,
    /// Hosts whose request could not be sent for a reason of our own (descriptors, memory,
    /// socket buffers): their silence says nothing about them.
    pub not_sent: usize,
}

impl Round {
    /// The quorum verdict of this round: `Some(true)` reached, `Some(false)` lost, `None` when
    /// the requests we failed to send could have made the difference (unknown is not lost).
    pub fn quorum(&self, quorum: usize) -> Option<bool> {
        if self.answered >= quorum {
            Some(true)
        } else if self.answered + self.not_sent >= quorum {
            None
        } else {
            Some(false)
        }
    }
}

/// Sends one echo request to each of `hosts` and counts the answers within `timeout`.
/// An error means the round could not be run at all (no raw socket: privileges, or descriptors).
pub async fn reachable(hosts: &[IpAddr], timeout: Duration) -> io::Result<Round> {
    let targets: BTreeSet<Ipv4Addr> = hosts
        .iter()
        .filter_map(|h| match h {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    if targets.is_empty() {
        return Ok(Round::default());
    }
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    socket.set_nonblocking(true)?;
    // SAFETY: the socket2 `Socket` owns its descriptor, which stays open and unchanged until the
    // `AsyncFd` that takes ownership of it is dropped.
    let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    // Distinct per round and per process, so concurrent rounds never count each other's replies.
    let identifier = (std::process::id() as u16) ^ (rand_u16());
    let mut not_sent = 0;
    for (sequence, target) in targets.iter().enumerate() {
        let request = echo_request(identifier, sequence as u16);
        // A send error (no route) means that host is unreachable; the others still count. Our
        // own shortage (ENOBUFS, ENOMEM) means that host was not asked.
        if let Err(e) = socket
            .get_ref()
            .send_to(&request, &SocketAddrV4::new(*target, 0).into())
        {
            if crate::db::local_failure::local_errno(&e).is_some() {
                not_sent += 1;
            }
        }
    }
    let mut answered = BTreeSet::new();
    let round = async {
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        while answered.len() < targets.len() {
            let mut guard = socket.readable().await?;
            match guard.try_io(|inner| inner.get_ref().recv(&mut buf)) {
                Ok(Ok(len)) => {
                    // SAFETY: recv initialised the first `len` bytes.
                    let bytes: Vec<u8> = buf[..len]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect();
                    if let Some(from) = echo_reply_from(&bytes, identifier) {
                        if targets.contains(&from) {
                            answered.insert(from);
                        }
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok::<(), io::Error>(())
    };
    match tokio::time::timeout(timeout, round).await {
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) | Err(_) => Ok(Round {
            answered: answered.len(),
            not_sent,
        }),
    }
}

/// A little entropy for the ICMP identifier without a random-number dependency.
fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_lost_only_when_the_requests_we_failed_to_send_could_not_have_saved_it() {
        let round = |answered, not_sent| Round { answered, not_sent };
        assert_eq!(round(2, 0).quorum(2), Some(true));
        assert_eq!(round(1, 0).quorum(2), Some(false));
        // One host not asked (ENOBUFS): had it answered, the quorum would have been reached.
        assert_eq!(round(1, 1).quorum(2), None);
        assert_eq!(round(0, 3).quorum(2), None);
        assert_eq!(round(0, 1).quorum(3), Some(false), "lost whatever it said");
        assert_eq!(round(3, 1).quorum(2), Some(true));
    }

    #[test]
    fn echo_request_is_checksummed_and_a_reply_is_recognised() {
        let request = echo_request(0x1234, 7);
        assert_eq!(checksum::internet(&request), 0);
        assert_eq!(&request[4..8], &[0x12, 0x34, 0, 7]);

        let mut reply = request;
        reply[0] = ICMP_ECHO_REPLY;
        let mut datagram = vec![
            0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 10, 77, 0, 1, 10, 77, 0, 11,
        ];
        datagram.extend_from_slice(&reply);
        assert_eq!(
            echo_reply_from(&datagram, 0x1234),
            Some(Ipv4Addr::new(10, 77, 0, 1))
        );
        assert_eq!(
            echo_reply_from(&datagram, 0x4321),
            None,
            "another round's reply"
        );
        datagram[20] = ICMP_ECHO_REQUEST;
        assert_eq!(echo_reply_from(&datagram, 0x1234), None, "not a reply");
    }
}
