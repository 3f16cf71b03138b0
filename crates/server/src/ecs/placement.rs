//! The placement executor: the one path by which tasks come to exist. RunTask, StartTask and
//! the service controller each describe what to place ([`Job`]); this module turns it into a
//! `berth_scheduler` request against the cluster's instances and commits the plan.
//!
//! ```text
//! Job ─> cluster's instances (snapshots) ─> scheduler::place (pure) ─> one transaction:
//!          compare: the cluster record, every instance touched (and the client token)
//!          put: task records + indexes, instances with the tasks reserved, desired markers
//!        ─> conflict? read again and re-plan (records::Cas)
//! ```
//!
//! Invariant: a plan is committed only against the instance revisions it was computed from,
//! so whatever the concurrency (other RunTasks, the controller, agents' reports releasing
//! resources) no instance is ever overcommitted; a stale view costs a retry, never an
//! overcommit.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_model::keys;
use berth_model::records::{ContainerInstanceRecord, TaskRecord};
use berth_scheduler::{InstanceSnapshot, PlacementRequest};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::clusters::Clusters;
use super::container_instances::ContainerInstances;
use super::core::{Core, cluster_not_found};
use super::reservations;
use super::tasks::records::{NewTask, TaskRecords};
use crate::error;
use crate::records;

/// What to place.
pub struct Job<'a> {
    pub spec: NewTask<'a>,
    pub request: &'a PlacementRequest,
    /// StartTask: one task on each of these instances (ids or ARNs), in order; an instance
    /// named twice gets two, the second placed against what the first left.
    pub only: Option<&'a [String]>,
    /// RunTask's idempotency token: stored with the tasks in the same transaction.
    pub client_token: Option<&'a str>,
}

/// What became of a job: the tasks created, and ECS's failures for what could not be placed.
pub struct Placed {
    pub tasks: Vec<Task>,
    pub failures: Vec<Failure>,
}

/// See the module header.
pub struct Placement {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    instances: Arc<ContainerInstances>,
    task_records: Arc<TaskRecords>,
}

impl Placement {
    pub fn new(
        core: Arc<Core>,
        clusters: Arc<Clusters>,
        instances: Arc<ContainerInstances>,
        task_records: Arc<TaskRecords>,
    ) -> Self {
        Self { core, clusters, instances, task_records }
    }

    /// Places and commits `job` (see the module header). With a client token that an earlier
    /// call already used, answers with that call's tasks.
    pub async fn place(&self, job: &Job<'_>) -> Result<Placed, AwsError> {
        let cluster = job.spec.cluster;
        let what = format!("cluster {cluster}");
        let mut lost_token_race = false;
        let mut cas = records::Cas::new(&*self.core.store, &what);
        let done = 'cas: loop {
            cas.attempt().await?;
            if let Some(token) = job.client_token
                && lost_token_race
                && let Some(tasks) = self.tasks_for_token(cluster, token).await?
            {
                break 'cas Placed { tasks, failures: vec![] };
            }
            lost_token_race = job.client_token.is_some();
            let Some((_, cluster_rev)) = self.clusters.live_cluster(cluster).await? else {
                return Err(cluster_not_found());
            };
            let (mut instances, mut failures) = self.candidates(cluster, job.only).await?;
            let mut snaps = Vec::with_capacity(instances.len());
            for (rec, _) in &instances {
                snaps.push(self.instances.snapshot(rec).await?);
            }
            let (placements, plan_failures) = match job.only {
                Some(_) => place_on_each(&snaps, job.request),
                None => {
                    let plan = berth_scheduler::place(&snaps, job.request)
                        .map_err(|e| error::invalid(e.to_string()))?;
                    (plan.placements, plan.failures)
                }
            };
            failures.extend(plan_failures.into_iter().map(|f| Failure {
                arn: f.arn,
                reason: Some(f.reason),
                detail: None,
            }));

            let mut txn = Txn::new().when(keys::cluster(cluster), cluster_rev);
            let mut touched: BTreeMap<String, (ContainerInstanceRecord, u64)> = BTreeMap::new();
            let mut created: Vec<TaskRecord> = Vec::new();
            for p in &placements {
                let Some(i) = instances.iter().position(|(r, _)| r.arn == p.instance_arn) else {
                    continue;
                };
                let (rec, rev) = &mut instances[i];
                let entry = touched.entry(rec.id.clone()).or_insert_with(|| (rec.clone(), *rev));
                let task = self.task_records.build(&entry.0, &job.spec);
                reservations::reserve(&mut entry.0, &task);
                created.push(task);
            }
            for (id, (rec, rev)) in &touched {
                let key = keys::container_instance(cluster, id);
                txn = txn
                    .when(key.clone(), *rev)
                    .put(key, records::encode(rec))
                    .put(keys::instance_desired(id), Vec::new());
            }
            for t in &created {
                txn = TaskRecords::insert(txn, t, &job.spec);
            }
            if let Some(token) = job.client_token {
                let arns: Vec<String> =
                    created.iter().filter_map(|t| t.task.task_arn.clone()).collect();
                txn = txn
                    .when(keys::run_token(cluster, token), 0)
                    .put(keys::run_token(cluster, token), records::encode(&arns));
            }
            let tasks = created.into_iter().map(|t| t.task).collect();
            if cas.commit(txn).await? {
                break 'cas Placed { tasks, failures };
            }
        };
        Ok(done)
    }

    /// The instances a job may use with their revisions, and MISSING failures for instances
    /// a StartTask names that the cluster does not have.
    async fn candidates(
        &self,
        cluster: &str,
        only: Option<&[String]>,
    ) -> Result<(Vec<(ContainerInstanceRecord, u64)>, Vec<Failure>), AwsError> {
        let instances = self.instances.cluster_instances(cluster).await?;
        let Some(only) = only else { return Ok((instances, vec![])) };
        let mut chosen = Vec::new();
        let mut failures = Vec::new();
        for given in only {
            let id = self.core.scope.child_id("container-instance", cluster, given);
            match instances.iter().find(|(r, _)| Some(r.id.as_str()) == id) {
                Some(found) => chosen.push(found.clone()),
                None => failures.push(Failure {
                    arn: Some(given.clone()),
                    reason: Some("MISSING".into()),
                    detail: None,
                }),
            }
        }
        Ok((chosen, failures))
    }

    /// The tasks an earlier RunTask with this client token started.
    pub async fn tasks_for_token(
        &self,
        cluster: &str,
        token: &str,
    ) -> Result<Option<Vec<Task>>, AwsError> {
        let Some((arns, _)) =
            records::get::<Vec<String>>(&*self.core.store, &keys::run_token(cluster, token))
                .await?
        else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for arn in arns {
            if let Some(id) = self.core.scope.child_id("task", cluster, &arn)
                && let Some((t, _)) = self.task_records.get(cluster, id).await?
            {
                out.push(t.task);
            }
        }
        Ok(Some(out))
    }
}

/// StartTask: one task on each snapshot, in order, each placed against what the previous
/// ones left on the same instance.
fn place_on_each(
    snaps: &[InstanceSnapshot],
    request: &PlacementRequest,
) -> (Vec<berth_scheduler::Placement>, Vec<berth_scheduler::PlacementFailure>) {
    let mut working: BTreeMap<String, InstanceSnapshot> =
        snaps.iter().map(|s| (s.arn.clone(), s.clone())).collect();
    let mut placements = Vec::new();
    let mut failures = Vec::new();
    for snap in snaps {
        let current = working.get_mut(&snap.arn).expect("snapshot of a chosen instance");
        let one = PlacementRequest {
            count: 1,
            requirements: request.requirements.clone(),
            group: request.group.clone(),
            ..Default::default()
        };
        let mut state = berth_scheduler::ClusterState::new(vec![current.clone()]);
        match state.place(&one) {
            Ok(plan) => {
                *current = state.instances()[0].clone();
                placements.extend(plan.placements);
                failures.extend(plan.failures);
            }
            Err(_) => failures.push(berth_scheduler::PlacementFailure {
                arn: Some(snap.arn.clone()),
                reason: snap.status.as_str().to_string(),
            }),
        }
    }
    (placements, failures)
}
