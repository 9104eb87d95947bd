//! What one probe says of the server ([`Outcome`]) and what stopped a
//! search from going higher ([`LimitedBy`]).

use serde::{Deserialize, Serialize};

/// What one probe (a fresh, warmed-up cell at some fleet size) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Valid, no loss, within the SLO.
    Pass,
    /// The server missed the SLO, fell behind or lost frames.
    Fail,
    /// The fleet could not keep its schedule: says nothing of the server.
    Generator,
    /// The server crashed, hung, exited or wrote no report.
    ServerFailed,
    /// The machine stalled during every try of the probe (the canary saw
    /// it): says nothing of the server.
    Machine,
}

impl Outcome {
    /// Its name as run.json spells it: `pass`, `fail`, `server_failed`,
    /// `generator`, `machine`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::ServerFailed => "server_failed",
            Outcome::Generator => "generator",
            Outcome::Machine => "machine",
        }
    }

    /// A failure on the server's account.
    pub fn servers(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::ServerFailed)
    }

    /// Says nothing of the server: the generator or the machine.
    pub fn not_the_servers(self) -> bool {
        matches!(self, Outcome::Generator | Outcome::Machine)
    }
}

/// What stopped the search from going higher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitedBy {
    /// The server failed the next step up.
    Server,
    /// The fleet could not pace the next step up (or, for call work, the
    /// downstream responder answered late: `CapacityRecord::limit_label`
    /// says which), or the search reached the most clients the fleet paces
    /// on this machine.
    Generator,
    /// The server crashed (or hung, or exited) at the next step up.
    ServerFailed,
    /// The machine stalled at every try of the next step up: the SLO is
    /// tighter than this machine's own noise there.
    Machine,
}

impl LimitedBy {
    /// The server's own limit (the interval is closed above).
    pub fn servers(self) -> bool {
        matches!(self, LimitedBy::Server | LimitedBy::ServerFailed)
    }

    /// What the tables say: `server`, `generator (...)`.
    pub fn label(self) -> &'static str {
        match self {
            LimitedBy::Server => "server",
            LimitedBy::ServerFailed => "server failed (crashed, hung or exited)",
            LimitedBy::Generator => {
                "generator (at least this many; the fleet cannot offer more here)"
            }
            LimitedBy::Machine => "machine noise (the machine stalled at every try above)",
        }
    }

    /// What stops a search at a probe with this outcome.
    pub fn of(outcome: Outcome) -> LimitedBy {
        match outcome {
            Outcome::ServerFailed => LimitedBy::ServerFailed,
            Outcome::Machine => LimitedBy::Machine,
            Outcome::Generator => LimitedBy::Generator,
            Outcome::Pass | Outcome::Fail => LimitedBy::Server,
        }
    }
}
