//! Task scale-in protection: UpdateTaskProtection and GetTaskProtection.
//!
//! Protection is a property of a service's task (`protected_until` on its record, epoch
//! seconds): while it lasts, the service controller neither picks the task for scale-in nor
//! replaces it in a deployment (the deployment waits). `expiresInMinutes` is 1 to 2,880
//! (48 hours), 120 by default, as ECS documents. Tasks that are not part of a service are
//! answered with the failure reason `TASK_NOT_VALID`, unknown ones with `MISSING`.

use berth_model::records::TaskRecord;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use std::sync::Arc;

use super::records::TaskRecords;
use crate::ecs::RequestContext;
use crate::ecs::clusters::Clusters;
use crate::ecs::core::Core;
use crate::error;

/// Serves task scale-in protection, kept on the task records.
pub struct TaskProtection {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    task_records: Arc<TaskRecords>,
}

/// ECS's default protection period.
const DEFAULT_MINUTES: i32 = 120;
/// ECS's longest protection period (48 hours).
const MAX_MINUTES: i32 = 2880;

fn failure(arn: &str, reason: &str, detail: &str) -> Failure {
    Failure { arn: Some(arn.to_string()), reason: Some(reason.into()), detail: Some(detail.into()) }
}

fn protected(rec: &TaskRecord, now: f64) -> ProtectedTask {
    let until = rec.protected_until.filter(|u| *u > now);
    ProtectedTask {
        task_arn: rec.task.task_arn.clone(),
        protection_enabled: Some(until.is_some()),
        expiration_date: until,
    }
}

impl TaskProtection {
    pub fn new(core: Arc<Core>, clusters: Arc<Clusters>, task_records: Arc<TaskRecords>) -> Self {
        Self { core, clusters, task_records }
    }

    fn check_task_list(tasks: &[String]) -> Result<(), AwsError> {
        if tasks.is_empty() || tasks.len() > 10 {
            return Err(error::invalid("tasks must name between 1 and 10 tasks."));
        }
        Ok(())
    }
}

impl TaskProtectionApi<RequestContext> for TaskProtection {
    async fn update_task_protection(
        &self,
        _ctx: &RequestContext,
        input: UpdateTaskProtectionRequest,
    ) -> Result<UpdateTaskProtectionResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let tasks = input.tasks.clone().unwrap_or_default();
        Self::check_task_list(&tasks)?;
        let enable = input.protection_enabled.unwrap_or(false);
        let minutes = match (enable, input.expires_in_minutes) {
            (true, None) => DEFAULT_MINUTES,
            (true, Some(m)) if (1..=MAX_MINUTES).contains(&m) => m,
            (true, Some(m)) => {
                return Err(error::invalid(format!(
                    "expiresInMinutes must be between 1 and {MAX_MINUTES}; got {m}."
                )));
            }
            (false, _) => 0,
        };
        let now = self.core.now();
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for given in &tasks {
            let Some(id) = self.core.scope.child_id("task", &cluster, given) else {
                failures.push(failure(given, "MISSING", "The task was not found in the cluster."));
                continue;
            };
            let mut not_service = false;
            let rec = self
                .task_records
                .update(&cluster, id, |t| {
                    if !t.task.group.as_deref().is_some_and(|g| g.starts_with("service:")) {
                        not_service = true;
                        return Ok(());
                    }
                    t.protected_until = enable.then(|| now + f64::from(minutes) * 60.0);
                    Ok(())
                })
                .await?;
            match rec {
                None => failures.push(failure(
                    given,
                    "MISSING",
                    "The task was not found in the cluster.",
                )),
                Some(_) if not_service => failures.push(failure(
                    given,
                    "TASK_NOT_VALID",
                    "Task scale-in protection applies only to tasks that are part of a service.",
                )),
                Some(r) => out.push(protected(&r, now)),
            }
        }
        if !out.is_empty() {
            self.core.services_changed();
        }
        Ok(UpdateTaskProtectionResponse { protected_tasks: Some(out), failures: Some(failures) })
    }

    async fn get_task_protection(
        &self,
        _ctx: &RequestContext,
        input: GetTaskProtectionRequest,
    ) -> Result<GetTaskProtectionResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let tasks = input.tasks.clone().unwrap_or_default();
        Self::check_task_list(&tasks)?;
        let now = self.core.now();
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for given in &tasks {
            let rec = match self.core.scope.child_id("task", &cluster, given) {
                Some(id) => self.task_records.get(&cluster, id).await?,
                None => None,
            };
            match rec {
                None => failures.push(failure(given, "MISSING", "The task was not found in the cluster.")),
                Some((r, _)) if !r.task.group.as_deref().is_some_and(|g| g.starts_with("service:")) => {
                    failures.push(failure(
                        given,
                        "TASK_NOT_VALID",
                        "Task scale-in protection applies only to tasks that are part of a service.",
                    ))
                }
                Some((r, _)) => out.push(protected(&r, now)),
            }
        }
        Ok(GetTaskProtectionResponse { protected_tasks: Some(out), failures: Some(failures) })
    }
}
