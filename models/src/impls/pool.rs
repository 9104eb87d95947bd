//! `pool`: a mio acceptor/reader front decodes frames and hands the frames
//! of each read, as one bounded batch, through a bounded channel to a fixed
//! pool of std threads that do the work. The channel is `flume`'s, whose
//! waiting threads block on a mutex and park: a lock-free channel whose
//! receivers spin while a send is half done (crossbeam's) stalled the whole
//! server for 20-130 ms at a time here once the workers outnumbered the
//! CPUs, every worker spinning through its time slice while the preempted
//! reader waited for its turn. A full queue blocks the
//! front, so TCP backpressure reaches the clients and memory stays bounded.
//! A connection at end of stream stays open until its queued frames are
//! processed (the last worker to finish one wakes the front).

use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use mio::Waker;
use workloads::Frame;

use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::reactor::{self, Dispatch, Pending, Socket};
use crate::slots::Slots;
use crate::stats::{IngestStats, ProcessStats, Stats};
use crate::work::process_blocking;

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

/// Hands batches to the workers through a bounded channel.
pub(crate) struct HandOff(pub flume::Sender<Batch>);

impl Dispatch for HandOff {
    type Conn = Arc<Pending>;

    fn open(&mut self, waker: &Arc<Waker>) -> Arc<Pending> {
        Pending::new(waker)
    }

    fn dispatch(&mut self, conn: &Arc<Pending>, socket: &Arc<Socket>, frames: &mut Vec<Frame>) {
        for chunk in frames.chunks(MAX_BATCH) {
            conn.add(chunk.len());
            // Fails only if every worker died; joining reports that.
            if self
                .0
                .send((chunk.to_vec(), conn.clone(), socket.clone()))
                .is_err()
            {
                conn.done(chunk.len());
            }
        }
        frames.clear();
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
        "one mio reader thread hands each read's frames, in batches of up to 16, through a bounded (mutex-and-park) channel to N worker threads; io waits block a worker, so N bounds concurrent io"
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
        let (tx, rx) = flume::bounded::<Batch>(QUEUE_PER_WORKER * workers);
        let handles = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                thread::Builder::new()
                    .name(format!("pool-{i}"))
                    .spawn(move || {
                        let mut stats = ProcessStats::default();
                        for (frames, pending, socket) in rx.iter() {
                            for frame in &frames {
                                process_blocking(frame, &mut stats);
                            }
                            socket.record_and_write(&frames);
                            pending.done(frames.len());
                        }
                        stats
                    })
                    .map_err(ServeError::io("spawn a pool worker"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(rx);
        let mut ingest = IngestStats::default();
        let slots = Slots::local(config.max_clients);
        let mut hand_off = HandOff(tx);
        let served = reactor::run(
            listener.into(),
            config,
            shutdown,
            &slots,
            &mut ingest,
            &mut hand_off,
        );
        drop(hand_off); // workers finish the queue, then stop
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
