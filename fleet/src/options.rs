//! The fleet's command-line options, and the one path by which a fleet's
//! configuration crosses a process boundary: a parent decides a
//! [`FleetConfig`], turns it into options with every derived value explicit
//! ([`FleetOptions::from_config`]) and passes them as arguments
//! ([`FleetOptions::to_args`]); the child parses them (clap) and
//! [`FleetOptions::resolve`]s the same configuration back. Cells, local
//! shards, compose and Kubernetes all start `harness fleet` through these
//! flags, and a round-trip test holds the two directions together.

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use common::cpu_list::format_list;
use common::units::parse_duration;
use workloads::WorkSpec;

use crate::arrival::{Arrival, ArrivalError};
use crate::config::{FleetConfig, Rate, Shard, DEFAULT_CONNECT_TRIES};

/// Warm-up when none is given and the fleet runs for a duration.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);

/// What one `harness fleet` process is asked to run.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct FleetOptions {
    /// Server address, HOST:PORT (a name is resolved once, at start).
    #[arg(long)]
    pub target: String,
    /// Number of clients (of the whole fleet, with --shard).
    #[arg(long, default_value_t = 10)]
    pub clients: u32,
    /// Frames per second per client, or `max`.
    #[arg(long, default_value = "10000")]
    pub rate: Rate,
    /// Measured window.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Warm-up before the window [default: 2s; 0 with --count].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Send exactly this many frames per client, then stop.
    #[arg(long)]
    pub count: Option<u64>,
    /// Frames due within a window go out in one write; 0 = one write per frame.
    #[arg(long, value_parser = parse_duration, default_value = "1ms")]
    pub batch_window: Duration,
    /// How each client's frames arrive at its mean --rate: constant; poisson (exponential gaps from --seed); burst:on=DUR,off=DUR (a cycle's frames evenly over its first `on` at the peak rate rate x (on+off)/on, every client's cycles together); trace:FILE (arrival times in ns, one per line, replayed by each client from its own line, scaled to the mean rate).
    #[arg(long, default_value = "constant")]
    pub arrival: Arrival,
    /// Seed of random arrivals (poisson): each client's stream is keyed by it and the client's id, so shards and reruns send the same due times.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Connection churn: each client closes its connection after every N frames and goes on at once on a fresh one (sequence numbers continue; not with --ack).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconnect_every: Option<u64>,
    /// Work per frame (none | cpu:ITERS|DUR | io:US|DUR | call:US|DUR | mixed[:cpu=..,io=..,ratio=R], each may add ,every=K).
    #[arg(long, default_value = "none")]
    pub work: String,
    /// Id of the first client.
    #[arg(long, default_value_t = 0)]
    pub client_id_base: u32,
    /// Run only shard I of N (0-based) of a fleet of --clients: the clients whose position modulo N is I, with the ids and phases they have in the whole fleet; merge the shards' reports with `harness merge`.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Start the schedule (first due frame) at this CLOCK_REALTIME time in ns, the same for every shard (e.g. $(( $(date +%s) + 10 ))000000000).
    #[arg(long)]
    pub start_at: Option<u64>,
    /// Pacing threads [default: the CPUs the fleet may use].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pin the fleet to these CPUs.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Wait this long for the server to close after a client's last frame.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub drain_timeout: Duration,
    /// Send-lag p99 above which the fleet fell behind [default: 2 x window, at least 200us].
    #[arg(long, value_parser = parse_duration)]
    pub max_lag: Option<Duration>,
    /// Connection attempts per client in the whole run (retries after a refusal or a break wait 5 ms, doubling, jittered).
    #[arg(long, default_value_t = DEFAULT_CONNECT_TRIES, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_tries: u32,
    /// Kernel iterations per microsecond for cpu durations [default: calibrate now].
    #[arg(long)]
    pub calibration: Option<f64>,
    /// Load a target that is not on this host with the server's one-way latency figures (they need a clock the fleet and the server share, e.g. PTP, or one host; `--ack` needs no shared clock).
    #[arg(long)]
    pub allow_remote: bool,
    /// Ack mode: every frame asks the server for an ack once processed; the fleet records each frame's round trip (due time to ack read) on its own clock, which works across hosts, and checks every frame sent is acknowledged exactly once.
    #[arg(long)]
    pub ack: bool,
}

/// Why options do not make a fleet configuration.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The work spec does not parse or resolve.
    #[error("--work: {0}")]
    Work(String),
    /// A fleet of no clients.
    #[error("--clients must be at least 1")]
    NoClients,
    /// The arrival process does not fit the rate.
    #[error(transparent)]
    Arrival(#[from] ArrivalError),
    /// Churn in ack mode.
    #[error("--reconnect-every cannot be combined with --ack yet (a client would have to wait for the old connection's acks before it reconnects); drop one of them")]
    ChurnWithAcks,
    /// The target does not resolve.
    #[error("cannot resolve --target {0}: {1}")]
    Resolve(String, std::io::Error),
    /// The target resolves to nothing.
    #[error("--target {0} resolves to no address")]
    NoAddress(String),
    /// A remote target without a way to measure latency there.
    #[error("--target {0} is not on this host: latency is computed by the server from the fleet's CLOCK_MONOTONIC, which only means something on one host. Give --ack to measure round trips on the fleet's own clock, or --allow-remote if the two clocks are shared (and you may load that host)")]
    Remote(SocketAddr),
}

/// A duration as an argument that parses back to exactly the same value,
/// in the largest unit that holds it whole (`10s`, `150us`, `123457ns`).
fn exact(d: Duration) -> String {
    let ns = d.as_nanos();
    [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)]
        .into_iter()
        .find(|(_, unit)| ns.is_multiple_of(*unit))
        .map_or_else(
            || format!("{ns}ns"),
            |(name, unit)| format!("{}{name}", ns / unit),
        )
}

/// `harness fleet` as far as its options go: how defaults are filled in.
#[derive(clap::Parser, Debug)]
struct Command {
    #[command(flatten)]
    options: FleetOptions,
}

impl FleetOptions {
    /// The options a fleet against `target` has when nothing else is given
    /// (every default as the command line has it).
    pub fn for_target(target: &str) -> Self {
        <Command as clap::Parser>::parse_from(["fleet", "--target", target]).options
    }

    /// Options that resolve to `config` exactly: every value the parent
    /// derived (warm-up, pacing threads, lag limit, connect tries, the
    /// calibration of cpu work) is given, none is left for the child.
    pub fn from_config(config: &FleetConfig) -> Self {
        FleetOptions {
            target: config.target.to_string(),
            clients: config.clients,
            rate: config.rate,
            duration: config.duration,
            warmup: Some(config.warmup),
            count: config.count,
            batch_window: config.batch_window,
            arrival: config.arrival.clone(),
            seed: config.seed,
            reconnect_every: config.reconnect_every,
            work: config.work.spec.clone(),
            client_id_base: config.client_id_base,
            shard: config.shard,
            start_at: config.start_at_unix_ns,
            threads: Some(config.threads),
            cpus: config.cpus.as_deref().map(format_list),
            drain_timeout: config.drain_timeout,
            max_lag: Some(config.max_lag),
            connect_tries: config.connect_tries,
            calibration: config.work.iters_per_us,
            allow_remote: config.shared_clock && !config.target.ip().is_loopback(),
            ack: config.ack,
        }
    }

    /// The arguments (after `harness fleet`) that parse back into these
    /// options.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--target={}", self.target),
            format!("--clients={}", self.clients),
            format!("--rate={}", self.rate),
            format!("--duration={}", exact(self.duration)),
            format!("--batch-window={}", exact(self.batch_window)),
            format!("--work={}", self.work),
            format!("--client-id-base={}", self.client_id_base),
            format!("--drain-timeout={}", exact(self.drain_timeout)),
            format!("--connect-tries={}", self.connect_tries),
        ];
        let optional = [
            (self.arrival != Arrival::Constant).then(|| format!("--arrival={}", self.arrival)),
            (self.seed != 0).then(|| format!("--seed={}", self.seed)),
            self.warmup.map(|d| format!("--warmup={}", exact(d))),
            self.count.map(|n| format!("--count={n}")),
            self.reconnect_every
                .map(|n| format!("--reconnect-every={n}")),
            self.shard.map(|s| format!("--shard={s}")),
            self.start_at.map(|t| format!("--start-at={t}")),
            self.threads.map(|n| format!("--threads={n}")),
            self.cpus.as_ref().map(|c| format!("--cpus={c}")),
            self.max_lag.map(|d| format!("--max-lag={}", exact(d))),
            self.calibration.map(|c| format!("--calibration={c}")),
            self.allow_remote.then(|| "--allow-remote".to_string()),
            self.ack.then(|| "--ack".to_string()),
        ];
        args.extend(optional.into_iter().flatten());
        args
    }

    /// The configuration these options ask for, on a process pinned to
    /// `pinned` (if any) that may use `cpus` CPUs: the target resolved,
    /// the work resolved (calibrating the kernel now if cpu work needs it
    /// and no calibration was given), the defaults filled in.
    pub fn resolve(
        &self,
        pinned: Option<Vec<usize>>,
        cpus: usize,
    ) -> Result<FleetConfig, OptionsError> {
        let spec = WorkSpec::from_str(&self.work).map_err(|e| OptionsError::Work(e.to_string()))?;
        let calibration = match (self.calibration, spec.needs_calibration()) {
            (Some(c), _) => Some(c),
            (None, true) => Some(workloads::kernel::iters_per_us(3)),
            (None, false) => None,
        };
        let work = spec
            .resolve(calibration)
            .map_err(|e| OptionsError::Work(e.to_string()))?;
        if self.clients == 0 {
            return Err(OptionsError::NoClients);
        }
        self.arrival.check(self.rate.hz())?;
        if self.reconnect_every.is_some() && self.ack {
            return Err(OptionsError::ChurnWithAcks);
        }
        let target = self
            .target
            .to_socket_addrs()
            .map_err(|e| OptionsError::Resolve(self.target.clone(), e))?
            .next()
            .ok_or_else(|| OptionsError::NoAddress(self.target.clone()))?;
        let local = target.ip().is_loopback();
        if !local && !self.allow_remote && !self.ack {
            return Err(OptionsError::Remote(target));
        }
        let warmup = match (self.warmup, self.count) {
            (Some(w), _) => w,
            (None, Some(_)) => Duration::ZERO,
            (None, None) => DEFAULT_WARMUP,
        };
        Ok(FleetConfig {
            target,
            clients: self.clients,
            client_id_base: self.client_id_base,
            rate: self.rate,
            warmup,
            duration: self.duration,
            count: self.count,
            batch_window: self.batch_window,
            arrival: self.arrival.clone(),
            seed: self.seed,
            reconnect_every: self.reconnect_every,
            work,
            threads: self.threads.unwrap_or(cpus).max(1),
            cpus: pinned,
            drain_timeout: self.drain_timeout,
            max_lag: self
                .max_lag
                .unwrap_or_else(|| FleetConfig::default_max_lag(self.batch_window)),
            connect_tries: self.connect_tries,
            shard: self.shard,
            start_at_unix_ns: self.start_at,
            ack: self.ack,
            shared_clock: local || self.allow_remote,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[String]) -> FleetOptions {
        Command::try_parse_from(std::iter::once("fleet".to_string()).chain(args.iter().cloned()))
            .unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"))
            .options
    }

    fn config(work: &str, iters: Option<f64>) -> FleetConfig {
        let plan = WorkSpec::from_str(work)
            .and_then(|s| s.resolve(iters))
            .expect("a valid work spec");
        FleetConfig {
            target: "127.0.0.1:7000".parse().expect("an address"),
            clients: 24,
            client_id_base: 0,
            rate: Rate::Hz(10_000),
            warmup: Duration::from_millis(250),
            duration: Duration::from_micros(1_234_567),
            count: None,
            batch_window: Duration::from_micros(150),
            arrival: Arrival::Constant,
            seed: 0,
            reconnect_every: None,
            work: plan,
            threads: 1,
            cpus: Some(vec![1]),
            drain_timeout: Duration::from_millis(1500),
            max_lag: FleetConfig::default_max_lag(Duration::from_micros(150)),
            connect_tries: DEFAULT_CONNECT_TRIES,
            shard: None,
            start_at_unix_ns: None,
            ack: false,
            shared_clock: true,
        }
    }

    #[test]
    fn a_configuration_crosses_the_process_boundary_unchanged() {
        let cell = config("cpu:20us", Some(812.512_345_678_9));
        let mut shard = config("io:1ms,every=20", Some(3.25));
        shard.shard = Some(Shard { index: 2, count: 3 });
        shard.start_at_unix_ns = Some(1_800_000_000_000_000_000);
        shard.threads = 4;
        shard.cpus = None;
        shard.ack = true;
        shard.rate = Rate::Max;
        shard.count = Some(5_000);
        shard.client_id_base = 1000;
        shard.connect_tries = 9;
        let mut cell = cell;
        cell.arrival = "burst:on=50ms,off=450ms".parse().expect("an arrival");
        cell.reconnect_every = Some(250);
        let mut uncalibrated = config("none", None);
        uncalibrated.batch_window = Duration::ZERO;
        uncalibrated.max_lag = Duration::from_nanos(123_457);
        for c in [cell, shard, uncalibrated] {
            let options = FleetOptions::from_config(&c);
            let back = parse(&options.to_args());
            assert_eq!(back, options, "argv round trip");
            let resolved = back.resolve(c.cpus.clone(), 99).expect("resolves");
            assert_eq!(resolved, c, "the child's configuration is the parent's");
        }
    }

    #[test]
    fn the_child_fills_in_only_what_was_left_out() {
        let cases: &[(&[&str], Duration, usize, Duration)] = &[
            // (arguments, warm-up, threads on 3 CPUs, lag limit)
            (&[], DEFAULT_WARMUP, 3, Duration::from_millis(2)),
            (&["--count=10"], Duration::ZERO, 3, Duration::from_millis(2)),
            (
                &["--batch-window=0"],
                DEFAULT_WARMUP,
                3,
                Duration::from_micros(200),
            ),
            (
                &["--threads=1", "--warmup=1s"],
                Duration::from_secs(1),
                1,
                Duration::from_millis(2),
            ),
            (
                &["--max-lag=50us"],
                DEFAULT_WARMUP,
                3,
                Duration::from_micros(50),
            ),
        ];
        for (extra, warmup, threads, lag) in cases {
            let mut args = vec!["--target=127.0.0.1:9".to_string()];
            args.extend(extra.iter().map(|s| s.to_string()));
            let c = parse(&args).resolve(None, 3).expect("resolves");
            assert_eq!(
                (c.warmup, c.threads, c.max_lag),
                (*warmup, *threads, *lag),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn options_that_make_no_fleet_say_why() {
        let bad: &[(&[&str], &str)] = &[
            (&["--target=127.0.0.1:9", "--clients=0"], "at least 1"),
            (&["--target=127.0.0.1:9", "--work=cpu:banana"], "--work"),
            (&["--target=192.0.2.1:9"], "--allow-remote"),
        ];
        for (args, says) in bad {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let e = parse(&args)
                .resolve(None, 1)
                .expect_err("refused")
                .to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
        let remote = parse(&["--target=192.0.2.1:9".to_string(), "--ack".to_string()]);
        let c = remote
            .resolve(None, 1)
            .expect("ack mode measures on its own clock");
        assert!(!c.shared_clock);
    }
}
