//! Files written for operators (backups, exports): written under a temporary
//! name beside the target and renamed when complete, readable by their owner only.

use std::path::{Path, PathBuf};

/// `out` with `.partial` appended to its file name.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Backups and exports hold other people's data: owner-only on Unix.
pub fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}
