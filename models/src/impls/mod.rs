//! The eight concurrency models, one file each; the shared machinery they
//! are built from (reactor, ingest, stats, acks, shedding, timer) lives
//! beside this folder in the crate root.

pub mod async_model;
pub mod percore;
pub mod pool;
pub mod prefork;
pub mod rayon_model;
pub mod single;
pub mod threads;
pub mod uring;
