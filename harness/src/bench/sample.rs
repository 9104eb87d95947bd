//! Samples a process tree (a process and all its descendants, threads
//! included) through procfs, stamped with CLOCK_MONOTONIC so figures can be
//! cut to the fleet's measured window.
//!
//! Every 100 ms, a few system calls per process whatever its thread count:
//! CPU time in nanoseconds from the process's CPU clock
//! (`clock_getcpuclockid`: every thread, exited ones included; a process
//! that exits keeps its last value, so the tree's total never goes back),
//! RSS from `statm`, threads from `stat`, and the host's steal time from
//! `/proc/stat`. Once a second (and at the end): the walk of the process
//! tree (new children), PSS, open fds and involuntary context switches,
//! which cost more to read the more threads and fds a model has. The
//! sampler runs off the server's CPUs (on this 2-core machine, on the
//! fleet's) and measures its own CPU time.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};

use nix::time::{clock_gettime, ClockId};
use procfs::process::Process;
use record::samples::{HostSample, Sample, Samples, PERIOD};
use workloads::clock::monotonic_ns;

/// Every this many periods the costly figures are read too.
const SPARSE_EVERY: u32 = 10;

/// A background sampler; `stop` returns what it collected.
pub struct Sampler {
    stop: Sender<()>,
    handle: JoinHandle<Samples>,
}

/// Per-tree memory: the processes found at the last walk and each
/// process's last CPU figure.
#[derive(Default)]
struct TreeState {
    pids: Vec<u32>,
    cpu_ns: HashMap<u32, u64>,
}

impl Sampler {
    /// Starts sampling the trees rooted at `server` and `fleet`, and the
    /// steal time of `cpus`.
    pub fn start(server: u32, fleet: u32, cpus: Vec<usize>) -> Self {
        let (stop, woken) = mpsc::channel::<()>();
        let handle = thread::spawn(move || {
            let start = monotonic_ns();
            let mut out = Samples::default();
            let mut states = [TreeState::default(), TreeState::default()];
            let mut tick = 0u32;
            let mut last = false;
            loop {
                let sparse = last || tick.is_multiple_of(SPARSE_EVERY);
                for (i, root) in [server, fleet].into_iter().enumerate() {
                    if let Some(s) = sample_tree(root, start, sparse, &mut states[i]) {
                        if i == 0 {
                            out.server.push(s);
                        } else {
                            out.fleet.push(s);
                        }
                    }
                }
                if let Some(h) = host_sample(&cpus) {
                    out.host.push(h);
                }
                if last {
                    break;
                }
                tick += 1;
                // Woken at once by `stop` (or its drop), so a cell's end is
                // sampled without waiting out a period.
                last = !matches!(woken.recv_timeout(PERIOD), Err(RecvTimeoutError::Timeout));
            }
            out.sampler_cpu_ns = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
                .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
                .unwrap_or(0);
            out
        });
        Sampler { stop, handle }
    }

    /// Takes a last sample (sparse figures included), stops and returns the
    /// samples.
    pub fn stop(self) -> Samples {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or_default()
    }
}

/// The process and all its descendants, from each main thread's
/// `children` file (one read per process, whatever its thread count; the
/// servers fork from their main thread).
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    out
}

/// CPU time of a whole process (all its threads, exited ones included), ns.
pub(crate) fn process_cpu_ns(pid: u32) -> Option<u64> {
    let clock = nix::time::clock_getcpuclockid(nix::unistd::Pid::from_raw(pid as i32)).ok()?;
    let t = clock_gettime(clock).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

fn sample_tree(root: u32, start: u64, sparse: bool, st: &mut TreeState) -> Option<Sample> {
    let page_kib = procfs::page_size() / 1024;
    let t_ns = monotonic_ns();
    let mut s = Sample {
        t_ns,
        t_s: (t_ns - start) as f64 / 1e9,
        ..Sample::default()
    };
    let mut alive = false;
    let (mut pss, mut fds, mut invol) = (0u64, 0u64, 0u64);
    if sparse || st.pids.is_empty() {
        st.pids = tree(root);
    }
    for &pid in &st.pids {
        let Ok(p) = Process::new(pid as i32) else {
            continue;
        };
        let Ok(statm) = p.statm() else { continue };
        alive = true;
        s.processes += 1;
        s.rss_kib += statm.resident * page_kib;
        if let Some(ns) = process_cpu_ns(pid) {
            let seen = st.cpu_ns.entry(pid).or_default();
            *seen = (*seen).max(ns);
        }
        if let Ok(stat) = p.stat() {
            s.threads += stat.num_threads.max(0) as u64;
        }
        if sparse {
            if let Ok(tasks) = p.tasks() {
                for t in tasks.flatten() {
                    if let Ok(status) = t.status() {
                        invol += status.nonvoluntary_ctxt_switches.unwrap_or(0);
                    }
                }
            }
            if let Ok(rollup) = p.smaps_rollup() {
                for m in &rollup.memory_map_rollup.0 {
                    pss += m.extension.map.get("Pss").copied().unwrap_or(0) / 1024;
                }
            }
            fds += p.fd_count().unwrap_or(0) as u64;
        }
    }
    s.cpu_ns = st.cpu_ns.values().sum();
    if sparse {
        (s.pss_kib, s.fds, s.involuntary_ctxt) = (Some(pss), Some(fds), Some(invol));
    }
    alive.then_some(s)
}

/// Steal and total ticks of `cpus` from `/proc/stat`.
fn host_sample(cpus: &[usize]) -> Option<HostSample> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let mut h = HostSample {
        t_ns: monotonic_ns(),
        ..HostSample::default()
    };
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(cpu) = f
            .next()
            .and_then(|n| n.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        // user nice system idle iowait irq softirq steal (guest is in user).
        let v: Vec<u64> = f.take(8).filter_map(|x| x.parse().ok()).collect();
        if v.len() == 8 {
            h.steal += v[7];
            h.total += v.iter().sum::<u64>();
        }
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_sampled_in_nanoseconds() {
        let me = std::process::id();
        let sampler = Sampler::start(me, me, vec![0]);
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(150) {
            std::hint::spin_loop();
        }
        let samples = sampler.stop();
        let last = samples.server.last().unwrap();
        assert!(last.cpu_ns > 0, "{last:?}");
        assert!(last.rss_kib > 0 && last.threads >= 2);
        assert!(last.pss_kib.is_some() && last.fds.is_some());
        assert!(samples.sampler_cpu_ns > 0);
    }
}
