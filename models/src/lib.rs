//! The ingest server as interchangeable concurrency models.
//!
//! Every model implements [`Model`] and is listed once in [`registry`]; the
//! CLI and the conformance tests pick models from there by name, so a new
//! model is one new file in [`impls`] plus one line in [`REGISTRY`].

pub mod ack;
pub mod baseline;
pub mod board;
pub mod client_latency;
pub mod downstream;
pub(crate) mod hand_off;
pub mod impls;
pub mod ingest;
pub mod live;
pub mod model;
pub mod net;
pub mod placement;
pub mod priority;
mod reactor;
pub mod responder;
pub mod server_report;
pub mod shed;
pub mod slots;
pub mod stages;
pub mod stats;
pub mod timer;
mod uring_calls;
pub mod work;
pub mod work_queue;

pub use common::duration_ms;
pub use model::{
    Model, Placement, ServeConfig, ServeError, Shutdown, DEFAULT_COALESCE, DEFAULT_FRAME_TIMEOUT,
    DEFAULT_INLINE_CPU, SHUTDOWN_POLL,
};
pub use server_report::ServerReport;
pub use stats::Stats;

/// Every model, in presentation order. Add a model here.
pub static REGISTRY: &[&dyn Model] = &[
    &impls::single::Single,
    &impls::pool::Pool,
    &impls::async_model::Async,
    &impls::prefork::Prefork,
    &impls::threads::Threads,
    &impls::rayon_model::Rayon,
    &impls::percore::PerCore,
    &impls::uring::Uring,
];

/// All registered models.
pub fn registry() -> &'static [&'static dyn Model] {
    REGISTRY
}

/// The model registered as `name`, or the baseline ([`baseline::Bare`]).
pub fn find(name: &str) -> Option<&'static dyn Model> {
    REGISTRY
        .iter()
        .copied()
        .chain([baseline::BASELINE])
        .find(|m| m.name() == name)
}

/// Registered model names, in order.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|m| m.name()).collect()
}
