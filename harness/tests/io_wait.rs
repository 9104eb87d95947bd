//! Equal io across models: an io frame waits its amount within 250 us in
//! every registered model: no coarse timer (tokio's own rounds up to 1 ms)
//! passes, while a shared machine's wake-up noise (20-70 us seen here) does
//! not fail it. Alone in its test binary, so no other test
//! competes for the CPUs while it measures.
//!
//! Each write carries a no-work frame and a 1 ms io frame with the same due
//! time; the io frame's latency minus the other's is the wait plus its
//! overshoot, with the network and wake-up costs cancelled. Half the frames
//! are of each kind, so the medians of the two halves are the merged
//! histogram's p25 and p75.

mod util;

use std::io::Write;
use std::thread;
use std::time::Duration;

use util::*;
use workloads::WorkKind;

const WAIT_US: u32 = 1_000;
const TOLERANCE_US: i64 = 250;
const PAIRS: u32 = 200;

fn measured_wait_us(model: &str) -> i64 {
    let server = Server::start(model, &[]);
    let mut s = connect(server.addr);
    for i in 0..PAIRS {
        let due = workloads::clock::monotonic_ns();
        let mut a = frame(1, 2 * i, WorkKind::None, 0, false);
        let mut b = frame(1, 2 * i + 1, WorkKind::Io, WAIT_US, false);
        (a.due_ns, b.due_ns) = (due, due);
        s.write_all(&encode(&[a, b])).unwrap();
        // Let the pair finish before the next one: waits never overlap.
        thread::sleep(Duration::from_micros(2 * WAIT_US as u64));
    }
    assert!(finish(s));
    let r = server.stop();
    assert_eq!(r.latency_ns.count, 2 * PAIRS as u64);
    let h = r.latency_ns.histogram().unwrap();
    let (none, io) = (h.value_at_quantile(0.25), h.value_at_quantile(0.75));
    (io as i64 - none as i64) / 1000
}

#[test]
fn io_waits_are_equal_in_every_model() {
    let mut report = Vec::new();
    for model in models::names() {
        // Best of three: a moment of noise on a shared machine is not the
        // model's; a systematic overshoot fails all three.
        let wait = (0..3)
            .map(|_| measured_wait_us(model))
            .min_by_key(|w| (w - WAIT_US as i64).abs())
            .expect("three tries");
        report.push(format!("{model}: {wait} us"));
        let off = wait - WAIT_US as i64;
        assert!(
            off.abs() <= TOLERANCE_US,
            "{model}: a {WAIT_US} us io wait took {wait} us (all: {report:?})"
        );
    }
    eprintln!("io waits of {WAIT_US} us: {report:?}");
}
