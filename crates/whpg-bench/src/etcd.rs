//! The lab's etcd cluster, for the arbiter contender and the etcd faults: three members, one in
//! n1's namespace, one in n2's and one in the witness host gw's. A partition between n1 and n2
//! leaves each side reaching gw's member, and n1 cut off from everything leaves n2 and gw with
//! the quorum.
//!
//! The members keep their data in the trial's lab directory (removed with the lab) and are killed
//! when the [`Cluster`] is dropped, also when the trial fails.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use whpg_lab::etcd::{client_url, EtcdCluster, ETCDCTL_TIMEOUT};
use whpg_lab::{wait_until, Host};

use crate::lab::Topology;

/// The arbiter's key prefix in the lab; the leader key is `<prefix>/leader`.
pub const KEY_PREFIX: &str = "/whpg-ha/bench";
/// Bound on the three members electing a leader and answering a health check.
const QUORUM_LIMIT: Duration = Duration::from_secs(20);

/// The members' names and hosts: n1's, n2's and gw's.
pub fn members_of(topo: &Topology) -> [(&'static str, &Host); 3] {
    [("e1", &topo.n1), ("e2", &topo.n2), ("e3", &topo.gw)]
}

/// The members' client URLs, as the arbiter's `endpoints` lists them.
pub fn endpoints(topo: &Topology) -> Vec<String> {
    members_of(topo)
        .iter()
        .map(|(_, host)| client_url(host))
        .collect()
}

/// A running 3-member etcd cluster.
pub struct Cluster {
    /// Members in the order of [`members_of`]: n1's, n2's, gw's.
    inner: EtcdCluster,
}

impl Cluster {
    /// Starts the three members together and waits (bounded) until the cluster answers a health
    /// check of every member from gw.
    pub fn start(topo: &Topology) -> Result<Cluster> {
        let inner = EtcdCluster::start(topo.lab.dir(), &members_of(topo), &topo.gw, QUORUM_LIMIT)?;
        Ok(Cluster { inner })
    }

    /// `kill -9` of the member at `index` (0: n1's, 1: n2's, 2: gw's).
    pub fn kill9(&self, index: usize) -> Result<()> {
        self.inner.kill9(index)
    }

    /// `kill -9` of every member.
    pub fn kill9_all(&self) -> Result<()> {
        self.inner.kill9_all()
    }

    /// The members still running, for the trial's notes.
    pub fn running(&self) -> usize {
        self.inner.running()
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
