//! The task metadata endpoint, version 4, as the ECS agent serves it.
//!
//! Every container gets `ECS_CONTAINER_METADATA_URI_V4=http://<host>:<port>/v4/<token>-<name>`,
//! where `<token>` is 128 random bits minted per task: a task can read its own metadata and
//! nobody else's. The server binds the host's address on Docker's default bridge (reachable
//! from bridge- and host-mode containers, and from the host), never a public interface.
//!
//! The URI outlives the agent: a container keeps its environment for its whole life, and a
//! restarted agent adopts it, so
//! * the address is stable ([`bind_stable`]): `--metadata-listen` (default: the bridge
//!   gateway, port [`DEFAULT_PORT`]); the address bound is kept in `DATA_DIR/metadata-address`
//!   and bound again at the next start;
//! * the task's token is kept in its containers' label [`LABEL_TOKEN`]: the actor that adopts
//!   a task takes the token back from it, and [`recover_tokens`] tells the registry at start
//!   which tokens to expect. Tokens are never logged.
//!
//! Every request gets an answer: a token not (yet) published is waited for, at most
//! [`EXPECTED_TOKEN_WAIT`] for a token found on a container at start and
//! [`UNKNOWN_TOKEN_WAIT`] for any other, then it is a 404 with a JSON error. The endpoint runs
//! on its own thread and executor, so nothing else in the process (the control plane of
//! `berth up`, a busy agent) can hold a container's request.
//!
//! * `GET ${URI}`: the container's metadata;
//! * `GET ${URI}/task`: the task's metadata, with all its containers;
//! * `GET ${URI}/stats`: the container's Docker stats; `${URI}/task/stats`: every container's.
//! * `GET /metrics`: the agent's own figures as Prometheus text ([`crate::stats::render`]).
//! * `GET /v2/credentials/{id}`: a task's role credentials, for that task's containers only,
//!   with its token ([`crate::task_credentials`]; `bind_stable` also installs the
//!   169.254.170.2 rules).
//!
//! Each task actor writes only its own entry ([`Registry::publish`]); the endpoint only reads.
//!
//! Every container on the host can reach the endpoint, so it runs under [`LIMITS`]: a
//! container that opens connections and sends nothing (or stops reading) cannot hold them,
//! nor starve the agent of descriptors.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
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
    /// The task's own network interface, for an awsvpc task (ECS's v4 `Networks` fields).
    pub awsvpc: Option<AwsvpcMeta>,
}

/// What the v4 endpoint shows of an awsvpc task's network interface.
#[derive(Clone, Debug, Default)]
pub struct AwsvpcMeta {
    pub mac: String,
    pub subnet_cidr: String,
    pub private_dns_name: String,
    pub gateway: String,
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

/// Label: the task's metadata token, on each of its containers (so a restarted agent serves
/// the URIs its containers already hold).
pub const LABEL_TOKEN: &str = "berth.metadata-token";

/// The port the endpoint binds when `--metadata-listen` does not say (the ECS agent's
/// metadata port).
pub const DEFAULT_PORT: u16 = 51679;

/// How long a request for a token found on a container at start waits for its task's actor
/// to publish it (adoption after an agent restart).
pub const EXPECTED_TOKEN_WAIT: Duration = Duration::from_secs(10);

/// How long a request for any other token not published waits (an actor publishing at that
/// moment) before its 404.
pub const UNKNOWN_TOKEN_WAIT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Entries {
    tasks: HashMap<String, TaskMeta>,
    /// Tokens seen on containers at start whose task is not published yet.
    expected: HashSet<String>,
}

/// Task token → metadata.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RwLock<Entries>>,
    /// Task role credentials, served at `/v2/credentials/{id}` ([`crate::task_credentials`]).
    pub credentials: crate::task_credentials::Store,
    /// Bumped on every publish: what waiting requests wake on.
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            credentials: Default::default(),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl Registry {
    /// Sets the metadata of the task holding `token` (called by that task's actor only).
    pub fn publish(&self, token: &str, meta: TaskMeta) {
        {
            let mut e = self.inner.write().expect("metadata registry");
            e.expected.remove(token);
            e.tasks.insert(token.to_string(), meta);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Forgets a finished task.
    pub fn remove(&self, token: &str) {
        let mut e = self.inner.write().expect("metadata registry");
        e.expected.remove(token);
        e.tasks.remove(token);
    }

    /// Tokens of tasks whose actors will publish soon (found on containers at start).
    pub fn expect(&self, tokens: impl IntoIterator<Item = String>) {
        let mut e = self.inner.write().expect("metadata registry");
        for t in tokens {
            if !e.tasks.contains_key(&t) {
                e.expected.insert(t);
            }
        }
    }

    fn get(&self, token: &str) -> Option<TaskMeta> {
        self.inner.read().expect("metadata registry").tasks.get(token).cloned()
    }

    /// The task of `token`, waiting (bounded) for it to be published.
    async fn lookup(&self, token: &str) -> Option<TaskMeta> {
        // Subscribed before looking: a publish in between is not missed.
        let mut rx = self.changed.subscribe();
        let wait = if self.inner.read().expect("metadata registry").expected.contains(token) {
            EXPECTED_TOKEN_WAIT
        } else {
            UNKNOWN_TOKEN_WAIT
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(t) = self.get(token) {
                return Some(t);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.get(token),
            }
        }
    }
}

/// The metadata tokens on the containers carrying `labels` (this instance's), for
/// [`Registry::expect`] at start.
pub async fn recover_tokens(runtime: &dyn Runtime, labels: &[(String, String)]) -> Vec<String> {
    match runtime.list(labels).await {
        Ok(found) => {
            let mut tokens: Vec<String> =
                found.into_iter().filter_map(|c| c.labels.get(LABEL_TOKEN).cloned()).collect();
            tokens.sort();
            tokens.dedup();
            tokens
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list containers to recover metadata tokens");
            Vec::new()
        }
    }
}

#[derive(Clone)]
struct Shared {
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
    if let Some(n) = &c.awsvpc {
        // As ECS documents the v4 network of an awsvpc task.
        v["Networks"][0] = json!({
            "NetworkMode": "awsvpc",
            "IPv4Addresses": c.ipv4.iter().collect::<Vec<_>>(),
            "AttachmentIndex": 0,
            "MACAddress": n.mac,
            "IPv4SubnetCIDRBlock": n.subnet_cidr,
            "DomainNameServers": [],
            "DomainNameSearchList": [],
            "PrivateDNSName": n.private_dns_name,
            "SubnetGatewayIpv4Address": format!("{}/{}", n.gateway, n.subnet_cidr.rsplit('/').next().unwrap_or("32")),
        });
    }
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
async fn resolve(ep: &Shared, path_token: &str) -> Option<(TaskMeta, String)> {
    let (token, name) = path_token.split_once('-')?;
    let task = ep.registry.lookup(token).await?;
    task.containers.iter().any(|c| c.name == name).then(|| (task, name.to_string()))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "no such task or container"}))).into_response()
}

async fn container(State(ep): State<Shared>, Path(token): Path<String>) -> Response {
    match resolve(&ep, &token).await {
        Some((task, name)) => {
            let c = task.containers.iter().find(|c| c.name == name).expect("resolved");
            Json(container_json(c)).into_response()
        }
        None => not_found(),
    }
}

async fn task(State(ep): State<Shared>, Path(token): Path<String>) -> Response {
    match resolve(&ep, &token).await {
        Some((task, _)) => Json(task_json(&task)).into_response(),
        None => not_found(),
    }
}

async fn container_stats(State(ep): State<Shared>, Path(token): Path<String>) -> Response {
    let Some((task, name)) = resolve(&ep, &token).await else { return not_found() };
    let id = task.containers.iter().find(|c| c.name == name).and_then(|c| c.docker_id.clone());
    match id {
        Some(id) => match ep.runtime.stats(&id).await {
            Ok(Some(s)) => Json(s).into_response(),
            _ => Json(Value::Null).into_response(),
        },
        None => Json(Value::Null).into_response(),
    }
}

/// `GET /v2/credentials/{id}`: a task's role credentials, for its own containers only
/// ([`crate::task_credentials::Store::answer`]).
async fn credentials(
    State(ep): State<Shared>,
    Path(id): Path<String>,
    axum::Extension(peer): axum::Extension<berth_serve::Peer>,
    headers: axum::http::HeaderMap,
) -> Response {
    let auth = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match ep.registry.credentials.answer(
        &id,
        auth,
        peer.addr.ip(),
        crate::task_credentials::is_local_address,
    ) {
        Ok(v) => Json(v).into_response(),
        Err((status, why)) => (status, Json(json!({"error": why}))).into_response(),
    }
}

async fn task_stats(State(ep): State<Shared>, Path(token): Path<String>) -> Response {
    let Some((task, _)) = resolve(&ep, &token).await else { return not_found() };
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

/// A running endpoint; dropping it stops it.
pub struct Server {
    /// The address bound.
    pub addr: SocketAddr,
    /// Where actors publish.
    pub registry: Registry,
    /// The rules sending 169.254.170.2 to this endpoint ([`bind_stable`] installs them).
    _dnat: Option<crate::task_credentials::Dnat>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the endpoint on `bind` (port 0 picks one) under [`LIMITS`], on its own thread.
pub async fn serve(bind: SocketAddr, runtime: Arc<dyn Runtime>) -> std::io::Result<Server> {
    serve_with(bind, runtime, LIMITS).await
}

/// [`serve`] under other limits (tests).
pub async fn serve_with(
    bind: SocketAddr,
    runtime: Arc<dyn Runtime>,
    limits: berth_serve::Limits,
) -> std::io::Result<Server> {
    let registry = Registry::default();
    let ep = Shared { registry: registry.clone(), runtime };
    let app = Router::new()
        .route("/v4/{token}", get(container))
        .route("/v4/{token}/task", get(task))
        .route("/v4/{token}/stats", get(container_stats))
        // The agent's own figures as Prometheus text (issue #15; `crate::stats`).
        .route("/metrics", get(|| async { crate::stats::render() }))
        .route("/v4/{token}/task/stats", get(task_stats))
        .route("/v2/credentials/{id}", get(credentials))
        .with_state(ep);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Its own executor: a container's request never waits for the rest of the process.
    std::thread::Builder::new().name("berth-metadata".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = bound_tx.send(Err(e));
                return;
            }
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::bind(bind).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            if bound_tx.send(listener.local_addr()).is_err() {
                return;
            }
            let stop = async move {
                let _ = stop_rx.await;
            };
            if let Err(e) = berth_serve::serve(listener, app, limits, stop).await {
                tracing::error!(error = %e, "task metadata endpoint stopped");
            }
        });
    })?;
    let addr = bound_rx.await.map_err(|_| std::io::Error::other("metadata thread ended"))??;
    Ok(Server { addr, registry, _dnat: None, _stop: stop_tx })
}

/// Where the endpoint listens: `--metadata-listen PORT` (on the bridge gateway) or
/// `IP:PORT`. Port 0: a free port, chosen at first start and kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl std::str::FromStr for ListenSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(port) = s.parse::<u16>() {
            return Ok(Self { ip: None, port });
        }
        s.parse::<SocketAddr>()
            .map(|a| Self { ip: Some(a.ip()), port: a.port() })
            .map_err(|_| format!("expected PORT or IP:PORT, got '{s}'"))
    }
}

/// `DATA_DIR/metadata-address`: the address bound last time.
pub fn address_file(data_dir: &FsPath) -> PathBuf {
    data_dir.join("metadata-address")
}

/// The addresses to try, in order, and whether failing all of them is an error (an explicit
/// port other than 0 must be bound as given).
fn candidates(
    spec: Option<ListenSpec>,
    gateway: IpAddr,
    persisted: Option<SocketAddr>,
) -> (Vec<SocketAddr>, bool) {
    let ip = spec.and_then(|s| s.ip).unwrap_or(gateway);
    match spec {
        Some(s) if s.port != 0 => (vec![(ip, s.port).into()], true),
        _ => {
            let mut out: Vec<SocketAddr> =
                persisted.filter(|p| p.ip() == ip && p.port() != 0).into_iter().collect();
            if spec.is_none() {
                out.push((ip, DEFAULT_PORT).into());
            }
            out.push((ip, 0).into());
            out.dedup();
            (out, false)
        }
    }
}

/// Starts the endpoint at a stable address: the one `spec` names, else the one bound last
/// time (`DATA_DIR/metadata-address`), else `gateway`:[`DEFAULT_PORT`], else a free port on
/// `gateway`; the address bound is written back for the next start.
pub async fn bind_stable(
    data_dir: &FsPath,
    spec: Option<ListenSpec>,
    gateway: IpAddr,
    runtime: Arc<dyn Runtime>,
) -> anyhow::Result<Server> {
    let file = address_file(data_dir);
    let persisted: Option<SocketAddr> =
        std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok());
    let (tries, strict) = candidates(spec, gateway, persisted);
    let mut last = None;
    for addr in tries {
        match serve(addr, runtime.clone()).await {
            Ok(mut server) => {
                // Task role credentials: 169.254.170.2:PORT reaches this endpoint.
                server._dnat = crate::task_credentials::Dnat::install(server.addr);
                if let Some(was) = persisted
                    && was != server.addr
                {
                    tracing::warn!(
                        %was, now = %server.addr,
                        "the task metadata endpoint moved: running containers keep the old address"
                    );
                }
                if persisted != Some(server.addr) {
                    write_private(&file, &format!("{}\n", server.addr))?;
                }
                return Ok(server);
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "cannot bind the task metadata endpoint here");
                last = Some((addr, e));
            }
        }
    }
    let (addr, e) = last.expect("at least one candidate");
    if strict {
        anyhow::bail!("cannot serve task metadata on {addr}: {e}");
    }
    Err(anyhow::anyhow!("cannot serve task metadata on {}: {e}", addr.ip()))
}

/// Writes `text` to `path` atomically, mode 0600.
fn write_private(path: &FsPath, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
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

    async fn endpoint(max_connections: usize, header: Duration) -> (SocketAddr, Server) {
        let limits = berth_serve::Limits {
            max_connections,
            header_read_timeout: header,
            body_read_timeout: Duration::from_millis(300),
            write_stall_timeout: Duration::from_millis(300),
        };
        let runtime = Arc::new(berth_runtime::fake::FakeRuntime::new());
        let server = serve_with("127.0.0.1:0".parse().unwrap(), runtime, limits).await.unwrap();
        server.registry.publish("tok", meta("arn:t", None));
        (server.addr, server)
    }

    fn meta(arn: &str, docker_id: Option<&str>) -> TaskMeta {
        TaskMeta {
            task_arn: arn.into(),
            known_status: "PENDING".into(),
            containers: vec![ContainerMeta {
                name: "web".into(),
                docker_id: docker_id.map(str::to_string),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn status(resp: &str) -> &str {
        resp.split_whitespace().nth(1).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_token_published_while_the_request_waits_is_answered() {
        let (addr, server) = endpoint(16, Duration::from_secs(5)).await;
        let waiting = tokio::spawn(async move { get(addr, "/v4/late-web/task").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.registry.publish("late", meta("arn:late", Some("abc123")));
        let got = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(status(&got), "200", "{got}");
        assert!(got.contains("\"DockerId\":\"abc123\""), "{got}");
    }

    #[tokio::test]
    async fn an_unknown_token_gets_a_json_404_within_the_bounded_wait() {
        let (addr, _server) = endpoint(16, Duration::from_secs(5)).await;
        let t0 = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(5), get(addr, "/v4/nope-web/task"))
            .await
            .expect("an unknown token is answered, never held");
        assert_eq!(status(&got), "404", "{got}");
        assert!(got.contains("\"error\""), "{got}");
        assert!(t0.elapsed() >= UNKNOWN_TOKEN_WAIT - Duration::from_millis(50));
        assert!(t0.elapsed() < UNKNOWN_TOKEN_WAIT + Duration::from_secs(2));
        // A known token with a wrong container name: at once.
        let t0 = Instant::now();
        assert_eq!(status(&get(addr, "/v4/tok-nope").await), "404");
        assert!(t0.elapsed() < UNKNOWN_TOKEN_WAIT);
    }

    #[tokio::test]
    async fn an_expected_token_waits_longer_than_an_unknown_one() {
        let (addr, server) = endpoint(16, Duration::from_secs(5)).await;
        server.registry.expect(["adopted".to_string(), "tok".to_string()]);
        let waiting = tokio::spawn(async move { get(addr, "/v4/adopted-web").await });
        tokio::time::sleep(UNKNOWN_TOKEN_WAIT + Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "a token found on a container is waited for");
        server.registry.publish("adopted", meta("arn:adopted", Some("id1")));
        let got = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(status(&got), "200", "{got}");
        // Expecting a token already published changes nothing.
        assert_eq!(status(&get(addr, "/v4/tok-web").await), "200");
    }

    /// An actor for one task `t1` of one container `web` on `fake`, publishing into `server`.
    fn actor(
        fake: &Arc<berth_runtime::fake::FakeRuntime>,
        server: &Server,
    ) -> (
        crate::task::TaskActor,
        tokio::sync::watch::Sender<berth_agent_protocol::DesiredTask>,
        tokio::sync::mpsc::UnboundedReceiver<berth_agent_protocol::TaskReport>,
    ) {
        use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = crate::task::TaskContext {
            runtime: fake.clone(),
            cluster: "c".into(),
            instance_arn: "arn:i".into(),
            reports: tx,
            metadata_base: Some(format!("http://{}/v4", server.addr)),
            metadata: Some(server.registry.clone()),
            availability_zone: "az".into(),
            events: crate::events::Router::new(),
            network: Default::default(),
            pull_auth: Default::default(),
            logs: None,
        };
        let td = serde_json::from_value(json!({
            "family": "f", "revision": 1,
            "containerDefinitions": [{"name": "web", "image": "img", "memory": 16}]
        }))
        .unwrap();
        let (dtx, drx) = tokio::sync::watch::channel(berth_agent_protocol::DesiredTask {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
            desired_status: DesiredTaskStatus::Running,
            last_status: TaskStatus::Pending,
            task_definition: td,
            ..Default::default()
        });
        (crate::task::TaskActor::new(ctx, drx), dtx, rx)
    }

    async fn until_running(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<berth_agent_protocol::TaskReport>,
    ) {
        loop {
            let r = rx.recv().await.expect("reports");
            if r.change.status.as_deref() == Some("RUNNING") {
                return;
            }
        }
    }

    #[tokio::test]
    async fn a_restarted_agent_serves_adopted_containers_under_their_labelled_token() {
        use berth_runtime::fake::{FakeRuntime, Op};
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image("img");
        let before = serve("127.0.0.1:0".parse().unwrap(), fake.clone()).await.unwrap();
        let (first, dtx, mut reports) = actor(&fake, &before);
        let running = tokio::spawn(first.run());
        until_running(&mut reports).await;
        let id = fake.container_ids().pop().expect("a container");
        let spec = fake.spec(&id).unwrap();
        let token = spec.labels.get(LABEL_TOKEN).expect("the token is in a label").clone();
        let uri = spec
            .env
            .iter()
            .find(|(k, _)| k == "ECS_CONTAINER_METADATA_URI_V4")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(uri, format!("http://{}/v4/{token}-web", before.addr));
        let path = format!("/v4/{token}-web/task");
        let got = get(before.addr, &path).await;
        assert!(got.contains(&format!("\"DockerId\":\"{id}\"")), "{got}");

        // The agent goes away (its containers stay), and a new one starts with an empty
        // registry: the token is found on the container and expected.
        drop(dtx);
        running.await.unwrap();
        drop(before);
        let after = serve("127.0.0.1:0".parse().unwrap(), fake.clone()).await.unwrap();
        let labels = [(crate::spec::LABEL_INSTANCE.to_string(), "arn:i".to_string())];
        assert_eq!(recover_tokens(fake.as_ref(), &labels).await, vec![token.clone()]);
        after.registry.expect(recover_tokens(fake.as_ref(), &labels).await);
        // A request that comes before the task is adopted waits for it...
        let addr = after.addr;
        let early = tokio::spawn(async move { get(addr, &path).await });
        tokio::time::sleep(UNKNOWN_TOKEN_WAIT + Duration::from_millis(200)).await;
        assert!(!early.is_finished(), "an expected token is waited for");
        // ...and the adopting actor publishes under the labelled token.
        let (second, _dtx, mut reports) = actor(&fake, &after);
        let adopted = tokio::spawn(second.run());
        until_running(&mut reports).await;
        let got = tokio::time::timeout(Duration::from_secs(5), early).await.unwrap().unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.contains(&format!("\"DockerId\":\"{id}\"")), "{got}");
        assert!(got.contains("\"KnownStatus\":\"RUNNING\""), "{got}");
        assert_eq!(fake.calls_of(Op::Create).len(), 1, "adopted, not created again");
        adopted.abort();
    }

    #[test]
    fn listen_specs_parse_a_port_or_an_address() {
        assert_eq!("0".parse(), Ok(ListenSpec { ip: None, port: 0 }));
        assert_eq!(
            "172.17.0.1:51679".parse(),
            Ok(ListenSpec { ip: Some([172, 17, 0, 1].into()), port: 51679 })
        );
        assert!("nope".parse::<ListenSpec>().is_err());
        assert!("1.2.3.4".parse::<ListenSpec>().is_err());
    }

    #[test]
    fn the_address_bound_last_time_comes_first() {
        let gw: IpAddr = [172, 17, 0, 1].into();
        let at = |p: u16| SocketAddr::from((gw, p));
        // First start: the default port, else a free one.
        assert_eq!(candidates(None, gw, None), (vec![at(DEFAULT_PORT), at(0)], false));
        // Later starts: the port kept.
        assert_eq!(
            candidates(None, gw, Some(at(40000))),
            (vec![at(40000), at(DEFAULT_PORT), at(0)], false)
        );
        // An explicit port is bound as given, or not at all.
        let spec = Some(ListenSpec { ip: None, port: 7000 });
        assert_eq!(candidates(spec, gw, Some(at(40000))), (vec![at(7000)], true));
        // Port 0: a free port, then kept; a kept address on another IP is ignored.
        let zero = Some(ListenSpec { ip: Some([127, 0, 0, 1].into()), port: 0 });
        let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(candidates(zero, gw, None), (vec![lo(0)], false));
        assert_eq!(candidates(zero, gw, Some(lo(40001))), (vec![lo(40001), lo(0)], false));
        assert_eq!(candidates(zero, gw, Some(at(40001))), (vec![lo(0)], false));
    }

    #[tokio::test]
    async fn the_address_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let runtime: Arc<dyn Runtime> = Arc::new(berth_runtime::fake::FakeRuntime::new());
        let spec = Some(ListenSpec { ip: Some([127, 0, 0, 1].into()), port: 0 });
        let lo: IpAddr = [127, 0, 0, 1].into();
        let first = bind_stable(dir.path(), spec, lo, runtime.clone()).await.unwrap();
        let addr = first.addr;
        assert_ne!(addr.port(), 0);
        drop(first);
        // The next start binds the same address, once the old listener is gone (its thread
        // closes it on its own time).
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpListener::bind(addr).is_err() {
            assert!(Instant::now() < deadline, "the stopped endpoint never let go of {addr}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = bind_stable(dir.path(), spec, lo, runtime.clone()).await.unwrap();
        assert_eq!(second.addr, addr);
        // Taken by someone else: another free port, written back.
        let third = bind_stable(dir.path(), spec, lo, runtime.clone()).await.unwrap();
        assert_ne!(third.addr, addr);
        let kept = std::fs::read_to_string(address_file(dir.path())).unwrap();
        assert_eq!(kept.trim(), third.addr.to_string());
        // An explicit port that is taken is an error.
        let taken = Some(ListenSpec { ip: Some(lo), port: third.addr.port() });
        assert!(bind_stable(dir.path(), taken, lo, runtime).await.is_err());
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
