//! The fleet checks its own arrivals (as Lancet does): the gaps between
//! the due times of the measured frames it sent, a uniform sample of them
//! per pacing thread, are tested against the process asked for with a
//! one-sample Kolmogorov-Smirnov test (`statrs`); a sample that fails makes
//! the cell invalid (`arrivals_mismatch`), since the load was not the load
//! named. Only random processes are tested: constant spacing and bursts
//! are exact by construction (their due times are table-tested).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use statrs::distribution::Exp;
use statrs::stats_tests::ks_test::{ks_onesample, KSOneSampleAlternativeMethod};
use statrs::stats_tests::NaNPolicy;

use crate::arrival::Arrival;

/// Gaps kept per pacing thread.
pub const SAMPLE: usize = 20_000;
/// Fewest gaps worth a test.
pub const MIN_GAPS: u64 = 200;
/// A sample whose p-value is below this fails: the chance that a right
/// generator fails is one in a million.
pub const ALPHA: f64 = 1e-6;

/// A uniform sample (reservoir) of one pacing thread's gaps, ns.
#[derive(Clone, Debug)]
pub struct Gaps {
    kept: Vec<f64>,
    seen: u64,
    rng: StdRng,
}

impl Gaps {
    /// An empty sample, its choices seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Gaps {
            kept: Vec::new(),
            seen: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Offers one gap to the sample.
    pub fn offer(&mut self, gap_ns: u64) {
        self.seen += 1;
        if self.kept.len() < SAMPLE {
            self.kept.push(gap_ns as f64);
        } else {
            let j = self.rng.gen_range(0..self.seen);
            if (j as usize) < SAMPLE {
                self.kept[j as usize] = gap_ns as f64;
            }
        }
    }

    /// Adds another thread's sample (each kept whole: the gaps are
    /// independent, so a union of uniform samples is one).
    pub fn merge(&mut self, o: &Gaps) {
        self.kept.extend_from_slice(&o.kept);
        self.seen += o.seen;
    }
}

/// The test's outcome, in the fleet's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArrivalCheck {
    /// The process asked for.
    pub process: Arrival,
    /// Gaps tested.
    pub gaps: u64,
    /// Their mean, ns.
    pub mean_ns: f64,
    /// The Kolmogorov-Smirnov statistic (largest distance between the
    /// sample's distribution and the process's).
    pub statistic: f64,
    /// Its p-value (asymptotic).
    pub p_value: f64,
    /// Whether the sample is what was asked for (`p_value >= ALPHA`, or
    /// too few gaps to tell, which is said).
    pub passed: bool,
}

impl ArrivalCheck {
    /// The finding when it failed.
    pub fn reason(&self) -> Option<String> {
        (!self.passed).then(|| {
            format!(
                "arrivals_mismatch: the {} gaps sent are not {} (Kolmogorov-Smirnov D = {:.4}, p = {:.1e} < {ALPHA:.0e}; mean gap {:.0} ns)",
                self.gaps, self.process, self.statistic, self.p_value, self.mean_ns
            )
        })
    }

    /// The merge of shards' checks: every gap counted, the worst test.
    pub fn merge(checks: impl IntoIterator<Item = ArrivalCheck>) -> Option<ArrivalCheck> {
        checks.into_iter().reduce(|a, b| {
            let gaps = a.gaps + b.gaps;
            let mean_ns =
                (a.mean_ns * a.gaps as f64 + b.mean_ns * b.gaps as f64) / gaps.max(1) as f64;
            let worst = if b.p_value < a.p_value { b } else { a };
            ArrivalCheck {
                gaps,
                mean_ns,
                ..worst
            }
        })
    }
}

/// Tests `gaps` against `process` at `hz` per client; `None` for a
/// process that is exact by construction.
pub fn check(process: &Arrival, hz: u64, gaps: &Gaps) -> Option<ArrivalCheck> {
    if *process != Arrival::Poisson {
        return None;
    }
    let n = gaps.kept.len() as u64;
    let mean_ns = gaps.kept.iter().sum::<f64>() / n.max(1) as f64;
    let exp = Exp::new(hz as f64 / 1e9).ok()?;
    let (statistic, p_value) = if n >= MIN_GAPS {
        ks_onesample(
            gaps.kept.clone(),
            &exp,
            KSOneSampleAlternativeMethod::TwoSidedAsymptotic,
            NaNPolicy::Error,
        )
        .ok()?
    } else {
        (0.0, 1.0)
    };
    Some(ArrivalCheck {
        process: process.clone(),
        gaps: n,
        mean_ns,
        statistic,
        p_value,
        passed: p_value >= ALPHA,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poisson::Stream;

    fn sample(gaps: impl IntoIterator<Item = u64>) -> Gaps {
        let mut g = Gaps::new(1);
        for x in gaps {
            g.offer(x);
        }
        g
    }

    /// The fleet's own Poisson streams pass; wrong generators (even
    /// spacing, uniform gaps, the right shape at the wrong rate) fail;
    /// too few gaps cannot fail; a deterministic process is not tested.
    #[test]
    fn the_check_tells_a_right_generator_from_wrong_ones() {
        let stream = Stream::new(9, 1, 10_000, 0, Some(30_001));
        let right: Vec<u64> = (1..=30_000)
            .map(|i| stream.offset(i) - stream.offset(i - 1))
            .collect();
        let slow = Stream::new(9, 1, 9_000, 0, Some(30_001));
        let cases: Vec<(&str, Gaps, bool)> = vec![
            ("the fleet's poisson", sample(right.iter().copied()), true),
            (
                "even spacing",
                sample(std::iter::repeat_n(100_000, 30_000)),
                false,
            ),
            (
                "uniform 0-200 us",
                sample((0..30_000).map(|i| (i * 7_919) % 200_000)),
                false,
            ),
            (
                "poisson at 9 kHz",
                sample((1..=30_000).map(|i| slow.offset(i) - slow.offset(i - 1))),
                false,
            ),
            (
                "too few to tell",
                sample(std::iter::repeat_n(100_000, 50)),
                true,
            ),
        ];
        for (name, gaps, pass) in cases {
            let c = check(&Arrival::Poisson, 10_000, &gaps).expect("poisson is tested");
            assert_eq!(c.passed, pass, "{name}: {c:?}");
            assert_eq!(c.reason().is_some(), !pass, "{name}");
        }
        assert_eq!(check(&Arrival::Constant, 10_000, &sample([1, 2, 3])), None);
    }

    /// The reservoir keeps at most `SAMPLE` gaps of all it was offered,
    /// and merged checks keep every gap and the worst p-value.
    #[test]
    fn samples_are_bounded_and_merges_keep_the_worst() {
        let g = sample(0..(3 * SAMPLE as u64));
        assert_eq!((g.kept.len(), g.seen), (SAMPLE, 3 * SAMPLE as u64));
        let mk = |gaps, p_value| ArrivalCheck {
            process: Arrival::Poisson,
            gaps,
            mean_ns: 100.0,
            statistic: 0.01,
            p_value,
            passed: p_value >= ALPHA,
        };
        let m = ArrivalCheck::merge([mk(10, 0.5), mk(20, 1e-9), mk(30, 0.2)]).expect("three");
        assert_eq!((m.gaps, m.passed, m.p_value), (60, false, 1e-9));
        assert_eq!(ArrivalCheck::merge([]), None);
    }
}
