//! What one fleet run is asked to do: [`FleetConfig`] (embedded in its
//! report), its per-client [`Rate`] and the [`Shard`] of a logical fleet a
//! process runs. [`crate::options`] carries it between processes.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workloads::WorkPlan;

use crate::arrival::Arrival;

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

impl Rate {
    /// Frames per second per client, when paced.
    pub fn hz(self) -> Option<u64> {
        match self {
            Rate::Hz(hz) => Some(hz),
            Rate::Max => None,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// How each client's frames arrive in time (`--arrival`).
    #[serde(default)]
    pub arrival: Arrival,
    /// Seed of random arrivals (each client's stream is keyed by it and
    /// the client's id).
    #[serde(default)]
    pub seed: u64,
    /// Connection churn: each client closes its connection after this many
    /// frames and goes on on a fresh one (`--reconnect-every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_every: Option<u64>,
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
