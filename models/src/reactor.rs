//! The mio readiness loop shared by `single`, the `pool` front and each
//! `prefork` child: accepts, reads with a per-turn budget for fairness,
//! closes idle and over-limit connections, and hands valid frames to a sink.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use workloads::Frame;

use crate::ingest::ConnIngest;
use crate::slots::Slots;
use crate::stats::IngestStats;
use crate::{ServeConfig, ServeError, Shutdown, SHUTDOWN_POLL};

const LISTENER: Token = Token(0);
/// Bytes read at once; inline models process them before looking at
/// shutdown again, so this bounds how late a shutdown is noticed.
const READ_CHUNK: usize = 8 * 1024;
/// Bytes read from one connection before the others get a turn.
const READ_BUDGET: usize = 64 * 1024;
const IDLE_SWEEP: Duration = Duration::from_millis(100);

struct Conn {
    stream: TcpStream,
    ingest: ConnIngest,
    last_active: Instant,
}

enum ReadOutcome {
    /// Read until the socket would block.
    Drained,
    /// Budget spent with data left: come back next turn.
    More,
    /// End of stream, error or invalid frame: close it.
    Close,
}

/// Serves until `shutdown`, passing every valid frame to `sink` in the
/// order read.
pub(crate) fn run(
    listener: TcpListener,
    config: &ServeConfig,
    shutdown: &Shutdown,
    slots: &Slots,
    stats: &mut IngestStats,
    mut sink: impl FnMut(Frame),
) -> Result<(), ServeError> {
    listener
        .set_nonblocking(true)
        .map_err(ServeError::io("set the listener non-blocking"))?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut poll = Poll::new().map_err(ServeError::io("create poll"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(ServeError::io("register the listener"))?;
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next_token = 1usize;
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
            if event.token() == LISTENER {
                accept_all(&listener, &poll, slots, stats, &mut conns, &mut next_token);
            } else {
                ready.push(event.token().0);
            }
        }
        for &id in &ready {
            if shutdown.is_triggered() {
                break; // what is unread stays unread; what was read is done
            }
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            match read_some(conn, &mut buf, config, shutdown, stats, &mut sink) {
                ReadOutcome::Drained => {}
                ReadOutcome::More => backlog.push_back(id),
                ReadOutcome::Close => {
                    if let Some(mut c) = conns.remove(&id) {
                        let _ = poll.registry().deregister(&mut c.stream);
                        slots.release();
                    }
                    stats.connections.closed += 1;
                }
            }
        }
        if !config.idle_timeout.is_zero() && last_sweep.elapsed() >= IDLE_SWEEP {
            last_sweep = Instant::now();
            conns.retain(|_, c| {
                let idle = c.last_active.elapsed() >= config.idle_timeout;
                if idle {
                    let _ = poll.registry().deregister(&mut c.stream);
                    slots.release();
                    stats.connections.idle_timeouts += 1;
                    stats.connections.closed += 1;
                }
                !idle
            });
        }
    }
    stats.connections.closed += conns.len() as u64;
    for _ in conns.drain() {
        slots.release();
    }
    Ok(())
}

fn accept_all(
    listener: &mio::net::TcpListener,
    poll: &Poll,
    slots: &Slots,
    stats: &mut IngestStats,
    conns: &mut HashMap<usize, Conn>,
    next_token: &mut usize,
) {
    loop {
        match listener.accept() {
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
                    },
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // Another child may have taken it (prefork), or fds ran out.
                tracing::debug!("accept failed: {e}");
                return;
            }
        }
    }
}

fn read_some(
    conn: &mut Conn,
    buf: &mut [u8],
    config: &ServeConfig,
    shutdown: &Shutdown,
    stats: &mut IngestStats,
    sink: &mut impl FnMut(Frame),
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
                if conn
                    .ingest
                    .on_bytes(&buf[..n], &config.limits, stats, &mut *sink)
                    .is_err()
                {
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
                conn.ingest.on_eof(stats);
                return ReadOutcome::Close;
            }
        }
    }
}
