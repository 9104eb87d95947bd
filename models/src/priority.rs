//! Real-time scheduling for the helper threads that must not wait a
//! scheduler slice behind a busy thread on their CPU: the downstream
//! responder, and the harness's canary.

/// Moves the calling thread to `SCHED_FIFO` at the lowest real-time
/// priority (refused without the privilege: it then runs as it was).
pub fn realtime() -> Result<(), thread_priority::Error> {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
}
