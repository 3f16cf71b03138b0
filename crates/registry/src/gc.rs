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

use std::collections::HashSet;
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
