//! Virtual addresses through rtnetlink: add, remove and query one address on one interface.
//!
//! This module owns the netlink requests that put a VIP on an interface and take it off again, and
//! the [`NetError`] type shared with [`super::link`]. It must not decide *when* a VIP is installed
//! (that is the policy core's job), must not send gratuitous ARPs (`garp`), and must never touch an
//! address it was not asked about: every request names one exact address, prefix length and device.
//!
//! Behaviour worth knowing:
//! - Both operations are idempotent. The kernel answers `EEXIST` when the exact address/prefix is
//!   already there and `EADDRNOTAVAIL` when removing an absent one; both become
//!   [`Change::Unchanged`]. IPv6 also answers `EEXIST` when the address exists with *another*
//!   prefix length, which is reported as [`NetError::AddressConflict`] instead of being hidden.
//! - No broadcast address is set for IPv4 VIPs. `ip addr add` sets one only when asked (`brd`),
//!   keepalived sets none, and the kernel does not need one: the node's own address on the same
//!   subnet already provides the subnet broadcast route, and a VIP only serves unicast traffic.
//! - IPv4 labels (`IFA_LABEL`) are limited by the kernel to 15 bytes (IFNAMSIZ - 1) and silently
//!   truncated beyond that, so longer labels are refused here. Like iproute2 we also require the
//!   label to be the device name or start with `<device>:`, which keeps `ifconfig`-style alias
//!   names meaningful. IPv6 has no labels; a label on an IPv6 VIP is refused.
//! - IPv6 VIPs are added with `IFA_F_NODAD` (as keepalived does): duplicate address detection
//!   would leave the address tentative, unusable, for about a second after a takeover.
//! - Removal matches address and prefix length only, not the label, so a VIP added under an older
//!   label is still removed.
//! - The interface index is looked up on every call rather than cached: an interface that is
//!   deleted and re-created gets a new index.

use std::fmt;
use std::io;
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use super::link;

/// Longest interface name or address label the kernel stores (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;

/// One virtual address on one interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vip {
    /// The address itself.
    pub address: IpAddr,
    /// Its prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix_len: u8,
    /// The interface that carries it.
    pub device: String,
    /// IPv4 only: the address label (`IFA_LABEL`), e.g. `eth0:vip`.
    pub label: Option<String>,
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} dev {}",
            self.address, self.prefix_len, self.device
        )?;
        if let Some(label) = &self.label {
            write!(f, " label {label}")?;
        }
        Ok(())
    }
}

impl Vip {
    /// Checks what the kernel would reject or silently alter: prefix length, device name, label.
    pub fn validate(&self) -> Result<(), NetError> {
        let invalid = |reason: String| NetError::InvalidVip {
            vip: self.to_string(),
            reason,
        };
        let max = if self.address.is_ipv4() { 32 } else { 128 };
        if self.prefix_len > max {
            return Err(invalid(format!(
                "prefix length {} is larger than {max}",
                self.prefix_len
            )));
        }
        if self.address.is_unspecified() || self.address.is_multicast() {
            return Err(invalid(
                "a virtual address must be a unicast address".to_string(),
            ));
        }
        link::check_name(&self.device)?;
        if let Some(label) = &self.label {
            if self.address.is_ipv6() {
                return Err(invalid("IPv6 addresses have no labels".to_string()));
            }
            if label.len() > MAX_NAME_LEN {
                return Err(invalid(format!(
                    "label {label:?} is longer than {MAX_NAME_LEN} bytes (the kernel would truncate it)"
                )));
            }
            let prefixed = label
                .strip_prefix(self.device.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'));
            if !prefixed {
                return Err(invalid(format!(
                    "label {label:?} must be {dev:?} or start with \"{dev}:\"",
                    dev = self.device
                )));
            }
        }
        Ok(())
    }
}

/// What an idempotent operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The kernel state was changed (the address was added or removed).
    Done,
    /// Nothing to do: the address was already there (add) or already absent (remove).
    Unchanged,
}

/// The address operation a [`NetError::Address`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressOp {
    /// Adding a VIP.
    Add,
    /// Removing a VIP.
    Remove,
    /// Listing addresses to check whether a VIP is present.
    Query,
}

impl AddressOp {
    fn verb(self) -> &'static str {
        match self {
            AddressOp::Add => "adding",
            AddressOp::Remove => "removing",
            AddressOp::Query => "looking for",
        }
    }

    fn preposition(self) -> &'static str {
        match self {
            AddressOp::Add => "to",
            AddressOp::Remove => "from",
            AddressOp::Query => "on",
        }
    }
}

/// Errors of the netlink shells. Each names the operation, the address and the device involved.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket: {error}{}", hint(error))]
    Socket {
        /// The OS error.
        error: io::Error,
    },
    /// The named interface does not exist (in this network namespace).
    #[error("interface {name} not found")]
    InterfaceNotFound {
        /// The interface name asked for.
        name: String,
    },
    /// The interface name can never exist (empty, too long, or with forbidden characters).
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidInterfaceName {
        /// The interface name given.
        name: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// The VIP description is invalid; nothing was sent to the kernel.
    #[error("invalid virtual address {vip}: {reason}")]
    InvalidVip {
        /// The VIP as displayed by [`Vip`]'s `Display`.
        vip: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The kernel refused an address request.
    #[error(
        "{} {address}/{prefix_len} {} {device}: {error}{}",
        op.verb(),
        op.preposition(),
        hint(error)
    )]
    Address {
        /// What was being done.
        op: AddressOp,
        /// The address.
        address: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
        /// The interface.
        device: String,
        /// The OS error the kernel returned.
        error: io::Error,
    },
    /// The address is on the device already, but with a different prefix length.
    #[error(
        "adding {address}/{prefix_len} to {device}: the address is already there as \
         {address}/{existing_prefix_len}"
    )]
    AddressConflict {
        /// The address.
        address: IpAddr,
        /// The prefix length asked for.
        prefix_len: u8,
        /// The interface.
        device: String,
        /// The prefix length it has on the device.
        existing_prefix_len: u8,
    },
    /// The kernel refused an interface request.
    #[error("{op} interface {device}: {error}{}", hint(error))]
    Interface {
        /// What was being done, e.g. `looking up`.
        op: &'static str,
        /// The interface.
        device: String,
        /// The OS error the kernel returned.
        error: io::Error,
    },
}

impl NetError {
    /// The OS error number behind this error, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetError::Socket { error }
            | NetError::Address { error, .. }
            | NetError::Interface { error, .. } => error.raw_os_error(),
            _ => None,
        }
    }
}

/// A hint for the errors operators hit first: not running with the needed privilege.
fn hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (changing addresses needs root or the CAP_NET_ADMIN capability)"
        }
        _ => "",
    }
}

/// Turns an rtnetlink error into the OS error the kernel sent, when it sent one.
pub(crate) fn os_error(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Opens an rtnetlink connection and spawns its driver task on the current tokio runtime. The task
/// ends by itself once every clone of the returned handle is dropped.
pub(crate) fn connect() -> Result<Handle, NetError> {
    let (connection, handle, _unsolicited) =
        rtnetlink::new_connection().map_err(|error| NetError::Socket { error })?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Adds, removes and checks virtual addresses through one rtnetlink connection.
///
/// The socket belongs to the network namespace of the thread that called [`VipManager::new`].
#[derive(Debug, Clone)]
pub struct VipManager {
    handle: Handle,
}

impl VipManager {
    /// Opens the netlink connection; must be called inside a tokio runtime.
    pub async fn new() -> Result<VipManager, NetError> {
        Ok(VipManager { handle: connect()? })
    }

    /// The underlying rtnetlink handle, e.g. for [`link::lookup`].
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Looks up an interface through this manager's connection.
    pub async fn lookup(&self, name: &str) -> Result<link::InterfaceInfo, NetError> {
        link::lookup(&self.handle, name).await
    }

    /// Puts `vip` on its device. [`Change::Unchanged`] when that exact address/prefix is already
    /// there.
    pub async fn add(&self, vip: &Vip) -> Result<Change, NetError> {
        vip.validate()?;
        let index = link::index_of(&self.handle, &vip.device).await?;
        let mut request = self
            .handle
            .address()
            .add(index, vip.address, vip.prefix_len);
        let message = request.message_mut();
        // rtnetlink's builder adds a broadcast address like `ip addr add ... brd +`; VIPs go
        // without one (see the module documentation).
        message
            .attributes
            .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
        message.header.scope = AddressScope::Universe;
        match (vip.address, &vip.label) {
            (IpAddr::V4(_), Some(label)) => {
                message
                    .attributes
                    .push(AddressAttribute::Label(label.clone()));
            }
            (IpAddr::V6(_), _) => {
                message
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            (IpAddr::V4(_), None) => {}
        }
        match request.execute().await.map_err(os_error) {
            Ok(()) => Ok(Change::Done),
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => {
                // EEXIST also covers (IPv6) the same address under another prefix length.
                let prefixes = self.prefixes_of(vip, index).await?;
                if prefixes.contains(&vip.prefix_len) {
                    Ok(Change::Unchanged)
                } else if let Some(&existing) = prefixes.first() {
                    Err(NetError::AddressConflict {
                        address: vip.address,
                        prefix_len: vip.prefix_len,
                        device: vip.device.clone(),
                        existing_prefix_len: existing,
                    })
                } else {
                    Err(address_error(AddressOp::Add, vip, error))
                }
            }
            Err(error) => Err(address_error(AddressOp::Add, vip, error)),
        }
    }

    /// Takes `vip` off its device. [`Change::Unchanged`] when it was not there. A missing device
    /// is an error ([`NetError::InterfaceNotFound`]), not "already absent": the caller should
    /// learn that its interface disappeared.
    pub async fn remove(&self, vip: &Vip) -> Result<Change, NetError> {
        vip.validate()?;
        let index = link::index_of(&self.handle, &vip.device).await?;
        let message = address_message(vip, index);
        match self
            .handle
            .address()
            .del(message)
            .execute()
            .await
            .map_err(os_error)
        {
            Ok(()) => Ok(Change::Done),
            Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                Ok(Change::Unchanged)
            }
            Err(error) => Err(address_error(AddressOp::Remove, vip, error)),
        }
    }

    /// Whether that exact address/prefix is on the device.
    pub async fn is_present(&self, vip: &Vip) -> Result<bool, NetError> {
        vip.validate()?;
        let index = link::index_of(&self.handle, &vip.device).await?;
        Ok(self
            .prefixes_of(vip, index)
            .await?
            .contains(&vip.prefix_len))
    }

    /// The prefix lengths under which `vip.address` is on interface `index`.
    async fn prefixes_of(&self, vip: &Vip, index: u32) -> Result<Vec<u8>, NetError> {
        let mut request = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(vip.address);
        // The kernel filters a dump by family, which keeps the answer small.
        request.message_mut().header.family = family_of(vip.address);
        let messages: Vec<AddressMessage> = request
            .execute()
            .try_collect()
            .await
            .map_err(|e| address_error(AddressOp::Query, vip, os_error(e)))?;
        Ok(messages
            .iter()
            .filter(|m| local_address(m) == Some(vip.address))
            .map(|m| m.header.prefix_len)
            .collect())
    }
}

fn address_error(op: AddressOp, vip: &Vip, error: io::Error) -> NetError {
    NetError::Address {
        op,
        address: vip.address,
        prefix_len: vip.prefix_len,
        device: vip.device.clone(),
        error,
    }
}

fn family_of(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The message naming exactly `vip` on interface `index`, without a label (see `remove`).
fn address_message(vip: &Vip, index: u32) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family_of(vip.address);
    message.header.prefix_len = vip.prefix_len;
    message.header.index = index;
    message
        .attributes
        .push(AddressAttribute::Local(vip.address));
    message
        .attributes
        .push(AddressAttribute::Address(vip.address));
    message
}

/// The interface's own address in an address message: `IFA_LOCAL` (IPv4, and IPv6 point-to-point),
/// else `IFA_ADDRESS`.
pub(crate) fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(address: &str, prefix_len: u8, label: Option<&str>) -> Vip {
        Vip {
            address: address.parse().expect("test address"),
            prefix_len,
            device: "eth0".to_string(),
            label: label.map(str::to_string),
        }
    }

    #[test]
    fn display_matches_ip_syntax() {
        assert_eq!(
            vip("10.77.0.100", 24, Some("eth0:vip")).to_string(),
            "10.77.0.100/24 dev eth0 label eth0:vip"
        );
        assert_eq!(
            vip("fd00::100", 64, None).to_string(),
            "fd00::100/64 dev eth0"
        );
    }

    #[test]
    fn valid_vips_pass() {
        assert!(vip("10.77.0.100", 24, Some("eth0:vip")).validate().is_ok());
        assert!(vip("10.77.0.100", 32, Some("eth0")).validate().is_ok());
        assert!(vip("10.77.0.100", 24, None).validate().is_ok());
        assert!(vip("fd00::100", 128, None).validate().is_ok());
    }

    #[test]
    fn labels_are_checked_like_iproute2() {
        let too_long = vip("10.77.0.100", 24, Some("eth0:0123456789a"));
        let err = too_long.validate().expect_err("16-byte label");
        assert!(err.to_string().contains("longer than 15 bytes"), "{err}");
        let foreign = vip("10.77.0.100", 24, Some("eth1:vip"));
        let err = foreign.validate().expect_err("label of another device");
        assert!(err.to_string().contains("start with \"eth0:\""), "{err}");
        assert!(vip("10.77.0.100", 24, Some("eth0x")).validate().is_err());
        assert!(vip("fd00::100", 64, Some("eth0:v6")).validate().is_err());
    }

    #[test]
    fn prefix_and_address_kind_are_checked() {
        assert!(vip("10.77.0.100", 33, None).validate().is_err());
        assert!(vip("fd00::100", 129, None).validate().is_err());
        assert!(vip("224.0.0.18", 32, None).validate().is_err());
        assert!(vip("0.0.0.0", 0, None).validate().is_err());
    }

    #[test]
    fn errors_name_operation_address_and_device() {
        let e = address_error(
            AddressOp::Add,
            &vip("10.77.0.100", 24, None),
            io::Error::from_raw_os_error(libc::EPERM),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("adding 10.77.0.100/24 to eth0: "),
            "{text}"
        );
        assert!(text.contains("CAP_NET_ADMIN"), "{text}");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        let e = address_error(
            AddressOp::Remove,
            &vip("10.77.0.100", 24, None),
            io::Error::from_raw_os_error(libc::ENOBUFS),
        );
        assert!(e
            .to_string()
            .starts_with("removing 10.77.0.100/24 from eth0: "));
        assert!(!e.to_string().contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn removal_message_names_the_exact_address() {
        let m = address_message(&vip("10.77.0.100", 24, Some("eth0:vip")), 7);
        assert_eq!(m.header.index, 7);
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert_eq!(local_address(&m), "10.77.0.100".parse().ok());
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Label(_))));
    }
}
