//! The records the store keeps, as JSON values under the keys of [`crate::keys`].
//!
//! Records reuse the wire shapes where the shape is plain data (settings, tags, the task
//! definition itself): ECS returns what was registered, so the registered shape is the domain.

use berth_wire::ecs::{
    CapacityProviderStrategyItem, ClusterConfiguration, ClusterSetting, Tag, TaskDefinition,
};
use serde::{Deserialize, Serialize};

/// Lifecycle of a cluster: ACTIVE until deleted, then INACTIVE (still describable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterStatus {
    Active,
    Inactive,
}

impl ClusterStatus {
    /// As ECS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// `ecs/clusters/<name>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    pub name: String,
    pub arn: String,
    pub status: ClusterStatus,
    #[serde(default)]
    pub settings: Vec<ClusterSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ClusterConfiguration>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// Epoch seconds.
    pub created_at: f64,
}

/// `ecs/taskdefs/<family>!<revision>`. Serialised, it is exactly a
/// `DescribeTaskDefinitionResponse` with `include: [TAGS]`, so that answer needs no rebuild.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionRecord {
    pub task_definition: TaskDefinition,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// `ecs/taskdef-families/<family>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyRecord {
    /// The highest revision ever registered (revisions are never reused, even after delete).
    pub latest_revision: i32,
    /// How many revisions are ACTIVE.
    pub active_revisions: u32,
}

/// `iam/access-keys/<AKID>`. Its `Debug` omits the secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    /// Sensitive: never logged, never returned by any Describe or List.
    pub secret_access_key: String,
    /// The principal this key authenticates, e.g. `arn:aws:iam::123456789012:root`.
    pub principal_arn: String,
    /// `Active` or `Inactive`, as IAM spells it.
    pub status: String,
    /// Epoch seconds.
    pub created_at: f64,
}

impl std::fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("principal_arn", &self.principal_arn)
            .field("status", &self.status)
            .finish()
    }
}

/// `ecs/instances/<cluster>/<id>`: a container instance. Resources are ECS's `Resource`
/// shapes (CPU in units, MEMORY in MiB, PORTS / PORTS_UDP as string sets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstanceRecord {
    pub id: String,
    pub arn: String,
    pub cluster: String,
    pub ec2_instance_id: String,
    /// ACTIVE, DRAINING, or INACTIVE once deregistered.
    pub status: String,
    pub registered_resources: Vec<berth_wire::ecs::Resource>,
    /// What placed tasks that are not yet STOPPED use: cpu units and memory MiB.
    pub used_cpu: i64,
    pub used_memory_mib: i64,
    /// Static host ports held by placed tasks.
    pub used_ports_tcp: Vec<u16>,
    pub used_ports_udp: Vec<u16>,
    /// Non-STOPPED tasks on the instance per task group (`family:web`, `service:api`), for
    /// `task:group` expressions, `distinctInstance` and `spread`; kept in step with the
    /// `used_*` fields.
    #[serde(default)]
    pub task_groups: std::collections::BTreeMap<String, u32>,
    pub attributes: Vec<berth_wire::ecs::Attribute>,
    pub version_info: Option<berth_wire::ecs::VersionInfo>,
    pub tags: Vec<Tag>,
    /// Epoch seconds.
    pub registered_at: f64,
    /// Bumped by every re-registration of the same instance: the agent's fencing token.
    pub epoch: u64,
    /// Bumped on every change, as ECS's `version`.
    pub version: i64,
}

/// `ecs/instance-heartbeat/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRecord {
    /// Epoch seconds of the last poll.
    pub last_seen: f64,
}

/// `ecs/tasks/<cluster>/<id>`: a task as DescribeTasks returns it, plus what the server and
/// the agent need to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub id: String,
    pub cluster: String,
    /// The instance it is placed on (id, not ARN).
    pub instance_id: String,
    /// The wire shape, kept current: lastStatus, desiredStatus, containers, timestamps...
    pub task: berth_wire::ecs::Task,
    /// The task definition revision as it was when the task started.
    pub task_definition: TaskDefinition,
    /// What the task holds on its instance until it is STOPPED.
    pub reserved_cpu: i64,
    pub reserved_memory_mib: i64,
    pub reserved_ports_tcp: Vec<u16>,
    pub reserved_ports_udp: Vec<u16>,
    /// Scale-in protection ends at this time (epoch seconds); `None` when off.
    #[serde(default)]
    pub protected_until: Option<f64>,
    /// (agent registration epoch, report sequence number) of the last agent report applied.
    #[serde(default)]
    pub report_mark: Option<(u64, u64)>,
}
