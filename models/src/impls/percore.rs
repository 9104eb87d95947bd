//! `percore`: thread per core, shared nothing (the Seastar/glommio
//! pattern). N threads, each with its own readiness loop; the serving
//! thread accepts and places each new connection on the thread with the
//! fewest open ones (see [`crate::placement`]), where it lives and is
//! processed: no hand-off of frames, no shared queue (`--placement hash`:
//! a `SO_REUSEPORT` listener per thread instead). Work runs inline, so an
//! io wait stalls the connections of that thread (not the others).

use std::net::TcpListener;

use super::single::serve_inline;
use crate::model::{Model, Placement, ServeConfig, ServeError, Shutdown};
use crate::slots::Slots;
use crate::stats::Stats;
use crate::{net, placement};

/// Thread per core, shared nothing.
pub struct PerCore;

impl Model for PerCore {
    fn name(&self) -> &'static str {
        "percore"
    }

    fn describe(&self) -> &'static str {
        "N threads, each with its own readiness loop and the connections placed on it (the fewest open first; shared nothing, no hand-off of frames); work runs inline, so an io wait stalls that thread's connections"
    }

    fn queue_is(&self) -> &'static str {
        "the frames ahead of it on its core's loop (head-of-line blocking): more cores, or connections spread by load"
    }

    fn read_late_is(&self) -> &'static str {
        "its core's one loop reads the core's other connections and works the frames it read before it comes back (head-of-line blocking): more cores, or connections spread by load"
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
        match config.placement {
            Placement::Least => {
                placement::serve_threads(listener, config.workers, "core", shutdown, |inbox| {
                    let slots = slots.for_inbox(&inbox);
                    serve_inline(inbox.into(), config, shutdown, &slots)
                })
            }
            Placement::Hash => {
                net::thread_per_listener(listener, config.workers, "core", shutdown, |l| {
                    serve_inline(l.into(), config, shutdown, &slots)
                })
            }
        }
    }
}
