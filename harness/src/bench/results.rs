//! `results/<run-id>/run.json`: the run's config, environment and cells,
//! rewritten atomically after every cell so an interrupted run keeps what it
//! finished and can be resumed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::cell::CellResult;
use super::config::RunConfig;
use super::env::Environment;

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
    /// Finished cells, in run order.
    pub cells: Vec<CellResult>,
}

impl RunFile {
    /// Saves to `<dir>/run.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).context("encode run.json")?;
        write_atomic(&dir.join(RUN_FILE), &json)
            .with_context(|| format!("write {}", dir.join(RUN_FILE).display()))
    }

    /// Loads a run from its folder or its run.json.
    pub fn load(path: &Path) -> Result<Self> {
        let file = run_file_path(path);
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "read {}; give a results/<run-id> folder or its run.json",
                file.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run file of this version", file.display()))
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

/// Writes via a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
