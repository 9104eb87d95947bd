//! Command-line interface: `harness [--all | --model M]` runs benchmarks;
//! subcommands run the pieces (`serve`, `fleet`) or work on saved results.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use fleet::{Arrival, Rate};
use models::Placement;
use record::config::KillTarget;
use record::units::parse_duration;

/// Which concurrency model should my ingest server use, for my load, on my
/// machine? Finds each server model's capacity at an SLO (at its best worker
/// count, with an interval) against an open-loop client fleet, reports
/// throughput, latency, CPU and memory, and marks every result that cannot
/// be trusted.
#[derive(Parser, Debug)]
#[command(name = "harness", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A single step instead of a benchmark run.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Benchmark options (with --all or --model).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one server model until SIGTERM/SIGINT, then print its report.
    Serve(ServeArgs),
    /// List the registered models: how each is built, what --workers means, its default.
    Models,
    /// Run the client fleet against a server and print its report.
    Fleet(FleetArgs),
    /// Measure how many reference-kernel iterations make 1 us here.
    Calibrate(CalibrateArgs),
    /// Run the downstream service of `call` work (a run starts its own) until SIGTERM/SIGINT, then print what it did.
    Responder(ResponderArgs),
    /// Render plots and summary.md from a saved run.
    Report(ReportArgs),
    /// Compare two saved runs: capacity by capacity, or cell by cell, claiming only changes beyond the noise.
    Compare(CompareArgs),
    /// Benchmark the fleet: how many 10 kHz clients one core paces on time, per batch window.
    FleetCapacity(CapacityArgs),
    /// Search one model's capacity: the most clients it serves within the SLO (`--model M --work SPEC`).
    Capacity(Box<RunArgs>),
    /// Merge the reports of fleets that loaded one server together (e.g. compose's fleet containers) and give the cell's verdict.
    Merge(MergeArgs),
    /// One cell on Kubernetes: render its manifests, or collect its reports from `kubectl logs`.
    #[command(subcommand)]
    K8s(K8sCommand),
}

/// `harness k8s`.
#[derive(Subcommand, Debug)]
pub enum K8sCommand {
    /// Print the manifests of one cell: the server Deployment and Service, and the fleet as an Indexed Job of --shards pods.
    Render(K8sRenderArgs),
    /// Merge the fleet shards' reports (and the server's) found in `kubectl logs` output, and give the cell's verdict.
    Collect(K8sCollectArgs),
}

/// `harness k8s render`.
#[derive(Args, Debug)]
pub struct K8sRenderArgs {
    /// Server model.
    #[arg(long)]
    pub model: String,
    /// Server workers [default: the model's].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Work per frame.
    #[arg(long, default_value = "none")]
    pub work: String,
    /// Clients of the whole fleet.
    #[arg(long, default_value_t = 100)]
    pub clients: u32,
    /// Fleet pods (shards of the fleet).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: u32,
    /// Frames per second per client, or `max`.
    #[arg(long, default_value = "10000")]
    pub rate: Rate,
    /// Measured window.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Warm-up before the window.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Image with `harness` as its entry point (see docs/deployment.md, Docker).
    #[arg(long, default_value = "ingest-bench:local")]
    pub image: String,
    /// The shards start their schedule this long after rendering: apply the manifests before then.
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    pub start_in: Duration,
}

/// `harness k8s collect`.
#[derive(Args, Debug)]
pub struct K8sCollectArgs {
    /// Files of `kubectl logs` output (the fleet pods', and the server's to reconcile) [default: stdin].
    pub logs: Vec<PathBuf>,
    /// Write the merged cell here as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `harness merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Fleet reports (JSON from `harness fleet --report`), each fleet with its own client ids.
    #[arg(required = true)]
    pub fleets: Vec<PathBuf>,
    /// The server's report, to reconcile against (without it: the fleets' own verdict only).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Write the merged cell (fleet, server, reconciliation, figures, verdict) here as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the printed summary to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
}

/// Options of a benchmark run.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Every model and workload: a capacity search per (model, workload), or with --clients a fixed matrix of fleet sizes.
    #[arg(long, conflicts_with = "model")]
    pub all: bool,
    /// Run one model (see `harness models`).
    #[arg(long)]
    pub model: Option<String>,
    /// With --all: models to include (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// With --all: workloads to include, from none,cpu,io,mixed (default all) and call (`call:1ms,every=20`: the io workload's wait as a real call to a downstream responder the harness starts).
    #[arg(long, value_delimiter = ',')]
    pub works: Vec<String>,
    /// With --model: work per frame (none | cpu:ITERS|DUR | io:US|DUR | call:US|DUR | mixed[:..], each may add ,every=K).
    #[arg(long, default_value = "none")]
    pub work: String,
    /// Fleet sizes (comma-separated): runs a fixed matrix instead of the capacity search [default: 10 with --model; --all searches].
    #[arg(long, value_delimiter = ',')]
    pub clients: Vec<u32>,
    /// Frames per second per client, or `max` for saturation.
    #[arg(long, default_value = "10000")]
    pub rate: Rate,
    /// How each client's frames arrive at its mean --rate: constant; poisson (exponential gaps from the run's --seed); burst:on=DUR,off=DUR (each cycle's frames evenly over its first `on`, at the peak rate rate x (on+off)/on; every client's cycles start together); trace:FILE (a file of arrival times in ns, one per line, replayed by each client from its own line, its times scaled to the mean rate; docs/method.md#arrival-processes). Every model of the run is measured under the same arrivals.
    #[arg(long, default_value = "constant")]
    pub arrival: Arrival,
    /// Connection churn: each client closes its connection after every N frames and goes on at once on a fresh one (sequence numbers continue, the ledger stays exact); accept cost then shows, per model. Not with --ack.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconnect_every: Option<u64>,
    /// Measured window of each cell [default: 10s, 1s with --quick; search probes 1.5s, 250ms with --quick].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up before the window [default: 2s, 250ms with --quick; search probes 500ms, 100ms with --quick].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Server workers (pool threads, runtime threads, children), or `auto`: each model's default, and in a capacity search every count that makes sense for the model, reported at its best [default: auto].
    #[arg(long)]
    pub workers: Option<Workers>,
    /// Capacity search: confirmation rounds, spread over the run after every search, each probing the knee and the size above its interval again (and, while that passes, the next size above) [default: 3; 1 with --quick].
    #[arg(long)]
    pub confirm: Option<u32>,
    /// Capacity search: bisection stops when the next step is within this many percent (or 1 client) [default: 5; 25 with --quick].
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Set by `harness capacity`: search one model.
    #[arg(skip)]
    pub capacity: bool,
    /// The fleet's batch window for every cell of the run (frames due within it go out in one write; 0 = one write per frame, and a search bound that implies) [default: the smallest calibrated window at which the fleet paces the run's largest fleet with headroom].
    #[arg(long, value_parser = parse_duration)]
    pub batch_window: Option<Duration>,
    /// Capacity search: the fewest measured frames a probe takes (a probe of few clients runs longer), so its p99 rests on enough samples above it [default: 20000; 2500 with --quick].
    #[arg(long)]
    pub min_samples: Option<u64>,
    /// Capacity search: the largest fleet size tried [default: the most clients the fleet calibration says the fleet paces at the run's window].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub search_max: Option<u32>,
    /// Measure the fleet's and the cpu kernel's calibrations again instead of using the cached ones.
    #[arg(long)]
    pub recalibrate: bool,
    /// Run each cell this many times, round-robin over all cells in a shuffled order; reports the median and the spread.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Seed of the shuffled cell order [default: from the clock; recorded in run.json].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Short cells and fleet sizes 1,10 (about a minute for --all), for a first look and CI.
    #[arg(long)]
    pub quick: bool,
    /// Finish the interrupted run with this id (in the results directory).
    #[arg(long)]
    pub resume: Option<String>,
    /// Capacity against server cores: the search once per server CPU count (1, 2, 4, ... up to half the CPUs, the fleet on the other half), then a table and a plot per workload; says where and why it stops (on 2 CPUs: the 1-CPU point only).
    #[arg(long, conflicts_with_all = ["resume", "server_cpus", "fleet_cpus", "clients"])]
    pub scaling: bool,
    /// CPUs for the server (e.g. 0 or 0-3) [default: first half of the allowed CPUs].
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// CPUs for the fleet [default: the other half].
    #[arg(long)]
    pub fleet_cpus: Option<String>,
    /// Run each cell's fleet as N processes on the fleet CPUs (shards of one fleet on one shared start, merged exactly): what a fleet spread over machines does, here.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub fleet_shards: u32,
    /// Ack mode: the server acknowledges every frame once processed and the fleet measures each frame's round trip (due time to ack) on its own clock, and checks every frame is acknowledged exactly once.
    #[arg(long)]
    pub ack: bool,
    /// How `prefork`, `percore` and `uring` spread connections over their workers: `least` (one acceptor hands each to the worker with the fewest open ones) or `hash` (a SO_REUSEPORT listener per worker; the kernel hashes the addresses).
    #[arg(long, default_value_t = Placement::Least)]
    pub placement: Placement,
    /// `async`: the cpu work of one read up to this long runs inline on a runtime thread, longer on the blocking pool (0: always the pool); `rayon`: a turn's wait-free frames with up to this much cpu work run on its reader thread one after another, more as a parallel iterator.
    #[arg(long, value_parser = parse_duration, default_value = "100us")]
    pub inline_cpu: Duration,
    /// `pool` and `rayon`: while reads come fast and no worker is running, frames wait up to this long for more before a worker is woken for them all (0: each turn's at once).
    #[arg(long, value_parser = parse_duration, default_value = "100us")]
    pub coalesce: Duration,
    /// Follow the run on a local web page (progress, each probe's verdict as it lands, the current probe's rate, p99 and CPU, the capacities) at this address [default: 127.0.0.1:8089]; other than loopback only when asked for (e.g. 0.0.0.0:8089). Servers then run with --metrics, scraped every 250 ms.
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:8089")]
    pub live: Option<std::net::SocketAddr>,
    /// Servers run with --metrics and the harness scrapes them this often during each cell: what watching a server costs it (`docs/metrics-cost.sh`).
    #[arg(long, value_parser = parse_duration)]
    pub scrape_every: Option<Duration>,
    /// Servers stamp no reads and record no stages (no attribution in the report): to measure what knowing where the time went costs, with the same build (`docs/stage-cost.sh`).
    #[arg(long)]
    pub no_stages: bool,
    /// The SLO, e.g. p99=2ms,loss=0. A capacity search uses it for every workload instead of the default (p99 <= batch window + 1 ms + 2 x the longest work of one frame, no loss); a fixed matrix fails (exit 2) when a valid cell breaches it.
    #[arg(long)]
    pub slo: Option<String>,
    /// How long a client waits for the server to read everything after its last frame [default: 5s; 2s with --quick].
    #[arg(long, value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Fault injection: SIGKILL the server this long into each cell, to see loss reported.
    #[arg(long, value_parser = parse_duration)]
    pub kill_server_after: Option<Duration>,
    /// What --kill-server-after kills: the server process, or one of its children (prefork).
    #[arg(long, default_value = "server", value_parser = kill_target())]
    pub kill_target: KillTarget,
    /// Where results go.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Where plots go.
    #[arg(long, default_value = "plots")]
    pub plots_dir: PathBuf,
    /// Where logs go.
    #[arg(long, default_value = "logs")]
    pub logs_dir: PathBuf,
}

/// `--kill-target`: `server` or `child`.
fn kill_target() -> impl clap::builder::TypedValueParser<Value = KillTarget> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["server", "child"]).map(|s| match s.as_str() {
        "child" => KillTarget::Child,
        _ => KillTarget::Server,
    })
}

/// `--workers`: a count, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// Each model's default; in a capacity search, every sensible count.
    Auto,
    /// This many for every model.
    Count(usize),
}

impl std::str::FromStr for Workers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Workers::Auto),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Workers::Count(n)),
                _ => Err(format!("`{n}` is neither `auto` nor a count of at least 1")),
            },
        }
    }
}

/// `harness serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model to serve.
    #[arg(long)]
    pub model: String,
    /// Address to bind (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Pool threads, runtime threads or children [default: per model].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Open connections beyond this are closed at once and counted.
    #[arg(long, default_value_t = 1024)]
    pub max_clients: usize,
    /// Close connections silent this long (0 = never).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub idle_timeout: Duration,
    /// Close a connection whose started frame is not complete this long after its first byte (slowloris; 0 = never).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub frame_timeout: Duration,
    /// Largest cpu work accepted, kernel iterations.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_cpu_iters: u32,
    /// Largest io wait or call delay accepted, microseconds.
    #[arg(long, default_value_t = 100_000)]
    pub max_io_us: u32,
    /// Where the downstream service of `call` work listens (`harness responder`; a run starts one itself): each thread, runtime or ring keeps its own connections to it. Without it every call frame's call fails, counted.
    #[arg(long)]
    pub downstream: Option<std::net::SocketAddr>,
    /// How `prefork`, `percore` and `uring` spread connections over their workers: `least` or `hash` (see `harness run --help`).
    #[arg(long, default_value_t = Placement::Least)]
    pub placement: Placement,
    /// `async`: the cpu work of one read up to this long runs inline on a runtime thread; longer goes to the blocking pool (0: always the pool); `rayon`: a turn's wait-free frames with up to this much cpu work run on its reader thread one after another, more as a parallel iterator.
    #[arg(long, value_parser = parse_duration, default_value = "100us")]
    pub inline_cpu: Duration,
    /// Kernel iterations per microsecond, to turn --inline-cpu into work (the harness passes its calibration) [default: measured at start by the model that needs it].
    #[arg(long)]
    pub iters_per_us: Option<f64>,
    /// `pool` and `rayon`: while reads come fast and no worker is running, frames wait up to this long for more before a worker is woken for them all (0: each turn's at once).
    #[arg(long, value_parser = parse_duration, default_value = "100us")]
    pub coalesce: Duration,
    /// Record each client's latency apart, for its p99 in the report (a histogram per client per worker: a few KiB each).
    #[arg(long)]
    pub client_latency: bool,
    /// Stamp no reads and record no stages (what knowing costs: `docs/stage-cost.sh`).
    #[arg(long)]
    pub no_stages: bool,
    /// Serve live metrics (OpenMetrics text, `GET /metrics`, for Prometheus) on this address, e.g. 127.0.0.1:9464, from a process of their own.
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Write the JSON report here instead of stdout.
    #[arg(long, conflicts_with = "no_report")]
    pub report: Option<PathBuf>,
    /// Write no report at all (a sink for load tests).
    #[arg(long)]
    pub no_report: bool,
    /// Pin the server to these CPUs (e.g. 0-1).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Set by the harness: die with this parent process.
    #[arg(long, hide = true)]
    pub parent_pid: Option<i32>,
}

/// `harness fleet`.
#[derive(Args, Debug)]
pub struct FleetArgs {
    /// What to run: the same options a parent passes its child fleet.
    #[command(flatten)]
    pub options: fleet::FleetOptions,
    /// Run the fleet as N processes on this machine (shards on one shared start, pacing threads split among them) and merge their reports into this one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "shard")]
    pub local_shards: u32,
    /// Serve the fleet's live metrics (OpenMetrics text, `GET /metrics`, for Prometheus) on this address, e.g. 0.0.0.0:9465, while it runs.
    #[arg(long, conflicts_with = "local_shards")]
    pub metrics: Option<std::net::SocketAddr>,
    /// With --metrics: keep serving them this long after the report is written, so the last counts are scraped.
    #[arg(long, value_parser = parse_duration, default_value = "2s", requires = "metrics")]
    pub metrics_linger: Duration,
    /// Write the JSON report here instead of stdout.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Set by the harness: die with this parent process.
    #[arg(long, hide = true)]
    pub parent_pid: Option<i32>,
}

/// `harness calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Timed rounds; the best is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
}

/// `harness responder`.
#[derive(Args, Debug)]
pub struct ResponderArgs {
    /// Address to listen on; give it to `harness serve --downstream`.
    #[arg(long, default_value = "127.0.0.1:7100")]
    pub listen: std::net::SocketAddr,
}

/// `harness report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory (results/RUN-ID) or its run.json.
    pub run: PathBuf,
    /// Where plots go (a RUN-ID folder is made inside).
    #[arg(long, default_value = "plots")]
    pub plots_dir: PathBuf,
}

/// `harness compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Baseline run (directory or run.json).
    pub a: PathBuf,
    /// New run (directory or run.json).
    pub b: PathBuf,
    /// Exit non-zero when a cell's achieved rate drops, or its p99 or CPU per packet grows, by more than this percent.
    #[arg(long)]
    pub fail_on_regression: Option<f64>,
    /// Also write the markdown here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `harness fleet-capacity`.
#[derive(Args, Debug)]
pub struct CapacityArgs {
    /// Measured window per fleet size.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub duration: Duration,
    /// p99 pacing lag allowed.
    #[arg(long, value_parser = parse_duration, default_value = "100us")]
    pub limit: Duration,
    /// Largest fleet size tried.
    #[arg(long, default_value_t = 512)]
    pub max_clients: u32,
    /// Clients reconnect after every N frames (what connection churn costs the fleet).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconnect_every: Option<u64>,
    /// Also write the steps as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// compose's fleet service starts `harness fleet` with flags of its own
    /// (its shard and clients come from the container's replica number):
    /// they must parse as the same options every other fleet gets.
    #[test]
    fn compose_starts_the_fleet_with_the_flags_every_fleet_takes() {
        let compose = include_str!("../../docker-compose.yml");
        let start = compose
            .find("exec harness-entrypoint fleet")
            .expect("compose's fleet command");
        let end = start
            + compose[start..]
                .find("volumes:")
                .expect("the command's end");
        let command = compose[start..end]
            .replace("$$(( ${CLIENTS:-10} * FLEETS ))", "20")
            .replace("$$(( n - 1 ))/$$FLEETS", "1/2")
            .replace(
                "$${START_AT:+--start-at $$START_AT}",
                "--start-at 1800000000000000000",
            )
            .replace("${DURATION:-10s}", "10s")
            .replace("${WORK:-none}", "none")
            .replace("${BATCH_WINDOW:-2ms}", "2ms")
            .replace("${RUN:-.}", "run")
            .replace("$$n", "2");
        let args: Vec<&str> = command
            .split_whitespace()
            .skip(2) // exec harness-entrypoint
            .collect();
        assert!(!command.contains('$'), "a substitution left: {command}");
        let cli = Cli::try_parse_from(std::iter::once("harness").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("compose's fleet flags do not parse: {e}\n{args:?}"));
        let Some(Command::Fleet(fleet)) = cli.command else {
            panic!("not a fleet command: {args:?}");
        };
        let o = &fleet.options;
        assert_eq!((o.target.as_str(), o.clients), ("server:7000", 20));
        assert_eq!(o.shard, Some(fleet::Shard { index: 1, count: 2 }));
        assert!(o.ack && o.allow_remote);
        assert_eq!(o.start_at, Some(1_800_000_000_000_000_000));
        assert_eq!(o.batch_window, Duration::from_millis(2));
        assert_eq!(
            fleet.report.as_deref(),
            Some(std::path::Path::new("/work/results/run/fleet-2.json"))
        );
    }
}
