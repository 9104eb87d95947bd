//! The matrix's multi-panel figures (throughput, latency, CPU, memory):
//! one chart per figure, one line per model over fleet sizes.

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use super::style::{colour, err, footer, FONT, SIZE};
use crate::aggregate::Point;
use crate::error::Result;
use record::units::{fmt_ns, fmt_rate};
use record::verdict::Status;

/// The matrix's four figures, each a file: (name, its panels).
pub(super) fn figures() -> [(&'static str, Vec<Panel>); 4] {
    [
        (
            "throughput",
            vec![
                Panel::new("achieved vs offered", "packets/s", |p| p.achieved_pps)
                    .rate()
                    .offered(),
            ],
        ),
        (
            "latency",
            vec![
                Panel::new("p50 latency (from due)", "latency (log)", |p| {
                    p.p50_ns as f64
                })
                .latency(),
                Panel::new("p99 latency (from due)", "latency (log)", |p| {
                    p.p99_ns as f64
                })
                .latency(),
                Panel::new("p99.9 latency (from due)", "latency (log)", |p| {
                    p.p999_ns as f64
                })
                .latency(),
                Panel::new("p50 service latency (from write)", "latency (log)", |p| {
                    p.service_p50_ns as f64
                })
                .latency(),
                Panel::new("p99 service latency (from write)", "latency (log)", |p| {
                    p.service_p99_ns as f64
                })
                .latency(),
                Panel::new("p99.9 service latency (from write)", "latency (log)", |p| {
                    p.service_p999_ns as f64
                })
                .latency(),
            ],
        ),
        (
            "cpu",
            vec![
                Panel::new("server CPU", "% of one CPU", |p| p.cpu_pct),
                Panel::new("server CPU per packet", "us/packet", |p| {
                    p.cpu_us_per_packet
                }),
            ],
        ),
        (
            "memory",
            vec![
                Panel::new("peak RSS", "MiB", |p| p.peak_rss_kib as f64 / 1024.0),
                Panel::new("peak PSS", "MiB", |p| p.peak_pss_kib as f64 / 1024.0),
            ],
        ),
    ]
}

/// One chart of a multi-chart figure.
pub(super) struct Panel {
    title: &'static str,
    y: &'static str,
    log: bool,
    value: fn(&Point) -> f64,
    offered: bool,
    format: fn(&f64) -> String,
}

impl Panel {
    fn new(title: &'static str, y: &'static str, value: fn(&Point) -> f64) -> Self {
        Panel {
            title,
            y,
            log: false,
            value,
            offered: false,
            format: |v| format!("{v:.1}"),
        }
    }

    /// Values in ns on a log axis, labelled like `250us`, `4.00ms`.
    fn latency(mut self) -> Self {
        self.log = true;
        self.format = |v| fmt_ns(*v as u64);
        self
    }

    /// Values in packets/s, labelled like `50.0k`.
    fn rate(mut self) -> Self {
        self.format = |v| fmt_rate(*v);
        self
    }

    /// Also draw the offered load.
    fn offered(mut self) -> Self {
        self.offered = true;
        self
    }
}

pub(super) fn models_in(pts: &[&Point]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in pts {
        if !out.contains(&p.model) {
            out.push(p.model.clone());
        }
    }
    out
}

pub(super) fn panels(
    file: &Path,
    ctx: &str,
    models: &[String],
    pts: &[&Point],
    panels: &[Panel],
) -> Result<()> {
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (body, foot) = root.split_vertically(SIZE.1 - 30);
    footer(&foot, pts).map_err(err)?;
    let body = body.titled(ctx, (FONT, 18)).map_err(err)?;
    // Up to three panels a row.
    let rows = panels.len().div_ceil(3);
    let areas = body.split_evenly((rows, panels.len().div_ceil(rows)));
    let mut sizes: Vec<u32> = pts.iter().map(|p| p.clients).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (xmin, xmax) = (
        sizes[0] as f64 / 1.5,
        *sizes.last().expect("non-empty") as f64 * 1.5,
    );
    for (panel, area) in panels.iter().zip(&areas) {
        let values: Vec<f64> = pts
            .iter()
            .map(|p| (panel.value)(p))
            .chain(pts.iter().filter(|_| panel.offered).map(|p| p.offered_pps))
            .filter(|v| v.is_finite())
            .collect();
        let ymax = values.iter().cloned().fold(0.0, f64::max).max(1e-3) * 1.15;
        let ymin_pos = values
            .iter()
            .cloned()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        // Ticks exactly at the measured fleet sizes.
        let ticks: Vec<f64> = sizes.iter().map(|&n| n as f64).collect();
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(panel.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(85);
        if panel.log {
            let ymin = if ymin_pos.is_finite() {
                ymin_pos / 1.5
            } else {
                1e-3
            };
            let mut chart = builder
                .build_cartesian_2d(
                    (xmin..xmax).log_scale().with_key_points(ticks.clone()),
                    (ymin..ymax.max(ymin * 10.0)).log_scale(),
                )
                .map_err(err)?;
            draw_models(&mut chart, models, pts, panel)?;
        } else {
            let mut chart = builder
                .build_cartesian_2d(
                    (xmin..xmax).log_scale().with_key_points(ticks.clone()),
                    0.0..ymax,
                )
                .map_err(err)?;
            draw_models(&mut chart, models, pts, panel)?;
        }
    }
    root.present().map_err(err)
}

/// Draws the mesh, the offered line if asked, and one series per model.
pub(super) fn draw_models<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    models: &[String],
    pts: &[&Point],
    panel: &Panel,
) -> Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut sizes: Vec<f64> = pts.iter().map(|p| p.clients as f64).collect();
    sizes.dedup();
    let x_label = |v: &f64| {
        // Label only the fleet sizes measured, so log ticks do not crowd.
        if sizes.iter().any(|s| (s - v).abs() < 1e-6) {
            format!("{v:.0}")
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc("clients (log scale)")
        .y_desc(panel.y)
        .x_label_formatter(&x_label)
        .y_label_formatter(&panel.format)
        .light_line_style(RGBColor(238, 238, 238))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for model in models_in(pts) {
        let colour = colour(models, &model);
        let mine: Vec<&&Point> = pts.iter().filter(|p| p.model == model).collect();
        // No measured frame means no latency to draw (log axes cannot show 0).
        let known = |p: &&&Point| !panel.log || p.latency_samples > 0;
        let mine: Vec<&&Point> = mine.into_iter().filter(|p| known(p)).collect();
        let line: Vec<(f64, f64)> = mine
            .iter()
            .filter(|p| p.status != Status::Invalid)
            .map(|p| (p.clients as f64, (panel.value)(p)))
            .collect();
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(err)?
            .label(model.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
            });
        for p in mine {
            let xy = (p.clients as f64, (panel.value)(p));
            match p.status {
                Status::Valid => {
                    chart.draw_series(std::iter::once(Circle::new(xy, 6, colour.filled())))
                }
                Status::Overloaded => {
                    chart.draw_series(std::iter::once(Circle::new(xy, 6, colour.stroke_width(2))))
                }
                Status::Invalid => {
                    chart.draw_series(std::iter::once(Cross::new(xy, 7, colour.stroke_width(2))))
                }
            }
            .map_err(err)?;
        }
    }
    if panel.offered {
        let mut offered: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (p.clients as f64, p.offered_pps))
            .collect();
        offered.sort_by(|a, b| a.0.total_cmp(&b.0));
        offered.dedup();
        let style = BLACK.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(offered, 8, 6, style))
            .map_err(err)?
            .label("offered")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}
