//! Typed access to JSON records in the store, and the compare-and-set retry loop every
//! read-modify-write uses.

use berth_store::{Revision, Store, Txn, TxnOutcome};
use berth_wire::AwsError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error;

/// How many times a read-modify-write retries after losing a compare-and-set.
pub const CAS_ATTEMPTS: usize = 64;

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
