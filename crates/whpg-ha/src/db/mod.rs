//! Database-facing IO shells: how the daemon sees its local database and the peer's, natively
//! (no `pg_isready`, no `psql`). Each module reports facts; none decides anything.
//!
//! - [`startup_probe`]: credential-free probe by StartupMessage, every ~100 ms: accepting,
//!   WarehousePG standby ready (57M02), not accepting (57P03), rejected, refused, timed out.
//! - [`query`]: logged-in observation in one round trip (recovery, timeline, WAL receiver,
//!   replication) and the write check that verifies a promotion.
//! - [`postmaster`]: `postmaster.pid` and a pidfd watch that sees the postmaster die at once.
//! - [`wire`]: the few protocol messages the probe needs, as pure byte functions.
//! - [`lsn`]: WAL positions.

pub mod lsn;
pub mod postmaster;
pub mod query;
pub mod startup_probe;
pub mod wire;

pub use lsn::Lsn;
pub use postmaster::{PostmasterPid, PostmasterWatch};
pub use query::{observe, write_check, ConnParams, DbFacts, QueryError};
pub use startup_probe::{probe, ProbeOutcome, ProbeTarget};
pub use wire::SqlState;
