//! Many services behind one endpoint: which AWS service a request at `/` is for, and the front
//! end of the form-encoded ones (EC2's protocol and the query protocol).
//!
//! Contract:
//! * a request goes to the service named in its SigV4 credential scope (the `Authorization`
//!   header's `Credential=`, or a presigned URL's `X-Amz-Credential`): the JSON 1.1 ones
//!   (`ecs`, `logs`, `ecr`, `ssm`, `servicediscovery`...) to their front ends, the
//!   form-encoded ones (`ec2`, `sts`, `autoscaling`, `elasticloadbalancing`) here; an unsigned
//!   form request (`Action=` in a `GET` query string, or a form-encoded `POST`) comes here
//!   too, told by its `Version` (Auto Scaling's `2011-01-01`, STS's, else EC2's), to be
//!   refused in its protocol's envelope; a service Berth does not serve is refused naming it
//!   and the services served;
//! * here: `POST` with a form body or `GET` with a query string; the body is read under the
//!   cap; the request is authenticated for its service, once, before any service code runs,
//!   and an instance key may act in its own region only; then `Action` picks the operation
//!   (`InvalidAction` for a name the model lacks, EC2's `UnsupportedOperation` for one Berth
//!   does not implement), the generated dispatcher parses and answers it;
//! * EC2's `DryRun=true` answers `DryRunOperation` once the request is authenticated and
//!   authorized, and changes nothing;
//! * every answer is XML with `x-amzn-RequestId`; errors are the protocol's envelope with the
//!   code mapped to the protocol's spelling of the authentication and server errors.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use berth_wire::query::{Flavor, Form};
use berth_wire::{AwsError, ec2 as wire_ec2, sts as wire_sts};
use http::{HeaderValue, StatusCode, header};

use crate::App;
use crate::auth::{self, Action};
use crate::ecs::RequestContext;

/// The services `/` answers, for the refusal of any other.
pub(super) const SERVED: &str = "ecs, ec2, sts, iam, ssm (Parameter Store), secretsmanager, autoscaling, logs, elasticloadbalancing (ELBv2), ecr, servicediscovery (Cloud Map), monitoring (CloudWatch metrics and alarms), application-autoscaling (ECS services), cloudtrail (LookupEvents)";

/// A form-encoded service Berth serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FormService {
    Ec2,
    Sts,
    AutoScaling,
    Elbv2,
    Iam,
}

impl FormService {
    fn flavor(self) -> Flavor {
        match self {
            FormService::Ec2 => wire_ec2::FLAVOR,
            FormService::Sts => wire_sts::FLAVOR,
            FormService::AutoScaling => berth_wire::autoscaling::FLAVOR,
            FormService::Elbv2 => berth_wire::elbv2::FLAVOR,
            FormService::Iam => berth_wire::iam::FLAVOR,
        }
    }
    fn signing_name(self) -> &'static str {
        match self {
            FormService::Ec2 => wire_ec2::SIGNING_NAME,
            FormService::Sts => wire_sts::SIGNING_NAME,
            FormService::AutoScaling => berth_wire::autoscaling::SIGNING_NAME,
            FormService::Elbv2 => berth_wire::elbv2::SIGNING_NAME,
            FormService::Iam => berth_wire::iam::SIGNING_NAME,
        }
    }
    fn namespace(self) -> &'static str {
        match self {
            FormService::Ec2 => wire_ec2::XML_NAMESPACE,
            FormService::Sts => wire_sts::XML_NAMESPACE,
            FormService::AutoScaling => berth_wire::autoscaling::XML_NAMESPACE,
            FormService::Elbv2 => berth_wire::elbv2::XML_NAMESPACE,
            FormService::Iam => berth_wire::iam::XML_NAMESPACE,
        }
    }
    /// The service whose API version a form names (EC2 when it names none Berth knows).
    fn by_version(form: &Form) -> Self {
        match form.get("Version") {
            Some(v) if v == wire_sts::API_VERSION => FormService::Sts,
            Some(v) if v == berth_wire::autoscaling::API_VERSION => FormService::AutoScaling,
            Some(v) if v == berth_wire::elbv2::API_VERSION => FormService::Elbv2,
            Some(v) if v == berth_wire::iam::API_VERSION => FormService::Iam,
            _ => FormService::Ec2,
        }
    }
}

/// Where a request at `/` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// The AWS JSON 1.1 front end (ECS).
    Json,
    /// SSM's JSON 1.1 front end ([`crate::ssm`]).
    Ssm,
    /// CloudWatch Logs' JSON 1.1 front end ([`crate::logs`]).
    Logs,
    /// ECR's JSON 1.1 front end ([`crate::ecr`]).
    Ecr,
    /// Application Auto Scaling's JSON 1.1 front end ([`crate::appautoscaling`]).
    AppAutoScaling,
    /// Cloud Map's JSON 1.1 front end ([`crate::servicediscovery`]).
    ServiceDiscovery,
    /// CloudWatch's JSON 1.0 front end ([`crate::cloudwatch`]).
    CloudWatch,
    /// Secrets Manager's JSON 1.1 front end ([`crate::secretsmanager`]).
    SecretsManager,
    /// CloudTrail's JSON 1.1 front end ([`crate::cloudtrail`]).
    CloudTrail,
    /// A form-encoded service; `None`: unsigned, told by its `Version` once read.
    Form(Option<FormService>),
    /// A service Berth does not serve (by its signing name).
    NotServed { service: String, form: bool },
}

/// The service of a credential scope `AKID/DATE/REGION/SERVICE/aws4_request`.
fn scope_service(credential: &str) -> Option<String> {
    credential.split('/').nth(3).map(str::to_string)
}

/// Where `req` goes (see the module header).
pub(super) fn route(req: &Request) -> Route {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or(""))
        .and_then(scope_service);
    let query = req.uri().query().unwrap_or("");
    let from_query = || {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "X-Amz-Credential")
            .and_then(|(_, v)| scope_service(&v))
    };
    let form = match *req.method() {
        http::Method::GET => form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "Action"),
        _ => req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")),
    };
    // A request for ECS by its target but signed for another service is ECS's to refuse (a
    // signature scoped to the wrong service, as before other services were served).
    let ecs_target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.split('.').next() == Some(berth_wire::ecs::TARGET_PREFIX));
    match from_header.or_else(from_query).as_deref() {
        Some("ecs") => Route::Json,
        Some(_) if ecs_target => Route::Json,
        Some("ec2") => Route::Form(Some(FormService::Ec2)),
        Some("sts") => Route::Form(Some(FormService::Sts)),
        Some("iam") => Route::Form(Some(FormService::Iam)),
        Some("autoscaling") => Route::Form(Some(FormService::AutoScaling)),
        Some("elasticloadbalancing") => Route::Form(Some(FormService::Elbv2)),
        Some("ssm") => Route::Ssm,
        Some("logs") => Route::Logs,
        Some("ecr") => Route::Ecr,
        Some("servicediscovery") => Route::ServiceDiscovery,
        Some("application-autoscaling") => Route::AppAutoScaling,
        Some("monitoring") => Route::CloudWatch,
        Some("secretsmanager") => Route::SecretsManager,
        Some("cloudtrail") => Route::CloudTrail,
        Some(other) => Route::NotServed { service: other.to_string(), form },
        None if form => Route::Form(None),
        None => Route::Json,
    }
}

/// The refusal of a service Berth does not serve, in the query protocol's envelope for a
/// form request (JSON otherwise, by the caller).
pub(super) fn not_served_error(service: &str) -> AwsError {
    AwsError::new(
        "InvalidAction",
        400,
        format!("Berth does not serve the `{service}` service yet; it serves {SERVED}."),
    )
}

/// An XML error answer.
pub(super) fn error_response(
    flavor: Flavor,
    namespace: &str,
    request_id: &str,
    e: &AwsError,
) -> Response {
    let mut e = e.clone();
    e.code = protocol_code(flavor, &e);
    if e.status >= 500 {
        tracing::warn!(request_id, code = e.code, message = %e.message, "request failed");
    } else {
        tracing::debug!(request_id, code = e.code, message = %e.message, "request refused");
    }
    let mut resp = xml(flavor.error_body(&e, namespace, request_id), request_id);
    *resp.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.extensions_mut()
        .insert(crate::cloudtrail::ErrorCode { code: e.code.to_string(), message: e.message });
    resp
}

fn xml(body: Vec<u8>, request_id: &str) -> Response {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml;charset=UTF-8"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// The code a form-protocol service answers for errors Berth's shared layers raise.
fn protocol_code(flavor: Flavor, e: &AwsError) -> &'static str {
    let ec2 = flavor == Flavor::Ec2;
    match e.code {
        _ if e.status >= 500 => {
            if ec2 {
                "InternalError"
            } else {
                "InternalFailure"
            }
        }
        "MissingAuthenticationTokenException" => "MissingAuthenticationToken",
        "UnrecognizedClientException" => {
            if ec2 {
                "AuthFailure"
            } else {
                "InvalidClientTokenId"
            }
        }
        "InvalidSignatureException" => "SignatureDoesNotMatch",
        "ExpiredTokenException" => {
            if ec2 {
                "RequestExpired"
            } else {
                "ExpiredToken"
            }
        }
        "AccessDeniedException" => {
            if ec2 {
                "UnauthorizedOperation"
            } else {
                "AccessDenied"
            }
        }
        "SerializationException" | "InvalidRequestException" => flavor.validation_code(),
        code => code,
    }
}

/// Serves one form-encoded request (see the module header).
pub(super) async fn serve(
    app: &App,
    service: Option<FormService>,
    req: Request,
    request_id: &str,
) -> Response {
    let (parts, body) = req.into_parts();
    let fallback = service.unwrap_or(FormService::Ec2);
    let body = match super::read_capped(body, app.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(fallback.flavor(), fallback.namespace(), request_id, &e),
    };
    let raw: &[u8] = if parts.method == http::Method::GET {
        parts.uri.query().unwrap_or("").as_bytes()
    } else {
        &body
    };
    let probe = Form::parse(raw, Flavor::Ec2);
    let service = service.unwrap_or_else(|| FormService::by_version(&probe));
    let form = Form::parse(raw, service.flavor());
    match answer(app, service, &parts, &body, &form, request_id).await {
        Ok(body) => xml(body, request_id),
        Err(e) => error_response(service.flavor(), service.namespace(), request_id, &e),
    }
}

async fn answer(
    app: &App,
    service: FormService,
    parts: &http::request::Parts,
    body: &[u8],
    form: &Form,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    if parts.method != http::Method::GET && parts.method != http::Method::POST {
        return Err(AwsError::new(
            form.flavor().validation_code(),
            400,
            format!("{} / is not a query-protocol request: use POST or GET.", parts.method),
        ));
    }
    let signed = app.auth.authenticate(parts, body, service.signing_name()).await?;
    auth::authorize_region(&signed.principal, signed.region)?;
    let action = form.get("Action").ok_or_else(|| {
        AwsError::new("MissingAction", 400, "The request must contain the parameter Action")
    })?;
    let ctx =
        RequestContext { principal: signed.principal.clone(), request_id: request_id.to_string() };
    let body = crate::iam::resources::Body::Form(form);
    match service {
        FormService::Ec2 => {
            let op = wire_ec2::Operation::lookup(action)?;
            let action = Action { service: wire_ec2::SIGNING_NAME, operation: op.name() };
            auth::authorize_call(app, &signed, parts, action, body).await?;
            if form.boolean("DryRun")? == Some(true) {
                // Authorized and well-formed: what EC2 answers instead of acting.
                return Err(AwsError::new(
                    "DryRunOperation",
                    412,
                    "Request would have succeeded, but DryRun flag is set.",
                ));
            }
            let ec2 = app.regions.ec2(signed.region);
            ec2.ensure_default().await?;
            wire_ec2::dispatch(&*ec2, &ctx, op, form, request_id).await
        }
        FormService::AutoScaling => {
            use berth_wire::autoscaling as wire_asg;
            let op = wire_asg::Operation::lookup(action)?;
            let action = Action { service: wire_asg::SIGNING_NAME, operation: op.name() };
            auth::authorize_call(app, &signed, parts, action, body).await?;
            let services = app.regions.services(signed.region);
            services.ec2.ensure_default().await?;
            wire_asg::dispatch(&*services.autoscaling, &ctx, op, form, request_id).await
        }
        FormService::Elbv2 => {
            use berth_wire::elbv2 as wire_elb;
            let op = wire_elb::Operation::lookup(action)?;
            let action = Action { service: wire_elb::SIGNING_NAME, operation: op.name() };
            auth::authorize_call(app, &signed, parts, action, body).await?;
            let services = app.regions.services(signed.region);
            services.ec2.ensure_default().await?;
            wire_elb::dispatch(&*services.elbv2, &ctx, op, form, request_id).await
        }
        FormService::Sts => {
            // GetCallerIdentity and GetSessionToken need no permission, as in AWS; AssumeRole
            // is decided with the role's trust policy and the caller's policies together
            // (`crate::sts`).
            let op = wire_sts::Operation::lookup(action)?;
            wire_sts::dispatch(&crate::sts::Sts { app }, &ctx, op, form, request_id).await
        }
        FormService::Iam => {
            use berth_wire::iam as wire_iam;
            let op = wire_iam::Operation::lookup(action)?;
            let action = Action { service: wire_iam::SIGNING_NAME, operation: op.name() };
            auth::authorize_call(app, &signed, parts, action, body).await?;
            wire_iam::dispatch(&crate::iam::api::IamApi { app }, &ctx, op, form, request_id).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn requests_route_by_the_service_of_their_scope() {
        let auth = |svc: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{svc}/aws4_request, SignedHeaders=host, Signature=00"
            )
        };
        let form = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(route(&req("POST", "/", &[("authorization", &auth("ecs"))])), Route::Json);
        assert_eq!(
            route(&req("POST", "/", &[("authorization", &auth("ec2")), form])),
            Route::Form(Some(FormService::Ec2))
        );
        assert_eq!(
            route(&req("POST", "/", &[("authorization", &auth("sts")), form])),
            Route::Form(Some(FormService::Sts))
        );
        assert_eq!(
            route(&req("POST", "/", &[("authorization", &auth("autoscaling")), form])),
            Route::Form(Some(FormService::AutoScaling))
        );
        let mut unsigned =
            Form::parse(b"Action=DescribeAutoScalingGroups&Version=2011-01-01", Flavor::Query);
        assert_eq!(FormService::by_version(&unsigned), FormService::AutoScaling);
        unsigned = Form::parse(b"Action=DescribeVpcs&Version=2016-11-15", Flavor::Ec2);
        assert_eq!(FormService::by_version(&unsigned), FormService::Ec2);
        assert_eq!(
            route(&req("POST", "/", &[("authorization", &auth("elasticloadbalancing")), form])),
            Route::Form(Some(FormService::Elbv2))
        );
        assert_eq!(
            route(&req("POST", "/", &[("authorization", &auth("iam")), form])),
            Route::Form(Some(FormService::Iam))
        );
        assert_eq!(
            route(&req("POST", "/", &[("authorization", &auth("lambda")), form])),
            Route::NotServed { service: "lambda".into(), form: true }
        );
        assert_eq!(route(&req("POST", "/", &[form])), Route::Form(None));
        assert_eq!(
            route(&req("GET", "/?Action=DescribeVpcs&Version=2016-11-15", &[])),
            Route::Form(None)
        );
        assert_eq!(
            route(&req(
                "GET",
                "/?Action=DescribeVpcs&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fec2%2Faws4_request",
                &[]
            )),
            Route::Form(Some(FormService::Ec2))
        );
        assert_eq!(route(&req("POST", "/", &[])), Route::Json, "unsigned JSON stays ECS's");
        let ecs_target = ("x-amz-target", "AmazonEC2ContainerServiceV20141113.ListClusters");
        assert_eq!(
            route(&req("POST", "/", &[("authorization", &auth("s3")), ecs_target])),
            Route::Json,
            "ECS refuses its own requests signed for another service"
        );
        let e = not_served_error("lambda");
        assert!(e.message.contains("`lambda`") && e.message.contains(SERVED));
    }

    #[test]
    fn shared_errors_take_the_protocols_codes() {
        let e = AwsError::new("UnrecognizedClientException", 403, "x");
        assert_eq!(protocol_code(Flavor::Ec2, &e), "AuthFailure");
        assert_eq!(protocol_code(Flavor::Query, &e), "InvalidClientTokenId");
        let e = AwsError::new("ServerException", 500, "x");
        assert_eq!(protocol_code(Flavor::Ec2, &e), "InternalError");
        let e = AwsError::new("InvalidVpcID.NotFound", 400, "x");
        assert_eq!(protocol_code(Flavor::Ec2, &e), "InvalidVpcID.NotFound");
    }
}
