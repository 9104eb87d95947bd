//! Parsing and printing of durations and rates as users type and read them.

pub use common::units::{fmt_ns, parse_duration};

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
    fn human_units() {
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(12_345), "12.3us");
        assert_eq!(fmt_rate(12_500.0), "12.5k");
        assert_eq!(fmt_latency(5_000, 0), "n/a");
        assert_eq!(fmt_latency(5_000, 3), "5.0us");
    }
}
