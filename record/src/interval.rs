//! The capacity interval from repeated probes: its low end is the largest
//! fleet size that passed every time it was probed, its high end one below
//! the smallest size above that and above every pass that failed every
//! time (open when none did), then widened for the machine's own speed
//! spread; the capacity itself is a size that was probed, inside it.
//! Repeats of a size fall at different times of a shared machine, so the
//! interval spans what the server did at each of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

/// Where the capacity lies, in clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    /// Passed every probe at this size (0: none passed).
    pub low: u32,
    /// One below the smallest size above `low` and above every pass that
    /// failed every time on the server's account, widened by the machine's
    /// speed spread ([`Interval::widened`]); `None`: none did (the
    /// generator's bound).
    pub high: Option<u32>,
}

impl Interval {
    /// Whether `self` lies wholly above `other`: its low end above the
    /// other's high end. Only then is it "higher beyond the noise".
    pub fn clears(&self, other: &Interval) -> bool {
        other.high.is_some_and(|h| self.low > h)
    }

    /// The interval a machine `spread` faster could give (a share: 0.05 is
    /// 5%): the server's capacity grows at most as fast as the machine, so
    /// a size `f` that failed every probe may pass at `f * (1 + spread)`
    /// and the high end rises to one below that, never past the search's
    /// `bound`. The low end stays a size that passed every probe.
    pub fn widened(self, spread: f64, bound: u32) -> Interval {
        let high = self.high.map(|h| {
            let first_fail = f64::from(h + 1);
            let faster = (first_fail * (1.0 + spread.max(0.0))).ceil() as u32 - 1;
            faster.min(bound).max(h)
        });
        Interval { high, ..self }
    }

    /// The interval around the capacity `point`: `4`, `40 (38-44)`,
    /// `>= 150` (bounded by the generator), `< 1` (not even one client),
    /// `>= 0` (nothing passed and nothing failed on the server's account:
    /// the generator could not offer even one client).
    pub fn label(&self, point: u32) -> String {
        match self.high {
            None if point == 0 => ">= 0".to_string(),
            _ if point == 0 => "< 1".to_string(),
            Some(h) if h == self.low && h == point => format!("{point}"),
            Some(h) => format!("{point} ({}-{h})", self.low),
            None if point == self.low => format!(">= {point}"),
            None => format!(">= {point} ({}-)", self.low),
        }
    }
}

/// One probe as the interval sees it: fleet size, outcome, and whether
/// its p99 was within [`MARGIN`] of the SLO's bound (a pass or a miss
/// that a repeat may well turn around).
pub type Seen = (u32, Outcome, bool);

/// How close to the SLO's latency bound a p99 is *marginal*: within this
/// share of it either way. Probes at one fleet size on a shared 2-core VM
/// repeat their p99 to about 10-20% near the knee, so such a pass or miss
/// neither pins the interval's low end nor its high end; it still counts
/// for the capacity itself.
pub const MARGIN: f64 = 0.2;

/// Per size: passes, server failures, and how many of each were marginal
/// (generator- and machine-limited probes say nothing of the server and
/// are left out).
#[derive(Clone, Copy, Default)]
struct Count {
    pass: u32,
    fail: u32,
    marginal_pass: u32,
    marginal_fail: u32,
}

fn tally(probes: &[Seen]) -> BTreeMap<u32, Count> {
    let mut by_size: BTreeMap<u32, Count> = BTreeMap::new();
    for &(n, outcome, marginal) in probes {
        let c = by_size.entry(n).or_default();
        if outcome == Outcome::Pass {
            c.pass += 1;
            c.marginal_pass += u32::from(marginal);
        } else if outcome.servers() {
            c.fail += 1;
            c.marginal_fail += u32::from(marginal);
        }
    }
    by_size
}

/// The interval from every probe of one search, the search's own and its
/// confirmation repeats; `knee` is the search's answer, above which a pass
/// does not raise the low end. The low end passed every probe, at least
/// one of them clearly, and lies below every size that failed on the
/// server's account at some time (a failure below a pass means the server
/// was slower then: the interval reaches down past it, as it reaches up
/// past every pass); the high end is one below the smallest size above
/// it, and above every size that passed at some time (within the margin
/// too), that failed every probe clearly.
pub fn interval_of(probes: &[Seen], knee: u32) -> Interval {
    let by_size = tally(probes);
    let below_fails = by_size
        .iter()
        .find(|(_, c)| c.fail > 0)
        .map_or(u32::MAX, |(&n, _)| n.saturating_sub(1));
    let low = by_size
        .range(..=knee.min(below_fails))
        .rev()
        .find(|(_, c)| c.fail == 0 && c.pass > c.marginal_pass)
        .map_or(0, |(&n, _)| n);
    // The server met the SLO at every size that passed, at some time of
    // the run: the interval reaches past all of them.
    let top_pass = by_size
        .iter()
        .filter(|(_, c)| c.pass > 0)
        .map(|(&n, _)| n)
        .max()
        .unwrap_or(0);
    let high = by_size
        .range(low.max(top_pass) + 1..)
        .find(|(_, c)| c.fail > 0 && c.pass == 0 && c.marginal_fail == 0)
        .map(|(&n, _)| n - 1);
    Interval { low, high }
}

/// The capacity as one number: the largest probed size inside the
/// interval that passed most of its probes (at or below the search's
/// `knee` half is enough: the search saw a failure retried into a pass as
/// a pass), else the low end; 0 when nothing passed every time at any
/// size (`< 1 client`).
pub fn point_of(probes: &[Seen], knee: u32) -> u32 {
    let iv = interval_of(probes, knee);
    if iv.low == 0 {
        return 0;
    }
    tally(probes)
        .range(iv.low..=iv.high.unwrap_or(u32::MAX))
        .rev()
        .find(|(&n, c)| c.pass > c.fail || (n <= knee && c.pass == c.fail && c.pass > 0))
        .map_or(iv.low, |(&n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    type Probes = &'static [(u32, Outcome)];

    /// The tables' probes, none marginal.
    fn plain(probes: &[(u32, Outcome)]) -> Vec<Seen> {
        probes.iter().map(|&(n, o)| (n, o, false)).collect()
    }

    fn interval(probes: &[(u32, Outcome)], knee: u32) -> Interval {
        interval_of(&plain(probes), knee)
    }

    fn point(probes: &[(u32, Outcome)], knee: u32) -> u32 {
        point_of(&plain(probes), knee)
    }

    #[test]
    fn interval_table() {
        // (probes, knee, low, high)
        let table: [(Probes, u32, u32, Option<u32>); 12] = [
            // Confirmed knee and next step.
            (
                &[
                    (1, Pass),
                    (2, Pass),
                    (4, Pass),
                    (8, Fail),
                    (5, Fail),
                    (4, Pass),
                    (5, Fail),
                ],
                4,
                4,
                Some(4),
            ),
            // The knee failed once: the low end drops to the last steady pass.
            (
                &[
                    (16, Pass),
                    (32, Fail),
                    (24, Pass),
                    (28, Fail),
                    (24, Fail),
                    (28, Fail),
                ],
                24,
                16,
                Some(27),
            ),
            // The next step passed once: the high end rises to the next
            // size that always failed.
            (
                &[
                    (16, Pass),
                    (32, Fail),
                    (24, Pass),
                    (28, Fail),
                    (24, Pass),
                    (28, Pass),
                ],
                24,
                24,
                Some(31),
            ),
            // A pass above the knee does not raise the low end; a size
            // that passed at some time does not close the interval,
            // however often it failed.
            (
                &[(10, Pass), (12, Fail), (12, Pass), (11, Pass)],
                10,
                10,
                None,
            ),
            (
                &[(10, Pass), (12, Fail), (12, Pass), (12, Fail), (11, Pass)],
                10,
                10,
                None,
            ),
            // A size that failed once below one that passed clearly later
            // does not close it either (the server was faster then).
            (
                &[
                    (136, Pass),
                    (192, Pass),
                    (192, Fail),
                    (144, Fail),
                    (48, Pass),
                ],
                192,
                136,
                None,
            ),
            (
                &[(8, Pass), (12, Fail), (16, Pass), (20, Fail), (20, Fail)],
                8,
                8,
                Some(19),
            ),
            // Generator-limited: open above.
            (&[(64, Pass), (150, Pass), (150, Pass)], 150, 150, None),
            (&[(64, Pass), (128, Generator), (96, Pass)], 96, 96, None),
            // Nothing passed.
            (&[(1, Fail), (1, Fail)], 0, 0, Some(0)),
            // A generator-limited probe between does not count as a failure.
            (&[(8, Pass), (12, Generator), (16, Fail)], 8, 8, Some(15)),
            // A failure below a size that passed every probe (`uring` io,
            // a confirmation's step down failing late in the run): the low
            // end goes below it.
            (
                &[
                    (1, Pass),
                    (16, Pass),
                    (105, Pass),
                    (192, Fail),
                    (192, Fail),
                    (148, Pass),
                    (170, Fail),
                    (170, Pass),
                    (170, Fail),
                    (192, Fail),
                    (128, Fail),
                ],
                148,
                105,
                Some(191),
            ),
        ];
        for (i, (probes, knee, low, high)) in table.into_iter().enumerate() {
            assert_eq!(interval(probes, knee), Interval { low, high }, "case {i}");
        }
    }

    #[test]
    fn point_is_the_largest_size_that_mostly_passed() {
        // (probes, knee, point)
        let table: [(Probes, u32, u32); 10] = [
            (
                &[(2, Pass), (4, Pass), (4, Pass), (4, Fail), (5, Fail)],
                4,
                4,
            ),
            (&[(2, Pass), (4, Pass), (4, Fail), (5, Fail)], 4, 4),
            (
                &[(2, Pass), (4, Pass), (4, Fail), (4, Fail), (5, Fail)],
                4,
                2,
            ),
            (
                &[(2, Pass), (3, Pass), (4, Pass), (4, Fail), (4, Fail)],
                4,
                3,
            ),
            (&[(1, Fail), (1, Fail)], 0, 0),
            // Nothing passed every time: not even one client is steady.
            (
                &[
                    (2, Pass),
                    (3, Fail),
                    (3, Fail),
                    (2, Pass),
                    (3, Pass),
                    (2, Fail),
                    (3, Pass),
                    (2, Fail),
                    (3, Pass),
                ],
                2,
                0,
            ),
            // A single pass above the knee among failures is not a majority.
            (&[(2, Pass), (3, Fail), (3, Pass), (2, Pass)], 2, 2),
            // A size that mostly passed above one that always failed is
            // inside (the server was faster then), and the point is a size
            // that was probed (11 never was).
            (
                &[(10, Pass), (12, Fail), (15, Pass), (15, Pass), (15, Fail)],
                15,
                15,
            ),
            (&[(10, Pass), (12, Fail), (15, Pass), (15, Fail)], 10, 10),
            // Above the knee, a majority of repeats counts.
            (
                &[
                    (4, Pass),
                    (6, Fail),
                    (5, Pass),
                    (5, Pass),
                    (5, Fail),
                    (4, Pass),
                ],
                4,
                5,
            ),
        ];
        for (i, (probes, knee, want)) in table.into_iter().enumerate() {
            assert_eq!(point(probes, knee), want, "case {i}");
        }
    }

    #[test]
    fn marginal_probes_widen_the_interval() {
        // (probes, knee, interval, point)
        type Case = (&'static [Seen], u32, Interval, u32);
        let iv = |low, high| Interval { low, high };
        let table: [Case; 6] = [
            // Clear: as without margins.
            (
                &[
                    (8, Pass, false),
                    (12, Fail, false),
                    (10, Pass, false),
                    (11, Fail, false),
                ],
                10,
                iv(10, Some(10)),
                10,
            ),
            // The knee passed within the margin: the low end is the last
            // clear pass, the capacity still the knee.
            (
                &[
                    (8, Pass, false),
                    (12, Fail, false),
                    (10, Pass, true),
                    (11, Fail, false),
                ],
                10,
                iv(8, Some(10)),
                10,
            ),
            // The next size failed within the margin: the high end goes up
            // to the next clear failure.
            (
                &[
                    (8, Pass, false),
                    (12, Fail, false),
                    (10, Pass, false),
                    (11, Fail, true),
                ],
                10,
                iv(10, Some(11)),
                10,
            ),
            // One client passed clearly and once more within the margin:
            // it passed every time, so it is the low end (not `< 1`).
            (
                &[
                    (1, Pass, false),
                    (3, Fail, false),
                    (1, Pass, true),
                    (3, Fail, false),
                ],
                1,
                iv(1, Some(2)),
                1,
            ),
            // Only marginal failures above: open.
            (
                &[(8, Pass, false), (12, Fail, true), (10, Pass, false)],
                10,
                iv(10, None),
                10,
            ),
            // A size that passed within the margin at some time (106)
            // lifts the high end past a clear failure below it (28, a
            // slow moment), as a clear pass would (`threads` io, seen).
            (
                &[
                    (1, Pass, false),
                    (16, Pass, false),
                    (106, Pass, true),
                    (127, Fail, false),
                    (106, Fail, false),
                    (80, Pass, true),
                    (28, Fail, false),
                ],
                106,
                iv(16, Some(126)),
                106,
            ),
        ];
        for (probes, knee, want, at) in table {
            assert_eq!(interval_of(probes, knee), want, "{probes:?}");
            assert_eq!(point_of(probes, knee), at, "{probes:?}");
        }
    }

    #[test]
    fn widening_for_the_machines_speed_table() {
        let iv = |low, high| Interval { low, high };
        // (interval, spread, bound, widened)
        let table = [
            // No spread: as probed.
            (iv(16, Some(18)), 0.0, 192, iv(16, Some(18))),
            // 19 failed; 5% faster it may pass: 19 * 1.05 = 19.95 -> 19.
            (iv(16, Some(18)), 0.05, 192, iv(16, Some(19))),
            // 113 * 1.05 = 118.65 -> the first failure may be 119.
            (iv(91, Some(112)), 0.05, 192, iv(91, Some(118))),
            // Never past the search's bound.
            (iv(112, Some(191)), 0.05, 192, iv(112, Some(192))),
            // Open stays open; a negative spread narrows nothing.
            (iv(150, None), 0.05, 192, iv(150, None)),
            (iv(8, Some(9)), -0.5, 192, iv(8, Some(9))),
            // Not even one client: one client may pass when faster.
            (iv(0, Some(0)), 0.05, 192, iv(0, Some(1))),
        ];
        for (i, (interval, spread, bound, want)) in table.into_iter().enumerate() {
            assert_eq!(interval.widened(spread, bound), want, "case {i}");
        }
    }

    #[test]
    fn clearing_needs_disjoint_intervals() {
        let iv = |low, high| Interval { low, high };
        // (a, b, a clears b)
        let table = [
            (iv(40, Some(41)), iv(30, Some(32)), true),
            (iv(40, Some(41)), iv(38, Some(40)), false),
            (iv(40, Some(41)), iv(39, Some(39)), true),
            (iv(150, None), iv(100, None), false),
            (iv(150, None), iv(100, Some(120)), true),
            (iv(30, Some(32)), iv(40, Some(41)), false),
        ];
        for (a, b, want) in table {
            assert_eq!(a.clears(&b), want, "{a:?} vs {b:?}");
        }
        assert_eq!(iv(4, Some(4)).label(4), "4");
        assert_eq!(iv(38, Some(44)).label(40), "40 (38-44)");
        assert_eq!(iv(150, None).label(150), ">= 150");
        assert_eq!(iv(84, None).label(96), ">= 96 (84-)");
        assert_eq!(iv(0, Some(0)).label(0), "< 1");
        // Never `< 1` beside "limited by the generator": nothing was
        // measured on the server's account.
        assert_eq!(iv(0, None).label(0), ">= 0");
    }
}
