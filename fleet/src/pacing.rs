//! Runs a fleet: connects its clients, spreads them over pacing threads that
//! sleep then spin to each due time, and gathers the report ([`run`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use workloads::clock::monotonic_ns;

use crate::client::{self, Client, Step};
use crate::config::FleetConfig;
use crate::fleet_report::FleetReport;
use crate::live::{FleetLive, ThreadView, PUBLISH_EVERY_NS};
use crate::on_schedule;
use crate::schedule::{self, Schedule, SPIN_NS};
use crate::totals::ThreadTotals;
use crate::watch::AckWatch;

/// Time between the last client's first connect and the first due frame
/// (a connect plus the refusal check fit in it).
const START_DELAY_NS: u64 = 20_000_000;
/// First connects are spaced this far apart (at most [`CONNECT_SPREAD_NS`]
/// in all), as one-at-a-time connects would be: a burst of simultaneous
/// connects lets one `prefork` child accept them all.
const CONNECT_SPACING_NS: u64 = 50_000;
const CONNECT_SPREAD_NS: u64 = 10_000_000;

/// Why a fleet could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// No client could connect.
    #[error("cannot connect to {0}: {1}; is a server listening there?")]
    Connect(SocketAddr, std::io::Error),
    /// A pacing thread panicked.
    #[error("a pacing thread failed")]
    Thread,
    /// Ack mode could not set up its watch.
    #[error("cannot watch the connections for acks: {0}")]
    Watch(std::io::Error),
    /// The shared start time has passed or is implausibly far away.
    #[error("--start-at is {0:.1} s from now: give a CLOCK_REALTIME time in ns a few seconds ahead (e.g. $(( $(date +%s) + 10 ))000000000), the same for every shard")]
    StartAt(f64),
    /// Sequence numbers are u32 on the wire.
    #[error("the schedule has {0} frames for one client, more than the 2^32 sequence numbers protocol v2 allows; shorten --duration or --count, or lower --rate")]
    ScheduleTooLong(u64),
}

/// Runs the fleet to completion (schedule, then drain) and reports.
pub fn run(config: &FleetConfig) -> Result<FleetReport, FleetError> {
    run_live(config, None)
}

/// [`run`], its pacing threads publishing on `live` as they go.
pub fn run_live(
    config: &FleetConfig,
    live: Option<Arc<FleetLive>>,
) -> Result<FleetReport, FleetError> {
    // Made before the start is fixed: random arrivals' streams take a
    // moment to draw (a few ns a frame).
    let plan = Schedule::new(config, 0);
    if let Some(n) = plan
        .longest()
        .filter(|&n| n > schedule::MAX_FRAMES_PER_CLIENT)
    {
        return Err(FleetError::ScheduleTooLong(n));
    }
    let clients: Vec<Client> = config
        .indices()
        .into_iter()
        .map(|i| {
            let id = config.client_id_base.wrapping_add(i);
            Client::new(id, i, config)
        })
        .collect();
    // Sleeps may overshoot by the timer slack (50 us by default); pacing
    // threads inherit this setting. Best effort: unprivileged and harmless.
    let _ = nix::sys::prctl::set_timerslack(1);
    let start = monotonic_ns();
    let n = clients.len().max(1) as u64;
    let spacing = CONNECT_SPACING_NS.min(CONNECT_SPREAD_NS / n);
    let t0 = match config.start_at_unix_ns {
        Some(at) => shared_start(at, start)?,
        None => start + spacing * n + START_DELAY_NS,
    };
    let schedule = plan.starting_at(t0);
    let threads = config.threads.clamp(1, clients.len().max(1));
    let mut groups: Vec<Vec<Client>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, c) in clients.into_iter().enumerate() {
        groups[i % threads].push(c);
    }
    let handles: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(t, group)| {
            let schedule = schedule.clone();
            let config = config.clone();
            let live = live.clone().map(|l| (l, t));
            thread::spawn(move || pace(group, &schedule, &config, (start, spacing), live))
        })
        .collect();
    let mut totals = ThreadTotals::default();
    let mut done = Vec::new();
    for h in handles {
        let (clients, t) = h.join().map_err(|_| FleetError::Thread)??;
        totals.merge(&t);
        done.extend(clients);
    }
    // A fleet none of whose clients reached a server is an error, not a
    // report (a server that refused them is a finding and is reported).
    if done
        .iter()
        .all(|c| c.attempts().established == 0 && c.attempts().refusals == 0)
    {
        let e = done
            .iter_mut()
            .find_map(|c| c.take_connect_error())
            .unwrap_or_else(|| std::io::Error::other("no clients"));
        return Err(FleetError::Connect(config.target, e));
    }
    done.sort_by_key(|c| c.index);
    let mut report = FleetReport::new(config, &schedule, &done, &totals);
    report.verdict = on_schedule::fleet_verdict(&report);
    Ok(report)
}

/// One pacing thread: connects each client at `start` plus its index times
/// `spacing`, then wakes it at its next write time, sleeping then spinning
/// for microsecond precision, until every client is done.
fn pace(
    mut clients: Vec<Client>,
    schedule: &Schedule,
    config: &FleetConfig,
    (start, spacing): (u64, u64),
    live: Option<(Arc<FleetLive>, usize)>,
) -> Result<(Vec<Client>, ThreadTotals), FleetError> {
    let mut next_publish = 0;
    let mut totals = ThreadTotals::default();
    let mut watch = match config.ack {
        true => Some(AckWatch::new(clients.len()).map_err(FleetError::Watch)?),
        false => None,
    };
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = clients
        .iter()
        .enumerate()
        .map(|(i, _)| Reverse((start + spacing * i as u64, i)))
        .collect();
    while let Some(Reverse((wake, i))) = heap.pop() {
        match &mut watch {
            Some(w) => w.wait_until(wake, &mut clients, schedule, &mut totals),
            None => wait_until(wake),
        }
        let now = monotonic_ns();
        if clients[i].state == client::ClientState::Sending && wake >= schedule.warm_end {
            totals.record_pacing(now - wake);
        }
        match clients[i].step(now, schedule, config, &mut totals) {
            Step::WakeAt(t) => heap.push(Reverse((t, i))),
            Step::Done => {}
        }
        if let Some(w) = &mut watch {
            w.watch(i, &mut clients[i]);
        }
        if let Some((live, t)) = live.as_ref().filter(|_| now >= next_publish) {
            live.publish(*t, ThreadView::of(&clients, schedule, &totals, now));
            next_publish = now + PUBLISH_EVERY_NS;
        }
    }
    if let Some((live, t)) = &live {
        live.publish(
            *t,
            ThreadView::of(&clients, schedule, &totals, monotonic_ns()),
        );
    }
    Ok((clients, totals))
}

/// The CLOCK_REALTIME instant `after` from now, in ns: a `--start-at` for
/// shards (0 if the clock is before 1970).
pub fn unix_ns_after(after: Duration) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d + after).as_nanos() as u64)
}

/// The CLOCK_MONOTONIC time of the CLOCK_REALTIME instant `at` (ns), which
/// must be ahead of `now` (monotonic) by at least the time to connect and
/// at most an hour.
fn shared_start(at: u64, now: u64) -> Result<u64, FleetError> {
    let ahead = at as i128 - unix_ns_after(Duration::ZERO) as i128;
    if ahead < START_DELAY_NS as i128 || ahead > 3_600_000_000_000 {
        return Err(FleetError::StartAt(ahead as f64 / 1e9));
    }
    Ok(now + ahead as u64)
}

fn wait_until(t: u64) {
    loop {
        let now = monotonic_ns();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > SPIN_NS {
            thread::sleep(Duration::from_nanos(left - SPIN_NS));
        } else {
            std::hint::spin_loop();
        }
    }
}
