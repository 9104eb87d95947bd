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

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;

use workloads::WorkKind;

use crate::hand_off::{read_into, Batch, Recorders, Workers};
use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::stats::Stats;
use crate::work::run_blocking;
use crate::work_queue::WorkQueue;

/// Queued batches allowed per worker before the front blocks (at most
/// `hand_off::MAX_BATCH * QUEUE_PER_WORKER` frames per worker).
const QUEUE_PER_WORKER: usize = 64;

/// Reader front plus worker pool.
pub struct Pool;

impl Workers for Arc<WorkQueue<Batch>> {
    fn would_wake(&self, _held: &[Batch]) -> bool {
        WorkQueue::would_wake(self)
    }

    fn hand(&mut self, batches: &mut Vec<Batch>) -> Vec<Batch> {
        self.push_all(batches.drain(..))
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
        let recorders = Arc::new(Recorders::new(config.client_latency));
        let handles = (0..workers)
            .map(|i| {
                let (queue, recorders) = (queue.clone(), recorders.clone());
                let downstream = config.downstream;
                thread::Builder::new()
                    .name(format!("pool-{i}"))
                    .spawn(move || worker(&queue, &recorders, i, downstream))
                    .map_err(ServeError::io("spawn a pool worker"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (queue, ingest, served) = read_into(queue, listener, config, shutdown);
        queue.close(); // workers finish the queue, then stop
        let mut stats = Stats {
            ingest,
            ..Stats::default()
        };
        for h in handles {
            h.join()
                .map_err(|_| ServeError::Worker("a pool worker panicked".into()))?;
        }
        stats.process.merge(&recorders.merged());
        served.map(|()| stats)
    }
}

/// Worker `me`: takes batches until the queue is closed and drained,
/// stepping aside for each io wait or call (on its own connection to
/// `downstream`), and records each batch at once.
fn worker(
    queue: &WorkQueue<Batch>,
    recorders: &Recorders,
    me: usize,
    downstream: Option<SocketAddr>,
) {
    let mut done = Vec::with_capacity(crate::hand_off::MAX_BATCH);
    while let Some((frames, pending, socket)) = queue.pop() {
        for frame in &frames {
            let blocks = match frame.kind {
                WorkKind::Io => frame.amount > 0,
                WorkKind::Call => true,
                _ => false,
            };
            let _away = blocks.then(|| queue.away());
            done.push(run_blocking(frame, downstream));
        }
        recorders.record(me, &mut done);
        socket.record_and_write(&frames);
        pending.done(frames.len());
    }
}
