//! A fleet simulator: thousands of container instances in one process, each speaking the real
//! agent protocol to a real `berth server`, with no Docker behind them.
//!
//! ```text
//!  per instance (one tokio task):
//!    RegisterContainerInstance (the attributes and resources `berth agent` sends, for a
//!    simulated m5.large / m5.xlarge / c5.2xlarge in one of three availability zones)
//!      └─ loop: POST /berth/agent/v1/poll {seenVersion, waitSeconds 20}   (the heartbeat)
//!               for each task listed: desired RUNNING, not yet reported  → report RUNNING
//!                                     desired STOPPED, not yet reported  → report STOPPED
//!               (POST /berth/agent/v1/report: SubmitTaskStateChange's shape, stamped with
//!                the answer's registration epoch and a per-agent sequence number)
//! ```
//! As the real agent: level-triggered (every answer is the instance's complete desired state;
//! a report that fails is retried by polling again at once, which brings the truth), reports
//! sent one at a time per instance, a deregistered (INACTIVE) instance stops its tasks and
//! stops polling. Every instance shares one HTTP connection pool; each held poll holds one
//! connection, so N instances need N connections (and file descriptors) on both sides.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_agent_protocol::{ContainerHealth, POLL_PATH, PollRequest, REPORT_PATH, TaskReport};
use berth_model::lifecycle::{DesiredTaskStatus, InstanceStatus, TaskStatus};
use berth_wire::ecs::{
    Attribute, ContainerStateChange, HealthStatus, NetworkBinding, Resource,
    SubmitTaskStateChangeRequest, TransportProtocol, VersionInfo,
};
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};

use crate::api::{Api, ApiError};

/// The instance types the fleet mixes: (name, vCPUs, GiB of memory).
pub const INSTANCE_TYPES: [(&str, i64, i64); 3] =
    [("m5.large", 2, 8), ("m5.xlarge", 4, 16), ("c5.2xlarge", 8, 16)];
use berth_agent_protocol::RESERVED_MEMORY_MIB;
/// The Docker Engine API version the simulated instances claim.
const DOCKER_API_MINOR: u32 = 44;

/// How a fleet is set up.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub cluster: String,
    pub instances: usize,
    pub region: String,
    /// Number of availability zones (`<region>a`, `<region>b`, ...).
    pub zones: usize,
    /// RegisterContainerInstance calls in flight at once.
    pub register_concurrency: usize,
    /// How long each poll asks the server to hold it (the real agent: 20 s).
    pub poll_wait_seconds: u32,
    /// Deregister (force) every instance when the fleet stops.
    pub deregister: bool,
    /// Distinguishes this fleet's EC2 instance ids from another run's.
    pub run_id: String,
}

impl FleetConfig {
    /// A fleet of `instances` in `cluster`, with the real agent's timings.
    pub fn new(cluster: &str, instances: usize) -> Self {
        Self {
            cluster: cluster.to_string(),
            instances,
            region: "us-east-1".into(),
            zones: 3,
            register_concurrency: 32,
            poll_wait_seconds: 20,
            deregister: false,
            run_id: format!("{:08x}", std::process::id() ^ (now() as u32)),
        }
    }
}

/// What the fleet has done so far; read while it runs.
#[derive(Default)]
pub struct FleetStats {
    pub registered: AtomicU64,
    pub register_failed: AtomicU64,
    /// Instances whose poll loop runs.
    pub polling: AtomicU64,
    /// Tasks reported RUNNING (and acknowledged) and not yet STOPPED.
    pub running: AtomicU64,
    /// Tasks reported RUNNING, ever.
    pub started: AtomicU64,
    /// Tasks reported STOPPED, ever.
    pub stopped: AtomicU64,
    pub polls: AtomicU64,
    pub reports: AtomicU64,
    /// Failed calls (each retried).
    pub errors: AtomicU64,
    pub deregistered: AtomicU64,
    /// Running tasks by task definition ARN.
    running_by_td: Mutex<HashMap<String, u64>>,
    last_error: Mutex<Option<String>>,
}

impl FleetStats {
    fn error(&self, what: &str, e: &ApiError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("stats lock") = Some(format!("{what}: {e}"));
    }

    fn td_delta(&self, td: &str, up: bool) {
        let mut m = self.running_by_td.lock().expect("stats lock");
        let n = m.entry(td.to_string()).or_default();
        if up {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(td);
            }
        }
    }

    /// Running tasks by task definition ARN.
    pub fn running_by_task_definition(&self) -> HashMap<String, u64> {
        self.running_by_td.lock().expect("stats lock").clone()
    }

    /// The most recent failure, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("stats lock").clone()
    }

    /// One progress line.
    pub fn line(&self, total: usize) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "fleet: {}/{} instances registered, {} polling, {} tasks running (started {}, stopped {}), {} polls, {} reports, {} errors",
            g(&self.registered),
            total,
            g(&self.polling),
            g(&self.running),
            g(&self.started),
            g(&self.stopped),
            g(&self.polls),
            g(&self.reports),
            g(&self.errors),
        )
    }

    /// Everything as JSON (the `--status-file`).
    pub fn json(&self, total: usize, elapsed: Duration) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "instances": total,
            "registered": g(&self.registered),
            "registerFailed": g(&self.register_failed),
            "polling": g(&self.polling),
            "running": g(&self.running),
            "started": g(&self.started),
            "stopped": g(&self.stopped),
            "polls": g(&self.polls),
            "reports": g(&self.reports),
            "errors": g(&self.errors),
            "deregistered": g(&self.deregistered),
            "runningByTaskDefinition": self.running_by_task_definition(),
            "lastError": self.last_error(),
            "elapsedSeconds": elapsed.as_secs_f64(),
        })
    }
}

fn now() -> f64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0
}

/// What the simulated instance `index` is: (instance type, vCPUs, GiB, availability zone).
/// Zones rotate fastest, so every zone gets every type.
pub fn instance_shape(cfg: &FleetConfig, index: usize) -> (&'static str, i64, i64, String) {
    let zones = cfg.zones.max(1);
    let zone = format!("{}{}", cfg.region, (b'a' + (index % zones) as u8) as char);
    let (ty, cpus, gib) = INSTANCE_TYPES[(index / zones) % INSTANCE_TYPES.len()];
    (ty, cpus, gib, zone)
}

/// The attributes `berth agent` registers with (crates/agent `attributes`), for a simulated
/// Linux x86_64 host with Docker API 1.44.
pub fn attributes(instance_type: &str, zone: &str) -> Vec<Attribute> {
    let attr = |n: &str, v: Option<&str>| Attribute {
        name: Some(n.to_string()),
        value: v.map(str::to_string),
        ..Default::default()
    };
    let mut out = vec![
        attr("ecs.os-type", Some("linux")),
        attr("ecs.os-family", Some("LINUX")),
        attr("ecs.cpu-architecture", Some("x86_64")),
        attr("ecs.instance-type", Some(instance_type)),
        attr("ecs.availability-zone", Some(zone)),
        attr("ecs.ami-id", Some("berth-local")),
        attr("ecs.capability.docker-plugin.local", None),
        attr("ecs.capability.container-health-check", None),
        attr("ecs.capability.container-ordering", None),
        attr("ecs.capability.task-cpu-mem-limit", None),
        attr("ecs.capability.full-sync", None),
        attr("com.amazonaws.ecs.capability.privileged-container", None),
        attr("com.amazonaws.ecs.capability.logging-driver.json-file", None),
        attr("com.amazonaws.ecs.capability.logging-driver.none", None),
        attr("com.amazonaws.ecs.capability.logging-driver.syslog", None),
        attr("com.amazonaws.ecs.capability.logging-driver.awslogs", None),
    ];
    for minor in 17..=DOCKER_API_MINOR {
        out.push(attr(&format!("com.amazonaws.ecs.capability.docker-remote-api.1.{minor}"), None));
    }
    out
}

/// The resources `berth agent` registers with (crates/agent `resources`): CPU = vCPUs x 1024,
/// MEMORY = the instance's memory less the agent's reserve, ECS's reserved ports.
pub fn resources(cpus: i64, gib: i64) -> Vec<Resource> {
    berth_agent_protocol::registered_resources(cpus * 1024, gib * 1024 - RESERVED_MEMORY_MIB, &[])
}

// ---- the poll answer, decoded lightly -------------------------------------------------------
//
// `berth_agent_protocol::PollResponse` with only what the simulator acts on: thousands of
// instances decode answers that carry every task's full task definition, on the machine that
// also runs the server. (A test decodes a real `PollResponse` with these.)

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollAnswer {
    version: u64,
    instance_status: InstanceStatus,
    #[serde(default)]
    tasks: Option<Vec<PolledTask>>,
    #[serde(default)]
    epoch: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolledTask {
    task_arn: String,
    desired_status: DesiredTaskStatus,
    #[serde(default)]
    last_status: Option<TaskStatus>,
    task_definition: PolledTaskDefinition,
    #[serde(default)]
    stopped_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolledTaskDefinition {
    #[serde(default)]
    task_definition_arn: Option<String>,
    #[serde(default)]
    container_definitions: Option<Vec<PolledContainer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolledContainer {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    port_mappings: Option<Vec<PolledPort>>,
    #[serde(default)]
    health_check: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolledPort {
    #[serde(default)]
    container_port: Option<i32>,
    #[serde(default)]
    host_port: Option<i32>,
    #[serde(default)]
    protocol: Option<String>,
}

/// What this simulated agent has reported of a task (and acknowledged).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reported {
    Nothing,
    Running,
    Stopped,
}

struct LocalTask {
    task_definition_arn: String,
    reported: Reported,
    /// The containers' network bindings, fixed when the task "started".
    bindings: Vec<Vec<NetworkBinding>>,
}

/// A 64-hex-digit id (a Docker container id's shape), from `seed`.
fn hex64(seed: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::with_capacity(64);
    for i in 0..4u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (seed, i).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// One simulated container instance.
struct Instance {
    api: Api,
    cfg: FleetConfig,
    arn: String,
    epoch: u64,
    /// The agent's report sequence number: grows with every report (`berth agent`: per
    /// process, from 1).
    seq: u64,
    tasks: HashMap<String, LocalTask>,
    next_port: u16,
}

impl Instance {
    fn bindings(&mut self, c: &PolledContainer) -> Vec<NetworkBinding> {
        c.port_mappings
            .iter()
            .flatten()
            .map(|p| {
                let host = match p.host_port {
                    Some(h) if h > 0 => h,
                    _ => {
                        // Docker's ephemeral range, as a dynamic host port comes out.
                        self.next_port = if self.next_port < 32768 || self.next_port >= 60999 {
                            32768
                        } else {
                            self.next_port + 1
                        };
                        i32::from(self.next_port)
                    }
                };
                NetworkBinding {
                    bind_ip: Some("0.0.0.0".into()),
                    container_port: p.container_port,
                    host_port: Some(host),
                    protocol: Some(if p.protocol.as_deref() == Some("udp") {
                        TransportProtocol::Udp
                    } else {
                        TransportProtocol::Tcp
                    }),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// The report `berth agent`'s task actor publishes once every container runs (or, with
    /// `running == false`, once every container has stopped).
    fn report(&mut self, t: &PolledTask, running: bool) -> TaskReport {
        let ts = now();
        let containers = t.task_definition.container_definitions.as_deref().unwrap_or(&[]);
        if self.tasks.get(&t.task_arn).is_none_or(|l| l.bindings.is_empty()) {
            let b: Vec<_> = containers.iter().map(|c| self.bindings(c)).collect();
            if let Some(l) = self.tasks.get_mut(&t.task_arn) {
                l.bindings = b;
            }
        }
        let local = self.tasks.get(&t.task_arn);
        let ran = local.is_some_and(|l| l.reported == Reported::Running) || running;
        let status = if running { TaskStatus::Running } else { TaskStatus::Stopped };
        let changes = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let name = c.name.clone().unwrap_or_default();
                ContainerStateChange {
                    runtime_id: ran.then(|| hex64(&format!("{}/{name}", t.task_arn))),
                    image_digest: ran.then(|| {
                        format!("sha256:{}", hex64(c.image.as_deref().unwrap_or_default()))
                    }),
                    container_name: Some(name),
                    exit_code: (!running && ran).then_some(0),
                    network_bindings: Some(if ran {
                        local.and_then(|l| l.bindings.get(i).cloned()).unwrap_or_default()
                    } else {
                        vec![]
                    }),
                    reason: None,
                    status: Some(status.to_string()),
                }
            })
            .collect();
        let health = if running {
            containers
                .iter()
                .filter(|c| c.health_check.is_some())
                .map(|c| ContainerHealth {
                    container_name: c.name.clone().unwrap_or_default(),
                    health_status: HealthStatus::Healthy,
                })
                .collect()
        } else {
            vec![]
        };
        self.seq += 1;
        TaskReport {
            change: SubmitTaskStateChangeRequest {
                cluster: Some(self.cfg.cluster.clone()),
                task: Some(t.task_arn.clone()),
                status: Some(status.to_string()),
                reason: if running { None } else { t.stopped_reason.clone() },
                containers: Some(changes),
                pull_started_at: ran.then_some(ts),
                pull_stopped_at: ran.then_some(ts),
                execution_stopped_at: (!running).then_some(ts),
                ..Default::default()
            },
            container_instance_arn: self.arn.clone(),
            container_health: health,
            stop_code: None,
            started_at: running.then_some(ts),
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Sends one report; returns whether the server took it (or refused it for good).
    async fn send(&self, stats: &FleetStats, report: &TaskReport) -> bool {
        match self
            .api
            .agent::<_, serde_json::Value>(REPORT_PATH, report, Duration::from_secs(30))
            .await
        {
            Ok(_) => {
                stats.reports.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) if e.is_transient() => {
                stats.error("report", &e);
                false
            }
            Err(e) => {
                // Refused (e.g. the task is gone): the real agent drops it too.
                stats.error("report refused", &e);
                true
            }
        }
    }

    /// Acts on one poll answer; returns false if a report must be retried.
    async fn reconcile(&mut self, stats: &FleetStats, answer: PollAnswer) -> bool {
        self.epoch = answer.epoch;
        let inactive = answer.instance_status == InstanceStatus::Inactive;
        let tasks = answer.tasks.unwrap_or_default();
        let listed: HashSet<&str> = tasks.iter().map(|t| t.task_arn.as_str()).collect();
        // Tasks the server no longer lists are STOPPED there.
        self.tasks.retain(|arn, l| {
            let keep = listed.contains(arn.as_str());
            if !keep && l.reported == Reported::Running {
                stats.running.fetch_sub(1, Ordering::Relaxed);
                stats.td_delta(&l.task_definition_arn, false);
            }
            keep
        });
        let mut all_sent = true;
        for t in &tasks {
            let local = self.tasks.entry(t.task_arn.clone()).or_insert_with(|| LocalTask {
                task_definition_arn: t
                    .task_definition
                    .task_definition_arn
                    .clone()
                    .unwrap_or_default(),
                reported: Reported::Nothing,
                bindings: vec![],
            });
            let was = local.reported;
            let stop = inactive || t.desired_status == DesiredTaskStatus::Stopped;
            if stop && was != Reported::Stopped {
                let report = self.report(t, false);
                if self.send(stats, &report).await {
                    let l = self.tasks.get_mut(&t.task_arn).expect("local task");
                    l.reported = Reported::Stopped;
                    stats.stopped.fetch_add(1, Ordering::Relaxed);
                    if was == Reported::Running {
                        stats.running.fetch_sub(1, Ordering::Relaxed);
                        stats.td_delta(&l.task_definition_arn, false);
                    }
                } else {
                    all_sent = false;
                }
            } else if !stop && was == Reported::Nothing {
                if t.last_status == Some(TaskStatus::Running) {
                    // Already RUNNING on the server (reported before a retry): adopt it.
                    local.reported = Reported::Running;
                    stats.running.fetch_add(1, Ordering::Relaxed);
                    stats.td_delta(&local.task_definition_arn, true);
                    continue;
                }
                let report = self.report(t, true);
                if self.send(stats, &report).await {
                    let l = self.tasks.get_mut(&t.task_arn).expect("local task");
                    l.reported = Reported::Running;
                    stats.started.fetch_add(1, Ordering::Relaxed);
                    stats.running.fetch_add(1, Ordering::Relaxed);
                    stats.td_delta(&l.task_definition_arn, true);
                } else {
                    all_sent = false;
                }
            }
        }
        all_sent
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// Registers simulated instance `index`; retries transient failures until `stop`.
async fn register(
    api: &Api,
    cfg: &FleetConfig,
    index: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<String>, ApiError> {
    let (ty, cpus, gib, zone) = instance_shape(cfg, index);
    let ec2_id = format!("i-{}{:09x}", &cfg.run_id[..8.min(cfg.run_id.len())], index);
    let doc = serde_json::json!({
        "instanceId": ec2_id,
        "instanceType": ty,
        "availabilityZone": zone,
        "region": cfg.region,
    });
    let req = berth_wire::ecs::RegisterContainerInstanceRequest {
        cluster: Some(cfg.cluster.clone()),
        instance_identity_document: Some(doc.to_string()),
        total_resources: Some(resources(cpus, gib)),
        version_info: Some(VersionInfo {
            agent_version: Some(env!("CARGO_PKG_VERSION").into()),
            agent_hash: Some("berth-fleet".into()),
            docker_version: Some("DockerVersion: 27.0.0 (simulated)".into()),
        }),
        attributes: Some(attributes(ty, &zone)),
        ..Default::default()
    };
    let mut delay = Duration::from_millis(200);
    loop {
        let call = api.ecs_within::<_, serde_json::Value>(
            "RegisterContainerInstance",
            &req,
            Duration::from_secs(120),
        );
        let answer = tokio::select! {
            a = call => a,
            _ = stop.wait_for(|s| *s) => return Ok(None),
        };
        match answer {
            Ok(v) => {
                let arn = v["containerInstance"]["containerInstanceArn"]
                    .as_str()
                    .ok_or_else(|| ApiError::Decode("no containerInstanceArn".into()))?;
                return Ok(Some(arn.to_string()));
            }
            Err(e) if e.is_transient() => {
                if sleep_or_stop(delay, stop).await {
                    return Ok(None);
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs one simulated instance until `stop` (or until the server deregisters it).
async fn run_instance(
    api: Api,
    cfg: FleetConfig,
    index: usize,
    stats: std::sync::Arc<FleetStats>,
    registering: std::sync::Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let permit = tokio::select! {
        p = registering.acquire() => p,
        _ = stop.wait_for(|s| *s) => return,
    };
    let arn = match register(&api, &cfg, index, &mut stop).await {
        Ok(Some(arn)) => arn,
        Ok(None) => return,
        Err(e) => {
            stats.register_failed.fetch_add(1, Ordering::Relaxed);
            stats.error("RegisterContainerInstance", &e);
            return;
        }
    };
    drop(permit);
    stats.registered.fetch_add(1, Ordering::Relaxed);
    stats.polling.fetch_add(1, Ordering::Relaxed);
    let mut inst = Instance {
        api: api.clone(),
        cfg: cfg.clone(),
        arn,
        epoch: 0,
        seq: 0,
        tasks: HashMap::new(),
        next_port: 0,
    };
    let mut seen = 0u64;
    let mut delay = Duration::from_millis(200);
    let timeout = Duration::from_secs(u64::from(cfg.poll_wait_seconds) + 10);
    loop {
        let req = PollRequest {
            cluster: cfg.cluster.clone(),
            container_instance_arn: inst.arn.clone(),
            seen_version: seen,
            wait_seconds: cfg.poll_wait_seconds,
        };
        let answer = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = api.agent::<_, PollAnswer>(POLL_PATH, &req, timeout) => r,
        };
        stats.polls.fetch_add(1, Ordering::Relaxed);
        let answer = match answer {
            Ok(a) => {
                delay = Duration::from_millis(200);
                a
            }
            Err(e) => {
                stats.error("poll", &e);
                if sleep_or_stop(delay, &mut stop).await {
                    break;
                }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let inactive = answer.instance_status == InstanceStatus::Inactive;
        let version = answer.version;
        if inst.reconcile(&stats, answer).await {
            seen = version;
        } else {
            // A report did not go through: poll again at once (the answer is the complete
            // state, so the next pass sends what is missing), after a pause.
            seen = 0;
            if sleep_or_stop(delay, &mut stop).await {
                break;
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        if inactive && inst.tasks.values().all(|l| l.reported == Reported::Stopped) {
            break; // deregistered: the real agent stops too
        }
    }
    stats.polling.fetch_sub(1, Ordering::Relaxed);
    if cfg.deregister {
        let _permit = registering.acquire().await;
        let req = serde_json::json!({
            "cluster": cfg.cluster, "containerInstance": inst.arn, "force": true,
        });
        match api.ecs::<_, serde_json::Value>("DeregisterContainerInstance", &req).await {
            Ok(_) => {
                stats.deregistered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.error("DeregisterContainerInstance", &e),
        }
    }
}

/// Runs a fleet until `stop` turns true; returns when every instance has finished (and, with
/// [`FleetConfig::deregister`], deregistered).
pub async fn run(
    api: Api,
    cfg: FleetConfig,
    stats: std::sync::Arc<FleetStats>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let created: Result<serde_json::Value, _> =
        api.ecs("CreateCluster", &serde_json::json!({"clusterName": cfg.cluster})).await;
    created.map_err(|e| anyhow::anyhow!("CreateCluster {}: {e}", cfg.cluster))?;
    let registering = std::sync::Arc::new(Semaphore::new(cfg.register_concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..cfg.instances {
        set.spawn(run_instance(
            api.clone(),
            cfg.clone(),
            i,
            stats.clone(),
            registering.clone(),
            stop.clone(),
        ));
    }
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            anyhow::bail!("a simulated instance panicked: {e}");
        }
    }
    Ok(())
}

/// Writes `value` to `path` atomically (a reader never sees half a file).
pub fn write_status(path: &std::path::Path, value: &serde_json::Value) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(value).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// Prints progress every `every` and rewrites the status file every second until `stop`.
pub async fn report_progress(
    stats: std::sync::Arc<FleetStats>,
    total: usize,
    every: Duration,
    status_file: Option<std::path::PathBuf>,
    mut stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut announced = false;
    loop {
        let stopping = sleep_or_stop(Duration::from_millis(250), &mut stop).await;
        let registered = stats.registered.load(Ordering::Relaxed) as usize;
        let failed = stats.register_failed.load(Ordering::Relaxed) as usize;
        if !announced && registered + failed >= total {
            announced = true;
            println!(
                "fleet: all {registered} instances registered in {:.1} s ({failed} failed)",
                started.elapsed().as_secs_f64()
            );
        }
        if last_print.elapsed() >= every || stopping {
            last_print = Instant::now();
            println!("{}", stats.line(total));
        }
        if let Some(p) = &status_file
            && let Err(e) = write_status(p, &stats.json(total, started.elapsed()))
        {
            eprintln!("fleet: cannot write {}: {e}", p.display());
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_poll_answer_decodes_with_the_light_shapes() {
        let td: berth_wire::ecs::TaskDefinition = serde_json::from_value(serde_json::json!({
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
            "family": "web", "revision": 3,
            "containerDefinitions": [{
                "name": "web", "image": "berth-demo:latest", "memory": 64,
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
                "healthCheck": {"command": ["CMD", "/hello", "-check"], "interval": 5},
            }, {"name": "side", "image": "busybox", "memory": 16}],
        }))
        .unwrap();
        let real = berth_agent_protocol::PollResponse {
            version: 42,
            instance_status: InstanceStatus::Active,
            tasks: vec![berth_agent_protocol::DesiredTask {
                task_arn: "arn:aws:ecs:us-east-1:123456789012:task/c/abc".into(),
                desired_status: DesiredTaskStatus::Running,
                last_status: TaskStatus::Pending,
                task_definition: td,
                stopped_reason: Some("why".into()),
                created_at: 1.5,
                ..Default::default()
            }],
            heartbeat_seconds: 20,
            epoch: 7,
            ..Default::default()
        };
        let a: PollAnswer = serde_json::from_slice(&serde_json::to_vec(&real).unwrap()).unwrap();
        assert_eq!((a.version, a.epoch, a.instance_status), (42, 7, InstanceStatus::Active));
        let tasks = a.tasks.unwrap();
        let t = &tasks[0];
        assert_eq!(t.desired_status, DesiredTaskStatus::Running);
        assert_eq!(t.last_status, Some(TaskStatus::Pending));
        assert_eq!(t.stopped_reason.as_deref(), Some("why"));
        assert_eq!(
            t.task_definition.task_definition_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web:3")
        );
        let cs = t.task_definition.container_definitions.as_ref().unwrap();
        assert_eq!(cs.len(), 2);
        assert!(cs[0].health_check.is_some() && cs[1].health_check.is_none());
        assert_eq!(cs[0].port_mappings.as_ref().unwrap()[0].container_port, Some(8080));
    }

    #[test]
    fn instances_mix_types_in_every_zone_with_matching_resources() {
        let cfg = FleetConfig::new("c", 9);
        let shapes: Vec<_> = (0..9).map(|i| instance_shape(&cfg, i)).collect();
        let zones: HashSet<_> = shapes.iter().map(|s| s.3.clone()).collect();
        assert_eq!(zones.len(), 3);
        for z in &zones {
            let types: HashSet<_> = shapes.iter().filter(|s| &s.3 == z).map(|s| s.0).collect();
            assert_eq!(types.len(), 3, "zone {z} has {types:?}");
        }
        let r = resources(8, 16);
        assert_eq!(r[0].integer_value, Some(8192));
        assert_eq!(r[1].integer_value, Some(16 * 1024 - 256));
        let a = attributes("c5.2xlarge", "us-east-1b");
        let get = |n: &str| a.iter().find(|x| x.name.as_deref() == Some(n)).unwrap().value.clone();
        assert_eq!(get("ecs.instance-type").as_deref(), Some("c5.2xlarge"));
        assert_eq!(get("ecs.availability-zone").as_deref(), Some("us-east-1b"));
    }

    #[test]
    fn reports_carry_the_epoch_and_a_growing_sequence() {
        let api = Api::new(
            "http://127.0.0.1:1",
            crate::api::load_credentials(None).unwrap(),
            "us-east-1",
        )
        .unwrap();
        let mut inst = Instance {
            api,
            cfg: FleetConfig::new("c", 1),
            arn: "arn:ci".into(),
            epoch: 3,
            seq: 0,
            tasks: HashMap::new(),
            next_port: 0,
        };
        let t: PolledTask = serde_json::from_value(serde_json::json!({
            "taskArn": "arn:t", "desiredStatus": "RUNNING", "lastStatus": "PENDING",
            "taskDefinition": {"containerDefinitions": [{"name": "web",
                "portMappings": [{"containerPort": 80}]}]},
        }))
        .unwrap();
        inst.tasks.insert(
            "arn:t".into(),
            LocalTask {
                task_definition_arn: "td".into(),
                reported: Reported::Nothing,
                bindings: vec![],
            },
        );
        let r1 = inst.report(&t, true);
        inst.tasks.get_mut("arn:t").unwrap().reported = Reported::Running;
        let r2 = inst.report(&t, false);
        assert_eq!((r1.epoch, r1.seq, r2.seq), (3, 1, 2));
        assert_eq!(r1.change.status.as_deref(), Some("RUNNING"));
        assert_eq!(r2.change.status.as_deref(), Some("STOPPED"));
        let b1 = r1.change.containers.as_ref().unwrap()[0].network_bindings.clone().unwrap();
        let b2 = r2.change.containers.as_ref().unwrap()[0].network_bindings.clone().unwrap();
        assert_eq!(b1, b2, "a stopped task reports the bindings it ran with");
        assert!(b1[0].host_port.unwrap() >= 32768);
        assert_eq!(r2.change.containers.as_ref().unwrap()[0].exit_code, Some(0));
    }
}
