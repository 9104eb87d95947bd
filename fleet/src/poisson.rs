//! One client's Poisson arrivals (`--arrival poisson`): exponential gaps at
//! the client's mean rate, drawn from a ChaCha8 stream keyed by the run's
//! seed and the client's id, so every shard and every rerun with the seed
//! sends the same due times. Gap `i` comes from the stream's `i`-th word
//! (ChaCha seeks in O(1)); a due time is a sum of gaps, kept at every
//! [`BLOCK`]-th frame so any frame's due time is at most `BLOCK - 1` gaps
//! from a kept one, and a [`Cursor`] walks the frames a client sends in
//! order one gap at a time.

use std::cell::RefCell;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Frames between kept sums.
pub const BLOCK: u64 = 64;

/// The due offsets (ns from the client's first frame) of one client.
#[derive(Clone, Debug)]
pub struct Stream {
    seed: [u8; 32],
    mean_ns: f64,
    /// Offset of frame `k * BLOCK`.
    kept: Vec<u64>,
    /// Frames due before the span it was made for (or its count).
    pub total: u64,
}

/// A client's place in its stream, for due times asked in order.
#[derive(Clone, Debug)]
pub struct Cursor {
    /// Frame the cursor is at.
    pub i: u64,
    /// Its offset.
    pub offset: u64,
    rng: ChaCha8Rng,
}

/// The stream key of client `id` in a run seeded with `seed`.
fn key(seed: u64, id: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&seed.to_le_bytes());
    k[8..12].copy_from_slice(&id.to_le_bytes());
    k[12..16].copy_from_slice(b"pois");
    k
}

/// An exponential gap of mean `mean_ns` from one uniform draw (inverse
/// CDF; `1 - u` is in (0, 1], so the log is finite), in whole ns.
fn gap(rng: &mut ChaCha8Rng, mean_ns: f64) -> u64 {
    let u: f64 = rng.gen();
    (-(1.0 - u).ln() * mean_ns).round() as u64
}

impl Stream {
    /// The stream of client `id` at `hz` frames per second, its sums kept
    /// up to the first frame due at or past `span_ns` (or frame `count`).
    pub fn new(seed: u64, id: u32, hz: u64, span_ns: u64, count: Option<u64>) -> Self {
        let mut s = Stream {
            seed: key(seed, id),
            mean_ns: 1e9 / hz as f64,
            kept: vec![0],
            total: 0,
        };
        let mut c = s.cursor();
        loop {
            let done = match count {
                Some(n) => c.i >= n,
                None => c.offset >= span_ns,
            };
            if done {
                break;
            }
            s.step(&mut c);
        }
        s.total = c.i;
        s
    }

    /// A cursor at frame 0.
    pub fn cursor(&self) -> Cursor {
        self.cursor_at_block(0, 0)
    }

    fn cursor_at_block(&self, block: u64, offset: u64) -> Cursor {
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        // One f64 takes one u64, two 32-bit words.
        rng.set_word_pos(2 * (block * BLOCK) as u128);
        Cursor {
            i: block * BLOCK,
            offset,
            rng,
        }
    }

    /// Moves `c` one frame on, keeping the sum when it lands on a block.
    fn step(&mut self, c: &mut Cursor) {
        c.offset += gap(&mut c.rng, self.mean_ns);
        c.i += 1;
        if c.i.is_multiple_of(BLOCK) && c.i / BLOCK == self.kept.len() as u64 {
            self.kept.push(c.offset);
        }
    }

    /// Offset of frame `i`: from the nearest kept sum at or below it
    /// (frames past the kept ones are walked from the last).
    pub fn offset(&self, i: u64) -> u64 {
        self.cursor_at(i).offset
    }

    /// A cursor at frame `i`, walked from the nearest kept sum.
    pub fn cursor_at(&self, i: u64) -> Cursor {
        let block = (i / BLOCK).min(self.kept.len() as u64 - 1);
        let mut c = self.cursor_at_block(block, self.kept[block as usize]);
        self.advance(&mut c, i);
        c
    }

    /// Moves `c` on to frame `to` (not back).
    pub fn advance(&self, c: &mut Cursor, to: u64) {
        while c.i < to {
            c.offset += gap(&mut c.rng, self.mean_ns);
            c.i += 1;
        }
    }

    /// The first frame whose offset is past `span` (so the frames at or
    /// before it are counted): a binary search over the kept sums, then a
    /// walk.
    pub fn frames_until(&self, span: u64) -> u64 {
        let block = self.kept.partition_point(|&o| o <= span).max(1) - 1;
        let mut c = self.cursor_at_block(block as u64, self.kept[block]);
        while c.offset <= span {
            c.offset += gap(&mut c.rng, self.mean_ns);
            c.i += 1;
        }
        c.i
    }
}

/// The streams of the clients one fleet process runs, by position in the
/// fleet, each with two cursors (one pacing thread's copy: the streams are
/// shared, the cursors its own): due times are asked in two orders, of the
/// frames a client sends and, in ack mode, of the frames acked, which lag
/// behind; each keeps to the cursor nearest below it.
#[derive(Clone, Debug)]
pub struct Streams {
    streams: Arc<Vec<Option<Stream>>>,
    cursors: RefCell<Vec<[Option<Cursor>; 2]>>,
}

impl Streams {
    /// Streams for the clients at `indices` (ids `id_base + index`) of a
    /// fleet of `clients`, each made for `span(index)` ns or `count`
    /// frames.
    pub fn new(
        (seed, id_base, hz): (u64, u32, u64),
        clients: u32,
        indices: &[u32],
        span: impl Fn(u32) -> u64,
        count: Option<u64>,
    ) -> Self {
        let mut streams = vec![None; clients as usize];
        for &i in indices {
            let id = id_base.wrapping_add(i);
            streams[i as usize] = Some(Stream::new(seed, id, hz, span(i), count));
        }
        Streams {
            cursors: RefCell::new(vec![[None, None]; streams.len()]),
            streams: Arc::new(streams),
        }
    }

    fn stream(&self, index: u32) -> Option<&Stream> {
        self.streams.get(index as usize)?.as_ref()
    }

    /// Offset of frame `i` of the client at `index`: a few gaps on from
    /// the nearest of its cursors at or below `i`, else from a kept sum,
    /// which then replaces the cursor furthest behind (0 for a client this
    /// process does not run, which no one asks for).
    pub fn offset(&self, index: u32, i: u64) -> u64 {
        let Some(s) = self.stream(index) else {
            debug_assert!(false, "client {index} is not this fleet's");
            return 0;
        };
        let mut cursors = self.cursors.borrow_mut();
        let pair = &mut cursors[index as usize];
        let near = pair
            .iter_mut()
            .flatten()
            .filter(|c| c.i <= i && i - c.i <= BLOCK)
            .max_by_key(|c| c.i);
        if let Some(c) = near {
            s.advance(c, i);
            return c.offset;
        }
        let behind = match pair {
            [None, _] => 0,
            [_, None] => 1,
            [Some(a), Some(b)] => usize::from(b.i < a.i),
        };
        let c = pair[behind].insert(s.cursor_at(i));
        c.offset
    }

    /// Frames of the client at `index` due within `span` of its first.
    pub fn frames_until(&self, index: u32, span: u64) -> u64 {
        self.stream(index).map_or(0, |s| s.frames_until(span))
    }

    /// Frames the client at `index` sends in all.
    pub fn total(&self, index: u32) -> u64 {
        self.stream(index).map_or(0, |s| s.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random access, the cursor and the counts agree with one walk of
    /// the gaps; the same seed and id give the same stream, another id
    /// another.
    #[test]
    fn every_way_to_a_due_time_agrees() {
        let s = Stream::new(7, 3, 10_000, 50_000_000, None);
        let mut c = s.cursor();
        let mut walked = Vec::new();
        for i in 0..600 {
            s.advance(&mut c, i);
            walked.push(c.offset);
        }
        for i in [0, 1, 63, 64, 65, 127, 128, 500, 599] {
            assert_eq!(s.offset(i), walked[i as usize], "frame {i}");
        }
        for span in [0, 1, 99_999, 1_000_000, 30_000_000] {
            let want = walked.iter().filter(|&&o| o <= span).count() as u64;
            assert_eq!(s.frames_until(span), want, "span {span}");
        }
        let again = Stream::new(7, 3, 10_000, 1_000, None);
        assert_eq!(
            again.offset(599),
            walked[599],
            "kept sums or not, one stream"
        );
        assert_ne!(
            Stream::new(7, 4, 10_000, 1_000, None).offset(10),
            walked[10]
        );
        assert_ne!(
            Stream::new(8, 3, 10_000, 1_000, None).offset(10),
            walked[10]
        );
    }

    /// Two orders at once (sends ahead, acks lagging, as in ack mode) and
    /// jumps give the walk's due times.
    #[test]
    fn interleaved_orders_give_the_walks_due_times() {
        let streams = Streams::new((7, 0, 10_000), 2, &[1], |_| 100_000_000, None);
        let walk = Stream::new(7, 1, 10_000, 100_000_000, None);
        let mut asked = Vec::new();
        for sent in 0..2_000u64 {
            asked.push(sent);
            if sent >= 300 && sent % 3 == 0 {
                asked.extend([sent - 300, sent - 299, sent - 298]);
            }
        }
        asked.extend([5, 1_999, 64, 0, 700, 701, 1_500]);
        for i in asked {
            assert_eq!(streams.offset(1, i), walk.offset(i), "frame {i}");
        }
    }

    /// 50 ms at 10 kHz: about 500 frames, mean gap near 100 us.
    #[test]
    fn the_mean_rate_is_the_rate() {
        let s = Stream::new(1, 0, 10_000, 2_000_000_000, None);
        let n = s.frames_until(2_000_000_000);
        assert!((19_000..21_000).contains(&n), "{n} frames in 2 s at 10 kHz");
        let counted = Stream::new(1, 0, 10_000, 0, Some(1_000));
        assert_eq!(counted.total, 1_000);
        assert_eq!(counted.offset(1_000), s.offset(1_000));
        assert_eq!(s.total, s.frames_until(1_999_999_999));
    }
}
