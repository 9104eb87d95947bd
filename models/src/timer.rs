//! A high-resolution timer for async tasks: one timerfd per runtime,
//! watched by tokio's own reactor through `AsyncFd`, armed for the earliest
//! deadline; a driver task completes a oneshot per expired wait. The
//! runtime thread that sleeps in epoll is woken by the timer itself, so a
//! wait ends as close to its deadline as a blocking thread's sleep does.
//! tokio's own timers round up to whole milliseconds, which would make
//! `async` io waits up to 1 ms longer than the blocking models' sleeps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;
use workloads::clock::monotonic_ns;

struct Entry {
    deadline_ns: u64,
    seq: u64,
    fire: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.deadline_ns, self.seq) == (o.deadline_ns, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.deadline_ns, self.seq).cmp(&(o.deadline_ns, o.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
}

/// A timerfd as tokio's `AsyncFd` wants it.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

struct Inner {
    state: Mutex<State>,
    fd: AsyncFd<Fd>,
}

impl Inner {
    /// Arms the timerfd for `deadline_ns` (absolute CLOCK_MONOTONIC), or
    /// disarms it.
    fn arm(&self, deadline_ns: Option<u64>) {
        let fd = &self.fd.get_ref().0;
        let _ = match deadline_ns {
            // 0 would disarm; any past time fires at once.
            Some(ns) => fd.set(
                Expiration::OneShot(TimeSpec::from(Duration::from_nanos(ns.max(1)))),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            ),
            None => fd.unset(),
        };
    }
}

/// High-resolution sleeps for tasks of one tokio runtime; cheap to clone.
#[derive(Clone)]
pub struct Timer(Arc<Inner>);

impl Timer {
    /// Creates the timer and spawns its driver task on the current runtime
    /// (call from inside it). The driver ends with the runtime.
    pub fn start() -> std::io::Result<Self> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        // SAFETY: `Fd` owns the timerfd (an `OwnedFd` inside `TimerFd`) and
        // nothing closes or replaces it while the `AsyncFd` holds it.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE)? };
        let inner = Arc::new(Inner {
            state: Mutex::default(),
            fd,
        });
        tokio::spawn(drive(inner.clone()));
        Ok(Timer(inner))
    }

    /// Completes once `wait` has passed (measured on CLOCK_MONOTONIC).
    pub async fn sleep(&self, wait: Duration) {
        let deadline_ns = monotonic_ns() + wait.as_nanos() as u64;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.0.state.lock().expect("timer lock");
            let seq = st.next_seq;
            st.next_seq += 1;
            let earliest = st
                .heap
                .peek()
                .is_none_or(|Reverse(e)| deadline_ns < e.deadline_ns);
            st.heap.push(Reverse(Entry {
                deadline_ns,
                seq,
                fire: tx,
            }));
            if earliest {
                self.0.arm(Some(deadline_ns));
            }
        }
        // An error means the driver stopped (the runtime is shutting down).
        let _ = rx.await;
    }
}

/// Waits for the timerfd, completes every expired sleep, re-arms for the
/// next deadline.
async fn drive(inner: Arc<Inner>) {
    loop {
        let Ok(mut ready) = inner.fd.readable().await else {
            return;
        };
        let _ = ready.get_inner().0.wait(); // clears the expiry (non-blocking)
        ready.clear_ready();
        let mut st = inner.state.lock().expect("timer lock");
        let now = monotonic_ns();
        while st
            .heap
            .peek()
            .is_some_and(|Reverse(e)| e.deadline_ns <= now)
        {
            let Reverse(e) = st.heap.pop().expect("peeked");
            let _ = e.fire.send(());
        }
        inner.arm(st.heap.peek().map(|Reverse(e)| e.deadline_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_complete_in_deadline_order_and_never_early() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let order = rt.block_on(async move {
            let timer = Timer::start().unwrap();
            let mut set = tokio::task::JoinSet::new();
            for (i, us) in [3000u64, 1000, 2000].into_iter().enumerate() {
                let timer = timer.clone();
                set.spawn(async move {
                    let start = monotonic_ns();
                    timer.sleep(Duration::from_micros(us)).await;
                    assert!(monotonic_ns() - start >= us * 1000, "woke early");
                    (monotonic_ns(), i)
                });
            }
            let mut done = set.join_all().await;
            done.sort();
            done.into_iter().map(|(_, i)| i).collect::<Vec<_>>()
        });
        assert_eq!(order, vec![1, 2, 0]);
    }
}
