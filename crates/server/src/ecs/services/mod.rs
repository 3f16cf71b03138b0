//! Services: CreateService, UpdateService, DeleteService, DescribeServices, ListServices.
//!
//! The API writes a service's configuration and adds deployments; the service controller
//! (`controller.rs`) does everything else: it starts and stops tasks, keeps the
//! counts, rollout states and events, and retires deployments. Both write the service record
//! with compare-and-set. A deleted service is DRAINING until its tasks are gone, then
//! INACTIVE (moved to `ecs/services-inactive/`, still describable, its name free again).
//!
//! A service with the `EXTERNAL` deployment controller has no deployments: its tasks belong
//! to the task sets its owner creates (`task_sets.rs`), its task definition is optional, and
//! UpdateService may change only what ECS allows there (desired count, placement, grace
//! period, tag settings); a new desired count rescales every task set. `CODE_DEPLOY` is
//! refused (blue/green needs CodeDeploy and a load balancer).
//!
//! A service runs either a launch type or a capacity provider strategy (the request's, or on
//! create without either the cluster's default), never both; the strategy is stored on the
//! service and on each deployment, whose tasks the controller splits by it. UpdateService
//! changes it only with `forceNewDeployment` (ECS's rule), which starts the deployment
//! that carries it; an empty list goes back to launch type EC2.
//!
//! `loadBalancers` are checked against the region's target groups and the task definition
//! (`load_balancers.rs`); the controller registers and deregisters the tasks
//! (`controller/load_balancing.rs`). UpdateService may add load balancers to a service
//! without any (a new deployment) or repeat the current ones; changing or removing them is
//! refused as not implemented yet.

use berth_model::keys;
use berth_model::service::{DeploymentRecord, ServiceRecord, new_deployment_id};
use berth_model::service_rules::{self, ServiceRuleError};
use berth_model::service_shift;
use berth_model::tags;
use berth_wire::AwsError;
use berth_wire::ecs::*;

pub mod controller;
pub mod deployments;
pub mod load_balancers;
pub mod task_sets;

use std::sync::Arc;

use self::task_sets::check_placement_alone;
use super::RequestContext;
use super::clusters::Clusters;
use super::core::{Core, cluster_not_found};
use super::describe::ByIds;
use super::task_definitions::TaskDefinitions;
use crate::error;
use crate::pagination::Page;
use crate::records;
use berth_model::service_rules::ServiceSettings;

/// Owns service records (`ecs/services/`, `ecs/services-inactive/`); the controller owns
/// their tasks.
pub struct Services {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    task_definitions: Arc<TaskDefinitions>,
}

/// A rule violation as the right AWS error.
pub(super) fn rule_error(e: ServiceRuleError) -> AwsError {
    match e {
        ServiceRuleError::Invalid(m) => error::model(m),
        ServiceRuleError::Unsupported { message, .. } => {
            ErrorCode::UnsupportedFeatureException.with(message)
        }
    }
}

fn not_found() -> AwsError {
    ErrorCode::ServiceNotFoundException.with("Service not found.")
}

fn not_active() -> AwsError {
    ErrorCode::ServiceNotActiveException.with("Service was not ACTIVE.")
}

/// Where a service record was found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// `ecs/services/...`: ACTIVE or DRAINING.
    Live,
    /// `ecs/services-inactive/...`.
    Inactive,
}

impl Services {
    pub fn new(
        core: Arc<Core>,
        clusters: Arc<Clusters>,
        task_definitions: Arc<TaskDefinitions>,
    ) -> Self {
        Self { core, clusters, task_definitions }
    }

    /// A service's ARN in the long format (`service/<cluster>/<name>`), which every service
    /// created with `serviceLongArnFormat` enabled (the default) has.
    pub(super) fn service_arn(&self, cluster: &str, name: &str) -> String {
        self.core.scope.ecs_arn(&format!("service/{cluster}/{name}"))
    }

    /// The ARN a new service gets: the long format, or `service/<name>` when its creator's
    /// `serviceLongArnFormat` setting is disabled.
    fn new_service_arn(&self, cluster: &str, name: &str, long: bool) -> String {
        if long {
            self.service_arn(cluster, name)
        } else {
            self.core.scope.ecs_arn(&format!("service/{name}"))
        }
    }

    /// The service name a request gives (a name or an ARN of this cluster).
    fn service_name<'a>(&self, cluster: &str, given: &'a str) -> Option<&'a str> {
        self.core.scope.child_id("service", cluster, given)
    }

    /// A service by name, live first, then inactive.
    pub(super) async fn find_service(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<Option<(ServiceRecord, u64, Found)>, AwsError> {
        if let Some((r, rev)) =
            records::get(&*self.core.store, &keys::service(cluster, name)).await?
        {
            return Ok(Some((r, rev, Found::Live)));
        }
        Ok(records::get(&*self.core.store, &keys::inactive_service(cluster, name))
            .await?
            .map(|(r, rev)| (r, rev, Found::Inactive)))
    }

    /// Read-modify-write of a live (ACTIVE or DRAINING) service record with compare-and-set,
    /// serialised per service on this server. `f` edits the record or refuses; a record it
    /// leaves unchanged is not written. `Ok(None)`: the service has no live record (see
    /// [`Self::no_live_service`]).
    pub(super) async fn update_service_record(
        &self,
        cluster: &str,
        name: &str,
        mut f: impl FnMut(&mut ServiceRecord) -> Result<(), AwsError>,
    ) -> Result<Option<ServiceRecord>, AwsError> {
        let key = keys::service(cluster, name);
        let _serial = self.core.serialise(&key).await;
        let updated = records::update(
            &*self.core.store,
            &key,
            &format!("service {name}"),
            |rec: &mut ServiceRecord| {
                let before = rec.clone();
                f(rec)?;
                if *rec != before {
                    rec.version += 1;
                }
                Ok(())
            },
        )
        .await?;
        if updated.is_some() {
            self.core.services_changed();
        }
        Ok(updated)
    }

    /// The error for a service without a live record: ServiceNotActiveException when it is
    /// INACTIVE, ServiceNotFoundException when it never existed.
    pub(super) async fn no_live_service(&self, cluster: &str, name: &str) -> AwsError {
        match self.find_service(cluster, name).await {
            Ok(Some(_)) => not_active(),
            Ok(None) => not_found(),
            Err(e) => e,
        }
    }

    /// The wire shape, with deployments, counts and events.
    pub(super) fn render_service(&self, rec: &ServiceRecord, with_tags: bool) -> Service {
        let mut s = rec.service.clone();
        s.deployments = Some(
            rec.deployments
                .iter()
                .map(|d| {
                    // Deployments show the service's network configuration and platform.
                    let mut w = d.to_wire();
                    w.network_configuration = rec.service.network_configuration.clone();
                    w.platform_version = rec.service.platform_version.clone();
                    w.platform_family = rec.service.platform_family.clone();
                    w
                })
                .collect(),
        );
        s.running_count = Some(rec.deployments.iter().map(|d| d.running_count).sum());
        s.pending_count = Some(rec.deployments.iter().map(|d| d.pending_count).sum());
        if rec.settings.daemon {
            s.desired_count = Some(rec.deployments.first().map(|d| d.desired_count).unwrap_or(0));
        }
        if rec.is_external() {
            // EXTERNAL: the tasks are the task sets'.
            s.task_sets = Some(rec.task_sets.iter().map(|t| t.to_wire(false)).collect());
            s.running_count =
                Some(rec.task_sets.iter().filter_map(|t| t.task_set.running_count).sum());
            s.pending_count =
                Some(rec.task_sets.iter().filter_map(|t| t.task_set.pending_count).sum());
        }
        s.events = Some(rec.events.clone());
        s.deployment_configuration = Some(service_rules::deployment_configuration(&rec.settings));
        s.current_service_deployment =
            rec.deployments.first().map(|d| self.service_deployment_arn(rec, &d.id));
        if with_tags {
            s.tags = Some(rec.tags.clone());
        }
        s
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:service-deployment/CLUSTER/SERVICE/ID`.
    pub(super) fn service_deployment_arn(&self, rec: &ServiceRecord, deployment: &str) -> String {
        let id = deployment.strip_prefix("ecs-svc/").unwrap_or(deployment);
        self.core.scope.ecs_arn(&format!("service-deployment/{}/{}/{id}", rec.cluster, rec.name))
    }

    /// The placement members of a request, checked against the task definition's
    /// constraints (at most 10 together).
    async fn check_placement(
        &self,
        td_arn: &str,
        constraints: &[PlacementConstraint],
        strategies: &[PlacementStrategy],
    ) -> Result<(), AwsError> {
        let rec = self.task_definitions.runnable(td_arn).await?;
        let td = &rec.task_definition;
        berth_scheduler::wire::constraints(
            constraints,
            td.placement_constraints.as_deref().unwrap_or(&[]),
        )
        .map_err(|e| error::invalid(e.to_string()))?;
        berth_scheduler::wire::strategies(strategies).map_err(|e| error::invalid(e.to_string()))?;
        Ok(())
    }
}

/// Whether a service runs on Fargate: launch type FARGATE, or a strategy of FARGATE /
/// FARGATE_SPOT only.
pub(super) fn service_on_fargate(
    launch_type: Option<LaunchType>,
    strategy: Option<&[CapacityProviderStrategyItem]>,
) -> bool {
    launch_type == Some(LaunchType::Fargate)
        || strategy.is_some_and(|s| {
            !s.is_empty()
                && s.iter().all(|i| {
                    i.capacity_provider.as_deref().is_some_and(super::fargate::is_fargate_provider)
                })
        })
}

impl Services {
    /// CreateService's and UpdateService's checks of what the service's tasks will run
    /// with: a Fargate-compatible task definition and platform version on Fargate, and the
    /// network configuration an awsvpc task definition needs (`crate::ecs::awsvpc::plan`).
    pub(super) async fn check_launch(
        &self,
        td_arn: &str,
        fargate: bool,
        network: Option<&NetworkConfiguration>,
        platform_version: Option<&str>,
    ) -> Result<(), AwsError> {
        let rec = self.task_definitions.by_arn(td_arn).await?;
        let td = &rec.task_definition;
        if fargate {
            super::fargate::check_task_definition(td)?;
            super::fargate::platform_version(platform_version)?;
        }
        super::awsvpc::plan(&*self.core.store, td.network_mode, network, fargate).await?;
        Ok(())
    }
}

impl Services {
    /// `loadBalancers` checked against the target groups and the task definition `td_arn`
    /// (see [`load_balancers::check`]).
    async fn check_load_balancers(
        &self,
        lbs: &[LoadBalancer],
        td_arn: &str,
    ) -> Result<(), AwsError> {
        let td = self.task_definitions.by_arn(td_arn).await?;
        load_balancers::check(
            self.core.load_balancing.get().map(|l| &**l),
            lbs,
            &td.task_definition,
        )
        .await
    }
}

impl ServicesApi<RequestContext> for Services {
    async fn create_service(
        &self,
        ctx: &RequestContext,
        input: CreateServiceRequest,
    ) -> Result<CreateServiceResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let settings = service_rules::validate_create(&input).map_err(rule_error)?;
        let name = input.service_name.clone().unwrap_or_default();
        let service_tags = input.tags.clone().unwrap_or_default();
        tags::validate(&service_tags, "tags").map_err(error::model)?;
        let controller = input
            .deployment_controller
            .as_ref()
            .and_then(|c| c.r#type)
            .unwrap_or(DeploymentControllerType::Ecs);
        let external = controller == DeploymentControllerType::External;
        let long_arn = super::account_settings::long_arn_format(
            &self.core,
            Some(&ctx.principal.arn),
            SettingName::ServiceLongArnFormat,
        )
        .await?;
        // The capacity provider strategy the service runs with, if any (else a launch type).
        let strategy = match self.clusters.live_cluster(&cluster).await? {
            Some((cluster_rec, _)) => super::capacity_providers::service_strategy(
                input.capacity_provider_strategy.as_deref(),
                input.launch_type,
                &cluster_rec,
                settings.daemon,
                external,
            )?,
            None => None,
        };
        let constraints = input.placement_constraints.clone().unwrap_or_default();
        let strategies = input.placement_strategy.clone().unwrap_or_default();
        // An EXTERNAL service may omit its task definition (each task set names one).
        let td_arn = match input.task_definition.as_deref().filter(|t| !t.is_empty() || !external) {
            Some(given) => {
                let td_rec = self.task_definitions.runnable(given).await?;
                let arn = td_rec.task_definition.task_definition_arn.clone().unwrap_or_default();
                self.check_placement(&arn, &constraints, &strategies).await?;
                Some(arn)
            }
            None => {
                check_placement_alone(&constraints, &strategies)?;
                None
            }
        };
        let fargate = service_on_fargate(input.launch_type, strategy.as_deref());
        if let Some(td) = &td_arn {
            self.check_launch(
                td,
                fargate,
                input.network_configuration.as_ref(),
                input.platform_version.as_deref(),
            )
            .await?;
        }
        // serviceRegistries (issue #17): checked against the task definition and Cloud Map.
        let registries = input.service_registries.clone().unwrap_or_default();
        if !registries.is_empty() {
            let Some(td) = td_arn.as_deref().filter(|_| !external) else {
                return Err(ErrorCode::UnsupportedFeatureException.with(
                    "serviceRegistries: a service with the EXTERNAL deployment controller registers its task sets' tasks, which Berth does not implement yet. Omit serviceRegistries.",
                ));
            };
            let td_rec = self.task_definitions.by_arn(td).await?;
            crate::servicediscovery::ecs_registrations::check(
                &*self.core.store,
                &td_rec.task_definition,
                &registries,
            )
            .await?;
        }
        let lbs = input.load_balancers.clone().unwrap_or_default();
        if !lbs.is_empty() {
            let Some(td) = td_arn.as_deref().filter(|_| !external) else {
                return Err(ErrorCode::UnsupportedFeatureException.with(
                    "loadBalancers: a service with the EXTERNAL deployment controller takes its load balancers on each task set, which Berth does not implement yet. Omit loadBalancers.",
                ));
            };
            self.check_load_balancers(&lbs, td).await?;
        }
        // serviceConnectConfiguration (issue #17): against this server, the task definition
        // and Cloud Map.
        let (sc_config, sc_resources) = match &input.service_connect_configuration {
            Some(sc) if berth_model::service_connect::enabled(sc) => {
                let Some(td) = td_arn.as_deref().filter(|_| !external) else {
                    return Err(ErrorCode::UnsupportedFeatureException.with(
                        "serviceConnectConfiguration: Service Connect for a service with the EXTERNAL deployment controller is not implemented by Berth yet.",
                    ));
                };
                let td_rec = self.task_definitions.by_arn(td).await?;
                crate::servicediscovery::service_connect::check::prepare(
                    &*self.core.store,
                    self.core.timing.service_connect_address,
                    &td_rec.task_definition,
                    sc,
                )
                .await?
                .map_or((None, vec![]), |(c, r)| (Some(c), r))
            }
            _ => (None, vec![]),
        };
        let _serial = self.core.serialise(&keys::service(&cluster, &name)).await;
        let what = format!("service {name}");
        let rec = {
            let mut cas = records::Cas::new(&*self.core.store, &what);
            'cas: loop {
                cas.attempt().await?;
                let Some((_, cluster_rev)) = self.clusters.live_cluster(&cluster).await? else {
                    return Err(cluster_not_found());
                };
                let key = keys::service(&cluster, &name);
                if let Some((existing, _)) =
                    records::get::<ServiceRecord>(&*self.core.store, &key).await?
                {
                    if input.client_token.is_some() && existing.client_token == input.client_token {
                        break 'cas existing;
                    }
                    return Err(error::invalid("Creation of service was not idempotent."));
                }
                let now = self.core.now();
                let launch_type = if external || strategy.is_some() {
                    input.launch_type
                } else {
                    input.launch_type.or(Some(LaunchType::Ec2))
                };
                let service = Service {
                    service_arn: Some(self.new_service_arn(&cluster, &name, long_arn)),
                    service_name: Some(name.clone()),
                    cluster_arn: Some(self.core.scope.cluster_arn(&cluster)),
                    load_balancers: Some(lbs.clone()),
                    service_registries: Some(registries.clone()),
                    status: Some("ACTIVE".into()),
                    desired_count: Some(settings.desired_count),
                    launch_type,
                    capacity_provider_strategy: strategy.clone(),
                    task_definition: td_arn.clone(),
                    created_at: Some(now),
                    placement_constraints: Some(constraints.clone()),
                    placement_strategy: Some(strategies.clone()),
                    health_check_grace_period_seconds: input.health_check_grace_period_seconds,
                    scheduling_strategy: Some(if settings.daemon {
                        SchedulingStrategy::Daemon
                    } else {
                        SchedulingStrategy::Replica
                    }),
                    deployment_controller: Some(DeploymentController { r#type: Some(controller) }),
                    created_by: Some(ctx.principal.arn.clone()),
                    enable_ecs_managed_tags: Some(input.enable_ecs_managed_tags.unwrap_or(false)),
                    propagate_tags: Some(input.propagate_tags.unwrap_or(PropagateTags::None)),
                    enable_execute_command: Some(false),
                    network_configuration: input.network_configuration.clone(),
                    platform_version: fargate
                        .then(|| input.platform_version.clone().unwrap_or_else(|| "LATEST".into())),
                    platform_family: fargate.then(|| super::fargate::PLATFORM_FAMILY.to_string()),
                    ..Default::default()
                };
                let first_traffic = service_shift::new_record(&[], &lbs, None);
                // EXTERNAL services have task sets instead of deployments.
                let deployments = match (&td_arn, external) {
                    (Some(td), false) => vec![
                        DeploymentRecord::new(
                            new_deployment_id(),
                            td.clone(),
                            launch_type,
                            settings.desired_count,
                            now,
                        )
                        .with_strategy(strategy.clone().unwrap_or_default())
                        .with_service_connect(sc_config.clone(), sc_resources.clone())
                        .with_traffic(first_traffic.clone()),
                    ],
                    _ => vec![],
                };
                let rec = ServiceRecord {
                    name: name.clone(),
                    cluster: cluster.clone(),
                    service,
                    settings: settings.clone(),
                    deployments,
                    past_deployments: vec![],
                    events: vec![],
                    tags: service_tags.clone(),
                    client_token: input.client_token.clone(),
                    steady_since: None,
                    event_seq: 0,
                    version: 1,
                    task_sets: vec![],
                };
                let short = keys::service_short_arn(&cluster, &name);
                let txn = berth_store::Txn::new()
                    .when(keys::cluster(&cluster), cluster_rev)
                    .when(key.clone(), 0)
                    .put(key, records::encode(&rec))
                    .delete(keys::inactive_service(&cluster, &name));
                let txn = if long_arn { txn.delete(short) } else { txn.put(short, Vec::new()) };
                if cas.commit(txn).await? {
                    break 'cas rec;
                }
            }
        };
        self.core.services_changed();
        Ok(CreateServiceResponse { service: Some(self.render_service(&rec, false)) })
    }

    async fn update_service(
        &self,
        _ctx: &RequestContext,
        input: UpdateServiceRequest,
    ) -> Result<UpdateServiceResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.service.clone().unwrap_or_default();
        let name = self.service_name(&cluster, &given).ok_or_else(not_found)?.to_string();
        // A new capacity provider strategy: `Some(empty)` goes back to a launch type (EC2),
        // as ECS documents for an empty list.
        let new_strategy = match input.capacity_provider_strategy.as_deref() {
            None => None,
            Some([]) => Some(vec![]),
            Some(given) => match self.clusters.live_cluster(&cluster).await? {
                Some((cluster_rec, _)) => super::capacity_providers::service_strategy(
                    Some(given),
                    None,
                    &cluster_rec,
                    false,
                    false,
                )?,
                None => return Err(cluster_not_found()),
            },
        };
        // A new task definition, resolved once (a family gives its latest ACTIVE revision).
        let new_td = match input.task_definition.as_deref() {
            Some(td) => Some(
                self.task_definitions
                    .runnable(td)
                    .await?
                    .task_definition
                    .task_definition_arn
                    .clone()
                    .unwrap_or_default(),
            ),
            None => None,
        };
        // Placement is checked (it reads task definitions) before the write, against the
        // values the update will leave.
        let Some((current, _, Found::Live)) = self.find_service(&cluster, &name).await? else {
            return Err(self.no_live_service(&cluster, &name).await);
        };
        let current_controller = current
            .service
            .deployment_controller
            .as_ref()
            .and_then(|c| c.r#type)
            .unwrap_or(DeploymentControllerType::Ecs);
        if let Some(t) = input.deployment_controller.as_ref().and_then(|c| c.r#type)
            && t != current_controller
        {
            return Err(ErrorCode::UnsupportedFeatureException.with(format!(
                "deploymentController: changing a service's deployment controller ({current_controller} to {t}) is not implemented by Berth yet; create a new service with deploymentController type {t}."
            )));
        }
        if current.is_external() {
            return self.update_external_service(&cluster, &name, &input).await;
        }
        let placement = |rec: &ServiceRecord| {
            let td = new_td
                .clone()
                .unwrap_or_else(|| rec.service.task_definition.clone().unwrap_or_default());
            let constraints = input
                .placement_constraints
                .clone()
                .or_else(|| rec.service.placement_constraints.clone())
                .unwrap_or_default();
            let strategies = input
                .placement_strategy
                .clone()
                .or_else(|| rec.service.placement_strategy.clone())
                .unwrap_or_default();
            (td, constraints, strategies)
        };
        let (td, constraints, strategies) = placement(&current);
        self.check_placement(&td, &constraints, &strategies).await?;
        let fargate = service_on_fargate(
            current.service.launch_type,
            new_strategy.as_deref().or(current.service.capacity_provider_strategy.as_deref()),
        );
        self.check_launch(
            &td,
            fargate,
            input.network_configuration.as_ref().or(current.service.network_configuration.as_ref()),
            input.platform_version.as_deref().or(current.service.platform_version.as_deref()),
        )
        .await?;
        // serviceRegistries: the new list (or the kept one) against the task definition.
        let registries = input
            .service_registries
            .clone()
            .or_else(|| current.service.service_registries.clone())
            .unwrap_or_default();
        if !registries.is_empty() {
            let td_rec = self.task_definitions.by_arn(&td).await?;
            crate::servicediscovery::ecs_registrations::check(
                &*self.core.store,
                &td_rec.task_definition,
                &registries,
            )
            .await?;
        }
        // loadBalancers: added, changed or removed (an empty list), as ECS allows for the
        // rolling strategy: a new deployment whose tasks register with the new ones while
        // the older deployments' tasks stay with theirs until they stop. A traffic-shifting
        // service (`advancedConfiguration`) keeps its load balancers.
        let current_lbs = current.service.load_balancers.clone().unwrap_or_default();
        let new_lbs = match input.load_balancers.as_ref() {
            Some(given) if *given != current_lbs => {
                let advanced =
                    |l: &[LoadBalancer]| l.iter().any(|e| e.advanced_configuration.is_some());
                if !current_lbs.is_empty()
                    && (current.settings.shift.is_some()
                        || advanced(&current_lbs)
                        || advanced(given))
                {
                    return Err(ErrorCode::UnsupportedFeatureException.with(
                        "loadBalancers: changing the load balancers of a service with advancedConfiguration (BLUE_GREEN, LINEAR or CANARY) is not implemented by Berth yet; create a new service with the new loadBalancers.",
                    ));
                }
                self.check_load_balancers(given, &td).await?;
                Some(given.clone())
            }
            _ => None,
        };
        if new_lbs.is_none() && !current_lbs.is_empty() && new_td.is_some() {
            // A new task definition must still have the container and port.
            self.check_load_balancers(&current_lbs, &td).await?;
        }
        // serviceConnectConfiguration: a new one starts a new deployment (as in ECS); kept,
        // it is checked again against a new task definition.
        let current_sc = current.deployments.first().and_then(|d| d.service_connect.clone());
        let given_sc = input.service_connect_configuration.clone();
        let new_sc = match given_sc.as_ref().or(current_sc.as_ref()) {
            Some(sc) if berth_model::service_connect::enabled(sc) => {
                let td_rec = self.task_definitions.by_arn(&td).await?;
                crate::servicediscovery::service_connect::check::prepare(
                    &*self.core.store,
                    self.core.timing.service_connect_address,
                    &td_rec.task_definition,
                    sc,
                )
                .await?
                .map_or((None, vec![]), |(c, r)| (Some(c), r))
            }
            _ => (None, vec![]),
        };
        let sc_changed = given_sc.is_some() && new_sc.0 != current_sc;
        let now = self.core.now();
        let updated = self
            .update_service_record(&cluster, &name, |rec| {
                if rec.service.status.as_deref() != Some("ACTIVE") {
                    return Err(not_active());
                }
                let settings =
                    service_rules::validate_update(&input, &rec.settings).map_err(rule_error)?;
                let lbs = new_lbs.as_deref().or(rec.service.load_balancers.as_deref());
                service_shift::check_service(
                    lbs.unwrap_or(&[]),
                    settings.shift.as_ref(),
                    settings.daemon,
                )
                .map_err(rule_error)?;
                let (td, constraints, strategies) = placement(rec);
                if settings.daemon && !strategies.is_empty() {
                    return Err(error::invalid(
                        "placementStrategy: placement strategies can't be used with a DAEMON service.",
                    ));
                }
                let current_strategy =
                    rec.service.capacity_provider_strategy.clone().unwrap_or_default();
                if let Some(new) = new_strategy.as_ref().filter(|n| **n != current_strategy) {
                    if settings.daemon && !new.is_empty() {
                        return Err(error::invalid(
                            "capacityProviderStrategy: a service with the DAEMON scheduling strategy can't use a capacity provider strategy; use launchType EC2.",
                        ));
                    }
                    if input.force_new_deployment != Some(true) {
                        // ECS's wording.
                        return Err(error::invalid(
                            "When switching from launch type to capacity provider strategy on an existing service, or making a change to a capacity provider strategy on a service that is already using one, you must force a new deployment.",
                        ));
                    }
                    rec.service.launch_type = new.is_empty().then_some(LaunchType::Ec2);
                    rec.service.capacity_provider_strategy =
                        (!new.is_empty()).then(|| new.clone());
                }
                let primary_td = rec.deployments.first().map(|d| d.task_definition.clone());
                // New load balancers start a new deployment, as in ECS.
                let redeploy = input.force_new_deployment == Some(true)
                    || primary_td.as_deref() != Some(td.as_str())
                    || new_lbs.is_some()
                    || sc_changed;
                if let Some(lbs) = &new_lbs {
                    // Every deployment so far keeps the load balancers its tasks have.
                    let before = rec.service.load_balancers.clone().unwrap_or_default();
                    for d in rec.deployments.iter_mut().chain(rec.past_deployments.iter_mut()) {
                        d.load_balancers.get_or_insert_with(|| before.clone());
                    }
                    rec.service.load_balancers = Some(lbs.clone());
                }
                if redeploy {
                    for d in &mut rec.deployments {
                        d.status = "ACTIVE".into();
                        d.updated_at = now;
                    }
                    let launch_type = rec.service.launch_type;
                    let strategy =
                        rec.service.capacity_provider_strategy.clone().unwrap_or_default();
                    rec.deployments.insert(
                        0,
                        DeploymentRecord::new(
                            new_deployment_id(),
                            td.clone(),
                            launch_type,
                            settings.desired_count,
                            now,
                        )
                        .with_strategy(strategy)
                        .with_service_connect(new_sc.0.clone(), new_sc.1.clone())
                        .with_traffic(service_shift::new_record(
                            &rec.deployments,
                            rec.service.load_balancers.as_deref().unwrap_or(&[]),
                            settings.shift.as_ref(),
                        )),
                    );
                    rec.steady_since = None;
                }
                if !settings.daemon
                    && let Some(p) = rec.deployments.first_mut()
                {
                    p.desired_count = settings.desired_count;
                }
                rec.service.task_definition = Some(td);
                rec.service.desired_count = Some(settings.desired_count);
                if let Some(n) = &input.network_configuration {
                    rec.service.network_configuration = Some(n.clone());
                }
                if let Some(v) = &input.platform_version {
                    rec.service.platform_version = Some(v.clone());
                }
                if let Some(r) = &input.service_registries {
                    rec.service.service_registries = Some(r.clone());
                }
                apply_update(rec, &input, settings, constraints, strategies);
                Ok(())
            })
            .await?;
        match updated {
            Some(rec) => {
                Ok(UpdateServiceResponse { service: Some(self.render_service(&rec, false)) })
            }
            None => Err(self.no_live_service(&cluster, &name).await),
        }
    }

    async fn delete_service(
        &self,
        _ctx: &RequestContext,
        input: DeleteServiceRequest,
    ) -> Result<DeleteServiceResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.service.clone().unwrap_or_default();
        let name = self.service_name(&cluster, &given).ok_or_else(not_found)?.to_string();
        let deleted = self
            .update_service_record(&cluster, &name, |rec| {
                if rec.service.status.as_deref() == Some("DRAINING") {
                    return Ok(()); // already being deleted
                }
                if !rec.settings.daemon
                    && rec.settings.desired_count > 0
                    && input.force != Some(true)
                {
                    return Err(error::invalid(
                        "The service cannot be stopped while it is scaled above 0. Scale it to 0 with update-service --desired-count 0 first, or pass --force.",
                    ));
                }
                rec.service.status = Some("DRAINING".into());
                rec.settings.desired_count = 0;
                rec.service.desired_count = Some(0);
                rec.steady_since = None;
                Ok(())
            })
            .await?;
        match deleted {
            Some(rec) => {
                Ok(DeleteServiceResponse { service: Some(self.render_service(&rec, false)) })
            }
            None => Err(self.no_live_service(&cluster, &name).await),
        }
    }

    async fn describe_services(
        &self,
        _ctx: &RequestContext,
        input: DescribeServicesRequest,
    ) -> Result<DescribeServicesResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.services.unwrap_or_default();
        if given.is_empty() || given.len() > 10 {
            return Err(error::invalid("services must name between 1 and 10 services."));
        }
        let with_tags = input.include.unwrap_or_default().contains(&ServiceField::Tags);
        let mut out = ByIds::new();
        for g in &given {
            let found = match self.service_name(&cluster, g) {
                Some(name) => self.find_service(&cluster, name).await?,
                None => None,
            };
            let shown = found.map(|(rec, _, _)| self.render_service(&rec, with_tags));
            out.record(g, shown, |name| self.service_arn(&cluster, name));
        }
        Ok(DescribeServicesResponse { services: Some(out.found), failures: Some(out.failures) })
    }

    async fn list_services(
        &self,
        _ctx: &RequestContext,
        input: ListServicesRequest,
    ) -> Result<ListServicesResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let prefix = keys::cluster_services_prefix(&cluster);
        // ECS: 1 to 100, and 10 when not given.
        let page =
            Page::parse(input.max_results.or(Some(10)), input.next_token.as_deref(), 100, &prefix)?;
        let filtered = input.launch_type.is_some() || input.scheduling_strategy.is_some();
        let (names, next) = if !filtered {
            let (ks, next) = page.keys(&*self.core.store, &prefix, false).await?;
            (ks.iter().filter_map(|k| k.rsplit('/').next().map(str::to_string)).collect(), next)
        } else {
            let recs = self
                .core
                .store
                .range(berth_store::Range::prefix(&prefix))
                .await
                .map_err(error::store)?;
            let mut out = Vec::new();
            for r in recs {
                if page.after.as_ref().is_some_and(|a| &r.key <= a) {
                    continue;
                }
                let s: ServiceRecord =
                    serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
                if input.launch_type.is_some_and(|l| s.service.launch_type != Some(l))
                    || input
                        .scheduling_strategy
                        .is_some_and(|st| s.service.scheduling_strategy != Some(st))
                {
                    continue;
                }
                out.push((r.key.clone(), s.name));
            }
            let more = out.len() > page.limit;
            out.truncate(page.limit);
            let token =
                if more { out.last().map(|(k, _)| crate::pagination::token(k)) } else { None };
            (out.into_iter().map(|(_, n)| n).collect::<Vec<_>>(), token)
        };
        // The few services minted with short ARNs (serviceLongArnFormat disabled).
        let short_prefix = keys::services_short_arn_prefix(&cluster);
        let short: std::collections::HashSet<String> = self
            .core
            .store
            .range(berth_store::Range::prefix(&short_prefix))
            .await
            .map_err(error::store)?
            .into_iter()
            .filter_map(|r| r.key.strip_prefix(&short_prefix).map(str::to_string))
            .collect();
        let arn = |n: &String| self.new_service_arn(&cluster, n, !short.contains(n));
        Ok(ListServicesResponse {
            service_arns: Some(names.iter().map(arn).collect()),
            next_token: next,
        })
    }

    /// The services (of every cluster) registered in a Cloud Map namespace through their
    /// `serviceRegistries` (issue #17; Service Connect is not implemented), paged as
    /// ListServices (1-100, default 10).
    async fn list_services_by_namespace(
        &self,
        _ctx: &RequestContext,
        input: ListServicesByNamespaceRequest,
    ) -> Result<ListServicesByNamespaceResponse, AwsError> {
        let namespace = input.namespace.clone().unwrap_or_default();
        let arns = crate::servicediscovery::ecs_registrations::services_in_namespace(
            &*self.core.store,
            &namespace,
        )
        .await?;
        let prefix = "ecs/services-by-namespace/";
        let page =
            Page::parse(input.max_results.or(Some(10)), input.next_token.as_deref(), 100, prefix)?;
        let mut rest: Vec<String> = arns
            .into_iter()
            .filter(|a| page.after.as_ref().is_none_or(|after| format!("{prefix}{a}") > *after))
            .collect();
        let more = rest.len() > page.limit;
        rest.truncate(page.limit);
        let next = if more {
            rest.last().map(|a| crate::pagination::token(&format!("{prefix}{a}")))
        } else {
            None
        };
        Ok(ListServicesByNamespaceResponse { service_arns: Some(rest), next_token: next })
    }
}
/// What UpdateService changes the same way for every deployment controller: the service's
/// placement, grace period, tag settings and validated settings.
pub(super) fn apply_update(
    rec: &mut ServiceRecord,
    input: &UpdateServiceRequest,
    settings: ServiceSettings,
    constraints: Vec<PlacementConstraint>,
    strategies: Vec<PlacementStrategy>,
) {
    rec.service.placement_constraints = Some(constraints);
    rec.service.placement_strategy = Some(strategies);
    if input.health_check_grace_period_seconds.is_some() {
        rec.service.health_check_grace_period_seconds = input.health_check_grace_period_seconds;
    }
    if let Some(p) = input.propagate_tags {
        rec.service.propagate_tags = Some(p);
    }
    if let Some(m) = input.enable_ecs_managed_tags {
        rec.service.enable_ecs_managed_tags = Some(m);
    }
    rec.settings = settings;
}
