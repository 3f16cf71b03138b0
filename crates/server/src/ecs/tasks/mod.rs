//! Tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks, and task scale-in
//! protection (`protection.rs`).
//!
//! Launch type FARGATE (or a FARGATE / FARGATE_SPOT strategy, never mixed with instance
//! providers) is checked here (`crate::ecs::fargate`) and placed on the Fargate pool; an
//! awsvpc task definition's `networkConfiguration` is checked here (`crate::ecs::awsvpc`).
//!
//! RunTask and StartTask resolve what to launch here and hand it to the placement executor
//! ([`crate::ecs::placement`]), which places and commits it in one transaction. Every change
//! to an existing task goes through [`records::TaskRecords::update`], which keeps the task's
//! indexes and its instance's reservations in step with its statuses.

mod protection;
pub mod spot;
pub use self::protection::TaskProtection;
pub mod records;

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_model::records::TaskRecord;
use berth_model::{keys, tags};
use berth_scheduler::PlacementRequest;
use berth_store::Range;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use self::records::{NewTask, TaskRecords};
use super::RequestContext;
use super::capacity_providers::strategy_for;
use super::clusters::Clusters;
use super::core::Core;
use super::describe::ByIds;
use super::placement::{ClientToken, Job, Placement, ProviderPart};
use super::task_definitions::TaskDefinitions;
use super::{awsvpc, fargate};
use crate::error;
use crate::pagination::Page;

/// ECS's answer for a task that does not exist (StopTask, SubmitTaskStateChange...).
pub(super) fn task_not_found() -> AwsError {
    error::invalid("The referenced task was not found.")
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
    /// The caller, whose `taskLongArnFormat` account setting picks the tasks' ARN format.
    principal: &'a str,
    /// With a capacity provider strategy: how many tasks each provider gets.
    providers: Option<Vec<berth_scheduler::capacity::ProviderPart>>,
    /// Launch type FARGATE (or a FARGATE / FARGATE_SPOT strategy): placed on the pool.
    fargate: bool,
    /// The request's `networkConfiguration` (awsvpc task definitions).
    network: Option<&'a NetworkConfiguration>,
}

/// Owns the task API; task records are written through [`TaskRecords`].
pub struct Tasks {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    task_definitions: Arc<TaskDefinitions>,
    task_records: Arc<TaskRecords>,
    placement: Arc<Placement>,
}

impl Tasks {
    /// Whether StopTask drains task `id` before its containers stop: a task of a service
    /// (its `group` `service:NAME` and `startedBy` one of that service's deployments) behind
    /// load balancers or publishing Service Connect endpoints goes DEACTIVATING first, as the
    /// service's own stops do; the service controller deregisters its targets (or endpoints)
    /// and moves it on to STOPPING once they drained. Any other task stops at once.
    async fn drains_before_stop(&self, cluster: &str, id: &str) -> Result<bool, AwsError> {
        let Some((t, _)) = self.task_records.get(cluster, id).await? else { return Ok(false) };
        if t.last_status() != TaskStatus::Running {
            return Ok(false);
        }
        let Some(name) = t.task.group.as_deref().and_then(|g| g.strip_prefix("service:")) else {
            return Ok(false);
        };
        let Some((svc, _)) = crate::records::get::<berth_model::service::ServiceRecord>(
            &*self.core.store,
            &keys::service(cluster, name),
        )
        .await?
        else {
            return Ok(false);
        };
        let started_by = t.task.started_by.as_deref().unwrap_or_default();
        let Some(d) =
            svc.deployments.iter().chain(&svc.past_deployments).find(|d| d.id == started_by)
        else {
            return Ok(false);
        };
        let behind_lb = !svc.load_balancers_of(d).is_empty();
        Ok(!svc.is_external()
            && (behind_lb || crate::servicediscovery::service_connect::publishes(&svc)))
    }
    pub fn new(
        core: Arc<Core>,
        clusters: Arc<Clusters>,
        task_definitions: Arc<TaskDefinitions>,
        task_records: Arc<TaskRecords>,
        placement: Arc<Placement>,
    ) -> Self {
        Self { core, clusters, task_definitions, task_records, placement }
    }

    /// Why a task was not found: its cluster does not exist (ClusterNotFoundException, as ECS
    /// answers), else the task does not. Asked only once the task is missing, so the
    /// common path reads no cluster record.
    async fn missing_task(&self, cluster: &str) -> AwsError {
        match self.clusters.existing_cluster(Some(cluster)).await {
            Ok(_) => task_not_found(),
            Err(e) => e,
        }
    }

    /// ListTasks' `serviceName` names a service of the cluster, live or deleted (INACTIVE),
    /// else ServiceNotFoundException, as ECS answers.
    async fn service_exists(&self, cluster: &str, name: &str) -> Result<(), AwsError> {
        for key in [keys::service(cluster, name), keys::inactive_service(cluster, name)] {
            if self.core.store.get(&key).await.map_err(error::store)?.is_some() {
                return Ok(());
            }
        }
        Err(ErrorCode::ServiceNotFoundException.with("Service not found."))
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

    /// Resolves what RunTask / StartTask asked to launch and places it.
    async fn launch(
        &self,
        cluster: &str,
        l: &Launch<'_>,
        count: u32,
        only: Option<&[String]>,
        client_token: Option<ClientToken<'_>>,
    ) -> Result<(Vec<Task>, Vec<Failure>), AwsError> {
        let rec = self.task_definitions.runnable(l.task_definition).await?;
        let td = &rec.task_definition;
        let long_arn = super::account_settings::long_arn_format(
            &self.core,
            Some(l.principal),
            SettingName::TaskLongArnFormat,
        )
        .await?;
        Self::validate_overrides(td, l.overrides)?;
        if l.fargate {
            fargate::check_task_definition(td)?;
            fargate::check_overrides(td, l.overrides)?;
            if !l.constraints.is_empty() {
                return Err(error::invalid(
                    "Task placement constraints are not supported on Fargate.",
                ));
            }
        }
        let network =
            awsvpc::plan(&*self.core.store, td.network_mode, l.network, l.fargate).await?;
        let constraints = berth_scheduler::wire::constraints(
            l.constraints,
            td.placement_constraints.as_deref().unwrap_or(&[]),
        )
        .map_err(field_error)?;
        let group = l
            .group
            .map(str::to_string)
            .unwrap_or_else(|| format!("family:{}", td.family.clone().unwrap_or_default()));
        let mut requirements = berth_scheduler::task_requirements(td, l.overrides);
        if l.fargate {
            // The pool's hosts are Berth's own: they run whatever Fargate runs.
            requirements.required_attributes.clear();
        }
        let request = PlacementRequest {
            count,
            requirements,
            group,
            constraints,
            strategies: l.strategies.clone(),
            seed: uuid::Uuid::new_v4().as_u64_pair().0,
            targets: Vec::new(),
        };
        let job = Job {
            spec: NewTask {
                cluster,
                td,
                overrides: l.overrides,
                requirements: &request.requirements,
                started_by: l.started_by,
                group: &request.group,
                tags: l.tags,
                service: None,
                capacity_provider: None,
                long_arn: Some(long_arn),
                fargate: l.fargate,
                network: network.as_ref(),
            },
            request: &request,
            only,
            client_token,
        };
        let placed = match &l.providers {
            None => self.placement.place(&job).await?,
            Some(shares) => {
                let mut parts = Vec::with_capacity(shares.len());
                for share in shares {
                    let mut request = request.clone();
                    request.count = share.count;
                    if !fargate::is_fargate_provider(&share.capacity_provider) {
                        request.constraints.push(
                            berth_scheduler::capacity::provider_constraint(
                                &share.capacity_provider,
                            )
                            .map_err(|e| error::invalid(e.to_string()))?,
                        );
                    }
                    parts.push(ProviderPart {
                        capacity_provider: &share.capacity_provider,
                        request,
                    });
                }
                self.placement.place_parts(&job, &parts).await?
            }
        };
        Ok((placed.tasks, placed.failures))
    }

    /// The launch type of a task placed without a capacity provider strategy; `true` for
    /// FARGATE.
    fn check_launch(input_launch: Option<LaunchType>) -> Result<bool, AwsError> {
        match input_launch {
            None | Some(LaunchType::Ec2) | Some(LaunchType::External) => Ok(false),
            Some(LaunchType::Fargate) => Ok(true),
            Some(other) => Err(ErrorCode::UnsupportedFeatureException.with(format!(
                "launchType {other} is not supported by Berth yet; use EC2 (tasks run on the registered container instances) or FARGATE."
            ))),
        }
    }
}

impl TasksApi<RequestContext> for Tasks {
    async fn run_task(
        &self,
        ctx: &RequestContext,
        input: RunTaskRequest,
    ) -> Result<RunTaskResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let (cluster_rec, _) = self
            .clusters
            .live_cluster(&cluster)
            .await?
            .ok_or_else(super::core::cluster_not_found)?;
        // A capacity provider strategy (the request's, else the cluster's default unless a
        // launch type is given), else the launch type.
        let shares = strategy_for(
            input.capacity_provider_strategy.as_deref(),
            input.launch_type,
            &cluster_rec,
        )?;
        let fargate = match &shares {
            None => Self::check_launch(input.launch_type)?,
            Some(shares) => fargate_strategy(shares)?,
        };
        if fargate {
            fargate::platform_version(input.platform_version.as_deref())?;
        }
        let strategies =
            berth_scheduler::wire::strategies(input.placement_strategy.as_deref().unwrap_or(&[]))
                .map_err(field_error)?;
        let count = input.count.unwrap_or(1);
        if !(1..=10).contains(&count) {
            return Err(error::invalid(format!("count must be between 1 and 10; got {count}.")));
        }
        let providers =
            shares.as_ref().map(|shares| berth_scheduler::capacity::parts(shares, count as u32));
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
        let request_hash = request_hash(&input, &cluster, count);
        let client_token = input
            .client_token
            .as_deref()
            .map(|token| ClientToken { token, request_hash: &request_hash });
        if let Some(token) = client_token
            && let Some(done) = self.placement.tasks_for_token(&cluster, token).await?
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
            principal: &ctx.principal.arn,
            providers,
            fargate,
            network: input.network_configuration.as_ref(),
        };
        let (tasks, failures) =
            self.launch(&cluster, &launch, count as u32, None, client_token).await?;
        Ok(RunTaskResponse { tasks: Some(tasks), failures: Some(failures) })
    }

    async fn start_task(
        &self,
        ctx: &RequestContext,
        input: StartTaskRequest,
    ) -> Result<StartTaskResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
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
            principal: &ctx.principal.arn,
            providers: None,
            fargate: false,
            network: input.network_configuration.as_ref(),
        };
        let (tasks, failures) =
            self.launch(&cluster, &launch, instances.len() as u32, Some(&instances), None).await?;
        Ok(StartTaskResponse { tasks: Some(tasks), failures: Some(failures) })
    }

    async fn stop_task(
        &self,
        _ctx: &RequestContext,
        input: StopTaskRequest,
    ) -> Result<StopTaskResponse, AwsError> {
        let cluster = self.core.cluster_name(input.cluster.as_deref())?;
        let given = input.task.clone().unwrap_or_default();
        let Some(id) = self.core.scope.child_id("task", &cluster, &given) else {
            return Err(self.missing_task(&cluster).await);
        };
        if input.reason.as_ref().is_some_and(|r| r.len() > 255) {
            return Err(error::invalid("reason must be at most 255 characters."));
        }
        let now = self.core.now();
        let reason = input.reason.clone().unwrap_or_else(|| "Task stopped by user".to_string());
        let drain = self.drains_before_stop(&cluster, id).await?;
        let rec = self
            .task_records
            .update(&cluster, id, |t| {
                if t.desired_status() != DesiredTaskStatus::Stopped {
                    t.set_desired_status(DesiredTaskStatus::Stopped);
                    t.task.stop_code = Some(TaskStopCode::UserInitiated);
                    t.task.stopped_reason = Some(reason.clone());
                    t.task.stopping_at = Some(now);
                    if drain && t.last_status() == TaskStatus::Running {
                        t.set_last_status(TaskStatus::Deactivating);
                    }
                }
                records::stop_if_unplaced(t, now);
                Ok(())
            })
            .await?;
        let Some(rec) = rec else { return Err(self.missing_task(&cluster).await) };
        Ok(StopTaskResponse { task: Some(rec.task) })
    }

    async fn describe_tasks(
        &self,
        _ctx: &RequestContext,
        input: DescribeTasksRequest,
    ) -> Result<DescribeTasksResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.tasks.unwrap_or_default();
        if given.is_empty() || given.len() > 100 {
            return Err(error::invalid("tasks must name between 1 and 100 tasks."));
        }
        let with_tags = input.include.unwrap_or_default().contains(&TaskField::Tags);
        let mut out = ByIds::new();
        for g in &given {
            let found = match self.core.scope.child_id("task", &cluster, g) {
                Some(id) => self.task_records.get(&cluster, id).await?,
                None => None,
            };
            let task = found.map(|(mut r, _)| {
                if !with_tags {
                    r.task.tags = None;
                }
                r.task
            });
            out.record(g, task, |name| self.core.scope.task_arn(&cluster, name));
        }
        Ok(DescribeTasksResponse { tasks: Some(out.found), failures: Some(out.failures) })
    }

    async fn list_tasks(
        &self,
        _ctx: &RequestContext,
        input: ListTasksRequest,
    ) -> Result<ListTasksResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        if input.service_name.is_some() && input.started_by.is_some() {
            return Err(error::invalid("serviceName and startedBy cannot be used together."));
        }
        if let Some(name) = input.service_name.as_deref() {
            self.service_exists(&cluster, name).await?;
        }
        let desired = match input.desired_status.map(DesiredTaskStatus::from_wire) {
            None => DesiredTaskStatus::Running,
            Some(Some(d)) => d,
            // Berth's tasks are desired RUNNING from creation: none is desired PENDING.
            Some(None) => {
                return Ok(ListTasksResponse { task_arns: Some(vec![]), next_token: None });
            }
        };
        let instance_id = match input.container_instance.as_deref() {
            Some(g) => Some(
                self.core
                    .scope
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
            let (ks, next) = page.keys(&*self.core.store, &prefix, false).await?;
            let arns = ks
                .iter()
                .filter_map(|k| k.rsplit('/').next())
                .map(|id| self.core.scope.task_arn(&cluster, id))
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
            let chunk = self.core.store.range(range).await.map_err(error::store)?;
            if chunk.is_empty() {
                break;
            }
            let ids: Vec<String> = chunk
                .iter()
                .filter_map(|r| r.key.rsplit('/').next())
                .map(|id| keys::task(&cluster, id))
                .collect();
            let recs = self.core.store.get_many(&ids).await.map_err(error::store)?;
            let by_key: BTreeMap<&str, &berth_store::Record> =
                recs.iter().map(|r| (r.key.as_str(), r)).collect();
            for (idx, tk) in chunk.iter().zip(&ids) {
                cursor = Some(idx.key.clone());
                let Some(r) = by_key.get(tk.as_str()) else { continue };
                let t: TaskRecord =
                    serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
                let family_ok =
                    input.family.as_ref().is_none_or(|f| task_family(&t) == Some(f.as_str()));
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
        let arns = arns.iter().map(|id| self.core.scope.task_arn(&cluster, id)).collect();
        Ok(ListTasksResponse { task_arns: Some(arns), next_token: next })
    }
}

/// Whether a strategy runs on Fargate: all its providers are FARGATE / FARGATE_SPOT (`true`)
/// or none is (`false`); ECS refuses a mix.
pub(super) fn fargate_strategy(
    shares: &[berth_scheduler::capacity::ProviderShare],
) -> Result<bool, AwsError> {
    let on_fargate = shares.iter().filter(|s| fargate::is_fargate_provider(&s.capacity_provider));
    match on_fargate.count() {
        0 => Ok(false),
        n if n == shares.len() => Ok(true),
        _ => Err(error::invalid(
            "capacityProviderStrategy: a capacity provider strategy can't contain both Fargate capacity providers (FARGATE, FARGATE_SPOT) and Auto Scaling group capacity providers.",
        )),
    }
}

/// What identifies a RunTask request for its `clientToken`: a SHA-256 of its parameters,
/// normalised so that a retry matches however it spells the defaults. The cluster is the
/// resolved name and `count` is explicit; absent, null, empty lists and empty objects are all
/// the same; object keys are sorted. Everything else counts as given (`web` and `web:3` are
/// different parameters even when they name the same revision).
fn request_hash(input: &RunTaskRequest, cluster: &str, count: i32) -> String {
    fn canonical(v: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match v {
            Value::Null => None,
            Value::Array(items) => {
                let items: Vec<Value> = items.into_iter().filter_map(canonical).collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> =
                    map.into_iter().filter_map(|(k, v)| Some((k, canonical(v)?))).collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                (!entries.is_empty()).then(|| Value::Object(entries.into_iter().collect()))
            }
            other => Some(other),
        }
    }
    let normalised = RunTaskRequest {
        cluster: Some(cluster.to_string()),
        count: Some(count),
        client_token: None,
        ..input.clone()
    };
    let value = serde_json::to_value(&normalised).unwrap_or_default();
    let bytes = canonical(value).map(|v| v.to_string()).unwrap_or_default();
    berth_sigv4::sha256_hex(bytes.as_bytes())
}

/// The key of the last task listed (for a filtered ListTasks page's token).
fn last_key(ids: &[String], _cluster: &str, prefix: &str) -> String {
    format!("{prefix}{}", ids.last().map(String::as_str).unwrap_or(""))
}

/// The family of the revision a task runs, from its ARN (`...:task-definition/<family>:<n>`).
fn task_family(t: &TaskRecord) -> Option<&str> {
    let arn = t.task.task_definition_arn.as_deref()?;
    let tail = &arn[arn.find(":task-definition/")? + ":task-definition/".len()..];
    Some(tail.rsplit_once(':')?.0)
}
