//! Garbage collection of unreferenced blobs and abandoned uploads: pure decisions
//! ([`sweepable`], [`abandoned`]) and the sweep that acts on them
//! ([`crate::Registry::collect_garbage`]).
//!
//! Invariants:
//! * a blob some stored manifest references is never deleted;
//! * a blob written (or re-written: finishing an upload of an existing blob refreshes its
//!   time) within the grace period is never deleted: it may belong to a push in progress
//!   whose manifest has not arrived yet. Uploads in progress live in their own session
//!   files, which the collector never touches;
//! * the sweep runs under the registry's collection lock, which every upload finish,
//!   mount and manifest push holds shared: no blob can become referenced (or freshly
//!   written) between the decision and the delete;
//! * an upload session is discarded only when its data has not grown for
//!   [`UPLOAD_EXPIRY`] (a day; docker-registry's purge default is a week, but a client that
//!   resumes a push after a day is rare and the space is not); the decision is re-checked
//!   under the session's own lock, so a session being appended to is never cut.
//!
//! Across servers sharing one blob directory (`--registry-blob-dir`, issue #18) only the
//! leader collects (its store writes fenced), and the lock above holds off only this
//! process's uploads. Another server may finish an upload of a doomed blob (which refreshes
//! the file's time) and store a manifest referencing it while the sweep runs, so a doomed
//! blob is not deleted at once: after its links are forgotten, a blob re-written within the
//! grace period is kept; the others are renamed aside ([`set_aside`], `<blob>.gc` in the same
//! directory: atomic, and invisible to listings and reads); the referenced set is read again;
//! a blob some manifest now references is renamed back, the rest deleted ([`settle`]). A
//! manifest stored after the rename cannot reference a set-aside blob (its push checks that
//! the blob is there), so no stored manifest is left referencing a deleted blob. A blob set
//! aside by a collection that never settled it (a crash) is settled by a later one once
//! [`ASIDE_STALE`] has passed ([`recover_aside`]). While set aside, a blob is briefly absent
//! for pulls: only blobs no manifest referenced at the decision are ever set aside.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::blobs::BlobFile;
use crate::digest::Digest;

/// The blobs of `on_disk` that may be deleted: referenced by no manifest and older than
/// `grace` at `now`.
pub fn sweepable(
    on_disk: &[BlobFile],
    referenced: &HashSet<Digest>,
    now: SystemTime,
    grace: Duration,
) -> Vec<Digest> {
    on_disk
        .iter()
        .filter(|b| !referenced.contains(&b.digest))
        .filter(|b| now.duration_since(b.modified).is_ok_and(|age| age >= grace))
        .map(|b| b.digest.clone())
        .collect()
}

/// How long an upload session may sit untouched before a collection discards it.
pub const UPLOAD_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Whether an upload session whose data was last written at `modified` is abandoned at `now`
/// (a clock that went backwards makes it recent, never abandoned).
pub fn abandoned(modified: SystemTime, now: SystemTime, expiry: Duration) -> bool {
    now.duration_since(modified).is_ok_and(|idle| idle >= expiry)
}

/// The suffix of a blob set aside by a collection.
pub const ASIDE_SUFFIX: &str = ".gc";

/// How long a set-aside blob may wait before another collection settles it (a collection
/// settles its own within moments; one that waits longer crashed).
pub const ASIDE_STALE: Duration = Duration::from_secs(600);

/// Where blob file `path` goes while set aside.
pub fn aside_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(ASIDE_SUFFIX);
    PathBuf::from(p)
}

/// Whether a blob set aside at `changed` (its ctime: the rename) is abandoned at `now`.
pub fn stale_aside(changed: SystemTime, now: SystemTime) -> bool {
    now.duration_since(changed).is_ok_and(|age| age >= ASIDE_STALE)
}

/// Renames blob file `path` aside unless it was written within `grace` of `now` (then another
/// upload made it live again); false when kept or already gone.
pub async fn set_aside(path: &Path, now: SystemTime, grace: Duration) -> io::Result<bool> {
    let meta = match tokio::fs::metadata(path).await {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if !now.duration_since(written).is_ok_and(|age| age >= grace) {
        return Ok(false);
    }
    match tokio::fs::rename(path, aside_path(path)).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Ends the setting aside of blob file `path`: back in place when `back`, else deleted.
pub async fn settle(path: &Path, back: bool) -> io::Result<()> {
    let aside = aside_path(path);
    let done = if back {
        tokio::fs::rename(&aside, path).await
    } else {
        tokio::fs::remove_file(&aside).await
    };
    match done {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Settles the blobs under `sha256_dir` (`blobs/sha256`) set aside longer than
/// [`ASIDE_STALE`] ago: back when `referenced`, else deleted; how many were deleted.
pub async fn recover_aside(
    sha256_dir: &Path,
    referenced: &HashSet<Digest>,
    now: SystemTime,
) -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let dir = sha256_dir.to_path_buf();
    let found = tokio::task::spawn_blocking(move || -> io::Result<Vec<(PathBuf, Digest)>> {
        let mut out = vec![];
        for prefix in std::fs::read_dir(&dir)? {
            let prefix = prefix?.path();
            if !prefix.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&prefix)? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                let Some(hex) = name.strip_suffix(ASIDE_SUFFIX) else { continue };
                let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else { continue };
                let meta = f.metadata()?;
                let changed = SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(meta.ctime()).unwrap_or(0));
                if stale_aside(changed, now) {
                    out.push((prefix.join(hex), digest));
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(io::Error::other)??;
    let mut deleted = 0;
    for (path, digest) in found {
        let back = referenced.contains(&digest);
        settle(&path, back).await?;
        if !back {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// What a collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_deleted: usize,
    pub bytes_freed: u64,
    pub blobs_kept: usize,
    /// Upload sessions discarded as abandoned, and the bytes they held.
    pub uploads_purged: usize,
    pub upload_bytes_freed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_unreferenced_blobs_are_swept() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let d = |c: char| Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap();
        let file = |c: char, age_secs: u64| BlobFile {
            digest: d(c),
            size: 1,
            modified: now - Duration::from_secs(age_secs),
        };
        let grace = Duration::from_secs(600);
        // (blob, referenced, expected swept)
        let table = [
            (file('a', 3600), true, false), // referenced: kept however old
            (file('b', 3600), false, true), // old and unreferenced: swept
            (file('c', 60), false, false),  // written recently: may be mid-push
            (file('d', 600), false, true),  // exactly the grace period old
            (
                BlobFile { digest: d('e'), size: 1, modified: now + Duration::from_secs(5) },
                false,
                false,
            ), // clock skew: the future is recent
        ];
        let on_disk: Vec<BlobFile> = table.iter().map(|(f, _, _)| f.clone()).collect();
        let referenced: HashSet<Digest> =
            table.iter().filter(|(_, r, _)| *r).map(|(f, _, _)| f.digest.clone()).collect();
        let swept = sweepable(&on_disk, &referenced, now, grace);
        for (f, _, want) in &table {
            assert_eq!(swept.contains(&f.digest), *want, "{}", f.digest);
        }
        assert!(sweepable(&on_disk, &referenced, now, Duration::ZERO).contains(&d('c')));
    }

    #[test]
    fn set_aside_blobs_are_recovered_only_once_stale() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100_000);
        // (set aside this long ago, stale)
        let table = [(0, false), (599, false), (600, true), (86_400, true)];
        for (ago, want) in table {
            assert_eq!(stale_aside(now - Duration::from_secs(ago), now), want, "{ago}");
        }
        assert!(!stale_aside(now + Duration::from_secs(5), now), "the future is recent");
        let p = aside_path(Path::new("/r/blobs/sha256/ab/abcd"));
        assert_eq!(p, Path::new("/r/blobs/sha256/ab/abcd.gc"));
    }

    #[tokio::test]
    async fn a_set_aside_blob_goes_back_or_away() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, fresh) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("f"));
        for p in [&a, &b, &fresh] {
            std::fs::write(p, "x").unwrap();
        }
        let later = SystemTime::now() + Duration::from_secs(7200);
        let grace = Duration::from_secs(3600);
        assert!(set_aside(&a, later, grace).await.unwrap());
        assert!(set_aside(&b, later, grace).await.unwrap());
        assert!(!set_aside(&fresh, SystemTime::now(), grace).await.unwrap(), "written recently");
        assert!(!set_aside(&dir.path().join("gone"), later, grace).await.unwrap());
        assert!(!a.exists() && aside_path(&a).exists());
        settle(&a, true).await.unwrap();
        settle(&b, false).await.unwrap();
        settle(&b, false).await.unwrap(); // settled twice (two collections): no error
        assert!(a.exists() && !aside_path(&a).exists(), "back in place");
        assert!(!b.exists() && !aside_path(&b).exists(), "deleted");
        assert!(fresh.exists());
    }

    #[tokio::test]
    async fn stale_set_aside_blobs_are_settled_by_a_later_collection() {
        let dir = tempfile::tempdir().unwrap();
        let hex = |c: char| c.to_string().repeat(64);
        let sub = dir.path().join("aa");
        std::fs::create_dir_all(&sub).unwrap();
        for c in ['a', 'b'] {
            std::fs::write(sub.join(format!("{}.gc", hex(c))), "x").unwrap();
        }
        let kept = Digest::parse(&format!("sha256:{}", hex('a'))).unwrap();
        let referenced: HashSet<Digest> = [kept].into_iter().collect();
        // Just set aside: another collection may be settling them; left alone.
        assert_eq!(recover_aside(dir.path(), &referenced, SystemTime::now()).await.unwrap(), 0);
        assert!(sub.join(format!("{}.gc", hex('b'))).exists());
        let later = SystemTime::now() + ASIDE_STALE;
        assert_eq!(recover_aside(dir.path(), &referenced, later).await.unwrap(), 1);
        assert!(sub.join(hex('a')).exists(), "referenced: back");
        assert!(!sub.join(format!("{}.gc", hex('b'))).exists(), "unreferenced: deleted");
    }

    #[test]
    fn uploads_are_abandoned_after_a_day_untouched() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s: u64| now - Duration::from_secs(s);
        // (last write, expected abandoned)
        let table = [
            (ago(0), false),
            (ago(23 * 3600), false),
            (ago(24 * 3600), true),
            (ago(30 * 86400), true),
            (now + Duration::from_secs(60), false), // written "in the future": recent
        ];
        for (modified, want) in table {
            assert_eq!(abandoned(modified, now, UPLOAD_EXPIRY), want, "{modified:?}");
        }
    }
}
