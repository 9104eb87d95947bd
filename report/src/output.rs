//! Every output of a run behind one trait ([`Output`], as hyperfine's
//! exporters): the terminal table ([`Table`]), the PNG plots ([`Plots`]),
//! summary.md ([`Summary`]) and report.html ([`crate::html::Html`]). Each
//! renders one [`View`]; what one writes is in [`Rendered`] for the next
//! (summary.md links the plots, report.html inlines both).
//! run.json is the run's data, saved by `record::run::RunFile::save`.

use std::path::PathBuf;

use common::fs::write_atomic;

use crate::error::{Error, Result};
use crate::view::View;
use crate::{capacity_summary, plots, summary, table};

/// What the outputs rendered so far, and where they write.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The run's results folder (summary.md goes there).
    pub run_dir: PathBuf,
    /// The run's plots folder.
    pub plots_dir: PathBuf,
    /// Each plot written.
    pub plots: Vec<PathBuf>,
    /// summary.md, once written.
    pub summary: Option<PathBuf>,
    /// report.html, once written.
    pub html: Option<PathBuf>,
    /// Text for the terminal.
    pub terminal: String,
}

/// One output of a run.
pub trait Output {
    /// Renders `view`, recording what it wrote in `out`.
    fn render(&self, view: &View<'_>, out: &mut Rendered) -> Result<()>;
}

/// The table printed at the end of a run: one row per cell (matrix) or per
/// capacity (search).
pub struct Table;

impl Output for Table {
    fn render(&self, view: &View<'_>, out: &mut Rendered) -> Result<()> {
        out.terminal.push_str(&match view {
            View::Matrix { run, .. } => table::render(&run.config, &run.cells),
            View::Search { run } => table::render_capacities(run),
        });
        Ok(())
    }
}

/// The PNG plots, into `plots_dir`.
pub struct Plots;

impl Output for Plots {
    fn render(&self, view: &View<'_>, out: &mut Rendered) -> Result<()> {
        std::fs::create_dir_all(&out.plots_dir).map_err(|source| Error::Io {
            what: "create",
            path: out.plots_dir.clone(),
            source,
        })?;
        let written = match view {
            View::Matrix { run, points } => plots::matrix(run, points, &out.plots_dir)?,
            View::Search { run } => plots::search(run, &out.plots_dir)?,
        };
        out.plots.extend(written);
        Ok(())
    }
}

/// summary.md, into `run_dir`, linking the plots rendered before it.
pub struct Summary;

impl Output for Summary {
    fn render(&self, view: &View<'_>, out: &mut Rendered) -> Result<()> {
        let link_base = crate::links::relative(&out.run_dir, &out.plots_dir);
        let md = match view {
            View::Matrix { run, points } => summary::render(run, points, &out.plots, &link_base),
            View::Search { run } => capacity_summary::render(run, &out.plots, &link_base),
        };
        let path = out.run_dir.join("summary.md");
        write_atomic(&path, md.as_bytes()).map_err(|source| Error::Io {
            what: "write",
            path: path.clone(),
            source,
        })?;
        out.summary = Some(path);
        Ok(())
    }
}
