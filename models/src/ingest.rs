//! The reading side of one connection: reassembles frames, validates them
//! and does the per-client accounting, whatever model owns the socket.

use std::time::{Duration, Instant};

use workloads::clock::monotonic_ns;
use workloads::{Frame, FrameError, FrameReader, Limits};

use crate::stats::IngestStats;

/// Per-connection decoder state. Constant size whatever the peer sends.
#[derive(Debug, Default)]
pub struct ConnIngest {
    reader: FrameReader,
    next_seq: Option<(u32, u64)>,
    /// When the frame now half-read began arriving (`None`: none is).
    partial_since: Option<Instant>,
}

impl ConnIngest {
    /// A fresh connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts `data` just read and hands every valid frame to `dispatch`,
    /// stamped as received now (one clock read per call: the caller calls
    /// it as its read returns; none while [`crate::stages::recording`] is
    /// off). On the first invalid frame its reason is
    /// counted and returned: the caller must close the connection and
    /// ignore the rest.
    pub fn on_bytes(
        &mut self,
        data: &[u8],
        limits: &Limits,
        stats: &mut IngestStats,
        mut dispatch: impl FnMut(Frame),
    ) -> Result<(), FrameError> {
        stats.bytes += data.len() as u64;
        stats.reads += 1;
        crate::live::read(data.len() as u64);
        let received_ns = if crate::stages::recording() {
            monotonic_ns()
        } else {
            0
        };
        let next_seq = &mut self.next_seq;
        let mut completed = false;
        let result = self.reader.feed(data, limits, |mut frame| {
            completed = true;
            frame.received_ns = received_ns;
            stats.count_frame(&frame, next_seq);
            dispatch(frame);
        });
        if let Err(e) = result {
            stats.errors.count(e);
        }
        // A frame left half-read starts its clock when its first bytes
        // came: now, unless the same frame was already pending before.
        self.partial_since = match (self.reader.has_partial(), completed, self.partial_since) {
            (false, ..) => None,
            (true, false, Some(since)) => Some(since),
            (true, ..) => Some(Instant::now()),
        };
        result
    }

    /// Whether a frame has been half-read for `timeout` or longer (never
    /// with a zero timeout): a peer that starts frames and stalls
    /// (slowloris) is closed on this, whatever trickle of bytes it sends.
    pub fn frame_overdue(&self, timeout: Duration) -> bool {
        !timeout.is_zero() && self.partial_since.is_some_and(|t| t.elapsed() >= timeout)
    }

    /// When the frame now half-read is due to be complete, if one is.
    pub fn frame_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.partial_since
            .filter(|_| !timeout.is_zero())
            .map(|t| t + timeout)
    }

    /// Accounts the peer's orderly end of stream: a partial frame left is
    /// counted once as `truncated`.
    pub fn on_eof(&mut self, stats: &mut IngestStats) {
        if self.reader.has_partial() {
            stats.errors.count_truncated();
        }
    }

    /// Accounts a connection the peer aborted (reset, or any read error): a
    /// partial frame left is not a protocol error, the abort is counted.
    pub fn on_reset(&mut self, stats: &mut IngestStats) {
        stats.connections.add(crate::live::Conn::Reset, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_read_frame_keeps_its_start_until_it_completes() {
        let limits = Limits::default();
        let mut stats = IngestStats::default();
        let mut c = ConnIngest::new();
        let frame = workloads::Frame {
            client_id: 1,
            seq: 0,
            send_delay_ns: 0,
            due_ns: 1,
            kind: workloads::WorkKind::None,
            amount: 0,
            warmup: false,
            ack: false,
            received_ns: 0,
            started_ns: 0,
        }
        .encode();
        let timeout = Duration::from_millis(30);
        // Whole frames: nothing pending.
        c.on_bytes(&frame, &limits, &mut stats, |_| {}).unwrap();
        assert!(c.frame_deadline(timeout).is_none());
        // Half a frame, then a trickle of the same frame: the clock runs
        // from the first byte.
        c.on_bytes(&frame[..10], &limits, &mut stats, |_| {})
            .unwrap();
        let first = c.frame_deadline(timeout).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        c.on_bytes(&frame[10..12], &limits, &mut stats, |_| {})
            .unwrap();
        assert_eq!(c.frame_deadline(timeout), Some(first));
        std::thread::sleep(timeout);
        assert!(c.frame_overdue(timeout));
        assert!(!c.frame_overdue(Duration::ZERO), "0 = never");
        // Completing it and starting the next restarts the clock.
        let mut rest = frame[12..].to_vec();
        rest.extend_from_slice(&frame[..4]);
        c.on_bytes(&rest, &limits, &mut stats, |_| {}).unwrap();
        assert!(!c.frame_overdue(timeout));
        assert!(c.frame_deadline(timeout).unwrap() > first);
    }
}
