//! Children of a benchmark run die with it: `harness serve` and `harness
//! fleet` started by the harness get `--parent-pid`, ask the kernel for
//! SIGKILL when their parent goes (PR_SET_PDEATHSIG), and exit at once if it
//! is already gone, so a harness killed with SIGKILL leaves no orphan.

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::{getppid, Pid};

/// Dies with `parent`: SIGKILL on its death, or an error now if this
/// process has already been re-parented.
pub fn die_with(parent: i32) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("set the parent-death signal")?;
    // The parent may have died between our fork and the call above.
    if getppid() != Pid::from_raw(parent) {
        bail!("the harness that started this process (pid {parent}) is gone");
    }
    Ok(())
}
