//! `results/<run-id>/run.json`: the run's config, environment and cells,
//! rewritten atomically after every cell so an interrupted run keeps what it
//! finished and can be resumed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::cell::CellResult;
use super::config::RunConfig;
use super::env::Environment;
use crate::capacity::CapacityRecord;

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
}

impl RunFile {
    /// Saves to `<dir>/run.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        // Compact: a search run holds hundreds of probes and is rewritten
        // after each one.
        let json = serde_json::to_vec(self).context("encode run.json")?;
        write_atomic(&dir.join(RUN_FILE), &json)
            .with_context(|| format!("write {}", dir.join(RUN_FILE).display()))
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
    pub fn load(path: &Path) -> Result<Self> {
        let file = run_file_path(path);
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "read {}; give a results/<run-id> folder or its run.json",
                file.display()
            )
        })?;
        let mut run: RunFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run file of this version", file.display()))?;
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

/// Writes `bytes` to `path` so readers never see half a file: via a
/// temporary file and a rename when `path` is a regular file or does not
/// exist yet. Anything else that exists (a device such as `/dev/null`, a
/// pipe) is written in place, never replaced, truncated or re-permissioned.
/// A symbolic link is followed, and the same rules apply to its target.
/// Missing parent folders are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = match std::fs::canonicalize(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    match std::fs::metadata(&target) {
        Ok(m) if !m.is_file() => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&target)?;
            return f.write_all(bytes);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_replaced_and_others_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.json");
        write_atomic(&new, b"one").unwrap();
        write_atomic(&new, b"two").unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"two");
        // A link is followed: its target is replaced, the link stays.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&new, &link).unwrap();
        write_atomic(&link, b"three").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&new).unwrap(), b"three");
        // A pipe is written in place, not renamed over.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomic(&fifo, b"piped").unwrap();
        assert_eq!(reader.join().unwrap(), b"piped");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 3, "no temporary files left: {left:?}");
    }
}
