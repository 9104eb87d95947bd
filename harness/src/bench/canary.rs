//! The machine's own stalls beside each cell: one canary thread per server
//! and fleet CPU, pinned there at real-time priority, wakes every
//! [`PERIOD`] and records how late it woke. A real-time thread preempts the
//! server and the fleet at once, so its lateness is the machine's (the
//! hypervisor, interrupts), not the load's: a probe that failed while the
//! canary saw the CPUs stalled says nothing of the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use record::canary::{CanaryReport, PERIOD, STALL_NS};

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
    let realtime = pinned && models::priority::realtime().is_ok();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_counts_its_wakes() {
        let c = Canary::start(&[crate::cpus::allowed()[0]]);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let r = c.stop();
        // Counted, not timed: it woke, and no more often than its period.
        assert!(r.wakes > 0 && r.wakes <= 51, "{r:?}");
        assert!(r.stalls <= r.wakes);
    }
}
