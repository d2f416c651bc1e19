//! Network-namespace lab for tests: hosts, links, faults and processes, always torn down.
//!
//! A [`Lab`] is one test's private network: a switch namespace holding a Linux bridge, plus one
//! namespace per [`Host`], each joined to the bridge by a veth pair created directly inside the
//! namespaces, so nothing ever appears in the machine's root namespace. Hosts run commands and
//! long-lived [`Process`]es (keepalived, PostgreSQL, tcpdump, `whpg-ha`); faults (link loss,
//! nftables drops, partitions, SIGKILL) are injected through the lab. Dropping the lab kills every
//! process inside its namespaces and deletes them, even while a test panics.
//!
//! Every blocking call is bounded: commands run with a timeout and waits take a deadline.
//!
//! Module map:
//! - [`lab`]: namespace naming, the switch, the lab directory, teardown and stale cleanup.
//! - [`host`]: a host namespace, running commands in it, address and reachability queries.
//! - [`process`]: handles to spawned processes, signals, exit waits, logs.
//! - [`fault`]: link, nftables and partition faults.
//! - [`etcd`]: an etcd cluster, one member per host, for the arbiter.
//! - [`keepalived`]: running Debian's keepalived inside a host and a small config builder.
//! - [`netns`]: running test code inside a lab namespace, one thread at a time.
//! - [`postgres`]: PostgreSQL 15 primaries and standbys inside hosts, as the `postgres` user.
//! - [`prereq`]: root and command checks, the explicit skip / CI failure policy.
//! - [`wait`]: bounded polling.
//! - [`cmd`]: bounded command execution shared by the other modules.

pub mod cmd;
pub mod etcd;
pub mod fault;
pub mod host;
pub mod keepalived;
pub mod lab;
pub mod netns;
pub mod postgres;
pub mod prereq;
pub mod process;
pub mod wait;

pub use cmd::{find_command, run, Output, DEFAULT_TIMEOUT};
pub use host::Host;
pub use keepalived::KeepalivedConf;
pub use lab::{netns_list, Lab};
pub use postgres::PgNode;
pub use prereq::{lab_for_test, require, require_for};
pub use process::{Process, Signal};
pub use wait::wait_until;
