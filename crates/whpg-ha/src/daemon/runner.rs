//! The daemon loop: waits for a packet, a deadline (VRRP timer, gratuitous ARP, policy), a link
//! event, an observation of the databases or a signal; feeds the VRRP instance and the HA policy,
//! and carries out what they return, in order.
//!
//! This is the only code that touches the instance and the policy, so no lock is needed. It never
//! blocks on anything but the kernel (netlink and socket calls answer in microseconds): probes,
//! promotion and fencing run as separate tasks that report back as policy inputs.
//!
//! With `database.monitor = false` there is no policy and the VIP follows the VRRP mastership;
//! otherwise the VIP follows the policy's decisions (a verified writable database).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};
use whpg_policy::{Decision, Input, Notice, Policy};
use whpg_vrrp::{Action, Event, FaultSource, Instance, State};

use super::garp_schedule::GarpSchedule;
use super::jobs::{JobReport, Jobs};
use super::status::{describe_reason, NodeStatus};
use super::{reload, vrrp_setup};
use crate::config::{self, Config};
use crate::journal::{BackgroundJournal, Entry, Journal, Kind};
use crate::net::garp::GarpSender;
use crate::net::link::{InterfaceHealth, LinkEvent};
use crate::net::vip::{Change, Vip, VipManager};
use crate::net::vrrp_socket::VrrpSocket;

use super::status::WalReceiverStatus;
use crate::api::ApiCommand;
use crate::metrics::EventMetrics;

/// Largest datagram we read: an IPv4 header with options plus the largest v2/v3 advert.
const RECV_BUFFER: usize = 2048;
/// At most one log line per reason per this period for dropped packets (counters see them all).
const DROP_LOG_PERIOD: Duration = Duration::from_secs(10);

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

/// The database-aware half: the policy and the jobs it starts. Its observations arrive on the
/// channel given to [`Runner::run`].
pub struct Supervision {
    pub policy: Policy,
    pub jobs: Jobs,
    /// Starts a witness round at once (the policy asks before promoting over a silent master).
    pub witness_now: std::sync::Arc<tokio::sync::Notify>,
}

pub struct Runner {
    config: Config,
    supervision: Option<Supervision>,
    /// Policy inputs produced while carrying out actions, handled before the next event.
    pending: VecDeque<Input>,
    config_path: PathBuf,
    node: Option<String>,
    instance: Instance,
    socket: VrrpSocket,
    garp: Option<GarpSender>,
    garp_schedule: GarpSchedule,
    vips: VipManager,
    interface: InterfaceHealth,
    holds_vips: bool,
    /// Commands from the HTTP API (taken by [`Runner::run`]).
    commands: Option<mpsc::Receiver<ApiCommand>>,
    /// What finished jobs (fencing) report, for the journal.
    job_reports: Option<mpsc::UnboundedReceiver<JobReport>>,
    metrics: EventMetrics,
    /// The local standby's WAL receiver as last observed, for `/status` and `/standby`.
    wal_receiver: Option<WalReceiverStatus>,
    /// Start of the running promotion attempt, and the mastership it serves (Unix ms).
    promotion_started: Option<Instant>,
    failover_from_unix_ms: Option<u64>,
    status: NodeStatus,
    status_tx: watch::Sender<NodeStatus>,
    drop_logged: std::collections::HashMap<&'static str, Instant>,
    /// Where every transition, decision and action is recorded (none in tests of the loop).
    journal: Option<BackgroundJournal>,
    /// Why the policy refused the last planned promotion, for the API's answer.
    planned_refusal: Option<&'static str>,
}

impl Runner {
    pub fn new(
        config: Config,
        config_path: PathBuf,
        node: Option<String>,
        io: Io,
        supervision: Option<Supervision>,
        status_tx: watch::Sender<NodeStatus>,
    ) -> Runner {
        let Io {
            socket,
            garp,
            vips,
            interface,
        } = io;
        let instance = Instance::new(vrrp_setup::instance_config(&config));
        let garp_schedule = GarpSchedule::new(vrrp_setup::garp_timing(&config));
        let status = status_tx.borrow().clone();
        Runner {
            config,
            supervision,
            pending: VecDeque::new(),
            config_path,
            node,
            instance,
            socket,
            garp,
            garp_schedule,
            vips,
            interface,
            holds_vips: false,
            commands: None,
            job_reports: None,
            metrics: EventMetrics::default(),
            wal_receiver: None,
            promotion_started: None,
            failover_from_unix_ms: None,
            status,
            status_tx,
            drop_logged: Default::default(),
            journal: None,
            planned_refusal: None,
        }
    }

    /// Record everything from now on in `journal`.
    pub fn set_journal(&mut self, journal: Journal) {
        self.journal = Some(BackgroundJournal::start(journal));
    }

    /// Record what happened: in the journal and, with `recent` (kind and detail as `/status`
    /// shows them), among the recent events of `/status`. The log line is the caller's.
    fn record(&mut self, recent: Option<(&str, &str)>, entry: Entry) {
        if let Some((kind, detail)) = recent {
            self.status.record_event(kind, detail);
        }
        if let Some(journal) = &mut self.journal {
            journal.record(entry);
        }
    }

    /// A journal entry of this node.
    fn entry(&self, kind: Kind, detail: impl Into<String>) -> Entry {
        Entry::new(&self.config.local.name, kind, detail)
    }

    pub fn node_name(&self) -> &str {
        &self.config.local.name
    }

    /// Journal what the jobs report when they finish.
    pub fn set_job_reports(&mut self, reports: Option<mpsc::UnboundedReceiver<JobReport>>) {
        self.job_reports = reports;
    }

    /// Serve the HTTP API's commands and record into its metrics.
    pub fn set_api(&mut self, commands: mpsc::Receiver<ApiCommand>, metrics: EventMetrics) {
        self.commands = Some(commands);
        self.metrics = metrics;
    }

    /// Leave Initialize; with the link down or our address missing the instance starts in FAULT.
    pub async fn start(&mut self) {
        let now = Instant::now();
        // The policy speaks first: its start-up gate must hold before the instance can elect.
        if let Some(supervision) = &mut self.supervision {
            let decisions = supervision.policy.start(now);
            for decision in decisions {
                self.decide(decision, now).await;
            }
        }
        if self.interface.fault().is_some() {
            self.feed(
                Event::SetFault {
                    source: FaultSource::Interface,
                    active: true,
                },
                now,
            )
            .await;
        }
        self.feed(Event::Startup, now).await;
    }

    /// Run until SIGTERM or SIGINT, then resign and release the addresses.
    pub async fn run(
        &mut self,
        mut links: mpsc::Receiver<LinkEvent>,
        mut inputs: Option<mpsc::Receiver<Input>>,
    ) -> anyhow::Result<()> {
        let mut commands = self.commands.take();
        let mut job_reports = self.job_reports.take();
        let timer = super::deadline::Deadline::new()?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut links_open = true;
        let stop_signal = loop {
            let deadline = self.next_deadline();
            tokio::select! {
                input = recv_input(&mut inputs) => match input {
                    Some(input) => self.policy_input(input, Instant::now()).await,
                    None => {
                        error!("the database observers stopped: no more database decisions");
                        inputs = None;
                    }
                },
                received = self.socket.recv(&mut buf) => match received {
                    Ok(len) => {
                        let now = Instant::now();
                        let datagram = buf[..len].to_vec();
                        self.feed(Event::Ipv4Datagram(&datagram), now).await;
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
                    let now = Instant::now();
                    self.feed(Event::Timeout, now).await;
                    if self.supervision.is_some() {
                        self.policy_input(Input::Tick, now).await;
                    }
                    self.send_due_garps(now);
                }
                report = recv_report(&mut job_reports) => match report {
                    Some(report) => {
                        let kind = if report.complete { Kind::Action } else { Kind::Notice };
                        let entry = self.entry(kind, report.detail.clone());
                        self.record(Some((report.kind, &report.detail)), entry);
                        self.publish(Instant::now());
                    }
                    None => job_reports = None,
                },
                command = recv_command(&mut commands) => match command {
                    Some(command) => self.api_command(command).await,
                    None => commands = None,
                },
                event = links.recv(), if links_open => match event {
                    Some(event) => self.on_link_event(event).await,
                    None => {
                        error!("the link watcher stopped: link changes will not be noticed");
                        links_open = false;
                    }
                },
                _ = sighup.recv() => self.reload().await,
                _ = sigterm.recv() => break "SIGTERM",
                _ = sigint.recv() => break "SIGINT",
            }
        };
        info!("shutting down: resigning mastership and releasing the virtual addresses");
        let entry = self
            .entry(
                Kind::Notice,
                format!("{stop_signal}: shutting down, resigning the mastership"),
            )
            .with("event", "shutdown")
            .with("signal", stop_signal);
        self.record(None, entry);
        self.feed(Event::Shutdown, Instant::now()).await;
        let entry = self.entry(Kind::Notice, "stopped").with("event", "stopped");
        self.record(None, entry);
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let policy = self
            .supervision
            .as_ref()
            .and_then(|s| s.policy.next_wakeup());
        [
            self.instance.poll_timeout(),
            self.garp_schedule.next_due(),
            policy,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn on_link_event(&mut self, event: LinkEvent) {
        let name = &self.config.vrrp.interface;
        debug!("interface {name}: {event:?}");
        let Some(change) = self.interface.apply(&event) else {
            return;
        };
        let detail = match change {
            Some(fault) => {
                warn!("interface {name}: {fault:?}: entering FAULT");
                format!("interface {name}: {fault:?}")
            }
            None => {
                info!("interface {name}: link up and address present again: leaving FAULT");
                format!("interface {name}: link up and address present again")
            }
        };
        let entry = self
            .entry(Kind::Observation, detail)
            .with("interface", name.as_str())
            .with("fault", change.is_some());
        self.record(None, entry);
        let active = change.is_some();
        self.feed(
            Event::SetFault {
                source: FaultSource::Interface,
                active,
            },
            Instant::now(),
        )
        .await;
    }

    async fn reload(&mut self) {
        let new = match config::load(&self.config_path, self.node.as_deref()) {
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
            self.status.vrrp.configured_priority = priority;
            if self.supervision.is_some() {
                // The policy owns the effective priority (it adds the primary's bonus).
                self.policy_input(Input::BasePriority(priority), Instant::now())
                    .await;
            } else {
                self.feed(Event::SetPriority(priority), Instant::now())
                    .await;
            }
        }
        if plan.garp {
            info!("reload: gratuitous ARP timing updated");
            self.garp_schedule.set_timing(vrrp_setup::garp_timing(&new));
        }
        for key in &plan.needs_restart {
            warn!("reload: {key} changed but only takes effect after a restart");
        }
        if plan.priority.is_none() && !plan.garp && plan.needs_restart.is_empty() {
            info!("reload: no changes");
        }
        // Keep running on what is actually applied; the rest stays as it was.
        let mut applied = self.config.clone();
        applied.local.priority = new.local.priority;
        applied.vrrp.garp = new.vrrp.garp;
        self.config = applied;
    }

    /// Hand one event to the instance and carry out what it returns, then what the policy
    /// decides about it.
    async fn feed(&mut self, event: Event<'_>, now: Instant) {
        let actions = self.instance.handle(event, now);
        self.carry_out(actions, now).await;
        self.drain_policy(now).await;
        self.send_due_garps(now);
        self.publish(now);
    }

    /// One observation for the policy.
    async fn policy_input(&mut self, input: Input, now: Instant) {
        if let Input::PostmasterExited = input {
            warn!("the local postmaster exited");
            let entry = self.entry(Kind::Observation, "the local postmaster exited");
            self.record(Some(("database", "postmaster exited (pidfd)")), entry);
        }
        if let Input::Local(sample) = &input {
            self.wal_receiver = match sample {
                whpg_policy::LocalSample::Standby {
                    wal_receiver: Some(wal),
                    ..
                } => Some(WalReceiverStatus::from_sample(wal)),
                _ => None,
            };
        }
        self.pending.push_back(input);
        self.drain_policy(now).await;
        self.send_due_garps(now);
        self.publish(now);
    }

    async fn carry_out(&mut self, actions: Vec<Action>, now: Instant) {
        if actions.is_empty() {
            return;
        }
        let became_master = actions.iter().any(|a| {
            matches!(
                a,
                Action::Transition {
                    to: State::Master,
                    ..
                }
            )
        });
        // The instance lists a transition after the actions it brings (take the addresses,
        // advertise); the log and the journal tell it first, as the cause.
        for action in &actions {
            if let Action::Transition { from, to, reason } = action {
                let text = describe_reason(reason);
                info!("VRRP {from} -> {to}: {text}");
                self.status.record_transition(*from, *to, reason);
                let entry = self
                    .entry(Kind::Transition, format!("VRRP {from} -> {to}: {text}"))
                    .with("from", from.to_string())
                    .with("to", to.to_string())
                    .with("reason", text.as_str());
                self.record(None, entry);
            }
        }
        for action in actions {
            self.execute(action, became_master, now).await;
        }
    }

    /// Feed queued inputs to the policy and carry out its decisions until nothing is left.
    async fn drain_policy(&mut self, now: Instant) {
        while let Some(input) = self.pending.pop_front() {
            let Some(supervision) = &mut self.supervision else {
                self.pending.clear();
                return;
            };
            let decisions = supervision.policy.handle(input, now);
            for decision in decisions {
                self.decide(decision, now).await;
            }
        }
    }

    async fn decide(&mut self, decision: Decision, now: Instant) {
        self.measure(&decision, now);
        match decision {
            Decision::SetPriority(priority) => {
                debug!("policy: priority {priority}");
                let entry = self
                    .entry(Kind::Decision, format!("priority {priority}"))
                    .with("priority", priority);
                self.record(None, entry);
                let actions = self.instance.handle(Event::SetPriority(priority), now);
                self.carry_out(actions, now).await;
            }
            Decision::SetPreempt(preempt) => {
                debug!("policy: preempt {preempt}");
                let entry = self
                    .entry(Kind::Decision, format!("preempt {preempt}"))
                    .with("preempt", preempt);
                self.record(None, entry);
                let actions = self.instance.handle(Event::SetPreempt(preempt), now);
                self.carry_out(actions, now).await;
            }
            Decision::SetFault { source, active } => {
                let source_name = format!("{source:?}").to_lowercase();
                debug!("policy: fault {source_name} {active}");
                let detail = if active {
                    format!("enter FAULT ({source_name})")
                } else {
                    format!("clear the {source_name} fault")
                };
                let entry = self
                    .entry(Kind::Decision, detail)
                    .with("fault", source_name)
                    .with("active", active);
                self.record(None, entry);
                let actions = self
                    .instance
                    .handle(Event::SetFault { source, active }, now);
                self.carry_out(actions, now).await;
            }
            Decision::Resign => {
                warn!("policy: releasing the mastership so the peer can act");
                let entry =
                    self.entry(Kind::Decision, "release the mastership so the peer can act");
                self.record(None, entry);
                let actions = self.instance.handle(Event::Resign, now);
                self.carry_out(actions, now).await;
            }
            Decision::InstallVip => {
                let entry = self.entry(Kind::Decision, "install the virtual addresses");
                self.record(None, entry);
                self.install_vips().await;
                self.garp_schedule.announce(now);
                self.status
                    .record_event("vip", "virtual addresses installed");
            }
            Decision::RemoveVip => {
                let entry = self.entry(Kind::Decision, "remove the virtual addresses");
                self.record(None, entry);
                self.remove_vips().await;
                self.status.record_event("vip", "virtual addresses removed");
            }
            Decision::Promote { attempt } => {
                warn!("policy: promoting the local standby (attempt {attempt})");
                let entry = self
                    .entry(
                        Kind::Decision,
                        format!("promote the local standby (attempt {attempt})"),
                    )
                    .with("attempt", attempt);
                let recent = format!("attempt {attempt} started");
                self.record(Some(("promotion", &recent)), entry);
                if let Some(s) = &self.supervision {
                    s.jobs.promote(attempt);
                }
            }
            Decision::Fence(reason) => {
                error!("policy: fencing the local database: {reason:?}");
                let reason_text = format!("{reason:?}");
                let entry = self
                    .entry(
                        Kind::Decision,
                        format!("fence the local database: {reason_text}"),
                    )
                    .with("reason", reason_text.as_str());
                self.record(Some(("fence", &reason_text)), entry);
                if let Some(s) = &self.supervision {
                    s.jobs.fence(reason);
                }
            }
            Decision::CheckWitnesses => {
                debug!("policy: probing the witnesses now");
                if let Some(s) = &self.supervision {
                    s.witness_now.notify_one();
                }
            }
            Decision::Notice(notice) => self.notice(notice),
        }
    }

    fn notice(&mut self, notice: Notice) {
        let text = match &notice {
            Notice::StartupChecksDone => "start-up checks done: joining the election".to_string(),
            Notice::PromotionHeld(hold) => format!("promotion held: {hold:?}"),
            Notice::PromotionSucceeded { attempt } => {
                format!("promotion verified: the database is writable (attempt {attempt})")
            }
            Notice::PromotionFailed { attempt, error, giving_up } => format!(
                "promotion attempt {attempt} failed: {error}{}",
                if *giving_up { "; giving up and releasing the mastership" } else { "; will retry" }
            ),
            Notice::NeedsRejoin { local_timeline, peer_timeline } => format!(
                "this database is an old primary (timeline {local_timeline}, the peer's is {peer_timeline}): \
                 fenced, needs rejoin"
            ),
            Notice::PlannedPromotionRefused(reason) => {
                self.planned_refusal = Some(reason);
                format!("planned promotion refused: {reason}")
            }
            Notice::Demoted => {
                "demoted for a planned switchover: out of the election until rebuilt as a standby"
                    .to_string()
            }
            Notice::Rejoined => {
                "the local database is a healthy standby again: back in the election".to_string()
            }
            Notice::Isolated => "isolated: neither the peer nor the witnesses answer".to_string(),
            Notice::IsolationEnded => "no longer isolated".to_string(),
        };
        match notice {
            Notice::PromotionFailed { .. } | Notice::NeedsRejoin { .. } | Notice::Isolated => {
                error!("{text}")
            }
            Notice::PromotionHeld(_) | Notice::StartupChecksDone => info!("{text}"),
            _ => warn!("{text}"),
        }
        let entry = self.entry(Kind::Notice, text.as_str());
        self.record(Some(("policy", &text)), entry);
    }

    async fn install_vips(&mut self) {
        let mut outcome = VipOutcome::default();
        for vip in kernel_vips(&self.config) {
            match self.vips.add(&vip).await {
                Ok(change) => {
                    info!("virtual address {vip} installed");
                    outcome.done(change, &vip);
                }
                Err(e) => {
                    error!("{e}");
                    outcome.failed.push(e.to_string());
                }
            }
        }
        self.holds_vips = true;
        self.record_vips(outcome, "installed");
    }

    async fn remove_vips(&mut self) {
        self.garp_schedule.stop();
        let mut outcome = VipOutcome::default();
        for vip in kernel_vips(&self.config) {
            match self.vips.remove(&vip).await {
                Ok(change) => {
                    info!("virtual address {vip} removed");
                    outcome.done(change, &vip);
                }
                Err(e) => {
                    error!("{e}");
                    outcome.failed.push(e.to_string());
                }
            }
        }
        self.holds_vips = false;
        self.record_vips(outcome, "removed");
    }

    /// One journal entry for a change of the virtual addresses (none when nothing changed).
    fn record_vips(&mut self, outcome: VipOutcome, verb: &str) {
        if outcome.changed.is_empty() && outcome.failed.is_empty() {
            return;
        }
        let mut detail = if outcome.changed.is_empty() {
            format!("no virtual address {verb}")
        } else {
            format!("virtual addresses {verb}: {}", outcome.changed.join(", "))
        };
        if !outcome.failed.is_empty() {
            detail += &format!("; failed: {}", outcome.failed.join("; "));
        }
        let mut entry = self
            .entry(Kind::Action, detail)
            .with("vips", outcome.changed);
        if !outcome.unchanged.is_empty() {
            entry = entry.with("unchanged", outcome.unchanged);
        }
        if !outcome.failed.is_empty() {
            entry = entry.with("errors", outcome.failed);
        }
        self.record(None, entry);
    }

    async fn execute(&mut self, action: Action, became_master: bool, now: Instant) {
        match action {
            Action::Send(transmit) => {
                let std::net::IpAddr::V4(dst) = transmit.dst else {
                    return;
                };
                if let Err(e) = self.socket.send(dst, &transmit.payload).await {
                    warn!("sending advert to {dst}: {e}");
                }
            }
            // With a policy, the VIP follows its decisions (a writable database), not the mastership.
            Action::TakeAddresses if self.supervision.is_none() => self.install_vips().await,
            Action::ReleaseAddresses if self.supervision.is_none() => self.remove_vips().await,
            Action::TakeAddresses | Action::ReleaseAddresses => {}
            Action::GratuitousArp => {
                if became_master && self.supervision.is_none() {
                    self.garp_schedule.announce(now);
                } else if self.config.vrrp.garp.on_lower_priority {
                    self.garp_schedule.reannounce(now);
                }
            }
            Action::Transition { to, reason, .. } => {
                // Logged and recorded by `carry_out`, before the actions it explains.
                if to != State::Master {
                    self.garp_schedule.stop();
                }
                if self.supervision.is_some() {
                    self.pending.push_back(Input::Vrrp { to, reason });
                }
            }
            Action::ArmTimer(_) | Action::DisarmTimer => {
                // The loop asks the instance for its deadline on every turn.
            }
            Action::Dropped { src, reason } => {
                let label = reason.label();
                let due = self
                    .drop_logged
                    .get(label)
                    .is_none_or(|last| now.duration_since(*last) >= DROP_LOG_PERIOD);
                let from = src.map_or_else(|| "?".to_string(), |s| s.to_string());
                if due {
                    self.drop_logged.insert(label, now);
                    warn!("dropped VRRP packet from {from}: {reason} (further ones counted, logged at most every 10 s)");
                } else {
                    debug!("dropped VRRP packet from {from}: {reason}");
                }
            }
        }
    }

    fn send_due_garps(&mut self, now: Instant) {
        let rounds = self.garp_schedule.take_due(now);
        if rounds == 0 || !self.holds_vips {
            return;
        }
        let Some(garp) = &self.garp else { return };
        for _ in 0..rounds {
            for vip in &self.config.vips {
                if let Err(e) = garp.announce(vip.address) {
                    warn!("gratuitous ARP for {}: {e}", vip.address);
                }
            }
        }
    }

    /// Promotion and failover metrics from the policy's decisions.
    fn measure(&mut self, decision: &Decision, now: Instant) {
        match decision {
            Decision::Promote { attempt } => {
                self.metrics.promotions_started.inc();
                self.promotion_started = Some(now);
                if *attempt == 1 && self.instance.state() == State::Master {
                    self.failover_from_unix_ms = Some(self.status.vrrp.since_unix_ms);
                }
            }
            Decision::Notice(
                Notice::PromotionSucceeded { .. } | Notice::PromotionFailed { .. },
            ) => {
                if matches!(
                    decision,
                    Decision::Notice(Notice::PromotionSucceeded { .. })
                ) {
                    self.metrics.promotions_succeeded.inc();
                } else {
                    self.metrics.promotions_failed.inc();
                }
                if let Some(started) = self.promotion_started.take() {
                    let took = now.saturating_duration_since(started);
                    self.metrics.promotion_duration.observe(took.as_secs_f64());
                }
            }
            Decision::InstallVip => {
                if let Some(from) = self.failover_from_unix_ms.take() {
                    let now_ms = super::status::unix_ms(std::time::SystemTime::now());
                    let took = now_ms.saturating_sub(from) as f64 / 1000.0;
                    self.metrics.failover_duration.observe(took);
                }
            }
            Decision::RemoveVip | Decision::Resign => self.failover_from_unix_ms = None,
            _ => {}
        }
    }

    /// A command from the HTTP API; the answer goes back on its reply channel.
    async fn api_command(&mut self, command: ApiCommand) {
        match command {
            ApiCommand::Maintenance { on, reply } => {
                if self.supervision.is_none() {
                    let _ = reply.send(Err("database.monitor = false: there is no automatic \
                                            failover to suspend"
                        .into()));
                    return;
                }
                let text = if on {
                    "maintenance mode on: no automatic failover until it is turned off"
                } else {
                    "maintenance mode off: automatic failover enabled"
                };
                warn!("{text} (requested through the API)");
                let entry = self.entry(Kind::Decision, text).with("maintenance", on);
                self.record(Some(("maintenance", text)), entry);
                self.policy_input(Input::Maintenance(on), Instant::now())
                    .await;
                let now_on = self
                    .supervision
                    .as_ref()
                    .is_some_and(|s| s.policy.status().maintenance);
                let _ = reply.send(Ok(now_on));
            }
            ApiCommand::Demote { reply } => {
                let Some(supervision) = &self.supervision else {
                    let _ = reply.send(Err(
                        "database.monitor = false: no database to hand over".into()
                    ));
                    return;
                };
                let policy = supervision.policy.status();
                if !policy.local_healthy || policy.local_role != Some(whpg_policy::DbRole::Primary)
                {
                    let _ = reply.send(Err("the local database is not a healthy primary".into()));
                    return;
                }
                let text = "planned switchover: leaving the election, the database will be stopped";
                warn!("{text} (requested through the API)");
                let entry = self
                    .entry(Kind::Decision, text)
                    .with("switchover", "demote");
                self.record(Some(("switchover", text)), entry);
                self.policy_input(Input::Demote, Instant::now()).await;
                let _ = reply.send(Ok(()));
            }
            ApiCommand::PlannedPromotion { reply } => {
                if self.supervision.is_none() {
                    let _ = reply.send(Err("database.monitor = false: nothing to promote".into()));
                    return;
                }
                let text = "planned switchover: promote the local standby";
                let entry = self
                    .entry(Kind::Decision, text)
                    .with("switchover", "promote");
                self.record(Some(("switchover", text)), entry);
                self.planned_refusal = None;
                self.policy_input(Input::PlannedPromotion, Instant::now())
                    .await;
                let _ = reply.send(match self.planned_refusal.take() {
                    Some(reason) => Err(reason.to_string()),
                    None => Ok(()),
                });
            }
            ApiCommand::Record { detail, reply } => {
                info!("{detail}");
                let entry = self.entry(Kind::Action, detail.as_str());
                self.record(Some(("switchover", &detail)), entry);
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn publish(&mut self, now: Instant) {
        self.status
            .update_from(&self.instance, self.holds_vips, now);
        if let Some(supervision) = &self.supervision {
            self.status
                .update_database(&supervision.policy.status(), self.wal_receiver.clone());
        }
        self.status_tx.send_replace(self.status.clone());
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
}

async fn recv_report(
    reports: &mut Option<mpsc::UnboundedReceiver<JobReport>>,
) -> Option<JobReport> {
    match reports {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_command(commands: &mut Option<mpsc::Receiver<ApiCommand>>) -> Option<ApiCommand> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_input(inputs: &mut Option<mpsc::Receiver<Input>>) -> Option<Input> {
    match inputs {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
