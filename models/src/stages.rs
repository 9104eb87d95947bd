//! Where each frame's time went: its latency split into four stages from
//! the stamps every model takes alike (due, written, received, started,
//! finished), one HDR histogram per stage, and per bucket of its time in
//! the server's hands (written to finished: the service latency) the sum of
//! each stage, so the slowest frames' split can be read after the run.

use std::sync::atomic::{AtomicBool, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use workloads::{Frame, WorkKind};

use common::latency::{hdr_base64, LATENCY_MAX_NS};
use common::LatencySummary;

/// Whether this process stamps reads and records stages (on unless
/// `harness serve --no-stages` turned it off).
static RECORDING: AtomicBool = AtomicBool::new(true);

/// Turns the stages on or off for this process, before its workers start:
/// off, a read is not stamped and no frame's stages are recorded (the start
/// stamp stays: io timers run from it, and at `none` a frame's start and
/// finish are one clock read anyway), so the same build shows what knowing
/// costs (`docs/stage-cost.sh`).
pub fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

/// Whether stages are stamped and recorded ([`set_recording`]).
#[inline]
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// The stages, in the order a frame passes them.
pub const STAGES: [&str; 4] = ["fleet", "socket", "queue", "service"];
/// Latency buckets per octave in [`StageSums`]: a bucket is 1/8 of a
/// doubling wide (9% at most), so a percentile's bucket holds little else.
pub const SUB_BUCKETS: u32 = 8;
/// Buckets in [`StageSums`]: octaves up to 2^40 ns (18 minutes).
pub const BUCKETS: usize = 41 * SUB_BUCKETS as usize;

/// A stage's histogram: 1 ns to [`common::latency::LATENCY_MAX_NS`], 1
/// significant digit (values within 1/16, 6%: a stage's spread, not a
/// figure the answer rests on; shares come from exact sums), about 4 KiB,
/// so the four a server records per frame stay in its first-level cache.
pub fn new_stage_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 1).expect("static bounds are valid")
}

/// The service time of cpu or io frames, compared with the work asked
/// (off by more than 10% is flagged): 2 significant digits (1%).
pub fn new_work_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 2).expect("static bounds are valid")
}

/// One frame's four stage durations, ns; they add up to its latency.
///
/// fleet = written - due (the fleet's batching and lateness); socket =
/// received - written (the kernel, the network, and the socket's buffer
/// until the server's read returned: a frame waits there while the model
/// does something else); queue = started - received (a channel, a task's
/// scheduling, other frames ahead on the same loop); service = finished -
/// started (the work). Each stamp is clamped between its neighbours, so a
/// stamp out of order (clocks never are on one host) moves time between
/// stages and never adds any; a stamp not taken (0) counts as the finish.
#[inline]
pub fn split(frame: &Frame, done_ns: u64) -> [u64; 4] {
    let due = frame.due_ns.min(done_ns);
    let written = frame
        .due_ns
        .saturating_add(u64::from(frame.send_delay_ns))
        .clamp(due, done_ns);
    // A stamp never taken (0) counts as taken at the finish.
    let stamp = |ns: u64, after: u64| {
        if ns == 0 {
            done_ns
        } else {
            ns.clamp(after, done_ns)
        }
    };
    let received = stamp(frame.received_ns, written);
    let started = stamp(frame.started_ns, received);
    [
        written - due,
        received - written,
        started - received,
        done_ns - started,
    ]
}

/// A frame's time in the server's hands, from its stages: written to
/// finished (socket, queue and service), the service latency.
#[inline]
pub fn server_ns(parts: &[u64; 4]) -> u64 {
    parts[1] + parts[2] + parts[3]
}

/// The bucket of a latency of `ns`: exact below 8 ns, then 1/8 octave.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    let ns = ns.max(1);
    let octave = 63 - ns.leading_zeros();
    let i = if octave < 3 {
        ns as usize
    } else {
        let sub = (ns >> (octave - 3)) & u64::from(SUB_BUCKETS - 1);
        (octave * SUB_BUCKETS) as usize + sub as usize
    };
    i.min(BUCKETS - 1)
}

/// The smallest latency in bucket `i`, ns.
pub fn bucket_low(i: usize) -> u64 {
    let octave = i as u32 / SUB_BUCKETS;
    if octave < 1 {
        return i as u64;
    }
    if octave < 3 {
        // Below 8 ns buckets are exact; indices 8..24 are never used.
        return 1 << octave;
    }
    let sub = i as u64 % u64::from(SUB_BUCKETS);
    (1u64 << octave) + (sub << (octave - 3))
}

/// Frames and their stage sums in one bucket of service latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSums {
    /// Frames whose service latency (written to finished) fell in it.
    pub frames: u64,
    /// Sum of each stage over them, ns, in [`STAGES`] order.
    pub ns: [u64; 4],
}

impl BucketSums {
    fn add(&mut self, o: &BucketSums) {
        self.frames += o.frames;
        for (a, b) in self.ns.iter_mut().zip(o.ns) {
            *a = a.saturating_add(b);
        }
    }
}

/// Stage sums per bucket of service latency; serialized as the non-empty
/// buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSums(Box<[BucketSums; BUCKETS]>);

impl Default for StageSums {
    fn default() -> Self {
        StageSums(Box::new([BucketSums::default(); BUCKETS]))
    }
}

/// One non-empty bucket as reports carry it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBucket {
    /// Smallest service latency in the bucket, ns.
    pub low_ns: u64,
    /// Frames and stage sums.
    #[serde(flatten)]
    pub sums: BucketSums,
}

impl StageSums {
    /// The non-empty buckets, fastest first.
    pub fn buckets(&self) -> Vec<LatencyBucket> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, b)| b.frames > 0)
            .map(|(i, &sums)| LatencyBucket {
                low_ns: bucket_low(i),
                sums,
            })
            .collect()
    }

    /// Rebuilds from [`StageSums::buckets`]' output.
    pub fn from_buckets(buckets: &[LatencyBucket]) -> Self {
        let mut s = StageSums::default();
        for b in buckets {
            s.0[bucket_of(b.low_ns)].add(&b.sums);
        }
        s
    }
}

impl Serialize for StageSums {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.buckets().serialize(s)
    }
}

impl<'de> Deserialize<'de> for StageSums {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<LatencyBucket>::deserialize(d).map(|b| StageSums::from_buckets(&b))
    }
}

/// The four stage histograms, each with its run of equal values not yet
/// recorded: the frames of one read share their socket stage (one write,
/// one read) and, without work, their service stage, so a run costs one
/// record instead of one per frame. Every reader sees the runs recorded
/// ([`StageHistograms::get`], serde, merge).
#[derive(Clone, Debug)]
pub struct StageHistograms {
    hist: [Histogram<u64>; 4],
    /// (value, frames) per stage, recorded when the value changes.
    runs: [(u64, u64); 4],
}

impl Default for StageHistograms {
    fn default() -> Self {
        StageHistograms {
            hist: std::array::from_fn(|_| new_stage_histogram()),
            runs: [(0, 0); 4],
        }
    }
}

impl StageHistograms {
    /// Counts one frame's stages.
    #[inline]
    fn record(&mut self, parts: &[u64; 4]) {
        for ((h, run), &v) in self.hist.iter_mut().zip(&mut self.runs).zip(parts) {
            let v = v.max(1);
            if run.0 == v {
                run.1 += 1;
            } else {
                if run.1 > 0 {
                    h.saturating_record_n(run.0, run.1);
                }
                *run = (v, 1);
            }
        }
    }

    /// The histograms with every run recorded, in [`STAGES`] order.
    pub fn get(&self) -> [Histogram<u64>; 4] {
        let mut out = self.hist.clone();
        for (h, &(v, n)) in out.iter_mut().zip(&self.runs) {
            if n > 0 {
                h.saturating_record_n(v, n);
            }
        }
        out
    }

    fn merge(&mut self, o: &StageHistograms) {
        for ((a, b), &(v, n)) in self.hist.iter_mut().zip(&o.hist).zip(&o.runs) {
            a.add(b).expect("histograms share bounds");
            if n > 0 {
                a.saturating_record_n(v, n);
            }
        }
    }
}

impl Serialize for StageHistograms {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        four_histograms::serialize(&self.get(), s)
    }
}

impl<'de> Deserialize<'de> for StageHistograms {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(StageHistograms {
            hist: four_histograms::deserialize(d)?,
            runs: [(0, 0); 4],
        })
    }
}

/// Every measured frame's stages: a histogram per stage, the service time
/// of cpu and of io frames apart (the work as asked), and the stage sums
/// per bucket of service latency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stages {
    /// One histogram per stage, in [`STAGES`] order, ns.
    pub stage: StageHistograms,
    /// Service time of cpu frames, ns.
    #[serde(with = "hdr_base64")]
    pub work_cpu: Histogram<u64>,
    /// Service time of io frames (a timer's wait or a downstream call), ns.
    #[serde(with = "hdr_base64")]
    pub work_io: Histogram<u64>,
    /// Stage sums per bucket of service latency.
    pub by_latency: StageSums,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            stage: StageHistograms::default(),
            work_cpu: new_work_histogram(),
            work_io: new_work_histogram(),
            by_latency: StageSums::default(),
        }
    }
}

impl Stages {
    /// Records one measured frame finished at `done_ns`; its stages.
    #[inline]
    pub fn record(&mut self, frame: &Frame, done_ns: u64) -> [u64; 4] {
        let parts = split(frame, done_ns);
        self.stage.record(&parts);
        match frame.kind {
            WorkKind::Cpu => self.work_cpu.saturating_record(parts[3].max(1)),
            WorkKind::Io | WorkKind::Call => self.work_io.saturating_record(parts[3].max(1)),
            WorkKind::None => {}
        }
        let b = &mut self.by_latency.0[bucket_of(server_ns(&parts))];
        b.frames += 1;
        for (a, v) in b.ns.iter_mut().zip(parts) {
            *a = a.saturating_add(v);
        }
        parts
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &Stages) {
        self.stage.merge(&o.stage);
        self.work_cpu
            .add(&o.work_cpu)
            .expect("histograms share bounds");
        self.work_io
            .add(&o.work_io)
            .expect("histograms share bounds");
        for (a, b) in self.by_latency.0.iter_mut().zip(o.by_latency.0.iter()) {
            a.add(b);
        }
    }
}

/// The stages as `harness serve` reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// What a frame waits for in this model between its read and the
    /// start of its work (the model's own words: [`crate::model::Model::queue_is`]).
    pub queue_is: String,
    /// What keeps this model from reading a frame as it arrives
    /// ([`crate::model::Model::read_late_is`]).
    #[serde(default)]
    pub read_late_is: String,
    /// One summary per stage, in [`STAGES`] order, ns.
    pub stage_ns: Vec<LatencySummary>,
    /// Service time of cpu frames, ns (the work as asked).
    pub work_cpu_ns: LatencySummary,
    /// Service time of io frames, ns.
    pub work_io_ns: LatencySummary,
    /// Stage sums per bucket of service latency, fastest first, non-empty
    /// only.
    pub by_latency: Vec<LatencyBucket>,
}

impl StageReport {
    /// Summarises `stages` for a model whose queue and socket stages are
    /// as its `queue_is` and `read_late_is` say.
    pub fn new(queue_is: &str, read_late_is: &str, stages: &Stages) -> Self {
        StageReport {
            queue_is: queue_is.to_string(),
            read_late_is: read_late_is.to_string(),
            stage_ns: stages.stage.get().iter().map(LatencySummary::of).collect(),
            work_cpu_ns: LatencySummary::of(&stages.work_cpu),
            work_io_ns: LatencySummary::of(&stages.work_io),
            by_latency: stages.by_latency.buckets(),
        }
    }
}

/// Serde for the four stage histograms: a list of four base64 strings.
mod four_histograms {
    use hdrhistogram::Histogram;
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    use common::latency::hdr_base64;

    pub fn serialize<S: Serializer>(h: &[Histogram<u64>; 4], s: S) -> Result<S::Ok, S::Error> {
        let encoded: Result<Vec<String>, String> = h.iter().map(hdr_base64::encode).collect();
        s.collect_seq(encoded.map_err(S::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[Histogram<u64>; 4], D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        let decoded: Result<Vec<_>, String> = v.iter().map(|s| hdr_base64::decode(s)).collect();
        decoded
            .map_err(D::Error::custom)?
            .try_into()
            .map_err(|_| D::Error::custom("expected four stage histograms"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(due: u64, delay: u32, received: u64, started: u64) -> Frame {
        Frame {
            due_ns: due,
            send_delay_ns: delay,
            received_ns: received,
            started_ns: started,
            ..Frame::default()
        }
    }

    #[test]
    fn stages_split_the_latency_exactly() {
        // (due, delay, received, started, done) -> stages
        type Stamps = (u64, u32, u64, u64, u64);
        let cases: [(Stamps, [u64; 4]); 5] = [
            ((1_000, 100, 1_300, 1_600, 2_000), [100, 200, 300, 400]),
            // Nothing stamped: all after the write is socket.
            ((1_000, 100, 0, 0, 2_000), [100, 900, 0, 0]),
            // Started before received (never on one host): no queue.
            ((1_000, 0, 1_500, 1_200, 2_000), [0, 500, 0, 500]),
            // Stamps past the finish are cut at it.
            ((1_000, 0, 3_000, 3_000, 2_000), [0, 1_000, 0, 0]),
            // Finished before due: all zero.
            ((5_000, 10, 6_000, 6_000, 2_000), [0, 0, 0, 0]),
        ];
        for ((due, delay, rec, start, done), want) in cases {
            let got = split(&frame(due, delay, rec, start), done);
            assert_eq!(got, want, "{due} {delay} {rec} {start} {done}");
            assert_eq!(got.iter().sum::<u64>(), done.saturating_sub(due));
        }
    }

    #[test]
    fn buckets_are_an_eighth_of_an_octave_and_their_lows_round_trip() {
        let cases = [
            (1, 1),
            (7, 7),
            (8, 24),
            (9, 25),
            (15, 31),
            (16, 32),
            (17, 32),
        ];
        for (ns, want) in cases {
            assert_eq!(bucket_of(ns), want, "{ns}");
        }
        for ns in [1u64, 5, 8, 100, 1_000, 123_456, 1 << 30, 99_000_000_000] {
            let i = bucket_of(ns);
            assert!(bucket_low(i) <= ns, "{ns}");
            assert_eq!(bucket_of(bucket_low(i)), i, "{ns}");
            if i + 1 < BUCKETS && i >= 24 {
                assert!(bucket_low(i + 1) > ns, "{ns}");
                assert!(bucket_low(i + 1) as f64 <= bucket_low(i) as f64 * 1.126);
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    /// Runs of equal values count exactly what a record per frame would,
    /// whoever reads them: `get`, merge (runs pending on both sides) and
    /// serde.
    #[test]
    fn runs_of_equal_stages_count_as_one_record_per_frame() {
        let cases: [&[[u64; 4]]; 4] = [
            &[],
            &[[5, 7, 0, 0]],
            &[[5, 7, 0, 0], [6, 7, 0, 0], [6, 7, 1, 0], [9, 8, 3, 2]],
            &[[1, 1, 1, 1]; 10],
        ];
        for parts in cases {
            let mut runs = StageHistograms::default();
            let mut each: [Histogram<u64>; 4] = std::array::from_fn(|_| new_stage_histogram());
            for p in parts {
                runs.record(p);
                for (h, &v) in each.iter_mut().zip(p) {
                    h.record(v.max(1)).unwrap();
                }
            }
            assert_eq!(runs.get(), each, "{parts:?}");
            let mut merged = runs.clone();
            merged.merge(&runs);
            for (m, e) in merged.get().iter().zip(&each) {
                assert_eq!(m.len(), 2 * e.len());
                assert_eq!(m.max(), e.max());
            }
            let json = serde_json::to_string(&runs).unwrap();
            let back: StageHistograms = serde_json::from_str(&json).unwrap();
            assert_eq!(back.get(), each);
        }
    }

    #[test]
    fn stages_merge_and_round_trip_through_json() {
        let mut a = Stages::default();
        let mut b = Stages::default();
        a.record(&frame(1_000, 100, 1_300, 1_600), 2_000);
        b.record(
            &Frame {
                kind: WorkKind::Cpu,
                ..frame(0, 0, 10, 20)
            },
            5_020,
        );
        a.merge(&b);
        let json = serde_json::to_string(&a).unwrap();
        let back: Stages = serde_json::from_str(&json).unwrap();
        assert_eq!(back.by_latency, a.by_latency);
        assert_eq!(back.stage.get()[3].len(), 2);
        assert_eq!(back.work_cpu.len(), 1);
        let sums: u64 = back
            .by_latency
            .buckets()
            .iter()
            .map(|b| b.sums.frames)
            .sum();
        assert_eq!(sums, 2);
        let service: u64 = back.by_latency.buckets().iter().map(|b| b.sums.ns[3]).sum();
        assert_eq!(service, 400 + 5_000);
    }
}
