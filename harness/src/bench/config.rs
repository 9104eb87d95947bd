//! The run configuration from the CLI: [`from_args`] validates the
//! arguments once into a [`RunConfig`] (embedded in `run.json`, reused by
//! `--resume`).

use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use fleet::Rate;
use record::capacity::Params as SearchParams;
use record::config::{
    RunConfig, SearchSettings, Workload, CALL_WORKLOAD, CONFIRM_REPEATS, DEFAULT_SEARCH_MAX,
    DEFAULT_WORKLOADS, TAIL_SAMPLES, TOLERANCE_PCT,
};
use record::kernel_calibration::KernelCalibration;
use record::slo::Slo;
use workloads::WorkSpec;

use crate::cli::{RunArgs, Workers};
use crate::cpus;

/// Validates the CLI into a run configuration, its cpu work resolved with
/// the machine's kernel calibration `kernel`.
pub fn from_args(args: &RunArgs, kernel: KernelCalibration) -> Result<RunConfig> {
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
    args.arrival
        .check(args.rate.hz())
        .map_err(|e| anyhow!("invalid --arrival: {e}"))?;
    if args.reconnect_every.is_some() && args.ack {
        bail!("--reconnect-every cannot be combined with --ack yet (a client would have to wait for the old connection's acks before it reconnects); drop one of them");
    }
    let (models, skipped_models) = models_of(args, single_model)?;
    let iters_per_us = kernel.iters_per_us;
    let workloads = workloads_of(args, single_model, iters_per_us)?;
    let clients = match (args.clients.is_empty(), search.is_some()) {
        (false, _) => args.clients.clone(),
        (true, true) => Vec::new(),
        (true, false) => vec![10],
    };
    if clients.contains(&0) {
        bail!("--clients must be at least 1");
    }
    let (server_cpus, fleet_cpus, harness_cpus) = cpus_of(args)?;
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    if let Some(s) = &args.slo {
        Slo::from_str(s).map_err(|e| anyhow!("invalid --slo: {e}"))?;
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
        arrival: args.arrival.clone(),
        reconnect_every: args.reconnect_every,
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
        placement: args.placement,
        inline_cpu: args.inline_cpu,
        coalesce: args.coalesce,
        stages: !args.no_stages,
        scrape_every: args.scrape_every,
        harness_cpus,
        iters_per_us,
        kernel_calibration: Some(kernel),
        quick: args.quick,
        single_model,
        slo: args.slo.clone(),
        kill_server_after: args.kill_server_after,
        kill_target: args.kill_target,
    })
}

/// Models that cannot run here, each with the reason.
type Skipped = Vec<(String, String)>;

/// The models asked for, and those that cannot run here with the reason
/// (a one-model run refuses instead).
fn models_of(args: &RunArgs, single_model: bool) -> Result<(Vec<String>, Skipped)> {
    let models: Vec<String> = match (&args.model, args.models.is_empty()) {
        (Some(m), _) => vec![m.clone()],
        (None, false) => args.models.clone(),
        (None, true) => models::names().iter().map(|s| s.to_string()).collect(),
    };
    if models.len() > 1
        && models
            .iter()
            .any(|m| m == models::baseline::BASELINE.name())
    {
        bail!("`bare` is the baseline every search probes beside the models, never one of them; leave it out of --models (or run it alone with --model bare)");
    }
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
    Ok((models, skipped_models))
}

/// The workloads asked for, resolved with the measured kernel speed.
fn workloads_of(args: &RunArgs, single_model: bool, iters_per_us: f64) -> Result<Vec<Workload>> {
    Ok(if single_model {
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
                    .chain([&CALL_WORKLOAD])
                    .find(|(name, _)| name == n)
                    .map(|(_, s)| *s)
                    .ok_or_else(|| anyhow!("unknown workload `{n}`; choose from none, cpu, io, mixed, call (use --model M --work SPEC for a custom one)"))?;
                workload(n, spec, iters_per_us)
            })
            .collect::<Result<_>>()?
    })
}

/// Server, fleet and harness CPUs: as given, else the allowed CPUs split;
/// the harness on a spare CPU if there is one, else the fleet's.
fn cpus_of(args: &RunArgs) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
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
    Ok((server_cpus, fleet_cpus, harness_cpus))
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
    use record::calibration::FleetCalibration;
    use record::cell::CellKey;
    use record::kernel_calibration::Machine;

    /// A kernel calibration as a cache would hold it.
    fn kernel() -> KernelCalibration {
        KernelCalibration::from_rounds(Machine::default(), "then".into(), vec![100.0])
    }

    fn config(extra: &[&str]) -> RunConfig {
        let mut argv = vec!["harness", "--all", "--batch-window", "0"];
        argv.extend_from_slice(extra);
        from_args(&crate::cli::Cli::parse_from(argv).run, kernel()).unwrap()
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

    /// The arrival process reaches every cell's fleet with the run's seed,
    /// and one that needs a paced rate is refused without one.
    #[test]
    fn arrivals_reach_the_fleet_and_need_a_paced_rate() {
        let c = config(&["--arrival", "poisson", "--seed", "5", "--clients", "2"]);
        let key = c.cells().into_iter().next().expect("a cell");
        let f = c
            .fleet_config(&key, "127.0.0.1:1".parse().unwrap())
            .expect("a fleet");
        assert_eq!((f.arrival, f.seed), (fleet::Arrival::Poisson, 5));
        for arrival in ["poisson", "burst:on=1ms,off=1ms"] {
            let argv = [
                "harness",
                "--all",
                "--clients",
                "2",
                "--rate",
                "max",
                "--arrival",
                arrival,
            ];
            let err = from_args(&crate::cli::Cli::parse_from(argv).run, kernel()).unwrap_err();
            assert!(format!("{err:#}").contains("--rate"), "{arrival}: {err:#}");
        }
    }

    /// Churn reaches every cell's fleet; with acks it is refused.
    #[test]
    fn churn_reaches_the_fleet_and_is_refused_with_acks() {
        let c = config(&["--reconnect-every", "50", "--clients", "2"]);
        let key = c.cells().into_iter().next().expect("a cell");
        let f = c
            .fleet_config(&key, "127.0.0.1:1".parse().unwrap())
            .expect("a fleet");
        assert_eq!(f.reconnect_every, Some(50));
        let argv = [
            "harness",
            "--all",
            "--clients",
            "2",
            "--ack",
            "--reconnect-every",
            "50",
        ];
        let err = from_args(&crate::cli::Cli::parse_from(argv).run, kernel()).unwrap_err();
        assert!(format!("{err:#}").contains("--ack"), "{err:#}");
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
                "[default: {}; {} with --quick]",
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
                    |&(window_us, clients_per_core)| record::calibration::WindowCapacity {
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
            let mut c = from_args(&cli.run, kernel()).unwrap();
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
