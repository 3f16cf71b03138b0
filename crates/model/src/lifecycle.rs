//! Task and container lifecycles: ordered status enums and the pure functions that decide which
//! moves between them are legal, in the style of amazon-ecs-agent's status types.
//!
//! Contracts every caller relies on:
//! * **Known status only moves forward.** [`TaskStatus`] and [`ContainerStatus`] are ordered
//!   (`derive(PartialOrd, Ord)` in declaration order) and `can_transition(from, to)` is exactly
//!   `from < to`: any forward jump is legal (an EC2 task may go `PENDING` → `RUNNING` without the
//!   intermediate states; anything may jump to `STOPPED`), nothing goes backwards and nothing
//!   leaves `STOPPED`. Reporting the same status again is a no-op, not a transition (`false`):
//!   callers treat a repeated report as idempotent and must not record a change for it.
//! * **Desired status only moves `RUNNING` → `STOPPED`** ([`DesiredTaskStatus::can_set_desired`]).
//!   A task that was asked to stop is never asked to run again; a new task is started instead.
//! * [`reconcile`] is total over (known, desired) and never asks an agent to move a task
//!   backwards: once a task is past `RUNNING` it can only finish stopping.
//! * [`task_health`] implements ECS's aggregation of container health into task health (see its
//!   docs for the rule and the source).
//!
//! * [`InstanceStatus`] is a container instance's `status`; it has no order.
//!
//! Statuses serialise as ECS spells them (`"PROVISIONING"`, `"RUNNING"`...); [`StopCode`]
//! serialises as the wire's `TaskStopCode` (`"EssentialContainerExited"`...).

use std::fmt;
use std::str::FromStr;

use berth_wire::ecs::{ContainerInstanceStatus, DesiredStatus, HealthStatus, TaskStopCode};
use serde::{Deserialize, Serialize};

/// A status string that names no value of the enum it was parsed as.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{value}'")]
pub struct UnknownStatus {
    /// What was being parsed, e.g. `task status`.
    pub kind: &'static str,
    /// The string that was given.
    pub value: String,
}

/// A task's known (last) status, as ECS reports it in `lastStatus`, in lifecycle order.
///
/// `Provisioning < Pending < Activating < Running < Deactivating < Stopping < Deprovisioning <
/// Stopped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// ECS is provisioning resources the task needs before placement completes (ENIs...).
    Provisioning,
    /// Placed; the agent has not started the containers yet (pulling, creating).
    Pending,
    /// Containers are up; ECS is finishing setup (load balancer registration...).
    Activating,
    /// The task is running.
    Running,
    /// ECS is undoing setup before stopping (load balancer deregistration...).
    Deactivating,
    /// Containers are being stopped.
    Stopping,
    /// Resources attached to the task are being released.
    Deprovisioning,
    /// Terminal.
    Stopped,
}

impl TaskStatus {
    /// Every status in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Provisioning,
        Self::Pending,
        Self::Activating,
        Self::Running,
        Self::Deactivating,
        Self::Stopping,
        Self::Deprovisioning,
        Self::Stopped,
    ];

    /// As ECS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Activating => "ACTIVATING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Deprovisioning => "DEPROVISIONING",
            Self::Stopped => "STOPPED",
        }
    }

    /// Whether a known status may move from `self` to `to`: strictly forward only. The same
    /// status is a no-op (`false`); every status before `Stopped` may jump straight to it;
    /// nothing leaves `Stopped`.
    pub fn can_transition(self, to: Self) -> bool {
        to > self
    }

    /// `Stopped`, the only status with no way out.
    pub fn is_terminal(self) -> bool {
        self == Self::Stopped
    }

    /// The status whose [`as_str`](Self::as_str) bytes are `v` (the value of a status index
    /// entry), without allocating; `None` for any other bytes.
    pub fn from_bytes(v: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str().as_bytes() == v)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownStatus { kind: "task status", value: s.to_string() })
    }
}

/// The status the API wants a task in. ECS only ever sets `RUNNING` or `STOPPED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredTaskStatus {
    Running,
    Stopped,
}

impl DesiredTaskStatus {
    /// As ECS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
        }
    }

    /// Whether the desired status may be set from `self` to `to`: only `Running` → `Stopped`.
    /// Setting the same value again is a no-op (`false`), as with known status.
    pub fn can_set_desired(self, to: Self) -> bool {
        self == Self::Running && to == Self::Stopped
    }

    /// The wire value's domain meaning. The wire enum also has `PENDING`, which ECS accepts as
    /// a `ListTasks` filter but never sets ("Although you can filter results based on a desired
    /// status of PENDING, this doesn't return any results", botocore's `ListTasksRequest`
    /// documentation): `None` here, a filter that matches no task.
    pub fn from_wire(w: DesiredStatus) -> Option<Self> {
        match w {
            DesiredStatus::Running => Some(Self::Running),
            DesiredStatus::Stopped => Some(Self::Stopped),
            DesiredStatus::Pending => None,
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> DesiredStatus {
        match self {
            Self::Running => DesiredStatus::Running,
            Self::Stopped => DesiredStatus::Stopped,
        }
    }
}

impl fmt::Display for DesiredTaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DesiredTaskStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RUNNING" => Ok(Self::Running),
            "STOPPED" => Ok(Self::Stopped),
            _ => Err(UnknownStatus { kind: "desired task status", value: s.to_string() }),
        }
    }
}

/// A container instance's status, as ECS reports it in `status`. Unordered: an instance may
/// go `ACTIVE` ⇄ `DRAINING` any number of times; `INACTIVE` (deregistered) is where it ends.
///
/// The wire's `ContainerInstanceStatus` (the `ListContainerInstances` filter and
/// `UpdateContainerInstancesState` values) has every value but `INACTIVE`, which ECS reports
/// but never accepts as input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Accepts new tasks.
    Active,
    /// Accepts no new tasks; service tasks are moved elsewhere.
    Draining,
    /// Being registered (ECS: while capacity-provider resources attach).
    Registering,
    /// Being deregistered.
    Deregistering,
    /// Registration failed.
    RegistrationFailed,
    /// Deregistered: still describable, never used again.
    Inactive,
}

impl InstanceStatus {
    /// Every status.
    pub const ALL: [Self; 6] = [
        Self::Active,
        Self::Draining,
        Self::Registering,
        Self::Deregistering,
        Self::RegistrationFailed,
        Self::Inactive,
    ];

    /// As ECS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Registering => "REGISTERING",
            Self::Deregistering => "DEREGISTERING",
            Self::RegistrationFailed => "REGISTRATION_FAILED",
            Self::Inactive => "INACTIVE",
        }
    }

    /// The domain value of a wire value (every wire value has one).
    pub fn from_wire(w: ContainerInstanceStatus) -> Self {
        match w {
            ContainerInstanceStatus::Active => Self::Active,
            ContainerInstanceStatus::Draining => Self::Draining,
            ContainerInstanceStatus::Registering => Self::Registering,
            ContainerInstanceStatus::Deregistering => Self::Deregistering,
            ContainerInstanceStatus::RegistrationFailed => Self::RegistrationFailed,
        }
    }

    /// The wire value; `None` for `Inactive`, which the wire enum lacks.
    pub fn to_wire(self) -> Option<ContainerInstanceStatus> {
        match self {
            Self::Active => Some(ContainerInstanceStatus::Active),
            Self::Draining => Some(ContainerInstanceStatus::Draining),
            Self::Registering => Some(ContainerInstanceStatus::Registering),
            Self::Deregistering => Some(ContainerInstanceStatus::Deregistering),
            Self::RegistrationFailed => Some(ContainerInstanceStatus::RegistrationFailed),
            Self::Inactive => None,
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstanceStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| UnknownStatus {
            kind: "container instance status",
            value: s.to_string(),
        })
    }
}

/// What an agent's per-task actor should do next, given the task's known and desired status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskAction {
    /// Drive the containers towards running (pull, create, start in `dependsOn` order).
    StartContainers,
    /// Known matches desired: keep watching.
    Nothing,
    /// Stop whatever containers exist (idempotent: none is fine), then report `STOPPED`.
    StopContainers,
    /// The task is `STOPPED`: nothing will ever happen to it again; the actor may exit.
    Done,
}

/// The next step for a task whose known status is `known` and desired status `desired`.
///
/// | known \ desired                         | RUNNING           | STOPPED          |
/// |-----------------------------------------|-------------------|------------------|
/// | PROVISIONING, PENDING, ACTIVATING       | StartContainers   | StopContainers   |
/// | RUNNING                                 | Nothing           | StopContainers   |
/// | DEACTIVATING, STOPPING, DEPROVISIONING  | StopContainers    | StopContainers   |
/// | STOPPED                                 | Done              | Done             |
///
/// A task past `RUNNING` keeps stopping even while desired `RUNNING` (an essential container
/// exited, say): known status never moves back, so running it again means a new task.
pub fn reconcile(known: TaskStatus, desired: DesiredTaskStatus) -> TaskAction {
    use TaskStatus as K;
    match (known, desired) {
        (K::Stopped, _) => TaskAction::Done,
        (K::Deactivating | K::Stopping | K::Deprovisioning, _) => TaskAction::StopContainers,
        (_, DesiredTaskStatus::Stopped) => TaskAction::StopContainers,
        (K::Running, DesiredTaskStatus::Running) => TaskAction::Nothing,
        (K::Provisioning | K::Pending | K::Activating, DesiredTaskStatus::Running) => {
            TaskAction::StartContainers
        }
    }
}

/// A container's status as the agent tracks it internally (finer than ECS's `lastStatus`),
/// in lifecycle order: `None < Pulled < Created < Running < Stopped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatus {
    /// Nothing done yet.
    None,
    /// The image is present on the host.
    Pulled,
    /// The runtime created the container.
    Created,
    /// The container is running.
    Running,
    /// Terminal: exited, killed, or failed before it ran.
    Stopped,
}

impl ContainerStatus {
    /// Every status in lifecycle order.
    pub const ALL: [Self; 5] =
        [Self::None, Self::Pulled, Self::Created, Self::Running, Self::Stopped];

    /// The agent's own name for the status (what serde writes).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Pulled => "PULLED",
            Self::Created => "CREATED",
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
        }
    }

    /// The container's `lastStatus` as ECS reports it: `PENDING` until it runs.
    pub fn external(self) -> &'static str {
        match self {
            Self::None | Self::Pulled | Self::Created => "PENDING",
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
        }
    }

    /// Whether a known status may move from `self` to `to`: strictly forward only, exactly as
    /// [`TaskStatus::can_transition`] (a runtime event may reveal a later state, e.g. a
    /// container found running after an agent restart; any status may jump to `Stopped`).
    pub fn can_transition(self, to: Self) -> bool {
        to > self
    }

    /// The next status the agent drives a container towards when it should run: `None` →
    /// `Pulled` → `Created` → `Running`; `None` once running or stopped.
    pub fn next_towards_running(self) -> Option<Self> {
        match self {
            Self::None => Some(Self::Pulled),
            Self::Pulled => Some(Self::Created),
            Self::Created => Some(Self::Running),
            Self::Running | Self::Stopped => None,
        }
    }
}

impl fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task stopped: the domain side of the wire's `TaskStopCode`, one to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StopCode {
    /// The task never reached `RUNNING` (image pull, container create or start failed...).
    TaskFailedToStart,
    /// An essential container exited, so ECS stopped the task.
    EssentialContainerExited,
    /// `StopTask` (or the console) stopped it.
    UserInitiated,
    /// The service scheduler stopped it (scale in, deployment, unhealthy replacement,
    /// draining).
    ServiceSchedulerInitiated,
    /// A Spot instance or Fargate Spot capacity was reclaimed.
    SpotInterruption,
    /// The host is going away (termination notice).
    TerminationNotice,
}

impl StopCode {
    /// As the wire spells it.
    pub fn as_str(self) -> &'static str {
        self.to_wire().as_str()
    }

    /// The wire value.
    pub fn to_wire(self) -> TaskStopCode {
        match self {
            Self::TaskFailedToStart => TaskStopCode::TaskFailedToStart,
            Self::EssentialContainerExited => TaskStopCode::EssentialContainerExited,
            Self::UserInitiated => TaskStopCode::UserInitiated,
            Self::ServiceSchedulerInitiated => TaskStopCode::ServiceSchedulerInitiated,
            Self::SpotInterruption => TaskStopCode::SpotInterruption,
            Self::TerminationNotice => TaskStopCode::TerminationNotice,
        }
    }

    /// The domain value of a wire value.
    pub fn from_wire(w: TaskStopCode) -> Self {
        match w {
            TaskStopCode::TaskFailedToStart => Self::TaskFailedToStart,
            TaskStopCode::EssentialContainerExited => Self::EssentialContainerExited,
            TaskStopCode::UserInitiated => Self::UserInitiated,
            TaskStopCode::ServiceSchedulerInitiated => Self::ServiceSchedulerInitiated,
            TaskStopCode::SpotInterruption => Self::SpotInterruption,
            TaskStopCode::TerminationNotice => Self::TerminationNotice,
        }
    }
}

impl From<StopCode> for TaskStopCode {
    fn from(c: StopCode) -> Self {
        c.to_wire()
    }
}

impl From<TaskStopCode> for StopCode {
    fn from(w: TaskStopCode) -> Self {
        Self::from_wire(w)
    }
}

impl fmt::Display for StopCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`task_health`] needs to know about one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContainerHealth {
    /// `essential` from the container definition (default true).
    pub essential: bool,
    /// Whether the container definition has a `healthCheck` (ECS ignores image HEALTHCHECKs).
    pub has_health_check: bool,
    /// The container's last reported health; `Unknown` while starting or unreported.
    pub status: HealthStatus,
}

/// A task's `healthStatus` from its containers', as ECS aggregates it.
///
/// The rule (botocore's `HealthCheck` documentation, ECS API 2014-11-13, and the developer
/// guide's "Determine Amazon ECS task health using container health checks"): the task's health
/// is determined by its *essential* containers' health checks, in priority order
/// 1. `UNHEALTHY` if any essential container with a health check is `UNHEALTHY`;
/// 2. else `UNKNOWN` if any essential container with a health check is `UNKNOWN` (still being
///    evaluated, or not yet reported);
/// 3. else `HEALTHY`: every essential container with a health check passed.
///
/// Containers without a `healthCheck` are not monitored by ECS and do not vote (they always
/// report `UNKNOWN`, which would otherwise pin every mixed task at `UNKNOWN`). When no essential
/// container has a health check the task is `UNKNOWN`, whatever non-essential containers report
/// (older revisions of the same documentation: "UNKNOWN - ... there are only nonessential
/// containers with health checks defined", "... or there are no container health checks
/// defined").
pub fn task_health<'a>(containers: impl IntoIterator<Item = &'a ContainerHealth>) -> HealthStatus {
    let mut any_checked = false;
    let mut any_unknown = false;
    for c in containers.into_iter().filter(|c| c.essential && c.has_health_check) {
        any_checked = true;
        match c.status {
            HealthStatus::Unhealthy => return HealthStatus::Unhealthy,
            HealthStatus::Unknown => any_unknown = true,
            HealthStatus::Healthy => {}
        }
    }
    if !any_checked || any_unknown { HealthStatus::Unknown } else { HealthStatus::Healthy }
}

#[cfg(test)]
mod tests {
    use super::*;

    use TaskStatus::{
        Activating as Act, Deactivating as Deact, Deprovisioning as Deprov, Pending as Pend,
        Provisioning as Prov, Running as Run, Stopped as Stop, Stopping as Stopg,
    };

    #[test]
    fn task_status_transitions_every_pair() {
        // Row = from, column = to, in lifecycle order; 1 = legal.
        #[rustfmt::skip]
        let table: [(TaskStatus, [u8; 8]); 8] = [
            //            Prov Pend Act Run Deact Stopg Deprov Stop
            (Prov,   [0,   1,   1,  1,  1,    1,    1,     1]),
            (Pend,   [0,   0,   1,  1,  1,    1,    1,     1]),
            (Act,    [0,   0,   0,  1,  1,    1,    1,     1]),
            (Run,    [0,   0,   0,  0,  1,    1,    1,     1]),
            (Deact,  [0,   0,   0,  0,  0,    1,    1,     1]),
            (Stopg,  [0,   0,   0,  0,  0,    0,    1,     1]),
            (Deprov, [0,   0,   0,  0,  0,    0,    0,     1]),
            (Stop,   [0,   0,   0,  0,  0,    0,    0,     0]),
        ];
        let cols = [Prov, Pend, Act, Run, Deact, Stopg, Deprov, Stop];
        for (from, row) in table {
            for (to, want) in cols.into_iter().zip(row) {
                assert_eq!(from.can_transition(to), want == 1, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn task_status_order_names_and_parse() {
        assert_eq!(TaskStatus::ALL, [Prov, Pend, Act, Run, Deact, Stopg, Deprov, Stop]);
        assert!(TaskStatus::ALL.windows(2).all(|w| w[0] < w[1]));
        let names = [
            "PROVISIONING",
            "PENDING",
            "ACTIVATING",
            "RUNNING",
            "DEACTIVATING",
            "STOPPING",
            "DEPROVISIONING",
            "STOPPED",
        ];
        for (s, name) in TaskStatus::ALL.into_iter().zip(names) {
            assert_eq!(s.as_str(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(name.parse::<TaskStatus>(), Ok(s));
            assert_eq!(TaskStatus::from_bytes(name.as_bytes()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<TaskStatus>(&format!("\"{name}\"")).unwrap(), s);
            assert_eq!(s.is_terminal(), s == Stop);
        }
        assert_eq!(TaskStatus::from_bytes(b"running"), None);
        assert_eq!(TaskStatus::from_bytes(b""), None);
        assert_eq!(
            "running".parse::<TaskStatus>(),
            Err(UnknownStatus { kind: "task status", value: "running".into() })
        );
        assert_eq!(
            "DELETED".parse::<TaskStatus>().unwrap_err().to_string(),
            "unknown task status 'DELETED'"
        );
    }

    #[test]
    fn desired_status_only_running_to_stopped() {
        use DesiredTaskStatus::{Running as R, Stopped as S};
        let cases = [(R, R, false), (R, S, true), (S, R, false), (S, S, false)];
        for (from, to, want) in cases {
            assert_eq!(from.can_set_desired(to), want, "{from} -> {to}");
        }
        assert!(R < S);
    }

    #[test]
    fn desired_status_wire_mapping() {
        use DesiredTaskStatus::{Running as R, Stopped as S};
        let cases = [
            (DesiredStatus::Running, Some(R)),
            (DesiredStatus::Stopped, Some(S)),
            (DesiredStatus::Pending, None),
        ];
        for (wire, want) in cases {
            assert_eq!(DesiredTaskStatus::from_wire(wire), want, "{wire:?}");
        }
        for d in [R, S] {
            assert_eq!(DesiredTaskStatus::from_wire(d.to_wire()), Some(d));
            assert_eq!(d.as_str(), d.to_wire().as_str());
            assert_eq!(d.as_str().parse::<DesiredTaskStatus>(), Ok(d));
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d.as_str()));
        }
        assert!("PENDING".parse::<DesiredTaskStatus>().is_err());
    }

    #[test]
    fn instance_status_names_parse_and_wire() {
        use InstanceStatus::*;
        let cases = [
            (Active, "ACTIVE", Some(ContainerInstanceStatus::Active)),
            (Draining, "DRAINING", Some(ContainerInstanceStatus::Draining)),
            (Registering, "REGISTERING", Some(ContainerInstanceStatus::Registering)),
            (Deregistering, "DEREGISTERING", Some(ContainerInstanceStatus::Deregistering)),
            (
                RegistrationFailed,
                "REGISTRATION_FAILED",
                Some(ContainerInstanceStatus::RegistrationFailed),
            ),
            (Inactive, "INACTIVE", None),
        ];
        assert_eq!(cases.map(|c| c.0), InstanceStatus::ALL, "every status listed");
        for (s, name, wire) in cases {
            assert_eq!(s.as_str(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(name.parse::<InstanceStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<InstanceStatus>(&format!("\"{name}\"")).unwrap(), s);
            assert_eq!(s.to_wire(), wire);
            if let Some(w) = wire {
                assert_eq!(InstanceStatus::from_wire(w), s);
                assert_eq!(w.as_str(), name);
            }
        }
        assert_eq!(ContainerInstanceStatus::VALUES.len(), 5, "every wire value covered");
        assert_eq!(
            "active".parse::<InstanceStatus>().unwrap_err().to_string(),
            "unknown container instance status 'active'"
        );
    }

    #[test]
    fn reconcile_every_pair() {
        use DesiredTaskStatus::{Running as R, Stopped as S};
        use TaskAction::{Done, Nothing, StartContainers as Start, StopContainers as StopC};
        let cases = [
            (Prov, R, Start),
            (Pend, R, Start),
            (Act, R, Start),
            (Run, R, Nothing),
            (Deact, R, StopC),
            (Stopg, R, StopC),
            (Deprov, R, StopC),
            (Stop, R, Done),
            (Prov, S, StopC),
            (Pend, S, StopC),
            (Act, S, StopC),
            (Run, S, StopC),
            (Deact, S, StopC),
            (Stopg, S, StopC),
            (Deprov, S, StopC),
            (Stop, S, Done),
        ];
        assert_eq!(cases.len(), TaskStatus::ALL.len() * 2, "every pair listed");
        for (known, desired, want) in cases {
            assert_eq!(reconcile(known, desired), want, "{known} / {desired}");
        }
    }

    #[test]
    fn container_status_transitions_every_pair() {
        use ContainerStatus::{Created as C, None as N, Pulled as P, Running as R, Stopped as S};
        #[rustfmt::skip]
        let table: [(ContainerStatus, [u8; 5]); 5] = [
            //     N  P  C  R  S
            (N, [0, 1, 1, 1, 1]),
            (P, [0, 0, 1, 1, 1]),
            (C, [0, 0, 0, 1, 1]),
            (R, [0, 0, 0, 0, 1]),
            (S, [0, 0, 0, 0, 0]),
        ];
        for (from, row) in table {
            for (to, want) in ContainerStatus::ALL.into_iter().zip(row) {
                assert_eq!(from.can_transition(to), want == 1, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn container_status_external_and_next() {
        use ContainerStatus::{Created as C, None as N, Pulled as P, Running as R, Stopped as S};
        let cases = [
            (N, "NONE", "PENDING", Some(P)),
            (P, "PULLED", "PENDING", Some(C)),
            (C, "CREATED", "PENDING", Some(R)),
            (R, "RUNNING", "RUNNING", None),
            (S, "STOPPED", "STOPPED", None),
        ];
        for (s, name, external, next) in cases {
            assert_eq!(s.as_str(), name);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
            assert_eq!(s.external(), external, "{s}");
            assert_eq!(s.next_towards_running(), next, "{s}");
            if let Some(n) = next {
                assert!(s.can_transition(n));
            }
        }
    }

    #[test]
    fn stop_codes_map_to_the_wire_one_to_one() {
        use StopCode::*;
        let cases = [
            (TaskFailedToStart, TaskStopCode::TaskFailedToStart),
            (EssentialContainerExited, TaskStopCode::EssentialContainerExited),
            (UserInitiated, TaskStopCode::UserInitiated),
            (ServiceSchedulerInitiated, TaskStopCode::ServiceSchedulerInitiated),
            (SpotInterruption, TaskStopCode::SpotInterruption),
            (TerminationNotice, TaskStopCode::TerminationNotice),
        ];
        assert_eq!(cases.len(), TaskStopCode::VALUES.len(), "every wire value covered");
        for (code, wire) in cases {
            assert_eq!(code.to_wire(), wire);
            assert_eq!(TaskStopCode::from(code), wire);
            assert_eq!(StopCode::from(wire), code);
            assert_eq!(code.as_str(), wire.as_str());
            assert_eq!(code.to_string(), wire.as_str());
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::to_value(wire).unwrap());
        }
    }

    #[test]
    fn task_health_aggregation() {
        use HealthStatus::{Healthy as H, Unhealthy as U, Unknown as K};
        // (essential, has_health_check, status)
        let c = |essential, has_health_check, status| ContainerHealth {
            essential,
            has_health_check,
            status,
        };
        let cases: &[(&str, Vec<ContainerHealth>, HealthStatus)] = &[
            ("no containers", vec![], K),
            ("no health checks at all", vec![c(true, false, K), c(true, false, K)], K),
            ("only a non-essential check", vec![c(true, false, K), c(false, true, H)], K),
            ("one essential healthy", vec![c(true, true, H)], H),
            ("one essential unknown (starting)", vec![c(true, true, K)], K),
            ("one essential unhealthy", vec![c(true, true, U)], U),
            // The documented two-container examples.
            ("UNHEALTHY + UNKNOWN", vec![c(true, true, U), c(true, true, K)], U),
            ("UNHEALTHY + HEALTHY", vec![c(true, true, U), c(true, true, H)], U),
            ("HEALTHY + UNKNOWN", vec![c(true, true, H), c(true, true, K)], K),
            ("HEALTHY + HEALTHY", vec![c(true, true, H), c(true, true, H)], H),
            // The documented three-container examples.
            ("U K K", vec![c(true, true, U), c(true, true, K), c(true, true, K)], U),
            ("U K H", vec![c(true, true, U), c(true, true, K), c(true, true, H)], U),
            ("U H H", vec![c(true, true, U), c(true, true, H), c(true, true, H)], U),
            ("H K H", vec![c(true, true, H), c(true, true, K), c(true, true, H)], K),
            ("H K K", vec![c(true, true, H), c(true, true, K), c(true, true, K)], K),
            ("H H H", vec![c(true, true, H), c(true, true, H), c(true, true, H)], H),
            // Non-essential containers never vote.
            ("non-essential unhealthy ignored", vec![c(true, true, H), c(false, true, U)], H),
            ("non-essential unknown ignored", vec![c(true, true, H), c(false, true, K)], H),
            // Essential containers without a health check do not vote.
            ("unchecked essential ignored", vec![c(true, true, H), c(true, false, K)], H),
            ("unchecked essential, unhealthy", vec![c(true, false, K), c(true, true, U)], U),
        ];
        for (name, containers, want) in cases {
            assert_eq!(task_health(containers), *want, "{name}");
        }
    }
}
