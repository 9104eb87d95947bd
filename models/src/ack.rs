//! Ack mode, server side: the ack records a connection owes its client for
//! processed frames that asked for one ([`workloads::ack`] has the format).
//! Consecutive sequence numbers coalesce into one record; records wait in a
//! bounded buffer that is written without ever blocking (a write that would
//! block leaves them for the next chance); beyond [`MAX_UNSENT_RECORDS`]
//! new ones are dropped and counted.

use std::io::ErrorKind;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workloads::ack::{Ack, ACK_LEN};
use workloads::Frame;

/// Records a connection may owe before new ones are dropped (64 KiB).
pub const MAX_UNSENT_RECORDS: usize = 4096;
/// How long a closing connection waits for its client to read the acks it
/// still owes before they are dropped and it closes anyway.
pub const ACK_LINGER: Duration = Duration::from_secs(1);

/// What the ack writers did, all connections together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckCounts {
    /// Ack records fully written.
    pub records: u64,
    /// Frames those records acknowledge.
    pub frames: u64,
    /// Frames whose ack was never written: the buffer was full, the
    /// connection broke, or its client did not read them within
    /// [`ACK_LINGER`] of the close.
    pub dropped: u64,
    /// Frames whose ack was still owed when the server stopped (their
    /// clients had not finished: the fleet counts them unacknowledged).
    #[serde(default)]
    pub unsent_at_stop: u64,
    /// Write (send) system calls that carried acks, or returned would-block.
    #[serde(default)]
    pub writes: u64,
}

impl AckCounts {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &AckCounts) {
        self.records += o.records;
        self.frames += o.frames;
        self.dropped += o.dropped;
        self.writes += o.writes;
        self.unsent_at_stop += o.unsent_at_stop;
    }
}

/// One connection's unsent acks.
#[derive(Debug, Default)]
pub struct AckBuf {
    /// Encoded records; `out[..sent]` is written.
    out: Vec<u8>,
    sent: usize,
    /// The run being extended.
    run: Option<Ack>,
    /// What this connection's acks came to.
    pub counts: AckCounts,
}

impl AckBuf {
    /// Nothing owed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Owes an ack for `frame` if it asked for one.
    #[inline]
    pub fn push(&mut self, frame: &Frame) {
        if frame.ack {
            self.push_seq(frame.seq);
        }
    }

    /// Owes an ack for sequence number `seq`.
    #[inline]
    pub fn push_seq(&mut self, seq: u32) {
        match &mut self.run {
            Some(r) if r.first_seq.checked_add(r.count) == Some(seq) && r.count < u32::MAX => {
                r.count += 1
            }
            _ => {
                self.seal();
                self.run = Some(Ack {
                    first_seq: seq,
                    count: 1,
                });
            }
        }
    }

    /// Ends the current run: its record joins the unsent ones, or is
    /// dropped when [`MAX_UNSENT_RECORDS`] are unsent.
    fn seal(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        if (self.out.len() - self.sent) / ACK_LEN >= MAX_UNSENT_RECORDS {
            self.counts.dropped += u64::from(run.count);
            return;
        }
        // Forget whole records already written once they are many.
        if self.sent >= 64 * ACK_LEN {
            let whole = self.sent / ACK_LEN * ACK_LEN;
            self.out.drain(..whole);
            self.sent -= whole;
        }
        self.out.extend_from_slice(&run.encode());
    }

    /// True when nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.run.is_none() && self.sent == self.out.len()
    }

    /// The bytes owed, the current run sealed into them.
    pub fn unsent(&mut self) -> &[u8] {
        self.seal();
        &self.out[self.sent..]
    }

    /// `n` bytes of [`AckBuf::unsent`] were written.
    pub fn consumed(&mut self, n: usize) {
        let end = (self.sent + n).min(self.out.len());
        // Records whose last byte went out now.
        for k in self.sent / ACK_LEN..end / ACK_LEN {
            let frames = u64::from(Ack::count_of(&self.out[k * ACK_LEN..]));
            self.counts.records += 1;
            self.counts.frames += frames;
            crate::live::count(crate::live::Counter::AckedFrames, frames);
        }
        self.sent = end;
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
    }

    /// Writes what is owed with `write` (a non-blocking write): `Ok(true)`
    /// once nothing is owed, `Ok(false)` if the write would block.
    pub fn flush(
        &mut self,
        mut write: impl FnMut(&[u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<bool> {
        loop {
            if self.unsent().is_empty() {
                return Ok(true);
            }
            self.counts.writes += 1;
            match write(self.unsent()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.consumed(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// [`AckBuf::flush`] for a connection's writer: true if some acks are
    /// left because the write would block; a broken connection drops what
    /// is owed (counted).
    pub fn write_now(&mut self, write: impl FnMut(&[u8]) -> std::io::Result<usize>) -> bool {
        match self.flush(write) {
            Ok(done) => !done,
            Err(_) => {
                self.abandon();
                false
            }
        }
    }

    /// Gives up on everything owed (the connection broke or lingered too
    /// long): counted as dropped.
    pub fn abandon(&mut self) {
        self.counts.dropped += self.forget();
    }

    /// The server stops: what is owed is counted as unsent at the stop.
    pub fn stop(&mut self) {
        self.counts.unsent_at_stop += self.forget();
    }

    /// Forgets everything owed; how many frames it acknowledged.
    fn forget(&mut self) -> u64 {
        self.seal();
        let first = self.sent / ACK_LEN;
        let frames = (first..self.out.len() / ACK_LEN)
            .map(|k| u64::from(Ack::count_of(&self.out[k * ACK_LEN..])))
            .sum();
        self.out.clear();
        self.sent = 0;
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workloads::ack::AckReader;

    fn acks_in(bytes: &[u8]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        AckReader::new()
            .feed(bytes, |a| out.push((a.first_seq, a.count)))
            .unwrap();
        out
    }

    #[test]
    fn consecutive_sequence_numbers_coalesce() {
        // (pushed, records written)
        type Row = (Vec<u32>, Vec<(u32, u32)>);
        let table: Vec<Row> = vec![
            (vec![], vec![]),
            (vec![5], vec![(5, 1)]),
            (vec![0, 1, 2, 3], vec![(0, 4)]),
            (vec![0, 1, 3, 4, 2], vec![(0, 2), (3, 2), (2, 1)]),
            (vec![7, 7], vec![(7, 1), (7, 1)]),
            (vec![u32::MAX, 0], vec![(u32::MAX, 1), (0, 1)]),
        ];
        for (pushed, want) in table {
            let mut b = AckBuf::new();
            pushed.iter().for_each(|&s| b.push_seq(s));
            let mut wire = Vec::new();
            assert!(b
                .flush(|x| {
                    wire.extend_from_slice(x);
                    Ok(x.len())
                })
                .unwrap());
            assert_eq!(acks_in(&wire), want, "{pushed:?}");
            assert_eq!(b.counts.frames, pushed.len() as u64);
            assert_eq!(b.counts.records, want.len() as u64);
            assert!(b.is_empty());
        }
    }

    #[test]
    fn frames_that_ask_for_nothing_are_not_acked() {
        let mut b = AckBuf::new();
        let f = Frame {
            client_id: 1,
            seq: 3,
            send_delay_ns: 0,
            due_ns: 0,
            kind: workloads::WorkKind::None,
            amount: 0,
            warmup: false,
            ack: false,
            received_ns: 0,
            started_ns: 0,
        };
        b.push(&f);
        assert!(b.is_empty());
        b.push(&Frame { ack: true, ..f });
        assert!(!b.is_empty());
    }

    #[test]
    fn partial_and_blocked_writes_keep_their_place() {
        let mut b = AckBuf::new();
        for s in [0, 2, 4, 6] {
            b.push_seq(s);
        }
        let mut wire = Vec::new();
        // 20 bytes, then would-block: one record and a bit written.
        let mut budget = 20usize;
        let done = b
            .flush(|x| {
                if budget == 0 {
                    return Err(ErrorKind::WouldBlock.into());
                }
                let n = x.len().min(budget).min(7);
                budget -= n;
                wire.extend_from_slice(&x[..n]);
                Ok(n)
            })
            .unwrap();
        assert!(!done);
        assert_eq!((b.counts.records, b.counts.frames), (1, 1));
        b.push_seq(7); // 6's run was sealed by the flush: a record of its own
        assert!(b
            .flush(|x| {
                wire.extend_from_slice(x);
                Ok(x.len())
            })
            .unwrap());
        assert_eq!(acks_in(&wire), vec![(0, 1), (2, 1), (4, 1), (6, 1), (7, 1)]);
        assert_eq!((b.counts.records, b.counts.frames), (5, 5));
    }

    #[test]
    fn the_unsent_backlog_is_bounded_and_drops_are_counted() {
        let mut b = AckBuf::new();
        let pushes = MAX_UNSENT_RECORDS as u32 + 10;
        for s in 0..pushes {
            b.push_seq(s * 2); // never consecutive: a record each
        }
        assert_eq!(b.unsent().len(), MAX_UNSENT_RECORDS * ACK_LEN);
        assert_eq!(b.counts.dropped, 10);
        b.consumed(ACK_LEN + 3);
        b.abandon();
        assert_eq!(b.counts.frames, 1);
        assert_eq!(b.counts.dropped, pushes as u64 - 1);
        assert!(b.is_empty());
        b.push_seq(1);
        b.push_seq(2);
        b.stop();
        assert_eq!(
            (b.counts.unsent_at_stop, b.counts.dropped),
            (2, pushes as u64 - 1)
        );
    }

    #[test]
    fn a_long_stream_keeps_memory_bounded() {
        let mut b = AckBuf::new();
        let mut written = 0u64;
        for s in 0..100_000u32 {
            b.push_seq(s * 2);
            if s % 3 == 0 {
                // Writes of odd sizes: records split across writes.
                b.flush(|x| {
                    let n = x.len().min(23);
                    written += n as u64;
                    Ok(n)
                })
                .unwrap();
            }
            assert!(b.out.len() <= (MAX_UNSENT_RECORDS + 64) * ACK_LEN);
        }
        b.flush(|x| {
            written += x.len() as u64;
            Ok(x.len())
        })
        .unwrap();
        assert_eq!(b.counts.frames + b.counts.dropped, 100_000);
        assert_eq!(written, b.counts.records * ACK_LEN as u64);
    }
}
