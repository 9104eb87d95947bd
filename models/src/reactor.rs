//! The mio readiness loop shared by `single`, the `pool` front and each
//! `prefork` child: accepts, reads with a per-turn budget for fairness,
//! closes idle and over-limit connections, and hands the valid frames of
//! each read to a [`Dispatch`]. A connection is closed only once its
//! dispatcher says every frame read from it was processed and the acks it
//! owes are written (ack mode; see [`crate::ack`]): whoever processed the
//! frames writes them at once, never blocking; what a full socket holds
//! back the loop writes when it is writable.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::os::fd::AsRawFd;
use workloads::Frame;

use crate::ack::{AckBuf, AckCounts, ACK_LINGER};
use crate::ingest::ConnIngest;
use crate::model::{ServeConfig, ServeError, Shutdown, SHUTDOWN_POLL};
use crate::placement::Inbox;
use crate::shed::{is_exhaustion, Reserve};
use crate::slots::Slots;
use crate::stats::IngestStats;

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
/// How often a closing connection whose client is slow to read its acks is
/// tried again.
const ACK_RETRY: Duration = Duration::from_millis(1);

/// Where the frames of each read go.
pub(crate) trait Dispatch {
    /// What the dispatcher keeps per connection (e.g. a pending count).
    type Conn;
    /// State for a new connection; `waker` wakes the loop.
    fn open(&mut self, waker: &Arc<Waker>) -> Self::Conn;
    /// Takes the valid frames of one read, in order (leaves `frames` empty),
    /// and records in `socket` the ones it has processed (on another
    /// thread: with [`Socket::record_and_write`]).
    fn dispatch(&mut self, conn: &Self::Conn, socket: &Arc<Socket>, frames: &mut Vec<Frame>);
    /// The connection is to be closed: true once every frame dispatched for
    /// it is processed; otherwise the dispatcher must wake the loop when the
    /// last one is.
    fn try_close(&mut self, conn: &Self::Conn) -> bool;
    /// Called after every turn of the loop with the reading side's counts
    /// (prefork children publish them here).
    fn turn(&mut self, _ingest: &IngestStats) {}
    /// The longest the loop may wait for events before its next turn (a
    /// dispatcher holding frames back says when they are due).
    fn wait_at_most(&self) -> Option<Duration> {
        None
    }
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

/// One connection's socket and the acks it owes, shared with the threads
/// that process its frames: whoever finishes frames writes their acks at
/// once, without blocking; what a full socket holds back the loop writes
/// when it is writable. The socket closes when the last holder lets go.
pub(crate) struct Socket {
    stream: TcpStream,
    acks: Mutex<AckBuf>,
    token: usize,
    /// Already in the loop's list of sockets to flush.
    queued: AtomicBool,
    /// Some frame asked for an ack: until then no ack work is done at all.
    asked: AtomicBool,
    notify: Arc<AckNotify>,
}

/// Sockets whose acks a full socket held back off the loop's thread.
struct AckNotify {
    tokens: Mutex<Vec<usize>>,
    waker: Arc<Waker>,
}

impl Socket {
    /// Owes acks for those of `frames` (processed) that asked for one; the
    /// loop writes them after the dispatch. False if none asked.
    pub(crate) fn record(&self, frames: &[Frame]) -> bool {
        if !frames.iter().any(|f| f.ack) {
            return false;
        }
        // Seen by the loop after this thread's next lock or wake.
        self.asked.store(true, Ordering::Relaxed);
        let mut b = self.acks.lock().expect("ack lock");
        frames.iter().for_each(|f| b.push(f));
        true
    }

    /// As [`Socket::record`], for frames processed on another thread, which
    /// writes the acks now; the loop is woken for what the socket holds back.
    pub(crate) fn record_and_write(&self, frames: &[Frame]) {
        if self.record(frames) && self.flush() && !self.queued.swap(true, Ordering::SeqCst) {
            self.notify
                .tokens
                .lock()
                .expect("ack lock")
                .push(self.token);
            let _ = self.notify.waker.wake();
        }
    }

    /// Writes what is owed without blocking: true if some is left because
    /// the write would block. A broken connection drops them.
    fn flush(&self) -> bool {
        if !self.asked.load(Ordering::Relaxed) {
            return false;
        }
        let mut b = self.acks.lock().expect("ack lock");
        !b.is_empty() && b.write_now(|x| (&self.stream).write(x))
    }

    /// True while acks are owed.
    fn owes_acks(&self) -> bool {
        self.asked.load(Ordering::Relaxed) && !self.acks.lock().expect("ack lock").is_empty()
    }

    /// Drops what is owed (counted).
    fn abandon(&self) {
        self.acks.lock().expect("ack lock").abandon();
    }

    /// The server stops: what is owed stays unsent (counted).
    fn stop(&self) {
        self.acks.lock().expect("ack lock").stop();
    }

    fn counts(&self) -> AckCounts {
        self.acks.lock().expect("ack lock").counts
    }
}

/// Processes every frame on the loop's own thread (`single`, `prefork`).
pub(crate) struct Inline<F: FnMut(&Frame)>(pub F);

impl<F: FnMut(&Frame)> Dispatch for Inline<F> {
    type Conn = ();
    fn open(&mut self, _: &Arc<Waker>) {}
    fn dispatch(&mut self, _: &(), socket: &Arc<Socket>, frames: &mut Vec<Frame>) {
        frames.iter().for_each(|f| (self.0)(f));
        socket.record(frames);
        frames.clear();
    }
    fn try_close(&mut self, _: &()) -> bool {
        true
    }
}

struct Conn<C> {
    socket: Arc<Socket>,
    ingest: ConnIngest,
    last_active: Instant,
    dispatch: C,
    /// Acks are left to write: registered for writability too.
    writable: bool,
}

/// A connection being closed: once its frames are processed and its acks
/// written (or [`ACK_LINGER`] has passed).
struct Closing<C> {
    socket: Arc<Socket>,
    dispatch: C,
    since: Instant,
}

impl<C> Closing<C> {
    fn of(conn: Conn<C>) -> Self {
        Closing {
            socket: conn.socket,
            dispatch: conn.dispatch,
            since: Instant::now(),
        }
    }

    /// Closes it if it may close now (true); accounts its acks.
    fn try_finish<D: Dispatch<Conn = C>>(
        &self,
        sink: &mut D,
        stats: &mut IngestStats,
        slots: &Slots,
    ) -> bool {
        if !sink.try_close(&self.dispatch) {
            return false;
        }
        if self.socket.flush() {
            if self.since.elapsed() < ACK_LINGER {
                return false;
            }
            self.socket.abandon();
        }
        stats.acks.merge(&self.socket.counts());
        slots.release();
        stats.connections.add(crate::live::Conn::Closed, 1);
        true
    }
}

impl<C> Conn<C> {
    /// Writes its acks; asks for writability while some are left.
    fn flush_acks(&mut self, poll: &Poll, id: usize) {
        if !self.socket.asked.load(Ordering::Relaxed) {
            return; // not in ack mode: nothing to write, ever
        }
        self.socket.queued.store(false, Ordering::SeqCst);
        let blocked = self.socket.flush();
        if blocked != self.writable {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if poll
                .registry()
                .reregister(
                    &mut SourceFd(&self.socket.stream.as_raw_fd()),
                    Token(id),
                    interest,
                )
                .is_ok()
            {
                self.writable = blocked;
            }
        }
    }
}

enum ReadOutcome {
    /// Read until the socket would block.
    Drained,
    /// Budget spent with data left: come back next turn.
    More,
    /// End of stream, error or invalid frame: close it.
    Close,
}

/// Where a loop's connections come from.
pub enum Entrance {
    /// Accepted from a listener of its own.
    Listener(TcpListener),
    /// Placed on it by an acceptor (see [`crate::placement`]).
    Inbox(Inbox),
}

impl From<TcpListener> for Entrance {
    fn from(l: TcpListener) -> Self {
        Entrance::Listener(l)
    }
}

impl From<Inbox> for Entrance {
    fn from(i: Inbox) -> Self {
        Entrance::Inbox(i)
    }
}

/// Serves until `shutdown`, passing the valid frames of every read to
/// `sink` in the order read.
pub(crate) fn run<D: Dispatch>(
    entrance: Entrance,
    config: &ServeConfig,
    shutdown: &Shutdown,
    slots: &Slots,
    stats: &mut IngestStats,
    sink: &mut D,
) -> Result<(), ServeError> {
    let mut poll = Poll::new().map_err(ServeError::io("create poll"))?;
    let mut door = Door::open(entrance, &poll, slots)?;
    let waker =
        Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServeError::io("create a waker"))?);
    let notify = Arc::new(AckNotify {
        tokens: Mutex::new(Vec::new()),
        waker: waker.clone(),
    });
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<usize, Conn<D::Conn>> = HashMap::new();
    // Read to the end, waiting for their frames to be processed.
    let mut closing: Vec<Closing<D::Conn>> = Vec::new();
    let mut frames: Vec<Frame> = Vec::with_capacity(READ_CHUNK / workloads::FRAME_LEN);
    let mut next_token = FIRST_CONN;
    let mut backlog: VecDeque<usize> = VecDeque::new();
    let mut ready: Vec<usize> = Vec::new();
    let mut woken: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut last_sweep = Instant::now();

    while !shutdown.is_triggered() {
        let timeout = if !backlog.is_empty() {
            Duration::ZERO
        } else if closing.iter().any(|c| c.socket.owes_acks()) {
            ACK_RETRY
        } else {
            SHUTDOWN_POLL
        };
        let timeout = sink.wait_at_most().map_or(timeout, |d| d.min(timeout));
        stats.waits += 1;
        if !wait(&mut poll, &mut events, timeout)? {
            continue;
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
                    &notify,
                    &mut || sink.open(&waker),
                ),
                WAKER => flush_woken(&notify, &mut woken, &mut conns, &poll),
                token => {
                    if event.is_writable() {
                        if let Some(conn) = conns.get_mut(&token.0) {
                            conn.flush_acks(&poll, token.0);
                        }
                    }
                    if !event.is_writable()
                        || event.is_readable()
                        || event.is_read_closed()
                        || event.is_error()
                    {
                        ready.push(token.0);
                    }
                }
            }
        }
        closing.retain(|c| !c.try_finish(sink, stats, slots));
        for &id in &ready {
            if shutdown.is_triggered() {
                break; // what is unread stays unread; what was read is done
            }
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            let outcome = read_some(conn, &mut buf, config, shutdown, stats, sink, &mut frames);
            conn.flush_acks(&poll, id);
            match outcome {
                ReadOutcome::Drained => {}
                ReadOutcome::More => backlog.push_back(id),
                ReadOutcome::Close => {
                    close(&poll, &mut conns, id, &mut closing, sink, stats, slots)
                }
            }
        }
        sink.turn(stats);
        if last_sweep.elapsed() >= IDLE_SWEEP {
            last_sweep = Instant::now();
            for id in expired(&conns, config, stats) {
                // Closed like any other: once what was read is done.
                close(&poll, &mut conns, id, &mut closing, sink, stats, slots);
            }
        }
    }
    stop_all(&conns, &closing, stats, slots);
    Ok(())
}

/// Waits for events up to `timeout`: false when a signal interrupted it.
fn wait(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<bool, ServeError> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(ServeError::Io {
            what: "poll",
            source: e,
        }),
    }
}

/// Connections silent past the idle timeout, or stuck in a frame past the
/// frame timeout (counted as such).
fn expired<C>(
    conns: &HashMap<usize, Conn<C>>,
    config: &ServeConfig,
    stats: &mut IngestStats,
) -> Vec<usize> {
    let idle = config.idle_timeout;
    conns
        .iter()
        .filter_map(|(&id, c)| {
            if !idle.is_zero() && c.last_active.elapsed() >= idle {
                stats.connections.add(crate::live::Conn::IdleTimeout, 1);
                Some(id)
            } else if c.ingest.frame_overdue(config.frame_timeout) {
                stats.connections.add(crate::live::Conn::FrameTimeout, 1);
                Some(id)
            } else {
                None
            }
        })
        .collect()
}

/// Shutdown: what was read is processed by the caller before it returns;
/// acks still owed are not written, and every connection counts as closed.
fn stop_all<C>(
    conns: &HashMap<usize, Conn<C>>,
    closing: &[Closing<C>],
    stats: &mut IngestStats,
    slots: &Slots,
) {
    let owed = conns
        .values()
        .map(|c| &c.socket)
        .chain(closing.iter().map(|c| &c.socket));
    for socket in owed {
        socket.stop();
        stats.acks.merge(&socket.counts());
        slots.release();
        stats.connections.add(crate::live::Conn::Closed, 1);
    }
}

/// Writes the acks of the connections whose frames finished elsewhere (a
/// pool's workers) since the waker last rang.
fn flush_woken<C>(
    notify: &AckNotify,
    woken: &mut Vec<usize>,
    conns: &mut HashMap<usize, Conn<C>>,
    poll: &Poll,
) {
    woken.append(&mut notify.tokens.lock().expect("ack lock"));
    for id in woken.drain(..) {
        if let Some(conn) = conns.get_mut(&id) {
            conn.flush_acks(poll, id);
        }
    }
}

/// Stops reading connection `id`; it closes at once if its frames are
/// processed and its acks written, else joins `closing`.
fn close<D: Dispatch>(
    poll: &Poll,
    conns: &mut HashMap<usize, Conn<D::Conn>>,
    id: usize,
    closing: &mut Vec<Closing<D::Conn>>,
    sink: &mut D,
    stats: &mut IngestStats,
    slots: &Slots,
) {
    if let Some(c) = conns.remove(&id) {
        let _ = poll
            .registry()
            .deregister(&mut SourceFd(&c.socket.stream.as_raw_fd()));
        let c = Closing::of(c);
        if !c.try_finish(sink, stats, slots) {
            closing.push(c);
        }
    }
}

/// The entrance with what admission needs: the `--max-clients` slots and,
/// for a listener, a descriptor in reserve for shedding.
struct Door<'a> {
    from: Source,
    slots: &'a Slots,
}

enum Source {
    Listener(mio::net::TcpListener, Reserve),
    Inbox(Inbox),
}

impl<'a> Door<'a> {
    /// The entrance, non-blocking and registered with `poll`.
    fn open(entrance: Entrance, poll: &Poll, slots: &'a Slots) -> Result<Self, ServeError> {
        let from = match entrance {
            Entrance::Listener(listener) => {
                listener
                    .set_nonblocking(true)
                    .map_err(ServeError::io("set the listener non-blocking"))?;
                let mut listener = mio::net::TcpListener::from_std(listener);
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)
                    .map_err(ServeError::io("register the listener"))?;
                let reserve = Reserve::new(&listener);
                Source::Listener(listener, reserve)
            }
            Entrance::Inbox(inbox) => {
                poll.registry()
                    .register(
                        &mut SourceFd(&inbox.as_raw_fd()),
                        LISTENER,
                        Interest::READABLE,
                    )
                    .map_err(ServeError::io("register the inbox"))?;
                Source::Inbox(inbox)
            }
        };
        Ok(Door { from, slots })
    }

    /// The next connection, non-blocking.
    fn next(&mut self) -> std::io::Result<TcpStream> {
        match &self.from {
            Source::Listener(l, _) => l.accept().map(|(s, _)| s),
            Source::Inbox(inbox) => {
                let s = inbox.take()?;
                s.set_nonblocking(true)?;
                Ok(TcpStream::from_std(s))
            }
        }
    }

    /// Sheds what is pending when descriptors ran out; how many.
    fn shed(&mut self) -> u64 {
        match &mut self.from {
            Source::Listener(l, reserve) => reserve.shed(l),
            Source::Inbox(_) => 1,
        }
    }
}

fn accept_all<C>(
    door: &mut Door,
    poll: &Poll,
    stats: &mut IngestStats,
    conns: &mut HashMap<usize, Conn<C>>,
    next_token: &mut usize,
    notify: &Arc<AckNotify>,
    open: &mut dyn FnMut() -> C,
) {
    let slots = door.slots;
    loop {
        match door.next() {
            Ok(mut stream) => {
                if !slots.try_acquire() {
                    stats.connections.add(crate::live::Conn::Rejected, 1);
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
                stats.connections.add(crate::live::Conn::Accepted, 1);
                // Acks go out as written, not held back by Nagle.
                let _ = stream.set_nodelay(true);
                let socket = Arc::new(Socket {
                    stream,
                    acks: Mutex::new(AckBuf::new()),
                    token: id,
                    queued: AtomicBool::new(false),
                    asked: AtomicBool::new(false),
                    notify: notify.clone(),
                });
                conns.insert(
                    id,
                    Conn {
                        socket,
                        ingest: ConnIngest::new(),
                        last_active: Instant::now(),
                        dispatch: open(),
                        writable: false,
                    },
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_exhaustion(&e) => {
                // Pending connections would wait for the next edge: shed them
                // (from a listener, all at once; from an inbox, the one whose
                // descriptor was lost, and on to the next).
                stats.connections.shed += door.shed();
                if matches!(door.from, Source::Listener(..)) {
                    return;
                }
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
        match (&conn.socket.stream).read(buf) {
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
                    sink.dispatch(&conn.dispatch, &conn.socket, frames);
                    // Acks of frames done inline go out with each chunk
                    // (the caller asks for writability if some are left).
                    conn.socket.flush();
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
