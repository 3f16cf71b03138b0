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

mod alarms;
pub(crate) mod ecs_metrics;
pub(crate) mod eval;
pub(crate) mod math;
mod metrics;
pub(crate) mod prometheus;
mod scaling;
mod tags;

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

    /// Stores samples the server publishes itself (ECS metrics, log metric filters').
    pub async fn put_samples(self: &Arc<Self>, region: &'static str, samples: Vec<Sample>) {
        let r = self
            .blocking(move |cw| cw.store.put(region, &samples, cw.now_ms()).map_err(store_error))
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e.message, "metrics not stored");
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
