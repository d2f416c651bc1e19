//! Random event sequences against one instance: it never panics, and what it tells the caller to
//! do with the addresses always matches its state.

mod sim;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sim::{addr, v3_config, VIP};
use whpg_vrrp::packet::{encode, MULTICAST_V4};
use whpg_vrrp::receive::PacketMeta;
use whpg_vrrp::{
    Action, Advert, Auth, Event, FaultSource, Instance, Interval, State, V3Checksum, Version,
};

#[derive(Debug, Clone)]
enum Input {
    Startup,
    Shutdown,
    Wait(u16),
    Advert { from: u8, priority: u8 },
    Garbage(Vec<u8>),
    SetPriority(u8),
    Resign,
    Fault(u8, bool),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Startup),
        Just(Input::Shutdown),
        (0u16..2000).prop_map(Input::Wait),
        (10u8..14, any::<u8>()).prop_map(|(from, priority)| Input::Advert { from, priority }),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Input::Garbage),
        any::<u8>().prop_map(Input::SetPriority),
        Just(Input::Resign),
        (0u8..4, any::<bool>()).prop_map(|(s, a)| Input::Fault(s, a)),
    ]
}

fn packet(from: u8, priority: u8) -> (PacketMeta, Vec<u8>) {
    let advert = Advert {
        version: Version::V3,
        vrid: 51,
        priority,
        interval: Interval::from_centis(10),
        auth: Auth::None,
        addresses: vec![VIP],
    };
    let dst = IpAddr::V4(MULTICAST_V4);
    let payload = encode(&advert, addr(from), dst, V3Checksum::PseudoHeader).unwrap();
    (
        PacketMeta {
            src: addr(from),
            dst,
            ttl: 255,
        },
        payload,
    )
}

proptest! {
    #[test]
    fn addresses_follow_the_state_whatever_happens(inputs in proptest::collection::vec(input(), 1..80)) {
        let mut instance = Instance::new(v3_config(12, 100, 10));
        let mut now = Instant::now();
        let mut holds = false;
        let mut timer: Option<Instant> = None;
        for input in inputs {
            let actions = match input {
                Input::Startup => instance.handle(Event::Startup, now),
                Input::Shutdown => instance.handle(Event::Shutdown, now),
                Input::Wait(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    instance.handle(Event::Timeout, now)
                }
                Input::Advert { from, priority } => {
                    let (meta, payload) = packet(from, priority);
                    instance.handle(Event::Packet { meta, payload: &payload }, now)
                }
                Input::Garbage(bytes) => instance.handle(Event::Ipv4Datagram(&bytes), now),
                Input::SetPriority(p) => instance.handle(Event::SetPriority(p), now),
                Input::Resign => instance.handle(Event::Resign, now),
                Input::Fault(s, active) => {
                    let source = [FaultSource::Interface, FaultSource::Health, FaultSource::Isolation, FaultSource::Admin][usize::from(s)];
                    instance.handle(Event::SetFault { source, active }, now)
                }
            };
            for action in &actions {
                match action {
                    Action::TakeAddresses => holds = true,
                    Action::ReleaseAddresses => holds = false,
                    Action::ArmTimer(at) => timer = Some(*at),
                    Action::DisarmTimer => timer = None,
                    Action::Send(t) => prop_assert_eq!(t.src, addr(12)),
                    _ => {}
                }
            }
            prop_assert_eq!(holds, instance.state() == State::Master);
            prop_assert_eq!(timer, instance.poll_timeout());
            prop_assert_eq!(timer.is_some(), matches!(instance.state(), State::Backup | State::Master));
            if let Some(at) = timer {
                // A timer is never set in the past, so a caller's sleep is never skipped.
                prop_assert!(at > now || instance.state() == State::Master && at >= now);
            }
            prop_assert!(instance.priority() != 0);
        }
    }
}
