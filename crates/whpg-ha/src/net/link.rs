//! Interfaces through rtnetlink: one-shot lookup and a watcher for link and IPv4 address changes.
//!
//! This module owns reading interface state: name → index, MAC, whether the link can carry
//! traffic, its IPv4 addresses, and a stream of changes of one interface. It never changes an
//! interface, and it holds no policy: [`InterfaceHealth`] only folds events into "is there an
//! interface fault", what to do about a fault is the daemon's decision.
//!
//! "Up" means administratively up *and* operationally up: `IFF_UP` and `IFF_RUNNING`. The kernel
//! sets `IFF_RUNNING` when the operational state is `UP` or `UNKNOWN`; drivers that do not report
//! carrier (dummy, loopback, some virtual devices) stay `UNKNOWN`, so they count as up, while a
//! veth whose peer is down is `LOWERLAYERDOWN` and counts as down. The carrier is reported through
//! the kernel's link-watch work, which may lag `ip link set up` by up to about a second.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::mpsc;

use super::vip::{local_address, os_error, NetError, MAX_NAME_LEN};

/// What the kernel says about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Its name.
    pub name: String,
    /// Its index (changes if the interface is deleted and re-created).
    pub index: u32,
    /// Its hardware address, when it has a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// Administratively up and operationally up (see the module documentation).
    pub up: bool,
    /// Its IPv4 addresses with prefix lengths, sorted.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

impl InterfaceInfo {
    /// Whether `address` is one of its IPv4 addresses (any prefix length).
    pub fn has_ipv4(&self, address: Ipv4Addr) -> bool {
        self.ipv4.iter().any(|(a, _)| *a == address)
    }
}

/// Refuses names the kernel could never have, before asking it.
pub(crate) fn check_name(name: &str) -> Result<(), NetError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 15 bytes"
    } else if name == "." || name == ".." || name.contains(['/', ':']) {
        "contains '/' or ':' or is '.' or '..'"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains whitespace"
    } else {
        return Ok(());
    };
    Err(NetError::InvalidInterfaceName {
        name: name.to_string(),
        reason,
    })
}

/// Fetches the link message of interface `name`.
async fn link_message(handle: &Handle, name: &str) -> Result<LinkMessage, NetError> {
    check_name(name)?;
    let mut answers = handle.link().get().match_name(name).execute();
    match answers.try_next().await.map_err(os_error) {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(NetError::InterfaceNotFound {
            name: name.to_string(),
        }),
        Err(error) if error.raw_os_error() == Some(libc::ENODEV) => {
            Err(NetError::InterfaceNotFound {
                name: name.to_string(),
            })
        }
        Err(error) => Err(NetError::Interface {
            op: "looking up",
            device: name.to_string(),
            error,
        }),
    }
}

/// The index of interface `name`.
pub(crate) async fn index_of(handle: &Handle, name: &str) -> Result<u32, NetError> {
    Ok(link_message(handle, name).await?.header.index)
}

/// The IPv4 addresses of interface `index`, sorted.
async fn ipv4_of(handle: &Handle, name: &str, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
    let mut request = handle.address().get().set_link_index_filter(index);
    request.message_mut().header.family = AddressFamily::Inet;
    let messages: Vec<AddressMessage> =
        request
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::Interface {
                op: "listing the addresses of",
                device: name.to_string(),
                error: os_error(e),
            })?;
    let set: BTreeSet<(Ipv4Addr, u8)> = messages.iter().filter_map(ipv4_entry).collect();
    Ok(set.into_iter().collect())
}

/// Looks up interface `name`: index, MAC, up, IPv4 addresses. A missing interface is
/// [`NetError::InterfaceNotFound`].
pub async fn lookup(handle: &Handle, name: &str) -> Result<InterfaceInfo, NetError> {
    let message = link_message(handle, name).await?;
    let index = message.header.index;
    let ipv4 = ipv4_of(handle, name, index).await?;
    let mac = message.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
        _ => None,
    });
    Ok(InterfaceInfo {
        name: name.to_string(),
        index,
        mac,
        up: is_up(&message),
        ipv4,
    })
}

fn is_up(message: &LinkMessage) -> bool {
    let flags = message.header.flags;
    flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running)
}

fn link_name(message: &LinkMessage) -> Option<&str> {
    message.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

fn ipv4_entry(message: &AddressMessage) -> Option<(Ipv4Addr, u8)> {
    if message.header.family != AddressFamily::Inet {
        return None;
    }
    match local_address(message)? {
        IpAddr::V4(address) => Some((address, message.header.prefix_len)),
        IpAddr::V6(_) => None,
    }
}

/// A change of the watched interface. Only changes are sent, never repeats of the same state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The interface went up or down (see [`InterfaceInfo::up`]). Also sent with `up` when an
    /// interface of the watched name appears again after [`LinkEvent::Removed`].
    Link {
        /// The new state.
        up: bool,
    },
    /// The interface was deleted. Its addresses are reported as removed first.
    Removed,
    /// An IPv4 address appeared on the interface.
    AddressAdded {
        /// The address.
        address: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// An IPv4 address left the interface.
    AddressRemoved {
        /// The address.
        address: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
    },
}

/// Why an interface cannot carry the VRRP instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceFault {
    /// Down, without carrier, or deleted.
    LinkDown,
    /// The node's own address is not on it.
    AddressMissing(Ipv4Addr),
}

/// Folds [`LinkEvent`]s into "interface fault on / off" for one interface and, optionally, the
/// node's own address that must stay on it.
#[derive(Debug, Clone)]
pub struct InterfaceHealth {
    up: bool,
    node_address: Option<Ipv4Addr>,
    /// Prefix lengths under which the node address is present (it may be there more than once).
    node_prefixes: BTreeSet<u8>,
}

impl InterfaceHealth {
    /// Starts from a lookup (e.g. [`LinkWatcher::initial`]).
    pub fn new(initial: &InterfaceInfo, node_address: Option<Ipv4Addr>) -> InterfaceHealth {
        let node_prefixes = initial
            .ipv4
            .iter()
            .filter(|(a, _)| Some(*a) == node_address)
            .map(|(_, p)| *p)
            .collect();
        InterfaceHealth {
            up: initial.up,
            node_address,
            node_prefixes,
        }
    }

    /// The current fault, if any; a down link is reported before a missing address.
    pub fn fault(&self) -> Option<InterfaceFault> {
        if !self.up {
            return Some(InterfaceFault::LinkDown);
        }
        match self.node_address {
            Some(address) if self.node_prefixes.is_empty() => {
                Some(InterfaceFault::AddressMissing(address))
            }
            _ => None,
        }
    }

    /// Applies one event; returns the new fault state when it changed (`Some(None)` = cleared).
    pub fn apply(&mut self, event: &LinkEvent) -> Option<Option<InterfaceFault>> {
        let before = self.fault();
        match *event {
            LinkEvent::Link { up } => self.up = up,
            LinkEvent::Removed => {
                self.up = false;
                self.node_prefixes.clear();
            }
            LinkEvent::AddressAdded {
                address,
                prefix_len,
            } if Some(address) == self.node_address => {
                self.node_prefixes.insert(prefix_len);
            }
            LinkEvent::AddressRemoved {
                address,
                prefix_len,
            } if Some(address) == self.node_address => {
                self.node_prefixes.remove(&prefix_len);
            }
            LinkEvent::AddressAdded { .. } | LinkEvent::AddressRemoved { .. } => {}
        }
        let after = self.fault();
        (after != before).then_some(after)
    }
}

/// What the watcher task believes about the interface; events are the differences.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tracked {
    name: String,
    /// `None` while the interface does not exist.
    index: Option<u32>,
    up: bool,
    ipv4: BTreeSet<(Ipv4Addr, u8)>,
}

impl Tracked {
    fn from_info(info: &InterfaceInfo) -> Tracked {
        Tracked {
            name: info.name.clone(),
            index: Some(info.index),
            up: info.up,
            ipv4: info.ipv4.iter().copied().collect(),
        }
    }

    /// Moves to `next`, returning the events that describe the difference.
    fn transition(&mut self, next: Tracked) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        for &(address, prefix_len) in self.ipv4.difference(&next.ipv4) {
            events.push(LinkEvent::AddressRemoved {
                address,
                prefix_len,
            });
        }
        if self.index.is_some() && next.index.is_none() {
            events.push(LinkEvent::Removed);
        } else if self.up != next.up {
            events.push(LinkEvent::Link { up: next.up });
        }
        for &(address, prefix_len) in next.ipv4.difference(&self.ipv4) {
            events.push(LinkEvent::AddressAdded {
                address,
                prefix_len,
            });
        }
        *self = next;
        events
    }

    /// The events one netlink notification causes.
    fn apply(&mut self, message: &RouteNetlinkMessage) -> Vec<LinkEvent> {
        let mut next = self.clone();
        match message {
            // Bridge port notifications (family AF_BRIDGE) share the port's index but describe
            // bridge state; an AF_BRIDGE RTM_DELLINK only means "left the bridge".
            RouteNetlinkMessage::NewLink(link)
                if link.header.interface_family == AddressFamily::Unspec =>
            {
                let ours = match self.index {
                    Some(index) => link.header.index == index,
                    // Gone: a new interface of the same name takes its place.
                    None => link_name(link) == Some(self.name.as_str()),
                };
                if !ours {
                    return Vec::new();
                }
                next.index = Some(link.header.index);
                next.up = is_up(link);
            }
            RouteNetlinkMessage::DelLink(link)
                if link.header.interface_family == AddressFamily::Unspec
                    && Some(link.header.index) == self.index =>
            {
                next.index = None;
                next.up = false;
                next.ipv4.clear();
            }
            RouteNetlinkMessage::NewAddress(address)
                if Some(address.header.index) == self.index =>
            {
                if let Some(entry) = ipv4_entry(address) {
                    next.ipv4.insert(entry);
                }
            }
            RouteNetlinkMessage::DelAddress(address)
                if Some(address.header.index) == self.index =>
            {
                if let Some(entry) = ipv4_entry(address) {
                    next.ipv4.remove(&entry);
                }
            }
            _ => return Vec::new(),
        }
        self.transition(next)
    }
}

/// Capacity of the event channel. When the daemon falls behind, the watcher stops reading the
/// netlink socket; the kernel then reports an overrun and the watcher resynchronises with a fresh
/// lookup, so memory stays bounded and no state change is lost.
const EVENT_CAPACITY: usize = 64;

/// Changes of one interface, starting from the state it had when watching began.
#[derive(Debug)]
pub struct LinkWatcher {
    initial: InterfaceInfo,
    events: mpsc::Receiver<LinkEvent>,
}

impl LinkWatcher {
    /// The interface as it was when the watch started; events are relative to it.
    pub fn initial(&self) -> &InterfaceInfo {
        &self.initial
    }

    /// The next change. `None` means the watcher stopped (netlink socket failure, logged): the
    /// caller can no longer see faults and should treat that as one.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    /// The initial state and the event receiver, for callers that select on the receiver.
    pub fn into_parts(self) -> (InterfaceInfo, mpsc::Receiver<LinkEvent>) {
        (self.initial, self.events)
    }
}

/// Watches interface `name` for link state, deletion and IPv4 address changes. Fails with
/// [`NetError::InterfaceNotFound`] when it does not exist now. Must run inside a tokio runtime; the
/// background task ends when the [`LinkWatcher`] (or its receiver) is dropped.
pub async fn watch(name: &str) -> Result<LinkWatcher, NetError> {
    check_name(name)?;
    let (connection, handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link, MulticastGroup::Ipv4Ifaddr])
            .map_err(|error| NetError::Socket { error })?;
    let driver = tokio::spawn(connection);
    // Subscribed before the lookup, so no change after the lookup can be missed; changes queued
    // in between are reconciled against the tracked state and only real differences are sent.
    let initial = match lookup(&handle, name).await {
        Ok(info) => info,
        Err(e) => {
            driver.abort();
            return Err(e);
        }
    };
    let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
    let mut tracked = Tracked::from_info(&initial);
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = tx.closed() => break,
                message = messages.next() => message,
            };
            let Some((message, _)) = message else {
                tracing::error!(interface = %name, "netlink event socket closed; link watch stopped");
                break;
            };
            let events = match message.payload {
                NetlinkPayload::InnerMessage(inner) => tracked.apply(&inner),
                NetlinkPayload::Overrun(_) => {
                    tracing::warn!(interface = %name, "netlink events lost (overrun); resynchronising");
                    match resync(&handle, &name).await {
                        Ok(next) => tracked.transition(next),
                        Err(e) => {
                            tracing::error!(interface = %name, error = %e, "resynchronising link state failed; link watch stopped");
                            break;
                        }
                    }
                }
                _ => Vec::new(),
            };
            for event in events {
                tracing::debug!(interface = %name, ?event, "link event");
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        }
        driver.abort();
    });
    Ok(LinkWatcher {
        initial,
        events: rx,
    })
}

/// The current state of `name`, with a missing interface as "not there" rather than an error.
async fn resync(handle: &Handle, name: &str) -> Result<Tracked, NetError> {
    match lookup(handle, name).await {
        Ok(info) => Ok(Tracked::from_info(&info)),
        Err(NetError::InterfaceNotFound { .. }) => Ok(Tracked {
            name: name.to_string(),
            index: None,
            up: false,
            ipv4: BTreeSet::new(),
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::AddressAttribute;

    fn info(up: bool, ipv4: &[(&str, u8)]) -> InterfaceInfo {
        InterfaceInfo {
            name: "eth0".to_string(),
            index: 3,
            mac: None,
            up,
            ipv4: ipv4
                .iter()
                .map(|(a, p)| (a.parse().expect("test address"), *p))
                .collect(),
        }
    }

    fn link(index: u32, name: &str, flags: LinkFlags, family: AddressFamily) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.header.interface_family = family;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m
    }

    fn addr(index: u32, a: &str, prefix_len: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.index = index;
        m.header.prefix_len = prefix_len;
        let ip: IpAddr = a.parse().expect("test address");
        m.attributes.push(AddressAttribute::Local(ip));
        m.attributes.push(AddressAttribute::Address(ip));
        m
    }

    const UP: LinkFlags = LinkFlags::Up.union(LinkFlags::Running);

    #[test]
    fn link_changes_are_sent_once() {
        let mut t = Tracked::from_info(&info(true, &[]));
        let down = RouteNetlinkMessage::NewLink(link(
            3,
            "eth0",
            LinkFlags::empty(),
            AddressFamily::Unspec,
        ));
        assert_eq!(t.apply(&down), vec![LinkEvent::Link { up: false }]);
        assert_eq!(t.apply(&down), vec![]);
        // Administratively up without carrier is still down.
        let no_carrier =
            RouteNetlinkMessage::NewLink(link(3, "eth0", LinkFlags::Up, AddressFamily::Unspec));
        assert_eq!(t.apply(&no_carrier), vec![]);
        let up = RouteNetlinkMessage::NewLink(link(3, "eth0", UP, AddressFamily::Unspec));
        assert_eq!(t.apply(&up), vec![LinkEvent::Link { up: true }]);
        let other = RouteNetlinkMessage::NewLink(link(
            4,
            "eth1",
            LinkFlags::empty(),
            AddressFamily::Unspec,
        ));
        assert_eq!(t.apply(&other), vec![]);
    }

    #[test]
    fn bridge_family_messages_are_ignored() {
        let mut t = Tracked::from_info(&info(true, &[]));
        let del = RouteNetlinkMessage::DelLink(link(3, "eth0", UP, AddressFamily::Bridge));
        assert_eq!(t.apply(&del), vec![]);
        let new = RouteNetlinkMessage::NewLink(link(
            3,
            "eth0",
            LinkFlags::empty(),
            AddressFamily::Bridge,
        ));
        assert_eq!(t.apply(&new), vec![]);
    }

    #[test]
    fn removal_and_recreation_follow_the_name() {
        let mut t = Tracked::from_info(&info(true, &[("10.77.0.11", 24)]));
        let del = RouteNetlinkMessage::DelLink(link(3, "eth0", UP, AddressFamily::Unspec));
        assert_eq!(
            t.apply(&del),
            vec![
                LinkEvent::AddressRemoved {
                    address: Ipv4Addr::new(10, 77, 0, 11),
                    prefix_len: 24
                },
                LinkEvent::Removed
            ]
        );
        let back = RouteNetlinkMessage::NewLink(link(9, "eth0", UP, AddressFamily::Unspec));
        assert_eq!(t.apply(&back), vec![LinkEvent::Link { up: true }]);
        assert_eq!(t.index, Some(9));
    }

    #[test]
    fn address_changes_of_this_interface_only() {
        let mut t = Tracked::from_info(&info(true, &[("10.77.0.11", 24)]));
        let vip = RouteNetlinkMessage::NewAddress(addr(3, "10.77.0.100", 24));
        assert_eq!(
            t.apply(&vip),
            vec![LinkEvent::AddressAdded {
                address: Ipv4Addr::new(10, 77, 0, 100),
                prefix_len: 24
            }]
        );
        assert_eq!(t.apply(&vip), vec![]);
        let elsewhere = RouteNetlinkMessage::DelAddress(addr(4, "10.77.0.11", 24));
        assert_eq!(t.apply(&elsewhere), vec![]);
        let gone = RouteNetlinkMessage::DelAddress(addr(3, "10.77.0.11", 24));
        assert_eq!(
            t.apply(&gone),
            vec![LinkEvent::AddressRemoved {
                address: Ipv4Addr::new(10, 77, 0, 11),
                prefix_len: 24
            }]
        );
    }

    #[test]
    fn health_tracks_link_and_node_address() {
        let node = Ipv4Addr::new(10, 77, 0, 11);
        let mut h = InterfaceHealth::new(&info(true, &[("10.77.0.11", 24)]), Some(node));
        assert_eq!(h.fault(), None);
        assert_eq!(
            h.apply(&LinkEvent::Link { up: false }),
            Some(Some(InterfaceFault::LinkDown))
        );
        assert_eq!(h.apply(&LinkEvent::Link { up: false }), None);
        assert_eq!(h.apply(&LinkEvent::Link { up: true }), Some(None));
        let vip_gone = LinkEvent::AddressRemoved {
            address: Ipv4Addr::new(10, 77, 0, 100),
            prefix_len: 24,
        };
        assert_eq!(h.apply(&vip_gone), None);
        let node_gone = LinkEvent::AddressRemoved {
            address: node,
            prefix_len: 24,
        };
        assert_eq!(
            h.apply(&node_gone),
            Some(Some(InterfaceFault::AddressMissing(node)))
        );
        let node_back = LinkEvent::AddressAdded {
            address: node,
            prefix_len: 24,
        };
        assert_eq!(h.apply(&node_back), Some(None));
        assert_eq!(
            h.apply(&LinkEvent::Removed),
            Some(Some(InterfaceFault::LinkDown))
        );
    }

    #[test]
    fn health_without_node_address_only_watches_the_link() {
        let mut h = InterfaceHealth::new(&info(false, &[]), None);
        assert_eq!(h.fault(), Some(InterfaceFault::LinkDown));
        assert_eq!(h.apply(&LinkEvent::Link { up: true }), Some(None));
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_name("eth0").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a-very-long-name0").is_err());
        assert!(check_name("eth0:vip").is_err());
        assert!(check_name("et h0").is_err());
    }
}
