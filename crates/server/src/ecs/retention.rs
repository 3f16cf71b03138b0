//! Retention: what the store stops keeping once nobody can need it.
//!
//! * A STOPPED task stays describable for the retention period (`--stopped-task-retention-secs`,
//!   at least an hour: ECS's promise), counted from its `stoppedAt`; then its record and its
//!   status indexes are removed.
//! * A RunTask idempotency token lives as long as one of the tasks it started.
//! * A task definition revision that is DELETE_IN_PROGRESS is removed once no stored task
//!   uses it (its family keeps counting: revisions are never reused).
//!
//! Every removal is a compare-and-set on the record it removes, so a record that changed
//! since the sweep read it is kept for the next sweep. Sweeps are level-triggered: one runs at
//! start and then every [`SWEEP_EVERY`]; a crash mid-sweep leaves nothing half-removed that
//! the next one does not finish.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use berth_model::keys;
use berth_model::lifecycle::TaskStatus;
use berth_model::records::{RunTokenRecord, TaskRecord};
use berth_store::{Range, Record, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::TaskDefinitionStatus;

use super::core::Core;
use super::task_definitions::TaskDefinitions;
use crate::error;
use crate::records;

/// How often a sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Records read per store call while sweeping.
const CHUNK: usize = 512;

/// What one sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub tasks: usize,
    pub run_tokens: usize,
    pub task_definitions: usize,
    /// Network interfaces of stopped or vanished tasks released.
    pub enis: usize,
}

/// Runs the sweeps (see the module header).
pub struct Retention {
    core: Arc<Core>,
    task_definitions: Arc<TaskDefinitions>,
}

/// Only the fields a sweep reads of a task record.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskRef {
    task: TaskRefInner,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskRefInner {
    #[serde(default)]
    task_definition_arn: Option<String>,
}

impl Retention {
    pub fn new(core: Arc<Core>, task_definitions: Arc<TaskDefinitions>) -> Self {
        Self { core, task_definitions }
    }

    /// Sweeps until `stop` changes.
    pub async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.sweep().await {
                Ok(s) if s != Swept::default() => tracing::debug!(?s, "retention sweep"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.message, "retention sweep failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One sweep over every cluster and task definition.
    pub async fn sweep(&self) -> Result<Swept, AwsError> {
        let mut swept = Swept::default();
        for cluster in self.cluster_names().await? {
            swept.tasks += self.reap_tasks(&cluster).await?;
            swept.run_tokens += self.reap_run_tokens(&cluster).await?;
        }
        swept.task_definitions = self.reap_task_definitions().await?;
        swept.enis = self.reap_enis().await?;
        Ok(swept)
    }

    /// Releases the network interfaces of tasks that are gone or STOPPED (normally released
    /// in the transaction that stops the task; this repairs whatever a crash or an older
    /// server left).
    pub async fn reap_enis(&self) -> Result<usize, AwsError> {
        let core = &self.core;
        super::awsvpc::sweep(&*core.store, |arn: String| async move {
            // What cannot be traced to its task is kept (never release a live address).
            let Some(res) = core.scope.ecs_resource(&arn) else { return Ok(Some(false)) };
            let mut parts = res.split('/').skip(1);
            let (cluster, id) = match (parts.next(), parts.next()) {
                (Some(c), Some(id)) => (c.to_string(), id.to_string()),
                // A short ARN names no cluster: the Fargate index may, else it is kept.
                (Some(id), None) => match core
                    .store
                    .get(&super::fargate::pool_task(id))
                    .await
                    .map_err(error::store)?
                {
                    Some(r) => (String::from_utf8_lossy(&r.value).into_owned(), id.to_string()),
                    None => return Ok(Some(false)),
                },
                _ => return Ok(Some(false)),
            };
            let t = records::get::<TaskRecord>(&*core.store, &keys::task(&cluster, &id)).await?;
            Ok(t.map(|(t, _)| t.last_status() == TaskStatus::Stopped))
        })
        .await
    }

    /// Live and deleted clusters (a deleted cluster's STOPPED tasks are still retained).
    async fn cluster_names(&self) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        for prefix in [keys::CLUSTERS, "ecs/clusters-inactive/"] {
            for r in self.range(prefix).await? {
                names.extend(r.key.strip_prefix(prefix).map(str::to_string));
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn range(&self, prefix: &str) -> Result<Vec<Record>, AwsError> {
        self.core.store.range(Range::prefix(prefix)).await.map_err(error::store)
    }

    /// Removes the cluster's STOPPED tasks whose retention has run out.
    async fn reap_tasks(&self, cluster: &str) -> Result<usize, AwsError> {
        let retention = self.core.timing.stopped_task_retention_secs;
        let cutoff = self.core.now() - retention;
        let index =
            self.range(&keys::cluster_tasks_by_status_prefix(cluster, TaskStatus::Stopped)).await?;
        let mut removed = 0;
        for chunk in index.chunks(CHUNK) {
            let wanted: Vec<String> = chunk
                .iter()
                .filter_map(|e| e.key.rsplit('/').next())
                .map(|id| keys::task(cluster, id))
                .collect();
            let recs = self.core.store.get_many(&wanted).await.map_err(error::store)?;
            let found: HashSet<&str> = recs.iter().map(|r| r.key.as_str()).collect();
            for (e, key) in chunk.iter().zip(&wanted) {
                if !found.contains(key.as_str()) {
                    // An index entry whose task is gone (a crash between two sweeps' txns
                    // cannot cause it, but nothing should keep it).
                    self.core
                        .store
                        .txn(Txn::new().delete(e.key.clone()))
                        .await
                        .map_err(error::store)?;
                }
            }
            for r in recs {
                let t: TaskRecord =
                    serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
                let stopped_at = t.task.stopped_at.unwrap_or(f64::MAX);
                if t.last_status() != TaskStatus::Stopped || stopped_at > cutoff {
                    continue;
                }
                let mut txn = Txn::new()
                    .when(r.key.clone(), r.mod_revision)
                    .delete(r.key.clone())
                    .delete(keys::task_by_status(cluster, TaskStatus::Stopped, &t.id))
                    .delete(keys::task_by_desired(cluster, t.desired_status(), &t.id))
                    .delete(keys::live_task(cluster, &t.id))
                    .delete(keys::instance_task(&t.instance_id, &t.id))
                    .delete(super::fargate::pool_task(&t.id));
                if let Some(service) =
                    t.task.group.as_deref().and_then(|g| g.strip_prefix("service:"))
                {
                    txn = txn.delete(keys::service_task(cluster, service, &t.id));
                }
                if records::commit(&*self.core.store, txn).await? {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Removes RunTask tokens none of whose tasks is stored any more.
    async fn reap_run_tokens(&self, cluster: &str) -> Result<usize, AwsError> {
        let mut removed = 0;
        for r in self.range(&keys::run_token(cluster, "")).await? {
            let rec: RunTokenRecord =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            let tasks: Vec<String> = rec
                .task_arns
                .iter()
                .filter_map(|a| self.core.scope.child_id("task", cluster, a))
                .map(|id| keys::task(cluster, id))
                .collect();
            if self.core.store.get_many(&tasks).await.map_err(error::store)?.is_empty() {
                let txn = Txn::new().when(r.key.clone(), r.mod_revision).delete(r.key.clone());
                removed += usize::from(records::commit(&*self.core.store, txn).await?);
            }
        }
        Ok(removed)
    }

    /// Removes DELETE_IN_PROGRESS revisions that no stored task uses.
    async fn reap_task_definitions(&self) -> Result<usize, AwsError> {
        let status = TaskDefinitionStatus::DeleteInProgress.as_str();
        let deleting = self.range(&keys::task_definitions_by_status_prefix(status)).await?;
        if deleting.is_empty() {
            return Ok(0);
        }
        // Every task definition a stored task uses (read only when something awaits removal).
        let mut used = HashSet::new();
        for r in self.range("ecs/tasks/").await? {
            let t: TaskRef =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            used.extend(t.task.task_definition_arn);
        }
        let mut removed = 0;
        for e in deleting {
            let Some((family, revision)) = keys::parse_task_definition_key(&e.key) else {
                continue;
            };
            if used.contains(&self.core.scope.task_definition_arn(family, revision)) {
                continue;
            }
            if self.task_definitions.remove_deleted(family, revision).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_model::lifecycle::TaskStatus;
    use berth_wire::ecs::*;

    use crate::ecs::testing::{Harness, register_instance, task_definition};

    #[tokio::test]
    async fn stopped_tasks_tokens_and_deleted_revisions_go_when_their_time_comes() {
        let h = Harness::new();
        let ctx = h.ctx();
        let ecs = &h.ecs;
        register_instance(ecs, &ctx).await;
        let td = task_definition(ecs, &ctx, "web").await;
        let run = ecs
            .tasks()
            .run_task(
                &ctx,
                RunTaskRequest {
                    task_definition: Some(td.clone()),
                    client_token: Some("once".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let arn = run.tasks.unwrap()[0].task_arn.clone().unwrap();
        // The agent reports it STOPPED.
        ecs.state_changes()
            .submit_task_state_change(
                &ctx,
                SubmitTaskStateChangeRequest {
                    task: Some(arn.clone()),
                    status: Some(TaskStatus::Stopped.to_string()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // Its revision is deregistered and deleted while the task is still stored.
        let tds = ecs.task_definitions();
        let dereg = DeregisterTaskDefinitionRequest { task_definition: Some(td.clone()) };
        tds.deregister_task_definition(&ctx, dereg).await.unwrap();
        let del = DeleteTaskDefinitionsRequest { task_definitions: Some(vec![td.clone()]) };
        tds.delete_task_definitions(&ctx, del).await.unwrap();

        let describe = async |arn: &str| {
            let req = DescribeTasksRequest { tasks: Some(vec![arn.into()]), ..Default::default() };
            ecs.tasks().describe_tasks(&ctx, req).await.unwrap()
        };
        let revision = async || {
            let req = DescribeTaskDefinitionRequest {
                task_definition: Some(td.clone()),
                ..Default::default()
            };
            tds.describe_task_definition(&ctx, req).await
        };

        h.clock.advance(Duration::from_secs(59 * 60));
        let s = ecs.retention.sweep().await.unwrap();
        assert_eq!(s, super::Swept::default(), "within the hour nothing goes");
        assert_eq!(describe(&arn).await.tasks.unwrap().len(), 1);
        assert!(revision().await.is_ok(), "a revision a stored task uses stays");

        h.clock.advance(Duration::from_secs(2 * 60));
        let s = ecs.retention.sweep().await.unwrap();
        assert_eq!((s.tasks, s.run_tokens, s.task_definitions), (1, 1, 1));
        let gone = describe(&arn).await;
        assert!(gone.tasks.unwrap().is_empty());
        assert_eq!(gone.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
        assert!(revision().await.is_err(), "the deleted revision is gone");
        let list =
            ListTasksRequest { desired_status: Some(DesiredStatus::Stopped), ..Default::default() };
        assert!(ecs.tasks().list_tasks(&ctx, list).await.unwrap().task_arns.unwrap().is_empty());
        // The token expired with its task: the same token no longer answers with it, and a
        // new revision is placed (here refused: the instance's agent has been silent for an
        // hour, so the answer is a placement failure, not the old task).
        task_definition(ecs, &ctx, "web").await;
        let again = RunTaskRequest {
            task_definition: Some("web".into()),
            client_token: Some("once".into()),
            ..Default::default()
        };
        let again = ecs.tasks().run_task(&ctx, again).await.unwrap();
        assert!(again.tasks.unwrap().is_empty());
        assert_eq!(again.failures.unwrap()[0].reason.as_deref(), Some("AGENT"));
    }
}
