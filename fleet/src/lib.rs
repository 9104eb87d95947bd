//! The client fleet: N open-loop clients, each sending 32-byte frames on a
//! fixed schedule, paced by a few dedicated sleep-then-spin threads that
//! multiplex non-blocking sockets; one fleet may run as shards that
//! [`merge`] adds up exactly. See [`schedule`] for the timing rules,
//! [`client`] and [`link`] for one client, [`fleet_report`] (with
//! [`totals`]) for the accounting and [`on_schedule`] for whether the generator kept its schedule; in ack
//! mode [`acks`] checks every frame is acknowledged exactly once and
//! [`watch`] reads the acks as they come. A library of its own: it links no
//! server model (`harness fleet` is its command).

pub mod acks;
pub mod client;
pub mod fleet_report;
pub mod link;
pub mod merge;
pub mod on_schedule;
pub mod schedule;
pub mod totals;
pub mod watch;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workloads::clock::monotonic_ns;
use workloads::WorkPlan;

use client::{Client, Step};
use fleet_report::FleetReport;
use schedule::Schedule;
use totals::ThreadTotals;
use watch::AckWatch;

/// Sleep until this close to a deadline, then spin.
pub const SPIN_NS: u64 = 100_000;
/// Time between the last client's first connect and the first due frame
/// (a connect plus the refusal check fit in it).
const START_DELAY_NS: u64 = 20_000_000;
/// First connects are spaced this far apart (at most [`CONNECT_SPREAD_NS`]
/// in all), as one-at-a-time connects would be: a burst of simultaneous
/// connects lets one `prefork` child accept them all.
const CONNECT_SPACING_NS: u64 = 50_000;
const CONNECT_SPREAD_NS: u64 = 10_000_000;
/// Connection attempts per client per run unless configured.
pub const DEFAULT_CONNECT_TRIES: u32 = 5;

/// Per-client send rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rate {
    /// Frames per second per client, on a fixed schedule.
    Hz(u64),
    /// As fast as the sockets accept (saturation).
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s
            .trim_end_matches("hz")
            .trim_end_matches("Hz")
            .parse::<u64>()
        {
            Ok(hz) if hz > 0 => Ok(Rate::Hz(hz)),
            _ => Err(format!(
                "`{s}` is not a rate: give frames per second per client (e.g. 10000) or `max`"
            )),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Hz(hz) => write!(f, "{hz}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// One of `count` equal parts of a logical fleet: the clients whose index
/// modulo `count` is `index` (0-based), so every shard spans all phases and
/// the shards together are exactly the one-process fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, 0-based.
    pub index: u32,
    /// Shards in all.
    pub count: u32,
}

impl Shard {
    /// Indices (0-based positions in the logical fleet) of this shard's
    /// clients among `clients`.
    pub fn indices(self, clients: u32) -> impl Iterator<Item = u32> {
        (self.index..clients).step_by(self.count.max(1) as usize)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: give I/N with 0 <= I < N (e.g. 0/3)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<u32>().map_err(|_| bad())?,
            n.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Everything one fleet run needs; embedded in its report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetConfig {
    /// Server address.
    pub target: SocketAddr,
    /// Number of clients of the logical fleet (all shards together).
    pub clients: u32,
    /// First client id.
    pub client_id_base: u32,
    /// Per-client rate.
    pub rate: Rate,
    /// Warm-up before the measured window.
    #[serde(with = "common::duration_ms")]
    pub warmup: Duration,
    /// Measured window (ignored with `count`).
    #[serde(with = "common::duration_ms")]
    pub duration: Duration,
    /// Exactly this many frames per client instead of a duration.
    pub count: Option<u64>,
    /// Write every frame due since the last write once per window; 0 = each
    /// frame when due.
    #[serde(with = "common::duration_ms")]
    pub batch_window: Duration,
    /// Work each frame asks for.
    pub work: WorkPlan,
    /// Pacing threads.
    pub threads: usize,
    /// CPUs the fleet was pinned to, if any.
    pub cpus: Option<Vec<usize>>,
    /// How long a client waits for the server to close after its last frame.
    #[serde(with = "common::duration_ms")]
    pub drain_timeout: Duration,
    /// Send-lag p99 above this means the fleet fell behind its schedule.
    #[serde(with = "common::duration_ms")]
    pub max_lag: Duration,
    /// Connection attempts per client in the whole run (first connect,
    /// retries after a refusal and reconnects after a break), spaced by a
    /// jittered exponential backoff.
    #[serde(default = "default_connect_tries")]
    pub connect_tries: u32,
    /// The part of the logical fleet this process runs (all when `None`).
    #[serde(default)]
    pub shard: Option<Shard>,
    /// CLOCK_REALTIME ns at which the schedule starts (its first due frame),
    /// shared by every shard; `None`: shortly after this process starts.
    #[serde(default)]
    pub start_at_unix_ns: Option<u64>,
    /// Ack mode: every frame asks to be acknowledged once processed, and
    /// the fleet measures the round trip on its own clock.
    #[serde(default)]
    pub ack: bool,
    /// The fleet and the server share a CLOCK_MONOTONIC (one host, or the
    /// user said so with `--allow-remote`): only then do the server's
    /// one-way latencies, computed from the fleet's due times, mean
    /// anything.
    #[serde(default = "shared_clock_default")]
    pub shared_clock: bool,
}

fn shared_clock_default() -> bool {
    true // reports from before the field: every fleet ran beside its server
}

fn default_connect_tries() -> u32 {
    DEFAULT_CONNECT_TRIES
}

impl FleetConfig {
    /// Positions in the logical fleet of the clients this process runs.
    pub fn indices(&self) -> Vec<u32> {
        match self.shard {
            Some(s) => s.indices(self.clients).collect(),
            None => (0..self.clients).collect(),
        }
    }

    /// The default lag limit: twice the batch window, at least 200 us.
    pub fn default_max_lag(batch_window: Duration) -> Duration {
        (batch_window * 2).max(Duration::from_micros(200))
    }
}

/// Why a fleet could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// No client could connect.
    #[error("cannot connect to {0}: {1}; is a server listening there?")]
    Connect(SocketAddr, std::io::Error),
    /// A pacing thread panicked.
    #[error("a pacing thread failed")]
    Thread,
    /// Ack mode could not set up its watch.
    #[error("cannot watch the connections for acks: {0}")]
    Watch(std::io::Error),
    /// The shared start time has passed or is implausibly far away.
    #[error("--start-at is {0:.1} s from now: give a CLOCK_REALTIME time in ns a few seconds ahead (e.g. $(( $(date +%s) + 10 ))000000000), the same for every shard")]
    StartAt(f64),
    /// Sequence numbers are u32 on the wire.
    #[error("the schedule has {0} frames for one client, more than the 2^32 sequence numbers protocol v2 allows; shorten --duration or --count, or lower --rate")]
    ScheduleTooLong(u64),
}

/// Runs the fleet to completion (schedule, then drain) and reports.
pub fn run(config: &FleetConfig) -> Result<FleetReport, FleetError> {
    if let Some(n) = Schedule::new(config, 0)
        .longest()
        .filter(|&n| n > schedule::MAX_FRAMES_PER_CLIENT)
    {
        return Err(FleetError::ScheduleTooLong(n));
    }
    let clients: Vec<Client> = config
        .indices()
        .into_iter()
        .map(|i| {
            let id = config.client_id_base.wrapping_add(i);
            Client::new(id, i, config.target, config.connect_tries, config.ack)
        })
        .collect();
    // Sleeps may overshoot by the timer slack (50 us by default); pacing
    // threads inherit this setting. Best effort: unprivileged and harmless.
    let _ = nix::sys::prctl::set_timerslack(1);
    let start = monotonic_ns();
    let n = clients.len().max(1) as u64;
    let spacing = CONNECT_SPACING_NS.min(CONNECT_SPREAD_NS / n);
    let t0 = match config.start_at_unix_ns {
        Some(at) => shared_start(at, start)?,
        None => start + spacing * n + START_DELAY_NS,
    };
    let schedule = Schedule::new(config, t0);
    let threads = config.threads.clamp(1, clients.len().max(1));
    let mut groups: Vec<Vec<Client>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, c) in clients.into_iter().enumerate() {
        groups[i % threads].push(c);
    }
    let handles: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let schedule = schedule.clone();
            let config = config.clone();
            thread::spawn(move || pace(group, &schedule, &config, start, spacing))
        })
        .collect();
    let mut totals = ThreadTotals::default();
    let mut done = Vec::new();
    for h in handles {
        let (clients, t) = h.join().map_err(|_| FleetError::Thread)??;
        totals.merge(&t);
        done.extend(clients);
    }
    // A fleet none of whose clients reached a server is an error, not a
    // report (a server that refused them is a finding and is reported).
    if done
        .iter()
        .all(|c| c.attempts().established == 0 && c.attempts().refusals == 0)
    {
        let e = done
            .iter_mut()
            .find_map(|c| c.take_connect_error())
            .unwrap_or_else(|| std::io::Error::other("no clients"));
        return Err(FleetError::Connect(config.target, e));
    }
    done.sort_by_key(|c| c.index);
    let mut report = FleetReport::new(config, &schedule, &done, &totals);
    report.verdict = on_schedule::fleet_verdict(&report);
    Ok(report)
}

/// One pacing thread: connects each client at `start` plus its index times
/// `spacing`, then wakes it at its next write time, sleeping then spinning
/// for microsecond precision, until every client is done.
fn pace(
    mut clients: Vec<Client>,
    schedule: &Schedule,
    config: &FleetConfig,
    start: u64,
    spacing: u64,
) -> Result<(Vec<Client>, ThreadTotals), FleetError> {
    let mut totals = ThreadTotals::default();
    let mut watch = match config.ack {
        true => Some(AckWatch::new(clients.len()).map_err(FleetError::Watch)?),
        false => None,
    };
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = clients
        .iter()
        .enumerate()
        .map(|(i, _)| Reverse((start + spacing * i as u64, i)))
        .collect();
    while let Some(Reverse((wake, i))) = heap.pop() {
        match &mut watch {
            Some(w) => w.wait_until(wake, &mut clients, schedule, &mut totals),
            None => wait_until(wake),
        }
        let now = monotonic_ns();
        if clients[i].state == client::ClientState::Sending && wake >= schedule.warm_end {
            totals.record_pacing(now - wake);
        }
        match clients[i].step(now, schedule, config, &mut totals) {
            Step::WakeAt(t) => heap.push(Reverse((t, i))),
            Step::Done => {}
        }
        if let Some(w) = &mut watch {
            w.watch(i, &mut clients[i]);
        }
    }
    Ok((clients, totals))
}

/// The CLOCK_REALTIME instant `after` from now, in ns: a `--start-at` for
/// shards (0 if the clock is before 1970).
pub fn unix_ns_after(after: Duration) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d + after).as_nanos() as u64)
}

/// The CLOCK_MONOTONIC time of the CLOCK_REALTIME instant `at` (ns), which
/// must be ahead of `now` (monotonic) by at least the time to connect and
/// at most an hour.
fn shared_start(at: u64, now: u64) -> Result<u64, FleetError> {
    let ahead = at as i128 - unix_ns_after(Duration::ZERO) as i128;
    if ahead < START_DELAY_NS as i128 || ahead > 3_600_000_000_000 {
        return Err(FleetError::StartAt(ahead as f64 / 1e9));
    }
    Ok(now + ahead as u64)
}

fn wait_until(t: u64) {
    loop {
        let now = monotonic_ns();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > SPIN_NS {
            thread::sleep(Duration::from_nanos(left - SPIN_NS));
        } else {
            std::hint::spin_loop();
        }
    }
}
