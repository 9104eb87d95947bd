//! Capacity against server CPUs (`--scaling`): one line per model, the
//! interval as a whisker, a triangle where the generator bounded it.

use std::path::Path;

use plotters::prelude::*;

use super::style::{colour, err, FONT, SIZE};
use crate::error::Result;
use record::capacity::{CapacityRecord, LimitedBy};

/// One workload's records per model, one per run (`None` where a run has
/// no record for it), in the runs' order.
pub(crate) type Series<'r> = Vec<(String, Vec<Option<&'r CapacityRecord>>)>;

/// One workload's plot: `cpus[i]` server CPUs in run `i`.
pub(super) fn scaling(
    file: &Path,
    ctx: &str,
    models: &[String],
    cpus: &[usize],
    series: &Series<'_>,
) -> Result<()> {
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    foot.draw(&Text::new(
        "one line per model: its capacity at its best worker count per server CPU count; whisker = interval; triangle = limited by the load generator (at least this many)",
        (10, 6),
        (FONT, 14).into_font(),
    ))
    .map_err(err)?;
    let body = body.titled(ctx, (FONT, 18)).map_err(err)?;
    let xmax = cpus.iter().copied().max().unwrap_or(1).max(2) as f64;
    let ymax = series
        .iter()
        .flat_map(|(_, rs)| rs.iter().flatten())
        .map(|r| r.interval.high.unwrap_or(r.clients).max(r.clients))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(&body)
        .caption("capacity against server CPUs", (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5f64..xmax + 0.5, 0f64..ymax * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("server CPUs")
        .y_desc("clients at the SLO")
        .x_label_formatter(&|v: &f64| format!("{v:.0}"))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (model, records) in series {
        let c = colour(models, model);
        let pts: Vec<(f64, &CapacityRecord)> = cpus
            .iter()
            .zip(records)
            .filter_map(|(&n, r)| r.map(|r| (n as f64, r)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(x, r)| (*x, r.clients as f64)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(model.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        for (x, r) in &pts {
            let y = r.clients as f64;
            if let Some(h) = r.interval.high {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(*x, r.interval.low as f64), (*x, h as f64)],
                        c.stroke_width(1),
                    )))
                    .map_err(err)?;
            }
            if r.limited_by == LimitedBy::Generator {
                chart.draw_series(std::iter::once(TriangleMarker::new((*x, y), 8, c.filled())))
            } else {
                chart.draw_series(std::iter::once(Circle::new((*x, y), 5, c.filled())))
            }
            .map_err(err)?;
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
    Ok(())
}
