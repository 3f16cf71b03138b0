//! Amazon CloudWatch metrics and alarms (issue #15): the API in front of
//! [`berth_metricstore`], routed here by the `monitoring` signing name.
//!
//! Protocol: botocore's `cloudwatch` model prefers smithy RPC v2 CBOR, then `json`, then
//! `query`; the installed botocore (1.43) sends the `json` one: `POST /` with
//! `X-Amz-Target: GraniteServiceVersion20100801.<Operation>`, `application/x-amz-json-1.0`
//! and `x-amzn-query-mode: true`. Errors carry `x-amzn-query-error: CODE;Sender` with the
//! query protocol's code (`InvalidParameterValue`, `ResourceNotFound`...), which is the code
//! botocore reports. CBOR and the form-encoded query protocol are not served yet.
//!
//! Contract:
//! * PutMetricData, GetMetricStatistics, GetMetricData (MetricStat queries and [`math`]
//!   expressions, paged), ListMetrics; PutMetricAlarm, DescribeAlarms,
//!   DescribeAlarmsForMetric, DeleteAlarms, SetAlarmState, Enable/DisableAlarmActions,
//!   DescribeAlarmHistory; TagResource, UntagResource, ListTagsForResource on alarms. Each
//!   region has its own metrics and alarms;
//! * input errors name the member as the query protocol spells it
//!   (`MetricData.member.1.Value`);
//! * [`CloudWatch::evaluator`] evaluates every metric alarm once per completed period
//!   ([`eval::evaluate`]), records state changes in the alarm and its history; alarm actions
//!   are recorded, never delivered (no SNS in Berth);
//! * metric alarms on metric math (`Metrics`) and anomaly detection are refused;
//! * the agent's container samples become `AWS/ECS` metrics through [`CloudWatch::put_samples`]
//!   ([`ecs_metrics`]);
//! * datapoints older than [`RETENTION`] are swept hourly.

pub(crate) mod ecs_metrics;
pub(crate) mod eval;
pub(crate) mod math;
pub(crate) mod prometheus;
mod scaling;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::response::Response;
use berth_metricstore::{Agg, DimensionFilter, HistoryItem, MetricKey, MetricStore, Sample};
use berth_wire::cloudwatch as wire;
use berth_wire::{AwsError, common};
use http::{HeaderValue, StatusCode, header};
use wire::ErrorCode;

use crate::App;
use crate::clock::Clock;
use crate::ecs::RequestContext;

/// How long datapoints and alarm history are kept (CloudWatch keeps 1-minute data 15 days).
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(15 * 86_400);
/// How often the evaluator looks for completed periods.
const EVAL_TICK: std::time::Duration = std::time::Duration::from_secs(1);
const JSON_1_0: &str = "application/x-amz-json-1.0";

/// The metric service: its store, the clock, and the evaluator's memory.
pub(crate) struct CloudWatch {
    store: Arc<MetricStore>,
    clock: Arc<dyn Clock>,
    /// Serialises read-modify-write of alarm records (API, evaluator, scaling policies).
    alarm_lock: Arc<Mutex<()>>,
    /// The account of the alarms' ARNs.
    account: String,
    /// (region, alarm) -> the end of the last period evaluated.
    evaluated: Mutex<HashMap<(String, String), i64>>,
}

/// An alarm as stored: the wire shape plus its tags.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAlarm {
    alarm: wire::MetricAlarm,
    #[serde(default)]
    tags: Vec<wire::Tag>,
}

fn ms(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn invalid(m: impl Into<String>) -> AwsError {
    ErrorCode::InvalidParameterValueException.with(m)
}

fn missing(m: &str) -> AwsError {
    ErrorCode::MissingRequiredParameterException.with(format!("The parameter {m} is required."))
}

fn combination(m: impl Into<String>) -> AwsError {
    ErrorCode::InvalidParameterCombinationException.with(m)
}

fn store_error(e: berth_metricstore::MetricStoreError) -> AwsError {
    tracing::error!(error = %e, "metric store failed");
    ErrorCode::InternalServiceFault.with("The metric store could not answer; retry.")
}

impl CloudWatch {
    pub fn open(
        path: &std::path::Path,
        clock: Arc<dyn Clock>,
        account: &str,
    ) -> Result<Self, berth_metricstore::MetricStoreError> {
        Ok(Self {
            store: Arc::new(MetricStore::open(path)?),
            clock,
            account: account.to_string(),
            alarm_lock: Arc::new(Mutex::new(())),
            evaluated: Mutex::new(HashMap::new()),
        })
    }

    fn now_ms(&self) -> i64 {
        (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&CloudWatch) -> Result<T, AwsError> + Send + 'static,
    ) -> Result<T, AwsError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| common::internal(format!("metric store call failed: {e}")))?
    }

    /// Stores samples (the ECS metrics the server publishes itself).
    pub async fn put_samples(self: &Arc<Self>, region: &'static str, samples: Vec<Sample>) {
        let r = self
            .blocking(move |cw| cw.store.put(region, &samples, cw.now_ms()).map_err(store_error))
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e.message, "ECS metrics not stored");
        }
    }

    /// The alarm evaluator and the retention sweep, until `stop` is set.
    pub async fn evaluator(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut last_sweep = 0i64;
        loop {
            let now = self.now_ms();
            let sweep = now - last_sweep >= 3_600_000;
            if sweep {
                last_sweep = now;
            }
            let r = self
                .blocking(move |cw| {
                    if sweep {
                        let keep = now - RETENTION.as_millis() as i64;
                        cw.store.sweep(keep).map_err(store_error)?;
                    }
                    cw.evaluate_all(now)
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e.message, "alarm evaluation failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(EVAL_TICK) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Evaluates every alarm whose latest period completed since its last evaluation.
    fn evaluate_all(&self, now: i64) -> Result<(), AwsError> {
        let alarms = self.store.alarms(None).map_err(store_error)?;
        for (region, name, _) in alarms {
            let _guard = self.alarm_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Re-read under the lock: the API may have changed it.
            let Some(body) = self.store.get_alarm(&region, &name).map_err(store_error)? else {
                continue;
            };
            let Ok(mut stored) = serde_json::from_str::<StoredAlarm>(&body) else { continue };
            let a = &stored.alarm;
            let (Some(period), Some(n)) = (a.period, a.evaluation_periods) else { continue };
            let period_ms = i64::from(period.max(1)) * 1000;
            let end = now.div_euclid(period_ms) * period_ms;
            let key = (region.clone(), name.clone());
            {
                let mut done =
                    self.evaluated.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if done.get(&key) == Some(&end) {
                    continue;
                }
                done.insert(key, end);
            }
            let Some(rule) = rule_of(a) else { continue };
            let Some(metric) = metric_key_of(a) else { continue };
            let stat = a
                .statistic
                .map(|s| s.as_str().to_string())
                .or_else(|| a.extended_statistic.clone())
                .unwrap_or_else(|| "Average".into());
            let n = i64::from(n.max(1));
            let buckets = self
                .store
                .buckets(&region, &metric, end - n * period_ms, end, i64::from(period))
                .map_err(store_error)?;
            let by_start: BTreeMap<i64, &Agg> = buckets.iter().map(|b| (b.at_ms, &b.agg)).collect();
            let periods: Vec<(i64, Option<f64>)> = (0..n)
                .map(|i| {
                    let start = end - (n - i) * period_ms;
                    (start, by_start.get(&start).and_then(|agg| stat_value(agg, &stat)))
                })
                .collect();
            let current = a
                .state_value
                .and_then(|s| eval::State::parse(s.as_str()))
                .unwrap_or(eval::State::InsufficientData);
            let Some(t) = eval::evaluate(&rule, &periods, current, now) else { continue };
            let old_reason = a.state_reason.clone().unwrap_or_default();
            let a = &mut stored.alarm;
            a.state_value = wire::StateValue::from_str(t.state.as_str());
            a.state_reason = Some(t.reason.clone());
            a.state_reason_data = Some(t.reason_data.clone());
            a.state_updated_timestamp = Some(secs(now));
            a.state_transitioned_timestamp = Some(secs(now));
            self.save(&region, &stored)?;
            self.history_state(&region, &name, now, current, &old_reason, t.state, &t.reason)?;
            tracing::info!(region, alarm = name, state = t.state.as_str(), "alarm state changed");
        }
        Ok(())
    }

    fn save(&self, region: &str, stored: &StoredAlarm) -> Result<(), AwsError> {
        let body = serde_json::to_string(stored)
            .map_err(|e| common::internal(format!("alarm not encoded: {e}")))?;
        let name = stored.alarm.alarm_name.clone().unwrap_or_default();
        self.store.put_alarm(region, &name, &body).map_err(store_error)
    }

    #[allow(clippy::too_many_arguments)]
    fn history_state(
        &self,
        region: &str,
        name: &str,
        now: i64,
        old: eval::State,
        old_reason: &str,
        new: eval::State,
        reason: &str,
    ) -> Result<(), AwsError> {
        let data = serde_json::json!({
            "version": "1.0",
            "oldState": {"stateValue": old.as_str(), "stateReason": old_reason},
            "newState": {"stateValue": new.as_str(), "stateReason": reason},
        });
        let item = HistoryItem {
            alarm: name.to_string(),
            at_ms: now,
            kind: "StateUpdate".into(),
            body: serde_json::json!({
                "summary": format!("Alarm updated from {} to {}", old.as_str(), new.as_str()),
                "data": data.to_string(),
            })
            .to_string(),
        };
        self.store.add_history(region, &item).map_err(store_error)
    }

    fn history_config(
        &self,
        region: &str,
        name: &str,
        now: i64,
        summary: &str,
    ) -> Result<(), AwsError> {
        let item = HistoryItem {
            alarm: name.to_string(),
            at_ms: now,
            kind: "ConfigurationUpdate".into(),
            body: serde_json::json!({
                "summary": summary,
                "data": serde_json::json!({"version": "1.0", "type": "Update"}).to_string(),
            })
            .to_string(),
        };
        self.store.add_history(region, &item).map_err(store_error)
    }
}

/// The statistic `stat` (`Average`, `p99`...) of an aggregate.
fn stat_value(agg: &Agg, stat: &str) -> Option<f64> {
    Some(match stat {
        "SampleCount" => agg.count,
        "Sum" => agg.sum,
        "Minimum" => agg.min,
        "Maximum" => agg.max,
        "Average" => agg.average(),
        p => return agg.percentile(parse_percentile(p)?),
    })
}

/// `p90`, `p99.9` -> the percentile.
fn parse_percentile(s: &str) -> Option<f64> {
    let v: f64 = s.strip_prefix('p')?.parse().ok()?;
    (0.0..=100.0).contains(&v).then_some(v)
}

fn rule_of(a: &wire::MetricAlarm) -> Option<eval::Rule> {
    Some(eval::Rule {
        comparison: eval::Comparison::parse(a.comparison_operator?.as_str())?,
        threshold: a.threshold?,
        evaluation_periods: a.evaluation_periods?.max(1) as usize,
        datapoints_to_alarm: a.datapoints_to_alarm.or(a.evaluation_periods)?.max(1) as usize,
        missing: eval::TreatMissing::parse(a.treat_missing_data.as_deref().unwrap_or("missing"))?,
        statistic: a
            .statistic
            .map(|s| s.as_str().to_string())
            .or_else(|| a.extended_statistic.clone())
            .unwrap_or_default(),
        period_secs: i64::from(a.period?),
    })
}

fn metric_key_of(a: &wire::MetricAlarm) -> Option<MetricKey> {
    Some(MetricKey::new(
        a.namespace.as_deref()?,
        a.metric_name.as_deref()?,
        &dims_of(a.dimensions.as_deref().unwrap_or_default()),
    ))
}

fn dims_of(d: &[wire::Dimension]) -> Vec<(String, String)> {
    d.iter()
        .map(|d| (d.name.clone().unwrap_or_default(), d.value.clone().unwrap_or_default()))
        .collect()
}

fn wire_dims(d: &[(String, String)]) -> Vec<wire::Dimension> {
    d.iter()
        .map(|(k, v)| wire::Dimension { name: Some(k.clone()), value: Some(v.clone()) })
        .collect()
}

/// Checks a dimension list: no name twice (`path` names the list as the query protocol does).
fn check_dims(d: &[wire::Dimension], path: &str) -> Result<Vec<(String, String)>, AwsError> {
    let dims = dims_of(d);
    for (i, (k, v)) in dims.iter().enumerate() {
        if dims[..i].iter().any(|(o, _)| o == k) {
            return Err(invalid(format!(
                "The collection {path} must not have duplicate dimension names ('{k}')."
            )));
        }
        if k.contains(['\n', '=']) || v.contains('\n') {
            return Err(invalid(format!(
                "The value {k} for parameter {path}.member.{}.Name is invalid.",
                i + 1
            )));
        }
    }
    Ok(dims)
}

fn check_namespace(ns: &str, what: &str) -> Result<(), AwsError> {
    if ns.starts_with(':') || ns.chars().any(|c| c.is_control()) {
        return Err(invalid(format!("The value {ns} for parameter {what} is invalid.")));
    }
    Ok(())
}

/// A `Period` of a query or an alarm: 1, 5, 10, 20, 30, or a multiple of 60.
fn check_period(p: i32, what: &str) -> Result<i64, AwsError> {
    if matches!(p, 1 | 5 | 10 | 20 | 30) || (p >= 60 && p % 60 == 0) {
        Ok(i64::from(p))
    } else {
        Err(invalid(format!(
            "The parameter {what} must be 1, 5, 10, 20, 30, or a multiple of 60 (got {p})."
        )))
    }
}

fn check_stat(s: &str, what: &str) -> Result<(), AwsError> {
    match s {
        "SampleCount" | "Sum" | "Minimum" | "Maximum" | "Average" => Ok(()),
        p if parse_percentile(p).is_some() => Ok(()),
        _ => Err(invalid(format!(
            "The value {s} for parameter {what} is invalid: use SampleCount, Sum, Minimum, Maximum, Average or a percentile such as p99."
        ))),
    }
}

fn token_offset(token: Option<&str>) -> Result<usize, AwsError> {
    match token {
        None => Ok(0),
        Some(t) => t.strip_prefix("berth-").and_then(|n| n.parse().ok()).ok_or_else(|| {
            ErrorCode::InvalidNextToken.with("The NextToken is not one Berth issued.")
        }),
    }
}

/// One region's view of the service.
struct Region<'a> {
    cw: &'a Arc<CloudWatch>,
    region: &'static str,
    partition: &'static str,
    account: &'a str,
}

impl Region<'_> {
    fn alarm_arn(&self, name: &str) -> String {
        format!("arn:{}:cloudwatch:{}:{}:alarm:{name}", self.partition, self.region, self.account)
    }

    fn now_ms(&self) -> i64 {
        self.cw.now_ms()
    }

    async fn alarms(&self) -> Result<Vec<StoredAlarm>, AwsError> {
        let region = self.region;
        let rows =
            self.cw.blocking(move |cw| cw.store.alarms(Some(region)).map_err(store_error)).await?;
        Ok(rows.into_iter().filter_map(|(_, _, b)| serde_json::from_str(&b).ok()).collect())
    }

    /// Runs `f` on an alarm under the alarm lock and saves what it leaves; `None`: no alarm.
    async fn modify<T: Send + 'static>(
        &self,
        name: String,
        f: impl FnOnce(&CloudWatch, &mut StoredAlarm, i64) -> Result<T, AwsError> + Send + 'static,
    ) -> Result<Option<T>, AwsError> {
        let region = self.region;
        self.cw
            .blocking(move |cw| {
                let _guard =
                    cw.alarm_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let Some(body) = cw.store.get_alarm(region, &name).map_err(store_error)? else {
                    return Ok(None);
                };
                let mut stored: StoredAlarm = serde_json::from_str(&body)
                    .map_err(|e| common::internal(format!("alarm record unreadable: {e}")))?;
                let out = f(cw, &mut stored, cw.now_ms())?;
                cw.save(region, &stored)?;
                Ok(Some(out))
            })
            .await
    }

    /// One MetricStat query's series.
    async fn stat_series(
        &self,
        key: MetricKey,
        start: i64,
        end: i64,
        period: i64,
        stat: String,
    ) -> Result<math::Series, AwsError> {
        let region = self.region;
        let buckets = self
            .cw
            .blocking(move |cw| {
                cw.store.buckets(region, &key, start, end, period).map_err(store_error)
            })
            .await?;
        Ok(buckets.iter().filter_map(|b| stat_value(&b.agg, &stat).map(|v| (b.at_ms, v))).collect())
    }
}

impl wire::MetricsApi<RequestContext> for Region<'_> {
    async fn put_metric_data(
        &self,
        _ctx: &RequestContext,
        input: wire::PutMetricDataInput,
    ) -> Result<wire::Empty, AwsError> {
        let ns = input.namespace.unwrap_or_default();
        check_namespace(&ns, "Namespace")?;
        if ns.starts_with("AWS/") {
            return Err(invalid(format!(
                "The value {ns} for parameter Namespace is invalid: the AWS/ namespaces are reserved for AWS services."
            )));
        }
        if input.entity_metric_data.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(invalid("Berth does not store EntityMetricData yet; send MetricData."));
        }
        let data = input.metric_data.unwrap_or_default();
        if data.is_empty() {
            return Err(missing("MetricData"));
        }
        if data.len() > 1000 {
            return Err(invalid(format!(
                "The collection MetricData must not have more than 1000 members (got {}).",
                data.len()
            )));
        }
        let now = self.now_ms();
        let mut samples = Vec::with_capacity(data.len());
        for (i, d) in data.into_iter().enumerate() {
            let p = format!("MetricData.member.{}", i + 1);
            let name = d.metric_name.clone().unwrap_or_default();
            let dims = check_dims(
                d.dimensions.as_deref().unwrap_or_default(),
                &format!("{p}.Dimensions"),
            )?;
            if dims.len() > 30 {
                return Err(invalid(format!(
                    "The collection {p}.Dimensions must not have more than 30 members."
                )));
            }
            let at = d.timestamp.map_or(now, ms);
            if at < now - 14 * 86_400_000 || at > now + 2 * 3_600_000 {
                return Err(invalid(format!(
                    "The parameter {p}.Timestamp must specify a time no more than two weeks in the past and no more than two hours in the future."
                )));
            }
            let res = match d.storage_resolution {
                None | Some(60) => 60,
                Some(1) => 1,
                Some(r) => {
                    return Err(invalid(format!(
                        "The value {r} for parameter {p}.StorageResolution is invalid: use 1 or 60."
                    )));
                }
            };
            let check = |v: f64, field: &str| -> Result<f64, AwsError> {
                // CloudWatch's range: 2^-260 .. 2^360 in magnitude (or zero).
                if !v.is_finite()
                    || v.abs() > 2f64.powi(360)
                    || (v != 0.0 && v.abs() < 2f64.powi(-260))
                {
                    return Err(invalid(format!(
                        "The value {v} for parameter {p}.{field} is invalid."
                    )));
                }
                Ok(v)
            };
            let kinds = [d.value.is_some(), d.statistic_values.is_some(), d.values.is_some()];
            if kinds.iter().filter(|k| **k).count() > 1 {
                return Err(combination(format!(
                    "The parameters {p}.Value, {p}.StatisticValues and {p}.Values are mutually exclusive; send one."
                )));
            }
            let mut agg = if let Some(v) = d.value {
                Agg::value(check(v, "Value")?, 1.0)
            } else if let Some(s) = &d.statistic_values {
                let count =
                    check(s.sample_count.unwrap_or_default(), "StatisticValues.SampleCount")?;
                let sum = check(s.sum.unwrap_or_default(), "StatisticValues.Sum")?;
                let min = check(s.minimum.unwrap_or_default(), "StatisticValues.Minimum")?;
                let max = check(s.maximum.unwrap_or_default(), "StatisticValues.Maximum")?;
                if count <= 0.0 {
                    return Err(invalid(format!(
                        "The parameter {p}.StatisticValues.SampleCount must be greater than 0."
                    )));
                }
                if min > max {
                    return Err(invalid(format!(
                        "The parameter {p}.StatisticValues.Minimum must be less than or equal to {p}.StatisticValues.Maximum."
                    )));
                }
                Agg::set(count, sum, min, max)
            } else if let Some(values) = &d.values {
                if values.is_empty() || values.len() > 150 {
                    return Err(invalid(format!(
                        "The collection {p}.Values must have 1 to 150 members (got {}).",
                        values.len()
                    )));
                }
                let counts = d.counts.clone().unwrap_or_else(|| vec![1.0; values.len()]);
                if counts.len() != values.len() {
                    return Err(invalid(format!(
                        "The parameters {p}.Values and {p}.Counts must be of the same size."
                    )));
                }
                let mut agg: Option<Agg> = None;
                for (j, (v, c)) in values.iter().zip(&counts).enumerate() {
                    let v = check(*v, &format!("Values.member.{}", j + 1))?;
                    if !c.is_finite() || *c < 0.0 {
                        return Err(invalid(format!(
                            "The value {c} for parameter {p}.Counts.member.{} is invalid.",
                            j + 1
                        )));
                    }
                    let one = Agg::value(v, *c);
                    match agg.as_mut() {
                        Some(a) => a.merge(&one),
                        None => agg = Some(one),
                    }
                }
                agg.unwrap_or_else(|| Agg::value(0.0, 0.0))
            } else {
                return Err(missing(&format!("{p}.Value")));
            };
            if d.counts.is_some() && d.values.is_none() {
                return Err(combination(format!("The parameter {p}.Counts needs {p}.Values.")));
            }
            agg.unit = d.unit.map(|u| u.as_str().to_string());
            samples.push(Sample {
                key: MetricKey::new(&ns, &name, &dims),
                at_ms: at,
                resolution_secs: res,
                agg,
            });
        }
        let region = self.region;
        self.cw
            .blocking(move |cw| cw.store.put(region, &samples, now).map_err(store_error))
            .await?;
        Ok(wire::Empty {})
    }

    async fn get_metric_statistics(
        &self,
        _ctx: &RequestContext,
        input: wire::GetMetricStatisticsInput,
    ) -> Result<wire::GetMetricStatisticsOutput, AwsError> {
        let stats = input.statistics.unwrap_or_default();
        let ext = input.extended_statistics.unwrap_or_default();
        if stats.is_empty() && ext.is_empty() {
            return Err(missing("Statistics or ExtendedStatistics"));
        }
        for (i, e) in ext.iter().enumerate() {
            if parse_percentile(e).is_none() {
                return Err(invalid(format!(
                    "The value {e} for parameter ExtendedStatistics.member.{} is invalid: use a percentile such as p99 or p99.9.",
                    i + 1
                )));
            }
        }
        let period = check_period(input.period.unwrap_or_default(), "Period")?;
        let (start, end) =
            (ms(input.start_time.unwrap_or_default()), ms(input.end_time.unwrap_or_default()));
        if start >= end {
            return Err(invalid(
                "The parameter StartTime must be less than the parameter EndTime.",
            ));
        }
        let points = (end - start) / (period * 1000);
        if points > 1440 {
            return Err(combination(format!(
                "You have requested up to {points} datapoints, which exceeds the limit of 1,440. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
            )));
        }
        let ns = input.namespace.unwrap_or_default();
        let name = input.metric_name.unwrap_or_default();
        let dims = check_dims(input.dimensions.as_deref().unwrap_or_default(), "Dimensions")?;
        let key = MetricKey::new(&ns, &name, &dims);
        let region = self.region;
        let unit = input.unit;
        let buckets = self
            .cw
            .blocking(move |cw| {
                cw.store.buckets(region, &key, start, end, period).map_err(store_error)
            })
            .await?;
        let datapoints = buckets
            .into_iter()
            .filter(|b| unit.is_none_or(|u| b.agg.unit.as_deref().unwrap_or("None") == u.as_str()))
            .map(|b| {
                let has = |s: wire::Statistic| stats.contains(&s);
                wire::Datapoint {
                    timestamp: Some(secs(b.at_ms)),
                    sample_count: has(wire::Statistic::SampleCount).then_some(b.agg.count),
                    average: has(wire::Statistic::Average).then(|| b.agg.average()),
                    sum: has(wire::Statistic::Sum).then_some(b.agg.sum),
                    minimum: has(wire::Statistic::Minimum).then_some(b.agg.min),
                    maximum: has(wire::Statistic::Maximum).then_some(b.agg.max),
                    unit: wire::StandardUnit::from_str(b.agg.unit.as_deref().unwrap_or("None")),
                    extended_statistics: (!ext.is_empty()).then(|| {
                        ext.iter()
                            .filter_map(|e| {
                                b.agg.percentile(parse_percentile(e)?).map(|v| (e.clone(), v))
                            })
                            .collect()
                    }),
                }
            })
            .collect();
        Ok(wire::GetMetricStatisticsOutput { label: Some(name), datapoints: Some(datapoints) })
    }

    async fn get_metric_data(
        &self,
        _ctx: &RequestContext,
        input: wire::GetMetricDataInput,
    ) -> Result<wire::GetMetricDataOutput, AwsError> {
        let queries = input.metric_data_queries.unwrap_or_default();
        if queries.is_empty() || queries.len() > 500 {
            return Err(invalid("The collection MetricDataQueries must have 1 to 500 members."));
        }
        let (start, end) =
            (ms(input.start_time.unwrap_or_default()), ms(input.end_time.unwrap_or_default()));
        if start >= end {
            return Err(invalid(
                "The parameter StartTime must be less than the parameter EndTime.",
            ));
        }
        let max_points = input.max_datapoints.unwrap_or(100_800).max(1) as usize;
        let offset = token_offset(input.next_token.as_deref())?;
        let ascending = input.scan_by == Some(wire::ScanBy::TimestampAscending);
        // Validate every query, then evaluate the MetricStat ones, then the expressions in
        // dependency order.
        let mut values: HashMap<String, math::Series> = HashMap::new();
        let mut exprs: Vec<(String, math::Expr)> = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let p = format!("MetricDataQueries.member.{}", i + 1);
            let id = q.id.clone().unwrap_or_default();
            let mut c = id.chars();
            if !c.next().is_some_and(|c| c.is_ascii_lowercase())
                || !c.all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(invalid(format!(
                    "The value {id} for parameter {p}.Id is invalid: it must start with a lowercase letter and hold only letters, digits and underscores."
                )));
            }
            if queries[..i].iter().any(|o| o.id.as_deref() == Some(id.as_str())) {
                return Err(invalid(format!("The value {id} for parameter {p}.Id is used twice.")));
            }
            match (&q.metric_stat, &q.expression) {
                (Some(ms_), None) => {
                    let period = check_period(
                        ms_.period.unwrap_or_default(),
                        &format!("{p}.MetricStat.Period"),
                    )?;
                    let stat = ms_.stat.clone().unwrap_or_default();
                    check_stat(&stat, &format!("{p}.MetricStat.Stat"))?;
                    let m = ms_.metric.clone().unwrap_or_default();
                    let dims = check_dims(
                        m.dimensions.as_deref().unwrap_or_default(),
                        &format!("{p}.MetricStat.Metric.Dimensions"),
                    )?;
                    let key = MetricKey::new(
                        m.namespace.as_deref().unwrap_or_default(),
                        m.metric_name.as_deref().unwrap_or_default(),
                        &dims,
                    );
                    values
                        .insert(id.clone(), self.stat_series(key, start, end, period, stat).await?);
                }
                (None, Some(e)) => {
                    let parsed = math::parse(e).map_err(|err| {
                        invalid(format!("Error in expression '{id}' ({p}.Expression): {err}."))
                    })?;
                    exprs.push((id.clone(), parsed));
                }
                _ => {
                    return Err(combination(format!(
                        "Exactly one of {p}.MetricStat and {p}.Expression must be given."
                    )));
                }
            }
        }
        // Expressions may name one another: evaluate those whose inputs are known until
        // none is left (a cycle is an error).
        let mut pending = exprs;
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for (id, e) in pending {
                let mut ids = Vec::new();
                e.ids(&mut ids);
                let known = ids.iter().all(|i| values.contains_key(i));
                let defined =
                    ids.iter().all(|i| queries.iter().any(|q| q.id.as_deref() == Some(i.as_str())));
                if !defined || known {
                    let v = math::eval(&e, &|i| values.get(i).cloned().map(math::Value::Series))
                        .map_err(|err| invalid(format!("Error in expression '{id}': {err}.")))?;
                    let series = match v {
                        math::Value::Series(s) => s,
                        math::Value::Array(_) => {
                            return Err(invalid(format!(
                                "Error in expression '{id}': it must return one time series, not an array."
                            )));
                        }
                        math::Value::Scalar(x) => {
                            // A number: one datapoint per timestamp of the series it read.
                            let mut times: Vec<i64> = ids
                                .iter()
                                .filter_map(|i| values.get(i))
                                .flat_map(|s| s.keys().copied())
                                .collect();
                            times.sort_unstable();
                            times.dedup();
                            times
                                .into_iter()
                                .map(|t| (t, x))
                                .filter(|(_, x)| x.is_finite())
                                .collect()
                        }
                    };
                    values.insert(id, series);
                } else {
                    rest.push((id, e));
                }
            }
            if rest.len() == before {
                return Err(invalid(format!(
                    "The expressions {} name one another in a cycle.",
                    rest.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            pending = rest;
        }
        let returned: Vec<&wire::MetricDataQuery> =
            queries.iter().filter(|q| q.return_data != Some(false)).collect();
        let per = (max_points / returned.len().max(1)).max(1);
        let mut more = false;
        let results = returned
            .iter()
            .map(|q| {
                let id = q.id.clone().unwrap_or_default();
                let s = values.get(&id).cloned().unwrap_or_default();
                let mut points: Vec<(i64, f64)> = s.into_iter().collect();
                if !ascending {
                    points.reverse();
                }
                let page: Vec<(i64, f64)> = points.iter().copied().skip(offset).take(per).collect();
                let complete = points.len() <= offset + per;
                more |= !complete;
                let label = q.label.clone().or_else(|| {
                    q.metric_stat.as_ref().and_then(|m| m.metric.as_ref()?.metric_name.clone())
                });
                wire::MetricDataResult {
                    id: Some(id.clone()),
                    label: Some(label.unwrap_or(id)),
                    timestamps: Some(page.iter().map(|(t, _)| secs(*t)).collect()),
                    values: Some(page.iter().map(|(_, v)| *v).collect()),
                    status_code: Some(if complete {
                        wire::StatusCode::Complete
                    } else {
                        wire::StatusCode::PartialData
                    }),
                    messages: None,
                }
            })
            .collect();
        Ok(wire::GetMetricDataOutput {
            metric_data_results: Some(results),
            next_token: more.then(|| format!("berth-{}", offset + per)),
            messages: Some(Vec::new()),
        })
    }

    async fn list_metrics(
        &self,
        _ctx: &RequestContext,
        input: wire::ListMetricsInput,
    ) -> Result<wire::ListMetricsOutput, AwsError> {
        const PAGE: usize = 500;
        let offset = token_offset(input.next_token.as_deref())?;
        let filters: Vec<DimensionFilter> = input
            .dimensions
            .unwrap_or_default()
            .into_iter()
            .map(|f| DimensionFilter { name: f.name.unwrap_or_default(), value: f.value })
            .collect();
        let since = input.recently_active.map(|_| self.now_ms() - 3 * 3_600_000);
        let region = self.region;
        let (ns, name) = (input.namespace, input.metric_name);
        let all = self
            .cw
            .blocking(move |cw| {
                cw.store
                    .list(region, ns.as_deref(), name.as_deref(), &filters, since)
                    .map_err(store_error)
            })
            .await?;
        let more = all.len() > offset + PAGE;
        let metrics = all
            .into_iter()
            .skip(offset)
            .take(PAGE)
            .map(|l| wire::Metric {
                namespace: Some(l.key.namespace),
                metric_name: Some(l.key.name),
                dimensions: Some(wire_dims(&l.key.dimensions)),
            })
            .collect();
        Ok(wire::ListMetricsOutput {
            metrics: Some(metrics),
            next_token: more.then(|| format!("berth-{}", offset + PAGE)),
            owning_accounts: None,
        })
    }
}

/// Checks a PutMetricAlarm request and builds the alarm it describes (state: new).
fn alarm_of(
    input: &wire::PutMetricAlarmInput,
    arn: String,
    now: i64,
) -> Result<wire::MetricAlarm, AwsError> {
    if input.metrics.as_ref().is_some_and(|m| !m.is_empty()) || input.threshold_metric_id.is_some()
    {
        return Err(invalid(
            "Berth does not evaluate alarms on metric math (Metrics, ThresholdMetricId) yet; alarm on one metric.",
        ));
    }
    if input.evaluation_criteria.is_some() {
        return Err(invalid("Berth does not evaluate PromQL alarms (EvaluationCriteria) yet."));
    }
    let name = input.metric_name.as_deref().ok_or_else(|| missing("MetricName"))?;
    let _ = name;
    let ns = input.namespace.as_deref().ok_or_else(|| missing("Namespace"))?;
    check_namespace(ns, "Namespace")?;
    check_dims(input.dimensions.as_deref().unwrap_or_default(), "Dimensions")?;
    match (&input.statistic, &input.extended_statistic) {
        (Some(_), Some(_)) => {
            return Err(combination(
                "The parameters Statistic and ExtendedStatistic are mutually exclusive.",
            ));
        }
        (None, None) => return Err(missing("Statistic or ExtendedStatistic")),
        (None, Some(e)) if parse_percentile(e).is_none() => {
            return Err(invalid(format!(
                "The value {e} for parameter ExtendedStatistic is invalid."
            )));
        }
        _ => {}
    }
    let period = input.period.ok_or_else(|| missing("Period"))?;
    if !(matches!(period, 10 | 20 | 30) || (period >= 60 && period % 60 == 0)) {
        return Err(invalid(format!(
            "The parameter Period must be 10, 20, 30 or a multiple of 60 (got {period})."
        )));
    }
    let n = input.evaluation_periods.ok_or_else(|| missing("EvaluationPeriods"))?;
    if i64::from(period) * i64::from(n) > 7 * 86_400 {
        return Err(invalid(
            "The product of EvaluationPeriods and Period must not exceed 7 days (604800 seconds).",
        ));
    }
    if let Some(m) = input.datapoints_to_alarm
        && m > n
    {
        return Err(invalid(format!(
            "DatapointsToAlarm ({m}) must be less than or equal to EvaluationPeriods ({n})."
        )));
    }
    let op = input.comparison_operator.ok_or_else(|| missing("ComparisonOperator"))?;
    if eval::Comparison::parse(op.as_str()).is_none() {
        return Err(invalid(format!(
            "Berth does not evaluate the ComparisonOperator {} (anomaly detection) yet.",
            op.as_str()
        )));
    }
    if input.threshold.is_none() {
        return Err(missing("Threshold"));
    }
    if let Some(t) = &input.treat_missing_data
        && eval::TreatMissing::parse(t).is_none()
    {
        return Err(invalid(format!(
            "The value {t} for parameter TreatMissingData is invalid: use missing, ignore, breaching or notBreaching."
        )));
    }
    if let Some(e) = &input.evaluate_low_sample_count_percentile
        && !matches!(e.as_str(), "evaluate" | "ignore")
    {
        return Err(invalid(format!(
            "The value {e} for parameter EvaluateLowSampleCountPercentile is invalid."
        )));
    }
    Ok(wire::MetricAlarm {
        alarm_name: input.alarm_name.clone(),
        alarm_arn: Some(arn),
        alarm_description: input.alarm_description.clone(),
        alarm_configuration_updated_timestamp: Some(secs(now)),
        actions_enabled: Some(input.actions_enabled.unwrap_or(true)),
        ok_actions: Some(input.ok_actions.clone().unwrap_or_default()),
        alarm_actions: Some(input.alarm_actions.clone().unwrap_or_default()),
        insufficient_data_actions: Some(
            input.insufficient_data_actions.clone().unwrap_or_default(),
        ),
        state_value: Some(wire::StateValue::InsufficientData),
        state_reason: Some("Unchecked: Initial alarm creation".into()),
        state_reason_data: None,
        state_updated_timestamp: Some(secs(now)),
        metric_name: input.metric_name.clone(),
        namespace: input.namespace.clone(),
        statistic: input.statistic,
        extended_statistic: input.extended_statistic.clone(),
        dimensions: Some(input.dimensions.clone().unwrap_or_default()),
        period: Some(period),
        unit: input.unit,
        evaluation_periods: Some(n),
        datapoints_to_alarm: input.datapoints_to_alarm,
        threshold: input.threshold,
        comparison_operator: Some(op),
        treat_missing_data: input.treat_missing_data.clone(),
        evaluate_low_sample_count_percentile: input.evaluate_low_sample_count_percentile.clone(),
        metrics: None,
        threshold_metric_id: None,
        evaluation_state: None,
        state_transitioned_timestamp: Some(secs(now)),
        evaluation_criteria: None,
        evaluation_interval: None,
    })
}

fn page<T>(
    items: Vec<T>,
    max: Option<i32>,
    default: usize,
    token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let offset = token_offset(token)?;
    let max = max.map_or(default, |m| m.clamp(1, 100) as usize);
    let more = items.len() > offset + max;
    let page = items.into_iter().skip(offset).take(max).collect();
    Ok((page, more.then(|| format!("berth-{}", offset + max))))
}

impl wire::AlarmsApi<RequestContext> for Region<'_> {
    async fn put_metric_alarm(
        &self,
        _ctx: &RequestContext,
        input: wire::PutMetricAlarmInput,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.alarm_name.clone().unwrap_or_default();
        let now = self.now_ms();
        let mut alarm = alarm_of(&input, self.alarm_arn(&name), now)?;
        let tags = input.tags.clone().unwrap_or_default();
        let region = self.region;
        self.cw
            .blocking(move |cw| {
                let _guard =
                    cw.alarm_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let old = cw.store.get_alarm(region, &name).map_err(store_error)?;
                let old: Option<StoredAlarm> = old.and_then(|b| serde_json::from_str(&b).ok());
                let summary = match &old {
                    // An update keeps the alarm's state, as CloudWatch does.
                    Some(o) => {
                        alarm.state_value = o.alarm.state_value;
                        alarm.state_reason.clone_from(&o.alarm.state_reason);
                        alarm.state_reason_data.clone_from(&o.alarm.state_reason_data);
                        alarm.state_updated_timestamp = o.alarm.state_updated_timestamp;
                        alarm.state_transitioned_timestamp = o.alarm.state_transitioned_timestamp;
                        format!("Alarm \"{name}\" updated")
                    }
                    None => format!("Alarm \"{name}\" created"),
                };
                let mut all_tags = old.map(|o| o.tags).unwrap_or_default();
                for t in tags {
                    all_tags.retain(|o| o.key != t.key);
                    all_tags.push(t);
                }
                cw.save(region, &StoredAlarm { alarm, tags: all_tags })?;
                cw.history_config(region, &name, now, &summary)?;
                // Evaluate the new configuration at the next tick.
                cw.evaluated
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&(region.to_string(), name.clone()));
                Ok(())
            })
            .await?;
        Ok(wire::Empty {})
    }

    async fn describe_alarms(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeAlarmsInput,
    ) -> Result<wire::DescribeAlarmsOutput, AwsError> {
        if input.alarm_names.is_some() && input.alarm_name_prefix.is_some() {
            return Err(combination(
                "The parameters AlarmNames and AlarmNamePrefix are mutually exclusive.",
            ));
        }
        if input.children_of_alarm_name.is_some() || input.parents_of_alarm_name.is_some() {
            return Ok(wire::DescribeAlarmsOutput {
                composite_alarms: Some(Vec::new()),
                metric_alarms: Some(Vec::new()),
                next_token: None,
            });
        }
        let wants_metric = input
            .alarm_types
            .as_ref()
            .is_none_or(|t| t.is_empty() || t.contains(&wire::AlarmType::MetricAlarm));
        let alarms: Vec<wire::MetricAlarm> = if wants_metric {
            self.alarms()
                .await?
                .into_iter()
                .map(|s| s.alarm)
                .filter(|a| {
                    let n = a.alarm_name.as_deref().unwrap_or_default();
                    input.alarm_names.as_ref().is_none_or(|names| names.iter().any(|x| x == n))
                        && input
                            .alarm_name_prefix
                            .as_ref()
                            .is_none_or(|p| n.starts_with(p.as_str()))
                        && input.state_value.is_none_or(|s| a.state_value == Some(s))
                        && input.action_prefix.as_ref().is_none_or(|p| {
                            a.alarm_actions
                                .iter()
                                .chain(&a.ok_actions)
                                .chain(&a.insufficient_data_actions)
                                .flatten()
                                .any(|x| x.starts_with(p.as_str()))
                        })
                })
                .collect()
        } else {
            Vec::new()
        };
        let (alarms, next) = page(alarms, input.max_records, 50, input.next_token.as_deref())?;
        Ok(wire::DescribeAlarmsOutput {
            composite_alarms: Some(Vec::new()),
            metric_alarms: Some(alarms),
            next_token: next,
        })
    }

    async fn describe_alarms_for_metric(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeAlarmsForMetricInput,
    ) -> Result<wire::DescribeAlarmsForMetricOutput, AwsError> {
        let dims = input.dimensions.as_deref().map(|d| {
            let mut d = dims_of(d);
            d.sort();
            d
        });
        let alarms = self
            .alarms()
            .await?
            .into_iter()
            .map(|s| s.alarm)
            .filter(|a| {
                a.namespace == input.namespace
                    && a.metric_name == input.metric_name
                    && input.statistic.is_none_or(|s| a.statistic == Some(s))
                    && input
                        .extended_statistic
                        .as_ref()
                        .is_none_or(|s| a.extended_statistic.as_ref() == Some(s))
                    && input.period.is_none_or(|p| a.period == Some(p))
                    && input.unit.is_none_or(|u| a.unit == Some(u))
                    && dims.as_ref().is_none_or(|d| {
                        let mut own = dims_of(a.dimensions.as_deref().unwrap_or_default());
                        own.sort();
                        own == *d
                    })
            })
            .collect();
        Ok(wire::DescribeAlarmsForMetricOutput { metric_alarms: Some(alarms) })
    }

    async fn delete_alarms(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteAlarmsInput,
    ) -> Result<wire::Empty, AwsError> {
        let names = input.alarm_names.unwrap_or_default();
        if names.len() > 100 {
            return Err(invalid("The collection AlarmNames must not have more than 100 members."));
        }
        let region = self.region;
        self.cw
            .blocking(move |cw| {
                let _guard =
                    cw.alarm_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut unknown = Vec::new();
                for n in &names {
                    if cw.store.get_alarm(region, n).map_err(store_error)?.is_none() {
                        unknown.push(n.as_str());
                    }
                }
                if !unknown.is_empty() {
                    return Err(ErrorCode::ResourceNotFound.with(format!(
                        "The following alarms could not be found: [{}].",
                        unknown.join(", ")
                    )));
                }
                for n in &names {
                    cw.store.delete_alarm(region, n).map_err(store_error)?;
                }
                Ok(())
            })
            .await?;
        Ok(wire::Empty {})
    }

    async fn set_alarm_state(
        &self,
        _ctx: &RequestContext,
        input: wire::SetAlarmStateInput,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.alarm_name.clone().unwrap_or_default();
        let new = input
            .state_value
            .and_then(|s| eval::State::parse(s.as_str()))
            .ok_or_else(|| missing("StateValue"))?;
        let reason = input.state_reason.clone().unwrap_or_default();
        if let Some(d) = &input.state_reason_data
            && serde_json::from_str::<serde_json::Value>(d).is_err()
        {
            return Err(ErrorCode::InvalidFormatFault
                .with("The parameter StateReasonData is not valid JSON."));
        }
        let data = input.state_reason_data.clone();
        let region = self.region;
        let found = self
            .modify(name.clone(), move |cw, s, now| {
                let a = &mut s.alarm;
                let old = a
                    .state_value
                    .and_then(|v| eval::State::parse(v.as_str()))
                    .unwrap_or(eval::State::InsufficientData);
                let old_reason = a.state_reason.clone().unwrap_or_default();
                a.state_value = wire::StateValue::from_str(new.as_str());
                a.state_reason = Some(reason.clone());
                a.state_reason_data = data;
                a.state_updated_timestamp = Some(secs(now));
                if old != new {
                    a.state_transitioned_timestamp = Some(secs(now));
                    let name = a.alarm_name.clone().unwrap_or_default();
                    cw.history_state(region, &name, now, old, &old_reason, new, &reason)?;
                }
                Ok(())
            })
            .await?;
        found.ok_or_else(|| {
            ErrorCode::ResourceNotFound.with(format!("Alarm {name} does not exist."))
        })?;
        Ok(wire::Empty {})
    }

    async fn enable_alarm_actions(
        &self,
        _ctx: &RequestContext,
        input: wire::EnableAlarmActionsInput,
    ) -> Result<wire::Empty, AwsError> {
        for n in input.alarm_names.unwrap_or_default() {
            self.modify(n, |_, s, _| {
                s.alarm.actions_enabled = Some(true);
                Ok(())
            })
            .await?;
        }
        Ok(wire::Empty {})
    }

    async fn disable_alarm_actions(
        &self,
        _ctx: &RequestContext,
        input: wire::DisableAlarmActionsInput,
    ) -> Result<wire::Empty, AwsError> {
        for n in input.alarm_names.unwrap_or_default() {
            self.modify(n, |_, s, _| {
                s.alarm.actions_enabled = Some(false);
                Ok(())
            })
            .await?;
        }
        Ok(wire::Empty {})
    }

    async fn describe_alarm_history(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeAlarmHistoryInput,
    ) -> Result<wire::DescribeAlarmHistoryOutput, AwsError> {
        let start = input.start_date.map_or(i64::MIN, ms);
        let end = input.end_date.map_or(i64::MAX, ms);
        let oldest_first = input.scan_by == Some(wire::ScanBy::TimestampAscending);
        let region = self.region;
        let alarm = input.alarm_name.clone();
        let items = self
            .cw
            .blocking(move |cw| {
                cw.store
                    .history(region, alarm.as_deref(), start, end, oldest_first)
                    .map_err(store_error)
            })
            .await?;
        let kind = input.history_item_type.map(|k| k.as_str());
        let items: Vec<wire::AlarmHistoryItem> = items
            .into_iter()
            .filter(|i| kind.is_none_or(|k| k == i.kind))
            .map(|i| {
                let body: serde_json::Value = serde_json::from_str(&i.body).unwrap_or_default();
                wire::AlarmHistoryItem {
                    alarm_name: Some(i.alarm),
                    alarm_contributor_id: None,
                    alarm_type: Some(wire::AlarmType::MetricAlarm),
                    timestamp: Some(secs(i.at_ms)),
                    history_item_type: wire::HistoryItemType::from_str(&i.kind),
                    history_summary: body["summary"].as_str().map(str::to_string),
                    history_data: body["data"].as_str().map(str::to_string),
                    alarm_contributor_attributes: None,
                }
            })
            .collect();
        let (items, next) = page(items, input.max_records, 100, input.next_token.as_deref())?;
        Ok(wire::DescribeAlarmHistoryOutput { alarm_history_items: Some(items), next_token: next })
    }
}

impl Region<'_> {
    /// The alarm an ARN names, in this region.
    fn alarm_of_arn(&self, arn: &str) -> Result<String, AwsError> {
        let prefix = self.alarm_arn("");
        arn.strip_prefix(prefix.as_str()).filter(|n| !n.is_empty()).map(str::to_string).ok_or_else(|| {
            ErrorCode::ResourceNotFoundException.with(format!(
                "{arn} is not the ARN of an alarm of this account and region (Berth tags alarms only)."
            ))
        })
    }

    async fn tags_of(
        &self,
        arn: &str,
        f: impl FnOnce(&mut Vec<wire::Tag>) + Send + 'static,
    ) -> Result<Vec<wire::Tag>, AwsError> {
        let name = self.alarm_of_arn(arn)?;
        self.modify(name, move |_, s, _| {
            f(&mut s.tags);
            Ok(s.tags.clone())
        })
        .await?
        .ok_or_else(|| {
            ErrorCode::ResourceNotFoundException.with(format!("The resource {arn} does not exist."))
        })
    }
}

impl wire::TagsApi<RequestContext> for Region<'_> {
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::TagResourceInput,
    ) -> Result<wire::TagResourceOutput, AwsError> {
        let tags = input.tags.unwrap_or_default();
        let all = self
            .tags_of(input.resource_arn.as_deref().unwrap_or_default(), move |t| {
                for n in tags {
                    t.retain(|o| o.key != n.key);
                    t.push(n);
                }
            })
            .await?;
        if all.len() > 50 {
            return Err(ErrorCode::LimitExceededFault.with("An alarm has at most 50 tags."));
        }
        Ok(wire::TagResourceOutput {})
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagResourceInput,
    ) -> Result<wire::UntagResourceOutput, AwsError> {
        let keys = input.tag_keys.unwrap_or_default();
        self.tags_of(input.resource_arn.as_deref().unwrap_or_default(), move |t| {
            t.retain(|o| !keys.iter().any(|k| o.key.as_deref() == Some(k.as_str())));
        })
        .await?;
        Ok(wire::UntagResourceOutput {})
    }

    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::ListTagsForResourceInput,
    ) -> Result<wire::ListTagsForResourceOutput, AwsError> {
        let tags = self.tags_of(input.resource_arn.as_deref().unwrap_or_default(), |_| {}).await?;
        Ok(wire::ListTagsForResourceOutput { tags: Some(tags) })
    }
}

impl<'a> wire::Api for Region<'a> {
    type Context = RequestContext;
    type Metrics = Region<'a>;
    type Alarms = Region<'a>;
    type Tags = Region<'a>;
    fn metrics(&self) -> &Self::Metrics {
        self
    }
    fn alarms(&self) -> &Self::Alarms {
        self
    }
    fn tags(&self) -> &Self::Tags {
        self
    }
}

/// Serves one CloudWatch request (JSON 1.0, query-compatible errors).
pub(crate) async fn serve(app: &App, req: axum::extract::Request, request_id: &str) -> Response {
    let result = async {
        let call = crate::protocol::json_call(
            app,
            req,
            request_id,
            &crate::protocol::JsonService {
                signing_name: wire::SIGNING_NAME,
                target_prefix: wire::TARGET_PREFIX,
                title: "Amazon CloudWatch",
                from_name: wire::Operation::from_name,
                name: wire::Operation::name,
            },
        )
        .await?;
        let api = Region {
            cw: &app.cloudwatch,
            region: call.region.name,
            partition: call.region.partition,
            account: &app.account_id,
        };
        wire::dispatch(&api, &call.ctx, call.op, &call.body).await
    }
    .await;
    let mut resp = match &result {
        Ok(body) => Response::new(Body::from(body.clone())),
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(request_id, code = e.code, message = %e.message, "request failed");
            }
            let mut r = Response::new(Body::from(e.to_body()));
            *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let query_code = ErrorCode::from_code(e.code).map_or(e.code, ErrorCode::query_code);
            let fault = if e.status >= 500 { "Receiver" } else { "Sender" };
            if let Ok(v) = HeaderValue::from_str(&format!("{query_code};{fault}")) {
                r.headers_mut().insert("x-amzn-query-error", v);
            }
            r.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(e.code));
            r
        }
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_0));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

impl CloudWatch {
    /// `stat` (`Average`, `Sum`, `p99`...) over every datapoint of one metric in
    /// `[start_ms, end_ms)` (by the time of its bucket); `None` when there is none. What
    /// Application Auto Scaling's `MetricSource` reads.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn statistic(
        &self,
        region: &str,
        namespace: &str,
        metric: &str,
        dimensions: &[(String, String)],
        stat: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<f64>, String> {
        let store = self.store.clone();
        let key = MetricKey::new(namespace, metric, dimensions);
        let region = region.to_string();
        let buckets =
            tokio::task::spawn_blocking(move || store.buckets(&region, &key, start_ms, end_ms, 60))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        let mut all: Option<Agg> = None;
        for b in buckets {
            match all.as_mut() {
                Some(a) => a.merge(&b.agg),
                None => all = Some(b.agg),
            }
        }
        Ok(all.and_then(|a| stat_value(&a, stat)))
    }
}

/// A CBOR text string (major type 3).
fn cbor_text(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 24 {
        out.push(0x60 | n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0x78, n as u8]);
    } else {
        let n = n.min(u16::MAX as usize);
        out.push(0x79);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&s.as_bytes()[..n]);
        return;
    }
    out.extend_from_slice(s.as_bytes());
}

/// `POST /service/{service}/operation/{operation}`: the smithy RPC v2 CBOR protocol, which
/// Berth does not serve yet. Refused in that protocol's own error shape (a CBOR map with
/// `__type` and `message`), naming the protocol to use instead.
pub(crate) async fn cbor_refused(
    axum::extract::Path((service, operation)): axum::extract::Path<(String, String)>,
) -> Response {
    let message = format!(
        "Berth does not serve the smithy RPC v2 CBOR protocol yet ({service}.{operation}); \
         CloudWatch is served over AWS JSON 1.0 (X-Amz-Target: {}.{operation}), which botocore \
         1.43 and the AWS CLI send.",
        wire::TARGET_PREFIX
    );
    let mut body = vec![0xa2];
    cbor_text(&mut body, "__type");
    cbor_text(&mut body, "UnsupportedFeatureException");
    cbor_text(&mut body, "message");
    cbor_text(&mut body, &message);
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/cbor"));
    h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    r
}
