//! `percore`: thread per core, shared nothing (the Seastar/glommio
//! pattern). N threads, each with its own `SO_REUSEPORT` listener on the
//! server's address and its own readiness loop; the kernel spreads new
//! connections over the listeners, and a connection lives and is processed
//! on one thread only: no hand-off, no shared queue. Work runs inline, so an
//! io wait stalls the connections of that thread (not the others).

use std::net::TcpListener;
use std::thread;

use crate::single::serve_inline;
use crate::slots::Slots;
use crate::stats::Stats;
use crate::{net, Model, ServeConfig, ServeError, Shutdown};

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
        let workers = config.workers.max(1);
        let mut listeners = vec![listener];
        listeners.extend(
            net::siblings(&listeners[0], workers - 1)
                .map_err(ServeError::io("open a SO_REUSEPORT listener"))?,
        );
        // Only the limit is shared: a connection's slot.
        let slots = Slots::local(config.max_clients);
        let results: Vec<Result<Stats, ServeError>> = thread::scope(|scope| {
            let handles: Vec<_> = listeners
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    let slots = &slots;
                    thread::Builder::new()
                        .name(format!("core-{i}"))
                        .spawn_scoped(scope, move || serve_inline(l, config, shutdown, slots))
                })
                .collect();
            if handles.iter().any(Result::is_err) {
                shutdown.trigger(); // stop the threads that did start
            }
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        Err(ServeError::Worker("a core thread panicked".into()))
                    }),
                    Err(e) => Err(ServeError::Io {
                        what: "spawn a core thread",
                        source: e,
                    }),
                })
                .collect()
        });
        let mut merged = Stats::default();
        for r in results {
            merged.merge(&r?);
        }
        Ok(merged)
    }
}
