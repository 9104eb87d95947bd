//! The hand-off between `pool`'s reader and its workers: a bounded queue
//! that wakes a parked worker only when the awake ones cannot take the
//! batch, i.e. when fewer workers are running than the server has CPUs (a
//! worker waiting out an io frame does not count as running: it steps
//! aside with [`WorkQueue::away`], and a parked one takes over the queue).
//!
//! A channel that wakes a receiver per message (`flume`, `crossbeam`) pays
//! a wake-up and a context switch per batch: on one server CPU, a reader
//! that hands over eight reads' batches in one turn woke eight workers, one
//! after the other, where one awake worker drains them all. This is the
//! rule of Go's scheduler and tokio's blocking pool: wake another thread
//! only when no awake one is free and a CPU is.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// A bounded multi-consumer queue for a fixed set of workers.
pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    /// Parked workers wait here.
    wake: Condvar,
    /// A producer waits here while the queue is full.
    room: Condvar,
    cap: usize,
    cpus: usize,
}

struct State<T> {
    items: VecDeque<T>,
    /// Workers awake and not stepped aside: taking, doing or about to take
    /// a batch.
    running: usize,
    /// Workers waiting on `wake`.
    parked: usize,
    /// Wake-ups granted and not yet taken by a parked worker (a condvar
    /// may wake a thread spuriously; only a token makes it run).
    tokens: usize,
    closed: bool,
}

/// A worker stepped aside (an io wait) while this lives.
pub struct Away<'a, T>(&'a WorkQueue<T>);

impl<T> Drop for Away<'_, T> {
    fn drop(&mut self) {
        self.0.lock().running += 1;
    }
}

impl<T> WorkQueue<T> {
    /// A queue of at most `cap` items for `workers` workers (all running
    /// until they first find it empty) on `cpus` CPUs.
    pub fn new(cap: usize, workers: usize, cpus: usize) -> Self {
        WorkQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(cap),
                running: workers,
                parked: 0,
                tokens: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            room: Condvar::new(),
            cap: cap.max(1),
            cpus: cpus.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A worker that panicked holding the lock left the counts whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes parked workers while there is a CPU to spare and queued work
    /// no woken worker is already on its way to.
    fn wake_if_needed(&self, st: &mut State<T>) {
        while st.items.len() > st.tokens && st.parked > st.tokens && st.running < self.cpus {
            st.tokens += 1;
            st.running += 1;
            self.wake.notify_one();
        }
    }

    /// Queues `item`, waiting while the queue is full; gives it back once
    /// the queue is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut st = self.lock();
        while st.items.len() >= self.cap && !st.closed {
            st = self.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.closed {
            return Err(item);
        }
        st.items.push_back(item);
        self.wake_if_needed(&mut st);
        Ok(())
    }

    /// Queues every one of `items` under one lock and then wakes workers as
    /// needed (a worker woken per item would, on one CPU, preempt the
    /// producer after each and take them one by one); what the queue, once
    /// closed, did not take comes back.
    pub fn push_all(&self, items: impl IntoIterator<Item = T>) -> Vec<T> {
        let mut st = self.lock();
        let mut refused = Vec::new();
        for item in items {
            while st.items.len() >= self.cap && !st.closed {
                self.wake_if_needed(&mut st);
                st = self.room.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.closed {
                refused.push(item);
            } else {
                st.items.push_back(item);
            }
        }
        self.wake_if_needed(&mut st);
        refused
    }

    /// Whether an item queued now would wake a parked worker (none running
    /// could take it and a CPU is spare).
    pub fn would_wake(&self) -> bool {
        let st = self.lock();
        st.running < self.cpus && st.parked > st.tokens
    }

    /// The next item for a worker, parking while there is none; `None`
    /// once the queue is closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut st = self.lock();
        loop {
            if let Some(item) = st.items.pop_front() {
                if st.items.len() + 1 == self.cap {
                    self.room.notify_one();
                }
                return Some(item);
            }
            if st.closed {
                return None;
            }
            st.running -= 1;
            st.parked += 1;
            loop {
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                if st.tokens > 0 {
                    st.tokens -= 1; // counted running by whoever woke it
                    break;
                }
                if st.closed {
                    st.running += 1;
                    break;
                }
            }
            st.parked -= 1;
        }
    }

    /// The calling worker steps aside (it is about to block) until the
    /// guard drops; a parked worker takes over the queue meanwhile.
    pub fn away(&self) -> Away<'_, T> {
        let mut st = self.lock();
        st.running -= 1;
        self.wake_if_needed(&mut st);
        Away(self)
    }

    /// No more items: workers drain what is queued, then get `None`.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.wake.notify_all();
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Every item is taken exactly once by some worker, whatever the
    /// capacity, the workers and the CPUs, and the workers end at close.
    #[test]
    fn every_item_is_taken_once() {
        for (cap, workers, cpus) in [(1, 1, 1), (4, 4, 1), (64, 8, 2), (2, 16, 16)] {
            let q = Arc::new(WorkQueue::<u64>::new(cap, workers, cpus));
            let sum = Arc::new(AtomicU64::new(0));
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let (q, sum) = (q.clone(), sum.clone());
                    std::thread::spawn(move || {
                        while let Some(x) = q.pop() {
                            sum.fetch_add(x, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for x in 1..=10_000u64 {
                q.push(x).unwrap();
            }
            q.close();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(
                sum.load(Ordering::Relaxed),
                10_000 * 10_001 / 2,
                "{cap} {workers} {cpus}"
            );
            assert_eq!(q.push(1), Err(1));
        }
    }

    /// One CPU: while a worker is running, a push wakes no other; once it
    /// steps aside (an io wait), a parked one is woken for the queue.
    #[test]
    fn wakes_only_when_no_running_worker_can_take_it() {
        let q = WorkQueue::<u32>::new(16, 3, 1);
        {
            let mut st = q.lock();
            // Two parked, one running.
            st.running = 1;
            st.parked = 2;
        }
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.lock().tokens, 0, "a running worker drains the queue");
        let away = q.away();
        {
            let st = q.lock();
            assert_eq!(
                (st.tokens, st.running),
                (1, 1),
                "a parked worker takes over"
            );
        }
        drop(away);
        assert_eq!(q.lock().running, 2);
    }

    /// Stepping aside with an empty queue wakes nobody; a worker parked on
    /// an empty queue is woken by the next push.
    #[test]
    fn a_parked_worker_wakes_for_the_next_push() {
        let q = Arc::new(WorkQueue::<u32>::new(4, 1, 1));
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || q.pop())
        };
        while q.lock().parked == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        q.push(7).unwrap();
        assert_eq!(worker.join().unwrap(), Some(7));
    }

    /// A turn's batches go in under one lock and wake one worker on one
    /// CPU, as many as there are batches on more (never more than parked).
    #[test]
    fn push_all_wakes_once_per_spare_cpu() {
        for (cpus, batches, parked, woken) in
            [(1, 8, 4, 1), (4, 8, 4, 4), (4, 2, 4, 2), (8, 8, 3, 3)]
        {
            let q = WorkQueue::<u32>::new(64, parked, cpus);
            {
                let mut st = q.lock();
                st.running = 0;
                st.parked = parked;
            }
            assert!(q.push_all(0..batches).is_empty());
            let st = q.lock();
            assert_eq!(
                (st.tokens, st.items.len()),
                (woken, batches as usize),
                "{cpus} {batches} {parked}"
            );
        }
        let q = WorkQueue::<u32>::new(4, 1, 1);
        q.close();
        assert_eq!(q.push_all([1, 2]), [1, 2]);
    }
}
