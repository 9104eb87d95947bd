//! Capacity at an SLO on real probes: runs (or resumes) the search of
//! every (model, workload) of a run (the `search` crate's rules) on fresh,
//! warmed-up cells, saving the run as it goes (at most every 2 s, and when
//! it ends or stops); searches again a pair whose search ended on the
//! machine's noise; then confirms every pair's knee in rounds over all
//! pairs, so that its repeats fall at different times of the run; then
//! the probes at loads the capacities chose ([`crate::after_search`]). The
//! machine's speed is checked at the start and before each round, and
//! every interval allows for its spread.

use std::collections::VecDeque;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use record::capacity::{ended_on_noise, ProbeRecord};
use record::config::SearchSettings;
use record::kernel_calibration::{SpeedCheck, KERNEL_ROUNDS};
use record::run::RunFile;
use search::pair::{repeats_of, Pair, Stop};

use crate::after_search::{common_loads, equal_loads, expected_probes, floor, past_knees};
use crate::bench::cell::CellContext;
use crate::probing::{pair_inputs, Cells, Progress, Saver, FIRST_ESTIMATE};

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
        live: ctx.live.clone(),
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
        if let Some(live) = &ctx.live {
            live.capacity(&record);
        }
        run.capacities.push(record);
        saver.soon(run)?;
        progress.pair_done();
    }
    let done = confirm_rounds(ctx, run, saver, &settings, &mut progress)?
        && equal_loads(ctx, run, saver, &mut progress)?
        && common_loads(ctx, run, saver, &mut progress)?
        && past_knees(ctx, run, saver, &settings, &mut progress)?
        && floor(ctx, run, saver, &settings, &mut progress)?;
    progress.bar.finish_and_clear();
    Ok(done)
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
        .set_length(progress.probes_done + owed * ROUND_ESTIMATE + expected_probes(run, settings));
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
