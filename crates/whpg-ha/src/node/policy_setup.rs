//! From the validated configuration to the settings of the HA policy core.

use std::time::Duration;

use whpg_policy::{ArbiterRules, PolicyConfig, ReplicationConfig, SyncConfig, SyncMode, Triggers};

use crate::config::{Config, LeaseLoss, ReplicationMode, Trigger};

/// Added to the priority of a node whose database is a healthy primary: larger than any gap
/// between configured priorities, so a primary always outranks a standby.
pub(crate) const PRIMARY_BONUS: u8 = 100;

/// Master_Down_Interval at this node's configured priority: 3 adverts plus Skew_Time.
fn master_down_interval_at_base(config: &Config) -> Duration {
    let advert = config.vrrp.advert_interval;
    let skew = advert * (256 - u32::from(config.local.priority)) / 256;
    advert * 3 + skew
}

/// Added to the priority of a node whose database is a healthy standby: as much as keeps it
/// below every healthy primary ([`PRIMARY_BONUS`] minus the largest gap between the configured
/// priorities, minus one; 0 when the gap leaves no room). A higher priority means a shorter
/// Skew_Time: at 100 ms adverts a standby configured at 98 beside 100 waits 24 ms instead of
/// 62 ms after its master resigns or falls silent.
pub(crate) fn standby_bonus(config: &Config) -> u8 {
    let priorities =
        std::iter::once(config.local.priority).chain(config.peers.iter().map(|peer| peer.priority));
    let (low, high) = priorities.fold((u8::MAX, u8::MIN), |(low, high), p| {
        (low.min(p), high.max(p))
    });
    PRIMARY_BONUS
        .saturating_sub(1)
        .saturating_sub(high.saturating_sub(low))
}

/// Promotion attempts before the mastership is released (invariant 3).
const PROMOTION_ATTEMPTS: u32 = 3;
const PROMOTION_RETRY_DELAY: Duration = Duration::from_secs(2);
/// A failed setting of `synchronous_standby_names` is tried again after this.
const SYNC_RETRY_DELAY: Duration = Duration::from_secs(2);

pub fn policy_config(config: &Config) -> PolicyConfig {
    let failover = &config.failover;
    let health = &config.health;
    PolicyConfig {
        base_priority: config.local.priority,
        preempt: config.vrrp.preempt,
        primary_bonus: PRIMARY_BONUS,
        standby_bonus: standby_bonus(config),
        standby_bonus_after: master_down_interval_at_base(config),
        triggers: Triggers {
            database_failure: failover.triggers_on(Trigger::DatabaseFailure),
            node_loss: failover.triggers_on(Trigger::NodeLoss),
            network_loss: failover.triggers_on(Trigger::NetworkLoss),
        },
        confirmation: failover.confirmation,
        wal_freshness: failover.wal_freshness,
        // Invariant 2: "answered within the last probe interval". Samples arrive when probes
        // finish, so an interval after a good answer the next probe may still be in flight: until
        // its answer (or its timeout) the peer stays alive. With the interval alone, a primary
        // whose answer came a few ms later than the one before counted as dead in between, and a
        // standby whose master's daemon had stopped promoted beside the live primary (lab:
        // graceful stop of the master's daemon, database up).
        peer_alive_window: health.interval,
        peer_probe_timeout: health.timeout,
        fall: health.fall,
        rise: health.rise,
        fence_when_isolated: failover.fence_when_isolated,
        witness_enabled: config.witness.enabled(),
        // Fence an isolated node before the peer can promote (half the confirmation time), but
        // never on fewer than three missed witness rounds.
        isolation_after: (failover.confirmation / 2)
            .max(config.witness.interval * 3 + config.witness.timeout),
        promotion_attempts: PROMOTION_ATTEMPTS,
        promotion_retry_delay: PROMOTION_RETRY_DELAY,
        // Long enough for a few probes of the peer; after it a node decides alone.
        startup_grace: (health.interval + health.timeout) * 3 + failover.confirmation,
        replication: ReplicationConfig {
            maximum_lag: failover.maximum_lag,
            maximum_lag_time: failover.maximum_lag_time,
            synchronous_required: config.replication.mode != ReplicationMode::Async,
        },
        sync: SyncConfig {
            mode: match config.replication.mode {
                ReplicationMode::Async => SyncMode::Async,
                ReplicationMode::Sync => SyncMode::Sync,
                ReplicationMode::SyncStrict => SyncMode::SyncStrict,
            },
            timeout: config.replication.sync_timeout,
            maximum_lag: failover.maximum_lag,
            // The standby's own daemon marks itself not promotable after two snapshots of this
            // primary without its WAL sender: two of its probe intervals, and one still in
            // flight (the same health settings on both nodes).
            not_streaming_grace: health.interval * 2 + health.timeout,
            retry_delay: SYNC_RETRY_DELAY,
        },
    }
}

/// The arbiter's rules, when `[arbiter]` is configured (invariant 10).
pub fn arbiter_rules(config: &Config) -> Option<ArbiterRules> {
    config.arbiter.as_ref().map(|a| ArbiterRules {
        fence_on_loss: a.on_lease_loss == LeaseLoss::Fence,
        failsafe: a.failsafe,
    })
}
