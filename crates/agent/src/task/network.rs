//! An awsvpc task's own network, and task-level cpu/memory limits.
//!
//! Set up in this order before the task's first container, torn down in reverse after its
//! last:
//! 1. the task cgroup `berth/<instance id>/<task id>` when the task has task-level `cpu` or
//!    `memory` (one limit for all its containers together; required for FARGATE and awsvpc
//!    tasks, best effort for others);
//! 2. the subnet's bridge [`bridge_name`] (`berth-subnet-<subnet id>`, the subnet's CIDR, its
//!    gateway as the bridge address, labelled [`LABEL_SUBNET`], [`LABEL_VPC`] and the
//!    instance), created on first use and kept [`BRIDGE_LINGER`] after the subnet's last task
//!    here ended; a CIDR overlapping another Docker network fails the task naming both; the
//!    host's links let the bridges of one VPC reach each other (see `bridges.rs`);
//! 3. the pause container (the runtime's pause image) on that bridge with the task's address,
//!    MAC, DNS name and the task's resolvers: it holds the task's network namespace, which
//!    every container of the task joins (`container:<pause name>`). Steps 2 and 3 run in the
//!    background while the task's first container is created (Docker resolves the joined
//!    container when the joiner starts, not when it is created); the first container starts
//!    once the pause container runs and step 4 is done;
//! 4. the firewall inside that namespace: the task's security groups compiled by
//!    [`berth_firewall::compile`] and applied atomically, re-applied whenever the agent's
//!    poll brings changed rules ([`Networking::groups`]); the task metadata endpoint is
//!    always reachable.
//!
//! Level-triggered: a restarted agent finds the pause container by its labels (or, for one
//! from the warm pool, by its name [`pause_name`]) and re-applies the firewall; [`cleanup`]
//! removes bridges no container uses and task cgroups of tasks the instance no longer runs.
//! Bridge creation and removal on one agent are serialised ([`Networking::bridges`]) so a
//! bridge is never removed between another task's creation of it and its pause container
//! joining it.
//!
//! The warm pool ([`WarmPool`]; off unless asked for, `berth agent --awsvpc-warm-pool N`,
//! [`DEFAULT_POOL_SIZE`] the size we measure with): a
//! cold pause container costs a full container start with its network on the critical path
//! (300-450 ms here), before the first container can start. The pool keeps a few pause
//! containers started ahead on network `none` (labelled [`LABEL_POOL`] and the instance,
//! named `berth-warm-<instance id>-<n>`, no cgroup). Step 3 then becomes: take one (verified
//! running), load the task's firewall into its namespace (before it has any interface),
//! rename it [`pause_name`], and move it onto the subnet's bridge with the task's address and
//! MAC ([`Runtime::move_to_network`], about 130 ms) while the first container is created. The
//! pool is replenished in the background once no hand-out is in flight, bounded by its
//! size; an empty pool makes one on demand (the same kind, so every task is alike). Pool
//! containers are made with the resolvers of the latest hand-out ([`LABEL_POOL_DNS`]; a task
//! with other resolvers gets one made for it), which Docker keeps when they join the bridge,
//! so a warm task's DNS is a cold one's. Trade-off: Docker (20.10, API 1.41) copies a
//! `container:` network's hostname into the joining containers, refuses a hostname on a
//! joiner and cannot change a running container's, so a warm pause container (and the task's
//! containers) keep the pause container's own hostname (its short id) instead of the ENI's
//! DNS name, which is why the pool is opt-in; a pool of size 0 (the default) keeps the cold
//! path, whose hostname is the DNS name, as ECS sets it.
//! [`cleanup`] adopts idle pool members a previous agent left, removes dead or surplus ones
//! and handed-out ones whose task is gone; [`Networking::shutdown`] removes the idle ones, and
//! so does the pool itself once no task has held one of its containers for [`POOL_LINGER`]
//! (a host that stopped running awsvpc tasks keeps no idle pause containers).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use berth_firewall::{Firewall, Ruleset};
use berth_model::network::{SecurityGroupRules, TaskNetwork};
use berth_runtime::{
    CgroupSpec, ContainerSpec, NetworkAttachment, NetworkMode, Runtime, RuntimeError,
};
use berth_wire::ecs::TaskStopCode;
use tokio::sync::watch;

use super::TaskActor;
use crate::spec::{LABEL_CLUSTER, LABEL_INSTANCE, LABEL_TASK_ARN};

#[path = "bridges.rs"]
mod bridges;
#[path = "pool.rs"]
mod pool;
#[cfg(test)]
use bridges::overlaps;
pub use bridges::{BRIDGE_LINGER, LABEL_VPC, LINKS_REFRESH};
use bridges::{ensure_bridge, release_bridge};
use pool::{Busy, Holder};
pub use pool::{LABEL_POOL_DNS, POOL_LINGER, WarmPool};

/// Label on a subnet bridge: the subnet id.
pub const LABEL_SUBNET: &str = "berth.subnet";
/// Label on a pause container.
pub const LABEL_PAUSE: &str = "berth.pause";
/// Prefix of every task cgroup.
pub const CGROUP_ROOT: &str = "berth";
/// Label on a warm-pool pause container (value `1`), idle or handed out.
pub const LABEL_POOL: &str = "berth.pause-pool";
/// Idle warm pause containers the benchmark keeps (`--awsvpc-warm-pool 2`).
pub const DEFAULT_POOL_SIZE: usize = 2;

/// The name of a task's pause container (cold, or warm once handed out).
pub fn pause_name(family: Option<&str>, task_id: &str) -> String {
    format!("ecs-{}-internalecspause-{task_id}", family.unwrap_or("task"))
}

/// Name prefix of an idle warm pause container of instance `instance_arn`.
pub fn pool_name_prefix(instance_arn: &str) -> String {
    format!("berth-warm-{}-", instance_arn.rsplit('/').next().unwrap_or("instance"))
}

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
    /// Started pause containers waiting for a task.
    pub pool: Arc<WarmPool>,
    /// Lingering bridges and the VPC links applied (one per process, like the lock).
    vpc: Arc<bridges::BridgeState>,
}

/// The process's bridge lock ([`Networking::bridges`]).
fn bridge_lock() -> Arc<tokio::sync::Mutex<()>> {
    static LOCK: std::sync::OnceLock<Arc<tokio::sync::Mutex<()>>> = std::sync::OnceLock::new();
    LOCK.get_or_init(|| Arc::new(tokio::sync::Mutex::new(()))).clone()
}

impl Default for Networking {
    /// The system's iptables and no warm pool ([`Networking::with_pool`] adds one).
    fn default() -> Self {
        Self::new(Arc::new(berth_firewall::Iptables::new()))
    }
}

impl Networking {
    /// `firewall`, and no warm pool (every pause container is made for its task).
    pub fn new(firewall: Arc<dyn Firewall>) -> Self {
        Self {
            firewall,
            groups: Arc::new(watch::channel(Arc::new(Vec::new())).0),
            bridges: bridge_lock(),
            pool: Arc::new(WarmPool::new(0)),
            vpc: bridges::bridge_state(),
        }
    }

    /// The same, with a warm pool of `size` pause containers (0: none).
    pub fn with_pool(mut self, size: usize) -> Self {
        self.pool = Arc::new(WarmPool::new(size));
        self
    }

    /// Stops replenishing the pool and removes its idle containers (agent shutdown).
    pub async fn shutdown(&self, rt: &dyn Runtime, instance_arn: &str) {
        self.pool.shutdown(rt, instance_arn).await;
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

/// The pause container's start (cold) or hand-out (warm: the ruleset it loaded).
pub(super) type PauseStart =
    tokio::task::JoinHandle<Result<Option<Ruleset>, (TaskStopCode, String)>>;

/// The task's network state held by its actor.
#[derive(Debug, Default)]
pub(super) struct TaskNet {
    pub pause_id: Option<String>,
    /// The pause container's start, running while the first container is created
    /// ([`TaskActor::network_ready`] waits for it before any container starts).
    /// A warm one's hand-out yields the ruleset it loaded.
    pub pause_start: Option<PauseStart>,
    pub pid: Option<u32>,
    pub applied: Option<Ruleset>,
    pub cgroup: Option<String>,
    /// A warm pause container's hand-out in flight: held until the task's containers run.
    pub busy: Option<Busy>,
    /// Held while the task has a warm pause container.
    pub holder: Option<Holder>,
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
        if self.net.pause_id.is_none() && self.ctx.network.pool.size() > 0 {
            // Warm: its rules are in before it joins the subnet.
            return self.start_pause_warm(&net).await;
        }
        if self.net.pause_id.is_none() {
            self.start_pause(&net);
        }
        // Adopted: its pid is known and the rules go in now; new: once it has started.
        self.apply_firewall(true).await
    }

    /// Step 3 from the warm pool: take a started pause container; then, in the background
    /// while the first container is created, at once load the task's rules into its
    /// namespace, name it for the task and make the subnet's bridge, and only then move it
    /// onto the bridge with the task's address and MAC (its namespace never has an interface
    /// without the task's rules).
    async fn start_pause_warm(&mut self, net: &TaskNetwork) -> Result<(), (TaskStopCode, String)> {
        let rt = self.ctx.runtime.clone();
        let pool = self.ctx.network.pool.clone();
        self.net.busy = Some(pool.busy());
        let dns = self.desired.borrow().dns_servers.clone();
        let (id, pid) = pool
            .take(&rt, &self.ctx.instance_arn, &dns)
            .await
            .map_err(|e| failed(format!("CannotCreateContainerError: pause: {e}")))?;
        self.net.pause_id = Some(id.clone());
        self.net.pid = Some(pid);
        self.net.holder = Some(pool.holder());
        let ruleset = self.ruleset(net);
        let firewall = self.ctx.network.firewall.clone();
        let name = pause_name(self.td.family.as_deref(), &self.task_id);
        let to = NetworkAttachment {
            name: bridge_name(&net.subnet_id),
            ip_address: Some(net.private_ip.to_string()),
            mac_address: Some(net.mac_address.clone()).filter(|m| !m.is_empty()),
        };
        let (net, instance) = (net.clone(), self.ctx.instance_arn.clone());
        let bridges = self.ctx.network.bridges.clone();
        let networking = self.ctx.network.clone();
        self.net.pause_start = Some(tokio::spawn(async move {
            let fail = |e: RuntimeError| failed(format!("CannotStartContainerError: pause: {e}"));
            let rules = async {
                firewall
                    .apply(pid, &ruleset)
                    .await
                    .map_err(|e| failed(format!("CannotApplySecurityGroupsError: {e}")))
            };
            // Its name says whose it is: a restarted agent finds it again.
            let named = async {
                if let Err(RuntimeError::Conflict { .. }) = rt.rename(&id, &name).await {
                    // Left by an earlier attempt: replace it.
                    let _ = rt.remove(&name).await;
                    rt.rename(&id, &name).await.map_err(fail)?;
                }
                Ok(())
            };
            // Held until it is on the bridge.
            let bridge = async {
                let guard = bridges.lock_owned().await;
                ensure_bridge(rt.as_ref(), &networking, &net, &instance).await.map(|()| guard)
            };
            let ((), (), _guard) = tokio::try_join!(rules, named, bridge)?;
            match rt.move_to_network(&id, &to).await {
                // Removed meanwhile by another agent process sharing the subnet.
                Err(RuntimeError::NotFound {
                    kind: berth_runtime::ObjectKind::Network, ..
                }) => {
                    // The bridge lock is still held (`_guard`).
                    ensure_bridge(rt.as_ref(), &networking, &net, &instance).await?;
                    rt.move_to_network(&id, &to).await.map_err(fail)?;
                }
                other => other.map_err(fail)?,
            }
            Ok(Some(ruleset))
        }));
        Ok(())
    }

    /// Waits for the pause container's start, then loads the firewall: called before each
    /// container of the task starts (the first call does the work).
    pub(super) async fn network_ready(&mut self) -> Result<(), (TaskStopCode, String)> {
        let Some(start) = self.net.pause_start.take() else { return Ok(()) };
        let loaded =
            start.await.map_err(|e| failed(format!("CannotStartContainerError: pause: {e}")))??;
        if let Some(ruleset) = loaded {
            // Warm: the rules went in before it joined the subnet; only a change since.
            self.net.applied = Some(ruleset);
            return self.apply_firewall(false).await;
        }
        self.read_pause_pid().await?;
        self.apply_firewall(true).await
    }

    /// The task's containers run: a warm hand-out is over (the pool may replenish).
    pub(super) fn network_started(&mut self) {
        self.net.busy = None;
    }

    /// Step 3, cold: in the background (the task's first container is created meanwhile,
    /// joining the pause container by its name, which Docker resolves at start), the bridge,
    /// then the pause container made on it with the ENI's address, MAC, DNS name and the
    /// task's resolvers, then started. The bridge lock is held until the pause container
    /// exists ([`cleanup`] takes it too); a bridge removed before it starts (by another agent
    /// process sharing the subnet) is made again.
    fn start_pause(&mut self, net: &TaskNetwork) {
        let rt = self.ctx.runtime.clone();
        let labels: BTreeMap<String, String> = [
            (LABEL_CLUSTER, self.ctx.cluster.as_str()),
            (LABEL_TASK_ARN, self.arn.as_str()),
            (LABEL_INSTANCE, self.ctx.instance_arn.as_str()),
            (LABEL_PAUSE, "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut spec = ContainerSpec {
            name: pause_name(self.td.family.as_deref(), &self.task_id),
            labels,
            network_mode: NetworkMode::Named(bridge_name(&net.subnet_id)),
            ipv4_address: Some(net.private_ip.to_string()),
            mac_address: Some(net.mac_address.clone()),
            hostname: Some(net.private_dns_name.clone()).filter(|h| !h.is_empty()),
            cgroup_parent: self.net.cgroup.clone(),
            security_opts: vec![crate::spec::NO_NEW_PRIVILEGES.into()],
            // The task's resolver (Berth's DNS, issue #17), shared by its containers.
            dns_servers: self.desired.borrow().dns_servers.clone(),
            ..Default::default()
        };
        self.net.pause_id = Some(spec.name.clone());
        let (net, instance) = (net.clone(), self.ctx.instance_arn.clone());
        let networking = self.ctx.network.clone();
        self.net.pause_start = Some(tokio::spawn(async move {
            let create_err =
                |e: RuntimeError| failed(format!("CannotCreateContainerError: pause: {e}"));
            spec.image = rt
                .pause_image()
                .await
                .map_err(|e| failed(format!("CannotCreateContainerError: pause image: {e}")))?;
            let guard = networking.bridges.clone().lock_owned().await;
            ensure_bridge(rt.as_ref(), &networking, &net, &instance).await?;
            let id = match rt.create(&spec).await {
                Ok(id) => id,
                Err(RuntimeError::Conflict { .. }) => {
                    // Left by an earlier attempt: replace it.
                    let _ = rt.remove(&spec.name).await;
                    rt.create(&spec).await.map_err(create_err)?
                }
                Err(e) => return Err(create_err(e)),
            };
            drop(guard);
            let started = match rt.start(&id).await {
                // Docker checks the network at start: removed meanwhile by another agent.
                Err(RuntimeError::NotFound {
                    kind: berth_runtime::ObjectKind::Network, ..
                }) => {
                    let _guard = networking.bridges.lock().await;
                    ensure_bridge(rt.as_ref(), &networking, &net, &instance).await?;
                    rt.start(&id).await
                }
                other => other,
            };
            started.map_err(|e| failed(format!("CannotStartContainerError: pause: {e}")))?;
            Ok(None)
        }));
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

    /// The task's security groups as of the latest poll, compiled.
    fn ruleset(&self, net: &TaskNetwork) -> Ruleset {
        let groups = task_groups(net, &self.ctx.network.groups.borrow().clone());
        let opts = berth_firewall::Options {
            // The endpoint, and 169.254.170.2 on its port (task role credentials, DNAT'd to it).
            always_egress: metadata_endpoint(self.ctx.metadata_base.as_deref())
                .into_iter()
                .flat_map(|(ip, port)| {
                    [(ip, port), (crate::task_credentials::CREDENTIALS_IP, port)]
                })
                .collect(),
        };
        berth_firewall::compile(&groups, &opts)
    }

    /// Compiles the task's groups and applies them when they differ from what is applied
    /// (`force`: apply anyway).
    pub(super) async fn apply_firewall(
        &mut self,
        force: bool,
    ) -> Result<(), (TaskStopCode, String)> {
        let (Some(net), Some(pid)) = (self.network(), self.net.pid) else { return Ok(()) };
        let ruleset = self.ruleset(&net);
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
        let mut pause = found.into_iter().find(|c| c.state.is_running()).map(|c| c.id);
        if pause.is_none() {
            pause = self.adopt_warm_pause().await;
        }
        if let Some(id) = pause {
            self.net.pause_id = Some(id);
            if self.read_pause_pid().await.is_ok()
                && let Err((_, e)) = self.apply_firewall(true).await
            {
                tracing::warn!(task = %self.arn, error = %e, "cannot re-apply security groups");
            }
        }
    }

    /// A warm pause container handed out to this task before a restart, found by its name:
    /// kept when it runs on the subnet's bridge with the task's address, removed otherwise
    /// (the hand-out did not finish; the task gets another).
    async fn adopt_warm_pause(&self) -> Option<String> {
        let net = self.network()?;
        let rt = self.ctx.runtime.clone();
        let st = rt.inspect(&pause_name(self.td.family.as_deref(), &self.task_id)).await.ok()??;
        let ours = st.labels.get(LABEL_INSTANCE) == Some(&self.ctx.instance_arn)
            && st.labels.contains_key(LABEL_POOL);
        if !ours {
            return None;
        }
        let ip = net.private_ip.to_string();
        let placed = st.networks.iter().any(|n| {
            n.name == bridge_name(&net.subnet_id) && n.ip_address.as_deref() == Some(ip.as_str())
        });
        if st.state.is_running() && placed {
            return Some(st.id);
        }
        let _ = rt.remove(&st.id).await;
        None
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
        self.net.busy = None;
        self.net.holder = None;
        if let Some(net) = self.network() {
            // Kept a while for the subnet's next task, then removed.
            release_bridge(rt.clone(), &self.ctx.network, &net.subnet_id);
        }
        if let Some(cg) = self.net.cgroup.take()
            && let Err(e) = rt.remove_cgroup(&cg).await
        {
            tracing::warn!(task = %self.arn, cgroup = %cg, error = %e, "cannot remove the task cgroup");
        }
    }
}

/// Level-triggered cleanup: bridges of this instance no container uses (and not lingering:
/// [`BRIDGE_LINGER`]), the VPC links, and cgroups of this instance's tasks that are not in
/// `live_task_ids`.
pub async fn cleanup(
    rt: &dyn Runtime,
    networking: &Networking,
    instance_arn: &str,
    live_task_ids: &[String],
) {
    networking.pool.reconcile(rt, instance_arn, live_task_ids).await;
    {
        let _guard = networking.bridges.lock().await;
        bridges::cleanup(rt, networking, instance_arn).await;
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
