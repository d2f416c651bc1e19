//! `[arbiter]`: the etcd cluster whose leader key decides who may hold the VIP.

use std::time::Duration;

use super::super::defaults;
use super::super::duration::format_duration;
use super::super::error::quote;
use super::super::model::{Arbiter, ArbiterTls, LeaseLoss, Secret};
use super::super::schema::RawArbiter;
use super::Checker;

impl Checker<'_> {
    pub(super) fn arbiter(
        &mut self,
        raw: &RawArbiter,
        vrid: u8,
        confirmation: Duration,
    ) -> Arbiter {
        match raw.kind.as_deref() {
            Some("etcd") => {}
            None => self.error(
                "arbiter.kind",
                None,
                "an [arbiter] section needs its kind",
                "add kind = \"etcd\" (the only kind), or remove [arbiter]",
            ),
            Some(other) => self.error(
                "arbiter.kind",
                Some(quote(other)),
                "unknown arbiter kind",
                "use kind = \"etcd\" (the only kind), or remove [arbiter]",
            ),
        }
        let endpoints = self.arbiter_endpoints(raw.endpoints.as_deref());
        let key_prefix = match raw.key_prefix.as_deref() {
            None => format!("/whpg-ha/vrid-{vrid}"),
            Some(p) if p.starts_with('/') && p.len() > 1 && !p.chars().any(char::is_control) => {
                p.trim_end_matches('/').to_string()
            }
            Some(p) => {
                self.error(
                    "arbiter.key_prefix",
                    Some(quote(p)),
                    "a key prefix starts with / and names something below the root",
                    format!("use e.g. \"/whpg-ha/vrid-{vrid}\", the same on both nodes"),
                );
                format!("/whpg-ha/vrid-{vrid}")
            }
        };
        let lease_ttl = self.duration(
            "arbiter.lease_ttl",
            raw.lease_ttl.as_ref(),
            defaults::ARBITER_LEASE_TTL,
            Duration::from_secs(2)..=Duration::from_secs(300),
            "the lease TTL",
        );
        let timeout = self.duration(
            "arbiter.timeout",
            raw.timeout.as_ref(),
            defaults::ARBITER_TIMEOUT,
            Duration::from_millis(10)..=Duration::from_secs(60),
            "the etcd request timeout",
        );
        let keepalive_interval = self.duration(
            "arbiter.keepalive_interval",
            raw.keepalive_interval.as_ref(),
            // Whole milliseconds, so the effective configuration writes it exactly.
            Duration::from_millis((lease_ttl / 3).as_millis() as u64),
            Duration::from_millis(10)..=Duration::from_secs(100),
            "the keep-alive interval",
        );
        {
            // The holder must get a refresh through before its lease runs out even when one
            // keep-alive is lost: two intervals plus a request's timeout inside the TTL.
            let needed = keepalive_interval * 2 + timeout;
            if needed > lease_ttl {
                self.error(
                    "arbiter.keepalive_interval",
                    raw.keepalive_interval.as_ref().map(|_| quote(&format_duration(keepalive_interval))),
                    format!(
                        "2 × keepalive_interval + timeout is {}, longer than lease_ttl {}: one lost \
                         keep-alive would let the lease run out",
                        format_duration(needed),
                        format_duration(lease_ttl)
                    ),
                    format!(
                        "lower keepalive_interval to at most {} or timeout, or raise lease_ttl",
                        format_duration(lease_ttl.saturating_sub(timeout) / 2)
                    ),
                );
            }
        }
        let on_lease_loss = match raw.on_lease_loss.as_deref() {
            None | Some("fence") => LeaseLoss::Fence,
            Some("remove-vip") => LeaseLoss::RemoveVip,
            Some(other) => {
                self.error(
                    "arbiter.on_lease_loss",
                    Some(quote(other)),
                    "unknown action",
                    "use \"fence\" (drop the VIP and stop the database) or \"remove-vip\" (drop the VIP only)",
                );
                LeaseLoss::Fence
            }
        };
        let user = raw.user.clone();
        let password = raw.password.as_ref().map(|p| Secret::new(p.clone()));
        match (&user, &password) {
            (Some(u), _) if u.is_empty() => self.error(
                "arbiter.user",
                Some(quote(u)),
                "an empty etcd user name",
                "set the etcd user, or remove user and password",
            ),
            (Some(_), None) => self.error(
                "arbiter.password",
                None,
                "arbiter.user is set without a password",
                "set password as well (etcd authenticates with both), or remove user",
            ),
            (None, Some(_)) => self.error(
                "arbiter.user",
                None,
                "arbiter.password is set without a user",
                "set user as well, or remove password",
            ),
            _ => {}
        }
        let tls = self.arbiter_tls(raw, &endpoints);
        let failsafe = raw.failsafe.unwrap_or(defaults::ARBITER_FAILSAFE);
        if failsafe && confirmation.is_zero() {
            self.warn(
                "arbiter.failsafe",
                "with failover.confirmation = \"0s\" the failsafe's end and the standby's \
                 promotion are separated only by the promotion time (etcd lost on the master's \
                 side, then a cut between the nodes)",
                "set failsafe = false, or a failover.confirmation of a few seconds (docs/design.md, known limits)",
            );
        }
        Arbiter {
            endpoints,
            key_prefix,
            lease_ttl,
            timeout,
            keepalive_interval,
            on_lease_loss,
            failsafe,
            user,
            password,
            tls,
        }
    }

    fn arbiter_endpoints(&mut self, raw: Option<&[String]>) -> Vec<String> {
        let Some(list) = raw.filter(|l| !l.is_empty()) else {
            self.error(
                "arbiter.endpoints",
                raw.map(|_| "[]".to_string()),
                "the arbiter needs the client URLs of the etcd members",
                "list every member, e.g. [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\", \"http://10.0.0.3:2379\"]",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let key = format!("arbiter.endpoints[{i}]");
            let rest = text
                .strip_prefix("http://")
                .or_else(|| text.strip_prefix("https://"));
            let port_ok = rest
                .and_then(|r| r.rsplit_once(':'))
                .is_some_and(|(host, port)| {
                    !host.is_empty()
                        && !host.contains('/')
                        && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
            if !port_ok {
                self.error(
                    &key,
                    Some(quote(text)),
                    "not an etcd client URL with a host and a port",
                    "write e.g. \"http://10.0.0.1:2379\" (or https:// with tls_ca_file)",
                );
            } else if out.contains(text) {
                self.error(
                    &key,
                    Some(quote(text)),
                    "listed twice",
                    "list each etcd member once",
                );
            } else {
                out.push(text.clone());
            }
        }
        let schemes: std::collections::BTreeSet<bool> =
            out.iter().map(|e| e.starts_with("https://")).collect();
        if schemes.len() > 1 {
            self.error(
                "arbiter.endpoints",
                None,
                "some endpoints use http:// and some https://",
                "use one scheme for every member",
            );
        }
        out
    }

    fn arbiter_tls(&mut self, raw: &RawArbiter, endpoints: &[String]) -> Option<ArbiterTls> {
        let https = endpoints.iter().any(|e| e.starts_with("https://"));
        let ca_file = raw
            .tls_ca_file
            .as_deref()
            .and_then(|p| self.abs_path("arbiter.tls_ca_file", p));
        let cert_file = raw
            .tls_cert_file
            .as_deref()
            .and_then(|p| self.abs_path("arbiter.tls_cert_file", p));
        let key_file = raw
            .tls_key_file
            .as_deref()
            .and_then(|p| self.abs_path("arbiter.tls_key_file", p));
        if cert_file.is_some() != key_file.is_some() {
            self.error(
                if cert_file.is_some() {
                    "arbiter.tls_key_file"
                } else {
                    "arbiter.tls_cert_file"
                },
                None,
                "a client certificate needs both tls_cert_file and tls_key_file",
                "set both, or neither",
            );
        }
        let any_tls =
            raw.tls_ca_file.is_some() || raw.tls_cert_file.is_some() || raw.tls_key_file.is_some();
        if https && raw.tls_ca_file.is_none() {
            self.error(
                "arbiter.tls_ca_file",
                None,
                "https:// endpoints need the CA that signed the etcd members' certificates",
                "set tls_ca_file to that CA's PEM file",
            );
        } else if any_tls && !https && !endpoints.is_empty() {
            self.error(
                "arbiter.endpoints",
                None,
                "TLS files are set but the endpoints use http://",
                "write the endpoints with https://, or remove the tls_* keys",
            );
        }
        Some(ArbiterTls {
            ca_file: ca_file?,
            cert_file,
            key_file,
        })
        .filter(|_| https)
    }
}
