//! Wire protocol v2: fixed 32-byte little-endian frames with a CRC-32.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `IG` |
//! | 2 | 1 | version = 2 |
//! | 3 | 1 | flags: bits 0-1 work kind (0 none, 1 cpu, 2 io, 3 call), bit 6 ack requested, bit 7 warm-up, bits 2-5 zero |
//! | 4 | 4 | client id |
//! | 8 | 4 | sequence number (u32) |
//! | 12 | 4 | send delay: ns from the due time to the write that carried the frame, saturating |
//! | 16 | 8 | due time, CLOCK_MONOTONIC ns |
//! | 24 | 4 | work amount |
//! | 28 | 4 | CRC-32 (IEEE) of bytes 0..28 |

use serde::{Deserialize, Serialize};

/// Size of every frame on the wire.
pub const FRAME_LEN: usize = 32;
/// ASCII `IG`.
pub const MAGIC: [u8; 2] = *b"IG";
/// The only protocol version accepted (v1 frames count as `bad_version`).
pub const VERSION: u8 = 2;
/// Flags bit 7: the frame belongs to the warm-up.
pub const FLAG_WARMUP: u8 = 0x80;
/// Flags bit 6: the sender asks the server to acknowledge the frame once
/// processed (see [`crate::ack`]).
pub const FLAG_ACK: u8 = 0x40;
const KIND_MASK: u8 = 0x03;
const RESERVED_MASK: u8 = 0x3C;

/// What a frame asks the server to do before it counts as processed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkKind {
    /// Nothing.
    #[default]
    None,
    /// `amount` iterations of the reference kernel.
    Cpu,
    /// Wait `amount` microseconds, like a call to a downstream service.
    Io,
    /// A real call to the downstream service (see [`crate::call`]) that
    /// answers after `amount` microseconds.
    Call,
}

impl WorkKind {
    fn bits(self) -> u8 {
        match self {
            WorkKind::None => 0,
            WorkKind::Cpu => 1,
            WorkKind::Io => 2,
            WorkKind::Call => 3,
        }
    }
}

/// One decoded, checksum-verified frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Sender's client id.
    pub client_id: u32,
    /// Per-client sequence number.
    pub seq: u32,
    /// Nanoseconds from the due time to the moment the write that carried
    /// the frame was issued (saturating): the fleet's own lateness.
    pub send_delay_ns: u32,
    /// CLOCK_MONOTONIC ns at which the frame was due to be sent.
    pub due_ns: u64,
    /// Requested work.
    pub kind: WorkKind,
    /// Work amount: kernel iterations (cpu) or microseconds (io, call).
    pub amount: u32,
    /// Part of the warm-up, not measured.
    pub warmup: bool,
    /// The sender wants an acknowledgement once the frame is processed.
    pub ack: bool,
    /// Server side, never on the wire: CLOCK_MONOTONIC ns when the read,
    /// receive or completion that delivered the frame's last byte returned
    /// (0 until the server's ingest stamps it).
    pub received_ns: u64,
    /// Server side, never on the wire: CLOCK_MONOTONIC ns when the frame's
    /// work began, on whatever thread (0 until the model stamps it).
    pub started_ns: u64,
}

/// Why a frame was rejected; displays as the report's counter name. The
/// server closes the connection on the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bytes 0..2 are not `IG`.
    #[error("bad_magic")]
    BadMagic,
    /// Byte 2 is not 2.
    #[error("bad_version")]
    BadVersion,
    /// A reserved flag bit set.
    #[error("bad_flags")]
    BadFlags,
    /// CRC-32 does not match bytes 0..28.
    #[error("bad_checksum")]
    BadChecksum,
    /// Work amount above the server's cap.
    #[error("work_over_limit")]
    WorkOverLimit,
}

/// The server's caps on requested work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted cpu amount, in kernel iterations.
    pub max_cpu_iters: u32,
    /// Largest accepted io wait or call delay, in microseconds.
    pub max_io_us: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cpu_iters: 10_000_000,
            max_io_us: 100_000,
        }
    }
}

impl Frame {
    /// Encodes into exactly 32 bytes, checksum included.
    pub fn encode(&self) -> [u8; FRAME_LEN] {
        let mut out = [0u8; FRAME_LEN];
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = VERSION;
        out[3] = self.kind.bits()
            | if self.warmup { FLAG_WARMUP } else { 0 }
            | if self.ack { FLAG_ACK } else { 0 };
        out[4..8].copy_from_slice(&self.client_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.seq.to_le_bytes());
        out[12..16].copy_from_slice(&self.send_delay_ns.to_le_bytes());
        out[16..24].copy_from_slice(&self.due_ns.to_le_bytes());
        out[24..28].copy_from_slice(&self.amount.to_le_bytes());
        seal(&mut out);
        out
    }

    /// Decodes and validates one frame (magic, version, checksum, flags,
    /// then the work caps).
    pub fn decode(buf: &[u8; FRAME_LEN], limits: &Limits) -> Result<Frame, FrameError> {
        if buf[0..2] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        if buf[2] != VERSION {
            return Err(FrameError::BadVersion);
        }
        if crc32fast::hash(&buf[..28]).to_le_bytes() != buf[28..32] {
            return Err(FrameError::BadChecksum);
        }
        let flags = buf[3];
        let kind = match flags & KIND_MASK {
            0 => WorkKind::None,
            1 => WorkKind::Cpu,
            2 => WorkKind::Io,
            _ => WorkKind::Call,
        };
        if flags & RESERVED_MASK != 0 {
            return Err(FrameError::BadFlags);
        }
        let frame = Frame {
            client_id: u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")),
            seq: u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")),
            send_delay_ns: u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes")),
            due_ns: u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes")),
            kind,
            amount: u32::from_le_bytes(buf[24..28].try_into().expect("4 bytes")),
            warmup: flags & FLAG_WARMUP != 0,
            ack: flags & FLAG_ACK != 0,
            received_ns: 0,
            started_ns: 0,
        };
        let over = match kind {
            WorkKind::None => false,
            WorkKind::Cpu => frame.amount > limits.max_cpu_iters,
            WorkKind::Io | WorkKind::Call => frame.amount > limits.max_io_us,
        };
        if over {
            return Err(FrameError::WorkOverLimit);
        }
        Ok(frame)
    }
}

impl Frame {
    /// Processed-time minus due time: the coordinated-omission-corrected
    /// latency of a frame finished at `done_ns`.
    #[inline]
    pub fn latency_ns(&self, done_ns: u64) -> u64 {
        done_ns.saturating_sub(self.due_ns)
    }

    /// Processed-time minus the time its write was issued (due + send
    /// delay): the service latency, which excludes the sender's batching and
    /// lateness.
    #[inline]
    pub fn service_latency_ns(&self, done_ns: u64) -> u64 {
        done_ns.saturating_sub(self.due_ns.saturating_add(self.send_delay_ns as u64))
    }
}

/// The send delay to put on the wire for a frame due at `due_ns` whose write
/// is issued at `write_ns`: saturating at `u32::MAX` (4.29 s), 0 when the
/// write is early (it never is).
#[inline]
pub fn send_delay(due_ns: u64, write_ns: u64) -> u32 {
    write_ns.saturating_sub(due_ns).min(u32::MAX as u64) as u32
}

/// Rewrites the send delay of an encoded frame and reseals its CRC: the
/// fleet stamps frames just before the write that carries them.
#[inline]
pub fn stamp_send_delay(buf: &mut [u8; FRAME_LEN], delay_ns: u32) {
    buf[12..16].copy_from_slice(&delay_ns.to_le_bytes());
    seal(buf);
}

/// Writes the CRC-32 of bytes 0..28 into bytes 28..32.
pub fn seal(buf: &mut [u8; FRAME_LEN]) {
    let crc = crc32fast::hash(&buf[..28]);
    buf[28..32].copy_from_slice(&crc.to_le_bytes());
}

/// Reassembles fixed-size records of `N` bytes from a byte stream split at
/// arbitrary points. Holds at most one partial record, so memory is
/// constant whatever the peer sends. Frames and ack records both use it.
#[derive(Debug)]
pub struct Records<const N: usize> {
    partial: [u8; N],
    filled: usize,
}

impl<const N: usize> Default for Records<N> {
    fn default() -> Self {
        Records {
            partial: [0; N],
            filled: 0,
        }
    }
}

impl<const N: usize> Records<N> {
    /// Calls `each` on every complete record in `data` (after any buffered
    /// partial one), in order, and keeps the incomplete tail. Stops at the
    /// first error `each` returns; the rest is to be ignored.
    pub fn feed<E>(
        &mut self,
        mut data: &[u8],
        mut each: impl FnMut(&[u8; N]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.filled > 0 {
            let take = (N - self.filled).min(data.len());
            self.partial[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < N {
                return Ok(());
            }
            self.filled = 0;
            each(&self.partial)?;
        }
        let mut chunks = data.chunks_exact(N);
        for chunk in &mut chunks {
            each(chunk.try_into().expect("N bytes"))?;
        }
        let rest = chunks.remainder();
        self.partial[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
        Ok(())
    }

    /// True when some bytes of an unfinished record are buffered.
    pub fn has_partial(&self) -> bool {
        self.filled > 0
    }
}

/// Reassembles and decodes frames from a byte stream split at arbitrary
/// points, in constant memory.
#[derive(Debug, Default)]
pub struct FrameReader(Records<FRAME_LEN>);

impl FrameReader {
    /// A reader with no buffered bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes every complete frame in `data` (after any buffered partial
    /// frame), calling `on_frame` for each valid one in order. Stops at the
    /// first invalid frame and returns its error; the rest is to be ignored.
    pub fn feed(
        &mut self,
        data: &[u8],
        limits: &Limits,
        mut on_frame: impl FnMut(Frame),
    ) -> Result<(), FrameError> {
        self.0
            .feed(data, |b| Frame::decode(b, limits).map(&mut on_frame))
    }

    /// True when some bytes of an unfinished frame are buffered.
    pub fn has_partial(&self) -> bool {
        self.0.has_partial()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(seq: u32) -> Frame {
        Frame {
            client_id: 7,
            seq,
            send_delay_ns: 250,
            due_ns: 1_000 + seq as u64,
            kind: WorkKind::Cpu,
            amount: 100,
            warmup: seq.is_multiple_of(2),
            ack: seq.is_multiple_of(3),
            received_ns: 0,
            started_ns: 0,
        }
    }

    #[test]
    fn layout_matches_the_table() {
        let bytes = sample(3).encode();
        assert_eq!(&bytes[0..2], b"IG");
        assert_eq!(bytes[2], 2);
        assert_eq!(bytes[3], 0x41, "cpu, ack requested");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 250);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 1_003);
        assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 100);
        assert_eq!(
            u32::from_le_bytes(bytes[28..32].try_into().unwrap()),
            crc32fast::hash(&bytes[..28])
        );
    }

    #[test]
    fn crc_is_zlib_crc32() {
        // The well-known check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn each_defect_has_its_reason() {
        let limits = Limits::default();
        let good = sample(1).encode();
        let mut b = good;
        b[0] = b'X';
        assert_eq!(Frame::decode(&b, &limits), Err(FrameError::BadMagic));
        for v in [0, 1, 3] {
            let mut b = good;
            b[2] = v;
            seal(&mut b);
            assert_eq!(Frame::decode(&b, &limits), Err(FrameError::BadVersion));
        }
        let mut b = good;
        b[3] = 3;
        seal(&mut b);
        assert_eq!(Frame::decode(&b, &limits).unwrap().kind, WorkKind::Call);
        for reserved in [0x04, 0x08, 0x10, 0x20] {
            let mut b = good;
            b[3] = reserved;
            seal(&mut b);
            assert_eq!(Frame::decode(&b, &limits), Err(FrameError::BadFlags));
        }
        let mut b = good;
        b[3] = FLAG_ACK | FLAG_WARMUP | 2;
        seal(&mut b);
        let f = Frame::decode(&b, &limits).unwrap();
        assert!(f.ack && f.warmup && f.kind == WorkKind::Io);
        let mut b = good;
        b[10] ^= 1;
        assert_eq!(Frame::decode(&b, &limits), Err(FrameError::BadChecksum));
        let mut f = sample(1);
        f.amount = limits.max_cpu_iters + 1;
        assert_eq!(
            Frame::decode(&f.encode(), &limits),
            Err(FrameError::WorkOverLimit)
        );
        f.kind = WorkKind::Io;
        f.amount = limits.max_io_us + 1;
        assert_eq!(
            Frame::decode(&f.encode(), &limits),
            Err(FrameError::WorkOverLimit)
        );
        f.kind = WorkKind::Call;
        assert_eq!(
            Frame::decode(&f.encode(), &limits),
            Err(FrameError::WorkOverLimit)
        );
        f.kind = WorkKind::None;
        assert!(Frame::decode(&f.encode(), &limits).is_ok());
    }

    #[test]
    fn service_latency_excludes_the_send_delay() {
        let f = Frame {
            due_ns: 1_000_000,
            send_delay_ns: 300_000,
            ..sample(0)
        };
        // Written 300 us late, done 400 us after due: 100 us of service.
        assert_eq!(f.latency_ns(1_400_000), 400_000);
        assert_eq!(f.service_latency_ns(1_400_000), 100_000);
        // Never negative, never overflowing.
        assert_eq!(f.service_latency_ns(1_200_000), 0);
        let far = Frame {
            due_ns: u64::MAX,
            send_delay_ns: u32::MAX,
            ..sample(0)
        };
        assert_eq!(far.service_latency_ns(u64::MAX), 0);
        assert_eq!(far.latency_ns(0), 0);
    }

    #[test]
    fn send_delay_saturates_and_stamping_reseals() {
        assert_eq!(send_delay(100, 350), 250);
        assert_eq!(send_delay(350, 100), 0);
        assert_eq!(send_delay(0, u64::MAX), u32::MAX);
        let mut bytes = sample(9).encode();
        stamp_send_delay(&mut bytes, 77_777);
        let back = Frame::decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(back.send_delay_ns, 77_777);
        assert_eq!(
            back,
            Frame {
                send_delay_ns: 77_777,
                ..sample(9)
            }
        );
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            any::<u32>(),
            (any::<u32>(), any::<u32>()),
            any::<u64>(),
            0u8..3,
            any::<u32>(),
            (any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |(client_id, (seq, send_delay_ns), due_ns, k, amount, (warmup, ack))| Frame {
                    client_id,
                    seq,
                    send_delay_ns,
                    due_ns,
                    kind: [WorkKind::None, WorkKind::Cpu, WorkKind::Io][k as usize],
                    amount,
                    warmup,
                    ack,
                    received_ns: 0,
                    started_ns: 0,
                },
            )
    }

    proptest! {
        #[test]
        fn valid_frames_round_trip_across_any_split(
            frames in proptest::collection::vec(arb_frame(), 0..20),
            splits in proptest::collection::vec(0usize..700, 0..10),
        ) {
            let limits = Limits { max_cpu_iters: u32::MAX, max_io_us: u32::MAX };
            let stream: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
            let mut cuts: Vec<usize> = splits.into_iter().map(|s| s % (stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut reader = FrameReader::new();
            let mut out = Vec::new();
            for w in cuts.windows(2) {
                reader.feed(&stream[w[0]..w[1]], &limits, |f| out.push(f)).unwrap();
            }
            prop_assert_eq!(out, frames);
            prop_assert!(!reader.has_partial());
        }

        #[test]
        fn encode_decode_round_trips(frame in arb_frame(), delay in any::<u32>()) {
            let limits = Limits { max_cpu_iters: u32::MAX, max_io_us: u32::MAX };
            let mut bytes = frame.encode();
            prop_assert_eq!(Frame::decode(&bytes, &limits), Ok(frame));
            stamp_send_delay(&mut bytes, delay);
            prop_assert_eq!(
                Frame::decode(&bytes, &limits),
                Ok(Frame { send_delay_ns: delay, ..frame })
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            split in 0usize..600,
        ) {
            let limits = Limits::default();
            let mut reader = FrameReader::new();
            let cut = split.min(bytes.len());
            let mut count = 0usize;
            let first = reader.feed(&bytes[..cut], &limits, |_| count += 1);
            if first.is_ok() {
                let _ = reader.feed(&bytes[cut..], &limits, |_| count += 1);
            }
            prop_assert!(count <= bytes.len() / FRAME_LEN);
        }
    }
}
