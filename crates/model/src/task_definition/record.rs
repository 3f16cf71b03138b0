//! [`build`]: the record ECS stores and returns for a validated request. Every request member
//! except `tags` is kept; task sizes are normalised to numeric strings; container defaults
//! are filled exactly as ECS echoes them; absent `networkMode` and `requiresCompatibilities`
//! stay absent; `compatibilities` and `requiresAttributes` are derived ([`super::derived`]).
//! It never fails: on a request [`validate`](super::validate) refused the output is
//! meaningless but well-formed.

use berth_wire::ecs::{
    Attribute, ContainerDefinition, NetworkMode, RegisterTaskDefinitionRequest, TaskDefinition,
    TaskDefinitionStatus, TransportProtocol,
};

use super::derived::{compatibilities, requires_attributes};
use super::facts::Facts;
use super::resources::{parse_task_cpu, parse_task_memory_mib};

/// What registration records about the request: where, which revision, when and by whom.
pub struct RegisterContext<'a> {
    pub region: &'a str,
    pub account_id: &'a str,
    pub revision: i32,
    /// Epoch seconds.
    pub registered_at: f64,
    /// The caller's principal ARN.
    pub registered_by: &'a str,
}

/// Builds the stored/returned TaskDefinition from a validated request, as ECS returns it: every
/// request member except `tags` (the caller keeps them), task `cpu`/`memory` as numeric strings,
/// container defaults filled, and `taskDefinitionArn`, `family`, `revision`, `status` ACTIVE,
/// `registeredAt`, `registeredBy`, `requiresAttributes` and `compatibilities` set.
pub fn build(req: &RegisterTaskDefinitionRequest, ctx: &RegisterContext) -> TaskDefinition {
    let facts = Facts::new(req);
    let family = req.family.clone().unwrap_or_default();
    let containers =
        facts.containers.iter().map(|c| normalized_container(c, req.network_mode)).collect();
    let attributes: Vec<Attribute> = requires_attributes(req)
        .into_iter()
        .map(|name| Attribute { name: Some(name), ..Default::default() })
        .collect();
    TaskDefinition {
        task_definition_arn: Some(format!(
            "arn:{}:ecs:{}:{}:task-definition/{}:{}",
            crate::regions::partition_of(ctx.region).unwrap_or("aws"),
            ctx.region,
            ctx.account_id,
            family,
            ctx.revision
        )),
        container_definitions: Some(containers),
        family: Some(family),
        task_role_arn: req.task_role_arn.clone(),
        execution_role_arn: req.execution_role_arn.clone(),
        network_mode: req.network_mode,
        revision: Some(ctx.revision),
        volumes: Some(req.volumes.clone().unwrap_or_default()),
        status: Some(TaskDefinitionStatus::Active),
        requires_attributes: (!attributes.is_empty()).then_some(attributes),
        placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
        compatibilities: Some(compatibilities(req)),
        runtime_platform: req.runtime_platform.clone(),
        requires_compatibilities: req.requires_compatibilities.clone(),
        cpu: req.cpu.as_deref().map(|s| normalized(s, parse_task_cpu(s))),
        memory: req.memory.as_deref().map(|s| normalized(s, parse_task_memory_mib(s))),
        inference_accelerators: req.inference_accelerators.clone(),
        pid_mode: req.pid_mode,
        ipc_mode: req.ipc_mode,
        proxy_configuration: req.proxy_configuration.clone(),
        registered_at: Some(ctx.registered_at),
        deregistered_at: None,
        delete_requested_at: None,
        registered_by: Some(ctx.registered_by.to_string()),
        ephemeral_storage: req.ephemeral_storage.clone(),
        enable_fault_injection: req.enable_fault_injection,
    }
}

/// A task size as the numeric string ECS returns, or the raw string when it does not parse.
fn normalized(raw: &str, parsed: Option<u32>) -> String {
    parsed.map_or_else(|| raw.to_string(), |n| n.to_string())
}

/// A container definition with the defaults ECS fills in its answers.
fn normalized_container(
    c: &ContainerDefinition,
    network_mode: Option<NetworkMode>,
) -> ContainerDefinition {
    let mut c = c.clone();
    c.cpu.get_or_insert(0);
    c.essential.get_or_insert(true);
    c.environment.get_or_insert_with(Vec::new);
    c.mount_points.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    c.system_controls.get_or_insert_with(Vec::new);
    let host_is_container = matches!(network_mode, Some(NetworkMode::Awsvpc | NetworkMode::Host));
    for pm in c.port_mappings.get_or_insert_with(Vec::new) {
        pm.protocol.get_or_insert(TransportProtocol::Tcp);
        if host_is_container && pm.host_port.is_none() && pm.container_port_range.is_none() {
            pm.host_port = pm.container_port;
        }
    }
    if let Some(hc) = &mut c.health_check {
        hc.interval.get_or_insert(30);
        hc.timeout.get_or_insert(5);
        hc.retries.get_or_insert(3);
    }
    c
}
