//! `call` work: every model makes a real call to a downstream responder for
//! each call frame and waits for it its own way. Counts are exact: per
//! client the server read every frame the fleet sent, once; it made one
//! call per call frame and every call was answered; the responder answered
//! exactly those calls; nothing but the responder's own lateness (a timing
//! of the shared machine, its own cause) makes the cell invalid. Without a
//! downstream every call fails, counted, and the cell is invalid.

mod util;

use harness::fleet;
use models::responder::Responder;
use record::verdict::{self, Cause, RunFaults, Status};
use util::{fleet_config, Server};

/// One frame in this many makes a call.
const EVERY: u64 = 10;

fn call_plan() -> workloads::WorkPlan {
    format!("call:1ms,every={EVERY}")
        .parse::<workloads::WorkSpec>()
        .and_then(|s| s.resolve(None))
        .expect("a valid spec")
}

#[test]
fn every_model_answers_each_call_frame_with_one_real_call() {
    for &name in &models::names() {
        let responder = Responder::start("127.0.0.1:0".parse().unwrap()).expect("responder");
        let downstream = responder.addr().to_string();
        let server = Server::start(name, &["--downstream", &downstream]);
        let mut config = fleet_config(server.addr, 4, 1);
        config.work = call_plan();
        let f = fleet::run(&config).expect("fleet runs");
        let s = server.stop();
        let r = responder.stop().expect("responder stops");
        let mut calls = 0;
        for c in &f.clients {
            let sent = c.sent.measured + c.sent.warmup;
            assert!(sent >= 400, "{name}: client {} sent {sent}", c.id);
            let line = s.clients.iter().find(|l| l.id == c.id);
            let line = line.unwrap_or_else(|| panic!("{name}: client {} unknown", c.id));
            assert_eq!(
                (line.received, line.missing, line.duplicates),
                (sent, 0, 0),
                "{name}: client {}",
                c.id
            );
            calls += sent.div_ceil(EVERY); // seq 0, EVERY, 2 x EVERY, ...
        }
        assert_eq!(
            (s.calls.answered, s.calls.failed),
            (calls, 0),
            "{name}: calls"
        );
        assert_eq!(
            (r.requests, r.replies, r.refused),
            (calls, calls, 0),
            "{name}: the responder"
        );
        assert_eq!(r.lateness_ns.count, calls, "{name}: lateness recorded");
        let rec = verdict::reconcile(&f, Some(&s));
        let v = verdict::verdict(
            Some(&f),
            Some(&s),
            Some(&r),
            &rec,
            &RunFaults::default(),
            0.0,
        );
        // How late the responder answered is a timing of this shared
        // machine, not a count: a late responder is its own cause, never
        // the server's, and nothing else may make the cell invalid.
        let others: Vec<_> = v
            .causes
            .iter()
            .filter(|c| **c != Cause::DownstreamBehind)
            .collect();
        assert!(others.is_empty(), "{name}: {:?}", v.reasons);
        if v.causes.is_empty() {
            assert_eq!(v.status, Status::Valid, "{name}: {:?}", v.reasons);
        }
    }
}

#[test]
fn calls_without_a_downstream_fail_counted_and_the_cell_is_invalid() {
    for name in ["threads", "async", "uring"] {
        let server = Server::start(name, &[]);
        let mut config = fleet_config(server.addr, 2, 1);
        config.work = call_plan();
        let f = fleet::run(&config).expect("fleet runs");
        let s = server.stop();
        let sent: u64 = f
            .clients
            .iter()
            .map(|c| c.sent.measured + c.sent.warmup)
            .sum();
        let calls: u64 = f
            .clients
            .iter()
            .map(|c| (c.sent.measured + c.sent.warmup).div_ceil(EVERY))
            .sum();
        assert_eq!(s.packets.measured + s.packets.warmup, sent, "{name}");
        assert_eq!((s.calls.answered, s.calls.failed), (0, calls), "{name}");
        let rec = verdict::reconcile(&f, Some(&s));
        let v = verdict::verdict(Some(&f), Some(&s), None, &rec, &RunFaults::default(), 0.0);
        assert_eq!(v.status, Status::Invalid, "{name}");
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains("downstream calls failed")),
            "{name}: {:?}",
            v.reasons
        );
    }
}
