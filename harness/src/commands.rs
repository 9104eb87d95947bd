//! The small subcommands: `models`, `fleet` (one process or local
//! shards), `calibrate`, `report` and `compare`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::{CalibrateArgs, CompareArgs, FleetArgs, ReportArgs, ResponderArgs};
use crate::cpus;
use common::fs::write_atomic;
use fleet::{self, FleetConfig, FleetOptions, Shard};
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
    let pinned = match &args.options.cpus {
        Some(list) => {
            let set = cpus::parse_list(list).map_err(|e| anyhow!(e))?;
            cpus::pin(&set).map_err(|e| anyhow!(e))?;
            Some(set)
        }
        None => None,
    };
    let config = args.options.resolve(pinned, cpus::allowed().len())?;
    if !config.target.ip().is_loopback() && !config.ack {
        eprintln!(
            "warning: loading {}, not this host: latency figures are only right if the fleet and the server share one clock",
            config.target
        );
    }
    // One descriptor per client: a large fleet needs more than the usual 1024.
    crate::serve::raise_fd_limit();
    let live = match args.metrics {
        Some(addr) => {
            let live = std::sync::Arc::new(fleet::live::FleetLive::default());
            let shard = config
                .shard
                .map_or_else(|| "0/1".to_string(), |s| s.to_string());
            let bound = crate::metrics::start_fleet_exporter(addr, live.clone(), shard)?;
            eprintln!("metrics on http://{bound}/metrics");
            Some(live)
        }
        None => None,
    };
    let report = if args.local_shards > 1 {
        local_shards(args.local_shards, &config)?
    } else {
        fleet::run_live(&config, live)?
    };
    let json = serde_json::to_string_pretty(&report).context("encode the report")?;
    match &args.report {
        Some(path) => write_atomic(path, json.as_bytes())
            .with_context(|| format!("write {}", path.display()))?,
        None => println!("{json}"),
    }
    if args.metrics.is_some() {
        std::thread::sleep(args.metrics_linger);
    }
    Ok(())
}

/// How far ahead of now local shards are told to start: time to exec and
/// connect every client.
const LOCAL_START_AHEAD: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `config` as `n` child fleets (shard i of n, one start time), each
/// with its share of the pacing threads, and merges their reports.
fn local_shards(n: u32, config: &FleetConfig) -> Result<fleet::fleet_report::FleetReport> {
    let exe = std::env::current_exe().context("find the harness executable")?;
    let dir = tempfile::tempdir().context("create a folder for the shards' reports")?;
    let start_at = fleet::unix_ns_after(LOCAL_START_AHEAD);
    let threads = (config.threads / n as usize).max(1);
    let mut children = Vec::new();
    for i in 0..n {
        let report = dir.path().join(format!("shard-{i}.json"));
        let shard = FleetConfig {
            shard: Some(Shard { index: i, count: n }),
            start_at_unix_ns: Some(start_at),
            threads,
            ..config.clone()
        };
        let child = std::process::Command::new(&exe)
            .arg("fleet")
            .args(FleetOptions::from_config(&shard).to_args())
            .args(["--parent-pid", &std::process::id().to_string()])
            .arg("--report")
            .arg(&report)
            .stdin(std::process::Stdio::null())
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

/// `harness responder`: answers calls until SIGTERM or SIGINT, then
/// prints its report (JSON) on stdout.
pub fn responder(args: &ResponderArgs) -> Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handlers")?;
    }
    let responder = models::responder::Responder::start(args.listen)
        .with_context(|| format!("listen on {} (is the port taken?)", args.listen))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "responder on {}", responder.addr()).context("write to stdout")?;
    out.flush().context("flush stdout")?;
    drop(out);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(models::SHUTDOWN_POLL);
    }
    let report = responder.stop().context("the responder failed")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
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
    println!("report:  {}", written.html.display());
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
