//! The Berth agent: registers this host as an ECS container instance and runs the tasks the
//! control plane places on it, through a [`Runtime`] (Docker in production).
//!
//! ```text
//!  register (RegisterContainerInstance, same ARN across restarts via the state file)
//!     └─ loop: poll (long-held; complete desired state) ─▶ one TaskActor per task (the only
//!              writer of that task's state) ─▶ reports (latest state wins, retried) ─▶ server
//! ```
//! Level-triggered throughout: each poll answer is the complete desired state, each report
//! the complete current state of a task, so a lost message or a restart of either side leaves
//! nothing wrong. Containers of this instance that belong to no desired task are stopped and
//! removed; containers of desired tasks are adopted, never started twice.
//!
//! The control plane is reached through [`control::ControlPlane`] (the HTTP [`Client`] in
//! production), the engine through [`Runtime`]; the runtime's container events
//! ([`events`]) tell each actor when to re-read its containers, so nothing is polled while
//! nothing changes.
#![forbid(unsafe_code)]

pub mod client;
pub mod control;
pub mod events;
pub mod metadata;
pub mod spec;
pub mod state;
pub mod task;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_agent_protocol::{DesiredTask, PollRequest, TaskReport};
use berth_model::lifecycle::{DesiredTaskStatus, InstanceStatus};
use berth_runtime::Runtime;
use berth_wire::ecs::{
    Attribute, RegisterContainerInstanceRequest, RegisterContainerInstanceResponse, Resource,
    VersionInfo,
};
use tokio::sync::{mpsc, watch};

use crate::client::{Client, ClientError};
use crate::control::ControlPlane;
use crate::spec::{LABEL_INSTANCE, LABEL_TASK_ARN};
use crate::task::{TaskActor, TaskContext};

use berth_agent_protocol::{RESERVED_MEMORY_MIB, RESERVED_PORTS};
/// How long the agent asks the server to hold a poll.
const POLL_WAIT_SECONDS: u32 = 20;

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The control plane, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub cluster: String,
    /// Holds the agent's state file.
    pub data_dir: PathBuf,
    pub region: String,
    pub instance_type: String,
    pub availability_zone: String,
    /// Extra `ecs.*`/custom attributes, `KEY=VALUE` parsed.
    pub attributes: Vec<(String, String)>,
    /// CPU units to register instead of cores x 1024.
    pub cpu: Option<i64>,
    /// Memory MiB to register instead of the host's less a reserve.
    pub memory_mib: Option<i64>,
    /// Credentials to sign with; `None` resolves the standard chain (environment, then the
    /// shared credentials file), as the ECS agent uses its instance's role.
    pub credentials: Option<berth_sigv4::Credentials>,
}

/// A registered agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    control: Arc<dyn ControlPlane>,
    runtime: Arc<dyn Runtime>,
    instance_arn: String,
    /// The task metadata endpoint's address and registry, when it could be served.
    metadata: Option<(std::net::SocketAddr, metadata::Registry)>,
}

/// The attributes an instance registers with: what ECS names, for what Berth supports.
fn attributes(config: &AgentConfig, info: &berth_runtime::RuntimeInfo) -> Vec<Attribute> {
    let attr = |n: &str, v: Option<&str>| Attribute {
        name: Some(n.to_string()),
        value: v.map(str::to_string),
        ..Default::default()
    };
    let mut out = vec![
        attr("ecs.os-type", Some(&info.os)),
        attr("ecs.os-family", Some("LINUX")),
        attr("ecs.cpu-architecture", Some(&info.arch)),
        attr("ecs.instance-type", Some(&config.instance_type)),
        attr("ecs.availability-zone", Some(&config.availability_zone)),
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
    // Docker Remote API versions the engine speaks, as the ECS agent advertises them.
    let api_minor: u32 =
        info.api_version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(24);
    for minor in 17..=api_minor.min(44) {
        out.push(attr(&format!("com.amazonaws.ecs.capability.docker-remote-api.1.{minor}"), None));
    }
    for (k, v) in &config.attributes {
        out.retain(|a| a.name.as_deref() != Some(k));
        out.push(attr(k, Some(v)));
    }
    out
}

fn resources(
    config: &AgentConfig,
    info: &berth_runtime::RuntimeInfo,
    own_ports: &[u16],
) -> Vec<Resource> {
    let int = |n: &str, v: i64| Resource {
        name: Some(n.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(i32::try_from(v).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    let set = |n: &str, v: Vec<String>| Resource {
        name: Some(n.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(v),
        ..Default::default()
    };
    let cpu = config.cpu.unwrap_or(i64::from(info.cpus) * 1024);
    let memory = config
        .memory_mib
        .unwrap_or((info.memory_bytes / (1024 * 1024)) as i64 - RESERVED_MEMORY_MIB)
        .max(1);
    vec![
        int("CPU", cpu),
        int("MEMORY", memory),
        set("PORTS", RESERVED_PORTS.iter().chain(own_ports).map(u16::to_string).collect()),
        set("PORTS_UDP", vec![]),
    ]
}

impl Agent {
    /// Registers (or re-registers, from the state file) this host as a container instance
    /// with the control plane at `config.server`.
    pub async fn register(config: AgentConfig, runtime: Arc<dyn Runtime>) -> anyhow::Result<Self> {
        let creds = match config.credentials.clone() {
            Some(c) => c,
            None => berth_sigv4::credentials::resolve(|k| std::env::var(k).ok())?,
        };
        let client = Client::new(&config.server, creds, &config.region)?;
        Self::register_with(config, runtime, Arc::new(client)).await
    }

    /// [`Agent::register`] through a given control plane (`config.server` and
    /// `config.credentials` are not used).
    pub async fn register_with(
        config: AgentConfig,
        runtime: Arc<dyn Runtime>,
        control: Arc<dyn ControlPlane>,
    ) -> anyhow::Result<Self> {
        let info = runtime
            .info()
            .await
            .context("cannot reach the container runtime (is Docker running?)")?;
        // The task metadata endpoint, on the host's address on Docker's bridge (reachable from
        // the task's containers, not from other hosts). Its port is registered as taken.
        let bind_ip: std::net::IpAddr = info
            .bridge_gateway
            .as_deref()
            .and_then(|g| g.parse().ok())
            .unwrap_or([127, 0, 0, 1].into());
        let metadata = match metadata::serve((bind_ip, 0).into(), runtime.clone()).await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, %bind_ip, "task metadata endpoint unavailable");
                None
            }
        };
        let own_ports: Vec<u16> = metadata.iter().map(|(a, _)| a.port()).collect();
        let mut st = state::load(&config.data_dir)?.unwrap_or_default();
        if st.cluster != config.cluster {
            // Another cluster (or first start): a new identity.
            st = state::AgentState {
                cluster: config.cluster.clone(),
                ec2_instance_id: format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]),
                container_instance_arn: None,
            };
        }
        let doc = serde_json::json!({
            "instanceId": st.ec2_instance_id,
            "instanceType": config.instance_type,
            "availabilityZone": config.availability_zone,
            "region": config.region,
        });
        let mut req = RegisterContainerInstanceRequest {
            cluster: Some(config.cluster.clone()),
            instance_identity_document: Some(doc.to_string()),
            total_resources: Some(resources(&config, &info, &own_ports)),
            version_info: Some(VersionInfo {
                agent_version: Some(env!("CARGO_PKG_VERSION").into()),
                agent_hash: Some("berth".into()),
                docker_version: Some(format!("DockerVersion: {}", info.engine_version)),
            }),
            container_instance_arn: st.container_instance_arn.clone(),
            attributes: Some(attributes(&config, &info)),
            ..Default::default()
        };
        let mut delay = Duration::from_millis(200);
        let resp: RegisterContainerInstanceResponse = loop {
            match control.register(&req).await {
                Ok(r) => break r,
                Err(ClientError::Aws { code, .. })
                    if code == "ClientException" && req.container_instance_arn.is_some() =>
                {
                    tracing::warn!(
                        "the server no longer knows this instance; registering as a new one"
                    );
                    req.container_instance_arn = None;
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "cannot register yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e).context("RegisterContainerInstance failed"),
            }
        };
        let arn = resp
            .container_instance
            .and_then(|c| c.container_instance_arn)
            .context("RegisterContainerInstance returned no ARN")?;
        st.container_instance_arn = Some(arn.clone());
        state::save(&config.data_dir, &st)?;
        tracing::info!(instance = %arn, cluster = %config.cluster, "registered");
        Ok(Self { config, control, runtime, instance_arn: arn, metadata })
    }

    /// This instance's ARN.
    pub fn instance_arn(&self) -> &str {
        &self.instance_arn
    }

    /// Runs until `shutdown` resolves. Running tasks are left running: a restarted agent
    /// adopts them.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let (report_tx, report_rx) = mpsc::unbounded_channel::<TaskReport>();
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reporter =
            tokio::spawn(deliver_reports(self.control.clone(), report_rx, epoch.clone()));
        let router = events::Router::new();
        let follower = tokio::spawn(events::follow(
            self.runtime.clone(),
            vec![(LABEL_INSTANCE.to_string(), self.instance_arn.clone())],
            router.clone(),
        ));
        let ctx = TaskContext {
            runtime: self.runtime.clone(),
            cluster: self.config.cluster.clone(),
            instance_arn: self.instance_arn.clone(),
            reports: report_tx,
            metadata_base: self.metadata.as_ref().map(|(addr, _)| format!("http://{addr}/v4")),
            metadata: self.metadata.as_ref().map(|(_, r)| r.clone()),
            availability_zone: self.config.availability_zone.clone(),
            events: router,
        };
        let mut actors: HashMap<String, (watch::Sender<DesiredTask>, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        let mut seen = 0u64;
        let mut delay = Duration::from_millis(200);
        tokio::pin!(shutdown);
        loop {
            let req = PollRequest {
                cluster: self.config.cluster.clone(),
                container_instance_arn: self.instance_arn.clone(),
                seen_version: seen,
                wait_seconds: POLL_WAIT_SECONDS,
            };
            let poll = self.control.poll(&req);
            let resp = tokio::select! {
                _ = &mut shutdown => break,
                r = poll => r,
            };
            let resp = match resp {
                Ok(r) => {
                    delay = Duration::from_millis(200);
                    r
                }
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed; retrying");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            seen = resp.version;
            epoch.store(resp.epoch, std::sync::atomic::Ordering::Release);
            actors.retain(|_, (_, handle)| !handle.is_finished());
            let mut desired: HashMap<String, DesiredTask> =
                resp.tasks.into_iter().map(|t| (t.task_arn.clone(), t)).collect();
            if resp.instance_status == InstanceStatus::Inactive {
                // Deregistered: everything here must stop.
                for t in desired.values_mut() {
                    t.desired_status = DesiredTaskStatus::Stopped;
                }
                for (tx, _) in actors.values() {
                    tx.send_modify(|d| d.desired_status = DesiredTaskStatus::Stopped);
                }
            }
            for (arn, t) in &desired {
                match actors.get(arn) {
                    Some((tx, _)) => {
                        tx.send_if_modified(|d| {
                            let changed = d.desired_status != t.desired_status
                                || d.stopped_reason != t.stopped_reason;
                            *d = t.clone();
                            changed
                        });
                    }
                    None => {
                        let (tx, rx) = watch::channel(t.clone());
                        let handle = tokio::spawn(TaskActor::new(ctx.clone(), rx).run());
                        actors.insert(arn.clone(), (tx, handle));
                    }
                }
            }
            self.remove_orphans(&desired, &actors).await;
            if resp.instance_status == InstanceStatus::Inactive && actors.is_empty() {
                tracing::warn!("this container instance was deregistered; the agent stops");
                break;
            }
        }
        drop(ctx);
        follower.abort();
        // Let in-flight reports go out (bounded), then stop.
        let _ = tokio::time::timeout(Duration::from_secs(5), reporter).await;
        Ok(())
    }

    /// Stops and removes containers of this instance that belong to no task the control plane
    /// wants here and that no actor owns (e.g. a task stopped while the agent was down).
    async fn remove_orphans(
        &self,
        desired: &HashMap<String, DesiredTask>,
        actors: &HashMap<String, (watch::Sender<DesiredTask>, tokio::task::JoinHandle<()>)>,
    ) {
        let labels = [(LABEL_INSTANCE.to_string(), self.instance_arn.clone())];
        let Ok(found) = self.runtime.list(&labels).await else { return };
        for c in found {
            let Some(task) = c.labels.get(LABEL_TASK_ARN) else { continue };
            if desired.contains_key(task) || actors.contains_key(task) {
                continue;
            }
            tracing::info!(container = %c.name, task = %task, "removing a container of a task this instance no longer runs");
            if c.state.is_running() {
                let _ = self.runtime.stop(&c.id, Duration::from_secs(10)).await;
            }
            let _ = self.runtime.remove(&c.id).await;
        }
    }
}

/// Delivers reports: per task, the newest state, retried until acknowledged. Each report is
/// stamped, as it arrives, with the instance's registration epoch and a sequence number that
/// grows with every report of this process, so that the server can tell a delayed retry from a
/// newer state. Nothing is sent before the first poll has told the epoch.
async fn deliver_reports(
    control: Arc<dyn ControlPlane>,
    mut rx: mpsc::UnboundedReceiver<TaskReport>,
    epoch: Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    let mut pending: HashMap<String, TaskReport> = HashMap::new();
    let mut delay = Duration::from_millis(100);
    let mut seq: u64 = 0;
    let mut stamp = |mut r: TaskReport| {
        seq += 1;
        r.seq = seq;
        r
    };
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(r) => {
                    pending.insert(r.change.task.clone().unwrap_or_default(), stamp(r));
                }
                None => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            pending.insert(r.change.task.clone().unwrap_or_default(), stamp(r));
        }
        let current = epoch.load(Ordering::Acquire);
        if current == 0 {
            // Registered but not polled yet: wait for the epoch.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for r in pending.values_mut() {
            if r.epoch == 0 {
                r.epoch = current;
            }
        }
        let mut failed = false;
        let tasks: Vec<String> = pending.keys().cloned().collect();
        for t in tasks {
            let Some(report) = pending.get(&t).cloned() else { continue };
            match control.report(&report).await {
                Ok(_) => {
                    // Only forget it if no newer report arrived meanwhile.
                    if pending.get(&t) == Some(&report) {
                        pending.remove(&t);
                    }
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(task = %t, error = %e, "report not delivered; will retry");
                    failed = true;
                }
                Err(e) => {
                    tracing::warn!(task = %t, error = %e, "report refused");
                    pending.remove(&t);
                }
            }
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                r = rx.recv() => match r {
                    Some(r) => { pending.insert(r.change.task.clone().unwrap_or_default(), stamp(r)); }
                    None if pending.is_empty() => return,
                    None => {}
                },
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        } else {
            delay = Duration::from_millis(100);
        }
    }
}
