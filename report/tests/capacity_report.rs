//! A capacity run rendered from a checked-in `run.json` (a real `--all
//! --quick` run, trimmed to four models and two workloads by
//! `record/tests/fixtures/trim_capacity_run.py`): the terminal table, summary.md,
//! the recommendation and the recorded rules never disagree. A later run
//! (`capacity-run-stages.json`, its `cpu` workload) has the stages, the common load, the
//! loads past the knee with each client's p99, the server's counts and the floor; the earlier one
//! keeps the check of the tie-break; the projection is checked on both.

use std::path::Path;

use record::capacity::Outcome;
use record::interval;
use record::recommend::Recommendation;
use record::run::RunFile;

fn fixture() -> RunFile {
    fixture_named("capacity-run.json")
}

/// The later run, with stages, loads past the knee and the floor.
fn stages_fixture() -> RunFile {
    fixture_named("capacity-run-stages.json")
}

fn fixture_named(name: &str) -> RunFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../record/tests/fixtures")
        .join(name);
    RunFile::load(&path).unwrap()
}

#[test]
fn every_capacity_is_a_probed_size_inside_its_own_interval() {
    let run = fixture();
    assert!(!run.capacities.is_empty());
    for r in &run.capacities {
        let name = format!("{}/{}", r.model, r.workload);
        let at: Vec<interval::Seen> = r
            .probes
            .iter()
            .filter(|p| p.workers == r.workers)
            .map(|p| (p.clients, p.outcome, p.marginal))
            .collect();
        let knee = r
            .sweep
            .iter()
            .find(|s| s.workers == r.workers)
            .unwrap()
            .capacity;
        // The recorded interval and point are the rules' on the recorded
        // probes, the interval widened by the run's speed spread.
        let bound = run.config.search.as_ref().unwrap().params.max_clients;
        assert_eq!(
            interval::interval_of(&at, knee).widened(run.speed_spread(), bound),
            r.interval,
            "{name}"
        );
        assert_eq!(interval::point_of(&at, knee), r.clients, "{name}");
        if r.clients == 0 {
            assert_eq!(r.interval.label(0), "< 1", "{name}");
            continue;
        }
        assert!(
            at.iter()
                .any(|&(n, o, _)| n == r.clients && o == Outcome::Pass),
            "{name}: capacity {} was never a passing probe",
            r.clients
        );
        assert!(r.interval.low <= r.clients, "{name}");
        assert!(r.interval.high.is_none_or(|h| r.clients <= h), "{name}");
        assert!(
            r.p99_ns > 0 && r.cpu_us.median > 0.0,
            "{name}: figures from the probes"
        );
        // The server's limit is a closed interval; an open one is the
        // generator's or the machine's.
        assert_eq!(
            r.limited_by.servers(),
            r.interval.high.is_some(),
            "{name}: {:?}",
            r.limited_by
        );
    }
}

#[test]
fn the_table_the_summary_and_the_recommendation_agree() {
    let run = fixture();
    let table = report::table::render_capacities(&run);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("results").join(&run.run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let written = report::render(&run, &run_dir, &dir.path().join("plots")).unwrap();
    let md = std::fs::read_to_string(&written.summary).unwrap();
    for r in &run.capacities {
        let label = r.interval.label(r.clients);
        let line = table
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .take(2)
                    .eq([r.workload.as_str(), r.model.as_str()])
            })
            .unwrap_or_else(|| panic!("{}/{} not in the table:\n{table}", r.model, r.workload));
        assert!(line.contains(&label), "table says {line:?}, record {label}");
        assert!(line.contains(r.limited_by.label()), "{line:?}");
        let row = format!(
            "| {} | `{}` | {} | {label} |",
            r.workload, r.model, r.workers
        );
        assert!(md.contains(&row), "summary lacks {row:?}");
    }
    for (workload, rec) in record::run::recommendations(&run) {
        let headline = rec.headline();
        assert!(
            table.contains(&format!("{workload}: {headline}")),
            "{workload}: {headline}\n{table}"
        );
        assert!(
            md.contains(&format!("**{workload}**: {headline}")),
            "{workload}: {headline}"
        );
        let records: Vec<_> = run
            .capacities
            .iter()
            .filter(|r| r.workload == workload)
            .collect();
        // "none" only when no model has a capacity, and a named model has
        // the highest low end or ties with it.
        let any = records.iter().any(|r| r.clients > 0);
        assert_eq!(
            matches!(rec, Recommendation::Nothing { .. }),
            !any,
            "{workload}"
        );
        if let Some(m) = rec.model() {
            let pick = records.iter().find(|r| r.model == m).unwrap();
            for other in &records {
                assert!(
                    !other.interval.clears(&pick.interval),
                    "{workload}: {} clears the pick {m}",
                    other.model
                );
            }
        }
    }
    // Plots for every workload.
    for w in &run.config.workloads {
        let slug = report::labels::slug(&w.name);
        assert!(
            written.plots.iter().any(|p| p
                .to_string_lossy()
                .ends_with(&format!("capacity-{slug}.png"))),
            "{:?}",
            written.plots
        );
    }
}

/// Two runs whose kernels were calibrated apart asked for different cpu
/// work under one spec: their cpu capacities are not compared (neither a
/// change nor "no change"), their io capacities are.
#[test]
fn runs_that_asked_for_different_work_are_not_compared_there() {
    let a = fixture();
    let same = report::compare::compare(&a, &a, None);
    assert!(
        same.markdown.contains("**No change beyond noise**"),
        "{}",
        same.markdown
    );
    let mut b = a.clone();
    for w in b.config.workloads.iter_mut().filter(|w| w.name == "cpu") {
        w.plan.cpu_iters = w.plan.cpu_iters * 13 / 10;
    }
    let cmp = report::compare::compare(&a, &b, Some(1.0));
    let md = &cmp.markdown;
    assert!(
        md.contains("**Workload `cpu` asked for different work**"),
        "{md}"
    );
    assert!(!md.contains("**Workload `io` asked"), "{md}");
    let cpu_rows = md
        .lines()
        .filter(|l| l.starts_with("| cpu |"))
        .collect::<Vec<_>>();
    assert!(!cpu_rows.is_empty());
    assert!(
        cpu_rows.iter().all(|l| l.contains("not compared")),
        "{cpu_rows:?}"
    );
    assert!(
        md.contains("capacities not compared (different work)"),
        "{md}"
    );
    assert!(!md.contains("**No change beyond noise**"), "{md}");
    assert!(cmp.regressions.is_empty(), "{:?}", cmp.regressions);
}

/// Two runs under different arrival processes measured different loads:
/// no workload of theirs is compared.
#[test]
fn runs_under_different_arrivals_or_churn_are_not_compared() {
    let a = fixture();
    let mut b = a.clone();
    b.config.arrival = "poisson".parse().expect("an arrival");
    let cmp = report::compare::compare(&a, &b, Some(1.0));
    for w in &a.config.workloads {
        let said = format!("**Workload `{}` asked for different work** in the two runs (arrivals `constant` and `poisson`)", w.name);
        assert!(cmp.markdown.contains(&said), "{}", cmp.markdown);
    }
    assert!(cmp.regressions.is_empty(), "{:?}", cmp.regressions);
    let mut churned = a.clone();
    churned.config.reconnect_every = Some(100);
    let cmp = report::compare::compare(&a, &churned, Some(1.0));
    let said = "(reconnects none and every 100 frames)";
    assert!(cmp.markdown.contains(said), "{}", cmp.markdown);
    assert!(cmp.regressions.is_empty(), "{:?}", cmp.regressions);
    let md = report::capacity_summary::render(&churned, &[], std::path::Path::new("."));
    assert!(
        md.contains("closing its connection after every 100 frames"),
        "the method and the recommendation name the churn"
    );
}

/// Every tie of the recorded run was broken at one load: each tied model
/// has its figures at one load that every tied model passed (the tie's
/// common load in the full run; the fixture keeps four of its models),
/// from valid probes of that model at that size, and the sentence and the
/// summary say so.
#[test]
fn ties_are_compared_at_one_load_for_every_tied_model() {
    let run = fixture();
    let md = report::capacity_summary::render(&run, &[], std::path::Path::new("."));
    let mut ties = 0;
    for (workload, contenders) in record::run::contenders(&run) {
        let tied = record::recommend::tied(&contenders);
        if tied.len() < 2 {
            continue;
        }
        ties += 1;
        let load = tied[0].equal_load.as_ref().map_or(0, |e| e.clients);
        assert!(load >= 1 && load <= record::recommend::common_load(&tied));
        for c in &tied {
            let e = c
                .equal_load
                .as_ref()
                .unwrap_or_else(|| panic!("{workload}/{}: not probed at {load}", c.model));
            assert_eq!(e.clients, load, "{workload}/{}", c.model);
            assert!(!e.cells.is_empty(), "{workload}/{}", c.model);
            for &i in &e.cells {
                let k = &run.cells[i].key;
                assert_eq!(
                    (k.model.as_str(), k.workload.as_str(), k.clients),
                    (c.model.as_str(), workload.as_str(), load)
                );
            }
            assert!(
                md.contains(&format!("| `{}` | {} |", c.model, e.cells.len())),
                "{workload}/{}: no equal-load row",
                c.model
            );
        }
        let (_, rec) = record::run::recommendations(&run)
            .into_iter()
            .find(|(w, _)| w == &workload)
            .unwrap();
        assert!(
            rec.reason().contains(&format!("at {load} clients each")),
            "{workload}: {}",
            rec.reason()
        );
    }
    assert!(ties > 0, "the fixture has no tie to check");
}

/// The projection, checked where the real capacity is measured (cpu work,
/// server-limited): projected from the CPU per frame of the largest
/// passing probe at no more than 85% of the capacity (the search's first
/// step, sized to bring the server to 80% busy), as if the generator had
/// stopped the search there, it lands within 25% of the capacity.
#[test]
fn a_projection_lands_within_a_quarter_of_a_measured_capacity() {
    for run in [fixture(), stages_fixture()] {
        projection_lands_within_a_quarter(&run);
    }
}

fn projection_lands_within_a_quarter(run: &RunFile) {
    let record::config::RunConfig {
        rate, server_cpus, ..
    } = &run.config;
    let fleet::Rate::Hz(hz) = *rate else {
        panic!("the fixture runs at a fixed rate")
    };
    let mut checked = 0;
    for r in run
        .capacities
        .iter()
        .filter(|r| r.workload == "cpu" && r.limited_by == record::capacity::LimitedBy::Server)
    {
        let Some(p) = r
            .probes
            .iter()
            .filter(|p| p.workers == r.workers && p.outcome == Outcome::Pass)
            .filter(|p| f64::from(p.clients) <= 0.85 * f64::from(r.clients))
            .max_by_key(|p| p.clients)
        else {
            continue;
        };
        let cpu_us = run.cells[p.cell].derived.cpu_us_per_packet;
        let projected = record::capacity::Projection::clients_at(cpu_us, server_cpus.len(), hz);
        let off = (f64::from(projected) / f64::from(r.clients) - 1.0).abs();
        assert!(
            off <= 0.25,
            "{} {}: projected {projected} from {} clients at {cpu_us:.2} us/frame, measured {}",
            run.run_id,
            r.model,
            p.clients,
            r.clients
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} cpu capacities to check");
}

/// Every capacity of a real run carries its attribution: the slowest 1%
/// and the median frames split over the four stages (the shares add up to
/// one), the work as measured against as asked where the workload asks
/// for work, and its sentence in summary.md.
#[test]
fn every_capacity_says_where_its_time_went() {
    let run = stages_fixture();
    let md = report::capacity_summary::render(&run, &[], std::path::Path::new("."));
    for c in &run.capacities {
        let who = format!("{}/{}", c.workload, c.model);
        let a = c
            .attribution
            .as_ref()
            .unwrap_or_else(|| panic!("{who}: no attribution"));
        for s in [&a.tail, &a.median] {
            assert!(s.frames > 0, "{who}");
            assert!(
                (s.share.iter().sum::<f64>() - 1.0).abs() < 1e-6,
                "{who}: {s:?}"
            );
        }
        assert!(a.tail.mean_ns >= a.median.mean_ns, "{who}: {a:?}");
        let kinds: Vec<&str> = a.work.iter().map(|w| w.kind.as_str()).collect();
        assert_eq!(kinds, [c.workload.as_str()], "{who}: the work asked");
        assert!(
            md.contains(&format!(
                "- `{}`: {}; its CPU per frame beyond the work is",
                c.model,
                a.sentence()
            )),
            "{who}: no sentence with its cost against the bare loop"
        );
    }
    assert!(run.floor.iter().all(|p| p.cpu_us > 0.0), "{:?}", run.floor);
    assert!(
        run.floor.len() >= 3,
        "the floor was probed: {:?}",
        run.floor
    );
}

/// Past the knee on a real run: every server-limited capacity whose 1.5x
/// is within the bound was probed there, at its worker count, and the
/// summary says how its rate behaved.
#[test]
fn server_limited_capacities_are_probed_past_their_knee() {
    let run = stages_fixture();
    let md = report::capacity_summary::render(&run, &[], std::path::Path::new("."));
    let mut probed = 0;
    for c in &run.capacities {
        let Some(p) = &c.past_knee else { continue };
        for x in &p.past {
            let k = &run.cells[x.cell].key;
            assert_eq!(
                (k.model.as_str(), k.workers),
                (c.model.as_str(), Some(c.workers))
            );
            assert!(x.clients > c.clients && x.offered_pps > p.at.offered_pps);
            assert!((0.0..=1.0 + 1e-9).contains(&x.fairness));
            probed += 1;
        }
        assert!(md.contains(&format!("- `{}`: {}.", c.model, p.sentence())));
    }
    assert!(
        probed > 0,
        "no capacity of the fixture was probed past its knee"
    );
}

/// Every model of the workload probed once more at one common load, the
/// largest all of them passed, at its capacity's worker count; summary.md
/// lists each there.
#[test]
fn every_model_is_probed_at_one_common_load() {
    let run = stages_fixture();
    let md = report::capacity_summary::render(&run, &[], std::path::Path::new("."));
    let lows: Vec<u32> = run
        .capacities
        .iter()
        .map(|c| c.interval.low)
        .filter(|&l| l > 0)
        .collect();
    let load = lows.iter().copied().min().unwrap_or(1).max(1);
    let section = md
        .split(&format!("**All at {load} clients**"))
        .nth(1)
        .expect("an \"All at N clients\" section")
        .split("\n\n")
        .nth(1)
        .expect("its table");
    for c in &run.capacities {
        let e = c
            .common_load
            .as_ref()
            .unwrap_or_else(|| panic!("{}: not probed at the common load", c.model));
        assert_eq!(e.clients, load, "{}", c.model);
        for &i in &e.cells {
            let k = &run.cells[i].key;
            assert_eq!(
                (k.model.as_str(), k.clients, k.workers),
                (c.model.as_str(), load, Some(c.workers))
            );
        }
        assert!(
            section.contains(&format!("| `{}` |", c.model)),
            "{}: no row at the common load",
            c.model
        );
    }
}

/// Past the knee each client's own p99 was recorded (a probe of the
/// search's own reused there has none), and the server counted its reads
/// and readiness waits (none for `threads`, which blocks in its reads).
#[test]
fn past_the_knee_has_each_clients_tail_and_the_counts_are_the_servers() {
    let run = stages_fixture();
    let mut tails = 0;
    for c in &run.capacities {
        for x in c.past_knee.iter().flat_map(|p| &p.past) {
            let server = run.cells[x.cell].server.as_ref().expect("a server report");
            if !server.config.client_latency {
                continue; // a search's own probe, reused
            }
            let (lo, hi) = x
                .client_p99_ns
                .unwrap_or_else(|| panic!("{} at {}: no client p99s", c.model, x.clients));
            assert!(lo > 0 && lo <= hi);
            assert!(x.p99_fairness.is_some_and(|j| j > 0.0 && j <= 1.0 + 1e-9));
            tails += 1;
        }
        let at = c
            .probe_at_capacity()
            .expect("a passing probe at the capacity");
        let k = run.cells[at.cell]
            .derived
            .counts
            .clone()
            .unwrap_or_else(|| panic!("{}: no counts", c.model));
        assert!(k.frames_per_read >= 1.0, "{}: {k:?}", c.model);
        if c.model == "threads" {
            assert_eq!(k.waits, 0.0, "{k:?}");
        } else {
            assert!(k.waits > 0.0, "{}: {k:?}", c.model);
        }
        assert_eq!(k.writes, 0.0, "{}: no acks were asked for", c.model);
    }
    assert!(tails > 0, "no fresh probe past a knee");
}
