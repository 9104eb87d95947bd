//! Latency as both sides record it: HDR histograms with fixed bounds, their
//! base64 encoding in reports, and the summary every report carries.

use serde::{Deserialize, Serialize};

/// Largest latency the histogram tracks (100 s); larger values are clamped.
pub const LATENCY_MAX_NS: u64 = 100_000_000_000;

/// A latency histogram: 1 ns to [`LATENCY_MAX_NS`], 3 significant digits.
pub fn new_latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("static bounds are valid")
}

/// Latency summary in nanoseconds plus the full histogram.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Measured frames recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// HDR histogram, V2 serialized, base64.
    pub hdr: String,
}

impl LatencySummary {
    /// Summarises `h`.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        let empty = h.is_empty();
        let q = |p: f64| if empty { 0 } else { h.value_at_quantile(p) };
        LatencySummary {
            count: h.len(),
            min: if empty { 0 } else { h.min() },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if empty { 0 } else { h.max() },
            mean: if empty { 0.0 } else { h.mean() },
            hdr: hdr_base64::encode(h).unwrap_or_default(),
        }
    }

    /// Decodes the embedded histogram.
    pub fn histogram(&self) -> Result<hdrhistogram::Histogram<u64>, String> {
        hdr_base64::decode(&self.hdr)
    }

    /// The histograms of `summaries` merged (`None`: none recorded).
    pub fn merged<'a>(
        summaries: impl Iterator<Item = &'a LatencySummary>,
    ) -> Option<hdrhistogram::Histogram<u64>> {
        let mut all: Option<hdrhistogram::Histogram<u64>> = None;
        for h in summaries
            .filter(|s| s.count > 0)
            .filter_map(|s| s.histogram().ok())
        {
            match &mut all {
                Some(a) => a.add(&h).ok()?,
                None => all = Some(h),
            }
        }
        all.filter(|h| !h.is_empty())
    }
}

/// Serde for HDR histograms: V2 serialization, base64 encoded.
pub mod hdr_base64 {
    use base64::Engine;
    use hdrhistogram::serialization::{Deserializer as HdrDe, Serializer as _, V2Serializer};
    use hdrhistogram::Histogram;
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    /// Encodes a histogram to a base64 string.
    pub fn encode(h: &Histogram<u64>) -> Result<String, String> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut bytes)
            .map_err(|e| format!("{e:?}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Decodes a histogram from [`encode`]'s output.
    pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| e.to_string())?;
        HdrDe::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("{e:?}"))
    }

    /// Serde serializer.
    pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(h).map_err(S::Error::custom)?)
    }

    /// Serde deserializer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        decode(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}
