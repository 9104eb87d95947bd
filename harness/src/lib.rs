//! The `harness` binary's library: the server front-end (`serve`), the
//! benchmark matrix that runs it and the open-loop client fleet (the
//! `fleet` crate, re-exported) as separate pinned processes (`bench`), the
//! capacity search (`capacity`), the cell's verdict (`verdict`) and the
//! reports (`report`).

pub mod bench;
pub mod capacity;
pub mod cli;
pub mod commands;
pub mod cpus;
pub mod fleet_capacity;
pub mod k8s;
pub mod merged;
pub mod parent;
pub mod report;
pub mod serve;
pub mod units;
pub mod verdict;

pub use fleet;
