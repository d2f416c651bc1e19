//! keepalived statements (one node's file, or both) → a whpg-ha configuration, plus the list of
//! everything that could not be mapped.
//!
//! Pure: the files arrive parsed ([`super::keepalived::Loaded`]) and scripts are read through a callback,
//! so every rule here is testable on text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};
use std::net::Ipv4Addr;

use super::keepalived::{Loaded, Loc, Stmt, Word};
use super::scripts::{self, FactKind, FlavorHint, ScriptScan};

/// One keepalived.conf as given on the command line, with its includes expanded.
#[derive(Debug, Clone)]
pub struct ConfInput {
    pub path: String,
    pub loaded: Loaded,
}

/// What the caller found for a script path written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptLookup {
    Found { path: String, text: String },
    Missing { tried: Vec<String> },
}

/// Choices the operator makes on the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Names of the nodes: the first file's node, then the second file's (or the peer).
    pub node_names: Option<Vec<String>>,
    /// Addresses of the nodes, in the same order (needed for multicast setups without `mcast_src_ip`).
    pub node_addresses: Option<Vec<Ipv4Addr>>,
    /// Which `vrrp_instance` to import when a file has several.
    pub instance: Option<String>,
    /// The data directory, when no script sets it.
    pub data_directory: Option<String>,
}

/// A keepalived option (or script value) that is not carried into the output, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub loc: Option<Loc>,
    pub what: String,
    pub why: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(loc) => write!(f, "{loc}: {} — {}", self.what, self.why),
            None => write!(f, "{} — {}", self.what, self.why),
        }
    }
}

/// The result of a successful import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The whpg-ha configuration file (it holds the VRRP password, if there is one).
    pub toml: String,
    pub not_imported: Vec<Note>,
    /// What was derived or assumed rather than read (node names, a peer from `unicast_peer`, ...).
    pub assumptions: Vec<String>,
    /// The `[nodes.*]` names, the first file's node first.
    pub node_names: Vec<String>,
}

/// Why an import failed: the places involved, what is wrong, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub locs: Vec<Loc>,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let places: Vec<String> = self.locs.iter().map(Loc::to_string).collect();
        if places.is_empty() {
            write!(f, "{} — fix: {}", self.message, self.fix)
        } else {
            write!(
                f,
                "{}: {} — fix: {}",
                places.join(", "),
                self.message,
                self.fix
            )
        }
    }
}

fn err(locs: Vec<Loc>, message: impl Into<String>, fix: impl Into<String>) -> ImportError {
    ImportError {
        locs,
        message: message.into(),
        fix: fix.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The typed view of one file.

#[derive(Debug, Clone, PartialEq)]
struct Val<T> {
    v: T,
    loc: Loc,
}

#[derive(Debug, Clone, Default)]
struct Garp {
    repeat: Option<Val<u64>>,
    interval_ms: Option<Val<u64>>,
    master_delay_ms: Option<Val<u64>>,
    refresh_ms: Option<Val<u64>>,
    min_garp: Option<Val<bool>>,
}

#[derive(Debug, Clone, Default)]
struct Global {
    router_id: Option<Val<String>>,
    version: Option<Val<u8>>,
    script_user: Option<Val<String>>,
    garp: Garp,
}

#[derive(Debug, Clone)]
struct VrrpScript {
    name: String,
    loc: Loc,
    command: Option<Val<String>>,
    interval_ms: Option<Val<u64>>,
    timeout_ms: Option<Val<u64>>,
    weight: Option<Val<i64>>,
    rise: Option<Val<u64>>,
    fall: Option<Val<u64>>,
    user: Option<Val<String>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Vip {
    address: Ipv4Addr,
    prefix: u8,
    device: Option<String>,
    label: Option<String>,
    loc: Loc,
}

#[derive(Debug, Clone)]
struct Track {
    name: String,
    weight: Option<i64>,
    loc: Loc,
}

#[derive(Debug, Clone)]
struct Instance {
    name: String,
    loc: Loc,
    state: Option<Val<String>>,
    interface: Option<Val<String>>,
    vrid: Option<Val<u8>>,
    priority: Option<Val<u8>>,
    advert_ms: Option<Val<u64>>,
    version: Option<Val<u8>>,
    auth_type: Option<Val<String>>,
    auth_pass: Option<Val<String>>,
    unicast_src: Option<Val<Ipv4Addr>>,
    mcast_src: Option<Val<Ipv4Addr>>,
    peers: Vec<Val<Ipv4Addr>>,
    unicast_block: Option<Loc>,
    vips: Vec<Vip>,
    tracks: Vec<Track>,
    nopreempt: Option<Loc>,
    preempt: Option<Loc>,
    preempt_delay: Option<Val<String>>,
    garp: Garp,
    v3_checksum_as_v2: Option<Val<bool>>,
    /// notify_* keyword and its command line.
    notify: Vec<(String, Val<String>)>,
    notes: Vec<Note>,
}

#[derive(Debug, Clone)]
struct ConfData {
    path: String,
    global: Global,
    scripts: Vec<VrrpScript>,
    instances: Vec<Instance>,
    notes: Vec<Note>,
}

fn note(loc: &Loc, what: impl Into<String>, why: impl Into<String>) -> Note {
    Note {
        loc: Some(loc.clone()),
        what: what.into(),
        why: why.into(),
    }
}

/// The statement for messages, with any secret-looking value masked.
fn shown(stmt: &Stmt) -> String {
    let k = stmt.name().to_ascii_lowercase();
    if k.contains("pass") || k.contains("key") || k.contains("secret") {
        let mut s = stmt.name().to_string();
        if !stmt.args.is_empty() {
            s.push_str(" ********");
        }
        if stmt.block.is_some() {
            s.push_str(" { ... }");
        }
        s
    } else {
        stmt.summary()
    }
}

/// Splits statements written on one line (`authentication { auth_type PASS auth_pass x }`) at the
/// block's known keywords.
fn resplit(stmts: &[Stmt], known: &[&str]) -> Vec<Stmt> {
    let mut out = Vec::new();
    for s in stmts {
        if !known.contains(&s.name()) || s.block.is_some() {
            out.push(s.clone());
            continue;
        }
        let mut cur = Stmt {
            keyword: s.keyword.clone(),
            args: Vec::new(),
            block: None,
        };
        for a in &s.args {
            if known.contains(&a.text.as_str()) {
                out.push(std::mem::replace(
                    &mut cur,
                    Stmt {
                        keyword: a.clone(),
                        args: Vec::new(),
                        block: None,
                    },
                ));
            } else {
                cur.args.push(a.clone());
            }
        }
        out.push(cur);
    }
    out
}

struct Parser<'a> {
    errors: &'a mut Vec<ImportError>,
}

impl Parser<'_> {
    fn arg<'s>(&mut self, s: &'s Stmt) -> Option<&'s Word> {
        let a = s.args.first();
        if a.is_none() {
            self.errors.push(err(
                vec![s.loc().clone()],
                format!("{} has no value", s.name()),
                format!("write `{} VALUE` or remove the line", s.name()),
            ));
        }
        a
    }

    fn int(&mut self, s: &Stmt, min: i64, max: i64) -> Option<Val<i64>> {
        let w = self.arg(s)?;
        match w.text.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Some(Val {
                v,
                loc: w.loc.clone(),
            }),
            _ => {
                self.errors.push(err(
                    vec![w.loc.clone()],
                    format!(
                        "{} {}: expected a whole number from {min} to {max}",
                        s.name(),
                        w.text
                    ),
                    "correct the value in the keepalived file and run the import again",
                ));
                None
            }
        }
    }

    fn uint(&mut self, s: &Stmt, min: u64, max: u64) -> Option<Val<u64>> {
        self.int(s, min as i64, max as i64).map(|v| Val {
            v: v.v as u64,
            loc: v.loc,
        })
    }

    fn u8v(&mut self, s: &Stmt, min: u8, max: u8) -> Option<Val<u8>> {
        self.int(s, min.into(), max.into()).map(|v| Val {
            v: v.v as u8,
            loc: v.loc,
        })
    }

    /// keepalived's decimal seconds (`1`, `0.1`, `2.5`) → milliseconds, rounded up to a whole ms.
    fn seconds(&mut self, s: &Stmt) -> Option<Val<u64>> {
        let w = self.arg(s)?;
        match seconds_to_ms(&w.text) {
            Some(v) => Some(Val {
                v,
                loc: w.loc.clone(),
            }),
            None => {
                self.errors.push(err(
                    vec![w.loc.clone()],
                    format!("{} {}: expected seconds, e.g. 1 or 0.5", s.name(), w.text),
                    "correct the value in the keepalived file and run the import again",
                ));
                None
            }
        }
    }

    fn ipv4(&mut self, w: &Word, what: &str) -> Option<Ipv4Addr> {
        match w.text.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let (message, fix) = if scripts::is_placeholder(&w.text) {
                    (
                        format!("{what} is still the template placeholder {}", w.text),
                        "fill in the real address in the keepalived file".to_string(),
                    )
                } else if w.text.contains(':') {
                    (
                        format!("{what} {} is IPv6; whpg-ha supports IPv4 only", w.text),
                        "use the IPv4 address of the node".to_string(),
                    )
                } else {
                    (
                        format!("{what} {} is not an IPv4 address", w.text),
                        "correct the address in the keepalived file".to_string(),
                    )
                };
                self.errors.push(err(vec![w.loc.clone()], message, fix));
                None
            }
        }
    }

    fn boolean(&mut self, s: &Stmt) -> Option<Val<bool>> {
        let Some(w) = s.args.first() else {
            return Some(Val {
                v: true,
                loc: s.loc().clone(),
            });
        };
        let v = match w.text.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => true,
            "off" | "false" | "no" => false,
            _ => {
                self.errors.push(err(
                    vec![w.loc.clone()],
                    format!(
                        "{} {}: expected on/off, true/false or yes/no",
                        s.name(),
                        w.text
                    ),
                    "correct the value in the keepalived file",
                ));
                return None;
            }
        };
        Some(Val {
            v,
            loc: w.loc.clone(),
        })
    }

    fn string(&mut self, s: &Stmt) -> Option<Val<String>> {
        self.arg(s).map(|w| Val {
            v: w.text.clone(),
            loc: w.loc.clone(),
        })
    }
}

/// `1` → 1000, `0.1` → 100, `.5` → 500; rounded up to a whole millisecond.
pub fn seconds_to_ms(text: &str) -> Option<u64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut micros: u64 = 0;
    for (i, c) in frac.chars().enumerate() {
        let d = u64::from(c.to_digit(10)?);
        if i < 6 {
            micros += d * 10u64.pow(5 - i as u32);
        } else if d > 0 && micros % 1000 == 0 {
            micros += 1; // beyond µs: round up below
        }
    }
    whole.checked_mul(1000)?.checked_add(micros.div_ceil(1000))
}

const GLOBAL_WHY: &[(&str, &str)] = &[
    ("router_id", "whpg-ha names nodes by their [nodes.*] entry"),
    (
        "enable_script_security",
        "whpg-ha runs no scripts: commands are argv lists run as database.os_user",
    ),
    (
        "script_user",
        "whpg-ha runs its commands as database.os_user",
    ),
    (
        "notification_email",
        "whpg-ha sends no mail; watch /metrics, /status or the journal",
    ),
    (
        "notification_email_from",
        "whpg-ha sends no mail; watch /metrics, /status or the journal",
    ),
    (
        "smtp_server",
        "whpg-ha sends no mail; watch /metrics, /status or the journal",
    ),
    (
        "smtp_connect_timeout",
        "whpg-ha sends no mail; watch /metrics, /status or the journal",
    ),
    (
        "vrrp_skip_check_adv_addr",
        "whpg-ha always checks adverts the way keepalived does by default",
    ),
    (
        "vrrp_strict",
        "whpg-ha has no strict mode; it never adds firewall rules",
    ),
    (
        "vrrp_gna_interval",
        "IPv6 neighbour adverts: whpg-ha supports IPv4 VIPs only",
    ),
    (
        "vrrp_garp_lower_prio_repeat",
        "whpg-ha sends a full burst (vrrp.garp.repeat) on a lower-priority advert",
    ),
    (
        "vrrp_garp_lower_prio_delay",
        "whpg-ha sends no second burst after a lower-priority advert",
    ),
    (
        "vrrp_garp_master_refresh_repeat",
        "whpg-ha's refresh burst is vrrp.garp.repeat ARPs",
    ),
    (
        "vrrp_mcast_group4",
        "whpg-ha's multicast group is 224.0.0.18",
    ),
];

const INSTANCE_WHY: &[(&str, &str)] = &[
    ("state", "whpg-ha decides the role from the priorities and the database's own state"),
    ("notify_master", "whpg-ha promotes with commands.promote (gpactivatestandby or pg_ctl promote) and verifies it; the script was read only for the values it sets"),
    ("notify_backup", "whpg-ha logs every transition in its journal; the script was read only for the values it sets"),
    ("notify_fault", "whpg-ha fences an isolated node itself (failover.fence_when_isolated, commands.fence); the script was read only for the values it sets"),
    ("notify_stop", "whpg-ha removes the VIP on stop itself; the script was read only for the values it sets"),
    ("notify", "whpg-ha logs every transition in its journal; the script was read only for the values it sets"),
    ("track_interface", "whpg-ha follows vrrp.interface only"),
    ("dont_track_primary", "whpg-ha always follows vrrp.interface"),
    ("use_vmac", "whpg-ha uses the interface's own MAC address"),
    ("vmac_xmit_base", "whpg-ha uses the interface's own MAC address"),
    ("mcast_dst_ip", "whpg-ha's multicast group is 224.0.0.18"),
    ("garp_master_refresh_repeat", "whpg-ha's refresh burst is vrrp.garp.repeat ARPs"),
    ("garp_lower_prio_repeat", "whpg-ha sends a full burst (vrrp.garp.repeat) on a lower-priority advert"),
    ("garp_lower_prio_delay", "whpg-ha sends no second burst after a lower-priority advert"),
    ("smtp_alert", "whpg-ha sends no mail; watch /metrics, /status or the journal"),
    ("virtual_ipaddress_excluded", "not carried over; add a [[vip]] for each address that must follow the coordinator"),
    ("virtual_routes", "whpg-ha manages addresses only, no routes"),
    ("virtual_rules", "whpg-ha manages addresses only, no rules"),
    ("track_file", "whpg-ha has no file trackers"),
    ("track_process", "whpg-ha probes the database over its wire protocol instead"),
    ("track_bfd", "whpg-ha has no BFD"),
    ("strict_mode", "whpg-ha has no strict mode"),
    ("accept", "whpg-ha always accepts traffic to the VIP on the master"),
    ("no_accept", "whpg-ha always accepts traffic to the VIP on the master"),
    ("check_unicast_src", "whpg-ha accepts unicast adverts from the peer's node address only"),
    ("unicast_ttl", "whpg-ha sends with TTL 255"),
    ("preempt_delay", "whpg-ha does not preempt (vrrp.preempt = false): a recovered coordinator is rebuilt as the standby first"),
];

fn why(table: &[(&str, &str)], keyword: &str) -> String {
    table
        .iter()
        .find(|(k, _)| *k == keyword)
        .map(|(_, w)| (*w).to_string())
        .unwrap_or_else(|| {
            if keyword.starts_with('$') {
                "keepalived parameter definitions are not expanded by the import".into()
            } else if keyword.starts_with('@') {
                "keepalived conditional configuration is not expanded by the import".into()
            } else {
                "no whpg-ha equivalent".into()
            }
        })
}

const GLOBAL_KEYS: &[&str] = &[
    "router_id",
    "vrrp_version",
    "script_user",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_refresh",
    "vrrp_garp_interval",
    "vrrp_min_garp",
    "enable_script_security",
];

fn parse_garp_stmt(p: &mut Parser<'_>, s: &Stmt, prefix: &str, garp: &mut Garp) -> bool {
    let Some(rest) = s.name().strip_prefix(prefix) else {
        return false;
    };
    match rest {
        "garp_master_repeat" => garp.repeat = p.uint(s, 0, 255),
        "garp_master_delay" => garp.master_delay_ms = p.seconds(s),
        "garp_master_refresh" => garp.refresh_ms = p.seconds(s),
        "garp_interval" => garp.interval_ms = p.seconds(s),
        "min_garp" => garp.min_garp = p.boolean(s),
        _ => return false,
    }
    true
}

fn parse_global(p: &mut Parser<'_>, block: &[Stmt], g: &mut Global, notes: &mut Vec<Note>) {
    for s in resplit(block, GLOBAL_KEYS) {
        if parse_garp_stmt(p, &s, "vrrp_", &mut g.garp) {
            continue;
        }
        match s.name() {
            "router_id" => g.router_id = p.string(&s),
            "vrrp_version" => g.version = p.u8v(&s, 2, 3),
            "script_user" => {
                g.script_user = p.string(&s);
                notes.push(note(s.loc(), shown(&s), why(GLOBAL_WHY, "script_user")));
            }
            other => notes.push(note(s.loc(), shown(&s), why(GLOBAL_WHY, other))),
        }
    }
}

const SCRIPT_KEYS: &[&str] = &[
    "script",
    "interval",
    "timeout",
    "weight",
    "rise",
    "fall",
    "user",
    "init_fail",
];

fn parse_vrrp_script(p: &mut Parser<'_>, stmt: &Stmt, notes: &mut Vec<Note>) -> VrrpScript {
    let mut vs = VrrpScript {
        name: stmt
            .args
            .first()
            .map(|w| w.text.clone())
            .unwrap_or_default(),
        loc: stmt.loc().clone(),
        command: None,
        interval_ms: None,
        timeout_ms: None,
        weight: None,
        rise: None,
        fall: None,
        user: None,
    };
    for s in resplit(stmt.block.as_deref().unwrap_or(&[]), SCRIPT_KEYS) {
        match s.name() {
            "script" => {
                // keepalived joins unquoted words into the command line.
                if let Some(first) = s.args.first() {
                    let text: Vec<&str> = s.args.iter().map(|w| w.text.as_str()).collect();
                    vs.command = Some(Val {
                        v: text.join(" "),
                        loc: first.loc.clone(),
                    });
                } else {
                    p.arg(&s);
                }
            }
            "interval" => vs.interval_ms = p.seconds(&s),
            "timeout" => vs.timeout_ms = p.seconds(&s),
            "weight" => {
                vs.weight = p.int(&s, -254, 254);
                if s.args.len() > 1 {
                    notes.push(note(
                        s.loc(),
                        shown(&s),
                        "`reverse` has no whpg-ha equivalent; the weight is read as written",
                    ));
                }
            }
            "rise" => vs.rise = p.uint(&s, 1, 1000),
            "fall" => vs.fall = p.uint(&s, 1, 1000),
            "user" => {
                vs.user = p.string(&s);
                notes.push(note(
                    s.loc(),
                    shown(&s),
                    "whpg-ha probes the database itself; its commands run as database.os_user",
                ));
            }
            _ => notes.push(note(s.loc(), shown(&s), "no whpg-ha equivalent")),
        }
    }
    vs
}

const INSTANCE_KEYS: &[&str] = &[
    "state",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "unicast_src_ip",
    "mcast_src_ip",
    "nopreempt",
    "preempt",
    "preempt_delay",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_master_refresh",
    "v3_checksum_as_v2",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
];

fn parse_instance(p: &mut Parser<'_>, stmt: &Stmt) -> Instance {
    let mut i = Instance {
        name: stmt
            .args
            .first()
            .map(|w| w.text.clone())
            .unwrap_or_default(),
        loc: stmt.loc().clone(),
        state: None,
        interface: None,
        vrid: None,
        priority: None,
        advert_ms: None,
        version: None,
        auth_type: None,
        auth_pass: None,
        unicast_src: None,
        mcast_src: None,
        peers: Vec::new(),
        unicast_block: None,
        vips: Vec::new(),
        tracks: Vec::new(),
        nopreempt: None,
        preempt: None,
        preempt_delay: None,
        garp: Garp::default(),
        v3_checksum_as_v2: None,
        notify: Vec::new(),
        notes: Vec::new(),
    };
    for s in resplit(stmt.block.as_deref().unwrap_or(&[]), INSTANCE_KEYS) {
        if parse_garp_stmt(p, &s, "", &mut i.garp) {
            continue;
        }
        match s.name() {
            "state" => {
                i.state = p.string(&s);
                i.notes
                    .push(note(s.loc(), shown(&s), why(INSTANCE_WHY, "state")));
            }
            "interface" => i.interface = p.string(&s),
            "virtual_router_id" => i.vrid = p.u8v(&s, 1, 255),
            "priority" => i.priority = p.u8v(&s, 1, 255),
            "advert_int" => i.advert_ms = p.seconds(&s),
            "version" => i.version = p.u8v(&s, 2, 3),
            "unicast_src_ip" => {
                if let Some(w) = p.arg(&s) {
                    let w = w.clone();
                    i.unicast_src = p.ipv4(&w, "unicast_src_ip").map(|v| Val { v, loc: w.loc });
                }
            }
            "mcast_src_ip" => {
                if let Some(w) = p.arg(&s) {
                    let w = w.clone();
                    i.mcast_src = p.ipv4(&w, "mcast_src_ip").map(|v| Val { v, loc: w.loc });
                }
            }
            "nopreempt" => i.nopreempt = Some(s.loc().clone()),
            "preempt" => i.preempt = Some(s.loc().clone()),
            "preempt_delay" => {
                i.preempt_delay = p.string(&s);
                i.notes
                    .push(note(s.loc(), shown(&s), why(INSTANCE_WHY, "preempt_delay")));
            }
            "v3_checksum_as_v2" => i.v3_checksum_as_v2 = p.boolean(&s),
            "authentication" => parse_auth(p, &s, &mut i),
            "unicast_peer" => {
                i.unicast_block = Some(s.loc().clone());
                for peer in s.block.as_deref().unwrap_or(&[]) {
                    let words: Vec<&Word> = std::iter::once(&peer.keyword)
                        .chain(peer.args.iter())
                        .collect();
                    let mut k = 0;
                    while k < words.len() {
                        let w = words[k];
                        if matches!(w.text.as_str(), "min_ttl" | "max_ttl") {
                            i.notes.push(note(
                                &w.loc,
                                format!(
                                    "unicast_peer {} {}",
                                    w.text,
                                    words.get(k + 1).map(|x| x.text.as_str()).unwrap_or("")
                                ),
                                "whpg-ha accepts adverts with TTL 255 only",
                            ));
                            k += 2;
                            continue;
                        }
                        if let Some(a) = p.ipv4(w, "unicast_peer") {
                            i.peers.push(Val {
                                v: a,
                                loc: w.loc.clone(),
                            });
                        }
                        k += 1;
                    }
                }
            }
            "virtual_ipaddress" => {
                for line in s.block.as_deref().unwrap_or(&[]) {
                    parse_vip_line(p, line, &mut i);
                }
            }
            "track_script" => {
                for t in s.block.as_deref().unwrap_or(&[]) {
                    let words: Vec<&Word> =
                        std::iter::once(&t.keyword).chain(t.args.iter()).collect();
                    let mut k = 0;
                    while k < words.len() {
                        let w = words[k];
                        match w.text.as_str() {
                            "weight" => {
                                let value = words.get(k + 1);
                                match (value.and_then(|v| v.text.parse::<i64>().ok()), i.tracks.last_mut()) {
                                    (Some(v), Some(last)) => last.weight = Some(v),
                                    _ => p.errors.push(err(
                                        vec![w.loc.clone()],
                                        "track_script weight without a script name or a number before/after it".to_string(),
                                        "write `SCRIPT_NAME weight N`",
                                    )),
                                }
                                k += 2;
                            }
                            "reverse" | "noreverse" => {
                                i.notes.push(note(
                                    &w.loc,
                                    format!("track_script {}", w.text),
                                    "no whpg-ha equivalent; the weight is read as written",
                                ));
                                k += 1;
                            }
                            name => {
                                i.tracks.push(Track {
                                    name: name.to_string(),
                                    weight: None,
                                    loc: w.loc.clone(),
                                });
                                k += 1;
                            }
                        }
                    }
                }
            }
            k @ ("notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify") => {
                if let Some(w) = p.arg(&s) {
                    i.notify.push((
                        k.to_string(),
                        Val {
                            v: w.text.clone(),
                            loc: w.loc.clone(),
                        },
                    ));
                }
                i.notes.push(note(s.loc(), shown(&s), why(INSTANCE_WHY, k)));
            }
            other => i
                .notes
                .push(note(s.loc(), shown(&s), why(INSTANCE_WHY, other))),
        }
    }
    i
}

fn parse_auth(p: &mut Parser<'_>, s: &Stmt, i: &mut Instance) {
    for a in resplit(
        s.block.as_deref().unwrap_or(&[]),
        &["auth_type", "auth_pass"],
    ) {
        match a.name() {
            "auth_type" => i.auth_type = p.string(&a),
            "auth_pass" => i.auth_pass = p.string(&a),
            _ => i
                .notes
                .push(note(a.loc(), shown(&a), "no whpg-ha equivalent")),
        }
    }
}

/// One line of `virtual_ipaddress { }`: `ADDR[/MASK] [dev D] [label L] [brd B] ...`, possibly several
/// addresses on one line.
fn parse_vip_line(p: &mut Parser<'_>, line: &Stmt, i: &mut Instance) {
    let words: Vec<&Word> = std::iter::once(&line.keyword)
        .chain(line.args.iter())
        .collect();
    let mut k = 0;
    while k < words.len() {
        let w = words[k];
        let value = words.get(k + 1).map(|v| v.text.clone());
        match w.text.as_str() {
            "dev" | "label" => {
                let Some(last) = i.vips.last_mut() else {
                    k += 1;
                    continue;
                };
                match value {
                    Some(v) if w.text == "dev" => last.device = Some(v),
                    Some(v) => last.label = Some(v),
                    None => p.errors.push(err(
                        vec![w.loc.clone()],
                        format!("virtual_ipaddress: {} without a value", w.text),
                        format!("write `{} NAME`", w.text),
                    )),
                }
                k += 2;
            }
            "brd" | "scope" | "peer" | "preferred_lft" | "track_group" => {
                i.notes.push(note(
                    &w.loc,
                    format!(
                        "virtual_ipaddress option {} {}",
                        w.text,
                        value.unwrap_or_default()
                    ),
                    "whpg-ha adds the VIP with its prefix, device and label only",
                ));
                k += 2;
            }
            "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
            | "no_track" | "use_vmac" => {
                i.notes.push(note(
                    &w.loc,
                    format!("virtual_ipaddress option {}", w.text),
                    "whpg-ha adds the VIP with its prefix, device and label only",
                ));
                k += 1;
            }
            text => {
                let (addr, prefix) = match text.split_once('/') {
                    Some((a, m)) => (a, Some(m)),
                    None => (text, None),
                };
                if scripts::is_placeholder(text) {
                    p.errors.push(err(
                        vec![w.loc.clone()],
                        format!("virtual_ipaddress is still the template placeholder {text}"),
                        "fill in the VIP (e.g. 192.168.56.100/24) in the keepalived file",
                    ));
                    k += 1;
                    continue;
                }
                let parsed = addr.parse::<Ipv4Addr>();
                let prefix_v = match prefix {
                    None => Some(32),
                    Some(m) => m.parse::<u8>().ok().filter(|m| *m <= 32),
                };
                match (parsed, prefix_v) {
                    (Ok(a), Some(m)) => i.vips.push(Vip {
                        address: a,
                        prefix: m,
                        device: None,
                        label: None,
                        loc: w.loc.clone(),
                    }),
                    _ if addr.contains(':') => p.errors.push(err(
                        vec![w.loc.clone()],
                        format!("virtual_ipaddress {text} is IPv6; whpg-ha supports IPv4 VIPs only"),
                        "keep an IPv6 VIP on keepalived, or drop it",
                    )),
                    _ => p.errors.push(err(
                        vec![w.loc.clone()],
                        format!("virtual_ipaddress {text}: expected A.B.C.D or A.B.C.D/PREFIX (prefix 0-32)"),
                        "correct the address in the keepalived file",
                    )),
                }
                k += 1;
            }
        }
    }
}

fn parse_conf(input: &ConfInput, errors: &mut Vec<ImportError>) -> ConfData {
    let mut p = Parser { errors };
    let mut data = ConfData {
        path: input.path.clone(),
        global: Global::default(),
        scripts: Vec::new(),
        instances: Vec::new(),
        notes: Vec::new(),
    };
    for (loc, pattern) in &input.loaded.empty_includes {
        data.notes.push(note(
            loc,
            format!("include {pattern}"),
            "matched no file, so nothing was read from it",
        ));
    }
    for s in resplit(&input.loaded.stmts, &[]) {
        match s.name() {
            "global_defs" => {
                let block = s.block.clone().unwrap_or_default();
                parse_global(&mut p, &block, &mut data.global, &mut data.notes);
            }
            "vrrp_script" => {
                let vs = parse_vrrp_script(&mut p, &s, &mut data.notes);
                data.scripts.push(vs);
            }
            "vrrp_instance" => data.instances.push(parse_instance(&mut p, &s)),
            "vrrp_sync_group" => data.notes.push(note(
                s.loc(),
                shown(&s),
                "whpg-ha manages one VRRP instance; sync groups have no equivalent",
            )),
            "virtual_server" | "virtual_server_group" | "real_server" => data.notes.push(note(
                s.loc(),
                shown(&s),
                "LVS load balancing is not part of whpg-ha",
            )),
            other => data
                .notes
                .push(note(s.loc(), shown(&s), why(GLOBAL_WHY, other))),
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------
// Merging the files into one configuration.

/// The node described by one file, or assumed from the other's `unicast_peer`.
#[derive(Debug, Clone)]
struct NodeOut {
    name: String,
    name_from: String,
    address: Ipv4Addr,
    address_from: Option<Loc>,
    priority: u8,
    priority_from: Option<Loc>,
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The same setting in both files must agree; a difference is an error naming both places.
fn same<T: PartialEq + fmt::Display>(
    errors: &mut Vec<ImportError>,
    what: &str,
    a: Option<&Val<T>>,
    b: Option<&Val<T>>,
    files: (&str, &str),
) {
    match (a, b) {
        (Some(x), Some(y)) if x.v != y.v => errors.push(err(
            vec![x.loc.clone(), y.loc.clone()],
            format!("{what} differs between the two files: {} and {}", x.v, y.v),
            "both nodes must use the same value (they could not have paired otherwise); correct one file and run the import again",
        )),
        (Some(x), None) => errors.push(err(
            vec![x.loc.clone()],
            format!("{what} is set in {} but not in {}", files.0, files.1),
            "set it the same way in both files",
        )),
        (None, Some(y)) => errors.push(err(
            vec![y.loc.clone()],
            format!("{what} is set in {} but not in {}", files.1, files.0),
            "set it the same way in both files",
        )),
        _ => {}
    }
}

fn fmt_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// What one instance's tracked scripts are.
#[derive(Debug, Clone)]
struct Checks {
    db: Option<(VrrpScript, Option<i64>)>,
    /// Other tracked checks (not the database check, not a ping).
    other: Vec<VrrpScript>,
    ping: Vec<VrrpScript>,
}

/// Converts the files (one node's, or both) into a whpg-ha configuration. `read_script(path, conf)`
/// returns the text of a script named in `conf`.
pub fn convert(
    confs: &[ConfInput],
    opts: &Options,
    read_script: &mut dyn FnMut(&str, &str) -> ScriptLookup,
) -> Result<Imported, Vec<ImportError>> {
    let mut errors = Vec::new();
    if confs.is_empty() || confs.len() > 2 {
        return Err(vec![err(
            vec![],
            format!("{} keepalived files given", confs.len()),
            "give one node's keepalived.conf, or both nodes' (e.g. keepalived.conf.master keepalived.conf.backup)",
        )]);
    }
    let datas: Vec<ConfData> = confs.iter().map(|c| parse_conf(c, &mut errors)).collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut notes: Vec<Note> = Vec::new();
    let mut assumptions: Vec<String> = Vec::new();

    // -- the instance
    let mut chosen: Vec<Instance> = Vec::new();
    for d in &datas {
        let list: Vec<String> = d
            .instances
            .iter()
            .map(|i| {
                let vips: Vec<String> = i
                    .vips
                    .iter()
                    .map(|v| format!("{}/{}", v.address, v.prefix))
                    .collect();
                format!(
                    "{} (virtual_router_id {}, VIPs {}) at {}",
                    i.name,
                    i.vrid
                        .as_ref()
                        .map(|v| v.v.to_string())
                        .unwrap_or("unset".into()),
                    if vips.is_empty() {
                        "none".into()
                    } else {
                        vips.join(" ")
                    },
                    i.loc
                )
            })
            .collect();
        let pick = match (&opts.instance, d.instances.len()) {
            (_, 0) => {
                errors.push(err(
                    vec![],
                    format!("{} has no vrrp_instance", d.path),
                    "give the keepalived.conf that holds the coordinator's vrrp_instance (check its include lines)",
                ));
                continue;
            }
            (Some(name), _) => match d.instances.iter().find(|i| &i.name == name) {
                Some(i) => i.clone(),
                None => {
                    errors.push(err(
                        vec![],
                        format!(
                            "{} has no vrrp_instance {name}; it has: {}",
                            d.path,
                            list.join("; ")
                        ),
                        "pass --instance with one of these names",
                    ));
                    continue;
                }
            },
            (None, 1) => d.instances[0].clone(),
            (None, n) => {
                errors.push(err(
                    vec![],
                    format!(
                        "{} has {n} vrrp_instances and whpg-ha manages one: {}",
                        d.path,
                        list.join("; ")
                    ),
                    "pass --instance NAME with the instance that carries the coordinator's VIP",
                ));
                continue;
            }
        };
        for other in d.instances.iter().filter(|i| i.name != pick.name) {
            notes.push(note(
                &other.loc,
                format!("vrrp_instance {}", other.name),
                "another instance; only the coordinator's instance is imported",
            ));
        }
        chosen.push(pick);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (d, i) in datas.iter().zip(&chosen) {
        notes.extend(d.notes.iter().cloned());
        notes.extend(i.notes.iter().cloned());
    }
    let two = chosen.len() == 2;
    let a = &chosen[0];
    let files = (
        datas[0].path.as_str(),
        datas.get(1).map(|d| d.path.as_str()).unwrap_or(""),
    );

    // -- settings both nodes share
    let version_of = |d: &ConfData, i: &Instance| -> Val<u8> {
        i.version
            .clone()
            .or_else(|| d.global.version.clone())
            .unwrap_or(Val {
                v: 2,
                loc: i.loc.clone(),
            })
    };
    let version = version_of(&datas[0], a);
    if two {
        let b = &chosen[1];
        same(
            &mut errors,
            "virtual_router_id",
            a.vrid.as_ref(),
            b.vrid.as_ref(),
            files,
        );
        let vb = version_of(&datas[1], b);
        if version.v != vb.v {
            errors.push(err(
                vec![version.loc.clone(), vb.loc.clone()],
                format!(
                    "the VRRP version differs between the two files: {} and {}",
                    version.v, vb.v
                ),
                "both nodes must use the same VRRP version; correct one file",
            ));
        }
        let adv = |i: &Instance| {
            i.advert_ms.clone().map(|v| Val {
                v: fmt_ms(v.v),
                loc: v.loc,
            })
        };
        same(
            &mut errors,
            "advert_int",
            adv(a).as_ref(),
            adv(b).as_ref(),
            files,
        );
        same(
            &mut errors,
            "interface",
            a.interface.as_ref(),
            b.interface.as_ref(),
            files,
        );
        let ty = |i: &Instance| {
            i.auth_type.clone().map(|v| Val {
                v: v.v.to_ascii_uppercase(),
                loc: v.loc,
            })
        };
        same(
            &mut errors,
            "auth_type",
            ty(a).as_ref(),
            ty(b).as_ref(),
            files,
        );
        match (&a.auth_pass, &b.auth_pass) {
            (Some(x), Some(y)) if x.v.chars().take(8).ne(y.v.chars().take(8)) => errors.push(err(
                vec![x.loc.clone(), y.loc.clone()],
                "auth_pass differs between the two files (the values are not shown)",
                "both nodes must use the same password; correct one file",
            )),
            (Some(x), None) | (None, Some(x)) => errors.push(err(
                vec![x.loc.clone()],
                "auth_pass is set in only one of the two files",
                "set the same password in both files, or remove it from both",
            )),
            _ => {}
        }
        let v3 = |i: &Instance| i.v3_checksum_as_v2.clone();
        same(
            &mut errors,
            "v3_checksum_as_v2",
            v3(a).as_ref(),
            v3(b).as_ref(),
            files,
        );
        // The VIPs, in order, with their device and label.
        let key = |v: &Vip| (v.address, v.prefix, v.device.clone(), v.label.clone());
        let ka: Vec<_> = a.vips.iter().map(key).collect();
        let kb: Vec<_> = b.vips.iter().map(key).collect();
        if ka != kb {
            let show = |i: &Instance| -> String {
                i.vips
                    .iter()
                    .map(|v| {
                        let mut s = format!("{}/{}", v.address, v.prefix);
                        if let Some(d) = &v.device {
                            s.push_str(&format!(" dev {d}"));
                        }
                        if let Some(l) = &v.label {
                            s.push_str(&format!(" label {l}"));
                        }
                        s
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            errors.push(err(
                vec![a.loc.clone(), chosen[1].loc.clone()],
                format!(
                    "virtual_ipaddress differs between the two files: [{}] and [{}]",
                    show(a),
                    show(b)
                ),
                "both nodes must carry the same VIPs; correct one file",
            ));
        }
        if a.peers.is_empty() != b.peers.is_empty() {
            let (with, without) = if a.peers.is_empty() { (b, a) } else { (a, b) };
            errors.push(err(
                vec![
                    with.unicast_block.clone().unwrap_or(with.loc.clone()),
                    without.loc.clone(),
                ],
                "one file uses unicast (unicast_peer) and the other multicast",
                "use unicast_peer in both files or in neither",
            ));
        }
    }
    let Some(vrid) = a.vrid.clone() else {
        errors.push(err(
            vec![a.loc.clone()],
            format!("vrrp_instance {} has no virtual_router_id", a.name),
            "add `virtual_router_id N` (the same on both nodes)",
        ));
        return Err(errors);
    };
    let Some(interface) = a.interface.clone() else {
        errors.push(err(
            vec![a.loc.clone()],
            format!("vrrp_instance {} has no interface", a.name),
            "add `interface NAME` (the interface that carries the adverts)",
        ));
        return Err(errors);
    };
    if scripts::is_placeholder(&interface.v) {
        errors.push(err(
            vec![interface.loc.clone()],
            format!(
                "interface is still the template placeholder {}",
                interface.v
            ),
            "fill in the interface name in the keepalived file",
        ));
    }
    for v in &a.vips {
        for val in [&v.device, &v.label].into_iter().flatten() {
            if scripts::is_placeholder(val) {
                errors.push(err(
                    vec![v.loc.clone()],
                    format!("virtual_ipaddress still holds the template placeholder {val}"),
                    "fill in the device and label in the keepalived file",
                ));
            }
        }
    }
    if a.vips.is_empty() {
        errors.push(err(
            vec![a.loc.clone()],
            format!("vrrp_instance {} has no virtual_ipaddress", a.name),
            "add the VIP clients use in a virtual_ipaddress block",
        ));
    }
    let advert_ms = a.advert_ms.as_ref().map(|v| v.v).unwrap_or(1000);
    if version.v == 2 && advert_ms % 1000 != 0 {
        errors.push(err(
            a.advert_ms.iter().map(|v| v.loc.clone()).collect(),
            format!(
                "advert_int {} s with VRRP version 2, which carries whole seconds",
                advert_ms as f64 / 1000.0
            ),
            "use a whole number of seconds, or `version 3` on both nodes for sub-second adverts",
        ));
    }
    if version.v == 3 && advert_ms % 10 != 0 {
        errors.push(err(
            a.advert_ms.iter().map(|v| v.loc.clone()).collect(),
            format!(
                "advert_int {} s is not a multiple of 10 ms (VRRPv3 carries centiseconds)",
                advert_ms as f64 / 1000.0
            ),
            "round advert_int to a multiple of 0.01",
        ));
    }
    let mut auth_pass = None;
    if let Some(t) = &a.auth_type {
        match t.v.to_ascii_uppercase().as_str() {
            "PASS" => {}
            "AH" => errors.push(err(
                vec![t.loc.clone()],
                "auth_type AH is not supported by whpg-ha",
                "switch both nodes to auth_type PASS (or no authentication) before migrating",
            )),
            other => errors.push(err(
                vec![t.loc.clone()],
                format!("auth_type {other}: expected PASS or AH"),
                "correct auth_type in the keepalived file",
            )),
        }
    }
    if let Some(p) = &a.auth_pass {
        if version.v == 3 {
            notes.push(note(
                &p.loc,
                "auth_pass ********",
                "VRRPv3 has no authentication (keepalived ignores it with version 3)",
            ));
        } else if p.v.is_empty() {
            notes.push(note(
                &p.loc,
                "auth_pass \"\"",
                "an empty password means no authentication",
            ));
        } else {
            let pass: String = if p.v.len() > 8 {
                notes.push(note(
                    &p.loc,
                    "auth_pass ********",
                    "longer than 8 bytes: keepalived sends only the first 8, and so does the imported configuration",
                ));
                let mut s = String::new();
                for c in p.v.chars() {
                    if s.len() + c.len_utf8() > 8 {
                        break;
                    }
                    s.push(c);
                }
                s
            } else {
                p.v.clone()
            };
            auth_pass = Some(Val {
                v: pass,
                loc: p.loc.clone(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // -- the nodes
    let addr_given = |k: usize| opts.node_addresses.as_ref().and_then(|v| v.get(k).copied());
    if let Some(addrs) = &opts.node_addresses {
        if addrs.len() != 2 {
            errors.push(err(
                vec![],
                format!("--node-addresses lists {} addresses", addrs.len()),
                "give two: the first file's node, then the other node",
            ));
        }
    }
    if let Some(names) = &opts.node_names {
        if names.len() != 2 || names[0] == names[1] || !names.iter().all(|n| valid_node_name(n)) {
            errors.push(err(
                vec![],
                format!("--node-names {:?}: expected two different names", names.join(",")),
                "give two host names made of letters, digits, '.', '-', '_', e.g. --node-names cdw,scdw",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut nodes: Vec<NodeOut> = Vec::new();
    for (k, (d, i)) in datas.iter().zip(&chosen).enumerate() {
        let other = chosen.get(1 - k).filter(|_| two);
        let (address, address_from) = if let Some(ad) = addr_given(k) {
            (ad, None)
        } else if let Some(s) = &i.unicast_src {
            (s.v, Some(s.loc.clone()))
        } else if let Some(s) = &i.mcast_src {
            (s.v, Some(s.loc.clone()))
        } else if let Some(o) = other.filter(|o| o.peers.len() == 1) {
            assumptions.push(format!(
                "the address of the node of {} is {} (the only unicast_peer of the other file, {})",
                d.path, o.peers[0].v, o.peers[0].loc
            ));
            (o.peers[0].v, Some(o.peers[0].loc.clone()))
        } else {
            errors.push(err(
                vec![i.loc.clone()],
                format!("cannot tell the address of the node of {}: it has no unicast_src_ip or mcast_src_ip", d.path),
                "add unicast_src_ip to the instance, or pass --node-addresses OWN,PEER (this node first)",
            ));
            continue;
        };
        nodes.push(NodeOut {
            name: String::new(),
            name_from: String::new(),
            address,
            address_from,
            priority: i.priority.as_ref().map(|p| p.v).unwrap_or(100),
            priority_from: i.priority.as_ref().map(|p| p.loc.clone()),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if two {
        for (k, i) in chosen.iter().enumerate() {
            let other = &nodes[1 - k];
            if !i.peers.is_empty() && !i.peers.iter().any(|p| p.v == other.address) {
                errors.push(err(
                    i.peers.iter().map(|p| p.loc.clone()).chain(other.address_from.clone()).collect(),
                    format!(
                        "the unicast_peer of {} does not list the other node's address {}",
                        datas[k].path, other.address
                    ),
                    "each file's unicast_peer must hold the other node's unicast_src_ip; correct the files (or --node-addresses)",
                ));
            }
            for extra in i.peers.iter().filter(|p| p.v != other.address) {
                notes.push(note(
                    &extra.loc,
                    format!("unicast_peer {}", extra.v),
                    "whpg-ha manages a pair; only the other node's address is imported",
                ));
            }
        }
    } else {
        let i = a;
        let (peer_addr, peer_from) = if let Some(ad) = addr_given(1) {
            (ad, None)
        } else {
            match i.peers.as_slice() {
                [p] => {
                    assumptions.push(format!(
                        "the other node is {} (the unicast_peer at {}); give its keepalived.conf too to import its own priority",
                        p.v, p.loc
                    ));
                    (p.v, Some(p.loc.clone()))
                }
                [] => {
                    errors.push(err(
                        vec![i.loc.clone()],
                        "a multicast configuration does not name the other node",
                        "give the other node's keepalived.conf too, or pass --node-addresses OWN,PEER",
                    ));
                    return Err(errors);
                }
                many => {
                    errors.push(err(
                        many.iter().map(|p| p.loc.clone()).collect(),
                        format!("unicast_peer lists {} addresses; whpg-ha manages a pair", many.len()),
                        "pass --node-addresses OWN,PEER to say which peer is the standby coordinator",
                    ));
                    return Err(errors);
                }
            }
        };
        let own = nodes[0].priority;
        let is_master = chosen[0]
            .state
            .as_ref()
            .is_some_and(|st| st.v.eq_ignore_ascii_case("MASTER"));
        let peer_priority = if is_master || own >= 100 {
            own.saturating_sub(2).max(1)
        } else {
            own.saturating_add(2).min(254)
        };
        assumptions.push(format!(
            "the other node's priority is {peer_priority} (not in {}: assumed {} than this node's {own})",
            a.loc.file,
            if peer_priority < own { "lower" } else { "higher" }
        ));
        nodes.push(NodeOut {
            name: String::new(),
            name_from: String::new(),
            address: peer_addr,
            address_from: peer_from,
            priority: peer_priority,
            priority_from: None,
        });
    }
    if nodes[0].address == nodes[1].address {
        errors.push(err(
            nodes.iter().filter_map(|n| n.address_from.clone()).collect(),
            format!("both nodes have the address {}", nodes[0].address),
            "each node needs its own address (unicast_src_ip); correct the files or --node-addresses",
        ));
        return Err(errors);
    }
    // Names.
    if let Some(names) = &opts.node_names {
        for (n, name) in nodes.iter_mut().zip(names) {
            n.name = name.clone();
            n.name_from = "--node-names".into();
        }
    } else {
        for (k, n) in nodes.iter_mut().enumerate() {
            let rid = datas
                .get(k)
                .filter(|_| k < chosen.len())
                .and_then(|d| d.global.router_id.clone());
            match rid {
                Some(r) if valid_node_name(&r.v) && !scripts::is_placeholder(&r.v) => {
                    n.name = r.v.clone();
                    n.name_from = format!("router_id at {}", r.loc);
                }
                _ => {
                    n.name = n.address.to_string();
                    n.name_from = "its address".into();
                }
            }
        }
        if nodes[0].name == nodes[1].name {
            for n in nodes.iter_mut() {
                n.name = n.address.to_string();
                n.name_from = "its address (both files have the same router_id)".into();
            }
        }
    }
    if opts.node_names.is_none() {
        for n in &nodes {
            assumptions.push(format!(
                "node {} ({}) is named after {}; pass --node-names to choose the names (ideally the host names)",
                n.name, n.address, n.name_from
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Router IDs that did not become names are still listed.
    for d in &datas {
        if let Some(r) = &d.global.router_id {
            if !nodes.iter().any(|n| n.name == r.v) {
                notes.push(note(&r.loc, format!("router_id {}", r.v), GLOBAL_WHY[0].1));
            }
        }
    }

    // -- scripts: classify tracked checks, read their files and the notify scripts
    let mut scans: ScriptScan = ScriptScan::default();
    let mut read_paths: Vec<String> = Vec::new();
    let mut script_cache: BTreeMap<(String, String), Option<ScriptScan>> = BTreeMap::new();
    let mut read = |cmd: &str,
                    conf: &str,
                    loc: &Loc,
                    notes: &mut Vec<Note>,
                    read_paths: &mut Vec<String>|
     -> Option<ScriptScan> {
        let path = cmd.split_whitespace().next().unwrap_or("").to_string();
        if path.is_empty() || is_known_program(&path) {
            return None;
        }
        let key = (path.clone(), conf.to_string());
        if let Some(c) = script_cache.get(&key) {
            return c.clone();
        }
        let result = match read_script(&path, conf) {
            ScriptLookup::Found {
                path: shown_path,
                text,
            } => {
                if !read_paths.contains(&shown_path) {
                    read_paths.push(shown_path.clone());
                }
                Some(scripts::scan_script(&text, &shown_path))
            }
            ScriptLookup::Missing { tried } => {
                notes.push(note(
                    loc,
                    format!("script {path}"),
                    format!(
                        "not read (looked for {}): any value it sets is not imported; pass --scripts DIR",
                        tried.join(", ")
                    ),
                ));
                None
            }
        };
        script_cache.insert(key, result.clone());
        result
    };

    let mut checks: Vec<Checks> = Vec::new();
    let mut witness: Vec<(Ipv4Addr, Loc, String)> = Vec::new();
    let mut ping_scripts_seen: BTreeSet<String> = BTreeSet::new();
    for (d, i) in datas.iter().zip(&chosen) {
        let mut c = Checks {
            db: None,
            other: Vec::new(),
            ping: Vec::new(),
        };
        let tracked: Vec<&Track> = i.tracks.iter().collect();
        for t in &tracked {
            if !d.scripts.iter().any(|s| s.name == t.name) {
                notes.push(note(
                    &t.loc,
                    format!("track_script {}", t.name),
                    "no vrrp_script of that name",
                ));
            }
        }
        for vs in &d.scripts {
            let track = tracked.iter().find(|t| t.name == vs.name);
            let Some(cmd) = &vs.command else {
                notes.push(note(
                    &vs.loc,
                    format!("vrrp_script {}", vs.name),
                    "has no script line",
                ));
                continue;
            };
            let mut scan = scripts::scan_command(&cmd.v, &cmd.loc);
            let first = cmd.v.split_whitespace().next().unwrap_or("");
            let direct_ping = matches!(first.rsplit('/').next(), Some("ping" | "fping"));
            if !direct_ping {
                if let Some(file_scan) =
                    read(&cmd.v, &d.path, &cmd.loc, &mut notes, &mut read_paths)
                {
                    scan.extend(file_scan);
                }
            }
            let is_ping = scan.pings && !scan.probes_database;
            if is_ping {
                for f in scan.facts.iter().filter(|f| f.kind == FactKind::Gateway) {
                    if let Ok(ip) = f.value.parse() {
                        witness.push((ip, f.loc.clone(), format!("vrrp_script {}", vs.name)));
                    }
                }
                for ph in &scan.placeholders {
                    notes.push(note(
                        &ph.loc,
                        ph.shown(),
                        "still a template placeholder: set [witness] hosts by hand",
                    ));
                }
                if ping_scripts_seen.insert(vs.name.clone()) {
                    let mut what = format!("vrrp_script {}", vs.name);
                    if let Some(v) = &vs.interval_ms {
                        what.push_str(&format!(" interval {}", fmt_ms(v.v)));
                    }
                    if let Some(f) = &vs.fall {
                        what.push_str(&format!(" fall {}", f.v));
                    }
                    if let Some(r) = &vs.rise {
                        what.push_str(&format!(" rise {}", r.v));
                    }
                    notes.push(note(
                        &vs.loc,
                        what,
                        if track.is_some() {
                            "its target became a [witness] host; whpg-ha probes witnesses on its own schedule (witness.interval, witness.timeout)"
                        } else {
                            "not tracked by the instance, but its target became a [witness] host; whpg-ha probes witnesses on its own schedule (witness.interval, witness.timeout)"
                        },
                    ));
                }
                scans.extend(ScriptScan {
                    facts: scan
                        .facts
                        .into_iter()
                        .filter(|f| f.kind != FactKind::Gateway)
                        .collect(),
                    ..ScriptScan::default()
                });
                c.ping.push(vs.clone());
                continue;
            }
            let Some(track) = track else {
                notes.push(note(
                    &vs.loc,
                    format!("vrrp_script {}", vs.name),
                    "not tracked by the imported instance",
                ));
                continue;
            };
            for ph in &scan.placeholders {
                notes.push(note(&ph.loc, ph.shown(), "still a template placeholder"));
            }
            let weight = track.weight.or(vs.weight.as_ref().map(|w| w.v));
            scans.extend(ScriptScan {
                placeholders: Vec::new(),
                ..scan.clone()
            });
            if c.db.is_none() && (scan.probes_database || c.other.is_empty()) {
                c.db = Some((vs.clone(), weight));
            } else {
                c.other.push(vs.clone());
            }
        }
        // A non-database check chosen only for lack of a better one stays the check.
        for (kw, cmd) in &i.notify {
            let _ = kw;
            if let Some(scan) = read(&cmd.v, &d.path, &cmd.loc, &mut notes, &mut read_paths) {
                for ph in &scan.placeholders {
                    notes.push(note(
                        &ph.loc,
                        ph.shown(),
                        if ph.kind == FactKind::Gateway {
                            "still a template placeholder: set [witness] hosts by hand"
                        } else {
                            "still a template placeholder"
                        },
                    ));
                }
                for f in scan.facts.iter().filter(|f| f.kind == FactKind::Gateway) {
                    if let Ok(ip) = f.value.parse() {
                        witness.push((ip, f.loc.clone(), format!("{} in {}", f.how, f.loc.file)));
                    }
                }
                scans.extend(ScriptScan {
                    placeholders: Vec::new(),
                    ..scan
                });
            }
        }
        for o in &c.other {
            notes.push(note(
                &o.loc,
                format!("vrrp_script {}", o.name),
                "a second tracked check; whpg-ha's own database probe replaces the first one only",
            ));
        }
        checks.push(c);
    }

    // -- health from the database check
    let db0 = checks[0].db.clone();
    let mut health: Vec<(&str, String, String)> = Vec::new();
    let mut health_comment = Vec::new();
    if let Some((vs, _)) = &db0 {
        let dflt = |what: &str| format!("keepalived's default{what} (vrrp_script at {})", vs.loc);
        let at = |l: &Loc| l.to_string();
        let interval = vs.interval_ms.as_ref().map(|v| v.v).unwrap_or(1000);
        health.push((
            "interval",
            fmt_ms(interval),
            vs.interval_ms
                .as_ref()
                .map(|v| at(&v.loc))
                .unwrap_or_else(|| dflt("")),
        ));
        let probe_timeout = scans
            .facts
            .iter()
            .find(|f| f.kind == FactKind::ProbeTimeout)
            .and_then(|f| {
                seconds_to_ms(&f.value).map(|ms| (ms, format!("{} at {}", f.how, f.loc)))
            });
        let timeout = vs
            .timeout_ms
            .as_ref()
            .map(|t| (t.v, at(&t.loc)))
            .or(probe_timeout)
            .unwrap_or((interval, dflt(": the interval")));
        let timeout_ms = timeout.0.min(10_000);
        if timeout_ms != timeout.0 {
            notes.push(note(
                &vs.loc,
                format!("vrrp_script {} timeout {}", vs.name, fmt_ms(timeout.0)),
                "whpg-ha's probe timeout is at most 10s; 10s is used",
            ));
        }
        health.push(("timeout", fmt_ms(timeout_ms.max(1)), timeout.1));
        health.push((
            "fall",
            vs.fall.as_ref().map(|f| f.v).unwrap_or(1).to_string(),
            vs.fall
                .as_ref()
                .map(|f| at(&f.loc))
                .unwrap_or_else(|| dflt("")),
        ));
        health.push((
            "rise",
            vs.rise.as_ref().map(|f| f.v).unwrap_or(1).to_string(),
            vs.rise
                .as_ref()
                .map(|f| at(&f.loc))
                .unwrap_or_else(|| dflt("")),
        ));
        health_comment.push(format!(
            "# from vrrp_script {} ({}): whpg-ha probes over the PostgreSQL protocol instead of running it",
            vs.name, vs.loc
        ));
        if let Some(Some((vs1, _))) = checks.get(1).map(|c| c.db.clone()) {
            let desc = |v: &VrrpScript| {
                format!(
                    "interval {} timeout {} fall {} rise {}",
                    fmt_ms(v.interval_ms.as_ref().map(|x| x.v).unwrap_or(1000)),
                    v.timeout_ms
                        .as_ref()
                        .map(|x| fmt_ms(x.v))
                        .unwrap_or("-".into()),
                    v.fall.as_ref().map(|x| x.v).unwrap_or(1),
                    v.rise.as_ref().map(|x| x.v).unwrap_or(1)
                )
            };
            if desc(vs) != desc(&vs1) {
                notes.push(note(
                    &vs1.loc,
                    format!("vrrp_script {} {}", vs1.name, desc(&vs1)),
                    format!(
                        "differs from {} in {}; [health] uses the first file's",
                        desc(vs),
                        vs.loc
                    ),
                ));
            }
        }
    }

    // -- failover triggers (what keepalived actually failed over on)
    let mut triggers = vec!["node-loss", "network-loss"];
    let mut trigger_comment: Vec<String> = Vec::new();
    // The higher-priority node is the one whose database failure matters.
    let (m, s) = if nodes[0].priority >= nodes[1].priority {
        (0, 1)
    } else {
        (1, 0)
    };
    let inst = |k: usize| chosen.get(k).unwrap_or(&chosen[0]);
    let check = |k: usize| checks.get(k).unwrap_or(&checks[0]).db.clone();
    if !two {
        assumptions.push("the other node tracks the same check with the same weight and preempt setting as this one".into());
    }
    match (check(m), check(s)) {
        (None, _) => trigger_comment.push("# database-failure left out: the coordinator's keepalived tracked no database check, so a database failure alone never moved the VIP".into()),
        (Some((vs_m, w_m)), cs) => {
            let w_m = w_m.unwrap_or(0);
            if w_m == 0 {
                triggers.push("database-failure");
                trigger_comment.push(format!(
                    "# database-failure: vrrp_script {} has weight 0, so a failing check put the coordinator in FAULT and the VIP moved",
                    vs_m.name
                ));
            } else {
                let w_s = cs.and_then(|c| c.1).unwrap_or(0);
                let master_failing = i64::from(nodes[m].priority) + w_m.min(0);
                let standby_healthy = i64::from(nodes[s].priority) + w_s.max(0);
                let nopreempt = inst(s).nopreempt.clone();
                if !two && nopreempt.is_none() {
                    triggers.push("database-failure");
                    trigger_comment.push(format!(
                        "# database-failure kept (whpg-ha's default): with weight {w_m}, whether keepalived moved the VIP on a failed check depended on the other node's priority, which is not in this file; remove it if it did not"
                    ));
                } else if let Some(np) = &nopreempt {
                    trigger_comment.push(format!(
                        "# database-failure left out: nopreempt on the standby ({np}) kept the VIP on a coordinator whose database failed its check (weight {w_m})"
                    ));
                } else if standby_healthy > master_failing {
                    triggers.push("database-failure");
                    trigger_comment.push(format!(
                        "# database-failure: with weight {w_m} a failed coordinator check ({master_failing}) lost to a healthy standby ({standby_healthy}), so the VIP moved"
                    ));
                } else {
                    trigger_comment.push(format!(
                        "# database-failure left out: with weight {w_m} a failed coordinator check ({master_failing}) still did not lose to a healthy standby ({standby_healthy})"
                    ));
                }
            }
        }
    }
    for (k, i) in chosen.iter().enumerate() {
        if i.nopreempt.is_none() {
            notes.push(note(
                i.preempt.as_ref().unwrap_or(&i.loc),
                format!("preempt{} (vrrp_instance {} of {})", if i.preempt.is_some() { "" } else { " (keepalived's default)" }, i.name, datas[k].path),
                "a recovered higher-priority node does not take the VIP back under whpg-ha (vrrp.preempt = false): rebuild it as the standby first (whpg-ha rejoin); database failures are covered by failover.triggers",
            ));
        } else if k == m {
            // nopreempt on the coordinator's own file changes nothing whpg-ha models.
        }
    }

    // -- witness hosts
    let node_addrs: Vec<Ipv4Addr> = nodes.iter().map(|n| n.address).collect();
    let mut witness_hosts: Vec<(Ipv4Addr, Loc, String)> = Vec::new();
    for (ip, loc, how) in witness {
        if node_addrs.contains(&ip) || a.vips.iter().any(|v| v.address == ip) {
            notes.push(note(
                &loc,
                format!("ping {ip}"),
                "a node's address or a VIP cannot be a witness",
            ));
        } else if !witness_hosts.iter().any(|w| w.0 == ip) {
            witness_hosts.push((ip, loc, how));
        }
    }

    // -- database values from the scripts
    let pick = |kind: FactKind, errors: &mut Vec<ImportError>| -> Option<scripts::Fact> {
        let of: Vec<&scripts::Fact> = scans.facts.iter().filter(|f| f.kind == kind).collect();
        let distinct: BTreeSet<&str> = of.iter().map(|f| f.value.as_str()).collect();
        if distinct.len() > 1 {
            errors.push(err(
                of.iter().map(|f| f.loc.clone()).collect(),
                format!(
                    "the scripts set different {}s: {}",
                    kind.describe(),
                    of.iter().map(|f| format!("{} ({} at {})", f.value, f.how, f.loc)).collect::<Vec<_>>().join(", ")
                ),
                "whpg-ha uses one value for both nodes; make the scripts agree (or pass --data-directory for the data directory)",
            ));
            None
        } else {
            of.first().map(|f| (*f).clone())
        }
    };
    let hints = &scans.flavor_hints;
    let gp = hints.iter().find(|h| h.0 == FlavorHint::WarehousePg);
    let pg = hints.iter().find(|h| h.0 == FlavorHint::Postgres);
    let flavor = match (gp, pg) {
        (None, Some((_, loc, why))) => ("postgres", format!("{why} at {loc}")),
        (Some((_, loc, why)), _) => ("warehousepg", format!("{why} at {loc}")),
        (None, None) => {
            assumptions.push("database.flavor = \"warehousepg\": the scripts read name neither WarehousePG nor PostgreSQL tools".into());
            ("warehousepg", "assumed".into())
        }
    };
    let data_dir = match &opts.data_directory {
        Some(d) => Some((d.clone(), "--data-directory".to_string())),
        None => pick(FactKind::DataDirectory, &mut errors)
            .map(|f| (f.value, format!("{} at {}", f.how, f.loc))),
    };
    let port = pick(FactKind::Port, &mut errors);
    let user = pick(FactKind::User, &mut errors);
    let gp_path = pick(FactKind::GreenplumPath, &mut errors);
    let sudo_user = pick(FactKind::OsUser, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(data_dir) = data_dir else {
        let looked = if read_paths.is_empty() {
            "no script could be read".to_string()
        } else {
            format!("read: {}", read_paths.join(", "))
        };
        return Err(vec![err(
            vec![],
            format!("no script sets the data directory (COORDINATOR_DATA_DIRECTORY=, PGDATA=, gpactivatestandby -d, pg_ctl -D); {looked}"),
            "pass --scripts DIR with the check and notify scripts, or --data-directory PATH",
        )]);
    };
    if !data_dir.0.starts_with('/') {
        return Err(vec![err(
            vec![],
            format!(
                "the data directory {} ({}) is not an absolute path",
                data_dir.0, data_dir.1
            ),
            "pass --data-directory PATH",
        )]);
    }
    let port_v = match &port {
        Some(f) => match f.value.parse::<u16>() {
            Ok(p) if p > 0 => Some((p, f)),
            _ => {
                notes.push(note(
                    &f.loc,
                    f.shown(),
                    "not a port number; database.port is left at its default",
                ));
                None
            }
        },
        None => None,
    };
    let os_user = sudo_user
        .map(|f| (f.value.clone(), format!("{} at {}", f.how, f.loc)))
        .or_else(|| {
            datas
                .iter()
                .find_map(|d| d.global.script_user.clone())
                .map(|u| (u.v, format!("script_user at {}", u.loc)))
        })
        .filter(|(u, _)| u != "root");
    let hosts: Vec<&scripts::Fact> = scans
        .facts
        .iter()
        .filter(|f| f.kind == FactKind::Host)
        .collect();
    let loopback = |h: &str| {
        h == "localhost"
            || h.parse::<Ipv4Addr>()
                .map(|a| a.is_loopback())
                .unwrap_or(false)
    };
    // A host starting with '/' is a socket directory (libpq's rule).
    let socket_dirs: BTreeSet<&str> = hosts
        .iter()
        .filter(|h| h.value.starts_with('/'))
        .map(|h| h.value.as_str())
        .collect();
    let socket_dir = match socket_dirs.len() {
        1 => hosts
            .iter()
            .find(|h| h.value.starts_with('/'))
            .map(|h| (*h).clone()),
        _ => None,
    };
    let db_host = hosts
        .iter()
        .find(|h| loopback(&h.value))
        .map(|h| h.value.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    for h in hosts
        .iter()
        .filter(|h| !loopback(&h.value) && socket_dir.as_ref().is_none_or(|s| s.value != h.value))
    {
        notes.push(note(&h.loc, h.shown(), format!("the same file serves both nodes: whpg-ha probes the local database at database.host = \"{db_host}\"")));
    }
    let dbnames: BTreeSet<&str> = scans
        .facts
        .iter()
        .filter(|f| f.kind == FactKind::Dbname)
        .map(|f| f.value.as_str())
        .collect();
    let dbname = if dbnames.len() == 1 {
        scans
            .facts
            .iter()
            .find(|f| f.kind == FactKind::Dbname)
            .cloned()
    } else {
        for f in scans.facts.iter().filter(|f| f.kind == FactKind::Dbname) {
            notes.push(note(
                &f.loc,
                f.shown(),
                "the scripts name different databases; database.dbname is left at its default",
            ));
        }
        None
    };

    // -- GARP: the instance's settings override global_defs; the first file's are used
    let garp = effective_garp(&datas[0].global.garp, &a.garp, &mut notes);
    if two {
        let mut ignored = Vec::new();
        let other = effective_garp(&datas[1].global.garp, &chosen[1].garp, &mut ignored);
        let value = |list: &[(&str, String, Option<Loc>)], k: &str| {
            list.iter().find(|g| g.0 == k).map(|g| g.1.clone())
        };
        for key in ["repeat", "interval", "master_delay", "refresh"] {
            let (mine, theirs) = (value(&garp, key), value(&other, key));
            if mine != theirs {
                let loc = other
                    .iter()
                    .find(|g| g.0 == key)
                    .and_then(|g| g.2.clone())
                    .unwrap_or(chosen[1].loc.clone());
                notes.push(note(
                    &loc,
                    format!(
                        "GARP {key} {} in {}",
                        theirs.unwrap_or("(keepalived's default)".into()),
                        datas[1].path
                    ),
                    format!(
                        "differs from {} in {}; [vrrp.garp] uses the first file's",
                        mine.unwrap_or("keepalived's default".into()),
                        datas[0].path
                    ),
                ));
            }
        }
    }

    // The directory of the programs whpg-ha runs, from the one the scripts call by full path: pg_ctl
    // first (whpg-ha runs it), then gpactivatestandby, then the probes. With warehousepg only when it
    // differs from the default (bin next to greenplum_path.sh).
    let bin_dir = [
        "pg_ctl",
        "gpactivatestandby",
        "pg_basebackup",
        "pg_isready",
        "psql",
    ]
    .iter()
    .find_map(|prog| {
        scans
            .facts
            .iter()
            .find(|f| f.kind == FactKind::BinDir && f.how == *prog)
    })
    .map(|f| (f.value.clone(), f.clone()))
    .filter(|(dir, _)| {
        if flavor.0 != "warehousepg" {
            return true;
        }
        let gp = gp_path
            .as_ref()
            .map(|g| g.value.as_str())
            .unwrap_or("/usr/local/greenplum-db/greenplum_path.sh");
        let default = format!("{}/bin", gp.rsplit_once('/').map(|x| x.0).unwrap_or(""));
        *dir != default
    });
    if flavor.0 != "warehousepg" {
        if let Some(g) = &gp_path {
            notes.push(note(
                &g.loc,
                g.shown(),
                "greenplum_path is for the warehousepg flavor only",
            ));
        }
    }

    // -- render
    let mut o = String::new();
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let from = |l: &Option<Loc>| l.as_ref().map(|l| format!("  # {l}")).unwrap_or_default();
    let _ = writeln!(
        o,
        "# whpg-ha configuration imported from keepalived by `whpg-ha import-keepalived`."
    );
    for (k, c) in confs.iter().enumerate() {
        let _ = writeln!(o, "# keepalived file: {} (node {})", c.path, nodes[k].name);
        for f in c.loaded.files.iter().filter(|f| f.included_from.is_some()) {
            if let Some(from) = &f.included_from {
                let _ = writeln!(o, "#   included: {} (from {from})", f.path.display());
            }
        }
    }
    if !read_paths.is_empty() {
        let _ = writeln!(o, "# scripts read (never run): {}", read_paths.join(", "));
    }
    for a in &assumptions {
        let _ = writeln!(o, "# assumed: {a}");
    }
    let _ = writeln!(
        o,
        "# The same file goes on both nodes. Review it, then check it on each node:"
    );
    let _ = writeln!(
        o,
        "#   whpg-ha check-config /etc/whpg-ha/whpg-ha.toml --node {}",
        nodes[0].name
    );
    let _ = writeln!(
        o,
        "# Keys not written keep their defaults (docs/configuration.md)."
    );
    let _ = writeln!(o, "#");
    if notes.is_empty() {
        let _ = writeln!(o, "# not imported: nothing");
    } else {
        let _ = writeln!(o, "# not imported ({}):", notes.len());
        for n in &notes {
            let _ = writeln!(o, "#   {}", n.to_string().replace('\n', " "));
        }
    }

    let _ = writeln!(o, "\n[vrrp]");
    let _ = writeln!(
        o,
        "interface = {}{}",
        q(&interface.v),
        from(&Some(interface.loc.clone()))
    );
    let _ = writeln!(o, "vrid = {}{}", vrid.v, from(&Some(vrid.loc.clone())));
    let _ = writeln!(
        o,
        "version = {}{}",
        version.v,
        from(
            &Some(version.loc.clone())
                .filter(|_| a.version.is_some() || datas[0].global.version.is_some())
        )
    );
    let _ = writeln!(
        o,
        "advert_interval = {}{}",
        q(&fmt_ms(advert_ms)),
        from(&a.advert_ms.as_ref().map(|v| v.loc.clone()))
    );
    let transport = if a.peers.is_empty() {
        "multicast"
    } else {
        "unicast"
    };
    let _ = writeln!(
        o,
        "transport = {}{}",
        q(transport),
        from(&a.unicast_block.clone())
    );
    if let Some(p) = &auth_pass {
        let _ = writeln!(
            o,
            "auth_pass = {}  # {} (a secret: keep this file readable by root only)",
            q(&p.v),
            p.loc
        );
    }
    let _ = writeln!(
        o,
        "preempt = false  # see `preempt` under \"not imported\" above"
    );
    if let Some(v) = &a.v3_checksum_as_v2 {
        let _ = writeln!(
            o,
            "v3_checksum = {}{}",
            q(if v.v { "vrrp-only" } else { "pseudo-header" }),
            from(&Some(v.loc.clone()))
        );
    }
    if !garp.is_empty() {
        let _ = writeln!(o, "\n[vrrp.garp]");
        for (k, v, l) in &garp {
            let value = if *k == "repeat" { v.clone() } else { q(v) };
            let _ = writeln!(o, "{k} = {value}{}", from(l));
        }
    }
    for v in &a.vips {
        let _ = writeln!(o, "\n[[vip]]");
        let _ = writeln!(
            o,
            "address = {}{}",
            q(&format!("{}/{}", v.address, v.prefix)),
            from(&Some(v.loc.clone()))
        );
        if let Some(d) = &v.device {
            let _ = writeln!(o, "device = {}", q(d));
        }
        if let Some(l) = &v.label {
            let _ = writeln!(o, "label = {}", q(l));
        }
    }
    for n in &nodes {
        let key = if n.name.contains('.') {
            q(&n.name)
        } else {
            n.name.clone()
        };
        let _ = writeln!(o, "\n[nodes.{key}]  # named after {}", n.name_from);
        let _ = writeln!(
            o,
            "address = {}{}",
            q(&n.address.to_string()),
            from(&n.address_from).if_empty(
                if n.address_from.is_none() && opts.node_addresses.is_some() {
                    "  # --node-addresses"
                } else {
                    ""
                }
            )
        );
        let prio_from = from(&n.priority_from);
        let _ = writeln!(
            o,
            "priority = {}{}",
            n.priority,
            if n.priority_from.is_none() {
                "  # assumed (see the header)".to_string()
            } else {
                prio_from
            }
        );
    }
    let _ = writeln!(o, "\n[database]");
    let _ = writeln!(o, "flavor = {}  # {}", q(flavor.0), flavor.1);
    match &socket_dir {
        Some(f) => {
            let _ = writeln!(o, "socket_dir = {}  # {} at {}", q(&f.value), f.how, f.loc);
        }
        None => {
            let _ = writeln!(
                o,
                "host = {}  # probes reach the local database here",
                q(&db_host)
            );
        }
    }
    if let Some((p, f)) = &port_v {
        let _ = writeln!(o, "port = {p}  # {} at {}", f.how, f.loc);
    }
    if let Some(u) = &user {
        let _ = writeln!(o, "user = {}  # {} at {}", q(&u.value), u.how, u.loc);
    }
    if let Some(d) = &dbname {
        let _ = writeln!(o, "dbname = {}  # {} at {}", q(&d.value), d.how, d.loc);
    }
    let _ = writeln!(o, "data_directory = {}  # {}", q(&data_dir.0), data_dir.1);
    if let Some((u, why)) = &os_user {
        let _ = writeln!(o, "os_user = {}  # {why}", q(u));
    }
    if flavor.0 == "warehousepg" {
        if let Some(g) = &gp_path {
            let _ = writeln!(
                o,
                "greenplum_path = {}  # {} at {}",
                q(&g.value),
                g.how,
                g.loc
            );
        }
    }
    if let Some((dir, f)) = &bin_dir {
        let _ = writeln!(o, "bin_dir = {}  # {} at {}", q(dir), f.how, f.loc);
    }
    if !health.is_empty() {
        let _ = writeln!(o, "\n[health]");
        for c in &health_comment {
            let _ = writeln!(o, "{c}");
        }
        for (k, v, why) in &health {
            let value = if matches!(*k, "fall" | "rise") {
                v.clone()
            } else {
                q(v)
            };
            let _ = writeln!(o, "{k} = {value}  # {why}");
        }
    }
    let _ = writeln!(o, "\n[failover]");
    for c in &trigger_comment {
        let _ = writeln!(o, "{c}");
    }
    let list: Vec<String> = triggers.iter().map(|t| q(t)).collect();
    let _ = writeln!(o, "triggers = [{}]", list.join(", "));
    if !witness_hosts.is_empty() {
        let _ = writeln!(o, "\n[witness]");
        for (ip, loc, how) in &witness_hosts {
            let _ = writeln!(o, "# {ip}: pinged by {how} ({loc})");
        }
        let hosts: Vec<String> = witness_hosts.iter().map(|w| q(&w.0.to_string())).collect();
        let _ = writeln!(o, "hosts = [{}]", hosts.join(", "));
    }

    Ok(Imported {
        toml: o,
        not_imported: notes,
        assumptions,
        node_names: nodes.iter().map(|n| n.name.clone()).collect(),
    })
}

/// Programs named in `script` / `notify` lines that are not scripts to read.
fn is_known_program(path: &str) -> bool {
    matches!(
        path.rsplit('/').next().unwrap_or(path),
        "pg_isready"
            | "psql"
            | "ping"
            | "fping"
            | "arping"
            | "pgrep"
            | "pidof"
            | "killall"
            | "curl"
            | "wget"
            | "nc"
            | "test"
            | "true"
            | "false"
            | "systemctl"
            | "logger"
            | "bash"
            | "sh"
            | "timeout"
            | "sudo"
    )
}

/// `[vrrp.garp]` from one file: the instance's `garp_*` over global_defs' `vrrp_garp_*`.
fn effective_garp(
    g0: &Garp,
    gi: &Garp,
    notes: &mut Vec<Note>,
) -> Vec<(&'static str, String, Option<Loc>)> {
    let min_garp = gi.min_garp.clone().or(g0.min_garp.clone());
    let min_on = min_garp.as_ref().is_some_and(|v| v.v);
    let min_loc = min_garp.map(|v| v.loc);
    let choose = |inst: &Option<Val<u64>>, glob: &Option<Val<u64>>| inst.clone().or(glob.clone());
    let mut garp = Vec::new();
    if let Some(r) = choose(&gi.repeat, &g0.repeat) {
        if r.v == 0 || r.v > 100 {
            notes.push(note(
                &r.loc,
                format!("garp_master_repeat {}", r.v),
                "whpg-ha sends 1 to 100 ARPs per burst; the default 5 is used",
            ));
        } else {
            garp.push(("repeat", r.v.to_string(), Some(r.loc)));
        }
    } else if min_on {
        garp.push(("repeat", "1".into(), min_loc.clone()));
    }
    if let Some(v) = choose(&gi.interval_ms, &g0.interval_ms) {
        garp.push(("interval", fmt_ms(v.v), Some(v.loc)));
    }
    if let Some(v) = choose(&gi.master_delay_ms, &g0.master_delay_ms) {
        garp.push(("master_delay", fmt_ms(v.v), Some(v.loc)));
    } else if min_on {
        garp.push(("master_delay", "0s".into(), min_loc));
    }
    if let Some(v) = choose(&gi.refresh_ms, &g0.refresh_ms) {
        garp.push(("refresh", fmt_ms(v.v), Some(v.loc)));
    }
    garp
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_string()
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(seconds_to_ms("1"), Some(1000));
        assert_eq!(seconds_to_ms("0.1"), Some(100));
        assert_eq!(seconds_to_ms(".5"), Some(500));
        assert_eq!(seconds_to_ms("2.5"), Some(2500));
        assert_eq!(seconds_to_ms("0.001"), Some(1));
        assert_eq!(seconds_to_ms("0.0001"), Some(1));
        assert_eq!(seconds_to_ms("0.0000001"), Some(1));
        assert_eq!(seconds_to_ms("0"), Some(0));
        assert_eq!(seconds_to_ms("1s"), None);
        assert_eq!(seconds_to_ms(""), None);
        assert_eq!(seconds_to_ms("."), None);
        assert_eq!(seconds_to_ms("-1"), None);
    }
}
