//! `rayon`: a mio reader front hands the frames of its reads, in batches,
//! to a rayon thread pool (work-stealing: an idle thread takes queued
//! batches from a busy one). A turn's batches go over as one job, held
//! back while reads come fast (as in `pool`, `models::hand_off`): rayon
//! wakes a sleeping thread for every job injected from outside its pool,
//! and a job per read paid a wake-up, and the woken thread's spinning
//! before it sleeps again, per read. Inside a job the batches are a
//! parallel iterator, so idle threads steal them. io waits block the rayon
//! thread that runs them, so at most N waits overlap, as in `pool`; rayon
//! is built for cpu work and a blocked thread is simply lost to the pool
//! for the wait. Batches in flight are bounded by a token channel: the
//! front blocks when it is full, so TCP backpressure reaches the clients.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use crate::hand_off::{Batch, HandOff, Recorders, Workers};
use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::reactor;
use crate::slots::Slots;
use crate::stats::{IngestStats, Stats};
use crate::work::run_blocking;

/// Batches in flight allowed per pool thread before the front blocks.
const JOBS_PER_THREAD: usize = 64;
/// Most batches in one job (at most the tokens of one thread).
const JOB_BATCHES: usize = 16;

/// Reader front plus a rayon pool.
pub struct Rayon;

struct Jobs {
    pool: Arc<rayon::ThreadPool>,
    /// Where the pool's threads record.
    stats: Arc<Recorders>,
    /// A token per batch in flight; bounded.
    tokens: crossbeam_channel::Sender<()>,
    done: crossbeam_channel::Receiver<()>,
    /// Call frames' downstream: each pool thread keeps its own connection.
    downstream: Option<SocketAddr>,
}

impl Workers for Jobs {
    fn would_wake(&self) -> bool {
        // rayon wakes a sleeping thread for every job injected from outside
        // the pool, whatever its running threads are doing.
        true
    }

    fn hand(&mut self, batches: &mut Vec<Batch>) -> Vec<Batch> {
        let mut batches = batches.drain(..).peekable();
        while batches.peek().is_some() {
            // A job's tokens are taken before it is spawned, so a job is
            // never larger than the tokens there are.
            let job: Vec<Batch> = batches.by_ref().take(JOB_BATCHES).collect();
            for _ in &job {
                if self.tokens.send(()).is_err() {
                    break; // cannot happen: the receiver lives in self
                }
            }
            self.spawn(job);
        }
        Vec::new()
    }
}

impl Jobs {
    /// Runs `job`'s batches on the pool, as a parallel iterator (idle
    /// threads steal from it) when the pool has more than one thread.
    fn spawn(&self, job: Vec<Batch>) {
        let (stats, done, downstream) = (self.stats.clone(), self.done.clone(), self.downstream);
        // With one thread there is no one to steal: no splitting.
        let parallel = self.pool.current_num_threads() > 1;
        self.pool.spawn(move || {
            let run = |(frames, pending, socket): Batch| {
                let mut finished: Vec<_> =
                    frames.iter().map(|f| run_blocking(f, downstream)).collect();
                stats.record(rayon::current_thread_index().unwrap_or(0), &mut finished);
                socket.record_and_write(&frames);
                pending.done(frames.len());
                let _ = done.try_recv();
            };
            if parallel && job.len() > 1 {
                job.into_par_iter().for_each(run);
            } else {
                job.into_iter().for_each(run);
            }
        });
    }
}

impl Model for Rayon {
    fn name(&self) -> &'static str {
        "rayon"
    }

    fn describe(&self) -> &'static str {
        "one mio reader thread hands a turn's reads, in batches of up to 16 frames, as one job to a work-stealing rayon pool of N threads (held back while reads come fast, so one wake-up serves several reads); io waits block a pool thread, so N bounds concurrent io"
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
        let jobs = Jobs {
            pool: Arc::new(pool),
            stats: Arc::new(Recorders::new(config.client_latency)),
            tokens,
            done,
            downstream: config.downstream,
        };
        let mut hand_off = HandOff::new(jobs, config);
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
        let jobs = hand_off.workers;
        // Every job spawned finishes (and returns its token) before merging.
        while !jobs.done.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut stats = Stats {
            ingest,
            ..Stats::default()
        };
        stats.process.merge(&jobs.stats.merged());
        served.map(|()| stats)
    }
}
