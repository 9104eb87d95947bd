//! `single`: one thread, one mio readiness loop; every frame's work runs
//! inline, so an io wait stalls every connection (head-of-line blocking is
//! the model's nature, not a bug).

use std::net::TcpListener;

use workloads::Frame;

use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::reactor::{self, Entrance, Inline};
use crate::slots::Slots;
use crate::stats::Stats;
use crate::work::process_blocking;

/// One thread does everything.
pub struct Single;

/// Runs the single-threaded loop on the calling thread over the
/// connections from `entrance`, counting open connections in `slots`.
pub fn serve_inline(
    entrance: Entrance,
    config: &ServeConfig,
    shutdown: &Shutdown,
    slots: &Slots,
) -> Result<Stats, ServeError> {
    let mut stats = Stats::new(config.client_latency);
    let Stats {
        ingest, process, ..
    } = &mut stats;
    let mut inline = Inline(|frame: &Frame| process_blocking(frame, config.downstream, process));
    reactor::run(entrance, config, shutdown, slots, ingest, &mut inline)?;
    Ok(stats)
}

impl Model for Single {
    fn name(&self) -> &'static str {
        "single"
    }

    fn describe(&self) -> &'static str {
        "one thread, mio readiness loop; cpu and io work run inline, so an io wait stalls every connection"
    }

    fn queue_is(&self) -> &'static str {
        "the frames read before it on the one loop (head-of-line blocking): a model that overlaps waits or runs more loops"
    }

    fn read_late_is(&self) -> &'static str {
        "its one loop reads the other connections and works the frames it read before it comes back (head-of-line blocking): more loops, or a model that overlaps waits"
    }

    fn default_workers(&self, _cpus: usize) -> usize {
        1
    }

    fn worker_candidates(&self, _cpus: usize, _io_waits: usize) -> Vec<usize> {
        vec![1] // one thread whatever --workers says
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        serve_inline(
            listener.into(),
            config,
            shutdown,
            &Slots::local(config.max_clients),
        )
    }
}
