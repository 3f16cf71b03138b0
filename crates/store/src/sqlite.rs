//! The embedded SQLite backend of [`Store`].
//!
//! Invariants:
//! * **One writer.** Every write goes through a single dedicated OS thread
//!   (`berth-store-writer`) that owns the only write connection. Callers hand it their [`Txn`]
//!   over a bounded channel together with a oneshot for the reply; nothing else ever writes.
//!   Compares are therefore checked and operations applied with no interleaving at all, which
//!   is what makes compare-and-set sound.
//! * **Group commit.** The writer takes every request already queued (up to [`MAX_BATCH`]),
//!   applies them one after another inside ONE SQLite transaction — each txn's compares see
//!   the current state including earlier txns of the same batch; a txn whose compares all hold
//!   gets the next revision, one whose compare fails gets `Conflict` and writes nothing — then
//!   COMMITs once (one WAL fsync, `synchronous=FULL`) and only then replies to each caller. If
//!   the COMMIT fails, every txn of the batch gets the error and the in-memory revision is not
//!   advanced. A batch in which nothing committed is rolled back (no fsync).
//! * **Failures the writer survives.** An error of the kinds SQLite says may have rolled back
//!   the statement *or the whole transaction* (`SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_NOMEM`,
//!   `SQLITE_BUSY`, `SQLITE_INTERRUPT`; and `SQLITE_CORRUPT`) fails the whole batch, wherever
//!   it happens (an operation, the COMMIT): the writer issues the explicit `ROLLBACK` SQLite's
//!   documentation recommends (unless SQLite already ended the transaction), fails every txn
//!   of the batch with the error, publishes nothing, and takes the next batch. Should that
//!   ROLLBACK itself fail, the next batch rolls the stale transaction back before its
//!   `BEGIN`. Only errors confined to one txn's own data (a value too big, a constraint) fail
//!   that txn alone, rolled back to its savepoint.
//! * **Disk full.** A write that runs out of space fails with [`StoreError::DiskFull`], naming
//!   the database and the mount point of its filesystem ([`crate::space`]); so does an open
//!   on a full filesystem. Nothing of a failed batch is applied or published, reads keep
//!   working (WAL readers write nothing), commits that fit in WAL space already allocated
//!   still succeed, and the first batch after space returns commits normally: nothing is
//!   reopened. A checkpoint that cannot grow the database file fails quietly (SQLite ignores
//!   automatic checkpoint errors; the WAL keeps the frames) and is retried after the next
//!   commit. The writer logs the change into and out of the disk-full state once each.
//! * **Revision.** The current revision lives in `meta('revision')`, updated in the same SQLite
//!   transaction as the keys, so it survives restarts and never goes backwards (deletes
//!   included). Every committed txn (even one with no operations) takes exactly one revision.
//!   The writer re-reads it at the start of every batch (under the write lock), so even a second
//!   process writing the same file could not make revisions repeat.
//! * **Reads never touch the writer.** They run on a small pool of read-only connections (WAL
//!   mode: readers never block the writer and see the last committed snapshot). A read runs
//!   inline on the calling (tokio) thread: a point read or short range scan over a B-tree with
//!   cached prepared statements takes microseconds, far less than the cost of a
//!   `spawn_blocking` hop, so blocking the executor for it is the cheaper choice. Multi-key
//!   reads (`get_many`) run inside one read transaction, i.e. one snapshot.
//! * **Schema.** Versioned by `PRAGMA user_version`; [`MIGRATIONS`] are applied in order at
//!   open, one transaction each. A database newer than this code is refused
//!   ([`StoreError::SchemaTooNew`]).
//! * **Private files.** The database is created mode 0600 (SQLite gives its `-wal` and `-shm`
//!   files the database's mode), and an existing database, WAL or shared-memory file that group
//!   or others could read is made 0600 at open: the store holds credentials.
//! * **Shutdown.** Dropping the [`SqliteStore`] closes the channel; the writer finishes every
//!   request already queued, exits, and the drop joins it (so the file is closed on return).
//!
//! A `txn()` future dropped after its request was queued may still be applied: cancellation
//! does not un-send it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::{Change, Compare, Op, Range, Record, Revision, Store, StoreError, Txn, TxnOutcome};

/// True when `error`, met writing or opening the database at `db`, was for want of space:
/// `SQLITE_FULL`, or an I/O or open failure while the filesystem is full (growing the `-shm`
/// or creating the `-wal` reports ENOSPC that way).
fn for_want_of_space(db: &Path, error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => true,
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => crate::space::is_full(db),
        _ => false,
    }
}

/// `error` as [`StoreError::DiskFull`] when it was for want of space, else unchanged.
fn with_disk_full(db: &Path, error: StoreError) -> StoreError {
    match error {
        StoreError::Open { source, .. }
        | StoreError::Migration { source, .. }
        | StoreError::Write { source }
            if for_want_of_space(db, &source) =>
        {
            disk_full(db, source)
        }
        other => other,
    }
}

fn disk_full(db: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::DiskFull {
        path: db.to_path_buf(),
        filesystem: crate::space::mount_point(db),
        source,
    }
}

/// Errors after which SQLite may have rolled back the statement or the whole transaction, and
/// recommends an explicit ROLLBACK (sqlite.org/lang_transaction.html, "Response To Errors
/// Within A Transaction"); corruption likewise ends the batch.
fn ends_the_batch(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::OperationInterrupted
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
        )
    )
}

/// Creates the database file 0600 if absent, and takes group and other bits off the database
/// and its `-wal` and `-shm` files when present.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::metadata(&p) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                let mode = m.permissions().mode() & 0o700;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Schema migrations; entry `i` brings the database from version `i` to `i + 1`.
/// Append only: never edit a step that has shipped.
const MIGRATIONS: &[&str] = &[
    // v1: the key space and the global revision.
    "CREATE TABLE kv (
         key TEXT PRIMARY KEY,
         value BLOB NOT NULL,
         create_revision INTEGER NOT NULL,
         mod_revision INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER);
     INSERT INTO meta (name, value) VALUES ('revision', 0);",
];

/// Most txns the writer folds into one SQLite transaction (one fsync).
const MAX_BATCH: usize = 256;
/// Requests that may wait for the writer before `txn()` callers are made to wait (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Idle read connections kept for reuse; more are opened on demand and closed when returned.
const MAX_IDLE_READERS: usize = 16;
/// Bytes of the database file each connection maps (`PRAGMA mmap_size`): none. Measured with
/// 5,000 instances and 20,000 tasks (bench/scale.sh's RunTask phase), memory-mapped reads cost
/// more than they save while the file grows: every growth remaps each connection's view
/// (page faults and TLB shootdowns were 13% of the server's CPU), and the mapped pages count
/// in the server's RSS once per connection. Without: 3,250 tasks/s instead of 2,560, and
/// 320 MB RSS instead of 440.
const READER_MMAP_SIZE: i64 = 0;
/// Pages the writer keeps in its cache (`PRAGMA cache_size`, negative: KiB): the compares and
/// inserts of a busy cluster touch the same index pages over and over.
const WRITER_CACHE_KIB: i64 = 32 << 10;
/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SQL_GET: &str = "SELECT value, create_revision, mod_revision FROM kv WHERE key = ?1";
const SQL_RANGE_ASC: &str = "SELECT key, value, create_revision, mod_revision FROM kv \
                             WHERE key >= ?1 AND key < ?2 ORDER BY key ASC LIMIT ?3";
const SQL_RANGE_DESC: &str = "SELECT key, value, create_revision, mod_revision FROM kv \
                              WHERE key >= ?1 AND key < ?2 ORDER BY key DESC LIMIT ?3";
const SQL_COUNT: &str = "SELECT COUNT(*) FROM kv WHERE key >= ?1 AND key < ?2";
const SQL_REVISION: &str = "SELECT value FROM meta WHERE name = 'revision'";
const SQL_SET_REVISION: &str = "UPDATE meta SET value = ?1 WHERE name = 'revision'";
const SQL_MOD_REVISION: &str = "SELECT mod_revision FROM kv WHERE key = ?1";
const SQL_CREATE_REVISION: &str = "SELECT create_revision FROM kv WHERE key = ?1";
const SQL_PUT: &str = "INSERT INTO kv (key, value, create_revision, mod_revision) VALUES (?1, ?2, ?3, ?3) \
                       ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision";
const SQL_DELETE: &str = "DELETE FROM kv WHERE key = ?1";

/// Counters of the writer's work since open (cheap to read; for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions the writer has decided (committed, conflicted or failed).
    pub txns: u64,
    /// Transactions applied and durable.
    pub committed: u64,
    /// Transactions refused because a compare failed.
    pub conflicts: u64,
    /// SQLite COMMITs that wrote something: one WAL fsync each. Under concurrent load this is
    /// far below `committed` (group commit).
    pub batches: u64,
}

#[derive(Default)]
struct Counters {
    txns: AtomicU64,
    committed: AtomicU64,
    conflicts: AtomicU64,
    batches: AtomicU64,
}

/// One `txn()` call waiting for the writer.
struct Request {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnOutcome, StoreError>>,
}

/// The SQLite-backed [`Store`]. Share it behind an `Arc`; dropping the last handle stops the
/// writer thread after it has finished the requests already queued.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` only during drop.
    writer: Option<mpsc::Sender<Request>>,
    writer_thread: Option<JoinHandle<()>>,
    readers: ReaderPool,
    counters: Arc<Counters>,
    /// The revision of the last committed batch, published after its COMMIT.
    revisions: tokio::sync::watch::Receiver<Revision>,
    /// Each committed transaction's writes, published after its batch's COMMIT.
    changes: tokio::sync::broadcast::Sender<Arc<Change>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The schema version this code writes and understands.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Opens (creating if absent) the store at `path`, migrates its schema, and starts the
    /// writer thread. Blocking; call it at startup.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_migrations(path, MIGRATIONS).map_err(|e| with_disk_full(path, e))
    }

    fn open_with_migrations(path: &Path, migrations: &[&str]) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        make_private(path).map_err(|e| {
            open_err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot make the database files private: {e}")),
            ))
        })?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;

        // Refuse a newer database before touching it in any way.
        let supported = migrations.len() as u32;
        let found = user_version(&conn).map_err(open_err)?;
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }

        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("could not switch to WAL journal mode (got {mode})")),
            )));
        }
        // FULL in WAL mode: the WAL is fsync'd at every COMMIT, so an acknowledged txn is on disk.
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;

        migrate(&mut conn, migrations)?;
        conn.set_prepared_statement_cache_capacity(32);
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(open_err)?;
        conn.pragma_update(None, "mmap_size", READER_MMAP_SIZE).map_err(open_err)?;

        // Readers open the same file later; pin it so a change of working directory is harmless.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let readers = ReaderPool { path: path.clone(), idle: Mutex::new(Vec::new()) };
        // Open one reader now so a problem with read connections shows at startup.
        let first = readers.open().map_err(open_err)?;
        readers.put_back(first);

        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer_counters = counters.clone();
        let current: Revision =
            conn.query_row(SQL_REVISION, [], |row| u64_at(row, 0)).map_err(open_err)?;
        let (rev_tx, revisions) = tokio::sync::watch::channel(current);
        let (changes, _) = tokio::sync::broadcast::channel(crate::CHANGE_BUFFER);
        let writer_changes = changes.clone();
        let writer_path = path.clone();
        let writer_thread = std::thread::Builder::new()
            .name("berth-store-writer".into())
            .spawn(move || {
                writer_loop(conn, &writer_path, rx, &writer_counters, &rev_tx, &writer_changes)
            })
            .map_err(|e| {
                open_err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                    Some(format!("cannot start the writer thread: {e}")),
                ))
            })?;
        tracing::debug!(path = %path.display(), schema = supported, "store opened");
        Ok(Self {
            path,
            writer: Some(tx),
            writer_thread: Some(writer_thread),
            readers,
            counters,
            revisions,
            changes,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the database file so that nothing deleted or overwritten survives in it or in
    /// its WAL (`VACUUM`, then a truncating checkpoint): after replacing sensitive values.
    /// Blocking, and for startup: it waits for (and holds up) every other writer.
    pub fn scrub(&self) -> Result<(), StoreError> {
        self.try_scrub().map_err(|e| with_disk_full(&self.path, e))
    }

    fn try_scrub(&self) -> Result<(), StoreError> {
        let werr = |source| StoreError::Write { source };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(werr)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(werr)?;
        conn.execute_batch("VACUUM;").map_err(werr)?;
        let (busy, _, _): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(werr)?;
        if busy != 0 {
            return Err(werr(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("the WAL could not be truncated: a reader was busy".into()),
            )));
        }
        Ok(())
    }

    /// The writer's counters since open.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            txns: c.txns.load(Ordering::Relaxed),
            committed: c.committed.load(Ordering::Relaxed),
            conflicts: c.conflicts.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Close the idle readers first so the writer's connection is the last one: closing it
        // then checkpoints the WAL into the main file and removes it.
        self.readers.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
        // Closing the channel lets the writer finish what is queued and exit; joining it means
        // the file is closed when drop returns (a reopen in the same process sees a quiescent
        // file). Nobody can be awaiting a reply once the last handle is gone, so the queue
        // holds at most the requests of abandoned `txn()` futures: a batch or so.
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "store writer thread panicked");
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.readers.with(
            || format!("key {key:?}"),
            |conn| {
                let mut stmt = conn.prepare_cached(SQL_GET)?;
                stmt.query_row([key], |row| {
                    Ok(Record {
                        key: key.to_owned(),
                        value: Bytes::copy_from_slice(row.get_ref(0)?.as_blob()?),
                        create_revision: u64_at(row, 1)?,
                        mod_revision: u64_at(row, 2)?,
                    })
                })
                .optional()
            },
        )
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Record>, StoreError> {
        self.readers.with(
            || format!("{} keys", keys.len()),
            |conn| {
                // One read transaction: every key from the same snapshot.
                let tx = conn.transaction()?;
                let mut out = Vec::with_capacity(keys.len());
                {
                    let mut stmt = tx.prepare_cached(SQL_GET)?;
                    for key in keys {
                        let record = stmt
                            .query_row([key], |row| {
                                Ok(Record {
                                    key: key.clone(),
                                    value: Bytes::copy_from_slice(row.get_ref(0)?.as_blob()?),
                                    create_revision: u64_at(row, 1)?,
                                    mod_revision: u64_at(row, 2)?,
                                })
                            })
                            .optional()?;
                        out.extend(record);
                    }
                }
                tx.commit()?;
                Ok(out)
            },
        )
    }

    async fn range(&self, range: Range) -> Result<Vec<Record>, StoreError> {
        self.readers.with(
            || format!("range [{:?}, {:?})", range.start, range.end),
            |conn| {
                let sql = if range.reverse { SQL_RANGE_DESC } else { SQL_RANGE_ASC };
                let limit = i64::try_from(range.limit).unwrap_or(-1); // negative: no limit
                let mut stmt = conn.prepare_cached(sql)?;
                let rows =
                    stmt.query_map(rusqlite::params![range.start, range.end, limit], |row| {
                        Ok(Record {
                            key: row.get(0)?,
                            value: Bytes::copy_from_slice(row.get_ref(1)?.as_blob()?),
                            create_revision: u64_at(row, 2)?,
                            mod_revision: u64_at(row, 3)?,
                        })
                    })?;
                let mut out = Vec::with_capacity(range.limit.min(1024));
                for row in rows {
                    out.push(row?);
                }
                Ok(out)
            },
        )
    }

    async fn count(&self, start: &str, end: &str) -> Result<u64, StoreError> {
        self.readers.with(
            || format!("count [{start:?}, {end:?})"),
            |conn| conn.prepare_cached(SQL_COUNT)?.query_row([start, end], |row| u64_at(row, 0)),
        )
    }

    async fn txn(&self, mut txn: Txn) -> Result<TxnOutcome, StoreError> {
        let writer = self.writer.as_ref().ok_or(StoreError::WriterGone)?;
        let (fence, term) = crate::leadership::effective_fence(&txn);
        txn.fence = fence.clone();
        let (reply, answer) = oneshot::channel();
        writer.send(Request { txn, reply }).await.map_err(|_| StoreError::WriterGone)?;
        match answer.await.map_err(|_| StoreError::WriterGone)? {
            Err(StoreError::Fenced { .. }) if fence.is_some() => {
                Err(crate::leadership::refused(fence.as_ref().expect("checked"), term.as_ref()))
            }
            other => other,
        }
    }

    fn watch(&self) -> tokio::sync::watch::Receiver<Revision> {
        self.revisions.clone()
    }

    fn changes(&self) -> crate::ChangeFeed {
        crate::ChangeFeed::new(self.changes.subscribe())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.readers.with(
            || "revision".to_owned(),
            |conn| conn.prepare_cached(SQL_REVISION)?.query_row([], |row| u64_at(row, 0)),
        )
    }
}

/// Read-only connections for reuse. Taking one holds the mutex for a `Vec::pop` only.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(16);
        // Read the main file through a shared mapping instead of a pread + copy per page: about
        // twice the point-read throughput. (WAL frames are still read with read().)
        conn.pragma_update(None, "mmap_size", READER_MMAP_SIZE)?;
        Ok(conn)
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }

    /// Runs `read` on a pooled connection. A connection whose read failed is closed rather
    /// than reused; `what` names the read in the error (built only on failure).
    fn with<T>(
        &self,
        what: impl FnOnce() -> String,
        read: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let result = self.take().and_then(|mut conn| {
            let value = read(&mut conn)?;
            self.put_back(conn);
            Ok(value)
        });
        result.map_err(|source| StoreError::Read { what: what(), source })
    }
}

fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the schema up to `migrations.len()`, one transaction per step. Each step re-checks
/// the version under the write lock, so concurrent openers cannot apply a step twice.
fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let start =
        user_version(conn).map_err(|source| StoreError::Migration { version: 0, source })?;
    for (index, sql) in migrations.iter().enumerate().skip(start as usize) {
        let version = index as u32 + 1;
        let step = |conn: &mut Connection| -> rusqlite::Result<bool> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if user_version(&tx)? >= version {
                return Ok(false);
            }
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()?;
            Ok(true)
        };
        if step(conn).map_err(|source| StoreError::Migration { version, source })? {
            tracing::info!(version, "store schema migrated");
        }
    }
    Ok(())
}

/// The writer thread: receive a batch, apply it in one SQLite transaction, reply.
fn writer_loop(
    conn: Connection,
    path: &Path,
    mut rx: mpsc::Receiver<Request>,
    counters: &Counters,
    revisions: &tokio::sync::watch::Sender<Revision>,
    changes: &tokio::sync::broadcast::Sender<Arc<Change>>,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    // Whether the last batch that wrote or failed ran out of space (logged on change only).
    let mut full = false;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let results = apply_batch(&conn, path, &batch, counters);
        debug_assert_eq!(results.len(), batch.len());
        if let Some(Err(StoreError::DiskFull { filesystem, .. })) = results.first()
            && !full
        {
            full = true;
            tracing::error!(
                filesystem = %filesystem.display(),
                database = %path.display(),
                "store: the filesystem is full; writes fail (and are not applied) until space is freed there"
            );
        } else if full && results.iter().any(|r| matches!(r, Ok(TxnOutcome::Committed { .. }))) {
            full = false;
            tracing::info!(database = %path.display(), "store: writes succeed again");
        }
        // Publish before replying, so a caller that saw its txn commit also sees the revision
        // (and a cache following the changes has been sent the write).
        if changes.receiver_count() > 0 {
            for (request, result) in batch.iter().zip(&results) {
                if let Ok(TxnOutcome::Committed { revision }) = result {
                    let change = Change { revision: *revision, ops: request.txn.ops.clone() };
                    // No receiver left is not an error: nobody is caching.
                    let _ = changes.send(Arc::new(change));
                }
            }
        }
        if let Some(newest) = results
            .iter()
            .filter_map(|r| match r {
                Ok(TxnOutcome::Committed { revision }) => Some(*revision),
                _ => None,
            })
            .max()
        {
            revisions.send_if_modified(|r| {
                let changed = newest > *r;
                *r = (*r).max(newest);
                changed
            });
        }
        for (request, result) in batch.drain(..).zip(results) {
            // The caller may have given up waiting; the outcome stands regardless.
            let _ = request.reply.send(result);
        }
    }
    tracing::debug!("store writer stopping: all handles dropped");
}

/// Applies a batch and returns one result per request, in order. Only returns after COMMIT.
fn apply_batch(
    conn: &Connection,
    path: &Path,
    batch: &[Request],
    counters: &Counters,
) -> Vec<Result<TxnOutcome, StoreError>> {
    let results = match try_apply_batch(conn, batch) {
        Ok(results) => results,
        Err(error) => {
            // SQLite may have rolled the transaction back already (then there is nothing to
            // roll back); if not, its docs ask for an explicit ROLLBACK. Should that fail too,
            // the next batch retries it before its BEGIN.
            if !conn.is_autocommit()
                && let Err(rollback) = conn.execute_batch("ROLLBACK")
            {
                tracing::error!(%rollback, "store: rollback after failed batch failed");
            }
            let full = for_want_of_space(path, &error);
            if full {
                tracing::debug!(%error, txns = batch.len(), "store: write batch failed: disk full");
            } else {
                tracing::error!(%error, txns = batch.len(), "store: write batch failed; every txn in it fails");
            }
            batch
                .iter()
                .map(|_| {
                    let source = duplicate_error(&error);
                    Err(if full { disk_full(path, source) } else { StoreError::Write { source } })
                })
                .collect()
        }
    };
    let (mut committed, mut conflicts) = (0, 0);
    for result in &results {
        match result {
            Ok(TxnOutcome::Committed { .. }) => committed += 1,
            Ok(TxnOutcome::Conflict { .. }) => conflicts += 1,
            Err(_) => {}
        }
    }
    counters.txns.fetch_add(batch.len() as u64, Ordering::Relaxed);
    counters.committed.fetch_add(committed, Ordering::Relaxed);
    counters.conflicts.fetch_add(conflicts, Ordering::Relaxed);
    if committed > 0 {
        counters.batches.fetch_add(1, Ordering::Relaxed);
    }
    results
}

/// The batch proper. `Err` means the whole SQLite transaction is lost (I/O error, failed
/// COMMIT): the caller rolls back and fails every txn. A failure confined to one txn's
/// operations is rolled back to that txn's savepoint and reported for that txn alone.
fn try_apply_batch(
    conn: &Connection,
    batch: &[Request],
) -> rusqlite::Result<Vec<Result<TxnOutcome, StoreError>>> {
    if !conn.is_autocommit() {
        // The ROLLBACK after an earlier failed batch failed as well: end that transaction
        // now (it committed nothing), or this BEGIN could never succeed again.
        tracing::warn!("store: rolling back a transaction a failed batch left open");
        conn.execute_batch("ROLLBACK")?;
    }
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let base = conn.prepare_cached(SQL_REVISION)?.query_row([], |row| u64_at(row, 0))?;
    let mut revision = base;
    let mut results = Vec::with_capacity(batch.len());
    for Request { txn, .. } in batch {
        if let Some(f) = &txn.fence {
            let actual: Revision = conn
                .prepare_cached(SQL_CREATE_REVISION)?
                .query_row([&f.key], |row| u64_at(row, 0))
                .optional()?
                .unwrap_or(0);
            if actual != f.create_revision {
                results.push(Err(StoreError::Fenced {
                    key: f.key.clone(),
                    expected: f.create_revision,
                }));
                continue;
            }
        }
        if let Some(conflict) = check_compares(conn, txn)? {
            results.push(Ok(conflict));
            continue;
        }
        let next = revision + 1;
        // A single statement is atomic on its own; several need a savepoint to undo a partial txn.
        let savepoint = txn.ops.len() > 1;
        if savepoint {
            conn.prepare_cached("SAVEPOINT txn")?.execute([])?;
        }
        match apply_ops(conn, &txn.ops, next) {
            Ok(()) => {
                if savepoint {
                    conn.prepare_cached("RELEASE txn")?.execute([])?;
                }
                revision = next;
                results.push(Ok(TxnOutcome::Committed { revision: next }));
            }
            // SQLite rolled the whole transaction back, or may have (I/O error, disk full...):
            // the whole batch is rolled back and fails.
            Err(error) if conn.is_autocommit() || ends_the_batch(&error) => return Err(error),
            Err(error) => {
                if savepoint {
                    conn.prepare_cached("ROLLBACK TO txn")?.execute([])?;
                    conn.prepare_cached("RELEASE txn")?.execute([])?;
                }
                tracing::warn!(%error, "store: txn failed; rolled back alone");
                results.push(Err(StoreError::Write { source: error }));
            }
        }
    }
    if revision == base {
        // Nothing to make durable: conflicts (and failures) only.
        conn.prepare_cached("ROLLBACK")?.execute([])?;
        return Ok(results);
    }
    conn.prepare_cached(SQL_SET_REVISION)?.execute([to_sql(revision)?])?;
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(results)
}

/// The first failed compare of `txn` as a `Conflict`, or `None` when all hold.
fn check_compares(conn: &Connection, txn: &Txn) -> rusqlite::Result<Option<TxnOutcome>> {
    if txn.compares.is_empty() {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(SQL_MOD_REVISION)?;
    for Compare::ModRevision { key, revision } in &txn.compares {
        let actual: Revision = stmt.query_row([key], |row| u64_at(row, 0)).optional()?.unwrap_or(0);
        if actual != *revision {
            return Ok(Some(TxnOutcome::Conflict {
                key: key.clone(),
                expected: *revision,
                actual,
            }));
        }
    }
    Ok(None)
}

fn apply_ops(conn: &Connection, ops: &[Op], revision: Revision) -> rusqlite::Result<()> {
    for op in ops {
        match op {
            Op::Put { key, value } => {
                conn.prepare_cached(SQL_PUT)?.execute(rusqlite::params![
                    key,
                    &value[..],
                    to_sql(revision)?
                ])?;
            }
            Op::Delete { key } => {
                conn.prepare_cached(SQL_DELETE)?.execute([key])?;
            }
        }
    }
    Ok(())
}

/// A revision or count column: an INTEGER that is never negative.
fn u64_at(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Revision> {
    let value: i64 = row.get(index)?;
    Revision::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// A revision as SQLite's INTEGER.
fn to_sql(revision: Revision) -> rusqlite::Result<i64> {
    i64::try_from(revision).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// `rusqlite::Error` is not `Clone`; a batch failure must be reported to every txn in it.
fn duplicate_error(error: &rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = "CREATE TABLE extra (x INTEGER); INSERT INTO extra (x) VALUES (1);";

    fn raw(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    #[test]
    fn migrations_apply_in_order_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");

        drop(SqliteStore::open_with_migrations(&path, &[MIGRATIONS[0]]).unwrap());
        assert_eq!(user_version(&raw(&path)).unwrap(), 1);

        // Only the new step runs (re-running v1 would fail: its tables exist).
        drop(SqliteStore::open_with_migrations(&path, &[MIGRATIONS[0], V2]).unwrap());
        drop(SqliteStore::open_with_migrations(&path, &[MIGRATIONS[0], V2]).unwrap());
        let conn = raw(&path);
        assert_eq!(user_version(&conn).unwrap(), 2);
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM extra", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1, "v2 ran exactly once");
        drop(conn);

        // Code that knows only v1 refuses the v2 database, without touching it.
        match SqliteStore::open_with_migrations(&path, &[MIGRATIONS[0]]) {
            Err(StoreError::SchemaTooNew { found: 2, supported: 1 }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        assert_eq!(user_version(&raw(&path)).unwrap(), 2);
    }

    #[test]
    fn failed_migration_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(SqliteStore::open(&path).unwrap());
        let bad = "CREATE TABLE half (x INTEGER); THIS IS NOT SQL;";
        match SqliteStore::open_with_migrations(&path, &[MIGRATIONS[0], bad]) {
            Err(StoreError::Migration { version: 2, .. }) => {}
            other => panic!("expected Migration error, got {other:?}"),
        }
        let conn = raw(&path);
        assert_eq!(user_version(&conn).unwrap(), 1);
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "the failed step left nothing behind");
        drop(conn);
        // The good schema still opens.
        drop(SqliteStore::open(&path).unwrap());
    }

    fn request(txn: Txn) -> (Request, oneshot::Receiver<Result<TxnOutcome, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (Request { txn, reply }, answer)
    }

    #[test]
    fn a_transaction_a_failed_rollback_left_open_is_rolled_back_before_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = raw(&path);
        // As if a batch failed and its ROLLBACK failed too: a write transaction still open.
        conn.execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO kv VALUES ('stale', x'00', 7, 7); UPDATE meta SET value = 7;",
        )
        .unwrap();
        assert!(!conn.is_autocommit());
        let (req, _answer) = request(Txn::new().put("k", "v"));
        let results = apply_batch(&conn, &path, &[req], &Counters::default());
        assert!(matches!(results[..], [Ok(TxnOutcome::Committed { revision: 1 })]), "{results:?}");
        assert!(conn.is_autocommit());
        let stale: i64 = conn
            .query_row("SELECT COUNT(*) FROM kv WHERE key = 'stale'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stale, 0, "the stale transaction was rolled back, not committed");
    }

    #[test]
    fn errors_that_may_have_ended_the_transaction_end_the_batch() {
        let err = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_IOERR_SHMSIZE,
            rusqlite::ffi::SQLITE_NOMEM,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_INTERRUPT,
            rusqlite::ffi::SQLITE_CORRUPT,
        ] {
            assert!(ends_the_batch(&err(code)), "{code}");
        }
        for code in [rusqlite::ffi::SQLITE_TOOBIG, rusqlite::ffi::SQLITE_CONSTRAINT] {
            assert!(!ends_the_batch(&err(code)), "{code}");
        }
        // SQLITE_FULL is a full disk whatever the free space says now; an I/O error only
        // when the filesystem is full.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        assert!(for_want_of_space(&db, &err(rusqlite::ffi::SQLITE_FULL)));
        assert!(!for_want_of_space(&db, &err(rusqlite::ffi::SQLITE_IOERR_SHMSIZE)));
        match with_disk_full(&db, StoreError::Write { source: err(rusqlite::ffi::SQLITE_FULL) }) {
            StoreError::DiskFull { path, filesystem, .. } => {
                assert_eq!(path, db);
                assert!(dir.path().canonicalize().unwrap().starts_with(filesystem));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_error_keeps_sqlite_codes() {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        match duplicate_error(&e) {
            rusqlite::Error::SqliteFailure(code, None) => {
                assert_eq!(code.code, rusqlite::ErrorCode::DiskFull)
            }
            other => panic!("{other:?}"),
        }
    }
}
