//! `uring`: io_uring, thread per core. N threads, each with its own ring
//! (shared nothing, as `percore`). The serving thread accepts every
//! connection and places it on the ring with the fewest open ones
//! ([`crate::placement`]); a ring watches its inbox with a multishot poll
//! (`--placement hash`: each ring has its own `SO_REUSEPORT` listener and
//! one multishot accept instead). One multishot receive per connection, reading
//! into buffers the kernel picks from a provided-buffer ring. cpu work runs
//! inline on the ring's thread. An io wait never stalls the ring: it becomes
//! an `IORING_OP_TIMEOUT` with an absolute CLOCK_MONOTONIC deadline, and the
//! frame is finished when that timeout completes, so waits overlap and the
//! thread keeps receiving meanwhile; a call frame's request and the
//! receive of its reply go out on the ring too (`uring_calls`); a connection with [`MAX_PENDING`]
//! waits outstanding has its receive cancelled until half are done, which
//! bounds its memory. A connection is closed once the peer ended it and
//! every timeout of its frames has completed. In ack mode each connection
//! has at most one `IORING_OP_SEND` of its owed acks in flight, from a
//! buffer it owns until the completion; more acks wait for it.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, SubmitArgs, TimeoutFlags, Timespec};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use workloads::clock::monotonic_ns;
use workloads::{Frame, WorkKind};

use crate::ack::{AckBuf, ACK_LINGER};
use crate::ingest::ConnIngest;
use crate::model::{Model, Placement, ServeConfig, ServeError, Shutdown, SHUTDOWN_POLL};
use crate::reactor::Entrance;
use crate::shed::{is_exhaustion, Reserve};
use crate::slots::Slots;
use crate::stats::Stats;
use crate::uring_calls::UringCalls;
use crate::work::{process_blocking, start, CALL_ANSWERED};
use crate::{net, placement};

const RING_ENTRIES: u32 = 1024;
/// Provided buffers per ring, and their size.
const BUFS: u16 = 256;
const BUF_SIZE: usize = 8 * 1024;
const BGID: u16 = 0;
/// Tags in the top three bits of `user_data`.
const TAG_SHIFT: u32 = 61;
const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const TIMER: u64 = 2;
const CANCEL: u64 = 3;
const SEND: u64 = 4;
/// A call's reply received.
const CALL: u64 = 5;
/// A call's send or timeout (nothing to do when they complete).
const CALL_AUX: u64 = 6;
/// How long a stopping ring waits for its acks' sends to complete; the
/// buffers of any still in flight are then leaked (`Drop for Conn`), never
/// freed under the kernel.
const SEND_GRACE: Duration = Duration::from_secs(1);
/// io frames of one connection waiting before it stops receiving (as in
/// `async`): what bounds the timers a connection can hold.
pub const MAX_PENDING: usize = 1024;
const IDLE_SWEEP: Duration = Duration::from_millis(100);
/// How long accepting pauses after descriptors ran out.
const ACCEPT_PAUSE: Duration = Duration::from_millis(5);

/// io_uring, a ring per thread.
pub struct Uring;

impl Model for Uring {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn describe(&self) -> &'static str {
        "N threads, each with its own io_uring and the connections placed on it (the fewest open first): multishot receive into a provided-buffer ring; cpu work inline, io waits as io_uring timeouts so a wait never stalls the ring"
    }

    fn queue_is(&self) -> &'static str {
        "the completions ahead of it on the ring's one thread: more rings or less work per frame"
    }

    fn read_late_is(&self) -> &'static str {
        "the ring's one thread is busy with other completions: more rings or less work per frame"
    }

    fn default_workers(&self, cpus: usize) -> usize {
        cpus.max(1)
    }

    fn worker_candidates(&self, cpus: usize, _io_waits: usize) -> Vec<usize> {
        // io waits are ring timeouts, never a worker: only the CPUs matter.
        let cpus = cpus.max(1);
        vec![cpus, 4 * cpus]
    }

    fn available(&self) -> Result<(), String> {
        let ring = IoUring::new(8).map_err(|e| format!("io_uring cannot be set up here ({e})"))?;
        let bufs = BufRing::new(&ring).map_err(|e| {
            format!(
                "io_uring provided-buffer rings are not supported here ({e}); they need Linux 5.19"
            )
        })?;
        drop(Ring { ring, bufs });
        Ok(())
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        self.available().map_err(ServeError::Worker)?;
        let slots = Slots::local(config.max_clients);
        match config.placement {
            Placement::Least => {
                placement::serve_threads(listener, config.workers, "uring", shutdown, |inbox| {
                    let slots = slots.for_inbox(&inbox);
                    ring_loop(inbox.into(), config, shutdown, &slots)
                })
            }
            Placement::Hash => {
                net::thread_per_listener(listener, config.workers, "uring", shutdown, |l| {
                    ring_loop(l.into(), config, shutdown, &slots)
                })
            }
        }
    }
}

/// The provided-buffer ring: `BUFS` entries in a page-aligned mapping the
/// kernel reads, and the buffers they point to.
struct BufRing {
    entries: NonNull<BufRingEntry>,
    map_len: usize,
    bufs: Vec<u8>,
    tail: u16,
}

impl BufRing {
    /// Maps, fills and registers the ring with `ring` as group [`BGID`].
    fn new(ring: &IoUring) -> std::io::Result<Self> {
        let map_len = BUFS as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: a fresh private anonymous mapping, page-aligned and
        // zero-filled; zeroed entries are valid `BufRingEntry`s (plain
        // integers). It is unmapped only in `Drop`, after the ring that
        // reads it has been told to forget it.
        let entries = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(map_len).expect("non-zero"),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )?
        }
        .cast::<BufRingEntry>();
        let mut r = BufRing {
            entries,
            map_len,
            bufs: vec![0; BUFS as usize * BUF_SIZE],
            tail: 0,
        };
        // SAFETY: `entries` holds BUFS entries and stays mapped until the
        // `Ring` owning it is dropped, which unregisters the group first.
        let registered = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(r.entries.as_ptr() as u64, BUFS, BGID, 0)
        };
        if let Err(e) = registered {
            // SAFETY: the kernel never got the mapping; nothing else uses it.
            let _ = unsafe { munmap(r.entries.cast(), r.map_len) };
            return Err(e);
        }
        for bid in 0..BUFS {
            r.give_back(bid);
        }
        Ok(r)
    }

    /// The first `len` bytes the kernel put into buffer `bid`.
    fn data(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * BUF_SIZE;
        &self.bufs[start..start + len.min(BUF_SIZE)]
    }

    /// Hands buffer `bid` back to the kernel.
    fn give_back(&mut self, bid: u16) {
        let slot = (self.tail & (BUFS - 1)) as usize;
        let addr = self.bufs.as_ptr() as u64 + (bid as usize * BUF_SIZE) as u64;
        // SAFETY: `slot` < BUFS, inside the mapping; the kernel reads an
        // entry only once the tail below has moved past it.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(addr);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field lives in the first entry of the mapping and
        // is a u16 the kernel reads atomically; a release store publishes the
        // entry written above.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// The ring and its buffers; the buffers are unregistered before the ring
/// closes and the mapping goes away.
struct Ring {
    ring: IoUring,
    bufs: BufRing,
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        // SAFETY: the kernel no longer reads the mapping (unregistered
        // above, and the ring is closed right after); nothing else uses it.
        let _ = unsafe { munmap(self.bufs.entries.cast(), self.bufs.map_len) };
    }
}

impl Ring {
    /// Queues `entry`, submitting first if the queue is full.
    fn push(&mut self, entry: squeue::Entry) -> std::io::Result<()> {
        loop {
            // SAFETY: every pointer an entry carries (the timeouts'
            // `Timespec`s, the sends' buffers) stays put until its
            // completion: timespecs are boxed in `timers`, a send's buffer
            // is its connection's `send_buf`, untouched while `sending` and
            // leaked, not freed, if the connection is dropped meanwhile.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Queues a linked chain of entries in one piece (a chain split across
    /// two submissions would be cut), submitting first if there is no room.
    fn push_linked(&mut self, entries: &[squeue::Entry]) -> std::io::Result<()> {
        loop {
            // SAFETY: a call's buffers and timespec are boxed in its
            // `UringCalls` entry until its receive completes, and leaked, not
            // freed, if the ring stops before.
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }
}

struct Conn {
    fd: OwnedFd,
    ingest: ConnIngest,
    /// io frames waiting on a timeout.
    pending: usize,
    /// A multishot receive is active.
    armed: bool,
    /// Receiving stopped because [`MAX_PENDING`] io frames wait: resumes
    /// when half of them are done.
    paused: bool,
    /// Ended by the peer, an invalid frame or the idle timeout: closed once
    /// `pending` is 0 and its acks are written.
    closing: bool,
    /// When every frame of a closing connection was done: its acks may
    /// linger [`ACK_LINGER`] from then.
    drained_at: Option<Instant>,
    last_active: Instant,
    acks: AckBuf,
    /// The bytes of the send in flight; the kernel reads them until its
    /// completion, so they are not touched meanwhile.
    send_buf: Vec<u8>,
    sending: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.sending {
            // The kernel may still read the send's bytes: leak them rather
            // than free memory under it (only when a ring stops or fails
            // with a send in flight).
            std::mem::forget(std::mem::take(&mut self.send_buf));
        }
    }
}

impl Conn {
    /// Starts a send of the acks owed, unless one is in flight.
    fn send_acks(&mut self, r: &mut Ring, id: u64) -> Result<(), ServeError> {
        if self.sending || self.acks.is_empty() {
            return Ok(());
        }
        self.send_buf.clear();
        self.send_buf.extend_from_slice(self.acks.unsent());
        let send = opcode::Send::new(
            types::Fd(self.fd.as_raw_fd()),
            self.send_buf.as_ptr(),
            self.send_buf.len() as u32,
        )
        .flags(nix::libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data(SEND, id));
        r.push(send).map_err(ring_err("submit a send"))?;
        self.acks.counts.writes += 1;
        self.sending = true;
        Ok(())
    }
}

/// An io frame waiting on its timeout; the `Timespec` must outlive it.
type Timer = (Frame, u64, Box<Timespec>);

fn user_data(tag: u64, id: u64) -> u64 {
    (tag << TAG_SHIFT) | id
}

fn ring_err(what: &'static str) -> impl FnOnce(std::io::Error) -> ServeError {
    ServeError::io(what)
}

/// One ring's loop: serves until shutdown, then finishes every io frame it
/// has read.
fn ring_loop(
    entrance: Entrance,
    config: &ServeConfig,
    shutdown: &Shutdown,
    slots: &Slots,
) -> Result<Stats, ServeError> {
    let ring = IoUring::new(RING_ENTRIES).map_err(ring_err("create an io_uring"))?;
    let bufs = BufRing::new(&ring).map_err(ring_err("register the buffer ring"))?;
    let mut l = RingLoop {
        r: Ring { ring, bufs },
        reserve: match &entrance {
            Entrance::Listener(l) => Some(Reserve::new(l)),
            Entrance::Inbox(_) => None,
        },
        entrance,
        config,
        slots,
        stats: Stats::new(config.client_latency),
        conns: HashMap::new(),
        timers: HashMap::new(),
        calls: UringCalls::new(config.downstream),
        next_conn: 0,
        next_timer: 0,
        frames: Vec::with_capacity(BUF_SIZE / workloads::FRAME_LEN),
        accept_paused: None,
        owing: Vec::new(),
        stopping: false,
    };
    l.submit_accept()?;
    let mut last_sweep = Instant::now();
    let wait = Timespec::new().nsec(SHUTDOWN_POLL.as_nanos() as u32);
    let mut completions: Vec<(u64, i32, u32)> = Vec::new();
    let mut stopped_at: Option<Instant> = None;
    loop {
        l.stopping = shutdown.is_triggered();
        if l.stopping && l.timers.is_empty() && l.calls.is_empty() && l.sends_done(&mut stopped_at)
        {
            break;
        }
        if l.accept_paused.is_some_and(|t| t.elapsed() >= ACCEPT_PAUSE) {
            l.accept_paused = None;
            if !l.stopping {
                l.submit_accept()?;
            }
        }
        l.wait(&wait)?;
        completions.clear();
        completions.extend(
            l.r.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(data, res, flags) in &completions {
            let id = data & ((1 << TAG_SHIFT) - 1);
            match data >> TAG_SHIFT {
                ACCEPT => l.on_accept(res, flags)?,
                RECV => l.on_recv(id, res, flags)?,
                TIMER => l.on_timer(id)?,
                CALL => l.on_call(id, res)?,
                SEND => l.on_send(id, res),
                _ => {}
            }
        }
        l.send_owed()?;
        if last_sweep.elapsed() >= IDLE_SWEEP {
            last_sweep = Instant::now();
            l.sweep_idle();
        }
        l.reap();
    }
    Ok(l.finish())
}

/// One ring's state between completions; each kind of completion is one
/// method (accept, receive, timeout, send).
struct RingLoop<'a> {
    r: Ring,
    /// Where connections come from: a listener of its own, or an inbox.
    entrance: Entrance,
    config: &'a ServeConfig,
    slots: &'a Slots,
    stats: Stats,
    conns: HashMap<u64, Conn>,
    timers: HashMap<u64, Timer>,
    /// Call frames waiting for their replies, and the idle downstream
    /// connections.
    calls: UringCalls,
    next_conn: u64,
    next_timer: u64,
    /// Frames decoded from one receive, reused.
    frames: Vec<Frame>,
    /// The listener's spare descriptor, to shed with (none for an inbox).
    reserve: Option<Reserve>,
    accept_paused: Option<Instant>,
    /// Connections that have acks owed since this turn began.
    owing: Vec<u64>,
    /// Shutdown was requested (read once per turn).
    stopping: bool,
}

impl RingLoop<'_> {
    /// Whether a stopping ring may end: no send in flight, or the grace for
    /// them is over. Sends in flight end at once once their sockets are
    /// shut, which the first call does.
    fn sends_done(&self, stopped_at: &mut Option<Instant>) -> bool {
        let at = *stopped_at.get_or_insert_with(|| {
            self.conns.values().for_each(|c| close(&c.fd));
            Instant::now()
        });
        // Past the grace, dropping a connection whose send is in flight
        // leaks its buffer (see `Drop for Conn`).
        self.conns.values().all(|c| !c.sending) || at.elapsed() >= SEND_GRACE
    }

    /// Arms the multishot accept, or the multishot poll of the inbox.
    fn submit_accept(&mut self) -> Result<(), ServeError> {
        let entry = match &self.entrance {
            Entrance::Listener(l) => opcode::AcceptMulti::new(types::Fd(l.as_raw_fd())).build(),
            Entrance::Inbox(inbox) => {
                opcode::PollAdd::new(types::Fd(inbox.as_raw_fd()), nix::libc::POLLIN as u32)
                    .multi(true)
                    .build()
            }
        };
        self.r
            .push(entry.user_data(user_data(ACCEPT, 0)))
            .map_err(ring_err("submit the accept"))
    }

    /// The inbox is readable: takes every connection placed here.
    fn on_inbox(&mut self, res: i32, flags: u32) -> Result<(), ServeError> {
        let mut gone = res < 0 && -res != nix::libc::ECANCELED;
        while !gone {
            let Entrance::Inbox(inbox) = &self.entrance else {
                return Ok(());
            };
            match inbox.take() {
                Ok(stream) => self.admit_checked(stream.into())?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Its descriptor could not be received: lost, counted.
                Err(e) if is_exhaustion(&e) => self.stats.ingest.connections.shed += 1,
                Err(e) => {
                    // The acceptor is gone (end of stream): nothing more comes.
                    tracing::debug!("inbox closed: {e}");
                    gone = true;
                }
            }
        }
        if !cqueue::more(flags) && !gone && !self.stopping {
            self.submit_accept()?;
        }
        Ok(())
    }

    /// Submits what is queued and waits for a completion or the poll tick.
    fn wait(&mut self, tick: &Timespec) -> Result<(), ServeError> {
        self.stats.ingest.waits += 1;
        let args = SubmitArgs::new().timespec(tick);
        match self.r.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::ETIME) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(ServeError::Io {
                what: "wait on the io_uring",
                source: e,
            }),
        }
    }

    /// An accept completed: a new connection, or why none came.
    fn on_accept(&mut self, res: i32, flags: u32) -> Result<(), ServeError> {
        if matches!(self.entrance, Entrance::Inbox(_)) {
            return self.on_inbox(res, flags);
        }
        if res >= 0 {
            // SAFETY: a successful accept completion carries a new
            // descriptor that nothing else owns.
            self.admit_checked(unsafe { OwnedFd::from_raw_fd(res) })?;
        } else {
            let e = std::io::Error::from_raw_os_error(-res);
            if is_exhaustion(&e) {
                if let (Some(reserve), Entrance::Listener(l)) = (&mut self.reserve, &self.entrance)
                {
                    self.stats.ingest.connections.shed += reserve.shed(l);
                }
                // Accepting again at once would fail at once (the
                // descriptor is taken before a connection is looked for):
                // pause, then re-arm.
                if !cqueue::more(flags) {
                    self.accept_paused = Some(Instant::now());
                }
                return Ok(());
            }
            tracing::debug!("accept failed: {e}");
        }
        if !cqueue::more(flags) && !self.stopping {
            self.submit_accept()?;
        }
        Ok(())
    }

    /// Takes a new connection in if a slot is free (and the ring is not
    /// stopping); refuses it otherwise.
    fn admit_checked(&mut self, fd: OwnedFd) -> Result<(), ServeError> {
        if self.stopping || !self.slots.try_acquire() {
            self.stats
                .ingest
                .connections
                .add(crate::live::Conn::Rejected, 1);
            return Ok(()); // dropping `fd` closes it at once
        }
        self.admit(fd)
    }

    /// Takes an accepted connection in and starts receiving on it.
    fn admit(&mut self, fd: OwnedFd) -> Result<(), ServeError> {
        self.stats
            .ingest
            .connections
            .add(crate::live::Conn::Accepted, 1);
        // Acks go out as written, not held back by Nagle.
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::TcpNoDelay, &true);
        let conn_id = self.next_conn;
        self.next_conn += 1;
        let recv = opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), BGID)
            .build()
            .user_data(user_data(RECV, conn_id));
        self.conns.insert(
            conn_id,
            Conn {
                fd,
                ingest: ConnIngest::new(),
                pending: 0,
                armed: true,
                paused: false,
                closing: false,
                drained_at: None,
                last_active: Instant::now(),
                acks: AckBuf::new(),
                send_buf: Vec::new(),
                sending: false,
            },
        );
        self.r.push(recv).map_err(ring_err("submit a receive"))
    }

    /// A receive completed: bytes, the end, or an error.
    fn on_recv(&mut self, id: u64, res: i32, flags: u32) -> Result<(), ServeError> {
        let buf = cqueue::buffer_select(flags);
        let mut conn = self.conns.get_mut(&id);
        if let Some(c) = conn.as_deref_mut() {
            c.armed &= cqueue::more(flags);
        }
        match (conn, res) {
            // Closed already, or read after shutdown: left unread.
            (None, _) => {}
            (Some(c), _) if c.closing || self.stopping => {}
            (Some(_), n) if n > 0 => self.on_bytes(id, buf.unwrap_or(0), n as usize)?,
            (Some(c), 0) => {
                c.ingest.on_eof(&mut self.stats.ingest);
                c.closing = true;
            }
            // Out of buffers, or cancelled to pause and resumed meanwhile:
            // receive again.
            (Some(c), n) if -n == nix::libc::ENOBUFS || -n == nix::libc::ECANCELED => {
                if !c.paused {
                    arm(&mut self.r, c, id)?;
                }
            }
            (Some(c), _) => {
                c.ingest.on_reset(&mut self.stats.ingest);
                c.closing = true;
            }
        }
        if let Some(bid) = buf {
            self.r.bufs.give_back(bid);
        }
        Ok(())
    }

    /// `len` bytes arrived for connection `id` in buffer `bid`: its frames
    /// are processed (cpu) or put on a timeout (io).
    fn on_bytes(&mut self, id: u64, bid: u16, len: usize) -> Result<(), ServeError> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        c.last_active = Instant::now();
        let data = self.r.bufs.data(bid, len);
        let frames = &mut self.frames;
        let fed = c
            .ingest
            .on_bytes(data, &self.config.limits, &mut self.stats.ingest, |f| {
                frames.push(f)
            });
        for f in self.frames.drain(..) {
            if f.kind == WorkKind::Io && f.amount > 0 {
                let f = start(f);
                let deadline = f.started_ns + f.amount as u64 * 1000;
                let ts = Box::new(
                    Timespec::new()
                        .sec(deadline / 1_000_000_000)
                        .nsec((deadline % 1_000_000_000) as u32),
                );
                let entry = opcode::Timeout::new(&*ts)
                    .flags(TimeoutFlags::ABS)
                    .build()
                    .user_data(user_data(TIMER, self.next_timer));
                self.timers.insert(self.next_timer, (f, id, ts));
                self.next_timer += 1;
                c.pending += 1;
                self.r.push(entry).map_err(ring_err("submit a timeout"))?;
            } else if f.kind == WorkKind::Call {
                let f = start(f);
                match self
                    .calls
                    .start(f, id, user_data(CALL, 0), user_data(CALL_AUX, 0))
                {
                    Some(chain) => {
                        c.pending += 1;
                        self.r
                            .push_linked(&chain)
                            .map_err(ring_err("submit a call"))?;
                    }
                    None => {
                        self.stats.process.record(&f, monotonic_ns(), None);
                        c.acks.push(&f);
                    }
                }
            } else {
                process_blocking(&f, None, &mut self.stats.process);
                c.acks.push(&f);
            }
        }
        if !c.acks.is_empty() {
            self.owing.push(id);
        }
        if fed.is_err() {
            c.closing = true;
        } else if c.pending >= MAX_PENDING {
            if c.armed && !c.paused {
                let cancel = opcode::AsyncCancel::new(user_data(RECV, id))
                    .build()
                    .user_data(user_data(CANCEL, id));
                self.r.push(cancel).map_err(ring_err("pause a receive"))?;
            }
            c.paused = true;
        } else if !c.armed && !c.paused {
            // Multishot ended (e.g. no buffer was free): re-arm.
            arm(&mut self.r, c, id)?;
        }
        Ok(())
    }

    /// An io frame's timeout completed: the frame is done.
    fn on_timer(&mut self, id: u64) -> Result<(), ServeError> {
        let Some((frame, conn_id, _ts)) = self.timers.remove(&id) else {
            return Ok(());
        };
        self.frame_done(frame, conn_id, None)
    }

    /// A call's reply was received (or the call failed): the frame is done.
    fn on_call(&mut self, id: u64, res: i32) -> Result<(), ServeError> {
        let Some((frame, conn_id, answered)) = self.calls.finish(id, res) else {
            return Ok(());
        };
        self.frame_done(frame, conn_id, CALL_ANSWERED.filter(|_| answered))
    }

    /// A frame that waited (a timeout or a call) is done: recorded, acked,
    /// and its connection receives again if it had paused.
    fn frame_done(
        &mut self,
        frame: Frame,
        conn_id: u64,
        digest: Option<u64>,
    ) -> Result<(), ServeError> {
        self.stats.process.record(&frame, monotonic_ns(), digest);
        if let Some(c) = self.conns.get_mut(&conn_id) {
            c.pending -= 1;
            c.acks.push(&frame);
            self.owing.push(conn_id);
            if c.paused && c.pending <= MAX_PENDING / 2 && !c.closing && !self.stopping {
                c.paused = false;
                if !c.armed {
                    arm(&mut self.r, c, conn_id)?;
                }
            }
        }
        Ok(())
    }

    /// A send of acks completed.
    fn on_send(&mut self, id: u64, res: i32) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.sending = false;
            match usize::try_from(res) {
                Ok(n) => c.acks.consumed(n),
                Err(_) => c.acks.abandon(), // broken: dropped
            }
            self.owing.push(id);
        }
    }

    /// Starts the sends of the acks owed this turn (none once stopping).
    fn send_owed(&mut self) -> Result<(), ServeError> {
        if !self.stopping {
            for id in self.owing.drain(..) {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.send_acks(&mut self.r, id)?;
                }
            }
        }
        self.owing.clear();
        Ok(())
    }

    /// Closes connections silent past the idle timeout, or stuck in a frame
    /// past the frame timeout.
    fn sweep_idle(&mut self) {
        let idle = self.config.idle_timeout;
        for c in self.conns.values_mut().filter(|c| !c.closing) {
            if !idle.is_zero() && c.last_active.elapsed() >= idle {
                self.stats
                    .ingest
                    .connections
                    .add(crate::live::Conn::IdleTimeout, 1);
                c.closing = true;
            } else if c.ingest.frame_overdue(self.config.frame_timeout) {
                self.stats
                    .ingest
                    .connections
                    .add(crate::live::Conn::FrameTimeout, 1);
                c.closing = true;
            }
        }
    }

    /// Closes every closing connection whose frames and acks are done.
    fn reap(&mut self) {
        let (stopping, slots, stats) = (self.stopping, self.slots, &mut self.stats);
        self.conns.retain(|_, c| {
            if !c.closing || c.pending > 0 {
                return true;
            }
            let drained_at = *c.drained_at.get_or_insert_with(Instant::now);
            if stopping {
                c.acks.stop(); // no more sends once stopping
            } else if !c.acks.is_empty() && drained_at.elapsed() >= ACK_LINGER {
                c.acks.abandon();
                close(&c.fd); // a send still waiting ends at once
            }
            let done = !c.sending && c.acks.is_empty();
            if done {
                close(&c.fd);
                slots.release();
                stats.ingest.connections.add(crate::live::Conn::Closed, 1);
                stats.ingest.acks.merge(&c.acks.counts);
            }
            !done
        });
    }

    /// Closes what is left after shutdown and returns the statistics.
    fn finish(mut self) -> Stats {
        for c in self.conns.values_mut() {
            close(&c.fd);
            self.slots.release();
            c.acks.stop();
            self.stats.ingest.acks.merge(&c.acks.counts);
        }
        self.stats
            .ingest
            .connections
            .add(crate::live::Conn::Closed, self.conns.len() as u64);
        self.stats
    }
}

/// Starts a multishot receive on `c`.
fn arm(r: &mut Ring, c: &mut Conn, id: u64) -> Result<(), ServeError> {
    let recv = opcode::RecvMulti::new(types::Fd(c.fd.as_raw_fd()), BGID)
        .build()
        .user_data(user_data(RECV, id));
    r.push(recv).map_err(ring_err("submit a receive"))?;
    c.armed = true;
    Ok(())
}

/// Ends a connection so the peer sees it at once, even while a multishot
/// receive still holds the socket (dropping the fd then closes it).
fn close(fd: &OwnedFd) {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
}
