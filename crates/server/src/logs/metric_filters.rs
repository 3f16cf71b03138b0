//! CloudWatch Logs metric filters (issue #15): PutMetricFilter, DescribeMetricFilters,
//! DeleteMetricFilter, TestMetricFilter, and the publishing of what the filters extract.
//!
//! Contract:
//! * a filter is checked by [`store::metric_filter::Compiled::new`] before it is stored with its
//!   group ([`LogStore::put_metric_filter`]: at most 100 per group, `LimitExceededException`;
//!   gone with the group); `applyOnTransformedLogs: true`, `fieldSelectionCriteria` and
//!   `emitSystemFieldDimensions` are refused by name (Berth has no log transformers nor system
//!   fields), and so are names and namespaces the model's patterns forbid;
//! * DescribeMetricFilters lists one group's filters (by `filterNamePrefix`) or, without a
//!   group, the region's filters publishing `metricName` in `metricNamespace` (both or
//!   neither); pages hold `limit` (1 to 50, default 50) with an opaque offset `nextToken`;
//! * [`publish`] stores the datapoints of an ingested batch in the metric store before the
//!   ingest call answers, so a caller that reads metrics right after PutLogEvents sees them;
//!   datapoints are merged per metric and minute first (one sample per bucket).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_logstore::{self as store, Datum, LogStore, MetricFilter, Transformation};
use berth_metricstore::{Agg, MetricKey, Sample};
use berth_wire::AwsError;
use berth_wire::logs as wire;

use super::{Region, check_group_name, invalid, now_ms, offset, required};
use crate::cloudwatch::CloudWatch;
use crate::ecs::RequestContext;

/// Stores an ingested batch's metric filter datapoints in `region` (see the module header).
pub(crate) async fn publish(cw: &Arc<CloudWatch>, region: &'static str, data: Vec<Datum>) {
    if data.is_empty() {
        return;
    }
    let mut merged: BTreeMap<(MetricKey, i64), Agg> = BTreeMap::new();
    for d in data {
        let key = MetricKey::new(&d.namespace, &d.name, &d.dimensions);
        let minute = d.timestamp_ms.div_euclid(60_000) * 60_000;
        let mut one = Agg::value(d.value, 1.0);
        one.unit = d.unit;
        match merged.get_mut(&(key.clone(), minute)) {
            Some(a) => a.merge(&one),
            None => {
                merged.insert((key, minute), one);
            }
        }
    }
    let samples = merged
        .into_iter()
        .map(|((key, at_ms), agg)| Sample { key, at_ms, resolution_secs: 60, agg })
        .collect();
    cw.put_samples(region, samples).await;
}

fn check_filter_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 512 || name.contains([':', '*']) {
        return Err(invalid(format!(
            "filterName: '{name}' must be 1 to 512 characters, without ':' or '*'."
        )));
    }
    Ok(())
}

fn check_metric_word(member: &str, v: &str) -> Result<(), AwsError> {
    if v.is_empty() || v.len() > 255 || v.contains([':', '*', '$']) {
        return Err(invalid(format!(
            "metricTransformations.{member}: '{v}' must be 1 to 255 characters, without ':', '*' or '$'."
        )));
    }
    Ok(())
}

fn transformation(t: wire::MetricTransformation) -> Result<Transformation, AwsError> {
    let metric_name = required(t.metric_name, "metricTransformations.metricName")?;
    let metric_namespace = required(t.metric_namespace, "metricTransformations.metricNamespace")?;
    check_metric_word("metricName", &metric_name)?;
    check_metric_word("metricNamespace", &metric_namespace)?;
    let metric_value = required(t.metric_value, "metricTransformations.metricValue")?;
    if let Some(d) = t.default_value
        && !d.is_finite()
    {
        return Err(invalid("metricTransformations.defaultValue: must be a finite number."));
    }
    let dimensions = t.dimensions.unwrap_or_default();
    for (k, v) in &dimensions {
        if k.is_empty() || k.len() > 255 || v.is_empty() || v.len() > 255 {
            return Err(invalid(format!(
                "metricTransformations.dimensions: '{k}' and its value must be 1 to 255 characters each."
            )));
        }
    }
    Ok(Transformation {
        metric_name,
        metric_namespace,
        metric_value,
        default_value: t.default_value,
        dimensions,
        unit: t.unit.map(|u| u.as_str().to_string()),
    })
}

fn wire_filter(group: String, f: MetricFilter) -> wire::MetricFilter {
    let t = f.transformation;
    let unit = t.unit.and_then(|u| serde_json::from_value(serde_json::Value::String(u)).ok());
    wire::MetricFilter {
        filter_name: Some(f.name),
        filter_pattern: Some(f.pattern),
        metric_transformations: Some(vec![wire::MetricTransformation {
            metric_name: Some(t.metric_name),
            metric_namespace: Some(t.metric_namespace),
            metric_value: Some(t.metric_value),
            default_value: t.default_value,
            dimensions: (!t.dimensions.is_empty()).then_some(t.dimensions),
            unit,
        }]),
        creation_time: Some(f.created_ms),
        log_group_name: Some(group),
        apply_on_transformed_logs: Some(false),
        field_selection_criteria: None,
        emit_system_field_dimensions: None,
    }
}

impl wire::MetricFiltersApi<RequestContext> for Region<'_> {
    async fn put_metric_filter(
        &self,
        _ctx: &RequestContext,
        input: wire::PutMetricFilterRequest,
    ) -> Result<wire::Empty, AwsError> {
        let group = required(input.log_group_name, "logGroupName")?;
        check_group_name(&group)?;
        let name = required(input.filter_name, "filterName")?;
        check_filter_name(&name)?;
        let pattern = required(input.filter_pattern, "filterPattern")?;
        if input.apply_on_transformed_logs == Some(true) {
            return Err(invalid(
                "applyOnTransformedLogs: Berth has no log transformers; only false is accepted.",
            ));
        }
        if input.field_selection_criteria.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(invalid(
                "fieldSelectionCriteria: system field selection is not supported by Berth.",
            ));
        }
        if input.emit_system_field_dimensions.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(invalid(
                "emitSystemFieldDimensions: system field dimensions are not supported by Berth.",
            ));
        }
        let mut ts = required(input.metric_transformations, "metricTransformations")?;
        if ts.len() != 1 {
            return Err(invalid(format!(
                "metricTransformations: a metric filter has exactly 1 metric transformation (got {}).",
                ts.len()
            )));
        }
        let t = transformation(ts.remove(0))?;
        store::metric_filter::Compiled::new(&pattern, &t).map_err(invalid)?;
        let f = MetricFilter { name, pattern, transformation: t, created_ms: now_ms() };
        self.run(move |s, r| s.put_metric_filter(r, &group, &f)).await?;
        Ok(wire::Empty {})
    }

    async fn describe_metric_filters(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeMetricFiltersRequest,
    ) -> Result<wire::DescribeMetricFiltersResponse, AwsError> {
        let metric = match (input.metric_name, input.metric_namespace) {
            (Some(n), Some(ns)) => Some((n, ns)),
            (None, None) => None,
            _ => {
                return Err(invalid("metricName and metricNamespace: specify both or neither."));
            }
        };
        let prefix = input.filter_name_prefix.unwrap_or_default();
        let group = input.log_group_name;
        if group.is_none() && !prefix.is_empty() {
            return Err(invalid("filterNamePrefix: only valid with a logGroupName."));
        }
        let limit = input.limit.unwrap_or(50).clamp(1, 50) as usize;
        let from = offset(input.next_token.as_deref(), "mf/")?;
        let mut found = self
            .run(move |s: &LogStore, r| {
                let metric = metric.as_ref().map(|(n, ns)| (n.as_str(), ns.as_str()));
                s.describe_metric_filters(r, group.as_deref(), &prefix, metric, from, limit + 1)
            })
            .await?;
        let more = found.len() > limit;
        found.truncate(limit);
        Ok(wire::DescribeMetricFiltersResponse {
            metric_filters: Some(found.into_iter().map(|(g, f)| wire_filter(g, f)).collect()),
            next_token: more.then(|| format!("mf/{}", from + limit)),
        })
    }

    async fn delete_metric_filter(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteMetricFilterRequest,
    ) -> Result<wire::Empty, AwsError> {
        let group = required(input.log_group_name, "logGroupName")?;
        let name = required(input.filter_name, "filterName")?;
        self.run(move |s, r| s.delete_metric_filter(r, &group, &name)).await?;
        Ok(wire::Empty {})
    }

    async fn test_metric_filter(
        &self,
        _ctx: &RequestContext,
        input: wire::TestMetricFilterRequest,
    ) -> Result<wire::TestMetricFilterResponse, AwsError> {
        let pattern = required(input.filter_pattern, "filterPattern")?;
        let messages = required(input.log_event_messages, "logEventMessages")?;
        let pattern =
            store::Pattern::parse(&pattern).map_err(|e| invalid(format!("filterPattern: {e}")))?;
        let matches = store::metric_filter::test(&pattern, &messages)
            .into_iter()
            .map(|(n, message, values)| wire::MetricFilterMatchRecord {
                event_number: Some(n as i64),
                event_message: Some(message),
                extracted_values: Some(values),
            })
            .collect();
        Ok(wire::TestMetricFilterResponse { matches: Some(matches) })
    }
}
