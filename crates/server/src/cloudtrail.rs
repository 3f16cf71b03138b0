//! The audit trail (issue #16): every call Berth serves is recorded as a CloudTrail event in
//! this server's `DATA_DIR/trail.db` ([`berth_trail`]), and CloudTrail's LookupEvents (JSON
//! 1.1, botocore's `cloudtrail` model, signing name `cloudtrail`) reads it back.
//!
//! How a call is recorded:
//! * [`crate::protocol`]'s front door puts an empty [`Slot`] in every request's extensions;
//! * once a request is authenticated and its operation known, and before it is authorized
//!   ([`crate::auth::authorize_call`], which every AWS front end goes through), [`note`] fills
//!   the slot: who (the principal and its access key), what (service and operation), where from
//!   (the peer address, the User-Agent), and the request parameters with every member
//!   botocore's model marks sensitive replaced by `HIDDEN_DUE_TO_SECURITY_REASONS`
//!   ([`berth_wire::sensitive`]), as CloudTrail hides them;
//! * when the answer is ready, [`CloudTrail::finish`] records the event with the error code
//!   and message if the call failed (an [`ErrorCode`] the error responses carry): allowed and
//!   denied calls alike. Requests that never authenticate name no one and are not recorded,
//!   as in CloudTrail; nor is the agent channel (`/berth/agent/...`).
//!
//! Resources (LookupEvents' `ResourceName` / `ResourceType`): every ARN the request names,
//! typed from the ARN (`arn:aws:ecs:...:cluster/prod` is an `AWS::ECS::Cluster`), and ECS's
//! short `cluster`, `service` and task definition `family` names.
//!
//! Events are kept `--trail-retention-days` (90 by default, as the event history), per
//! server: with several servers on etcd each keeps the calls it answered.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::Response;
use berth_trail::{Attribute, Event, Query, Resource, Trail};
use berth_wire::cloudtrail as wire;
use berth_wire::{AwsError, common};
use serde_json::{Map, Value};

use crate::App;
use crate::auth::{Action, Authenticated};
use crate::ecs::RequestContext;
use crate::iam::resources::Body;

/// The placeholder CloudTrail writes for a hidden value.
pub(crate) const HIDDEN: &str = "HIDDEN_DUE_TO_SECURITY_REASONS";

/// Request parameters larger than this (serialized) are replaced by a note.
const MAX_PARAMS_BYTES: usize = 8 * 1024;

/// How often the retention sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The error a response carries, for the trail (set by the protocols' error responses).
#[derive(Clone, Debug)]
pub(crate) struct ErrorCode {
    pub code: String,
    pub message: String,
}

/// What is known of a call so far (see the module header).
#[derive(Clone, Default)]
pub(crate) struct Slot(Arc<Mutex<Option<Pending>>>);

struct Pending {
    time_ms: i64,
    service: String,
    operation: String,
    region: &'static str,
    principal_arn: String,
    account_id: String,
    access_key_id: String,
    source_ip: Option<String>,
    user_agent: Option<String>,
    params: Value,
    resources: Vec<Resource>,
}

/// The trail of this server and its LookupEvents.
pub(crate) struct CloudTrail {
    trail: Trail,
    retention: Duration,
}

impl CloudTrail {
    pub fn open(
        path: &std::path::Path,
        retention: Duration,
    ) -> Result<Self, berth_trail::TrailError> {
        Ok(Self { trail: Trail::open(path)?, retention })
    }

    /// Records the call `slot` describes (if it got as far as naming its caller) with the
    /// outcome `resp` carries.
    pub fn finish(&self, slot: &Slot, request_id: &str, resp: &Response) {
        let Some(p) = slot.0.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let error = resp.extensions().get::<ErrorCode>().cloned().or_else(|| {
            // A front end that answers its own errors still names the code in the header.
            (resp.status().as_u16() >= 400).then(|| ErrorCode {
                code: resp
                    .headers()
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok())
                    .map_or("UnknownError", |c| c.split(':').next().unwrap_or(c))
                    .to_string(),
                message: String::new(),
            })
        });
        let event_id = uuid::Uuid::new_v4().to_string();
        let username = username(&p.principal_arn);
        let source = format!("{}.amazonaws.com", p.service);
        let read_only = read_only(&p.operation);
        let mut record = serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": identity_type(&p.principal_arn),
                "principalId": p.access_key_id,
                "arn": p.principal_arn,
                "accountId": p.account_id,
                "accessKeyId": p.access_key_id,
                "userName": username,
            },
            "eventTime": rfc3339(p.time_ms),
            "eventSource": source,
            "eventName": p.operation,
            "awsRegion": p.region,
            "sourceIPAddress": p.source_ip,
            "userAgent": p.user_agent,
            "requestParameters": p.params,
            "responseElements": Value::Null,
            "requestID": request_id,
            "eventID": event_id,
            "readOnly": read_only,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": p.account_id,
            "eventCategory": "Management",
        });
        if let Some(e) = &error {
            record["errorCode"] = e.code.clone().into();
            record["errorMessage"] = e.message.clone().into();
        }
        self.trail.record(Event {
            id: event_id,
            time_ms: p.time_ms,
            region: p.region.to_string(),
            name: p.operation,
            source,
            username: Some(username),
            access_key_id: Some(p.access_key_id),
            read_only,
            resources: p.resources,
            record: record.to_string(),
        });
    }

    /// Deletes events past the retention, every hour, until `stop`.
    pub async fn sweeper(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let me = self.clone();
            let cutoff = now_ms() - me.retention.as_millis() as i64;
            match tokio::task::spawn_blocking(move || me.trail.sweep(cutoff)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(deleted = n, "audit trail retention sweep"),
                Ok(Err(e)) => tracing::warn!(error = %e, "audit trail retention sweep failed"),
                Err(e) => tracing::warn!(error = %e, "audit trail retention sweep panicked"),
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Fills the request's [`Slot`] (see the module header); a request without one (an internal
/// call) is not recorded.
pub(crate) fn note(
    parts: &http::request::Parts,
    signed: &Authenticated,
    action: Action<'_>,
    body: Body<'_>,
) {
    let Some(slot) = parts.extensions.get::<Slot>() else { return };
    let hidden = berth_wire::sensitive::sensitive_paths(action.service, action.operation);
    let params = match body {
        Body::Json(b) => match serde_json::from_slice::<Value>(b) {
            Ok(mut v) => {
                for path in hidden {
                    hide(&mut v, &path.split('.').collect::<Vec<_>>());
                }
                v
            }
            Err(_) => Value::Null,
        },
        Body::Form(f) => {
            let mut m = Map::new();
            for (k, v) in f.params() {
                if k == "Action" || k == "Version" {
                    continue;
                }
                let secret = hidden.iter().any(|p| form_key_matches(k, p));
                m.insert(k.to_string(), if secret { HIDDEN.into() } else { v.into() });
            }
            Value::Object(m)
        }
    };
    let resources = resources(action.service, &params);
    // CloudTrail omits request parameters that are too large; Berth keeps events small so the
    // trail never competes with the store for space (a 64 KiB task definition per call).
    let params = if params.to_string().len() > MAX_PARAMS_BYTES {
        serde_json::json!({ "berth:omitted": format!(
            "request parameters over {} KiB are not recorded", MAX_PARAMS_BYTES / 1024
        ) })
    } else {
        params
    };
    let p = &signed.principal;
    let peer = parts.extensions.get::<berth_serve::Peer>();
    *slot.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Pending {
        time_ms: now_ms(),
        service: action.service.to_string(),
        operation: action.operation.to_string(),
        region: signed.region.name,
        principal_arn: p.arn.clone(),
        account_id: p.account_id.clone(),
        access_key_id: p.access_key_id.clone(),
        source_ip: peer.map(|p| p.addr.ip().to_string()),
        user_agent: parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        params,
        resources,
    });
}

/// Replaces what `path` reaches in `v` by [`HIDDEN`] (`*`: every element or value).
fn hide(v: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        if !v.is_null() {
            *v = HIDDEN.into();
        }
        return;
    };
    match (v, *first) {
        (Value::Array(items), "*") => items.iter_mut().for_each(|i| hide(i, rest)),
        (Value::Object(m), "*") => m.values_mut().for_each(|i| hide(i, rest)),
        (Value::Object(m), key) => {
            if let Some(child) = m.get_mut(key) {
                hide(child, rest);
            }
        }
        _ => {}
    }
}

/// Whether a form key (`Tags.member.1.Value`) is at a sensitive path (`Tags.*.Value`): list
/// and map markers (`member`, `entry`) are dropped and indexes match `*`.
fn form_key_matches(key: &str, path: &str) -> bool {
    let key: Vec<&str> =
        key.split('.').filter(|s| *s != "member" && *s != "entry" && *s != "value").collect();
    let path: Vec<&str> = path.split('.').collect();
    // A key below a sensitive member is sensitive too.
    key.len() >= path.len()
        && path
            .iter()
            .zip(&key)
            .all(|(p, k)| *p == *k || (*p == "*" && k.chars().all(|c| c.is_ascii_digit())))
}

/// The resources a request names (see the module header).
fn resources(service: &str, params: &Value) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    let mut add = |kind: String, name: &str| {
        if !name.is_empty() && !out.iter().any(|r| r.kind == kind && r.name == name) {
            out.push(Resource { kind, name: name.to_string() });
        }
    };
    let visit = |v: &Value, add: &mut dyn FnMut(String, &str)| {
        if let Some(s) = v.as_str()
            && let Some(kind) = arn_kind(s)
        {
            add(kind, s);
        }
    };
    match params {
        Value::Object(m) => {
            for (k, v) in m {
                let items: Vec<&Value> = match v {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    visit(item, &mut add);
                    if service == "ecs"
                        && let Some(s) = item.as_str()
                        && !s.starts_with("arn:")
                        && let Some(kind) = ecs_name_kind(k)
                    {
                        add(kind.to_string(), s);
                    }
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| visit(i, &mut add)),
        _ => {}
    }
    out
}

/// The resource type an ECS request member names by its short name.
fn ecs_name_kind(member: &str) -> Option<&'static str> {
    Some(match member {
        "cluster" | "clusterName" | "clusters" => "AWS::ECS::Cluster",
        "service" | "serviceName" | "services" => "AWS::ECS::Service",
        "family" | "taskDefinition" => "AWS::ECS::TaskDefinition",
        _ => return None,
    })
}

/// `arn:aws:ecs:r:a:task-definition/web:3` -> `AWS::ECS::TaskDefinition`.
fn arn_kind(arn: &str) -> Option<String> {
    let mut it = arn.splitn(6, ':');
    if it.next()? != "arn" {
        return None;
    }
    let _partition = it.next()?;
    let service = it.next()?;
    let resource = it.nth(2)?;
    let kind = resource.split(['/', ':']).next().filter(|k| !k.is_empty())?;
    let service = match service {
        "ecs" => "ECS",
        "ecr" => "ECR",
        "ec2" => "EC2",
        "iam" => "IAM",
        "sts" => "STS",
        "ssm" => "SSM",
        "logs" => "Logs",
        "elasticloadbalancing" => "ElasticLoadBalancingV2",
        "secretsmanager" => "SecretsManager",
        "servicediscovery" => "ServiceDiscovery",
        "autoscaling" => "AutoScaling",
        "application-autoscaling" => "ApplicationAutoScaling",
        "cloudwatch" => "CloudWatch",
        other => return Some(format!("AWS::{other}::{}", pascal(kind))),
    };
    Some(format!("AWS::{service}::{}", pascal(kind)))
}

fn pascal(kebab: &str) -> String {
    kebab
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn username(arn: &str) -> String {
    if arn.ends_with(":root") {
        return "root".into();
    }
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

fn identity_type(arn: &str) -> &'static str {
    if arn.ends_with(":root") {
        "Root"
    } else if arn.contains(":user/") {
        "IAMUser"
    } else if arn.contains(":assumed-role/") {
        "AssumedRole"
    } else {
        "Unknown"
    }
}

/// CloudTrail marks these read-only.
fn read_only(op: &str) -> bool {
    ["Describe", "List", "Get", "Lookup", "BatchGet", "BatchCheck", "Discover", "Filter", "Search"]
        .iter()
        .any(|p| op.starts_with(p))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

fn invalid(code: &'static str, message: impl Into<String>) -> AwsError {
    AwsError::new(code, 400, message)
}

impl wire::EventsApi<RequestContext> for Lookup<'_> {
    async fn lookup_events(
        &self,
        _ctx: &RequestContext,
        input: wire::LookupEventsRequest,
    ) -> Result<wire::LookupEventsResponse, AwsError> {
        let attrs = input.lookup_attributes.unwrap_or_default();
        if attrs.len() > 1 {
            return Err(invalid(
                "InvalidLookupAttributesException",
                "LookupAttributes: specify at most one lookup attribute.",
            ));
        }
        let filter = match attrs.into_iter().next() {
            None => None,
            Some(a) => {
                let key = match a.attribute_key.as_ref().map_or("", |k| k.as_str()) {
                    "EventId" => Attribute::EventId,
                    "EventName" => Attribute::EventName,
                    "ReadOnly" => Attribute::ReadOnly,
                    "Username" => Attribute::Username,
                    "ResourceType" => Attribute::ResourceType,
                    "ResourceName" => Attribute::ResourceName,
                    "EventSource" => Attribute::EventSource,
                    "AccessKeyId" => Attribute::AccessKeyId,
                    other => {
                        return Err(invalid(
                            "InvalidLookupAttributesException",
                            format!(
                                "LookupAttributes[0].AttributeKey: {other} is not a lookup attribute."
                            ),
                        ));
                    }
                };
                Some((key, a.attribute_value.unwrap_or_default()))
            }
        };
        if input.event_category.is_some() {
            return Err(invalid(
                "InvalidEventCategoryException",
                "EventCategory insight: Berth records management events only; omit EventCategory.",
            ));
        }
        // 1..=50, checked against the model before this runs.
        let max = input.max_results.unwrap_or(50).clamp(1, 50);
        let to_ms = |t: f64| (t * 1000.0) as i64;
        let end_ms = input.end_time.map_or(i64::MAX, to_ms);
        let start_ms = input.start_time.map_or(0, to_ms);
        if start_ms > end_ms {
            return Err(invalid(
                "InvalidTimeRangeException",
                "StartTime: the start time must be before the end time.",
            ));
        }
        let q = Query {
            region: self.region.to_string(),
            filter,
            start_ms,
            end_ms,
            limit: max as usize,
            token: input.next_token,
        };
        let trail = self.trail.clone();
        let page = tokio::task::spawn_blocking(move || {
            trail.trail.flush()?;
            trail.trail.lookup(&q)
        })
        .await
        .map_err(|e| common::internal(format!("audit trail lookup: {e}")))?
        .map_err(|e| match e {
            berth_trail::TrailError::InvalidToken(t) => invalid(
                "InvalidNextTokenException",
                format!("NextToken {t:?} is not a token of this server's LookupEvents."),
            ),
            other => common::internal(format!("audit trail lookup: {other}")),
        })?;
        Ok(wire::LookupEventsResponse {
            events: Some(
                page.events
                    .into_iter()
                    .map(|e| wire::Event {
                        event_id: Some(e.id),
                        event_name: Some(e.name),
                        read_only: Some(e.read_only.to_string()),
                        access_key_id: e.access_key_id,
                        event_time: Some(e.time_ms as f64 / 1000.0),
                        event_source: Some(e.source),
                        username: e.username,
                        resources: Some(
                            e.resources
                                .into_iter()
                                .map(|r| wire::Resource {
                                    resource_type: Some(r.kind),
                                    resource_name: Some(r.name),
                                })
                                .collect(),
                        ),
                        cloud_trail_event: Some(e.record),
                    })
                    .collect(),
            ),
            next_token: page.next_token,
        })
    }
}

/// LookupEvents in one region.
struct Lookup<'a> {
    trail: Arc<CloudTrail>,
    region: &'a str,
}

impl wire::Api for Lookup<'_> {
    type Context = RequestContext;
    type Events = Self;
    fn events(&self) -> &Self {
        self
    }
}

/// Serves one CloudTrail request (already routed here by its `cloudtrail` credential scope).
pub(crate) async fn serve(
    app: &App,
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
            title: "AWS CloudTrail",
            from_name: wire::Operation::from_name,
            name: wire::Operation::name,
        },
    )
    .await?;
    let api = Lookup { trail: app.trail.clone(), region: call.region.name };
    wire::dispatch(&api, &call.ctx, call.op, &call.body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_members_are_hidden_in_json_and_form_requests() {
        let mut v = serde_json::json!({
            "Name": "db", "SecretString": "hunter2", "Tags": [{"Key": "k", "Value": "v"}],
        });
        for p in berth_wire::sensitive::sensitive_paths("secretsmanager", "CreateSecret") {
            hide(&mut v, &p.split('.').collect::<Vec<_>>());
        }
        assert_eq!(v["SecretString"], HIDDEN);
        assert_eq!(v["Name"], "db");
        assert_eq!(v["Tags"][0]["Value"], "v", "only the model's sensitive members");
        let mut run = serde_json::json!({"overrides": {"containerOverrides": [
            {"name": "a", "environment": [{"name": "K", "value": "secret"}]},
            {"name": "b"},
        ]}});
        for p in berth_wire::sensitive::sensitive_paths("ecs", "RunTask") {
            hide(&mut run, &p.split('.').collect::<Vec<_>>());
        }
        assert_eq!(run["overrides"]["containerOverrides"][0]["environment"], HIDDEN);
        assert_eq!(run["overrides"]["containerOverrides"][1]["name"], "b");
        // (form key, sensitive path, hidden)
        let table = [
            ("Value", "Value", true),
            ("Tags.member.1.Value", "Value", false),
            ("Tags.member.1.Value", "Tags.*.Value", true),
            ("Tags.member.1.Key", "Tags.*.Value", false),
            ("Password.Extra", "Password", true),
        ];
        for (key, path, want) in table {
            assert_eq!(form_key_matches(key, path), want, "{key} vs {path}");
        }
    }

    #[test]
    fn resources_are_typed_from_their_arns_and_ecs_names() {
        let v = serde_json::json!({
            "cluster": "prod",
            "tasks": ["arn:aws:ecs:us-east-1:123456789012:task/prod/abc"],
            "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
            "count": 2,
        });
        let r = resources("ecs", &v);
        let got: Vec<(&str, &str)> = r.iter().map(|r| (r.kind.as_str(), r.name.as_str())).collect();
        assert!(got.contains(&("AWS::ECS::Cluster", "prod")), "{got:?}");
        assert!(
            got.contains(&("AWS::ECS::Task", "arn:aws:ecs:us-east-1:123456789012:task/prod/abc"))
        );
        assert!(got.contains(&(
            "AWS::ECS::TaskDefinition",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"
        )));
        assert_eq!(got.len(), 3);
        assert_eq!(
            arn_kind("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/tg/0123").as_deref(),
            Some("AWS::ElasticLoadBalancingV2::Targetgroup")
        );
        assert_eq!(arn_kind("not-an-arn"), None);
    }

    #[test]
    fn identities_and_read_only_calls() {
        assert_eq!(username("arn:aws:iam::1:root"), "root");
        assert_eq!(username("arn:aws:iam::1:user/alice"), "alice");
        assert_eq!(username("arn:aws:sts::1:assumed-role/app/session-1"), "session-1");
        assert_eq!(identity_type("arn:aws:sts::1:assumed-role/app/s"), "AssumedRole");
        assert!(read_only("DescribeClusters") && read_only("GetSecretValue"));
        assert!(!read_only("RunTask") && !read_only("PutParameter"));
    }
}
