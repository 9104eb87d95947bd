//! `summary.md` of a capacity search: the recommendation table first, then
//! the method, then per workload every model's capacity, its worker sweep,
//! comparisons only beyond the noise, and the plots.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use record::attribution::Attribution;
use record::capacity::CapacityRecord;
use record::capacity::{LimitedBy, Outcome};
use record::efficiency;
use record::recommend::{times_beyond_noise, Recommendation};
use record::run::RunFile;
use record::run::{by_workload, recommendations};
use record::units::fmt_ns;

fn limited(r: &CapacityRecord) -> String {
    match r.limited_by {
        LimitedBy::Server => r.limit_label(),
        _ => format!("**{}**", r.limit_label()),
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
    let groups = by_workload(run);
    recommendation(&mut md, run, &groups);
    method(&mut md, run);
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
        crate::downstream::section(&mut md, run, workload);
        equal_load(&mut md, &ranked);
        let defined = c.workload(workload);
        let floor = |r: &CapacityRecord| cost_of(run, defined, r);
        where_time_went(&mut md, &ranked, &floor);
        let in_rank: Vec<&CapacityRecord> = ranked.iter().map(|r| **r).collect();
        crate::common_load::section(&mut md, run, defined, &in_rank);
        cost(&mut md, run, &ranked, &floor);
        past_the_knee(&mut md, &ranked);
        let _ = writeln!(md, "**What this shows.**\n");
        for pair in ranked.windows(2) {
            compare_pair(&mut md, pair[0], pair[1]);
        }
        for r in records {
            sweep_and_failures(&mut md, r);
        }
        md.push('\n');
        let slug = crate::labels::slug(workload);
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

/// The recommendation: the winner's (or the tied models') rows, then one
/// sentence per workload.
fn recommendation(md: &mut String, run: &RunFile, groups: &[(String, Vec<&CapacityRecord>)]) {
    let recs = recommendations(run);
    let _ = writeln!(md, "## Recommendation\n");
    if let Some(how) = run.config.load_description() {
        let _ = writeln!(md, "Measured with every client sending {how}.\n");
    }
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
            row(md, workload, r);
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
}

/// The tied models' figures at the tie's common load, when probed there.
fn equal_load(md: &mut String, ranked: &[&&CapacityRecord]) {
    let at: Vec<(&str, &record::recommend::EqualLoad)> = ranked
        .iter()
        .filter_map(|r| r.equal_load.as_ref().map(|e| (r.model.as_str(), e)))
        .collect();
    let Some((_, first)) = at.first() else { return };
    let _ = writeln!(
        md,
        "**At equal load** (the tied models, each with at least {} probes at {} clients, the largest load every one of them passed, its search's own probes there included; the tie-break compares these ranges):\n",
        record::capacity::EQUAL_LOAD_REPEATS,
        first.clients
    );
    let _ = writeln!(
        md,
        "| model | valid probes | CPU us/pkt | peak PSS MiB | p99 |\n|---|---:|---:|---:|---:|"
    );
    for (model, e) in &at {
        let _ = writeln!(
            md,
            "| `{model}` | {} | {:.2}-{:.2} | {:.1}-{:.1} | {}-{} |",
            e.cells.len(),
            e.cpu_us.min,
            e.cpu_us.max,
            e.pss_kib.min / 1024.0,
            e.pss_kib.max / 1024.0,
            fmt_ns(e.p99_ns.min as u64),
            fmt_ns(e.p99_ns.max as u64)
        );
    }
    md.push('\n');
}

/// A capacity's CPU per frame against the floor: (its work per frame, the
/// bare loop's at its load, the multiple).
type Cost = (f64, Option<f64>, Option<f64>);

fn cost_of(run: &RunFile, w: Option<&record::config::Workload>, r: &CapacityRecord) -> Cost {
    let measured = r
        .attribution
        .as_ref()
        .and_then(|a| a.work.iter().find(|w| w.kind == "cpu"))
        .map(|w| w.p50_ns as f64 / 1e3);
    let work = w.map_or(0.0, |w| efficiency::work_us_per_frame(&w.plan, measured));
    let floor = efficiency::floor_at(&run.floor, r.clients);
    (
        work,
        floor,
        efficiency::multiple(r.cpu_us.median, work, floor),
    )
}

/// Each model's CPU per frame beyond its work as a multiple of the bare
/// loop's at the same load, and the server's own counts per frame.
fn cost(
    md: &mut String,
    run: &RunFile,
    ranked: &[&&CapacityRecord],
    floor: &dyn Fn(&CapacityRecord) -> Cost,
) {
    if run.floor.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**Cost against the bare loop** (`bare`: the readiness loop of `single` reading, checking, counting and acking every frame and doing no work, probed at {} clients and interpolated in log(clients); multiple = (CPU per frame - the work's CPU per frame) / the bare loop's CPU per frame at the same load, the work's being its cpu frames' share times their median service time as measured (as asked where none was measured); the counts are the server's own over its whole run, per frame, at the capacity's first passing probe, the user/system split being the kernel's tick sampling, coarse for a lightly loaded server; waits are the model's readiness waits (`epoll_wait`, an io_uring wait, a tokio worker's park; 0 where threads block in their reads), writes its ack writes (0 unless acks are asked for)):\n",
        run.floor.iter().map(|p| p.clients.to_string()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        md,
        "| model | clients | CPU us/frame | work us/frame | bare loop us/frame | multiple | frames/read / waits/frame / writes/frame | user / sys us/frame | voluntary / involuntary switches/frame |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in ranked {
        let (work, at, multiple) = floor(r);
        let counts = r
            .probe_at_capacity()
            .and_then(|p| run.cells.get(p.cell))
            .and_then(|c| c.derived.counts.clone());
        let (fpr, cpu, ctxt) = counts.map_or(("-".into(), "-".into(), "-".into()), |k| {
            (
                format!(
                    "{:.1} / {:.3} / {:.3}",
                    k.frames_per_read, k.waits, k.writes
                ),
                format!("{:.2} / {:.2}", k.user_us, k.sys_us),
                format!("{:.3} / {:.3}", k.voluntary_ctxt, k.involuntary_ctxt),
            )
        });
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.2} | {:.2} | {} | {} | {fpr} | {cpu} | {ctxt} |",
            r.model,
            r.clients,
            r.cpu_us.median,
            work,
            at.map_or("-".into(), |f| format!("{f:.2}")),
            multiple.map_or("-".into(), |m| format!("{m:.1}x")),
        );
    }
    md.push('\n');
}

/// Each model's stage shares at its capacity, and its sentence with its
/// cost against the floor.
fn where_time_went(
    md: &mut String,
    ranked: &[&&CapacityRecord],
    floor: &dyn Fn(&CapacityRecord) -> Cost,
) {
    let with: Vec<(&CapacityRecord, &Attribution)> = ranked
        .iter()
        .filter_map(|r| r.attribution.as_ref().map(|a| (**r, a)))
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**Where the time went** at each model's capacity (its passing repeats together). A frame's latency is four stages: fleet = due to written (the generator's batching and lateness: the model cannot change it, shown apart as a mean), then, in the server's hands, socket = written to read (the kernel, the network and the socket's buffer until the server's read returned: a frame waits there while the model does something else), queue = read to the start of its work, service = the work. Slowest 1% = the frames from the bucket of the service latency's p99 up (written to finished; buckets 1/8 octave wide), with each server stage's share of their time in the server; the work is flagged where its median is more than {:.0}% off what was asked:\n",
        record::attribution::WORK_TOLERANCE * 100.0
    );
    let _ = writeln!(
        md,
        "| model | clients | slowest 1%: in the server | socket | queue | service | before the write | median: in the server | work as measured / asked |\n|---|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    for (r, a) in &with {
        let t = &a.tail;
        let work: Vec<String> = a
            .work
            .iter()
            .map(|w| {
                let flag = if w.flagged() { " **off**" } else { "" };
                format!(
                    "{} {} / {} ({:+.0}%){flag}",
                    w.kind,
                    fmt_ns(w.p50_ns),
                    fmt_ns(w.asked_ns as u64),
                    w.off_pct()
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            r.clients,
            fmt_ns(t.mean_ns as u64),
            pct(t.share[0]),
            pct(t.share[1]),
            pct(t.share[2]),
            fmt_ns(t.fleet_mean_ns as u64),
            fmt_ns(a.median.mean_ns as u64),
            if work.is_empty() {
                "-".to_string()
            } else {
                work.join("; ")
            }
        );
    }
    md.push('\n');
    for (r, a) in &with {
        let cost = match floor(r).2 {
            Some(m) => format!(
                "; its CPU per frame beyond the work is {m:.1}x the bare loop's at {} clients",
                r.clients
            ),
            None => String::new(),
        };
        let _ = writeln!(md, "- `{}`: {}{cost}.", r.model, a.sentence());
    }
    md.push('\n');
}

/// Each server-limited capacity probed past its knee: what it processed
/// there against what was offered, and how evenly.
fn past_the_knee(md: &mut String, ranked: &[&&CapacityRecord]) {
    let with: Vec<(&CapacityRecord, &record::past_knee::PastKnee)> = ranked
        .iter()
        .filter_map(|r| r.past_knee.as_ref().map(|p| (**r, p)))
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**Past the knee** (each server-limited capacity probed once more at {} its clients, within the search's bound; processed = frames the server finished per second of the window; fairness = Jain's index over the clients' shares of the frames read, 1 = even; client p99s = the lowest and the highest client's own p99 and Jain's index over them, measured past the knee only, where the server records each client apart; the rate holds at >= {:.0}% of its rate at the capacity, collapses below {:.0}%):\n",
        record::past_knee::MULTIPLES.map(|m| format!("{m}x")).join(" and "),
        record::past_knee::HOLDS * 100.0,
        record::past_knee::COLLAPSES * 100.0
    );
    let _ = writeln!(
        md,
        "| model | at capacity | past it: clients, processed of offered, fairness, client p99s |\n|---|---:|---|"
    );
    for (r, p) in &with {
        let past: Vec<String> = p
            .past
            .iter()
            .map(|x| {
                let tails = match (x.client_p99_ns, x.p99_fairness) {
                    (Some((lo, hi)), Some(j)) => {
                        format!(", {}-{} ({j:.2})", fmt_ns(lo), fmt_ns(hi))
                    }
                    _ => String::new(),
                };
                format!(
                    "{}: {:.0}/s of {:.0}/s, {:.2}{tails}",
                    x.clients, x.processed_pps, x.offered_pps, x.fairness
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "| `{}` | {}: {:.0}/s of {:.0}/s, {:.2} | {} |",
            r.model,
            p.at.clients,
            p.at.processed_pps,
            p.at.offered_pps,
            p.at.fairness,
            if past.is_empty() {
                "-".to_string()
            } else {
                past.join("; ")
            }
        );
    }
    md.push('\n');
    for (r, p) in &with {
        let _ = writeln!(md, "- `{}`: {}.", r.model, p.sentence());
    }
    md.push('\n');
}

/// One sentence on two models adjacent in the ranking: a ratio only
/// beyond the noise.
fn compare_pair(md: &mut String, a: &CapacityRecord, b: &CapacityRecord) {
    let _ = match times_beyond_noise(&a.interval, &b.interval) {
        // Rounded down, a ratio under 1.1 reads as "1.0x": say
        // "more" instead.
        Some(x) if x < 1.1 => writeln!(
            md,
            "- `{}` serves more clients than `{}` ({} vs {}).",
            a.model,
            b.model,
            a.interval.label(a.clients),
            b.interval.label(b.clients)
        ),
        Some(x) => writeln!(
            md,
            "- `{}` serves at least {x:.1}x the clients of `{}` ({} vs {}).",
            a.model,
            b.model,
            a.interval.label(a.clients),
            b.interval.label(b.clients)
        ),
        None if b.interval.low == 0 && a.interval.low > 0 && a.interval.clears(&b.interval) => {
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

/// A model's sweep over worker counts, and its probes near capacity that
/// failed by more than latency.
fn sweep_and_failures(md: &mut String, r: &CapacityRecord) {
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
            "- `{}` by worker count: {} (reported at {}{}; {}).",
            r.model,
            counts.join(", "),
            r.workers,
            if r.sweep.iter().any(|s| s.workers == r.io_waits) {
                format!(
                    "; Little's law put ~{} io waits in flight at the knee",
                    r.io_waits
                )
            } else {
                String::new()
            },
            r.sweep_stop
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

/// The method section, every figure from the constants the code uses.
fn method(md: &mut String, run: &RunFile) {
    let c = &run.config;
    let _ = writeln!(md, "## Method\n");
    environment(md, run);
    let _ = writeln!(
        md,
        "- **Capacity** is the largest fleet size (clients at {} frames/s each, 32-byte frames {}) at which a fresh, warmed-up cell is valid (every frame accounted for per client: none lost, duplicated, missing or miscounted; no protocol error; the fleet on schedule), and meets the SLO. Latency counts from when each frame was due (coordinated omission corrected).",
        c.rate,
        c.load_description()
            .unwrap_or_else(|| "on a fixed open-loop schedule".into())
    );
    let _ = writeln!(
        md,
        "- **One load shape**: every probe of every model uses one batch window, {} (frames due within it go out in one write), fixed when the run starts{}. A window that changed with the fleet size would change the CPU cost per frame, the latency and the SLO bound with it, and models would be compared under different loads.",
        fmt_ns(c.batch_window_for(1).as_nanos() as u64),
        if c.batch_window.is_some() {
            " (`--batch-window`)".to_string()
        } else {
            format!(
                ": the smallest window at which the fleet calibration{} says one fleet core paces the search's bound with {:.0}% headroom",
                c.reconnect_every.map_or(String::new(), |n| format!(" (measured with a reconnect every {n} frames, as the run's clients do)")),
                record::calibration::HEADROOM * 100.0
            )
        }
    );
    let slos: Vec<String> = c
        .workloads
        .iter()
        .filter_map(|w| {
            c.slo_for(&w.name)
                .ok()
                .map(|s| format!("{}: {}", w.name, s.label()))
        })
        .collect();
    let _ = writeln!(
        md,
        "- **SLO**, one per workload for the whole run: {}{}.",
        slos.join("; "),
        if c.slo.is_some() {
            " (`--slo`)"
        } else {
            " (the batch window + 1 ms + 2 x the longest work one frame asks for)"
        }
    );
    if let Some(note) = crate::labels::kernel_note(c) {
        let _ = writeln!(md, "- **cpu work**: {note}.");
    }
    for note in crate::labels::cost_notes(c) {
        let _ = writeln!(md, "- {note}");
    }
    search_method(md, run);
    let _ = writeln!(
        md,
        "- Probes: {} warm-up, at least {} measured, drain timeout {}; server pinned to CPUs {:?}, fleet to {:?}{}, sampler and harness on {:?}; seed {}. {} probes in all.\n",
        humantime::format_duration(c.warmup),
        humantime::format_duration(c.duration),
        humantime::format_duration(c.drain_timeout),
        c.server_cpus,
        c.fleet_cpus,
        crate::summary::shards_note(c.fleet_shards),
        c.harness_cpus,
        c.seed,
        run.cells.len()
    );
}

/// The search's rules, every figure from the constants the code uses.
fn search_method(md: &mut String, run: &RunFile) {
    use record::canary;
    use record::capacity as search;
    use record::capacity as pair;
    let c = &run.config;
    let Some(s) = c.search.as_ref() else { return };
    let _ = writeln!(
        md,
        "- **Search**: from 1 client, an exponential ramp (x{:.0} to x{:.0} a step, sized to bring the server to {:.0}% busy) until a probe fails, then bisection until the next step up is within {:.0}% (or 1 client); never above {} clients, the most this machine's fleet paces on time. Each probe measures at least {} frames (a probe of few clients runs longer than {}), so its p99 rests on at least {} frames above it. A latency-only failure counts only if a second probe at the same size fails too.",
        search::MIN_GROWTH,
        search::MAX_GROWTH,
        search::TARGET_UTIL * 100.0,
        s.params.tolerance * 100.0,
        s.params.max_clients,
        s.min_samples,
        humantime::format_duration(c.duration),
        s.min_samples / 100
    );
    let _ = writeln!(
        md,
        "- **The machine's noise**: beside every probe a real-time canary thread on each server and fleet CPU wakes every {} and records how late it woke; a wake later than {} is a stall of the machine. A latency miss or a late fleet during which the CPUs stalled more than {:.1}% of the measured window, by at least as much as the miss, is the machine's, not the server's: the probe is tried again after {} (doubling, at most {} more tries), and if every try stalled it counts as `machine` (it says nothing of the server, like a fleet at its bound).",
        fmt_ns(canary::PERIOD.as_nanos() as u64),
        fmt_ns(canary::STALL_NS),
        canary::DISTURBED_SHARE * 100.0,
        humantime::format_duration(pair::MACHINE_PAUSE),
        pair::MACHINE_RETRIES
    );
    let _ = writeln!(
        md,
        "- **Each model at its best**: {}",
        if !s.sweep {
            "the worker count given with --workers, for every model.".to_string()
        } else {
            format!(
                "searched at its default worker count, {} (where an io wait occupies a worker) the Little's-law estimate of io waits in flight at the knee{}. Reported at the count with the highest capacity; why the sweep stopped is given per model.",
                if c.quick { "and" } else { "1 x and 4 x the server CPUs, and" },
                if c.quick {
                    " (`--quick`: a first look, the gain is not followed further)".to_string()
                } else {
                    format!("; then, while the most workers tried did best and gained over fewer, twice as many (at most {} workers)", pair::MAX_WORKERS)
                }
            )
        }
    );
    let _ = writeln!(
        md,
        "- **Interval**: after every pair's search, {} confirmation round(s) spread over the run (so that a knee's repeats fall at different times of the machine, not back to back), each probing the capacity and the size just above its interval again (and, while that passes, the next size above the interval); the last round then probes sizes below it (growing steps, down to 1 client) until one passes every probe. A p99 within {:.0}% of the bound either way is *marginal*: a repeat may well turn it around, so it counts for the capacity but pins neither end of the interval (when the only failures above are marginal, larger sizes are probed until one fails clearly). The interval runs from the largest size that passed every probe, at least one clearly, and lies below every size that failed on the server's account at some time of the run, to one below the smallest size above it, and above every size that passed at some time of the run, that failed every probe clearly; `>=` when nothing there failed (the generator's or the machine's bound). The machine's own speed moves a knee too: its kernel rounds were timed at the start and before each round ({} check(s)), and with the calibration's rounds they spread {:.1}% (slowest to fastest, the {:.0}% at either end left out); a server's capacity grows at most as fast as the machine, so a size that failed every probe may pass on the machine that much faster, and each interval's high end is raised to one below that size times {:.3} (never past the search's bound; the low end stays a size that passed every probe). The capacity is the largest size probed inside the interval that passed most of its probes, with its figures from those probes; `< 1` when not even one client passed every probe and the server failed there, `>= 0` when nothing was measured on the server's account. A miss's reason gives the p99's 95% interval from order statistics (ranks n p -+ 1.96 sqrt(n p (1 - p))).",
        s.confirm.max(1),
        record::interval::MARGIN * 100.0,
        run.speed_checks.len(),
        run.speed_spread() * 100.0,
        record::kernel_calibration::SPREAD_TRIM * 100.0,
        1.0 + run.speed_spread()
    );
    let _ = writeln!(
        md,
        "- **Projection**: where the generator stopped a search (`>=`), the server's CPU per frame at that load projects a capacity by the utilisation law: {:.0}% of the server's {} CPU(s) divided by the CPU per frame and the rate per client, labelled \"projected\" and never used by the recommendation. It assumes CPU per frame stays as measured there (it falls as reads carry more frames, so it errs low) and that CPU, not latency or io waits, is the limit.",
        record::capacity::PROJECT_UTIL * 100.0,
        c.server_cpus.len()
    );
    if c.models.iter().any(|m| m == "prefork" || m == "percore") {
        let _ = writeln!(
            md,
            "- **Placement** (`--placement {}`): {}",
            c.placement,
            match c.placement {
                record::config::Placement::Least => "`prefork`, `percore` and `uring` accept in one place and hand each connection to the worker with the fewest open ones.",
                record::config::Placement::Hash => "`prefork`, `percore` and `uring` give each worker its own `SO_REUSEPORT` listener, and the kernel places each connection by a hash of its addresses (two clients may share a worker while another has none).",
            }
        );
    }
    let _ = writeln!(
        md,
        "- **Recommendation**: the model with the highest capacity wins only if its interval lies wholly above every other model's; otherwise the overlapping models tie, and every tied model is probed at one load until it has {} probes there (its search's own count), the largest every one of them passed (the smallest low end), at its reported worker count; the tie is broken there by CPU per packet, then by peak PSS, then by p99 latency, each only where the repeats' ranges do not overlap (where a tied model has no valid probe there, by CPU per packet and peak PSS at each model's own capacity, and the sentence says so). Every \"N x\" below compares one interval's low end with the other's high end, rounded down, and is written only when they do not overlap.",
        record::capacity::EQUAL_LOAD_REPEATS
    );
}

fn environment(md: &mut String, run: &RunFile) {
    let mut env = String::new();
    crate::summary::environment(&mut env, run);
    for para in env.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let _ = writeln!(md, "- {}", para.trim());
    }
}
