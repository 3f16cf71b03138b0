//! Task state changes: what agents report (through the agent channel) and the public
//! SubmitTaskStateChange / SubmitContainerStateChange, applied to the task record.
//!
//! Invariants: known status only moves forward ([`TaskStatus::can_transition`]), so a stale
//! report never regresses a task. Reaching STOPPED releases what the task held on its
//! instance in the same transaction ([`TaskRecords::update`]).
//!
//! Fencing ([`Source::Agent`], the report endpoint; the rules are the agent protocol's, see
//! `berth_agent_protocol::TaskReport::epoch`): a report must carry its agent's registration
//! epoch (>= 1); an epoch newer than the instance's is refused (`ClientException`) and leaves
//! the task's `(epoch, seq)` mark where it was; an epoch older than the instance's, or an
//! `(epoch, seq)` not newer than the mark, is stale (`StaleReportException`, 409) and changes
//! nothing. The public SubmitTaskStateChange / SubmitContainerStateChange ([`Source::Api`])
//! are ECS's own API, authorized like any other call: they carry no epoch and are not fenced,
//! only held to the forward-only rule.

mod attachments;

use std::sync::Arc;

use berth_agent_protocol::TaskReport;
use berth_model::keys;
use berth_model::lifecycle::{ContainerHealth, DesiredTaskStatus, TaskStatus};
use berth_model::records::{
    ClusterRecord, ContainerInstanceRecord, ContainerStatusExt, TaskRecord,
};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::RequestContext;
use super::core::Core;
use super::fargate;
use super::task_definitions::TaskDefinitions;
use super::tasks::records::TaskRecords;
use super::tasks::task_not_found;
use crate::error;
use crate::records;

fn parse_status(s: &str) -> Option<TaskStatus> {
    s.parse().ok()
}

/// Who sent a state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// An agent, on the report endpoint: fenced by its `(epoch, seq)`.
    Agent,
    /// ECS's public SubmitTaskStateChange / SubmitContainerStateChange: not fenced.
    Api,
}

/// Applies task state changes.
pub struct StateChanges {
    core: Arc<Core>,
    task_records: Arc<TaskRecords>,
    task_definitions: Arc<TaskDefinitions>,
}

impl StateChanges {
    pub fn new(
        core: Arc<Core>,
        task_records: Arc<TaskRecords>,
        task_definitions: Arc<TaskDefinitions>,
    ) -> Self {
        Self { core, task_records, task_definitions }
    }

    /// Applies a state change reported for a task (by an agent through the report endpoint,
    /// or through the public SubmitTaskStateChange).
    pub(super) async fn apply(&self, report: &TaskReport, source: Source) -> Result<(), AwsError> {
        let fenced = source == Source::Agent;
        if fenced && report.epoch == 0 {
            return Err(error::invalid(
                "A report on the agent channel must carry its agent's registration epoch (epoch >= 1, from the poll's answer) and a sequence number.",
            ));
        }
        let change = &report.change;
        let mut cluster = self.core.cluster_name(change.cluster.as_deref())?;
        let given = change.task.clone().unwrap_or_default();
        if fargate::is_pool(&cluster) {
            // A pool agent reports a Fargate task of a user's cluster: the pool index says
            // which.
            let id = given.rsplit('/').next().unwrap_or_default();
            if let Some(r) =
                self.core.store.get(&fargate::pool_task(id)).await.map_err(error::store)?
            {
                cluster = String::from_utf8_lossy(&r.value).into_owned();
            }
        }
        // Attachment changes the report carries (the agent's ENI attachment: ATTACHED once
        // the task's network is up).
        let attachment_changes = change
            .attachments
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| {
                let id = attachments::check_change(&self.core.scope, i, c)?;
                Ok((id.to_string(), c.status.clone().unwrap_or_default()))
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        let Some(id) = self.core.scope.child_id("task", &cluster, &given) else {
            return Err(self.missing_task(&cluster).await);
        };
        let new_status = match change.status.as_deref() {
            None => None,
            Some(s) => Some(
                parse_status(s)
                    .ok_or_else(|| error::invalid(format!("status '{s}' is not a task status.")))?,
            ),
        };
        let now = self.core.now();
        let mark = (report.epoch, report.seq);
        let stored = self.task_records.get(&cluster, id).await?;
        if let Some((t, _)) = &stored {
            check_placed_on(t, report, &given)?;
        }
        // The task's revision (immutable; from the revision cache) says which containers are
        // essential and health-checked, which task health aggregates.
        let td = match stored.as_ref().and_then(|(t, _)| t.task.task_definition_arn.as_deref()) {
            Some(arn) => match self.task_definitions.by_arn(arn).await {
                Ok(td) => Some(td),
                Err(e) => {
                    tracing::warn!(task = id, error = %e.message, "task definition unreadable; task health left as it was");
                    None
                }
            },
            None => None,
        };
        // Fencing against the instance's registration (live, or deregistered: its agent may
        // still report the end of its tasks).
        let mut instance_epoch = None;
        if fenced
            && let Some((t, _)) = &stored
            && let Some(inst) =
                self.instance(super::tasks::records::instance_cluster(t), &t.instance_id).await?
        {
            instance_epoch = Some(inst.epoch);
            if report.epoch > inst.epoch {
                return Err(error::client(format!(
                    "The report carries registration epoch {} but container instance {} is at registration epoch {}: no such registration exists, so the report is refused and changed nothing.",
                    report.epoch, inst.arn, inst.epoch
                )));
            }
            if report.epoch < inst.epoch {
                tracing::debug!(
                    task = id,
                    report_epoch = report.epoch,
                    instance_epoch = inst.epoch,
                    "stale report refused"
                );
                return Err(error::stale_report(format!(
                    "The report carries registration epoch {} of container instance {}, which has registered again since (epoch {}): it is stale and changed nothing; poll for the current state.",
                    report.epoch, inst.arn, inst.epoch
                )));
            }
        }
        let updated = self
            .task_records
            .update(&cluster, id, |t| {
                check_placed_on(t, report, &given)?;
                if fenced {
                    if t.report_mark.zip(instance_epoch).is_some_and(|(m, e)| m.0 > e) {
                        // A mark from a registration that never existed, pinned by a report
                        // accepted before such reports were refused: void.
                        t.report_mark = None;
                    }
                    if let Some(m) = t.report_mark
                        && mark <= m
                    {
                        // A delayed retry or a replay.
                        return Err(error::stale_report(format!(
                            "The report (epoch {}, sequence {}) is not newer than the last one applied to task {given} (epoch {}, sequence {}): it is stale and changed nothing.",
                            mark.0, mark.1, m.0, m.1
                        )));
                    }
                    t.report_mark = Some(mark);
                }
                let known = t.last_status();
                if known == TaskStatus::Stopped {
                    return Ok(()); // Final: stale reports change nothing.
                }
                for (id, status) in &attachment_changes {
                    for a in t.task.attachments.iter_mut().flatten() {
                        if a.id.as_deref() == Some(id.as_str()) {
                            a.status = Some(status.clone());
                        }
                    }
                }
                for c in change.containers.iter().flatten() {
                    let Some(tc) =
                        t.task.containers.iter_mut().flatten().find(|x| x.name == c.container_name)
                    else {
                        continue;
                    };
                    // A container's status only moves forward too (reporting the same again is
                    // harmless); one that names no status changes nothing.
                    if let Some(s) = c.status.as_deref().and_then(parse_status)
                        && s >= tc.status()
                    {
                        tc.set_status(s);
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
                if let Some(td) = &td {
                    t.task.health_status = Some(task_health(
                        &td.task_definition,
                        t.task.containers.as_deref().unwrap_or(&[]),
                    ));
                }
                if change.pull_started_at.is_some() && t.task.pull_started_at.is_none() {
                    t.task.pull_started_at = change.pull_started_at;
                }
                if change.pull_stopped_at.is_some() && t.task.pull_stopped_at.is_none() {
                    t.task.pull_stopped_at = change.pull_stopped_at;
                }
                if let Some(to) = new_status
                    && known.can_transition(to)
                {
                    t.set_last_status(to);
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
                        t.set_desired_status(DesiredTaskStatus::Stopped);
                        if t.task.stop_code.is_none() {
                            t.task.stop_code =
                                Some(report.stop_code.unwrap_or(TaskStopCode::TaskFailedToStart));
                        }
                        if t.task.stopped_reason.is_none() {
                            t.task.stopped_reason = change.reason.clone();
                        }
                        t.task.stopping_at.get_or_insert(now);
                        for c in t.task.containers.iter_mut().flatten() {
                            c.set_status(TaskStatus::Stopped);
                        }
                    }
                }
                Ok(())
            })
            .await?;
        if updated.is_none() {
            return Err(self.missing_task(&cluster).await);
        }
        Ok(())
    }

    /// Why a reported task was not found: its cluster does not exist (ClusterNotFoundException,
    /// as ECS answers), else the task does not. Read only once the task is missing.
    async fn missing_task(&self, cluster: &str) -> AwsError {
        match records::get::<ClusterRecord>(&*self.core.store, &keys::cluster(cluster)).await {
            Ok(Some(_)) => task_not_found(),
            Ok(None) => super::core::cluster_not_found(),
            Err(e) => e,
        }
    }

    /// The instance record by id, live or deregistered.
    async fn instance(
        &self,
        cluster: &str,
        id: &str,
    ) -> Result<Option<ContainerInstanceRecord>, AwsError> {
        for key in
            [keys::container_instance(cluster, id), keys::inactive_container_instance(cluster, id)]
        {
            if let Some((rec, _)) =
                records::get::<ContainerInstanceRecord>(&*self.core.store, &key).await?
            {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }
}

/// A report naming its instance must come from the instance the task is placed on.
fn check_placed_on(t: &TaskRecord, report: &TaskReport, given: &str) -> Result<(), AwsError> {
    let reported = report.container_instance_arn.as_str();
    // A Fargate task shows no container instance: its pool instance is known by id.
    let placed_on = match t.task.container_instance_arn.as_deref() {
        Some(arn) => arn == reported,
        None => !t.instance_id.is_empty() && reported.rsplit('/').next() == Some(&t.instance_id),
    };
    if !reported.is_empty() && !placed_on {
        return Err(error::invalid(format!(
            "Task {given} is not placed on {}.",
            report.container_instance_arn
        )));
    }
    Ok(())
}

impl StateChangesApi<RequestContext> for StateChanges {
    async fn submit_attachment_state_changes(
        &self,
        _ctx: &RequestContext,
        input: SubmitAttachmentStateChangesRequest,
    ) -> Result<SubmitAttachmentStateChangesResponse, AwsError> {
        self.submit_attachment_state_changes_op(input).await
    }

    async fn submit_task_state_change(
        &self,
        _ctx: &RequestContext,
        input: SubmitTaskStateChangeRequest,
    ) -> Result<SubmitTaskStateChangeResponse, AwsError> {
        let report = TaskReport { change: input, ..Default::default() };
        self.apply(&report, Source::Api).await?;
        Ok(SubmitTaskStateChangeResponse { acknowledgment: Some("ACK".into()) })
    }

    async fn submit_container_state_change(
        &self,
        _ctx: &RequestContext,
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
        self.apply(&report, Source::Api).await?;
        Ok(SubmitContainerStateChangeResponse { acknowledgment: Some("ACK".into()) })
    }
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
