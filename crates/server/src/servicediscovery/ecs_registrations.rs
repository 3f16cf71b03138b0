//! ECS service discovery (issue #17): the `serviceRegistries` of ECS services, checked when a
//! service is created or updated ([`check`]), and the controller that keeps each service
//! task registered in its Cloud Map service ([`run`]).
//!
//! Contract and invariants:
//! * **Level-triggered.** One loop per region compares what should be registered (computed
//!   by [`desired`], pure, from the region's live ECS services with `serviceRegistries`, their
//!   tasks and the Cloud Map services) with the Cloud Map instances ECS registered (those
//!   carrying [`ECS_CLUSTER_NAME`] and [`ECS_SERVICE_NAME`]) and registers, updates or
//!   deregisters the difference, each write a compare-and-set on the instance's key with the
//!   `REGISTER_INSTANCE` / `DEREGISTER_INSTANCE` operation record Cloud Map keeps. A pass runs
//!   when a transaction writes ECS tasks, services or Cloud Map records (at most every
//!   [`MIN_GAP`]) and at least every [`PERIOD`]; a failed pass writes nothing it has not
//!   finished computing, and the next pass starts over.
//! * **Who is registered.** A task of the service (indexed under its service) that is
//!   desired RUNNING and last RUNNING, and healthy when its task definition has container
//!   health checks (`healthStatus` HEALTHY), is an instance whose id is the task id, with
//!   ECS's attributes: `AWS_INSTANCE_IPV4` (an awsvpc task's ENI address; a bridge or host
//!   task's host address, the `berth.host-ipv4` attribute its container instance registers
//!   with), `AWS_INSTANCE_PORT` (only for a registry with an SRV record: the registry's
//!   `port`, or the `containerPort`'s host port for bridge tasks, the container port
//!   otherwise), `AVAILABILITY_ZONE`, `REGION`, `ECS_CLUSTER_NAME`, `ECS_SERVICE_NAME`,
//!   `ECS_TASK_DEFINITION_FAMILY`.
//! * **Health.** For a Cloud Map service with `HealthCheckCustomConfig`, an instance once
//!   registered stays registered while its task runs and its custom health follows the task's
//!   container health (UNHEALTHY hides it from DNS, HEALTHY shows it again). Without it, an
//!   unhealthy task is deregistered.
//! * **Deregistration first.** A task leaves Cloud Map as soon as it is desired STOPPED (the
//!   write StopTask, a scale-in or a deployment makes before any agent acts on it) or is no
//!   longer RUNNING (a container that died): so a killed task leaves DNS before its
//!   replacement, which registers only once RUNNING, appears.
//! * Instances of deleted services, of tasks gone from the store and of registries removed
//!   from a service are deregistered by the same comparison.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_model::keys as ecs_keys;
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_model::records::{ContainerInstanceRecord, TaskDefinitionRecord, TaskRecord};
use berth_model::service::ServiceRecord as EcsService;
use berth_model::servicediscovery::{
    self as model, DnsRecordKind, Health, InstanceRecord, attributes, keys,
};
use berth_store::{Range, Revision, Store, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::{HealthStatus, NetworkMode, ServiceRegistry, TaskDefinition};
use berth_wire::servicediscovery as wire;
use tokio::sync::watch;

use super::{CloudMap, list, now};
use crate::{error, records};

/// Longest wait between passes.
pub const PERIOD: Duration = Duration::from_secs(5);
/// Shortest gap between two passes.
pub const MIN_GAP: Duration = Duration::from_millis(50);

pub const ECS_CLUSTER_NAME: &str = "ECS_CLUSTER_NAME";
pub const ECS_SERVICE_NAME: &str = "ECS_SERVICE_NAME";
pub const ECS_TASK_DEFINITION_FAMILY: &str = "ECS_TASK_DEFINITION_FAMILY";
pub const AVAILABILITY_ZONE: &str = "AVAILABILITY_ZONE";
pub const REGION: &str = "REGION";
/// The container instance attribute holding its host's address (the agent registers it).
pub const HOST_IPV4_ATTRIBUTE: &str = "berth.host-ipv4";

/// The Cloud Map service id a registry ARN names (`...:service/srv-...`).
fn registry_service_id(arn: &str) -> Option<&str> {
    arn.rsplit_once(":service/").map(|(_, id)| id).filter(|id| !id.is_empty())
}

fn network_mode(td: &TaskDefinition) -> NetworkMode {
    td.network_mode.unwrap_or(NetworkMode::Bridge)
}

fn bad(message: String) -> AwsError {
    error::invalid(message)
}

/// CreateService's and UpdateService's checks of `serviceRegistries` against the task
/// definition the service runs and the Cloud Map services they name (the request-only rules
/// are [`berth_model::service_rules::check_service_registries`]). Errors are ECS's
/// `InvalidParameterException`, worded as ECS words them where known.
pub(crate) async fn check(
    store: &dyn Store,
    td: &TaskDefinition,
    regs: &[ServiceRegistry],
) -> Result<(), AwsError> {
    for r in regs {
        let arn = r.registry_arn.as_deref().unwrap_or_default();
        let id = registry_service_id(arn).ok_or_else(|| {
            bad(format!(
                "serviceRegistries.registryArn: '{arn}' is not an AWS Cloud Map service ARN."
            ))
        })?;
        let Some((svc, _)) =
            records::get::<model::ServiceRecord>(store, &keys::service(id)).await?
        else {
            return Err(bad(format!(
                "serviceRegistries.registryArn: the service registry {arn} does not exist in this Region (create it with servicediscovery create-service)."
            )));
        };
        let srv = svc
            .dns_config
            .as_ref()
            .is_some_and(|d| d.records.iter().any(|r| r.kind == DnsRecordKind::Srv));
        let mode = network_mode(td);
        let pair = r.container_name.is_some() && r.container_port.is_some();
        match mode {
            NetworkMode::Bridge | NetworkMode::Host => {
                if !pair {
                    return Err(bad(format!(
                        "When specifying 'host' or 'bridge' for networkMode, values for 'containerName' and 'containerPort' must be specified from the task definition. Registry: {arn}"
                    )));
                }
                if !srv {
                    return Err(bad(format!(
                        "serviceRegistries: the service registry {arn} has no SRV record, and tasks in the '{mode}' network mode share their host's address: give the registry an SRV record, or use the awsvpc network mode for A records."
                    )));
                }
            }
            NetworkMode::Awsvpc => {
                if srv && r.port.is_none() && !pair {
                    return Err(bad(format!(
                        "The service registry {arn} has an SRV record: specify a value for 'port', or for 'containerName' and 'containerPort'."
                    )));
                }
                if !srv && r.container_port.is_some() {
                    return Err(bad(
                        "The values specified for serviceRegistries do not require a value for 'containerPort'. Remove the value and retry.".into(),
                    ));
                }
                if !srv && r.port.is_some() {
                    return Err(bad(
                        "The values specified for serviceRegistries do not require a value for 'port'. Remove the value and retry.".into(),
                    ));
                }
            }
            other => {
                return Err(bad(format!(
                    "serviceRegistries: tasks in the '{other}' network mode have no address to register; use awsvpc, bridge or host."
                )));
            }
        }
        if let (Some(name), Some(port)) = (&r.container_name, r.container_port) {
            let def = td
                .container_definitions
                .iter()
                .flatten()
                .find(|c| c.name.as_deref() == Some(name.as_str()))
                .ok_or_else(|| {
                    bad(format!(
                        "serviceRegistries.containerName: the container '{name}' is not in the task definition."
                    ))
                })?;
            let mapped = def.port_mappings.iter().flatten().any(|m| m.container_port == Some(port));
            if !mapped {
                return Err(bad(format!(
                    "serviceRegistries.containerPort: the container '{name}' has no port mapping for containerPort {port}."
                )));
            }
        }
    }
    Ok(())
}

/// ListServicesByNamespace: the ARNs of the live ECS services (every cluster of the region)
/// whose `serviceRegistries` name a Cloud Map service of `namespace` (its name, id or ARN), or
/// whose Service Connect configuration names the namespace,
/// sorted; `NamespaceNotFoundException` when the region has no such namespace.
pub(crate) async fn services_in_namespace(
    store: &dyn Store,
    namespace: &str,
) -> Result<Vec<String>, AwsError> {
    let id = namespace.rsplit_once(":namespace/").map_or(namespace, |(_, id)| id);
    let found = list::<model::NamespaceRecord>(store, keys::NAMESPACES)
        .await?
        .into_iter()
        .map(|(_, n, _)| n)
        .find(|n| n.id == id || n.name.eq_ignore_ascii_case(namespace.trim_end_matches('.')));
    let Some(ns) = found else {
        return Err(berth_wire::ecs::ErrorCode::NamespaceNotFoundException
            .with(format!("The namespace '{namespace}' was not found.")));
    };
    let in_ns: std::collections::HashSet<String> =
        list::<model::ServiceRecord>(store, keys::SERVICES)
            .await?
            .into_iter()
            .filter(|(_, s, _)| s.namespace_id == ns.id)
            .map(|(_, s, _)| s.id)
            .collect();
    let mut arns = Vec::new();
    for r in store.range(Range::prefix("ecs/services/")).await.map_err(error::store)? {
        let svc: EcsService =
            serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
        let registers = svc.service.service_registries.iter().flatten().any(|reg| {
            reg.registry_arn
                .as_deref()
                .and_then(registry_service_id)
                .is_some_and(|id| in_ns.contains(id))
        });
        // Service Connect (its deployments name the namespace by ARN).
        let connects = svc.deployments.iter().any(|d| {
            d.service_connect.as_ref().is_some_and(|c| {
                berth_model::service_connect::enabled(c)
                    && c.namespace.as_deref() == Some(ns.arn.as_str())
            })
        });
        let uses = registers || connects;
        if uses && let Some(arn) = svc.service.service_arn {
            arns.push(arn);
        }
    }
    arns.sort();
    Ok(arns)
}

/// One instance ECS wants registered.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Wanted {
    pub service_id: String,
    pub task_id: String,
    pub attributes: BTreeMap<String, String>,
    /// The task's health as custom health shows it (services with `HealthCheckCustomConfig`).
    pub healthy: bool,
    /// Whether the task may be registered now (not yet registered: only when healthy).
    pub may_register: bool,
}

/// What one pass reads.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub region: String,
    pub services: Vec<EcsService>,
    /// By (cluster, service name).
    pub tasks: HashMap<(String, String), Vec<TaskRecord>>,
    pub task_definitions: HashMap<String, TaskDefinition>,
    /// Container instances by id.
    pub instances: HashMap<String, ContainerInstanceRecord>,
    pub registries: HashMap<String, model::ServiceRecord>,
}

fn family_of(td_arn: &str) -> &str {
    td_arn.rsplit_once("task-definition/").map_or("", |(_, f)| f).split(':').next().unwrap_or("")
}

fn task_ipv4(t: &TaskRecord) -> Option<String> {
    let from_containers = t.task.containers.iter().flatten().find_map(|c| {
        c.network_interfaces.iter().flatten().find_map(|n| n.private_ipv4_address.clone())
    });
    from_containers.or_else(|| {
        t.task.attachments.iter().flatten().find_map(|a| {
            a.details.iter().flatten().find_map(|d| {
                (d.name.as_deref() == Some("privateIPv4Address")).then(|| d.value.clone()).flatten()
            })
        })
    })
}

/// The instances ECS wants registered (pure).
pub(crate) fn desired(s: &Snapshot) -> Vec<Wanted> {
    let mut out = Vec::new();
    for svc in &s.services {
        let regs = svc.service.service_registries.as_deref().unwrap_or_default();
        if regs.is_empty() {
            continue;
        }
        let tasks = s.tasks.get(&(svc.cluster.clone(), svc.name.clone()));
        for t in tasks.into_iter().flatten() {
            if t.desired_status() != DesiredTaskStatus::Running
                || t.last_status() != TaskStatus::Running
            {
                continue;
            }
            let td_arn = t.task.task_definition_arn.as_deref().unwrap_or_default();
            let Some(td) = s.task_definitions.get(td_arn) else { continue };
            let checks =
                td.container_definitions.iter().flatten().any(|c| c.health_check.is_some());
            let health = t.task.health_status;
            // Registered once healthy (with checks); afterwards only UNHEALTHY counts against
            // it (custom health follows it; without custom health it is deregistered).
            let not_failing = health != Some(HealthStatus::Unhealthy);
            let healthy = not_failing && (!checks || health == Some(HealthStatus::Healthy));
            let mode = network_mode(td);
            let ip = match mode {
                NetworkMode::Awsvpc => task_ipv4(t),
                _ => s.instances.get(&t.instance_id).and_then(|i| {
                    i.attributes.iter().find_map(|a| {
                        (a.name.as_deref() == Some(HOST_IPV4_ATTRIBUTE))
                            .then(|| a.value.clone())
                            .flatten()
                    })
                }),
            };
            let Some(ip) = ip else { continue };
            for r in regs {
                let Some(sid) = r.registry_arn.as_deref().and_then(registry_service_id) else {
                    continue;
                };
                let Some(reg) = s.registries.get(sid) else { continue };
                let srv = reg
                    .dns_config
                    .as_ref()
                    .is_some_and(|d| d.records.iter().any(|r| r.kind == DnsRecordKind::Srv));
                let mut attrs = BTreeMap::new();
                attrs.insert(attributes::IPV4.to_string(), ip.clone());
                if srv {
                    let port = match (r.port, &r.container_name, r.container_port) {
                        (Some(p), _, _) => Some(p),
                        (None, Some(name), Some(cport)) if mode == NetworkMode::Bridge => t
                            .task
                            .containers
                            .iter()
                            .flatten()
                            .filter(|c| c.name.as_deref() == Some(name.as_str()))
                            .flat_map(|c| c.network_bindings.iter().flatten())
                            .find(|b| b.container_port == Some(cport))
                            .and_then(|b| b.host_port),
                        (None, Some(_), Some(cport)) => Some(cport),
                        _ => None,
                    };
                    // A bridge task's host port is known once it runs; none yet: next pass.
                    let Some(port) = port else { continue };
                    attrs.insert(attributes::PORT.to_string(), port.to_string());
                }
                if let Some(az) = &t.task.availability_zone {
                    attrs.insert(AVAILABILITY_ZONE.into(), az.clone());
                }
                attrs.insert(REGION.into(), s.region.clone());
                attrs.insert(ECS_CLUSTER_NAME.into(), svc.cluster.clone());
                attrs.insert(ECS_SERVICE_NAME.into(), svc.name.clone());
                attrs.insert(ECS_TASK_DEFINITION_FAMILY.into(), family_of(td_arn).to_string());
                let custom = reg.custom_health.is_some();
                if !custom && !healthy {
                    continue;
                }
                out.push(Wanted {
                    service_id: sid.to_string(),
                    task_id: t.id.clone(),
                    attributes: attrs,
                    healthy: not_failing,
                    may_register: healthy,
                });
            }
        }
    }
    out
}

/// Whether ECS registered `i` (its attributes name an ECS cluster and service).
fn ecs_managed(i: &InstanceRecord) -> bool {
    i.attributes.contains_key(ECS_CLUSTER_NAME) && i.attributes.contains_key(ECS_SERVICE_NAME)
}

/// One write a pass makes.
#[derive(Debug, PartialEq)]
pub(crate) enum Change {
    Register(Wanted),
    /// (service id, instance id, new health).
    Health(String, String, Health),
    Deregister(String, String),
}

/// The changes that bring `actual` (every instance of the region) to `wanted` (pure).
pub(crate) fn plan(
    wanted: &[Wanted],
    actual: &[InstanceRecord],
    registries: &HashMap<String, model::ServiceRecord>,
) -> Vec<Change> {
    let have: HashMap<(&str, &str), &InstanceRecord> =
        actual.iter().map(|i| ((i.service_id.as_str(), i.id.as_str()), i)).collect();
    let mut out = Vec::new();
    for w in wanted {
        let custom = registries.get(&w.service_id).is_some_and(|r| r.custom_health.is_some());
        match have.get(&(w.service_id.as_str(), w.task_id.as_str())) {
            None if w.may_register => out.push(Change::Register(w.clone())),
            None => {}
            Some(i) if i.attributes != w.attributes => out.push(Change::Register(w.clone())),
            Some(i) if custom => {
                let h = if w.healthy { Health::Healthy } else { Health::Unhealthy };
                if i.health != h {
                    out.push(Change::Health(w.service_id.clone(), w.task_id.clone(), h));
                }
            }
            Some(_) => {}
        }
    }
    let keep: std::collections::HashSet<(&str, &str)> =
        wanted.iter().map(|w| (w.service_id.as_str(), w.task_id.as_str())).collect();
    for i in actual.iter().filter(|i| ecs_managed(i)) {
        if !keep.contains(&(i.service_id.as_str(), i.id.as_str())) {
            out.push(Change::Deregister(i.service_id.clone(), i.id.clone()));
        }
    }
    out
}

impl CloudMap {
    /// Reads what a pass needs from the region's store.
    async fn ecs_snapshot(&self) -> Result<(Snapshot, Vec<(InstanceRecord, Revision)>), AwsError> {
        let store = self.store();
        let mut s = Snapshot { region: self.region.name.to_string(), ..Default::default() };
        for r in store.range(Range::prefix("ecs/services/")).await.map_err(error::store)? {
            let svc: EcsService =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            if svc.service.service_registries.as_deref().is_some_and(|r| !r.is_empty()) {
                s.services.push(svc);
            }
        }
        for svc in &s.services {
            let idx = store
                .range(Range::prefix(&ecs_keys::service_tasks_prefix(&svc.cluster, &svc.name)))
                .await
                .map_err(error::store)?;
            let ids: Vec<String> = idx
                .iter()
                .filter_map(|r| r.key.rsplit('/').next())
                .map(|id| ecs_keys::task(&svc.cluster, id))
                .collect();
            let mut tasks = Vec::new();
            for r in store.get_many(&ids).await.map_err(error::store)? {
                let t: TaskRecord =
                    serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
                tasks.push(t);
            }
            for t in &tasks {
                let arn = t.task.task_definition_arn.clone().unwrap_or_default();
                if !s.task_definitions.contains_key(&arn)
                    && let Some((fam, rev)) = arn
                        .rsplit_once("task-definition/")
                        .and_then(|(_, fr)| fr.rsplit_once(':'))
                        .and_then(|(f, r)| Some((f.to_string(), r.parse::<i32>().ok()?)))
                    && let Some((td, _)) = records::get::<TaskDefinitionRecord>(
                        store,
                        &ecs_keys::task_definition(&fam, rev),
                    )
                    .await?
                {
                    s.task_definitions.insert(arn, td.task_definition);
                }
                if !s.instances.contains_key(&t.instance_id)
                    && let Some((i, _)) = records::get::<ContainerInstanceRecord>(
                        store,
                        &ecs_keys::container_instance(&t.cluster, &t.instance_id),
                    )
                    .await?
                {
                    s.instances.insert(t.instance_id.clone(), i);
                }
            }
            s.tasks.insert((svc.cluster.clone(), svc.name.clone()), tasks);
        }
        for (_, reg, _) in list::<model::ServiceRecord>(store, keys::SERVICES).await? {
            s.registries.insert(reg.id.clone(), reg);
        }
        let actual = list::<InstanceRecord>(store, keys::INSTANCES)
            .await?
            .into_iter()
            .map(|(_, i, rev)| (i, rev))
            .collect();
        Ok((s, actual))
    }

    /// One pass: reads, plans, writes. Returns how many changes were written.
    pub(crate) async fn registration_pass(&self) -> Result<usize, AwsError> {
        let (snap, actual) = self.ecs_snapshot().await?;
        let wanted = desired(&snap);
        let revs: HashMap<(String, String), Revision> =
            actual.iter().map(|(i, r)| ((i.service_id.clone(), i.id.clone()), *r)).collect();
        let records: Vec<InstanceRecord> = actual.into_iter().map(|(i, _)| i).collect();
        let changes = plan(&wanted, &records, &snap.registries);
        let mut written = 0;
        for c in changes {
            if self.apply_change(&c, &revs, &snap.registries).await? {
                written += 1;
            }
        }
        Ok(written)
    }

    /// Writes one change with compare-and-set on the instance key (a lost race is left to
    /// the next pass).
    async fn apply_change(
        &self,
        c: &Change,
        revs: &HashMap<(String, String), Revision>,
        registries: &HashMap<String, model::ServiceRecord>,
    ) -> Result<bool, AwsError> {
        let rev_of = |s: &str, i: &str| revs.get(&(s.to_string(), i.to_string())).copied();
        let (txn, what) = match c {
            Change::Register(w) => {
                let key = keys::instance(&w.service_id, &w.task_id);
                let custom =
                    registries.get(&w.service_id).is_some_and(|r| r.custom_health.is_some());
                let rec = InstanceRecord {
                    id: w.task_id.clone(),
                    service_id: w.service_id.clone(),
                    attributes: w.attributes.clone(),
                    creator_request_id: None,
                    health: match (custom, w.healthy) {
                        (false, _) => Health::Unknown,
                        (true, true) => Health::Healthy,
                        (true, false) => Health::Unhealthy,
                    },
                    create_date: now(),
                };
                let txn = Txn::new()
                    .when(&key, rev_of(&w.service_id, &w.task_id).unwrap_or(0))
                    .put(&key, records::encode(&rec));
                let (txn, _) = self.operation(
                    txn,
                    wire::OperationType::RegisterInstance,
                    &[("INSTANCE", &w.task_id), ("SERVICE", &w.service_id)],
                );
                (txn, "register")
            }
            Change::Health(sid, id, h) => {
                let key = keys::instance(sid, id);
                let Some(rev) = rev_of(sid, id) else { return Ok(false) };
                let Some((mut rec, at)) =
                    records::get::<InstanceRecord>(self.store(), &key).await?
                else {
                    return Ok(false);
                };
                if at != rev {
                    return Ok(false);
                }
                rec.health = *h;
                (Txn::new().when(&key, rev).put(&key, records::encode(&rec)), "health")
            }
            Change::Deregister(sid, id) => {
                let key = keys::instance(sid, id);
                let Some(rev) = rev_of(sid, id) else { return Ok(false) };
                let (txn, _) = self.operation(
                    Txn::new().when(&key, rev).delete(&key),
                    wire::OperationType::DeregisterInstance,
                    &[("INSTANCE", id), ("SERVICE", sid)],
                );
                (txn, "deregister")
            }
        };
        let done = records::commit(self.store(), txn).await?;
        tracing::debug!(change = ?c, done, what, "ECS service discovery");
        Ok(done)
    }
}

/// Whether a committed transaction touched what the registrations depend on.
fn relevant(key: &str) -> bool {
    key.starts_with("ecs/tasks/")
        || key.starts_with("ecs/services/")
        || key.starts_with("ecs/service-tasks/")
        || key.starts_with(keys::SERVICES)
        || key.starts_with(keys::INSTANCES)
}

async fn next_change(feed: &mut berth_store::ChangeFeed) {
    super::next_relevant_change(feed, relevant, PERIOD).await
}

/// One region's registration loop, until `stop` is set.
pub(crate) async fn run(cloudmap: Arc<CloudMap>, mut stop: watch::Receiver<bool>) {
    let mut changes = cloudmap.store.changes();
    let region = cloudmap.region.name;
    loop {
        if *stop.borrow() {
            return;
        }
        match cloudmap.registration_pass().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(region, changes = n, "ECS service discovery pass"),
            Err(e) => {
                tracing::warn!(region, error = %e.message, "ECS service discovery pass failed")
            }
        }
        tokio::time::sleep(MIN_GAP).await;
        tokio::select! {
            _ = stop.changed() => {}
            _ = next_change(&mut changes) => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}

#[cfg(test)]
#[path = "ecs_registrations_tests.rs"]
mod tests;
