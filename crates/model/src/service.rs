//! Services as the store keeps them: the service's configuration (the wire `Service` shape,
//! without what is derived), its deployments and its events.
//!
//! Invariants:
//! * `deployments` is newest first; `deployments[0]` is the PRIMARY one (the task definition
//!   the service converges to), every other one is ACTIVE (old tasks still draining). A
//!   deployment becomes INACTIVE when it has no task left and moves to `past_deployments`.
//! * One writer: the API writes configuration (CreateService, UpdateService, DeleteService)
//!   and adds deployments; the service controller writes counts, rollout states, events and
//!   retires deployments. Both go through compare-and-set on the record.
//! * A service's tasks carry `group = service:NAME` and `startedBy = <deployment id>`, and an
//!   index key ([`crate::keys::service_task`]) from placement until the controller has
//!   accounted for their STOPPED state.

use berth_wire::ecs::{
    Deployment, DeploymentRolloutState, LaunchType, LoadBalancer, Service, ServiceEvent,
};
use serde::{Deserialize, Serialize};

/// Events kept per service (ECS shows the last 100).
pub const MAX_EVENTS: usize = 100;
/// Ended deployments kept per service for ListServiceDeployments.
pub const MAX_PAST_DEPLOYMENTS: usize = 50;

/// `ecs/services/<cluster>/<name>` (ACTIVE, DRAINING) or
/// `ecs/services-inactive/<cluster>/<name>` (deleted, still describable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    pub name: String,
    pub cluster: String,
    /// The service as DescribeServices shows it, minus `deployments`, `events`, the counts
    /// and `tags` (rendered from the fields below at read time).
    pub service: Service,
    /// The settings the controller works from, defaults filled in.
    pub settings: crate::service_rules::ServiceSettings,
    /// Newest first; `[0]` is PRIMARY.
    pub deployments: Vec<DeploymentRecord>,
    /// Ended deployments, newest first, at most [`MAX_PAST_DEPLOYMENTS`].
    #[serde(default)]
    pub past_deployments: Vec<DeploymentRecord>,
    /// Newest first, at most [`MAX_EVENTS`].
    #[serde(default)]
    pub events: Vec<ServiceEvent>,
    #[serde(default)]
    pub tags: Vec<berth_wire::ecs::Tag>,
    /// The CreateService client token, for idempotency.
    #[serde(default)]
    pub client_token: Option<String>,
    /// When "has reached a steady state" was last announced (epoch seconds); cleared when the
    /// service leaves its steady state.
    #[serde(default)]
    pub steady_since: Option<f64>,
    /// Counter behind event ids.
    #[serde(default)]
    pub event_seq: u64,
    /// Bumped on every write.
    pub version: u64,
    /// `EXTERNAL` deployment controller: the service's task sets, in creation order (see
    /// [`crate::task_set`]); always empty for other services, which use `deployments`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_sets: Vec<crate::task_set::TaskSetRecord>,
}

impl ServiceRecord {
    /// The `loadBalancers` the tasks of deployment `d` register with: its own when
    /// UpdateService changed the service's since it started, else the service's.
    pub fn load_balancers_of<'a>(&'a self, d: &'a DeploymentRecord) -> &'a [LoadBalancer] {
        d.load_balancers.as_deref().or(self.service.load_balancers.as_deref()).unwrap_or(&[])
    }

    /// Whether a task of any deployment registers with a load balancer.
    pub fn behind_load_balancers(&self) -> bool {
        self.deployments
            .iter()
            .chain(&self.past_deployments)
            .any(|d| !self.load_balancers_of(d).is_empty())
            || self.service.load_balancers.as_ref().is_some_and(|l| !l.is_empty())
    }

    /// The service uses the `EXTERNAL` deployment controller (task sets, not deployments).
    pub fn is_external(&self) -> bool {
        self.service.deployment_controller.as_ref().and_then(|c| c.r#type)
            == Some(berth_wire::ecs::DeploymentControllerType::External)
    }
}

/// The value of a [`crate::keys::service_task`] index entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTaskIndex {
    /// The deployment the task belongs to.
    pub deployment: String,
    /// The controller has seen it healthy (so its stopping is no deployment failure).
    #[serde(default)]
    pub healthy: bool,
}

/// One deployment: a task definition the service runs tasks of, with its progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    /// `ecs-svc/<19 digits>`; also the `startedBy` of its tasks.
    pub id: String,
    pub task_definition: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: String,
    pub rollout_state: DeploymentRolloutState,
    pub rollout_state_reason: String,
    pub launch_type: Option<LaunchType>,
    /// Tasks this deployment should run now (the service's desired count for PRIMARY, 0 for
    /// the others).
    pub desired_count: i32,
    pub pending_count: i32,
    pub running_count: i32,
    /// Tasks that stopped before becoming healthy (the circuit breaker's count).
    pub failed_tasks: i32,
    /// Epoch seconds.
    pub created_at: f64,
    pub updated_at: f64,
    /// When it reached COMPLETED, FAILED or was superseded (epoch seconds).
    #[serde(default)]
    pub finished_at: Option<f64>,
    /// Tasks that stopped in a row before becoming healthy; reset by a healthy task. Drives
    /// the launch delay.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// No task of this deployment is launched before this time (epoch seconds).
    #[serde(default)]
    pub next_launch_at: f64,
    /// For a rollback: the deployment it rolled back from.
    #[serde(default)]
    pub rollback_from: Option<String>,
    /// Whether the deployment ever reached COMPLETED (rollbacks go to the newest such one).
    #[serde(default)]
    pub completed: bool,
    /// The capacity provider strategy its tasks are split by, as DescribeServices shows it
    /// (every `base` and `weight` filled in); empty for a deployment with a launch type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<berth_wire::ecs::CapacityProviderStrategyItem>,
    /// The Service Connect configuration its tasks run with (issue #17), as DescribeServices
    /// shows it (namespace as its ARN, defaults filled in); `None`: Service Connect is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect: Option<berth_wire::ecs::ServiceConnectConfiguration>,
    /// The Cloud Map services its Service Connect services publish (`discoveryName` and the
    /// Cloud Map service ARN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_connect_resources: Vec<berth_wire::ecs::ServiceConnectServiceResource>,
    /// A service behind load balancers with `advancedConfiguration`: which target groups its
    /// tasks register in and, for a traffic-shifting deployment, its progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::service_shift::TrafficShiftRecord>,
    /// The `loadBalancers` its tasks register with, kept when UpdateService changes the
    /// service's (every deployment then holds its own); `None`: the service's current ones
    /// ([`ServiceRecord::load_balancers_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancers: Option<Vec<berth_wire::ecs::LoadBalancer>>,
}

impl DeploymentRecord {
    /// A new deployment of `task_definition`, IN_PROGRESS.
    pub fn new(
        id: String,
        task_definition: String,
        launch_type: Option<LaunchType>,
        desired_count: i32,
        now: f64,
    ) -> Self {
        Self {
            id,
            task_definition,
            status: "PRIMARY".into(),
            rollout_state: DeploymentRolloutState::InProgress,
            rollout_state_reason: "ECS deployment ecs-svc in progress.".into(),
            launch_type,
            desired_count,
            pending_count: 0,
            running_count: 0,
            failed_tasks: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
            consecutive_failures: 0,
            next_launch_at: 0.0,
            rollback_from: None,
            completed: false,
            capacity_provider_strategy: Vec::new(),
            service_connect: None,
            service_connect_resources: Vec::new(),
            traffic: None,
            load_balancers: None,
        }
    }

    /// The same, with its traffic record (`crate::service_shift::new_record`).
    pub fn with_traffic(
        mut self,
        traffic: Option<crate::service_shift::TrafficShiftRecord>,
    ) -> Self {
        self.traffic = traffic;
        self
    }

    /// The same, with Service Connect's configuration and resources (issue #17).
    pub fn with_service_connect(
        mut self,
        config: Option<berth_wire::ecs::ServiceConnectConfiguration>,
        resources: Vec<berth_wire::ecs::ServiceConnectServiceResource>,
    ) -> Self {
        self.service_connect = config;
        self.service_connect_resources = resources;
        self
    }

    /// The same, split by `strategy` (empty: by launch type).
    pub fn with_strategy(
        mut self,
        strategy: Vec<berth_wire::ecs::CapacityProviderStrategyItem>,
    ) -> Self {
        self.capacity_provider_strategy = strategy;
        self
    }

    /// The wire shape.
    pub fn to_wire(&self) -> Deployment {
        Deployment {
            id: Some(self.id.clone()),
            status: Some(self.status.clone()),
            task_definition: Some(self.task_definition.clone()),
            desired_count: Some(self.desired_count),
            pending_count: Some(self.pending_count),
            running_count: Some(self.running_count),
            failed_tasks: Some(self.failed_tasks),
            created_at: Some(self.created_at),
            updated_at: Some(self.updated_at),
            launch_type: self.launch_type,
            capacity_provider_strategy: (!self.capacity_provider_strategy.is_empty())
                .then(|| self.capacity_provider_strategy.clone()),
            rollout_state: Some(self.rollout_state),
            rollout_state_reason: Some(self.rollout_state_reason.clone()),
            service_connect_configuration: self.service_connect.clone(),
            service_connect_resources: (!self.service_connect_resources.is_empty())
                .then(|| self.service_connect_resources.clone()),
            ..Default::default()
        }
    }
}

/// Rolls a service back from its PRIMARY deployment (`deployments[0]`) to its last COMPLETED
/// one: a COMPLETED deployment that is still ACTIVE becomes PRIMARY again and keeps its tasks;
/// otherwise a new deployment of the newest COMPLETED ended one's task definition starts. The
/// rolled-back deployment stays, ACTIVE, at `[1]`. `reason(target id)` is the new PRIMARY's
/// rollout reason. Returns the target's id and task definition, or `None` (nothing changed)
/// when the service never completed a deployment. Used by the circuit breaker and by
/// StopServiceDeployment.
pub fn roll_back(
    deployments: &mut Vec<DeploymentRecord>,
    past: &[DeploymentRecord],
    desired: i32,
    now: f64,
    reason: impl Fn(&str) -> String,
) -> Option<(String, String)> {
    let from = deployments.first()?.id.clone();
    let (target, mut back) =
        if let Some(i) = (1..deployments.len()).find(|&i| deployments[i].completed) {
            let mut back = deployments.remove(i);
            back.status = "PRIMARY".into();
            back.rollout_state = DeploymentRolloutState::InProgress;
            back.desired_count = desired;
            back.finished_at = None;
            back.updated_at = now;
            (back.id.clone(), back)
        } else {
            let t = past.iter().find(|d| d.completed)?;
            let back = DeploymentRecord::new(
                new_deployment_id(),
                t.task_definition.clone(),
                t.launch_type,
                desired,
                now,
            )
            .with_strategy(t.capacity_provider_strategy.clone())
            .with_service_connect(t.service_connect.clone(), t.service_connect_resources.clone());
            let back = DeploymentRecord { load_balancers: t.load_balancers.clone(), ..back };
            (t.id.clone(), back)
        };
    back.rollout_state_reason = reason(&target);
    back.rollback_from = Some(from);
    let task_definition = back.task_definition.clone();
    deployments[0].status = "ACTIVE".into();
    deployments.insert(0, back);
    Some((target, task_definition))
}

/// A new deployment id, `ecs-svc/` and 19 digits, as ECS spells them.
pub fn new_deployment_id() -> String {
    let n = uuid::Uuid::new_v4().as_u64_pair().0 % 9_000_000_000_000_000_000
        + 1_000_000_000_000_000_000;
    format!("ecs-svc/{n}")
}

/// The task group of a service's tasks.
pub fn task_group(service: &str) -> String {
    format!("service:{service}")
}

/// The circuit breaker's failure threshold for `desired` tasks: half the desired count,
/// rounded up, at least 3 and at most 200 (ECS's rolling update documentation).
pub fn failure_threshold(desired: i32) -> i32 {
    (desired.max(0) / 2 + desired.max(0) % 2).clamp(3, 200)
}

/// The fewest healthy tasks a deployment keeps: `ceil(desired x min% / 100)`.
pub fn minimum_healthy(desired: i32, minimum_healthy_percent: i32) -> i32 {
    let d = i64::from(desired.max(0));
    let p = i64::from(minimum_healthy_percent.clamp(0, 100));
    ((d * p + 99) / 100) as i32
}

/// The most tasks a deployment may run at once: `floor(desired x max% / 100)`, at most
/// `i32::MAX`.
pub fn maximum_tasks(desired: i32, maximum_percent: i32) -> i32 {
    let n = i64::from(desired.max(0)) * i64::from(maximum_percent.max(0)) / 100;
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_update_arithmetic() {
        // (desired, min%, max%) -> (minimum healthy, maximum tasks), ECS's rounding.
        let cases = [
            (4, 50, 200, 2, 8),
            (3, 50, 200, 2, 6),
            (3, 100, 150, 3, 4),
            (1, 50, 150, 1, 1),
            (0, 100, 200, 0, 0),
            (10, 0, 100, 0, 10),
            (5, 33, 133, 2, 6),
            // The largest desired count does not wrap (issue #10's fuzz test).
            (i32::MAX, 100, 200, i32::MAX, i32::MAX),
        ];
        for (d, min, max, want_min, want_max) in cases {
            assert_eq!(minimum_healthy(d, min), want_min, "{d} {min}");
            assert_eq!(maximum_tasks(d, max), want_max, "{d} {max}");
        }
    }

    #[test]
    fn a_rollback_returns_to_the_load_balancers_of_its_target() {
        let lb = |tg: &str| LoadBalancer {
            target_group_arn: Some(tg.into()),
            container_name: Some("web".into()),
            container_port: Some(8080),
            ..Default::default()
        };
        let dep = |id: &str, completed: bool, lbs: Option<Vec<LoadBalancer>>| DeploymentRecord {
            completed,
            load_balancers: lbs,
            ..DeploymentRecord::new(id.into(), format!("td-{id}"), None, 2, 0.0)
        };
        let req = berth_wire::ecs::CreateServiceRequest {
            service_name: Some("web".into()),
            task_definition: Some("web:1".into()),
            desired_count: Some(2),
            ..Default::default()
        };
        let mut rec = ServiceRecord {
            name: "web".into(),
            cluster: "default".into(),
            service: Service::default(),
            settings: crate::service_rules::validate_create(&req).expect("settings"),
            deployments: vec![dep("new", false, None), dep("old", true, Some(vec![lb("a")]))],
            past_deployments: vec![],
            events: vec![],
            tags: vec![],
            client_token: None,
            steady_since: None,
            event_seq: 0,
            version: 0,
            task_sets: vec![],
        };
        rec.service.load_balancers = Some(vec![lb("b")]);
        // The new deployment registers with the service's current ones, the old with its own.
        assert_eq!(rec.load_balancers_of(&rec.deployments[0]), &[lb("b")]);
        assert_eq!(rec.load_balancers_of(&rec.deployments[1]), &[lb("a")]);
        assert!(rec.behind_load_balancers());
        // From the past deployments too: a new record made for the rollback keeps them.
        let past = vec![dep("older", true, Some(vec![lb("a")]))];
        let mut only_new = vec![dep("new", false, None)];
        let (target, _) = roll_back(&mut only_new, &past, 2, 1.0, |t| format!("to {t}")).unwrap();
        assert_eq!(target, "older");
        assert_eq!(only_new[0].load_balancers, Some(vec![lb("a")]));
        // Removed everywhere: not behind load balancers any more.
        rec.service.load_balancers = Some(vec![]);
        rec.deployments = vec![dep("none", true, None)];
        assert!(!rec.behind_load_balancers());
    }

    #[test]
    fn circuit_breaker_threshold() {
        let cases = [(0, 3), (1, 3), (5, 3), (6, 3), (7, 4), (10, 5), (399, 200), (1000, 200)];
        // The largest desired count does not overflow (issue #10's fuzz test).
        for (d, t) in cases.into_iter().chain([(i32::MAX, 200)]) {
            assert_eq!(failure_threshold(d), t, "{d}");
        }
    }

    #[test]
    fn deployment_ids_look_like_ecs() {
        let id = new_deployment_id();
        let digits = id.strip_prefix("ecs-svc/").unwrap();
        assert_eq!(digits.len(), 19);
        assert!(digits.chars().all(|c| c.is_ascii_digit()));
    }
}
