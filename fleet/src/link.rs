//! One client's connection to the server, established without ever blocking
//! its pacing thread: a non-blocking connect polled on the pacing clock,
//! a check that the server did not close a fresh connection before the
//! first frame (a refusal: `--max-clients` or no file descriptors left), and
//! retries on a jittered exponential backoff, at most `connect_tries` per
//! client per run. A planned reconnect (`--reconnect-every`,
//! [`Link::reopen`]) connects at once, skips the settle wait and does not
//! spend a try.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};

use rand::Rng;

/// First retry delay; each later one doubles, jittered by ±50%.
const FIRST_BACKOFF_NS: u64 = 5_000_000;
/// How often a connect in progress is looked at.
const CONNECT_POLL_NS: u64 = 500_000;
/// How often a planned reconnect's connect is looked at (on loopback it
/// completes within microseconds; its frames wait for it).
const REOPEN_POLL_NS: u64 = 10_000;
/// A connect still in progress after this long has failed.
const CONNECT_TIMEOUT_NS: u64 = 1_000_000_000;
/// A fresh connection is checked for the server's close no sooner than this
/// after it came up: a server refuses by accepting and closing at once. (A
/// close that comes later is found by reconciliation, see
/// `verdict::reconcile`.) The first connect of a run settles before the
/// first frame is due; a retry's frames wait this long.
const SETTLE_NS: u64 = 10_000_000;

/// Where the connection stands.
enum State {
    /// No socket; the next attempt is due at `retry_at`.
    Down { retry_at: u64 },
    /// A connect in progress since `since`.
    Connecting {
        stream: mio::net::TcpStream,
        since: u64,
    },
    /// Connected, nothing written yet: the server may still refuse it.
    Fresh { stream: TcpStream, since: u64 },
    /// In use.
    Up(TcpStream),
}

/// What [`Link::poll`] found.
pub enum Poll {
    /// Connected and past the refusal check: write on this stream.
    Ready,
    /// Not yet: look again at this time.
    WaitUntil(u64),
    /// Every allowed attempt is spent.
    GaveUp,
}

/// Counts of one client's connection attempts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attempts {
    /// Connects started.
    pub tries: u32,
    /// Attempts that failed to connect (refused by the kernel, timed out).
    pub connect_failures: u32,
    /// Connections the server closed before the first frame was written.
    pub refusals: u32,
    /// Connections that came up and were written to.
    pub established: u32,
    /// Of those, planned reconnects ([`Link::reopen`]).
    pub planned: u32,
}

/// A connection with its retry policy.
pub struct Link {
    state: State,
    target: SocketAddr,
    max_tries: u32,
    /// The attempt under way is a planned reconnect.
    planned: bool,
    /// Counts so far.
    pub attempts: Attempts,
    /// The last connect error, for a fleet that could reach no server.
    pub last_error: Option<std::io::Error>,
}

impl Link {
    /// A link whose first attempt is due at once.
    pub fn new(target: SocketAddr, max_tries: u32) -> Self {
        Link {
            state: State::Down { retry_at: 0 },
            target,
            max_tries: max_tries.max(1),
            planned: false,
            attempts: Attempts::default(),
            last_error: None,
        }
    }

    /// The stream, when it is ready for writing.
    pub fn stream(&mut self) -> Option<&mut TcpStream> {
        match &mut self.state {
            State::Up(s) => Some(s),
            _ => None,
        }
    }

    /// True once connected (fresh or in use).
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Up(_) | State::Fresh { .. })
    }

    /// Closes the stream and schedules the next attempt after a backoff.
    pub fn broken(&mut self, now: u64) {
        self.planned = false;
        self.state = State::Down {
            retry_at: now + self.backoff(),
        };
    }

    /// A planned reconnect: gives back the stream in use and connects
    /// anew at once, without the settle wait and without spending a try.
    pub fn reopen(&mut self) -> Option<TcpStream> {
        let old = self.close();
        self.planned = true;
        self.max_tries = self.max_tries.saturating_add(1);
        self.state = State::Down { retry_at: 0 };
        old
    }

    /// Drops the stream for good (closing it).
    pub fn close(&mut self) -> Option<TcpStream> {
        match std::mem::replace(&mut self.state, State::Down { retry_at: u64::MAX }) {
            State::Up(s) | State::Fresh { stream: s, .. } => Some(s),
            _ => None,
        }
    }

    /// Advances the connection at `now`.
    pub fn poll(&mut self, now: u64) -> Poll {
        if let State::Up(_) = self.state {
            return Poll::Ready; // every write's wake: nothing to move
        }
        loop {
            match std::mem::replace(&mut self.state, State::Down { retry_at: 0 }) {
                State::Up(s) => {
                    self.state = State::Up(s);
                    return Poll::Ready;
                }
                State::Down { retry_at } if now < retry_at => {
                    self.state = State::Down { retry_at };
                    return Poll::WaitUntil(retry_at);
                }
                State::Down { .. } => {
                    if self.attempts.tries >= self.max_tries {
                        self.state = State::Down { retry_at: u64::MAX };
                        return Poll::GaveUp;
                    }
                    self.attempts.tries += 1;
                    match mio::net::TcpStream::connect(self.target) {
                        // A planned reconnect looks at once (loopback
                        // connects complete within the call or soon after).
                        Ok(stream) if self.planned => {
                            self.state = State::Connecting { stream, since: now };
                        }
                        Ok(stream) => {
                            self.state = State::Connecting { stream, since: now };
                            return Poll::WaitUntil(now + CONNECT_POLL_NS);
                        }
                        Err(e) => self.failed_connect(now, e),
                    }
                }
                State::Connecting { stream, since } => match connect_result(&stream) {
                    Ok(true) => {
                        let stream = TcpStream::from(stream);
                        let _ = stream.set_nodelay(true);
                        if self.planned {
                            self.planned = false;
                            self.attempts.established += 1;
                            self.attempts.planned += 1;
                            self.state = State::Up(stream);
                            return Poll::Ready;
                        }
                        self.state = State::Fresh { stream, since: now };
                        return Poll::WaitUntil(now + SETTLE_NS);
                    }
                    Ok(false) if now - since < CONNECT_TIMEOUT_NS => {
                        self.state = State::Connecting { stream, since };
                        let poll = if self.planned {
                            REOPEN_POLL_NS
                        } else {
                            CONNECT_POLL_NS
                        };
                        return Poll::WaitUntil(now + poll);
                    }
                    Ok(false) => self.failed_connect(now, ErrorKind::TimedOut.into()),
                    Err(e) => self.failed_connect(now, e),
                },
                State::Fresh { stream, since } if now < since + SETTLE_NS => {
                    self.state = State::Fresh { stream, since };
                    return Poll::WaitUntil(since + SETTLE_NS);
                }
                State::Fresh { mut stream, .. } => {
                    if closed_by_peer(&mut stream) {
                        self.attempts.refusals += 1;
                        self.broken(now);
                    } else {
                        self.attempts.established += 1;
                        self.state = State::Up(stream);
                    }
                }
            }
        }
    }

    fn failed_connect(&mut self, now: u64, e: std::io::Error) {
        self.attempts.connect_failures += 1;
        self.planned = false;
        self.last_error = Some(e);
        self.broken(now);
    }

    /// The delay before the next attempt: 5 ms doubling per attempt made,
    /// times a random factor in [0.5, 1.5) so refused clients do not retry
    /// in lockstep.
    fn backoff(&self) -> u64 {
        let doublings = self.attempts.tries.saturating_sub(1).min(16);
        let base = FIRST_BACKOFF_NS << doublings;
        (base as f64 * rand::thread_rng().gen_range(0.5..1.5)) as u64
    }
}

/// Whether a non-blocking connect has finished: `Ok(true)` connected,
/// `Ok(false)` still in progress, `Err` failed.
fn connect_result(stream: &mio::net::TcpStream) -> std::io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// True when the server has already closed or reset the connection (the
/// server never writes, so any readable end of stream is a close).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match stream.peek(&mut byte) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn run_until_settled(link: &mut Link) -> Poll {
        for _ in 0..10_000 {
            let now = workloads::clock::monotonic_ns();
            match link.poll(now) {
                Poll::WaitUntil(t) => {
                    let left = t.saturating_sub(workloads::clock::monotonic_ns());
                    std::thread::sleep(std::time::Duration::from_nanos(left));
                }
                other => return other,
            }
        }
        panic!("the link never settled");
    }

    #[test]
    fn connects_to_a_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut link = Link::new(l.local_addr().unwrap(), 5);
        assert!(matches!(run_until_settled(&mut link), Poll::Ready));
        assert_eq!(link.attempts.tries, 1);
        assert_eq!(link.attempts.established, 1);
        assert!(link.stream().is_some());
    }

    #[test]
    fn a_server_that_closes_at_once_is_a_refusal_retried_a_bounded_number_of_times() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let closer = std::thread::spawn(move || {
            for _ in 0..3 {
                drop(l.accept().unwrap());
            }
        });
        let mut link = Link::new(addr, 3);
        assert!(matches!(run_until_settled(&mut link), Poll::GaveUp));
        closer.join().unwrap();
        assert_eq!(link.attempts.tries, 3);
        assert_eq!(link.attempts.refusals, 3);
        assert_eq!(link.attempts.established, 0);
    }

    /// Planned reconnects connect at once and spend none of the tries: a
    /// link allowed one try reopens three times, each counted as planned.
    #[test]
    fn planned_reconnects_spend_no_tries() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut link = Link::new(l.local_addr().unwrap(), 1);
        assert!(matches!(run_until_settled(&mut link), Poll::Ready));
        for k in 1..=3 {
            let old = link.reopen();
            assert!(old.is_some(), "reopen {k} gave back the stream in use");
            assert!(
                matches!(run_until_settled(&mut link), Poll::Ready),
                "reopen {k}"
            );
        }
        let a = link.attempts;
        assert_eq!(
            (a.tries, a.established, a.planned, a.refusals),
            (4, 4, 3, 0)
        );
    }

    #[test]
    fn nothing_listening_is_a_connect_failure_with_its_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut link = Link::new(addr, 2);
        assert!(matches!(run_until_settled(&mut link), Poll::GaveUp));
        assert_eq!(link.attempts.connect_failures, 2);
        assert_eq!(
            link.last_error.as_ref().map(|e| e.kind()),
            Some(ErrorKind::ConnectionRefused)
        );
    }

    #[test]
    fn backoff_doubles_within_its_jitter() {
        let mut link = Link::new("127.0.0.1:9".parse().unwrap(), 5);
        for (tries, low, high) in [
            (1, 2_500_000, 7_500_000),
            (2, 5_000_000, 15_000_000),
            (4, 20_000_000, 60_000_000),
        ] {
            link.attempts.tries = tries;
            for _ in 0..100 {
                let b = link.backoff();
                assert!((low..high).contains(&b), "try {tries}: {b}");
            }
        }
    }
}
