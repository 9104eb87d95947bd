//! The server report written by `harness serve`: the stable JSON contract
//! the harness and users read.

use serde::{Deserialize, Serialize};

pub use common::{CpuTimes, LatencySummary};

use crate::model::{Model, ServeConfig};
use crate::stages::StageReport;
use crate::stats::{ChildDeath, ChildSummary, ConnectionCounts, ErrorCounts, Stats};

/// Frame counts processed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketCounts {
    /// Measured frames.
    pub measured: u64,
    /// Warm-up frames.
    pub warmup: u64,
}

/// One client's line in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientReport {
    /// Client id.
    pub id: u32,
    /// Valid frames read, warm-up included.
    pub received: u64,
    /// Measured frames read.
    pub measured: u64,
    /// Highest sequence number seen.
    pub max_seq: Option<u64>,
    /// Sequence numbers up to `max_seq` never seen.
    pub missing: u64,
    /// Repeated sequence numbers.
    pub duplicates: u64,
    /// p99 of its measured frames' latency, ns, when the server recorded
    /// each client apart (`--client-latency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<u64>,
}

/// Frames processed per fixed-width bucket of CLOCK_MONOTONIC, dense from
/// the first bucket with a frame to the last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// CLOCK_MONOTONIC ns at the start of the first bucket.
    pub start_ns: u64,
    /// Width of each bucket, ns.
    pub bucket_ns: u64,
    /// Frames (warm-up included) whose work finished in each bucket.
    pub frames: Vec<u64>,
}

impl Timeline {
    /// Densifies sparse `(bucket index, frames)` pairs.
    pub fn from_buckets(buckets: &std::collections::BTreeMap<u64, u64>, bucket_ns: u64) -> Self {
        let (Some((&first, _)), Some((&last, _))) =
            (buckets.first_key_value(), buckets.last_key_value())
        else {
            return Timeline {
                bucket_ns,
                ..Timeline::default()
            };
        };
        let mut frames = vec![0; (last - first + 1) as usize];
        for (&b, &n) in buckets {
            frames[(b - first) as usize] = n;
        }
        Timeline {
            start_ns: first * bucket_ns,
            bucket_ns,
            frames,
        }
    }

    /// Frames finished in `[from_ns, to_ns)`, with the buckets cut by either
    /// edge counted in proportion to the part inside (frames are taken as
    /// spread evenly over a bucket).
    pub fn frames_between(&self, from_ns: u64, to_ns: u64) -> f64 {
        if self.bucket_ns == 0 || to_ns <= from_ns {
            return 0.0;
        }
        let w = self.bucket_ns as f64;
        self.frames
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let lo = self.start_ns + i as u64 * self.bucket_ns;
                let hi = lo + self.bucket_ns;
                let overlap = hi.min(to_ns).saturating_sub(lo.max(from_ns));
                n as f64 * overlap as f64 / w
            })
            .sum()
    }

    /// `(bucket start ns, frames)` pairs, for plotting.
    pub fn points(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, &n)| (self.start_ns + i as u64 * self.bucket_ns, n))
    }
}

/// The whole report of one `harness serve` run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerReport {
    /// Model name.
    pub model: String,
    /// Workers used.
    pub workers: usize,
    /// The settings served with.
    pub config: ServeConfig,
    /// Frames processed.
    pub packets: PacketCounts,
    /// Bytes read.
    pub bytes: u64,
    /// Reads (receives, completions) that returned bytes.
    #[serde(default)]
    pub reads: u64,
    /// Readiness waits ([`crate::stats::IngestStats::waits`]).
    #[serde(default)]
    pub waits: u64,
    /// Connection counters.
    pub connections: ConnectionCounts,
    /// Protocol errors.
    pub errors: ErrorCounts,
    /// Per-client accounting, by id.
    pub clients: Vec<ClientReport>,
    /// Frames from client ids beyond the tracking cap.
    pub untracked_frames: u64,
    /// XOR of every cpu frame's kernel result, 16 lowercase hex digits.
    pub work_digest: String,
    /// Downstream calls of call frames, answered and failed.
    #[serde(default)]
    pub calls: crate::stats::CallCounts,
    /// Due-to-processed latency of measured frames (coordinated omission
    /// corrected).
    pub latency_ns: LatencySummary,
    /// Written-to-processed latency of measured frames: excludes the
    /// fleet's batching and lateness.
    pub service_latency_ns: LatencySummary,
    /// Frames processed per 10 ms bucket.
    pub timeline: Timeline,
    /// Prefork: connections and frames per child.
    #[serde(default)]
    pub children: Vec<ChildSummary>,
    /// Prefork: children that died while serving, and their replacements.
    #[serde(default)]
    pub deaths: Vec<ChildDeath>,
    /// CPU of the process tree.
    pub cpu: CpuTimes,
    /// Peak resident set of the largest process in the tree, KiB.
    pub max_rss_kib: u64,
    /// The open-file limit: as found, and as served with.
    #[serde(default)]
    pub fd_limit: FdLimit,
    /// Ack mode: records and frames acknowledged, acks dropped.
    #[serde(default)]
    pub acks: crate::ack::AckCounts,
    /// Where measured frames' time went, stage by stage.
    #[serde(default)]
    pub stages: StageReport,
}

/// The server's open-file limit (`RLIMIT_NOFILE`): it raises its soft
/// limit to the hard one at start, so `--max-clients` is not cut short by
/// the usual soft 1024.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdLimit {
    /// Soft limit when the server started.
    pub soft_at_start: u64,
    /// Soft limit it served with.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

impl ServerReport {
    /// Builds the report from a model's merged statistics.
    pub fn new(
        model: &dyn Model,
        config: &ServeConfig,
        stats: &Stats,
        cpu: CpuTimes,
        max_rss_kib: u64,
    ) -> Self {
        let clients = stats
            .ingest
            .clients
            .iter()
            .map(|(&id, c)| ClientReport {
                id,
                received: c.received,
                measured: c.measured,
                max_seq: c.max_seq,
                missing: c.missing(),
                duplicates: c.duplicates,
                p99_ns: stats.process.by_client.p99_ns(id),
            })
            .collect();
        ServerReport {
            model: model.name().to_string(),
            workers: config.workers,
            config: config.clone(),
            packets: PacketCounts {
                measured: stats.process.measured,
                warmup: stats.process.warmup,
            },
            bytes: stats.ingest.bytes,
            reads: stats.ingest.reads,
            waits: stats.ingest.waits,
            connections: stats.ingest.connections,
            errors: stats.ingest.errors,
            clients,
            untracked_frames: stats.ingest.untracked_frames,
            work_digest: format!("{:016x}", stats.process.work_digest),
            calls: stats.process.calls,
            latency_ns: LatencySummary::of(&stats.process.latency),
            service_latency_ns: LatencySummary::of(&stats.process.service),
            timeline: Timeline::from_buckets(
                &stats.process.timeline,
                crate::stats::TIMELINE_BUCKET_NS,
            ),
            children: stats.children.clone(),
            deaths: stats.deaths.clone(),
            fd_limit: FdLimit::default(),
            acks: stats.ingest.acks,
            stages: StageReport::new(
                model.queue_is(),
                model.read_late_is(),
                &stats.process.stages,
            ),
            cpu,
            max_rss_kib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn timeline_is_dense_and_cut_in_proportion() {
        let buckets: BTreeMap<u64, u64> = [(10, 100), (12, 50)].into_iter().collect();
        let t = Timeline::from_buckets(&buckets, 1_000);
        assert_eq!((t.start_ns, t.frames.clone()), (10_000, vec![100, 0, 50]));
        // Whole buckets.
        assert_eq!(t.frames_between(0, 100_000), 150.0);
        assert_eq!(t.frames_between(10_000, 11_000), 100.0);
        // A quarter of the first bucket and half of the last.
        assert_eq!(t.frames_between(10_750, 12_500), 25.0 + 25.0);
        assert_eq!(t.frames_between(12_500, 12_500), 0.0);
        assert_eq!(
            Timeline::from_buckets(&BTreeMap::new(), 5).frames_between(0, 9),
            0.0
        );
    }
}
