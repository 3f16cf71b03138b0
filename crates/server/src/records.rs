//! Typed access to JSON records in the store, and the one compare-and-set loop every
//! read-modify-write in the server goes through.
//!
//! Contract of [`Cas`]: each turn of the caller's loop starts with [`Cas::attempt`], reads
//! what it needs, decides, and either answers without writing or commits one transaction
//! whose compares guard every record it read ([`Cas::commit`]). A commit that loses a
//! compare sends the caller round the loop again, after a short, growing, jittered pause; the
//! turn after the last of [`CAS_ATTEMPTS`] fails with `ServerException` naming what was
//! contended. Nothing but the commit may have side effects within a turn.
//!
//! ```ignore
//! let mut cas = Cas::new(store, format!("cluster {name}"));
//! let rec = loop {
//!     cas.attempt().await?;
//!     let Some((mut rec, rev)) = records::get::<ClusterRecord>(store, &key).await? else { ... };
//!     ...edit rec...
//!     if cas.commit(Txn::new().when(&key, rev).put(&key, encode(&rec))).await? {
//!         break rec;
//!     }
//! };
//! ```
//! [`update`] is the common case: one record, edited in place.

use std::time::Duration;

use berth_store::{Revision, Store, Txn, TxnOutcome};
use berth_wire::AwsError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error;

/// How many times a read-modify-write is attempted before it reports contention.
pub const CAS_ATTEMPTS: usize = 64;

/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// Reads and decodes one record with its revision.
pub async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(T, Revision)>, AwsError> {
    let Some(rec) = store.get(key).await.map_err(error::store)? else {
        return Ok(None);
    };
    let value = serde_json::from_slice(&rec.value).map_err(|e| error::corrupt(key, e))?;
    Ok(Some((value, rec.mod_revision)))
}

/// Decodes every record of a range read, with its revision.
pub fn decode_all<T: DeserializeOwned>(
    recs: Vec<berth_store::Record>,
) -> Result<Vec<(T, Revision)>, AwsError> {
    recs.into_iter()
        .map(|r| {
            serde_json::from_slice(&r.value)
                .map(|v| (v, r.mod_revision))
                .map_err(|e| error::corrupt(&r.key, e))
        })
        .collect()
}

/// Encodes a record.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain data (no maps with non-string keys), so this cannot fail.
    serde_json::to_vec(value).expect("records serialise")
}

/// Commits a transaction; `Ok(false)` when a compare failed (the caller re-reads and retries).
pub async fn commit(store: &dyn Store, txn: Txn) -> Result<bool, AwsError> {
    match store.txn(txn).await.map_err(error::store)? {
        TxnOutcome::Committed { .. } => Ok(true),
        TxnOutcome::Conflict { .. } => Ok(false),
    }
}

/// The compare-and-set loop's bookkeeping (see the module header).
pub struct Cas<'a> {
    store: &'a dyn Store,
    what: String,
    attempts: usize,
}

impl<'a> Cas<'a> {
    /// `what` names the contended records in the error, e.g. `cluster default`.
    pub fn new(store: &'a dyn Store, what: impl Into<String>) -> Self {
        Self { store, what: what.into(), attempts: 0 }
    }

    /// Starts a turn: pauses after a lost race, fails once every attempt is spent.
    pub async fn attempt(&mut self) -> Result<(), AwsError> {
        if self.attempts == CAS_ATTEMPTS {
            return Err(error::contention(&self.what));
        }
        if self.attempts > 0 {
            tokio::time::sleep(backoff(self.attempts)).await;
        }
        self.attempts += 1;
        Ok(())
    }

    /// Commits the turn's transaction; `Ok(false)`: a compare failed, go round again.
    pub async fn commit(&self, txn: Txn) -> Result<bool, AwsError> {
        commit(self.store, txn).await
    }

    /// [`Self::commit`], answering the revision the transaction committed at.
    pub async fn commit_at(&self, txn: Txn) -> Result<Option<Revision>, AwsError> {
        match self.store.txn(txn).await.map_err(error::store)? {
            TxnOutcome::Committed { revision } => Ok(Some(revision)),
            TxnOutcome::Conflict { .. } => Ok(None),
        }
    }
}

/// The pause before retry `n` (1-based): none for the first retry (a lost race is usually
/// over by then), then 0.25 ms doubling to [`MAX_BACKOFF`], each with up to half again of
/// random jitter so that contenders spread out.
fn backoff(n: usize) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let base = Duration::from_micros(250).saturating_mul(1 << (n - 2).min(10)).min(MAX_BACKOFF);
    let jitter = rand::random::<u64>() % (base.as_micros() as u64 / 2 + 1);
    base + Duration::from_micros(jitter)
}

/// Read-modify-write of one record: `f` edits it or refuses; a record it leaves unchanged is
/// not written. `Ok(None)` when the record does not exist.
pub async fn update<T, F>(
    store: &dyn Store,
    key: &str,
    what: &str,
    mut f: F,
) -> Result<Option<T>, AwsError>
where
    T: Serialize + DeserializeOwned + PartialEq + Clone,
    F: FnMut(&mut T) -> Result<(), AwsError>,
{
    let mut cas = Cas::new(store, what);
    loop {
        cas.attempt().await?;
        let Some((before, rev)) = get::<T>(store, key).await? else {
            return Ok(None);
        };
        let mut after = before.clone();
        f(&mut after)?;
        if after == before {
            return Ok(Some(after));
        }
        if cas.commit(Txn::new().when(key, rev).put(key, encode(&after))).await? {
            return Ok(Some(after));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap();
        (dir, Arc::new(s))
    }

    #[tokio::test]
    async fn update_edits_and_skips_unchanged_writes() {
        let (_d, s) = store();
        assert_eq!(update::<u32, _>(&*s, "k", "k", |_| Ok(())).await.unwrap(), None);
        s.txn(Txn::new().put("k", encode(&1u32))).await.unwrap();
        let before = s.revision().await.unwrap();
        assert_eq!(update::<u32, _>(&*s, "k", "k", |_| Ok(())).await.unwrap(), Some(1));
        assert_eq!(s.revision().await.unwrap(), before, "an unchanged record is not written");
        assert_eq!(
            update::<u32, _>(&*s, "k", "k", |v| {
                *v += 1;
                Ok(())
            })
            .await
            .unwrap(),
            Some(2)
        );
        assert_eq!(get::<u32>(&*s, "k").await.unwrap().unwrap().0, 2);
    }

    #[tokio::test]
    async fn update_refusal_writes_nothing() {
        let (_d, s) = store();
        s.txn(Txn::new().put("k", encode(&1u32))).await.unwrap();
        let e = update::<u32, _>(&*s, "k", "k", |_| Err(error::invalid("no"))).await.unwrap_err();
        assert_eq!(e.message, "no");
        assert_eq!(get::<u32>(&*s, "k").await.unwrap().unwrap().0, 1);
    }

    #[tokio::test]
    async fn concurrent_increments_are_all_kept() {
        let (_d, s) = store();
        s.txn(Txn::new().put("k", encode(&0u32))).await.unwrap();
        let mut joins = Vec::new();
        for _ in 0..16 {
            let s = s.clone();
            joins.push(tokio::spawn(async move {
                for _ in 0..5 {
                    update::<u32, _>(&*s, "k", "k", |v| {
                        *v += 1;
                        Ok(())
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        for j in joins {
            j.await.unwrap();
        }
        assert_eq!(get::<u32>(&*s, "k").await.unwrap().unwrap().0, 80);
    }

    #[tokio::test]
    async fn cas_reports_contention_after_the_last_attempt() {
        let (_d, s) = store();
        s.txn(Txn::new().put("k", encode(&0u32))).await.unwrap();
        let mut attempts = 0;
        let mut cas = Cas::new(&*s, "the test key");
        let e = loop {
            if let Err(e) = cas.attempt().await {
                break e;
            }
            attempts += 1;
            // Always compares against a revision the key never has.
            let txn = Txn::new().when("k", 999_999).put("k", encode(&1u32));
            assert!(!cas.commit(txn).await.unwrap());
        };
        assert_eq!(attempts, CAS_ATTEMPTS);
        assert!(e.message.contains("the test key"), "{}", e.message);
        assert_eq!(e.code, "ServerException");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert!(backoff(2) >= Duration::from_micros(250));
        assert!(backoff(3) >= Duration::from_micros(500));
        for n in 2..CAS_ATTEMPTS {
            assert!(backoff(n) <= MAX_BACKOFF + MAX_BACKOFF / 2);
        }
    }
}
