//! Reports rendered from a saved run only, so any past run can be
//! re-rendered: `summary.md` ([`summary`]), PNG plots ([`plots`]) and
//! run-to-run comparison ([`compare`]). [`aggregate`] folds repeats.

pub mod aggregate;
pub mod capacity_plots;
pub mod capacity_summary;
pub mod compare;
pub mod error;
pub mod labels;
pub mod plots;
pub mod summary;
pub mod table;

use std::path::{Path, PathBuf};

use common::fs::write_atomic;

use record::run::RunFile;

pub use error::{Error, Result};

/// What `render` wrote.
pub struct Written {
    /// The summary.md path.
    pub summary: PathBuf,
    /// The plots folder.
    pub plots_dir: PathBuf,
    /// Each plot written.
    pub plots: Vec<PathBuf>,
}

/// Renders plots into `<plots_root>/<run-id>/` and `summary.md` into `run_dir`.
pub fn render(run: &RunFile, run_dir: &Path, plots_root: &Path) -> Result<Written> {
    let plots_dir = plots_root.join(&run.run_id);
    std::fs::create_dir_all(&plots_dir).map_err(|source| Error::Io {
        what: "create",
        path: plots_dir.clone(),
        source,
    })?;
    let points = aggregate::points(run);
    let plots = match run.config.search {
        Some(_) => capacity_plots::render(run, &plots_dir)?,
        None => plots::render_all(run, &points, &plots_dir)?,
    };
    let link_base = relative(run_dir, &plots_dir);
    let md = match run.config.search {
        Some(_) => capacity_summary::render(run, &plots, &link_base),
        None => summary::render(run, &points, &plots, &link_base),
    };
    let summary = run_dir.join("summary.md");
    write_atomic(&summary, md.as_bytes()).map_err(|source| Error::Io {
        what: "write",
        path: summary.clone(),
        source,
    })?;
    Ok(Written {
        summary,
        plots_dir,
        plots,
    })
}

/// Path to `to` as seen from the folder `from` (both relative to the same
/// working directory, or both absolute).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    };
    let (from, to) = (abs(from), abs(to));
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_climb_then_descend() {
        assert_eq!(
            relative(Path::new("/w/results/r1"), Path::new("/w/plots/r1")),
            PathBuf::from("../../plots/r1")
        );
    }
}
