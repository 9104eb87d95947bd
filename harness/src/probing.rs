//! The probes of a capacity run as real cells: the progress bar, the
//! saver that keeps run.json current as it grows, and `Cells`, the
//! search's probes on this run's cells (reused when resuming).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use indicatif::ProgressBar;
use record::cell::{CellKey, CellResult};
use record::run::RunFile;
use search::pair::{Probes, Stop};

use crate::bench::cell::{run_cell, CellContext};

/// The progress of a search run: probes done out of an estimate that is
/// refined as (model, workload) pairs finish.
pub(crate) struct Progress {
    pub(crate) bar: ProgressBar,
    pub(crate) pairs_total: usize,
    pub(crate) pairs_done: usize,
    pub(crate) probes_done: u64,
    /// The live page, told of the progress too.
    pub(crate) live: Option<std::sync::Arc<crate::live::Live>>,
}

impl Progress {
    pub(crate) fn probe_done(&mut self, line: &dyn Fn() -> String) {
        self.probes_done += 1;
        self.bar.inc(1);
        self.tell_live();
        if self.bar.is_hidden() {
            eprintln!("[probe {}] {}", self.probes_done, line());
        }
    }

    pub(crate) fn pair_done(&mut self) {
        self.pairs_done += 1;
        let per_pair = self.probes_done as f64 / self.pairs_done as f64;
        let left = (self.pairs_total - self.pairs_done) as f64 * per_pair;
        self.bar.set_length(self.probes_done + left.round() as u64);
        self.tell_live();
    }

    fn tell_live(&self) {
        if let Some(live) = &self.live {
            live.progress(self.probes_done, self.bar.length().unwrap_or(0));
        }
    }
}

/// Probes expected per (model, workload) before any has run.
pub(crate) const FIRST_ESTIMATE: u64 = 20;

/// What a (model, workload) pair of the run is searched with: the model,
/// the workload's work and its SLO.
pub(crate) fn pair_inputs(
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

/// Saves the run as it goes: at most every [`SAVE_EVERY`] (run.json grows
/// to megabytes over hundreds of probes, and rewriting it after each one
/// cost seconds of a quick run), and at once when asked. A run killed
/// outright loses at most that long of probes, which a resumed run
/// measures again; an interrupted or failed one saves everything.
pub(crate) struct Saver {
    dir: std::path::PathBuf,
    last: Option<Instant>,
}

/// Longest a measured probe waits to be saved.
const SAVE_EVERY: Duration = Duration::from_secs(2);

impl Saver {
    pub(crate) fn new(dir: &Path) -> Self {
        Saver {
            dir: dir.to_path_buf(),
            last: None,
        }
    }

    /// Saves unless it saved within [`SAVE_EVERY`].
    pub(crate) fn soon(&mut self, run: &RunFile) -> Result<()> {
        if self.last.is_some_and(|t| t.elapsed() < SAVE_EVERY) {
            return Ok(());
        }
        self.now(run)
    }

    /// Saves now.
    pub(crate) fn now(&mut self, run: &RunFile) -> Result<()> {
        run.save(&self.dir)?;
        self.last = Some(Instant::now());
        Ok(())
    }
}

/// A search's probes as real cells of the run: reused when resuming, else
/// run now and saved with the run.
pub(crate) struct Cells<'a, 'r> {
    pub(crate) ctx: &'a CellContext<'a>,
    pub(crate) run: &'r mut RunFile,
    pub(crate) saver: &'r mut Saver,
    pub(crate) progress: &'r mut Progress,
    pub(crate) model: &'static dyn models::Model,
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
