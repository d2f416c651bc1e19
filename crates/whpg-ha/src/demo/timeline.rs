//! The failover timeline: what each daemon reported (`/status` transitions and events, plus the
//! postmaster-exit line of the old primary's log) and what the client saw, in milliseconds from
//! the fault; and the node table printed before and after.

use std::fmt::Write as _;
use std::time::Instant;

use super::client::{Attempt, Outcome};
use super::setup::NodeView;

/// The instant of the fault, on both clocks: the monotonic one (the client's attempts) and the
/// wall clock (the daemons' `at_unix_ms`).
#[derive(Debug, Clone, Copy)]
pub struct FaultTime {
    pub instant: Instant,
    pub unix_ms: f64,
}

impl FaultTime {
    fn since_instant(&self, at: Instant) -> f64 {
        if at >= self.instant {
            at.duration_since(self.instant).as_secs_f64() * 1000.0
        } else {
            -(self.instant.duration_since(at).as_secs_f64() * 1000.0)
        }
    }

    fn since_unix_ms(&self, at_unix_ms: f64) -> f64 {
        at_unix_ms - self.unix_ms
    }

    /// Daemon times have millisecond resolution: anything stamped in the fault's millisecond or
    /// later counts as after it.
    fn after(&self, at_unix_ms: u64) -> bool {
        at_unix_ms as f64 >= self.unix_ms.floor()
    }
}

/// One row of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Milliseconds from the fault; `None` when it was not observed.
    pub at_ms: Option<f64>,
    pub node: String,
    pub what: String,
}

/// Everything the timeline is built from.
pub struct Inputs<'a> {
    pub fault: FaultTime,
    pub killed_pid: u32,
    pub old_primary: &'a NodeView,
    pub new_primary: &'a NodeView,
    /// The old primary's daemon log (for the postmaster-exit line).
    pub old_primary_log: &'a str,
    pub attempts: &'a [Attempt],
}

/// The built timeline with the client's summary.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub rows: Vec<Row>,
    /// Fault → first write committed through the VIP by the new primary.
    pub first_write_ms: Option<f64>,
    /// Last commit before the fault → first commit after it.
    pub write_gap_ms: Option<f64>,
    pub attempts: usize,
    pub committed: usize,
    pub failed: usize,
    /// Commits acknowledged by the old primary after the fault (its backends outlive the killed
    /// postmaster for a moment).
    pub committed_on_old_after_fault: usize,
    /// The most frequent failure messages during the gap, with counts.
    pub failures: Vec<(String, usize)>,
}

pub const LAST_WRITE: &str = "last committed write before the fault";
pub const LATE_WRITE: &str = "last write acknowledged by the old primary";
pub const KILL: &str = "kill -9 of the primary's postmaster";
pub const DETECTED: &str = "postmaster exit detected";
pub const RESIGNED: &str = "resigned";
pub const BECAME_MASTER: &str = "became MASTER";
pub const PROMOTION_STARTED: &str = "promotion started";
pub const PROMOTION_VERIFIED: &str = "promotion verified (writable)";
pub const VIP_REMOVED: &str = "VIP removed";
pub const VIP_INSTALLED: &str = "VIP installed";
pub const FIRST_WRITE: &str = "first committed write through the VIP";

impl Timeline {
    pub fn build(inputs: &Inputs<'_>) -> Timeline {
        let fault = inputs.fault;
        let old = inputs.old_primary;
        let new = inputs.new_primary;
        let mut rows = Vec::new();
        let mut push = |at_ms: Option<f64>, node: &str, what: String| {
            rows.push(Row {
                at_ms,
                node: node.to_string(),
                what,
            })
        };

        let committed: Vec<&Attempt> = inputs
            .attempts
            .iter()
            .filter(|a| a.committed_on().is_some())
            .collect();
        let last_before = committed
            .iter()
            .filter(|a| a.finished < fault.instant)
            .max_by_key(|a| a.finished);
        let first_after = committed
            .iter()
            .filter(|a| a.finished >= fault.instant && a.committed_on() == Some(new.node.as_str()))
            .min_by_key(|a| a.finished);
        push(
            last_before.map(|a| fault.since_instant(a.finished)),
            "client",
            match last_before {
                Some(a) => format!(
                    "{LAST_WRITE} (id {}, on {})",
                    a.id,
                    a.committed_on().unwrap_or("?")
                ),
                None => LAST_WRITE.to_string(),
            },
        );
        let last_on_old_after = committed
            .iter()
            .filter(|a| a.finished >= fault.instant && a.committed_on() == Some(old.node.as_str()))
            .max_by_key(|a| a.finished);
        if let Some(a) = last_on_old_after {
            push(
                Some(fault.since_instant(a.finished)),
                "client",
                format!(
                    "{LATE_WRITE} (id {}, on {}: its backends outlive the postmaster briefly)",
                    a.id, old.node
                ),
            );
        }
        push(
            Some(0.0),
            &old.node,
            format!("{KILL} (pid {})", inputs.killed_pid),
        );
        // Truncated to the millisecond like the daemons' own stamps, so ties keep causal order.
        push(
            postmaster_exit_logged(inputs.old_primary_log, inputs.killed_pid)
                .map(|at| fault.since_unix_ms(at.floor())),
            &old.node,
            format!("{DETECTED} (pidfd)"),
        );
        let resigned = old
            .transitions
            .iter()
            .find(|t| fault.after(t.at_unix_ms) && t.from == "MASTER");
        push(
            resigned.map(|t| fault.since_unix_ms(t.at_unix_ms as f64)),
            &old.node,
            match resigned {
                Some(t) => format!("{RESIGNED}: MASTER -> {} ({})", t.to, t.reason),
                None => format!("{RESIGNED}: MASTER -> FAULT"),
            },
        );
        let vip_removed = old
            .events
            .iter()
            .find(|e| fault.after(e.at_unix_ms) && e.kind == "vip" && e.detail.contains("removed"));
        push(
            vip_removed.map(|e| fault.since_unix_ms(e.at_unix_ms as f64)),
            &old.node,
            VIP_REMOVED.to_string(),
        );
        let became = new
            .transitions
            .iter()
            .find(|t| fault.after(t.at_unix_ms) && t.to == "MASTER");
        push(
            became.map(|t| fault.since_unix_ms(t.at_unix_ms as f64)),
            &new.node,
            match became {
                Some(t) => format!("{BECAME_MASTER}: {}", t.reason),
                None => BECAME_MASTER.to_string(),
            },
        );
        let event = |kind: &str, needle: &str| {
            new.events
                .iter()
                .find(|e| fault.after(e.at_unix_ms) && e.kind == kind && e.detail.contains(needle))
                .map(|e| fault.since_unix_ms(e.at_unix_ms as f64))
        };
        push(
            event("promotion", "started"),
            &new.node,
            PROMOTION_STARTED.to_string(),
        );
        push(
            event("policy", "promotion verified"),
            &new.node,
            PROMOTION_VERIFIED.to_string(),
        );
        push(
            event("vip", "installed"),
            &new.node,
            VIP_INSTALLED.to_string(),
        );
        let first_write_ms = first_after.map(|a| fault.since_instant(a.finished));
        push(
            first_write_ms,
            "client",
            match first_after {
                Some(a) => format!(
                    "{FIRST_WRITE} (id {}, on {}, attempt started at {:+.0} ms)",
                    a.id,
                    new.node,
                    fault.since_instant(a.started)
                ),
                None => FIRST_WRITE.to_string(),
            },
        );
        // Chronological, unobserved rows last; ties keep the causal order above.
        rows.sort_by(|a, b| match (a.at_ms, b.at_ms) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });

        // The client's view: from the last commit anywhere before the first one on the new
        // primary, to that one.
        let write_gap_ms = first_after.and_then(|b| {
            let a = committed
                .iter()
                .filter(|a| a.finished < b.finished && a.committed_on() != Some(new.node.as_str()))
                .max_by_key(|a| a.finished)?;
            Some(b.finished.duration_since(a.finished).as_secs_f64() * 1000.0)
        });
        let mut failures: Vec<(String, usize)> = Vec::new();
        for a in inputs.attempts {
            if let Outcome::Failed(message) = &a.outcome {
                match failures.iter_mut().find(|(m, _)| m == message) {
                    Some((_, n)) => *n += 1,
                    None => failures.push((message.clone(), 1)),
                }
            }
        }
        failures.sort_by_key(|f| std::cmp::Reverse(f.1));
        failures.truncate(3);
        Timeline {
            rows,
            first_write_ms,
            write_gap_ms,
            attempts: inputs.attempts.len(),
            committed: committed.len(),
            failed: inputs.attempts.len() - committed.len(),
            committed_on_old_after_fault: committed
                .iter()
                .filter(|a| {
                    a.finished >= fault.instant && a.committed_on() == Some(old.node.as_str())
                })
                .count(),
            failures,
        }
    }

    /// Rows that were not observed.
    pub fn missing(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| r.at_ms.is_none())
            .map(|r| r.what.as_str())
            .collect()
    }

    /// The aligned table.
    pub fn render(&self) -> String {
        let node_width = self
            .rows
            .iter()
            .map(|r| r.node.len())
            .chain(std::iter::once(4))
            .max()
            .unwrap_or(4);
        let mut out = String::new();
        let _ = writeln!(out, "  {:>9}  {:<node_width$}  event", "ms", "node");
        for row in &self.rows {
            let at = match row.at_ms {
                Some(ms) => format!("{:+.0}", ms.round()),
                None => "-".to_string(),
            };
            let what = if row.at_ms.is_some() {
                row.what.clone()
            } else {
                format!("{} (not observed)", row.what)
            };
            let _ = writeln!(out, "  {at:>9}  {:<node_width$}  {what}", row.node);
        }
        out
    }
}

/// The node table: node, address, VRRP state, priority, database role, holds VIP.
pub fn node_table(views: &[(&str, Option<&NodeView>)]) -> String {
    let header = [
        "node",
        "address",
        "VRRP state",
        "priority",
        "database",
        "holds VIP",
    ];
    let mut lines: Vec<[String; 6]> = vec![header.map(str::to_string)];
    for (name, view) in views {
        lines.push(match view {
            Some(v) => {
                let database = match &v.database {
                    Some(db) => {
                        let mut text = db.role.clone();
                        if db.needs_rejoin {
                            text += ", needs rejoin";
                        } else if !db.healthy {
                            text += ", down";
                        }
                        if let Some(fenced) = &db.fenced {
                            text += &format!(", fenced ({fenced})");
                        }
                        text
                    }
                    None => "not monitored".to_string(),
                };
                [
                    v.node.clone(),
                    v.address.clone(),
                    v.vrrp.state.clone(),
                    v.vrrp.priority.to_string(),
                    database,
                    if v.holds_vips { "yes" } else { "no" }.to_string(),
                ]
            }
            None => [
                name.to_string(),
                "-".into(),
                "(no answer)".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        });
    }
    let mut widths = [0usize; 6];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::from(" ");
        for (cell, w) in line.iter().zip(widths) {
            let _ = write!(text, " {cell:<w$} ");
        }
        out += text.trim_end();
        out.push('\n');
    }
    out
}

/// When the daemon logged that postmaster `pid` exited, as Unix milliseconds (the log lines start
/// with an RFC 3339 UTC timestamp; colour codes are ignored).
pub fn postmaster_exit_logged(log: &str, pid: u32) -> Option<f64> {
    let needle = format!("postmaster pid {pid} ");
    log.lines()
        .map(strip_ansi)
        .find(|line| line.contains(&needle) && line.contains("exited"))
        .and_then(|line| parse_rfc3339_utc(line.split_whitespace().next()?))
}

/// `line` without terminal colour codes.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `2025-06-01T10:00:00.123456Z` → Unix milliseconds.
pub fn parse_rfc3339_utc(text: &str) -> Option<f64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut t = hms.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let fraction: f64 = if frac.is_empty() {
        0.0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("0.{frac}").parse().ok()?
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds as f64 * 1000.0 + fraction * 1000.0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::setup::{EventView, TransitionView, VrrpView};
    use super::*;

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339_utc("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500.0)
        );
        let ms = parse_rfc3339_utc("2024-02-29T23:59:59.123456Z").unwrap();
        assert!((ms - 1_709_251_199_123.456).abs() < 0.01, "{ms}");
        assert_eq!(parse_rfc3339_utc("2024-02-29 23:59:59Z"), None);
        assert_eq!(parse_rfc3339_utc("INFO"), None);
    }

    #[test]
    fn postmaster_exit_line_with_colours() {
        let log = "\u{1b}[2m2024-01-01T00:00:00.000000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m watching postmaster pid 42 of /d\n\
                   \u{1b}[2m2024-01-01T00:00:01.250000Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m postmaster pid 42 of /d exited\n";
        let at = postmaster_exit_logged(log, 42).unwrap();
        assert!((at - 1_704_067_201_250.0).abs() < 0.01);
        assert_eq!(postmaster_exit_logged(log, 4), None);
    }

    fn view(node: &str, transitions: Vec<TransitionView>, events: Vec<EventView>) -> NodeView {
        NodeView {
            node: node.into(),
            address: "10.77.0.11".into(),
            vrrp: VrrpView {
                state: "BACKUP".into(),
                priority: 100,
            },
            holds_vips: false,
            database: None,
            transitions,
            events,
        }
    }

    fn tr(at: u64, from: &str, to: &str) -> TransitionView {
        TransitionView {
            at_unix_ms: at,
            from: from.into(),
            to: to.into(),
            reason: "r".into(),
        }
    }

    fn ev(at: u64, kind: &str, detail: &str) -> EventView {
        EventView {
            at_unix_ms: at,
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn timeline_orders_rows_and_ignores_events_before_the_fault() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let fault = FaultTime {
            instant: t0,
            unix_ms: 10_000.4,
        };
        let n1 = view(
            "n1",
            vec![tr(5_000, "BACKUP", "MASTER"), tr(10_020, "MASTER", "FAULT")],
            vec![
                ev(5_001, "vip", "virtual addresses installed"),
                ev(10_021, "vip", "virtual addresses removed"),
            ],
        );
        let n2 = view(
            "n2",
            vec![tr(10_030, "BACKUP", "MASTER")],
            vec![
                ev(10_031, "promotion", "attempt 1 started"),
                ev(
                    10_090,
                    "policy",
                    "promotion verified: the database is writable (attempt 1)",
                ),
                ev(10_091, "vip", "virtual addresses installed"),
            ],
        );
        let attempt = |id, start_ms: i64, end_ms: i64, outcome: Outcome| Attempt {
            id,
            started: offset(t0, start_ms),
            finished: offset(t0, end_ms),
            outcome,
        };
        let attempts = vec![
            attempt(
                1,
                -30,
                -25,
                Outcome::Committed {
                    server: "n1".into(),
                },
            ),
            attempt(2, -5, 40, Outcome::Failed("connection refused".into())),
            attempt(3, 20, 1020, Outcome::Failed("timeout".into())),
            attempt(
                4,
                95,
                110,
                Outcome::Committed {
                    server: "n2".into(),
                },
            ),
        ];
        let log = "1970-01-01T00:00:10.010Z WARN postmaster pid 7 of /d exited";
        let timeline = Timeline::build(&Inputs {
            fault,
            killed_pid: 7,
            old_primary: &n1,
            new_primary: &n2,
            old_primary_log: log,
            attempts: &attempts,
        });
        let whats: Vec<&str> = timeline.rows.iter().map(|r| r.what.as_str()).collect();
        assert!(whats[0].starts_with(LAST_WRITE), "{whats:?}");
        assert!(whats[1].starts_with(KILL));
        assert!(whats[2].starts_with(DETECTED));
        assert!(whats[3].starts_with(RESIGNED));
        assert_eq!(whats[4], VIP_REMOVED);
        assert!(whats[5].starts_with(BECAME_MASTER));
        assert_eq!(whats[6], PROMOTION_STARTED);
        assert_eq!(whats[7], PROMOTION_VERIFIED);
        assert_eq!(whats[8], VIP_INSTALLED);
        assert!(whats[9].starts_with(FIRST_WRITE));
        assert_eq!(timeline.missing(), Vec::<&str>::new());
        let first = timeline.first_write_ms.unwrap();
        assert!((first - 110.0).abs() < 0.5, "{first}");
        assert!((timeline.write_gap_ms.unwrap() - 135.0).abs() < 0.5);
        assert_eq!(
            (timeline.attempts, timeline.committed, timeline.failed),
            (4, 2, 2)
        );
        let table = timeline.render();
        assert!(table.contains("+110"), "{table}");
        assert!(table.contains("-25"), "{table}");
    }

    fn offset(t0: Instant, ms: i64) -> Instant {
        if ms >= 0 {
            t0 + Duration::from_millis(ms as u64)
        } else {
            t0 - Duration::from_millis((-ms) as u64)
        }
    }

    #[test]
    fn node_table_is_aligned() {
        let n1 = view("n1", vec![], vec![]);
        let table = node_table(&[("n1", Some(&n1)), ("n2", None)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("VRRP state"));
        assert_eq!(lines[1].find("BACKUP"), lines[0].find("VRRP state"));
        assert!(lines[2].contains("(no answer)"));
    }
}
