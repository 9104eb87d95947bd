//! `harness serve`: binds, prints `listening on ADDR` (after `metrics on
//! ADDR` with `--metrics`), serves one model
//! until SIGTERM/SIGINT and writes the report. Installs its signal flags
//! without starting threads, so `prefork` can still fork.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use models::server_report::{CpuTimes, FdLimit};
use models::{ServeConfig, ServerReport, Shutdown};
use nix::sys::resource::{getrusage, UsageWho};
use workloads::Limits;

use crate::cli::ServeArgs;
use crate::cpus;
use fleet::fleet_report::tv_secs;

/// Runs `harness serve`.
pub fn run(args: &ServeArgs) -> Result<()> {
    let model = models::find(&args.model).ok_or_else(|| {
        anyhow!(
            "unknown model `{}`; choose one of: {}",
            args.model,
            models::names().join(", ")
        )
    })?;
    if let Some(parent) = args.parent_pid {
        crate::parent::die_with(parent)?;
    }
    if let Some(list) = &args.cpus {
        cpus::pin(&cpus::parse_list(list).map_err(|e| anyhow!(e))?).map_err(|e| anyhow!(e))?;
    }
    let usable = cpus::allowed().len();
    let mut config = ServeConfig {
        workers: args
            .workers
            .unwrap_or_else(|| model.default_workers(usable))
            .max(1),
        max_clients: args.max_clients,
        idle_timeout: args.idle_timeout,
        frame_timeout: args.frame_timeout,
        limits: Limits {
            max_cpu_iters: args.max_cpu_iters,
            max_io_us: args.max_io_us,
        },
        placement: args.placement,
        inline_cpu: args.inline_cpu,
        iters_per_us: args.iters_per_us,
        client_latency: args.client_latency,
        coalesce: args.coalesce,
        downstream: args.downstream,
    };
    models::stages::set_recording(!args.no_stages);
    // Measured before listening, so no client waits for it.
    if config.iters_per_us.is_none() && model.needs_kernel_speed() {
        config.iters_per_us = Some(workloads::kernel::iters_per_us(1));
    }
    let fd_limit = raise_fd_limit();
    // Every server thread (and forked child) inherits this: io waits then
    // overshoot by scheduling latency only, not by the 50 us default slack.
    let _ = nix::sys::prctl::set_timerslack(1);
    if let Some(addr) = args.metrics {
        // Before the signal handlers: the exporter keeps the default
        // actions (and dies with this process).
        let bound = crate::metrics::start_server_exporter(addr, model.name())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "metrics on {bound}").context("write to stdout")?;
        out.flush().context("flush stdout")?;
    }
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, flag.clone()).context("install signal handlers")?;
    }
    // SO_REUSEPORT, so percore threads and prefork children can open more
    // listeners on this address for the kernel to balance across.
    let listener = models::net::bind_reuseport(args.listen).with_context(|| {
        format!(
            "cannot listen on {}; pick another --listen address",
            args.listen
        )
    })?;
    let addr = listener.local_addr().context("read the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("write to stdout")?;
        out.flush().context("flush stdout")?;
    }
    tracing::info!(model = model.name(), workers = config.workers, %addr, "serving");
    let stats = model
        .serve(listener, &config, &Shutdown::from_flag(flag))
        .with_context(|| format!("model {} failed", model.name()))?;
    if args.no_report {
        return Ok(());
    }
    let (cpu, max_rss_kib) = tree_usage();
    let mut report = ServerReport::new(model, &config, &stats, cpu, max_rss_kib);
    report.fd_limit = fd_limit;
    let json = serde_json::to_string_pretty(&report).context("encode the report")?;
    match &args.report {
        Some(path) => common::fs::write_atomic(path, json.as_bytes())
            .with_context(|| format!("write the report to {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{json}").context("write the report to stdout; use --report FILE")?;
        }
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one (children and threads
/// inherit it); returns both, as found and as set.
pub fn raise_fd_limit() -> FdLimit {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return FdLimit::default();
    };
    let raised = soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok();
    if soft < hard && !raised {
        tracing::warn!(soft, hard, "could not raise the open-file limit");
    }
    FdLimit {
        soft_at_start: soft,
        soft: if raised { hard } else { soft },
        hard,
    }
}

/// CPU and context switches of this process plus its reaped children, and
/// the largest peak RSS.
/// This process's peak is its own address space's high-water mark
/// (`VmHWM`): `getrusage` would also count whatever the process that
/// started it held before `exec` (Linux keeps `ru_maxrss` across it).
/// Children (prefork) never exec, so theirs come from `getrusage`.
fn tree_usage() -> (CpuTimes, u64) {
    let mut cpu = CpuTimes::default();
    let mut rss = procfs::process::Process::myself()
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.vmhwm)
        .unwrap_or(0);
    for who in [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN] {
        if let Ok(u) = getrusage(who) {
            cpu.user_s += tv_secs(u.user_time());
            cpu.sys_s += tv_secs(u.system_time());
            cpu.voluntary_ctxt += u.voluntary_context_switches().max(0) as u64;
            cpu.involuntary_ctxt += u.involuntary_context_switches().max(0) as u64;
            if who == UsageWho::RUSAGE_CHILDREN {
                rss = rss.max(u.max_rss().max(0) as u64);
            }
        }
    }
    (cpu, rss)
}
