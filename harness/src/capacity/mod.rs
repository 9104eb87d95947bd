//! Capacity at an SLO: for each (model, workload), the most clients the
//! model serves validly, without loss and within the SLO, at its best
//! worker count, confirmed by repeats into an interval. [`search`] holds
//! the search rule, [`interval`] the interval, [`recommend`] the tie rule;
//! this module runs them on real probes (fresh, warmed-up cells) and
//! records every probe.

pub mod interval;
pub mod recommend;
pub mod search;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::{anyhow, Context, Result};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use workloads::WorkPlan;

use crate::bench::cell::{run_cell, CellContext, CellResult};
use crate::bench::config::{CellKey, RunConfig, SearchSettings};
use crate::bench::results::RunFile;
use crate::bench::slo::Slo;
use crate::fleet::Rate;
use crate::units::fmt_ns;
use crate::verdict::Status;
use interval::Interval;
use recommend::Range;
use search::{Found, LimitedBy, Outcome, Probe};

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
    /// passed most of its probes (see [`interval::point`]).
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
    /// Every probe, in order.
    pub probes: Vec<ProbeRecord>,
}

/// A search interrupted by SIGINT/SIGTERM, or a probe that could not run.
enum Stop {
    Interrupted,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
    }
}

/// A probe's classification.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    /// Pass, fail or generator-limited.
    pub outcome: Outcome,
    /// Why it did not pass (empty when it passed).
    pub why: String,
    /// A failure one stall can cause: a valid cell over its latency bound,
    /// or a late generator (overloads, loss and errors are not).
    pub soft: bool,
}

/// Whether a probe passed: valid, no loss, within the SLO (`--slo`, else
/// the workload's default for the probe's window); generator-limited when
/// the fleet could not keep its schedule on its own account.
pub fn classify(cell: &CellResult, slo: Option<&Slo>, plan: Option<&WorkPlan>) -> Classified {
    let reasons = &cell.verdict.reasons;
    let (outcome, why, soft) = if reasons
        .iter()
        .any(|r| r == crate::verdict::GENERATOR_SATURATED)
    {
        (Outcome::Generator, reasons.join("; "), true)
    } else if cell.verdict.status != Status::Valid {
        (Outcome::Fail, reasons.join("; "), false)
    } else {
        let default = Slo::default_for(cell.derived.batch_window_us, plan);
        let breaches = slo.unwrap_or(&default).breach(cell);
        if breaches.is_empty() {
            (Outcome::Pass, String::new(), false)
        } else {
            (Outcome::Fail, format!("SLO: {}", breaches.join(", ")), true)
        }
    };
    Classified { outcome, why, soft }
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

/// The text of an SLO for records: `p99 <= 3ms, no loss`.
fn slo_label(slo: &Slo) -> String {
    let mut parts: Vec<String> = slo
        .latency
        .iter()
        .map(|(n, d)| format!("{n} <= {}", fmt_ns(d.as_nanos() as u64)))
        .collect();
    parts.push(match slo.loss {
        Some(0) | None => "no loss".to_string(),
        Some(n) => format!("loss <= {n}"),
    });
    parts.join(", ")
}

/// The progress of a search run: probes done out of an estimate that is
/// refined as (model, workload) pairs finish.
struct Progress {
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

/// How many more worker counts a full search tries while each one buys
/// more capacity (none with `--quick`).
const FOLLOW_STEPS: usize = 3;

/// Most steps below a knee that failed a repeat, looking for a size that
/// passes every repeat.
const STEP_DOWN: usize = 3;

/// One tolerance below `n` (at least one client).
fn step_down(n: u32, params: &search::Params) -> u32 {
    n.saturating_sub(((params.tolerance * n as f64) as u32).max(1))
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
    let slo = match &config.slo {
        Some(s) => Some(
            s.parse::<Slo>()
                .map_err(|e| anyhow!("invalid --slo: {e}"))?,
        ),
        None => None,
    };
    for (model, workload) in pairs {
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
        let pair = Pair {
            ctx,
            run: &mut *run,
            run_dir,
            progress: &mut progress,
            slo: slo.as_ref(),
            model: &model,
            workload: &workload,
            repeats: HashMap::new(),
            probes: Vec::new(),
        };
        let record = match pair.search(&settings) {
            Ok(r) => r,
            Err(Stop::Interrupted) => return Ok(false),
            Err(Stop::Failed(e)) => {
                return Err(e).with_context(|| format!("search {model} under {workload}"))
            }
        };
        tracing::info!(%model, %workload, capacity = %record.interval.label(record.clients), workers = record.workers, "capacity found");
        run.capacities.push(record);
        run.save(run_dir)?;
        progress.pair_done();
    }
    progress.bar.finish_and_clear();
    Ok(true)
}

/// The search of one (model, workload).
struct Pair<'a, 'r> {
    ctx: &'a CellContext<'a>,
    run: &'r mut RunFile,
    run_dir: &'a Path,
    progress: &'r mut Progress,
    slo: Option<&'a Slo>,
    model: &'a str,
    workload: &'a str,
    /// Probes so far per (clients, workers): the next probe's repeat index.
    repeats: HashMap<(u32, usize), u32>,
    probes: Vec<ProbeRecord>,
}

impl Pair<'_, '_> {
    fn config(&self) -> &RunConfig {
        self.ctx.config
    }

    /// Runs one probe, or reuses it from the run file when resuming (the
    /// search is deterministic given its outcomes, so a resumed search asks
    /// for the same probes in the same order).
    fn probe(&mut self, clients: u32, workers: usize, confirm: bool) -> Result<Probe, Stop> {
        let repeat = self.repeats.entry((clients, workers)).or_insert(0);
        let key = CellKey {
            model: self.model.to_string(),
            workload: self.workload.to_string(),
            clients,
            workers: Some(workers),
            repeat: *repeat,
        };
        *repeat += 1;
        let index = match self.run.cells.iter().position(|c| c.key == key) {
            Some(i) => i,
            None => {
                self.progress.bar.set_message(format!(
                    "{} {} w={workers} @ {clients} clients",
                    self.model, self.workload
                ));
                let cell =
                    run_cell(self.ctx, &key).with_context(|| format!("probe {}", key.id()))?;
                if self.ctx.stop.load(Ordering::SeqCst) {
                    return Err(Stop::Interrupted); // a probe cut short is not kept
                }
                self.run.cells.push(cell);
                self.run.save(self.run_dir)?;
                self.run.cells.len() - 1
            }
        };
        let cell = &self.run.cells[index];
        let plan = self.config().workload(self.workload).map(|w| &w.plan);
        let Classified { outcome, why, soft } = classify(cell, self.slo, plan);
        let util = self.util(index);
        self.probes.push(ProbeRecord {
            cell: index,
            clients,
            workers,
            outcome,
            why: why.clone(),
            confirm,
        });
        let p99 = cell.derived.p99_ns;
        self.progress.probe_done(|| {
            format!(
                "{} {} w={workers} {clients} clients: {outcome:?} p99 {}{}",
                self.model,
                self.workload,
                fmt_ns(p99),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            )
        });
        Ok(Probe {
            outcome,
            util: Some(util),
            soft,
        })
    }

    fn search_at(
        &mut self,
        settings: &SearchSettings,
        workers: usize,
        seed: Option<u32>,
    ) -> Result<Found, Stop> {
        search::search(&settings.params, seed, |n| self.probe(n, workers, false))
    }

    fn search(mut self, settings: &SearchSettings) -> Result<CapacityRecord, Stop> {
        let config = self.ctx.config;
        let model =
            models::find(self.model).ok_or_else(|| anyhow!("unknown model {}", self.model))?;
        let cpus = config.server_cpus.len().max(1);
        let plan = config
            .workload(self.workload)
            .map(|w| w.plan.clone())
            .ok_or_else(|| anyhow!("workload {} not in the run", self.workload))?;
        let default_workers = config
            .workers
            .unwrap_or_else(|| model.default_workers(cpus));
        let mut sweep = Vec::new();
        let first = self.search_at(settings, default_workers, None)?;
        sweep.push((default_workers, first));
        let knee_util = self.util_at(first.capacity, default_workers);
        let rate = match config.rate {
            Rate::Hz(hz) => hz,
            Rate::Max => 0,
        };
        let io_waits = io_waits_at_knee(
            first.capacity,
            knee_util,
            &plan,
            rate,
            settings.params.max_clients,
        );
        if settings.sweep {
            let mut counts = model.worker_candidates(cpus, io_waits);
            let follows_io = io_waits > 0 && counts.contains(&io_waits);
            if config.quick {
                // A first look: the default, and the io estimate where a
                // wait occupies a worker.
                counts.retain(|&w| follows_io && w == io_waits);
            }
            counts.retain(|&w| w != default_workers);
            for w in counts {
                let best = sweep.iter().map(|(_, f)| f.capacity).max().unwrap_or(1);
                let found = self.search_at(settings, w, Some(best.max(1)))?;
                sweep.push((w, found));
            }
            // Follow the knee: while more workers bought more capacity,
            // size the next count for the new knee (Little's law, with the
            // same headroom), at most FOLLOW_STEPS times.
            let mut last = io_waits;
            let follow = if config.quick { 0 } else { FOLLOW_STEPS };
            for _ in 0..follow {
                if !follows_io {
                    break;
                }
                let Some(&(_, at_last)) = sweep.iter().find(|(w, _)| *w == last) else {
                    break;
                };
                let best_other = sweep
                    .iter()
                    .filter(|(w, _)| *w != last)
                    .map(|(_, f)| f.capacity)
                    .max()
                    .unwrap_or(0);
                let next = io_waits_for(at_last.capacity, &plan, rate);
                if at_last.capacity <= best_other
                    || at_last.limited_by == LimitedBy::Generator
                    || next <= last
                    || sweep.iter().any(|(w, _)| *w == next)
                {
                    break;
                }
                let found = self.search_at(settings, next, Some(at_last.capacity.max(1)))?;
                sweep.push((next, found));
                last = next;
            }
        }
        // Best: most clients; on a tie, the count searched first (the
        // default first).
        let (workers, best) = sweep
            .iter()
            .copied()
            .fold(None::<(usize, Found)>, |acc, (w, f)| match acc {
                Some((_, b)) if b.capacity >= f.capacity => acc,
                _ => Some((w, f)),
            })
            .ok_or_else(|| anyhow!("no worker count searched"))?;
        for _ in 0..settings.confirm {
            if best.capacity > 0 {
                self.probe(best.capacity, workers, true)?;
            }
            if let Some(next) = best.next.filter(|_| settings.confirm_next) {
                self.probe(next, workers, true)?;
            }
        }
        // A knee that failed a repeat gives no steady low end: step down a
        // tolerance at a time (at most STEP_DOWN times) until a size passes
        // every repeat, so the interval has one.
        let mut below = best.capacity;
        for _ in 0..STEP_DOWN {
            let at_best = self.outcomes_at(workers);
            let low = interval::interval(&at_best, best.capacity).low;
            if (low == 0 && below <= 1) || low >= step_down(below, &settings.params) {
                break;
            }
            below = step_down(below, &settings.params);
            if below == 0 {
                break;
            }
            for _ in 0..settings.confirm.max(1) {
                self.probe(below, workers, true)?;
            }
        }
        let at_best = self.outcomes_at(workers);
        let interval = interval::interval(&at_best, best.capacity);
        let clients = interval::point(&at_best, best.capacity);
        // The bound was the generator's only if no repeat at or above the
        // capacity failed on the server's account.
        let limited_by = match best.limited_by {
            LimitedBy::Generator
                if at_best
                    .iter()
                    .any(|&(n, o)| n >= clients && o == Outcome::Fail) =>
            {
                LimitedBy::Server
            }
            l => l,
        };
        let knee: Vec<&CellResult> = self
            .probes
            .iter()
            .filter(|p| p.workers == workers && p.clients == clients && p.outcome == Outcome::Pass)
            .map(|p| &self.run.cells[p.cell])
            .collect();
        let median_u = |f: fn(&CellResult) -> u64| {
            let mut v: Vec<u64> = knee.iter().map(|c| f(c)).collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(0)
        };
        let slo = match self.slo {
            Some(s) => slo_label(s),
            None => slo_label(&Slo::default_for(
                config.batch_window_for(clients.max(1)).as_micros() as u64,
                Some(&plan),
            )),
        };
        Ok(CapacityRecord {
            model: self.model.to_string(),
            workload: self.workload.to_string(),
            workers,
            clients,
            interval,
            limited_by,
            slo,
            p99_ns: median_u(|c| c.derived.p99_ns),
            service_p99_ns: median_u(|c| c.derived.service_p99_ns),
            cpu_us: Range::of(
                &knee
                    .iter()
                    .map(|c| c.derived.cpu_us_per_packet)
                    .collect::<Vec<_>>(),
            ),
            pss_kib: Range::of(
                &knee
                    .iter()
                    .map(|c| c.derived.peak_pss_kib as f64)
                    .collect::<Vec<_>>(),
            ),
            io_waits,
            sweep: sweep
                .into_iter()
                .map(|(workers, f)| SweepPoint {
                    workers,
                    capacity: f.capacity,
                    next: f.next,
                    limited_by: f.limited_by,
                })
                .collect(),
            probes: self.probes,
        })
    }

    /// Every outcome so far at `workers` (fleet size, outcome).
    fn outcomes_at(&self, workers: usize) -> Vec<(u32, Outcome)> {
        self.probes
            .iter()
            .filter(|p| p.workers == workers)
            .map(|p| (p.clients, p.outcome))
            .collect()
    }

    /// How busy the server of cell `index` was: its CPU over the window as
    /// a share of the server's CPUs.
    fn util(&self, index: usize) -> f64 {
        let cpus = self.config().server_cpus.len().max(1) as f64;
        self.run.cells[index].derived.server_cpu_pct / 100.0 / cpus
    }

    /// Server utilisation of the passing probe at `clients` (0 if none).
    fn util_at(&self, clients: u32, workers: usize) -> f64 {
        self.probes
            .iter()
            .rev()
            .find(|p| p.clients == clients && p.workers == workers && p.outcome == Outcome::Pass)
            .map_or(0.0, |p| self.util(p.cell))
    }
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
    fn steps_down_by_the_tolerance_to_one_client() {
        let p = |tolerance| search::Params {
            max_clients: 100,
            tolerance,
        };
        // (from, tolerance, to)
        let table = [(40, 0.05, 38), (10, 0.05, 9), (1, 0.05, 0), (40, 0.25, 30)];
        for (from, tol, to) in table {
            assert_eq!(step_down(from, &p(tol)), to, "{from} at {tol}");
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
