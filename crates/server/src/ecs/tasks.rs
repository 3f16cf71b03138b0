//! Tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks, SubmitTaskStateChange,
//! SubmitContainerStateChange, and the agent channel's poll and report.
//!
//! The flow of one RunTask: read a snapshot of the cluster's instances, ask the pure scheduler
//! for a plan, and commit the plan in ONE transaction that compares the revision of every
//! instance it touches (and of the cluster record): the task records, their indexes, the
//! instances' reserved resources and each instance's desired-state marker. A conflict means
//! another placement won: take a fresh snapshot and plan again. No instance is ever
//! overcommitted, whatever the concurrency.
//!
//! Known status only moves forward ([`TaskStatus::can_transition`]); a stale report never
//! regresses a task. When a task reaches STOPPED, the same transaction releases what it held
//! on its instance.

use std::collections::{BTreeMap, BTreeSet};

use berth_agent_protocol::{DesiredTask, PollRequest, PollResponse, TaskReport};
use berth_model::arn::TaskDefinitionRef;
use berth_model::lifecycle::{ContainerHealth, TaskStatus};
use berth_model::records::{
    ContainerInstanceRecord, HeartbeatRecord, TaskDefinitionRecord, TaskRecord,
};
use berth_model::{keys, tags};
use berth_scheduler::{InstanceSnapshot, InstanceStatus, PlacementRequest, Resources};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::container_instances::{registered_int, registered_ports};
use super::{EcsService, RequestContext};
use crate::error;
use crate::pagination::Page;
use crate::records::{self, CAS_ATTEMPTS};

/// How long a poll may be held when the agent asks for more.
const MAX_POLL_WAIT: std::time::Duration =
    std::time::Duration::from_secs(berth_agent_protocol::MAX_WAIT_SECONDS as u64);

fn task_not_found(given: &str) -> AwsError {
    error::invalid(format!("The referenced task was not found: {given}"))
}

fn parse_status(s: &str) -> Option<TaskStatus> {
    s.parse().ok()
}

/// A scheduler field error as ECS's `InvalidParameterException`.
fn field_error(e: berth_scheduler::wire::FieldError) -> AwsError {
    error::invalid(e.to_string())
}

/// What RunTask and StartTask have in common.
struct Launch<'a> {
    task_definition: &'a str,
    overrides: Option<&'a TaskOverride>,
    started_by: Option<&'a str>,
    group: Option<&'a str>,
    tags: &'a [Tag],
    /// RunTask's `placementConstraints` (StartTask names its instances and has none).
    constraints: &'a [PlacementConstraint],
    /// RunTask's `placementStrategy`, validated.
    strategies: Vec<berth_scheduler::Strategy>,
}

/// A task as stored, ready to place: requirements and the records to write.
struct Planned {
    rec: TaskRecord,
}

impl EcsService {
    /// The task definition a RunTask/StartTask names, refusing what Berth cannot run.
    pub(super) async fn runnable_task_definition(
        &self,
        given: &str,
    ) -> Result<TaskDefinitionRecord, AwsError> {
        let r =
            TaskDefinitionRef::parse(&self.scope, given, "taskDefinition").map_err(error::model)?;
        let key = match &r {
            TaskDefinitionRef::Revision { family, revision } => {
                keys::task_definition(family, *revision)
            }
            TaskDefinitionRef::Latest { family } => {
                let prefix =
                    format!("{}{family}!", keys::task_definitions_by_status_prefix("ACTIVE"));
                let latest = self
                    .store
                    .range(Range::prefix(&prefix).reversed().limit(1))
                    .await
                    .map_err(error::store)?;
                match latest.first().and_then(|r| keys::parse_task_definition_key(&r.key)) {
                    Some((f, rev)) => keys::task_definition(f, rev),
                    None => {
                        return Err(error::client(
                            "Unable to find the task definition: no ACTIVE revision of that family.",
                        ));
                    }
                }
            }
        };
        let Some((rec, _)) = records::get::<TaskDefinitionRecord>(&*self.store, &key).await? else {
            return Err(error::client(format!("Unable to find the task definition {given}.")));
        };
        if rec.task_definition.status != Some(TaskDefinitionStatus::Active) {
            return Err(error::client(format!(
                "TaskDefinition is inactive: {given}. Register a new revision or run an ACTIVE one."
            )));
        }
        if rec.task_definition.network_mode == Some(NetworkMode::Awsvpc) {
            return Err(ErrorCode::UnsupportedFeatureException.with(
                "networkMode awsvpc is not supported by Berth's agent yet; use bridge, host or none.",
            ));
        }
        Ok(rec)
    }

    fn validate_overrides(
        td: &TaskDefinition,
        overrides: Option<&TaskOverride>,
    ) -> Result<(), AwsError> {
        let Some(o) = overrides else { return Ok(()) };
        for (i, c) in o.container_overrides.iter().flatten().enumerate() {
            let name = c.name.as_deref().unwrap_or("");
            let known =
                td.container_definitions.iter().flatten().any(|d| d.name.as_deref() == Some(name));
            if !known {
                return Err(error::invalid(format!(
                    "overrides.containerOverrides[{i}].name: '{name}' is not a container in the task definition."
                )));
            }
        }
        Ok(())
    }

    /// The scheduler's view of an instance.
    pub(super) async fn snapshot(
        &self,
        rec: &ContainerInstanceRecord,
    ) -> Result<InstanceSnapshot, AwsError> {
        let mut tcp: BTreeSet<u16> = registered_ports(rec, "PORTS").into_iter().collect();
        tcp.extend(&rec.used_ports_tcp);
        let mut udp: BTreeSet<u16> = registered_ports(rec, "PORTS_UDP").into_iter().collect();
        udp.extend(&rec.used_ports_udp);
        Ok(InstanceSnapshot {
            arn: rec.arn.clone(),
            status: match rec.status.as_str() {
                "ACTIVE" => InstanceStatus::Active,
                "DRAINING" => InstanceStatus::Draining,
                _ => InstanceStatus::Inactive,
            },
            agent_connected: self.agent_connected(&rec.id).await?,
            remaining: Resources {
                cpu: registered_int(rec, "CPU") - rec.used_cpu,
                memory_mib: registered_int(rec, "MEMORY") - rec.used_memory_mib,
            },
            used_ports_tcp: tcp,
            used_ports_udp: udp,
            attributes: rec
                .attributes
                .iter()
                .filter_map(|a| a.name.clone().map(|n| (n, a.value.clone())))
                .collect(),
            ec2_instance_id: Some(rec.ec2_instance_id.clone()),
            agent_version: rec.version_info.as_ref().and_then(|v| v.agent_version.clone()),
            registered_at_ms: Some((rec.registered_at * 1000.0) as i64),
            running_tasks_count: self.instance_task_counts(&rec.id).await?.1.max(0) as u32,
            task_groups: rec.task_groups.clone(),
        })
    }

    /// A new task record for `td` on `instance`.
    #[allow(clippy::too_many_arguments)]
    fn new_task(
        &self,
        cluster: &str,
        instance: &ContainerInstanceRecord,
        td: &TaskDefinition,
        overrides: Option<&TaskOverride>,
        req: &berth_scheduler::TaskRequirements,
        started_by: Option<&str>,
        group: &str,
        task_tags: &[Tag],
    ) -> Planned {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let task_arn = self.scope.task_arn(cluster, &id);
        let now = self.now();
        let containers = td
            .container_definitions
            .iter()
            .flatten()
            .map(|d| {
                let name = d.name.clone().unwrap_or_default();
                let o = overrides
                    .and_then(|o| o.container_overrides.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.name.as_deref() == Some(name.as_str())));
                Container {
                    container_arn: Some(
                        self.scope
                            .ecs_arn(&format!("container/{cluster}/{id}/{}", uuid::Uuid::new_v4())),
                    ),
                    task_arn: Some(task_arn.clone()),
                    name: Some(name),
                    image: d.image.clone(),
                    last_status: Some("PENDING".into()),
                    network_interfaces: Some(vec![]),
                    health_status: d.health_check.as_ref().map(|_| HealthStatus::Unknown),
                    cpu: Some(o.and_then(|o| o.cpu).or(d.cpu).unwrap_or(0).to_string()),
                    memory: o.and_then(|o| o.memory).or(d.memory).map(|m| m.to_string()),
                    memory_reservation: o
                        .and_then(|o| o.memory_reservation)
                        .or(d.memory_reservation)
                        .map(|m| m.to_string()),
                    ..Default::default()
                }
            })
            .collect();
        let az = instance
            .attributes
            .iter()
            .find(|a| a.name.as_deref() == Some("ecs.availability-zone"))
            .and_then(|a| a.value.clone());
        let arch = instance
            .attributes
            .iter()
            .find(|a| a.name.as_deref() == Some("ecs.cpu-architecture"))
            .and_then(|a| a.value.clone());
        let task = Task {
            task_arn: Some(task_arn),
            cluster_arn: Some(self.scope.cluster_arn(cluster)),
            task_definition_arn: td.task_definition_arn.clone(),
            container_instance_arn: Some(instance.arn.clone()),
            overrides: Some(overrides.cloned().unwrap_or(TaskOverride {
                container_overrides: Some(vec![]),
                inference_accelerator_overrides: Some(vec![]),
                ..Default::default()
            })),
            last_status: Some("PENDING".into()),
            desired_status: Some("RUNNING".into()),
            cpu: Some(req.cpu.to_string()),
            memory: Some(req.memory_mib.to_string()),
            containers: Some(containers),
            started_by: started_by.map(str::to_string),
            group: Some(group.to_string()),
            launch_type: Some(LaunchType::Ec2),
            created_at: Some(now),
            version: Some(1),
            tags: Some(task_tags.to_vec()),
            health_status: Some(HealthStatus::Unknown),
            availability_zone: az,
            attributes: arch.map(|a| {
                vec![Attribute {
                    name: Some("ecs.cpu-architecture".into()),
                    value: Some(a),
                    ..Default::default()
                }]
            }),
            attachments: Some(vec![]),
            enable_execute_command: Some(false),
            ..Default::default()
        };
        Planned {
            rec: TaskRecord {
                id,
                cluster: cluster.to_string(),
                instance_id: instance.id.clone(),
                task,
                task_definition: td.clone(),
                reserved_cpu: req.cpu,
                reserved_memory_mib: req.memory_mib,
                reserved_ports_tcp: req.host_ports_tcp.clone(),
                reserved_ports_udp: req.host_ports_udp.clone(),
                protected_until: None,
                report_mark: None,
            },
        }
    }

    /// Resolves what RunTask / StartTask asked to launch and places it.
    async fn launch(
        &self,
        cluster: &str,
        l: &Launch<'_>,
        count: u32,
        only: Option<&[String]>,
        client_token: Option<&str>,
    ) -> Result<(Vec<Task>, Vec<Failure>), AwsError> {
        let td = self.runnable_task_definition(l.task_definition).await?.task_definition;
        Self::validate_overrides(&td, l.overrides)?;
        let constraints = berth_scheduler::wire::constraints(
            l.constraints,
            td.placement_constraints.as_deref().unwrap_or(&[]),
        )
        .map_err(field_error)?;
        let group = l
            .group
            .map(str::to_string)
            .unwrap_or_else(|| format!("family:{}", td.family.clone().unwrap_or_default()));
        let request = PlacementRequest {
            count,
            requirements: berth_scheduler::task_requirements(&td, l.overrides),
            group,
            constraints,
            strategies: l.strategies.clone(),
            seed: uuid::Uuid::new_v4().as_u64_pair().0,
        };
        self.place_and_commit(
            cluster,
            &td,
            l.overrides,
            &request,
            only,
            l.started_by,
            l.tags,
            client_token,
            None,
        )
        .await
    }

    /// Places `count` tasks on the cluster (or only on `only`, for StartTask), committing the
    /// plan with compare-and-set; returns the tasks started and the failures.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn place_and_commit(
        &self,
        cluster: &str,
        td: &TaskDefinition,
        overrides: Option<&TaskOverride>,
        request: &PlacementRequest,
        only: Option<&[String]>,
        started_by: Option<&str>,
        task_tags: &[Tag],
        client_token: Option<&str>,
        service: Option<&str>,
    ) -> Result<(Vec<Task>, Vec<Failure>), AwsError> {
        let req = &request.requirements;
        let group = request.group.as_str();
        for _ in 0..CAS_ATTEMPTS {
            let Some((_, cluster_rev)) = self.live_cluster(cluster).await? else {
                return Err(ErrorCode::ClusterNotFoundException.with("Cluster not found."));
            };
            let mut instances = self.cluster_instances(cluster).await?;
            let mut failures = Vec::new();
            if let Some(only) = only {
                let mut chosen = Vec::new();
                for given in only {
                    let id = self.scope.child_id("container-instance", cluster, given);
                    match instances.iter().find(|(r, _)| Some(r.id.as_str()) == id) {
                        Some(found) => chosen.push(found.clone()),
                        None => failures.push(Failure {
                            arn: Some(given.clone()),
                            reason: Some("MISSING".into()),
                            detail: None,
                        }),
                    }
                }
                instances = chosen;
            }
            let mut snaps = Vec::with_capacity(instances.len());
            for (rec, _) in &instances {
                snaps.push(self.snapshot(rec).await?);
            }
            let mut plan_failures = Vec::new();
            let mut placements = Vec::new();
            if only.is_some() {
                // StartTask: one task on each named instance (an instance named twice gets two,
                // each placed against what the previous one left).
                let mut working: BTreeMap<String, InstanceSnapshot> =
                    snaps.iter().map(|s| (s.arn.clone(), s.clone())).collect();
                for snap in &snaps {
                    let current =
                        working.get_mut(&snap.arn).expect("snapshot of a chosen instance");
                    let one = PlacementRequest {
                        count: 1,
                        requirements: req.clone(),
                        group: group.to_string(),
                        ..Default::default()
                    };
                    let mut state = berth_scheduler::ClusterState::new(vec![current.clone()]);
                    match state.place(&one) {
                        Ok(plan) => {
                            *current = state.instances()[0].clone();
                            placements.extend(plan.placements);
                            plan_failures.extend(plan.failures);
                        }
                        Err(_) => plan_failures.push(berth_scheduler::PlacementFailure {
                            arn: Some(snap.arn.clone()),
                            reason: snap.status.as_str().to_string(),
                        }),
                    }
                }
            } else {
                let plan = berth_scheduler::place(&snaps, request)
                    .map_err(|e| error::invalid(e.to_string()))?;
                placements = plan.placements;
                plan_failures = plan.failures;
            }
            failures.extend(plan_failures.into_iter().map(|f| Failure {
                arn: f.arn,
                reason: Some(f.reason),
                detail: None,
            }));

            // Build the transaction.
            let mut txn = Txn::new().when(keys::cluster(cluster), cluster_rev);
            let mut touched: BTreeMap<String, (ContainerInstanceRecord, u64)> = BTreeMap::new();
            let mut planned = Vec::new();
            for p in &placements {
                let Some((rec, rev)) = instances.iter().find(|(r, _)| r.arn == p.instance_arn)
                else {
                    continue;
                };
                let entry = touched.entry(rec.id.clone()).or_insert_with(|| (rec.clone(), *rev));
                let t = self
                    .new_task(cluster, &entry.0, td, overrides, req, started_by, group, task_tags);
                *entry.0.task_groups.entry(group.to_string()).or_default() += 1;
                entry.0.used_cpu += req.cpu;
                entry.0.used_memory_mib += req.memory_mib;
                entry.0.used_ports_tcp.extend(&req.host_ports_tcp);
                entry.0.used_ports_udp.extend(&req.host_ports_udp);
                planned.push(t);
            }
            for (id, (rec, rev)) in &touched {
                let mut rec = rec.clone();
                rec.version += 1;
                let key = keys::container_instance(cluster, id);
                txn = txn
                    .when(key.clone(), *rev)
                    .put(key, records::encode(&rec))
                    .put(keys::instance_desired(id), Vec::new());
            }
            for p in &planned {
                let r = &p.rec;
                txn = txn
                    .put(keys::task(cluster, &r.id), records::encode(r))
                    .put(keys::live_task(cluster, &r.id), Vec::new())
                    .put(keys::task_by_status(cluster, "PENDING", &r.id), Vec::new())
                    .put(keys::task_by_desired(cluster, "RUNNING", &r.id), Vec::new())
                    .put(keys::instance_task(&r.instance_id, &r.id), b"PENDING".to_vec());
                if let Some(svc) = service {
                    let idx = berth_model::service::ServiceTaskIndex {
                        deployment: started_by.unwrap_or_default().to_string(),
                        healthy: false,
                    };
                    txn = txn.put(keys::service_task(cluster, svc, &r.id), records::encode(&idx));
                }
            }
            if let Some(token) = client_token {
                let arns: Vec<String> =
                    planned.iter().filter_map(|p| p.rec.task.task_arn.clone()).collect();
                txn = txn
                    .when(keys::run_token(cluster, token), 0)
                    .put(keys::run_token(cluster, token), records::encode(&arns));
            }
            if records::commit(&*self.store, txn).await? {
                return Ok((planned.into_iter().map(|p| p.rec.task).collect(), failures));
            }
            if let Some(token) = client_token
                && let Some(done) = self.tasks_for_token(cluster, token).await?
            {
                return Ok((done, vec![]));
            }
        }
        Err(error::contention(&format!("cluster {cluster}")))
    }

    /// The tasks an earlier RunTask with this client token started.
    async fn tasks_for_token(
        &self,
        cluster: &str,
        token: &str,
    ) -> Result<Option<Vec<Task>>, AwsError> {
        let Some((arns, _)) =
            records::get::<Vec<String>>(&*self.store, &keys::run_token(cluster, token)).await?
        else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for arn in arns {
            if let Some(id) = self.scope.child_id("task", cluster, &arn)
                && let Some((t, _)) =
                    records::get::<TaskRecord>(&*self.store, &keys::task(cluster, id)).await?
            {
                out.push(t.task);
            }
        }
        Ok(Some(out))
    }

    fn check_launch(
        input_launch: Option<LaunchType>,
        strategy: Option<&[CapacityProviderStrategyItem]>,
    ) -> Result<(), AwsError> {
        if let Some(items) = strategy.filter(|s| !s.is_empty()) {
            if input_launch.is_some() {
                return Err(error::invalid(
                    "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
                ));
            }
            berth_scheduler::wire::capacity_provider_strategy(items).map_err(field_error)?;
            let names: Vec<&str> =
                items.iter().filter_map(|i| i.capacity_provider.as_deref()).collect();
            return Err(error::invalid(format!(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster ({}). Berth does not implement capacity providers yet, so none can be associated: omit capacityProviderStrategy or use --launch-type EC2.",
                names.join(", ")
            )));
        }
        match input_launch {
            None | Some(LaunchType::Ec2) | Some(LaunchType::External) => Ok(()),
            Some(other) => Err(ErrorCode::UnsupportedFeatureException.with(format!(
                "launchType {other} is not supported by Berth yet; use EC2 (tasks run on the registered container instances)."
            ))),
        }
    }

    pub(super) async fn run_task_op(
        &self,
        input: RunTaskRequest,
    ) -> Result<RunTaskResponse, AwsError> {
        let cluster = self.existing_cluster(input.cluster.as_deref()).await?;
        Self::check_launch(input.launch_type, input.capacity_provider_strategy.as_deref())?;
        let strategies =
            berth_scheduler::wire::strategies(input.placement_strategy.as_deref().unwrap_or(&[]))
                .map_err(field_error)?;
        let count = input.count.unwrap_or(1);
        if !(1..=10).contains(&count) {
            return Err(error::invalid(format!("count must be between 1 and 10; got {count}.")));
        }
        if let Some(t) = &input.client_token
            && (t.is_empty() || t.len() > 64)
        {
            return Err(error::invalid("clientToken must be 1-64 characters."));
        }
        if input.started_by.as_ref().is_some_and(|s| s.len() > 128) {
            return Err(error::invalid("startedBy must be at most 128 characters."));
        }
        let task_tags = input.tags.clone().unwrap_or_default();
        tags::validate(&task_tags, "tags").map_err(error::model)?;
        if let Some(token) = &input.client_token
            && let Some(done) = self.tasks_for_token(&cluster, token).await?
        {
            return Ok(RunTaskResponse { tasks: Some(done), failures: Some(vec![]) });
        }
        let launch = Launch {
            task_definition: input.task_definition.as_deref().unwrap_or(""),
            overrides: input.overrides.as_ref(),
            started_by: input.started_by.as_deref(),
            group: input.group.as_deref(),
            tags: &task_tags,
            constraints: input.placement_constraints.as_deref().unwrap_or(&[]),
            strategies,
        };
        let (tasks, failures) = self
            .launch(&cluster, &launch, count as u32, None, input.client_token.as_deref())
            .await?;
        Ok(RunTaskResponse { tasks: Some(tasks), failures: Some(failures) })
    }

    pub(super) async fn start_task_op(
        &self,
        input: StartTaskRequest,
    ) -> Result<StartTaskResponse, AwsError> {
        let cluster = self.existing_cluster(input.cluster.as_deref()).await?;
        let instances = input.container_instances.clone().unwrap_or_default();
        if instances.is_empty() || instances.len() > 10 {
            return Err(error::invalid("containerInstances must name between 1 and 10 instances."));
        }
        let task_tags = input.tags.clone().unwrap_or_default();
        tags::validate(&task_tags, "tags").map_err(error::model)?;
        let launch = Launch {
            task_definition: input.task_definition.as_deref().unwrap_or(""),
            overrides: input.overrides.as_ref(),
            started_by: input.started_by.as_deref(),
            group: input.group.as_deref(),
            tags: &task_tags,
            constraints: &[],
            strategies: Vec::new(),
        };
        let (tasks, failures) =
            self.launch(&cluster, &launch, instances.len() as u32, Some(&instances), None).await?;
        Ok(StartTaskResponse { tasks: Some(tasks), failures: Some(failures) })
    }

    /// Read-modify-write of one task with compare-and-set, keeping every index and the
    /// instance's reserved resources in step with the task's statuses.
    pub(super) async fn update_task(
        &self,
        cluster: &str,
        task_id: &str,
        mut f: impl FnMut(&mut TaskRecord) -> Result<(), AwsError>,
    ) -> Result<Option<TaskRecord>, AwsError> {
        let key = keys::task(cluster, task_id);
        for _ in 0..CAS_ATTEMPTS {
            let Some((before, rev)) = records::get::<TaskRecord>(&*self.store, &key).await? else {
                return Ok(None);
            };
            let mut after = before.clone();
            f(&mut after)?;
            if after == before {
                return Ok(Some(after));
            }
            after.task.version = Some(before.task.version.unwrap_or(0) + 1);
            let old_last = before.task.last_status.clone().unwrap_or_default();
            let new_last = after.task.last_status.clone().unwrap_or_default();
            let old_desired = before.task.desired_status.clone().unwrap_or_default();
            let new_desired = after.task.desired_status.clone().unwrap_or_default();
            let mut txn =
                Txn::new().when(key.clone(), rev).put(key.clone(), records::encode(&after));
            if old_last != new_last {
                txn = txn
                    .delete(keys::task_by_status(cluster, &old_last, task_id))
                    .put(keys::task_by_status(cluster, &new_last, task_id), Vec::new());
            }
            if old_desired != new_desired {
                txn = txn
                    .delete(keys::task_by_desired(cluster, &old_desired, task_id))
                    .put(keys::task_by_desired(cluster, &new_desired, task_id), Vec::new())
                    .put(keys::instance_desired(&after.instance_id), Vec::new());
            }
            let stopped_now = new_last == "STOPPED" && old_last != "STOPPED";
            if stopped_now {
                txn = txn
                    .delete(keys::live_task(cluster, task_id))
                    .delete(keys::instance_task(&after.instance_id, task_id))
                    .put(keys::instance_desired(&after.instance_id), Vec::new());
                // Release what the task held on its instance (if the instance still exists).
                let ikey = keys::container_instance(cluster, &after.instance_id);
                if let Some((mut inst, irev)) =
                    records::get::<ContainerInstanceRecord>(&*self.store, &ikey).await?
                {
                    inst.used_cpu = (inst.used_cpu - after.reserved_cpu).max(0);
                    if let Some(g) = after.task.group.as_deref()
                        && let Some(n) = inst.task_groups.get_mut(g)
                    {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            inst.task_groups.remove(g);
                        }
                    }
                    inst.used_memory_mib =
                        (inst.used_memory_mib - after.reserved_memory_mib).max(0);
                    for p in &after.reserved_ports_tcp {
                        if let Some(i) = inst.used_ports_tcp.iter().position(|x| x == p) {
                            inst.used_ports_tcp.remove(i);
                        }
                    }
                    for p in &after.reserved_ports_udp {
                        if let Some(i) = inst.used_ports_udp.iter().position(|x| x == p) {
                            inst.used_ports_udp.remove(i);
                        }
                    }
                    inst.version += 1;
                    txn = txn.when(ikey.clone(), irev).put(ikey, records::encode(&inst));
                }
            } else if old_last != new_last && new_last != "STOPPED" {
                txn = txn.put(
                    keys::instance_task(&after.instance_id, task_id),
                    new_last.clone().into_bytes(),
                );
            }
            if records::commit(&*self.store, txn).await? {
                return Ok(Some(after));
            }
        }
        Err(error::contention(&format!("task {task_id}")))
    }

    pub(super) async fn stop_task_op(
        &self,
        input: StopTaskRequest,
    ) -> Result<StopTaskResponse, AwsError> {
        let cluster = self.cluster_name(input.cluster.as_deref())?;
        let given = input.task.clone().unwrap_or_default();
        let Some(id) = self.scope.child_id("task", &cluster, &given) else {
            return Err(task_not_found(&given));
        };
        if input.reason.as_ref().is_some_and(|r| r.len() > 255) {
            return Err(error::invalid("reason must be at most 255 characters."));
        }
        let now = self.now();
        let reason = input.reason.clone().unwrap_or_else(|| "Task stopped by user".to_string());
        let rec = self
            .update_task(&cluster, id, |t| {
                if t.task.desired_status.as_deref() != Some("STOPPED") {
                    t.task.desired_status = Some("STOPPED".into());
                    t.task.stop_code = Some(TaskStopCode::UserInitiated);
                    t.task.stopped_reason = Some(reason.clone());
                    t.task.stopping_at = Some(now);
                }
                Ok(())
            })
            .await?
            .ok_or_else(|| task_not_found(&given))?;
        Ok(StopTaskResponse { task: Some(rec.task) })
    }

    pub(super) async fn describe_tasks_op(
        &self,
        input: DescribeTasksRequest,
    ) -> Result<DescribeTasksResponse, AwsError> {
        let cluster = self.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.tasks.unwrap_or_default();
        if given.is_empty() || given.len() > 100 {
            return Err(error::invalid("tasks must name between 1 and 100 tasks."));
        }
        let with_tags = input.include.unwrap_or_default().contains(&TaskField::Tags);
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        for g in &given {
            let found = match self.scope.child_id("task", &cluster, g) {
                Some(id) => {
                    records::get::<TaskRecord>(&*self.store, &keys::task(&cluster, id)).await?
                }
                None => None,
            };
            match found {
                Some((mut r, _)) => {
                    if !with_tags {
                        r.task.tags = None;
                    }
                    tasks.push(r.task)
                }
                None => failures.push(Failure {
                    arn: Some(if g.starts_with("arn:") {
                        g.clone()
                    } else {
                        self.scope.task_arn(&cluster, g)
                    }),
                    reason: Some("MISSING".into()),
                    detail: None,
                }),
            }
        }
        Ok(DescribeTasksResponse { tasks: Some(tasks), failures: Some(failures) })
    }

    pub(super) async fn list_tasks_op(
        &self,
        input: ListTasksRequest,
    ) -> Result<ListTasksResponse, AwsError> {
        let cluster = self.existing_cluster(input.cluster.as_deref()).await?;
        if input.service_name.is_some() && input.started_by.is_some() {
            return Err(error::invalid("serviceName and startedBy cannot be used together."));
        }
        let desired = match input.desired_status {
            None | Some(DesiredStatus::Running) => "RUNNING",
            Some(DesiredStatus::Stopped) => "STOPPED",
            // Berth's tasks are desired RUNNING from creation: none is desired PENDING.
            Some(DesiredStatus::Pending) => {
                return Ok(ListTasksResponse { task_arns: Some(vec![]), next_token: None });
            }
        };
        let instance_id = match input.container_instance.as_deref() {
            Some(g) => Some(
                self.scope
                    .child_id("container-instance", &cluster, g)
                    .ok_or_else(|| {
                        error::invalid(format!("containerInstance '{g}' is not valid."))
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let prefix = keys::tasks_by_desired_prefix(&cluster, desired);
        let page = Page::parse(input.max_results, input.next_token.as_deref(), 100, &prefix)?;
        let unfiltered = input.family.is_none()
            && input.started_by.is_none()
            && instance_id.is_none()
            && input.service_name.is_none()
            && input.launch_type.is_none();
        if unfiltered {
            let (ks, next) = page.keys(&*self.store, &prefix, false).await?;
            let arns = ks
                .iter()
                .filter_map(|k| k.rsplit('/').next())
                .map(|id| self.scope.task_arn(&cluster, id))
                .collect();
            return Ok(ListTasksResponse { task_arns: Some(arns), next_token: next });
        }
        // Filtered: walk the desired-status index in chunks, reading records, until the page
        // is full. The token is the last index key examined.
        let mut arns = Vec::new();
        let mut cursor = page.after.clone();
        let mut next = None;
        'scan: loop {
            let mut range = Range::prefix(&prefix).limit(256);
            if let Some(c) = &cursor {
                range.start = format!("{c}\u{1}");
            }
            let chunk = self.store.range(range).await.map_err(error::store)?;
            if chunk.is_empty() {
                break;
            }
            let ids: Vec<String> = chunk
                .iter()
                .filter_map(|r| r.key.rsplit('/').next())
                .map(|id| keys::task(&cluster, id))
                .collect();
            let recs = self.store.get_many(&ids).await.map_err(error::store)?;
            let by_key: BTreeMap<&str, &berth_store::Record> =
                recs.iter().map(|r| (r.key.as_str(), r)).collect();
            for (idx, tk) in chunk.iter().zip(&ids) {
                cursor = Some(idx.key.clone());
                let Some(r) = by_key.get(tk.as_str()) else { continue };
                let t: TaskRecord =
                    serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
                let family_ok = input
                    .family
                    .as_ref()
                    .is_none_or(|f| t.task_definition.family.as_ref() == Some(f));
                let by_ok =
                    input.started_by.as_ref().is_none_or(|s| t.task.started_by.as_ref() == Some(s));
                let inst_ok = instance_id.as_ref().is_none_or(|i| &t.instance_id == i);
                let svc_ok = input
                    .service_name
                    .as_ref()
                    .is_none_or(|s| t.task.group.as_deref() == Some(&format!("service:{s}")));
                let lt_ok = input.launch_type.is_none_or(|l| t.task.launch_type == Some(l));
                if family_ok && by_ok && inst_ok && svc_ok && lt_ok {
                    if arns.len() == page.limit {
                        // One more match exists: the page ends at the previous key.
                        next = Some(crate::pagination::token(&last_key(&arns, &cluster, &prefix)));
                        break 'scan;
                    }
                    arns.push(t.id.clone());
                }
            }
        }
        let arns = arns.iter().map(|id| self.scope.task_arn(&cluster, id)).collect();
        Ok(ListTasksResponse { task_arns: Some(arns), next_token: next })
    }

    /// Applies a state change reported for a task (by an agent through the report endpoint,
    /// or through the public SubmitTaskStateChange).
    async fn apply_task_report(&self, report: &TaskReport) -> Result<(), AwsError> {
        let change = &report.change;
        let cluster = self.cluster_name(change.cluster.as_deref())?;
        let given = change.task.clone().unwrap_or_default();
        let Some(id) = self.scope.child_id("task", &cluster, &given) else {
            return Err(task_not_found(&given));
        };
        let new_status = match change.status.as_deref() {
            None => None,
            Some(s) => Some(
                parse_status(s)
                    .ok_or_else(|| error::invalid(format!("status '{s}' is not a task status.")))?,
            ),
        };
        let now = self.now();
        // Fencing: a report from an older registration of the instance, or not newer than the
        // last one applied to this task, is stale and changes nothing.
        let mark = (report.epoch, report.seq);
        if report.epoch > 0
            && let Some((t, _)) =
                records::get::<TaskRecord>(&*self.store, &keys::task(&cluster, id)).await?
            && let Some((inst, _)) = records::get::<ContainerInstanceRecord>(
                &*self.store,
                &keys::container_instance(&cluster, &t.instance_id),
            )
            .await?
            && report.epoch < inst.epoch
        {
            tracing::debug!(
                task = id,
                report_epoch = report.epoch,
                instance_epoch = inst.epoch,
                "stale report ignored"
            );
            return Ok(());
        }
        let updated = self
            .update_task(&cluster, id, |t| {
                if report.epoch > 0 {
                    if t.report_mark.is_some_and(|m| mark <= m) {
                        return Ok(()); // a delayed or replayed report
                    }
                    t.report_mark = Some(mark);
                }
                if !report.container_instance_arn.is_empty()
                    && t.task.container_instance_arn.as_deref()
                        != Some(report.container_instance_arn.as_str())
                {
                    return Err(error::invalid(format!(
                        "Task {given} is not placed on {}.",
                        report.container_instance_arn
                    )));
                }
                let known = t
                    .task
                    .last_status
                    .as_deref()
                    .and_then(parse_status)
                    .unwrap_or(TaskStatus::Pending);
                if known == TaskStatus::Stopped {
                    return Ok(()); // Final: stale reports change nothing.
                }
                for c in change.containers.iter().flatten() {
                    let Some(tc) =
                        t.task.containers.iter_mut().flatten().find(|x| x.name == c.container_name)
                    else {
                        continue;
                    };
                    if let Some(s) = &c.status {
                        let rank = |s: &str| match s {
                            "PENDING" => 0,
                            "RUNNING" => 1,
                            "STOPPED" => 2,
                            _ => 0,
                        };
                        if rank(s) >= rank(tc.last_status.as_deref().unwrap_or("PENDING")) {
                            tc.last_status = Some(s.clone());
                        }
                    }
                    if c.exit_code.is_some() {
                        tc.exit_code = c.exit_code;
                    }
                    if c.reason.is_some() {
                        tc.reason = c.reason.clone();
                    }
                    if c.runtime_id.is_some() {
                        tc.runtime_id = c.runtime_id.clone();
                    }
                    if c.image_digest.is_some() {
                        tc.image_digest = c.image_digest.clone();
                    }
                    if let Some(nb) = &c.network_bindings {
                        tc.network_bindings = Some(nb.clone());
                    }
                }
                for h in &report.container_health {
                    if let Some(tc) = t
                        .task
                        .containers
                        .iter_mut()
                        .flatten()
                        .find(|x| x.name.as_deref() == Some(h.container_name.as_str()))
                    {
                        tc.health_status = Some(h.health_status);
                    }
                }
                t.task.health_status = Some(task_health(
                    &t.task_definition,
                    t.task.containers.as_deref().unwrap_or(&[]),
                ));
                if change.pull_started_at.is_some() && t.task.pull_started_at.is_none() {
                    t.task.pull_started_at = change.pull_started_at;
                }
                if change.pull_stopped_at.is_some() && t.task.pull_stopped_at.is_none() {
                    t.task.pull_stopped_at = change.pull_stopped_at;
                }
                if let Some(to) = new_status
                    && known.can_transition(to)
                {
                    t.task.last_status = Some(to.as_str().to_string());
                    if to >= TaskStatus::Running
                        && t.task.started_at.is_none()
                        && to != TaskStatus::Stopped
                    {
                        t.task.started_at = Some(report.started_at.unwrap_or(now));
                    }
                    if to >= TaskStatus::Deactivating && t.task.stopping_at.is_none() {
                        t.task.stopping_at = Some(now);
                    }
                    if to == TaskStatus::Stopped {
                        t.task.stopped_at = Some(now);
                        t.task.execution_stopped_at =
                            Some(change.execution_stopped_at.unwrap_or(now));
                        t.task.desired_status = Some("STOPPED".into());
                        if t.task.stop_code.is_none() {
                            t.task.stop_code =
                                Some(report.stop_code.unwrap_or(TaskStopCode::TaskFailedToStart));
                        }
                        if t.task.stopped_reason.is_none() {
                            t.task.stopped_reason = change.reason.clone();
                        }
                        t.task.stopping_at.get_or_insert(now);
                        for c in t.task.containers.iter_mut().flatten() {
                            c.last_status = Some("STOPPED".into());
                        }
                    }
                }
                Ok(())
            })
            .await?;
        if updated.is_none() {
            return Err(task_not_found(&given));
        }
        Ok(())
    }

    pub(super) async fn submit_task_state_change_op(
        &self,
        input: SubmitTaskStateChangeRequest,
    ) -> Result<SubmitTaskStateChangeResponse, AwsError> {
        let report = TaskReport { change: input, ..Default::default() };
        self.apply_task_report(&report).await?;
        Ok(SubmitTaskStateChangeResponse { acknowledgment: Some("ACK".into()) })
    }

    pub(super) async fn submit_container_state_change_op(
        &self,
        input: SubmitContainerStateChangeRequest,
    ) -> Result<SubmitContainerStateChangeResponse, AwsError> {
        let report = TaskReport {
            change: SubmitTaskStateChangeRequest {
                cluster: input.cluster,
                task: input.task,
                containers: Some(vec![ContainerStateChange {
                    container_name: input.container_name,
                    runtime_id: input.runtime_id,
                    exit_code: input.exit_code,
                    network_bindings: input.network_bindings,
                    reason: input.reason,
                    status: input.status,
                    image_digest: None,
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        self.apply_task_report(&report).await?;
        Ok(SubmitContainerStateChangeResponse { acknowledgment: Some("ACK".into()) })
    }

    /// The agent channel's report endpoint.
    pub async fn agent_report(
        &self,
        _ctx: &RequestContext,
        report: TaskReport,
    ) -> Result<(), AwsError> {
        self.apply_task_report(&report).await
    }

    /// The complete desired state of an instance.
    async fn desired_state(
        &self,
        cluster: &str,
        rec: &ContainerInstanceRecord,
    ) -> Result<Vec<DesiredTask>, AwsError> {
        let idx = self
            .store
            .range(Range::prefix(&keys::instance_tasks_prefix(&rec.id)))
            .await
            .map_err(error::store)?;
        let ids: Vec<String> = idx
            .iter()
            .filter_map(|r| r.key.rsplit('/').next())
            .map(|id| keys::task(cluster, id))
            .collect();
        let mut out = Vec::new();
        for r in self.store.get_many(&ids).await.map_err(error::store)? {
            let t: TaskRecord =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            out.push(DesiredTask {
                task_arn: t.task.task_arn.clone().unwrap_or_default(),
                desired_status: t.task.desired_status.clone().unwrap_or_default(),
                last_status: t.task.last_status.clone().unwrap_or_default(),
                task_definition: t.task_definition.clone(),
                overrides: t.task.overrides.clone(),
                stopped_reason: t.task.stopped_reason.clone(),
                created_at: t.task.created_at.unwrap_or(0.0),
            });
        }
        Ok(out)
    }

    /// The agent channel's poll: records the heartbeat, then answers with the instance's
    /// complete desired state as soon as it is newer than what the agent has seen.
    pub async fn agent_poll(
        &self,
        _ctx: &RequestContext,
        req: PollRequest,
    ) -> Result<PollResponse, AwsError> {
        let cluster = self.cluster_name(Some(&req.cluster))?;
        let Some(id) =
            self.scope.child_id("container-instance", &cluster, &req.container_instance_arn)
        else {
            return Err(error::invalid(
                "containerInstanceArn is not a container instance of this cluster.",
            ));
        };
        let id = id.to_string();
        let heartbeat = self.agent_heartbeat_secs;
        let wait = std::time::Duration::from_secs(u64::from(req.wait_seconds)).min(MAX_POLL_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let mut watch = self.store.watch();
        let mut beat = true;
        loop {
            watch.borrow_and_update();
            let Some((rec, _)) = records::get::<ContainerInstanceRecord>(
                &*self.store,
                &keys::container_instance(&cluster, &id),
            )
            .await?
            else {
                // Deregistered (or never registered): the agent must stop everything.
                return Ok(PollResponse {
                    version: self.store.revision().await.map_err(error::store)?,
                    instance_status: "INACTIVE".into(),
                    tasks: vec![],
                    heartbeat_seconds: heartbeat,
                    epoch: 0,
                });
            };
            if beat {
                let hb = HeartbeatRecord { last_seen: self.now() };
                self.store
                    .txn(Txn::new().put(keys::instance_heartbeat(&id), records::encode(&hb)))
                    .await
                    .map_err(error::store)?;
                beat = false;
            }
            let version = self
                .store
                .get(&keys::instance_desired(&id))
                .await
                .map_err(error::store)?
                .map_or(0, |r| r.mod_revision);
            if version > req.seen_version || tokio::time::Instant::now() >= deadline {
                return Ok(PollResponse {
                    version,
                    instance_status: rec.status.clone(),
                    tasks: self.desired_state(&cluster, &rec).await?,
                    heartbeat_seconds: heartbeat,
                    epoch: rec.epoch,
                });
            }
            match tokio::time::timeout_at(deadline, watch.changed()).await {
                Ok(Ok(())) | Err(_) => continue,
                Ok(Err(_)) => return Err(error::contention("the store watch")),
            }
        }
    }
}

/// The key of the last task listed (for a filtered ListTasks page's token).
fn last_key(ids: &[String], _cluster: &str, prefix: &str) -> String {
    format!("{prefix}{}", ids.last().map(String::as_str).unwrap_or(""))
}

/// ECS's task health from its containers' (rules in [`berth_model::lifecycle::task_health`]).
fn task_health(td: &TaskDefinition, containers: &[Container]) -> HealthStatus {
    let views: Vec<ContainerHealth> = td
        .container_definitions
        .iter()
        .flatten()
        .map(|d| ContainerHealth {
            essential: d.essential.unwrap_or(true),
            has_health_check: d.health_check.is_some(),
            status: containers
                .iter()
                .find(|c| c.name == d.name)
                .and_then(|c| c.health_status)
                .unwrap_or(HealthStatus::Unknown),
        })
        .collect();
    berth_model::lifecycle::task_health(&views)
}
