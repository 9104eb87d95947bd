//! Where the slowest frames' time in the server went: per workload, one
//! stacked bar per model at its capacity (the server stages' shares of its
//! slowest 1%), with the median frames' shares beside it for contrast.

use std::path::Path;

use plotters::prelude::*;

use super::style::{bar_label, err, FONT, SIZE};
use crate::error::Result;
use record::attribution::Shares;
use record::attribution::SERVER_STAGES;
use record::capacity::CapacityRecord;

/// One colour per server stage, the same in every run.
const STAGE_COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

/// Draws the plot; false (no file) when no record has an attribution.
pub(super) fn stages(file: &Path, ctx: &str, records: &[&CapacityRecord]) -> Result<bool> {
    let with: Vec<(&CapacityRecord, &record::attribution::Attribution)> = records
        .iter()
        .filter_map(|r| r.attribution.as_ref().map(|a| (*r, a)))
        .collect();
    if with.is_empty() {
        return Ok(false);
    }
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    foot.draw(&Text::new(
        "each model at its capacity, frames by time in the server (written to finished): left = slowest 1%, right = median; label = their mean time in the server",
        (10, 6),
        (FONT, 14).into_font(),
    ))
    .map_err(err)?;
    let body = body.titled(ctx, (FONT, 18)).map_err(err)?;
    let n = with.len();
    let names: Vec<String> = with
        .iter()
        .map(|(r, _)| format!("{} ({} clients)", r.model, r.clients))
        .collect();
    let mut chart = ChartBuilder::on(&body)
        .caption(
            "where the time in the server went: share of each stage",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..115f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1) * 2 + 1)
        .x_label_formatter(&|x: &f64| bar_label(&names, *x))
        .y_desc("% of the frames' time in the server")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    for (i, (_, a)) in with.iter().enumerate() {
        stack(&mut chart, i as f64 - 0.2, &a.tail)?;
        stack(&mut chart, i as f64 + 0.2, &a.median)?;
    }
    for (s, c) in SERVER_STAGES.iter().zip(STAGE_COLOURS) {
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(err)?
            .label(*s)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
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

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One stacked bar of `shares` centred at `x`, labelled with the mean.
fn stack(chart: &mut Chart<'_, '_>, x: f64, shares: &Shares) -> Result<()> {
    let mut y = 0.0;
    for (share, c) in shares.share.iter().zip(STAGE_COLOURS) {
        let h = share * 100.0;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.17, y), (x + 0.17, y + h)],
                c.filled(),
            )))
            .map_err(err)?;
        y += h;
    }
    chart
        .draw_series(std::iter::once(Text::new(
            record::units::fmt_ns(shares.mean_ns as u64),
            (x - 0.17, 104.0),
            (FONT, 12).into_font(),
        )))
        .map_err(err)?;
    Ok(())
}
