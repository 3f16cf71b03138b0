//! [`FakeRuntime`]: an in-memory [`Runtime`] for unit tests of agent logic.
//!
//! Contract:
//! * Deterministic: container ids are `{n:064x}` in creation order, dynamic host ports count
//!   up from 32768, bridge addresses from 172.17.0.2, and timestamps come from a logical
//!   clock (2026-01-01T00:00:00Z plus one second per state change), never the wall clock.
//!   Scripted delays ([`Script::exit_after`], [`Script::health`]) run on tokio timers, so a
//!   test with a paused clock (`tokio::time::pause`, `start_paused = true`) is deterministic.
//! * It behaves like Docker where the agent can tell: `create` needs the image locally and a
//!   free name, links / `volumes_from` / `container:` network targets must exist, memory
//!   limits below 6 MiB are rejected, a fixed host port bound by a running container makes
//!   `start` fail, a volume in use cannot be removed, a force-removed running container is
//!   killed (exit 137) and its waiters get that code.
//! * Networks and shared cgroups as Docker has them ([`net`](self) rules): a network's subnet
//!   may not overlap another's (`bridge` is 172.17.0.0/16), a container on a named network
//!   needs the network and, with a fixed address, a free one inside its subnet; a network or
//!   cgroup still used by a container cannot be removed. Running containers have a pid
//!   (counting up from 1000).
//! * Pulls succeed for every reference unless [`FakeRuntime::fail_pull`] names it; a pulled
//!   image is then present locally. `busybox` and `busybox:latest` are the same image.
//! * Every trait call is recorded ([`FakeRuntime::calls`]) before it runs, including calls
//!   that fail; [`FakeRuntime::fail_next`] makes the next call of one operation fail with a
//!   given error (and records it).
//! * Tests drive the rest by hand: [`FakeRuntime::exit`], [`FakeRuntime::oom_kill`],
//!   [`FakeRuntime::set_health`].
//! * [`Runtime::events`] subscribes when its stream is first polled (then yields
//!   [`RuntimeEvent::Subscribed`]) and delivers what Docker would: `Start` on start, `Oom` then
//!   `Die` on an OOM kill, `Die` on every other exit (a stop, a forced removal, a scripted
//!   exit), `Health` when the health changes, `Destroy` on removal. Events with no live
//!   subscription are lost, as a dropped connection loses them. Tests inject more with
//!   [`FakeRuntime::push_event`], end every live stream as a lost connection would with
//!   [`FakeRuntime::drop_event_streams`], and lose events on purpose with
//!   [`FakeRuntime::mute_events`]; a queued [`FakeRuntime::fail_next`] of [`Op::Events`]
//!   makes the next stream yield that error instead of subscribing.
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use crate::{CgroupSpec, NetworkInfo, NetworkSpec};
use crate::{
    ContainerEvent, ContainerEventKind, ContainerSpec, ContainerState, ContainerStatus,
    ContainerSummary, EventStream, HealthStatus, ImageInfo, MountSource, NetworkAttachment,
    NetworkMode, ObjectKind, PortBinding, Runtime, RuntimeError, RuntimeEvent, RuntimeInfo,
    VolumeSpec,
};

mod control;
mod net;

/// One [`Runtime`] operation, for [`FakeRuntime::fail_next`] and [`Call::op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Info,
    Image,
    Pull,
    Create,
    Start,
    Stop,
    Remove,
    Inspect,
    WaitExit,
    List,
    CreateVolume,
    RemoveVolume,
    ListVolumes,
    Stats,
    Events,
    CreateNetwork,
    RemoveNetwork,
    ListNetworks,
    CreateCgroup,
    RemoveCgroup,
    ListCgroups,
    PauseImage,
    MoveToNetwork,
    Rename,
}

/// A recorded call, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Info,
    Image(String),
    Pull(String),
    Create(Box<ContainerSpec>),
    Start(String),
    Stop { id: String, timeout: Duration },
    Remove(String),
    Inspect(String),
    WaitExit(String),
    List(Vec<(String, String)>),
    CreateVolume(VolumeSpec),
    RemoveVolume(String),
    ListVolumes(Vec<(String, String)>),
    Stats(String),
    Events(Vec<(String, String)>),
    CreateNetwork(NetworkSpec),
    RemoveNetwork(String),
    ListNetworks(Vec<(String, String)>),
    CreateCgroup(CgroupSpec),
    RemoveCgroup(String),
    ListCgroups(String),
    PauseImage,
    MoveToNetwork { id: String, to: NetworkAttachment },
    Rename { id: String, name: String },
}

impl Call {
    /// The operation this call was.
    pub fn op(&self) -> Op {
        match self {
            Call::Info => Op::Info,
            Call::Image(_) => Op::Image,
            Call::Pull(_) => Op::Pull,
            Call::Create(_) => Op::Create,
            Call::Start(_) => Op::Start,
            Call::Stop { .. } => Op::Stop,
            Call::Remove(_) => Op::Remove,
            Call::Inspect(_) => Op::Inspect,
            Call::WaitExit(_) => Op::WaitExit,
            Call::List(_) => Op::List,
            Call::CreateVolume(_) => Op::CreateVolume,
            Call::RemoveVolume(_) => Op::RemoveVolume,
            Call::ListVolumes(_) => Op::ListVolumes,
            Call::Stats(_) => Op::Stats,
            Call::Events(_) => Op::Events,
            Call::CreateNetwork(_) => Op::CreateNetwork,
            Call::RemoveNetwork(_) => Op::RemoveNetwork,
            Call::ListNetworks(_) => Op::ListNetworks,
            Call::CreateCgroup(_) => Op::CreateCgroup,
            Call::RemoveCgroup(_) => Op::RemoveCgroup,
            Call::ListCgroups(_) => Op::ListCgroups,
            Call::PauseImage => Op::PauseImage,
            Call::MoveToNetwork { .. } => Op::MoveToNetwork,
            Call::Rename { .. } => Op::Rename,
        }
    }
}

/// How containers created from one image behave once started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// Exit with this code this long after each start (`Duration::ZERO`: at once, within
    /// `start`).
    pub exit_after: Option<(Duration, i64)>,
    /// Be OOM-killed (exit 137, `oom_killed`) this long after each start.
    pub oom_after: Option<Duration>,
    /// `start` fails with this engine message; the container stays `Created` with the error
    /// recorded, as Docker leaves it when the entrypoint cannot run.
    pub fail_start: Option<String>,
    /// The process ignores the stop signal: `stop` ends it with SIGKILL (exit 137).
    pub ignore_stop_signal: bool,
    /// Exit code after a graceful stop (default 0; many programs use 143).
    pub stop_exit_code: i64,
    /// Health transitions after each start, as offsets from the start. With a health check
    /// and no script the container stays `Starting` until [`FakeRuntime::set_health`].
    pub health: Vec<(Duration, HealthStatus)>,
}

/// A container as the fake holds it.
#[derive(Debug, Clone)]
struct FakeContainer {
    spec: ContainerSpec,
    status: ContainerStatus,
    /// Bumped at each start, so timers of an earlier run do nothing.
    run: u64,
}

#[derive(Debug)]
struct State {
    clock: i64,
    next_container: u64,
    next_image: u64,
    next_port: u16,
    next_ip: u8,
    info: RuntimeInfo,
    images: BTreeMap<String, ImageInfo>,
    pull_failures: BTreeMap<String, String>,
    scripts: BTreeMap<String, Script>,
    containers: BTreeMap<String, FakeContainer>,
    /// Exit codes of containers removed while someone may be waiting on them.
    tombstones: BTreeMap<String, i64>,
    volumes: BTreeMap<String, VolumeSpec>,
    calls: Vec<Call>,
    failures: BTreeMap<Op, VecDeque<RuntimeError>>,
    /// Live [`Runtime::events`] subscriptions.
    subscribers: Vec<Subscriber>,
    /// While set, events are dropped instead of delivered.
    muted: bool,
    /// Networks by name (the default `bridge`, 172.17.0.0/16, is there from the start).
    networks: BTreeMap<String, NetworkInfo>,
    /// Shared cgroups by name.
    cgroups: BTreeMap<String, CgroupSpec>,
    next_pid: u32,
    /// Output lines by container key ([`FakeRuntime::push_log`]).
    logs: BTreeMap<String, Vec<crate::LogLine>>,
    /// Per container key: follows opened before this count stall ([`FakeRuntime::stall_follows`]).
    follow_stalls: BTreeMap<String, u64>,
}

/// One live [`Runtime::events`] subscription.
#[derive(Debug)]
struct Subscriber {
    labels: Vec<(String, String)>,
    tx: mpsc::UnboundedSender<Result<RuntimeEvent, RuntimeError>>,
}

struct Inner {
    state: Mutex<State>,
    /// Bumped on every container state change; waiters re-check on each bump.
    changed: watch::Sender<u64>,
}

/// The in-memory runtime. Cloning shares the same state.
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Runtime::pause_image`] answers (and adds as a local image).
pub const PAUSE_IMAGE: &str = "berth-pause:latest";

const BASE_TIME: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// `busybox` -> `busybox:latest`; references with a tag or digest are unchanged.
pub fn normalize_reference(reference: &str) -> String {
    let (_, tag, digest) = crate::parse_reference(reference);
    if tag.is_none() && digest.is_none() {
        format!("{reference}:latest")
    } else {
        reference.to_string()
    }
}

impl FakeRuntime {
    /// An empty engine: no images, containers or volumes; a 2-CPU, 4 GiB x86_64 host.
    pub fn new() -> Self {
        let state = State {
            clock: 0,
            next_container: 1,
            next_image: 1,
            next_port: 32768,
            next_ip: 2,
            info: RuntimeInfo {
                engine_version: "20.10.24-fake".into(),
                api_version: "1.41".into(),
                cpus: 2,
                memory_bytes: 4 << 30,
                os: "linux".into(),
                arch: "x86_64".into(),
                bridge_gateway: Some("172.17.0.1".into()),
            },
            images: BTreeMap::new(),
            pull_failures: BTreeMap::new(),
            scripts: BTreeMap::new(),
            containers: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            volumes: BTreeMap::new(),
            calls: Vec::new(),
            failures: BTreeMap::new(),
            subscribers: Vec::new(),
            muted: false,
            networks: net::default_networks(),
            cgroups: BTreeMap::new(),
            next_pid: 1000,
            logs: BTreeMap::new(),
            follow_stalls: BTreeMap::new(),
        };
        let (changed, _) = watch::channel(0);
        FakeRuntime { inner: Arc::new(Inner { state: Mutex::new(state), changed }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// Records `call`, then returns the queued failure for its operation, if any.
    fn begin(&self, call: Call) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        let op = call.op();
        st.calls.push(call);
        match st.failures.get_mut(&op).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn spawn_timers(&self, key: &str, run: u64, script: &Script) {
        let mut events: Vec<(Duration, Event)> = Vec::new();
        if let Some((after, code)) = script.exit_after
            && !after.is_zero()
        {
            events.push((after, Event::Exit(code)));
        }
        if let Some(after) = script.oom_after {
            events.push((after, Event::Oom));
        }
        for (after, h) in &script.health {
            events.push((*after, Event::Health(*h)));
        }
        for (after, event) in events {
            let this = self.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                this.fire(&key, run, event);
            });
        }
    }

    fn fire(&self, key: &str, run: u64, event: Event) {
        {
            let mut st = self.lock();
            let Some(c) = st.containers.get_mut(key) else { return };
            if c.run != run || !c.status.state.is_running() {
                return;
            }
            match event {
                Event::Exit(code) => {
                    exit_locked(&mut st, key, code, false);
                }
                Event::Oom => {
                    exit_locked(&mut st, key, 137, true);
                }
                Event::Health(h) => {
                    if c.spec.healthcheck.is_some() && c.status.health != Some(h) {
                        c.status.health = Some(h);
                        emit(&mut st, key, ContainerEventKind::Health(h));
                    }
                }
            }
        }
        self.notify();
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Exit(i64),
    Oom,
    Health(HealthStatus),
}

fn now(st: &mut State) -> OffsetDateTime {
    st.clock += 1;
    OffsetDateTime::from_unix_timestamp(BASE_TIME + st.clock).expect("valid timestamp")
}

fn add_image_locked(st: &mut State, reference: &str) -> ImageInfo {
    let n = st.next_image;
    st.next_image += 1;
    let reference = normalize_reference(reference);
    let info = ImageInfo {
        id: format!("sha256:{n:064x}"),
        repo_tags: vec![reference.clone()],
        repo_digests: Vec::new(),
        labels: BTreeMap::new(),
    };
    st.images.insert(reference, info.clone());
    info
}

/// The key (id) of a container named by id or name.
fn find(st: &State, id_or_name: &str) -> Option<String> {
    if st.containers.contains_key(id_or_name) {
        return Some(id_or_name.to_string());
    }
    let name = id_or_name.strip_prefix('/').unwrap_or(id_or_name);
    st.containers.iter().find(|(_, c)| c.status.name == name).map(|(k, _)| k.clone())
}

fn not_found(kind: ObjectKind, id: &str) -> RuntimeError {
    RuntimeError::NotFound { kind, id: id.to_string() }
}

/// Ends a running container; false if it was not running.
fn exit_locked(st: &mut State, key: &str, code: i64, oom: bool) -> bool {
    let t = now(st);
    let c = st.containers.get_mut(key).expect("caller found it");
    if !c.status.state.is_running() {
        return false;
    }
    c.status.state = ContainerState::Exited;
    c.status.exit_code = Some(code);
    c.status.oom_killed = oom;
    c.status.finished_at = Some(t);
    c.status.pid = None;
    c.status.port_bindings.clear();
    c.status.ip_address = None;
    for n in &mut c.status.networks {
        n.ip_address = None;
    }
    if oom {
        emit(st, key, ContainerEventKind::Oom);
    }
    emit(st, key, ContainerEventKind::Die);
    true
}

/// Delivers an event about container `key` (which exists) to the matching subscribers.
fn emit(st: &mut State, key: &str, kind: ContainerEventKind) {
    if st.muted {
        return;
    }
    let labels = &st.containers[key].status.labels;
    let event = ContainerEvent { id: key.to_string(), kind };
    st.subscribers.retain(|s| {
        !has_labels(labels, &s.labels)
            || s.tx.send(Ok(RuntimeEvent::Container(event.clone()))).is_ok()
    });
}

fn has_labels(labels: &BTreeMap<String, String>, wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn info(&self) -> Result<RuntimeInfo, RuntimeError> {
        self.begin(Call::Info)?;
        Ok(self.lock().info.clone())
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.begin(Call::Image(reference.to_string()))?;
        Ok(self.lock().images.get(&normalize_reference(reference)).cloned())
    }

    async fn pull(
        &self,
        reference: &str,
        _auth: Option<&crate::RegistryAuth>,
    ) -> Result<ImageInfo, RuntimeError> {
        self.begin(Call::Pull(reference.to_string()))?;
        let mut st = self.lock();
        let key = normalize_reference(reference);
        if let Some(message) = st.pull_failures.get(&key) {
            return Err(RuntimeError::Pull {
                image: reference.to_string(),
                message: message.clone(),
            });
        }
        if let Some(info) = st.images.get(&key) {
            return Ok(info.clone());
        }
        Ok(add_image_locked(&mut st, reference))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.begin(Call::Create(Box::new(spec.clone())))?;
        let mut st = self.lock();
        let image = st
            .images
            .get(&normalize_reference(&spec.image))
            .cloned()
            .ok_or_else(|| not_found(ObjectKind::Image, &spec.image))?;
        let n = st.next_container;
        let id = format!("{n:064x}");
        let name = if spec.name.is_empty() { format!("fake_{n}") } else { spec.name.clone() };
        if find(&st, &name).is_some() {
            return Err(RuntimeError::Conflict {
                id: name.clone(),
                message: format!("the container name \"/{name}\" is already in use"),
            });
        }
        if let Some(limit) = spec.memory_limit_bytes
            && limit < 6 << 20
        {
            return Err(RuntimeError::Invalid {
                id: name,
                message: "Minimum memory limit allowed is 6MB".into(),
            });
        }
        if spec.max_swap_bytes.is_some() && spec.memory_limit_bytes.is_none() {
            return Err(RuntimeError::Invalid {
                id: name,
                message: "max_swap_bytes needs memory_limit_bytes".into(),
            });
        }
        for link in &spec.links {
            let target = link.split(':').next().unwrap_or_default();
            if find(&st, target).is_none() {
                return Err(not_found(ObjectKind::Container, target));
            }
        }
        for from in &spec.volumes_from {
            if find(&st, &from.container).is_none() {
                return Err(not_found(ObjectKind::Container, &from.container));
            }
        }
        // `container:<other>`: as Docker (20.10, verified), `other` need not exist until this
        // container starts (checked there).
        net::check_create(&st, spec, &name)?;
        for m in &spec.mounts {
            if let MountSource::Volume(v) = &m.source {
                st.volumes
                    .entry(v.clone())
                    .or_insert_with(|| VolumeSpec { name: v.clone(), ..VolumeSpec::default() });
            }
        }
        st.next_container += 1;
        let created_at = now(&mut st);
        let status = ContainerStatus {
            id: id.clone(),
            name,
            image: spec.image.clone(),
            image_id: image.id,
            labels: spec.labels.clone(),
            state: ContainerState::Created,
            exit_code: None,
            oom_killed: false,
            error: None,
            created_at: Some(created_at),
            started_at: None,
            finished_at: None,
            health: None,
            port_bindings: Vec::new(),
            ip_address: None,
            networks: Vec::new(),
            pid: None,
        };
        st.containers.insert(id.clone(), FakeContainer { spec: spec.clone(), status, run: 0 });
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.begin(Call::Start(id.to_string()))?;
        let (key, run, script) = {
            let mut st = self.lock();
            let key = find(&st, id).ok_or_else(|| not_found(ObjectKind::Container, id))?;
            let c = &st.containers[&key];
            if c.status.state.is_running() {
                return Ok(());
            }
            let spec = c.spec.clone();
            let script =
                st.scripts.get(&normalize_reference(&spec.image)).cloned().unwrap_or_default();
            if let Some(message) = &script.fail_start {
                let c = st.containers.get_mut(&key).expect("found");
                c.status.error = Some(message.clone());
                return Err(RuntimeError::Engine { op: "start", message: message.clone() });
            }
            if let NetworkMode::Container(other) = &spec.network_mode {
                let running = find(&st, other)
                    .map(|k| st.containers[&k].status.state.is_running())
                    .unwrap_or(false);
                if !running {
                    return Err(RuntimeError::Engine {
                        op: "start",
                        message: format!("cannot join network of a non running container: {other}"),
                    });
                }
            }
            // Host ports held by running containers.
            let taken: BTreeSet<(u16, crate::Protocol)> = st
                .containers
                .values()
                .filter(|c| c.status.state.is_running())
                .flat_map(|c| c.status.port_bindings.iter().map(|b| (b.host_port, b.protocol)))
                .collect();
            let mut bindings = Vec::new();
            if matches!(spec.network_mode, NetworkMode::Bridge | NetworkMode::Named(_)) {
                for p in &spec.ports {
                    let host_port = match p.host_port {
                        Some(port) if port != 0 => {
                            if taken.contains(&(port, p.protocol)) {
                                return Err(RuntimeError::Engine {
                                    op: "start",
                                    message: format!(
                                        "Bind for 0.0.0.0:{port} failed: port is already allocated"
                                    ),
                                });
                            }
                            port
                        }
                        _ => {
                            let port = st.next_port;
                            st.next_port = st.next_port.checked_add(1).unwrap_or(32768);
                            port
                        }
                    };
                    bindings.push(PortBinding {
                        container_port: p.container_port,
                        host_port,
                        host_ip: p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol,
                    });
                }
            }
            let networks = match &spec.network_mode {
                NetworkMode::Bridge | NetworkMode::Named(_) => {
                    let ip = match &spec.ipv4_address {
                        Some(ip) => ip.clone(),
                        None => {
                            let ip = format!("172.17.0.{}", st.next_ip);
                            st.next_ip = st.next_ip.checked_add(1).unwrap_or(2);
                            ip
                        }
                    };
                    let name = match &spec.network_mode {
                        NetworkMode::Named(n) => n.clone(),
                        _ => "bridge".into(),
                    };
                    vec![NetworkAttachment {
                        name,
                        ip_address: Some(ip),
                        mac_address: Some(
                            spec.mac_address.clone().unwrap_or_else(|| "02:42:ac:11:00:02".into()),
                        ),
                    }]
                }
                _ => Vec::new(),
            };
            let t = now(&mut st);
            let pid = st.next_pid;
            st.next_pid += 1;
            let c = st.containers.get_mut(&key).expect("found");
            c.status.pid = Some(pid);
            c.run += 1;
            c.status.state = ContainerState::Running;
            c.status.exit_code = None;
            c.status.oom_killed = false;
            c.status.error = None;
            c.status.started_at = Some(t);
            c.status.finished_at = None;
            c.status.health = spec.healthcheck.as_ref().map(|_| HealthStatus::Starting);
            c.status.port_bindings = bindings;
            c.status.ip_address = networks.first().and_then(|n| n.ip_address.clone());
            c.status.networks = networks;
            let run = c.run;
            emit(&mut st, &key, ContainerEventKind::Start);
            if let Some((after, code)) = script.exit_after
                && after.is_zero()
            {
                exit_locked(&mut st, &key, code, false);
            }
            (key, run, script)
        };
        self.spawn_timers(&key, run, &script);
        self.notify();
        Ok(())
    }

    async fn stop(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        self.begin(Call::Stop { id: id.to_string(), timeout })?;
        {
            let mut st = self.lock();
            let key = find(&st, id).ok_or_else(|| not_found(ObjectKind::Container, id))?;
            let script = st
                .scripts
                .get(&normalize_reference(&st.containers[&key].spec.image))
                .cloned()
                .unwrap_or_default();
            let code = if script.ignore_stop_signal { 137 } else { script.stop_exit_code };
            exit_locked(&mut st, &key, code, false);
        }
        self.notify();
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.begin(Call::Remove(id.to_string()))?;
        {
            let mut st = self.lock();
            let Some(key) = find(&st, id) else { return Ok(()) };
            exit_locked(&mut st, &key, 137, false);
            emit(&mut st, &key, ContainerEventKind::Destroy);
            let c = st.containers.remove(&key).expect("found");
            st.tombstones.insert(key, c.status.exit_code.unwrap_or(0));
        }
        self.notify();
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        self.begin(Call::Inspect(id.to_string()))?;
        let st = self.lock();
        Ok(find(&st, id).map(|k| st.containers[&k].status.clone()))
    }

    async fn wait_exit(&self, id: &str) -> Result<i64, RuntimeError> {
        self.begin(Call::WaitExit(id.to_string()))?;
        let mut rx = self.inner.changed.subscribe();
        let key = {
            let st = self.lock();
            find(&st, id).ok_or_else(|| not_found(ObjectKind::Container, id))?
        };
        loop {
            {
                let st = self.lock();
                match st.containers.get(&key) {
                    Some(c) if !c.status.state.is_running() => {
                        return Ok(c.status.exit_code.unwrap_or(0));
                    }
                    Some(_) => {}
                    None => {
                        return st
                            .tombstones
                            .get(&key)
                            .copied()
                            .ok_or_else(|| not_found(ObjectKind::Container, id));
                    }
                }
            }
            if rx.changed().await.is_err() {
                return Err(RuntimeError::Engine { op: "wait", message: "runtime dropped".into() });
            }
        }
    }

    async fn list(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        self.begin(Call::List(labels.to_vec()))?;
        let st = self.lock();
        Ok(st
            .containers
            .values()
            .filter(|c| has_labels(&c.status.labels, labels))
            .map(|c| ContainerSummary {
                id: c.status.id.clone(),
                name: c.status.name.clone(),
                image: c.status.image.clone(),
                image_id: c.status.image_id.clone(),
                labels: c.status.labels.clone(),
                state: c.status.state,
            })
            .collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        self.begin(Call::CreateVolume(spec.clone()))?;
        let mut st = self.lock();
        if let Some(existing) = st.volumes.get(&spec.name) {
            let driver = |d: &Option<String>| d.clone().unwrap_or_else(|| "local".into());
            if driver(&existing.driver) != driver(&spec.driver) {
                return Err(RuntimeError::Conflict {
                    id: spec.name.clone(),
                    message: "volume exists with a different driver".into(),
                });
            }
            return Ok(());
        }
        st.volumes.insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.begin(Call::RemoveVolume(name.to_string()))?;
        let mut st = self.lock();
        let in_use = st.containers.values().find(|c| {
            c.spec.mounts.iter().any(|m| matches!(&m.source, MountSource::Volume(v) if v == name))
        });
        if let Some(c) = in_use {
            return Err(RuntimeError::Conflict {
                id: name.to_string(),
                message: format!("volume is in use - [{}]", c.status.id),
            });
        }
        st.volumes.remove(name);
        Ok(())
    }

    async fn list_volumes(&self, labels: &[(String, String)]) -> Result<Vec<String>, RuntimeError> {
        self.begin(Call::ListVolumes(labels.to_vec()))?;
        let st = self.lock();
        Ok(st
            .volumes
            .values()
            .filter(|v| has_labels(&v.labels, labels))
            .map(|v| v.name.clone())
            .collect())
    }

    async fn stats(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError> {
        self.begin(Call::Stats(id.to_string()))?;
        let st = self.lock();
        let Some(key) = find(&st, id) else { return Ok(None) };
        let c = &st.containers[&key];
        let limit = c.spec.memory_limit_bytes.unwrap_or(st.info.memory_bytes);
        let running = c.status.state.is_running();
        Ok(Some(serde_json::json!({
            "read": time::OffsetDateTime::from_unix_timestamp(BASE_TIME + st.clock)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            "id": c.status.id,
            "name": format!("/{}", c.status.name),
            "num_procs": 0,
            "pids_stats": { "current": if running { 1 } else { 0 } },
            "cpu_stats": {
                "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
                "system_cpu_usage": 0,
                "online_cpus": st.info.cpus,
                "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 }
            },
            "precpu_stats": {
                "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
                "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 }
            },
            "memory_stats": if running {
                serde_json::json!({ "usage": 1 << 20, "max_usage": 1 << 20, "limit": limit, "stats": {} })
            } else {
                serde_json::json!({})
            },
            "blkio_stats": {},
            "networks": if running {
                serde_json::json!({ "eth0": { "rx_bytes": 0, "rx_packets": 0, "tx_bytes": 0, "tx_packets": 0 } })
            } else {
                serde_json::Value::Null
            },
        })))
    }

    async fn pause_image(&self) -> Result<String, RuntimeError> {
        self.begin(Call::PauseImage)?;
        add_image_locked(&mut self.lock(), PAUSE_IMAGE);
        Ok(PAUSE_IMAGE.to_string())
    }

    async fn move_to_network(&self, id: &str, to: &NetworkAttachment) -> Result<(), RuntimeError> {
        self.begin(Call::MoveToNetwork { id: id.to_string(), to: to.clone() })?;
        let mut st = self.lock();
        let key = find(&st, id).ok_or_else(|| not_found(ObjectKind::Container, id))?;
        if !st.containers[&key].status.state.is_running() {
            return Err(RuntimeError::Conflict {
                id: id.to_string(),
                message: format!("container {id} is not running"),
            });
        }
        // Docker's checks, as at create: the network, the address inside it and free.
        let mut probe = st.containers[&key].spec.clone();
        probe.network_mode = NetworkMode::Named(to.name.clone());
        probe.ipv4_address = to.ip_address.clone();
        let name = st.containers[&key].status.name.clone();
        let me = st.containers.remove(&key).expect("found");
        let checked = net::check_create(&st, &probe, &name);
        st.containers.insert(key.clone(), me);
        checked?;
        let c = st.containers.get_mut(&key).expect("found");
        c.spec.network_mode = probe.network_mode;
        c.spec.ipv4_address = probe.ipv4_address;
        c.spec.mac_address = to.mac_address.clone();
        c.status.ip_address = to.ip_address.clone();
        c.status.networks = vec![to.clone()];
        Ok(())
    }

    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        self.begin(Call::Rename { id: id.to_string(), name: name.to_string() })?;
        let mut st = self.lock();
        let key = find(&st, id).ok_or_else(|| not_found(ObjectKind::Container, id))?;
        if find(&st, name).is_some_and(|k| k != key) {
            return Err(RuntimeError::Conflict {
                id: name.to_string(),
                message: format!("the container name \"/{name}\" is already in use"),
            });
        }
        let c = st.containers.get_mut(&key).expect("found");
        c.status.name = name.to_string();
        c.spec.name = name.to_string();
        Ok(())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError> {
        self.begin(Call::CreateNetwork(spec.clone()))?;
        net::create_network(&mut self.lock(), spec)
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.begin(Call::RemoveNetwork(name.to_string()))?;
        net::remove_network(&mut self.lock(), name)
    }

    async fn list_networks(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<NetworkInfo>, RuntimeError> {
        self.begin(Call::ListNetworks(labels.to_vec()))?;
        let st = self.lock();
        Ok(st.networks.values().filter(|n| has_labels(&n.labels, labels)).cloned().collect())
    }

    async fn create_cgroup(&self, spec: &CgroupSpec) -> Result<(), RuntimeError> {
        self.begin(Call::CreateCgroup(spec.clone()))?;
        self.lock().cgroups.insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    async fn remove_cgroup(&self, name: &str) -> Result<(), RuntimeError> {
        self.begin(Call::RemoveCgroup(name.to_string()))?;
        net::remove_cgroup(&mut self.lock(), name)
    }

    async fn list_cgroups(&self, prefix: &str) -> Result<Vec<String>, RuntimeError> {
        self.begin(Call::ListCgroups(prefix.to_string()))?;
        Ok(self.lock().cgroups.keys().filter(|k| k.starts_with(prefix)).cloned().collect())
    }

    fn follow_logs(&self, id: &str, since_ns: i64) -> crate::LogStream {
        let rt = self.clone();
        let id = id.to_string();
        let changed = self.inner.changed.subscribe();
        let opened = control::follow_generation(&self.lock(), &id);
        futures_util::stream::unfold(
            (rt, id, since_ns, changed, VecDeque::new()),
            move |(rt, id, mut since, mut changed, mut ready)| async move {
                loop {
                    if control::follow_generation(&rt.lock(), &id) != opened {
                        std::future::pending::<()>().await;
                    }
                    if let Some(line) = ready.pop_front() {
                        return Some((Ok(line), (rt, id, since, changed, ready)));
                    }
                    let running = {
                        let st = rt.lock();
                        let key = find(&st, &id)?;
                        let fresh: Vec<crate::LogLine> = st
                            .logs
                            .get(&key)
                            .map(|v| v.iter().filter(|l| l.timestamp_ns > since).cloned().collect())
                            .unwrap_or_default();
                        if let Some(last) = fresh.last() {
                            since = last.timestamp_ns;
                        }
                        ready.extend(fresh);
                        st.containers[&key].status.state.is_running()
                    };
                    if !ready.is_empty() {
                        continue;
                    }
                    if !running {
                        return None;
                    }
                    changed.changed().await.ok()?;
                }
            },
        )
        .boxed()
    }

    async fn last_log_timestamp(&self, id: &str) -> Result<Option<i64>, RuntimeError> {
        let st = self.lock();
        let key = find(&st, id).ok_or_else(|| not_found(ObjectKind::Container, id))?;
        Ok(st.logs.get(&key).and_then(|v| v.last()).map(|l| l.timestamp_ns))
    }

    fn events(&self, labels: &[(String, String)]) -> EventStream {
        enum Stage {
            Subscribe(FakeRuntime, Vec<(String, String)>),
            Fail(RuntimeError),
            Live(mpsc::UnboundedReceiver<Result<RuntimeEvent, RuntimeError>>),
            Done,
        }
        let first = match self.begin(Call::Events(labels.to_vec())) {
            Ok(()) => Stage::Subscribe(self.clone(), labels.to_vec()),
            Err(e) => Stage::Fail(e),
        };
        futures_util::stream::unfold(first, |stage| async move {
            match stage {
                Stage::Subscribe(rt, labels) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    rt.lock().subscribers.push(Subscriber { labels, tx });
                    Some((Ok(RuntimeEvent::Subscribed), Stage::Live(rx)))
                }
                Stage::Fail(e) => Some((Err(e), Stage::Done)),
                Stage::Live(mut rx) => match rx.recv().await? {
                    Ok(event) => Some((Ok(event), Stage::Live(rx))),
                    Err(e) => Some((Err(e), Stage::Done)),
                },
                Stage::Done => None,
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests;
