//! The hand-off of `pool` and `rayon`: the reader loop's frames go to the
//! workers in batches, at the end of each turn of the loop, and while the
//! next read is likely inside the hold (reads' mean gap under `--coalesce`)
//! and handing them over would wake a parked worker, they are held back, up
//! to `--coalesce` or [`COALESCE_FRAMES`], so that one wake-up and its two
//! context switches serve several reads: reads come one per turn (at 100
//! clients one every 10 us or so), and a wake-up per read cost a third of
//! the CPU per frame at `none`. [`COALESCE_FRAMES`] held are handed over
//! at once, mid-turn. Rarer reads are handed over at once (the
//! loop's wait for events is rounded up to a millisecond, so a hold with
//! no read after it would cost that).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::Waker;
use workloads::Frame;

use crate::model::{ServeConfig, ServeError, Shutdown};
use crate::reactor::{self, Dispatch, Pending, Socket};
use crate::slots::Slots;
use crate::stats::{IngestStats, ProcessStats};
use crate::work::Done;

/// Most frames in one batch: a read's frames are split into batches of
/// this size, so one worker never serializes a whole read's io waits.
pub const MAX_BATCH: usize = 16;
/// Frames held back that are worth a worker's wake-up at once.
pub const COALESCE_FRAMES: usize = 64;

/// A batch of one connection's frames.
pub(crate) type Batch = (Vec<Frame>, Arc<Pending>, Arc<Socket>);

/// The workers' side of the hand-off.
pub(crate) trait Workers {
    /// Whether handing `held` over now would wake a parked worker (no
    /// running one could take them).
    fn would_wake(&self, held: &[Batch]) -> bool;
    /// Hands every batch of `batches` over (leaving it empty), waiting
    /// while the workers' queue is full; gives back those refused (only
    /// once the workers are stopping).
    fn hand(&mut self, batches: &mut Vec<Batch>) -> Vec<Batch>;
}

/// Holds a turn's batches back while that pays, then hands them over.
struct HandOff<W> {
    workers: W,
    /// The longest hold (`--coalesce`; zero: none).
    coalesce: Duration,
    /// Batches not yet handed over.
    held: Vec<Batch>,
    /// Their frames.
    held_frames: usize,
    /// When the oldest of them was read.
    held_since: Option<Instant>,
    /// When the last read was dispatched.
    last_read: Option<Instant>,
    /// Mean gap between reads (exponentially weighted, 1/8), ns; starts
    /// as "reads are rare" until two reads have been seen.
    gap_ns: f64,
}

impl<W: Workers> HandOff<W> {
    /// A hand-off to `workers`, holding back up to `config.coalesce` while
    /// reads come less than that apart.
    fn new(workers: W, config: &ServeConfig) -> Self {
        HandOff {
            workers,
            coalesce: config.coalesce,
            held: Vec::new(),
            held_frames: 0,
            held_since: None,
            last_read: None,
            gap_ns: f64::INFINITY,
        }
    }

    /// Hands over every batch held.
    fn flush(&mut self) {
        self.held_since = None;
        self.held_frames = 0;
        // Refused only once stopping; joining the workers reports why.
        for (frames, pending, _) in self.workers.hand(&mut self.held) {
            pending.done(frames.len());
        }
    }
}

impl<W: Workers> Dispatch for HandOff<W> {
    type Conn = Arc<Pending>;

    fn open(&mut self, waker: &Arc<Waker>) -> Arc<Pending> {
        Pending::new(waker)
    }

    fn dispatch(&mut self, conn: &Arc<Pending>, socket: &Arc<Socket>, frames: &mut Vec<Frame>) {
        for chunk in frames.chunks(MAX_BATCH) {
            conn.add(chunk.len());
            self.held_frames += chunk.len();
            self.held
                .push((chunk.to_vec(), conn.clone(), socket.clone()));
        }
        let now = Instant::now();
        if let Some(last) = self.last_read {
            let gap = now.duration_since(last).as_nanos() as f64;
            self.gap_ns = if self.gap_ns.is_finite() {
                self.gap_ns + (gap - self.gap_ns) / 8.0
            } else {
                gap
            };
        }
        self.last_read = Some(now);
        self.held_since.get_or_insert(now);
        frames.clear();
        // Enough for a wake-up: hand over now, not at the turn's end, so
        // that what is held (and what a stop must finish) stays bounded by
        // the workers' queue, however much one turn reads.
        if self.held_frames >= COALESCE_FRAMES {
            self.flush();
        }
    }

    fn turn(&mut self, _ingest: &IngestStats) {
        let Some(since) = self.held_since else {
            return;
        };
        // `dispatch` already handed over what was worth a wake-up.
        let reads_fast = self.gap_ns < self.coalesce.as_nanos() as f64;
        let held_long = since.elapsed() >= self.coalesce;
        if !reads_fast || held_long || !self.workers.would_wake(&self.held) {
            self.flush();
        }
    }

    fn wait_at_most(&self) -> Option<Duration> {
        self.held_since
            .map(|t| self.coalesce.saturating_sub(t.elapsed()))
    }

    fn try_close(&mut self, conn: &Arc<Pending>) -> bool {
        conn.try_close()
    }
}

/// Runs the reader loop on `listener` until `shutdown`, handing what it
/// reads to `workers` (held back as [`HandOff`] holds), then hands over
/// what it still holds; gives the workers back, with what the loop
/// ingested and how it ended.
pub(crate) fn read_into<W: Workers>(
    workers: W,
    listener: std::net::TcpListener,
    config: &ServeConfig,
    shutdown: &Shutdown,
) -> (W, IngestStats, Result<(), ServeError>) {
    let mut hand_off = HandOff::new(workers, config);
    let mut ingest = IngestStats::default();
    let slots = Slots::local(config.max_clients);
    let served = reactor::run(
        listener.into(),
        config,
        shutdown,
        &slots,
        &mut ingest,
        &mut hand_off,
    );
    hand_off.flush(); // what was read is done
    (hand_off.workers, ingest, served)
}

/// Where the workers of `pool` and `rayon` record their frames: one
/// statistics block per CPU the server may use, not one per worker. At most
/// that many workers run at once, so the blocks stay warm in the caches;
/// a block per worker (64 workers under io, 0.6 MiB of histograms each)
/// was cold at every record and cost a quarter of `pool`'s CPU there.
/// `threads` records into one block under a lock the same way.
pub(crate) struct Recorders(Vec<Mutex<ProcessStats>>);

impl Recorders {
    /// One block per CPU this process may run on.
    pub(crate) fn new(by_client: bool) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Recorders(
            (0..cpus)
                .map(|_| Mutex::new(ProcessStats::new(by_client)))
                .collect(),
        )
    }

    /// Records what worker `worker` did (`done`, emptied) under one lock.
    pub(crate) fn record(&self, worker: usize, done: &mut Vec<Done>) {
        let block = &self.0[worker % self.0.len()];
        // A worker that panicked holding the lock left whole records.
        let mut stats = block.lock().unwrap_or_else(|e| e.into_inner());
        for (frame, done_ns, digest) in done.drain(..) {
            stats.record(&frame, done_ns, digest);
        }
    }

    /// Every block merged.
    pub(crate) fn merged(&self) -> ProcessStats {
        let mut all = ProcessStats::new(false);
        for block in &self.0 {
            all.merge(&block.lock().unwrap_or_else(|e| e.into_inner()));
        }
        all
    }
}
