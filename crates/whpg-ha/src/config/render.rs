//! The effective configuration as TOML: every default written out, this node named, secrets masked.
//!
//! The output is itself a valid configuration file that parses back to the same [`Config`] (with the
//! masked password in place of the real one).

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::duration::format_duration;
use super::error::quote;
use super::model::*;
use super::spans::segment;

fn dur(d: Duration) -> String {
    quote(&format_duration(d))
}

fn path(p: &Path) -> String {
    quote(&p.display().to_string())
}

fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", quoted.join(", "))
}

impl Config {
    /// Renders the effective configuration (see the module documentation).
    pub fn render_effective(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = self.write_to(&mut out);
        out
    }

    fn write_to(&self, o: &mut String) -> std::fmt::Result {
        writeln!(
            o,
            "# Effective whpg-ha configuration for node {} (defaults filled in, secrets masked).",
            quote(&self.local.name)
        )?;
        writeln!(o, "node = {}", quote(&self.local.name))?;

        let v = &self.vrrp;
        writeln!(o, "\n[vrrp]")?;
        writeln!(o, "interface = {}", quote(&v.interface))?;
        writeln!(o, "vrid = {}", v.vrid)?;
        writeln!(o, "version = {}", v.version.number())?;
        writeln!(o, "advert_interval = {}", dur(v.advert_interval))?;
        writeln!(o, "transport = {}", quote(v.transport.as_str()))?;
        if v.auth_pass.is_some() {
            // A secret key (see `error::is_secret_key`): never its value.
            writeln!(o, "auth_pass = {}", quote(Secret::MASK))?;
        }
        writeln!(o, "preempt = {}", v.preempt)?;
        writeln!(o, "preempt_delay = {}", dur(v.preempt_delay))?;
        writeln!(o, "v3_checksum = {}", quote(v.v3_checksum.as_str()))?;
        writeln!(o, "accept_either_checksum = {}", v.accept_either_checksum)?;
        let g = &v.garp;
        writeln!(o, "\n[vrrp.garp]")?;
        writeln!(o, "repeat = {}", g.repeat)?;
        writeln!(o, "interval = {}", dur(g.interval))?;
        writeln!(o, "master_delay = {}", dur(g.master_delay))?;
        writeln!(o, "refresh = {}", dur(g.refresh))?;
        writeln!(o, "on_lower_priority = {}", g.on_lower_priority)?;

        for vip in &self.vips {
            writeln!(o, "\n[[vip]]")?;
            writeln!(
                o,
                "address = {}",
                quote(&format!("{}/{}", vip.address, vip.prefix_len))
            )?;
            writeln!(o, "device = {}", quote(&vip.device))?;
            if let Some(label) = &vip.label {
                writeln!(o, "label = {}", quote(label))?;
            }
        }

        for node in self.nodes() {
            let marker = if node.name == self.local.name {
                "  # this node"
            } else {
                ""
            };
            writeln!(o, "\n[nodes.{}]{marker}", segment(&node.name))?;
            writeln!(o, "address = {}", quote(&node.address.to_string()))?;
            writeln!(o, "priority = {}", node.priority)?;
            if let Some(name) = &node.application_name {
                writeln!(o, "application_name = {}", quote(name))?;
            }
        }

        let d = &self.database;
        writeln!(o, "\n[database]")?;
        writeln!(o, "flavor = {}", quote(d.flavor.as_str()))?;
        match &d.endpoint {
            DbEndpoint::Host(host) => writeln!(o, "host = {}", quote(host))?,
            DbEndpoint::SocketDir(dir) => writeln!(o, "socket_dir = {}", path(dir))?,
        }
        writeln!(o, "port = {}", d.port)?;
        writeln!(o, "user = {}", quote(&d.user))?;
        writeln!(o, "dbname = {}", quote(&d.dbname))?;
        if let Some(p) = &d.password_file {
            writeln!(o, "password_file = {}", path(p))?;
        }
        writeln!(o, "data_directory = {}", path(&d.data_directory))?;
        writeln!(o, "os_user = {}", quote(&d.os_user))?;
        if let Some(p) = &d.greenplum_path {
            writeln!(o, "greenplum_path = {}", path(p))?;
        }
        if let Some(p) = &d.bin_dir {
            writeln!(o, "bin_dir = {}", path(p))?;
        }
        writeln!(o, "monitor = {}", d.monitor)?;

        let h = &self.health;
        writeln!(o, "\n[health]")?;
        writeln!(o, "interval = {}", dur(h.interval))?;
        writeln!(o, "timeout = {}", dur(h.timeout))?;
        writeln!(o, "fall = {}", h.fall)?;
        writeln!(o, "rise = {}", h.rise)?;
        writeln!(o, "held_session = {}", h.held_session)?;
        writeln!(o, "connect_interval = {}", dur(h.connect_interval))?;

        let f = &self.failover;
        writeln!(o, "\n[failover]")?;
        writeln!(
            o,
            "triggers = {}",
            list(f.triggers.iter().map(|t| t.as_str()))
        )?;
        writeln!(o, "confirmation = {}", dur(f.confirmation))?;
        writeln!(o, "wal_freshness = {}", dur(f.wal_freshness))?;
        writeln!(o, "fence_when_isolated = {}", f.fence_when_isolated)?;
        writeln!(o, "maximum_lag = {}", f.maximum_lag)?;
        writeln!(o, "maximum_lag_time = {}", dur(f.maximum_lag_time))?;

        let r = &self.replication;
        writeln!(o, "\n[replication]")?;
        writeln!(o, "mode = {}", quote(r.mode.as_str()))?;
        writeln!(o, "sync_timeout = {}", dur(r.sync_timeout))?;

        let c = &self.commands;
        for (name, spec) in [
            ("promote", &c.promote),
            ("fence", &c.fence),
            ("stop", &c.stop),
            ("rejoin", &c.rejoin),
            ("start", &c.start),
        ] {
            writeln!(o, "\n[commands.{name}]")?;
            writeln!(o, "argv = {}", list(&spec.argv))?;
            writeln!(o, "timeout = {}", dur(spec.timeout))?;
        }

        let w = &self.witness;
        writeln!(o, "\n[witness]")?;
        writeln!(o, "hosts = {}", list(&w.hosts))?;
        writeln!(o, "quorum = {}", w.quorum)?;
        writeln!(o, "interval = {}", dur(w.interval))?;
        writeln!(o, "timeout = {}", dur(w.timeout))?;

        writeln!(o, "\n[api]")?;
        writeln!(o, "listen = {}", list(&self.api.listen))?;
        if let Some(p) = &self.api.token_file {
            writeln!(o, "token_file = {}", path(p))?;
        }
        if let Some(tls) = &self.api.tls {
            writeln!(o, "tls_cert_file = {}", path(&tls.cert_file))?;
            writeln!(o, "tls_key_file = {}", path(&tls.key_file))?;
            writeln!(o, "tls_ca_file = {}", path(&tls.ca_file))?;
            if let Some(p) = &tls.client_ca_file {
                writeln!(o, "tls_client_ca_file = {}", path(p))?;
            }
        }
        writeln!(o, "max_connections = {}", self.api.max_connections)?;
        writeln!(o, "header_timeout = {}", dur(self.api.header_timeout))?;
        writeln!(o, "idle_timeout = {}", dur(self.api.idle_timeout))?;

        writeln!(o, "\n[journal]")?;
        writeln!(o, "path = {}", path(&self.journal.path))?;

        if let Some(a) = &self.arbiter {
            writeln!(o, "\n[arbiter]")?;
            writeln!(o, "kind = \"etcd\"")?;
            writeln!(o, "endpoints = {}", list(&a.endpoints))?;
            writeln!(o, "key_prefix = {}", quote(&a.key_prefix))?;
            writeln!(o, "lease_ttl = {}", dur(a.lease_ttl))?;
            writeln!(o, "timeout = {}", dur(a.timeout))?;
            writeln!(o, "keepalive_interval = {}", dur(a.keepalive_interval))?;
            writeln!(o, "on_lease_loss = {}", quote(a.on_lease_loss.as_str()))?;
            writeln!(o, "failsafe = {}", a.failsafe)?;
            if let Some(user) = &a.user {
                writeln!(o, "user = {}", quote(user))?;
            }
            if a.password.is_some() {
                // A secret key (see `error::is_secret_key`): never its value.
                writeln!(o, "password = {}", quote(Secret::MASK))?;
            }
            if let Some(tls) = &a.tls {
                writeln!(o, "tls_ca_file = {}", path(&tls.ca_file))?;
                if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                    writeln!(o, "tls_cert_file = {}", path(cert))?;
                    writeln!(o, "tls_key_file = {}", path(key))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::{is_secret_key, quote, SECRET_KEY_NAMES};
    use super::super::model::Secret;

    /// Every `key = value` line of the rendered configuration whose key is a secret shows the mask:
    /// rendering and error messages judge secrets by the same list.
    #[test]
    fn every_secret_key_of_the_effective_configuration_is_masked() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/whpg-ha.toml"
        ))
        .expect("the example");
        let rendered = super::super::parse(&text, Some("cdw"))
            .expect("the example is valid")
            .render_effective();
        assert!(
            !text.contains(Secret::MASK),
            "the example itself must hold a real password"
        );
        let mut table = String::new();
        let mut secrets = Vec::new();
        for line in rendered.lines() {
            if let Some(header) = line.strip_prefix('[') {
                table = header
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or("")
                    .to_string();
                continue;
            }
            let Some((key, value)) = line.split_once(" = ") else {
                continue;
            };
            let path = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            if is_secret_key(&path) {
                assert_eq!(value, quote(Secret::MASK), "{path} shown: {line}");
                secrets.push(path);
            }
        }
        assert_eq!(secrets, ["vrrp.auth_pass"]);
        assert!(SECRET_KEY_NAMES.contains(&"auth_pass"));
    }
}
