//! `harness compare A B`: per cell, the change in achieved rate, p99 and
//! CPU per packet; a change counts as significant only when it exceeds the
//! spread of the repeats of both runs (so never with one repeat). For
//! capacity searches, per (model, workload) the change in capacity, counted
//! only when the intervals do not overlap.

use std::fmt::Write;

use crate::aggregate::{points, Point};
use record::run::RunFile;
use record::units::{fmt_ns, fmt_rate};

/// Result of a comparison.
pub struct Comparison {
    /// The markdown table.
    pub markdown: String,
    /// Significant regressions beyond the limit, one line each.
    pub regressions: Vec<String>,
}

fn pct(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        0.0
    } else {
        (b - a) / a * 100.0
    }
}

/// Whether the intervals of two spreads do not overlap. A spread of one
/// repeat is a point: it says nothing of the noise, so nothing is outside.
fn outside(a: (f64, f64), b: (f64, f64), repeated: bool) -> bool {
    repeated && (a.1 < b.0 || b.1 < a.0)
}

/// Compares run `b` against baseline `a`.
pub fn compare(a: &RunFile, b: &RunFile, fail_pct: Option<f64>) -> Comparison {
    if !a.capacities.is_empty() && !b.capacities.is_empty() {
        return compare_capacities(a, b, fail_pct);
    }
    let pa = points(a);
    let pb = points(b);
    let repeated = a.config.repeat > 1 && b.config.repeat > 1;
    let mut md = String::new();
    let _ = writeln!(md, "# `{}` (A) vs `{}` (B)\n", a.run_id, b.run_id);
    let _ = writeln!(
        md,
        "Changes marked * exceed the spread of the repeats (A had {} repeat(s), B {}).{}\n",
        a.config.repeat,
        b.config.repeat,
        if repeated {
            ""
        } else {
            " With one repeat no change can be told from noise, so none is marked and none counts as a regression: rerun both with --repeat 3."
        }
    );
    let unlike = different_work(a, b);
    for (w, why) in &unlike {
        let _ = writeln!(md, "**Workload `{w}` asked for different work** in the two runs ({why}): its rows compare different loads, and none counts as a regression.\n");
    }
    let _ = writeln!(md, "| workload | model | clients | achieved A | achieved B | change | p99 A | p99 B | change | CPU us/pkt A | B | change | verdicts |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut regressions = Vec::new();
    for x in &pa {
        let Some(y) = pb
            .iter()
            .find(|p| p.model == x.model && p.workload == x.workload && p.clients == x.clients)
        else {
            continue;
        };
        let rate = pct(x.achieved_pps, y.achieved_pps);
        let p99 = pct(x.p99_ns as f64, y.p99_ns as f64);
        let cpu = pct(x.cpu_us_per_packet, y.cpu_us_per_packet);
        let sig_rate = outside(x.achieved_spread, y.achieved_spread, repeated);
        let sig_p99 = outside(to_f(x.p99_spread), to_f(y.p99_spread), repeated);
        let sig_cpu = outside(x.cpu_spread, y.cpu_spread, repeated);
        let mark = |s: bool| if s { "*" } else { "" };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:+.1}%{} | {} | {} | {:+.1}%{} | {:.2} | {:.2} | {:+.1}%{} | {} / {} |",
            x.workload,
            x.model,
            x.clients,
            fmt_rate(x.achieved_pps),
            fmt_rate(y.achieved_pps),
            rate,
            mark(sig_rate),
            fmt_ns(x.p99_ns),
            fmt_ns(y.p99_ns),
            p99,
            mark(sig_p99),
            x.cpu_us_per_packet,
            y.cpu_us_per_packet,
            cpu,
            mark(sig_cpu),
            crate::labels::status_word(x.status),
            crate::labels::status_word(y.status)
        );
        let comparable = !unlike.iter().any(|(w, _)| w == &x.workload);
        if let Some(limit) = fail_pct.filter(|_| comparable) {
            let name = cell_name(x);
            if sig_rate && -rate > limit {
                regressions.push(format!("{name}: achieved rate {rate:+.1}%"));
            }
            if sig_p99 && p99 > limit {
                regressions.push(format!("{name}: p99 {p99:+.1}%"));
            }
            if sig_cpu && cpu > limit {
                regressions.push(format!("{name}: CPU per packet {cpu:+.1}%"));
            }
        }
    }
    finish(md, regressions, fail_pct)
}

/// Capacity per (model, workload): a change only where the intervals do
/// not overlap; a regression where B's lies wholly below A's by more than
/// `fail_pct` percent.
fn compare_capacities(a: &RunFile, b: &RunFile, fail_pct: Option<f64>) -> Comparison {
    let mut md = String::new();
    let _ = writeln!(md, "# `{}` (A) vs `{}` (B): capacity\n", a.run_id, b.run_id);
    let _ = writeln!(
        md,
        "A change is stated only where the capacity intervals do not overlap; otherwise the two are within noise.\n"
    );
    let _ = writeln!(
        md,
        "| workload | model | capacity A | capacity B | change |\n|---|---|---:|---:|---|"
    );
    let mut regressions = Vec::new();
    let mut changed = 0;
    let mut not_compared = 0;
    let unlike = different_work(a, b);
    for x in &a.capacities {
        let Some(y) = b
            .capacities
            .iter()
            .find(|c| c.model == x.model && c.workload == x.workload)
        else {
            continue;
        };
        let differs = unlike.iter().any(|(w, _)| w == &x.workload);
        not_compared += usize::from(differs);
        changed += usize::from(
            !differs && (y.interval.clears(&x.interval) || x.interval.clears(&y.interval)),
        );
        let change = if differs {
            "not compared: different work".to_string()
        } else if y.interval.clears(&x.interval) {
            format!("higher ({:+.0}%)", pct(x.clients as f64, y.clients as f64))
        } else if x.interval.clears(&y.interval) {
            let drop = pct(x.clients as f64, y.clients as f64);
            if fail_pct.is_some_and(|limit| -drop > limit) {
                regressions.push(format!(
                    "{}/{}: capacity {} -> {}",
                    x.workload,
                    x.model,
                    x.interval.label(x.clients),
                    y.interval.label(y.clients)
                ));
            }
            format!("lower ({drop:+.0}%)")
        } else {
            "within noise".to_string()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} (w={}) | {} (w={}) | {change} |",
            x.workload,
            x.model,
            x.interval.label(x.clients),
            x.workers,
            y.interval.label(y.clients),
            y.workers
        );
    }
    let disagree = recommendations(&mut md, a, b, &unlike);
    for (w, why) in &unlike {
        let _ = writeln!(md, "\n**Workload `{w}` asked for different work** in the two runs ({why}): its capacities and recommendation are not compared.");
    }
    let _ = writeln!(
        md,
        "\n{}",
        if changed == 0 && disagree == 0 && not_compared == 0 {
            "**No change beyond noise**: every capacity interval overlaps and every recommendation agrees.".to_string()
        } else {
            format!("**Changed beyond noise**: {changed} capacities with disjoint intervals, {disagree} recommendations that disagree{}.", if not_compared > 0 { format!("; {not_compared} capacities not compared (different work)") } else { String::new() })
        }
    );
    finish(md, regressions, fail_pct)
}

/// The recommendations side by side; returns how many disagree: two agree
/// when they name the same model, or one's pick is among the other's tie.
/// Workloads in `unlike` (different work) are shown, not judged.
fn recommendations(
    md: &mut String,
    a: &RunFile,
    b: &RunFile,
    unlike: &[(String, String)],
) -> usize {
    use record::recommend::Recommendation;
    let ra = record::run::recommendations(a);
    let rb = record::run::recommendations(b);
    let _ = writeln!(
        md,
        "\n| workload | use (A) | use (B) | agree |\n|---|---|---|---|"
    );
    let mut disagree = 0;
    for (w, x) in &ra {
        let Some((_, y)) = rb.iter().find(|(v, _)| v == w) else {
            continue;
        };
        let named = |r: &Recommendation| -> Vec<String> {
            match r {
                Recommendation::Winner { model, .. } => vec![model.clone()],
                Recommendation::Tie { models, .. } => models.clone(),
                Recommendation::Nothing { .. } => Vec::new(),
            }
        };
        let (nx, ny) = (named(x), named(y));
        let agree = match (x.model(), y.model()) {
            (Some(p), Some(q)) => p == q || ny.iter().any(|m| m == p) || nx.iter().any(|m| m == q),
            (None, None) => nx.iter().any(|m| ny.contains(m)) || (nx.is_empty() && ny.is_empty()),
            (Some(p), None) => ny.iter().any(|m| m == p),
            (None, Some(q)) => nx.iter().any(|m| m == q),
        };
        let differs = unlike.iter().any(|(v, _)| v == w);
        disagree += usize::from(!agree && !differs);
        let _ = writeln!(
            md,
            "| {w} | {} | {} | {} |",
            x.headline(),
            y.headline(),
            match (differs, agree) {
                (true, _) => "not compared (different work)",
                (false, true) => "yes",
                (false, false) => "**no**",
            }
        );
    }
    disagree
}

/// Appends the regressions, if any, to the markdown.
fn finish(mut md: String, regressions: Vec<String>, fail_pct: Option<f64>) -> Comparison {
    if !regressions.is_empty() {
        let _ = writeln!(md, "\n## Regressions beyond {}%\n", fail_pct.unwrap_or(0.0));
        for r in &regressions {
            let _ = writeln!(md, "- {r}");
        }
    }
    Comparison {
        markdown: md,
        regressions,
    }
}

/// The workloads both runs have whose plans ask for different work, and
/// why (e.g. kernels calibrated apart, or frames that arrived otherwise:
/// one load shape is another load).
fn different_work(a: &RunFile, b: &RunFile) -> Vec<(String, String)> {
    let (ca, cb) = (a.config.reconnect_every, b.config.reconnect_every);
    let arrivals = (a.config.arrival != b.config.arrival)
        .then(|| format!("arrivals `{}` and `{}`", a.config.arrival, b.config.arrival))
        .or_else(|| {
            let churn = |n: Option<u64>| n.map_or("none".into(), |n| format!("every {n} frames"));
            (ca != cb).then(|| format!("reconnects {} and {}", churn(ca), churn(cb)))
        });
    a.config
        .workloads
        .iter()
        .filter_map(|x| {
            let y = b.config.workload(&x.name)?;
            let why = arrivals
                .clone()
                .or_else(|| record::kernel_calibration::different_work(&x.plan, &y.plan))?;
            Some((x.name.clone(), why))
        })
        .collect()
}

fn to_f(s: (u64, u64)) -> (f64, f64) {
    (s.0 as f64, s.1 as f64)
}

fn cell_name(p: &Point) -> String {
    format!("{}/{}/{}c", p.workload, p.model, p.clients)
}
