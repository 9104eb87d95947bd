//! The fleet's calibration: how many 10 kHz clients one fleet core paces
//! on time per batch window on this machine (measured by the harness), and
//! the rules that choose a run's window and a search's bound from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::environment::Environment;

/// Batch windows calibrated, smallest first.
pub const WINDOWS_US: [u64; 6] = [0, 100, 250, 500, 1000, 2000];
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
    /// The harness build that measured it (a CRC-32 of its executable).
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
    /// CPUs other processes kept busy on average while it was measured
    /// (the machine's busy time less the calibration's own); absent when
    /// it could not be read, or in a calibration from before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_cpus: Option<f64>,
    /// Connection churn it was measured under (`--reconnect-every`): each
    /// reconnect costs the fleet a connect, so a run with churn is paced
    /// by a calibration with the same churn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_every: Option<u64>,
}

/// The file a calibration under `reconnect_every` is cached in.
pub fn calibration_file(reconnect_every: Option<u64>) -> String {
    match reconnect_every {
        None => CALIBRATION_FILE.to_string(),
        Some(n) => format!("fleet-calibration-reconnect-every-{n}.json"),
    }
}

/// Other processes may keep at most this many CPUs busy on average while
/// the fleet is calibrated: a calibration on a busier machine measures
/// that machine's spare time, not what the fleet can do, so it is used for
/// its run only and never cached.
pub const QUIET_OTHER_CPUS: f64 = 0.2;

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

    /// Whether the machine was quiet while it was measured (see
    /// [`QUIET_OTHER_CPUS`]; unknown counts as quiet).
    pub fn quiet(&self) -> bool {
        self.other_cpus.is_none_or(|c| c <= QUIET_OTHER_CPUS)
    }

    /// Whether it was measured on this machine by this very binary, under
    /// the churn `reconnect_every`.
    pub fn matches(&self, env: &Environment, reconnect_every: Option<u64>) -> bool {
        self.reconnect_every == reconnect_every
            && self.hostname == env.hostname
            && self.cpu_model == env.cpu_model
            && self.build == env.build
            && env.build != "unknown"
    }
}

/// Whether some window paced at least one client.
pub fn paces_anyone(windows: &[WindowCapacity]) -> bool {
    windows.iter().any(|w| w.clients_per_core > 0)
}

/// Per window, the largest size within the limit in most of its
/// confirmation steps (the confirmed size: see the harness's `calibration::sweep`), and at least
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
            other_cpus: None,
            reconnect_every: None,
        }
    }

    /// A calibration serves only runs of its own churn, each churn cached
    /// in a file of its own.
    #[test]
    fn a_calibration_serves_only_its_own_churn() {
        let env = Environment {
            hostname: "h".into(),
            cpu_model: "c".into(),
            build: "b".into(),
            ..Environment::default()
        };
        let plain = cal(&[(0, 4)]);
        let mut churned = plain.clone();
        churned.reconnect_every = Some(100);
        let table = [
            (&plain, None, true),
            (&plain, Some(100), false),
            (&churned, Some(100), true),
            (&churned, Some(50), false),
            (&churned, None, false),
        ];
        for (c, run, want) in table {
            assert_eq!(
                c.matches(&env, run),
                want,
                "{:?} for {run:?}",
                c.reconnect_every
            );
        }
        assert_eq!(calibration_file(None), CALIBRATION_FILE);
        assert_eq!(
            calibration_file(Some(100)),
            "fleet-calibration-reconnect-every-100.json"
        );
    }

    #[test]
    fn only_a_calibration_on_a_quiet_machine_is_quiet() {
        // (other processes' CPUs while it was measured, quiet)
        let table = [
            (None, true),
            (Some(0.0), true),
            (Some(QUIET_OTHER_CPUS), true),
            (Some(0.21), false),
            (Some(1.5), false),
        ];
        for (other_cpus, want) in table {
            let c = FleetCalibration {
                other_cpus,
                ..cal(&[(0, 16)])
            };
            assert_eq!(c.quiet(), want, "{other_cpus:?}");
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
}
