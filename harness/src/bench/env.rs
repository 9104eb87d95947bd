//! Reads the environment block of a run ([`Environment`]): machine, CPUs,
//! kernel, toolchain, commit and clock source.

use std::process::Command;

use procfs::Current;
use record::environment::Environment;
use record::kernel_calibration::Machine;

use crate::cpus;

/// Reads the environment now.
pub fn capture(server_cpus: &[usize], fleet_cpus: &[usize]) -> Environment {
    let cpuinfo = procfs::CpuInfo::current().ok();
    let mut used: Vec<usize> = server_cpus.iter().chain(fleet_cpus).copied().collect();
    used.sort_unstable();
    used.dedup();
    let siblings = |c: usize| {
        read_trimmed(&format!(
            "/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"
        ))
    };
    let cpu_siblings: Vec<(usize, String)> = used.iter().map(|&c| (c, siblings(c))).collect();
    let core_of = |c: usize| crate::cpus::parse_list(&siblings(c)).unwrap_or_else(|_| vec![c]);
    let server_fleet_share_a_core = server_cpus.iter().any(|&s| {
        fleet_cpus
            .iter()
            .any(|&f| f != s && core_of(s).contains(&f))
    });
    let machine = machine();
    Environment {
        hostname: machine.hostname,
        cpu_model: machine.cpu_model,
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
        git_dirty: git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        clock_source: std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into()),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        build: machine.build,
        cpu_siblings,
        server_fleet_share_a_core,
        governor: std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
            .map_or_else(|_| "none".into(), |s| s.trim().to_string()),
        tcp_rmem: read_trimmed("/proc/sys/net/ipv4/tcp_rmem"),
        tcp_wmem: read_trimmed("/proc/sys/net/ipv4/tcp_wmem"),
        transparent_hugepages: read_trimmed("/sys/kernel/mm/transparent_hugepage/enabled"),
    }
}

/// `crc32:XXXXXXXX/BYTES` of the running executable (`unknown` when it
/// cannot be read).
/// The machine and build a calibration is cached for.
pub fn machine() -> Machine {
    Machine {
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        cpu_model: procfs::CpuInfo::current()
            .ok()
            .and_then(|c| c.model_name(0).map(str::to_string))
            .unwrap_or_else(|| "unknown".into()),
        build: build_id(),
    }
}

pub fn build_id() -> String {
    std::env::current_exe().and_then(std::fs::read).map_or_else(
        |_| "unknown".into(),
        |bytes| format!("crc32:{:08x}/{}", crc32fast::hash(&bytes), bytes.len()),
    )
}

/// A small procfs or sysfs file, trimmed, with tabs as spaces; `unknown`
/// when unreadable.
fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "unknown".into(), |s| s.trim().replace('\t', " "))
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
