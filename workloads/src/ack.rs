//! Ack records (protocol v2, ack mode): what a server writes back on a
//! connection for the frames that asked for it (flags bit 6), once they are
//! processed. Fixed 16-byte little-endian records with a CRC-32; one record
//! acknowledges a run of consecutive sequence numbers of the connection's
//! client (the connection names the client, so the record does not).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `AK` |
//! | 2 | 1 | version = 2 |
//! | 3 | 1 | reserved, zero |
//! | 4 | 4 | first sequence number acknowledged |
//! | 8 | 4 | count: frames `first .. first + count` processed, at least 1 |
//! | 12 | 4 | CRC-32 (IEEE) of bytes 0..12 |

use crate::wire::{Records, VERSION};

/// Size of every ack record on the wire.
pub const ACK_LEN: usize = 16;
/// ASCII `AK`.
pub const ACK_MAGIC: [u8; 2] = *b"AK";

/// One decoded, checksum-verified ack record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// First sequence number acknowledged.
    pub first_seq: u32,
    /// Frames acknowledged, from `first_seq` on (at least 1).
    pub count: u32,
}

/// Why an ack record was rejected; the fleet stops reading acks from that
/// connection on the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Bytes 0..2 are not `AK`.
    #[error("bad_magic")]
    BadMagic,
    /// Byte 2 is not 2, or byte 3 is not 0.
    #[error("bad_version")]
    BadVersion,
    /// CRC-32 does not match bytes 0..12.
    #[error("bad_checksum")]
    BadChecksum,
    /// A record acknowledging nothing.
    #[error("zero_count")]
    ZeroCount,
}

impl Ack {
    /// Encodes into exactly 16 bytes, checksum included.
    pub fn encode(&self) -> [u8; ACK_LEN] {
        let mut out = [0u8; ACK_LEN];
        out[0..2].copy_from_slice(&ACK_MAGIC);
        out[2] = VERSION;
        out[4..8].copy_from_slice(&self.first_seq.to_le_bytes());
        out[8..12].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&out[..12]);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates one record.
    pub fn decode(buf: &[u8; ACK_LEN]) -> Result<Ack, AckError> {
        if buf[0..2] != ACK_MAGIC {
            return Err(AckError::BadMagic);
        }
        if buf[2] != VERSION || buf[3] != 0 {
            return Err(AckError::BadVersion);
        }
        if crc32fast::hash(&buf[..12]).to_le_bytes() != buf[12..16] {
            return Err(AckError::BadChecksum);
        }
        let ack = Ack {
            first_seq: u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")),
            count: Ack::count_of(buf),
        };
        if ack.count == 0 {
            return Err(AckError::ZeroCount);
        }
        Ok(ack)
    }

    /// The count field of an encoded record (not validated).
    #[inline]
    pub fn count_of(buf: &[u8]) -> u32 {
        u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"))
    }

    /// The sequence numbers acknowledged (a run may pass 2^32 only in a
    /// forged record; the fleet finds those unexpected).
    pub fn seqs(&self) -> std::ops::Range<u64> {
        let first = u64::from(self.first_seq);
        first..first + u64::from(self.count)
    }
}

/// Reassembles and decodes ack records from a byte stream split at
/// arbitrary points, in constant memory.
#[derive(Debug, Default)]
pub struct AckReader(Records<ACK_LEN>);

impl AckReader {
    /// A reader with no buffered bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes every complete record in `data`, calling `on_ack` for each
    /// valid one in order; stops at the first invalid one.
    pub fn feed(&mut self, data: &[u8], mut on_ack: impl FnMut(Ack)) -> Result<(), AckError> {
        self.0.feed(data, |b| Ack::decode(b).map(&mut on_ack))
    }

    /// True when some bytes of an unfinished record are buffered.
    pub fn has_partial(&self) -> bool {
        self.0.has_partial()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_matches_the_table() {
        let b = Ack {
            first_seq: 70_000,
            count: 3,
        }
        .encode();
        assert_eq!(&b[0..2], b"AK");
        assert_eq!((b[2], b[3]), (2, 0));
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 70_000);
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 3);
        assert_eq!(
            u32::from_le_bytes(b[12..16].try_into().unwrap()),
            crc32fast::hash(&b[..12])
        );
    }

    #[test]
    fn each_defect_has_its_reason() {
        let good = Ack {
            first_seq: 1,
            count: 1,
        }
        .encode();
        let reseal = |mut b: [u8; ACK_LEN]| {
            let crc = crc32fast::hash(&b[..12]);
            b[12..16].copy_from_slice(&crc.to_le_bytes());
            b
        };
        // (change, expected)
        type Change = fn(&mut [u8; ACK_LEN]);
        let table: Vec<(Change, AckError)> = vec![
            (|b| b[0] = b'X', AckError::BadMagic),
            (|b| b[2] = 1, AckError::BadVersion),
            (|b| b[3] = 1, AckError::BadVersion),
            (|b| b[8..12].copy_from_slice(&[0; 4]), AckError::ZeroCount),
        ];
        for (change, want) in table {
            let mut b = good;
            change(&mut b);
            assert_eq!(Ack::decode(&reseal(b)), Err(want));
        }
        let mut b = good;
        b[5] ^= 1;
        assert_eq!(Ack::decode(&b), Err(AckError::BadChecksum));
    }

    #[test]
    fn runs_cover_their_sequence_numbers() {
        let a = Ack {
            first_seq: u32::MAX,
            count: 2,
        };
        assert_eq!(a.seqs(), u32::MAX as u64..u32::MAX as u64 + 2);
    }

    proptest! {
        #[test]
        fn records_round_trip_across_any_split(
            acks in proptest::collection::vec((any::<u32>(), 1u32..), 0..20),
            splits in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let acks: Vec<Ack> = acks.into_iter().map(|(first_seq, count)| Ack { first_seq, count }).collect();
            let stream: Vec<u8> = acks.iter().flat_map(|a| a.encode()).collect();
            let mut cuts: Vec<usize> = splits.into_iter().map(|s| s % (stream.len() + 1)).collect();
            cuts.extend([0, stream.len()]);
            cuts.sort_unstable();
            let mut reader = AckReader::new();
            let mut out = Vec::new();
            for w in cuts.windows(2) {
                reader.feed(&stream[w[0]..w[1]], |a| out.push(a)).unwrap();
            }
            prop_assert_eq!(out, acks);
            prop_assert!(!reader.has_partial());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut n = 0usize;
            let _ = AckReader::new().feed(&bytes, |_| n += 1);
            prop_assert!(n <= bytes.len() / ACK_LEN);
        }
    }
}
