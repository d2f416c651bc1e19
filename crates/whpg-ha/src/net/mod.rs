//! Kernel-facing IO shells for the VRRP side: the VRRP raw sockets, virtual addresses through
//! netlink, interface lookup and link events, gratuitous ARP. Each module does one job and holds
//! no policy: what to do and when is decided by the sans-IO cores.

pub mod garp;
pub mod link;
pub mod vip;
pub mod vrrp_socket;
pub mod witness;
