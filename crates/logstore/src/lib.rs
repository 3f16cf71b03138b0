//! Berth's log store: the data plane behind the CloudWatch Logs API (issue #15).
//!
//! Storage choice: a SQLite file of its own (`logs.db` in the server's data directory), apart
//! from the control plane's `berth.db`, so that chatty containers neither bloat nor slow the
//! state store, and so that the retention sweep's deletes never contend with the control
//! plane's compare-and-set writer. SQLite is already in the tree (rusqlite, bundled), gives
//! ordered B-trees (the time index), transactions and crash safety for free:
//! * WAL journal, `synchronous=FULL`: a call that returned `Ok` is on disk and survives
//!   `kill -9` (and power loss); one PutLogEvents batch is one transaction (one fsync);
//! * events live in one `WITHOUT ROWID` table keyed `(stream, timestamp, seq)`: the key *is*
//!   the time index (no second copy of it), a stream's events are stored sorted by time
//!   whatever order they arrived in, and `seq` (a per-stream counter) keeps equal timestamps in
//!   arrival order. A row is the message text plus three integers;
//! * one connection behind a mutex: calls are short (a page is at most 10,000 events or 1 MB)
//!   and the API is synchronous; callers on an async runtime run it in `spawn_blocking`.
//!
//! Contract:
//! * groups are per region, streams per group; names are unique where they live
//!   ([`LogStoreError::AlreadyExists`] / [`LogStoreError::NotFound`] name the resource);
//! * [`LogStore::put_events`] stores the accepted events of a batch (see [`ingest`]);
//! * [`LogStore::get_events`] pages one stream forward or backward by time with opaque tokens,
//!   as GetLogEvents does: the forward token of the last page comes back unchanged when there
//!   is nothing newer, so a paginator stops and a follower can poll with it;
//! * [`LogStore::filter_events`] walks a group's streams interleaved in (timestamp, stream,
//!   seq) order, applies a [`pattern::Pattern`], and hands back a token to resume after the last
//!   event it looked at; event ids are stable, so a poller (`aws logs tail --follow`) can
//!   de-duplicate;
//! * [`LogStore::sweep_retention`] deletes the events older than their group's retention;
//! * metric filters ([`metric_filter`]) live with their group (at most
//!   [`metric_filter::MAX_FILTERS_PER_GROUP`], deleted with it); the ingest paths
//!   ([`LogStore::put_events_metered`], [`LogStore::ship_metered`]) answer the datapoints the
//!   group's filters make of exactly the events they stored, for the caller to publish.

pub mod ingest;
pub mod metric_filter;
mod metric_filter_store;
pub mod pattern;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

pub use metric_filter::{Datum, MetricFilter, Transformation};
pub use pattern::{Pattern, PatternError};

/// A failed log store call.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// `what` names the resource: "The specified log group does not exist."
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Bad input (a token that is not one of ours...): the message names it.
    #[error("{0}")]
    InvalidParameter(String),
    /// A quota (100 metric filters per group...): the message names it.
    #[error("{0}")]
    LimitExceeded(String),
    #[error("log store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

type Result<T> = std::result::Result<T, LogStoreError>;

/// A log group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub created_ms: i64,
    pub retention_days: Option<i32>,
    pub stored_bytes: i64,
    /// How many metric filters it has.
    pub metric_filters: i64,
}

/// A log stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub name: String,
    pub created_ms: i64,
    pub first_event_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
    pub last_ingestion_ms: Option<i64>,
    pub stored_bytes: i64,
    /// How many batches were stored (the next upload sequence token).
    pub next_seq: i64,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub timestamp_ms: i64,
    pub ingestion_ms: i64,
    pub message: String,
}

/// An event found by [`LogStore::filter_events`].
#[derive(Debug, Clone, PartialEq)]
pub struct FoundEvent {
    pub stream: String,
    pub event: Event,
    /// Stable for as long as the event is stored.
    pub id: String,
}

/// How [`LogStore::describe_streams`] orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOrder {
    Name,
    LastEventTime,
}

/// A GetLogEvents query.
#[derive(Debug, Clone, Default)]
pub struct GetQuery {
    pub start_ms: Option<i64>,
    /// Exclusive.
    pub end_ms: Option<i64>,
    pub token: Option<String>,
    pub limit: usize,
    pub start_from_head: bool,
}

/// A GetLogEvents answer.
#[derive(Debug, Clone)]
pub struct GetPage {
    /// In chronological order.
    pub events: Vec<Event>,
    pub forward_token: String,
    pub backward_token: String,
}

/// A FilterLogEvents query.
#[derive(Debug, Clone)]
pub struct FilterQuery<'a> {
    pub stream_names: Option<&'a [String]>,
    pub stream_prefix: Option<&'a str>,
    pub start_ms: Option<i64>,
    /// Inclusive.
    pub end_ms: Option<i64>,
    pub pattern: &'a Pattern,
    pub token: Option<&'a str>,
    pub limit: usize,
}

/// A FilterLogEvents answer.
#[derive(Debug, Clone)]
pub struct FilterPage {
    pub events: Vec<FoundEvent>,
    /// `None`: nothing more to look at (now).
    pub next_token: Option<String>,
    pub searched_streams: Vec<String>,
}

/// A GetLogEvents page is at most this many bytes of events (as AWS: 1 MB).
pub const MAX_PAGE_BYTES: usize = 1_048_576;
/// FilterLogEvents looks at most this many events per call before answering with a token.
pub const FILTER_SCAN_BUDGET: usize = 100_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    retention_days INTEGER,
    UNIQUE (region, name)
);
CREATE TABLE IF NOT EXISTS group_tags (
    group_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (group_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    first_event_ms INTEGER,
    last_event_ms INTEGER,
    last_ingestion_ms INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 1,
    batches INTEGER NOT NULL DEFAULT 0,
    -- The log driver's resume point, stored with the events it follows (`ship`).
    cursor TEXT,
    UNIQUE (group_id, name)
);
CREATE TABLE IF NOT EXISTS events (
    stream_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ingest INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (stream_id, ts, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metric_filters (
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    pattern TEXT NOT NULL,
    metric_name TEXT NOT NULL,
    metric_namespace TEXT NOT NULL,
    metric_value TEXT NOT NULL,
    default_value REAL,
    -- A JSON object: dimension name -> field reference.
    dimensions TEXT NOT NULL,
    unit TEXT,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, name)
) WITHOUT ROWID;
";

/// The log store (see the module header).
pub struct LogStore {
    conn: Mutex<Connection>,
}

fn group_missing() -> LogStoreError {
    LogStoreError::NotFound("The specified log group does not exist.".into())
}
fn stream_missing() -> LogStoreError {
    LogStoreError::NotFound("The specified log stream does not exist.".into())
}
fn bad_token() -> LogStoreError {
    LogStoreError::InvalidParameter("nextToken: the token is not one this service issued.".into())
}

impl LogStore {
    /// Opens (creating) the store file.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction behind (rusqlite
        // rolls back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn group_id(c: &Connection, region: &str, group: &str) -> Result<(i64, Option<i32>)> {
        c.query_row(
            "SELECT id, retention_days FROM groups WHERE region = ?1 AND name = ?2",
            params![region, group],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(group_missing)
    }

    fn stream_id(c: &Connection, group_id: i64, stream: &str) -> Result<i64> {
        c.query_row(
            "SELECT id FROM streams WHERE group_id = ?1 AND name = ?2",
            params![group_id, stream],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(stream_missing)
    }

    /// CreateLogGroup.
    pub fn create_group(
        &self,
        region: &str,
        name: &str,
        now_ms: i64,
        tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO groups (region, name, created_ms) VALUES (?1, ?2, ?3)",
            params![region, name, now_ms],
        )?;
        if n == 0 {
            return Err(LogStoreError::AlreadyExists(
                "The specified log group already exists".into(),
            ));
        }
        let id = tx.last_insert_rowid();
        for (k, v) in tags {
            tx.execute("INSERT OR REPLACE INTO group_tags VALUES (?1, ?2, ?3)", params![id, k, v])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// DeleteLogGroup: the group, its streams, events and tags.
    pub fn delete_group(&self, region: &str, name: &str) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let (id, _) = Self::group_id(&tx, region, name)?;
        tx.execute(
            "DELETE FROM events WHERE stream_id IN (SELECT id FROM streams WHERE group_id = ?1)",
            [id],
        )?;
        tx.execute("DELETE FROM streams WHERE group_id = ?1", [id])?;
        tx.execute("DELETE FROM group_tags WHERE group_id = ?1", [id])?;
        tx.execute("DELETE FROM metric_filters WHERE group_id = ?1", [id])?;
        tx.execute("DELETE FROM groups WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// One group, if it exists.
    pub fn group(&self, region: &str, name: &str) -> Result<Option<Group>> {
        let c = self.conn();
        Ok(Self::groups_where(&c, region, "AND g.name = ?2", name, 0, 1)?.pop())
    }

    fn groups_where(
        c: &Connection,
        region: &str,
        cond: &str,
        arg: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Group>> {
        let sql = format!(
            "SELECT g.name, g.created_ms, g.retention_days,
                    (SELECT COALESCE(SUM(stored_bytes), 0) FROM streams s WHERE s.group_id = g.id),
                    (SELECT COUNT(*) FROM metric_filters f WHERE f.group_id = g.id)
             FROM groups g WHERE g.region = ?1 {cond} ORDER BY g.name LIMIT ?3 OFFSET ?4"
        );
        let mut st = c.prepare_cached(&sql)?;
        let rows = st.query_map(params![region, arg, limit as i64, offset as i64], |r| {
            Ok(Group {
                name: r.get(0)?,
                created_ms: r.get(1)?,
                retention_days: r.get(2)?,
                stored_bytes: r.get(3)?,
                metric_filters: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// DescribeLogGroups: by name, those starting with `prefix` (or containing `pattern`,
    /// case-insensitively), from `offset`; `limit + 1` are read so the caller can tell
    /// whether more follow.
    pub fn describe_groups(
        &self,
        region: &str,
        prefix: Option<&str>,
        pattern: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Group>> {
        let c = self.conn();
        match (prefix, pattern) {
            (Some(p), _) => Self::groups_where(
                &c,
                region,
                "AND substr(g.name, 1, length(?2)) = ?2",
                p,
                offset,
                limit,
            ),
            (None, Some(p)) => Self::groups_where(
                &c,
                region,
                "AND instr(lower(g.name), lower(?2)) > 0",
                p,
                offset,
                limit,
            ),
            (None, None) => Self::groups_where(&c, region, "AND ?2 = ?2", "", offset, limit),
        }
    }

    /// PutRetentionPolicy / DeleteRetentionPolicy (`None`).
    pub fn set_retention(&self, region: &str, name: &str, days: Option<i32>) -> Result<()> {
        let c = self.conn();
        let n = c.execute(
            "UPDATE groups SET retention_days = ?3 WHERE region = ?1 AND name = ?2",
            params![region, name, days],
        )?;
        if n == 0 {
            return Err(group_missing());
        }
        Ok(())
    }

    /// Adds or replaces tags on a group.
    pub fn tag_group(
        &self,
        region: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let (id, _) = Self::group_id(&tx, region, name)?;
        for (k, v) in tags {
            tx.execute("INSERT OR REPLACE INTO group_tags VALUES (?1, ?2, ?3)", params![id, k, v])?;
        }
        let count: i64 =
            tx.query_row("SELECT COUNT(*) FROM group_tags WHERE group_id = ?1", [id], |r| {
                r.get(0)
            })?;
        if count > 50 {
            return Err(LogStoreError::InvalidParameter(format!(
                "tags: a log group may hold at most 50 tags; this would make it {count}."
            )));
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes tags from a group (absent keys are ignored).
    pub fn untag_group(&self, region: &str, name: &str, keys: &[String]) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let (id, _) = Self::group_id(&tx, region, name)?;
        for k in keys {
            tx.execute("DELETE FROM group_tags WHERE group_id = ?1 AND key = ?2", params![id, k])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A group's tags.
    pub fn group_tags(&self, region: &str, name: &str) -> Result<BTreeMap<String, String>> {
        let c = self.conn();
        let (id, _) = Self::group_id(&c, region, name)?;
        let mut st = c.prepare_cached("SELECT key, value FROM group_tags WHERE group_id = ?1")?;
        let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// CreateLogStream.
    pub fn create_stream(&self, region: &str, group: &str, name: &str, now_ms: i64) -> Result<()> {
        let c = self.conn();
        let (gid, _) = Self::group_id(&c, region, group)?;
        let n = c.execute(
            "INSERT OR IGNORE INTO streams (group_id, name, created_ms) VALUES (?1, ?2, ?3)",
            params![gid, name, now_ms],
        )?;
        if n == 0 {
            return Err(LogStoreError::AlreadyExists(
                "The specified log stream already exists".into(),
            ));
        }
        Ok(())
    }

    /// DeleteLogStream: the stream and its events.
    pub fn delete_stream(&self, region: &str, group: &str, name: &str) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let (gid, _) = Self::group_id(&tx, region, group)?;
        let sid = Self::stream_id(&tx, gid, name)?;
        tx.execute("DELETE FROM events WHERE stream_id = ?1", [sid])?;
        tx.execute("DELETE FROM streams WHERE id = ?1", [sid])?;
        tx.commit()?;
        Ok(())
    }

    /// DescribeLogStreams: `limit` streams from `offset`, in `order`.
    #[allow(clippy::too_many_arguments)]
    pub fn describe_streams(
        &self,
        region: &str,
        group: &str,
        prefix: Option<&str>,
        order: StreamOrder,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Stream>> {
        let c = self.conn();
        let (gid, _) = Self::group_id(&c, region, group)?;
        let dir = if descending { "DESC" } else { "ASC" };
        let order_by = match order {
            StreamOrder::Name => format!("name {dir}"),
            // Streams without events sort first ascending, as having the oldest last event.
            StreamOrder::LastEventTime => {
                format!("COALESCE(last_event_ms, -1) {dir}, name {dir}")
            }
        };
        let sql = format!(
            "SELECT name, created_ms, first_event_ms, last_event_ms, last_ingestion_ms,
                    stored_bytes, batches
             FROM streams WHERE group_id = ?1 AND substr(name, 1, length(?2)) = ?2
             ORDER BY {order_by} LIMIT ?3 OFFSET ?4"
        );
        let mut st = c.prepare_cached(&sql)?;
        let rows =
            st.query_map(params![gid, prefix.unwrap_or(""), limit as i64, offset as i64], |r| {
                Ok(Stream {
                    name: r.get(0)?,
                    created_ms: r.get(1)?,
                    first_event_ms: r.get(2)?,
                    last_event_ms: r.get(3)?,
                    last_ingestion_ms: r.get(4)?,
                    stored_bytes: r.get(5)?,
                    next_seq: r.get::<_, i64>(6)? + 1,
                })
            })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The group's retention, for checking a batch ([`ingest::check_batch`]) before
    /// [`LogStore::put_events`]; fails when the group or stream does not exist.
    pub fn stream_retention(&self, region: &str, group: &str, stream: &str) -> Result<Option<i32>> {
        let c = self.conn();
        let (gid, retention) = Self::group_id(&c, region, group)?;
        Self::stream_id(&c, gid, stream)?;
        Ok(retention)
    }

    /// Stores `events` (any order) in one transaction; returns the stream's next sequence
    /// token. Durable once it returns `Ok`.
    pub fn put_events(
        &self,
        region: &str,
        group: &str,
        stream: &str,
        events: &[(i64, &str)],
        now_ms: i64,
    ) -> Result<i64> {
        Ok(self.put_events_metered(region, group, stream, events, now_ms)?.0)
    }

    /// [`LogStore::put_events`], and the datapoints the group's metric filters make of the
    /// stored events.
    pub fn put_events_metered(
        &self,
        region: &str,
        group: &str,
        stream: &str,
        events: &[(i64, &str)],
        now_ms: i64,
    ) -> Result<(i64, Vec<Datum>)> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let (gid, _) = Self::group_id(&tx, region, group)?;
        let sid = Self::stream_id(&tx, gid, stream)?;
        let batches = Self::insert(&tx, sid, events, now_ms)?;
        let data = Self::metric_data(&tx, gid, events)?;
        tx.commit()?;
        Ok((batches + 1, data))
    }

    /// Inserts `events` into stream `sid` (sorted by time, after its earlier events of equal
    /// time) and updates the stream's figures; returns its batch count.
    fn insert(tx: &Connection, sid: i64, events: &[(i64, &str)], now_ms: i64) -> Result<i64> {
        let mut seq: i64 =
            tx.query_row("SELECT next_seq FROM streams WHERE id = ?1", [sid], |r| r.get(0))?;
        let mut sorted: Vec<&(i64, &str)> = events.iter().collect();
        sorted.sort_by_key(|e| e.0);
        let mut bytes = 0i64;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO events (stream_id, ts, seq, ingest, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (ts, msg) in &sorted {
                ins.execute(params![sid, ts, seq, now_ms, msg])?;
                seq += 1;
                bytes += (msg.len() + ingest::EVENT_OVERHEAD) as i64;
            }
        }
        let (first, last) = match (sorted.first(), sorted.last()) {
            (Some(f), Some(l)) => (Some(f.0), Some(l.0)),
            _ => (None, None),
        };
        tx.execute(
            "UPDATE streams SET next_seq = ?2, stored_bytes = stored_bytes + ?3,
                 first_event_ms = CASE WHEN ?4 IS NULL THEN first_event_ms
                     ELSE MIN(COALESCE(first_event_ms, ?4), ?4) END,
                 last_event_ms = CASE WHEN ?5 IS NULL THEN last_event_ms
                     ELSE MAX(COALESCE(last_event_ms, ?5), ?5) END,
                 last_ingestion_ms = ?6, batches = batches + 1
             WHERE id = ?1",
            params![sid, seq, bytes, first, last, now_ms],
        )?;
        let batches: i64 =
            tx.query_row("SELECT batches FROM streams WHERE id = ?1", [sid], |r| r.get(0))?;
        Ok(batches)
    }

    /// The `awslogs` log driver's path: makes sure the group (when `create_group`) and the
    /// stream (when `create_stream`) exist, stores the events CloudWatch would accept (others are dropped: the
    /// driver has no one to tell) and `cursor` with them in one transaction, and answers the
    /// stream's cursor. A missing group without `create_group`, or stream without
    /// `create_stream`, is [`LogStoreError::NotFound`] (nothing is stored).
    #[allow(clippy::too_many_arguments)]
    pub fn ship(
        &self,
        region: &str,
        group: &str,
        stream: &str,
        create_group: bool,
        create_stream: bool,
        events: &[(i64, &str)],
        cursor: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<String>> {
        let (cursor, _) = self.ship_metered(
            region,
            group,
            stream,
            create_group,
            create_stream,
            events,
            cursor,
            now_ms,
        )?;
        Ok(cursor)
    }

    /// [`LogStore::ship`], and the datapoints the group's metric filters make of the stored
    /// events.
    #[allow(clippy::too_many_arguments)]
    pub fn ship_metered(
        &self,
        region: &str,
        group: &str,
        stream: &str,
        create_group: bool,
        create_stream: bool,
        events: &[(i64, &str)],
        cursor: Option<&str>,
        now_ms: i64,
    ) -> Result<(Option<String>, Vec<Datum>)> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        if create_group {
            tx.execute(
                "INSERT OR IGNORE INTO groups (region, name, created_ms) VALUES (?1, ?2, ?3)",
                params![region, group, now_ms],
            )?;
        }
        let (gid, retention) = Self::group_id(&tx, region, group)?;
        if create_stream {
            tx.execute(
                "INSERT OR IGNORE INTO streams (group_id, name, created_ms) VALUES (?1, ?2, ?3)",
                params![gid, stream, now_ms],
            )?;
        }
        let sid = Self::stream_id(&tx, gid, stream)?;
        let mut data = vec![];
        if !events.is_empty() {
            let kept: Vec<(i64, &str)> = match ingest::check_batch(events, retention, now_ms) {
                Ok(v) => v.accepted.iter().map(|i| events[*i]).collect(),
                // Over a day apart (a driver that was down long): judge each event alone.
                Err(_) => events
                    .iter()
                    .filter(|e| {
                        ingest::check_batch(std::slice::from_ref(*e), retention, now_ms)
                            .is_ok_and(|v| !v.accepted.is_empty())
                    })
                    .copied()
                    .collect(),
            };
            Self::insert(&tx, sid, &kept, now_ms)?;
            data = Self::metric_data(&tx, gid, &kept)?;
        }
        if let Some(cur) = cursor {
            tx.execute("UPDATE streams SET cursor = ?2 WHERE id = ?1", params![sid, cur])?;
        }
        let stored: Option<String> =
            tx.query_row("SELECT cursor FROM streams WHERE id = ?1", [sid], |r| r.get(0))?;
        tx.commit()?;
        Ok((stored, data))
    }

    /// GetLogEvents (see the module header).
    pub fn get_events(
        &self,
        region: &str,
        group: &str,
        stream: &str,
        q: &GetQuery,
    ) -> Result<GetPage> {
        let c = self.conn();
        let (gid, _) = Self::group_id(&c, region, group)?;
        let sid = Self::stream_id(&c, gid, stream)?;
        let (forward, at) = match q.token.as_deref() {
            Some(t) => parse_get_token(t)?,
            None if q.start_from_head => (true, Pos::MIN),
            None => (false, Pos::MAX),
        };
        let start = q.start_ms.unwrap_or(i64::MIN);
        let end = q.end_ms.unwrap_or(i64::MAX);
        let sql = if forward {
            "SELECT ts, seq, ingest, message FROM events WHERE stream_id = ?1
               AND (ts, seq) > (?2, ?3) AND ts >= ?4 AND ts < ?5 ORDER BY ts, seq LIMIT ?6"
        } else {
            "SELECT ts, seq, ingest, message FROM events WHERE stream_id = ?1
               AND (ts, seq) < (?2, ?3) AND ts >= ?4 AND ts < ?5
               ORDER BY ts DESC, seq DESC LIMIT ?6"
        };
        let mut st = c.prepare_cached(sql)?;
        let mut rows = st.query(params![sid, at.ts, at.seq, start, end, q.limit as i64])?;
        let mut got: Vec<(Pos, Event)> = vec![];
        let mut bytes = 0;
        while let Some(r) = rows.next()? {
            let e = Event { timestamp_ms: r.get(0)?, ingestion_ms: r.get(2)?, message: r.get(3)? };
            bytes += e.message.len() + ingest::EVENT_OVERHEAD;
            if bytes > MAX_PAGE_BYTES && !got.is_empty() {
                break;
            }
            got.push((Pos { ts: e.timestamp_ms, seq: r.get(1)? }, e));
        }
        if !forward {
            got.reverse();
        }
        let (forward_token, backward_token) = match (got.first(), got.last()) {
            (Some((first, _)), Some((last, _))) => (token('f', *last), token('b', *first)),
            // Nothing newer: the same forward token comes back (a paginator stops on it),
            // and the backward token reads what lies before.
            _ if forward => {
                (token('f', at), token('b', Pos { ts: at.ts, seq: at.seq.saturating_add(1) }))
            }
            // Nothing older: reading forward from the start finds what lies after.
            _ => (token('f', Pos::MIN), token('b', at)),
        };
        Ok(GetPage {
            events: got.into_iter().map(|(_, e)| e).collect(),
            forward_token,
            backward_token,
        })
    }

    /// FilterLogEvents over a group (see the module header).
    pub fn filter_events(
        &self,
        region: &str,
        group: &str,
        q: &FilterQuery<'_>,
    ) -> Result<FilterPage> {
        let c = self.conn();
        let (gid, _) = Self::group_id(&c, region, group)?;
        let mut streams: Vec<(i64, String)> = {
            let mut st = c.prepare_cached(
                "SELECT id, name FROM streams WHERE group_id = ?1 AND substr(name, 1, length(?2)) = ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![gid, q.stream_prefix.unwrap_or("")], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        if let Some(names) = q.stream_names {
            streams.retain(|(_, n)| names.contains(n));
        }
        let mut cursor = match q.token {
            Some(t) => parse_filter_token(t)?,
            None => FilterPos { ts: i64::MIN, stream: i64::MIN, seq: i64::MIN },
        };
        let start = q.start_ms.unwrap_or(i64::MIN);
        let end = q.end_ms.unwrap_or(i64::MAX);
        let names: BTreeMap<i64, &str> = streams.iter().map(|(i, n)| (*i, n.as_str())).collect();
        let mut found = vec![];
        let mut scanned = 0usize;
        let mut bytes = 0usize;
        const BATCH: i64 = 500;
        let mut st = c.prepare_cached(
            "SELECT ts, seq, ingest, message FROM events WHERE stream_id = ?1
               AND (ts, seq) > (?2, ?3) AND ts >= ?4 AND ts <= ?5 ORDER BY ts, seq LIMIT ?6",
        )?;
        loop {
            // The next rows of every stream after the cursor, merged in (ts, stream, seq) order;
            // only rows up to the smallest last row of a stream that filled its batch are sure
            // to have no unseen row of another stream before them.
            let mut batch: Vec<(FilterPos, Event)> = vec![];
            let mut cut: Option<FilterPos> = None;
            for (sid, _) in &streams {
                // Rows of this stream after the cursor in the merged order.
                let (after_ts, after_seq) = match sid.cmp(&cursor.stream) {
                    std::cmp::Ordering::Greater => (cursor.ts, i64::MIN),
                    std::cmp::Ordering::Less => (cursor.ts, i64::MAX),
                    std::cmp::Ordering::Equal => (cursor.ts, cursor.seq),
                };
                let mut rows = st.query(params![sid, after_ts, after_seq, start, end, BATCH])?;
                let mut n = 0;
                let mut last = None;
                while let Some(r) = rows.next()? {
                    let p = FilterPos { ts: r.get(0)?, stream: *sid, seq: r.get(1)? };
                    let e =
                        Event { timestamp_ms: p.ts, ingestion_ms: r.get(2)?, message: r.get(3)? };
                    batch.push((p, e));
                    last = Some(p);
                    n += 1;
                }
                if n == BATCH {
                    let l = last.expect("a full batch has a last row");
                    cut = Some(cut.map_or(l, |c: FilterPos| c.min(l)));
                }
            }
            if batch.is_empty() {
                return Ok(FilterPage {
                    events: found,
                    next_token: None,
                    searched_streams: streams.into_iter().map(|(_, n)| n).collect(),
                });
            }
            batch.sort_by_key(|(p, _)| *p);
            if let Some(cut) = cut {
                batch.retain(|(p, _)| *p <= cut);
            }
            for (p, e) in batch {
                cursor = p;
                scanned += 1;
                if q.pattern.matches(&e.message) {
                    bytes += e.message.len() + ingest::EVENT_OVERHEAD;
                    found.push(FoundEvent {
                        stream: names.get(&p.stream).copied().unwrap_or_default().to_string(),
                        id: format!(
                            "{:020}{:010}{:010}",
                            p.ts.max(0),
                            p.stream.max(0),
                            p.seq.max(0)
                        ),
                        event: e,
                    });
                }
                if found.len() >= q.limit
                    || scanned >= FILTER_SCAN_BUDGET
                    || bytes >= MAX_PAGE_BYTES
                {
                    return Ok(FilterPage {
                        events: found,
                        next_token: Some(format!("{}/{}/{}", cursor.ts, cursor.stream, cursor.seq)),
                        searched_streams: streams.into_iter().map(|(_, n)| n).collect(),
                    });
                }
            }
        }
    }

    /// Deletes every event older than its group's retention (relative to `now_ms`); returns
    /// how many.
    pub fn sweep_retention(&self, now_ms: i64) -> Result<u64> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let groups: Vec<(i64, i32)> = {
            let mut st = tx.prepare(
                "SELECT id, retention_days FROM groups WHERE retention_days IS NOT NULL",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        let mut deleted = 0u64;
        for (gid, days) in groups {
            let cut = now_ms.saturating_sub(i64::from(days) * ingest::DAY_MS);
            let streams: Vec<i64> = {
                let mut st = tx.prepare_cached("SELECT id FROM streams WHERE group_id = ?1")?;
                let rows = st.query_map([gid], |r| r.get(0))?;
                rows.collect::<std::result::Result<_, _>>()?
            };
            for sid in streams {
                let (n, bytes): (i64, i64) = tx.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(length(CAST(message AS BLOB)) + 26), 0)
                     FROM events WHERE stream_id = ?1 AND ts < ?2",
                    params![sid, cut],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if n == 0 {
                    continue;
                }
                tx.execute(
                    "DELETE FROM events WHERE stream_id = ?1 AND ts < ?2",
                    params![sid, cut],
                )?;
                tx.execute(
                    "UPDATE streams SET stored_bytes = MAX(stored_bytes - ?2, 0),
                        first_event_ms = (SELECT MIN(ts) FROM events WHERE stream_id = ?1)
                     WHERE id = ?1",
                    params![sid, bytes],
                )?;
                deleted += n as u64;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }
}

/// A position in a stream: between events, identified by the event just before (forward) or
/// just after (backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    ts: i64,
    seq: i64,
}

impl Pos {
    const MIN: Pos = Pos { ts: i64::MIN, seq: i64::MIN };
    const MAX: Pos = Pos { ts: i64::MAX, seq: i64::MAX };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FilterPos {
    ts: i64,
    stream: i64,
    seq: i64,
}

fn token(dir: char, p: Pos) -> String {
    format!("{dir}/{}/{}", p.ts, p.seq)
}

fn parse_get_token(t: &str) -> Result<(bool, Pos)> {
    let mut parts = t.split('/');
    let forward = match parts.next() {
        Some("f") => true,
        Some("b") => false,
        _ => return Err(bad_token()),
    };
    let ts = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad_token)?;
    let seq = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad_token)?;
    if parts.next().is_some() {
        return Err(bad_token());
    }
    Ok((forward, Pos { ts, seq }))
}

fn parse_filter_token(t: &str) -> Result<FilterPos> {
    let v: Vec<i64> =
        t.split('/').map(|s| s.parse().map_err(|_| bad_token())).collect::<Result<_>>()?;
    match v[..] {
        [ts, stream, seq] => Ok(FilterPos { ts, stream, seq }),
        _ => Err(bad_token()),
    }
}

#[cfg(test)]
mod tests;
