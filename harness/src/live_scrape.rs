//! One scrape of a server's `--metrics` for the live page: frames
//! processed, CPU seconds and the latency buckets, and what changed between
//! two scrapes (rate, p99, CPU).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One scrape of the current probe's server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the probe started.
    pub t_s: f64,
    /// Frames processed per second since the scrape before.
    pub rate: f64,
    /// p99 latency since the scrape before, ms (its bucket's bound).
    pub p99_ms: Option<f64>,
    /// The server's CPU since the scrape before, % of one CPU.
    pub cpu_pct: f64,
}

/// The counters the live page follows, as one scrape read them.
#[derive(Clone, Debug, PartialEq)]
pub struct Scrape {
    at: Instant,
    processed: f64,
    cpu_s: f64,
    /// (upper bound, cumulative count) of the latency buckets, +Inf last.
    buckets: Vec<(f64, f64)>,
}

impl Scrape {
    /// Scrapes `metrics`; `None` if it did not answer.
    pub fn of(metrics: SocketAddr) -> Option<Scrape> {
        let body = ureq::get(&format!("http://{metrics}/metrics"))
            .timeout(Duration::from_secs(2))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        Some(Scrape::parse(&body, Instant::now()))
    }

    /// Reads the followed series out of an OpenMetrics text body.
    pub fn parse(body: &str, at: Instant) -> Scrape {
        let mut s = Scrape {
            at,
            processed: 0.0,
            cpu_s: 0.0,
            buckets: Vec::new(),
        };
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            match name {
                "ingest_server_frames_processed_total" => s.processed = value,
                "ingest_server_cpu_seconds_total" => s.cpu_s = value,
                "ingest_server_latency_seconds_bucket" => {
                    let le = series
                        .split("le=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .map(|b| {
                            if b == "+Inf" {
                                f64::INFINITY
                            } else {
                                b.parse().unwrap_or(f64::NAN)
                            }
                        });
                    if let Some(le) = le.filter(|l| !l.is_nan()) {
                        s.buckets.push((le, value));
                    }
                }
                _ => {}
            }
        }
        s
    }

    /// What happened between `before` and this scrape, at `t_s` into the
    /// probe.
    pub fn since(&self, before: &Scrape, t_s: f64) -> Sample {
        let dt = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let deltas: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .zip(&before.buckets)
            .map(|(&(le, now), &(_, then))| (le, (now - then).max(0.0)))
            .collect();
        let total = deltas.last().map_or(0.0, |&(_, n)| n);
        let p99_ms = (total > 0.0)
            .then(|| deltas.iter().find(|&&(_, n)| n >= 0.99 * total))
            .flatten()
            .map(|&(le, _)| le * 1e3);
        Sample {
            t_s,
            rate: (self.processed - before.processed).max(0.0) / dt,
            p99_ms,
            cpu_pct: (self.cpu_s - before.cpu_s).max(0.0) / dt * 100.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(processed: u64, cpu: f64, buckets: &[(&str, u64)]) -> String {
        let mut b = format!(
            "# TYPE x counter\ningest_server_frames_processed_total{{model=\"single\"}} {processed}\n\
             ingest_server_cpu_seconds_total{{model=\"single\"}} {cpu}\n"
        );
        for (le, n) in buckets {
            b += &format!(
                "ingest_server_latency_seconds_bucket{{model=\"single\",le=\"{le}\"}} {n}\n"
            );
        }
        b
    }

    /// Rate, CPU and p99 over the frames between two scrapes: the p99 is
    /// the bound of the bucket that holds the 99th percentile of the new
    /// frames only; no new frame, no p99.
    #[test]
    fn a_sample_is_what_changed_between_two_scrapes() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(500);
        let cases = [
            // (buckets before, after) -> p99 ms
            (
                vec![("0.001", 0), ("0.002", 0), ("+Inf", 0)],
                vec![("0.001", 990), ("0.002", 1000), ("+Inf", 1000)],
                Some(1.0),
            ),
            (
                vec![("0.001", 990), ("0.002", 1000), ("+Inf", 1000)],
                vec![("0.001", 1000), ("0.002", 1500), ("+Inf", 1500)],
                Some(2.0),
            ),
            (
                vec![("0.001", 5), ("+Inf", 5)],
                vec![("0.001", 5), ("+Inf", 5)],
                None,
            ),
            (
                vec![("0.001", 0), ("+Inf", 0)],
                vec![("0.001", 0), ("+Inf", 10)],
                Some(f64::INFINITY),
            ),
        ];
        for (before, after, p99) in cases {
            let a = Scrape::parse(&body(100, 1.0, &before), t0);
            let b = Scrape::parse(&body(600, 1.25, &after), t1);
            let s = b.since(&a, 3.0);
            assert_eq!(s.p99_ms, p99, "{before:?} {after:?}");
            assert!((s.rate - 1_000.0).abs() < 1e-9);
            assert!((s.cpu_pct - 50.0).abs() < 1e-9);
            assert_eq!(s.t_s, 3.0);
        }
    }
}
