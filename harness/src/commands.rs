//! The small subcommands: `models`, `fleet` (one process or local
//! shards), `calibrate`, `report` and `compare`.

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use workloads::WorkSpec;

use crate::cli::{CalibrateArgs, CompareArgs, FleetArgs, ReportArgs};
use crate::cpus;
use common::fs::write_atomic;
use fleet::{self, FleetConfig};
use record::run::RunFile;

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
        if !args.allow_remote && !args.ack {
            bail!(
                "--target {target} is not on this host: latency is computed by the server from the fleet's CLOCK_MONOTONIC, which only means something on one host. Give --ack to measure round trips on the fleet's own clock, or --allow-remote if the two clocks are shared (and you may load that host)"
            );
        }
        if !args.ack {
            eprintln!("warning: loading {target}, not this host: latency figures are only right if the fleet and the server share one clock");
        }
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
        ack: args.ack,
        shared_clock: target.ip().is_loopback() || args.allow_remote,
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
fn local_shards(
    args: &FleetArgs,
    config: &FleetConfig,
) -> Result<fleet::fleet_report::FleetReport> {
    let n = args.local_shards;
    let exe = std::env::current_exe().context("find the harness executable")?;
    let dir = tempfile::tempdir().context("create a folder for the shards' reports")?;
    let start_at = fleet::unix_ns_after(LOCAL_START_AHEAD);
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
            .arg(format!("--start-at={start_at}"))
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
        if config.ack {
            cmd.arg("--ack");
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
    let dir = record::run::run_file_path(&args.run)
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let written = report::render(&run, &dir, &args.plots_dir)?;
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
    let cmp = report::compare::compare(&a, &b, args.fail_on_regression);
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
