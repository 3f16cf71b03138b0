//! An awsvpc task's own network, and task-level cpu/memory limits.
//!
//! Set up in this order before the task's first container, torn down in reverse after its
//! last:
//! 1. the task cgroup `berth/<instance id>/<task id>` when the task has task-level `cpu` or
//!    `memory` (one limit for all its containers together; required for FARGATE and awsvpc
//!    tasks, best effort for others);
//! 2. the subnet's bridge [`bridge_name`] (`berth-subnet-<subnet id>`, the subnet's CIDR, its
//!    gateway as the bridge address, labelled [`LABEL_SUBNET`] and the instance), created on
//!    first use; a CIDR overlapping another Docker network fails the task naming both;
//! 3. the pause container (the runtime's pause image) on that bridge with the task's address,
//!    MAC and DNS name: it holds the task's network namespace, which every container of the
//!    task joins (`container:<pause>`);
//! 4. the firewall inside that namespace: the task's security groups compiled by
//!    [`berth_firewall::compile`] and applied atomically, re-applied whenever the agent's
//!    poll brings changed rules ([`Networking::groups`]); the task metadata endpoint is
//!    always reachable.
//!
//! Level-triggered: a restarted agent finds the pause container by its labels and re-applies
//! the firewall; [`cleanup`] removes bridges no container uses and task cgroups of tasks the
//! instance no longer runs. Bridge creation and removal on one agent are serialised
//! ([`Networking::bridges`]) so a bridge is never removed between another task's creation of
//! it and its pause container joining it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use berth_firewall::{Firewall, Ruleset};
use berth_model::network::{SecurityGroupRules, TaskNetwork};
use berth_runtime::{CgroupSpec, ContainerSpec, NetworkMode, NetworkSpec, Runtime, RuntimeError};
use berth_wire::ecs::TaskStopCode;
use tokio::sync::watch;

use super::TaskActor;
use crate::spec::{LABEL_CLUSTER, LABEL_INSTANCE, LABEL_TASK_ARN};

/// Label on a subnet bridge: the subnet id.
pub const LABEL_SUBNET: &str = "berth.subnet";
/// Label on a pause container.
pub const LABEL_PAUSE: &str = "berth.pause";
/// Prefix of every task cgroup.
pub const CGROUP_ROOT: &str = "berth";

/// The bridge network of a subnet.
pub fn bridge_name(subnet_id: &str) -> String {
    format!("berth-subnet-{subnet_id}")
}

/// The cgroup of a task: `berth/<instance id>/<task id>`.
pub fn cgroup_name(instance_arn: &str, task_id: &str) -> String {
    let instance = instance_arn.rsplit('/').next().unwrap_or("instance");
    format!("{CGROUP_ROOT}/{instance}/{task_id}")
}

/// What the agent shares with its actors for awsvpc tasks.
#[derive(Clone)]
pub struct Networking {
    pub firewall: Arc<dyn Firewall>,
    /// The security groups of the latest poll (every group of every awsvpc task here).
    pub groups: Arc<watch::Sender<Arc<Vec<SecurityGroupRules>>>>,
    /// Serialises bridge creation (up to the pause container joining) and removal: one lock
    /// per process, so the agents of one `berth up` (which may share subnets) take turns.
    pub bridges: Arc<tokio::sync::Mutex<()>>,
}

/// The process's bridge lock ([`Networking::bridges`]).
fn bridge_lock() -> Arc<tokio::sync::Mutex<()>> {
    static LOCK: std::sync::OnceLock<Arc<tokio::sync::Mutex<()>>> = std::sync::OnceLock::new();
    LOCK.get_or_init(|| Arc::new(tokio::sync::Mutex::new(()))).clone()
}

impl Default for Networking {
    fn default() -> Self {
        Self::new(Arc::new(berth_firewall::Iptables::new()))
    }
}

impl Networking {
    pub fn new(firewall: Arc<dyn Firewall>) -> Self {
        Self {
            firewall,
            groups: Arc::new(watch::channel(Arc::new(Vec::new())).0),
            bridges: bridge_lock(),
        }
    }

    /// Takes the security groups of a poll answer; actors hear of it only when they changed.
    pub fn set_groups(&self, groups: &[SecurityGroupRules]) {
        self.groups.send_if_modified(|g| {
            if g.as_slice() == groups {
                false
            } else {
                *g = Arc::new(groups.to_vec());
                true
            }
        });
    }
}

/// The task's network state held by its actor.
#[derive(Debug, Default)]
pub(super) struct TaskNet {
    pub pause_id: Option<String>,
    /// The pause container's start, running while the first container is created
    /// ([`TaskActor::network_ready`] waits for it before any container starts).
    pub pause_start: Option<tokio::task::JoinHandle<Result<(), (TaskStopCode, String)>>>,
    pub pid: Option<u32>,
    pub applied: Option<Ruleset>,
    pub cgroup: Option<String>,
}

/// The groups among `all` that the task is in.
fn task_groups(net: &TaskNetwork, all: &[SecurityGroupRules]) -> Vec<SecurityGroupRules> {
    all.iter().filter(|g| net.security_groups.contains(&g.group_id)).cloned().collect()
}

/// `host:port` of the metadata endpoint base `http://host:port/v4`, when it is an IPv4 one.
fn metadata_endpoint(base: Option<&str>) -> Option<(Ipv4Addr, u16)> {
    let rest = base?.strip_prefix("http://")?;
    let hostport = rest.split('/').next()?;
    let (h, p) = hostport.rsplit_once(':')?;
    Some((h.parse().ok()?, p.parse().ok()?))
}

/// Whether two IPv4 CIDRs share an address.
fn overlaps(a: &str, b: &str) -> bool {
    match (a.parse::<berth_model::network::Ipv4Net>(), b.parse::<berth_model::network::Ipv4Net>()) {
        (Ok(a), Ok(b)) => a.contains(&b.network()) || b.contains(&a.network()),
        _ => false,
    }
}

fn failed(message: String) -> (TaskStopCode, String) {
    (TaskStopCode::TaskFailedToStart, message)
}

impl TaskActor {
    fn network(&self) -> Option<TaskNetwork> {
        self.desired.borrow().network.clone()
    }

    /// Task-level `cpu` (units) and `memory` (MiB), overrides first.
    fn task_size(&self) -> (Option<u64>, Option<u64>) {
        let d = self.desired.borrow();
        let o = d.overrides.as_ref();
        let parse = |s: Option<&String>| s.and_then(|v| v.trim().parse::<u64>().ok());
        let cpu = parse(o.and_then(|o| o.cpu.as_ref())).or(parse(self.td.cpu.as_ref()));
        let mem = parse(o.and_then(|o| o.memory.as_ref())).or(parse(self.td.memory.as_ref()));
        (cpu, mem)
    }

    /// Whether the task must have its own cgroup (FARGATE or awsvpc): then failing to make
    /// one fails the task.
    fn cgroup_required(&self) -> bool {
        let d = self.desired.borrow();
        d.network.is_some()
            || d.launch_type.is_some_and(|l| l == berth_wire::ecs::LaunchType::Fargate)
    }

    /// Steps 1-4 of the module's order; nothing for a task without a network or a size.
    pub(super) async fn setup_task_network(&mut self) -> Result<(), (TaskStopCode, String)> {
        let (cpu, mem) = self.task_size();
        if (cpu.is_some() || mem.is_some()) && self.net.cgroup.is_none() {
            let spec = CgroupSpec {
                name: cgroup_name(&self.ctx.instance_arn, &self.task_id),
                memory_limit_bytes: mem.map(|m| m << 20),
                cpu_millis: cpu.map(|c| c * 1000 / 1024),
            };
            match self.ctx.runtime.create_cgroup(&spec).await {
                Ok(()) => self.net.cgroup = Some(spec.name),
                Err(e) if self.cgroup_required() => {
                    return Err(failed(format!(
                        "CannotCreateCgroupError: task-level cpu/memory limits: {e}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(task = %self.arn, error = %e, "task-level limits not enforced")
                }
            }
        }
        let Some(net) = self.network() else { return Ok(()) };
        if self.net.pause_id.is_none() {
            // Held until the pause container exists; [`cleanup`] takes it too. A bridge
            // removed before the pause container starts (by another agent) is made again.
            let guard = self.ctx.network.bridges.clone().lock_owned().await;
            ensure_bridge(self.ctx.runtime.as_ref(), &net, &self.ctx.instance_arn).await?;
            self.start_pause(&net).await?;
            drop(guard);
        }
        // Adopted: its pid is known and the rules go in now; new: once it has started.
        self.apply_firewall(true).await
    }

    /// Waits for the pause container's start, then loads the firewall: called before each
    /// container of the task starts (the first call does the work).
    pub(super) async fn network_ready(&mut self) -> Result<(), (TaskStopCode, String)> {
        let Some(start) = self.net.pause_start.take() else { return Ok(()) };
        start.await.map_err(|e| failed(format!("CannotStartContainerError: pause: {e}")))??;
        self.read_pause_pid().await?;
        self.apply_firewall(true).await
    }

    async fn start_pause(&mut self, net: &TaskNetwork) -> Result<(), (TaskStopCode, String)> {
        let rt = self.ctx.runtime.clone();
        let image = rt
            .pause_image()
            .await
            .map_err(|e| failed(format!("CannotCreateContainerError: pause image: {e}")))?;
        let labels: BTreeMap<String, String> = [
            (LABEL_CLUSTER, self.ctx.cluster.as_str()),
            (LABEL_TASK_ARN, self.arn.as_str()),
            (LABEL_INSTANCE, self.ctx.instance_arn.as_str()),
            (LABEL_PAUSE, "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let spec = ContainerSpec {
            name: format!(
                "ecs-{}-internalecspause-{}",
                self.td.family.as_deref().unwrap_or("task"),
                self.task_id
            ),
            image,
            labels,
            network_mode: NetworkMode::Named(bridge_name(&net.subnet_id)),
            ipv4_address: Some(net.private_ip.to_string()),
            mac_address: Some(net.mac_address.clone()),
            hostname: Some(net.private_dns_name.clone()).filter(|h| !h.is_empty()),
            cgroup_parent: self.net.cgroup.clone(),
            security_opts: vec![crate::spec::NO_NEW_PRIVILEGES.into()],
            ..Default::default()
        };
        let id = match rt.create(&spec).await {
            Ok(id) => id,
            Err(RuntimeError::NotFound { kind: berth_runtime::ObjectKind::Network, .. }) => {
                // Removed meanwhile by another agent of this host that shares the subnet.
                ensure_bridge(rt.as_ref(), net, &self.ctx.instance_arn).await?;
                rt.create(&spec)
                    .await
                    .map_err(|e| failed(format!("CannotCreateContainerError: pause: {e}")))?
            }
            Err(RuntimeError::Conflict { .. }) => {
                // Left by an earlier attempt: replace it.
                let _ = rt.remove(&spec.name).await;
                rt.create(&spec)
                    .await
                    .map_err(|e| failed(format!("CannotCreateContainerError: pause: {e}")))?
            }
            Err(e) => return Err(failed(format!("CannotCreateContainerError: pause: {e}"))),
        };
        self.net.pause_id = Some(id.clone());
        // Started in the background: the task's first container is created meanwhile.
        let (net, instance) = (net.clone(), self.ctx.instance_arn.clone());
        self.net.pause_start = Some(tokio::spawn(async move {
            let started = match rt.start(&id).await {
                // Docker checks the network at start: removed meanwhile by another agent.
                Err(RuntimeError::NotFound {
                    kind: berth_runtime::ObjectKind::Network, ..
                }) => {
                    ensure_bridge(rt.as_ref(), &net, &instance).await?;
                    rt.start(&id).await
                }
                other => other,
            };
            started.map_err(|e| failed(format!("CannotStartContainerError: pause: {e}")))
        }));
        Ok(())
    }

    async fn read_pause_pid(&mut self) -> Result<(), (TaskStopCode, String)> {
        let Some(id) = self.net.pause_id.clone() else { return Ok(()) };
        match self.ctx.runtime.inspect(&id).await {
            Ok(Some(st)) if st.pid.is_some() => {
                self.net.pid = st.pid;
                Ok(())
            }
            other => Err(failed(format!(
                "CannotStartContainerError: the pause container is not running ({other:?})"
            ))),
        }
    }

    /// Compiles the task's groups and applies them when they differ from what is applied
    /// (`force`: apply anyway).
    pub(super) async fn apply_firewall(
        &mut self,
        force: bool,
    ) -> Result<(), (TaskStopCode, String)> {
        let (Some(net), Some(pid)) = (self.network(), self.net.pid) else { return Ok(()) };
        let groups = task_groups(&net, &self.ctx.network.groups.borrow().clone());
        let opts = berth_firewall::Options {
            always_egress: metadata_endpoint(self.ctx.metadata_base.as_deref())
                .into_iter()
                .collect(),
        };
        let ruleset = berth_firewall::compile(&groups, &opts);
        if !force && self.net.applied.as_ref() == Some(&ruleset) {
            return Ok(());
        }
        self.ctx
            .network
            .firewall
            .apply(pid, &ruleset)
            .await
            .map_err(|e| failed(format!("CannotApplySecurityGroupsError: {e}")))?;
        tracing::debug!(task = %self.arn, rules = ruleset.rules().len(), "security groups applied");
        self.net.applied = Some(ruleset);
        Ok(())
    }

    /// Finds the pause container of a task this agent already ran (after a restart).
    pub(super) async fn adopt_network(&mut self) {
        if self.network().is_none() {
            return;
        }
        let labels = [
            (LABEL_TASK_ARN.to_string(), self.arn.clone()),
            (LABEL_INSTANCE.to_string(), self.ctx.instance_arn.clone()),
            (LABEL_PAUSE.to_string(), "1".to_string()),
        ];
        let Ok(found) = self.ctx.runtime.list(&labels).await else { return };
        if let Some(c) = found.into_iter().find(|c| c.state.is_running()) {
            self.net.pause_id = Some(c.id);
            if self.read_pause_pid().await.is_ok()
                && let Err((_, e)) = self.apply_firewall(true).await
            {
                tracing::warn!(task = %self.arn, error = %e, "cannot re-apply security groups");
            }
        }
    }

    /// After adoption found some of the task's containers: its cgroup, if it has a size, is
    /// the one made for it before (removed with the task).
    pub(super) fn adopt_cgroup(&mut self) {
        let (cpu, mem) = self.task_size();
        if cpu.is_some() || mem.is_some() {
            self.net.cgroup = Some(cgroup_name(&self.ctx.instance_arn, &self.task_id));
        }
    }

    /// Makes container `spec` a member of the task's network namespace and cgroup.
    pub(super) fn join_task(&self, spec: &mut ContainerSpec) {
        if let Some(cg) = &self.net.cgroup {
            spec.cgroup_parent = Some(cg.clone());
        }
        if let Some(pause) = &self.net.pause_id {
            // Docker refuses these with a `container:` network mode: the namespace is the
            // pause container's.
            spec.network_mode = NetworkMode::Container(pause.clone());
            spec.ports.clear();
            spec.links.clear();
            spec.hostname = None;
            spec.extra_hosts.clear();
            spec.host_gateway = false;
            spec.dns_servers.clear();
            spec.dns_search.clear();
            spec.mac_address = None;
            spec.ipv4_address = None;
        }
    }

    /// Steps 4-1 in reverse, after the task's containers are removed.
    pub(super) async fn teardown_task_network(&mut self) {
        let rt = self.ctx.runtime.clone();
        if let Some(start) = self.net.pause_start.take() {
            // Let a start in flight finish so the removal below finds a settled container.
            let _ = start.await;
        }
        if let Some(id) = self.net.pause_id.take()
            && let Err(e) = rt.remove(&id).await
        {
            tracing::warn!(task = %self.arn, error = %e, "cannot remove the pause container");
        }
        self.net.pid = None;
        self.net.applied = None;
        if let Some(net) = self.network() {
            let _guard = self.ctx.network.bridges.clone().lock_owned().await;
            match rt.remove_network(&bridge_name(&net.subnet_id)).await {
                Ok(()) | Err(RuntimeError::Conflict { .. }) => {}
                Err(e) => tracing::warn!(task = %self.arn, error = %e, "cannot remove the bridge"),
            }
        }
        if let Some(cg) = self.net.cgroup.take()
            && let Err(e) = rt.remove_cgroup(&cg).await
        {
            tracing::warn!(task = %self.arn, cgroup = %cg, error = %e, "cannot remove the task cgroup");
        }
    }
}

/// Creates the subnet's bridge unless it exists; a CIDR overlapping another network fails.
async fn ensure_bridge(
    rt: &dyn Runtime,
    net: &TaskNetwork,
    instance_arn: &str,
) -> Result<(), (TaskStopCode, String)> {
    let name = bridge_name(&net.subnet_id);
    let all = rt
        .list_networks(&[])
        .await
        .map_err(|e| failed(format!("CannotCreateNetworkError: {e}")))?;
    if let Some(other) = all
        .iter()
        .filter(|n| n.name != name)
        .find(|n| n.subnets.iter().any(|s| overlaps(s, &net.subnet_cidr)))
    {
        return Err(failed(format!(
            "CannotCreateNetworkError: subnet {} ({}) overlaps Docker network {} ({})",
            net.subnet_id,
            net.subnet_cidr,
            other.name,
            other.subnets.join(", ")
        )));
    }
    let spec = NetworkSpec {
        name: name.clone(),
        subnet: net.subnet_cidr.clone(),
        gateway: Some(net.gateway.to_string()),
        labels: BTreeMap::from([
            (LABEL_SUBNET.to_string(), net.subnet_id.clone()),
            (LABEL_INSTANCE.to_string(), instance_arn.to_string()),
        ]),
    };
    rt.create_network(&spec).await.map_err(|e| {
        failed(format!(
            "CannotCreateNetworkError: bridge {name} for subnet {} ({}): {e}",
            net.subnet_id, net.subnet_cidr
        ))
    })
}

/// Level-triggered cleanup: bridges of this instance no container uses, and cgroups of this
/// instance's tasks that are not in `live_task_ids`.
pub async fn cleanup(
    rt: &dyn Runtime,
    networking: &Networking,
    instance_arn: &str,
    live_task_ids: &[String],
) {
    let _guard = networking.bridges.lock().await;
    let labels = [(LABEL_INSTANCE.to_string(), instance_arn.to_string())];
    if let Ok(nets) = rt.list_networks(&labels).await {
        for n in nets.iter().filter(|n| n.labels.contains_key(LABEL_SUBNET)) {
            match rt.remove_network(&n.name).await {
                Ok(()) => tracing::info!(network = %n.name, "removed an unused subnet bridge"),
                Err(RuntimeError::Conflict { .. }) => {}
                Err(e) => tracing::debug!(network = %n.name, error = %e, "bridge not removed"),
            }
        }
    }
    let prefix =
        format!("{}/", cgroup_name(instance_arn, "")).trim_end_matches('/').to_string() + "/";
    if let Ok(groups) = rt.list_cgroups(&prefix).await {
        for g in groups {
            let task = g.rsplit('/').next().unwrap_or_default();
            if !live_task_ids.iter().any(|t| t == task) {
                let _ = rt.remove_cgroup(&g).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_endpoints() {
        assert_eq!(bridge_name("subnet-1"), "berth-subnet-subnet-1");
        assert_eq!(
            cgroup_name("arn:aws:ecs:us-east-1:1:container-instance/c/abc", "t1"),
            "berth/abc/t1"
        );
        assert_eq!(
            metadata_endpoint(Some("http://172.17.0.1:51679/v4")),
            Some((Ipv4Addr::new(172, 17, 0, 1), 51679))
        );
        assert_eq!(metadata_endpoint(Some("http://[::1]:5/v4")), None);
        assert!(overlaps("172.17.0.0/16", "172.17.5.0/24"));
        assert!(!overlaps("172.17.0.0/16", "172.31.0.0/20"));
    }
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod actor_tests;
