//! Services: the rules `CreateService` and `UpdateService` enforce before the server looks at
//! the cluster, the task definition or the store, and the settings the service controller runs
//! a service with ([`ServiceSettings`]).
//!
//! Sources: the Amazon ECS API reference (CreateService, UpdateService, DeploymentConfiguration,
//! DeploymentCircuitBreaker) and the developer guide (service parameters, scheduling
//! strategies, rolling update deployments). Type-level checks (member types, enum values,
//! the required `serviceName` / `service`) are the protocol layer's and are done before these.
//!
//! A refusal is a [`ServiceRuleError`]: [`ServiceRuleError::Invalid`] is answered as
//! `InvalidParameterException` (every ECS rule below), [`ServiceRuleError::Unsupported`] as
//! `UnsupportedFeatureException` (a member ECS accepts but Berth does not implement yet; the
//! message says what to do instead). Both name the member by its wire name or dotted path
//! (`deploymentConfiguration.maximumPercent`). The first rule broken is reported, in this
//! order ([`validate_create`]; [`validate_update`] runs the steps its request has members for):
//!
//! 1. **serviceName**: 1-255 letters (uppercase and lowercase), numbers, underscores and
//!    hyphens.
//! 2. **clientToken**: 1-36 ASCII characters in the range 33-126 (ECS: "up to 36"; Berth also
//!    refuses an empty token, which would make every create sending one a retry of the
//!    first).
//! 3. **deploymentController**: type `ECS` (rolling updates) or `EXTERNAL` (task sets,
//!    [`crate::task_set`]); `CODE_DEPLOY` is unsupported (blue/green needs CodeDeploy and a
//!    load balancer). An `EXTERNAL` service is `REPLICA` only (ECS: the `DAEMON` strategy
//!    supports only the `ECS` controller). Checked before `taskDefinition`, which an
//!    `EXTERNAL` service may omit.
//! 4. **taskDefinition** (create): required and non-empty unless the controller is
//!    `EXTERNAL`; the server resolves it.
//! 5. **launchType** (create): absent, `EC2`, `EXTERNAL` or `FARGATE`; `MANAGED_INSTANCES`
//!    is unsupported. **capacityProviderStrategy** (non-empty): refused together with a
//!    launch type with ECS's wording; alone it is checked by the server against the cluster's
//!    capacity providers (and the service then runs by it).
//! 6. **loadBalancers**: [`check_load_balancers`]. **serviceRegistries**:
//!    [`check_service_registries`]. **serviceConnectConfiguration**:
//!    [`crate::service_connect::check`]. **Members Berth does not implement yet**
//!    (unsupported): `role`, non-empty `vpcLatticeConfigurations`, non-empty `volumeConfigurations`,
//!    `availabilityZoneRebalancing` `ENABLED`,
//!    `enableExecuteCommand` true. (`role`, `launchType` are CreateService members only.)
//! 7. **schedulingStrategy** (default `REPLICA`) and **desiredCount**: a `REPLICA` service
//!    needs `desiredCount` on create ("required if schedulingStrategy is REPLICA or isn't
//!    specified"), and it is at least 0; a `DAEMON` service takes none, on create or update
//!    (it runs one task on each container instance; the controller computes the count).
//! 8. **placementConstraints** at most 10, **placementStrategy** at most 5 (the server parses
//!    them with the scheduler); no `placementStrategy` for a `DAEMON` service.
//! 9. **deploymentConfiguration**:
//!    * unsupported: `alarms` with `enable` true;
//!    * `strategy` `BLUE_GREEN`, `LINEAR`, `CANARY` and their members (`bakeTimeInMinutes`,
//!      `linearConfiguration`, `canaryConfiguration`, `lifecycleHooks`):
//!      [`crate::service_shift`], which also needs `loadBalancers` with
//!      `advancedConfiguration` (checked on create here, on update by the server);
//!    * `minimumHealthyPercent` 0-100 (default 100 for `REPLICA`, 0 for `DAEMON`);
//!    * `maximumPercent` (default 200 for `REPLICA`, 100 for `DAEMON`): a `DAEMON` service
//!      uses exactly 100; a `REPLICA` one 100-2000 (below 100 a deployment could not keep the
//!      desired count running; 2000 is Berth's sanity bound, ECS documents none);
//!    * `maximumPercent` greater than `minimumHealthyPercent`: both at 100 would let a
//!      deployment neither start a new task nor stop an old one (reported on `maximumPercent`
//!      when the request gives it, else on `minimumHealthyPercent`; always on the latter for
//!      `DAEMON`, whose maximum is fixed);
//!    * `deploymentCircuitBreaker`: `enable` and `rollback` default to false; `rollback` needs
//!      `enable`.
//!
//!    On update, the members given replace the current ones one by one (a member left out
//!    keeps its value) and the value rules apply to the merged result.
//! 10. **healthCheckGracePeriodSeconds**: 0-2147483647, default 0 (kept on update when
//!     absent).
//! 11. **tags** (create): [`crate::tags::validate`].
//!
//! `propagateTags`, `enableECSManagedTags`, and on update `forceNewDeployment` and
//! `taskDefinition`, need no check here.
//!
//! [`deployment_configuration`] renders settings as DescribeServices shows them: the circuit
//! breaker (`enable`, `rollback`), `maximumPercent`, `minimumHealthyPercent` and the strategy
//! (`ROLLING`, or the traffic-shifting settings); [`ServiceSettings::from_service`] reads
//! them back.

use berth_wire::ecs::{
    AvailabilityZoneRebalancing, CapacityProviderStrategyItem, CreateServiceRequest,
    DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentController,
    DeploymentControllerType, DeploymentStrategy, LaunchType, LoadBalancer, NetworkConfiguration,
    PlacementConstraint, PlacementStrategy, SchedulingStrategy, Service,
    ServiceConnectConfiguration, ServiceRegistry, ServiceVolumeConfiguration, UpdateServiceRequest,
    VpcLatticeConfiguration,
};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Longest service name.
pub const MAX_SERVICE_NAME: usize = 255;
/// Longest `clientToken`.
pub const MAX_CLIENT_TOKEN: usize = 36;
/// Most placement constraints a service may have.
pub const MAX_PLACEMENT_CONSTRAINTS: usize = 10;
/// Most placement strategy rules a service may have.
pub const MAX_PLACEMENT_STRATEGIES: usize = 5;
/// Largest `maximumPercent` Berth accepts for a `REPLICA` service (a sanity bound of Berth's).
pub const MAX_MAXIMUM_PERCENT: i32 = 2000;

/// A refused `CreateService` / `UpdateService` request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceRuleError {
    /// InvalidParameterException.
    #[error("{0}")]
    Invalid(#[from] ModelError),
    /// UnsupportedFeatureException: a member Berth does not implement yet; the message names
    /// the member and says what to do instead.
    #[error("{message}")]
    Unsupported { field: String, message: String },
}

impl ServiceRuleError {
    /// The member the refusal concerns (wire name or dotted path).
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid(e) => e.field(),
            Self::Unsupported { field, .. } => field,
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ServiceRuleError {
    ServiceRuleError::Invalid(ModelError::invalid(field, message))
}

fn unsupported(field: impl Into<String>, message: impl Into<String>) -> ServiceRuleError {
    ServiceRuleError::Unsupported { field: field.into(), message: message.into() }
}

/// A service's settings after defaults, as the controller uses them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// Scheduling strategy `DAEMON` (else `REPLICA`).
    pub daemon: bool,
    /// 0 for `DAEMON` (the controller computes it).
    pub desired_count: i32,
    pub minimum_healthy_percent: i32,
    pub maximum_percent: i32,
    pub circuit_breaker: bool,
    pub rollback: bool,
    pub health_check_grace_period_seconds: i32,
    /// `BLUE_GREEN`, `LINEAR` or `CANARY` (see [`crate::service_shift`]); `None`: `ROLLING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<crate::service_shift::ShiftSettings>,
}

impl ServiceSettings {
    /// ECS's defaults for a `REPLICA` (min 100%, max 200%) or `DAEMON` (min 0%, max 100%)
    /// service: desired count 0, no circuit breaker, no grace period.
    pub fn defaults(daemon: bool) -> Self {
        Self {
            daemon,
            desired_count: 0,
            minimum_healthy_percent: if daemon { 0 } else { 100 },
            maximum_percent: if daemon { 100 } else { 200 },
            circuit_breaker: false,
            rollback: false,
            health_check_grace_period_seconds: 0,
            shift: None,
        }
    }

    /// The scheduling strategy as the wire spells it.
    pub fn scheduling_strategy(&self) -> SchedulingStrategy {
        if self.daemon { SchedulingStrategy::Daemon } else { SchedulingStrategy::Replica }
    }

    /// The settings a service shape (as DescribeServices shows it) describes; members it lacks
    /// take their defaults. For `DAEMON` the desired count is 0 whatever the shape says (the
    /// controller computes it). Inverse of rendering `schedulingStrategy`, `desiredCount`,
    /// `healthCheckGracePeriodSeconds` and [`deployment_configuration`].
    pub fn from_service(service: &Service) -> Self {
        let daemon = service.scheduling_strategy == Some(SchedulingStrategy::Daemon);
        let d = Self::defaults(daemon);
        let dc = service.deployment_configuration.as_ref();
        let cb = dc.and_then(|c| c.deployment_circuit_breaker.as_ref());
        Self {
            daemon,
            desired_count: if daemon { 0 } else { service.desired_count.unwrap_or(0) },
            minimum_healthy_percent: dc
                .and_then(|c| c.minimum_healthy_percent)
                .unwrap_or(d.minimum_healthy_percent),
            maximum_percent: dc.and_then(|c| c.maximum_percent).unwrap_or(d.maximum_percent),
            circuit_breaker: cb.and_then(|c| c.enable).unwrap_or(false),
            rollback: cb.and_then(|c| c.rollback).unwrap_or(false),
            health_check_grace_period_seconds: service
                .health_check_grace_period_seconds
                .unwrap_or(0),
            shift: dc.and_then(|c| crate::service_shift::apply(c, None).ok().flatten()),
        }
    }
}

/// Checks a `CreateService` request (see the module documentation for the rules and their
/// order) and returns the new service's settings with ECS's defaults filled in.
pub fn validate_create(req: &CreateServiceRequest) -> Result<ServiceSettings, ServiceRuleError> {
    validate_service_name(req.service_name.as_deref().unwrap_or(""))?;
    if let Some(token) = &req.client_token {
        validate_client_token(token)?;
    }
    check_controller(req.deployment_controller.as_ref())?;
    let external = req.deployment_controller.as_ref().and_then(|c| c.r#type)
        == Some(DeploymentControllerType::External);
    if external && req.scheduling_strategy == Some(SchedulingStrategy::Daemon) {
        return Err(invalid(
            "schedulingStrategy",
            "The DAEMON scheduling strategy supports only the ECS deployment controller: use schedulingStrategy REPLICA with the EXTERNAL deployment controller.",
        ));
    }
    if !external && req.task_definition.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            "taskDefinition",
            "taskDefinition is required: give the family:revision or the full ARN of the task definition the service runs.",
        ));
    }
    check_members(&Members {
        launch_type: req.launch_type,
        capacity_provider_strategy: req.capacity_provider_strategy.as_deref(),
        role: req.role.as_deref(),
        load_balancers: req.load_balancers.as_deref(),
        service_registries: req.service_registries.as_deref(),
        service_connect: req.service_connect_configuration.as_ref(),
        vpc_lattice: req.vpc_lattice_configurations.as_deref(),
        volume_configurations: req.volume_configurations.as_deref(),
        network_configuration: req.network_configuration.as_ref(),
        platform_version: req.platform_version.as_deref(),
        availability_zone_rebalancing: req.availability_zone_rebalancing,
        enable_execute_command: req.enable_execute_command,
    })?;

    let daemon = req.scheduling_strategy == Some(SchedulingStrategy::Daemon);
    let mut s = ServiceSettings::defaults(daemon);
    match (daemon, req.desired_count) {
        (true, Some(n)) => return Err(daemon_desired_count(n)),
        (true, None) => {}
        (false, None) => {
            return Err(invalid(
                "desiredCount",
                "desiredCount is required for REPLICA services (the default schedulingStrategy): give the number of tasks to keep running, 0 or more.",
            ));
        }
        (false, Some(n)) => s.desired_count = check_desired_count(n)?,
    }
    check_placement(
        req.placement_constraints.as_deref(),
        req.placement_strategy.as_deref(),
        daemon,
    )?;
    apply_deployment_configuration(req.deployment_configuration.as_ref(), &mut s)?;
    crate::service_shift::check_service(
        req.load_balancers.as_deref().unwrap_or(&[]),
        s.shift.as_ref(),
        s.daemon,
    )?;
    if let Some(g) = req.health_check_grace_period_seconds {
        s.health_check_grace_period_seconds = check_grace_period(g)?;
    }
    crate::tags::validate(req.tags.as_deref().unwrap_or(&[]), "tags")?;
    Ok(s)
}

/// Checks an `UpdateService` request against the service's present settings `current` and
/// returns the settings after the update: members the request leaves out keep their values.
pub fn validate_update(
    req: &UpdateServiceRequest,
    current: &ServiceSettings,
) -> Result<ServiceSettings, ServiceRuleError> {
    check_controller(req.deployment_controller.as_ref())?;
    check_members(&Members {
        launch_type: None,
        capacity_provider_strategy: req.capacity_provider_strategy.as_deref(),
        role: None,
        load_balancers: req.load_balancers.as_deref(),
        service_registries: req.service_registries.as_deref(),
        service_connect: req.service_connect_configuration.as_ref(),
        vpc_lattice: req.vpc_lattice_configurations.as_deref(),
        volume_configurations: req.volume_configurations.as_deref(),
        network_configuration: req.network_configuration.as_ref(),
        platform_version: req.platform_version.as_deref(),
        availability_zone_rebalancing: req.availability_zone_rebalancing,
        enable_execute_command: req.enable_execute_command,
    })?;
    let mut s = current.clone();
    if let Some(n) = req.desired_count {
        if s.daemon {
            return Err(daemon_desired_count(n));
        }
        s.desired_count = check_desired_count(n)?;
    }
    check_placement(
        req.placement_constraints.as_deref(),
        req.placement_strategy.as_deref(),
        s.daemon,
    )?;
    apply_deployment_configuration(req.deployment_configuration.as_ref(), &mut s)?;
    if let Some(g) = req.health_check_grace_period_seconds {
        s.health_check_grace_period_seconds = check_grace_period(g)?;
    }
    Ok(s)
}

/// The wire `DeploymentConfiguration` to show for `s`, with ECS's defaults filled in: the
/// circuit breaker (`enable`, `rollback`), `maximumPercent`, `minimumHealthyPercent`, strategy
/// `ROLLING`.
pub fn deployment_configuration(s: &ServiceSettings) -> DeploymentConfiguration {
    let mut dc = DeploymentConfiguration {
        deployment_circuit_breaker: Some(DeploymentCircuitBreaker {
            enable: Some(s.circuit_breaker),
            rollback: Some(s.rollback),
        }),
        maximum_percent: Some(s.maximum_percent),
        minimum_healthy_percent: Some(s.minimum_healthy_percent),
        strategy: Some(DeploymentStrategy::Rolling),
        ..Default::default()
    };
    if let Some(shift) = &s.shift {
        shift.render(&mut dc);
    }
    dc
}

/// A service name: 1-255 letters, numbers, underscores and hyphens.
pub fn validate_service_name(name: &str) -> Result<(), ServiceRuleError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SERVICE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "serviceName",
            format!(
                "Invalid serviceName '{name}': service names can have up to 255 characters: letters (uppercase and lowercase), numbers, underscores, and hyphens."
            ),
        ))
    }
}

/// A `clientToken`: 1-36 ASCII characters in the range 33-126.
pub fn validate_client_token(token: &str) -> Result<(), ServiceRuleError> {
    let ok = !token.is_empty()
        && token.len() <= MAX_CLIENT_TOKEN
        && token.bytes().all(|b| (33..=126).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "clientToken",
            "clientToken must be 1-36 ASCII characters in the range 33-126 (inclusive): printable, without spaces.",
        ))
    }
}

fn check_controller(c: Option<&DeploymentController>) -> Result<(), ServiceRuleError> {
    match c.and_then(|c| c.r#type) {
        None | Some(DeploymentControllerType::Ecs) | Some(DeploymentControllerType::External) => {
            Ok(())
        }
        Some(t) => Err(unsupported(
            "deploymentController.type",
            format!(
                "deploymentController type {t} is not implemented by Berth yet: blue/green deployments need AWS CodeDeploy and a load balancer, which Berth does not have. Use type ECS (rolling updates) or EXTERNAL (task sets you manage with CreateTaskSet)."
            ),
        )),
    }
}

/// UpdateService on a service with the `EXTERNAL` deployment controller: ECS lets it change
/// only the desired count, placement constraints and strategies, the health check grace
/// period, `enableECSManagedTags` and `propagateTags` ("create a new task set" for the
/// rest). A member that would change anything else is refused, naming it.
pub fn validate_update_external(req: &UpdateServiceRequest) -> Result<(), ServiceRuleError> {
    let refuse = |field: &str| {
        Err(invalid(
            field,
            format!(
                "{field} can't be updated on a service that uses the EXTERNAL deployment controller: only desiredCount, placementConstraints, placementStrategy, healthCheckGracePeriodSeconds, enableECSManagedTags and propagateTags can. Create a new task set (CreateTaskSet) instead."
            ),
        ))
    };
    if req.task_definition.is_some() {
        return refuse("taskDefinition");
    }
    if req.force_new_deployment == Some(true) {
        return refuse("forceNewDeployment");
    }
    if req.deployment_configuration.is_some() {
        return refuse("deploymentConfiguration");
    }
    if req.capacity_provider_strategy.as_deref().is_some_and(|c| !c.is_empty()) {
        return refuse("capacityProviderStrategy");
    }
    if req.network_configuration.is_some() {
        return refuse("networkConfiguration");
    }
    if req.platform_version.is_some() {
        return refuse("platformVersion");
    }
    if req.load_balancers.is_some() {
        return refuse("loadBalancers");
    }
    if req.service_registries.is_some() {
        return refuse("serviceRegistries");
    }
    Ok(())
}

/// The members CreateService and UpdateService share that Berth refuses (a capacity provider
/// strategy only together with a launch type); `launch_type` and `role` are create-only.
struct Members<'a> {
    launch_type: Option<LaunchType>,
    capacity_provider_strategy: Option<&'a [CapacityProviderStrategyItem]>,
    role: Option<&'a str>,
    load_balancers: Option<&'a [LoadBalancer]>,
    service_registries: Option<&'a [ServiceRegistry]>,
    service_connect: Option<&'a ServiceConnectConfiguration>,
    vpc_lattice: Option<&'a [VpcLatticeConfiguration]>,
    volume_configurations: Option<&'a [ServiceVolumeConfiguration]>,
    network_configuration: Option<&'a NetworkConfiguration>,
    platform_version: Option<&'a str>,
    availability_zone_rebalancing: Option<AvailabilityZoneRebalancing>,
    enable_execute_command: Option<bool>,
}

/// The request-only rules of `serviceRegistries` (issue #17); the server checks the rest
/// against the task definition and the Cloud Map service
/// (`servicediscovery::ecs_registrations::check`): at most one registry; each names its
/// Cloud Map service by ARN; `port` and `containerPort` are ports; `containerName` and
/// `containerPort` come together, and never with `port`.
pub fn check_service_registries(regs: &[ServiceRegistry]) -> Result<(), ServiceRuleError> {
    if regs.len() > 1 {
        return Err(invalid(
            "serviceRegistries",
            "Only one service registry is supported per service: serviceRegistries lists at most one.",
        ));
    }
    for (i, r) in regs.iter().enumerate() {
        let field = |m: &str| format!("serviceRegistries[{i}].{m}");
        let arn = r.registry_arn.as_deref().unwrap_or("");
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if arn.is_empty() {
            return Err(invalid(
                field("registryArn"),
                "registryArn is required: give the ARN of the AWS Cloud Map service (arn:aws:servicediscovery:REGION:ACCOUNT:service/srv-...) the tasks register with.",
            ));
        }
        if parts.len() != 6
            || parts[0] != "arn"
            || parts[2] != "servicediscovery"
            || !parts[5].starts_with("service/srv-")
        {
            return Err(invalid(
                field("registryArn"),
                format!(
                    "Invalid registryArn '{arn}': it must be the ARN of an AWS Cloud Map service (arn:aws:servicediscovery:REGION:ACCOUNT:service/srv-...)."
                ),
            ));
        }
        for (name, v) in [("port", r.port), ("containerPort", r.container_port)] {
            if let Some(p) = v
                && !(0..=65535).contains(&p)
            {
                return Err(invalid(
                    field(name),
                    format!("{name} {p} is not a port: it must be between 0 and 65535."),
                ));
            }
        }
        match (r.container_name.is_some(), r.container_port.is_some()) {
            (true, false) => {
                return Err(invalid(
                    field("containerPort"),
                    "When specifying 'containerName', a value for 'containerPort' must also be specified.",
                ));
            }
            (false, true) => {
                return Err(invalid(
                    field("containerName"),
                    "When specifying 'containerPort', a value for 'containerName' must also be specified.",
                ));
            }
            (true, true) if r.port.is_some() => {
                return Err(invalid(
                    field("port"),
                    "Specify either 'port' or 'containerName' and 'containerPort' for a service registry, not both.",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn non_empty<T>(v: Option<&[T]>) -> bool {
    v.is_some_and(|v| !v.is_empty())
}

fn check_members(m: &Members<'_>) -> Result<(), ServiceRuleError> {
    if let Some(items) = m.capacity_provider_strategy.filter(|s| !s.is_empty()) {
        if m.launch_type.is_some() {
            return Err(invalid(
                "capacityProviderStrategy",
                "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
            ));
        }
        // The strategy itself (base, weight, association with the cluster) is checked by
        // the server, which knows the cluster's capacity providers.
        let _ = items;
    }
    match m.launch_type {
        None | Some(LaunchType::Ec2) | Some(LaunchType::External) | Some(LaunchType::Fargate) => {}
        Some(other) => {
            return Err(unsupported(
                "launchType",
                format!(
                    "launchType {other} is not supported by Berth yet; use EC2 (tasks run on the registered container instances) or FARGATE."
                ),
            ));
        }
    }
    check_load_balancers(m.load_balancers.unwrap_or(&[]))?;
    if m.role.is_some() {
        return Err(unsupported(
            "role",
            "role is the IAM role ECS uses to call your load balancer, and load balancing arrives with ELBv2: Berth does not implement it yet. Omit role.",
        ));
    }
    check_service_registries(m.service_registries.unwrap_or(&[]))?;
    if let Some(sc) = m.service_connect {
        crate::service_connect::check(sc)?;
    }
    if non_empty(m.vpc_lattice) {
        return Err(unsupported(
            "vpcLatticeConfigurations",
            "vpcLatticeConfigurations is not implemented by Berth yet: VPC Lattice target groups are not emulated. Omit vpcLatticeConfigurations.",
        ));
    }
    if non_empty(m.volume_configurations) {
        return Err(unsupported(
            "volumeConfigurations",
            "volumeConfigurations is not implemented by Berth yet: Amazon EBS volumes configured at launch are not emulated. Omit volumeConfigurations and use the task definition's host or Docker volumes.",
        ));
    }
    // networkConfiguration and platformVersion are checked by the server, which knows the
    // task definition's network mode, the region's subnets and the launch type.
    let _ = (m.network_configuration, m.platform_version);
    if m.availability_zone_rebalancing == Some(AvailabilityZoneRebalancing::Enabled) {
        return Err(unsupported(
            "availabilityZoneRebalancing",
            "availabilityZoneRebalancing ENABLED is not implemented by Berth yet: omit it or use DISABLED.",
        ));
    }
    if m.enable_execute_command == Some(true) {
        return Err(unsupported(
            "enableExecuteCommand",
            "enableExecuteCommand is not implemented by Berth yet: ECS Exec needs the Systems Manager agent channel. Omit it or set it to false.",
        ));
    }
    Ok(())
}

/// Most `loadBalancers` entries a service may have (ECS: 5 target groups per service).
pub const MAX_SERVICE_LOAD_BALANCERS: usize = 5;

/// The shape of `loadBalancers` (ECS's rules; the server checks the target groups and the
/// task definition): at most [`MAX_SERVICE_LOAD_BALANCERS`], each with a `targetGroupArn`
/// (`loadBalancerName` names a Classic Load Balancer, which ECS refuses with application and
/// network load balancers and Berth does not emulate), a `containerName` and a
/// `containerPort` of 1-65535; `advancedConfiguration` (blue/green) is not implemented yet.
pub fn check_load_balancers(lbs: &[LoadBalancer]) -> Result<(), ServiceRuleError> {
    if lbs.len() > MAX_SERVICE_LOAD_BALANCERS {
        return Err(invalid(
            "loadBalancers",
            format!(
                "Too many loadBalancers: {} given, a service can have at most {MAX_SERVICE_LOAD_BALANCERS} target groups.",
                lbs.len()
            ),
        ));
    }
    for (i, lb) in lbs.iter().enumerate() {
        let f = |m: &str| format!("loadBalancers[{i}].{m}");
        if lb.load_balancer_name.as_deref().is_some_and(|n| !n.is_empty()) {
            return Err(invalid(
                f("loadBalancerName"),
                "loadBalancerName names a Classic Load Balancer: for an Application or Network Load Balancer give targetGroupArn and leave loadBalancerName out (Berth does not emulate Classic Load Balancers).",
            ));
        }
        if lb.target_group_arn.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                f("targetGroupArn"),
                "targetGroupArn is required: the target group the service's tasks register in.",
            ));
        }
        if lb.container_name.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                f("containerName"),
                "containerName is required: the container (as the task definition names it) the load balancer sends traffic to.",
            ));
        }
        match lb.container_port {
            Some(p) if (1..=65535).contains(&p) => {}
            Some(p) => {
                return Err(invalid(
                    f("containerPort"),
                    format!("containerPort must be between 1 and 65535; got {p}."),
                ));
            }
            None => {
                return Err(invalid(
                    f("containerPort"),
                    "containerPort is required: the port of the container the load balancer sends traffic to.",
                ));
            }
        }
        crate::service_shift::check_advanced(i, lb, false)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for lb in lbs {
        let key = (lb.target_group_arn.clone(), lb.container_name.clone(), lb.container_port);
        if !seen.insert(key) {
            return Err(invalid(
                "loadBalancers",
                "loadBalancers lists the same target group, container and port twice.",
            ));
        }
    }
    Ok(())
}

fn daemon_desired_count(n: i32) -> ServiceRuleError {
    invalid(
        "desiredCount",
        format!(
            "desiredCount ({n}) can't be specified for a DAEMON service; it runs one task on each container instance."
        ),
    )
}

fn check_desired_count(n: i32) -> Result<i32, ServiceRuleError> {
    if n < 0 {
        return Err(invalid(
            "desiredCount",
            format!("desiredCount must be 0 or greater; got {n}."),
        ));
    }
    Ok(n)
}

fn check_placement(
    constraints: Option<&[PlacementConstraint]>,
    strategy: Option<&[PlacementStrategy]>,
    daemon: bool,
) -> Result<(), ServiceRuleError> {
    let constraints = constraints.unwrap_or(&[]);
    if constraints.len() > MAX_PLACEMENT_CONSTRAINTS {
        return Err(invalid(
            "placementConstraints",
            format!(
                "Too many placementConstraints: {} given, at most {MAX_PLACEMENT_CONSTRAINTS} are allowed per service.",
                constraints.len()
            ),
        ));
    }
    let strategy = strategy.unwrap_or(&[]);
    if daemon && !strategy.is_empty() {
        return Err(invalid(
            "placementStrategy",
            "placementStrategy can't be specified for a DAEMON service; it runs one task on each container instance that satisfies its placementConstraints.",
        ));
    }
    if strategy.len() > MAX_PLACEMENT_STRATEGIES {
        return Err(invalid(
            "placementStrategy",
            format!(
                "Too many placementStrategy rules: {} given, at most {MAX_PLACEMENT_STRATEGIES} are allowed per service.",
                strategy.len()
            ),
        ));
    }
    Ok(())
}

fn check_grace_period(g: i32) -> Result<i32, ServiceRuleError> {
    if g < 0 {
        return Err(invalid(
            "healthCheckGracePeriodSeconds",
            format!("healthCheckGracePeriodSeconds must be between 0 and 2147483647; got {g}."),
        ));
    }
    Ok(g)
}

const DEPLOYMENTS_LATER: &str = "Berth does not implement deployment alarms yet";

/// Applies `dc` (if any) to `s`, member by member, and checks the merged result.
fn apply_deployment_configuration(
    dc: Option<&DeploymentConfiguration>,
    s: &mut ServiceSettings,
) -> Result<(), ServiceRuleError> {
    let Some(dc) = dc else { return Ok(()) };
    const P: &str = "deploymentConfiguration";
    if dc.alarms.as_ref().is_some_and(|a| a.enable == Some(true)) {
        return Err(unsupported(
            format!("{P}.alarms"),
            format!("{P}.alarms: {DEPLOYMENTS_LATER}. Omit alarms or set enable to false."),
        ));
    }
    s.shift = crate::service_shift::apply(dc, s.shift.as_ref())?;

    if let Some(min) = dc.minimum_healthy_percent {
        if !(0..=100).contains(&min) {
            return Err(invalid(
                format!("{P}.minimumHealthyPercent"),
                format!("{P}.minimumHealthyPercent must be between 0 and 100; got {min}."),
            ));
        }
        s.minimum_healthy_percent = min;
    }
    if let Some(max) = dc.maximum_percent {
        if s.daemon && max != 100 {
            return Err(invalid(
                format!("{P}.maximumPercent"),
                format!(
                    "{P}.maximumPercent must be 100 for a DAEMON service (it runs at most one task on each container instance); got {max}. DAEMON services use maximumPercent 100."
                ),
            ));
        }
        if !s.daemon && !(100..=MAX_MAXIMUM_PERCENT).contains(&max) {
            return Err(invalid(
                format!("{P}.maximumPercent"),
                format!(
                    "{P}.maximumPercent must be between 100 and {MAX_MAXIMUM_PERCENT} for a REPLICA service; got {max}."
                ),
            ));
        }
        s.maximum_percent = max;
    }
    if (dc.minimum_healthy_percent.is_some() || dc.maximum_percent.is_some())
        && s.maximum_percent <= s.minimum_healthy_percent
    {
        let member = if dc.maximum_percent.is_some() && !s.daemon {
            "maximumPercent"
        } else {
            "minimumHealthyPercent"
        };
        return Err(invalid(
            format!("{P}.{member}"),
            format!(
                "{P}.maximumPercent ({}) must be greater than minimumHealthyPercent ({}), or a deployment could never start a new task nor stop an old one.",
                s.maximum_percent, s.minimum_healthy_percent
            ),
        ));
    }
    if let Some(cb) = &dc.deployment_circuit_breaker {
        if let Some(e) = cb.enable {
            s.circuit_breaker = e;
        }
        if let Some(r) = cb.rollback {
            s.rollback = r;
        }
        if s.rollback && !s.circuit_breaker {
            return Err(invalid(
                format!("{P}.deploymentCircuitBreaker.rollback"),
                format!(
                    "{P}.deploymentCircuitBreaker.rollback requires enable: only a deployment the circuit breaker watches can fail and be rolled back. Set enable to true, or rollback to false."
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_wire::ecs::{
        CanaryConfiguration, DeploymentAlarms, DeploymentLifecycleHook, LinearConfiguration,
        PropagateTags, ServiceConnectService, Tag,
    };

    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Class {
        Invalid,
        Unsupported,
    }
    use Class::{Invalid, Unsupported};

    fn class(e: &ServiceRuleError) -> Class {
        match e {
            ServiceRuleError::Invalid(ModelError::InvalidParameter { .. }) => Invalid,
            ServiceRuleError::Invalid(other) => panic!("not InvalidParameter: {other:?}"),
            ServiceRuleError::Unsupported { .. } => Unsupported,
        }
    }

    fn base() -> CreateServiceRequest {
        CreateServiceRequest {
            service_name: Some("web".into()),
            task_definition: Some("web:1".into()),
            desired_count: Some(2),
            ..Default::default()
        }
    }

    fn daemon() -> CreateServiceRequest {
        CreateServiceRequest {
            desired_count: None,
            scheduling_strategy: Some(SchedulingStrategy::Daemon),
            ..base()
        }
    }

    fn dc(f: impl FnOnce(&mut DeploymentConfiguration)) -> Option<DeploymentConfiguration> {
        let mut d = DeploymentConfiguration::default();
        f(&mut d);
        Some(d)
    }

    fn breaker(enable: Option<bool>, rollback: Option<bool>) -> Option<DeploymentConfiguration> {
        dc(|d| d.deployment_circuit_breaker = Some(DeploymentCircuitBreaker { enable, rollback }))
    }

    fn percents(min: Option<i32>, max: Option<i32>) -> Option<DeploymentConfiguration> {
        dc(|d| {
            d.minimum_healthy_percent = min;
            d.maximum_percent = max;
        })
    }

    /// A valid `loadBalancers` entry.
    fn lb() -> LoadBalancer {
        LoadBalancer {
            target_group_arn: Some(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef"
                    .into(),
            ),
            container_name: Some("web".into()),
            container_port: Some(8080),
            ..Default::default()
        }
    }

    fn n<T: Default>(count: usize) -> Option<Vec<T>> {
        Some((0..count).map(|_| T::default()).collect())
    }

    fn cps(names: &[&str]) -> Option<Vec<CapacityProviderStrategyItem>> {
        Some(
            names
                .iter()
                .map(|p| CapacityProviderStrategyItem {
                    capacity_provider: Some((*p).into()),
                    weight: Some(1),
                    base: None,
                })
                .collect(),
        )
    }

    const DC_MIN: &str = "deploymentConfiguration.minimumHealthyPercent";
    const DC_MAX: &str = "deploymentConfiguration.maximumPercent";
    const DC_ROLLBACK: &str = "deploymentConfiguration.deploymentCircuitBreaker.rollback";

    #[test]
    fn defaults_replica_and_daemon() {
        let replica = validate_create(&base()).unwrap();
        assert_eq!(
            replica,
            ServiceSettings {
                daemon: false,
                desired_count: 2,
                minimum_healthy_percent: 100,
                maximum_percent: 200,
                circuit_breaker: false,
                rollback: false,
                health_check_grace_period_seconds: 0,
                shift: None,
            }
        );
        assert_eq!(replica.scheduling_strategy(), SchedulingStrategy::Replica);
        let explicit = CreateServiceRequest {
            scheduling_strategy: Some(SchedulingStrategy::Replica),
            ..base()
        };
        assert_eq!(validate_create(&explicit).unwrap(), replica);

        let d = validate_create(&daemon()).unwrap();
        assert_eq!(
            d,
            ServiceSettings {
                daemon: true,
                desired_count: 0,
                minimum_healthy_percent: 0,
                maximum_percent: 100,
                circuit_breaker: false,
                rollback: false,
                health_check_grace_period_seconds: 0,
                shift: None,
            }
        );
        assert_eq!(d, ServiceSettings::defaults(true));
        assert_eq!(d.scheduling_strategy(), SchedulingStrategy::Daemon);
    }

    #[test]
    fn create_accepts() {
        type Case = (&'static str, CreateServiceRequest, fn(&mut ServiceSettings));
        let cases: Vec<Case> = vec![
            ("desired 0", CreateServiceRequest { desired_count: Some(0), ..base() }, |s| {
                s.desired_count = 0
            }),
            (
                "longest name, dash and underscore",
                CreateServiceRequest {
                    service_name: Some(format!("A-b_9{}", "x".repeat(250))),
                    ..base()
                },
                |_| {},
            ),
            (
                "client token of 36 printable characters",
                CreateServiceRequest {
                    client_token: Some(format!("!~{}", "a".repeat(34))),
                    ..base()
                },
                |_| {},
            ),
            (
                "task definition ARN",
                CreateServiceRequest {
                    task_definition: Some(
                        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3".into(),
                    ),
                    ..base()
                },
                |_| {},
            ),
            (
                "launch type EC2",
                CreateServiceRequest { launch_type: Some(LaunchType::Ec2), ..base() },
                |_| {},
            ),
            (
                "EXTERNAL controller without task definition",
                CreateServiceRequest {
                    deployment_controller: Some(DeploymentController {
                        r#type: Some(DeploymentControllerType::External),
                    }),
                    task_definition: None,
                    ..base()
                },
                |_| {},
            ),
            (
                "launch type EXTERNAL, empty capacity provider strategy",
                CreateServiceRequest {
                    launch_type: Some(LaunchType::External),
                    capacity_provider_strategy: Some(vec![]),
                    ..base()
                },
                |_| {},
            ),
            (
                "ECS controller, empty lists, disabled features",
                CreateServiceRequest {
                    deployment_controller: Some(DeploymentController {
                        r#type: Some(DeploymentControllerType::Ecs),
                    }),
                    load_balancers: Some(vec![]),
                    service_registries: Some(vec![]),
                    vpc_lattice_configurations: Some(vec![]),
                    volume_configurations: Some(vec![]),
                    service_connect_configuration: Some(ServiceConnectConfiguration {
                        enabled: Some(false),
                        ..Default::default()
                    }),
                    availability_zone_rebalancing: Some(AvailabilityZoneRebalancing::Disabled),
                    enable_execute_command: Some(false),
                    enable_ecs_managed_tags: Some(true),
                    propagate_tags: Some(PropagateTags::Service),
                    tags: Some(vec![Tag { key: Some("env".into()), value: Some("prod".into()) }]),
                    ..base()
                },
                |_| {},
            ),
            (
                "10 constraints, 5 strategies",
                CreateServiceRequest {
                    placement_constraints: n(10),
                    placement_strategy: n(5),
                    ..base()
                },
                |_| {},
            ),
            (
                "rolling strategy, disabled alarms, no hooks",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| {
                        d.strategy = Some(DeploymentStrategy::Rolling);
                        d.alarms = Some(DeploymentAlarms {
                            alarm_names: Some(vec!["a".into()]),
                            enable: Some(false),
                            rollback: Some(false),
                        });
                        d.lifecycle_hooks = Some(vec![]);
                    }),
                    ..base()
                },
                |_| {},
            ),
            (
                "min 0, max 100",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(0), Some(100)),
                    ..base()
                },
                |s| {
                    s.minimum_healthy_percent = 0;
                    s.maximum_percent = 100;
                },
            ),
            (
                "min 50, max 2000",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(50), Some(2000)),
                    ..base()
                },
                |s| {
                    s.minimum_healthy_percent = 50;
                    s.maximum_percent = 2000;
                },
            ),
            (
                "min 99 and default max",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(99), None),
                    ..base()
                },
                |s| s.minimum_healthy_percent = 99,
            ),
            (
                "max 101 and default min",
                CreateServiceRequest {
                    deployment_configuration: percents(None, Some(101)),
                    ..base()
                },
                |s| s.maximum_percent = 101,
            ),
            (
                "circuit breaker with rollback",
                CreateServiceRequest {
                    deployment_configuration: breaker(Some(true), Some(true)),
                    ..base()
                },
                |s| {
                    s.circuit_breaker = true;
                    s.rollback = true;
                },
            ),
            (
                "circuit breaker without rollback",
                CreateServiceRequest {
                    deployment_configuration: breaker(Some(true), None),
                    ..base()
                },
                |s| s.circuit_breaker = true,
            ),
            (
                "largest grace period",
                CreateServiceRequest {
                    health_check_grace_period_seconds: Some(i32::MAX),
                    ..base()
                },
                |s| s.health_check_grace_period_seconds = i32::MAX,
            ),
        ];
        for (name, req, change) in cases {
            let mut want = validate_create(&base()).unwrap();
            change(&mut want);
            assert_eq!(validate_create(&req), Ok(want), "{name}");
        }

        let daemon_cases: Vec<Case> = vec![
            (
                "daemon max 100, min 50",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(50), Some(100)),
                    ..daemon()
                },
                |s| s.minimum_healthy_percent = 50,
            ),
            (
                "daemon constraints, empty strategy, breaker",
                CreateServiceRequest {
                    placement_constraints: n(2),
                    placement_strategy: Some(vec![]),
                    deployment_configuration: breaker(Some(true), Some(true)),
                    ..daemon()
                },
                |s| {
                    s.circuit_breaker = true;
                    s.rollback = true;
                },
            ),
        ];
        for (name, req, change) in daemon_cases {
            let mut want = ServiceSettings::defaults(true);
            change(&mut want);
            assert_eq!(validate_create(&req), Ok(want), "{name}");
        }
    }

    #[test]
    fn create_refuses() {
        let cases: Vec<(&str, CreateServiceRequest, Class, &str)> = vec![
            // serviceName
            (
                "empty name",
                CreateServiceRequest { service_name: Some(String::new()), ..base() },
                Invalid,
                "serviceName",
            ),
            (
                "name too long",
                CreateServiceRequest { service_name: Some("x".repeat(256)), ..base() },
                Invalid,
                "serviceName",
            ),
            (
                "name with dot",
                CreateServiceRequest { service_name: Some("web.app".into()), ..base() },
                Invalid,
                "serviceName",
            ),
            (
                "name with space",
                CreateServiceRequest { service_name: Some("web app".into()), ..base() },
                Invalid,
                "serviceName",
            ),
            (
                "non-ASCII name",
                CreateServiceRequest { service_name: Some("wéb".into()), ..base() },
                Invalid,
                "serviceName",
            ),
            // clientToken
            (
                "empty token",
                CreateServiceRequest { client_token: Some(String::new()), ..base() },
                Invalid,
                "clientToken",
            ),
            (
                "token too long",
                CreateServiceRequest { client_token: Some("t".repeat(37)), ..base() },
                Invalid,
                "clientToken",
            ),
            (
                "token with space",
                CreateServiceRequest { client_token: Some("a b".into()), ..base() },
                Invalid,
                "clientToken",
            ),
            (
                "token with DEL",
                CreateServiceRequest { client_token: Some("a\u{7f}".into()), ..base() },
                Invalid,
                "clientToken",
            ),
            (
                "non-ASCII token",
                CreateServiceRequest { client_token: Some("é".into()), ..base() },
                Invalid,
                "clientToken",
            ),
            // deploymentController
            (
                "CODE_DEPLOY controller",
                CreateServiceRequest {
                    deployment_controller: Some(DeploymentController {
                        r#type: Some(DeploymentControllerType::CodeDeploy),
                    }),
                    ..base()
                },
                Unsupported,
                "deploymentController.type",
            ),
            (
                "EXTERNAL controller with DAEMON",
                CreateServiceRequest {
                    deployment_controller: Some(DeploymentController {
                        r#type: Some(DeploymentControllerType::External),
                    }),
                    task_definition: None,
                    desired_count: None,
                    scheduling_strategy: Some(SchedulingStrategy::Daemon),
                    ..base()
                },
                Invalid,
                "schedulingStrategy",
            ),
            // taskDefinition
            (
                "no task definition",
                CreateServiceRequest { task_definition: None, ..base() },
                Invalid,
                "taskDefinition",
            ),
            (
                "empty task definition",
                CreateServiceRequest { task_definition: Some(String::new()), ..base() },
                Invalid,
                "taskDefinition",
            ),
            // launchType, capacityProviderStrategy
            (
                "MANAGED_INSTANCES",
                CreateServiceRequest { launch_type: Some(LaunchType::ManagedInstances), ..base() },
                Unsupported,
                "launchType",
            ),
            (
                "launch type and capacity provider strategy",
                CreateServiceRequest {
                    launch_type: Some(LaunchType::Ec2),
                    capacity_provider_strategy: cps(&["FARGATE"]),
                    ..base()
                },
                Invalid,
                "capacityProviderStrategy",
            ),
            // Members not implemented yet
            (
                "load balancer without a target group",
                CreateServiceRequest { load_balancers: n(1), ..base() },
                Invalid,
                "loadBalancers[0].targetGroupArn",
            ),
            (
                "classic load balancer",
                CreateServiceRequest {
                    load_balancers: Some(vec![LoadBalancer {
                        load_balancer_name: Some("clb".into()),
                        ..lb()
                    }]),
                    ..base()
                },
                Invalid,
                "loadBalancers[0].loadBalancerName",
            ),
            (
                "load balancer without a container port",
                CreateServiceRequest {
                    load_balancers: Some(vec![LoadBalancer { container_port: None, ..lb() }]),
                    ..base()
                },
                Invalid,
                "loadBalancers[0].containerPort",
            ),
            (
                "load balancer port out of range",
                CreateServiceRequest {
                    load_balancers: Some(vec![LoadBalancer { container_port: Some(0), ..lb() }]),
                    ..base()
                },
                Invalid,
                "loadBalancers[0].containerPort",
            ),
            (
                "load balancer twice",
                CreateServiceRequest { load_balancers: Some(vec![lb(), lb()]), ..base() },
                Invalid,
                "loadBalancers",
            ),
            (
                "blue/green advanced configuration",
                CreateServiceRequest {
                    load_balancers: Some(vec![LoadBalancer {
                        advanced_configuration: Some(Default::default()),
                        ..lb()
                    }]),
                    ..base()
                },
                Invalid,
                "loadBalancers[0].advancedConfiguration.alternateTargetGroupArn",
            ),
            (
                "role",
                CreateServiceRequest { role: Some("ecsServiceRole".into()), ..base() },
                Unsupported,
                "role",
            ),
            (
                "service registry without its ARN",
                CreateServiceRequest { service_registries: n(1), ..base() },
                Invalid,
                "serviceRegistries[0].registryArn",
            ),
            (
                "two service registries",
                CreateServiceRequest { service_registries: n(2), ..base() },
                Invalid,
                "serviceRegistries",
            ),
            (
                "service connect enabled",
                CreateServiceRequest {
                    service_connect_configuration: Some(ServiceConnectConfiguration {
                        enabled: Some(true),
                        ..Default::default()
                    }),
                    ..base()
                },
                Unsupported,
                "serviceConnectConfiguration.namespace",
            ),
            (
                "service connect services",
                CreateServiceRequest {
                    service_connect_configuration: Some(ServiceConnectConfiguration {
                        enabled: Some(true),
                        namespace: Some("shop.local".into()),
                        services: Some(vec![ServiceConnectService::default()]),
                        ..Default::default()
                    }),
                    ..base()
                },
                Invalid,
                "serviceConnectConfiguration.services[0].portName",
            ),
            (
                "VPC Lattice",
                CreateServiceRequest { vpc_lattice_configurations: n(1), ..base() },
                Unsupported,
                "vpcLatticeConfigurations",
            ),
            (
                "EBS volume configuration",
                CreateServiceRequest { volume_configurations: n(1), ..base() },
                Unsupported,
                "volumeConfigurations",
            ),
            (
                "AZ rebalancing",
                CreateServiceRequest {
                    availability_zone_rebalancing: Some(AvailabilityZoneRebalancing::Enabled),
                    ..base()
                },
                Unsupported,
                "availabilityZoneRebalancing",
            ),
            (
                "execute command",
                CreateServiceRequest { enable_execute_command: Some(true), ..base() },
                Unsupported,
                "enableExecuteCommand",
            ),
            // schedulingStrategy, desiredCount
            (
                "replica without desired count",
                CreateServiceRequest { desired_count: None, ..base() },
                Invalid,
                "desiredCount",
            ),
            (
                "explicit replica without desired count",
                CreateServiceRequest {
                    desired_count: None,
                    scheduling_strategy: Some(SchedulingStrategy::Replica),
                    ..base()
                },
                Invalid,
                "desiredCount",
            ),
            (
                "negative desired count",
                CreateServiceRequest { desired_count: Some(-1), ..base() },
                Invalid,
                "desiredCount",
            ),
            (
                "daemon desired count 1",
                CreateServiceRequest { desired_count: Some(1), ..daemon() },
                Invalid,
                "desiredCount",
            ),
            (
                "daemon desired count 0",
                CreateServiceRequest { desired_count: Some(0), ..daemon() },
                Invalid,
                "desiredCount",
            ),
            // placement
            (
                "11 constraints",
                CreateServiceRequest { placement_constraints: n(11), ..base() },
                Invalid,
                "placementConstraints",
            ),
            (
                "6 strategies",
                CreateServiceRequest { placement_strategy: n(6), ..base() },
                Invalid,
                "placementStrategy",
            ),
            (
                "daemon strategy",
                CreateServiceRequest { placement_strategy: n(1), ..daemon() },
                Invalid,
                "placementStrategy",
            ),
            (
                "daemon 11 constraints",
                CreateServiceRequest { placement_constraints: n(11), ..daemon() },
                Invalid,
                "placementConstraints",
            ),
            // deploymentConfiguration: not implemented yet
            (
                "blue/green",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| {
                        d.strategy = Some(DeploymentStrategy::BlueGreen)
                    }),
                    ..base()
                },
                Unsupported,
                "loadBalancers",
            ),
            (
                "linear",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| d.strategy = Some(DeploymentStrategy::Linear)),
                    ..base()
                },
                Unsupported,
                "loadBalancers",
            ),
            (
                "canary",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| d.strategy = Some(DeploymentStrategy::Canary)),
                    ..base()
                },
                Unsupported,
                "loadBalancers",
            ),
            (
                "alarms",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| {
                        d.alarms = Some(DeploymentAlarms {
                            alarm_names: Some(vec!["cpu".into()]),
                            enable: Some(true),
                            rollback: Some(false),
                        })
                    }),
                    ..base()
                },
                Unsupported,
                "deploymentConfiguration.alarms",
            ),
            (
                "bake time",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| d.bake_time_in_minutes = Some(5)),
                    ..base()
                },
                Invalid,
                "deploymentConfiguration.bakeTimeInMinutes",
            ),
            (
                "lifecycle hooks",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| {
                        d.lifecycle_hooks = Some(vec![DeploymentLifecycleHook::default()])
                    }),
                    ..base()
                },
                Invalid,
                "deploymentConfiguration.lifecycleHooks[0]",
            ),
            (
                "linear configuration",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| {
                        d.linear_configuration = Some(LinearConfiguration::default())
                    }),
                    ..base()
                },
                Invalid,
                "deploymentConfiguration.linearConfiguration",
            ),
            (
                "canary configuration",
                CreateServiceRequest {
                    deployment_configuration: dc(|d| {
                        d.canary_configuration = Some(CanaryConfiguration::default())
                    }),
                    ..base()
                },
                Invalid,
                "deploymentConfiguration.canaryConfiguration",
            ),
            // deploymentConfiguration: values
            (
                "min -1",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(-1), None),
                    ..base()
                },
                Invalid,
                DC_MIN,
            ),
            (
                "min 101",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(101), None),
                    ..base()
                },
                Invalid,
                DC_MIN,
            ),
            (
                "max 99",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(0), Some(99)),
                    ..base()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "max 2001",
                CreateServiceRequest {
                    deployment_configuration: percents(None, Some(2001)),
                    ..base()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "max 100 with default min",
                CreateServiceRequest {
                    deployment_configuration: percents(None, Some(100)),
                    ..base()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "min 100, max 100",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(100), Some(100)),
                    ..base()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "daemon max 200",
                CreateServiceRequest {
                    deployment_configuration: percents(None, Some(200)),
                    ..daemon()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "daemon max 50",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(0), Some(50)),
                    ..daemon()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "daemon min 100",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(100), None),
                    ..daemon()
                },
                Invalid,
                DC_MIN,
            ),
            (
                "daemon min 101",
                CreateServiceRequest {
                    deployment_configuration: percents(Some(101), None),
                    ..daemon()
                },
                Invalid,
                DC_MIN,
            ),
            (
                "rollback without enable",
                CreateServiceRequest {
                    deployment_configuration: breaker(Some(false), Some(true)),
                    ..base()
                },
                Invalid,
                DC_ROLLBACK,
            ),
            (
                "rollback with enable absent",
                CreateServiceRequest {
                    deployment_configuration: breaker(None, Some(true)),
                    ..base()
                },
                Invalid,
                DC_ROLLBACK,
            ),
            // healthCheckGracePeriodSeconds
            (
                "negative grace period",
                CreateServiceRequest { health_check_grace_period_seconds: Some(-1), ..base() },
                Invalid,
                "healthCheckGracePeriodSeconds",
            ),
            // tags
            (
                "bad tag",
                CreateServiceRequest {
                    tags: Some(vec![Tag { key: Some("aws:x".into()), value: Some("v".into()) }]),
                    ..base()
                },
                Invalid,
                "tags[0].key",
            ),
        ];
        for (name, req, want_class, want_field) in cases {
            let err = validate_create(&req).expect_err(name);
            assert_eq!((class(&err), err.field()), (want_class, want_field), "{name}: {err}");
            assert!(!err.to_string().is_empty(), "{name}");
        }
    }

    #[test]
    fn messages() {
        let msg = |req: CreateServiceRequest| validate_create(&req).unwrap_err().to_string();
        assert_eq!(
            msg(CreateServiceRequest {
                launch_type: Some(LaunchType::Ec2),
                capacity_provider_strategy: cps(&["FARGATE"]),
                ..base()
            }),
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again."
        );
        // A strategy alone is the server's to check against the cluster's providers.
        assert!(
            validate_create(&CreateServiceRequest {
                capacity_provider_strategy: cps(&["FARGATE", "cp1"]),
                ..base()
            })
            .is_ok()
        );
        assert_eq!(
            msg(CreateServiceRequest { desired_count: Some(1), ..daemon() }),
            "desiredCount (1) can't be specified for a DAEMON service; it runs one task on each container instance."
        );
        assert!(msg(CreateServiceRequest { service_name: Some("a.b".into()), ..base() }).contains(
            "up to 255 characters: letters (uppercase and lowercase), numbers, underscores, and hyphens"
        ));
        assert!(
            msg(CreateServiceRequest { load_balancers: n(1), ..base() })
                .contains("targetGroupArn is required")
        );
        assert_eq!(
            validate_create(&CreateServiceRequest { load_balancers: Some(vec![lb()]), ..base() })
                .map(|_| ()),
            Ok(())
        );
        assert!(
            msg(CreateServiceRequest { service_registries: n(1), ..base() }).contains("Cloud Map")
        );
        let bg = msg(CreateServiceRequest {
            deployment_configuration: dc(|d| d.strategy = Some(DeploymentStrategy::BlueGreen)),
            ..base()
        });
        assert!(bg.contains("BLUE_GREEN") && bg.contains("advancedConfiguration"), "{bg}");
        let managed =
            msg(CreateServiceRequest { launch_type: Some(LaunchType::ManagedInstances), ..base() });
        assert!(managed.contains("launchType MANAGED_INSTANCES"), "{managed}");
        // FARGATE is accepted here; the server checks the task definition and network.
        assert!(
            validate_create(&CreateServiceRequest {
                launch_type: Some(LaunchType::Fargate),
                ..base()
            })
            .is_ok()
        );
        let cd = msg(CreateServiceRequest {
            deployment_controller: Some(DeploymentController {
                r#type: Some(DeploymentControllerType::CodeDeploy),
            }),
            ..base()
        });
        assert!(cd.contains("CODE_DEPLOY"), "{cd}");
        assert!(
            validate_update(
                &UpdateServiceRequest {
                    capacity_provider_strategy: cps(&["cp"]),
                    ..Default::default()
                },
                &ServiceSettings::defaults(false),
            )
            .is_ok()
        );
    }

    fn current() -> ServiceSettings {
        ServiceSettings {
            daemon: false,
            desired_count: 3,
            minimum_healthy_percent: 50,
            maximum_percent: 150,
            circuit_breaker: true,
            rollback: false,
            health_check_grace_period_seconds: 30,
            shift: None,
        }
    }

    fn current_daemon() -> ServiceSettings {
        ServiceSettings { health_check_grace_period_seconds: 10, ..ServiceSettings::defaults(true) }
    }

    fn upd() -> UpdateServiceRequest {
        UpdateServiceRequest { service: Some("web".into()), ..Default::default() }
    }

    #[test]
    fn update_accepts() {
        type Case = (&'static str, ServiceSettings, UpdateServiceRequest, fn(&mut ServiceSettings));
        let cases: Vec<Case> = vec![
            ("nothing", current(), upd(), |_| {}),
            (
                "no-check members",
                current(),
                UpdateServiceRequest {
                    force_new_deployment: Some(true),
                    task_definition: Some("web:2".into()),
                    propagate_tags: Some(PropagateTags::None),
                    enable_ecs_managed_tags: Some(false),
                    load_balancers: Some(vec![]),
                    service_registries: Some(vec![]),
                    capacity_provider_strategy: Some(vec![]),
                    availability_zone_rebalancing: Some(AvailabilityZoneRebalancing::Disabled),
                    enable_execute_command: Some(false),
                    deployment_controller: Some(DeploymentController {
                        r#type: Some(DeploymentControllerType::Ecs),
                    }),
                    ..upd()
                },
                |_| {},
            ),
            (
                "desired count",
                current(),
                UpdateServiceRequest { desired_count: Some(7), ..upd() },
                |s| s.desired_count = 7,
            ),
            (
                "desired count 0",
                current(),
                UpdateServiceRequest { desired_count: Some(0), ..upd() },
                |s| s.desired_count = 0,
            ),
            (
                "max only keeps min",
                current(),
                UpdateServiceRequest {
                    deployment_configuration: percents(None, Some(300)),
                    ..upd()
                },
                |s| s.maximum_percent = 300,
            ),
            (
                "min only keeps max",
                current(),
                UpdateServiceRequest {
                    deployment_configuration: percents(Some(100), None),
                    ..upd()
                },
                |s| s.minimum_healthy_percent = 100,
            ),
            (
                "empty deployment configuration",
                current(),
                UpdateServiceRequest { deployment_configuration: dc(|_| {}), ..upd() },
                |_| {},
            ),
            (
                "rollback keeps enable",
                current(),
                UpdateServiceRequest {
                    deployment_configuration: breaker(None, Some(true)),
                    ..upd()
                },
                |s| s.rollback = true,
            ),
            (
                "disable breaker",
                current(),
                UpdateServiceRequest {
                    deployment_configuration: breaker(Some(false), Some(false)),
                    ..upd()
                },
                |s| s.circuit_breaker = false,
            ),
            (
                "grace period",
                current(),
                UpdateServiceRequest { health_check_grace_period_seconds: Some(0), ..upd() },
                |s| s.health_check_grace_period_seconds = 0,
            ),
            (
                "placement",
                current(),
                UpdateServiceRequest {
                    placement_constraints: n(10),
                    placement_strategy: n(5),
                    ..upd()
                },
                |_| {},
            ),
            (
                "daemon constraints and min",
                current_daemon(),
                UpdateServiceRequest {
                    placement_constraints: n(1),
                    placement_strategy: Some(vec![]),
                    deployment_configuration: percents(Some(50), Some(100)),
                    ..upd()
                },
                |s| s.minimum_healthy_percent = 50,
            ),
        ];
        for (name, cur, req, change) in cases {
            let mut want = cur.clone();
            change(&mut want);
            assert_eq!(validate_update(&req, &cur), Ok(want), "{name}");
        }
    }

    #[test]
    fn update_refuses() {
        let legacy =
            ServiceSettings { minimum_healthy_percent: 50, maximum_percent: 100, ..current() };
        let no_breaker = ServiceSettings { circuit_breaker: false, ..current() };
        let cases: Vec<(&str, ServiceSettings, UpdateServiceRequest, Class, &str)> = vec![
            (
                "negative desired count",
                current(),
                UpdateServiceRequest { desired_count: Some(-2), ..upd() },
                Invalid,
                "desiredCount",
            ),
            (
                "daemon desired count",
                current_daemon(),
                UpdateServiceRequest { desired_count: Some(1), ..upd() },
                Invalid,
                "desiredCount",
            ),
            (
                "daemon strategy",
                current_daemon(),
                UpdateServiceRequest { placement_strategy: n(1), ..upd() },
                Invalid,
                "placementStrategy",
            ),
            (
                "11 constraints",
                current(),
                UpdateServiceRequest { placement_constraints: n(11), ..upd() },
                Invalid,
                "placementConstraints",
            ),
            (
                "6 strategies",
                current(),
                UpdateServiceRequest { placement_strategy: n(6), ..upd() },
                Invalid,
                "placementStrategy",
            ),
            (
                "min 101",
                current(),
                UpdateServiceRequest {
                    deployment_configuration: percents(Some(101), None),
                    ..upd()
                },
                Invalid,
                DC_MIN,
            ),
            (
                "max 99",
                current(),
                UpdateServiceRequest {
                    deployment_configuration: percents(None, Some(99)),
                    ..upd()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "max 2001",
                current(),
                UpdateServiceRequest {
                    deployment_configuration: percents(None, Some(2001)),
                    ..upd()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "min 100 against current max 100",
                legacy.clone(),
                UpdateServiceRequest {
                    deployment_configuration: percents(Some(100), None),
                    ..upd()
                },
                Invalid,
                DC_MIN,
            ),
            (
                "max 100 against min 100",
                ServiceSettings { minimum_healthy_percent: 100, ..current() },
                UpdateServiceRequest {
                    deployment_configuration: percents(None, Some(100)),
                    ..upd()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "daemon max 200",
                current_daemon(),
                UpdateServiceRequest {
                    deployment_configuration: percents(None, Some(200)),
                    ..upd()
                },
                Invalid,
                DC_MAX,
            ),
            (
                "daemon min 100",
                current_daemon(),
                UpdateServiceRequest {
                    deployment_configuration: percents(Some(100), None),
                    ..upd()
                },
                Invalid,
                DC_MIN,
            ),
            (
                "rollback on a service without breaker",
                no_breaker,
                UpdateServiceRequest {
                    deployment_configuration: breaker(None, Some(true)),
                    ..upd()
                },
                Invalid,
                DC_ROLLBACK,
            ),
            (
                "disable breaker, keep rollback",
                ServiceSettings { rollback: true, ..current() },
                UpdateServiceRequest {
                    deployment_configuration: breaker(Some(false), None),
                    ..upd()
                },
                Invalid,
                DC_ROLLBACK,
            ),
            (
                "negative grace period",
                current(),
                UpdateServiceRequest { health_check_grace_period_seconds: Some(-1), ..upd() },
                Invalid,
                "healthCheckGracePeriodSeconds",
            ),
            (
                "CODE_DEPLOY controller",
                current(),
                UpdateServiceRequest {
                    deployment_controller: Some(DeploymentController {
                        r#type: Some(DeploymentControllerType::CodeDeploy),
                    }),
                    ..upd()
                },
                Unsupported,
                "deploymentController.type",
            ),
            (
                "load balancer without a container name",
                current(),
                UpdateServiceRequest {
                    load_balancers: Some(vec![LoadBalancer { container_name: None, ..lb() }]),
                    ..upd()
                },
                Invalid,
                "loadBalancers[0].containerName",
            ),
            (
                "service registry without its ARN",
                current(),
                UpdateServiceRequest { service_registries: n(1), ..upd() },
                Invalid,
                "serviceRegistries[0].registryArn",
            ),
            (
                "service connect",
                current(),
                UpdateServiceRequest {
                    service_connect_configuration: Some(ServiceConnectConfiguration {
                        enabled: Some(true),
                        ..Default::default()
                    }),
                    ..upd()
                },
                Unsupported,
                "serviceConnectConfiguration.namespace",
            ),
            (
                "VPC Lattice",
                current(),
                UpdateServiceRequest { vpc_lattice_configurations: n(1), ..upd() },
                Unsupported,
                "vpcLatticeConfigurations",
            ),
            (
                "EBS volumes",
                current(),
                UpdateServiceRequest { volume_configurations: n(1), ..upd() },
                Unsupported,
                "volumeConfigurations",
            ),
            (
                "AZ rebalancing",
                current(),
                UpdateServiceRequest {
                    availability_zone_rebalancing: Some(AvailabilityZoneRebalancing::Enabled),
                    ..upd()
                },
                Unsupported,
                "availabilityZoneRebalancing",
            ),
            (
                "execute command",
                current(),
                UpdateServiceRequest { enable_execute_command: Some(true), ..upd() },
                Unsupported,
                "enableExecuteCommand",
            ),
            (
                "bake time",
                current(),
                UpdateServiceRequest {
                    deployment_configuration: dc(|d| d.bake_time_in_minutes = Some(0)),
                    ..upd()
                },
                Invalid,
                "deploymentConfiguration.bakeTimeInMinutes",
            ),
        ];
        for (name, cur, req, want_class, want_field) in cases {
            let err = validate_update(&req, &cur).expect_err(name);
            assert_eq!((class(&err), err.field()), (want_class, want_field), "{name}: {err}");
        }
        // An update that leaves deploymentConfiguration's percentages alone is not refused
        // for the stored ones.
        let stored =
            ServiceSettings { minimum_healthy_percent: 100, maximum_percent: 100, ..current() };
        assert!(
            validate_update(&UpdateServiceRequest { desired_count: Some(1), ..upd() }, &stored)
                .is_ok()
        );
    }

    #[test]
    fn wire_deployment_configuration() {
        let replica = ServiceSettings::defaults(false);
        let json = serde_json::to_value(deployment_configuration(&replica)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "deploymentCircuitBreaker": {"enable": false, "rollback": false},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
                "strategy": "ROLLING",
            })
        );
        let d = ServiceSettings {
            circuit_breaker: true,
            rollback: true,
            ..ServiceSettings::defaults(true)
        };
        let json = serde_json::to_value(deployment_configuration(&d)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "deploymentCircuitBreaker": {"enable": true, "rollback": true},
                "maximumPercent": 100,
                "minimumHealthyPercent": 0,
                "strategy": "ROLLING",
            })
        );
    }

    #[test]
    fn from_service_round_trip() {
        for s in [current(), current_daemon(), ServiceSettings::defaults(false)] {
            let service = Service {
                scheduling_strategy: Some(s.scheduling_strategy()),
                desired_count: Some(if s.daemon { 4 } else { s.desired_count }),
                deployment_configuration: Some(deployment_configuration(&s)),
                health_check_grace_period_seconds: Some(s.health_check_grace_period_seconds),
                ..Default::default()
            };
            assert_eq!(ServiceSettings::from_service(&service), s);
        }
        assert_eq!(
            ServiceSettings::from_service(&Service::default()),
            ServiceSettings::defaults(false)
        );
        let daemon =
            Service { scheduling_strategy: Some(SchedulingStrategy::Daemon), ..Default::default() };
        assert_eq!(ServiceSettings::from_service(&daemon), ServiceSettings::defaults(true));
    }

    #[test]
    fn settings_serde() {
        let json = serde_json::to_value(current()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "daemon": false,
                "desiredCount": 3,
                "minimumHealthyPercent": 50,
                "maximumPercent": 150,
                "circuitBreaker": true,
                "rollback": false,
                "healthCheckGracePeriodSeconds": 30,
            })
        );
        assert_eq!(serde_json::from_value::<ServiceSettings>(json).unwrap(), current());
    }

    #[test]
    fn update_external_allows_only_ecs_list() {
        let ok = [
            UpdateServiceRequest { desired_count: Some(3), ..upd() },
            UpdateServiceRequest { health_check_grace_period_seconds: Some(5), ..upd() },
            UpdateServiceRequest { propagate_tags: Some(PropagateTags::Service), ..upd() },
            UpdateServiceRequest { force_new_deployment: Some(false), ..upd() },
        ];
        for r in ok {
            assert!(validate_update_external(&r).is_ok(), "{r:?}");
        }
        let refused: Vec<(UpdateServiceRequest, &str)> = vec![
            (
                UpdateServiceRequest { task_definition: Some("web:2".into()), ..upd() },
                "taskDefinition",
            ),
            (
                UpdateServiceRequest { force_new_deployment: Some(true), ..upd() },
                "forceNewDeployment",
            ),
            (
                UpdateServiceRequest {
                    deployment_configuration: percents(Some(50), None),
                    ..upd()
                },
                "deploymentConfiguration",
            ),
            (
                UpdateServiceRequest { platform_version: Some("LATEST".into()), ..upd() },
                "platformVersion",
            ),
            (UpdateServiceRequest { load_balancers: n(0), ..upd() }, "loadBalancers"),
        ];
        for (r, field) in refused {
            let e = validate_update_external(&r).unwrap_err();
            assert_eq!(e.field(), field);
            assert!(e.to_string().contains("EXTERNAL deployment controller"), "{e}");
        }
    }
}

#[cfg(test)]
mod service_registry_tests {
    use super::*;

    const ARN: &str = "arn:aws:servicediscovery:us-east-1:000000000000:service/srv-abc";

    fn reg(port: Option<i32>, name: Option<&str>, cport: Option<i32>) -> ServiceRegistry {
        ServiceRegistry {
            registry_arn: Some(ARN.into()),
            port,
            container_name: name.map(str::to_string),
            container_port: cport,
        }
    }

    fn field(regs: &[ServiceRegistry]) -> Option<String> {
        match check_service_registries(regs) {
            Ok(()) => None,
            Err(e @ ServiceRuleError::Invalid(_)) => Some(e.field().to_string()),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn registries_follow_ecs_rules() {
        assert_eq!(field(&[]), None);
        assert_eq!(field(&[reg(None, None, None)]), None);
        assert_eq!(field(&[reg(Some(80), None, None)]), None);
        assert_eq!(field(&[reg(None, Some("web"), Some(8080))]), None);
        let cases: [(Vec<ServiceRegistry>, &str); 7] = [
            (vec![reg(None, None, None), reg(None, None, None)], "serviceRegistries"),
            (
                vec![ServiceRegistry {
                    registry_arn: Some("srv-abc".into()),
                    ..reg(None, None, None)
                }],
                "serviceRegistries[0].registryArn",
            ),
            (vec![ServiceRegistry::default()], "serviceRegistries[0].registryArn"),
            (vec![reg(Some(70000), None, None)], "serviceRegistries[0].port"),
            (vec![reg(None, Some("web"), None)], "serviceRegistries[0].containerPort"),
            (vec![reg(None, None, Some(80))], "serviceRegistries[0].containerName"),
            (vec![reg(Some(80), Some("web"), Some(80))], "serviceRegistries[0].port"),
        ];
        for (regs, want) in cases {
            assert_eq!(field(&regs).as_deref(), Some(want), "{regs:?}");
        }
    }
}
