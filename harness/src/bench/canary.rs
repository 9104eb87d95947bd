//! The machine's own stalls beside each cell: one canary thread per server
//! and fleet CPU, pinned there at real-time priority, wakes every
//! [`PERIOD`] and records how late it woke. A real-time thread preempts the
//! server and the fleet at once, so its lateness is the machine's (the
//! hypervisor, interrupts), not the load's: a probe that failed while the
//! canary saw the CPUs stalled says nothing of the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// Running canaries; [`Canary::stop`] collects their report.
pub struct Canary {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(CanaryReport, bool)>>,
    cpus: Vec<usize>,
}

impl Canary {
    /// Starts one canary on each of `cpus`.
    pub fn start(cpus: &[usize]) -> Canary {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = cpus
            .iter()
            .map(|&cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || watch(cpu, &stop))
            })
            .collect();
        Canary {
            stop,
            threads,
            cpus: cpus.to_vec(),
        }
    }

    /// Stops the canaries and sums what they saw.
    pub fn stop(self) -> CanaryReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = CanaryReport {
            cpus: self.cpus,
            realtime: true,
            ..CanaryReport::default()
        };
        for t in self.threads {
            let Ok((r, rt)) = t.join() else {
                out.realtime = false;
                continue;
            };
            out.realtime &= rt;
            out.wakes += r.wakes;
            out.stalls += r.stalls;
            out.stalled_ns += r.stalled_ns;
            out.max_late_ns = out.max_late_ns.max(r.max_late_ns);
        }
        out
    }
}

/// One canary's loop on `cpu` until `stop`: the stall time is the union of
/// the late stretches (a long stall makes several wakes late; it counts
/// once).
fn watch(cpu: usize, stop: &AtomicBool) -> (CanaryReport, bool) {
    let pinned = crate::cpus::pin(&[cpu]).is_ok();
    let realtime = pinned && realtime().is_ok();
    let mut r = CanaryReport::default();
    let mut due = Instant::now() + PERIOD;
    let mut last_wake = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(due).as_nanos() as u64;
        r.wakes += 1;
        r.max_late_ns = r.max_late_ns.max(late);
        if late > STALL_NS {
            r.stalls += 1;
            r.stalled_ns += now.saturating_duration_since(due.max(last_wake)).as_nanos() as u64;
        }
        last_wake = now;
        due = now + PERIOD;
    }
    (r, realtime)
}

/// Moves the calling thread to SCHED_FIFO at the lowest real-time priority.
fn realtime() -> Result<(), thread_priority::Error> {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
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

    #[test]
    fn a_canary_counts_its_wakes() {
        let c = Canary::start(&[crate::cpus::allowed()[0]]);
        std::thread::sleep(Duration::from_millis(50));
        let r = c.stop();
        // Counted, not timed: it woke, and no more often than its period.
        assert!(r.wakes > 0 && r.wakes <= 51, "{r:?}");
        assert!(r.stalls <= r.wakes);
    }
}
