//! The open-loop schedule: client `c` sends frame `i` at
//! `t0 + phase_c + i * 1e9 / rate` (integer ns from the start, so it never
//! drifts); phases spread clients evenly over one period.

use workloads::WorkPlan;

use crate::config::{FleetConfig, Rate};

/// Sleep until this close to a deadline, then spin.
pub const SPIN_NS: u64 = 100_000;

/// Sequence numbers are u32 on the wire: no client sends more frames.
pub const MAX_FRAMES_PER_CLIENT: u64 = 1 << 32;

/// Due times, wake times and frame counts for every client of a run.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// CLOCK_MONOTONIC ns of the schedule's start.
    pub t0: u64,
    /// Frames due before this are warm-up.
    pub warm_end: u64,
    /// End of the measured window (rate and max modes).
    pub end: u64,
    rate: Option<u64>,
    /// The period when it is a whole number of ns (the common case), so the
    /// per-frame due time needs no 128-bit division.
    period_ns: Option<u64>,
    clients: u64,
    count: Option<u64>,
    window_ns: u64,
    /// Work per frame.
    pub work: WorkPlan,
}

impl Schedule {
    /// The schedule of `config` starting at `t0`.
    pub fn new(config: &FleetConfig, t0: u64) -> Self {
        let warm_end = t0 + config.warmup.as_nanos() as u64;
        Schedule {
            t0,
            warm_end,
            end: warm_end + config.duration.as_nanos() as u64,
            rate: match config.rate {
                Rate::Hz(hz) => Some(hz),
                Rate::Max => None,
            },
            period_ns: match config.rate {
                Rate::Hz(hz) if 1_000_000_000 % hz == 0 => Some(1_000_000_000 / hz),
                _ => None,
            },
            clients: config.clients.max(1) as u64,
            count: config.count,
            window_ns: config.batch_window.as_nanos() as u64,
            work: config.work.clone(),
        }
    }

    /// Paced at a fixed rate (not `max`).
    pub fn is_paced(&self) -> bool {
        self.rate.is_some()
    }

    /// `i * 1e9 / rate` in integer ns, exact and drift-free.
    #[inline]
    fn offset(&self, i: u64) -> u64 {
        if let Some(off) = self.period_ns.and_then(|p| i.checked_mul(p)) {
            return off;
        }
        let hz = self.rate.unwrap_or(1) as u128;
        (i as u128 * 1_000_000_000 / hz) as u64
    }

    /// The client's phase: clients spread evenly over one period.
    pub fn phase(&self, index: u32) -> u64 {
        self.offset(1) * index as u64 / self.clients
    }

    /// Due time of frame `i` of the client with index `index`.
    pub fn due(&self, index: u32, i: u64) -> u64 {
        self.t0 + self.phase(index) + self.offset(i)
    }

    /// Frames this client sends in all; `None` in `max` mode without a count
    /// (then at most [`MAX_FRAMES_PER_CLIENT`]).
    pub fn total(&self, index: u32) -> Option<u64> {
        if let Some(n) = self.count {
            return Some(n);
        }
        self.rate?;
        // First i whose due time is at or past the end.
        let span = self.end.saturating_sub(self.t0 + self.phase(index)) as u128;
        let hz = self.rate.unwrap_or(1) as u128;
        let mut i = (span * hz / 1_000_000_000) as u64;
        while i > 0 && self.due(index, i - 1) >= self.end {
            i -= 1;
        }
        while self.due(index, i) < self.end {
            i += 1;
        }
        Some(i)
    }

    /// Frames of the client with index `index` due at or before `now` (0
    /// in `max` mode, which has no due times).
    pub fn due_by(&self, index: u32, now: u64) -> u64 {
        let Some(hz) = self.rate else {
            return 0;
        };
        let total = self.total(index).unwrap_or(u64::MAX);
        let start = self.t0 + self.phase(index);
        if now < start {
            return 0;
        }
        let mut i = ((now - start) as u128 * hz as u128 / 1_000_000_000) as u64;
        while self.due(index, i) <= now && i < total {
            i += 1;
        }
        i.min(total)
    }

    /// The most frames any client is scheduled to send (`None`: unbounded).
    pub fn longest(&self) -> Option<u64> {
        (0..self.clients.min(u32::MAX as u64) as u32)
            .map(|i| self.total(i))
            .try_fold(0u64, |m, t| t.map(|t| m.max(t)))
    }

    /// Whether a frame due at `due` is warm-up.
    pub fn is_warmup(&self, due: u64) -> bool {
        due < self.warm_end
    }

    /// Base of the client's window grid: its phase plus an offset that
    /// spreads the clients' writes evenly over one window, so one pacing
    /// thread is never asked for all writes at once.
    fn wake_base(&self, index: u32) -> u64 {
        self.t0 + self.phase(index) + self.window_ns * index as u64 / self.clients
    }

    /// First time the client wakes.
    pub fn first_wake(&self, index: u32) -> u64 {
        match (self.is_paced(), self.window_ns) {
            (false, _) => self.t0,
            (true, 0) => self.t0 + self.phase(index),
            (true, _) => self.wake_base(index),
        }
    }

    /// Next wake after `now` for a client whose next unsent frame is `next`:
    /// the next window boundary, or that frame's due time when windows are 0.
    pub fn next_wake(&self, index: u32, next: u64, now: u64) -> u64 {
        let due = self.due(index, next);
        if self.window_ns == 0 {
            return due;
        }
        let base = self.wake_base(index);
        let k = now.saturating_sub(base) / self.window_ns + 1;
        (base + k * self.window_ns).max(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(rate: Rate, window_us: u64) -> FleetConfig {
        FleetConfig {
            target: "127.0.0.1:1".parse().unwrap(),
            clients: 4,
            client_id_base: 0,
            rate,
            warmup: Duration::from_millis(10),
            duration: Duration::from_millis(20),
            count: None,
            batch_window: Duration::from_micros(window_us),
            work: WorkPlan::none(),
            threads: 1,
            cpus: None,
            drain_timeout: Duration::from_secs(1),
            max_lag: Duration::from_millis(2),
            connect_tries: 5,
            shard: None,
            start_at_unix_ns: None,
            ack: false,
            shared_clock: true,
        }
    }

    #[test]
    fn due_times_are_exact_periods_and_phases_spread() {
        let s = Schedule::new(&config(Rate::Hz(10_000), 0), 1_000);
        assert_eq!(s.due(0, 0), 1_000);
        assert_eq!(s.due(0, 7) - s.due(0, 6), 100_000);
        assert_eq!(s.phase(1), 25_000);
        assert_eq!(s.phase(3), 75_000);
        // 30 ms at 10 kHz = 300 frames per client.
        assert_eq!(s.total(0), Some(300));
        assert_eq!(s.total(3), Some(300));
        let warm = (0..300).filter(|&i| s.is_warmup(s.due(2, i))).count();
        assert_eq!(warm, 100);
    }

    /// Frames due by a time: none before the first, each on its due time,
    /// never more than the client sends, none in `max` mode.
    #[test]
    fn frames_due_by_a_time() {
        let s = Schedule::new(&config(Rate::Hz(10_000), 0), 1_000);
        // (client index, now) -> frames due; client 1's phase is 25 us.
        let cases = [
            ((0, 0), 0),
            ((0, 999), 0),
            ((0, 1_000), 1),
            ((0, 101_000), 2),
            ((0, 100_999), 1),
            ((1, 26_000), 1),
            ((1, 25_999), 0),
            ((0, u64::MAX / 2), 300),
        ];
        for ((index, now), want) in cases {
            assert_eq!(s.due_by(index, now), want, "{index} {now}");
        }
        let max = Schedule::new(&config(Rate::Max, 0), 1_000);
        assert_eq!(max.due_by(0, 10_000_000), 0);
    }

    #[test]
    fn odd_rates_do_not_drift() {
        let s = Schedule::new(&config(Rate::Hz(3), 0), 0);
        assert_eq!(s.due(0, 3), 1_000_000_000);
        assert_eq!(s.due(0, 1), 333_333_333);
    }

    #[test]
    fn wakes_follow_windows_and_never_precede_due() {
        let s = Schedule::new(&config(Rate::Hz(10_000), 1_000), 0);
        // Frame 10 is due at 1 ms; from 0.5 ms the next window edge is 1 ms.
        assert_eq!(s.next_wake(0, 10, 500_000), 1_000_000);
        let s0 = Schedule::new(&config(Rate::Hz(10_000), 0), 0);
        assert_eq!(s0.next_wake(0, 10, 500_000), 1_000_000);
    }
}
