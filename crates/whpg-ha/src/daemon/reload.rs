//! SIGHUP: which changes of the configuration file the running daemon can apply safely.
//!
//! Only settings whose change cannot break the protocol mid-flight are applied (this node's
//! priority, the peers' priorities, i.e. which priorities their adverts may carry, the
//! gratuitous ARP timing). Everything else is named in the log as needing a restart,
//! so an operator never believes a change took effect when it did not.

use crate::config::{self, Config};
use crate::node::vrrp_setup;

/// What a reload does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// New priority for this node, if it changed.
    pub priority: Option<u8>,
    /// The priorities the peers' adverts may carry, if a peer's priority changed the set
    /// (`None` inside: any). Without it, a reload of both nodes would leave each dropping the
    /// other's new priority and taking over.
    pub accepted_priorities: Option<Option<Vec<u8>>>,
    /// Whether `[vrrp.garp]` changed.
    pub garp: bool,
    /// Keys whose new values only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

pub fn plan(old: &Config, new: &Config) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    if old.local.priority != new.local.priority {
        plan.priority = Some(new.local.priority);
    }
    let mut with_new_peer_priorities = old.clone();
    keep_peer_priorities(&mut with_new_peer_priorities, new);
    let accepted = vrrp_setup::accepted_priorities(&with_new_peer_priorities);
    if accepted != vrrp_setup::accepted_priorities(old) {
        plan.accepted_priorities = Some(accepted);
    }
    plan.garp = old.vrrp.garp != new.vrrp.garp;

    let mut restart = |changed: bool, key: &'static str| {
        if changed {
            plan.needs_restart.push(key);
        }
    };
    let (o, n) = (&old.vrrp, &new.vrrp);
    restart(o.interface != n.interface, "vrrp.interface");
    restart(o.vrid != n.vrid, "vrrp.vrid");
    restart(o.version != n.version, "vrrp.version");
    restart(
        o.advert_interval != n.advert_interval,
        "vrrp.advert_interval",
    );
    restart(o.transport != n.transport, "vrrp.transport");
    restart(o.auth_pass != n.auth_pass, "vrrp.auth_pass");
    restart(o.preempt != n.preempt, "vrrp.preempt");
    restart(o.preempt_delay != n.preempt_delay, "vrrp.preempt_delay");
    restart(
        o.v3_checksum != n.v3_checksum || o.accept_either_checksum != n.accept_either_checksum,
        "vrrp.v3_checksum",
    );
    restart(old.local.name != new.local.name, "node");
    restart(
        old.local.address != new.local.address,
        "nodes.<this node>.address",
    );
    restart(
        !same_peers_but_priority(&old.peers, &new.peers),
        "nodes (peers)",
    );
    restart(old.vips != new.vips, "vip");
    restart(old.database != new.database, "database");
    restart(old.health != new.health, "health");
    restart(old.failover != new.failover, "failover");
    restart(old.replication != new.replication, "replication");
    restart(old.commands != new.commands, "commands");
    restart(old.witness != new.witness, "witness");
    restart(old.api != new.api, "api");
    restart(old.journal != new.journal, "journal");
    restart(old.arbiter != new.arbiter, "arbiter");
    plan
}

/// Take the new file's priority for every running peer that kept its name and address (the
/// rest of a peer's change needs a restart).
pub fn keep_peer_priorities(running: &mut Config, new: &Config) {
    for peer in &mut running.peers {
        if let Some(n) = new
            .peers
            .iter()
            .find(|n| n.name == peer.name && n.address == peer.address)
        {
            peer.priority = n.priority;
        }
    }
}

fn same_peers_but_priority(old: &[config::Node], new: &[config::Node]) -> bool {
    old.len() == new.len()
        && old
            .iter()
            .zip(new)
            .all(|(o, n)| o.name == n.name && o.address == n.address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        include_str!("../../../../examples/whpg-ha.toml").to_string()
    }

    #[test]
    fn priority_and_garp_apply_the_rest_needs_a_restart() {
        let old = config::parse(&example(), Some("cdw")).unwrap();
        let same = plan(&old, &old);
        assert_eq!(same, ReloadPlan::default());

        let mut new = old.clone();
        new.local.priority = 120;
        new.vrrp.garp.repeat += 1;
        new.vrrp.vrid = 52;
        new.vips.clear();
        new.replication.mode = config::ReplicationMode::Sync;
        let p = plan(&old, &new);
        assert_eq!(p.priority, Some(120));
        assert!(p.garp);
        assert_eq!(p.needs_restart, vec!["vrrp.vrid", "vip", "replication"]);
    }

    #[test]
    fn an_arbiter_change_needs_a_restart() {
        let old = config::parse(&example(), Some("cdw")).unwrap();
        let text = format!(
            "{}\n[arbiter]\nkind = \"etcd\"\nendpoints = [\"http://192.168.10.1:2379\"]\n",
            example()
        );
        let new = config::parse(&text, Some("cdw")).unwrap();
        assert_eq!(plan(&old, &new).needs_restart, vec!["arbiter"]);
    }

    #[test]
    fn a_peer_priority_change_replaces_the_accepted_set_without_a_restart() {
        let old = config::parse(&example(), Some("cdw")).unwrap();
        assert_eq!(old.peers[0].priority, 98);
        let mut new = old.clone();
        new.peers[0].priority = 120;
        let p = plan(&old, &new);
        // The standby bonus follows the gap too: 99 - 20.
        assert_eq!(
            p.accepted_priorities,
            Some(Some(vec![0, 1, 120, 199, 220, 254]))
        );
        assert!(p.needs_restart.is_empty(), "{:?}", p.needs_restart);
        assert_eq!(p.priority, None);

        let mut applied = old.clone();
        keep_peer_priorities(&mut applied, &new);
        assert_eq!(applied, new);
        assert_eq!(plan(&applied, &new), ReloadPlan::default());

        // A peer renamed or readdressed still needs a restart; its priority follows only when
        // the same peer kept it.
        let mut moved = new.clone();
        moved.peers[0].address = "10.77.0.99".parse().unwrap();
        moved.peers[0].priority = 130;
        let p = plan(&old, &moved);
        assert_eq!(p.needs_restart, vec!["nodes (peers)"]);
        assert_eq!(p.accepted_priorities, None);

        // Without the monitor the set stays `None` (any) whatever the peer's priority; turning
        // the monitor off is a `database` change and needs a restart, so the set stays too.
        let mut plain = old.clone();
        plain.database.monitor = false;
        let mut plain_new = plain.clone();
        plain_new.peers[0].priority = 120;
        assert_eq!(plan(&plain, &plain_new).accepted_priorities, None);
        let p = plan(&old, &plain);
        assert_eq!(p.accepted_priorities, None);
        assert_eq!(p.needs_restart, vec!["database"]);
    }
}
