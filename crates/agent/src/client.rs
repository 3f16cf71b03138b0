//! A SigV4-signing client for the control plane: ECS operations over AWS JSON 1.1, and the
//! agent channel's endpoints. One keep-alive HTTP/1.1 connection pool; every call has a
//! deadline.

use std::time::Duration;

use berth_sigv4::{Credentials, RequestParts, Signer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an AWS error.
    #[error("{code}: {message}")]
    Aws { code: String, message: String, status: u16 },
    /// No answer: connection refused, reset, timed out.
    #[error("cannot reach {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    /// An answer that is not what the operation returns.
    #[error("unexpected answer to {op}: {message}")]
    Decode { op: String, message: String },
}

impl ClientError {
    /// Whether retrying the same call later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Aws { status, .. } => *status >= 500,
            ClientError::Decode { .. } => false,
        }
    }
}

/// The control plane, as the agent talks to it.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    host: String,
    signer: Signer,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for `endpoint` (`http://host:port`) signing with `credentials` for `region`.
    pub fn new(
        endpoint: &str,
        credentials: Credentials,
        region: &str,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let uri: http::Uri = endpoint.parse().map_err(|e| ClientError::Transport {
            endpoint: endpoint.clone(),
            message: format!("not a URL: {e}"),
        })?;
        let host =
            uri.authority().map(|a| a.to_string()).ok_or_else(|| ClientError::Transport {
                endpoint: endpoint.clone(),
                message: "the URL has no host".into(),
            })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { endpoint, host, signer: Signer::new(credentials, region, "ecs"), http })
    }

    /// The endpoint this client calls.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn post(
        &self,
        path: &str,
        target: Option<&str>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), ClientError> {
        let content_type =
            if target.is_some() { "application/x-amz-json-1.1" } else { "application/json" };
        let mut headers: Vec<(&str, &str)> =
            vec![("host", &self.host), ("content-type", content_type)];
        if let Some(t) = target {
            headers.push(("x-amz-target", t));
        }
        let parts =
            RequestParts { method: "POST", path, query: "", headers: &headers, body: &body };
        let signed = self.signer.sign(&parts, time::OffsetDateTime::now_utc());
        let mut req = http::Request::post(format!("{}{path}", self.endpoint));
        for (k, v) in headers.iter().skip(1) {
            req = req.header(*k, *v);
        }
        for (k, v) in &signed {
            req = req.header(k.as_str(), v.as_str());
        }
        let transport =
            |message: String| ClientError::Transport { endpoint: self.endpoint.clone(), message };
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| transport(e.to_string()))?;
        let resp = tokio::time::timeout(timeout, async {
            let resp = self.http.request(req).await.map_err(|e| transport(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes =
                resp.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
            Ok::<_, ClientError>((status, bytes))
        })
        .await
        .map_err(|_| transport(format!("no answer within {timeout:?}")))??;
        Ok(resp)
    }

    fn decode<O: DeserializeOwned>(op: &str, status: u16, bytes: &[u8]) -> Result<O, ClientError> {
        if status != 200 {
            let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
            return Err(ClientError::Aws {
                code: v["__type"].as_str().unwrap_or("HTTP").to_string(),
                message: v["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}")),
                status,
            });
        }
        serde_json::from_slice(bytes)
            .map_err(|e| ClientError::Decode { op: op.to_string(), message: e.to_string() })
    }

    /// Calls an ECS operation.
    pub async fn ecs<I: Serialize, O: DeserializeOwned>(
        &self,
        op: &str,
        input: &I,
    ) -> Result<O, ClientError> {
        let body = serde_json::to_vec(input).expect("wire types serialise");
        let target = format!("{TARGET_PREFIX}.{op}");
        let (status, bytes) = self.post("/", Some(&target), body, Duration::from_secs(30)).await?;
        Self::decode(op, status, &bytes)
    }

    /// Calls an agent-channel endpoint; `timeout` covers a held poll.
    pub async fn agent<I: Serialize, O: DeserializeOwned>(
        &self,
        path: &str,
        input: &I,
        timeout: Duration,
    ) -> Result<O, ClientError> {
        let body = serde_json::to_vec(input).expect("agent messages serialise");
        let (status, bytes) = self.post(path, None, body, timeout).await?;
        Self::decode(path, status, &bytes)
    }
}
