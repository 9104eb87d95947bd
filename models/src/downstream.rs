//! Downstream calls for `call` frames ([`workloads::call`]), made the way a
//! blocking thread makes them: one connection per thread, opened on first
//! use and kept (the connection pool of `threads`, `pool`, `rayon` and the
//! readiness loops is their threads), a write of the request, then a read
//! that blocks the thread until the reply; and `async`'s pool of tokio
//! connections per runtime ([`AsyncCalls`]), whose replies are awaited on
//! the runtime's reactor. `uring` receives its replies on its ring (in its
//! file).

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use workloads::call::{request, CALL_LEN};

/// How much longer than its delay a call may take before it fails: a
/// responder that stopped answering never holds a thread for good.
pub const CALL_SLACK: Duration = Duration::from_secs(1);

thread_local! {
    static CONN: RefCell<Option<(SocketAddr, TcpStream)>> = const { RefCell::new(None) };
}

/// Calls `addr` on this thread's connection for a reply after `delay_us`;
/// true when the reply came and was the request's own. A failure drops the
/// connection (the next call opens a fresh one); no address is a failure.
pub fn call_blocking(addr: Option<SocketAddr>, delay_us: u32, tag: u32) -> bool {
    let Some(addr) = addr else {
        return false;
    };
    CONN.with_borrow_mut(|conn| {
        if conn.as_ref().is_none_or(|(a, _)| *a != addr) {
            *conn = connect(addr).ok().map(|s| (addr, s));
        }
        let Some((_, stream)) = conn.as_mut() else {
            return false;
        };
        let ok = exchange(stream, delay_us, tag).unwrap_or(false);
        if !ok {
            *conn = None;
        }
        ok
    })
}

/// A connection to the downstream, set up as every caller uses it.
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CALL_SLACK)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn exchange(stream: &mut TcpStream, delay_us: u32, tag: u32) -> std::io::Result<bool> {
    let req = request(delay_us, tag);
    stream.set_read_timeout(Some(Duration::from_micros(delay_us.into()) + CALL_SLACK))?;
    stream.write_all(&req)?;
    let mut reply = [0u8; CALL_LEN];
    stream.read_exact(&mut reply)?;
    Ok(reply == req)
}

/// Most idle connections an [`AsyncCalls`] pool keeps.
pub const MAX_IDLE_CALLS: usize = 1024;

/// `async`'s downstream connections: one pool per runtime, shared by its
/// tasks. A call takes an idle connection (or opens one), awaits its reply
/// on the runtime's reactor, and gives the connection back once answered;
/// the pool so grows to the most calls ever in flight at once, and keeps
/// at most [`MAX_IDLE_CALLS`] of them idle (more are closed).
#[derive(Clone)]
pub struct AsyncCalls {
    addr: Option<SocketAddr>,
    idle: std::sync::Arc<std::sync::Mutex<Vec<tokio::net::TcpStream>>>,
}

impl AsyncCalls {
    /// A pool for calls to `addr` (none: every call fails).
    pub fn new(addr: Option<SocketAddr>) -> Self {
        AsyncCalls {
            addr,
            idle: Default::default(),
        }
    }

    /// Calls for a reply after `delay_us`; true when the reply came and was
    /// the request's own. A failed connection is dropped, not pooled.
    pub async fn call(&self, delay_us: u32, tag: u32) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Some(addr) = self.addr else {
            return false;
        };
        let pooled = self.idle.lock().expect("call pool lock").pop();
        let req = request(delay_us, tag);
        // The connect too is bounded: a dropped SYN is retried only after
        // a second, then longer.
        let exchange = async {
            let mut stream = match pooled {
                Some(s) => s,
                None => {
                    let s = tokio::net::TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    s
                }
            };
            stream.write_all(&req).await?;
            let mut reply = [0u8; CALL_LEN];
            stream.read_exact(&mut reply).await?;
            Ok::<_, std::io::Error>((stream, reply == req))
        };
        let limit = Duration::from_micros(delay_us.into()) + CALL_SLACK;
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok((stream, true))) => {
                let mut idle = self.idle.lock().expect("call pool lock");
                if idle.len() < MAX_IDLE_CALLS {
                    idle.push(stream);
                }
                true
            }
            _ => false,
        }
    }
}
