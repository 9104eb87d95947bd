//! `--live [ADDR]`: a local web page that follows a run as it goes: the
//! search's progress and its estimate, every probe's verdict as it lands,
//! the current probe's processed rate, p99 and CPU as moving charts (from
//! the server's own `--metrics`, scraped every [`SCRAPE_EVERY`]), and the
//! capacity table and a capacity chart per workload filling in. Served by axum from a thread of the harness
//! (never the server's CPUs); the page gets the run's state as server-sent
//! events (`/events`), and the same JSON at `/state`.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use record::capacity::CapacityRecord;
use record::cell::{CellKey, CellResult};
use serde::Serialize;

pub use crate::live_scrape::{Sample, Scrape};

/// How often the current probe's server is scraped and the page updated.
pub const SCRAPE_EVERY: Duration = Duration::from_millis(250);
/// The page, self-contained (no script or style from the network).
const PAGE: &str = include_str!("live_page.html");

/// The run as the page shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveView {
    /// The run's id.
    pub run_id: String,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Probes done, and expected in all (an estimate refined as it goes).
    pub probes_done: u64,
    /// Probes expected in all.
    pub probes_expected: u64,
    /// Seconds left, from the pace so far.
    pub eta_s: Option<f64>,
    /// The probe running now.
    pub current: Option<CurrentProbe>,
    /// The probe that landed last, with its samples (the charts show it
    /// while the one running now has too few: quick probes last a few
    /// scrapes).
    pub last: Option<CurrentProbe>,
    /// Every probe landed, in order.
    pub probes: Vec<ProbeRow>,
    /// Capacities found so far.
    pub capacities: Vec<CapacityRow>,
    /// The run has ended.
    pub finished: bool,
}

/// The probe running now and what its server has done so far.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CurrentProbe {
    /// model, workload, workers, clients.
    pub label: String,
    /// One sample per scrape.
    pub samples: Vec<Sample>,
}

/// A probe that landed.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeRow {
    /// Its cell's id.
    pub id: String,
    /// model, workload, workers, clients.
    pub label: String,
    /// valid, overloaded or invalid.
    pub verdict: String,
    /// Frames processed per second in the window.
    pub achieved: f64,
    /// p99 latency, ms.
    pub p99_ms: Option<f64>,
    /// Server CPU per frame, us.
    pub cpu_us: Option<f64>,
}

/// A capacity found.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityRow {
    /// Model.
    pub model: String,
    /// Workload.
    pub workload: String,
    /// The capacity with its interval, as summary.md writes it.
    pub capacity: String,
    /// The capacity, clients.
    pub clients: u32,
    /// The interval's low end.
    pub low: u32,
    /// The interval's high end (`None`: the generator's bound).
    pub high: Option<u32>,
    /// Its worker count.
    pub workers: usize,
    /// Probes behind it.
    pub probes: usize,
}

/// The page's server and the state it shows.
pub struct Live {
    view: Mutex<LiveView>,
    started: Instant,
    addr: SocketAddr,
}

impl Live {
    /// Serves the page on `addr` from a thread of its own.
    pub fn start(addr: SocketAddr, run_id: &str) -> Result<Arc<Live>> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} for --live; pick another address"))?;
        let live = Arc::new(Live {
            view: Mutex::new(LiveView {
                run_id: run_id.to_string(),
                ..LiveView::default()
            }),
            started: Instant::now(),
            addr: listener.local_addr().context("read the --live address")?,
        });
        let state = live.clone();
        std::thread::Builder::new()
            .name("live".into())
            .spawn(move || {
                if let Err(e) = serve(listener, state) {
                    eprintln!("live page: {e:#}");
                }
            })
            .context("start the live page's thread")?;
        Ok(live)
    }

    /// Where the page is.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn update(&self, f: impl FnOnce(&mut LiveView)) {
        f(&mut self.view.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The state now.
    pub fn view(&self) -> LiveView {
        let mut v = self.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.elapsed_s = self.started.elapsed().as_secs_f64();
        v
    }

    /// Probes done out of those expected now.
    pub fn progress(&self, done: u64, expected: u64) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.update(|v| {
            v.probes_done = done;
            v.probes_expected = expected.max(done);
            v.eta_s = eta(elapsed, done, expected);
        });
    }

    /// A probe starts.
    pub fn probe_started(&self, key: &CellKey) {
        self.update(|v| {
            v.current = Some(CurrentProbe {
                label: label(key),
                samples: Vec::new(),
            })
        });
    }

    /// A scrape of the current probe's server.
    pub fn sample(&self, s: Sample) {
        self.update(|v| {
            if let Some(c) = &mut v.current {
                c.samples.push(s);
            }
        });
    }

    /// A probe landed.
    pub fn probe_landed(&self, cell: &CellResult) {
        let row = ProbeRow {
            id: cell.key.id(),
            label: label(&cell.key),
            verdict: format!("{:?}", cell.verdict.status).to_lowercase(),
            achieved: cell.derived.achieved_pps,
            p99_ms: cell.server.as_ref().map(|s| s.latency_ns.p99 as f64 / 1e6),
            cpu_us: Some(cell.derived.cpu_us_per_packet).filter(|c| c.is_finite() && *c > 0.0),
        };
        self.update(|v| {
            v.probes.push(row);
            v.last = v.current.take();
        });
    }

    /// A capacity was found.
    pub fn capacity(&self, r: &CapacityRecord) {
        let row = CapacityRow {
            model: r.model.clone(),
            workload: r.workload.clone(),
            capacity: r.interval.label(r.clients),
            clients: r.clients,
            low: r.interval.low,
            high: r.interval.high,
            workers: r.workers,
            probes: r.probes.len(),
        };
        self.update(|v| v.capacities.push(row));
    }

    /// The run ended.
    pub fn finished(&self) {
        self.update(|v| {
            v.finished = true;
            v.current = None;
            v.eta_s = Some(0.0);
        });
    }
}

/// Scrapes a probe's server at `metrics` every `every` until the returned
/// guard drops, each change since the scrape before shown on `live` (if
/// any): what `--live` does, and `--scrape-every` without a page (to
/// measure what watching costs the server).
pub fn follow(metrics: SocketAddr, every: Duration, live: Option<Arc<Live>>) -> Follow {
    let stop = Arc::new(AtomicBool::new(false));
    let done = stop.clone();
    let thread = std::thread::spawn(move || {
        let started = Instant::now();
        let mut last: Option<Scrape> = None;
        while !done.load(Ordering::Relaxed) {
            if last.is_some() {
                std::thread::sleep(every);
            }
            let Some(now) = Scrape::of(metrics) else {
                std::thread::sleep(every);
                continue;
            };
            if let (Some(before), Some(live)) = (&last, &live) {
                live.sample(now.since(before, started.elapsed().as_secs_f64()));
            }
            last = Some(now);
        }
    });
    Follow {
        stop,
        thread: Some(thread),
    }
}

/// Stops following a probe's server when dropped.
pub struct Follow {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Seconds left after `done` probes of `expected` took `elapsed` seconds:
/// the pace so far times the probes left; none before the first.
fn eta(elapsed: f64, done: u64, expected: u64) -> Option<f64> {
    (done > 0).then(|| elapsed / done as f64 * expected.saturating_sub(done) as f64)
}

fn label(key: &CellKey) -> String {
    format!(
        "{} {} w={} @ {} clients",
        key.model,
        key.workload,
        key.workers.map_or("default".into(), |w| w.to_string()),
        key.clients
    )
}

fn serve(listener: TcpListener, live: Arc<Live>) -> Result<()> {
    let app = Router::new()
        .route("/", get(page))
        .route("/state", get(state))
        .route("/events", get(events))
        .with_state(live);
    crate::metrics::serve_router(listener, app)
}

/// The page, the state now written into it.
async fn page(State(live): State<Arc<Live>>) -> impl IntoResponse {
    let json = serde_json::to_string(&live.view()).unwrap_or_else(|_| "null".into());
    // Inside a script element: no `</` may close it early.
    Html(PAGE.replace("/*STATE*/null", &json.replace("</", "<\\/")))
}

async fn state(State(live): State<Arc<Live>>) -> impl IntoResponse {
    Json(live.view())
}

async fn events(
    State(live): State<Arc<Live>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((live, true), |(live, first)| async move {
        if !first {
            tokio::time::sleep(SCRAPE_EVERY).await;
        }
        let event = Event::default()
            .json_data(live.view())
            .unwrap_or_else(|_| Event::default().data("{}"));
        Some((Ok(event), (live, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_pace_so_far_times_the_probes_left() {
        // (elapsed s, done, expected) -> seconds left
        let cases = [
            ((10.0, 0, 20), None),
            ((10.0, 5, 20), Some(30.0)),
            ((10.0, 20, 20), Some(0.0)),
            ((10.0, 25, 20), Some(0.0)), // the estimate was low: none left
        ];
        for ((elapsed, done, expected), want) in cases {
            assert_eq!(
                eta(elapsed, done, expected),
                want,
                "{elapsed} {done} {expected}"
            );
        }
    }
}
