//! The compact terminal table printed at the end of a run.

use crate::labels::window_label;
use record::cell::CellResult;
use record::config::RunConfig;
use record::units::{fmt_latency, fmt_rate};
use record::verdict::Status;

/// One cell on one line, for progress output.
pub fn one_line(c: &CellResult) -> String {
    let d = &c.derived;
    let rt = match &c.fleet {
        Some(f) if f.acks.is_some() => format!(
            "  rt p99 {:>8}",
            fmt_latency(d.round_trip_p99_ns, c.latency_samples())
        ),
        _ => String::new(),
    };
    format!(
        "{:<8} {:<6} {:>4} clients  window {:>6}  {:>7}/s of {:>7}/s  p99 {:>8}  svc p99 {:>8}{}  {:?}",
        c.key.model,
        c.key.workload,
        c.key.clients,
        window_label(d.batch_window_us),
        fmt_rate(d.achieved_pps),
        fmt_rate(d.offered_pps),
        fmt_latency(d.p99_ns, c.latency_samples()),
        fmt_latency(d.service_p99_ns, c.latency_samples()),
        rt,
        c.verdict.status
    )
}

/// All cells as an aligned table, in matrix order (workload, fleet size,
/// model, repeat), whatever order they ran in.
pub fn render(config: &RunConfig, cells: &[CellResult]) -> String {
    let pos = |names: Vec<&str>, n: &str| names.iter().position(|x| *x == n).unwrap_or(usize::MAX);
    let mut cells: Vec<&CellResult> = cells.iter().collect();
    cells.sort_by_key(|c| {
        (
            pos(
                config.workloads.iter().map(|w| w.name.as_str()).collect(),
                &c.key.workload,
            ),
            c.key.clients,
            pos(
                config.models.iter().map(String::as_str).collect(),
                &c.key.model,
            ),
            c.key.repeat,
        )
    });
    let rt_head = if config.ack {
        format!(" {:>9} {:>9}", "rt p50", "rt p99")
    } else {
        String::new()
    };
    let mut out = format!(
        "{:<8} {:<8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}{} {:>6} {:>7} {:>8}  {}\n",
        "model",
        "work",
        "clients",
        "window",
        "offered",
        "achieved",
        "p50",
        "p99",
        "svc p50",
        "svc p99",
        rt_head,
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
        let n = c.latency_samples();
        let rt = if config.ack {
            format!(
                " {:>9} {:>9}",
                fmt_latency(d.round_trip_p50_ns, n),
                fmt_latency(d.round_trip_p99_ns, n)
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:<8} {:<8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}{} {:>6.0} {:>7.2} {:>8.1}  {}\n",
            c.key.model,
            truncate(&c.key.workload, 8),
            c.key.clients,
            window_label(d.batch_window_us),
            fmt_rate(d.offered_pps),
            fmt_rate(d.achieved_pps),
            fmt_latency(d.p50_ns, n),
            fmt_latency(d.p99_ns, n),
            fmt_latency(d.service_p50_ns, n),
            fmt_latency(d.service_p99_ns, n),
            rt,
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

/// A capacity search's answers as an aligned table, one line per (workload,
/// model) in run order, then the recommendation per workload.
pub fn render_capacities(run: &record::run::RunFile) -> String {
    let mut out = format!(
        "{:<8} {:<8} {:>7} {:>14} {:>9} {:>9} {:>7} {:>8}  {}\n",
        "work", "model", "workers", "capacity", "p99", "svc p99", "us/pkt", "pss MiB", "limited by"
    );
    for (workload, records) in record::run::by_workload(run) {
        for r in records {
            out.push_str(&format!(
                "{:<8} {:<8} {:>7} {:>14} {:>9} {:>9} {:>7.2} {:>8.1}  {}\n",
                truncate(&workload, 8),
                r.model,
                r.workers,
                r.interval.label(r.clients),
                record::units::fmt_ns(r.p99_ns),
                record::units::fmt_ns(r.service_p99_ns),
                r.cpu_us.median,
                r.pss_kib.median / 1024.0,
                r.limit_label()
            ));
        }
    }
    out.push('\n');
    for (workload, rec) in record::run::recommendations(run) {
        out.push_str(&format!(
            "{workload}: {} ({})\n",
            rec.headline(),
            rec.reason()
        ));
    }
    out
}
