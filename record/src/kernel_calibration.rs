//! The cpu kernel's calibration: how many reference-kernel iterations make
//! one microsecond on this machine. It decides what `cpu:5us` asks of every
//! frame, so it is measured once per machine and build (several timed
//! rounds, the median kept, the spread recorded) and cached beside the
//! fleet's calibration: two runs on one machine then ask for the same work,
//! and a comparison of runs whose kernels differ says so.

use serde::{Deserialize, Serialize};

use workloads::WorkPlan;

use crate::environment::Environment;

/// File name of the cached kernel calibration inside the results folder.
pub const KERNEL_CALIBRATION_FILE: &str = "kernel-calibration.json";
/// Timed rounds of about 20 ms each.
pub const KERNEL_ROUNDS: u32 = 11;
/// Two calibrations further apart than this (as a share of the smaller)
/// turn one cpu spec into different work: runs made with them measure
/// different loads under cpu work.
pub const SAME_WORK: f64 = 0.02;

/// The machine and build a calibration belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// CPU model.
    pub cpu_model: String,
    /// The harness build (a CRC-32 of its executable).
    pub build: String,
}

impl Machine {
    /// The machine of a run's environment.
    pub fn of(env: &Environment) -> Self {
        Machine {
            hostname: env.hostname.clone(),
            cpu_model: env.cpu_model.clone(),
            build: env.build.clone(),
        }
    }

    /// Whether a calibration of `self` holds for `other`: same host, CPU
    /// model and build (an unknown build never matches).
    pub fn matches(&self, other: &Machine) -> bool {
        self == other && self.build != "unknown"
    }
}

/// A machine's kernel calibration, cached and recorded in every run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelCalibration {
    /// Where it was measured.
    #[serde(flatten)]
    pub machine: Machine,
    /// When, RFC 3339.
    pub measured: String,
    /// Kernel iterations per microsecond: the median of `rounds`.
    pub iters_per_us: f64,
    /// Each round's rate, as measured.
    pub rounds: Vec<f64>,
}

impl KernelCalibration {
    /// The calibration from timed `rounds`: their median, which neither a
    /// stalled round nor one lucky fast round moves.
    pub fn from_rounds(machine: Machine, measured: String, rounds: Vec<f64>) -> Self {
        KernelCalibration {
            machine,
            measured,
            iters_per_us: median(&rounds),
            rounds,
        }
    }

    /// The slowest and fastest round.
    pub fn spread(&self) -> (f64, f64) {
        let lo = self.rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.rounds.iter().copied().fold(0.0, f64::max);
        (lo.min(hi), hi)
    }
}

/// One check of the machine's speed during a run: the kernel's rounds
/// timed again (as many as the calibration's), at the run's start and
/// before each round of confirmations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeedCheck {
    /// When, RFC 3339.
    pub at: String,
    /// Each round's rate, kernel iterations per microsecond.
    pub rounds: Vec<f64>,
}

/// Share of the slowest and of the fastest rounds a speed spread leaves
/// out: one round stalled by the host (or one lucky round) does not
/// widen every interval of a run.
pub const SPREAD_TRIM: f64 = 0.1;

/// How much faster the machine ran at its fastest than at its slowest,
/// as a share of the slowest (0.05: 5%), over every round of the
/// calibration and of the run's speed checks, the [`SPREAD_TRIM`] share
/// at either end left out. Two runs that share a calibration thus both
/// span it: a second run on a faster or slower machine widens its own
/// spread by the difference.
pub fn speed_spread(calibration: Option<&KernelCalibration>, checks: &[SpeedCheck]) -> f64 {
    let mut rounds: Vec<f64> = calibration
        .map(|k| k.rounds.as_slice())
        .into_iter()
        .chain(checks.iter().map(|c| c.rounds.as_slice()))
        .flatten()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    if rounds.len() < 2 {
        return 0.0;
    }
    rounds.sort_by(f64::total_cmp);
    let cut = (rounds.len() as f64 * SPREAD_TRIM).floor() as usize;
    let (slow, fast) = (rounds[cut], rounds[rounds.len() - 1 - cut]);
    fast / slow - 1.0
}

/// The median of `v` (0 for none).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// How far apart two calibrations are, as a share of the smaller; runs
/// whose calibrations are more than [`SAME_WORK`] apart asked for
/// different cpu work under one spec.
pub fn apart(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    if lo <= 0.0 {
        return f64::INFINITY;
    }
    hi / lo - 1.0
}

/// Whether two resolved plans ask a frame for the same work: the same
/// shape, io wait and share of cpu frames, and cpu iterations within
/// [`SAME_WORK`] of each other. `None` when they do; else why not.
pub fn different_work(a: &WorkPlan, b: &WorkPlan) -> Option<String> {
    if (a.mode, a.io_us, a.every) != (b.mode, b.io_us, b.every) || a.cpu_ratio != b.cpu_ratio {
        return Some(format!("`{}` vs `{}`", a.spec, b.spec));
    }
    (a.cpu_iters != b.cpu_iters && apart(a.cpu_iters as f64, b.cpu_iters as f64) > SAME_WORK).then(|| {
        format!(
            "{} vs {} kernel iterations per cpu frame (kernels calibrated at {:.1} and {:.1} per us)",
            a.cpu_iters,
            b.cpu_iters,
            a.iters_per_us.unwrap_or(0.0),
            b.iters_per_us.unwrap_or(0.0)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use workloads::WorkSpec;

    #[test]
    fn plans_ask_for_the_same_work_only_within_same_work() {
        let plan = |spec: &str, k: f64| WorkSpec::from_str(spec).unwrap().resolve(Some(k)).unwrap();
        let cases: &[(&str, f64, &str, f64, bool)] = &[
            // (spec A, calibration A, spec B, calibration B, the same work)
            ("cpu:5us", 200.0, "cpu:5us", 200.0, true),
            ("cpu:5us", 200.0, "cpu:5us", 203.0, true),
            ("cpu:5us", 257.8, "cpu:5us", 203.2, false), // two runs seen here
            (
                "mixed:cpu=5us,io=1ms,ratio=0.5",
                257.8,
                "mixed:cpu=5us,io=1ms,ratio=0.5",
                203.2,
                false,
            ),
            ("io:1ms", 257.8, "io:1ms", 203.2, true), // no cpu work: calibration moot
            ("none", 1.0, "none", 500.0, true),
            ("io:1ms", 200.0, "io:2ms", 200.0, false),
            ("io:1ms,every=20", 200.0, "io:1ms", 200.0, false),
            ("cpu:1000", 200.0, "cpu:1000", 300.0, true), // iterations given, not a duration
        ];
        for &(sa, ka, sb, kb, same) in cases {
            let why = different_work(&plan(sa, ka), &plan(sb, kb));
            assert_eq!(why.is_none(), same, "{sa}@{ka} vs {sb}@{kb}: {why:?}");
        }
    }

    #[test]
    fn the_median_of_the_rounds_is_kept() {
        let cases: &[(&[f64], f64)] = &[
            // (rounds, kept)
            (&[], 0.0),
            (&[200.0], 200.0),
            (&[200.0, 100.0, 210.0], 200.0), // a stalled round is not kept
            (&[200.0, 205.0, 400.0], 205.0), // nor a lucky one
            (&[200.0, 210.0], 205.0),
            (&[f64::NAN, 200.0, 210.0], 205.0),
        ];
        for (rounds, kept) in cases {
            let k =
                KernelCalibration::from_rounds(Machine::default(), String::new(), rounds.to_vec());
            assert_eq!(k.iters_per_us, *kept, "{rounds:?}");
        }
    }

    #[test]
    fn the_speed_spread_spans_calibration_and_checks_table() {
        let cal = |rounds: &[f64]| {
            KernelCalibration::from_rounds(Machine::default(), String::new(), rounds.to_vec())
        };
        let check = |rounds: &[f64]| SpeedCheck {
            at: String::new(),
            rounds: rounds.to_vec(),
        };
        let steady = [200.0; 11];
        let mut one_stall = [200.0; 11];
        one_stall[3] = 150.0; // a 20 ms round the host stalled
        let calibration = cal(&steady);
        // (calibration, checks, spread)
        let table: [(Option<&KernelCalibration>, Vec<SpeedCheck>, f64); 6] = [
            (None, vec![], 0.0),
            (Some(&calibration), vec![], 0.0),
            (Some(&calibration), vec![check(&steady)], 0.0),
            // A run 5% faster than the calibration spans both.
            (Some(&calibration), vec![check(&[210.0; 11])], 0.05),
            // One stalled round in 22 is trimmed.
            (Some(&calibration), vec![check(&one_stall)], 0.0),
            // Rounds spread within the calibration itself (seen here:
            // 205-216) count too: 10% trimmed of 11 is one at each end.
            (
                Some(&cal(&[
                    205.0, 205.0, 205.5, 206.0, 206.0, 207.0, 207.0, 210.0, 216.0, 216.0, 216.5,
                ])),
                vec![],
                216.0 / 205.0 - 1.0,
            ),
        ];
        for (i, (calibration, checks, want)) in table.into_iter().enumerate() {
            let got = speed_spread(calibration, &checks);
            assert!((got - want).abs() < 1e-9, "case {i}: {got} vs {want}");
        }
    }

    #[test]
    fn calibrations_further_apart_than_same_work_differ() {
        let cases: &[(f64, f64, bool)] = &[
            // (a, b, the same work)
            (200.0, 200.0, true),
            (200.0, 203.0, true),
            (203.0, 200.0, true),
            (257.8, 203.2, false), // two runs seen here, each calibrating anew
            (0.0, 200.0, false),
        ];
        for &(a, b, same) in cases {
            assert_eq!(apart(a, b) <= SAME_WORK, same, "{a} vs {b}");
        }
    }

    #[test]
    fn a_calibration_holds_only_for_its_machine_and_a_known_build() {
        let m = |h: &str, b: &str| Machine {
            hostname: h.into(),
            cpu_model: "cpu".into(),
            build: b.into(),
        };
        assert!(m("vm", "crc32:1").matches(&m("vm", "crc32:1")));
        assert!(!m("vm", "crc32:1").matches(&m("vm", "crc32:2")));
        assert!(!m("vm", "crc32:1").matches(&m("other", "crc32:1")));
        assert!(!m("vm", "unknown").matches(&m("vm", "unknown")));
    }
}
