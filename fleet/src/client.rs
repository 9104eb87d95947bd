//! One client of the fleet: a non-blocking socket that writes the frames of
//! its schedule as they come due, keeps its place when the server pushes
//! back, reconnects (on a backoff, see [`crate::link`]) when the connection
//! breaks, then drains. With `--reconnect-every N` it closes its connection
//! after every `N` frames and goes on, at once, on a fresh one (sequence
//! numbers continue; the old one drains in the background, the client is
//! drained when all are). In ack mode it also reads the server's acks (see
//! [`crate::acks`]) whenever they come, recording each frame's round trip.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};

use serde::{Deserialize, Serialize};
use workloads::clock::monotonic_ns;
use workloads::wire::{send_delay, stamp_send_delay};
use workloads::{Frame, FRAME_LEN};

use crate::acks::AckTrack;
use crate::config::FleetConfig;
use crate::link::{Link, Poll};
use crate::schedule::{Schedule, MAX_FRAMES_PER_CLIENT};
use crate::totals::ThreadTotals;

/// Most frames written in one write call.
pub const MAX_BATCH: usize = 256;
/// How often a draining client looks for the server's close.
const DRAIN_POLL_NS: u64 = 1_000_000;
/// Earliest retry after a write would block.
const RETRY_NS: u64 = 50_000;

/// Where a client is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    /// Writing its schedule.
    Sending,
    /// All frames written, write side shut, waiting for the server's close.
    Draining,
    /// The server closed after reading everything: counts must match.
    Drained,
    /// The server had not read everything by the drain deadline.
    Undrained,
    /// The connection broke, or never came up, and could not be
    /// (re-)established.
    Failed,
    /// The server closed every connection it was offered before the first
    /// frame (`--max-clients` reached, or no file descriptors left).
    Refused,
}

/// What the pacing loop does with the client next.
pub enum Step {
    /// Call `step` again at this time.
    WakeAt(u64),
    /// Finished.
    Done,
}

enum Flush {
    Done,
    Blocked,
    Broken,
}

/// One client's socket, position in the schedule and counters.
pub struct Client {
    /// Client id on the wire.
    pub id: u32,
    /// Position in the fleet (0-based), which sets its phase.
    pub index: u32,
    link: Link,
    /// Next sequence number to generate.
    pub next_seq: u64,
    buf: Vec<u8>,
    dues: Vec<u64>,
    written: usize,
    /// Measured frames fully written.
    pub sent_measured: u64,
    /// Warm-up frames fully written.
    pub sent_warmup: u64,
    /// Writes that hit would-block.
    pub would_block_writes: u64,
    /// Current state.
    pub state: ClientState,
    drain_deadline: u64,
    last_progress: u64,
    /// When the last frame was written (ns).
    pub last_send_ns: u64,
    /// Due time of the last frame generated (for the arrival check).
    last_due: Option<u64>,
    /// When the client reached a final state (ns).
    pub finished_ns: u64,
    /// Ack mode: what it knows of its acks.
    pub acks: Option<AckTrack>,
    /// How the server ended the connection, as found while reading acks:
    /// `Some(true)` an orderly close, `Some(false)` a reset or error.
    peer_closed: Option<bool>,
    /// Frames per connection before a planned reconnect.
    reconnect_every: Option<u64>,
    /// Frames generated on the connection in use.
    on_conn: u64,
    /// Connections closed by a planned reconnect that the server has not
    /// closed yet (their frames still being read).
    closing: Vec<TcpStream>,
    /// Of those, connections the server reset (a break, not a close).
    closing_resets: u32,
    /// When the connections left to drain are next looked at.
    next_closing_poll: u64,
}

impl Client {
    /// A client of `config` not yet connected; it connects on its first
    /// step, trying at most `connect_tries` times in the whole run (planned
    /// reconnects aside).
    pub fn new(id: u32, index: u32, config: &FleetConfig) -> Self {
        Client {
            id,
            index,
            link: Link::new(config.target, config.connect_tries),
            next_seq: 0,
            buf: Vec::with_capacity(MAX_BATCH * FRAME_LEN),
            dues: Vec::with_capacity(MAX_BATCH),
            written: 0,
            sent_measured: 0,
            sent_warmup: 0,
            would_block_writes: 0,
            state: ClientState::Sending,
            drain_deadline: 0,
            last_progress: 0,
            last_send_ns: 0,
            last_due: None,
            finished_ns: 0,
            acks: config.ack.then(AckTrack::new),
            peer_closed: None,
            reconnect_every: config.reconnect_every,
            on_conn: 0,
            closing: Vec::new(),
            closing_resets: 0,
            next_closing_poll: 0,
        }
    }

    /// The connection in use, if any (ack mode watches it for acks).
    pub fn stream(&mut self) -> Option<&mut std::net::TcpStream> {
        self.link.stream()
    }

    /// Reads whatever acks have come, at `now`: each frame acknowledged the
    /// first time records its round trip (due time to now) unless it
    /// belongs to the warm-up or the schedule is not paced.
    pub fn read_acks(&mut self, now: u64, schedule: &Schedule, totals: &mut ThreadTotals) {
        let (Some(track), Some(stream)) = (self.acks.as_mut(), self.link.stream()) else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    self.peer_closed = Some(true);
                    return;
                }
                Ok(n) => track.feed(&buf[..n], self.next_seq, |seq| {
                    if schedule.is_paced() {
                        let due = schedule.due(self.index, seq);
                        if !schedule.is_warmup(due) {
                            totals.record_round_trip(now.saturating_sub(due));
                        }
                    }
                }),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.peer_closed = Some(false);
                    return;
                }
            }
        }
    }

    /// Connection attempts so far.
    pub fn attempts(&self) -> crate::link::Attempts {
        self.link.attempts
    }

    /// Reconnects after a broken connection (a planned one the server
    /// reset included).
    pub fn reconnects(&self) -> u32 {
        let a = self.link.attempts;
        a.established.saturating_sub(1 + a.planned) + self.closing_resets
    }

    /// Planned reconnects (`--reconnect-every`).
    pub fn planned_reconnects(&self) -> u32 {
        self.link.attempts.planned
    }

    /// Starts a planned reconnect: the connection in use is shut for
    /// writing and left to drain; the link connects anew.
    fn rotate(&mut self) {
        if let Some(old) = self.link.reopen() {
            let _ = old.shutdown(Shutdown::Write);
            self.closing.push(old);
        }
        self.on_conn = 0;
    }

    /// Reads the connections left to drain: those the server closed are
    /// dropped, a reset counted.
    fn poll_closing(&mut self) {
        let mut resets = 0;
        let mut sink = [0u8; 512];
        self.closing.retain_mut(|s| loop {
            match s.read(&mut sink) {
                Ok(0) => return false,
                Ok(_) => {} // the server sends nothing; ignore it
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    resets += 1;
                    return false;
                }
            }
        });
        self.closing_resets += resets;
    }

    /// Takes the last connect error (for a fleet that reached no server).
    pub fn take_connect_error(&mut self) -> Option<std::io::Error> {
        self.link.last_error.take()
    }

    /// Frames fully written.
    pub fn sent(&self) -> u64 {
        self.sent_measured + self.sent_warmup
    }

    /// Does whatever is due at `now`.
    pub fn step(
        &mut self,
        now: u64,
        schedule: &Schedule,
        config: &FleetConfig,
        totals: &mut ThreadTotals,
    ) -> Step {
        if self.last_progress == 0 {
            self.last_progress = now;
        }
        // Every millisecond, not at every write: a read per old connection
        // per write would be a system call per write, nearly always for
        // nothing.
        if !self.closing.is_empty() && now >= self.next_closing_poll {
            self.poll_closing();
            self.next_closing_poll = now + DRAIN_POLL_NS;
        }
        match self.state {
            ClientState::Sending => match self.link.poll(now) {
                Poll::Ready if self.next_seq == 0 && now < schedule.first_wake(self.index) => {
                    Step::WakeAt(schedule.first_wake(self.index))
                }
                Poll::Ready => self.send(now, schedule, config, totals),
                Poll::WaitUntil(t) => Step::WakeAt(t),
                Poll::GaveUp => {
                    let a = self.link.attempts;
                    self.finish(if a.established == 0 && a.refusals > 0 {
                        ClientState::Refused
                    } else {
                        ClientState::Failed
                    })
                }
            },
            ClientState::Draining => self.drain(now, schedule, totals),
            _ => Step::Done,
        }
    }

    fn finish(&mut self, state: ClientState) -> Step {
        self.state = state;
        self.finished_ns = monotonic_ns();
        let sent = self.sent();
        if let Some(t) = &mut self.acks {
            t.finish(sent);
        }
        self.closing.clear();
        let stream = self.link.close();
        if state == ClientState::Undrained {
            // Giving up mid-stream is an abort, not an orderly close: a
            // reset tells the server that a partial last frame is no
            // protocol error.
            if let Some(s) = &stream {
                let _ = nix::sys::socket::setsockopt(
                    s,
                    nix::sys::socket::sockopt::Linger,
                    &nix::libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    },
                );
            }
        }
        Step::Done
    }

    fn send(
        &mut self,
        now: u64,
        schedule: &Schedule,
        config: &FleetConfig,
        totals: &mut ThreadTotals,
    ) -> Step {
        let total = schedule.total(self.index);
        if self.written == self.buf.len() {
            self.fill(now, schedule, total, totals);
        }
        let flushed = if self.buf.is_empty() {
            Flush::Done
        } else {
            self.flush(schedule, totals)
        };
        let stalled =
            now.saturating_sub(self.last_progress) >= config.drain_timeout.as_nanos() as u64;
        match flushed {
            Flush::Broken => {
                self.buf.clear();
                self.dues.clear();
                self.written = 0;
                self.link.broken(now);
                self.on_conn = 0;
                self.peer_closed = None;
                if let Some(t) = &mut self.acks {
                    t.reconnected();
                }
                Step::WakeAt(now)
            }
            Flush::Blocked if stalled => self.finish(ClientState::Undrained),
            Flush::Blocked => {
                let next = if schedule.is_paced() {
                    schedule.next_wake(self.index, self.next_seq, now)
                } else {
                    now
                };
                Step::WakeAt(next.max(now + RETRY_NS))
            }
            Flush::Done => {
                let all_generated = match total {
                    Some(t) => self.next_seq >= t,
                    None => now >= schedule.end || self.next_seq >= MAX_FRAMES_PER_CLIENT,
                };
                if !all_generated && self.reconnect_every.is_some_and(|n| self.on_conn >= n) {
                    self.rotate();
                    return Step::WakeAt(now);
                }
                if all_generated {
                    if let Some(s) = self.link.stream() {
                        let _ = s.shutdown(Shutdown::Write);
                    }
                    self.state = ClientState::Draining;
                    self.drain_deadline = now + config.drain_timeout.as_nanos() as u64;
                    return Step::WakeAt(now + DRAIN_POLL_NS);
                }
                if !schedule.is_paced() || schedule.due(self.index, self.next_seq) <= now {
                    return Step::WakeAt(now); // behind schedule or saturating: go on
                }
                Step::WakeAt(schedule.next_wake(self.index, self.next_seq, now))
            }
        }
    }

    /// Generates every frame due by `now` (at most [`MAX_BATCH`]), offering
    /// the gap before each measured one to the arrival check when the
    /// schedule's arrivals are random.
    fn fill(
        &mut self,
        now: u64,
        schedule: &Schedule,
        total: Option<u64>,
        totals: &mut ThreadTotals,
    ) {
        self.buf.clear();
        self.dues.clear();
        self.written = 0;
        let paced = schedule.is_paced();
        let tests_arrivals = schedule.tests_arrivals();
        let limit = total.unwrap_or(MAX_FRAMES_PER_CLIENT);
        // A connection carries exactly `--reconnect-every` frames.
        let room = self
            .reconnect_every
            .map_or(MAX_BATCH as u64, |n| n.saturating_sub(self.on_conn))
            .min(MAX_BATCH as u64) as usize;
        while self.dues.len() < room && self.next_seq < limit {
            let due = if paced {
                schedule.due(self.index, self.next_seq)
            } else {
                now
            };
            if (paced && due > now) || (total.is_none() && now >= schedule.end) {
                break;
            }
            let (kind, amount) = schedule.work.work_for(self.next_seq);
            let frame = Frame {
                client_id: self.id,
                // The schedule holds at most 2^32 frames per client.
                seq: self.next_seq as u32,
                send_delay_ns: 0, // stamped when the write is issued
                due_ns: due,
                kind,
                amount,
                warmup: schedule.is_warmup(due),
                ack: self.acks.is_some(),
                received_ns: 0,
                started_ns: 0,
            };
            self.buf.extend_from_slice(&frame.encode());
            if tests_arrivals {
                if let Some(prev) = self.last_due.filter(|_| !frame.warmup) {
                    totals.gaps.offer(due - prev);
                }
                self.last_due = Some(due);
            }
            self.dues.push(due);
            self.next_seq += 1;
            self.on_conn += 1;
        }
    }

    /// Writes what is pending; accounts frames whose last byte went out.
    fn flush(&mut self, schedule: &Schedule, totals: &mut ThreadTotals) -> Flush {
        let Some(stream) = self.link.stream() else {
            return Flush::Broken;
        };
        while self.written < self.buf.len() {
            let at = monotonic_ns();
            // Stamp every frame not yet started with this write's delay; a
            // frame already partly written keeps the stamp of its first write.
            let first_whole = self.written.div_ceil(FRAME_LEN);
            for (i, chunk) in self.buf[first_whole * FRAME_LEN..]
                .chunks_exact_mut(FRAME_LEN)
                .enumerate()
            {
                let delay = send_delay(self.dues[first_whole + i], at);
                stamp_send_delay(chunk.try_into().expect("32 bytes"), delay);
            }
            match stream.write(&self.buf[self.written..]) {
                Ok(0) => return Flush::Broken,
                Ok(n) => {
                    let oldest = self.dues[self.written / FRAME_LEN];
                    // Start-up effects belong to the warm-up: judge only the window.
                    if !schedule.is_warmup(oldest) {
                        totals.record_lag(at.saturating_sub(oldest));
                    }
                    let before = self.written / FRAME_LEN;
                    self.written += n;
                    for &due in &self.dues[before..self.written / FRAME_LEN] {
                        if schedule.is_warmup(due) {
                            self.sent_warmup += 1;
                        } else {
                            self.sent_measured += 1;
                        }
                    }
                    self.last_send_ns = at;
                    self.last_progress = at;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.would_block_writes += 1;
                    return Flush::Blocked;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Flush::Broken,
            }
        }
        Flush::Done
    }

    fn drain(&mut self, now: u64, schedule: &Schedule, totals: &mut ThreadTotals) -> Step {
        if self.acks.is_some() {
            // The server closes once every frame is processed and acked.
            self.read_acks(now, schedule, totals);
            match self.peer_closed {
                Some(true) => return self.finish(ClientState::Drained),
                // A reset means the server dropped data unread.
                Some(false) => return self.finish(ClientState::Failed),
                None => {}
            }
            if now >= self.drain_deadline {
                return self.finish(ClientState::Undrained);
            }
            return Step::WakeAt(now + DRAIN_POLL_NS);
        }
        let Some(stream) = self.link.stream() else {
            return self.finish(ClientState::Failed);
        };
        let mut sink = [0u8; 512];
        loop {
            match stream.read(&mut sink) {
                // Drained once every connection is: the last one and those
                // left by planned reconnects.
                Ok(0) if self.closing.is_empty() => return self.finish(ClientState::Drained),
                Ok(0) => break,
                Ok(_) => continue, // the server sends nothing; ignore it
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // A reset means the server dropped data unread.
                Err(_) => return self.finish(ClientState::Failed),
            }
        }
        if now >= self.drain_deadline {
            return self.finish(ClientState::Undrained);
        }
        Step::WakeAt(now + DRAIN_POLL_NS)
    }
}
