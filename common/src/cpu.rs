//! CPU time of a process tree.

use serde::{Deserialize, Serialize};

/// CPU time of a process tree (user and system).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuTimes {
    /// User seconds.
    pub user_s: f64,
    /// System seconds.
    pub sys_s: f64,
}
