//! A SigV4-signing client for the control plane: ECS operations over AWS JSON 1.1, and the
//! agent channel's endpoints. One keep-alive HTTP/1.1 connection pool; every call has a
//! deadline, and every answer is read up to [`MAX_ANSWER_BYTES`] only.
//!
//! `https://` endpoints are reached over TLS (rustls) trusting only the CA given to
//! [`Client::with_ca`] (the server's `DATA_DIR/tls/ca.pem`, pinned with `--ca-file`), never
//! the system roots; an `https://` endpoint without a CA is refused at construction.
//!
//! Several servers (`--server URL,URL,...`, issue #18): the client talks to one at a time. A
//! call that gets no answer (connection refused or reset, timeout) or a server error (5xx)
//! is tried at once on the next server, round the list, and the first that answers becomes
//! the current one for the calls that follow; a call fails only when every server failed
//! (then the next call starts from the following server). The calls the agent retries this
//! way are its poll (a read: the held poll simply resumes on another server) and its reports
//! and registration (idempotent: the latest state wins), so a call whose first attempt may
//! have been applied is safe to repeat elsewhere.
//!
//! A held call (a deadline over [`Liveness::held_after`], the poll) to one of several servers
//! is watched: the server's unauthenticated [`berth_agent_protocol::INFO_PATH`] is probed
//! every [`Liveness::every`] on another connection, and after [`Liveness::misses`]
//! consecutive probes without any answer the held call is abandoned as a transport failure
//! and goes to the next server. A paused (SIGSTOPped) or wedged server keeps its TCP
//! connections open and would otherwise hold the agent for the whole poll; with the defaults
//! the agent moves on within about 8 s. A server that answers the probe, even with an error,
//! is alive: only silence counts.

use std::time::Duration;

use berth_sigv4::{Credentials, RequestParts, Signer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// Largest answer the agent reads, in bytes. The largest legitimate one is a poll answer:
/// every unfinished task of the instance with its task definition (at most 64 KiB, as
/// RegisterTaskDefinition enforces), overrides (8 KiB in ECS) and a few KiB of its own
/// fields. 16 MiB holds 120 such tasks (ECS's default quota of tasks per container
/// instance) about twice over; anything longer is refused rather than buffered.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

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
    /// An answer longer than the client reads ([`MAX_ANSWER_BYTES`] unless set otherwise);
    /// it was dropped unread past the limit.
    #[error(
        "the answer to {path} from {endpoint} is over {limit} bytes, more than the agent reads; \
         is the endpoint a Berth server of the same version?"
    )]
    AnswerTooLarge { endpoint: String, path: String, limit: usize },
}

impl ClientError {
    /// Whether retrying the same call later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Aws { status, .. } => *status >= 500,
            ClientError::Decode { .. } | ClientError::AnswerTooLarge { .. } => false,
        }
    }
}

/// One server of the control plane.
#[derive(Debug)]
struct Endpoint {
    url: String,
    /// `HOST:PORT`, signed as the `host` header.
    host: String,
}

/// The control plane, as the agent talks to it.
#[derive(Clone)]
pub struct Client {
    /// One or more servers (see the module header); never empty.
    endpoints: std::sync::Arc<[Endpoint]>,
    /// The index of the server calls go to first.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Replaced once by [`Client::set_credentials`] when an agent joins.
    signer: std::sync::Arc<std::sync::RwLock<Signer>>,
    /// The same credentials, signing for ECR (registry credentials for pulls).
    ecr_signer: std::sync::Arc<std::sync::RwLock<Signer>>,
    region: String,
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_answer_bytes: usize,
    liveness: Liveness,
}

/// How a held call's server is watched (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// Calls with a deadline longer than this are watched.
    pub held_after: Duration,
    /// The interval between probes, and each probe's own deadline.
    pub every: Duration,
    /// Consecutive unanswered probes after which the server is given up.
    pub misses: u32,
}

impl Default for Liveness {
    fn default() -> Self {
        Self { held_after: Duration::from_secs(15), every: Duration::from_secs(2), misses: 2 }
    }
}

impl Client {
    /// A client for `endpoint` (`http://host:port`) signing with `credentials` for `region`.
    pub fn new(
        endpoint: &str,
        credentials: Credentials,
        region: &str,
    ) -> Result<Self, ClientError> {
        Self::with_ca(endpoint, credentials, region, None)
    }

    /// A client for `endpoint`, `http://` or `https://`, or several separated by commas (see
    /// the module header); over TLS it trusts the CA certificates in `ca_pem` (PEM) alone.
    pub fn with_ca(
        endpoint: &str,
        credentials: Credentials,
        region: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let mut endpoints = Vec::new();
        let mut https = false;
        for one in endpoint.split(',').map(str::trim) {
            let url = one.trim_end_matches('/').to_string();
            let uri: http::Uri = url.parse().map_err(|e| ClientError::Transport {
                endpoint: url.clone(),
                message: format!("not a URL: {e}"),
            })?;
            let host =
                uri.authority().map(|a| a.to_string()).ok_or_else(|| ClientError::Transport {
                    endpoint: url.clone(),
                    message: "the URL has no host".into(),
                })?;
            https |= uri.scheme_str() == Some("https");
            endpoints.push(Endpoint { url, host });
        }
        let endpoint = endpoint.to_string();
        let tls_error =
            |message: String| ClientError::Transport { endpoint: endpoint.clone(), message };
        let tls = match ca_pem {
            Some(pem) => pinned_client_config(pem).map_err(|e| tls_error(e.to_string()))?,
            None if https => {
                return Err(tls_error(
                    "an https endpoint needs the server's CA: pass --ca-file (the server's DATA_DIR/tls/ca.pem)".into(),
                ));
            }
            // Plain HTTP only: a configuration that trusts nothing.
            None => empty_client_config().map_err(|e| tls_error(e.to_string()))?,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            endpoints: endpoints.into(),
            current: Default::default(),
            ecr_signer: std::sync::Arc::new(std::sync::RwLock::new(Signer::new(
                credentials.clone(),
                region,
                "ecr",
            ))),
            signer: std::sync::Arc::new(std::sync::RwLock::new(Signer::new(
                credentials,
                region,
                "ecs",
            ))),
            region: region.to_string(),
            http,
            max_answer_bytes: MAX_ANSWER_BYTES,
            liveness: Liveness::default(),
        })
    }

    /// Signs every later call (of this client and its clones) with `credentials`.
    pub fn set_credentials(&self, credentials: Credentials) {
        let ecr = Signer::new(credentials.clone(), self.region.clone(), "ecr");
        *self.ecr_signer.write().unwrap_or_else(std::sync::PoisonError::into_inner) = ecr;
        let signer = Signer::new(credentials, self.region.clone(), "ecs");
        *self.signer.write().unwrap_or_else(std::sync::PoisonError::into_inner) = signer;
    }

    /// The same client, reading answers of at most `bytes` bytes.
    pub fn with_answer_limit(mut self, bytes: usize) -> Self {
        self.max_answer_bytes = bytes;
        self
    }

    /// The same client, watching held calls with `liveness`.
    pub fn with_liveness(mut self, liveness: Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// Resolves once `endpoint` has left [`Liveness::misses`] probes in a row unanswered,
    /// with why (see the module header); never otherwise.
    async fn silent(&self, endpoint: &Endpoint) -> String {
        let Liveness { every, misses, .. } = self.liveness;
        let mut missed = 0;
        loop {
            tokio::time::sleep(every).await;
            let probe =
                http::Request::get(format!("{}{}", endpoint.url, berth_agent_protocol::INFO_PATH))
                    .header("host", &endpoint.host)
                    .body(Full::new(Bytes::new()));
            let Ok(probe) = probe else { continue };
            let answered = tokio::time::timeout(every, self.http.request(probe))
                .await
                .is_ok_and(|r| r.is_ok());
            missed = if answered { 0 } else { missed + 1 };
            if missed >= misses {
                return format!(
                    "the server stopped answering while the call was held: {missed} probes of {} in a row went unanswered within {every:?} each",
                    berth_agent_protocol::INFO_PATH
                );
            }
        }
    }

    /// The server this client calls first now (the current one of its list).
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current_index()].url
    }

    fn current_index(&self) -> usize {
        self.current.load(std::sync::atomic::Ordering::Relaxed) % self.endpoints.len()
    }

    async fn post(
        &self,
        path: &str,
        target: Option<&str>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), ClientError> {
        self.post_as(path, target, body, timeout, Some(&self.signer)).await
    }

    /// `post_once` on the current server, then on each other in turn while they fail to
    /// answer or answer a server error (see the module header).
    async fn post_as(
        &self,
        path: &str,
        target: Option<&str>,
        body: Vec<u8>,
        timeout: Duration,
        signer: Option<&std::sync::RwLock<Signer>>,
    ) -> Result<(u16, Bytes), ClientError> {
        use std::sync::atomic::Ordering;
        let body = Bytes::from(body);
        let n = self.endpoints.len();
        let first = self.current_index();
        let mut last = None;
        for i in 0..n {
            let at = (first + i) % n;
            let endpoint = &self.endpoints[at];
            let call = self.post_once(endpoint, path, target, body.clone(), timeout, signer);
            let result = if n > 1 && timeout > self.liveness.held_after {
                tokio::select! {
                    r = call => r,
                    message = self.silent(endpoint) => Err(ClientError::Transport {
                        endpoint: endpoint.url.clone(),
                        message,
                    }),
                }
            } else {
                call.await
            };
            let failed = match &result {
                Err(ClientError::Transport { .. }) => true,
                Ok((status, _)) => *status >= 500,
                Err(_) => false,
            };
            if failed && n > 1 {
                tracing::warn!(server = %endpoint.url, path, "the server did not answer; trying the next one");
                last = Some(result);
                continue;
            }
            if at != first {
                tracing::info!(server = %endpoint.url, "now talking to this server");
                self.current.store(at, Ordering::Relaxed);
            }
            return result;
        }
        // Every server failed: the next call starts from the following one.
        self.current.store((first + 1) % n, Ordering::Relaxed);
        last.expect("at least one server was tried")
    }

    async fn post_once(
        &self,
        endpoint: &Endpoint,
        path: &str,
        target: Option<&str>,
        body: Bytes,
        timeout: Duration,
        signer: Option<&std::sync::RwLock<Signer>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let content_type =
            if target.is_some() { "application/x-amz-json-1.1" } else { "application/json" };
        let mut headers: Vec<(&str, &str)> =
            vec![("host", &endpoint.host), ("content-type", content_type)];
        if let Some(t) = target {
            headers.push(("x-amz-target", t));
        }
        let parts =
            RequestParts { method: "POST", path, query: "", headers: &headers, body: &body };
        let signed = if let Some(signer) = signer {
            signer
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .sign(&parts, time::OffsetDateTime::now_utc())
        } else {
            Vec::new()
        };
        let mut req = http::Request::post(format!("{}{path}", endpoint.url));
        for (k, v) in headers.iter().skip(1) {
            req = req.header(*k, *v);
        }
        for (k, v) in &signed {
            req = req.header(k.as_str(), v.as_str());
        }
        let transport =
            |message: String| ClientError::Transport { endpoint: endpoint.url.clone(), message };
        let req = req.body(Full::new(body)).map_err(|e| transport(e.to_string()))?;
        let resp = tokio::time::timeout(timeout, async {
            let resp = self.http.request(req).await.map_err(|e| transport(e.to_string()))?;
            let status = resp.status().as_u16();
            let limit = self.max_answer_bytes;
            let bytes = match Limited::new(resp.into_body(), limit).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => {
                    return Err(ClientError::AnswerTooLarge {
                        endpoint: endpoint.url.clone(),
                        path: path.to_string(),
                        limit,
                    });
                }
                Err(e) => return Err(transport(e.to_string())),
            };
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

    /// Calls an ECR operation (signed for `ecr`).
    pub async fn ecr<I: Serialize, O: DeserializeOwned>(
        &self,
        op: &str,
        input: &I,
    ) -> Result<O, ClientError> {
        let body = serde_json::to_vec(input).expect("wire types serialise");
        let target = format!("AmazonEC2ContainerRegistry_V20150921.{op}");
        let (status, bytes) = self
            .post_as("/", Some(&target), body, Duration::from_secs(30), Some(&self.ecr_signer))
            .await?;
        Self::decode(op, status, &bytes)
    }

    /// Calls an endpoint unsigned (the join exchange, whose token is the credential).
    pub async fn unsigned<I: Serialize, O: DeserializeOwned>(
        &self,
        path: &str,
        input: &I,
        timeout: Duration,
    ) -> Result<O, ClientError> {
        let body = serde_json::to_vec(input).expect("agent messages serialise");
        let (status, bytes) = self.post_as(path, None, body, timeout, None).await?;
        Self::decode(path, status, &bytes)
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

fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client configuration trusting the CA certificates in `ca_pem` alone.
pub fn pinned_client_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, rustls::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem).filter_map(Result::ok) {
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(rustls::Error::General("the CA file holds no PEM certificate".into()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn empty_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers every request on its first connection with `head` followed by
    /// `body_len` bytes of a JSON string (sent in 16 KiB pieces until the client hangs up).
    async fn answering(head: String, body_len: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut body = vec![b'x'; body_len];
            if let Some(first) = body.first_mut() {
                *first = b'"';
            }
            if body_len > 1 {
                body[body_len - 1] = b'"';
            }
            for piece in body.chunks(16 * 1024) {
                if sock.write_all(piece).await.is_err() {
                    return;
                }
            }
            let _ = sock.shutdown().await;
        });
        format!("http://{addr}")
    }

    fn client(endpoint: &str, limit: usize) -> Client {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        Client::new(endpoint, creds, "us-east-1").unwrap().with_answer_limit(limit)
    }

    async fn call(c: &Client) -> Result<serde_json::Value, ClientError> {
        c.agent("/poll", &serde_json::json!({}), Duration::from_secs(10)).await
    }

    #[tokio::test]
    async fn answers_are_read_with_a_size_limit() {
        const LIMIT: usize = 64 * 1024;
        // Within the limit: read and decoded.
        let ok = answering(format!("HTTP/1.1 200 OK\r\ncontent-length: {LIMIT}\r\n\r\n"), LIMIT);
        let v = call(&client(&ok.await, LIMIT)).await.unwrap();
        assert_eq!(v.as_str().unwrap().len(), LIMIT - 2);

        // Declared too long, or streamed without a length: refused without reading it all.
        let declared = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", LIMIT + 1);
        let streamed = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_string();
        for (head, len) in [(declared, LIMIT + 1), (streamed, 8 * 1024 * 1024)] {
            let endpoint = answering(head, len).await;
            let Err(err) = call(&client(&endpoint, LIMIT)).await else { panic!("accepted") };
            assert!(matches!(err, ClientError::AnswerTooLarge { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("/poll") && msg.contains(&LIMIT.to_string()), "{msg}");
        }
    }

    #[tokio::test]
    async fn a_call_moves_to_the_next_server_when_one_does_not_answer() {
        // A port with nothing listening (bound, then closed): connections are refused.
        let dead = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let live = answering("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n".into(), 4).await;
        let c = client(&format!("{dead}, {live}/"), 1024);
        assert_eq!(c.endpoint(), dead, "the first server is the current one");
        let v = call(&c).await.unwrap();
        assert_eq!(v, serde_json::json!("xx"));
        assert_eq!(c.endpoint(), live, "the server that answered is now the current one");
        // Clones share the current server.
        assert_eq!(c.clone().endpoint(), live);
        // Every server failing: the call fails naming the last, the next starts further on.
        let c = client(&format!("{dead},{dead}"), 1024);
        let Err(err) = call(&c).await else { panic!("no server answers") };
        assert!(err.is_transient(), "{err}");
        // An endpoint list with a bad URL is refused at construction.
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        assert!(Client::new(&format!("{live},not a url"), creds, "us-east-1").is_err());
    }

    #[tokio::test]
    async fn a_held_call_leaves_a_server_that_stops_answering() {
        // A server that accepts connections and never answers (as a SIGSTOPped one does:
        // the kernel completes the handshakes), then a live one.
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hung_url = format!("http://{}", hung.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut socks = Vec::new();
            while let Ok((sock, _)) = hung.accept().await {
                socks.push(sock);
            }
        });
        let live = answering("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n".into(), 4).await;
        let every = Duration::from_millis(100);
        let c = client(&format!("{hung_url},{live}"), 1024).with_liveness(Liveness {
            held_after: Duration::from_secs(1),
            every,
            misses: 2,
        });
        // A held call (60 s deadline) moves on after two silent probes, long before.
        let started = std::time::Instant::now();
        let v: serde_json::Value =
            c.agent("/poll", &serde_json::json!({}), Duration::from_secs(60)).await.unwrap();
        assert_eq!(v, serde_json::json!("xx"));
        assert_eq!(c.endpoint(), live, "the live server is now the current one");
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
        // A short call is not watched: against the hung server alone it runs to its deadline.
        let alone = client(&hung_url, 1024).with_liveness(Liveness {
            held_after: Duration::from_secs(1),
            every,
            misses: 1,
        });
        let Err(err) = alone
            .agent::<_, serde_json::Value>(
                "/poll",
                &serde_json::json!({}),
                Duration::from_millis(300),
            )
            .await
        else {
            panic!("the hung server answered")
        };
        assert!(err.to_string().contains("no answer within"), "{err}");
        held.abort();
    }

    #[test]
    fn the_default_limit_holds_a_full_instance_of_largest_task_definitions() {
        const { assert!(MAX_ANSWER_BYTES >= 120 * (64 + 8 + 4) * 1024) };
    }
}
