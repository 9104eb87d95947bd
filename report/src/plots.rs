//! PNG plots with plotters, text in an embedded DejaVu Sans (no system
//! fonts needed). One colour per model everywhere; valid points are filled
//! circles, overloaded ones hollow circles, invalid ones crosses that no
//! line passes through.

use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::error::{Error, Result};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::aggregate::Point;
use crate::labels::slug;
use record::run::RunFile;
use record::units::{fmt_ns, fmt_rate};
use record::verdict::Status;

/// Size of every plot.
pub const SIZE: (u32, u32) = (1200, 800);
pub(crate) const FONT: &str = "sans-serif";
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// The colour of `model` among the run's `models`: its position there, so
/// it is the same in every plot of the run; the palette's eight first,
/// then hues a golden angle apart, for any number of models.
pub fn colour(models: &[String], model: &str) -> RGBColor {
    let i = models
        .iter()
        .position(|m| m == model)
        .unwrap_or(models.len());
    if let Some(&c) = PALETTE.get(i) {
        return c;
    }
    let hue = ((i - PALETTE.len()) as f64 * 0.381_966 + 0.05).fract();
    let (r, g, b) = HSLColor(hue, 0.65, 0.45).rgb();
    RGBColor(r, g, b)
}

pub(crate) fn err<E: std::fmt::Display>(e: E) -> Error {
    Error::Plot(e.to_string())
}

/// Renders every plot of the run into `dir`; returns the files written.
pub fn render_all(run: &RunFile, points: &[Point], dir: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let machine = format!(
        "{} ({} CPUs; server {:?}, fleet {:?})",
        run.environment.hostname,
        run.environment.logical_cpus,
        run.config.server_cpus,
        run.config.fleet_cpus
    );
    let mut out = Vec::new();
    for w in &run.config.workloads {
        let pts: Vec<&Point> = points.iter().filter(|p| p.workload == w.name).collect();
        if pts.is_empty() {
            continue;
        }
        let mut windows: Vec<u64> = pts.iter().map(|p| p.batch_window_us).collect();
        windows.sort_unstable();
        windows.dedup();
        let windows: Vec<String> = windows
            .iter()
            .map(|&w| crate::labels::window_label(w))
            .collect();
        let ctx = format!(
            "workload {} ({}), {} Hz/client, batch window {}; {}",
            w.name,
            w.plan.spec,
            run.config.rate,
            windows.join("/"),
            machine
        );
        let base = slug(&w.name);
        let figures: [(&str, Vec<Panel>); 4] = [
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
        ];
        for (name, figure) in &figures {
            let file = dir.join(format!("{base}-{name}.png"));
            panels(&file, &ctx, &run.config.models, &pts, figure)?;
            out.push(file);
        }
        let file = dir.join(format!("{base}-spectrum.png"));
        if spectrum(&file, &ctx, run, &pts)? {
            out.push(file);
        }
    }
    if run.config.single_model {
        let file = dir.join("run-timeseries.png");
        timeseries(&file, run, &machine)?;
        out.push(file);
    }
    Ok(out)
}

/// One chart of a multi-chart figure.
struct Panel {
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

fn models_in(pts: &[&Point]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in pts {
        if !out.contains(&p.model) {
            out.push(p.model.clone());
        }
    }
    out
}

fn footer(area: &DrawingArea<BitMapBackend, Shift>, pts: &[&Point]) -> Result<()> {
    let bad: Vec<String> = pts
        .iter()
        .filter(|p| p.status != Status::Valid)
        .map(|p| {
            format!(
                "{}@{} {}",
                p.model,
                p.clients,
                crate::labels::status_word(p.status)
            )
        })
        .collect();
    let text = if bad.is_empty() {
        "filled circle = valid. All points valid.".to_string()
    } else {
        format!(
            "filled = valid, hollow = overloaded, x = invalid (not trustworthy). Not valid: {}",
            bad.join(", ")
        )
    };
    let text: String = text.chars().take(190).collect();
    // Coordinates are relative to the footer strip.
    area.draw(&Text::new(text, (10, 6), (FONT, 14).into_font()))
        .map_err(err)
}

fn panels(
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
fn draw_models<'a, X, Y>(
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

/// Percentile spectrum per model at the largest fleet size where any model
/// is valid (else the smallest). False when there is no latency data.
fn spectrum(file: &Path, ctx: &str, run: &RunFile, pts: &[&Point]) -> Result<bool> {
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
    // (point, is service latency, curve)
    type Curve<'a> = (&'a Point, bool, Vec<(f64, f64)>);
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

/// Single-model runs: achieved rate, server CPU and RSS over each cell.
fn timeseries(file: &Path, run: &RunFile, machine: &str) -> Result<()> {
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
