//! The task metadata endpoint, version 4, as the ECS agent serves it.
//!
//! Every container gets `ECS_CONTAINER_METADATA_URI_V4=http://<host>:<port>/v4/<token>-<name>`,
//! where `<token>` is 128 random bits minted per task: a task can read its own metadata and
//! nobody else's. The server binds the host's address on Docker's default bridge (reachable
//! from bridge- and host-mode containers, and from the host), never a public interface.
//!
//! * `GET ${URI}`: the container's metadata;
//! * `GET ${URI}/task`: the task's metadata, with all its containers;
//! * `GET ${URI}/stats`: the container's Docker stats; `${URI}/task/stats`: every container's.
//!
//! Each task actor writes only its own entry ([`Registry::publish`]); the endpoint only reads.
//!
//! Every container on the host can reach the endpoint, so it runs under [`LIMITS`]: a
//! container that opens connections and sends nothing (or stops reading) cannot hold them,
//! nor starve the agent of descriptors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use berth_runtime::Runtime;
use serde_json::{Value, json};

/// One container, as the endpoint shows it.
#[derive(Clone, Debug, Default)]
pub struct ContainerMeta {
    pub name: String,
    pub docker_id: Option<String>,
    pub docker_name: String,
    pub image: String,
    pub image_id: Option<String>,
    pub labels: serde_json::Map<String, Value>,
    pub desired_status: String,
    pub known_status: String,
    pub cpu: i64,
    pub memory: Option<i64>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
    pub network_mode: String,
    pub ipv4: Option<String>,
    pub ports: Vec<Value>,
    pub health: Option<String>,
    pub container_arn: Option<String>,
}

/// One task, as the endpoint shows it.
#[derive(Clone, Debug, Default)]
pub struct TaskMeta {
    pub cluster: String,
    pub task_arn: String,
    pub family: String,
    pub revision: String,
    pub desired_status: String,
    pub known_status: String,
    pub availability_zone: Option<String>,
    pub pull_started_at: Option<String>,
    pub pull_stopped_at: Option<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub containers: Vec<ContainerMeta>,
}

/// Task token → metadata.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<HashMap<String, TaskMeta>>>,
}

impl Registry {
    /// Sets the metadata of the task holding `token` (called by that task's actor only).
    pub fn publish(&self, token: &str, meta: TaskMeta) {
        self.inner.write().expect("metadata registry").insert(token.to_string(), meta);
    }

    /// Forgets a finished task.
    pub fn remove(&self, token: &str) {
        self.inner.write().expect("metadata registry").remove(token);
    }

    fn get(&self, token: &str) -> Option<TaskMeta> {
        self.inner.read().expect("metadata registry").get(token).cloned()
    }
}

#[derive(Clone)]
struct Endpoint {
    registry: Registry,
    runtime: Arc<dyn Runtime>,
}

fn container_json(c: &ContainerMeta) -> Value {
    let mut v = json!({
        "DockerId": c.docker_id.clone().unwrap_or_default(),
        "Name": c.name,
        "DockerName": c.docker_name,
        "Image": c.image,
        "ImageID": c.image_id.clone().unwrap_or_default(),
        "Labels": c.labels,
        "DesiredStatus": c.desired_status,
        "KnownStatus": c.known_status,
        "Limits": {"CPU": c.cpu, "Memory": c.memory.unwrap_or(0)},
        "Type": "NORMAL",
        "Networks": [{
            "NetworkMode": c.network_mode,
            "IPv4Addresses": c.ipv4.iter().collect::<Vec<_>>(),
        }],
    });
    let m = v.as_object_mut().expect("object");
    for (k, val) in
        [("CreatedAt", &c.created_at), ("StartedAt", &c.started_at), ("FinishedAt", &c.finished_at)]
    {
        if let Some(t) = val {
            m.insert(k.into(), json!(t));
        }
    }
    if let Some(code) = c.exit_code {
        m.insert("ExitCode".into(), json!(code));
    }
    if !c.ports.is_empty() {
        m.insert("Ports".into(), json!(c.ports));
    }
    if let Some(h) = &c.health {
        m.insert("Health".into(), json!({"status": h}));
    }
    if let Some(a) = &c.container_arn {
        m.insert("ContainerARN".into(), json!(a));
    }
    v
}

fn task_json(t: &TaskMeta) -> Value {
    let mut v = json!({
        "Cluster": t.cluster,
        "TaskARN": t.task_arn,
        "Family": t.family,
        "Revision": t.revision,
        "DesiredStatus": t.desired_status,
        "KnownStatus": t.known_status,
        "LaunchType": "EC2",
        "Containers": t.containers.iter().map(container_json).collect::<Vec<_>>(),
    });
    let m = v.as_object_mut().expect("object");
    if let Some(az) = &t.availability_zone {
        m.insert("AvailabilityZone".into(), json!(az));
    }
    for (k, val) in [("PullStartedAt", &t.pull_started_at), ("PullStoppedAt", &t.pull_stopped_at)] {
        if let Some(x) = val {
            m.insert(k.into(), json!(x));
        }
    }
    if t.cpu.is_some() || t.memory.is_some() {
        let num = |s: &Option<String>| s.as_deref().and_then(|x| x.parse::<f64>().ok());
        m.insert(
            "Limits".into(),
            json!({"CPU": num(&t.cpu).map(|c| c / 1024.0), "Memory": num(&t.memory)}),
        );
    }
    v
}

/// `<task token>-<container name>` → (task, container name).
fn resolve(ep: &Endpoint, path_token: &str) -> Option<(TaskMeta, String)> {
    let (token, name) = path_token.split_once('-')?;
    let task = ep.registry.get(token)?;
    task.containers.iter().any(|c| c.name == name).then(|| (task, name.to_string()))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "no such task or container"}))).into_response()
}

async fn container(State(ep): State<Endpoint>, Path(token): Path<String>) -> Response {
    match resolve(&ep, &token) {
        Some((task, name)) => {
            let c = task.containers.iter().find(|c| c.name == name).expect("resolved");
            Json(container_json(c)).into_response()
        }
        None => not_found(),
    }
}

async fn task(State(ep): State<Endpoint>, Path(token): Path<String>) -> Response {
    match resolve(&ep, &token) {
        Some((task, _)) => Json(task_json(&task)).into_response(),
        None => not_found(),
    }
}

async fn container_stats(State(ep): State<Endpoint>, Path(token): Path<String>) -> Response {
    let Some((task, name)) = resolve(&ep, &token) else { return not_found() };
    let id = task.containers.iter().find(|c| c.name == name).and_then(|c| c.docker_id.clone());
    match id {
        Some(id) => match ep.runtime.stats(&id).await {
            Ok(Some(s)) => Json(s).into_response(),
            _ => Json(Value::Null).into_response(),
        },
        None => Json(Value::Null).into_response(),
    }
}

async fn task_stats(State(ep): State<Endpoint>, Path(token): Path<String>) -> Response {
    let Some((task, _)) = resolve(&ep, &token) else { return not_found() };
    let mut out = serde_json::Map::new();
    for c in &task.containers {
        if let Some(id) = &c.docker_id {
            let s = ep.runtime.stats(id).await.ok().flatten().unwrap_or(Value::Null);
            out.insert(id.clone(), s);
        }
    }
    Json(Value::Object(out)).into_response()
}

/// Connection cap and timeouts of the endpoint: at most 256 connections at once (more wait
/// in the listen backlog); a request head within 10 s (also how long a kept-alive connection
/// may sit idle); a request body within 5 s; a response write stalled 10 s drops the client.
pub const LIMITS: berth_serve::Limits = berth_serve::Limits {
    max_connections: 256,
    header_read_timeout: Duration::from_secs(10),
    body_read_timeout: Duration::from_secs(5),
    write_stall_timeout: Duration::from_secs(10),
};

/// Starts the endpoint on `bind` (port 0 picks one) under [`LIMITS`]; returns the address
/// bound and the registry actors publish into.
pub async fn serve(
    bind: SocketAddr,
    runtime: Arc<dyn Runtime>,
) -> std::io::Result<(SocketAddr, Registry)> {
    serve_with(bind, runtime, LIMITS).await
}

/// [`serve`] under other limits (tests).
pub async fn serve_with(
    bind: SocketAddr,
    runtime: Arc<dyn Runtime>,
    limits: berth_serve::Limits,
) -> std::io::Result<(SocketAddr, Registry)> {
    let registry = Registry::default();
    let ep = Endpoint { registry: registry.clone(), runtime };
    let app = Router::new()
        .route("/v4/{token}", get(container))
        .route("/v4/{token}/task", get(task))
        .route("/v4/{token}/stats", get(container_stats))
        .route("/v4/{token}/task/stats", get(task_stats))
        .with_state(ep);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = berth_serve::serve(listener, app, limits, std::future::pending()).await {
            tracing::error!(error = %e, "task metadata endpoint stopped");
        }
    });
    Ok((addr, registry))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned()
    }

    async fn endpoint(max_connections: usize, header: Duration) -> (SocketAddr, Registry) {
        let limits = berth_serve::Limits {
            max_connections,
            header_read_timeout: header,
            body_read_timeout: Duration::from_millis(300),
            write_stall_timeout: Duration::from_millis(300),
        };
        let runtime = Arc::new(berth_runtime::fake::FakeRuntime::new());
        let (addr, registry) =
            serve_with("127.0.0.1:0".parse().unwrap(), runtime, limits).await.unwrap();
        let meta = TaskMeta {
            task_arn: "arn:t".into(),
            containers: vec![ContainerMeta { name: "web".into(), ..Default::default() }],
            ..Default::default()
        };
        registry.publish("tok", meta);
        (addr, registry)
    }

    #[test]
    fn the_limits_are_the_documented_ones() {
        assert_eq!(LIMITS.max_connections, 256);
        assert_eq!(LIMITS.header_read_timeout, Duration::from_secs(10));
        assert_eq!(LIMITS.body_read_timeout, Duration::from_secs(5));
        assert_eq!(LIMITS.write_stall_timeout, Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_container_sending_a_partial_header_is_disconnected() {
        let (addr, _reg) = endpoint(16, Duration::from_millis(300)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /v4/tok-web HTTP/1.1\r\nHost: ").await.unwrap();
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut slow))
            .await
            .expect("a client that never finishes its header must be dropped");
        assert!(t0.elapsed() >= Duration::from_millis(250));
        assert!(get(addr, "/v4/tok-web").await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn idle_connections_beyond_the_cap_wait_and_the_endpoint_recovers() {
        let (addr, _reg) = endpoint(2, Duration::from_secs(60)).await;
        let idle1 = TcpStream::connect(addr).await.unwrap();
        let _idle2 = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let third = tokio::spawn(async move { get(addr, "/v4/tok-web/task").await });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!third.is_finished(), "a connection beyond the cap was served");
        drop(idle1);
        let got = tokio::time::timeout(Duration::from_secs(10), third).await.unwrap().unwrap();
        assert!(got.starts_with("HTTP/1.1 200") && got.contains("arn:t"), "{got}");
    }

    #[tokio::test]
    async fn stalled_containers_do_not_starve_the_endpoint() {
        let (addr, _reg) = endpoint(8, Duration::from_millis(400)).await;
        let mut stalled = Vec::new();
        for _ in 0..32 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /v4/tok-web HTTP/1.1\r\n").await.unwrap();
            stalled.push(s);
        }
        let got = tokio::time::timeout(Duration::from_secs(10), get(addr, "/v4/tok-web"))
            .await
            .expect("the endpoint must answer while stalled clients hold connections");
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        for s in &mut stalled {
            tokio::time::timeout(Duration::from_secs(10), read_to_close(s))
                .await
                .expect("a stalled client must be disconnected");
        }
    }
}
