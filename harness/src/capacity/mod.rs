//! Capacity at an SLO: for each (model, workload), the most clients the
//! model serves validly, without loss and within the SLO, at its best
//! worker count, confirmed by repeats into an interval. [`search`] holds
//! the search rule, [`interval`] the interval, [`recommend`] the tie rule;
//! this module runs them on real probes (fresh, warmed-up cells) and
//! records every probe.

pub mod classify;
pub mod interval;
pub mod pair;
pub mod recommend;
pub mod search;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use workloads::WorkPlan;

use crate::bench::cell::CellContext;
use crate::bench::results::RunFile;
use interval::Interval;
use recommend::Range;
use search::{LimitedBy, Outcome};

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
    /// Decided by latency within [`interval::MARGIN`] of the bound.
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
    /// passed most of its probes (see [`interval::point_of`]).
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
    /// Every probe, in order.
    pub probes: Vec<ProbeRecord>,
}

/// A search interrupted by SIGINT/SIGTERM, or a probe that could not run.
pub(crate) enum Stop {
    Interrupted,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
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

/// The progress of a search run: probes done out of an estimate that is
/// refined as (model, workload) pairs finish.
pub(crate) struct Progress {
    bar: ProgressBar,
    pairs_total: usize,
    pairs_done: usize,
    probes_done: u64,
}

impl Progress {
    fn probe_done(&mut self, line: impl FnOnce() -> String) {
        self.probes_done += 1;
        self.bar.inc(1);
        if self.bar.is_hidden() {
            eprintln!("[probe {}] {}", self.probes_done, line());
        }
    }

    fn pair_done(&mut self) {
        self.pairs_done += 1;
        let per_pair = self.probes_done as f64 / self.pairs_done as f64;
        let left = (self.pairs_total - self.pairs_done) as f64 * per_pair;
        self.bar.set_length(self.probes_done + left.round() as u64);
    }
}

/// Probes expected per (model, workload) before any has run.
const FIRST_ESTIMATE: u64 = 20;

/// Runs (or resumes) the capacity search of every (model, workload) in a
/// seeded shuffled order, saving after every probe. `Ok(false)`: stopped
/// by a signal.
pub fn run(ctx: &CellContext, run: &mut RunFile, run_dir: &Path, bar: ProgressBar) -> Result<bool> {
    let config = ctx.config;
    let settings = config
        .search
        .clone()
        .ok_or_else(|| anyhow!("not a capacity-search run"))?;
    let mut pairs: Vec<(String, String)> = config
        .workloads
        .iter()
        .flat_map(|w| {
            config
                .models
                .iter()
                .map(move |m| (m.clone(), w.name.clone()))
        })
        .collect();
    pairs.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    bar.set_length(pairs.len() as u64 * FIRST_ESTIMATE);
    let mut progress = Progress {
        bar,
        pairs_total: pairs.len(),
        pairs_done: 0,
        probes_done: 0,
    };
    // A search that ended on the machine's noise is searched once more at
    // the end of the run, after the noisy stretch, its probes kept.
    let mut queue: std::collections::VecDeque<(String, String, Vec<ProbeRecord>)> =
        pairs.into_iter().map(|(m, w)| (m, w, Vec::new())).collect();
    while let Some((model, workload, earlier)) = queue.pop_front() {
        let done = run
            .capacities
            .iter()
            .find(|c| c.model == model && c.workload == workload)
            .map(|c| c.probes.len());
        if let Some(probes) = done {
            progress.bar.inc(probes as u64);
            progress.probes_done += probes as u64;
            progress.pair_done();
            continue;
        }
        let again = !earlier.is_empty();
        let mut repeats = HashMap::new();
        for p in &earlier {
            *repeats.entry((p.clients, p.workers)).or_insert(0) += 1;
        }
        let pair = pair::Pair {
            ctx,
            run: &mut *run,
            run_dir,
            progress: &mut progress,
            slo: config.slo_for(&workload)?,
            model: &model,
            workload: &workload,
            repeats,
            probes: earlier,
        };
        let record = match pair.search(&settings) {
            Ok(r) => r,
            Err(Stop::Interrupted) => return Ok(false),
            Err(Stop::Failed(e)) => {
                return Err(e).with_context(|| format!("search {model} under {workload}"))
            }
        };
        if !again && ended_on_noise(&record.probes) {
            tracing::info!(%model, %workload, "the machine's noise ended a probe: searched again at the end");
            queue.push_back((model, workload, record.probes));
            continue;
        }
        tracing::info!(%model, %workload, capacity = %record.interval.label(record.clients), workers = record.workers, "capacity found");
        run.capacities.push(record);
        run.save(run_dir)?;
        progress.pair_done();
    }
    progress.bar.finish_and_clear();
    Ok(true)
}

/// Whether a probe of the search counted as the machine's (every try of it
/// stalled).
pub fn ended_on_noise(probes: &[ProbeRecord]) -> bool {
    probes
        .iter()
        .any(|p| p.outcome == Outcome::Machine && !p.retried)
}

/// The run's capacity records grouped by workload, each in model order.
pub fn by_workload(run: &RunFile) -> Vec<(String, Vec<&CapacityRecord>)> {
    run.config
        .workloads
        .iter()
        .map(|w| {
            let records = run
                .config
                .models
                .iter()
                .filter_map(|m| {
                    run.capacities
                        .iter()
                        .find(|c| &c.model == m && c.workload == w.name)
                })
                .collect();
            (w.name.clone(), records)
        })
        .filter(|(_, r): &(String, Vec<&CapacityRecord>)| !r.is_empty())
        .collect()
}

/// The recommendation per workload, from the run's capacity records.
pub fn recommendations(run: &RunFile) -> Vec<(String, recommend::Recommendation)> {
    by_workload(run)
        .into_iter()
        .map(|(w, records)| {
            let contenders: Vec<recommend::Contender> = records
                .iter()
                .map(|r| recommend::Contender {
                    model: r.model.clone(),
                    clients: r.clients,
                    interval: r.interval,
                    cpu_us: r.cpu_us,
                    pss_kib: r.pss_kib,
                })
                .collect();
            (w, recommend::recommend(&contenders))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use workloads::WorkSpec;

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
