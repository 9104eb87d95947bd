//! Shedding connections when the process has no file descriptor left
//! (EMFILE/ENFILE). An accept that fails for want of descriptors leaves the
//! pending connections queued, and an edge-triggered listener is not woken
//! for them again: the listener stalls. Each accept loop therefore holds one
//! descriptor in reserve (a duplicate of its listener); on exhaustion it
//! frees the reserve, accepts every pending connection and closes it at
//! once (counted as shed), and takes the reserve back. Clients see a close
//! before their first frame, which the fleet reports as a refusal. Accepting
//! resumes by itself when descriptors free up.

use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{accept4, SockFlag};

/// One descriptor held back for shedding.
pub struct Reserve {
    fd: Option<OwnedFd>,
}

/// True when an accept failed because descriptors ran out.
pub fn is_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE)
    )
}

impl Reserve {
    /// Takes the reserve: a duplicate of `listener`'s descriptor.
    pub fn new(listener: &impl AsFd) -> Self {
        Reserve {
            fd: listener.as_fd().try_clone_to_owned().ok(),
        }
    }

    /// Accepts and closes every connection pending on `listener`, using the
    /// reserve descriptor; returns how many were shed. Never blocks.
    pub fn shed(&mut self, listener: &impl AsFd) -> u64 {
        let mut shed = 0;
        loop {
            let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(n) if n > 0 => {}
                Err(Errno::EINTR) => continue,
                _ => break, // nothing pending
            }
            self.fd = None; // frees one descriptor for the accept
            match accept4(listener.as_fd().as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                Ok(fd) => {
                    let _ = nix::unistd::close(fd);
                    shed += 1;
                }
                Err(Errno::EINTR) => {}
                Err(_) => break, // gone meanwhile, or even one descriptor is too many
            }
            self.fd = listener.as_fd().try_clone_to_owned().ok();
            if self.fd.is_none() {
                break; // another thread took the descriptor: try on the next failure
            }
        }
        if self.fd.is_none() {
            self.fd = listener.as_fd().try_clone_to_owned().ok();
        }
        if shed > 0 {
            crate::live::conn(crate::live::Conn::Shed, shed);
            // Counted in the report (`connections.shed`); a flood would
            // make a warning per event a flood of lines.
            tracing::debug!(shed, "out of file descriptors: shed pending connections");
        }
        shed
    }
}

/// True for accept errors that only mean "try again later" (none pending,
/// interrupted, or the connection went away before it was accepted).
pub fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::Interrupted | ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sheds_every_pending_connection_and_keeps_its_reserve() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut reserve = Reserve::new(&l);
        assert_eq!(reserve.shed(&l), 3);
        assert!(reserve.fd.is_some());
        assert_eq!(reserve.shed(&l), 0, "nothing left to shed");
        for mut c in clients {
            let mut b = [0u8; 1];
            // The server closed it: end of stream (or a reset).
            assert!(matches!(
                std::io::Read::read(&mut c, &mut b),
                Ok(0) | Err(_)
            ));
        }
    }

    #[test]
    fn classifies_accept_errors() {
        use std::io::Error;
        for (errno, exhaustion) in [
            (Errno::EMFILE, true),
            (Errno::ENFILE, true),
            (Errno::EAGAIN, false),
            (Errno::ECONNABORTED, false),
        ] {
            let e = Error::from_raw_os_error(errno as i32);
            assert_eq!(is_exhaustion(&e), exhaustion, "{errno}");
        }
        assert!(is_transient(&Error::from_raw_os_error(
            Errno::EAGAIN as i32
        )));
        assert!(!is_transient(&Error::from_raw_os_error(
            Errno::EMFILE as i32
        )));
    }
}
