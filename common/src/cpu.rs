//! CPU time of a process tree.

use serde::{Deserialize, Serialize};

/// CPU time of a process tree (user and system).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuTimes {
    /// User seconds.
    pub user_s: f64,
    /// System seconds.
    pub sys_s: f64,
    /// Voluntary context switches (a task waited: a read, a sleep, a lock).
    #[serde(default)]
    pub voluntary_ctxt: u64,
    /// Involuntary context switches (a task was preempted).
    #[serde(default)]
    pub involuntary_ctxt: u64,
}
