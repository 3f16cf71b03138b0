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
