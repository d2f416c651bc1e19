//! `/metrics`: what the daemon exposes to Prometheus.
//!
//! Two sources. Gauges and counters that the status snapshot already holds (VRRP state, priority,
//! adverts, drops, VIP, database role) are read from the latest snapshot at scrape time by a
//! collector, so they can never drift from `/status`. Things the snapshot does not keep —
//! promotion counts and durations, failover and probe durations — are recorded as they happen
//! through [`EventMetrics`]. Everything restarts from zero with the daemon, as Prometheus expects.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use crate::status::NodeStatus;

/// Content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// VRRP states, each exported as its own 0/1 series.
const VRRP_STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];
/// Database roles, each exported as its own 0/1 series.
const DB_ROLES: [&str; 3] = ["primary", "standby", "unknown"];

/// Buckets for failover and promotion durations: 50 ms to 60 s.
fn action_buckets() -> Vec<f64> {
    vec![0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]
}

/// Buckets for a database probe: 0.5 ms to 2 s.
fn probe_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
    ]
}

type ProbeLabels = [(&'static str, &'static str); 1];

/// Duration of each database probe round (startup packet plus observation query), by target
/// (`local`, `peer`). Process-wide so that the observers record into it without being wired to
/// the API.
static PROBE_DURATION: LazyLock<Family<ProbeLabels, Histogram>> =
    LazyLock::new(|| Family::new_with_constructor(|| Histogram::new(probe_buckets())));

/// Record how long one probe of `target` (`local` or `peer`) took.
pub fn observe_probe(target: &'static str, took: Duration) {
    PROBE_DURATION
        .get_or_create(&[("target", target)])
        .observe(took.as_secs_f64());
}

/// Metrics the daemon loop records as things happen. Cheap to clone (shared counters).
#[derive(Debug, Clone)]
pub struct EventMetrics {
    pub promotions_started: Counter,
    pub promotions_succeeded: Counter,
    pub promotions_failed: Counter,
    /// Promotions held because the standby may miss acknowledged commits.
    pub promotions_refused_not_promotable: Counter,
    /// From the start of a promotion attempt to its verified result (success or failure).
    pub promotion_duration: Histogram,
    /// From this node taking over the VRRP mastership to the virtual address installed on its
    /// freshly promoted database.
    pub failover_duration: Histogram,
}

impl Default for EventMetrics {
    fn default() -> Self {
        EventMetrics {
            promotions_started: Counter::default(),
            promotions_succeeded: Counter::default(),
            promotions_failed: Counter::default(),
            promotions_refused_not_promotable: Counter::default(),
            promotion_duration: Histogram::new(action_buckets()),
            failover_duration: Histogram::new(action_buckets()),
        }
    }
}

/// The registry served on `/metrics`: the snapshot collector plus the event metrics.
pub fn registry(status: watch::Receiver<NodeStatus>, events: &EventMetrics) -> Registry {
    let mut registry = Registry::with_prefix("whpg_ha");
    registry.register_collector(Box::new(SnapshotCollector { status }));
    registry.register(
        "promotions_started",
        "Promotion attempts started on this node",
        events.promotions_started.clone(),
    );
    registry.register(
        "promotions_succeeded",
        "Promotions verified writable on this node",
        events.promotions_succeeded.clone(),
    );
    registry.register(
        "promotions_failed",
        "Promotion attempts that failed, timed out or could not be verified",
        events.promotions_failed.clone(),
    );
    registry.register(
        "promotions_refused_not_promotable",
        "Promotions held because the standby was not known to hold every acknowledged commit",
        events.promotions_refused_not_promotable.clone(),
    );
    registry.register_with_unit(
        "promotion_duration",
        "Duration of promotion attempts, start to verified result",
        Unit::Seconds,
        events.promotion_duration.clone(),
    );
    registry.register_with_unit(
        "failover_duration",
        "Time from taking over the VRRP mastership to the virtual address installed on the promoted database",
        Unit::Seconds,
        events.failover_duration.clone(),
    );
    registry.register_with_unit(
        "probe_duration",
        "Duration of database probe rounds, by target (local, peer)",
        Unit::Seconds,
        PROBE_DURATION.clone(),
    );
    registry
}

/// The registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
        tracing::warn!("encoding /metrics: {e}");
    }
    text
}

/// Reads the latest status snapshot at every scrape.
#[derive(Debug)]
struct SnapshotCollector {
    status: watch::Receiver<NodeStatus>,
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One 0/1 gauge per value of `label`, 1 for `current`.
fn one_hot(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
    current: Option<&str>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for value in values {
        let metric = ConstGauge::new(i64::from(current == Some(*value)));
        metric.encode(family.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = self.status.borrow().clone();
        let vrrp = &status.vrrp;
        let e = &mut encoder;
        one_hot(
            e,
            "vrrp_state",
            "VRRP state of this node: 1 for the current state",
            "state",
            &VRRP_STATES,
            Some(vrrp.state.as_str()),
        )?;
        gauge(
            e,
            "vrrp_priority",
            "Effective VRRP priority",
            i64::from(vrrp.priority),
        )?;
        gauge(
            e,
            "vrrp_configured_priority",
            "Configured VRRP priority",
            i64::from(vrrp.configured_priority),
        )?;
        let c = &vrrp.counters;
        counter(
            e,
            "vrrp_transitions",
            "VRRP state transitions",
            c.transitions,
        )?;
        counter(e, "vrrp_adverts_sent", "VRRP adverts sent", c.adverts_sent)?;
        counter(
            e,
            "vrrp_adverts_received",
            "VRRP adverts received",
            c.adverts_received,
        )?;
        {
            let metric_type = prometheus_client::metrics::MetricType::Counter;
            let mut family = e.encode_descriptor(
                "vrrp_dropped",
                "VRRP packets dropped, by reason",
                None,
                metric_type,
            )?;
            for (reason, count) in &c.dropped {
                ConstCounter::new(*count)
                    .encode(family.encode_family(&[("reason", reason.as_str())])?)?;
            }
        }
        gauge(
            e,
            "vip_held",
            "1 when this node has the virtual addresses installed",
            i64::from(status.holds_vips),
        )?;
        if let Some(db) = &status.database {
            one_hot(
                e,
                "database_role",
                "Role of the local database: 1 for the current role",
                "role",
                &DB_ROLES,
                Some(db.role.as_str()),
            )?;
            gauge(
                e,
                "database_healthy",
                "1 when the local database is healthy",
                i64::from(db.healthy),
            )?;
            gauge(
                e,
                "maintenance",
                "1 while maintenance mode is on (no automatic failover)",
                i64::from(db.maintenance),
            )?;
            gauge(
                e,
                "needs_rejoin",
                "1 when this database is an old primary that must be rejoined",
                i64::from(db.needs_rejoin),
            )?;
            gauge(
                e,
                "fenced",
                "1 when the local database is fenced",
                i64::from(db.fenced.is_some()),
            )?;
            if let Some(wal) = &db.wal_receiver {
                gauge(
                    e,
                    "wal_receiver_streaming",
                    "1 when the local standby's WAL receiver is streaming",
                    i64::from(wal.streaming),
                )?;
            }
            if let Some(r) = &db.replication {
                if let Some(lag) = r.lag_bytes {
                    gauge(
                        e,
                        "replication_lag_bytes",
                        "The primary's WAL position minus what the standby has on disk",
                        i64::try_from(lag).unwrap_or(i64::MAX),
                    )?;
                }
                if let Some(ms) = r.lag_ms {
                    gauge(
                        e,
                        "replication_lag_milliseconds",
                        "How long WAL the primary had has been missing on the standby (0: none)",
                        i64::try_from(ms).unwrap_or(i64::MAX),
                    )?;
                }
                if let Some(streaming) = r.streaming {
                    gauge(
                        e,
                        "replication_streaming",
                        "1 when the primary lists the standby's WAL sender as streaming",
                        i64::from(streaming),
                    )?;
                }
                if let Some(sync) = r.synchronous {
                    gauge(
                        e,
                        "replication_synchronous",
                        "1 when commits wait for the standby (sync_state sync or quorum)",
                        i64::from(sync),
                    )?;
                }
                if let Some(names) = &r.synchronous_standby_names {
                    gauge(
                        e,
                        "replication_sync_standby_required",
                        "1 when this primary's daemon set synchronous_standby_names to its \
                         standby ([replication] mode sync or sync-strict), 0 when it commits alone",
                        i64::from(!names.is_empty()),
                    )?;
                }
                if let Some(mode) = &r.mode {
                    gauge(
                        e,
                        "replication_mode",
                        "[replication] mode: 0 async, 1 sync, 2 sync-strict",
                        match mode.as_str() {
                            "sync" => 1,
                            "sync-strict" => 2,
                            _ => 0,
                        },
                    )?;
                }
                if let Some(promotable) = r.promotable {
                    gauge(
                        e,
                        "standby_promotable",
                        "1 when the local standby is known to hold every acknowledged commit",
                        i64::from(promotable),
                    )?;
                }
            }
        }
        if let Some(a) = &status.arbiter {
            arbiter_gauges(e, a)?;
        }
        Ok(())
    }
}

/// `[arbiter]`: whether etcd answers, whether the key is ours and for how long.
fn arbiter_gauges(e: &mut DescriptorEncoder, a: &crate::status::ArbiterView) -> std::fmt::Result {
    gauge(
        e,
        "arbiter_reachable",
        "1 when etcd answered the arbiter's latest request",
        i64::from(a.reachable == Some(true)),
    )?;
    gauge(
        e,
        "arbiter_key_held",
        "1 while this node holds the arbiter's leader key",
        i64::from(a.held),
    )?;
    gauge(
        e,
        "arbiter_lease_left_milliseconds",
        "How long the held lease is certain to last (0 when not held)",
        i64::try_from(a.lease_left_ms.unwrap_or(0)).unwrap_or(i64::MAX),
    )?;
    gauge(
        e,
        "arbiter_failsafe_active",
        "1 while serving past the lease on the standby's confirmation (etcd silent)",
        i64::from(a.failsafe_active),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_appear_in_the_text_format() {
        let status = crate::status::test_status();
        let (_tx, rx) = watch::channel(status);
        let events = EventMetrics::default();
        events.promotions_started.inc();
        events.failover_duration.observe(0.25);
        observe_probe("local", Duration::from_millis(3));
        let text = render(&registry(rx, &events));
        for line in [
            "whpg_ha_vrrp_state{state=\"BACKUP\"} 1",
            "whpg_ha_vrrp_state{state=\"MASTER\"} 0",
            "whpg_ha_vrrp_priority 100",
            "whpg_ha_vip_held 0",
            "whpg_ha_promotions_started_total 1",
            "whpg_ha_failover_duration_seconds_count 1",
            "whpg_ha_probe_duration_seconds_count{target=\"local\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        assert!(!text.contains("arbiter"), "no arbiter configured:\n{text}");
    }

    #[test]
    fn the_arbiter_appears_when_configured() {
        let mut status = crate::status::test_status();
        status.arbiter = Some(crate::status::ArbiterView {
            reachable: Some(true),
            holder: Some("a".into()),
            held: true,
            lease_left_ms: Some(2300),
            ..Default::default()
        });
        let (_tx, rx) = watch::channel(status);
        let text = render(&registry(rx, &EventMetrics::default()));
        for line in [
            "whpg_ha_arbiter_reachable 1",
            "whpg_ha_arbiter_key_held 1",
            "whpg_ha_arbiter_lease_left_milliseconds 2300",
            "whpg_ha_arbiter_failsafe_active 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
    }

    #[test]
    fn the_replication_mode_and_whether_the_primary_waits_for_its_standby_appear() {
        let mut status = crate::status::test_status();
        status.database = Some(crate::status::test_sync_primary());
        let (_tx, rx) = watch::channel(status);
        let text = render(&registry(rx, &EventMetrics::default()));
        for line in [
            "whpg_ha_replication_mode 1",
            "whpg_ha_replication_sync_standby_required 1",
            "whpg_ha_replication_synchronous 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
    }
}
