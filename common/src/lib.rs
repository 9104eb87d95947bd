//! What the ingest server and the client fleet both report: latency
//! summaries with their HDR histograms, CPU times, durations in JSON and how
//! nanoseconds are printed, and files written whole ([`fs`]). Shared so that a fleet links neither the server
//! models nor the harness.

pub mod buckets;
pub mod cpu;
pub mod cpu_list;
pub mod fs;
pub mod latency;
pub mod units;

pub use cpu::CpuTimes;
pub use latency::LatencySummary;

/// Serializes a `Duration` as fractional milliseconds.
pub mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    /// Reads milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs_f64(
            f64::deserialize(d)?.max(0.0) / 1000.0,
        ))
    }
}
