//! Start-up: images, the task's volumes, then each container once its dependencies hold, in
//! [`start_order`].
//!
//! Contract:
//! * An image is pulled only when it is not present; a failed pull fails the task
//!   (`TaskFailedToStart`, `CannotPullContainerError: ...`) before anything is created.
//! * A container is created and started once every `dependsOn` condition holds (START,
//!   COMPLETE, SUCCESS, HEALTHY), re-checked whenever an event concerns one of the task's
//!   containers and at least every [`DEPENDENCY_RECHECK`]; a condition that can no longer
//!   hold, or the container's `startTimeout`, fails the task.
//! * A container's id is registered for events as soon as it is created, and shown by the
//!   task metadata endpoint before the container starts (a container that asks for its
//!   metadata as its first action sees its `DockerId`).
//! * A task whose containers name `secrets` or `repositoryCredentials` gets their values from
//!   the control plane before anything is pulled or created ([`TaskActor::fetch_secrets`]);
//!   a value it cannot get fails the task (`TaskFailedToStart`, ECS's
//!   `ResourceInitializationError: unable to pull secrets or registry auth: ...`). The values
//!   live in the actor's memory only and reach nothing but the container's environment and
//!   the pull's credentials.
//!   A task with an execution role asks too (even without secrets): the server checks the
//!   role for its Amazon ECR images and `awslogs` writes, failing the task in ECS's words.
//! * Every container given a metadata URI carries the task's token in the label
//!   [`LABEL_TOKEN`](crate::metadata::LABEL_TOKEN), so a restarted agent serves it again.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_model::lifecycle::TaskStatus;
use berth_runtime::RuntimeError;
use berth_wire::ecs::{
    ContainerCondition, ContainerDefinition, HealthStatus, TaskDefinition, TaskStopCode,
};

use super::{DEFAULT_START_TIMEOUT, DEPENDENCY_RECHECK, TaskActor, now};
use crate::spec;

impl TaskActor {
    /// Pulls images, then creates and starts containers in dependency order.
    pub(super) async fn start(&mut self) -> Result<(), (TaskStopCode, String)> {
        self.ensure_role_credentials().await?;
        self.fetch_secrets().await?;
        // Images: pulled unless present.
        self.pull_started_at = Some(now());
        self.publish();
        // Images on Berth's registry are pulled as the execution role when the task has one.
        let execution_role = self.execution_role_arn();
        let task_ref = berth_agent_protocol::TaskCredentialsRequest {
            container_instance_arn: self.ctx.instance_arn.clone(),
            cluster: self.ctx.cluster.clone(),
            task_arn: self.arn.clone(),
        };
        for i in 0..self.runs.len() {
            if self.runs[i].id.is_some() {
                continue;
            }
            let image = self.runs[i].def.image.clone().unwrap_or_default();
            // An image of the control plane's registry (by its address or in ECR's form)
            // is pulled from there with an ECR token, under the name the runtime knows it by.
            let execution = execution_role.as_deref().map(|r| (r, &task_ref));
            let (reference, mut auth) = match self.ctx.pull_auth.resolve(&image, execution).await {
                Ok(resolved) => resolved,
                Err(why) => {
                    let reason = format!("CannotPullContainerError: pull image {image}: {why}");
                    self.runs[i].reason = Some(reason.clone());
                    return Err((TaskStopCode::TaskFailedToStart, reason));
                }
            };
            // `repositoryCredentials` of a private registry.
            if auth.is_none()
                && let Some((username, password)) = self
                    .secrets
                    .get(&self.runs[i].name)
                    .and_then(|s| s.registry_credentials.clone())
            {
                let server_address = crate::registry_auth::registry_host(&image)
                    .unwrap_or("https://index.docker.io/v1/")
                    .to_string();
                auth = Some(berth_runtime::RegistryAuth { username, password, server_address });
            }
            if reference != image {
                self.runs[i].def.image = Some(reference.clone());
            }
            let (named, image) = (image, reference);
            let present = matches!(self.ctx.runtime.image(&image).await, Ok(Some(_)));
            if !present && let Err(e) = self.ctx.runtime.pull(&image, auth.as_ref()).await {
                let msg = match e {
                    RuntimeError::Pull { message, .. } => message,
                    other => other.to_string(),
                };
                let reason = format!("CannotPullContainerError: pull image {named}: {msg}");
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
        // The task's cgroup and own network (awsvpc): bridge, pause container, firewall.
        self.setup_task_network().await?;
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
        self.network_started();
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
                    Some(ContainerCondition::Start) | None => r.status != TaskStatus::Pending,
                    Some(ContainerCondition::Complete) => r.status == TaskStatus::Stopped,
                    Some(ContainerCondition::Success) => {
                        if r.status == TaskStatus::Stopped && r.exit_code != Some(0) {
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
                        r.status == TaskStatus::Stopped
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
                _ = tokio::time::sleep_until((tokio::time::Instant::now() + DEPENDENCY_RECHECK).min(deadline)) => {}
                changed = self.watch.changed() => {
                    self.refresh_changed(&changed).await;
                }
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
        let mut spec = spec::container_spec(
            &self.td,
            &self.runs[i].def,
            desired.overrides.as_ref(),
            &self.identity(),
            uri.as_deref(),
            &ids,
        );
        // Secrets last: a secret wins over a plain variable of the same name.
        if let Some(s) = self.secrets.get(&self.runs[i].name) {
            for (name, value) in &s.environment {
                spec.env.retain(|(k, _)| k != name);
                spec.env.push((name.clone(), value.clone()));
            }
        }
        // The task role's credentials (`role`): after the definition's variables, as ECS.
        if let Some((env, (k, v))) = self.role_env() {
            for (name, value) in env {
                spec.env.retain(|(n, _)| n != &name);
                spec.env.push((name, value));
            }
            spec.labels.insert(k, v);
        }
        if uri.is_some() {
            spec.labels
                .insert(crate::metadata::LABEL_TOKEN.to_string(), self.metadata_token.clone());
        }
        // Berth's DNS server, when the server gives one (issue #17), unless the container
        // names its own; Docker refuses `dns` with the host network (awsvpc tasks get it on
        // their pause container, whose resolver their containers share).
        if spec.dns_servers.is_empty() && spec.network_mode == berth_runtime::NetworkMode::Bridge {
            spec.dns_servers = desired.dns_servers.clone();
        }
        self.join_task(&mut spec);
        let id = match self.ctx.runtime.create(&spec).await {
            Ok(id) => id,
            Err(e) => {
                let reason = format!("CannotCreateContainerError: {e}");
                self.runs[i].reason = Some(reason.clone());
                self.runs[i].status = TaskStatus::Stopped;
                return Err((TaskStopCode::TaskFailedToStart, reason));
            }
        };
        self.set_id(i, id.clone());
        // Its log group and stream exist before it writes a line (awslogs).
        let shipping = self.prepare_logs(i, &id).await?;
        // Before it starts: its first request for metadata sees its id.
        self.publish_metadata();
        // awsvpc: the task's namespace is up and its security groups loaded first.
        self.network_ready().await?;
        if let Err(e) = self.ctx.runtime.start(&id).await {
            let reason = format!("CannotStartContainerError: {e}");
            self.runs[i].reason = Some(reason.clone());
            self.runs[i].status = TaskStatus::Stopped;
            return Err((TaskStopCode::TaskFailedToStart, reason));
        }
        if let Some((target, since)) = shipping {
            self.ship_logs(&id, target, Some(since));
        }
        self.refresh(i).await;
        if self.runs[i].status == TaskStatus::Pending {
            self.runs[i].status = TaskStatus::Running;
        }
        Ok(())
    }

    /// The task's execution role: the RunTask override's, else its definition's.
    fn execution_role_arn(&self) -> Option<String> {
        self.desired
            .borrow()
            .overrides
            .as_ref()
            .and_then(|o| o.execution_role_arn.clone())
            .or_else(|| self.td.execution_role_arn.clone())
            .filter(|r| !r.is_empty())
    }

    /// Fetches the values of the task's secrets when a container still to be created names
    /// any (see the module header).
    async fn fetch_secrets(&mut self) -> Result<(), (TaskStopCode, String)> {
        // With an execution role, the server also checks it for the task's images and logs.
        let execution_role = self.execution_role_arn().is_some();
        let wanted = self.runs.iter().any(|r| {
            r.id.is_none()
                && (execution_role
                    || r.def.secrets.as_ref().is_some_and(|s| !s.is_empty())
                    || r.def.repository_credentials.is_some())
        });
        if !wanted || !self.secrets.is_empty() {
            return Ok(());
        }
        const PREFIX: &str = "ResourceInitializationError: unable to pull secrets or registry auth";
        let req = berth_agent_protocol::TaskSecretsRequest {
            container_instance_arn: self.ctx.instance_arn.clone(),
            cluster: self.ctx.cluster.clone(),
            task_arn: self.arn.clone(),
        };
        let mut tries = 0;
        let answer = loop {
            match self.ctx.pull_auth.task_secrets(&req).await {
                None => {
                    return Err((
                        TaskStopCode::TaskFailedToStart,
                        format!("{PREFIX}: this agent has no control plane to read secrets from"),
                    ));
                }
                Some(Ok(a)) => break a,
                Some(Err(e)) if e.is_transient() && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                }
                Some(Err(e)) => {
                    return Err((
                        TaskStopCode::TaskFailedToStart,
                        format!("{PREFIX}: execution resource retrieval failed: {e}"),
                    ));
                }
            }
        };
        if let Some(why) = answer.failure {
            return Err((TaskStopCode::TaskFailedToStart, why));
        }
        self.secrets =
            answer.containers.into_iter().map(|c| (c.container_name.clone(), c)).collect();
        Ok(())
    }

    /// The `awslogs` target of container `i` (created as `id`), its group and stream made
    /// to exist, and the cursor to ship from; `None` when it does not log there.
    async fn prepare_logs(
        &mut self,
        i: usize,
        id: &str,
    ) -> Result<Option<(crate::logs::Target, crate::logs::Cursor)>, (TaskStopCode, String)> {
        let Some(shipper) = self.ctx.logs.clone() else { return Ok(None) };
        let region = self.ctx.instance_arn.split(':').nth(3).unwrap_or_default().to_string();
        let failed = |this: &mut Self, reason: String| {
            this.runs[i].reason = Some(reason.clone());
            this.runs[i].status = TaskStatus::Stopped;
            Err((TaskStopCode::TaskFailedToStart, reason))
        };
        let target = match crate::logs::target(&self.runs[i].def, &self.task_id, &region) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(None),
            Err(e) => return failed(self, format!("CannotStartContainerError: {e}")),
        };
        let stream = target.stream_for(id);
        let mut tries = 0;
        loop {
            match shipper.ensure(&self.arn, &target, &stream).await {
                Ok(cursor) => return Ok(Some((target, cursor))),
                Err(crate::client::ClientError::Aws { code, message, .. })
                    if code == "ResourceNotFoundException" =>
                {
                    return failed(self, crate::logs::missing_group_reason(&message));
                }
                Err(e) if e.is_transient() && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                }
                Err(e) => {
                    return failed(
                        self,
                        format!(
                            "CannotStartContainerError: failed to initialize logging driver: {e}"
                        ),
                    );
                }
            }
        }
    }

    /// Starts shipping container `id`'s output (see [`crate::logs`]).
    pub(super) fn ship_logs(
        &mut self,
        id: &str,
        target: crate::logs::Target,
        since: Option<crate::logs::Cursor>,
    ) {
        let Some(shipper) = self.ctx.logs.clone() else { return };
        self.shippers.push(tokio::spawn(shipper.follow(
            self.ctx.runtime.clone(),
            id.to_string(),
            self.arn.clone(),
            target,
            since,
        )));
    }
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
