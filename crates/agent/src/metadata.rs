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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

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

/// Starts the endpoint on `bind` (port 0 picks one); returns the address bound and the
/// registry actors publish into.
pub async fn serve(
    bind: SocketAddr,
    runtime: Arc<dyn Runtime>,
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
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "task metadata endpoint stopped");
        }
    });
    Ok((addr, registry))
}
