//! The fleet against an in-test sink: schedule exactness, warm-up order,
//! never early, count mode, reconnects, backpressure, and ack mode against
//! an honest and a lying acknowledger.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use fleet::client::ClientState;
use fleet::fleet_report::{FleetReport, FleetStatus};
use fleet::{self, FleetConfig, Rate};
use workloads::clock::monotonic_ns;
use workloads::{Frame, FrameReader, Limits, WorkPlan};

/// What the sink does with connections.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Read everything, close at end of stream.
    Read,
    /// Close the first connection after this many frames.
    CloseFirstAfter(usize),
    /// Accept, never read.
    NeverRead,
    /// Read everything and acknowledge each frame with a record of its
    /// own; when lying, never seq 5, seq 7 twice, and a seq never sent.
    Ack { lie: bool },
}

/// Frames one connection delivered, with the time each was read.
type ConnLog = Vec<(Frame, u64)>;

struct Sink {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    logs: Arc<Mutex<Vec<JoinHandle<ConnLog>>>>,
}

impl Sink {
    fn start(mode: Mode) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        if mode == Mode::NeverRead {
            nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::RcvBuf, &4096)
                .unwrap();
        }
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let logs: Arc<Mutex<Vec<JoinHandle<ConnLog>>>> = Arc::default();
        let (stop2, logs2) = (stop.clone(), logs.clone());
        let accept = thread::spawn(move || {
            let mut held = Vec::new();
            let mut first = true;
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        if mode == Mode::NeverRead {
                            held.push(s);
                            continue;
                        }
                        let limit = match mode {
                            Mode::CloseFirstAfter(n) if first => Some(n),
                            _ => None,
                        };
                        first = false;
                        let lie = match mode {
                            Mode::Ack { lie } => Some(lie),
                            _ => None,
                        };
                        logs2
                            .lock()
                            .unwrap()
                            .push(thread::spawn(move || read_all(s, limit, lie)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Sink {
            addr,
            stop,
            accept,
            logs,
        }
    }

    fn finish(self) -> Vec<ConnLog> {
        self.stop.store(true, Ordering::SeqCst);
        self.accept.join().unwrap();
        let handles = std::mem::take(&mut *self.logs.lock().unwrap());
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }
}

/// The ack records a sink writes for `frame` (`lie`: see [`Mode::Ack`]).
fn acks_for(frame: &Frame, lie: bool) -> Vec<u8> {
    let one = |first_seq| {
        workloads::ack::Ack {
            first_seq,
            count: 1,
        }
        .encode()
    };
    match (lie, frame.seq) {
        (true, 5) => Vec::new(),
        (true, 7) => [one(7), one(7)].concat(),
        (true, 9) => [one(9), one(1_000_000)].concat(),
        (_, seq) => one(seq).to_vec(),
    }
}

fn read_all(mut s: TcpStream, limit: Option<usize>, ack: Option<bool>) -> ConnLog {
    let limits = Limits {
        max_cpu_iters: u32::MAX,
        max_io_us: u32::MAX,
    };
    let mut reader = FrameReader::new();
    let mut log = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return log,
            Ok(n) => n,
        };
        let now = monotonic_ns();
        let mut acks = Vec::new();
        reader
            .feed(&buf[..n], &limits, |f| {
                if let Some(lie) = ack {
                    assert!(f.ack, "a frame of an ack-mode fleet that asks for none");
                    acks.extend(acks_for(&f, lie));
                }
                log.push((f, now))
            })
            .unwrap();
        if !acks.is_empty() && s.write_all(&acks).is_err() {
            return log;
        }
        if limit.is_some_and(|l| log.len() >= l) {
            return log; // dropping the stream closes it mid-run
        }
    }
}

fn config(target: SocketAddr, clients: u32, hz: u64, window: Duration) -> FleetConfig {
    FleetConfig {
        target,
        clients,
        client_id_base: 500,
        rate: Rate::Hz(hz),
        warmup: Duration::from_millis(50),
        duration: Duration::from_millis(150),
        count: None,
        batch_window: window,
        arrival: fleet::Arrival::Constant,
        seed: 0,
        reconnect_every: None,
        work: WorkPlan::none(),
        threads: 1,
        cpus: None,
        drain_timeout: Duration::from_secs(5),
        max_lag: Duration::from_millis(50),
        connect_tries: fleet::DEFAULT_CONNECT_TRIES,
        shard: None,
        start_at_unix_ns: None,
        ack: false,
        shared_clock: true,
    }
}

fn by_client(logs: &[ConnLog]) -> std::collections::BTreeMap<u32, Vec<(Frame, u64)>> {
    let mut out: std::collections::BTreeMap<u32, Vec<(Frame, u64)>> = Default::default();
    for log in logs {
        for &(f, t) in log {
            out.entry(f.client_id).or_default().push((f, t));
        }
    }
    out
}

/// Checks every client's frames against the schedule; consecutive clients'
/// first due times are one period / clients apart, within `slack` ns.
fn check_schedule(report: &FleetReport, logs: &[ConnLog], period: u64, slack: u64) {
    let clients = by_client(logs);
    assert_eq!(clients.len(), report.config.clients as usize);
    for (id, frames) in &clients {
        let line = report.clients.iter().find(|c| c.id == *id).unwrap();
        assert_eq!(line.state, ClientState::Drained);
        assert_eq!(
            frames.len() as u64,
            line.sent.measured + line.sent.warmup,
            "client {id}"
        );
        let mut seen_measured = false;
        for (i, (f, read_at)) in frames.iter().enumerate() {
            assert_eq!(f.seq as usize, i, "client {id}: sequence not contiguous");
            assert!(
                *read_at >= f.due_ns,
                "client {id}: frame {i} sent before it was due"
            );
            // The stamped send delay is when its write was issued: after
            // the due time, before the sink read it.
            assert!(
                f.due_ns + f.send_delay_ns as u64 <= *read_at,
                "client {id}: frame {i} stamped with a write after it was read"
            );
            if i > 0 {
                assert_eq!(
                    f.due_ns - frames[i - 1].0.due_ns,
                    period,
                    "client {id}: due times not one period apart"
                );
            }
            assert!(
                !(seen_measured && f.warmup),
                "client {id}: warm-up frame after a measured one"
            );
            seen_measured |= !f.warmup;
        }
        assert_eq!(
            frames.iter().filter(|(f, _)| f.warmup).count() as u64,
            line.sent.warmup
        );
    }
    // Phases spread the clients over one period.
    let mut firsts: Vec<u64> = clients.values().map(|f| f[0].0.due_ns).collect();
    firsts.sort_unstable();
    for w in firsts.windows(2) {
        let gap = period / report.config.clients as u64;
        assert!(
            w[1] - w[0] >= gap.saturating_sub(slack) && w[1] - w[0] <= gap + 1 + slack,
            "phases not spread: {firsts:?}"
        );
    }
}

#[test]
fn one_write_per_frame_keeps_an_exact_schedule() {
    let sink = Sink::start(Mode::Read);
    let report = fleet::run(&config(sink.addr, 3, 2_000, Duration::ZERO)).unwrap();
    let logs = sink.finish();
    check_schedule(&report, &logs, 500_000, 0);
    // 200 ms at 2 kHz: 100 warm-up and 300 measured frames per client.
    assert_eq!(report.sent.warmup, 3 * 100);
    assert_eq!(report.sent.measured, 3 * 300);
    assert_eq!(report.drained.len(), 3);
}

#[test]
fn batch_windows_never_send_early() {
    let sink = Sink::start(Mode::Read);
    let report = fleet::run(&config(sink.addr, 4, 10_000, Duration::from_millis(1))).unwrap();
    let logs = sink.finish();
    check_schedule(&report, &logs, 100_000, 0);
    assert_eq!(report.sent.measured + report.sent.warmup, 4 * 2_000);
}

#[test]
fn count_mode_sends_exactly_n() {
    let sink = Sink::start(Mode::Read);
    let mut c = config(sink.addr, 2, 5_000, Duration::ZERO);
    c.count = Some(137);
    c.warmup = Duration::ZERO;
    let report = fleet::run(&c).unwrap();
    let logs = sink.finish();
    for frames in by_client(&logs).values() {
        assert_eq!(frames.len(), 137);
    }
    assert_eq!(report.sent.measured, 2 * 137);
    assert!(report.makespan_s.unwrap() > 0.0);
}

#[test]
fn a_closed_connection_reconnects_and_continues_the_sequence() {
    let sink = Sink::start(Mode::CloseFirstAfter(40));
    let report = fleet::run(&config(sink.addr, 1, 2_000, Duration::ZERO)).unwrap();
    let logs = sink.finish();
    assert!(report.reconnects >= 1, "no reconnect: {:?}", report.verdict);
    assert!(logs.len() >= 2);
    let first = &logs[0];
    let second = &logs[1];
    let last_old = first.last().unwrap().0.seq;
    let first_new = second[0].0.seq;
    assert!(
        first_new > last_old,
        "sequence numbers reused after reconnect"
    );
    for w in second.windows(2) {
        assert_eq!(w[1].0.seq, w[0].0.seq + 1);
    }
    assert_eq!(second.last().unwrap().0.seq, 399);
}

/// `--reconnect-every 100`: every connection carries exactly 100 frames
/// (the last what is left), each a run of sequence numbers that the next
/// connection continues; every frame sent is read once; the reconnects are
/// planned, not breaks, and the fleet is on schedule.
#[test]
fn planned_reconnects_carry_n_frames_each_and_continue_the_sequence() {
    let sink = Sink::start(Mode::Read);
    let mut c = config(sink.addr, 3, 10_000, Duration::from_millis(1));
    c.reconnect_every = Some(100);
    let report = fleet::run(&c).unwrap();
    let logs = sink.finish();
    let mut read = 0;
    let mut planned = 0;
    for id in 500..503 {
        let mut conns: Vec<&ConnLog> = logs
            .iter()
            .filter(|l| l.first().is_some_and(|(f, _)| f.client_id == id))
            .collect();
        conns.sort_by_key(|l| l[0].0.seq);
        let mut next = 0;
        for (k, conn) in conns.iter().enumerate() {
            assert!(
                conn.iter().all(|(f, _)| f.client_id == id),
                "one client per connection"
            );
            let seqs: Vec<u32> = conn.iter().map(|(f, _)| f.seq).collect();
            assert_eq!(
                seqs,
                (next..next + seqs.len() as u32).collect::<Vec<_>>(),
                "client {id} connection {k}"
            );
            if k + 1 < conns.len() {
                assert_eq!(seqs.len(), 100, "client {id} connection {k}");
            } else {
                assert!(
                    (1..=100).contains(&seqs.len()),
                    "client {id}: last {}",
                    seqs.len()
                );
            }
            next += seqs.len() as u32;
        }
        read += next as u64;
        planned += conns.len() as u64 - 1;
        assert!(
            conns.len() >= 19,
            "client {id}: {} connections for 200 ms at 10 kHz",
            conns.len()
        );
    }
    assert_eq!(report.sent.measured + report.sent.warmup, read);
    assert_eq!(report.unsent, 0);
    assert_eq!((report.reconnects, report.planned_reconnects), (0, planned));
    assert_eq!(report.drained.len(), 3);
    assert_eq!(
        report.verdict.status,
        FleetStatus::Ok,
        "{:?}",
        report.verdict
    );
}

#[test]
fn a_server_that_stops_reading_is_backpressure_not_a_hang() {
    let sink = Sink::start(Mode::NeverRead);
    let mut c = config(sink.addr, 2, 100_000, Duration::from_millis(1));
    c.duration = Duration::from_millis(1500);
    c.drain_timeout = Duration::from_millis(300);
    c.max_lag = Duration::from_millis(2);
    let report = fleet::run(&c).unwrap();
    sink.finish();
    assert!(report.would_block_writes > 0);
    assert_eq!(
        report.verdict.status,
        FleetStatus::ServerBackpressure,
        "{:?}",
        report.verdict
    );
    assert_eq!(report.undrained.len(), 2);
}

#[test]
fn ack_mode_checks_every_frame_is_acknowledged_exactly_once() {
    for lie in [false, true] {
        let sink = Sink::start(Mode::Ack { lie });
        let mut c = config(sink.addr, 3, 2_000, Duration::ZERO);
        c.ack = true;
        let report = fleet::run(&c).unwrap();
        sink.finish();
        assert_eq!(report.drained.len(), 3, "lie {lie}");
        let acks = report.acks.as_ref().expect("ack mode");
        let all = report.sent.measured + report.sent.warmup;
        let per_client = if lie { [1, 1, 1] } else { [0, 0, 0] };
        let c = acks.counts;
        assert_eq!(
            (
                c.acked,
                c.unacked,
                c.duplicates,
                c.unexpected,
                c.bad_records
            ),
            (
                all - per_client[0] * 3,
                per_client[1] * 3,
                per_client[2] * 3,
                per_client[2] * 3,
                0
            ),
            "lie {lie}"
        );
        assert_eq!(acks.inexact_clients.len(), if lie { 3 } else { 0 });
        for client in &report.clients {
            let a = client.acks.expect("per client");
            assert_eq!(a.exact(), !lie);
        }
        // A round trip for every measured frame acknowledged (seqs 5, 7, 9
        // are warm-up frames here).
        assert_eq!(acks.round_trip_ns.count, report.sent.measured);
        assert!(acks.round_trip_ns.p50 > 0);
        assert_eq!(
            report
                .verdict
                .reasons
                .iter()
                .any(|r| r.contains("acks not exact")),
            lie,
            "{:?}",
            report.verdict
        );
    }
}

#[test]
fn shards_started_together_are_the_one_process_fleet() {
    let sink = Sink::start(Mode::Read);
    let whole = config(sink.addr, 6, 2_000, Duration::ZERO);
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let start_at = unix_now + 300_000_000;
    let shards: Vec<_> = (0..3)
        .map(|index| {
            let mut c = whole.clone();
            c.shard = Some(fleet::Shard { index, count: 3 });
            c.start_at_unix_ns = Some(start_at);
            thread::spawn(move || fleet::run(&c).unwrap())
        })
        .collect();
    let reports: Vec<FleetReport> = shards.into_iter().map(|h| h.join().unwrap()).collect();
    let logs = sink.finish();
    for (i, r) in reports.iter().enumerate() {
        let ids: Vec<u32> = r.clients.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![500 + i as u32, 503 + i as u32], "shard {i}");
        assert_eq!(r.offered_rate, Some(2.0 * 2_000.0));
    }
    let merged = fleet::merge::merge(&reports).unwrap();
    assert_eq!(merged.config.clients, 6);
    assert_eq!(merged.offered_rate, Some(6.0 * 2_000.0));
    // Exactly the one-process fleet's schedule: ids, counts, period and
    // the phases spread over the six clients, although three processes
    // each started the clock on their own.
    // Each shard converts the shared CLOCK_REALTIME start to
    // CLOCK_MONOTONIC on its own: its start may differ by microseconds.
    check_schedule(&merged, &logs, 500_000, 20_000);
    let schedule = fleet::schedule::Schedule::new(&whole, 0);
    for c in &merged.clients {
        let index = c.id - 500;
        assert_eq!(
            c.sent.measured + c.sent.warmup,
            schedule.total(index).unwrap(),
            "client {}",
            c.id
        );
    }
}

#[test]
fn shards_parse_and_partition_the_fleet() {
    use std::str::FromStr;
    for (text, ok) in [
        ("0/3", true),
        ("2/3", true),
        ("3/3", false),
        ("1", false),
        ("a/b", false),
        ("0/0", false),
    ] {
        assert_eq!(fleet::Shard::from_str(text).is_ok(), ok, "{text}");
    }
    for (clients, count) in [(10u32, 3u32), (2, 4), (7, 1)] {
        let mut all: Vec<u32> = (0..count)
            .flat_map(|index| fleet::Shard { index, count }.indices(clients))
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..clients).collect::<Vec<_>>(),
            "{clients} clients in {count} shards"
        );
    }
}

/// Poisson arrivals, bursts and a replayed trace: every frame the sink read carries the due
/// time the schedule gives it (the same seed, the same times), the counts
/// are exact, and the fleet's own test passes the Poisson gaps it sent.
#[test]
fn random_and_bursty_arrivals_send_their_schedule_exactly() {
    let trace = concat!(
        "trace:",
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/traces/example.trace"
    );
    for arrival in ["poisson", "burst:on=20ms,off=30ms", trace] {
        let sink = Sink::start(Mode::Read);
        let mut c = config(sink.addr, 3, 10_000, Duration::from_millis(1));
        c.arrival = arrival.parse().expect("an arrival process");
        c.seed = 11;
        let report = fleet::run(&c).unwrap();
        let logs = sink.finish();
        let clients = by_client(&logs);
        let first = clients[&500][0].0.due_ns;
        let schedule = fleet::schedule::Schedule::new(&c, first);
        let mut read = 0;
        for (id, frames) in &clients {
            let index = id - 500;
            assert_eq!(
                frames.len() as u64,
                schedule.total(index).unwrap(),
                "{arrival}: client {id}"
            );
            for (i, (f, _)) in frames.iter().enumerate() {
                assert_eq!(f.seq as usize, i, "{arrival}: client {id}");
                assert_eq!(
                    f.due_ns,
                    schedule.due(index, i as u64),
                    "{arrival}: client {id} frame {i}"
                );
            }
            read += frames.len() as u64;
        }
        assert_eq!(report.sent.measured + report.sent.warmup, read, "{arrival}");
        assert_eq!(report.drained.len(), 3, "{arrival}");
        match report.arrivals {
            Some(a) => assert!(arrival == "poisson" && a.passed && a.gaps > 1_000, "{a:?}"),
            None => assert_ne!(arrival, "poisson"),
        }
    }
}
