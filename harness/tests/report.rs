//! Renders the report from a small checked-in run (a real 8-cell run with
//! its samples trimmed) and checks what a reviewer gets.

use std::path::Path;

use harness::bench::results::RunFile;

#[test]
fn fixture_renders_plots_and_a_complete_summary() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run.json");
    let run = RunFile::load(&fixture).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("results").join(&run.run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let written = harness::report::render(&run, &run_dir, &dir.path().join("plots")).unwrap();

    // Five plots per workload (throughput, latency, cpu, memory, spectrum).
    assert_eq!(written.plots.len(), 5 * run.config.workloads.len());
    for png in &written.plots {
        let img = image::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!(
            (img.width(), img.height()),
            (1200, 800),
            "{}",
            png.display()
        );
    }

    let md = std::fs::read_to_string(&written.summary).unwrap();
    for model in &run.config.models {
        assert!(
            md.contains(&format!("| {model} |")),
            "model {model} missing"
        );
    }
    for w in &run.config.workloads {
        assert!(
            md.contains(&format!("## Workload `{}`", w.name)),
            "workload {} missing",
            w.name
        );
    }
    for section in [
        "## Method",
        "## Recommendation",
        "**What this shows.**",
        "## Cells that are not valid",
    ] {
        assert!(md.contains(section), "{section} missing");
    }
    // Plots are linked relative to the summary and exist there.
    let link = format!("../../plots/{}/io-latency.png", run.run_id);
    assert!(md.contains(&link), "no relative plot link {link}");
    assert!(run_dir.join(&link).exists());
    // The overloaded cell of the fixture is named with its reason.
    assert!(md.contains("`single-io-10c-r0`: overloaded ("), "{md}");
}

#[test]
fn compare_flags_changes_beyond_the_limit() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run.json");
    let a = RunFile::load(&fixture).unwrap();
    let mut b = a.clone();
    for c in &mut b.cells {
        c.derived.p99_ns *= 3;
    }
    let same = harness::report::compare::compare(&a, &a, Some(10.0));
    assert!(same.regressions.is_empty());
    let worse = harness::report::compare::compare(&a, &b, Some(10.0));
    assert_eq!(worse.regressions.len(), a.cells.len());
    assert!(worse.markdown.contains("+200.0%*"));
}
