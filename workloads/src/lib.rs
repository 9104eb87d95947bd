//! Everything the servers and the fleet must agree on, with no dependency on
//! either: wire protocol v2 ([`wire`], and its ack records in [`ack`]), the reference work kernel
//! ([`kernel`]), work-mix specifications ([`spec`]), the downstream call
//! protocol ([`call`]) and the shared clock ([`clock`]).

pub mod ack;
pub mod call;
pub mod clock;
pub mod kernel;
pub mod spec;
pub mod wire;

pub use spec::{WorkPlan, WorkSpec};
pub use wire::{Frame, FrameError, FrameReader, Limits, WorkKind, FRAME_LEN};
