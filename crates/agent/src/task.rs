//! The per-task actor: the ONE writer of a task's state on this host.
//!
//! It receives the task's desired state (latest wins, through a `watch` channel), walks the
//! lifecycle PENDING → RUNNING → STOPPING → STOPPED on the runtime, and publishes its full
//! current state after every change to its reporter, which delivers the newest state to the
//! control plane and retries until it is acknowledged (level-triggered: an intermediate state
//! may be skipped, the latest never is).
//!
//! Start-up follows `dependsOn` (START, COMPLETE, SUCCESS, HEALTHY); shutdown runs in reverse
//! order with each container's `stopTimeout` (SIGTERM, then SIGKILL). An essential container
//! that exits stops the task (`EssentialContainerExited`); a failed pull stops it with
//! `CannotPullContainerError` in the reason (`TaskFailedToStart`). A restarted agent adopts
//! the task's containers by label instead of starting new ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_agent_protocol::{ContainerHealth, DesiredTask, TaskReport};
use berth_model::lifecycle::TaskStatus;
use berth_runtime::{ContainerState, Protocol, Runtime, RuntimeError};
use berth_wire::ecs::{
    ContainerCondition, ContainerDefinition, ContainerStateChange, HealthStatus, NetworkBinding,
    SubmitTaskStateChangeRequest, TaskDefinition, TaskStopCode, TransportProtocol,
};
use tokio::sync::{mpsc, watch};

use crate::spec::{self, LABEL_INSTANCE, LABEL_TASK_ARN, TaskIdentity};

/// Default grace between SIGTERM and SIGKILL (ECS_CONTAINER_STOP_TIMEOUT's default).
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a container may wait for its dependencies (ECS's default startTimeout).
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);
/// How often running containers' health and liveness are re-read.
const SUPERVISE_TICK: Duration = Duration::from_millis(500);
/// How often a container whose health is already known (HEALTHY or UNHEALTHY) is re-read:
/// Docker changes it at most once per health-check interval (5 s at least in ECS), and a
/// container still starting up (UNKNOWN) stays on [`SUPERVISE_TICK`] so that deployments see
/// it turn healthy at once.
const SETTLED_HEALTH_TICK: Duration = Duration::from_secs(2);

/// The agent's view of one container.
#[derive(Clone, Debug)]
struct Run {
    def: ContainerDefinition,
    name: String,
    id: Option<String>,
    /// PENDING, RUNNING or STOPPED, as ECS reports containers.
    status: &'static str,
    exit_code: Option<i64>,
    reason: Option<String>,
    health: Option<HealthStatus>,
    bindings: Vec<NetworkBinding>,
    image_digest: Option<String>,
    docker_name: String,
    ip: Option<String>,
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl Run {
    fn essential(&self) -> bool {
        self.def.essential.unwrap_or(true)
    }
}

/// Everything an actor needs from the agent.
#[derive(Clone)]
pub struct TaskContext {
    pub runtime: Arc<dyn Runtime>,
    pub cluster: String,
    pub instance_arn: String,
    /// Where reports go; the actor publishes, a reporter task delivers.
    pub reports: mpsc::UnboundedSender<TaskReport>,
    /// Base of the task metadata endpoint (`http://host:port/v4`), if served.
    pub metadata_base: Option<String>,
    /// Where the endpoint reads task metadata from.
    pub metadata: Option<crate::metadata::Registry>,
    /// The instance's availability zone (for the metadata endpoint).
    pub availability_zone: String,
}

/// One task being run.
pub struct TaskActor {
    ctx: TaskContext,
    arn: String,
    task_id: String,
    td: TaskDefinition,
    desired: watch::Receiver<DesiredTask>,
    runs: Vec<Run>,
    known: TaskStatus,
    stop_code: Option<TaskStopCode>,
    stopped_reason: Option<String>,
    pull_started_at: Option<f64>,
    pull_stopped_at: Option<f64>,
    started_at: Option<f64>,
    metadata_token: String,
    /// The agent stopped sending desired state (it is shutting down): the actor leaves its
    /// containers as they are for the next agent to adopt, and reports nothing more.
    detached: bool,
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
}

fn rfc3339_epoch(secs: Option<f64>) -> Option<String> {
    secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp_nanos((s * 1e9) as i128).ok())
        .and_then(|t| rfc3339(Some(t)))
}

fn now() -> f64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0
}

fn health(h: Option<berth_runtime::HealthStatus>) -> Option<HealthStatus> {
    h.map(|h| match h {
        berth_runtime::HealthStatus::Healthy => HealthStatus::Healthy,
        berth_runtime::HealthStatus::Unhealthy => HealthStatus::Unhealthy,
        berth_runtime::HealthStatus::Starting => HealthStatus::Unknown,
    })
}

impl TaskActor {
    /// An actor for `desired`, which it will keep receiving updates of.
    pub fn new(ctx: TaskContext, desired: watch::Receiver<DesiredTask>) -> Self {
        let d = desired.borrow().clone();
        let task_id = d.task_arn.rsplit('/').next().unwrap_or_default().to_string();
        let runs = d
            .task_definition
            .container_definitions
            .iter()
            .flatten()
            .map(|def| {
                let name = def.name.clone().unwrap_or_default();
                Run {
                    docker_name: spec::container_name(&d.task_definition, &name, &task_id),
                    ip: None,
                    created_at: None,
                    started_at: None,
                    finished_at: None,
                    name,
                    def: def.clone(),
                    id: None,
                    status: "PENDING",
                    exit_code: None,
                    reason: None,
                    health: def.health_check.as_ref().map(|_| HealthStatus::Unknown),
                    bindings: vec![],
                    image_digest: None,
                }
            })
            .collect();
        let known = d.last_status.parse().unwrap_or(TaskStatus::Pending);
        Self {
            ctx,
            arn: d.task_arn.clone(),
            task_id,
            td: d.task_definition.clone(),
            desired,
            runs,
            known: if known == TaskStatus::Stopped {
                TaskStatus::Stopped
            } else {
                TaskStatus::Pending
            },
            stop_code: None,
            stopped_reason: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            metadata_token: uuid::Uuid::new_v4().simple().to_string(),
            detached: false,
        }
    }

    fn identity(&self) -> TaskIdentity<'_> {
        TaskIdentity {
            cluster: &self.ctx.cluster,
            instance_arn: &self.ctx.instance_arn,
            task_arn: &self.arn,
            task_id: &self.task_id,
        }
    }

    fn wants_stop(&self) -> bool {
        self.desired.borrow().desired_status == "STOPPED"
    }

    /// Publishes the task's full current state.
    fn publish(&self) {
        let containers = self
            .runs
            .iter()
            .map(|r| ContainerStateChange {
                container_name: Some(r.name.clone()),
                image_digest: r.image_digest.clone(),
                runtime_id: r.id.clone(),
                exit_code: r.exit_code.and_then(|c| i32::try_from(c).ok()),
                network_bindings: Some(r.bindings.clone()),
                reason: r.reason.clone(),
                status: Some(r.status.to_string()),
            })
            .collect();
        let report = TaskReport {
            change: SubmitTaskStateChangeRequest {
                cluster: Some(self.ctx.cluster.clone()),
                task: Some(self.arn.clone()),
                status: Some(self.known.as_str().to_string()),
                reason: self.stopped_reason.clone(),
                containers: Some(containers),
                pull_started_at: self.pull_started_at,
                pull_stopped_at: self.pull_stopped_at,
                execution_stopped_at: (self.known == TaskStatus::Stopped).then(now),
                ..Default::default()
            },
            container_instance_arn: self.ctx.instance_arn.clone(),
            container_health: self
                .runs
                .iter()
                .filter_map(|r| {
                    Some(ContainerHealth {
                        container_name: r.name.clone(),
                        health_status: r.health?,
                    })
                })
                .collect(),
            stop_code: self.stop_code,
            started_at: self.started_at,
            // Stamped by the reporter.
            epoch: 0,
            seq: 0,
        };
        let _ = self.ctx.reports.send(report);
        self.publish_metadata();
    }

    /// Updates this task's entry of the metadata endpoint (this actor is its only writer).
    fn publish_metadata(&self) {
        let Some(registry) = &self.ctx.metadata else { return };
        if self.known == TaskStatus::Stopped {
            registry.remove(&self.metadata_token);
            return;
        }
        let desired = self.desired.borrow();
        let network_mode = self.td.network_mode.map_or("bridge", |m| m.as_str()).to_string();
        let meta = crate::metadata::TaskMeta {
            cluster: self.ctx.cluster.clone(),
            task_arn: self.arn.clone(),
            family: self.td.family.clone().unwrap_or_default(),
            revision: self.td.revision.unwrap_or(0).to_string(),
            desired_status: desired.desired_status.clone(),
            known_status: self.known.as_str().to_string(),
            availability_zone: Some(self.ctx.availability_zone.clone()),
            pull_started_at: rfc3339_epoch(self.pull_started_at),
            pull_stopped_at: rfc3339_epoch(self.pull_stopped_at),
            cpu: self.td.cpu.clone(),
            memory: self.td.memory.clone(),
            containers: self
                .runs
                .iter()
                .map(|r| crate::metadata::ContainerMeta {
                    name: r.name.clone(),
                    docker_id: r.id.clone(),
                    docker_name: r.docker_name.clone(),
                    image: r.def.image.clone().unwrap_or_default(),
                    image_id: r.image_digest.clone(),
                    labels: r
                        .def
                        .docker_labels
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                        .collect(),
                    desired_status: desired.desired_status.clone(),
                    known_status: r.status.to_string(),
                    cpu: i64::from(r.def.cpu.unwrap_or(0)),
                    memory: r.def.memory.map(i64::from),
                    created_at: r.created_at.clone(),
                    started_at: r.started_at.clone(),
                    finished_at: r.finished_at.clone(),
                    exit_code: r.exit_code,
                    network_mode: network_mode.clone(),
                    ipv4: r.ip.clone(),
                    ports: r
                        .bindings
                        .iter()
                        .map(|b| {
                            serde_json::json!({
                                "ContainerPort": b.container_port,
                                "Protocol": b.protocol.map_or("tcp", |p| p.as_str()),
                                "HostPort": b.host_port,
                                "HostIp": b.bind_ip,
                            })
                        })
                        .collect(),
                    health: r.health.map(|h| h.as_str().to_string()),
                    container_arn: None,
                })
                .collect(),
        };
        registry.publish(&self.metadata_token, meta);
    }

    /// Runs the task to completion, or until the agent shuts down (then the containers are
    /// left running for the next agent to adopt).
    pub async fn run(mut self) {
        self.adopt().await;
        self.publish();
        if self.known < TaskStatus::Running
            && !self.wants_stop()
            && let Err(failure) = self.start().await
        {
            if self.detached {
                return;
            }
            self.fail(failure);
        }
        if self.known < TaskStatus::Stopping && !self.wants_stop() && self.stop_code.is_none() {
            self.supervise().await;
        }
        if self.detached {
            tracing::debug!(task = %self.arn, "agent shutting down; the task's containers stay");
            return;
        }
        self.stop().await;
    }

    /// Records why the task could not start.
    fn fail(&mut self, (code, reason): (TaskStopCode, String)) {
        tracing::warn!(task = %self.arn, %reason, "task failed");
        self.stop_code.get_or_insert(code);
        self.stopped_reason.get_or_insert(reason);
    }

    /// Finds containers this task already has (after an agent restart) and reads their state.
    async fn adopt(&mut self) {
        let labels = [
            (LABEL_TASK_ARN.to_string(), self.arn.clone()),
            (LABEL_INSTANCE.to_string(), self.ctx.instance_arn.clone()),
        ];
        let Ok(found) = self.ctx.runtime.list(&labels).await else { return };
        for c in found {
            let Some(name) = c.labels.get(spec::LABEL_CONTAINER_NAME) else { continue };
            let Some(i) = self.runs.iter().position(|r| &r.name == name) else { continue };
            self.runs[i].id = Some(c.id.clone());
            self.refresh(i).await;
        }
        let all_running = self
            .runs
            .iter()
            .all(|r| r.status == "RUNNING" || (r.status == "STOPPED" && !r.essential()));
        if self.runs.iter().any(|r| r.id.is_some()) {
            tracing::info!(task = %self.arn, "adopted the task's containers");
            if all_running {
                self.known = TaskStatus::Running;
            }
        }
    }

    /// Re-reads container `i` from the runtime.
    async fn refresh(&mut self, i: usize) {
        let Some(id) = self.runs[i].id.clone() else { return };
        match self.ctx.runtime.inspect(&id).await {
            Ok(Some(st)) => {
                let r = &mut self.runs[i];
                r.image_digest = Some(st.image_id.clone());
                r.ip = st.ip_address.clone();
                r.created_at = rfc3339(st.created_at);
                r.started_at = rfc3339(st.started_at);
                r.finished_at = rfc3339(st.finished_at);
                if r.def.health_check.is_some() {
                    r.health = health(st.health).or(Some(HealthStatus::Unknown));
                }
                match st.state {
                    s if s.is_running() => {
                        r.status = "RUNNING";
                        r.bindings = bindings(&st);
                    }
                    ContainerState::Exited | ContainerState::Dead => {
                        r.status = "STOPPED";
                        r.exit_code = st.exit_code;
                        if st.oom_killed {
                            r.reason = Some(
                                "OutOfMemoryError: Container killed due to memory usage".into(),
                            );
                        } else if let Some(e) = st.error.filter(|e| !e.is_empty()) {
                            r.reason.get_or_insert(e);
                        }
                    }
                    _ => {}
                }
            }
            Ok(None) => {
                let r = &mut self.runs[i];
                if r.status != "STOPPED" {
                    r.status = "STOPPED";
                    r.reason
                        .get_or_insert_with(|| "The container was removed outside of Berth".into());
                }
            }
            Err(e) => {
                tracing::warn!(task = %self.arn, container = %self.runs[i].name, error = %e, "inspect failed")
            }
        }
    }

    /// Pulls images, then creates and starts containers in dependency order.
    async fn start(&mut self) -> Result<(), (TaskStopCode, String)> {
        // Images: pulled unless present.
        self.pull_started_at = Some(now());
        self.publish();
        for i in 0..self.runs.len() {
            if self.runs[i].id.is_some() {
                continue;
            }
            let image = self.runs[i].def.image.clone().unwrap_or_default();
            let present = matches!(self.ctx.runtime.image(&image).await, Ok(Some(_)));
            if !present && let Err(e) = self.ctx.runtime.pull(&image).await {
                let msg = match e {
                    RuntimeError::Pull { message, .. } => message,
                    other => other.to_string(),
                };
                let reason = format!("CannotPullContainerError: pull image {image}: {msg}");
                self.runs[i].reason = Some(reason.clone());
                return Err((TaskStopCode::TaskFailedToStart, reason));
            }
        }
        self.pull_stopped_at = Some(now());
        // Docker volumes of the task.
        let mut volumes = Vec::new();
        for v in self.td.volumes.iter().flatten() {
            if let Some(name) = &v.name
                && let Some(spec) = spec::volume_for(&self.td, name, &self.identity())
            {
                volumes.push(spec);
            }
        }
        for v in volumes {
            if let Err(e) = self.ctx.runtime.create_volume(&v).await {
                return Err((
                    TaskStopCode::TaskFailedToStart,
                    format!("CannotCreateVolumeError: {e}"),
                ));
            }
        }
        // Containers, each once its dependencies hold.
        let order = start_order(&self.td);
        for i in order {
            if self.wants_stop() {
                return Ok(());
            }
            if self.runs[i].id.is_none() {
                self.await_dependencies(i).await?;
                self.create_and_start(i).await?;
            }
            self.publish();
        }
        self.known = TaskStatus::Running;
        self.started_at = Some(now());
        tracing::info!(task = %self.arn, "task running");
        self.publish();
        Ok(())
    }

    async fn await_dependencies(&mut self, i: usize) -> Result<(), (TaskStopCode, String)> {
        let deps = self.runs[i].def.depends_on.clone().unwrap_or_default();
        if deps.is_empty() {
            return Ok(());
        }
        let timeout = self.runs[i]
            .def
            .start_timeout
            .map_or(DEFAULT_START_TIMEOUT, |s| Duration::from_secs(s.max(0) as u64));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut satisfied = true;
            for d in &deps {
                let Some(j) = self.runs.iter().position(|r| r.def.name == d.container_name) else {
                    continue;
                };
                self.refresh(j).await;
                let r = &self.runs[j];
                let ok = match d.condition {
                    Some(ContainerCondition::Start) | None => r.status != "PENDING",
                    Some(ContainerCondition::Complete) => r.status == "STOPPED",
                    Some(ContainerCondition::Success) => {
                        if r.status == "STOPPED" && r.exit_code != Some(0) {
                            return Err((
                                TaskStopCode::TaskFailedToStart,
                                format!(
                                    "Container {} depends on {} succeeding, but it exited with code {}",
                                    self.runs[i].name,
                                    r.name,
                                    r.exit_code.unwrap_or(-1)
                                ),
                            ));
                        }
                        r.status == "STOPPED"
                    }
                    Some(ContainerCondition::Healthy) => {
                        if r.health == Some(HealthStatus::Unhealthy) {
                            return Err((
                                TaskStopCode::TaskFailedToStart,
                                format!(
                                    "Container {} depends on {} being healthy, but it is UNHEALTHY",
                                    self.runs[i].name, r.name
                                ),
                            ));
                        }
                        r.health == Some(HealthStatus::Healthy)
                    }
                };
                satisfied &= ok;
            }
            if satisfied {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline || self.wants_stop() {
                return Err((
                    TaskStopCode::TaskFailedToStart,
                    format!(
                        "Container {}'s dependencies were not met within {}s",
                        self.runs[i].name,
                        timeout.as_secs()
                    ),
                ));
            }
            self.publish();
            tokio::select! {
                _ = tokio::time::sleep(SUPERVISE_TICK) => {}
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        self.detached = true;
                        return Err((TaskStopCode::TaskFailedToStart, "the agent is shutting down".into()));
                    }
                }
            }
        }
    }

    async fn create_and_start(&mut self, i: usize) -> Result<(), (TaskStopCode, String)> {
        let ids: BTreeMap<String, String> =
            self.runs.iter().filter_map(|r| Some((r.name.clone(), r.id.clone()?))).collect();
        let uri = self
            .ctx
            .metadata_base
            .as_ref()
            .map(|b| format!("{b}/{}-{}", self.metadata_token, self.runs[i].name));
        let desired = self.desired.borrow().clone();
        let spec = spec::container_spec(
            &self.td,
            &self.runs[i].def,
            desired.overrides.as_ref(),
            &self.identity(),
            uri.as_deref(),
            &ids,
        );
        let id = match self.ctx.runtime.create(&spec).await {
            Ok(id) => id,
            Err(e) => {
                let reason = format!("CannotCreateContainerError: {e}");
                self.runs[i].reason = Some(reason.clone());
                self.runs[i].status = "STOPPED";
                return Err((TaskStopCode::TaskFailedToStart, reason));
            }
        };
        self.runs[i].id = Some(id.clone());
        if let Err(e) = self.ctx.runtime.start(&id).await {
            let reason = format!("CannotStartContainerError: {e}");
            self.runs[i].reason = Some(reason.clone());
            self.runs[i].status = "STOPPED";
            return Err((TaskStopCode::TaskFailedToStart, reason));
        }
        self.refresh(i).await;
        if self.runs[i].status == "PENDING" {
            self.runs[i].status = "RUNNING";
        }
        Ok(())
    }

    /// Watches a running task until it must stop: desired STOPPED, or an essential container
    /// exited. Non-essential exits are reported and the task goes on.
    async fn supervise(&mut self) {
        // A container can exit before it is watched (an instant crash, an OOM kill during
        // start-up): an essential one that already has stops the task now.
        if self.runs.iter().any(|r| r.essential() && r.status == "STOPPED") {
            self.stop_code.get_or_insert(TaskStopCode::EssentialContainerExited);
            self.stopped_reason.get_or_insert_with(|| "Essential container in task exited".into());
            return;
        }
        let (exit_tx, mut exits) = mpsc::unbounded_channel::<usize>();
        let runtime = self.ctx.runtime.clone();
        let watch_exit = |i: usize, id: String, delay: Duration| {
            let rt = runtime.clone();
            let tx = exit_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(e) = rt.wait_exit(&id).await {
                    tracing::debug!(container = %id, error = %e, "waiting for the exit failed");
                }
                let _ = tx.send(i);
            });
        };
        for (i, r) in self.runs.iter().enumerate() {
            if let (Some(id), "RUNNING") = (r.id.clone(), r.status) {
                watch_exit(i, id, Duration::ZERO);
            }
        }
        let mut tick = tokio::time::interval(SUPERVISE_TICK);
        // When each container's health was last read.
        let mut health_read = vec![tokio::time::Instant::now(); self.runs.len()];
        loop {
            if self.wants_stop() {
                return;
            }
            tokio::select! {
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        self.detached = true;
                        return;
                    }
                }
                Some(i) = exits.recv() => {
                    self.refresh(i).await;
                    if self.runs[i].status != "STOPPED" {
                        // The wait ended without an exit (an engine hiccup): watch again.
                        if let Some(id) = self.runs[i].id.clone() {
                            watch_exit(i, id, SUPERVISE_TICK);
                        }
                        continue;
                    }
                    self.publish();
                    if self.runs[i].essential() {
                        self.stop_code.get_or_insert(TaskStopCode::EssentialContainerExited);
                        self.stopped_reason.get_or_insert_with(|| "Essential container in task exited".into());
                        return;
                    }
                }
                _ = tick.tick() => {
                    let before: Vec<_> = self.runs.iter().map(|r| (r.status, r.health)).collect();
                    let now = tokio::time::Instant::now();
                    for (i, read) in health_read.iter_mut().enumerate() {
                        let r = &self.runs[i];
                        if r.status != "RUNNING" || r.def.health_check.is_none() {
                            continue;
                        }
                        let every = match r.health {
                            Some(HealthStatus::Healthy | HealthStatus::Unhealthy) => SETTLED_HEALTH_TICK,
                            _ => SUPERVISE_TICK,
                        };
                        if now.duration_since(*read) + SUPERVISE_TICK / 2 >= every {
                            *read = now;
                            self.refresh(i).await;
                        }
                    }
                    let after: Vec<_> = self.runs.iter().map(|r| (r.status, r.health)).collect();
                    if before != after {
                        self.publish();
                    }
                }
            }
        }
    }

    /// Stops every container in reverse start order, reports STOPPED, removes what the task
    /// created.
    async fn stop(&mut self) {
        if self.wants_stop() && self.stop_code.is_none() {
            // The control plane asked (StopTask): it has set stopCode and reason already.
            self.stopped_reason = self.desired.borrow().stopped_reason.clone();
        }
        if self.known < TaskStatus::Stopping && self.runs.iter().any(|r| r.status == "RUNNING") {
            self.known = TaskStatus::Stopping;
            self.publish();
        }
        let mut order = start_order(&self.td);
        order.reverse();
        for i in order {
            let Some(id) = self.runs[i].id.clone() else {
                self.runs[i].status = "STOPPED";
                continue;
            };
            if self.runs[i].status == "RUNNING" {
                let timeout = self.runs[i]
                    .def
                    .stop_timeout
                    .map_or(DEFAULT_STOP_TIMEOUT, |s| Duration::from_secs(s.max(0) as u64));
                if let Err(e) = self.ctx.runtime.stop(&id, timeout).await {
                    tracing::warn!(task = %self.arn, container = %self.runs[i].name, error = %e, "stop failed");
                }
            }
            self.refresh(i).await;
            self.runs[i].status = "STOPPED";
        }
        self.known = TaskStatus::Stopped;
        tracing::info!(task = %self.arn, reason = ?self.stopped_reason, "task stopped");
        self.publish();
        for r in &self.runs {
            if let Some(id) = &r.id
                && let Err(e) = self.ctx.runtime.remove(id).await
            {
                tracing::warn!(task = %self.arn, container = %r.name, error = %e, "remove failed");
            }
        }
        for v in self.td.volumes.iter().flatten() {
            let shared = v
                .docker_volume_configuration
                .as_ref()
                .and_then(|d| d.scope)
                .is_some_and(|s| s.as_str() == "shared");
            if let Some(name) = &v.name
                && !shared
                && let Some(spec) = spec::volume_for(&self.td, name, &self.identity())
            {
                let _ = self.ctx.runtime.remove_volume(&spec.name).await;
            }
        }
    }
}

/// ECS network bindings from what the runtime bound (IPv4 entries, as ECS lists them).
fn bindings(st: &berth_runtime::ContainerStatus) -> Vec<NetworkBinding> {
    st.port_bindings
        .iter()
        .filter(|b| !b.host_ip.contains(':'))
        .map(|b| NetworkBinding {
            bind_ip: Some(b.host_ip.clone()),
            container_port: Some(i32::from(b.container_port)),
            host_port: Some(i32::from(b.host_port)),
            protocol: Some(if b.protocol == Protocol::Udp {
                TransportProtocol::Udp
            } else {
                TransportProtocol::Tcp
            }),
            ..Default::default()
        })
        .collect()
}

/// Indices of the task's containers in an order that starts every container after the
/// containers it depends on (`dependsOn`, and `links`/`volumesFrom` targets, which Docker
/// needs to exist first). Validation guarantees no cycle; a cycle would fall back to
/// definition order.
pub fn start_order(td: &TaskDefinition) -> Vec<usize> {
    let defs: Vec<&ContainerDefinition> = td.container_definitions.iter().flatten().collect();
    let index = |n: &str| defs.iter().position(|d| d.name.as_deref() == Some(n));
    let deps: Vec<Vec<usize>> = defs
        .iter()
        .map(|d| {
            let mut v: Vec<usize> = d
                .depends_on
                .iter()
                .flatten()
                .filter_map(|x| index(x.container_name.as_deref()?))
                .collect();
            v.extend(d.links.iter().flatten().filter_map(|l| index(l.split(':').next()?)));
            v.extend(
                d.volumes_from
                    .iter()
                    .flatten()
                    .filter_map(|x| index(x.source_container.as_deref()?)),
            );
            v
        })
        .collect();
    let mut order = Vec::with_capacity(defs.len());
    let mut state = vec![0u8; defs.len()]; // 0 new, 1 visiting, 2 done
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for &d in &deps[i] {
            if state[d] == 0 {
                visit(d, deps, state, order);
            }
        }
        state[i] = 2;
        order.push(i);
    }
    for i in 0..defs.len() {
        visit(i, &deps, &mut state, &mut order);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::fake::{FakeRuntime, Script};

    /// Runs one task on the fake runtime until it stops; returns every report published.
    async fn run_to_end(fake: Arc<FakeRuntime>, containers: serde_json::Value) -> Vec<TaskReport> {
        let td: TaskDefinition = serde_json::from_value(serde_json::json!({
            "family": "f", "revision": 1, "containerDefinitions": containers
        }))
        .unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ctx = TaskContext {
            runtime: fake,
            cluster: "c".into(),
            instance_arn: "arn:aws:ecs:us-east-1:1:container-instance/c/i".into(),
            reports: tx,
            metadata_base: None,
            metadata: None,
            availability_zone: "az".into(),
        };
        let (_dtx, drx) = watch::channel(DesiredTask {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
            desired_status: "RUNNING".into(),
            last_status: "PENDING".into(),
            task_definition: td,
            ..Default::default()
        });
        tokio::time::timeout(Duration::from_secs(60), TaskActor::new(ctx, drx).run())
            .await
            .expect("the task ends");
        let mut out = Vec::new();
        while let Ok(r) = rx.try_recv() {
            out.push(r);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutting_down_agent_leaves_running_tasks_alone() {
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image("img");
        let td: TaskDefinition = serde_json::from_value(serde_json::json!({
            "family": "f", "revision": 1, "containerDefinitions": [{"name": "a", "image": "img", "memory": 16}]
        }))
        .unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel::<TaskReport>();
        let ctx = TaskContext {
            runtime: fake.clone(),
            cluster: "c".into(),
            instance_arn: "arn:i".into(),
            reports: tx,
            metadata_base: None,
            metadata: None,
            availability_zone: "az".into(),
        };
        let (dtx, drx) = watch::channel(DesiredTask {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
            desired_status: "RUNNING".into(),
            last_status: "PENDING".into(),
            task_definition: td,
            ..Default::default()
        });
        let actor = tokio::spawn(TaskActor::new(ctx, drx).run());
        loop {
            let r = rx.recv().await.expect("reports");
            if r.change.status.as_deref() == Some("RUNNING") {
                break;
            }
        }
        drop(dtx); // the agent's loop ends (Ctrl-C)
        tokio::time::timeout(Duration::from_secs(60), actor).await.expect("actor ends").unwrap();
        while let Ok(r) = rx.try_recv() {
            assert_ne!(r.change.status.as_deref(), Some("STOPPED"), "nothing is stopped");
        }
        assert_eq!(fake.container_ids().len(), 1, "the container stays for the next agent");
        assert!(fake.calls_of(berth_runtime::fake::Op::Stop).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_essential_container_that_dies_during_start_up_stops_the_task() {
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image("img");
        fake.script("img", Script { exit_after: Some((Duration::ZERO, 3)), ..Default::default() });
        let reports = run_to_end(
            fake.clone(),
            serde_json::json!([{"name": "a", "image": "img", "memory": 16}]),
        )
        .await;
        let last = reports.last().unwrap();
        assert_eq!(last.change.status.as_deref(), Some("STOPPED"));
        assert_eq!(last.stop_code, Some(TaskStopCode::EssentialContainerExited));
        assert_eq!(last.change.containers.as_ref().unwrap()[0].exit_code, Some(3));
        assert!(fake.container_ids().is_empty(), "containers are removed once reported");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pull_fails_the_task_before_creating_anything() {
        let fake = Arc::new(FakeRuntime::new());
        fake.fail_pull("missing:1", "no such host");
        let reports = run_to_end(
            fake.clone(),
            serde_json::json!([{"name": "a", "image": "missing:1", "memory": 16}]),
        )
        .await;
        let last = reports.last().unwrap();
        assert_eq!(last.stop_code, Some(TaskStopCode::TaskFailedToStart));
        assert!(last.change.reason.as_deref().unwrap().starts_with("CannotPullContainerError"));
        assert!(fake.calls_of(berth_runtime::fake::Op::Create).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dependency_that_must_succeed_but_fails_stops_the_task() {
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image("img");
        fake.add_image("init");
        fake.script(
            "init",
            Script { exit_after: Some((Duration::from_secs(1), 1)), ..Default::default() },
        );
        let reports = run_to_end(
            fake.clone(),
            serde_json::json!([
                {"name": "web", "image": "img", "memory": 16, "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
                {"name": "init", "image": "init", "memory": 16, "essential": false}
            ]),
        )
        .await;
        let last = reports.last().unwrap();
        assert_eq!(last.stop_code, Some(TaskStopCode::TaskFailedToStart));
        assert!(last.change.reason.as_deref().unwrap().contains("exited with code 1"));
        // `web` was never created.
        assert_eq!(fake.calls_of(berth_runtime::fake::Op::Create).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_oom_kill_is_reported_as_ecs_reports_it() {
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image("hog");
        fake.script(
            "hog",
            Script { oom_after: Some(Duration::from_secs(2)), ..Default::default() },
        );
        let reports =
            run_to_end(fake, serde_json::json!([{"name": "hog", "image": "hog", "memory": 16}]))
                .await;
        assert!(reports.iter().any(|r| r.change.status.as_deref() == Some("RUNNING")));
        let last = reports.last().unwrap();
        let c = &last.change.containers.as_ref().unwrap()[0];
        assert_eq!(c.exit_code, Some(137));
        assert!(c.reason.as_deref().unwrap().starts_with("OutOfMemoryError"));
        assert_eq!(last.stop_code, Some(TaskStopCode::EssentialContainerExited));
    }

    #[test]
    fn dependencies_start_first() {
        let td: TaskDefinition = serde_json::from_value(serde_json::json!({
            "containerDefinitions": [
                {"name": "web", "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}], "links": ["cache"]},
                {"name": "app", "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
                {"name": "init"},
                {"name": "cache"}
            ]
        }))
        .unwrap();
        let names = |o: Vec<usize>| -> Vec<String> {
            o.into_iter()
                .map(|i| td.container_definitions.as_ref().unwrap()[i].name.clone().unwrap())
                .collect()
        };
        let order = names(start_order(&td));
        let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
        assert!(pos("init") < pos("app"));
        assert!(pos("app") < pos("web"));
        assert!(pos("cache") < pos("web"));
        assert_eq!(order.len(), 4);
    }
}
