//! Renders the report from a small checked-in run (a real 8-cell run with
//! its samples trimmed) and checks what a reviewer gets.

use std::path::Path;

use record::run::RunFile;

#[test]
fn fixture_renders_plots_and_a_complete_summary() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../record/tests/fixtures/run.json");
    let run = RunFile::load(&fixture).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("results").join(&run.run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let written = report::render(&run, &run_dir, &dir.path().join("plots")).unwrap();

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
    // Both latencies, the window and the CPU source are in the report.
    for text in ["svc p99", "| window |", "Service latency", "CPU clock"] {
        assert!(md.contains(text), "{text} missing");
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
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../record/tests/fixtures/run.json");
    let one = RunFile::load(&fixture).unwrap();
    // With one repeat nothing can be told from noise: nothing is flagged.
    let mut worse_one = one.clone();
    for c in &mut worse_one.cells {
        c.derived.p99_ns *= 3;
    }
    let cmp = report::compare::compare(&one, &worse_one, Some(10.0));
    assert!(cmp.regressions.is_empty());
    assert!(cmp.markdown.contains("With one repeat"), "{}", cmp.markdown);
    // Two repeats (a second copy of each cell, a little slower): a tripled
    // p99 lies beyond the spread and is flagged.
    let mut a = one.clone();
    a.config.repeat = 2;
    for c in &one.cells {
        let mut again = c.clone();
        again.key.repeat = 1;
        again.derived.p99_ns += again.derived.p99_ns / 10;
        a.cells.push(again);
    }
    let mut b = a.clone();
    for c in &mut b.cells {
        c.derived.p99_ns *= 3;
    }
    let same = report::compare::compare(&a, &a, Some(10.0));
    assert!(same.regressions.is_empty());
    let worse = report::compare::compare(&a, &b, Some(10.0));
    assert_eq!(worse.regressions.len(), one.cells.len());
    assert!(worse.markdown.contains("%*"), "{}", worse.markdown);
}

#[test]
fn loading_a_run_recomputes_figures_and_verdicts() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../record/tests/fixtures/run.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    // Stale derived figures and verdicts, as an older version saved them.
    for cell in json["cells"].as_array_mut().unwrap() {
        cell["verdict"] = serde_json::json!({"status": "valid", "reasons": []});
        cell["derived"]["achieved_pps"] = serde_json::json!(1e12);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let run = RunFile::load(&path).unwrap();
    let original = RunFile::load(&fixture).unwrap();
    for (a, b) in run.cells.iter().zip(&original.cells) {
        assert_eq!(a.verdict, b.verdict, "{}", a.key.id());
        assert_eq!(a.derived.achieved_pps, b.derived.achieved_pps);
        assert!(a.derived.achieved_pps < 1e6);
    }
    let overloaded = run
        .cells
        .iter()
        .find(|c| c.key.id() == "single-io-10c-r0")
        .unwrap();
    assert_eq!(
        overloaded.verdict.status,
        record::verdict::Status::Overloaded
    );
}
