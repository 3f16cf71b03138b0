//! The AWS JSON 1.1 front end: `POST /` with `X-Amz-Target: <prefix>.<Operation>`.
//!
//! Contract, for every request: a fresh `x-amzn-RequestId` on the response; the body is read
//! up to the configured cap (larger → 413 `RequestEntityTooLargeException`); the signature is
//! checked before anything about the request is revealed; errors are AWS error bodies with
//! `x-amzn-ErrorType`. Nothing a client sends can make this layer panic.
//!
//! Every call goes to the ECS of the region its credential scope names ([`crate::regions`]);
//! the unsigned calls: the agents' join names its region in its body (default: the
//! server's), and `GET` [`berth_agent_protocol::INFO_PATH`] tells that default. Berth's admin API (join tokens) is account-wide: any region's scope reaches it.
//!
//! Other services share `/`: [`form`] routes each request by the service of its credential
//! scope, and serves the form-encoded ones (EC2, STS) itself.

mod form;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use berth_wire::{AwsError, common, ecs as wire_ecs};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;

use crate::App;
use crate::auth::{self, Action};
use crate::ecs::{Ecs, RequestContext};
use berth_model::regions::Region;

const JSON_1_1: &str = "application/x-amz-json-1.1";

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", any(handle))
        .route(berth_agent_protocol::POLL_PATH, axum::routing::post(agent_poll))
        .route(berth_agent_protocol::REPORT_PATH, axum::routing::post(agent_report))
        .route(berth_agent_protocol::JOIN_PATH, axum::routing::post(agent_join))
        .route(berth_agent_protocol::LOGS_PATH, axum::routing::post(agent_logs))
        .route(berth_agent_protocol::STATS_PATH, axum::routing::post(agent_stats))
        .route("/metrics", get(crate::cloudwatch::prometheus::serve))
        .route(
            "/service/{service}/operation/{operation}",
            axum::routing::post(crate::cloudwatch::cbor_refused),
        )
        .route(berth_agent_protocol::SECRETS_PATH, axum::routing::post(agent_secrets))
        .route(berth_agent_protocol::CREDENTIALS_PATH, axum::routing::post(agent_credentials))
        .route(
            berth_agent_protocol::REGISTRY_CREDENTIALS_PATH,
            axum::routing::post(agent_registry_credentials),
        )
        .route(berth_agent_protocol::INFO_PATH, get(server_info).post(server_info))
        .route(admin::CREATE_PATH, axum::routing::post(admin_create_token))
        .route(admin::LIST_PATH, axum::routing::post(admin_list_tokens))
        .route(admin::REVOKE_PATH, axum::routing::post(admin_revoke_token))
        .route(admin::SPOT_INTERRUPT_PATH, axum::routing::post(admin_spot_interrupt))
        .route(admin::SPOT_CAPACITY_PATH, axum::routing::post(admin_spot_capacity))
        .route(admin::REGISTRY_GC_PATH, axum::routing::post(admin_registry_gc))
        .fallback(any(not_found))
        .layer(axum::middleware::from_fn(crate::cloudwatch::prometheus::measure))
        .with_state(app)
}

async fn not_found() -> Response {
    error_response(
        &uuid::Uuid::new_v4().to_string(),
        &common::unknown_operation("Berth serves AWS JSON requests at POST / only."),
    )
}

/// Every AWS call: answered, then recorded in the audit trail ([`crate::cloudtrail`]).
async fn handle(State(app): State<Arc<App>>, mut req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let slot = crate::cloudtrail::Slot::default();
    req.extensions_mut().insert(slot.clone());
    let resp = answer(&app, req, &request_id).await;
    app.trail.finish(&slot, &request_id, &resp);
    resp
}

async fn answer(app: &Arc<App>, req: Request, request_id: &str) -> Response {
    let request_id = request_id.to_string();
    match form::route(&req) {
        form::Route::Json => {}
        form::Route::SecretsManager => {
            return json_response(
                crate::secretsmanager::serve(app, req, &request_id).await,
                &request_id,
            );
        }
        form::Route::Ssm => {
            return match crate::ssm::serve(app, req, &request_id).await {
                Ok(body) => json_response(Ok(body), &request_id),
                Err(e) => error_response(&request_id, &e),
            };
        }
        form::Route::Ecr => {
            return match crate::ecr::serve(app, req, &request_id).await {
                Ok(body) => json_response(Ok(body), &request_id),
                Err(e) => error_response(&request_id, &e),
            };
        }
        form::Route::ServiceDiscovery => {
            return json_response(
                crate::servicediscovery::serve(app, req, &request_id).await,
                &request_id,
            );
        }
        form::Route::CloudWatch => return crate::cloudwatch::serve(app, req, &request_id).await,
        form::Route::AppAutoScaling => {
            return json_response(
                crate::appautoscaling::serve(app, req, &request_id).await,
                &request_id,
            );
        }
        form::Route::Logs => {
            return json_response(crate::logs::serve(app, req, &request_id).await, &request_id);
        }
        form::Route::CloudTrail => {
            return json_response(
                crate::cloudtrail::serve(app, req, &request_id).await,
                &request_id,
            );
        }
        form::Route::Form(service) => return form::serve(app, service, req, &request_id).await,
        form::Route::NotServed { service, form: true } => {
            let e = form::not_served_error(&service);
            return form::error_response(berth_wire::query::Flavor::Query, "", &request_id, &e);
        }
        form::Route::NotServed { service, form: false } => {
            return error_response(
                &request_id,
                &common::unknown_operation(format!(
                    "Berth does not serve the `{service}` service yet; it serves {}.",
                    form::SERVED
                )),
            );
        }
    }
    match serve(app, req, &request_id).await {
        Ok(body) => {
            let mut resp = Response::new(Body::from(body));
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                h.insert("x-amzn-requestid", v);
            }
            resp
        }
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(request_id, code = e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(request_id, code = e.code, message = %e.message, "request refused");
            }
            error_response(&request_id, &e)
        }
    }
}

/// How much of a body over the cap is read and discarded before the 413 is sent.
const DRAIN_MAX: usize = 8 << 20;

/// Reads `body` up to `cap` bytes. A longer one is read on to its end (at most [`DRAIN_MAX`]
/// more bytes, and within the body-read timeout) and discarded before the 413 is answered: a
/// server that answers while the client is still writing and then closes the connection
/// resets it, and the client loses the answer to a broken pipe.
pub(crate) async fn read_capped(mut body: Body, cap: usize) -> Result<bytes::Bytes, AwsError> {
    let mut kept = Vec::new();
    let mut discarded: Option<usize> = None;
    while let Some(frame) = body.frame().await {
        let frame = match (frame, discarded) {
            (Ok(f), _) => f,
            (Err(_), Some(_)) => break,
            (Err(e), None) => {
                return Err(common::invalid_request(format!(
                    "could not read the request body: {e}"
                )));
            }
        };
        let Ok(data) = frame.into_data() else { continue };
        match discarded.as_mut() {
            None if kept.len() + data.len() <= cap => kept.extend_from_slice(&data),
            None => {
                discarded = Some(kept.len() + data.len());
                kept = Vec::new();
            }
            Some(n) => *n += data.len(),
        }
        if discarded.is_some_and(|n| n > cap.saturating_add(DRAIN_MAX)) {
            break;
        }
    }
    match discarded {
        Some(_) => Err(common::request_too_large(cap)),
        None => Ok(kept.into()),
    }
}

/// Reads the body under the cap and authenticates the request; an instance key must sign for
/// its own instance's region.
async fn read_authenticated(
    app: &App,
    req: Request,
) -> Result<(http::request::Parts, bytes::Bytes, auth::Authenticated), AwsError> {
    let (parts, body) = req.into_parts();
    let body = read_capped(body, app.max_body_bytes).await?;
    let signed = app.auth.authenticate(&parts, &body, wire_ecs::SIGNING_NAME).await?;
    auth::authorize_region(&signed.principal, signed.region)?;
    Ok((parts, body, signed))
}

/// One AWS JSON 1.1 service other than ECS, for [`json_call`]: how its requests are signed and
/// targeted, and how its generated operation enum is looked up.
pub(crate) struct JsonService<Op> {
    /// The SigV4 signing name (`logs`, `ecr`...).
    pub signing_name: &'static str,
    /// The `X-Amz-Target` prefix before the `.`.
    pub target_prefix: &'static str,
    /// The service's name as errors spell it ("CloudWatch Logs").
    pub title: &'static str,
    pub from_name: fn(&str) -> Option<Op>,
    pub name: fn(Op) -> &'static str,
}

/// An authenticated, authorized JSON request, ready for its generated dispatcher.
pub(crate) struct JsonCall<Op> {
    pub op: Op,
    pub body: bytes::Bytes,
    pub region: berth_model::regions::Region,
    pub ctx: RequestContext,
}

/// The front half every JSON 1.1 service shares: reads the body under the cap, authenticates
/// it for `service`'s signing name (an instance key in its own region only), finds the
/// operation `X-Amz-Target` names, and authorizes the caller for it, before any service code
/// runs.
pub(crate) async fn json_call<Op: Copy>(
    app: &App,
    req: Request,
    request_id: &str,
    service: &JsonService<Op>,
) -> Result<JsonCall<Op>, AwsError> {
    let (parts, body) = req.into_parts();
    let body = read_capped(body, app.max_body_bytes).await?;
    let signed = app.auth.authenticate(&parts, &body, service.signing_name).await?;
    auth::authorize_region(&signed.principal, signed.region)?;
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| common::unknown_operation("Missing X-Amz-Target header."))?;
    // The prefix may hold dots itself (`com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101`).
    let (prefix, operation) = target.rsplit_once('.').unwrap_or((target, ""));
    if prefix != service.target_prefix {
        return Err(common::unknown_operation(format!(
            "Unknown target '{target}': {} requests name {}.<Operation>.",
            service.title, service.target_prefix
        )));
    }
    let op = (service.from_name)(operation).ok_or_else(|| {
        common::unknown_operation(format!("{operation} is not an operation of {}.", service.title))
    })?;
    let action = Action { service: service.signing_name, operation: (service.name)(op) };
    auth::authorize_call(app, &signed, &parts, action, crate::iam::resources::Body::Json(&body))
        .await?;
    Ok(JsonCall {
        op,
        body,
        region: signed.region,
        ctx: RequestContext { principal: signed.principal, request_id: request_id.to_string() },
    })
}

async fn serve(app: &App, req: Request, request_id: &str) -> Result<Vec<u8>, AwsError> {
    if req.method() != http::Method::POST {
        return Err(common::unknown_operation(format!(
            "{} / is not an AWS JSON request; use POST.",
            req.method()
        )));
    }
    let (parts, body, signed) = read_authenticated(app, req).await?;
    let (principal, region) = (signed.principal.clone(), signed.region);
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if !ct.starts_with("application/x-amz-json-") && !ct.starts_with("application/json") {
            return Err(common::serialization(format!(
                "Unsupported Content-Type '{ct}': send {JSON_1_1}."
            )));
        }
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| common::unknown_operation("Missing X-Amz-Target header."))?;
    let (prefix, operation) = target.split_once('.').unwrap_or((target, ""));
    if prefix != wire_ecs::TARGET_PREFIX {
        return Err(common::unknown_operation(format!(
            "Unknown target '{target}': Berth serves {}.<Operation>.",
            wire_ecs::TARGET_PREFIX
        )));
    }
    let op = wire_ecs::Operation::from_name(operation).ok_or_else(|| {
        common::unknown_operation(format!("{operation} is not an operation of Amazon ECS."))
    })?;
    let action = Action { service: wire_ecs::SIGNING_NAME, operation: op.name() };
    auth::authorize_call(app, &signed, &parts, action, crate::iam::resources::Body::Json(&body))
        .await?;
    let ecs = app.regions.ecs(region);
    if principal.instance.is_some() {
        // An instance key acts on its own instance only: the one it re-registers, or the one
        // its task is placed on.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Names {
            cluster: Option<String>,
            task: Option<String>,
            container_instance_arn: Option<String>,
        }
        let names: Names = serde_json::from_slice(&body)
            .map_err(|e| common::serialization(format!("Invalid request body: {e}")))?;
        let target = match op.name() {
            "RegisterContainerInstance" => {
                Target::Instance(names.container_instance_arn.as_deref())
            }
            _ => Target::Task {
                cluster: names.cluster.as_deref(),
                task: names.task.as_deref().unwrap_or_default(),
            },
        };
        authorize_target(&ecs, &principal, action, target).await?;
    }
    let ctx = RequestContext { principal, request_id: request_id.to_string() };
    wire_ecs::dispatch(&*ecs, &ctx, op, &body).await
}

fn error_response(request_id: &str, e: &AwsError) -> Response {
    let mut resp = Response::new(Body::from(e.to_body()));
    *resp.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
    h.insert("x-amzn-errortype", HeaderValue::from_static(e.code));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp.extensions_mut().insert(crate::cloudtrail::ErrorCode {
        code: e.code.to_string(),
        message: e.message.clone(),
    });
    resp
}

/// What a request acts on, for deciding whether an instance key may make it.
enum Target<'a> {
    /// A container instance named by the request (`None`: it names none).
    Instance(Option<&'a str>),
    /// A task, by ARN or id: the instance it is placed on.
    Task { cluster: Option<&'a str>, task: &'a str },
}

/// [`auth::authorize_instance`] for what `target` resolves to; administrators pass without
/// a lookup.
async fn authorize_target(
    ecs: &Ecs,
    principal: &auth::Principal,
    action: Action<'_>,
    target: Target<'_>,
) -> Result<(), AwsError> {
    if principal.instance.is_none() {
        return Ok(());
    }
    let instance = match target {
        Target::Instance(arn) => arn.map(str::to_string),
        Target::Task { cluster, task } => ecs.task_instance(cluster, task).await?,
    };
    auth::authorize_instance(principal, action, instance.as_deref())
}

fn json_response(body: Result<Vec<u8>, AwsError>, request_id: &str) -> Response {
    match body {
        Ok(body) => {
            let mut resp = Response::new(Body::from(body));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Ok(v) = HeaderValue::from_str(request_id) {
                resp.headers_mut().insert("x-amzn-requestid", v);
            }
            resp
        }
        Err(e) => error_response(request_id, &e),
    }
}

/// Runs a call of Berth's own JSON endpoints (the agent channel, the admin API):
/// authenticate, authorize the action, parse, authorize what the input names (in the ECS of
/// the request's region), answer JSON. `f` gets the request's region.
async fn agent_call<I, O, F, Fut>(
    app: Arc<App>,
    req: Request,
    action: Action<'static>,
    targets: fn(&I) -> Vec<Target<'_>>,
    f: F,
) -> Response
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
    F: FnOnce(Arc<App>, Region, RequestContext, I) -> Fut,
    Fut: std::future::Future<Output = Result<O, AwsError>>,
{
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = async {
        let (_, body, auth::Authenticated { principal, region }) =
            read_authenticated(&app, req).await?;
        auth::authorize(&principal, action)?;
        let input: I = serde_json::from_slice(&body)
            .map_err(|e| common::serialization(format!("Invalid agent message: {e}")))?;
        // The body may share its allocation with the connection's read buffer (hyper hands
        // out slices of it): holding it through a long poll would keep a second buffer alive
        // on every agent's connection (about 8 KB each, 40 MB at 5,000 instances).
        drop(body);
        let wanted = targets(&input);
        if !wanted.is_empty() {
            let ecs = app.regions.ecs(region);
            for t in wanted {
                authorize_target(&ecs, &principal, action, t).await?;
            }
        }
        let ctx = RequestContext { principal, request_id: request_id.clone() };
        let out = f(app.clone(), region, ctx, input).await?;
        berth_wire::json::write_output(&out)
    }
    .await;
    json_response(result, &request_id)
}

const fn agent_action(operation: &'static str) -> Action<'static> {
    Action { service: auth::AGENT_SERVICE, operation }
}

async fn agent_poll(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        agent_action("Poll"),
        |p: &berth_agent_protocol::PollRequest| {
            vec![Target::Instance(Some(p.container_instance_arn.as_str()))]
        },
        |app, region, ctx, input| async move {
            app.regions.ecs(region).agent_channel.agent_poll(&ctx, input).await
        },
    )
    .await
}

async fn agent_report(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        agent_action("Report"),
        |r: &berth_agent_protocol::TaskReport| {
            vec![
                Target::Instance(Some(r.container_instance_arn.as_str())),
                Target::Task {
                    cluster: r.change.cluster.as_deref(),
                    task: r.change.task.as_deref().unwrap_or_default(),
                },
            ]
        },
        |app, region, ctx, input| async move {
            app.regions
                .ecs(region)
                .agent_channel
                .agent_report(&ctx, input)
                .await
                .map(|()| serde_json::json!({"acknowledgment": "ACK"}))
        },
    )
    .await
}

/// `POST /berth/agent/v1/logs`: the `awslogs` driver's shipments, for the instance's own tasks.
async fn agent_logs(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        agent_action("ShipLogs"),
        |s: &berth_agent_protocol::LogShipment| {
            vec![
                Target::Instance(Some(s.container_instance_arn.as_str())),
                Target::Task { cluster: Some(s.cluster.as_str()), task: s.task_arn.as_str() },
            ]
        },
        |app, region, _ctx, input| async move {
            app.logs.ship(region.name, input, &app.cloudwatch).await
        },
    )
    .await
}

/// `POST /berth/agent/v1/secrets`: a task's secrets, for the agent of its own instance only
/// ([`crate::secretsmanager::inject`]).
async fn agent_secrets(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        agent_action("FetchSecrets"),
        |s: &berth_agent_protocol::TaskSecretsRequest| {
            vec![
                Target::Instance(Some(s.container_instance_arn.as_str())),
                Target::Task { cluster: Some(s.cluster.as_str()), task: s.task_arn.as_str() },
            ]
        },
        |app, region, ctx, input| async move {
            crate::secretsmanager::inject::resolve(&app, region, &ctx, input).await
        },
    )
    .await
}

/// `POST /berth/agent/v1/credentials`: a task's role credentials, for the agent of its own
/// instance only, while the task is not STOPPED ([`crate::task_role`]).
async fn agent_credentials(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        agent_action("FetchCredentials"),
        |s: &berth_agent_protocol::TaskCredentialsRequest| {
            vec![
                Target::Instance(Some(s.container_instance_arn.as_str())),
                Target::Task { cluster: Some(s.cluster.as_str()), task: s.task_arn.as_str() },
            ]
        },
        |app, region, ctx, input| async move {
            crate::task_role::issue(&app, region, &ctx, input).await
        },
    )
    .await
}

/// `POST /berth/agent/v1/registry-credentials`: registry credentials of a task's execution
/// role, for the agent of its own instance only, while the task is not STOPPED
/// ([`crate::ecr::token::task_registry_credentials`]).
async fn agent_registry_credentials(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        agent_action("FetchRegistryCredentials"),
        |s: &berth_agent_protocol::TaskCredentialsRequest| {
            vec![
                Target::Instance(Some(s.container_instance_arn.as_str())),
                Target::Task { cluster: Some(s.cluster.as_str()), task: s.task_arn.as_str() },
            ]
        },
        |app, region, ctx, input| async move {
            crate::ecr::token::task_registry_credentials(&app, region, &ctx, input).await
        },
    )
    .await
}

/// `POST /berth/agent/v1/stats`: the agent's usage samples of its own tasks, published as
/// CloudWatch's ECS metrics ([`crate::cloudwatch::ecs_metrics`]).
async fn agent_stats(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        agent_action("ReportStats"),
        |r: &berth_agent_protocol::StatsReport| {
            let mut t = vec![Target::Instance(Some(r.container_instance_arn.as_str()))];
            t.extend(r.tasks.iter().map(|u| Target::Task {
                cluster: Some(r.cluster.as_str()),
                task: u.task_arn.as_str(),
            }));
            t
        },
        |app, region, _ctx, input| async move {
            let ecs = app.regions.ecs(region);
            crate::cloudwatch::ecs_metrics::publish(&app.cloudwatch, &ecs, region.name, input)
                .await
                .map(|()| serde_json::json!({}))
        },
    )
    .await
}

/// `GET` (or `POST`) `/berth/agent/v1/info`: the server's default region, for an agent started without
/// `--region` (unauthenticated: it tells nothing a signed error would not).
async fn server_info(State(app): State<Arc<App>>) -> Response {
    let info = berth_agent_protocol::ServerInfo {
        default_region: app.regions.default_region().name.to_string(),
    };
    json_response(berth_wire::json::write_output(&info), &uuid::Uuid::new_v4().to_string())
}

/// `POST /berth/agent/v1/join`: the one unauthenticated call. A valid join token registers a
/// new container instance and returns an access key bound to it.
async fn agent_join(State(app): State<Arc<App>>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = async {
        let body = read_capped(req.into_body(), app.max_body_bytes).await?;
        let input: berth_agent_protocol::JoinRequest = serde_json::from_slice(&body)
            .map_err(|e| common::serialization(format!("Invalid join request: {e}")))?;
        // The region the agent joins: named in the request, else the server's default.
        let region = match input.region.as_deref() {
            None => app.regions.default_region(),
            Some(name) => berth_model::regions::lookup(name).ok_or_else(|| {
                berth_wire::ecs::ErrorCode::InvalidParameterException.with(format!(
                    "region: '{name}' is not an AWS region botocore lists (for example {}).",
                    berth_model::regions::EXAMPLES
                ))
            })?,
        };
        // An agent-backed instance joins with its signed identity document instead of a
        // token (`berth_instances::identity::JOIN_TOKEN`; join_register verifies it).
        let token_id = if input.token == berth_instances::identity::JOIN_TOKEN {
            let reg = &input.registration;
            if crate::instances::verify_identity(
                app.regions.ecs(region).core(),
                reg.instance_identity_document.as_deref(),
                reg.instance_identity_document_signature.as_deref(),
            )?
            .is_none()
            {
                return Err(crate::instances::identity_refused());
            }
            "instance-identity".to_string()
        } else {
            match app.tokens.redeem(&input.token).await? {
                Ok(t) => t.id,
                Err(why) => {
                    tracing::warn!(?why, "join refused");
                    return Err(auth::tokens::refused());
                }
            }
        };
        let principal = Arc::new(auth::Principal {
            arn: format!(
                "arn:{}:iam::{}:berth-join-token/{}",
                region.partition, app.account_id, token_id
            ),
            account_id: app.account_id.clone(),
            access_key_id: String::new(),
            instance: None,
        });
        let ctx = RequestContext { principal, request_id: request_id.clone() };
        let registration = app.regions.ecs(region).join_register(&ctx, input.registration).await?;
        let arn = registration
            .container_instance
            .as_ref()
            .and_then(|c| c.container_instance_arn.clone())
            .unwrap_or_default();
        let (access_key_id, secret_access_key) = app.auth.issue_instance_key(&arn).await?;
        tracing::info!(token = %token_id, instance = %arn, access_key_id, "an agent joined");
        berth_wire::json::write_output(&berth_agent_protocol::JoinResponse {
            access_key_id,
            secret_access_key,
            registration,
        })
    }
    .await;
    json_response(result, &request_id)
}

/// Berth's administration API (join tokens): SigV4-signed, administrators only.
pub mod admin {
    /// `{expiresInSeconds, description?}` -> `{token, joinToken}`.
    pub const CREATE_PATH: &str = "/berth/admin/v1/join-tokens/create";
    /// `{}` -> `{joinTokens: [...]}`.
    pub const LIST_PATH: &str = "/berth/admin/v1/join-tokens/list";
    /// `{id}` -> `{joinToken}`.
    pub const REVOKE_PATH: &str = "/berth/admin/v1/join-tokens/revoke";
    /// `{cluster?, task?, count?}` -> `{tasks: [...]}`: FARGATE_SPOT interruptions in the
    /// region of the request's scope (`crate::ecs::SpotInterrupt`).
    pub const SPOT_INTERRUPT_PATH: &str = "/berth/admin/v1/spot/interrupt";
    /// `{available}` -> `{available}`: FARGATE_SPOT capacity in the region of the request's
    /// scope (`crate::ecs::fargate::set_spot_available`; fault injection).
    pub const SPOT_CAPACITY_PATH: &str = "/berth/admin/v1/spot/capacity";

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct SpotCapacity {
        pub available: bool,
    }
    /// `{graceSeconds?}` -> `{blobsDeleted, bytesFreed, blobsKept}`: applies the registry's
    /// lifecycle policies and collects its unreferenced blobs now (`crate::ecr`).
    pub const REGISTRY_GC_PATH: &str = "/berth/admin/v1/registry/gc";

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct RegistryGc {
        /// Blobs written this recently are kept (default: the server's grace period).
        #[serde(default)]
        pub grace_seconds: Option<u64>,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Create {
        pub expires_in_seconds: u64,
        #[serde(default)]
        pub description: Option<String>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Empty {}

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Revoke {
        pub id: String,
    }
}

const fn admin_action(operation: &'static str) -> Action<'static> {
    Action { service: auth::ADMIN_SERVICE, operation }
}

async fn admin_create_token(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        admin_action("CreateJoinToken"),
        |_: &admin::Create| vec![],
        |app, _region, ctx, input| async move {
            let (rec, token) = app
                .tokens
                .create(input.expires_in_seconds, input.description, &ctx.principal.arn)
                .await?;
            tracing::info!(id = %rec.id, by = %ctx.principal.arn, "join token created");
            Ok(serde_json::json!({"token": token, "joinToken": app.tokens.view(&rec)}))
        },
    )
    .await
}

async fn admin_list_tokens(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        admin_action("ListJoinTokens"),
        |_: &admin::Empty| vec![],
        |app, _region, _ctx, _input| async move {
            let list = app.tokens.list().await?;
            let views: Vec<_> = list.iter().map(|r| app.tokens.view(r)).collect();
            Ok(serde_json::json!({"joinTokens": views}))
        },
    )
    .await
}

async fn admin_revoke_token(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        admin_action("RevokeJoinToken"),
        |_: &admin::Revoke| vec![],
        |app, _region, ctx, input| async move {
            let rec = app.tokens.revoke(&input.id).await?;
            tracing::info!(id = %rec.id, by = %ctx.principal.arn, "join token revoked");
            Ok(serde_json::json!({"joinToken": app.tokens.view(&rec)}))
        },
    )
    .await
}

async fn admin_spot_capacity(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        admin_action("SetSpotCapacity"),
        |_: &admin::SpotCapacity| vec![],
        |app, region, ctx, input| async move {
            let ecs = app.regions.ecs(region);
            let core = ecs.core();
            crate::ecs::fargate::set_spot_available(&*core.store, input.available, core.now())
                .await?;
            core.services_changed();
            tracing::info!(available = input.available, by = %ctx.principal.arn, "FARGATE_SPOT capacity set");
            Ok(serde_json::json!({"available": input.available}))
        },
    )
    .await
}

async fn admin_spot_interrupt(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        admin_action("InterruptSpotTasks"),
        |_: &crate::ecs::SpotInterrupt| vec![],
        |app, region, ctx, input| async move {
            let tasks = app.regions.ecs(region).interrupt_spot(&input).await?;
            tracing::info!(count = tasks.len(), by = %ctx.principal.arn, "Spot tasks interrupted");
            Ok(serde_json::json!({"tasks": tasks}))
        },
    )
    .await
}

async fn admin_registry_gc(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(
        app,
        req,
        admin_action("CollectRegistryGarbage"),
        |_: &admin::RegistryGc| vec![],
        |app, _region, ctx, input| async move {
            let Some(ecr) = app.ecr.clone() else {
                return Err(common::invalid_request("This server runs no registry."));
            };
            let grace =
                input.grace_seconds.map_or(ecr.gc_grace, std::time::Duration::from_secs);
            let r = ecr.housekeeping(grace).await;
            tracing::info!(deleted = r.blobs_deleted, by = %ctx.principal.arn, "registry collected");
            Ok(serde_json::json!({
                "blobsDeleted": r.blobs_deleted,
                "bytesFreed": r.bytes_freed,
                "blobsKept": r.blobs_kept,
                "uploadsPurged": r.uploads_purged,
                "uploadBytesFreed": r.upload_bytes_freed,
            }))
        },
    )
    .await
}
