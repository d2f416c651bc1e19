//! The IPv4 VRRP sockets (IP protocol 112) of one interface: sends adverts with the IP header fields
//! keepalived uses and hands received datagrams, IP header included, to the sans-IO core.
//!
//! This module owns the kernel side only: opening and configuring the raw sockets, the multicast
//! membership, and moving bytes. It must not parse, filter or judge adverts (TTL, checksum, VRID,
//! source checks all belong to `whpg_vrrp`), and it never decides when to send.
//!
//! # Two sockets, as keepalived does
//! `bind(2)` on a raw socket does two things: it picks the source address of what is sent, and it
//! filters what is *received* by destination address. The advert source must be our configured
//! address (not whatever the routing table prefers, which may become the VIP), so the send socket is
//! bound to it; bound that way it would never see adverts sent to 224.0.0.18. Setting the source per
//! packet with `IP_PKTINFO` would allow one socket, at the cost of hand-built control messages on
//! every send. Two sockets are simpler and the layout keepalived has used for years:
//! - the **send socket** is bound to the local address and refuses all input (a drop-all BPF filter
//!   and no receive buffer), so it cannot queue copies of incoming adverts nobody reads;
//! - the **receive socket** is bound to the device and, in multicast mode, joined to 224.0.0.18 on
//!   the interface index; in unicast mode it is also bound to the local address so that it only
//!   sees adverts sent to us.

use std::io::{self, Read as _};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// IP protocol number of VRRP.
pub const VRRP_PROTOCOL: i32 = 112;
/// The IPv4 multicast group of VRRP (RFC 5798 §5.1.1.2).
pub const VRRP_MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// TTL of every advert; receivers drop anything else (RFC 5798 §5.1.1.3).
pub const VRRP_TTL: u8 = 255;
/// IP TOS of every advert: precedence "internetwork control", the value keepalived sends.
pub const VRRP_TOS: u8 = 0xC0;

/// A socket could not be opened or configured: which interface, which step, the OS error, and a hint
/// at the usual fix.
#[derive(Debug, Error)]
#[error("{interface}: {step} failed: {source}{hint}", hint = hint_for(.source))]
pub struct SocketError {
    /// The interface, as the operator named it (or `ifindex N` when only the index is known).
    pub interface: String,
    /// What was being done, e.g. "joining 224.0.0.18 (IP_ADD_MEMBERSHIP)".
    pub step: String,
    #[source]
    pub source: io::Error,
}

impl SocketError {
    pub(crate) fn new(interface: &str, step: impl Into<String>, source: io::Error) -> SocketError {
        SocketError {
            interface: interface.to_string(),
            step: step.into(),
            source,
        }
    }

    /// Whether the failure is a missing privilege (the fix is root or `CAP_NET_RAW`).
    pub fn is_permission_denied(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(libc::EPERM) | Some(libc::EACCES)
        )
    }
}

fn hint_for(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (raw and packet sockets need root or the CAP_NET_RAW capability)"
        }
        Some(libc::ENODEV) => " (no such interface in this network namespace; check its name)",
        Some(libc::EADDRNOTAVAIL) => {
            " (the address is not configured on this host; check the local address and interface)"
        }
        Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) => {
            " (the kernel lacks support for this socket type)"
        }
        _ => "",
    }
}

/// How adverts are addressed on this interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpMode {
    /// To 224.0.0.18; the receive socket joins that group on the interface.
    Multicast,
    /// To each configured peer; the receive socket only sees datagrams sent to the local address.
    Unicast,
}

/// What [`VrrpSocket::open`] needs to know about the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpSocketOptions {
    /// Interface name, e.g. `eth0` (for `SO_BINDTODEVICE` and error messages).
    pub interface: String,
    /// Its index (for the multicast membership and `IP_MULTICAST_IF`).
    pub ifindex: u32,
    /// Our address on that interface: the source of every advert.
    pub local: Ipv4Addr,
    pub mode: VrrpMode,
}

/// The pair of raw IPv4 sockets VRRP uses on one interface, registered with tokio.
#[derive(Debug)]
pub struct VrrpSocket {
    send: AsyncFd<Socket>,
    recv: AsyncFd<Socket>,
    interface: String,
}

/// Maps an OS error of `step` on `interface` to a [`SocketError`].
fn failed(interface: &str, step: String) -> impl FnOnce(io::Error) -> SocketError + '_ {
    move |e| SocketError::new(interface, step, e)
}

/// Registers `socket` with the current tokio runtime for `interest`.
fn register(
    socket: Socket,
    interest: Interest,
    interface: &str,
    what: &str,
) -> Result<AsyncFd<Socket>, SocketError> {
    // SAFETY: a socket2 `Socket` owns its descriptor: it stays open and the same until the
    // `AsyncFd` (which takes ownership of the `Socket`) is dropped.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(|e| {
        let (_socket, cause) = e.into_parts();
        SocketError::new(
            interface,
            format!("registering the {what} socket with tokio"),
            cause,
        )
    })
}

/// A raw, non-blocking, close-on-exec IPv4 socket for protocol 112, bound to the device.
fn raw_socket(interface: &str, purpose: &str) -> Result<Socket, SocketError> {
    // socket2 creates it with SOCK_CLOEXEC, so commands we run never inherit it.
    let socket =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(VRRP_PROTOCOL))).map_err(
            failed(interface, format!("opening the raw VRRP {purpose} socket")),
        )?;
    socket.set_nonblocking(true).map_err(failed(
        interface,
        format!("making the {purpose} socket non-blocking"),
    ))?;
    socket
        .bind_device(Some(interface.as_bytes()))
        .map_err(failed(
            interface,
            format!("binding the {purpose} socket to the device (SO_BINDTODEVICE)"),
        ))?;
    // Without this a raw socket receives every multicast group any socket of the host joined;
    // we want only the membership we ask for.
    socket.set_multicast_all_v4(false).map_err(failed(
        interface,
        format!("clearing IP_MULTICAST_ALL on the {purpose} socket"),
    ))?;
    Ok(socket)
}

/// `IP_MULTICAST_IF` by interface index (`ip_mreqn`): socket2 only offers the by-address form, and
/// an address can move between interfaces while an index cannot.
fn set_multicast_if_index(socket: &Socket, ifindex: u32) -> io::Result<()> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex,
    };
    // SAFETY: the fd is open for the whole call; the option value is a properly initialised
    // ip_mreqn and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open_send(opts: &VrrpSocketOptions) -> Result<Socket, SocketError> {
    let ifname = opts.interface.as_str();
    let socket = raw_socket(ifname, "send")?;
    let step = |what: &str| failed(ifname, format!("send socket: {what}"));
    // Nothing is ever read from this socket: no buffer, and a filter that accepts nothing, so it
    // does not collect copies of incoming adverts.
    socket
        .set_recv_buffer_size(0)
        .map_err(step("shrinking the receive buffer (SO_RCVBUF)"))?;
    socket
        .attach_filter(&[SockFilter::new(
            (libc::BPF_RET | libc::BPF_K) as u16,
            0,
            0,
            0,
        )])
        .map_err(step("attaching the drop-all filter (SO_ATTACH_FILTER)"))?;
    socket
        .set_ttl_v4(u32::from(VRRP_TTL))
        .map_err(step("setting IP_TTL 255"))?;
    socket
        .set_multicast_ttl_v4(u32::from(VRRP_TTL))
        .map_err(step("setting IP_MULTICAST_TTL 255"))?;
    socket
        .set_tos_v4(u32::from(VRRP_TOS))
        .map_err(step("setting IP_TOS 0xC0"))?;
    set_multicast_if_index(&socket, opts.ifindex).map_err(step(&format!(
        "selecting interface index {} for multicast (IP_MULTICAST_IF)",
        opts.ifindex
    )))?;
    // Our own adverts must not come back to our receive socket.
    socket
        .set_multicast_loop_v4(false)
        .map_err(step("disabling IP_MULTICAST_LOOP"))?;
    socket
        .bind(&SockAddr::from(SocketAddrV4::new(opts.local, 0)))
        .map_err(step(&format!(
            "binding to the local address {} (the advert source)",
            opts.local
        )))?;
    Ok(socket)
}

fn open_recv(opts: &VrrpSocketOptions) -> Result<Socket, SocketError> {
    let ifname = opts.interface.as_str();
    let socket = raw_socket(ifname, "receive")?;
    let step = |what: &str| failed(ifname, format!("receive socket: {what}"));
    match opts.mode {
        VrrpMode::Multicast => socket
            .join_multicast_v4_n(
                &VRRP_MULTICAST_V4,
                &InterfaceIndexOrAddress::Index(opts.ifindex),
            )
            .map_err(step(&format!(
                "joining {VRRP_MULTICAST_V4} on interface index {} (IP_ADD_MEMBERSHIP)",
                opts.ifindex
            )))?,
        VrrpMode::Unicast => socket
            .bind(&SockAddr::from(SocketAddrV4::new(opts.local, 0)))
            .map_err(step(&format!(
                "binding to the local address {} (unicast adverts are sent to it)",
                opts.local
            )))?,
    }
    Ok(socket)
}

impl VrrpSocket {
    /// Opens and configures the send and receive sockets and registers them with the current tokio
    /// runtime. Needs root or `CAP_NET_RAW`.
    ///
    /// # Panics
    /// Outside a tokio runtime (tokio's registration requires a reactor).
    pub fn open(opts: &VrrpSocketOptions) -> Result<VrrpSocket, SocketError> {
        let ifname = opts.interface.as_str();
        let send = open_send(opts)?;
        let recv = open_recv(opts)?;
        let send = register(send, Interest::WRITABLE, ifname, "send")?;
        let recv = register(recv, Interest::READABLE, ifname, "receive")?;
        tracing::debug!(
            interface = ifname,
            ifindex = opts.ifindex,
            local = %opts.local,
            mode = ?opts.mode,
            "VRRP sockets open"
        );
        Ok(VrrpSocket {
            send,
            recv,
            interface: opts.interface.clone(),
        })
    }

    /// The interface these sockets are bound to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Waits for the next VRRP datagram and copies it, IPv4 header included, into `buf`; returns its
    /// length. Pass a buffer of at least 1500 bytes: a longer datagram is truncated to `buf` (and will
    /// then fail to parse, which is what it deserves on a VRRP interface).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.recv.readable().await?;
            match guard.try_io(|fd| fd.get_ref().read(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one VRRP message (the payload only; the kernel adds the IPv4 header with our source
    /// address, TTL 255 and TOS 0xC0) to `dst`: 224.0.0.18 or a unicast peer.
    pub async fn send(&self, dst: Ipv4Addr, payload: &[u8]) -> io::Result<()> {
        let addr = SockAddr::from(SocketAddrV4::new(dst, 0));
        loop {
            let mut guard = self.send.writable().await?;
            match guard.try_io(|fd| fd.get_ref().send_to(payload, &addr)) {
                Ok(Ok(n)) if n == payload.len() => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!(
                            "{}: sent {n} of {} bytes to {dst}",
                            self.interface,
                            payload.len()
                        ),
                    ))
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_interface_step_and_fix() {
        let err = SocketError::new(
            "eth0",
            "opening the raw VRRP send socket",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        let text = err.to_string();
        assert!(text.starts_with("eth0: opening the raw VRRP send socket failed: "));
        assert!(text.contains("CAP_NET_RAW"), "{text}");
        assert!(err.is_permission_denied());

        let err = SocketError::new(
            "nosuch0",
            "binding",
            io::Error::from_raw_os_error(libc::ENODEV),
        );
        assert!(err.to_string().contains("no such interface"));
        assert!(!err.is_permission_denied());
    }
}
