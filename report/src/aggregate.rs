//! Folds the repeats of each cell into one point: medians, spreads and the
//! worst verdict, the unit every table and plot shows.

use serde::Serialize;

use record::run::RunFile;
use record::verdict::Status;

/// One (model, workload, fleet size) across its repeats.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Model.
    pub model: String,
    /// Workload.
    pub workload: String,
    /// Fleet size.
    pub clients: u32,
    /// Repeats folded in.
    pub repeats: usize,
    /// Worst status of any repeat.
    pub status: Status,
    /// Every distinct reason of any repeat.
    pub reasons: Vec<String>,
    /// Offered packets/s.
    pub offered_pps: f64,
    /// Median achieved packets/s.
    pub achieved_pps: f64,
    /// Lowest and highest achieved packets/s.
    pub achieved_spread: (f64, f64),
    /// Fewest measured frames behind any repeat's latency (0: unknown).
    pub latency_samples: u64,
    /// Median latency percentiles, ns.
    pub p50_ns: u64,
    /// Median p99.
    pub p99_ns: u64,
    /// Lowest and highest p99.
    pub p99_spread: (u64, u64),
    /// Median p99.9.
    pub p999_ns: u64,
    /// Largest max.
    pub max_ns: u64,
    /// Median service latency (write to processed) p50, ns.
    pub service_p50_ns: u64,
    /// Median service p99.
    pub service_p99_ns: u64,
    /// Median service p99.9.
    pub service_p999_ns: u64,
    /// Ack mode: median round trip p50 (0 without acks).
    pub round_trip_p50_ns: u64,
    /// Ack mode: median round trip p99.
    pub round_trip_p99_ns: u64,
    /// The fleet's batch window, microseconds.
    pub batch_window_us: u64,
    /// Median backlog when the load stopped, frames.
    pub backlog_frames: u64,
    /// Any repeat flagged noisy (steal above the limit).
    pub noisy: bool,
    /// Largest steal of any repeat, %.
    pub steal_pct: f64,
    /// Median server CPU %.
    pub cpu_pct: f64,
    /// Median CPU us per packet.
    pub cpu_us_per_packet: f64,
    /// Lowest and highest CPU us per packet.
    pub cpu_spread: (f64, f64),
    /// Largest peak RSS, KiB.
    pub peak_rss_kib: u64,
    /// Largest peak PSS, KiB.
    pub peak_pss_kib: u64,
    /// Frames lost, all repeats.
    pub lost: u64,
    /// Index in `run.cells` of the repeat with the median p99 (for spectra).
    pub median_cell: usize,
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn spread_f(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// Points in run order (workload, fleet size, model).
pub fn points(run: &RunFile) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    for w in &run.config.workloads {
        for &clients in &run.config.clients {
            for model in &run.config.models {
                let idx: Vec<usize> = run
                    .cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| {
                        c.key.model == *model
                            && c.key.workload == w.name
                            && c.key.clients == clients
                    })
                    .map(|(i, _)| i)
                    .collect();
                if idx.is_empty() {
                    continue;
                }
                let cells: Vec<_> = idx.iter().map(|&i| &run.cells[i]).collect();
                let status = cells
                    .iter()
                    .map(|c| c.verdict.status)
                    .max_by_key(|s| match s {
                        Status::Valid => 0,
                        Status::Overloaded => 1,
                        Status::Invalid => 2,
                    })
                    .unwrap_or(Status::Invalid);
                let mut reasons: Vec<String> = Vec::new();
                for r in cells.iter().flat_map(|c| &c.verdict.reasons) {
                    if !reasons.contains(r) {
                        reasons.push(r.clone());
                    }
                }
                let achieved: Vec<f64> = cells.iter().map(|c| c.derived.achieved_pps).collect();
                let cpu: Vec<f64> = cells.iter().map(|c| c.derived.cpu_us_per_packet).collect();
                let mut by_p99: Vec<usize> = idx.clone();
                by_p99.sort_by_key(|&i| run.cells[i].derived.p99_ns);
                let med_u = |f: fn(&record::figures::Figures) -> u64| {
                    let mut v: Vec<u64> = cells.iter().map(|c| f(&c.derived)).collect();
                    v.sort_unstable();
                    v[v.len() / 2]
                };
                out.push(Point {
                    model: model.clone(),
                    workload: w.name.clone(),
                    clients,
                    repeats: cells.len(),
                    status,
                    reasons,
                    offered_pps: cells[0].derived.offered_pps,
                    achieved_pps: median_f(achieved.clone()),
                    achieved_spread: spread_f(&achieved),
                    latency_samples: cells.iter().map(|c| c.latency_samples()).min().unwrap_or(0),
                    p50_ns: med_u(|d| d.p50_ns),
                    p99_ns: med_u(|d| d.p99_ns),
                    p99_spread: (
                        run.cells[by_p99[0]].derived.p99_ns,
                        run.cells[by_p99[by_p99.len() - 1]].derived.p99_ns,
                    ),
                    p999_ns: med_u(|d| d.p999_ns),
                    max_ns: cells.iter().map(|c| c.derived.max_ns).max().unwrap_or(0),
                    service_p50_ns: med_u(|d| d.service_p50_ns),
                    service_p99_ns: med_u(|d| d.service_p99_ns),
                    service_p999_ns: med_u(|d| d.service_p999_ns),
                    round_trip_p50_ns: med_u(|d| d.round_trip_p50_ns),
                    round_trip_p99_ns: med_u(|d| d.round_trip_p99_ns),
                    batch_window_us: cells[0].derived.batch_window_us,
                    backlog_frames: med_u(|d| d.backlog_frames),
                    noisy: cells.iter().any(|c| c.derived.noisy),
                    steal_pct: cells
                        .iter()
                        .map(|c| c.derived.steal_pct)
                        .fold(0.0, f64::max),
                    cpu_pct: median_f(cells.iter().map(|c| c.derived.server_cpu_pct).collect()),
                    cpu_us_per_packet: median_f(cpu.clone()),
                    cpu_spread: spread_f(&cpu),
                    peak_rss_kib: cells
                        .iter()
                        .map(|c| c.derived.peak_rss_kib)
                        .max()
                        .unwrap_or(0),
                    peak_pss_kib: cells
                        .iter()
                        .map(|c| c.derived.peak_pss_kib)
                        .max()
                        .unwrap_or(0),
                    lost: cells.iter().map(|c| c.reconciliation.lost).sum(),
                    median_cell: by_p99[by_p99.len() / 2],
                });
            }
        }
    }
    out
}
