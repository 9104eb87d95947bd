//! Helpers shared by the integration tests: a `harness serve` child
//! process, frame builders and blocking test clients.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use models::ServerReport;
use workloads::kernel::cpu_kernel;
use workloads::{Frame, WorkKind};

/// The harness binary under test.
/// A test that cannot reach its point here: under `CI=true` that fails it;
/// elsewhere it says why, and the caller returns.
pub fn cannot_run(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "this test cannot reach its point under CI: {why}"
    );
    eprintln!("skipped: {why}");
}

/// The command lines (`pid: cmd`) of processes whose command line mentions
/// `dir`.
pub fn processes_under(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.to_string_lossy().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

/// Whether a `harness fleet` process whose command line mentions `dir` is
/// running: a cell (or probe) of a run there is under way.
pub fn fleet_running_under(dir: &std::path::Path) -> bool {
    processes_under(dir)
        .iter()
        .any(|cmd| cmd.contains(" fleet "))
}

/// Waits (at most 60 s) until `ready`, failing the test with `what`.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub fn harness_bin() -> &'static str {
    env!("CARGO_BIN_EXE_harness")
}

/// A `harness serve` child process.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its metrics are served (`--metrics`).
    pub metrics: Option<SocketAddr>,
    report: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `model` with extra `serve` arguments and waits for its line.
    pub fn start(model: &str, extra: &[&str]) -> Server {
        Server::start_under(&[], model, extra)
    }

    /// Like [`Server::start`], run through `wrapper` (e.g. `prlimit ...`).
    pub fn start_under(wrapper: &[&str], model: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report.json");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(harness_bin());
                c
            }
            None => Command::new(harness_bin()),
        };
        let mut child = cmd
            .args(["serve", "--model", model, "--report"])
            .arg(&report)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start harness serve");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let metrics = line
            .trim()
            .strip_prefix("metrics on ")
            .map(|m| m.parse().unwrap());
        if metrics.is_some() {
            line.clear();
            reader.read_line(&mut line).unwrap();
        }
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            metrics,
            report,
            _dir: dir,
        }
    }

    /// SIGTERMs the server, checks it exits 0 within 20 s and returns its
    /// report.
    pub fn stop(self) -> ServerReport {
        self.stop_within(Duration::from_secs(20))
    }

    /// [`Server::stop`], allowing `limit` for the exit (a server that must
    /// first finish a full queue of blocking waits).
    pub fn stop_within(mut self, limit: Duration) -> ServerReport {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM; its threads (name, state, kernel wait): {}",
                threads_of(self.child.id())
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "server exited with {status}");
        let text = std::fs::read_to_string(&self.report).expect("report written");
        serde_json::from_str(&text).expect("report parses")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A frame of client `id`.
pub fn frame(id: u32, seq: u32, kind: WorkKind, amount: u32, warmup: bool) -> Frame {
    Frame {
        client_id: id,
        seq,
        send_delay_ns: 0,
        due_ns: workloads::clock::monotonic_ns(),
        kind,
        amount,
        warmup,
        ack: false,
        received_ns: 0,
        started_ns: 0,
    }
}

/// Frames 0..n of client `id`: the first `warm` are warm-up; every third
/// does cpu work, every fifth a short io wait.
pub fn frames(id: u32, n: u32, warm: u32) -> Vec<Frame> {
    (0..n)
        .map(|seq| {
            let (kind, amount) = match seq % 15 {
                0 | 3 | 6 | 9 | 12 => (WorkKind::Cpu, 50 + seq),
                5 | 10 => (WorkKind::Io, 20),
                _ => (WorkKind::None, 0),
            };
            frame(id, seq, kind, amount, seq < warm)
        })
        .collect()
}

/// XOR of the kernel over the cpu frames, as the server must report it.
pub fn digest(frames: &[Frame]) -> u64 {
    frames
        .iter()
        .filter(|f| f.kind == WorkKind::Cpu)
        .fold(0, |acc, f| {
            acc ^ cpu_kernel(f.seq as u64, f.client_id, f.amount)
        })
}

/// Connects with a read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Writes `bytes` in chunks of the given sizes (cycled), pausing now and
/// then so the server really sees frames split at odd boundaries. Stops
/// quietly if the server closed the connection (false then).
pub fn write_split(s: &mut TcpStream, bytes: &[u8], sizes: &[usize]) -> bool {
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = sizes[i % sizes.len()].min(bytes.len() - at);
        if s.write_all(&bytes[at..at + n]).is_err() {
            return false;
        }
        at += n;
        i += 1;
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    true
}

/// Encodes frames back to back.
pub fn encode(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.encode()).collect()
}

/// Half-closes and waits until the server closes its side; true if it did.
pub fn finish(mut s: TcpStream) -> bool {
    let _ = s.shutdown(Shutdown::Write);
    wait_closed(&mut s)
}

/// Reads until the server closes (EOF or reset); false on timeout.
pub fn wait_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true, // reset: closed
        }
    }
}

/// Reads ack records until the server closes: the records, and whether it
/// closed (false on a timeout).
pub fn read_acks(mut s: TcpStream) -> (Vec<workloads::ack::Ack>, bool) {
    let mut reader = workloads::ack::AckReader::new();
    let mut acks = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (acks, true),
            Ok(n) => reader
                .feed(&buf[..n], |a| acks.push(a))
                .expect("well-formed ack records"),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (acks, false)
            }
            Err(_) => return (acks, true),
        }
    }
}

/// A short paced fleet (1 kHz per client, 100 ms warm-up, 400 ms window,
/// 1 ms batches) of `clients` clients with ids from `client_id_base`.
pub fn fleet_config(
    target: SocketAddr,
    clients: u32,
    client_id_base: u32,
) -> harness::fleet::FleetConfig {
    use harness::fleet::{FleetConfig, Rate, DEFAULT_CONNECT_TRIES};
    FleetConfig {
        target,
        clients,
        client_id_base,
        rate: Rate::Hz(1_000),
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(400),
        count: None,
        batch_window: Duration::from_millis(1),
        arrival: harness::fleet::Arrival::Constant,
        seed: 0,
        reconnect_every: None,
        work: workloads::WorkPlan::none(),
        threads: 1,
        cpus: None,
        drain_timeout: Duration::from_secs(3),
        max_lag: Duration::from_millis(50),
        connect_tries: DEFAULT_CONNECT_TRIES,
        shard: None,
        start_at_unix_ns: None,
        ack: false,
        shared_clock: true,
    }
}

/// A loopback port free now (for a listener a child opens next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET url`, or why not.
pub fn http_get(url: &str) -> Result<String, String> {
    ureq::get(url)
        .timeout(Duration::from_secs(5))
        .call()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|e| e.to_string())
}

/// The value of the sample `series` (name and labels exactly as exposed,
/// e.g. `ingest_server_connections_total{event="closed",model="single"}`)
/// in an OpenMetrics text body.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The first Chromium on PATH.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Headless Chromium on `url` with `args`, stopped after `stop_ms` (a page
/// with a stream open never goes idle); its stdout.
pub fn headless(
    browser: &std::path::Path,
    profile: &std::path::Path,
    url: &str,
    stop_ms: u32,
    args: &[&str],
) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--timeout={stop_ms}"))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each thread of process `pid` as `name state wchan`, from procfs: where a
/// server that does not stop is stuck.
fn threads_of(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "(gone)".into();
    };
    let mut out: Vec<String> = tasks
        .flatten()
        .map(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            let stat = read("stat");
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            format!(
                "{} {} {}",
                read("comm").trim(),
                state.unwrap_or("?"),
                read("wchan").trim()
            )
        })
        .collect();
    out.sort();
    out.join("; ")
}
