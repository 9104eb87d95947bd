//! The fleet's live view for `harness fleet --metrics`: every pacing
//! thread publishes what its clients have done (frames written, frames due
//! and not yet written, connects, the lag and round-trip buckets) every
//! [`PUBLISH_EVERY_NS`] and when it ends, into one board a metrics thread
//! reads. A pacing thread takes the board's lock only to publish.

use std::sync::Mutex;

use common::buckets::BucketCounts;

use crate::client::Client;
use crate::schedule::Schedule;
use crate::totals::ThreadTotals;

/// How often a pacing thread publishes, ns.
pub const PUBLISH_EVERY_NS: u64 = 100_000_000;

/// What one pacing thread's clients have done, or the whole fleet's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadView {
    /// Measured frames fully written.
    pub sent_measured: u64,
    /// Warm-up frames fully written.
    pub sent_warmup: u64,
    /// Frames due by now and not yet written.
    pub behind: u64,
    /// Connects started.
    pub tries: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// Connections the server closed before the first frame was written.
    pub refusals: u64,
    /// Connections that came up and were written to.
    pub established: u64,
    /// Send lag of each write.
    pub send_lag: BucketCounts,
    /// How late the pacing thread woke for each scheduled write.
    pub pacing_lag: BucketCounts,
    /// Round trips of measured frames (ack mode).
    pub round_trip: BucketCounts,
}

impl ThreadView {
    /// The view of `clients` at `now`, with their thread's `totals`.
    pub fn of(clients: &[Client], schedule: &Schedule, totals: &ThreadTotals, now: u64) -> Self {
        let mut v = ThreadView {
            send_lag: totals.lag_buckets.clone(),
            pacing_lag: totals.pacing_buckets.clone(),
            round_trip: totals.round_trip_buckets.clone(),
            ..ThreadView::default()
        };
        for c in clients {
            let a = c.attempts();
            v.sent_measured += c.sent_measured;
            v.sent_warmup += c.sent_warmup;
            v.behind += schedule.due_by(c.index, now).saturating_sub(c.sent());
            v.tries += u64::from(a.tries);
            v.connect_failures += u64::from(a.connect_failures);
            v.refusals += u64::from(a.refusals);
            v.established += u64::from(a.established);
        }
        v
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &ThreadView) {
        self.sent_measured += o.sent_measured;
        self.sent_warmup += o.sent_warmup;
        self.behind += o.behind;
        self.tries += o.tries;
        self.connect_failures += o.connect_failures;
        self.refusals += o.refusals;
        self.established += o.established;
        self.send_lag.add(&o.send_lag);
        self.pacing_lag.add(&o.pacing_lag);
        self.round_trip.add(&o.round_trip);
    }
}

/// The board the pacing threads publish on.
#[derive(Debug, Default)]
pub struct FleetLive {
    threads: Mutex<Vec<ThreadView>>,
}

impl FleetLive {
    /// Replaces pacing thread `thread`'s view.
    pub fn publish(&self, thread: usize, view: ThreadView) {
        let mut t = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() <= thread {
            t.resize(thread + 1, ThreadView::default());
        }
        t[thread] = view;
    }

    /// Every thread's last view, summed.
    pub fn total(&self) -> ThreadView {
        let t = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = ThreadView::default();
        for v in t.iter() {
            sum.add(v);
        }
        sum
    }
}
