//! `pool`: a mio acceptor/reader front decodes frames and hands the frames
//! of each read, as one bounded batch, through a bounded queue to a fixed
//! pool of std threads that do the work. The queue
//! ([`crate::work_queue::WorkQueue`]) wakes a parked worker only when no
//! running one can take the batch and a CPU is free, and a worker waiting
//! out an io frame steps aside so that a parked one takes over: a channel
//! that wakes a receiver per batch (`flume`) paid a wake-up and a context
//! switch per read. Its waiting workers park on a condition variable and
//! never spin: a lock-free channel whose receivers spin while a send is
//! half done (crossbeam's) stalled the whole server for 20-130 ms at a time
//! here once the workers outnumbered the CPUs. A full queue blocks the
//! front, so TCP backpressure reaches the clients and memory stays bounded.
//! A connection at end of stream stays open until its queued frames are
//! processed (the last worker to finish one wakes the front).

use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::Waker;
use workloads::{Frame, WorkKind};

use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::reactor::{self, Dispatch, Pending, Socket};
use crate::slots::Slots;
use crate::stats::{IngestStats, ProcessStats, Stats};
use crate::work::process_blocking;
use crate::work_queue::WorkQueue;

/// Most frames in one hand-off: a read's frames are split into batches of
/// this size, so one worker never serializes a whole read's io waits.
pub const MAX_BATCH: usize = 16;
/// Queued batches allowed per worker before the front blocks (at most
/// `MAX_BATCH * QUEUE_PER_WORKER` frames per worker).
const QUEUE_PER_WORKER: usize = 64;

/// Reader front plus worker pool.
pub struct Pool;

/// A batch of one connection's frames.
pub(crate) type Batch = (Vec<Frame>, Arc<Pending>, Arc<Socket>);

/// Frames held back that are worth a worker's wake-up at once.
pub const COALESCE_FRAMES: usize = 64;
/// Reads must come at least this often (their mean gap) for frames to be
/// held back: then the next read is due well inside the hold; rarer
/// reads are handed over at once (the loop's wait for events is rounded up
/// to a millisecond, so a hold with no read after it would cost that).
pub const COALESCE_GAP: Duration = Duration::from_micros(25);

/// Hands batches to the workers through the bounded queue, at the end of
/// each turn of the loop. Where that would wake a parked worker (none is
/// running to take them) and reads come fast, the batches are held back,
/// up to `--coalesce` or [`COALESCE_FRAMES`], so that one wake-up and its
/// two context switches serve several reads: reads come one per turn (at
/// 100 clients one every 10 us or so), and a wake-up per read cost a third
/// of the CPU per frame at `none`.
pub(crate) struct HandOff {
    queue: Arc<WorkQueue<Batch>>,
    /// The longest hold (`--coalesce`; zero: none).
    coalesce: Duration,
    /// Batches not yet queued.
    held: Vec<Batch>,
    /// Their frames.
    held_frames: usize,
    /// When the oldest of them was read.
    held_since: Option<Instant>,
    /// When the last read was dispatched.
    last_read: Option<Instant>,
    /// Mean gap between reads (exponentially weighted, 1/8), ns.
    gap_ns: f64,
}

impl HandOff {
    /// Queues every batch held.
    fn flush(&mut self) {
        self.held_since = None;
        self.held_frames = 0;
        // Refused only once closed; joining the workers reports why.
        for (frames, pending, _) in self.queue.push_all(self.held.drain(..)) {
            pending.done(frames.len());
        }
    }
}

impl Dispatch for HandOff {
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
            self.gap_ns += (gap - self.gap_ns) / 8.0;
        }
        self.last_read = Some(now);
        self.held_since.get_or_insert(now);
        frames.clear();
    }

    fn turn(&mut self, _ingest: &IngestStats) {
        let Some(since) = self.held_since else {
            return;
        };
        let reads_fast = self.gap_ns < COALESCE_GAP.as_nanos() as f64;
        let worth_waking = self.held_frames >= COALESCE_FRAMES || since.elapsed() >= self.coalesce;
        if !reads_fast || worth_waking || !self.queue.would_wake() {
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

impl Model for Pool {
    fn name(&self) -> &'static str {
        "pool"
    }

    fn describe(&self) -> &'static str {
        "one mio reader thread hands each read's frames, in batches of up to 16, through a bounded queue to N worker threads, waking one only when no running worker can take a batch and a CPU is free; io waits block a worker (a parked one takes over), so N bounds concurrent io"
    }

    fn queue_is(&self) -> &'static str {
        "a free worker: more workers or less work per frame"
    }

    fn read_late_is(&self) -> &'static str {
        "its one reading loop is busy, or has stopped reading while the workers' queue is full: more workers or less work per frame"
    }

    fn default_workers(&self, cpus: usize) -> usize {
        (4 * cpus).max(4)
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        let workers = config.workers.max(1);
        // The CPUs this process may run on (its affinity, as pinned).
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        let queue = Arc::new(WorkQueue::<Batch>::new(
            QUEUE_PER_WORKER * workers,
            workers,
            cpus,
        ));
        let handles = (0..workers)
            .map(|i| {
                let queue = queue.clone();
                let by_client = config.client_latency;
                thread::Builder::new()
                    .name(format!("pool-{i}"))
                    .spawn(move || worker(&queue, ProcessStats::new(by_client)))
                    .map_err(ServeError::io("spawn a pool worker"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut ingest = IngestStats::default();
        let slots = Slots::local(config.max_clients);
        let mut hand_off = HandOff {
            queue,
            coalesce: config.coalesce,
            held: Vec::new(),
            held_frames: 0,
            held_since: None,
            last_read: None,
            gap_ns: f64::from(u32::MAX),
        };
        let served = reactor::run(
            listener.into(),
            config,
            shutdown,
            &slots,
            &mut ingest,
            &mut hand_off,
        );
        hand_off.flush(); // what was read is done
        hand_off.queue.close(); // workers finish the queue, then stop
        let mut stats = Stats {
            ingest,
            ..Stats::default()
        };
        for h in handles {
            let p = h
                .join()
                .map_err(|_| ServeError::Worker("a pool worker panicked".into()))?;
            stats.process.merge(&p);
        }
        served.map(|()| stats)
    }
}

/// A worker: takes batches until the queue is closed and drained, stepping
/// aside for each io wait.
fn worker(queue: &WorkQueue<Batch>, mut stats: ProcessStats) -> ProcessStats {
    while let Some((frames, pending, socket)) = queue.pop() {
        for frame in &frames {
            let blocks = frame.kind == WorkKind::Io && frame.amount > 0;
            let _away = blocks.then(|| queue.away());
            process_blocking(frame, &mut stats);
        }
        socket.record_and_write(&frames);
        pending.done(frames.len());
    }
    stats
}
