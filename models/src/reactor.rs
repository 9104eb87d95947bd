//! The mio readiness loop shared by `single`, the `pool` front and each
//! `prefork` child: accepts, reads with a per-turn budget for fairness,
//! closes idle and over-limit connections, and hands the valid frames of
//! each read to a [`Dispatch`]. A connection is closed only once its
//! dispatcher says every frame read from it was processed.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use workloads::Frame;

use crate::ingest::ConnIngest;
use crate::shed::{is_exhaustion, Reserve};
use crate::slots::Slots;
use crate::stats::IngestStats;
use crate::{ServeConfig, ServeError, Shutdown, SHUTDOWN_POLL};

const LISTENER: Token = Token(0);
/// Woken by whoever finishes the last pending frame of a closing connection.
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Bytes read at once; inline models process them before looking at
/// shutdown again, so this bounds how late a shutdown is noticed.
const READ_CHUNK: usize = 8 * 1024;
/// Bytes read from one connection before the others get a turn.
const READ_BUDGET: usize = 64 * 1024;
const IDLE_SWEEP: Duration = Duration::from_millis(100);

/// Where the frames of each read go.
pub(crate) trait Dispatch {
    /// What the dispatcher keeps per connection (e.g. a pending count).
    type Conn;
    /// State for a new connection; `waker` wakes the loop.
    fn open(&mut self, waker: &Arc<Waker>) -> Self::Conn;
    /// Takes the valid frames of one read, in order (leaves `frames` empty).
    fn dispatch(&mut self, conn: &Self::Conn, frames: &mut Vec<Frame>);
    /// The connection is to be closed: true once every frame dispatched for
    /// it is processed; otherwise the dispatcher must wake the loop when the
    /// last one is.
    fn try_close(&mut self, conn: &Self::Conn) -> bool;
    /// Called after every turn of the loop with the reading side's counts
    /// (prefork children publish them here).
    fn turn(&mut self, _ingest: &IngestStats) {}
}

/// Frames of one connection handed to other threads but not yet
/// processed; the last one done wakes the loop if the connection is
/// waiting to close. Used by the models that hand frames off.
pub(crate) struct Pending {
    count: std::sync::atomic::AtomicUsize,
    closing: std::sync::atomic::AtomicBool,
    waker: Arc<Waker>,
}

impl Pending {
    /// A connection with nothing pending.
    pub(crate) fn new(waker: &Arc<Waker>) -> Arc<Self> {
        Arc::new(Pending {
            count: Default::default(),
            closing: Default::default(),
            waker: waker.clone(),
        })
    }

    /// `n` more frames handed off.
    pub(crate) fn add(&self, n: usize) {
        self.count.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// `n` frames processed; wakes the loop if the connection is closing
    /// and these were its last.
    pub(crate) fn done(&self, n: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.count.fetch_sub(n, SeqCst) == n && self.closing.load(SeqCst) {
            let _ = self.waker.wake();
        }
    }

    /// Marks the connection closing; true if nothing is pending.
    pub(crate) fn try_close(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.closing.store(true, SeqCst);
        self.count.load(SeqCst) == 0
    }
}

/// Processes every frame on the loop's own thread (`single`, `prefork`).
pub(crate) struct Inline<F: FnMut(&Frame)>(pub F);

impl<F: FnMut(&Frame)> Dispatch for Inline<F> {
    type Conn = ();
    fn open(&mut self, _: &Arc<Waker>) {}
    fn dispatch(&mut self, _: &(), frames: &mut Vec<Frame>) {
        frames.drain(..).for_each(|f| (self.0)(&f));
    }
    fn try_close(&mut self, _: &()) -> bool {
        true
    }
}

struct Conn<C> {
    stream: TcpStream,
    ingest: ConnIngest,
    last_active: Instant,
    dispatch: C,
}

enum ReadOutcome {
    /// Read until the socket would block.
    Drained,
    /// Budget spent with data left: come back next turn.
    More,
    /// End of stream, error or invalid frame: close it.
    Close,
}

/// Serves until `shutdown`, passing the valid frames of every read to
/// `sink` in the order read.
pub(crate) fn run<D: Dispatch>(
    listener: TcpListener,
    config: &ServeConfig,
    shutdown: &Shutdown,
    slots: &Slots,
    stats: &mut IngestStats,
    sink: &mut D,
) -> Result<(), ServeError> {
    listener
        .set_nonblocking(true)
        .map_err(ServeError::io("set the listener non-blocking"))?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut poll = Poll::new().map_err(ServeError::io("create poll"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(ServeError::io("register the listener"))?;
    let mut door = Door {
        reserve: Reserve::new(&listener),
        listener,
        slots,
    };
    let waker =
        Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServeError::io("create a waker"))?);
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<usize, Conn<D::Conn>> = HashMap::new();
    // Read to the end, waiting for their frames to be processed.
    let mut closing: Vec<(TcpStream, D::Conn)> = Vec::new();
    let mut frames: Vec<Frame> = Vec::with_capacity(READ_CHUNK / workloads::FRAME_LEN);
    let mut next_token = FIRST_CONN;
    let mut backlog: VecDeque<usize> = VecDeque::new();
    let mut ready: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut last_sweep = Instant::now();

    while !shutdown.is_triggered() {
        let timeout = if backlog.is_empty() {
            SHUTDOWN_POLL
        } else {
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(ServeError::Io {
                what: "poll",
                source: e,
            });
        }
        ready.clear();
        ready.extend(backlog.drain(..));
        for event in events.iter() {
            match event.token() {
                LISTENER => accept_all(
                    &mut door,
                    &poll,
                    stats,
                    &mut conns,
                    &mut next_token,
                    &mut || sink.open(&waker),
                ),
                WAKER => {}
                token => ready.push(token.0),
            }
        }
        closing.retain(|(_, c)| {
            let open = !sink.try_close(c);
            if !open {
                slots.release();
                stats.connections.closed += 1;
            }
            open
        });
        for &id in &ready {
            if shutdown.is_triggered() {
                break; // what is unread stays unread; what was read is done
            }
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            match read_some(conn, &mut buf, config, shutdown, stats, sink, &mut frames) {
                ReadOutcome::Drained => {}
                ReadOutcome::More => backlog.push_back(id),
                ReadOutcome::Close => {
                    if let Some(mut c) = conns.remove(&id) {
                        let _ = poll.registry().deregister(&mut c.stream);
                        if sink.try_close(&c.dispatch) {
                            slots.release();
                            stats.connections.closed += 1;
                        } else {
                            closing.push((c.stream, c.dispatch));
                        }
                    }
                }
            }
        }
        sink.turn(stats);
        if last_sweep.elapsed() >= IDLE_SWEEP {
            last_sweep = Instant::now();
            let idle = config.idle_timeout;
            let expired: Vec<usize> = conns
                .iter()
                .filter_map(|(&id, c)| {
                    if !idle.is_zero() && c.last_active.elapsed() >= idle {
                        stats.connections.idle_timeouts += 1;
                        Some(id)
                    } else if c.ingest.frame_overdue(config.frame_timeout) {
                        stats.connections.frame_timeouts += 1;
                        Some(id)
                    } else {
                        None
                    }
                })
                .collect();
            for id in expired {
                if let Some(mut c) = conns.remove(&id) {
                    // Closed like any other: once what was read is done.
                    let _ = poll.registry().deregister(&mut c.stream);
                    if sink.try_close(&c.dispatch) {
                        slots.release();
                        stats.connections.closed += 1;
                    } else {
                        closing.push((c.stream, c.dispatch));
                    }
                }
            }
        }
    }
    // Shutdown: what was read is processed by the caller before it returns.
    let open = conns.len() + closing.len();
    stats.connections.closed += open as u64;
    for _ in 0..open {
        slots.release();
    }
    Ok(())
}

/// The listener with what admission needs: the `--max-clients` slots and a
/// descriptor in reserve for shedding.
struct Door<'a> {
    listener: mio::net::TcpListener,
    slots: &'a Slots,
    reserve: Reserve,
}

fn accept_all<C>(
    door: &mut Door,
    poll: &Poll,
    stats: &mut IngestStats,
    conns: &mut HashMap<usize, Conn<C>>,
    next_token: &mut usize,
    open: &mut dyn FnMut() -> C,
) {
    let slots = door.slots;
    loop {
        match door.listener.accept() {
            Ok((mut stream, _)) => {
                if !slots.try_acquire() {
                    stats.connections.rejected += 1;
                    continue; // dropping the stream closes it at once
                }
                let id = *next_token;
                *next_token += 1;
                if let Err(e) = poll
                    .registry()
                    .register(&mut stream, Token(id), Interest::READABLE)
                {
                    tracing::warn!("cannot register a connection: {e}");
                    slots.release();
                    continue;
                }
                stats.connections.accepted += 1;
                conns.insert(
                    id,
                    Conn {
                        stream,
                        ingest: ConnIngest::new(),
                        last_active: Instant::now(),
                        dispatch: open(),
                    },
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_exhaustion(&e) => {
                // Pending connections would wait for the next edge: shed them.
                stats.connections.shed += door.reserve.shed(&door.listener);
                return;
            }
            Err(e) => {
                // Another child may have taken it (prefork), or it went away.
                tracing::debug!("accept failed: {e}");
                return;
            }
        }
    }
}

fn read_some<D: Dispatch>(
    conn: &mut Conn<D::Conn>,
    buf: &mut [u8],
    config: &ServeConfig,
    shutdown: &Shutdown,
    stats: &mut IngestStats,
    sink: &mut D,
    frames: &mut Vec<Frame>,
) -> ReadOutcome {
    let mut budget = READ_BUDGET;
    loop {
        match conn.stream.read(buf) {
            Ok(0) => {
                conn.ingest.on_eof(stats);
                return ReadOutcome::Close;
            }
            Ok(n) => {
                conn.last_active = Instant::now();
                let fed = conn
                    .ingest
                    .on_bytes(&buf[..n], &config.limits, stats, |f| frames.push(f));
                // Frames before an invalid one still count.
                if !frames.is_empty() {
                    sink.dispatch(&conn.dispatch, frames);
                }
                if fed.is_err() {
                    return ReadOutcome::Close;
                }
                budget = budget.saturating_sub(n);
                if budget == 0 || shutdown.is_triggered() {
                    return ReadOutcome::More;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadOutcome::Drained,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.ingest.on_reset(stats);
                return ReadOutcome::Close;
            }
        }
    }
}
