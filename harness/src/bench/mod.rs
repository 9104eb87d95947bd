//! A benchmark run: every cell of the matrix, one after another, each as a
//! pinned server process against a pinned fleet process, saved after every
//! cell, then reported.

pub mod canary;
pub mod cell;
pub mod config;
pub mod env;
pub mod sample;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::RunArgs;
use cell::{run_cell, CellContext};
use record::config::RunConfig;
use record::environment::Environment;
use record::run::RunFile;

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every cell ran (whatever their verdicts).
    Complete {
        /// Where run.json is.
        run_dir: PathBuf,
        /// SLO breaches among valid cells.
        slo_breaches: Vec<String>,
    },
    /// Stopped by a signal; resume with the id.
    Interrupted {
        /// The run's id.
        run_id: String,
    },
}

/// Runs (or resumes) the benchmark described by `args`.
pub fn run(args: &RunArgs) -> Result<Outcome> {
    if !args.all && args.model.is_none() && args.resume.is_none() {
        bail!("nothing to run: give --all, --model M or --resume ID (see --help)");
    }
    let mut run = match &args.resume {
        Some(id) => {
            let run = RunFile::load(&args.results_dir.join(id))?;
            if run.complete {
                bail!("run {id} is already complete; nothing to resume");
            }
            run
        }
        None => new_run(args)?,
    };
    // The harness and its sampler stay off the server's CPUs (on a spare
    // CPU when there is one, else the fleet's): the sampler's procfs reads
    // cost more the more threads and fds a model has, which must not be
    // charged to the models that have more.
    crate::cpus::pin(&run.config.harness_cpus).map_err(|e| anyhow!(e))?;
    let run_dir = args.results_dir.join(&run.run_id);
    let log_dir = args.logs_dir.join(&run.run_id);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("create {}", run_dir.display()))?;
    std::fs::create_dir_all(&log_dir).with_context(|| format!("create {}", log_dir.display()))?;
    init_log(&log_dir)?;
    tracing::info!(run_id = %run.run_id, "run started");
    run.save(&run_dir)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handlers")?;
    }
    let config = run.config.clone();
    let ctx = CellContext {
        config: &config,
        exe: std::env::current_exe().context("locate the harness executable")?,
        log_dir: log_dir.clone(),
        stop: stop.clone(),
        client_latency: false,
        live: match args.live {
            Some(addr) => {
                let live = crate::live::Live::start(addr, &run.run_id)?;
                println!("live:    http://{}/", live.addr());
                Some(live)
            }
            None => None,
        },
    };
    let finished = match run.config.search {
        Some(_) => {
            announce_search(&run)?;
            crate::capacity::run(&ctx, &mut run, &run_dir, progress_bar("probes", 0, 0))?
        }
        None => run_matrix(&ctx, &mut run, &run_dir)?,
    };
    if let Some(live) = &ctx.live {
        live.finished();
    }
    if !finished {
        tracing::warn!("interrupted");
        return Ok(Outcome::Interrupted { run_id: run.run_id });
    }
    run.complete = true;
    run.ended = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    run.save(&run_dir)?;
    print_outputs(&run, &run_dir, &args.plots_dir);
    println!("logs:    {}", log_dir.display());
    let slo_breaches = match (&run.config.slo, &run.config.search) {
        (Some(s), None) => s
            .parse::<record::slo::Slo>()
            .map_err(|e| anyhow!(e))?
            .breaches(&run.cells),
        _ => Vec::new(),
    };
    Ok(Outcome::Complete {
        run_dir,
        slo_breaches,
    })
}

/// A new run from the command line: its configuration, id, environment
/// and fleet calibration.
fn new_run(args: &RunArgs) -> Result<RunFile> {
    let kernel = crate::kernel_calibration::load_or_measure(
        &args.results_dir,
        &env::machine(),
        args.recalibrate,
    )?;
    let mut config = config::from_args(args, kernel)?;
    let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let label = if config.single_model {
        config.models[0].as_str()
    } else {
        "all"
    };
    let run_id = format!(
        "{}-{label}{}",
        started.replace(['-', ':'], ""),
        if config.quick { "-quick" } else { "" }
    );
    let environment = env::capture(&config.server_cpus, &config.fleet_cpus);
    if environment.server_fleet_share_a_core {
        eprintln!("warning: a server CPU and a fleet CPU are SMT siblings of one core; the fleet's load will slow the server (see --server-cpus, --fleet-cpus)");
    }
    calibrate(&mut config, args, &environment)?;
    Ok(RunFile {
        run_id,
        started,
        ended: None,
        complete: false,
        config,
        environment,
        cells: Vec::new(),
        capacities: Vec::new(),
        speed_checks: Vec::new(),
        floor: Vec::new(),
    })
}

/// Says what a capacity search is about to measure, under which load and
/// SLO.
fn announce_search(run: &RunFile) -> Result<()> {
    eprintln!(
        "run {}: capacity search of {} models x {} workloads, server on CPUs {:?}, fleet on CPUs {:?}, harness on CPUs {:?}",
        run.run_id,
        run.config.models.len(),
        run.config.workloads.len(),
        run.config.server_cpus,
        run.config.fleet_cpus,
        run.config.harness_cpus
    );
    eprintln!(
        "one load shape for every probe: batch window {}, search bound {} clients; SLO {}",
        record::units::fmt_ns(run.config.batch_window_for(1).as_nanos() as u64),
        run.config.largest_fleet(),
        run.config
            .workloads
            .iter()
            .map(|w| Ok(format!(
                "{}: {}",
                w.name,
                run.config.slo_for(&w.name)?.label()
            )))
            .collect::<Result<Vec<_>>>()?
            .join("; ")
    );
    Ok(())
}

/// Prints the run's table and where its files are, and renders its report.
fn print_outputs(run: &RunFile, run_dir: &Path, plots_dir: &Path) {
    println!("{}", report::terminal_table(run));
    println!("results: {}", run_dir.join(record::run::RUN_FILE).display());
    match report::render(run, run_dir, plots_dir) {
        Ok(written) => {
            println!("summary: {}", written.summary.display());
            println!("report:  {}", written.html.display());
            println!(
                "plots:   {} ({} files)",
                written.plots_dir.display(),
                written.plots.len()
            );
        }
        Err(e) => eprintln!(
            "warning: the report could not be rendered: {e:#}; rerun `harness report {}`",
            run_dir.display()
        ),
    }
}

/// Loads or measures the fleet calibration where the run needs it (it
/// bounds a search and picks the run's window; a forced window needs it
/// only to bound a search), then fixes the run's one window.
fn calibrate(config: &mut RunConfig, args: &RunArgs, environment: &Environment) -> Result<()> {
    let needs_calibration =
        config.batch_window.is_none() || (config.search.is_some() && args.search_max.is_none());
    if needs_calibration {
        config.fleet_calibration = Some(crate::calibration::load_or_measure(
            &args.results_dir,
            environment,
            &config.server_cpus,
            config.fleet_cpus[0],
            args.recalibrate,
            crate::calibration::Probe {
                duration: Duration::from_millis(if config.quick {
                    record::calibration::QUICK_STEP_MS
                } else {
                    record::calibration::FULL_STEP_MS
                }),
                limit: crate::calibration::PACING_LIMIT,
                reconnect_every: config.reconnect_every,
            },
            config.search.is_some(),
        )?);
    }
    let calibration = config.fleet_calibration.clone();
    config.fix_window(calibration.as_ref(), args.search_max);
    Ok(())
}

/// Runs the fixed matrix's remaining cells. `Ok(false)`: stopped by a
/// signal.
fn run_matrix(ctx: &CellContext, run: &mut RunFile, run_dir: &Path) -> Result<bool> {
    let todo: Vec<_> = run
        .config
        .cells()
        .into_iter()
        .filter(|k| !run.cells.iter().any(|c| &c.key == k))
        .collect();
    let total = run.config.cells().len() as u64;
    let progress = progress_bar("cells", total, total - todo.len() as u64);
    eprintln!(
        "run {}: {} cells ({} to go), server on CPUs {:?}, fleet on CPUs {:?}, harness on CPUs {:?}",
        run.run_id,
        total,
        todo.len(),
        run.config.server_cpus,
        run.config.fleet_cpus,
        run.config.harness_cpus
    );
    for key in &todo {
        progress.set_message(key.id());
        let result = run_cell(ctx, key).with_context(|| format!("cell {}", key.id()))?;
        if ctx.stop.load(Ordering::SeqCst) {
            return Ok(false); // a cell cut short is not kept
        }
        tracing::info!(cell = %key.id(), status = ?result.verdict.status, "cell done");
        if progress.is_hidden() {
            eprintln!(
                "[{}/{}] {}",
                run.cells.len() + 1,
                total,
                report::table::one_line(&result)
            );
        }
        progress.inc(1);
        run.cells.push(result);
        run.save(run_dir)?;
    }
    progress.finish_and_clear();
    Ok(true)
}

fn progress_bar(unit: &str, total: u64, done: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_position(done);
    let template = format!("{{bar:30}} {{pos}}/{{len}} {unit}  ETA {{eta}}  {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

fn init_log(dir: &Path) -> Result<()> {
    let file = std::fs::File::create(dir.join("harness.log")).context("create harness.log")?;
    // A second run in the same process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init();
    Ok(())
}
