//! `harness compare A B`: per cell, the change in achieved rate, p99 and
//! CPU per packet; a change counts as significant only when it exceeds the
//! spread of the repeats of both runs.

use std::fmt::Write;

use super::aggregate::{points, Point};
use crate::bench::results::RunFile;
use crate::units::{fmt_ns, fmt_rate};

/// Result of a comparison.
pub struct Comparison {
    /// The markdown table.
    pub markdown: String,
    /// Significant regressions beyond the limit, one line each.
    pub regressions: Vec<String>,
}

fn pct(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        0.0
    } else {
        (b - a) / a * 100.0
    }
}

/// Whether the intervals of two spreads do not overlap.
fn outside(a: (f64, f64), b: (f64, f64)) -> bool {
    a.1 < b.0 || b.1 < a.0
}

/// Compares run `b` against baseline `a`.
pub fn compare(a: &RunFile, b: &RunFile, fail_pct: Option<f64>) -> Comparison {
    let pa = points(a);
    let pb = points(b);
    let mut md = String::new();
    let _ = writeln!(md, "# `{}` (A) vs `{}` (B)\n", a.run_id, b.run_id);
    let _ = writeln!(
        md,
        "Changes marked * exceed the spread of the repeats (A had {} repeat(s), B {}); with one repeat every change is marked.\n",
        a.config.repeat, b.config.repeat
    );
    let _ = writeln!(md, "| workload | model | clients | achieved A | achieved B | change | p99 A | p99 B | change | CPU us/pkt A | B | change | verdicts |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut regressions = Vec::new();
    for x in &pa {
        let Some(y) = pb
            .iter()
            .find(|p| p.model == x.model && p.workload == x.workload && p.clients == x.clients)
        else {
            continue;
        };
        let rate = pct(x.achieved_pps, y.achieved_pps);
        let p99 = pct(x.p99_ns as f64, y.p99_ns as f64);
        let cpu = pct(x.cpu_us_per_packet, y.cpu_us_per_packet);
        let sig_rate = outside(x.achieved_spread, y.achieved_spread);
        let sig_p99 = outside(to_f(x.p99_spread), to_f(y.p99_spread));
        let sig_cpu = outside(x.cpu_spread, y.cpu_spread);
        let mark = |s: bool| if s { "*" } else { "" };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:+.1}%{} | {} | {} | {:+.1}%{} | {:.2} | {:.2} | {:+.1}%{} | {} / {} |",
            x.workload,
            x.model,
            x.clients,
            fmt_rate(x.achieved_pps),
            fmt_rate(y.achieved_pps),
            rate,
            mark(sig_rate),
            fmt_ns(x.p99_ns),
            fmt_ns(y.p99_ns),
            p99,
            mark(sig_p99),
            x.cpu_us_per_packet,
            y.cpu_us_per_packet,
            cpu,
            mark(sig_cpu),
            super::summary::status_word(x.status),
            super::summary::status_word(y.status)
        );
        if let Some(limit) = fail_pct {
            let name = cell_name(x);
            if sig_rate && -rate > limit {
                regressions.push(format!("{name}: achieved rate {rate:+.1}%"));
            }
            if sig_p99 && p99 > limit {
                regressions.push(format!("{name}: p99 {p99:+.1}%"));
            }
            if sig_cpu && cpu > limit {
                regressions.push(format!("{name}: CPU per packet {cpu:+.1}%"));
            }
        }
    }
    if !regressions.is_empty() {
        let _ = writeln!(md, "\n## Regressions beyond {}%\n", fail_pct.unwrap_or(0.0));
        for r in &regressions {
            let _ = writeln!(md, "- {r}");
        }
    }
    Comparison {
        markdown: md,
        regressions,
    }
}

fn to_f(s: (u64, u64)) -> (f64, f64) {
    (s.0 as f64, s.1 as f64)
}

fn cell_name(p: &Point) -> String {
    format!("{}/{}/{}c", p.workload, p.model, p.clients)
}
