//! Several fleets' reports as one: the shards of one fleet (`--shard I/N`)
//! or the fleets of one cell that ran as separate processes or containers
//! (each with its own client ids) are
//! merged exactly (counts summed, client lines joined, the send-lag and
//! pacing-lag HDR histograms added) into the report one fleet of all their
//! clients would have written, so the cell's reconciliation and verdict are
//! the same rules a one-process fleet gets.

use std::collections::HashSet;

use common::{CpuTimes, LatencySummary};

use crate::arrival_check::ArrivalCheck;
use crate::fleet_report::{per_second, AckReport, FleetReport, SentCounts};

/// Why reports cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no fleet reports given")]
    Empty,
    /// Two reports claim one client id.
    #[error(
        "client id {0} appears in two fleet reports: give each fleet its own --client-id-base"
    )]
    SharedClient(u32),
    /// A histogram would not decode or add.
    #[error("a fleet report's {what} histogram is unreadable: {why}")]
    Histogram {
        /// Which histogram.
        what: &'static str,
        /// The decoder's message.
        why: String,
    },
}

fn add_latency(
    what: &'static str,
    parts: impl Iterator<Item = LatencySummary>,
) -> Result<LatencySummary, MergeError> {
    let mut sum = common::latency::new_latency_histogram();
    for p in parts {
        if p.count == 0 {
            continue;
        }
        let h = p
            .histogram()
            .map_err(|why| MergeError::Histogram { what, why })?;
        sum.add(&h).map_err(|e| MergeError::Histogram {
            what,
            why: e.to_string(),
        })?;
    }
    Ok(LatencySummary::of(&sum))
}

/// Merges `reports` into one fleet's report; the verdict is recomputed.
pub fn merge(reports: &[FleetReport]) -> Result<FleetReport, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    let mut seen = HashSet::new();
    for r in reports {
        for c in &r.clients {
            if !seen.insert(c.id) {
                return Err(MergeError::SharedClient(c.id));
            }
        }
    }
    let sum = |f: fn(&FleetReport) -> u64| reports.iter().map(f).sum::<u64>();
    let max = |f: fn(&FleetReport) -> f64| reports.iter().map(f).fold(0.0, f64::max);
    let ids = |f: fn(&FleetReport) -> &Vec<u32>| {
        let mut v: Vec<u32> = reports.iter().flat_map(|r| f(r).iter().copied()).collect();
        v.sort_unstable();
        v
    };
    let mut clients: Vec<_> = reports.iter().flat_map(|r| r.clients.clone()).collect();
    clients.sort_by_key(|c| c.id);
    // Shards of one fleet add up to it; separate fleets to their sum.
    let mut config = first.config.clone();
    config.clients = clients.len() as u32;
    config.shard = None;
    config.shared_clock = reports.iter().all(|r| r.config.shared_clock);
    config.client_id_base = reports
        .iter()
        .map(|r| r.config.client_id_base)
        .min()
        .unwrap_or(0);
    let offered_rate = reports.iter().map(|r| r.offered_rate).sum::<Option<f64>>();
    let window_start_ns = reports.iter().map(|r| r.window_start_ns).min().unwrap_or(0);
    let window_end_ns = reports.iter().map(|r| r.window_end_ns).max().unwrap_or(0);
    let measured_window_s = window_end_ns.saturating_sub(window_start_ns) as f64 / 1e9;
    let sent = SentCounts {
        measured: sum(|r| r.sent.measured),
        warmup: sum(|r| r.sent.warmup),
    };
    let mut merged = FleetReport {
        config,
        sent,
        clients,
        offered_rate,
        achieved_rate: per_second(sent.measured, measured_window_s),
        measured_window_s,
        window_start_ns,
        window_end_ns,
        slowest_drain_s: max(|r| r.slowest_drain_s),
        makespan_s: reports.iter().filter_map(|r| r.makespan_s).reduce(f64::max),
        send_lag_ns: add_latency("send lag", reports.iter().map(|r| r.send_lag_ns.clone()))?,
        pacing_lag_ns: add_latency(
            "pacing lag",
            reports.iter().map(|r| r.pacing_lag_ns.clone()),
        )?,
        would_block_writes: sum(|r| r.would_block_writes),
        unsent: sum(|r| r.unsent),
        reconnects: sum(|r| r.reconnects),
        planned_reconnects: sum(|r| r.planned_reconnects),
        connect_failures: sum(|r| r.connect_failures),
        refusals: sum(|r| r.refusals),
        refused: ids(|r| &r.refused),
        drained: ids(|r| &r.drained),
        undrained: ids(|r| &r.undrained),
        failed: ids(|r| &r.failed),
        arrivals: ArrivalCheck::merge(reports.iter().filter_map(|r| r.arrivals.clone())),
        verdict: first.verdict.clone(),
        cpu: CpuTimes {
            user_s: reports.iter().map(|r| r.cpu.user_s).sum(),
            sys_s: reports.iter().map(|r| r.cpu.sys_s).sum(),
            voluntary_ctxt: reports.iter().map(|r| r.cpu.voluntary_ctxt).sum(),
            involuntary_ctxt: reports.iter().map(|r| r.cpu.involuntary_ctxt).sum(),
        },
        acks: None,
    };
    if reports.iter().any(|r| r.acks.is_some()) {
        let round_trip = add_latency(
            "round trip",
            reports
                .iter()
                .filter_map(|r| r.acks.as_ref().map(|a| a.round_trip_ns.clone())),
        )?;
        merged.acks = AckReport::of(&merged.clients, round_trip);
    }
    merged.verdict = crate::on_schedule::fleet_verdict(&merged);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fleet reports of real cells (from a checked-in run).
    fn fleets() -> Vec<FleetReport> {
        serde_json::from_str(include_str!("../tests/fixtures/fleets.json")).expect("fixture")
    }

    /// `report` with its client ids moved up by `by`.
    fn shifted(mut report: FleetReport, by: u32) -> FleetReport {
        for c in &mut report.clients {
            c.id += by;
        }
        for v in [
            &mut report.drained,
            &mut report.undrained,
            &mut report.failed,
            &mut report.refused,
        ] {
            v.iter_mut().for_each(|id| *id += by);
        }
        report.config.client_id_base += by;
        report
    }

    #[test]
    fn merging_equals_one_big_histogram_and_sums_every_count() {
        let all = fleets();
        let parts: Vec<FleetReport> = all[..3]
            .iter()
            .enumerate()
            .map(|(i, r)| shifted(r.clone(), 10_000 * i as u32))
            .collect();
        let m = merge(&parts).unwrap();
        let mut one = common::latency::new_latency_histogram();
        for p in &parts {
            one.add(p.send_lag_ns.histogram().unwrap()).unwrap();
        }
        assert_eq!(m.send_lag_ns.count, one.len());
        assert_eq!(m.send_lag_ns.p99, one.value_at_quantile(0.99));
        assert_eq!(m.send_lag_ns.max, one.max());
        let total = |f: fn(&FleetReport) -> u64| parts.iter().map(f).sum::<u64>();
        assert_eq!(m.sent.measured, total(|r| r.sent.measured));
        assert_eq!(m.sent.warmup, total(|r| r.sent.warmup));
        assert_eq!(
            m.clients.len(),
            parts.iter().map(|r| r.clients.len()).sum::<usize>()
        );
        assert_eq!(
            m.config.clients,
            parts.iter().map(|r| r.config.clients).sum::<u32>()
        );
        assert_eq!(
            m.drained.len(),
            parts.iter().map(|r| r.drained.len()).sum::<usize>()
        );
        assert!(m.clients.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn ack_reports_merge_exactly_and_a_shared_clock_needs_every_part() {
        use crate::acks::AckCounts;
        // Each part in ack mode, its send-lag histogram standing in for a
        // round trip; part 1 with an unacked frame, part 2 on another clock.
        let mut parts: Vec<FleetReport> = fleets()[..3]
            .iter()
            .enumerate()
            .map(|(i, r)| shifted(r.clone(), 10_000 * i as u32))
            .collect();
        for (i, p) in parts.iter_mut().enumerate() {
            for c in &mut p.clients {
                let sent = c.sent.measured + c.sent.warmup;
                c.acks = Some(AckCounts {
                    acked: sent - u64::from(i == 1),
                    unacked: u64::from(i == 1),
                    ..AckCounts::default()
                });
            }
            p.acks = AckReport::of(&p.clients, p.send_lag_ns.clone());
            p.config.shared_clock = i != 2;
        }
        let m = merge(&parts).unwrap();
        let a = m.acks.as_ref().expect("ack mode survives the merge");
        let mut one = common::latency::new_latency_histogram();
        for p in &parts {
            one.add(p.send_lag_ns.histogram().unwrap()).unwrap();
        }
        assert_eq!(a.round_trip_ns.count, one.len());
        assert_eq!(a.round_trip_ns.p99, one.value_at_quantile(0.99));
        let all: u64 = parts.iter().map(|p| p.sent.measured + p.sent.warmup).sum();
        let part1 = parts[1].clients.len() as u64;
        assert_eq!((a.counts.acked, a.counts.unacked), (all - part1, part1));
        assert_eq!(a.inexact_clients.len() as u64, part1);
        assert!(!m.config.shared_clock, "one part on another clock");
        assert!(merge(&parts[..2]).unwrap().config.shared_clock);
    }

    #[test]
    fn a_single_report_merges_to_itself() {
        let r = fleets().remove(0);
        let m = merge(std::slice::from_ref(&r)).unwrap();
        assert_eq!(m.sent, r.sent);
        assert_eq!(m.send_lag_ns.count, r.send_lag_ns.count);
        assert_eq!(m.send_lag_ns.p99, r.send_lag_ns.p99);
        assert_eq!(m.verdict, r.verdict);
    }

    #[test]
    fn refuses_nothing_and_shared_client_ids() {
        assert!(matches!(merge(&[]), Err(MergeError::Empty)));
        let r = fleets().remove(0);
        let id = r.clients[0].id;
        assert!(matches!(
            merge(&[r.clone(), r]),
            Err(MergeError::SharedClient(i)) if i == id
        ));
    }
}
