//! The harness under faults: killed with SIGKILL it leaves no orphan server
//! or fleet and a run that `--resume` completes; SIGTERM stops its children
//! at once and keeps what finished; an interrupted capacity search resumes
//! by replaying the probes it has. Also: the fleet loads another host only
//! when told to.

mod util;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use util::harness_bin;

fn harness(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(harness_bin());
    cmd.args(args)
        .args([
            "--batch-window",
            "1ms",
            "--rate",
            "1000",
            "--warmup",
            "100ms",
            "--drain-timeout",
            "2s",
        ])
        .arg("--results-dir")
        .arg(dir.join("results"))
        .arg("--plots-dir")
        .arg(dir.join("plots"))
        .arg("--logs-dir")
        .arg(dir.join("logs"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The run's saved run.json, once it has at least `cells` cells.
fn saved(dir: &Path, cells: usize) -> Option<Value> {
    // The run's folder, beside the machine's cached calibrations.
    let run_dir = std::fs::read_dir(dir.join("results"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())?;
    let text = std::fs::read_to_string(run_dir.join("run.json")).ok()?;
    let run: Value = serde_json::from_str(&text).ok()?;
    (run["cells"].as_array()?.len() >= cells).then_some(run)
}

fn wait_for(dir: &Path, cells: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(run) = saved(dir, cells) {
            return run;
        }
        assert!(Instant::now() < deadline, "{cells} cells never saved");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn no_orphans_within(dir: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = util::processes_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "orphans: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

#[test]
fn sigkill_leaves_no_orphans_and_a_run_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "single",
        "--clients",
        "1",
        "--repeat",
        "3",
        "--duration",
        "1s",
    ];
    let mut child = harness(dir.path(), &args).spawn().unwrap();
    // Mid-way through the second cell: its server and fleet are running.
    wait_for(dir.path(), 1);
    util::wait_until("the second cell's fleet", || {
        util::fleet_running_under(dir.path())
    });
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();
    no_orphans_within(dir.path(), Duration::from_secs(2));
    let run = saved(dir.path(), 1).unwrap();
    let id = run["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        run["complete"], false,
        "killed during its second of three cells"
    );
    let status = harness(dir.path(), &["--resume", &id]).status().unwrap();
    assert!(status.success());
    let run = saved(dir.path(), 3).unwrap();
    assert_eq!(run["complete"], true);
}

#[test]
fn sigterm_stops_the_children_at_once_and_keeps_finished_cells() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "single",
        "--clients",
        "1",
        "--repeat",
        "3",
        "--duration",
        "3s",
    ];
    let mut child = harness(dir.path(), &args).spawn().unwrap();
    wait_for(dir.path(), 1);
    util::wait_until("the second cell's fleet", || {
        util::fleet_running_under(dir.path())
    });
    let sent = Instant::now();
    signal(&child, Signal::SIGTERM);
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    // Counted, not timed on this shared machine: the run stopped well
    // before its next 3 s cell could have finished, and left nothing.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    no_orphans_within(dir.path(), Duration::from_secs(2));
    let run = saved(dir.path(), 1).unwrap();
    assert_eq!(
        run["complete"], false,
        "stopped during its second of three cells"
    );
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        run["cells"].as_array().unwrap().len(),
        1,
        "the cut cell is not kept"
    );
}

#[test]
fn an_interrupted_search_resumes_by_replaying_its_probes() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "capacity",
        "--model",
        "single",
        "--work",
        "cpu:200us",
        "--quick",
        "--duration",
        "250ms",
        "--search-max",
        "64",
        "--min-samples",
        "0",
    ];
    let mut child = harness(dir.path(), &args).spawn().unwrap();
    // A third probe under way: the search (capacity 4 or 5, from 1
    // client up) is far from done.
    wait_for(dir.path(), 2);
    util::wait_until("the third probe's fleet", || {
        util::fleet_running_under(dir.path())
    });
    signal(&child, Signal::SIGINT);
    let status = child.wait().unwrap();
    let run = saved(dir.path(), 2).unwrap();
    assert_eq!(status.code(), Some(130), "interrupted during a probe");
    let before = run["cells"].as_array().unwrap().clone();
    let id = run["run_id"].as_str().unwrap().to_string();
    let status = harness(dir.path(), &["--resume", &id]).status().unwrap();
    assert!(status.success());
    let run = saved(dir.path(), 2).unwrap();
    assert_eq!(run["complete"], true);
    let cells = run["cells"].as_array().unwrap();
    // The probes run before the interruption are kept and reused as they
    // were, not run again.
    assert_eq!(&cells[..before.len()], &before[..]);
    // Every cell is a probe of the search, a probe past its knee or the
    // bare loop's at a floor load, once.
    let cap = &run["capacities"][0];
    let indices = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array().map_or(Vec::new(), |a| {
            a.iter().map(|x| x["cell"].as_u64().unwrap()).collect()
        })
    };
    let searched = indices(&cap["probes"]);
    let past = indices(&cap["past_knee"]["past"]);
    let floor = indices(&run["floor"]);
    assert!(!floor.is_empty(), "the floor was probed");
    let mut all: Vec<u64> = searched
        .iter()
        .chain(&past)
        .chain(&floor)
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (0..cells.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        searched.len() + floor.len() + past.iter().filter(|c| !searched.contains(c)).count(),
        cells.len()
    );
}

#[test]
fn the_fleet_loads_another_host_only_when_told_to() {
    let out = Command::new(harness_bin())
        .args(["fleet", "--target", "192.0.2.1:9", "--duration", "100ms"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
}

#[test]
fn the_server_raises_its_open_file_limit_and_reports_it() {
    let server = util::Server::start("single", &[]);
    let report = server.stop();
    let l = report.fd_limit;
    assert!(l.hard > 0, "{l:?}");
    assert_eq!(l.soft, l.hard, "{l:?}");
    assert!(l.soft_at_start <= l.soft, "{l:?}");
}
