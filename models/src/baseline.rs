//! `bare`: the floor every model's cost is a multiple of. The same mio
//! readiness loop as `single`, every frame read, validated, counted and
//! acked, and no work done: a frame finishes the moment its read returned,
//! with no clock read of its own. Served like a model (`harness serve
//! --model bare`), probed by a capacity search beside the models, never
//! searched, compared or recommended, and not in the registry.

use std::net::TcpListener;

use workloads::Frame;

use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::reactor::{self, Inline};
use crate::slots::Slots;
use crate::stats::Stats;

/// The bare loop.
pub struct Bare;

/// The baseline, as [`crate::find`] finds it.
pub static BASELINE: &dyn Model = &Bare;

impl Model for Bare {
    fn name(&self) -> &'static str {
        "bare"
    }

    fn describe(&self) -> &'static str {
        "the floor, never recommended: one thread, the mio readiness loop of `single`, frames read, checked, counted and acked, no work done"
    }

    fn queue_is(&self) -> &'static str {
        "nothing: it does no work"
    }

    fn read_late_is(&self) -> &'static str {
        "its one loop is reading other connections"
    }

    fn default_workers(&self, _cpus: usize) -> usize {
        1
    }

    fn worker_candidates(&self, _cpus: usize, _io_waits: usize) -> Vec<usize> {
        vec![1]
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        let mut stats = Stats::new(config.client_latency);
        let Stats {
            ingest, process, ..
        } = &mut stats;
        let mut discard = Inline(|f: &Frame| {
            let at = f.received_ns;
            process.record(
                &Frame {
                    started_ns: at,
                    ..*f
                },
                at,
                None,
            )
        });
        let slots = Slots::local(config.max_clients);
        reactor::run(
            listener.into(),
            config,
            shutdown,
            &slots,
            ingest,
            &mut discard,
        )?;
        Ok(stats)
    }
}
