//! Sans-IO HA policy for a coordinator pair: from observations (VRRP state, local and peer
//! database, witnesses, maintenance) to decisions (priority, faults, VIP, promotion, fencing).
//!
//! Like the VRRP core it never performs IO and never reads a clock: the daemon feeds
//! [`Input`]s with the current time and carries out the returned [`Decision`]s. The safety
//! invariants of the design are enforced here and tested table-style in `tests/rules.rs`.
//!
//! - [`observe`]: what is known, with fall/rise hysteresis and "last seen" times.
//! - [`replication`]: whether the local standby holds everything the primary acknowledged.
//! - [`sync_standby`]: on a primary, whether commits wait for the standby (`[replication] mode`).
//! - [`arbiter`]: the optional etcd leader key, as last reported.
//! - [`policy`]: the rules.

pub mod arbiter;
pub mod observe;
pub mod policy;
pub mod replication;
pub mod sync_standby;

pub use arbiter::{
    ArbiterAction, ArbiterRules, ArbiterSample, ArbiterStatus, RecordRefusal, SyncRecord,
    SyncRecordWrite,
};
pub use observe::{DbRole, LocalSample, PeerSample, WalReceiver};
pub use policy::{
    Decision, FenceReason, Hold, Input, KeyState, Notice, PlannedRefusal, Policy, PolicyConfig,
    PolicyStatus, Triggers, WriteVerified,
};
pub use replication::{
    Mark, MarkReason, PrimaryPosition, ReplicationConfig, ReplicationStatus, StandbyRow,
    Unpromotable,
};
pub use sync_standby::{SyncConfig, SyncMode, SyncReason, SyncStatus, SyncTarget};
