//! Prometheus latency buckets, the same for the server's and the fleet's
//! live metrics: upper bounds 10 us x 2^i for i in 0..21 (10 us to 10.5
//! s), then +Inf. Live counts need fixed bounds (Prometheus sums buckets
//! across series); the reports keep HDR histograms.

/// Buckets, +Inf included.
pub const BUCKETS: usize = 22;
/// The first bucket's upper bound, ns.
pub const FIRST_BOUND_NS: u64 = 10_000;

/// The bucket of a latency of `ns`: the first whose bound is not below it.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    let steps = ns.saturating_sub(1) / FIRST_BOUND_NS;
    ((64 - steps.leading_zeros()) as usize).min(BUCKETS - 1)
}

/// Bucket `i`'s upper bound in seconds (+Inf for the last).
pub fn bound_seconds(i: usize) -> f64 {
    if i + 1 >= BUCKETS {
        f64::INFINITY
    } else {
        (FIRST_BOUND_NS << i) as f64 / 1e9
    }
}

/// Frames per bucket (not cumulative) and the sum of their latencies:
/// one thread's, or a sum of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketCounts {
    /// Frames per bucket, [`BUCKETS`] of them.
    pub counts: [u64; BUCKETS],
    /// Sum of the latencies, ns.
    pub sum_ns: u64,
}

impl Default for BucketCounts {
    fn default() -> Self {
        BucketCounts {
            counts: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl BucketCounts {
    /// Counts one latency of `ns`.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket_of(ns)] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &BucketCounts) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.wrapping_add(o.sum_ns);
    }

    /// Frames counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double_from_ten_microseconds() {
        let cases = [
            (0, 0),
            (1, 0),
            (10_000, 0),
            (10_001, 1),
            (20_000, 1),
            (20_001, 2),
            (40_000, 2),
            (1_000_000, 7), // 1 ms <= 1.28 ms
            (10_485_760_000, 20),
            (10_485_760_001, 21),
            (u64::MAX, 21),
        ];
        for (ns, want) in cases {
            assert_eq!(bucket_of(ns), want, "{ns}");
            assert!(ns as f64 / 1e9 <= bound_seconds(want), "{ns}");
            if want > 0 {
                assert!(ns as f64 / 1e9 > bound_seconds(want - 1), "{ns}");
            }
        }
        let mut b = BucketCounts::default();
        b.record(15_000);
        b.add(&b.clone());
        assert_eq!((b.counts[1], b.total(), b.sum_ns), (2, 2, 30_000));
    }
}
