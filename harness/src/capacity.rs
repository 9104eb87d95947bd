//! Capacity at an SLO on real probes: runs (or resumes) the search of
//! every (model, workload) of a run (the `search` crate's rules) on fresh,
//! warmed-up cells, saving the run as it goes (at most every 2 s, and when
//! it ends or stops); searches again a pair whose search ended on the
//! machine's noise; then confirms every pair's knee in rounds over all
//! pairs, so that its repeats fall at different times of the run. The machine's speed is checked at the start and
//! before each round, and every interval allows for its spread.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use record::capacity::{
    ended_on_noise, equal_load_of, LimitedBy, Outcome, ProbeRecord, EQUAL_LOAD_REPEATS,
};
use record::cell::{CellKey, CellResult};
use record::config::SearchSettings;
use record::efficiency::{self, FloorPoint};
use record::kernel_calibration::{SpeedCheck, KERNEL_ROUNDS};
use record::past_knee::{self, LoadPoint, PastKnee};
use record::recommend;
use record::run::RunFile;
use search::pair::{repeats_of, Pair, Probes, Stop};

use crate::bench::cell::{run_cell, CellContext};

/// The progress of a search run: probes done out of an estimate that is
/// refined as (model, workload) pairs finish.
struct Progress {
    bar: ProgressBar,
    pairs_total: usize,
    pairs_done: usize,
    probes_done: u64,
}

impl Progress {
    fn probe_done(&mut self, line: &dyn Fn() -> String) {
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
/// seeded shuffled order, saving as it goes. `Ok(false)`: stopped
/// by a signal.
pub fn run(ctx: &CellContext, run: &mut RunFile, run_dir: &Path, bar: ProgressBar) -> Result<bool> {
    let mut saver = Saver::new(run_dir);
    let done = search_all(ctx, run, &mut saver, bar);
    // Whatever happened, what was measured is kept.
    saver.now(run)?;
    done
}

/// [`run`]'s work: every pair's search, the rounds and the equal loads.
fn search_all(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    bar: ProgressBar,
) -> Result<bool> {
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
    let mut queue: VecDeque<(String, String, Vec<ProbeRecord>)> =
        pairs.into_iter().map(|(m, w)| (m, w, Vec::new())).collect();
    check_speed(run, saver)?;
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
        let repeats = repeats_of(&earlier);
        let (model_impl, plan, slo) = pair_inputs(config, &model, &workload)?;
        let speed_spread = run.speed_spread();
        let mut cells = Cells {
            ctx,
            run: &mut *run,
            saver: &mut *saver,
            progress: &mut progress,
            model: model_impl,
        };
        let pair = Pair {
            probes_from: &mut cells,
            config,
            slo,
            model: &model,
            workload: &workload,
            plan,
            repeats,
            probes: earlier,
            speed_spread,
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
        tracing::info!(%model, %workload, capacity = %record.interval.label(record.clients), workers = record.workers, "searched; to be confirmed");
        run.capacities.push(record);
        saver.soon(run)?;
        progress.pair_done();
    }
    let done = confirm_rounds(ctx, run, saver, &settings, &mut progress)?
        && equal_loads(ctx, run, saver, &mut progress)?
        && past_knees(ctx, run, saver, &settings, &mut progress)?
        && floor(ctx, run, saver, &settings, &mut progress)?;
    progress.bar.finish_and_clear();
    Ok(done)
}

/// Probes every server-limited capacity at 1.5x and 2x its clients (within
/// the search's bound, at its worker count; a search's probe at that size
/// is used as it is) and records what it processed there and how evenly.
fn past_knees(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    settings: &SearchSettings,
    progress: &mut Progress,
) -> Result<bool> {
    for i in 0..run.capacities.len() {
        let record = &run.capacities[i];
        let at = record.probes.iter().find(|p| {
            p.clients == record.clients && p.workers == record.workers && p.outcome == Outcome::Pass
        });
        let (Some(at), LimitedBy::Server) = (at, record.limited_by) else {
            continue;
        };
        let (model, workload, workers, at) = (
            record.model.clone(),
            record.workload.clone(),
            record.workers,
            at.cell,
        );
        let searched = |clients: u32| {
            record
                .probes
                .iter()
                .find(|p| p.clients == clients && p.workers == workers)
                .map(|p| p.cell)
        };
        let sizes = past_knee::sizes(record.clients, settings.params.max_clients);
        let known: Vec<(u32, Option<usize>)> = sizes.iter().map(|&n| (n, searched(n))).collect();
        let mut cells = Cells {
            ctx,
            run: &mut *run,
            saver: &mut *saver,
            progress: &mut *progress,
            model: pair_inputs(ctx.config, &model, &workload)?.0,
        };
        let mut past = Vec::new();
        for (clients, cell) in known {
            let cell = match cell {
                Some(c) => c,
                None => {
                    let key = CellKey {
                        model: model.clone(),
                        workload: workload.clone(),
                        clients,
                        workers: Some(workers),
                        repeat: 0,
                    };
                    match cells.cell(&key) {
                        Ok((cell, _)) => cell,
                        Err(Stop::Interrupted) => return Ok(false),
                        Err(Stop::Failed(e)) => return Err(e),
                    }
                }
            };
            cells
                .probe_done(&|| format!("{model} {workload} at {clients} clients (past the knee)"));
            past.push(LoadPoint::of(cell, cells.cells()));
        }
        run.capacities[i].past_knee = Some(PastKnee {
            at: LoadPoint::of(at, &run.cells),
            past,
        });
        saver.soon(run)?;
    }
    Ok(true)
}

/// Probes the bare loop (`models::baseline`) at the floor's loads, under
/// the run's first workload (it does no work, so any gives the same
/// frames), and records its CPU per frame at each.
fn floor(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    settings: &SearchSettings,
    progress: &mut Progress,
) -> Result<bool> {
    let Some(workload) = ctx.config.workloads.first().map(|w| w.name.clone()) else {
        return Ok(true);
    };
    let bare = models::baseline::BASELINE;
    let mut cells = Cells {
        ctx,
        run: &mut *run,
        saver: &mut *saver,
        progress: &mut *progress,
        model: bare,
    };
    let mut points = Vec::new();
    for clients in efficiency::floor_loads(settings.params.max_clients) {
        let key = CellKey {
            model: bare.name().to_string(),
            workload: workload.clone(),
            clients,
            workers: Some(1),
            repeat: 0,
        };
        let cell = match cells.cell(&key) {
            Ok((cell, _)) => cell,
            Err(Stop::Interrupted) => return Ok(false),
            Err(Stop::Failed(e)) => return Err(e),
        };
        cells.probe_done(&|| format!("the bare loop at {clients} clients (the floor)"));
        let c = &cells.cells()[cell];
        let valid = c.verdict.status == record::verdict::Status::Valid;
        points.push(FloorPoint {
            clients,
            cell,
            cpu_us: if valid {
                c.derived.cpu_us_per_packet
            } else {
                0.0
            },
        });
    }
    run.floor = points;
    saver.soon(run)?;
    Ok(true)
}

/// What a (model, workload) pair of the run is searched with: the model,
/// the workload's work and its SLO.
fn pair_inputs(
    config: &record::config::RunConfig,
    model: &str,
    workload: &str,
) -> Result<(
    &'static dyn models::Model,
    workloads::WorkPlan,
    record::slo::Slo,
)> {
    let plan = config
        .workload(workload)
        .map(|w| w.plan.clone())
        .ok_or_else(|| anyhow!("workload {workload} not in the run"))?;
    let model = models::find(model).ok_or_else(|| anyhow!("unknown model {model}"))?;
    Ok((model, plan, config.slo_for(workload)?))
}

/// Probes per pair and round the progress bar expects.
const ROUND_ESTIMATE: u64 = 2;

/// The confirmation rounds: while a pair owes one, every pair owing the
/// most gets its next round, in the order the pairs were searched (a
/// resumed run asks for the same cells). `Ok(false)`: stopped by a signal.
fn confirm_rounds(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    settings: &SearchSettings,
    progress: &mut Progress,
) -> Result<bool> {
    let owed: u64 = run
        .capacities
        .iter()
        .map(|c| u64::from(c.rounds_left))
        .sum();
    progress
        .bar
        .set_length(progress.probes_done + owed * ROUND_ESTIMATE);
    while let Some(most) = run
        .capacities
        .iter()
        .map(|c| c.rounds_left)
        .max()
        .filter(|&m| m > 0)
    {
        check_speed(run, saver)?;
        let speed_spread = run.speed_spread();
        for i in 0..run.capacities.len() {
            if run.capacities[i].rounds_left != most {
                continue;
            }
            let record = run.capacities[i].clone();
            let (model, workload) = (record.model.clone(), record.workload.clone());
            let (model_impl, plan, slo) = pair_inputs(ctx.config, &model, &workload)?;
            let mut cells = Cells {
                ctx,
                run: &mut *run,
                saver: &mut *saver,
                progress: &mut *progress,
                model: model_impl,
            };
            let pair = Pair {
                probes_from: &mut cells,
                config: ctx.config,
                slo,
                model: &model,
                workload: &workload,
                plan,
                repeats: repeats_of(&record.probes),
                probes: record.probes.clone(),
                speed_spread,
            };
            let confirmed = match pair.confirm_round(settings, record) {
                Ok(r) => r,
                Err(Stop::Interrupted) => return Ok(false),
                Err(Stop::Failed(e)) => {
                    return Err(e).with_context(|| format!("confirm {model} under {workload}"))
                }
            };
            if confirmed.rounds_left == 0 {
                tracing::info!(%model, %workload, capacity = %confirmed.interval.label(confirmed.clients), workers = confirmed.workers, "capacity found");
            }
            run.capacities[i] = confirmed;
            saver.soon(run)?;
        }
    }
    Ok(true)
}

/// Where models tie, probes every tied model at the tie's common load
/// ([`recommend::common_load`]) at its reported worker count until it has
/// [`EQUAL_LOAD_REPEATS`] probes there (the search's count), so the
/// tie-break compares them under one offered load. Workloads in the run's order, tied models by rank; a resumed run
/// asks for the same cells. `Ok(false)`: stopped by a signal.
fn equal_loads(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    progress: &mut Progress,
) -> Result<bool> {
    for (workload, contenders) in record::run::contenders(run) {
        let tied = recommend::tied(&contenders);
        if tied.len() < 2 {
            continue;
        }
        let load = recommend::common_load(&tied);
        let models: Vec<String> = tied.iter().map(|c| c.model.clone()).collect();
        for model in models {
            let Some(i) = run
                .capacities
                .iter()
                .position(|c| c.model == model && c.workload == workload)
            else {
                continue;
            };
            // The search's own probes at that load count first; only the
            // repeats still missing run.
            let record = &run.capacities[i];
            let workers = record.workers;
            let searched: Vec<usize> = record
                .probes
                .iter()
                .filter(|p| p.clients == load && p.workers == workers)
                .map(|p| p.cell)
                .collect();
            let first = searched.len() as u32;
            let mut cells = Cells {
                ctx,
                run: &mut *run,
                saver: &mut *saver,
                progress: &mut *progress,
                model: pair_inputs(ctx.config, &model, &workload)?.0,
            };
            let mut at = searched;
            for repeat in first..EQUAL_LOAD_REPEATS.max(first) {
                let key = CellKey {
                    model: model.clone(),
                    workload: workload.clone(),
                    clients: load,
                    workers: Some(workers),
                    repeat,
                };
                match cells.cell(&key) {
                    Ok((cell, _)) => at.push(cell),
                    Err(Stop::Interrupted) => return Ok(false),
                    Err(Stop::Failed(e)) => return Err(e),
                }
                cells.probe_done(&|| format!("{model} {workload} at {load} clients (equal load)"));
            }
            run.capacities[i].equal_load = Some(equal_load_of(load, &at, &run.cells));
            saver.soon(run)?;
        }
    }
    Ok(true)
}

/// Times the kernel's rounds again (as many as the calibration's) on the
/// server's first CPU, idle between probes, and saves them with the run:
/// the machine's speed now, for the spread every interval allows for.
fn check_speed(run: &mut RunFile, saver: &mut Saver) -> Result<()> {
    let cpu = run.config.server_cpus.first().copied();
    let rounds = std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            // This thread only; where it cannot be pinned it times the
            // harness's CPUs instead, which share the machine's speed.
            let _ = crate::cpus::pin(&[cpu]);
        }
        workloads::kernel::round_rates(KERNEL_ROUNDS)
    })
    .join()
    .map_err(|_| anyhow!("the machine's speed check panicked"))?;
    run.speed_checks.push(SpeedCheck {
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        rounds,
    });
    saver.soon(run)
}

/// Saves the run as it goes: at most every [`SAVE_EVERY`] (run.json grows
/// to megabytes over hundreds of probes, and rewriting it after each one
/// cost seconds of a quick run), and at once when asked. A run killed
/// outright loses at most that long of probes, which a resumed run
/// measures again; an interrupted or failed one saves everything.
struct Saver {
    dir: std::path::PathBuf,
    last: Option<Instant>,
}

/// Longest a measured probe waits to be saved.
const SAVE_EVERY: Duration = Duration::from_secs(2);

impl Saver {
    fn new(dir: &Path) -> Self {
        Saver {
            dir: dir.to_path_buf(),
            last: None,
        }
    }

    /// Saves unless it saved within [`SAVE_EVERY`].
    fn soon(&mut self, run: &RunFile) -> Result<()> {
        if self.last.is_some_and(|t| t.elapsed() < SAVE_EVERY) {
            return Ok(());
        }
        self.now(run)
    }

    /// Saves now.
    fn now(&mut self, run: &RunFile) -> Result<()> {
        run.save(&self.dir)?;
        self.last = Some(Instant::now());
        Ok(())
    }
}

/// A search's probes as real cells of the run: reused when resuming, else
/// run now and saved with the run.
struct Cells<'a, 'r> {
    ctx: &'a CellContext<'a>,
    run: &'r mut RunFile,
    saver: &'r mut Saver,
    progress: &'r mut Progress,
    model: &'static dyn models::Model,
}

impl Probes for Cells<'_, '_> {
    type Error = anyhow::Error;

    fn cell(&mut self, key: &CellKey) -> Result<(usize, bool), Stop<anyhow::Error>> {
        if let Some(i) = self.run.cells.iter().position(|c| &c.key == key) {
            return Ok((i, false));
        }
        self.progress.bar.set_message(format!(
            "{} {} w={} @ {} clients",
            key.model,
            key.workload,
            key.workers.unwrap_or(0),
            key.clients
        ));
        let cell = run_cell(self.ctx, key).with_context(|| format!("probe {}", key.id()))?;
        if self.ctx.stop.load(Ordering::SeqCst) {
            return Err(Stop::Interrupted); // a probe cut short is not kept
        }
        self.run.cells.push(cell);
        self.saver.soon(self.run)?;
        Ok((self.run.cells.len() - 1, true))
    }

    fn cells(&self) -> &[CellResult] {
        &self.run.cells
    }

    fn probe_done(&mut self, line: &dyn Fn() -> String) {
        self.progress.probe_done(line);
    }

    fn default_workers(&self) -> usize {
        self.model
            .default_workers(self.ctx.config.server_cpus.len().max(1))
    }

    fn worker_candidates(&self, io_waits: usize) -> Vec<usize> {
        self.model
            .worker_candidates(self.ctx.config.server_cpus.len().max(1), io_waits)
    }
}
