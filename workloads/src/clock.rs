//! CLOCK_MONOTONIC in nanoseconds: the one clock that due times and
//! processing times are read from, in every process on the machine.

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds of CLOCK_MONOTONIC now.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC is always available on Linux; failure would be a kernel bug.
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is readable");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}
