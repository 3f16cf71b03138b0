//! Task sets of services with the `EXTERNAL` deployment controller: CreateTaskSet,
//! DescribeTaskSets, UpdateTaskSet, UpdateServicePrimaryTaskSet, DeleteTaskSet.
//!
//! Contract: task sets live in their service's record ([`berth_model::task_set`]), written
//! with the service record's compare-and-set ([`Services::update_service_record`]). The API
//! writes a set's configuration (task definition, scale, status); the service controller
//! (`controller/task_sets.rs`) launches and stops its tasks and keeps its counts and
//! stability. DeleteTaskSet makes a set DRAINING; the controller removes it once its tasks
//! have stopped. Only services with the `EXTERNAL` controller have task sets; the others are
//! refused with `InvalidParameterException`, as ECS does.

use std::sync::Arc;

use berth_model::service::{ServiceRecord, new_deployment_id};
use berth_model::task_set::{self as ts, TaskSetRecord};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::super::RequestContext;
use super::super::clusters::Clusters;
use super::super::core::Core;
use super::super::describe::ByIds;
use super::super::task_definitions::TaskDefinitions;
use super::apply_update;
use super::{Found, Services, rule_error};
use crate::error;

/// The task set operations (see the module header).
pub struct TaskSets {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    services: Arc<Services>,
    task_definitions: Arc<TaskDefinitions>,
}

fn task_set_not_found() -> AwsError {
    ErrorCode::TaskSetNotFoundException.with("The specified task set does not exist.")
}

fn service_not_found() -> AwsError {
    ErrorCode::ServiceNotFoundException.with("Service not found.")
}

fn not_external() -> AwsError {
    error::invalid(
        "Amazon ECS only supports task set management on services configured to use external deployment controller. Create the service with deploymentController type EXTERNAL.",
    )
}

impl TaskSets {
    pub fn new(
        core: Arc<Core>,
        clusters: Arc<Clusters>,
        services: Arc<Services>,
        task_definitions: Arc<TaskDefinitions>,
    ) -> Self {
        Self { core, clusters, services, task_definitions }
    }

    /// The cluster and service names a request gives; the cluster must exist.
    async fn names(
        &self,
        cluster: Option<&str>,
        service: Option<&str>,
    ) -> Result<(String, String), AwsError> {
        let cluster = self.clusters.existing_cluster(cluster).await?;
        let given = service.unwrap_or_default();
        let name = self
            .core
            .scope
            .child_id("service", &cluster, given)
            .ok_or_else(service_not_found)?
            .to_string();
        Ok((cluster, name))
    }

    /// A task set id from an id (`ecs-svc/NNN`) or an ARN of this service's task sets.
    fn task_set_id<'a>(&self, cluster: &str, service: &str, given: &'a str) -> Option<&'a str> {
        if given.starts_with("arn:") {
            let res = self.core.scope.ecs_resource(given)?;
            res.strip_prefix(&format!("task-set/{cluster}/{service}/")).filter(|id| !id.is_empty())
        } else {
            (!given.is_empty()).then_some(given)
        }
    }

    fn task_set_arn(&self, cluster: &str, service: &str, id: &str) -> String {
        self.core.scope.ecs_arn(&format!("task-set/{cluster}/{service}/{id}"))
    }

    /// Edits one task set of a live `EXTERNAL` service with compare-and-set; `f` edits it
    /// (given the service's desired count and the record's other sets) or refuses. Returns
    /// the set after the edit.
    async fn update_task_set(
        &self,
        cluster: &str,
        name: &str,
        given: &str,
        mut f: impl FnMut(&mut Vec<TaskSetRecord>, usize, i32) -> Result<(), AwsError>,
    ) -> Result<TaskSet, AwsError> {
        let id = self.task_set_id(cluster, name, given).ok_or_else(task_set_not_found)?;
        let mut out = None;
        let updated = self
            .services
            .update_service_record(cluster, name, |rec| {
                check_live_external(rec)?;
                let i = rec
                    .task_sets
                    .iter()
                    .position(|s| s.id() == id)
                    .ok_or_else(task_set_not_found)?;
                let desired = rec.settings.desired_count;
                f(&mut rec.task_sets, i, desired)?;
                out = rec.task_sets.iter().find(|s| s.id() == id).map(|s| s.to_wire(false));
                Ok(())
            })
            .await?;
        match (updated, out) {
            (Some(_), Some(set)) => Ok(set),
            (Some(_), None) => Err(task_set_not_found()),
            (None, _) => Err(self.services.no_live_service(cluster, name).await),
        }
    }
}

/// A live service that is ACTIVE and uses the `EXTERNAL` controller.
fn check_live_external(rec: &ServiceRecord) -> Result<(), AwsError> {
    if rec.service.status.as_deref() != Some("ACTIVE") {
        return Err(ErrorCode::ServiceNotActiveException.with("Service was not ACTIVE."));
    }
    if !rec.is_external() {
        return Err(not_external());
    }
    Ok(())
}

/// Recomputes a set's computed desired count for `desired`; a change makes it STABILIZING.
fn rescale(set: &mut TaskSetRecord, desired: i32, now: f64) {
    let target = if set.status() == ts::DRAINING {
        0
    } else {
        ts::computed_desired_count(desired, set.scale_percent())
    };
    let w = &mut set.task_set;
    if w.computed_desired_count != Some(target) {
        w.computed_desired_count = Some(target);
        if w.stability_status != Some(StabilityStatus::Stabilizing) {
            w.stability_status = Some(StabilityStatus::Stabilizing);
            w.stability_status_at = Some(now);
        }
    }
    w.updated_at = Some(now);
}

impl TaskSetsApi<RequestContext> for TaskSets {
    async fn create_task_set(
        &self,
        _ctx: &RequestContext,
        input: CreateTaskSetRequest,
    ) -> Result<CreateTaskSetResponse, AwsError> {
        let (cluster, name) =
            self.names(input.cluster.as_deref(), input.service.as_deref()).await?;
        let scale = ts::validate_create(&input).map_err(rule_error)?;
        let td =
            self.task_definitions.runnable(input.task_definition.as_deref().unwrap_or("")).await?;
        let td_arn = td.task_definition.task_definition_arn.clone().unwrap_or_default();
        // The set's capacity provider strategy: the request's (never with a launch type), else
        // the cluster's default when no launch type is given, as ECS decides it.
        let strategy = match self.clusters.live_cluster(&cluster).await? {
            Some((cluster_rec, _)) => super::super::capacity_providers::strategy_for(
                input.capacity_provider_strategy.as_deref(),
                input.launch_type,
                &cluster_rec,
            )?
            .map(|shares| super::super::capacity_providers::shown_strategy(&shares)),
            None => None,
        };
        let launch_type = if strategy.is_some() {
            None
        } else {
            Some(input.launch_type.unwrap_or(LaunchType::Ec2))
        };
        // A set on Fargate (its launch type, or a strategy of Fargate providers only) runs in
        // awsvpc on the pool, as a Fargate service does: the same checks of the task
        // definition, platform version and network configuration.
        let fargate = super::service_on_fargate(launch_type, strategy.as_deref());
        self.services
            .check_launch(
                &td_arn,
                fargate,
                input.network_configuration.as_ref(),
                input.platform_version.as_deref(),
            )
            .await?;
        let now = self.core.now();
        let id = new_deployment_id();
        let mut out = None;
        let updated = self
            .services
            .update_service_record(&cluster, &name, |rec| {
                check_live_external(rec)?;
                if let Some(token) = &input.client_token
                    && let Some(existing) =
                        rec.task_sets.iter().find(|s| s.client_token.as_ref() == Some(token))
                {
                    out = Some(existing.to_wire(false));
                    return Ok(());
                }
                let computed = ts::computed_desired_count(
                    rec.settings.desired_count,
                    scale.value.unwrap_or(100.0),
                );
                let set = TaskSetRecord {
                    task_set: TaskSet {
                        id: Some(id.clone()),
                        task_set_arn: Some(self.task_set_arn(&cluster, &name, &id)),
                        service_arn: rec.service.service_arn.clone(),
                        cluster_arn: Some(self.core.scope.cluster_arn(&cluster)),
                        external_id: input.external_id.clone(),
                        status: Some(ts::ACTIVE.into()),
                        task_definition: Some(td_arn.clone()),
                        computed_desired_count: Some(computed),
                        pending_count: Some(0),
                        running_count: Some(0),
                        created_at: Some(now),
                        updated_at: Some(now),
                        launch_type,
                        capacity_provider_strategy: strategy.clone(),
                        network_configuration: input.network_configuration.clone(),
                        platform_version: fargate.then(|| {
                            input.platform_version.clone().unwrap_or_else(|| "LATEST".into())
                        }),
                        platform_family: fargate
                            .then(|| super::super::fargate::PLATFORM_FAMILY.to_string()),
                        load_balancers: Some(vec![]),
                        service_registries: Some(vec![]),
                        scale: Some(scale.clone()),
                        stability_status: Some(ts::stability(computed, 0, 0)),
                        stability_status_at: Some(now),
                        tags: Some(input.tags.clone().unwrap_or_default()),
                        ..Default::default()
                    },
                    client_token: input.client_token.clone(),
                    consecutive_failures: 0,
                    next_launch_at: 0.0,
                };
                out = Some(set.to_wire(false));
                rec.task_sets.push(set);
                Ok(())
            })
            .await?;
        if updated.is_none() {
            return Err(self.services.no_live_service(&cluster, &name).await);
        }
        Ok(CreateTaskSetResponse { task_set: out })
    }

    async fn describe_task_sets(
        &self,
        _ctx: &RequestContext,
        input: DescribeTaskSetsRequest,
    ) -> Result<DescribeTaskSetsResponse, AwsError> {
        let (cluster, name) =
            self.names(input.cluster.as_deref(), input.service.as_deref()).await?;
        let with_tags = input.include.unwrap_or_default().contains(&TaskSetField::Tags);
        let Some((rec, _, found)) = self.services.find_service(&cluster, &name).await? else {
            return Err(service_not_found());
        };
        if found == Found::Inactive {
            return Err(ErrorCode::ServiceNotActiveException.with("Service was not ACTIVE."));
        }
        if !rec.is_external() {
            return Err(not_external());
        }
        let Some(given) = input.task_sets.filter(|g| !g.is_empty()) else {
            let all = rec.task_sets.iter().map(|s| s.to_wire(with_tags)).collect();
            return Ok(DescribeTaskSetsResponse { task_sets: Some(all), failures: Some(vec![]) });
        };
        let mut out = ByIds::new();
        for g in &given {
            let shown = self
                .task_set_id(&cluster, &name, g)
                .and_then(|id| rec.task_sets.iter().find(|s| s.id() == id))
                .map(|s| s.to_wire(with_tags));
            out.record(g, shown, |id| self.task_set_arn(&cluster, &name, id));
        }
        Ok(DescribeTaskSetsResponse { task_sets: Some(out.found), failures: Some(out.failures) })
    }

    async fn update_task_set(
        &self,
        _ctx: &RequestContext,
        input: UpdateTaskSetRequest,
    ) -> Result<UpdateTaskSetResponse, AwsError> {
        let (cluster, name) =
            self.names(input.cluster.as_deref(), input.service.as_deref()).await?;
        if input.scale.is_none() {
            return Err(error::invalid("scale is required: give value (0-100) and unit PERCENT."));
        }
        let scale = ts::validate_scale(input.scale.as_ref()).map_err(rule_error)?;
        let now = self.core.now();
        let given = input.task_set.clone().unwrap_or_default();
        let set = TaskSets::update_task_set(self, &cluster, &name, &given, |sets, i, desired| {
            if sets[i].status() == ts::DRAINING {
                return Err(error::invalid(
                    "taskSet: the task set is DRAINING (being deleted) and can't be scaled.",
                ));
            }
            sets[i].task_set.scale = Some(scale.clone());
            rescale(&mut sets[i], desired, now);
            Ok(())
        })
        .await?;
        Ok(UpdateTaskSetResponse { task_set: Some(set) })
    }

    async fn update_service_primary_task_set(
        &self,
        _ctx: &RequestContext,
        input: UpdateServicePrimaryTaskSetRequest,
    ) -> Result<UpdateServicePrimaryTaskSetResponse, AwsError> {
        let (cluster, name) =
            self.names(input.cluster.as_deref(), input.service.as_deref()).await?;
        let now = self.core.now();
        let given = input.primary_task_set.clone().unwrap_or_default();
        let set = TaskSets::update_task_set(self, &cluster, &name, &given, |sets, i, _| {
            if sets[i].status() == ts::DRAINING {
                return Err(error::invalid(
                    "primaryTaskSet: the task set is DRAINING (being deleted) and can't become PRIMARY.",
                ));
            }
            for (j, s) in sets.iter_mut().enumerate() {
                let status = if j == i {
                    ts::PRIMARY
                } else if s.status() == ts::PRIMARY {
                    ts::ACTIVE
                } else {
                    continue;
                };
                if s.status() != status {
                    s.task_set.status = Some(status.into());
                    s.task_set.updated_at = Some(now);
                }
            }
            Ok(())
        })
        .await?;
        Ok(UpdateServicePrimaryTaskSetResponse { task_set: Some(set) })
    }

    async fn delete_task_set(
        &self,
        _ctx: &RequestContext,
        input: DeleteTaskSetRequest,
    ) -> Result<DeleteTaskSetResponse, AwsError> {
        let (cluster, name) =
            self.names(input.cluster.as_deref(), input.service.as_deref()).await?;
        let now = self.core.now();
        let force = input.force == Some(true);
        let given = input.task_set.clone().unwrap_or_default();
        let set = TaskSets::update_task_set(self, &cluster, &name, &given, |sets, i, desired| {
            let s = &mut sets[i];
            if s.status() == ts::DRAINING {
                return Ok(());
            }
            let target = ts::computed_desired_count(desired, s.scale_percent());
            if target > 0 && !force {
                return Err(error::invalid(format!(
                    "taskSet: the task set is scaled to {target} tasks ({}% of the service's desiredCount {desired}): scale it to 0 with UpdateTaskSet first, or pass force to delete it anyway.",
                    s.scale_percent()
                )));
            }
            s.task_set.status = Some(ts::DRAINING.into());
            rescale(s, desired, now);
            Ok(())
        })
        .await?;
        Ok(DeleteTaskSetResponse { task_set: Some(set) })
    }
}

/// The service's task sets after its desired count changed to `desired` (UpdateService).
pub(super) fn follow_desired_count(rec: &mut ServiceRecord, desired: i32, now: f64) {
    for s in &mut rec.task_sets {
        rescale(s, desired, now);
    }
}

/// Placement members without a task definition to combine them with (an `EXTERNAL` service's
/// own): parsed with the scheduler.
pub(super) fn check_placement_alone(
    constraints: &[PlacementConstraint],
    strategies: &[PlacementStrategy],
) -> Result<(), AwsError> {
    berth_scheduler::wire::constraints(constraints, &[])
        .map_err(|e| error::invalid(e.to_string()))?;
    berth_scheduler::wire::strategies(strategies).map_err(|e| error::invalid(e.to_string()))?;
    Ok(())
}

impl Services {
    /// UpdateService on an `EXTERNAL` service: only what ECS allows there
    /// ([`berth_model::service_rules::validate_update_external`]); a new desired count
    /// rescales every task set.
    pub(super) async fn update_external_service(
        &self,
        cluster: &str,
        name: &str,
        input: &UpdateServiceRequest,
    ) -> Result<UpdateServiceResponse, AwsError> {
        berth_model::service_rules::validate_update_external(input).map_err(rule_error)?;
        let now = self.core.now();
        let updated = self
            .update_service_record(cluster, name, |rec| {
                if rec.service.status.as_deref() != Some("ACTIVE") {
                    return Err(
                        ErrorCode::ServiceNotActiveException.with("Service was not ACTIVE.")
                    );
                }
                let settings = berth_model::service_rules::validate_update(input, &rec.settings)
                    .map_err(rule_error)?;
                let constraints = input
                    .placement_constraints
                    .clone()
                    .or_else(|| rec.service.placement_constraints.clone())
                    .unwrap_or_default();
                let strategies = input
                    .placement_strategy
                    .clone()
                    .or_else(|| rec.service.placement_strategy.clone())
                    .unwrap_or_default();
                check_placement_alone(&constraints, &strategies)?;
                if settings.desired_count != rec.settings.desired_count {
                    follow_desired_count(rec, settings.desired_count, now);
                }
                rec.service.desired_count = Some(settings.desired_count);
                apply_update(rec, input, settings, constraints, strategies);
                Ok(())
            })
            .await?;
        match updated {
            Some(rec) => {
                Ok(UpdateServiceResponse { service: Some(self.render_service(&rec, false)) })
            }
            None => Err(self.no_live_service(cluster, name).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_wire::ecs::*;

    use crate::ecs::testing::*;

    /// The service's tasks desired RUNNING, counted by `startedBy`.
    async fn by_set(h: &Harness, ctx: &crate::ecs::RequestContext) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        let arns: Vec<String> =
            service_tasks(&h.ecs, ctx, "ext").await.into_iter().map(|t| t.0).collect();
        if arns.is_empty() {
            return out;
        }
        let req = DescribeTasksRequest { tasks: Some(arns), ..Default::default() };
        for t in h.ecs.tasks().describe_tasks(ctx, req).await.unwrap().tasks.unwrap() {
            assert_eq!(t.group.as_deref(), Some("service:ext"));
            *out.entry(t.started_by.unwrap()).or_default() += 1;
        }
        out
    }

    #[tokio::test]
    async fn the_controller_runs_each_task_set_at_its_share_of_the_desired_count() {
        let h = Harness::new();
        let ctx = h.ctx();
        let ecs = &h.ecs;
        register_instance_in(ecs, &ctx, Some("us-east-1a")).await;
        let td = task_definition(ecs, &ctx, "web").await;
        let create = CreateServiceRequest {
            service_name: Some("ext".into()),
            desired_count: Some(4),
            deployment_controller: Some(DeploymentController {
                r#type: Some(DeploymentControllerType::External),
            }),
            ..Default::default()
        };
        ecs.services().create_service(&ctx, create).await.unwrap();
        let set = |pct: f64| CreateTaskSetRequest {
            service: Some("ext".into()),
            task_definition: Some(td.clone()),
            scale: Some(Scale { value: Some(pct), unit: Some(ScaleUnit::Percent) }),
            ..Default::default()
        };
        let a = ecs.task_sets().create_task_set(&ctx, set(100.0)).await.unwrap().task_set.unwrap();
        let b = ecs.task_sets().create_task_set(&ctx, set(50.0)).await.unwrap().task_set.unwrap();
        let (a, b) = (a.id.unwrap(), b.id.unwrap());
        let want = |x: usize, y: usize| BTreeMap::from([(a.clone(), x), (b.clone(), y)]);
        let w = want(4, 2);
        passes_until(&h, "4 + 2 tasks", async || by_set(&h, &ctx).await == w).await;

        // Reported RUNNING: the sets count them and reach a steady state.
        for (task, _) in service_tasks(ecs, &ctx, "ext").await {
            report_running(ecs, &ctx, &task).await;
        }
        let describe = async || {
            let req = DescribeTaskSetsRequest { service: Some("ext".into()), ..Default::default() };
            ecs.task_sets().describe_task_sets(&ctx, req).await.unwrap().task_sets.unwrap()
        };
        passes_until(&h, "steady sets", async || {
            describe()
                .await
                .iter()
                .all(|s| s.stability_status == Some(StabilityStatus::SteadyState))
        })
        .await;
        let sets = describe().await;
        let counts: Vec<_> = sets
            .iter()
            .map(|s| (s.computed_desired_count, s.running_count, s.pending_count))
            .collect();
        assert_eq!(counts, vec![(Some(4), Some(4), Some(0)), (Some(2), Some(2), Some(0))]);
        let svc = ecs
            .services()
            .describe_services(
                &ctx,
                DescribeServicesRequest {
                    services: Some(vec!["ext".into()]),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .services
            .unwrap()
            .remove(0);
        assert_eq!(svc.running_count, Some(6));
        assert_eq!(svc.task_sets.map(|t| t.len()), Some(2));

        // Desired count 3: ceil(3 x 100%) = 3 and ceil(3 x 50%) = 2.
        let upd = UpdateServiceRequest {
            service: Some("ext".into()),
            desired_count: Some(3),
            ..Default::default()
        };
        ecs.services().update_service(&ctx, upd).await.unwrap();
        let w = want(3, 2);
        passes_until(&h, "3 + 2 tasks", async || by_set(&h, &ctx).await == w).await;

        // Deleting b (forced) stops its tasks.
        let del = DeleteTaskSetRequest {
            service: Some("ext".into()),
            task_set: Some(b.clone()),
            force: Some(true),
            ..Default::default()
        };
        let gone = ecs.task_sets().delete_task_set(&ctx, del).await.unwrap().task_set.unwrap();
        assert_eq!(gone.status.as_deref(), Some("DRAINING"));
        let w = BTreeMap::from([(a.clone(), 3)]);
        passes_until(&h, "only a's tasks", async || by_set(&h, &ctx).await == w).await;
    }
}
