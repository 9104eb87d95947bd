//! Fuzzing the frame decoder and stream reassembly, differentially: random
//! and mutated byte streams, split at random points, must never panic, and
//! the streaming [`FrameReader`] must yield exactly what decoding the
//! stream 32 bytes at a time yields (the valid frames before the first
//! invalid one, then that error). `fuzz_10m` runs 10 million inputs:
//! `cargo test --release -p workloads --test fuzz -- --ignored`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use workloads::{Frame, FrameError, FrameReader, Limits, WorkKind, FRAME_LEN};

/// What decoding `stream` 32 bytes at a time gives: the valid frames, then
/// the first error if any (a trailing partial frame is no error here).
fn reference(stream: &[u8], limits: &Limits) -> (Vec<Frame>, Option<FrameError>) {
    let mut out = Vec::new();
    for chunk in stream.chunks_exact(FRAME_LEN) {
        match Frame::decode(chunk.try_into().expect("32 bytes"), limits) {
            Ok(f) => out.push(f),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn valid_frame(rng: &mut StdRng) -> [u8; FRAME_LEN] {
    let kind = match rng.gen_range(0..3) {
        0 => WorkKind::None,
        1 => WorkKind::Cpu,
        _ => WorkKind::Io,
    };
    Frame {
        client_id: rng.gen(),
        seq: rng.gen(),
        send_delay_ns: rng.gen(),
        due_ns: rng.gen(),
        kind,
        amount: rng.gen_range(0..2_000),
        warmup: rng.gen(),
        ack: rng.gen(),
        received_ns: 0,
        started_ns: 0,
    }
    .encode()
}

/// One input: random bytes, or valid frames with a few mutations (bit
/// flips, byte overwrites, a cut or a splice).
fn input(rng: &mut StdRng) -> Vec<u8> {
    if rng.gen_ratio(1, 4) {
        let len = rng.gen_range(0..200);
        return (0..len).map(|_| rng.gen()).collect();
    }
    let mut bytes: Vec<u8> = (0..rng.gen_range(1..8))
        .flat_map(|_| valid_frame(rng))
        .collect();
    for _ in 0..rng.gen_range(0..3) {
        let i = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..4) {
            0 => bytes[i] ^= 1 << rng.gen_range(0..8),
            1 => bytes[i] = rng.gen(),
            2 => bytes.truncate(i),
            _ => {
                let extra = valid_frame(rng);
                let at = rng.gen_range(0..=bytes.len());
                bytes.splice(at..at, extra[..rng.gen_range(1..FRAME_LEN)].iter().copied());
            }
        }
        if bytes.is_empty() {
            break;
        }
    }
    bytes
}

/// Feeds `stream` in random pieces; returns the frames and the first error.
fn streamed(
    stream: &[u8],
    limits: &Limits,
    rng: &mut StdRng,
) -> (Vec<Frame>, Option<FrameError>, bool) {
    let mut reader = FrameReader::new();
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(80));
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        if let Err(e) = reader.feed(piece, limits, |f| out.push(f)) {
            return (out, Some(e), false);
        }
    }
    (out, None, reader.has_partial())
}

fn fuzz(inputs: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let limits = Limits {
        max_cpu_iters: 1_000,
        max_io_us: 1_000,
    };
    for i in 0..inputs {
        let stream = input(&mut rng);
        let (want, want_err) = reference(&stream, &limits);
        let (got, got_err, partial) = streamed(&stream, &limits, &mut rng);
        assert_eq!(got, want, "input {i}: {stream:?}");
        assert_eq!(got_err, want_err, "input {i}: {stream:?}");
        if want_err.is_none() {
            assert_eq!(
                partial,
                !stream.len().is_multiple_of(FRAME_LEN),
                "input {i}"
            );
        }
    }
}

#[test]
fn fuzz_100k() {
    fuzz(100_000, 1);
}

#[test]
#[ignore = "10 million inputs: run with --release -- --ignored"]
fn fuzz_10m() {
    fuzz(10_000_000, 2);
}
