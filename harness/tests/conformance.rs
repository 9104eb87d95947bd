//! One conformance suite, run against every registered model through
//! `harness serve`: a new model is covered by adding it to the registry
//! (the `every_model_is_covered` test fails until its name is listed here).

mod util;

use std::io::Write;
use std::thread;
use std::time::Duration;

use util::*;
use workloads::wire::seal;
use workloads::{WorkKind, FRAME_LEN};

/// Several concurrent clients, frames split at odd byte boundaries: exact
/// per-client counts, warm-up vs measured, and the work digest.
fn exact_counts_and_digest(model: &str) {
    let (r, sent) = exact_counts_and_digest_with(model, &[]);
    assert!(r.clients.iter().all(|c| c.p99_ns.is_none()));
    stages_account_for_every_frame(&r, &sent);
}

/// `--no-stages`: the same exact counts, and no stage recorded (what
/// `docs/stage-cost.sh` compares against).
fn no_stages(model: &str) {
    let (r, _) = exact_counts_and_digest_with(model, &["--no-stages"]);
    for s in &r.stages.stage_ns {
        assert_eq!(s.count, 0, "{model}: a stage recorded with --no-stages");
    }
    assert_eq!(r.stages.work_cpu_ns.count + r.stages.work_io_ns.count, 0);
    assert!(r.stages.by_latency.is_empty());
    assert_eq!(r.latency_ns.count, 4 * 260);
}

/// `--client-latency`: every client's own p99, within the server's
/// latencies, on top of the same exact counts.
fn client_latency(model: &str) {
    let (r, sent) = exact_counts_and_digest_with(model, &["--client-latency"]);
    stages_account_for_every_frame(&r, &sent);
    for c in &r.clients {
        let p99 = c
            .p99_ns
            .unwrap_or_else(|| panic!("{model}: client {} has no p99", c.id));
        // 1 significant digit: within 10% of the server's own range.
        assert!(
            p99 as f64 >= r.latency_ns.min as f64 * 0.9
                && p99 as f64 <= r.latency_ns.max as f64 * 1.1,
            "{model}: client {} p99 {p99} outside {}-{}",
            c.id,
            r.latency_ns.min,
            r.latency_ns.max
        );
    }
}

/// `--metrics`: while the server runs, a scrape of its endpoint counts
/// exactly what its report does once it stops: frames, bytes, reads,
/// protocol errors, connections, latencies.
fn live_metrics(model: &str) {
    let server = Server::start(model, &["--metrics", "127.0.0.1:0"]);
    let url = format!("http://{}/metrics", server.metrics.unwrap());
    let handles: Vec<_> = (0..3u32)
        .map(|id| {
            let addr = server.addr;
            thread::spawn(move || {
                let mut s = connect(addr);
                assert!(write_split(
                    &mut s,
                    &encode(&frames(id + 100, 200, 20)),
                    &[45]
                ));
                assert!(finish(s));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // A client that breaks the protocol: one bad-magic error.
    let mut bad = frames(7, 1, 0)[0].encode();
    bad[0] = b'X';
    let mut s = connect(server.addr);
    let _ = s.write_all(&bad);
    assert!(wait_closed(&mut s));
    let series = |name: &str, labels: &str| {
        let sep = if labels.is_empty() { "" } else { "," };
        format!("ingest_server_{name}{{model=\"{model}\"{sep}{labels}}}")
    };
    let mut body = String::new();
    wait_until("the scrape counts every frame and close", || {
        body = http_get(&url).unwrap_or_default();
        sample(&body, &series("frames_processed_total", "")) == Some(600.0)
            && sample(&body, &series("connections_total", "event=\"closed\"")) == Some(4.0)
    });
    let r = server.stop();
    let get = |name: &str, labels: &str| {
        sample(&body, &series(name, labels))
            .unwrap_or_else(|| panic!("{model}: no {name}{{{labels}}} in\n{body}"))
    };
    assert_eq!(get("frames_received_total", ""), 600.0);
    assert_eq!(get("backlog_frames", ""), 0.0);
    assert_eq!(get("read_bytes_total", "") as u64, r.bytes);
    assert_eq!(get("reads_total", "") as u64, r.reads);
    assert_eq!(
        get("protocol_errors_total", "reason=\"bad_magic\"") as u64,
        r.errors.bad_magic
    );
    assert_eq!(r.errors.bad_magic, 1);
    assert_eq!(
        get("connections_total", "event=\"accepted\"") as u64,
        r.connections.accepted
    );
    assert_eq!(get("connections_open", ""), 0.0);
    assert_eq!(get("latency_seconds_count", "") as u64, r.latency_ns.count);
    assert_eq!(
        get("latency_seconds_bucket", "le=\"+Inf\"") as u64,
        r.latency_ns.count
    );
    assert_eq!(
        get("stage_seconds_count", "stage=\"queue\"") as u64,
        r.latency_ns.count
    );
    assert!(get("cpu_seconds_total", "") > 0.0);
    assert!(get("resident_memory_bytes", "") > 0.0);
}

/// [`exact_counts_and_digest`] with extra server flags; the report and the
/// frames sent.
fn exact_counts_and_digest_with(
    model: &str,
    extra: &[&str],
) -> (models::ServerReport, Vec<workloads::Frame>) {
    let server = Server::start(model, extra);
    let addr = server.addr;
    let splits: [&[usize]; 4] = [&[1, 31, 33], &[7], &[64, 5, 27], &[32]];
    let handles: Vec<_> = (0..4u32)
        .map(|id| {
            let sizes = splits[id as usize].to_vec();
            thread::spawn(move || {
                let fs = frames(id + 100, 300, 40);
                let mut s = connect(addr);
                assert!(write_split(&mut s, &encode(&fs), &sizes));
                assert!(finish(s), "server did not close after end of stream");
                fs
            })
        })
        .collect();
    let sent: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let r = server.stop();
    assert_eq!(r.model, model);
    assert_eq!(r.packets.measured, 4 * 260);
    assert_eq!(r.packets.warmup, 4 * 40);
    assert_eq!(r.bytes, 4 * 300 * FRAME_LEN as u64);
    assert_eq!(r.clients.len(), 4);
    for c in &r.clients {
        assert_eq!(
            (c.received, c.measured, c.missing, c.duplicates),
            (300, 260, 0, 0),
            "client {}",
            c.id
        );
        assert_eq!(c.max_seq, Some(299));
    }
    assert_eq!(r.work_digest, format!("{:016x}", digest(&sent)));
    assert_eq!(r.latency_ns.count, 4 * 260);
    assert_eq!(r.errors.total(), 0);
    assert_eq!(r.connections.accepted, 4);
    assert_eq!(r.connections.closed, 4);
    // An event loop counts its readiness waits; threads block in reads.
    if model == "threads" {
        assert_eq!(r.waits, 0);
    } else {
        assert!(r.waits > 0, "{model}: no readiness wait counted");
    }
    (r, sent)
}

/// Every measured frame is in every stage, its cpu or io service apart,
/// and the stage sums per latency bucket; io frames served no shorter than
/// asked; the model says what its queue is.
fn stages_account_for_every_frame(r: &models::ServerReport, sent: &[workloads::Frame]) {
    let measured = |k: WorkKind| sent.iter().filter(|f| !f.warmup && f.kind == k).count() as u64;
    let st = &r.stages;
    assert!(!st.queue_is.is_empty() && !st.read_late_is.is_empty());
    assert_eq!(st.stage_ns.len(), 4);
    for s in &st.stage_ns {
        assert_eq!(s.count, r.packets.measured);
    }
    assert_eq!(st.work_cpu_ns.count, measured(WorkKind::Cpu));
    assert_eq!(st.work_io_ns.count, measured(WorkKind::Io));
    assert!(
        st.work_io_ns.min >= 20_000,
        "io:20us served in {} ns",
        st.work_io_ns.min
    );
    let frames: u64 = st.by_latency.iter().map(|b| b.sums.frames).sum();
    assert_eq!(frames, r.packets.measured);
    // Every bucket's server-side stages add up to service latencies
    // inside the bucket.
    for b in &st.by_latency {
        let mean = b.sums.ns[1..].iter().sum::<u64>() / b.sums.frames;
        assert!(
            mean >= b.low_ns && mean as f64 <= b.low_ns as f64 * 1.13 + 8.0,
            "{b:?}"
        );
    }
}

/// Each invalid-frame reason is counted once, closes only its connection,
/// and frames before it still count.
fn invalid_frames(model: &str) {
    let server = Server::start(model, &["--max-cpu-iters", "1000", "--max-io-us", "500"]);
    // One corruption per reason, in report order.
    let corrupt: [fn(&mut [u8; 32]); 5] = [
        |b| b[0] = b'X',
        |b| {
            b[2] = 9;
            seal(b)
        },
        |b| {
            b[3] = 0x04; // a reserved bit
            seal(b)
        },
        |b| b[20] ^= 0xFF,
        |b| {
            b[3] = 1;
            b[24..28].copy_from_slice(&5000u32.to_le_bytes());
            seal(b)
        },
    ];
    for (i, corrupt) in corrupt.iter().enumerate() {
        let id = 10 + i as u32;
        let mut bytes = encode(&frames(id, 3, 0));
        let mut bad = frame(id, 3, WorkKind::None, 0, false).encode();
        corrupt(&mut bad);
        bytes.extend_from_slice(&bad);
        bytes.extend(encode(&frames(id, 6, 0)[4..]));
        let mut s = connect(server.addr);
        write_split(&mut s, &bytes, &[13]); // the server may reset mid-way
        assert!(
            wait_closed(&mut s),
            "connection with an invalid frame stays open"
        );
    }
    // An unaffected client alongside.
    let mut ok = connect(server.addr);
    assert!(write_split(&mut ok, &encode(&frames(1, 50, 0)), &[32]));
    assert!(finish(ok));
    let r = server.stop();
    let e = &r.errors;
    assert_eq!(
        (
            e.bad_magic,
            e.bad_version,
            e.bad_flags,
            e.bad_checksum,
            e.work_over_limit,
            e.truncated
        ),
        (1, 1, 1, 1, 1, 0)
    );
    for c in &r.clients {
        let expect = if c.id == 1 { 50 } else { 3 };
        assert_eq!(c.received, expect, "client {}", c.id);
    }
    assert_eq!(r.packets.measured, 50 + 5 * 3);
}

/// Bytes left when the peer closes mid-frame count once as `truncated`.
fn truncated_tail(model: &str) {
    let server = Server::start(model, &[]);
    let mut bytes = encode(&frames(7, 5, 0));
    bytes.extend_from_slice(&frame(7, 5, WorkKind::None, 0, false).encode()[..11]);
    let mut s = connect(server.addr);
    assert!(write_split(&mut s, &bytes, &[9]));
    assert!(finish(s));
    let r = server.stop();
    assert_eq!(r.errors.truncated, 1);
    assert_eq!(r.clients[0].received, 5);
}

/// An idle connection neither blocks others nor lives past the idle timeout.
fn idle_connection(model: &str) {
    let server = Server::start(model, &["--idle-timeout", "300ms"]);
    let mut idle = connect(server.addr);
    idle.write_all(&frame(1, 0, WorkKind::None, 0, false).encode()[..5])
        .unwrap();
    let mut busy = connect(server.addr);
    assert!(write_split(&mut busy, &encode(&frames(2, 200, 0)), &[96]));
    assert!(finish(busy), "a busy client was held up by an idle one");
    assert!(wait_closed(&mut idle), "idle connection not closed");
    let r = server.stop();
    assert_eq!(r.connections.idle_timeouts, 1);
    let busy = r.clients.iter().find(|c| c.id == 2).unwrap();
    assert_eq!(busy.received, 200);
}

/// A frame started and never finished (slowloris: a byte now and then, so
/// the connection is never idle) is closed after `--frame-timeout` and
/// counted apart from idle timeouts; whole frames sent slowly are not.
fn stalled_frame(model: &str) {
    let server = Server::start(
        model,
        &["--frame-timeout", "300ms", "--idle-timeout", "30s"],
    );
    let mut slow = connect(server.addr);
    let mut trickle = slow.try_clone().unwrap();
    let bytes = frame(1, 0, WorkKind::None, 0, false).encode();
    let writer = std::thread::spawn(move || {
        // 25 bytes over 2.4 s: never a whole frame, never 300 ms silent.
        for b in &bytes[..25] {
            if trickle.write_all(std::slice::from_ref(b)).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    let mut patient = connect(server.addr);
    for seq in 0..3 {
        patient
            .write_all(&frame(2, seq, WorkKind::None, 0, false).encode())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    assert!(finish(patient), "whole frames sent slowly were cut off");
    assert!(wait_closed(&mut slow), "a stalled frame was not timed out");
    writer.join().unwrap();
    let r = server.stop();
    assert_eq!(r.connections.frame_timeouts, 1);
    assert_eq!(r.connections.idle_timeouts, 0);
    let patient = r.clients.iter().find(|c| c.id == 2).unwrap();
    assert_eq!(patient.received, 3);
}

/// Random bytes after some valid frames, on many connections: the
/// server's error counters and per-client counts equal what decoding each
/// stream 32 bytes at a time predicts, and every connection is closed.
fn random_bytes(model: &str) {
    use rand::{Rng, SeedableRng};
    let server = Server::start(model, &[]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let limits = workloads::Limits::default();
    let mut want_errors = std::collections::HashMap::<String, u64>::new();
    let mut want_frames = 0u64;
    for id in 0..20u32 {
        let mut stream = encode(&frames(100 + id, rng.gen_range(0..5), 0));
        let garbage = rng.gen_range(1..300);
        stream.extend((0..garbage).map(|_| rng.gen::<u8>()));
        let mut err = None;
        for chunk in stream.chunks(FRAME_LEN) {
            match chunk.try_into() {
                Ok(full) => match workloads::Frame::decode(full, &limits) {
                    Ok(_) => want_frames += 1,
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                },
                Err(_) => err = Some("truncated".to_string()),
            }
        }
        *want_errors
            .entry(err.expect("random bytes are invalid"))
            .or_default() += 1;
        let mut s = connect(server.addr);
        let _ = s.write_all(&stream); // the server may close before the end
        assert!(finish(s), "connection {id} not closed");
    }
    let r = server.stop();
    let e = &r.errors;
    let got = [
        ("bad_magic", e.bad_magic),
        ("bad_version", e.bad_version),
        ("bad_flags", e.bad_flags),
        ("bad_checksum", e.bad_checksum),
        ("work_over_limit", e.work_over_limit),
        ("truncated", e.truncated),
    ];
    for (name, n) in got {
        assert_eq!(n, want_errors.get(name).copied().unwrap_or(0), "{name}");
    }
    assert_eq!(r.packets.measured, want_frames);
}

/// Connections beyond `--max-clients` are closed at once and counted.
fn over_limit_clients(model: &str) {
    let server = Server::start(model, &["--max-clients", "2"]);
    let mut held = Vec::new();
    for id in 0..2 {
        let mut s = connect(server.addr);
        s.write_all(&encode(&frames(id, 1, 0))).unwrap();
        held.push(s);
    }
    // Give the server time to accept both before the third arrives.
    thread::sleep(Duration::from_millis(300));
    let mut extra = connect(server.addr);
    assert!(
        wait_closed(&mut extra),
        "connection over the limit stays open"
    );
    for s in held {
        assert!(finish(s));
    }
    let r = server.stop();
    assert_eq!(r.connections.rejected, 1);
    assert_eq!(r.connections.accepted, 2);
}

/// Odd but valid fields are accepted; nothing panics.
fn odd_fields(model: &str) {
    let server = Server::start(model, &[]);
    let mut fs = vec![
        frame(3, 0, WorkKind::None, 0, false),
        frame(3, 1, WorkKind::None, 0, false),
        frame(3, 1_000_000_000, WorkKind::Io, 0, false),
        frame(3, 1_000_000_001, WorkKind::Cpu, 0, false),
    ];
    fs[0].due_ns = 0;
    fs[1].due_ns = u64::MAX;
    let mut s = connect(server.addr);
    s.write_all(&encode(&fs)).unwrap();
    assert!(finish(s));
    // Garbage from another client is an error for that client only.
    let mut junk = connect(server.addr);
    junk.write_all(&[0xAB; 100]).unwrap();
    assert!(wait_closed(&mut junk));
    let r = server.stop();
    let c = r.clients.iter().find(|c| c.id == 3).unwrap();
    assert_eq!(c.received, 4);
    assert_eq!(c.missing, 1_000_000_002 - 4);
    assert_eq!(r.errors.bad_magic, 1);
    assert_eq!(r.latency_ns.count, 4);
}

/// SIGTERM with a client still connected: clean exit, report written.
fn sigterm_with_open_client(model: &str) {
    let server = Server::start(model, &[]);
    let mut s = connect(server.addr);
    s.write_all(&encode(&frames(9, 100, 10))).unwrap();
    thread::sleep(Duration::from_millis(300));
    let r = server.stop();
    assert_eq!(r.clients[0].received, 100);
    assert_eq!(r.packets.measured + r.packets.warmup, 100);
    drop(s);
}

/// SIGTERM while a backlog of slow frames waits: the server exits, and
/// every frame it read was processed (none dropped), the rest left unread.
fn shutdown_under_backlog(model: &str) {
    let server = Server::start(model, &[]);
    let addr = server.addr;
    let writer = thread::spawn(move || {
        let fs: Vec<_> = (0..20_000)
            .map(|seq| frame(4, seq, WorkKind::Io, 500, false))
            .collect();
        let mut s = connect(addr);
        let _ = s.write_all(&encode(&fs)); // fails once the server is gone
    });
    thread::sleep(Duration::from_millis(300));
    let r = server.stop();
    writer.join().unwrap();
    let received: u64 = r.clients.iter().map(|c| c.received).sum();
    assert!(received > 0);
    assert_eq!(
        r.packets.measured + r.packets.warmup,
        received,
        "frames read but not processed"
    );
}

/// The drain contract: a connection is closed only after every frame read
/// from it has been processed. All frames share one due time `D`; the last
/// one is done at `D + latency max`, which must not be after the client
/// saw the close.
fn closes_only_after_processing(model: &str) {
    let server = Server::start(model, &[]);
    let due = workloads::clock::monotonic_ns();
    let fs: Vec<_> = (0..24)
        .map(|seq| {
            let mut f = frame(6, seq, WorkKind::Io, 20_000, false);
            f.due_ns = due;
            f
        })
        .collect();
    let mut s = connect(server.addr);
    s.write_all(&encode(&fs)).unwrap();
    assert!(finish(s), "server did not close");
    let closed_seen = workloads::clock::monotonic_ns();
    let r = server.stop();
    assert_eq!(r.packets.measured, 24);
    // HDR reports the max rounded up by at most 0.1% (3 significant digits).
    let last_done = due + r.latency_ns.max - r.latency_ns.max / 1000;
    assert!(
        last_done <= closed_seen,
        "closed {} us before its last frame was processed",
        (last_done - closed_seen) / 1000
    );
}

/// A client that aborts (resets) mid-frame is counted as a reset, not as
/// a protocol error; the frames before it count.
fn abort_mid_frame_is_no_protocol_error(model: &str) {
    let server = Server::start(model, &[]);
    let mut bytes = encode(&frames(8, 10, 0));
    bytes.extend_from_slice(&frame(8, 10, WorkKind::None, 0, false).encode()[..13]);
    let mut s = connect(server.addr);
    s.write_all(&bytes).unwrap();
    thread::sleep(Duration::from_millis(200));
    nix::sys::socket::setsockopt(
        &s,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
    drop(s);
    thread::sleep(Duration::from_millis(200));
    let r = server.stop();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.connections.resets, 1);
    assert_eq!(r.clients[0].received, 10);
}

/// Ack mode: frames that ask (flag bit 6) are acknowledged exactly once,
/// after they are processed, in well-formed records; frames that do not ask
/// are not. Several clients, frames split at odd boundaries, cpu, io and
/// empty work.
fn acks_exactly_once(model: &str) {
    let server = Server::start(model, &[]);
    let addr = server.addr;
    let handles: Vec<_> = (0..3u32)
        .map(|id| {
            thread::spawn(move || {
                let mut fs = frames(id + 200, 400, 50);
                // Every frame asks but each seventh.
                fs.iter_mut().for_each(|f| f.ack = f.seq % 7 != 3);
                let mut s = connect(addr);
                let reader = s.try_clone().unwrap();
                let acks = thread::spawn(move || read_acks(reader));
                assert!(write_split(&mut s, &encode(&fs), &[5, 32, 61]));
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let (acks, closed) = acks.join().unwrap();
                assert!(closed, "client {id}: the server did not close");
                let mut count = vec![0u32; fs.len()];
                for a in acks {
                    for seq in a.seqs() {
                        count[seq as usize] += 1;
                    }
                }
                for f in &fs {
                    let want = u32::from(f.ack);
                    assert_eq!(count[f.seq as usize], want, "client {id} seq {}", f.seq);
                }
                fs.iter().filter(|f| f.ack).count() as u64
            })
        })
        .collect();
    let asked: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let r = server.stop();
    assert_eq!(r.acks.frames, asked);
    assert_eq!((r.acks.dropped, r.acks.unsent_at_stop), (0, 0));
    assert!(r.acks.records > 0 && r.acks.records <= asked);
    // Every record went out in some write; a write carries one or more.
    assert!(r.acks.writes > 0 && r.acks.writes <= r.acks.records + 3);
    assert_eq!(r.packets.measured + r.packets.warmup, 3 * 400);
}

/// Ack mode never blocks the server: a client that asks for acks and never
/// reads them (a tiny receive buffer) does not stall another client; once
/// it ends (and reads), the server closes it, and every ack is accounted
/// for: written, or dropped and counted.
fn unread_acks_never_block(model: &str) {
    let server = Server::start(model, &[]);
    let addr = server.addr;
    let mut greedy = small_window_client(addr);
    const N: u32 = 300_000;
    let bytes = scattered_ack_frames(300, N);
    let writer = thread::spawn(move || {
        let ok = greedy.write_all(&bytes).is_ok();
        (greedy, ok)
    });
    // Meanwhile another client is served as usual.
    let mut other = connect(addr);
    other.write_all(&encode(&frames(301, 200, 0))).unwrap();
    assert!(
        finish(other),
        "a client whose acks go unread stalled another"
    );
    let (greedy, wrote) = writer.join().unwrap();
    assert!(wrote, "the server stopped reading");
    let ended = std::time::Instant::now();
    assert!(finish(greedy), "the server never closed the unread client");
    assert!(
        ended.elapsed() < Duration::from_secs(10),
        "closed {:?} after the end",
        ended.elapsed()
    );
    let r = server.stop();
    assert_eq!(r.packets.measured, N as u64 + 200);
    // How many were dropped depends on the socket buffers; none is lost
    // unaccounted.
    assert_eq!(
        r.acks.frames + r.acks.dropped + r.acks.unsent_at_stop,
        N as u64,
        "{:?}",
        r.acks
    );
}

/// A client with a 4 KiB receive buffer: acks pile up on the server's side.
fn small_window_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    socket::setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    let s = std::net::TcpStream::from(fd);
    let to = SockaddrIn::from(match addr {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!("the server listens on IPv4"),
    });
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&s), &to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// `n` frames of client `id` asking for acks, with gaps between sequence
/// numbers: one 16-byte record each, far more than the socket buffers and
/// the server's bound together.
fn scattered_ack_frames(id: u32, n: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let mut f = frame(id, 2 * i, WorkKind::None, 0, false);
            f.ack = true;
            f.encode()
        })
        .collect()
}

/// A client that asks for acks, never reads them and falls silent is still
/// closed by the idle timeout (a full socket does not keep it alive).
fn silent_client_with_unread_acks_times_out(model: &str) {
    let server = Server::start(model, &["--idle-timeout", "300ms"]);
    let mut s = small_window_client(server.addr);
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // As much as the server takes before its acks fill every buffer.
    let _ = s.write_all(&scattered_ack_frames(400, 100_000));
    thread::sleep(Duration::from_millis(2_500));
    let r = server.stop();
    assert_eq!(r.connections.idle_timeouts, 1, "{:?}", r.connections);
    drop(s);
}

macro_rules! conformance {
    ($($name:literal => $module:ident),* $(,)?) => {
        $(mod $module {
            #[test] fn exact_counts_and_digest() { super::exact_counts_and_digest($name) }
            #[test] fn invalid_frames() { super::invalid_frames($name) }
            #[test] fn truncated_tail() { super::truncated_tail($name) }
            #[test] fn idle_connection() { super::idle_connection($name) }
            #[test] fn stalled_frame() { super::stalled_frame($name) }
            #[test] fn client_latency() { super::client_latency($name) }
            #[test] fn no_stages() { super::no_stages($name) }
            #[test] fn live_metrics() { super::live_metrics($name) }
            #[test] fn random_bytes() { super::random_bytes($name) }
            #[test] fn over_limit_clients() { super::over_limit_clients($name) }
            #[test] fn odd_fields() { super::odd_fields($name) }
            #[test] fn sigterm_with_open_client() { super::sigterm_with_open_client($name) }
            #[test] fn shutdown_under_backlog() { super::shutdown_under_backlog($name) }
            #[test] fn closes_only_after_processing() { super::closes_only_after_processing($name) }
            #[test] fn abort_mid_frame_is_no_protocol_error() { super::abort_mid_frame_is_no_protocol_error($name) }
            #[test] fn acks_exactly_once() { super::acks_exactly_once($name) }
            #[test] fn unread_acks_never_block() { super::unread_acks_never_block($name) }
            #[test] fn silent_client_with_unread_acks_times_out() { super::silent_client_with_unread_acks_times_out($name) }
        })*

        #[test]
        fn every_model_is_covered() {
            assert_eq!(models::names(), [$($name),*], "add new models to the conformance! list");
        }
    };
}

conformance!(
    "single" => single,
    "pool" => pool,
    "async" => async_model,
    "prefork" => prefork,
    "threads" => threads,
    "rayon" => rayon_model,
    "percore" => percore,
    "uring" => uring,
);

/// `prefork` places each connection on the child with the fewest open
/// ones: 8 clients over 4 children are 2 each, whatever ports they got
/// (`SO_REUSEPORT`'s hash would often give one child three).
#[test]
fn prefork_places_connections_evenly() {
    let server = Server::start("prefork", &["--workers", "4"]);
    let mut held = Vec::new();
    for id in 0..8 {
        let mut s = connect(server.addr);
        s.write_all(&encode(&frames(id, 10, 0))).unwrap();
        held.push(s);
    }
    for s in held {
        assert!(finish(s));
    }
    let r = server.stop();
    assert_eq!(r.connections.accepted, 8);
    let per_child: Vec<u64> = r.children.iter().map(|c| c.connections).collect();
    assert_eq!(per_child, [2, 2, 2, 2], "{:?}", r.children);
    assert_eq!(r.packets.measured, 80);
}

/// `--placement hash` (a `SO_REUSEPORT` listener per worker, kept to show
/// what the kernel's placement costs) still serves every frame exactly.
#[test]
fn hash_placement_serves_every_frame() {
    for model in ["prefork", "percore", "uring"] {
        let server = Server::start(model, &["--workers", "4", "--placement", "hash"]);
        let mut held = Vec::new();
        for id in 0..8 {
            let mut s = connect(server.addr);
            s.write_all(&encode(&frames(id, 10, 0))).unwrap();
            held.push(s);
        }
        for s in held {
            assert!(finish(s), "{model}");
        }
        let r = server.stop();
        assert_eq!(
            (r.connections.accepted, r.packets.measured, r.errors.total()),
            (8, 80, 0),
            "{model}"
        );
    }
}

/// `pool` and `rayon` with each turn's frames handed over at once
/// (`--coalesce 0`) and held back as long as a second: the same exact
/// counts and digest either way (a hold ends when the connection does).
#[test]
fn held_back_or_not_the_hand_off_counts_exactly() {
    for model in ["pool", "rayon"] {
        for hold in ["0", "1s"] {
            let (r, sent) = exact_counts_and_digest_with(model, &["--coalesce", hold]);
            stages_account_for_every_frame(&r, &sent);
        }
    }
}

/// `async` with every cpu batch on the blocking pool (`--inline-cpu 0`),
/// and with every batch inline (a threshold above any batch here): the
/// same exact counts and digest either way.
#[test]
fn async_cpu_work_inline_or_on_the_pool_counts_exactly() {
    for extra in [
        &["--inline-cpu", "0"][..],
        &["--inline-cpu", "1s", "--iters-per-us", "100"],
    ] {
        let (r, sent) = exact_counts_and_digest_with("async", extra);
        stages_account_for_every_frame(&r, &sent);
    }
}

/// The bare loop, the floor every model's cost is measured against: found
/// by name though not registered, it reads, checks and counts every frame
/// exactly, does no work (no digest), and records every frame's stages.
#[test]
fn the_bare_loop_counts_every_frame_and_does_no_work() {
    assert!(
        !models::names().contains(&"bare"),
        "never a model to recommend"
    );
    let server = Server::start("bare", &[]);
    let addr = server.addr;
    let handles: Vec<_> = (0..3u32)
        .map(|id| {
            thread::spawn(move || {
                let fs = frames(id + 100, 300, 40);
                let mut s = connect(addr);
                assert!(write_split(&mut s, &encode(&fs), &[7, 64]));
                assert!(finish(s), "server did not close after end of stream");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let r = server.stop();
    assert_eq!(r.model, "bare");
    assert_eq!((r.packets.measured, r.packets.warmup), (3 * 260, 3 * 40));
    assert_eq!(r.work_digest, format!("{:016x}", 0));
    assert!(r.reads > 0 && r.reads <= 3 * 300);
    for c in &r.clients {
        assert_eq!((c.received, c.missing, c.duplicates), (300, 0, 0));
    }
    for s in &r.stages.stage_ns {
        assert_eq!(s.count, r.packets.measured);
    }
    // No work: nothing after the read.
    assert!(r.stages.stage_ns[2].max <= 1 && r.stages.stage_ns[3].max <= 1);
}
