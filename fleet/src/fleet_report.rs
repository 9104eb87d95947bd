//! The fleet's report: what each client sent, how late the generator was,
//! and its verdict on whether it kept its schedule.

use common::{CpuTimes, LatencySummary};
use serde::{Deserialize, Serialize};

use crate::acks::AckCounts;
use crate::arrival_check::{check, ArrivalCheck};
use crate::client::{Client, ClientState};
use crate::config::FleetConfig;
use crate::schedule::Schedule;
use crate::totals::ThreadTotals;

/// Frames written, split at the warm-up boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentCounts {
    /// Measured frames.
    pub measured: u64,
    /// Warm-up frames.
    pub warmup: u64,
}

/// One client's line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSent {
    /// Client id.
    pub id: u32,
    /// Frames fully written.
    pub sent: SentCounts,
    /// Final state.
    pub state: ClientState,
    /// Frames of its schedule it never wrote (it fell behind and gave up).
    #[serde(default)]
    pub unsent: u64,
    /// Reconnects after a broken connection.
    pub reconnects: u32,
    /// Planned reconnects (`--reconnect-every`), not breaks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub planned_reconnects: u32,
    /// Connections started (at most `connect_tries`).
    #[serde(default)]
    pub connect_tries: u32,
    /// Connections the server closed before the first frame.
    #[serde(default)]
    pub refusals: u32,
    /// Connections that came up and were written to.
    #[serde(default)]
    pub established: u32,
    /// Writes that would block.
    pub would_block_writes: u64,
    /// Ack mode: this client's acks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<AckCounts>,
}

/// Did the generator keep its schedule? Decided by
/// [`crate::on_schedule::fleet_verdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetStatus {
    /// Kept the schedule.
    Ok,
    /// Fell behind with no push-back from the server: the load generator is
    /// the bottleneck, so the result says nothing about the server.
    GeneratorSaturated,
    /// Fell behind because the server stopped reading.
    ServerBackpressure,
}

/// Verdict with every reason found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetVerdict {
    /// Overall status.
    pub status: FleetStatus,
    /// Human-readable reasons (empty when all is well).
    pub reasons: Vec<String>,
}

/// The fleet's report (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetReport {
    /// The configuration run.
    pub config: FleetConfig,
    /// Frames written in all.
    pub sent: SentCounts,
    /// Per client.
    pub clients: Vec<ClientSent>,
    /// Offered measured frames per second (all clients, per the schedule).
    pub offered_rate: Option<f64>,
    /// Measured frames written per second over the measured window.
    pub achieved_rate: f64,
    /// Measured window, seconds.
    pub measured_window_s: f64,
    /// CLOCK_MONOTONIC ns at which the measured window starts (the first
    /// measured frame's due time at the earliest).
    pub window_start_ns: u64,
    /// CLOCK_MONOTONIC ns at which it ends: the load stops.
    pub window_end_ns: u64,
    /// Longest time from the end of the schedule until a client's
    /// connection was closed by the server (or the drain deadline): how far
    /// behind the server was when the load stopped.
    #[serde(default)]
    pub slowest_drain_s: f64,
    /// With `--count`: seconds from the first due frame until the last
    /// client finished.
    pub makespan_s: Option<f64>,
    /// Write time minus due time of the oldest frame in each write of the
    /// measured window (warm-up writes absorb start-up effects).
    pub send_lag_ns: LatencySummary,
    /// How late the pacing threads woke for each scheduled write: the
    /// generator's own precision, whatever the batch window.
    #[serde(default)]
    pub pacing_lag_ns: LatencySummary,
    /// Writes that hit would-block.
    pub would_block_writes: u64,
    /// Scheduled frames never written, all clients.
    #[serde(default)]
    pub unsent: u64,
    /// Reconnects after broken connections.
    pub reconnects: u64,
    /// Planned reconnects (`--reconnect-every`), all clients.
    #[serde(default)]
    pub planned_reconnects: u64,
    /// Failed connect attempts.
    pub connect_failures: u64,
    /// Connections the server closed before their first frame, all clients.
    #[serde(default)]
    pub refusals: u64,
    /// Ids the server refused on every try: they sent nothing and are not
    /// counted as unsent.
    #[serde(default)]
    pub refused: Vec<u32>,
    /// Ids the server closed after reading everything.
    pub drained: Vec<u32>,
    /// Ids still unread at the drain deadline.
    pub undrained: Vec<u32>,
    /// Ids whose connection failed for good.
    pub failed: Vec<u32>,
    /// The test of the gaps sent against the arrival process asked for
    /// (random processes only).
    #[serde(default)]
    pub arrivals: Option<ArrivalCheck>,
    /// Verdict (from [`crate::on_schedule::fleet_verdict`]).
    pub verdict: FleetVerdict,
    /// Fleet process CPU.
    pub cpu: CpuTimes,
    /// Ack mode: acks of every client together, and the round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<AckReport>,
}

/// The fleet's acks (ack mode).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AckReport {
    /// Summed over the clients.
    #[serde(flatten)]
    pub counts: AckCounts,
    /// Clients whose frames were not all acknowledged exactly once.
    pub inexact_clients: Vec<u32>,
    /// Due time to ack read, measured frames, on the fleet's own clock
    /// (coordinated omission corrected). Empty when the rate is `max`.
    pub round_trip_ns: LatencySummary,
}

impl AckReport {
    /// The clients' acks, with the round trip recorded by the fleet.
    pub fn of(clients: &[ClientSent], round_trip_ns: LatencySummary) -> Option<AckReport> {
        let mut report = AckReport {
            round_trip_ns,
            ..AckReport::default()
        };
        let mut any = false;
        for c in clients {
            // A client the server refused on every try owes no acks.
            if let (Some(a), false) = (&c.acks, c.state == ClientState::Refused) {
                any = true;
                report.counts.merge(a);
                if !a.exact() {
                    report.inexact_clients.push(c.id);
                }
            }
        }
        any.then_some(report)
    }
}

impl ClientSent {
    /// The line of finished client `c` of `schedule`.
    fn of(c: &Client, schedule: &Schedule) -> Self {
        let unsent = match c.state {
            ClientState::Refused => 0,
            _ => schedule
                .total(c.index)
                .map_or(0, |t| t.saturating_sub(c.sent())),
        };
        let attempts = c.attempts();
        ClientSent {
            id: c.id,
            sent: SentCounts {
                measured: c.sent_measured,
                warmup: c.sent_warmup,
            },
            state: c.state,
            unsent,
            reconnects: c.reconnects(),
            planned_reconnects: c.planned_reconnects(),
            connect_tries: attempts.tries,
            refusals: attempts.refusals,
            established: attempts.established,
            would_block_writes: c.would_block_writes,
            acks: c.acks.as_ref().map(|t| t.counts),
        }
    }
}

impl FleetReport {
    /// Builds the report once every client is finished; its verdict is
    /// [`crate::on_schedule::fleet_verdict`]'s, set by the caller.
    pub fn new(
        config: &FleetConfig,
        schedule: &Schedule,
        clients: &[Client],
        totals: &ThreadTotals,
    ) -> Self {
        let mut sent = SentCounts::default();
        let (mut drained, mut undrained, mut failed, mut refused) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut lines = Vec::with_capacity(clients.len());
        for c in clients {
            sent.measured += c.sent_measured;
            sent.warmup += c.sent_warmup;
            match c.state {
                ClientState::Drained => drained.push(c.id),
                ClientState::Failed => failed.push(c.id),
                ClientState::Refused => refused.push(c.id),
                _ => undrained.push(c.id),
            }
            lines.push(ClientSent::of(c, schedule));
        }
        let finished = clients.iter().map(|c| c.finished_ns).max().unwrap_or(0);
        let slowest_drain_s = clients
            .iter()
            .map(|c| {
                c.finished_ns
                    .saturating_sub(c.last_send_ns.max(schedule.warm_end))
            })
            .max()
            .unwrap_or(0) as f64
            / 1e9;
        let last_send = clients.iter().map(|c| c.last_send_ns).max().unwrap_or(0);
        let window_ns = if config.count.is_none() {
            schedule.end - schedule.warm_end
        } else {
            last_send.saturating_sub(schedule.warm_end)
        };
        let measured_window_s = window_ns as f64 / 1e9;
        let would_block_writes = clients.iter().map(|c| c.would_block_writes).sum();
        let reconnects = lines.iter().map(|l| l.reconnects as u64).sum();
        let planned_reconnects = lines.iter().map(|l| l.planned_reconnects as u64).sum();
        let connect_failures = clients
            .iter()
            .map(|c| c.attempts().connect_failures as u64)
            .sum();
        let refusals = clients.iter().map(|c| c.attempts().refusals as u64).sum();
        let send_lag_ns = LatencySummary::of(&totals.lag);
        let unsent = lines.iter().map(|l| l.unsent).sum();
        let offered_rate = config.rate.hz().map(|hz| hz as f64 * clients.len() as f64);
        let mut report = FleetReport {
            config: config.clone(),
            sent,
            clients: lines,
            offered_rate,
            achieved_rate: per_second(sent.measured, measured_window_s),
            measured_window_s,
            window_start_ns: schedule.warm_end,
            window_end_ns: schedule.warm_end + window_ns,
            slowest_drain_s,
            makespan_s: config
                .count
                .map(|_| finished.saturating_sub(schedule.t0) as f64 / 1e9),
            send_lag_ns,
            pacing_lag_ns: LatencySummary::of(&totals.pacing),
            would_block_writes,
            unsent,
            reconnects,
            planned_reconnects,
            connect_failures,
            refusals,
            refused,
            drained,
            undrained,
            failed,
            arrivals: check_arrivals(config, totals),
            verdict: FleetVerdict {
                status: FleetStatus::Ok,
                reasons: Vec::new(),
            },
            cpu: process_cpu(),
            acks: None,
        };
        report.acks = AckReport::of(&report.clients, LatencySummary::of(&totals.round_trip));
        report
    }
}

/// The test of the gaps sent, when the rate is paced and the arrivals
/// random.
fn check_arrivals(config: &FleetConfig, totals: &ThreadTotals) -> Option<ArrivalCheck> {
    check(&config.arrival, config.rate.hz()?, &totals.gaps)
}

/// `frames` over `window_s` seconds (0 for an empty window).
pub fn per_second(frames: u64, window_s: f64) -> f64 {
    if window_s > 0.0 {
        frames as f64 / window_s
    } else {
        0.0
    }
}

/// CPU time of this process so far.
pub fn process_cpu() -> CpuTimes {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => CpuTimes {
            user_s: tv_secs(u.user_time()),
            sys_s: tv_secs(u.system_time()),
            voluntary_ctxt: u.voluntary_context_switches().max(0) as u64,
            involuntary_ctxt: u.involuntary_context_switches().max(0) as u64,
        },
        Err(_) => CpuTimes::default(),
    }
}

/// A `TimeVal` in seconds.
pub fn tv_secs(t: nix::sys::time::TimeVal) -> f64 {
    t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
