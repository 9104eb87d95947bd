//! PNG plots with plotters, one file per chart family, text in an embedded
//! DejaVu Sans (no system fonts needed). One colour per model everywhere;
//! valid points are filled circles, overloaded ones hollow circles, invalid
//! ones crosses that no line passes through. A fixed matrix gets
//! `panels`, `spectrum` and `timeseries`; a capacity search gets
//! `capacity_bars`, `load`, `sweep`, `stages` and `cost`; `--scaling` gets `scaling`.

mod capacity_bars;
mod cost;
mod load;
mod panels;
mod scaling;
mod spectrum;
mod stages;
mod style;
mod sweep;
mod timeseries;

pub(crate) use scaling::Series;
pub use style::{colour, SIZE};

use std::path::{Path, PathBuf};

use crate::aggregate::Point;
use crate::error::Result;
use crate::labels::slug;
use record::run::by_workload;
use record::run::RunFile;
use style::register_font;

/// Renders every plot of the run into `dir`; returns the files written.
pub(crate) fn matrix(run: &RunFile, points: &[Point], dir: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let machine = format!(
        "{} ({} CPUs; server {:?}, fleet {:?})",
        run.environment.hostname,
        run.environment.logical_cpus,
        run.config.server_cpus,
        run.config.fleet_cpus
    );
    let mut out = Vec::new();
    for w in &run.config.workloads {
        let pts: Vec<&Point> = points.iter().filter(|p| p.workload == w.name).collect();
        if pts.is_empty() {
            continue;
        }
        let mut windows: Vec<u64> = pts.iter().map(|p| p.batch_window_us).collect();
        windows.sort_unstable();
        windows.dedup();
        let windows: Vec<String> = windows
            .iter()
            .map(|&w| crate::labels::window_label(w))
            .collect();
        let ctx = format!(
            "workload {} ({}), {}, batch window {}; {}",
            w.name,
            w.plan.spec,
            run.config.rate_label(),
            windows.join("/"),
            machine
        );
        let base = slug(&w.name);
        let figures = panels::figures();
        for (name, figure) in &figures {
            let file = dir.join(format!("{base}-{name}.png"));
            panels::panels(&file, &ctx, &run.config.models, &pts, figure)?;
            out.push(file);
        }
        let file = dir.join(format!("{base}-spectrum.png"));
        if spectrum::spectrum(&file, &ctx, run, &pts)? {
            out.push(file);
        }
    }
    if run.config.single_model {
        let file = dir.join("run-timeseries.png");
        timeseries::timeseries(&file, run, &machine)?;
        out.push(file);
    }
    Ok(out)
}

/// Renders the three plots of every searched workload into `dir`.
pub(crate) fn search(run: &RunFile, dir: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let machine = format!(
        "{} ({} CPUs; server {:?}, fleet {:?}), {}",
        run.environment.hostname,
        run.environment.logical_cpus,
        run.config.server_cpus,
        run.config.fleet_cpus,
        run.config.rate_label()
    );
    let mut out = Vec::new();
    for (workload, records) in by_workload(run) {
        let spec = run
            .config
            .workload(&workload)
            .map_or(String::new(), |w| w.plan.spec.clone());
        let ctx = format!("workload {workload} ({spec}); {machine}");
        let base = slug(&workload);
        let file = dir.join(format!("capacity-{base}.png"));
        capacity_bars::bars(&file, &ctx, &run.config.models, &records)?;
        out.push(file);
        let file = dir.join(format!("load-{base}.png"));
        load::load(&file, &ctx, run, &workload, &records)?;
        out.push(file);
        let file = dir.join(format!("workers-{base}.png"));
        if sweep::sweep(&file, &ctx, &run.config.models, &records)? {
            out.push(file);
        }
        let file = dir.join(format!("stages-{base}.png"));
        if stages::stages(&file, &ctx, run, &records)? {
            out.push(file);
        }
        let file = dir.join(format!("cost-{base}.png"));
        if cost::cost(&file, &ctx, run, &records)? {
            out.push(file);
        }
    }
    Ok(out)
}

/// Renders capacity against server CPUs per workload of `runs` (one
/// search per CPU count) into `dir`.
pub(crate) fn scaling(
    runs: &[RunFile],
    per_workload: Vec<(String, scaling::Series<'_>)>,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    register_font();
    let Some(first) = runs.first() else {
        return Ok(Vec::new());
    };
    let cpus: Vec<usize> = runs.iter().map(|r| r.config.server_cpus.len()).collect();
    let mut out = Vec::new();
    for (workload, series) in per_workload {
        let spec = first
            .config
            .workload(&workload)
            .map_or(String::new(), |w| w.plan.spec.clone());
        let ctx = format!(
            "workload {workload} ({spec}); {} ({} CPUs), {}",
            first.environment.hostname,
            first.environment.logical_cpus,
            first.config.rate_label()
        );
        let file = dir.join(format!("scaling-{}.png", slug(&workload)));
        scaling::scaling(&file, &ctx, &first.config.models, &cpus, &series)?;
        out.push(file);
    }
    Ok(out)
}
