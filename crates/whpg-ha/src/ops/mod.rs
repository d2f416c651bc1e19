//! The operator's commands that talk to the running daemons over their HTTP APIs
//! (`whpg-ha status`, `check`, `maintenance`, `switchover`, `rejoin`, `promote`). They read the same configuration
//! file as the daemon to find every node, and never hang: each request is bounded (by
//! [`REQUEST_TIMEOUT`], or by the step's own bound for switchover and rejoin steps).

pub mod check;
pub mod maintenance;
pub mod promote;
pub mod rejoin;
pub mod status;
pub mod steps;
pub mod switchover;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config::{self, Config, Node};

/// Bound on each request to a daemon.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// A node and where its API answers.
#[derive(Debug, Clone)]
pub struct Target {
    pub node: Node,
    pub api: SocketAddr,
}

/// The configuration, for any node of the pair: when this host is not a node (an admin
/// workstation) and no `--node` is given, the file is read as seen from its first node.
pub fn load_config(path: &Path, node: Option<&str>) -> Result<Config, String> {
    let config = load_config_only(path, node)?;
    // TLS to the daemons (`[api] tls_*`) for every request this command makes.
    crate::client::use_api_config(&config.api)?;
    Ok(config)
}

fn load_config_only(path: &Path, node: Option<&str>) -> Result<Config, String> {
    match config::load(path, node) {
        Ok(config) => Ok(config),
        Err(errors) => {
            if node.is_none() {
                if let Some(first) = first_node_name(path) {
                    if let Ok(config) = config::load(path, Some(&first)) {
                        return Ok(config);
                    }
                }
            }
            Err(errors
                .iter()
                .map(|e| format!("error: {}: {e}", path.display()))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

fn first_node_name(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    let mut names: Vec<&String> = value.get("nodes")?.as_table()?.keys().collect();
    names.sort();
    names.first().map(|n| (*n).clone())
}

/// Every node of the configuration, sorted by name, with its API address: the node's address
/// and the API port; for this host's own node a specific listen address is used as configured
/// (so an API bound to loopback is still reached locally).
pub fn targets(config: &Config) -> Result<Vec<Target>, String> {
    let Some(first) = config.api.listen.first() else {
        return Err(
            "api.listen is empty: the daemons serve no API, so there is nothing to ask".into(),
        );
    };
    let port = first.port();
    Ok(config
        .nodes()
        .into_iter()
        .map(|node| {
            let api = if node.name == config.local.name {
                local_api(config, port)
            } else {
                SocketAddr::new(IpAddr::V4(node.address), port)
            };
            Target {
                node: node.clone(),
                api,
            }
        })
        .collect())
}

fn local_api(config: &Config, port: u16) -> SocketAddr {
    let listens_on = |ip: IpAddr| config.api.listen.iter().any(|a| a.ip() == ip);
    let own = IpAddr::V4(config.local.address);
    if config.api.listen.iter().any(|a| a.ip().is_unspecified()) || listens_on(own) {
        SocketAddr::new(own, port)
    } else if let Some(address) = config.api.listen.iter().find(|a| a.ip().is_loopback()) {
        *address
    } else {
        config
            .api
            .listen
            .first()
            .copied()
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }
}

/// Run `f` for every target at once (so unreachable nodes cost one timeout in total, not one
/// each), results in target order.
pub fn for_each_node<T: Send>(targets: &[Target], f: impl Fn(&Target) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|target| {
                let f = &f;
                scope.spawn(move || f(target))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> Config {
        // b listed first: the order of the file is not the order of the answer.
        config::testing::TestConfig::pair()
            .nodes(&[("b", "10.77.0.12", 98), ("a", "10.77.0.11", 100)])
            .api(&[listen], None)
            .parse("a")
    }

    #[test]
    fn every_node_is_asked_at_its_address_and_the_local_one_where_it_listens() {
        let t = targets(&config("127.0.0.1:8008")).unwrap();
        let apis: Vec<String> = t
            .iter()
            .map(|t| format!("{}={}", t.node.name, t.api))
            .collect();
        assert_eq!(apis, ["a=127.0.0.1:8008", "b=10.77.0.12:8008"]);
        let t = targets(&config("0.0.0.0:9000")).unwrap();
        let apis: Vec<String> = t
            .iter()
            .map(|t| format!("{}={}", t.node.name, t.api))
            .collect();
        assert_eq!(apis, ["a=10.77.0.11:9000", "b=10.77.0.12:9000"]);
    }
}
