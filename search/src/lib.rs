//! The capacity search as pure logic over a source of probes: the knee of
//! one worker count ([`knee`]), a probe's outcome from its cell
//! ([`classify`]), and the search of one (model, workload) ([`pair`]):
//! the worker sweep, the knee's confirmation and the interval. It spawns
//! nothing: the harness supplies the probes ([`pair::Probes`]); the tests
//! fake them.

pub mod classify;
pub mod knee;
pub mod pair;
