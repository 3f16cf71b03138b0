//! The task's state as the outside sees it: the report the actor publishes (ECS's
//! SubmitTaskStateChange shape plus container health, stop code and start time) and its
//! entry of the task metadata endpoint.
//!
//! Contract: every publication is the task's complete current state (never a delta), so the
//! reporter may drop all but the newest; the actor is the only writer of its metadata entry,
//! which is removed once the task is STOPPED.

use berth_agent_protocol::{ContainerHealth, TaskReport};
use berth_model::lifecycle::TaskStatus;
use berth_runtime::Protocol;
use berth_wire::ecs::{
    ContainerStateChange, NetworkBinding, SubmitTaskStateChangeRequest, TransportProtocol,
};

use super::{TaskActor, now, rfc3339_epoch};

impl TaskActor {
    /// Publishes the task's full current state.
    pub(super) fn publish(&self) {
        let containers = self
            .runs
            .iter()
            .map(|r| ContainerStateChange {
                container_name: Some(r.name.clone()),
                image_digest: r.image_digest.clone(),
                runtime_id: r.id.clone(),
                exit_code: r.exit_code.and_then(|c| i32::try_from(c).ok()),
                network_bindings: Some(r.bindings.clone()),
                reason: r.reason.clone(),
                status: Some(r.status.to_string()),
            })
            .collect();
        let report = TaskReport {
            change: SubmitTaskStateChangeRequest {
                cluster: Some(self.ctx.cluster.clone()),
                task: Some(self.arn.clone()),
                status: Some(self.known.as_str().to_string()),
                reason: self.stopped_reason.clone(),
                containers: Some(containers),
                pull_started_at: self.pull_started_at,
                pull_stopped_at: self.pull_stopped_at,
                execution_stopped_at: (self.known == TaskStatus::Stopped).then(now),
                ..Default::default()
            },
            container_instance_arn: self.ctx.instance_arn.clone(),
            container_health: self
                .runs
                .iter()
                .filter_map(|r| {
                    Some(ContainerHealth {
                        container_name: r.name.clone(),
                        health_status: r.health?,
                    })
                })
                .collect(),
            stop_code: self.stop_code,
            started_at: self.started_at,
            // Stamped by the reporter.
            epoch: 0,
            seq: 0,
        };
        let _ = self.ctx.reports.send(report);
        self.publish_metadata();
    }

    /// Updates this task's entry of the metadata endpoint (this actor is its only writer).
    pub(super) fn publish_metadata(&self) {
        self.publish_role_sources();
        let Some(registry) = &self.ctx.metadata else { return };
        if self.known == TaskStatus::Stopped {
            registry.remove(&self.metadata_token);
            return;
        }
        let desired = self.desired.borrow();
        let network_mode = self.td.network_mode.map_or("bridge", |m| m.as_str()).to_string();
        let awsvpc = desired.network.as_ref().map(|n| crate::metadata::AwsvpcMeta {
            mac: n.mac_address.clone(),
            subnet_cidr: n.subnet_cidr.clone(),
            private_dns_name: n.private_dns_name.clone(),
            gateway: n.gateway.to_string(),
        });
        let meta = crate::metadata::TaskMeta {
            cluster: self.ctx.cluster.clone(),
            task_arn: self.arn.clone(),
            family: self.td.family.clone().unwrap_or_default(),
            revision: self.td.revision.unwrap_or(0).to_string(),
            desired_status: desired.desired_status.to_string(),
            known_status: self.known.as_str().to_string(),
            availability_zone: Some(self.ctx.availability_zone.clone()),
            pull_started_at: rfc3339_epoch(self.pull_started_at),
            pull_stopped_at: rfc3339_epoch(self.pull_stopped_at),
            cpu: self.td.cpu.clone(),
            memory: self.td.memory.clone(),
            containers: self
                .runs
                .iter()
                .map(|r| crate::metadata::ContainerMeta {
                    name: r.name.clone(),
                    docker_id: r.id.clone(),
                    docker_name: r.docker_name.clone(),
                    image: r.def.image.clone().unwrap_or_default(),
                    image_id: r.image_digest.clone(),
                    labels: r
                        .def
                        .docker_labels
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                        .collect(),
                    desired_status: desired.desired_status.to_string(),
                    known_status: r.status.to_string(),
                    cpu: i64::from(r.def.cpu.unwrap_or(0)),
                    memory: r.def.memory.map(i64::from),
                    created_at: r.created_at.clone(),
                    started_at: r.started_at.clone(),
                    finished_at: r.finished_at.clone(),
                    exit_code: r.exit_code,
                    network_mode: network_mode.clone(),
                    ipv4: r.ip.clone(),
                    ports: r
                        .bindings
                        .iter()
                        .map(|b| {
                            serde_json::json!({
                                "ContainerPort": b.container_port,
                                "Protocol": b.protocol.map_or("tcp", |p| p.as_str()),
                                "HostPort": b.host_port,
                                "HostIp": b.bind_ip,
                            })
                        })
                        .collect(),
                    health: r.health.map(|h| h.as_str().to_string()),
                    container_arn: None,
                    awsvpc: awsvpc.clone(),
                })
                .collect(),
        };
        registry.publish(&self.metadata_token, meta);
    }
}

/// ECS network bindings from what the runtime bound (IPv4 entries, as ECS lists them).
pub(super) fn bindings(st: &berth_runtime::ContainerStatus) -> Vec<NetworkBinding> {
    st.port_bindings
        .iter()
        .filter(|b| !b.host_ip.contains(':'))
        .map(|b| NetworkBinding {
            bind_ip: Some(b.host_ip.clone()),
            container_port: Some(i32::from(b.container_port)),
            host_port: Some(i32::from(b.host_port)),
            protocol: Some(if b.protocol == Protocol::Udp {
                TransportProtocol::Udp
            } else {
                TransportProtocol::Tcp
            }),
            ..Default::default()
        })
        .collect()
}
