//! Capacity at an SLO, as recorded: what a probe says ([`Outcome`]), what
//! stopped a search ([`LimitedBy`]), every probe and sweep point behind a
//! capacity ([`CapacityRecord`]), the search's settings and constants, and
//! the pure rules over them (Little's-law io estimate, grouping and the
//! recommendation per workload). The search itself is the `search` crate.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use workloads::WorkPlan;

use crate::attribution::Attribution;
use crate::past_knee::PastKnee;

use crate::cell::CellResult;
use crate::interval::Interval;
pub use crate::outcome::{LimitedBy, Outcome};
use crate::recommend::{EqualLoad, Range};
use crate::verdict::Status;

/// Search settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Largest fleet size the generator paces here; the search never
    /// goes above it.
    pub max_clients: u32,
    /// Bisection stops when the gap is within this share of the capacity
    /// (or 1 client).
    pub tolerance: f64,
}

/// Ramp steps grow by the factor that would bring the server to this
/// share of its CPUs, between [`MIN_GROWTH`] and [`MAX_GROWTH`].
pub const TARGET_UTIL: f64 = 0.8;
/// Smallest ramp factor: doubling.
pub const MIN_GROWTH: f64 = 2.0;
/// Largest ramp factor (a server blocked on io is idle yet saturated).
pub const MAX_GROWTH: f64 = 16.0;

/// Tries after the first of a probe the machine disturbed, each after a
/// pause twice the last ([`MACHINE_PAUSE`] first), to wait out a noisy
/// stretch of a shared machine.
pub const MACHINE_RETRIES: u32 = 2;
/// The first pause before a disturbed probe is tried again.
pub const MACHINE_PAUSE: Duration = Duration::from_millis(250);

/// The most workers the sweep tries for one model.
pub const MAX_WORKERS: usize = 1024;

/// One probe behind a capacity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// Index of the probe's cell in `run.json`'s `cells`.
    pub cell: usize,
    /// Fleet size.
    pub clients: u32,
    /// Server workers.
    pub workers: usize,
    /// What it said.
    pub outcome: Outcome,
    /// Why it did not pass (empty when it passed).
    pub why: String,
    /// A confirmation repeat (not part of the search itself).
    pub confirm: bool,
    /// The machine stalled during it and it was tried again.
    #[serde(default)]
    pub retried: bool,
    /// Decided by latency within [`crate::interval::MARGIN`] of the bound.
    #[serde(default)]
    pub marginal: bool,
}

/// The capacity at one worker count.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Server workers.
    pub workers: usize,
    /// Largest passing fleet size.
    pub capacity: u32,
    /// Smallest failing size above it, if the server failed.
    pub next: Option<u32>,
    /// What stopped the search.
    pub limited_by: LimitedBy,
}

/// A (model, workload)'s capacity at its best worker count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacityRecord {
    /// Model.
    pub model: String,
    /// Workload.
    pub workload: String,
    /// Best worker count.
    pub workers: usize,
    /// The capacity: clients at the run's rate, the largest size that
    /// passed most of its probes (see [`crate::interval::point_of`]).
    pub clients: u32,
    /// Where the capacity lies, from the confirmation repeats.
    pub interval: Interval,
    /// What stopped the search: the server, or the load generator.
    pub limited_by: LimitedBy,
    /// The SLO each probe was held to (the p99 bound varies with the
    /// batch window; this is the knee's).
    pub slo: String,
    /// Median p99 latency at the capacity, ns.
    pub p99_ns: u64,
    /// Median p99 service latency at the capacity, ns.
    pub service_p99_ns: u64,
    /// CPU microseconds per packet at the capacity.
    pub cpu_us: Range,
    /// Peak PSS at the capacity, KiB.
    pub pss_kib: Range,
    /// Little's-law estimate of io waits in flight at the knee (0: no io).
    pub io_waits: usize,
    /// Capacity per worker count tried.
    pub sweep: Vec<SweepPoint>,
    /// Why the sweep tried no more worker counts.
    #[serde(default)]
    pub sweep_stop: String,
    /// Confirmation rounds still owed (0: final). A run confirms every
    /// pair's knee in rounds after all searches, so that its repeats fall
    /// at different times.
    #[serde(default)]
    pub rounds_left: u32,
    /// Every probe, in order.
    pub probes: Vec<ProbeRecord>,
    /// Where this model tied with others: its figures at the tie's common
    /// load, probed after every round (not among `probes`: they never move
    /// the interval).
    #[serde(default)]
    pub equal_load: Option<EqualLoad>,
    /// Where the generator stopped the search: the capacity the server's
    /// CPU per frame there projects ([`Projection`]).
    #[serde(default)]
    pub projected: Option<Projection>,
    /// Where the time of the frames at the capacity went (its passing
    /// repeats together), and the work as measured against as asked.
    #[serde(default)]
    pub attribution: Option<Attribution>,
    /// A server-limited capacity probed past its knee (1.5x and 2x its
    /// clients, within the search's bound), after every round.
    #[serde(default)]
    pub past_knee: Option<PastKnee>,
    /// Every model of the workload probed at one common load, the largest
    /// all of them passed, after every round: its figures there (one
    /// probe; `cells` empty when it was not valid).
    #[serde(default)]
    pub common_load: Option<EqualLoad>,
}

impl CapacityRecord {
    /// The first probe that passed at the capacity (its size and worker
    /// count): the cell its figures at capacity come from.
    pub fn probe_at_capacity(&self) -> Option<&ProbeRecord> {
        self.probes.iter().find(|p| {
            p.clients == self.clients && p.workers == self.workers && p.outcome == Outcome::Pass
        })
    }

    /// What limited the search, as the tables say it, with the projection
    /// where the generator stopped it.
    pub fn limit_label(&self) -> String {
        let limit = match self.limited_by {
            LimitedBy::Generator if downstream_late_above(&self.probes, self.clients) => {
                DOWNSTREAM_LIMIT
            }
            other => other.label(),
        };
        match &self.projected {
            Some(p) if self.limited_by == LimitedBy::Generator => {
                format!("{limit}; {}", p.label())
            }
            _ => limit.to_string(),
        }
    }
}

/// Whether one of `probes` above `clients` was the generator's because the
/// downstream responder of call work answered late.
fn downstream_late_above(probes: &[ProbeRecord], clients: u32) -> bool {
    probes.iter().any(|p| {
        p.clients > clients
            && p.outcome == Outcome::Generator
            && p.why.contains(crate::verdict::DOWNSTREAM_LATE)
    })
}

/// The generator's label where the downstream responder answered late.
const DOWNSTREAM_LIMIT: &str =
    "generator (at least this many; the downstream responder of call work answered late above it)";

/// Share of the server's CPUs a projected capacity fills (the utilisation
/// law: frames per second = busy share / CPU seconds per frame).
pub const PROJECT_UTIL: f64 = 0.8;

/// A capacity projected past the generator's bound from the server's CPU
/// per frame at the largest load measured: it assumes that CPU per frame
/// stays as measured there (it falls as reads carry more frames, so this
/// errs low) and that CPU, not latency or io waits, is the limit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Projected clients at the run's rate.
    pub clients: u32,
    /// The load it was projected from (the capacity's probes).
    pub from_clients: u32,
    /// CPU microseconds per frame there (median of the probes).
    pub cpu_us: f64,
    /// Server CPUs.
    pub cpus: usize,
}

impl Projection {
    /// The projection from `cpu_us` per frame measured at `from_clients`
    /// on `cpus` server CPUs at `rate_hz` per client; `None` when it
    /// projects no more than was measured (or nothing was).
    pub fn of(from_clients: u32, cpu_us: f64, cpus: usize, rate_hz: u64) -> Option<Projection> {
        let clients = Self::clients_at(cpu_us, cpus, rate_hz);
        (clients > from_clients).then_some(Projection {
            clients,
            from_clients,
            cpu_us,
            cpus,
        })
    }

    /// Clients at `rate_hz` that [`PROJECT_UTIL`] of `cpus` serves at
    /// `cpu_us` per frame (0 when nothing was measured).
    pub fn clients_at(cpu_us: f64, cpus: usize, rate_hz: u64) -> u32 {
        if cpu_us <= 0.0 || rate_hz == 0 || cpus == 0 {
            return 0;
        }
        let frames_per_s = PROJECT_UTIL * cpus as f64 * 1e6 / cpu_us;
        (frames_per_s / rate_hz as f64).floor() as u32
    }

    /// `projected 177 (80% of 1 CPU at 0.45 us/frame, as at 150 clients)`.
    pub fn label(&self) -> String {
        format!(
            "projected {} ({:.0}% of {} CPU at {:.2} us/frame, as at {} clients)",
            self.clients,
            PROJECT_UTIL * 100.0,
            self.cpus,
            self.cpu_us,
            self.from_clients
        )
    }
}

/// Probes per tied model at a tie's common load: the tie-break compares
/// their ranges.
pub const EQUAL_LOAD_REPEATS: u32 = 2;

/// A tied model's figures at `clients` from its probes there (`cells`,
/// indices into `all`), the valid ones only.
pub fn equal_load_of(clients: u32, cells: &[usize], all: &[CellResult]) -> EqualLoad {
    let valid: Vec<usize> = cells
        .iter()
        .copied()
        .filter(|&i| {
            all.get(i)
                .is_some_and(|c| c.verdict.status == Status::Valid)
        })
        .collect();
    let range = |f: fn(&CellResult) -> f64| {
        Range::of(&valid.iter().map(|&i| f(&all[i])).collect::<Vec<_>>())
    };
    EqualLoad {
        clients,
        cpu_us: range(|c| c.derived.cpu_us_per_packet),
        pss_kib: range(|c| c.derived.peak_pss_kib as f64),
        p99_ns: range(|c| c.derived.p99_ns as f64),
        cells: valid,
    }
}

/// Workers per io wait in flight: Little's law gives the mean, bursts of
/// an open-loop schedule need room above it.
pub const IO_HEADROOM: f64 = 2.0;

/// Little's law: io waits in flight at the load where the server's CPUs
/// would saturate, estimated from a probe at `clients` that kept them
/// `util` busy (at most 8x further), at `rate_hz` per client, with
/// [`IO_HEADROOM`]. Per-packet CPU falls as load grows (batching), so the
/// estimate is low rather than high; the sweep follows the knee from there.
pub fn io_waits_at_knee(
    clients: u32,
    util: f64,
    plan: &WorkPlan,
    rate_hz: u64,
    max_clients: u32,
) -> usize {
    let clients = clients.max(1) as f64;
    let knee = if util > 0.0 {
        clients * (1.0 / util).min(8.0)
    } else {
        clients * 8.0
    }
    .min(max_clients as f64);
    io_waits_for(knee.ceil() as u32, plan, rate_hz)
}

/// Workers for the io waits in flight at `clients` clients, with
/// [`IO_HEADROOM`] (0: the workload has no io).
pub fn io_waits_for(clients: u32, plan: &WorkPlan, rate_hz: u64) -> usize {
    let mean_io_s = plan.mean_io_us() / 1e6;
    if mean_io_s <= 0.0 {
        return 0;
    }
    (clients as f64 * rate_hz as f64 * mean_io_s * IO_HEADROOM)
        .ceil()
        .max(1.0) as usize
}

/// Whether a probe of the search counted as the machine's (every try of it
/// stalled).
pub fn ended_on_noise(probes: &[ProbeRecord]) -> bool {
    probes
        .iter()
        .any(|p| p.outcome == Outcome::Machine && !p.retried)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use workloads::WorkSpec;

    #[test]
    fn projection_table() {
        // (from clients, cpu us/frame, cpus, rate, projected clients)
        let table: [(u32, f64, usize, u64, Option<u32>); 6] = [
            // 0.8 * 1e6 / 0.45 = 1.78 M frames/s = 177 clients at 10 kHz.
            (150, 0.45, 1, 10_000, Some(177)),
            (150, 0.45, 2, 10_000, Some(355)),
            // 0.8 * 1e6 / 5.5 = 145 k frames/s = 14 clients: no more than
            // measured, so no projection.
            (16, 5.5, 1, 10_000, None),
            (8, 5.5, 1, 10_000, Some(14)),
            (150, 0.0, 1, 10_000, None),
            (150, 0.45, 1, 0, None),
        ];
        for (from, cpu_us, cpus, rate, want) in table {
            let got = Projection::of(from, cpu_us, cpus, rate).map(|p| p.clients);
            assert_eq!(got, want, "{from} clients at {cpu_us} us on {cpus} CPUs");
        }
        let p = Projection::of(150, 0.45, 1, 10_000).unwrap();
        assert_eq!(
            p.label(),
            "projected 177 (80% of 1 CPU at 0.45 us/frame, as at 150 clients)"
        );
    }

    #[test]
    fn a_search_ended_on_noise_only_when_a_probe_stayed_the_machines() {
        let p = |outcome, retried| ProbeRecord {
            cell: 0,
            clients: 4,
            workers: 1,
            outcome,
            why: String::new(),
            confirm: false,
            retried,
            marginal: false,
        };
        // (probes, ended on noise)
        let table = [
            (vec![p(Outcome::Pass, false)], false),
            // Stalled, tried again, passed: not the machine's.
            (
                vec![p(Outcome::Machine, true), p(Outcome::Pass, false)],
                false,
            ),
            (
                vec![p(Outcome::Machine, true), p(Outcome::Machine, false)],
                true,
            ),
            (vec![p(Outcome::Generator, false)], false),
        ];
        for (probes, want) in table {
            assert_eq!(ended_on_noise(&probes), want, "{probes:?}");
        }
    }

    #[test]
    fn the_generator_limit_names_a_late_downstream_table() {
        let p = |clients, outcome, why: &str| ProbeRecord {
            cell: 0,
            clients,
            workers: 1,
            outcome,
            why: why.to_string(),
            confirm: false,
            retried: false,
            marginal: false,
        };
        let late = "downstream late: the responder answered 2ms past the delay asked at p99";
        // (probes, capacity, the downstream named)
        let table = [
            (vec![p(8, Outcome::Pass, "")], 8, false),
            (
                vec![p(8, Outcome::Pass, ""), p(16, Outcome::Generator, late)],
                8,
                true,
            ),
            // The fleet behind, not the responder.
            (
                vec![p(16, Outcome::Generator, "fleet behind: 3% late")],
                8,
                false,
            ),
            // Late below the capacity, passed above: not what stopped it.
            (
                vec![p(4, Outcome::Generator, late), p(8, Outcome::Pass, "")],
                8,
                false,
            ),
            // A late responder judged with a failure is not the generator.
            (vec![p(16, Outcome::Fail, late)], 8, false),
        ];
        for (probes, clients, want) in table {
            assert_eq!(downstream_late_above(&probes, clients), want, "{probes:?}");
        }
    }

    #[test]
    fn littles_law_estimate_table() {
        let plan = |s: &str| WorkSpec::from_str(s).unwrap().resolve(Some(100.0)).unwrap();
        // (spec, clients at the probe, util there, io waits)
        let table = [
            ("none", 10, 0.5, 0),
            ("cpu:5us", 10, 0.5, 0),
            // 8 clients at 16% busy: the CPUs saturate near 50 clients;
            // 50 x 10 kHz x 50 us = 25 waits, twice that with headroom.
            ("io:1ms,every=20", 8, 0.16, 50),
            // An idle server: at most 8x further.
            ("io:1ms,every=20", 2, 0.0, 16),
            ("io:1ms", 1, 1.0, 20),
            // Capped at the search bound (150 clients).
            ("io:1ms,every=20", 100, 0.1, 150),
        ];
        for (spec, clients, util, want) in table {
            assert_eq!(
                io_waits_at_knee(clients, util, &plan(spec), 10_000, 150),
                want,
                "{spec}"
            );
        }
    }
}
