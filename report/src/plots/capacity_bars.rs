//! A search's capacity bars: each model at its best worker count, with
//! its interval (generator-limited bars marked).

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::style::{bar_label, colour, err, FONT, SIZE};
use crate::error::Result;
use record::capacity::CapacityRecord;
use record::capacity::LimitedBy;

pub(super) fn bars(
    file: &Path,
    ctx: &str,
    models: &[String],
    records: &[&CapacityRecord],
) -> Result<()> {
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
        .x_label_formatter(&|x: &f64| bar_label(&names, *x))
        .y_desc("clients at the SLO")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (i, r) in records.iter().enumerate() {
        bar(&mut chart, i as f64, r, colour(models, &r.model), top)?;
    }
    root.present().map_err(err)
}

/// One model's bar at `x`: the capacity, its interval as a whisker (open
/// upwards when the generator bounded it), and its label.
fn bar(
    chart: &mut ChartContext<'_, BitMapBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x: f64,
    r: &CapacityRecord,
    c: RGBColor,
    top: f64,
) -> Result<()> {
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
        match (&r.projected, generator) {
            (Some(p), true) => format!(" (generator; projected {})", p.clients),
            (None, true) => " (generator)".to_string(),
            _ => String::new(),
        }
    );
    chart
        .draw_series(std::iter::once(Text::new(
            label,
            (x - 0.33, (y + top * 0.02).min(top * 0.9)),
            (FONT, 13).into_font(),
        )))
        .map_err(err)?;
    Ok(())
}
