//! `summary.md`: environment and method, then per workload a table, the
//! plots, and "what this shows" derived from the numbers alone.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::aggregate::Point;
use crate::labels::{status_word, window_label};
use record::run::RunFile;
use record::units::{fmt_latency, fmt_ns, fmt_rate};
use record::verdict::Status;

/// The p99 bound a point is ranked by: the run's `--slo` p99 if given,
/// else [`record::slo::default_p99_ns`] for its window and workload.
pub fn ranking_p99_ns(run: &RunFile, p: &Point) -> u64 {
    slo_p99_ns(run).unwrap_or_else(|| {
        let plan = run.config.workload(&p.workload).map(|w| &w.plan);
        record::slo::default_p99_ns(p.batch_window_us, plan)
    })
}

/// The p99 limit of the run's `--slo`, if it gives one.
pub fn slo_p99_ns(run: &RunFile) -> Option<u64> {
    let slo = run
        .config
        .slo
        .as_deref()?
        .parse::<record::slo::Slo>()
        .ok()?;
    slo.latency
        .iter()
        .find(|(k, _)| k == "p99")
        .map(|(_, d)| d.as_nanos() as u64)
}

/// Renders the markdown of a fixed matrix. `plots` are the PNGs written; `link_base` is the
/// plots folder relative to the summary's folder.
pub fn render(run: &RunFile, points: &[Point], plots: &[PathBuf], link_base: &Path) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Ingest server models: run `{}`\n", run.run_id);
    environment(&mut md, run);
    method(&mut md, run);
    recommendations(&mut md, run, points);
    for w in &run.config.workloads {
        workload(&mut md, run, points, &w.name, plots, link_base);
    }
    run_plots(&mut md, run, plots, link_base);
    not_valid(&mut md, run);
    md
}

/// How the matrix measured: processes, load, figures, validity.
fn method(md: &mut String, run: &RunFile) {
    let c = &run.config;
    let e = &run.environment;
    let _ = writeln!(md, "## Method\n");
    let _ = writeln!(
        md,
        "- Server (`harness serve`) pinned to CPUs {:?}, fleet (`harness fleet`) pinned to CPUs {:?}{}, as separate processes; clock source `{}`.",
        c.server_cpus, c.fleet_cpus, shards_note(c.fleet_shards), e.clock_source
    );
    let window = match (c.batch_window, &c.fleet_calibration) {
        (Some(w), _) => format!("frames due within {} go out in one write (forced)", humantime::format_duration(w)),
        (None, Some(cal)) => format!(
            "each cell's batch window (column `window`) is the smallest at which one fleet core paces its clients with {:.0}% headroom, per the fleet calibration of {}{} ({}); 0 means every frame is written when due",
            record::calibration::HEADROOM * 100.0,
            cal.measured,
            cal.reconnect_every
                .map_or(String::new(), |n| format!(", measured with a reconnect every {n} frames as in this run")),
            cal.windows
                .iter()
                .map(|w| format!("{}: {} clients/core", window_label(w.window_us), w.clients_per_core))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, None) => "batch windows as recorded per cell".into(),
    };
    let _ = writeln!(
        md,
        "- Each client sends 32-byte frames at {} Hz {}; {window}. {} warm-up, then a {} measured window; {} repeat(s) per cell, run round-robin in a shuffled order (seed {}); medians shown, spread in brackets when repeated.",
        c.rate,
        c.load_description()
            .unwrap_or_else(|| "on a fixed open-loop schedule".into()),
        humantime::format_duration(c.warmup),
        humantime::format_duration(c.duration),
        c.repeat,
        c.seed
    );
    let _ = writeln!(
        md,
        "- **Latency** is measured from when a frame was **due** to when the server finished processing it, so a late or blocked sender cannot hide queueing (coordinated omission corrected). **Service latency** (`svc`) is measured from when the write that carried the frame was issued: it leaves out the fleet's batching and lateness. Both come from the server's merged HDR histograms."
    );
    if c.ack {
        let _ = writeln!(
            md,
            "- **Ack mode**: every frame asked the server for an ack once processed. **Round trip** (`rt`) is measured by the fleet on its own clock, from when a frame was due to when its ack was read (coordinated omission corrected, HDR); a cell is invalid unless every frame a drained client sent was acknowledged exactly once."
        );
    }
    let _ = writeln!(
        md,
        "- **Achieved** is the frames the server finished processing inside the measured window, per second, from its own 10 ms processed-rate timeline (warm-up frames worked off late count too); **backlog** is the frames written but not yet processed when the load stopped. **Server CPU** is the CPU clock time (ns, every thread) of the whole server process tree inside the window; CPU per packet divides it by the frames processed in the window. The sampler runs off the server's CPUs (on CPUs {:?}).",
        c.harness_cpus
    );
    for note in crate::labels::cost_notes(c) {
        let _ = writeln!(md, "- {note}");
    }
    let _ = writeln!(
        md,
        "- A cell is **valid** only if every client drained, the server counted exactly what each client sent (zero loss), there were no protocol errors and the fleet kept its schedule. **Overloaded** cells are real results where the server could not keep up (backpressure or unread frames); **invalid** cells must not be used.\n"
    );
    let _ = match crate::labels::kernel_note(c) {
        Some(note) => writeln!(md, "Calibration: {note}.\n"),
        None => writeln!(
            md,
            "Calibration: {:.1} kernel iterations per microsecond.\n",
            c.iters_per_us
        ),
    };
}

/// The recommendation table: one model per workload, or a tie.
fn recommendations(md: &mut String, run: &RunFile, points: &[Point]) {
    let c = &run.config;
    let _ = writeln!(md, "## Recommendation\n");
    let _ = writeln!(
        md,
        "Per workload, the model that stays valid within the p99 bound at the largest fleet size; models that reach the same size tie unless one's p99 spread over the repeats lies below every other's. The bound is the `--slo` p99 if given, else the cell's batch window + 1 ms + twice the longest work one frame asks for. Fixed fleet sizes cannot say where a model breaks: `harness --all` without --clients searches each model's capacity.\n"
    );
    let _ = writeln!(md, "| workload | use | why |\n|---|---|---|");
    for w in &c.workloads {
        let pts: Vec<&Point> = points.iter().filter(|p| p.workload == w.name).collect();
        let (model, why) = recommend(&pts, |p| ranking_p99_ns(run, p));
        let _ = writeln!(md, "| {} | {} | {} |", w.name, model, why);
    }
    md.push('\n');
}

/// One workload's section: its table, health, findings and plots.
fn workload(
    md: &mut String,
    run: &RunFile,
    points: &[Point],
    name: &str,
    plots: &[PathBuf],
    link_base: &Path,
) {
    let c = &run.config;
    let Some(w) = c.workload(name) else {
        return;
    };
    let pts: Vec<&Point> = points.iter().filter(|p| p.workload == w.name).collect();
    let _ = writeln!(md, "## Workload `{}` (`{}`)\n", w.name, w.plan.spec);
    let (rt_head, rt_rule) = if c.ack {
        (" rt p50 | rt p99 |", "---:|---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        md,
        "| model | clients | window | offered/s | achieved/s | backlog | p50 | p99 | p99.9 | svc p50 | svc p99 | svc p99.9 |{rt_head} server CPU % | CPU us/pkt | peak RSS / PSS MiB | loss | verdict |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{rt_rule}---:|---:|---:|---:|---|"
    );
    for p in &pts {
        row(md, c, p);
    }
    md.push('\n');
    crate::downstream::section(md, run, &w.name);
    health(md, run, &w.name);
    let _ = writeln!(md, "**What this shows.**\n");
    let baseline: Vec<&Point> = points.iter().filter(|p| p.workload == "none").collect();
    let cpus = c.server_cpus.len().max(1) as f64;
    for line in findings(&pts, &baseline, cpus) {
        let _ = writeln!(md, "- {line}");
    }
    md.push('\n');
    for plot in plots.iter().filter(|p| plot_belongs(p, &w.name)) {
        if let Some(name) = plot.file_name() {
            let link = link_base.join(name);
            let _ = writeln!(md, "![{}]({})\n", name.to_string_lossy(), link.display());
        }
    }
}

/// One point's row of a workload's table.
fn row(md: &mut String, c: &record::config::RunConfig, p: &Point) {
    let spread = |lo: u64, hi: u64| {
        if p.repeats > 1 {
            format!(" [{}-{}]", fmt_ns(lo), fmt_ns(hi))
        } else {
            String::new()
        }
    };
    let n = p.latency_samples;
    let rt = if c.ack {
        format!(
            " {} | {} |",
            fmt_latency(p.round_trip_p50_ns, n),
            fmt_latency(p.round_trip_p99_ns, n)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} | {}{} | {} | {} | {} | {} |{} {:.0} | {:.2} | {:.1} / {:.1} | {} | {}{} |",
        p.model,
        p.clients,
        window_label(p.batch_window_us),
        fmt_rate(p.offered_pps),
        fmt_rate(p.achieved_pps),
        p.backlog_frames,
        fmt_latency(p.p50_ns, n),
        fmt_latency(p.p99_ns, n),
        spread(p.p99_spread.0, p.p99_spread.1),
        fmt_latency(p.p999_ns, n),
        fmt_latency(p.service_p50_ns, n),
        fmt_latency(p.service_p99_ns, n),
        fmt_latency(p.service_p999_ns, n),
        rt,
        p.cpu_pct,
        p.cpu_us_per_packet,
        p.peak_rss_kib as f64 / 1024.0,
        p.peak_pss_kib as f64 / 1024.0,
        p.lost,
        status_word(p.status),
        if p.noisy {
            format!(" (noisy: steal {:.0}%)", p.steal_pct)
        } else {
            String::new()
        }
    );
}

/// Plots that belong to no one workload (a single model's time series).
fn run_plots(md: &mut String, run: &RunFile, plots: &[PathBuf], link_base: &Path) {
    let c = &run.config;
    let shared: Vec<_> = plots
        .iter()
        .filter(|p| c.workloads.iter().all(|w| !plot_belongs(p, &w.name)))
        .collect();
    if !shared.is_empty() {
        let _ = writeln!(md, "## Run plots\n");
        for plot in shared {
            if let Some(name) = plot.file_name() {
                let _ = writeln!(
                    md,
                    "![{}]({})\n",
                    name.to_string_lossy(),
                    link_base.join(name).display()
                );
            }
        }
    }
}

/// Models skipped here, and every cell that is not valid, with why.
fn not_valid(md: &mut String, run: &RunFile) {
    let c = &run.config;
    if !c.skipped_models.is_empty() {
        let _ = writeln!(md, "## Models skipped on this machine\n");
        for (m, why) in &c.skipped_models {
            let _ = writeln!(md, "- `{m}`: {why}");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Cells that are not valid\n");
    let bad: Vec<_> = run
        .cells
        .iter()
        .filter(|c| c.verdict.status != Status::Valid)
        .collect();
    if bad.is_empty() {
        let _ = writeln!(md, "None: every cell passed every check.");
    }
    for cell in bad {
        let _ = writeln!(
            md,
            "- `{}`: {} ({})",
            cell.key.id(),
            status_word(cell.verdict.status),
            cell.verdict.reasons.join("; ")
        );
    }
}

/// The machine, kernel and build the run measured.
pub fn environment(md: &mut String, run: &RunFile) {
    let e = &run.environment;
    let _ = writeln!(
        md,
        "Started {} on **{}** ({}, {} logical CPUs, {} GiB), kernel {}, {}; commit {}{}.\n",
        run.started,
        e.hostname,
        e.cpu_model,
        e.logical_cpus,
        e.memory_kib / (1024 * 1024),
        e.kernel,
        e.rustc,
        e.git_commit
            .as_deref()
            .map_or("unknown", |s| &s[..s.len().min(12)]),
        if e.git_dirty == Some(true) {
            " (dirty)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "Governor `{}`, THP `{}`, tcp_rmem `{}`, tcp_wmem `{}`; SMT siblings {}.{}\n",
        e.governor,
        e.transparent_hugepages,
        e.tcp_rmem,
        e.tcp_wmem,
        e.cpu_siblings
            .iter()
            .map(|(c, s)| format!("cpu{c}: {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        if e.server_fleet_share_a_core {
            " **Warning: a server CPU and a fleet CPU are SMT siblings of one core; the fleet's load slows the server. Choose --server-cpus and --fleet-cpus on separate cores.**"
        } else {
            ""
        }
    );
}

/// Per cell, what the measurement itself cost and how quiet the machine
/// was: the fleet's pacing and CPU, the sampler's CPU, steal and the
/// server's involuntary context switches in the window.
fn health(md: &mut String, run: &RunFile, workload: &str) {
    let _ = writeln!(
        md,
        "<details><summary>Measurement health</summary>\n\n| cell | fleet pacing p99 | send lag p99 | fleet CPU % | sampler CPU ms | steal % | involuntary switches |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for c in run.cells.iter().filter(|c| c.key.workload == workload) {
        let d = &c.derived;
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {:.0} | {:.1} | {:.1}{} | {} |",
            c.key.id(),
            fmt_ns(d.pacing_lag_p99_ns),
            fmt_ns(d.send_lag_p99_ns),
            d.fleet_cpu_pct,
            d.sampler_cpu_ms,
            d.steal_pct,
            if d.noisy { " (noisy)" } else { "" },
            d.involuntary_ctxt
        );
    }
    let _ = writeln!(md, "\n</details>\n");
}

fn plot_belongs(plot: &Path, workload: &str) -> bool {
    plot.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(&format!("{}-", crate::labels::slug(workload))))
}

/// `1 client`, `10 clients`.
fn clients(n: u32) -> String {
    if n == 1 {
        "1 client".into()
    } else {
        format!("{n} clients")
    }
}

/// The model that sustains the most clients valid within each point's p99
/// bound. Models that reach the same fleet size tie unless one's p99
/// spread over the repeats lies wholly below every other's (never with one
/// repeat): then the tie is stated, not decided by noise.
fn recommend(pts: &[&Point], bound: impl Fn(&Point) -> u64) -> (String, String) {
    let within = |p: &Point| p.status == Status::Valid && p.p99_ns <= bound(p);
    let reach: Vec<(&Point, u32)> = unique_models(pts)
        .iter()
        .filter_map(|m| {
            let n = pts
                .iter()
                .filter(|p| &p.model == m && within(p))
                .map(|p| p.clients)
                .max()?;
            let at = pts.iter().find(|p| &p.model == m && p.clients == n)?;
            Some((*at, n))
        })
        .collect();
    let Some(top) = reach.iter().map(|(_, n)| *n).max() else {
        return (
            "none".into(),
            "no model was valid within the p99 bound at any fleet size".into(),
        );
    };
    let mut tied: Vec<&Point> = reach
        .iter()
        .filter(|(_, n)| *n == top)
        .map(|(p, _)| *p)
        .collect();
    tied.sort_by_key(|p| p.p99_ns);
    let best = tied[0];
    let clear = tied[1..]
        .iter()
        .all(|o| best.repeats > 1 && o.repeats > 1 && best.p99_spread.1 < o.p99_spread.0);
    if tied.len() == 1 || clear {
        return (
            format!("`{}`", best.model),
            format!(
                "valid with p99 <= {} up to {} (p99 {} at {:.2} CPU us/packet){}",
                fmt_ns(bound(best)),
                clients(top),
                fmt_ns(best.p99_ns),
                best.cpu_us_per_packet,
                if tied.len() > 1 {
                    "; its p99 spread lies below every other model's there"
                } else {
                    ""
                }
            ),
        );
    }
    let names: Vec<String> = tied.iter().map(|p| format!("`{}`", p.model)).collect();
    (
        names.join(" or "),
        format!(
            "within noise: all valid within the p99 bound up to {} (p99 {}), and {}; the capacity search (`harness --all` without --clients) separates models beyond the noise",
            clients(top),
            tied.iter()
                .map(|p| format!("`{}` {}", p.model, fmt_ns(p.p99_ns)))
                .collect::<Vec<_>>()
                .join(", "),
            if best.repeats > 1 {
                "their p99 spreads overlap"
            } else {
                "one repeat cannot tell them apart (--repeat 3)"
            }
        ),
    )
}

fn unique_models(pts: &[&Point]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in pts {
        if !out.contains(&p.model) {
            out.push(p.model.clone());
        }
    }
    out
}

/// Why a model broke, from the numbers: a saturated server CPU means
/// compute-bound; an idle one while the same traffic without work was fine
/// means it was blocked waiting (head-of-line blocking on io).
fn why(p: &Point, baseline: &[&Point], cpus: f64) -> String {
    let busy = p.cpu_pct / cpus;
    let fine_without_work = p.workload != "none"
        && baseline
            .iter()
            .any(|b| b.model == p.model && b.clients == p.clients && b.status == Status::Valid);
    if p.status == Status::Invalid {
        "the measurement itself failed, see the reasons".into()
    } else if busy >= 85.0 {
        format!("compute-bound: the server used {busy:.0}% of its {cpus} CPU(s)")
    } else if fine_without_work {
        format!(
            "blocked, not busy: the server used only {busy:.0}% of its CPU(s) and kept up with {} sending no work, so waiting on the work (not the traffic) stalls it",
            clients(p.clients)
        )
    } else {
        format!("the server used {busy:.0}% of its CPU(s)")
    }
}

/// Statements derived from the numbers: where each model breaks and why,
/// and how far apart the models are at the largest fleet.
fn findings(pts: &[&Point], baseline: &[&Point], cpus: f64) -> Vec<String> {
    let mut out = Vec::new();
    for m in unique_models(pts) {
        let mine: Vec<&&Point> = pts.iter().filter(|p| p.model == m).collect();
        match mine.iter().find(|p| p.status != Status::Valid) {
            None => {
                let top = mine.iter().map(|p| p.clients).max().unwrap_or(0);
                let worst = mine.iter().map(|p| p.p99_ns).max().unwrap_or(0);
                out.push(format!(
                    "`{m}` stayed valid at every fleet size up to {} (worst p99 {}).",
                    clients(top),
                    fmt_ns(worst)
                ));
            }
            Some(p) => out.push(format!(
                "`{m}` breaks at {}: {} ({}); p99 there {}, achieved {} of {} packets/s; {}.",
                clients(p.clients),
                status_word(p.status),
                p.reasons.join("; "),
                fmt_latency(p.p99_ns, p.latency_samples),
                fmt_rate(p.achieved_pps),
                fmt_rate(p.offered_pps),
                why(p, baseline, cpus)
            )),
        }
    }
    // Spread at the largest fleet size where two or more models are valid.
    let mut sizes: Vec<u32> = pts.iter().map(|p| p.clients).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for &n in sizes.iter().rev() {
        let valid: Vec<&&Point> = pts
            .iter()
            .filter(|p| p.clients == n && p.status == Status::Valid)
            .collect();
        if valid.len() < 2 {
            continue;
        }
        let fast = valid.iter().min_by_key(|p| p.p99_ns).expect("non-empty");
        let slow = valid.iter().max_by_key(|p| p.p99_ns).expect("non-empty");
        let cheap = valid
            .iter()
            .min_by(|a, b| a.cpu_us_per_packet.total_cmp(&b.cpu_us_per_packet))
            .expect("non-empty");
        if fast.p99_ns > 0 && slow.model != fast.model {
            let beyond =
                fast.repeats > 1 && slow.repeats > 1 && fast.p99_spread.1 < slow.p99_spread.0;
            let gap = if beyond {
                format!(
                    "{:.1}x better than `{}` ({}), beyond the repeats' spread",
                    slow.p99_ns as f64 / fast.p99_ns as f64,
                    slow.model,
                    fmt_ns(slow.p99_ns)
                )
            } else {
                format!(
                    "against the highest, `{}` ({}); {}",
                    slow.model,
                    fmt_ns(slow.p99_ns),
                    if fast.repeats > 1 {
                        "their spreads overlap, so within noise"
                    } else {
                        "with one repeat that gap is not told from noise (--repeat 3)"
                    }
                )
            };
            out.push(format!(
                "At {} `{}` has the lowest p99 ({}), {gap}; `{}` spends the least CPU per packet ({:.2} us).",
                clients(n),
                fast.model,
                fmt_ns(fast.p99_ns),
                cheap.model,
                cheap.cpu_us_per_packet
            ));
        }
        break;
    }
    let mem = pts.iter().max_by_key(|p| p.peak_pss_kib);
    if let Some(p) = mem {
        out.push(format!(
            "Largest memory footprint: `{}` at {}, peak PSS {:.1} MiB (RSS {:.1} MiB).",
            p.model,
            clients(p.clients),
            p.peak_pss_kib as f64 / 1024.0,
            p.peak_rss_kib as f64 / 1024.0
        ));
    }
    out
}

/// How the fleet ran, when it was sharded: for the method sentences.
pub fn shards_note(shards: u32) -> String {
    if shards > 1 {
        format!(" as {shards} shard processes on one shared start, their reports merged exactly")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point of `model` valid up to `clients` with this p99 and spread.
    fn point(model: &str, clients: u32, repeats: usize, p99: (u64, u64, u64)) -> Point {
        Point {
            model: model.to_string(),
            workload: "none".to_string(),
            clients,
            repeats,
            status: Status::Valid,
            reasons: Vec::new(),
            offered_pps: 0.0,
            achieved_pps: 0.0,
            achieved_spread: (0.0, 0.0),
            latency_samples: 1000,
            p50_ns: 0,
            p99_ns: p99.1,
            p99_spread: (p99.0, p99.2),
            p999_ns: 0,
            max_ns: 0,
            service_p50_ns: 0,
            service_p99_ns: 0,
            service_p999_ns: 0,
            round_trip_p50_ns: 0,
            round_trip_p99_ns: 0,
            batch_window_us: 0,
            backlog_frames: 0,
            noisy: false,
            steal_pct: 0.0,
            cpu_pct: 0.0,
            cpu_us_per_packet: 1.0,
            cpu_spread: (1.0, 1.0),
            peak_rss_kib: 0,
            peak_pss_kib: 0,
            lost: 0,
            median_cell: 0,
        }
    }

    #[test]
    fn fixed_matrix_recommendation_table() {
        let bound = |_: &Point| 2_000_000;
        // (case, points, named)
        let table: Vec<(&str, Vec<Point>, &str)> = vec![
            (
                "reaches further",
                vec![
                    point("a", 50, 1, (1, 1_500_000, 1)),
                    point("b", 10, 1, (1, 100_000, 1)),
                ],
                "`a`",
            ),
            (
                "same reach, one repeat: a tie",
                vec![
                    point("a", 50, 1, (1_000_000, 1_000_000, 1_000_000)),
                    point("b", 50, 1, (1_500_000, 1_500_000, 1_500_000)),
                ],
                "`a` or `b`",
            ),
            (
                "same reach, overlapping spreads: a tie",
                vec![
                    point("a", 50, 3, (900_000, 1_000_000, 1_600_000)),
                    point("b", 50, 3, (1_400_000, 1_500_000, 1_700_000)),
                ],
                "`a` or `b`",
            ),
            (
                "same reach, separate spreads",
                vec![
                    point("a", 50, 3, (900_000, 1_000_000, 1_100_000)),
                    point("b", 50, 3, (1_400_000, 1_500_000, 1_700_000)),
                ],
                "`a`",
            ),
            (
                "over the bound everywhere",
                vec![point("a", 50, 1, (3_000_000, 3_000_000, 3_000_000))],
                "none",
            ),
        ];
        for (case, pts, named) in table {
            let refs: Vec<&Point> = pts.iter().collect();
            let (model, why) = recommend(&refs, bound);
            assert_eq!(model, named, "{case}: {why}");
        }
    }
}
