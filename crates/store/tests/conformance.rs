//! One conformance suite of the `Store` contract, run against both backends: SQLite (a temp
//! file) and etcd (an `etcd` process started by each test on ephemeral ports with a temp data
//! dir, killed at the end). Without an etcd binary the etcd half is skipped with a message,
//! unless `CI` is set: then it fails. Revisions are compared relative to each store's starting
//! revision (etcd starts at 1); where the backends differ by design (a transaction that
//! changes nothing: SQLite gives it a revision, etcd does not) the test says so.
//!
//! The suite runs a third time on etcd over TLS with client-certificate authentication
//! (`etcds://`, a CA and certificates generated per test: `support/pki.rs`).
//!
//! Then tests of the etcd backend alone: its watch resuming after a disconnect (through a TCP
//! proxy the test cuts) and re-listing after a compaction, acknowledged writes surviving
//! `kill -9` of etcd, the request size limit, and etcd's NOSPACE alarm.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_store::etcd_process::{EtcdProcess, etcd_for_test};
use berth_store::{
    EtcdConfig, EtcdStore, KeySpace, Op, Range, Record, RecvError, Revision, SqliteStore, Store,
    StoreError, Txn, TxnOutcome, View, prefix_end,
};
use bytes::Bytes;

#[path = "support/pki.rs"]
mod pki;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Etcd,
}

/// A fresh, empty store of one backend.
struct Fixture {
    kind: Kind,
    store: Arc<dyn Store>,
    /// The revision of the empty store.
    base: Revision,
    dir: tempfile::TempDir,
    etcd: Option<EtcdProcess>,
    /// The client's TLS settings when etcd is reached over TLS.
    tls: Option<berth_store::EtcdTls>,
}

impl Fixture {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).unwrap());
        let base = store.revision().await.unwrap();
        Self { kind: Kind::Sqlite, store, base, dir, etcd: None, tls: None }
    }

    async fn etcd(test: &str) -> Option<Self> {
        let bin = etcd_for_test(test)?;
        let dir = tempfile::tempdir().unwrap();
        let etcd = EtcdProcess::start(&bin, &dir.path().join("etcd"), &test_flags()).unwrap();
        let store = Arc::new(EtcdStore::connect_url(&etcd.url("berth/")).await.unwrap());
        let base = store.revision().await.unwrap();
        Some(Self { kind: Kind::Etcd, store, base, dir, etcd: Some(etcd), tls: None })
    }

    /// etcd serving its clients over TLS only, requiring a client certificate of the test CA.
    async fn etcd_tls(test: &str) -> Option<Self> {
        let bin = etcd_for_test(test)?;
        let dir = tempfile::tempdir().unwrap();
        let pki = pki::Pki::generate(&dir.path().join("pki"), "test");
        let etcd =
            EtcdProcess::start_tls(&bin, &dir.path().join("etcd"), &pki.member(), &test_flags())
                .unwrap();
        let tls = pki.client();
        let store = Arc::new(tls_store(&etcd.url("berth/"), &tls).await.unwrap());
        let base = store.revision().await.unwrap();
        Some(Self { kind: Kind::Etcd, store, base, dir, etcd: Some(etcd), tls: Some(tls) })
    }

    /// Drops the store and opens it again (SQLite: the same file; etcd: a new client).
    async fn reopen(&mut self) {
        self.store = match self.kind {
            // A second handle on the file, then the first dropped (it is idle: nothing queued).
            Kind::Sqlite => Arc::new(SqliteStore::open(&self.dir.path().join("berth.db")).unwrap()),
            Kind::Etcd => {
                let url = self.etcd.as_ref().unwrap().url("berth/");
                match &self.tls {
                    Some(tls) => Arc::new(tls_store(&url, tls).await.unwrap()),
                    None => Arc::new(EtcdStore::connect_url(&url).await.unwrap()),
                }
            }
        };
    }

    /// The revision `n` commits after the empty store's.
    fn rev(&self, n: u64) -> Revision {
        self.base + n
    }
}

/// Connects to the `etcds://` store at `url` with `tls`.
async fn tls_store(url: &str, tls: &berth_store::EtcdTls) -> Result<EtcdStore, StoreError> {
    let config = EtcdConfig::parse(url)?.with_tls_files(
        url,
        tls.ca.clone(),
        tls.cert.clone(),
        tls.key.clone(),
    )?;
    EtcdStore::connect(config).await
}

/// Faster elections for a single test member (no one to disagree with).
fn test_flags() -> Vec<&'static str> {
    vec!["--heartbeat-interval=20", "--election-timeout=200", "--max-txn-ops=1024"]
}

/// Runs each named async test against SQLite and against etcd.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Fixture::sqlite().await).await
                }
            )*
        }
        mod on_etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(f) = super::Fixture::etcd(stringify!($name)).await {
                        super::$name(f).await
                    }
                }
            )*
        }
        mod on_etcd_tls {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(f) = super::Fixture::etcd_tls(stringify!($name)).await {
                        super::$name(f).await
                    }
                }
            )*
        }
    };
}

conformance!(
    put_get_delete_and_revisions,
    compare_and_set,
    concurrent_cas_increments_lose_nothing,
    concurrent_writers_get_dense_unique_revisions,
    reads_see_whole_transactions,
    ranges_are_bytewise_with_limits_and_counts,
    get_many_reads_one_snapshot_in_the_order_asked,
    several_writes_of_a_key_in_one_txn_apply_in_order,
    watch_publishes_committed_revisions,
    changes_deliver_every_committed_txn_in_order,
    views_work_over_the_store,
    values_up_to_a_mebibyte_round_trip,
    fenced_writes_fail_once_the_fence_key_changed,
);

fn committed(outcome: TxnOutcome) -> Revision {
    match outcome {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("expected a commit, got {other:?}"),
    }
}

async fn put(store: &dyn Store, key: &str, value: &str) -> Revision {
    committed(store.txn(Txn::new().put(key, value.to_string())).await.unwrap())
}

fn keys(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.key.as_str()).collect()
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn put_get_delete_and_revisions(mut f: Fixture) {
    let s = f.store.clone();
    assert_eq!(s.revision().await.unwrap(), f.rev(0));
    assert_eq!(s.get("a").await.unwrap(), None);
    assert_eq!(put(&*s, "a", "one").await, f.rev(1));
    assert_eq!(
        s.get("a").await.unwrap().unwrap(),
        Record {
            key: "a".into(),
            value: Bytes::from_static(b"one"),
            create_revision: f.rev(1),
            mod_revision: f.rev(1)
        }
    );
    assert_eq!(put(&*s, "b", "x").await, f.rev(2));
    assert_eq!(put(&*s, "a", "two").await, f.rev(3));
    let r = s.get("a").await.unwrap().unwrap();
    assert_eq!((r.value, r.create_revision, r.mod_revision), ("two".into(), f.rev(1), f.rev(3)));
    // A conflict takes no revision.
    assert!(!s.txn(Txn::new().when("a", f.rev(1)).put("a", "stale")).await.unwrap().committed());
    assert_eq!(s.revision().await.unwrap(), f.rev(3));
    // Empty values are values.
    assert_eq!(put(&*s, "empty", "").await, f.rev(4));
    assert_eq!(s.get("empty").await.unwrap().unwrap().value, Bytes::new());
    // The ops of one txn share its revision.
    let r5 = committed(s.txn(Txn::new().put("c", "1").put("d", "2").delete("b")).await.unwrap());
    assert_eq!(r5, f.rev(5));
    assert_eq!(s.get("c").await.unwrap().unwrap().mod_revision, r5);
    assert_eq!(s.get("d").await.unwrap().unwrap().mod_revision, r5);
    assert_eq!(s.get("b").await.unwrap(), None);
    assert_eq!(committed(s.txn(Txn::new().delete("a")).await.unwrap()), f.rev(6));
    // Deleting an absent key commits; SQLite gives it a revision of its own, etcd (which
    // changes nothing) answers the current one.
    let noop = committed(s.txn(Txn::new().delete("a")).await.unwrap());
    let after_noop = match f.kind {
        Kind::Sqlite => f.rev(7),
        Kind::Etcd => f.rev(6),
    };
    assert_eq!(noop, after_noop);
    // Re-creating a deleted key starts a new life.
    let again = put(&*s, "a", "three").await;
    assert_eq!(again, after_noop + 1);
    let r = s.get("a").await.unwrap().unwrap();
    assert_eq!((r.create_revision, r.mod_revision), (again, again));
    // Delete the newest key, reopen: the revision survives and is never reused.
    let deleted = committed(s.txn(Txn::new().delete("a")).await.unwrap());
    assert_eq!(deleted, again + 1);
    drop(s);
    f.reopen().await;
    let s = f.store.clone();
    assert_eq!(s.revision().await.unwrap(), deleted);
    assert_eq!(put(&*s, "z", "after reopen").await, deleted + 1);
    assert_eq!(s.get("c").await.unwrap().unwrap().mod_revision, r5);
}

async fn compare_and_set(f: Fixture) {
    let s = f.store.clone();
    let create = || Txn::new().when("k", 0).put("k", "v1");
    let r1 = committed(s.txn(create()).await.unwrap());
    assert_eq!(
        s.txn(create()).await.unwrap(),
        TxnOutcome::Conflict { key: "k".into(), expected: 0, actual: r1 }
    );
    let r2 = committed(s.txn(Txn::new().when("k", r1).put("k", "v2")).await.unwrap());
    let r3 = put(&*s, "victim", "keep").await;
    // A stale compare writes nothing at all.
    let outcome = s
        .txn(Txn::new().when("k", r1).put("k", "v3").put("other", "x").delete("victim"))
        .await
        .unwrap();
    assert_eq!(outcome, TxnOutcome::Conflict { key: "k".into(), expected: r1, actual: r2 });
    assert_eq!(s.get("k").await.unwrap().unwrap().value, "v2");
    assert_eq!(s.get("other").await.unwrap(), None);
    assert_eq!(s.get("victim").await.unwrap().unwrap().value, "keep");
    assert_eq!(s.revision().await.unwrap(), r3);
    // The first failing compare is reported.
    let outcome = s
        .txn(Txn::new().when("k", r2).when("missing", 7).when("victim", 0).put("k", "v3"))
        .await
        .unwrap();
    assert_eq!(outcome, TxnOutcome::Conflict { key: "missing".into(), expected: 7, actual: 0 });
    // All holding: applied.
    let r4 = committed(
        s.txn(Txn::new().when("k", r2).when("victim", r3).when("new", 0).put("new", "n"))
            .await
            .unwrap(),
    );
    assert_eq!(r4, r3 + 1);
    // Deleted, the key is absent again: expecting 0 holds.
    assert!(s.txn(Txn::new().when("new", r4).delete("new")).await.unwrap().committed());
    assert!(s.txn(Txn::new().when("new", 0).put("new", "again")).await.unwrap().committed());
}

/// 20 tasks × 10 read-modify-write increments of one counter with CAS retry loops.
async fn concurrent_cas_increments_lose_nothing(f: Fixture) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = f.store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                loop {
                    let (value, version) = match s.get("counter").await.unwrap() {
                        Some(r) => (
                            std::str::from_utf8(&r.value).unwrap().parse::<u64>().unwrap(),
                            r.mod_revision,
                        ),
                        None => (0, 0),
                    };
                    let txn =
                        Txn::new().when("counter", version).put("counter", (value + 1).to_string());
                    if s.txn(txn).await.unwrap().committed() {
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = f.store.get("counter").await.unwrap().unwrap();
    assert_eq!(&r.value[..], b"200");
    assert_eq!(r.mod_revision, f.rev(200));
    assert_eq!(
        f.store.revision().await.unwrap(),
        f.rev(200),
        "one revision per commit, none per conflict"
    );
}

async fn concurrent_writers_get_dense_unique_revisions(f: Fixture) {
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let s = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..20 {
                let key = format!("w/{writer:02}/{i:02}");
                revisions
                    .push(committed(s.txn(Txn::new().when(&key, 0).put(&key, "v")).await.unwrap()));
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "a writer's own txns are ordered");
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (f.rev(1)..=f.rev(320)).collect::<Vec<_>>(), "dense and unique");
    assert_eq!(f.store.count("w/", &prefix_end("w/")).await.unwrap(), 320);
}

async fn reads_see_whole_transactions(f: Fixture) {
    let s = f.store.clone();
    s.txn(Txn::new().put("pair/a", "0").put("pair/b", "0")).await.unwrap();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 1..=100 {
                let v = i.to_string();
                s.txn(Txn::new().put("pair/a", v.clone()).put("pair/b", v)).await.unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let both = s.get_many(&["pair/a".to_string(), "pair/b".to_string()]).await.unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!((&both[0].value, both[0].mod_revision), (&both[1].value, both[1].mod_revision));
        let listed = s.range(Range::prefix("pair/")).await.unwrap();
        assert_eq!(listed[0].value, listed[1].value);
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(&s.get("pair/b").await.unwrap().unwrap().value[..], b"100");
}

async fn ranges_are_bytewise_with_limits_and_counts(f: Fixture) {
    let s = f.store.clone();
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
    // One txn (etcd's txn limit allows it), written out of order.
    let mut txn = Txn::new();
    for key in all.iter().rev() {
        txn = txn.put(*key, key.to_string());
    }
    s.txn(txn).await.unwrap();
    let mut sorted = all.to_vec();
    sorted.sort_unstable();
    let everything = s.range(Range::prefix("")).await.unwrap();
    assert_eq!(keys(&everything), sorted);
    assert!(everything.iter().all(|r| r.value == r.key.as_bytes()));
    assert_eq!(s.count("", &prefix_end("")).await.unwrap(), all.len() as u64);
    let listed = s.range(Range::prefix("a/b/")).await.unwrap();
    assert_eq!(keys(&listed), ["a/b/", "a/b/c", "a/b/é", "a/b/日本", "a/b/\u{10FFFE}"]);
    let listed = s.range(Range::prefix("a/b")).await.unwrap();
    let expected: Vec<&str> = sorted.iter().copied().filter(|k| k.starts_with("a/b")).collect();
    assert_eq!(keys(&listed), expected);
    assert_eq!(s.count("a/b", &prefix_end("a/b")).await.unwrap(), 11);
    assert_eq!(s.count("a/b/", &prefix_end("a/b/")).await.unwrap(), 5);
    let family = "ecs/taskdefs/web/";
    let listed = s.range(Range::prefix(family)).await.unwrap();
    assert_eq!(
        keys(&listed),
        [
            "ecs/taskdefs/web/0000000001",
            "ecs/taskdefs/web/0000000002",
            "ecs/taskdefs/web/0000000010"
        ]
    );
    let latest = s.range(Range::prefix(family).reversed().limit(1)).await.unwrap();
    assert_eq!(keys(&latest), ["ecs/taskdefs/web/0000000010"]);
    let newest_two = s.range(Range::prefix(family).reversed().limit(2)).await.unwrap();
    assert_eq!(keys(&newest_two), ["ecs/taskdefs/web/0000000010", "ecs/taskdefs/web/0000000002"]);
    let oldest_two = s.range(Range::prefix(family).limit(2)).await.unwrap();
    assert_eq!(keys(&oldest_two), ["ecs/taskdefs/web/0000000001", "ecs/taskdefs/web/0000000002"]);
    assert!(s.range(Range::prefix(family).limit(0)).await.unwrap().is_empty());
    let whole_reversed = s.range(Range::prefix("").reversed()).await.unwrap();
    let mut rev_sorted = sorted.clone();
    rev_sorted.reverse();
    assert_eq!(keys(&whole_reversed), rev_sorted);
    let page = s
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
        s.count("ecs/taskdefs/web/0000000002", "ecs/taskdefs/web/0000000010").await.unwrap(),
        1
    );
    assert_eq!(s.count("b", "a").await.unwrap(), 0);
    let empty = Range { start: "b".into(), end: "a".into(), limit: usize::MAX, reverse: false };
    assert!(s.range(empty).await.unwrap().is_empty());
    let same = Range { start: "a".into(), end: "a".into(), limit: usize::MAX, reverse: false };
    assert!(s.range(same).await.unwrap().is_empty(), "an empty range is not a point read");
    assert!(s.range(Range::prefix("nothing/")).await.unwrap().is_empty());
}

async fn get_many_reads_one_snapshot_in_the_order_asked(f: Fixture) {
    let s = f.store.clone();
    // More keys than etcd's default --max-txn-ops (128), so its backend reads in chunks.
    let mut txn = Txn::new();
    for i in 0..300 {
        txn = txn.put(format!("m/{i:03}"), i.to_string());
    }
    s.txn(txn).await.unwrap();
    let mut asked: Vec<String> = (0..300).rev().map(|i| format!("m/{i:03}")).collect();
    asked.insert(7, "missing".into());
    let got = s.get_many(&asked).await.unwrap();
    assert_eq!(got.len(), 300);
    let want: Vec<String> = (0..300).rev().map(|i| format!("m/{i:03}")).collect();
    assert_eq!(got.iter().map(|r| r.key.clone()).collect::<Vec<_>>(), want);
    assert!(s.get_many(&[]).await.unwrap().is_empty());
}

async fn several_writes_of_a_key_in_one_txn_apply_in_order(f: Fixture) {
    let s = f.store.clone();
    s.txn(Txn::new().put("k", "1").put("k", "2").put("j", "x")).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().unwrap().value, "2");
    s.txn(Txn::new().put("k", "3").delete("k")).await.unwrap();
    assert_eq!(s.get("k").await.unwrap(), None);
    s.txn(Txn::new().delete("j").put("j", "y")).await.unwrap();
    assert_eq!(s.get("j").await.unwrap().unwrap().value, "y");
}

async fn watch_publishes_committed_revisions(f: Fixture) {
    let s = f.store.clone();
    let mut w = s.watch();
    assert_eq!(*w.borrow_and_update(), f.rev(0));
    let waiter = tokio::spawn(async move {
        w.changed().await.unwrap();
        *w.borrow_and_update()
    });
    let r1 = put(&*s, "a", "1").await;
    assert_eq!(within("watch", waiter).await.unwrap(), r1);
    let mut w = s.watch();
    w.borrow_and_update();
    assert!(!s.txn(Txn::new().when("a", 0).put("a", "2")).await.unwrap().committed());
    assert!(!w.has_changed().unwrap(), "a conflict publishes nothing");
    let r2 = put(&*s, "b", "1").await;
    // Published by the time txn() returns.
    assert!(w.has_changed().unwrap());
    assert_eq!(*w.borrow_and_update(), r2);
}

async fn changes_deliver_every_committed_txn_in_order(f: Fixture) {
    let s = f.store.clone();
    put(&*s, "before", "x").await; // committed before subscribing: not delivered
    let mut rx = s.changes();
    let r1 = put(&*s, "a", "1").await;
    assert!(!s.txn(Txn::new().when("a", 999).put("a", "never")).await.unwrap().committed());
    let r2 = committed(s.txn(Txn::new().put("b", "2").delete("a")).await.unwrap());
    // Sent by the time txn() returned: a cache following the feed has its own writes.
    let c1 = rx.try_recv().unwrap();
    assert_eq!(
        (c1.revision, &c1.ops[..]),
        (r1, &[Op::Put { key: "a".into(), value: "1".into() }][..])
    );
    let c2 = rx.try_recv().unwrap();
    assert_eq!(c2.revision, r2);
    assert_eq!(
        c2.ops,
        vec![Op::Put { key: "b".into(), value: "2".into() }, Op::Delete { key: "a".into() }]
    );
    assert!(rx.try_recv().is_err(), "the conflicting txn is not a change");
    // Many commits, concurrently: every one delivered once, in revision order.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                put(&*s, &format!("c/{w}/{i}"), "v").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 80 {
        let c = within("change", rx.recv()).await.unwrap();
        seen.push(c.revision);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(rx.try_recv().is_err());
}

async fn views_work_over_the_store(f: Fixture) {
    let eu = View::new(f.store.clone(), KeySpace::prefixed("regions/eu-west-1/"));
    let default = View::new(f.store.clone(), KeySpace::excluding(["regions/"]));
    let mut feed = eu.changes();
    put(&eu, "ecs/clusters/a", "eu").await;
    put(&default, "ecs/clusters/a", "default").await;
    assert_eq!(keys(&eu.range(Range::prefix("")).await.unwrap()), ["ecs/clusters/a"]);
    assert_eq!(default.get("ecs/clusters/a").await.unwrap().unwrap().value, "default");
    assert_eq!(f.store.count("", &prefix_end("")).await.unwrap(), 2);
    let c = within("view change", feed.recv()).await.unwrap();
    assert_eq!(c.ops, vec![Op::Put { key: "ecs/clusters/a".into(), value: "eu".into() }]);
    assert!(feed.try_recv().is_err(), "the default region's write is not eu-west-1's");
}

async fn values_up_to_a_mebibyte_round_trip(f: Fixture) {
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    put(&*f.store, "small", "s").await;
    f.store.txn(Txn::new().put("big", big.clone())).await.unwrap();
    assert_eq!(&f.store.get("big").await.unwrap().unwrap().value[..], &big[..]);
    let all = f.store.range(Range::prefix("")).await.unwrap();
    assert_eq!(keys(&all), ["big", "small"]);
    // A read of more than gRPC's default message size (4 MiB) in all.
    for i in 0..5 {
        f.store.txn(Txn::new().put(format!("more/{i}"), big.clone())).await.unwrap();
    }
    let more = f.store.range(Range::prefix("more/")).await.unwrap();
    assert_eq!(more.len(), 5);
    assert!(more.iter().all(|r| r.value == big));
    let names: Vec<String> = (0..5).map(|i| format!("more/{i}")).collect();
    assert_eq!(f.store.get_many(&names).await.unwrap().len(), 5);
}

// ---- etcd only ----

/// A TCP proxy the test can cut (every connection dropped, new ones refused) and restore.
struct Proxy {
    port: u16,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(tokio::sync::watch::channel(false).0);
        let state = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else { return };
                if *state.borrow() {
                    continue; // dropped: refused while cut
                }
                let upstream = upstream.clone();
                let mut cut = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn etcd_with_proxy(test: &str) -> Option<(Fixture, Proxy, EtcdStore)> {
    let f = Fixture::etcd(test).await?;
    let upstream = f.etcd.as_ref().unwrap().client_url().trim_start_matches("http://").to_string();
    let proxy = Proxy::start(upstream).await;
    let mut config = EtcdConfig::parse(&format!("etcd://127.0.0.1:{}/berth/", proxy.port)).unwrap();
    config.connect_timeout = Duration::from_secs(2);
    let through = EtcdStore::connect(config).await.unwrap();
    Some((f, proxy, through))
}

/// The watch of a store whose connection is cut resumes where it stopped: every change made
/// meanwhile (by another server) is delivered, in order, once; no re-list is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_watch_resumes_after_a_disconnect() {
    let Some((f, proxy, through)) = etcd_with_proxy("etcd_watch_resumes_after_a_disconnect").await
    else {
        return;
    };
    let mut feed = through.changes();
    let mut revs = through.watch();
    let r0 = put(&*f.store, "x/0", "before").await;
    assert_eq!(within("first change", feed.recv()).await.unwrap().revision, r0);
    proxy.set_cut(true);
    let mut written = Vec::new();
    for i in 1..=5 {
        written.push(put(&*f.store, &format!("x/{i}"), "during").await);
    }
    proxy.set_cut(false);
    for want in &written {
        let c = within("resumed change", feed.recv()).await.unwrap();
        assert_eq!(c.revision, *want);
    }
    within("revision", revs.wait_for(|r| *r >= *written.last().unwrap())).await.unwrap();
    // And it keeps following.
    let after = put(&*f.store, "x/after", "v").await;
    assert_eq!(within("change after", feed.recv()).await.unwrap().revision, after);
    assert!(feed.try_recv().is_err(), "nothing delivered twice");
}

/// When the revisions a broken watch would resume from have been compacted away, followers are
/// told to re-list (`Lagged`), and the feed continues from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_watch_relists_after_a_compaction() {
    let Some((f, proxy, through)) = etcd_with_proxy("etcd_watch_relists_after_a_compaction").await
    else {
        return;
    };
    let mut feed = through.changes();
    put(&*f.store, "y/keep", "1").await;
    within("first", feed.recv()).await.unwrap();
    proxy.set_cut(true);
    put(&*f.store, "y/missed", "2").await;
    committed(f.store.txn(Txn::new().delete("y/keep")).await.unwrap());
    let last = f.store.revision().await.unwrap();
    let mut client =
        etcd_client::Client::connect([f.etcd.as_ref().unwrap().client_url()], None).await.unwrap();
    client.compact(i64::try_from(last).unwrap(), None).await.unwrap();
    proxy.set_cut(false);
    match within("lag", feed.recv()).await {
        Err(RecvError::Lagged(_)) => {}
        other => panic!("expected Lagged after the compaction, got {other:?}"),
    }
    // The re-list shows the state, and the feed carries on.
    let listed = through.range(Range::prefix("y/")).await.unwrap();
    assert_eq!(keys(&listed), ["y/missed"]);
    let next = put(&*f.store, "y/next", "3").await;
    assert_eq!(within("after relist", feed.recv()).await.unwrap().revision, next);
}

/// Acknowledged writes survive `kill -9` of etcd; the same store handle carries on once it is
/// back, its watch included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_acknowledged_writes_survive_kill_9() {
    let Some(mut f) = Fixture::etcd("etcd_acknowledged_writes_survive_kill_9").await else {
        return;
    };
    let mut acked = Vec::new();
    for i in 0..50 {
        let key = format!("d/{i:02}");
        acked.push((key.clone(), put(&*f.store, &key, &i.to_string()).await));
    }
    let mut feed = f.store.changes();
    let etcd = f.etcd.as_mut().unwrap();
    etcd.kill9();
    etcd.restart().unwrap();
    for (key, revision) in &acked {
        let r = within("read after restart", f.store.get(key)).await.unwrap().unwrap();
        assert_eq!(r.mod_revision, *revision, "{key}");
    }
    let next = within("write after restart", put(&*f.store, "d/after", "x")).await;
    assert_eq!(next, acked.last().unwrap().1 + 1);
    assert_eq!(within("feed after restart", feed.recv()).await.unwrap().revision, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_refuses_transactions_over_its_limits_naming_the_key() {
    let Some(f) = Fixture::etcd("etcd_refuses_transactions_over_its_limits_naming_the_key").await
    else {
        return;
    };
    let before = f.store.revision().await.unwrap();
    let err = f
        .store
        .txn(Txn::new().put("ok", "x").put("ecs/huge", vec![7u8; 2 << 20]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    let m = err.to_string();
    assert!(m.contains("ecs/huge") && m.contains("--max-request-bytes"), "{m}");
    assert_eq!(f.store.get("ok").await.unwrap(), None, "nothing applied");
    // More operations than its --max-txn-ops (1024 here).
    let mut many = Txn::new();
    for i in 0..1025 {
        many = many.put(format!("many/{i}"), "v");
    }
    let err = f.store.txn(many).await.unwrap_err();
    assert!(matches!(err, StoreError::TooManyOps { ops: 1025 }), "{err:?}");
    assert!(err.to_string().contains("--max-txn-ops"), "{err}");
    assert_eq!(f.store.count("many/", &prefix_end("many/")).await.unwrap(), 0);
    assert_eq!(f.store.revision().await.unwrap(), before);
}

/// etcd's NOSPACE alarm (its backend quota used up) fails writes with `EtcdNoSpace`, applying
/// nothing; reads keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_out_of_space_fails_writes_and_keeps_reads() {
    let Some(bin) = etcd_for_test("etcd_out_of_space_fails_writes_and_keeps_reads") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut flags = test_flags();
    flags.push("--quota-backend-bytes=4194304");
    let etcd = EtcdProcess::start(&bin, &dir.path().join("etcd"), &flags).unwrap();
    let store = EtcdStore::connect_url(&etcd.url("berth/")).await.unwrap();
    let value = vec![1u8; 512 * 1024];
    let mut stored = 0;
    let err = loop {
        match store.txn(Txn::new().put(format!("fill/{stored:03}"), value.clone())).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 64, "etcd never ran out of its 4 MiB quota");
    };
    assert!(matches!(err, StoreError::EtcdNoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("alarm disarm"), "{err}");
    assert_eq!(store.count("fill/", &prefix_end("fill/")).await.unwrap(), stored);
    assert!(store.get("fill/000").await.unwrap().is_some(), "reads keep working");
    let again = store.txn(Txn::new().put("small", "x")).await.unwrap_err();
    assert!(matches!(again, StoreError::EtcdNoSpace { .. }), "{again:?}");
}

/// The fence key of `key` in the backend's own key space (etcd: with the fixture's prefix).
fn raw_key(f: &Fixture, key: &str) -> String {
    match f.kind {
        Kind::Sqlite => key.to_string(),
        Kind::Etcd => format!("berth/{key}"),
    }
}

/// A transaction carrying a fence commits while the fence key exists at its create revision,
/// and fails with `Fenced`, applying nothing, once the key was deleted or created again: set
/// on the transaction, through a view (untranslated), or from the task's leadership term
/// (which it then ends).
async fn fenced_writes_fail_once_the_fence_key_changed(f: Fixture) {
    let s = f.store.clone();
    let created = put(&*s, "lead/a", "me").await;
    let fence = berth_store::Fence { key: raw_key(&f, "lead/a"), create_revision: created };
    // Holds, also after an update of the key (its create revision is unchanged).
    committed(s.txn(Txn::new().put("w/1", "x").fenced(fence.clone())).await.unwrap());
    put(&*s, "lead/a", "still me").await;
    committed(s.txn(Txn::new().put("w/2", "x").fenced(fence.clone())).await.unwrap());
    let view = View::new(s.clone(), KeySpace::prefixed("v/"));
    committed(view.txn(Txn::new().put("w/3", "x").fenced(fence.clone())).await.unwrap());
    let term = berth_store::Term::new("test", Some(fence.clone()));
    let under = berth_store::leadership::under(term.clone(), s.txn(Txn::new().put("w/4", "x")));
    committed(under.await.unwrap());
    assert_eq!(term.ended(), None);

    // The key goes and comes back (another leader): the fence no longer holds.
    committed(s.txn(Txn::new().delete("lead/a")).await.unwrap());
    put(&*s, "lead/a", "someone else").await;
    let before = berth_store::leadership::fenced_writes();
    let rev = s.revision().await.unwrap();
    for (what, result) in [
        ("set on the txn", s.txn(Txn::new().put("w/5", "x").fenced(fence.clone())).await),
        ("through a view", view.txn(Txn::new().put("w/5", "x").fenced(fence.clone())).await),
        (
            "from the term",
            berth_store::leadership::under(term.clone(), s.txn(Txn::new().put("w/5", "x"))).await,
        ),
    ] {
        match result {
            Err(StoreError::Fenced { key, expected }) => {
                assert_eq!((key.as_str(), expected), (fence.key.as_str(), created), "{what}");
            }
            other => panic!("{what}: expected Fenced, got {other:?}"),
        }
    }
    assert!(berth_store::leadership::fenced_writes() >= before + 3);
    assert!(
        term.ended().is_some_and(|r| r.contains("fence")),
        "the term ended: {:?}",
        term.ended()
    );
    assert_eq!(s.get("w/5").await.unwrap(), None, "nothing applied");
    assert_eq!(view.get("w/5").await.unwrap(), None, "nothing applied");
    assert_eq!(s.revision().await.unwrap(), rev, "no revision spent");
    // Compares are still reported as conflicts when the fence holds.
    let fresh = berth_store::Fence {
        key: fence.key.clone(),
        create_revision: s.get("lead/a").await.unwrap().unwrap().create_revision,
    };
    let out = s.txn(Txn::new().when("w/1", 0).put("w/1", "y").fenced(fresh)).await.unwrap();
    assert!(matches!(out, TxnOutcome::Conflict { ref key, .. } if key == "w/1"), "{out:?}");
}

/// Two servers elect one leader through etcd; when the leader's lease is lost behind its back
/// (as when it is paused past its TTL) the other takes over, and the deposed one, still
/// believing it leads, cannot commit a write under its term: `Fenced`, nothing applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_a_deposed_leader_cannot_write() {
    use berth_store::{EtcdLeadership, Leadership};
    let Some(f) = Fixture::etcd("etcd_a_deposed_leader_cannot_write").await else { return };
    let url = f.etcd.as_ref().unwrap().url("berth/");
    let a_store = Arc::new(EtcdStore::connect_url(&url).await.unwrap());
    let b_store = Arc::new(EtcdStore::connect_url(&url).await.unwrap());
    let a = EtcdLeadership::new(&a_store, "server-a", Duration::from_secs(2));
    let b = Arc::new(EtcdLeadership::new(&b_store, "server-b", Duration::from_secs(2)));
    let term_a = within("a campaigns", a.campaign()).await.unwrap();
    let fence = term_a.fence().cloned().unwrap();
    assert!(fence.key.starts_with("berth.leader/"), "{fence:?}");
    let mut seen = a.observe();
    within("a observed", seen.wait_for(|v| v.as_deref() == Some("server-a"))).await.unwrap();
    let ok =
        berth_store::leadership::under(term_a.clone(), a_store.txn(Txn::new().put("c/1", "a")));
    committed(ok.await.unwrap());

    let b_campaign = tokio::spawn({
        let b = b.clone();
        async move { b.campaign().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_campaign.is_finished(), "b must wait while a leads");
    // a's lease is revoked behind its back (its key goes with it): b leads.
    let mut client =
        etcd_client::Client::connect([f.etcd.as_ref().unwrap().client_url()], None).await.unwrap();
    let leader = client.leader("berth.leader").await.unwrap();
    client.lease_revoke(leader.kv().unwrap().lease()).await.unwrap();
    let term_b = within("b leads", b_campaign).await.unwrap().unwrap();
    assert_ne!(term_b.fence(), Some(&fence));
    let rev = a_store.revision().await.unwrap();
    let deposed =
        berth_store::leadership::under(term_a.clone(), a_store.txn(Txn::new().put("c/2", "a")));
    match deposed.await {
        Err(StoreError::Fenced { key, .. }) => assert_eq!(key, fence.key),
        other => panic!("the deposed leader's write: expected Fenced, got {other:?}"),
    }
    assert!(term_a.ended().is_some());
    assert_eq!(b_store.get("c/2").await.unwrap(), None);
    assert_eq!(b_store.revision().await.unwrap(), rev);
    // The new leader writes; resigning hands over at once.
    let ok =
        berth_store::leadership::under(term_b.clone(), b_store.txn(Txn::new().put("c/3", "b")));
    committed(ok.await.unwrap());
    let mut seen_b = b.observe();
    within("b observed", seen_b.wait_for(|v| v.as_deref() == Some("server-b"))).await.unwrap();
    let again = tokio::spawn(async move { a.campaign().await });
    b.resign(&term_b).await.unwrap();
    let term_a2 = within("a leads again", again).await.unwrap().unwrap();
    assert!(term_a2.ended().is_none());
}
