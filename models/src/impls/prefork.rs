//! `prefork`: the parent forks N single-threaded children, each running
//! the readiness loop with its work inline over the connections the parent
//! places on it: the parent accepts, and hands each connection to the live
//! child with the fewest open ones (see [`crate::placement`]). Children
//! publish their counts on the shared [`Board`] after every turn of their
//! loop, so a child that dies loses nothing it had counted. The parent
//! stays single-threaded: between accepts it reaps dead children and forks
//! a replacement within [`REAP_EVERY`] (up to [`MAX_RESTARTS`]), forwards
//! SIGTERM, and merges each child's exit report (JSON over a pipe), or its
//! board slot if it died. `--placement hash` gives each child its own
//! `SO_REUSEPORT` listener instead (a replacement takes over its
//! predecessor's), to show what the kernel's placement costs.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Waker;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};
use workloads::Frame;

use crate::board::Board;
use crate::model::Placement;
use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::net;
use crate::placement::Acceptor;
use crate::reactor::{self, Dispatch, Entrance, Socket};
use crate::slots::Slots;
use crate::stats::{ChildDeath, ChildSummary, IngestStats, ProcessStats, Stats};
use crate::work::process_blocking;

/// Replacement children forked at most in one run.
pub const MAX_RESTARTS: usize = 16;
/// How often the parent looks for dead children: a replacement is forked
/// within this.
pub const REAP_EVERY: Duration = Duration::from_millis(20);
/// How often a child publishes its histograms and timeline.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);

/// Forked single-threaded children, connections placed on the least loaded.
pub struct Prefork;

struct Child {
    pid: Pid,
    /// Its board slot, which is also its index in the acceptor.
    slot: usize,
    /// `--placement hash`: the index of its listener.
    listener: usize,
    report: File,
    ended: Option<WaitStatus>,
}

impl Model for Prefork {
    fn name(&self) -> &'static str {
        "prefork"
    }

    fn describe(&self) -> &'static str {
        "a parent forks N single-threaded children, each with its own readiness loop over the connections the parent places on it (the fewest open first; work inline, an io wait stalls that child); counts survive a child's death and dead children are replaced"
    }

    fn queue_is(&self) -> &'static str {
        "the frames ahead of it in its child's loop (head-of-line blocking): more children, or connections spread by load"
    }

    fn read_late_is(&self) -> &'static str {
        "its child's one loop reads the child's other connections and works the frames it read before it comes back (head-of-line blocking): more children, or connections spread by load"
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
        single_threaded()?;
        let workers = config.workers.max(1);
        let mut doors = Doors::open(listener, workers, config.placement)?;
        let slots = Slots::shared(config.max_clients)?;
        let board = Board::new(workers + MAX_RESTARTS)?;
        let ctx = ChildContext {
            config,
            shutdown,
            slots: &slots,
            board: &board,
        };
        let started = Instant::now();
        let mut children: Vec<Child> = Vec::new();
        for i in 0..workers {
            match spawn_child(&mut doors, (children.len(), i), &ctx) {
                Ok(child) => children.push(child),
                Err(e) => {
                    stop_all(&mut children);
                    return Err(e);
                }
            }
        }
        let mut deaths = Vec::new();
        while !shutdown.is_triggered() {
            for i in 0..children.len() {
                let Some(status) = reap(&mut children[i]) else {
                    continue;
                };
                doors.retire(i);
                let c = &children[i];
                tracing::error!("prefork child {} died: {status:?}", c.pid);
                let mut death = ChildDeath {
                    pid: c.pid.as_raw(),
                    status: describe(status),
                    at_ms: started.elapsed().as_millis() as u64,
                    replaced_by: None,
                };
                if children.len() < workers + MAX_RESTARTS && !shutdown.is_triggered() {
                    match spawn_child(&mut doors, (children.len(), c.listener), &ctx) {
                        Ok(new) => {
                            death.replaced_by = Some(new.pid.as_raw());
                            children.push(new);
                        }
                        Err(e) => tracing::error!("cannot replace a prefork child: {e}"),
                    }
                }
                deaths.push(death);
            }
            if children.iter().all(|c| c.ended.is_some()) {
                break; // all dead, no replacements left
            }
            doors.wait(REAP_EVERY);
        }
        stop_all(&mut children);
        let mut merged = Stats::default();
        for child in &mut children {
            let (stats, from) = collect(child, &board)?;
            merged.children.push(ChildSummary {
                pid: child.pid.as_raw(),
                connections: stats.ingest.connections.accepted,
                frames: stats.process.measured + stats.process.warmup,
                ended: child.ended.map_or_else(|| "running".into(), describe),
                counts_from: from.into(),
            });
            merged.merge(&stats);
        }
        merged.deaths = deaths;
        merged.ingest.connections.shed += doors.shed();
        Ok(merged)
    }
}

/// What a child counted: its exit report if it wrote one, else what it had
/// published on the board. Reaps it.
fn collect(child: &mut Child, board: &Board) -> Result<(Stats, &'static str), ServeError> {
    let mut json = String::new();
    let read = child.report.read_to_string(&mut json);
    if child.ended.is_none() {
        let status = waitpid(child.pid, None).map_err(|e| ServeError::Io {
            what: "reap a child",
            source: e.into(),
        })?;
        child.ended = Some(status);
    }
    Ok(
        match read
            .ok()
            .and_then(|_| serde_json::from_str::<Stats>(&json).ok())
        {
            Some(stats) => (stats, "report"),
            None => (board.read(child.slot), "board"),
        },
    )
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
        other => format!("{other:?}"),
    }
}

fn single_threaded() -> Result<(), ServeError> {
    let stat = procfs::process::Process::myself()
        .and_then(|p| p.stat())
        .map_err(|e| ServeError::Io {
            what: "read /proc/self/stat",
            source: std::io::Error::other(e),
        })?;
    match stat.num_threads.max(0) as u64 {
        1 => Ok(()),
        n => Err(ServeError::NotSingleThreaded(n)),
    }
}

/// What every child gets.
struct ChildContext<'a> {
    config: &'a ServeConfig,
    shutdown: &'a Shutdown,
    slots: &'a Slots,
    board: &'a Board,
}

/// Where the children's connections come from.
enum Doors {
    /// The parent places each on the child with the fewest open ones.
    Placed(Acceptor),
    /// One `SO_REUSEPORT` listener per child, placed by the kernel's hash.
    Hashed(Vec<TcpListener>),
}

impl Doors {
    fn open(listener: TcpListener, workers: usize, how: Placement) -> Result<Self, ServeError> {
        Ok(match how {
            Placement::Least => Doors::Placed(Acceptor::new(listener, workers + MAX_RESTARTS)?),
            Placement::Hash => {
                let mut listeners = vec![listener];
                listeners.extend(
                    net::siblings(&listeners[0], workers - 1)
                        .map_err(ServeError::io("open a SO_REUSEPORT listener"))?,
                );
                Doors::Hashed(listeners)
            }
        })
    }

    /// The entrance of the next child (`listener`: which one, when hashed).
    fn entrance(&mut self, listener: usize) -> Result<Entrance, ServeError> {
        Ok(match self {
            Doors::Placed(acceptor) => acceptor.add_worker()?.into(),
            Doors::Hashed(listeners) => listeners[listener % listeners.len()]
                .try_clone()
                .map_err(ServeError::io("duplicate the listener"))?
                .into(),
        })
    }

    /// Child `slot` died: nothing more is placed on it.
    fn retire(&mut self, slot: usize) {
        if let Doors::Placed(acceptor) = self {
            acceptor.retire(slot);
        }
    }

    /// Places connections for `d` (or just waits, when the kernel does).
    fn wait(&mut self, d: Duration) {
        match self {
            Doors::Placed(acceptor) => acceptor.accept_for(d),
            Doors::Hashed(_) => std::thread::sleep(d),
        }
    }

    /// Connections the parent could not place.
    fn shed(&self) -> u64 {
        match self {
            Doors::Placed(acceptor) => acceptor.shed,
            Doors::Hashed(_) => 0,
        }
    }
}

/// Forks the child of board slot `slot` (the acceptor's next worker) on
/// listener `listener` when hashed.
fn spawn_child(
    doors: &mut Doors,
    (slot, listener): (usize, usize),
    ctx: &ChildContext,
) -> Result<Child, ServeError> {
    single_threaded()?;
    let (read_end, write_end) = pipe().map_err(|e| ServeError::Io {
        what: "create a report pipe",
        source: e.into(),
    })?;
    let entrance = doors.entrance(listener)?;
    // SAFETY: `single_threaded` just checked that this process runs one
    // thread, so the child gets a consistent copy of all memory and locks;
    // the child branch never returns (it ends in `process::exit`).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(read_end);
            run_child(entrance, slot, ctx, write_end)
        }
        Ok(ForkResult::Parent { child }) => Ok(Child {
            pid: child,
            slot,
            listener,
            report: File::from(read_end),
            ended: None,
        }),
        Err(e) => Err(ServeError::Io {
            what: "fork",
            source: e.into(),
        }),
    }
}

/// A child's dispatcher: work inline, counts published on the board.
struct Published<'a> {
    process: ProcessStats,
    /// Call frames' downstream: the child keeps its own connection.
    downstream: Option<std::net::SocketAddr>,
    board: &'a Board,
    slot: usize,
    last_snapshot: Instant,
}

impl Dispatch for Published<'_> {
    type Conn = ();

    fn open(&mut self, _: &Arc<Waker>) {}

    fn dispatch(&mut self, _: &(), socket: &Arc<Socket>, frames: &mut Vec<Frame>) {
        for f in frames.iter() {
            process_blocking(f, self.downstream, &mut self.process);
        }
        socket.record(frames);
        frames.clear();
    }

    fn try_close(&mut self, _: &()) -> bool {
        true
    }

    fn turn(&mut self, ingest: &IngestStats) {
        self.board.publish_counts(self.slot, ingest, &self.process);
        if self.last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            self.last_snapshot = Instant::now();
            self.board.publish_snapshot(self.slot, &self.process);
        }
    }
}

fn run_child(entrance: Entrance, slot: usize, ctx: &ChildContext, report: OwnedFd) -> ! {
    // If the parent dies without forwarding a signal, stop anyway.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    // The parent's live slot is the parent's; this child counts in its own.
    crate::live::forget_inherited_slot();
    let mut ingest = IngestStats::default();
    let mut sink = Published {
        process: ProcessStats::new(ctx.config.client_latency),
        downstream: ctx.config.downstream,
        board: ctx.board,
        slot,
        last_snapshot: Instant::now(),
    };
    let slots = match &entrance {
        Entrance::Inbox(inbox) => ctx.slots.for_inbox(inbox),
        Entrance::Listener(_) => ctx.slots.clone(),
    };
    let served = reactor::run(
        entrance,
        ctx.config,
        ctx.shutdown,
        &slots,
        &mut ingest,
        &mut sink,
    );
    let code = match served {
        Ok(()) => {
            let stats = Stats {
                ingest,
                process: sink.process,
                ..Stats::default()
            };
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

/// The child's status if it ended since the last look.
fn reap(child: &mut Child) -> Option<WaitStatus> {
    if child.ended.is_some() {
        return None;
    }
    match waitpid(child.pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) | Err(_) => None,
        Ok(status) => {
            child.ended = Some(status);
            Some(status)
        }
    }
}

fn stop_all(children: &mut [Child]) {
    for child in children.iter_mut().filter(|c| c.ended.is_none()) {
        let _ = kill(child.pid, Signal::SIGTERM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_fork_from_a_threaded_process() {
        // The test harness runs tests on threads, so this process has several.
        let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = ServeConfig {
            workers: 2,
            max_clients: 4,
            idle_timeout: std::time::Duration::ZERO,
            frame_timeout: std::time::Duration::ZERO,
            limits: workloads::Limits::default(),
            placement: crate::model::Placement::Least,
            inline_cpu: crate::model::DEFAULT_INLINE_CPU,
            iters_per_us: None,
            client_latency: false,
            coalesce: crate::model::DEFAULT_COALESCE,
            downstream: None,
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
