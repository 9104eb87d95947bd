//! The cpu kernel's calibration for a run: the cached one in the results
//! folder when it fits this machine and build, else measured
//! ([`KERNEL_ROUNDS`] timed rounds, the median kept) and cached, so every
//! later run on this machine resolves `cpu:DUR` to the same work.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use record::kernel_calibration::{
    KernelCalibration, Machine, KERNEL_CALIBRATION_FILE, KERNEL_ROUNDS,
};

/// The cached calibration for `machine`, or a new one measured now (and
/// cached) when there is none, it is for another machine or build, or
/// `recalibrate` asks for it.
pub fn load_or_measure(
    results_dir: &Path,
    machine: &Machine,
    recalibrate: bool,
) -> Result<KernelCalibration> {
    let path = results_dir.join(KERNEL_CALIBRATION_FILE);
    if !recalibrate {
        let cached = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<KernelCalibration>(&t).ok());
        if let Some(k) = cached.filter(|k| k.machine.matches(machine) && k.iters_per_us > 0.0) {
            return Ok(k);
        }
    }
    let k = KernelCalibration::from_rounds(
        machine.clone(),
        humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        workloads::kernel::round_rates(KERNEL_ROUNDS),
    );
    std::fs::create_dir_all(results_dir)
        .with_context(|| format!("create {}", results_dir.display()))?;
    let json = serde_json::to_vec_pretty(&k).context("encode the kernel calibration")?;
    common::fs::write_atomic(&path, &json).with_context(|| format!("write {}", path.display()))?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(build: &str) -> Machine {
        Machine {
            hostname: "vm".into(),
            cpu_model: "cpu".into(),
            build: build.into(),
        }
    }

    #[test]
    fn a_second_run_reuses_the_first_runs_calibration() {
        let dir = tempfile::tempdir().expect("a temp folder");
        let first = load_or_measure(dir.path(), &machine("crc32:1"), false).expect("measured");
        assert_eq!(first.rounds.len(), KERNEL_ROUNDS as usize);
        assert!(first.iters_per_us > 0.0);
        let second = load_or_measure(dir.path(), &machine("crc32:1"), false).expect("loaded");
        assert_eq!(second, first, "the same work in both runs");
        let other_build =
            load_or_measure(dir.path(), &machine("crc32:2"), false).expect("measured");
        assert_eq!(
            other_build.machine.build, "crc32:2",
            "a new build measures anew"
        );
        // A cached calibration is used as it is, unless --recalibrate.
        let planted = KernelCalibration::from_rounds(machine("crc32:2"), "then".into(), vec![1.0]);
        let path = dir.path().join(KERNEL_CALIBRATION_FILE);
        std::fs::write(&path, serde_json::to_vec(&planted).expect("json")).expect("write");
        let cached = load_or_measure(dir.path(), &machine("crc32:2"), false).expect("loaded");
        assert_eq!(cached, planted);
        let forced = load_or_measure(dir.path(), &machine("crc32:2"), true).expect("measured");
        assert_eq!(
            forced.rounds.len(),
            KERNEL_ROUNDS as usize,
            "--recalibrate measures anew"
        );
    }
}
