//! Files written for operators (backups, exports): written under a temporary
//! name beside the target, readable by their owner only from the first byte,
//! and given their name when complete, never over an existing file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// `out` with `.partial` appended to its file name.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// A new, empty file for `out`'s partial copy (a leftover of an interrupted
/// run is ours to replace), owner-only on Unix from the start: backups and
/// exports hold other people's data, and whoever opened a file while it was
/// readable keeps reading after a later `chmod`.
pub fn create_partial(out: &Path) -> io::Result<(PathBuf, File)> {
    let partial = partial_path(out);
    match std::fs::remove_file(&partial) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(&partial)?;
    Ok((partial, file))
}

/// Gives the complete `partial` the name `out`, failing (and leaving both
/// alone) when `out` exists, however late it appeared: `rename` would replace
/// it silently.
pub fn publish(partial: &Path, out: &Path) -> io::Result<()> {
    match std::fs::hard_link(partial, out) {
        Ok(()) => std::fs::remove_file(partial),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} already exists; choose another file or move it away first",
                out.display()
            ),
        )),
        // A file system without hard links: the next best check.
        Err(_) if out.exists() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", out.display()),
        )),
        Err(_) => std::fs::rename(partial, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_is_private_and_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export.json");
        let (partial, file) = create_partial(&out).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = file.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(file);
        std::fs::write(&out, b"someone else's").unwrap();
        let err = publish(&partial, &out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&out).unwrap(), b"someone else's");
        std::fs::remove_file(&out).unwrap();
        publish(&partial, &out).unwrap();
        assert!(out.exists() && !partial.exists());
    }
}
