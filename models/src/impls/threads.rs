//! `threads`: the classic design, one std thread per connection doing
//! blocking reads; cpu and io work run on the connection's own thread, so an
//! io wait stalls only that connection. `--workers` caps the threads: while
//! that many connections are open, new ones wait in the listener's accept
//! queue (they are not refused; `--max-clients` still refuses beyond it).
//! In ack mode the thread writes the acks of each read's frames with a
//! non-blocking send; what a full socket holds back waits for writability
//! alongside the next read.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{send, MsgFlags};
use workloads::Frame;

use crate::ack::{AckBuf, ACK_LINGER};
use crate::ingest::ConnIngest;
use crate::model::{Model, ServeConfig, ServeError, Shutdown, SHUTDOWN_POLL};
use crate::shed::{is_exhaustion, Reserve};
use crate::slots::Slots;
use crate::stats::{IngestStats, ProcessStats, Stats};
use crate::work::{run_blocking, Done};

/// Bytes read at once.
const READ_CHUNK: usize = 8 * 1024;
/// Stack of a connection thread: the loop keeps its buffers on the heap.
/// What one costs to start is benchmarked (`server/thread_spawn_join`).
pub const STACK: usize = 256 * 1024;
/// Frames a connection thread works before it records them into the
/// shared statistics (one lock per batch; at most 64 frames' records
/// held, about 4.5 KiB).
const RECORD_EVERY: usize = 64;

/// Thread per connection.
pub struct Threads;

impl Model for Threads {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn describe(&self) -> &'static str {
        "one blocking std thread per connection (at most N; more wait in the accept queue); cpu and io work run on the connection's thread, so an io wait stalls only that connection"
    }

    fn queue_is(&self) -> &'static str {
        "its connection's earlier frames (one thread per connection works them in order): a model that overlaps a connection's waits"
    }

    fn read_late_is(&self) -> &'static str {
        "its connection's thread reads only between frames, and works them in order: a model that overlaps a connection's waits"
    }

    fn default_workers(&self, _cpus: usize) -> usize {
        512
    }

    fn worker_candidates(&self, cpus: usize, _io_waits: usize) -> Vec<usize> {
        // N caps connections (one thread each), it is not a pool size:
        // any cap above the fleet size serves it the same.
        vec![self.default_workers(cpus)]
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        listener
            .set_nonblocking(true)
            .map_err(ServeError::io("set the listener non-blocking"))?;
        let workers = config.workers.max(1);
        let slots = Slots::local(config.max_clients);
        let mut reserve = Reserve::new(&listener);
        let mut merged = Stats::default();
        let processed = Mutex::new(ProcessStats::new(config.client_latency));
        let mut accepts = IngestStats::default();
        thread::scope(|scope| -> Result<(), ServeError> {
            let (done_tx, done_rx) = mpsc::channel::<IngestStats>();
            let mut active = 0usize;
            while !shutdown.is_triggered() {
                while let Ok(s) = done_rx.try_recv() {
                    active -= 1;
                    merged.ingest.merge(&s);
                }
                if active >= workers {
                    if let Ok(s) = done_rx.recv_timeout(SHUTDOWN_POLL) {
                        active -= 1;
                        merged.ingest.merge(&s);
                    }
                    continue;
                }
                if !readable(&listener) {
                    continue;
                }
                while active < workers {
                    let stream = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) if is_exhaustion(&e) => {
                            accepts.connections.shed += reserve.shed(&listener);
                            break;
                        }
                        Err(e) => {
                            if e.kind() != ErrorKind::WouldBlock {
                                tracing::debug!("accept failed: {e}");
                            }
                            break;
                        }
                    };
                    if !slots.try_acquire() {
                        accepts.connections.add(crate::live::Conn::Rejected, 1);
                        continue; // dropping the stream closes it at once
                    }
                    let tx = done_tx.clone();
                    let (slots, processed) = (&slots, &processed);
                    let spawned = thread::Builder::new()
                        .name("conn".into())
                        .stack_size(STACK)
                        .spawn_scoped(scope, move || {
                            let stats = connection(stream, config, shutdown, processed);
                            slots.release();
                            let _ = tx.send(stats);
                        });
                    match spawned {
                        Ok(_) => {
                            accepts.connections.add(crate::live::Conn::Accepted, 1);
                            active += 1;
                        }
                        Err(e) => {
                            tracing::warn!("cannot start a connection thread: {e}");
                            slots.release();
                            accepts.connections.add(crate::live::Conn::Rejected, 1);
                        }
                    }
                }
            }
            // Shutdown: every thread finishes what it has read.
            drop(done_tx);
            for s in done_rx.iter() {
                merged.ingest.merge(&s);
            }
            Ok(())
        })?;
        merged.ingest.merge(&accepts);
        merged.process = processed.into_inner().expect("stats lock");
        Ok(merged)
    }
}

/// Waits up to [`SHUTDOWN_POLL`] for a connection to accept.
fn readable(listener: &TcpListener) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let wait = PollTimeout::try_from(SHUTDOWN_POLL).unwrap_or(PollTimeout::NONE);
    matches!(poll(&mut fds, wait), Ok(n) if n > 0)
}

/// Serves one connection until end of stream, an invalid frame, the idle
/// timeout or shutdown; every frame read is processed before it returns,
/// and recorded into `processed` in batches of up to [`RECORD_EVERY`] (a
/// connection keeps no histograms of its own: hundreds of threads would
/// each hold them).
fn connection(
    mut stream: TcpStream,
    config: &ServeConfig,
    shutdown: &Shutdown,
    processed: &Mutex<ProcessStats>,
) -> IngestStats {
    let mut ingest = IngestStats::default();
    let mut done: Vec<Done> = Vec::with_capacity(RECORD_EVERY);
    let _ = stream.set_nonblocking(false);
    // Acks go out as written, not held back by Nagle.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(SHUTDOWN_POLL));
    let mut conn = ConnIngest::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut frames: Vec<Frame> = Vec::with_capacity(READ_CHUNK / workloads::FRAME_LEN);
    let mut last_active = Instant::now();
    let mut acks = AckBuf::new();
    while !shutdown.is_triggered() {
        // Acks held back by a full socket: wait for either direction.
        if !acks.is_empty() {
            let (readable, _) = wait(&stream, true, SHUTDOWN_POLL);
            flush_acks(&stream, &mut acks);
            let idle = config.idle_timeout;
            if !readable && !idle.is_zero() && last_active.elapsed() >= idle {
                ingest.connections.add(crate::live::Conn::IdleTimeout, 1);
                break;
            }
            if !readable {
                continue;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                conn.on_eof(&mut ingest);
                break;
            }
            Ok(n) => {
                last_active = Instant::now();
                let fed = conn.on_bytes(&buf[..n], &config.limits, &mut ingest, |f| frames.push(f));
                for f in frames.drain(..) {
                    done.push(run_blocking(&f, config.downstream));
                    acks.push(&f);
                    if done.len() >= RECORD_EVERY {
                        record(processed, &mut done);
                    }
                }
                flush_acks(&stream, &mut acks);
                if fed.is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let idle = config.idle_timeout;
                if !idle.is_zero() && last_active.elapsed() >= idle {
                    ingest.connections.add(crate::live::Conn::IdleTimeout, 1);
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                conn.on_reset(&mut ingest);
                break;
            }
        }
        if conn.frame_overdue(config.frame_timeout) {
            ingest.connections.add(crate::live::Conn::FrameTimeout, 1);
            break;
        }
    }
    let since = Instant::now();
    while !acks.is_empty() && since.elapsed() < ACK_LINGER && !shutdown.is_triggered() {
        if !wait(&stream, false, SHUTDOWN_POLL).1 {
            continue;
        }
        flush_acks(&stream, &mut acks);
    }
    if shutdown.is_triggered() {
        acks.stop();
    } else {
        acks.abandon();
    }
    record(processed, &mut done);
    ingest.acks.merge(&acks.counts);
    ingest.connections.add(crate::live::Conn::Closed, 1);
    ingest
}

/// Records the frames in `done` into `processed`, emptying it.
fn record(processed: &Mutex<ProcessStats>, done: &mut Vec<Done>) {
    if done.is_empty() {
        return;
    }
    let mut p = processed.lock().expect("stats lock");
    for (frame, done_ns, digest) in done.drain(..) {
        p.record(&frame, done_ns, digest);
    }
}

/// Waits up to `timeout` for `stream` to be writable (and readable, if
/// `read`); says which it is.
fn wait(stream: &TcpStream, read: bool, timeout: std::time::Duration) -> (bool, bool) {
    let mut flags = PollFlags::POLLOUT;
    if read {
        flags |= PollFlags::POLLIN;
    }
    let mut fds = [PollFd::new(stream.as_fd(), flags)];
    let wait = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::NONE);
    if !matches!(poll(&mut fds, wait), Ok(n) if n > 0) {
        return (false, false);
    }
    let got = fds[0].revents().unwrap_or(PollFlags::empty());
    let broken = got.intersects(PollFlags::POLLERR | PollFlags::POLLHUP);
    (
        got.contains(PollFlags::POLLIN) || broken,
        got.contains(PollFlags::POLLOUT) || broken,
    )
}

/// Writes what `acks` owes without blocking (the socket itself is
/// blocking: each send says not to wait). A broken connection drops them.
fn flush_acks(stream: &TcpStream, acks: &mut AckBuf) {
    acks.write_now(|x| {
        send(
            stream.as_raw_fd(),
            x,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(std::io::Error::from)
    });
}
