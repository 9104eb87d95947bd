//! report.html from the recorded capacity run: one self-contained page
//! (nothing fetched, every plot inlined), the recommendation table and
//! sentences of summary.md, every probe behind each capacity in a
//! `<details>`, and the run's data as JSON that parses back.

use std::path::Path;

use record::run::RunFile;

fn fixture() -> RunFile {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../record/tests/fixtures/capacity-run.json");
    RunFile::load(&path).unwrap()
}

/// The text between `open` and the next `close` after it.
fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let start = s.find(open).unwrap_or_else(|| panic!("no {open:?}")) + open.len();
    let end = s[start..]
        .find(close)
        .unwrap_or_else(|| panic!("no {close:?}"))
        + start;
    &s[start..end]
}

#[test]
fn the_html_report_is_self_contained_and_holds_every_probe() {
    let run = fixture();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("results").join(&run.run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let written = report::render(&run, &run_dir, &dir.path().join("plots")).unwrap();
    let html = std::fs::read_to_string(&written.html).unwrap();
    assert_eq!(written.html, run_dir.join("report.html"));
    // Nothing fetched: no external source, stylesheet or script.
    for external in ["src=\"http", "href=\"http", "<link", "<script src", "url("] {
        assert!(!html.contains(external), "fetches {external:?}");
    }
    // Every plot inlined, none left as a file link.
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        written.plots.len()
    );
    assert_eq!(
        html.matches("<img src=\"").count(),
        html.matches("<img src=\"data:").count(),
        "a plot left as a link"
    );
    // summary.md's recommendation, rendered.
    assert!(html.contains("<h2>Recommendation</h2>"));
    for (workload, rec) in record::run::recommendations(&run) {
        assert!(
            html.contains(&format!("<strong>{workload}</strong>")),
            "{workload}"
        );
        assert!(!rec.headline().is_empty());
    }
    // Every probe of every capacity, one click away.
    for r in &run.capacities {
        let open = format!(
            "<details class=\"probes\" data-model=\"{}\" data-workload=\"{}\">",
            r.model, r.workload
        );
        let details = between(&html, &open, "</details>");
        let label = r
            .interval
            .label(r.clients)
            .replace('>', "&gt;")
            .replace('<', "&lt;");
        assert!(details.contains(&label), "{label}");
        assert_eq!(
            details.matches("<tr class=\"probe\">").count(),
            r.probes.len(),
            "{}/{}",
            r.model,
            r.workload
        );
    }
    // The data, as JSON that parses back to the same capacities.
    let json = between(
        &html,
        "<script type=\"application/json\" id=\"run-data\">",
        "</script>",
    );
    let data: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(data["run_id"], run.run_id.as_str());
    assert_eq!(
        data["capacities"].as_array().unwrap().len(),
        run.capacities.len()
    );
    assert_eq!(data["cells"].as_array().unwrap().len(), run.cells.len());
}
