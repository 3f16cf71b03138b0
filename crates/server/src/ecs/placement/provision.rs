//! The provisioning pass: Fargate tasks that found no pool capacity, and tasks of an Auto
//! Scaling group capacity provider with managed scaling that found no instance of it (placed
//! on their own cluster's instances of that provider, waiting up to
//! [`SCALING_PROVISIONING_TIMEOUT_SECS`]), wait in PROVISIONING
//! (desired RUNNING), indexed under `ecs/fargate-provisioning/<cluster>/<id>`; each pass
//! (run with every service controller pass: after commits and at least once a second) looks
//! at every waiting task and
//! * stops it if it is desired STOPPED (StopTask, a service scaling in);
//! * stops it with ECS's capacity message ([`fargate::CAPACITY_UNAVAILABLE`], stop code
//!   `TaskFailedToStart`) once it has waited [`fargate::PROVISIONING_TIMEOUT_SECS`] by the
//!   injected clock;
//! * else places it on a pool instance that has room: one transaction compares the task and
//!   the instance, reserves the task on the instance, moves the task to PENDING on it and
//!   writes its instance index and the instance's desired-state marker (which wakes its
//!   agent), dropping the waiting index entry.
//!
//! Level-triggered: the index is the truth of what waits; a pass that crashes or loses a
//! compare leaves the task waiting for the next one.

use berth_model::keys;
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_model::records::TaskRecord;
use berth_scheduler::{PlacementRequest, TaskRequirements};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::TaskStopCode;
use bytes::Bytes;

use super::Placement;
use crate::ecs::{fargate, reservations};
use crate::error;
use crate::records;

/// How long a task of an Auto Scaling group capacity provider waits for its group to scale
/// out before it stops with the capacity message (ECS: 30 minutes).
pub const SCALING_PROVISIONING_TIMEOUT_SECS: f64 = 1800.0;

/// The Auto Scaling group provider a waiting task belongs to (`None`: a Fargate task).
fn scaled_provider(t: &TaskRecord) -> Option<&str> {
    t.task
        .capacity_provider_name
        .as_deref()
        .filter(|p| !berth_scheduler::capacity::is_fargate(p))
        .filter(|_| t.task.launch_type != Some(berth_wire::ecs::LaunchType::Fargate))
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provisioned {
    pub placed: usize,
    pub stopped: usize,
}

impl Placement {
    /// One provisioning pass (see the module header).
    pub async fn provision_pending(&self) -> Result<Provisioned, AwsError> {
        let mut out = Provisioned::default();
        let waiting = self
            .core
            .store
            .range(Range::prefix(fargate::PROVISIONING))
            .await
            .map_err(error::store)?;
        // FARGATE_SPOT tasks wait while Spot has no capacity (`fargate::spot_available`).
        let spot_off = !waiting.is_empty() && !fargate::spot_available(&*self.core.store).await?;
        for entry in waiting {
            let Some((cluster, id)) =
                entry.key.strip_prefix(fargate::PROVISIONING).and_then(|r| r.rsplit_once('/'))
            else {
                continue;
            };
            let found = self.task_records.get(cluster, id).await?;
            let still_waiting = found.as_ref().is_some_and(|(t, _)| {
                t.instance_id.is_empty() && t.last_status() == TaskStatus::Provisioning
            });
            if !still_waiting {
                // A stale entry: the task is gone or placed.
                let txn = Txn::new().when(entry.key.clone(), entry.mod_revision).delete(entry.key);
                records::commit(&*self.core.store, txn).await?;
                continue;
            }
            let (t, rev) = found.expect("checked above");
            let now = self.core.now();
            let timeout = if scaled_provider(&t).is_some() {
                SCALING_PROVISIONING_TIMEOUT_SECS
            } else {
                fargate::PROVISIONING_TIMEOUT_SECS
            };
            let timed_out = now - t.task.created_at.unwrap_or(now) >= timeout;
            if t.desired_status() == DesiredTaskStatus::Stopped || timed_out {
                self.task_records
                    .update(cluster, id, |t| {
                        if t.last_status() != TaskStatus::Provisioning {
                            return Ok(());
                        }
                        if t.desired_status() != DesiredTaskStatus::Stopped {
                            t.task.stop_code = Some(TaskStopCode::TaskFailedToStart);
                            t.task.stopped_reason = Some(fargate::CAPACITY_UNAVAILABLE.into());
                        }
                        t.set_desired_status(DesiredTaskStatus::Stopped);
                        t.set_last_status(TaskStatus::Stopped);
                        t.task.stopping_at.get_or_insert(now);
                        t.task.stopped_at = Some(now);
                        t.task.execution_stopped_at = Some(now);
                        for c in t.task.containers.iter_mut().flatten() {
                            berth_model::records::ContainerStatusExt::set_status(
                                c,
                                TaskStatus::Stopped,
                            );
                        }
                        Ok(())
                    })
                    .await?;
                self.core.services_changed();
                out.stopped += 1;
                continue;
            }
            if spot_off && t.task.capacity_provider_name.as_deref() == Some(fargate::SPOT) {
                continue;
            }
            if self.bind(cluster, &t, rev).await? {
                out.placed += 1;
            }
        }
        Ok(out)
    }

    /// Places one waiting Fargate task on a pool instance with room; `false` when none has
    /// room (or a compare was lost: the next pass tries again).
    async fn bind(&self, cluster: &str, t: &TaskRecord, rev: u64) -> Result<bool, AwsError> {
        let now = self.core.now();
        // A task of an Auto Scaling group provider goes to its cluster's instances of that
        // provider; a Fargate task to the pool.
        let provider = scaled_provider(t);
        let pool = if provider.is_some() { cluster } else { fargate::POOL_CLUSTER };
        let constraints = match provider {
            Some(p) => match berth_scheduler::capacity::provider_constraint(p) {
                Ok(c) => vec![c],
                Err(_) => return Ok(false),
            },
            None => vec![],
        };
        let mut cached = self.cache.lock(pool, now).await?;
        let request = PlacementRequest {
            count: 1,
            requirements: TaskRequirements {
                cpu: t.reserved_cpu,
                memory_mib: t.reserved_memory_mib,
                host_ports_tcp: t.reserved_ports_tcp.clone(),
                host_ports_udp: t.reserved_ports_udp.clone(),
                required_attributes: vec![],
            },
            group: t.task.group.clone().unwrap_or_default(),
            constraints,
            strategies: vec![],
            seed: uuid::Uuid::new_v4().as_u64_pair().0,
            targets: vec![],
        };
        let plan = match cached.state(self.cache.liveness_fn(now)).place(&request) {
            Ok(p) => p,
            Err(_) => return Ok(false),
        };
        let Some(p) = plan.placements.first() else { return Ok(false) };
        let Some((iid, inst)) = cached.instances().iter().find(|(_, i)| i.arn() == p.instance_arn)
        else {
            cached.discard_state();
            return Ok(false);
        };
        let iid = iid.clone();
        let ikey = keys::container_instance(pool, &iid);
        let mut irec = inst.record(&ikey)?;
        let irev = inst.revision;
        let mut after = t.clone();
        after.instance_id = iid.clone();
        if provider.is_some() {
            // An EC2 task shows its container instance and the instance's zone (a Fargate
            // task shows neither: the pool is not the user's).
            after.task.container_instance_arn = Some(irec.arn.clone());
            let attribute = |name: &str| {
                irec.attributes
                    .iter()
                    .find(|a| a.name.as_deref() == Some(name))
                    .and_then(|a| a.value.clone())
            };
            after.task.availability_zone = attribute("ecs.availability-zone");
            if let Some(arch) = attribute("ecs.cpu-architecture") {
                after.task.attributes = Some(vec![berth_wire::ecs::Attribute {
                    name: Some("ecs.cpu-architecture".into()),
                    value: Some(arch),
                    ..Default::default()
                }]);
            }
        }
        after.set_last_status(TaskStatus::Pending);
        after.task.version = Some(t.task.version.unwrap_or(0) + 1);
        reservations::reserve(&mut irec, &after);
        let tkey = keys::task(cluster, &t.id);
        let raw = Bytes::from(records::encode(&irec));
        let txn = Txn::new()
            .when(tkey.clone(), rev)
            .put(tkey, records::encode(&after))
            .when(ikey.clone(), irev)
            .put(ikey, raw.clone())
            .put(keys::instance_desired(&iid), Vec::new())
            .put(keys::instance_task(&iid, &t.id), keys::instance_task_value(TaskStatus::Pending))
            .delete(fargate::provisioning(cluster, &t.id))
            .delete(keys::task_by_status(cluster, TaskStatus::Provisioning, &t.id))
            .put(keys::task_by_status(cluster, TaskStatus::Pending, &t.id), Vec::new());
        let cas = records::Cas::new(&*self.core.store, format!("task {}", t.id));
        match cas.commit_at(txn).await {
            Ok(Some(revision)) => {
                cached.committed(vec![(irec, raw)], revision);
                Ok(true)
            }
            Ok(None) => {
                self.cache.refresh(&mut cached, pool, &[iid]).await?;
                Ok(false)
            }
            Err(e) => {
                cached.discard_state();
                self.cache.refresh(&mut cached, pool, &[iid]).await?;
                Err(e)
            }
        }
    }
}
