//! An etcd cluster inside lab hosts, one member per host, for the arbiter's tests and benchmarks.
//!
//! Members keep their data under the lab directory (removed with the lab) and listen on their
//! host's address and on loopback. They are killed when the [`EtcdCluster`] (or the lab) is
//! dropped, also when the caller fails.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{wait_until, Host, Process};

/// Client and peer ports of every member (each in its own namespace).
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
/// Bound on one `etcdctl` call.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(5);

/// The client URL of the member on `host`.
pub fn client_url(host: &Host) -> String {
    format!("http://{}:{CLIENT_PORT}", host.address())
}

/// A running etcd cluster.
pub struct EtcdCluster {
    /// In the order they were given to [`EtcdCluster::start`].
    members: Vec<Process>,
    endpoints: String,
}

impl EtcdCluster {
    /// Starts one member per `(name, host)` together, with data under `dir`, and waits (within
    /// `limit`) until `checker` sees every member healthy with `etcdctl endpoint health`.
    ///
    /// Timers are short for a lab: heartbeat 100 ms, election 1 s. Pre-vote is on, so a member
    /// cut off from the leader does not depose it with ever higher terms when it comes back (the
    /// default only from etcd 3.5 on).
    pub fn start(
        dir: &Path,
        members: &[(&str, &Host)],
        checker: &Host,
        limit: Duration,
    ) -> Result<EtcdCluster> {
        let initial = members
            .iter()
            .map(|(name, host)| format!("{name}=http://{}:{PEER_PORT}", host.address()))
            .collect::<Vec<_>>()
            .join(",");
        let endpoints = members
            .iter()
            .map(|(_, host)| client_url(host))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            endpoints,
        };
        for (name, host) in members {
            let ip = host.address();
            let data = dir.join(format!("etcd-{name}"));
            let argv = [
                "etcd".to_string(),
                "--name".into(),
                name.to_string(),
                "--data-dir".into(),
                data.display().to_string(),
                "--listen-peer-urls".into(),
                format!("http://{ip}:{PEER_PORT}"),
                "--initial-advertise-peer-urls".into(),
                format!("http://{ip}:{PEER_PORT}"),
                "--listen-client-urls".into(),
                format!("http://{ip}:{CLIENT_PORT},http://127.0.0.1:{CLIENT_PORT}"),
                "--advertise-client-urls".into(),
                format!("http://{ip}:{CLIENT_PORT}"),
                "--initial-cluster".into(),
                initial.clone(),
                "--initial-cluster-state".into(),
                "new".into(),
                "--heartbeat-interval".into(),
                "100".into(),
                "--election-timeout".into(),
                "1000".into(),
                "--pre-vote".into(),
            ];
            // A member that cannot start leaves those already started to the drop of
            // `cluster`, which kills them.
            cluster.members.push(
                host.spawn(&argv, &format!("etcd-{name}"))
                    .with_context(|| format!("starting etcd member {name} on {}", host.name()))?,
            );
        }
        let healthy = wait_until(
            limit,
            Duration::from_millis(200),
            &format!(
                "the etcd cluster to answer a health check of all {} members",
                members.len()
            ),
            || {
                checker
                    .exec_timeout(
                        &[
                            "etcdctl",
                            "--endpoints",
                            &cluster.endpoints,
                            "endpoint",
                            "health",
                        ],
                        ETCDCTL_TIMEOUT,
                    )
                    .is_ok_and(|o| o.success())
            },
        );
        if let Err(e) = healthy {
            let exited: Vec<String> = cluster
                .members
                .iter()
                .filter(|m| !m.is_running())
                .map(|m| format!("{} exited: {}", m.label(), tail(&m.log_contents())))
                .collect();
            bail!("{e:#}; {}", exited.join("; "));
        }
        Ok(cluster)
    }

    /// The members' client URLs, comma-separated (as `etcdctl --endpoints` takes them).
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The members' processes, in the order they were started.
    pub fn members(&self) -> &[Process] {
        &self.members
    }

    /// `kill -9` of the member at `index`, waiting (bounded) for it to exit.
    pub fn kill9(&self, index: usize) -> Result<()> {
        let member = self
            .members
            .get(index)
            .with_context(|| format!("no etcd member {index}"))?;
        member.kill9();
        member
            .wait_exit(Duration::from_secs(5))
            .with_context(|| format!("etcd member {index} after kill -9"))?;
        Ok(())
    }

    /// `kill -9` of every member, waiting (bounded) for each to exit.
    pub fn kill9_all(&self) -> Result<()> {
        for member in &self.members {
            member.kill9();
        }
        for (i, member) in self.members.iter().enumerate() {
            member
                .wait_exit(Duration::from_secs(5))
                .with_context(|| format!("etcd member {i} after kill -9"))?;
        }
        Ok(())
    }

    /// The members still running.
    pub fn running(&self) -> usize {
        self.members.iter().filter(|m| m.is_running()).count()
    }
}

/// The last lines of a member's log, for an error that says why it exited.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
