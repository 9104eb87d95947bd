//! `--scaling`: capacity against server cores. The search runs once per
//! server CPU count (1, 2, 4, ... up to half the CPUs this process may
//! use), the fleet on the other half in every run so that one fleet
//! offers the load; then one table and one plot per workload put the runs
//! side by side, and the report says where the scaling stopped and why.

use std::time::SystemTime;

use anyhow::{Context, Result};
use record::run::RunFile;

use crate::bench::{self, Outcome};
use crate::cli::RunArgs;
use crate::cpus;
use report::scaling::cpus_label;

/// One point of the scaling: the server's CPUs and the fleet's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// Server CPUs.
    pub server: Vec<usize>,
    /// Fleet CPUs (the same for every point).
    pub fleet: Vec<usize>,
}

/// The points for the `allowed` CPUs, and why they stop where they do.
pub fn plan(allowed: &[usize]) -> (Vec<Point>, String) {
    let n = allowed.len();
    if n < 2 {
        let only = Point {
            server: allowed.to_vec(),
            fleet: allowed.to_vec(),
        };
        let why = format!(
            "stops at 1 server CPU: this process may use {}, which the server and the fleet share",
            cpus_label(n)
        );
        return (vec![only], why);
    }
    let half = n / 2;
    let fleet = allowed[half..].to_vec();
    let points: Vec<Point> = std::iter::successors(Some(1usize), |k| Some(k * 2))
        .take_while(|&k| k <= half)
        .map(|k| Point {
            server: allowed[..k].to_vec(),
            fleet: fleet.clone(),
        })
        .collect();
    let last = points.last().map_or(1, |p| p.server.len());
    let why = format!(
        "stops at {}: {} would be more than half of the {} this process may use, and the fleet keeps the other half ({}) to offer the load",
        cpus_label(last),
        cpus_label(last * 2),
        cpus_label(n),
        cpus_label(n - half)
    );
    (points, why)
}

/// Runs the search once per point of [`plan`] and writes the comparison
/// (`results/<id>-scaling/scaling.md`, `plots/<id>-scaling/`).
pub fn run(args: &RunArgs) -> Result<Outcome> {
    let (points, why) = plan(&cpus::allowed());
    eprintln!(
        "scaling: a search at {} server CPU count(s) ({}); it {why}",
        points.len(),
        points
            .iter()
            .map(|p| p.server.len().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut runs = Vec::new();
    for p in &points {
        let mut point_args = args.clone();
        point_args.scaling = false;
        point_args.server_cpus = Some(cpus::format_list(&p.server));
        point_args.fleet_cpus = Some(cpus::format_list(&p.fleet));
        match bench::run(&point_args)? {
            Outcome::Complete { run_dir, .. } => runs.push(
                RunFile::load(&run_dir)
                    .with_context(|| format!("read back {}", run_dir.display()))?,
            ),
            interrupted => return Ok(interrupted),
        }
    }
    let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let id = format!("{}-scaling", started.replace(['-', ':'], ""));
    let dir = args.results_dir.join(&id);
    let written = report::scaling::render(&runs, &why, &dir, &args.plots_dir.join(&id))
        .context("write the scaling report")?;
    println!(
        "capacity against server CPUs:\n{}",
        report::scaling::table(&runs)
    );
    println!("scaling: {}", written.summary.display());
    Ok(Outcome::Complete {
        run_dir: dir,
        slo_breaches: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_doubles_server_cpus_up_to_half_the_machine() {
        // (allowed CPUs, server CPU counts, fleet CPUs, why names)
        let table: [(usize, &[usize], usize, &str); 6] = [
            (1, &[1], 1, "share"),
            (
                2,
                &[1],
                1,
                "stops at 1 CPU: 2 CPUs would be more than half of the 2 CPUs",
            ),
            (3, &[1], 2, "stops at 1 CPU"),
            (
                4,
                &[1, 2],
                2,
                "stops at 2 CPUs: 4 CPUs would be more than half of the 4 CPUs",
            ),
            (16, &[1, 2, 4, 8], 8, "stops at 8 CPUs"),
            (12, &[1, 2, 4], 6, "stops at 4 CPUs"),
        ];
        for (n, counts, fleet, why) in table {
            let allowed: Vec<usize> = (0..n).collect();
            let (points, said) = plan(&allowed);
            let got: Vec<usize> = points.iter().map(|p| p.server.len()).collect();
            assert_eq!(got, counts, "{n} CPUs");
            for p in &points {
                assert_eq!(p.fleet.len(), fleet, "{n} CPUs");
                if n > 1 {
                    assert!(
                        p.server.iter().all(|c| !p.fleet.contains(c)),
                        "{n} CPUs: {p:?}"
                    );
                }
            }
            assert!(said.contains(why), "{n} CPUs: {said}");
        }
    }
}
