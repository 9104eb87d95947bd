//! The validated configuration of a benchmark run: which cells to run and
//! how. Built once from the CLI (by the harness), embedded in `run.json`,
//! reused by `--resume`.

use std::time::Duration;

use fleet::{Arrival, FleetConfig, Rate};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use workloads::WorkPlan;

use crate::calibration::FleetCalibration;
use crate::capacity::Params as SearchParams;
use crate::cell::CellKey;
use crate::kernel_calibration::KernelCalibration;
use crate::slo::Slo;
pub use models::Placement;

/// The matrix's named workloads and their per-frame work. Chosen so the
/// smallest fleet fits every model on one server core while larger ones
/// separate them: 5 us of kernel work per frame; a 1 ms downstream wait on
/// one frame in 20; and one frame in 10 doing either.
pub const DEFAULT_WORKLOADS: [(&str, &str); 4] = [
    ("none", "none"),
    ("cpu", "cpu:5us"),
    ("io", "io:1ms,every=20"),
    ("mixed", "mixed:cpu=5us,io=1ms,ratio=0.5,every=10"),
];

/// A named workload outside the default set (`--works call`): the `io`
/// workload's 1 ms wait on one frame in 20 made a real call to a
/// downstream responder the harness starts, so the two compare.
pub const CALL_WORKLOAD: (&str, &str) = ("call", "call:1ms,every=20");

/// Largest fleet size a capacity search tries when no fleet calibration
/// bounds it (a forced `--batch-window`).
pub const DEFAULT_SEARCH_MAX: u32 = 512;

/// A named workload with its resolved plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Workload {
    /// Name used in tables and plots.
    pub name: String,
    /// Concrete per-frame work.
    pub plan: WorkPlan,
}

/// Everything that defines a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// Models, in order.
    pub models: Vec<String>,
    /// Models asked for that cannot run on this machine, with the reason.
    #[serde(default)]
    pub skipped_models: Vec<(String, String)>,
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Fleet sizes.
    pub clients: Vec<u32>,
    /// Per-client rate.
    pub rate: Rate,
    /// How each client's frames arrived at that mean rate.
    #[serde(default)]
    pub arrival: Arrival,
    /// Connection churn: frames per connection (`--reconnect-every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_every: Option<u64>,
    /// Measured window per cell.
    #[serde(with = "models::duration_ms")]
    pub duration: Duration,
    /// Warm-up per cell.
    #[serde(with = "models::duration_ms")]
    pub warmup: Duration,
    /// Fleet batch window forced with `--batch-window`.
    #[serde(with = "opt_ms")]
    pub batch_window: Option<Duration>,
    /// The one batch window every cell of the run uses, fixed when the run
    /// starts (forced, or chosen from `fleet_calibration`), so every probe
    /// of every model sees one load shape. `None` only in runs recorded
    /// before it existed (their windows were chosen per cell).
    #[serde(default, with = "opt_ms")]
    pub window: Option<Duration>,
    /// The fleet calibration the windows were chosen from.
    pub fleet_calibration: Option<FleetCalibration>,
    /// Drain timeout of each client.
    #[serde(with = "models::duration_ms")]
    pub drain_timeout: Duration,
    /// Server workers if forced, else each model's default (or, in a
    /// capacity search, every count worth trying).
    pub workers: Option<usize>,
    /// The capacity search's settings; `None`: a fixed matrix of
    /// `clients`.
    #[serde(default)]
    pub search: Option<SearchSettings>,
    /// Runs per cell, round-robin.
    pub repeat: u32,
    /// Seed of the shuffled cell order.
    pub seed: u64,
    /// CPUs the server is pinned to.
    pub server_cpus: Vec<usize>,
    /// CPUs the fleet is pinned to.
    pub fleet_cpus: Vec<usize>,
    /// Fleet processes per cell (shards of one fleet, merged): 1 = one.
    #[serde(default = "one_shard")]
    pub fleet_shards: u32,
    /// Ack mode: round trips measured by the fleet, every frame acked.
    #[serde(default)]
    pub ack: bool,
    /// How `prefork`, `percore` and `uring` placed connections.
    #[serde(default)]
    pub placement: Placement,
    /// `async`: cpu work of one read up to this long ran inline.
    #[serde(with = "models::duration_ms", default = "default_inline_cpu")]
    pub inline_cpu: Duration,
    /// `pool`: how long a read's frames could wait for more before a
    /// worker was woken.
    #[serde(with = "models::duration_ms", default = "default_coalesce")]
    pub coalesce: Duration,
    /// Whether servers stamped and recorded every frame's stages (off only
    /// with `--no-stages`, to measure their cost).
    #[serde(default = "default_stages")]
    pub stages: bool,
    /// Servers ran with `--metrics`, scraped this often (`--scrape-every`;
    /// `--live` scrapes too, and is not recorded: a page changes no figure
    /// beyond what this measures).
    #[serde(default, with = "opt_ms")]
    pub scrape_every: Option<Duration>,
    /// CPUs the harness and its sampler run on (off the server's).
    pub harness_cpus: Vec<usize>,
    /// Kernel iterations per microsecond: what `cpu:DUR` specs were
    /// resolved with.
    pub iters_per_us: f64,
    /// Where `iters_per_us` came from: the machine's cached calibration
    /// (absent in runs from before it was cached).
    #[serde(default)]
    pub kernel_calibration: Option<KernelCalibration>,
    /// `--quick` was given.
    pub quick: bool,
    /// A one-model run (extra per-run plots).
    pub single_model: bool,
    /// The SLO checked at the end, as given.
    pub slo: Option<String>,
    /// Fault injection: the server is killed this long into each cell.
    #[serde(default, with = "opt_ms")]
    pub kill_server_after: Option<Duration>,
    /// What the fault injection kills.
    #[serde(default)]
    pub kill_target: KillTarget,
}

/// How a run searches each (model, workload) for its capacity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchSettings {
    /// Bisection tolerance and the largest fleet size (set from the fleet
    /// calibration when the run starts).
    pub params: SearchParams,
    /// Confirmation rounds: repeats of the knee and of the size above its
    /// interval, spread over the run.
    pub confirm: u32,
    /// Search several worker counts per model (else one: forced or default).
    pub sweep: bool,
    /// Fewest measured frames a probe takes, so that its p99 rests on
    /// enough samples above it: a probe of few clients runs longer.
    #[serde(default)]
    pub min_samples: u64,
}

/// Frames above the p99 a probe rests on at least: `--quick`, full.
pub const TAIL_SAMPLES: (u64, u64) = (25, 200);
/// Bisection tolerance, percent: `--quick`, full.
pub const TOLERANCE_PCT: (f64, f64) = (25.0, 5.0);
/// Confirmation repeats of the knee: `--quick`, full.
pub const CONFIRM_REPEATS: (u32, u32) = (1, 3);

/// Serde for an optional duration in milliseconds.
mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)))
    }
}

fn default_inline_cpu() -> Duration {
    models::DEFAULT_INLINE_CPU
}

fn default_stages() -> bool {
    true
}

fn default_coalesce() -> Duration {
    models::DEFAULT_COALESCE
}

fn one_shard() -> u32 {
    1
}

impl RunConfig {
    /// Every cell, in run order: round-robin (every cell once, then every
    /// cell again), each round in an order shuffled with `seed`, so slow
    /// drift of a shared machine does not line up with one model.
    pub fn cells(&self) -> Vec<CellKey> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut out = Vec::new();
        for repeat in 0..self.repeat {
            let mut round = Vec::new();
            for w in &self.workloads {
                for &clients in &self.clients {
                    for m in &self.models {
                        round.push(CellKey {
                            model: m.clone(),
                            workload: w.name.clone(),
                            clients,
                            workers: None,
                            repeat,
                        });
                    }
                }
            }
            round.shuffle(&mut rng);
            out.extend(round);
        }
        out
    }

    /// The batch window of a cell with `clients` clients: the run's one
    /// window; in runs recorded before there was one, chosen per cell from
    /// the calibration for the clients each pacing thread carried.
    pub fn batch_window_for(&self, clients: u32) -> Duration {
        if let Some(w) = self.window.or(self.batch_window) {
            return w;
        }
        let threads = self.fleet_cpus.len().max(1) as u32;
        let per_thread = clients.div_ceil(threads);
        self.fleet_calibration
            .as_ref()
            .map_or(Duration::from_millis(1), |c| c.window_for(per_thread))
    }

    /// The largest fleet size of the run: the search's bound, or the
    /// largest fixed size.
    pub fn largest_fleet(&self) -> u32 {
        match &self.search {
            Some(s) => s.params.max_clients,
            None => self.clients.iter().copied().max().unwrap_or(1),
        }
    }

    /// Fixes the run's one window (and a search's bound) from the fleet
    /// calibration: a forced window bounds the search at what the fleet
    /// paces with it; otherwise the bound is the most the fleet paces at
    /// any window and the window the smallest that paces it. `search_max`
    /// overrides the bound.
    pub fn fix_window(&mut self, calibration: Option<&FleetCalibration>, search_max: Option<u32>) {
        let threads = self.fleet_cpus.len().max(1) as u32;
        if let Some(search) = self.search.as_mut() {
            search.params.max_clients = match (search_max, calibration) {
                (Some(n), _) => n,
                (None, Some(cal)) => cal.max_clients(self.batch_window, threads),
                (None, None) => DEFAULT_SEARCH_MAX,
            };
        }
        if self.window.is_none() {
            let per_thread = self.largest_fleet().div_ceil(threads);
            self.window =
                Some(calibration.map_or(Duration::from_millis(1), |c| c.window_for(per_thread)));
        }
    }

    /// The SLO a capacity search holds `workload`'s probes to: `--slo`,
    /// else the default for the run's window and the workload's work.
    pub fn slo_for(&self, workload: &str) -> Result<Slo, InvalidSlo> {
        match &self.slo {
            Some(s) => s.parse().map_err(InvalidSlo),
            None => Ok(Slo::default_for(
                self.batch_window_for(1).as_micros() as u64,
                self.workload(workload).map(|w| &w.plan),
            )),
        }
    }

    /// The workload called `name`.
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.name == name)
    }

    /// The measured window of a cell of `clients` clients: the run's, or
    /// longer in a search, to take at least its `min_samples` frames.
    pub fn duration_for(&self, clients: u32) -> Duration {
        let (Some(search), Rate::Hz(hz)) = (&self.search, self.rate) else {
            return self.duration;
        };
        let per_s = (clients as u64 * hz).max(1);
        self.duration.max(Duration::from_secs_f64(
            search.min_samples as f64 / per_s as f64,
        ))
    }

    /// The per-client load in a plot's caption: the rate, the arrival
    /// process unless it is constant spacing, and churn if any.
    pub fn rate_label(&self) -> String {
        let mut label = match &self.arrival {
            Arrival::Constant => format!("{} Hz/client", self.rate),
            a => format!("{} Hz/client, {a}", self.rate),
        };
        if let Some(n) = self.reconnect_every {
            label += &format!(", reconnect every {n} frames");
        }
        label
    }

    /// How each client sent, in words, when it was not evenly spaced on
    /// one connection: the arrival process and the connection churn.
    pub fn load_description(&self) -> Option<String> {
        let arrival = self.arrival.describe(self.rate.hz());
        let churn = self.reconnect_every.map(|n| {
            format!("closing its connection after every {n} frames and going on at once on a fresh one (connection churn, `--reconnect-every {n}`)")
        });
        match (arrival, churn) {
            (a, None) => a,
            (None, Some(c)) => Some(format!("on a fixed open-loop schedule, {c}")),
            (Some(a), Some(c)) => Some(format!("{a}; {c}")),
        }
    }

    /// The fleet configuration of a cell against `target`.
    pub fn fleet_config(&self, key: &CellKey, target: std::net::SocketAddr) -> Option<FleetConfig> {
        Some(FleetConfig {
            target,
            clients: key.clients,
            client_id_base: 0,
            rate: self.rate,
            warmup: self.warmup,
            duration: self.duration_for(key.clients),
            count: None,
            batch_window: self.batch_window_for(key.clients),
            arrival: self.arrival.clone(),
            seed: self.seed,
            reconnect_every: self.reconnect_every,
            work: self.workload(&key.workload)?.plan.clone(),
            threads: self.fleet_cpus.len().max(1),
            cpus: Some(self.fleet_cpus.clone()),
            drain_timeout: self.drain_timeout,
            max_lag: FleetConfig::default_max_lag(self.batch_window_for(key.clients)),
            connect_tries: fleet::DEFAULT_CONNECT_TRIES,
            shard: None,
            start_at_unix_ns: None,
            ack: self.ack,
            shared_clock: true,
        })
    }
}

/// What the fault injection kills (`--kill-target`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillTarget {
    /// The server process (and so all of it).
    #[default]
    Server,
    /// One child of the server process (a prefork child).
    Child,
}

/// An `--slo` recorded in a run that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid --slo: {0}")]
pub struct InvalidSlo(pub String);
