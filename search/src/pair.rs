//! The search of one (model, workload) over a source of probes: each
//! worker count searched, more workers tried while they buy capacity, then
//! the record; later, in confirmation rounds the caller spreads over the
//! run, the best count's knee probed again and, in the last round, stepped
//! down to a size that passes every probe. A probe the machine disturbed is
//! tried again after a pause and, if every try was disturbed, counts as the
//! machine's. Where the probes come from ([`Probes`]: real cells, a
//! resumed run's, or a test's fakes) is the caller's.

use std::collections::HashMap;

use fleet::Rate;
use record::attribution::Attribution;
use record::capacity::{
    io_waits_at_knee, CapacityRecord, LimitedBy, Outcome, ProbeRecord, Projection, SweepPoint,
    MACHINE_PAUSE, MACHINE_RETRIES, MAX_WORKERS,
};
use record::cell::{CellKey, CellResult};
use record::config::{RunConfig, SearchSettings};
use record::interval;
use record::recommend::Range;
use record::slo::Slo;
use record::units::fmt_ns;
use workloads::WorkPlan;

use crate::classify::{classify, Classified};
use crate::knee::{self, Found, Probe};

/// A search interrupted (SIGINT/SIGTERM), or a probe that could not run.
#[derive(Debug)]
pub enum Stop<E> {
    /// Stopped by a signal: nothing more is probed or recorded.
    Interrupted,
    /// A probe could not run at all.
    Failed(E),
}

impl<E> From<E> for Stop<E> {
    fn from(e: E) -> Self {
        Stop::Failed(e)
    }
}

/// Where a search's probes come from, and what it needs of the model.
pub trait Probes {
    /// Why a probe could not run.
    type Error;
    /// The cell of the probe `key`: run now, or reused when resuming (the
    /// search is deterministic given its outcomes, so a resumed search
    /// asks for the same probes in the same order). Its index in
    /// [`Probes::cells`], and whether it ran now.
    fn cell(&mut self, key: &CellKey) -> Result<(usize, bool), Stop<Self::Error>>;
    /// Every cell so far.
    fn cells(&self) -> &[CellResult];
    /// One probe is recorded; `line` says what it found.
    fn probe_done(&mut self, line: &dyn Fn() -> String);
    /// The model's default worker count.
    fn default_workers(&self) -> usize;
    /// The worker counts worth searching, given the io waits in flight at
    /// the knee.
    fn worker_candidates(&self, io_waits: usize) -> Vec<usize>;
}

/// A sweep's answer per worker count, the io-wait estimate and why the
/// sweep stopped.
type Swept = (Vec<(usize, Found)>, usize, String);

/// What a pair's sweep decided, which its confirmation rounds keep.
struct Searched {
    workers: usize,
    found: Found,
    sweep: Vec<SweepPoint>,
    io_waits: usize,
    sweep_stop: String,
}

impl Searched {
    /// The sweep behind a record (the record's worker count is its best
    /// sweep point, so it is always in the sweep).
    fn of(record: CapacityRecord) -> Self {
        let found = record
            .sweep
            .iter()
            .find(|p| p.workers == record.workers)
            .map(|p| Found {
                capacity: p.capacity,
                next: p.next,
                limited_by: p.limited_by,
            })
            .expect("a record's worker count is one of its sweep points");
        Searched {
            workers: record.workers,
            found,
            sweep: record.sweep,
            io_waits: record.io_waits,
            sweep_stop: record.sweep_stop,
        }
    }
}

/// The repeat index of the next probe per (clients, workers), after
/// `probes`: a search resumed from them asks for the same cells.
pub fn repeats_of(probes: &[ProbeRecord]) -> HashMap<(u32, usize), u32> {
    let mut repeats = HashMap::new();
    for p in probes {
        *repeats.entry((p.clients, p.workers)).or_insert(0) += 1;
    }
    repeats
}

/// The search of one (model, workload).
pub struct Pair<'a, P: Probes> {
    /// Where the probes come from.
    pub probes_from: &'a mut P,
    /// The run's configuration.
    pub config: &'a RunConfig,
    /// The SLO every probe is held to.
    pub slo: Slo,
    /// The model searched.
    pub model: &'a str,
    /// The workload searched.
    pub workload: &'a str,
    /// The workload's per-frame work.
    pub plan: WorkPlan,
    /// Probes so far per (clients, workers): the next probe's repeat index.
    pub repeats: HashMap<(u32, usize), u32>,
    /// Every probe so far (a search run again starts with the earlier
    /// one's).
    pub probes: Vec<ProbeRecord>,
    /// The machine's speed spread so far in the run: the recorded
    /// interval's high end is widened by it ([`interval::Interval::widened`]).
    pub speed_spread: f64,
}

impl<P: Probes> Pair<'_, P> {
    fn cells(&self) -> &[CellResult] {
        self.probes_from.cells()
    }

    /// The cell of the next probe at (clients, workers), and whether it
    /// ran now.
    fn cell(&mut self, clients: u32, workers: usize) -> Result<(usize, bool), Stop<P::Error>> {
        let repeat = self.repeats.entry((clients, workers)).or_insert(0);
        let key = CellKey {
            model: self.model.to_string(),
            workload: self.workload.to_string(),
            clients,
            workers: Some(workers),
            repeat: *repeat,
        };
        *repeat += 1;
        self.probes_from.cell(&key)
    }

    /// One probe: a cell, tried again while the machine disturbed it and
    /// it did not pass; every try is recorded (a disturbed failure as
    /// `machine`).
    fn probe(
        &mut self,
        clients: u32,
        workers: usize,
        confirm: bool,
    ) -> Result<Probe, Stop<P::Error>> {
        let mut pause = MACHINE_PAUSE;
        let mut tries = 0;
        loop {
            let (index, ran) = self.cell(clients, workers)?;
            let Classified {
                outcome,
                why,
                soft,
                disturbed,
                marginal,
            } = classify(&self.cells()[index], &self.slo);
            // Only a failure one stall can cause (an SLO miss, a late
            // generator) is the machine's: an overload or a loss is not.
            let discounted = disturbed && soft && outcome != Outcome::Pass;
            let recorded = if discounted {
                Outcome::Machine
            } else {
                outcome
            };
            let retry = discounted && tries < MACHINE_RETRIES;
            self.record(index, workers, recorded, &why, (confirm, retry, marginal));
            if retry {
                if ran {
                    std::thread::sleep(pause);
                }
                pause *= 2;
                tries += 1;
                continue;
            }
            return Ok(Probe {
                outcome: recorded,
                util: Some(self.util(index)),
                soft: soft && !discounted,
            });
        }
    }

    fn record(
        &mut self,
        index: usize,
        workers: usize,
        outcome: Outcome,
        why: &str,
        (confirm, retried, marginal): (bool, bool, bool),
    ) {
        let clients = self.cells()[index].key.clients;
        self.probes.push(ProbeRecord {
            cell: index,
            clients,
            workers,
            outcome,
            why: why.to_string(),
            confirm,
            retried,
            marginal,
        });
        let p99 = self.cells()[index].derived.p99_ns;
        let (model, workload) = (self.model, self.workload);
        self.probes_from.probe_done(&|| {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            format!(
                "{model} {workload} w={workers} {clients} clients: {outcome:?} p99 {}{why}",
                fmt_ns(p99)
            )
        });
    }

    fn search_at(
        &mut self,
        settings: &SearchSettings,
        workers: usize,
        seed: Option<u32>,
    ) -> Result<Found, Stop<P::Error>> {
        knee::search(&settings.params, seed, |n| self.probe(n, workers, false))
    }

    /// Searches the default count, the model's candidates, then more
    /// workers in growing steps while each buys capacity; returns every
    /// count's answer, the io estimate and why the sweep stopped.
    fn sweep(&mut self, settings: &SearchSettings) -> Result<Swept, Stop<P::Error>> {
        let config = self.config;
        let default_workers = config
            .workers
            .unwrap_or_else(|| self.probes_from.default_workers());
        let first = self.search_at(settings, default_workers, None)?;
        let mut sweep = vec![(default_workers, first)];
        let rate = match config.rate {
            Rate::Hz(hz) => hz,
            Rate::Max => 0,
        };
        let knee_util = self.util_at(first.capacity, default_workers);
        let io_waits = io_waits_at_knee(
            first.capacity,
            knee_util,
            &self.plan,
            rate,
            settings.params.max_clients,
        );
        if !settings.sweep {
            return Ok((sweep, io_waits, "workers fixed".into()));
        }
        let mut counts = self.probes_from.worker_candidates(io_waits);
        if counts.len() <= 1 {
            return Ok((sweep, io_waits, "the model has one worker count".into()));
        }
        counts.retain(|&w| w != default_workers);
        if config.quick {
            // A first look: the default and the io estimate where a wait
            // occupies a worker, then the gain followed.
            counts.retain(|&w| io_waits > 0 && w == io_waits);
        }
        let tried_io = counts.contains(&io_waits);
        for w in counts {
            let seed = best(&sweep).1.capacity.max(1);
            let found = self.search_at(settings, w, Some(seed))?;
            sweep.push((w, found));
        }
        let mut again_note = None;
        if config.quick && tried_io {
            // The first estimate comes from a knee the workers bounded (at
            // most 8 times its clients): estimate once more from the knee
            // it found.
            let (w, f) = best(&sweep);
            let again = io_waits_at_knee(
                f.capacity,
                self.util_at(f.capacity, w),
                &self.plan,
                rate,
                settings.params.max_clients,
            );
            if let Some((next, seed)) = quick_io_step(&sweep, io_waits, again) {
                let found = self.search_at(settings, next, Some(seed))?;
                sweep.push((next, found));
                again_note = Some(format!(
                    "again from the knee at {io_waits} workers: ~{again}"
                ));
            }
        }
        let why = self.follow_gain(settings, &mut sweep)?;
        let why = match again_note {
            Some(note) => format!("{note}; {why}"),
            None => why,
        };
        Ok((sweep, io_waits, why))
    }

    /// While the largest count tried is the best and still gaining, doubles
    /// it; returns why it stopped.
    fn follow_gain(
        &mut self,
        settings: &SearchSettings,
        sweep: &mut Vec<(usize, Found)>,
    ) -> Result<String, Stop<P::Error>> {
        loop {
            match next_count(sweep, self.config.quick) {
                Err(why) => return Ok(why),
                Ok((next, seed)) => {
                    let found = self.search_at(settings, next, Some(seed))?;
                    sweep.push((next, found));
                }
            }
        }
    }

    /// One repeat of the capacity and of the size just above its
    /// interval; while a repeat above passes (the interval's high end then
    /// moves up to the next size that failed every probe), that size is
    /// repeated too, so that the high end rests on a failure seen at
    /// another time of the run than the search's.
    fn repeat_knee(&mut self, workers: usize, found: Found) -> Result<(), Stop<P::Error>> {
        let at = self.outcomes_at(workers);
        let point = interval::point_of(&at, found.capacity);
        if point > 0 {
            self.probe(point, workers, true)?;
        }
        let mut repeated = Vec::new();
        loop {
            let at = self.outcomes_at(workers);
            let above = interval::interval_of(&at, found.capacity)
                .high
                .map(|h| h + 1)
                .or(found.next);
            match above {
                Some(n) if !repeated.contains(&n) => {
                    repeated.push(n);
                    self.probe(n, workers, true)?;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Steps down from the knee until a size passes every probe, to one
    /// client if it must.
    fn step_down(
        &mut self,
        settings: &SearchSettings,
        workers: usize,
        best: Found,
    ) -> Result<(), Stop<P::Error>> {
        // `below`: the last size probed here; done once it passed every
        // probe (the low end is then near the knee), or at 1 client.
        let mut below = best.capacity;
        let mut step = ((settings.params.tolerance * below as f64) as u32).max(1);
        loop {
            let at = self.outcomes_at(workers);
            let low = interval::interval_of(&at, best.capacity).low;
            if low >= below || below <= 1 {
                return Ok(());
            }
            below = below.saturating_sub(step).max(1);
            step *= 2;
            for _ in 0..settings.confirm.max(1) {
                self.probe(below, workers, true)?;
            }
        }
    }

    /// When the server failed above the knee only within the margin, probes
    /// higher (growing steps, to the search's bound) until a size fails
    /// clearly, so its limit has a closed interval.
    fn close_above(
        &mut self,
        settings: &SearchSettings,
        workers: usize,
        best: Found,
    ) -> Result<(), Stop<P::Error>> {
        let max = settings.params.max_clients;
        let mut up = best.next.unwrap_or(best.capacity);
        let mut step = ((settings.params.tolerance * up as f64) as u32).max(1);
        while best.limited_by.servers() && up < max {
            let at = self.outcomes_at(workers);
            if interval::interval_of(&at, best.capacity).high.is_some() {
                break;
            }
            up = (up + step).min(max);
            step *= 2;
            self.probe(up, workers, true)?;
        }
        Ok(())
    }

    /// Searches the pair (every worker count) and records it, its knee
    /// still to be confirmed in `settings.confirm` rounds (at least one,
    /// which steps down to a size that passes every probe) by
    /// [`Pair::confirm_round`]: the caller spreads the rounds over the run,
    /// so that a knee's repeats fall at different times of a shared
    /// machine, not back to back.
    pub fn search(mut self, settings: &SearchSettings) -> Result<CapacityRecord, Stop<P::Error>> {
        let (sweep, io_waits, sweep_stop) = self.sweep(settings)?;
        let (workers, found) = best(&sweep);
        let searched = Searched {
            workers,
            found,
            sweep: sweep
                .into_iter()
                .map(|(workers, f)| SweepPoint {
                    workers,
                    capacity: f.capacity,
                    next: f.next,
                    limited_by: f.limited_by,
                })
                .collect(),
            io_waits,
            sweep_stop,
        };
        Ok(self.finish(
            searched,
            settings.confirm.max(1),
            settings.params.max_clients,
        ))
    }

    /// One confirmation round of `searched` (this pair's record, whose
    /// probes this pair starts from): the capacity and the size above its
    /// interval probed again (unless `--confirm 0`); in the last round the
    /// step down to a size that passes every probe and, where only
    /// marginal failures lie above, up to a clear one.
    pub fn confirm_round(
        mut self,
        settings: &SearchSettings,
        searched: CapacityRecord,
    ) -> Result<CapacityRecord, Stop<P::Error>> {
        let rounds_left = searched.rounds_left.saturating_sub(1);
        let searched = Searched::of(searched);
        let (workers, found) = (searched.workers, searched.found);
        if settings.confirm > 0 {
            self.repeat_knee(workers, found)?;
        }
        if rounds_left == 0 {
            self.step_down(settings, workers, found)?;
            self.close_above(settings, workers, found)?;
        }
        Ok(self.finish(searched, rounds_left, settings.params.max_clients))
    }

    /// The record of the pair from every probe so far, its interval
    /// widened by the machine's speed spread up to the search's `bound`.
    fn finish(self, searched: Searched, rounds_left: u32, bound: u32) -> CapacityRecord {
        let Searched { workers, found, .. } = searched;
        let at = self.outcomes_at(workers);
        let interval = interval::interval_of(&at, found.capacity).widened(self.speed_spread, bound);
        let clients = interval::point_of(&at, found.capacity);
        let limited_by = final_limit(found.limited_by, &interval);
        let knee: Vec<&CellResult> = self
            .probes
            .iter()
            .filter(|p| p.workers == workers && p.clients == clients && p.outcome == Outcome::Pass)
            .map(|p| &self.cells()[p.cell])
            .collect();
        let range =
            |f: fn(&CellResult) -> f64| Range::of(&knee.iter().map(|c| f(c)).collect::<Vec<_>>());
        let cpu_us = range(|c| c.derived.cpu_us_per_packet);
        let projected = match (limited_by, self.config.rate) {
            (LimitedBy::Generator, Rate::Hz(hz)) => {
                Projection::of(clients, cpu_us.median, self.config.server_cpus.len(), hz)
            }
            _ => None,
        };
        let attribution = Attribution::of(
            &knee
                .iter()
                .filter_map(|c| c.server.as_ref())
                .collect::<Vec<_>>(),
            &self.plan,
        );
        CapacityRecord {
            model: self.model.to_string(),
            workload: self.workload.to_string(),
            workers,
            clients,
            interval,
            limited_by,
            slo: self.slo.label(),
            p99_ns: range(|c| c.derived.p99_ns as f64).median as u64,
            service_p99_ns: range(|c| c.derived.service_p99_ns as f64).median as u64,
            cpu_us,
            pss_kib: range(|c| c.derived.peak_pss_kib as f64),
            io_waits: searched.io_waits,
            sweep: searched.sweep,
            sweep_stop: searched.sweep_stop,
            rounds_left,
            probes: self.probes,
            equal_load: None,
            projected,
            attribution,
            past_knee: None,
            common_load: None,
        }
    }

    /// Every outcome so far at `workers`.
    fn outcomes_at(&self, workers: usize) -> Vec<interval::Seen> {
        self.probes
            .iter()
            .filter(|p| p.workers == workers)
            .map(|p| (p.clients, p.outcome, p.marginal))
            .collect()
    }

    /// How busy the server of cell `index` was: its CPU over the window as
    /// a share of the server's CPUs.
    fn util(&self, index: usize) -> f64 {
        let cpus = self.config.server_cpus.len().max(1) as f64;
        self.cells()[index].derived.server_cpu_pct / 100.0 / cpus
    }

    /// Server utilisation of the passing probe at `clients` (0 if none).
    fn util_at(&self, clients: u32, workers: usize) -> f64 {
        self.probes
            .iter()
            .rev()
            .find(|p| p.clients == clients && p.workers == workers && p.outcome == Outcome::Pass)
            .map_or(0.0, |p| self.util(p.cell))
    }
}

/// The next worker count of a sweep and the size to start its search at:
/// twice the most workers tried, while those did best, gained over fewer
/// and were stopped by the server; else why the sweep stops.
fn next_count(sweep: &[(usize, Found)], quick: bool) -> Result<(usize, u32), String> {
    let (top, at_top) = *sweep
        .iter()
        .max_by_key(|(w, _)| *w)
        .ok_or("nothing searched")?;
    let (best_w, _) = best(sweep);
    if best_w != top {
        return Err(format!("{best_w} workers did best; more did not gain"));
    }
    let below = sweep
        .iter()
        .filter(|(w, _)| *w < top)
        .map(|(_, f)| f.capacity)
        .max();
    if below.is_some_and(|b| at_top.capacity <= b) {
        return Err(format!("{top} workers gained nothing over fewer"));
    }
    match at_top.limited_by {
        LimitedBy::Generator => {
            return Err(format!(
                "at {top} workers the generator's bound was reached"
            ))
        }
        LimitedBy::Machine => {
            return Err(format!(
                "at {top} workers the machine's noise stopped the search"
            ))
        }
        LimitedBy::ServerFailed => return Err(format!("at {top} workers the server failed")),
        LimitedBy::Server => {}
    }
    if quick {
        return Err(format!(
            "{top} workers did best; --quick does not follow the gain"
        ));
    }
    if top >= MAX_WORKERS {
        return Err(format!("stopped at the limit of {MAX_WORKERS} workers"));
    }
    Ok(((top * 2).min(MAX_WORKERS), at_top.capacity.max(1)))
}

/// What limited a capacity, from the search's answer and the final
/// interval: the server's only when a size above mostly failed on its
/// account (the interval is then closed), else what bounded the search.
fn final_limit(searched: LimitedBy, interval: &interval::Interval) -> LimitedBy {
    match (searched, interval.high) {
        (l, Some(_)) if l.servers() => l,
        (_, Some(_)) => LimitedBy::Server,
        (l, None) if l.servers() => LimitedBy::Generator,
        (l, None) => l,
    }
}

/// The best of a sweep: most clients; on a tie, the count searched first
/// (the default first).
/// In a quick sweep, the worker count to search once more after the io
/// estimate `first` was tried: the estimate `again` from the knee found
/// there, when `first` did best, the server stopped it and `again` is at
/// least 1.5 times `first` (capped at [`MAX_WORKERS`]); with the size to
/// start at.
fn quick_io_step(sweep: &[(usize, Found)], first: usize, again: usize) -> Option<(usize, u32)> {
    let (w, f) = best(sweep);
    let next = again.min(MAX_WORKERS);
    (w == first && f.limited_by == LimitedBy::Server && 2 * next >= 3 * first && next > first)
        .then_some((next, f.capacity.max(1)))
}

fn best(sweep: &[(usize, Found)]) -> (usize, Found) {
    sweep
        .iter()
        .copied()
        .fold(None::<(usize, Found)>, |acc, (w, f)| match acc {
            Some((_, b)) if b.capacity >= f.capacity => acc,
            _ => Some((w, f)),
        })
        .expect("at least the default count is searched")
}

#[cfg(test)]
mod tests {
    use super::*;
    use interval::Interval;
    use record::verdict::{Cause, Status, Verdict};

    fn found(capacity: u32, limited_by: LimitedBy) -> Found {
        Found {
            capacity,
            next: limited_by.servers().then_some(capacity + 1),
            limited_by,
        }
    }

    #[test]
    fn the_sweep_follows_the_gain_table() {
        use LimitedBy::*;
        // (sweep, quick, next count and seed, or the start of why not)
        type Case = (
            &'static [(usize, u32, LimitedBy)],
            bool,
            Result<(usize, u32), &'static str>,
        );
        let table: [Case; 8] = [
            // Still gaining at the most workers: twice as many, from there.
            (
                &[(1, 10, Server), (4, 20, Server), (40, 72, Server)],
                false,
                Ok((80, 72)),
            ),
            (&[(1, 10, Server)], false, Ok((2, 10))),
            // Fewer did better, or as well: stop.
            (
                &[(1, 10, Server), (4, 30, Server), (8, 20, Server)],
                false,
                Err("4 workers did best"),
            ),
            (
                &[(1, 10, Server), (4, 10, Server)],
                false,
                Err("1 workers did best"),
            ),
            (
                &[(4, 30, Generator)],
                false,
                Err("at 4 workers the generator"),
            ),
            (
                &[(4, 30, ServerFailed)],
                false,
                Err("at 4 workers the server failed"),
            ),
            (
                &[(512, 30, Server), (1024, 40, Server)],
                false,
                Err("stopped at the limit of 1024"),
            ),
            (
                &[(1, 10, Server), (4, 20, Server)],
                true,
                Err("4 workers did best; --quick"),
            ),
        ];
        for (sweep, quick, want) in table {
            let sweep: Vec<(usize, Found)> =
                sweep.iter().map(|&(w, c, l)| (w, found(c, l))).collect();
            let got = next_count(&sweep, quick);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{sweep:?}"),
                (Err(g), Err(w)) => assert!(g.starts_with(w), "{sweep:?}: {g}"),
                (g, w) => panic!("{sweep:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn a_quick_sweep_follows_the_io_estimate_once_more_only_when_it_grew() {
        use LimitedBy::*;
        // (sweep, first io estimate, estimate again from its knee, step)
        type Case = (
            &'static [(usize, u32, LimitedBy)],
            usize,
            usize,
            Option<(usize, u32)>,
        );
        let table: [Case; 6] = [
            // rayon under io: 1 worker, 1 client; 8 workers, 15 clients.
            (&[(1, 1, Server), (8, 15, Server)], 8, 60, Some((60, 15))),
            // Grew too little.
            (&[(1, 1, Server), (8, 15, Server)], 8, 11, None),
            (&[(1, 1, Server), (8, 15, Server)], 8, 12, Some((12, 15))),
            // The estimate did not do best, or the generator stopped it.
            (&[(4, 30, Server), (8, 15, Server)], 8, 60, None),
            (&[(1, 1, Server), (8, 15, Generator)], 8, 60, None),
            // Capped.
            (
                &[(1, 1, Server), (512, 600, Server)],
                512,
                5000,
                Some((1024, 600)),
            ),
        ];
        for (sweep, first, again, want) in table {
            let sweep: Vec<(usize, Found)> =
                sweep.iter().map(|&(w, c, l)| (w, found(c, l))).collect();
            assert_eq!(
                quick_io_step(&sweep, first, again),
                want,
                "{sweep:?} {first} {again}"
            );
        }
    }

    #[test]
    fn only_a_closed_interval_is_the_servers_limit() {
        use LimitedBy::*;
        let closed = Interval {
            low: 8,
            high: Some(9),
        };
        let open = Interval {
            low: 96,
            high: None,
        };
        // (the search's answer, interval, limited by)
        let table = [
            (Server, closed, Server),
            (ServerFailed, closed, ServerFailed),
            // A repeat above failed: the server's, though the search ended
            // at the generator's bound.
            (Generator, closed, Server),
            // The search's bound with no size above failing: never
            // "server", whatever the search said (`96 (77-?)`, `server`).
            (Server, open, Generator),
            (Generator, open, Generator),
            (Machine, open, Machine),
        ];
        for (searched, iv, want) in table {
            assert_eq!(final_limit(searched, &iv), want, "{searched:?} {iv:?}");
        }
    }

    /// What a fake server does at a fleet size: p99 (ns) and verdict causes.
    type Behaviour = Box<dyn FnMut(u32) -> (u64, Vec<Cause>)>;

    /// Probes from a fake server; `later` takes over once the search is done
    /// (the confirmation rounds run at another time of the machine). The
    /// cells are the fixture's valid cell with the fake's p99 and causes,
    /// and a fully busy server (so the ramp doubles).
    struct Fake {
        template: CellResult,
        cells: Vec<CellResult>,
        now: Behaviour,
        later: Option<Behaviour>,
    }

    impl Probes for Fake {
        type Error = ();
        fn cell(&mut self, key: &CellKey) -> Result<(usize, bool), Stop<()>> {
            let (p99, causes) = (self.now)(key.clients);
            let mut c = self.template.clone();
            c.key = key.clone();
            c.derived.p99_ns = p99;
            c.derived.server_cpu_pct = 100.0;
            c.canary = None;
            c.verdict = Verdict {
                status: if causes.is_empty() {
                    Status::Valid
                } else {
                    Status::Invalid
                },
                reasons: causes.iter().map(|c| format!("{c:?}")).collect(),
                causes,
            };
            self.cells.push(c);
            Ok((self.cells.len() - 1, true))
        }
        fn cells(&self) -> &[CellResult] {
            &self.cells
        }
        fn probe_done(&mut self, _: &dyn Fn() -> String) {}
        fn default_workers(&self) -> usize {
            1
        }
        fn worker_candidates(&self, _: usize) -> Vec<usize> {
            vec![1]
        }
    }

    /// Passes up to `cap` clients; above, a latency miss or an overload.
    fn server(cap: u32, overload: bool) -> Behaviour {
        Box::new(move |n| match (n <= cap, overload) {
            (true, _) => (500_000, vec![]),
            (false, false) => (2_000_000, vec![]),
            (false, true) => (500_000, vec![Cause::Overload]),
        })
    }

    fn pair<'a>(
        fake: &'a mut Fake,
        config: &'a RunConfig,
        probes: Vec<ProbeRecord>,
    ) -> Pair<'a, Fake> {
        Pair {
            probes_from: fake,
            config,
            slo: "p99=1ms".parse().unwrap(),
            model: "single",
            workload: "none",
            plan: WorkPlan::none(),
            repeats: repeats_of(&probes),
            probes,
            speed_spread: 0.0,
        }
    }

    /// Searches `now` (tolerance 0, at most 64 clients), then runs every
    /// confirmation round on `later`.
    fn search_and_confirm(rounds: u32, now: Behaviour, later: Behaviour) -> CapacityRecord {
        search_and_confirm_at(rounds, now, later, 0.0)
    }

    /// [`search_and_confirm`] on a machine whose speed spread is `spread`.
    fn search_and_confirm_at(
        rounds: u32,
        now: Behaviour,
        later: Behaviour,
        spread: f64,
    ) -> CapacityRecord {
        let run: record::run::RunFile =
            serde_json::from_str(include_str!("../../record/tests/fixtures/run.json"))
                .expect("fixture");
        let template = run
            .cells
            .iter()
            .find(|c| c.verdict.status == Status::Valid)
            .expect("a valid cell")
            .clone();
        let settings = SearchSettings {
            params: record::capacity::Params {
                max_clients: 64,
                tolerance: 0.0,
            },
            confirm: rounds,
            sweep: false,
            min_samples: 0,
        };
        let mut fake = Fake {
            template,
            cells: Vec::new(),
            now,
            later: Some(later),
        };
        let mut searching = pair(&mut fake, &run.config, Vec::new());
        searching.speed_spread = spread;
        let Ok(mut record) = searching.search(&settings) else {
            panic!("fake probes always run")
        };
        assert_eq!(record.rounds_left, rounds.max(1));
        fake.now = fake.later.take().expect("once");
        while record.rounds_left > 0 {
            let mut confirming = pair(&mut fake, &run.config, record.probes.clone());
            confirming.speed_spread = spread;
            let Ok(r) = confirming.confirm_round(&settings, record) else {
                panic!("fake probes always run")
            };
            record = r;
        }
        record
    }

    #[test]
    fn the_record_allows_for_the_machines_speed() {
        // (spread, interval): 11 failed every probe; 10% faster it may
        // pass, and so may 12 (11 * 1.1 = 12.1): the high end is 12. The
        // capacity stays the size that passed.
        let iv = |low, high| Interval { low, high };
        for (spread, want) in [(0.0, iv(10, Some(10))), (0.1, iv(10, Some(12)))] {
            let r = search_and_confirm_at(1, server(10, false), server(10, false), spread);
            assert_eq!((r.interval, r.clients), (want, 10), "spread {spread}");
        }
    }

    #[test]
    fn confirmation_rounds_table() {
        // The search (ramp 1, 2, 4, 8, 16; then 12, 10, 11) finds 10 with
        // 11 failing. (rounds, search's server, rounds' server, interval,
        // capacity, probes at 10, probes at 11)
        type Case = (u32, Behaviour, Behaviour, Interval, u32, usize, usize);
        let iv = |low, high| Interval { low, high };
        let table: Vec<Case> = vec![
            // Steady: the knee and the next size once more each (a latency
            // miss is retried at once in the search).
            (
                1,
                server(10, false),
                server(10, false),
                iv(10, Some(10)),
                10,
                2,
                3,
            ),
            (
                3,
                server(10, false),
                server(10, false),
                iv(10, Some(10)),
                10,
                4,
                5,
            ),
            // An overload is not retried at once, but is in every round.
            (
                1,
                server(10, true),
                server(10, true),
                iv(10, Some(10)),
                10,
                2,
                2,
            ),
            // The machine is faster later: 11 and 12 pass in the round, so
            // the high end rises to below 16, the next size that failed
            // every time (confirmed in the round too).
            (
                1,
                server(10, false),
                server(12, false),
                iv(10, Some(15)),
                10,
                2,
                3,
            ),
            // Slower later: the knee fails in the round, the low end drops
            // to 8 and the last round steps down (9 fails, 7 passes); the
            // interval still reaches 10, which passed in the search.
            (
                1,
                server(10, false),
                server(8, false),
                iv(8, Some(10)),
                10,
                2,
                3,
            ),
        ];
        for (i, (rounds, now, later, want, point, at10, at11)) in table.into_iter().enumerate() {
            let r = search_and_confirm(rounds, now, later);
            let at = |n| r.probes.iter().filter(|p| p.clients == n).count();
            let sizes: Vec<u32> = r.probes.iter().map(|p| p.clients).collect();
            assert_eq!(
                (r.interval, r.clients, at(10), at(11), r.rounds_left),
                (want, point, at10, at11, 0),
                "case {i}: {sizes:?}"
            );
            assert!(
                r.probes
                    .iter()
                    .filter(|p| p.confirm)
                    .all(|p| sizes.contains(&p.clients)),
                "case {i}"
            );
        }
    }
}
