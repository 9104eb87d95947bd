//! Least-loaded placement of connections over single-threaded workers
//! (`percore` threads, `prefork` children). One acceptor takes every
//! connection from the listener and hands it, as a descriptor over a
//! `SOCK_SEQPACKET` pair (`SCM_RIGHTS`), to the live worker with the fewest
//! open connections; the worker takes it from its [`Inbox`] in its
//! readiness loop. `SO_REUSEPORT` would place connections by a hash of
//! their addresses instead: with 8 workers and 4 clients two share a worker
//! 59% of the time, and a worker stalled by an io wait then stalls both, so
//! the capacity would depend on the ports the clients happened to get.

use std::io::{ErrorKind, IoSlice, IoSliceMut};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::time::TimeVal;

use crate::model::{ServeError, Shutdown, SHUTDOWN_POLL};
use crate::shed::{is_exhaustion, Reserve};
use crate::stats::Stats;

/// How long the acceptor waits for a worker to make room in its inbox
/// before it drops the connection (counted as shed).
const HAND_TIMEOUT: Duration = Duration::from_millis(200);
/// Connections handed to a worker and not yet taken, at most: the inbox
/// is a short queue, not a place to park connections the worker has no
/// descriptor for (it would hold them past the process's limit).
pub const MAX_WAITING: usize = 4;

/// Open connections per worker, in memory shared with children forked
/// later: placed by the acceptor, released by the worker that closes them;
/// and of those, how many wait in its inbox.
#[derive(Clone, Copy)]
pub struct Loads {
    open: &'static [AtomicUsize],
    waiting: &'static [AtomicUsize],
}

impl Loads {
    /// Counters for `n` workers in a fresh shared mapping.
    pub fn shared(n: usize) -> Result<Self, ServeError> {
        let n = n.max(1);
        let len = NonZeroUsize::new(2 * n * std::mem::size_of::<AtomicUsize>()).expect("n >= 1");
        // SAFETY: a fresh anonymous mapping, page-aligned and zero-filled,
        // holds `2 n` valid AtomicUsize values (zero is valid); it is never
        // unmapped, so the 'static slice stays valid in this process and in
        // children forked later, which share it.
        let all = unsafe {
            let ptr = mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
            .map_err(|e| ServeError::Io {
                what: "map shared memory for connection placement",
                source: e.into(),
            })?;
            std::slice::from_raw_parts(ptr.as_ptr().cast::<AtomicUsize>(), 2 * n)
        };
        let (open, waiting) = all.split_at(n);
        Ok(Loads { open, waiting })
    }

    /// Open connections of worker `i`.
    pub fn open(&self, i: usize) -> usize {
        self.open[i].load(Ordering::SeqCst)
    }

    /// Worker `i` closed (or refused) one of its connections.
    pub fn release(&self, i: usize) {
        let _ = self.open[i].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// The worker with the fewest open connections among `live` whose
    /// inbox has room (the lowest index on a tie).
    fn least(&self, live: &[bool]) -> Option<usize> {
        (0..live.len().min(self.open.len()))
            .filter(|&i| live[i] && self.waiting[i].load(Ordering::SeqCst) < MAX_WAITING)
            .min_by_key(|&i| self.open(i))
    }

    /// A connection handed to worker `i`.
    fn placed(&self, i: usize) {
        self.open[i].fetch_add(1, Ordering::SeqCst);
        self.waiting[i].fetch_add(1, Ordering::SeqCst);
    }

    /// Worker `i` took one from its inbox.
    fn taken(&self, i: usize) {
        let _ =
            self.waiting[i].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

/// A worker's end: the connections the acceptor placed on it.
pub struct Inbox {
    socket: OwnedFd,
    loads: Loads,
    index: usize,
}

impl Inbox {
    /// The next connection placed here (non-blocking): `WouldBlock` when
    /// none is waiting; `EMFILE` when its descriptor could not be received
    /// (this process has none to spare: the connection is lost, and no
    /// longer counted here); `UnexpectedEof` once the acceptor is gone.
    pub fn take(&self) -> std::io::Result<TcpStream> {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        if msg.bytes > 0 {
            self.loads.taken(self.index);
        }
        // A truncated control message (MSG_CTRUNC): the kernel had no
        // descriptor to install here and closed the connection.
        let fd = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
        });
        match fd {
            // SAFETY: the kernel just installed this descriptor in this
            // process for us (SCM_RIGHTS); nothing else owns it.
            Some(fd) => Ok(TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) })),
            None if msg.bytes == 0 => Err(ErrorKind::UnexpectedEof.into()),
            None => {
                self.loads.release(self.index);
                Err(std::io::Error::from_raw_os_error(Errno::EMFILE as i32))
            }
        }
    }

    /// This worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The shared counts this inbox's connections are counted in.
    pub fn loads(&self) -> Loads {
        self.loads
    }
}

impl AsRawFd for Inbox {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The acceptor: the listener and one outbox per worker.
pub struct Acceptor {
    listener: TcpListener,
    outboxes: Vec<Option<OwnedFd>>,
    loads: Loads,
    reserve: Reserve,
    /// Connections dropped: no descriptor to accept them, or no live
    /// worker took them in time.
    pub shed: u64,
}

impl Acceptor {
    /// An acceptor on `listener` for up to `capacity` workers (replacements
    /// included), none yet: see [`Acceptor::add_worker`].
    pub fn new(listener: TcpListener, capacity: usize) -> Result<Self, ServeError> {
        listener
            .set_nonblocking(true)
            .map_err(ServeError::io("set the listener non-blocking"))?;
        Ok(Acceptor {
            reserve: Reserve::new(&listener),
            listener,
            outboxes: Vec::new(),
            loads: Loads::shared(capacity)?,
            shed: 0,
        })
    }

    /// A new worker's inbox; connections are placed on it from now on.
    pub fn add_worker(&mut self) -> Result<Inbox, ServeError> {
        let index = self.outboxes.len();
        if index >= self.loads.open.len() {
            return Err(ServeError::Worker(format!(
                "no room for worker {index}: {} placed at most",
                self.loads.open.len()
            )));
        }
        let io = |what| {
            move |e: Errno| ServeError::Io {
                what,
                source: e.into(),
            }
        };
        let (out, inbox) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io("create a worker's inbox"))?;
        setsockopt(
            &out,
            sockopt::SendTimeout,
            &TimeVal::from(libc_timeval(HAND_TIMEOUT)),
        )
        .map_err(io("set the hand-off timeout"))?;
        self.outboxes.push(Some(out));
        Ok(Inbox {
            socket: inbox,
            loads: self.loads,
            index,
        })
    }

    /// Worker `i` is gone: nothing more is placed on it.
    pub fn retire(&mut self, i: usize) {
        if let Some(out) = self.outboxes.get_mut(i) {
            *out = None;
        }
    }

    /// Waits up to `timeout` for connections and places every one pending.
    /// Returns early on a signal.
    pub fn accept_for(&mut self, timeout: Duration) {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0) {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.place(stream),
                Err(e) if is_exhaustion(&e) => {
                    self.shed += self.reserve.shed(&self.listener);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != ErrorKind::WouldBlock {
                        tracing::debug!("accept failed: {e}");
                    }
                    return;
                }
            }
        }
    }

    /// Hands `stream` to the least-loaded live worker with room in its
    /// inbox, waiting up to [`HAND_TIMEOUT`] for room; a worker that is
    /// gone is retired and the next tried. Dropping the stream here closes
    /// this process's copy.
    fn place(&mut self, stream: TcpStream) {
        let since = std::time::Instant::now();
        loop {
            let live: Vec<bool> = self.outboxes.iter().map(Option::is_some).collect();
            let Some(i) = self.loads.least(&live) else {
                if live.contains(&true) && since.elapsed() < HAND_TIMEOUT {
                    std::thread::sleep(Duration::from_micros(200));
                    continue; // every inbox full: wait for a worker to take one
                }
                self.shed += 1;
                return;
            };
            let out = self.outboxes[i].as_ref().expect("live");
            let fds = [stream.as_raw_fd()];
            let sent = sendmsg::<()>(
                out.as_raw_fd(),
                &[IoSlice::new(&[0])],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            match sent {
                Ok(_) => {
                    self.loads.placed(i);
                    return;
                }
                Err(Errno::EINTR) => continue,
                Err(
                    e @ (Errno::EPIPE | Errno::ECONNREFUSED | Errno::ECONNRESET | Errno::ENOTCONN),
                ) => {
                    tracing::debug!("worker {i} is gone ({e}): retired");
                    self.retire(i);
                }
                Err(e) => {
                    // Full (no room within HAND_TIMEOUT), or too many
                    // descriptors in flight for this process's limit.
                    tracing::debug!("worker {i} took no connection ({e}): shed");
                    self.shed += 1;
                    return;
                }
            }
        }
    }
}

/// Serves `workers` threads (named `{name}-{i}`), each running `serve` on
/// its own inbox, while the calling thread places every connection from
/// `listener` on the least-loaded; merges what the threads counted. If a
/// thread cannot start, the others are told to stop.
pub fn serve_threads(
    listener: TcpListener,
    workers: usize,
    name: &str,
    shutdown: &Shutdown,
    serve: impl Fn(Inbox) -> Result<Stats, ServeError> + Sync,
) -> Result<Stats, ServeError> {
    let mut acceptor = Acceptor::new(listener, workers.max(1))?;
    let inboxes = (0..workers.max(1))
        .map(|_| acceptor.add_worker())
        .collect::<Result<Vec<_>, _>>()?;
    let serve = &serve;
    let results: Vec<Result<Stats, ServeError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = inboxes
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| {
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn_scoped(scope, move || serve(inbox))
            })
            .collect();
        if handles.iter().any(Result::is_err) {
            shutdown.trigger(); // stop the threads that did start
        }
        while !shutdown.is_triggered() && !handles.iter().flatten().all(|h| h.is_finished()) {
            acceptor.accept_for(SHUTDOWN_POLL);
        }
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(ServeError::Worker(format!("a {name} thread panicked")))
                }),
                Err(e) => Err(ServeError::Io {
                    what: "spawn a thread",
                    source: e,
                }),
            })
            .collect()
    });
    let mut merged = Stats::default();
    for r in results {
        merged.merge(&r?);
    }
    merged.ingest.connections.shed += acceptor.shed;
    Ok(merged)
}

fn libc_timeval(d: Duration) -> nix::libc::timeval {
    nix::libc::timeval {
        tv_sec: d.as_secs() as nix::libc::time_t,
        tv_usec: d.subsec_micros() as nix::libc::suseconds_t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn wait_for(inbox: &Inbox) -> TcpStream {
        for _ in 0..1000 {
            match inbox.take() {
                Ok(s) => return s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("nothing placed in 1 s");
    }

    #[test]
    fn connections_go_to_the_least_loaded_live_worker() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(listener, 4).unwrap();
        let inboxes: Vec<Inbox> = (0..3).map(|_| acceptor.add_worker().unwrap()).collect();
        let mut clients = Vec::new();
        let mut taken: Vec<Vec<TcpStream>> = (0..3).map(|_| Vec::new()).collect();
        // (connections opened, worker 1 releases one first, want open per worker)
        let table: [(usize, bool, [usize; 3]); 3] = [
            (6, false, [2, 2, 2]),
            (1, true, [2, 2, 2]),
            (2, false, [3, 3, 2]),
        ];
        for (n, release, want) in table {
            if release {
                inboxes[1].loads().release(1);
            }
            for _ in 0..n {
                clients.push(TcpStream::connect(addr).unwrap());
                acceptor.accept_for(Duration::from_secs(1));
            }
            let open: Vec<usize> = (0..3).map(|i| acceptor.loads.open(i)).collect();
            assert_eq!(open, want, "{n} more, release {release}");
        }
        for (i, inbox) in inboxes.iter().enumerate() {
            for _ in 0..acceptor.loads.open(i) + usize::from(i == 1) {
                taken[i].push(wait_for(inbox));
            }
        }
        assert_eq!(taken.iter().map(Vec::len).sum::<usize>(), 9);
        assert_eq!(acceptor.shed, 0);
    }

    #[test]
    fn a_worker_that_takes_nothing_gets_a_few_and_the_rest_are_shed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(listener, 1).unwrap();
        let inbox = acceptor.add_worker().unwrap();
        let mut clients = Vec::new();
        for _ in 0..MAX_WAITING + 2 {
            clients.push(TcpStream::connect(addr).unwrap());
            acceptor.accept_for(Duration::from_secs(1));
        }
        assert_eq!((acceptor.loads.open(0), acceptor.shed), (MAX_WAITING, 2));
        // Taking one makes room for the next.
        wait_for(&inbox);
        clients.push(TcpStream::connect(addr).unwrap());
        acceptor.accept_for(Duration::from_secs(1));
        assert_eq!(
            (acceptor.loads.open(0), acceptor.shed),
            (MAX_WAITING + 1, 2)
        );
    }

    #[test]
    fn a_gone_worker_is_retired_and_the_next_gets_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(listener, 2).unwrap();
        let gone = acceptor.add_worker().unwrap();
        let alive = acceptor.add_worker().unwrap();
        drop(gone);
        let _client = TcpStream::connect(addr).unwrap();
        acceptor.accept_for(Duration::from_secs(1));
        wait_for(&alive);
        assert_eq!((acceptor.loads.open(0), acceptor.loads.open(1)), (0, 1));
        assert!(acceptor.outboxes[0].is_none());
        // No live worker left: the connection is shed, not lost silently.
        acceptor.retire(1);
        let _client = TcpStream::connect(addr).unwrap();
        acceptor.accept_for(Duration::from_secs(1));
        assert_eq!(acceptor.shed, 1);
    }
}
