//! The data directory: private, and used by one server at a time.
//!
//! Invariants, checked by [`DataDir::open`] before the store is touched:
//! * **Private.** A missing directory is created mode 0700 (its missing parents with the
//!   default mode). An existing one that group or others may read, write or enter is refused
//!   with the `chmod 700 DIR` that fixes it: it holds the administrator key. Files in it are
//!   created 0600 (the store's, `credentials`, `config`, `LOCK`, `keys/master.key`).
//! * **Exclusive.** `DIR/LOCK` is held with an exclusive `flock` for as long as the
//!   [`DataDir`] lives (the server's whole run); it holds the holder's pid, for the message the
//!   next server gets. Two servers on one directory would both run controllers and neither see
//!   the other's writes, so the second one stops at start, naming the directory and the pid.
//!   The kernel drops the lock when the process ends, however it ends (`kill -9` included), so
//!   a stale `LOCK` file never blocks a restart.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("data directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "data directory {path} is open to other users (mode {mode:04o}) and would expose the administrator key: run `chmod 700 {path}` (or pick another --data-dir)"
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error(
        "data directory {path} is in use by another berth server{holder}: stop it first, or pick another --data-dir"
    )]
    Locked { path: PathBuf, holder: String },
    #[error("cannot lock data directory {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
}

/// An open, private, exclusively locked data directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates (0700) or checks the directory at `path`, then takes its lock.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        let cerr = |source| DataDirError::Create { path: path.to_path_buf(), source };
        match std::fs::metadata(path) {
            Ok(meta) => {
                if !meta.is_dir() {
                    return Err(DataDirError::NotADirectory { path: path.to_path_buf() });
                }
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o077 != 0 {
                    return Err(DataDirError::NotPrivate { path: path.to_path_buf(), mode });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(cerr)?;
                }
                match std::fs::DirBuilder::new().mode(0o700).create(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::open(path);
                    }
                    Err(e) => return Err(cerr(e)),
                }
                // The umask may have taken bits away, never added any; make sure of 0700.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                    .map_err(cerr)?;
            }
            Err(e) => return Err(cerr(e)),
        }
        let lock = lock(path)?;
        Ok(Self { path: path.to_path_buf(), _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn lock(dir: &Path) -> Result<File, DataDirError> {
    use rustix::fs::{FlockOperation, flock};
    let lock_path = dir.join(LOCK_FILE);
    let lerr = |source| DataDirError::Lock { path: dir.to_path_buf(), source };
    // Never truncate before holding the lock: the file names the current holder.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(lerr)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(DataDirError::Locked { path: dir.to_path_buf(), holder });
        }
        Err(e) => return Err(lerr(e.into())),
    }
    file.set_len(0).map_err(lerr)?;
    file.rewind().map_err(lerr)?;
    writeln!(file, "{}", std::process::id()).map_err(lerr)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_directory_is_private_and_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/data");
        let d = DataDir::open(&dir).unwrap();
        assert_eq!(d.path(), dir);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        let pid = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }

    #[test]
    fn a_directory_open_to_others_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        for m in [0o755, 0o750, 0o701] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
            let err = DataDir::open(&dir).unwrap_err();
            assert!(matches!(err, DataDirError::NotPrivate { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("chmod 700 {}", dir.display())), "{msg}");
            assert!(msg.contains(&format!("{m:04o}")), "{msg}");
            assert!(!dir.join(LOCK_FILE).exists(), "nothing is written into a refused directory");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        DataDir::open(&dir).unwrap();
    }

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DataDir::open(&dir).unwrap();
        let err = DataDir::open(&dir).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataDirError::Locked { .. }), "{msg}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        drop(first);
        let again = DataDir::open(&dir).unwrap();
        drop(again);
    }

    #[test]
    fn a_file_is_not_a_data_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(DataDir::open(&file), Err(DataDirError::NotADirectory { .. })));
    }
}
