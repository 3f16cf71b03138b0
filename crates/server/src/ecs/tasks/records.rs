//! Task records and their indexes: the one place that creates a task record and the one
//! read-modify-write of an existing one.
//!
//! Invariants kept here, in the same transaction as every change of a task's statuses:
//! * `ecs/tasks-by-status/<cluster>/<lastStatus>/<id>` and `.../tasks-by-desired/...` hold one
//!   key per task, under its current statuses;
//! * `ecs/live-tasks/<cluster>/<id>` and the instance's task index
//!   (`ecs/instance-tasks/<instance>/<id>`, valued with the last status) exist exactly while
//!   the task is not STOPPED;
//! * the instance's desired-state marker is rewritten whenever what its agent must do
//!   changes (a new task, a new desired status), which wakes the agent's poll;
//! * when a task reaches STOPPED, what it held on its instance is released
//!   ([`crate::ecs::reservations`]) with a compare-and-set on the instance record (a Fargate
//!   task's instance is in the pool's cluster), and its network interface with all its keys
//!   (`crate::ecs::awsvpc::release`);
//! * a Fargate task has its pool index entry (`ecs/fargate-tasks/<id>`, removed with the
//!   record by retention); one not yet placed (PROVISIONING, no instance) has its waiting
//!   entry (`ecs/fargate-provisioning/<cluster>/<id>`) instead of an instance index, until it
//!   is placed or STOPPED.
//!
//! Statuses only move forward: callers decide with `berth_model::lifecycle`, this module
//! keeps the indexes true to whatever the record says.

use std::sync::Arc;

use berth_model::keys;
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_model::records::{ContainerInstanceRecord, TaskRecord};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use crate::ecs::core::Core;
use crate::ecs::{awsvpc, fargate, reservations};
use crate::records;

/// What a new task is made of, besides the instance it is placed on.
#[derive(Clone, Copy)]
pub struct NewTask<'a> {
    pub cluster: &'a str,
    pub td: &'a TaskDefinition,
    pub overrides: Option<&'a TaskOverride>,
    pub requirements: &'a berth_scheduler::TaskRequirements,
    pub started_by: Option<&'a str>,
    pub group: &'a str,
    pub tags: &'a [Tag],
    /// The service that owns the task (its task index is written with it).
    pub service: Option<&'a str>,
    /// The capacity provider whose instances the task is placed on (its
    /// `capacityProviderName`).
    pub capacity_provider: Option<&'a str>,
    /// The task ARN's format: the creator's `taskLongArnFormat` account setting (`None`: the
    /// account default, which the placement executor reads).
    pub long_arn: Option<bool>,
    /// A Fargate task (launch type FARGATE, placed on the Fargate pool: `crate::ecs::fargate`).
    pub fargate: bool,
    /// The awsvpc network the task gets an interface in (`crate::ecs::awsvpc`).
    pub network: Option<&'a crate::ecs::awsvpc::NetworkPlan>,
}

/// Writes task records (see the module header).
pub struct TaskRecords {
    core: Arc<Core>,
}

impl TaskRecords {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// One task's record and revision.
    pub async fn get(
        &self,
        cluster: &str,
        id: &str,
    ) -> Result<Option<(TaskRecord, u64)>, AwsError> {
        records::get(&*self.core.store, &keys::task(cluster, id)).await
    }

    /// A new task record for `spec` on `instance` (not yet stored); `None`: a Fargate task
    /// that waits in PROVISIONING for pool capacity.
    pub fn build(
        &self,
        instance: Option<&ContainerInstanceRecord>,
        spec: &NewTask<'_>,
    ) -> TaskRecord {
        let NewTask {
            cluster,
            td,
            overrides,
            requirements: req,
            started_by,
            group,
            tags: task_tags,
            capacity_provider,
            long_arn,
            fargate,
            ..
        } = *spec;
        let id = berth_model::arn::new_resource_id(long_arn.unwrap_or(true));
        let task_arn = self.core.scope.task_arn(cluster, &id);
        let now = self.core.now();
        let containers =
            td.container_definitions
                .iter()
                .flatten()
                .map(|d| {
                    let name = d.name.clone().unwrap_or_default();
                    let o = overrides.and_then(|o| o.container_overrides.as_ref()).and_then(|cs| {
                        cs.iter().find(|c| c.name.as_deref() == Some(name.as_str()))
                    });
                    Container {
                        container_arn: Some(self.core.scope.ecs_arn(&format!(
                            "container/{cluster}/{id}/{}",
                            uuid::Uuid::new_v4()
                        ))),
                        task_arn: Some(task_arn.clone()),
                        name: Some(name),
                        image: d.image.clone(),
                        last_status: Some(TaskStatus::Pending.as_str().to_string()),
                        network_interfaces: Some(vec![]),
                        // UNKNOWN until a health check reports, and for good without one,
                        // as ECS describes containers.
                        health_status: Some(HealthStatus::Unknown),
                        cpu: Some(o.and_then(|o| o.cpu).or(d.cpu).unwrap_or(0).to_string()),
                        memory: o.and_then(|o| o.memory).or(d.memory).map(|m| m.to_string()),
                        memory_reservation: o
                            .and_then(|o| o.memory_reservation)
                            .or(d.memory_reservation)
                            .map(|m| m.to_string()),
                        ..Default::default()
                    }
                })
                .collect();
        let attribute = |name: &str| {
            instance?
                .attributes
                .iter()
                .find(|a| a.name.as_deref() == Some(name))
                .and_then(|a| a.value.clone())
        };
        let az = attribute("ecs.availability-zone");
        let arch = attribute("ecs.cpu-architecture");
        let first_status =
            if instance.is_some() { TaskStatus::Pending } else { TaskStatus::Provisioning };
        let mut task = Task {
            task_arn: Some(task_arn),
            cluster_arn: Some(self.core.scope.cluster_arn(cluster)),
            task_definition_arn: td.task_definition_arn.clone(),
            container_instance_arn: instance.map(|i| i.arn.clone()),
            overrides: Some(task_overrides(td, overrides)),
            last_status: Some(first_status.as_str().to_string()),
            desired_status: Some(DesiredTaskStatus::Running.as_str().to_string()),
            cpu: Some(req.cpu.to_string()),
            memory: Some(req.memory_mib.to_string()),
            containers: Some(containers),
            started_by: started_by.map(str::to_string),
            group: Some(group.to_string()),
            launch_type: Some(LaunchType::Ec2),
            capacity_provider_name: capacity_provider.map(str::to_string),
            created_at: Some(now),
            version: Some(1),
            tags: Some(task_tags.to_vec()),
            health_status: Some(HealthStatus::Unknown),
            availability_zone: az,
            attributes: arch.map(|a| {
                vec![Attribute {
                    name: Some("ecs.cpu-architecture".into()),
                    value: Some(a),
                    ..Default::default()
                }]
            }),
            attachments: Some(vec![]),
            enable_execute_command: Some(false),
            ..Default::default()
        };
        if fargate {
            // As ECS shows a Fargate task: no container instance; the platform it runs.
            task.launch_type = Some(LaunchType::Fargate);
            task.container_instance_arn = None;
            task.capacity_provider_name = Some(capacity_provider.unwrap_or("FARGATE").to_string());
            task.platform_version = Some(crate::ecs::fargate::PLATFORM_VERSION.into());
            task.platform_family = Some(crate::ecs::fargate::PLATFORM_FAMILY.into());
            task.ephemeral_storage = Some(EphemeralStorage {
                size_in_gi_b: td
                    .ephemeral_storage
                    .as_ref()
                    .and_then(|e| e.size_in_gi_b)
                    .or(Some(20)),
            });
            task.attributes = None;
        }
        TaskRecord {
            id,
            cluster: cluster.to_string(),
            instance_id: instance.map(|i| i.id.clone()).unwrap_or_default(),
            task,
            reserved_cpu: req.cpu,
            reserved_memory_mib: req.memory_mib,
            reserved_ports_tcp: req.host_ports_tcp.clone(),
            reserved_ports_udp: req.host_ports_udp.clone(),
            protected_until: None,
            report_mark: None,
        }
    }

    /// Adds to `txn` the writes that store a new task placed on its instance: the record,
    /// its indexes and, for a service's task, the service's task index. The caller writes the
    /// instance record with the task reserved ([`reservations::reserve`]) and its marker.
    pub fn insert(txn: Txn, rec: &TaskRecord, spec: &NewTask<'_>) -> Txn {
        let (cluster, id) = (rec.cluster.as_str(), rec.id.as_str());
        let mut txn = txn
            .put(keys::task(cluster, id), records::encode(rec))
            .put(keys::live_task(cluster, id), Vec::new())
            .put(keys::task_by_status(cluster, rec.last_status(), id), Vec::new())
            .put(keys::task_by_desired(cluster, rec.desired_status(), id), Vec::new());
        if rec.instance_id.is_empty() {
            // A Fargate task waiting for pool capacity (the provisioning pass places it).
            txn = txn.put(fargate::provisioning(cluster, id), Vec::new());
        } else {
            txn = txn.put(
                keys::instance_task(&rec.instance_id, id),
                keys::instance_task_value(rec.last_status()),
            );
        }
        if fargate::is_fargate_task(&rec.task) {
            txn = txn.put(fargate::pool_task(id), cluster.as_bytes().to_vec());
        }
        if let Some(svc) = spec.service {
            let idx = berth_model::service::ServiceTaskIndex {
                deployment: spec.started_by.unwrap_or_default().to_string(),
                healthy: false,
            };
            txn = txn.put(keys::service_task(cluster, svc, id), records::encode(&idx));
        }
        txn
    }

    /// Adds to `txn` the index writes that follow a task from `before` to `after` (the
    /// record itself and the instance's reservations are the caller's).
    pub fn reindex(mut txn: Txn, before: &TaskRecord, after: &TaskRecord) -> Txn {
        let (cluster, id, instance) = (&after.cluster, &after.id, &after.instance_id);
        let (old_last, new_last) = (before.last_status(), after.last_status());
        let (old_desired, new_desired) = (before.desired_status(), after.desired_status());
        if old_last != new_last {
            txn = txn
                .delete(keys::task_by_status(cluster, old_last, id))
                .put(keys::task_by_status(cluster, new_last, id), Vec::new());
        }
        let placed = !instance.is_empty();
        if old_desired != new_desired {
            txn = txn
                .delete(keys::task_by_desired(cluster, old_desired, id))
                .put(keys::task_by_desired(cluster, new_desired, id), Vec::new());
            if placed {
                txn = txn.put(keys::instance_desired(instance), Vec::new());
            }
        }
        if new_last == TaskStatus::Stopped && old_last != TaskStatus::Stopped {
            txn = txn.delete(keys::live_task(cluster, id));
            if placed {
                txn = txn
                    .delete(keys::instance_task(instance, id))
                    .put(keys::instance_desired(instance), Vec::new());
            } else {
                txn = txn.delete(fargate::provisioning(cluster, id));
            }
        } else if placed && old_last != new_last && new_last != TaskStatus::Stopped {
            txn = txn.put(keys::instance_task(instance, id), keys::instance_task_value(new_last));
        }
        txn
    }

    /// Read-modify-write of one task with compare-and-set, keeping every index and the
    /// instance's reserved resources in step with the task's statuses. `f` edits the record
    /// or refuses; an unchanged record is not written. `Ok(None)`: no such task.
    pub async fn update(
        &self,
        cluster: &str,
        task_id: &str,
        mut f: impl FnMut(&mut TaskRecord) -> Result<(), AwsError>,
    ) -> Result<Option<TaskRecord>, AwsError> {
        let key = keys::task(cluster, task_id);
        let store = &*self.core.store;
        let mut cas = records::Cas::new(store, format!("task {task_id}"));
        let done = 'cas: loop {
            cas.attempt().await?;
            let Some((before, rev)) = records::get::<TaskRecord>(store, &key).await? else {
                break 'cas None;
            };
            let mut after = before.clone();
            f(&mut after)?;
            attachment_follows_task(&before, &mut after);
            if after == before {
                break 'cas Some(after);
            }
            after.task.version = Some(before.task.version.unwrap_or(0) + 1);
            let mut txn =
                Txn::new().when(key.clone(), rev).put(key.clone(), records::encode(&after));
            txn = Self::reindex(txn, &before, &after);
            let stopped_now = after.last_status() == TaskStatus::Stopped
                && before.last_status() != TaskStatus::Stopped;
            if stopped_now {
                // Release what the task held on its instance (if the instance still exists;
                // a Fargate task's is in the pool).
                let ikey = keys::container_instance(instance_cluster(&after), &after.instance_id);
                if !after.instance_id.is_empty()
                    && let Some((mut inst, irev)) =
                        records::get::<ContainerInstanceRecord>(store, &ikey).await?
                {
                    reservations::release(&mut inst, &after);
                    txn = txn.when(ikey.clone(), irev).put(ikey, records::encode(&inst));
                }
                // And its network interface, in the same transaction.
                if let Some((eni, erev)) = awsvpc::task_eni(store, &after.task).await? {
                    txn = awsvpc::release(
                        txn.when(berth_model::network::keys::eni(&eni.id), erev),
                        &eni,
                    );
                }
            }
            if cas.commit(txn).await? {
                break 'cas Some(after);
            }
        };
        Ok(done)
    }
}

/// A task desired STOPPED that was never placed (a Fargate task waiting for capacity) has
/// nothing to stop: it is STOPPED at once.
pub fn stop_if_unplaced(t: &mut TaskRecord, now: f64) {
    if t.instance_id.is_empty()
        && t.desired_status() == DesiredTaskStatus::Stopped
        && t.last_status() != TaskStatus::Stopped
    {
        t.set_last_status(TaskStatus::Stopped);
        t.task.stopping_at.get_or_insert(now);
        t.task.stopped_at = Some(now);
        t.task.execution_stopped_at = Some(now);
        for c in t.task.containers.iter_mut().flatten() {
            berth_model::records::ContainerStatusExt::set_status(c, TaskStatus::Stopped);
        }
    }
}

/// A task's ENI attachment follows the task where the agent said nothing of it: ATTACHED
/// once the task runs (its network is up), DELETED once it has STOPPED (its interface is
/// released in the same transaction).
fn attachment_follows_task(before: &TaskRecord, after: &mut TaskRecord) {
    let status = |t: &TaskRecord| {
        t.task
            .attachments
            .iter()
            .flatten()
            .find(|a| a.r#type.as_deref() == Some(awsvpc::ENI_ATTACHMENT))
            .and_then(|a| a.status.clone())
    };
    let Some(current) = status(after) else { return };
    let last = after.last_status();
    if last == TaskStatus::Stopped && before.last_status() != TaskStatus::Stopped {
        awsvpc::set_attachment_status(&mut after.task, "DELETED");
    } else if last >= TaskStatus::Running
        && last != TaskStatus::Stopped
        && matches!(current.as_str(), "PRECREATED" | "CREATED" | "ATTACHING")
    {
        awsvpc::set_attachment_status(&mut after.task, "ATTACHED");
    }
}

/// The cluster of the instance a task is placed on: the pool's for a Fargate task.
pub fn instance_cluster(t: &TaskRecord) -> &str {
    if fargate::is_fargate_task(&t.task) { fargate::POOL_CLUSTER } else { &t.cluster }
}

/// A task's `overrides` as ECS answers them: one `containerOverrides` entry per container of
/// the task definition, in its order (the request's override for that container, else just
/// its `name`), and `inferenceAcceleratorOverrides` present, empty when not given.
fn task_overrides(td: &TaskDefinition, given: Option<&TaskOverride>) -> TaskOverride {
    let mut out = given.cloned().unwrap_or_default();
    let requested = out.container_overrides.take().unwrap_or_default();
    out.container_overrides = Some(
        td.container_definitions
            .iter()
            .flatten()
            .map(|d| {
                requested.iter().find(|c| c.name == d.name).cloned().unwrap_or_else(|| {
                    ContainerOverride { name: d.name.clone(), ..Default::default() }
                })
            })
            .collect(),
    );
    out.inference_accelerator_overrides.get_or_insert_with(Vec::new);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(names: &[&str]) -> TaskDefinition {
        TaskDefinition {
            container_definitions: Some(
                names
                    .iter()
                    .map(|n| ContainerDefinition {
                        name: Some(n.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn named(n: &str) -> ContainerOverride {
        ContainerOverride { name: Some(n.into()), ..Default::default() }
    }

    #[test]
    fn overrides_name_every_container_as_ecs_answers() {
        let web_cmd = ContainerOverride { command: Some(vec!["run".into()]), ..named("web") };
        let role = TaskOverride { task_role_arn: Some("arn:role".into()), ..Default::default() };
        // (containers, request's overrides, expected containerOverrides, expected taskRoleArn)
        type Case<'a> =
            (&'a [&'a str], Option<TaskOverride>, Vec<ContainerOverride>, Option<&'a str>);
        let table: Vec<Case> = vec![
            (&["web"], None, vec![named("web")], None),
            (&["web", "db"], None, vec![named("web"), named("db")], None),
            (
                &["web", "db"],
                Some(TaskOverride {
                    container_overrides: Some(vec![web_cmd.clone()]),
                    ..Default::default()
                }),
                vec![web_cmd.clone(), named("db")],
                None,
            ),
            (
                &["db", "web"],
                Some(TaskOverride {
                    container_overrides: Some(vec![web_cmd.clone()]),
                    ..Default::default()
                }),
                vec![named("db"), web_cmd.clone()],
                None,
            ),
            (&["web"], Some(role), vec![named("web")], Some("arn:role")),
        ];
        for (names, given, want, role) in table {
            let got = task_overrides(&td(names), given.as_ref());
            assert_eq!(got.container_overrides, Some(want), "{names:?}");
            assert_eq!(got.inference_accelerator_overrides, Some(vec![]));
            assert_eq!(got.task_role_arn.as_deref(), role);
        }
    }
}
