//! CPU lists as `taskset` writes them (`0-3,6`): parsed and printed, so a
//! parent can hand its child the CPUs to pin to.

/// Parses a CPU list such as `0-3,6` (sorted, without repeats).
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("`{s}` is not a CPU list like 0-3,6");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(format!("CPU list `{s}` is empty"));
    }
    Ok(out)
}

/// Formats CPUs as a list [`parse_list`] reads back.
pub fn format_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
