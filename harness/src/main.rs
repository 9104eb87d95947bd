//! `harness`: thin entry point; the work lives in the library.

use std::process::ExitCode;

use clap::Parser;
use harness::bench::{self, Outcome};
use harness::cli::{Cli, Command};
use harness::{commands, merged, scaling, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(command) => {
            init_stderr_log();
            match command {
                Command::Serve(a) => serve::run(a).map(|()| ExitCode::SUCCESS),
                Command::Models => commands::models().map(|()| ExitCode::SUCCESS),
                Command::Fleet(a) => commands::fleet(a).map(|()| ExitCode::SUCCESS),
                Command::Calibrate(a) => commands::calibrate(a).map(|()| ExitCode::SUCCESS),
                Command::Responder(a) => commands::responder(a).map(|()| ExitCode::SUCCESS),
                Command::Report(a) => commands::report(a).map(|()| ExitCode::SUCCESS),
                Command::Compare(a) => commands::compare(a),
                Command::Merge(a) => merged::merge(a),
                Command::K8s(a) => merged::k8s(a),
                Command::FleetCapacity(a) => {
                    harness::calibration::run(a).map(|()| ExitCode::SUCCESS)
                }
                Command::Capacity(a) => {
                    let mut a = (**a).clone();
                    a.capacity = true;
                    search(&a).map(exit_code)
                }
            }
        }
        None => search(&cli.run).map(exit_code),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

/// A benchmark run, or with `--scaling` one per server CPU count.
fn search(args: &harness::cli::RunArgs) -> anyhow::Result<Outcome> {
    if args.scaling {
        scaling::run(args)
    } else {
        bench::run(args)
    }
}

/// The exit code of a benchmark run: 2 on SLO breaches, 130 when interrupted.
fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Complete { slo_breaches, .. } if slo_breaches.is_empty() => ExitCode::SUCCESS,
        Outcome::Complete { slo_breaches, .. } => {
            eprintln!("SLO breached by {} valid cells:", slo_breaches.len());
            for b in &slo_breaches {
                eprintln!("  {b}");
            }
            ExitCode::from(2)
        }
        Outcome::Interrupted { run_id } => {
            eprintln!(
                "interrupted; completed cells are saved. Finish with: harness --resume {run_id}"
            );
            ExitCode::from(130)
        }
    }
}

fn init_stderr_log() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
