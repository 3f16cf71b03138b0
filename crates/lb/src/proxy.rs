//! The HTTP listener: hyper 1 serving HTTP/1.1 and HTTP/2 (hyper-util's auto builder), routing
//! each request on the listener's table and forwarding it on a keep-alive connection to a
//! target (see [`crate::pool`]).
//!
//! Behaviour, as ALB does it:
//! * `X-Forwarded-For` gets the client's address appended; `X-Forwarded-Proto` (`http`) and
//!   `X-Forwarded-Port` (the listener's port) are set; hop-by-hop headers (and those named in
//!   `Connection`) are removed both ways; `Host` is preserved (HTTP/2's `:authority` becomes
//!   `Host`). Targets are spoken to over HTTP/1.1.
//! * 502 when the target fails (connection refused or reset, malformed answer), 503 when the
//!   group has no registered target, 504 when the target does not answer within the load
//!   balancer's idle timeout; bodies are ELB's own HTML error pages with `Server: awselb/2.0`.
//! * A connect failure ejects the target (see [`crate::health`]) and, when the request has no
//!   body (so nothing was consumed), retries it on another target of the group, up to two
//!   times: a target that died is paid for by requests in flight on it only.
//! * Stickiness: the `AWSALB` cookie (target-group attribute `stickiness.enabled`, `lb_cookie`)
//!   and `AWSALBTG` (a weighted forward's group stickiness), with `Max-Age` the configured
//!   duration.
//! * A request counts as in flight on its target until its response body is fully sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::engine::Shared;
use crate::group::{GroupRt, InFlight};
use crate::pool::{Conn, Local, SendError, give_back, send};
use crate::routing::{RedirectSource, RequestFacts, redirect_location};
use crate::table::{Route, Table, weighted};

/// The body of a response to a client: the target's, streamed (holding the in-flight count and
/// the connection, which goes back to the target's pool when the body ends), or one of ours.
pub(crate) enum LbBody {
    Upstream { body: Incoming, in_flight: InFlight, conn: Option<Conn>, local: Option<Arc<Local>> },
    Local(Full<Bytes>),
}

impl Body for LbBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            LbBody::Upstream { body, in_flight, conn, local } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                let done = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    _ => false,
                };
                if done && let Some(c) = conn.take() {
                    give_back(&in_flight.0, c, local.as_deref());
                }
                polled
            }
            LbBody::Local(b) => Pin::new(b).poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            LbBody::Upstream { body: b, .. } => b.is_end_stream(),
            LbBody::Local(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            LbBody::Upstream { body: b, .. } => b.size_hint(),
            LbBody::Local(b) => b.size_hint(),
        }
    }
}

const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// The accept loop of one HTTP listener; runs until aborted (the listener's socket closes with
/// it; connections already accepted finish on their own).
pub(crate) async fn serve(listener: TcpListener, table: Arc<ArcSwap<Table>>, shared: Arc<Shared>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client must send a request head within ALB's default idle timeout (also the keep-alive
    // idle limit): a silent connection cannot hold a descriptor forever.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(CLIENT_HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(None);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "load balancer accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (table, shared, builder) = (table.clone(), shared.clone(), builder.clone());
        tokio::spawn(async move {
            // The target connections this client's requests make are driven right here, next
            // to the client's own connection (see `pool`).
            let local = Arc::new(Local::default());
            let svc = service_fn({
                let local = local.clone();
                move |req| {
                    let table = table.load_full();
                    let shared = shared.clone();
                    let local = local.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, &table, peer, req, local).await) }
                }
            });
            let served = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = served => {}
                _ = local.drive() => {}
            }
            local.close();
        });
    }
}

fn host_of(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

async fn handle(
    shared: &Shared,
    table: &Table,
    peer: SocketAddr,
    req: Request<Incoming>,
    local: Arc<Local>,
) -> Response<LbBody> {
    let route = {
        let facts = RequestFacts {
            path: req.uri().path(),
            query: req.uri().query(),
            host: host_of(&req),
            headers: req.headers(),
            source_ip: peer.ip(),
        };
        table.route(&facts).clone()
    };
    match &*route {
        Route::Fixed { status, content_type, body } => {
            let mut resp = Response::new(LbBody::Local(Full::new(body.clone())));
            *resp.status_mut() = *status;
            let ct = content_type
                .clone()
                .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8"));
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            resp.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
            resp
        }
        Route::Redirect(r, code) => {
            let host = host_of(&req).unwrap_or("");
            let host = crate::routing::strip_port(host);
            let src = RedirectSource {
                protocol: "http",
                host,
                port: table.port,
                path: req.uri().path().trim_start_matches('/'),
                query: req.uri().query(),
            };
            let location = redirect_location(r, &src);
            let mut resp = Response::new(LbBody::Local(Full::new(Bytes::new())));
            *resp.status_mut() = *code;
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
            resp
        }
        Route::Forward { groups, total, group_stickiness } => {
            forward(shared, table, peer, req, groups, *total, *group_stickiness, local).await
        }
    }
}

/// ELB's own error page.
pub(crate) fn elb_error(status: StatusCode) -> Response<LbBody> {
    let title = match status.as_u16() {
        502 => "502 Bad Gateway",
        503 => "503 Service Temporarily Unavailable",
        504 => "504 Gateway Time-out",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = Response::new(LbBody::Local(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    resp
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    if let Some(named) = h.get(header::CONNECTION).and_then(|v| v.to_str().ok()).map(str::to_owned)
    {
        for name in named.split(',') {
            if let Ok(n) = HeaderName::from_bytes(name.trim().as_bytes()) {
                h.remove(n);
            }
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

#[allow(clippy::too_many_arguments)]
async fn forward(
    shared: &Shared,
    table: &Table,
    peer: SocketAddr,
    req: Request<Incoming>,
    groups: &[(Arc<GroupRt>, u32)],
    total: u32,
    group_stickiness: Option<Duration>,
    local: Arc<Local>,
) -> Response<LbBody> {
    let tg_cookie_name = "AWSALBTG";
    let group = group_stickiness
        .and_then(|_| cookie(req.headers(), tg_cookie_name))
        .and_then(|c| groups.iter().find(|(g, _)| group_cookie(g) == c))
        .map(|(g, _)| g)
        .or_else(|| weighted(groups, total, shared.rng.next()));
    let Some(group) = group.cloned() else { return elb_error(StatusCode::SERVICE_UNAVAILABLE) };
    group.count_request();
    let cfg = group.config();
    let sticky =
        cfg.attributes.stickiness_enabled.then_some(cfg.attributes.stickiness_duration_seconds);
    let sticky_cookie = sticky.and_then(|_| cookie(req.headers(), "AWSALB")).map(str::to_owned);

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    let needs_host = !parts.headers.contains_key(header::HOST);
    let client_ip = peer.ip().to_canonical();
    let xff = match parts.headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {client_ip}"),
        None => client_ip.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    parts.headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    parts.headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(table.port));
    parts.version = http::Version::HTTP_11;
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let origin = Uri::from(pq);
    // A request without a body can be sent again after a failed connect, when another target
    // or a fresh connection may take it.
    let retry = body.is_end_stream().then(|| (parts.method.clone(), parts.headers.clone()));
    let mut first = Some((parts, body));
    let mut excluded: Vec<SocketAddr> = Vec::new();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let Some(target) = group.pick(sticky_cookie.as_deref(), &excluded) else {
            return elb_error(if excluded.is_empty() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            });
        };
        let uri = origin.clone();
        let mut upstream = match first.take() {
            Some((mut parts, body)) => {
                parts.uri = uri;
                Request::from_parts(parts, Either::Left(body))
            }
            None => {
                let Some((method, headers)) = &retry else {
                    return elb_error(StatusCode::BAD_GATEWAY);
                };
                let mut r = Request::new(Either::Right(Empty::new()));
                *r.method_mut() = method.clone();
                *r.uri_mut() = uri;
                *r.headers_mut() = headers.clone();
                r
            }
        };
        if needs_host && let Ok(v) = HeaderValue::from_str(target.authority.as_str()) {
            upstream.headers_mut().insert(header::HOST, v);
        }
        let guard = InFlight::new(target.clone());
        match tokio::time::timeout(
            table.idle_timeout,
            send(&target, upstream, shared.connect_timeout, Some(&local)),
        )
        .await
        {
            Ok(Ok((resp, conn))) => {
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                if let Some(max_age) = sticky
                    && let Ok(v) = HeaderValue::from_str(&format!(
                        "AWSALB={}; Max-Age={max_age}; Path=/",
                        target.cookie
                    ))
                {
                    rparts.headers.append(header::SET_COOKIE, v);
                }
                if let Some(d) = group_stickiness
                    && let Ok(v) = HeaderValue::from_str(&format!(
                        "{tg_cookie_name}={}; Max-Age={}; Path=/",
                        group_cookie(&group),
                        d.as_secs()
                    ))
                {
                    rparts.headers.append(header::SET_COOKIE, v);
                }
                let conn = Some(conn);
                if rbody.is_end_stream() {
                    // Nothing to stream (e.g. 204, HEAD): the connection is free now.
                    if let Some(c) = conn {
                        give_back(&target, c, Some(&local));
                    }
                    return Response::from_parts(rparts, LbBody::Local(Full::new(Bytes::new())));
                }
                return Response::from_parts(
                    rparts,
                    LbBody::Upstream { body: rbody, in_flight: guard, conn, local: Some(local) },
                );
            }
            Ok(Err(SendError::Connect)) => {
                tracing::debug!(target = %target.addr, "connection to target failed");
                target.eject();
                excluded.push(target.addr);
                if retry.is_some() && attempts <= 3 {
                    continue;
                }
                return elb_error(StatusCode::BAD_GATEWAY);
            }
            Ok(Err(SendError::Reused(e))) if retry.is_some() && attempts <= 3 => {
                tracing::debug!(target = %target.addr, error = %e, "kept-alive connection to target failed; retrying");
                continue;
            }
            Ok(Err(SendError::Reused(e) | SendError::Failed(e))) => {
                tracing::debug!(target = %target.addr, error = %e, "request to target failed");
                return elb_error(StatusCode::BAD_GATEWAY);
            }
            Err(_) => return elb_error(StatusCode::GATEWAY_TIMEOUT),
        }
    }
}

fn group_cookie(g: &GroupRt) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&g.arn)
}
