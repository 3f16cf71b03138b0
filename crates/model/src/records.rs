//! The records the store keeps, as JSON values under the keys of [`crate::keys`].
//!
//! Records reuse the wire shapes where the shape is plain data (settings, tags, the task
//! definition itself): ECS returns what was registered, so the registered shape is the domain.

use berth_wire::ecs::{
    CapacityProviderStrategyItem, ClusterConfiguration, ClusterSetting, Tag, TaskDefinition,
};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{DesiredTaskStatus, InstanceStatus, TaskStatus};

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
    /// Sensitive: never logged, never returned by any Describe or List. Stored sealed under
    /// the server's master key (`berth-sealed:v1:...`, berth-server's `auth::secrets`), never
    /// in plain text.
    pub secret_access_key: String,
    /// The principal this key authenticates, e.g. `arn:aws:iam::123456789012:root`.
    pub principal_arn: String,
    /// `Active` or `Inactive`, as IAM spells it.
    pub status: String,
    /// Epoch seconds.
    pub created_at: f64,
    /// Set on an instance key (issued to an agent that joined with a join token): the
    /// container instance it belongs to. Such a key may only poll and report for that
    /// instance (berth-server's `auth::authorize`). `None`: an administrator key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
}

impl std::fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("principal_arn", &self.principal_arn)
            .field("status", &self.status)
            .field("container_instance_arn", &self.container_instance_arn)
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
    /// ACTIVE, DRAINING, or INACTIVE once deregistered (serialised as ECS spells it, as it
    /// always was: records written before the field was typed decode unchanged).
    pub status: InstanceStatus,
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

/// `ecs/run-tokens/<cluster>/<clientToken>`: what a RunTask with a client token started, and
/// a digest of what it asked (its parameters, normalised), so that a reuse of the token with
/// other parameters is told apart from a retry. Records written before the digest existed are
/// a bare array of task ARNs and read with `request_hash: None` (any parameters match).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RunTokenStored")]
pub struct RunTokenRecord {
    pub task_arns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
}

/// The shapes a [`RunTokenRecord`] was stored in.
#[derive(Deserialize)]
#[serde(untagged)]
enum RunTokenStored {
    #[serde(rename_all = "camelCase")]
    Current {
        task_arns: Vec<String>,
        #[serde(default)]
        request_hash: Option<String>,
    },
    Legacy(Vec<String>),
}

impl From<RunTokenStored> for RunTokenRecord {
    fn from(s: RunTokenStored) -> Self {
        match s {
            RunTokenStored::Current { task_arns, request_hash } => Self { task_arns, request_hash },
            RunTokenStored::Legacy(task_arns) => Self { task_arns, request_hash: None },
        }
    }
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
    // The task definition is the revision `task.taskDefinitionArn` names: revisions are
    // immutable, so the server reads it from its revision cache rather than keeping a copy in
    // every task (records written before kept one, `taskDefinition`, ignored on read and
    // dropped on the next write).
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

/// Typed statuses of a task record. The wire `Task` inside keeps `lastStatus` and
/// `desiredStatus` as the strings botocore types them as (the record *is* the DescribeTasks
/// answer); nothing outside this impl and [`ContainerStatusExt`] reads or writes them.
///
/// Berth only ever stores values written through the setters. A value it did not write (a
/// missing or unknown string, e.g. from a hand-edited database) never panics: it reads as the
/// status a new task is created with, `PENDING` / `RUNNING`, so the task's next report or a
/// StopTask moves it on (known status only moves forward from there, as always).
impl TaskRecord {
    /// `lastStatus`; `Pending` when missing or unknown.
    pub fn last_status(&self) -> TaskStatus {
        self.task.last_status.as_deref().and_then(|s| s.parse().ok()).unwrap_or(TaskStatus::Pending)
    }

    /// `desiredStatus`; `Running` when missing or unknown.
    pub fn desired_status(&self) -> DesiredTaskStatus {
        self.task
            .desired_status
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DesiredTaskStatus::Running)
    }

    /// Sets `lastStatus`.
    pub fn set_last_status(&mut self, status: TaskStatus) {
        self.task.last_status = Some(status.as_str().to_string());
    }

    /// Sets `desiredStatus`.
    pub fn set_desired_status(&mut self, status: DesiredTaskStatus) {
        self.task.desired_status = Some(status.as_str().to_string());
    }
}

/// Typed `lastStatus` of a wire container. ECS reports a container's `lastStatus` with the
/// task's vocabulary (`PENDING`, `RUNNING`, `STOPPED`), so it reads as a [`TaskStatus`]; a
/// missing or unknown value reads as `Pending`, as for the task (see [`TaskRecord`]'s
/// accessors).
pub trait ContainerStatusExt {
    /// `lastStatus`; `Pending` when missing or unknown.
    fn status(&self) -> TaskStatus;
    /// Sets `lastStatus`.
    fn set_status(&mut self, status: TaskStatus);
}

impl ContainerStatusExt for berth_wire::ecs::Container {
    fn status(&self) -> TaskStatus {
        self.last_status.as_deref().and_then(|s| s.parse().ok()).unwrap_or(TaskStatus::Pending)
    }

    fn set_status(&mut self, status: TaskStatus) {
        self.last_status = Some(status.as_str().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_instance_record_written_with_a_string_status_still_decodes() {
        let old = serde_json::json!({
            "id": "i1", "arn": "arn:aws:ecs:us-east-1:000000000000:container-instance/c/i1",
            "cluster": "c", "ec2InstanceId": "i-1", "status": "DRAINING",
            "registeredResources": [], "usedCpu": 0, "usedMemoryMib": 0,
            "usedPortsTcp": [], "usedPortsUdp": [], "attributes": [], "versionInfo": null,
            "tags": [], "registeredAt": 1.0, "epoch": 1, "version": 2
        });
        let rec: ContainerInstanceRecord = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(rec.status, InstanceStatus::Draining);
        // And it is written back byte for byte the same way.
        let mut again = serde_json::to_value(&rec).unwrap();
        again.as_object_mut().unwrap().remove("taskGroups");
        assert_eq!(again, old);
        for s in InstanceStatus::ALL {
            let mut v = old.clone();
            v["status"] = s.as_str().into();
            assert_eq!(serde_json::from_value::<ContainerInstanceRecord>(v).unwrap().status, s);
        }
    }

    #[test]
    fn run_tokens_round_trip_and_legacy_ones_still_decode() {
        let rec =
            RunTokenRecord { task_arns: vec!["arn:t1".into()], request_hash: Some("h".into()) };
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json, serde_json::json!({"taskArns": ["arn:t1"], "requestHash": "h"}));
        assert_eq!(serde_json::from_value::<RunTokenRecord>(json).unwrap(), rec);
        let legacy: RunTokenRecord = serde_json::from_str(r#"["arn:t1","arn:t2"]"#).unwrap();
        assert_eq!(legacy.task_arns, vec!["arn:t1", "arn:t2"]);
        assert_eq!(legacy.request_hash, None);
    }

    fn task(last: Option<&str>, desired: Option<&str>) -> TaskRecord {
        serde_json::from_value(serde_json::json!({
            "id": "t", "cluster": "c", "instanceId": "i",
            "task": {"lastStatus": last, "desiredStatus": desired},
            "reservedCpu": 0, "reservedMemoryMib": 0,
            "reservedPortsTcp": [], "reservedPortsUdp": []
        }))
        .unwrap()
    }

    #[test]
    fn task_record_status_accessors() {
        for s in TaskStatus::ALL {
            let mut t = task(None, None);
            t.set_last_status(s);
            assert_eq!(t.task.last_status.as_deref(), Some(s.as_str()));
            assert_eq!(t.last_status(), s);
        }
        for d in [DesiredTaskStatus::Running, DesiredTaskStatus::Stopped] {
            let mut t = task(None, None);
            t.set_desired_status(d);
            assert_eq!(t.task.desired_status.as_deref(), Some(d.as_str()));
            assert_eq!(t.desired_status(), d);
        }
        // What Berth never writes reads as a new task's status, without panicking.
        for bad in [None, Some(""), Some("running"), Some("DELETED")] {
            let t = task(bad, bad);
            assert_eq!(t.last_status(), TaskStatus::Pending, "{bad:?}");
            assert_eq!(t.desired_status(), DesiredTaskStatus::Running, "{bad:?}");
        }
    }

    #[test]
    fn container_status_accessors() {
        let mut c = berth_wire::ecs::Container::default();
        assert_eq!(c.status(), TaskStatus::Pending);
        for s in [TaskStatus::Pending, TaskStatus::Running, TaskStatus::Stopped] {
            c.set_status(s);
            assert_eq!(c.last_status.as_deref(), Some(s.as_str()));
            assert_eq!(c.status(), s);
        }
        c.last_status = Some("bogus".into());
        assert_eq!(c.status(), TaskStatus::Pending);
    }
}
