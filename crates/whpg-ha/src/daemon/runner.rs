//! The daemon loop: waits for a packet, the node's deadline, a link event, an observation of the
//! databases, a job's report, an API command or the shutdown signal; hands each to the sans-IO
//! [`Node`] and carries out the effects it returns, in order.
//!
//! Nothing here decides anything: the rules are the node's (and the cores' it joins). This loop
//! never blocks on anything but the kernel (netlink and socket calls answer in microseconds):
//! probes, promotion and fencing run as owned jobs that report back as inputs.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn, Level};
use whpg_policy::Input;

use super::jobs::{JobReport, Jobs};
use super::observers::Nudges;
use super::reload;
use super::state::{PersistedState, StateStore};
use super::watchdog::Watchdog;
use crate::api::ApiCommand;
use crate::config::{self, Config};
use crate::journal::{BackgroundJournal, Entry, Journal, Kind};
use crate::metrics::EventMetrics;
use crate::net::garp::GarpSender;
use crate::net::link::{InterfaceHealth, LinkEvent};
use crate::net::vip::{Change, Vip, VipManager};
use crate::net::vrrp_socket::VrrpSocket;
use crate::node::{vrrp_setup, Effect, Measure, Node, NodeInput, Now};
use crate::status::NodeStatus;

/// Largest datagram we read: an IPv4 header with options plus the largest v2/v3 advert.
const RECV_BUFFER: usize = 2048;

/// The virtual addresses of the configuration, as netlink wants them.
pub fn kernel_vips(config: &Config) -> Vec<Vip> {
    config
        .vips
        .iter()
        .map(|v| Vip {
            address: v.address.into(),
            prefix_len: v.prefix_len,
            device: v.device.clone(),
            label: v.label.clone(),
        })
        .collect()
}

/// The kernel-facing handles the loop drives.
pub struct Io {
    pub socket: VrrpSocket,
    /// `None` when the interface has no MAC address (no ARP possible).
    pub garp: Option<GarpSender>,
    pub vips: VipManager,
    pub interface: InterfaceHealth,
}

/// The database-aware half's IO: the jobs the node asks for, and where observations arrive.
pub struct Supervision {
    pub jobs: Jobs,
    /// Start a witness round or a local observation at once (the node asks before promoting).
    pub nudges: Nudges,
    /// The etcd client of `[arbiter]`, when configured.
    pub arbiter: Option<crate::arbiter::ArbiterHandle>,
    pub inputs: mpsc::Receiver<Input>,
    pub job_reports: mpsc::UnboundedReceiver<JobReport>,
}

/// The jobs and the witness trigger, apart from the receivers the loop polls.
struct JobsIo {
    jobs: Jobs,
    nudges: Nudges,
    arbiter: Option<crate::arbiter::ArbiterHandle>,
}

/// Where the outside world reaches the loop.
pub struct Channels {
    pub links: mpsc::Receiver<LinkEvent>,
    pub commands: mpsc::Receiver<ApiCommand>,
    pub status: watch::Sender<NodeStatus>,
    pub metrics: EventMetrics,
}

/// What the daemon writes to disk: the journal and the state that survives restarts.
pub struct OnDisk {
    pub journal: Journal,
    pub state: StateStore,
    pub remembered: PersistedState,
}

pub struct Runner {
    config: Config,
    config_path: PathBuf,
    node_arg: Option<String>,
    node: Node,
    io: Io,
    supervision: Option<JobsIo>,
    inputs: Option<mpsc::Receiver<Input>>,
    job_reports: Option<mpsc::UnboundedReceiver<JobReport>>,
    channels: Channels,
    journal: BackgroundJournal,
    watchdog: Watchdog,
    /// The time of the input being carried out: every journal entry of one step carries it, so
    /// the journal stays in time order.
    step_now: Now,
    /// What survives a restart (maintenance mode).
    state: StateStore,
    remembered: PersistedState,
}

impl Runner {
    pub fn new(
        config: Config,
        config_path: PathBuf,
        node_arg: Option<String>,
        io: Io,
        supervision: Option<Supervision>,
        channels: Channels,
        disk: OnDisk,
    ) -> Runner {
        let node = Node::new(&config, Now::read());
        let (supervision, inputs, job_reports) = match supervision {
            Some(s) => (
                Some(JobsIo {
                    jobs: s.jobs,
                    nudges: s.nudges,
                    arbiter: s.arbiter,
                }),
                Some(s.inputs),
                Some(s.job_reports),
            ),
            None => (None, None, None),
        };
        Runner {
            config,
            config_path,
            node_arg,
            node,
            io,
            supervision,
            inputs,
            job_reports,
            channels,
            journal: BackgroundJournal::start(disk.journal),
            watchdog: Watchdog::from_env(),
            step_now: Now::read(),
            state: disk.state,
            remembered: disk.remembered,
        }
    }

    pub fn node_name(&self) -> &str {
        &self.config.local.name
    }

    /// Leave Initialize; with the link down or our address missing the instance starts in FAULT.
    pub async fn start(&mut self) {
        if self.remembered.maintenance {
            let since_unix_ms = self.remembered.maintenance_since_unix_ms;
            self.step(NodeInput::RestoredMaintenance { since_unix_ms })
                .await;
        }
        if let Some(record) = self.remembered.not_promotable.clone() {
            self.step(NodeInput::RestoredNotPromotable(record)).await;
        }
        self.step(NodeInput::Start).await;
        if let Some(fault) = self.io.interface.fault() {
            let name = &self.config.vrrp.interface;
            let what = format!("interface {name}: {fault:?}");
            self.step(NodeInput::Interface(Some(what))).await;
        }
    }

    /// Run until `shutdown` completes (it yields the signal's name), then resign, release the
    /// addresses and let running jobs finish within their bounds.
    pub async fn run(mut self, shutdown: impl Future<Output = &'static str>) -> anyhow::Result<()> {
        let timer = super::deadline::Deadline::new()?;
        let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut links_open = true;
        let mut commands_open = true;
        tokio::pin!(shutdown);
        let signal = loop {
            self.watchdog.feed();
            // Test builds only (feature `failpoints`): a wedged turn, on request.
            #[cfg(feature = "failpoints")]
            super::failpoint::stall_loop().await;
            let deadline = [self.node.next_deadline(), self.watchdog.next_due()]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                input = recv(&mut self.inputs) => match input {
                    Some(input) => self.step(NodeInput::Observe(input)).await,
                    None => {
                        error!("the database observers stopped: no more database decisions");
                        self.inputs = None;
                    }
                },
                received = self.io.socket.recv(&mut buf) => match received {
                    Ok(len) => {
                        let datagram = buf[..len].to_vec();
                        self.step(NodeInput::Datagram(&datagram)).await;
                    }
                    Err(e) => {
                        warn!("receiving VRRP: {e}");
                        // Do not spin on a persistent socket error.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                waited = timer.wait_until(deadline) => {
                    if let Err(e) = waited {
                        // Never spin on a broken timer; the instance tolerates a late wake-up.
                        error!("the loop's timer failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    self.step(NodeInput::Timer).await;
                }
                report = recv_unbounded(&mut self.job_reports) => match report {
                    Some(report) => self.step(NodeInput::Job(report)).await,
                    None => self.job_reports = None,
                },
                command = self.channels.commands.recv(), if commands_open => match command {
                    Some(command) => self.api_command(command).await,
                    None => commands_open = false,
                },
                event = self.channels.links.recv(), if links_open => match event {
                    Some(event) => self.on_link_event(event).await,
                    None => {
                        error!("the link watcher stopped: link changes will not be noticed");
                        links_open = false;
                    }
                },
                _ = sighup.recv() => self.reload().await,
                signal = &mut shutdown => break signal,
            }
        };
        self.step(NodeInput::Shutdown { signal }).await;
        self.drain_jobs().await;
        // Dropping the journal flushes it.
        Ok(())
    }

    /// A running promotion or fence is allowed to finish within its bound; what could not is
    /// journalled.
    async fn drain_jobs(&mut self) {
        let Some(supervision) = &mut self.supervision else {
            return;
        };
        if supervision.jobs.running() > 0 {
            info!(
                "waiting for {} running job(s) to finish within their bounds",
                supervision.jobs.running()
            );
        }
        let cut_short = supervision.jobs.drain().await;
        let mut entries = Vec::new();
        while let Some(Ok(report)) = self.job_reports.as_mut().map(|r| r.try_recv()) {
            let kind = if report.complete {
                Kind::Action
            } else {
                Kind::Notice
            };
            entries.push(Entry::new(&self.config.local.name, kind, report.detail));
        }
        while let Some(Ok(input)) = self.inputs.as_mut().map(|r| r.try_recv()) {
            if let Input::PromotionFinished(result) = input {
                let detail = match result {
                    Ok(_) => "a promotion finished during shutdown: the database is writable, \
                              the virtual addresses stay released"
                        .to_string(),
                    Err(e) => format!("a promotion finished during shutdown and failed: {e}"),
                };
                warn!("{detail}");
                entries.push(Entry::new(&self.config.local.name, Kind::Notice, detail));
            }
        }
        for what in cut_short {
            error!("shutdown cut short {what}");
            entries.push(
                Entry::new(
                    &self.config.local.name,
                    Kind::Notice,
                    format!("shutdown cut short {what}"),
                )
                .with("event", "cut_short"),
            );
        }
        for entry in entries {
            self.journal.record(entry);
        }
    }

    /// One input to the node, and its effects carried out.
    async fn step(&mut self, input: NodeInput<'_>) {
        self.step_now = Now::read();
        let effects = self.node.handle(input, self.step_now);
        self.carry_out(effects).await;
    }

    async fn carry_out(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            self.execute(effect).await;
        }
        self.channels
            .status
            .send_replace(self.node.status().clone());
    }

    async fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Send { dst, payload } => {
                let std::net::IpAddr::V4(dst) = dst else {
                    return;
                };
                if let Err(e) = self.io.socket.send(dst, &payload).await {
                    warn!("sending advert to {dst}: {e}");
                }
            }
            Effect::InstallVips => self.change_vips(true).await,
            Effect::RemoveVips => self.change_vips(false).await,
            Effect::Garp { rounds } => {
                let Some(garp) = &self.io.garp else { return };
                for _ in 0..rounds {
                    for vip in &self.config.vips {
                        if let Err(e) = garp.announce(vip.address) {
                            warn!("gratuitous ARP for {}: {e}", vip.address);
                        }
                    }
                }
            }
            Effect::Promote { attempt } => {
                if let Some(s) = &mut self.supervision {
                    s.jobs.promote(attempt);
                }
            }
            Effect::Fence(reason) => {
                if let Some(s) = &mut self.supervision {
                    s.jobs.fence(reason);
                }
            }
            Effect::SetSynchronousStandby(target) => {
                if let Some(s) = &mut self.supervision {
                    s.jobs.set_synchronous_standby(target);
                }
            }
            Effect::Arbiter(action) => {
                if let Some(arbiter) = self.supervision.as_ref().and_then(|s| s.arbiter.as_ref()) {
                    arbiter.ask(action);
                }
            }
            Effect::WriteSyncRecord(record) => {
                if let Some(arbiter) = self.supervision.as_ref().and_then(|s| s.arbiter.as_ref()) {
                    arbiter.write_sync_record(record);
                }
            }
            Effect::CheckWitnesses => {
                if let Some(s) = &self.supervision {
                    s.nudges.witnesses.notify_one();
                }
            }
            Effect::ObserveLocal => {
                if let Some(s) = &self.supervision {
                    s.nudges.local.notify_one();
                }
            }
            Effect::ObservePeer => {
                if let Some(s) = &self.supervision {
                    s.nudges.peer.notify_one();
                }
            }
            Effect::Journal(entry) => self.journal.record(entry),
            Effect::Log { level, text } => log(level, &text),
            Effect::Measure(measure) => self.measure(measure),
            Effect::RememberMaintenance { on } => self.remember_maintenance(on),
            Effect::RememberNotPromotable(record) => self.remember_not_promotable(record),
        }
    }

    /// Write the not-promotable mark to disk; a failure is said loudly (a restart would forget
    /// it, and the restarted daemon would count the standby as never observed instead, which
    /// is still not promotable until it is seen in sync).
    fn remember_not_promotable(&mut self, record: Option<crate::node::NotPromotableRecord>) {
        let mut next = self.remembered.clone();
        next.not_promotable = record;
        match self.state.save(&next) {
            Ok(()) => self.remembered = next,
            Err(e) => self.say_loudly(format!(
                "the standby's not-promotable mark could not be written: {e}"
            )),
        }
    }

    /// An error the operator must see: in the log and in the journal.
    fn say_loudly(&mut self, text: String) {
        error!("{text}");
        self.journal.record(Entry::at(
            self.step_now.unix_ms,
            &self.config.local.name,
            Kind::Notice,
            text,
        ));
    }

    /// Write maintenance mode to disk before the request is answered; a failure is said loudly
    /// (the mode is in force, but a restart would forget it).
    fn remember_maintenance(&mut self, on: bool) {
        let mut next = self.remembered.clone();
        next.maintenance = on;
        next.maintenance_since_unix_ms = on.then(|| {
            self.remembered
                .maintenance_since_unix_ms
                .filter(|_| self.remembered.maintenance)
                .unwrap_or(self.step_now.unix_ms)
        });
        match self.state.save(&next) {
            Ok(()) => self.remembered = next,
            Err(e) => self.say_loudly(format!(
                "maintenance mode {} is in force but NOT remembered across a restart: {e}",
                if on { "on" } else { "off" }
            )),
        }
    }

    fn measure(&self, measure: Measure) {
        let metrics = &self.channels.metrics;
        match measure {
            Measure::PromotionStarted => {
                metrics.promotions_started.inc();
            }
            Measure::PromotionEnded { succeeded, took } => {
                if succeeded {
                    metrics.promotions_succeeded.inc();
                } else {
                    metrics.promotions_failed.inc();
                }
                metrics.promotion_duration.observe(took.as_secs_f64());
            }
            Measure::Failover { took } => metrics.failover_duration.observe(took.as_secs_f64()),
            Measure::PromotionRefusedBehind => {
                metrics.promotions_refused_not_promotable.inc();
            }
        }
    }

    /// Add or remove every virtual address; one journal entry says what changed.
    async fn change_vips(&mut self, install: bool) {
        let verb = if install { "installed" } else { "removed" };
        let mut outcome = VipOutcome::default();
        for vip in kernel_vips(&self.config) {
            let result = if install {
                self.io.vips.add(&vip).await
            } else {
                self.io.vips.remove(&vip).await
            };
            match result {
                Ok(change) => {
                    info!("virtual address {vip} {verb}");
                    outcome.done(change, &vip);
                }
                Err(e) => {
                    error!("{e}");
                    outcome.failed.push(e.to_string());
                }
            }
        }
        if let Some(entry) = outcome.entry(self.step_now.unix_ms, &self.config.local.name, verb) {
            self.journal.record(entry);
        }
    }

    async fn on_link_event(&mut self, event: LinkEvent) {
        let name = &self.config.vrrp.interface;
        debug!("interface {name}: {event:?}");
        if let Some(change) = self.io.interface.apply(&event) {
            let what = change.map(|fault| format!("interface {name}: {fault:?}"));
            self.step(NodeInput::Interface(what)).await;
        }
        // While the interface is faulted (link down, our own address gone) the fault decides;
        // only on a healthy interface is a missing VIP put back.
        let (address, present) = match event {
            LinkEvent::AddressAdded { address, .. } => (address, true),
            LinkEvent::AddressRemoved { address, .. } => (address, false),
            LinkEvent::Link { .. } | LinkEvent::Removed => return,
        };
        if present || self.io.interface.fault().is_none() {
            self.step(NodeInput::Address { address, present }).await;
        }
    }

    async fn reload(&mut self) {
        let new = match config::load(&self.config_path, self.node_arg.as_deref()) {
            Ok(new) => new,
            Err(errors) => {
                for e in errors.iter() {
                    error!("reload refused, keeping the running configuration: {e}");
                }
                return;
            }
        };
        let plan = reload::plan(&self.config, &new);
        if let Some(priority) = plan.priority {
            info!(
                "reload: priority {} -> {priority}",
                self.config.local.priority
            );
            self.step(NodeInput::SetPriority(priority)).await;
        }
        if let Some(set) = plan.accepted_priorities.clone() {
            let shown = set.as_ref().map_or("any".to_string(), |s| format!("{s:?}"));
            info!("reload: priorities accepted from the peer: {shown}");
            self.step(NodeInput::SetAcceptedPriorities(set)).await;
        }
        if plan.garp {
            info!("reload: gratuitous ARP timing updated");
            self.step(NodeInput::SetGarpTiming(vrrp_setup::garp_timing(&new)))
                .await;
        }
        for key in &plan.needs_restart {
            warn!("reload: {key} changed but only takes effect after a restart");
        }
        if plan == reload::ReloadPlan::default() {
            info!("reload: no changes");
        }
        // Keep running on what is actually applied; the rest stays as it was.
        let mut applied = self.config.clone();
        applied.local.priority = new.local.priority;
        reload::keep_peer_priorities(&mut applied, &new);
        applied.vrrp.garp = new.vrrp.garp;
        self.config = applied;
    }

    /// A command from the HTTP API; the answer goes back on its reply channel.
    async fn api_command(&mut self, command: ApiCommand) {
        use crate::node::{Accepted, Request};
        let (request, reply) = match command {
            ApiCommand::Maintenance { on, reply } => {
                self.step_now = Now::read();
                let (answer, effects) = self.node.request(Request::Maintenance(on), self.step_now);
                self.carry_out(effects).await;
                let _ = reply.send(answer.map(|a| matches!(a, Accepted::Maintenance(true))));
                return;
            }
            ApiCommand::Demote { reply } => (Request::Demote, reply),
            ApiCommand::PlannedPromotion {
                shutdown_checkpoint,
                received,
                reply,
            } => (
                Request::PlannedPromotion {
                    shutdown_checkpoint,
                    received,
                },
                reply,
            ),
            ApiCommand::Record { detail, reply } => (Request::Record(detail), reply),
            ApiCommand::PromoteAcceptingDataLoss { reply } => {
                (Request::PromoteAcceptingDataLoss, reply)
            }
        };
        self.step_now = Now::read();
        let (answer, effects) = self.node.request(request, self.step_now);
        self.carry_out(effects).await;
        let _ = reply.send(answer.map(|_| ()));
    }
}

fn log(level: Level, text: &str) {
    match level {
        Level::ERROR => error!("{text}"),
        Level::WARN => warn!("{text}"),
        Level::INFO => info!("{text}"),
        _ => debug!("{text}"),
    }
}

/// What adding or removing the virtual addresses did, for the journal.
#[derive(Default)]
struct VipOutcome {
    changed: Vec<String>,
    unchanged: Vec<String>,
    failed: Vec<String>,
}

impl VipOutcome {
    fn done(&mut self, change: Change, vip: &Vip) {
        let address = format!("{}/{}", vip.address, vip.prefix_len);
        match change {
            Change::Done => self.changed.push(address),
            Change::Unchanged => self.unchanged.push(address),
        }
    }

    /// One journal entry for the change (none when nothing changed).
    fn entry(self, at_unix_ms: u64, node: &str, verb: &str) -> Option<Entry> {
        if self.changed.is_empty() && self.failed.is_empty() {
            return None;
        }
        let mut detail = if self.changed.is_empty() {
            format!("no virtual address {verb}")
        } else {
            format!("virtual addresses {verb}: {}", self.changed.join(", "))
        };
        if !self.failed.is_empty() {
            detail += &format!("; failed: {}", self.failed.join("; "));
        }
        let mut entry =
            Entry::at(at_unix_ms, node, Kind::Action, detail).with("vips", self.changed);
        if !self.unchanged.is_empty() {
            entry = entry.with("unchanged", self.unchanged);
        }
        if !self.failed.is_empty() {
            entry = entry.with("errors", self.failed);
        }
        Some(entry)
    }
}

async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_unbounded<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
