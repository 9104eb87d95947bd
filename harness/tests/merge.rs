//! `harness merge`: two fleets that loaded one server, each with its own
//! client ids, add up to exactly what the server received, with a valid
//! verdict; fleets that share ids are refused with a message saying why.

mod util;

use std::process::Command;

use harness::fleet;
use serde_json::Value;
use util::{fleet_config, harness_bin, Server};

#[test]
fn two_fleets_merge_into_what_the_server_received() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("pool", &[]);
    let addr = server.addr;
    let runs: Vec<_> = [0u32, 100]
        .into_iter()
        .map(|base| std::thread::spawn(move || fleet::run(&fleet_config(addr, 3, base)).unwrap()))
        .collect();
    let mut paths = Vec::new();
    for (i, r) in runs.into_iter().enumerate() {
        let path = dir.path().join(format!("fleet-{i}.json"));
        std::fs::write(&path, serde_json::to_vec(&r.join().unwrap()).unwrap()).unwrap();
        paths.push(path);
    }
    let report = server.stop();
    let server_path = dir.path().join("server.json");
    std::fs::write(&server_path, serde_json::to_vec(&report).unwrap()).unwrap();
    let mut merge = Command::new(harness_bin());
    merge
        .arg("merge")
        .args(&paths)
        .arg("--server")
        .arg(&server_path);
    let (text, cell) = merged_cell(&mut merge, &dir.path().join("cell/merged.json"));
    assert!(text.contains("verdict:  "), "{text}");
    assert_eq!(cell["fleet"]["clients"].as_array().unwrap().len(), 6);
    assert_exact(&cell, report.packets.measured);

    let shared = Command::new(harness_bin())
        .arg("merge")
        .args([&paths[0], &paths[0]])
        .output()
        .unwrap();
    assert!(!shared.status.success());
    assert!(String::from_utf8_lossy(&shared.stderr).contains("--client-id-base"));
}

/// `harness k8s collect`: shard processes (`--shard I/2` on one
/// `--start-at`) print their reports among other log lines, as the fleet
/// pods of the rendered Job do; the collected cell is the whole fleet and
/// reconciles exactly with the server's report found in the same logs.
#[test]
fn k8s_collect_merges_shards_from_their_logs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("async", &[]);
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        + 400_000_000;
    let shards: Vec<_> = (0..2)
        .map(|i| {
            Command::new(harness_bin())
                .args(["fleet", "--target", &server.addr.to_string()])
                .args(["--clients", "5", "--rate", "1000", "--duration", "300ms"])
                .args(["--warmup", "100ms", "--batch-window", "1ms"])
                .arg(format!("--shard={i}/2"))
                .arg(format!("--start-at={start_at}"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut logs = String::new();
    for child in shards {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
        logs.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let report = server.stop();
    logs.push_str("listening on 0.0.0.0:7000\n");
    logs.push_str(&serde_json::to_string_pretty(&report).unwrap());
    let log_path = dir.path().join("kubectl-logs.txt");
    std::fs::write(&log_path, logs).unwrap();
    let mut collect = Command::new(harness_bin());
    collect.args(["k8s", "collect"]).arg(&log_path);
    let (_, cell) = merged_cell(&mut collect, &dir.path().join("cell.json"));
    let ids: Vec<u64> = cell["fleet"]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    assert_exact(&cell, report.packets.measured);
}

/// Runs a merging command with `--out out`: its summary and the cell. The
/// cell must not be invalid, except for a pacing thread stalled by a busy
/// 2-core machine (then the one reason is the generator's, never loss).
fn merged_cell(cmd: &mut Command, out: &std::path::Path) -> (String, Value) {
    let run = cmd.arg("--out").arg(out).output().unwrap();
    let text = String::from_utf8_lossy(&run.stdout).to_string();
    let cell: Value = serde_json::from_slice(
        &std::fs::read(out)
            .unwrap_or_else(|_| panic!("{text}{}", String::from_utf8_lossy(&run.stderr))),
    )
    .unwrap();
    assert!(
        run.status.success()
            || cell["verdict"]["reasons"] == serde_json::json!(["generator_saturated"]),
        "{text}"
    );
    (text, cell)
}

/// The merged fleet sent what the server received, client by client.
fn assert_exact(cell: &Value, server_measured: u64) {
    assert_eq!(
        cell["fleet"]["sent"]["measured"].as_u64(),
        Some(server_measured)
    );
    let rec = &cell["reconciliation"];
    assert_eq!(
        (rec["lost"].as_u64(), rec["excess"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(rec["mismatched"].as_array().unwrap().is_empty(), "{rec}");
}
