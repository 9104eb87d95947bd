//! The client fleet: N open-loop clients, each sending 32-byte frames on a
//! fixed schedule, paced by a few dedicated sleep-then-spin threads that
//! multiplex non-blocking sockets; one fleet may run as shards that
//! [`merge`] adds up exactly. See [`schedule`] for the timing rules,
//! [`client`] and [`link`] for one client, [`fleet_report`] (with
//! [`totals`]) for the accounting and [`on_schedule`] for whether the generator kept its schedule; in ack
//! mode [`acks`] checks every frame is acknowledged exactly once and
//! [`watch`] reads the acks as they come. A library of its own: it links no
//! server model (`harness fleet` is its command).

pub mod acks;
pub mod arrival;
pub mod arrival_check;
pub mod client;
pub mod config;
pub mod fleet_report;
pub mod link;
pub mod live;
pub mod merge;
pub mod on_schedule;
pub mod options;
pub mod pacing;
pub mod poisson;
pub mod schedule;
pub mod totals;
pub mod trace;
pub mod watch;

pub use arrival::Arrival;
pub use config::{FleetConfig, Rate, Shard, DEFAULT_CONNECT_TRIES};
pub use options::FleetOptions;
pub use pacing::{run, run_live, unix_ns_after, FleetError};
