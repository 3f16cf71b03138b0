//! The store on a full disk (issue #10, R9): a write that does not fit fails with
//! `StoreError::DiskFull` naming the filesystem, applies and publishes nothing, takes no
//! revision; the writer survives; reads keep working; writes succeed again as soon as space is
//! freed; after a reopen every acknowledged write is there and no refused one is.
//!
//! Needs root (it mounts a small tmpfs); skipped with a message otherwise. The mount is always
//! undone by a guard, also when a test fails.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use berth_store::{SqliteStore, Store, StoreError, Txn, TxnOutcome};

/// A tmpfs mounted on a fresh directory; unmounted (and the directory removed) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` (after saying why) when this process cannot mount.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::Builder::new()
            .prefix("berth-store-disk-full-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir: dir.canonicalize().unwrap() }),
            other => {
                let _ = std::fs::remove_dir(&dir);
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs on {} ({other:?}); this test needs root",
                    dir.display()
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so that a file still open after a failed assertion cannot keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Fills the filesystem holding `dir` with `dir/filler`, then gives `leave` bytes back.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
        let buf = vec![0xa5u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    path
}

fn value(key: usize, size: usize) -> Vec<u8> {
    let mut v = format!("{key}:").into_bytes();
    v.resize(size, b'v');
    v
}

fn assert_disk_full(e: &StoreError, db: &Path, fs: &Path) {
    match e {
        StoreError::DiskFull { path, filesystem, .. } => {
            assert_eq!(path, db);
            assert_eq!(filesystem, fs, "the mount point to free space on");
            let msg = e.to_string();
            assert!(msg.contains("no space left"), "{msg}");
            assert!(msg.contains(&fs.display().to_string()), "{msg}");
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }
}

/// One run: `pre` acknowledged writes, the disk filled but for `leave` bytes, then writers
/// `concurrency` at a time (so refused batches hold several txns) until 40 are refused.
async fn full_disk_run(pre: usize, leave: u64, size: usize, concurrency: usize) {
    let Some(fs) = Tmpfs::mount("12m") else { return };
    let db = fs.dir.join("berth.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let mut changes = store.changes();
    let watch = store.watch();
    // key -> revision of every acknowledged write.
    let mut acked: BTreeMap<usize, u64> = BTreeMap::new();
    let mut refused: Vec<usize> = Vec::new();
    for k in 0..pre {
        let out = store.txn(Txn::new().put(format!("k/{k:06}"), value(k, size))).await.unwrap();
        let TxnOutcome::Committed { revision } = out else { panic!("{out:?}") };
        acked.insert(k, revision);
    }
    let filler = fill(&fs.dir, leave);

    let mut next = pre;
    while refused.len() < 40 {
        assert!(next < pre + 5000, "writes kept succeeding on a full filesystem");
        let mut writers = Vec::new();
        for _ in 0..concurrency {
            let (store, k) = (store.clone(), next);
            next += 1;
            writers.push(tokio::spawn(async move {
                // Two keys: a refused txn must leave neither.
                let txn = Txn::new()
                    .put(format!("k/{k:06}"), value(k, size))
                    .put(format!("m/{k:06}"), value(k, 64));
                (k, store.txn(txn).await)
            }));
        }
        for w in writers {
            match w.await.unwrap() {
                (k, Ok(TxnOutcome::Committed { revision })) => {
                    acked.insert(k, revision);
                }
                (k, Ok(other)) => panic!("k{k}: {other:?}"),
                (k, Err(e)) => {
                    assert_disk_full(&e, &db, &fs.dir);
                    refused.push(k);
                }
            }
        }
    }

    // Refused txns took no revision and were not published.
    let newest = acked.values().copied().max().unwrap_or(0);
    let mut revisions: Vec<u64> = acked.values().copied().collect();
    revisions.sort();
    assert_eq!(revisions, (1..=newest).collect::<Vec<_>>(), "revisions without gaps");
    assert_eq!(store.revision().await.unwrap(), newest);
    assert_eq!(*watch.borrow(), newest);
    assert_eq!(store.stats().committed, acked.len() as u64);
    let mut published = Vec::new();
    while let Ok(change) = changes.try_recv() {
        published.push(change.revision);
    }
    assert_eq!(published, revisions, "exactly the committed txns were published");

    // Reads keep working.
    if let Some((&k, &rev)) = acked.iter().next_back() {
        let r = store.get(&format!("k/{k:06}")).await.unwrap().expect("acknowledged key");
        assert_eq!(r.mod_revision, rev);
    }
    assert_eq!(
        store.count("k/", "k0").await.unwrap() as usize,
        acked.len(),
        "no refused write is visible"
    );

    // Space returns: the very next write commits, at the next revision.
    std::fs::remove_file(&filler).unwrap();
    let k = next;
    let out = store.txn(Txn::new().put(format!("k/{k:06}"), value(k, size))).await.unwrap();
    assert_eq!(out, TxnOutcome::Committed { revision: newest + 1 });
    acked.insert(k, newest + 1);

    // Reopen: every acknowledged write, with its revision and value; no refused one.
    drop(changes);
    drop(Arc::try_unwrap(store).expect("the only handle"));
    let store = SqliteStore::open(&db).unwrap();
    for (k, rev) in &acked {
        let r = store.get(&format!("k/{k:06}")).await.unwrap();
        let r = r.unwrap_or_else(|| panic!("acknowledged k{k} lost"));
        assert_eq!(r.mod_revision, *rev);
        assert_eq!(&r.value[..], &value(*k, size)[..]);
    }
    for k in &refused {
        assert_eq!(store.get(&format!("k/{k:06}")).await.unwrap(), None, "refused k{k} appeared");
        assert_eq!(store.get(&format!("m/{k:06}")).await.unwrap(), None, "refused m{k} appeared");
    }
    assert_eq!(store.count("k/", "k0").await.unwrap() as usize, acked.len());
    assert_eq!(store.revision().await.unwrap(), newest + 1);
    eprintln!(
        "pre {pre}, leave {leave}, size {size}, concurrency {concurrency}: {} acknowledged ({} while full), {} refused",
        acked.len(),
        acked.len() - pre - 1,
        refused.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_survives_a_full_disk_and_writes_again_once_space_returns() {
    // Full from the first write on.
    full_disk_run(0, 0, 10_000, 1).await;
    // Some room left: a few commits fit, then batches of several txns fail at COMMIT.
    full_disk_run(10, 200_000, 3_000, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_after_the_wal_has_wrapped() {
    // About 3 MB before the fill: the WAL has been checkpointed and restarted, so commits
    // that fit in its allocated space succeed while the disk is full, and checkpoints that
    // would grow the database file fail (quietly) until space returns.
    full_disk_run(300, 0, 10_000, 4).await;
}

#[tokio::test]
async fn opening_a_store_on_a_full_disk_fails_with_disk_full() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let db = fs.dir.join("berth.db");
    {
        let store = SqliteStore::open(&db).unwrap();
        store.txn(Txn::new().put("kept", "yes")).await.unwrap();
    }
    let filler = fill(&fs.dir, 0);

    // An existing database: its WAL and shared-memory files cannot be created.
    let err = SqliteStore::open(&db).expect_err("no open on a full disk");
    assert_disk_full(&err, &db, &fs.dir);
    // A new one.
    let fresh = fs.dir.join("fresh.db");
    let err = SqliteStore::open(&fresh).expect_err("no open on a full disk");
    assert_disk_full(&err, &fresh, &fs.dir);

    std::fs::remove_file(&filler).unwrap();
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(&store.get("kept").await.unwrap().unwrap().value[..], b"yes");
    store.txn(Txn::new().put("more", "yes")).await.unwrap();
}
