//! A real Prometheus (Debian's `prometheus`, which `.ci/run` installs)
//! scrapes `harness serve --metrics` during a short run; through its HTTP
//! API, the frames counter it stored equals the server's own report. With
//! the checked-in recording rules (`deploy/prometheus/rules.yml`) it sums
//! two fleet shards' counters into the frames the server processed.

mod util;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use util::*;

/// A `prometheus` child on a loopback port, killed on drop.
struct Prometheus {
    child: Child,
    api: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Debian's `prometheus` scraping `targets` every 250 ms with
    /// the checked-in recording rules, or says why it cannot.
    fn start(targets: &[String]) -> Result<Prometheus, String> {
        let rules = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/prometheus/rules.yml"
        );
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let config = dir.path().join("prometheus.yml");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 250ms\n  evaluation_interval: 250ms\n\
                 rule_files: ['{rules}']\n\
                 scrape_configs:\n  - job_name: harness\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start `prometheus` ({e}): apt-get install prometheus"))?;
        Ok(Prometheus {
            child,
            api: format!("http://{listen}/api/v1"),
            _dir: dir,
        })
    }

    /// The value of an instant query's first series, if there is one.
    fn query(&self, q: &str) -> Option<f64> {
        let body = http_get(&format!("{}/query?query={}", self.api, encode_query(q))).ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

/// `q` with the characters a query string cannot carry escaped.
fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_frames_the_server_reports() {
    let server = Server::start("single", &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics.unwrap().to_string();
    let prometheus = match Prometheus::start(std::slice::from_ref(&metrics)) {
        Ok(p) => p,
        Err(why) => return cannot_run(&why),
    };
    wait_until("prometheus scrapes the server", || {
        prometheus.query("up{job=\"harness\"}") == Some(1.0)
    });
    let fleet = Command::new(harness_bin())
        .args(["fleet", "--target", &server.addr.to_string()])
        .args(["--clients", "4", "--count", "3000", "--batch-window", "1ms"])
        .output()
        .expect("run harness fleet");
    assert!(fleet.status.success(), "fleet failed: {fleet:?}");
    let frames = "ingest_server_frames_processed_total{model=\"single\"}";
    wait_until("prometheus stores every frame", || {
        prometheus.query(frames) == Some(12_000.0)
    });
    std::thread::sleep(Duration::from_millis(600)); // two more scrapes
    let stored = prometheus.query(frames);
    let rate_query = "sum(increase(ingest_server_frames_received_total[1m]))";
    assert!(prometheus.query(rate_query).is_some(), "no {rate_query}");
    let r = server.stop();
    assert_eq!(r.packets.measured + r.packets.warmup, 12_000);
    assert_eq!(stored, Some((r.packets.measured + r.packets.warmup) as f64));
}

/// Two fleet shards, each with its own endpoint: the recording rule's sum
/// over them is every frame the server processed, and what the shards'
/// reports say they sent.
#[test]
fn the_recording_rule_sums_the_fleet_shards() {
    let server = Server::start("single", &["--metrics", "127.0.0.1:0"]);
    let server_metrics = server.metrics.unwrap().to_string();
    let shard_metrics: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut targets = shard_metrics.clone();
    targets.push(server_metrics);
    let prometheus = match Prometheus::start(&targets) {
        Ok(p) => p,
        Err(why) => return cannot_run(&why),
    };
    wait_until("prometheus scrapes the server", || {
        prometheus.query("up{job=\"harness\"} == 1").is_some()
    });
    let start_at = fleet::unix_ns_after(Duration::from_secs(2)).to_string();
    let dir = tempfile::tempdir().unwrap();
    let shards: Vec<_> = shard_metrics
        .iter()
        .enumerate()
        .map(|(i, metrics)| {
            Command::new(harness_bin())
                .args([
                    "fleet",
                    "--target",
                    &server.addr.to_string(),
                    "--clients",
                    "4",
                ])
                .args([
                    "--count",
                    "2000",
                    "--batch-window",
                    "1ms",
                    "--start-at",
                    &start_at,
                ])
                .args(["--shard", &format!("{i}/2"), "--metrics", metrics])
                .args(["--metrics-linger", "10s", "--report"])
                .arg(dir.path().join(format!("shard-{i}.json")))
                .spawn()
                .expect("start a fleet shard")
        })
        .collect();
    // While the shards linger, their last counts are scraped and summed.
    wait_until("the recorded sum of the shards reaches every frame", || {
        prometheus.query("ingest:fleet_frames_sent:sum") == Some(8_000.0)
    });
    let rate = prometheus.query("ingest:fleet_frames_sent:rate5s");
    assert!(rate.is_some_and(|r| r > 0.0), "no fleet rate: {rate:?}");
    let mut sent = 0;
    for (i, mut shard) in shards.into_iter().enumerate() {
        assert!(shard.wait().unwrap().success(), "shard {i} failed");
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("shard-{i}.json"))).unwrap(),
        )
        .unwrap();
        for c in report["clients"].as_array().unwrap() {
            sent += c["sent"]["measured"].as_u64().unwrap() + c["sent"]["warmup"].as_u64().unwrap();
        }
    }
    assert_eq!(sent, 8_000, "the shards' reports");
    let r = server.stop();
    assert_eq!(r.packets.measured + r.packets.warmup, 8_000);
}

/// The compose profile's Prometheus configuration and its rules, checked
/// by Prometheus's own `promtool`.
#[test]
fn the_compose_profile_config_is_valid() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/prometheus.yml"
    );
    let out = match Command::new("promtool")
        .args(["check", "config", config])
        .output()
    {
        Ok(o) => o,
        Err(e) => return cannot_run(&format!("no promtool ({e}): apt-get install prometheus")),
    };
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 rules found"));
}
