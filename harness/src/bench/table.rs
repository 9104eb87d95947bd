//! The compact terminal table printed at the end of a run.

use super::cell::CellResult;
use super::verdict::Status;
use crate::units::{fmt_latency, fmt_rate};

/// One cell on one line, for progress output.
pub fn one_line(c: &CellResult) -> String {
    let d = &c.derived;
    format!(
        "{:<8} {:<6} {:>4} clients  {:>7}/s of {:>7}/s  p99 {:>8}  {:?}",
        c.key.model,
        c.key.workload,
        c.key.clients,
        fmt_rate(d.achieved_pps),
        fmt_rate(d.offered_pps),
        fmt_latency(d.p99_ns, c.latency_samples()),
        c.verdict.status
    )
}

/// All cells as an aligned table.
pub fn render(cells: &[CellResult]) -> String {
    let mut out = format!(
        "{:<8} {:<8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>7} {:>8}  {}\n",
        "model",
        "work",
        "clients",
        "offered",
        "achieved",
        "p50",
        "p99",
        "p99.9",
        "cpu%",
        "us/pkt",
        "rss MiB",
        "verdict"
    );
    for c in cells {
        let d = &c.derived;
        let verdict = match c.verdict.status {
            Status::Valid => "valid".to_string(),
            s => format!("{:?}: {}", s, c.verdict.reasons.join("; ")).to_lowercase(),
        };
        out.push_str(&format!(
            "{:<8} {:<8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6.0} {:>7.2} {:>8.1}  {}\n",
            c.key.model,
            truncate(&c.key.workload, 8),
            c.key.clients,
            fmt_rate(d.offered_pps),
            fmt_rate(d.achieved_pps),
            fmt_latency(d.p50_ns, c.latency_samples()),
            fmt_latency(d.p99_ns, c.latency_samples()),
            fmt_latency(d.p999_ns, c.latency_samples()),
            d.server_cpu_pct,
            d.cpu_us_per_packet,
            d.peak_rss_kib as f64 / 1024.0,
            verdict
        ));
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
