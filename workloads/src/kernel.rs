//! The reference CPU kernel (a splitmix64 chain) and its calibration.

use std::time::Instant;

/// Runs the reference kernel: `x = seq ^ (client_id << 32)`, then `iters`
/// splitmix64 steps. Every model computes exactly this for a cpu frame.
#[inline]
pub fn cpu_kernel(seq: u64, client_id: u32, iters: u32) -> u64 {
    let mut x = seq ^ ((client_id as u64) << 32);
    for _ in 0..iters {
        x = splitmix_step(x);
    }
    x
}

/// One splitmix64 step, all arithmetic wrapping.
#[inline(always)]
pub fn splitmix_step(x: u64) -> u64 {
    let mut x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Measures how many kernel iterations take one microsecond on this CPU:
/// the best of `rounds` timed runs of about 20 ms each.
pub fn iters_per_us(rounds: u32) -> f64 {
    round_rates(rounds).into_iter().fold(0.0, f64::max)
}

/// Each of `rounds` timed runs of about 20 ms: kernel iterations per
/// microsecond, in the order measured.
pub fn round_rates(rounds: u32) -> Vec<f64> {
    let mut iters: u32 = 1 << 16;
    // Grow until one run takes at least 20 ms, so timer noise is small.
    loop {
        let start = Instant::now();
        std::hint::black_box(cpu_kernel(1, 1, std::hint::black_box(iters)));
        if start.elapsed().as_millis() >= 20 || iters >= 1 << 30 {
            break;
        }
        iters *= 2;
    }
    (0..rounds.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(cpu_kernel(2, 2, std::hint::black_box(iters)));
            iters as f64 / (start.elapsed().as_nanos().max(1) as f64 / 1000.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_iterations_is_the_seed() {
        assert_eq!(cpu_kernel(5, 1, 0), 5 ^ (1 << 32));
    }

    #[test]
    fn matches_splitmix64_reference_value() {
        // splitmix64 seeded with 0 yields 0xE220A8397B1DCDAF first.
        assert_eq!(cpu_kernel(0, 0, 1), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn calibration_is_positive() {
        assert!(iters_per_us(1) > 0.0);
    }
}
