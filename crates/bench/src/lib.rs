//! What the benchmark binaries share: one SigV4-signed AWS JSON 1.1 request to ECS, a pooled
//! signing client ([`api`]), the fleet simulator ([`fleet`]) and the scale benchmark's drivers
//! ([`scale`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod fleet;
pub mod scale;

use berth_sigv4::{RequestParts, Signer};
use bytes::Bytes;
use http_body_util::Full;

/// `X-Amz-Target` prefix of ECS.
pub const TARGET: &str = "AmazonEC2ContainerServiceV20141113";

/// A signed `POST /` calling ECS operation `op` with `body`, for a connection to `host`.
pub fn signed_ecs_request(
    signer: &Signer,
    host: &str,
    op: &str,
    body: String,
) -> Result<hyper::Request<Full<Bytes>>, http::Error> {
    let target = format!("{TARGET}.{op}");
    let headers = [
        ("host", host),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
    ];
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let signed = signer.sign(&parts, time::OffsetDateTime::now_utc());
    let mut req = hyper::Request::post("/");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    for (k, v) in &signed {
        req = req.header(k.as_str(), v.as_str());
    }
    req.body(Full::new(Bytes::from(body)))
}
