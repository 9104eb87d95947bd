//! Where the slowest frames' time in the server went: per workload, one
//! stacked bar per model at its capacity (the server stages' shares of its
//! slowest 1%), with the median frames' shares beside it for contrast; and
//! below that panel the same for every model at one common load.

use std::path::Path;

use plotters::prelude::*;

use super::style::{bar_label, err, FONT, SIZE};
use crate::error::Result;
use record::attribution::{Attribution, Shares, SERVER_STAGES};
use record::capacity::CapacityRecord;
use record::run::RunFile;

/// One colour per server stage, the same in every run.
const STAGE_COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

/// Draws the plot; false (no file) when no record has an attribution.
/// Above: each model at its capacity; below, when probed: all of them at
/// one common load.
pub(super) fn stages(
    file: &Path,
    ctx: &str,
    run: &RunFile,
    records: &[&CapacityRecord],
) -> Result<bool> {
    let at_capacity: Vec<(String, &Attribution)> = records
        .iter()
        .filter_map(|r| {
            r.attribution
                .as_ref()
                .map(|a| (format!("{} ({} clients)", r.model, r.clients), a))
        })
        .collect();
    if at_capacity.is_empty() {
        return Ok(false);
    }
    let common = crate::common_load::models_at(run, records).map(|(clients, at)| {
        let bars: Vec<(String, &Attribution)> = at
            .iter()
            .filter_map(|m| m.attribution.map(|a| (m.record.model.clone(), a)))
            .collect();
        (clients, bars)
    });
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    foot.draw(&Text::new(
        "frames by time in the server (written to finished): left bar = slowest 1%, right bar = median; label = their mean time in the server",
        (10, 6),
        (FONT, 14).into_font(),
    ))
    .map_err(err)?;
    let body = body.titled(ctx, (FONT, 18)).map_err(err)?;
    match common.filter(|(_, bars)| !bars.is_empty()) {
        Some((clients, bars)) => {
            let (top, bottom) = body.split_vertically((SIZE.1 - 60) / 2);
            panel(&top, "each model at its capacity", &at_capacity, true)?;
            panel(
                &bottom,
                &format!("all at {clients} clients (the largest load all passed)"),
                &bars,
                false,
            )?;
        }
        None => panel(&body, "each model at its capacity", &at_capacity, true)?,
    }
    root.present().map_err(err)?;
    Ok(true)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// One panel: a pair of stacked bars per model; the legend where asked.
fn panel(
    area: &Area<'_>,
    caption: &str,
    bars: &[(String, &Attribution)],
    legend: bool,
) -> Result<()> {
    let n = bars.len();
    let names: Vec<String> = bars.iter().map(|(name, _)| name.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("where the time in the server went: {caption}"),
            (FONT, 16),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..145f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1) * 2 + 1)
        .x_label_formatter(&|x: &f64| bar_label(&names, *x))
        .y_label_formatter(&|y: &f64| {
            if *y <= 100.0 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        })
        .y_desc("% of time in the server")
        .label_style((FONT, 12))
        .draw()
        .map_err(err)?;
    for (i, (_, a)) in bars.iter().enumerate() {
        stack(&mut chart, i as f64 - 0.2, &a.tail)?;
        stack(&mut chart, i as f64 + 0.2, &a.median)?;
    }
    if !legend {
        return Ok(());
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
    Ok(())
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
