//! A single-model run's time series: rate, CPU and RSS over each cell.

use std::path::Path;

use plotters::prelude::*;

use super::style::{err, FONT, PALETTE, SIZE};
use crate::error::Result;
use record::run::RunFile;

/// Single-model runs: achieved rate, server CPU and RSS over each cell.
pub(super) fn timeseries(file: &Path, run: &RunFile, machine: &str) -> Result<()> {
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let body = root
        .titled(
            &format!(
                "{} over time, {}; {}",
                run.config.models.join(","),
                run.run_id,
                machine
            ),
            (FONT, 18),
        )
        .map_err(err)?;
    let areas = body.split_evenly((1, 3));
    // Per cell: (label, points) for each panel.
    let rate = |c: &record::cell::CellResult| -> Vec<(f64, f64)> {
        let Some(s) = &c.server else {
            return Vec::new();
        };
        let bucket_s = s.timeline.bucket_ns as f64 / 1e9;
        s.timeline
            .points()
            .map(|(t, n)| ((t - s.timeline.start_ns) as f64 / 1e9, n as f64 / bucket_s))
            .collect()
    };
    let cpu = |c: &record::cell::CellResult| -> Vec<(f64, f64)> {
        c.samples
            .server
            .windows(2)
            .map(|w| {
                let dt = w[1].t_ns.saturating_sub(w[0].t_ns).max(1) as f64;
                (
                    w[1].t_s,
                    w[1].cpu_ns.saturating_sub(w[0].cpu_ns) as f64 / dt * 100.0,
                )
            })
            .collect()
    };
    let rss = |c: &record::cell::CellResult| -> Vec<(f64, f64)> {
        c.samples
            .server
            .iter()
            .map(|s| (s.t_s, s.rss_kib as f64 / 1024.0))
            .collect()
    };
    type Series = fn(&record::cell::CellResult) -> Vec<(f64, f64)>;
    let panels: [(&str, &str, &str, Series); 3] = [
        (
            "processed rate",
            "packets/s",
            "seconds since the first packet",
            rate,
        ),
        (
            "server CPU",
            "% of one CPU",
            "seconds since the cell started",
            cpu,
        ),
        ("server RSS", "MiB", "seconds since the cell started", rss),
    ];
    for ((title, y, x, series), area) in panels.iter().zip(&areas) {
        let all: Vec<Vec<(f64, f64)>> = run.cells.iter().map(series).collect();
        let tmax = all.iter().flatten().map(|p| p.0).fold(1.0, f64::max);
        let vmax = all.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(*title, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(0.0..tmax, 0.0..vmax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(*x)
            .y_desc(*y)
            .label_style((FONT, 14))
            .draw()
            .map_err(err)?;
        for (i, (cell, pts)) in run.cells.iter().zip(all).enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                .map_err(err)?
                .label(cell.key.id())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}
