//! From the validated configuration to the settings of the VRRP core and the GARP schedule.

use std::net::IpAddr;

use whpg_vrrp::{Auth, InstanceConfig, Interval, Transport, V3Checksum, Version};

use super::garp_schedule::GarpTiming;
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
    }
}

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
}
