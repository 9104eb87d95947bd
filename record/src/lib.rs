//! What a benchmark run is, as data: its configuration ([`config`]), the
//! machine it ran on ([`environment`]), every cell ([`cell`]) with its
//! samples, canary and figures, the verdict rules ([`verdict`], [`slo`]),
//! the fleet's and the cpu kernel's calibrations ([`calibration`],
//! [`kernel_calibration`]), and a capacity search's
//! records and rules ([`capacity`], [`interval`], [`recommend`]), all in
//! one [`run::RunFile`]. Types and pure functions: no I/O beyond reading
//! and writing a run file.

pub mod attribution;
pub mod calibration;
pub mod canary;
pub mod capacity;
pub mod cell;
pub mod config;
pub mod efficiency;
pub mod environment;
pub mod figures;
pub mod interval;
pub mod kernel_calibration;
pub mod outcome;
pub mod past_knee;
pub mod recommend;
pub mod run;
pub mod samples;
pub mod slo;
pub mod units;
pub mod verdict;
