//! Everything recorded about one cell: the server's and fleet's reports,
//! samples, faults and the machine's stalls, and what is derived from them
//! (reconciliation, figures, verdict), recomputable from the raw parts.

use std::path::PathBuf;

use fleet::fleet_report::FleetReport;
use models::ServerReport;
use serde::{Deserialize, Serialize};

use crate::figures::{self, Figures};
use crate::samples::Samples;
use crate::verdict::{self, Reconciliation, RunFaults, Verdict};

/// One cell of the matrix, one repetition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellKey {
    /// Model name.
    pub model: String,
    /// Workload name.
    pub workload: String,
    /// Fleet size.
    pub clients: u32,
    /// Server workers chosen for this cell (a capacity search tries
    /// several); `None`: the run's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Repetition, from 0.
    pub repeat: u32,
}

impl CellKey {
    /// A file-name-safe id, e.g. `pool-io-50c-r0` or `pool-io-50c-w16-r2`.
    pub fn id(&self) -> String {
        let workers = self.workers.map_or(String::new(), |w| format!("-w{w}"));
        let raw = format!(
            "{}-{}-{}c{workers}-r{}",
            self.model, self.workload, self.clients, self.repeat
        );
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// Everything recorded about one cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellResult {
    /// Which cell.
    pub key: CellKey,
    /// Workers the server used.
    pub workers: Option<usize>,
    /// Wall time of the cell, seconds.
    pub wall_s: f64,
    /// The server's report, if it wrote one.
    pub server: Option<ServerReport>,
    /// The fleet's report, if it wrote one.
    pub fleet: Option<FleetReport>,
    /// Resource samples of both process trees.
    pub samples: Samples,
    /// Sent vs received.
    pub reconciliation: Reconciliation,
    /// Faults seen while running.
    pub faults: RunFaults,
    /// The machine's stalls on the server's and fleet's CPUs meanwhile.
    #[serde(default)]
    pub canary: Option<crate::canary::CanaryReport>,
    /// Call work: what the downstream responder did, its own lateness
    /// apart from the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<models::responder::ResponderReport>,
    /// Standing and reasons.
    pub verdict: Verdict,
    /// Derived figures.
    pub derived: Figures,
    /// Child logs, relative to the working directory.
    pub logs: Vec<PathBuf>,
}

impl CellResult {
    /// Measured frames behind the latency figures (0: no latency known).
    pub fn latency_samples(&self) -> u64 {
        self.server.as_ref().map_or(0, |s| s.latency_ns.count)
    }

    /// Recomputes reconciliation, figures and verdict from the raw reports,
    /// samples and faults.
    pub fn recompute(&mut self) {
        let (fleet, server) = (self.fleet.as_ref(), self.server.as_ref());
        self.reconciliation = fleet
            .map(|f| verdict::reconcile(f, server))
            .unwrap_or_default();
        self.derived = figures::derive(fleet, server, &self.samples);
        self.verdict = verdict::verdict(
            fleet,
            server,
            self.downstream.as_ref(),
            &self.reconciliation,
            &self.faults,
            self.derived.backlog_s,
        );
    }
}
