//! `async`: a tokio multi-thread runtime with one task per connection.
//!
//! Frames of one connection are processed concurrently: an io frame becomes
//! a task waiting on the timerfd-backed [`crate::timer`] (so waits overlap
//! and end within microseconds of their deadline, as the blocking models'
//! sleeps do; tokio's own timers would round up to 1 ms), a call frame a
//! task awaiting its reply on a connection from the runtime's pool
//! ([`AsyncCalls`]), and the cpu frames
//! of each read run as one batch: inline on the runtime thread when the
//! batch is short (`--inline-cpu`, 100 us by default: tokio's advice of
//! 10-100 us between awaits, and no hand-off or wake-up paid for it), else
//! on tokio's blocking pool, capped at `workers` threads, so long kernel
//! work never starves the reactor threads. Once
//! [`MAX_IN_FLIGHT`] frames of a connection are pending, its task stops
//! reading and TCP pushes back; this also bounds the work left to finish at
//! shutdown. In ack mode the task owes acks for the frames it finishes and
//! writes them with `try_write`, never waiting on the socket; what a full
//! socket holds back goes out when it is writable again.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};
use workloads::clock::monotonic_ns;
use workloads::{Frame, WorkKind};

use crate::ack::{AckBuf, ACK_LINGER};
use crate::downstream::AsyncCalls;
use crate::ingest::ConnIngest;
use crate::model::{Model, ServeConfig, ServeError, Shutdown, SHUTDOWN_POLL};
use crate::shed::{is_exhaustion, Reserve};
use crate::slots::Slots;
use crate::stats::{IngestStats, Stats};
use crate::timer::Timer;
use crate::work::{cpu_digest, run_blocking, start, Done, CALL_ANSWERED};

/// Frames read but not yet processed, per connection, before it stops reading.
pub const MAX_IN_FLIGHT: usize = 1024;
const READ_CHUNK: usize = 8 * 1024;
const FLUSH_EVERY: usize = 512;

/// Tokio, a task per connection.
pub struct Async;

impl Model for Async {
    fn name(&self) -> &'static str {
        "async"
    }

    fn describe(&self) -> &'static str {
        "tokio multi-thread runtime, a task per connection; io waits overlap on a timerfd watched by the runtime, cpu work runs in per-read batches on a blocking pool of N threads"
    }

    fn queue_is(&self) -> &'static str {
        "the runtime to run its connection's task or its cpu batch: more runtime threads, or long work off the runtime"
    }

    fn read_late_is(&self) -> &'static str {
        "its connection's task is not polled while the runtime's threads are busy: more runtime threads, or long work off the runtime"
    }

    fn default_workers(&self, cpus: usize) -> usize {
        cpus.max(1)
    }

    fn needs_kernel_speed(&self) -> bool {
        true // --inline-cpu is a time; batches are kernel iterations
    }

    fn worker_candidates(&self, cpus: usize, _io_waits: usize) -> Vec<usize> {
        // io waits are timers on the runtime, never a worker: only the CPUs matter.
        let cpus = cpus.max(1);
        vec![cpus, 4 * cpus]
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        let workers = config.workers.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .max_blocking_threads(workers)
            .enable_all()
            .build()
            .map_err(ServeError::io("build the tokio runtime"))?;
        let shared = Arc::new(Mutex::new(Stats::new(config.client_latency)));
        runtime.block_on(async {
            let waits = Waits {
                timer: Timer::start().map_err(ServeError::io("create the timerfd"))?,
                calls: AsyncCalls::new(config.downstream),
            };
            accept_loop(
                listener,
                config.clone(),
                shutdown.clone(),
                shared.clone(),
                waits,
            )
            .await
        })?;
        // The runtime's readiness waits are its workers' parks (on the io
        // driver's epoll, or for another worker to hold it).
        let metrics = runtime.metrics();
        let parks: u64 = (0..metrics.num_workers())
            .map(|w| metrics.worker_park_count(w))
            .sum();
        runtime.shutdown_timeout(Duration::from_secs(1));
        let mut stats = shared.lock().expect("stats lock").clone();
        stats.ingest.waits += parks;
        Ok(stats)
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: Shutdown,
    shared: Arc<Mutex<Stats>>,
    waits: Waits,
) -> Result<(), ServeError> {
    listener
        .set_nonblocking(true)
        .map_err(ServeError::io("set the listener non-blocking"))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(ServeError::io("register the listener"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Slots::local(config.max_clients));
    let mut reserve = Reserve::new(&listener);
    let config = Arc::new(config);
    let mut conns = JoinSet::new();
    let mut tick = tokio::time::interval(SHUTDOWN_POLL);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let mut s = shared.lock().expect("stats lock");
                    if !slots.try_acquire() {
                        s.ingest.connections.add(crate::live::Conn::Rejected, 1);
                        continue;
                    }
                    s.ingest.connections.add(crate::live::Conn::Accepted, 1);
                    // Acks go out as written, not held back by Nagle.
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(
                        stream,
                        config.clone(),
                        shared.clone(),
                        stop_rx.clone(),
                        slots.clone(),
                        waits.clone(),
                    ));
                }
                Err(e) if is_exhaustion(&e) => {
                    // Shed what is pending; accept again after a short pause.
                    let shed = reserve.shed(&listener);
                    shared.lock().expect("stats lock").ingest.connections.shed += shed;
                    sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    sleep(Duration::from_millis(5)).await;
                }
            },
            _ = tick.tick() => {
                if shutdown.is_triggered() {
                    break;
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    while let Some(joined) = conns.join_next().await {
        joined.map_err(|e| ServeError::Worker(format!("connection task failed: {e}")))?;
    }
    Ok(())
}

/// Buffers finished frames and records them into the shared statistics in
/// batches, so the lock is taken once per [`FLUSH_EVERY`] frames.
struct Recorder {
    pending: Vec<Done>,
    shared: Arc<Mutex<Stats>>,
}

impl Recorder {
    fn push(&mut self, done: Done) {
        self.pending.push(done);
        if self.pending.len() >= FLUSH_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut s = self.shared.lock().expect("stats lock");
        for (frame, done_ns, digest) in self.pending.drain(..) {
            s.process.record(&frame, done_ns, digest);
        }
    }
}

async fn connection(
    stream: TcpStream,
    config: Arc<ServeConfig>,
    shared: Arc<Mutex<Stats>>,
    mut stop: watch::Receiver<bool>,
    slots: Arc<Slots>,
    waits: Waits,
) {
    let mut ingest = IngestStats::default();
    let mut conn = ConnIngest::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut work = Work {
        in_flight: JoinSet::new(),
        pending: 0,
        recorder: Recorder {
            pending: Vec::with_capacity(FLUSH_EVERY),
            shared: shared.clone(),
        },
        acks: AckBuf::new(),
        cpu_batch: Vec::new(),
        inline_iters: config.inline_iters(),
    };
    // Acks are owed and the last write would have blocked.
    let mut acks_blocked = false;
    let idle = config.idle_timeout;
    let far = Duration::from_secs(86_400 * 365);
    let mut deadline = Instant::now() + if idle.is_zero() { far } else { idle };
    // One timer for the connection, moved only when it fires early or a
    // half-read frame is due before it: a timer made afresh per read cost
    // a registration in the runtime's timer wheel per read.
    let timeout = sleep_until(deadline);
    tokio::pin!(timeout);
    loop {
        if !acks_blocked && !work.acks.is_empty() {
            acks_blocked = flush_acks(&stream, &mut work.acks);
        }
        let due = conn
            .frame_deadline(config.frame_timeout)
            .map_or(deadline, |d| deadline.min(d.into()));
        if due < timeout.deadline() {
            timeout.as_mut().reset(due);
        }
        tokio::select! {
            biased;
            Some(joined) = work.in_flight.join_next(), if !work.in_flight.is_empty() => {
                let done = joined.expect("work tasks do not panic");
                work.pending -= done.len();
                work.done(done);
            }
            ready = stream.writable(), if acks_blocked => {
                // Broken: the read side finds out.
                acks_blocked = ready.is_ok() && flush_acks(&stream, &mut work.acks);
            }
            _ = stop.changed() => break,
            () = &mut timeout => {
                if due > Instant::now() {
                    // Read since it was set: wait for the moved deadline.
                    timeout.as_mut().reset(due);
                    continue;
                }
                if conn.frame_overdue(config.frame_timeout) {
                    ingest.connections.add(crate::live::Conn::FrameTimeout, 1);
                } else {
                    ingest.connections.add(crate::live::Conn::IdleTimeout, 1);
                }
                break;
            }
            ready = stream.readable(), if work.pending < MAX_IN_FLIGHT => match ready.and_then(|()| stream.try_read(&mut buf)) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(0) => {
                    conn.on_eof(&mut ingest);
                    break;
                }
                Err(_) => {
                    conn.on_reset(&mut ingest);
                    break;
                }
                Ok(n) => {
                    if !idle.is_zero() {
                        deadline = Instant::now() + idle;
                    }
                    let fed = conn.on_bytes(&buf[..n], &config.limits, &mut ingest, |f| work.dispatch(f, &waits));
                    work.spawn_cpu_batch();
                    if fed.is_err() {
                        break;
                    }
                }
            }
        }
    }
    let stopping = *stop.borrow();
    work.finish(stream, stopping, &mut ingest).await;
    ingest.connections.add(crate::live::Conn::Closed, 1);
    shared.lock().expect("stats lock").ingest.merge(&ingest);
    slots.release();
}

/// How the runtime's tasks wait: io frames on its timer, call frames on
/// its downstream connections.
#[derive(Clone)]
struct Waits {
    timer: Timer,
    calls: AsyncCalls,
}

/// A connection's frames between read and done: the tasks doing their
/// work, the acks they owe, and the record of each.
struct Work {
    in_flight: JoinSet<Vec<Done>>,
    /// Frames in `in_flight`.
    pending: usize,
    recorder: Recorder,
    acks: AckBuf,
    /// cpu frames of the current read, run as one batch.
    cpu_batch: Vec<Frame>,
    /// A batch of at most this many kernel iterations runs inline.
    inline_iters: u64,
}

impl Work {
    /// Starts one frame just read: an io wait as a timer task, a call as a
    /// task awaiting its reply, cpu work into this read's batch, no work
    /// done at once.
    fn dispatch(&mut self, frame: Frame, waits: &Waits) {
        match frame.kind {
            WorkKind::Cpu => self.cpu_batch.push(frame),
            WorkKind::Io if frame.amount > 0 => {
                self.pending += 1;
                let wait = Duration::from_micros(frame.amount as u64);
                let timer = waits.timer.clone();
                self.in_flight.spawn(async move {
                    let frame = start(frame);
                    timer.sleep(wait).await;
                    vec![(frame, monotonic_ns(), None)]
                });
            }
            WorkKind::Call => {
                self.pending += 1;
                let calls = waits.calls.clone();
                self.in_flight.spawn(async move {
                    let frame = start(frame);
                    let answered = calls.call(frame.amount, frame.seq).await;
                    let digest = CALL_ANSWERED.filter(|_| answered);
                    vec![(frame, monotonic_ns(), digest)]
                });
            }
            _ => self.done_one(run_blocking(&frame, None)),
        }
    }

    /// Runs this read's cpu frames: inline when short, else as one task on
    /// the blocking pool.
    fn spawn_cpu_batch(&mut self) {
        if self.cpu_batch.is_empty() {
            return;
        }
        let iters: u64 = self.cpu_batch.iter().map(|f| u64::from(f.amount)).sum();
        if iters <= self.inline_iters {
            for f in std::mem::take(&mut self.cpu_batch) {
                let f = start(f);
                let digest = cpu_digest(&f);
                self.done_one((f, monotonic_ns(), digest));
            }
            return;
        }
        let batch = std::mem::take(&mut self.cpu_batch);
        self.pending += batch.len();
        self.in_flight.spawn_blocking(move || {
            batch
                .into_iter()
                .map(|f| {
                    let f = start(f);
                    let digest = cpu_digest(&f);
                    (f, monotonic_ns(), digest)
                })
                .collect()
        });
    }

    /// Frames whose work is done: acked and recorded.
    fn done(&mut self, done: Vec<Done>) {
        for d in done {
            self.done_one(d);
        }
    }

    /// One frame whose work is done.
    fn done_one(&mut self, d: Done) {
        self.acks.push(&d.0);
        self.recorder.push(d);
    }

    /// Finishes every frame already read and writes its acks (lingering
    /// for them unless stopping), then closes the connection.
    async fn finish(mut self, stream: TcpStream, stopping: bool, ingest: &mut IngestStats) {
        while let Some(joined) = self.in_flight.join_next().await {
            self.done(joined.expect("work tasks do not panic"));
        }
        self.recorder.flush();
        let acks = &mut self.acks;
        if !stopping {
            let _ = tokio::time::timeout(ACK_LINGER, async {
                while flush_acks(&stream, acks) {
                    if stream.writable().await.is_err() {
                        break;
                    }
                }
            })
            .await;
            acks.abandon();
        } else {
            flush_acks(&stream, acks);
            acks.stop();
        }
        ingest.acks.merge(&acks.counts);
        drop(stream);
    }
}

/// Writes what `acks` owes without waiting/// Writes what `acks` owes without waiting: true if some is left because
/// the socket is full. A broken connection drops them.
fn flush_acks(stream: &TcpStream, acks: &mut AckBuf) -> bool {
    acks.write_now(|x| stream.try_write(x))
}
