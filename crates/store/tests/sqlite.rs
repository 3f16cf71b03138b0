//! Behaviour of `SqliteStore` against the `Store` contract: revisions, compare-and-set, group
//! commit under concurrency, range reads, durability across `kill -9`, schema versioning.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use berth_store::{Op, Range, Record, SqliteStore, Store, StoreError, Txn, TxnOutcome, prefix_end};
use bytes::Bytes;

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    (dir, path)
}

fn committed(outcome: TxnOutcome) -> u64 {
    match outcome {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("expected a commit, got {other:?}"),
    }
}

async fn put(store: &SqliteStore, key: &str, value: &str) -> u64 {
    committed(store.txn(Txn::new().put(key, value.to_string())).await.unwrap())
}

fn keys(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.key.as_str()).collect()
}

#[tokio::test]
async fn put_get_delete_round_trip_and_revisions() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.revision().await.unwrap(), 0);
    assert_eq!(store.get("a").await.unwrap(), None);

    assert_eq!(put(&store, "a", "one").await, 1);
    let record = store.get("a").await.unwrap().unwrap();
    assert_eq!(
        record,
        Record {
            key: "a".into(),
            value: Bytes::from_static(b"one"),
            create_revision: 1,
            mod_revision: 1
        }
    );

    assert_eq!(put(&store, "b", "x").await, 2);
    assert_eq!(put(&store, "a", "two").await, 3);
    let record = store.get("a").await.unwrap().unwrap();
    assert_eq!(record.value, Bytes::from_static(b"two"));
    assert_eq!(record.create_revision, 1, "create_revision stays");
    assert_eq!(record.mod_revision, 3, "mod_revision advances");
    assert_eq!(store.revision().await.unwrap(), 3);

    // A conflict does not consume a revision.
    let outcome = store.txn(Txn::new().when("a", 1).put("a", "stale")).await.unwrap();
    assert!(!outcome.committed());
    assert_eq!(store.revision().await.unwrap(), 3);

    // Empty values are values, not absence.
    assert_eq!(put(&store, "empty", "").await, 4);
    assert_eq!(store.get("empty").await.unwrap().unwrap().value, Bytes::new());

    // Several ops in one txn share its revision.
    let revision =
        committed(store.txn(Txn::new().put("c", "1").put("d", "2").delete("b")).await.unwrap());
    assert_eq!(revision, 5);
    assert_eq!(store.get("c").await.unwrap().unwrap().mod_revision, 5);
    assert_eq!(store.get("d").await.unwrap().unwrap().mod_revision, 5);
    assert_eq!(store.get("b").await.unwrap(), None);

    // Delete; deleting an absent key is not an error (and is still a committed txn).
    assert_eq!(committed(store.txn(Txn::new().delete("a")).await.unwrap()), 6);
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(committed(store.txn(Txn::new().delete("a")).await.unwrap()), 7);

    // Re-creating a deleted key starts a new life.
    assert_eq!(put(&store, "a", "three").await, 8);
    let record = store.get("a").await.unwrap().unwrap();
    assert_eq!((record.create_revision, record.mod_revision), (8, 8));

    // Delete the newest key, then reopen: the revision survives and is never reused.
    assert_eq!(committed(store.txn(Txn::new().delete("a")).await.unwrap()), 9);
    let stats = store.stats();
    assert_eq!((stats.txns, stats.committed, stats.conflicts), (10, 9, 1));
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.revision().await.unwrap(), 9);
    assert_eq!(put(&store, "z", "after reopen").await, 10);
    assert_eq!(store.get("c").await.unwrap().unwrap().mod_revision, 5);
}

/// The writer thread owns the write connection and closes it when it exits; the last close
/// checkpoints and removes the WAL. So no WAL after drop = the writer stopped and closed.
#[tokio::test]
async fn dropping_the_store_stops_the_writer() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    put(&store, "k", "v").await;
    assert!(store.get("k").await.unwrap().is_some());
    let wal = path.with_extension("db-wal");
    assert!(wal.exists());
    drop(store);
    assert!(!wal.exists(), "the writer closed the database on drop");
    // And the data is in the main file.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(&store.get("k").await.unwrap().unwrap().value[..], b"v");
}

#[tokio::test]
async fn compare_and_set() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();

    // Create-if-absent succeeds once, then conflicts.
    let create = || Txn::new().when("k", 0).put("k", "v1");
    assert_eq!(committed(store.txn(create()).await.unwrap()), 1);
    assert_eq!(
        store.txn(create()).await.unwrap(),
        TxnOutcome::Conflict { key: "k".into(), expected: 0, actual: 1 }
    );

    // Update at the current version succeeds.
    assert_eq!(committed(store.txn(Txn::new().when("k", 1).put("k", "v2")).await.unwrap()), 2);

    // A stale version conflicts and writes nothing at all, not even its other ops.
    put(&store, "victim", "keep").await; // revision 3
    let outcome = store
        .txn(Txn::new().when("k", 1).put("k", "v3").put("other", "x").delete("victim"))
        .await
        .unwrap();
    assert_eq!(outcome, TxnOutcome::Conflict { key: "k".into(), expected: 1, actual: 2 });
    assert_eq!(store.get("k").await.unwrap().unwrap().value, Bytes::from_static(b"v2"));
    assert_eq!(store.get("other").await.unwrap(), None);
    assert_eq!(store.get("victim").await.unwrap().unwrap().value, Bytes::from_static(b"keep"));
    assert_eq!(store.revision().await.unwrap(), 3);

    // The first failing compare is the one reported.
    let outcome = store
        .txn(Txn::new().when("k", 2).when("missing", 7).when("victim", 0).put("k", "v3"))
        .await
        .unwrap();
    assert_eq!(outcome, TxnOutcome::Conflict { key: "missing".into(), expected: 7, actual: 0 });

    // All compares holding: applied.
    let revision = committed(
        store
            .txn(Txn::new().when("k", 2).when("victim", 3).when("new", 0).put("new", "n"))
            .await
            .unwrap(),
    );
    assert_eq!(revision, 4);

    // After a delete the key is absent again: expecting 0 holds.
    store.txn(Txn::new().when("new", 4).delete("new")).await.unwrap();
    assert!(store.txn(Txn::new().when("new", 0).put("new", "again")).await.unwrap().committed());
}

/// 50 tasks × 20 read-modify-write increments of one counter with CAS retry loops. Group commit
/// batches txns that race on the same key; a lost update would leave the counter short.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_cas_increments_lose_nothing() {
    let (_dir, path) = temp_db();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                loop {
                    let (value, version) = match store.get("counter").await.unwrap() {
                        Some(r) => (
                            std::str::from_utf8(&r.value).unwrap().parse::<u64>().unwrap(),
                            r.mod_revision,
                        ),
                        None => (0, 0),
                    };
                    let txn =
                        Txn::new().when("counter", version).put("counter", (value + 1).to_string());
                    if store.txn(txn).await.unwrap().committed() {
                        break;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let record = store.get("counter").await.unwrap().unwrap();
    assert_eq!(&record.value[..], b"1000");
    assert_eq!(record.mod_revision, 1000);
    assert_eq!(
        store.revision().await.unwrap(),
        1000,
        "one revision per committed txn, none per conflict"
    );
    let stats = store.stats();
    assert_eq!(stats.committed, 1000);
    assert_eq!(stats.txns, stats.committed + stats.conflicts);
    // Racing CAS writers of one key: at most one of them commits per batch, the rest of the
    // batch conflicts, so batching shows as fewer fsync batches than txns decided.
    assert!(stats.batches <= stats.committed, "{stats:?}");
    assert!(stats.batches < stats.txns, "group commit must batch under concurrent load: {stats:?}");
}

/// 64 concurrent writers of distinct keys: every txn commits with a distinct revision, and far
/// fewer fsync batches than txns are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn group_commit_batches_concurrent_writers() {
    let (_dir, path) = temp_db();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let mut tasks = Vec::new();
    for writer in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..25 {
                let key = format!("w/{writer:02}/{i:02}");
                revisions.push(committed(
                    store.txn(Txn::new().when(&key, 0).put(&key, "v")).await.unwrap(),
                ));
            }
            revisions
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "a writer's own txns are ordered");
        revisions.extend(mine);
    }
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=1600).collect::<Vec<u64>>(), "revisions are dense and unique");
    assert_eq!(store.count("w/", &prefix_end("w/")).await.unwrap(), 1600);
    let stats = store.stats();
    println!("{stats:?}");
    assert_eq!((stats.txns, stats.committed, stats.conflicts), (1600, 1600, 0));
    assert!(stats.batches < stats.txns, "{stats:?}");
}

/// Readers see whole transactions: `a` and `b` are always written together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_see_whole_transactions() {
    let (_dir, path) = temp_db();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    store.txn(Txn::new().put("pair/a", "0").put("pair/b", "0")).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 1..=300 {
                let v = i.to_string();
                store.txn(Txn::new().put("pair/a", v.clone()).put("pair/b", v)).await.unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let both = store.get_many(&["pair/a".to_string(), "pair/b".to_string()]).await.unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].value, both[1].value);
        assert_eq!(both[0].mod_revision, both[1].mod_revision);
        let listed = store.range(Range::prefix("pair/")).await.unwrap();
        assert_eq!(listed[0].value, listed[1].value);
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(&store.get("pair/b").await.unwrap().unwrap().value[..], b"300");
}

#[tokio::test]
async fn range_count_and_prefix_end() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let all = [
        "a",
        "a/b",
        "a/b/",
        "a/b/c",
        "a/b/é",
        "a/b/日本",
        "a/b/\u{10FFFE}",
        "a/b0",
        "a/bc",
        "a/b:x",
        "a/b\u{7f}",
        "a/bé",
        "a/c",
        "ecs/taskdefs/web/0000000001",
        "ecs/taskdefs/web/0000000002",
        "ecs/taskdefs/web/0000000010",
        "ecs/taskdefs/web:x/0000000001",
        "ecs/taskdefs/webapp/0000000001",
        "ecs/taskdefs/wéb/0000000001",
    ];
    // Insert out of order; listing order must be bytewise.
    for key in all.iter().rev() {
        put(&store, key, key).await;
    }
    let mut sorted: Vec<&str> = all.to_vec();
    sorted.sort_unstable(); // Rust's str order is bytewise UTF-8, the contract's order.

    let everything = store.range(Range::prefix("")).await.unwrap();
    assert_eq!(keys(&everything), sorted);
    assert!(everything.iter().all(|r| r.value == r.key.as_bytes()));

    // `a/b/` is a prefix of `a/b/c` but not of `a/b` or `a/bc`.
    let listed = store.range(Range::prefix("a/b/")).await.unwrap();
    assert_eq!(keys(&listed), ["a/b/", "a/b/c", "a/b/é", "a/b/日本", "a/b/\u{10FFFE}"]);
    // `a/b` is a prefix of all of these, in byte order.
    let listed = store.range(Range::prefix("a/b")).await.unwrap();
    let expected: Vec<&str> = sorted.iter().copied().filter(|k| k.starts_with("a/b")).collect();
    assert_eq!(keys(&listed), expected);
    assert_eq!(listed.len(), 11);
    assert_eq!(store.count("a/b", &prefix_end("a/b")).await.unwrap(), 11);
    assert_eq!(store.count("a/b/", &prefix_end("a/b/")).await.unwrap(), 5);

    // Separators: `web/` must not match `web:x/`, `webapp/` or `wéb/`.
    let family = "ecs/taskdefs/web/";
    let listed = store.range(Range::prefix(family)).await.unwrap();
    assert_eq!(
        keys(&listed),
        [
            "ecs/taskdefs/web/0000000001",
            "ecs/taskdefs/web/0000000002",
            "ecs/taskdefs/web/0000000010"
        ]
    );
    let listed = store.range(Range::prefix("ecs/taskdefs/wéb/")).await.unwrap();
    assert_eq!(keys(&listed), ["ecs/taskdefs/wéb/0000000001"]);

    // Reverse and limit: the latest revision of a family.
    let latest = store.range(Range::prefix(family).reversed().limit(1)).await.unwrap();
    assert_eq!(keys(&latest), ["ecs/taskdefs/web/0000000010"]);
    let newest_two = store.range(Range::prefix(family).reversed().limit(2)).await.unwrap();
    assert_eq!(keys(&newest_two), ["ecs/taskdefs/web/0000000010", "ecs/taskdefs/web/0000000002"]);
    let oldest_two = store.range(Range::prefix(family).limit(2)).await.unwrap();
    assert_eq!(keys(&oldest_two), ["ecs/taskdefs/web/0000000001", "ecs/taskdefs/web/0000000002"]);
    assert!(store.range(Range::prefix(family).limit(0)).await.unwrap().is_empty());

    // Explicit bounds: start inclusive, end exclusive (pagination from a key).
    let page = store
        .range(Range {
            start: "ecs/taskdefs/web/0000000002".into(),
            end: prefix_end(family),
            limit: usize::MAX,
            reverse: false,
        })
        .await
        .unwrap();
    assert_eq!(keys(&page), ["ecs/taskdefs/web/0000000002", "ecs/taskdefs/web/0000000010"]);
    assert_eq!(
        store.count("ecs/taskdefs/web/0000000002", "ecs/taskdefs/web/0000000010").await.unwrap(),
        1
    );
    assert_eq!(store.count("b", "a").await.unwrap(), 0);
    assert!(store.range(Range::prefix("nothing/")).await.unwrap().is_empty());

    // get_many: in the order asked, missing keys skipped.
    let many = store
        .get_many(&[
            "a/c".to_string(),
            "missing".to_string(),
            "a/b/日本".to_string(),
            "a".to_string(),
        ])
        .await
        .unwrap();
    assert_eq!(keys(&many), ["a/c", "a/b/日本", "a"]);
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

#[test]
fn schema_newer_than_code_is_refused_and_reopen_keeps_data() {
    let (_dir, path) = temp_db();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = SqliteStore::open(&path).unwrap();
    rt.block_on(put(&store, "kept", "yes"));
    drop(store);

    // Reopening does not re-run migrations (v1 would fail on its existing tables, and would
    // reset the revision) and keeps the data.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(rt.block_on(store.revision()).unwrap(), 1);
    assert_eq!(&rt.block_on(store.get("kept")).unwrap().unwrap().value[..], b"yes");
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);

    // A database from a newer berth.
    conn.pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION + 1).unwrap();
    drop(conn);
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(
                (found, supported),
                (SqliteStore::SCHEMA_VERSION + 1, SqliteStore::SCHEMA_VERSION)
            );
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/berth.db");
    match SqliteStore::open(&path) {
        Err(StoreError::Open { path: named, .. }) => assert!(named.contains("no/such/dir")),
        other => panic!("expected an Open error, got {other:?}"),
    }
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    assert!(matches!(SqliteStore::open(&garbage), Err(StoreError::Open { .. })));
}

// ---------------------------------------------------------------------------------------------
// Durability across kill -9: the parent re-executes this test binary running only
// `kill9_child`, which writes and acknowledges txns on stdout until SIGKILLed.

const CHILD_DB_ENV: &str = "BERTH_STORE_KILL9_CHILD_DB";
const ACKS_BEFORE_KILL: usize = 200;

/// One acknowledged txn as the child reports it: `ACK <key> <revision>`.
fn parse_ack(line: &str) -> Option<(String, u64)> {
    // Only whole lines count: the kill may cut the last one short.
    let line = line.strip_suffix('\n')?;
    // libtest may print `test kill9_child ... ` on the same line before the first ack.
    let ack = &line[line.find("ACK ")? + 4..];
    let (key, revision) = ack.split_once(' ')?;
    Some((key.to_string(), revision.parse().ok()?))
}

#[test]
#[ignore = "child process of acknowledged_writes_survive_kill_9; does nothing when run alone"]
fn kill9_child() {
    let Some(path) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).build().unwrap();
    rt.block_on(async move {
        let store = Arc::new(SqliteStore::open(Path::new(&path)).unwrap());
        let mut tasks = Vec::new();
        for writer in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded only as a safety net: the parent kills us long before.
                for i in 0..1_000_000u32 {
                    let key = format!("durable/{writer}/{i:07}");
                    let txn = Txn::new()
                        .when(&key, 0)
                        .put(&key, format!("{writer}:{i}"))
                        .put("durable/last", key.clone());
                    let revision = committed(store.txn(txn).await.unwrap());
                    // Acknowledged: txn() returned. Report it in one write.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {revision}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let (_dir, path) = temp_db();
    // Some history first, so the child starts from a non-zero revision.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    {
        let store = SqliteStore::open(&path).unwrap();
        for i in 0..5 {
            rt.block_on(put(&store, &format!("before/{i}"), "x"));
        }
    }

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["kill9_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB_ENV, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    let mut line = String::new();
    while acked.len() < ACKS_BEFORE_KILL {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("child stopped after {} acks: {:?}", acked.len(), child.wait());
        }
        acked.extend(parse_ack(&line));
    }
    assert!(child.try_wait().unwrap().is_none(), "the child must still be writing when killed");
    child.kill().unwrap(); // SIGKILL on unix
    let status = child.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
    #[cfg(not(unix))]
    let _ = status;
    // Acks the child wrote before dying but we had not read yet count as well.
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        acked.extend(parse_ack(&line));
    }

    let store = SqliteStore::open(&path).unwrap();
    let revision = rt.block_on(store.revision()).unwrap();
    println!("child killed after {} acks; store reopened at revision {revision}", acked.len());
    let last_acked = acked.iter().map(|(_, r)| *r).max().unwrap();
    assert!(revision >= last_acked, "revision {revision} went behind acknowledged {last_acked}");
    let mut seen = std::collections::HashSet::new();
    for (key, acked_revision) in &acked {
        assert!(*acked_revision > 5, "revisions continue after the history");
        assert!(seen.insert(*acked_revision), "revision {acked_revision} acknowledged twice");
        let record = rt.block_on(store.get(key)).unwrap().unwrap_or_else(|| {
            panic!("acknowledged key {key} at revision {acked_revision} lost by kill -9")
        });
        assert_eq!(
            (record.create_revision, record.mod_revision),
            (*acked_revision, *acked_revision)
        );
    }
    let before = rt.block_on(store.get("before/4")).unwrap().unwrap();
    assert_eq!(before.mod_revision, 5);

    // No reuse of revisions after the crash.
    assert_eq!(rt.block_on(put(&store, "after", "crash")), revision + 1);
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(rt.block_on(store.revision()).unwrap(), revision + 1);
}

#[tokio::test]
async fn watch_publishes_each_committed_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
    let mut w = store.watch();
    assert_eq!(*w.borrow_and_update(), 0);
    let waiter = tokio::spawn(async move {
        w.changed().await.unwrap();
        *w.borrow_and_update()
    });
    store.txn(Txn::new().put("a", b"1".to_vec())).await.unwrap();
    assert_eq!(waiter.await.unwrap(), 1);
    // A conflict publishes nothing; the next commit does.
    let mut w = store.watch();
    w.borrow_and_update();
    assert!(!store.txn(Txn::new().when("a", 0).put("a", b"2".to_vec())).await.unwrap().committed());
    assert!(!w.has_changed().unwrap());
    store.txn(Txn::new().put("b", b"1".to_vec())).await.unwrap();
    assert!(w.has_changed().unwrap());
    assert_eq!(*w.borrow_and_update(), 2);
    // A reopened store starts from the stored revision.
    drop(store);
    let store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
    assert_eq!(*store.watch().borrow(), 2);
}

#[tokio::test]
async fn changes_deliver_every_committed_txn_in_order_and_no_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("berth.db")).unwrap();
    put(&store, "before", "x").await; // committed before subscribing: not delivered
    let mut rx = store.changes();
    let r1 = put(&store, "a", "1").await;
    let lost = store.txn(Txn::new().when("a", 999).put("a", "never")).await.unwrap();
    assert!(!lost.committed());
    let r2 = match store.txn(Txn::new().put("b", "2").delete("a")).await.unwrap() {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("{other:?}"),
    };
    let c1 = rx.recv().await.unwrap();
    assert_eq!(c1.revision, r1);
    assert_eq!(c1.ops, vec![Op::Put { key: "a".into(), value: "1".into() }]);
    let c2 = rx.recv().await.unwrap();
    assert_eq!(c2.revision, r2);
    assert_eq!(
        c2.ops,
        vec![Op::Put { key: "b".into(), value: "2".into() }, Op::Delete { key: "a".into() }]
    );
    assert!(rx.try_recv().is_err(), "the conflicting txn is not a change");
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

#[tokio::test]
async fn database_files_are_private() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    put(&store, "iam/k", "secret").await;
    for p in [path.clone(), sibling(&path, "-wal"), sibling(&path, "-shm")] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    drop(store);
    // A database left world-readable by an older berth is tightened at open.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    put(&store, "iam/k2", "x").await;
    for p in [path.clone(), sibling(&path, "-wal"), sibling(&path, "-shm")] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

#[tokio::test]
async fn scrub_leaves_no_overwritten_value_on_disk() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    put(&store, "iam/k", "PLAINTEXT-SECRET-0123456789").await;
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    put(&store, "iam/k", "sealed-value").await;
    store.scrub().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    for s in ["-wal", "-shm"] {
        bytes.extend(std::fs::read(sibling(&path, s)).unwrap_or_default());
    }
    let needle = b"PLAINTEXT-SECRET-0123456789";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle), "the old value is still on disk");
    assert_eq!(store.get("iam/k").await.unwrap().unwrap().value, Bytes::from("sealed-value"));
    // The store goes on working after the rewrite.
    put(&store, "iam/k3", "x").await;
    assert_eq!(store.get("iam/k3").await.unwrap().unwrap().value, Bytes::from("x"));
}
