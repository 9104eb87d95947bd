//! What a model costs against the floor: the server's own counts per frame
//! (frames per read, user and system CPU, voluntary and involuntary
//! context switches), the bare loop's CPU per frame at each load
//! (`models::baseline::Bare`, probed beside the models), and each
//! capacity's CPU per frame beyond its work as a multiple of that floor at
//! the same load.

use models::ServerReport;
use serde::{Deserialize, Serialize};
use workloads::spec::PlanMode;
use workloads::WorkPlan;

/// The server's own counts over its whole run (warm-up and drain
/// included), per frame it processed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Frames per read (receive, completion) that returned bytes.
    pub frames_per_read: f64,
    /// Readiness waits per frame (`epoll_wait`, a ring's wait, a runtime
    /// worker's park; 0 where threads block in their reads).
    #[serde(default)]
    pub waits: f64,
    /// Writes (sends) of acks per frame; 0 unless acks are asked for.
    #[serde(default)]
    pub writes: f64,
    /// User CPU per frame, us.
    pub user_us: f64,
    /// System CPU per frame, us.
    pub sys_us: f64,
    /// Voluntary context switches per frame.
    pub voluntary_ctxt: f64,
    /// Involuntary context switches per frame.
    pub involuntary_ctxt: f64,
}

impl Counts {
    /// The counts of `server` (`None`: it processed nothing or counted no
    /// reads).
    pub fn of(server: &ServerReport) -> Option<Counts> {
        let frames = (server.packets.measured + server.packets.warmup) as f64;
        if frames == 0.0 || server.reads == 0 {
            return None;
        }
        Some(Counts {
            frames_per_read: frames / server.reads as f64,
            waits: server.waits as f64 / frames,
            writes: server.acks.writes as f64 / frames,
            user_us: server.cpu.user_s * 1e6 / frames,
            sys_us: server.cpu.sys_s * 1e6 / frames,
            voluntary_ctxt: server.cpu.voluntary_ctxt as f64 / frames,
            involuntary_ctxt: server.cpu.involuntary_ctxt as f64 / frames,
        })
    }
}

/// The bare loop at one load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FloorPoint {
    /// Fleet size.
    pub clients: u32,
    /// Its cell in `run.json`.
    pub cell: usize,
    /// Its CPU per frame in the window, us (0: the probe gave none).
    pub cpu_us: f64,
}

/// The loads the bare loop is probed at: powers of two up to the search's
/// `bound`, and the bound.
pub fn floor_loads(bound: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..32)
        .map(|i| 1u32 << i)
        .take_while(|&n| n < bound)
        .collect();
    v.push(bound.max(1));
    v
}

/// The bare loop's CPU per frame at `clients`, from the points probed:
/// linear in log(clients) between the two around it, the nearest end's
/// beyond them (`None`: no point measured).
pub fn floor_at(points: &[FloorPoint], clients: u32) -> Option<f64> {
    let mut p: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.cpu_us > 0.0)
        .map(|p| (f64::from(p.clients.max(1)).ln(), p.cpu_us))
        .collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let x = f64::from(clients.max(1)).ln();
    let (first, last) = (p.first()?, p.last()?);
    if x <= first.0 {
        return Some(first.1);
    }
    if x >= last.0 {
        return Some(last.1);
    }
    let i = p.iter().position(|q| q.0 >= x)?;
    let (a, b) = (p[i - 1], p[i]);
    Some(a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0))
}

/// The share of frames that carry cpu work under `plan`.
pub fn cpu_share(plan: &WorkPlan) -> f64 {
    let share = match plan.mode {
        PlanMode::Cpu => 1.0,
        PlanMode::Mixed => plan.cpu_ratio,
        _ => return 0.0,
    };
    share / f64::from(plan.every.max(1))
}

/// CPU per frame the workload's own work takes, us: its cpu frames' share
/// of all frames times a cpu frame's kernel time, as measured (the median
/// service time of its cpu frames, `measured_us`) where it was, else as
/// asked (its iterations at the calibrated speed). The measured time is
/// the one the server spent: where the calibration is off, the asked one
/// would charge the model for the difference.
pub fn work_us_per_frame(plan: &WorkPlan, measured_us: Option<f64>) -> f64 {
    let asked = plan
        .iters_per_us
        .filter(|&r| r > 0.0)
        .map_or(0.0, |r| f64::from(plan.cpu_iters) / r);
    cpu_share(plan) * measured_us.unwrap_or(asked)
}

/// A model's CPU per frame beyond the work, as a multiple of the bare
/// loop's at the same load (`None`: no floor there).
pub fn multiple(cpu_us: f64, work_us: f64, floor_us: Option<f64>) -> Option<f64> {
    let floor = floor_us.filter(|&f| f > 0.0)?;
    Some((cpu_us - work_us).max(0.0) / floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(clients: u32, cpu_us: f64) -> FloorPoint {
        FloorPoint {
            clients,
            cell: 0,
            cpu_us,
        }
    }

    #[test]
    fn floor_loads_are_powers_of_two_then_the_bound() {
        assert_eq!(floor_loads(1), [1]);
        assert_eq!(floor_loads(5), [1, 2, 4, 5]);
        assert_eq!(floor_loads(8), [1, 2, 4, 8]);
        assert_eq!(floor_loads(192), [1, 2, 4, 8, 16, 32, 64, 128, 192]);
    }

    #[test]
    fn floor_is_interpolated_in_log_clients_and_held_past_the_ends() {
        let points = [pt(1, 4.0), pt(4, 2.0), pt(16, 1.0), pt(64, 0.0)];
        let cases = [
            (1, Some(4.0)),
            (2, Some(3.0)),
            (4, Some(2.0)),
            (8, Some(1.5)),
            (100, Some(1.0)),
            (0, Some(4.0)),
        ];
        for (clients, want) in cases {
            assert_eq!(floor_at(&points, clients), want, "{clients}");
        }
        assert_eq!(floor_at(&[], 5), None);
    }

    #[test]
    fn multiple_is_the_cost_beyond_the_work_over_the_floor() {
        let cases = [
            ((1.0, 0.0, Some(0.5)), Some(2.0)),
            ((5.6, 5.0, Some(0.3)), Some(2.0)),
            ((4.0, 5.0, Some(0.5)), Some(0.0)),
            ((1.0, 0.0, None), None),
            ((1.0, 0.0, Some(0.0)), None),
        ];
        for ((cpu, work, floor), want) in cases {
            let got = multiple(cpu, work, floor).map(|m| (m * 1e9).round() / 1e9);
            assert_eq!(got, want, "{cpu} {work} {floor:?}");
        }
    }

    #[test]
    fn work_per_frame_counts_only_cpu_frames_as_measured_where_it_was() {
        let plan = |spec: &str| {
            use std::str::FromStr;
            workloads::WorkSpec::from_str(spec)
                .unwrap()
                .resolve(Some(100.0))
                .unwrap()
        };
        let cases = [
            (("none", None), 0.0),
            (("io:1ms", Some(4.0)), 0.0),
            (("cpu:5us", None), 5.0),
            (("cpu:5us", Some(4.2)), 4.2),
            (("cpu:5us,every=5", None), 1.0),
            (("mixed:cpu=5us,io=1ms,ratio=0.5", Some(4.0)), 2.0),
        ];
        for ((spec, measured), want) in cases {
            let got = work_us_per_frame(&plan(spec), measured);
            assert!((got - want).abs() < 1e-9, "{spec} {measured:?}: {got}");
        }
    }
}
