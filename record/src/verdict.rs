//! The cell's rules: the reconciliation of what the fleet sent with what
//! the server received, and the cell's verdict (valid, overloaded, invalid)
//! built from both reports and the fleet's own verdict
//! ([`fleet::on_schedule`]: did the generator keep its schedule?). The harness, `harness
//! report` (which recomputes old runs) and CI all use these functions.

use std::collections::HashMap;

use models::responder::ResponderReport;
use models::ServerReport;
use serde::{Deserialize, Serialize};

use fleet::client::ClientState;
use fleet::fleet_report::{ClientSent, FleetReport, FleetStatus};
use fleet::on_schedule::fleet_status;

use crate::units::fmt_ns;

/// A server that still owed more than this much of the offered load when
/// the load stopped was not keeping up (a tenth of the measured window in
/// cells shorter than a second).
pub const BACKLOG_LIMIT_S: f64 = 0.1;

/// The reason a cell is invalid because the load generator, not the
/// server, could not keep the schedule.
pub const GENERATOR_SATURATED: &str = "generator_saturated";

/// The reason a cell is overloaded because the server turned clients away
/// (`--max-clients` reached or out of file descriptors).
pub const SERVER_REFUSED: &str = "server_refused";

/// The reason a cell whose server turned connections away is overloaded
/// (the server's capacity for connections, not the generator, was the
/// limit): clients refused on every try, else connections refused before
/// a retry got in, as the fleet or the server counted them.
fn refused(f: &FleetReport, server: Option<&ServerReport>, rec: &Reconciliation) -> Option<String> {
    let turned_away = server.map_or(0, |s| s.connections.rejected + s.connections.shed);
    let clients = f.refused.len() + rec.late_refused.len();
    if clients > 0 {
        Some(format!("{SERVER_REFUSED}: {clients} clients"))
    } else if f.refusals > 0 || turned_away > 0 {
        Some(format!(
            "{SERVER_REFUSED}: {} connections (retries got in)",
            f.refusals.max(turned_away)
        ))
    } else {
        None
    }
}

/// Ack mode's findings, each a reason the cell is invalid: a frame of a
/// drained client never acknowledged, acknowledged twice or never sent, an
/// ack record that did not decode, or acks the server dropped. (Frames of
/// undrained clients may be unacknowledged when the server stops: that is
/// the overload already reported, not a fault.)
fn ack_faults(f: &FleetReport, server: Option<&ServerReport>) -> Vec<String> {
    let Some(acks) = &f.acks else {
        return Vec::new();
    };
    let mut faults = Vec::new();
    let unacked: u64 = f
        .clients
        .iter()
        .filter(|c| c.state == ClientState::Drained)
        .filter_map(|c| c.acks.map(|a| a.unacked))
        .sum();
    let c = &acks.counts;
    for (n, what) in [
        (unacked, "frames of drained clients never acknowledged"),
        (c.duplicates, "frames acknowledged twice"),
        (c.unexpected, "acks of frames never sent"),
        (c.bad_records, "ack records that did not decode"),
        (
            server.map_or(0, |s| s.acks.dropped),
            "acks dropped by the server",
        ),
    ] {
        if n > 0 {
            faults.push(format!("acks: {n} {what}"));
        }
    }
    faults
}

/// Per-client comparison of sent and received frames.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Frames sent by drained or failed clients that the server never
    /// counted (a drained client's frames were all read; a failed client's
    /// connection broke).
    pub lost: u64,
    /// Frames the server counted beyond what drained clients sent.
    pub excess: u64,
    /// Frames of undrained clients the server had not read when it stopped.
    pub unread: u64,
    /// Clients whose counts differ (id, sent, received, measured sent, measured received).
    pub mismatched: Vec<ClientMismatch>,
    /// Clients refused late: their connections came up, broke, and the
    /// server never counted a frame of theirs, and it turned away at least
    /// as many connections as the fleet did not see refused. What they
    /// wrote is in `refused_frames`, not `lost`.
    #[serde(default)]
    pub late_refused: Vec<u32>,
    /// Frames written to connections the server turned away.
    #[serde(default)]
    pub refused_frames: u64,
    /// Unsent frames of the clients refused late.
    #[serde(default)]
    pub refused_unsent: u64,
    /// Frames the server saw twice (its own per-client count): totals can
    /// agree while one frame came twice and another never.
    #[serde(default)]
    pub duplicates: u64,
    /// Sequence numbers of drained clients the server never saw, up to the
    /// highest it saw (its own per-client count).
    #[serde(default)]
    pub missing: u64,
    /// Drained clients whose totals agree but whose measured and warm-up
    /// frames were counted differently by the two sides.
    #[serde(default)]
    pub misclassified: Vec<u32>,
    /// Client ids the server counted frames of that the fleet never ran.
    #[serde(default)]
    pub unknown_clients: Vec<u32>,
}

impl Reconciliation {
    /// The lines of `fleet`'s clients found refused late.
    pub fn late_refused_clients<'a>(
        &'a self,
        fleet: &'a FleetReport,
    ) -> impl Iterator<Item = &'a ClientSent> + 'a {
        fleet
            .clients
            .iter()
            .filter(|c| self.late_refused.contains(&c.id))
    }
}

/// One client whose counts differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMismatch {
    /// Client id.
    pub id: u32,
    /// Whether the client was drained.
    pub drained: bool,
    /// Frames sent (warm-up included).
    pub sent: u64,
    /// Frames received (warm-up included).
    pub received: u64,
    /// Measured frames sent.
    pub sent_measured: u64,
    /// Measured frames received.
    pub received_measured: u64,
}

/// Compares every client of the fleet with the server's counts.
pub fn reconcile(fleet: &FleetReport, server: Option<&ServerReport>) -> Reconciliation {
    let received: HashMap<u32, &models::server_report::ClientReport> = server
        .map(|s| s.clients.iter().map(|c| (c.id, c)).collect())
        .unwrap_or_default();
    let mut r = Reconciliation {
        late_refused: late_refused(fleet, server, &received),
        ..Reconciliation::default()
    };
    for c in &fleet.clients {
        if r.late_refused.contains(&c.id) {
            r.refused_frames += c.sent.measured + c.sent.warmup;
            r.refused_unsent += c.unsent;
            continue;
        }
        let sent = c.sent.measured + c.sent.warmup;
        let line = received.get(&c.id);
        let (got, got_measured) = line.map_or((0, 0), |l| (l.received, l.measured));
        let drained = c.state == ClientState::Drained;
        let settled = drained || matches!(c.state, ClientState::Failed | ClientState::Refused);
        if got != sent || got_measured != c.sent.measured {
            r.mismatched.push(ClientMismatch {
                id: c.id,
                drained,
                sent,
                received: got,
                sent_measured: c.sent.measured,
                received_measured: got_measured,
            });
            if drained && got == sent {
                r.misclassified.push(c.id);
            }
        }
        if let Some(l) = line {
            r.duplicates += l.duplicates;
            if drained {
                r.missing += l.missing;
            }
        }
        if settled {
            r.lost += sent.saturating_sub(got);
            r.excess += got.saturating_sub(sent);
        } else {
            r.unread += sent.saturating_sub(got);
        }
    }
    r.unknown_clients = received
        .keys()
        .copied()
        .filter(|id| !fleet.clients.iter().any(|c| c.id == *id))
        .collect();
    r.unknown_clients.sort_unstable();
    r
}

/// Clients refused late. A server may close a connection it turns away
/// after the fleet's refusal check: the client then saw a break. Such
/// clients are refused, not lost, when the server never heard from them
/// and its own count of turned-away connections covers every connection
/// they had.
fn late_refused(
    fleet: &FleetReport,
    server: Option<&ServerReport>,
    received: &HashMap<u32, &models::server_report::ClientReport>,
) -> Vec<u32> {
    let turned_away = server.map_or(0, |s| s.connections.rejected + s.connections.shed);
    let silent: Vec<&ClientSent> = fleet
        .clients
        .iter()
        .filter(|c| c.state == ClientState::Failed && !received.contains_key(&c.id))
        .collect();
    let unexplained = turned_away.saturating_sub(fleet.refusals);
    let late: u64 = silent.iter().map(|c| c.established as u64).sum();
    if !silent.is_empty() && late <= unexplained {
        silent.iter().map(|c| c.id).collect()
    } else {
        Vec::new()
    }
}

/// What a finding says about the cell, in the order a probe is classified
/// by: the first cause present decides (a crash outranks the loss it
/// causes, a loss the overload around it, and only a cell whose server
/// did nothing wrong can be the generator's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The server crashed, exited with a failure, hung, wrote no report or
    /// was killed by fault injection.
    ServerFault,
    /// Frames lost, duplicated, miscounted or never acknowledged, protocol
    /// errors, broken connections.
    Loss,
    /// The server could not keep up: backlog, undrained clients,
    /// backpressure, refused connections.
    Overload,
    /// The downstream responder of call work answered late on its own
    /// account: says nothing of the server.
    DownstreamBehind,
    /// The fleet could not keep its schedule on its own account.
    GeneratorBehind,
    /// The fleet itself failed (timed out, exited with a failure, wrote no
    /// report): says nothing of the server.
    FleetFault,
}

impl Cause {
    /// Whether the finding makes the cell invalid (else overloaded).
    fn invalid(self) -> bool {
        self != Cause::Overload
    }
}

/// The cell's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every check passed: the numbers can be trusted.
    Valid,
    /// A real result, but the server could not keep up with the load.
    Overloaded,
    /// Loss, errors, a crash or a late generator: do not use the numbers.
    Invalid,
}

/// Status plus every reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Overall standing.
    pub status: Status,
    /// Why, one entry per finding.
    pub reasons: Vec<String>,
    /// The cause of each reason, in the same order.
    #[serde(default)]
    pub causes: Vec<Cause>,
}

impl Verdict {
    /// The first cause in [`Cause`]'s order (`None`: nothing found).
    pub fn cause(&self) -> Option<Cause> {
        self.causes.iter().copied().min()
    }
}

/// What went wrong while running the cell, beyond the reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunFaults {
    /// The server exited before it was asked to.
    pub server_crashed: bool,
    /// The server did not exit within its grace period after SIGTERM.
    pub server_hung: bool,
    /// The fleet exceeded its time limit and was killed.
    pub fleet_timeout: bool,
    /// The server exited with a failure status when asked to stop.
    #[serde(default)]
    pub server_exit: Option<String>,
    /// The fleet exited with a failure status.
    #[serde(default)]
    pub fleet_exit: Option<String>,
    /// Injected faults (the server or one of its children killed), verbatim.
    pub other: Vec<String>,
}

/// The findings of a cell, each a reason with its cause.
#[derive(Default)]
struct Findings(Vec<(Cause, String)>);

impl Findings {
    fn add(&mut self, cause: Cause, reason: impl Into<String>) {
        self.0.push((cause, reason.into()));
    }

    fn count(&mut self, cause: Cause, n: u64, what: &str) {
        if n > 0 {
            self.add(cause, format!("{n} {what}"));
        }
    }

    /// Invalid findings first, then the overloads, in the order found.
    fn verdict(self) -> Verdict {
        let (mut bad, over): (Vec<_>, Vec<_>) = self.0.into_iter().partition(|(c, _)| c.invalid());
        let status = if !bad.is_empty() {
            Status::Invalid
        } else if !over.is_empty() {
            Status::Overloaded
        } else {
            Status::Valid
        };
        bad.extend(over);
        let (causes, reasons) = bad.into_iter().unzip();
        Verdict {
            status,
            reasons,
            causes,
        }
    }
}

/// The lateness p99 past which the downstream responder of call work is
/// behind on its own account (it answers a call this much later than
/// asked): a call made twice its 1 ms is not the model's doing.
pub const DOWNSTREAM_LATE_NS: u64 = 1_000_000;

/// Why the downstream responder was behind, if it was.
/// How the reason for a late responder starts.
pub const DOWNSTREAM_LATE: &str = "downstream late";

fn downstream_late(d: &ResponderReport) -> Option<String> {
    let p99 = d.lateness_ns.p99;
    (p99 > DOWNSTREAM_LATE_NS).then(|| {
        format!(
            "{DOWNSTREAM_LATE}: the responder answered {} past the delay asked at p99 (over {}), so the calls' time is its own, not the server's",
            fmt_ns(p99),
            fmt_ns(DOWNSTREAM_LATE_NS)
        )
    })
}

/// Decides the cell's verdict from the reports (the fleet's, the
/// server's, and the downstream responder's for call work), the run's
/// faults and the server's backlog when the load stopped (seconds of
/// offered load it still owed; see `figures`).
pub fn verdict(
    fleet: Option<&FleetReport>,
    server: Option<&ServerReport>,
    downstream: Option<&ResponderReport>,
    rec: &Reconciliation,
    faults: &RunFaults,
    backlog_s: f64,
) -> Verdict {
    let mut found = Findings::default();
    run_faults(&mut found, faults, server.is_none());
    if let Some(f) = fleet {
        fleet_findings(&mut found, f, server, rec, backlog_s);
    } else {
        found.add(Cause::FleetFault, "no fleet report");
    }
    if let Some(s) = server {
        let errors = s.errors.total();
        if errors > 0 {
            found.add(Cause::Loss, format!("protocol errors {errors}"));
        }
        found.count(
            Cause::ServerFault,
            s.calls.failed,
            "downstream calls failed (no reply, or not the one asked for)",
        );
    }
    if let Some(why) = downstream.and_then(downstream_late) {
        found.add(Cause::DownstreamBehind, why);
    }
    found.verdict()
}

/// What went wrong running the cell.
fn run_faults(found: &mut Findings, faults: &RunFaults, no_server_report: bool) {
    if faults.server_crashed {
        found.add(Cause::ServerFault, "server crashed");
    }
    if faults.server_hung {
        found.add(Cause::ServerFault, "server did not exit after SIGTERM");
    }
    if let Some(status) = &faults.server_exit {
        found.add(Cause::ServerFault, format!("server exited with {status}"));
    }
    for other in &faults.other {
        found.add(Cause::ServerFault, other.clone());
    }
    if no_server_report {
        found.add(Cause::ServerFault, "no server report");
    }
    if faults.fleet_timeout {
        found.add(
            Cause::FleetFault,
            "timeout: the fleet did not finish in time",
        );
    }
    if let Some(status) = &faults.fleet_exit {
        found.add(Cause::FleetFault, format!("fleet exited with {status}"));
    }
}

/// What the fleet's report and the reconciliation say.
fn fleet_findings(
    found: &mut Findings,
    f: &FleetReport,
    server: Option<&ServerReport>,
    rec: &Reconciliation,
    backlog_s: f64,
) {
    if rec.lost > 0 {
        found.add(Cause::Loss, format!("loss {}", rec.lost));
    }
    // The load was not the load named: says nothing of the server.
    if let Some(why) = f.arrivals.as_ref().and_then(|a| a.reason()) {
        found.add(Cause::FleetFault, why);
    }
    if rec.excess > 0 {
        found.add(
            Cause::Loss,
            format!("server counted {} frames more than were sent", rec.excess),
        );
    }
    found.count(Cause::Loss, rec.duplicates, "frames the server saw twice");
    found.count(
        Cause::Loss,
        rec.missing,
        "sequence numbers of drained clients the server never saw",
    );
    found.count(
        Cause::Loss,
        rec.misclassified.len() as u64,
        "drained clients whose measured and warm-up frames the two sides counted differently",
    );
    found.count(
        Cause::Loss,
        rec.unknown_clients.len() as u64,
        "clients the server counted that the fleet never ran",
    );
    // Short cells (a quick capacity probe) cannot build 100 ms of
    // backlog; a tenth of the window is as telling there.
    let backlog = backlog_s > BACKLOG_LIMIT_S.min(0.1 * f.measured_window_s);
    if backlog && f.undrained.is_empty() {
        found.add(
            Cause::Overload,
            format!(
                "backlog: {:.0} ms of load unprocessed when the load stopped",
                backlog_s * 1e3
            ),
        );
    }
    let server_behind = backlog || !f.undrained.is_empty();
    match fleet_status(f, rec.refused_unsent) {
        FleetStatus::Ok => {}
        // Kernel-side queueing of an overloaded server can slow the
        // sender without any would-block: the server is the cause.
        FleetStatus::GeneratorSaturated if server_behind => found.add(
            Cause::Overload,
            "fleet fell behind while the server was overloaded",
        ),
        FleetStatus::GeneratorSaturated => found.add(Cause::GeneratorBehind, GENERATOR_SATURATED),
        FleetStatus::ServerBackpressure => found.add(Cause::Overload, "server_backpressure"),
    }
    let failed = f.failed.len() - rec.late_refused.len();
    found.count(Cause::Loss, failed as u64, "clients lost their connection");
    // A client refused late reconnected only to be refused again.
    let excused: u64 = rec
        .late_refused_clients(f)
        .map(|c| c.reconnects as u64)
        .sum();
    found.count(
        Cause::Loss,
        f.reconnects.saturating_sub(excused),
        "reconnects",
    );
    if !f.undrained.is_empty() {
        found.add(
            Cause::Overload,
            format!(
                "{} clients undrained, {} frames unread",
                f.undrained.len(),
                rec.unread
            ),
        );
    }
    if let Some(reason) = refused(f, server, rec) {
        found.add(Cause::Overload, reason);
    }
    for fault in ack_faults(f, server) {
        found.add(Cause::Loss, fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunFile;

    /// A real valid cell's reports (from the checked-in fixture run).
    fn baseline() -> (FleetReport, ServerReport) {
        let run: RunFile =
            serde_json::from_str(include_str!("../tests/fixtures/run.json")).expect("fixture");
        let cell = run
            .cells
            .iter()
            .find(|c| c.key.model == "async" && c.key.workload == "none" && c.key.clients == 10)
            .expect("async none 10 in the fixture");
        (cell.fleet.clone().unwrap(), cell.server.clone().unwrap())
    }

    type Mutate = fn(&mut FleetReport, &mut ServerReport, &mut RunFaults);

    /// Turns the baseline into an ack-mode run where every frame sent was
    /// acknowledged exactly once.
    fn ack_mode(f: &mut FleetReport) {
        use fleet::acks::AckCounts;
        for c in &mut f.clients {
            c.acks = Some(AckCounts {
                acked: c.sent.measured + c.sent.warmup,
                ..AckCounts::default()
            });
        }
        f.acks = fleet::fleet_report::AckReport::of(&f.clients, f.send_lag_ns.clone());
    }

    /// Changes client `i`'s ack counts, and the fleet's sums with them.
    fn with_acks(f: &mut FleetReport, i: usize, change: fn(&mut fleet::acks::AckCounts)) {
        change(f.clients[i].acks.as_mut().expect("ack mode"));
        let round_trip = f.acks.take().expect("ack mode").round_trip_ns;
        f.acks = fleet::fleet_report::AckReport::of(&f.clients, round_trip);
    }

    fn lag(f: &mut FleetReport) {
        f.send_lag_ns.p99 = f.config.max_lag.as_nanos() as u64 + 1;
    }

    #[test]
    fn the_ledger_is_exact_per_client() {
        // (case, change, a reason that must appear): every one invalid,
        // though the per-client totals still agree in each.
        let table: Vec<(&str, Mutate, &str)> = vec![
            (
                "one frame twice, another never",
                |_, s, _| {
                    s.clients[0].duplicates = 1;
                    s.clients[0].missing = 1;
                },
                "1 frames the server saw twice",
            ),
            (
                "a gap",
                |_, s, _| s.clients[1].missing = 3,
                "3 sequence numbers of drained clients the server never saw",
            ),
            (
                "measured counted as warm-up",
                |_, s, _| s.clients[2].measured -= 1,
                "1 drained clients whose measured and warm-up frames",
            ),
            (
                "a client the fleet never ran",
                |_, s, _| {
                    let mut ghost = s.clients[0].clone();
                    ghost.id = 999_999;
                    s.clients.push(ghost);
                },
                "1 clients the server counted that the fleet never ran",
            ),
        ];
        for (name, mutate, reason) in table {
            let (mut f, mut s) = baseline();
            let mut faults = RunFaults::default();
            mutate(&mut f, &mut s, &mut faults);
            let rec = reconcile(&f, Some(&s));
            assert_eq!((rec.lost, rec.excess), (0, 0), "{name}: totals agree");
            let v = verdict(Some(&f), Some(&s), None, &rec, &faults, 0.0);
            assert_eq!(v.status, Status::Invalid, "{name}: {v:?}");
            assert_eq!(v.cause(), Some(Cause::Loss), "{name}: {v:?}");
            assert!(
                v.reasons.iter().any(|r| r.contains(reason)),
                "{name}: {v:?}"
            );
        }
    }

    #[test]
    fn the_first_cause_decides() {
        use Cause::*;
        // (case, change, backlog seconds, first cause)
        let table: Vec<(&str, Mutate, f64, Option<Cause>)> = vec![
            ("all well", |_, _, _| {}, 0.0, None),
            (
                "late generator",
                |f, _, _| lag(f),
                0.0,
                Some(GeneratorBehind),
            ),
            (
                "late generator, server behind",
                |f, _, _| lag(f),
                0.5,
                Some(Overload),
            ),
            (
                "a crash and the loss it causes",
                |f, s, x| {
                    lag(f);
                    x.server_crashed = true;
                    s.clients[0].received -= 5;
                },
                0.5,
                Some(ServerFault),
            ),
            (
                "a crash read as a late generator",
                |f, _, x| {
                    lag(f);
                    x.server_crashed = true;
                },
                0.0,
                Some(ServerFault),
            ),
            (
                "loss in an overload",
                |_, s, _| s.clients[0].received -= 5,
                0.5,
                Some(Loss),
            ),
            (
                "server exit status",
                |_, _, x| x.server_exit = Some("exit status: 1".into()),
                0.0,
                Some(ServerFault),
            ),
            (
                "fleet exit status",
                |_, _, x| x.fleet_exit = Some("exit status: 1".into()),
                0.0,
                Some(FleetFault),
            ),
            (
                "fleet timeout",
                |_, _, x| x.fleet_timeout = true,
                0.0,
                Some(FleetFault),
            ),
            ("backlog", |_, _, _| {}, 0.5, Some(Overload)),
        ];
        for (name, mutate, backlog_s, want) in table {
            let (mut f, mut s) = baseline();
            let mut faults = RunFaults::default();
            mutate(&mut f, &mut s, &mut faults);
            let rec = reconcile(&f, Some(&s));
            let v = verdict(Some(&f), Some(&s), None, &rec, &faults, backlog_s);
            assert_eq!(v.cause(), want, "{name}: {v:?}");
            assert_eq!(v.causes.len(), v.reasons.len(), "{name}");
        }
    }

    #[test]
    #[allow(clippy::too_many_lines)] // a table test: one row per verdict rule
    fn cell_verdict_table() {
        use Status::*;
        // (case, change, backlog seconds, status, a reason that must appear)
        let table: Vec<(&str, Mutate, f64, Status, &str)> = vec![
            ("all well", |_, _, _| {}, 0.0, Valid, ""),
            ("small backlog", |_, _, _| {}, 0.02, Valid, ""),
            (
                "a tenth of a short window",
                |f, _, _| f.measured_window_s = 0.25,
                0.03,
                Overloaded,
                "backlog: 30 ms",
            ),
            (
                "server crashed",
                |_, _, x| x.server_crashed = true,
                0.0,
                Invalid,
                "server crashed",
            ),
            (
                "server hung",
                |_, _, x| x.server_hung = true,
                0.0,
                Invalid,
                "did not exit",
            ),
            (
                "fleet timeout",
                |_, _, x| x.fleet_timeout = true,
                0.0,
                Invalid,
                "timeout",
            ),
            (
                "other fault",
                |_, _, x| x.other.push("odd".into()),
                0.0,
                Invalid,
                "odd",
            ),
            (
                "failed downstream calls",
                |_, s, _| s.calls.failed = 3,
                0.0,
                Invalid,
                "3 downstream calls failed",
            ),
            (
                "loss",
                |_, s, _| s.clients[0].received -= 5,
                0.0,
                Invalid,
                "loss 5",
            ),
            (
                "excess",
                |_, s, _| s.clients[0].received += 3,
                0.0,
                Invalid,
                "3 frames more",
            ),
            (
                "protocol error",
                |_, s, _| s.errors.bad_magic = 1,
                0.0,
                Invalid,
                "protocol errors 1",
            ),
            (
                "failed client",
                |f, _, _| f.failed.push(1),
                0.0,
                Invalid,
                "lost their connection",
            ),
            (
                "reconnects",
                |f, _, _| f.reconnects = 2,
                0.0,
                Invalid,
                "2 reconnects",
            ),
            (
                "generator saturated",
                |f, _, _| lag(f),
                0.0,
                Invalid,
                "generator_saturated",
            ),
            (
                "generator behind an overloaded server",
                |f, _, _| lag(f),
                0.5,
                Overloaded,
                "fleet fell behind while the server was overloaded",
            ),
            (
                "server backpressure",
                |f, _, _| {
                    lag(f);
                    f.would_block_writes = 4;
                },
                0.0,
                Overloaded,
                "server_backpressure",
            ),
            (
                "undrained client",
                |f, _, _| {
                    let c = &mut f.clients[0];
                    c.state = ClientState::Undrained;
                    f.undrained.push(c.id);
                    f.drained.retain(|&d| d != c.id);
                },
                0.0,
                Overloaded,
                "1 clients undrained",
            ),
            ("backlog", |_, _, _| {}, 0.2, Overloaded, "backlog: 200 ms"),
            (
                "clients refused on every try",
                |f, s, _| {
                    f.refused = vec![7, 8, 9];
                    f.refusals = 15;
                    s.connections.rejected = 15;
                },
                0.0,
                Overloaded,
                "server_refused: 3 clients",
            ),
            (
                "refused once, then admitted",
                |f, s, _| {
                    f.refusals = 2;
                    s.connections.rejected = 2;
                },
                0.0,
                Overloaded,
                "server_refused: 2 connections",
            ),
            (
                "connections shed for want of descriptors",
                |_, s, _| s.connections.shed = 4,
                0.0,
                Overloaded,
                "server_refused: 4 connections",
            ),
            (
                "refused clients are not a late generator",
                |f, _, _| {
                    f.refused = vec![7];
                    f.refusals = 5;
                },
                0.0,
                Overloaded,
                "server_refused: 1 clients",
            ),
            (
                "ack mode, every frame acked once",
                |f, _, _| ack_mode(f),
                0.0,
                Valid,
                "",
            ),
            (
                "ack mode, a drained client's frame never acked",
                |f, _, _| {
                    ack_mode(f);
                    with_acks(f, 0, |a| {
                        a.acked -= 1;
                        a.unacked = 1
                    });
                },
                0.0,
                Invalid,
                "acks: 1 frames of drained clients never acknowledged",
            ),
            (
                "ack mode, an undrained client's frames unacked: overload only",
                |f, _, _| {
                    ack_mode(f);
                    with_acks(f, 0, |a| {
                        a.acked -= 9;
                        a.unacked = 9
                    });
                    let c = &mut f.clients[0];
                    c.state = ClientState::Undrained;
                    f.undrained.push(c.id);
                    f.drained.retain(|&d| d != c.id);
                },
                0.0,
                Overloaded,
                "1 clients undrained",
            ),
            (
                "ack mode, a duplicate ack",
                |f, _, _| {
                    ack_mode(f);
                    with_acks(f, 1, |a| a.duplicates = 2);
                },
                0.0,
                Invalid,
                "acks: 2 frames acknowledged twice",
            ),
            (
                "ack mode, an ack of a frame never sent",
                |f, _, _| {
                    ack_mode(f);
                    with_acks(f, 1, |a| a.unexpected = 1);
                },
                0.0,
                Invalid,
                "acks: 1 acks of frames never sent",
            ),
            (
                "ack mode, a bad record",
                |f, _, _| {
                    ack_mode(f);
                    with_acks(f, 1, |a| a.bad_records = 1);
                },
                0.0,
                Invalid,
                "did not decode",
            ),
            (
                "ack mode, the server dropped acks",
                |f, s, _| {
                    ack_mode(f);
                    s.acks.dropped = 3;
                },
                0.0,
                Invalid,
                "acks: 3 acks dropped by the server",
            ),
            (
                "invalid outranks overloaded",
                |_, s, _| s.clients[0].received -= 1,
                0.2,
                Invalid,
                "backlog",
            ),
        ];
        for (name, mutate, backlog_s, want, reason) in table {
            let (mut f, mut s) = baseline();
            let mut faults = RunFaults::default();
            mutate(&mut f, &mut s, &mut faults);
            let rec = reconcile(&f, Some(&s));
            let v = verdict(Some(&f), Some(&s), None, &rec, &faults, backlog_s);
            assert_eq!(v.status, want, "{name}: {v:?}");
            if want == Valid {
                assert!(v.reasons.is_empty(), "{name}: {v:?}");
            } else {
                assert!(
                    v.reasons.iter().any(|r| r.contains(reason)),
                    "{name}: no reason with {reason:?} in {:?}",
                    v.reasons
                );
            }
        }
        // Missing reports.
        let (f, s) = baseline();
        let none = verdict(
            None,
            Some(&s),
            None,
            &Reconciliation::default(),
            &RunFaults::default(),
            0.0,
        );
        assert_eq!(none.status, Invalid);
        assert!(none.reasons.contains(&"no fleet report".to_string()));
        let rec = reconcile(&f, None);
        let none = verdict(Some(&f), None, None, &rec, &RunFaults::default(), 0.0);
        assert_eq!(none.status, Invalid);
        assert!(none.reasons.contains(&"no server report".to_string()));
    }

    #[test]
    fn a_late_responder_is_its_own_finding() {
        // (responder lateness p99 ns, found late)
        let table = [
            (200_000, false),
            (DOWNSTREAM_LATE_NS, false),
            (DOWNSTREAM_LATE_NS + 1, true),
            (30_000_000, true),
        ];
        for (p99, late) in table {
            let (f, s) = baseline();
            let rec = reconcile(&f, Some(&s));
            let mut d = ResponderReport::default();
            d.lateness_ns.p99 = p99;
            let v = verdict(
                Some(&f),
                Some(&s),
                Some(&d),
                &rec,
                &RunFaults::default(),
                0.0,
            );
            let want = if late { Status::Invalid } else { Status::Valid };
            assert_eq!(v.status, want, "p99 {p99}: {v:?}");
            assert_eq!(
                v.causes == [Cause::DownstreamBehind],
                late,
                "p99 {p99}: {v:?}"
            );
        }
    }

    #[test]
    fn undrained_frames_are_unread_not_lost() {
        let (mut f, mut s) = baseline();
        f.clients[0].state = ClientState::Undrained;
        s.clients
            .iter_mut()
            .find(|c| c.id == f.clients[0].id)
            .unwrap()
            .received -= 7;
        let r = reconcile(&f, Some(&s));
        assert_eq!((r.lost, r.unread, r.excess), (0, 7, 0));
        assert_eq!(r.mismatched.len(), 1);
    }

    #[test]
    fn a_break_the_server_accounts_for_is_a_late_refusal_not_loss() {
        // (case, connections the fleet saw refused, server's turned-away
        //  count, the silent client's broken connections, refused late?)
        let table = [
            ("one unexplained rejection covers one break", 0, 1, 1, true),
            ("shed connections count too", 2, 3, 1, true),
            ("no rejection: a real loss", 0, 0, 1, false),
            (
                "fleet refusals already explain every rejection",
                3,
                3,
                1,
                false,
            ),
            ("two breaks, one rejection to spare", 0, 1, 2, false),
            ("two breaks (a reconnect), both covered", 1, 3, 2, true),
        ];
        for (name, fleet_refusals, turned_away, breaks, late) in table {
            let (mut f, mut s) = baseline();
            let id = f.clients[0].id;
            let c = &mut f.clients[0];
            c.state = ClientState::Failed;
            c.established = breaks;
            c.reconnects = breaks - 1;
            c.unsent = 11;
            let sent = c.sent.measured + c.sent.warmup;
            f.drained.retain(|&d| d != id);
            f.failed.push(id);
            f.unsent = 11;
            f.reconnects = breaks as u64 - 1;
            f.refusals = fleet_refusals;
            s.clients.retain(|c| c.id != id);
            s.connections.shed = turned_away;
            let rec = reconcile(&f, Some(&s));
            let v = verdict(Some(&f), Some(&s), None, &rec, &RunFaults::default(), 0.0);
            if late {
                assert_eq!(rec.late_refused, vec![id], "{name}");
                assert_eq!((rec.lost, rec.refused_frames), (0, sent), "{name}");
                assert_eq!(v.status, Status::Overloaded, "{name}: {:?}", v.reasons);
                assert!(
                    v.reasons.iter().any(|r| r == "server_refused: 1 clients"),
                    "{name}"
                );
            } else {
                assert!(rec.late_refused.is_empty(), "{name}");
                assert_eq!(rec.lost, sent, "{name}");
                assert_eq!(v.status, Status::Invalid, "{name}: {:?}", v.reasons);
            }
        }
    }
}
