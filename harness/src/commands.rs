//! The small subcommands: `models`, `fleet`, `calibrate`, `report`,
//! `compare`, `merge` and `k8s`.

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use workloads::WorkSpec;

use crate::bench::results::{write_atomic, RunFile};
use crate::cli::{CalibrateArgs, CompareArgs, FleetArgs, K8sCommand, MergeArgs, ReportArgs};
use crate::cpus;
use crate::fleet::{self, FleetConfig};

/// `harness models`: the registry, one paragraph per model.
pub fn models() -> Result<()> {
    let cpus = cpus::allowed().len();
    for m in models::registry() {
        let available = match m.available() {
            Ok(()) => String::new(),
            Err(why) => format!("\n    NOT AVAILABLE HERE: {why}"),
        };
        println!(
            "{}\n    {}\n    --workers default here: {} (with {cpus} CPUs){available}",
            m.name(),
            m.describe(),
            m.default_workers(cpus)
        );
    }
    Ok(())
}

/// `harness fleet`: runs the fleet and prints or writes its report.
pub fn fleet(args: &FleetArgs) -> Result<()> {
    if let Some(parent) = args.parent_pid {
        crate::parent::die_with(parent)?;
    }
    let pinned = match &args.cpus {
        Some(list) => {
            let set = cpus::parse_list(list).map_err(|e| anyhow!(e))?;
            cpus::pin(&set).map_err(|e| anyhow!(e))?;
            Some(set)
        }
        None => None,
    };
    let spec = WorkSpec::from_str(&args.work).map_err(|e| anyhow!(e))?;
    let calibration = match (args.calibration, spec.needs_calibration()) {
        (Some(c), _) => Some(c),
        (None, true) => Some(workloads::kernel::iters_per_us(3)),
        (None, false) => None,
    };
    let work = spec.resolve(calibration).map_err(|e| anyhow!(e))?;
    if args.clients == 0 {
        return Err(anyhow!("--clients must be at least 1"));
    }
    let target = args
        .target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --target {}", args.target))?
        .next()
        .ok_or_else(|| anyhow!("--target {} resolves to no address", args.target))?;
    if !target.ip().is_loopback() {
        if !args.allow_remote {
            bail!(
                "--target {target} is not on this host: latency is computed by the server from the fleet's CLOCK_MONOTONIC, which only means something on one host. Give --allow-remote if the two clocks are shared (and you may load that host)"
            );
        }
        eprintln!("warning: loading {target}, not this host: latency figures are only right if the fleet and the server share one clock");
    }
    let config = FleetConfig {
        target,
        clients: args.clients,
        client_id_base: args.client_id_base,
        rate: args.rate,
        warmup: args.warmup.unwrap_or(if args.count.is_some() {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs(2)
        }),
        duration: args.duration,
        count: args.count,
        batch_window: args.batch_window,
        work,
        threads: args.threads.unwrap_or_else(|| cpus::allowed().len()).max(1),
        cpus: pinned,
        drain_timeout: args.drain_timeout,
        max_lag: args
            .max_lag
            .unwrap_or_else(|| FleetConfig::default_max_lag(args.batch_window)),
        connect_tries: args.connect_tries,
        shard: args.shard,
        start_at_unix_ns: args.start_at,
    };
    // One descriptor per client: a large fleet needs more than the usual 1024.
    crate::serve::raise_fd_limit();
    let report = if args.local_shards > 1 {
        local_shards(args, &config)?
    } else {
        fleet::run(&config)?
    };
    let json = serde_json::to_string_pretty(&report).context("encode the report")?;
    match &args.report {
        Some(path) => write_atomic(path, json.as_bytes())
            .with_context(|| format!("write {}", path.display()))?,
        None => println!("{json}"),
    }
    Ok(())
}

/// How far ahead of now local shards are told to start: time to exec and
/// connect every client.
const LOCAL_START_AHEAD: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `config` as `args.local_shards` child fleets (`--shard i/N`, one
/// `--start-at`), each with its share of the pacing threads, and merges
/// their reports.
fn local_shards(args: &FleetArgs, config: &FleetConfig) -> Result<fleet::report::FleetReport> {
    let n = args.local_shards;
    let exe = std::env::current_exe().context("find the harness executable")?;
    let dir = tempfile::tempdir().context("create a folder for the shards' reports")?;
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        + LOCAL_START_AHEAD;
    let threads = (config.threads / n as usize).max(1);
    let mut children = Vec::new();
    for i in 0..n {
        let report = dir.path().join(format!("shard-{i}.json"));
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("fleet")
            .args(["--target", &config.target.to_string()])
            .args(["--clients", &config.clients.to_string()])
            .args(["--rate", &config.rate.to_string()])
            .arg(format!("--duration={}ms", config.duration.as_millis()))
            .arg(format!("--warmup={}ms", config.warmup.as_millis()))
            .arg(format!(
                "--batch-window={}us",
                config.batch_window.as_micros()
            ))
            .args(["--work", &config.work.spec])
            .args(["--client-id-base", &config.client_id_base.to_string()])
            .arg(format!("--shard={i}/{n}"))
            .arg(format!("--start-at={}", start_at.as_nanos()))
            .args(["--threads", &threads.to_string()])
            .arg(format!(
                "--drain-timeout={}ms",
                config.drain_timeout.as_millis()
            ))
            .arg(format!("--max-lag={}us", config.max_lag.as_micros()))
            .args(["--connect-tries", &config.connect_tries.to_string()])
            .args(["--parent-pid", &std::process::id().to_string()])
            .arg("--report")
            .arg(&report)
            .stdin(std::process::Stdio::null());
        if let Some(count) = config.count {
            cmd.args(["--count", &count.to_string()]);
        }
        if let Some(c) = args.calibration {
            cmd.args(["--calibration", &c.to_string()]);
        }
        if let Some(cpus) = &args.cpus {
            cmd.args(["--cpus", cpus]);
        }
        if args.allow_remote {
            cmd.arg("--allow-remote");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start fleet shard {i}/{n}"))?;
        children.push((child, report));
    }
    let mut parts = Vec::new();
    for (i, (mut child, report)) in children.into_iter().enumerate() {
        let status = child
            .wait()
            .with_context(|| format!("wait for shard {i}/{n}"))?;
        if !status.success() {
            bail!("fleet shard {i}/{n} exited with {status}");
        }
        let text = std::fs::read_to_string(&report)
            .with_context(|| format!("read shard {i}/{n}'s report"))?;
        parts.push(serde_json::from_str(&text).context("a shard's report")?);
    }
    let mut merged = fleet::merge::merge(&parts)?;
    merged.config.cpus = config.cpus.clone();
    merged.config.threads = config.threads;
    Ok(merged)
}

/// `harness calibrate`: prints the kernel's speed on this machine.
pub fn calibrate(args: &CalibrateArgs) -> Result<()> {
    let k = workloads::kernel::iters_per_us(args.rounds);
    println!(
        "{k:.1} reference-kernel iterations per microsecond ({:.2} ns per iteration)",
        1000.0 / k
    );
    println!("so cpu:20us = cpu:{} on this machine", (20.0 * k).round());
    Ok(())
}

/// `harness report`: re-renders plots and summary from a saved run.
pub fn report(args: &ReportArgs) -> Result<()> {
    let run = RunFile::load(&args.run)?;
    let dir = crate::bench::results::run_file_path(&args.run)
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let written = crate::report::render(&run, &dir, &args.plots_dir)?;
    println!("summary: {}", written.summary.display());
    println!(
        "plots:   {} ({} files)",
        written.plots_dir.display(),
        written.plots.len()
    );
    Ok(())
}

/// `harness compare`: side-by-side table; exit 1 on a regression past the limit.
pub fn compare(args: &CompareArgs) -> Result<ExitCode> {
    let a = RunFile::load(&args.a)?;
    let b = RunFile::load(&args.b)?;
    let cmp = crate::report::compare::compare(&a, &b, args.fail_on_regression);
    println!("{}", cmp.markdown);
    if let Some(out) = &args.out {
        write_atomic(out, cmp.markdown.as_bytes())
            .with_context(|| format!("write {}", out.display()))?;
    }
    if !cmp.regressions.is_empty() {
        eprintln!("{} regressions beyond the limit", cmp.regressions.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A cell whose fleet ran as several processes, merged.
#[derive(serde::Serialize)]
struct MergedCell {
    fleet: fleet::report::FleetReport,
    server: Option<models::ServerReport>,
    reconciliation: crate::verdict::Reconciliation,
    derived: crate::bench::figures::Figures,
    verdict: crate::verdict::Verdict,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a {what} report of this version", path.display()))
}

/// `harness merge`: one fleet report from several, reconciled against the
/// server's; prints the cell's verdict; exit 1 when it is invalid.
pub fn merge(args: &MergeArgs) -> Result<ExitCode> {
    let parts: Vec<fleet::report::FleetReport> = args
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
pub fn merged_cell(
    parts: &[fleet::report::FleetReport],
    server: Option<models::ServerReport>,
    out: Option<&std::path::Path>,
    summary: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let merged = fleet::merge::merge(parts)?;
    let reconciliation = crate::verdict::reconcile(&merged, server.as_ref());
    let derived = crate::bench::figures::derive(
        Some(&merged),
        server.as_ref(),
        &crate::bench::sample::Samples::default(),
    );
    let verdict = crate::verdict::verdict(
        Some(&merged),
        server.as_ref(),
        &reconciliation,
        &crate::verdict::RunFaults::default(),
        derived.backlog_s,
    );
    use std::fmt::Write as _;
    let mut text = String::new();
    writeln!(
        text,
        "fleets:   {} reports, {} clients, {} measured frames sent (+{} warm-up), send lag p99 {}",
        parts.len(),
        merged.config.clients,
        merged.sent.measured,
        merged.sent.warmup,
        crate::units::fmt_ns(merged.send_lag_ns.p99)
    )?;
    if let Some(s) = &server {
        writeln!(
            text,
            "server:   {} ({} workers), {} measured frames received, latency p50 {} p99 {}",
            s.model,
            s.workers,
            s.packets.measured,
            crate::units::fmt_ns(s.latency_ns.p50),
            crate::units::fmt_ns(s.latency_ns.p99)
        )?;
    }
    writeln!(
        text,
        "reconciliation: lost {}, excess {}, unread {}, clients mismatched {}",
        reconciliation.lost,
        reconciliation.excess,
        reconciliation.unread,
        reconciliation.mismatched.len()
    )?;
    let status = serde_json::to_value(verdict.status)?;
    writeln!(
        text,
        "verdict:  {}{}",
        status.as_str().unwrap_or("?"),
        if verdict.reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", verdict.reasons.join("; "))
        }
    )?;
    print!("{text}");
    if let Some(path) = summary {
        write_atomic(path, text.as_bytes()).with_context(|| format!("write {}", path.display()))?;
    }
    let invalid = verdict.status == crate::verdict::Status::Invalid;
    if let Some(out) = out {
        let cell = MergedCell {
            fleet: merged,
            server,
            reconciliation,
            derived,
            verdict,
        };
        let json = serde_json::to_string_pretty(&cell).context("encode the merged cell")?;
        write_atomic(out, json.as_bytes()).with_context(|| format!("write {}", out.display()))?;
    }
    Ok(if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `harness k8s render|collect`.
pub fn k8s(command: &K8sCommand) -> Result<ExitCode> {
    match command {
        K8sCommand::Render(a) => {
            WorkSpec::from_str(&a.work).map_err(|e| anyhow!(e))?;
            if models::find(&a.model).is_none() {
                bail!(
                    "no model `{}`: one of {}",
                    a.model,
                    models::names().join(", ")
                );
            }
            let start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?
                + a.start_in;
            let cell = crate::k8s::Cell {
                model: a.model.clone(),
                workers: a.workers,
                work: a.work.clone(),
                clients: a.clients,
                shards: a.shards,
                rate: a.rate.to_string(),
                duration_ms: a.duration.as_millis(),
                warmup_ms: a.warmup.as_millis(),
                image: a.image.clone(),
                start_at_unix_ns: start.as_nanos(),
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
