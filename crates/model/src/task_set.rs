//! Task sets: the groups of tasks a service with the `EXTERNAL` deployment controller runs,
//! each of one task definition and scaled as a percentage of the service's desired count; and
//! the rules CreateTaskSet and UpdateTaskSet enforce before the server looks at the store.
//!
//! Invariants:
//! * A service's task sets live in its [`crate::service::ServiceRecord`] (`taskSets`), so one
//!   compare-and-set covers the service and all its sets. At most one is `PRIMARY`; new sets
//!   are `ACTIVE`; DeleteTaskSet makes a set `DRAINING` (scale 0), and the controller removes
//!   it once none of its tasks is left.
//! * A task set's tasks carry `startedBy = <task set id>` (`ecs-svc/` and 19 digits, as ECS
//!   spells them) and `group = service:NAME`, and are indexed as the service's tasks with the
//!   task set id in place of a deployment id.
//! * `computedDesiredCount = ceil(desiredCount x scale% / 100)` ([`computed_desired_count`]),
//!   0 while DRAINING or while the service is being deleted.
//!
//! Sources: the Amazon ECS API reference (CreateTaskSet, UpdateTaskSet, DeleteTaskSet,
//! UpdateServicePrimaryTaskSet, TaskSet, Scale: "Accepted values are numbers between 0 and
//! 100").

use berth_wire::ecs::{
    CreateTaskSetRequest, LaunchType, Scale, ScaleUnit, StabilityStatus, TaskSet,
};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::service_rules::ServiceRuleError;

/// PRIMARY: the set the service converges to (at most one).
pub const PRIMARY: &str = "PRIMARY";
/// ACTIVE: a set that is not PRIMARY and still runs its share.
pub const ACTIVE: &str = "ACTIVE";
/// DRAINING: deleted; its tasks are stopping.
pub const DRAINING: &str = "DRAINING";

/// One task set as the store keeps it (inside its service's record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSetRecord {
    /// The set as DescribeTaskSets shows it, counts and stability included (the controller
    /// keeps them current), `tags` included.
    pub task_set: TaskSet,
    /// The CreateTaskSet client token, for idempotency.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Tasks that stopped in a row before ever running; drives the launch delay.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// No task of this set is launched before this time (epoch seconds).
    #[serde(default)]
    pub next_launch_at: f64,
}

impl TaskSetRecord {
    /// `ecs-svc/NNN`.
    pub fn id(&self) -> &str {
        self.task_set.id.as_deref().unwrap_or("")
    }

    /// PRIMARY, ACTIVE or DRAINING.
    pub fn status(&self) -> &str {
        self.task_set.status.as_deref().unwrap_or(ACTIVE)
    }

    /// The scale in percent (0-100).
    pub fn scale_percent(&self) -> f64 {
        self.task_set.scale.as_ref().and_then(|s| s.value).unwrap_or(100.0)
    }

    /// The set's task definition ARN.
    pub fn task_definition(&self) -> &str {
        self.task_set.task_definition.as_deref().unwrap_or("")
    }

    /// The wire shape, `tags` only when asked for.
    pub fn to_wire(&self, with_tags: bool) -> TaskSet {
        let mut t = self.task_set.clone();
        if !with_tags {
            t.tags = None;
        }
        t
    }
}

/// `ceil(desired x percent / 100)`, ECS's computedDesiredCount; a product within 1e-9 of a
/// whole number counts as that number (so 10 x 70% is 7, not 8 through rounding error).
pub fn computed_desired_count(desired: i32, percent: f64) -> i32 {
    let percent = if percent.is_finite() { percent.clamp(0.0, 100.0) } else { 0.0 };
    let x = f64::from(desired.max(0)) * percent / 100.0;
    let r = x.round();
    let n = if (x - r).abs() < 1e-9 { r } else { x.ceil() };
    n as i32
}

/// A `scale` member: value 0-100 (default 100), unit PERCENT (the only one). Returns the
/// scale with its defaults filled in.
pub fn validate_scale(scale: Option<&Scale>) -> Result<Scale, ServiceRuleError> {
    let value = scale.and_then(|s| s.value).unwrap_or(100.0);
    if !value.is_finite() || !(0.0..=100.0).contains(&value) {
        return Err(ServiceRuleError::Invalid(ModelError::invalid(
            "scale.value",
            format!(
                "scale.value must be a number between 0 and 100 (a percentage of the service's desiredCount); got {value}."
            ),
        )));
    }
    Ok(Scale { value: Some(value), unit: Some(ScaleUnit::Percent) })
}

/// The members of CreateTaskSet Berth refuses, or ECS refuses: a launch type Berth does not
/// run (MANAGED_INSTANCES), a capacity provider strategy with a launch type (ECS's wording),
/// load balancers, service registries. Then `scale` and `externalId` and `clientToken`.
/// Returns the scale to store. (A Fargate set's task definition, platform version and network
/// configuration are the server's to check, as for a service.)
pub fn validate_create(req: &CreateTaskSetRequest) -> Result<Scale, ServiceRuleError> {
    let unsupported = |field: &str, message: String| ServiceRuleError::Unsupported {
        field: field.into(),
        message,
    };
    if req.task_definition.as_deref().is_none_or(str::is_empty) {
        return Err(ServiceRuleError::Invalid(ModelError::invalid(
            "taskDefinition",
            "taskDefinition is required: give the family:revision or the full ARN of the task definition the task set runs.",
        )));
    }
    // The strategy itself is checked against the cluster by the server.
    if req.capacity_provider_strategy.as_deref().is_some_and(|s| !s.is_empty())
        && req.launch_type.is_some()
    {
        return Err(ServiceRuleError::Invalid(ModelError::invalid(
            "capacityProviderStrategy",
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        )));
    }
    // FARGATE (and awsvpc's networkConfiguration, Fargate's platformVersion) are checked by the
    // server against the task definition and the VPC, as for a service.
    if let Some(other @ LaunchType::ManagedInstances) = req.launch_type {
        return Err(unsupported(
            "launchType",
            format!(
                "launchType {other} is not supported by Berth yet; use EC2, EXTERNAL or FARGATE."
            ),
        ));
    }
    if req.load_balancers.as_deref().is_some_and(|l| !l.is_empty()) {
        return Err(unsupported(
            "loadBalancers",
            "loadBalancers is not implemented by Berth yet: load balancing arrives with ELBv2. Omit loadBalancers.".into(),
        ));
    }
    if req.service_registries.as_deref().is_some_and(|l| !l.is_empty()) {
        return Err(unsupported(
            "serviceRegistries",
            "serviceRegistries is not implemented by Berth yet: service discovery arrives with Cloud Map. Omit serviceRegistries.".into(),
        ));
    }
    let scale = validate_scale(req.scale.as_ref())?;
    if let Some(id) = &req.external_id
        && id.len() > 255
    {
        return Err(ServiceRuleError::Invalid(ModelError::invalid(
            "externalId",
            format!("externalId can have up to 255 characters; got {}.", id.len()),
        )));
    }
    if let Some(token) = &req.client_token {
        crate::service_rules::validate_client_token(token)?;
    }
    crate::tags::validate(req.tags.as_deref().unwrap_or(&[]), "tags")?;
    Ok(scale)
}

/// The stability a set's counts show: STEADY_STATE when it runs exactly its computed desired
/// count with nothing pending, else STABILIZING.
pub fn stability(computed: i32, running: i32, pending: i32) -> StabilityStatus {
    if running == computed && pending == 0 {
        StabilityStatus::SteadyState
    } else {
        StabilityStatus::Stabilizing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_wire::ecs::CapacityProviderStrategyItem;

    #[test]
    fn computed_desired_count_table() {
        // (desired, percent) -> computedDesiredCount: ECS rounds up.
        let cases = [
            (4, 100.0, 4),
            (4, 50.0, 2),
            (4, 0.0, 0),
            (3, 50.0, 2),
            (10, 70.0, 7),
            (10, 33.3, 4),
            (1, 1.0, 1),
            (0, 100.0, 0),
            (5, 20.0, 1),
            (5, 20.000001, 2),
            (7, 100.0, 7),
            (-1, 50.0, 0),
            (i32::MAX, 100.0, i32::MAX),
            (4, f64::NAN, 0),
        ];
        for (desired, percent, want) in cases {
            assert_eq!(computed_desired_count(desired, percent), want, "{desired} x {percent}%");
        }
    }

    #[test]
    fn scale_rules() {
        let s = |v: Option<f64>| Scale { value: v, unit: None };
        assert_eq!(validate_scale(None).unwrap().value, Some(100.0));
        assert_eq!(validate_scale(Some(&s(None))).unwrap().value, Some(100.0));
        assert_eq!(validate_scale(Some(&s(Some(0.0)))).unwrap().value, Some(0.0));
        assert_eq!(validate_scale(Some(&s(Some(50.5)))).unwrap().unit, Some(ScaleUnit::Percent));
        for bad in [-0.1, 100.5, 1000.0, f64::INFINITY] {
            let e = validate_scale(Some(&s(Some(bad)))).unwrap_err();
            assert_eq!(e.field(), "scale.value", "{bad}");
            assert!(matches!(e, ServiceRuleError::Invalid(_)));
        }
    }

    #[test]
    fn create_rules() {
        let base = || CreateTaskSetRequest {
            service: Some("s".into()),
            cluster: Some("c".into()),
            task_definition: Some("web:1".into()),
            ..Default::default()
        };
        assert!(validate_create(&base()).is_ok());
        // (request, field, is-unsupported)
        let cases: Vec<(CreateTaskSetRequest, &str, bool)> = vec![
            (
                CreateTaskSetRequest { task_definition: Some(String::new()), ..base() },
                "taskDefinition",
                false,
            ),
            (
                CreateTaskSetRequest {
                    launch_type: Some(LaunchType::Ec2),
                    capacity_provider_strategy: Some(vec![CapacityProviderStrategyItem {
                        capacity_provider: Some("cp".into()),
                        ..Default::default()
                    }]),
                    ..base()
                },
                "capacityProviderStrategy",
                false,
            ),
            (
                CreateTaskSetRequest { launch_type: Some(LaunchType::ManagedInstances), ..base() },
                "launchType",
                true,
            ),
            (
                CreateTaskSetRequest { load_balancers: Some(vec![Default::default()]), ..base() },
                "loadBalancers",
                true,
            ),
            (
                CreateTaskSetRequest {
                    scale: Some(Scale { value: Some(101.0), unit: None }),
                    ..base()
                },
                "scale.value",
                false,
            ),
            (
                CreateTaskSetRequest { client_token: Some(String::new()), ..base() },
                "clientToken",
                false,
            ),
            (
                CreateTaskSetRequest { external_id: Some("x".repeat(256)), ..base() },
                "externalId",
                false,
            ),
        ];
        for (req, field, unsupported) in cases {
            let e = validate_create(&req).unwrap_err();
            assert_eq!(e.field(), field);
            assert_eq!(matches!(e, ServiceRuleError::Unsupported { .. }), unsupported, "{field}");
        }
    }

    #[test]
    fn stability_table() {
        assert_eq!(stability(2, 2, 0), StabilityStatus::SteadyState);
        assert_eq!(stability(0, 0, 0), StabilityStatus::SteadyState);
        assert_eq!(stability(2, 1, 1), StabilityStatus::Stabilizing);
        assert_eq!(stability(2, 3, 0), StabilityStatus::Stabilizing);
    }
}
