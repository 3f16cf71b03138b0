//! The `/v2/` routes. Repository names hold `/`, so one handler splits the path
//! ([`parse_route`], pure) instead of the router's patterns.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::digest::{self, Digest, Reference};
use crate::manifest::{self, OCI_INDEX};
use crate::upload;
use crate::{Action, Denial, MetaError, Registry, RegistryError};

pub(crate) fn router(reg: Arc<Registry>) -> Router {
    Router::new().fallback(handle).with_state(reg)
}

/// A `/v2/` path, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Base,
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, id: String },
    Tags { name: String },
    Referrers { name: String, digest: String },
}

impl Route {
    fn name(&self) -> Option<&str> {
        match self {
            Route::Base => None,
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// Splits a request path; `None` for a path the API does not have.
pub(crate) fn parse_route(path: &str) -> Option<Route> {
    if path == "/v2/" || path == "/v2" {
        return Some(Route::Base);
    }
    let rest = path.strip_prefix("/v2/")?;
    let last = |marker: &str| -> Option<(String, String)> {
        let i = rest.rfind(marker)?;
        let tail = &rest[i + marker.len()..];
        (i > 0 && !tail.contains('/')).then(|| (rest[..i].to_string(), tail.to_string()))
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags { name: name.to_string() });
    }
    if let Some(name) =
        rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart { name: name.to_string() });
    }
    if let Some((name, id)) = last("/blobs/uploads/") {
        return Some(Route::Upload { name, id });
    }
    if let Some((name, reference)) = last("/manifests/") {
        return Some(Route::Manifest { name, reference });
    }
    if let Some((name, digest)) = last("/blobs/") {
        return Some(Route::Blob { name, digest });
    }
    if let Some((name, digest)) = last("/referrers/") {
        return Some(Route::Referrers { name, digest });
    }
    None
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    let q = query?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let decoded = (b[i] == b'%' && i + 2 < b.len())
            .then(|| Some(hex(b[i + 1])? * 16 + hex(b[i + 2])?))
            .flatten();
        match (decoded, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base_headers(resp: &mut Response) {
    resp.headers_mut()
        .insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
}

fn error_response(e: &RegistryError) -> Response {
    let mut err = serde_json::json!({"code": e.code, "message": e.message});
    if let Some(d) = &e.detail {
        err["detail"] = d.clone();
    }
    let body = serde_json::to_vec(&serde_json::json!({"errors": [err]})).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    base_headers(&mut resp);
    resp
}

fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn status(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

async fn handle(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let mut resp = match serve(&reg, req).await {
        Ok(r) => r,
        Err(Failure::Error(e)) => error_response(&e),
        Err(Failure::Challenge(message)) => {
            let mut r = error_response(&RegistryError::new("UNAUTHORIZED", 401, message));
            set(&mut r, "www-authenticate", &format!("Basic realm=\"{}\"", reg.auth.realm()));
            r
        }
    };
    base_headers(&mut resp);
    resp
}

enum Failure {
    Error(RegistryError),
    Challenge(String),
}

impl<E: Into<RegistryError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.into())
    }
}

fn err(code: &'static str, status: u16, message: impl Into<String>) -> Failure {
    Failure::Error(RegistryError::new(code, status, message))
}

/// The ECR action a request takes (pure): by its route and method. A method a route does not
/// have needs only a login (it is refused with `UNSUPPORTED` after that).
pub(crate) fn required_action(route: &Route, method: &Method) -> Action {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        Route::Base => Action::Login,
        Route::Manifest { .. } | Route::Referrers { .. } if read => Action::BatchGetImage,
        Route::Manifest { .. } if method == Method::PUT => Action::PutImage,
        Route::Manifest { .. } | Route::Blob { .. } if method == Method::DELETE => {
            Action::BatchDeleteImage
        }
        Route::Blob { .. } if method == Method::HEAD => Action::BatchCheckLayerAvailability,
        Route::Blob { .. } if method == Method::GET => Action::GetDownloadUrlForLayer,
        Route::Tags { .. } if method == Method::GET => Action::ListImages,
        Route::UploadStart { .. } if method == Method::POST => Action::InitiateLayerUpload,
        Route::Upload { .. } if method == Method::PUT => Action::CompleteLayerUpload,
        Route::Upload { .. } if matches!(*method, Method::GET | Method::PATCH | Method::DELETE) => {
            Action::UploadLayerPart
        }
        _ => Action::Login,
    }
}

/// `req` is the request's head: its headers and extensions (a `Request` itself, whose body is
/// not `Sync`, cannot be held across the decision).
async fn authorize(
    reg: &Registry,
    req: (&HeaderMap, &http::Extensions),
    repo: Option<&str>,
    action: Action,
) -> Result<(), Failure> {
    let authz = req.0.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match reg.auth.authorize(authz, req.1, repo, action).await {
        Ok(()) => Ok(()),
        Err(Denial::Unauthenticated(m)) => Err(Failure::Challenge(m)),
        Err(Denial::Denied(m)) => Err(err("DENIED", 403, m)),
    }
}

fn parse_digest(s: &str) -> Result<Digest, Failure> {
    Digest::parse(s).map_err(|e| err("DIGEST_INVALID", 400, e.to_string()))
}

async fn require_repo(reg: &Registry, name: &str) -> Result<(), Failure> {
    match reg.meta.repository(name).await? {
        Some(_) => Ok(()),
        None => Err(MetaError::NameUnknown(name.to_string()).into()),
    }
}

async fn serve(reg: &Registry, req: Request) -> Result<Response, Failure> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let Some(route) = parse_route(&path) else {
        // Authenticate first anyway: an anonymous client learns nothing of the paths.
        authorize(reg, (req.headers(), req.extensions()), None, Action::Login).await?;
        return Err(err("NOT_FOUND", 404, format!("{path} is not a registry API path")));
    };
    let action = required_action(&route, &method);
    let repo = if action == Action::Login { None } else { route.name() };
    authorize(reg, (req.headers(), req.extensions()), repo, action).await?;
    if let Some(name) = route.name() {
        digest::valid_repository(name).map_err(|e| err("NAME_INVALID", 400, e.to_string()))?;
    }
    let unsupported = || err("UNSUPPORTED", 405, format!("{method} is not supported on {path}"));
    match route {
        Route::Base => match method {
            Method::GET | Method::HEAD => {
                let mut r = Response::new(Body::from("{}"));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok(r)
            }
            _ => Err(unsupported()),
        },
        Route::Manifest { name, reference } => {
            let reference = Reference::parse(&reference).map_err(|e| match e {
                digest::NameError::Digest(d) => err("DIGEST_INVALID", 400, d.to_string()),
                other => err("TAG_INVALID", 400, other.to_string()),
            })?;
            match method {
                Method::GET | Method::HEAD => get_manifest(reg, &name, &reference).await,
                Method::PUT => put_manifest(reg, &name, &reference, req).await,
                Method::DELETE => delete_manifest(reg, &name, &reference).await,
                _ => Err(unsupported()),
            }
        }
        Route::Blob { name, digest } => {
            let digest = parse_digest(&digest)?;
            match method {
                Method::GET | Method::HEAD => {
                    get_blob(reg, &name, &digest, req.headers(), method == Method::HEAD).await
                }
                Method::DELETE => {
                    require_repo(reg, &name).await?;
                    if !reg.meta.blob_linked(&name, &digest).await? {
                        return Err(blob_unknown(&digest));
                    }
                    reg.meta.unlink_blob(&name, &digest).await?;
                    Ok(status(StatusCode::ACCEPTED))
                }
                _ => Err(unsupported()),
            }
        }
        Route::UploadStart { name } => match method {
            Method::POST => start_upload(reg, &name, query.as_deref(), req).await,
            _ => Err(unsupported()),
        },
        Route::Upload { name, id } => {
            require_repo(reg, &name).await?;
            match method {
                Method::GET => {
                    let offset = reg.blobs.upload_offset(&id, &name).await?;
                    Ok(upload_accepted(&name, &id, offset, StatusCode::NO_CONTENT))
                }
                Method::PATCH => patch_upload(reg, &name, &id, req).await,
                Method::PUT => finish_upload(reg, &name, &id, query.as_deref(), req).await,
                Method::DELETE => {
                    reg.blobs.cancel(&id, &name).await?;
                    Ok(status(StatusCode::NO_CONTENT))
                }
                _ => Err(unsupported()),
            }
        }
        Route::Tags { name } => match method {
            Method::GET => list_tags(reg, &name, query.as_deref()).await,
            _ => Err(unsupported()),
        },
        Route::Referrers { name, digest } => match method {
            Method::GET => {
                let digest = parse_digest(&digest)?;
                referrers(reg, &name, &digest, query.as_deref()).await
            }
            _ => Err(unsupported()),
        },
    }
}

fn blob_unknown(d: &Digest) -> Failure {
    Failure::Error(
        RegistryError::new("BLOB_UNKNOWN", 404, format!("blob {d} is not in this repository"))
            .with_detail(serde_json::json!({"digest": d.as_str()})),
    )
}

async fn get_manifest(
    reg: &Registry,
    name: &str,
    reference: &Reference,
) -> Result<Response, Failure> {
    require_repo(reg, name).await?;
    let Some(m) = reg.meta.manifest(name, reference).await? else {
        return Err(Failure::Error(
            RegistryError::new(
                "MANIFEST_UNKNOWN",
                404,
                format!("manifest {reference} is not in repository {name}"),
            )
            .with_detail(serde_json::json!({"Tag": reference.to_string()})),
        ));
    };
    let len = m.bytes.len();
    let mut r = Response::new(Body::from(m.bytes));
    set(&mut r, "content-type", &m.media_type);
    set(&mut r, "docker-content-digest", m.digest.as_str());
    set(&mut r, "content-length", &len.to_string());
    set(&mut r, "etag", &format!("\"{}\"", m.digest));
    Ok(r)
}

async fn put_manifest(
    reg: &Registry,
    name: &str,
    reference: &Reference,
    req: Request,
) -> Result<Response, Failure> {
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let bytes =
        axum::body::to_bytes(req.into_body(), crate::MAX_MANIFEST_BYTES).await.map_err(|e| {
            err(
                "SIZE_INVALID",
                400,
                format!(
                    "the manifest could not be read whole (at most {} bytes): {e}",
                    crate::MAX_MANIFEST_BYTES
                ),
            )
        })?;
    let (tag, expected) = match reference {
        Reference::Tag(t) => (Some(t.as_str()), None),
        Reference::Digest(d) => (None, Some(d)),
    };
    let (digest, parsed) =
        reg.push_manifest(name, content_type.as_deref(), &bytes, tag, expected).await?;
    let mut r = status(StatusCode::CREATED);
    set(&mut r, "location", &format!("/v2/{name}/manifests/{digest}"));
    set(&mut r, "docker-content-digest", digest.as_str());
    if let Some(s) = &parsed.subject {
        set(&mut r, "oci-subject", s.digest.as_str());
    }
    Ok(r)
}

async fn delete_manifest(
    reg: &Registry,
    name: &str,
    reference: &Reference,
) -> Result<Response, Failure> {
    require_repo(reg, name).await?;
    let found = match reference {
        Reference::Digest(d) => reg.meta.delete_manifest(name, d).await?,
        Reference::Tag(t) => reg.meta.delete_tag(name, t).await?,
    };
    if !found {
        return Err(err(
            "MANIFEST_UNKNOWN",
            404,
            format!("manifest {reference} is not in repository {name}"),
        ));
    }
    Ok(status(StatusCode::ACCEPTED))
}

/// Serves blob `digest`, whole or the asked range, streamed from its file.
async fn get_blob(
    reg: &Registry,
    name: &str,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, Failure> {
    require_repo(reg, name).await?;
    if !reg.meta.blob_linked(name, digest).await? {
        return Err(blob_unknown(digest));
    }
    let Some(file) = reg.blobs.open_blob(digest).await? else {
        return Err(blob_unknown(digest));
    };
    let size = file
        .metadata()
        .await
        .map_err(|source| crate::BlobError::Io { path: reg.blobs.path(digest), source })?
        .len();
    let range = upload::blob_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), size)
        .map_err(|()| {
            Failure::Error(RegistryError::new(
                "BLOB_UNKNOWN",
                416,
                format!("the requested range is outside blob {digest} of {size} bytes"),
            ))
        })?;
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    let mut r = if head || len == 0 {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from_stream(read_stream(file.into_std().await, start, len)))
    };
    if range.is_some() {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        set(&mut r, "content-range", &format!("bytes {start}-{end}/{size}"));
    }
    set(&mut r, "content-length", &len.to_string());
    set(&mut r, "content-type", "application/octet-stream");
    set(&mut r, "docker-content-digest", digest.as_str());
    set(&mut r, "accept-ranges", "bytes");
    set(&mut r, "etag", &format!("\"{digest}\""));
    Ok(r)
}

/// How much one read of a blob takes (and one piece of the response carries): large, so a
/// download costs few reads, few thread hand-offs and few socket writes.
pub(crate) const READ_CHUNK: usize = 1 << 20;

/// `len` bytes of `file` from offset `start`: one blocking thread reads `READ_CHUNK`-sized
/// pieces, each straight into its own buffer (no second copy, nothing zeroed first), and
/// hands them over a short queue, which bounds what a download holds in memory (a few
/// pieces) and stops the reads when the client goes away.
fn read_stream(
    mut file: std::fs::File,
    start: u64,
    len: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek};
        if start > 0
            && let Err(e) = file.seek(std::io::SeekFrom::Start(start))
        {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let want = left.min(READ_CHUNK as u64) as usize;
            let mut buf = Vec::with_capacity(want);
            let piece = match (&file).take(want as u64).read_to_end(&mut buf) {
                Ok(0) => {
                    Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob file shrank"))
                }
                Ok(n) => {
                    left -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = piece.is_err();
            if tx.blocking_send(piece).is_err() || failed {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) })
}

fn upload_accepted(name: &str, id: &str, offset: u64, code: StatusCode) -> Response {
    let mut r = status(code);
    set(&mut r, "location", &format!("/v2/{name}/blobs/uploads/{id}"));
    set(&mut r, "range", &upload::session_range(offset));
    set(&mut r, "docker-upload-uuid", id);
    set(&mut r, "content-length", "0");
    r
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    let mut r = status(StatusCode::CREATED);
    set(&mut r, "location", &format!("/v2/{name}/blobs/{digest}"));
    set(&mut r, "docker-content-digest", digest.as_str());
    set(&mut r, "content-length", "0");
    r
}

async fn start_upload(
    reg: &Registry,
    name: &str,
    query: Option<&str>,
    req: Request,
) -> Result<Response, Failure> {
    require_repo(reg, name).await?;
    if let Some(mount) = query_param(query, "mount") {
        let digest = parse_digest(&mount)?;
        if let Some(from) = query_param(query, "from")
            && digest::valid_repository(&from).is_ok()
            && authorize(
                reg,
                (req.headers(), req.extensions()),
                Some(&from),
                Action::GetDownloadUrlForLayer,
            )
            .await
            .is_ok()
            && reg.meta.repository(&from).await?.is_some()
            && reg.meta.blob_linked(&from, &digest).await?
        {
            let _live = reg.gc_lock.read().await;
            if let Some(size) = reg.blobs.stat(&digest).await? {
                reg.meta.link_blob(name, &digest, size).await?;
                return Ok(blob_created(name, &digest));
            }
        }
        // Not mountable: an ordinary upload session, as the spec says.
    }
    if let Some(d) = query_param(query, "digest") {
        let digest = parse_digest(&d)?;
        let _live = reg.gc_lock.read().await;
        let size = reg.blobs.put(name, &digest, req.into_body().into_data_stream()).await?;
        reg.meta.link_blob(name, &digest, size).await?;
        return Ok(blob_created(name, &digest));
    }
    let id = reg.blobs.start_upload(name).await?;
    Ok(upload_accepted(name, &id, 0, StatusCode::ACCEPTED))
}

async fn patch_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    req: Request,
) -> Result<Response, Failure> {
    let h = req.headers();
    let range = h.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let check = |offset| upload::check_chunk(offset, range.as_deref(), length);
    match reg.blobs.append(id, name, check, req.into_body().into_data_stream()).await? {
        Ok(offset) => Ok(upload_accepted(name, id, offset, StatusCode::ACCEPTED)),
        Err(e) => {
            let offset = reg.blobs.upload_offset(id, name).await?;
            let mut r =
                error_response(&RegistryError::new("BLOB_UPLOAD_INVALID", 416, e.to_string()));
            set(&mut r, "location", &format!("/v2/{name}/blobs/uploads/{id}"));
            set(&mut r, "range", &upload::session_range(offset));
            Ok(r)
        }
    }
}

async fn finish_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    query: Option<&str>,
    req: Request,
) -> Result<Response, Failure> {
    let Some(d) = query_param(query, "digest") else {
        return Err(err("DIGEST_INVALID", 400, "finishing an upload needs ?digest=sha256:..."));
    };
    let digest = parse_digest(&d)?;
    let _live = reg.gc_lock.read().await;
    let size = reg.blobs.finish(id, name, &digest, req.into_body().into_data_stream()).await?;
    reg.meta.link_blob(name, &digest, size).await?;
    Ok(blob_created(name, &digest))
}

/// The tags after `last` (exclusive), at most `n`; whether more follow.
pub(crate) fn page(tags: &[String], n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let from = match last {
        Some(l) => tags.partition_point(|t| t.as_str() <= l),
        None => 0,
    };
    let rest = &tags[from..];
    match n {
        Some(n) if n < rest.len() => (rest[..n].to_vec(), true),
        _ => (rest.to_vec(), false),
    }
}

async fn list_tags(reg: &Registry, name: &str, query: Option<&str>) -> Result<Response, Failure> {
    require_repo(reg, name).await?;
    let n = match query_param(query, "n") {
        None => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            err("PAGINATION_NUMBER_INVALID", 400, format!("n={v} is not a number"))
        })?),
    };
    let last = query_param(query, "last");
    let tags = reg.meta.tags(name).await?;
    let (tags, more) = page(&tags, n, last.as_deref());
    let mut r = Response::new(Body::from(
        serde_json::to_vec(&serde_json::json!({"name": name, "tags": tags})).unwrap_or_default(),
    ));
    set(&mut r, "content-type", "application/json");
    if more && let (Some(n), Some(l)) = (n, tags.last()) {
        set(&mut r, "link", &format!("</v2/{name}/tags/list?n={n}&last={l}>; rel=\"next\""));
    }
    Ok(r)
}

async fn referrers(
    reg: &Registry,
    name: &str,
    digest: &Digest,
    query: Option<&str>,
) -> Result<Response, Failure> {
    require_repo(reg, name).await?;
    let filter = query_param(query, "artifactType");
    let mut manifests = vec![];
    for m in reg.meta.referrers(name, digest).await? {
        let Ok(p) = manifest::parse(Some(&m.media_type), &m.bytes) else { continue };
        if filter.as_ref().is_some_and(|f| p.artifact_type.as_ref() != Some(f)) {
            continue;
        }
        let mut d = serde_json::json!({
            "mediaType": m.media_type,
            "digest": m.digest.as_str(),
            "size": m.bytes.len(),
        });
        if let Some(a) = &p.artifact_type {
            d["artifactType"] = a.clone().into();
        }
        if let Some(a) = p.annotations {
            d["annotations"] = a.into();
        }
        manifests.push(d);
    }
    let body =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut r = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    set(&mut r, "content-type", OCI_INDEX);
    if filter.is_some() {
        set(&mut r, "oci-filters-applied", "artifactType");
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
