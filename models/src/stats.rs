//! Mergeable server statistics: what was read (per client, per error
//! reason) and what was processed (packets, latency, work digest).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use workloads::{Frame, FrameError, WorkKind};

use crate::ack::AckCounts;
use crate::client_latency::ClientLatency;
use crate::live::{self, Conn};
use crate::stages::Stages;

/// Width of a timeline bucket: fine enough that a measured window's edges
/// cut at most 10 ms of frames (1% of a 1 s window) when interpolated.
pub const TIMELINE_BUCKET_NS: u64 = 10_000_000;
/// Most timeline buckets kept (one hour); later frames are still counted.
pub const MAX_TIMELINE_BUCKETS: usize = 360_000;
/// Most distinct client ids tracked per server; frames of further ids are
/// still processed but counted only in `untracked_frames`.
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

pub use common::latency::{hdr_base64, new_latency_histogram, LATENCY_MAX_NS};

/// Per-client accounting of valid frames read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCounts {
    /// Valid frames read, warm-up included.
    pub received: u64,
    /// Valid measured (non-warm-up) frames read.
    pub measured: u64,
    /// Highest sequence number seen.
    pub max_seq: Option<u64>,
    /// Frames whose sequence number was not above the previous one on the
    /// same connection.
    pub duplicates: u64,
}

impl ClientCounts {
    /// Sequence numbers up to `max_seq` that never arrived.
    pub fn missing(&self) -> u64 {
        let expected = self.max_seq.map_or(0, |m| m.saturating_add(1));
        expected.saturating_sub(self.received - self.duplicates)
    }

    fn merge(&mut self, o: &ClientCounts) {
        self.received += o.received;
        self.measured += o.measured;
        self.duplicates += o.duplicates;
        self.max_seq = self.max_seq.max(o.max_seq);
    }
}

/// Connection lifecycle counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCounts {
    /// Connections taken into service.
    pub accepted: u64,
    /// Connections closed at once because `--max-clients` were open.
    pub rejected: u64,
    /// Accepted connections the server has closed (any reason).
    pub closed: u64,
    /// Connections closed for being silent past `--idle-timeout`.
    pub idle_timeouts: u64,
    /// Connections closed because a frame they started was not complete
    /// within `--frame-timeout` (slowloris), counted apart from idle ones.
    #[serde(default)]
    pub frame_timeouts: u64,
    /// Connections the peer aborted (a reset rather than an orderly close).
    /// A partial frame left by an abort is not a protocol error: the fleet
    /// aborts a client it gives up on, wherever its last write ended.
    #[serde(default)]
    pub resets: u64,
    /// Connections accepted and closed at once because the process had no
    /// file descriptor to spare (EMFILE/ENFILE): shed, not served.
    #[serde(default)]
    pub shed: u64,
}

impl ConnectionCounts {
    /// Counts `n` connection events `e`, in the live view too.
    #[inline]
    pub fn add(&mut self, e: Conn, n: u64) {
        *match e {
            Conn::Accepted => &mut self.accepted,
            Conn::Rejected => &mut self.rejected,
            Conn::Closed => &mut self.closed,
            Conn::IdleTimeout => &mut self.idle_timeouts,
            Conn::FrameTimeout => &mut self.frame_timeouts,
            Conn::Reset => &mut self.resets,
            Conn::Shed => &mut self.shed,
        } += n;
        live::conn(e, n);
    }
}

/// Protocol error counters, one per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Magic was not `IG`.
    pub bad_magic: u64,
    /// Version was not 2.
    pub bad_version: u64,
    /// Work kind 3 or reserved bits set.
    pub bad_flags: u64,
    /// CRC mismatch.
    pub bad_checksum: u64,
    /// Work above the server's caps.
    pub work_over_limit: u64,
    /// Peer closed (orderly) in the middle of a frame.
    pub truncated: u64,
}

impl ErrorCounts {
    /// Counts one error of `e`'s reason, in the live view too.
    pub fn count(&mut self, e: FrameError) {
        let (field, i) = match e {
            FrameError::BadMagic => (&mut self.bad_magic, 0),
            FrameError::BadVersion => (&mut self.bad_version, 1),
            FrameError::BadFlags => (&mut self.bad_flags, 2),
            FrameError::BadChecksum => (&mut self.bad_checksum, 3),
            FrameError::WorkOverLimit => (&mut self.work_over_limit, 4),
        };
        *field += 1;
        live::error(i);
    }

    /// Counts a frame cut short by the peer's orderly close.
    pub fn count_truncated(&mut self) {
        self.truncated += 1;
        live::error(5);
    }

    /// All errors together.
    pub fn total(&self) -> u64 {
        self.bad_magic
            + self.bad_version
            + self.bad_flags
            + self.bad_checksum
            + self.work_over_limit
            + self.truncated
    }

    fn merge(&mut self, o: &ErrorCounts) {
        self.bad_magic += o.bad_magic;
        self.bad_version += o.bad_version;
        self.bad_flags += o.bad_flags;
        self.bad_checksum += o.bad_checksum;
        self.work_over_limit += o.work_over_limit;
        self.truncated += o.truncated;
    }
}

/// What the reading side saw: bytes, connections, errors, clients.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IngestStats {
    /// Bytes read.
    pub bytes: u64,
    /// Reads (receives, completions) that returned bytes.
    #[serde(default)]
    pub reads: u64,
    /// Readiness waits: the event loop's waits for events (`epoll_wait`,
    /// a ring's wait for completions, a runtime worker's park); 0 where a
    /// thread blocks in its read instead.
    #[serde(default)]
    pub waits: u64,
    /// Connection counters.
    pub connections: ConnectionCounts,
    /// Protocol errors.
    pub errors: ErrorCounts,
    /// Per-client counts, by client id.
    pub clients: BTreeMap<u32, ClientCounts>,
    /// Valid frames of client ids beyond [`MAX_TRACKED_CLIENTS`].
    pub untracked_frames: u64,
    /// Ack mode: what the connections' ack writers did.
    #[serde(default)]
    pub acks: AckCounts,
}

impl IngestStats {
    /// Accounts one valid frame; `next_seq` is the connection's expected
    /// next sequence number for this client, updated here.
    pub fn count_frame(&mut self, frame: &Frame, next_seq: &mut Option<(u32, u64)>) {
        live::count(live::Counter::Received, 1);
        let seq = u64::from(frame.seq);
        let tracked =
            self.clients.len() < MAX_TRACKED_CLIENTS || self.clients.contains_key(&frame.client_id);
        if !tracked {
            self.untracked_frames += 1;
            return;
        }
        let c = self.clients.entry(frame.client_id).or_default();
        c.received += 1;
        c.measured += u64::from(!frame.warmup);
        c.max_seq = c.max_seq.max(Some(seq));
        match next_seq {
            Some((id, next)) if *id == frame.client_id => {
                if seq < *next {
                    c.duplicates += 1;
                } else {
                    *next = seq + 1;
                }
            }
            _ => *next_seq = Some((frame.client_id, seq + 1)),
        }
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &IngestStats) {
        self.bytes += o.bytes;
        self.reads += o.reads;
        self.waits += o.waits;
        self.connections.accepted += o.connections.accepted;
        self.connections.rejected += o.connections.rejected;
        self.connections.closed += o.connections.closed;
        self.connections.idle_timeouts += o.connections.idle_timeouts;
        self.connections.frame_timeouts += o.connections.frame_timeouts;
        self.connections.resets += o.connections.resets;
        self.connections.shed += o.connections.shed;
        self.errors.merge(&o.errors);
        for (id, c) in &o.clients {
            self.clients.entry(*id).or_default().merge(c);
        }
        self.untracked_frames += o.untracked_frames;
        self.acks.merge(&o.acks);
    }
}

/// Downstream calls made for call frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    /// Calls the downstream answered with the reply asked for.
    pub answered: u64,
    /// Calls that failed: no downstream configured, its connection refused,
    /// broken or timed out, or a reply that was not the request's.
    pub failed: u64,
}

/// What the processing side did: packets, work digest, latency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Measured frames processed.
    pub measured: u64,
    /// Warm-up frames processed.
    pub warmup: u64,
    /// XOR of the kernel result of every cpu frame.
    pub work_digest: u64,
    /// Downstream calls of call frames, answered and failed.
    #[serde(default)]
    pub calls: CallCounts,
    /// Due-to-processed latency of measured frames, ns.
    #[serde(with = "hdr_base64")]
    pub latency: Histogram<u64>,
    /// Written-to-processed (service) latency of measured frames, ns: the
    /// latency minus the frame's send delay.
    #[serde(with = "hdr_base64")]
    pub service: Histogram<u64>,
    /// Frames processed per [`TIMELINE_BUCKET_NS`] bucket of CLOCK_MONOTONIC.
    #[serde(default)]
    pub timeline: BTreeMap<u64, u64>,
    /// Where measured frames' time went, stage by stage.
    #[serde(default)]
    pub stages: Stages,
    /// Each client's latency apart, when asked for.
    #[serde(default)]
    pub by_client: ClientLatency,
}

impl Default for ProcessStats {
    fn default() -> Self {
        ProcessStats {
            measured: 0,
            warmup: 0,
            work_digest: 0,
            calls: CallCounts::default(),
            latency: new_latency_histogram(),
            service: new_latency_histogram(),
            timeline: BTreeMap::new(),
            stages: Stages::default(),
            by_client: ClientLatency::default(),
        }
    }
}

impl ProcessStats {
    /// Empty, recording each client's latency apart when `by_client`.
    pub fn new(by_client: bool) -> Self {
        ProcessStats {
            by_client: ClientLatency::new(by_client),
            ..ProcessStats::default()
        }
    }

    /// Records a frame whose work finished at `done_ns`, with the kernel
    /// result `digest` for a cpu frame; for a call frame `digest` says
    /// whether the downstream answered ([`crate::work::CALL_ANSWERED`]).
    #[inline]
    pub fn record(&mut self, frame: &Frame, done_ns: u64, digest: Option<u64>) {
        match (frame.kind, digest) {
            (WorkKind::Call, Some(_)) => self.calls.answered += 1,
            (WorkKind::Call, None) => self.calls.failed += 1,
            (_, Some(x)) => self.work_digest ^= x,
            (_, None) => {}
        }
        let bucket = done_ns / TIMELINE_BUCKET_NS;
        let room = self.timeline.len() < MAX_TIMELINE_BUCKETS;
        match self.timeline.last_entry() {
            Some(mut last) if *last.key() == bucket => *last.get_mut() += 1,
            _ if room => *self.timeline.entry(bucket).or_default() += 1,
            _ => {}
        }
        if frame.warmup {
            self.warmup += 1;
            live::processed(None, None);
        } else {
            self.measured += 1;
            let latency = frame.latency_ns(done_ns).max(1);
            let service = frame.service_latency_ns(done_ns).max(1);
            self.latency.saturating_record(latency);
            self.by_client.record(frame.client_id, latency);
            self.service.saturating_record(service);
            let stages = crate::stages::recording().then(|| self.stages.record(frame, done_ns));
            live::processed(Some((latency, service)), stages.as_ref());
        }
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &ProcessStats) {
        self.measured += o.measured;
        self.warmup += o.warmup;
        self.work_digest ^= o.work_digest;
        self.calls.answered += o.calls.answered;
        self.calls.failed += o.calls.failed;
        self.latency
            .add(&o.latency)
            .expect("histograms share bounds");
        self.service
            .add(&o.service)
            .expect("histograms share bounds");
        self.stages.merge(&o.stages);
        self.by_client.merge(&o.by_client);
        for (&bucket, &n) in &o.timeline {
            if self.timeline.len() < MAX_TIMELINE_BUCKETS || self.timeline.contains_key(&bucket) {
                *self.timeline.entry(bucket).or_default() += n;
            }
        }
    }
}

/// One prefork child's share of the work.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSummary {
    /// Process id.
    pub pid: i32,
    /// Connections it accepted.
    pub connections: u64,
    /// Frames it processed (warm-up included).
    pub frames: u64,
    /// How it ended.
    pub ended: String,
    /// Where its counts came from: `report` (its own, at exit) or `board`
    /// (what it had published when it died).
    pub counts_from: String,
}

/// A prefork child that died while serving.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildDeath {
    /// Process id.
    pub pid: i32,
    /// How it ended (signal or exit status).
    pub status: String,
    /// Milliseconds after the parent started serving.
    pub at_ms: u64,
    /// The replacement forked for it, if any.
    pub replaced_by: Option<i32>,
}

/// Everything one model instance (or child) observed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Reading side.
    pub ingest: IngestStats,
    /// Processing side.
    pub process: ProcessStats,
    /// Prefork: each child's share.
    #[serde(default)]
    pub children: Vec<ChildSummary>,
    /// Prefork: children that died while serving.
    #[serde(default)]
    pub deaths: Vec<ChildDeath>,
}

impl Stats {
    /// Empty, recording each client's latency apart when `by_client`.
    pub fn new(by_client: bool) -> Self {
        Stats {
            process: ProcessStats::new(by_client),
            ..Stats::default()
        }
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &Stats) {
        self.ingest.merge(&o.ingest);
        self.process.merge(&o.process);
        self.children.extend(o.children.iter().cloned());
        self.deaths.extend(o.deaths.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workloads::WorkKind;

    fn frame(client_id: u32, seq: u32, warmup: bool) -> Frame {
        Frame {
            client_id,
            seq,
            send_delay_ns: 0,
            due_ns: 0,
            kind: WorkKind::None,
            amount: 0,
            warmup,
            ack: false,
            received_ns: 0,
            started_ns: 0,
        }
    }

    #[test]
    fn gaps_and_duplicates_are_counted() {
        let mut s = IngestStats::default();
        let mut next = None;
        for seq in [0, 1, 1, 4, 5] {
            s.count_frame(&frame(9, seq, seq == 0), &mut next);
        }
        let c = s.clients[&9];
        assert_eq!((c.received, c.measured, c.duplicates), (5, 4, 1));
        assert_eq!(c.max_seq, Some(5));
        assert_eq!(c.missing(), 2);
    }

    #[test]
    fn huge_values_never_overflow() {
        let mut p = ProcessStats::default();
        let mut f = frame(1, u32::MAX, false);
        f.send_delay_ns = u32::MAX;
        p.record(&f, 0, None);
        f.due_ns = u64::MAX;
        p.record(&f, u64::MAX, None);
        f.due_ns = 0;
        p.record(&f, u64::MAX, None);
        assert_eq!(p.measured, 3);
        assert_eq!(p.service.len(), 3);
        let mut s = IngestStats::default();
        let mut next = None;
        s.count_frame(&f, &mut next);
        s.count_frame(&f, &mut next);
        assert_eq!(s.clients[&1].duplicates, 1);
        assert_eq!(s.clients[&1].missing(), u32::MAX as u64);
    }

    #[test]
    fn latency_and_service_latency_are_recorded_apart() {
        let mut p = ProcessStats::default();
        let mut f = frame(1, 0, false);
        f.due_ns = 1_000_000;
        f.send_delay_ns = 600_000;
        p.record(&f, 1_700_000, None);
        // 700 us from due, 100 us from the write.
        assert_eq!(p.latency.value_at_quantile(0.5) / 1000, 700);
        assert_eq!(p.service.value_at_quantile(0.5) / 1000, 100);
        // Warm-up frames are counted, not measured.
        p.record(&frame(1, 1, true), 2_000_000, None);
        assert_eq!((p.measured, p.warmup, p.latency.len()), (1, 1, 1));
    }

    #[test]
    fn stats_round_trip_through_json() {
        let mut st = Stats::default();
        st.process.record(&frame(1, 0, false), 5_000, Some(0xAB));
        let json = serde_json::to_string(&st).unwrap();
        let back: Stats = serde_json::from_str(&json).unwrap();
        assert_eq!(back.process.latency.len(), 1);
        assert_eq!(back.process.work_digest, 0xAB);
    }
}
