//! Why a model's slow frames were slow: of its slowest 1% and its median
//! frames by time in the server's hands (written to finished: the service
//! latency), the share of each server stage (socket, queue, service:
//! [`models::stages`]) and the mean time before the write (the fleet's
//! batching and lateness, shown apart: the model cannot change it), the
//! work as measured against the work as asked, and the one sentence
//! summary.md prints for it, by tested rules.

use models::server_report::LatencySummary;
pub use models::stages::STAGES;

/// The stages in the server's hands, in [`Shares::share`] order.
pub const SERVER_STAGES: [&str; 3] = ["socket", "queue", "service"];
use models::stages::{bucket_of, LatencyBucket, StageSums};
use models::ServerReport;
use serde::{Deserialize, Serialize};
use workloads::spec::PlanMode;
use workloads::WorkPlan;

/// A stage whose share of the slowest frames is at least this names their
/// cause alone; below it the sentence lists the stages that matter.
pub const DOMINANT: f64 = 0.5;
/// Stages below this share are left out of a split's list.
pub const MENTION: f64 = 0.1;
/// Work measured this far from the work asked (either way) is flagged.
pub const WORK_TOLERANCE: f64 = 0.10;

/// The mean split of some frames' time in the server's hands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shares {
    /// Frames behind the shares.
    pub frames: u64,
    /// Their mean service latency (written to finished), ns.
    pub mean_ns: f64,
    /// Their mean time from due to written (the fleet stage), ns.
    pub fleet_mean_ns: f64,
    /// Each server stage's share of their service latency, in
    /// [`SERVER_STAGES`] order (they add up to 1 when any time was spent).
    pub share: [f64; 3],
}

impl Shares {
    /// The shares of the frames in `buckets`.
    pub fn of<'a>(buckets: impl Iterator<Item = &'a LatencyBucket>) -> Shares {
        let (mut frames, mut ns) = (0u64, [0f64; 4]);
        for b in buckets {
            frames += b.sums.frames;
            for (a, &v) in ns.iter_mut().zip(&b.sums.ns) {
                *a += v as f64;
            }
        }
        let server: f64 = ns[1..].iter().sum();
        let mean = |v: f64| if frames == 0 { 0.0 } else { v / frames as f64 };
        Shares {
            frames,
            mean_ns: mean(server),
            fleet_mean_ns: mean(ns[0]),
            share: [ns[1], ns[2], ns[3]].map(|v| if server > 0.0 { v / server } else { 0.0 }),
        }
    }

    /// The server stage with the largest share (index into
    /// [`SERVER_STAGES`]), and the share.
    pub fn top(&self) -> (usize, f64) {
        self.share
            .iter()
            .copied()
            .enumerate()
            .fold((2, f64::MIN), |a, (i, s)| if s > a.1 { (i, s) } else { a })
    }
}

/// One kind of work as measured (service time at the median) against what
/// the workload asked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkCheck {
    /// `cpu` or `io`.
    pub kind: String,
    /// What a frame asked, ns (cpu: its iterations at the kernel's
    /// calibrated speed).
    pub asked_ns: f64,
    /// Median service time of the frames of this kind, ns.
    pub p50_ns: u64,
    /// Frames measured.
    pub frames: u64,
}

impl WorkCheck {
    /// How far the median is from the ask, percent (+: longer).
    pub fn off_pct(&self) -> f64 {
        (self.p50_ns as f64 / self.asked_ns - 1.0) * 100.0
    }

    /// Off by more than [`WORK_TOLERANCE`].
    pub fn flagged(&self) -> bool {
        (self.p50_ns as f64 - self.asked_ns).abs() > WORK_TOLERANCE * self.asked_ns
    }
}

/// Where the time of one cell's (or one capacity's) frames went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// What a frame waits for in this model's queue stage, and the remedy.
    pub queue_is: String,
    /// What keeps this model from reading a frame as it arrives (its
    /// socket stage), and the remedy.
    #[serde(default)]
    pub read_late_is: String,
    /// The slowest 1% by service latency: the frames in the buckets from
    /// the one holding its p99 up (a bucket is 1/8 of an octave).
    pub tail: Shares,
    /// The middle: the buckets holding the 40th to the 60th percentile.
    pub median: Shares,
    /// Each kind of work as measured against as asked.
    pub work: Vec<WorkCheck>,
}

impl Attribution {
    /// The attribution of the frames of `reports` (one cell, or the repeats
    /// of one capacity) served under `plan`; `None` without measured
    /// frames or stages (a server that wrote none).
    pub fn of(reports: &[&ServerReport], plan: &WorkPlan) -> Option<Attribution> {
        let latency = LatencySummary::merged(reports.iter().map(|r| &r.service_latency_ns))?;
        let buckets = StageSums::from_buckets(
            &reports
                .iter()
                .flat_map(|r| r.stages.by_latency.iter().copied())
                .collect::<Vec<_>>(),
        )
        .buckets();
        let from = |q: f64| bucket_of(latency.value_at_quantile(q));
        let (slow, mid) = (from(0.99), (from(0.4), from(0.6)));
        let tail = Shares::of(buckets.iter().filter(|b| bucket_of(b.low_ns) >= slow));
        let median = Shares::of(
            buckets
                .iter()
                .filter(|b| (mid.0..=mid.1).contains(&bucket_of(b.low_ns))),
        );
        if tail.frames == 0 {
            return None;
        }
        Some(Attribution {
            queue_is: reports[0].stages.queue_is.clone(),
            read_late_is: reports[0].stages.read_late_is.clone(),
            tail,
            median,
            work: work_checks(reports, plan),
        })
    }

    /// The sentence summary.md prints for this model (see the module's
    /// rules and their table test).
    pub fn sentence(&self) -> String {
        let (top, share) = self.tail.top();
        let mut s = if share >= DOMINANT {
            format!("{} of its slowest 1% {}", pct(share), cause(top, self))
        } else {
            format!("its slowest 1% is split: {}", split(&self.tail))
        };
        let (mtop, mshare) = self.median.top();
        if self.median.frames > 0 {
            s.push_str(&format!(
                "; at the median, {} {}",
                pct(mshare),
                SERVER_STAGES[mtop]
            ));
        }
        for w in self.work.iter().filter(|w| w.flagged()) {
            s.push_str(&format!(
                "; its {} work took {} at the median where {} was asked ({:+.0}%): the \
                 work, not the model, moved",
                w.kind,
                us(w.p50_ns as f64),
                us(w.asked_ns),
                w.off_pct()
            ));
        }
        s
    }
}

/// What a dominant server stage means, as the sentence says it, in the
/// model's own words where the stage is the model's doing.
fn cause(stage: usize, a: &Attribution) -> String {
    match SERVER_STAGES[stage] {
        "socket" => format!(
            "waited in its socket until the server read it: {}",
            a.read_late_is
        ),
        "queue" => format!("waited after the read for {}", a.queue_is),
        _ => "was the work itself: only less work per frame shortens it".into(),
    }
}

/// The stages of at least [`MENTION`], largest first: "queue 40%, service 35%".
fn split(s: &Shares) -> String {
    let mut v: Vec<(usize, f64)> = s.share.iter().copied().enumerate().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter()
        .filter(|(_, x)| *x >= MENTION)
        .map(|(i, x)| format!("{} {}", SERVER_STAGES[*i], pct(*x)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn us(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} us", ns / 1e3)
    }
}

/// The cpu and io work of `plan`, each against its measured service time.
fn work_checks(reports: &[&ServerReport], plan: &WorkPlan) -> Vec<WorkCheck> {
    let has = |kind: PlanMode| plan.mode == kind || plan.mode == PlanMode::Mixed;
    let mut out = Vec::new();
    let asked_cpu = plan
        .iters_per_us
        .filter(|&r| r > 0.0 && has(PlanMode::Cpu))
        .map(|r| f64::from(plan.cpu_iters) / r * 1e3);
    let asked_io =
        (has(PlanMode::Io) || plan.mode == PlanMode::Call).then_some(f64::from(plan.io_us) * 1e3);
    for (kind, asked, pick) in [
        (
            "cpu",
            asked_cpu,
            (|r| &r.stages.work_cpu_ns) as fn(&ServerReport) -> &LatencySummary,
        ),
        ("io", asked_io, |r| &r.stages.work_io_ns),
    ] {
        let (Some(asked_ns), Some(h)) = (
            asked,
            LatencySummary::merged(reports.iter().map(|r| pick(r))),
        ) else {
            continue;
        };
        if asked_ns > 0.0 {
            out.push(WorkCheck {
                kind: kind.into(),
                asked_ns,
                p50_ns: h.value_at_quantile(0.5),
                frames: h.len(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(share: [f64; 3]) -> Shares {
        Shares {
            frames: 10,
            mean_ns: 1e6,
            fleet_mean_ns: 5e5,
            share,
        }
    }

    fn attribution(tail: [f64; 3], median: [f64; 3], work: Vec<WorkCheck>) -> Attribution {
        Attribution {
            queue_is: "a free worker: more workers or less work per frame".into(),
            read_late_is: "its one reading loop is busy: more workers".into(),
            tail: shares(tail),
            median: shares(median),
            work,
        }
    }

    #[test]
    fn sentence_rules() {
        let cpu = |p50_ns| WorkCheck {
            kind: "cpu".into(),
            asked_ns: 20_000.0,
            p50_ns,
            frames: 100,
        };
        let cases: [(Attribution, &str); 5] = [
            (
                attribution([0.1, 0.78, 0.12], [0.2, 0.1, 0.7], vec![cpu(19_600)]),
                "78% of its slowest 1% waited after the read for a free worker: more workers or \
                 less work per frame; at the median, 70% service",
            ),
            (
                attribution([0.05, 0.05, 0.9], [0.0, 0.0, 1.0], vec![]),
                "90% of its slowest 1% was the work itself: only less work per frame shortens \
                 it; at the median, 100% service",
            ),
            (
                attribution([0.6, 0.2, 0.2], [0.5, 0.0, 0.5], vec![]),
                "60% of its slowest 1% waited in its socket until the server read it: its one \
                 reading loop is busy: more workers; at the median, 50% socket",
            ),
            (
                attribution([0.25, 0.45, 0.3], [0.2, 0.1, 0.7], vec![]),
                "its slowest 1% is split: queue 45%, service 30%, socket 25%; at the median, \
                 70% service",
            ),
            (
                attribution([0.0, 0.0, 1.0], [0.0, 0.0, 1.0], vec![cpu(23_000)]),
                "100% of its slowest 1% was the work itself: only less work per frame shortens \
                 it; at the median, 100% service; its cpu work took 23.0 us at the median \
                 where 20.0 us was asked (+15%): the work, not the model, moved",
            ),
        ];
        for (a, want) in cases {
            assert_eq!(a.sentence(), want);
        }
    }

    #[test]
    fn work_is_flagged_beyond_a_tenth_either_way() {
        let check = |p50_ns| WorkCheck {
            kind: "io".into(),
            asked_ns: 1e6,
            p50_ns,
            frames: 1,
        };
        for (p50, flagged) in [
            (1_040_000, false),
            (1_100_000, false),
            (1_101_000, true),
            (899_000, true),
            (950_000, false),
        ] {
            assert_eq!(check(p50).flagged(), flagged, "{p50}");
        }
    }

    #[test]
    fn shares_add_up_over_the_server_stages_and_name_the_top_one() {
        let b = |frames, ns| LatencyBucket {
            low_ns: 1_000,
            sums: models::stages::BucketSums { frames, ns },
        };
        let s = Shares::of([b(2, [400, 100, 300, 600]), b(2, [0, 0, 0, 1_000])].iter());
        assert_eq!(s.frames, 4);
        assert_eq!((s.mean_ns, s.fleet_mean_ns), (500.0, 100.0));
        assert_eq!(s.share, [0.05, 0.15, 0.8]);
        assert_eq!(s.top(), (2, 0.8));
        let empty = Shares::of([].iter());
        assert_eq!((empty.frames, empty.share), (0, [0.0; 3]));
    }
}
