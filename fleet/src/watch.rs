//! A pacing thread's wait in ack mode: until the next scheduled write it
//! watches its clients' connections (one epoll set) and reads acks the
//! moment they arrive, so a round trip ends when its ack came, not at the
//! client's next write. The wait itself is a `ppoll` on the epoll
//! descriptor, which keeps nanosecond timeouts (epoll's own are whole
//! milliseconds); the last [`crate::schedule::SPIN_NS`] before a write spin as
//! without acks.

use std::os::fd::AsFd;

use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::time::TimeSpec;
use workloads::clock::monotonic_ns;

use crate::client::Client;
use crate::schedule::Schedule;
use crate::schedule::SPIN_NS;
use crate::totals::ThreadTotals;

/// The clients of one pacing thread, watched for acks.
pub struct AckWatch {
    epoll: Epoll,
    /// Per client, the connection (its `established` count) last watched.
    watched: Vec<u32>,
    events: Vec<EpollEvent>,
}

impl AckWatch {
    /// A watch for `clients` clients, none watched yet.
    pub fn new(clients: usize) -> std::io::Result<Self> {
        Ok(AckWatch {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            watched: vec![0; clients],
            events: vec![EpollEvent::empty(); 256],
        })
    }

    /// Watches client `i`'s connection if it is one not yet watched (a
    /// closed one leaves the set by itself).
    pub fn watch(&mut self, i: usize, client: &mut Client) {
        let established = client.attempts().established;
        if established == self.watched[i] {
            return;
        }
        if let Some(stream) = client.stream() {
            let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
            let mut event = EpollEvent::new(flags, i as u64);
            if self.epoll.add(&*stream, event).is_err() {
                let _ = self.epoll.modify(&*stream, &mut event);
            }
            self.watched[i] = established;
        }
    }

    /// Waits until `t` (CLOCK_MONOTONIC ns), reading acks as they come.
    pub fn wait_until(
        &mut self,
        t: u64,
        clients: &mut [Client],
        schedule: &Schedule,
        totals: &mut ThreadTotals,
    ) {
        loop {
            let now = monotonic_ns();
            if now >= t {
                return;
            }
            let left = t - now;
            // Sleep on the set until shortly before `t`, then spin on it.
            let timeout = TimeSpec::from_duration(std::time::Duration::from_nanos(
                left.saturating_sub(SPIN_NS),
            ));
            let mut fds = [PollFd::new(self.epoll.0.as_fd(), PollFlags::POLLIN)];
            if !matches!(ppoll(&mut fds, Some(timeout), None), Ok(n) if n > 0) {
                if left <= SPIN_NS {
                    std::hint::spin_loop();
                }
                continue;
            }
            let Ok(n) = self.epoll.wait(&mut self.events, 0u8) else {
                continue;
            };
            for event in &self.events[..n] {
                if let Some(c) = clients.get_mut(event.data() as usize) {
                    c.read_acks(monotonic_ns(), schedule, totals);
                }
            }
        }
    }
}
