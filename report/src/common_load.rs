//! Every model of a workload at one common load (the largest all of them
//! passed): where its frames' time went and its CPU per frame against the
//! bare loop's there, side by side at the same offered load.

use std::fmt::Write;

use record::attribution::Attribution;
use record::capacity::CapacityRecord;
use record::efficiency;
use record::run::RunFile;
use record::units::fmt_ns;

/// A model at the common load: its record and, when its probe there was
/// valid, that probe's attribution.
pub struct AtCommonLoad<'a> {
    /// The model's capacity record (its `common_load` is set).
    pub record: &'a CapacityRecord,
    /// The common load, clients.
    pub clients: u32,
    /// Its frames' stages in the probe there.
    pub attribution: Option<&'a Attribution>,
}

/// The models of `ranked` probed at a common load, in that order, with the
/// load (`None`: fewer than two were).
pub fn models_at<'a>(
    run: &'a RunFile,
    ranked: &[&'a CapacityRecord],
) -> Option<(u32, Vec<AtCommonLoad<'a>>)> {
    let at: Vec<AtCommonLoad> = ranked
        .iter()
        .filter_map(|r| {
            let e = r.common_load.as_ref()?;
            let attribution = e
                .cells
                .first()
                .and_then(|&i| run.cells.get(i))
                .and_then(|c| c.derived.attribution.as_ref());
            Some(AtCommonLoad {
                record: r,
                clients: e.clients,
                attribution,
            })
        })
        .collect();
    let clients = at.first()?.clients;
    (at.len() >= 2).then_some((clients, at))
}

/// The section of summary.md: one row per model at the common load.
pub fn section(
    md: &mut String,
    run: &RunFile,
    workload: Option<&record::config::Workload>,
    ranked: &[&CapacityRecord],
) {
    let Some((clients, at)) = models_at(run, ranked) else {
        return;
    };
    let floor = efficiency::floor_at(&run.floor, clients);
    let _ = writeln!(
        md,
        "**All at {clients} clients** (every model probed once more at the largest load all of them passed, at its capacity's worker count: the same offered load for all; shares as above, of its slowest 1% and its median frames; multiple = CPU per frame beyond the work against the bare loop's at {clients} clients{}):\n",
        floor.map_or(" (not probed)".to_string(), |f| format!(", {f:.2} us"))
    );
    let _ = writeln!(
        md,
        "| model | CPU us/frame | multiple | p99 | slowest 1%: in the server | socket | queue | service | median: in the server | socket | queue | service |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    for m in &at {
        let e = m
            .record
            .common_load
            .as_ref()
            .expect("models_at keeps these");
        if e.cells.is_empty() {
            let _ = writeln!(
                md,
                "| `{}` | not valid | - | - | - | - | - | - | - | - | - | - |",
                m.record.model
            );
            continue;
        }
        let measured = m
            .attribution
            .and_then(|a| a.work.iter().find(|w| w.kind == "cpu"))
            .map(|w| w.p50_ns as f64 / 1e3);
        let work = workload.map_or(0.0, |w| efficiency::work_us_per_frame(&w.plan, measured));
        let multiple = efficiency::multiple(e.cpu_us.median, work, floor)
            .map_or("-".to_string(), |x| format!("{x:.1}x"));
        let shares = |s: Option<&record::attribution::Shares>| match s {
            Some(s) => format!(
                "{} | {} | {} | {}",
                fmt_ns(s.mean_ns as u64),
                pct(s.share[0]),
                pct(s.share[1]),
                pct(s.share[2])
            ),
            None => "- | - | - | -".to_string(),
        };
        let _ = writeln!(
            md,
            "| `{}` | {:.2} | {multiple} | {} | {} | {} |",
            m.record.model,
            e.cpu_us.median,
            fmt_ns(e.p99_ns.median as u64),
            shares(m.attribution.map(|a| &a.tail)),
            shares(m.attribution.map(|a| &a.median)),
        );
    }
    md.push('\n');
}
