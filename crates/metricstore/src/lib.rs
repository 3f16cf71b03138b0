//! Berth's metric store: the data plane behind the CloudWatch metrics API (issue #15).
//!
//! Storage choice: a SQLite file of its own (`metrics.db` in the server's data directory),
//! apart from the control plane's `berth.db` and the log store's `logs.db`, so that a stream
//! of datapoints never contends with the control plane's writer.
//! * WAL journal, `synchronous=NORMAL`: a crash may lose the last moments of datapoints (as a
//!   lost CloudWatch put would), never corrupt the file;
//! * a metric (region, namespace, name, dimension set) is one row of `metrics`; its datapoints
//!   are *aggregated on write* into one row per (metric, resolution, bucket) of `points`, a
//!   `WITHOUT ROWID` table whose key is the time index: 1-second buckets for high-resolution
//!   puts (`StorageResolution` 1), 60-second buckets otherwise, as CloudWatch keeps them. A row
//!   is SampleCount, Sum, Minimum, Maximum, and the distinct values with their counts (for
//!   percentiles), at most [`MAX_VALUES_PER_BUCKET`] of them;
//! * one connection behind a mutex; callers on an async runtime use `spawn_blocking`.
//!
//! Contract:
//! * [`MetricStore::put`] merges samples into their buckets (one transaction per call);
//! * [`MetricStore::buckets`] answers one metric's buckets in `[start, end)` grouped by a
//!   period (aligned to the epoch), each with its statistics; a period under 60 s reads only
//!   high-resolution buckets; [`Agg::percentile`] answers `None` when a bucket's values were
//!   put as a `StatisticValues` set (CloudWatch answers no percentile for those either);
//! * [`MetricStore::list`] answers metrics by namespace, name and dimension filters, and only
//!   those put since a time for `RecentlyActive`;
//! * [`MetricStore::sweep`] deletes buckets older than the retention;
//! * alarms and their history are opaque documents kept here by (region, name) so that the
//!   CloudWatch module owns their shape ([`MetricStore::put_alarm`] and siblings).
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// Distinct values kept per bucket for percentiles; later values still count in the other
/// statistics.
pub const MAX_VALUES_PER_BUCKET: usize = 1000;

/// A failed metric store call.
#[derive(Debug, thiserror::Error)]
pub enum MetricStoreError {
    #[error("metric store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

type Result<T> = std::result::Result<T, MetricStoreError>;

/// A metric's identity. `dimensions` are sorted by name (CloudWatch matches them as a set).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

impl MetricKey {
    /// A key with its dimensions sorted.
    pub fn new(namespace: &str, name: &str, dimensions: &[(String, String)]) -> Self {
        let mut dimensions = dimensions.to_vec();
        dimensions.sort();
        Self { namespace: namespace.to_string(), name: name.to_string(), dimensions }
    }

    /// The dimensions as stored: `name=value` lines (names and values cannot hold a newline:
    /// the API refuses them).
    fn dims_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.dimensions {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        }
        s
    }

    fn parse_dims(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }
}

/// Aggregated datapoints: one bucket, or one period's worth of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Agg {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Distinct values and their counts (may be partial: see [`MAX_VALUES_PER_BUCKET`]).
    pub values: Vec<(f64, f64)>,
    /// False when some datapoint came as a statistic set (no values): no percentiles.
    pub has_values: bool,
    pub unit: Option<String>,
}

impl Agg {
    /// One value seen `count` times.
    pub fn value(v: f64, count: f64) -> Self {
        Self {
            count,
            sum: v * count,
            min: v,
            max: v,
            values: vec![(v, count)],
            has_values: true,
            unit: None,
        }
    }

    /// A statistic set (`StatisticValues`).
    pub fn set(count: f64, sum: f64, min: f64, max: f64) -> Self {
        Self { count, sum, min, max, values: Vec::new(), has_values: false, unit: None }
    }

    pub fn average(&self) -> f64 {
        if self.count > 0.0 { self.sum / self.count } else { 0.0 }
    }

    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &Agg) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.has_values &= other.has_values;
        for &(v, c) in &other.values {
            if let Some(e) = self.values.iter_mut().find(|(x, _)| *x == v) {
                e.1 += c;
            } else if self.values.len() < MAX_VALUES_PER_BUCKET {
                self.values.push((v, c));
            } else {
                self.has_values = false;
            }
        }
        if other.unit.is_some() {
            self.unit.clone_from(&other.unit);
        }
    }

    /// The `p`th percentile (0..=100) of the values, nearest rank; `None` without values.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if !self.has_values || self.values.is_empty() {
            return None;
        }
        let mut v = self.values.clone();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = v.iter().map(|(_, c)| c).sum();
        let rank = (p / 100.0 * total).ceil().max(1.0);
        let mut seen = 0.0;
        for (x, c) in &v {
            seen += c;
            if seen >= rank {
                return Some(*x);
            }
        }
        v.last().map(|(x, _)| *x)
    }

    fn encode_values(&self) -> Option<Vec<u8>> {
        if !self.has_values {
            return None;
        }
        let mut out = Vec::with_capacity(self.values.len() * 16);
        for (v, c) in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
        Some(out)
    }

    fn decode_values(blob: Option<Vec<u8>>) -> (Vec<(f64, f64)>, bool) {
        let Some(b) = blob else { return (Vec::new(), false) };
        let mut out = Vec::with_capacity(b.len() / 16);
        for ch in b.chunks_exact(16) {
            let v = f64::from_le_bytes(ch[..8].try_into().unwrap_or([0; 8]));
            let c = f64::from_le_bytes(ch[8..].try_into().unwrap_or([0; 8]));
            out.push((v, c));
        }
        (out, true)
    }
}

/// One sample to store.
#[derive(Debug, Clone)]
pub struct Sample {
    pub key: MetricKey,
    /// Epoch milliseconds.
    pub at_ms: i64,
    /// 1 (high resolution) or 60.
    pub resolution_secs: i64,
    pub agg: Agg,
}

/// One period of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// The period's start, epoch milliseconds.
    pub at_ms: i64,
    pub agg: Agg,
}

/// A listed metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub key: MetricKey,
    pub last_put_ms: i64,
}

/// A dimension filter of ListMetrics: a name, and a value or any.
#[derive(Debug, Clone)]
pub struct DimensionFilter {
    pub name: String,
    pub value: Option<String>,
}

/// One alarm history item, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    pub alarm: String,
    pub at_ms: i64,
    pub kind: String,
    pub body: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY,
    region TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    dims TEXT NOT NULL,
    last_put_ms INTEGER NOT NULL,
    UNIQUE (region, namespace, name, dims)
);
CREATE TABLE IF NOT EXISTS points (
    metric INTEGER NOT NULL,
    res INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    count REAL NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    vals BLOB,
    unit TEXT,
    PRIMARY KEY (metric, res, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_by_time ON points (bucket);
CREATE TABLE IF NOT EXISTS alarms (
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (region, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarm_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    region TEXT NOT NULL,
    alarm TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_alarm ON alarm_history (region, alarm, at_ms);
";

/// The metric store (see the crate header).
pub struct MetricStore {
    conn: Mutex<Connection>,
}

impl MetricStore {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Merges `samples` into their buckets, in `region`, in one transaction; `now_ms` marks
    /// each metric recently active.
    pub fn put(&self, region: &str, samples: &[Sample], now_ms: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut metric_id = tx.prepare_cached(
                "INSERT INTO metrics (region, namespace, name, dims, last_put_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (region, namespace, name, dims) DO UPDATE SET last_put_ms = ?5
                 RETURNING id",
            )?;
            let mut get = tx.prepare_cached(
                "SELECT count, sum, min, max, vals, unit FROM points
                 WHERE metric = ?1 AND res = ?2 AND bucket = ?3",
            )?;
            let mut set = tx.prepare_cached(
                "INSERT OR REPLACE INTO points (metric, res, bucket, count, sum, min, max, vals, unit)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for s in samples {
                let id: i64 = metric_id.query_row(
                    params![region, s.key.namespace, s.key.name, s.key.dims_text(), now_ms],
                    |r| r.get(0),
                )?;
                let res = if s.resolution_secs < 60 { 1 } else { 60 };
                let bucket = s.at_ms.div_euclid(res * 1000) * res * 1000;
                let old = get
                    .query_row(params![id, res, bucket], |r| {
                        let (values, has_values) = Agg::decode_values(r.get(4)?);
                        Ok(Agg {
                            count: r.get(0)?,
                            sum: r.get(1)?,
                            min: r.get(2)?,
                            max: r.get(3)?,
                            values,
                            has_values,
                            unit: r.get(5)?,
                        })
                    })
                    .optional()?;
                let agg = match old {
                    Some(mut a) => {
                        a.merge(&s.agg);
                        a
                    }
                    None => s.agg.clone(),
                };
                set.execute(params![
                    id,
                    res,
                    bucket,
                    agg.count,
                    agg.sum,
                    agg.min,
                    agg.max,
                    agg.encode_values(),
                    agg.unit
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One metric's buckets in `[start_ms, end_ms)`, merged per `period_secs` (aligned to the
    /// epoch), oldest first. A period under 60 s reads only the 1-second buckets.
    pub fn buckets(
        &self,
        region: &str,
        key: &MetricKey,
        start_ms: i64,
        end_ms: i64,
        period_secs: i64,
    ) -> Result<Vec<Bucket>> {
        let conn = self.conn();
        let id: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM metrics WHERE region = ?1 AND namespace = ?2 AND name = ?3 AND dims = ?4",
            )?
            .query_row(params![region, key.namespace, key.name, key.dims_text()], |r| r.get(0))
            .optional()?;
        let Some(id) = id else { return Ok(Vec::new()) };
        // Periods under a minute read only the high-resolution buckets; longer ones read both.
        let max_res = if period_secs < 60 { 1 } else { 60 };
        let mut stmt = conn.prepare_cached(
            "SELECT bucket, count, sum, min, max, vals, unit FROM points
             WHERE metric = ?1 AND res <= ?2 AND bucket >= ?3 AND bucket < ?4
             ORDER BY bucket",
        )?;
        let period_ms = period_secs.max(1) * 1000;
        let mut out: Vec<Bucket> = Vec::new();
        let rows = stmt.query_map(params![id, max_res, start_ms, end_ms], |r| {
            let (values, has_values) = Agg::decode_values(r.get(5)?);
            Ok((
                r.get::<_, i64>(0)?,
                Agg {
                    count: r.get(1)?,
                    sum: r.get(2)?,
                    min: r.get(3)?,
                    max: r.get(4)?,
                    values,
                    has_values,
                    unit: r.get(6)?,
                },
            ))
        })?;
        for row in rows {
            let (at, agg) = row?;
            let start = at.div_euclid(period_ms) * period_ms;
            match out.last_mut() {
                Some(b) if b.at_ms == start => b.agg.merge(&agg),
                _ => out.push(Bucket { at_ms: start, agg }),
            }
        }
        Ok(out)
    }

    /// The metrics of `region` matching the filters (all `dims` must be among the metric's
    /// dimensions), put at or after `active_since_ms` when given, sorted by key.
    pub fn list(
        &self,
        region: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        dims: &[DimensionFilter],
        active_since_ms: Option<i64>,
    ) -> Result<Vec<Listed>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, name, dims, last_put_ms FROM metrics
             WHERE region = ?1 AND (?2 IS NULL OR namespace = ?2) AND (?3 IS NULL OR name = ?3)
               AND last_put_ms >= ?4
             ORDER BY namespace, name, dims",
        )?;
        let rows = stmt.query_map(
            params![region, namespace, name, active_since_ms.unwrap_or(i64::MIN)],
            |r| {
                Ok(Listed {
                    key: MetricKey {
                        namespace: r.get(0)?,
                        name: r.get(1)?,
                        dimensions: MetricKey::parse_dims(&r.get::<_, String>(2)?),
                    },
                    last_put_ms: r.get(3)?,
                })
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let l = row?;
            let ok = dims.iter().all(|f| {
                l.key
                    .dimensions
                    .iter()
                    .any(|(k, v)| *k == f.name && f.value.as_ref().is_none_or(|fv| fv == v))
            });
            if ok {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// Deletes buckets older than `keep_after_ms`, and metrics left without any; returns how
    /// many buckets went.
    pub fn sweep(&self, keep_after_ms: i64) -> Result<usize> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM points WHERE bucket < ?1", params![keep_after_ms])?;
        conn.execute(
            "DELETE FROM metrics WHERE last_put_ms < ?1
               AND NOT EXISTS (SELECT 1 FROM points WHERE metric = metrics.id)",
            params![keep_after_ms],
        )?;
        conn.execute("DELETE FROM alarm_history WHERE at_ms < ?1", params![keep_after_ms])?;
        Ok(n)
    }

    /// Creates or replaces an alarm document.
    pub fn put_alarm(&self, region: &str, name: &str, body: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO alarms (region, name, body) VALUES (?1, ?2, ?3)",
            params![region, name, body],
        )?;
        Ok(())
    }

    /// An alarm document.
    pub fn get_alarm(&self, region: &str, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT body FROM alarms WHERE region = ?1 AND name = ?2",
                params![region, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every alarm of `region` (all regions: `None`) as (region, name, body), by name.
    pub fn alarms(&self, region: Option<&str>) -> Result<Vec<(String, String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT region, name, body FROM alarms WHERE ?1 IS NULL OR region = ?1
             ORDER BY region, name",
        )?;
        let rows = stmt.query_map(params![region], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Deletes an alarm; true when it existed.
    pub fn delete_alarm(&self, region: &str, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM alarms WHERE region = ?1 AND name = ?2", params![region, name])?
            > 0)
    }

    /// Appends a history item.
    pub fn add_history(&self, region: &str, item: &HistoryItem) -> Result<()> {
        self.conn().execute(
            "INSERT INTO alarm_history (region, alarm, at_ms, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![region, item.alarm, item.at_ms, item.kind, item.body],
        )?;
        Ok(())
    }

    /// History items of `region` (one alarm's, when named) in `[start_ms, end_ms)`, newest
    /// first (oldest first when `oldest_first`).
    pub fn history(
        &self,
        region: &str,
        alarm: Option<&str>,
        start_ms: i64,
        end_ms: i64,
        oldest_first: bool,
    ) -> Result<Vec<HistoryItem>> {
        let conn = self.conn();
        let order = if oldest_first { "ASC" } else { "DESC" };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT alarm, at_ms, kind, body FROM alarm_history
             WHERE region = ?1 AND (?2 IS NULL OR alarm = ?2) AND at_ms >= ?3 AND at_ms < ?4
             ORDER BY at_ms {order}, seq {order}"
        ))?;
        let rows = stmt.query_map(params![region, alarm, start_ms, end_ms], |r| {
            Ok(HistoryItem { alarm: r.get(0)?, at_ms: r.get(1)?, kind: r.get(2)?, body: r.get(3)? })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests;
