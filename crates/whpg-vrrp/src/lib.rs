//! Sans-IO VRRP (RFC 3768 v2, RFC 5798 v3): wire format and the per-instance state machine.
//!
//! No sockets, no clock reads, no async runtime: callers feed packets and time in and carry the
//! returned actions out. That keeps every timing case exact and testable on a simulated clock.
//!
//! - [`packet`]: encode/decode adverts; [`checksum`]: the Internet checksum and pseudo-headers;
//!   [`ip`]: the IPv4 header fields a receiver needs; [`receive`]: which adverts an instance accepts.
//! - [`timers`]: Skew_Time and Master_Down_Interval.
//! - [`instance`]: the RFC 5798 §6 state machine, `handle(event, now) -> actions`, timers as data.

pub mod checksum;
pub mod instance;
pub mod interval;
pub mod ip;
pub mod packet;
pub mod receive;
pub mod timers;

pub use instance::{
    Action, Event, FaultSource, Instance, InstanceConfig, MasterInfo, Role, State, Stats,
    TransitionReason, Transmit, Transport,
};
pub use interval::Interval;
pub use packet::{Advert, Auth, DecodeError, DecodeOptions, EncodeError, V3Checksum, Version};
