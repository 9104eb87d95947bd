//! `rayon`: the reader loop runs on one of the pool's threads, and the
//! frames of its reads are rayon work from that thread, as rayon's own
//! fork-join code is: batches with no blocking wait (`none`, `cpu`) run
//! there at once, one after another while their work is short
//! (`--inline-cpu`, as `async`'s inline work: splitting costs wake-ups),
//! as a parallel iterator beyond (idle threads steal parts of it),
//! and batches with an io wait or a downstream call are spawned onto the
//! reader's own deque, where the pool's other threads steal them (the
//! reader does not block on a wait while others can). With one thread
//! the reader is the whole pool and runs everything itself. A turn's
//! batches are held back while reads come fast (as in `pool`,
//! `models::hand_off`) when there are other threads to wake: rayon wakes a
//! sleeping thread for new work, and the woken thread spins in rayon's idle
//! loop (32 `yield_now` calls) before it sleeps again. io waits block the
//! thread that runs them, so at most N-1 waits overlap; rayon is built for
//! cpu work and a blocked thread is simply lost to the pool for the wait.
//! Spawned batches in flight are bounded by a token channel: the reader
//! blocks when it is full, so TCP backpressure reaches the clients.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use workloads::{Frame, WorkKind};

use crate::hand_off::{read_into, Batch, Recorders, Workers};
use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::stats::Stats;
use crate::work::run_blocking;

/// Spawned batches in flight allowed per pool thread before the reader
/// blocks.
const JOBS_PER_THREAD: usize = 64;

/// A reader loop inside a rayon pool.
pub struct Rayon;

/// What the reader needs to run a batch, on its thread or another.
#[derive(Clone)]
struct Runner {
    /// Where the pool's threads record.
    stats: Arc<Recorders>,
    /// Call frames' downstream: each pool thread keeps its own connection.
    downstream: Option<SocketAddr>,
}

impl Runner {
    /// Does `batch`'s frames' work, records and answers them.
    fn run(&self, (frames, pending, socket): Batch) {
        let mut finished: Vec<_> = frames
            .iter()
            .map(|f| run_blocking(f, self.downstream))
            .collect();
        self.stats
            .record(rayon::current_thread_index().unwrap_or(0), &mut finished);
        socket.record_and_write(&frames);
        pending.done(frames.len());
    }
}

/// The reader's side of the pool (it runs on the pool's thread).
struct Jobs {
    runner: Runner,
    /// The pool's threads, the reader's among them.
    threads: usize,
    /// A turn's wait-free batches of at most this many kernel iterations
    /// (`--inline-cpu`) run on the reader one after another: splitting
    /// them would cost more wake-ups than it saves.
    inline_iters: u64,
    /// A token per spawned batch in flight; bounded.
    tokens: crossbeam_channel::Sender<()>,
    done: crossbeam_channel::Receiver<()>,
}

/// Whether frames block the thread that runs them (an io wait or a call).
fn waits(frames: &[Frame]) -> bool {
    frames
        .iter()
        .any(|f| matches!(f.kind, WorkKind::Io | WorkKind::Call))
}

/// The kernel iterations frames ask for.
fn iterations<'a>(frames: impl Iterator<Item = &'a Frame>) -> u64 {
    frames
        .map(|f| match f.kind {
            WorkKind::Cpu => u64::from(f.amount),
            _ => 0,
        })
        .sum()
}

/// Whether some of the `held` batches (their frames) would go to another
/// of the pool's `threads` (and wake it, whatever the others are doing): a
/// wait, or wait-free work over `inline_iters`, with another thread to take
/// it. Alone in the pool the reader runs everything itself.
fn leaves_reader<'a>(
    threads: usize,
    held: impl Iterator<Item = &'a [Frame]> + Clone,
    inline_iters: u64,
) -> bool {
    threads > 1 && (held.clone().any(waits) || iterations(held.flatten()) > inline_iters)
}

impl Workers for Jobs {
    fn would_wake(&self, held: &[Batch]) -> bool {
        let frames = held.iter().map(|(frames, _, _)| frames.as_slice());
        leaves_reader(self.threads, frames, self.inline_iters)
    }

    fn hand(&mut self, batches: &mut Vec<Batch>) -> Vec<Batch> {
        if self.threads == 1 {
            batches.drain(..).for_each(|b| self.runner.run(b));
            return Vec::new();
        }
        let (waits, quick): (Vec<Batch>, Vec<Batch>) =
            batches.drain(..).partition(|(frames, _, _)| waits(frames));
        // First what runs here (while the deque holds no new waits for
        // this thread to pick up while it joins), then the waits.
        let runner = &self.runner;
        if iterations(quick.iter().flat_map(|(frames, _, _)| frames)) <= self.inline_iters {
            quick.into_iter().for_each(|b| runner.run(b));
        } else {
            quick.into_par_iter().for_each(|b| runner.run(b));
        }
        for batch in waits {
            // The token is taken before the spawn: what is in flight stays
            // bounded.
            if self.tokens.send(()).is_err() {
                break; // cannot happen: the receiver lives in self
            }
            let (runner, done) = (self.runner.clone(), self.done.clone());
            // From the pool's own thread: onto its deque, for others to
            // steal, one batch a job, so waits overlap up to N-1.
            rayon::spawn(move || {
                runner.run(batch);
                let _ = done.try_recv();
            });
        }
        Vec::new()
    }
}

impl Model for Rayon {
    fn name(&self) -> &'static str {
        "rayon"
    }

    fn describe(&self) -> &'static str {
        "a mio reader loop on one of a rayon pool's N threads: a turn's frames with no wait run there, one after another up to --inline-cpu of work (100 us), as a parallel iterator beyond (idle threads steal parts), those with an io wait or call are spawned, a batch of up to 16 frames a job, for the other threads to steal (held back while reads come fast, so one wake-up serves several reads); io waits block a pool thread, so N-1 bounds concurrent io"
    }

    fn queue_is(&self) -> &'static str {
        "a free thread in rayon's pool: more threads or less work per frame"
    }

    fn read_late_is(&self) -> &'static str {
        "its reading loop is busy with its own share of the work, or has stopped reading while rayon's queue is full: more threads or less work per frame"
    }

    fn default_workers(&self, cpus: usize) -> usize {
        cpus.max(1)
    }

    fn needs_kernel_speed(&self) -> bool {
        true // --inline-cpu is a time; batches are kernel iterations
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        let threads = config.workers.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("rayon-{i}"))
            .build()
            .map_err(|e| ServeError::Worker(format!("cannot build the rayon pool: {e}")))?;
        // The reader loop is the pool's work too: it runs on a pool thread.
        pool.install(|| read(listener, config, shutdown, threads))
    }
}

/// The reader loop, on a pool thread; returns once every frame is done.
fn read(
    listener: TcpListener,
    config: &ServeConfig,
    shutdown: &Shutdown,
    threads: usize,
) -> Result<Stats, ServeError> {
    let (tokens, done) = crossbeam_channel::bounded(JOBS_PER_THREAD * threads);
    let jobs = Jobs {
        runner: Runner {
            stats: Arc::new(Recorders::new(config.client_latency)),
            downstream: config.downstream,
        },
        threads,
        inline_iters: config.inline_iters(),
        tokens,
        done,
    };
    let (jobs, ingest, served) = read_into(jobs, listener, config, shutdown);
    // Every job spawned finishes (and returns its token) before merging;
    // this thread takes its share of what is left.
    while !jobs.done.is_empty() {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut stats = Stats {
        ingest,
        ..Stats::default()
    };
    stats.process.merge(&jobs.runner.stats.merged());
    served.map(|()| stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_leaves_the_reader_table() {
        use WorkKind::{Call, Cpu, Io, None};
        // (threads, held batches' frames, inline iterations, leaves the reader)
        type Held = &'static [&'static [(WorkKind, u32)]];
        let table: &[(usize, Held, u64, bool)] = &[
            (1, &[&[(Io, 1000)]], 0, false),
            (1, &[&[(Cpu, 1_000_000)]], 0, false),
            (4, &[], 100, false),
            (4, &[&[(None, 0)]], 0, false),
            (4, &[&[(Cpu, 50), (Cpu, 50)]], 100, false),
            (4, &[&[(Cpu, 50)], &[(Cpu, 51)]], 100, true),
            (4, &[&[(None, 0), (Io, 1000)]], 100, true),
            (2, &[&[(Cpu, 1)], &[(Call, 1000)]], 100, true),
        ];
        for &(threads, held, inline, want) in table {
            let held: Vec<Vec<Frame>> = held
                .iter()
                .map(|b| {
                    b.iter()
                        .map(|&(kind, amount)| Frame {
                            kind,
                            amount,
                            ..Default::default()
                        })
                        .collect()
                })
                .collect();
            let frames = held.iter().map(Vec::as_slice);
            assert_eq!(
                leaves_reader(threads, frames, inline),
                want,
                "{threads} threads, {inline} inline iterations, {held:?}"
            );
        }
    }
}
