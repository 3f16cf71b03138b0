//! The channel between `berth server` and `berth agent`.
//!
//! ```text
//!  agent ── POST /berth/agent/v1/poll {seenVersion} ──▶ server   (SigV4-signed like any AWS call)
//!        ◀── {version, tasks: [every task of this instance that is not finished]} ──
//!            (the server answers at once if the instance's desired state is newer than
//!             seenVersion, else holds the request until it changes or `waitSeconds` pass)
//!  agent ── SubmitTaskStateChange / SubmitContainerStateChange (the real ECS operations) ──▶
//! ```
//! Contract (level-triggered, as ECS's agent and Nomad's clients work):
//! * every poll answer carries the COMPLETE desired state of the instance, never a delta, so a
//!   lost answer, a restart of either side or a crash leaves nothing to repair: the next poll
//!   brings the truth;
//! * `version` is the store revision at which the instance's desired state last changed; it
//!   only grows;
//! * each poll is the agent's heartbeat: an instance whose agent has not polled for the
//!   server's heartbeat timeout shows `agentConnected: false`;
//! * on every (re)start the agent reports the state of every task it runs with
//!   SubmitTaskStateChange before acting, and stops containers of tasks the answer does not
//!   list.
//!
//! Errors are AWS error answers (`__type`, `message`); besides ECS's own codes the channel
//! has two of its own ([`errors`]), each with one meaning the agent acts on:
//! * a poll answered [`errors::INSTANCE_UNKNOWN`]: the server has no record of the instance,
//!   live or deregistered (an older database restored, or another server). The agent logs
//!   it, registers as a new instance and keeps every container it runs: nothing is stopped
//!   for want of knowledge. Only an instance that *was* deregistered is answered
//!   `instanceStatus: INACTIVE`, on which the agent stops everything and exits;
//! * a report answered [`errors::STALE_REPORT`]: the report's `(epoch, seq)` is older than
//!   what the server holds (a delayed retry, a replay, or a report of an earlier registration
//!   of the instance). It changed nothing; the agent drops it, never retries it, and polls
//!   again at once for the current state and epoch.
#![forbid(unsafe_code)]

use berth_model::lifecycle::{DesiredTaskStatus, InstanceStatus, TaskStatus};
use berth_wire::ecs::{TaskDefinition, TaskOverride};
use serde::{Deserialize, Serialize};

/// Path of the poll endpoint on the server.
pub const POLL_PATH: &str = "/berth/agent/v1/poll";

/// Ports ECS reserves on every container instance (SSH, Docker, the ECS agent's
/// introspection ports): what an instance registers as taken when it names none.
pub const RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];
/// Memory (MiB) an instance keeps back for the host and the agent, not offered to tasks.
pub const RESERVED_MEMORY_MIB: i64 = 256;

/// The resources an agent registers with (RegisterContainerInstance's `totalResources`):
/// CPU units, memory in MiB, the TCP ports taken ([`RESERVED_PORTS`] and `own_ports`), no
/// UDP ports. One shape for `berth agent` and the fleet simulator.
pub fn registered_resources(
    cpu: i64,
    memory_mib: i64,
    own_ports: &[u16],
) -> Vec<berth_wire::ecs::Resource> {
    use berth_wire::ecs::Resource;
    let int = |n: &str, v: i64| Resource {
        name: Some(n.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(i32::try_from(v).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    let set = |n: &str, v: Vec<String>| Resource {
        name: Some(n.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(v),
        ..Default::default()
    };
    vec![
        int("CPU", cpu),
        int("MEMORY", memory_mib),
        set("PORTS", RESERVED_PORTS.iter().chain(own_ports).map(u16::to_string).collect()),
        set("PORTS_UDP", vec![]),
    ]
}

/// Longest a server holds a poll, in seconds.
pub const MAX_WAIT_SECONDS: u32 = 60;

/// What an agent sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRequest {
    pub cluster: String,
    pub container_instance_arn: String,
    /// The `version` of the last answer the agent acted on (0 at start).
    pub seen_version: u64,
    /// How long the server may hold the request if nothing changed, in seconds (capped).
    pub wait_seconds: u32,
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollResponse {
    /// Revision at which this instance's desired state last changed.
    pub version: u64,
    /// ACTIVE, DRAINING, INACTIVE...: an INACTIVE (deregistered) instance must stop its tasks
    /// and stop polling.
    pub instance_status: InstanceStatus,
    /// Every task placed on the instance whose known status is not yet STOPPED.
    pub tasks: Vec<DesiredTask>,
    /// How often the agent should poll at the latest, in seconds.
    pub heartbeat_seconds: u32,
    /// The instance's registration epoch: bumped by every re-registration. The agent stamps it
    /// on its reports.
    #[serde(default)]
    pub epoch: u64,
    /// The rules of every security group an awsvpc task of `tasks` is in, group references
    /// resolved to member addresses. The agent enforces them on its running tasks and follows
    /// every change (an edited rule or a member coming or going bumps `version`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<berth_model::network::SecurityGroupRules>,
}

/// One task as the agent must run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredTask {
    pub task_arn: String,
    /// RUNNING or STOPPED.
    pub desired_status: DesiredTaskStatus,
    /// The server's last known status (what the agent last reported).
    pub last_status: TaskStatus,
    /// The full task definition revision the task runs.
    pub task_definition: TaskDefinition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<TaskOverride>,
    /// Why the task is to stop, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// Epoch seconds.
    pub created_at: f64,
    /// The task's own network interface when its network mode is `awsvpc` (allocated at
    /// placement): the agent gives the task its own network namespace with this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<berth_model::network::TaskNetwork>,
    /// FARGATE or EC2: a FARGATE task is sized by its task-level `cpu` and `memory`, which
    /// the agent enforces as one limit for the whole task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<berth_wire::ecs::LaunchType>,
    /// The resolvers the task's containers use unless their definition names `dnsServers`
    /// (Berth's DNS server, when containers can reach it: issue #17). Empty: Docker's default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
}

/// An empty answer for an `ACTIVE` instance at version 0 (the statuses have no `Default`).
impl Default for PollResponse {
    fn default() -> Self {
        Self {
            version: 0,
            instance_status: InstanceStatus::Active,
            tasks: Vec::new(),
            heartbeat_seconds: 0,
            epoch: 0,
            security_groups: Vec::new(),
        }
    }
}

/// A task as it is created: desired `RUNNING`, last `PENDING`, everything else empty.
impl Default for DesiredTask {
    fn default() -> Self {
        Self {
            task_arn: String::new(),
            desired_status: DesiredTaskStatus::Running,
            last_status: TaskStatus::Pending,
            task_definition: TaskDefinition::default(),
            overrides: None,
            stopped_reason: None,
            created_at: 0.0,
            network: None,
            launch_type: None,
            dns_servers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_camel_case_names() {
        let r = PollResponse {
            version: 7,
            instance_status: InstanceStatus::Active,
            tasks: vec![DesiredTask {
                task_arn: "arn:aws:ecs:us-east-1:123456789012:task/c/abc".into(),
                desired_status: DesiredTaskStatus::Running,
                last_status: TaskStatus::Pending,
                ..Default::default()
            }],
            heartbeat_seconds: 20,
            epoch: 3,
            security_groups: vec![],
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"instanceStatus\":\"ACTIVE\""), "{json}");
        assert!(json.contains("\"desiredStatus\":\"RUNNING\""), "{json}");
        assert!(json.contains("\"lastStatus\":\"PENDING\""), "{json}");
        assert_eq!(serde_json::from_str::<PollResponse>(&json).unwrap(), r);
    }
}

/// The agent channel's own error codes (the `__type` of an error answer).
pub mod errors {
    /// Poll: the server knows no container instance by this ARN, live or deregistered (HTTP
    /// 404). Not INACTIVE: the agent registers again and keeps its containers.
    pub const INSTANCE_UNKNOWN: &str = "ContainerInstanceUnknownException";
    /// Report: the report is older than the last one applied to the task, or comes from an
    /// earlier registration of the instance (HTTP 409). It changed nothing; the agent drops
    /// it and polls again.
    pub const STALE_REPORT: &str = "StaleReportException";
}

/// Path of the report endpoint: SubmitTaskStateChange with what the public shape lacks.
pub const REPORT_PATH: &str = "/berth/agent/v1/report";

/// A task state change as the agent reports it: ECS's own `SubmitTaskStateChange` request,
/// plus the few facts its public shape has no member for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReport {
    #[serde(flatten)]
    pub change: berth_wire::ecs::SubmitTaskStateChangeRequest,
    /// The reporting instance: a report from any other instance than the task's is refused.
    pub container_instance_arn: String,
    /// Health of containers that have a health check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_health: Vec<ContainerHealth>,
    /// Why the task stopped, when `change.status` is STOPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<berth_wire::ecs::TaskStopCode>,
    /// When the task's containers all ran (epoch seconds), with status RUNNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    /// The registration epoch of the agent that sent it (from [`PollResponse::epoch`]) and the
    /// agent's report sequence number, growing with every report of the agent process. On
    /// the report endpoint both are required (`epoch` >= 1, else `InvalidParameterException`):
    /// * an epoch newer than the instance's is refused (`ClientException`, naming both) and
    ///   changes nothing, so a forged or corrupt report cannot pin the mark;
    /// * an epoch older than the instance's, or an (epoch, seq) not newer than the last one
    ///   applied to the task, is stale: [`errors::STALE_REPORT`], and nothing changes.
    ///
    /// ECS's public SubmitTaskStateChange carries neither (0 here): it is not fenced, only
    /// held to the forward-only lifecycle.
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub seq: u64,
}

/// A container's health as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerHealth {
    pub container_name: String,
    pub health_status: berth_wire::ecs::HealthStatus,
}

// ---- Joining with a join token (issue #10) ----

/// Path of the join endpoint: unauthenticated, over TLS; exchanges a join token for the
/// instance's own access key.
pub const JOIN_PATH: &str = "/berth/agent/v1/join";

/// What a joining agent sends: the token and its RegisterContainerInstance request (the
/// server registers a new instance; any `containerInstanceArn` in it is ignored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub token: String,
    pub registration: berth_wire::ecs::RegisterContainerInstanceRequest,
    /// The region to join (the call is unsigned, so no credential scope names it); absent:
    /// the server's default region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Path of the `awslogs` log driver's shipments (issue #15): an agent sends the lines of its
/// tasks' containers to the log store, signed with its instance key, for a task placed on its
/// own instance only.
///
/// Exactly once across restarts: each shipment carries `cursor`, the agent's resume point
/// after its last line (Docker's timestamp of it), and the server stores it with the events in
/// one transaction; a shipment without events and without a cursor only makes sure the group
/// (with `createGroup`) and stream exist and answers the stored cursor, where the agent
/// resumes. A missing group without `createGroup` is `ResourceNotFoundException`, which fails
/// the container's start as ECS reports it. Only a shipment with `createStream` (the driver's
/// start) makes a missing stream: any other to a deleted stream (or group) is
/// `ResourceNotFoundException` and its events are not stored, as Docker's awslogs driver,
/// which makes its stream once, loses the lines PutLogEvents refuses.
pub const LOGS_PATH: &str = "/berth/agent/v1/logs";

/// One shipment to [`LOGS_PATH`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogShipment {
    pub container_instance_arn: String,
    pub cluster: String,
    pub task_arn: String,
    pub log_group: String,
    pub log_stream: String,
    #[serde(default)]
    pub create_group: bool,
    /// Make the stream if it is missing (see [`LOGS_PATH`]); absent: true (older agents).
    #[serde(default = "yes")]
    pub create_stream: bool,
    #[serde(default)]
    pub events: Vec<LogLine>,
    /// Where the agent resumes after these events (opaque to the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One line of a container's output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
}

fn yes() -> bool {
    true
}

/// The answer to a [`LogShipment`]: the cursor now stored for the stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogShipmentAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Path of the agent's resource usage samples (issue #15): every few seconds, the CPU and
/// memory each running task of the instance used, from the runtime's stats. The server turns
/// them into CloudWatch's `AWS/ECS` (and Container Insights) metrics; a lost report is a
/// missing datapoint, nothing more (no retry).
pub const STATS_PATH: &str = "/berth/agent/v1/stats";

/// One report to [`STATS_PATH`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    pub container_instance_arn: String,
    pub cluster: String,
    #[serde(default)]
    pub tasks: Vec<TaskUsage>,
}

/// One task's usage over the sampling interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskUsage {
    pub task_arn: String,
    /// When the sample was taken, milliseconds since the epoch.
    pub timestamp: i64,
    #[serde(default)]
    pub containers: Vec<ContainerUsage>,
}

/// One container's usage: CPU in ECS CPU units (1024 = one core busy through the interval),
/// memory in bytes (without the page cache, as `docker stats` shows it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUsage {
    pub name: String,
    pub cpu_units: f64,
    pub memory_bytes: u64,
}

/// Path of the server's unauthenticated description of itself (`GET`), which an agent started
/// without `--region` reads to join the server's default region.
pub const INFO_PATH: &str = "/berth/agent/v1/info";

/// What [`INFO_PATH`] answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// The server's default region (`berth server --region`); every region is served.
    pub default_region: String,
}

/// The server's answer: the registered instance and an access key bound to it (it may only
/// poll, report and re-register for that instance).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub registration: berth_wire::ecs::RegisterContainerInstanceResponse,
}

impl std::fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinResponse")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("registration", &self.registration)
            .finish()
    }
}

// ---- Task secrets (issue #16) ----

/// Path of the task secrets endpoint: an agent asks, for one task placed on its own instance,
/// for the values of its containers' `secrets` (Secrets Manager secrets, JSON keys of them,
/// SSM parameters) and `repositoryCredentials`, just before it creates the containers.
///
/// Contract: the server resolves what the task's own definition names (the agent sends no
/// `valueFrom`), checked against the task's execution role; the agent holds the values in
/// memory only, for the containers' environment and the image pull, and never writes them to
/// its data directory, logs, reports or the task metadata endpoint. A secret that cannot be
/// read is not an error of the call: the answer's `failure` holds ECS's reason
/// (`ResourceInitializationError: unable to pull secrets or registry auth: ...`) and the agent
/// stops the task with it (`TaskFailedToStart`).
pub const SECRETS_PATH: &str = "/berth/agent/v1/secrets";

/// What the agent asks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSecretsRequest {
    pub container_instance_arn: String,
    pub cluster: String,
    pub task_arn: String,
}

/// The resolved values, per container that has any.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSecretsResponse {
    #[serde(default)]
    pub containers: Vec<ContainerSecrets>,
    /// Why the task cannot get its secrets (ECS's stopped reason), when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// One container's secrets.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSecrets {
    pub container_name: String,
    /// Environment variables, by the names the definition's `secrets` give them.
    #[serde(default)]
    pub environment: Vec<(String, String)>,
    /// `repositoryCredentials`' user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_credentials: Option<(String, String)>,
}

impl std::fmt::Debug for TaskSecretsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSecretsResponse")
            .field("containers", &self.containers)
            .field("failure", &self.failure)
            .finish()
    }
}

impl std::fmt::Debug for ContainerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.environment.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ContainerSecrets")
            .field("container_name", &self.container_name)
            .field("environment", &names)
            .field(
                "registry_credentials",
                &self.registry_credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

// ---- Task role credentials (issue #16) ----

/// Path of the execution role's registry credentials endpoint (issue #14): an agent asks, for
/// one task placed on its own instance and not STOPPED that has an execution role
/// (`executionRoleArn`, or the RunTask override), for credentials to pull the task's images
/// from Berth's registry as that role.
///
/// Contract: the request is a [`TaskCredentialsRequest`] (the agent names only the task); the
/// server reads the role from the task's own definition and overrides, checks that it exists
/// and trusts `ecs-tasks.amazonaws.com`, and answers an ECR authorization token whose pulls
/// the registry decides with the role's policies and the repository policies, never the
/// instance's. The agent caches the token per role until shortly before `expires_at` and never
/// logs it.
pub const REGISTRY_CREDENTIALS_PATH: &str = "/berth/agent/v1/registry-credentials";

/// Registry credentials of a task's execution role, as GetAuthorizationToken answers them.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCredentialsResponse {
    pub role_arn: String,
    /// base64 of `AWS:<password>`.
    pub authorization_token: String,
    /// Epoch seconds.
    pub expires_at: f64,
    /// `http://HOST:PORT` of the registry.
    pub proxy_endpoint: String,
}

impl std::fmt::Debug for RegistryCredentialsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentialsResponse")
            .field("role_arn", &self.role_arn)
            .field("expires_at", &self.expires_at)
            .field("proxy_endpoint", &self.proxy_endpoint)
            .finish_non_exhaustive()
    }
}

/// Path of the task role credentials endpoint: an agent asks, for one task placed on its own
/// instance and not STOPPED, for temporary credentials of the task's role (`taskRoleArn`, or
/// the RunTask override), which it serves to that task's containers only.
///
/// Contract: the server reads the role from the task's own definition and overrides (the
/// agent names only the task), checks the role trusts `ecs-tasks.amazonaws.com`, and mints STS
/// session credentials for it with the task's id as the session name, so Berth sees the
/// task's calls as `arn:aws:sts::ACCOUNT:assumed-role/ROLE/TASK_ID`. The agent holds them in
/// memory only and asks again before `expiration`.
pub const CREDENTIALS_PATH: &str = "/berth/agent/v1/credentials";

/// What the agent asks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentialsRequest {
    pub container_instance_arn: String,
    pub cluster: String,
    pub task_arn: String,
}

/// Temporary credentials of a task's role.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentialsResponse {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Epoch seconds.
    pub expiration: f64,
}

impl std::fmt::Debug for TaskCredentialsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCredentialsResponse")
            .field("role_arn", &self.role_arn)
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}
