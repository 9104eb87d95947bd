//! `rayon`: a mio reader front hands the frames of each read, in batches,
//! to a rayon thread pool (work-stealing: an idle thread takes queued
//! batches from a busy one). io waits block the rayon thread that runs them,
//! so at most N waits overlap, as in `pool`; rayon is built for cpu work and
//! a blocked thread is simply lost to the pool for the wait. In-flight
//! batches are bounded by a token channel: the front blocks when it is
//! full, so TCP backpressure reaches the clients.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::Waker;
use workloads::Frame;

use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::reactor::{self, Dispatch, Pending, Socket};
use crate::slots::Slots;
use crate::stats::{IngestStats, ProcessStats, Stats};
use crate::work::process_blocking;

/// Most frames in one job.
pub const MAX_BATCH: usize = 16;
/// Jobs in flight allowed per pool thread before the front blocks.
const JOBS_PER_THREAD: usize = 64;

/// Reader front plus a rayon pool.
pub struct Rayon;

struct Jobs {
    pool: Arc<rayon::ThreadPool>,
    /// One statistics block per pool thread (uncontended locks).
    stats: Arc<Vec<Mutex<ProcessStats>>>,
    /// A token per job in flight; bounded.
    tokens: crossbeam_channel::Sender<()>,
    done: crossbeam_channel::Receiver<()>,
}

impl Dispatch for Jobs {
    type Conn = Arc<Pending>;

    fn open(&mut self, waker: &Arc<Waker>) -> Arc<Pending> {
        Pending::new(waker)
    }

    fn dispatch(&mut self, conn: &Arc<Pending>, socket: &Arc<Socket>, frames: &mut Vec<Frame>) {
        for chunk in frames.chunks(MAX_BATCH) {
            if self.tokens.send(()).is_err() {
                break; // cannot happen: the receiver lives in self
            }
            conn.add(chunk.len());
            let batch = chunk.to_vec();
            let (pending, socket) = (conn.clone(), socket.clone());
            let (stats, done) = (self.stats.clone(), self.done.clone());
            self.pool.spawn(move || {
                let i = rayon::current_thread_index().unwrap_or(0);
                {
                    let mut st = stats[i].lock().expect("stats lock");
                    for frame in &batch {
                        process_blocking(frame, &mut st);
                    }
                }
                socket.record_and_write(&batch);
                pending.done(batch.len());
                let _ = done.try_recv();
            });
        }
        frames.clear();
    }

    fn try_close(&mut self, conn: &Arc<Pending>) -> bool {
        conn.try_close()
    }
}

impl Model for Rayon {
    fn name(&self) -> &'static str {
        "rayon"
    }

    fn describe(&self) -> &'static str {
        "one mio reader thread hands each read's frames, in batches of up to 16, to a work-stealing rayon pool of N threads; io waits block a pool thread, so N bounds concurrent io"
    }

    fn queue_is(&self) -> &'static str {
        "a free thread in rayon's pool: more threads or less work per frame"
    }

    fn read_late_is(&self) -> &'static str {
        "its one reading loop is busy, or has stopped reading while rayon's queue is full: more threads or less work per frame"
    }

    fn default_workers(&self, cpus: usize) -> usize {
        cpus.max(1)
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        let workers = config.workers.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("rayon-{i}"))
            .build()
            .map_err(|e| ServeError::Worker(format!("cannot build the rayon pool: {e}")))?;
        let (tokens, done) = crossbeam_channel::bounded(JOBS_PER_THREAD * workers);
        let mut jobs = Jobs {
            pool: Arc::new(pool),
            stats: Arc::new(
                (0..workers)
                    .map(|_| Mutex::new(ProcessStats::new(config.client_latency)))
                    .collect(),
            ),
            tokens,
            done,
        };
        let mut ingest = IngestStats::default();
        let slots = Slots::local(config.max_clients);
        let served = reactor::run(
            listener.into(),
            config,
            shutdown,
            &slots,
            &mut ingest,
            &mut jobs,
        );
        // Every job spawned finishes (and returns its token) before merging.
        while !jobs.done.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut stats = Stats {
            ingest,
            ..Stats::default()
        };
        for s in jobs.stats.iter() {
            stats.process.merge(&s.lock().expect("stats lock"));
        }
        served.map(|()| stats)
    }
}
