//! CPU sets: reading this process's allowed CPUs,
//! pinning, and splitting CPUs between server and fleet.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

pub use common::cpu_list::{format_list, parse_list};

/// The CPUs this process may run on.
pub fn allowed() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// Pins the calling thread (the whole process, when called before it
/// starts others) and the threads it starts later to `cpus`.
pub fn pin(cpus: &[usize]) -> Result<(), String> {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c)
            .map_err(|e| format!("CPU {c} cannot be used: {e}"))?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| format!("cannot pin to CPUs {}: {e}", format_list(cpus)))
}

/// Default split: the first half for the server, the rest for the fleet
/// (one each on two CPUs; both share the only CPU on one).
pub fn split(cpus: &[usize]) -> (Vec<usize>, Vec<usize>) {
    if cpus.len() < 2 {
        return (cpus.to_vec(), cpus.to_vec());
    }
    let half = cpus.len() / 2;
    (cpus[..half].to_vec(), cpus[half..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_split() {
        assert_eq!(parse_list("0-2,5,1"), Ok(vec![0, 1, 2, 5]));
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("x").is_err());
        assert_eq!(split(&[0, 1]), (vec![0], vec![1]));
        assert_eq!(split(&[4]), (vec![4], vec![4]));
        assert_eq!(format_list(&[0, 3]), "0,3");
        assert!(!allowed().is_empty());
    }
}
