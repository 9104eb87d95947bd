//! `harness fleet-capacity`: how many 10 kHz clients one fleet core can pace
//! with a p99 pacing lag under a limit, with and without batch windows. The
//! fleet runs in this process pinned to one CPU; a `harness serve` child on
//! the server CPUs drains the traffic.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use workloads::WorkPlan;

use crate::cli::CapacityArgs;
use crate::cpus;
use crate::fleet::{self, FleetConfig, Rate};
use crate::units::fmt_ns;

/// Fleet sizes tried with one write per frame.
const PER_FRAME_SIZES: [u32; 9] = [2, 4, 6, 8, 10, 12, 16, 24, 32];
/// Fleet sizes tried with batch windows.
const WINDOWED_SIZES: [u32; 10] = [25, 50, 75, 100, 125, 150, 200, 250, 300, 400];

/// One measured fleet size.
#[derive(Debug, Serialize)]
pub struct Step {
    /// Batch window, microseconds.
    pub window_us: u64,
    /// Clients on the one fleet core.
    pub clients: u32,
    /// p99 of how late the pacing thread woke for scheduled writes, ns.
    pub pacing_p99_ns: u64,
    /// p99 send lag (write time minus the oldest frame's due time), ns.
    pub send_lag_p99_ns: u64,
    /// Measured frames per second written.
    pub achieved_rate: f64,
    /// Within the limit.
    pub ok: bool,
}

/// Runs the capacity sweep and prints a table.
pub fn run(args: &CapacityArgs) -> Result<()> {
    let allowed = cpus::allowed();
    let (server_cpus, fleet_cpus) = cpus::split(&allowed);
    let fleet_cpu = fleet_cpus[0];
    let mut server = start_sink(&server_cpus)?;
    let addr = crate::bench::cell::wait_listening(&mut server)?;
    cpus::pin(&[fleet_cpu]).map_err(|e| anyhow!(e))?;
    println!(
        "fleet on CPU {fleet_cpu}, sink (`harness serve --model async`) on CPUs {server_cpus:?}; limit p99 pacing lag {}",
        fmt_ns(args.limit.as_nanos() as u64)
    );
    println!(
        "{:>9} {:>8} {:>12} {:>12} {:>12}  within",
        "window", "clients", "pacing p99", "send lag p99", "frames/s"
    );
    let mut steps = Vec::new();
    for (window, sizes) in [
        (Duration::from_millis(1), &WINDOWED_SIZES[..]),
        (Duration::ZERO, &PER_FRAME_SIZES[..]),
    ] {
        for &clients in sizes {
            let step = measure(addr, clients, window, args)?;
            println!(
                "{:>9} {:>8} {:>12} {:>12} {:>12.0}  {}",
                format!("{}us", window.as_micros()),
                clients,
                fmt_ns(step.pacing_p99_ns),
                fmt_ns(step.send_lag_p99_ns),
                step.achieved_rate,
                if step.ok { "yes" } else { "no" }
            );
            let ok = step.ok;
            steps.push(step);
            if !ok {
                break;
            }
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = server.wait();
    for window_us in [1000, 0] {
        let best = steps
            .iter()
            .filter(|s| s.window_us == window_us && s.ok)
            .map(|s| s.clients)
            .max();
        println!(
            "window {window_us}us: one fleet core paces {} clients at 10 kHz within the limit",
            best.map_or("no".to_string(), |b| format!("up to {b}"))
        );
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&steps).context("encode")?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn measure(addr: SocketAddr, clients: u32, window: Duration, args: &CapacityArgs) -> Result<Step> {
    let config = FleetConfig {
        target: addr,
        clients,
        client_id_base: 0,
        rate: Rate::Hz(10_000),
        warmup: Duration::from_millis(300),
        duration: args.duration,
        count: None,
        batch_window: window,
        work: WorkPlan::none(),
        threads: 1,
        cpus: None,
        drain_timeout: Duration::from_secs(5),
        max_lag: FleetConfig::default_max_lag(window),
    };
    let report = fleet::run(&config)?;
    let pacing = report.pacing_lag_ns.p99;
    Ok(Step {
        window_us: window.as_micros() as u64,
        clients,
        pacing_p99_ns: pacing,
        send_lag_p99_ns: report.send_lag_ns.p99,
        achieved_rate: report.achieved_rate,
        ok: pacing <= args.limit.as_nanos() as u64 && report.unsent == 0,
    })
}

fn start_sink(server_cpus: &[usize]) -> Result<Child> {
    Command::new(std::env::current_exe().context("locate harness")?)
        .args([
            "serve",
            "--model",
            "async",
            "--max-clients",
            "100000",
            "--report",
            "/dev/null",
            "--cpus",
        ])
        .arg(cpus::format_list(server_cpus))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the sink server")
}
