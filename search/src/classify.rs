//! A probe's outcome from its cell, by cause (the verdict's typed causes,
//! never its reason strings), in this order: server fault > loss or
//! protocol error > overload > a late downstream responder > SLO miss >
//! generator behind. A cell the
//! machine disturbed (the canary saw the CPUs stalled enough to explain
//! the miss) is marked so that its failure can be tried again rather than
//! believed.

use record::cell::CellResult;
use record::slo::Slo;
use record::verdict::Cause;

use record::capacity::Outcome;
use record::interval;

/// A probe's classification.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    /// What the probe says.
    pub outcome: Outcome,
    /// Why it did not pass (empty when it passed).
    pub why: String,
    /// A failure one stall can cause (an SLO miss, a late generator): it
    /// counts only if a second probe says the same.
    pub soft: bool,
    /// The machine stalled during the probe: a failure then is the
    /// machine's until a try without a stall says otherwise.
    pub disturbed: bool,
    /// Decided by latency alone, within [`interval::MARGIN`] of the bound.
    pub marginal: bool,
}

/// Classifies a probe against `slo`.
pub fn classify(cell: &CellResult, slo: &Slo) -> Classified {
    let v = &cell.verdict;
    let reasons = || v.reasons.join("; ");
    let window_s = cell.fleet.as_ref().map_or(0.0, |f| f.measured_window_s);
    // A stall explains a latency miss only if the miss is no larger than
    // the stall (a 1 ms stall does not make a 20 ms p99), and a late fleet
    // when the CPUs stalled at all beyond the share.
    let excess = slo.excess_ns(cell);
    let late_fleet =
        v.causes.contains(&Cause::GeneratorBehind) || v.causes.contains(&Cause::DownstreamBehind);
    let disturbed = cell
        .canary
        .as_ref()
        .is_some_and(|c| c.disturbed(window_s) && (late_fleet || excess <= c.max_late_ns));
    let (outcome, why, soft) = match v.cause() {
        Some(Cause::ServerFault) => (Outcome::ServerFailed, reasons(), false),
        Some(Cause::Loss | Cause::Overload) => (Outcome::Fail, reasons(), false),
        // A late responder makes the calls, and so the latency, slow: the
        // SLO cannot judge the server then.
        Some(Cause::DownstreamBehind) => (Outcome::Generator, reasons(), true),
        cause => {
            let breaches = slo.breach(cell);
            if !breaches.is_empty() {
                (Outcome::Fail, format!("SLO: {}", breaches.join(", ")), true)
            } else if cause.is_some() {
                (Outcome::Generator, reasons(), true)
            } else {
                (Outcome::Pass, String::new(), false)
            }
        }
    };
    let why = match (&cell.canary, disturbed && outcome != Outcome::Pass) {
        (Some(c), true) => format!("{why}; machine stalled: {}", c.line()),
        _ => why,
    };
    let by_latency = matches!(v.cause(), None | Some(Cause::GeneratorBehind));
    let marginal = by_latency
        && matches!(outcome, Outcome::Pass | Outcome::Fail)
        && (slo.ratio(cell) - 1.0).abs() <= interval::MARGIN;
    Classified {
        outcome,
        why,
        soft,
        disturbed,
        marginal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::canary::CanaryReport;
    use record::run::RunFile;
    use record::verdict::{Status, Verdict};

    fn cell() -> CellResult {
        let run: RunFile =
            serde_json::from_str(include_str!("../../record/tests/fixtures/run.json"))
                .expect("fixture");
        let mut c = run
            .cells
            .into_iter()
            .find(|c| c.verdict.status == Status::Valid)
            .expect("a valid cell in the fixture");
        c.derived.p99_ns = 500_000;
        c
    }

    fn verdict(causes: &[Cause]) -> Verdict {
        Verdict {
            status: if causes.is_empty() {
                Status::Valid
            } else {
                Status::Invalid
            },
            reasons: causes.iter().map(|c| format!("{c:?}")).collect(),
            causes: causes.to_vec(),
        }
    }

    #[test]
    fn classification_by_cause_table() {
        use Cause::*;
        let slo: Slo = "p99=1ms".parse().unwrap();
        let stall = CanaryReport {
            realtime: true,
            stalled_ns: 1_000_000_000,
            max_late_ns: 2_000_000,
            ..CanaryReport::default()
        };
        // (causes, p99 ns, canary stalled, outcome, soft, disturbed)
        type Case = (&'static [Cause], u64, bool, Outcome, bool, bool);
        let table: [Case; 14] = [
            (&[], 500_000, false, Outcome::Pass, false, false),
            (&[], 2_000_000, false, Outcome::Fail, true, false),
            (&[], 2_000_000, true, Outcome::Fail, true, true),
            // 20 ms over a 1 ms bound: more than the 2 ms stall explains.
            (&[], 21_000_000, true, Outcome::Fail, true, false),
            // A crash outranks the late generator and the loss it causes.
            (
                &[GeneratorBehind, Loss, ServerFault],
                9_000_000,
                false,
                Outcome::ServerFailed,
                false,
                false,
            ),
            (
                &[Overload, Loss],
                2_000_000,
                false,
                Outcome::Fail,
                false,
                false,
            ),
            (&[Overload], 500_000, false, Outcome::Fail, false, false),
            // An SLO miss outranks a late generator; the machine's only
            // when the CPUs stalled.
            (
                &[GeneratorBehind],
                2_000_000,
                false,
                Outcome::Fail,
                true,
                false,
            ),
            (
                &[GeneratorBehind],
                30_000_000,
                true,
                Outcome::Fail,
                true,
                true,
            ),
            (
                &[GeneratorBehind],
                500_000,
                false,
                Outcome::Generator,
                true,
                false,
            ),
            (
                &[FleetFault],
                500_000,
                false,
                Outcome::Generator,
                true,
                false,
            ),
            (&[Loss], 500_000, true, Outcome::Fail, false, true),
            // A late responder outranks the SLO miss it causes, but not an
            // overload of the server.
            (
                &[DownstreamBehind],
                9_000_000,
                false,
                Outcome::Generator,
                true,
                false,
            ),
            (
                &[DownstreamBehind, Overload],
                9_000_000,
                false,
                Outcome::Fail,
                false,
                false,
            ),
        ];
        for (causes, p99, stalled, outcome, soft, disturbed) in table {
            let mut c = cell();
            c.verdict = verdict(causes);
            c.derived.p99_ns = p99;
            c.canary = stalled.then(|| stall.clone());
            let got = classify(&c, &slo);
            assert_eq!(
                (got.outcome, got.soft, got.disturbed),
                (outcome, soft, disturbed),
                "{causes:?} p99 {p99} stalled {stalled}: {got:?}"
            );
            assert_eq!(got.why.is_empty(), outcome == Outcome::Pass, "{got:?}");
        }
    }

    #[test]
    fn a_p99_near_the_bound_is_marginal() {
        let slo: Slo = "p99=1ms".parse().unwrap();
        // (p99 ns, causes, marginal)
        let table: [(u64, &[Cause], bool); 6] = [
            (500_000, &[], false),
            (850_000, &[], true),
            (1_150_000, &[], true),
            (1_300_000, &[], false),
            // Decided by an overload, not by latency.
            (1_100_000, &[Cause::Overload], false),
            (1_100_000, &[Cause::GeneratorBehind], true),
        ];
        for (p99, causes, want) in table {
            let mut c = cell();
            c.verdict = verdict(causes);
            c.derived.p99_ns = p99;
            assert_eq!(classify(&c, &slo).marginal, want, "{p99} {causes:?}");
        }
    }
}
