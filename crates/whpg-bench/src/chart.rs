//! `results.svg`: the fault-to-first-write times as grouped bars (one group per fault, one bar per
//! implementation) at the median, with min–max whiskers, on a logarithmic time axis. A row without
//! any write (a fault after which none is possible, or a stack that never recovered) gets a
//! "no write" label in its slot instead of a bar. Plain SVG text.

use std::fmt::Write as _;

/// Min, median and max of a row's first-write times, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Times {
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// One bar: a fault, an implementation and its times (`None`: no trial had a write).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub fault: String,
    pub implementation: String,
    pub times: Option<Times>,
}

impl Bar {
    /// A row with measured trials (a row whose trials all failed in the harness has none).
    pub fn from_row(row: &crate::report::Row) -> Option<Bar> {
        if row.trials == 0 {
            return None;
        }
        let times = match (row.min_ms, row.median_ms, row.max_ms) {
            (Some(min_ms), Some(median_ms), Some(max_ms)) => Some(Times {
                min_ms,
                median_ms,
                max_ms,
            }),
            _ => None,
        };
        Some(Bar {
            fault: row.fault.name().into(),
            implementation: row.implementation.name().into(),
            times,
        })
    }

    /// From a row of a `results.json` (`rows[]`); `min_ms` and co. are null for a row without
    /// a write.
    pub fn from_json(row: &serde_json::Value) -> Option<Bar> {
        if row["trials"].as_u64() == Some(0) {
            return None;
        }
        let times = match (
            row["min_ms"].as_f64(),
            row["median_ms"].as_f64(),
            row["max_ms"].as_f64(),
        ) {
            (Some(min_ms), Some(median_ms), Some(max_ms)) => Some(Times {
                min_ms,
                median_ms,
                max_ms,
            }),
            _ => None,
        };
        Some(Bar {
            fault: row["fault"].as_str()?.into(),
            implementation: row["implementation"].as_str()?.into(),
            times,
        })
    }
}

const COLORS: [&str; 4] = ["#1f77b4", "#6baed6", "#d62728", "#fc9272"];
/// The time axis: 50 ms to 10 s, logarithmic.
const AXIS_MS: (f64, f64) = (50.0, 10_000.0);
const TICKS_MS: [f64; 8] = [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0];

/// The chart; faults and implementations in first-seen order.
pub fn svg(bars: &[Bar], title: &str) -> String {
    let mut faults: Vec<&str> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for b in bars {
        if !faults.contains(&b.fault.as_str()) {
            faults.push(&b.fault);
        }
        if !names.contains(&b.implementation.as_str()) {
            names.push(&b.implementation);
        }
    }
    let (left, top, plot_h, bar_w, gap) = (70.0, 40.0, 300.0, 34.0, 40.0);
    let group_w = bar_w * names.len() as f64 + gap;
    let width = left + group_w * faults.len() as f64 + 170.0;
    let height = top + plot_h + 50.0;
    let y = |ms: f64| {
        let (lo, hi) = (AXIS_MS.0.ln(), AXIS_MS.1.ln());
        top + plot_h * (1.0 - (ms.clamp(AXIS_MS.0, AXIS_MS.1).ln() - lo) / (hi - lo))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"22\" font-size=\"14\">{}</text>",
        escape(title)
    );
    for t in TICKS_MS {
        let ty = y(t);
        let label = if t < 1000.0 {
            format!("{:.2} s", t / 1000.0)
        } else {
            format!("{:.0} s", t / 1000.0)
        };
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            width - 170.0,
            left - 6.0,
            ty + 4.0
        );
    }
    for (g, fault) in faults.iter().enumerate() {
        let x0 = left + gap / 2.0 + group_w * g as f64;
        for (i, name) in names.iter().enumerate() {
            let Some(b) = bars
                .iter()
                .find(|b| b.fault == *fault && b.implementation == *name)
            else {
                continue;
            };
            let x = x0 + bar_w * i as f64;
            let Some(t) = b.times else {
                let (tx, ty) = (x + bar_w / 2.0, top + plot_h - 6.0);
                let _ = writeln!(
                    s,
                    "<text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"10\" fill=\"{}\" \
                     transform=\"rotate(-90 {tx:.1} {ty:.1})\">no write<title>{} {}: no write \
                     in any trial</title></text>",
                    COLORS[i % COLORS.len()],
                    escape(fault),
                    escape(name)
                );
                continue;
            };
            let (ym, ylo, yhi) = (y(t.median_ms), y(t.min_ms), y(t.max_ms));
            let cx = x + bar_w / 2.0 - 2.0;
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{ym:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
                 <title>{} {}: median {:.2} s (min {:.2}, max {:.2})</title></rect>",
                bar_w - 4.0,
                top + plot_h - ym,
                COLORS[i % COLORS.len()],
                escape(fault),
                escape(name),
                t.median_ms / 1000.0,
                t.min_ms / 1000.0,
                t.max_ms / 1000.0
            );
            let _ = writeln!(
                s,
                "<path d=\"M{cx:.1} {ylo:.1}V{yhi:.1}M{:.1} {ylo:.1}h8M{:.1} {yhi:.1}h8\" \
                 stroke=\"black\"/>",
                cx - 4.0,
                cx - 4.0
            );
            let _ = writeln!(
                s,
                "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{:.2}</text>",
                yhi - 4.0,
                t.median_ms / 1000.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 + bar_w * names.len() as f64 / 2.0,
            top + plot_h + 20.0,
            escape(fault)
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"black\"/>\
         <text x=\"{left}\" y=\"{:.1}\" font-size=\"11\">fault → first committed write \
         (log scale); bar = median, whisker = min–max</text>",
        top + plot_h,
        top + plot_h + 40.0
    );
    let lx = width - 160.0;
    for (i, name) in names.iter().enumerate() {
        let ly = top + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            COLORS[i % COLORS.len()],
            lx + 18.0,
            ly + 10.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_row_and_well_formed() {
        let bar = |fault: &str, name: &str, median: f64| Bar {
            fault: fault.into(),
            implementation: name.into(),
            times: Some(Times {
                min_ms: median * 0.8,
                median_ms: median,
                max_ms: median * 1.2,
            }),
        };
        let chart = svg(
            &[
                bar("db-crash", "whpg-ha", 220.0),
                bar("db-crash", "keepalived-fast", 1100.0),
                bar("link-loss", "whpg-ha", 3100.0),
                Bar {
                    fault: "promote-fails".into(),
                    implementation: "whpg-ha".into(),
                    times: None,
                },
            ],
            "t <1>",
        );
        assert_eq!(chart.matches("<title>").count(), 4);
        assert_eq!(
            chart.matches("<rect x=").count(),
            3 + 2,
            "3 bars, 2 legend keys"
        );
        assert!(chart.contains(">no write<"));
        assert!(chart.contains("t &lt;1&gt;"));
        assert!(chart.starts_with("<svg") && chart.ends_with("</svg>\n"));
    }
}
