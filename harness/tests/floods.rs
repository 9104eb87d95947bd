//! Floods: more clients than a server will take. Every model, past
//! `--max-clients` and again out of file descriptors (`prlimit
//! --nofile=64`), keeps its admitted clients valid, turns the others away
//! with a close that the fleet reports as a refusal, counts each refusal
//! on both sides, and is not retried into a storm. The cell's verdict says
//! `server_refused`, never a saturated generator.

mod util;

use std::process::Command;

use harness::fleet::client::ClientState;
use harness::fleet::fleet_report::FleetReport;
use harness::fleet::{self, DEFAULT_CONNECT_TRIES};
use models::ServerReport;
use record::verdict::{self, RunFaults, Status, GENERATOR_SATURATED, SERVER_REFUSED};
use util::{fleet_config, Server};

/// Checks one flooded cell and returns how many clients got in.
fn check(model: &str, fleet: &FleetReport, server: &ServerReport) -> usize {
    let turned_away = server.connections.rejected + server.connections.shed;
    let rec = verdict::reconcile(fleet, Some(server));
    // Refused on every try, as the fleet saw it or (the server closing them
    // after the fleet's check, a busy machine) as reconciliation finds it.
    assert!(
        fleet.refused.len() + rec.late_refused.len() > 0,
        "{model}: nobody was refused: {:?}, server {:?}",
        fleet.verdict.reasons,
        server.connections
    );
    // A refusal the server made after the fleet's check shows as a break
    // of a client the server never heard from (see `verdict::reconcile`).
    let late: u64 = rec
        .late_refused_clients(fleet)
        .map(|c| c.established as u64)
        .sum();
    assert_eq!(
        fleet.refusals + late,
        turned_away,
        "{model}: refusals the fleet saw vs connections the server turned away ({:?})",
        server.connections
    );
    for c in &fleet.clients {
        assert!(
            c.connect_tries <= DEFAULT_CONNECT_TRIES,
            "{model}: client {} tried {} times",
            c.id,
            c.connect_tries
        );
        match c.state {
            ClientState::Refused => {
                assert_eq!(c.sent.measured + c.sent.warmup, 0, "{model}");
                assert_eq!(c.refusals, c.connect_tries, "{model}: client {}", c.id);
            }
            ClientState::Drained => {}
            ClientState::Failed if rec.late_refused.contains(&c.id) => {}
            s => panic!("{model}: client {} ended {s:?}", c.id),
        }
    }
    assert_eq!(
        server.connections.accepted as usize,
        fleet.drained.len(),
        "{model}: every admitted client, and only they, drained"
    );
    assert_eq!(
        (rec.lost, rec.excess, rec.unread),
        (0, 0, 0),
        "{model}: admitted clients lost nothing"
    );
    assert!(rec.mismatched.is_empty(), "{model}: {:?}", rec.mismatched);
    assert_eq!(server.errors.total(), 0, "{model}: protocol errors");
    let v = verdict::verdict(
        Some(fleet),
        Some(server),
        None,
        &rec,
        &RunFaults::default(),
        0.0,
    );
    assert_ne!(v.status, Status::Invalid, "{model}: {:?}", v.reasons);
    assert!(
        v.reasons.iter().any(|r| r.starts_with(SERVER_REFUSED)),
        "{model}: {:?}",
        v.reasons
    );
    assert!(
        !v.reasons.iter().any(|r| r == GENERATOR_SATURATED),
        "{model}: {:?}",
        v.reasons
    );
    fleet.drained.len()
}

#[test]
fn every_model_past_max_clients_refuses_the_rest_and_serves_the_admitted() {
    for &name in &models::names() {
        let server = Server::start(name, &["--max-clients", "5"]);
        let report = fleet::run(&fleet_config(server.addr, 20, 1)).expect("fleet runs");
        let s = server.stop();
        let admitted = check(name, &report, &s);
        assert_eq!(admitted, 5, "{name}: --max-clients 5 admits 5");
        assert_eq!(report.refused.len() + report.failed.len(), 15, "{name}");
        assert_eq!(s.connections.shed, 0, "{name}: nothing shed");
    }
}

#[test]
fn every_model_out_of_descriptors_sheds_the_rest_and_serves_the_admitted() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        util::cannot_run("prlimit (util-linux) is not installed");
        return;
    }
    for &name in &models::names() {
        // One process or thread group, so the 64 descriptors are the
        // whole server's (`threads`' N caps connections: keep its default).
        let one = ["--workers", "1"];
        let extra: &[&str] = if name == "threads" { &[] } else { &one };
        let server = Server::start_under(&["prlimit", "--nofile=64:64"], name, extra);
        // One try per client: a client shed for want of descriptors stays
        // refused. With retries, on a loaded machine the fleet's connects
        // spread out until early clients had finished and every retry got
        // in (percore: 20 shed, 100 admitted, nobody refused), and the
        // flood never reached its point.
        let mut config = fleet_config(server.addr, 100, 1);
        config.connect_tries = 1;
        let report = fleet::run(&config).expect("fleet runs");
        let s = server.stop();
        assert_eq!(s.fd_limit.hard, 64, "{name}: ran under the limit");
        assert!(s.connections.shed > 0, "{name}: nothing shed");
        let admitted = check(name, &report, &s);
        assert!(admitted > 0, "{name}: nobody admitted");
    }
}
