//! The fleet's own verdict: did the generator keep its schedule? It fell
//! behind if its send lag p99 exceeded its limit (paced runs) or scheduled
//! frames were never written; that is the server's doing when writes hit
//! would-block, else the generator's. The cell's verdict (the harness's)
//! builds on it.

use common::units::fmt_ns;

use crate::config::Rate;
use crate::fleet_report::{FleetReport, FleetStatus, FleetVerdict};

/// The fleet's verdict from its own counters, with every reason found.
pub fn fleet_verdict(f: &FleetReport) -> FleetVerdict {
    let mut reasons = Vec::new();
    let max_lag = f.config.max_lag.as_nanos() as u64;
    let late = is_late(f);
    let status = fleet_status(f, 0);
    if late {
        reasons.push(format!(
            "send lag p99 {} exceeds the {} limit",
            fmt_ns(f.send_lag_ns.p99),
            fmt_ns(max_lag)
        ));
    }
    if f.unsent > 0 {
        reasons.push(format!("{} scheduled frames never written", f.unsent));
    }
    if f.would_block_writes > 0 {
        reasons.push(format!("{} writes hit would-block", f.would_block_writes));
    }
    if !f.undrained.is_empty() {
        reasons.push(format!(
            "{} clients undrained at the deadline",
            f.undrained.len()
        ));
    }
    if !f.failed.is_empty() {
        reasons.push(format!(
            "{} clients lost their connection for good",
            f.failed.len()
        ));
    }
    if f.reconnects > 0 {
        reasons.push(format!("{} reconnects", f.reconnects));
    }
    if f.refusals > 0 {
        reasons.push(format!(
            "{} clients refused by the server ({} connections closed before their first frame)",
            f.refused.len(),
            f.refusals
        ));
    }
    if let Some(a) = f.acks.as_ref().filter(|a| !a.counts.exact()) {
        let c = &a.counts;
        reasons.push(format!(
            "acks not exact for {} clients: {} unacknowledged, {} twice, {} never sent, {} bad records",
            a.inexact_clients.len(),
            c.unacked,
            c.duplicates,
            c.unexpected,
            c.bad_records
        ));
    }
    reasons.extend(f.arrivals.as_ref().and_then(|a| a.reason()));
    FleetVerdict { status, reasons }
}

/// Paced, and the send lag p99 is over its limit.
fn is_late(f: &FleetReport) -> bool {
    f.config.rate != Rate::Max && f.send_lag_ns.p99 > f.config.max_lag.as_nanos() as u64
}

/// Whether the fleet kept its schedule, not counting `excused` unsent
/// frames (those of clients the server turned away).
pub fn fleet_status(f: &FleetReport, excused: u64) -> FleetStatus {
    let behind = is_late(f) || f.unsent > excused;
    match (behind, f.would_block_writes > 0) {
        (false, _) => FleetStatus::Ok,
        (true, true) => FleetStatus::ServerBackpressure,
        (true, false) => FleetStatus::GeneratorSaturated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real fleet report that kept its schedule (from a checked-in run).
    fn baseline() -> FleetReport {
        let fleets: Vec<FleetReport> =
            serde_json::from_str(include_str!("../tests/fixtures/fleets.json")).expect("fixture");
        fleets
            .into_iter()
            .find(|f| fleet_verdict(f).status == FleetStatus::Ok && f.would_block_writes == 0)
            .expect("a fleet that kept its schedule")
    }

    type Mutate = fn(&mut FleetReport);

    fn lag(f: &mut FleetReport) {
        f.send_lag_ns.p99 = f.config.max_lag.as_nanos() as u64 + 1;
    }

    #[test]
    fn fleet_verdict_table() {
        let table: [(&str, Mutate, FleetStatus); 6] = [
            ("kept its schedule", |_| {}, FleetStatus::Ok),
            (
                "late, no push-back",
                |f| lag(f),
                FleetStatus::GeneratorSaturated,
            ),
            (
                "frames never written",
                |f| f.unsent = 3,
                FleetStatus::GeneratorSaturated,
            ),
            (
                "late and blocked",
                |f| {
                    lag(f);
                    f.would_block_writes = 9;
                },
                FleetStatus::ServerBackpressure,
            ),
            (
                "blocked but on time",
                |f| f.would_block_writes = 9,
                FleetStatus::Ok,
            ),
            (
                "lag does not count at rate max",
                |f| {
                    lag(f);
                    f.config.rate = Rate::Max;
                },
                FleetStatus::Ok,
            ),
        ];
        for (name, mutate, want) in table {
            let mut f = baseline();
            mutate(&mut f);
            assert_eq!(fleet_verdict(&f).status, want, "{name}");
        }
    }
}
