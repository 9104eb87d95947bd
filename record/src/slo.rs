//! `--slo p99=2ms,loss=0`: limits every valid cell must meet for a zero
//! exit code (for CI use).

use std::str::FromStr;
use std::time::Duration;

use workloads::spec::PlanMode;
use workloads::WorkPlan;

use crate::cell::CellResult;
use crate::verdict::Status;

/// Limits on valid cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slo {
    /// Latency limits: (percentile name, limit).
    pub latency: Vec<(String, Duration)>,
    /// Most frames lost.
    pub loss: Option<u64>,
}

impl FromStr for Slo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut slo = Slo::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not KEY=VALUE (e.g. p99=2ms,loss=0)"))?;
            match k {
                "p50" | "p90" | "p99" | "p999" | "max" => {
                    let d = crate::units::parse_duration(v)?;
                    slo.latency.push((k.to_string(), d));
                }
                "loss" => {
                    slo.loss = Some(
                        v.parse()
                            .map_err(|_| format!("loss `{v}` is not a count"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "unknown SLO key `{k}`; use p50, p90, p99, p999, max or loss"
                    ))
                }
            }
        }
        Ok(slo)
    }
}

impl Slo {
    /// Breaches among valid cells, one line each.
    pub fn breaches(&self, cells: &[CellResult]) -> Vec<String> {
        cells
            .iter()
            .filter(|c| c.verdict.status == Status::Valid)
            .flat_map(|c| {
                self.breach(c)
                    .into_iter()
                    .map(move |b| format!("{}: {b}", c.key.id()))
            })
            .collect()
    }

    /// What of this SLO one cell breaches, one entry per limit.
    pub fn breach(&self, c: &CellResult) -> Vec<String> {
        let mut out = Vec::new();
        for (name, limit) in &self.latency {
            let v = figure(c, name);
            if v > limit.as_nanos() as u64 {
                // The p99 with its order-statistic interval, when known.
                let ci = match (name.as_str(), c.derived.p99_ci_ns) {
                    ("p99", (lo, hi)) if hi > 0 => format!(
                        " (95% CI {}-{})",
                        crate::units::fmt_ns(lo),
                        crate::units::fmt_ns(hi)
                    ),
                    _ => String::new(),
                };
                out.push(format!(
                    "{name} {}{ci} > {}",
                    crate::units::fmt_ns(v),
                    crate::units::fmt_ns(limit.as_nanos() as u64)
                ));
            }
        }
        if let Some(max) = self.loss {
            if c.reconciliation.lost > max {
                out.push(format!("loss {} > {max}", c.reconciliation.lost));
            }
        }
        out
    }

    /// The cell's latency figures against their limits: the largest
    /// figure / limit (0: no latency limit).
    pub fn ratio(&self, c: &CellResult) -> f64 {
        self.latency
            .iter()
            .map(|(name, limit)| figure(c, name) as f64 / limit.as_nanos().max(1) as f64)
            .fold(0.0, f64::max)
    }

    /// How far the cell's worst latency figure is over its limit, ns (0:
    /// within every limit).
    pub fn excess_ns(&self, c: &CellResult) -> u64 {
        self.latency
            .iter()
            .map(|(name, limit)| figure(c, name).saturating_sub(limit.as_nanos() as u64))
            .max()
            .unwrap_or(0)
    }

    /// The text of an SLO for records: `p99 <= 3ms, no loss`.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = self
            .latency
            .iter()
            .map(|(n, d)| format!("{n} <= {}", crate::units::fmt_ns(d.as_nanos() as u64)))
            .collect();
        parts.push(match self.loss {
            Some(0) | None => "no loss".to_string(),
            Some(n) => format!("loss <= {n}"),
        });
        parts.join(", ")
    }

    /// The default SLO of a cell with this batch window and work: p99 at
    /// most [`default_p99_ns`], no loss.
    pub fn default_for(batch_window_us: u64, plan: Option<&WorkPlan>) -> Slo {
        Slo {
            latency: vec![(
                "p99".to_string(),
                Duration::from_nanos(default_p99_ns(batch_window_us, plan)),
            )],
            loss: Some(0),
        }
    }
}

/// The cell's latency figure called `name` (p50, p90, p99, p999, max), ns.
fn figure(c: &CellResult, name: &str) -> u64 {
    let d = &c.derived;
    match name {
        "p50" => d.p50_ns,
        "p90" => d.p90_ns,
        "p99" => d.p99_ns,
        "p999" => d.p999_ns,
        _ => d.max_ns,
    }
}

/// The default p99 bound of a cell: its batch window (the fleet's
/// batching alone adds up to one window) + 1 ms + twice the longest work
/// one frame of the workload asks for.
pub fn default_p99_ns(batch_window_us: u64, plan: Option<&WorkPlan>) -> u64 {
    let work_ns = plan.map_or(0, longest_work_ns);
    batch_window_us * 1000 + 1_000_000 + 2 * work_ns
}

/// The longest work one frame of `plan` asks for, ns (cpu converted with
/// the plan's calibration).
pub fn longest_work_ns(plan: &WorkPlan) -> u64 {
    let cpu = || match plan.iters_per_us {
        Some(k) if k > 0.0 => (plan.cpu_iters as f64 / k * 1000.0) as u64,
        _ => 0,
    };
    let io = || plan.io_us as u64 * 1000;
    match plan.mode {
        PlanMode::None => 0,
        PlanMode::Cpu => cpu(),
        PlanMode::Io | PlanMode::Call => io(),
        PlanMode::Mixed => cpu().max(io()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use workloads::WorkSpec;

    #[test]
    fn default_bounds_follow_window_and_work() {
        let plan = |s: &str| WorkSpec::from_str(s).unwrap().resolve(Some(100.0)).unwrap();
        // (window us, spec, bound)
        let table = [
            (0, "none", 1_000_000),
            (1000, "none", 2_000_000),
            (0, "io:1ms", 3_000_000),
            (0, "io:5ms", 11_000_000),
            (0, "cpu:20us", 1_040_000),
            (250, "mixed:cpu=5us,io=1ms,ratio=0.5,every=10", 3_250_000),
        ];
        for (w, spec, bound) in table {
            assert_eq!(
                default_p99_ns(w, Some(&plan(spec))),
                bound,
                "{spec} at {w}us"
            );
        }
    }

    #[test]
    fn parses_limits() {
        let s: Slo = "p99=2ms,loss=0".parse().unwrap();
        assert_eq!(
            s.latency,
            vec![("p99".to_string(), Duration::from_millis(2))]
        );
        assert_eq!(s.loss, Some(0));
        assert!("p42=1ms".parse::<Slo>().is_err());
        assert!("p99".parse::<Slo>().is_err());
    }
}
