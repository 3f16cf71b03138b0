//! Berth's state store: an ordered key-value map with a global revision, compare-and-set
//! transactions and range reads, the interface etcd offers, so the same handlers and
//! controllers run on the embedded SQLite backend ([`SqliteStore`]) or on etcd
//! ([`EtcdStore`]; how its semantics map, and where they differ, is in its module header).
//!
//! Contract:
//! * Keys are UTF-8 strings ordered bytewise; callers lay out keys so that every listing is a
//!   range scan (`ecs/taskdefs/<family>/<revision:010>`), and keep secondary indexes as extra
//!   keys written in the same transaction. Nothing ever scans the whole store.
//! * Every successful write transaction bumps the store's revision by exactly one; each key
//!   written gets `mod_revision` = that revision. A key's `mod_revision` is its version for
//!   compare-and-set: a [`Compare::ModRevision`] of 0 means "the key must not exist".
//! * A transaction's compares are all checked first; only if every one holds are its
//!   operations applied, atomically. A failed compare applies nothing and returns
//!   [`TxnOutcome::Conflict`] naming the first key that failed, so the caller can re-read
//!   and retry: no writer can silently lose another's update.
//! * [`Store::txn`] returns only once the transaction is durable (fsync'd): an acknowledged
//!   write survives `kill -9`.
//! * Reads see a consistent snapshot of committed transactions.
//! * A [`View`] is a store over part of another's keys under names of its own (a prefix
//!   added and stripped, prefixes hidden), with every contract above; Berth keeps each AWS
//!   region's records apart with one ([`view`]).
//! * A full disk fails the writes that do not fit with [`StoreError::DiskFull`] (naming the
//!   filesystem), applying nothing of them; reads keep working, and writes succeed again as
//!   soon as space is freed, without reopening the store.
//! * A transaction may carry a [`Fence`] (set on it, or taken from the [`leadership::Term`]
//!   the calling task runs under, [`leadership::under`]): it is checked with its compares, in
//!   the same atomic step, and when it no longer holds nothing is applied and the call fails
//!   with [`StoreError::Fenced`]. This is how a deposed leader's controllers are kept from
//!   writing ([`leadership`]).
#![forbid(unsafe_code)]

mod etcd;
pub mod etcd_process;
pub mod etcd_tls;
pub mod leadership;
pub mod space;
mod sqlite;
pub mod view;

use async_trait::async_trait;
use bytes::Bytes;

pub use etcd::{DELIVERY_WAIT, ETCD_DEFAULT_MAX_TXN_OPS, EtcdConfig, EtcdStore};
pub use etcd_tls::EtcdTls;
pub use leadership::{AlwaysLeader, EtcdLeadership, Leadership, Term};
pub use sqlite::{SqliteStore, StoreStats};
pub use tokio::sync::broadcast::error::{RecvError, TryRecvError};
pub use view::{ChangeFeed, KeySpace, View};

/// The store's global revision: the number of write transactions ever committed.
pub type Revision = u64;

/// One stored key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Bytes,
    /// Revision of the transaction that created the key (unchanged by later updates).
    pub create_revision: Revision,
    /// Revision of the transaction that last wrote the key: its compare-and-set version.
    pub mod_revision: Revision,
}

/// A condition a transaction requires before it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals this; 0 means the key must be absent.
    ModRevision { key: String, revision: Revision },
}

/// A write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or replace.
    Put { key: String, value: Bytes },
    /// Remove the key if present (absent keys are not an error).
    Delete { key: String },
}

/// A fencing token: the transaction applies only while `key` exists with this
/// `create_revision` (the leader's election key, [`leadership`]). The key is in the backend's
/// own key space: never translated by a [`View`], and for etcd the full etcd key (outside
/// Berth's prefix, where elections live).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub create_revision: Revision,
}

/// An atomic, conditional batch of writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
    /// Checked with the compares; when it fails the call is [`StoreError::Fenced`]. `None`:
    /// the fence of the task's [`leadership::Term`], if it runs under one.
    pub fence: Option<Fence>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requires `key` to be at `revision` (0 = absent).
    pub fn when(mut self, key: impl Into<String>, revision: Revision) -> Self {
        self.compares.push(Compare::ModRevision { key: key.into(), revision });
        self
    }
    /// Puts `value` at `key`.
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.ops.push(Op::Put { key: key.into(), value: value.into() });
        self
    }
    /// Deletes `key`.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
    /// Applies only while `fence` holds.
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }
}

/// What became of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied and durable at this revision.
    Committed { revision: Revision },
    /// A compare failed; nothing was written.
    Conflict { key: String, expected: Revision, actual: Revision },
}

impl TxnOutcome {
    /// True when the transaction was applied.
    pub fn committed(&self) -> bool {
        matches!(self, TxnOutcome::Committed { .. })
    }
}

/// A range read: keys in `[start, end)` in key order, at most `limit` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: String,
    pub end: String,
    /// At most this many records; `usize::MAX` for no limit.
    pub limit: usize,
    /// Newest-first (descending key order) when true.
    pub reverse: bool,
}

impl Range {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &str) -> Self {
        Self {
            start: prefix.to_string(),
            end: prefix_end(prefix),
            limit: usize::MAX,
            reverse: false,
        }
    }
    /// At most `limit` records.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// Descending key order.
    pub fn reversed(mut self) -> Self {
        self.reverse = true;
        self
    }
}

/// The smallest key greater than every key with this prefix (etcd's "prefix end").
pub fn prefix_end(prefix: &str) -> String {
    // Keys are UTF-8; '\u{10FFFF}' sorts after every character a key can hold.
    format!("{prefix}\u{10FFFF}")
}

/// Errors of the store itself (I/O, corruption), never of the data's meaning.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("store schema migration to version {version} failed: {source}")]
    Migration { version: u32, source: rusqlite::Error },
    #[error(
        "store database is at schema version {found}, newer than this berth understands ({supported}); upgrade berth"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("store read of {what} failed: {source}")]
    Read { what: String, source: rusqlite::Error },
    #[error("store write failed: {source}")]
    Write { source: rusqlite::Error },
    /// The filesystem holding the database has no space left. What failed was not applied: a
    /// write is rolled back whole, an open leaves the database as it was.
    #[error(
        "no space left on the filesystem {} holding the store database {}: {source}",
        filesystem.display(),
        path.display()
    )]
    DiskFull {
        /// The database file.
        path: std::path::PathBuf,
        /// The mount point of its filesystem: where to free space.
        filesystem: std::path::PathBuf,
        source: rusqlite::Error,
    },
    #[error("the store's writer thread has stopped")]
    WriterGone,
    /// A write through a [`View`] named a key the view cannot see (a bug in the caller).
    #[error("key {key:?} is outside this view of the store")]
    KeyOutsideView { key: String },
    /// A store URL (`--store`) that does not parse.
    #[error("store {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// etcd failed a request (unreachable, no leader, timeout...). For a write, its outcome is
    /// unknown: re-read before retrying.
    #[error("etcd at {endpoints}: {what} failed: {source}")]
    Etcd { endpoints: String, what: String, source: Box<etcd_client::Error> },
    /// A TLS file of an `etcds://` store (`--etcd-ca`, `--etcd-cert`, `--etcd-key`) that
    /// cannot be read or is not PEM.
    #[error("etcd TLS file {}: {reason}", path.display())]
    EtcdTlsFile { path: std::path::PathBuf, reason: String },
    /// An etcd member refused the TLS handshake, or its certificate was not trusted.
    #[error("etcd at {endpoints}: {what} failed: TLS refused: {hint} ({detail})")]
    EtcdTlsRefused { endpoints: String, what: String, hint: &'static str, detail: String },
    /// etcd's NOSPACE alarm is raised (its backend quota is used up): writes fail, nothing of
    /// them applied, until space is reclaimed and the alarm disarmed.
    #[error(
        "etcd at {endpoints} is out of space ({message}); the write was not applied. Compact and defragment etcd (or raise its --quota-backend-bytes), then disarm the alarm with `etcdctl alarm disarm`"
    )]
    EtcdNoSpace { endpoints: String, message: String },
    /// A transaction larger than etcd accepts in one request; nothing was applied. Values are
    /// never split.
    #[error(
        "the write of key {key:?} ({size} bytes; {total} bytes in the whole transaction) exceeds etcd's request size limit (its --max-request-bytes, 1.5 MiB by default); nothing was applied"
    )]
    TooLarge { key: String, size: usize, total: usize },
    /// A transaction with more operations or compares than etcd accepts; nothing was applied.
    #[error(
        "a transaction of {ops} operations exceeds etcd's limit per transaction (its --max-txn-ops, 128 by default); nothing was applied. Run etcd with --max-txn-ops=1024"
    )]
    TooManyOps { ops: usize },
    /// A key in the store that is not UTF-8 (written by something other than Berth).
    #[error("store key {key:?} is not UTF-8")]
    NotUtf8 { key: String },
    /// The transaction's fence no longer holds: the leadership it was written under has
    /// ended (its election key is gone or was created again). Nothing was applied; the
    /// writer is no longer the leader and must stop and campaign again.
    #[error(
        "fenced write refused: this server no longer leads (election key {key:?} is not at create revision {expected}); nothing was applied"
    )]
    Fenced { key: String, expected: Revision },
}

/// The store interface. Implementations are cheap to clone behind an `Arc`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// One key, or `None`.
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError>;
    /// Several keys at once (missing keys are skipped), in the order asked.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Record>, StoreError>;
    /// A range of keys in key order (or reversed).
    async fn range(&self, range: Range) -> Result<Vec<Record>, StoreError>;
    /// Number of keys in a range.
    async fn count(&self, start: &str, end: &str) -> Result<u64, StoreError>;
    /// Applies a transaction atomically and durably, or reports the first failed compare.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;
    /// The current revision.
    async fn revision(&self) -> Result<Revision, StoreError>;
    /// A receiver that changes whenever a transaction commits, holding the newest committed
    /// revision. Level-triggered use: on a change, re-read what you watch; never rely on
    /// seeing every intermediate revision. (The SQLite backend sees the writes of this
    /// process; the etcd backend will feed it from etcd's watch.)
    fn watch(&self) -> tokio::sync::watch::Receiver<Revision>;
    /// The writes of every transaction committed after this call, in revision order, for
    /// caches kept in step with the store (etcd's watch with values). Level-triggered use:
    /// build the cache from a range read taken after subscribing, then apply each change
    /// whose revision is newer than the key's `mod_revision` in that read. A receiver more
    /// than [`CHANGE_BUFFER`] transactions behind gets `RecvError::Lagged` and must rebuild
    /// from a fresh read; nothing else is ever skipped.
    fn changes(&self) -> ChangeFeed;
}

/// The writes of one committed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The transaction's revision: the `mod_revision` of every key it put.
    pub revision: Revision,
    pub ops: Vec<Op>,
}

/// How many committed transactions a [`Store::changes`] receiver may fall behind before it
/// lags. The channel keeps the last this many changes, values included, in memory whether or
/// not anyone still needs them (a RunTask commit of 10 tasks is about 50 KB), so it is sized
/// for seconds of backlog of in-process followers, not minutes: a follower that lags rebuilds
/// from the store, which is always correct, only slower.
pub const CHANGE_BUFFER: usize = 2 * 1024;
