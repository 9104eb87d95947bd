//! The probes after a search's rounds, each at a load chosen from the
//! capacities: the tied models at their common load (repeated, for the
//! comparison at equal load), every model at 1.5x and 2x its capacity
//! (past the knee, each client's latency recorded apart), and the bare loop
//! at loads up to the search's bound (the floor).

use anyhow::Result;
use record::capacity::{equal_load_of, LimitedBy, EQUAL_LOAD_REPEATS};
use record::cell::CellKey;
use record::config::SearchSettings;
use record::efficiency::{self, FloorPoint};
use record::past_knee::{self, LoadPoint, PastKnee};
use record::recommend;
use record::run::RunFile;
use search::pair::{Probes, Stop};

use crate::bench::cell::CellContext;
use crate::probing::{pair_inputs, Cells, Progress, Saver};

/// A probe after the search: the cell of `key`, run now (a resumed run's,
/// or a search's own with the same key, reused), counted on the progress
/// bar as `why`. `Ok(None)`: stopped by a signal.
fn probe(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    progress: &mut Progress,
    key: &CellKey,
    why: &str,
) -> Result<Option<usize>> {
    let mut cells = Cells {
        ctx,
        run,
        saver,
        progress,
        model: pair_inputs(ctx.config, &key.model, &key.workload)?.0,
    };
    let cell = match cells.cell(key) {
        Ok((cell, _)) => cell,
        Err(Stop::Interrupted) => return Ok(None),
        Err(Stop::Failed(e)) => return Err(e),
    };
    cells.probe_done(&|| {
        format!(
            "{} {} at {} clients ({why})",
            key.model, key.workload, key.clients
        )
    });
    Ok(Some(cell))
}

/// The key of `model`'s probe under `workload` at `clients`.
fn key(model: &str, workload: &str, clients: u32, workers: usize, repeat: u32) -> CellKey {
    CellKey {
        model: model.to_string(),
        workload: workload.to_string(),
        clients,
        workers: Some(workers),
        repeat,
    }
}

/// The index of `model`'s capacity record under `workload`.
fn record_of(run: &RunFile, model: &str, workload: &str) -> Option<usize> {
    run.capacities
        .iter()
        .position(|c| c.model == model && c.workload == workload)
}

/// Where models tie, probes every tied model at the tie's common load
/// ([`recommend::common_load`]) at its reported worker count until it has
/// [`EQUAL_LOAD_REPEATS`] probes there (the search's count), so the
/// tie-break compares them under one offered load. Workloads in the run's
/// order, tied models by rank; a resumed run asks for the same cells.
/// `Ok(false)`: stopped by a signal.
pub(crate) fn equal_loads(
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
            let Some(i) = record_of(run, &model, &workload) else {
                continue;
            };
            // The search's own probes at that load count first; only the
            // repeats still missing run.
            let workers = run.capacities[i].workers;
            let mut at: Vec<usize> = run.capacities[i]
                .probes
                .iter()
                .filter(|p| p.clients == load && p.workers == workers)
                .map(|p| p.cell)
                .collect();
            let first = at.len() as u32;
            for repeat in first..EQUAL_LOAD_REPEATS.max(first) {
                let k = key(&model, &workload, load, workers, repeat);
                match probe(ctx, run, saver, progress, &k, "equal load")? {
                    Some(cell) => at.push(cell),
                    None => return Ok(false),
                }
            }
            run.capacities[i].equal_load = Some(equal_load_of(load, &at, &run.cells));
            saver.soon(run)?;
        }
    }
    Ok(true)
}

/// Every model of a workload at one common load, the largest every one of
/// them passed (the smallest low end of their intervals, those that passed
/// nothing left out): one probe each at its capacity's worker count (the
/// search's own probe there if it made one), for where the time went and
/// CPU per frame compared at one load. `Ok(false)`: stopped by a signal.
pub(crate) fn common_loads(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    progress: &mut Progress,
) -> Result<bool> {
    for (workload, contenders) in record::run::contenders(run) {
        if contenders.len() < 2 {
            continue;
        }
        // A model that passed nothing (a low end of 0) has no load to give.
        let passed: Vec<_> = contenders.iter().filter(|c| c.interval.low > 0).collect();
        let load = recommend::common_load(&passed);
        for model in contenders.iter().map(|c| c.model.clone()) {
            let Some(i) = record_of(run, &model, &workload) else {
                continue;
            };
            let k = key(&model, &workload, load, run.capacities[i].workers, 0);
            let Some(cell) = probe(ctx, run, saver, progress, &k, "common load")? else {
                return Ok(false);
            };
            run.capacities[i].common_load = Some(equal_load_of(load, &[cell], &run.cells));
            saver.soon(run)?;
        }
    }
    Ok(true)
}

/// Probes every server-limited capacity at 1.5x and 2x its clients (within
/// the search's bound, at its worker count; a search's probe at that size
/// is used as it is), the server recording each client's latency apart,
/// and records what it processed there and how evenly. `Ok(false)`:
/// stopped by a signal.
pub(crate) fn past_knees(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    settings: &SearchSettings,
    progress: &mut Progress,
) -> Result<bool> {
    // The server records each client apart here: fairness is judged.
    let knee_ctx = CellContext {
        client_latency: true,
        ..ctx.clone()
    };
    for i in 0..run.capacities.len() {
        let record = &run.capacities[i];
        let at = record.probe_at_capacity();
        let (Some(at), LimitedBy::Server) = (at.map(|p| p.cell), record.limited_by) else {
            continue;
        };
        let (model, workload, workers) = (
            record.model.clone(),
            record.workload.clone(),
            record.workers,
        );
        let known: Vec<(u32, Option<usize>)> =
            past_knee::sizes(record.clients, settings.params.max_clients)
                .into_iter()
                .map(|n| {
                    let searched = record
                        .probes
                        .iter()
                        .find(|p| p.clients == n && p.workers == workers);
                    (n, searched.map(|p| p.cell))
                })
                .collect();
        let mut past = Vec::new();
        for (clients, searched) in known {
            let k = key(&model, &workload, clients, workers, 0);
            let cell = match searched {
                Some(c) => c,
                None => match probe(&knee_ctx, run, saver, progress, &k, "past the knee")? {
                    Some(c) => c,
                    None => return Ok(false),
                },
            };
            past.push(LoadPoint::of(cell, &run.cells));
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
/// frames), and records its CPU per frame at each. `Ok(false)`: stopped by
/// a signal.
pub(crate) fn floor(
    ctx: &CellContext,
    run: &mut RunFile,
    saver: &mut Saver,
    settings: &SearchSettings,
    progress: &mut Progress,
) -> Result<bool> {
    let Some(workload) = ctx.config.workloads.first().map(|w| w.name.clone()) else {
        return Ok(true);
    };
    let bare = models::baseline::BASELINE.name();
    let mut points = Vec::new();
    for clients in efficiency::floor_loads(settings.params.max_clients) {
        let k = key(bare, &workload, clients, 1, 0);
        let Some(cell) = probe(ctx, run, saver, progress, &k, "the floor")? else {
            return Ok(false);
        };
        let c = &run.cells[cell];
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

/// Probes the phases after the rounds will take, as far as the
/// capacities tell before the rounds (ties' repeats are not known yet):
/// for the progress bar's estimate.
pub(crate) fn expected_probes(run: &RunFile, settings: &SearchSettings) -> u64 {
    let bound = settings.params.max_clients;
    let past: usize = run
        .capacities
        .iter()
        .filter(|c| c.limited_by == LimitedBy::Server)
        .map(|c| past_knee::sizes(c.clients, bound).len())
        .sum();
    (run.capacities.len() + past + efficiency::floor_loads(bound).len()) as u64
}
