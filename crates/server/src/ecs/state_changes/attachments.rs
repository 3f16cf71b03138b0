//! SubmitAttachmentStateChanges: an agent reports the status of task attachments (ECS: the
//! elastic network interfaces of awsvpc tasks, Service Connect and EBS attachments).
//!
//! Contract: the request is checked (at least one change; each `attachmentArn` an ECS
//! `attachment/ID` ARN of this account and region; each `status` one of ECS's attachment
//! statuses); the cluster must exist. Each change is recorded on the task of the cluster that
//! carries that attachment (its `attachments[].status`), with the task record's
//! compare-and-set; an attachment no task of the cluster carries is refused naming it. The
//! answer is ECS's `acknowledgment: "ACK"`. awsvpc tasks carry their ENI attachment
//! (`crate::ecs::awsvpc`); a Fargate pool agent names the pool's cluster, and its changes
//! reach the task through the interface's record and the pool index.

use berth_model::keys;
use berth_model::records::TaskRecord;
use berth_store::Range;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::StateChanges;
use crate::error;

/// ECS's attachment statuses.
pub const STATUSES: &[&str] = &[
    "PRECREATED",
    "CREATED",
    "ATTACHING",
    "ATTACHED",
    "DETACHING",
    "DETACHED",
    "DELETED",
    "FAILED",
];

/// The attachment id of a change (`arn:...:attachment/ID`), after checking it and its
/// status; `i` is its position in `attachments`.
pub fn check_change<'a>(
    scope: &berth_model::arn::Scope,
    i: usize,
    c: &'a AttachmentStateChange,
) -> Result<&'a str, AwsError> {
    let arn = c.attachment_arn.as_deref().unwrap_or("");
    let id = scope
        .ecs_resource(arn)
        .and_then(|r| r.strip_prefix("attachment/"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| {
            error::invalid(format!(
                "attachments[{i}].attachmentArn: '{arn}' is not an attachment ARN of this account and region (arn:aws:ecs:REGION:ACCOUNT:attachment/ID)."
            ))
        })?;
    let status = c.status.as_deref().unwrap_or("");
    if !STATUSES.contains(&status) {
        return Err(error::invalid(format!(
            "attachments[{i}].status: '{status}' is not an attachment status; use one of {}.",
            STATUSES.join(", ")
        )));
    }
    Ok(id)
}

impl StateChanges {
    pub(super) async fn submit_attachment_state_changes_op(
        &self,
        input: SubmitAttachmentStateChangesRequest,
    ) -> Result<SubmitAttachmentStateChangesResponse, AwsError> {
        let changes = input.attachments.unwrap_or_default();
        if changes.is_empty() {
            return Err(error::invalid(
                "attachments must list at least one attachment state change.",
            ));
        }
        let ids = changes
            .iter()
            .enumerate()
            .map(|(i, c)| check_change(&self.core.scope, i, c))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = self.core.cluster_name(input.cluster.as_deref())?;
        if records_cluster(self, &cluster).await?.is_none() {
            return Err(super::super::core::cluster_not_found());
        }
        if super::super::fargate::is_pool(&cluster) {
            return self.pool_attachment_changes(&changes, &ids).await;
        }
        // Which task carries each attachment (a scan of the cluster's tasks: attachments are
        // rare and this call is too).
        let prefix = keys::task(&cluster, "");
        let tasks = self.core.store.range(Range::prefix(&prefix)).await.map_err(error::store)?;
        for (i, (change, id)) in changes.iter().zip(&ids).enumerate() {
            let owner = tasks.iter().find_map(|r| {
                let t: TaskRecord = serde_json::from_slice(&r.value).ok()?;
                let has = t.task.attachments.iter().flatten().any(|a| a.id.as_deref() == Some(id));
                has.then(|| r.key.rsplit('/').next().unwrap_or_default().to_string())
            });
            let Some(task_id) = owner else {
                return Err(error::invalid(format!(
                    "attachments[{i}].attachmentArn: no task in cluster {cluster} has the attachment {id}."
                )));
            };
            let status = change.status.clone();
            self.task_records
                .update(&cluster, &task_id, |t| {
                    for a in t.task.attachments.iter_mut().flatten() {
                        if a.id.as_deref() == Some(id) {
                            a.status = status.clone();
                        }
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(SubmitAttachmentStateChangesResponse { acknowledgment: Some("ACK".into()) })
    }
}

impl StateChanges {
    /// A Fargate pool agent's attachment changes: each attachment is found through its
    /// interface's record (which names the task), and the task through the pool index.
    async fn pool_attachment_changes(
        &self,
        changes: &[AttachmentStateChange],
        ids: &[&str],
    ) -> Result<SubmitAttachmentStateChangesResponse, AwsError> {
        let enis = self
            .core
            .store
            .range(Range::prefix(berth_model::network::keys::ENIS))
            .await
            .map_err(error::store)?;
        for (i, (change, id)) in changes.iter().zip(ids).enumerate() {
            let task_arn = enis.iter().find_map(|r| {
                let e: berth_model::network::NetworkInterfaceRecord =
                    serde_json::from_slice(&r.value).ok()?;
                (e.attachment_id == *id).then_some(e.task_arn)
            });
            let task_id = task_arn.as_deref().and_then(|a| a.rsplit('/').next());
            let owner = match task_id {
                Some(t) => self
                    .core
                    .store
                    .get(&super::super::fargate::pool_task(t))
                    .await
                    .map_err(error::store)?
                    .map(|r| (String::from_utf8_lossy(&r.value).into_owned(), t.to_string())),
                None => None,
            };
            let Some((cluster, task_id)) = owner else {
                return Err(error::invalid(format!(
                    "attachments[{i}].attachmentArn: no Fargate task has the attachment {id}."
                )));
            };
            let status = change.status.clone();
            self.task_records
                .update(&cluster, &task_id, |t| {
                    for a in t.task.attachments.iter_mut().flatten() {
                        if a.id.as_deref() == Some(*id) {
                            a.status = status.clone();
                        }
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(SubmitAttachmentStateChangesResponse { acknowledgment: Some("ACK".into()) })
    }
}

async fn records_cluster(
    s: &StateChanges,
    cluster: &str,
) -> Result<Option<(berth_model::records::ClusterRecord, u64)>, AwsError> {
    crate::records::get(&*s.core.store, &keys::cluster(cluster)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_rules() {
        let scope = berth_model::arn::Scope::new("us-east-1", "000000000000");
        let c = |arn: &str, status: &str| AttachmentStateChange {
            attachment_arn: Some(arn.into()),
            status: Some(status.into()),
        };
        let good = "arn:aws:ecs:us-east-1:000000000000:attachment/3c1b8d2e";
        assert_eq!(check_change(&scope, 0, &c(good, "ATTACHED")).unwrap(), "3c1b8d2e");
        let cases = [
            (c("eni-1", "ATTACHED"), "attachments[1].attachmentArn"),
            (
                c("arn:aws:ecs:eu-west-1:000000000000:attachment/x", "ATTACHED"),
                "attachments[1].attachmentArn",
            ),
            (
                c("arn:aws:ecs:us-east-1:000000000000:task/x", "ATTACHED"),
                "attachments[1].attachmentArn",
            ),
            (c(good, "attached"), "attachments[1].status"),
            (c(good, ""), "attachments[1].status"),
        ];
        for (change, field) in cases {
            let e = check_change(&scope, 1, &change).unwrap_err();
            assert_eq!(e.code, "InvalidParameterException");
            assert!(e.message.starts_with(field), "{}", e.message);
        }
    }
}
