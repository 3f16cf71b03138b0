//! The read side of container instances: their records, their remaining resources, whether
//! their agent is connected, their wire shape, and the scheduler's snapshot of each.
//!
//! `agentConnected` is derived at read time from the heartbeat key, which only polls write;
//! remaining resources are the registered ones less the record's `used_*`.

use std::collections::BTreeSet;

use berth_model::keys;
use berth_model::lifecycle::TaskStatus;
use berth_model::records::{ContainerInstanceRecord, HeartbeatRecord};
use berth_scheduler::{InstanceSnapshot, InstanceStatus, Resources};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::ContainerInstances;
use crate::error;
use crate::records;

pub(super) use berth_agent_protocol::RESERVED_PORTS as DEFAULT_RESERVED_PORTS;

/// A registered resource by name.
pub(crate) fn resource<'a>(rs: &'a [Resource], name: &str) -> Option<&'a Resource> {
    rs.iter().find(|r| r.name.as_deref() == Some(name))
}

fn int_resource(name: &str, v: i64) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(i32::try_from(v).unwrap_or(i32::MAX)),
        double_value: Some(0.0),
        long_value: Some(0),
        ..Default::default()
    }
}

/// A resource as ECS describes it: `doubleValue`, `longValue` and `integerValue` all present
/// (0 where the agent registered another type), as in DescribeContainerInstances' example.
fn with_all_values(mut r: Resource) -> Resource {
    r.double_value.get_or_insert(0.0);
    r.long_value.get_or_insert(0);
    r.integer_value.get_or_insert(0);
    r
}

pub(super) fn ports_resource(name: &str, ports: Vec<String>) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(ports),
        double_value: Some(0.0),
        long_value: Some(0),
        integer_value: Some(0),
    }
}

/// Registered CPU / memory of an instance.
pub(crate) fn registered_int(rec: &ContainerInstanceRecord, name: &str) -> i64 {
    resource(&rec.registered_resources, name)
        .map(|r| {
            r.integer_value
                .map(i64::from)
                .or(r.long_value.filter(|v| *v != 0))
                .or(r.double_value.map(|d| d as i64))
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Registered (reserved) ports of an instance.
pub(crate) fn registered_ports(rec: &ContainerInstanceRecord, name: &str) -> Vec<u16> {
    resource(&rec.registered_resources, name)
        .and_then(|r| r.string_set_value.as_ref())
        .map(|v| v.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

pub(super) fn instance_not_found(given: &str) -> AwsError {
    error::invalid(format!("Container instance '{given}' not found in the cluster."))
}

impl ContainerInstances {
    /// Seconds since the instance's agent last polled, or `None` if it never did.
    async fn heartbeat_age(&self, id: &str) -> Result<Option<f64>, AwsError> {
        Ok(records::get::<HeartbeatRecord>(&*self.core.store, &keys::instance_heartbeat(id))
            .await?
            .map(|(h, _)| (self.core.now() - h.last_seen).max(0.0)))
    }

    /// Whether the instance's agent is connected now.
    pub(crate) async fn agent_connected(&self, id: &str) -> Result<bool, AwsError> {
        Ok(self
            .heartbeat_age(id)
            .await?
            .is_some_and(|age| age <= self.core.timing.agent_timeout_secs))
    }

    /// Counts of the instance's PENDING (any status before RUNNING) and RUNNING tasks.
    pub(crate) async fn instance_task_counts(&self, id: &str) -> Result<(i32, i32), AwsError> {
        let recs = self
            .core
            .store
            .range(Range::prefix(&keys::instance_tasks_prefix(id)))
            .await
            .map_err(error::store)?;
        let (mut pending, mut running) = (0, 0);
        for r in recs {
            match TaskStatus::from_bytes(&r.value) {
                Some(TaskStatus::Running) => running += 1,
                Some(TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating) => {
                    pending += 1
                }
                _ => {}
            }
        }
        Ok((pending, running))
    }

    pub(crate) async fn instance_to_wire(
        &self,
        rec: &ContainerInstanceRecord,
        with_tags: bool,
    ) -> Result<ContainerInstance, AwsError> {
        let mut tcp: Vec<u16> = registered_ports(rec, "PORTS");
        tcp.extend(&rec.used_ports_tcp);
        tcp.sort_unstable();
        tcp.dedup();
        let mut udp: Vec<u16> = registered_ports(rec, "PORTS_UDP");
        udp.extend(&rec.used_ports_udp);
        udp.sort_unstable();
        udp.dedup();
        let remaining = vec![
            int_resource("CPU", registered_int(rec, "CPU") - rec.used_cpu),
            int_resource("MEMORY", registered_int(rec, "MEMORY") - rec.used_memory_mib),
            ports_resource("PORTS", tcp.iter().map(u16::to_string).collect()),
            ports_resource("PORTS_UDP", udp.iter().map(u16::to_string).collect()),
        ];
        let live = rec.status != InstanceStatus::Inactive;
        let (pending, running) =
            if live { self.instance_task_counts(&rec.id).await? } else { (0, 0) };
        Ok(ContainerInstance {
            container_instance_arn: Some(rec.arn.clone()),
            ec2_instance_id: Some(rec.ec2_instance_id.clone()),
            version: Some(rec.version),
            version_info: rec.version_info.clone(),
            remaining_resources: Some(remaining),
            registered_resources: Some(
                rec.registered_resources.iter().cloned().map(with_all_values).collect(),
            ),
            status: Some(rec.status.as_str().to_string()),
            agent_connected: Some(live && self.agent_connected(&rec.id).await?),
            running_tasks_count: Some(running),
            pending_tasks_count: Some(pending),
            attributes: Some(rec.attributes.clone()),
            registered_at: Some(rec.registered_at),
            attachments: Some(vec![]),
            tags: with_tags.then(|| rec.tags.clone()),
            ..Default::default()
        })
    }

    /// The live (ACTIVE or DRAINING) record of an instance named by id or ARN.
    pub(crate) async fn live_instance(
        &self,
        cluster: &str,
        given: &str,
    ) -> Result<Option<(ContainerInstanceRecord, u64)>, AwsError> {
        let Some(id) = self.core.scope.child_id("container-instance", cluster, given) else {
            return Ok(None);
        };
        records::get(&*self.core.store, &keys::container_instance(cluster, id)).await
    }

    /// The live instance registered for an EC2 instance id, through its index entry (a stale
    /// entry, whose record is gone, reads as none).
    pub(crate) async fn by_ec2_id(
        &self,
        cluster: &str,
        ec2_instance_id: &str,
    ) -> Result<Option<(ContainerInstanceRecord, u64)>, AwsError> {
        let index = keys::instance_by_ec2(cluster, ec2_instance_id);
        let Some(entry) = self.core.store.get(&index).await.map_err(error::store)? else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&entry.value);
        let found: Option<(ContainerInstanceRecord, u64)> =
            records::get(&*self.core.store, &keys::container_instance(cluster, &id)).await?;
        Ok(found.filter(|(r, _)| r.ec2_instance_id == ec2_instance_id))
    }

    /// Writes the EC2 id index entry of every live instance that lacks one (databases written
    /// before the index existed); run once at start. Returns how many it wrote.
    pub async fn backfill_ec2_index(&self) -> Result<usize, AwsError> {
        let recs =
            self.core.store.range(Range::prefix(keys::INSTANCES)).await.map_err(error::store)?;
        let mut written = 0;
        for (rec, _) in records::decode_all::<ContainerInstanceRecord>(recs)? {
            let index = keys::instance_by_ec2(&rec.cluster, &rec.ec2_instance_id);
            // Only where absent: a registration racing this writes its own entry first.
            let txn = Txn::new().when(index.clone(), 0).put(index, rec.id.clone());
            if self.core.store.txn(txn).await.map_err(error::store)?.committed() {
                written += 1;
            }
        }
        Ok(written)
    }

    /// Every live instance of a cluster with its revision (the scheduler's snapshot).
    pub(crate) async fn cluster_instances(
        &self,
        cluster: &str,
    ) -> Result<Vec<(ContainerInstanceRecord, u64)>, AwsError> {
        let recs = self
            .core
            .store
            .range(Range::prefix(&keys::cluster_instances_prefix(cluster)))
            .await
            .map_err(error::store)?;
        records::decode_all(recs)
    }

    /// The scheduler's view of an instance, read from the store.
    pub(crate) async fn snapshot(
        &self,
        rec: &ContainerInstanceRecord,
    ) -> Result<InstanceSnapshot, AwsError> {
        let connected = self.agent_connected(&rec.id).await?;
        let running = self.instance_task_counts(&rec.id).await?.1.max(0) as u32;
        Ok(snapshot_of(rec, connected, running))
    }
}

/// The scheduler's view of an instance record, given whether its agent is connected and how
/// many of its tasks are RUNNING.
pub(crate) fn snapshot_of(
    rec: &ContainerInstanceRecord,
    agent_connected: bool,
    running_tasks_count: u32,
) -> InstanceSnapshot {
    let mut tcp: BTreeSet<u16> = registered_ports(rec, "PORTS").into_iter().collect();
    tcp.extend(&rec.used_ports_tcp);
    let mut udp: BTreeSet<u16> = registered_ports(rec, "PORTS_UDP").into_iter().collect();
    udp.extend(&rec.used_ports_udp);
    InstanceSnapshot {
        arn: rec.arn.clone(),
        status: match rec.status {
            s @ (InstanceStatus::Active | InstanceStatus::Draining) => s,
            _ => InstanceStatus::Inactive,
        },
        agent_connected,
        remaining: Resources {
            cpu: registered_int(rec, "CPU") - rec.used_cpu,
            memory_mib: registered_int(rec, "MEMORY") - rec.used_memory_mib,
        },
        used_ports_tcp: tcp,
        used_ports_udp: udp,
        attributes: std::sync::Arc::new(
            rec.attributes
                .iter()
                .filter_map(|a| a.name.clone().map(|n| (n, a.value.clone())))
                .collect(),
        ),
        ec2_instance_id: Some(rec.ec2_instance_id.clone()),
        agent_version: rec.version_info.as_ref().and_then(|v| v.agent_version.clone()),
        registered_at_ms: Some((rec.registered_at * 1000.0) as i64),
        running_tasks_count,
        task_groups: rec.task_groups.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_resources_carry_all_four_values() {
        let int = |v| Resource {
            name: Some("CPU".into()),
            r#type: Some("INTEGER".into()),
            integer_value: Some(v),
            ..Default::default()
        };
        let set = Resource {
            name: Some("PORTS".into()),
            r#type: Some("STRINGSET".into()),
            string_set_value: Some(vec!["22".into()]),
            ..Default::default()
        };
        // (registered, expected (doubleValue, longValue, integerValue))
        let table = [
            (int(1024), (0.0, 0, 1024)),
            (set.clone(), (0.0, 0, 0)),
            (Resource { long_value: Some(7), ..int(2) }, (0.0, 7, 2)),
            (Resource { double_value: Some(1.5), ..set }, (1.5, 0, 0)),
        ];
        for (r, (d, l, i)) in table {
            let got = with_all_values(r.clone());
            assert_eq!(
                (got.double_value, got.long_value, got.integer_value),
                (Some(d), Some(l), Some(i)),
                "{r:?}"
            );
            assert_eq!(
                (got.name, got.r#type, got.string_set_value),
                (r.name, r.r#type, r.string_set_value)
            );
        }
    }
}
