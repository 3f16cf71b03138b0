//! Test backends (small hyper servers and TCP echo servers on 127.0.0.1 ephemeral ports) and
//! snapshot builders shared by the data plane's socket tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_lb::config::*;
use berth_lb::{HealthState, Lb, Snapshot};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// An HTTP backend answering JSON `{"name", "path", "headers"}`; `/slow/MS` waits MS
/// milliseconds first; `/health` answers `health_status`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub health_status: Arc<AtomicU16>,
    pub requests: Arc<AtomicUsize>,
    /// Signalled when a `/slow/` request arrives.
    pub slow_started: Arc<Notify>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let b = Backend {
            name: name.to_string(),
            addr,
            health_status: Arc::new(AtomicU16::new(200)),
            requests: Arc::new(AtomicUsize::new(0)),
            slow_started: Arc::new(Notify::new()),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        let (name, health, requests, slow, tasks) = (
            b.name.clone(),
            b.health_status.clone(),
            b.requests.clone(),
            b.slow_started.clone(),
            b.tasks.clone(),
        );
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (name, health, requests, slow) =
                    (name.clone(), health.clone(), requests.clone(), slow.clone());
                let conn = tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let (name, health, requests, slow) =
                            (name.clone(), health.clone(), requests.clone(), slow.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            if path == "/health" {
                                let code = health.load(Ordering::SeqCst);
                                let mut r =
                                    hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                                *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                                return Ok::<_, Infallible>(r);
                            }
                            requests.fetch_add(1, Ordering::SeqCst);
                            if let Some(ms) = path.strip_prefix("/slow/") {
                                slow.notify_one();
                                tokio::time::sleep(Duration::from_millis(
                                    ms.parse().unwrap_or(100),
                                ))
                                .await;
                            }
                            let headers: HashMap<String, String> = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect();
                            let body = serde_json::json!({"name": name, "path": path, "query": req.uri().query(), "headers": headers});
                            Ok(hyper::Response::new(Full::new(Bytes::from(body.to_string()))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        b.tasks.lock().unwrap().push(accept.abort_handle());
        b
    }

    /// Kills the server: its socket and every open connection close at once.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP server that answers each read with `name:` + the bytes read.
pub async fn tcp_echo(name: &'static str) -> (SocketAddr, AbortHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let mut out = format!("{name}:").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, h.abort_handle())
}

pub fn target(addr: SocketAddr) -> Target {
    Target {
        id: addr.to_string(),
        ip: addr.ip(),
        port: addr.port(),
        state: Registration::Registered,
    }
}

pub fn group(arn: &str, targets: Vec<Target>) -> TargetGroup {
    TargetGroup {
        arn: arn.into(),
        name: arn.into(),
        protocol: TargetProtocol::Http,
        port: 80,
        target_type: TargetType::Ip,
        health_check: HealthCheck {
            path: "/health".into(),
            interval_seconds: 1,
            timeout_seconds: 1,
            healthy_threshold: 1,
            unhealthy_threshold: 2,
            ..HealthCheck::default()
        },
        attributes: TargetGroupAttributes {
            deregistration_delay_seconds: 30,
            ..Default::default()
        },
        targets,
    }
}

pub fn forward(arn: &str) -> Action {
    Action::Forward {
        target_groups: vec![WeightedTargetGroup { target_group_arn: arn.into(), weight: 1 }],
        stickiness: None,
    }
}

pub fn alb(version: u64, listener: Listener, groups: Vec<TargetGroup>) -> Snapshot {
    Snapshot {
        version,
        load_balancers: vec![LoadBalancer {
            arn: "arn:lb/app/web".into(),
            name: "web".into(),
            lb_type: LbType::Application,
            bind_address: "127.0.0.1".parse().unwrap(),
            idle_timeout_seconds: 60,
            listeners: vec![listener],
        }],
        target_groups: groups,
    }
}

pub fn http_listener(default: Action, rules: Vec<Rule>) -> Listener {
    Listener {
        arn: "arn:listener/1".into(),
        protocol: ListenerProtocol::Http,
        port: 0,
        default_actions: vec![default],
        rules,
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
    pub fn backend(&self) -> String {
        self.json()["name"].as_str().unwrap().to_string()
    }
}

pub async fn get(
    c: &TestClient,
    lb: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let mut req = hyper::Request::get(format!("http://{lb}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp =
        c.request(req.body(Full::new(Bytes::new())).unwrap()).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Waits (bounded) until every target of `group` reports `state`.
pub async fn wait_state(lb: &Lb, group: &str, state: HealthState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = lb.group_health(group).unwrap();
        if !h.is_empty() && h.iter().all(|t| t.state == state) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{group} never became {state:?}: {h:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
