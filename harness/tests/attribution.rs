//! Known answers for the stage attribution, on real servers under a real
//! paced fleet: where the answer is known by construction, the stage that
//! dominates the slowest 1% must be the one the construction puts there.
//! Alone in its test binary, so no other test competes for the CPUs.

mod util;

use std::str::FromStr;

use harness::fleet;
use record::attribution::{Attribution, DOMINANT, SERVER_STAGES};
use util::{fleet_config, Server};
use workloads::WorkSpec;

/// The attribution of `model` serving `clients` clients of `work` at
/// `hz` each, one frame per write.
fn attribution(model: &str, clients: u32, hz: u64, work: &str, window_us: u64) -> Attribution {
    let server = Server::start(model, &[]);
    let mut config = fleet_config(server.addr, clients, 1);
    config.rate = fleet::Rate::Hz(hz);
    config.work = WorkSpec::from_str(work).unwrap().resolve(None).unwrap();
    config.batch_window = std::time::Duration::from_micros(window_us);
    config.duration = std::time::Duration::from_secs(2);
    let report = fleet::run(&config).expect("fleet runs");
    let server = server.stop();
    assert_eq!(server.packets.measured, report.sent.measured, "{model}");
    let a = Attribution::of(&[&server], &config.work).expect("stages recorded");
    eprintln!("{model} {work} x{clients}: {}; {a:?}", a.sentence());
    a
}

/// `async` far below its capacity (two clients, a 1 ms wait on every
/// frame, waits overlapping): its slow frames are slow because of the wait.
/// Best of three: one stall of a shared machine lands in a 40-frame tail;
/// a model whose tail is not its work fails all three.
#[test]
fn async_far_below_capacity_spends_its_tail_in_service() {
    let mut seen = Vec::new();
    for _ in 0..3 {
        let a = attribution("async", 2, 1_000, "io:1ms", 0);
        let io = &a.work[0];
        assert!(!io.flagged(), "io:1ms served as asked: {io:?}");
        let (stage, share) = a.tail.top();
        if SERVER_STAGES[stage] == "service" && share >= DOMINANT {
            return;
        }
        seen.push(a.sentence());
    }
    panic!("async's tail was never its work: {seen:#?}");
}

/// `single` at two clients of the io workload (10 kHz in 1 ms batches, a
/// 1 ms wait on one frame in 20: its one loop is busy all the time, the
/// waits in series): its slowest frames waited for the frames ahead of
/// them on the loop, in their socket or after the read, before their own
/// work began, and the sentence says it is head-of-line blocking.
#[test]
fn single_with_io_waits_spends_its_tail_waiting_behind_the_loop() {
    let a = attribution("single", 2, 10_000, "io:1ms,every=20", 1_000);
    let (stage, _) = a.tail.top();
    assert_ne!(SERVER_STAGES[stage], "service", "{}", a.sentence());
    assert!(
        a.tail.share[0] + a.tail.share[1] >= DOMINANT,
        "{}",
        a.sentence()
    );
    assert!(a.sentence().contains("head-of-line"), "{}", a.sentence());
}
