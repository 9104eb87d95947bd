//! What every model is: the [`Model`] trait, the settings it serves with
//! ([`ServeConfig`]), the shutdown it obeys ([`Shutdown`]) and the errors it
//! returns ([`ServeError`]). The models themselves are in [`crate::impls`].

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::duration_ms;
use serde::{Deserialize, Serialize};
use workloads::Limits;

use crate::stats::Stats;

/// How often loops look at the shutdown flag when nothing else wakes them.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Per-run server settings shared by every model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServeConfig {
    /// Pool threads, runtime threads or children (ignored by `single`).
    pub workers: usize,
    /// Connections beyond this many open ones are closed at once.
    pub max_clients: usize,
    /// A connection silent this long is closed.
    #[serde(with = "duration_ms")]
    pub idle_timeout: Duration,
    /// A frame whose first bytes came this long ago and is still not
    /// complete gets its connection closed (zero: never).
    #[serde(with = "duration_ms", default = "default_frame_timeout")]
    pub frame_timeout: Duration,
    /// Caps on requested work.
    pub limits: Limits,
    /// How `prefork`, `percore` and `uring` spread connections over their workers.
    #[serde(default)]
    pub placement: Placement,
    /// `async`: the cpu work of one read up to this long runs inline on a
    /// runtime thread (tokio's advice: 10-100 us between awaits); longer
    /// goes to the blocking pool. `rayon`: a turn's wait-free frames with
    /// up to this much cpu work run on its reader thread one after another;
    /// more, as a parallel iterator.
    #[serde(with = "duration_ms", default = "default_inline_cpu")]
    pub inline_cpu: Duration,
    /// Kernel iterations per microsecond (the harness's calibration), which
    /// turns `inline_cpu` into iterations; `harness serve` measures it
    /// before listening when a model needs it and it was not given (absent:
    /// no batch runs inline).
    #[serde(default)]
    pub iters_per_us: Option<f64>,
    /// Record each client's latency apart (`--client-latency`: a histogram
    /// per client in every recorder, so a few KiB per client per worker;
    /// the harness asks for it past the knee, where fairness is judged).
    #[serde(default)]
    pub client_latency: bool,
    /// `pool` and `rayon`: while reads come fast and no worker is running, a read's
    /// frames may wait this long for more before a worker is woken for
    /// them all (0: every turn's frames are handed over at once).
    #[serde(with = "duration_ms", default = "default_coalesce")]
    pub coalesce: Duration,
    /// Where call frames' downstream service listens (`--downstream`; the
    /// harness starts one, [`crate::responder`]). Absent: every call fails,
    /// counted.
    #[serde(default)]
    pub downstream: Option<std::net::SocketAddr>,
}

impl ServeConfig {
    /// `inline_cpu` as kernel iterations at `iters_per_us` (none known:
    /// zero, so no cpu work counts as short).
    pub fn inline_iters(&self) -> u64 {
        (self.inline_cpu.as_secs_f64() * 1e6 * self.iters_per_us.unwrap_or(0.0)) as u64
    }
}

/// `--inline-cpu`'s default.
pub const DEFAULT_INLINE_CPU: Duration = Duration::from_micros(100);

/// `--coalesce`'s default.
pub const DEFAULT_COALESCE: Duration = Duration::from_micros(100);

fn default_inline_cpu() -> Duration {
    DEFAULT_INLINE_CPU
}

fn default_coalesce() -> Duration {
    DEFAULT_COALESCE
}

/// How `prefork`, `percore` and `uring` spread connections over their workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// One acceptor hands each connection to the worker with the fewest
    /// open ones ([`crate::placement`]).
    #[default]
    Least,
    /// Each worker has its own `SO_REUSEPORT` listener: the kernel places
    /// each connection by a hash of its addresses (kept to show the
    /// difference).
    Hash,
}

impl std::str::FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "least" => Ok(Placement::Least),
            "hash" => Ok(Placement::Hash),
            other => Err(format!(
                "unknown placement `{other}`: `least` (the fewest open connections) or `hash` (SO_REUSEPORT)"
            )),
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Placement::Least => "least",
            Placement::Hash => "hash",
        })
    }
}

/// `--frame-timeout`'s default.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(1);

fn default_frame_timeout() -> Duration {
    DEFAULT_FRAME_TIMEOUT
}

/// A shutdown request: set once (by a signal handler or a test), observed by
/// every loop of the model within [`SHUTDOWN_POLL`].
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A shutdown driven by `flag`, e.g. one a signal handler sets.
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Shutdown(flag)
    }

    /// Requests shutdown.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a model could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An OS call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// `fork` was refused because the process runs other threads.
    #[error("prefork must fork from a single-threaded process, but this one has {0} threads; run it through `harness serve`")]
    NotSingleThreaded(u64),
    /// A worker thread or child failed.
    #[error("worker failed: {0}")]
    Worker(String),
}

impl ServeError {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ServeError {
        move |source| ServeError::Io { what, source }
    }
}

/// One concurrency model of the ingest server. Object safe.
pub trait Model: Send + Sync {
    /// Registry name, as typed on the command line.
    fn name(&self) -> &'static str;
    /// One line on how the model is built and treats cpu and io work.
    fn describe(&self) -> &'static str;
    /// What a frame waits for between its read and the start of its work,
    /// in this model (its queue stage), ending in the remedy when that
    /// stage dominates: "a free worker: more workers or less work per frame".
    fn queue_is(&self) -> &'static str;
    /// What keeps this model from reading a frame as soon as it arrives
    /// (its socket stage: the frame waits in the socket's buffer), ending
    /// in the remedy when that stage dominates.
    fn read_late_is(&self) -> &'static str;
    /// Workers used when `--workers` is not given, for `cpus` usable CPUs.
    fn default_workers(&self, cpus: usize) -> usize;
    /// Worker counts worth trying when the capacity search looks for the
    /// model's best, on `cpus` server CPUs, for a workload that keeps about
    /// `io_waits` io waits in flight at the knee (0: no io): the default,
    /// 1 x and 4 x the CPUs, and the io waits where a wait occupies a
    /// worker. Models that ignore workers, or use them differently,
    /// override it.
    fn worker_candidates(&self, cpus: usize, io_waits: usize) -> Vec<usize> {
        let cpus = cpus.max(1);
        let mut counts = vec![self.default_workers(cpus), cpus, 4 * cpus];
        if io_waits > 0 {
            counts.push(io_waits);
        }
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    /// Whether the model turns a time setting into kernel work
    /// ([`ServeConfig::iters_per_us`]): `harness serve` then measures the
    /// kernel's speed before it listens, unless it was given.
    fn needs_kernel_speed(&self) -> bool {
        false
    }
    /// Whether the model can run on this machine; the reason if not (the
    /// matrix then skips it and says why).
    fn available(&self) -> Result<(), String> {
        Ok(())
    }
    /// Serves on `listener` until `shutdown`, then finishes the frames it
    /// has read and returns the merged statistics.
    ///
    /// The contract every model keeps (the conformance suite checks it):
    /// - a connection is closed only after every frame read from it has
    ///   been processed, so a client that sees the close knows its frames
    ///   are done ("drained" means the same for every model);
    /// - an io frame waits its amount within tens of microseconds (timer
    ///   slack 1 ns, no coarse timer wheel);
    /// - a frame is never dropped once read: at shutdown what was read is
    ///   processed, what was not is left unread;
    /// - ack mode ([`crate::ack`]): a processed frame that asked for an ack gets
    ///   exactly one, written without ever blocking the model, before its
    ///   connection closes (or counted as dropped).
    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError>;
}
