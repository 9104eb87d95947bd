//! The recommendation per workload, honest about noise: the model with the
//! highest capacity wins only if its interval clears every other model's;
//! otherwise the models whose intervals overlap the leader's tie, and the
//! tie is broken by CPU per packet, then by memory, then by p99 latency,
//! each only where the repeats' ranges do not overlap, measured at one
//! load for every tied model (the largest all of them passed) where the run
//! probed it, else at each model's own capacity.

use serde::{Deserialize, Serialize};

use crate::interval::Interval;

/// A measured range (lowest, median, highest over the repeats at the knee).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// Lowest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Highest.
    pub max: f64,
}

impl Range {
    /// The range of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Range {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Range::default();
        }
        v.sort_by(f64::total_cmp);
        Range {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }

    /// Wholly below `other`.
    pub fn below(&self, other: &Range) -> bool {
        self.max < other.min
    }
}

/// A tied model's figures at the tie's common load: every tied model probed
/// at the same fleet size, so CPU, memory and latency compare under one
/// offered load, not at each model's own capacity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EqualLoad {
    /// The fleet size every tied model was probed at.
    pub clients: u32,
    /// The valid probes' cells in `run.json`, which give the figures (an
    /// invalid probe gives none; with none, the tie is broken at each
    /// model's own capacity).
    pub cells: Vec<usize>,
    /// CPU microseconds per packet over the repeats.
    pub cpu_us: Range,
    /// Peak PSS over the repeats, KiB.
    pub pss_kib: Range,
    /// p99 latency over the repeats, ns.
    pub p99_ns: Range,
}

/// One model's standing for a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Contender {
    /// Model name.
    pub model: String,
    /// Its capacity at its best worker count.
    pub clients: u32,
    /// Its capacity interval there.
    pub interval: Interval,
    /// CPU microseconds per packet at the knee.
    pub cpu_us: Range,
    /// Peak PSS at the knee, KiB.
    pub pss_kib: Range,
    /// Its figures at the tie's common load, where the run probed it.
    pub equal_load: Option<EqualLoad>,
}

/// The answer for one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recommendation {
    /// Ahead beyond the noise.
    Winner {
        /// The model.
        model: String,
        /// Why, in one sentence.
        reason: String,
    },
    /// Capacities within the noise of each other.
    Tie {
        /// The tied models, highest capacity first.
        models: Vec<String>,
        /// The model the tie-break picked, if one separated.
        pick: Option<String>,
        /// Why, in one sentence.
        reason: String,
    },
    /// No model met the SLO even with one client.
    Nothing {
        /// Why.
        reason: String,
    },
}

impl Recommendation {
    /// The model to use, if one is named.
    pub fn model(&self) -> Option<&str> {
        match self {
            Recommendation::Winner { model, .. } => Some(model),
            Recommendation::Tie { pick, .. } => pick.as_deref(),
            Recommendation::Nothing { .. } => None,
        }
    }

    /// The one-line statement for tables: "`async`" or "`async` or `pool`
    /// (within noise; `async` on CPU per packet)".
    pub fn headline(&self) -> String {
        match self {
            Recommendation::Winner { model, .. } => format!("`{model}`"),
            Recommendation::Tie { models, pick, .. } => {
                let names: Vec<String> = models.iter().map(|m| format!("`{m}`")).collect();
                match pick {
                    Some(p) => format!(
                        "{} within noise; `{p}` by the tie-break",
                        names.join(" or ")
                    ),
                    None => format!("{}: within the noise here", names.join(" or ")),
                }
            }
            Recommendation::Nothing { .. } => "none".to_string(),
        }
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Recommendation::Winner { reason, .. }
            | Recommendation::Tie { reason, .. }
            | Recommendation::Nothing { reason } => reason,
        }
    }
}

/// The contenders that met the SLO with at least one client, highest low
/// end first (an open interval before a closed one).
fn ranked(contenders: &[Contender]) -> Vec<&Contender> {
    let mut ranked: Vec<&Contender> = contenders.iter().filter(|c| c.clients > 0).collect();
    // Highest low end first; an open interval before a closed one.
    ranked.sort_by(|a, b| {
        (b.interval.low, b.interval.high.is_none())
            .cmp(&(a.interval.low, a.interval.high.is_none()))
    });
    ranked
}

/// The leader and every model whose interval it does not clear (the
/// leader alone when it wins; none when no model met the SLO).
pub fn tied(contenders: &[Contender]) -> Vec<&Contender> {
    let ranked = ranked(contenders);
    let Some(leader) = ranked.first().copied() else {
        return Vec::new();
    };
    ranked
        .into_iter()
        .filter(|c| c.model == leader.model || !leader.interval.clears(&c.interval))
        .collect()
}

/// The load tied models are compared at: the largest every one of them
/// passed every probe at (the smallest low end), at least one client.
pub fn common_load(tied: &[&Contender]) -> u32 {
    tied.iter()
        .map(|c| c.interval.low)
        .min()
        .unwrap_or(1)
        .max(1)
}

/// Applies the rule to one workload's models.
pub fn recommend(contenders: &[Contender]) -> Recommendation {
    let ranked = ranked(contenders);
    let tied = tied(contenders);
    let Some(&leader) = tied.first() else {
        // Nothing passed: the server's failing is an answer, the
        // generator's bound is not.
        let reason = if contenders.iter().any(|c| c.interval.high.is_some()) {
            "no model met the SLO with one client"
        } else {
            "no model was measured: the fleet could not offer even one client on time here (a busy machine?); run it again on a quiet one"
        };
        return Recommendation::Nothing {
            reason: reason.to_string(),
        };
    };
    if tied.len() == 1 {
        let reason = match ranked.get(1) {
            Some(r) => format!(
                "capacity {} clients clears the runner-up `{}` at {}",
                leader.interval.label(leader.clients),
                r.model,
                r.interval.label(r.clients)
            ),
            None => format!(
                "the only model to meet the SLO: capacity {} clients",
                leader.interval.label(leader.clients)
            ),
        };
        return Recommendation::Winner {
            model: leader.model.clone(),
            reason,
        };
    }
    let models: Vec<String> = tied.iter().map(|c| c.model.clone()).collect();
    let capacities = tied
        .iter()
        .map(|c| format!("`{}` {}", c.model, c.interval.label(c.clients)))
        .collect::<Vec<_>>()
        .join(", ");
    let (pick, reason) = tie_break(&tied);
    Recommendation::Tie {
        models,
        pick,
        reason: format!("capacities overlap ({capacities}){reason}"),
    }
}

/// The tied model whose `figure` lies wholly below every other's, if one
/// does.
fn separated<'c>(
    tied: &[(&'c Contender, Figures)],
    figure: fn(&Figures) -> Range,
) -> Option<(&'c Contender, Range)> {
    tied.iter()
        .find(|(c, f)| {
            tied.iter()
                .filter(|(o, _)| o.model != c.model)
                .all(|(_, g)| figure(f).below(&figure(g)))
        })
        .map(|(c, f)| (*c, figure(f)))
}

/// CPU, memory and latency of a tied model where the tie compares them.
#[derive(Clone, Copy)]
struct Figures {
    cpu_us: Range,
    pss_kib: Range,
    p99_ns: Option<Range>,
}

/// The tie-break, and the rest of the sentence saying what decided it:
/// at the common load when every tied model was probed there, else at each
/// model's own capacity (where latency is the SLO's, so it is not
/// compared).
fn tie_break(tied: &[&Contender]) -> (Option<String>, String) {
    let load = tied
        .first()
        .and_then(|c| c.equal_load.as_ref())
        .map(|e| e.clients)
        .filter(|&n| {
            tied.iter().all(|c| {
                c.equal_load
                    .as_ref()
                    .is_some_and(|e| e.clients == n && !e.cells.is_empty())
            })
        });
    let figures: Vec<(&Contender, Figures)> = tied
        .iter()
        .map(|&c| {
            let f = match (load, &c.equal_load) {
                (Some(_), Some(e)) => Figures {
                    cpu_us: e.cpu_us,
                    pss_kib: e.pss_kib,
                    p99_ns: Some(e.p99_ns),
                },
                _ => Figures {
                    cpu_us: c.cpu_us,
                    pss_kib: c.pss_kib,
                    p99_ns: None,
                },
            };
            (c, f)
        })
        .collect();
    let at = match load {
        Some(n) => format!("at {n} clients each (the largest load every tied model passed)"),
        None => "at each model's own capacity".to_string(),
    };
    if let Some((c, r)) = separated(&figures, |f| f.cpu_us) {
        let why = format!(
            "; `{}` uses the least CPU per packet {at} ({:.2} us, below every other's range)",
            c.model, r.median
        );
        return (Some(c.model.clone()), why);
    }
    if let Some((c, r)) = separated(&figures, |f| f.pss_kib) {
        let why = format!("; CPU per packet {at} overlaps; `{}` uses the least memory ({:.1} MiB PSS, below every other's range)", c.model, r.median / 1024.0);
        return (Some(c.model.clone()), why);
    }
    if load.is_some() {
        if let Some((c, r)) = separated(&figures, |f| f.p99_ns.unwrap_or_default()) {
            let why = format!("; CPU per packet and memory {at} overlap; `{}` has the lowest p99 latency ({}, below every other's range)", c.model, crate::units::fmt_ns(r.median as u64));
            return (Some(c.model.clone()), why);
        }
        return (
            None,
            format!(", and CPU per packet, memory and p99 latency {at} do not separate them"),
        );
    }
    (
        None,
        format!(", and CPU per packet and memory {at} do not separate them"),
    )
}

/// How many times `a`'s capacity is `b`'s, counted only beyond the noise:
/// `a`'s low end over `b`'s high end when the intervals are disjoint, else
/// `None` ("within noise"). Also `None` when `b` met the SLO with no client.
pub fn times_beyond_noise(a: &Interval, b: &Interval) -> Option<f64> {
    match b.high {
        // Rounded down to a tenth: "at least" must not round up.
        Some(h) if h > 0 && a.clears(b) => Some((a.low as f64 / h as f64 * 10.0).floor() / 10.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(model: &str, low: u32, high: Option<u32>, cpu: (f64, f64), pss: (f64, f64)) -> Contender {
        Contender {
            model: model.to_string(),
            clients: low,
            interval: Interval { low, high },
            cpu_us: Range {
                min: cpu.0,
                median: (cpu.0 + cpu.1) / 2.0,
                max: cpu.1,
            },
            pss_kib: Range {
                min: pss.0,
                median: (pss.0 + pss.1) / 2.0,
                max: pss.1,
            },
            equal_load: None,
        }
    }

    fn range((min, max): (f64, f64)) -> Range {
        Range {
            min,
            median: (min + max) / 2.0,
            max,
        }
    }

    /// `c` probed at `clients` with these figures.
    fn at(
        mut c: Contender,
        clients: u32,
        cpu: (f64, f64),
        pss: (f64, f64),
        p99: (f64, f64),
    ) -> Contender {
        c.equal_load = Some(EqualLoad {
            clients,
            cells: vec![0, 1],
            cpu_us: range(cpu),
            pss_kib: range(pss),
            p99_ns: range(p99),
        });
        c
    }

    #[test]
    fn ties_are_broken_at_equal_load_when_every_tied_model_was_probed_there() {
        let mem = (5000.0, 5100.0);
        let lat = (1e6, 1.1e6);
        // At its own capacity `a` looks cheaper (fewer clients, less
        // batching); at one load `b` is.
        let a = c("a", 38, Some(44), (1.0, 1.1), mem);
        let b = c("b", 40, Some(41), (2.0, 2.2), mem);
        let extra = c("x", 10, Some(12), (0.1, 0.2), mem);
        // (case, contenders, pick, the reason names)
        type Case = (
            &'static str,
            Vec<Contender>,
            Option<&'static str>,
            &'static str,
        );
        let table: Vec<Case> = vec![
            ("no equal-load probes", vec![a.clone(), b.clone()], Some("a"), "at each model's own capacity"),
            (
                "both at 38: CPU separates",
                vec![at(a.clone(), 38, (3.0, 3.2), mem, lat), at(b.clone(), 38, (1.5, 1.6), mem, lat)],
                Some("b"),
                "at 38 clients each",
            ),
            (
                "CPU overlaps, memory separates",
                vec![at(a.clone(), 38, (1.0, 1.2), (9000.0, 9100.0), lat), at(b.clone(), 38, (1.1, 1.3), mem, lat)],
                Some("b"),
                "least memory",
            ),
            (
                "CPU and memory overlap, latency separates",
                vec![at(a.clone(), 38, (1.0, 1.2), mem, (2e6, 2.2e6)), at(b.clone(), 38, (1.1, 1.3), mem, lat)],
                Some("b"),
                "lowest p99 latency",
            ),
            (
                "nothing separates",
                vec![at(a.clone(), 38, (1.0, 1.2), mem, lat), at(b.clone(), 38, (1.1, 1.3), mem, lat)],
                None,
                "p99 latency at 38 clients each (the largest load every tied model passed) do not separate",
            ),
            (
                "one tied model not probed there: each at its own capacity",
                vec![at(a.clone(), 38, (3.0, 3.2), mem, lat), b.clone()],
                Some("a"),
                "at each model's own capacity",
            ),
            (
                "probed at different loads: each at its own capacity",
                vec![at(a.clone(), 38, (3.0, 3.2), mem, lat), at(b.clone(), 30, (1.5, 1.6), mem, lat)],
                Some("a"),
                "at each model's own capacity",
            ),
            (
                "a model outside the tie needs no probe",
                vec![at(a.clone(), 38, (3.0, 3.2), mem, lat), at(b.clone(), 38, (1.5, 1.6), mem, lat), extra],
                Some("b"),
                "at 38 clients each",
            ),
        ];
        for (case, contenders, pick, names) in table {
            let r = recommend(&contenders);
            assert_eq!(r.model(), pick, "{case}: {r:?}");
            assert!(r.reason().contains(names), "{case}: {}", r.reason());
            let tied = tied(&contenders);
            assert_eq!(common_load(&tied), 38, "{case}");
        }
    }

    #[test]
    fn tie_rule_table() {
        let cpu = (1.0, 1.2);
        let mem = (5000.0, 5100.0);
        // (case, contenders, named model, tied models)
        type Case = (
            &'static str,
            Vec<Contender>,
            Option<&'static str>,
            Vec<&'static str>,
        );
        let table: Vec<Case> = vec![
            (
                "clear winner",
                vec![
                    c("a", 40, Some(41), cpu, mem),
                    c("b", 30, Some(32), cpu, mem),
                ],
                Some("a"),
                vec![],
            ),
            (
                "overlap, CPU separates",
                vec![
                    c("a", 40, Some(44), (2.0, 2.2), mem),
                    c("b", 38, Some(41), (1.0, 1.1), mem),
                ],
                Some("b"),
                vec!["a", "b"],
            ),
            (
                "overlap, CPU overlaps, memory separates",
                vec![
                    c("a", 40, Some(44), cpu, (9000.0, 9100.0)),
                    c("b", 38, Some(41), cpu, mem),
                ],
                Some("b"),
                vec!["a", "b"],
            ),
            (
                "overlap on everything",
                vec![
                    c("a", 40, Some(44), cpu, mem),
                    c("b", 38, Some(41), cpu, mem),
                ],
                None,
                vec!["a", "b"],
            ),
            (
                "both limited by the generator",
                vec![
                    c("a", 150, None, (1.0, 1.1), mem),
                    c("b", 150, None, (1.5, 1.6), mem),
                    c("c", 20, Some(22), (0.5, 0.6), mem),
                ],
                Some("a"),
                vec!["a", "b"],
            ),
            (
                "the third is out, the first two tie",
                vec![
                    c("a", 40, Some(42), cpu, mem),
                    c("b", 41, Some(41), cpu, mem),
                    c("c", 10, Some(12), (0.1, 0.2), mem),
                ],
                None,
                vec!["b", "a"],
            ),
            (
                "only one met the SLO",
                vec![c("a", 3, Some(3), cpu, mem), c("b", 0, Some(0), cpu, mem)],
                Some("a"),
                vec![],
            ),
            ("nobody", vec![c("a", 0, Some(0), cpu, mem)], None, vec![]),
        ];
        for (case, contenders, named, tied) in table {
            let r = recommend(&contenders);
            assert_eq!(r.model(), named, "{case}: {r:?}");
            match &r {
                Recommendation::Tie { models, .. } => assert_eq!(models, &tied, "{case}"),
                _ => assert!(tied.is_empty(), "{case}: {r:?}"),
            }
            assert!(!r.reason().is_empty());
        }
    }

    #[test]
    fn a_capacity_in_the_table_is_never_none_in_the_sentence() {
        // `2 (0-2)` in the table, then "none": a model with a capacity of
        // at least one client is always a contender.
        let mut a = c("single", 0, Some(2), (1.0, 1.0), (1.0, 1.0));
        a.clients = 2;
        let rec = recommend(&[a, c("pool", 0, Some(0), (1.0, 1.0), (1.0, 1.0))]);
        assert_eq!(rec.model(), Some("single"), "{rec:?}");
        let none = recommend(&[c("pool", 0, Some(0), (1.0, 1.0), (1.0, 1.0))]);
        assert!(matches!(none, Recommendation::Nothing { .. }), "{none:?}");
        assert!(none.reason().contains("met the SLO"), "{none:?}");
        // Every model bounded by the generator at nothing: not measured,
        // never "no model met the SLO".
        let unmeasured = recommend(&[c("pool", 0, None, (1.0, 1.0), (1.0, 1.0))]);
        assert!(matches!(unmeasured, Recommendation::Nothing { .. }));
        assert!(
            unmeasured.reason().contains("was measured"),
            "{unmeasured:?}"
        );
    }

    #[test]
    fn ratios_only_beyond_noise() {
        let iv = |low, high| Interval { low, high };
        // (a, b, ratio)
        let table = [
            (iv(40, Some(41)), iv(20, Some(20)), Some(2.0)),
            (iv(20, Some(20)), iv(40, Some(41)), None),
            (iv(40, Some(44)), iv(38, Some(41)), None),
            (iv(150, None), iv(100, None), None),
            (iv(150, None), iv(50, Some(60)), Some(2.5)),
            (iv(5, Some(5)), iv(0, Some(0)), None),
            // 150 / 96 = 1.5625: "at least 1.5x", never 1.6x.
            (iv(150, None), iv(90, Some(96)), Some(1.5)),
        ];
        for (a, b, want) in table {
            assert_eq!(times_beyond_noise(&a, &b), want, "{a:?} vs {b:?}");
        }
    }
}
