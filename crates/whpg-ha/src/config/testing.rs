//! A writer of test configuration files: one place that knows what a valid pair looks like.
//!
//! Tests need the configuration as TOML text (the daemon and the CLI read it from a file), so
//! [`TestConfig`] builds text, not a [`Config`]: a preset pair plus setters, then
//! [`TestConfig::to_toml`] or [`TestConfig::parse`]. Tables and keys come out in the order they
//! were first set, each key once (setting it again replaces its value in place).
//!
//! ```
//! use whpg_ha::config::testing::TestConfig;
//!
//! let config = TestConfig::pair().version(3).advert_interval("100ms").parse("a");
//! assert_eq!(config.local.name, "a");
//! ```

use std::path::{Path, PathBuf};

use super::Config;

/// A value that can be written as a TOML value: strings (quoted and escaped), paths, integers,
/// booleans and arrays of them.
pub trait TomlValue {
    /// The value as TOML text, e.g. `"eth0"`, `51`, `["a", "b"]`.
    fn to_toml_value(&self) -> String;
}

impl TomlValue for str {
    fn to_toml_value(&self) -> String {
        toml::Value::String(self.to_owned()).to_string()
    }
}

impl TomlValue for String {
    fn to_toml_value(&self) -> String {
        self.as_str().to_toml_value()
    }
}

impl TomlValue for Path {
    fn to_toml_value(&self) -> String {
        self.to_string_lossy().to_toml_value()
    }
}

impl TomlValue for PathBuf {
    fn to_toml_value(&self) -> String {
        self.as_path().to_toml_value()
    }
}

impl TomlValue for bool {
    fn to_toml_value(&self) -> String {
        self.to_string()
    }
}

macro_rules! integer_value {
    ($($t:ty),*) => {$(
        impl TomlValue for $t {
            fn to_toml_value(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_value!(u8, u16, u32, u64, i32, i64, usize);

impl<T: TomlValue> TomlValue for [T] {
    fn to_toml_value(&self) -> String {
        let items: Vec<String> = self.iter().map(TomlValue::to_toml_value).collect();
        format!("[{}]", items.join(", "))
    }
}

impl<T: TomlValue, const N: usize> TomlValue for [T; N] {
    fn to_toml_value(&self) -> String {
        self.as_slice().to_toml_value()
    }
}

impl<T: TomlValue> TomlValue for Vec<T> {
    fn to_toml_value(&self) -> String {
        self.as_slice().to_toml_value()
    }
}

impl<T: TomlValue + ?Sized> TomlValue for &T {
    fn to_toml_value(&self) -> String {
        (**self).to_toml_value()
    }
}

/// One table: its header line (`[vrrp]`, `[[vip]]`, `[nodes.a]`), its keys, then raw lines.
#[derive(Debug, Clone)]
struct Table {
    header: String,
    keys: Vec<(String, String)>,
    raw: String,
}

impl Table {
    fn new(header: &str) -> Table {
        Table {
            header: header.to_owned(),
            keys: Vec::new(),
            raw: String::new(),
        }
    }

    fn set(&mut self, key: &str, value: String) {
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.keys.push((key.to_owned(), value)),
        }
    }
}

/// A configuration file under construction; see the module documentation.
#[derive(Debug, Clone)]
pub struct TestConfig {
    top: Vec<(String, String)>,
    tables: Vec<Table>,
}

impl TestConfig {
    /// The lab pair: nodes `a` (10.77.0.11, priority 100) and `b` (10.77.0.12, priority 98) on
    /// `eth0`, VRID 51, VIP 10.77.0.100/24, a PostgreSQL database on 127.0.0.1 in `/tmp` run by
    /// `nobody`, with monitoring off. Everything else is at its default.
    pub fn pair() -> TestConfig {
        TestConfig {
            top: Vec::new(),
            tables: Vec::new(),
        }
        .interface("eth0")
        .vrid(51)
        .vip("10.77.0.100/24")
        .nodes(&[("a", "10.77.0.11", 100), ("b", "10.77.0.12", 98)])
        .database("flavor", "postgres")
        .database("host", "127.0.0.1")
        .database("data_directory", "/tmp")
        .database("os_user", "nobody")
        .monitor(false)
    }

    /// The seed's WarehousePG pair: coordinators `cdw` (192.168.10.11, default priority) and
    /// `scdw` (192.168.10.12, priority 98) on `eth1`, VRID 51, VIP 192.168.56.100/24, the
    /// coordinator's data directory `/data/coordinator/gpseg-1` on 127.0.0.1.
    pub fn warehousepg() -> TestConfig {
        let mut config = TestConfig {
            top: Vec::new(),
            tables: Vec::new(),
        }
        .interface("eth1")
        .vrid(51)
        .vip("192.168.56.100/24");
        config
            .table("[nodes.cdw]")
            .set("address", "192.168.10.11".to_toml_value());
        config
            .node("scdw", "192.168.10.12", 98)
            .database("flavor", "warehousepg")
            .database("host", "127.0.0.1")
            .database("data_directory", "/data/coordinator/gpseg-1")
            .database(
                "greenplum_path",
                "/usr/local/greenplum-db/greenplum_path.sh",
            )
    }

    /// The table with this header, created if there is none yet: a sub-table (`[vrrp.garp]`,
    /// `[nodes.c]`) after its parent's last table, any other at the end.
    fn table(&mut self, header: &str) -> &mut Table {
        let index = match self.tables.iter().position(|t| t.header == header) {
            Some(index) => index,
            None => {
                let at = header
                    .strip_prefix('[')
                    .filter(|h| !h.starts_with('['))
                    .and_then(|h| h.split_once('.'))
                    .and_then(|(parent, _)| {
                        let (own, sub) = (format!("[{parent}]"), format!("[{parent}."));
                        self.tables
                            .iter()
                            .rposition(|t| t.header == own || t.header.starts_with(&sub))
                    })
                    .map_or(self.tables.len(), |last| last + 1);
                self.tables.insert(at, Table::new(header));
                at
            }
        };
        &mut self.tables[index]
    }

    /// Sets `key` of table `table` (a dotted name without brackets: `vrrp`, `commands.promote`;
    /// `vip` is the first `[[vip]]`); the empty name sets a top-level key.
    pub fn set(mut self, table: &str, key: &str, value: impl TomlValue) -> TestConfig {
        let value = value.to_toml_value();
        self.set_raw_value(table, key, value);
        self
    }

    /// [`TestConfig::set`] with the value given as TOML text, e.g. `["node-loss"]`.
    pub fn set_raw(mut self, table: &str, key: &str, toml_value: &str) -> TestConfig {
        self.set_raw_value(table, key, toml_value.to_owned());
        self
    }

    fn set_raw_value(&mut self, table: &str, key: &str, value: String) {
        if table.is_empty() {
            match self.top.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value,
                None => self.top.push((key.to_owned(), value)),
            }
            return;
        }
        let header = if table == "vip" {
            "[[vip]]".to_owned()
        } else {
            format!("[{table}]")
        };
        self.table(&header).set(key, value);
    }

    /// Removes `key` from table `table` (named as for [`TestConfig::set`]), if it is there.
    pub fn without(mut self, table: &str, key: &str) -> TestConfig {
        let header = if table == "vip" {
            "[[vip]]".to_owned()
        } else {
            format!("[{table}]")
        };
        if let Some(t) = self.tables.iter_mut().find(|t| t.header == header) {
            t.keys.retain(|(k, _)| k != key);
        }
        self
    }

    /// Appends raw `body` lines to the table `header` (written with its brackets, e.g.
    /// `"[commands.promote]"`), creating it at the end if needed: for anything without a setter.
    pub fn section(mut self, header: &str, body: &str) -> TestConfig {
        let table = self.table(header);
        table.raw.push_str(body);
        if !body.ends_with('\n') {
            table.raw.push('\n');
        }
        self
    }

    /// The top-level `node` key: which entry of `[nodes]` this host is.
    pub fn node_key(self, name: &str) -> TestConfig {
        self.set("", "node", name)
    }

    // --- [vrrp] ---

    /// `vrrp.interface` (a VIP label, if set, is not changed).
    pub fn interface(self, interface: &str) -> TestConfig {
        self.set("vrrp", "interface", interface)
    }

    pub fn vrid(self, vrid: u8) -> TestConfig {
        self.set("vrrp", "vrid", vrid)
    }

    pub fn version(self, version: u8) -> TestConfig {
        self.set("vrrp", "version", version)
    }

    pub fn advert_interval(self, interval: &str) -> TestConfig {
        self.set("vrrp", "advert_interval", interval)
    }

    /// `vrrp.transport = "unicast"` (to the peers' addresses).
    pub fn unicast(self) -> TestConfig {
        self.set("vrrp", "transport", "unicast")
    }

    /// `vrrp.transport = "multicast"`.
    pub fn multicast(self) -> TestConfig {
        self.set("vrrp", "transport", "multicast")
    }

    pub fn preempt(self, preempt: bool) -> TestConfig {
        self.set("vrrp", "preempt", preempt)
    }

    pub fn auth_pass(self, pass: &str) -> TestConfig {
        self.set("vrrp", "auth_pass", pass)
    }

    /// `[vrrp.garp]`: how many gratuitous ARPs, and how long after becoming master.
    pub fn garp(self, repeat: u32, master_delay: &str) -> TestConfig {
        self.set("vrrp.garp", "repeat", repeat)
            .set("vrrp.garp", "master_delay", master_delay)
    }

    // --- [[vip]] and [nodes] ---

    /// The (first) VIP's address, `a.b.c.d/len`.
    pub fn vip(self, address: &str) -> TestConfig {
        self.set("vip", "address", address)
    }

    /// The (first) VIP's label, e.g. `eth0:vip`.
    pub fn vip_label(self, label: &str) -> TestConfig {
        self.set("vip", "label", label)
    }

    /// Replaces every node with these (name, address, priority), in this order.
    pub fn nodes(mut self, nodes: &[(&str, &str, u8)]) -> TestConfig {
        let at = self
            .tables
            .iter()
            .position(|t| t.header.starts_with("[nodes."))
            .unwrap_or(self.tables.len());
        self.tables.retain(|t| !t.header.starts_with("[nodes."));
        let mut new = Vec::new();
        for (name, address, priority) in nodes {
            let mut table = Table::new(&format!("[nodes.{name}]"));
            table.set("address", address.to_toml_value());
            table.set("priority", priority.to_toml_value());
            new.push(table);
        }
        let at = at.min(self.tables.len());
        self.tables.splice(at..at, new);
        self
    }

    /// Adds (or changes) node `name`.
    pub fn node(self, name: &str, address: &str, priority: u8) -> TestConfig {
        let table = format!("nodes.{name}");
        self.set(&table, "address", address)
            .set(&table, "priority", priority)
    }

    // --- [database] and the rest ---

    /// Sets `database.<key>`.
    pub fn database(self, key: &str, value: impl TomlValue) -> TestConfig {
        self.set("database", key, value)
    }

    /// `database.monitor`: whether the daemon probes the database at all.
    pub fn monitor(self, monitor: bool) -> TestConfig {
        self.set("database", "monitor", monitor)
    }

    /// `[health]`: probe interval and timeout, `fall` failures to go down, `rise` to come back.
    pub fn health(self, interval: &str, timeout: &str, fall: u32, rise: u32) -> TestConfig {
        self.set("health", "interval", interval)
            .set("health", "timeout", timeout)
            .set("health", "fall", fall)
            .set("health", "rise", rise)
    }

    /// `[failover]`: the triggers, how long a failure must last and how fresh the WAL must be.
    pub fn failover(
        self,
        triggers: &[&str],
        confirmation: &str,
        wal_freshness: &str,
    ) -> TestConfig {
        self.set("failover", "triggers", triggers)
            .set("failover", "confirmation", confirmation)
            .set("failover", "wal_freshness", wal_freshness)
    }

    /// `[witness]`: these hosts, `quorum` of them needed, probed every `interval`.
    pub fn witness(self, hosts: &[&str], quorum: u32, interval: &str, timeout: &str) -> TestConfig {
        self.set("witness", "hosts", hosts)
            .set("witness", "quorum", quorum)
            .set("witness", "interval", interval)
            .set("witness", "timeout", timeout)
    }

    /// `[api]`: where it listens, and the bearer token file if any.
    pub fn api(self, listen: &[&str], token_file: Option<&Path>) -> TestConfig {
        let config = self.set("api", "listen", listen);
        match token_file {
            Some(path) => config.set("api", "token_file", path),
            None => config.without("api", "token_file"),
        }
    }

    /// `[commands.<kind>]`: the argv and its timeout.
    pub fn command(self, kind: &str, argv: &[&str], timeout: Option<&str>) -> TestConfig {
        let table = format!("commands.{kind}");
        let config = self.set(&table, "argv", argv);
        match timeout {
            Some(timeout) => config.set(&table, "timeout", timeout),
            None => config,
        }
    }

    /// `journal.path`.
    pub fn journal(self, path: &Path) -> TestConfig {
        self.set("journal", "path", path)
    }

    /// The configuration file's text.
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        for (key, value) in &self.top {
            text += &format!("{key} = {value}\n");
        }
        for table in &self.tables {
            if !text.is_empty() {
                text.push('\n');
            }
            text += &table.header;
            text.push('\n');
            for (key, value) in &table.keys {
                text += &format!("{key} = {value}\n");
            }
            text += &table.raw;
        }
        text
    }

    /// The text parsed for `node`; panics with every error when it does not validate.
    pub fn parse(&self, node: &str) -> Config {
        let text = self.to_toml();
        super::parse(&text, Some(node))
            .unwrap_or_else(|e| panic!("test configuration does not validate: {e}\n{text}"))
    }

    /// Writes the text to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_toml())
    }
}

impl std::fmt::Display for TestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_toml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_preset_is_valid_for_either_node() {
        let a = TestConfig::pair().parse("a");
        assert_eq!(a.local.name, "a");
        assert_eq!(a.local.priority, 100);
        assert_eq!(a.peer().expect("a peer").name, "b");
        assert_eq!(a.vrrp.vrid, 51);
        assert!(!a.database.monitor);
        assert_eq!(TestConfig::pair().parse("b").local.priority, 98);
        let seed = TestConfig::warehousepg().parse("scdw");
        assert_eq!(seed.database.flavor, super::super::Flavor::WarehousePg);
        assert_eq!(seed.local.priority, 98);
    }

    #[test]
    fn keys_keep_their_place_and_are_written_once() {
        let text = TestConfig::pair()
            .version(3)
            .version(2)
            .node_key("b")
            .command("promote", &["/bin/echo", "a \"quoted\" word"], Some("5s"))
            .section("[commands.fence]", "argv = [\"/bin/true\"]")
            .to_toml();
        assert!(text.starts_with("node = \"b\"\n\n[vrrp]\n"), "{text}");
        assert_eq!(text.matches("version").count(), 1, "{text}");
        assert!(text.contains("version = 2\n"), "{text}");
        assert!(
            text.ends_with("timeout = \"5s\"\n\n[commands.fence]\nargv = [\"/bin/true\"]\n"),
            "{text}"
        );
        let c = crate::config::parse(&text, None).expect("valid");
        assert_eq!(c.local.name, "b");
        assert_eq!(c.commands.promote.argv, ["/bin/echo", "a \"quoted\" word"]);
        assert_eq!(c.commands.fence.argv, ["/bin/true"]);
        let vrrp = text.find("[vrrp]").unwrap();
        let vip = text.find("[[vip]]").unwrap();
        let nodes = text.find("[nodes.a]").unwrap();
        let db = text.find("[database]").unwrap();
        assert!(vrrp < vip && vip < nodes && nodes < db, "{text}");
    }

    #[test]
    fn sub_tables_join_their_parent() {
        let text = TestConfig::pair()
            .garp(2, "0s")
            .node("c", "10.77.0.13", 90)
            .to_toml();
        let at = |h: &str| {
            text.find(h)
                .unwrap_or_else(|| panic!("{h} missing:\n{text}"))
        };
        assert!(
            at("[vrrp]") < at("[vrrp.garp]") && at("[vrrp.garp]") < at("[[vip]]"),
            "{text}"
        );
        assert!(
            at("[nodes.b]") < at("[nodes.c]") && at("[nodes.c]") < at("[database]"),
            "{text}"
        );
        assert_eq!(
            TestConfig::pair().garp(2, "0s").parse("a").vrrp.garp.repeat,
            2
        );
    }

    #[test]
    fn nodes_are_replaced_where_they_stood() {
        let text = TestConfig::pair()
            .nodes(&[("n1", "10.77.0.11", 100), ("n2", "10.77.0.12", 98)])
            .without("database", "os_user")
            .to_toml();
        assert!(!text.contains("[nodes.a]"), "{text}");
        assert!(!text.contains("os_user"), "{text}");
        let n2 = text.find("[nodes.n2]").unwrap();
        assert!(n2 < text.find("[database]").unwrap(), "{text}");
        let c = crate::config::parse(&text, Some("n2")).expect("valid");
        assert_eq!(c.local.address, std::net::Ipv4Addr::new(10, 77, 0, 12));
    }
}
