//! The environment block of a run: machine, CPUs, kernel, toolchain, commit
//! and clock source, so a result can be reproduced and compared honestly.

use std::process::Command;

use serde::{Deserialize, Serialize};

use procfs::Current;

use crate::cpus;

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
}

impl Environment {
    /// Reads the environment now.
    pub fn capture(server_cpus: &[usize], fleet_cpus: &[usize]) -> Self {
        let cpuinfo = procfs::CpuInfo::current().ok();
        Environment {
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            cpu_model: cpuinfo
                .as_ref()
                .and_then(|c| c.model_name(0).map(str::to_string))
                .unwrap_or_else(|| "unknown".into()),
            logical_cpus: cpuinfo.as_ref().map_or(0, |c| c.num_cores()),
            allowed_cpus: cpus::allowed(),
            server_cpus: server_cpus.to_vec(),
            fleet_cpus: fleet_cpus.to_vec(),
            memory_kib: procfs::Meminfo::current().map_or(0, |m| m.mem_total / 1024),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            rustc: env!("HARNESS_RUSTC_VERSION").to_string(),
            git_commit: git(&["rev-parse", "HEAD"]),
            git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty()),
            clock_source: std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
