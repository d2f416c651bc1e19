//! `whpg-ha run`: wires the sans-IO VRRP core to the kernel on tokio.
//!
//! Start-up checks the interface and this node's address, removes virtual addresses left behind by
//! a crash, opens the sockets, starts the API and tells systemd it is ready. The loop itself lives
//! in [`runner`]; it owns the instance and is the only place that carries out its actions.

pub mod deadline;
#[cfg(feature = "failpoints")]
pub mod failpoint;
pub mod jobs;
pub mod observers;
pub mod reload;
pub mod runner;
pub mod state;
pub mod watchdog;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{self, Config};
use crate::journal::{self, Entry, Journal, Kind};
use crate::net::garp::GarpSender;
use crate::net::link;
use crate::net::vip::{Change, VipManager};
use crate::net::vrrp_socket::{VrrpMode, VrrpSocket, VrrpSocketOptions};
use crate::status::{unix_ms, NodeStatus};

/// Entry point of `whpg-ha run`: sets up logging and the runtime, reports start-up errors plainly.
pub fn run_command(config_path: &Path, node: Option<&str>) -> ExitCode {
    init_logging();
    let config = match config::load(config_path, node) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("error: {}: {error}", config_path.display());
            }
            eprintln!("whpg-ha: not started; fix the configuration (check it with `whpg-ha check-config`)");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("whpg-ha: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(
        config,
        config_path.to_path_buf(),
        node.map(str::to_owned),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("whpg-ha: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr; under systemd (JOURNAL_STREAM set) without timestamps or colours, since
/// the journal adds its own. `WHPG_HA_LOG` sets the level (`debug`), or levels per module
/// (`warn,whpg_ha::vrrp=debug`); a value that does not parse is reported and `info` kept. A
/// plain target filter, not `EnvFilter`: its regular expressions cost the resident daemon about
/// 0.4 MB of code for a feature the log levels do not need.
fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let default = || Targets::new().with_default(tracing::Level::INFO);
    let (filter, bad) = match std::env::var("WHPG_HA_LOG") {
        Ok(value) => match value.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(e) => (
                default(),
                Some(format!("WHPG_HA_LOG={value:?}: {e}; logging at info")),
            ),
        },
        Err(_) => (default(), None),
    };
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!journal);
    // A second init (tests) keeps the first subscriber.
    let _ = if journal {
        tracing_subscriber::registry()
            .with(format.without_time().with_filter(filter))
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(format.with_filter(filter))
            .try_init()
    };
    if let Some(bad) = bad {
        tracing::warn!("{bad}");
    }
}

async fn run(config: Config, config_path: PathBuf, node: Option<String>) -> anyhow::Result<()> {
    let mut journal = Journal::open(
        &config.journal.path,
        journal::DEFAULT_MAX_BYTES,
        journal::DEFAULT_KEEP,
    )?;
    let state_store = state::StateStore::new(&config.journal.path);
    let remembered = state_store.load()?;
    journal.record(
        &Entry::new(
            &config.local.name,
            Kind::Notice,
            format!(
                "whpg-ha {} starting as node {}",
                env!("CARGO_PKG_VERSION"),
                config.local.name
            ),
        )
        .with("event", "start")
        .with("version", env!("CARGO_PKG_VERSION"))
        .with("pid", std::process::id()),
    );
    if config.database.monitor {
        preflight(&config)?;
    }
    // A token others can read is no secret: refuse to start rather than serve with it.
    let token = match &config.api.token_file {
        Some(path) => Some(crate::api::Token::load_for_daemon(path)?),
        None => None,
    };
    let vips = VipManager::new().await.context("opening netlink")?;
    // Subscribe before looking anything up, so no change between the two is missed.
    let watcher = link::watch(&config.vrrp.interface).await.with_context(|| {
        format!(
            "vrrp.interface = {:?}: the interface must exist before whpg-ha starts",
            config.vrrp.interface
        )
    })?;
    let (interface, links) = watcher.into_parts();
    if !interface.has_ipv4(config.local.address) {
        bail!(
            "this node's address {} (nodes.{}.address) is not on interface {}; \
             add it or fix the configuration",
            config.local.address,
            config.local.name,
            interface.name
        );
    }

    for vip in runner::kernel_vips(&config) {
        // At start-up we are not master: an installed VIP is a leftover of a crash or reboot.
        if vips.remove(&vip).await? == Change::Done {
            warn!("removed stale virtual address {vip}: it was installed without mastership (left by a crash or reboot)");
            journal.record(
                &Entry::new(
                    &config.local.name,
                    Kind::Action,
                    format!("removed stale virtual address {vip} (left by a crash or reboot)"),
                )
                .with("vip", vip.to_string()),
            );
        }
    }

    let socket = VrrpSocket::open(&VrrpSocketOptions {
        interface: interface.name.clone(),
        ifindex: interface.index,
        local: config.local.address,
        mode: match config.vrrp.transport {
            config::Transport::Multicast => VrrpMode::Multicast,
            config::Transport::Unicast => VrrpMode::Unicast,
        },
    })
    .with_context(|| format!("opening the VRRP socket on {}", interface.name))?;
    let garp = match interface.mac {
        Some(mac) => Some(
            GarpSender::open(interface.index, mac)
                .with_context(|| format!("opening the ARP socket on {}", interface.name))?,
        ),
        None => {
            warn!(
                "interface {} has no MAC address: no gratuitous ARP will be sent",
                interface.name
            );
            None
        }
    };
    let (status_tx, status_rx) =
        watch::channel(NodeStatus::initial(&config, unix_ms(SystemTime::now())));
    let (commands_tx, commands_rx) = mpsc::channel(8);
    let event_metrics = crate::metrics::EventMetrics::default();
    if !config.api.listen.is_empty() {
        let state = crate::api::ApiState {
            metrics: std::sync::Arc::new(crate::metrics::registry(
                status_rx.clone(),
                &event_metrics,
            )),
            status: status_rx,
            commands: commands_tx,
            token,
            config: std::sync::Arc::new(config.clone()),
            operations: crate::api::Operations::default(),
        };
        crate::api::start(&config.api, state, config.journal.path.clone()).await?;
    }

    let health = link::InterfaceHealth::new(&interface, Some(config.local.address));
    if let Some(fault) = health.fault() {
        warn!(
            "interface {}: {fault:?} at start-up: entering FAULT until it clears",
            interface.name
        );
    }
    let io = runner::Io {
        socket,
        garp,
        vips,
        interface: health,
    };
    let supervision = if config.database.monitor {
        let (tx, inputs) = mpsc::channel(64);
        let (nudges, promote_signal) = observers::spawn_all(&config, &tx);
        let arbiter = crate::arbiter::spawn(&config, tx.clone());
        let (reports_tx, job_reports) = mpsc::unbounded_channel();
        let jobs = jobs::Jobs::new(config.clone(), tx, reports_tx, promote_signal);
        Some(runner::Supervision {
            jobs,
            nudges,
            arbiter,
            inputs,
            job_reports,
        })
    } else {
        info!("database.monitor = false: the virtual addresses follow the VRRP mastership alone");
        None
    };
    let channels = runner::Channels {
        links,
        commands: commands_rx,
        status: status_tx,
        metrics: event_metrics,
    };
    let interface_name = interface.name.clone();
    let mut runner = runner::Runner::new(
        config,
        config_path,
        node,
        io,
        supervision,
        channels,
        runner::OnDisk {
            journal,
            state: state_store,
            remembered,
        },
    );
    runner.start().await;
    notify_ready();
    info!(
        "whpg-ha {} running as node {} on {interface_name}",
        env!("CARGO_PKG_VERSION"),
        runner.node_name(),
    );
    runner.run(shutdown_signal()?).await
}

/// Completes with the name of the first of SIGTERM and SIGINT to arrive.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        }
    })
}

fn preflight(config: &Config) -> anyhow::Result<()> {
    let db = &config.database;
    if !db.data_directory.is_dir() {
        bail!(
            "database.data_directory = {:?} does not exist or is not a directory; fix the path \
             (or set database.monitor = false to run without the database)",
            db.data_directory
        );
    }
    crate::exec::lookup_user(&db.os_user)
        .with_context(|| format!("database.os_user = {:?}", db.os_user))?;
    let runtime = std::collections::BTreeMap::from([
        ("primary_host", config.local.address.to_string()),
        ("standby_host", config.local.address.to_string()),
    ]);
    for kind in [config::CommandKind::Promote, config::CommandKind::Fence] {
        let command = crate::exec::PreparedCommand::from_config(config, kind, &runtime)?;
        command.check_program()?;
    }
    Ok(())
}

/// Tell systemd (Type=notify) that start-up is complete; a no-op outside systemd.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!("could not notify systemd: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(data_directory: &str, promote: &str) -> Config {
        config::testing::TestConfig::pair()
            .without("database", "monitor")
            .database("data_directory", data_directory)
            .database("bin_dir", "/usr/bin")
            .command("promote", &[promote, "promote"], None)
            .command("fence", &["/bin/true"], None)
            .parse("a")
    }

    #[test]
    fn preflight_names_a_missing_data_directory_and_a_missing_promote_program() {
        let missing_dir = preflight(&config_with("/nonexistent/whpg-ha/data", "/bin/true"))
            .expect_err("missing data directory");
        assert!(
            format!("{missing_dir:#}").contains("database.data_directory"),
            "{missing_dir:#}"
        );

        let tmp = std::env::temp_dir();
        let dir = tmp.to_str().expect("utf-8 temp dir");
        let missing_program = preflight(&config_with(dir, "/nonexistent/bin/pg_ctl"))
            .expect_err("missing promote program");
        let text = format!("{missing_program:#}");
        assert!(
            text.contains("commands.promote") && text.contains("/nonexistent/bin/pg_ctl"),
            "{text}"
        );

        preflight(&config_with(dir, "/bin/true")).expect("everything present");
    }
}
