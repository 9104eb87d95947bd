//! Names and labels every output shares: file-name slugs, batch windows and
//! status words, so a table, a summary and a plot of one run say the same.

use record::units::fmt_ns;
use record::verdict::Status;

/// A file-name-safe form of a workload name.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `per frame` or the window, as the tables show it.
pub fn window_label(us: u64) -> String {
    if us == 0 {
        "0".into()
    } else {
        fmt_ns(us * 1000)
    }
}

/// Word for a status.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Valid => "valid",
        Status::Overloaded => "overloaded",
        Status::Invalid => "INVALID",
    }
}

/// Where a run's cpu work came from, when the run recorded its kernel
/// What a run measured with a setting that changes what the servers do
/// (`--no-stages`, `--scrape-every`), for its method section.
pub fn cost_notes(c: &record::config::RunConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if !c.stages {
        notes.push("**Stages off** (`--no-stages`): the servers stamped no reads and recorded no frame's stages, so nothing here says where the time went; such a run measures what knowing it costs.".to_string());
    }
    if let Some(every) = c.scrape_every {
        notes.push(format!("**Watched** (`--scrape-every {}`): the servers ran with `--metrics` and were scraped that often during every cell; their CPU includes what watching costs (the exporter is a process of the server's tree).", humantime::format_duration(every)));
    }
    notes
}

/// calibration: the cached median, its spread and when it was measured.
pub fn kernel_note(c: &record::config::RunConfig) -> Option<String> {
    let k = c.kernel_calibration.as_ref()?;
    let (lo, hi) = k.spread();
    Some(format!(
        "`cpu:DUR` specs ask for {:.1} kernel iterations per microsecond: the median of {} timed rounds ({lo:.1}-{hi:.1}) measured {} on this machine and build and cached, so every run here asks for the same cpu work (`--recalibrate` measures again)",
        k.iters_per_us,
        k.rounds.len(),
        k.measured
    ))
}
