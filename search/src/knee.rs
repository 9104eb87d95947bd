//! The search for a knee on an abstract probe: an exponential ramp (sized by
//! how busy the server was) until a probe fails, then bisection to within a
//! tolerance. Pure, so its rules are tested on fake probe functions.

use record::capacity::{LimitedBy, Outcome, Params, MAX_GROWTH, MIN_GROWTH, TARGET_UTIL};

/// A probe's outcome plus how busy the server was (share of its CPUs,
/// 0..1), which sizes the next ramp step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    /// The outcome.
    pub outcome: Outcome,
    /// Server CPU over the window as a share of the server's CPUs.
    pub util: Option<f64>,
    /// A failure that one stall of a shared machine can cause (a valid
    /// cell over its latency bound, a late generator): it counts only if a
    /// second probe at the same size says the same.
    pub soft: bool,
}

/// The search's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Largest fleet size that passed (0: not even one client).
    pub capacity: u32,
    /// Smallest size above it that did not pass (`None`: the search reached
    /// the generator's bound).
    pub next: Option<u32>,
    /// What stopped the search.
    pub limited_by: LimitedBy,
}

/// The next ramp size above a pass at `lo` with server utilisation `util`.
fn ramp(lo: u32, util: Option<f64>, max: u32) -> u32 {
    let growth = match util {
        Some(u) if u > 0.0 => (TARGET_UTIL / u).clamp(MIN_GROWTH, MAX_GROWTH),
        _ => MIN_GROWTH,
    };
    ((lo as f64 * growth).round() as u32).clamp(lo + 1, max)
}

/// Runs the search: the first probe at `seed` (or 1 client), up by the
/// ramp while probes pass, down by halves while they fail, then bisection
/// between the largest pass and the smallest non-pass until the gap is
/// within the tolerance. A soft failure is probed once more: a pass then
/// counts as a pass, otherwise the failure stands (the server's, if either
/// probe failed on the server's account). Every probe size is in `1..=max_clients`; the number of
/// probes is logarithmic in `max_clients`.
pub fn search<E>(
    params: &Params,
    seed: Option<u32>,
    mut probe: impl FnMut(u32) -> Result<Probe, E>,
) -> Result<Found, E> {
    let max = params.max_clients.max(1);
    let mut lo = 0u32;
    let mut lo_util = None;
    // The smallest failing size on the server's account and on no one's,
    // each with the outcome that failed it.
    let mut fail: Option<(u32, Outcome)> = None;
    let mut other: Option<(u32, Outcome)> = None;
    let lower = |at: &mut Option<(u32, Outcome)>, n: u32, o: Outcome| {
        if at.is_none_or(|(f, _)| n < f) {
            *at = Some((n, o));
        }
    };
    let mut n = seed.unwrap_or(1).clamp(1, max);
    loop {
        let mut p = probe(n)?;
        if p.outcome != Outcome::Pass && p.soft {
            // The retry's pass overrides a soft failure; two non-passes
            // stay the server's if either was.
            let again = probe(n)?;
            if again.outcome == Outcome::Pass || p.outcome.not_the_servers() {
                p = again;
            }
        }
        match p.outcome {
            Outcome::Pass if n > lo => {
                lo = n;
                lo_util = p.util;
            }
            Outcome::Pass => {}
            o if o.servers() => lower(&mut fail, n, o),
            o => lower(&mut other, n, o),
        }
        let ceiling = match (fail, other) {
            (Some(f), Some(g)) => Some(if f.0 <= g.0 { f } else { g }),
            (f, g) => f.or(g),
        };
        n = match ceiling {
            None if lo >= max => {
                return Ok(Found {
                    capacity: lo,
                    next: None,
                    limited_by: LimitedBy::Generator,
                })
            }
            None => ramp(lo, lo_util, max),
            Some((c, _)) if lo == 0 && c > 1 => c / 2,
            Some((c, o)) if c - lo.min(c) <= ((params.tolerance * lo as f64) as u32).max(1) => {
                let by = LimitedBy::of(o);
                return Ok(Found {
                    capacity: lo,
                    next: by.servers().then_some(c),
                    limited_by: by,
                });
            }
            Some((c, _)) => lo + (c - lo) / 2,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn params(max: u32, tolerance: f64) -> Params {
        Params {
            max_clients: max,
            tolerance,
        }
    }

    /// A server that passes up to `cap` clients, with a fleet that paces
    /// up to `gen_cap`; utilisation grows linearly to 1 at `cap`.
    fn server(cap: u32, gen_cap: u32) -> impl FnMut(u32) -> Result<Probe, ()> {
        move |n| {
            let outcome = if n > gen_cap {
                Outcome::Generator
            } else if n <= cap {
                Outcome::Pass
            } else {
                Outcome::Fail
            };
            Ok(Probe {
                outcome,
                util: Some((n as f64 / cap.max(1) as f64).min(1.0)),
                soft: false,
            })
        }
    }

    #[test]
    fn finds_a_known_capacity() {
        // (capacity, generator bound, search max, tolerance, seed,
        //  want capacity, want limited_by)
        let table = [
            (4, 1000, 200, 0.05, None, 4, LimitedBy::Server),
            (1, 1000, 200, 0.05, None, 1, LimitedBy::Server),
            (0, 1000, 200, 0.05, None, 0, LimitedBy::Server),
            (37, 1000, 200, 0.0, None, 37, LimitedBy::Server),
            (100, 1000, 200, 0.0, Some(40), 100, LimitedBy::Server),
            (9, 1000, 200, 0.0, Some(120), 9, LimitedBy::Server),
            // The search bound is the generator's.
            (500, 1000, 150, 0.05, None, 150, LimitedBy::Generator),
            // The fleet fails before the server does.
            (500, 60, 200, 0.0, None, 60, LimitedBy::Generator),
        ];
        for (cap, gen, max, tol, seed, want, by) in table {
            let mut probes = Vec::new();
            let mut probe = server(cap, gen);
            let found = search(&params(max, tol), seed, |n| {
                probes.push(n);
                probe(n)
            })
            .unwrap();
            assert_eq!(found.capacity, want, "cap {cap} gen {gen}: {probes:?}");
            assert_eq!(found.limited_by, by, "cap {cap} gen {gen}: {probes:?}");
            assert!(probes.iter().all(|&n| (1..=max).contains(&n)), "{probes:?}");
            assert!(probes.len() <= 20, "{probes:?}");
            if by == LimitedBy::Server {
                assert_eq!(found.next, Some(want + 1), "exact with tolerance 0");
            } else {
                assert_eq!(found.next, None);
            }
        }
    }

    #[test]
    fn stops_within_the_tolerance() {
        for cap in [20u32, 45, 80, 130] {
            let found = search(&params(200, 0.05), None, server(cap, 1000)).unwrap();
            let next = found.next.unwrap();
            assert!(found.capacity <= cap && next > cap, "{cap}: {found:?}");
            assert!(
                next - found.capacity <= ((0.05 * found.capacity as f64) as u32).max(1),
                "{cap}: {found:?}"
            );
        }
    }

    #[test]
    fn a_busy_server_ramps_by_doubling_an_idle_one_faster() {
        // Saturated at once: doubling. Idle: up to 16x per step.
        assert_eq!(ramp(10, Some(0.9), 1000), 20);
        assert_eq!(ramp(10, Some(0.01), 1000), 160);
        assert_eq!(ramp(10, Some(0.2), 1000), 40);
        assert_eq!(ramp(10, None, 1000), 20);
        assert_eq!(ramp(100, Some(0.01), 150), 150);
        assert_eq!(ramp(1, Some(1.0), 150), 2);
    }

    #[test]
    fn noisy_probes_still_end_between_a_pass_and_a_failure() {
        // A flaky knee: sizes near the capacity pass or fail by a fixed
        // pseudo-random pattern; the answer must be a size that passed,
        // the next one a size that failed, and each probed.
        for seed in 0..50u64 {
            let mut seen: HashMap<u32, Outcome> = HashMap::new();
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let found = search(&params(200, 0.05), None, |n| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let outcome = if n <= 25 || (n <= 35 && state % 2 == 0) {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                };
                seen.insert(n, outcome);
                Ok::<_, ()>(Probe {
                    outcome,
                    util: None,
                    soft: false,
                })
            })
            .unwrap();
            assert!((25..=35).contains(&found.capacity), "{seed}: {found:?}");
            assert_eq!(seen.get(&found.capacity), Some(&Outcome::Pass));
            let next = found.next.unwrap();
            assert_eq!(seen.get(&next), Some(&Outcome::Fail), "{seed}");
        }
    }

    #[test]
    fn a_soft_failure_counts_only_when_it_repeats() {
        // Capacity 30; the first probe at 8 and at 24 stalls once.
        let mut stalls = vec![8u32, 24];
        let mut probes = Vec::new();
        let found = search(&params(200, 0.0), None, |n| {
            probes.push(n);
            let stalled = stalls.first() == Some(&n);
            if stalled {
                stalls.remove(0);
            }
            Ok::<_, ()>(Probe {
                outcome: if n <= 30 && !stalled {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                },
                util: None,
                soft: n < 40, // an SLO miss, not an overload
            })
        })
        .unwrap();
        assert_eq!(found.capacity, 30, "{probes:?}");
        assert_eq!(probes.iter().filter(|&&n| n == 8).count(), 2, "{probes:?}");
        // A hard failure (an overload) is believed at once.
        let mut probes = Vec::new();
        search(&params(200, 0.0), None, |n| {
            probes.push(n);
            Ok::<_, ()>(Probe {
                outcome: if n <= 30 {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                },
                util: None,
                soft: false,
            })
        })
        .unwrap();
        let mut sorted = probes.clone();
        sorted.dedup();
        assert_eq!(sorted, probes, "no size probed twice in a row");
    }

    #[test]
    fn a_server_failure_retried_into_a_late_generator_stays_the_servers() {
        let mut seen: HashMap<u32, u32> = HashMap::new();
        let found = search(&params(200, 0.0), None, |n| {
            let k = seen.entry(n).or_insert(0);
            *k += 1;
            let outcome = match (n, *k) {
                (0..=5, _) => Outcome::Pass,
                (6, 1) => Outcome::Fail,
                (6, _) => Outcome::Generator,
                _ => Outcome::Fail,
            };
            Ok::<_, ()>(Probe {
                outcome,
                util: None,
                soft: true,
            })
        })
        .unwrap();
        assert_eq!(
            (found.capacity, found.next, found.limited_by),
            (5, Some(6), LimitedBy::Server)
        );
    }

    #[test]
    fn a_crash_or_a_stalled_machine_ends_the_search_as_what_it_was() {
        // (outcome above 10 clients, limited by, next)
        let table = [
            (Outcome::ServerFailed, LimitedBy::ServerFailed, Some(11)),
            (Outcome::Machine, LimitedBy::Machine, None),
            (Outcome::Generator, LimitedBy::Generator, None),
            (Outcome::Fail, LimitedBy::Server, Some(11)),
        ];
        for (above, by, next) in table {
            let found = search(&params(200, 0.0), None, |n| {
                Ok::<_, ()>(Probe {
                    outcome: if n <= 10 { Outcome::Pass } else { above },
                    util: None,
                    soft: false,
                })
            })
            .unwrap();
            assert_eq!(
                (found.capacity, found.limited_by, found.next),
                (10, by, next),
                "{above:?}"
            );
        }
        // A server that dies at every size: "server failed", never the
        // generator's, at 0 clients.
        let found = search(&params(200, 0.05), None, |_| {
            Ok::<_, ()>(Probe {
                outcome: Outcome::ServerFailed,
                util: None,
                soft: false,
            })
        })
        .unwrap();
        assert_eq!(
            (found.capacity, found.limited_by),
            (0, LimitedBy::ServerFailed)
        );
    }

    #[test]
    fn a_generator_limit_is_never_called_the_servers() {
        // Generator-limited probes mixed with a server that never fails.
        let found = search(&params(200, 0.05), None, |n| {
            Ok::<_, ()>(Probe {
                outcome: if n >= 48 {
                    Outcome::Generator
                } else {
                    Outcome::Pass
                },
                util: Some(0.1),
                soft: false,
            })
        })
        .unwrap();
        assert_eq!(found.limited_by, LimitedBy::Generator);
        assert_eq!(found.next, None);
        assert!((45..48).contains(&found.capacity), "{found:?}");
        // A server failure below the generator's limit is the server's.
        let found = search(&params(200, 0.0), None, |n| {
            Ok::<_, ()>(Probe {
                outcome: match n {
                    0..=20 => Outcome::Pass,
                    21..=47 => Outcome::Fail,
                    _ => Outcome::Generator,
                },
                util: Some(0.01),
                soft: false,
            })
        })
        .unwrap();
        assert_eq!((found.capacity, found.limited_by), (20, LimitedBy::Server));
    }
}
