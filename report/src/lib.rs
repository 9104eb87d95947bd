//! Reports rendered from a saved run only, so any past run can be
//! re-rendered. Each output implements [`Output`] over one [`View`] of the
//! run (fixed matrix or capacity search, decided once from the data): the
//! terminal [`Table`], the PNG [`Plots`] (one file per chart family),
//! [`Summary`] (summary.md) and [`html::Html`] (report.html, self-contained). Run-to-run comparison is [`compare`];
//! [`aggregate`] folds repeats.

pub mod aggregate;
pub mod capacity_summary;
pub mod common_load;
pub mod compare;
pub mod downstream;
pub mod error;
pub mod html;
pub mod labels;
pub mod links;
pub mod output;
pub mod plots;
pub mod scaling;
pub mod summary;
pub mod table;
pub mod view;

use std::path::{Path, PathBuf};

use record::run::RunFile;

pub use error::{Error, Result};
pub use links::relative;
pub use output::{Output, Plots, Rendered, Summary, Table};
pub use view::View;

/// What `render` wrote.
pub struct Written {
    /// The summary.md path.
    pub summary: PathBuf,
    /// The report.html path.
    pub html: PathBuf,
    /// The plots folder.
    pub plots_dir: PathBuf,
    /// Each plot written.
    pub plots: Vec<PathBuf>,
}

/// Renders plots into `<plots_root>/<run-id>/`, and `summary.md` and
/// `report.html` into `run_dir`.
pub fn render(run: &RunFile, run_dir: &Path, plots_root: &Path) -> Result<Written> {
    let view = View::of(run);
    let mut out = Rendered {
        run_dir: run_dir.to_path_buf(),
        plots_dir: plots_root.join(&run.run_id),
        ..Rendered::default()
    };
    for output in [&Plots as &dyn Output, &Summary, &html::Html] {
        output.render(&view, &mut out)?;
    }
    Ok(Written {
        summary: out.summary.unwrap_or_else(|| run_dir.join("summary.md")),
        html: out.html.unwrap_or_else(|| run_dir.join("report.html")),
        plots_dir: out.plots_dir,
        plots: out.plots,
    })
}

/// The run's table for the terminal.
pub fn terminal_table(run: &RunFile) -> String {
    let mut out = Rendered::default();
    // The table writes no file: it cannot fail.
    let _ = Table.render(&View::of(run), &mut out);
    out.terminal
}
