//! SIGHUP: which changes of the configuration file the running daemon can apply safely.
//!
//! Only settings whose change cannot break the protocol mid-flight are applied (this node's
//! priority, the gratuitous ARP timing). Everything else is named in the log as needing a restart,
//! so an operator never believes a change took effect when it did not.

use crate::config::Config;

/// What a reload does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// New priority for this node, if it changed.
    pub priority: Option<u8>,
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
    restart(old.peers != new.peers, "nodes (peers)");
    restart(old.vips != new.vips, "vip");
    restart(old.database != new.database, "database");
    restart(old.health != new.health, "health");
    restart(old.failover != new.failover, "failover");
    restart(old.commands != new.commands, "commands");
    restart(old.witness != new.witness, "witness");
    restart(old.api != new.api, "api");
    restart(old.journal != new.journal, "journal");
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

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
        let p = plan(&old, &new);
        assert_eq!(p.priority, Some(120));
        assert!(p.garp);
        assert_eq!(p.needs_restart, vec!["vrrp.vrid", "vip"]);
    }
}
