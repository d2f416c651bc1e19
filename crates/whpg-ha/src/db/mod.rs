//! Database-facing IO shells: how the daemon sees its local database and the peer's, natively
//! (no `pg_isready`, no `psql`). Each module reports facts; none decides anything.
//!
//! - [`startup_probe`]: credential-free probe by StartupMessage, every ~100 ms: accepting,
//!   WarehousePG standby ready (57M02), not accepting (57P03), rejected, refused, timed out.
//! - [`query`]: logged-in observation in one round trip (recovery, timeline, WAL receiver,
//!   replication), and the SQL of the write check that verifies a promotion.
//! - [`write_probe`]: that write check, tried on one kept connection while a promotion runs.
//! - [`session`]: the held monitoring session, asked the state row each probe interval, so
//!   steady-state monitoring opens (almost) no new connections.
//! - [`local_failure`]: which errors are our own (descriptors, memory): "unknown", never "down".
//! - [`postmaster`]: `postmaster.pid` and a pidfd watch that sees the postmaster die at once.
//! - [`wire`]: the few protocol messages the probe needs, as pure byte functions.
//! - [`sync_standby`]: sets `synchronous_standby_names` on the local primary (`[replication]`).
//! - [`lsn`]: WAL positions.

pub mod local_failure;
pub mod lsn;
pub mod postmaster;
pub mod query;
pub mod session;
pub mod startup_probe;
pub mod sync_standby;
pub mod wire;
pub mod write_probe;

pub use lsn::Lsn;
pub use postmaster::{PostmasterPid, PostmasterWatch};
pub use query::{observe, ConnParams, DbFacts, QueryError};
pub use session::HeldSession;
pub use startup_probe::{probe, ProbeOutcome, ProbeTarget};
pub use wire::SqlState;
pub use write_probe::WriteProbe;
