//! Cells whose fleet ran as several processes (shards, compose containers,
//! Kubernetes pods), merged and judged: `harness merge` and `harness k8s
//! render|collect`.

use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use workloads::WorkSpec;

use crate::cli::{K8sCommand, MergeArgs};
use common::fs::write_atomic;
use fleet;

/// A cell whose fleet ran as several processes, merged.
#[derive(serde::Serialize)]
struct MergedCell {
    /// Whether the server's one-way latencies (and `derived`'s latency
    /// figures) mean anything: every fleet shared the server's clock.
    one_way_latency: bool,
    fleet: fleet::fleet_report::FleetReport,
    server: Option<models::ServerReport>,
    reconciliation: record::verdict::Reconciliation,
    derived: record::figures::Figures,
    verdict: record::verdict::Verdict,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a {what} report of this version", path.display()))
}

/// `harness merge`: one fleet report from several, reconciled against the
/// server's; prints the cell's verdict; exit 1 when it is invalid.
pub fn merge(args: &MergeArgs) -> Result<ExitCode> {
    let parts: Vec<fleet::fleet_report::FleetReport> = args
        .fleets
        .iter()
        .map(|p| read_json(p, "fleet"))
        .collect::<Result<_>>()?;
    let server: Option<models::ServerReport> = match &args.server {
        Some(p) => Some(read_json(p, "server")?),
        None => None,
    };
    merged_cell(&parts, server, args.out.as_deref(), args.summary.as_deref())
}

/// Merges `parts`, reconciles them with `server`, prints the cell's
/// summary (also to `summary`), writes the merged cell to `out`; exit 1
/// when the verdict is invalid.
fn merged_cell(
    parts: &[fleet::fleet_report::FleetReport],
    server: Option<models::ServerReport>,
    out: Option<&std::path::Path>,
    summary: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let merged = fleet::merge::merge(parts)?;
    let reconciliation = record::verdict::reconcile(&merged, server.as_ref());
    let one_way = merged.config.shared_clock;
    let mut derived = record::figures::derive(
        Some(&merged),
        server.as_ref(),
        &record::samples::Samples::default(),
    );
    if !one_way {
        // Due times from other hosts' clocks: the server's latencies are noise.
        let d = &mut derived;
        (d.p50_ns, d.p90_ns, d.p99_ns, d.p999_ns, d.max_ns) = (0, 0, 0, 0, 0);
        (d.service_p50_ns, d.service_p99_ns, d.service_p999_ns) = (0, 0, 0);
    }
    let verdict = record::verdict::verdict(
        Some(&merged),
        server.as_ref(),
        None,
        &reconciliation,
        &record::verdict::RunFaults::default(),
        derived.backlog_s,
    );
    let cell = MergedCell {
        one_way_latency: one_way,
        fleet: merged,
        server,
        reconciliation,
        derived,
        verdict,
    };
    let text = describe(&cell, parts.len())?;
    print!("{text}");
    if let Some(path) = summary {
        write_atomic(path, text.as_bytes()).with_context(|| format!("write {}", path.display()))?;
    }
    let invalid = cell.verdict.status == record::verdict::Status::Invalid;
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(&cell).context("encode the merged cell")?;
        write_atomic(out, json.as_bytes()).with_context(|| format!("write {}", out.display()))?;
    }
    Ok(if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The merged cell in a few lines: fleets, server, acks, reconciliation
/// and verdict.
fn describe(cell: &MergedCell, reports: usize) -> Result<String> {
    use std::fmt::Write as _;
    let mut text = String::new();
    writeln!(
        text,
        "fleets:   {} reports, {} clients, {} measured frames sent (+{} warm-up), send lag p99 {}",
        reports,
        cell.fleet.config.clients,
        cell.fleet.sent.measured,
        cell.fleet.sent.warmup,
        record::units::fmt_ns(cell.fleet.send_lag_ns.p99)
    )?;
    if let Some(s) = &cell.server {
        let latency = if cell.one_way_latency {
            format!(
                "latency p50 {} p99 {}",
                record::units::fmt_ns(s.latency_ns.p50),
                record::units::fmt_ns(s.latency_ns.p99)
            )
        } else {
            "one-way latency not shown: the fleets ran on other clocks".to_string()
        };
        writeln!(
            text,
            "server:   {} ({} workers), {} measured frames received, {latency}",
            s.model, s.workers, s.packets.measured,
        )?;
    }
    if let Some(a) = &cell.fleet.acks {
        writeln!(
            text,
            "acks:     round trip p50 {} p99 {} p99.9 {} (fleet clock, {} frames); {} acked, {} unacked, {} twice, {} never sent, {} bad records; server dropped {}",
            record::units::fmt_ns(a.round_trip_ns.p50),
            record::units::fmt_ns(a.round_trip_ns.p99),
            record::units::fmt_ns(a.round_trip_ns.p999),
            a.round_trip_ns.count,
            a.counts.acked,
            a.counts.unacked,
            a.counts.duplicates,
            a.counts.unexpected,
            a.counts.bad_records,
            cell.server.as_ref().map_or(0, |s| s.acks.dropped)
        )?;
    }
    writeln!(
        text,
        "reconciliation: lost {}, excess {}, unread {}, clients mismatched {}",
        cell.reconciliation.lost,
        cell.reconciliation.excess,
        cell.reconciliation.unread,
        cell.reconciliation.mismatched.len()
    )?;
    let status = serde_json::to_value(cell.verdict.status)?;
    writeln!(
        text,
        "verdict:  {}{}",
        status.as_str().unwrap_or("?"),
        if cell.verdict.reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", cell.verdict.reasons.join("; "))
        }
    )?;
    Ok(text)
}

/// `harness k8s render|collect`.
pub fn k8s(command: &K8sCommand) -> Result<ExitCode> {
    match command {
        K8sCommand::Render(a) => {
            let spec = WorkSpec::from_str(&a.work).map_err(|e| anyhow!(e))?;
            if matches!(spec.kind, workloads::spec::SpecKind::Call(_)) {
                bail!("`{}` is call work, which needs a downstream responder beside the server, and the manifests start none yet: run it with `harness` (which starts one), or add a `harness responder` Deployment and give the server `--downstream`", a.work);
            }
            if models::find(&a.model).is_none() {
                bail!(
                    "no model `{}`: one of {}",
                    a.model,
                    models::names().join(", ")
                );
            }
            let cell = crate::k8s::Cell {
                model: a.model.clone(),
                workers: a.workers,
                work: a.work.clone(),
                clients: a.clients,
                shards: a.shards,
                rate: a.rate,
                duration: a.duration,
                warmup: a.warmup,
                image: a.image.clone(),
                start_at_unix_ns: fleet::unix_ns_after(a.start_in),
            };
            print!(
                "{}",
                crate::k8s::render(&cell).context("encode the manifests")?
            );
            Ok(ExitCode::SUCCESS)
        }
        K8sCommand::Collect(a) => {
            let mut text = String::new();
            if a.logs.is_empty() {
                use std::io::Read;
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("read kubectl logs output from stdin")?;
            }
            for p in &a.logs {
                text.push_str(
                    &std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
                );
                text.push('\n');
            }
            let found = crate::k8s::collect(&text).context("a report in the logs")?;
            if found.fleets.is_empty() {
                bail!("no fleet report in the logs: give the output of `kubectl logs -l app.kubernetes.io/name=ingest-fleet --tail=-1`");
            }
            merged_cell(&found.fleets, found.server, a.out.as_deref(), None)
        }
    }
}
