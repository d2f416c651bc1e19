//! Summaries of the trials: the markdown table, the whpg-ha / keepalived ratios and the JSON file.

use std::fmt::Write as _;

use serde::Serialize;

use crate::contenders::Contender;
use crate::trial::{Fault, Outcome, Status};

/// One row of the table: one fault, one implementation.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub fault: Fault,
    pub implementation: Contender,
    /// Trials measured (promotions before the fault excluded).
    pub trials: usize,
    pub no_write: usize,
    /// Whether a write can follow this fault at all (when not, no write is the right outcome).
    pub write_expected: bool,
    /// The bound on the wait for the first write, in seconds.
    pub limit_s: u64,
    pub harness_errors: usize,
    /// Trials thrown away because the standby was promoted before the fault.
    pub promoted_before_fault: usize,
    /// Trials in which n2's keepalived was MASTER before the fault.
    pub n2_master_before_fault: usize,
    pub min_ms: Option<f64>,
    pub median_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub failovers: usize,
    /// Whether a failover should happen (`None`: either is acceptable).
    pub failover_expected: Option<bool>,
    /// Trials whose failover (or its absence) was what it should be.
    pub as_expected: usize,
    pub split_brain: usize,
    pub longest_split_brain_ms: f64,
    /// Longest total time, over the trials, that n2 held the VIP while its database was not
    /// writable.
    pub max_vip_on_read_only_ms: f64,
    /// Longest write outage after the fault seen by the writer, over the trials.
    pub max_write_gap_ms: f64,
    pub lost_commits: usize,
    pub trials_with_lost_commits: usize,
    /// Trials that ended without any primary to count the lost commits on.
    pub trials_without_primary: usize,
}

pub fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

pub fn rows(outcomes: &[Outcome], faults: &[Fault], contenders: &[Contender]) -> Vec<Row> {
    let mut rows = Vec::new();
    for &fault in faults {
        for &which in contenders {
            let mine: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| o.fault == fault && o.implementation == which)
                .collect();
            if mine.is_empty() {
                // A pair that was not run (the smoke run's selection).
                continue;
            }
            let measured: Vec<&&Outcome> = mine
                .iter()
                .filter(|o| matches!(o.status, Status::Ok | Status::NoWrite))
                .collect();
            let mut times: Vec<f64> = measured.iter().filter_map(|o| o.first_write_ms).collect();
            times.sort_by(f64::total_cmp);
            rows.push(Row {
                fault,
                implementation: which,
                trials: measured.len(),
                no_write: measured
                    .iter()
                    .filter(|o| o.status == Status::NoWrite)
                    .count(),
                write_expected: fault.write_expected(which),
                limit_s: fault.limit().as_secs(),
                harness_errors: mine
                    .iter()
                    .filter(|o| o.status == Status::HarnessError)
                    .count(),
                promoted_before_fault: mine
                    .iter()
                    .filter(|o| o.status == Status::PromotedBeforeFault)
                    .count(),
                n2_master_before_fault: mine.iter().filter(|o| o.n2_master_before_fault).count(),
                min_ms: times.first().copied(),
                median_ms: median(&times),
                max_ms: times.last().copied(),
                failovers: measured.iter().filter(|o| o.failover).count(),
                failover_expected: fault.failover_expected(which),
                as_expected: measured
                    .iter()
                    .filter(|o| {
                        fault
                            .failover_expected(which)
                            .is_none_or(|e| e == o.failover)
                    })
                    .count(),
                split_brain: measured.iter().filter(|o| o.split_brain).count(),
                longest_split_brain_ms: measured
                    .iter()
                    .map(|o| o.vip_on_both_ms.max(o.both_writable_ms))
                    .fold(0.0, f64::max),
                max_vip_on_read_only_ms: measured
                    .iter()
                    .map(|o| o.vip_on_read_only_ms)
                    .fold(0.0, f64::max),
                max_write_gap_ms: measured
                    .iter()
                    .map(|o| o.longest_write_gap_ms)
                    .fold(0.0, f64::max),
                lost_commits: measured.iter().filter_map(|o| o.lost).sum(),
                trials_with_lost_commits: measured
                    .iter()
                    .filter(|o| o.lost.unwrap_or(0) > 0)
                    .count(),
                trials_without_primary: measured.iter().filter(|o| o.lost.is_none()).count(),
            });
        }
    }
    rows
}

fn secs(ms: Option<f64>) -> String {
    ms.map_or("–".into(), |v| format!("{:.2} s", v / 1000.0))
}

/// The markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s += "| fault | implementation | trials | min | median | max | failovers | failover should \
          happen / as it should | split-brain windows (longest) | VIP on read-only n2 (longest) \
          | longest write gap | lost commits (trials) | notes |\n";
    s += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for r in rows {
        // Where no write is possible (the standby cannot be promoted), none is the right outcome
        // and a write would be the surprise.
        let trials = match (r.write_expected, r.no_write) {
            (true, 0) => r.trials.to_string(),
            (true, k) => format!("{} ({k} without a write in {} s)", r.trials, r.limit_s),
            (false, k) if k == r.trials => format!(
                "{} (no write in {} s in any: expected, no promotable standby)",
                r.trials, r.limit_s
            ),
            (false, k) => format!(
                "{} ({} with a write: unexpected; {k} without, as expected)",
                r.trials,
                r.trials - k
            ),
        };
        let mut notes = Vec::new();
        if r.promoted_before_fault > 0 {
            notes.push(format!(
                "{} start-up(s) promoted the standby before the fault (discarded, rerun)",
                r.promoted_before_fault
            ));
        }
        if r.n2_master_before_fault > 0 {
            notes.push(format!(
                "n2 was MASTER at start-up in {} run(s)",
                r.n2_master_before_fault
            ));
        }
        if r.trials_without_primary > 0 {
            notes.push(format!(
                "no primary at the end of {} trial(s): their losses are not counted",
                r.trials_without_primary
            ));
        }
        if r.harness_errors > 0 {
            notes.push(format!("{} harness error(s)", r.harness_errors));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {trials} | {} | {} | {} | {}/{} | {} / {}/{} | {} ({:.0} ms) | {:.0} ms \
             | {} | {} ({}) | {} |",
            r.fault.name(),
            r.implementation.name(),
            secs(r.min_ms),
            secs(r.median_ms),
            secs(r.max_ms),
            r.failovers,
            r.trials,
            match r.failover_expected {
                Some(true) => "yes",
                Some(false) => "no",
                None => "either",
            },
            r.as_expected,
            r.trials,
            r.split_brain,
            r.longest_split_brain_ms,
            r.max_vip_on_read_only_ms,
            secs(Some(r.max_write_gap_ms)),
            r.lost_commits,
            r.trials_with_lost_commits,
            if notes.is_empty() {
                "".into()
            } else {
                notes.join("; ")
            },
        );
    }
    s
}

/// Median ratios whpg-ha / keepalived per fault whose first write times a failover
/// ([`Fault::times_failover`]), for the pairs that were run.
pub fn ratios(rows: &[Row]) -> String {
    let pairs = [
        (Contender::WhpgHa, Contender::KeepalivedSeed),
        (Contender::WhpgHa, Contender::KeepalivedFast),
        (Contender::WhpgHaFast, Contender::KeepalivedSeed),
        (Contender::WhpgHaFast, Contender::KeepalivedFast),
        // What the arbiter costs the default profile.
        (Contender::WhpgHaArbiter, Contender::WhpgHa),
    ];
    let mut s = String::new();
    let mut faults: Vec<Fault> = rows
        .iter()
        .map(|r| r.fault)
        .filter(|f| f.times_failover())
        .collect();
    faults.dedup();
    for fault in faults {
        let median_of = |c: Contender| {
            rows.iter()
                .find(|r| r.fault == fault && r.implementation == c)
                .and_then(|r| r.median_ms)
        };
        for (ours, theirs) in pairs {
            if let (Some(a), Some(b)) = (median_of(ours), median_of(theirs)) {
                let _ = writeln!(
                    s,
                    "- {}: {} / {} = {:.2} ({:.2} s vs {:.2} s median)",
                    fault.name(),
                    ours.name(),
                    theirs.name(),
                    a / b,
                    a / 1000.0,
                    b / 1000.0
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), Some(3.0));
    }
}
