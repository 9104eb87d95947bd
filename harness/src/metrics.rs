//! `--metrics ADDR`: live counts as an OpenMetrics text endpoint (`GET
//! /metrics`) for Prometheus, the server's (`harness serve`) and the
//! fleet's (`harness fleet`).
//!
//! `harness serve` forks the exporter before its model starts, so no
//! server thread serves HTTP and `prefork` still forks from a
//! single-threaded parent. The exporter reads the counts the server's
//! threads and children keep in shared memory ([`models::live`]) and the
//! server's process tree in `/proc`; scraping costs the server nothing but
//! the memory those counts are read from. The fleet's exporter is a thread
//! of the fleet, reading what its pacing threads publish
//! ([`fleet::live`]).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use models::live::{self, Counter, Hist, Snapshot};
use nix::unistd::{fork, ForkResult, Pid};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeMetric, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Live slots mapped for a server: threads and children that count at
/// once (a thread that finds none free shares one, still exactly).
const SLOTS: usize = 4_096;

/// Maps the live counts and forks the exporter serving them on `addr`;
/// returns the address it listens on. Call while the process has one
/// thread, before any signal handler is installed (the exporter keeps the
/// default actions, and dies with the server).
pub fn start_server_exporter(addr: SocketAddr, model: &'static str) -> Result<SocketAddr> {
    live::enable(SLOTS).context("enable the live counts for --metrics")?;
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for --metrics; pick another address"))?;
    let bound = listener.local_addr().context("read the metrics address")?;
    let threads = procfs::process::Process::myself()
        .and_then(|p| p.stat())
        .map(|s| s.num_threads)
        .context("read /proc/self/stat")?;
    if threads != 1 {
        bail!("--metrics must start before any thread ({threads} running)");
    }
    let server = nix::unistd::getpid();
    // SAFETY: this process has one thread (checked above), so the child
    // starts from a consistent copy of it; the child only serves HTTP on
    // a runtime of its own and exits.
    match unsafe { fork() }.context("fork the metrics exporter")? {
        ForkResult::Parent { .. } => Ok(bound),
        ForkResult::Child => {
            let code = match exporter_main(listener, model, server) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("metrics exporter: {e:#}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// Serves the fleet's live view on `addr` from a thread of its own,
/// labelled with `shard` (`I/N`); returns the address it listens on.
pub fn start_fleet_exporter(
    addr: SocketAddr,
    live: Arc<fleet::live::FleetLive>,
    shard: String,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for --metrics; pick another address"))?;
    let bound = listener.local_addr().context("read the metrics address")?;
    let mut registry = Registry::with_prefix_and_labels(
        "ingest_fleet",
        [("shard".into(), shard.into())].into_iter(),
    );
    registry.register_collector(Box::new(FleetCollector(live)));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            if let Err(e) = serve_http(listener, Arc::new(registry)) {
                eprintln!("fleet metrics: {e:#}");
            }
        })
        .context("start the metrics thread")?;
    Ok(bound)
}

/// Serves `GET /metrics` from `registry` on a runtime of this thread's own.
fn serve_http(listener: TcpListener, registry: Arc<Registry>) -> Result<()> {
    serve_router(
        listener,
        Router::new()
            .route("/metrics", get(scrape))
            .with_state(registry),
    )
}

/// Serves `app` on `listener` from a single-threaded runtime of this
/// thread's own, until the process ends (the exporters, the live page).
pub(crate) fn serve_router(listener: TcpListener, app: Router) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start an HTTP runtime")?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, app).await
    })?;
    Ok(())
}

/// The exporter process: serves `/metrics` until the server ends.
fn exporter_main(listener: TcpListener, model: &'static str, server: Pid) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .context("ask to end with the server")?;
    if nix::unistd::getppid() != server {
        return Ok(()); // the server ended before the request took
    }
    live::forget_inherited_slot();
    serve_http(
        listener,
        Arc::new(server_registry(model, server.as_raw() as u32)),
    )
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => ([(CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
            .into_response(),
    }
}

/// The registry of a server's metrics: `ingest_server_*`, labelled with
/// the model.
fn server_registry(model: &'static str, server: u32) -> Registry {
    let mut registry = Registry::with_prefix_and_labels(
        "ingest_server",
        [("model".into(), model.into())].into_iter(),
    );
    registry.register_collector(Box::new(ServerCollector {
        server,
        cpu_seen: Mutex::new(HashMap::new()),
    }));
    registry
}

/// Encodes the live counts on each scrape.
#[derive(Debug)]
struct ServerCollector {
    /// The server's pid (its process tree, the exporter left out).
    server: u32,
    /// Largest CPU time seen per process of the tree, ns, so that a child
    /// that ended still counts.
    cpu_seen: Mutex<HashMap<u32, u64>>,
}

impl Collector for ServerCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let snap = live::snapshot().unwrap_or_default();
        encode_counts(&mut enc, &snap)?;
        encode_latencies(&mut enc, &snap)?;
        let (cpu_ns, rss) = self.tree_usage();
        counter(
            &mut enc,
            "cpu",
            "CPU time of the server's processes, every thread",
            Some(Unit::Seconds),
            cpu_ns as f64 / 1e9,
        )?;
        gauge(
            &mut enc,
            "resident_memory",
            "Resident memory of the server's processes",
            Some(Unit::Bytes),
            rss as f64,
        )
    }
}

impl ServerCollector {
    /// CPU time (ns, the most seen of each process) and resident bytes of
    /// the server's process tree, this exporter left out.
    fn tree_usage(&self) -> (u64, u64) {
        let me = std::process::id();
        let mut seen = self.cpu_seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut rss = 0;
        for pid in crate::bench::sample::tree(self.server)
            .into_iter()
            .filter(|&p| p != me)
        {
            if let Some(ns) = crate::bench::sample::process_cpu_ns(pid) {
                let s = seen.entry(pid).or_default();
                *s = (*s).max(ns);
            }
            if let Ok(statm) = procfs::process::Process::new(pid as i32).and_then(|p| p.statm()) {
                rss += statm.resident * procfs::page_size();
            }
        }
        (seen.values().sum(), rss)
    }
}

/// Frames, bytes, errors, connections and acks.
fn encode_counts(enc: &mut DescriptorEncoder, s: &Snapshot) -> std::fmt::Result {
    let received = s.get(Counter::Received);
    let processed = s.get(Counter::Processed);
    counter(enc, "frames_received", "Valid frames read", None, received)?;
    counter(
        enc,
        "frames_processed",
        "Frames whose work is done, warm-up included",
        None,
        processed,
    )?;
    gauge(
        enc,
        "backlog_frames",
        "Frames read and not yet processed",
        None,
        received.saturating_sub(processed) as f64,
    )?;
    counter(
        enc,
        "read",
        "Bytes read",
        Some(Unit::Bytes),
        s.get(Counter::Bytes),
    )?;
    counter(
        enc,
        "reads",
        "Reads (receives, completions) that returned bytes",
        None,
        s.get(Counter::Reads),
    )?;
    counter(
        enc,
        "acked_frames",
        "Frames acknowledged in ack records written",
        None,
        s.get(Counter::AckedFrames),
    )?;
    labelled_counters(
        enc,
        "protocol_errors",
        "Protocol errors (the connection is closed)",
        "reason",
        &live::ERROR_REASONS,
        &s.errors,
    )?;
    labelled_counters(
        enc,
        "connections",
        "Connection events",
        "event",
        &live::CONN_EVENTS,
        &s.conns,
    )?;
    let open =
        s.conns[live::Conn::Accepted as usize].saturating_sub(s.conns[live::Conn::Closed as usize]);
    gauge(
        enc,
        "connections_open",
        "Connections accepted and not yet closed",
        None,
        open as f64,
    )
}

/// The latency, service-latency and stage histograms.
fn encode_latencies(enc: &mut DescriptorEncoder, s: &Snapshot) -> std::fmt::Result {
    let hists = [
        (
            "latency",
            "Due to processed, measured frames",
            Hist::Latency,
        ),
        (
            "service_latency",
            "Written to processed, measured frames",
            Hist::Service,
        ),
    ];
    for (name, help, h) in hists {
        let mut m =
            enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        histogram(&mut m, &s.hists[h as usize])?;
    }
    let mut family = enc.encode_descriptor(
        "stage",
        "Each stage of measured frames (fleet, socket, queue, service), where stages are recorded",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (i, stage) in models::stages::STAGES.iter().enumerate() {
        let labels = [("stage", *stage)];
        let mut m = family.encode_family(&labels)?;
        histogram(&mut m, &s.hists[Hist::Stage as usize + i])?;
    }
    Ok(())
}

fn histogram(
    m: &mut prometheus_client::encoding::MetricEncoder,
    h: &live::BucketCounts,
) -> std::fmt::Result {
    let buckets: Vec<(f64, u64)> = h
        .counts
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let bound = live::bound_seconds(i);
            (if bound.is_finite() { bound } else { f64::MAX }, n)
        })
        .collect();
    m.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.total(), &buckets, None)
}

fn counter<N: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    v: N,
) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, unit.as_ref(), c.metric_type())?)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    v: f64,
) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)
}

fn labelled_counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
    counts: &[u64],
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, &n) in values.iter().zip(counts) {
        let labels = [(label, *value)];
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes the fleet's live view on each scrape.
#[derive(Debug)]
struct FleetCollector(Arc<fleet::live::FleetLive>);

impl Collector for FleetCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let v = self.0.total();
        let mut sent = enc.encode_descriptor(
            "frames_sent",
            "Frames fully written",
            None,
            MetricType::Counter,
        )?;
        for (phase, n) in [("warmup", v.sent_warmup), ("measured", v.sent_measured)] {
            let labels = [("phase", phase)];
            ConstCounter::new(n).encode(sent.encode_family(&labels)?)?;
        }
        gauge(
            &mut enc,
            "frames_behind",
            "Frames due by now and not yet written",
            None,
            v.behind as f64,
        )?;
        counter(&mut enc, "connects", "Connects started", None, v.tries)?;
        counter(
            &mut enc,
            "connect_failures",
            "Connects that failed",
            None,
            v.connect_failures,
        )?;
        counter(
            &mut enc,
            "refusals",
            "Connections the server closed before the first frame",
            None,
            v.refusals,
        )?;
        counter(
            &mut enc,
            "connections_established",
            "Connections that came up and were written to",
            None,
            v.established,
        )?;
        let hists = [
            ("send_lag", "How long after the oldest frame it carried was due each write was issued (measured window)", &v.send_lag),
            ("pacing_lag", "How late a pacing thread woke for a scheduled write", &v.pacing_lag),
            ("round_trip", "Due time to ack of measured frames (ack mode)", &v.round_trip),
        ];
        for (name, help, h) in hists {
            let mut m =
                enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
            histogram(&mut m, h)?;
        }
        Ok(())
    }
}
