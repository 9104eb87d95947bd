//! Past the knee: each server-limited capacity probed again at 1.5x and
//! 2x its clients, the processed rate against the offered one there (does
//! it hold or collapse?) and how evenly the clients were served (Jain's
//! index over their shares of the frames, and over their p99 latencies),
//! with the rules that name the shape.

use serde::{Deserialize, Serialize};

use crate::cell::CellResult;

/// The multiples of a capacity probed past it.
pub const MULTIPLES: [f64; 2] = [1.5, 2.0];
/// Past the knee, a server whose processed rate stays at least this share
/// of its rate at the capacity holds its goodput.
pub const HOLDS: f64 = 0.9;
/// Below this share of its rate at the capacity, it collapsed.
pub const COLLAPSES: f64 = 0.5;
/// Clients served evenly: Jain's index at least this.
pub const EVEN: f64 = 0.9;

/// The fleet sizes probed past a capacity of `clients`, within the
/// search's `bound` (none above it: the generator cannot offer them).
pub fn sizes(clients: u32, bound: u32) -> Vec<u32> {
    let mut out: Vec<u32> = MULTIPLES
        .iter()
        .map(|m| (f64::from(clients) * m).ceil() as u32)
        .filter(|&n| n > clients && n <= bound)
        .collect();
    out.dedup();
    out
}

/// Jain's fairness index of `xs`: 1 when all are equal, 1/n when one has
/// everything; 1 for no values or all zero.
pub fn jain(xs: &[f64]) -> f64 {
    let (sum, squares) = xs.iter().fold((0.0, 0.0), |(s, q), x| (s + x, q + x * x));
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * squares)
}

/// One load and what the server made of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadPoint {
    /// Fleet size.
    pub clients: u32,
    /// The probe's cell in `run.json`.
    pub cell: usize,
    /// Frames offered per second.
    pub offered_pps: f64,
    /// Frames processed per second in the window.
    pub processed_pps: f64,
    /// Jain's index over the clients' shares of the frames the server read
    /// (a client it never read from counts as 0).
    pub fairness: f64,
    /// Jain's index over the clients' p99 latencies (1: every client's
    /// tail alike), when the server recorded each client apart and every
    /// client has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_fairness: Option<f64>,
    /// The lowest and the highest client p99, ns, with `p99_fairness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_p99_ns: Option<(u64, u64)>,
    /// The cell's verdict.
    pub status: String,
}

impl LoadPoint {
    /// The point of cell `index` (of `cells`).
    pub fn of(index: usize, cells: &[CellResult]) -> LoadPoint {
        let c = &cells[index];
        let mut shares: Vec<f64> = c.server.as_ref().map_or(Vec::new(), |s| {
            s.clients.iter().map(|x| x.measured as f64).collect()
        });
        shares.resize(shares.len().max(c.key.clients as usize), 0.0);
        let p99s: Option<Vec<u64>> = c.server.as_ref().and_then(|s| {
            (s.clients.len() >= c.key.clients as usize)
                .then(|| {
                    s.clients
                        .iter()
                        .map(|x| x.p99_ns)
                        .collect::<Option<Vec<u64>>>()
                })
                .flatten()
                .filter(|v| !v.is_empty())
        });
        LoadPoint {
            p99_fairness: p99s
                .as_ref()
                .map(|v| jain(&v.iter().map(|&x| x as f64).collect::<Vec<_>>())),
            client_p99_ns: p99s
                .as_ref()
                .and_then(|v| Some((*v.iter().min()?, *v.iter().max()?))),
            clients: c.key.clients,
            cell: index,
            offered_pps: c.derived.offered_pps,
            processed_pps: c.derived.achieved_pps,
            fairness: jain(&shares),
            status: format!("{:?}", c.verdict.status).to_lowercase(),
        }
    }
}

/// How the processed rate behaves past the knee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// At least [`HOLDS`] of the rate at the capacity, at every load past it.
    Holds,
    /// Down, but never below [`COLLAPSES`].
    Sags,
    /// Below [`COLLAPSES`] somewhere.
    Collapses,
}

/// A capacity's load and the loads past it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PastKnee {
    /// At the capacity (its first passing probe).
    pub at: LoadPoint,
    /// At each of [`MULTIPLES`] within the search's bound.
    pub past: Vec<LoadPoint>,
}

impl PastKnee {
    /// The shape of the processed rate past the knee (`None`: nothing
    /// probed past it, or no rate at the capacity).
    pub fn shape(&self) -> Option<Shape> {
        let worst = self.past.iter().map(|p| p.processed_pps).reduce(f64::min)?;
        if self.at.processed_pps <= 0.0 {
            return None;
        }
        let r = worst / self.at.processed_pps;
        Some(if r >= HOLDS {
            Shape::Holds
        } else if r >= COLLAPSES {
            Shape::Sags
        } else {
            Shape::Collapses
        })
    }

    /// The sentence summary.md prints for it.
    pub fn sentence(&self) -> String {
        if self.past.is_empty() {
            return "not probed past its knee (the generator's bound is there)".into();
        }
        let Some(shape) = self.shape() else {
            return "probed past its knee, but it processed nothing at its capacity to compare with"
                .into();
        };
        let each: Vec<String> = self
            .past
            .iter()
            .map(|p| {
                format!(
                    "at {} clients it processed {:.0}% of the offered frames",
                    p.clients,
                    share(p.processed_pps, p.offered_pps)
                )
            })
            .collect();
        let fairness = fairness_clause(&self.past);
        let how = match shape {
            Shape::Holds => "its processed rate holds",
            Shape::Sags => "its processed rate sags",
            Shape::Collapses => "its processed rate collapses",
        };
        format!(
            "past its knee {how} ({:.0}/s at its capacity); {}; {fairness}",
            self.at.processed_pps,
            each.join(", ")
        )
    }
}

/// How evenly `past`'s loads served their clients: their shares of the
/// frames, and their p99s where measured.
fn fairness_clause(past: &[LoadPoint]) -> String {
    let shares = past.iter().map(|p| p.fairness).fold(1.0, f64::min);
    let tails = past.iter().filter_map(|p| p.p99_fairness).reduce(f64::min);
    let spread = past
        .iter()
        .filter_map(|p| p.client_p99_ns)
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        .map_or(String::new(), |(lo, hi)| {
            format!(
                ", client p99s {}-{}",
                crate::units::fmt_ns(lo),
                crate::units::fmt_ns(hi)
            )
        });
    let tails_text = tails.map_or(String::new(), |t| {
        format!(", {t:.2} over their p99s{spread}")
    });
    let even = shares >= EVEN && tails.is_none_or(|t| t >= EVEN);
    match (even, shares >= EVEN) {
        (true, _) => format!(
            "clients served evenly (Jain's index >= {shares:.2} over their shares of the frames{tails_text})"
        ),
        (false, false) => format!(
            "clients served unevenly (Jain's index down to {shares:.2} over their shares of the frames: some starve{tails_text})"
        ),
        (false, true) => format!(
            "clients' frames served evenly (Jain's index >= {shares:.2}) but their tails not ({tails_text}: some clients wait far longer)",
            tails_text = tails_text.trim_start_matches(", ")
        ),
    }
}

fn share(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b * 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_the_multiples_within_the_bound() {
        let cases: [((u32, u32), &[u32]); 5] = [
            ((10, 100), &[15, 20]),
            ((1, 100), &[2]),
            ((3, 100), &[5, 6]),
            ((10, 17), &[15]),
            ((10, 10), &[]),
        ];
        for ((c, bound), want) in cases {
            assert_eq!(sizes(c, bound), want, "{c} {bound}");
        }
    }

    #[test]
    fn jain_table() {
        let cases: [(&[f64], f64); 5] = [
            (&[1.0, 1.0, 1.0, 1.0], 1.0),
            (&[4.0, 0.0, 0.0, 0.0], 0.25),
            (&[2.0, 2.0, 0.0, 0.0], 0.5),
            (&[], 1.0),
            (&[0.0, 0.0], 1.0),
        ];
        for (xs, want) in cases {
            assert!((jain(xs) - want).abs() < 1e-9, "{xs:?}");
        }
    }

    fn point(clients: u32, offered: f64, processed: f64, fairness: f64) -> LoadPoint {
        LoadPoint {
            clients,
            offered_pps: offered,
            processed_pps: processed,
            fairness,
            ..LoadPoint::default()
        }
    }

    #[test]
    fn shape_rules() {
        let at = point(10, 100_000.0, 100_000.0, 1.0);
        let cases = [
            (
                vec![point(15, 150e3, 99e3, 1.0), point(20, 200e3, 95e3, 1.0)],
                Some(Shape::Holds),
            ),
            (vec![point(15, 150e3, 89e3, 1.0)], Some(Shape::Sags)),
            (
                vec![point(15, 150e3, 90e3, 1.0), point(20, 200e3, 40e3, 1.0)],
                Some(Shape::Collapses),
            ),
            (vec![], None),
        ];
        for (past, want) in cases {
            let p = PastKnee {
                at: at.clone(),
                past,
            };
            assert_eq!(p.shape(), want, "{p:?}");
        }
    }

    #[test]
    fn sentence_names_the_shape_the_rates_and_the_fairness() {
        let p = PastKnee {
            at: point(10, 100e3, 100e3, 1.0),
            past: vec![point(15, 150e3, 99e3, 0.99), point(20, 200e3, 40e3, 0.5)],
        };
        assert_eq!(
            p.sentence(),
            "past its knee its processed rate collapses (100000/s at its capacity); at 15 \
             clients it processed 66% of the offered frames, at 20 clients it processed 20% \
             of the offered frames; clients served unevenly (Jain's index down to 0.50 over \
             their shares of the frames: some starve)"
        );
        let none = PastKnee {
            at: point(10, 1.0, 1.0, 1.0),
            past: vec![],
        };
        assert!(none.sentence().contains("not probed"));
        let nothing = PastKnee {
            at: point(10, 1.0, 0.0, 1.0),
            past: vec![point(15, 1.0, 0.0, 1.0)],
        };
        assert!(nothing
            .sentence()
            .contains("processed nothing at its capacity"));
    }

    #[test]
    fn fairness_rules_over_shares_and_tails() {
        let tail = |fairness: f64, p99: Option<(f64, u64, u64)>| LoadPoint {
            fairness,
            p99_fairness: p99.map(|p| p.0),
            client_p99_ns: p99.map(|p| (p.1, p.2)),
            ..LoadPoint::default()
        };
        let cases = [
            (
                vec![tail(1.0, None)],
                "clients served evenly (Jain's index >= 1.00 over their shares of the frames)",
            ),
            (
                vec![tail(0.99, Some((0.98, 1_000_000, 1_200_000)))],
                "clients served evenly (Jain's index >= 0.99 over their shares of the frames, \
                 0.98 over their p99s, client p99s 1.00ms-1.20ms)",
            ),
            (
                vec![
                    tail(0.99, Some((0.98, 1_000_000, 1_200_000))),
                    tail(0.95, Some((0.60, 900_000, 9_000_000))),
                ],
                "clients' frames served evenly (Jain's index >= 0.95) but their tails not (0.60 \
                 over their p99s, client p99s 900.0us-9.00ms: some clients wait far longer)",
            ),
            (
                vec![tail(0.5, Some((0.7, 1_000_000, 5_000_000)))],
                "clients served unevenly (Jain's index down to 0.50 over their shares of the \
                 frames: some starve, 0.70 over their p99s, client p99s 1.00ms-5.00ms)",
            ),
        ];
        for (past, want) in cases {
            assert_eq!(fairness_clause(&past), want);
        }
    }
}
