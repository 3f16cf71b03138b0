//! Content-addressed blob storage on disk, and upload sessions.
//!
//! Layout under the registry's directory:
//! * `blobs/sha256/<first 2 hex>/<64 hex>`: a blob, whose content hashes to its name;
//! * `uploads/<uuid>/data`: the bytes of an upload session so far; `uploads/<uuid>/repo`:
//!   the repository it was started for.
//!
//! Invariants:
//! * a file under `blobs/` is only ever created by renaming a finished upload whose sha256
//!   was checked against the digest the client named, after the data was fsynced; the
//!   directory is fsynced after the rename, before the upload is acknowledged. A crash
//!   leaves either no blob or a whole one.
//! * data is streamed: a request body is written chunk by chunk as it arrives (and hashed
//!   as it goes), never held whole in memory;
//! * a session's offset is the length of its data file; a session survives a restart (its
//!   running hash does not, and is recomputed from the file at the finish);
//! * finishing an upload of a blob that already exists keeps the existing file and refreshes
//!   its modification time, which garbage collection reads as "recently written" ([`crate::gc`]).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::digest::Digest;

/// Errors of blob storage.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("upload {0} is unknown (finished, cancelled, or never started)")]
    UploadUnknown(String),
    #[error("the uploaded content has digest {actual}, not the {expected} the client named")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("blob storage I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_path_buf(), source }
}

/// A session's state kept in memory between requests (rebuilt from disk after a restart).
#[derive(Default)]
struct Session {
    /// The hash of the data file's bytes so far; `None` when it must be recomputed.
    hasher: Option<Sha256>,
    offset: u64,
    loaded: bool,
}

/// A blob on disk, as garbage collection sees it.
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
}

/// The blob store of one registry.
pub struct BlobStore {
    root: PathBuf,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

impl BlobStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        for dir in [root.join("blobs").join("sha256"), root.join("uploads")] {
            std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        Ok(Self { root: root.to_path_buf(), sessions: Mutex::new(HashMap::new()) })
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join("sha256").join(&hex[..2]).join(hex)
    }

    /// The size of blob `digest`, `None` when absent.
    pub async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        let path = self.path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Opens blob `digest` for reading, `None` when absent.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<tokio::fs::File>, BlobError> {
        let path = self.path(digest);
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Removes blob `digest`; true when it existed.
    pub async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let path = self.path(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Every blob on disk.
    pub async fn list(&self) -> Result<Vec<BlobFile>, BlobError> {
        let root = self.root.join("blobs").join("sha256");
        tokio::task::spawn_blocking(move || {
            let mut out = vec![];
            for prefix in std::fs::read_dir(&root).map_err(io_at(&root))? {
                let prefix = prefix.map_err(io_at(&root))?.path();
                if !prefix.is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(&prefix).map_err(io_at(&prefix))? {
                    let f = f.map_err(io_at(&prefix))?;
                    let name = f.file_name().to_string_lossy().into_owned();
                    let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else { continue };
                    let meta = f.metadata().map_err(io_at(&f.path()))?;
                    out.push(BlobFile {
                        digest,
                        size: meta.len(),
                        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| BlobError::Io { path: self.root.clone(), source: io::Error::other(e) })?
    }

    /// Total bytes of the blobs on disk.
    pub async fn total_size(&self) -> Result<u64, BlobError> {
        Ok(self.list().await?.iter().map(|b| b.size).sum())
    }

    fn session_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// Starts an upload session for `repo`; its id.
    pub async fn start_upload(&self, repo: &str) -> Result<String, BlobError> {
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.session_dir(&id);
        tokio::fs::create_dir(&dir).await.map_err(io_at(&dir))?;
        let data = dir.join("data");
        tokio::fs::File::create(&data).await.map_err(io_at(&data))?;
        let repo_file = dir.join("repo");
        tokio::fs::write(&repo_file, repo).await.map_err(io_at(&repo_file))?;
        let session = Session { hasher: Some(Sha256::new()), offset: 0, loaded: true };
        self.sessions_lock().insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
        Ok(id)
    }

    fn sessions_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Session>>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session `id` of `repo` (a session of another repository is unknown here).
    async fn session(
        &self,
        id: &str,
        repo: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Session>>, BlobError> {
        // Ids are uuids: anything else cannot name a session (nor a path).
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(BlobError::UploadUnknown(id.to_string()));
        }
        let dir = self.session_dir(id);
        match tokio::fs::read_to_string(dir.join("repo")).await {
            Ok(r) if r == repo => {}
            Ok(_) => return Err(BlobError::UploadUnknown(id.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::UploadUnknown(id.to_string()));
            }
            Err(e) => return Err(io_at(&dir)(e)),
        }
        let s = self.sessions_lock().entry(id.to_string()).or_default().clone();
        Ok(s)
    }

    /// Loads a session's offset from disk after a restart.
    async fn load(&self, id: &str, s: &mut Session) -> Result<(), BlobError> {
        if !s.loaded {
            let data = self.session_dir(id).join("data");
            let meta = tokio::fs::metadata(&data).await.map_err(io_at(&data))?;
            s.offset = meta.len();
            s.hasher = None;
            s.loaded = true;
        }
        Ok(())
    }

    /// The bytes upload `id` holds so far.
    pub async fn upload_offset(&self, id: &str, repo: &str) -> Result<u64, BlobError> {
        let s = self.session(id, repo).await?;
        let mut s = s.lock().await;
        self.load(id, &mut s).await?;
        Ok(s.offset)
    }

    /// Appends `body` to upload `id` once `check(offset)` accepts the current offset; the new
    /// offset. The data is fsynced before this returns.
    pub async fn append<S, E, C, CE>(
        &self,
        id: &str,
        repo: &str,
        check: C,
        body: S,
    ) -> Result<Result<u64, CE>, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
        C: FnOnce(u64) -> Result<(), CE>,
    {
        let s = self.session(id, repo).await?;
        let mut s = s.lock().await;
        self.load(id, &mut s).await?;
        if let Err(e) = check(s.offset) {
            return Ok(Err(e));
        }
        let path = self.session_dir(id).join("data");
        let mut file =
            tokio::fs::OpenOptions::new().append(true).open(&path).await.map_err(io_at(&path))?;
        let written = write_stream(&mut file, &path, body, s.hasher.as_mut()).await;
        // Whatever reached the file counts, even when the body broke off: the offset is the
        // file's length, which the client can ask for and resume from.
        file.sync_data().await.map_err(io_at(&path))?;
        let len = file.metadata().await.map_err(io_at(&path))?.len();
        if len != s.offset + written.as_ref().map_or(0, |n| *n) {
            // A partial write: the running hash no longer matches the file.
            s.hasher = None;
        }
        s.offset = len;
        written?;
        Ok(Ok(len))
    }

    /// Finishes upload `id`: appends `body`, checks the whole content hashes to `digest`,
    /// moves it into place (fsynced) and ends the session. The blob's size.
    /// On a digest mismatch the session is ended too (its content can never become valid).
    pub async fn finish<S, E>(
        &self,
        id: &str,
        repo: &str,
        digest: &Digest,
        body: S,
    ) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let _always_accepted: Result<u64, ()> = self.append(id, repo, |_| Ok(()), body).await?;
        let s = self.session(id, repo).await?;
        let mut s = s.lock().await;
        let dir = self.session_dir(id);
        let data = dir.join("data");
        let actual = match s.hasher.take() {
            Some(h) => Digest::from_hasher(h),
            None => hash_file(&data).await?,
        };
        let size = s.offset;
        if &actual != digest {
            drop(s);
            self.cancel(id, repo).await?;
            return Err(BlobError::DigestMismatch { expected: digest.clone(), actual });
        }
        let target = self.path(digest);
        let parent = target.parent().expect("blob paths have a parent").to_path_buf();
        tokio::fs::create_dir_all(&parent).await.map_err(io_at(&parent))?;
        if tokio::fs::metadata(&target).await.is_ok() {
            // Already stored: keep it, and mark it as just written for the collector.
            let f = std::fs::File::options().append(true).open(&target).map_err(io_at(&target))?;
            f.set_modified(SystemTime::now()).map_err(io_at(&target))?;
        } else {
            tokio::fs::rename(&data, &target).await.map_err(io_at(&target))?;
            sync_dir(&parent).await?;
        }
        drop(s);
        self.sessions_lock().remove(id);
        tokio::fs::remove_dir_all(&dir).await.map_err(io_at(&dir))?;
        Ok(size)
    }

    /// Discards every upload session whose data has not been written for `expiry` at `now`
    /// ([`crate::gc::abandoned`], re-checked under the session's lock so an append in
    /// progress is never cut); how many, and the bytes they held.
    pub async fn purge_abandoned(
        &self,
        expiry: std::time::Duration,
        now: SystemTime,
    ) -> Result<(usize, u64), BlobError> {
        let uploads = self.root.join("uploads");
        let mut entries = tokio::fs::read_dir(&uploads).await.map_err(io_at(&uploads))?;
        let mut purged = (0, 0);
        while let Some(entry) = entries.next_entry().await.map_err(io_at(&uploads))? {
            let id = entry.file_name().to_string_lossy().into_owned();
            let stale = |m: &std::fs::Metadata| {
                m.modified().is_ok_and(|t| crate::gc::abandoned(t, now, expiry))
            };
            let data = entry.path().join("data");
            // A session directory without data is a start interrupted by a crash.
            let first = tokio::fs::metadata(&data).await.ok();
            if first.as_ref().is_some_and(|m| !stale(m)) {
                continue;
            }
            let s = self.sessions_lock().entry(id.clone()).or_default().clone();
            let held = s.lock().await;
            match tokio::fs::metadata(&data).await {
                Ok(m) if !stale(&m) => continue,
                Ok(m) => purged.1 += m.len(),
                Err(_) => {}
            }
            let dir = entry.path();
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => purged.0 += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&dir)(e)),
            }
            drop(held);
            self.sessions_lock().remove(&id);
        }
        Ok(purged)
    }

    /// Ends upload `id` and discards its data.
    pub async fn cancel(&self, id: &str, repo: &str) -> Result<(), BlobError> {
        let s = self.session(id, repo).await?;
        let _held = s.lock().await;
        self.sessions_lock().remove(id);
        let dir = self.session_dir(id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&dir)(e)),
        }
    }

    /// Stores `body` as blob `digest` in one go (a monolithic upload); its size.
    pub async fn put<S, E>(&self, repo: &str, digest: &Digest, body: S) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = self.start_upload(repo).await?;
        let out = self.finish(&id, repo, digest, body).await;
        if out.is_err() {
            let _ = self.cancel(&id, repo).await;
        }
        out
    }
}

/// Writes `body` to `file`, hashing as it goes; the bytes written.
async fn write_stream<S, E>(
    file: &mut tokio::fs::File,
    path: &Path,
    mut body: S,
    mut hasher: Option<&mut Sha256>,
) -> Result<u64, BlobError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
        file.write_all(&chunk).await.map_err(io_at(path))?;
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&chunk);
        }
        n += chunk.len() as u64;
    }
    file.flush().await.map_err(io_at(path))?;
    Ok(n)
}

/// The sha256 of a file, read in pieces.
async fn hash_file(path: &Path) -> Result<Digest, BlobError> {
    let mut f = tokio::fs::File::open(path).await.map_err(io_at(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).await.map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest::from_hasher(h))
}

async fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    let d = tokio::fs::File::open(dir).await.map_err(io_at(dir))?;
    d.sync_all().await.map_err(io_at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures_util::stream::iter(
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn a_monolithic_put_stores_verified_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = Digest::of(b"hello world");
        assert_eq!(store.put("app", &d, body(&[b"hello ", b"world"])).await.unwrap(), 11);
        assert_eq!(store.stat(&d).await.unwrap(), Some(11));
        assert_eq!(std::fs::read(store.path(&d)).unwrap(), b"hello world");
        // No session is left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].digest, d);
    }

    #[tokio::test]
    async fn a_wrong_digest_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let claimed = Digest::of(b"something else");
        let e = store.put("app", &claimed, body(&[b"hello"])).await.unwrap_err();
        assert!(matches!(e, BlobError::DigestMismatch { .. }), "{e}");
        assert_eq!(store.stat(&claimed).await.unwrap(), None);
        assert!(store.list().await.unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn chunked_uploads_resume_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = BlobStore::open(dir.path()).unwrap();
            let id = store.start_upload("app").await.unwrap();
            let n = store.append(&id, "app", |_| Ok::<_, ()>(()), body(&[b"abc"])).await.unwrap();
            assert_eq!(n, Ok(3));
            // Another repository cannot see the session.
            assert!(matches!(
                store.upload_offset(&id, "other").await,
                Err(BlobError::UploadUnknown(_))
            ));
            id
        };
        // A new store (a restarted server) finds the session on disk.
        let store = BlobStore::open(dir.path()).unwrap();
        assert_eq!(store.upload_offset(&id, "app").await.unwrap(), 3);
        let refused = store
            .append(&id, "app", |off| if off == 0 { Ok(()) } else { Err(off) }, body(&[b"x"]))
            .await
            .unwrap();
        assert_eq!(refused, Err(3), "the check saw the stored offset");
        let d = Digest::of(b"abcdef");
        assert_eq!(store.finish(&id, "app", &d, body(&[b"def"])).await.unwrap(), 6);
        assert_eq!(std::fs::read(store.path(&d)).unwrap(), b"abcdef");
        assert!(matches!(store.upload_offset(&id, "app").await, Err(BlobError::UploadUnknown(_))));
    }

    #[tokio::test]
    async fn cancel_discards_and_bad_ids_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = store.start_upload("app").await.unwrap();
        store.cancel(&id, "app").await.unwrap();
        assert!(matches!(store.upload_offset(&id, "app").await, Err(BlobError::UploadUnknown(_))));
        assert!(matches!(
            store.upload_offset("../../etc", "app").await,
            Err(BlobError::UploadUnknown(_))
        ));
    }

    #[tokio::test]
    async fn only_abandoned_uploads_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let old = store.start_upload("r").await.unwrap();
        store
            .append(&old, "r", |_| Ok::<_, ()>(()), body(&[b"0123456789"]))
            .await
            .unwrap()
            .unwrap();
        let fresh = store.start_upload("r").await.unwrap();
        let later = SystemTime::now() + crate::gc::UPLOAD_EXPIRY;
        // A day later the first session is abandoned; writing to the second one keeps it.
        let (n, bytes) =
            store.purge_abandoned(crate::gc::UPLOAD_EXPIRY, SystemTime::now()).await.unwrap();
        assert_eq!((n, bytes), (0, 0), "nothing is a day old yet");
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("uploads").join(&fresh).join("data"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        let (n, bytes) = store.purge_abandoned(crate::gc::UPLOAD_EXPIRY, later).await.unwrap();
        assert_eq!((n, bytes), (1, 10));
        assert!(matches!(store.upload_offset(&old, "r").await, Err(BlobError::UploadUnknown(_))));
        assert_eq!(store.upload_offset(&fresh, "r").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn storing_an_existing_blob_refreshes_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        store.put("app", &d, body(&[b"x"])).await.unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .append(true)
            .open(store.path(&d))
            .unwrap()
            .set_modified(old)
            .unwrap();
        store.put("app", &d, body(&[b"x"])).await.unwrap();
        let m = std::fs::metadata(store.path(&d)).unwrap().modified().unwrap();
        assert!(m > old);
    }
}
