//! One service pass's load balancing (services with `loadBalancers`; see
//! `super::super::load_balancers` for the rules): every task's targets and their health
//! before the decision, then, after the stops and starts, the target groups brought in line
//! and DEACTIVATING tasks moved on once their targets drained.
//!
//! Level-triggered, idempotent per pass:
//! * a task is registered while it is RUNNING and desired RUNNING and this pass does not stop
//!   it, unless it is a superseded green (below); every other target of the service's tasks
//!   is deregistered (in the same pass that decides the stop, before its containers are asked
//!   to stop);
//! * a task the controller stops while RUNNING is DEACTIVATING (desired STOPPED, the agent
//!   keeps it running: `agent_channel`) until `stoppingAt` plus the longest deregistration
//!   delay of its target groups, then STOPPING (the agent stops it);
//! * [`TargetHealth`] of a task: `Unhealthy` if a target is unhealthy in a group, `Healthy`
//!   once every target is healthy, `Pending` otherwise (not RUNNING, not registered yet,
//!   `initial`).
//! * A task registers with its deployment's `loadBalancers` (`ServiceRecord::load_balancers_of`:
//!   after UpdateService changed the service's, each older deployment keeps its own), so a
//!   change moves the service from the old target groups to the new ones one task at a time.
//! * An entry with `advancedConfiguration` has two groups: the task of a deployment whose
//!   traffic record says `alternate` registers in `alternateTargetGroupArn`, every other
//!   task in `targetGroupArn` (the groups of a task are those of its deployment's side).
//!   While the PRIMARY shifts traffic (IN_PROGRESS, replacing a serving deployment), its side
//!   is green and only its own tasks serve there: the tasks of a deployment it superseded on
//!   the same side (a green never promoted) are deregistered at once, so production traffic
//!   shifted to green never reaches them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use berth_controllers::service::{TargetHealth, TaskView};
use berth_model::keys;
use berth_model::lifecycle::TaskStatus;
use berth_model::records::{ContainerInstanceRecord, TaskRecord};
use berth_model::service::ServiceRecord;
use berth_store::Store;
use berth_wire::AwsError;
use berth_wire::ecs::LoadBalancer;

use super::super::super::fargate;
use super::super::super::tasks::records::TaskRecords;
use super::super::load_balancers::{
    LoadBalancing, ServiceTarget, TargetGroupInfo, TargetState, task_target,
};
use crate::records;

/// The load balancing of one service pass.
pub(super) struct LbPass {
    /// The `loadBalancers` entries of the service's deployments whose target group exists,
    /// with it and the side it serves (`Some(true)`: the alternate group; `None`: an entry
    /// without `advancedConfiguration`, every task's).
    groups: Vec<(LoadBalancer, TargetGroupInfo, Option<bool>)>,
    /// Task id -> the groups it belongs in (its deployment's entries, its side), each with
    /// its target there if it has one yet (index into `groups`).
    targets: HashMap<String, Vec<(usize, Option<ServiceTarget>)>>,
    /// Deployments whose tasks serve in no group: those a shifting PRIMARY superseded on its
    /// own (green) side.
    superseded_green: HashSet<String>,
}

impl LbPass {
    /// Reads the target groups, works out every task's targets from `records`, and sets
    /// each task's [`TaskView::target_health`].
    pub(super) async fn read(
        lb: &dyn LoadBalancing,
        cluster: &str,
        service: &ServiceRecord,
        records: &HashMap<String, TaskRecord>,
        store: &Arc<dyn Store>,
        tasks: &mut [TaskView],
    ) -> Result<Self, AwsError> {
        // Every entry in use (the service's and each deployment's own), once; the entries of
        // each deployment as indexes into it.
        fn index<'a>(e: &'a LoadBalancer, entries: &mut Vec<&'a LoadBalancer>) -> usize {
            entries.iter().position(|x| *x == e).unwrap_or_else(|| {
                entries.push(e);
                entries.len() - 1
            })
        }
        let mut entries: Vec<&LoadBalancer> = Vec::new();
        let mut of_deployment: HashMap<&str, Vec<usize>> = HashMap::new();
        let current: Vec<usize> = service
            .service
            .load_balancers
            .iter()
            .flatten()
            .map(|e| index(e, &mut entries))
            .collect();
        for d in service.deployments.iter().chain(&service.past_deployments) {
            let mine =
                service.load_balancers_of(d).iter().map(|e| index(e, &mut entries)).collect();
            of_deployment.insert(d.id.as_str(), mine);
        }
        // (entry, target group, side, index of the entry in `entries`).
        let mut groups = Vec::new();
        let mut group_entry = Vec::new();
        for (ei, entry) in entries.iter().enumerate() {
            let entry = *entry;
            let alternate = entry
                .advanced_configuration
                .as_ref()
                .and_then(|a| a.alternate_target_group_arn.as_deref());
            let mut arns = vec![(entry.target_group_arn.as_deref().unwrap_or_default(), None)];
            if let Some(alt) = alternate {
                arns = vec![(arns[0].0, Some(false)), (alt, Some(true))];
            }
            for (arn, side) in arns {
                match lb.target_group(arn).await? {
                    Some(tg) => {
                        groups.push((entry.clone(), tg, side));
                        group_entry.push(ei);
                    }
                    None => {
                        tracing::debug!(service = %service.name, target_group = arn, "target group gone")
                    }
                }
            }
        }
        // Each deployment's side.
        let sides: HashMap<&str, bool> = service
            .deployments
            .iter()
            .chain(&service.past_deployments)
            .map(|d| (d.id.as_str(), d.traffic.as_ref().is_some_and(|t| t.alternate)))
            .collect();
        let mut ec2_ids: HashMap<String, Option<String>> = HashMap::new();
        let mut targets: HashMap<String, Vec<(usize, Option<ServiceTarget>)>> = HashMap::new();
        for (id, rec) in records {
            let ec2 = match ec2_ids.get(&rec.instance_id) {
                Some(e) => e.clone(),
                None => {
                    let e = ec2_instance_id(&**store, cluster, &rec.instance_id).await?;
                    ec2_ids.insert(rec.instance_id.clone(), e.clone());
                    e
                }
            };
            let deployment = rec.task.started_by.as_deref();
            let side = deployment.and_then(|d| sides.get(d).copied()).unwrap_or(false);
            let its_entries = deployment.and_then(|d| of_deployment.get(d)).unwrap_or(&current);
            let mine: Vec<(usize, Option<ServiceTarget>)> = groups
                .iter()
                .enumerate()
                .filter(|(i, (_, _, s))| {
                    its_entries.contains(&group_entry[*i]) && s.is_none_or(|s| s == side)
                })
                .map(|(i, (entry, tg, _))| {
                    (i, task_target(rec, entry, &tg.target_type, ec2.as_deref()))
                })
                .collect();
            targets.insert(id.clone(), mine);
        }
        let superseded_green = match service.deployments.first() {
            Some(p)
                if p.traffic.as_ref().is_some_and(|t| t.shifting)
                    && !p.completed
                    && p.rollout_state != berth_wire::ecs::DeploymentRolloutState::Failed =>
            {
                let green = sides.get(p.id.as_str()).copied().unwrap_or(false);
                service
                    .deployments
                    .iter()
                    .skip(1)
                    .filter(|d| sides.get(d.id.as_str()).copied().unwrap_or(false) == green)
                    .map(|d| d.id.clone())
                    .collect()
            }
            _ => HashSet::new(),
        };
        let me = LbPass { groups, targets, superseded_green };
        for t in tasks.iter_mut() {
            // A task whose deployment has no load balancers (they were removed) answers to
            // no target group: its health is its own, as without load balancers.
            let in_none = me.targets.get(&t.id).is_some_and(Vec::is_empty);
            t.target_health = (!in_none).then(|| me.health(lb, t));
        }
        Ok(me)
    }

    /// What the target groups say of `t` (see the module header).
    fn health(&self, lb: &dyn LoadBalancing, t: &TaskView) -> TargetHealth {
        if t.last_status != TaskStatus::Running || self.groups.is_empty() {
            return TargetHealth::Pending;
        }
        let mine = self.targets.get(&t.id).map(Vec::as_slice).unwrap_or(&[]);
        if mine.is_empty() {
            return TargetHealth::Pending;
        }
        let mut all_healthy = true;
        for (i, target) in mine {
            let Some(target) = target else {
                // Not addressable there yet (no host port, no interface address).
                all_healthy = false;
                continue;
            };
            let tg = &self.groups[*i].1;
            match lb.target_state(&tg.arn, target) {
                TargetState::Unhealthy => {
                    return TargetHealth::Unhealthy { target_group: tg.arn.clone() };
                }
                TargetState::Healthy => {}
                TargetState::Other => all_healthy = false,
            }
        }
        if all_healthy { TargetHealth::Healthy } else { TargetHealth::Pending }
    }

    /// Brings every target group in line with the tasks (see the module header), adding the
    /// registration events.
    pub(super) async fn sync(
        &self,
        lb: &dyn LoadBalancing,
        service: &str,
        tasks: &[TaskView],
        stopping: &HashSet<&str>,
        events: &mut Vec<String>,
    ) -> Result<(), AwsError> {
        let serving: HashSet<&str> = tasks
            .iter()
            .filter(|t| {
                t.last_status == TaskStatus::Running
                    && t.desired_running
                    && !stopping.contains(t.id.as_str())
                    && !self.superseded_green.contains(&t.deployment)
            })
            .map(|t| t.id.as_str())
            .collect();
        for (i, (_, tg, _)) in self.groups.iter().enumerate() {
            let mut want = Vec::new();
            let mut owned = Vec::new();
            for (id, mine) in &self.targets {
                for t in mine.iter().filter(|(g, _)| *g == i).filter_map(|(_, t)| t.as_ref()) {
                    owned.push(t.clone());
                    if serving.contains(id.as_str()) {
                        want.push(t.clone());
                    }
                }
            }
            let (added, removed) = lb.sync_targets(&tg.arn, want, owned).await?;
            if added > 0 {
                events.push(format!(
                    "(service {service}) registered {added} targets in (target-group {})",
                    tg.arn
                ));
            }
            if removed > 0 {
                events.push(format!(
                    "(service {service}) deregistered {removed} targets in (target-group {})",
                    tg.arn
                ));
            }
        }
        Ok(())
    }

    /// DEACTIVATING tasks whose targets have drained (the longest deregistration delay of
    /// the task's own groups since `stoppingAt`) go on to STOPPING, which the agent acts on.
    pub(super) async fn finish_deactivating(
        &self,
        task_records: &TaskRecords,
        cluster: &str,
        records: &HashMap<String, TaskRecord>,
        now: f64,
    ) -> Result<(), AwsError> {
        for (id, rec) in records {
            if rec.last_status() != TaskStatus::Deactivating {
                continue;
            }
            // The longest delay of the groups this task belongs in.
            let delay = self
                .targets
                .get(id)
                .into_iter()
                .flatten()
                .map(|(i, _)| f64::from(self.groups[*i].1.deregistration_delay_secs))
                .fold(0.0, f64::max);
            if now < rec.task.stopping_at.unwrap_or(0.0) + delay {
                continue;
            }
            task_records
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
}

/// The EC2 instance id of container instance `id` (of the cluster, or of the Fargate pool).
async fn ec2_instance_id(
    store: &dyn Store,
    cluster: &str,
    id: &str,
) -> Result<Option<String>, AwsError> {
    if id.is_empty() {
        return Ok(None);
    }
    for c in [cluster, fargate::POOL_CLUSTER] {
        if let Some((r, _)) =
            records::get::<ContainerInstanceRecord>(store, &keys::container_instance(c, id)).await?
        {
            return Ok(Some(r.ec2_instance_id));
        }
    }
    Ok(None)
}
