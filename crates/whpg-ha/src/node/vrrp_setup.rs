//! From the validated configuration to the settings of the VRRP core and the GARP schedule.

use std::net::IpAddr;

use whpg_vrrp::instance::{PRIORITY_OWNER, PRIORITY_RESIGN};
use whpg_vrrp::{Auth, InstanceConfig, Interval, Transport, V3Checksum, Version};

use super::garp_schedule::GarpTiming;
use super::policy_setup::{standby_bonus, PRIMARY_BONUS};
use crate::config::{self, Config};

/// The VRRP instance this node runs. Validation has already checked every range, so the
/// conversions below cannot fail on a loaded [`Config`].
pub fn instance_config(config: &Config) -> InstanceConfig {
    let vrrp = &config.vrrp;
    InstanceConfig {
        version: match vrrp.version {
            config::VrrpVersion::V2 => Version::V2,
            config::VrrpVersion::V3 => Version::V3,
        },
        vrid: vrrp.vrid,
        priority: config.local.priority,
        advert_interval: Interval::from_duration(vrrp.advert_interval)
            .unwrap_or(Interval::from_secs(1)),
        preempt: vrrp.preempt,
        preempt_delay: vrrp.preempt_delay,
        primary_address: IpAddr::V4(config.local.address),
        virtual_addresses: config.vips.iter().map(|v| IpAddr::V4(v.address)).collect(),
        auth: vrrp.auth_data().map_or(Auth::None, Auth::Password),
        transport: match vrrp.transport {
            config::Transport::Multicast => Transport::Multicast,
            config::Transport::Unicast => Transport::Unicast {
                peers: config.peers.iter().map(|p| IpAddr::V4(p.address)).collect(),
            },
        },
        v3_checksum: match vrrp.v3_checksum {
            config::V3Checksum::PseudoHeader => V3Checksum::PseudoHeader,
            config::V3Checksum::VrrpOnly => V3Checksum::VrrpOnly,
        },
        accept_either_checksum: vrrp.accept_either_checksum,
        // keepalived always answers a lower-priority advert; whether GARPs go with the answer
        // is `garp.on_lower_priority`, applied by the daemon.
        answer_lower_priority: true,
        accepted_priorities: accepted_priorities(config),
    }
}

/// The priorities the peers can advertise, or `None` (any) without the database monitor.
///
/// With `database.monitor = true` the peer is a whpg-ha whose policy (`Policy::priority`) sends
/// only: 0 when it resigns or stops, 1 once it gave up promoting, its configured priority `p`,
/// `max(min(p + standby_bonus, 253), p)` as a healthy standby, `min(p + PRIMARY_BONUS, 254)` as
/// a healthy primary and 254 as the newest primary; with `p = 255` (the address owner) the
/// policy sends 255 whatever the database, so the set is only {0, 1, 255}. Anything else from the peer's address is
/// a forgery (or a peer whose file differs from ours) and is dropped.
///
/// With `database.monitor = false` the peer may be keepalived, whose `track_script` weights move
/// its priority freely, so every priority is accepted, as keepalived itself does.
///
/// Validation allows more than one peer (with a warning); the set is then the union of what each
/// can send, since an advert's source address, the only thing that tells peers apart, is spoofable
/// on the link anyway.
pub fn accepted_priorities(config: &Config) -> Option<Vec<u8>> {
    if !config.database.monitor {
        return None;
    }
    let mut set: Vec<u8> = config
        .peers
        .iter()
        .flat_map(|peer| peer_priorities(peer.priority, standby_bonus(config)))
        .collect();
    set.sort_unstable();
    set.dedup();
    Some(set)
}

/// What a whpg-ha node configured with priority `p` can advertise.
fn peer_priorities(p: u8, standby_bonus: u8) -> Vec<u8> {
    if p == PRIORITY_OWNER {
        return vec![PRIORITY_RESIGN, GAVE_UP_PRIORITY, PRIORITY_OWNER];
    }
    vec![
        PRIORITY_RESIGN,
        GAVE_UP_PRIORITY,
        p,
        p.saturating_add(standby_bonus)
            .min(NEWEST_PRIMARY_PRIORITY - 1)
            .max(p),
        p.saturating_add(PRIMARY_BONUS).min(NEWEST_PRIMARY_PRIORITY),
        NEWEST_PRIMARY_PRIORITY,
    ]
}

/// What the policy advertises once it gave up promoting (`Policy::priority`).
const GAVE_UP_PRIORITY: u8 = 1;
/// What the policy advertises as the primary of the newest timeline (`Policy::priority`).
const NEWEST_PRIMARY_PRIORITY: u8 = 254;

pub fn garp_timing(config: &Config) -> GarpTiming {
    let garp = &config.vrrp.garp;
    GarpTiming {
        repeat: garp.repeat,
        interval: garp.interval,
        master_delay: garp.master_delay,
        refresh: garp.refresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example_maps_to_a_v2_unicast_pass_instance() {
        let text = include_str!("../../../../examples/whpg-ha.toml");
        let config = config::parse(text, Some("scdw")).expect("example parses");
        let instance = instance_config(&config);
        assert_eq!(instance.version, Version::V2);
        assert_eq!(instance.vrid, 51);
        assert_eq!(instance.advert_interval, Interval::from_secs(1));
        assert!(matches!(instance.auth, Auth::Password(_)));
        assert_eq!(instance.primary_address, IpAddr::V4(config.local.address));
        match instance.transport {
            Transport::Unicast { peers } => {
                assert_eq!(peers, vec![IpAddr::V4(config.peers[0].address)]);
            }
            Transport::Multicast => panic!("the seed uses unicast"),
        }
        assert_eq!(instance.priority, config.local.priority);
    }

    fn example(node: &str) -> Config {
        let text = include_str!("../../../../examples/whpg-ha.toml");
        config::parse(text, Some(node)).expect("example parses")
    }

    #[test]
    fn with_the_monitor_each_node_accepts_only_what_its_peer_can_send() {
        // cdw is at 100, scdw at 98; the primary bonus is 100, the standby bonus 99 - 2.
        let cdw = example("cdw");
        assert!(cdw.database.monitor);
        assert_eq!(standby_bonus(&cdw), 97);
        assert_eq!(
            instance_config(&cdw).accepted_priorities,
            Some(vec![0, 1, 98, 195, 198, 254])
        );
        assert_eq!(
            accepted_priorities(&example("scdw")),
            Some(vec![0, 1, 100, 197, 200, 254])
        );
    }

    #[test]
    fn the_set_follows_the_peers_priority_at_the_edges() {
        let mut config = example("cdw");
        for (peer, expected) in [
            // A gap of 99 or more leaves no room for a standby bonus.
            (1, vec![0, 1, 101, 254]),
            (154, vec![0, 1, 154, 199, 254]),
            (155, vec![0, 1, 155, 199, 254]),
            (200, vec![0, 1, 200, 254]),
            (254, vec![0, 1, 254]),
            (255, vec![0, 1, 255]),
        ] {
            config.peers[0].priority = peer;
            assert_eq!(
                accepted_priorities(&config),
                Some(expected),
                "peer at {peer}"
            );
        }
    }

    #[test]
    fn several_peers_accept_the_union_and_without_the_monitor_any_priority() {
        let mut config = example("cdw");
        let mut third = config.peers[0].clone();
        third.priority = 50;
        config.peers.push(third);
        assert_eq!(
            accepted_priorities(&config),
            Some(vec![0, 1, 50, 98, 99, 147, 150, 198, 254])
        );
        // A keepalived peer's track_script weights move its priority freely.
        config.database.monitor = false;
        assert_eq!(accepted_priorities(&config), None);
        assert_eq!(instance_config(&config).accepted_priorities, None);
    }
}
