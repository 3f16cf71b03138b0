//! Free space on the filesystem that holds the store, for telling "the disk is full" apart
//! from other I/O failures and for naming the filesystem to free space on.
//!
//! SQLite reports a write that ran out of space as `SQLITE_FULL`, but a few paths (growing
//! the WAL index `-shm`, creating the `-wal` at open) report the same cause as a generic
//! `SQLITE_IOERR` or `SQLITE_CANTOPEN`; for those, [`is_full`] looks at the filesystem itself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Below this many free bytes a filesystem counts as full: no SQLite transaction of any size
/// can be relied on to fit, and the failure that made us look was almost surely for space.
pub const FULL_BELOW_BYTES: u64 = 1 << 20;

/// The nearest existing ancestor of `path` (itself included), canonical when possible.
fn existing(path: &Path) -> Option<PathBuf> {
    let mut p = path;
    loop {
        if let Ok(c) = std::fs::canonicalize(p) {
            return Some(c);
        }
        p = p.parent().filter(|p| !p.as_os_str().is_empty())?;
    }
}

/// The mount point of the filesystem holding `path` (or, when `path` does not exist yet, its
/// nearest existing ancestor): the directory to free space under. Falls back to `path`.
pub fn mount_point(path: &Path) -> PathBuf {
    let Some(mut here) = existing(path) else { return path.to_path_buf() };
    let Ok(dev) = std::fs::metadata(&here).map(|m| m.dev()) else { return here };
    while let Some(up) = here.parent() {
        match std::fs::metadata(up) {
            Ok(m) if m.dev() == dev => here = up.to_path_buf(),
            _ => break,
        }
    }
    here
}

/// True when the filesystem holding `path` has (about) no space or no inodes left for this
/// process. Root may use the blocks reserved for it, others only the available ones.
pub fn is_full(path: &Path) -> bool {
    let Some(p) = existing(path) else { return false };
    let Ok(s) = rustix::fs::statvfs(&p) else { return false };
    let blocks = if rustix::process::geteuid().is_root() { s.f_bfree } else { s.f_bavail };
    let bytes = blocks.saturating_mul(s.f_frsize.max(1));
    let no_inodes = s.f_files > 0 && s.f_favail == 0;
    bytes < FULL_BELOW_BYTES || no_inodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_point_of_a_missing_path_is_its_existing_ancestors() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("a/b/c.db");
        let m = mount_point(&missing);
        assert!(tmp.path().canonicalize().unwrap().starts_with(&m), "{}", m.display());
        assert_eq!(mount_point(Path::new("/")), PathBuf::from("/"));
        assert!(!is_full(tmp.path()), "the test machine's temp dir has space");
    }
}
