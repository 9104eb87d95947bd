//! Micro-benchmarks of the per-frame hot paths: wire encode/decode, CRC, the
//! reference kernel (its ns per iteration is the calibration figure), HDR
//! recording, the stage stamps and their record, the server's ingest path, the pool's queue hand-off, and
//! ack mode's cost on both sides (records built, written, read and checked;
//! a loopback round with and without acks).
//! Compare figures side by side from one run; absolute numbers depend on
//! the machine.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use models::ingest::ConnIngest;
use models::stages::Stages;
use models::stats::{IngestStats, ProcessStats};
use models::{ServeConfig, Shutdown};
use workloads::kernel::cpu_kernel;
use workloads::{Frame, FrameReader, Limits, WorkKind};

fn acked(seq: u32) -> Frame {
    Frame {
        ack: true,
        received_ns: 0,
        started_ns: 0,
        ..frame(seq)
    }
}

fn frame(seq: u32) -> Frame {
    Frame {
        client_id: 7,
        seq,
        send_delay_ns: 0,
        due_ns: 1_000_000 + seq as u64,
        kind: WorkKind::None,
        amount: 0,
        warmup: false,
        ack: false,
        received_ns: 0,
        started_ns: 0,
    }
}

fn stream(n: u32) -> Vec<u8> {
    (0..n).flat_map(|s| frame(s).encode()).collect()
}

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(frame(black_box(42)).encode()))
    });
    let bytes = frame(42).encode();
    let limits = Limits::default();
    g.bench_function("decode", |b| {
        b.iter(|| black_box(Frame::decode(black_box(&bytes), &limits)))
    });
    // What the fleet adds per frame per write: the send delay and a new CRC.
    g.bench_function("stamp_send_delay", |b| {
        let mut bytes = frame(42).encode();
        b.iter(|| workloads::wire::stamp_send_delay(black_box(&mut bytes), black_box(12_345)))
    });
    g.bench_function("crc32_28_bytes", |b| {
        b.iter(|| black_box(crc32fast::hash(black_box(&bytes[..28]))))
    });
    let many = stream(512);
    g.throughput(Throughput::Elements(512));
    g.bench_function("reader_512_frames_split_at_13", |b| {
        b.iter(|| {
            let mut r = FrameReader::new();
            let mut n = 0u32;
            for chunk in many.chunks(13) {
                r.feed(chunk, &limits, |_| n += 1).unwrap();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn kernel(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernel");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("cpu_kernel_1000_iterations", |b| {
        b.iter(|| black_box(cpu_kernel(black_box(3), 9, black_box(1000))))
    });
    g.finish();
}

fn server_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("server");
    let bytes = stream(512);
    let limits = Limits::default();
    g.throughput(Throughput::Elements(512));
    g.bench_function("ingest_512_frames", |b| {
        b.iter_batched(
            || (ConnIngest::new(), IngestStats::default()),
            |(mut conn, mut stats)| {
                let mut n = 0u32;
                conn.on_bytes(&bytes, &limits, &mut stats, |_| n += 1)
                    .unwrap();
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    let frames: Vec<Frame> = (0..512).map(frame).collect();
    g.bench_function("record_512_frames", |b| {
        let mut stats = ProcessStats::default();
        b.iter(|| {
            for f in &frames {
                stats.record(f, 2_000_000, None); // latency, service and stages
            }
        })
    });
    // The cost of knowing where time went: the stages alone (four stage
    // histograms and a bucket's sums per frame) and the clock read that
    // stamps a frame's start; `record_512_frames` includes the former.
    // Frames as a readiness loop meets them at `none`: reads of ten frames
    // from one write of a 1 ms window (due 100 us apart, one write time,
    // one read time), each done 50 ns after the one before.
    let stamped: Vec<(Frame, u64)> = frames
        .iter()
        .map(|f| {
            let (read, k) = (u64::from(f.seq) / 10, u64::from(f.seq) % 10);
            let written = 2_000_000 + read * 1_000_000;
            let delay = (9 - k) * 100_000;
            let done = written + 20_000 + 50 * (k + 1);
            let frame = Frame {
                due_ns: written - delay,
                send_delay_ns: delay as u32,
                received_ns: written + 20_000,
                started_ns: done,
                ..*f
            };
            (frame, done)
        })
        .collect();
    g.bench_function("stages_record_512_frames", |b| {
        let mut stages = Stages::default();
        b.iter(|| {
            for (f, done) in &stamped {
                stages.record(f, *done);
            }
        })
    });
    g.bench_function("stamp_start_512_frames", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(models::work::start(*f));
            }
        })
    });
    let (tx, rx) = flume::bounded::<Frame>(1024);
    g.bench_function("channel_send_recv_512_frames", |b| {
        b.iter(|| {
            for f in &frames {
                tx.send(*f).unwrap();
                if tx.len() >= 1000 {
                    while rx.try_recv().is_ok() {}
                }
            }
            while let Ok(f) = rx.try_recv() {
                black_box(f);
            }
        })
    });
    // What `threads` pays per accepted connection: starting (and ending)
    // one thread with its stack.
    g.throughput(Throughput::Elements(1));
    g.bench_function("thread_spawn_join", |b| {
        b.iter(|| {
            std::thread::Builder::new()
                .stack_size(models::impls::threads::STACK)
                .spawn(|| black_box(1))
                .expect("a thread")
                .join()
                .expect("joined")
        })
    });
    g.throughput(Throughput::Elements(512));
    // The pool's hand-off: batches of 16 frames through its queue (one
    // running worker, so no wake-up: the lock, the copy and the queue).
    let queue = models::work_queue::WorkQueue::<Vec<Frame>>::new(64, 1, 1);
    g.bench_function("pool_queue_push_pop_512_frames_in_batches_of_16", |b| {
        b.iter(|| {
            for chunk in frames.chunks(16) {
                queue.push(chunk.to_vec()).unwrap();
                black_box(queue.pop());
            }
        })
    });
    g.finish();
}

/// Ack mode per frame: the server's ack buffer (consecutive frames share a
/// record; scattered ones get one each), and the fleet reading records and
/// checking each frame is acknowledged once.
fn acks(c: &mut Criterion) {
    let mut g = c.benchmark_group("ack");
    g.throughput(Throughput::Elements(512));
    for (name, stride) in [("consecutive", 1), ("scattered", 2)] {
        g.bench_function(format!("server_buffer_and_write_512_{name}"), |b| {
            let mut out = Vec::with_capacity(512 * workloads::ack::ACK_LEN);
            b.iter(|| {
                let mut buf = models::ack::AckBuf::new();
                for s in 0..512u32 {
                    buf.push_seq(s * stride);
                }
                out.clear();
                let done = buf.flush(|x| {
                    out.extend_from_slice(x);
                    Ok(x.len())
                });
                black_box((done, out.len()))
            })
        });
    }
    // The fleet's worst case: one record per frame.
    let records: Vec<u8> = (0..512u32)
        .flat_map(|s| {
            workloads::ack::Ack {
                first_seq: s,
                count: 1,
            }
            .encode()
        })
        .collect();
    g.bench_function("fleet_read_and_check_512_records", |b| {
        b.iter(|| {
            let mut t = harness::fleet::acks::AckTrack::new();
            let mut n = 0u64;
            t.feed(&records, 512, |seq| n += seq);
            black_box((n, t.counts.acked))
        })
    });
    g.finish();
}

/// One loopback round per model: connect, write 512 frames, half-close and
/// wait for the server's close (it closes once it has read everything);
/// then the same in ack mode, reading the acks (the difference is ack
/// mode's cost per frame, end to end). `prefork` cannot fork inside this
/// multi-threaded process; its children run the `single` loop measured here.
fn loopback(c: &mut Criterion) {
    loopback_group(c, "loopback_round", &stream(512));
    let acked: Vec<u8> = (0..512).flat_map(|s| acked(s).encode()).collect();
    loopback_group(c, "loopback_round_ack", &acked);
}

fn loopback_group(c: &mut Criterion, group: &str, bytes: &[u8]) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(512));
    let config = ServeConfig {
        workers: 2,
        max_clients: 64,
        idle_timeout: Duration::ZERO,
        frame_timeout: Duration::ZERO,
        limits: Limits::default(),
        placement: models::Placement::default(),
        inline_cpu: models::DEFAULT_INLINE_CPU,
        iters_per_us: None,
        client_latency: false,
        coalesce: models::DEFAULT_COALESCE,
        downstream: None,
    };
    for model in models::registry().iter().filter(|m| m.name() != "prefork") {
        // SO_REUSEPORT, as `harness serve` binds: percore and uring add listeners.
        let listener = models::net::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::default();
        let (cfg, stop) = (config.clone(), shutdown.clone());
        let server = thread::spawn(move || model.serve(listener, &cfg, &stop));
        g.bench_function(model.name(), |b| {
            b.iter(|| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(bytes).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut acks = workloads::ack::AckReader::new();
                let mut n = 0u64;
                let mut buf = [0u8; 4096];
                while let Ok(len @ 1..) = s.read(&mut buf) {
                    acks.feed(&buf[..len], |a| n += u64::from(a.count)).unwrap();
                }
                black_box(n)
            })
        });
        shutdown.trigger();
        server.join().unwrap().unwrap();
    }
    g.finish();
}

/// What `--metrics` adds to recording a frame: the same 512 records as
/// `server/record_512_frames` with the live counts on (registered last:
/// once on, they stay on in this process).
fn live_counts(c: &mut Criterion) {
    let mut g = c.benchmark_group("server");
    g.throughput(Throughput::Elements(512));
    let frames: Vec<Frame> = (0..512).map(frame).collect();
    g.bench_function("record_512_frames_live", |b| {
        models::live::enable(64).unwrap();
        let mut stats = ProcessStats::default();
        b.iter(|| {
            for f in &frames {
                stats.record(f, 2_000_000, None);
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    wire,
    kernel,
    server_paths,
    acks,
    loopback,
    live_counts
);
criterion_main!(benches);
