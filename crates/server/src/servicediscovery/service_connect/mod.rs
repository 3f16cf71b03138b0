//! ECS Service Connect (issue #17): services with `serviceConnectConfiguration` call each
//! other by client alias (`http://api.shop:8080`) through a proxy that balances across the
//! callee's ready tasks, retries idempotent requests on another endpoint when a connection
//! fails, ejects failing endpoints and drains endpoints of tasks that are stopping.
//!
//! Design, and why (Docker 20.10, bridge networking, one host):
//! * **The proxy runs in the server process, one per region, on one address of the host that
//!   task containers reach** (`--service-connect-address`, such as the Docker bridge gateway
//!   172.17.0.1), not as a sidecar container per task. A sidecar would have to share each
//!   bridge task container's network namespace (Docker gives every bridge container its own)
//!   and be built and pulled as an image; the host-side proxy needs neither, reuses the load
//!   balancer's data plane ([`berth_lb`]: pools, round robin, active TCP health checks,
//!   passive ejection, retry of bodiless requests on connect failure, draining) and follows
//!   the store like the ELBv2 data plane does. Its cost: the proxy is per host (Berth's
//!   agents run on the server's host), and an alias port is a real port on that address, so
//!   two aliases share a port only when both are HTTP (routed by `Host`).
//! * **Names resolve through `/etc/hosts`**: every container of a Service Connect task gets
//!   an `extraHosts` entry mapping each client alias `dnsName` of its namespace to the
//!   proxy's address ([`AliasIndex`], added to the task definition the agent receives), so
//!   any name works (`api`, `api.shop.local`) without Berth's DNS listener being reachable
//!   from containers. Aliases published after a task started reach it at its next start (as
//!   in ECS, where client tasks learn new endpoints when redeployed).
//! * **Endpoints are level-triggered from the store** ([`run`]): each pass reads the region's
//!   services with Service Connect, their tasks, task definitions and container instances,
//!   computes the whole proxy configuration ([`plan::snapshot`], pure) and applies it when it
//!   changed. A pass runs on every store change of ECS tasks or services (at most every
//!   [`MIN_GAP`]) and at least every [`PERIOD`].
//! * **Who is an endpoint**: a task desired RUNNING and last RUNNING (so not DEACTIVATING,
//!   STOPPING or STOPPED), healthy when its task definition has container health checks, at
//!   its host's address (the `berth.host-ipv4` attribute, else loopback) and the host port
//!   of the `portName` mapping (bridge) or its container port (host mode).
//! * **Draining**: the service controller moves a stopping task of a service that publishes
//!   Service Connect services to DEACTIVATING first ([`publishes`]); the next pass removes its
//!   endpoint (no new requests; those in flight finish), and after [`plan::DRAIN_SECS`] the
//!   controller lets the agent stop it.
//!
//! Not supported (refused by [`check::prepare`] or the model's rules): `awsvpc` tasks, TLS,
//! timeouts, access logs, `http2` / `grpc` ports, the cluster's `serviceConnectDefaults`.

pub(crate) mod check;
pub(crate) mod plan;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use berth_model::keys as ecs_keys;
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_model::records::{ContainerInstanceRecord, TaskDefinitionRecord, TaskRecord};
use berth_model::service::ServiceRecord as EcsService;
use berth_store::{Range, Store};
use berth_wire::AwsError;
use berth_wire::ecs::{
    ApplicationProtocol, HealthStatus, HostEntry, NetworkMode, ServiceConnectConfiguration,
    TaskDefinition,
};
use tokio::sync::watch;

use crate::{error, records};
use plan::{Endpoint, Published};

/// Longest wait between passes.
pub const PERIOD: Duration = Duration::from_secs(5);
/// Shortest gap between two passes.
pub const MIN_GAP: Duration = Duration::from_millis(50);

/// The container instance attribute holding its host's address.
const HOST_IPV4_ATTRIBUTE: &str = super::ecs_registrations::HOST_IPV4_ATTRIBUTE;

/// The Service Connect configuration deployment `deployment` of `svc` runs with (its
/// PRIMARY deployment's when the deployment is gone), when enabled.
pub(crate) fn config_of<'a>(
    svc: &'a EcsService,
    deployment: Option<&str>,
) -> Option<&'a ServiceConnectConfiguration> {
    let d = deployment
        .and_then(|id| svc.deployments.iter().find(|d| d.id == id))
        .or_else(|| svc.deployments.first())?;
    d.service_connect.as_ref().filter(|c| berth_model::service_connect::enabled(c))
}

/// Whether some deployment of `svc` publishes Service Connect services (its stopping tasks
/// then drain: DEACTIVATING for [`plan::DRAIN_SECS`] first).
pub(crate) fn publishes(svc: &EcsService) -> bool {
    svc.deployments.iter().any(|d| {
        d.service_connect.as_ref().is_some_and(|c| {
            berth_model::service_connect::enabled(c)
                && c.services.as_ref().is_some_and(|s| !s.is_empty())
        })
    })
}

/// The client aliases of each namespace (by ARN), built once per agent poll from the
/// region's services.
#[derive(Default)]
pub(crate) struct AliasIndex {
    address: Option<IpAddr>,
    services: HashMap<(String, String), EcsService>,
    aliases: HashMap<String, Vec<String>>,
}

impl AliasIndex {
    /// Reads the region's services (nothing when the server runs no proxy).
    pub(crate) async fn load(store: &dyn Store, address: Option<IpAddr>) -> Result<Self, AwsError> {
        let mut out = AliasIndex { address, ..Default::default() };
        if address.is_none() {
            return Ok(out);
        }
        for r in store.range(Range::prefix("ecs/services/")).await.map_err(error::store)? {
            let svc: EcsService =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            for d in &svc.deployments {
                let Some(c) =
                    d.service_connect.as_ref().filter(|c| berth_model::service_connect::enabled(c))
                else {
                    continue;
                };
                let ns = c.namespace.clone().unwrap_or_default();
                let names = out.aliases.entry(ns).or_default();
                for s in c.services.iter().flatten() {
                    for a in s.client_aliases.iter().flatten() {
                        if let Some(d) = &a.dns_name
                            && !names.contains(d)
                        {
                            names.push(d.clone());
                        }
                    }
                }
            }
            out.services.insert((svc.cluster.clone(), svc.name.clone()), svc);
        }
        for names in out.aliases.values_mut() {
            names.sort();
        }
        Ok(out)
    }

    /// The `/etc/hosts` entries of task `t`'s containers: every client alias of its
    /// namespace, at the proxy's address; empty when its service runs without Service
    /// Connect.
    pub(crate) fn hosts(&self, t: &TaskRecord) -> Vec<HostEntry> {
        let Some(address) = self.address else { return vec![] };
        let Some(name) = t.task.group.as_deref().and_then(|g| g.strip_prefix("service:")) else {
            return vec![];
        };
        let Some(svc) = self.services.get(&(t.cluster.clone(), name.to_string())) else {
            return vec![];
        };
        let Some(c) = config_of(svc, t.task.started_by.as_deref()) else { return vec![] };
        let ns = c.namespace.clone().unwrap_or_default();
        self.aliases
            .get(&ns)
            .into_iter()
            .flatten()
            .map(|d| HostEntry { hostname: Some(d.clone()), ip_address: Some(address.to_string()) })
            .collect()
    }

    /// `td` with `hosts` added to every container's `extraHosts` (a name the container
    /// already maps keeps its own address).
    pub(crate) fn with_hosts(mut td: TaskDefinition, hosts: &[HostEntry]) -> TaskDefinition {
        if hosts.is_empty() {
            return td;
        }
        for c in td.container_definitions.iter_mut().flatten() {
            let extra = c.extra_hosts.get_or_insert_with(Vec::new);
            for h in hosts {
                if !extra.iter().any(|e| e.hostname == h.hostname) {
                    extra.push(h.clone());
                }
            }
        }
        td
    }
}

/// What one pass reads: the published services with their endpoints.
async fn read(store: &dyn Store) -> Result<Vec<Published>, AwsError> {
    let mut out = Vec::new();
    let mut tds: HashMap<String, Option<TaskDefinition>> = HashMap::new();
    let mut hosts: HashMap<(String, String), IpAddr> = HashMap::new();
    for r in store.range(Range::prefix("ecs/services/")).await.map_err(error::store)? {
        let svc: EcsService =
            serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
        if !publishes(&svc) {
            continue;
        }
        let idx = store
            .range(Range::prefix(&ecs_keys::service_tasks_prefix(&svc.cluster, &svc.name)))
            .await
            .map_err(error::store)?;
        let ids: Vec<String> = idx
            .iter()
            .filter_map(|r| r.key.rsplit('/').next())
            .map(|id| ecs_keys::task(&svc.cluster, id))
            .collect();
        // (namespace, discoveryName) -> the entry being built.
        let mut entries: BTreeMap<(String, String), Published> = BTreeMap::new();
        for d in &svc.deployments {
            let Some(c) = config_of(&svc, Some(&d.id)) else { continue };
            for s in c.services.iter().flatten() {
                let ns = c.namespace.clone().unwrap_or_default();
                let name = berth_model::service_connect::discovery_name(s);
                let e = entries.entry((ns.clone(), name.clone())).or_insert_with(|| Published {
                    service_arn: svc.service.service_arn.clone().unwrap_or_default(),
                    namespace_arn: ns,
                    discovery_name: name,
                    aliases: vec![],
                    http: false,
                    endpoints: vec![],
                });
                for a in s.client_aliases.iter().flatten() {
                    let alias =
                        (a.dns_name.clone().unwrap_or_default(), a.port.unwrap_or(0) as u16);
                    if alias.1 != 0 && !e.aliases.contains(&alias) {
                        e.aliases.push(alias);
                    }
                }
            }
        }
        for r in store.get_many(&ids).await.map_err(error::store)? {
            let t: TaskRecord =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            if t.desired_status() != DesiredTaskStatus::Running
                || t.last_status() != TaskStatus::Running
            {
                continue;
            }
            let Some(c) = config_of(&svc, t.task.started_by.as_deref()) else { continue };
            let arn = t.task.task_definition_arn.clone().unwrap_or_default();
            if !tds.contains_key(&arn) {
                let td = task_definition(store, &arn).await?;
                tds.insert(arn.clone(), td);
            }
            let Some(Some(td)) = tds.get(&arn) else { continue };
            let checks =
                td.container_definitions.iter().flatten().any(|c| c.health_check.is_some());
            if checks && t.task.health_status != Some(HealthStatus::Healthy) {
                continue;
            }
            let key = (t.cluster.clone(), t.instance_id.clone());
            let ip = match hosts.get(&key) {
                Some(ip) => *ip,
                None => {
                    let ip = host_ip(store, &t).await?;
                    hosts.insert(key, ip);
                    ip
                }
            };
            let ns = c.namespace.clone().unwrap_or_default();
            for s in c.services.iter().flatten() {
                let port_name = s.port_name.as_deref().unwrap_or_default();
                let Some((port, http)) = endpoint_port(td, &t, port_name) else { continue };
                let name = berth_model::service_connect::discovery_name(s);
                if let Some(e) = entries.get_mut(&(ns.clone(), name)) {
                    e.http |= http;
                    e.endpoints.push(Endpoint { task_id: t.id.clone(), ip, port });
                }
            }
        }
        out.extend(entries.into_values());
    }
    Ok(out)
}

/// The port task `t` serves `port_name` on, and whether it is HTTP.
fn endpoint_port(td: &TaskDefinition, t: &TaskRecord, port_name: &str) -> Option<(u16, bool)> {
    let (container, m) = td.container_definitions.iter().flatten().find_map(|c| {
        c.port_mappings
            .iter()
            .flatten()
            .find(|m| m.name.as_deref() == Some(port_name))
            .map(|m| (c.name.clone().unwrap_or_default(), m))
    })?;
    let http = m.app_protocol == Some(ApplicationProtocol::Http);
    let cport = m.container_port?;
    let port = match td.network_mode.unwrap_or(NetworkMode::Bridge) {
        NetworkMode::Bridge => t
            .task
            .containers
            .iter()
            .flatten()
            .filter(|c| c.name.as_deref() == Some(container.as_str()))
            .flat_map(|c| c.network_bindings.iter().flatten())
            .find(|b| b.container_port == Some(cport))
            .and_then(|b| b.host_port)?,
        _ => cport,
    };
    u16::try_from(port).ok().filter(|p| *p != 0).map(|p| (p, http))
}

async fn task_definition(store: &dyn Store, arn: &str) -> Result<Option<TaskDefinition>, AwsError> {
    let Some((fam, rev)) = arn
        .rsplit_once("task-definition/")
        .and_then(|(_, fr)| fr.rsplit_once(':'))
        .and_then(|(f, r)| Some((f.to_string(), r.parse::<i32>().ok()?)))
    else {
        return Ok(None);
    };
    Ok(records::get::<TaskDefinitionRecord>(store, &ecs_keys::task_definition(&fam, rev))
        .await?
        .map(|(td, _)| td.task_definition))
}

/// The address of task `t`'s host: its container instance's `berth.host-ipv4`, else loopback
/// (Berth's agents run on the server's host).
async fn host_ip(store: &dyn Store, t: &TaskRecord) -> Result<IpAddr, AwsError> {
    let key = ecs_keys::container_instance(&t.cluster, &t.instance_id);
    let found = records::get::<ContainerInstanceRecord>(store, &key).await?;
    Ok(found
        .and_then(|(i, _)| {
            i.attributes.iter().find_map(|a| {
                (a.name.as_deref() == Some(HOST_IPV4_ATTRIBUTE))
                    .then(|| a.value.as_deref().and_then(|v| v.parse().ok()))
                    .flatten()
            })
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)))
}

/// Whether a committed transaction touched what the proxy's configuration depends on.
fn relevant(key: &str) -> bool {
    key.starts_with("ecs/tasks/")
        || key.starts_with("ecs/services/")
        || key.starts_with("ecs/service-tasks/")
}

async fn next_change(feed: &mut berth_store::ChangeFeed) {
    super::next_relevant_change(feed, relevant, PERIOD).await
}

/// One region's Service Connect proxy, until `stop` is set: nothing runs when the server
/// has no `address`.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    region: &'static str,
    address: Option<IpAddr>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(address) = address else { return };
    let lb = berth_lb::Lb::new(berth_lb::LbOptions {
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    });
    let mut changes = store.changes();
    let mut version = 0u64;
    let mut applied: Option<berth_lb::Snapshot> = None;
    let mut reported: Vec<plan::Conflict> = Vec::new();
    loop {
        if *stop.borrow() {
            lb.shutdown();
            return;
        }
        match read(&*store).await {
            Ok(published) => {
                let (mut snap, conflicts) = plan::snapshot(version + 1, address, &published);
                for c in conflicts.iter().filter(|c| !reported.contains(c)) {
                    tracing::warn!(region, service = %c.service_arn, alias = %c.alias, reason = %c.reason, "Service Connect alias left out");
                }
                reported = conflicts;
                let same = applied.as_ref().is_some_and(|a| {
                    snap.version = a.version;
                    *a == snap
                });
                if !same {
                    version += 1;
                    snap.version = version;
                    match lb.apply(&snap) {
                        Ok(a) => {
                            for (l, e) in &a.bind_errors {
                                tracing::warn!(region, listener = %l, error = %e, "Service Connect listener cannot bind");
                            }
                            // A listener that could not bind is retried by the next apply.
                            applied = a.bind_errors.is_empty().then_some(snap);
                        }
                        Err(e) => {
                            tracing::warn!(region, error = %e, "Service Connect configuration refused")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(region, error = %e.message, "Service Connect pass failed"),
        }
        tokio::time::sleep(MIN_GAP).await;
        tokio::select! {
            _ = stop.changed() => {}
            _ = next_change(&mut changes) => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}
