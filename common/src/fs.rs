//! Files written so that readers never see half of one.

use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so readers never see half a file: via a
/// temporary file and a rename when `path` is a regular file or does not
/// exist yet. Anything else that exists (a device such as `/dev/null`, a
/// pipe) is written in place, never replaced, truncated or re-permissioned.
/// A symbolic link is followed, and the same rules apply to its target.
/// Missing parent folders are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = match std::fs::canonicalize(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    match std::fs::metadata(&target) {
        Ok(m) if !m.is_file() => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&target)?;
            return f.write_all(bytes);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_replaced_and_others_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.json");
        write_atomic(&new, b"one").unwrap();
        write_atomic(&new, b"two").unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"two");
        // A link is followed: its target is replaced, the link stays.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&new, &link).unwrap();
        write_atomic(&link, b"three").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&new).unwrap(), b"three");
        // A pipe is written in place, not renamed over.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomic(&fifo, b"piped").unwrap();
        assert_eq!(reader.join().unwrap(), b"piped");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 3, "no temporary files left: {left:?}");
    }
}
