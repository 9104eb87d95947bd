//! The `harness` binary's library: the command line ([`cli`]), the server
//! front-end ([`serve`]), a benchmark run of pinned server and fleet
//! processes ([`mod@bench`]), the capacity search on real probes
//! ([`capacity`]), capacity against server cores ([`scaling`]), the fleet
//! calibration ([`calibration`]), and the
//! fleet, merge and Kubernetes commands. What a run is lives in the
//! `record` crate, the search's rules in `search`, the reports in `report`.

pub mod after_search;
pub mod bench;
pub mod calibration;
pub mod capacity;
pub mod cli;
pub mod commands;
pub mod cpus;
pub mod k8s;
pub mod kernel_calibration;
pub mod live;
pub mod live_scrape;
pub mod merged;
pub mod metrics;
pub mod parent;
pub mod probing;
pub mod scaling;
pub mod serve;

pub use fleet;
