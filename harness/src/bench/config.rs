//! The validated configuration of a benchmark run: which cells to run and
//! how. Built once from the CLI, embedded in `run.json`, reused by `--resume`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use workloads::{WorkPlan, WorkSpec};

use crate::capacity::search::Params as SearchParams;
use crate::cli::{RunArgs, Workers};
use crate::cpus;
use crate::fleet::{FleetConfig, Rate};
use crate::fleet_capacity::FleetCalibration;

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
    /// CPUs the harness and its sampler run on (off the server's).
    pub harness_cpus: Vec<usize>,
    /// Kernel iterations per microsecond measured at the start.
    pub iters_per_us: f64,
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
    pub kill_target: crate::cli::KillTarget,
}

/// How a run searches each (model, workload) for its capacity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchSettings {
    /// Bisection tolerance and the largest fleet size (set from the fleet
    /// calibration when the run starts).
    pub params: SearchParams,
    /// Repeats of the knee and (unless `--quick`) the next step up.
    pub confirm: u32,
    /// Repeat the next step up too (a `--quick` search relies on the
    /// search's own failure there).
    #[serde(default = "yes")]
    pub confirm_next: bool,
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

fn yes() -> bool {
    true
}

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

/// One cell of the matrix, one repetition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellKey {
    /// Model name.
    pub model: String,
    /// Workload name.
    pub workload: String,
    /// Fleet size.
    pub clients: u32,
    /// Server workers chosen for this cell (a capacity search tries
    /// several); `None`: the run's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Repetition, from 0.
    pub repeat: u32,
}

impl CellKey {
    /// A file-name-safe id, e.g. `pool-io-50c-r0` or `pool-io-50c-w16-r2`.
    pub fn id(&self) -> String {
        let workers = self.workers.map_or(String::new(), |w| format!("-w{w}"));
        let raw = format!(
            "{}-{}-{}c{workers}-r{}",
            self.model, self.workload, self.clients, self.repeat
        );
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

fn one_shard() -> u32 {
    1
}

impl RunConfig {
    /// Validates the CLI into a run configuration.
    pub fn from_args(args: &RunArgs) -> Result<Self> {
        let single_model = args.model.is_some();
        if args.capacity && (args.model.is_none() || args.all) {
            bail!("`harness capacity` searches one model: give --model M (and --work SPEC); `harness --all` searches every model");
        }
        let search = (args.capacity || (args.all && args.clients.is_empty())).then_some(());
        if search.is_some() && !args.clients.is_empty() {
            bail!("--clients fixes the fleet sizes, but `harness capacity` searches for them; drop --clients, or run `harness --model M --clients ...`");
        }
        if search.is_none() && (args.search_max.is_some() || args.min_samples.is_some()) {
            bail!("--search-max and --min-samples set a capacity search, but this run has fixed fleet sizes (--clients); drop them, or drop --clients");
        }
        if search.is_some() && args.rate == Rate::Max {
            bail!("a capacity search counts clients at a paced rate; give --rate N (frames per second per client), not `max`");
        }
        let models: Vec<String> = match (&args.model, args.models.is_empty()) {
            (Some(m), _) => vec![m.clone()],
            (None, false) => args.models.clone(),
            (None, true) => models::names().iter().map(|s| s.to_string()).collect(),
        };
        let mut skipped_models = Vec::new();
        for m in &models {
            match models::find(m).map(|model| model.available()) {
                None => bail!(
                    "unknown model `{m}`; choose from: {}",
                    models::names().join(", ")
                ),
                Some(Err(why)) if single_model => bail!("model `{m}` cannot run here: {why}"),
                Some(Err(why)) => {
                    eprintln!("skipping model `{m}`: {why}");
                    skipped_models.push((m.clone(), why));
                }
                Some(Ok(())) => {}
            }
        }
        let models: Vec<String> = models
            .into_iter()
            .filter(|m| !skipped_models.iter().any(|(s, _)| s == m))
            .collect();
        let iters_per_us = workloads::kernel::iters_per_us(3);
        let workloads = if single_model {
            vec![workload(&args.work, &args.work, iters_per_us)?]
        } else {
            let names: Vec<String> = if args.works.is_empty() {
                DEFAULT_WORKLOADS
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect()
            } else {
                args.works.clone()
            };
            names
                .iter()
                .map(|n| {
                    let spec = DEFAULT_WORKLOADS
                        .iter()
                        .find(|(name, _)| name == n)
                        .map(|(_, s)| *s)
                        .ok_or_else(|| anyhow!("unknown workload `{n}`; choose from none, cpu, io, mixed (use --model M --work SPEC for a custom one)"))?;
                    workload(n, spec, iters_per_us)
                })
                .collect::<Result<_>>()?
        };
        let clients = match (args.clients.is_empty(), search.is_some()) {
            (false, _) => args.clients.clone(),
            (true, true) => Vec::new(),
            (true, false) => vec![10],
        };
        if clients.contains(&0) {
            bail!("--clients must be at least 1");
        }
        let allowed = cpus::allowed();
        let (default_server, default_fleet) = cpus::split(&allowed);
        let parse = |s: &Option<String>, d: Vec<usize>| -> Result<Vec<usize>> {
            s.as_deref()
                .map_or(Ok(d), |s| cpus::parse_list(s).map_err(|e| anyhow!(e)))
        };
        let server_cpus = parse(&args.server_cpus, default_server)?;
        let fleet_cpus = parse(&args.fleet_cpus, default_fleet)?;
        // A spare CPU if there is one, else the fleet's: never the server's.
        let spare: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|c| !server_cpus.contains(c) && !fleet_cpus.contains(c))
            .collect();
        let harness_cpus = if spare.is_empty() {
            fleet_cpus.clone()
        } else {
            spare
        };
        if args.repeat == 0 {
            bail!("--repeat must be at least 1");
        }
        if let Some(s) = &args.slo {
            crate::bench::slo::Slo::from_str(s).map_err(|e| anyhow!("invalid --slo: {e}"))?;
        }
        let workers = match args.workers {
            Some(Workers::Count(n)) => Some(n),
            Some(Workers::Auto) | None => None,
        };
        let search = match search {
            None => None,
            Some(()) => Some(search_settings(args, workers.is_none())?),
        };
        let (duration, warmup, drain) = match (search.is_some(), args.quick) {
            (false, false) => (10_000, 2_000, 5_000),
            (false, true) => (1_000, 250, 2_000),
            (true, false) => (1_500, 500, 1_000),
            (true, true) => (250, 100, 500),
        };
        let ms = Duration::from_millis;
        Ok(RunConfig {
            models,
            skipped_models,
            workloads,
            clients,
            rate: args.rate,
            duration: args.duration.unwrap_or(ms(duration)),
            warmup: args.warmup.unwrap_or(ms(warmup)),
            batch_window: args.batch_window,
            window: args.batch_window,
            fleet_calibration: None,
            drain_timeout: args.drain_timeout.unwrap_or(ms(drain)),
            workers,
            search,
            repeat: args.repeat,
            seed: args.seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            }),
            server_cpus,
            fleet_cpus,
            fleet_shards: args.fleet_shards,
            ack: args.ack,
            harness_cpus,
            iters_per_us,
            quick: args.quick,
            single_model,
            slo: args.slo.clone(),
            kill_server_after: args.kill_server_after,
            kill_target: args.kill_target,
        })
    }

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
    pub fn slo_for(&self, workload: &str) -> Result<crate::bench::slo::Slo> {
        match &self.slo {
            Some(s) => s.parse().map_err(|e| anyhow!("invalid --slo: {e}")),
            None => Ok(crate::bench::slo::Slo::default_for(
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
            work: self.workload(&key.workload)?.plan.clone(),
            threads: self.fleet_cpus.len().max(1),
            cpus: Some(self.fleet_cpus.clone()),
            drain_timeout: self.drain_timeout,
            max_lag: FleetConfig::default_max_lag(self.batch_window_for(key.clients)),
            connect_tries: crate::fleet::DEFAULT_CONNECT_TRIES,
            shard: None,
            start_at_unix_ns: None,
            ack: self.ack,
            shared_clock: true,
        })
    }
}

/// The search settings from the CLI: `--quick` or full defaults.
fn search_settings(args: &RunArgs, sweep: bool) -> Result<SearchSettings> {
    let tolerance = args.tolerance.unwrap_or(if args.quick {
        TOLERANCE_PCT.0
    } else {
        TOLERANCE_PCT.1
    });
    if !(0.0..=100.0).contains(&tolerance) {
        bail!("--tolerance is a percentage between 0 and 100, not {tolerance}");
    }
    Ok(SearchSettings {
        params: SearchParams {
            max_clients: DEFAULT_SEARCH_MAX,
            tolerance: tolerance / 100.0,
        },
        confirm: args.confirm.unwrap_or(if args.quick {
            CONFIRM_REPEATS.0
        } else {
            CONFIRM_REPEATS.1
        }),
        confirm_next: !args.quick,
        sweep,
        min_samples: args.min_samples.unwrap_or(
            100 * if args.quick {
                TAIL_SAMPLES.0
            } else {
                TAIL_SAMPLES.1
            },
        ),
    })
}

fn workload(name: &str, spec: &str, iters_per_us: f64) -> Result<Workload> {
    let parsed = WorkSpec::from_str(spec).map_err(|e| anyhow!(e))?;
    Ok(Workload {
        name: name.to_string(),
        plan: parsed.resolve(Some(iters_per_us)).map_err(|e| anyhow!(e))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(extra: &[&str]) -> RunConfig {
        let mut argv = vec!["harness", "--all", "--batch-window", "0"];
        argv.extend_from_slice(extra);
        RunConfig::from_args(&crate::cli::Cli::parse_from(argv).run).unwrap()
    }

    #[test]
    fn repeats_run_round_robin_in_a_seeded_shuffle() {
        let c = config(&[
            "--works",
            "none,io",
            "--clients",
            "1,10",
            "--repeat",
            "3",
            "--seed",
            "42",
        ]);
        let cells = c.cells();
        let per_round = 2 * 2 * models::names().len();
        assert_eq!(cells.len(), 3 * per_round);
        for (round, chunk) in cells.chunks(per_round).enumerate() {
            // Every cell once per round, before any cell runs again.
            assert!(chunk.iter().all(|k| k.repeat == round as u32));
            let mut ids: Vec<String> = chunk
                .iter()
                .map(|k| format!("{}-{}-{}", k.model, k.workload, k.clients))
                .collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), per_round);
        }
        // Shuffled, and the same again from the same seed.
        let rounds: Vec<&[CellKey]> = cells.chunks(per_round).collect();
        assert_ne!(
            rounds[0].iter().map(|k| &k.model).collect::<Vec<_>>(),
            rounds[1].iter().map(|k| &k.model).collect::<Vec<_>>()
        );
        assert_eq!(
            cells,
            config(&[
                "--works",
                "none,io",
                "--clients",
                "1,10",
                "--repeat",
                "3",
                "--seed",
                "42"
            ])
            .cells()
        );
    }

    #[test]
    fn all_searches_unless_fleet_sizes_are_given() {
        // (extra args, searches, fleet sizes)
        let table: [(&[&str], bool, Vec<u32>); 4] = [
            (&[], true, vec![]),
            (&["--quick"], true, vec![]),
            (&["--clients", "1,10,50,100"], false, vec![1, 10, 50, 100]),
            (&["--quick", "--clients", "2"], false, vec![2]),
        ];
        for (extra, searches, clients) in table {
            let c = config(extra);
            assert_eq!(c.search.is_some(), searches, "{extra:?}");
            assert_eq!(c.clients, clients, "{extra:?}");
        }
        let quick = config(&["--quick"]).search.unwrap();
        let full = config(&[]).search.unwrap();
        assert!(quick.confirm < full.confirm);
        assert!(quick.params.tolerance > full.params.tolerance);
        assert!(full.sweep);
        assert!(!config(&["--workers", "4"]).search.unwrap().sweep);
    }

    #[test]
    fn a_forced_window_applies_to_every_cell() {
        let c = config(&[]);
        assert_eq!(c.batch_window_for(1), Duration::ZERO);
        assert_eq!(c.batch_window_for(500), Duration::ZERO);
    }

    #[test]
    fn the_help_states_the_defaults_the_code_uses() {
        use clap::CommandFactory;
        let help = crate::cli::Cli::command()
            .find_subcommand_mut("capacity")
            .expect("capacity subcommand")
            .render_long_help()
            .to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for want in [
            format!(
                "[default: {}; {} with --quick]",
                TOLERANCE_PCT.1, TOLERANCE_PCT.0
            ),
            format!(
                "[default: {}; with --quick {}, of the knee only]",
                CONFIRM_REPEATS.1, CONFIRM_REPEATS.0
            ),
            format!(
                "[default: {}; {} with --quick]",
                100 * TAIL_SAMPLES.1,
                100 * TAIL_SAMPLES.0
            ),
        ] {
            assert!(
                help.contains(&want),
                "the help does not say {want:?}: {help}"
            );
        }
    }

    fn calibration(caps: &[(u64, u32)]) -> FleetCalibration {
        FleetCalibration {
            windows: caps
                .iter()
                .map(
                    |&(window_us, clients_per_core)| crate::fleet_capacity::WindowCapacity {
                        window_us,
                        clients_per_core,
                        first_pass: clients_per_core,
                    },
                )
                .collect(),
            ..FleetCalibration::default()
        }
    }

    #[test]
    fn one_window_per_run_from_the_calibration() {
        let cal = calibration(&[(0, 16), (250, 48), (1000, 128), (2000, 256)]);
        let ms = Duration::from_micros;
        // (args, window, search bound): the bound is what the fleet paces
        // with headroom at the window; unforced, the window is the
        // smallest that paces the largest fleet of the run.
        let table: [(&[&str], Duration, Option<u32>); 5] = [
            (&["--all"], ms(2000), Some(192)),
            (&["--all", "--batch-window", "0"], ms(0), Some(12)),
            (&["--all", "--batch-window", "1ms"], ms(1000), Some(96)),
            (&["--all", "--search-max", "30"], ms(250), Some(30)),
            (&["--all", "--clients", "1,10,50"], ms(1000), None),
        ];
        for (args, window, bound) in table {
            let mut argv = vec!["harness"];
            argv.extend_from_slice(args);
            let cli = crate::cli::Cli::parse_from(argv);
            let mut c = RunConfig::from_args(&cli.run).unwrap();
            c.fleet_cpus = vec![1];
            c.fix_window(Some(&cal), cli.run.search_max);
            assert_eq!(c.window, Some(window), "{args:?}");
            for n in [1, 7, 100] {
                assert_eq!(c.batch_window_for(n), window, "{args:?} at {n}");
            }
            assert_eq!(c.search.map(|s| s.params.max_clients), bound, "{args:?}");
        }
    }
}
