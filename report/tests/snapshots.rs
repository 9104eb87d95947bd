//! Snapshots of what a reader sees, rendered from the checked-in runs (a
//! fixed matrix, `fixtures/run.json`, and a capacity search,
//! `fixtures/capacity-run.json`): the terminal table and summary.md, each
//! through its `report::Output`. Any
//! change to a report shows in review as a change to `snapshots/`
//! (`cargo insta review`, or `INSTA_UPDATE=always` to accept).

use std::path::Path;

use record::run::RunFile;

fn fixture(name: &str) -> RunFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../record/tests/fixtures")
        .join(name);
    RunFile::load(&path).unwrap()
}

/// summary.md as `harness report` writes it for `run`.
fn summary(run: &RunFile) -> String {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("results").join(&run.run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let written = report::render(run, &run_dir, &dir.path().join("plots")).unwrap();
    std::fs::read_to_string(written.summary).unwrap()
}

#[test]
fn a_fixed_matrix_renders_as_before() {
    let run = fixture("run.json");
    insta::assert_snapshot!("matrix_table", report::terminal_table(&run));
    insta::assert_snapshot!("matrix_summary", summary(&run));
}

#[test]
fn a_capacity_search_renders_as_before() {
    let run = fixture("capacity-run.json");
    insta::assert_snapshot!("capacity_table", report::terminal_table(&run));
    insta::assert_snapshot!("capacity_summary", summary(&run));
}
