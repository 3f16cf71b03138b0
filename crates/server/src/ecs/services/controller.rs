//! The service controller's executor: reads each service's snapshot from the store, asks
//! `berth_controllers::service::reconcile` (pure) what to do, does it, and records the
//! outcome. One pass over every service runs after every store commit (coalesced) and at
//! least once a second, so time-based rules (health grace, settle time, launch delays, lost
//! instances) fire without a commit.
//!
//! Order within a service's pass: stop tasks, start tasks (each placement is its own
//! compare-and-set transaction, writing the service's task index), then one compare-and-set
//! on the service record that stores deployments, counts, events and drops the index entries
//! of the STOPPED tasks just accounted for. If that last write loses to an UpdateService,
//! only the events are kept and the next pass recomputes the rest from the store: a task
//! already started is found through the index, so nothing is started twice.
//!
//! A start with a capacity provider (the decision splits a deployment's starts by its
//! strategy) is placed only on that provider's instances, and its tasks record the provider
//! (`capacityProviderName`); a FARGATE or FARGATE_SPOT share (or a FARGATE service) is
//! placed on the Fargate pool (`crate::ecs::fargate`), each task with its own interface in
//! the service's awsvpc network (`crate::ecs::awsvpc`).
//!
//! Services with the `EXTERNAL` deployment controller take the same steps with the task set
//! scheduler's decision instead (`controller/task_sets.rs`, deciding in
//! `berth_controllers::task_sets`): their tasks' `startedBy` is their task set's id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use std::sync::Arc;

use berth_controllers::service::{
    self as ctl, Config, Decision, Health, InstanceView, Start, StopWhy, TaskView,
};
use berth_model::keys;
use berth_model::lifecycle::{DesiredTaskStatus, InstanceStatus, TaskStatus};
use berth_model::records::TaskRecord;
use berth_model::service::{MAX_EVENTS, MAX_PAST_DEPLOYMENTS, ServiceRecord, ServiceTaskIndex};
use berth_scheduler::{Constraint, PlacementRequest, SpreadField, Strategy};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::super::core::Core;
use super::super::placement::{
    CAPACITY_PROVIDER_FAILURE, InstanceSummary, Job, Placed, Placement, ProviderPart,
};
use super::super::task_definitions::TaskDefinitions;
use super::super::tasks::records::{NewTask, TaskRecords};
use super::super::{awsvpc, fargate};
use crate::error;
use crate::records;

mod load_balancing;
mod task_sets;
mod traffic;
use load_balancing::LbPass;
use task_sets::TaskSetPass;
use traffic::traffic_pass;

/// A placement failure event is not repeated within this many seconds.
const PLACEMENT_EVENT_QUIET_SECS: f64 = 60.0;

/// A cluster's instances as one pass sees them.
struct ClusterView {
    instances: Vec<InstanceSummary>,
    /// `instances[..own]` are the cluster's own; the rest are the Fargate pool's.
    own: usize,
}

/// The service scheduler's executor (see the module header).
pub struct ServiceController {
    core: Arc<Core>,
    task_definitions: Arc<TaskDefinitions>,
    task_records: Arc<TaskRecords>,
    placement: Arc<Placement>,
}

impl ServiceController {
    pub fn new(
        core: Arc<Core>,
        task_definitions: Arc<TaskDefinitions>,
        task_records: Arc<TaskRecords>,
        placement: Arc<Placement>,
    ) -> Self {
        Self { core, task_definitions, task_records, placement }
    }

    /// Runs service passes until `stop` changes.
    pub async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut commits = self.core.store.watch();
        loop {
            let started = std::time::Instant::now();
            let result = self.service_pass().await;
            let region = &self.core.scope.region;
            crate::cloudwatch::prometheus::observe_pass("service", region, started, result.is_ok());
            if let Err(e) = result {
                tracing::warn!(error = %e.message, "service controller pass failed; retrying");
            }
            tokio::select! {
                _ = commits.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.core.services_woken() => {}
                _ = stop.changed() => return,
            }
            // Let a burst of commits settle into one pass.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One pass over every service of every cluster.
    pub async fn service_pass(&self) -> Result<(), AwsError> {
        // Fargate tasks waiting for pool capacity first: placed, or stopped on timeout.
        if let Err(e) = self.placement.provision_pending().await {
            tracing::warn!(error = %e.message, "Fargate provisioning pass failed; retrying");
        }
        let clusters =
            self.core.store.range(Range::prefix(keys::CLUSTERS)).await.map_err(error::store)?;
        for c in clusters {
            let Some(cluster) = c.key.strip_prefix(keys::CLUSTERS) else { continue };
            let services = self
                .core
                .store
                .range(Range::prefix(&keys::cluster_services_prefix(cluster)))
                .await
                .map_err(error::store)?;
            if services.is_empty() {
                continue;
            }
            let view = self.cluster_view(cluster).await?;
            for s in services {
                // One undecodable record must not stall every other service.
                let rec: ServiceRecord = match serde_json::from_slice(&s.value) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(key = %s.key, error = %e, "undecodable service record skipped");
                        continue;
                    }
                };
                if let Err(e) = self.reconcile_service(cluster, rec, s.mod_revision, &view).await {
                    tracing::warn!(cluster, service = %s.key, error = %e.message, "service pass failed");
                }
            }
        }
        Ok(())
    }

    /// The cluster's instances, and the Fargate pool's (its service tasks on Fargate run
    /// there; the pool's instances are never eligible for DAEMON services).
    async fn cluster_view(&self, cluster: &str) -> Result<ClusterView, AwsError> {
        let mut instances = self.placement.instances_view(cluster).await?;
        let own = instances.len();
        if !fargate::is_pool(cluster) {
            instances.extend(self.placement.instances_view(fargate::POOL_CLUSTER).await?);
        }
        Ok(ClusterView { instances, own })
    }

    async fn reconcile_service(
        &self,
        cluster: &str,
        rec: ServiceRecord,
        rev: u64,
        view: &ClusterView,
    ) -> Result<(), AwsError> {
        let now = self.core.now();
        let name = rec.name.clone();
        let deleting = rec.service.status.as_deref() == Some("DRAINING");
        // The service's tasks, through its index.
        let index = self
            .core
            .store
            .range(Range::prefix(&keys::service_tasks_prefix(cluster, &name)))
            .await
            .map_err(error::store)?;
        let mut tasks = Vec::with_capacity(index.len());
        // Behind load balancers: the task records, for their targets.
        let behind_lb = !rec.is_external() && rec.behind_load_balancers();
        // Publishing Service Connect services: stopping tasks drain too (issue #17).
        let drains_sc =
            !rec.is_external() && crate::servicediscovery::service_connect::publishes(&rec);
        let mut lb_records: HashMap<String, TaskRecord> = HashMap::new();
        // Whether a revision has an essential health-checked container, per revision ARN.
        let mut checked: HashMap<String, bool> = HashMap::new();
        for chunk in index.chunks(TASK_READ_BATCH) {
            let ids: Vec<&str> = chunk.iter().filter_map(|e| e.key.rsplit('/').next()).collect();
            let task_keys: Vec<String> = ids.iter().map(|id| keys::task(cluster, id)).collect();
            let found = self.core.store.get_many(&task_keys).await.map_err(error::store)?;
            let mut by_key: HashMap<&str, &berth_store::Record> =
                found.iter().map(|r| (r.key.as_str(), r)).collect();
            for ((e, task_id), key) in chunk.iter().zip(&ids).zip(&task_keys) {
                let idx: ServiceTaskIndex =
                    serde_json::from_slice(&e.value).map_err(|err| error::corrupt(&e.key, err))?;
                let rec: Option<TaskRecord> = match by_key.remove(key.as_str()) {
                    Some(r) => Some(
                        serde_json::from_slice(&r.value)
                            .map_err(|err| error::corrupt(&r.key, err))?,
                    ),
                    None => None,
                };
                let arn = rec.as_ref().and_then(|t| t.task.task_definition_arn.clone());
                let has_health_check = match arn {
                    Some(arn) => match checked.get(&arn) {
                        Some(c) => *c,
                        None => {
                            let c =
                                self.task_definitions.by_arn(&arn).await.is_ok_and(|td| {
                                    has_essential_health_check(&td.task_definition)
                                });
                            checked.insert(arn, c);
                            c
                        }
                    },
                    None => false,
                };
                if (behind_lb || drains_sc)
                    && let Some(r) = &rec
                {
                    lb_records.insert((*task_id).to_string(), r.clone());
                }
                tasks.push(task_view(task_id, &idx, rec, has_health_check, now));
            }
        }
        // Constraints for DAEMON eligibility: the service's and its task definition's.
        let primary_td = match rec.deployments.first() {
            Some(d) => Some(self.task_definitions.by_arn(&d.task_definition).await?),
            None => None,
        };
        let constraints = berth_scheduler::wire::constraints(
            rec.service.placement_constraints.as_deref().unwrap_or(&[]),
            primary_td
                .as_ref()
                .and_then(|t| t.task_definition.placement_constraints.as_deref())
                .unwrap_or(&[]),
        )
        .unwrap_or_default();
        let instances: Vec<InstanceView> = view
            .instances
            .iter()
            .enumerate()
            .map(|(n, i)| {
                let pool = n >= view.own;
                let (snap, silent) = (&i.snapshot, &i.silent_secs);
                let lost = *silent > self.core.timing.instance_lost_after_secs;
                let active = i.status == InstanceStatus::Active;
                let meets = constraints.iter().all(|c| match c {
                    Constraint::MemberOf { expression } => expression.eval(snap),
                    Constraint::DistinctInstance => true,
                });
                InstanceView {
                    id: i.id.clone(),
                    active,
                    lost,
                    silent_secs: *silent,
                    daemon_eligible: active && !lost && meets && !pool,
                    zone: snap.attributes.get("ecs.availability-zone").cloned().flatten(),
                }
            })
            .collect();
        if rec.is_external() {
            let input = TaskSetPass {
                cluster,
                rec: &rec,
                rev,
                tasks: &tasks,
                instances: &instances,
                view,
                now,
                deleting,
            };
            return self.reconcile_task_sets(input).await;
        }
        // Each task's targets and what the target groups say of them.
        let lb = match self.core.load_balancing.get() {
            Some(l) if behind_lb => Some(
                LbPass::read(&**l, cluster, &rec, &lb_records, &self.core.store, &mut tasks)
                    .await?,
            ),
            _ => None,
        };
        // Traffic-shifting deployments (`controller/traffic.rs`).
        let mut shift_events = Vec::new();
        let mut deployments = rec.deployments.clone();
        let mut hold_old = false;
        let mut hold_new = false;
        // A PAUSE hook rolled the deployment back: the service's task definition now.
        let mut rolled_back_to = None;
        if let (Some(_), Some(l)) = (&lb, self.core.load_balancing.get()) {
            let minute = self.core.timing.deployment_minute_secs;
            let t = traffic_pass(&**l, &rec, &tasks, minute, now, &mut shift_events).await?;
            hold_old = t.hold_old;
            hold_new = t.hold_new;
            if let (Some(p), Some(d)) = (t.primary, deployments.first_mut()) {
                d.traffic = Some(p);
            }
            if let Some(cause) = t.rollback {
                // As StopServiceDeployment's ROLLBACK; with nothing to return to, as ABORT.
                // Green's tasks stay for this pass (production is back on blue in its rules).
                let mut stop = super::deployments::StopPrimary {
                    rollback: true,
                    reason: format!("Rolled back: {cause}."),
                    cause: cause.clone(),
                    how: "ROLLBACK",
                };
                let desired = rec.settings.desired_count;
                let past = &rec.past_deployments;
                let result = super::deployments::stop_primary(
                    &name,
                    &mut deployments,
                    past,
                    desired,
                    &stop,
                    now,
                )
                .or_else(|_| {
                    stop.rollback = false;
                    stop.how = "ABORT";
                    stop.reason =
                        format!("Stopped: {cause}; no completed deployment to roll back to.");
                    super::deployments::stop_primary(
                        &name,
                        &mut deployments,
                        past,
                        desired,
                        &stop,
                        now,
                    )
                });
                if let Ok((message, td)) = result {
                    shift_events.push(message);
                    rolled_back_to = td;
                    hold_new = false;
                }
            }
        }
        let config = Config {
            name: name.clone(),
            settings: rec.settings.clone(),
            deleting,
            hold_old,
            hold_new,
        };
        let mut decision = ctl::reconcile(&ctl::Input {
            config: &config,
            deployments: &deployments,
            past_deployments: &rec.past_deployments,
            tasks: &tasks,
            instances: &instances,
            steady_since: rec.steady_since,
            now,
            settle_secs: self.core.timing.service_settle_secs,
        });
        if decision.task_definition.is_none() {
            decision.task_definition = rolled_back_to;
        }
        let mut events = shift_events;
        events.extend(decision.events.iter().cloned());
        // Behind load balancers a RUNNING task is deregistered before it stops: it waits in
        // DEACTIVATING for the deregistration delay (`LbPass::finish_deactivating`).
        // So do the endpoints of Service Connect services, for `plan::DRAIN_SECS`.
        let deactivate: HashSet<String> = match (&lb, drains_sc) {
            (None, false) => HashSet::new(),
            _ => tasks
                .iter()
                .filter(|t| t.last_status == TaskStatus::Running)
                .map(|t| t.id.clone())
                .collect(),
        };
        self.execute_stops(cluster, &name, &decision.stop, &deactivate, &mut events).await?;
        let td_of = |dep: &str| {
            decision.deployments.iter().find(|d| d.id == dep).map(|d| d.task_definition.clone())
        };
        self.execute_starts(cluster, &rec, &decision.start, &td_of, view, &mut events).await?;
        if decision.start.is_empty() && decision.stop.is_empty() && !deleting {
            self.return_to_spot(cluster, &rec, &tasks, &mut events).await?;
        }
        if let (Some(lb), Some(l)) = (&lb, self.core.load_balancing.get()) {
            let stopping: HashSet<&str> = decision.stop.iter().map(|(id, _)| id.as_str()).collect();
            lb.sync(&**l, &name, &tasks, &stopping, &mut events).await?;
            lb.finish_deactivating(&self.task_records, cluster, &lb_records, now).await?;
        } else if drains_sc {
            self.finish_sc_draining(cluster, &lb_records, now).await?;
        }
        self.commit_service(cluster, &rec, rev, &decision, events, now).await
    }

    /// Moves the DEACTIVATING tasks of a Service Connect service whose endpoints have
    /// drained (`plan::DRAIN_SECS` since they began to stop) to STOPPING.
    async fn finish_sc_draining(
        &self,
        cluster: &str,
        records: &HashMap<String, TaskRecord>,
        now: f64,
    ) -> Result<(), AwsError> {
        let drain = crate::servicediscovery::service_connect::plan::DRAIN_SECS as f64;
        for (id, t) in records {
            if t.last_status() != TaskStatus::Deactivating
                || now < t.task.stopping_at.unwrap_or(0.0) + drain
            {
                continue;
            }
            self.task_records
                .update(cluster, id, |t| {
                    if t.last_status() == TaskStatus::Deactivating {
                        t.set_last_status(TaskStatus::Stopping);
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// Whether a FARGATE_SPOT start of `cluster` falls back to FARGATE now: Spot has no
    /// capacity and the cluster has the fallback tag (`fargate`'s header).
    async fn spot_fallback(&self, cluster: &str) -> Result<bool, AwsError> {
        if fargate::spot_available(&*self.core.store).await? {
            return Ok(false);
        }
        let c = records::get::<berth_model::records::ClusterRecord>(
            &*self.core.store,
            &keys::cluster(cluster),
        )
        .await?;
        Ok(c.is_some_and(|(c, _)| fargate::fallback_enabled(&c.tags)))
    }

    /// Spot capacity is back: a steady service (one deployment, as many RUNNING tasks as it
    /// wants, nothing started or stopped this pass) stops one of its fallback tasks; the next
    /// pass's split starts its replacement on FARGATE_SPOT.
    async fn return_to_spot(
        &self,
        cluster: &str,
        rec: &ServiceRecord,
        tasks: &[TaskView],
        events: &mut Vec<String>,
    ) -> Result<(), AwsError> {
        let [primary] = rec.deployments.as_slice() else { return Ok(()) };
        if !primary
            .capacity_provider_strategy
            .iter()
            .any(|i| i.capacity_provider.as_deref() == Some(fargate::SPOT))
        {
            return Ok(());
        }
        let running: Vec<&TaskView> = tasks
            .iter()
            .filter(|t| t.last_status == TaskStatus::Running && t.desired_running)
            .collect();
        let on_fargate: Vec<&&TaskView> =
            running.iter().filter(|t| t.capacity_provider.as_deref() == Some("FARGATE")).collect();
        if on_fargate.is_empty()
            || running.len() != usize::try_from(rec.service.desired_count.unwrap_or(0)).unwrap_or(0)
            || !fargate::spot_available(&*self.core.store).await?
        {
            return Ok(());
        }
        for t in on_fargate {
            let Some((r, _)) = self.task_records.get(cluster, &t.id).await? else { continue };
            if !fargate::is_fallback_task(&r.task) {
                continue;
            }
            let now = self.core.now();
            let reason = "Moved back to FARGATE_SPOT: Spot capacity is available again";
            self.task_records
                .update(cluster, &t.id, |t| {
                    if t.desired_status() != DesiredTaskStatus::Stopped {
                        t.set_desired_status(DesiredTaskStatus::Stopped);
                        t.task.stop_code = Some(TaskStopCode::ServiceSchedulerInitiated);
                        t.task.stopped_reason = Some(reason.into());
                        t.task.stopping_at = Some(now);
                    }
                    Ok(())
                })
                .await?;
            events.push(format!(
                "(service {}) is moving (task {}) back to FARGATE_SPOT: Spot capacity is available again.",
                rec.name, t.id
            ));
            break;
        }
        Ok(())
    }

    /// Stops `stop`; a task of `deactivate` (RUNNING behind a load balancer) goes to
    /// DEACTIVATING first, still running, while its target drains.
    async fn execute_stops(
        &self,
        cluster: &str,
        name: &str,
        stop: &[(String, StopWhy)],
        deactivate: &HashSet<String>,
        events: &mut Vec<String>,
    ) -> Result<(), AwsError> {
        if stop.is_empty() {
            return Ok(());
        }
        let now = self.core.now();
        let mut stopped = Vec::new();
        let mut lost: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
        for (task_id, why) in stop {
            let reason = match why {
                StopWhy::Scaling { deployment } => {
                    format!("Scaling activity initiated by (deployment {deployment})")
                }
                StopWhy::Unhealthy => "Task failed container health checks".to_string(),
                StopWhy::Draining => format!(
                    "Service {name}: container instance is DRAINING; the task is replaced elsewhere"
                ),
                StopWhy::InstanceLost { instance, silent_secs } => format!(
                    "Service {name}: container instance {instance} lost (agent silent for {silent_secs} s); the task is replaced elsewhere"
                ),
                StopWhy::ElbUnhealthy { target_group } => {
                    events.push(format!(
                        "(service {name}) (task {task_id}) failed ELB health checks in (target-group {target_group})."
                    ));
                    format!("Task failed ELB health checks in (target-group {target_group})")
                }
            };
            // A lost instance's task cannot drain: its agent does not answer.
            let drain =
                deactivate.contains(task_id) && !matches!(why, StopWhy::InstanceLost { .. });
            let done = self
                .task_records
                .update(cluster, task_id, |t| {
                    if t.desired_status() != DesiredTaskStatus::Stopped {
                        t.set_desired_status(DesiredTaskStatus::Stopped);
                        t.task.stop_code = Some(TaskStopCode::ServiceSchedulerInitiated);
                        t.task.stopped_reason = Some(reason.clone());
                        t.task.stopping_at = Some(now);
                        if drain && t.last_status() == TaskStatus::Running {
                            t.set_last_status(TaskStatus::Deactivating);
                        }
                    }
                    Ok(())
                })
                .await?;
            if done.is_some() {
                match why {
                    StopWhy::InstanceLost { instance, silent_secs } => lost
                        .entry((instance.clone(), *silent_secs))
                        .or_default()
                        .push(format!("(task {task_id})")),
                    _ => stopped.push(format!("(task {task_id})")),
                }
            }
        }
        if !stopped.is_empty() {
            events.push(format!(
                "(service {name}) has stopped {} running tasks: {}.",
                stopped.len(),
                stopped.join(" ")
            ));
        }
        for ((instance, secs), ts) in lost {
            events.push(format!(
                "(service {name}) has stopped {} tasks on container instance {instance}, whose agent has been silent for {secs} seconds, to replace them elsewhere: {}.",
                ts.len(),
                ts.join(" ")
            ));
        }
        Ok(())
    }

    async fn execute_starts(
        &self,
        cluster: &str,
        rec: &ServiceRecord,
        starts: &[Start],
        td_of: &(dyn Fn(&str) -> Option<String> + Sync),
        view: &ClusterView,
        events: &mut Vec<String>,
    ) -> Result<(), AwsError> {
        let name = &rec.name;
        let mut started = Vec::new();
        for s in starts {
            // An EXTERNAL service's start is for one of its task sets: the set's own launch
            // type and network configuration, not the service's.
            let set = rec.task_sets.iter().find(|t| t.id() == s.deployment).map(|t| &t.task_set);
            let (launch_type, network_configuration) = match set {
                Some(t) => (t.launch_type, t.network_configuration.as_ref()),
                None => (rec.service.launch_type, rec.service.network_configuration.as_ref()),
            };
            // A FARGATE / FARGATE_SPOT share, or a FARGATE service (or set): on the pool.
            let fargate = match s.capacity_provider.as_deref() {
                Some(p) => fargate::is_fargate_provider(p),
                None => launch_type == Some(LaunchType::Fargate),
            };
            let td_arn = td_of(&s.deployment).unwrap_or_default();
            let td_rec = self.task_definitions.by_arn(&td_arn).await?;
            let td = &td_rec.task_definition;
            // Each task gets its own interface in the service's awsvpc network.
            let network = match awsvpc::plan(
                &*self.core.store,
                td.network_mode,
                network_configuration,
                fargate,
            )
            .await
            {
                Ok(n) => n,
                Err(e) => {
                    events.push(format!(
                        "(service {name}) was unable to place a task. Reason: {}",
                        e.message
                    ));
                    continue;
                }
            };
            let constraints = berth_scheduler::wire::constraints(
                rec.service.placement_constraints.as_deref().unwrap_or(&[]),
                td.placement_constraints.as_deref().unwrap_or(&[]),
            )
            .map_err(|e| error::invalid(e.to_string()))?;
            let mut strategies = berth_scheduler::wire::strategies(
                rec.service.placement_strategy.as_deref().unwrap_or(&[]),
            )
            .map_err(|e| error::invalid(e.to_string()))?;
            if strategies.is_empty() && s.instance.is_none() {
                // ECS's default for services: balanced across Availability Zones, then
                // across instances.
                strategies = vec![
                    Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
                    Strategy::Spread(SpreadField::InstanceId),
                ];
            }
            let mut requirements = berth_scheduler::task_requirements(td, None);
            if fargate {
                // The pool's hosts are Berth's own: they run whatever Fargate runs.
                requirements.required_attributes.clear();
            }
            let mut request = PlacementRequest {
                count: s.count,
                requirements,
                group: berth_model::service::task_group(name),
                constraints: if s.instance.is_some() || fargate { vec![] } else { constraints },
                strategies,
                seed: uuid::Uuid::new_v4().as_u64_pair().0,
                targets: Vec::new(),
            };
            // A provider's share goes only to the instances it owns (Fargate's: the pool).
            if let Some(p) = s.capacity_provider.as_deref().filter(|_| !fargate) {
                request.constraints.push(
                    berth_scheduler::capacity::provider_constraint(p)
                        .map_err(|e| error::invalid(e.to_string()))?,
                );
            }
            let only: Option<Vec<String>> = s.instance.as_ref().and_then(|id| {
                view.instances.iter().find(|i| &i.id == id).map(|i| vec![i.arn.clone()])
            });
            let mut tags = if rec.service.propagate_tags == Some(PropagateTags::Service) {
                rec.tags.clone()
            } else if rec.service.propagate_tags == Some(PropagateTags::TaskDefinition) {
                match (td.family.as_deref(), td.revision) {
                    (Some(f), Some(r)) => {
                        self.task_definitions.tags(f, r).await?.unwrap_or_default()
                    }
                    _ => vec![],
                }
            } else {
                vec![]
            };
            if rec.service.enable_ecs_managed_tags == Some(true) {
                // ECS's managed tags on a service's tasks.
                for (k, v) in
                    [("aws:ecs:clusterName", cluster), ("aws:ecs:serviceName", name.as_str())]
                {
                    tags.push(Tag { key: Some(k.into()), value: Some(v.into()) });
                }
            }
            // The Spot-to-Fargate fallback (`fargate`'s header): the Spot share on FARGATE.
            let mut provider = s.capacity_provider.clone();
            if provider.as_deref() == Some(fargate::SPOT) && self.spot_fallback(cluster).await? {
                provider = Some("FARGATE".into());
                tags.push(fargate::fallback_task_tag());
                events.push(format!(
                    "(service {name}) is placing {} FARGATE_SPOT task(s) on FARGATE: FARGATE_SPOT has no capacity and cluster {cluster} has the tag {}=enabled.",
                    s.count,
                    fargate::FALLBACK_TAG
                ));
            }
            let job = Job {
                spec: NewTask {
                    cluster,
                    td,
                    overrides: None,
                    requirements: &request.requirements,
                    started_by: Some(&s.deployment),
                    group: &request.group,
                    tags: &tags,
                    service: Some(name),
                    capacity_provider: None,
                    long_arn: None,
                    fargate,
                    network: network.as_ref(),
                },
                request: &request,
                only: only.as_deref(),
                client_token: None,
            };
            let placed = match provider.as_deref() {
                None => self.placement.place(&job).await,
                Some(p) => {
                    let part = ProviderPart { capacity_provider: p, request: request.clone() };
                    self.placement.place_parts(&job, std::slice::from_ref(&part)).await
                }
            };
            match placed {
                Ok(Placed { tasks, failures }) => {
                    started.extend(tasks.iter().filter_map(|t| {
                        t.task_arn
                            .as_deref()
                            .and_then(|a| a.rsplit('/').next())
                            .map(|id| format!("(task {id})"))
                    }));
                    if let Some(msg) = placement_failure_event(name, &failures) {
                        events.push(msg);
                    }
                }
                Err(e) if e.code == ErrorCode::InvalidParameterException.as_str() => events.push(
                    format!("(service {name}) was unable to place a task. Reason: {}", e.message),
                ),
                Err(e) => return Err(e),
            }
        }
        if !started.is_empty() {
            events.push(format!(
                "(service {name}) has started {} tasks: {}.",
                started.len(),
                started.join(" ")
            ));
        }
        Ok(())
    }

    /// Stores the decision's bookkeeping (or, if the record changed meanwhile, its events).
    async fn commit_service(
        &self,
        cluster: &str,
        before: &ServiceRecord,
        rev: u64,
        d: &Decision,
        events: Vec<String>,
        now: f64,
    ) -> Result<(), AwsError> {
        let key = keys::service(cluster, &before.name);
        let mut first = true;
        let store = &*self.core.store;
        let mut cas = records::Cas::new(store, format!("service {}", before.name));
        'cas: loop {
            cas.attempt().await?;
            // The first attempt writes against the record the decision was made from; later
            // ones re-read it, and if it changed meanwhile keep only the events.
            let (rec, expected) = if std::mem::take(&mut first) {
                (before.clone(), rev)
            } else {
                match records::get::<ServiceRecord>(store, &key).await? {
                    Some(found) => found,
                    None => break 'cas,
                }
            };
            let full = expected == rev;
            let mut after = rec.clone();
            let mut txn = Txn::new().when(key.clone(), expected);
            if full {
                after.deployments = d.deployments.clone();
                for r in d.retired.iter().rev() {
                    after.past_deployments.insert(0, r.clone());
                }
                after.past_deployments.truncate(MAX_PAST_DEPLOYMENTS);
                after.steady_since = d.steady_since;
                if let Some(td) = &d.task_definition {
                    after.service.task_definition = Some(td.clone());
                    // A rollback also takes back its deployment's strategy or launch type.
                    if let Some(p) = d.deployments.first() {
                        after.service.capacity_provider_strategy =
                            (!p.capacity_provider_strategy.is_empty())
                                .then(|| p.capacity_provider_strategy.clone());
                        after.service.launch_type = p.launch_type;
                    }
                }
                if let Some(sets) = &d.task_sets {
                    after.task_sets = sets.clone();
                }
                for id in &d.forget {
                    txn = txn.delete(keys::service_task(cluster, &before.name, id));
                }
            }
            push_events(&mut after, &events, now);
            if after == rec && !full {
                break 'cas;
            }
            if full {
                // Index entries of tasks seen healthy for the first time.
                for id in &d.mark_healthy {
                    let ikey = keys::service_task(cluster, &before.name, id);
                    if let Some(e) = self.core.store.get(&ikey).await.map_err(error::store)? {
                        let mut idx: ServiceTaskIndex = serde_json::from_slice(&e.value)
                            .map_err(|err| error::corrupt(&ikey, err))?;
                        idx.healthy = true;
                        txn = txn.put(ikey, records::encode(&idx));
                    }
                }
            }
            if full && d.finished {
                after.service.status = Some("INACTIVE".into());
                after.deployments.iter_mut().for_each(|dep| dep.status = "INACTIVE".into());
                after.version += 1;
                txn = txn
                    .delete(key.clone())
                    .delete(keys::service_short_arn(cluster, &before.name))
                    .put(keys::inactive_service(cluster, &before.name), records::encode(&after));
                for e in self
                    .core
                    .store
                    .range(Range::prefix(&keys::service_tasks_prefix(cluster, &before.name)))
                    .await
                    .map_err(error::store)?
                {
                    txn = txn.delete(e.key);
                }
            } else {
                if after == rec {
                    break 'cas;
                }
                after.version += 1;
                txn = txn.put(key.clone(), records::encode(&after));
            }
            if cas.commit(txn).await? {
                break 'cas;
            }
        }
        Ok(())
    }
}

/// The controller's view of one indexed task (a missing record counts as STOPPED).
/// Task records read per store call while building a service's view.
const TASK_READ_BATCH: usize = 256;

/// Whether a revision has an essential container with a health check (its tasks' health then
/// counts toward a deployment's progress).
fn has_essential_health_check(td: &TaskDefinition) -> bool {
    td.container_definitions
        .iter()
        .flatten()
        .any(|c| c.essential != Some(false) && c.health_check.is_some())
}

fn task_view(
    id: &str,
    idx: &ServiceTaskIndex,
    rec: Option<TaskRecord>,
    has_health_check: bool,
    now: f64,
) -> TaskView {
    let Some(rec) = rec else {
        return TaskView {
            id: id.to_string(),
            deployment: idx.deployment.clone(),
            last_status: TaskStatus::Stopped,
            desired_running: false,
            health: Health::Unknown,
            has_health_check: false,
            started_at: None,
            instance_id: String::new(),
            stopped_on_purpose: true,
            was_healthy: idx.healthy,
            protected: false,
            capacity_provider: None,
            target_health: None,
        };
    };
    let t = &rec.task;
    TaskView {
        id: id.to_string(),
        deployment: idx.deployment.clone(),
        last_status: rec.last_status(),
        desired_running: rec.desired_status() == DesiredTaskStatus::Running,
        health: match t.health_status {
            Some(HealthStatus::Healthy) => Health::Healthy,
            Some(HealthStatus::Unhealthy) => Health::Unhealthy,
            _ => Health::Unknown,
        },
        has_health_check,
        started_at: t.started_at,
        instance_id: rec.instance_id.clone(),
        // A Spot interruption is not the task's failure either (AWS reclaimed the capacity).
        stopped_on_purpose: matches!(
            t.stop_code,
            Some(TaskStopCode::UserInitiated)
                | Some(TaskStopCode::ServiceSchedulerInitiated)
                | Some(TaskStopCode::SpotInterruption)
        ) && t.stopped_reason.as_deref()
            != Some("Task failed container health checks"),
        was_healthy: idx.healthy,
        protected: rec.protected_until.is_some_and(|until| until > now),
        capacity_provider: t.capacity_provider_name.clone(),
        target_health: None,
    }
}

/// ECS's "unable to place a task" event for a placement that left tasks unplaced.
fn placement_failure_event(name: &str, failures: &[Failure]) -> Option<String> {
    let f = failures.first()?;
    if f.reason.as_deref() == Some(CAPACITY_PROVIDER_FAILURE) {
        let provider = f.arn.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("?");
        return Some(format!(
            "(service {name}) was unable to place a task because capacity provider {provider} has no container instance that can take it (start one with berth agent --capacity-provider {provider})."
        ));
    }
    let why = match f.reason.as_deref().unwrap_or("") {
        "RESOURCE:MEMORY" => "has insufficient memory available",
        "RESOURCE:CPU" => "has insufficient CPU units available",
        "RESOURCE:PORTS" | "RESOURCE:PORTS_UDP" => "is already using a port required by your task",
        "ATTRIBUTE" => "is missing an attribute required by your task",
        "AGENT" => "has a disconnected agent",
        r if r.starts_with("MemberOf") || r.starts_with("DistinctInstance") => {
            "does not satisfy the placement constraints"
        }
        _ => "cannot take the task",
    };
    let instance = f.arn.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("?");
    Some(format!(
        "(service {name}) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance {instance}) {why}. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide."
    ))
}

/// Prepends `messages` (oldest first) as events; a placement failure already said within
/// the last minute is not repeated.
fn push_events(rec: &mut ServiceRecord, messages: &[String], now: f64) {
    for m in messages {
        let quiet = m.contains("was unable to place a task")
            && rec.events.iter().any(|e| {
                e.message.as_deref() == Some(m.as_str())
                    && now - e.created_at.unwrap_or(0.0) < PLACEMENT_EVENT_QUIET_SECS
            });
        if quiet {
            continue;
        }
        rec.event_seq += 1;
        rec.events.insert(
            0,
            ServiceEvent {
                id: Some(uuid::Uuid::new_v4().to_string()),
                created_at: Some(now),
                message: Some(m.clone()),
            },
        );
    }
    rec.events.truncate(MAX_EVENTS);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_wire::ecs::*;

    use crate::ecs::testing::*;

    #[tokio::test]
    async fn a_lost_instance_has_its_tasks_replaced_and_they_stay_stopped_when_it_returns() {
        let h = Harness::new();
        let ctx = h.ctx();
        let ecs = &h.ecs;
        let a = register_instance_in(ecs, &ctx, Some("us-east-1a")).await;
        let b = register_instance_in(ecs, &ctx, Some("us-east-1b")).await;
        let td = task_definition(ecs, &ctx, "web").await;
        let create = CreateServiceRequest {
            service_name: Some("web".into()),
            task_definition: Some(td),
            desired_count: Some(2),
            ..Default::default()
        };
        ecs.services().create_service(&ctx, create).await.unwrap();
        passes_until(&h, "two tasks, one per zone", async || {
            let t = service_tasks(ecs, &ctx, "web").await;
            t.len() == 2 && t.iter().any(|t| t.1 == a) && t.iter().any(|t| t.1 == b)
        })
        .await;
        for (task, _) in service_tasks(ecs, &ctx, "web").await {
            report_running(ecs, &ctx, &task).await;
        }
        let on_a: Vec<String> = service_tasks(ecs, &ctx, "web")
            .await
            .into_iter()
            .filter(|t| t.1 == a)
            .map(|t| t.0)
            .collect();

        // 100 s pass with only b's agent polling: a is disconnected but not yet lost.
        h.clock.advance(Duration::from_secs(100));
        heartbeat(ecs, &ctx, &b).await;
        for _ in 0..5 {
            tokio::task::yield_now().await;
            ecs.service_controller.service_pass().await.unwrap();
        }
        assert!(service_tasks(ecs, &ctx, "web").await.iter().any(|t| t.1 == a));

        // Past --instance-lost-after (120 s): a's task is stopped and replaced on b.
        h.clock.advance(Duration::from_secs(30));
        heartbeat(ecs, &ctx, &b).await;
        passes_until(&h, "the replacement on b", async || {
            let t = service_tasks(ecs, &ctx, "web").await;
            t.len() == 2 && t.iter().all(|t| t.1 == b)
        })
        .await;
        let req = DescribeTasksRequest { tasks: Some(on_a.clone()), ..Default::default() };
        let old = ecs.tasks().describe_tasks(&ctx, req).await.unwrap().tasks.unwrap();
        assert_eq!(old[0].desired_status.as_deref(), Some("STOPPED"));
        assert_eq!(old[0].stop_code, Some(TaskStopCode::ServiceSchedulerInitiated));
        assert!(old[0].stopped_reason.as_deref().unwrap().contains("lost"));

        // a comes back: its old copy stays desired STOPPED and nothing new goes to a.
        heartbeat(ecs, &ctx, &a).await;
        for _ in 0..5 {
            tokio::task::yield_now().await;
            ecs.service_controller.service_pass().await.unwrap();
        }
        let t = service_tasks(ecs, &ctx, "web").await;
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.1 == b), "{t:?}");
    }
}
