//! Samples a process tree (a process and all its descendants, threads
//! included) every 100 ms through procfs: CPU, RSS and PSS, threads,
//! context switches and open fds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use procfs::process::Process;
use serde::{Deserialize, Serialize};

/// Sampling period.
pub const PERIOD: Duration = Duration::from_millis(100);

/// One sample of one process tree.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since sampling started.
    pub t_s: f64,
    /// User CPU over the last period, percent of one CPU.
    pub cpu_user_pct: f64,
    /// System CPU over the last period, percent of one CPU.
    pub cpu_sys_pct: f64,
    /// Resident set of the tree, KiB.
    pub rss_kib: u64,
    /// Proportional set of the tree (shared pages split), KiB.
    pub pss_kib: u64,
    /// Threads in the tree.
    pub threads: u64,
    /// Voluntary context switches so far.
    pub voluntary_ctxt: u64,
    /// Involuntary context switches so far.
    pub involuntary_ctxt: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Processes in the tree.
    pub processes: u64,
}

/// Samples of the server and fleet trees of one cell.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Samples {
    /// Server tree.
    pub server: Vec<Sample>,
    /// Fleet tree.
    pub fleet: Vec<Sample>,
}

/// A background sampler; `stop` returns what it collected.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Samples>,
}

impl Sampler {
    /// Starts sampling the trees rooted at `server` and `fleet`.
    pub fn start(server: u32, fleet: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let mut out = Samples::default();
            let mut prev: HashMap<u32, (u64, u64, Instant)> = HashMap::new();
            while !flag.load(Ordering::SeqCst) {
                let t_s = start.elapsed().as_secs_f64();
                for (root, series) in [(server, &mut out.server), (fleet, &mut out.fleet)] {
                    if let Some(s) = sample_tree(root, t_s, &mut prev) {
                        series.push(s);
                    }
                }
                thread::sleep(PERIOD);
            }
            out
        });
        Sampler { stop, handle }
    }

    /// Stops and returns the samples.
    pub fn stop(self) -> Samples {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

/// The process and all its descendants, from each task's `children` file.
fn tree(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Ok(tasks) = Process::new(out[i] as i32).and_then(|p| p.tasks()) {
            for task in tasks.flatten() {
                out.extend(task.children().unwrap_or_default());
            }
        }
        i += 1;
    }
    out
}

fn sample_tree(
    root: u32,
    t_s: f64,
    prev: &mut HashMap<u32, (u64, u64, Instant)>,
) -> Option<Sample> {
    let ticks = procfs::ticks_per_second() as f64;
    let mut s = Sample {
        t_s,
        ..Sample::default()
    };
    let mut alive = false;
    for pid in tree(root) {
        let Ok(p) = Process::new(pid as i32) else {
            continue;
        };
        let Ok(stat) = p.stat() else { continue };
        alive = true;
        s.processes += 1;
        s.threads += stat.num_threads.max(0) as u64;
        let now = Instant::now();
        if let Some((u, k, at)) = prev.insert(pid, (stat.utime, stat.stime, now)) {
            let dt = now.duration_since(at).as_secs_f64().max(1e-3);
            s.cpu_user_pct += stat.utime.saturating_sub(u) as f64 / ticks / dt * 100.0;
            s.cpu_sys_pct += stat.stime.saturating_sub(k) as f64 / ticks / dt * 100.0;
        }
        if let Ok(rollup) = p.smaps_rollup() {
            for m in &rollup.memory_map_rollup.0 {
                s.rss_kib += m.extension.map.get("Rss").copied().unwrap_or(0) / 1024;
                s.pss_kib += m.extension.map.get("Pss").copied().unwrap_or(0) / 1024;
            }
        }
        s.fds += p.fd_count().unwrap_or(0) as u64;
        if let Ok(tasks) = p.tasks() {
            for t in tasks.flatten() {
                if let Ok(st) = t.status() {
                    s.voluntary_ctxt += st.voluntary_ctxt_switches.unwrap_or(0);
                    s.involuntary_ctxt += st.nonvoluntary_ctxt_switches.unwrap_or(0);
                }
            }
        }
    }
    alive.then_some(s)
}
