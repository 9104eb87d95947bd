//! Runs one cell end to end: `harness serve` and `harness fleet` as pinned
//! child processes (and, for call work, the downstream responder on a
//! thread of the harness), sampled while they run, then reconciled.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use models::responder::Responder;
use models::ServerReport;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::sample::Sampler;
use crate::cpus::format_list;
use fleet::fleet_report::FleetReport;
use fleet::FleetOptions;
use record::cell::CellKey;
use record::cell::CellResult;
use record::config::KillTarget;
use record::config::RunConfig;
use record::verdict::{self, Reconciliation, RunFaults, Verdict};
use workloads::spec::PlanMode;

const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
const SERVER_GRACE: Duration = Duration::from_secs(5);
/// Fleet time allowed beyond warm-up, window and drain.
const FLEET_SLACK: Duration = Duration::from_secs(15);

/// Paths and settings shared by the cells of a run.
#[derive(Clone)]
pub struct CellContext<'a> {
    /// The run configuration.
    pub config: &'a RunConfig,
    /// The `harness` executable to start children from.
    pub exe: PathBuf,
    /// Folder for this run's logs and child reports.
    pub log_dir: PathBuf,
    /// Set by SIGINT/SIGTERM: stop the cell's children and return.
    pub stop: Arc<AtomicBool>,
    /// The server records each client's latency apart (past the knee).
    pub client_latency: bool,
    /// The live page (`--live`): each probe is shown, its server scraped.
    pub live: Option<Arc<crate::live::Live>>,
}

/// Runs one cell. Errors only when the cell could not be started at all.
pub fn run_cell(ctx: &CellContext, key: &CellKey) -> Result<CellResult> {
    let started = Instant::now();
    let id = key.id();
    let server_log = ctx.log_dir.join(format!("{id}.server.log"));
    let fleet_log = ctx.log_dir.join(format!("{id}.fleet.log"));
    let server_json = ctx.log_dir.join(format!("{id}.server.json"));
    let fleet_json = ctx.log_dir.join(format!("{id}.fleet.json"));
    for p in [&server_json, &fleet_json] {
        let _ = std::fs::remove_file(p);
    }
    let config = ctx.config;
    if let Some(live) = &ctx.live {
        live.probe_started(key);
    }
    let responder = start_responder(config, key)?;
    let downstream = responder.as_ref().map(Responder::addr);
    let (mut server, addr, metrics) =
        start_server(ctx, key, downstream, &server_json, &server_log)?;
    let follow = follow_server(ctx, metrics);
    let fleet_config = config
        .fleet_config(key, addr)
        .ok_or_else(|| anyhow!("workload {} not in the run", key.workload))?;
    let mut fleet_cmd = fleet_command(ctx, &fleet_config, &fleet_json, &fleet_log)?;
    let mut fleet = match fleet_cmd.spawn() {
        Ok(f) => f,
        Err(e) => {
            let _ = server.kill();
            let _ = server.wait();
            return Err(e).context("start `harness fleet`");
        }
    };
    let mut sampled_cpus = config.server_cpus.clone();
    sampled_cpus.extend(&config.fleet_cpus);
    let sampler = Sampler::start(server.id(), fleet.id(), sampled_cpus.clone());
    let canary = super::canary::Canary::start(&sampled_cpus);

    let mut faults = RunFaults::default();
    let limit = config.warmup + fleet_config.duration + config.drain_timeout * 2 + FLEET_SLACK;
    if let Some(after) = config.kill_server_after {
        inject_fault(
            &mut fleet,
            &mut server,
            after,
            config.kill_target,
            ctx,
            &mut faults,
        )?;
    }
    let fleet_ok = wait_timeout(&mut fleet, limit, &ctx.stop)?;
    match fleet_ok {
        Some(status) if !status.success() => faults.fleet_exit = Some(status.to_string()),
        Some(_) => {}
        None => {
            faults.fleet_timeout = true;
            let _ = fleet.kill();
            let _ = fleet.wait();
        }
    }
    drop(follow);
    // The last sample (PSS, fds, context switches too) sees the server as
    // the load left it, before it is asked to stop.
    let samples = sampler.stop();
    let canary = canary.stop();
    stop_server(&mut server, &mut faults)?;
    let downstream = responder.and_then(|r| {
        r.stop()
            .map_err(|e| {
                faults
                    .other
                    .push(format!("the downstream responder failed: {e}"))
            })
            .ok()
    });
    let server_report: Option<ServerReport> = read_json(&server_json);
    let fleet_report: Option<FleetReport> = read_json(&fleet_json);
    let mut cell = CellResult {
        key: key.clone(),
        workers: server_report.as_ref().map(|s| s.workers),
        wall_s: started.elapsed().as_secs_f64(),
        server: server_report,
        fleet: fleet_report,
        samples,
        reconciliation: Reconciliation::default(),
        faults,
        canary: Some(canary),
        downstream,
        verdict: Verdict {
            status: verdict::Status::Invalid,
            reasons: Vec::new(),
            causes: Vec::new(),
        },
        derived: record::figures::Figures::default(),
        logs: vec![server_log, fleet_log],
    };
    cell.recompute();
    if let Some(live) = &ctx.live {
        live.probe_landed(&cell);
    }
    Ok(cell)
}

/// Scrapes the cell's server (its `metrics` address) while the guard
/// lives, for the live page or `--scrape-every`.
fn follow_server(ctx: &CellContext, metrics: Option<SocketAddr>) -> Option<crate::live::Follow> {
    let every = match &ctx.live {
        Some(_) => Some(crate::live::SCRAPE_EVERY),
        None => ctx.config.scrape_every,
    };
    metrics
        .zip(every)
        .map(|(m, every)| crate::live::follow(m, every, ctx.live.clone()))
}

/// The cell's `harness fleet` command.
fn fleet_command(
    ctx: &CellContext,
    fleet_config: &fleet::FleetConfig,
    fleet_json: &Path,
    fleet_log: &Path,
) -> Result<Command> {
    let mut fleet_cmd = Command::new(&ctx.exe);
    fleet_cmd
        .arg("fleet")
        .args(FleetOptions::from_config(fleet_config).to_args())
        .arg("--report")
        .arg(fleet_json)
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(fleet_log)?);
    if ctx.config.fleet_shards > 1 {
        fleet_cmd
            .arg("--local-shards")
            .arg(ctx.config.fleet_shards.to_string());
    }
    Ok(fleet_cmd)
}

/// For a cell of call work, the downstream responder its server calls,
/// listening on loopback (on the harness's CPUs, never the server's).
fn start_responder(config: &RunConfig, key: &CellKey) -> Result<Option<Responder>> {
    let calls = config
        .workload(&key.workload)
        .is_some_and(|w| w.plan.mode == PlanMode::Call);
    if !calls {
        return Ok(None);
    }
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    Responder::start(listen)
        .map(Some)
        .context("start the downstream responder for call work")
}

/// Starts `harness serve` for the cell (calling `downstream` for call
/// work) and waits for its address (and its metrics', for the live page).
fn start_server(
    ctx: &CellContext,
    key: &CellKey,
    downstream: Option<SocketAddr>,
    server_json: &Path,
    server_log: &Path,
) -> Result<(Child, SocketAddr, Option<SocketAddr>)> {
    let config = ctx.config;
    let mut serve = Command::new(&ctx.exe);
    serve
        .args(["serve", "--model", &key.model, "--listen", "127.0.0.1:0"])
        .arg("--cpus")
        .arg(format_list(&config.server_cpus))
        .arg("--report")
        .arg(server_json)
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(server_log)?);
    if let Some(w) = key.workers.or(config.workers) {
        serve.arg("--workers").arg(w.to_string());
    }
    serve
        .arg("--placement")
        .arg(config.placement.to_string())
        .arg("--iters-per-us")
        .arg(config.iters_per_us.to_string())
        .arg("--inline-cpu")
        .arg(format!("{}us", config.inline_cpu.as_micros()))
        .arg("--coalesce")
        .arg(format!("{}us", config.coalesce.as_micros()));
    if ctx.client_latency {
        serve.arg("--client-latency");
    }
    if let Some(addr) = downstream {
        serve.arg("--downstream").arg(addr.to_string());
    }
    if !config.stages {
        serve.arg("--no-stages");
    }
    if ctx.live.is_some() || config.scrape_every.is_some() {
        serve.args(["--metrics", "127.0.0.1:0"]);
    }
    let mut server = serve.spawn().context("start `harness serve`")?;
    let (addr, metrics) = match wait_listening_with_metrics(&mut server) {
        Ok(a) => a,
        Err(e) => {
            let _ = server.kill();
            let _ = server.wait();
            let stderr = std::fs::read_to_string(server_log).unwrap_or_default();
            bail!("{e}; server stderr: {}", stderr.trim());
        }
    };

    Ok((server, addr, metrics))
}

/// Fault injection: once `after` has passed with the fleet still running,
/// kills the server (or one of its children), so the fleet sees it die
/// mid-run.
fn inject_fault(
    fleet: &mut Child,
    server: &mut Child,
    after: Duration,
    target: KillTarget,
    ctx: &CellContext,
    faults: &mut RunFaults,
) -> Result<()> {
    if wait_timeout(fleet, after, &ctx.stop)?.is_none() {
        faults.other.push(match target {
            KillTarget::Server => {
                let _ = server.kill();
                format!("fault injected: server killed after {after:?}")
            }
            KillTarget::Child => match first_child(server.id()) {
                Some(pid) => {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    format!("fault injected: server child {pid} killed after {after:?}")
                }
                None => "fault injection: the server has no child to kill".to_string(),
            },
        });
    }
    Ok(())
}

/// Asks a live server to stop (SIGTERM, then a kill after the grace) and
/// records how it ended: crashed before, exited badly, or hung.
fn stop_server(server: &mut Child, faults: &mut RunFaults) -> Result<()> {
    if server.try_wait()?.is_some() {
        faults.server_crashed = true;
    } else {
        let _ = kill(Pid::from_raw(server.id() as i32), Signal::SIGTERM);
        match wait_timeout(server, SERVER_GRACE, &AtomicBool::new(false))? {
            Some(status) if !status.success() => faults.server_exit = Some(status.to_string()),
            Some(_) => {}
            None => {
                faults.server_hung = true;
                let _ = server.kill();
                let _ = server.wait();
            }
        }
    }
    Ok(())
}

/// A child process of `pid` (prefork forks from its main thread).
fn first_child(pid: u32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn log_file(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("create log {}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Reads the server's `listening on ADDR` line, with a timeout.
pub(crate) fn wait_listening(server: &mut Child) -> Result<SocketAddr> {
    wait_listening_with_metrics(server).map(|(addr, _)| addr)
}

/// Reads the server's first lines, with a timeout: its `metrics on ADDR`
/// line (with `--metrics`) and its `listening on ADDR` line.
pub(crate) fn wait_listening_with_metrics(
    server: &mut Child,
) -> Result<(SocketAddr, Option<SocketAddr>)> {
    let stdout = server
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no server stdout"))?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut metrics = None;
        let mut line = String::new();
        loop {
            line.clear();
            let _ = reader.read_line(&mut line);
            match line.trim().strip_prefix("metrics on ") {
                Some(m) if metrics.is_none() => metrics = m.parse::<SocketAddr>().ok(),
                _ => break,
            }
        }
        let _ = tx.send((line, metrics));
    });
    let (line, metrics) = rx.recv_timeout(LISTEN_TIMEOUT).map_err(|_| {
        anyhow!("the server printed no `listening on` line within {LISTEN_TIMEOUT:?}")
    })?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "the server did not start (its first line was {:?})",
                line.trim()
            )
        })?;
    Ok((addr, metrics))
}

/// Waits for `child` until `limit` or until `stop` is set (then `None`).
fn wait_timeout(
    child: &mut Child,
    limit: Duration,
    stop: &AtomicBool,
) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        if let Some(status) = child.try_wait().context("wait for a child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}
