//! whpg-ha: high availability for the WarehousePG coordinator (and plain PostgreSQL pairs).
//!
//! Layout: the VRRP protocol lives in the sans-IO `whpg-vrrp` crate; this crate holds the
//! configuration, the CLI and (as they land) the IO shells around the cores.

pub mod cli;
pub mod config;
pub mod net;
