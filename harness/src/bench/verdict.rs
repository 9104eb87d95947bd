//! Reconciliation of what the fleet sent with what the server received,
//! the cell's verdict, and the figures derived from both reports.

use std::collections::HashMap;

use models::ServerReport;
use serde::{Deserialize, Serialize};

use super::sample::Samples;
use crate::fleet::client::ClientState;
use crate::fleet::report::{FleetReport, FleetStatus};

/// A server still this far behind when the load stopped was not keeping up.
pub const BACKLOG_LIMIT_S: f64 = 0.1;

/// Per-client comparison of sent and received frames.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Frames sent by drained or failed clients that the server never
    /// counted (a drained client's frames were all read; a failed client's
    /// connection broke).
    pub lost: u64,
    /// Frames the server counted beyond what drained clients sent.
    pub excess: u64,
    /// Frames of undrained clients the server had not read when it stopped.
    pub unread: u64,
    /// Clients whose counts differ (id, sent, received, measured sent, measured received).
    pub mismatched: Vec<ClientMismatch>,
}

/// One client whose counts differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMismatch {
    /// Client id.
    pub id: u32,
    /// Whether the client was drained.
    pub drained: bool,
    /// Frames sent (warm-up included).
    pub sent: u64,
    /// Frames received (warm-up included).
    pub received: u64,
    /// Measured frames sent.
    pub sent_measured: u64,
    /// Measured frames received.
    pub received_measured: u64,
}

/// Compares every client of the fleet with the server's counts.
pub fn reconcile(fleet: &FleetReport, server: Option<&ServerReport>) -> Reconciliation {
    let received: HashMap<u32, (u64, u64)> = server
        .map(|s| {
            s.clients
                .iter()
                .map(|c| (c.id, (c.received, c.measured)))
                .collect()
        })
        .unwrap_or_default();
    let mut r = Reconciliation::default();
    for c in &fleet.clients {
        let sent = c.sent.measured + c.sent.warmup;
        let (got, got_measured) = received.get(&c.id).copied().unwrap_or((0, 0));
        let drained = c.state == ClientState::Drained;
        let settled = drained || c.state == ClientState::Failed;
        let same = got == sent && got_measured == c.sent.measured;
        if !same {
            r.mismatched.push(ClientMismatch {
                id: c.id,
                drained,
                sent,
                received: got,
                sent_measured: c.sent.measured,
                received_measured: got_measured,
            });
        }
        if settled {
            r.lost += sent.saturating_sub(got);
            r.excess += got.saturating_sub(sent);
        } else {
            r.unread += sent.saturating_sub(got);
        }
    }
    r
}

/// The cell's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every check passed: the numbers can be trusted.
    Valid,
    /// A real result, but the server could not keep up with the load.
    Overloaded,
    /// Loss, errors, a crash or a late generator: do not use the numbers.
    Invalid,
}

/// Status plus every reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Overall standing.
    pub status: Status,
    /// Why, one entry per finding.
    pub reasons: Vec<String>,
}

/// What went wrong while running the cell, beyond the reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunFaults {
    /// The server exited before it was asked to.
    pub server_crashed: bool,
    /// The server did not exit within its grace period after SIGTERM.
    pub server_hung: bool,
    /// The fleet exceeded its time limit and was killed.
    pub fleet_timeout: bool,
    /// Anything else, verbatim.
    pub other: Vec<String>,
}

/// Decides the verdict from both reports and the run's faults.
pub fn verdict(
    fleet: Option<&FleetReport>,
    server: Option<&ServerReport>,
    rec: &Reconciliation,
    faults: &RunFaults,
) -> Verdict {
    let mut invalid = Vec::new();
    let mut overloaded = Vec::new();
    if faults.server_crashed {
        invalid.push("server crashed".to_string());
    }
    if faults.server_hung {
        invalid.push("server did not exit after SIGTERM".to_string());
    }
    if faults.fleet_timeout {
        invalid.push("timeout: the fleet did not finish in time".to_string());
    }
    invalid.extend(faults.other.iter().cloned());
    if server.is_none() {
        invalid.push("no server report".to_string());
    }
    match fleet {
        None => invalid.push("no fleet report".to_string()),
        Some(f) => {
            if rec.lost > 0 {
                invalid.push(format!("loss {}", rec.lost));
            }
            if rec.excess > 0 {
                invalid.push(format!(
                    "server counted {} frames more than were sent",
                    rec.excess
                ));
            }
            let backlog = f.slowest_drain_s > BACKLOG_LIMIT_S;
            if backlog && f.undrained.is_empty() {
                overloaded.push(format!(
                    "backlog: the server needed {:.0} ms after the load stopped to read everything",
                    f.slowest_drain_s * 1e3
                ));
            }
            let server_behind = backlog || !f.undrained.is_empty();
            match f.verdict.status {
                FleetStatus::Ok => {}
                // Kernel-side queueing of an overloaded server can slow the
                // sender without any would-block: the server is the cause.
                FleetStatus::GeneratorSaturated if server_behind => {
                    overloaded.push("fleet fell behind while the server was overloaded".to_string())
                }
                FleetStatus::GeneratorSaturated => invalid.push("generator_saturated".to_string()),
                FleetStatus::ServerBackpressure => {
                    overloaded.push("server_backpressure".to_string())
                }
            }
            if !f.failed.is_empty() {
                invalid.push(format!("{} clients lost their connection", f.failed.len()));
            }
            if f.reconnects > 0 {
                invalid.push(format!("{} reconnects", f.reconnects));
            }
            if !f.undrained.is_empty() {
                overloaded.push(format!(
                    "{} clients undrained, {} frames unread",
                    f.undrained.len(),
                    rec.unread
                ));
            }
        }
    }
    if let Some(s) = server {
        let errors = s.errors.total();
        if errors > 0 {
            invalid.push(format!("protocol errors {errors}"));
        }
    }
    let status = if !invalid.is_empty() {
        Status::Invalid
    } else if !overloaded.is_empty() {
        Status::Overloaded
    } else {
        Status::Valid
    };
    invalid.extend(overloaded);
    Verdict {
        status,
        reasons: invalid,
    }
}

/// Figures derived from the reports and samples.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Derived {
    /// Scheduled measured packets per second.
    pub offered_pps: f64,
    /// Measured packets the server processed per second, over the window
    /// plus the time it needed to work off a backlog after the load stopped.
    pub achieved_pps: f64,
    /// Latency percentiles, ns (server's merged histogram).
    pub p50_ns: u64,
    /// 90th.
    pub p90_ns: u64,
    /// 99th.
    pub p99_ns: u64,
    /// 99.9th.
    pub p999_ns: u64,
    /// Largest.
    pub max_ns: u64,
    /// Mean server CPU over the sampled run, percent of one CPU.
    pub server_cpu_pct: f64,
    /// Server CPU time per processed packet, microseconds.
    pub cpu_us_per_packet: f64,
    /// Peak and mean server RSS, KiB.
    pub peak_rss_kib: u64,
    /// Mean RSS.
    pub mean_rss_kib: f64,
    /// Peak server PSS, KiB.
    pub peak_pss_kib: u64,
    /// Mean PSS.
    pub mean_pss_kib: f64,
    /// Mean fleet CPU, percent of one CPU.
    pub fleet_cpu_pct: f64,
    /// Fleet send lag p99, ns.
    pub send_lag_p99_ns: u64,
}

/// Mean CPU % of a series (the first sample has no interval before it).
fn mean_cpu_pct(series: &[super::sample::Sample]) -> f64 {
    let usable = series.get(1..).unwrap_or_default();
    if usable.is_empty() {
        return 0.0;
    }
    usable
        .iter()
        .map(|s| s.cpu_user_pct + s.cpu_sys_pct)
        .sum::<f64>()
        / usable.len() as f64
}

/// Computes the derived figures.
pub fn derive(
    fleet: Option<&FleetReport>,
    server: Option<&ServerReport>,
    samples: &Samples,
) -> Derived {
    let mut d = Derived::default();
    let mean = |xs: &mut dyn Iterator<Item = f64>| {
        let (n, sum) = xs.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    };
    if let Some(f) = fleet {
        d.offered_pps = f.offered_rate.unwrap_or(f.achieved_rate);
        d.send_lag_p99_ns = f.send_lag_ns.p99;
        d.fleet_cpu_pct = mean_cpu_pct(&samples.fleet);
        if let Some(s) = server {
            // A backlog is worked off after the window: count that time too.
            let backlog_s = if f.slowest_drain_s > BACKLOG_LIMIT_S {
                f.slowest_drain_s
            } else {
                0.0
            };
            let span = f.measured_window_s + backlog_s;
            if span > 0.0 {
                d.achieved_pps = s.packets.measured as f64 / span;
            }
        }
    }
    if let Some(s) = server {
        let l = &s.latency_ns;
        (d.p50_ns, d.p90_ns, d.p99_ns, d.p999_ns, d.max_ns) = (l.p50, l.p90, l.p99, l.p999, l.max);
        let packets = s.packets.measured + s.packets.warmup;
        if packets > 0 {
            d.cpu_us_per_packet = (s.cpu.user_s + s.cpu.sys_s) * 1e6 / packets as f64;
        }
    }
    d.server_cpu_pct = mean_cpu_pct(&samples.server);
    d.peak_rss_kib = samples.server.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    d.mean_rss_kib = mean(&mut samples.server.iter().map(|s| s.rss_kib as f64));
    d.peak_pss_kib = samples.server.iter().map(|s| s.pss_kib).max().unwrap_or(0);
    d.mean_pss_kib = mean(&mut samples.server.iter().map(|s| s.pss_kib as f64));
    d
}
