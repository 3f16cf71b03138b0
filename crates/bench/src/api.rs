//! A SigV4-signing client for thousands of concurrent callers: one shared keep-alive HTTP/1.1
//! connection pool (hyper's), ECS operations over AWS JSON 1.1 and the agent channel's
//! endpoints, every call with a deadline. Cloning is cheap and shares the pool.

use std::sync::Arc;
use std::time::Duration;

use berth_sigv4::{Credentials, RequestParts, Signer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TARGET;

/// A failed call.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// The server answered with an AWS error (or another non-200 status).
    Aws { code: String, message: String, status: u16 },
    /// No answer: connection refused or reset, deadline passed.
    Transport(String),
    /// An answer that does not decode.
    Decode(String),
}

impl ApiError {
    /// Whether the same call may succeed later (the agent's rule: transport errors and 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport(_) => true,
            ApiError::Aws { status, .. } => *status >= 500 || *status == 429,
            ApiError::Decode(_) => false,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Aws { code, message, status } => {
                write!(f, "{code} (HTTP {status}): {message}")
            }
            ApiError::Transport(m) => write!(f, "transport: {m}"),
            ApiError::Decode(m) => write!(f, "decode: {m}"),
        }
    }
}

impl std::error::Error for ApiError {}

struct Inner {
    endpoint: String,
    host: String,
    signer: Signer,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

/// The control plane, signed with one key.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

impl Api {
    /// A client for `endpoint` (`http://127.0.0.1:PORT`).
    pub fn new(endpoint: &str, credentials: Credentials, region: &str) -> anyhow::Result<Self> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let uri: http::Uri = endpoint.parse()?;
        let host = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| anyhow::anyhow!("{endpoint} has no host"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                host,
                signer: Signer::new(credentials, region, "ecs"),
                http,
            }),
        })
    }

    /// The endpoint called.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// One signed `POST path`; returns the status and the body.
    pub async fn post(
        &self,
        path: &str,
        target: Option<&str>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), ApiError> {
        let me = &self.inner;
        let content_type =
            if target.is_some() { "application/x-amz-json-1.1" } else { "application/json" };
        let mut headers: Vec<(&str, &str)> =
            vec![("host", &me.host), ("content-type", content_type)];
        if let Some(t) = target {
            headers.push(("x-amz-target", t));
        }
        let parts =
            RequestParts { method: "POST", path, query: "", headers: &headers, body: &body };
        let signed = me.signer.sign(&parts, time::OffsetDateTime::now_utc());
        let mut req = http::Request::post(format!("{}{path}", me.endpoint));
        for (k, v) in headers.iter().skip(1) {
            req = req.header(*k, *v);
        }
        for (k, v) in &signed {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        tokio::time::timeout(timeout, async {
            let resp =
                me.http.request(req).await.map_err(|e| ApiError::Transport(format!("{e:?}")))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ApiError::Transport(e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        })
        .await
        .map_err(|_| ApiError::Transport(format!("no answer within {timeout:?}")))?
    }

    fn decode<O: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<O, ApiError> {
        if status != 200 {
            let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
            let code = v["__type"].as_str().unwrap_or("HTTP").to_string();
            let code = code.rsplit('#').next().unwrap_or_default().to_string();
            return Err(ApiError::Aws {
                code,
                message: v["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned()),
                status,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// Calls ECS operation `op` with a 60 s deadline.
    pub async fn ecs<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        op: &str,
        input: &I,
    ) -> Result<O, ApiError> {
        self.ecs_within(op, input, Duration::from_secs(60)).await
    }

    /// Calls ECS operation `op` with a deadline.
    pub async fn ecs_within<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        op: &str,
        input: &I,
        timeout: Duration,
    ) -> Result<O, ApiError> {
        let body = serde_json::to_vec(input).map_err(|e| ApiError::Decode(e.to_string()))?;
        let target = format!("{TARGET}.{op}");
        let (status, bytes) = self.post("/", Some(&target), body, timeout).await?;
        Self::decode(status, &bytes)
    }

    /// Calls an agent-channel endpoint; `timeout` covers a held poll.
    pub async fn agent<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        path: &str,
        input: &I,
        timeout: Duration,
    ) -> Result<O, ApiError> {
        let body = serde_json::to_vec(input).map_err(|e| ApiError::Decode(e.to_string()))?;
        let (status, bytes) = self.post(path, None, body, timeout).await?;
        Self::decode(status, &bytes)
    }
}

/// Reads the `default` profile of an AWS shared credentials file (what `berth server` writes
/// to `DATA_DIR/credentials`); dummy keys without a file.
pub fn load_credentials(path: Option<&std::path::Path>) -> anyhow::Result<Credentials> {
    use anyhow::Context;
    let Some(path) = path else {
        return Ok(Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        });
    };
    berth_sigv4::credentials::from_file(path, "default")
        .with_context(|| format!("reading credentials from {}", path.display()))
}

/// Raises this process's soft limit on open files to its hard limit (each simulated agent
/// holds a connection in its long-poll); returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if setrlimit(Resource::Nofile, lim).is_err() {
            // Some systems refuse RLIM_INFINITY for files: settle for a large finite value.
            lim.current = Some(1 << 20);
            let _ = setrlimit(Resource::Nofile, lim);
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
