//! Application Auto Scaling (JSON 1.1, `AnyScaleFrontendService`, botocore's
//! `application-autoscaling` 2016-02-06) for ECS services, per region: scalable targets,
//! target tracking and step scaling policies, scheduled actions, scaling activities and tags.
//! The controller ([`controller`]) evaluates them and changes the services' desired counts.
//!
//! Contract and invariants:
//! * only `ServiceNamespace` `ecs`, `ScalableDimension` `ecs:service:DesiredCount` and
//!   `ResourceId` `service/CLUSTER/SERVICE` naming an ACTIVE service are accepted (anything
//!   else is a `ValidationException` naming what Berth scales);
//! * records live under `appautoscaling/` in the region's view: one per target
//!   (`targets/<ns>/<resource>/<dimension>`), per policy and per scheduled action (under their
//!   target's path, so a target's are one range read), per activity (newest first by key);
//!   resource ids and names are escaped in keys (`/` as `%2F`), so no name can reach into
//!   another's range;
//! * the API writes desired configuration only; the controller is the one writer of a
//!   policy's scaling memory (`lastScaleOut` / `lastScaleIn`) and a scheduled action's
//!   `evaluatedTo`, both with compare-and-set, so a concurrent PutScalingPolicy is never lost;
//! * desired counts change only through ECS's UpdateService (events and deployments follow);
//! * target tracking's `AlarmHigh` / `AlarmLow` are written to CloudWatch through
//!   [`metrics::AlarmSink`] when one is linked, and deleted with their policy or target;
//! * DeregisterScalableTarget deletes the target's policies and scheduled actions with it;
//!   activities stay (the last [`MAX_ACTIVITIES`] per target).

pub(crate) mod controller;
pub(crate) mod metrics;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use berth_model::regions::Region;
use berth_store::{Range, Store, Txn};
use berth_wire::AwsError;
use berth_wire::appautoscaling as wire;
use berth_wire::appautoscaling::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::ecs::{Ecs, RequestContext};
use crate::records;
use metrics::{AlarmSink, MetricSource};

const TARGETS: &str = "appautoscaling/targets/";
const POLICIES: &str = "appautoscaling/policies/";
const SCHEDULED: &str = "appautoscaling/scheduled/";
const ACTIVITIES: &str = "appautoscaling/activities/";

/// Activities kept per target (the oldest are dropped).
pub(crate) const MAX_ACTIVITIES: usize = 100;
/// Scaling policies per target (AWS's quota is 50).
const MAX_POLICIES: usize = 50;
/// Scheduled actions per target (AWS's quota is 200).
const MAX_SCHEDULED: usize = 200;

/// The one dimension Berth scales.
pub(crate) const ECS_DIMENSION: &str = "ecs:service:DesiredCount";

/// The CloudWatch side, linked once the server has built it (unset: no metric reaches
/// target tracking, and alarms are not created).
#[derive(Default)]
pub(crate) struct CloudWatchLink {
    pub metrics: OnceLock<Arc<dyn MetricSource>>,
    pub alarms: OnceLock<Arc<dyn AlarmSink>>,
    /// Where the load balancers' request metrics go ([`crate::elbv2::metrics`]).
    pub samples: OnceLock<Arc<crate::cloudwatch::CloudWatch>>,
}

/// A key segment: `%` and `/` escaped.
fn esc(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

/// What a target's records are keyed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TargetId {
    pub namespace: String,
    pub resource_id: String,
    pub dimension: String,
}

impl TargetId {
    fn path(&self) -> String {
        format!("{}/{}/{}/", self.namespace, esc(&self.resource_id), esc(&self.dimension))
    }
    fn key(&self) -> String {
        format!("{TARGETS}{}", self.path())
    }
    fn policies(&self) -> String {
        format!("{POLICIES}{}", self.path())
    }
    fn policy(&self, name: &str) -> String {
        format!("{}{}", self.policies(), esc(name))
    }
    fn scheduled_prefix(&self) -> String {
        format!("{SCHEDULED}{}", self.path())
    }
    fn scheduled(&self, name: &str) -> String {
        format!("{}{}", self.scheduled_prefix(), esc(name))
    }
    fn activities(&self) -> String {
        format!("{ACTIVITIES}{}", self.path())
    }
    /// `(cluster, service)` of `service/CLUSTER/SERVICE`.
    pub fn service(&self) -> Option<(&str, &str)> {
        let rest = self.resource_id.strip_prefix("service/")?;
        let (c, s) = rest.split_once('/')?;
        (!c.is_empty() && !s.is_empty() && !s.contains('/')).then_some((c, s))
    }
    fn describe(&self) -> String {
        format!(
            "service namespace: {}, resource ID: {}, scalable dimension: {}",
            self.namespace, self.resource_id, self.dimension
        )
    }
}

/// `appautoscaling/targets/...`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetRecord {
    pub namespace: String,
    pub resource_id: String,
    pub dimension: String,
    pub arn: String,
    pub min: u32,
    pub max: u32,
    pub role_arn: String,
    pub created: f64,
    #[serde(default)]
    pub suspended: wire::SuspendedState,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl TargetRecord {
    pub fn id(&self) -> TargetId {
        TargetId {
            namespace: self.namespace.clone(),
            resource_id: self.resource_id.clone(),
            dimension: self.dimension.clone(),
        }
    }
}

/// `appautoscaling/policies/...`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PolicyRecord {
    pub name: String,
    pub arn: String,
    pub namespace: String,
    pub resource_id: String,
    pub dimension: String,
    pub policy_type: wire::PolicyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<wire::StepScalingPolicyConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<wire::TargetTrackingScalingPolicyConfiguration>,
    /// Target tracking's AlarmHigh then AlarmLow.
    #[serde(default)]
    pub alarms: Vec<wire::Alarm>,
    pub created: f64,
    /// The controller's memory (epoch ms).
    #[serde(default)]
    pub last_scale_out: Option<i64>,
    #[serde(default)]
    pub last_scale_in: Option<i64>,
}

/// `appautoscaling/scheduled/...`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScheduledRecord {
    pub name: String,
    pub arn: String,
    pub namespace: String,
    pub resource_id: String,
    pub dimension: String,
    pub schedule: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub start: Option<f64>,
    #[serde(default)]
    pub end: Option<f64>,
    pub action: wire::ScalableTargetAction,
    pub created: f64,
    /// The controller has fired every firing up to here (epoch ms).
    pub evaluated_to: i64,
}

/// One region's Application Auto Scaling.
pub(crate) struct AppAutoScaling {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) region: Region,
    account_id: String,
    pub(crate) ecs: Arc<Ecs>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cloudwatch: Arc<CloudWatchLink>,
    /// How often the controller evaluates (AWS: one minute; `--app-autoscaling-period-secs`).
    pub(crate) period: std::time::Duration,
}

pub(crate) fn validation(m: impl Into<String>) -> AwsError {
    ErrorCode::ValidationException.with(m)
}

fn not_registered(id: &TargetId) -> AwsError {
    ErrorCode::ObjectNotFoundException
        .with(format!("No scalable target registered for {}", id.describe()))
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, AwsError> {
    v.ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl AppAutoScaling {
    pub fn new(
        store: Arc<dyn Store>,
        region: Region,
        account_id: &str,
        ecs: Arc<Ecs>,
        clock: Arc<dyn Clock>,
        cloudwatch: Arc<CloudWatchLink>,
        period: std::time::Duration,
    ) -> Self {
        Self { store, region, account_id: account_id.to_string(), ecs, clock, cloudwatch, period }
    }

    pub(crate) fn now(&self) -> f64 {
        crate::clock::epoch_seconds(self.clock.now())
    }

    pub(crate) fn now_ms(&self) -> i64 {
        (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn arn(&self, service: &str, rest: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{rest}",
            self.region.partition, self.region.name, self.account_id
        )
    }

    pub(crate) fn alarm_arn(&self, name: &str) -> String {
        self.arn("cloudwatch", &format!("alarm:{name}"))
    }

    /// The target a request names, checked as far as the request alone allows.
    fn target_id(
        &self,
        ns: Option<wire::ServiceNamespace>,
        resource_id: Option<String>,
        dim: Option<wire::ScalableDimension>,
    ) -> Result<TargetId, AwsError> {
        let ns = required(ns, "serviceNamespace")?;
        let resource_id = required(resource_id, "resourceId")?;
        let dim = required(dim, "scalableDimension")?;
        if ns != wire::ServiceNamespace::Ecs {
            return Err(validation(format!(
                "Berth scales ECS services only: ServiceNamespace {} is not supported (use ecs).",
                ns.as_str()
            )));
        }
        if dim != wire::ScalableDimension::EcsServiceDesiredCount {
            return Err(validation(format!(
                "Unsupported scalable dimension {} for service namespace ecs; use {ECS_DIMENSION}.",
                dim.as_str()
            )));
        }
        let id = TargetId {
            namespace: ns.as_str().into(),
            resource_id: resource_id.clone(),
            dimension: dim.as_str().into(),
        };
        if id.service().is_none() {
            return Err(validation(format!(
                "Unsupported resource ID {resource_id}: an ECS service's is service/CLUSTER/SERVICE."
            )));
        }
        Ok(id)
    }

    /// The ECS service behind `id`, which must be ACTIVE: its desired count.
    pub(crate) async fn service_desired(&self, id: &TargetId) -> Result<Option<u32>, AwsError> {
        use berth_wire::ecs::{Api, ServicesApi};
        let (cluster, service) = id.service().ok_or_else(|| validation("bad resource"))?;
        let out = self
            .ecs
            .services()
            .describe_services(
                &controller_ctx(&self.account_id),
                berth_wire::ecs::DescribeServicesRequest {
                    cluster: Some(cluster.into()),
                    services: Some(vec![service.into()]),
                    ..Default::default()
                },
            )
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code == "ClusterNotFoundException" => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out
            .services
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.status.as_deref() == Some("ACTIVE"))
            .map(|s| s.desired_count.unwrap_or(0).max(0) as u32))
    }

    /// Sets the service's desired count through UpdateService.
    pub(crate) async fn set_desired(&self, id: &TargetId, n: u32) -> Result<(), AwsError> {
        use berth_wire::ecs::{Api, ServicesApi};
        let (cluster, service) = id.service().ok_or_else(|| validation("bad resource"))?;
        self.ecs
            .services()
            .update_service(
                &controller_ctx(&self.account_id),
                berth_wire::ecs::UpdateServiceRequest {
                    cluster: Some(cluster.into()),
                    service: Some(service.into()),
                    desired_count: Some(n as i32),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ())
    }

    pub(crate) async fn target(
        &self,
        id: &TargetId,
    ) -> Result<Option<(TargetRecord, u64)>, AwsError> {
        records::get(&*self.store, &id.key()).await
    }

    pub(crate) async fn targets(&self) -> Result<Vec<(TargetRecord, u64)>, AwsError> {
        self.list(TARGETS).await
    }

    pub(crate) async fn list<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(T, u64)>, AwsError> {
        let recs = self.store.range(Range::prefix(prefix)).await.map_err(crate::error::store)?;
        records::decode_all(recs)
    }

    async fn list_keyed<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, AwsError> {
        let recs = self.store.range(Range::prefix(prefix)).await.map_err(crate::error::store)?;
        recs.into_iter()
            .map(|r| {
                serde_json::from_slice(&r.value)
                    .map(|v| (r.key.clone(), v))
                    .map_err(|e| crate::error::corrupt(&r.key, e))
            })
            .collect()
    }

    pub(crate) async fn policies_of(
        &self,
        id: &TargetId,
    ) -> Result<Vec<(PolicyRecord, u64)>, AwsError> {
        self.list(&id.policies()).await
    }

    pub(crate) async fn scheduled_of(
        &self,
        id: &TargetId,
    ) -> Result<Vec<(ScheduledRecord, u64)>, AwsError> {
        self.list(&id.scheduled_prefix()).await
    }

    /// Records one activity (and drops the target's oldest beyond [`MAX_ACTIVITIES`]).
    pub(crate) async fn record_activity(
        &self,
        id: &TargetId,
        description: String,
        cause: String,
        status: wire::ScalingActivityStatusCode,
        message: Option<String>,
    ) -> Result<(), AwsError> {
        let now = self.now();
        let act = wire::ScalingActivity {
            activity_id: Some(new_id()),
            service_namespace: wire::ServiceNamespace::from_str(&id.namespace),
            resource_id: Some(id.resource_id.clone()),
            scalable_dimension: wire::ScalableDimension::from_str(&id.dimension),
            description: Some(description),
            cause: Some(cause),
            start_time: Some(now),
            end_time: Some(now),
            status_code: Some(status),
            status_message: message,
            ..Default::default()
        };
        // Newest first in key order: the time's complement, then the id.
        let key = format!(
            "{}{:020}-{}",
            id.activities(),
            i64::MAX - (now * 1000.0) as i64,
            act.activity_id.as_deref().unwrap_or_default()
        );
        let mut txn = Txn::new().put(&key, records::encode(&act));
        let old =
            self.store.range(Range::prefix(&id.activities())).await.map_err(crate::error::store)?;
        for r in old.iter().skip(MAX_ACTIVITIES - 1) {
            txn = txn.delete(&r.key);
        }
        records::commit(&*self.store, txn).await?;
        Ok(())
    }

    async fn delete_alarms(&self, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        if let Some(sink) = self.cloudwatch.alarms.get()
            && let Err(e) = sink.delete_alarms(self.region.name, &names).await
        {
            tracing::warn!(error = %e, "could not delete target tracking alarms");
        }
    }
}

/// The context the controller acts with (ECS's UpdateService).
pub(crate) fn controller_ctx(account: &str) -> RequestContext {
    RequestContext {
        principal: Arc::new(crate::auth::Principal {
            arn: format!(
                "arn:aws:iam::{account}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"
            ),
            account_id: account.to_string(),
            access_key_id: String::new(),
            instance: None,
        }),
        request_id: new_id(),
    }
}

/// A page of `items` after the token's position (`NextToken` is the last item's index).
fn page<T>(
    items: Vec<T>,
    max_results: Option<i32>,
    next_token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let limit = match max_results {
        None => max,
        Some(n) if n >= 1 && n as usize <= max => n as usize,
        Some(n) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {max}"
            )));
        }
    };
    let skip = match next_token {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("p")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ErrorCode::InvalidNextTokenException.with("Invalid token"))?,
    };
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(skip).take(limit).collect();
    let next = (skip + out.len() < total).then(|| format!("p{}", skip + out.len()));
    Ok((out, next))
}

fn filter_names(names: &Option<Vec<String>>, name: &str) -> bool {
    names.as_ref().is_none_or(|n| n.is_empty() || n.iter().any(|x| x == name))
}

impl wire::ScalableTargetsApi<RequestContext> for AppAutoScaling {
    async fn register_scalable_target(
        &self,
        _ctx: &RequestContext,
        input: wire::RegisterScalableTargetRequest,
    ) -> Result<wire::RegisterScalableTargetResponse, AwsError> {
        let id =
            self.target_id(input.service_namespace, input.resource_id, input.scalable_dimension)?;
        let cap = |v: Option<i32>, f: &str| -> Result<Option<u32>, AwsError> {
            v.map(|n| {
                u32::try_from(n).map_err(|_| {
                    validation(format!(
                        "1 validation error detected: Value '{n}' at '{f}' failed to satisfy constraint: Member must have value greater than or equal to 0"
                    ))
                })
            })
            .transpose()
        };
        let min = cap(input.min_capacity, "minCapacity")?;
        let max = cap(input.max_capacity, "maxCapacity")?;
        if self.service_desired(&id).await?.is_none() {
            return Err(validation(format!("ECS service doesn't exist: {}", id.resource_id)));
        }
        let key = id.key();
        let mut cas =
            records::Cas::new(&*self.store, format!("scalable target {}", id.resource_id));
        loop {
            cas.attempt().await?;
            let existing: Option<(TargetRecord, u64)> = records::get(&*self.store, &key).await?;
            let (rec, txn) = match existing {
                Some((mut rec, rev)) => {
                    rec.min = min.unwrap_or(rec.min);
                    rec.max = max.unwrap_or(rec.max);
                    if let Some(s) = &input.suspended_state {
                        merge_suspended(&mut rec.suspended, s);
                    }
                    if let Some(r) = &input.role_arn {
                        rec.role_arn = r.clone();
                    }
                    (rec.clone(), Txn::new().when(&key, rev))
                }
                None => {
                    let (Some(min), Some(max)) = (min, max) else {
                        return Err(validation(
                            "MinCapacity and MaxCapacity are required when registering a new scalable target.",
                        ));
                    };
                    let mut suspended = wire::SuspendedState {
                        dynamic_scaling_in_suspended: Some(false),
                        dynamic_scaling_out_suspended: Some(false),
                        scheduled_scaling_suspended: Some(false),
                    };
                    if let Some(s) = &input.suspended_state {
                        merge_suspended(&mut suspended, s);
                    }
                    let rec = TargetRecord {
                        namespace: id.namespace.clone(),
                        resource_id: id.resource_id.clone(),
                        dimension: id.dimension.clone(),
                        arn: self.arn(
                            "application-autoscaling",
                            &format!("scalable-target/0ec{}", new_id().replace('-', "")),
                        ),
                        min,
                        max,
                        role_arn: input.role_arn.clone().unwrap_or_else(|| {
                            self.arn("iam", "role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService")
                                .replace(&format!(":{}:", self.region.name), "::")
                        }),
                        created: self.now(),
                        suspended,
                        tags: input.tags.clone().unwrap_or_default(),
                    };
                    (rec, Txn::new().when(&key, 0))
                }
            };
            if rec.min > rec.max {
                return Err(validation(format!(
                    "Minimum capacity ({}) cannot be greater than maximum capacity ({}).",
                    rec.min, rec.max
                )));
            }
            check_tags(&rec.tags)?;
            if cas.commit(txn.put(&key, records::encode(&rec))).await? {
                return Ok(wire::RegisterScalableTargetResponse {
                    scalable_target_arn: Some(rec.arn),
                });
            }
        }
    }

    async fn describe_scalable_targets(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeScalableTargetsRequest,
    ) -> Result<wire::DescribeScalableTargetsResponse, AwsError> {
        let ns = required(input.service_namespace, "serviceNamespace")?;
        let prefix = format!("{TARGETS}{}/", ns.as_str());
        let all: Vec<(TargetRecord, u64)> = self.list(&prefix).await?;
        let items: Vec<wire::ScalableTarget> = all
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| filter_names(&input.resource_ids, &r.resource_id))
            .filter(|r| input.scalable_dimension.is_none_or(|d| d.as_str() == r.dimension))
            .map(|r| wire::ScalableTarget {
                service_namespace: wire::ServiceNamespace::from_str(&r.namespace),
                resource_id: Some(r.resource_id),
                scalable_dimension: wire::ScalableDimension::from_str(&r.dimension),
                min_capacity: Some(r.min as i32),
                max_capacity: Some(r.max as i32),
                role_arn: Some(r.role_arn),
                creation_time: Some(r.created),
                suspended_state: Some(r.suspended),
                scalable_target_arn: Some(r.arn),
                ..Default::default()
            })
            .collect();
        let (items, next) = page(items, input.max_results, input.next_token.as_deref(), 50)?;
        Ok(wire::DescribeScalableTargetsResponse {
            scalable_targets: Some(items),
            next_token: next,
        })
    }

    async fn deregister_scalable_target(
        &self,
        _ctx: &RequestContext,
        input: wire::DeregisterScalableTargetRequest,
    ) -> Result<wire::DeregisterScalableTargetResponse, AwsError> {
        let id =
            self.target_id(input.service_namespace, input.resource_id, input.scalable_dimension)?;
        let Some((_, rev)) = self.target(&id).await? else {
            return Err(not_registered(&id));
        };
        let policies = self.policies_of(&id).await?;
        let scheduled = self.scheduled_of(&id).await?;
        let mut txn = Txn::new().when(id.key(), rev).delete(id.key());
        let mut alarms = vec![];
        for (p, _) in &policies {
            txn = txn.delete(id.policy(&p.name));
            alarms.extend(p.alarms.iter().filter_map(|a| a.alarm_name.clone()));
        }
        for (s, _) in &scheduled {
            txn = txn.delete(id.scheduled(&s.name));
        }
        if !records::commit(&*self.store, txn).await? {
            return Err(ErrorCode::ConcurrentUpdateException.with(format!(
                "The scalable target {} was changed while it was being deregistered; try again.",
                id.resource_id
            )));
        }
        self.delete_alarms(alarms).await;
        Ok(wire::DeregisterScalableTargetResponse {})
    }
}

fn merge_suspended(into: &mut wire::SuspendedState, from: &wire::SuspendedState) {
    if let Some(v) = from.dynamic_scaling_in_suspended {
        into.dynamic_scaling_in_suspended = Some(v);
    }
    if let Some(v) = from.dynamic_scaling_out_suspended {
        into.dynamic_scaling_out_suspended = Some(v);
    }
    if let Some(v) = from.scheduled_scaling_suspended {
        into.scheduled_scaling_suspended = Some(v);
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
    if tags.len() > 50 {
        return Err(ErrorCode::TooManyTagsException
            .with(format!("A resource can have at most 50 tags; {} were given.", tags.len())));
    }
    if let Some(k) = tags.keys().find(|k| k.starts_with("aws:")) {
        return Err(validation(format!(
            "Tag key {k}: the aws: prefix is reserved for use by AWS."
        )));
    }
    Ok(())
}

/// `(namespace, metric, dimensions, statistic)`.
pub(crate) type TrackedMetric = (String, String, Vec<(String, String)>, metrics::Statistic);

/// The metric a target tracking configuration tracks: `(namespace, metric, dimensions,
/// statistic)`, or why Berth cannot track it.
pub(crate) fn tracked_metric(
    id: &TargetId,
    c: &wire::TargetTrackingScalingPolicyConfiguration,
) -> Result<TrackedMetric, AwsError> {
    match (&c.predefined_metric_specification, &c.customized_metric_specification) {
        (Some(_), Some(_)) => Err(validation(
            "TargetTrackingScalingPolicyConfiguration: specify either PredefinedMetricSpecification or CustomizedMetricSpecification, not both.",
        )),
        (None, None) => Err(validation(
            "TargetTrackingScalingPolicyConfiguration: one of PredefinedMetricSpecification and CustomizedMetricSpecification is required.",
        )),
        (Some(p), None) => {
            let (cluster, service) = id.service().unwrap_or_default();
            let dims = vec![
                ("ClusterName".to_string(), cluster.to_string()),
                ("ServiceName".to_string(), service.to_string()),
            ];
            let t = required(p.predefined_metric_type, "predefinedMetricType")?;
            let metric = match t {
                wire::MetricType::ECSServiceAverageCPUUtilization => "CPUUtilization",
                wire::MetricType::ECSServiceAverageMemoryUtilization => "MemoryUtilization",
                wire::MetricType::ALBRequestCountPerTarget => {
                    let tg = alb_target_group(p.resource_label.as_deref())?;
                    return Ok((
                        crate::elbv2::metrics::NAMESPACE.into(),
                        "RequestCountPerTarget".into(),
                        vec![("TargetGroup".to_string(), tg)],
                        metrics::Statistic::Sum,
                    ));
                }
                other => {
                    return Err(validation(format!(
                        "PredefinedMetricType {} is not valid for service namespace ecs; use ECSServiceAverageCPUUtilization or ECSServiceAverageMemoryUtilization.",
                        other.as_str()
                    )));
                }
            };
            Ok(("AWS/ECS".into(), metric.into(), dims, metrics::Statistic::Average))
        }
        (None, Some(m)) => {
            if m.metrics.is_some() {
                return Err(validation(
                    "CustomizedMetricSpecification.Metrics: metric math queries are not supported by Berth yet; give MetricName, Namespace, Dimensions and Statistic.",
                ));
            }
            let name = required(m.metric_name.clone(), "customizedMetricSpecification.metricName")?;
            let ns = required(m.namespace.clone(), "customizedMetricSpecification.namespace")?;
            let stat = required(m.statistic, "customizedMetricSpecification.statistic")?;
            let stat = metrics::Statistic::parse(stat.as_str())
                .ok_or_else(|| validation("customizedMetricSpecification.statistic"))?;
            let dims = m
                .dimensions
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|d| (d.name.unwrap_or_default(), d.value.unwrap_or_default()))
                .collect();
            Ok((ns, name, dims, stat))
        }
    }
}

/// The `TargetGroup` dimension (`targetgroup/NAME/ID`) of an `ALBRequestCountPerTarget`
/// metric's `ResourceLabel` (`app/LB-NAME/LB-ID/targetgroup/TG-NAME/TG-ID`).
pub(crate) fn alb_target_group(label: Option<&str>) -> Result<String, AwsError> {
    let bad = || {
        validation(format!(
            "PredefinedMetricSpecification.ResourceLabel {}is not valid for ALBRequestCountPerTarget: it must be app/<load-balancer-name>/<load-balancer-id>/targetgroup/<target-group-name>/<target-group-id>.",
            label.map(|l| format!("{l} ")).unwrap_or_default()
        ))
    };
    let label = label.ok_or_else(bad)?;
    match label.split('/').collect::<Vec<_>>().as_slice() {
        ["app", lb, lb_id, "targetgroup", tg, tg_id]
            if [lb, lb_id, tg, tg_id].iter().all(|s| !s.is_empty()) =>
        {
            Ok(format!("targetgroup/{tg}/{tg_id}"))
        }
        _ => Err(bad()),
    }
}

/// The step scaling settings as the pure decision reads them.
pub(crate) fn step_policy(
    c: &wire::StepScalingPolicyConfiguration,
) -> Result<berth_controllers::app_scaling::StepPolicy, AwsError> {
    use berth_controllers::app_scaling::{AdjustmentType as A, Step, StepPolicy, check_steps};
    let adjustment_type =
        match required(c.adjustment_type, "stepScalingPolicyConfiguration.adjustmentType")? {
            wire::AdjustmentType::ChangeInCapacity => A::ChangeInCapacity,
            wire::AdjustmentType::PercentChangeInCapacity => A::PercentChangeInCapacity,
            wire::AdjustmentType::ExactCapacity => A::ExactCapacity,
        };
    let steps: Vec<Step> = c
        .step_adjustments
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|s| Step {
            lower: s.metric_interval_lower_bound,
            upper: s.metric_interval_upper_bound,
            adjustment: s.scaling_adjustment.unwrap_or(0),
        })
        .collect();
    check_steps(&steps).map_err(validation)?;
    if c.min_adjustment_magnitude.is_some() && adjustment_type != A::PercentChangeInCapacity {
        return Err(validation(
            "MinAdjustmentMagnitude may only be specified when AdjustmentType is PercentChangeInCapacity.",
        ));
    }
    Ok(StepPolicy {
        adjustment_type,
        steps,
        min_adjustment_magnitude: c.min_adjustment_magnitude,
        cooldown_ms: i64::from(c.cooldown.unwrap_or(0).max(0)) * 1000,
    })
}

impl wire::ScalingPoliciesApi<RequestContext> for AppAutoScaling {
    async fn put_scaling_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::PutScalingPolicyRequest,
    ) -> Result<wire::PutScalingPolicyResponse, AwsError> {
        let id =
            self.target_id(input.service_namespace, input.resource_id, input.scalable_dimension)?;
        let name = required(input.policy_name.clone(), "policyName")?;
        let policy_type = input.policy_type.unwrap_or(wire::PolicyType::StepScaling);
        if self.target(&id).await?.is_none() {
            return Err(not_registered(&id));
        }
        let mut tracked = None;
        match policy_type {
            wire::PolicyType::PredictiveScaling => {
                return Err(validation(
                    "PolicyType PredictiveScaling is not supported by Berth yet; use TargetTrackingScaling or StepScaling.",
                ));
            }
            wire::PolicyType::TargetTrackingScaling => {
                if input.step_scaling_policy_configuration.is_some() {
                    return Err(validation(
                        "StepScalingPolicyConfiguration cannot be given with PolicyType TargetTrackingScaling.",
                    ));
                }
                let c = required(
                    input.target_tracking_scaling_policy_configuration.as_ref(),
                    "targetTrackingScalingPolicyConfiguration",
                )?;
                let target = required(
                    c.target_value,
                    "targetTrackingScalingPolicyConfiguration.targetValue",
                )?;
                if !(target > 0.0 && target.is_finite()) {
                    return Err(validation(format!(
                        "TargetValue must be greater than 0; got {target}."
                    )));
                }
                tracked = Some(tracked_metric(&id, c)?);
            }
            wire::PolicyType::StepScaling => {
                if input.target_tracking_scaling_policy_configuration.is_some() {
                    return Err(validation(
                        "TargetTrackingScalingPolicyConfiguration cannot be given with PolicyType StepScaling.",
                    ));
                }
                let c = required(
                    input.step_scaling_policy_configuration.as_ref(),
                    "stepScalingPolicyConfiguration",
                )?;
                step_policy(c)?;
            }
        }
        let key = id.policy(&name);
        let mut cas = records::Cas::new(&*self.store, format!("scaling policy {name}"));
        let (rec, stale_alarms) = loop {
            cas.attempt().await?;
            let existing: Option<(PolicyRecord, u64)> = records::get(&*self.store, &key).await?;
            if existing.is_none() && self.policies_of(&id).await?.len() >= MAX_POLICIES {
                return Err(ErrorCode::LimitExceededException.with(format!(
                    "A scalable target can have at most {MAX_POLICIES} scaling policies."
                )));
            }
            let (mut rec, txn) = match existing {
                Some((rec, rev)) => (rec, Txn::new().when(&key, rev)),
                None => {
                    let rec = PolicyRecord {
                        name: name.clone(),
                        arn: self.arn(
                            "autoscaling",
                            &format!(
                                "scalingPolicy:{}:resource/{}/{}:policyName/{name}",
                                new_id(),
                                id.namespace,
                                id.resource_id
                            ),
                        ),
                        namespace: id.namespace.clone(),
                        resource_id: id.resource_id.clone(),
                        dimension: id.dimension.clone(),
                        policy_type,
                        step: None,
                        tracking: None,
                        alarms: vec![],
                        created: self.now(),
                        last_scale_out: None,
                        last_scale_in: None,
                    };
                    (rec, Txn::new().when(&key, 0))
                }
            };
            let old_alarms: Vec<String> =
                rec.alarms.iter().filter_map(|a| a.alarm_name.clone()).collect();
            rec.policy_type = policy_type;
            rec.step = input.step_scaling_policy_configuration.clone();
            rec.tracking = input.target_tracking_scaling_policy_configuration.clone();
            rec.alarms = match policy_type {
                wire::PolicyType::TargetTrackingScaling => {
                    // A policy keeps its alarm names across updates (as AWS does).
                    if old_alarms.len() == 2 {
                        rec.alarms.clone()
                    } else {
                        let uuid = new_id();
                        ["AlarmHigh", "AlarmLow"]
                            .iter()
                            .map(|kind| {
                                let n = format!("TargetTracking-{}-{kind}-{uuid}", id.resource_id);
                                wire::Alarm {
                                    alarm_arn: Some(self.alarm_arn(&n)),
                                    alarm_name: Some(n),
                                }
                            })
                            .collect()
                    }
                }
                _ => vec![],
            };
            let stale: Vec<String> = old_alarms
                .into_iter()
                .filter(|n| !rec.alarms.iter().any(|a| a.alarm_name.as_deref() == Some(n)))
                .collect();
            if cas.commit(txn.put(&key, records::encode(&rec))).await? {
                break (rec, stale);
            }
        };
        self.delete_alarms(stale_alarms).await;
        if let (Some(sink), Some((ns, metric, dims, stat)), Some(c)) =
            (self.cloudwatch.alarms.get(), tracked, rec.tracking.as_ref())
        {
            let target = c.target_value.unwrap_or_default();
            for spec in
                controller::alarm_specs(&rec, &ns, &metric, &dims, stat, target, self.period)
            {
                if let Err(e) = sink.put_alarm(self.region.name, &spec).await {
                    tracing::warn!(alarm = %spec.name, error = %e, "could not create target tracking alarm");
                }
            }
        }
        Ok(wire::PutScalingPolicyResponse { policy_arn: Some(rec.arn), alarms: Some(rec.alarms) })
    }

    async fn describe_scaling_policies(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeScalingPoliciesRequest,
    ) -> Result<wire::DescribeScalingPoliciesResponse, AwsError> {
        let ns = required(input.service_namespace, "serviceNamespace")?;
        let prefix = format!("{POLICIES}{}/", ns.as_str());
        let all: Vec<(PolicyRecord, u64)> = self.list(&prefix).await?;
        let items: Vec<wire::ScalingPolicy> = all
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| filter_names(&input.policy_names, &r.name))
            .filter(|r| input.resource_id.as_ref().is_none_or(|x| *x == r.resource_id))
            .filter(|r| input.scalable_dimension.is_none_or(|d| d.as_str() == r.dimension))
            .map(|r| wire::ScalingPolicy {
                policy_arn: Some(r.arn),
                policy_name: Some(r.name),
                service_namespace: wire::ServiceNamespace::from_str(&r.namespace),
                resource_id: Some(r.resource_id),
                scalable_dimension: wire::ScalableDimension::from_str(&r.dimension),
                policy_type: Some(r.policy_type),
                step_scaling_policy_configuration: r.step,
                target_tracking_scaling_policy_configuration: r.tracking,
                alarms: Some(r.alarms),
                creation_time: Some(r.created),
                ..Default::default()
            })
            .collect();
        let (items, next) = page(items, input.max_results, input.next_token.as_deref(), 50)?;
        Ok(wire::DescribeScalingPoliciesResponse {
            scaling_policies: Some(items),
            next_token: next,
        })
    }

    async fn delete_scaling_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteScalingPolicyRequest,
    ) -> Result<wire::DeleteScalingPolicyResponse, AwsError> {
        let id =
            self.target_id(input.service_namespace, input.resource_id, input.scalable_dimension)?;
        let name = required(input.policy_name, "policyName")?;
        let key = id.policy(&name);
        let Some((rec, rev)) = records::get::<PolicyRecord>(&*self.store, &key).await? else {
            return Err(ErrorCode::ObjectNotFoundException.with(format!(
                "No scaling policy found for service namespace: {}, resource ID: {}, scalable dimension: {}, policy name: {name}",
                id.namespace, id.resource_id, id.dimension
            )));
        };
        if !records::commit(&*self.store, Txn::new().when(&key, rev).delete(&key)).await? {
            return Err(ErrorCode::ConcurrentUpdateException
                .with(format!("The scaling policy {name} was changed concurrently; try again.")));
        }
        self.delete_alarms(rec.alarms.iter().filter_map(|a| a.alarm_name.clone()).collect()).await;
        Ok(wire::DeleteScalingPolicyResponse {})
    }
}

impl wire::ActivitiesApi<RequestContext> for AppAutoScaling {
    async fn describe_scaling_activities(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeScalingActivitiesRequest,
    ) -> Result<wire::DescribeScalingActivitiesResponse, AwsError> {
        let ns = required(input.service_namespace, "serviceNamespace")?;
        let prefix = match (&input.resource_id, input.scalable_dimension) {
            (Some(r), Some(d)) => TargetId {
                namespace: ns.as_str().into(),
                resource_id: r.clone(),
                dimension: d.as_str().into(),
            }
            .activities(),
            _ => format!("{ACTIVITIES}{}/", ns.as_str()),
        };
        let mut all: Vec<(String, wire::ScalingActivity)> = self.list_keyed(&prefix).await?;
        // Newest first across targets too.
        all.sort_by(|a, b| {
            b.1.start_time.unwrap_or_default().total_cmp(&a.1.start_time.unwrap_or_default())
        });
        let items: Vec<wire::ScalingActivity> = all
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| {
                input.resource_id.as_ref().is_none_or(|r| a.resource_id.as_ref() == Some(r))
            })
            .filter(|a| {
                input.include_not_scaled_activities == Some(true)
                    || a.not_scaled_reasons.as_ref().is_none_or(|r| r.is_empty())
            })
            .collect();
        let (items, next) = page(items, input.max_results, input.next_token.as_deref(), 50)?;
        Ok(wire::DescribeScalingActivitiesResponse {
            scaling_activities: Some(items),
            next_token: next,
        })
    }
}

impl wire::ScheduledActionsApi<RequestContext> for AppAutoScaling {
    async fn put_scheduled_action(
        &self,
        _ctx: &RequestContext,
        input: wire::PutScheduledActionRequest,
    ) -> Result<wire::PutScheduledActionResponse, AwsError> {
        use berth_controllers::app_scaling::{Schedule, time_zone};
        let id =
            self.target_id(input.service_namespace, input.resource_id, input.scalable_dimension)?;
        let name = required(input.scheduled_action_name.clone(), "scheduledActionName")?;
        if self.target(&id).await?.is_none() {
            return Err(not_registered(&id));
        }
        let key = id.scheduled(&name);
        let existing: Option<(ScheduledRecord, u64)> = records::get(&*self.store, &key).await?;
        let schedule = match (&input.schedule, &existing) {
            (Some(s), _) => s.clone(),
            (None, Some((r, _))) => r.schedule.clone(),
            (None, None) => required(None, "schedule")?,
        };
        Schedule::parse(&schedule).map_err(validation)?;
        let timezone = input
            .timezone
            .clone()
            .or_else(|| existing.as_ref().and_then(|(r, _)| r.timezone.clone()));
        time_zone(timezone.as_deref()).map_err(validation)?;
        let action = input
            .scalable_target_action
            .clone()
            .or_else(|| existing.as_ref().map(|(r, _)| r.action.clone()))
            .unwrap_or_default();
        if action.min_capacity.is_none() && action.max_capacity.is_none() {
            return Err(validation(
                "ScalableTargetAction must specify MinCapacity, MaxCapacity or both.",
            ));
        }
        if let (Some(a), Some(b)) = (action.min_capacity, action.max_capacity)
            && a > b
        {
            return Err(validation(format!(
                "ScalableTargetAction: MinCapacity ({a}) cannot be greater than MaxCapacity ({b})."
            )));
        }
        if action.min_capacity.is_some_and(|n| n < 0) || action.max_capacity.is_some_and(|n| n < 0)
        {
            return Err(validation("ScalableTargetAction capacities must not be negative."));
        }
        if let (Some(s), Some(e)) = (input.start_time, input.end_time)
            && s > e
        {
            return Err(validation("StartTime must be before EndTime."));
        }
        if existing.is_none() && self.scheduled_of(&id).await?.len() >= MAX_SCHEDULED {
            return Err(ErrorCode::LimitExceededException.with(format!(
                "A scalable target can have at most {MAX_SCHEDULED} scheduled actions."
            )));
        }
        let now_ms = self.now_ms();
        let (rec, txn) = match existing {
            Some((mut rec, rev)) => {
                rec.schedule = schedule;
                rec.timezone = timezone;
                rec.start = input.start_time.or(rec.start);
                rec.end = input.end_time.or(rec.end);
                rec.action = action;
                // A changed schedule starts counting now.
                rec.evaluated_to = now_ms;
                (rec, Txn::new().when(&key, rev))
            }
            None => (
                ScheduledRecord {
                    arn: self.arn(
                        "autoscaling",
                        &format!(
                            "scheduledAction:{}:resource/{}/{}:scheduledActionName/{name}",
                            new_id(),
                            id.namespace,
                            id.resource_id
                        ),
                    ),
                    name: name.clone(),
                    namespace: id.namespace.clone(),
                    resource_id: id.resource_id.clone(),
                    dimension: id.dimension.clone(),
                    schedule,
                    timezone,
                    start: input.start_time,
                    end: input.end_time,
                    action,
                    created: self.now(),
                    evaluated_to: now_ms,
                },
                Txn::new().when(&key, 0),
            ),
        };
        if !records::commit(&*self.store, txn.put(&key, records::encode(&rec))).await? {
            return Err(ErrorCode::ConcurrentUpdateException.with(format!(
                "The scheduled action {name} was changed concurrently; try again."
            )));
        }
        Ok(wire::PutScheduledActionResponse {})
    }

    async fn describe_scheduled_actions(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeScheduledActionsRequest,
    ) -> Result<wire::DescribeScheduledActionsResponse, AwsError> {
        let ns = required(input.service_namespace, "serviceNamespace")?;
        let prefix = format!("{SCHEDULED}{}/", ns.as_str());
        let all: Vec<(ScheduledRecord, u64)> = self.list(&prefix).await?;
        let items: Vec<wire::ScheduledAction> = all
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| filter_names(&input.scheduled_action_names, &r.name))
            .filter(|r| input.resource_id.as_ref().is_none_or(|x| *x == r.resource_id))
            .filter(|r| input.scalable_dimension.is_none_or(|d| d.as_str() == r.dimension))
            .map(|r| wire::ScheduledAction {
                scheduled_action_name: Some(r.name),
                scheduled_action_arn: Some(r.arn),
                service_namespace: wire::ServiceNamespace::from_str(&r.namespace),
                schedule: Some(r.schedule),
                timezone: r.timezone,
                resource_id: Some(r.resource_id),
                scalable_dimension: wire::ScalableDimension::from_str(&r.dimension),
                start_time: r.start,
                end_time: r.end,
                scalable_target_action: Some(r.action),
                creation_time: Some(r.created),
            })
            .collect();
        let (items, next) = page(items, input.max_results, input.next_token.as_deref(), 50)?;
        Ok(wire::DescribeScheduledActionsResponse {
            scheduled_actions: Some(items),
            next_token: next,
        })
    }

    async fn delete_scheduled_action(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteScheduledActionRequest,
    ) -> Result<wire::DeleteScheduledActionResponse, AwsError> {
        let id =
            self.target_id(input.service_namespace, input.resource_id, input.scalable_dimension)?;
        let name = required(input.scheduled_action_name, "scheduledActionName")?;
        let key = id.scheduled(&name);
        let Some((_, rev)) = records::get::<ScheduledRecord>(&*self.store, &key).await? else {
            return Err(ErrorCode::ObjectNotFoundException.with(format!(
                "No scheduled action found for service namespace: {}, resource ID: {}, scalable dimension: {}, scheduled action name: {name}",
                id.namespace, id.resource_id, id.dimension
            )));
        };
        if !records::commit(&*self.store, Txn::new().when(&key, rev).delete(&key)).await? {
            return Err(ErrorCode::ConcurrentUpdateException.with(format!(
                "The scheduled action {name} was changed concurrently; try again."
            )));
        }
        Ok(wire::DeleteScheduledActionResponse {})
    }
}

impl AppAutoScaling {
    /// The scalable target whose ARN is `arn`, with its key and revision.
    async fn target_by_arn(&self, arn: &str) -> Result<(String, TargetRecord, u64), AwsError> {
        let recs = self.store.range(Range::prefix(TARGETS)).await.map_err(crate::error::store)?;
        for r in recs {
            let t: TargetRecord =
                serde_json::from_slice(&r.value).map_err(|e| crate::error::corrupt(&r.key, e))?;
            if t.arn == arn {
                return Ok((r.key, t, r.mod_revision));
            }
        }
        Err(ErrorCode::ResourceNotFoundException
            .with(format!("No scalable target found for ARN {arn}.")))
    }

    async fn edit_tags(
        &self,
        arn: &str,
        f: impl Fn(&mut BTreeMap<String, String>),
    ) -> Result<(), AwsError> {
        let mut cas = records::Cas::new(&*self.store, format!("tags of {arn}"));
        loop {
            cas.attempt().await?;
            let (key, mut rec, rev) = self.target_by_arn(arn).await?;
            f(&mut rec.tags);
            check_tags(&rec.tags)?;
            if cas.commit(Txn::new().when(&key, rev).put(&key, records::encode(&rec))).await? {
                return Ok(());
            }
        }
    }
}

impl wire::TagsApi<RequestContext> for AppAutoScaling {
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::TagResourceRequest,
    ) -> Result<wire::TagResourceResponse, AwsError> {
        let arn = required(input.resource_arn, "resourceARN")?;
        let tags = required(input.tags, "tags")?;
        self.edit_tags(&arn, |t| t.extend(tags.clone())).await?;
        Ok(wire::TagResourceResponse {})
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagResourceRequest,
    ) -> Result<wire::UntagResourceResponse, AwsError> {
        let arn = required(input.resource_arn, "resourceARN")?;
        let keys = required(input.tag_keys, "tagKeys")?;
        self.edit_tags(&arn, |t| t.retain(|k, _| !keys.contains(k))).await?;
        Ok(wire::UntagResourceResponse {})
    }

    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::ListTagsForResourceRequest,
    ) -> Result<wire::ListTagsForResourceResponse, AwsError> {
        let arn = required(input.resource_arn, "resourceARN")?;
        let (_, rec, _) = self.target_by_arn(&arn).await?;
        Ok(wire::ListTagsForResourceResponse { tags: Some(rec.tags) })
    }
}

impl wire::Api for AppAutoScaling {
    type Context = RequestContext;
    type ScalableTargets = Self;
    type ScalingPolicies = Self;
    type Activities = Self;
    type ScheduledActions = Self;
    type Tags = Self;
    fn scalable_targets(&self) -> &Self {
        self
    }
    fn scaling_policies(&self) -> &Self {
        self
    }
    fn activities(&self) -> &Self {
        self
    }
    fn scheduled_actions(&self) -> &Self {
        self
    }
    fn tags(&self) -> &Self {
        self
    }
}

/// Serves one Application Auto Scaling request (routed here by its
/// `application-autoscaling` credential scope).
pub(crate) async fn serve(
    app: &crate::App,
    req: axum::extract::Request,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let call = crate::protocol::json_call(
        app,
        req,
        request_id,
        &crate::protocol::JsonService {
            signing_name: wire::SIGNING_NAME,
            target_prefix: wire::TARGET_PREFIX,
            title: "Application Auto Scaling",
            from_name: wire::Operation::from_name,
            name: wire::Operation::name,
        },
    )
    .await?;
    let api = app.regions.services(call.region).appautoscaling.clone();
    wire::dispatch(&*api, &call.ctx, call.op, &call.body).await
}
