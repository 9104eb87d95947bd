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
    let out = dir.path().join("cell/merged.json");
    let run = Command::new(harness_bin())
        .arg("merge")
        .args(&paths)
        .arg("--server")
        .arg(&server_path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(text.contains("verdict:  valid"), "{text}");
    let cell: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(cell["fleet"]["clients"].as_array().unwrap().len(), 6);
    assert_eq!(
        cell["fleet"]["sent"]["measured"].as_u64().unwrap(),
        report.packets.measured
    );
    let rec = &cell["reconciliation"];
    assert_eq!(
        (rec["lost"].as_u64(), rec["excess"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(rec["mismatched"].as_array().unwrap().is_empty());

    let shared = Command::new(harness_bin())
        .arg("merge")
        .args([&paths[0], &paths[0]])
        .output()
        .unwrap();
    assert!(!shared.status.success());
    assert!(String::from_utf8_lossy(&shared.stderr).contains("--client-id-base"));
}
