//! A server in-process over real HTTP on an ephemeral port, with signed requests.
#![allow(dead_code)]

use berth_server::{Server, ServerConfig};
use berth_sigv4::{Credentials, RequestParts, Signer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub const TARGET: &str = "AmazonEC2ContainerServiceV20141113";

pub struct Harness {
    pub endpoint: String,
    pub host: String,
    pub signer: Signer,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    pub data_dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config =
            ServerConfig::new(data_dir.path().join("d"), "127.0.0.1:0".parse().unwrap());
        config.account_id = "123456789012".into();
        tweak(&mut config);
        let server = Server::start(config).await.unwrap();
        let addr = server.local_addr();
        let key = server.admin_key().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        let signer = Signer::new(
            Credentials {
                access_key_id: key.access_key_id,
                secret_access_key: key.secret_access_key,
                session_token: None,
            },
            "us-east-1",
            "ecs",
        );
        Self {
            endpoint: format!("http://{addr}/"),
            host: addr.to_string(),
            signer,
            client: Client::builder(TokioExecutor::new()).build_http(),
            data_dir,
            _shutdown: tx,
        }
    }

    pub async fn raw(&self, target: &str, body: &[u8], signer: Option<&Signer>) -> Reply {
        let headers = [
            ("host", self.host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let mut req = http::Request::post(&self.endpoint);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(signer) = signer {
            let parts =
                RequestParts { method: "POST", path: "/", query: "", headers: &headers, body };
            for (k, v) in signer.sign(&parts, time::OffsetDateTime::now_utc()) {
                req = req.header(k, v);
            }
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body }
    }

    /// Signs and POSTs JSON to another path (the agent channel).
    pub async fn post_path(&self, path: &str, body: &Value) -> Reply {
        let body = body.to_string();
        let headers = [("host", self.host.as_str()), ("content-type", "application/json")];
        let mut req =
            http::Request::post(format!("{}{}", self.endpoint.trim_end_matches('/'), path));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let parts = RequestParts {
            method: "POST",
            path,
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        for (k, v) in self.signer.sign(&parts, time::OffsetDateTime::now_utc()) {
            req = req.header(k, v);
        }
        let resp =
            self.client.request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    pub async fn call(&self, op: &str, input: Value) -> Reply {
        self.raw(&format!("{TARGET}.{op}"), input.to_string().as_bytes(), Some(&self.signer)).await
    }

    pub async fn ok(&self, op: &str, input: Value) -> Value {
        let r = self.call(op, input).await;
        assert_eq!(r.status, 200, "{op}: {}", r.body);
        r.body
    }
}
