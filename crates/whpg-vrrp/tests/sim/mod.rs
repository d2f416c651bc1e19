//! A simulated LAN and clock for driving several VRRP instances deterministically.
//!
//! Every packet goes through the real encoder and decoder. Delivery takes a fixed latency; links
//! can be cut per pair and lose packets at a seeded rate, so every run of a test is identical.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use whpg_vrrp::packet::MULTICAST_V4;
use whpg_vrrp::receive::PacketMeta;
use whpg_vrrp::{
    Action, Auth, Event, Instance, InstanceConfig, Interval, State, TransitionReason, Transport,
    V3Checksum, Version,
};

pub const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));

pub fn addr(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, host))
}

/// A v3 instance at `interval_cs` centiseconds, multicast, preempting.
pub fn v3_config(host: u8, priority: u8, interval_cs: u16) -> InstanceConfig {
    InstanceConfig {
        version: Version::V3,
        vrid: 51,
        priority,
        advert_interval: Interval::from_centis(interval_cs),
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: addr(host),
        virtual_addresses: vec![VIP],
        auth: Auth::None,
        transport: Transport::Multicast,
        v3_checksum: V3Checksum::PseudoHeader,
        accept_either_checksum: false,
        answer_lower_priority: true,
        accepted_priorities: None,
    }
}

/// The seed's setting: v2, PASS auth, 1 s adverts, unicast between the given hosts.
pub fn v2_seed_config(host: u8, priority: u8, peers: &[u8]) -> InstanceConfig {
    InstanceConfig {
        version: Version::V2,
        advert_interval: Interval::from_secs(1),
        auth: Auth::password("whpg2025").unwrap(),
        transport: Transport::Unicast {
            peers: peers.iter().map(|&p| addr(p)).collect(),
        },
        ..v3_config(host, priority, 100)
    }
}

/// A state change seen in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub at: Duration,
    pub from: State,
    pub to: State,
    pub reason: TransitionReason,
}

pub struct Node {
    pub instance: Instance,
    pub holds_vip: bool,
    pub timer: Option<Instant>,
    pub changes: Vec<Change>,
    /// Offsets at which this node received an accepted advert, with its priority.
    pub received: Vec<(Duration, u8)>,
    pub garps: usize,
    /// A crashed node neither sends, receives nor wakes up.
    pub alive: bool,
}

struct InFlight {
    deliver_at: Instant,
    seq: u64,
    to: usize,
    meta: PacketMeta,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.deliver_at, self.seq) == (other.deliver_at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deliver_at, self.seq).cmp(&(other.deliver_at, other.seq))
    }
}

pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub latency: Duration,
    /// Probability in 1/1000 that a packet is lost.
    pub loss_per_mille: u32,
    cut: BTreeSet<(usize, usize)>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    rng: u64,
}

impl Sim {
    pub fn new(configs: Vec<InstanceConfig>) -> Sim {
        let start = Instant::now();
        Sim {
            start,
            now: start,
            nodes: configs
                .into_iter()
                .map(|c| Node {
                    instance: Instance::new(c),
                    holds_vip: false,
                    timer: None,
                    changes: Vec::new(),
                    received: Vec::new(),
                    garps: 0,
                    alive: true,
                })
                .collect(),
            latency: Duration::from_micros(200),
            loss_per_mille: 0,
            cut: BTreeSet::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.event(i, Event::Startup);
        }
    }

    pub fn event(&mut self, node: usize, event: Event<'_>) {
        let actions = self.nodes[node].instance.handle(event, self.now);
        self.apply(node, actions);
    }

    /// The node stops dead: no resign advert, no more packets or timers (a power cut).
    pub fn crash(&mut self, node: usize) {
        self.nodes[node].alive = false;
        self.nodes[node].timer = None;
    }

    pub fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    pub fn heal(&mut self, a: usize, b: usize) {
        self.cut.remove(&(a, b));
        self.cut.remove(&(b, a));
    }

    pub fn state(&self, node: usize) -> State {
        self.nodes[node].instance.state()
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.state(i) == State::Master)
            .collect()
    }

    pub fn vip_holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].holds_vip)
            .collect()
    }

    /// The last time `node` entered `state`, as an offset from the start.
    pub fn entered(&self, node: usize, state: State) -> Option<Duration> {
        self.nodes[node]
            .changes
            .iter()
            .rev()
            .find(|c| c.to == state)
            .map(|c| c.at)
    }

    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while let Some(at) = self.next_event_time().filter(|&at| at <= until) {
            self.now = at;
            self.step();
        }
        self.now = until;
    }

    fn next_event_time(&self) -> Option<Instant> {
        let packet = self.queue.peek().map(|Reverse(p)| p.deliver_at);
        let timer = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.timer)
            .min();
        match (packet, timer) {
            (Some(p), Some(t)) => Some(p.min(t)),
            (p, t) => p.or(t),
        }
    }

    fn step(&mut self) {
        // Packets first: an advert arriving at the instant a timer expires is seen before it.
        if let Some(Reverse(p)) = self.queue.peek() {
            if p.deliver_at <= self.now {
                let Reverse(p) = self.queue.pop().expect("peeked");
                if self.nodes[p.to].alive {
                    let accepted_before = self.nodes[p.to].instance.stats().adverts_received;
                    self.event(
                        p.to,
                        Event::Packet {
                            meta: p.meta,
                            payload: &p.payload,
                        },
                    );
                    if self.nodes[p.to].instance.stats().adverts_received > accepted_before {
                        let at = self.elapsed();
                        self.nodes[p.to].received.push((at, p.payload[2]));
                    }
                }
                return;
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].alive && self.nodes[i].timer.is_some_and(|t| t <= self.now) {
                self.event(i, Event::Timeout);
                return;
            }
        }
    }

    fn next_random(&mut self) -> u32 {
        // xorshift64*: deterministic and good enough for loss decisions.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn apply(&mut self, node: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(t) => {
                    if self.nodes[node].alive {
                        self.transmit(node, t.src, t.dst, t.payload);
                    }
                }
                Action::TakeAddresses => self.nodes[node].holds_vip = true,
                Action::ReleaseAddresses => self.nodes[node].holds_vip = false,
                Action::GratuitousArp => self.nodes[node].garps += 1,
                Action::Transition { from, to, reason } => {
                    let at = self.elapsed();
                    self.nodes[node].changes.push(Change {
                        at,
                        from,
                        to,
                        reason,
                    });
                }
                Action::ArmTimer(at) => self.nodes[node].timer = Some(at),
                Action::DisarmTimer => self.nodes[node].timer = None,
                Action::Dropped { reason, .. } => panic!("node {node} dropped a packet: {reason}"),
            }
        }
    }

    fn transmit(&mut self, from: usize, src: IpAddr, dst: IpAddr, payload: Vec<u8>) {
        let receivers: Vec<usize> = if dst == IpAddr::V4(MULTICAST_V4) {
            (0..self.nodes.len()).filter(|&i| i != from).collect()
        } else {
            (0..self.nodes.len())
                .filter(|&i| self.nodes[i].instance.config().primary_address == dst)
                .collect()
        };
        for to in receivers {
            if self.cut.contains(&(from, to)) {
                continue;
            }
            if self.loss_per_mille > 0 && self.next_random() % 1000 < self.loss_per_mille {
                continue;
            }
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                deliver_at: self.now + self.latency,
                seq: self.seq,
                to,
                meta: PacketMeta { src, dst, ttl: 255 },
                payload: payload.clone(),
            }));
        }
    }
}
