//! Doing a frame's work: the reference kernel for cpu frames, a wait for io
//! frames, a downstream call for call frames. Blocking flavour for the
//! thread-based models; every model stamps a frame's start with [`start`]
//! (here, for the blocking ones).

use std::net::SocketAddr;
use std::time::Duration;

use workloads::clock::monotonic_ns;
use workloads::kernel::cpu_kernel;
use workloads::{Frame, WorkKind};

use crate::downstream::call_blocking;
use crate::stats::ProcessStats;

/// What a call frame the downstream answered records as its `digest` (see
/// [`ProcessStats::record`]); a failed call records none.
pub const CALL_ANSWERED: Option<u64> = Some(0);

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
/// finished, and its kernel result for a cpu frame (for a call frame,
/// [`CALL_ANSWERED`] or none); what [`ProcessStats::record`] takes.
pub type Done = (Frame, u64, Option<u64>);

/// Does `frame`'s work on this thread (an io wait or a call to
/// `downstream` blocks it). A frame with no work starts and finishes at one
/// clock read.
#[inline]
pub fn run_blocking(frame: &Frame, downstream: Option<SocketAddr>) -> Done {
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
    let digest = match frame.kind {
        WorkKind::Io => {
            if frame.amount > 0 {
                std::thread::sleep(Duration::from_micros(frame.amount as u64));
            }
            None
        }
        WorkKind::Call => {
            CALL_ANSWERED.filter(|_| call_blocking(downstream, frame.amount, frame.seq))
        }
        _ => cpu_digest(&frame),
    };
    (frame, monotonic_ns(), digest)
}

/// Does `frame`'s work on this thread and records it.
#[inline]
pub fn process_blocking(frame: &Frame, downstream: Option<SocketAddr>, stats: &mut ProcessStats) {
    let (frame, done_ns, digest) = run_blocking(frame, downstream);
    stats.record(&frame, done_ns, digest);
}
