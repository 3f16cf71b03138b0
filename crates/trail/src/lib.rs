//! Berth's audit trail: the event history behind CloudTrail's LookupEvents (issue #16).
//!
//! Storage: a SQLite file of its own (`trail.db` in the server's data directory), apart from
//! the control plane's `berth.db` (as the log store is), so that recording every API call never
//! contends with the state store's compare-and-set writer.
//!
//! ```text
//!  API call ──record()──> channel ──> writer thread: one transaction per batch ──> trail.db
//!  LookupEvents ──lookup()──> reader connection (WAL: never blocked by the writer)
//! ```
//!
//! Contract:
//! * [`Trail::record`] never blocks the caller and never fails it: an event goes to a channel
//!   that one writer thread drains, committing whatever has arrived in one transaction (so a
//!   burst of calls costs one commit, not one per call). An event is visible to lookups once its
//!   batch commits, normally within milliseconds ([`Trail::flush`] waits for it). The journal
//!   is WAL with `synchronous=NORMAL`: a committed batch survives `kill -9` of the server; a
//!   power cut may lose the last batches (CloudTrail itself delivers events minutes late);
//! * events are kept per region, ordered by time, newest first in lookups, as CloudTrail's
//!   event history is; [`Trail::lookup`] filters by at most one [`Attribute`] (LookupEvents
//!   accepts one) and a time window, and pages with an opaque token that resumes strictly after
//!   the last event returned;
//! * [`Trail::sweep`] deletes the events older than the retention (90 days by default, as the
//!   event history keeps them).
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, params};

/// A failed trail call.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// A page token that is not one of ours.
    #[error("invalid next token {0:?}")]
    InvalidToken(String),
    #[error("audit trail store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the audit trail writer has stopped")]
    WriterStopped,
}

type Result<T> = std::result::Result<T, TrailError>;

/// A resource an event concerns (CloudTrail's `Resources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `AWS::ECS::Cluster`...
    pub kind: String,
    /// The resource's ARN or name as the request named it.
    pub name: String,
}

/// One API call.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique (a uuid).
    pub id: String,
    /// When the call was received, in milliseconds since the epoch.
    pub time_ms: i64,
    pub region: String,
    /// `RunTask`...
    pub name: String,
    /// `ecs.amazonaws.com`...
    pub source: String,
    pub username: Option<String>,
    pub access_key_id: Option<String>,
    pub read_only: bool,
    pub resources: Vec<Resource>,
    /// The whole event as CloudTrail's JSON record (LookupEvents' `CloudTrailEvent`).
    pub record: String,
}

/// What LookupEvents may filter on (`LookupAttribute.AttributeKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

/// One LookupEvents page request.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub region: String,
    pub filter: Option<(Attribute, String)>,
    /// Inclusive window, in milliseconds since the epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    /// At most this many events (1..=50 in the API).
    pub limit: usize,
    pub token: Option<String>,
}

/// One page, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<Event>,
    pub next_token: Option<String>,
}

enum Msg {
    Event(Box<Event>),
    Flush(Sender<()>),
}

/// The audit trail of one server.
pub struct Trail {
    tx: Mutex<Sender<Msg>>,
    reader: Mutex<Connection>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS events (
        region TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        username TEXT,
        access_key TEXT,
        read_only INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (region, time_ms, id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS events_by_id ON events (id);
    CREATE TABLE IF NOT EXISTS resources (
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (id, kind, name)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS resources_by_name ON resources (name);
    CREATE INDEX IF NOT EXISTS resources_by_kind ON resources (kind);
";

fn open_connection(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(c)
}

impl Trail {
    /// Opens (creating) the trail at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        let writer = open_connection(path)?;
        writer.execute_batch(SCHEMA)?;
        let reader = open_connection(path)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("berth-trail".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|_| TrailError::WriterStopped)?;
        Ok(Self { tx: Mutex::new(tx), reader: Mutex::new(reader) })
    }

    /// Records `event` (see the module's contract: never blocks, never fails the call).
    pub fn record(&self, event: Event) {
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Msg::Event(Box::new(event)));
        if sent.is_err() {
            tracing::error!("the audit trail writer has stopped; an event was not recorded");
        }
    }

    /// Waits until every event recorded before this call is committed.
    pub fn flush(&self) -> Result<()> {
        let (done_tx, done_rx) = mpsc::channel();
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Msg::Flush(done_tx))
            .map_err(|_| TrailError::WriterStopped)?;
        done_rx.recv().map_err(|_| TrailError::WriterStopped)
    }

    /// One page of events, newest first (see [`Query`]).
    pub fn lookup(&self, q: &Query) -> Result<Page> {
        let after = q.token.as_deref().map(parse_token).transpose()?;
        // Resume strictly after (older than) the last event of the previous page.
        // Without a token every event qualifies (`time_ms < i64::MAX`).
        let (before_ms, before_id) = after.unwrap_or((i64::MAX, String::new()));
        let (cond, value): (&str, Option<String>) = match &q.filter {
            None => ("1", None),
            Some((a, v)) => (
                match a {
                    Attribute::EventId => "e.id = ?6",
                    Attribute::EventName => "e.name = ?6",
                    Attribute::ReadOnly => "e.read_only = (?6 = 'true')",
                    Attribute::Username => "e.username = ?6",
                    Attribute::EventSource => "e.source = ?6",
                    Attribute::AccessKeyId => "e.access_key = ?6",
                    Attribute::ResourceType => {
                        "EXISTS (SELECT 1 FROM resources r WHERE r.id = e.id AND r.kind = ?6)"
                    }
                    Attribute::ResourceName => {
                        "EXISTS (SELECT 1 FROM resources r WHERE r.id = e.id AND r.name = ?6)"
                    }
                },
                Some(v.clone()),
            ),
        };
        let sql = format!(
            "SELECT e.id, e.time_ms, e.name, e.source, e.username, e.access_key, e.read_only, e.record
             FROM events e
             WHERE e.region = ?1 AND e.time_ms >= ?2 AND e.time_ms <= ?3
               AND (e.time_ms < ?4 OR (e.time_ms = ?4 AND e.id < ?5))
               AND {cond}
             ORDER BY e.time_ms DESC, e.id DESC
             LIMIT ?7"
        );
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = conn.prepare_cached(&sql)?;
        let limit = q.limit.max(1);
        let rows = stmt.query_map(
            params![
                q.region,
                q.start_ms,
                q.end_ms,
                before_ms,
                before_id,
                value.unwrap_or_default(),
                (limit + 1) as i64,
            ],
            |r| {
                Ok(Event {
                    id: r.get(0)?,
                    time_ms: r.get(1)?,
                    region: q.region.clone(),
                    name: r.get(2)?,
                    source: r.get(3)?,
                    username: r.get(4)?,
                    access_key_id: r.get(5)?,
                    read_only: r.get::<_, i64>(6)? != 0,
                    resources: Vec::new(),
                    record: r.get(7)?,
                })
            },
        )?;
        let mut events = rows.collect::<std::result::Result<Vec<_>, _>>()?;
        let next_token = (events.len() > limit).then(|| {
            events.truncate(limit);
            let last = &events[limit - 1];
            format!("{}:{}", last.time_ms, last.id)
        });
        let mut res = conn.prepare_cached("SELECT kind, name FROM resources WHERE id = ?1")?;
        for e in &mut events {
            e.resources = res
                .query_map([&e.id], |r| Ok(Resource { kind: r.get(0)?, name: r.get(1)? }))?
                .collect::<std::result::Result<_, _>>()?;
        }
        Ok(Page { events, next_token })
    }

    /// Deletes the events recorded before `cutoff_ms`; how many.
    pub fn sweep(&self, cutoff_ms: i64) -> Result<usize> {
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM resources WHERE id IN (SELECT id FROM events WHERE time_ms < ?1)",
            [cutoff_ms],
        )?;
        let n = tx.execute("DELETE FROM events WHERE time_ms < ?1", [cutoff_ms])?;
        tx.commit()?;
        Ok(n)
    }
}

fn parse_token(t: &str) -> Result<(i64, String)> {
    let bad = || TrailError::InvalidToken(t.to_string());
    let (ms, id) = t.split_once(':').ok_or_else(bad)?;
    let ms = ms.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((ms, id.to_string()))
}

/// The writer thread: waits for one message, takes everything else already queued, commits
/// the events in one transaction, then answers the flushes among them.
fn write_loop(mut conn: Connection, rx: Receiver<Msg>) {
    while let Ok(first) = rx.recv() {
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Msg::Event(e) => events.push(e),
                Msg::Flush(done) => flushes.push(done),
            }
            next = if events.len() < 5_000 { rx.try_recv().ok() } else { None };
        }
        if !events.is_empty()
            && let Err(e) = insert(&mut conn, &events)
        {
            tracing::error!(error = %e, lost = events.len(), "could not record audit events");
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

fn insert(conn: &mut Connection, events: &[Box<Event>]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut ev = tx.prepare_cached(
            "INSERT OR IGNORE INTO events
             (region, time_ms, id, name, source, username, access_key, read_only, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut res = tx.prepare_cached(
            "INSERT OR IGNORE INTO resources (id, kind, name) VALUES (?1, ?2, ?3)",
        )?;
        for e in events {
            ev.execute(params![
                e.region,
                e.time_ms,
                e.id,
                e.name,
                e.source,
                e.username,
                e.access_key_id,
                e.read_only as i64,
                e.record
            ])?;
            for r in &e.resources {
                res.execute(params![e.id, r.kind, r.name])?;
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests;
