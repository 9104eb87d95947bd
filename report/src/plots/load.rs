//! A search's latency against load per model, with the SLO and the knee
//! (the hockey stick), and what it processed past the knee.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{colour, err, FONT, SIZE};
use crate::error::Result;
use record::capacity::CapacityRecord;
use record::capacity::Outcome;
use record::run::RunFile;
use record::slo::default_p99_ns;
use record::units::fmt_ns;

/// One latency figure of a cell.
pub(super) type Field = fn(&record::figures::Figures) -> u64;

/// Median of a cell figure per fleet size over the probes at the best
/// worker count, zeros left out: (clients, value, all passed).
pub(super) fn per_size(
    run: &RunFile,
    r: &CapacityRecord,
    f: &dyn Fn(&record::figures::Figures) -> f64,
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
            let mut v: Vec<f64> = at
                .iter()
                .map(|p| f(&run.cells[p.cell].derived))
                .filter(|&v| v > 0.0)
                .collect();
            v.sort_by(f64::total_cmp);
            let m = *v.get(v.len() / 2)?;
            Some((n as f64, m, at.iter().all(|p| p.outcome == Outcome::Pass)))
        })
        .collect()
}

pub(super) fn load(
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
    let slo_us = |n: u32| {
        fixed_slo.unwrap_or_else(|| {
            default_p99_ns(run.config.batch_window_for(n).as_micros() as u64, plan)
        }) as f64
            / 1e3
    };
    for (r, area) in records.iter().zip(&areas) {
        model_panel(area, run, r, &slo_us)?;
    }
    root.present().map_err(err)
}

/// One model's panel: p50 and p99 (and service latency) against clients,
/// with the SLO bound (`slo_us` at a fleet size) and the capacity.
fn model_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    run: &RunFile,
    r: &CapacityRecord,
    slo_us: &dyn Fn(u32) -> f64,
) -> Result<()> {
    let series = series(&run.config.models, r);
    let data: Vec<Vec<(f64, f64, bool)>> = series
        .iter()
        .map(|(_, f, _)| per_size(run, r, &|d| f(d) as f64 / 1e3))
        .collect();
    let xs: Vec<f64> = data.iter().flatten().map(|p| p.0).collect();
    let ys: Vec<f64> = data
        .iter()
        .flatten()
        .map(|p| p.1)
        .filter(|v| *v > 0.0)
        .collect();
    if xs.is_empty() || ys.is_empty() {
        return Ok(());
    }
    let xmax = xs.iter().cloned().fold(1.0, f64::max) * 1.3;
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
    if let Some(text) = past_knee_label(r) {
        chart
            .draw_series(std::iter::once(Text::new(
                text,
                (1.0, ymax / 1.6),
                (FONT, 11).into_font(),
            )))
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
    Ok(())
}

/// What a model processed past its knee, as its panel says it.
fn past_knee_label(r: &CapacityRecord) -> Option<String> {
    let p = r.past_knee.as_ref().filter(|p| !p.past.is_empty())?;
    let each: Vec<String> = p
        .past
        .iter()
        .map(|x| {
            format!(
                "{}c {:.0}%",
                x.clients,
                x.processed_pps / x.offered_pps.max(1.0) * 100.0
            )
        })
        .collect();
    let worst = p.past.iter().map(|x| x.fairness).fold(1.0, f64::min);
    let tail = p
        .past
        .iter()
        .filter_map(|x| x.client_p99_ns.map(|t| t.1))
        .max()
        .map_or(String::new(), |hi| {
            format!(", client p99 <= {}", record::units::fmt_ns(hi))
        });
    Some(format!(
        "past the knee, processed of offered: {}; Jain >= {worst:.2}{tail}",
        each.join(", ")
    ))
}

/// The four latency lines of a model's panel: (name, figure, style).
fn series(models: &[String], r: &CapacityRecord) -> [(&'static str, Field, ShapeStyle); 4] {
    [
        (
            "p50",
            |d| d.p50_ns,
            colour(models, &r.model).stroke_width(1),
        ),
        (
            "p99",
            |d| d.p99_ns,
            colour(models, &r.model).stroke_width(3),
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
    ]
}
