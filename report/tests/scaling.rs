//! `--scaling`'s report from real runs: the recorded capacity run stands
//! in for the searches at 1 and 2 server CPUs; the table has a column per
//! count with each run's capacity label, `scaling.md` says why it stopped
//! and links one plot per workload.

use std::path::Path;

use record::run::RunFile;

fn fixture() -> RunFile {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../record/tests/fixtures/capacity-run.json");
    RunFile::load(&path).unwrap()
}

#[test]
fn capacity_against_cores_has_a_column_per_count_and_a_plot_per_workload() {
    let one = fixture();
    let mut two = fixture();
    two.config.server_cpus = vec![0, 1];
    two.run_id = "two".into();
    let runs = [one, two];
    let table = report::scaling::table(&runs);
    assert!(
        table.starts_with("| workload | model | 1 CPU | 2 CPUs |"),
        "{table}"
    );
    for r in &runs[0].capacities {
        let label = r.interval.label(r.clients);
        let row = format!("| {} | `{}` | {label} | {label} |", r.workload, r.model);
        assert!(table.contains(&row), "no {row:?} in\n{table}");
    }
    let dir = tempfile::tempdir().unwrap();
    let written = report::scaling::render(
        &runs,
        "stops at 2 server CPUs: a test",
        &dir.path().join("results"),
        &dir.path().join("plots"),
    )
    .unwrap();
    let md = std::fs::read_to_string(&written.summary).unwrap();
    assert!(
        md.contains("The scaling stops at 2 server CPUs: a test."),
        "{md}"
    );
    assert!(md.contains(&table), "{md}");
    assert_eq!(written.plots.len(), runs[0].config.workloads.len());
    for p in &written.plots {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(md.contains(&format!("![{name}](")), "{name} not linked");
        assert!(image::open(p).is_ok(), "{} is not an image", p.display());
    }
}
