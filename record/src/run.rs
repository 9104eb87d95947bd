//! `results/<run-id>/run.json`: the run's config, environment and cells,
//! rewritten atomically after every cell so an interrupted run keeps what it
//! finished and can be resumed.

use std::path::{Path, PathBuf};

use common::fs::write_atomic;
use serde::{Deserialize, Serialize};

use crate::capacity::CapacityRecord;
use crate::cell::CellResult;
use crate::config::RunConfig;
use crate::environment::Environment;
use crate::kernel_calibration::{speed_spread, SpeedCheck};
use crate::recommend;

/// Why a run file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    /// The file could not be read.
    #[error("read {}: {source}; give a results/<run-id> folder or its run.json", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a run file this version reads.
    #[error("{} is not a run file of this version: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The run could not be encoded.
    #[error("encode run.json: {0}")]
    Encode(serde_json::Error),
    /// The file could not be written.
    #[error("write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// File name of a run's results inside its folder.
pub const RUN_FILE: &str = "run.json";

/// Everything saved about one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunFile {
    /// The run's id (its folder name).
    pub run_id: String,
    /// Start time, RFC 3339.
    pub started: String,
    /// End time, RFC 3339, once complete.
    pub ended: Option<String>,
    /// All cells ran.
    pub complete: bool,
    /// The configuration.
    pub config: RunConfig,
    /// The machine and build.
    pub environment: Environment,
    /// Finished cells, in run order (in a capacity search, every probe).
    pub cells: Vec<CellResult>,
    /// A capacity search's answers, one per finished (model, workload).
    #[serde(default)]
    pub capacities: Vec<CapacityRecord>,
    /// The machine's speed checked during a capacity search (its start,
    /// and before each round of confirmations): with the calibration, the
    /// spread every interval is widened by ([`RunFile::speed_spread`]).
    #[serde(default)]
    pub speed_checks: Vec<SpeedCheck>,
    /// A capacity search: the bare loop's CPU per frame at loads up to the
    /// search's bound (the floor each model's cost is a multiple of).
    #[serde(default)]
    pub floor: Vec<crate::efficiency::FloorPoint>,
}

impl RunFile {
    /// The machine's speed spread over this run's calibration and speed
    /// checks (see [`speed_spread`]).
    pub fn speed_spread(&self) -> f64 {
        speed_spread(self.config.kernel_calibration.as_ref(), &self.speed_checks)
    }

    /// Saves to `<dir>/run.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), RunFileError> {
        // Compact: a search run holds hundreds of probes and is rewritten
        // after each one.
        let json = serde_json::to_vec(self).map_err(RunFileError::Encode)?;
        let path = dir.join(RUN_FILE);
        write_atomic(&path, &json).map_err(|source| RunFileError::Write { path, source })
    }

    /// Recomputes every cell's reconciliation, figures and verdict from its
    /// raw reports and samples, so fixes to the rules reach old runs.
    pub fn recompute(&mut self) {
        for c in &mut self.cells {
            c.recompute();
        }
    }

    /// Loads a run from its folder or its run.json, recomputing the
    /// derived figures and verdicts.
    pub fn load(path: &Path) -> Result<Self, RunFileError> {
        let file = run_file_path(path);
        let text = std::fs::read_to_string(&file).map_err(|source| RunFileError::Read {
            path: file.clone(),
            source,
        })?;
        let mut run: RunFile = serde_json::from_str(&text)
            .map_err(|source| RunFileError::Parse { path: file, source })?;
        run.recompute();
        Ok(run)
    }
}

/// `path` itself if it is a file, else `path/run.json`.
pub fn run_file_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(RUN_FILE)
    } else {
        path.to_path_buf()
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

/// Every model's standing per workload, from the run's capacity records.
pub fn contenders(run: &RunFile) -> Vec<(String, Vec<recommend::Contender>)> {
    by_workload(run)
        .into_iter()
        .map(|(w, records)| {
            let contenders = records
                .iter()
                .map(|r| recommend::Contender {
                    model: r.model.clone(),
                    clients: r.clients,
                    interval: r.interval,
                    cpu_us: r.cpu_us,
                    pss_kib: r.pss_kib,
                    equal_load: r.equal_load.clone(),
                })
                .collect();
            (w, contenders)
        })
        .collect()
}

/// The recommendation per workload, from the run's capacity records.
pub fn recommendations(run: &RunFile) -> Vec<(String, recommend::Recommendation)> {
    contenders(run)
        .into_iter()
        .map(|(w, contenders)| (w, recommend::recommend(&contenders)))
        .collect()
}
