//! Gratuitous ARP: tells the LAN that a virtual IPv4 address now lives at our MAC address, so
//! clients and routers replace a stale ARP entry pointing at the old master.
//!
//! This module owns the `AF_PACKET` socket and the frame layout, and sends exactly one frame per
//! [`GarpSender::announce`] call. It must not schedule anything: bursts, repeats, delays and refresh
//! are the daemon's decisions.
//!
//! The frame is what keepalived sends by default: an ARP *request* (opcode 1) broadcast to
//! ff:ff:ff:ff:ff:ff, sender and target protocol address both the virtual IP, sender hardware
//! address ours, target hardware address ff:ff:ff:ff:ff:ff. A request is used rather than a reply
//! because every stack updates an existing entry from it (RFC 5227 §3 recommends requests too).

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use super::vrrp_socket::SocketError;

/// Length of the frame: 14 bytes of Ethernet header and 28 of ARP (no padding: the NIC or driver
/// pads to the 60-byte minimum).
pub const GARP_FRAME_LEN: usize = 42;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ARP_HARDWARE_ETHERNET: u16 = 1;
const ARP_OP_REQUEST: u16 = 1;
const BROADCAST: [u8; 6] = [0xff; 6];

/// The gratuitous ARP frame announcing `ip` at `mac`.
pub fn gratuitous_arp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut frame = [0u8; GARP_FRAME_LEN];
    let ip = ip.octets();
    // Ethernet: destination, source, ethertype.
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // ARP: hardware type, protocol type, their lengths, opcode.
    frame[14..16].copy_from_slice(&ARP_HARDWARE_ETHERNET.to_be_bytes());
    frame[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame[18] = 6;
    frame[19] = 4;
    frame[20..22].copy_from_slice(&ARP_OP_REQUEST.to_be_bytes());
    // Sender MAC + IP, target MAC + IP.
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip);
    frame[32..38].copy_from_slice(&BROADCAST);
    frame[38..42].copy_from_slice(&ip);
    frame
}

/// Sends gratuitous ARP frames on one interface.
#[derive(Debug)]
pub struct GarpSender {
    socket: Socket,
    /// Where frames go: the interface, as an `AF_PACKET` link-layer address.
    dest: SockAddr,
    mac: [u8; 6],
    interface: String,
}

/// The interface's name for messages, or `ifindex N` if it has none (any more).
fn describe_interface(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has the IF_NAMESIZE bytes if_indextoname may write; on success it holds a
    // NUL-terminated name, which is read before buf goes out of scope.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return format!("ifindex {ifindex}");
    }
    // SAFETY: non-null result of if_indextoname points into buf and is NUL-terminated.
    let name = unsafe { CStr::from_ptr(name) };
    format!("{} (ifindex {ifindex})", name.to_string_lossy())
}

/// `sockaddr_ll` for sending ARP frames to the broadcast address on `ifindex` (socket2 has no
/// constructor for link-layer addresses).
fn link_layer_broadcast(ifindex: u32) -> io::Result<SockAddr> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of the platform's sockaddr types and fits in the storage.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    ll.sll_protocol = ETHERTYPE_ARP.to_be();
    ll.sll_ifindex = ifindex;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&BROADCAST);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: storage holds an initialised sockaddr_ll of exactly `len` bytes.
    Ok(unsafe { SockAddr::new(storage, len) })
}

impl GarpSender {
    /// Opens an `AF_PACKET` raw socket for the interface with index `ifindex` whose MAC address is
    /// `mac` (the caller looks both up). Needs root or `CAP_NET_RAW`.
    pub fn open(ifindex: u32, mac: [u8; 6]) -> Result<GarpSender, SocketError> {
        let interface = describe_interface(ifindex);
        // Protocol 0: the socket is never hooked into the receive path, so it queues nothing.
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
            .map_err(|e| SocketError::new(&interface, "opening the AF_PACKET socket", e))?;
        // Never stall the caller's runtime on a full device queue: a frame that cannot be queued
        // now is reported, and the next announcement of the burst tries again.
        socket.set_nonblocking(true).map_err(|e| {
            SocketError::new(&interface, "making the AF_PACKET socket non-blocking", e)
        })?;
        let dest = link_layer_broadcast(ifindex)
            .map_err(|e| SocketError::new(&interface, "building the link-layer address", e))?;
        Ok(GarpSender {
            socket,
            dest,
            mac,
            interface,
        })
    }

    /// Sends one gratuitous ARP frame announcing `ip` at our MAC address. Never blocks: a full
    /// device queue is returned as [`io::ErrorKind::WouldBlock`].
    pub fn announce(&self, ip: Ipv4Addr) -> io::Result<()> {
        let frame = gratuitous_arp_frame(self.mac, ip);
        let sent = self.socket.send_to(&frame, &self.dest).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: sending gratuitous ARP for {ip}: {e}", self.interface),
            )
        })?;
        if sent != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "{}: gratuitous ARP for {ip}: sent {sent} of {} bytes",
                    self.interface,
                    frame.len()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_a_broadcast_arp_request_for_the_vip() {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
        let frame = gratuitous_arp_frame(mac, Ipv4Addr::new(10, 77, 0, 100));
        #[rustfmt::skip]
        let expected: [u8; 42] = [
            // Ethernet: broadcast destination, our source, ethertype ARP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x42, 0xac, 0x11, 0x00, 0x02,
            0x08, 0x06,
            // ARP: Ethernet, IPv4, lengths 6 and 4, opcode 1 (request)
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            // sender MAC, sender IP = VIP
            0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 10, 77, 0, 100,
            // target MAC broadcast (keepalived's default), target IP = VIP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 10, 77, 0, 100,
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn link_layer_address_names_the_interface_and_arp() {
        let addr = link_layer_broadcast(7).expect("small index fits");
        assert_eq!(
            usize::try_from(addr.len()).ok(),
            Some(std::mem::size_of::<libc::sockaddr_ll>())
        );
        assert_eq!(addr.family(), libc::AF_PACKET as libc::sa_family_t);
        assert!(link_layer_broadcast(u32::MAX).is_err());
    }
}
