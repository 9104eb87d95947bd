//! What the machine's canaries saw beside a cell (stalls of the server's
//! and fleet's CPUs), and when that is enough to explain a failed probe.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often each canary wakes.
pub const PERIOD: Duration = Duration::from_millis(1);
/// A wake later than this is a stall of the CPU: longer than the
/// non-preemptible kernel work a heavy load causes on its own (softirqs,
/// measured at up to ~0.9 ms here under overload), and no longer than the
/// 1 ms the default SLO allows beyond the batch window and the work.
pub const STALL_NS: u64 = 1_000_000;
/// A cell is disturbed when its CPUs were stalled for more than this share
/// of its measured window in all: half of the 1% of frames a p99 may lose
/// to a stall before it moves.
pub const DISTURBED_SHARE: f64 = 0.005;

/// What the canaries saw during one cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    /// CPUs watched.
    pub cpus: Vec<usize>,
    /// Every canary ran at real-time priority (else its lateness includes
    /// the load's, and it is reported but not used).
    pub realtime: bool,
    /// Wakes, all CPUs.
    pub wakes: u64,
    /// Wakes later than [`STALL_NS`].
    pub stalls: u64,
    /// Time the CPUs were stalled, summed over CPUs, ns.
    pub stalled_ns: u64,
    /// The latest wake, ns.
    pub max_late_ns: u64,
}

impl CanaryReport {
    /// Whether the machine stalled enough during a measured window of
    /// `window_s` to move a p99 (never, for a canary that was not
    /// real-time).
    pub fn disturbed(&self, window_s: f64) -> bool {
        self.realtime && self.stalled_ns as f64 > DISTURBED_SHARE * window_s * 1e9
    }

    /// One line: `3 stalls, 4.1ms stalled, worst 2.2ms`.
    pub fn line(&self) -> String {
        format!(
            "{} stalls, {} stalled, worst {}",
            self.stalls,
            crate::units::fmt_ns(self.stalled_ns),
            crate::units::fmt_ns(self.max_late_ns)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disturbed_only_past_its_share_and_only_when_real_time() {
        let r = |stalled_ms: u64, realtime| CanaryReport {
            stalled_ns: stalled_ms * 1_000_000,
            realtime,
            ..CanaryReport::default()
        };
        // (report, window s, disturbed): 0.5% of 1 s is 5 ms.
        let table = [
            (r(0, true), 1.0, false),
            (r(5, true), 1.0, false),
            (r(6, true), 1.0, true),
            (r(2, true), 0.25, true),
            (r(60, false), 1.0, false),
        ];
        for (report, window, want) in table {
            assert_eq!(report.disturbed(window), want, "{report:?} over {window}s");
        }
    }
}
