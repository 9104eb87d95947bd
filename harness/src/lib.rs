//! The `harness` binary's library: the server front-end (`serve`), the
//! open-loop client fleet (`fleet`), the benchmark matrix that runs them as
//! separate pinned processes (`bench`), and the reports (`report`).

pub mod bench;
pub mod capacity;
pub mod cli;
pub mod commands;
pub mod cpus;
pub mod fleet;
pub mod fleet_capacity;
pub mod parent;
pub mod report;
pub mod serve;
pub mod units;
pub mod verdict;
