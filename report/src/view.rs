//! What a run shows, decided once from its data: a fixed matrix (points
//! folded over repeats) or a capacity search (a record per model and
//! workload). Every output renders a [`View`], so no output asks again
//! which kind of run it has.

use record::run::RunFile;

use crate::aggregate::{self, Point};

/// A run as its outputs see it.
pub enum View<'a> {
    /// A fixed matrix of fleet sizes: one point per cell, repeats folded.
    Matrix {
        /// The run.
        run: &'a RunFile,
        /// Its cells as points (`aggregate::points`).
        points: Vec<Point>,
    },
    /// A capacity search: the run's capacity records.
    Search {
        /// The run.
        run: &'a RunFile,
    },
}

impl<'a> View<'a> {
    /// The view of `run`: a search when it was configured as one.
    pub fn of(run: &'a RunFile) -> Self {
        match run.config.search {
            Some(_) => View::Search { run },
            None => View::Matrix {
                run,
                points: aggregate::points(run),
            },
        }
    }

    /// The run behind the view.
    pub fn run(&self) -> &'a RunFile {
        match self {
            View::Matrix { run, .. } | View::Search { run } => run,
        }
    }
}
