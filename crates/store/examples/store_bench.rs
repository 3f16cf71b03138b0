//! Ad-hoc throughput check of `SqliteStore` (not a test; no assertions):
//! `cargo run --release -p berth-store --example store_bench -- [DIR] [WRITERS] [SECONDS]`.
//! Measures durable create-if-absent txns/s with WRITERS concurrent writers (group commit), then
//! point `get()`s/s with the same number of concurrent readers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_store::{SqliteStore, Store, Txn};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let writers: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(64);
    let seconds: u64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(3);
    let dir = tempfile::tempdir_in(dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let value = vec![b'x'; 1024];

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, stop, done, value) = (store.clone(), stop.clone(), done.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("bench/{w:03}/{i:010}");
                let txn = Txn::new()
                    .when(&key, 0)
                    .put(&key, value.clone())
                    .put(format!("index/{w:03}/{i:010}"), "");
                assert!(store.txn(txn).await.unwrap().committed());
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = store.stats();
    println!(
        "writes: {writers} writers, {} txns in {elapsed:.2}s = {:.0} txns/s; {} fsync batches ({:.1} txns/batch)",
        done.load(Ordering::Relaxed),
        done.load(Ordering::Relaxed) as f64 / elapsed,
        stats.batches,
        stats.committed as f64 / stats.batches.max(1) as f64,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("bench/{w:03}/{:010}", 0);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    assert!(store.get(&key).await.unwrap().is_some());
                }
                done.fetch_add(64, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "reads: {writers} readers, {:.0} get()/s",
        done.load(Ordering::Relaxed) as f64 / elapsed
    );
}
