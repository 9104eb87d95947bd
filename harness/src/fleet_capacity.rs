//! How many 10 kHz clients one fleet core paces on time, per batch window:
//! the `harness fleet-capacity` benchmark, and the per-machine calibration
//! a run uses to choose each cell's batch window (one write per frame when
//! one core can pace the cell that way with headroom, else the smallest
//! window that paces it). The fleet runs in this process pinned to one CPU;
//! a `harness serve --no-report` child on the server CPUs drains the traffic.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use workloads::WorkPlan;

use crate::bench::env::Environment;
use crate::cli::CapacityArgs;
use crate::cpus;
use crate::fleet::{self, FleetConfig, Rate};
use crate::units::fmt_ns;

/// Batch windows calibrated, smallest first.
pub const WINDOWS_US: [u64; 6] = [0, 100, 250, 500, 1000, 2000];
/// Fleet sizes tried, ascending; each window starts at the previous
/// window's capacity (a larger window paces at least as many clients).
const SIZES: [u32; 18] = [
    1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 200, 256, 320, 400, 512,
];
/// A cell is paced per frame (or with a window) only if its clients per
/// pacing thread are at most this share of the calibrated capacity.
pub const HEADROOM: f64 = 0.75;
/// File name of the cached calibration inside the results folder.
pub const CALIBRATION_FILE: &str = "fleet-calibration.json";

/// One measured fleet size.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// Within the limit: pacing lag p99 under it, send lag under the
    /// fleet's own limit, every scheduled frame written.
    pub ok: bool,
    /// A confirmation pass of the window's ramp result.
    #[serde(default)]
    pub confirm: bool,
}

/// The capacity of one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowCapacity {
    /// Batch window, microseconds.
    pub window_us: u64,
    /// Most 10 kHz clients one pacing thread kept on time in most of
    /// [`CONFIRM`] + 1 passes (0: none).
    pub clients_per_core: u32,
    /// The size the first pass's ramp reached (at least
    /// `clients_per_core`): the spread between the two is the machine's
    /// noise at this window.
    #[serde(default)]
    pub first_pass: u32,
}

/// Passes beyond the first a window's capacity is measured in again: the
/// calibration keeps the largest size within the limit in most passes
/// (stepping down a size when it is not), a conservative pick on a noisy
/// machine that one stall does not move.
pub const CONFIRM: usize = 2;

/// A machine's fleet calibration, cached in the results folder and
/// recorded in every run that uses it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetCalibration {
    /// Host it was measured on.
    pub hostname: String,
    /// CPU model it was measured on.
    pub cpu_model: String,
    /// The harness build that measured it ([`crate::bench::env::build_id`]).
    #[serde(default)]
    pub build: String,
    /// When, RFC 3339.
    pub measured: String,
    /// Pacing-lag p99 limit used, ns.
    pub limit_ns: u64,
    /// Measured window per fleet size, ms (shorter for `--quick` runs; a
    /// full run measures again rather than reuse a quick calibration).
    #[serde(default = "full_step_ms")]
    pub step_ms: u64,
    /// Per window, smallest first.
    pub windows: Vec<WindowCapacity>,
}

/// Step length of a full run's calibration, ms.
pub const FULL_STEP_MS: u64 = 500;
/// Step length of a `--quick` run's calibration, ms.
pub const QUICK_STEP_MS: u64 = 250;

fn full_step_ms() -> u64 {
    FULL_STEP_MS
}

impl FleetCalibration {
    /// The window for a cell with `clients_per_thread` clients on each
    /// pacing thread: the smallest whose capacity holds them with
    /// [`HEADROOM`], else the largest calibrated one.
    pub fn window_for(&self, clients_per_thread: u32) -> Duration {
        let fits =
            |w: &&WindowCapacity| clients_per_thread as f64 <= w.clients_per_core as f64 * HEADROOM;
        let chosen = self
            .windows
            .iter()
            .find(fits)
            .or(self.windows.last())
            .map_or(1000, |w| w.window_us);
        Duration::from_micros(chosen)
    }

    /// The most clients a fleet of `threads` pacing threads keeps on time
    /// with [`HEADROOM`] at `window` (the largest calibrated window not
    /// above it), or at any window when `None`: the bound of a capacity
    /// search (beyond it, the generator would be the limit).
    pub fn max_clients(&self, window: Option<Duration>, threads: u32) -> u32 {
        let fits = |w: &&WindowCapacity| window.is_none_or(|d| w.window_us <= d.as_micros() as u64);
        let per_thread = self
            .windows
            .iter()
            .filter(fits)
            .map(|w| w.clients_per_core)
            .max()
            .unwrap_or(0);
        ((per_thread as f64 * HEADROOM).floor() as u32 * threads.max(1)).max(1)
    }

    /// Whether it was measured on this machine by this very binary.
    pub fn matches(&self, env: &Environment) -> bool {
        self.hostname == env.hostname
            && self.cpu_model == env.cpu_model
            && self.build == env.build
            && env.build != "unknown"
    }

    /// Loads the cached calibration in `results_dir` if it fits this
    /// machine and was measured with steps of at least `step_ms`, else
    /// measures and caches a new one. One that paced no one is measured up
    /// to twice more after a pause; if it still paces no one it is an error
    /// when `required` (a search's bound), else returned uncached with a
    /// warning.
    pub fn load_or_measure(
        results_dir: &Path,
        env: &Environment,
        server_cpus: &[usize],
        fleet_cpu: usize,
        recalibrate: bool,
        step_ms: u64,
        required: bool,
    ) -> Result<Self> {
        let path = results_dir.join(CALIBRATION_FILE);
        if !recalibrate {
            let cached = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<FleetCalibration>(&t).ok());
            if let Some(c) = cached.filter(|c| c.matches(env) && c.step_ms >= step_ms) {
                return Ok(c);
            }
        }
        eprintln!(
            "calibrating the fleet on this machine (once; cached in {})",
            path.display()
        );
        let limit = Duration::from_micros(100);
        let measure = || {
            sweep(
                server_cpus,
                fleet_cpu,
                Duration::from_millis(step_ms),
                limit,
                u32::MAX,
                |_| {},
            )
        };
        // A sweep in which no window paced even one client says the
        // machine was stalled or busy, not what the fleet can do: once
        // more, then refuse (never cache it).
        // A sweep in which no window paced even one client says the
        // machine was stalled or busy, not what the fleet can do: wait out
        // the stretch and measure again.
        let mut steps = measure()?;
        for pause in RECALIBRATE_PAUSES {
            if paces_anyone(&capacities(&steps)) {
                break;
            }
            eprintln!(
                "the fleet kept no window on time, not even with one client (a noisy stretch of the machine?); measuring again in {}",
                humantime::format_duration(pause)
            );
            std::thread::sleep(pause);
            steps = measure()?;
        }
        let failed = !paces_anyone(&capacities(&steps));
        let why = format!("one fleet core kept not even one 10 kHz client on time at any batch window (pacing-lag p99 over {}) in {} tries. Is something else busy on CPUs {server_cpus:?} and {fleet_cpu}?", fmt_ns(limit.as_nanos() as u64), RECALIBRATE_PAUSES.len() + 1);
        if failed && required {
            bail!("the fleet calibration failed: {why} Stop it and rerun, or give --batch-window and --search-max to skip the calibration");
        }
        let cal = FleetCalibration {
            hostname: env.hostname.clone(),
            cpu_model: env.cpu_model.clone(),
            build: env.build.clone(),
            measured: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            limit_ns: limit.as_nanos() as u64,
            step_ms,
            windows: capacities(&steps),
        };
        if failed {
            eprintln!("warning: the fleet calibration failed ({why}); not cached. Every cell gets the largest window, and each cell's verdict says whether the fleet kept up");
            return Ok(cal);
        }
        std::fs::create_dir_all(results_dir)
            .with_context(|| format!("create {}", results_dir.display()))?;
        let json = serde_json::to_vec_pretty(&cal).context("encode the calibration")?;
        crate::bench::results::write_atomic(&path, &json)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(cal)
    }
}

/// Pauses before a calibration that paced no one is measured again.
const RECALIBRATE_PAUSES: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(15)];

/// Whether some window paced at least one client.
fn paces_anyone(windows: &[WindowCapacity]) -> bool {
    windows.iter().any(|w| w.clients_per_core > 0)
}

/// Per window, the largest size within the limit in most of its
/// confirmation steps (the confirmed size: see [`sweep`]), and at least
/// the smaller windows' (a larger window paces at least as many clients);
/// `first_pass` is the largest size any step kept on time.
pub fn capacities(steps: &[Step]) -> Vec<WindowCapacity> {
    let mut floor = 0;
    WINDOWS_US
        .iter()
        .map(|&w| {
            let at: Vec<&Step> = steps.iter().filter(|s| s.window_us == w).collect();
            let first_pass = at
                .iter()
                .filter(|s| s.ok)
                .map(|s| s.clients)
                .max()
                .unwrap_or(0);
            let confirmed = at
                .iter()
                .filter(|s| s.confirm && s.ok)
                .map(|s| s.clients)
                .filter(|&n| {
                    let tries = at.iter().filter(|s| s.confirm && s.clients == n);
                    let (ok, all) = tries.fold((0, 0), |(o, a), s| (o + usize::from(s.ok), a + 1));
                    2 * ok >= all
                })
                .max()
                .unwrap_or(0);
            floor = floor.max(confirmed);
            WindowCapacity {
                window_us: w,
                clients_per_core: floor,
                first_pass: first_pass.max(floor),
            }
        })
        .collect()
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
    duration: Duration,
    limit: Duration,
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
                    let step = measure(addr, clients, window, duration, limit)?;
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
                let mut step = measure(addr, clients, window, duration, limit)?;
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
    let steps = sweep(
        &server_cpus,
        fleet_cpu,
        args.duration,
        args.limit,
        args.max_clients,
        |step| {
            println!(
                "{:>9} {:>8} {:>12} {:>12} {:>12.0}  {}",
                format!("{}us", step.window_us),
                step.clients,
                fmt_ns(step.pacing_p99_ns),
                fmt_ns(step.send_lag_p99_ns),
                step.achieved_rate,
                if step.ok { "yes" } else { "no" }
            );
        },
    )?;
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
        crate::bench::results::write_atomic(path, &json)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn measure(
    addr: SocketAddr,
    clients: u32,
    window: Duration,
    duration: Duration,
    limit: Duration,
) -> Result<Step> {
    let config = FleetConfig {
        target: addr,
        clients,
        client_id_base: 0,
        rate: Rate::Hz(10_000),
        warmup: Duration::from_millis(200),
        duration,
        count: None,
        batch_window: window,
        work: WorkPlan::none(),
        threads: 1,
        cpus: None,
        drain_timeout: Duration::from_secs(5),
        max_lag: FleetConfig::default_max_lag(window),
        connect_tries: crate::fleet::DEFAULT_CONNECT_TRIES,
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
    fn the_search_bound_is_the_largest_window_with_headroom() {
        // (capacities per window, pacing threads, bound)
        type Caps = &'static [(u64, u32)];
        let ms = |m| Some(Duration::from_millis(m));
        let table: [(Caps, Option<Duration>, u32, u32); 6] = [
            (&[(0, 16), (1000, 96), (2000, 200)], None, 1, 150),
            (&[(0, 16), (1000, 96), (2000, 200)], None, 4, 600),
            (&[(0, 0)], None, 1, 1),
            (&[(0, 16), (1000, 96), (2000, 200)], ms(0), 1, 12),
            (&[(0, 16), (1000, 96), (2000, 200)], ms(1), 2, 144),
            // A window between two calibrated ones paces what the smaller did.
            (&[(0, 16), (1000, 96), (2000, 200)], ms(1), 1, 72),
        ];
        for (caps, window, threads, want) in table {
            assert_eq!(
                cal(caps).max_clients(window, threads),
                want,
                "{caps:?} {window:?}"
            );
        }
    }

    fn cal(caps: &[(u64, u32)]) -> FleetCalibration {
        FleetCalibration {
            hostname: "h".into(),
            cpu_model: "c".into(),
            build: "b".into(),
            measured: String::new(),
            limit_ns: 100_000,
            step_ms: FULL_STEP_MS,
            windows: caps
                .iter()
                .map(|&(window_us, clients_per_core)| WindowCapacity {
                    window_us,
                    clients_per_core,
                    first_pass: clients_per_core,
                })
                .collect(),
        }
    }

    #[test]
    fn the_smallest_window_with_headroom_is_chosen() {
        let c = cal(&[(0, 24), (250, 64), (1000, 128)]);
        // (clients per thread, window us): 24 * 0.75 = 18 fit per frame.
        let table = [
            (1, 0),
            (18, 0),
            (19, 250),
            (48, 250),
            (49, 1000),
            (96, 1000),
            (97, 1000), // beyond every window: the largest
        ];
        for (clients, window_us) in table {
            assert_eq!(
                c.window_for(clients),
                Duration::from_micros(window_us),
                "{clients} clients"
            );
        }
        // A machine where per-frame pacing failed outright.
        assert_eq!(
            cal(&[(0, 0), (1000, 100)]).window_for(1),
            Duration::from_micros(1000)
        );
    }

    #[test]
    fn capacity_is_the_largest_size_confirmed_within_the_limit() {
        let step = |window_us, clients, ok, confirm| Step {
            window_us,
            clients,
            pacing_p99_ns: 0,
            send_lag_p99_ns: 0,
            achieved_rate: 0.0,
            ok,
            confirm,
        };
        let caps = capacities(&[
            step(0, 8, true, false),
            step(0, 12, true, false),
            step(0, 16, false, false),
            step(0, 12, true, true),
            step(0, 12, true, true),
            step(100, 12, false, false),
            // The ramp reached 48, both confirmations there missed, 32 held.
            step(250, 48, true, false),
            step(250, 48, false, true),
            step(250, 48, false, true),
            step(250, 32, true, true),
        ]);
        assert_eq!((caps[0].clients_per_core, caps[0].first_pass), (12, 12));
        // A larger window keeps at least a smaller one's capacity, though
        // its own first step missed.
        assert_eq!(caps[1].clients_per_core, 12);
        assert_eq!((caps[2].clients_per_core, caps[2].first_pass), (32, 48));
        // Nothing on time anywhere: a failed calibration, never a bound of 1.
        assert!(paces_anyone(&caps));
        assert!(!paces_anyone(&capacities(&[
            step(0, 1, false, false),
            step(0, 1, false, false)
        ])));
    }

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
