//! `pool`: a mio acceptor/reader front decodes frames and feeds them, one
//! by one, through a bounded crossbeam channel to a fixed pool of std
//! threads that do the work. A full queue blocks the front, so TCP
//! backpressure reaches the clients and memory stays bounded.

use std::net::TcpListener;
use std::thread;

use workloads::Frame;

use crate::slots::Slots;
use crate::stats::{IngestStats, ProcessStats, Stats};
use crate::work::process_blocking;
use crate::{reactor, Model, ServeConfig, ServeError, Shutdown};

/// Queued frames allowed per worker before the front blocks.
const QUEUE_PER_WORKER: usize = 1024;

/// Reader front plus worker pool.
pub struct Pool;

impl Model for Pool {
    fn name(&self) -> &'static str {
        "pool"
    }

    fn describe(&self) -> &'static str {
        "one mio reader thread feeds frames through a bounded crossbeam channel to N worker threads; io waits block a worker, so N bounds concurrent io"
    }

    fn default_workers(&self, cpus: usize) -> usize {
        (4 * cpus).max(4)
    }

    fn serve(
        &self,
        listener: TcpListener,
        config: &ServeConfig,
        shutdown: &Shutdown,
    ) -> Result<Stats, ServeError> {
        let workers = config.workers.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<Frame>(QUEUE_PER_WORKER * workers);
        let handles = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                thread::Builder::new()
                    .name(format!("pool-{i}"))
                    .spawn(move || {
                        let mut stats = ProcessStats::default();
                        for frame in rx.iter() {
                            process_blocking(&frame, &mut stats);
                        }
                        stats
                    })
                    .map_err(ServeError::io("spawn a pool worker"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(rx);
        let mut ingest = IngestStats::default();
        let slots = Slots::local(config.max_clients);
        let served = reactor::run(listener, config, shutdown, &slots, &mut ingest, |frame| {
            // Fails only if every worker died; joining below reports that.
            let _ = tx.send(frame);
        });
        drop(tx); // workers finish the queue, then stop
        let mut stats = Stats {
            ingest,
            ..Stats::default()
        };
        for h in handles {
            let p = h
                .join()
                .map_err(|_| ServeError::Worker("a pool worker panicked".into()))?;
            stats.process.merge(&p);
        }
        served.map(|()| stats)
    }
}
