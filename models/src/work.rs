//! Doing a frame's work: the reference kernel for cpu frames, a wait for io
//! frames. Blocking flavour for the thread-based models; every model stamps
//! a frame's start with [`start`] (here, for the blocking ones).

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

/// `frame`, stamped as its work starting now.
#[inline]
pub fn start(mut frame: Frame) -> Frame {
    frame.started_ns = monotonic_ns();
    frame
}

/// A frame whose work is done: the frame (its start stamped), when it
/// finished, and its kernel result for a cpu frame; what
/// [`ProcessStats::record`] takes.
pub type Done = (Frame, u64, Option<u64>);

/// Does `frame`'s work on this thread (an io wait blocks it). A frame with
/// no work starts and finishes at one clock read.
#[inline]
pub fn run_blocking(frame: &Frame) -> Done {
    if frame.kind == WorkKind::None {
        let now = monotonic_ns();
        return (
            Frame {
                started_ns: now,
                ..*frame
            },
            now,
            None,
        );
    }
    let frame = start(*frame);
    if frame.kind == WorkKind::Io && frame.amount > 0 {
        std::thread::sleep(Duration::from_micros(frame.amount as u64));
    }
    let digest = cpu_digest(&frame);
    (frame, monotonic_ns(), digest)
}

/// Does `frame`'s work on this thread and records it.
#[inline]
pub fn process_blocking(frame: &Frame, stats: &mut ProcessStats) {
    let (frame, done_ns, digest) = run_blocking(frame);
    stats.record(&frame, done_ns, digest);
}
