//! Connection churn (`--reconnect-every`): every model serves clients that
//! close their connection after every 50 frames and go on on a fresh one.
//! The ledger stays exact across connections: per client, the server read
//! every frame the fleet sent, once, none missing; it accepted and closed
//! one connection per 50 frames; the reconnects are planned, not breaks,
//! and the cell is valid.

mod util;

use harness::fleet::{self, client::ClientState};
use record::verdict::{self, RunFaults, Status};
use util::{fleet_config, Server};

/// Frames per connection.
const EVERY: u64 = 50;

#[test]
fn every_model_keeps_the_ledger_exact_across_planned_reconnects() {
    for &name in &models::names() {
        let server = Server::start(name, &[]);
        let mut config = fleet_config(server.addr, 4, 1);
        config.reconnect_every = Some(EVERY);
        let f = fleet::run(&config).expect("fleet runs");
        let s = server.stop();
        let mut connections = 0;
        for c in &f.clients {
            let sent = c.sent.measured + c.sent.warmup;
            assert_eq!(c.state, ClientState::Drained, "{name}: client {}", c.id);
            assert_eq!(c.unsent, 0, "{name}: client {}", c.id);
            assert_eq!(
                c.planned_reconnects as u64,
                sent.div_ceil(EVERY) - 1,
                "{name}: client {} sent {sent}",
                c.id
            );
            assert!(sent >= 400, "{name}: client {} sent {sent}", c.id);
            let line = s.clients.iter().find(|l| l.id == c.id);
            let line = line.unwrap_or_else(|| panic!("{name}: client {} unknown", c.id));
            assert_eq!(
                (line.received, line.measured, line.missing, line.duplicates),
                (sent, c.sent.measured, 0, 0),
                "{name}: client {}",
                c.id
            );
            connections += c.planned_reconnects as u64 + 1;
        }
        assert_eq!(f.reconnects, 0, "{name}: {:?}", f.verdict);
        assert_eq!(
            (s.connections.accepted, s.connections.closed),
            (connections, connections),
            "{name}: {:?}",
            s.connections
        );
        assert_eq!(s.errors.total(), 0, "{name}: protocol errors");
        let rec = verdict::reconcile(&f, Some(&s));
        assert_eq!((rec.lost, rec.excess, rec.unread), (0, 0, 0), "{name}");
        let v = verdict::verdict(Some(&f), Some(&s), None, &rec, &RunFaults::default(), 0.0);
        assert_eq!(v.status, Status::Valid, "{name}: {:?}", v.reasons);
    }
}
