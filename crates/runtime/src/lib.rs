//! The container runtime boundary of Berth's agent: the [`Runtime`] trait, the typed
//! specifications and observations that cross it, and [`fake::FakeRuntime`], an in-memory
//! implementation for unit tests of agent logic. Only `berth-runtime-docker` knows Docker.
//!
//! Contract (every implementation, the fake included, keeps it):
//! * Every method is idempotent where the operation allows it: [`Runtime::stop`] on a stopped
//!   container, [`Runtime::remove`] and [`Runtime::remove_volume`] on something already gone,
//!   and [`Runtime::create_volume`] on an existing volume all succeed.
//! * Lookups that may legitimately miss return `Ok(None)` ([`Runtime::image`],
//!   [`Runtime::inspect`], [`Runtime::stats`]); operations on a container that must exist
//!   return [`RuntimeError::NotFound`] naming what was missing.
//! * [`Runtime::pull`] failures, whatever their cause (no registry, no such image, a
//!   time-out), are [`RuntimeError::Pull`]: the agent maps it to ECS's
//!   `CannotPullContainerError`.
//! * [`Runtime::wait_exit`] returns the container's exit code, zero or not: a non-zero exit
//!   is an outcome, never an `Err`. It returns at once for a container that is not running
//!   (created and never started, or already exited).
//! * Nothing here reads an ECS type: the agent translates a task definition into a
//!   [`ContainerSpec`]. Sizes are bytes, durations are [`Duration`]s, and the runtime never
//!   invents defaults the agent did not ask for (an unset `Option` leaves the engine's own).
//! * Networks ([`Runtime::create_network`]) and shared cgroups ([`Runtime::create_cgroup`])
//!   are the awsvpc and task-size building blocks: a container joins a named network with a
//!   fixed address and MAC ([`ContainerSpec::ipv4_address`], [`ContainerSpec::mac_address`]),
//!   another container's network namespace ([`NetworkMode::Container`]), and a shared cgroup
//!   ([`ContainerSpec::cgroup_parent`]) whose limit holds for all its containers together; a
//!   container the kernel kills because that shared limit was reached reads `oom_killed`
//!   like one killed for its own limit (Docker 20.10 flags it, verified on cgroup v1).
//! * [`Runtime::events`] is a hint, never the state: each [`EventStream`] is one subscription
//!   that first yields [`RuntimeEvent::Subscribed`] once it is in effect, then a
//!   [`ContainerEvent`] for every later start, exit, OOM kill, health change and removal of a
//!   matching container, until it ends (an `Err`, or `None`) when the connection is lost.
//!   Changes before `Subscribed`, or after the end, are not delivered: a consumer re-reads
//!   ([`Runtime::inspect`], [`Runtime::list`]) everything it follows after every `Subscribed`
//!   (level-triggered), and takes an event as "re-read this container". Events may repeat,
//!   and a few from shortly before the subscription may be replayed.
#![forbid(unsafe_code)]

pub mod fake;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use time::OffsetDateTime;

/// Credentials for an image registry (what `docker login` stores), for [`Runtime::pull`].
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// The registry, `HOST[:PORT]`.
    pub server_address: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

/// One container's resource use at one moment ([`Runtime::usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the container started, nanoseconds (all cores together).
    pub cpu_total_ns: u64,
    /// Memory in use without the reclaimable page cache, as `docker stats` shows it.
    pub memory_bytes: u64,
    /// The container's memory limit (the host's memory when it has none).
    pub memory_limit_bytes: u64,
}

impl Usage {
    /// Reads Docker's stats JSON (cgroup v1 or v2); absent fields read as zero.
    pub fn from_docker_stats(s: &serde_json::Value) -> Self {
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let mem = &s["memory_stats"];
        let stats = &mem["stats"];
        // docker stats subtracts the inactive page cache: `inactive_file` on cgroup v2,
        // `total_inactive_file` on v1.
        let cache = [&stats["inactive_file"], &stats["total_inactive_file"]]
            .into_iter()
            .find_map(|v| v.as_u64())
            .unwrap_or(0);
        Self {
            cpu_total_ns: n(&s["cpu_stats"]["cpu_usage"]["total_usage"]),
            memory_bytes: n(&mem["usage"]).saturating_sub(cache),
            memory_limit_bytes: n(&mem["limit"]),
        }
    }
}

/// The container runtime the agent drives. Implementations are cheap to share (`Arc<dyn
/// Runtime>`) and safe to call concurrently.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The engine and the host it runs on (reported as the container instance's resources
    /// and attributes).
    async fn info(&self) -> Result<RuntimeInfo, RuntimeError>;

    /// The image named `reference` if it is present locally, `None` if not.
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError>;

    /// Pulls `reference` (a reference without a tag or digest means `:latest`), presenting
    /// `auth` to its registry when given. Any failure is [`RuntimeError::Pull`].
    async fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo, RuntimeError>;

    /// Creates (does not start) a container; returns its id. The image must be present
    /// locally ([`RuntimeError::NotFound`] with [`ObjectKind::Image`] otherwise); a taken name
    /// is [`RuntimeError::Conflict`].
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;

    /// Starts a created container. Starting a running container succeeds.
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;

    /// Sends the image's stop signal (SIGTERM by default), then SIGKILL once `timeout` has
    /// passed; returns once the container has stopped. A stopped container is `Ok`; a missing
    /// one is [`RuntimeError::NotFound`].
    async fn stop(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError>;

    /// Removes a container by force, with its anonymous volumes. A missing container is `Ok`.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;

    /// The container's current state, `None` if it does not exist.
    async fn inspect(&self, id: &str) -> Result<Option<ContainerStatus>, RuntimeError>;

    /// Waits until the container is not running and returns its exit code (non-zero codes
    /// are `Ok`). Returns at once for a container that is not running.
    async fn wait_exit(&self, id: &str) -> Result<i64, RuntimeError>;

    /// All containers, running or not, that carry every one of `labels`.
    async fn list(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError>;

    /// Creates a named volume; creating an existing volume succeeds.
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError>;

    /// Removes a named volume; a missing volume is `Ok`, one in use is
    /// [`RuntimeError::Conflict`].
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError>;

    /// Names of all volumes that carry every one of `labels`.
    async fn list_volumes(&self, labels: &[(String, String)]) -> Result<Vec<String>, RuntimeError>;

    /// One sample of the container's resource usage, in Docker's stats JSON (what the ECS
    /// task metadata endpoint's `/stats` serves). `None` if the container does not exist.
    async fn stats(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError>;

    /// The container's cumulative CPU time and current memory use ([`Usage`]), for the
    /// agent's metrics sampler (issue #15). `None` if the container does not exist. The
    /// default reads them from [`Runtime::stats`]'s Docker stats JSON.
    async fn usage(&self, id: &str) -> Result<Option<Usage>, RuntimeError> {
        Ok(self.stats(id).await?.map(|s| Usage::from_docker_stats(&s)))
    }

    /// Creates a user-defined bridge network ([`NetworkSpec`]). Idempotent: a network of
    /// that name with the same subnet already there is `Ok`; one with another subnet is
    /// [`RuntimeError::Conflict`]. A subnet overlapping another network's is
    /// [`RuntimeError::Conflict`] (the engine's message; [`Runtime::list_networks`] tells
    /// which network it overlaps).
    async fn create_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError>;

    /// Removes a network by name; a missing network is `Ok`, one that containers still use is
    /// [`RuntimeError::Conflict`].
    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError>;

    /// Every network that carries every one of `labels` (all networks for none), by name.
    async fn list_networks(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<NetworkInfo>, RuntimeError>;

    /// Creates (or updates) the cgroup `name` that containers created with
    /// [`ContainerSpec::cgroup_parent`] = `name` share: one limit for all of them together
    /// (a task's `cpu` and `memory`). Idempotent.
    async fn create_cgroup(&self, spec: &CgroupSpec) -> Result<(), RuntimeError>;

    /// Removes the cgroup `name` once no container is in it; a missing one is `Ok`, one still
    /// in use is [`RuntimeError::Conflict`].
    async fn remove_cgroup(&self, name: &str) -> Result<(), RuntimeError>;

    /// Names of the cgroups under `prefix` (a path such as `berth/`) that
    /// [`Runtime::create_cgroup`] made, for level-triggered cleanup.
    async fn list_cgroups(&self, prefix: &str) -> Result<Vec<String>, RuntimeError>;

    /// The image an awsvpc task's pause container runs (it holds the task's network
    /// namespace), present locally: made locally if missing, never pulled. Returns its
    /// reference.
    async fn pause_image(&self) -> Result<String, RuntimeError>;

    /// Moves running container `id` onto network `to.name` with address `to.ip_address` and
    /// MAC `to.mac_address`, off every network it was on (`none` included): how a warm pause
    /// container takes an awsvpc task's address. The default refuses
    /// ([`RuntimeError::Invalid`]): a runtime without it gets no warm pool.
    async fn move_to_network(&self, id: &str, to: &NetworkAttachment) -> Result<(), RuntimeError> {
        let _ = to;
        Err(RuntimeError::Invalid {
            id: id.to_string(),
            message: "move_to_network: unsupported".into(),
        })
    }

    /// Renames container `id` to `name`; a name in use is [`RuntimeError::Conflict`], a
    /// missing container [`RuntimeError::NotFound`]. The default refuses
    /// ([`RuntimeError::Invalid`]).
    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        let _ = name;
        Err(RuntimeError::Invalid { id: id.to_string(), message: "rename: unsupported".into() })
    }

    /// Follows the engine's events about containers that carry every one of `labels`.
    ///
    /// Nothing is sent to the engine until the stream is first polled. The stream yields
    /// [`RuntimeEvent::Subscribed`] first, once the subscription is in effect: from then on
    /// every [`ContainerEventKind`] change of a matching container is delivered, in the
    /// order the engine saw them, until the stream ends. It ends when the connection to the
    /// engine is lost or the engine refuses the subscription: an `Err` item (then `None`), or
    /// `None` alone. Events are not delivered before `Subscribed` nor after the end, so the
    /// caller re-reads every container it follows after each `Subscribed` and calls `events`
    /// again after an end. An event is a hint to re-read its container: it may repeat, and a
    /// few events from shortly before the subscription may be replayed after `Subscribed`.
    fn events(&self, labels: &[(String, String)]) -> EventStream;

    /// A container's output lines, stdout and stderr in the order the engine recorded them,
    /// each with the engine's timestamp, from after `since_ns` (Unix nanoseconds; lines at
    /// or before it are skipped). The stream stays open while the container runs and ends
    /// once it has stopped and every line is delivered, or with an `Err` when the engine
    /// cannot be read (then the caller follows again from its last line). For the agent's
    /// `awslogs` driver, which runs containers with the engine's own local log driver.
    fn follow_logs(&self, id: &str, since_ns: i64) -> LogStream;

    /// The engine's timestamp (Unix nanoseconds) of container `id`'s latest output line,
    /// read without following (`None`: no output yet). A cheap probe: the agent's `awslogs`
    /// follower compares it with the last line its follow delivered to notice a follow
    /// stream that stopped delivering while the container still writes.
    async fn last_log_timestamp(&self, id: &str) -> Result<Option<i64>, RuntimeError>;
}

/// What [`Runtime::follow_logs`] yields.
pub type LogStream = BoxStream<'static, Result<LogLine, RuntimeError>>;

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the engine recorded it (Unix nanoseconds).
    pub timestamp_ns: i64,
    /// From stderr (else stdout).
    pub stderr: bool,
    /// Without its line end.
    pub text: String,
}

/// A user-defined bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkSpec {
    pub name: String,
    /// IPv4 CIDR, e.g. `10.213.1.0/24`.
    pub subnet: String,
    /// The bridge's own address (the host on that network); `None`: the engine picks.
    pub gateway: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A network as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    /// `bridge`, `host`, `null`...
    pub driver: String,
    /// IPv4 CIDRs of its address pools.
    pub subnets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// A cgroup that several containers share (see [`Runtime::create_cgroup`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupSpec {
    /// A relative path, e.g. `berth/<task id>`; also what [`ContainerSpec::cgroup_parent`]
    /// names.
    pub name: String,
    /// Hard memory limit of all its containers together; beyond it the OOM killer acts.
    pub memory_limit_bytes: Option<u64>,
    /// CPU time of all its containers together, in thousandths of a CPU (1024 ECS units =
    /// 1000 here); a CFS quota.
    pub cpu_millis: Option<u64>,
}

/// What [`Runtime::events`] yields.
pub type EventStream = BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;

/// One item of an [`EventStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// The subscription is in effect: every later change is delivered. Whatever happened
    /// before may have been missed: re-read.
    Subscribed,
    /// Something changed about one container.
    Container(ContainerEvent),
}

/// A change the engine reports about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container's full id.
    pub id: String,
    pub kind: ContainerEventKind,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerEventKind {
    /// The container started.
    Start,
    /// The container's process ended (also after an OOM kill, and when a running container
    /// is removed by force).
    Die,
    /// The kernel's OOM killer hit a process of the container (a `Die` follows when that
    /// process was the container's main one).
    Oom,
    /// The container's health (as judged by its health check) changed to this.
    Health(HealthStatus),
    /// The container was removed.
    Destroy,
}

/// The engine and its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// The engine's version, e.g. `20.10.24`.
    pub engine_version: String,
    /// The engine's API version, e.g. `1.41`.
    pub api_version: String,
    /// Logical CPUs of the host.
    pub cpus: u32,
    /// Memory of the host, bytes.
    pub memory_bytes: u64,
    /// `linux` (ECS's `ecs.os-type`).
    pub os: String,
    /// `x86_64` or `arm64` (ECS's `ecs.cpu-architecture` spelling).
    pub arch: String,
    /// The host's address on the default bridge network (Docker's `docker0` gateway): what
    /// bridge-mode containers reach the host at. `None` when the engine has no such network.
    pub bridge_gateway: Option<String>,
}

/// An image present locally.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    /// The content id, `sha256:...`.
    pub id: String,
    /// `repo:tag` names, e.g. `berth-demo:latest`.
    pub repo_tags: Vec<String>,
    /// `repo@sha256:...` names; empty for an image built locally and never pushed or pulled.
    pub repo_digests: Vec<String>,
    /// The image's labels.
    pub labels: BTreeMap<String, String>,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSpec {
    /// The container's name (unique on the engine).
    pub name: String,
    /// The image reference, present locally.
    pub image: String,
    /// Replaces the image's CMD.
    pub command: Option<Vec<String>>,
    /// Replaces the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// Environment, in order; a later duplicate wins as in Docker.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// `user`, `user:group`, `uid` or `uid:gid`.
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Relative CPU weight (ECS `cpu` units map 1:1; Docker's minimum is 2).
    pub cpu_shares: Option<u64>,
    /// Hard memory limit; the container is OOM-killed beyond it.
    pub memory_limit_bytes: Option<u64>,
    /// Soft memory limit.
    pub memory_reservation_bytes: Option<u64>,
    /// Swap allowed on top of `memory_limit_bytes` (ECS `linuxParameters.maxSwap`); `Some(0)`
    /// disables swap. Requires `memory_limit_bytes`.
    pub max_swap_bytes: Option<u64>,
    /// 0..=100 (ECS `linuxParameters.swappiness`).
    pub swappiness: Option<u8>,
    pub ulimits: Vec<Ulimit>,
    /// Published ports.
    pub ports: Vec<PortSpec>,
    pub network_mode: NetworkMode,
    /// Legacy links, `container_name:alias` (bridge mode only).
    pub links: Vec<String>,
    pub mounts: Vec<Mount>,
    /// Containers whose volumes this container mounts.
    pub volumes_from: Vec<VolumesFrom>,
    pub healthcheck: Option<HealthCheck>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    /// Capabilities without the `CAP_` prefix, e.g. `NET_ADMIN`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Run an init process (tini) as PID 1 (ECS `initProcessEnabled`).
    pub init: bool,
    /// Size of `/dev/shm`.
    pub shm_size_bytes: Option<u64>,
    /// Extra `/etc/hosts` entries, `(hostname, ip)`.
    pub extra_hosts: Vec<(String, String)>,
    /// Adds `host.docker.internal` resolving to the host's gateway address (Docker 20.10+'s
    /// `host-gateway`).
    pub host_gateway: bool,
    pub dns_servers: Vec<String>,
    pub dns_search: Vec<String>,
    pub hostname: Option<String>,
    /// Grace period between the stop signal and SIGKILL when the engine itself stops the
    /// container (the agent passes its own timeout to [`Runtime::stop`]).
    pub stop_timeout: Option<Duration>,
    pub sysctls: BTreeMap<String, String>,
    pub log_config: Option<LogConfig>,
    pub devices: Vec<Device>,
    /// Docker `--security-opt` values, e.g. `no-new-privileges`.
    pub security_opts: Vec<String>,
    /// Allocate a pseudo-TTY (ECS `pseudoTerminal`).
    pub tty: bool,
    /// Keep stdin open (ECS `interactive`).
    pub interactive: bool,
    /// No networking at all (ECS `disableNetworking`).
    pub network_disabled: bool,
    /// `host` or `container:<id>` (ECS `pidMode` is `host` or `task`, the agent resolves
    /// `task` to a container).
    pub pid_mode: Option<String>,
    /// `host`, `none`, `shareable` or `container:<id>`.
    pub ipc_mode: Option<String>,
    /// The fixed IPv4 address on the [`NetworkMode::Named`] network.
    pub ipv4_address: Option<String>,
    /// The fixed MAC address of the container's interface (`0e:..`).
    pub mac_address: Option<String>,
    /// A cgroup made by [`Runtime::create_cgroup`] the container is created in.
    pub cgroup_parent: Option<String>,
}

/// A resource limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// e.g. `nofile`.
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub container_port: u16,
    /// `None` or `Some(0)`: the engine picks a free host port (read it back with
    /// [`Runtime::inspect`]).
    pub host_port: Option<u16>,
    pub protocol: Protocol,
    /// Host address to bind; `None` is every interface (as ECS does).
    pub host_ip: Option<String>,
}

/// The container's network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
    None,
    /// Join the network namespace of another container (by id or name).
    Container(String),
    /// A user-defined network, by name.
    Named(String),
}

/// One mount in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    /// Absolute path in the container.
    pub target: String,
    pub read_only: bool,
}

/// What a [`Mount`] mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A host directory or file (created as a directory by the engine if missing).
    HostPath(PathBuf),
    /// A named volume (created with the default driver if missing; create it first with
    /// [`Runtime::create_volume`] to choose driver, options and labels).
    Volume(String),
    /// A fresh tmpfs; `options` are mount options such as `noexec`.
    Tmpfs { size_bytes: Option<u64>, options: Vec<String> },
}

/// Mount every volume of another container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumesFrom {
    /// The source container's id or name.
    pub container: String,
    pub read_only: bool,
}

/// A container health check, run by the engine inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `["CMD", exe, args...]` or `["CMD-SHELL", "command"]` (ECS's own form).
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// A log driver and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// e.g. `json-file`, `awslogs`, `none`.
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

/// A host device exposed to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub host_path: String,
    /// Defaults to `host_path`.
    pub container_path: Option<String>,
    /// Some of `r`, `w`, `m`; defaults to `rwm`.
    pub permissions: Option<String>,
}

/// The lifecycle state the engine reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerState {
    /// Whether the container's process is alive (running, paused or restarting).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
        )
    }
}

/// Health as judged by the container's [`HealthCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

/// A published port as bound by the engine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortBinding {
    pub container_port: u16,
    /// The host port the engine bound (the one it chose, for a dynamic port).
    pub host_port: u16,
    /// `0.0.0.0`, `::` or a specific address.
    pub host_ip: String,
    pub protocol: Protocol,
}

/// The container's address on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAttachment {
    /// The network's name, e.g. `bridge`.
    pub name: String,
    pub ip_address: Option<String>,
    pub mac_address: Option<String>,
}

/// What [`Runtime::inspect`] observes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    /// The image reference the container was created from.
    pub image: String,
    /// The image's content id, `sha256:...`.
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// Set once the container has exited (`Exited` or `Dead`), `None` before.
    pub exit_code: Option<i64>,
    /// The kernel's OOM killer ended the container.
    pub oom_killed: bool,
    /// The engine's error starting or running the container, if any.
    pub error: Option<String>,
    pub created_at: Option<OffsetDateTime>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// `None` when the container has no health check.
    pub health: Option<HealthStatus>,
    /// Every binding, one per host address (Docker binds `0.0.0.0` and `::` separately).
    pub port_bindings: Vec<PortBinding>,
    /// The address on the first network (bridge mode: the bridge address); `None` in host or
    /// none mode.
    pub ip_address: Option<String>,
    pub networks: Vec<NetworkAttachment>,
    /// The host pid of the container's main process while it runs (what `nsenter` targets).
    pub pid: Option<u32>,
}

impl ContainerStatus {
    /// Whether the container's process is alive.
    pub fn is_running(&self) -> bool {
        self.state.is_running()
    }

    /// The host port bound for `container_port`/`protocol`, preferring an IPv4 binding.
    pub fn host_port(&self, container_port: u16, protocol: Protocol) -> Option<u16> {
        let matching = || {
            self.port_bindings
                .iter()
                .filter(move |b| b.container_port == container_port && b.protocol == protocol)
        };
        matching()
            .find(|b| !b.host_ip.contains(':'))
            .or_else(|| matching().next())
            .map(|b| b.host_port)
    }
}

/// One row of [`Runtime::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
}

/// A named volume to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeSpec {
    pub name: String,
    /// `None` is the engine's default (`local`).
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The kind of object a [`RuntimeError::NotFound`] concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Container,
    Image,
    Volume,
    Network,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Container => "container",
            ObjectKind::Image => "image",
            ObjectKind::Volume => "volume",
            ObjectKind::Network => "network",
        })
    }
}

/// Why a runtime operation failed. Every variant names the object it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The container, image or volume does not exist.
    #[error("no such {kind}: {id}")]
    NotFound { kind: ObjectKind, id: String },
    /// Pulling the image failed (no registry, no such image, denied, timed out...).
    #[error("cannot pull image {image}: {message}")]
    Pull { image: String, message: String },
    /// The operation conflicts with the object's state (a name in use, a volume in use).
    #[error("conflict on {id}: {message}")]
    Conflict { id: String, message: String },
    /// The engine (or the runtime itself) rejected the request as invalid.
    #[error("invalid request for {id}: {message}")]
    Invalid { id: String, message: String },
    /// The engine did not answer in time.
    #[error("{op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// Any other engine failure (unreachable daemon, server error).
    #[error("{op} failed: {message}")]
    Engine { op: &'static str, message: String },
}

/// Splits an image reference into `(name, tag, digest)`:
/// `registry:5000/app:1@sha256:ab` -> `("registry:5000/app", Some("1"), Some("sha256:ab"))`.
/// A colon before the last `/` belongs to a registry's port, not a tag.
pub fn parse_reference(reference: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_tag_digest() {
        assert_eq!(parse_reference("busybox"), ("busybox", None, None));
        assert_eq!(parse_reference("busybox:1.36"), ("busybox", Some("1.36"), None));
        assert_eq!(parse_reference("localhost:5000/a/b"), ("localhost:5000/a/b", None, None));
        assert_eq!(
            parse_reference("localhost:5000/a/b:v2"),
            ("localhost:5000/a/b", Some("v2"), None)
        );
        assert_eq!(parse_reference("app@sha256:abc"), ("app", None, Some("sha256:abc")));
        assert_eq!(
            parse_reference("r:1/app:t@sha256:abc"),
            ("r:1/app", Some("t"), Some("sha256:abc"))
        );
        assert_eq!(fake::normalize_reference("busybox"), "busybox:latest");
        assert_eq!(fake::normalize_reference("app@sha256:abc"), "app@sha256:abc");
    }

    #[test]
    fn usage_reads_docker_stats_without_the_page_cache() {
        let v2 = serde_json::json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000u64}},
            "memory_stats": {"usage": 10_000_000u64, "limit": 64u64 << 20, "stats": {"inactive_file": 2_000_000u64}}
        });
        let u = super::Usage::from_docker_stats(&v2);
        assert_eq!(
            (u.cpu_total_ns, u.memory_bytes, u.memory_limit_bytes),
            (1_500_000_000, 8_000_000, 64 << 20)
        );
        let v1 = serde_json::json!({"memory_stats": {"usage": 5u64, "stats": {"total_inactive_file": 9u64}}});
        assert_eq!(super::Usage::from_docker_stats(&v1).memory_bytes, 0, "never below zero");
        assert_eq!(
            super::Usage::from_docker_stats(&serde_json::json!({})),
            super::Usage::default()
        );
    }

    #[test]
    fn host_port_prefers_ipv4() {
        let mut s = fake_status();
        s.port_bindings = vec![
            PortBinding {
                container_port: 80,
                host_port: 1,
                host_ip: "::".into(),
                protocol: Protocol::Tcp,
            },
            PortBinding {
                container_port: 80,
                host_port: 2,
                host_ip: "0.0.0.0".into(),
                protocol: Protocol::Tcp,
            },
        ];
        assert_eq!(s.host_port(80, Protocol::Tcp), Some(2));
        assert_eq!(s.host_port(80, Protocol::Udp), None);
        s.port_bindings.remove(1);
        assert_eq!(s.host_port(80, Protocol::Tcp), Some(1));
    }

    fn fake_status() -> ContainerStatus {
        ContainerStatus {
            id: "x".into(),
            name: "x".into(),
            image: "i".into(),
            image_id: "sha256:0".into(),
            labels: BTreeMap::new(),
            state: ContainerState::Running,
            exit_code: None,
            oom_killed: false,
            error: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            health: None,
            port_bindings: Vec::new(),
            ip_address: None,
            networks: Vec::new(),
            pid: None,
        }
    }
}
