//! The file as written: serde structs that mirror the TOML layout, with every key optional.
//!
//! Deliberately loose (strings, `i64`, `Option`) so that range and form checks happen in `validate`, where
//! all problems are collected at once; only unknown keys and wrong TOML types stop deserialization here.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration value before checking: normally a string such as `"100ms"`; a bare number is kept so that
/// validation can say "add a unit" instead of a bare type error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawDuration {
    Text(String),
    Number(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"100ms\" or \"1s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub node: Option<String>,
    pub vrrp: Option<RawVrrp>,
    #[serde(default)]
    pub vip: Vec<RawVip>,
    #[serde(default)]
    pub nodes: BTreeMap<String, RawNode>,
    pub database: Option<RawDatabase>,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub failover: RawFailover,
    #[serde(default)]
    pub replication: RawReplication,
    #[serde(default)]
    pub commands: RawCommands,
    #[serde(default)]
    pub witness: RawWitness,
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub journal: RawJournal,
    pub arbiter: Option<RawArbiter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrp {
    pub interface: Option<String>,
    pub vrid: Option<i64>,
    pub version: Option<i64>,
    pub advert_interval: Option<RawDuration>,
    pub transport: Option<String>,
    pub auth_pass: Option<String>,
    pub preempt: Option<bool>,
    pub preempt_delay: Option<RawDuration>,
    pub v3_checksum: Option<String>,
    pub accept_either_checksum: Option<bool>,
    #[serde(default)]
    pub garp: RawGarp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGarp {
    pub repeat: Option<i64>,
    pub interval: Option<RawDuration>,
    pub master_delay: Option<RawDuration>,
    pub refresh: Option<RawDuration>,
    pub on_lower_priority: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVip {
    pub address: Option<String>,
    pub device: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub address: Option<String>,
    pub priority: Option<i64>,
    pub application_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub flavor: Option<String>,
    pub host: Option<String>,
    pub socket_dir: Option<String>,
    pub port: Option<i64>,
    pub user: Option<String>,
    pub dbname: Option<String>,
    pub password_file: Option<String>,
    pub data_directory: Option<String>,
    pub os_user: Option<String>,
    pub greenplum_path: Option<String>,
    pub bin_dir: Option<String>,
    pub monitor: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub fall: Option<i64>,
    pub rise: Option<i64>,
    pub held_session: Option<bool>,
    pub connect_interval: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailover {
    pub triggers: Option<Vec<String>>,
    pub confirmation: Option<RawDuration>,
    pub wal_freshness: Option<RawDuration>,
    pub fence_when_isolated: Option<bool>,
    /// A size: an integer (bytes) or a string with a unit; read like a duration, as written.
    pub maximum_lag: Option<RawDuration>,
    pub maximum_lag_time: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplication {
    pub mode: Option<String>,
    pub sync_timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommands {
    pub promote: Option<RawCommand>,
    pub fence: Option<RawCommand>,
    pub stop: Option<RawCommand>,
    pub rejoin: Option<RawCommand>,
    pub start: Option<RawCommand>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommand {
    pub argv: Option<Vec<String>>,
    pub timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWitness {
    pub hosts: Option<Vec<String>>,
    pub quorum: Option<i64>,
    pub interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub listen: Option<Vec<String>>,
    pub token_file: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub tls_ca_file: Option<String>,
    pub tls_client_ca_file: Option<String>,
    pub max_connections: Option<i64>,
    pub header_timeout: Option<RawDuration>,
    pub idle_timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJournal {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawArbiter {
    pub kind: Option<String>,
    pub endpoints: Option<Vec<String>>,
    pub key_prefix: Option<String>,
    pub lease_ttl: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub keepalive_interval: Option<RawDuration>,
    pub on_lease_loss: Option<String>,
    pub failsafe: Option<bool>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca_file: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
}
