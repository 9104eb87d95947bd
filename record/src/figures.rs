//! The figures of one cell, derived from its raw reports and samples only
//! (so `harness report` can recompute them for old runs), each cut to the
//! fleet's measured window and defined the same way for every model.

use models::server_report::LatencySummary;
use models::ServerReport;
use serde::{Deserialize, Serialize};

use crate::attribution::Attribution;
use crate::efficiency::Counts;
use crate::samples::{growth, HostSample, Sample, Samples};
use fleet::fleet_report::FleetReport;

/// A cell is flagged noisy when the hypervisor stole more than this share
/// of its CPUs during the window.
pub const NOISY_STEAL_PCT: f64 = 5.0;

/// Derived figures of one cell.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Figures {
    /// The fleet's batch window, microseconds (0: one write per frame).
    pub batch_window_us: u64,
    /// Scheduled measured frames per second.
    pub offered_pps: f64,
    /// Frames (warm-up ones included) the server finished processing inside
    /// the measured window, per second of window, from its own timeline.
    pub achieved_pps: f64,
    /// Frames written by the fleet but not yet processed when the load
    /// stopped.
    pub backlog_frames: u64,
    /// The backlog in seconds of offered load.
    pub backlog_s: f64,
    /// Latency (due to processed), ns.
    pub p50_ns: u64,
    /// 90th.
    pub p90_ns: u64,
    /// 99th.
    pub p99_ns: u64,
    /// The p99's 95% confidence interval from order statistics (Lancet:
    /// ranks n p -+ 1.96 sqrt(n p (1 - p)) of the n measured frames), ns;
    /// (0, 0) when the histogram is not recorded.
    #[serde(default)]
    pub p99_ci_ns: (u64, u64),
    /// 99.9th.
    pub p999_ns: u64,
    /// Largest.
    pub max_ns: u64,
    /// Service latency (write to processed) median, ns.
    pub service_p50_ns: u64,
    /// Service latency 99th.
    pub service_p99_ns: u64,
    /// Service latency 99.9th.
    pub service_p999_ns: u64,
    /// Ack mode: due time to ack read, on the fleet's clock, p50 (ns; 0
    /// without acks).
    #[serde(default)]
    pub round_trip_p50_ns: u64,
    /// Ack mode: round trip p99.
    #[serde(default)]
    pub round_trip_p99_ns: u64,
    /// Server CPU over the window (process CPU clocks, whole tree), percent of one CPU.
    pub server_cpu_pct: f64,
    /// Server CPU time per frame processed in the window, microseconds.
    pub cpu_us_per_packet: f64,
    /// Peak server RSS, KiB.
    pub peak_rss_kib: u64,
    /// Mean server RSS over the window, KiB.
    pub mean_rss_kib: f64,
    /// Peak server PSS (sampled once a second and at the end), KiB.
    pub peak_pss_kib: u64,
    /// Fleet CPU over the window, percent of one CPU.
    pub fleet_cpu_pct: f64,
    /// Fleet send lag p99, ns.
    pub send_lag_p99_ns: u64,
    /// Fleet pacing lag p99, ns.
    pub pacing_lag_p99_ns: u64,
    /// CPU time the sampler used in the whole cell, ms.
    pub sampler_cpu_ms: f64,
    /// Hypervisor steal on the server's and fleet's CPUs in the window, %.
    pub steal_pct: f64,
    /// Involuntary context switches of the server's tasks in the window.
    pub involuntary_ctxt: u64,
    /// Steal above [`NOISY_STEAL_PCT`].
    pub noisy: bool,
    /// Where the measured frames' time went, stage by stage, and the work
    /// as measured against as asked (`None`: no stages recorded).
    #[serde(default)]
    pub attribution: Option<Attribution>,
    /// The server's own counts per frame over its whole run.
    #[serde(default)]
    pub counts: Option<Counts>,
}

fn cpu_ns(s: &Sample) -> f64 {
    s.cpu_ns as f64
}

fn t(s: &Sample) -> u64 {
    s.t_ns
}

/// Computes every figure of a cell.
pub fn derive(
    fleet: Option<&FleetReport>,
    server: Option<&ServerReport>,
    samples: &Samples,
) -> Figures {
    let mut d = Figures {
        sampler_cpu_ms: samples.sampler_cpu_ns as f64 / 1e6,
        ..Figures::default()
    };
    d.counts = server.and_then(Counts::of);
    if let Some(s) = server {
        (d.p50_ns, d.p90_ns, d.p99_ns, d.p999_ns, d.max_ns) = percentiles(&s.latency_ns);
        d.p99_ci_ns = s
            .latency_ns
            .histogram()
            .ok()
            .map_or((0, 0), |h| quantile_ci(&h, 0.99));
        let l = &s.service_latency_ns;
        (d.service_p50_ns, d.service_p99_ns, d.service_p999_ns) = (l.p50, l.p99, l.p999);
    }
    d.peak_rss_kib = samples.server.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    d.peak_pss_kib = samples
        .server
        .iter()
        .filter_map(|s| s.pss_kib)
        .max()
        .unwrap_or(0);
    let Some(f) = fleet else { return d };
    d.batch_window_us = f.config.batch_window.as_micros() as u64;
    d.attribution = server.and_then(|s| Attribution::of(&[s], &f.config.work));
    if let Some(a) = &f.acks {
        (d.round_trip_p50_ns, d.round_trip_p99_ns) = (a.round_trip_ns.p50, a.round_trip_ns.p99);
    }
    d.offered_pps = f.offered_rate.unwrap_or(f.achieved_rate);
    d.send_lag_p99_ns = f.send_lag_ns.p99;
    d.pacing_lag_p99_ns = f.pacing_lag_ns.p99;
    let (from, to) = (f.window_start_ns, f.window_end_ns);
    let window_s = to.saturating_sub(from) as f64 / 1e9;
    if window_s <= 0.0 {
        return d;
    }
    let in_window = server.map_or(0.0, |s| s.timeline.frames_between(from, to));
    d.achieved_pps = in_window / window_s;
    if let Some(s) = server {
        let sent = f.sent.measured + f.sent.warmup;
        let done_by_end = s.timeline.frames_between(0, to);
        d.backlog_frames = (sent as f64 - done_by_end).max(0.0).round() as u64;
        if d.offered_pps > 0.0 {
            d.backlog_s = d.backlog_frames as f64 / d.offered_pps;
        }
    }
    let server_cpu = growth(&samples.server, from, to, t, cpu_ns);
    d.server_cpu_pct = server_cpu / 1e9 / window_s * 100.0;
    if in_window > 0.0 {
        d.cpu_us_per_packet = server_cpu / 1e3 / in_window;
    }
    d.fleet_cpu_pct = growth(&samples.fleet, from, to, t, cpu_ns) / 1e9 / window_s * 100.0;
    let rss: Vec<f64> = samples
        .server
        .iter()
        .filter(|s| (from..=to).contains(&s.t_ns))
        .map(|s| s.rss_kib as f64)
        .collect();
    if !rss.is_empty() {
        d.mean_rss_kib = rss.iter().sum::<f64>() / rss.len() as f64;
    }
    let sparse: Vec<(u64, u64)> = samples
        .server
        .iter()
        .filter_map(|s| s.involuntary_ctxt.map(|v| (s.t_ns, v)))
        .collect();
    d.involuntary_ctxt = growth(&sparse, from, to, |x| x.0, |x| x.1 as f64).round() as u64;
    let host_t = |h: &HostSample| h.t_ns;
    let steal = growth(&samples.host, from, to, host_t, |h| h.steal as f64);
    let total = growth(&samples.host, from, to, host_t, |h| h.total as f64);
    if total > 0.0 {
        d.steal_pct = steal / total * 100.0;
    }
    d.noisy = d.steal_pct > NOISY_STEAL_PCT;
    d
}

/// The 95% confidence interval of quantile `p` of `h` from order
/// statistics: the values at ranks `n p -+ 1.96 sqrt(n p (1 - p))`.
pub fn quantile_ci(h: &hdrhistogram::Histogram<u64>, p: f64) -> (u64, u64) {
    let n = h.len() as f64;
    if n == 0.0 {
        return (0, 0);
    }
    let half = 1.96 * (n * p * (1.0 - p)).sqrt();
    let at = |rank: f64| h.value_at_quantile((rank / n).clamp(0.0, 1.0));
    (at((n * p - half).floor()), at((n * p + half).ceil()))
}

fn percentiles(l: &LatencySummary) -> (u64, u64, u64, u64, u64) {
    (l.p50, l.p90, l.p99, l.p999, l.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_interval_holds_it_and_narrows_with_samples() {
        // Latencies 1..=n us, uniform: the interval holds the p99 and
        // narrows as n grows.
        let mut widths = Vec::new();
        for n in [2_500u64, 20_000, 200_000] {
            let mut h = common::latency::new_latency_histogram();
            for v in 1..=n {
                h.record(v * 1000).unwrap();
            }
            let (lo, hi) = quantile_ci(&h, 0.99);
            let p99 = h.value_at_quantile(0.99);
            assert!(lo <= p99 && p99 <= hi, "{n}: {lo} {p99} {hi}");
            widths.push((hi - lo) as f64 / p99 as f64);
        }
        assert!(widths.windows(2).all(|w| w[1] < w[0]), "{widths:?}");
        let empty = common::latency::new_latency_histogram();
        assert_eq!(quantile_ci(&empty, 0.99), (0, 0));
    }
}
