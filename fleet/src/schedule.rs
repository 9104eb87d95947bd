//! The open-loop schedule: client `c` sends frame `i` at
//! `t0 + phase_c + i * 1e9 / rate` (integer ns from the start, so it never
//! drifts), or at its place in a burst (`crate::arrival`) or in its
//! Poisson stream (`crate::poisson`) or in a replayed trace
//! (`crate::trace`); phases spread clients evenly over one period (one peak
//! period in a burst, the mean one for Poisson arrivals and traces).

use workloads::WorkPlan;

use crate::arrival::{Arrival, Cycle};
use crate::config::{FleetConfig, Rate};
use crate::poisson::Streams;
use crate::trace::Replay;

/// Sleep until this close to a deadline, then spin.
pub const SPIN_NS: u64 = 100_000;

/// Sequence numbers are u32 on the wire: no client sends more frames.
pub const MAX_FRAMES_PER_CLIENT: u64 = 1 << 32;

/// How a client's frames are spaced from its first.
#[derive(Clone, Debug)]
enum Spacing {
    /// Evenly at the rate (none in `max` mode).
    Even,
    /// In on/off bursts.
    Burst(Cycle),
    /// As each client's Poisson stream.
    Poisson(Streams),
    /// As the trace replayed, each client from its own line.
    Trace(Replay),
}

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
    spacing: Spacing,
    clients: u64,
    count: Option<u64>,
    window_ns: u64,
    /// Work per frame.
    pub work: WorkPlan,
}

impl Schedule {
    /// The schedule of `config` starting at `t0` (an arrival process that
    /// does not fit the rate was refused when `config` was made).
    pub fn new(config: &FleetConfig, t0: u64) -> Self {
        let warm_end = t0 + config.warmup.as_nanos() as u64;
        let mut s = Schedule {
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
            spacing: match (&config.arrival, config.rate) {
                (_, Rate::Max) => Spacing::Even,
                (Arrival::Trace(t), Rate::Hz(hz)) => Spacing::Trace(Replay::new(t.clone(), hz)),
                // Poisson's streams need the phases: set below.
                (arrival, Rate::Hz(hz)) => arrival
                    .cycle(hz)
                    .ok()
                    .flatten()
                    .map_or(Spacing::Even, Spacing::Burst),
            },
            clients: config.clients.max(1) as u64,
            count: config.count,
            window_ns: config.batch_window.as_nanos() as u64,
            work: config.work.clone(),
        };
        if let (Arrival::Poisson, Rate::Hz(hz)) = (&config.arrival, config.rate) {
            let span = |i| s.end.saturating_sub(s.t0 + s.phase(i));
            let streams = Streams::new(
                (config.seed, config.client_id_base, hz),
                config.clients.max(1),
                &config.indices(),
                span,
                config.count,
            );
            s.spacing = Spacing::Poisson(streams);
        }
        s
    }

    /// This schedule starting at `t0` instead (its streams kept).
    pub fn starting_at(&self, t0: u64) -> Self {
        let shift = |t: u64| t - self.t0 + t0;
        Schedule {
            t0,
            warm_end: shift(self.warm_end),
            end: shift(self.end),
            ..self.clone()
        }
    }

    /// Whether the arrivals are random, so the fleet tests the gaps it
    /// sends (`crate::arrival_check`).
    pub fn tests_arrivals(&self) -> bool {
        matches!(self.spacing, Spacing::Poisson(_))
    }

    /// Paced at a fixed rate (not `max`).
    pub fn is_paced(&self) -> bool {
        self.rate.is_some()
    }

    /// Frame `i`'s offset from the client's first: `i * 1e9 / rate` in
    /// integer ns, exact and drift-free, or its place in the bursts, in
    /// its Poisson stream or in the trace.
    #[inline]
    fn offset(&self, index: u32, i: u64) -> u64 {
        match &self.spacing {
            Spacing::Even => self.even_offset(i),
            Spacing::Burst(c) => c.offset(i),
            Spacing::Poisson(p) => p.offset(index, i),
            Spacing::Trace(t) => t.offset(t.start(index, self.clients), i),
        }
    }

    /// `i` periods in integer ns, exact and drift-free.
    #[inline]
    fn even_offset(&self, i: u64) -> u64 {
        if let Some(off) = self.period_ns.and_then(|p| i.checked_mul(p)) {
            return off;
        }
        let hz = self.rate.unwrap_or(1) as u128;
        (i as u128 * 1_000_000_000 / hz) as u64
    }

    /// Where counting frames due within `span` of a client's first starts:
    /// at most that count (a loop steps it up to the exact one).
    fn frames_near(&self, index: u32, span: u64) -> u64 {
        match (&self.spacing, self.rate) {
            (Spacing::Trace(t), _) => t.frames_near(t.start(index, self.clients), span),
            (Spacing::Burst(c), _) => c.frames_near(span),
            (Spacing::Poisson(p), _) => p.frames_until(index, span),
            (Spacing::Even, Some(hz)) => (span as u128 * hz as u128 / 1_000_000_000) as u64,
            (Spacing::Even, None) => 0,
        }
    }

    /// The client's phase: clients spread evenly over one period (one
    /// peak period in bursts, the mean one for Poisson arrivals).
    pub fn phase(&self, index: u32) -> u64 {
        let period = match &self.spacing {
            Spacing::Burst(c) => c.offset(1),
            _ => self.even_offset(1),
        };
        period * index as u64 / self.clients
    }

    /// Due time of frame `i` of the client with index `index`.
    pub fn due(&self, index: u32, i: u64) -> u64 {
        self.t0 + self.phase(index) + self.offset(index, i)
    }

    /// Frames this client sends in all; `None` in `max` mode without a count
    /// (then at most [`MAX_FRAMES_PER_CLIENT`]).
    pub fn total(&self, index: u32) -> Option<u64> {
        if let Some(n) = self.count {
            return Some(n);
        }
        self.rate?;
        if let Spacing::Poisson(p) = &self.spacing {
            return Some(p.total(index));
        }
        // First i whose due time is at or past the end.
        let span = self.end.saturating_sub(self.t0 + self.phase(index));
        let mut i = self.frames_near(index, span);
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
        if self.rate.is_none() {
            return 0;
        }
        let total = self.total(index).unwrap_or(u64::MAX);
        let start = self.t0 + self.phase(index);
        if now < start {
            return 0;
        }
        let mut i = self.frames_near(index, now - start).saturating_sub(1);
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
            arrival: crate::arrival::Arrival::Constant,
            seed: 0,
            reconnect_every: None,
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

    /// In bursts, the frames a client sends and those due by any time are
    /// exactly the due times' counts, and the fleet's phases stay inside
    /// one peak period.
    #[test]
    fn burst_counts_match_the_due_times() {
        let mut c = config(Rate::Hz(10_000), 0);
        c.arrival = "burst:on=2ms,off=3ms".parse().expect("an arrival");
        let s = Schedule::new(&c, 1_000);
        // 5 ms cycles of 50 frames, 40 us apart while on.
        assert_eq!(s.due(0, 1) - s.due(0, 0), 40_000);
        assert_eq!(s.due(0, 50) - s.due(0, 0), 5_000_000);
        assert_eq!(s.phase(3), 30_000);
        counts_match_due_times(&s);
    }

    /// Poisson arrivals: the same, whether the due times are asked in
    /// order (the cursor) or not; a schedule started later keeps them.
    #[test]
    fn poisson_counts_match_the_due_times() {
        let mut c = config(Rate::Hz(10_000), 0);
        c.arrival = crate::arrival::Arrival::Poisson;
        c.seed = 42;
        let s = Schedule::new(&c, 1_000);
        let later = s.starting_at(5_000);
        let backwards: Vec<u64> = (0..400).rev().map(|i| s.due(2, i)).collect();
        let forwards: Vec<u64> = (0..400).map(|i| later.due(2, i) - 4_000).collect();
        assert!(backwards.iter().rev().eq(forwards.iter()));
        assert!(forwards.windows(2).all(|w| w[0] <= w[1]));
        counts_match_due_times(&s);
    }

    /// A shard's clients get the due times they have in the whole fleet,
    /// so shards send exactly what one fleet would.
    #[test]
    fn poisson_shards_send_what_one_fleet_would() {
        let mut whole = config(Rate::Hz(10_000), 0);
        whole.arrival = crate::arrival::Arrival::Poisson;
        whole.seed = 7;
        let one = Schedule::new(&whole, 0);
        for index in 0..2 {
            let mut part = whole.clone();
            part.shard = Some(crate::config::Shard { index, count: 2 });
            let shard = Schedule::new(&part, 0);
            for c in part.indices() {
                assert_eq!(shard.total(c), one.total(c), "client {c}");
                for i in [0, 1, 77, 250] {
                    assert_eq!(shard.due(c, i), one.due(c, i), "client {c} frame {i}");
                }
            }
        }
    }

    /// A trace of uneven gaps, replayed slower than recorded: counts
    /// match the due times, each client starts at its own line (so its
    /// gaps are the trace's from there, scaled), and shards send what one
    /// fleet would.
    #[test]
    fn trace_replays_count_and_shard_exactly() {
        let trace = crate::trace::Trace::parse("t", "0\n10000\n10000\n15000\n90000\n").unwrap();
        let mut c = config(Rate::Hz(10_000), 0);
        c.arrival = crate::arrival::Arrival::Trace(std::sync::Arc::new(trace));
        let s = Schedule::new(&c, 1_000);
        counts_match_due_times(&s);
        // 5 arrivals in a 112,500 ns period: 44.4 kHz, replayed at 10 kHz
        // (times x 4.44).
        let gaps = |index| -> Vec<u64> {
            (0..6)
                .map(|i| s.due(index, i + 1) - s.due(index, i))
                .collect()
        };
        assert_eq!(gaps(0), [44_444, 0, 22_222, 333_334, 100_000, 44_444]);
        assert_eq!(
            gaps(1)[..3],
            [0, 22_222, 333_333],
            "client 1 starts at line 2"
        );
        for index in 0..2 {
            let mut part = c.clone();
            part.shard = Some(crate::config::Shard { index, count: 2 });
            let shard = Schedule::new(&part, 1_000);
            for client in part.indices() {
                assert_eq!(shard.total(client), s.total(client), "client {client}");
                for i in [0, 1, 7, 250] {
                    assert_eq!(
                        shard.due(client, i),
                        s.due(client, i),
                        "client {client} frame {i}"
                    );
                }
            }
        }
    }

    /// Each client's total and frames due by any time are the counts of
    /// its due times.
    fn counts_match_due_times(s: &Schedule) {
        for index in 0..4 {
            let dues: Vec<u64> = (0..1_000).map(|i| s.due(index, i)).collect();
            let sent = dues.iter().filter(|&&d| d < s.end).count() as u64;
            assert_eq!(s.total(index), Some(sent), "client {index}");
            for now in (0..s.end + 2_000_000).step_by(9_973) {
                let due = dues.iter().filter(|&&d| d <= now).count() as u64;
                assert_eq!(
                    s.due_by(index, now),
                    due.min(sent),
                    "client {index} at {now}"
                );
            }
        }
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
