//! One trial: a fresh lab, a stack started on it, a writer and two split-brain samplers running, a
//! fault at a random moment of the advert cycle, and what followed, bounded by [`Fault::limit`].

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use std::thread::{Scope, ScopedJoinHandle};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use whpg_lab::postgres::{PG_BIN_DIR, PG_OS_USER};
use whpg_lab::{wait_until, Process};

use crate::behind;
use crate::contenders::{whpg_ha_config_path, Contender, Options, Promotion};
use crate::etcd;
use crate::lab::{in_recovery, stored_ids, whpg_ha_status, Topology, PG_PORT, VIP};
use crate::sampler::{longest_overlap, DbSeen, Sample, Sampler};
use crate::writer::{Commit, Writer};

/// Longest wait from the fault for the first committed write (see [`Fault::limit`]).
pub const TRIAL_LIMIT: Duration = Duration::from_secs(30);
/// The shorter bound of the faults after which no write can happen ([`Fault::write_expected`]).
const NO_WRITE_LIMIT: Duration = Duration::from_secs(12);
/// How long the writer and samplers go on after the first write (late flaps, split brain).
const TAIL: Duration = Duration::from_secs(1);
/// Bound on reaching a steady pair before the fault.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// The VIP must stay on n1 alone this long before the pair counts as settled.
const SETTLE_HOLD: Duration = Duration::from_millis(1500);
/// How long a partition or an isolation lasts before it heals: longer than whpg-ha's 3 s
/// confirmation and keepalived-seed's ~3.6 s master-down interval.
const CUT: Duration = Duration::from_secs(5);
/// partition-15s: a partition longer than the `sync_timeout` (10 s) the benchmark gives
/// whpg-ha's synchronous modes, so `sync` commits alone before it heals.
const LONG_CUT: Duration = Duration::from_secs(15);
/// Cycles of the flapping faults, and their down / up phases.
const FLAPS: usize = 5;
const LINK_DOWN: Duration = Duration::from_millis(400);
const LINK_UP: Duration = Duration::from_millis(600);
const DB_REJECT: Duration = Duration::from_millis(250);
/// Not a whole second with the reject phase: keepalived checks once a second, and windows in
/// step with its checks would be hit every time or never, by the luck of the phase.
const DB_ACCEPT: Duration = Duration::from_millis(450);
const DB_FLAPS: usize = 7;
/// Bound on the switchover command (the CLI's own steps are bounded well below it).
const SWITCHOVER_LIMIT: Duration = Duration::from_secs(120);
/// etcd-down-crash: how long the whole etcd cluster is down before n1's postmaster is killed.
const ETCD_DOWN_BEFORE_CRASH: Duration = Duration::from_secs(2);
/// etcd-member-down and etcd-down: how long the trial goes on after the first write, two lease
/// TTLs of the arbiter contender (5 s), so that a lease that runs out shows its effect.
const ETCD_TAIL: Duration = Duration::from_secs(10);

/// A fault injected into the settled pair (n1 primary and master, n2 standby and backup).
///
/// Every fault is timed from just before its injection starts. Faults that last (a partition, an
/// isolation, flapping) apply their first step before the clock's "injected" mark and heal in a
/// background thread, so the first write can be seen while the fault still lasts; the trial's
/// tail starts only once the fault has healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// `kill -9` of the primary's postmaster.
    #[serde(rename = "db-crash")]
    DbCrash,
    /// n1's link goes down.
    #[serde(rename = "link-loss")]
    LinkLoss,
    /// `pg_ctl stop -m fast` of the primary.
    #[serde(rename = "db-stop")]
    DbStop,
    /// `kill -9` of the standby's postmaster: no failover allowed.
    #[serde(rename = "standby-down")]
    StandbyDown,
    /// n1's link down for 1 s, then up again: no failover allowed where the profile tolerates it.
    #[serde(rename = "blip-1s")]
    Blip,
    /// SIGKILL of the HA daemon (its whole process group) on n1, the master: the database is
    /// fine, so no failover allowed.
    #[serde(rename = "daemon-kill")]
    DaemonKill,
    /// SIGKILL of the HA daemon's process group on n2, the backup (keepalived's parent and VRRP
    /// child, or whpg-ha). Nothing is wrong with the primary: no failover allowed, and writes go
    /// on at n1 untouched.
    #[serde(rename = "daemon-kill-backup")]
    DaemonKillBackup,
    /// All IP traffic between n1 and n2 cut at both ends for [`CUT`] (5 s), then healed; the
    /// witness and the client still reach both. n2 hears no advert, cannot probe n1's database
    /// and gets no WAL for longer than any stack's detection time (whpg-ha's 3 s confirmation,
    /// keepalived-seed's ~3.6 s master-down interval), while its witness answers: every stack
    /// without an arbiter is expected to fail over. No two-host design can keep one VIP holder
    /// during the cut (n1 is not isolated and keeps serving); with the arbiter n1 keeps the etcd
    /// leader key (both sides reach gw's member) and n2 must not promote at all: no failover, one
    /// VIP holder throughout. Without it, what matters is the heal: whpg-ha must fence the old
    /// primary (older timeline) and keep the VIP on n2; keepalived is likely to preempt back to n1
    /// and leave two primaries. Commits n1 acknowledged during the cut never reached n2, so some
    /// loss is inherent with asynchronous replication; the lost-commit count tells the rest.
    #[serde(rename = "partition")]
    Partition,
    /// As [`Fault::Partition`], but the cut lasts [`LONG_CUT`] (15 s): longer than whpg-ha's
    /// `sync_timeout` (10 s here), so with `[replication] mode = "sync"` n1 stops waiting for n2
    /// and commits alone before the heal (what that loses is the point, per trial), while
    /// `sync-strict` keeps waiting. Same expectations as the partition otherwise.
    #[serde(rename = "partition-15s")]
    PartitionLong,
    /// n2 cut off from n1 and from the witness for [`CUT`] (the client still reaches both), then
    /// healed. For whpg-ha n2 has lost its peer and its witness quorum: it is the isolated side
    /// and must not promote (it may fence itself). No failover allowed for any stack; keepalived
    /// has no witness and is expected to promote n2 anyway, which is a finding about keepalived,
    /// not a harness fault.
    #[serde(rename = "partition-witness-n1")]
    PartitionWitnessN1,
    /// n1 cut off from everything (n2, the witness, the client) for [`CUT`] by dropping all IP
    /// through its `eth0` while the link stays up, then healed. A real outage of the master:
    /// failover expected for all. whpg-ha's n1, having lost its peer and its witness, must drop
    /// the VIP and fence its database, so nothing is left to clash with n2 after the heal.
    /// The samplers see n1's link as live during the cut, so a VIP or a primary it keeps counts
    /// towards split brain (which it becomes at the heal).
    #[serde(rename = "isolation")]
    Isolation,
    /// n1's link down for 400 ms and up for 600 ms, five times. No failover allowed for whpg-ha's
    /// default profile (3 s confirmation) and keepalived-seed (3 s master-down interval); the fast
    /// profiles may take either path.
    #[serde(rename = "flapping-link")]
    FlappingLink,
    /// The local health checks of n1's database fail briefly: seven times, 0.7 s apart, new TCP
    /// connections to 127.0.0.1:5432 inside n1 are answered with a reset for 250 ms. Both stacks
    /// probe there (whpg-ha with a new connection per probe, keepalived with `pg_isready`); the
    /// writer comes through the VIP and the samplers keep an established connection, so they are
    /// unaffected. The database is fine: no failover allowed for any stack. A check that fails
    /// over on one miss (keepalived-fast: fall 1) may promote n2 here, which counts as wrong.
    #[serde(rename = "flapping-db")]
    FlappingDb,
    /// n2's promotion fails (whpg-ha: `[commands.promote] argv = ["/bin/false"]`; keepalived: the
    /// notify_master script runs `/bin/false` instead of `pg_ctl promote`), then the primary's
    /// postmaster is killed (-9). No stack can produce a write (trial bounded to 12 s). What
    /// matters is that the VIP is not left on a read-only standby: see
    /// [`Outcome::vip_on_read_only_ms`]. No failover possible or expected.
    #[serde(rename = "promote-fails")]
    PromoteFails,
    /// As [`Fault::PromoteFails`] with a promotion that hangs (`/bin/sleep 3600`; whpg-ha's
    /// promote `timeout` set to 2 s on n2, keepalived's notify script just hangs).
    #[serde(rename = "promote-hangs")]
    PromoteHangs,
    /// `kill -9` of the primary's postmaster; once the first write after the fault committed,
    /// n1's database is started again as it was (a primary on the old timeline). Failover
    /// expected. whpg-ha must fence the restarted old primary and never give it the VIP;
    /// keepalived is likely to hand the VIP back to n1 (higher priority, preempt), with split
    /// brain and lost commits. Losses are counted against the new primary n2: a commit n1
    /// acknowledged after its restart is lost by definition.
    #[serde(rename = "old-primary-restart")]
    OldPrimaryRestart,
    /// A planned switchover under the writer's load, timed from its start to the first write
    /// committed by n2. whpg-ha: `whpg-ha switchover --yes` run in n1's namespace with n1's
    /// configuration. keepalived (both): what the seed's `notify_switchover.sh` does: `pg_ctl stop
    /// -m fast -w -t 60` of n1's database, then keepalived on n1 stopped (SIGTERM), and n2's
    /// notify_master promotes. Failover expected, and no acknowledged commit may be lost.
    #[serde(rename = "switchover")]
    Switchover,
    /// Only the replication stream n1 → n2 is cut: the packets of n2's WAL receiver connection
    /// are dropped at both ends by its 4-tuple (read from n1's `pg_stat_replication`), silently,
    /// as a network fault would; VRRP, both daemons' probes, new connections and the client's
    /// writes through the VIP go on. After 3 s of writes to n1 (checked: n2's received position
    /// stood still while n1's moved on), n1's postmaster is killed (-9); the clock starts there.
    /// n2 lacks every commit n1 acknowledged after the cut. Expected for every stack: no
    /// failover, so no write (trial bounded to 12 s) and nothing lost (n1's database is started
    /// again after the trial to count). whpg-ha must see that n2's stream broke while n1 was
    /// alive and not promote; keepalived checks only that n2's database answers, promotes it and
    /// loses what n1 acknowledged after the cut: a finding about keepalived.
    #[serde(rename = "stream-cut")]
    StreamCut,
    /// n2's database is stopped (fast), n1 writes some 130 MB of WAL (a bulk insert) while the
    /// client goes on writing, n2 is started again, and as soon as its WAL receiver streams,
    /// while it is still catching up, n1's postmaster is killed (-9). The harness checks that n2
    /// was behind at the crash: its received position read just after the crash is below n1's
    /// flushed position read just before. Expected for every stack: no promotion of a standby
    /// that is behind, no write, nothing lost (counted on n1's database restarted after the
    /// trial). keepalived promotes n2 once its database answers, which is a finding about it.
    #[serde(rename = "standby-restart-crash")]
    StandbyRestartCrash,
    /// As [`Fault::StreamCut`], with n2's HA daemon restarted while n2 is behind: 1 s after the
    /// cut, SIGTERM, exit awaited, started again on the same configuration and waited for as a
    /// settled backup; n1 is killed 3 s after the cut and at least 1 s after the restart.
    /// Expected: whpg-ha keeps n2 marked not promotable across its restart: no failover, no
    /// write, nothing lost. keepalived (restarted the same way) promotes and loses commits.
    #[serde(rename = "standby-daemon-restart-behind")]
    StandbyDaemonRestartBehind,
    /// As [`Fault::StreamCut`], then the stream heals (the drop rules removed, the same
    /// connection resumes) and the harness waits until n2 has received everything n1 had
    /// flushed at the heal, plus 1.5 s of writes, before n1's postmaster is killed (-9). The
    /// allowed recovery: a failover is expected for every stack, timed from the crash like
    /// `db-crash`, with nothing lost beyond what asynchronous replication can lose at a crash.
    #[serde(rename = "stream-cut-heal")]
    StreamCutHeal,
    /// `kill -9` of the etcd member in the witness host gw (n1's and n2's keep the quorum).
    /// Nothing must change for any stack: no failover, writes go on at n1.
    #[serde(rename = "etcd-member-down")]
    EtcdMemberDown,
    /// `kill -9` of all three etcd members. With both daemons up and talking, the arbiter's
    /// failsafe keeps n1 serving past its lease: no failover and no outage, writes go on (the
    /// trial goes on 10 s, two lease TTLs). The stacks without an arbiter do not use etcd.
    #[serde(rename = "etcd-down")]
    EtcdDown,
    /// All three etcd members killed (-9), then after 2 s `kill -9` of n1's postmaster; the clock
    /// starts at the crash. With the arbiter n2 cannot take the leader key and must never promote
    /// on an arbiter error: no failover, so no write (trial bounded to 12 s); losses are counted
    /// on n1's database started again after the trial. For the stacks without an arbiter it is a
    /// db-crash: they fail over, as they should.
    #[serde(rename = "etcd-down-crash")]
    EtcdDownCrash,
}

impl Fault {
    pub const ALL: [Fault; 24] = [
        Fault::DbCrash,
        Fault::LinkLoss,
        Fault::DbStop,
        Fault::StandbyDown,
        Fault::Blip,
        Fault::DaemonKill,
        Fault::DaemonKillBackup,
        Fault::Partition,
        Fault::PartitionLong,
        Fault::PartitionWitnessN1,
        Fault::Isolation,
        Fault::FlappingLink,
        Fault::FlappingDb,
        Fault::PromoteFails,
        Fault::PromoteHangs,
        Fault::OldPrimaryRestart,
        Fault::Switchover,
        Fault::StreamCut,
        Fault::StandbyRestartCrash,
        Fault::StandbyDaemonRestartBehind,
        Fault::StreamCutHeal,
        Fault::EtcdMemberDown,
        Fault::EtcdDown,
        Fault::EtcdDownCrash,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::DbCrash => "db-crash",
            Fault::LinkLoss => "link-loss",
            Fault::DbStop => "db-stop",
            Fault::StandbyDown => "standby-down",
            Fault::Blip => "blip-1s",
            Fault::DaemonKill => "daemon-kill",
            Fault::DaemonKillBackup => "daemon-kill-backup",
            Fault::Partition => "partition",
            Fault::PartitionLong => "partition-15s",
            Fault::PartitionWitnessN1 => "partition-witness-n1",
            Fault::Isolation => "isolation",
            Fault::FlappingLink => "flapping-link",
            Fault::FlappingDb => "flapping-db",
            Fault::PromoteFails => "promote-fails",
            Fault::PromoteHangs => "promote-hangs",
            Fault::OldPrimaryRestart => "old-primary-restart",
            Fault::Switchover => "switchover",
            Fault::StreamCut => "stream-cut",
            Fault::StandbyRestartCrash => "standby-restart-crash",
            Fault::StandbyDaemonRestartBehind => "standby-daemon-restart-behind",
            Fault::StreamCutHeal => "stream-cut-heal",
            Fault::EtcdMemberDown => "etcd-member-down",
            Fault::EtcdDown => "etcd-down",
            Fault::EtcdDownCrash => "etcd-down-crash",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Whether `which` should promote the standby after this fault; `None` when either is
    /// acceptable (a 1 s blip is a real outage for a profile that fails over in 0.5 s).
    pub fn failover_expected(self, which: Contender) -> Option<bool> {
        match self {
            // n1 keeps the leader key: both sides of the cut reach gw's etcd member.
            Fault::Partition | Fault::PartitionLong => Some(!which.has_arbiter()),
            // Never a promotion on an arbiter error; without an arbiter a plain db-crash.
            Fault::EtcdDownCrash => Some(!which.has_arbiter()),
            Fault::DbCrash
            | Fault::LinkLoss
            | Fault::DbStop
            | Fault::Isolation
            | Fault::OldPrimaryRestart
            | Fault::Switchover
            | Fault::StreamCutHeal => Some(true),
            Fault::StandbyDown
            | Fault::DaemonKill
            | Fault::DaemonKillBackup
            | Fault::PartitionWitnessN1
            | Fault::FlappingDb
            | Fault::PromoteFails
            | Fault::PromoteHangs
            | Fault::StreamCut
            | Fault::StandbyRestartCrash
            | Fault::StandbyDaemonRestartBehind
            | Fault::EtcdMemberDown
            | Fault::EtcdDown => Some(false),
            Fault::Blip | Fault::FlappingLink => match which {
                Contender::WhpgHa | Contender::WhpgHaArbiter | Contender::KeepalivedSeed => {
                    Some(false)
                }
                Contender::WhpgHaFast | Contender::KeepalivedFast => None,
            },
        }
    }

    /// Whether a write through the VIP can follow the fault at all for `which`: not when the
    /// primary is dead and the standby cannot (or must not) be promoted. A trial without one is
    /// then the expected outcome.
    pub fn write_expected(self, which: Contender) -> bool {
        match self {
            Fault::PromoteFails
            | Fault::PromoteHangs
            | Fault::StreamCut
            | Fault::StandbyRestartCrash
            | Fault::StandbyDaemonRestartBehind => false,
            Fault::EtcdDownCrash => !which.has_arbiter(),
            _ => true,
        }
    }

    /// Longest wait from the fault for the first committed write: the shorter bound for the
    /// faults after which some stack must not write (the same for every stack, so their rows
    /// stay comparable; it is well beyond the slowest failover after a crash).
    pub fn limit(self) -> Duration {
        let no_write_for_some = Contender::ALL
            .into_iter()
            .any(|which| !self.write_expected(which));
        if no_write_for_some {
            NO_WRITE_LIMIT
        } else {
            TRIAL_LIMIT
        }
    }

    /// Whether the trial needs the lab's etcd cluster whatever the stack (the etcd faults kill
    /// its members for every stack, so the rows side by side stay comparable).
    pub fn uses_etcd(self) -> bool {
        matches!(
            self,
            Fault::EtcdMemberDown | Fault::EtcdDown | Fault::EtcdDownCrash
        )
    }

    /// Whether the first-write time measures a failover, so comparing it across stacks means
    /// something (for the others writes simply go on at n1, or the time includes the fault).
    pub fn times_failover(self) -> bool {
        matches!(
            self,
            Fault::DbCrash
                | Fault::LinkLoss
                | Fault::DbStop
                | Fault::Isolation
                | Fault::OldPrimaryRestart
                | Fault::Switchover
                | Fault::StreamCutHeal
        )
    }

    /// n2's promotion in this fault's trials.
    fn n2_promotion(self) -> Promotion {
        match self {
            Fault::PromoteFails => Promotion::Fails,
            Fault::PromoteHangs => Promotion::Hangs,
            _ => Promotion::Works,
        }
    }

    /// How long the trial goes on after the first write (and after the fault has healed): longer
    /// for the faults that must not fail over, so a late promotion is seen, and for those whose
    /// aftermath (fencing, preemption back to n1) is the point.
    fn tail(self) -> Duration {
        match self {
            Fault::DbCrash | Fault::LinkLoss => TAIL,
            Fault::Switchover => Duration::from_secs(3),
            Fault::OldPrimaryRestart => Duration::from_secs(6),
            Fault::EtcdMemberDown | Fault::EtcdDown => ETCD_TAIL,
            _ => Duration::from_secs(5),
        }
    }
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// A write committed through the VIP after the fault.
    Ok,
    /// No write committed within [`Fault::limit`]: the stack failed this trial, unless the fault
    /// leaves nothing that can be written ([`Fault::write_expected`]).
    NoWrite,
    /// The standby was already promoted before the fault (a start-up race): not measured.
    PromotedBeforeFault,
    /// The harness could not set up or observe the trial.
    HarnessError,
}

/// When and by whom a commit that was later lost had been acknowledged.
#[derive(Debug, Clone, Serialize)]
pub struct LostAck {
    pub id: i64,
    pub node: String,
    pub acked_ms: f64,
}

fn signed_ms(t: Instant, t0: Instant) -> f64 {
    if t >= t0 {
        ms(t - t0)
    } else {
        -ms(t0 - t)
    }
}

/// Everything recorded about one trial.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub fault: Fault,
    pub implementation: Contender,
    pub trial: usize,
    pub status: Status,
    /// Random delay before the fault, within one advert interval.
    pub phase_ms: f64,
    /// How long the fault injection call took (included in the times).
    pub injection_ms: f64,
    /// Fault → first commit acknowledged to an attempt started after the fault.
    pub first_write_ms: Option<f64>,
    /// `cluster_name` of the server that acknowledged it.
    pub first_write_node: Option<String>,
    /// Fault → VIP seen live on n2.
    pub vip_on_n2_ms: Option<f64>,
    /// n2's database was promoted: out of recovery at the end, or seen writable on a live link
    /// at some point after the fault (a promoted standby that was fenced again still failed
    /// over).
    pub failover: bool,
    /// Whether a failover should have happened (`None`: either is acceptable).
    pub failover_expected: Option<bool>,
    /// n2's keepalived entered MASTER before the fault (start-up), promoted or not.
    pub n2_master_before_fault: bool,
    /// Longest time both hosts held the VIP on a live link.
    pub vip_on_both_ms: f64,
    /// Longest time both databases were writable on a live link.
    pub both_writable_ms: f64,
    /// One of the two above lasted longer than one advert interval.
    pub split_brain: bool,
    /// Total time after the fault during which n2 held the VIP on a live link while its database
    /// was not writable (n2's samples with `vip && !writable`): clients sent to a standby that
    /// cannot take their writes.
    pub vip_on_read_only_ms: f64,
    /// Longest time after the fault without an acknowledged write (from the fault, or between two
    /// acknowledgements, or from the last one to the end of the trial): the write outage as the
    /// client saw it.
    pub longest_write_gap_ms: f64,
    /// Commits acknowledged to the writer during the whole trial.
    pub acknowledged: usize,
    /// INSERT attempts the writer started.
    pub attempts: u64,
    /// Acknowledged ids missing from the final primary (`None`: no primary to ask).
    pub lost: Option<usize>,
    pub lost_ids: Vec<i64>,
    /// For each lost id: the node that acknowledged it and when, in ms from the fault (negative:
    /// before it).
    pub lost_acks: Vec<LostAck>,
    /// The faults in which n2 falls behind ([`behind`]): how many bytes of WAL n1 had flushed
    /// beyond what n2 had received at the crash, at least (negative: n2 was not behind).
    pub n2_behind_bytes: Option<i64>,
    /// What the fault's own steps reported (the switchover command's result, a restart refused).
    pub notes: Vec<String>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn new(fault: Fault, implementation: Contender, trial: usize) -> Outcome {
        Outcome {
            fault,
            implementation,
            trial,
            status: Status::HarnessError,
            phase_ms: 0.0,
            injection_ms: 0.0,
            first_write_ms: None,
            first_write_node: None,
            vip_on_n2_ms: None,
            failover: false,
            failover_expected: fault.failover_expected(implementation),
            n2_master_before_fault: false,
            vip_on_both_ms: 0.0,
            both_writable_ms: 0.0,
            split_brain: false,
            vip_on_read_only_ms: 0.0,
            longest_write_gap_ms: 0.0,
            acknowledged: 0,
            attempts: 0,
            lost: None,
            lost_ids: Vec::new(),
            lost_acks: Vec::new(),
            n2_behind_bytes: None,
            notes: Vec::new(),
            error: None,
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// A pseudo-random delay in `[0, interval)`, from the clock's nanoseconds.
pub fn random_phase(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) | 1;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let micros = interval.as_micros().max(1) as u64;
    Duration::from_micros(x % micros)
}

/// Runs one trial; `out` is filled as far as it got (also on error). With `all_logs` the lab's
/// logs are kept for every trial, not only the unusual ones.
pub fn run(out: &mut Outcome, daemon: &Path, logs: Option<&Path>, all_logs: bool) -> Result<()> {
    let (fault, which) = (out.fault, out.implementation);
    let topo = Topology::build(&format!("bench_{}_{}", fault.name(), which.name()))?;
    let result = measure(out, &topo, daemon);
    let unexpected_status = match out.status {
        Status::Ok => !fault.write_expected(which),
        Status::NoWrite => fault.write_expected(which),
        _ => true,
    };
    let keep_logs = all_logs
        || result.is_err()
        || unexpected_status
        || out.failover_expected.is_some_and(|e| e != out.failover)
        || out.split_brain
        || out.lost.unwrap_or(0) > 0
        || out.vip_on_read_only_ms > 0.0
        || out.n2_master_before_fault;
    if let (true, Some(dir)) = (keep_logs, logs) {
        let dest = dir.join(format!("{}-{}-{}", fault.name(), which.name(), out.trial));
        if let Err(e) = copy_logs(topo.lab.dir(), &dest) {
            eprintln!("cannot keep the logs in {}: {e:#}", dest.display());
        }
    }
    result
}

fn copy_logs(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_file()
            && (name.ends_with(".log") || name.ends_with(".conf") || name.ends_with(".toml"))
        {
            std::fs::copy(&path, to.join(&*name))?;
        } else if path.is_dir() && name.ends_with(".notify") {
            let log = path.join("notify.log");
            if log.exists() {
                std::fs::copy(&log, to.join(format!("{name}.log")))?;
            }
        } else if path.is_dir() && name.ends_with(".journal") {
            let journal = path.join("journal.jsonl");
            if journal.exists() {
                std::fs::copy(&journal, to.join(format!("{name}.jsonl")))?;
            }
        }
    }
    Ok(())
}

fn measure(out: &mut Outcome, topo: &Topology, daemon: &Path) -> Result<()> {
    let (fault, which) = (out.fault, out.implementation);
    let options = Options {
        n2_promotion: fault.n2_promotion(),
    };
    // Started before the stack and dropped (killed) after it: declared before `procs`.
    let etcd = if which.has_arbiter() || fault.uses_etcd() {
        Some(etcd::Cluster::start(topo)?)
    } else {
        None
    };
    let endpoints = etcd::endpoints(topo);
    let mut procs = which.start(
        &topo.lab,
        daemon,
        [(&topo.n1, &topo.primary), (&topo.n2, &topo.standby)],
        topo.gw.address(),
        etcd.as_ref().map(|_| endpoints.as_slice()),
        options,
    )?;
    settle(topo, which, &procs, etcd.as_ref())?;
    let vip: Ipv4Addr = VIP.parse()?;
    let s1 = Sampler::start(topo.n1.netns(), vip, PG_PORT)?;
    let s2 = Sampler::start(topo.n2.netns(), vip, PG_PORT)?;
    let writer = Writer::start(topo.client.netns(), VIP, PG_PORT)?;
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "the writer to commit through the VIP",
        || writer.commits().len() >= 5,
    )?;
    out.n2_master_before_fault = !which.is_whpg_ha()
        && procs
            .get(1)
            .is_some_and(|p| p.log_contents().contains("Entering MASTER STATE"));
    if in_recovery(&topo.standby) != Some(true) {
        out.status = Status::PromotedBeforeFault;
        return Ok(());
    }

    let phase = random_phase(which.advert_interval());
    out.phase_ms = ms(phase);
    std::thread::sleep(phase);
    // The faults in which n2 falls behind do their part before the crash now; the clock starts
    // at the crash.
    let prepared = behind::prepare(fault, which, topo, &mut procs, daemon)?;
    if let Some(p) = &prepared {
        out.notes.extend(p.notes.iter().cloned());
    }
    if fault == Fault::EtcdDownCrash {
        let cluster = etcd
            .as_ref()
            .context("etcd-down-crash without the etcd cluster")?;
        cluster.kill9_all()?;
        std::thread::sleep(ETCD_DOWN_BEFORE_CRASH);
        out.notes.push(format!(
            "all etcd members killed {:.0} s before the crash",
            ETCD_DOWN_BEFORE_CRASH.as_secs_f64()
        ));
    }
    let procs = procs;
    // Times run from just before the fault is injected; only attempts started once the injection
    // has returned count (`ip link set` takes a few ms, during which n1 still answers). A lasting
    // fault goes on in a scoped thread; the scope joins it (so it heals) even on an early error.
    let t0 = Instant::now();
    let first = std::thread::scope(|scope| -> Result<Option<Commit>> {
        let rest = inject(fault, which, topo, &procs, etcd.as_ref(), daemon, scope)?;
        let injected = Instant::now();
        out.injection_ms = ms(injected - t0);
        // Where n2 stood at the crash, read (off the clock) as soon as n1 is dead.
        let received = prepared
            .is_some()
            .then(|| scope.spawn(|| behind::received_after_crash(topo)));
        // A switchover's old primary acknowledges writes until it stops: only the new one's count.
        let node = (fault == Fault::Switchover).then_some(topo.n2.name());
        let first = loop {
            if let Some(commit) = writer.first_commit_started_after(injected, node) {
                break Some(commit);
            }
            if t0.elapsed() >= fault.limit() {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(rest) = rest {
            let notes = rest
                .join()
                .map_err(|_| anyhow!("the fault's thread panicked"))??;
            out.notes.extend(notes);
        }
        if let (Some(p), Some(received)) = (&prepared, received) {
            let received = received
                .join()
                .map_err(|_| anyhow!("the thread reading n2's position panicked"))??;
            let behind = behind::check_at_crash(p, received)?;
            out.n2_behind_bytes = Some(behind);
            out.notes.push(format!(
                "at the crash n2 had received at most {}, n1 had flushed at least {}: {}",
                behind::lsn(received),
                behind::lsn(p.n1_flushed),
                if behind > 0 {
                    format!("n2 {behind} bytes behind")
                } else {
                    "n2 not behind".to_string()
                }
            ));
        }
        Ok(first)
    })?;
    if first.is_some() {
        if fault == Fault::OldPrimaryRestart {
            // The stack may stop the old primary while it starts (fencing): that is its answer,
            // not a harness failure.
            if let Err(e) = topo.primary.start() {
                out.notes.push(format!("restarting n1's database: {e:#}"));
            } else {
                out.notes.push(format!(
                    "n1's database restarted {:.0} ms after the fault",
                    ms(t0.elapsed())
                ));
            }
        }
        std::thread::sleep(fault.tail());
    }
    out.attempts = writer.attempts();
    let end = Instant::now();
    let commits = writer.stop()?;
    out.longest_write_gap_ms = ms(longest_gap(&commits, t0, end));
    let n1_samples = s1.stop()?;
    let n2_samples = s2.stop()?;

    match &first {
        Some(commit) => {
            out.status = Status::Ok;
            out.first_write_ms = Some(ms(commit.acked - t0));
            out.first_write_node = Some(commit.node.clone());
        }
        None => out.status = Status::NoWrite,
    }
    out.vip_on_n2_ms = n2_samples
        .iter()
        .find(|s| s.at >= t0 && s.vip)
        .map(|s| ms(s.at - t0));
    let vip_both = longest_overlap(&n1_samples, &n2_samples, |s| s.vip);
    let writable_both = longest_overlap(&n1_samples, &n2_samples, |s| s.writable);
    out.vip_on_both_ms = ms(vip_both);
    out.both_writable_ms = ms(writable_both);
    out.split_brain = vip_both.max(writable_both) > which.advert_interval();
    out.vip_on_read_only_ms = ms(total_time(&n2_samples, t0, |s| s.vip && !s.writable));
    if let Some(note) = vip_on_read_only_note(&n2_samples, t0) {
        out.notes.push(note);
    }

    // A standby promoted and then stopped (fenced) still failed over: seen writable once counts.
    let n2_primary_at_end = in_recovery(&topo.standby) == Some(false);
    out.failover = n2_primary_at_end || n2_samples.iter().any(|s| s.at >= t0 && s.writable);
    out.acknowledged = commits.len();
    // What n2 lacks where the stream stayed cut (stream-cut-heal brought it over).
    let cut = prepared
        .as_ref()
        .filter(|p| p.not_reached.is_some())
        .and_then(|p| p.cut_at);
    if let Some(cut) = cut {
        let after_cut = commits
            .iter()
            .filter(|c| c.acked > cut && c.acked <= t0 && c.node == topo.n1.name())
            .count();
        out.notes.push(format!(
            "n1 acknowledged {after_cut} commits between the cut and the crash"
        ));
    }
    if let Some(cluster) = etcd.as_ref().filter(|_| which.has_arbiter()) {
        // Only while a quorum of members runs (a read without one fails after its timeout).
        if cluster.running() >= 2 {
            out.notes.push(format!(
                "leader key at the end: {}",
                etcd::key_holder(topo).unwrap_or_else(|| "none or unreadable".into())
            ));
        }
        // What each daemon says of the arbiter (the failsafe at work in etcd-down, a lost lease).
        for host in [&topo.n1, &topo.n2] {
            if let Some(status) = whpg_ha_status(host) {
                let a = &status["arbiter"];
                out.notes.push(format!(
                    "{}'s arbiter at the end: reachable {}, held {}, holder {}, failsafe_active \
                     {}, lease_lost {}",
                    host.name(),
                    a["reachable"],
                    a["held"],
                    a["holder"],
                    a["failsafe_active"],
                    a["lease_lost"]
                ));
            }
        }
    }
    let mut procs = procs;
    // After a crash without a failover, as these faults expect, n1's data directory has what n1
    // acknowledged.
    let crash_without_failover = prepared.is_some() || fault == Fault::EtcdDownCrash;
    let final_primary = if n2_primary_at_end {
        Some(&topo.standby)
    } else if in_recovery(&topo.primary) == Some(false) {
        Some(&topo.primary)
    } else if crash_without_failover {
        // No failover after a crash, as these faults expect: what n1 acknowledged is in its
        // data directory. The stacks are stopped first, so none reacts to the restart.
        drop(std::mem::take(&mut procs));
        match topo.primary.start() {
            Ok(()) => {
                out.notes.push(
                    "no primary at the end: losses counted on n1's database started again after \
                     the trial"
                        .into(),
                );
                Some(&topo.primary)
            }
            Err(e) => {
                out.notes
                    .push(format!("restarting n1's database to count losses: {e:#}"));
                None
            }
        }
    } else {
        None
    };
    if let Some(node) = final_primary {
        let stored: std::collections::HashSet<i64> = stored_ids(node)?.into_iter().collect();
        let mut lost: Vec<i64> = commits
            .iter()
            .map(|c| c.id)
            .filter(|id| !stored.contains(id))
            .collect();
        lost.sort_unstable();
        out.lost_acks = commits
            .iter()
            .filter(|c| lost.contains(&c.id))
            .map(|c| LostAck {
                id: c.id,
                node: c.node.clone(),
                acked_ms: signed_ms(c.acked, t0),
            })
            .collect();
        out.lost = Some(lost.len());
        out.lost_ids = lost;
    }
    drop(procs);
    Ok(())
}

/// The part of a lasting fault that runs after its injection: it returns notes for the outcome.
type Rest<'scope> = ScopedJoinHandle<'scope, Result<Vec<String>>>;

/// Injects `fault`. Returns once the fault is in place; a fault that lasts (and heals, or a
/// switchover that takes its time) goes on in a thread of `scope`.
fn inject<'scope, 'env>(
    fault: Fault,
    which: Contender,
    topo: &'env Topology,
    procs: &'env [Process],
    etcd: Option<&'env etcd::Cluster>,
    daemon: &'env Path,
    scope: &'scope Scope<'scope, 'env>,
) -> Result<Option<Rest<'scope>>> {
    let lab = &topo.lab;
    let (n1, n2) = (&topo.n1, &topo.n2);
    match fault {
        Fault::DbCrash
        | Fault::PromoteFails
        | Fault::PromoteHangs
        | Fault::OldPrimaryRestart
        | Fault::StreamCut
        | Fault::StandbyRestartCrash
        | Fault::StandbyDaemonRestartBehind
        | Fault::StreamCutHeal
        | Fault::EtcdDownCrash => {
            topo.primary.kill9()?;
        }
        Fault::EtcdMemberDown => etcd
            .context("etcd-member-down without the etcd cluster")?
            .kill9(2)?,
        Fault::EtcdDown => etcd
            .context("etcd-down without the etcd cluster")?
            .kill9_all()?,
        Fault::LinkLoss => lab.link_down(n1)?,
        Fault::DbStop => topo.primary.stop_fast()?,
        Fault::StandbyDown => {
            topo.standby.kill9()?;
        }
        Fault::Blip => {
            lab.link_down(n1)?;
            std::thread::sleep(Duration::from_secs(1));
            lab.link_up(n1)?;
        }
        Fault::DaemonKill => sigkill_group(procs, 0)?,
        Fault::DaemonKillBackup => sigkill_group(procs, 1)?,
        Fault::Partition | Fault::PartitionLong => {
            let cut = if fault == Fault::PartitionLong {
                LONG_CUT
            } else {
                CUT
            };
            lab.partition(n1, n2)?;
            return Ok(Some(scope.spawn(move || {
                std::thread::sleep(cut);
                lab.heal(n1, n2)?;
                Ok(Vec::new())
            })));
        }
        Fault::PartitionWitnessN1 => {
            let witness = topo.gw.address();
            lab.partition(n1, n2)?;
            lab.block_traffic_from(n2, witness)?;
            return Ok(Some(scope.spawn(move || {
                std::thread::sleep(CUT);
                // Both heals are tried, whatever the first one does.
                let peer = lab.heal(n1, n2);
                let witness = lab.unblock_traffic_from(n2, witness);
                peer.and(witness)?;
                Ok(Vec::new())
            })));
        }
        Fault::Isolation => {
            lab.isolate(n1)?;
            return Ok(Some(scope.spawn(move || {
                std::thread::sleep(CUT);
                lab.unisolate(n1)?;
                Ok(Vec::new())
            })));
        }
        Fault::FlappingLink => {
            lab.link_down(n1)?;
            return Ok(Some(scope.spawn(move || {
                let flaps = (|| -> Result<()> {
                    for cycle in 0..FLAPS {
                        if cycle > 0 {
                            lab.link_down(n1)?;
                        }
                        std::thread::sleep(LINK_DOWN);
                        lab.link_up(n1)?;
                        std::thread::sleep(LINK_UP);
                    }
                    Ok(())
                })();
                if flaps.is_err() {
                    // Leave the link up whatever failed, so the rest of the trial means something.
                    let _ = lab.link_up(n1);
                }
                flaps.map(|()| Vec::new())
            })));
        }
        Fault::FlappingDb => {
            let local = "127.0.0.1";
            lab.reject_new_tcp(n1, local, PG_PORT)?;
            return Ok(Some(scope.spawn(move || {
                let mut notes = Vec::new();
                let flaps = (|| -> Result<()> {
                    for cycle in 0..DB_FLAPS {
                        if cycle > 0 {
                            lab.reject_new_tcp(n1, local, PG_PORT)?;
                        } else {
                            // Proof that the rule bites: keepalived's own check, once, inside
                            // the first window (a reset answers at once).
                            let port = PG_PORT.to_string();
                            let isready = format!("{PG_BIN_DIR}/pg_isready");
                            let argv = [isready.as_str(), "-h", local, "-p", &port, "-t", "1"];
                            let check = n1.exec_timeout(&argv, Duration::from_secs(2))?;
                            notes.push(format!(
                                "pg_isready in n1 during the first window: exit {:?} {}",
                                check.status.code(),
                                check.stdout.trim()
                            ));
                        }
                        std::thread::sleep(DB_REJECT);
                        lab.unreject_new_tcp(n1, local, PG_PORT)?;
                        std::thread::sleep(DB_ACCEPT);
                    }
                    Ok(())
                })();
                if flaps.is_err() {
                    let _ = lab.unreject_new_tcp(n1, local, PG_PORT);
                }
                flaps.map(|()| notes)
            })));
        }
        Fault::Switchover => {
            return Ok(Some(
                scope.spawn(move || switchover(which, topo, procs, daemon)),
            ));
        }
    }
    Ok(None)
}

/// SIGKILL to the process group of the HA daemon `procs[index]` (0: n1, 1: n2).
fn sigkill_group(procs: &[Process], index: usize) -> Result<()> {
    let group = procs.get(index).map_or(0, |p| p.pid() as i32);
    // SAFETY: kill(2) with a negative pid signals that process group, the daemon's own.
    if group <= 0 || unsafe { libc::kill(-group, libc::SIGKILL) } != 0 {
        bail!("cannot SIGKILL the daemon on n{}", index + 1);
    }
    Ok(())
}

/// A planned switchover from n1 to n2, the stack's own way. A switchover the stack refuses or
/// fails is a result (a note), not a harness failure; a command that cannot be run is one.
fn switchover(
    which: Contender,
    topo: &Topology,
    procs: &[Process],
    daemon: &Path,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    if which.is_whpg_ha() {
        let config = whpg_ha_config_path(&topo.lab, &topo.n1);
        let argv = [
            daemon.as_os_str(),
            "switchover".as_ref(),
            "--yes".as_ref(),
            // The lab's API has no TLS; its network is the bench's own namespaces.
            "--insecure-token-over-http".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--node".as_ref(),
            topo.n1.name().as_ref(),
        ];
        let started = Instant::now();
        let output = topo.n1.exec_timeout(&argv, SWITCHOVER_LIMIT)?;
        let text = format!("{}{}", output.stdout, output.stderr);
        std::fs::write(topo.lab.dir().join("switchover-cli.log"), &text)?;
        notes.push(format!(
            "whpg-ha switchover: {} after {:.0} ms",
            if output.success() {
                "succeeded"
            } else {
                "FAILED"
            },
            ms(started.elapsed())
        ));
        if let Some(gap) = text.lines().find(|l| l.contains("write gap")) {
            notes.push(gap.trim().to_string());
        }
        if !output.success() {
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            notes.push(tail.into_iter().rev().collect::<Vec<_>>().join(" / "));
        }
    } else {
        // The seed's notify_switchover.sh: the database first, then keepalived (DB first, VIP
        // second, to avoid split brain).
        let data = topo.primary.data_dir().to_string_lossy().into_owned();
        let pg_ctl = format!("{PG_BIN_DIR}/pg_ctl");
        let stop = topo.n1.exec_as_timeout(
            PG_OS_USER,
            &[
                pg_ctl.as_str(),
                "stop",
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "-D",
                data.as_str(),
            ],
            Duration::from_secs(70),
        )?;
        notes.push(format!(
            "pg_ctl stop on n1: {}",
            if stop.success() { "ok" } else { "FAILED" }
        ));
        let keepalived = procs.first().context("no keepalived on n1")?;
        keepalived.sigterm()?;
    }
    Ok(notes)
}

/// The longest stretch of `[from, end]` without an acknowledgement in `commits`.
fn longest_gap(commits: &[Commit], from: Instant, end: Instant) -> Duration {
    let mut acks: Vec<Instant> = commits
        .iter()
        .map(|c| c.acked)
        .filter(|&at| at > from && at <= end)
        .collect();
    acks.sort_unstable();
    acks.push(end);
    let mut last = from;
    let mut longest = Duration::ZERO;
    for at in acks {
        longest = longest.max(at - last);
        last = at;
    }
    longest
}

/// Total time after `from` during which `holds` was true, from a timeline sampled in order (each
/// sample stands for the time until the next one).
/// What n2's database probe found while n2 held the VIP and was not seen writable, and when
/// (milliseconds after the fault), so such a stretch can be told apart: a standby serving the VIP,
/// or a probe that went unanswered.
fn vip_on_read_only_note(samples: &[Sample], t0: Instant) -> Option<String> {
    let bad: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= t0 && s.vip && !s.writable)
        .collect();
    let first = bad.first()?;
    let last = bad.last()?;
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for s in &bad {
        let what = if s.db == DbSeen::Primary {
            "primary, eth0 down"
        } else {
            s.db.text()
        };
        match counts.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => counts.push((what, 1)),
        }
    }
    let counts: Vec<String> = counts
        .iter()
        .map(|(what, n)| format!("{n} × {what}"))
        .collect();
    Some(format!(
        "n2 held the VIP while not seen writable from +{:.0} ms to +{:.0} ms: {}",
        ms(first.at - t0),
        ms(last.at - t0),
        counts.join(", ")
    ))
}

fn total_time(samples: &[Sample], from: Instant, holds: impl Fn(&Sample) -> bool) -> Duration {
    samples
        .windows(2)
        .filter(|pair| pair[0].at >= from && holds(&pair[0]))
        .map(|pair| pair[1].at - pair[0].at)
        .sum()
}

/// Waits until n1 alone holds the VIP (for [`SETTLE_HOLD`]) and n2 is a settled backup whose
/// health check has run; with the arbiter, also until the leader key names n1.
fn settle(
    topo: &Topology,
    which: Contender,
    procs: &[Process],
    etcd: Option<&etcd::Cluster>,
) -> Result<()> {
    let start = Instant::now();
    'again: loop {
        let left = SETTLE_LIMIT.saturating_sub(start.elapsed());
        wait_until(
            left,
            Duration::from_millis(20),
            "the VIP on n1 only",
            || topo.n1.has_address(VIP) && !topo.n2.has_address(VIP),
        )?;
        let held = Instant::now();
        while held.elapsed() < SETTLE_HOLD {
            if !topo.n1.has_address(VIP) || topo.n2.has_address(VIP) {
                continue 'again;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        break;
    }
    let n2 = procs.get(1).context("no HA daemon on n2")?;
    behind::wait_settled_backup(
        topo,
        which,
        n2,
        SETTLE_LIMIT.saturating_sub(start.elapsed()),
    )?;
    if which.is_whpg_ha() && crate::contenders::replication_mode() != "async" {
        // The trial measures the mode only once n1's daemon made its commits wait for n2.
        topo.primary.wait_for_sql(
            "SELECT sync_state FROM pg_stat_replication",
            "sync",
            SETTLE_LIMIT.saturating_sub(start.elapsed()),
        )?;
    }
    if which.has_arbiter() {
        let cluster = etcd.context("the arbiter contender without the etcd cluster")?;
        cluster.wait_key_held_by(
            topo,
            topo.n1.name(),
            SETTLE_LIMIT.saturating_sub(start.elapsed()),
        )?;
    }
    for (name, proc) in ["n1", "n2"].iter().zip(procs) {
        if !proc.is_running() {
            bail!("the HA daemon on {name} exited: {}", proc.log_contents());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vip_on_read_only_note_says_what_the_probe_found_and_when() {
        let t0 = Instant::now();
        let sample = |ms: u64, vip: bool, db: DbSeen| Sample {
            at: t0 + Duration::from_millis(ms),
            vip,
            writable: db == DbSeen::Primary,
            db,
        };
        let samples = [
            sample(0, false, DbSeen::InRecovery),
            sample(10, true, DbSeen::InRecovery),
            sample(20, true, DbSeen::TimedOut),
            sample(130, true, DbSeen::Primary),
            sample(140, true, DbSeen::Failed),
            sample(150, true, DbSeen::TimedOut),
        ];
        assert_eq!(
            vip_on_read_only_note(&samples, t0).as_deref(),
            Some(
                "n2 held the VIP while not seen writable from +10 ms to +150 ms: 1 × in \
                 recovery, 2 × no answer within 100 ms, 1 × connection or query failed"
            )
        );
        assert_eq!(vip_on_read_only_note(&samples[3..4], t0), None);
    }

    #[test]
    fn every_fault_parses_back_from_its_name() {
        for fault in Fault::ALL {
            assert_eq!(Fault::parse(fault.name()), Some(fault));
        }
        assert_eq!(Fault::parse("etcd-down-crash"), Some(Fault::EtcdDownCrash));
    }

    #[test]
    fn the_arbiter_changes_the_expectation_of_the_partition_and_of_a_crash_without_etcd() {
        let arbiter = Contender::WhpgHaArbiter;
        assert_eq!(Fault::Partition.failover_expected(arbiter), Some(false));
        assert_eq!(Fault::EtcdDownCrash.failover_expected(arbiter), Some(false));
        assert!(!Fault::EtcdDownCrash.write_expected(arbiter));
        // A real outage still fails over with the arbiter.
        for fault in [Fault::DbCrash, Fault::LinkLoss, Fault::Isolation] {
            assert_eq!(fault.failover_expected(arbiter), Some(true), "{fault:?}");
        }
        for which in [
            Contender::WhpgHa,
            Contender::WhpgHaFast,
            Contender::KeepalivedSeed,
            Contender::KeepalivedFast,
        ] {
            // Without an arbiter etcd-down-crash is a db-crash and the partition fails over.
            assert_eq!(Fault::Partition.failover_expected(which), Some(true));
            assert_eq!(Fault::EtcdDownCrash.failover_expected(which), Some(true));
            assert!(Fault::EtcdDownCrash.write_expected(which));
        }
        for which in Contender::ALL {
            for fault in [Fault::EtcdMemberDown, Fault::EtcdDown] {
                assert_eq!(fault.failover_expected(which), Some(false), "{fault:?}");
                assert!(fault.write_expected(which), "{fault:?}");
            }
        }
    }

    #[test]
    fn the_etcd_faults_start_etcd_and_a_crash_without_etcd_is_bounded_like_the_no_write_faults() {
        assert!(Fault::ALL.iter().filter(|f| f.uses_etcd()).eq([
            Fault::EtcdMemberDown,
            Fault::EtcdDown,
            Fault::EtcdDownCrash
        ]
        .iter()));
        assert_eq!(Fault::EtcdDownCrash.limit(), NO_WRITE_LIMIT);
        assert_eq!(Fault::PromoteFails.limit(), NO_WRITE_LIMIT);
        assert_eq!(Fault::EtcdDown.limit(), TRIAL_LIMIT);
        assert_eq!(Fault::DbCrash.limit(), TRIAL_LIMIT);
        // The tail outlasts two lease TTLs where a lost lease would show.
        assert_eq!(Fault::EtcdDown.tail(), ETCD_TAIL);
    }
}
