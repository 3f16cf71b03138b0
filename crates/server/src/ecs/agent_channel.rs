//! The agent channel: each agent's long poll for its instance's complete desired state
//! (which is also its heartbeat) and its task reports.
//!
//! Contract: a poll answers as soon as the instance's desired-state marker
//! (`ecs/instance-desired/<id>`) is newer than the version the agent has seen, or when the
//! wait it asked for runs out (at most `MAX_WAIT_SECONDS`, and never longer than the
//! heartbeat interval, a third of the agent timeout: each poll records the heartbeat). Writers of anything an agent
//! must act on rewrite the marker in the same transaction, and the poll wakes on every store
//! commit, so nothing depends on a message being delivered: a lost answer is repeated by
//! the next poll.

use std::sync::Arc;

use berth_agent_protocol::{DesiredTask, PollRequest, PollResponse, TaskReport};
use berth_model::keys;
use berth_model::records::{ContainerInstanceRecord, HeartbeatRecord, TaskRecord};
use berth_store::{Range, Txn};
use berth_wire::AwsError;

use super::RequestContext;
use super::core::Core;
use super::state_changes::StateChanges;
use crate::error;
use crate::records;

/// How long a poll may be held when the agent asks for more.
const MAX_POLL_WAIT: std::time::Duration =
    std::time::Duration::from_secs(berth_agent_protocol::MAX_WAIT_SECONDS as u64);

/// Serves the agents' poll and report endpoints.
pub struct AgentChannel {
    core: Arc<Core>,
    state_changes: Arc<StateChanges>,
}

impl AgentChannel {
    pub fn new(core: Arc<Core>, state_changes: Arc<StateChanges>) -> Self {
        Self { core, state_changes }
    }

    pub async fn agent_report(
        &self,
        _ctx: &RequestContext,
        report: TaskReport,
    ) -> Result<(), AwsError> {
        self.state_changes.apply(&report).await
    }

    /// The complete desired state of an instance.
    async fn desired_state(
        &self,
        cluster: &str,
        rec: &ContainerInstanceRecord,
    ) -> Result<Vec<DesiredTask>, AwsError> {
        let idx = self
            .core
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
        for r in self.core.store.get_many(&ids).await.map_err(error::store)? {
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
        let cluster = self.core.cluster_name(Some(&req.cluster))?;
        let Some(id) =
            self.core.scope.child_id("container-instance", &cluster, &req.container_instance_arn)
        else {
            return Err(error::invalid(
                "containerInstanceArn is not a container instance of this cluster.",
            ));
        };
        let id = id.to_string();
        let heartbeat = self.core.timing.agent_heartbeat_secs;
        // A poll is the heartbeat: it is never held longer than the heartbeat interval (a
        // third of the agent timeout), so an idle agent never looks disconnected.
        let wait = std::time::Duration::from_secs(u64::from(req.wait_seconds))
            .min(MAX_POLL_WAIT)
            .min(std::time::Duration::from_secs(u64::from(heartbeat)));
        let deadline = tokio::time::Instant::now() + wait;
        let mut watch = self.core.store.watch();
        let mut beat = true;
        loop {
            watch.borrow_and_update();
            let Some((rec, _)) = records::get::<ContainerInstanceRecord>(
                &*self.core.store,
                &keys::container_instance(&cluster, &id),
            )
            .await?
            else {
                // Deregistered (or never registered): the agent must stop everything.
                return Ok(PollResponse {
                    version: self.core.store.revision().await.map_err(error::store)?,
                    instance_status: "INACTIVE".into(),
                    tasks: vec![],
                    heartbeat_seconds: heartbeat,
                    epoch: 0,
                });
            };
            if beat {
                let hb = HeartbeatRecord { last_seen: self.core.now() };
                self.core
                    .store
                    .txn(Txn::new().put(keys::instance_heartbeat(&id), records::encode(&hb)))
                    .await
                    .map_err(error::store)?;
                beat = false;
            }
            let version = self
                .core
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
