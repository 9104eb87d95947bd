//! Doing a frame's work: the reference kernel for cpu frames, a wait for io
//! frames. Blocking flavour for the thread-based models.

use std::time::Duration;

use workloads::clock::monotonic_ns;
use workloads::kernel::cpu_kernel;
use workloads::{Frame, WorkKind};

use crate::stats::ProcessStats;

/// Runs the cpu kernel for a cpu frame; `None` for other kinds.
#[inline]
pub fn cpu_digest(frame: &Frame) -> Option<u64> {
    (frame.kind == WorkKind::Cpu)
        .then(|| cpu_kernel(frame.seq as u64, frame.client_id, frame.amount))
}

/// Does `frame`'s work on this thread (an io wait blocks it) and records it.
#[inline]
pub fn process_blocking(frame: &Frame, stats: &mut ProcessStats) {
    if frame.kind == WorkKind::Io && frame.amount > 0 {
        std::thread::sleep(Duration::from_micros(frame.amount as u64));
    }
    let digest = cpu_digest(frame);
    stats.record(frame, monotonic_ns(), digest);
}
