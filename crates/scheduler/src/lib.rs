//! Task placement as a pure function, Nomad-style: [`place`] maps a snapshot of a cluster's
//! container instances and a [`PlacementRequest`] to a [`Plan`]; [`task_requirements`] derives
//! what one task needs from its task definition and overrides.
//!
//! # Contract
//!
//! * **Pure.** No I/O, no clock, no async, no locks, no randomness. The same inputs give the
//!   same plan, so plans can be recorded and asserted on. A strategy that ever needs randomness
//!   takes its seed in the request. The server takes a snapshot, calls [`place`], and commits
//!   the plan with compare-and-set on the instances it touches; on a conflict it takes a fresh
//!   snapshot and plans again. The scheduler never sees the store.
//! * **Never overcommits.** Each placed task consumes its cpu, memory and static host ports on
//!   the chosen instance in the function's own working copy of the snapshot, so later tasks of
//!   the same request (`count` up to 10) see what earlier ones took. For every instance the
//!   planned cpu and memory sum to at most its `remaining` (when that is non-negative), and the
//!   planned static ports are disjoint from its used ports and from each other.
//! * **Accounting.** `plan.placements.len() + plan.unplaced == count`, and task indexes
//!   `0..placements.len()` are placed in order.
//! * **Eligibility, first fit (ECS's rules for `RunTask` on EC2 capacity).** Only `ACTIVE`
//!   instances are candidates, tried in the order given. `DRAINING` (and every other status) is
//!   skipped silently: ECS documents that draining "prevents new tasks from being scheduled for
//!   placement on the container instance" and documents no failure reason for it. A candidate
//!   is then checked in this order, and the first check it fails is its failure reason:
//!
//!   | check                                               | reason               |
//!   |-----------------------------------------------------|----------------------|
//!   | agent connected                                     | `AGENT`              |
//!   | every `required_attributes` name is an attribute    | `ATTRIBUTE`          |
//!   | cpu <= remaining cpu                                | `RESOURCE:CPU`       |
//!   | memory <= remaining memory                          | `RESOURCE:MEMORY`    |
//!   | no static TCP host port already used                | `RESOURCE:PORTS`     |
//!   | no static UDP host port already used                | `RESOURCE:PORTS_UDP` |
//!
//!   Source: the ECS developer guide's "API failure reasons" page (`RunTask`/`StartTask`:
//!   `RESOURCE:*` names the resource that is unavailable on the container instance, `AGENT` an
//!   agent that is currently disconnected, `ATTRIBUTE` a required container instance attribute
//!   that is missing; `LOCATION` and `RESOURCE:ENI`/`RESOURCE:GPU` need awsvpc subnets and
//!   GPUs, not modelled yet). `PORTS` and `PORTS_UDP` are the names ECS gives the port resources
//!   of a container instance (`registeredResources`), hence `RESOURCE:PORTS_UDP`.
//! * **Failures** are reported only for tasks that could not be placed: when a task fits no
//!   candidate, each candidate contributes one entry (its ARN and the reason it refused), in
//!   instance order, at most one entry per (instance, reason). Placement stops there: a failed
//!   attempt changes nothing, so every later task of the request would meet the same instances
//!   in the same state and fail for the same reasons; they are counted in `unplaced`. This is
//!   what ECS answers: `run-task --count 2` with a static host port on a single instance places
//!   one task and reports one `RESOURCE:PORTS` failure for that instance.
//! * **No container instance at all.** When the snapshot holds no `ACTIVE` instance, ECS does
//!   not answer with `failures`: `RunTask` fails with `InvalidParameterException` "No Container
//!   Instances were found in your cluster." (the message SDK users match on). [`place`] returns
//!   [`PlacementError::NoContainerInstances`], whose message is exactly that, for the server to
//!   map. Berth counts only `ACTIVE` instances as found, since the others cannot take tasks; an
//!   `ACTIVE` instance whose agent is disconnected is found and fails with `AGENT`.
//!
//! Types are plain data (serde, camelCase) so a test harness can record plans. They are built
//! to grow: [`PlacementRequest::strategy`] defaults to first fit, and constraints, the cluster
//! query language and spread/binpack strategies arrive as new fields with defaults.
#![forbid(unsafe_code)]

mod place;
mod requirements;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use place::place;
pub use requirements::task_requirements;

/// Host ports ECS reserves on every container instance (SSH, the Docker daemon, the agent's
/// introspection API and its metadata endpoint). The server adds these, and any the agent
/// reports, to [`InstanceSnapshot::used_ports_tcp`].
pub const DEFAULT_RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];

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
}

/// A container instance's status, as ECS spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    Active,
    Draining,
    Registering,
    Deregistering,
    Inactive,
}

impl InstanceStatus {
    /// As ECS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Registering => "REGISTERING",
            Self::Deregistering => "DEREGISTERING",
            Self::Inactive => "INACTIVE",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is no [`InstanceStatus`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown container instance status '{0}'")]
pub struct UnknownInstanceStatus(pub String);

impl FromStr for InstanceStatus {
    type Err = UnknownInstanceStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Active, Self::Draining, Self::Registering, Self::Deregistering, Self::Inactive]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownInstanceStatus(s.to_string()))
    }
}

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
    /// The instance's attributes by name (value when it has one).
    pub attributes: BTreeMap<String, Option<String>>,
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

/// How to choose among instances that fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlacementStrategy {
    /// The first instance, in snapshot order, that fits.
    #[default]
    FirstFit,
}

/// `count` identical tasks to place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRequest {
    pub count: u32,
    pub requirements: TaskRequirements,
    #[serde(default)]
    pub strategy: PlacementStrategy,
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
