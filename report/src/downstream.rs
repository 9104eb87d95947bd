//! The downstream responder's own figures for call work, per workload: how
//! many calls it answered and how late, past the delay asked, it wrote its
//! replies, so that its share of a call's time is read as the responder's,
//! never the model's.

use std::fmt::Write;

use common::latency::LatencySummary;
use common::units::fmt_ns;
use record::run::RunFile;

/// The responder's paragraph for `workload` (nothing when no cell of it
/// ran one).
pub fn section(md: &mut String, run: &RunFile, workload: &str) {
    let reports: Vec<_> = run
        .cells
        .iter()
        .filter(|c| c.key.workload == workload)
        .filter_map(|c| c.downstream.as_ref())
        .collect();
    if reports.is_empty() {
        return;
    }
    let replies: u64 = reports.iter().map(|r| r.replies).sum();
    let requests: u64 = reports.iter().map(|r| r.requests).sum();
    let refused: u64 = reports.iter().map(|r| r.refused).sum();
    let Some(late) = LatencySummary::merged(reports.iter().map(|r| &r.lateness_ns)) else {
        let _ = writeln!(
            md,
            "**The downstream.** A responder the harness starts per probe took {requests} calls and answered none.\n"
        );
        return;
    };
    let _ = writeln!(
        md,
        "**The downstream.** Each probe's server called a responder the harness started for it (on loopback, on the harness's CPUs {:?}, never the server's), which answers each call once its delay has passed. Over this workload's {} probes it answered {replies} of {requests} calls{}; its own lateness, reply written less request read less the delay asked: p50 {}, p99 {}, max {}. That much of every call's time, and so of every model's latency here, is the responder's, not the model's.\n",
        run.config.harness_cpus,
        reports.len(),
        if refused > 0 { format!(" ({refused} refused: a delay over its cap)") } else { String::new() },
        fmt_ns(late.value_at_quantile(0.5)),
        fmt_ns(late.value_at_quantile(0.99)),
        fmt_ns(late.max()),
    );
}
