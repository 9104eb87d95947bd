//! `percore`: thread per core, shared nothing (the Seastar/glommio
//! pattern). N threads, each with its own `SO_REUSEPORT` listener on the
//! server's address and its own readiness loop; the kernel spreads new
//! connections over the listeners, and a connection lives and is processed
//! on one thread only: no hand-off, no shared queue. Work runs inline, so an
//! io wait stalls the connections of that thread (not the others).

use std::net::TcpListener;

use super::single::serve_inline;
use crate::model::{Model, ServeConfig, ServeError, Shutdown};
use crate::net;
use crate::slots::Slots;
use crate::stats::Stats;

/// Thread per core, shared nothing.
pub struct PerCore;

impl Model for PerCore {
    fn name(&self) -> &'static str {
        "percore"
    }

    fn describe(&self) -> &'static str {
        "N threads, each with its own SO_REUSEPORT listener and readiness loop (shared nothing, no hand-off); work runs inline, so an io wait stalls that thread's connections"
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
        // Only the limit is shared: a connection's slot.
        let slots = Slots::local(config.max_clients);
        net::thread_per_listener(listener, config.workers, "core", shutdown, |l| {
            serve_inline(l, config, shutdown, &slots)
        })
    }
}
