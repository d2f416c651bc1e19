//! The lab's etcd cluster, for the arbiter contender and the etcd faults: three members, one in
//! n1's namespace, one in n2's and one in the witness host gw's. A partition between n1 and n2
//! leaves each side reaching gw's member, and n1 cut off from everything leaves n2 and gw with
//! the quorum.
//!
//! The members keep their data in the trial's lab directory (removed with the lab) and are killed
//! when the [`Cluster`] is dropped, also when the trial fails.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use whpg_lab::{wait_until, Host, Process};

use crate::lab::Topology;

/// Client and peer ports of every member (each in its own namespace).
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// The arbiter's key prefix in the lab; the leader key is `<prefix>/leader`.
pub const KEY_PREFIX: &str = "/whpg-ha/bench";
/// Bound on the three members electing a leader and answering a health check.
const QUORUM_LIMIT: Duration = Duration::from_secs(20);
/// Bound on one `etcdctl` call.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(5);

/// The members' names and hosts: n1's, n2's and gw's.
pub fn members_of(topo: &Topology) -> [(&'static str, &Host); 3] {
    [("e1", &topo.n1), ("e2", &topo.n2), ("e3", &topo.gw)]
}

/// The members' client URLs, as the arbiter's `endpoints` lists them.
pub fn endpoints(topo: &Topology) -> Vec<String> {
    members_of(topo)
        .iter()
        .map(|(_, host)| format!("http://{}:{CLIENT_PORT}", host.address()))
        .collect()
}

/// A running 3-member etcd cluster.
pub struct Cluster {
    /// In the order of [`members_of`]: n1's, n2's, gw's.
    members: Vec<Process>,
    endpoints: String,
}

impl Cluster {
    /// Starts the three members together and waits (bounded) until the cluster answers a health
    /// check of every member from gw.
    pub fn start(topo: &Topology) -> Result<Cluster> {
        let hosts = members_of(topo);
        let initial = hosts
            .iter()
            .map(|(name, host)| format!("{name}=http://{}:{PEER_PORT}", host.address()))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (name, host) in hosts {
            let ip = host.address();
            let data = topo.lab.dir().join(format!("etcd-{name}"));
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
                // A member cut off from the leader (n2's in a partition) must not depose it with
                // ever higher terms when it comes back.
                "--pre-vote".into(),
            ];
            // A member that cannot start leaves the ones already started to the drop of
            // `members`, which kills them.
            members.push(
                host.spawn(&argv, &format!("etcd-{name}"))
                    .with_context(|| format!("starting etcd member {name} on {}", host.name()))?,
            );
        }
        let cluster = Cluster {
            members,
            endpoints: endpoints(topo).join(","),
        };
        let healthy = wait_until(
            QUORUM_LIMIT,
            Duration::from_millis(200),
            "the etcd cluster to answer a health check of all three members",
            || {
                topo.gw
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

    /// `kill -9` of the member at `index` (0: n1's, 1: n2's, 2: gw's).
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

    /// `kill -9` of every member.
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

    /// The members still running, for the trial's notes.
    pub fn running(&self) -> usize {
        self.members.iter().filter(|m| m.is_running()).count()
    }

    /// Waits (within `limit`) until the leader key `<prefix>/leader` names `node`
    /// ([`key_holder`]).
    pub fn wait_key_held_by(&self, topo: &Topology, node: &str, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let mut last = None;
        let held = wait_until(
            limit,
            Duration::from_millis(100),
            &format!("the arbiter's leader key held by {node}"),
            || {
                last = key_holder(topo);
                last.as_deref() == Some(node)
            },
        );
        held.with_context(|| {
            format!(
                "leader key {KEY_PREFIX}/leader holds {last:?} after {:.1} s",
                start.elapsed().as_secs_f64()
            )
        })?;
        Ok(())
    }
}

/// The leader key's value (the holding node's name), read linearizably from gw through any
/// member that answers (gw's own may be the one killed); `None` when the key is absent or etcd
/// does not answer.
pub fn key_holder(topo: &Topology) -> Option<String> {
    let key = format!("{KEY_PREFIX}/leader");
    let url = endpoints(topo).join(",");
    let out = topo
        .gw
        .exec_timeout(
            &[
                "etcdctl",
                "--endpoints",
                &url,
                "get",
                "--print-value-only",
                &key,
            ],
            ETCDCTL_TIMEOUT,
        )
        .ok()?;
    let text = out.stdout.trim();
    (out.success() && !text.is_empty()).then(|| text.to_string())
}

/// The last lines of a log, for an error message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}
