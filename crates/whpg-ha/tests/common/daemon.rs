//! Running `whpg-ha run` inside lab hosts: configuration text, start-up, and reading `/status`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use whpg_ha::config::testing::TestConfig;
use whpg_lab::{Host, Lab, Process};

use super::in_netns;

/// The port every lab daemon serves its API on, on the host's loopback.
pub const API_PORT: u16 = 8008;

/// VRRP settings of a lab pair.
#[derive(Debug, Clone)]
pub struct PairSettings {
    pub version: u8,
    pub advert_interval: &'static str,
    pub transport: &'static str,
    pub auth_pass: Option<&'static str>,
    pub preempt: bool,
    pub vrid: u8,
    pub vip: &'static str,
}

impl PairSettings {
    /// v3 at 100 ms, multicast: fast enough for lab tests.
    pub fn fast() -> PairSettings {
        PairSettings {
            version: 3,
            advert_interval: "100ms",
            transport: "multicast",
            auth_pass: None,
            preempt: true,
            vrid: 51,
            vip: "10.77.0.100/24",
        }
    }

    /// The seed's keepalived setting: v2, PASS auth, 1 s adverts, unicast.
    pub fn seed() -> PairSettings {
        PairSettings {
            version: 2,
            advert_interval: "1s",
            transport: "unicast",
            auth_pass: Some("whpg2025"),
            preempt: true,
            vrid: 51,
            vip: "10.77.0.100/24",
        }
    }

    pub fn vip_address(&self) -> &'static str {
        self.vip.split('/').next().unwrap_or(self.vip)
    }
}

/// The configuration of a pair of lab hosts; `nodes` are (name, address, priority). The API
/// listens on loopback, the database is not monitored.
pub fn pair_builder(settings: &PairSettings, nodes: &[(&str, &str, u8)]) -> TestConfig {
    let mut config = TestConfig::pair()
        .vrid(settings.vrid)
        .version(settings.version)
        .advert_interval(settings.advert_interval)
        .set("vrrp", "transport", settings.transport)
        .preempt(settings.preempt);
    if let Some(pass) = settings.auth_pass {
        config = config.auth_pass(pass);
    }
    config
        .garp(2, "0s")
        .vip(settings.vip)
        .vip_label("eth0:vip")
        .nodes(nodes)
        .database("data_directory", "/var/lib/postgresql/15/lab")
        .database("os_user", "postgres")
        .api(&[&loopback_api()], None)
}

/// [`pair_builder`]'s text.
pub fn pair_config(settings: &PairSettings, nodes: &[(&str, &str, u8)]) -> String {
    pair_builder(settings, nodes).to_toml()
}

/// The API address of the lab configurations, on loopback.
pub fn loopback_api() -> String {
    format!("127.0.0.1:{API_PORT}")
}

/// Start the daemon on `host` as node `node` with the given configuration text.
pub fn start_daemon(lab: &Lab, host: &Host, node: &str, config: &str) -> Process {
    start_daemon_under(lab, host, node, config, &[])
}

/// [`start_daemon`] with `wrapper` (e.g. `env NAME=VALUE`) before the binary on the command line.
pub fn start_daemon_under(
    lab: &Lab,
    host: &Host,
    node: &str,
    config: &str,
    wrapper: &[String],
) -> Process {
    // Each daemon journals into the lab directory, never into the machine's /var/lib.
    let mut config = config.to_string();
    if !config.contains("[journal]") {
        let journal = lab.dir().join(format!("{node}.journal"));
        config += &format!("\n[journal]\npath = \"{}\"\n", journal.display());
    }
    let path = lab
        .write_file(&format!("{node}.toml"), &config)
        .expect("writing the daemon configuration");
    let path = path.to_string_lossy().into_owned();
    let binary = env!("CARGO_BIN_EXE_whpg-ha");
    let argv: Vec<&str> = wrapper
        .iter()
        .map(String::as_str)
        .chain([binary, "run", "--config", path.as_str(), "--node", node])
        .collect();
    host.spawn(&argv, &format!("whpg-ha-{node}"))
        .expect("starting whpg-ha")
}

/// `GET path` on the daemon's API inside `host`'s namespace; `None` while it is not answering.
pub fn api_get(host: &Host, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    in_netns(host.netns(), move || {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], API_PORT));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(300)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_string();
        Some((code, body))
    })
}

/// The daemon's `/status` JSON, or `None` while it is not answering.
pub fn status(host: &Host) -> Option<Value> {
    let (code, body) = api_get(host, "/status")?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// The VRRP state (`MASTER`, `BACKUP`, ...) the daemon reports.
pub fn vrrp_state(host: &Host) -> Option<String> {
    status(host)?["vrrp"]["state"].as_str().map(str::to_owned)
}

/// A counter of dropped packets by reason, 0 when absent.
pub fn dropped(host: &Host, reason: &str) -> u64 {
    status(host)
        .and_then(|s| s["vrrp"]["counters"]["dropped"][reason].as_u64())
        .unwrap_or(0)
}

/// Every daemon's log, for a failure message.
pub fn dump_logs(daemons: &[&Process]) -> String {
    daemons
        .iter()
        .map(|d| d.log_contents())
        .collect::<Vec<_>>()
        .join("\n-----\n")
}

/// The HTTP status of `GET path` on the host's API, `None` when it does not answer.
pub fn code(host: &Host, path: &str) -> Option<u16> {
    api_get(host, path).map(|(code, _)| code)
}
