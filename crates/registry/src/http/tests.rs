//! The `/v2/` API driven through the router, over a temp dir and in-memory metadata.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::meta::{MemoryMetadata, Metadata, RepoSettings};
use crate::{AllowAll, Registry};

#[test]
fn paths_split_into_routes() {
    let r = |p: &str| parse_route(p);
    let s = String::from;
    assert_eq!(r("/v2/"), Some(Route::Base));
    assert_eq!(
        r("/v2/team/app/manifests/v1"),
        Some(Route::Manifest { name: s("team/app"), reference: s("v1") })
    );
    assert_eq!(
        r("/v2/a/blobs/b/manifests/latest"),
        Some(Route::Manifest { name: s("a/blobs/b"), reference: s("latest") })
    );
    assert_eq!(r("/v2/app/blobs/uploads/"), Some(Route::UploadStart { name: s("app") }));
    assert_eq!(
        r("/v2/app/blobs/uploads/abc"),
        Some(Route::Upload { name: s("app"), id: s("abc") })
    );
    assert_eq!(
        r("/v2/app/blobs/sha256:00"),
        Some(Route::Blob { name: s("app"), digest: s("sha256:00") })
    );
    assert_eq!(r("/v2/x/y/tags/list"), Some(Route::Tags { name: s("x/y") }));
    assert_eq!(
        r("/v2/app/referrers/sha256:00"),
        Some(Route::Referrers { name: s("app"), digest: s("sha256:00") })
    );
    assert_eq!(r("/v2/manifests/x"), None);
    assert_eq!(r("/v3/app/tags/list"), None);
    assert_eq!(r("/v2/app/manifests/a/b"), None);
}

#[test]
fn tag_pages() {
    let tags: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    assert_eq!(page(&tags, None, None), (tags.clone(), false));
    assert_eq!(page(&tags, Some(2), None), (vec!["a".into(), "b".into()], true));
    assert_eq!(page(&tags, Some(2), Some("b")), (vec!["c".into(), "d".into()], false));
    assert_eq!(page(&tags, Some(0), None), (vec![], true));
    assert_eq!(page(&tags, None, Some("bb")), (vec!["c".into(), "d".into()], false));
}

struct Fixture {
    _dir: tempfile::TempDir,
    reg: Arc<Registry>,
    meta: Arc<MemoryMetadata>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(MemoryMetadata::default());
    meta.create_repository("app", RepoSettings::default());
    meta.create_repository("other", RepoSettings::default());
    meta.create_repository("frozen", RepoSettings { immutable_tags: true });
    let reg = Arc::new(Registry::open(dir.path(), meta.clone(), Arc::new(AllowAll)).unwrap());
    Fixture { _dir: dir, reg, meta }
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

async fn call(
    reg: &Arc<Registry>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = reg.clone().router().oneshot(b.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply { status, headers, body }
}

async fn push_blob(reg: &Arc<Registry>, repo: &str, content: &[u8]) -> Digest {
    let d = Digest::of(content);
    let r =
        call(reg, "POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[], content.to_vec())
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    d
}

fn image_manifest(config: &Digest, config_len: usize, layers: &[(&Digest, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, n)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.as_str(), "size": n}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.as_str(), "size": config_len},
        "layers": layers,
    }))
    .unwrap()
}

#[tokio::test]
async fn push_pull_and_delete_an_image() {
    let f = fixture();
    let reg = &f.reg;
    assert_eq!(call(reg, "GET", "/v2/", &[], vec![]).await.status, StatusCode::OK);
    let config = push_blob(reg, "app", b"{}").await;
    // A chunked upload in two PATCHes, the second with a Content-Range.
    let start = call(reg, "POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    let loc = start.header("location").to_string();
    let p1 = call(reg, "PATCH", &loc, &[], b"layer-".to_vec()).await;
    assert_eq!((p1.status, p1.header("range")), (StatusCode::ACCEPTED, "0-5"));
    let bad = call(reg, "PATCH", &loc, &[("content-range", "0-3")], b"data".to_vec()).await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(bad.header("range"), "0-5", "a refused chunk changes nothing");
    let p2 = call(reg, "PATCH", &loc, &[("content-range", "6-9")], b"data".to_vec()).await;
    assert_eq!(p2.header("range"), "0-9");
    assert_eq!(call(reg, "GET", &loc, &[], vec![]).await.status, StatusCode::NO_CONTENT);
    let layer = Digest::of(b"layer-data");
    let wrong = Digest::of(b"nope");
    // The finish checks the digest: a wrong one is refused and ends the session.
    let done = call(reg, "PUT", &format!("{loc}?digest={layer}"), &[], vec![]).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(done.header("docker-content-digest"), layer.as_str());
    let bad_finish =
        call(reg, "POST", &format!("/v2/app/blobs/uploads/?digest={wrong}"), &[], b"x".to_vec())
            .await;
    assert_eq!(bad_finish.code(), "DIGEST_INVALID");

    // Blobs read back, whole and by range.
    let got = call(reg, "GET", &format!("/v2/app/blobs/{layer}"), &[], vec![]).await;
    assert_eq!(got.body, b"layer-data");
    let part =
        call(reg, "GET", &format!("/v2/app/blobs/{layer}"), &[("range", "bytes=6-")], vec![]).await;
    assert_eq!((part.status, part.body.as_slice()), (StatusCode::PARTIAL_CONTENT, &b"data"[..]));
    let head = call(reg, "HEAD", &format!("/v2/app/blobs/{layer}"), &[], vec![]).await;
    assert_eq!(head.header("content-length"), "10");
    // Another repository does not hold it until mounted.
    let miss = call(reg, "HEAD", &format!("/v2/other/blobs/{layer}"), &[], vec![]).await;
    assert_eq!(miss.status, StatusCode::NOT_FOUND);
    let mount =
        call(reg, "POST", &format!("/v2/other/blobs/uploads/?mount={layer}&from=app"), &[], vec![])
            .await;
    assert_eq!(mount.status, StatusCode::CREATED);
    assert_eq!(
        call(reg, "HEAD", &format!("/v2/other/blobs/{layer}"), &[], vec![]).await.status,
        StatusCode::OK
    );

    // A manifest naming a blob the repository lacks is refused.
    let missing = Digest::of(b"missing");
    let m = image_manifest(&config, 2, &[(&missing, 7)]);
    let r =
        call(reg, "PUT", "/v2/app/manifests/v1", &[("content-type", manifest::OCI_MANIFEST)], m)
            .await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN"));

    let m = image_manifest(&config, 2, &[(&layer, 10)]);
    let md = Digest::of(&m);
    let r = call(
        reg,
        "PUT",
        "/v2/app/manifests/v1",
        &[("content-type", manifest::OCI_MANIFEST)],
        m.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("docker-content-digest"), md.as_str());
    for reference in ["v1".to_string(), md.to_string()] {
        let g = call(reg, "GET", &format!("/v2/app/manifests/{reference}"), &[], vec![]).await;
        assert_eq!(g.body, m);
        assert_eq!(g.header("content-type"), manifest::OCI_MANIFEST);
        assert_eq!(g.header("docker-content-digest"), md.as_str());
    }
    // By digest, the digest must match.
    let r = call(
        reg,
        "PUT",
        &format!("/v2/app/manifests/{wrong}"),
        &[("content-type", manifest::OCI_MANIFEST)],
        m.clone(),
    )
    .await;
    assert_eq!(r.code(), "DIGEST_INVALID");

    // Tags, paginated with a Link header.
    for t in ["v2", "v3"] {
        let r = call(
            reg,
            "PUT",
            &format!("/v2/app/manifests/{t}"),
            &[("content-type", manifest::OCI_MANIFEST)],
            m.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let page1 = call(reg, "GET", "/v2/app/tags/list?n=2", &[], vec![]).await;
    let v: serde_json::Value = serde_json::from_slice(&page1.body).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2"]));
    assert_eq!(page1.header("link"), "</v2/app/tags/list?n=2&last=v2>; rel=\"next\"");
    let page2 = call(reg, "GET", "/v2/app/tags/list?n=2&last=v2", &[], vec![]).await;
    let v: serde_json::Value = serde_json::from_slice(&page2.body).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v3"]));
    assert_eq!(page2.header("link"), "");

    // A referrer (an artifact whose subject is the image).
    let sig = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST, "artifactType": "application/example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.as_str(), "size": 2},
        "layers": [], "subject": {"mediaType": manifest::OCI_MANIFEST, "digest": md.as_str(), "size": m.len()}
    }))
    .unwrap();
    let sd = Digest::of(&sig);
    let r = call(
        reg,
        "PUT",
        &format!("/v2/app/manifests/{sd}"),
        &[("content-type", manifest::OCI_MANIFEST)],
        sig,
    )
    .await;
    assert_eq!(r.header("oci-subject"), md.as_str());
    let refs = call(
        reg,
        "GET",
        &format!("/v2/app/referrers/{md}?artifactType=application/example.sig"),
        &[],
        vec![],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&refs.body).unwrap();
    assert_eq!(v["manifests"][0]["digest"], sd.as_str());
    assert_eq!(refs.header("oci-filters-applied"), "artifactType");
    let none =
        call(reg, "GET", &format!("/v2/app/referrers/{md}?artifactType=x"), &[], vec![]).await;
    let v: serde_json::Value = serde_json::from_slice(&none.body).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));

    // Unknown things answer their codes.
    assert_eq!(call(reg, "GET", "/v2/nope/tags/list", &[], vec![]).await.code(), "NAME_UNKNOWN");
    assert_eq!(
        call(reg, "GET", "/v2/app/manifests/nope", &[], vec![]).await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        call(reg, "GET", "/v2/app/blobs/sha256:xyz", &[], vec![]).await.code(),
        "DIGEST_INVALID"
    );
    assert_eq!(call(reg, "GET", "/v2/App/tags/list", &[], vec![]).await.code(), "NAME_INVALID");

    // Garbage collection keeps what manifests reference, and deletes the rest once nothing does.
    let orphan = push_blob(reg, "app", b"orphan").await;
    let report = f.reg.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.blobs_deleted, 0, "the orphan is within its grace period");
    let report = f.reg.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.blobs_deleted, 1);
    assert_eq!(f.reg.blobs().stat(&orphan).await.unwrap(), None);
    assert!(f.reg.blobs().stat(&layer).await.unwrap().is_some());
    for d in [&sd, &md] {
        let r = call(reg, "DELETE", &format!("/v2/app/manifests/{d}"), &[], vec![]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    assert_eq!(
        call(reg, "GET", "/v2/app/manifests/v1", &[], vec![]).await.code(),
        "MANIFEST_UNKNOWN"
    );
    let report = f.reg.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.blobs_deleted, 2);
    assert_eq!(report.bytes_freed, 12);
    assert!(f.reg.blobs().list().await.unwrap().is_empty());
    assert!(!f.meta.blob_linked("other", &layer).await.unwrap());
}

#[tokio::test]
async fn immutable_tags_refuse_a_move() {
    let f = fixture();
    let reg = &f.reg;
    let config = push_blob(reg, "frozen", b"{}").await;
    let l1 = push_blob(reg, "frozen", b"one").await;
    let l2 = push_blob(reg, "frozen", b"two").await;
    let m1 = image_manifest(&config, 2, &[(&l1, 3)]);
    let m2 = image_manifest(&config, 2, &[(&l2, 3)]);
    let ct = [("content-type", manifest::OCI_MANIFEST)];
    assert_eq!(
        call(reg, "PUT", "/v2/frozen/manifests/v1", &ct, m1.clone()).await.status,
        StatusCode::CREATED
    );
    // The same image again is fine; another one is not.
    assert_eq!(
        call(reg, "PUT", "/v2/frozen/manifests/v1", &ct, m1).await.status,
        StatusCode::CREATED
    );
    let r = call(reg, "PUT", "/v2/frozen/manifests/v1", &ct, m2.clone()).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "TAG_INVALID"));
    assert!(String::from_utf8_lossy(&r.body).contains("cannot be overwritten"));
    assert_eq!(
        call(reg, "PUT", "/v2/frozen/manifests/v2", &ct, m2).await.status,
        StatusCode::CREATED
    );
}

#[test]
fn each_route_and_method_needs_its_ecr_action() {
    let s = String::from;
    let manifest = Route::Manifest { name: s("a"), reference: s("v1") };
    let blob = Route::Blob { name: s("a"), digest: s("sha256:00") };
    let start = Route::UploadStart { name: s("a") };
    let upload = Route::Upload { name: s("a"), id: s("u") };
    let tags = Route::Tags { name: s("a") };
    let referrers = Route::Referrers { name: s("a"), digest: s("sha256:00") };
    use Action::*;
    let cases: &[(&Route, Method, Action)] = &[
        (&Route::Base, Method::GET, Login),
        (&manifest, Method::GET, BatchGetImage),
        (&manifest, Method::HEAD, BatchGetImage),
        (&manifest, Method::PUT, PutImage),
        (&manifest, Method::DELETE, BatchDeleteImage),
        (&manifest, Method::POST, Login),
        (&blob, Method::HEAD, BatchCheckLayerAvailability),
        (&blob, Method::GET, GetDownloadUrlForLayer),
        (&blob, Method::DELETE, BatchDeleteImage),
        (&blob, Method::PUT, Login),
        (&start, Method::POST, InitiateLayerUpload),
        (&start, Method::GET, Login),
        (&upload, Method::PATCH, UploadLayerPart),
        (&upload, Method::GET, UploadLayerPart),
        (&upload, Method::DELETE, UploadLayerPart),
        (&upload, Method::PUT, CompleteLayerUpload),
        (&tags, Method::GET, ListImages),
        (&tags, Method::DELETE, Login),
        (&referrers, Method::GET, BatchGetImage),
    ];
    for (route, method, want) in cases {
        assert_eq!(required_action(route, method), *want, "{method} {route:?}");
    }
    for (a, access) in [
        (BatchGetImage, crate::Access::Pull),
        (GetDownloadUrlForLayer, crate::Access::Pull),
        (BatchCheckLayerAvailability, crate::Access::Pull),
        (PutImage, crate::Access::Push),
        (CompleteLayerUpload, crate::Access::Push),
        (BatchDeleteImage, crate::Access::Delete),
    ] {
        assert_eq!(a.access(), access, "{a:?}");
    }
    assert_eq!(GetDownloadUrlForLayer.iam_action(), Some("ecr:GetDownloadUrlForLayer"));
    assert_eq!(Login.iam_action(), None);
}

/// Refuses anonymous requests, pushes to `other` and reads of `secret`.
struct Gate;

#[async_trait::async_trait]
impl crate::Authorizer for Gate {
    fn realm(&self) -> String {
        "test-realm".into()
    }
    async fn authorize(
        &self,
        h: Option<&str>,
        _: &http::Extensions,
        repo: Option<&str>,
        action: Action,
    ) -> Result<(), Denial> {
        match (h, repo, action.access()) {
            (None, _, _) => Err(Denial::Unauthenticated("no credential".into())),
            (Some(_), Some("other"), crate::Access::Push) => {
                Err(Denial::Denied(format!("read only: {:?}", action.iam_action())))
            }
            (Some(_), Some("secret"), crate::Access::Pull) => Err(Denial::Denied("no".into())),
            _ => Ok(()),
        }
    }
}

#[tokio::test]
async fn unauthenticated_requests_get_a_basic_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(MemoryMetadata::default());
    meta.create_repository("other", RepoSettings::default());
    let reg = Arc::new(Registry::open(dir.path(), meta, Arc::new(Gate)).unwrap());
    let r = call(&reg, "GET", "/v2/", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), "Basic realm=\"test-realm\"");
    assert_eq!(r.code(), "UNAUTHORIZED");
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    let auth = [("authorization", "Basic eA==")];
    assert_eq!(call(&reg, "GET", "/v2/", &auth, vec![]).await.status, StatusCode::OK);
    let r = call(&reg, "POST", "/v2/other/blobs/uploads/", &auth, vec![]).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    assert!(String::from_utf8_lossy(&r.body).contains("ecr:InitiateLayerUpload"));
}

/// A cross-repository mount needs pull on its source: without it, an ordinary upload
/// session starts and nothing of the source is linked.
#[tokio::test]
async fn a_mount_needs_pull_on_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(MemoryMetadata::default());
    for r in ["secret", "app", "dest"] {
        meta.create_repository(r, RepoSettings::default());
    }
    let reg = Arc::new(Registry::open(dir.path(), meta.clone(), Arc::new(Gate)).unwrap());
    let auth = [("authorization", "Basic eA==")];
    let put = |repo: &'static str| {
        let reg = reg.clone();
        async move {
            let d = Digest::of(repo.as_bytes());
            let uri = format!("/v2/{repo}/blobs/uploads/?digest={d}");
            let r = call(&reg, "POST", &uri, &auth, repo.as_bytes().to_vec()).await;
            assert_eq!(r.status, StatusCode::CREATED);
            d
        }
    };
    let (hidden, shared) = (put("secret").await, put("app").await);
    let mount = |d: &Digest, from: &str| format!("/v2/dest/blobs/uploads/?mount={d}&from={from}");
    let r = call(&reg, "POST", &mount(&hidden, "secret"), &auth, vec![]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "not mounted: an upload session instead");
    assert!(!meta.blob_linked("dest", &hidden).await.unwrap());
    let r = call(&reg, "POST", &mount(&shared, "app"), &auth, vec![]).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(meta.blob_linked("dest", &shared).await.unwrap());
}

/// A blob of several read pieces comes back whole, and by ranges across the pieces.
#[tokio::test]
async fn large_blobs_stream_whole_and_by_range() {
    let f = fixture();
    let content: Vec<u8> = (0..READ_CHUNK * 2 + 12345).map(|i| (i * 7 % 251) as u8).collect();
    let d = push_blob(&f.reg, "app", &content).await;
    let uri = format!("/v2/app/blobs/{d}");
    let whole = call(&f.reg, "GET", &uri, &[], vec![]).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.header("content-length"), content.len().to_string());
    assert!(whole.body == content, "the body is the blob");
    let (a, b) = (READ_CHUNK - 10, 2 * READ_CHUNK + 5);
    let part = call(&f.reg, "GET", &uri, &[("range", &format!("bytes={a}-{b}"))], vec![]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.header("content-range"), format!("bytes {a}-{b}/{}", content.len()));
    assert!(part.body == content[a..=b], "the range is the blob's bytes");
    let tail = call(&f.reg, "GET", &uri, &[("range", "bytes=-3")], vec![]).await;
    assert_eq!(tail.body, content[content.len() - 3..]);
    let head = call(&f.reg, "HEAD", &uri, &[], vec![]).await;
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));
}
