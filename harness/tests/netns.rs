//! Across network namespaces, as across machines: one namespace for the
//! server and three for fleet shards, each joined to the server's by a veth
//! pair; the shards (`--shard I/3` on one `--start-at`, in ack mode, as
//! across machines) load the server over those links, `harness merge` adds
//! them up, and the cell reconciles exactly: every frame acknowledged once,
//! merged send-lag and round-trip histograms equal to the sums of the
//! shards'. Needs root and `ip netns`; skipped with a one-line reason
//! otherwise. Traffic never leaves the namespaces.

mod util;

use std::process::{Command, Stdio};

use fleet::fleet_report::FleetReport;
use serde_json::Value;
use util::{harness_bin, Server};

const SHARDS: u32 = 3;

/// Namespaces made for the test, deleted (with their veths) on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    assert!(ip(args), "ip {}", args.join(" "));
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario end to end: namespaces up, four processes, reconciled, torn down
fn shards_in_three_namespaces_reconcile_exactly_with_a_fourth() {
    let tag = std::process::id() % 100_000;
    let server_ns = format!("ib{tag}s");
    if !ip(&["netns", "add", &server_ns]) {
        util::cannot_run("cannot create a network namespace (needs root and `ip netns`)");
        return;
    }
    let mut namespaces = Namespaces(vec![server_ns.clone()]);
    must(&["-n", &server_ns, "link", "set", "lo", "up"]);
    for i in 0..SHARDS {
        let ns = format!("ib{tag}f{i}");
        must(&["netns", "add", &ns]);
        namespaces.0.push(ns.clone());
        let (a, b) = (format!("ib{tag}a{i}"), format!("ib{tag}b{i}"));
        must(&[
            "link", "add", &a, "netns", &server_ns, "type", "veth", "peer", "name", &b, "netns",
            &ns,
        ]);
        must(&[
            "-n",
            &server_ns,
            "addr",
            "add",
            &format!("10.77.{i}.1/24"),
            "dev",
            &a,
        ]);
        must(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.77.{i}.2/24"),
            "dev",
            &b,
        ]);
        must(&["-n", &server_ns, "link", "set", &a, "up"]);
        must(&["-n", &ns, "link", "set", &b, "up"]);
        must(&["-n", &ns, "link", "set", "lo", "up"]);
    }

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_under(
        &["ip", "netns", "exec", &server_ns],
        "async",
        &["--listen", "0.0.0.0:7000"],
    );
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        + 500_000_000;
    let shards: Vec<_> = (0..SHARDS)
        .map(|i| {
            let report = dir.path().join(format!("shard-{i}.json"));
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &format!("ib{tag}f{i}"),
                    harness_bin(),
                    "fleet",
                ])
                .args(["--target", &format!("10.77.{i}.1:7000"), "--ack"])
                .args(["--clients", "9", "--rate", "1000", "--duration", "400ms"])
                .args(["--warmup", "100ms", "--batch-window", "1ms"])
                .arg(format!("--shard={i}/{SHARDS}"))
                .arg(format!("--start-at={start_at}"))
                .arg("--report")
                .arg(&report)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, report)
        })
        .collect();
    let mut parts: Vec<FleetReport> = Vec::new();
    let mut paths = Vec::new();
    for (child, report) in shards {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parts.push(serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap());
        paths.push(report);
    }
    let server_report = server.stop();
    let server_path = dir.path().join("server.json");
    std::fs::write(&server_path, serde_json::to_vec(&server_report).unwrap()).unwrap();
    let out = dir.path().join("cell.json");
    let merge = Command::new(harness_bin())
        .arg("merge")
        .args(&paths)
        .arg("--server")
        .arg(&server_path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let cell: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let verdict = &cell["verdict"];
    // A busy 2-core machine may stall a pacing thread: then the one reason
    // is the generator's, never loss.
    assert!(
        merge.status.success() || verdict["reasons"] == serde_json::json!(["generator_saturated"]),
        "{verdict}"
    );

    let rec = &cell["reconciliation"];
    assert_eq!(
        (
            rec["lost"].as_u64(),
            rec["excess"].as_u64(),
            rec["unread"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{rec}"
    );
    assert!(rec["mismatched"].as_array().unwrap().is_empty(), "{rec}");
    assert_eq!(
        server_report.clients.len(),
        9,
        "every client reached the server"
    );
    let sent: u64 = parts.iter().map(|p| p.sent.measured).sum();
    assert_eq!(sent, server_report.packets.measured);

    // Ack mode: every frame acknowledged exactly once, by the server's
    // count and by each shard's, with a round trip for each measured one;
    // the server's one-way latency is not claimed across namespaces.
    let all: u64 = parts.iter().map(|p| p.sent.measured + p.sent.warmup).sum();
    let merged: FleetReport = serde_json::from_value(cell["fleet"].clone()).unwrap();
    let acks = merged.acks.as_ref().expect("ack mode");
    assert!(acks.counts.exact(), "{:?}", acks.counts);
    assert_eq!(acks.counts.acked, all);
    assert_eq!(acks.round_trip_ns.count, sent);
    assert_eq!(
        (server_report.acks.frames, server_report.acks.dropped),
        (all, 0)
    );
    assert_eq!(cell["one_way_latency"], false);

    // The merged histograms are the sums of the shards'.
    type Of = fn(&FleetReport) -> &common::LatencySummary;
    let histograms: [(&str, Of); 2] = [
        ("send lag", |r| &r.send_lag_ns),
        ("round trip", |r| &r.acks.as_ref().unwrap().round_trip_ns),
    ];
    for (what, of) in histograms {
        let mut sum = common::latency::new_latency_histogram();
        for p in &parts {
            sum.add(of(p).histogram().unwrap()).unwrap();
        }
        let m = of(&merged).histogram().unwrap();
        assert_eq!(m.len(), sum.len(), "{what}");
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                m.value_at_quantile(q),
                sum.value_at_quantile(q),
                "{what} q{q}"
            );
        }
    }
    eprintln!(
        "netns cell: {} frames, round trip p50 {} ns p99 {} ns, verdict {verdict}",
        server_report.packets.measured, acks.round_trip_ns.p50, acks.round_trip_ns.p99
    );
    drop(namespaces);
}
