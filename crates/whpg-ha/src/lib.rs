//! whpg-ha: high availability for the WarehousePG coordinator (and plain PostgreSQL pairs).
//!
//! Layout: the VRRP protocol lives in the sans-IO `whpg-vrrp` crate; this crate holds the
//! configuration, the CLI, the IO shells around the core ([`net`]), the daemon that wires them
//! ([`daemon`]) and its HTTP API ([`api`]).

pub mod api;
pub mod arbiter;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod db;
pub mod demo;
pub mod exec;
pub mod fence;
pub mod gendocs;
pub mod import;
pub mod journal;
pub mod metrics;
pub mod net;
pub mod node;
pub mod ops;
pub mod rebuild;
pub mod selftest;
pub mod status;
