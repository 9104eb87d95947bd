//! `summary.md` of a capacity search: the recommendation table first, then
//! the method, then per workload every model's capacity, its worker sweep,
//! comparisons only beyond the noise, and the plots.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::bench::results::RunFile;
use crate::capacity::recommend::{times_beyond_noise, Recommendation};
use crate::capacity::search::{LimitedBy, Outcome};
use crate::capacity::{by_workload, recommendations, CapacityRecord};
use crate::units::fmt_ns;

fn limited(r: &CapacityRecord) -> &'static str {
    match r.limited_by {
        LimitedBy::Server => "server",
        LimitedBy::Generator => {
            "**load generator** (at least this many; the fleet cannot offer more here)"
        }
    }
}

fn row(md: &mut String, workload: &str, r: &CapacityRecord) {
    let _ = writeln!(
        md,
        "| {workload} | `{}` | {} | {} | {} | {} | {:.2} | {:.1} | {} |",
        r.model,
        r.workers,
        r.interval.label(r.clients),
        fmt_ns(r.p99_ns),
        fmt_ns(r.service_p99_ns),
        r.cpu_us.median,
        r.pss_kib.median / 1024.0,
        limited(r)
    );
}

const HEADER: &str = "| workload | model | workers | capacity (clients) | p99 at capacity | svc p99 | CPU us/pkt | peak PSS MiB | limited by |\n|---|---|---:|---:|---:|---:|---:|---:|---|";

/// Renders the markdown of a capacity-search run.
pub fn render(run: &RunFile, plots: &[PathBuf], link_base: &Path) -> String {
    let mut md = String::new();
    let c = &run.config;
    let _ = writeln!(
        md,
        "# Which model? Capacity at the SLO: run `{}`\n",
        run.run_id
    );
    let recs = recommendations(run);
    let groups = by_workload(run);
    let _ = writeln!(md, "## Recommendation\n");
    let _ = writeln!(md, "{HEADER}");
    for (workload, rec) in &recs {
        let records = groups
            .iter()
            .find(|(w, _)| w == workload)
            .map_or(&[][..], |(_, r)| &r[..]);
        let shown: Vec<&&CapacityRecord> = match rec {
            Recommendation::Winner { model, .. } => {
                records.iter().filter(|r| &r.model == model).collect()
            }
            Recommendation::Tie { models, .. } => models
                .iter()
                .filter_map(|m| records.iter().find(|r| &r.model == m))
                .collect(),
            Recommendation::Nothing { .. } => Vec::new(),
        };
        for r in shown {
            row(&mut md, workload, r);
        }
    }
    md.push('\n');
    for (workload, rec) in &recs {
        let _ = writeln!(
            md,
            "- **{workload}**: {}. {}.",
            rec.headline(),
            rec.reason()
        );
    }
    md.push('\n');

    let _ = writeln!(md, "## Method\n");
    environment(&mut md, run);
    let s = c.search.as_ref();
    let _ = writeln!(
        md,
        "- **Capacity** is the largest fleet size (clients at {} frames/s each, 32-byte frames on a fixed open-loop schedule) at which a fresh, warmed-up cell is valid (every frame accounted for, no protocol error, the fleet on schedule), loses nothing and meets the SLO. Latency counts from when each frame was due (coordinated omission corrected).",
        c.rate
    );
    let _ = writeln!(
        md,
        "- **SLO**: {}.",
        match &c.slo {
            Some(slo) => format!("`{slo}` for every workload (`--slo`)"),
            None => "p99 latency <= the probe's batch window + 1 ms + 2 x the longest work one frame of the workload asks for, and no loss".to_string(),
        }
    );
    if let Some(s) = s {
        let _ = writeln!(
            md,
            "- **Search**: from 1 client, an exponential ramp (x2 to x8, sized by how busy the server was) until a probe fails, then bisection until the next step up is within {:.0}% (or 1 client). A failure that one stall of a shared machine can cause (a valid cell over its bound, a late generator) counts only if a second probe at the same size fails too. The search never goes above {} clients: the most this machine's fleet paces on time (fleet calibration).",
            s.params.tolerance * 100.0,
            s.params.max_clients
        );
        let _ = writeln!(
            md,
            "- **Each model at its best**: {}",
            if s.sweep {
                if c.quick {
                    "searched at its default worker count and (for io work, where a wait occupies a worker) the Little's-law estimate of io waits in flight at the knee (`--quick`); reported at the count with the highest capacity."
                } else {
                    "searched at its default worker count, 1 x and 4 x the server CPUs, and (where a wait occupies a worker) the Little's-law estimate of io waits in flight at the knee; later counts start from the best capacity so far. Reported at the count with the highest capacity; a model that ignores workers is searched once."
                }
            } else {
                "the worker count given with --workers, for every model."
            }
        );
        let _ = writeln!(
            md,
            "- **Interval**: {} probed {} more time(s). The capacity is the largest size that passed most of its probes (at or below the search's knee, half is enough: the search counted a failure retried into a pass as a pass); the interval runs from the largest size that passed every probe (when the knee failed a repeat, sizes a tolerance step lower are probed, at most 3 steps, to find one) to one below the smallest size above it that failed every probe (`>=`: nothing above failed every time).",
            if s.confirm_next {
                "the knee and the next step up are"
            } else {
                "the knee is (`--quick`: the next step's failure is the search's own, a latency-only one already probed twice)"
            },
            s.confirm
        );
    }
    let _ = writeln!(
        md,
        "- **Recommendation**: the model with the highest capacity wins only if its interval lies wholly above every other model's; otherwise the overlapping models tie, and the tie is broken by CPU per packet at capacity, then by peak PSS, each only where the repeats' ranges do not overlap. Every \"N x\" below compares one interval's low end with the other's high end, and is written only when they do not overlap.",
    );
    let _ = writeln!(
        md,
        "- Probes: {} warm-up, {} measured, drain timeout {}; server pinned to CPUs {:?}, fleet to {:?}{}, sampler and harness on {:?}; seed {}. {} probes in all.\n",
        humantime::format_duration(c.warmup),
        humantime::format_duration(c.duration),
        humantime::format_duration(c.drain_timeout),
        c.server_cpus,
        c.fleet_cpus,
        crate::report::summary::shards_note(c.fleet_shards),
        c.harness_cpus,
        c.seed,
        run.cells.len()
    );

    for (workload, records) in &groups {
        let spec = c.workload(workload).map_or("", |w| w.plan.spec.as_str());
        let _ = writeln!(md, "## Workload `{workload}` (`{spec}`)\n");
        let _ = writeln!(md, "{HEADER}");
        let mut ranked: Vec<&&CapacityRecord> = records.iter().collect();
        ranked.sort_by_key(|r| std::cmp::Reverse((r.clients, r.interval.low)));
        for r in &ranked {
            row(&mut md, workload, r);
        }
        md.push('\n');
        let _ = writeln!(md, "**What this shows.**\n");
        for pair in ranked.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let _ = match times_beyond_noise(&a.interval, &b.interval) {
                Some(x) => writeln!(
                    md,
                    "- `{}` serves at least {x:.1}x the clients of `{}` ({} vs {}).",
                    a.model,
                    b.model,
                    a.interval.label(a.clients),
                    b.interval.label(b.clients)
                ),
                None if b.interval.low == 0
                    && a.interval.low > 0
                    && a.interval.clears(&b.interval) =>
                {
                    writeln!(
                        md,
                        "- `{}` meets the SLO ({}); `{}` does not, even with one client.",
                        a.model,
                        a.interval.label(a.clients),
                        b.model
                    )
                }
                None => writeln!(
                    md,
                    "- `{}` and `{}`: within noise ({} vs {}).",
                    a.model,
                    b.model,
                    a.interval.label(a.clients),
                    b.interval.label(b.clients)
                ),
            };
        }
        for r in records {
            if r.sweep.len() > 1 {
                let counts: Vec<String> = r
                    .sweep
                    .iter()
                    .map(|s| {
                        format!(
                            "{} worker(s): {}{}",
                            s.workers,
                            if s.limited_by == LimitedBy::Generator {
                                ">= "
                            } else {
                                ""
                            },
                            s.capacity
                        )
                    })
                    .collect();
                let _ = writeln!(
                    md,
                    "- `{}` by worker count: {} (reported at {}{}).",
                    r.model,
                    counts.join(", "),
                    r.workers,
                    if r.sweep.iter().any(|s| s.workers == r.io_waits) {
                        format!(
                            "; Little's law first put ~{} io waits in flight at the knee, and the sweep followed the knee from there",
                            r.io_waits
                        )
                    } else {
                        String::new()
                    }
                );
            }
            let failed: Vec<String> = r
                .probes
                .iter()
                .filter(|p| p.outcome != Outcome::Pass && !p.why.starts_with("SLO"))
                .filter(|p| p.clients <= r.interval.high.map_or(u32::MAX, |h| h.saturating_add(1)))
                .map(|p| format!("{} clients, {} workers: {}", p.clients, p.workers, p.why))
                .collect();
            if let Some(first) = failed.first() {
                let _ = writeln!(
                    md,
                    "- `{}` near its capacity failed by more than latency: {first}{}.",
                    r.model,
                    if failed.len() > 1 {
                        format!(" (and {} more such probes)", failed.len() - 1)
                    } else {
                        String::new()
                    }
                );
            }
        }
        md.push('\n');
        let slug = super::plots::slug(workload);
        for plot in plots {
            let Some(name) = plot.file_name().map(|n| n.to_string_lossy().to_string()) else {
                continue;
            };
            if name.ends_with(&format!("-{slug}.png")) {
                let _ = writeln!(md, "![{name}]({})\n", link_base.join(&name).display());
            }
        }
    }
    if !c.skipped_models.is_empty() {
        let _ = writeln!(md, "## Models skipped on this machine\n");
        for (m, why) in &c.skipped_models {
            let _ = writeln!(md, "- `{m}`: {why}");
        }
        md.push('\n');
    }
    md
}

fn environment(md: &mut String, run: &RunFile) {
    let mut env = String::new();
    super::summary::environment(&mut env, run);
    for para in env.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let _ = writeln!(md, "- {}", para.trim());
    }
}
