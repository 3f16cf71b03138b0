//! Task placement as a pure function, Nomad-style: a snapshot of a cluster's container
//! instances and a [`PlacementRequest`] in, a [`Plan`] out. [`task_requirements`] derives what
//! one task needs from its task definition and overrides; [`ecs_input`] turns ECS's
//! `placementConstraints` / `placementStrategy` members into [`Constraint`]s and
//! [`Strategy`]s with field-named errors; [`query`] is ECS's cluster query language;
//! [`capacity`] splits a count of tasks across a capacity provider strategy.
//!
//! # Contract
//!
//! * **Pure.** No I/O, no clock, no async, no locks. Randomness (the `random` strategy) comes
//!   from [`PlacementRequest::seed`], so the same inputs always give the same plan and plans
//!   can be recorded and asserted on. The server takes a snapshot, calls [`place`] (or keeps a
//!   [`ClusterState`] and calls [`ClusterState::place`]), and commits the plan with
//!   compare-and-set on the instances it touches; on a conflict it plans again from a fresh
//!   snapshot. The scheduler never sees the store.
//! * **Never overcommits.** Each placed task consumes its cpu, memory, static host ports and a
//!   slot of its task group on the chosen instance before the next task of the request is
//!   placed. For every instance the planned cpu and memory sum to at most its `remaining`, and
//!   planned static ports are disjoint from its used ports and from each other. Dynamic host
//!   ports (host port 0) are Docker's choice and reserve nothing.
//! * **Accounting.** `plan.placements.len() + plan.unplaced == count`, and task indexes
//!   `0..placements.len()` are placed in order.
//! * **Eligibility (ECS's order: resources, then constraints, then strategies).** Only
//!   `ACTIVE` instances are candidates. `DRAINING` and every other status is skipped silently:
//!   ECS documents that draining "prevents new tasks from being scheduled" and documents no
//!   failure reason for it. A candidate is checked in this order, and the first check it fails
//!   is its failure reason:
//!
//!   | check                                                 | reason                                              |
//!   |-------------------------------------------------------|-----------------------------------------------------|
//!   | agent connected                                       | `AGENT`                                             |
//!   | every `required_attributes` name is an attribute      | `ATTRIBUTE`                                         |
//!   | cpu <= remaining cpu                                  | `RESOURCE:CPU`                                      |
//!   | memory <= remaining memory                            | `RESOURCE:MEMORY`                                   |
//!   | no static TCP host port already used                  | `RESOURCE:PORTS`                                    |
//!   | no static UDP host port already used                  | `RESOURCE:PORTS_UDP`                                |
//!   | each constraint in order (the request's, then the task definition's): | |
//!   | a `memberOf` expression holds                        | `MemberOf placement constraint unsatisfied.`        |
//!   | `distinctInstance`: no task of the group on it yet    | `DistinctInstance placement constraint unsatisfied.`|
//!
//!   Sources: the ECS developer guide's "API failure reasons" page (`RESOURCE:*`, `AGENT`,
//!   `ATTRIBUTE`), its "Amazon ECS task placement" page (the order of the checks), and what
//!   ECS answers for unsatisfiable constraints (`MemberOf placement constraint unsatisfied.`).
//! * **Strategies are tie-breakers, in order** (ECS: "task placement strategies are a best
//!   effort ... constraints are binding"). Each strategy gives every instance a key; the task
//!   goes to the eligible instance with the lexicographically smallest key tuple, and the
//!   instance's position in the snapshot breaks the last tie. No strategy means first fit.
//!
//!   | strategy                       | key (smaller wins)                                                     |
//!   |--------------------------------|------------------------------------------------------------------------|
//!   | `binpack` on `cpu` / `memory`  | the instance's remaining cpu / memory ("least available amount")       |
//!   | `spread` on `instanceId`/`host`| tasks of the request's group on the instance                           |
//!   | `spread` on `attribute:NAME`   | tasks of the group on all instances sharing this instance's value of NAME (instances without NAME share one bucket) |
//!   | `random`                       | a hash of (seed, task index, instance position): uniform among the tied |
//!
//!   "Service tasks are spread based on the tasks from that service. Standalone tasks are
//!   spread based on the tasks from the same task group" (ECS): the group is
//!   [`PlacementRequest::group`], `service:NAME` or `family:NAME` by default, and counts
//!   include tasks placed earlier in the same request.
//! * **Failures** are reported only for tasks that could not be placed: each ACTIVE instance
//!   contributes one entry (its ARN and the first reason it refused), in instance order, at
//!   most one entry per (instance, reason). Placement stops there: a failed attempt changes
//!   nothing, so every later task of the request would be refused identically; they are
//!   counted in `unplaced`. This is what ECS answers: `run-task --count 2` with a static host
//!   port on a single instance places one task and reports one `RESOURCE:PORTS` failure.
//! * **No container instance at all.** When the snapshot holds no `ACTIVE` instance, ECS does
//!   not answer with `failures`: `RunTask` fails with `InvalidParameterException` "No
//!   Container Instances were found in your cluster.", returned here as
//!   [`PlacementError::NoContainerInstances`].
//!
//! # Speed
//!
//! [`ClusterState`] keeps instances indexed by remaining cpu and memory, partitioned by the
//! attributes that spread strategies name, and filtered by static `memberOf` expressions
//! (those that read only attributes, ids, versions, registration time and agent state), all
//! updated in place as tasks are placed. Binpack-first and spread-on-attribute-first chains
//! find their instance in O(log n) per task for typical clusters; other chains scan the
//! eligible instances. A reference implementation that always scans
//! ([`reference::place`]) is kept for the property tests, which check the two agree.
#![forbid(unsafe_code)]

pub mod capacity;
pub mod ecs_input;
pub mod query;
pub mod reference;
mod requirements;
mod rules;
mod state;

/// [`ecs_input`] under its former name, which callers still use.
pub use ecs_input as wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use query::{Expr, QueryError, QuerySubject};
pub use requirements::task_requirements;
pub use state::ClusterState;

/// Host ports ECS reserves on every container instance (SSH, the Docker daemon, the agent's
/// introspection API and its metadata endpoint). The server adds these, and any the agent
/// reports, to [`InstanceSnapshot::used_ports_tcp`].
pub const DEFAULT_RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];

/// At most this many placement strategies per request (ECS's limit).
pub const MAX_STRATEGIES: usize = 5;
/// At most this many placement constraints per task, the task definition's included.
pub const MAX_CONSTRAINTS: usize = 10;

/// The failure reasons [`place`] emits, as ECS spells them.
pub mod reason {
    /// The instance's agent is disconnected.
    pub const AGENT: &str = "AGENT";
    /// The instance lacks an attribute the task definition requires.
    pub const ATTRIBUTE: &str = "ATTRIBUTE";
    /// Not enough cpu units left.
    pub const RESOURCE_CPU: &str = "RESOURCE:CPU";
    /// Not enough memory left.
    pub const RESOURCE_MEMORY: &str = "RESOURCE:MEMORY";
    /// A static TCP host port is taken.
    pub const RESOURCE_PORTS: &str = "RESOURCE:PORTS";
    /// A static UDP host port is taken.
    pub const RESOURCE_PORTS_UDP: &str = "RESOURCE:PORTS_UDP";
    /// A `memberOf` expression is false for the instance.
    pub const MEMBER_OF: &str = "MemberOf placement constraint unsatisfied.";
    /// The instance already runs a task of the group.
    pub const DISTINCT_INSTANCE: &str = "DistinctInstance placement constraint unsatisfied.";
}

/// A container instance's status, as ECS spells it: the model's
/// ([`berth_model::lifecycle::InstanceStatus`]); only `Active` instances take new tasks.
pub use berth_model::lifecycle::InstanceStatus;

/// Cpu units (1024 per vCPU) and memory in MiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu: i64,
    pub memory_mib: i64,
}

/// What the scheduler knows about one container instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSnapshot {
    pub arn: String,
    pub status: InstanceStatus,
    pub agent_connected: bool,
    /// What is still free: registered minus what non-STOPPED tasks hold.
    pub remaining: Resources,
    /// Static TCP host ports already taken, including [`DEFAULT_RESERVED_PORTS`] and the
    /// agent's own.
    pub used_ports_tcp: BTreeSet<u16>,
    /// Static UDP host ports already taken.
    pub used_ports_udp: BTreeSet<u16>,
    /// The instance's attributes by name (value when it has one). Shared: a fleet of alike
    /// hosts has a handful of distinct attribute sets, so holders intern them (one map per
    /// distinct set, not per instance).
    pub attributes: Arc<BTreeMap<String, Option<String>>>,
    /// For `ec2InstanceId` expressions.
    #[serde(default)]
    pub ec2_instance_id: Option<String>,
    /// The agent's version, for `agentVersion` expressions.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Registration time, epoch milliseconds, for `registeredAt` expressions.
    #[serde(default)]
    pub registered_at_ms: Option<i64>,
    /// Tasks in RUNNING status, for `runningTasksCount` expressions.
    #[serde(default)]
    pub running_tasks_count: u32,
    /// Non-STOPPED tasks on the instance by task group, for `task:group` expressions,
    /// `distinctInstance` and `spread`.
    #[serde(default)]
    pub task_groups: BTreeMap<String, u32>,
}

impl InstanceSnapshot {
    /// An ACTIVE, connected instance with `remaining` free, the default reserved ports taken,
    /// and nothing else known: the start of a test fixture or a synthetic cluster.
    pub fn new(arn: impl Into<String>, remaining: Resources) -> Self {
        Self {
            arn: arn.into(),
            status: InstanceStatus::Active,
            agent_connected: true,
            remaining,
            used_ports_tcp: DEFAULT_RESERVED_PORTS.into_iter().collect(),
            used_ports_udp: BTreeSet::new(),
            attributes: Arc::default(),
            ec2_instance_id: None,
            agent_version: None,
            registered_at_ms: None,
            running_tasks_count: 0,
            task_groups: BTreeMap::new(),
        }
    }

    /// With attribute `name` set to `value`.
    pub fn with_attribute(mut self, name: &str, value: Option<&str>) -> Self {
        Arc::make_mut(&mut self.attributes).insert(name.to_string(), value.map(str::to_string));
        self
    }
}

impl QuerySubject for InstanceSnapshot {
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.agent_version.as_deref()
    }
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).map(|v| v.as_deref())
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.ec2_instance_id.as_deref()
    }
    fn registered_at_ms(&self) -> Option<i64> {
        self.registered_at_ms
    }
    fn running_tasks_count(&self) -> u32 {
        self.running_tasks_count
    }
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.task_groups.iter().any(|(g, n)| *n > 0 && f(g))
    }
}

/// What one task needs from an instance. Negative cpu or memory counts as zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRequirements {
    pub cpu: i64,
    pub memory_mib: i64,
    /// Static TCP host ports (dynamic ports, host port 0, never conflict and are not listed).
    pub host_ports_tcp: Vec<u16>,
    /// Static UDP host ports.
    pub host_ports_udp: Vec<u16>,
    /// Attribute names (the task definition's `requiresAttributes`) an instance must carry.
    pub required_attributes: Vec<String>,
}

/// A binding rule on where a task may go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Constraint {
    /// Each task of the group on a different instance.
    DistinctInstance,
    /// Only instances for which the expression holds.
    MemberOf { expression: Expr },
}

/// The resource `binpack` packs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BinpackField {
    Cpu,
    Memory,
}

/// What `spread` balances over.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SpreadField {
    /// Each instance on its own (`instanceId` or `host`).
    InstanceId,
    /// The values of one attribute, e.g. `ecs.availability-zone`.
    Attribute(String),
}

/// A tie-breaking rule among eligible instances (see the crate docs for the keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    Binpack(BinpackField),
    Spread(SpreadField),
    Random,
}

/// `count` identical tasks of one group to place.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRequest {
    pub count: u32,
    pub requirements: TaskRequirements,
    /// The task group (`family:NAME`, `service:NAME` or the caller's own).
    #[serde(default)]
    pub group: String,
    /// Binding: the request's and the task definition's, all of which must hold.
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// Tie-breakers, in order; empty means first fit.
    #[serde(default)]
    pub strategies: Vec<Strategy>,
    /// Seeds the `random` strategy.
    #[serde(default)]
    pub seed: u64,
    /// StartTask's kind of request: one task on each of these instances, in order (an
    /// instance named twice gets two, the second placed against what the first left), with
    /// no constraints or strategies. `count` is then ignored. An instance that is not ACTIVE
    /// fails with its status as the reason; one that is not in the state, with `MISSING`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// Task `task_index` (0-based, within the request) goes on `instance_arn`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub instance_arn: String,
    pub task_index: u32,
}

/// An entry of the `failures` ECS returns: the instance (when the failure concerns one) and
/// the reason (see [`reason`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementFailure {
    pub arn: Option<String>,
    pub reason: String,
}

/// The result of [`place`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// In task order: task `i` is `placements[i]`.
    pub placements: Vec<Placement>,
    /// Why the tasks that were not placed were refused, one entry per (instance, reason).
    pub failures: Vec<PlacementFailure>,
    /// Tasks of the request that were not placed: `count - placements.len()`.
    pub unplaced: u32,
}

/// A request [`place`] refuses outright rather than answering with a plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The snapshot has no `ACTIVE` container instance. The server answers
    /// `InvalidParameterException` with this message, as ECS does.
    #[error("No Container Instances were found in your cluster.")]
    NoContainerInstances,
}

/// The attributes of `requirements` that `instance` lacks (why it refuses with `ATTRIBUTE`),
/// in the requirements' order.
pub fn missing_attributes(
    instance: &InstanceSnapshot,
    requirements: &TaskRequirements,
) -> Vec<String> {
    requirements
        .required_attributes
        .iter()
        .filter(|a| !rules::has_attribute(instance, a))
        .cloned()
        .collect()
}

/// Places `req.count` tasks on `instances` (see the crate docs for the rules). Pure and
/// deterministic. For many requests against one cluster, keep a [`ClusterState`] instead.
pub fn place(
    instances: &[InstanceSnapshot],
    req: &PlacementRequest,
) -> Result<Plan, PlacementError> {
    ClusterState::new(instances.to_vec()).place(req)
}

// An expression is recorded as its source text and compared by it.
impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source() == other.source()
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.source())
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let src = String::deserialize(d)?;
        Expr::parse(&src).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
