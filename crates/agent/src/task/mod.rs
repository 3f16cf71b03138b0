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
//! the task's containers by label instead of starting new ones, and takes the task's metadata
//! token back from their label, so the URIs they hold keep working.
//!
//! The actor re-reads a container when the runtime's events say something changed about it
//! (routed to its [`Watch`](crate::events::Watch)), when the event stream (re)subscribes, when
//! the container exits (a wait on each running container), and, as a safety net against a
//! lost event, every [`SAFETY_NET_PERIOD`] for the health-checked ones; never on a fast timer.
//!
//! Split by seams: `start` (pulls, dependencies, create and start, start order),
//! `supervise` (a running task), `report` (the task's state as reports and task metadata);
//! this module holds the actor, adoption, re-reading and shutdown.

pub mod network;
mod report;
mod role;
mod start;
mod supervise;

use std::sync::Arc;
use std::time::Duration;

use berth_agent_protocol::{DesiredTask, TaskReport};
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_runtime::{ContainerState, Runtime};
use berth_wire::ecs::{
    ContainerDefinition, HealthStatus, NetworkBinding, TaskDefinition, TaskStopCode,
};
use tokio::sync::{mpsc, watch};

use crate::events::{Changed, Router, Watch};
use crate::spec::{self, LABEL_INSTANCE, LABEL_TASK_ARN, TaskIdentity};
use report::bindings;

pub use start::start_order;

/// Default grace between SIGTERM and SIGKILL (ECS_CONTAINER_STOP_TIMEOUT's default).
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a container may wait for its dependencies (ECS's default startTimeout).
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long after a wait for a container's exit ended without an exit (an engine hiccup) it
/// is waited for again.
const REWAIT_DELAY: Duration = Duration::from_millis(500);
/// How often a running container with a health check is re-read although no event said it
/// changed: the safety net should an event be lost. Events make health changes visible at
/// once; this only bounds how stale a lost one leaves it.
pub const SAFETY_NET_PERIOD: Duration = Duration::from_secs(30);
/// How long a container waiting for its dependencies goes without re-reading them when no
/// event arrives (the same safety net, shorter because start-up is waiting on it).
const DEPENDENCY_RECHECK: Duration = Duration::from_secs(5);
/// How long a stopping task waits for its containers' last log lines to be shipped.
const LOG_DRAIN: Duration = Duration::from_secs(15);

/// The agent's view of one container.
#[derive(Clone, Debug)]
struct Run {
    def: ContainerDefinition,
    name: String,
    id: Option<String>,
    /// `Pending`, `Running` or `Stopped`: a container's `lastStatus` as ECS reports it (with
    /// the task's vocabulary).
    status: TaskStatus,
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

    /// What a change of is reported.
    fn observed(&self) -> (TaskStatus, Option<HealthStatus>, Option<i64>, Option<String>) {
        (self.status, self.health, self.exit_code, self.reason.clone())
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
    /// Where the runtime's container events are routed: each actor registers its containers.
    pub events: Router,
    /// The firewall and security groups for awsvpc tasks.
    pub network: network::Networking,
    /// Credentials for images on the control plane's registry.
    pub pull_auth: crate::registry_auth::PullAuth,
    /// Where the `awslogs` driver ships ([`crate::logs`]); `None`: containers that ask for
    /// it keep their output in the engine's local log only.
    pub logs: Option<Arc<crate::logs::Shipper>>,
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
    /// This actor's inbox of container events; its containers are registered on it.
    watch: Watch,
    /// The task's own network (awsvpc) and cgroup.
    net: network::TaskNet,
    /// The `awslogs` shippers of its containers ([`crate::logs`]).
    shippers: Vec<tokio::task::JoinHandle<()>>,
    /// The values of its containers' `secrets` and `repositoryCredentials`, by container
    /// name, fetched just before they are created (`start::fetch_secrets`). In memory only:
    /// never in reports, the metadata endpoint, logs or the data directory.
    secrets: std::collections::BTreeMap<String, berth_agent_protocol::ContainerSecrets>,
    /// The task role's credentials id and token, when it has a role (`role`).
    role_creds: Option<role::RoleCredentials>,
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
                    status: TaskStatus::Pending,
                    exit_code: None,
                    reason: None,
                    health: def.health_check.as_ref().map(|_| HealthStatus::Unknown),
                    bindings: vec![],
                    image_digest: None,
                }
            })
            .collect();
        let known = d.last_status;
        Self {
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
            watch: ctx.events.watch(),
            net: network::TaskNet::default(),
            shippers: Vec::new(),
            secrets: Default::default(),
            role_creds: None,
            ctx,
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
        self.desired.borrow().desired_status == DesiredTaskStatus::Stopped
    }

    /// With `reason`, the task is refused: it stops without starting anything
    /// (`TaskFailedToStart`, the reason as its `stoppedReason`).
    pub fn refuse(mut self, reason: Option<String>) -> Self {
        if let Some(r) = reason {
            self.fail((TaskStopCode::TaskFailedToStart, r));
        }
        self
    }

    /// Runs the task to completion, or until the agent shuts down (then the containers are
    /// left running for the next agent to adopt).
    pub async fn run(mut self) {
        self.adopt().await;
        // An adopted task's containers keep asking for their role's credentials.
        if self.role_creds.is_some()
            && !self.wants_stop()
            && let Err((_, why)) = self.ensure_role_credentials().await
        {
            tracing::warn!(task = %self.arn, %why, "adopted task without role credentials");
        }
        self.publish();
        if self.known < TaskStatus::Running
            && !self.wants_stop()
            && self.stop_code.is_none()
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
        self.adopt_network().await;
        let Ok(found) = self.ctx.runtime.list(&labels).await else { return };
        for c in found {
            let Some(name) = c.labels.get(spec::LABEL_CONTAINER_NAME) else { continue };
            let Some(i) = self.runs.iter().position(|r| &r.name == name) else { continue };
            // The token its containers' metadata URIs hold (never logged).
            if let Some(token) = c.labels.get(crate::metadata::LABEL_TOKEN) {
                self.metadata_token.clone_from(token);
            }
            // And the task role credentials' id and token (never logged).
            if let Some((id, token)) = c
                .labels
                .get(crate::task_credentials::LABEL_CREDENTIALS)
                .and_then(|v| crate::task_credentials::parse_label(v))
            {
                self.role_creds = Some(role::RoleCredentials::adopted(id, token));
            }
            self.set_id(i, c.id.clone());
            self.refresh(i).await;
            // Its output is shipped on from where the log store's cursor says.
            let region = self.ctx.instance_arn.split(':').nth(3).unwrap_or_default().to_string();
            if self.ctx.logs.is_some()
                && let Ok(Some(target)) =
                    crate::logs::target(&self.runs[i].def, &self.task_id, &region)
            {
                self.ship_logs(&c.id, target, None);
            }
        }
        let all_running = self.runs.iter().all(|r| {
            r.status == TaskStatus::Running || (r.status == TaskStatus::Stopped && !r.essential())
        });
        if self.runs.iter().any(|r| r.id.is_some()) || self.net.pause_id.is_some() {
            self.adopt_cgroup();
        }
        if self.runs.iter().any(|r| r.id.is_some()) {
            tracing::info!(task = %self.arn, "adopted the task's containers");
            if all_running {
                self.known = TaskStatus::Running;
            }
        }
    }

    /// Container `i` is `id`: from now on, events about it come to this actor.
    fn set_id(&mut self, i: usize, id: String) {
        self.watch.follow(&id);
        self.runs[i].id = Some(id);
    }

    /// Re-reads every container `changed` names; returns their indices.
    async fn refresh_changed(&mut self, changed: &Changed) -> Vec<usize> {
        let mut read = Vec::new();
        for i in 0..self.runs.len() {
            if self.runs[i].id.as_deref().is_some_and(|id| changed.concerns(id)) {
                self.refresh(i).await;
                read.push(i);
            }
        }
        read
    }

    /// Re-reads container `i` from the runtime.
    async fn refresh(&mut self, i: usize) {
        let Some(id) = self.runs[i].id.clone() else { return };
        match self.ctx.runtime.inspect(&id).await {
            Ok(Some(st)) => {
                let task_ip =
                    self.desired.borrow().network.as_ref().map(|n| n.private_ip.to_string());
                let r = &mut self.runs[i];
                r.image_digest = Some(st.image_id.clone());
                r.ip = st.ip_address.clone().or(task_ip);
                r.created_at = rfc3339(st.created_at);
                r.started_at = rfc3339(st.started_at);
                r.finished_at = rfc3339(st.finished_at);
                if r.def.health_check.is_some() {
                    r.health = health(st.health).or(Some(HealthStatus::Unknown));
                }
                match st.state {
                    s if s.is_running() => {
                        r.status = TaskStatus::Running;
                        r.bindings = bindings(&st);
                    }
                    ContainerState::Exited | ContainerState::Dead => {
                        r.status = TaskStatus::Stopped;
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
                if r.status != TaskStatus::Stopped {
                    r.status = TaskStatus::Stopped;
                    r.reason
                        .get_or_insert_with(|| "The container was removed outside of Berth".into());
                }
            }
            Err(e) => {
                tracing::warn!(task = %self.arn, container = %self.runs[i].name, error = %e, "inspect failed")
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
        if self.known < TaskStatus::Stopping
            && self.runs.iter().any(|r| r.status == TaskStatus::Running)
        {
            self.known = TaskStatus::Stopping;
            self.publish();
        }
        let mut order = start_order(&self.td);
        order.reverse();
        for i in order {
            let Some(id) = self.runs[i].id.clone() else {
                self.runs[i].status = TaskStatus::Stopped;
                continue;
            };
            if self.runs[i].status == TaskStatus::Running {
                let timeout = self.runs[i]
                    .def
                    .stop_timeout
                    .map_or(DEFAULT_STOP_TIMEOUT, |s| Duration::from_secs(s.max(0) as u64));
                if let Err(e) = self.ctx.runtime.stop(&id, timeout).await {
                    tracing::warn!(task = %self.arn, container = %self.runs[i].name, error = %e, "stop failed");
                }
            }
            self.refresh(i).await;
            self.runs[i].status = TaskStatus::Stopped;
        }
        self.known = TaskStatus::Stopped;
        tracing::info!(task = %self.arn, reason = ?self.stopped_reason, "task stopped");
        self.publish();
        // The shippers deliver the containers' last lines before the containers go.
        for h in std::mem::take(&mut self.shippers) {
            if tokio::time::timeout(LOG_DRAIN, h).await.is_err() {
                tracing::warn!(task = %self.arn, "log shipping did not finish in time; removing the containers anyway");
            }
        }
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
        self.teardown_task_network().await;
    }
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
            events: Router::new(),
            network: Default::default(),
            pull_auth: Default::default(),
            logs: None,
        };
        let (_dtx, drx) = watch::channel(DesiredTask {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
            desired_status: DesiredTaskStatus::Running,
            last_status: TaskStatus::Pending,
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
            events: Router::new(),
            network: Default::default(),
            pull_auth: Default::default(),
            logs: None,
        };
        let (dtx, drx) = watch::channel(DesiredTask {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
            desired_status: DesiredTaskStatus::Running,
            last_status: TaskStatus::Pending,
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
