//! `--scaling`'s report: each model's capacity per workload against the
//! server's CPU count, one full search per count, as one table (terminal
//! and `scaling.md`) and one plot per workload, with where and why the
//! scaling stopped.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use record::run::RunFile;

use crate::error::{Error, Result};
use crate::plots::Series;

/// What [`render`] wrote.
#[derive(Debug)]
pub struct Written {
    /// `scaling.md`.
    pub summary: PathBuf,
    /// One plot per workload.
    pub plots: Vec<PathBuf>,
}

/// Per workload of the first run: each model's records across `runs`.
fn series(runs: &[RunFile]) -> Vec<(String, Series<'_>)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .config
        .workloads
        .iter()
        .map(|w| {
            let per_model = first
                .config
                .models
                .iter()
                .map(|m| {
                    let records = runs
                        .iter()
                        .map(|r| {
                            r.capacities
                                .iter()
                                .find(|c| &c.model == m && c.workload == w.name)
                        })
                        .collect();
                    (m.clone(), records)
                })
                .collect();
            (w.name.clone(), per_model)
        })
        .collect()
}

/// `1 CPU`, `2 CPUs`.
pub fn cpus_label(n: usize) -> String {
    format!("{n} CPU{}", if n == 1 { "" } else { "s" })
}

/// The capacity table: a row per (workload, model), a column per server
/// CPU count, each cell the capacity with its interval as the run's table
/// gives it (`-`: not searched).
pub fn table(runs: &[RunFile]) -> String {
    let mut md = String::from("| workload | model |");
    for r in runs {
        let _ = write!(md, " {} |", cpus_label(r.config.server_cpus.len()));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---:|".repeat(runs.len()));
    md.push('\n');
    for (workload, per_model) in series(runs) {
        for (model, records) in per_model {
            let _ = write!(md, "| {workload} | `{model}` |");
            for r in records {
                let cell = r.map_or("-".to_string(), |r| r.interval.label(r.clients));
                let _ = write!(md, " {cell} |");
            }
            md.push('\n');
        }
    }
    md
}

/// Writes `scaling.md` into `dir` and the plots into `plots_dir`: the
/// table, why the scaling stopped (`why`), and each run's own summary.
pub fn render(runs: &[RunFile], why: &str, dir: &Path, plots_dir: &Path) -> Result<Written> {
    for d in [dir, plots_dir] {
        std::fs::create_dir_all(d).map_err(|source| Error::Io {
            what: "create",
            path: d.to_path_buf(),
            source,
        })?;
    }
    let plots = crate::plots::scaling(runs, series(runs), plots_dir)?;
    let mut md = String::from("# Capacity against server cores\n\n");
    let _ = writeln!(
        md,
        "One full capacity search per server CPU count, the fleet on the same CPUs in every one, so one fleet offers the load; each capacity is the search's at the model's best worker count (its run's summary.md has the interval, the probes and the tie-break). The scaling {why}.\n"
    );
    for r in runs {
        let _ = writeln!(
            md,
            "- {}: run `{}` (server CPUs {:?}, fleet CPUs {:?})",
            cpus_label(r.config.server_cpus.len()),
            r.run_id,
            r.config.server_cpus,
            r.config.fleet_cpus
        );
    }
    md.push('\n');
    md.push_str(&table(runs));
    md.push('\n');
    for p in &plots {
        if let Some(name) = p.file_name().map(|n| n.to_string_lossy().to_string()) {
            let link = crate::links::relative(dir, p);
            let _ = writeln!(md, "![{name}]({})\n", link.display());
        }
    }
    let summary = dir.join("scaling.md");
    std::fs::write(&summary, md).map_err(|source| Error::Io {
        what: "write",
        path: summary.clone(),
        source,
    })?;
    Ok(Written { summary, plots })
}
