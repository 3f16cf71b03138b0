//! The metric filters' share of [`LogStore`]: their rows (PutMetricFilter,
//! DeleteMetricFilter, DescribeMetricFilters, the per-group count) and the datapoints they
//! make of events being ingested. The filters live in the `metric_filters` table beside their
//! group and go with it; ingest ([`LogStore::put_events_metered`], [`LogStore::ship_metered`])
//! calls [`LogStore::metric_data`] in the same transaction that stores the events, so only
//! stored events are metered.

use rusqlite::{Connection, params};

use super::*;

impl LogStore {
    /// The datapoints the metric filters of group `gid` make of `events` (a filter that no
    /// longer compiles, which PutMetricFilter prevents, is skipped).
    pub(crate) fn metric_data(
        tx: &Connection,
        gid: i64,
        events: &[(i64, &str)],
    ) -> Result<Vec<Datum>> {
        let mut out = vec![];
        if events.is_empty() {
            return Ok(out);
        }
        for f in Self::filters_of(tx, gid, "", 0, metric_filter::MAX_FILTERS_PER_GROUP)? {
            match metric_filter::Compiled::new(&f.pattern, &f.transformation) {
                Ok(c) => c.data(events, &mut out),
                Err(e) => debug_assert!(false, "stored metric filter {} is invalid: {e}", f.name),
            }
        }
        Ok(out)
    }

    /// PutMetricFilter: creates or replaces the filter `f.name` of a group (the caller has
    /// checked it with [`metric_filter::Compiled::new`]); a replaced filter keeps its creation
    /// time. A group holds at most [`metric_filter::MAX_FILTERS_PER_GROUP`].
    pub fn put_metric_filter(&self, region: &str, group: &str, f: &MetricFilter) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let (gid, _) = Self::group_id(&tx, region, group)?;
        let (count, exists): (i64, bool) = tx.query_row(
            "SELECT COUNT(*), COALESCE(MAX(name = ?2), 0) FROM metric_filters WHERE group_id = ?1",
            params![gid, f.name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if !exists && count as usize >= metric_filter::MAX_FILTERS_PER_GROUP {
            return Err(LogStoreError::LimitExceeded(format!(
                "Resource limit exceeded: the log group already has {} metric filters, the most it may have.",
                metric_filter::MAX_FILTERS_PER_GROUP
            )));
        }
        let t = &f.transformation;
        let dims = serde_json::Value::Object(
            t.dimensions
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
        .to_string();
        tx.execute(
            "INSERT INTO metric_filters (group_id, name, pattern, metric_name, metric_namespace,
                 metric_value, default_value, dimensions, unit, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (group_id, name) DO UPDATE SET pattern = ?3, metric_name = ?4,
                 metric_namespace = ?5, metric_value = ?6, default_value = ?7, dimensions = ?8,
                 unit = ?9",
            params![
                gid,
                f.name,
                f.pattern,
                t.metric_name,
                t.metric_namespace,
                t.metric_value,
                t.default_value,
                dims,
                t.unit,
                f.created_ms
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// DeleteMetricFilter.
    pub fn delete_metric_filter(&self, region: &str, group: &str, name: &str) -> Result<()> {
        let c = self.conn();
        let (gid, _) = Self::group_id(&c, region, group)?;
        let n = c.execute(
            "DELETE FROM metric_filters WHERE group_id = ?1 AND name = ?2",
            params![gid, name],
        )?;
        if n == 0 {
            return Err(LogStoreError::NotFound(
                "The specified metric filter does not exist.".into(),
            ));
        }
        Ok(())
    }

    /// DescribeMetricFilters: `(group name, filter)` pairs ordered by group then filter name,
    /// from `offset`, at most `limit`: a group's filters starting with `prefix` (`group` given;
    /// a missing group is [`LogStoreError::NotFound`]), or every group's, in the region; then
    /// only those publishing `metric` (name, namespace) when given.
    pub fn describe_metric_filters(
        &self,
        region: &str,
        group: Option<&str>,
        prefix: &str,
        metric: Option<(&str, &str)>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(String, MetricFilter)>> {
        let c = self.conn();
        let groups: Vec<(i64, String)> = match group {
            Some(g) => vec![(Self::group_id(&c, region, g)?.0, g.to_string())],
            None => {
                let mut st = c.prepare_cached(
                    "SELECT id, name FROM groups WHERE region = ?1 ORDER BY name",
                )?;
                let rows = st.query_map([region], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<std::result::Result<_, _>>()?
            }
        };
        let mut out = vec![];
        let mut skipped = 0;
        for (gid, gname) in groups {
            for f in Self::filters_of(&c, gid, prefix, 0, usize::MAX)? {
                let t = &f.transformation;
                if metric.is_some_and(|(n, ns)| t.metric_name != n || t.metric_namespace != ns) {
                    continue;
                }
                if skipped < offset {
                    skipped += 1;
                    continue;
                }
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push((gname.clone(), f));
            }
        }
        Ok(out)
    }

    /// How many metric filters a group has.
    pub fn metric_filter_count(&self, region: &str, group: &str) -> Result<i64> {
        let c = self.conn();
        let (gid, _) = Self::group_id(&c, region, group)?;
        Ok(c.query_row("SELECT COUNT(*) FROM metric_filters WHERE group_id = ?1", [gid], |r| {
            r.get(0)
        })?)
    }

    fn filters_of(
        c: &Connection,
        gid: i64,
        prefix: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<MetricFilter>> {
        let mut st = c.prepare_cached(
            "SELECT name, pattern, metric_name, metric_namespace, metric_value, default_value,
                    dimensions, unit, created_ms
             FROM metric_filters WHERE group_id = ?1 AND substr(name, 1, length(?2)) = ?2
             ORDER BY name LIMIT ?3 OFFSET ?4",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![gid, prefix, limit, offset as i64], |r| {
            let dims: String = r.get(6)?;
            let dimensions = match serde_json::from_str::<serde_json::Value>(&dims) {
                Ok(serde_json::Value::Object(m)) => m
                    .into_iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                    .collect(),
                _ => BTreeMap::new(),
            };
            Ok(MetricFilter {
                name: r.get(0)?,
                pattern: r.get(1)?,
                transformation: Transformation {
                    metric_name: r.get(2)?,
                    metric_namespace: r.get(3)?,
                    metric_value: r.get(4)?,
                    default_value: r.get(5)?,
                    dimensions,
                    unit: r.get(7)?,
                },
                created_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
