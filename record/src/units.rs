//! Parsing and printing of durations and rates as users type and read them.

use std::time::Duration;

/// Parses `500ms`, `10s`, `2m`, `250us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 500ms, 10s or 2m ({e})"))
}

pub use common::units::fmt_ns;

/// A latency figure, or `n/a` when no measured frame was processed (an
/// overloaded server that never got past the warm-up backlog).
pub fn fmt_latency(ns: u64, samples: u64) -> String {
    if samples == 0 {
        "n/a".to_string()
    } else {
        fmt_ns(ns)
    }
}

/// A rate in packets per second: `950`, `12.5k`, `1.20M`.
pub fn fmt_rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2}M", pps / 1e6)
    } else if pps >= 1e3 {
        format!("{:.1}k", pps / 1e3)
    } else {
        format!("{pps:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_common_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn human_units() {
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(12_345), "12.3us");
        assert_eq!(fmt_rate(12_500.0), "12.5k");
        assert_eq!(fmt_latency(5_000, 0), "n/a");
        assert_eq!(fmt_latency(5_000, 3), "5.0us");
    }
}
