//! A recorded arrival trace (`--arrival trace:FILE`): one arrival time per
//! line in integer nanoseconds from any origin, non-decreasing, `#` starting
//! a comment, blank lines skipped. The trace is one stream that every client
//! replays: client `c` of `clients` starts at line `c x n / clients` (so
//! clients are not in lockstep), and the trace loops with a period of its
//! span plus its mean gap. Time is scaled so the trace's mean rate is the
//! run's `--rate` (its shape kept: a trace recorded at the rate asked for is
//! replayed as recorded); due times stay exact integers.

use std::path::Path;
use std::sync::Arc;

/// Most arrivals a trace may hold (80 MB of due times in memory).
pub const MAX_ARRIVALS: usize = 10_000_000;
/// Largest trace file read, bytes.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Why a trace cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The file cannot be read.
    #[error("cannot read trace {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// The system's reason.
        why: String,
    },
    /// A line that is not an arrival time.
    #[error("trace {path}, line {line}: {why} (each line is one arrival time in integer ns, non-decreasing; `#` starts a comment)")]
    Line {
        /// The file.
        path: String,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// Too few arrivals, too many, or no time between them.
    #[error("trace {path}: {why}")]
    Shape {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

/// A trace's arrival times, from its first.
#[derive(Debug, PartialEq, Eq)]
pub struct Trace {
    /// The file, as given.
    pub path: String,
    /// Arrival times from the first (the first is 0), ns.
    times: Vec<u64>,
    /// The loop's period: the span plus the mean gap, ns.
    period_ns: u64,
}

impl Trace {
    /// Reads and checks the trace at `path`.
    pub fn load(path: &str) -> Result<Trace, TraceError> {
        let read = |why: String| TraceError::Read {
            path: path.to_string(),
            why,
        };
        let len = std::fs::metadata(Path::new(path))
            .map_err(|e| read(e.to_string()))?
            .len();
        if len > MAX_FILE_BYTES {
            return Err(read(format!(
                "{len} bytes, more than the {MAX_FILE_BYTES} a trace may have"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        Trace::parse(path, &text)
    }

    /// The trace in `text` (read from `path`).
    pub fn parse(path: &str, text: &str) -> Result<Trace, TraceError> {
        let mut times: Vec<u64> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let bad = |why: String| TraceError::Line {
                path: path.to_string(),
                line: n + 1,
                why,
            };
            let body = line.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let t: u64 = body
                .parse()
                .map_err(|_| bad(format!("`{body}` is not a whole number of ns")))?;
            if let Some(&last) = times.last() {
                if t < last {
                    return Err(bad(format!("{t} comes before the line above ({last})")));
                }
            }
            if times.len() == MAX_ARRIVALS {
                return Err(bad(format!("more than {MAX_ARRIVALS} arrivals")));
            }
            times.push(t);
        }
        let shape = |why: &str| TraceError::Shape {
            path: path.to_string(),
            why: why.to_string(),
        };
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return Err(shape("no arrival times"));
        };
        if times.len() < 2 || last == first {
            return Err(shape("needs at least two different arrival times"));
        }
        for t in &mut times {
            *t -= first;
        }
        let span = last - first;
        let n = times.len() as u64;
        Ok(Trace {
            path: path.to_string(),
            period_ns: span + span.div_ceil(n - 1),
            times,
        })
    }

    /// Arrivals in one pass of the trace.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether it has no arrivals (never: a trace has at least two).
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The loop's period, ns.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// Its mean rate, arrivals per second.
    pub fn mean_hz(&self) -> f64 {
        self.times.len() as f64 * 1e9 / self.period_ns as f64
    }

    /// Arrival `k` of the looped trace, in the trace's own ns.
    fn raw(&self, k: u64) -> u64 {
        let n = self.times.len() as u64;
        (k / n) * self.period_ns + self.times[(k % n) as usize]
    }
}

/// A trace replayed at a client's mean rate.
#[derive(Clone, Debug)]
pub struct Replay {
    trace: Arc<Trace>,
    /// Trace ns x `num / den` = replayed ns.
    num: u128,
    den: u128,
}

impl Replay {
    /// `trace` scaled to a mean of `hz` frames per second.
    pub fn new(trace: Arc<Trace>, hz: u64) -> Self {
        Replay {
            num: trace.times.len() as u128 * 1_000_000_000,
            den: trace.period_ns as u128 * hz.max(1) as u128,
            trace,
        }
    }

    /// How much slower than recorded the trace is replayed (1: as recorded).
    pub fn stretch(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// The line the client at `index` of `clients` starts at.
    pub fn start(&self, index: u32, clients: u64) -> u64 {
        index as u64 * self.trace.times.len() as u64 / clients.max(1)
    }

    /// Offset of frame `i` of a client starting at line `start`.
    pub fn offset(&self, start: u64, i: u64) -> u64 {
        let raw = self.trace.raw(start + i) - self.trace.raw(start);
        (raw as u128 * self.num / self.den) as u64
    }

    /// At most the number of frames, of a client starting at line `start`,
    /// whose offset is at or before `span`.
    pub fn frames_near(&self, start: u64, span: u64) -> u64 {
        // Trace ns at or below which every arrival is within `span`.
        let raw_span = (span as u128 * self.den / self.num) as u64;
        let until = self.trace.raw(start).saturating_add(raw_span);
        let t = &self.trace;
        let (loops, rest) = (until / t.period_ns, until % t.period_ns);
        let within = t.times.partition_point(|&x| x <= rest) as u64;
        (loops * t.times.len() as u64 + within).saturating_sub(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrivals and period of a good trace, or a part of the error.
    type Parsed = Result<(usize, u64), &'static str>;

    /// Good traces and each way a trace can be wrong.
    #[test]
    fn traces_parse_or_say_which_line_is_wrong() {
        let cases: &[(&str, Parsed)] = &[
            ("100\n200\n400\n", Ok((3, 450))),
            ("# header\n\n5 # first\n5\n15\n", Ok((3, 15))),
            ("1\n3\n", Ok((2, 4))),
            ("", Err("no arrival times")),
            ("7\n7\n", Err("at least two")),
            ("10\n5\n", Err("line 2")),
            ("10\nten\n", Err("line 2")),
            ("-1\n5\n", Err("line 1")),
            ("1.5\n3\n", Err("line 1")),
        ];
        for (text, want) in cases {
            let got = Trace::parse("t", text);
            match (got, want) {
                (Ok(t), Ok((n, period))) => {
                    assert_eq!((t.len(), t.period_ns()), (*n, *period), "{text:?}");
                }
                (Err(e), Err(part)) => {
                    assert!(e.to_string().contains(part), "{text:?}: {e}");
                }
                (got, want) => panic!("{text:?}: {got:?}, wanted {want:?}"),
            }
        }
    }

    /// Offsets follow the trace from each client's line, loop with the
    /// period, scale to the rate, and `frames_near` counts from below.
    #[test]
    fn replays_follow_the_trace_scaled_to_the_rate() {
        // 4 arrivals over 300 ns: period 400 ns, mean 10 MHz.
        let trace = Arc::new(Trace::parse("t", "0\n100\n100\n300\n").unwrap());
        let as_recorded = Replay::new(trace.clone(), 10_000_000);
        assert_eq!(as_recorded.stretch(), 1.0);
        let offsets: Vec<u64> = (0..6).map(|i| as_recorded.offset(0, i)).collect();
        assert_eq!(offsets, [0, 100, 100, 300, 400, 500]);
        let from_line_3: Vec<u64> = (0..3).map(|i| as_recorded.offset(3, i)).collect();
        assert_eq!(from_line_3, [0, 100, 200]);
        assert_eq!(
            (0..4).map(|c| as_recorded.start(c, 4)).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        let half = Replay::new(trace, 5_000_000);
        assert_eq!(half.offset(0, 3), 600);
        assert_eq!(half.offset(1, 4), 800, "one period on, at half the rate");
        for replay in [&as_recorded, &half] {
            for start in 0..4 {
                for span in (0..3_000).step_by(13) {
                    let count = (0..100)
                        .filter(|&i| replay.offset(start, i) <= span)
                        .count();
                    let near = replay.frames_near(start, span);
                    assert!(near <= count as u64, "{start} {span}: {near} vs {count}");
                    assert!(
                        near + 1 >= count as u64,
                        "{start} {span}: {near} vs {count}"
                    );
                }
            }
        }
    }

    /// The example trace checked in parses (the README's runs use it).
    #[test]
    fn the_example_trace_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/traces/example.trace");
        let t = Trace::load(path).expect("the example trace");
        assert!(t.len() >= 1_000, "{} arrivals", t.len());
    }
}
