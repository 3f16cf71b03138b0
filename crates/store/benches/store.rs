//! Transaction throughput and latency of the two store backends, side by side in one run
//! (issue #18): SQLite in a temp file and etcd (one member started here, data in a temp dir on
//! the same filesystem). Each transaction is RunTask-shaped: a create-if-absent of a new 1 KiB
//! record and a compare-and-set update of a per-writer counter record, so both the write and
//! the compare paths are measured. Then point reads.
//!
//! `cargo bench -p berth-store --bench store` (bench/store.sh); `STORE_BENCH_SECS` sets each
//! phase's duration (default 5). Without an etcd binary only SQLite is measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_store::etcd_process::{EtcdProcess, etcd_binary};
use berth_store::{EtcdStore, SqliteStore, Store, Txn, TxnOutcome};

struct Figures {
    ops: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut lat: Vec<Duration>, secs: f64) -> Figures {
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Figures { ops: lat.len(), secs, p50: at(0.50), p99: at(0.99) }
}

/// `writers` concurrent writers for `dur`: every transaction's latency.
async fn txns(store: Arc<dyn Store>, writers: usize, dur: Duration, tag: &str) -> Figures {
    let value = vec![b'x'; 1024];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let value = value.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let counter = format!("bench/{tag}/counters/{w}");
            let mut version = 0;
            let mut lat = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < dur {
                let key = format!("bench/{tag}/tasks/{w:03}/{n:08}");
                let txn = Txn::new()
                    .when(&key, 0)
                    .when(&counter, version)
                    .put(&key, value.clone())
                    .put(&counter, n.to_string());
                let t = Instant::now();
                match store.txn(txn).await.expect("txn") {
                    TxnOutcome::Committed { revision } => version = revision,
                    other => panic!("a writer's own keys conflicted: {other:?}"),
                }
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    figures(all, start.elapsed().as_secs_f64())
}

/// `readers` concurrent point reads of the keys the writers made.
async fn reads(store: Arc<dyn Store>, readers: usize, dur: Duration, tag: &str) -> Figures {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..readers {
        let store = store.clone();
        let key = format!("bench/{tag}/counters/{r}");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < dur {
                let t = Instant::now();
                store.get(&key).await.expect("get");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    figures(all, start.elapsed().as_secs_f64())
}

fn row(backend: &str, what: &str, conc: usize, f: &Figures) {
    println!(
        "{backend:<7} {what:<6} {conc:>4} {:>9.0} {:>9.2} {:>9.2} {:>8}",
        f.ops as f64 / f.secs,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.ops
    );
}

async fn measure(backend: &str, store: Arc<dyn Store>, dur: Duration) {
    for conc in [1, 16, 64] {
        let f = txns(store.clone(), conc, dur, &format!("c{conc}")).await;
        row(backend, "txn", conc, &f);
    }
    let f = reads(store.clone(), 16, dur, "c16").await;
    row(backend, "get", 16, &f);
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let secs: u64 =
        std::env::var("STORE_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dur = Duration::from_secs(secs);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!("backend what   conc    ops/s    p50 ms    p99 ms      ops   ({secs} s a phase)");
    rt.block_on(async {
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("berth.db")).unwrap());
        measure("sqlite", sqlite, dur).await;
        match etcd_binary() {
            Some(bin) => {
                let etcd = EtcdProcess::start(&bin, &dir.path().join("etcd"), &[]).unwrap();
                let store: Arc<dyn Store> =
                    Arc::new(EtcdStore::connect_url(&etcd.url("berth/")).await.unwrap());
                measure("etcd", store, dur).await;
            }
            None => println!("etcd    (not measured: no etcd binary; apt-get install etcd-server)"),
        }
    });
}
