//! The agent channel: each agent's long poll for its instance's complete desired state
//! (which is also its heartbeat) and its task reports.
//!
//! Contract: a poll answers as soon as the instance's desired-state marker
//! (`ecs/instance-desired/<id>`) is newer than the version the agent has seen, or when the
//! wait it asked for runs out (at most `MAX_WAIT_SECONDS`, and never longer than the
//! heartbeat interval, a third of the agent timeout: each poll records the heartbeat). Writers of anything an agent
//! must act on rewrite the marker in the same transaction; a held poll is woken only when its
//! own instance's marker is written (the store's change feed, routed per instance by
//! [`Wakers`]), so a commit costs nothing to the thousands of polls it does not concern.
//! Nothing depends on a message being delivered: a lost answer is repeated by the next poll,
//! and a poll re-reads the marker whenever it wakes, including at its deadline.
//!
//! awsvpc: each awsvpc task carries its `TaskNetwork` (its interface, the subnet's CIDR and
//! gateway) and the answer carries the resolved rules of every security group those tasks
//! are in (`security_groups`). The answer's `version` is the newest of the instance's marker
//! and, for every group those rules depend on (the tasks' groups and the groups their rules
//! reference), the group's record and its members' change marker (`ecs/sg-changed/<group>`,
//! rewritten with every interface that comes or goes): an edited rule or a member coming or
//! going bumps it, and wakes the held polls of the instances whose rules depend on the group
//! (level-triggered: the dependency list is recomputed whenever the marker moves).
//!
//! A Fargate pool instance (`crate::ecs::fargate`) polls in the pool's cluster; its tasks
//! are found in their own clusters through the pool index.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use berth_store::{Op, RecvError, Store};
use tokio::sync::Notify;

use berth_agent_protocol::{DesiredTask, PollRequest, PollResponse, TaskReport};
use berth_model::keys;
use berth_model::lifecycle::{DesiredTaskStatus, InstanceStatus, TaskStatus};
use berth_model::network::{SecurityGroupRules, TaskNetwork};
use berth_model::records::{ContainerInstanceRecord, HeartbeatRecord, TaskRecord};
use berth_store::{Range, Txn};
use berth_wire::AwsError;

use super::RequestContext;
use super::core::Core;
use super::state_changes::{Source, StateChanges};
use super::task_definitions::TaskDefinitions;
use super::{awsvpc, fargate};
use crate::error;
use crate::records;

/// An instance's desired state as a poll answers it.
struct Desired {
    tasks: Vec<DesiredTask>,
    security_groups: Vec<SecurityGroupRules>,
    /// The groups `security_groups` are made of (see [`Wakers`]).
    depends_on: Vec<String>,
}

/// How long a poll may be held when the agent asks for more.
const MAX_POLL_WAIT: std::time::Duration =
    std::time::Duration::from_secs(berth_agent_protocol::MAX_WAIT_SECONDS as u64);

/// Serves the agents' poll and report endpoints.
pub struct AgentChannel {
    core: Arc<Core>,
    state_changes: Arc<StateChanges>,
    task_definitions: Arc<TaskDefinitions>,
    wakers: Arc<Wakers>,
}

/// One notifier per instance that has a poll held, woken from the change feed when the
/// instance's desired-state marker is written (all of them when the feed lags).
#[derive(Default)]
pub struct Wakers {
    held: Mutex<HashMap<String, Arc<Notify>>>,
    /// Instance id -> (the desired-state marker revision it was computed at, the security
    /// groups its awsvpc tasks' rules depend on): a change to one of those groups (its
    /// record, or its members' marker) wakes the instance's held poll.
    groups: Mutex<HashMap<String, (u64, Vec<String>)>>,
}

impl Wakers {
    /// Follows `store`'s change feed until the store is dropped.
    fn follow(store: &dyn Store) -> Arc<Self> {
        let wakers = Arc::new(Self::default());
        let mut changes = store.changes();
        let weak = Arc::downgrade(&wakers);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(async move {
                loop {
                    let change = changes.recv().await;
                    let Some(wakers) = weak.upgrade() else { return };
                    match change {
                        Ok(c) => wakers.wake(&c.ops),
                        Err(RecvError::Lagged(_)) => wakers.wake_all(),
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        wakers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The notifier of an instance, for one held poll.
    fn hold(&self, id: &str) -> Arc<Notify> {
        self.lock().entry(id.to_string()).or_default().clone()
    }

    /// A held poll of `id` ended: forget its notifier once no poll holds it.
    fn release(&self, id: &str, notify: Arc<Notify>) {
        let mut held = self.lock();
        drop(notify);
        if held.get(id).is_some_and(|n| Arc::strong_count(n) == 1) {
            held.remove(id);
        }
    }

    fn wake(&self, ops: &[Op]) {
        let held = self.lock();
        if held.is_empty() {
            return;
        }
        for op in ops {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            if let Some(n) = keys::parse_instance_desired_key(key).and_then(|id| held.get(id)) {
                n.notify_waiters();
            }
            let group = key
                .strip_prefix(berth_model::network::keys::SECURITY_GROUPS)
                .or_else(|| key.strip_prefix(awsvpc::GROUP_CHANGED));
            if let Some(g) = group {
                let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
                for (id, (_, deps)) in groups.iter() {
                    if deps.iter().any(|d| d == g)
                        && let Some(n) = held.get(id)
                    {
                        n.notify_waiters();
                    }
                }
            }
        }
    }

    /// The groups instance `id`'s rules depend on, if known at marker revision `marker`.
    fn groups_of(&self, id: &str, marker: u64) -> Option<Vec<String>> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups.get(id).filter(|(at, _)| *at == marker).map(|(_, g)| g.clone())
    }

    fn set_groups(&self, id: &str, marker: u64, deps: Vec<String>) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if deps.is_empty() {
            groups.remove(id);
        } else {
            groups.insert(id.to_string(), (marker, deps));
        }
    }

    fn wake_all(&self) {
        self.lock().values().for_each(|n| n.notify_waiters());
    }
}

impl AgentChannel {
    pub fn new(
        core: Arc<Core>,
        state_changes: Arc<StateChanges>,
        task_definitions: Arc<TaskDefinitions>,
    ) -> Self {
        let wakers = Wakers::follow(&*core.store);
        Self { core, state_changes, task_definitions, wakers }
    }

    pub async fn agent_report(
        &self,
        _ctx: &RequestContext,
        report: TaskReport,
    ) -> Result<(), AwsError> {
        self.state_changes.apply(&report, Source::Agent).await
    }

    /// The complete desired state of an instance: its tasks, and the rules of the security
    /// groups its awsvpc tasks are in (with every group those rules depend on).
    async fn desired_state(&self, cluster: &str, instance_id: &str) -> Result<Desired, AwsError> {
        let idx = self
            .core
            .store
            .range(Range::prefix(&keys::instance_tasks_prefix(instance_id)))
            .await
            .map_err(error::store)?;
        let task_ids: Vec<&str> = idx.iter().filter_map(|r| r.key.rsplit('/').next()).collect();
        let ids: Vec<String> = if fargate::is_pool(cluster) {
            // A pool instance's tasks belong to the clusters the pool index names.
            let pool_keys: Vec<String> = task_ids.iter().map(|id| fargate::pool_task(id)).collect();
            let found = self.core.store.get_many(&pool_keys).await.map_err(error::store)?;
            found
                .iter()
                .filter_map(|r| {
                    let id = r.key.strip_prefix(fargate::POOL_TASKS)?;
                    Some(keys::task(std::str::from_utf8(&r.value).ok()?, id))
                })
                .collect()
        } else {
            task_ids.iter().map(|id| keys::task(cluster, id)).collect()
        };
        let mut out = Vec::new();
        let mut groups: BTreeSet<String> = BTreeSet::new();
        let mut subnets: HashMap<String, Option<String>> = HashMap::new();
        // Service Connect's client aliases, added to its tasks' `/etc/hosts` (issue #17).
        let aliases = crate::servicediscovery::service_connect::AliasIndex::load(
            &*self.core.store,
            self.core.timing.service_connect_address,
        )
        .await?;
        for r in self.core.store.get_many(&ids).await.map_err(error::store)? {
            let t: TaskRecord =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            let arn = t.task.task_definition_arn.as_deref().unwrap_or_default();
            // The revision a task runs outlives it (deleted revisions are removed only once no
            // stored task names them); should it be unreadable all the same, the agent gets
            // the ARN alone and reports the task STOPPED, rather than the whole instance
            // losing its desired state.
            let task_definition = match self.task_definitions.by_arn(arn).await {
                Ok(rec) => rec.task_definition.clone(),
                Err(e) => {
                    tracing::warn!(task = %t.id, error = %e.message, "task definition unreadable");
                    berth_wire::ecs::TaskDefinition {
                        task_definition_arn: Some(arn.to_string()),
                        ..Default::default()
                    }
                }
            };
            let task_definition = crate::servicediscovery::service_connect::AliasIndex::with_hosts(
                task_definition,
                &aliases.hosts(&t),
            );
            out.push(DesiredTask {
                task_arn: t.task.task_arn.clone().unwrap_or_default(),
                // A service task DEACTIVATING (its load balancer targets draining) keeps
                // running on its agent until the service controller moves it to STOPPING.
                desired_status: if t.last_status() == TaskStatus::Deactivating {
                    DesiredTaskStatus::Running
                } else {
                    t.desired_status()
                },
                last_status: t.last_status(),
                task_definition,
                overrides: t.task.overrides.clone(),
                stopped_reason: t.task.stopped_reason.clone(),
                created_at: t.task.created_at.unwrap_or(0.0),
                network: self.task_network(&t, &mut subnets, &mut groups).await?,
                launch_type: t.task.launch_type,
                dns_servers: self
                    .core
                    .timing
                    .container_dns
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect(),
            });
        }
        let (security_groups, depends_on) = self.rules(&groups).await?;
        Ok(Desired { tasks: out, security_groups, depends_on })
    }

    /// An awsvpc task's network as its agent applies it (`None`: not awsvpc, or its
    /// interface is already released); its groups are added to `groups`.
    async fn task_network(
        &self,
        t: &TaskRecord,
        subnets: &mut HashMap<String, Option<String>>,
        groups: &mut BTreeSet<String>,
    ) -> Result<Option<TaskNetwork>, AwsError> {
        let Some((eni, _)) = awsvpc::task_eni(&*self.core.store, &t.task).await? else {
            return Ok(None);
        };
        let cidr = match subnets.get(&eni.subnet_id) {
            Some(c) => c.clone(),
            None => {
                let key = berth_model::network::keys::subnet(&eni.subnet_id);
                let c = records::get::<berth_model::network::SubnetRecord>(&*self.core.store, &key)
                    .await?
                    .map(|(s, _)| s.cidr_block);
                subnets.insert(eni.subnet_id.clone(), c.clone());
                c
            }
        };
        let Some(cidr) = cidr else { return Ok(None) };
        groups.extend(eni.security_groups.iter().cloned());
        Ok(awsvpc::task_network(
            &eni,
            &cidr,
            &self.core.scope.region,
            awsvpc::assigns_public_ip(&eni),
        ))
    }

    /// The resolved rules of `groups`, and every group they depend on (themselves and the
    /// groups their rules reference).
    async fn rules(
        &self,
        groups: &BTreeSet<String>,
    ) -> Result<(Vec<SecurityGroupRules>, Vec<String>), AwsError> {
        use berth_model::network::{self, Peer, SecurityGroupRecord, keys as nkeys};
        let mut records = Vec::new();
        let mut depends: BTreeSet<String> = groups.clone();
        for g in groups {
            if let Some((rec, _)) =
                records::get::<SecurityGroupRecord>(&*self.core.store, &nkeys::security_group(g))
                    .await?
            {
                for r in rec.ingress.iter().chain(&rec.egress) {
                    if let Peer::Group(other) = &r.peer {
                        depends.insert(other.clone());
                    }
                }
                records.push(rec);
            }
        }
        let mut members: HashMap<String, Vec<std::net::Ipv4Addr>> = HashMap::new();
        for g in &depends {
            let recs = self
                .core
                .store
                .range(Range::prefix(&nkeys::security_group_members_prefix(g)))
                .await
                .map_err(error::store)?;
            let ips = recs
                .iter()
                .filter_map(|r| std::str::from_utf8(&r.value).ok()?.parse().ok())
                .collect();
            members.insert(g.clone(), ips);
        }
        let lookup = |g: &str| members.get(g).cloned().unwrap_or_default();
        let rules = records.iter().map(|rec| network::resolve(rec, &lookup)).collect();
        Ok((rules, depends.into_iter().collect()))
    }

    /// The newest revision of what the rules of `groups` are made of: each group's record
    /// and its members' change marker ([`awsvpc::group_changed`]).
    async fn groups_version(&self, groups: &[String]) -> Result<u64, AwsError> {
        if groups.is_empty() {
            return Ok(0);
        }
        let mut wanted = Vec::with_capacity(groups.len() * 2);
        for g in groups {
            wanted.push(berth_model::network::keys::security_group(g));
            wanted.push(awsvpc::group_changed(g));
        }
        let found = self.core.store.get_many(&wanted).await.map_err(error::store)?;
        Ok(found.iter().map(|r| r.mod_revision).max().unwrap_or(0))
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
            return Err(instance_unknown(&cluster, &req.container_instance_arn));
        };
        let id = id.to_string();
        let heartbeat = self.core.timing.agent_heartbeat_secs;
        // A poll is the heartbeat: it is never held longer than the heartbeat interval (a
        // third of the agent timeout), so an idle agent never looks disconnected.
        let wait = std::time::Duration::from_secs(u64::from(req.wait_seconds))
            .min(MAX_POLL_WAIT)
            .min(std::time::Duration::from_secs(u64::from(heartbeat)));
        let deadline = tokio::time::Instant::now() + wait;
        let notify = self.wakers.hold(&id);
        let answer = self.hold_poll(&cluster, &id, &req, deadline, &notify).await;
        self.wakers.release(&id, notify);
        answer
    }

    /// The poll proper: answers once the marker is newer than what the agent has seen, or
    /// at the deadline.
    async fn hold_poll(
        &self,
        cluster: &str,
        id: &str,
        req: &PollRequest,
        deadline: tokio::time::Instant,
        notify: &Notify,
    ) -> Result<PollResponse, AwsError> {
        let heartbeat = self.core.timing.agent_heartbeat_secs;
        let mut beat = true;
        loop {
            // Registered before the marker is read, so a write after the read wakes it.
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            // Only what the answer needs: a held poll must not keep the whole record (about
            // 5 KB decoded) alive while it waits, once per agent.
            let live = records::get::<ContainerInstanceRecord>(
                &*self.core.store,
                &keys::container_instance(cluster, id),
            )
            .await?
            .map(|(rec, _)| (rec.status, rec.epoch));
            let Some((status, epoch)) = live else {
                // Never registered here, as far as this server knows: not INACTIVE.
                if records::get::<ContainerInstanceRecord>(
                    &*self.core.store,
                    &keys::inactive_container_instance(cluster, id),
                )
                .await?
                .is_none()
                {
                    return Err(instance_unknown(cluster, &req.container_instance_arn));
                }
                // Deregistered: the agent must stop everything.
                return Ok(PollResponse {
                    version: self.core.store.revision().await.map_err(error::store)?,
                    instance_status: InstanceStatus::Inactive,
                    tasks: vec![],
                    heartbeat_seconds: heartbeat,
                    epoch: 0,
                    security_groups: vec![],
                });
            };
            if beat {
                let hb = HeartbeatRecord { last_seen: self.core.now() };
                self.core
                    .store
                    .txn(Txn::new().put(keys::instance_heartbeat(id), records::encode(&hb)))
                    .await
                    .map_err(error::store)?;
                beat = false;
            }
            let marker = self
                .core
                .store
                .get(&keys::instance_desired(id))
                .await
                .map_err(error::store)?
                .map_or(0, |r| r.mod_revision);
            // The version also follows the security groups the instance's tasks depend on,
            // so an edited rule or a member coming or going reaches the agent.
            let mut computed = None;
            let deps = match self.wakers.groups_of(id, marker) {
                Some(deps) => deps,
                None => {
                    let d = self.desired_state(cluster, id).await?;
                    self.wakers.set_groups(id, marker, d.depends_on.clone());
                    let deps = d.depends_on.clone();
                    computed = Some(d);
                    deps
                }
            };
            let version = marker.max(self.groups_version(&deps).await?);
            if version > req.seen_version || tokio::time::Instant::now() >= deadline {
                let d = match computed {
                    Some(d) => d,
                    None => {
                        let d = self.desired_state(cluster, id).await?;
                        self.wakers.set_groups(id, marker, d.depends_on.clone());
                        d
                    }
                };
                return Ok(PollResponse {
                    version,
                    instance_status: status,
                    tasks: d.tasks,
                    heartbeat_seconds: heartbeat,
                    epoch,
                    security_groups: d.security_groups,
                });
            }
            let _ = tokio::time::timeout_at(deadline, woken).await;
        }
    }
}

/// The poll of an instance the server has no record of, live or deregistered: not INACTIVE
/// (that would make its agent stop everything), but an answer of its own.
fn instance_unknown(cluster: &str, arn: &str) -> AwsError {
    error::instance_unknown(format!(
        "This server has no record of container instance {arn} in cluster {cluster}, registered or deregistered (was an older database restored, or is the agent pointed at another server?). Register again without the ARN; the containers the instance runs are not this server's to stop."
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_agent_protocol::PollRequest;
    use berth_model::lifecycle::InstanceStatus;
    use berth_wire::ecs::*;

    use crate::ecs::testing::*;

    #[tokio::test]
    async fn a_held_poll_wakes_for_its_own_instance_only() {
        let h = Harness::new();
        let ctx = h.ctx();
        let ecs = &h.ecs;
        let a = register_instance(ecs, &ctx).await;
        let b = register_instance(ecs, &ctx).await;
        let seen = |arn: &str| PollRequest {
            cluster: "default".into(),
            container_instance_arn: arn.into(),
            seen_version: 0,
            wait_seconds: 0,
        };
        let first = ecs.agent_channel.agent_poll(&ctx, seen(&a)).await.unwrap();
        let held = PollRequest { seen_version: first.version, wait_seconds: 10, ..seen(&a) };
        let poll = ecs.agent_channel.agent_poll(&ctx, held);
        tokio::pin!(poll);
        let drain = async |arn: &str| {
            let req = UpdateContainerInstancesStateRequest {
                container_instances: Some(vec![arn.into()]),
                status: Some(ContainerInstanceStatus::Draining),
                ..Default::default()
            };
            ecs.container_instances().update_container_instances_state(&ctx, req).await.unwrap();
        };
        // b's marker changes: a's poll stays held.
        drain(&b).await;
        let early = tokio::time::timeout(Duration::from_millis(300), &mut poll).await;
        assert!(early.is_err(), "a poll woke for another instance's change");
        // a's marker changes: its poll answers at once, with the new status.
        drain(&a).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), &mut poll)
            .await
            .expect("the poll answers when its marker changes")
            .unwrap();
        assert!(answer.version > first.version);
        assert_eq!(answer.instance_status, InstanceStatus::Draining);
    }

    #[tokio::test]
    async fn a_deregistered_instance_is_inactive_and_an_unknown_one_is_told_so() {
        let h = Harness::new();
        let ctx = h.ctx();
        let ecs = &h.ecs;
        let gone = register_instance(ecs, &ctx).await;
        let poll = |arn: &str| PollRequest {
            cluster: "default".into(),
            container_instance_arn: arn.into(),
            seen_version: 0,
            wait_seconds: 0,
        };
        let req = DeregisterContainerInstanceRequest {
            container_instance: Some(gone.clone()),
            ..Default::default()
        };
        ecs.container_instances().deregister_container_instance(&ctx, req).await.unwrap();
        // Deregistered: INACTIVE, so its agent stops everything.
        let answer = ecs.agent_channel.agent_poll(&ctx, poll(&gone)).await.unwrap();
        assert_eq!(answer.instance_status, InstanceStatus::Inactive);
        // Never registered here (an older database, another server): not INACTIVE, but an
        // answer the agent tells apart, so it registers again and keeps its containers.
        let unknown = gone.replace(gone.rsplit('/').next().unwrap(), "0123456789abcdef");
        let foreign = "arn:aws:ecs:eu-west-1:999999999999:container-instance/default/abc";
        for arn in [unknown.as_str(), foreign] {
            let e = ecs.agent_channel.agent_poll(&ctx, poll(arn)).await.unwrap_err();
            assert_eq!(e.code, berth_agent_protocol::errors::INSTANCE_UNKNOWN, "{arn}: {e}");
            assert_eq!(e.status, 404);
            assert!(e.message.contains(arn), "{}", e.message);
        }
    }

    #[tokio::test]
    async fn a_task_record_names_its_revision_and_the_poll_carries_it_in_full() {
        let h = Harness::new();
        let ctx = h.ctx();
        let ecs = &h.ecs;
        let instance = register_instance(ecs, &ctx).await;
        let td = task_definition(ecs, &ctx, "web").await;
        let req = RunTaskRequest { task_definition: Some(td.clone()), ..Default::default() };
        let task = ecs.tasks().run_task(&ctx, req).await.unwrap().tasks.unwrap().remove(0);
        let id = task.task_arn.as_deref().unwrap().rsplit('/').next().unwrap().to_string();

        // The stored task holds no copy of its revision (records stay small)...
        let key = berth_model::keys::task("default", &id);
        let stored = h.store.get(&key).await.unwrap().expect("task record");
        let json: serde_json::Value = serde_json::from_slice(&stored.value).unwrap();
        assert!(json.get("taskDefinition").is_none(), "{json}");

        // ...yet the agent gets it in full, as it did when records carried one.
        let poll = PollRequest {
            cluster: "default".into(),
            container_instance_arn: instance.clone(),
            seen_version: 0,
            wait_seconds: 0,
        };
        let answer = ecs.agent_channel.agent_poll(&ctx, poll.clone()).await.unwrap();
        let desired = &answer.tasks[0].task_definition;
        assert_eq!(desired.task_definition_arn.as_deref(), Some(td.as_str()));
        let containers = desired.container_definitions.as_deref().unwrap();
        assert_eq!(containers[0].image.as_deref(), Some("berth-demo:latest"));

        // A record written by an older server, with its copy, still reads.
        let mut legacy = json;
        legacy["taskDefinition"] = serde_json::to_value(desired).unwrap();
        let txn = berth_store::Txn::new().put(key, serde_json::to_vec(&legacy).unwrap());
        assert!(h.store.txn(txn).await.unwrap().committed());
        let again = ecs.agent_channel.agent_poll(&ctx, poll).await.unwrap();
        assert_eq!(again.tasks[0].task_arn, answer.tasks[0].task_arn);
        assert_eq!(&again.tasks[0].task_definition, desired);
    }
}
