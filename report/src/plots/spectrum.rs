//! The latency percentile spectrum of a matrix workload, per model.

use std::path::Path;

use plotters::prelude::*;

use super::style::{colour, err, footer, FONT, SIZE};
use crate::aggregate::Point;
use crate::error::Result;
use record::run::RunFile;
use record::verdict::Status;

/// A latency curve: (point, is service latency, (1/(1-p), us) pairs).
type Curve<'a> = (&'a Point, bool, Vec<(f64, f64)>);

/// The fleet size shown (the largest where any model is valid, else the
/// smallest) and each of its points' two latency curves.
fn curves<'a>(run: &RunFile, pts: &[&'a Point]) -> (u32, Vec<Curve<'a>>) {
    let mut sizes: Vec<u32> = pts.iter().map(|p| p.clients).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let size = sizes
        .iter()
        .rev()
        .copied()
        .find(|&n| {
            pts.iter()
                .any(|p| p.clients == n && p.status == Status::Valid)
        })
        .unwrap_or(sizes[0]);
    let mut series: Vec<Curve> = Vec::new();
    for p in pts.iter().filter(|p| p.clients == size) {
        let Some(server) = &run.cells[p.median_cell].server else {
            continue;
        };
        for (service, summary) in [
            (false, &server.latency_ns),
            (true, &server.service_latency_ns),
        ] {
            let Ok(h) = summary.histogram() else {
                continue;
            };
            if h.is_empty() {
                continue;
            }
            let curve: Vec<(f64, f64)> = h
                .iter_quantiles(2)
                .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1e3))
                .filter(|(q, _)| *q < 1.0)
                .map(|(q, us)| (1.0 / (1.0 - q), us.max(1e-3)))
                .collect();
            series.push((p, service, curve));
        }
    }
    (size, series)
}

/// Percentile spectrum per model at the largest fleet size where any model
/// is valid (else the smallest). False when there is no latency data.
pub(super) fn spectrum(file: &Path, ctx: &str, run: &RunFile, pts: &[&Point]) -> Result<bool> {
    let (size, series) = curves(run, pts);
    if series.is_empty() {
        return Ok(false);
    }
    let xmax = series
        .iter()
        .flat_map(|(_, _, c)| c.iter().map(|p| p.0))
        .fold(10.0, f64::max)
        * 1.2;
    let ymax = series
        .iter()
        .flat_map(|(_, _, c)| c.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.3;
    let ymin = series
        .iter()
        .flat_map(|(_, _, c)| c.iter().map(|p| p.1))
        .fold(f64::INFINITY, f64::min)
        / 1.5;
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    let at_size: Vec<&Point> = pts.iter().filter(|p| p.clients == size).copied().collect();
    footer(&foot, &at_size)?;
    let mut chart = ChartBuilder::on(&body)
        .caption(
            format!("latency spectrum at {size} clients (solid: from due; dashed: service, from write); {ctx}"),
            (FONT, 16),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((1.0..xmax).log_scale(), (ymin..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile, as 1/(1-p): 10 = p90, 100 = p99, 1000 = p99.9")
        .y_desc("latency us (log)")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (p, service, curve) in series {
        let colour = colour(&run.config.models, &p.model);
        let style = match p.status {
            Status::Valid => colour.stroke_width(2),
            _ => colour.mix(0.45).stroke_width(1),
        };
        let label = format!(
            "{}{} ({})",
            p.model,
            if service { " service" } else { "" },
            crate::labels::status_word(p.status)
        );
        if service {
            chart
                .draw_series(DashedLineSeries::new(curve, 6, 4, style))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], style));
        } else {
            chart
                .draw_series(LineSeries::new(curve, style))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
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
