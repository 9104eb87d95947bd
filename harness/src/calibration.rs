//! Measures how many 10 kHz clients one fleet core paces on time, per batch
//! window ([`FleetCalibration`]): the `harness fleet-capacity` benchmark,
//! and the per-machine calibration a run uses to choose its batch window (one write per frame when
//! one core can pace the cell that way with headroom, else the smallest
//! window that paces it). The fleet runs in this process pinned to one CPU;
//! a `harness serve --no-report` child on the server CPUs drains the traffic.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use workloads::WorkPlan;

use fleet::{FleetConfig, Rate};
use nix::sys::resource::{getrusage, UsageWho};
use record::calibration::{
    calibration_file, capacities, paces_anyone, FleetCalibration, Step, CONFIRM, QUIET_OTHER_CPUS,
    WINDOWS_US,
};
use record::environment::Environment;
use record::units::fmt_ns;

use crate::cli::CapacityArgs;
use crate::cpus;

/// Fleet sizes tried, ascending; each window starts at the previous
/// window's capacity (a larger window paces at least as many clients).
const SIZES: [u32; 18] = [
    1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 200, 256, 320, 400, 512,
];
/// The pacing-lag p99 a run's calibration allows a fleet core.
pub const PACING_LIMIT: Duration = Duration::from_micros(100);

/// How each fleet size is measured.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// Measured window per fleet size.
    pub duration: Duration,
    /// Pacing-lag p99 allowed.
    pub limit: Duration,
    /// Connection churn of the clients (`--reconnect-every`).
    pub reconnect_every: Option<u64>,
}

/// Pauses before a calibration that paced no one is measured again.
const RECALIBRATE_PAUSES: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(15)];

/// Loads the cached calibration in `results_dir` if it fits this
/// machine and `probe`'s churn (each churn has a file of its own) and was
/// measured with steps at least as long as `probe`'s, else
/// measures and caches a new one. One that paced no one, or was measured
/// while other processes kept more than [`QUIET_OTHER_CPUS`] busy, is
/// measured up to twice more after a pause; if it still paces no one it is
/// an error when `required` (a search's bound), else returned uncached with
/// a warning; if the machine stayed busy it is used for this run, uncached,
/// with a warning.
pub fn load_or_measure(
    results_dir: &Path,
    env: &Environment,
    server_cpus: &[usize],
    fleet_cpu: usize,
    recalibrate: bool,
    probe: Probe,
    required: bool,
) -> Result<FleetCalibration> {
    let (step_ms, reconnect_every) = (probe.duration.as_millis() as u64, probe.reconnect_every);
    let path = results_dir.join(calibration_file(reconnect_every));
    if !recalibrate {
        let cached = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<FleetCalibration>(&t).ok());
        if let Some(c) = cached.filter(|c| c.matches(env, reconnect_every) && c.step_ms >= step_ms)
        {
            return Ok(c);
        }
    }
    eprintln!(
        "calibrating the fleet on this machine (once; cached in {})",
        path.display()
    );
    let measure = || {
        let before = OtherCpu::now();
        let steps = sweep(server_cpus, fleet_cpu, probe, u32::MAX, |_| {})?;
        Ok::<_, anyhow::Error>((steps, before.and_then(|b| b.since())))
    };
    // A sweep in which no window paced even one client, or one beside
    // other busy processes, says the machine was stalled or busy, not what
    // the fleet can do: wait out the stretch and measure again.
    let (mut steps, mut other_cpus) = measure()?;
    for pause in RECALIBRATE_PAUSES {
        let busy = other_cpus.is_some_and(|c| c > QUIET_OTHER_CPUS);
        if paces_anyone(&capacities(&steps)) && !busy {
            break;
        }
        eprintln!(
            "{}; measuring again in {}",
            if busy {
                format!(
                    "other processes kept {:.2} CPUs busy while the fleet was calibrated",
                    other_cpus.unwrap_or(0.0)
                )
            } else {
                "the fleet kept no window on time, not even with one client (a noisy stretch of the machine?)".into()
            },
            humantime::format_duration(pause)
        );
        std::thread::sleep(pause);
        (steps, other_cpus) = measure()?;
    }
    let failed = !paces_anyone(&capacities(&steps));
    let why = format!("one fleet core kept not even one 10 kHz client on time at any batch window (pacing-lag p99 over {}) in {} tries. Is something else busy on CPUs {server_cpus:?} and {fleet_cpu}?", fmt_ns(probe.limit.as_nanos() as u64), RECALIBRATE_PAUSES.len() + 1);
    if failed && required {
        bail!("the fleet calibration failed: {why} Stop it and rerun, or give --batch-window and --search-max to skip the calibration");
    }
    let cal = FleetCalibration {
        hostname: env.hostname.clone(),
        cpu_model: env.cpu_model.clone(),
        build: env.build.clone(),
        measured: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        limit_ns: probe.limit.as_nanos() as u64,
        step_ms,
        windows: capacities(&steps),
        other_cpus,
        reconnect_every,
    };
    if failed {
        eprintln!("warning: the fleet calibration failed ({why}); not cached. Every cell gets the largest window, and each cell's verdict says whether the fleet kept up");
        return Ok(cal);
    }
    if !cal.quiet() {
        eprintln!("warning: other processes kept {:.2} CPUs busy while the fleet was calibrated (at most {QUIET_OTHER_CPUS} for a calibration to be kept); it is used for this run only and not cached, and its windows and bound are what a busy machine allowed. Rerun on a quiet machine.", other_cpus.unwrap_or(0.0));
        return Ok(cal);
    }
    std::fs::create_dir_all(results_dir)
        .with_context(|| format!("create {}", results_dir.display()))?;
    let json = serde_json::to_vec_pretty(&cal).context("encode the calibration")?;
    common::fs::write_atomic(&path, &json).with_context(|| format!("write {}", path.display()))?;
    Ok(cal)
}

/// CPU time the machine spent busy, and the part of it this process and
/// its waited-for children spent, at one moment.
struct OtherCpu {
    at: std::time::Instant,
    machine_s: f64,
    ours_s: f64,
}

impl OtherCpu {
    /// Now (`None` where `/proc/stat` or `getrusage` cannot be read).
    fn now() -> Option<Self> {
        use procfs::CurrentSI;
        let t = procfs::KernelStats::current().ok()?.total;
        let ticks = t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0);
        let ours_s = [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN]
            .into_iter()
            .map(|who| getrusage(who).map(|u| seconds(u.user_time()) + seconds(u.system_time())))
            .sum::<Result<f64, _>>()
            .ok()?;
        Some(OtherCpu {
            at: std::time::Instant::now(),
            machine_s: ticks as f64 / procfs::ticks_per_second() as f64,
            ours_s,
        })
    }

    /// CPUs other processes kept busy on average since `self` (the
    /// calibration's sink child must have been waited for).
    fn since(&self) -> Option<f64> {
        let now = OtherCpu::now()?;
        let wall = now.at.duration_since(self.at).as_secs_f64();
        let other = (now.machine_s - self.machine_s) - (now.ours_s - self.ours_s);
        (wall > 0.0).then(|| (other / wall).max(0.0))
    }
}

fn seconds(t: nix::sys::time::TimeVal) -> f64 {
    t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
}

/// Measures every window: sizes ascending, from the previous window's
/// capacity, until a size misses twice in a row (one stall of a shared
/// machine does not end a window); then the size reached is confirmed by
/// [`CONFIRM`] more passes, stepping down a size at each miss. The fleet
/// runs on this thread pinned to `fleet_cpu` (the caller's affinity is
/// restored afterwards); `each` sees every step as it is measured.
pub fn sweep(
    server_cpus: &[usize],
    fleet_cpu: usize,
    probe: Probe,
    max_clients: u32,
    mut each: impl FnMut(&Step),
) -> Result<Vec<Step>> {
    let before = cpus::allowed();
    let mut server = start_sink(server_cpus)?;
    let result = (|| {
        let addr = crate::bench::cell::wait_listening(&mut server)?;
        cpus::pin(&[fleet_cpu]).map_err(|e| anyhow!(e))?;
        let mut steps = Vec::new();
        let mut from = 0;
        for &window_us in &WINDOWS_US {
            let window = Duration::from_micros(window_us);
            let mut best = None;
            for &clients in SIZES.iter().filter(|&&n| n >= from && n <= max_clients) {
                let mut ok = false;
                for _ in 0..2 {
                    let step = measure(addr, clients, window, probe)?;
                    each(&step);
                    ok = step.ok;
                    steps.push(step);
                    if ok {
                        break;
                    }
                }
                if !ok {
                    break;
                }
                best = Some(clients);
            }
            let confirmed = confirm(best, &mut |clients| {
                let mut step = measure(addr, clients, window, probe)?;
                step.confirm = true;
                each(&step);
                let ok = step.ok;
                steps.push(step);
                Ok(ok)
            })?;
            from = confirmed.unwrap_or(from).max(from);
        }
        Ok(steps)
    })();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = server.wait();
    cpus::pin(&before).map_err(|e| anyhow!(e))?;
    result
}

/// The largest size at or below `reached` (one of [`SIZES`], which passed
/// once already) that passes most of its passes: at least half of
/// [`CONFIRM`] more, stepping down a size when it does not; `None` when
/// none does.
fn confirm(
    reached: Option<u32>,
    pass: &mut impl FnMut(u32) -> Result<bool>,
) -> Result<Option<u32>> {
    let Some(reached) = reached else {
        return Ok(None);
    };
    for &clients in SIZES.iter().rev().filter(|&&n| n <= reached) {
        let mut passed = 0;
        for tried in 0..CONFIRM {
            passed += usize::from(pass(clients)?);
            if 2 * passed >= CONFIRM || 2 * (passed + CONFIRM - tried - 1) < CONFIRM {
                break;
            }
        }
        if 2 * passed >= CONFIRM {
            return Ok(Some(clients));
        }
    }
    Ok(None)
}

/// Runs `harness fleet-capacity`: the sweep as a table.
pub fn run(args: &CapacityArgs) -> Result<()> {
    let allowed = cpus::allowed();
    let (server_cpus, fleet_cpus) = cpus::split(&allowed);
    let fleet_cpu = fleet_cpus[0];
    println!(
        "fleet on CPU {fleet_cpu}, sink (`harness serve --model async`) on CPUs {server_cpus:?}; limit p99 pacing lag {}",
        fmt_ns(args.limit.as_nanos() as u64)
    );
    println!(
        "{:>9} {:>8} {:>12} {:>12} {:>12}  within",
        "window", "clients", "pacing p99", "send lag p99", "frames/s"
    );
    let probe = Probe {
        duration: args.duration,
        limit: args.limit,
        reconnect_every: args.reconnect_every,
    };
    let steps = sweep(&server_cpus, fleet_cpu, probe, args.max_clients, |step| {
        println!(
            "{:>9} {:>8} {:>12} {:>12} {:>12.0}  {}",
            format!("{}us", step.window_us),
            step.clients,
            fmt_ns(step.pacing_p99_ns),
            fmt_ns(step.send_lag_p99_ns),
            step.achieved_rate,
            if step.ok { "yes" } else { "no" }
        );
    })?;
    for w in capacities(&steps) {
        println!(
            "window {}us: one fleet core paces {} clients at 10 kHz within the limit",
            w.window_us,
            if w.clients_per_core == 0 {
                "no".to_string()
            } else {
                format!("up to {}", w.clients_per_core)
            }
        );
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&steps).context("encode")?;
        common::fs::write_atomic(path, &json)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn measure(addr: SocketAddr, clients: u32, window: Duration, probe: Probe) -> Result<Step> {
    let Probe {
        duration,
        limit,
        reconnect_every,
    } = probe;
    let config = FleetConfig {
        target: addr,
        clients,
        client_id_base: 0,
        rate: Rate::Hz(10_000),
        warmup: Duration::from_millis(200),
        duration,
        count: None,
        batch_window: window,
        arrival: fleet::Arrival::Constant,
        seed: 0,
        reconnect_every,
        work: WorkPlan::none(),
        threads: 1,
        cpus: None,
        drain_timeout: Duration::from_secs(5),
        max_lag: FleetConfig::default_max_lag(window),
        connect_tries: fleet::DEFAULT_CONNECT_TRIES,
        shard: None,
        start_at_unix_ns: None,
        ack: false,
        shared_clock: true,
    };
    let report = fleet::run(&config)?;
    let pacing = report.pacing_lag_ns.p99;
    Ok(Step {
        window_us: window.as_micros() as u64,
        clients,
        pacing_p99_ns: pacing,
        send_lag_p99_ns: report.send_lag_ns.p99,
        achieved_rate: report.achieved_rate,
        ok: pacing <= limit.as_nanos() as u64
            && report.unsent == 0
            && report.send_lag_ns.p99 <= config.max_lag.as_nanos() as u64,
        confirm: false,
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
            "--no-report",
            "--cpus",
        ])
        .arg(cpus::format_list(server_cpus))
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the sink server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_steps_down_until_every_pass_holds() {
        // (reached, sizes that pass every time, sizes that pass every
        // other time, confirmed)
        let table: [(Option<u32>, u32, u32, Option<u32>); 5] = [
            (Some(48), 48, 0, Some(48)),
            (Some(48), 33, 0, Some(32)),
            // One stall in two passes does not move it.
            (Some(48), 33, 48, Some(48)),
            (Some(2), 0, 0, None),
            (None, 512, 0, None),
        ];
        for (reached, holds, flaky, want) in table {
            let mut tried = Vec::new();
            let got = confirm(reached, &mut |n| {
                tried.push(n);
                Ok(n <= holds || (n <= flaky && tried.len() % 2 == 0))
            })
            .unwrap();
            assert_eq!(got, want, "{reached:?} {holds}: {tried:?}");
        }
    }
}
