//! Listening sockets with a deep backlog, and with `SO_REUSEPORT`:
//! `harness serve` binds its listener this way, so `percore` threads and
//! `prefork` children can each open their own listener on the same address
//! and the kernel balances new connections across them.

use std::net::{SocketAddr, TcpListener};

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

/// Pending connections each listener holds.
const BACKLOG: i32 = 1024;

/// Binds a listener on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_with(addr, true)
}

/// Binds a listener on `addr` with `SO_REUSEADDR` and a backlog of
/// 1,024 (the standard library's is 128, which a burst of connects
/// overflows: a dropped SYN is retried only after a second).
pub fn bind_deep(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_with(addr, false)
}

fn bind_with(addr: SocketAddr, reuseport: bool) -> std::io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if reuseport {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

/// Serves `listener` plus `workers - 1` more `SO_REUSEPORT` listeners on
/// its address, one thread each (named `{name}-{i}`) running `serve`, and
/// merges what the threads counted: the shape of the thread-per-core
/// models. If a thread cannot start, the others are told to stop.
pub fn thread_per_listener(
    listener: TcpListener,
    workers: usize,
    name: &str,
    shutdown: &crate::model::Shutdown,
    serve: impl Fn(TcpListener) -> Result<crate::stats::Stats, crate::model::ServeError> + Sync,
) -> Result<crate::stats::Stats, crate::model::ServeError> {
    use crate::model::ServeError;
    let mut listeners = vec![listener];
    listeners.extend(
        siblings(&listeners[0], workers.max(1) - 1)
            .map_err(ServeError::io("open a SO_REUSEPORT listener"))?,
    );
    let serve = &serve;
    let results: Vec<Result<crate::stats::Stats, ServeError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn_scoped(scope, move || serve(l))
            })
            .collect();
        if handles.iter().any(Result::is_err) {
            shutdown.trigger(); // stop the threads that did start
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
    let mut merged = crate::stats::Stats::default();
    for r in results {
        merged.merge(&r?);
    }
    Ok(merged)
}

/// `n` more listeners on the address `first` is bound to (which must have
/// been bound with [`bind_reuseport`]).
pub fn siblings(first: &TcpListener, n: usize) -> std::io::Result<Vec<TcpListener>> {
    let addr = first.local_addr()?;
    (0..n).map(|_| bind_reuseport(addr)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_share_the_port() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let more = siblings(&first, 2).unwrap();
        let port = first.local_addr().unwrap().port();
        assert!(more.iter().all(|l| l.local_addr().unwrap().port() == port));
        // Connections reach some member of the group.
        let _c = std::net::TcpStream::connect(first.local_addr().unwrap()).unwrap();
    }
}
