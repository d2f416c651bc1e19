//! From the file as written ([`RawConfig`]) to a resolved [`Config`]: every range, form and cross-key
//! rule, with this node chosen and defaults applied.
//!
//! All problems are collected, each with its own message and fix; a value that fails is replaced by its
//! default only so that the remaining checks can still run, and the result is then an error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::defaults::{self, CommandKind};
use super::duration::{format_duration, parse_duration, ACCEPTED_FORM};
use super::error::{quote, ConfigError, ConfigErrors};
use super::model::*;
use super::schema::*;
use super::spans::{segment, SpanIndex};
use super::template::{is_placeholder, placeholders_in, PLACEHOLDERS};

mod arbiter;

/// Linux limit on interface names and address labels (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Where this node's name came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum NodeSource {
    Flag,
    Key,
    HostName,
}

/// Validates `raw` and resolves this node: `explicit` (the `--node` flag) first, then the `node` key,
/// then `hostname()`.
pub(crate) fn resolve(
    raw: RawConfig,
    spans: &SpanIndex,
    explicit: Option<&str>,
    hostname: &dyn Fn() -> Result<String, String>,
) -> Result<Config, ConfigErrors> {
    let mut c = Checker {
        spans,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let vrrp = c.vrrp(raw.vrrp.as_ref());
    let nodes = c.nodes(&raw.nodes);
    let local = c.local_node(&nodes, explicit, raw.node.as_deref(), hostname);
    let vips = c.vips(&raw.vip, &vrrp.interface, &nodes);
    let database = c.database(raw.database.as_ref());
    let health = c.health(&raw.health);
    let witness = c.witness(&raw.witness, &nodes);
    let failover = c.failover(&raw.failover, &witness, database.flavor);
    let replication = c.replication(&raw.replication, &failover, database.flavor);
    let commands = c.commands(&raw.commands, &database);
    let mut api = c.api(&raw.api);
    let journal = c.journal(&raw.journal);
    let arbiter = raw
        .arbiter
        .as_ref()
        .map(|a| c.arbiter(a, vrrp.vrid, failover.confirmation));

    let Checker {
        mut errors,
        warnings,
        ..
    } = c;
    let local = match local {
        Some(local) if errors.is_empty() => local,
        _ => {
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            return Err(ConfigErrors { errors });
        }
    };
    let mut peers = Vec::new();
    let mut local_node = None;
    for node in nodes.into_values().flatten() {
        if node.name == local {
            local_node = Some(node);
        } else {
            peers.push(node);
        }
    }
    let Some(local) = local_node else {
        return Err(ConfigErrors::single(ConfigError {
            line: None,
            key: "node".into(),
            value: Some(quote(&local)),
            message: "the chosen node has no valid entry".into(),
            fix: "correct its [nodes] entry".into(),
        }));
    };
    if raw.api.listen.is_none() {
        api.listen = default_listen(local.address);
    }
    Ok(Config {
        local,
        peers,
        vrrp,
        vips,
        database,
        health,
        failover,
        replication,
        commands,
        witness,
        api,
        journal,
        arbiter,
        warnings,
    })
}

struct Checker<'a> {
    spans: &'a SpanIndex,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

fn problem(
    spans: &SpanIndex,
    key: &str,
    value: Option<String>,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError {
        line: spans.line(key),
        key: key.to_string(),
        value,
        message: message.into(),
        fix: fix.into(),
    }
}

impl Checker<'_> {
    fn error(
        &mut self,
        key: &str,
        value: Option<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let e = problem(self.spans, key, value, message, fix);
        self.errors.push(e);
    }

    fn warn(&mut self, key: &str, message: impl Into<String>, fix: impl Into<String>) {
        let w = problem(self.spans, key, None, message, fix);
        self.warnings.push(w);
    }

    /// A duration with a default and an inclusive range; `what` names it in the message.
    fn duration(
        &mut self,
        key: &str,
        raw: Option<&RawDuration>,
        default: Duration,
        range: RangeInclusive<Duration>,
        what: &str,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        match raw {
            RawDuration::Number(n) => {
                self.error(
                    key,
                    Some(n.clone()),
                    "a duration needs a unit and quotes",
                    format!("write e.g. \"{n}s\" or \"{n}ms\""),
                );
                default
            }
            RawDuration::Text(text) => match parse_duration(text) {
                Err(why) => {
                    self.error(
                        key,
                        Some(quote(text)),
                        format!("not a duration: {why}"),
                        format!("write {ACCEPTED_FORM}"),
                    );
                    default
                }
                Ok(d) if d < *range.start() || d > *range.end() => {
                    let message = if d.is_zero() && !range.start().is_zero() {
                        format!("{what} must be greater than 0")
                    } else {
                        format!(
                            "{what} must be between {} and {}",
                            format_duration(*range.start()),
                            format_duration(*range.end())
                        )
                    };
                    self.error(
                        key,
                        Some(quote(text)),
                        message,
                        format!(
                            "use a value from \"{}\" to \"{}\"",
                            format_duration(*range.start()),
                            format_duration(*range.end())
                        ),
                    );
                    default
                }
                Ok(d) => d,
            },
        }
    }

    /// An integer with a default and an inclusive range.
    fn int(
        &mut self,
        key: &str,
        raw: Option<i64>,
        default: u32,
        range: RangeInclusive<i64>,
        message: &str,
        fix: &str,
    ) -> u32 {
        match raw {
            None => default,
            Some(v) if range.contains(&v) => u32::try_from(v).unwrap_or(default),
            Some(v) => {
                self.error(key, Some(v.to_string()), message, fix);
                default
            }
        }
    }

    /// A required string; reports it missing (when its table exists) or empty.
    fn required(
        &mut self,
        key: &str,
        raw: Option<&String>,
        table_present: bool,
        fix: &str,
    ) -> Option<String> {
        match raw {
            None => {
                if table_present {
                    self.error(key, None, "required key is missing", fix);
                }
                None
            }
            Some(s) if s.trim().is_empty() => {
                self.error(key, Some(quote(s)), "must not be empty", fix);
                None
            }
            Some(s) => Some(s.clone()),
        }
    }

    /// An absolute path.
    fn abs_path(&mut self, key: &str, raw: &str) -> Option<PathBuf> {
        if raw.starts_with('/') && !raw.contains('\0') {
            Some(PathBuf::from(raw))
        } else {
            self.error(
                key,
                Some(quote(raw)),
                "must be an absolute path (the daemon's working directory is /)",
                "write the full path, starting with /",
            );
            None
        }
    }

    /// A Linux interface name (also used for VIP devices).
    fn ifname(&mut self, key: &str, name: &str) -> bool {
        let why = if name.is_empty() {
            Some("an interface name cannot be empty".to_string())
        } else if name.len() > IFNAME_MAX {
            Some(format!(
                "interface names are at most {IFNAME_MAX} bytes (kernel limit); this one has {}",
                name.len()
            ))
        } else if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
            Some("an interface name has no '/', ':' or spaces (a name with ':' is a label)".into())
        } else {
            None
        };
        if let Some(why) = why {
            self.error(
                key,
                Some(quote(name)),
                why,
                "use the device name as `ip link` shows it, e.g. \"eth1\"",
            );
            false
        } else {
            true
        }
    }

    fn vrrp(&mut self, raw: Option<&RawVrrp>) -> Vrrp {
        let present = raw.is_some();
        if !present {
            self.error(
                "vrrp",
                None,
                "the [vrrp] table is missing",
                "add [vrrp] with at least interface and vrid",
            );
        }
        let fallback = RawVrrp::default();
        let raw = raw.unwrap_or(&fallback);

        let interface = match self.required(
            "vrrp.interface",
            raw.interface.as_ref(),
            present,
            "set the interface that carries the VIP and the adverts, e.g. interface = \"eth1\"",
        ) {
            Some(name) if self.ifname("vrrp.interface", &name) => name,
            _ => String::new(),
        };

        let vrid = match raw.vrid {
            None => {
                if present {
                    self.error(
                        "vrrp.vrid",
                        None,
                        "required key is missing: the virtual router ID",
                        "set vrid to the same value from 1 to 255 on both nodes",
                    );
                }
                1
            }
            Some(v) => match u8::try_from(v) {
                Ok(v) if v >= 1 => v,
                _ => {
                    self.error(
                        "vrrp.vrid",
                        Some(v.to_string()),
                        "VRID must be between 1 and 255",
                        "use the same value from 1 to 255 on both nodes, one no other VRRP router on the segment uses",
                    );
                    1
                }
            },
        };

        let version = match raw.version {
            None => Some(defaults::VRRP_VERSION),
            Some(2) => Some(VrrpVersion::V2),
            Some(3) => Some(VrrpVersion::V3),
            Some(v) => {
                self.error(
                    "vrrp.version",
                    Some(v.to_string()),
                    "VRRP version must be 2 or 3",
                    "use 2 (keepalived's default, whole-second adverts) or 3 (sub-second adverts)",
                );
                None
            }
        };

        let advert_interval = self.advert_interval(raw.advert_interval.as_ref(), version);

        let transport = match raw.transport.as_deref() {
            None => defaults::TRANSPORT,
            Some("unicast") => Transport::Unicast,
            Some("multicast") => Transport::Multicast,
            Some(other) => {
                self.error(
                    "vrrp.transport",
                    Some(quote(other)),
                    "unknown transport",
                    "use \"unicast\" (adverts between the node addresses) or \"multicast\" (224.0.0.18)",
                );
                Transport::Unicast
            }
        };

        let auth_pass = match &raw.auth_pass {
            None => None,
            Some(_) if version == Some(VrrpVersion::V3) => {
                self.error(
                    "vrrp.auth_pass",
                    None,
                    "VRRPv3 has no authentication (keepalived refuses it as well)",
                    "remove auth_pass, or use version = 2",
                );
                None
            }
            Some(pass) if pass.is_empty() => {
                self.error(
                    "vrrp.auth_pass",
                    None,
                    "the PASS password is empty",
                    "remove auth_pass for no authentication, or set 1 to 8 characters",
                );
                None
            }
            Some(pass) if pass.len() > 8 => {
                self.error(
                    "vrrp.auth_pass",
                    None,
                    format!(
                        "PASS authentication carries at most 8 bytes; this password has {}",
                        pass.len()
                    ),
                    "shorten it to at most 8 bytes, the same on both nodes",
                );
                None
            }
            Some(pass) => Some(Secret::new(pass.clone())),
        };

        let preempt = raw.preempt.unwrap_or(defaults::PREEMPT);
        let preempt_delay = self.duration(
            "vrrp.preempt_delay",
            raw.preempt_delay.as_ref(),
            defaults::PREEMPT_DELAY,
            Duration::ZERO..=Duration::from_secs(1000),
            "the preempt delay",
        );
        if !preempt && !preempt_delay.is_zero() {
            self.warn(
                "vrrp.preempt_delay",
                "preempt_delay has no effect while preempt = false",
                "remove preempt_delay or set preempt = true",
            );
        }

        let v3_checksum = match raw.v3_checksum.as_deref() {
            None => defaults::V3_CHECKSUM,
            Some("pseudo-header") => V3Checksum::PseudoHeader,
            Some("vrrp-only") => V3Checksum::VrrpOnly,
            Some(other) => {
                self.error(
                    "vrrp.v3_checksum",
                    Some(quote(other)),
                    "unknown checksum mode",
                    "use \"pseudo-header\" (keepalived) or \"vrrp-only\" (RFC 9568 reading)",
                );
                V3Checksum::PseudoHeader
            }
        };

        let garp = self.garp(&raw.garp);
        Vrrp {
            interface,
            vrid,
            version: version.unwrap_or(VrrpVersion::V2),
            advert_interval,
            transport,
            auth_pass,
            preempt,
            preempt_delay,
            v3_checksum,
            accept_either_checksum: raw
                .accept_either_checksum
                .unwrap_or(defaults::ACCEPT_EITHER_CHECKSUM),
            garp,
        }
    }

    /// The advert interval must be representable in the version's unit and range.
    fn advert_interval(
        &mut self,
        raw: Option<&RawDuration>,
        version: Option<VrrpVersion>,
    ) -> Duration {
        const KEY: &str = "vrrp.advert_interval";
        let d = self.duration(
            KEY,
            raw,
            defaults::ADVERT_INTERVAL,
            Duration::ZERO..=Duration::MAX,
            "the advert interval",
        );
        let text = match raw {
            Some(RawDuration::Text(t)) => Some(quote(t)),
            _ => None,
        };
        match version {
            Some(VrrpVersion::V2) => {
                if d.subsec_nanos() != 0 {
                    self.error(
                        KEY,
                        text,
                        "VRRPv2 advertises whole seconds only",
                        "use whole seconds such as \"1s\", or version = 3 for sub-second adverts",
                    );
                    return defaults::ADVERT_INTERVAL;
                }
                if !(1..=255).contains(&d.as_secs()) {
                    self.error(
                        KEY,
                        text,
                        "a VRRPv2 advert interval must be between 1s and 255s",
                        "use a value from \"1s\" to \"255s\"",
                    );
                    return defaults::ADVERT_INTERVAL;
                }
            }
            Some(VrrpVersion::V3) => {
                if d.as_millis() % 10 != 0 {
                    self.error(
                        KEY,
                        text,
                        "VRRPv3 counts the advert interval in centiseconds: it must be a multiple of 10ms",
                        "round to a multiple of 10ms, e.g. \"100ms\"",
                    );
                    return defaults::ADVERT_INTERVAL;
                }
                if d < Duration::from_millis(10) || d > Duration::from_millis(40_950) {
                    self.error(
                        KEY,
                        text,
                        "a VRRPv3 advert interval must be between 10ms and 40.95s",
                        "use a value from \"10ms\" to \"40950ms\"",
                    );
                    return defaults::ADVERT_INTERVAL;
                }
            }
            None => {}
        }
        d
    }

    fn garp(&mut self, raw: &RawGarp) -> Garp {
        Garp {
            repeat: self.int(
                "vrrp.garp.repeat",
                raw.repeat,
                defaults::GARP_REPEAT,
                1..=100,
                "gratuitous ARPs per burst must be between 1 and 100",
                "use a count from 1 to 100 (keepalived sends 5)",
            ),
            interval: self.duration(
                "vrrp.garp.interval",
                raw.interval.as_ref(),
                defaults::GARP_INTERVAL,
                Duration::ZERO..=Duration::from_secs(10),
                "the pause between gratuitous ARPs",
            ),
            master_delay: self.duration(
                "vrrp.garp.master_delay",
                raw.master_delay.as_ref(),
                defaults::GARP_MASTER_DELAY,
                Duration::ZERO..=Duration::from_secs(1000),
                "the delay of the second gratuitous ARP burst",
            ),
            refresh: self.duration(
                "vrrp.garp.refresh",
                raw.refresh.as_ref(),
                defaults::GARP_REFRESH,
                Duration::ZERO..=Duration::from_secs(86_400),
                "the gratuitous ARP refresh period",
            ),
            on_lower_priority: raw
                .on_lower_priority
                .unwrap_or(defaults::GARP_ON_LOWER_PRIORITY),
        }
    }

    /// Every `[nodes.*]` entry, `None` where the entry is invalid (already reported).
    fn nodes(&mut self, raw: &BTreeMap<String, RawNode>) -> BTreeMap<String, Option<Node>> {
        if raw.len() < 2 {
            self.error(
                "nodes",
                None,
                format!(
                    "found {} node(s); a pair needs two [nodes.NAME] entries",
                    raw.len()
                ),
                "list both nodes, e.g. [nodes.cdw] and [nodes.scdw], in the same file on both hosts",
            );
        } else if raw.len() > 2 {
            self.warn(
                "nodes",
                format!(
                    "{} nodes listed; whpg-ha manages a coordinator pair",
                    raw.len()
                ),
                "list exactly the coordinator and its standby",
            );
        }
        let mut out = BTreeMap::new();
        let mut seen: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        for (name, node) in raw {
            let base = format!("nodes.{}", segment(name));
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid_name {
                self.error(
                    &base,
                    None,
                    format!("node name {} is not a host name", quote(name)),
                    "name the node like its host: letters, digits, '.', '-', '_'",
                );
            }
            let address = self.node_address(&format!("{base}.address"), node.address.as_ref());
            if let Some(address) = address {
                if let Some(other) = seen.get(&address) {
                    self.error(
                        &format!("{base}.address"),
                        Some(quote(&address.to_string())),
                        format!(
                            "same address as node {other}: a node would be its own peer (unicast peer equal to source)"
                        ),
                        "give each node its own address on vrrp.interface",
                    );
                } else {
                    seen.insert(address, name.clone());
                }
            }
            let priority = self.priority(&format!("{base}.priority"), node.priority);
            out.insert(
                name.clone(),
                match (valid_name, address, priority) {
                    (true, Some(address), Some(priority)) => Some(Node {
                        name: name.clone(),
                        address,
                        priority,
                        application_name: node.application_name.clone(),
                    }),
                    _ => None,
                },
            );
        }
        let priorities: Vec<u8> = out.values().flatten().map(|n| n.priority).collect();
        if priorities.len() == 2 && priorities[0] == priorities[1] {
            self.warn(
                "nodes",
                "both nodes have the same priority: the higher address wins every election",
                "give the coordinator the higher priority (e.g. 100 and 98)",
            );
        }
        out
    }

    fn node_address(&mut self, key: &str, raw: Option<&String>) -> Option<Ipv4Addr> {
        let Some(text) = raw else {
            self.error(
                key,
                None,
                "required key is missing: the node's IPv4 address on vrrp.interface",
                "set address = \"A.B.C.D\"",
            );
            return None;
        };
        match text.parse::<Ipv4Addr>() {
            Ok(a) if is_unicast(a) => Some(a),
            Ok(_) => {
                self.error(
                    key,
                    Some(quote(text)),
                    "a node address must be a unicast address (not multicast, broadcast, 0.0.0.0 or loopback)",
                    "use the node's own address on vrrp.interface",
                );
                None
            }
            Err(_) if text.parse::<Ipv6Addr>().is_ok() => {
                self.error(
                    key,
                    Some(quote(text)),
                    "IPv6 node addresses are not supported yet",
                    "use the node's IPv4 address on vrrp.interface",
                );
                None
            }
            Err(_) => {
                self.error(
                    key,
                    Some(quote(text)),
                    "not an IPv4 address",
                    "write the address as A.B.C.D, without a prefix length",
                );
                None
            }
        }
    }

    fn priority(&mut self, key: &str, raw: Option<i64>) -> Option<u8> {
        match raw {
            None => Some(defaults::PRIORITY),
            Some(0) => {
                self.error(
                    key,
                    Some("0".into()),
                    "priority 0 is reserved for a master that resigns",
                    "use 1 to 254 (higher wins), e.g. 100 on the coordinator and 98 on the standby",
                );
                None
            }
            Some(255) => {
                self.warn(
                    key,
                    "priority 255 means \"address owner\": the node takes over at once after a restart",
                    "use 1 to 254 unless this node really owns the VIP",
                );
                Some(255)
            }
            Some(v) => match u8::try_from(v) {
                Ok(p) => Some(p),
                Err(_) => {
                    self.error(
                        key,
                        Some(v.to_string()),
                        "priority must be between 1 and 255",
                        "use 1 to 254 (higher wins), e.g. 100 on the coordinator and 98 on the standby",
                    );
                    None
                }
            },
        }
    }

    /// Chooses this node: `--node`, then the `node` key, then the host name (full, then short).
    fn local_node(
        &mut self,
        nodes: &BTreeMap<String, Option<Node>>,
        explicit: Option<&str>,
        key: Option<&str>,
        hostname: &dyn Fn() -> Result<String, String>,
    ) -> Option<String> {
        let (wanted, source) = if let Some(name) = explicit {
            (name.to_string(), NodeSource::Flag)
        } else if let Some(name) = key {
            (name.to_string(), NodeSource::Key)
        } else {
            match hostname() {
                Ok(name) => (name, NodeSource::HostName),
                Err(why) => {
                    self.error(
                        "node",
                        None,
                        format!("cannot tell which node this is: {why}"),
                        "pass --node NAME",
                    );
                    return None;
                }
            }
        };
        if nodes.is_empty() {
            return None;
        }
        let mut candidates = vec![wanted.clone()];
        if let (NodeSource::HostName, Some((short, _))) = (source, wanted.split_once('.')) {
            candidates.push(short.to_string());
        }
        if let Some(found) = candidates.into_iter().find(|c| nodes.contains_key(c)) {
            return Some(found);
        }
        let names = nodes.keys().cloned().collect::<Vec<_>>().join(", ");
        let (message, fix) = match source {
            NodeSource::Flag => (
                format!("--node names no [nodes.*] entry; the file has: {names}"),
                format!("pass --node with one of: {names}"),
            ),
            NodeSource::Key => (
                format!("the node key names no [nodes.*] entry; the file has: {names}"),
                format!("set node to one of: {names} (or remove it and rely on the host name)"),
            ),
            NodeSource::HostName => (
                format!("this host's name has no [nodes.*] entry; the file has: {names}"),
                "pass --node NAME, or name the [nodes.*] entries after the host names".to_string(),
            ),
        };
        self.error("node", Some(quote(&wanted)), message, fix);
        None
    }

    fn vips(
        &mut self,
        raw: &[RawVip],
        interface: &str,
        nodes: &BTreeMap<String, Option<Node>>,
    ) -> Vec<Vip> {
        if raw.is_empty() {
            self.error(
                "vip",
                None,
                "no [[vip]] entry: there is no address to move",
                "add [[vip]] with address = \"A.B.C.D/PREFIX\"",
            );
        } else if raw.len() > 255 {
            self.error(
                "vip",
                None,
                "an advert carries at most 255 addresses",
                "list fewer [[vip]] entries",
            );
        }
        let mut out: Vec<Vip> = Vec::new();
        for (i, v) in raw.iter().enumerate() {
            let base = format!("vip[{i}]");
            let address = match &v.address {
                None => {
                    self.error(
                        &format!("{base}.address"),
                        None,
                        "required key is missing",
                        "set address = \"A.B.C.D/PREFIX\"",
                    );
                    None
                }
                Some(text) => self.vip_address(&format!("{base}.address"), text),
            };
            let device = match &v.device {
                None => interface.to_string(),
                Some(d) => {
                    if self.ifname(&format!("{base}.device"), d) {
                        d.clone()
                    } else {
                        interface.to_string()
                    }
                }
            };
            if let Some(label) = &v.label {
                self.vip_label(&format!("{base}.label"), label, &device);
            }
            let Some((address, prefix_len)) = address else {
                continue;
            };
            if let Some(j) = out.iter().position(|o| o.address == address) {
                self.error(
                    &format!("{base}.address"),
                    v.address.as_deref().map(quote),
                    format!("this VIP is listed twice (also vip[{j}])"),
                    "remove the duplicate [[vip]] entry",
                );
            }
            for node in nodes.values().flatten() {
                if node.address == address && node.priority != 255 {
                    self.error(
                        &format!("{base}.address"),
                        v.address.as_deref().map(quote),
                        format!(
                            "the VIP is node {}'s own address; it would never move",
                            node.name
                        ),
                        "use a separate address for the VIP",
                    );
                }
            }
            out.push(Vip {
                address,
                prefix_len,
                device,
                label: v.label.clone(),
            });
        }
        out
    }

    fn vip_address(&mut self, key: &str, text: &str) -> Option<(Ipv4Addr, u8)> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let Ok(address) = addr_text.parse::<Ipv4Addr>() else {
            let (message, fix) = if addr_text.parse::<Ipv6Addr>().is_ok() {
                (
                    "IPv6 VIPs are not supported yet",
                    "use an IPv4 address, e.g. \"192.168.56.100/24\"",
                )
            } else {
                (
                    "not an IPv4 address with a prefix length",
                    "write it as A.B.C.D/PREFIX, e.g. \"192.168.56.100/24\"",
                )
            };
            self.error(key, Some(quote(text)), message, fix);
            return None;
        };
        let prefix_len = match prefix_text {
            None => 32,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= 32 => p,
                _ => {
                    self.error(
                        key,
                        Some(quote(text)),
                        "the prefix length must be between 0 and 32",
                        "use the prefix length of the client subnet, e.g. /24",
                    );
                    return None;
                }
            },
        };
        if !is_unicast(address) {
            self.error(
                key,
                Some(quote(text)),
                "a VIP must be a unicast address (not multicast, broadcast, 0.0.0.0 or loopback)",
                "use the address clients connect to",
            );
            return None;
        }
        Some((address, prefix_len))
    }

    fn vip_label(&mut self, key: &str, label: &str, device: &str) {
        let matches_device = label == device
            || label
                .strip_prefix(device)
                .is_some_and(|rest| rest.starts_with(':'));
        if !matches_device {
            self.error(
                key,
                Some(quote(label)),
                format!("a label must be the device name or start with \"{device}:\""),
                format!("use e.g. \"{device}:0\""),
            );
        } else if label.len() > IFNAME_MAX {
            self.error(
                key,
                Some(quote(label)),
                format!(
                    "a label is at most {IFNAME_MAX} bytes (kernel limit); this one has {}",
                    label.len()
                ),
                format!("shorten it, e.g. \"{device}:0\""),
            );
        }
    }

    fn database(&mut self, raw: Option<&RawDatabase>) -> Database {
        let present = raw.is_some();
        if !present {
            self.error(
                "database",
                None,
                "the [database] table is missing",
                "add [database] with flavor, host or socket_dir, and data_directory",
            );
        }
        let fallback = RawDatabase::default();
        let raw = raw.unwrap_or(&fallback);

        let flavor = match raw.flavor.as_deref() {
            Some("warehousepg") => Some(Flavor::WarehousePg),
            Some("postgres") => Some(Flavor::Postgres),
            Some(other) => {
                self.error(
                    "database.flavor",
                    Some(quote(other)),
                    "unknown database flavor",
                    "use \"warehousepg\" (gpactivatestandby) or \"postgres\" (pg_ctl promote)",
                );
                None
            }
            None => {
                if present {
                    self.error(
                        "database.flavor",
                        None,
                        "required key is missing: it decides how to promote and rejoin",
                        "set flavor = \"warehousepg\" or \"postgres\"",
                    );
                }
                None
            }
        };
        let flavor_or_default = flavor.unwrap_or(Flavor::WarehousePg);

        let endpoint = match (&raw.host, &raw.socket_dir) {
            (Some(_), Some(_)) => {
                self.error(
                    "database.socket_dir",
                    None,
                    "both host and socket_dir are set",
                    "keep one: host for TCP, socket_dir for the Unix socket",
                );
                None
            }
            (None, None) => {
                if present {
                    self.error(
                        "database.host",
                        None,
                        "neither host nor socket_dir is set",
                        "set host = \"127.0.0.1\" (TCP) or socket_dir = \"/tmp\" (Unix socket)",
                    );
                }
                None
            }
            (Some(host), None) => {
                if host.is_empty() || host.chars().any(char::is_whitespace) {
                    self.error(
                        "database.host",
                        Some(quote(host)),
                        "not a host name or address",
                        "use e.g. \"127.0.0.1\"",
                    );
                    None
                } else {
                    Some(DbEndpoint::Host(host.clone()))
                }
            }
            (None, Some(dir)) => self
                .abs_path("database.socket_dir", dir)
                .map(DbEndpoint::SocketDir),
        };

        let port = match raw.port {
            None => defaults::DB_PORT,
            Some(p) => match u16::try_from(p) {
                Ok(p) if p != 0 => p,
                _ => {
                    self.error(
                        "database.port",
                        Some(p.to_string()),
                        "port must be between 1 and 65535",
                        "use the port the database listens on (usually 5432)",
                    );
                    defaults::DB_PORT
                }
            },
        };

        let user = self.name_or_default(
            "database.user",
            raw.user.as_ref(),
            defaults::db_user(flavor_or_default),
        );
        let dbname =
            self.name_or_default("database.dbname", raw.dbname.as_ref(), defaults::DB_NAME);
        let os_user = self.name_or_default(
            "database.os_user",
            raw.os_user.as_ref(),
            defaults::db_user(flavor_or_default),
        );
        if os_user == "root" {
            self.error(
                "database.os_user",
                Some(quote(&os_user)),
                "PostgreSQL refuses to run as root",
                "use the database owner, e.g. \"gpadmin\" or \"postgres\"",
            );
        }
        let password_file = raw
            .password_file
            .as_ref()
            .and_then(|p| self.abs_path("database.password_file", p));
        let data_directory = match self.required(
            "database.data_directory",
            raw.data_directory.as_ref(),
            present,
            "set data_directory = \"/data/coordinator/gpseg-1\" (the local data directory)",
        ) {
            Some(d) => self
                .abs_path("database.data_directory", &d)
                .unwrap_or_default(),
            None => PathBuf::new(),
        };

        let greenplum_path = match (flavor_or_default, &raw.greenplum_path) {
            (Flavor::Postgres, Some(p)) => {
                if flavor.is_some() {
                    self.error(
                        "database.greenplum_path",
                        Some(quote(p)),
                        "greenplum_path applies to flavor = \"warehousepg\" only",
                        "remove it, or set flavor = \"warehousepg\"",
                    );
                }
                None
            }
            (Flavor::Postgres, None) => None,
            (Flavor::WarehousePg, Some(p)) => self.abs_path("database.greenplum_path", p),
            (Flavor::WarehousePg, None) => Some(PathBuf::from(defaults::GREENPLUM_PATH)),
        };
        let bin_dir = match &raw.bin_dir {
            Some(dir) => self.abs_path("database.bin_dir", dir),
            None => greenplum_path
                .as_ref()
                .and_then(|p| p.parent())
                .map(|gphome| gphome.join("bin")),
        };

        Database {
            flavor: flavor_or_default,
            endpoint: endpoint.unwrap_or(DbEndpoint::Host(String::new())),
            port,
            user,
            dbname,
            password_file,
            data_directory,
            os_user,
            greenplum_path,
            bin_dir,
            monitor: raw.monitor.unwrap_or(true),
        }
    }

    fn name_or_default(&mut self, key: &str, raw: Option<&String>, default: &str) -> String {
        match raw {
            None => default.to_string(),
            Some(s) if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                self.error(
                    key,
                    Some(quote(s)),
                    "must be a non-empty name without spaces",
                    format!("remove the key for the default ({default}) or write a plain name"),
                );
                default.to_string()
            }
            Some(s) => s.clone(),
        }
    }

    fn health(&mut self, raw: &RawHealth) -> Health {
        Health {
            interval: self.duration(
                "health.interval",
                raw.interval.as_ref(),
                defaults::HEALTH_INTERVAL,
                Duration::from_millis(10)..=Duration::from_secs(60),
                "the health probe interval",
            ),
            timeout: self.duration(
                "health.timeout",
                raw.timeout.as_ref(),
                defaults::HEALTH_TIMEOUT,
                Duration::from_millis(1)..=Duration::from_secs(10),
                "the health probe timeout",
            ),
            fall: self.int(
                "health.fall",
                raw.fall,
                defaults::HEALTH_FALL,
                1..=1000,
                "fall must be between 1 and 1000 consecutive failed probes",
                "use e.g. 3 (the database counts as failed after 3 failed probes in a row)",
            ),
            rise: self.int(
                "health.rise",
                raw.rise,
                defaults::HEALTH_RISE,
                1..=1000,
                "rise must be between 1 and 1000 consecutive good probes",
                "use e.g. 2 (the database counts as healthy after 2 good probes in a row)",
            ),
            held_session: raw.held_session.unwrap_or(defaults::HEALTH_HELD_SESSION),
            connect_interval: self.duration(
                "health.connect_interval",
                raw.connect_interval.as_ref(),
                defaults::HEALTH_CONNECT_INTERVAL,
                Duration::from_millis(10)..=Duration::from_secs(600),
                "how often a new connection checks each database beside the held session",
            ),
        }
    }

    fn failover(&mut self, raw: &RawFailover, witness: &Witness, flavor: Flavor) -> Failover {
        let mut triggers = Vec::new();
        match &raw.triggers {
            None => triggers.extend(Trigger::ALL),
            Some(list) => {
                for (i, name) in list.iter().enumerate() {
                    let key = format!("failover.triggers[{i}]");
                    match Trigger::ALL.into_iter().find(|t| t.as_str() == name) {
                        Some(t) if triggers.contains(&t) => self.error(
                            &key,
                            Some(quote(name)),
                            "this trigger is listed twice",
                            "list each trigger once",
                        ),
                        Some(t) => triggers.push(t),
                        None => self.error(
                            &key,
                            Some(quote(name)),
                            "unknown failover trigger",
                            "use \"node-loss\", \"network-loss\" and/or \"database-failure\" ([] = never automatic)",
                        ),
                    }
                }
                if list.is_empty() {
                    self.warn(
                        "failover.triggers",
                        "triggers = []: automatic failover is off",
                        "use switchover for planned moves, or list the triggers you want",
                    );
                }
            }
        }
        let fence_when_isolated = raw
            .fence_when_isolated
            .unwrap_or(defaults::FENCE_WHEN_ISOLATED);
        if fence_when_isolated && !witness.enabled() {
            self.warn(
                "witness.hosts",
                "no witness hosts: an isolated node cannot tell it is cut off, so fence_when_isolated never acts",
                "list a third host (e.g. the gateway) in [witness] hosts",
            );
        }
        Failover {
            triggers,
            confirmation: self.duration(
                "failover.confirmation",
                raw.confirmation.as_ref(),
                defaults::CONFIRMATION,
                Duration::ZERO..=Duration::from_secs(600),
                "the confirmation time",
            ),
            wal_freshness: self.duration(
                "failover.wal_freshness",
                raw.wal_freshness.as_ref(),
                defaults::WAL_FRESHNESS,
                Duration::from_millis(1)..=Duration::from_secs(600),
                "the WAL freshness window",
            ),
            fence_when_isolated,
            maximum_lag: self.size(
                "failover.maximum_lag",
                raw.maximum_lag.as_ref(),
                defaults::maximum_lag(flavor),
                1 << 40,
            ),
            maximum_lag_time: self.duration(
                "failover.maximum_lag_time",
                raw.maximum_lag_time.as_ref(),
                defaults::MAXIMUM_LAG_TIME,
                Duration::from_millis(100)..=Duration::from_secs(3600),
                "the maximum lag time",
            ),
        }
    }

    fn replication(
        &mut self,
        raw: &RawReplication,
        failover: &Failover,
        flavor: Flavor,
    ) -> Replication {
        let mode = match raw.mode.as_deref() {
            None => ReplicationMode::Async,
            Some(name) => match ReplicationMode::ALL
                .into_iter()
                .find(|m| m.as_str() == name)
            {
                Some(mode) => mode,
                None => {
                    self.error(
                        "replication.mode",
                        Some(quote(name)),
                        "unknown replication mode",
                        "use \"async\", \"sync\" or \"sync-strict\" (see docs/configuration.md, \
                         [replication])",
                    );
                    ReplicationMode::Async
                }
            },
        };
        if mode != ReplicationMode::Async && flavor == Flavor::WarehousePg {
            self.error(
                "replication.mode",
                Some(quote(mode.as_str())),
                "a WarehousePG coordinator does its own waiting: it waits for its standby while a \
                 WAL sender streams to it and commits alone once none does, whatever \
                 synchronous_standby_names says, so the daemon has nothing to manage",
                "remove replication.mode (or set \"async\") with database.flavor = \"warehousepg\"; \
                 docs/configuration.md ([replication]) says what each fault can lose there",
            );
        }
        let sync_timeout = self.duration(
            "replication.sync_timeout",
            raw.sync_timeout.as_ref(),
            defaults::SYNC_TIMEOUT,
            Duration::from_secs(1)..=Duration::from_secs(3600),
            "the synchronous replication timeout",
        );
        if mode == ReplicationMode::Sync && sync_timeout <= failover.confirmation {
            self.warn(
                "replication.sync_timeout",
                format!(
                    "sync_timeout ({} ms) is not longer than failover.confirmation ({} ms): in a \
                     partition the primary commits alone before the standby can have been \
                     promoted, and the promoted standby lacks those commits",
                    sync_timeout.as_millis(),
                    failover.confirmation.as_millis()
                ),
                format!(
                    "use a sync_timeout well above {} ms (the default is {} s)",
                    failover.confirmation.as_millis(),
                    defaults::SYNC_TIMEOUT.as_secs()
                ),
            );
        }
        Replication { mode, sync_timeout }
    }

    /// A size in bytes: an integer, or a string with a unit (`"64kB"`, `"1MiB"`, `"16 MB"`).
    fn size(&mut self, key: &str, raw: Option<&RawDuration>, default: u64, max: u64) -> u64 {
        let Some(raw) = raw else { return default };
        let (shown, parsed) = match raw {
            RawDuration::Number(n) => (n.clone(), n.parse::<u64>().map_err(|e| e.to_string())),
            RawDuration::Text(t) => (quote(t), parse_size(t)),
        };
        match parsed {
            Ok(bytes) if bytes <= max => bytes,
            Ok(_) => {
                self.error(
                    key,
                    Some(shown),
                    "too large",
                    format!("use at most {max} bytes (1 TiB)"),
                );
                default
            }
            Err(why) => {
                self.error(
                    key,
                    Some(shown),
                    format!("not a size: {why}"),
                    "write bytes as an integer (1048576) or with a unit: \"64kB\", \"1MiB\", \"16MB\"",
                );
                default
            }
        }
    }

    fn commands(&mut self, raw: &RawCommands, db: &Database) -> Commands {
        let mut get = |kind: CommandKind| {
            let raw_cmd = match kind {
                CommandKind::Promote => raw.promote.as_ref(),
                CommandKind::Fence => raw.fence.as_ref(),
                CommandKind::Stop => raw.stop.as_ref(),
                CommandKind::Rejoin => raw.rejoin.as_ref(),
                CommandKind::Start => raw.start.as_ref(),
            };
            self.command(kind, raw_cmd, db)
        };
        Commands {
            promote: get(CommandKind::Promote),
            fence: get(CommandKind::Fence),
            stop: get(CommandKind::Stop),
            rejoin: get(CommandKind::Rejoin),
            start: get(CommandKind::Start),
        }
    }

    fn command(
        &mut self,
        kind: CommandKind,
        raw: Option<&RawCommand>,
        db: &Database,
    ) -> CommandSpec {
        let default = defaults::command(kind, db.flavor, db.bin_dir.is_some());
        let Some(raw) = raw else { return default };
        let base = format!("commands.{}", kind.name());
        let timeout = self.duration(
            &format!("{base}.timeout"),
            raw.timeout.as_ref(),
            default.timeout,
            Duration::from_millis(1)..=Duration::from_secs(86_400),
            "a command timeout",
        );
        let Some(argv) = &raw.argv else {
            return CommandSpec {
                argv: default.argv,
                timeout,
            };
        };
        if argv.is_empty() {
            self.error(
                &format!("{base}.argv"),
                Some("[]".into()),
                "the command is empty",
                "give the program and its arguments, or remove argv for the default",
            );
        } else if argv[0].trim().is_empty() {
            self.error(
                &format!("{base}.argv[0]"),
                Some(quote(&argv[0])),
                "the program name is empty",
                "put the program (ideally its full path) first",
            );
        }
        for (i, arg) in argv.iter().enumerate() {
            let key = format!("{base}.argv[{i}]");
            match placeholders_in(arg) {
                Err(why) => self.error(
                    &key,
                    Some(quote(arg)),
                    format!("malformed template: the argument {why}"),
                    "write placeholders as {name}",
                ),
                Ok(names) => {
                    for name in names {
                        if !is_placeholder(name) {
                            let known = PLACEHOLDERS
                                .iter()
                                .map(|(n, _)| format!("{{{n}}}"))
                                .collect::<Vec<_>>()
                                .join(", ");
                            self.error(
                                &key,
                                Some(quote(arg)),
                                format!("unknown placeholder {{{name}}}"),
                                format!(
                                    "use one of {known}; write {{{{ and }}}} for literal braces"
                                ),
                            );
                        } else if name == "bin_dir" && db.bin_dir.is_none() {
                            self.error(
                                &key,
                                Some(quote(arg)),
                                "uses {bin_dir} but database.bin_dir is not set",
                                "set database.bin_dir, or write the program's full path",
                            );
                        }
                    }
                }
            }
        }
        CommandSpec {
            argv: argv.clone(),
            timeout,
        }
    }

    fn witness(&mut self, raw: &RawWitness, nodes: &BTreeMap<String, Option<Node>>) -> Witness {
        let mut hosts: Vec<IpAddr> = Vec::new();
        for (i, text) in raw.hosts.iter().flatten().enumerate() {
            let key = format!("witness.hosts[{i}]");
            let Ok(addr) = text.parse::<IpAddr>() else {
                self.error(
                    &key,
                    Some(quote(text)),
                    "not an IP address",
                    "list witness hosts by address, e.g. the gateway \"192.168.10.1\"",
                );
                continue;
            };
            if hosts.contains(&addr) {
                self.error(
                    &key,
                    Some(quote(text)),
                    "listed twice",
                    "list each witness once",
                );
                continue;
            }
            if let Some(node) = nodes
                .values()
                .flatten()
                .find(|n| IpAddr::V4(n.address) == addr)
            {
                self.error(
                    &key,
                    Some(quote(text)),
                    format!(
                        "this is node {}'s address; a witness must be a third host",
                        node.name
                    ),
                    "use a host other than the two nodes, e.g. the gateway",
                );
                continue;
            }
            hosts.push(addr);
        }
        let listed = raw.hosts.as_ref().map_or(0, Vec::len);
        let quorum = match raw.quorum {
            None => {
                if listed == 0 {
                    0
                } else {
                    listed / 2 + 1
                }
            }
            Some(q) if listed == 0 && q != 0 => {
                self.error(
                    "witness.quorum",
                    Some(q.to_string()),
                    "a quorum is set but there are no witness hosts",
                    "list witness hosts, or remove quorum",
                );
                0
            }
            Some(q) => {
                match usize::try_from(q) {
                    Ok(q) if listed == 0 || (1..=listed).contains(&q) => q,
                    _ => {
                        self.error(
                        "witness.quorum",
                        Some(q.to_string()),
                        format!("quorum must be between 1 and {listed} (the number of witness hosts)"),
                        format!("use a value from 1 to {listed}; a majority is {}", listed / 2 + 1),
                    );
                        listed / 2 + 1
                    }
                }
            }
        };
        Witness {
            hosts,
            quorum,
            interval: self.duration(
                "witness.interval",
                raw.interval.as_ref(),
                defaults::WITNESS_INTERVAL,
                Duration::from_millis(10)..=Duration::from_secs(60),
                "the witness probe interval",
            ),
            timeout: self.duration(
                "witness.timeout",
                raw.timeout.as_ref(),
                defaults::WITNESS_TIMEOUT,
                Duration::from_millis(1)..=Duration::from_secs(10),
                "the witness probe timeout",
            ),
        }
    }

    /// `[api]`; without `listen` the addresses are filled in by [`default_listen`] once this
    /// node is known.
    fn api(&mut self, raw: &RawApi) -> Api {
        let mut listen = Vec::new();
        match &raw.listen {
            None => {}
            Some(list) if list.is_empty() => self.error(
                "api.listen",
                Some("[]".into()),
                "the API needs at least one listen address (the CLI and the peer use it)",
                format!(
                    "use e.g. [\"{}\"] with this node's address, or remove the key \
                     (default: this node's address and 127.0.0.1, port {})",
                    defaults::API_LISTEN,
                    defaults::API_PORT
                ),
            ),
            Some(list) => {
                for (i, text) in list.iter().enumerate() {
                    let key = format!("api.listen[{i}]");
                    match text.parse::<SocketAddr>() {
                        Ok(a) if a.port() == 0 => self.error(
                            &key,
                            Some(quote(text)),
                            "port 0 is not a fixed port",
                            "use a fixed port, e.g. 8008, the same on both nodes",
                        ),
                        Ok(a) if listen.contains(&a) => self.error(
                            &key,
                            Some(quote(text)),
                            "listed twice",
                            "list each address once",
                        ),
                        Ok(a) => listen.push(a),
                        Err(_) => self.error(
                            &key,
                            Some(quote(text)),
                            "not a socket address (IP:PORT)",
                            "write e.g. \"127.0.0.1:8008\" or \"10.0.0.11:8008\"",
                        ),
                    }
                }
                if listen.iter().any(|a| a.ip().is_unspecified()) {
                    self.warn(
                        "api.listen",
                        "the API listens on every address of this host (0.0.0.0 or [::])",
                        "remove api.listen (default: this node's address and 127.0.0.1), or list \
                         only the addresses the CLI and the peer use",
                    );
                }
            }
        }
        let token_file = raw
            .token_file
            .as_ref()
            .and_then(|p| self.abs_path("api.token_file", p));
        if raw.token_file.is_none() {
            self.warn(
                "api.token_file",
                "no token_file: mutating endpoints (switchover, maintenance, rejoin) are refused",
                "create a token file readable by root only and set token_file",
            );
        }
        let tls = self.api_tls(raw);
        let max_connections = self.int(
            "api.max_connections",
            raw.max_connections,
            defaults::API_MAX_CONNECTIONS,
            1..=65_536,
            "max_connections must be between 1 and 65536",
            "use e.g. 128; keep it well below the daemon's open-file limit (LimitNOFILE)",
        );
        let header_timeout = self.duration(
            "api.header_timeout",
            raw.header_timeout.as_ref(),
            defaults::API_HEADER_TIMEOUT,
            Duration::from_millis(100)..=Duration::from_secs(60),
            "the time a client has to send a request header",
        );
        let idle_timeout = self.duration(
            "api.idle_timeout",
            raw.idle_timeout.as_ref(),
            defaults::API_IDLE_TIMEOUT,
            Duration::from_millis(100)..=Duration::from_secs(3600),
            "the time a connection may stay idle",
        );
        Api {
            listen,
            token_file,
            tls,
            max_connections,
            header_timeout,
            idle_timeout,
        }
    }

    /// `api.tls_*`: all of cert, key and CA, or none of them.
    fn api_tls(&mut self, raw: &RawApi) -> Option<ApiTls> {
        let cert = raw
            .tls_cert_file
            .as_ref()
            .and_then(|p| self.abs_path("api.tls_cert_file", p));
        let key = raw
            .tls_key_file
            .as_ref()
            .and_then(|p| self.abs_path("api.tls_key_file", p));
        let ca = raw
            .tls_ca_file
            .as_ref()
            .and_then(|p| self.abs_path("api.tls_ca_file", p));
        let client_ca = raw
            .tls_client_ca_file
            .as_ref()
            .and_then(|p| self.abs_path("api.tls_client_ca_file", p));
        let any = raw.tls_cert_file.is_some()
            || raw.tls_key_file.is_some()
            || raw.tls_ca_file.is_some()
            || raw.tls_client_ca_file.is_some();
        if !any {
            return None;
        }
        let mut complete = true;
        for (key_name, present, what) in [
            (
                "api.tls_cert_file",
                raw.tls_cert_file.is_some(),
                "the PEM certificate of this node (with its address as a subject alternative name)",
            ),
            (
                "api.tls_key_file",
                raw.tls_key_file.is_some(),
                "the PEM private key of tls_cert_file",
            ),
            (
                "api.tls_ca_file",
                raw.tls_ca_file.is_some(),
                "the PEM CA certificate the CLI verifies both daemons' certificates with \
                 (for a self-signed certificate, the certificate itself)",
            ),
        ] {
            if !present {
                complete = false;
                self.error(
                    key_name,
                    None,
                    "TLS needs tls_cert_file, tls_key_file and tls_ca_file together",
                    format!("set {key_name} to {what}, or remove every api.tls_* key"),
                );
            }
        }
        match (cert, key, ca) {
            (Some(cert_file), Some(key_file), Some(ca_file)) if complete => Some(ApiTls {
                cert_file,
                key_file,
                ca_file,
                client_ca_file: client_ca,
            }),
            _ => None,
        }
    }

    fn journal(&mut self, raw: &RawJournal) -> Journal {
        let path = match &raw.path {
            None => PathBuf::from(defaults::JOURNAL_PATH),
            Some(p) => self
                .abs_path("journal.path", p)
                .unwrap_or_else(|| PathBuf::from(defaults::JOURNAL_PATH)),
        };
        Journal { path }
    }
}

/// The API's addresses without `api.listen`: this node's own address (the peer and a CLI on
/// another host reach it there) and loopback (a CLI on this host), never every address.
pub(crate) fn default_listen(own: Ipv4Addr) -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(IpAddr::V4(own), defaults::API_PORT),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), defaults::API_PORT),
    ]
}

/// An address a host can own: not multicast, broadcast, unspecified or loopback.
fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_multicast() || a.is_broadcast() || a.is_unspecified() || a.is_loopback())
}

/// `"64kB"`, `"1 MiB"`, `"16MB"`, `"512"`: kB/MB/GB are powers of 1024 as in PostgreSQL's own
/// settings; KiB/MiB/GiB the same, for those who write them so.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err("it must start with a number".into());
    }
    let n: u64 = digits.parse().map_err(|e| format!("{e}"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (use B, kB, MB or GB)")),
    };
    n.checked_mul(factor).ok_or_else(|| "too large".to_string())
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64kB"), Ok(65536));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("16MB"), Ok(16 << 20));
        assert!(parse_size("1 mb").unwrap_err().contains("unknown unit"));
        assert!(parse_size("MB").unwrap_err().contains("number"));
    }
}
