//! Ack mode, fleet side: one client's check that every frame it sent is
//! acknowledged exactly once, and the counts it reports. Sequence numbers
//! acknowledged are kept as a bitset whose fully acknowledged head is
//! dropped as it fills, so memory follows the frames still unacknowledged.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use workloads::ack::{Ack, AckReader};

/// One client's (or, summed, a fleet's) ack counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckCounts {
    /// Frames acknowledged once.
    pub acked: u64,
    /// Frames sent and never acknowledged (counted when the client ends).
    pub unacked: u64,
    /// Acknowledgements of a frame already acknowledged.
    pub duplicates: u64,
    /// Acknowledgements of sequence numbers never sent.
    pub unexpected: u64,
    /// Ack records that failed to decode (the rest of that connection's
    /// acks are ignored).
    pub bad_records: u64,
}

impl AckCounts {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &AckCounts) {
        self.acked += o.acked;
        self.unacked += o.unacked;
        self.duplicates += o.duplicates;
        self.unexpected += o.unexpected;
        self.bad_records += o.bad_records;
    }

    /// True when every frame sent was acknowledged exactly once.
    pub fn exact(&self) -> bool {
        self.unacked == 0 && self.duplicates == 0 && self.unexpected == 0 && self.bad_records == 0
    }
}

/// What one client knows of its acks.
#[derive(Debug, Default)]
pub struct AckTrack {
    reader: AckReader,
    seen: Seen,
    /// A bad record was read on the current connection: ignore the rest.
    poisoned: bool,
    /// The counts so far.
    pub counts: AckCounts,
}

impl AckTrack {
    /// Nothing acknowledged yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection: its byte stream starts afresh.
    pub fn reconnected(&mut self) {
        self.reader = AckReader::new();
        self.poisoned = false;
    }

    /// Takes `data` read from the server; `sent` is how many sequence
    /// numbers were generated so far (0..sent may be acknowledged);
    /// `on_first_ack(seq)` is called for each frame acknowledged the first
    /// time.
    pub fn feed(&mut self, data: &[u8], sent: u64, mut on_first_ack: impl FnMut(u64)) {
        if self.poisoned {
            return;
        }
        let (seen, counts) = (&mut self.seen, &mut self.counts);
        let fed = self.reader.feed(data, |ack: Ack| {
            let seqs = ack.seqs();
            // A run past what was sent is counted, not walked: a forged
            // count of 2^32 costs nothing.
            counts.unexpected += seqs.end.saturating_sub(seqs.start.max(sent));
            for seq in seqs.start..seqs.end.min(sent) {
                if seen.mark(seq) {
                    counts.acked += 1;
                    on_first_ack(seq);
                } else {
                    counts.duplicates += 1;
                }
            }
        });
        if fed.is_err() {
            self.counts.bad_records += 1;
            self.poisoned = true;
        }
    }

    /// The client is finished having sent `sent` frames: the ones never
    /// acknowledged are counted.
    pub fn finish(&mut self, sent: u64) {
        self.counts.unacked = sent.saturating_sub(self.counts.acked);
    }

    /// Words of the bitset held (for the memory bound's test).
    #[cfg(test)]
    fn words(&self) -> usize {
        self.seen.bits.len()
    }
}

/// The sequence numbers acknowledged so far.
#[derive(Debug, Default)]
struct Seen {
    /// Every sequence number below `floor` is acknowledged.
    floor: u64,
    /// Bit `i` of word `w`: `floor + 64 w + i` acknowledged.
    bits: VecDeque<u64>,
}

impl Seen {
    /// Marks `seq` acknowledged; false if it already was.
    fn mark(&mut self, seq: u64) -> bool {
        if seq < self.floor {
            return false;
        }
        let off = seq - self.floor;
        let (word, bit) = ((off / 64) as usize, off % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.bits[word] & mask != 0 {
            return false;
        }
        self.bits[word] |= mask;
        while self.bits.front() == Some(&u64::MAX) {
            self.bits.pop_front();
            self.floor += 64;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(runs: &[(u32, u32)]) -> Vec<u8> {
        runs.iter()
            .flat_map(|&(first_seq, count)| Ack { first_seq, count }.encode())
            .collect()
    }

    #[test]
    fn exactly_once_table() {
        // (case, runs acked, frames sent, acked, unacked, duplicates, unexpected)
        type Row = (&'static str, Vec<(u32, u32)>, u64, [u64; 4]);
        let table: Vec<Row> = vec![
            ("all in one run", vec![(0, 10)], 10, [10, 0, 0, 0]),
            ("out of order", vec![(5, 5), (0, 5)], 10, [10, 0, 0, 0]),
            ("one missing", vec![(0, 4), (5, 5)], 10, [9, 1, 0, 0]),
            ("one twice", vec![(0, 10), (3, 1)], 10, [10, 0, 1, 0]),
            ("beyond what was sent", vec![(0, 12)], 10, [10, 0, 0, 2]),
            (
                "below the dropped head",
                vec![(0, 200), (10, 1)],
                200,
                [200, 0, 1, 0],
            ),
            ("none", vec![], 3, [0, 3, 0, 0]),
            (
                "a forged huge run",
                vec![(2, u32::MAX)],
                5,
                [3, 2, 0, u32::MAX as u64 - 3],
            ),
        ];
        for (case, runs, sent, [acked, unacked, dup, unexp]) in table {
            let mut t = AckTrack::new();
            let mut firsts = 0;
            t.feed(&wire(&runs), sent, |_| firsts += 1);
            t.finish(sent);
            let c = t.counts;
            assert_eq!(
                [c.acked, c.unacked, c.duplicates, c.unexpected],
                [acked, unacked, dup, unexp],
                "{case}"
            );
            assert_eq!(firsts, acked, "{case}");
            assert_eq!(c.exact(), unacked + dup + unexp == 0, "{case}");
        }
    }

    #[test]
    fn a_bad_record_poisons_the_connection_until_a_reconnect() {
        let mut t = AckTrack::new();
        let mut bytes = wire(&[(0, 1), (1, 1)]);
        bytes[16] = b'X'; // second record's magic
        bytes.extend(wire(&[(2, 1)]));
        t.feed(&bytes, 10, |_| {});
        t.feed(&wire(&[(3, 1)]), 10, |_| {});
        assert_eq!((t.counts.acked, t.counts.bad_records), (1, 1));
        t.reconnected();
        t.feed(&wire(&[(4, 1)]), 10, |_| {});
        assert_eq!(t.counts.acked, 2);
    }

    #[test]
    fn memory_follows_the_unacknowledged_frames() {
        let mut t = AckTrack::new();
        for s in 0..100_000u32 {
            t.feed(&wire(&[(s, 1)]), 100_000, |_| {});
        }
        assert_eq!(t.counts.acked, 100_000);
        assert!(t.words() <= 1, "{} words", t.words());
    }
}
