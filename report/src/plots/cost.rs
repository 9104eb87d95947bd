//! CPU per frame against clients: every model at its best worker count
//! (the median over its probes at each size) and the bare loop, the floor
//! every model's cost is a multiple of.

use std::path::Path;

use plotters::prelude::*;

use super::style::{colour, err, FONT, SIZE};
use crate::error::Result;
use record::capacity::CapacityRecord;
use record::run::RunFile;

/// Draws the plot; false (no file) without a floor or any model's points.
pub(super) fn cost(
    file: &Path,
    ctx: &str,
    run: &RunFile,
    records: &[&CapacityRecord],
) -> Result<bool> {
    let floor: Vec<(f64, f64)> = run
        .floor
        .iter()
        .filter(|p| p.cpu_us > 0.0)
        .map(|p| (f64::from(p.clients), p.cpu_us))
        .collect();
    let lines: Vec<(&CapacityRecord, Vec<(f64, f64)>)> = records
        .iter()
        .map(|r| {
            let pts = super::load::per_size(run, r, &|d| d.cpu_us_per_packet);
            (*r, pts.into_iter().map(|p| (p.0, p.1)).collect())
        })
        .collect();
    let all: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|l| l.1.iter().copied())
        .chain(floor.iter().copied())
        .collect();
    if floor.is_empty() || all.is_empty() {
        return Ok(false);
    }
    let xmax = all.iter().map(|p| p.0).fold(1.0, f64::max) * 1.3;
    let ymin = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) / 1.5;
    let ymax = all.iter().map(|p| p.1).fold(0.0, f64::max) * 2.0;
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    foot.draw(&Text::new(
        "each model at its best worker count, median of its probes at each size; dashed black = the bare loop (no work), the floor",
        (10, 6),
        (FONT, 14).into_font(),
    ))
    .map_err(err)?;
    let body = body.titled(ctx, (FONT, 18)).map_err(err)?;
    let mut chart = ChartBuilder::on(&body)
        .caption("CPU per frame against load", (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0.8f64..xmax).log_scale(),
            (ymin.max(0.01)..ymax).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("server CPU us per frame")
        .x_label_formatter(&|v: &f64| format!("{v:.0}"))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (r, pts) in &lines {
        let c = colour(&run.config.models, &r.model);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(r.model.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .draw_series(DashedLineSeries::new(floor, 6, 4, BLACK.stroke_width(2)))
        .map_err(err)?
        .label("bare loop")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}
