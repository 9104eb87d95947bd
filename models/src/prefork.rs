//! `prefork`: the parent binds, then forks N children that share the
//! listening socket, each running the `single` loop. The parent waits for
//! shutdown, forwards SIGTERM, reaps the children and merges the statistics
//! each child writes to its pipe as JSON.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::thread;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};

use crate::slots::Slots;
use crate::stats::Stats;
use crate::{single, Model, ServeConfig, ServeError, Shutdown, SHUTDOWN_POLL};

/// Forked single-threaded children sharing one listener.
pub struct Prefork;

struct Child {
    pid: Pid,
    report: File,
    exited: Option<WaitStatus>,
}

impl Model for Prefork {
    fn name(&self) -> &'static str {
        "prefork"
    }

    fn describe(&self) -> &'static str {
        "a parent forks N single-threaded children that share the listener (each runs the single loop: work inline, io waits stall that child)"
    }

    fn default_workers(&self, cpus: usize) -> usize {
        cpus.max(1)
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        let threads = thread_count()?;
        if threads != 1 {
            return Err(ServeError::NotSingleThreaded(threads));
        }
        let slots = Slots::shared(config.max_clients)?;
        let mut children: Vec<Child> = Vec::new();
        for _ in 0..config.workers.max(1) {
            match spawn_child(&listener, config, shutdown, &slots) {
                Ok(child) => children.push(child),
                Err(e) => {
                    stop_all(&mut children);
                    return Err(e);
                }
            }
        }
        drop(listener); // the children hold it now
        while !shutdown.is_triggered() && children.iter_mut().any(still_running) {
            thread::sleep(SHUTDOWN_POLL);
        }
        stop_all(&mut children);
        let mut merged = Stats::default();
        let mut failures = Vec::new();
        for child in &mut children {
            let mut json = String::new();
            let read = child.report.read_to_string(&mut json);
            let status = match child.exited {
                Some(s) => s,
                None => waitpid(child.pid, None).map_err(|e| ServeError::Io {
                    what: "reap a child",
                    source: e.into(),
                })?,
            };
            match read
                .ok()
                .and_then(|_| serde_json::from_str::<Stats>(&json).ok())
            {
                Some(stats) => merged.merge(&stats),
                None => failures.push(format!(
                    "child {} ended {status:?} without a report",
                    child.pid
                )),
            }
        }
        for f in &failures {
            // Its frames are missing from the merge; the harness sees them as loss.
            tracing::error!("{f}");
        }
        if failures.len() == children.len() {
            return Err(ServeError::Worker(failures.join("; ")));
        }
        Ok(merged)
    }
}

fn thread_count() -> Result<u64, ServeError> {
    let stat = procfs::process::Process::myself()
        .and_then(|p| p.stat())
        .map_err(|e| ServeError::Io {
            what: "read /proc/self/stat",
            source: std::io::Error::other(e),
        })?;
    Ok(stat.num_threads.max(0) as u64)
}

fn spawn_child(
    listener: &TcpListener,
    config: &ServeConfig,
    shutdown: &Shutdown,
    slots: &Slots,
) -> Result<Child, ServeError> {
    let (read_end, write_end) = pipe().map_err(|e| ServeError::Io {
        what: "create a report pipe",
        source: e.into(),
    })?;
    let child_listener = listener
        .try_clone()
        .map_err(ServeError::io("duplicate the listener"))?;
    // SAFETY: `serve` checked that this process runs a single thread, so the
    // child gets a consistent copy of all memory and locks; the child branch
    // never returns (it ends in `process::exit`).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(read_end);
            run_child(child_listener, config, shutdown, slots, write_end)
        }
        Ok(ForkResult::Parent { child }) => Ok(Child {
            pid: child,
            report: File::from(read_end),
            exited: None,
        }),
        Err(e) => Err(ServeError::Io {
            what: "fork",
            source: e.into(),
        }),
    }
}

fn run_child(
    listener: TcpListener,
    config: &ServeConfig,
    shutdown: &Shutdown,
    slots: &Slots,
    report: OwnedFd,
) -> ! {
    // If the parent dies without forwarding a signal, stop anyway.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    let code = match single::serve_inline(listener, config, shutdown, slots) {
        Ok(stats) => {
            let mut out = File::from(report);
            match serde_json::to_writer(&mut out, &stats).map(|()| out.flush()) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("prefork child: cannot write its report: {e}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("prefork child: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn still_running(child: &mut Child) -> bool {
    if child.exited.is_some() {
        return false;
    }
    match waitpid(child.pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => true,
        Ok(status) => {
            tracing::error!("prefork child {} exited early: {status:?}", child.pid);
            child.exited = Some(status);
            false
        }
        Err(_) => false,
    }
}

fn stop_all(children: &mut [Child]) {
    for child in children.iter_mut().filter(|c| c.exited.is_none()) {
        let _ = kill(child.pid, Signal::SIGTERM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_fork_from_a_threaded_process() {
        // The test harness runs tests on threads, so this process has several.
        let _other = thread::spawn(|| thread::sleep(std::time::Duration::from_millis(200)));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = ServeConfig {
            workers: 2,
            max_clients: 4,
            idle_timeout: std::time::Duration::ZERO,
            limits: workloads::Limits::default(),
        };
        let err = Prefork
            .serve(listener, &config, &Shutdown::default())
            .unwrap_err();
        assert!(
            matches!(err, ServeError::NotSingleThreaded(n) if n > 1),
            "{err}"
        );
    }
}
