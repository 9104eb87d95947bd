//! The downstream service that `call` work calls: a responder the harness
//! starts beside the server, answering each request ([`workloads::call`])
//! once the delay it asks for has passed. It measures itself, so that its
//! own lateness is never mistaken for the model's: each reply's lateness
//! (written, less read, less the delay asked) goes into a histogram.
//!
//! One thread with a tokio current-thread runtime, a task per connection,
//! its waits on the timerfd-backed [`crate::timer`]; a connection is served
//! one request at a time, as callers use it. The thread asks for
//! `SCHED_FIFO` at the lowest real-time priority: it shares a CPU with the
//! fleet, whose pacing thread would otherwise hold it for a whole
//! scheduler slice (about 1 ms, measured as its lateness p99) before a due
//! reply is written.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::latency::{new_latency_histogram, LatencySummary};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use workloads::call::{parse, CALL_LEN, MAX_CALL_DELAY_US};
use workloads::clock::monotonic_ns;

use crate::timer::Timer;

/// What the responder did, to report beside the server's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponderReport {
    /// Connections accepted.
    pub connections: u64,
    /// Requests read.
    pub requests: u64,
    /// Replies written.
    pub replies: u64,
    /// Requests refused (a delay over the cap): their connection closed.
    pub refused: u64,
    /// Its thread ran at a real-time priority (else as any other thread).
    #[serde(default)]
    pub realtime: bool,
    /// How late each reply was written past the delay asked, ns.
    pub lateness_ns: LatencySummary,
}

/// What the responder did so far: the report's counts, and the lateness
/// its summary is made of at the end, under one lock.
struct State {
    report: ResponderReport,
    lateness: Histogram<u64>,
}

type Shared = Mutex<State>;

/// A running responder; [`Responder::stop`] ends it and says what it did.
pub struct Responder {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: JoinHandle<std::io::Result<()>>,
    shared: Arc<Shared>,
}

impl Responder {
    /// Listens on `listen` (port 0: any free one) and answers on a thread
    /// of its own, which inherits the caller's CPU affinity.
    pub fn start(listen: SocketAddr) -> std::io::Result<Self> {
        // A deep backlog: a pool that grows opens many connections at once.
        let listener = crate::net::bind_deep(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Mutex::new(State {
            report: ResponderReport::default(),
            lateness: new_latency_histogram(),
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("responder".into())
            .spawn(move || {
                let realtime = crate::priority::realtime().is_ok();
                lock(&inner).report.realtime = realtime;
                runtime.block_on(serve(listener, inner, stopped))
            })?;
        Ok(Responder {
            addr,
            stop,
            thread,
            shared,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it: open connections are closed, replies not yet due are not
    /// written. Errors when its thread failed.
    pub fn stop(self) -> std::io::Result<ResponderReport> {
        let _ = self.stop.send(true);
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("the responder thread panicked"))??;
        let state = lock(&self.shared);
        Ok(ResponderReport {
            lateness_ns: LatencySummary::of(&state.lateness),
            ..state.report.clone()
        })
    }
}

/// The state, whole even if a task panicked holding it (each update is
/// one step).
fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let timer = Timer::start()?;
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    lock(&shared).report.connections += 1;
                    conns.spawn(answer(stream, timer.clone(), shared.clone(), stopped.clone()));
                }
                // Out of descriptors or the like: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    conns.shutdown().await;
    Ok(())
}

/// Serves one connection's requests in turn until it ends or the responder
/// stops.
async fn answer(
    mut stream: TcpStream,
    timer: Timer,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut req = [0u8; CALL_LEN];
    loop {
        tokio::select! {
            read = stream.read_exact(&mut req) => if read.is_err() { return },
            _ = stopped.changed() => return,
        }
        let read_ns = monotonic_ns();
        let (delay_us, _) = parse(&req);
        {
            let mut state = lock(&shared);
            state.report.requests += 1;
            if delay_us > MAX_CALL_DELAY_US {
                state.report.refused += 1;
                return;
            }
        }
        timer.sleep(Duration::from_micros(delay_us.into())).await;
        if stream.write_all(&req).await.is_err() {
            return;
        }
        let late = monotonic_ns().saturating_sub(read_ns + u64::from(delay_us) * 1_000);
        let mut state = lock(&shared);
        state.report.replies += 1;
        state.lateness.saturating_record(late.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downstream::call_blocking;
    use std::io::{Read, Write};

    #[test]
    fn answers_after_the_delay_and_counts_itself() {
        let r = Responder::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = Some(r.addr());
        for tag in 0..20 {
            let start = monotonic_ns();
            assert!(call_blocking(addr, 500, tag), "call {tag}");
            assert!(monotonic_ns() - start >= 500_000, "answered early");
        }
        // A delay over the cap is refused and its connection closed.
        let mut s = std::net::TcpStream::connect(r.addr()).unwrap();
        s.write_all(&workloads::call::request(MAX_CALL_DELAY_US + 1, 0))
            .unwrap();
        assert_eq!(s.read(&mut [0u8; CALL_LEN]).unwrap(), 0, "not closed");
        let report = r.stop().unwrap();
        assert_eq!(
            (
                report.connections,
                report.requests,
                report.replies,
                report.refused
            ),
            (2, 21, 20, 1)
        );
        assert_eq!(report.lateness_ns.count, 20);
    }

    #[test]
    fn a_call_without_a_responder_fails_and_is_not_stuck() {
        assert!(!call_blocking(None, 10, 0));
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        assert!(!call_blocking(Some(addr), 10, 0));
    }
}
