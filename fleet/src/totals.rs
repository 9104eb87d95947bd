//! Per pacing thread accumulators of the fleet (send lag, pacing lateness,
//! round trips), merged into the report at the end.

use common::buckets::BucketCounts;
use common::latency::new_latency_histogram;
use hdrhistogram::Histogram;

use crate::arrival_check::Gaps;

/// Per-thread accumulators merged at the end; the same in Prometheus
/// buckets for the live view ([`crate::live`]).
pub struct ThreadTotals {
    pub(crate) lag: Histogram<u64>,
    pub(crate) pacing: Histogram<u64>,
    pub(crate) round_trip: Histogram<u64>,
    pub(crate) lag_buckets: BucketCounts,
    pub(crate) pacing_buckets: BucketCounts,
    pub(crate) round_trip_buckets: BucketCounts,
    /// A sample of the gaps between measured frames' due times.
    pub(crate) gaps: Gaps,
}

impl Default for ThreadTotals {
    fn default() -> Self {
        ThreadTotals {
            lag: new_latency_histogram(),
            pacing: new_latency_histogram(),
            round_trip: new_latency_histogram(),
            lag_buckets: BucketCounts::default(),
            pacing_buckets: BucketCounts::default(),
            round_trip_buckets: BucketCounts::default(),
            gaps: Gaps::new(0),
        }
    }
}

impl ThreadTotals {
    /// Records one write's send lag.
    #[inline]
    pub fn record_lag(&mut self, ns: u64) {
        self.lag.saturating_record(ns.max(1));
        self.lag_buckets.record(ns);
    }

    /// Records how late a pacing thread woke for a scheduled write.
    #[inline]
    pub fn record_pacing(&mut self, ns: u64) {
        self.pacing.saturating_record(ns.max(1));
        self.pacing_buckets.record(ns);
    }

    /// Records one measured frame's round trip (due time to its ack).
    #[inline]
    pub fn record_round_trip(&mut self, ns: u64) {
        self.round_trip.saturating_record(ns.max(1));
        self.round_trip_buckets.record(ns);
    }

    /// Adds another thread's totals.
    pub fn merge(&mut self, o: &ThreadTotals) {
        self.lag.add(&o.lag).expect("same bounds");
        self.pacing.add(&o.pacing).expect("same bounds");
        self.round_trip.add(&o.round_trip).expect("same bounds");
        self.lag_buckets.add(&o.lag_buckets);
        self.pacing_buckets.add(&o.pacing_buckets);
        self.round_trip_buckets.add(&o.round_trip_buckets);
        self.gaps.merge(&o.gaps);
    }
}
