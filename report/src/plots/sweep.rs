//! A search's capacity against worker count (the sweep).

use std::path::Path;

use plotters::prelude::*;

use super::style::{colour, err, FONT, SIZE};
use crate::error::Result;
use record::capacity::CapacityRecord;
use record::capacity::LimitedBy;

/// Capacity against worker count; false when no model tried more than one.
pub(super) fn sweep(
    file: &Path,
    ctx: &str,
    models: &[String],
    records: &[&CapacityRecord],
) -> Result<bool> {
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
