//! How a client's frames arrive in time at its mean `--rate`
//! (`--arrival`): evenly spaced (`constant`, the default), as a Poisson
//! process (`poisson`: exponential gaps, each client's drawn from its own
//! stream of the run's seed, `crate::poisson`), or in bursts
//! (`burst:on=50ms,off=450ms`: each client sends a cycle's frames evenly
//! over its first `on`, at the peak rate `rate x (on + off) / on`, then
//! nothing for `off`; every client's cycle starts together, so the server
//! sees the whole fleet's burst at once). Due times stay exact: frame `i`
//! of a burst is due at `(i / n) x cycle + (i % n) x on / n` after the
//! client's phase, with `n` frames per cycle. Or replayed from a recorded
//! trace (`trace:FILE`, `crate::trace`), scaled to the mean rate.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::units::parse_duration;
use serde::{Deserialize, Serialize};

use crate::trace::{Trace, TraceError};

/// The arrival process of every client of a fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Arrival {
    /// One frame every `1 / rate`.
    #[default]
    Constant,
    /// Exponential gaps at the mean rate, each client's from its own
    /// stream keyed by the run's seed (`crate::poisson`).
    Poisson,
    /// Each cycle's frames within its first `on`, none for `off`.
    Burst {
        /// Sending part of each cycle.
        on: Duration,
        /// Silent part of each cycle.
        off: Duration,
    },
    /// A recorded trace replayed by every client from its own line,
    /// scaled to the mean rate (`crate::trace`).
    Trace(Arc<Trace>),
}

/// A burst cycle resolved against a rate: `per_cycle` frames evenly over
/// the first `on_ns` of every `cycle_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// Frames per cycle (at least 1).
    pub per_cycle: u64,
    /// The cycle, ns.
    pub cycle_ns: u64,
    /// Its sending part, ns.
    pub on_ns: u64,
}

impl Cycle {
    /// Offset of frame `i` from the client's first: whole cycles, then its
    /// place in the burst (integer ns, exact).
    pub fn offset(&self, i: u64) -> u64 {
        let (k, j) = (i / self.per_cycle, i % self.per_cycle);
        k * self.cycle_ns + (j as u128 * self.on_ns as u128 / self.per_cycle as u128) as u64
    }

    /// At most the number of frames whose offset is at or before `span`
    /// (and at least that number less 2): where to start counting.
    pub fn frames_near(&self, span: u64) -> u64 {
        let (k, r) = (span / self.cycle_ns, span % self.cycle_ns);
        let within = (r as u128 * self.per_cycle as u128 / self.on_ns as u128) as u64;
        k * self.per_cycle + within.min(self.per_cycle)
    }

    /// Frames per second while a burst is on.
    pub fn peak_hz(&self) -> f64 {
        self.per_cycle as f64 * 1e9 / self.on_ns as f64
    }
}

/// Why an arrival process does not parse or fit a rate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrivalError {
    /// Not one of the forms.
    #[error("`{0}` is not an arrival process: give `constant`, `poisson`, `burst:on=DUR,off=DUR` (e.g. burst:on=50ms,off=450ms) or `trace:FILE`")]
    Syntax(String),
    /// A trace that cannot be read or used.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// A burst whose sending part is empty.
    #[error("burst: `on` must be longer than 0")]
    EmptyBurst,
    /// Bursts need due times.
    #[error("--arrival {0} needs a --rate in frames per second (not `max`)")]
    Unpaced(Arrival),
    /// More frames than nanoseconds in a burst.
    #[error("--arrival {0} at {1} Hz would send more than one frame per ns while on")]
    TooDense(Arrival, u64),
}

impl Arrival {
    /// Whether this process can pace clients at `hz` frames per second
    /// (`None`: as fast as they can, `--rate max`).
    pub fn check(&self, hz: Option<u64>) -> Result<(), ArrivalError> {
        match (self, hz) {
            (Arrival::Constant, _) => Ok(()),
            (_, None) => Err(ArrivalError::Unpaced(self.clone())),
            (_, Some(hz)) => self.cycle(hz).map(|_| ()),
        }
    }

    /// This process at `hz` frames per second per client: `None` for
    /// constant spacing, else the burst cycle (`n` = the cycle's share of
    /// the rate, rounded, at least 1).
    pub fn cycle(&self, hz: u64) -> Result<Option<Cycle>, ArrivalError> {
        let Arrival::Burst { on, off } = *self else {
            return Ok(None);
        };
        let (on_ns, cycle_ns) = (on.as_nanos() as u64, (on + off).as_nanos() as u64);
        let per_cycle = ((hz as u128 * cycle_ns as u128 + 500_000_000) / 1_000_000_000).max(1);
        if per_cycle > on_ns as u128 {
            return Err(ArrivalError::TooDense(self.clone(), hz));
        }
        Ok(Some(Cycle {
            per_cycle: per_cycle as u64,
            cycle_ns,
            on_ns,
        }))
    }
}

impl Arrival {
    /// How a client sends at `hz` frames per second, in words, for a
    /// process other than constant spacing (`None` for that, or unpaced).
    pub fn describe(&self, hz: Option<u64>) -> Option<String> {
        let hz = hz?;
        match self {
            Arrival::Poisson => return Some(format!(
                "as a Poisson process (poisson): exponential gaps at a mean of {hz} frames/s, each client's from its own stream of the run's seed"
            )),
            Arrival::Trace(t) => return Some(format!(
                "replayed from the trace {} ({} arrivals, looped every {}, recorded at a mean of {:.0} frames/s), its times multiplied by {:.3} for a mean of {hz} frames/s, each client from its own line of it",
                t.path,
                t.len(),
                humantime::format_duration(Duration::from_nanos(t.period_ns())),
                t.mean_hz(),
                t.mean_hz() / hz as f64,
            )),
            _ => {}
        }
        let c = self.cycle(hz).ok().flatten()?;
        Some(format!(
            "in bursts ({self}): every {} each client sends {} frames evenly within its first {} ({:.0} frames/s), and every client's bursts come at once; the mean rate stays {hz} frames/s",
            humantime::format_duration(std::time::Duration::from_nanos(c.cycle_ns)),
            c.per_cycle,
            humantime::format_duration(std::time::Duration::from_nanos(c.on_ns)),
            c.peak_hz(),
        ))
    }
}

impl FromStr for Arrival {
    type Err = ArrivalError;
    fn from_str(s: &str) -> Result<Self, ArrivalError> {
        match s {
            "constant" => return Ok(Arrival::Constant),
            "poisson" => return Ok(Arrival::Poisson),
            _ => {}
        }
        if let Some(path) = s.strip_prefix("trace:") {
            return Ok(Arrival::Trace(Arc::new(Trace::load(path)?)));
        }
        let syntax = || ArrivalError::Syntax(s.to_string());
        let params = s.strip_prefix("burst:").ok_or_else(syntax)?;
        let (mut on, mut off) = (None, None);
        for part in params.split(',') {
            let (key, value) = part.split_once('=').ok_or_else(syntax)?;
            let d = parse_duration(value).map_err(|_| syntax())?;
            match key {
                "on" if on.is_none() => on = Some(d),
                "off" if off.is_none() => off = Some(d),
                _ => return Err(syntax()),
            }
        }
        let (on, off) = on.zip(off).ok_or_else(syntax)?;
        if on.is_zero() {
            return Err(ArrivalError::EmptyBurst);
        }
        Ok(Arrival::Burst { on, off })
    }
}

impl fmt::Display for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arrival::Constant => f.write_str("constant"),
            Arrival::Poisson => f.write_str("poisson"),
            Arrival::Burst { on, off } => write!(
                f,
                "burst:on={},off={}",
                humantime::format_duration(*on),
                humantime::format_duration(*off)
            ),
            Arrival::Trace(t) => write!(f, "trace:{}", t.path),
        }
    }
}

impl TryFrom<String> for Arrival {
    type Error = ArrivalError;
    fn try_from(s: String) -> Result<Self, ArrivalError> {
        s.parse()
    }
}

impl From<Arrival> for String {
    fn from(a: Arrival) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_processes_parse_and_print_back() {
        let ms = Duration::from_millis;
        let cases: &[(&str, Result<Arrival, ()>)] = &[
            ("constant", Ok(Arrival::Constant)),
            ("poisson", Ok(Arrival::Poisson)),
            (
                "burst:on=50ms,off=450ms",
                Ok(Arrival::Burst {
                    on: ms(50),
                    off: ms(450),
                }),
            ),
            (
                "burst:off=1s,on=10ms",
                Ok(Arrival::Burst {
                    on: ms(10),
                    off: ms(1000),
                }),
            ),
            (
                "burst:on=1ms,off=0s",
                Ok(Arrival::Burst {
                    on: ms(1),
                    off: ms(0),
                }),
            ),
            ("burst:on=0s,off=1s", Err(())),
            ("burst:on=50ms", Err(())),
            ("burst:on=50ms,off=1s,on=2ms", Err(())),
            ("burst:on=fast,off=1s", Err(())),
            ("poisson-ish", Err(())),
            ("trace:/no/such.trace", Err(())),
        ];
        for (text, want) in cases {
            let got = text.parse::<Arrival>();
            assert_eq!(got.clone().map_err(|_| ()), *want, "{text}");
            if let Ok(a) = got {
                assert_eq!(
                    a.to_string().parse::<Arrival>(),
                    Ok(a),
                    "{text} prints back"
                );
            }
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/traces/example.trace");
        let trace: Arrival = format!("trace:{path}").parse().expect("the example");
        assert_eq!(trace.to_string().parse::<Arrival>(), Ok(trace.clone()));
        assert!(trace.check(Some(10_000)).is_ok() && trace.check(None).is_err());
        let said = trace.describe(Some(10_000)).expect("described");
        assert!(said.contains("2010 arrivals"), "{said}");
    }

    /// (on, off, rate) -> frames per cycle, peak rate; the mean stays the
    /// rate (to rounding of the cycle's share).
    #[test]
    fn a_burst_keeps_the_mean_rate_at_its_stated_peak() {
        let cases = [
            ((50, 450), 10_000, 5_000, 100_000.0),
            ((1, 0), 10_000, 10, 10_000.0),
            ((1, 9), 100, 1, 1_000.0),
        ];
        for ((on, off), hz, n, peak) in cases {
            let a = Arrival::Burst {
                on: Duration::from_millis(on),
                off: Duration::from_millis(off),
            };
            let c = a.cycle(hz).expect("fits").expect("a burst");
            assert_eq!(c.per_cycle, n, "{a}");
            assert!((c.peak_hz() - peak).abs() < 1e-6, "{a}: {}", c.peak_hz());
        }
        assert_eq!(Arrival::Constant.cycle(10_000), Ok(None));
        let dense = Arrival::Burst {
            on: Duration::from_nanos(10),
            off: Duration::from_secs(1),
        };
        assert!(dense.cycle(1_000).is_err());
    }

    /// Offsets rise, bursts hold `n` frames `on / n` apart, a cycle starts
    /// every `on + off`, and `frames_near` never overshoots the count.
    #[test]
    fn burst_offsets_are_exact_and_counted_from_below() {
        let c = Cycle {
            per_cycle: 3,
            cycle_ns: 1_000,
            on_ns: 100,
        };
        let offsets: Vec<u64> = (0..7).map(|i| c.offset(i)).collect();
        assert_eq!(offsets, [0, 33, 66, 1_000, 1_033, 1_066, 2_000]);
        for span in (0..3_000).step_by(7) {
            let count = (0..100).filter(|&i| c.offset(i) <= span).count() as u64;
            let near = c.frames_near(span);
            assert!(
                near <= count && count <= near + 2,
                "{span}: {near} vs {count}"
            );
        }
    }
}
