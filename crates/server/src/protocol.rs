//! The AWS JSON 1.1 front end: `POST /` with `X-Amz-Target: <prefix>.<Operation>`.
//!
//! Contract, for every request: a fresh `x-amzn-RequestId` on the response; the body is read
//! up to the configured cap (larger → 413 `RequestEntityTooLargeException`); the signature is
//! checked before anything about the request is revealed; errors are AWS error bodies with
//! `x-amzn-ErrorType`. Nothing a client sends can make this layer panic.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use berth_wire::{AwsError, common, ecs as wire_ecs};
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use crate::App;
use crate::auth::{self, Action};
use crate::ecs::RequestContext;

const JSON_1_1: &str = "application/x-amz-json-1.1";

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", any(handle))
        .route(berth_agent_protocol::POLL_PATH, axum::routing::post(agent_poll))
        .route(berth_agent_protocol::REPORT_PATH, axum::routing::post(agent_report))
        .fallback(any(not_found))
        .with_state(app)
}

async fn not_found() -> Response {
    error_response(
        &uuid::Uuid::new_v4().to_string(),
        &common::unknown_operation("Berth serves AWS JSON requests at POST / only."),
    )
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    match serve(&app, req, &request_id).await {
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

/// Reads the body under the cap and authenticates the request.
async fn read_authenticated(
    app: &App,
    req: Request,
) -> Result<(http::request::Parts, bytes::Bytes, std::sync::Arc<auth::Principal>), AwsError> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, app.max_body_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(if e.is::<http_body_util::LengthLimitError>() {
                common::request_too_large(app.max_body_bytes)
            } else {
                common::invalid_request(format!("could not read the request body: {e}"))
            });
        }
    };
    let principal = app.auth.authenticate(&parts, &body, wire_ecs::SIGNING_NAME).await?;
    Ok((parts, body, principal))
}

async fn serve(app: &App, req: Request, request_id: &str) -> Result<Vec<u8>, AwsError> {
    if req.method() != http::Method::POST {
        return Err(common::unknown_operation(format!(
            "{} / is not an AWS JSON request; use POST.",
            req.method()
        )));
    }
    let (parts, body, principal) = read_authenticated(app, req).await?;
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
    auth::authorize(&principal, Action { service: wire_ecs::SIGNING_NAME, operation: op.name() })?;
    let ctx = RequestContext { principal, request_id: request_id.to_string() };
    wire_ecs::dispatch(&app.ecs, &ctx, op, &body).await
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
    resp
}

/// Runs an agent-channel call: authenticate, parse, authorize, answer JSON.
async fn agent_call<I, O, F, Fut>(
    app: Arc<App>,
    req: Request,
    operation: &'static str,
    f: F,
) -> Response
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
    F: FnOnce(Arc<App>, RequestContext, I) -> Fut,
    Fut: std::future::Future<Output = Result<O, AwsError>>,
{
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = async {
        let (_, body, principal) = read_authenticated(&app, req).await?;
        auth::authorize(&principal, Action { service: "berth-agent", operation })?;
        let input: I = serde_json::from_slice(&body)
            .map_err(|e| common::serialization(format!("Invalid agent message: {e}")))?;
        let ctx = RequestContext { principal, request_id: request_id.clone() };
        let out = f(app.clone(), ctx, input).await?;
        berth_wire::json::write_output(&out)
    }
    .await;
    match result {
        Ok(body) => {
            let mut resp = Response::new(Body::from(body));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => error_response(&request_id, &e),
    }
}

async fn agent_poll(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(app, req, "Poll", |app, ctx, input: berth_agent_protocol::PollRequest| async move {
        app.ecs.agent_channel.agent_poll(&ctx, input).await
    })
    .await
}

async fn agent_report(State(app): State<Arc<App>>, req: Request) -> Response {
    agent_call(app, req, "Report", |app, ctx, input: berth_agent_protocol::TaskReport| async move {
        app.ecs
            .agent_channel
            .agent_report(&ctx, input)
            .await
            .map(|()| serde_json::json!({"acknowledgment": "ACK"}))
    })
    .await
}
