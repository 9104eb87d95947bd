//! Plots of a capacity search, per workload: capacity per model at its
//! best worker count with its interval (generator-limited bars marked),
//! latency against load per model with the SLO and the knee (the hockey
//! stick), and capacity against worker count (the sweep).

use std::path::{Path, PathBuf};

use crate::error::Result;
use plotters::prelude::*;

use crate::labels::slug;
use crate::plots::{colour, err, register_font, FONT, SIZE};
use record::capacity::CapacityRecord;
use record::capacity::{LimitedBy, Outcome};
use record::run::by_workload;
use record::run::RunFile;
use record::slo::default_p99_ns;
use record::units::fmt_ns;

/// Renders the three plots of every searched workload into `dir`.
pub fn render(run: &RunFile, dir: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let machine = format!(
        "{} ({} CPUs; server {:?}, fleet {:?}), {} Hz/client",
        run.environment.hostname,
        run.environment.logical_cpus,
        run.config.server_cpus,
        run.config.fleet_cpus,
        run.config.rate
    );
    let mut out = Vec::new();
    for (workload, records) in by_workload(run) {
        let spec = run
            .config
            .workload(&workload)
            .map_or(String::new(), |w| w.plan.spec.clone());
        let ctx = format!("workload {workload} ({spec}); {machine}");
        let base = slug(&workload);
        let file = dir.join(format!("capacity-{base}.png"));
        bars(&file, &ctx, &run.config.models, &records)?;
        out.push(file);
        let file = dir.join(format!("load-{base}.png"));
        load(&file, &ctx, run, &workload, &records)?;
        out.push(file);
        let file = dir.join(format!("workers-{base}.png"));
        if sweep(&file, &ctx, &run.config.models, &records)? {
            out.push(file);
        }
    }
    Ok(out)
}

fn bars(file: &Path, ctx: &str, models: &[String], records: &[&CapacityRecord]) -> Result<()> {
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    foot.draw(&Text::new(
        "bar = capacity at the best worker count (w=N); whisker = interval from the repeats; pale bar with ^ = limited by the load generator (at least this many)",
        (10, 6),
        (FONT, 14).into_font(),
    ))
    .map_err(err)?;
    let body = body.titled(ctx, (FONT, 18)).map_err(err)?;
    let top = records
        .iter()
        .map(|r| r.interval.high.unwrap_or(r.clients).max(r.clients))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.2;
    let n = records.len();
    let names: Vec<String> = records.iter().map(|r| r.model.clone()).collect();
    let mut chart = ChartBuilder::on(&body)
        .caption("capacity: most clients within the SLO", (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1) * 2 + 1)
        .x_label_formatter(&|x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc("clients at the SLO")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (i, r) in records.iter().enumerate() {
        let x = i as f64;
        let c = colour(models, &r.model);
        let generator = r.limited_by == LimitedBy::Generator;
        let fill = if generator {
            c.mix(0.3).filled()
        } else {
            c.filled()
        };
        let y = r.clients as f64;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.35, 0.0), (x + 0.35, y)],
                fill,
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.35, 0.0), (x + 0.35, y)],
                c.stroke_width(2),
            )))
            .map_err(err)?;
        let (lo, hi) = (r.interval.low as f64, r.interval.high.map(|h| h as f64));
        let whisker_top = hi.unwrap_or(top * 0.97);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, lo), (x, whisker_top)],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
        for yy in [Some(lo), hi].into_iter().flatten() {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x - 0.1, yy), (x + 0.1, yy)],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
        }
        if hi.is_none() {
            chart
                .draw_series(std::iter::once(TriangleMarker::new(
                    (x, whisker_top),
                    8,
                    BLACK.filled(),
                )))
                .map_err(err)?;
        }
        let label = format!(
            "{} w={}{}",
            r.interval.label(r.clients),
            r.workers,
            if generator { " (generator)" } else { "" }
        );
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (x - 0.33, (y + top * 0.02).min(top * 0.9)),
                (FONT, 13).into_font(),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// One latency figure of a cell.
type Field = fn(&record::figures::Figures) -> u64;

/// Median of a latency field per fleet size over the probes at the best
/// worker count: (clients, value, all passed).
fn per_size(
    run: &RunFile,
    r: &CapacityRecord,
    f: fn(&record::figures::Figures) -> u64,
) -> Vec<(f64, f64, bool)> {
    let mut sizes: Vec<u32> = r
        .probes
        .iter()
        .filter(|p| p.workers == r.workers)
        .map(|p| p.clients)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter_map(|n| {
            let at: Vec<_> = r
                .probes
                .iter()
                .filter(|p| p.workers == r.workers && p.clients == n)
                .collect();
            let mut v: Vec<u64> = at
                .iter()
                .map(|p| f(&run.cells[p.cell].derived))
                .filter(|&v| v > 0)
                .collect();
            v.sort_unstable();
            let m = *v.get(v.len() / 2)?;
            Some((
                n as f64,
                m as f64 / 1e3,
                at.iter().all(|p| p.outcome == Outcome::Pass),
            ))
        })
        .collect()
}

fn load(
    file: &Path,
    ctx: &str,
    run: &RunFile,
    workload: &str,
    records: &[&CapacityRecord],
) -> Result<()> {
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    foot.draw(&Text::new(
        "at the best worker count; filled = passed every probe, hollow = failed one; dashed black = SLO p99 bound; dotted grey = capacity",
        (10, 6),
        (FONT, 14).into_font(),
    ))
    .map_err(err)?;
    let body = body.titled(ctx, (FONT, 18)).map_err(err)?;
    let cols = records.len().clamp(1, 4);
    let rows = records.len().div_ceil(cols).max(1);
    let areas = body.split_evenly((rows, cols));
    let plan = run.config.workload(workload).map(|w| &w.plan);
    let fixed_slo = crate::summary::slo_p99_ns(run);
    for (r, area) in records.iter().zip(&areas) {
        let series: [(&str, Field, ShapeStyle); 4] = [
            (
                "p50",
                |d| d.p50_ns,
                colour(&run.config.models, &r.model).stroke_width(1),
            ),
            (
                "p99",
                |d| d.p99_ns,
                colour(&run.config.models, &r.model).stroke_width(3),
            ),
            (
                "svc p50",
                |d| d.service_p50_ns,
                RGBColor(150, 150, 150).stroke_width(1),
            ),
            (
                "svc p99",
                |d| d.service_p99_ns,
                RGBColor(110, 110, 110).stroke_width(2),
            ),
        ];
        let data: Vec<Vec<(f64, f64, bool)>> = series
            .iter()
            .map(|(_, f, _)| per_size(run, r, *f))
            .collect();
        let xs: Vec<f64> = data.iter().flatten().map(|p| p.0).collect();
        let ys: Vec<f64> = data
            .iter()
            .flatten()
            .map(|p| p.1)
            .filter(|v| *v > 0.0)
            .collect();
        if xs.is_empty() || ys.is_empty() {
            continue;
        }
        let xmax = xs.iter().cloned().fold(1.0, f64::max) * 1.3;
        let slo_us = |n: u32| {
            fixed_slo.unwrap_or_else(|| {
                default_p99_ns(run.config.batch_window_for(n).as_micros() as u64, plan)
            }) as f64
                / 1e3
        };
        let ymin = ys.iter().cloned().fold(f64::INFINITY, f64::min) / 1.5;
        let ymax = ys.iter().cloned().fold(slo_us(xmax as u32), f64::max) * 2.0;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} (w={}): {}",
                    r.model,
                    r.workers,
                    r.interval.label(r.clients)
                ),
                (FONT, 16),
            )
            .margin(8)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (0.8f64..xmax).log_scale(),
                (ymin.max(1.0)..ymax).log_scale(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("clients")
            .y_desc("latency")
            .y_label_formatter(&|v: &f64| fmt_ns((*v * 1e3) as u64))
            .x_label_formatter(&|v: &f64| format!("{v:.0}"))
            .light_line_style(RGBColor(238, 238, 238))
            .label_style((FONT, 11))
            .draw()
            .map_err(err)?;
        for ((name, _, style), pts) in series.iter().zip(&data) {
            let style = *style;
            chart
                .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), style))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            chart
                .draw_series(pts.iter().map(|p| {
                    let s = if p.2 {
                        style.color.filled()
                    } else {
                        style.color.stroke_width(1)
                    };
                    Circle::new((p.0, p.1), 3, s)
                }))
                .map_err(err)?;
        }
        let mut slo_line: Vec<(f64, f64)> = xs.iter().map(|&x| (x, slo_us(x as u32))).collect();
        slo_line.sort_by(|a, b| a.0.total_cmp(&b.0));
        slo_line.dedup();
        chart
            .draw_series(DashedLineSeries::new(slo_line, 6, 4, BLACK.stroke_width(2)))
            .map_err(err)?;
        if r.clients > 0 {
            let k = r.clients as f64;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(k, ymin.max(1.0)), (k, ymax)],
                    2,
                    4,
                    RGBColor(120, 120, 120).stroke_width(2),
                ))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Capacity against worker count; false when no model tried more than one.
fn sweep(file: &Path, ctx: &str, models: &[String], records: &[&CapacityRecord]) -> Result<bool> {
    if records.iter().all(|r| r.sweep.len() < 2) {
        return Ok(false);
    }
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    foot.draw(&Text::new(
        "one line per model over the worker counts searched; triangle = limited by the load generator (at least this many); ringed = the count reported",
        (10, 6),
        (FONT, 14).into_font(),
    ))
    .map_err(err)?;
    let body = body.titled(ctx, (FONT, 18)).map_err(err)?;
    let wmax = records
        .iter()
        .flat_map(|r| r.sweep.iter().map(|s| s.workers))
        .max()
        .unwrap_or(1) as f64;
    let cmax = records
        .iter()
        .flat_map(|r| r.sweep.iter().map(|s| s.capacity))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(&body)
        .caption("capacity against server workers", (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..wmax * 1.5).log_scale(), 0f64..cmax * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("workers (log scale)")
        .y_desc("clients at the SLO")
        .x_label_formatter(&|v: &f64| format!("{v:.0}"))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for r in records.iter().filter(|r| r.sweep.len() > 1) {
        let c = colour(models, &r.model);
        let mut pts: Vec<_> = r
            .sweep
            .iter()
            .map(|s| {
                (
                    s.workers as f64,
                    s.capacity as f64,
                    s.limited_by,
                    s.workers == r.workers,
                )
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(r.model.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        for p in &pts {
            if p.2 == LimitedBy::Generator {
                chart.draw_series(std::iter::once(TriangleMarker::new(
                    (p.0, p.1),
                    8,
                    c.filled(),
                )))
            } else {
                chart.draw_series(std::iter::once(Circle::new((p.0, p.1), 5, c.filled())))
            }
            .map_err(err)?;
            if p.3 {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (p.0, p.1),
                        10,
                        BLACK.stroke_width(2),
                    )))
                    .map_err(err)?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}
