//! report.html in a real browser: headless Chromium (Debian's `chromium`,
//! which `.ci/run` installs) loads the page from disk with the network
//! off, and its DOM has the recommendation table and every capacity's
//! probes; a screenshot is saved as a CI artefact
//! (`target/ci-artefacts/report-html.png`). Where no Chromium is installed
//! the test says so, and under `CI=true` that fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use record::run::RunFile;

fn fixture() -> RunFile {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../record/tests/fixtures/capacity-run.json");
    RunFile::load(&path).unwrap()
}

/// The first Chromium on PATH.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Headless Chromium on `page` with `args`, the network off; its stdout.
fn headless(browser: &Path, profile: &Path, page: &Path, args: &[&str]) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chromium_shows_the_capacity_table_and_every_probe() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test cannot reach its point under CI: no chromium on PATH (apt-get install chromium)"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium)");
        return;
    };
    let run = fixture();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("results").join(&run.run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let written = report::render(&run, &run_dir, &dir.path().join("plots")).unwrap();
    // The page alone: nothing else beside it to load.
    let alone = dir.path().join("alone.html");
    std::fs::copy(&written.html, &alone).unwrap();
    let profile = dir.path().join("profile");
    let dom = headless(&browser, &profile, &alone, &["--dump-dom"]);
    assert!(dom.contains("<h2>Recommendation</h2>"), "{dom:.2000}");
    assert!(dom.contains("<table>"));
    assert_eq!(
        dom.matches("<details class=\"probes\"").count(),
        run.capacities.len()
    );
    let probes: usize = run.capacities.iter().map(|r| r.probes.len()).sum();
    assert_eq!(dom.matches("<tr class=\"probe\">").count(), probes);
    let artefacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("report-html.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &browser,
        &profile,
        &alone,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400",
        ],
    );
    let img = image::open(&shot).expect("a screenshot");
    assert!(img.width() >= 1000 && img.height() >= 1000);
}
