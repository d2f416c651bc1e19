//! The failover stacks compared: whpg-ha in its default and fast profiles, whpg-ha's default
//! profile with the etcd arbiter, keepalived as the seed configures it and as fast as keepalived
//! allows.
//!
//! keepalived's database check and promotion are shell scripts written into the lab directory:
//! they are keepalived's interface (a `vrrp_script` and a `notify_master`), owned by root, run as
//! `postgres` under `enable_script_security`, doing what the seed's scripts do.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use whpg_lab::postgres::{PG_BIN_DIR, PG_OS_USER, PG_SUPERUSER};
use whpg_lab::{Host, KeepalivedConf, Lab, PgNode, Process};

use crate::lab::{PG_PORT, VIP_CIDR};

/// Advert interval of every stack but keepalived-seed, in ms (`--advert-interval-ms`).
static ADVERT_MS: AtomicU64 = AtomicU64::new(100);
/// `--whpg-replication-mode`: 0 async, 1 sync, 2 sync-strict.
static REPLICATION_MODE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// whpg-ha's `[replication] mode` for every whpg-ha contender (`async`, `sync`, `sync-strict`).
pub fn set_replication_mode(mode: &str) -> anyhow::Result<()> {
    let code = match mode {
        "async" => 0,
        "sync" => 1,
        "sync-strict" => 2,
        other => anyhow::bail!("--whpg-replication-mode {other:?}: use async, sync or sync-strict"),
    };
    REPLICATION_MODE.store(code, Ordering::Relaxed);
    Ok(())
}

/// whpg-ha's `[replication] mode`, as set.
pub fn replication_mode() -> &'static str {
    match REPLICATION_MODE.load(Ordering::Relaxed) {
        1 => "sync",
        2 => "sync-strict",
        _ => "async",
    }
}

/// Sets the advert interval of whpg-ha, whpg-ha-fast and keepalived-fast (default 100 ms).
pub fn set_advert_interval(interval: Duration) {
    ADVERT_MS.store(interval.as_millis() as u64, Ordering::Relaxed);
}

/// What n2's promotion command does: the `promote-fails` and `promote-hangs` faults replace it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Promotion {
    /// `pg_ctl promote`, as configured normally.
    #[default]
    Works,
    /// `/bin/false`: exits 1 at once, the database stays a standby.
    Fails,
    /// `/bin/sleep 3600`: never returns (whpg-ha bounds it with a 2 s promote timeout; keepalived's
    /// notify script has no bound).
    Hangs,
}

/// Per-trial variations of the stacks' configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// n2's promotion (n1's is always the normal one).
    pub n2_promotion: Promotion,
}

/// Additions to the whpg-ha configuration of one node beyond [`whpg_ha_config`]'s base.
#[derive(Debug, Clone, Copy, Default)]
pub struct WhpgHaExtras<'a> {
    /// `[witness] hosts`: one witness address.
    pub witness: Option<&'a str>,
    /// The API's bearer token file: the API then also listens on every address (the CLI reaches
    /// the peer at its node address) and accepts the mutating requests of a switchover.
    pub token_file: Option<&'a Path>,
    /// `[commands.promote]` of this node.
    pub promotion: Promotion,
    /// `[arbiter]` endpoints (the lab's etcd members' client URLs), for the arbiter contender.
    pub arbiter: Option<&'a [String]>,
}

/// The token of the bench's whpg-ha API (lab-only, in a mode-600 file in the lab directory).
const API_TOKEN: &str = "whpg-bench-token-0123456789abcdef";

/// Where the whpg-ha configuration of `host` is written in the lab directory.
pub fn whpg_ha_config_path(lab: &Lab, host: &Host) -> std::path::PathBuf {
    lab.dir().join(format!("{}.whpg-ha.toml", host.name()))
}

/// A stack under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Contender {
    #[serde(rename = "whpg-ha")]
    WhpgHa,
    #[serde(rename = "whpg-ha-fast")]
    WhpgHaFast,
    /// The default profile plus `[arbiter]` on the lab's 3-member etcd cluster.
    #[serde(rename = "whpg-ha-arbiter")]
    WhpgHaArbiter,
    #[serde(rename = "keepalived-seed")]
    KeepalivedSeed,
    #[serde(rename = "keepalived-fast")]
    KeepalivedFast,
}

impl Contender {
    pub const ALL: [Contender; 5] = [
        Contender::WhpgHa,
        Contender::WhpgHaFast,
        Contender::WhpgHaArbiter,
        Contender::KeepalivedSeed,
        Contender::KeepalivedFast,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contender::WhpgHa => "whpg-ha",
            Contender::WhpgHaFast => "whpg-ha-fast",
            Contender::WhpgHaArbiter => "whpg-ha-arbiter",
            Contender::KeepalivedSeed => "keepalived-seed",
            Contender::KeepalivedFast => "keepalived-fast",
        }
    }

    pub fn parse(s: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Its VRRP advertisement interval: the fault instant is spread over one of them, and a
    /// split brain shorter than one is not counted.
    pub fn advert_interval(self) -> Duration {
        match self {
            Contender::KeepalivedSeed => Duration::from_secs(1),
            _ => Duration::from_millis(ADVERT_MS.load(Ordering::Relaxed)),
        }
    }

    /// One line describing its settings, for the report.
    pub fn settings(self) -> &'static str {
        match self {
            Contender::WhpgHa => {
                "whpg-ha, default failover profile: VRRPv3 100 ms adverts, health every 100 ms \
                 (fall 3, rise 2), confirmation 3 s, wal_freshness 1 s, witness 10.77.0.1 (ICMP \
                 every 200 ms, fence when isolated)"
            }
            Contender::WhpgHaFast => {
                "whpg-ha, fast profile: as default with confirmation 0 s, wal_freshness 200 ms, \
                 probe timeout 200 ms (below 100 ms adverts A: health every A, timeout 2A, \
                 wal_freshness 2A)"
            }
            Contender::WhpgHaArbiter => {
                "whpg-ha, default profile plus the etcd arbiter: [arbiter] on 3 etcd 3.4 members \
                 (n1, n2, gw; heartbeat 100 ms, election 1 s), lease_ttl 5 s, timeout 1 s, \
                 keepalive_interval 1 s, on_lease_loss fence, failsafe on"
            }
            Contender::KeepalivedSeed => {
                "keepalived 2.2.7 as the seed: VRRPv2, advert 1 s, unicast, PASS, pg_isready every \
                 1 s (fall 3, rise 1, weight 50), notify_master `pg_ctl promote`"
            }
            Contender::KeepalivedFast => {
                "keepalived 2.2.7 as fast as it allows: VRRPv3, advert 0.1 s, unicast, pg_isready \
                 every 1 s (its minimum; fall 1, rise 1, weight 50), notify_master `pg_ctl promote`"
            }
        }
    }

    pub fn is_whpg_ha(self) -> bool {
        matches!(
            self,
            Contender::WhpgHa | Contender::WhpgHaFast | Contender::WhpgHaArbiter
        )
    }

    /// Whether it uses the lab's etcd cluster as its arbiter.
    pub fn has_arbiter(self) -> bool {
        self == Contender::WhpgHaArbiter
    }

    /// Starts the stack on both database hosts (n1 priority 100, n2 priority 98), at about the
    /// same moment, as a real pair would be started. whpg-ha gets the witness `witness` and an API
    /// token (for the switchover CLI); the arbiter contender the etcd endpoints `arbiter`.
    pub fn start(
        self,
        lab: &Lab,
        daemon: &Path,
        hosts: [(&Host, &PgNode); 2],
        witness: &str,
        arbiter: Option<&[String]>,
        options: Options,
    ) -> Result<Vec<Process>> {
        if self.has_arbiter() && arbiter.is_none() {
            bail!("{} needs the lab's etcd cluster", self.name());
        }
        let nodes = [
            (hosts[0].0.name(), hosts[0].0.address(), 100u8),
            (hosts[1].0.name(), hosts[1].0.address(), 98u8),
        ];
        if self.is_whpg_ha() {
            let token = lab.write_file("whpg-ha.token", &format!("{API_TOKEN}\n"))?;
            // The daemon refuses a token file with any group or other permission bit.
            std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("chmod {}", token.display()))?;
            let mut procs = Vec::new();
            for (i, (host, db)) in hosts.into_iter().enumerate() {
                let extras = WhpgHaExtras {
                    witness: Some(witness),
                    token_file: Some(&token),
                    promotion: if i == 1 {
                        options.n2_promotion
                    } else {
                        Promotion::Works
                    },
                    arbiter: arbiter.filter(|_| self.has_arbiter()),
                };
                let mut config = whpg_ha_config(self, db.data_dir(), &nodes, &extras);
                // Journal into the lab directory (removed with the lab), not the machine's /var/lib.
                let journal = lab.dir().join(format!("{}.journal", host.name()));
                let _ = write!(config, "\n[journal]\npath = \"{}\"\n", journal.display());
                // The name [`whpg_ha_config_path`] finds again.
                let path = lab.write_file(&format!("{}.whpg-ha.toml", host.name()), &config)?;
                procs.push(spawn_whpg_ha(host, daemon, &path)?);
            }
            Ok(procs)
        } else {
            let mut confs = Vec::new();
            for (i, (host, db)) in hosts.into_iter().enumerate() {
                let peer = nodes[1 - i].1;
                let promotion = if i == 1 {
                    options.n2_promotion
                } else {
                    Promotion::Works
                };
                confs.push((
                    host,
                    keepalived_config(self, lab, host, db, nodes[i].2, peer, promotion)?,
                ));
            }
            let mut procs = Vec::new();
            for (host, conf) in confs {
                procs.push(spawn_keepalived(lab, host, &conf)?);
            }
            Ok(procs)
        }
    }
}

impl Contender {
    /// Restarts the HA daemon `old` of `host` as an operator would: SIGTERM, its exit awaited
    /// (10 s), then started again on the configuration it had. Returns the new process.
    pub fn restart(self, lab: &Lab, daemon: &Path, host: &Host, old: &Process) -> Result<Process> {
        let me = host.name();
        old.sigterm()
            .with_context(|| format!("stopping the HA daemon on {me}"))?;
        old.wait_exit(Duration::from_secs(10))
            .with_context(|| format!("the HA daemon on {me} did not exit on SIGTERM"))?;
        if self.is_whpg_ha() {
            spawn_whpg_ha(host, daemon, &whpg_ha_config_path(lab, host))
        } else {
            let path = lab.dir().join(format!("{me}-keepalived.conf"));
            let conf = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            spawn_keepalived(lab, host, &conf)
        }
    }
}

/// Starts `whpg-ha run` on configuration `config` in `host`, logging to `<host>.whpg-ha.log`.
fn spawn_whpg_ha(host: &Host, daemon: &Path, config: &Path) -> Result<Process> {
    let config = config.to_string_lossy().into_owned();
    let daemon = daemon.to_string_lossy().into_owned();
    host.spawn(
        &[
            daemon.as_str(),
            "run",
            "--config",
            config.as_str(),
            "--node",
            host.name(),
        ],
        "whpg-ha",
    )
}

/// Starts keepalived (VRRP only, foreground, console log, own pid files) on `conf` in `host`.
///
/// `Host::spawn_keepalived` cannot be used here: it runs `keepalived --config-test` first, and
/// keepalived 2.2.7 ends that test with SIGTERM to itself whenever the config has a
/// `vrrp_script`, which reads as a rejection. Instead the log is checked for the messages
/// keepalived prints when it drops a script or a tracked script.
pub(crate) fn spawn_keepalived(lab: &Lab, host: &Host, conf: &str) -> Result<Process> {
    let me = host.name();
    let path = lab.write_file(&format!("{me}-keepalived.conf"), conf)?;
    let dir = lab.dir();
    let pid = |kind: &str| {
        dir.join(format!("{me}-keepalived.{kind}.pid"))
            .to_string_lossy()
            .into_owned()
    };
    let path = path.to_string_lossy().into_owned();
    let (main, vrrp, checkers, bfd) = (pid("main"), pid("vrrp"), pid("checkers"), pid("bfd"));
    // A restarted keepalived appends to its predecessor's log: only the new part counts.
    let skip = std::fs::metadata(host.log_path("keepalived")).map_or(0, |m| m.len() as usize);
    let proc = host.spawn(
        &[
            "keepalived",
            "-P",
            "-n",
            "-l",
            "-D",
            "-G",
            "-i",
            me,
            "-f",
            &path,
            "-p",
            &main,
            "-r",
            &vrrp,
            "-c",
            &checkers,
            "-b",
            &bfd,
        ],
        "keepalived",
    )?;
    whpg_lab::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(10),
        &format!("keepalived on {me} to start"),
        || own_log(&proc, skip).contains("Startup complete") || !proc.is_running(),
    )?;
    let log = own_log(&proc, skip);
    if !proc.is_running() {
        bail!("keepalived on {me} exited at startup: {}", log.trim());
    }
    if let Some(line) = log.lines().find(|l| {
        (l.contains("script") && (l.contains("removing") || l.contains("not found")))
            || l.contains("SECURITY")
    }) {
        bail!("keepalived on {me} dropped part of its config: {line}");
    }
    Ok(proc)
}

/// The log of `proc` from byte `skip` on.
fn own_log(proc: &Process, skip: usize) -> String {
    let log = proc.log_contents();
    log.get(skip..).unwrap_or(&log).to_string()
}

/// The whpg-ha configuration of one node of the pair, with `extras` (none for the idle cost).
pub(crate) fn whpg_ha_config(
    which: Contender,
    data_dir: &Path,
    nodes: &[(&str, &str, u8)],
    extras: &WhpgHaExtras,
) -> String {
    // The fast profile also shortens the probe timeout: a live primary's last answer counts until
    // the next probe answers or times out, so the timeout bounds how long a silent peer delays
    // the promotion.
    //
    // Below 100 ms adverts the fast profile scales its probes with the advert interval A: health
    // every A with a 2A timeout and wal_freshness 2A, as at 100 ms (200 ms each). After a cut the
    // master-down interval can end as early as 2.2 A after it (the last advert up to one interval
    // before the cut, then 3 A plus the standby's Skew_Time), so a WAL window of 3 A held the
    // promotion in 2 of 10 link-loss trials at 20 ms, by up to 17 ms. At 20 ms
    // that is 50 probes a second of each database from each daemon: the price of that profile.
    let advert_ms = which.advert_interval().as_millis() as u64;
    let (confirmation, wal_freshness, probe_interval, probe_timeout) = match which {
        Contender::WhpgHaFast if advert_ms < 100 => (
            "0s".to_string(),
            format!("{}ms", 2 * advert_ms),
            format!("{advert_ms}ms"),
            format!("{}ms", 2 * advert_ms),
        ),
        Contender::WhpgHaFast => (
            "0s".to_string(),
            "200ms".to_string(),
            "100ms".to_string(),
            "200ms".to_string(),
        ),
        _ => (
            "3s".to_string(),
            "1s".to_string(),
            "100ms".to_string(),
            "500ms".to_string(),
        ),
    };
    let mut text = format!(
        "[vrrp]\ninterface = \"eth0\"\nvrid = 51\nversion = 3\nadvert_interval = \"{}ms\"\n\
         transport = \"multicast\"\n\n[vrrp.garp]\nrepeat = 2\nmaster_delay = \"0s\"\n",
        which.advert_interval().as_millis()
    );
    let _ = write!(
        text,
        "\n[[vip]]\naddress = \"{VIP_CIDR}\"\nlabel = \"eth0:vip\"\n"
    );
    for (name, address, priority) in nodes {
        let _ = write!(
            text,
            "\n[nodes.{name}]\naddress = \"{address}\"\npriority = {priority}\n"
        );
    }
    let _ = write!(
        text,
        "\n[database]\nflavor = \"postgres\"\nhost = \"127.0.0.1\"\nport = {PG_PORT}\n\
         user = \"{PG_SUPERUSER}\"\ndbname = \"postgres\"\ndata_directory = \"{}\"\n\
         os_user = \"{PG_OS_USER}\"\nbin_dir = \"{PG_BIN_DIR}\"\n",
        data_dir.display()
    );
    let _ = write!(
        text,
        "\n[health]\ninterval = \"{probe_interval}\"\ntimeout = \"{probe_timeout}\"\nfall = 3\n\
         rise = 2\n"
    );
    let _ = write!(
        text,
        "\n[failover]\ntriggers = [\"node-loss\", \"network-loss\", \"database-failure\"]\n\
         confirmation = \"{confirmation}\"\nwal_freshness = \"{wal_freshness}\"\n"
    );
    if replication_mode() != "async" {
        // The daemon manages synchronous_standby_names itself; the lab starts with it empty.
        let _ = write!(
            text,
            "\n[replication]\nmode = \"{}\"\nsync_timeout = \"10s\"\n",
            replication_mode()
        );
    }
    if let Some(endpoints) = extras.arbiter {
        // As the arbiter lab test: a 5 s lease refreshed every second, each request bounded by
        // the members' 1 s election timeout; fence on lease loss and the failsafe by default.
        let list = endpoints
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            text,
            "\n[arbiter]\nkind = \"etcd\"\nendpoints = [{list}]\nkey_prefix = \"{}\"\n\
             lease_ttl = \"5s\"\ntimeout = \"1s\"\nkeepalive_interval = \"1s\"\n",
            crate::etcd::KEY_PREFIX
        );
    }
    if let Some(witness) = extras.witness {
        // Defaults otherwise: quorum 1 of 1, ICMP every 200 ms with a 500 ms timeout, fencing
        // when isolated.
        let _ = write!(text, "\n[witness]\nhosts = [\"{witness}\"]\n");
    }
    match extras.token_file {
        Some(token) => {
            let _ = write!(
                text,
                "\n[api]\nlisten = [\"0.0.0.0:{}\"]\ntoken_file = \"{}\"\n",
                crate::lab::API_PORT,
                token.display()
            );
        }
        None => {
            let _ = write!(
                text,
                "\n[api]\nlisten = [\"127.0.0.1:{}\"]\n",
                crate::lab::API_PORT
            );
        }
    }
    match extras.promotion {
        Promotion::Works => {}
        Promotion::Fails => text.push_str("\n[commands.promote]\nargv = [\"/bin/false\"]\n"),
        // The promotion is bounded: the daemon kills it after 2 s and must give the VIP up.
        Promotion::Hangs => text.push_str(
            "\n[commands.promote]\nargv = [\"/bin/sleep\", \"3600\"]\ntimeout = \"2s\"\n",
        ),
    }
    text
}

/// Writes a root-owned, non-writable script into the lab directory.
fn write_script(lab: &Lab, name: &str, body: &str) -> Result<String> {
    let path = lab.write_file(name, body)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(path.to_string_lossy().into_owned())
}

/// keepalived's configuration of one node, with its check and notify scripts.
fn keepalived_config(
    which: Contender,
    lab: &Lab,
    host: &Host,
    db: &PgNode,
    priority: u8,
    peer: &str,
    promotion: Promotion,
) -> Result<String> {
    let me = host.name();
    // The seed's check: pg_isready against the local port, 1 s timeout, wrapped in `timeout 2s`.
    let check = write_script(
        lab,
        &format!("{me}-check-pg.sh"),
        &format!(
            "#!/bin/sh\nexec timeout 2s {PG_BIN_DIR}/pg_isready -q -h 127.0.0.1 -p {PG_PORT} -t 1\n"
        ),
    )?;
    // The seed's promotion: only if this node really is a standby. Logged where postgres may write.
    // The promote-* faults put a failing or hanging command in its place.
    let promote = match promotion {
        Promotion::Works => format!("{PG_BIN_DIR}/pg_ctl promote -D \"$PGDATA\" -w -t 30"),
        Promotion::Fails => "/bin/false".to_string(),
        Promotion::Hangs => "/bin/sleep 3600".to_string(),
    };
    let log_dir = lab.user_dir(PG_OS_USER, &format!("{me}.notify"))?;
    let notify = write_script(
        lab,
        &format!("{me}-notify-master.sh"),
        &format!(
            "#!/bin/sh\nPGDATA='{data}'\nLOG='{log}/notify.log'\n\
             echo \"$(date +%T.%N) notify_master\" >>\"$LOG\"\n\
             if [ -f \"$PGDATA/standby.signal\" ]; then\n  \
             echo \"$(date +%T.%N) promoting\" >>\"$LOG\"\n  \
             {promote} >>\"$LOG\" 2>&1\n  \
             echo \"$(date +%T.%N) promote exit $?\" >>\"$LOG\"\nfi\n",
            data = db.data_dir().display(),
            log = log_dir.display(),
        ),
    )?;
    let (fall, conf) = match which {
        Contender::KeepalivedSeed => (
            3,
            KeepalivedConf::new(51, priority, VIP_CIDR)
                .auth_pass("whpg2025")
                .advert_int(Duration::from_secs(1)),
        ),
        _ => (
            1,
            KeepalivedConf::new(51, priority, VIP_CIDR)
                .version(3)
                .advert_int(which.advert_interval()),
        ),
    };
    let conf = conf
        .state(if priority == 100 { "MASTER" } else { "BACKUP" })
        .unicast(host.address(), &[peer])
        .global_line("enable_script_security")
        .global_line(&format!("script_user {PG_OS_USER}"))
        .instance_line("track_script {\n        chk_pg\n    }")
        .instance_line(&format!("notify_master \"{notify}\""))
        .render();
    let script = format!(
        "vrrp_script chk_pg {{\n    script \"{check}\"\n    interval 1\n    timeout 2\n    \
         fall {fall}\n    rise 1\n    weight 50\n}}\n\n"
    );
    // The script block goes before the instance that tracks it.
    let at = conf
        .find("vrrp_instance")
        .context("rendered keepalived config has no vrrp_instance")?;
    let mut text = conf;
    text.insert_str(at, &script);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(which: Contender, arbiter: Option<&[String]>) -> String {
        let data_dir = Path::new("/nonexistent/n1.pgdata");
        let nodes = [("n1", "10.77.0.11", 100), ("n2", "10.77.0.12", 98)];
        let extras = WhpgHaExtras {
            arbiter,
            ..WhpgHaExtras::default()
        };
        whpg_ha_config(which, data_dir, &nodes, &extras)
    }

    #[test]
    fn the_arbiter_contender_is_the_default_profile_plus_an_arbiter_section() {
        let endpoints = vec![
            "http://10.77.0.11:2379".to_string(),
            "http://10.77.0.12:2379".to_string(),
            "http://10.77.0.1:2379".to_string(),
        ];
        let with = config_of(Contender::WhpgHaArbiter, Some(&endpoints));
        let plain = config_of(Contender::WhpgHa, None);
        let (before, arbiter) = with
            .split_once("\n[arbiter]\n")
            .expect("an [arbiter] section");
        assert!(arbiter.contains(
            "endpoints = [\"http://10.77.0.11:2379\", \"http://10.77.0.12:2379\", \
             \"http://10.77.0.1:2379\"]"
        ));
        assert!(arbiter.contains("kind = \"etcd\""));
        assert!(arbiter.contains("key_prefix = \"/whpg-ha/bench\""));
        // Everything else is the default profile's, in the same order.
        let rest = arbiter.split_once("\n\n").map_or("", |(_, r)| r);
        assert_eq!(format!("{before}\n{rest}"), plain);
        assert!(!plain.contains("[arbiter]"));
        assert_eq!(
            Contender::parse("whpg-ha-arbiter"),
            Some(Contender::WhpgHaArbiter)
        );
        assert!(Contender::WhpgHaArbiter.is_whpg_ha() && Contender::WhpgHaArbiter.has_arbiter());
        assert!(!Contender::WhpgHa.has_arbiter());
    }
}
