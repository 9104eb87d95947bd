//! Work-mix specifications (`none`, `cpu:ITERS|DUR`, `io:MICROS|DUR`,
//! `call:MICROS|DUR`, `mixed[:cpu=..,io=..,ratio=R]`, each with an optional `every=K`) and the
//! concrete per-frame plan they resolve to.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kernel::splitmix_step;
use crate::wire::WorkKind;

/// A cpu amount as written: iterations, or a duration converted with the
/// machine's calibration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CpuAmount {
    /// Reference-kernel iterations.
    Iters(u32),
    /// Wall time on this machine's CPU.
    Time(Duration),
}

/// The kinds a spec can ask for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpecKind {
    /// No work.
    None,
    /// Reference-kernel work on every work frame.
    Cpu(CpuAmount),
    /// An io wait in microseconds on every work frame.
    Io(u32),
    /// A real call to the downstream responder, answering after this many
    /// microseconds, on every work frame.
    Call(u32),
    /// Work frames are cpu with probability `ratio`, else io, chosen
    /// deterministically from the sequence number.
    Mixed {
        /// Cpu amount.
        cpu: CpuAmount,
        /// Io wait, microseconds.
        io_us: u32,
        /// Share of work frames that are cpu, 0..=1.
        ratio: f64,
    },
}

/// A parsed `--work` value.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkSpec {
    /// What work frames do.
    pub kind: SpecKind,
    /// One frame in `every` carries work (the one whose seq is a multiple of
    /// it); the others carry none. 1 = every frame.
    pub every: u32,
    text: String,
}

/// Why a `--work` value was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    /// The text does not follow the grammar.
    #[error("invalid work spec `{0}`: {1}; expected none | cpu:ITERS|DUR | io:MICROS|DUR | call:MICROS|DUR | mixed[:cpu=ITERS|DUR,io=MICROS|DUR,ratio=R] (each may add ,every=K)")]
    Invalid(String, String),
    /// A cpu duration was given but no calibration is available.
    #[error("work spec `{0}` gives cpu work as a duration, which needs a calibration")]
    NeedsCalibration(String),
}

impl fmt::Display for WorkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn invalid(text: &str, why: impl Into<String>) -> SpecError {
    SpecError::Invalid(text.to_string(), why.into())
}

fn parse_cpu(text: &str, v: &str) -> Result<CpuAmount, SpecError> {
    if let Ok(n) = v.parse::<u32>() {
        return Ok(CpuAmount::Iters(n));
    }
    humantime::parse_duration(v)
        .map(CpuAmount::Time)
        .map_err(|e| invalid(text, format!("cpu amount `{v}`: {e}")))
}

fn parse_io(text: &str, v: &str) -> Result<u32, SpecError> {
    if let Ok(n) = v.parse::<u32>() {
        return Ok(n);
    }
    let d =
        humantime::parse_duration(v).map_err(|e| invalid(text, format!("io wait `{v}`: {e}")))?;
    u32::try_from(d.as_micros()).map_err(|_| invalid(text, "io wait too long"))
}

impl FromStr for WorkSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let (head, rest) = text.split_once(':').unwrap_or((text, ""));
        let mut every = 1u32;
        let mut cpu = CpuAmount::Iters(1000);
        let mut io_us = 1000u32;
        let mut ratio = 0.5f64;
        let mut amount: Option<&str> = None;
        for part in rest.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("every", v)) => {
                    every = v
                        .parse()
                        .ok()
                        .filter(|&k| k >= 1)
                        .ok_or_else(|| invalid(text, "every must be an integer >= 1"))?
                }
                Some(("cpu", v)) if head == "mixed" => cpu = parse_cpu(text, v)?,
                Some(("io", v)) if head == "mixed" => io_us = parse_io(text, v)?,
                Some(("ratio", v)) if head == "mixed" => {
                    ratio = v
                        .parse()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| invalid(text, "ratio must be between 0 and 1"))?
                }
                Some((k, _)) => return Err(invalid(text, format!("unknown option `{k}`"))),
                None if amount.is_none() && head != "mixed" => amount = Some(part),
                None => return Err(invalid(text, format!("unexpected `{part}`"))),
            }
        }
        let kind = match (head, amount) {
            ("none", None) => SpecKind::None,
            ("cpu", Some(v)) => SpecKind::Cpu(parse_cpu(text, v)?),
            ("io", Some(v)) => SpecKind::Io(parse_io(text, v)?),
            ("call", Some(v)) => SpecKind::Call(parse_io(text, v)?),
            ("mixed", None) => SpecKind::Mixed { cpu, io_us, ratio },
            ("cpu" | "io" | "call", None) => return Err(invalid(text, "missing amount")),
            _ => return Err(invalid(text, format!("unknown work kind `{head}`"))),
        };
        Ok(WorkSpec {
            kind,
            every,
            text: text.to_string(),
        })
    }
}

impl WorkSpec {
    /// True when a cpu amount is a duration, so a calibration is needed.
    pub fn needs_calibration(&self) -> bool {
        matches!(
            self.kind,
            SpecKind::Cpu(CpuAmount::Time(_))
                | SpecKind::Mixed {
                    cpu: CpuAmount::Time(_),
                    ..
                }
        )
    }

    /// Resolves durations with `iters_per_us` into a concrete plan.
    pub fn resolve(&self, iters_per_us: Option<f64>) -> Result<WorkPlan, SpecError> {
        let iters = |c: CpuAmount| match c {
            CpuAmount::Iters(n) => Ok(n),
            CpuAmount::Time(d) => iters_per_us
                .map(|k| {
                    (d.as_nanos() as f64 / 1000.0 * k)
                        .round()
                        .min(u32::MAX as f64) as u32
                })
                .ok_or_else(|| SpecError::NeedsCalibration(self.text.clone())),
        };
        let (mode, cpu_iters, io_us, cpu_ratio) = match self.kind {
            SpecKind::None => (PlanMode::None, 0, 0, 0.0),
            SpecKind::Cpu(c) => (PlanMode::Cpu, iters(c)?, 0, 1.0),
            SpecKind::Io(us) => (PlanMode::Io, 0, us, 0.0),
            SpecKind::Call(us) => (PlanMode::Call, 0, us, 0.0),
            SpecKind::Mixed { cpu, io_us, ratio } => (PlanMode::Mixed, iters(cpu)?, io_us, ratio),
        };
        Ok(WorkPlan {
            spec: self.text.clone(),
            mode,
            cpu_iters,
            io_us,
            cpu_ratio,
            every: self.every,
            iters_per_us,
        })
    }
}

/// The resolved shape of a work plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanMode {
    /// No work.
    None,
    /// Cpu only.
    Cpu,
    /// Io only.
    Io,
    /// Downstream calls only (their delay in `io_us`).
    Call,
    /// Cpu and io.
    Mixed,
}

/// A work spec with every amount concrete: decides each frame's work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkPlan {
    /// The spec as the user wrote it.
    pub spec: String,
    /// Which kinds occur.
    pub mode: PlanMode,
    /// Kernel iterations of a cpu frame.
    pub cpu_iters: u32,
    /// Wait of an io frame, or delay of a call frame, microseconds.
    pub io_us: u32,
    /// Share of work frames that are cpu.
    pub cpu_ratio: f64,
    /// One frame in `every` carries work.
    pub every: u32,
    /// The calibration used to convert cpu durations, if any.
    pub iters_per_us: Option<f64>,
}

impl WorkPlan {
    /// The plan that asks for no work.
    pub fn none() -> Self {
        WorkSpec::from_str("none")
            .and_then(|s| s.resolve(None))
            .expect("`none` is valid")
    }

    /// Mean io wait (or call delay) per frame, microseconds: the wait times
    /// the share of frames that ask for one (Little's law turns it into waits in flight).
    pub fn mean_io_us(&self) -> f64 {
        let io_share = match self.mode {
            PlanMode::Io | PlanMode::Call => 1.0,
            PlanMode::Mixed => 1.0 - self.cpu_ratio,
            PlanMode::None | PlanMode::Cpu => 0.0,
        };
        io_share * self.io_us as f64 / self.every.max(1) as f64
    }

    /// Work kind and amount of frame `seq`; the same every run.
    #[inline]
    pub fn work_for(&self, seq: u64) -> (WorkKind, u32) {
        if self.mode == PlanMode::None || (self.every > 1 && !seq.is_multiple_of(self.every as u64))
        {
            return (WorkKind::None, 0);
        }
        let cpu = match self.mode {
            PlanMode::Call => return (WorkKind::Call, self.io_us),
            PlanMode::Cpu => true,
            PlanMode::Io => false,
            _ => (splitmix_step(seq) as f64) < self.cpu_ratio * u64::MAX as f64,
        };
        if cpu {
            (WorkKind::Cpu, self.cpu_iters)
        } else {
            (WorkKind::Io, self.io_us)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(s: &str, cal: Option<f64>) -> WorkPlan {
        s.parse::<WorkSpec>().unwrap().resolve(cal).unwrap()
    }

    #[test]
    fn mean_io_wait_per_frame() {
        // (spec, mean io us per frame)
        let table = [
            ("none", 0.0),
            ("cpu:500", 0.0),
            ("io:1ms", 1000.0),
            ("io:1ms,every=20", 50.0),
            ("call:1ms,every=20", 50.0),
            ("mixed:cpu=5,io=1ms,ratio=0.5,every=10", 50.0),
        ];
        for (spec, want) in table {
            assert!(
                (plan(spec, None).mean_io_us() - want).abs() < 1e-9,
                "{spec}"
            );
        }
    }

    #[test]
    fn parses_each_form() {
        assert_eq!(plan("none", None).work_for(3), (WorkKind::None, 0));
        assert_eq!(plan("cpu:500", None).work_for(3), (WorkKind::Cpu, 500));
        assert_eq!(plan("io:250", None).work_for(3), (WorkKind::Io, 250));
        assert_eq!(plan("io:1ms", None).work_for(3), (WorkKind::Io, 1000));
        assert_eq!(plan("call:1ms", None).work_for(3), (WorkKind::Call, 1000));
        let calls = plan("call:500,every=2", None);
        assert_eq!(calls.work_for(4), (WorkKind::Call, 500));
        assert_eq!(calls.work_for(5), (WorkKind::None, 0));
        assert_eq!(
            plan("cpu:20us", Some(10.0)).work_for(0),
            (WorkKind::Cpu, 200)
        );
        let every = plan("io:1ms,every=4", None);
        assert_eq!(every.work_for(4), (WorkKind::Io, 1000));
        assert_eq!(every.work_for(5), (WorkKind::None, 0));
    }

    #[test]
    fn mixed_is_deterministic_and_near_its_ratio() {
        let p = plan("mixed:cpu=100,io=50,ratio=0.25", None);
        let cpu = (0..10_000u64)
            .filter(|&s| p.work_for(s).0 == WorkKind::Cpu)
            .count();
        assert!((2_200..2_800).contains(&cpu), "cpu share {cpu}");
        assert_eq!(p.work_for(17), p.work_for(17));
        assert_eq!(plan("mixed", None).cpu_ratio, 0.5);
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        for bad in [
            "cpu",
            "call",
            "call:1ms,cpu=5",
            "gpu:1",
            "mixed:ratio=2",
            "io:abc",
            "none:every=0",
            "cpu:1,x=2",
        ] {
            assert!(bad.parse::<WorkSpec>().is_err(), "{bad} accepted");
        }
        let needs = "cpu:5us".parse::<WorkSpec>().unwrap();
        assert!(needs.needs_calibration());
        assert!(matches!(
            needs.resolve(None),
            Err(SpecError::NeedsCalibration(_))
        ));
    }
}
