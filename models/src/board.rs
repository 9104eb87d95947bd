//! The prefork board: memory shared between the parent and its children
//! (an anonymous `MAP_SHARED` mapping made before forking) where each child
//! publishes what it has counted, so a child that dies loses nothing it had
//! already counted.
//!
//! Each child owns one slot. After every turn of its loop it publishes its
//! counts (frames processed, per-client accounting, connections, errors,
//! digest) into the slot's count area, double-buffered so a child killed
//! mid-publish leaves the previous complete copy readable. Every 100 ms it
//! also publishes its latency histograms and timeline (JSON, double-buffered
//! the same way); those may miss the last 100 ms of a dead child. The parent
//! reads a slot only after its child ended.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

use crate::model::ServeError;
use crate::stats::{ClientCounts, IngestStats, ProcessStats, Stats};

/// Clients one slot tracks; frames of further clients of a dead child are
/// counted as untracked.
pub const SLOT_CLIENTS: usize = 1024;
/// Bytes of one histogram snapshot buffer.
const SNAPSHOT_BYTES: usize = 512 * 1024;
const SNAPSHOT_WORDS: usize = SNAPSHOT_BYTES / 8;

/// Scalars of a count area, in order.
const SCALARS: usize = 21;

/// One copy of a child's counts.
#[repr(C)]
struct Counts {
    scalars: [AtomicU64; SCALARS],
    /// id + 1 (0: empty), received, measured, max_seq + 1 (0: none), duplicates.
    clients: [[AtomicU64; 5]; SLOT_CLIENTS],
}

#[repr(C)]
struct Slot {
    /// Which count area holds the last complete copy, plus one (0: none).
    counts_gen: AtomicU64,
    counts: [Counts; 2],
    /// Which snapshot buffer is complete, plus one (0: none).
    snapshot_gen: AtomicU64,
    snapshot_len: [AtomicU64; 2],
    snapshot: [[AtomicU64; SNAPSHOT_WORDS]; 2],
}

/// The shared mapping: one slot per child the parent may ever start.
pub struct Board {
    slots: &'static [Slot],
}

impl Board {
    /// Maps `slots` zeroed slots, shared with children forked later.
    pub fn new(slots: usize) -> Result<Self, ServeError> {
        let bytes =
            NonZeroUsize::new(slots.max(1) * std::mem::size_of::<Slot>()).expect("non-zero size");
        // SAFETY: a fresh anonymous mapping is page-aligned (enough for
        // AtomicU64) and zero-filled, and all-zero bytes are valid `Slot`s
        // (atomics only). It is never unmapped, so the 'static slice stays
        // valid in this process and in every child forked from it.
        let slots = unsafe {
            let ptr = mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
            .map_err(|e| ServeError::Io {
                what: "map shared memory for the prefork board",
                source: e.into(),
            })?;
            std::slice::from_raw_parts(ptr.as_ptr().cast::<Slot>(), slots.max(1))
        };
        Ok(Board { slots })
    }

    /// Publishes a child's counts into `slot`.
    pub fn publish_counts(&self, slot: usize, ingest: &IngestStats, process: &ProcessStats) {
        let s = &self.slots[slot];
        let gen = s.counts_gen.load(Ordering::Acquire);
        let area = &s.counts[(gen % 2) as usize];
        let e = &ingest.errors;
        let c = &ingest.connections;
        let mut untracked = ingest.untracked_frames;
        for (i, (id, cc)) in ingest.clients.iter().enumerate() {
            if i >= SLOT_CLIENTS {
                untracked += cc.received;
                continue;
            }
            let cell = &area.clients[i];
            let values = [
                *id as u64 + 1,
                cc.received,
                cc.measured,
                cc.max_seq.map_or(0, |m| m + 1),
                cc.duplicates,
            ];
            for (a, v) in cell.iter().zip(values) {
                a.store(v, Ordering::Relaxed);
            }
        }
        let clients = ingest.clients.len().min(SLOT_CLIENTS) as u64;
        let scalars = [
            process.measured,
            process.warmup,
            process.work_digest,
            ingest.bytes,
            c.accepted,
            c.rejected,
            c.closed,
            c.idle_timeouts,
            c.resets,
            e.bad_magic,
            e.bad_version,
            e.bad_flags,
            e.bad_checksum,
            e.work_over_limit,
            e.truncated,
            untracked,
            clients,
            c.frame_timeouts,
            c.shed,
            process.calls.answered,
            process.calls.failed,
        ];
        for (a, v) in area.scalars.iter().zip(scalars) {
            a.store(v, Ordering::Relaxed);
        }
        s.counts_gen.store(gen + 1, Ordering::Release);
    }

    /// Publishes a child's histograms and timeline into `slot`; false if
    /// they do not fit (then the previous snapshot stays).
    pub fn publish_snapshot(&self, slot: usize, process: &ProcessStats) -> bool {
        let Ok(mut json) = serde_json::to_vec(process) else {
            return false;
        };
        if json.len() > SNAPSHOT_BYTES {
            let mut lean = process.clone();
            lean.timeline.clear();
            lean.by_client.clients.clear();
            match serde_json::to_vec(&lean) {
                Ok(j) if j.len() <= SNAPSHOT_BYTES => json = j,
                _ => return false,
            }
        }
        let s = &self.slots[slot];
        let gen = s.snapshot_gen.load(Ordering::Acquire);
        let i = (gen % 2) as usize;
        for (word, chunk) in s.snapshot[i].iter().zip(json.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        s.snapshot_len[i].store(json.len() as u64, Ordering::Relaxed);
        s.snapshot_gen.store(gen + 1, Ordering::Release);
        true
    }

    /// What the child of `slot` last published (after it ended).
    pub fn read(&self, slot: usize) -> Stats {
        let s = &self.slots[slot];
        let mut process = match s.snapshot_gen.load(Ordering::Acquire) {
            0 => ProcessStats::default(),
            gen => {
                let i = ((gen - 1) % 2) as usize;
                let len = s.snapshot_len[i].load(Ordering::Relaxed) as usize;
                let bytes: Vec<u8> = s.snapshot[i]
                    .iter()
                    .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
                    .take(len)
                    .collect();
                serde_json::from_slice(&bytes).unwrap_or_default()
            }
        };
        let mut ingest = IngestStats::default();
        if let Some(gen) = s.counts_gen.load(Ordering::Acquire).checked_sub(1) {
            let area = &s.counts[(gen % 2) as usize];
            let v: Vec<u64> = area
                .scalars
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect();
            // Counts are exact to the child's last turn; they win over the
            // (up to 100 ms older) histogram snapshot.
            (process.measured, process.warmup, process.work_digest) = (v[0], v[1], v[2]);
            ingest.bytes = v[3];
            let c = &mut ingest.connections;
            (c.accepted, c.rejected, c.closed, c.idle_timeouts, c.resets) =
                (v[4], v[5], v[6], v[7], v[8]);
            let e = &mut ingest.errors;
            (
                e.bad_magic,
                e.bad_version,
                e.bad_flags,
                e.bad_checksum,
                e.work_over_limit,
                e.truncated,
            ) = (v[9], v[10], v[11], v[12], v[13], v[14]);
            ingest.untracked_frames = v[15];
            ingest.connections.frame_timeouts = v[17];
            ingest.connections.shed = v[18];
            (process.calls.answered, process.calls.failed) = (v[19], v[20]);
            for cell in area.clients.iter().take(v[16] as usize) {
                let x: Vec<u64> = cell.iter().map(|a| a.load(Ordering::Relaxed)).collect();
                if x[0] == 0 {
                    continue;
                }
                ingest.clients.insert(
                    (x[0] - 1) as u32,
                    ClientCounts {
                        received: x[1],
                        measured: x[2],
                        max_seq: x[3].checked_sub(1),
                        duplicates: x[4],
                    },
                );
            }
        }
        Stats {
            ingest,
            process,
            ..Stats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workloads::{Frame, WorkKind};

    #[test]
    fn a_slot_returns_what_was_last_published() {
        let board = Board::new(2).unwrap();
        assert_eq!(board.read(1).process.measured, 0);
        let mut st = Stats::default();
        let frame = Frame {
            client_id: 42,
            seq: 0,
            send_delay_ns: 0,
            due_ns: 0,
            kind: WorkKind::None,
            amount: 0,
            warmup: false,
            ack: false,
            received_ns: 0,
            started_ns: 0,
        };
        let mut next = None;
        for seq in 0..3 {
            let f = Frame { seq, ..frame };
            st.ingest.count_frame(&f, &mut next);
            st.process.record(&f, 1_000, None);
        }
        st.ingest.connections.accepted = 1;
        board.publish_snapshot(1, &st.process);
        board.publish_counts(1, &st.ingest, &st.process);
        // Counts published after the snapshot win.
        st.process
            .record(&Frame { seq: 3, ..frame }, 2_000, Some(7));
        board.publish_counts(1, &st.ingest, &st.process);
        let back = board.read(1);
        assert_eq!(back.process.measured, 4);
        assert_eq!(back.process.work_digest, 7);
        assert_eq!(back.process.latency.len(), 3);
        assert_eq!(back.ingest.clients[&42].received, 3);
        assert_eq!(back.ingest.clients[&42].max_seq, Some(2));
        assert_eq!(back.ingest.connections.accepted, 1);
        assert_eq!(board.read(0).ingest.clients.len(), 0);
    }
}
