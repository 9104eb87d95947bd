//! The reading side of one connection: reassembles frames, validates them
//! and does the per-client accounting, whatever model owns the socket.

use workloads::{Frame, FrameError, FrameReader, Limits};

use crate::stats::IngestStats;

/// Per-connection decoder state. Constant size whatever the peer sends.
#[derive(Debug, Default)]
pub struct ConnIngest {
    reader: FrameReader,
    next_seq: Option<(u32, u64)>,
}

impl ConnIngest {
    /// A fresh connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts `data` just read and hands every valid frame to `dispatch`.
    /// On the first invalid frame its reason is counted and returned: the
    /// caller must close the connection and ignore the rest.
    pub fn on_bytes(
        &mut self,
        data: &[u8],
        limits: &Limits,
        stats: &mut IngestStats,
        mut dispatch: impl FnMut(Frame),
    ) -> Result<(), FrameError> {
        stats.bytes += data.len() as u64;
        let next_seq = &mut self.next_seq;
        let result = self.reader.feed(data, limits, |frame| {
            stats.count_frame(&frame, next_seq);
            dispatch(frame);
        });
        if let Err(e) = result {
            stats.errors.count(e);
        }
        result
    }

    /// Accounts the peer's orderly end of stream: a partial frame left is
    /// counted once as `truncated`.
    pub fn on_eof(&mut self, stats: &mut IngestStats) {
        if self.reader.has_partial() {
            stats.errors.truncated += 1;
        }
    }

    /// Accounts a connection the peer aborted (reset, or any read error): a
    /// partial frame left is not a protocol error, the abort is counted.
    pub fn on_reset(&mut self, stats: &mut IngestStats) {
        stats.connections.resets += 1;
    }
}
