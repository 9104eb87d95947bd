//! Links between the files of a run: a path as seen from another folder.

use std::path::{Path, PathBuf};

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
