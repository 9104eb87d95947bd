//! The environment block of a run: machine, CPUs, kernel, toolchain, commit
//! and clock source, so a result can be reproduced and compared honestly
//! (read by the harness when a run starts).

use serde::{Deserialize, Serialize};

/// Where and with what a run was made.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Environment {
    /// Host name.
    pub hostname: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs in the machine.
    pub logical_cpus: usize,
    /// CPUs this process may use.
    pub allowed_cpus: Vec<usize>,
    /// CPUs the server was pinned to.
    pub server_cpus: Vec<usize>,
    /// CPUs the fleet was pinned to.
    pub fleet_cpus: Vec<usize>,
    /// Total memory, KiB.
    pub memory_kib: u64,
    /// Kernel release.
    pub kernel: String,
    /// rustc that built the harness.
    pub rustc: String,
    /// Git commit of the working tree, if any.
    pub git_commit: Option<String>,
    /// Uncommitted changes present.
    pub git_dirty: Option<bool>,
    /// Kernel clock source.
    pub clock_source: String,
    /// harness version.
    pub harness_version: String,
    /// The harness binary that ran: a CRC-32 of the executable and its
    /// size, so caches measured by another build are never reused.
    #[serde(default)]
    pub build: String,
    /// SMT siblings of each server and fleet CPU (`thread_siblings_list`).
    #[serde(default)]
    pub cpu_siblings: Vec<(usize, String)>,
    /// A server CPU and a fleet CPU are SMT siblings of one core: they
    /// share execution units, so the fleet's load slows the server.
    #[serde(default)]
    pub server_fleet_share_a_core: bool,
    /// cpufreq governor of CPU 0 (`none` without cpufreq, as on most VMs).
    #[serde(default)]
    pub governor: String,
    /// `net.ipv4.tcp_rmem`.
    #[serde(default)]
    pub tcp_rmem: String,
    /// `net.ipv4.tcp_wmem`.
    #[serde(default)]
    pub tcp_wmem: String,
    /// Transparent huge pages setting.
    #[serde(default)]
    pub transparent_hugepages: String,
}
