//! Resource samples of a cell's process trees (CPU, memory, threads, fds)
//! and of the host's steal time, stamped with CLOCK_MONOTONIC, and how a
//! cumulative series is cut to the fleet's measured window.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sampling period.
pub const PERIOD: Duration = Duration::from_millis(100);

/// One sample of one process tree.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// CLOCK_MONOTONIC ns when taken.
    pub t_ns: u64,
    /// Seconds since sampling started.
    pub t_s: f64,
    /// CPU time of every task the tree ever had, ns, cumulative.
    pub cpu_ns: u64,
    /// Resident set of the tree, KiB.
    pub rss_kib: u64,
    /// Proportional set of the tree (shared pages split), KiB (sparse).
    pub pss_kib: Option<u64>,
    /// Threads in the tree.
    pub threads: u64,
    /// Processes in the tree.
    pub processes: u64,
    /// Involuntary context switches of the live tasks so far (sparse).
    pub involuntary_ctxt: Option<u64>,
    /// Open file descriptors (sparse).
    pub fds: Option<u64>,
}

/// The host's CPU accounting for the sampled CPUs, cumulative ticks.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct HostSample {
    /// CLOCK_MONOTONIC ns when taken.
    pub t_ns: u64,
    /// Ticks stolen by the hypervisor.
    pub steal: u64,
    /// All ticks.
    pub total: u64,
}

/// Samples of the server and fleet trees of one cell.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Samples {
    /// Server tree.
    pub server: Vec<Sample>,
    /// Fleet tree.
    pub fleet: Vec<Sample>,
    /// Steal accounting of the server's and fleet's CPUs.
    pub host: Vec<HostSample>,
    /// CPU time the sampler itself used, ns.
    pub sampler_cpu_ns: u64,
}

/// The value of a cumulative series at `t_ns`, interpolated linearly
/// between the samples around it (clamped to the first and last).
pub fn value_at<T>(
    series: &[T],
    t_ns: u64,
    time: fn(&T) -> u64,
    value: impl Fn(&T) -> f64,
) -> Option<f64> {
    let first = series.first()?;
    let last = series.last()?;
    if t_ns <= time(first) {
        return Some(value(first));
    }
    if t_ns >= time(last) {
        return Some(value(last));
    }
    let i = series.partition_point(|s| time(s) <= t_ns);
    let (a, b) = (&series[i - 1], &series[i]);
    let span = (time(b) - time(a)) as f64;
    let frac = if span > 0.0 {
        (t_ns - time(a)) as f64 / span
    } else {
        1.0
    };
    Some(value(a) + (value(b) - value(a)) * frac)
}

/// How much a cumulative series grew over `[from, to]`, interpolated.
pub fn growth<T>(
    series: &[T],
    from: u64,
    to: u64,
    time: fn(&T) -> u64,
    value: impl Fn(&T) -> f64 + Copy,
) -> f64 {
    match (
        value_at(series, from, time, value),
        value_at(series, to, time, value),
    ) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_ns: u64, cpu_ns: u64) -> Sample {
        Sample {
            t_ns,
            cpu_ns,
            ..Sample::default()
        }
    }

    #[test]
    fn cumulative_series_are_cut_at_window_edges() {
        let series = [s(0, 0), s(100, 50), s(200, 150)];
        let cpu = |x: &Sample| x.cpu_ns as f64;
        let t = |x: &Sample| x.t_ns;
        assert_eq!(value_at(&series, 50, t, cpu), Some(25.0));
        assert_eq!(value_at(&series, 150, t, cpu), Some(100.0));
        assert_eq!(value_at(&series, 500, t, cpu), Some(150.0));
        assert_eq!(growth(&series, 50, 150, t, cpu), 75.0);
        assert_eq!(growth(&series[..0], 50, 150, t, cpu), 0.0);
    }
}
