//! What every plot shares: its size, the font, one colour per model, the
//! footer that names the points that are not valid, and the error type.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::aggregate::Point;
use crate::error::{Error, Result};
use record::verdict::Status;

/// Size of every plot.
pub const SIZE: (u32, u32) = (1200, 800);
pub(crate) const FONT: &str = "sans-serif";
pub(super) const PALETTE: [RGBColor; 8] = [
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

/// The footer of a matrix figure: which points are not valid.
pub(super) fn footer(area: &DrawingArea<BitMapBackend, Shift>, pts: &[&Point]) -> Result<()> {
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

/// The label under bar `x` of a chart with one bar per name at 0, 1, ...:
/// the name at a whole `x`, nothing between bars.
pub(super) fn bar_label(names: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
        names[i as usize].clone()
    } else {
        String::new()
    }
}
