//! Live counts for a metrics endpoint (`harness serve --metrics`), read
//! while the server runs, from another thread or process, without a lock
//! the hot path takes.
//!
//! Every thread that reads or processes frames owns one slot of counters
//! (single-writer atomics: a plain load and store, no locked instruction)
//! in a mapping shared with the children a server forks later (`prefork`),
//! and bumps it at the very places the report's own counts are taken, so
//! that once a run is idle the sum of the slots equals the report. A
//! thread that ends gives its slot back with its counts in it; a thread
//! that finds every slot taken shares slot 0, with atomic adds. Latencies
//! go into Prometheus buckets: cumulative counts need fixed bounds, and an
//! HDR histogram cannot live in shared memory (the report keeps those).
//! Off (the default), each hook costs one load of the mapping's state (set by [`enable`]).

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

pub use common::buckets::{bound_seconds, bucket_of, BucketCounts, BUCKETS};

/// A counter of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Valid frames read.
    Received,
    /// Frames whose work is done (warm-up included).
    Processed,
    /// Bytes read.
    Bytes,
    /// Reads that returned bytes.
    Reads,
    /// Frames acknowledged in ack records written.
    AckedFrames,
}

/// Counters before the error and connection ones.
const SCALARS: usize = 5;

/// Protocol error reasons, as `reason` label values (the order of
/// [`crate::stats::ErrorCounts`]' fields).
pub const ERROR_REASONS: [&str; 6] = [
    "bad_magic",
    "bad_version",
    "bad_flags",
    "bad_checksum",
    "work_over_limit",
    "truncated",
];

/// A connection event (the fields of [`crate::stats::ConnectionCounts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Conn {
    /// Taken into service.
    Accepted,
    /// Closed at once: `--max-clients` were open.
    Rejected,
    /// Closed by the server, any reason.
    Closed,
    /// Closed for silence past `--idle-timeout`.
    IdleTimeout,
    /// Closed for a frame not completed within `--frame-timeout`.
    FrameTimeout,
    /// Aborted by the peer.
    Reset,
    /// Accepted and closed at once: no file descriptor to spare.
    Shed,
}

/// Connection events, as `event` label values, in [`Conn`] order.
pub const CONN_EVENTS: [&str; 7] = [
    "accepted",
    "rejected",
    "closed",
    "idle_timeout",
    "frame_timeout",
    "reset",
    "shed",
];

/// The latency histograms of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Hist {
    /// Due to done.
    Latency,
    /// Written to done.
    Service,
    /// The four stages of [`crate::stages::STAGES`], from here on.
    Stage,
}

/// Histograms in a slot: latency, service, four stages.
pub const HISTS: usize = 6;
const COUNTERS: usize = SCALARS + ERROR_REASONS.len() + CONN_EVENTS.len();

#[repr(C)]
struct Buckets {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// One thread's counts; all-zero bytes are a valid, empty, unclaimed slot.
#[repr(C, align(64))]
struct Slot {
    claimed: AtomicU64,
    counters: [AtomicU64; COUNTERS],
    hists: [Buckets; HISTS],
}

/// The shared slots, once [`enable`] mapped them.
static BOARD: OnceLock<&'static [Slot]> = OnceLock::new();

/// This thread's slot; gives it back when the thread ends.
struct Claim(Cell<Option<&'static Slot>>);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(s) = self.0.get() {
            if !std::ptr::eq(s, &board()[0]) {
                s.claimed.store(0, Relaxed);
            }
        }
    }
}

thread_local! {
    static MINE: Claim = const { Claim(Cell::new(None)) };
}

/// What [`enable`] could not do.
#[derive(Debug, thiserror::Error)]
#[error("cannot map shared memory for the live counts: {0}")]
pub struct LiveError(#[from] nix::Error);

/// Maps `slots` empty slots (at least 2), shared with children forked
/// after; from then on the hooks count. Once per process; later calls do
/// nothing.
pub fn enable(slots: usize) -> Result<(), LiveError> {
    if BOARD.get().is_some() {
        return Ok(());
    }
    let n = slots.max(2);
    let bytes = NonZeroUsize::new(n * std::mem::size_of::<Slot>()).expect("non-zero size");
    // SAFETY: a fresh anonymous mapping is page-aligned (enough for the
    // 64-byte alignment of `Slot`) and zero-filled, and all-zero bytes are
    // valid `Slot`s (atomics only). It is never unmapped, so the 'static
    // slice stays valid in this process and in every child forked from it.
    let board = unsafe {
        let ptr = mmap_anonymous(
            None,
            bytes,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )?;
        std::slice::from_raw_parts(ptr.as_ptr().cast::<Slot>(), n)
    };
    let _ = BOARD.set(board);
    Ok(())
}

fn board() -> &'static [Slot] {
    BOARD.get().copied().unwrap_or(&[])
}

/// In a child just forked: forget the slot this thread inherited (its
/// parent still owns it), so the child claims one of its own.
pub fn forget_inherited_slot() {
    let _ = MINE.try_with(|m| m.0.set(None));
}

/// Runs `f` on this thread's slot (claiming one the first time), with
/// whether the slot is this thread's alone; nothing while counts are off.
#[inline]
fn with_slot(f: impl FnOnce(&Slot, bool)) {
    let Some(board) = BOARD.get() else { return };
    let _ = MINE.try_with(|m| {
        let slot = m.0.get().unwrap_or_else(|| {
            let s = board[1..]
                .iter()
                .find(|s| s.claimed.compare_exchange(0, 1, Relaxed, Relaxed).is_ok())
                .unwrap_or(&board[0]);
            m.0.set(Some(s));
            s
        });
        f(slot, !std::ptr::eq(slot, &board[0]));
    });
}

/// Adds `n` to `a`: a plain load and store for the slot's one writer.
#[inline]
fn add(a: &AtomicU64, n: u64, alone: bool) {
    if alone {
        a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
    } else {
        a.fetch_add(n, Relaxed);
    }
}

/// Counts `n` on `c`.
#[inline]
pub fn count(c: Counter, n: u64) {
    with_slot(|s, alone| add(&s.counters[c as usize], n, alone));
}

/// Counts one read of `bytes`.
#[inline]
pub fn read(bytes: u64) {
    with_slot(|s, alone| {
        add(&s.counters[Counter::Bytes as usize], bytes, alone);
        add(&s.counters[Counter::Reads as usize], 1, alone);
    });
}

/// Counts one protocol error of reason `i` ([`ERROR_REASONS`]).
#[inline]
pub fn error(i: usize) {
    with_slot(|s, alone| add(&s.counters[SCALARS + i], 1, alone));
}

/// Counts `n` connection events `e`.
#[inline]
pub fn conn(e: Conn, n: u64) {
    with_slot(|s, alone| {
        add(
            &s.counters[SCALARS + ERROR_REASONS.len() + e as usize],
            n,
            alone,
        )
    });
}

/// Counts one processed frame: `latency` and `service` (ns) when it was
/// measured, its `stages` (ns) when they were recorded.
#[inline]
pub fn processed(measured: Option<(u64, u64)>, stages: Option<&[u64; 4]>) {
    with_slot(|s, alone| {
        add(&s.counters[Counter::Processed as usize], 1, alone);
        let put = |h: usize, ns: u64| {
            let b = &s.hists[h];
            add(&b.counts[bucket_of(ns)], 1, alone);
            add(&b.sum_ns, ns, alone);
        };
        if let Some((latency, service)) = measured {
            put(Hist::Latency as usize, latency);
            put(Hist::Service as usize, service);
        }
        for (i, &ns) in stages.into_iter().flatten().enumerate() {
            put(Hist::Stage as usize + i, ns);
        }
    });
}

/// Every slot summed: what a scrape reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// [`Counter`]s, in order.
    pub counters: [u64; SCALARS],
    /// Protocol errors, in [`ERROR_REASONS`] order.
    pub errors: [u64; 6],
    /// Connection events, in [`CONN_EVENTS`] order.
    pub conns: [u64; 7],
    /// Latency, service, then the four stages.
    pub hists: Vec<BucketCounts>,
}

impl Snapshot {
    /// The value of counter `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }
}

/// The sum of every slot now; `None` while counts are off.
pub fn snapshot() -> Option<Snapshot> {
    let board = BOARD.get()?;
    let mut out = Snapshot {
        hists: vec![BucketCounts::default(); HISTS],
        ..Snapshot::default()
    };
    for s in board.iter() {
        let c = |i: usize| s.counters[i].load(Relaxed);
        for (i, v) in out.counters.iter_mut().enumerate() {
            *v += c(i);
        }
        for (i, v) in out.errors.iter_mut().enumerate() {
            *v += c(SCALARS + i);
        }
        for (i, v) in out.conns.iter_mut().enumerate() {
            *v += c(SCALARS + ERROR_REASONS.len() + i);
        }
        for (o, h) in out.hists.iter_mut().zip(&s.hists) {
            for (a, b) in o.counts.iter_mut().zip(&h.counts) {
                *a += b.load(Relaxed);
            }
            o.sum_ns = o.sum_ns.wrapping_add(h.sum_ns.load(Relaxed));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads that count, end, and count again (reusing slots), and more
    /// threads than slots (sharing slot 0): the sum is exact.
    #[test]
    fn slots_sum_exactly_over_threads_that_come_and_go() {
        enable(4).unwrap();
        let before = snapshot().unwrap();
        let threads: Vec<_> = (0..12)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1_000 {
                        count(Counter::Received, 1);
                        processed(Some((15_000, 5_000)), Some(&[1, 2, 3, 4]));
                    }
                    conn(Conn::Accepted, 1);
                    error(5);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let after = snapshot().unwrap();
        assert_eq!(
            after.get(Counter::Received) - before.get(Counter::Received),
            12_000
        );
        assert_eq!(
            after.get(Counter::Processed) - before.get(Counter::Processed),
            12_000
        );
        assert_eq!(after.conns[0] - before.conns[0], 12);
        assert_eq!(after.errors[5] - before.errors[5], 12);
        let lat = &after.hists[Hist::Latency as usize];
        assert_eq!(lat.counts[1] - before.hists[0].counts[1], 12_000);
        assert_eq!(
            after.hists[Hist::Stage as usize + 3].total() - before.hists[5].total(),
            12_000
        );
    }
}
