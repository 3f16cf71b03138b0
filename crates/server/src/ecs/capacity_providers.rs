//! Capacity providers: CreateCapacityProvider, DescribeCapacityProviders,
//! UpdateCapacityProvider, DeleteCapacityProvider and PutClusterCapacityProviders; and the
//! checks CreateCluster, RunTask, CreateService and UpdateService make of the providers they
//! name (the service controller splits a service's tasks by the strategy it stores).
//!
//! Records: `ecs/capacity-providers/<name>` holds an Auto Scaling group provider as
//! DescribeCapacityProviders shows it (ACTIVE, then INACTIVE once deleted, still describable
//! by name until a new provider takes the name). `FARGATE` and `FARGATE_SPOT` exist in every
//! account and are never stored. A cluster's associations live on its own record
//! (`capacityProviders`, `defaultCapacityProviderStrategy`).
//!
//! Invariants:
//! * A cluster only ever names providers that were ACTIVE when it was written: writes of a
//!   cluster's associations compare the revision of every provider they name, and deletion
//!   compares the revision of every live cluster it checked, so the two never cross.
//! * A provider is capacity: the container instances whose `ecs.capacity-provider`
//!   attribute is its name (`berth_scheduler::capacity::PROVIDER_ATTRIBUTE`); instances an
//!   Auto Scaling group launches carry it when a provider names the group (by name or ARN)
//!   at launch. `autoScalingGroupArn` is stored as given; with managed scaling ENABLED the
//!   Auto Scaling controller (`crate::autoscaling::managed`) scales the group, and the
//!   provider's tasks that cannot be placed wait in PROVISIONING ([`scales`]).

use std::sync::Arc;

use berth_model::records::ClusterRecord;
use berth_model::{keys, tags};
use berth_scheduler::capacity::{self, ProviderShare, is_fargate};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::RequestContext;
use super::clusters::Clusters;
use super::core::Core;
use crate::error;
use crate::pagination::Page;
use crate::records;

/// Most capacity providers associated with one cluster (ECS's quota).
pub const MAX_PER_CLUSTER: usize = 20;
/// DescribeCapacityProviders' largest (and default) page.
const MAX_RESULTS: usize = 10;

/// Owns the capacity provider records (see the module header).
pub struct CapacityProviders {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
}

/// Checks a capacity provider name for CreateCapacityProvider: 1-255 letters, digits, `-`
/// and `_`, not prefixed with `aws`, `ecs` or `fargate` (any case), as ECS documents.
pub fn validate_name(name: &str) -> Result<(), AwsError> {
    if is_fargate(name) {
        return Err(error::invalid(format!(
            "name: {name} is a reserved capacity provider name; FARGATE and FARGATE_SPOT exist in every account."
        )));
    }
    if name.is_empty()
        || name.len() > 255
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(error::invalid(
            "name: a capacity provider name must be 1-255 characters: letters (uppercase and lowercase), numbers, underscores and hyphens.",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ["aws", "ecs", "fargate"].iter().any(|p| lower.starts_with(p)) {
        return Err(error::invalid(format!(
            "name: '{name}' is not valid: a capacity provider name can't be prefixed with \"aws\", \"ecs\" or \"fargate\"."
        )));
    }
    Ok(())
}

/// Whether `name` is an ACTIVE Auto Scaling group provider with managed scaling ENABLED: its
/// tasks wait in PROVISIONING for the group to scale out instead of failing.
pub async fn scales(store: &dyn berth_store::Store, name: &str) -> Result<bool, AwsError> {
    if is_fargate(name) {
        return Ok(false);
    }
    let p = records::get::<CapacityProvider>(store, &keys::capacity_provider(name)).await?;
    Ok(p.is_some_and(|(p, _)| {
        p.status == Some(CapacityProviderStatus::Active)
            && p.auto_scaling_group_provider.and_then(|a| a.managed_scaling).and_then(|m| m.status)
                == Some(ManagedScalingStatus::Enabled)
    }))
}

/// Managed scaling with ECS's defaults filled in (status DISABLED, target 100 %, steps 1 to
/// 10,000, warm-up 300 s), checked: the minimum step can't exceed the maximum.
pub fn managed_scaling(given: Option<&ManagedScaling>) -> Result<ManagedScaling, AwsError> {
    let g = given.cloned().unwrap_or_default();
    let out = ManagedScaling {
        status: Some(g.status.unwrap_or(ManagedScalingStatus::Disabled)),
        target_capacity: Some(g.target_capacity.unwrap_or(100)),
        minimum_scaling_step_size: Some(g.minimum_scaling_step_size.unwrap_or(1)),
        maximum_scaling_step_size: Some(g.maximum_scaling_step_size.unwrap_or(10_000)),
        instance_warmup_period: Some(g.instance_warmup_period.unwrap_or(300)),
    };
    if out.minimum_scaling_step_size > out.maximum_scaling_step_size {
        return Err(error::invalid(format!(
            "autoScalingGroupProvider.managedScaling: minimumScalingStepSize ({}) can't be greater than maximumScalingStepSize ({}).",
            out.minimum_scaling_step_size.unwrap_or_default(),
            out.maximum_scaling_step_size.unwrap_or_default()
        )));
    }
    Ok(out)
}

/// Managed termination protection needs managed scaling, as ECS documents.
fn check_termination_protection(p: &AutoScalingGroupProvider) -> Result<(), AwsError> {
    let protect = p.managed_termination_protection == Some(ManagedTerminationProtection::Enabled);
    let scaling =
        p.managed_scaling.as_ref().and_then(|m| m.status) == Some(ManagedScalingStatus::Enabled);
    if protect && !scaling {
        return Err(error::client(
            "The managed termination protection setting for the capacity provider is invalid. To enable managed termination protection for a capacity provider, managed scaling must also be enabled (autoScalingGroupProvider.managedScaling.status ENABLED).",
        ));
    }
    Ok(())
}

/// The built-in provider `name` (FARGATE or FARGATE_SPOT) as ECS describes it.
fn builtin(core: &Core, name: &str) -> CapacityProvider {
    CapacityProvider {
        capacity_provider_arn: Some(core.scope.ecs_arn(&format!("capacity-provider/{name}"))),
        name: Some(name.to_string()),
        status: Some(CapacityProviderStatus::Active),
        tags: Some(vec![]),
        r#type: Some(if name == "FARGATE" {
            CapacityProviderType::Fargate
        } else {
            CapacityProviderType::FargateSpot
        }),
        ..Default::default()
    }
}

/// A provider given by name or ARN: its name (`None` for an ARN of another scope or kind).
fn provider_name<'a>(core: &Core, given: &'a str) -> Option<&'a str> {
    if given.starts_with("arn:") {
        core.scope
            .ecs_resource(given)?
            .strip_prefix("capacity-provider/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
    } else {
        Some(given)
    }
}

/// What a cluster's `capacityProviders` and `defaultCapacityProviderStrategy` resolve to,
/// checked against the providers that exist (for CreateCluster and
/// PutClusterCapacityProviders): the names, the strategy, and the revisions of the stored
/// providers named (0 for built-ins), to compare when the cluster is written.
pub(super) struct Associations {
    pub names: Vec<String>,
    pub strategy: Vec<CapacityProviderStrategyItem>,
    pub fences: Vec<(String, u64)>,
}

pub(super) async fn resolve_associations(
    core: &Core,
    providers: &[String],
    strategy: &[CapacityProviderStrategyItem],
) -> Result<Associations, AwsError> {
    if providers.len() > MAX_PER_CLUSTER {
        return Err(error::invalid(format!(
            "capacityProviders: a cluster can have at most {MAX_PER_CLUSTER} capacity providers; got {}.",
            providers.len()
        )));
    }
    let mut names: Vec<String> = Vec::new();
    let mut fences = Vec::new();
    for (i, given) in providers.iter().enumerate() {
        let missing = || {
            error::invalid(format!(
                "capacityProviders[{i}]: the specified capacity provider '{given}' does not exist. Specify a valid name or ARN and try again."
            ))
        };
        let name = provider_name(core, given).ok_or_else(missing)?;
        if names.iter().any(|n| n == name) {
            return Err(error::invalid(format!(
                "capacityProviders[{i}]: capacity provider '{name}' is listed more than once."
            )));
        }
        if !is_fargate(name) {
            let key = keys::capacity_provider(name);
            match records::get::<CapacityProvider>(&*core.store, &key).await? {
                Some((p, rev)) if p.status == Some(CapacityProviderStatus::Active) => {
                    fences.push((key, rev));
                }
                _ => return Err(missing()),
            }
        }
        names.push(name.to_string());
    }
    if !strategy.is_empty() {
        let shares = berth_scheduler::wire::capacity_provider_strategy(strategy)
            .map_err(|e| error::invalid(format!("default{}", capitalise_first(&e.to_string()))))?;
        capacity::check_on_cluster(&shares, &names).map_err(|e| error::invalid(e.to_string()))?;
    }
    Ok(Associations { names, strategy: strategy.to_vec(), fences })
}

/// `capacityProviderStrategy...` -> `CapacityProviderStrategy...` (for the cluster's
/// `defaultCapacityProviderStrategy` field names).
fn capitalise_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// The strategy a RunTask or CreateService uses, decided as ECS does: the request's
/// `capacityProviderStrategy` (never with `launchType`), else none when a launch type is
/// given, else the cluster's default strategy (none when it has none: launch type EC2).
/// The strategy is validated and checked against the cluster's associations.
pub(super) fn strategy_for(
    given: Option<&[CapacityProviderStrategyItem]>,
    launch_type: Option<LaunchType>,
    cluster: &ClusterRecord,
) -> Result<Option<Vec<ProviderShare>>, AwsError> {
    let given = given.filter(|s| !s.is_empty());
    if given.is_some() && launch_type.is_some() {
        return Err(error::invalid(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    let items = match given {
        Some(items) => items,
        None if launch_type.is_some() => return Ok(None),
        None if cluster.default_capacity_provider_strategy.is_empty() => return Ok(None),
        None => &cluster.default_capacity_provider_strategy[..],
    };
    let shares = berth_scheduler::wire::capacity_provider_strategy(items)
        .map_err(|e| error::invalid(e.to_string()))?;
    capacity::check_on_cluster(&shares, &cluster.capacity_providers)
        .map_err(|e| error::invalid(e.to_string()))?;
    Ok(Some(shares))
}

/// CreateService and UpdateService: the capacity provider strategy a service runs with (the
/// request's, or for CreateService without a launch type the cluster's default), checked as
/// RunTask's is and shown as DescribeServices shows it (`base` and `weight` filled in);
/// `None`: the service uses a launch type. A DAEMON service takes no strategy (given: an
/// InvalidParameterException; the cluster's default does not apply to it), and neither does
/// an EXTERNAL one (each task set has its own; given: UnsupportedFeatureException).
pub(super) fn service_strategy(
    given: Option<&[CapacityProviderStrategyItem]>,
    launch_type: Option<LaunchType>,
    cluster: &ClusterRecord,
    daemon: bool,
    external: bool,
) -> Result<Option<Vec<CapacityProviderStrategyItem>>, AwsError> {
    let given = given.filter(|s| !s.is_empty());
    if given.is_some() && daemon {
        return Err(error::invalid(
            "capacityProviderStrategy: a service with the DAEMON scheduling strategy can't use a capacity provider strategy; use launchType EC2.",
        ));
    }
    if given.is_some() && external && launch_type.is_none() {
        return Err(ErrorCode::UnsupportedFeatureException.with(
            "capacityProviderStrategy: the tasks of a service with the EXTERNAL deployment controller belong to its task sets; give the strategy to each task set (CreateTaskSet capacityProviderStrategy) and omit it here.",
        ));
    }
    let Some(shares) = strategy_for(given, launch_type, cluster)? else { return Ok(None) };
    if given.is_none() && (daemon || external) {
        return Ok(None);
    }
    Ok(Some(shown_strategy(&shares)))
}

/// A validated strategy as ECS shows it on a service and its deployments.
pub(super) fn shown_strategy(shares: &[ProviderShare]) -> Vec<CapacityProviderStrategyItem> {
    shares
        .iter()
        .map(|s| CapacityProviderStrategyItem {
            capacity_provider: Some(s.capacity_provider.clone()),
            base: Some(s.base as i32),
            weight: Some(s.weight as i32),
        })
        .collect()
}

impl CapacityProviders {
    pub fn new(core: Arc<Core>, clusters: Arc<Clusters>) -> Self {
        Self { core, clusters }
    }

    async fn get(&self, name: &str) -> Result<Option<(CapacityProvider, u64)>, AwsError> {
        records::get(&*self.core.store, &keys::capacity_provider(name)).await
    }

    fn not_found(given: &str) -> AwsError {
        error::client(format!(
            "The specified capacity provider '{given}' does not exist. Specify a valid name or ARN and try again."
        ))
    }

    /// The live clusters, with their revisions.
    async fn live_clusters(&self) -> Result<Vec<(ClusterRecord, u64)>, AwsError> {
        records::decode_all(
            self.core.store.range(Range::prefix(keys::CLUSTERS)).await.map_err(error::store)?,
        )
    }

    /// Whether a live service of `cluster` names `provider` in its strategy.
    async fn provider_in_services(&self, cluster: &str, provider: &str) -> Result<bool, AwsError> {
        provider_in_services(&self.core, cluster, provider).await
    }

    fn shown(mut p: CapacityProvider, with_tags: bool) -> CapacityProvider {
        if !with_tags {
            p.tags = None;
        }
        p
    }
}

/// Whether any live task of `cluster` runs on `provider`.
async fn provider_has_tasks(core: &Core, cluster: &str, provider: &str) -> Result<bool, AwsError> {
    let live = core
        .store
        .range(Range::prefix(&keys::cluster_live_tasks_prefix(cluster)))
        .await
        .map_err(error::store)?;
    let ids: Vec<String> = live
        .iter()
        .filter_map(|r| r.key.rsplit('/').next())
        .map(|id| keys::task(cluster, id))
        .collect();
    for r in core.store.get_many(&ids).await.map_err(error::store)? {
        #[derive(serde::Deserialize)]
        struct ProviderOnly {
            task: TaskProvider,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct TaskProvider {
            #[serde(default)]
            capacity_provider_name: Option<String>,
        }
        let t: ProviderOnly =
            serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
        if t.task.capacity_provider_name.as_deref() == Some(provider) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a live service of `cluster` names `provider` in its strategy.
async fn provider_in_services(
    core: &Core,
    cluster: &str,
    provider: &str,
) -> Result<bool, AwsError> {
    let recs = core
        .store
        .range(Range::prefix(&keys::cluster_services_prefix(cluster)))
        .await
        .map_err(error::store)?;
    for r in recs {
        #[derive(serde::Deserialize)]
        struct StrategyOnly {
            service: ServiceStrategy,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ServiceStrategy {
            #[serde(default)]
            capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
        }
        let s: StrategyOnly =
            serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
        if s.service
            .capacity_provider_strategy
            .iter()
            .flatten()
            .any(|i| i.capacity_provider.as_deref() == Some(provider))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

impl CapacityProvidersApi<RequestContext> for CapacityProviders {
    async fn create_capacity_provider(
        &self,
        _ctx: &RequestContext,
        input: CreateCapacityProviderRequest,
    ) -> Result<CreateCapacityProviderResponse, AwsError> {
        let name = input.name.clone().unwrap_or_default();
        validate_name(&name)?;
        let provider_tags = input.tags.clone().unwrap_or_default();
        tags::validate(&provider_tags, "tags").map_err(error::model)?;
        if input.managed_instances_provider.is_some() {
            return Err(ErrorCode::UnsupportedFeatureException.with(
                "managedInstancesProvider: Amazon ECS Managed Instances capacity providers need managed EC2 instances, which Berth does not have yet; use autoScalingGroupProvider.",
            ));
        }
        if input.cluster.is_some() {
            return Err(error::invalid(
                "cluster: only Amazon ECS Managed Instances capacity providers are created in a cluster; an Auto Scaling group capacity provider belongs to the account (associate it with PutClusterCapacityProviders).",
            ));
        }
        let Some(asg) = input.auto_scaling_group_provider.clone() else {
            return Err(error::invalid(
                "autoScalingGroupProvider: an Auto Scaling group capacity provider needs autoScalingGroupProvider.",
            ));
        };
        let asg_arn = asg.auto_scaling_group_arn.clone().unwrap_or_default();
        if asg_arn.trim().is_empty() {
            return Err(error::invalid(
                "autoScalingGroupProvider.autoScalingGroupArn: the Auto Scaling group name or ARN is required.",
            ));
        }
        check_termination_protection(&asg)?;
        let provider = CapacityProvider {
            capacity_provider_arn: Some(
                self.core.scope.ecs_arn(&format!("capacity-provider/{name}")),
            ),
            name: Some(name.clone()),
            status: Some(CapacityProviderStatus::Active),
            auto_scaling_group_provider: Some(AutoScalingGroupProvider {
                auto_scaling_group_arn: Some(asg_arn.clone()),
                managed_scaling: Some(managed_scaling(asg.managed_scaling.as_ref())?),
                managed_termination_protection: Some(
                    asg.managed_termination_protection
                        .unwrap_or(ManagedTerminationProtection::Disabled),
                ),
                managed_draining: Some(asg.managed_draining.unwrap_or(ManagedDraining::Enabled)),
            }),
            tags: Some(provider_tags),
            r#type: Some(CapacityProviderType::Ec2Autoscaling),
            ..Default::default()
        };
        let key = keys::capacity_provider(&name);
        let mut cas = records::Cas::new(&*self.core.store, format!("capacity provider {name}"));
        loop {
            cas.attempt().await?;
            let existing = self.get(&name).await?;
            if existing
                .as_ref()
                .is_some_and(|(p, _)| p.status == Some(CapacityProviderStatus::Active))
            {
                return Err(error::client(
                    "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.",
                ));
            }
            // An Auto Scaling group serves one capacity provider.
            let all: Vec<(CapacityProvider, u64)> = records::decode_all(
                self.core
                    .store
                    .range(Range::prefix(keys::CAPACITY_PROVIDERS))
                    .await
                    .map_err(error::store)?,
            )?;
            if let Some((other, _)) = all.iter().find(|(p, _)| {
                p.status == Some(CapacityProviderStatus::Active)
                    && p.auto_scaling_group_provider
                        .as_ref()
                        .and_then(|a| a.auto_scaling_group_arn.as_deref())
                        == Some(asg_arn.as_str())
            }) {
                return Err(error::client(format!(
                    "The specified Auto Scaling group ARN is already being used by the capacity provider {}. Specify a unique Auto Scaling group ARN and try again.",
                    other.name.as_deref().unwrap_or_default()
                )));
            }
            let txn = Txn::new()
                .when(&key, existing.map_or(0, |(_, rev)| rev))
                .put(&key, records::encode(&provider));
            if cas.commit(txn).await? {
                return Ok(CreateCapacityProviderResponse { capacity_provider: Some(provider) });
            }
        }
    }

    async fn describe_capacity_providers(
        &self,
        _ctx: &RequestContext,
        input: DescribeCapacityProvidersRequest,
    ) -> Result<DescribeCapacityProvidersResponse, AwsError> {
        let with_tags = input.include.unwrap_or_default().contains(&CapacityProviderField::Tags);
        let given = input.capacity_providers.unwrap_or_default();
        if given.len() > 100 {
            return Err(error::invalid(
                "capacityProviders can name at most 100 capacity providers.",
            ));
        }
        const CURSOR: &str = "capacity-providers/";
        let page =
            Page::parse(input.max_results, input.next_token.as_deref(), MAX_RESULTS, CURSOR)?;
        let offset: usize = match page.after.as_deref().map(|a| a[CURSOR.len()..].parse()) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Err(error::invalid("Invalid nextToken.")),
        };
        let in_cluster = match input.cluster.as_deref() {
            Some(c) => {
                let name = self.clusters.existing_cluster(Some(c)).await?;
                let (rec, _) = self
                    .clusters
                    .live_cluster(&name)
                    .await?
                    .ok_or_else(super::core::cluster_not_found)?;
                Some(rec.capacity_providers)
            }
            None => None,
        };
        let keep = |name: &str| in_cluster.as_ref().is_none_or(|c| c.iter().any(|n| n == name));
        let mut found = Vec::new();
        let mut failures = Vec::new();
        if given.is_empty() {
            for b in capacity::FARGATE_PROVIDERS {
                if keep(b) {
                    found.push(builtin(&self.core, b));
                }
            }
            let all: Vec<(CapacityProvider, u64)> = records::decode_all(
                self.core
                    .store
                    .range(Range::prefix(keys::CAPACITY_PROVIDERS))
                    .await
                    .map_err(error::store)?,
            )?;
            found.extend(
                all.into_iter()
                    .map(|(p, _)| p)
                    .filter(|p| p.status == Some(CapacityProviderStatus::Active))
                    .filter(|p| keep(p.name.as_deref().unwrap_or_default())),
            );
        } else {
            for g in &given {
                let p = match provider_name(&self.core, g) {
                    Some(n) if is_fargate(n) => Some(builtin(&self.core, n)),
                    Some(n) => self.get(n).await?.map(|(p, _)| p),
                    None => None,
                };
                match p.filter(|p| keep(p.name.as_deref().unwrap_or_default())) {
                    Some(p) => found.push(p),
                    None => failures.push(Failure {
                        arn: Some(match provider_name(&self.core, g) {
                            Some(n) if !g.starts_with("arn:") => {
                                self.core.scope.ecs_arn(&format!("capacity-provider/{n}"))
                            }
                            _ => g.clone(),
                        }),
                        reason: Some("MISSING".into()),
                        detail: None,
                    }),
                }
            }
        }
        let rest: Vec<CapacityProvider> = found.into_iter().skip(offset).collect();
        let next = (rest.len() > page.limit)
            .then(|| crate::pagination::token(&format!("{CURSOR}{}", offset + page.limit)));
        let shown = rest.into_iter().take(page.limit).map(|p| Self::shown(p, with_tags)).collect();
        Ok(DescribeCapacityProvidersResponse {
            capacity_providers: Some(shown),
            failures: Some(if offset == 0 { failures } else { vec![] }),
            next_token: next,
        })
    }

    async fn update_capacity_provider(
        &self,
        _ctx: &RequestContext,
        input: UpdateCapacityProviderRequest,
    ) -> Result<UpdateCapacityProviderResponse, AwsError> {
        let given = input.name.clone().unwrap_or_default();
        let name = provider_name(&self.core, &given).ok_or_else(|| Self::not_found(&given))?;
        if is_fargate(name) {
            return Err(error::client(format!(
                "The {name} capacity provider is reserved and can't be updated."
            )));
        }
        if input.managed_instances_provider.is_some() {
            return Err(ErrorCode::UnsupportedFeatureException.with(
                "managedInstancesProvider: Amazon ECS Managed Instances capacity providers are not in Berth yet.",
            ));
        }
        if input.cluster.is_some() {
            return Err(error::invalid(
                "cluster: only Amazon ECS Managed Instances capacity providers are updated in a cluster.",
            ));
        }
        let Some(update) = input.auto_scaling_group_provider.clone() else {
            return Err(error::invalid(
                "autoScalingGroupProvider: the settings to update are required.",
            ));
        };
        let key = keys::capacity_provider(name);
        let updated = records::update(
            &*self.core.store,
            &key,
            &format!("capacity provider {name}"),
            |p: &mut CapacityProvider| {
                if p.status != Some(CapacityProviderStatus::Active) {
                    return Err(Self::not_found(&given));
                }
                let asg = p.auto_scaling_group_provider.get_or_insert_with(Default::default);
                if let Some(m) = &update.managed_scaling {
                    asg.managed_scaling = Some(managed_scaling(Some(m))?);
                }
                if let Some(t) = update.managed_termination_protection {
                    asg.managed_termination_protection = Some(t);
                }
                if let Some(d) = update.managed_draining {
                    asg.managed_draining = Some(d);
                }
                check_termination_protection(asg)?;
                // Berth has no Auto Scaling group to reconfigure: the update is complete at once.
                p.update_status = Some(CapacityProviderUpdateStatus::UpdateComplete);
                p.update_status_reason = None;
                Ok(())
            },
        )
        .await?
        .ok_or_else(|| Self::not_found(&given))?;
        Ok(UpdateCapacityProviderResponse { capacity_provider: Some(Self::shown(updated, false)) })
    }

    async fn delete_capacity_provider(
        &self,
        _ctx: &RequestContext,
        input: DeleteCapacityProviderRequest,
    ) -> Result<DeleteCapacityProviderResponse, AwsError> {
        let given = input.capacity_provider.clone().unwrap_or_default();
        let name = provider_name(&self.core, &given).ok_or_else(|| Self::not_found(&given))?;
        if is_fargate(name) {
            return Err(error::client(format!(
                "The {name} capacity provider is reserved and can't be deleted. You can disassociate it from a cluster using PutClusterCapacityProviders or by deleting the cluster."
            )));
        }
        if input.cluster.is_some() {
            return Err(error::invalid(
                "cluster: only Amazon ECS Managed Instances capacity providers are deleted from a cluster.",
            ));
        }
        let key = keys::capacity_provider(name);
        let mut cas = records::Cas::new(&*self.core.store, format!("capacity provider {name}"));
        loop {
            cas.attempt().await?;
            let Some((mut p, rev)) = self.get(name).await? else {
                return Err(Self::not_found(&given));
            };
            if p.status != Some(CapacityProviderStatus::Active) {
                return Err(Self::not_found(&given));
            }
            let clusters = self.live_clusters().await?;
            let mut txn = Txn::new().when(&key, rev);
            for (c, crev) in &clusters {
                txn = txn.when(keys::cluster(&c.name), *crev);
            }
            // As ECS: the call succeeds, and the provider reports why it was not deleted.
            let mut blocked = None;
            for (c, _) in &clusters {
                if c.capacity_providers.iter().any(|n| n == name) {
                    blocked = Some(format!(
                        "The capacity provider cannot be deleted because it is associated with cluster: {}. Remove the capacity provider from the cluster and try again.",
                        c.name
                    ));
                    break;
                }
                if self.provider_in_services(&c.name, name).await? {
                    blocked = Some(format!(
                        "The capacity provider cannot be deleted because it is in the capacity provider strategy of a service in cluster: {}. Update the service to remove it and try again.",
                        c.name
                    ));
                    break;
                }
            }
            match blocked {
                Some(reason) => {
                    p.update_status = Some(CapacityProviderUpdateStatus::DeleteFailed);
                    p.update_status_reason = Some(reason);
                }
                None => {
                    p.status = Some(CapacityProviderStatus::Inactive);
                    p.update_status = Some(CapacityProviderUpdateStatus::DeleteComplete);
                    p.update_status_reason = None;
                }
            }
            if cas.commit(txn.put(&key, records::encode(&p))).await? {
                return Ok(DeleteCapacityProviderResponse {
                    capacity_provider: Some(Self::shown(p, false)),
                });
            }
        }
    }
}

/// PutClusterCapacityProviders (an operation of the clusters group: `Clusters` answers it
/// through here). Replaces the cluster's providers and default strategy; a provider dropped
/// from the cluster must not be in use by its tasks or services (ResourceInUseException).
pub(super) async fn put_cluster_capacity_providers(
    core: &Core,
    clusters: &Clusters,
    input: PutClusterCapacityProvidersRequest,
) -> Result<PutClusterCapacityProvidersResponse, AwsError> {
    let cluster = clusters.existing_cluster(input.cluster.as_deref()).await?;
    let providers = input.capacity_providers.clone().unwrap_or_default();
    let strategy = input.default_capacity_provider_strategy.clone().unwrap_or_default();
    let mut cas = records::Cas::new(&*core.store, format!("cluster {cluster}"));
    loop {
        cas.attempt().await?;
        let assoc = resolve_associations(core, &providers, &strategy).await?;
        let Some((mut rec, rev)) = clusters.live_cluster(&cluster).await? else {
            return Err(super::core::cluster_not_found());
        };
        for removed in rec.capacity_providers.iter().filter(|n| !assoc.names.contains(n)) {
            if provider_has_tasks(core, &cluster, removed).await?
                || provider_in_services(core, &cluster, removed).await?
            {
                return Err(ErrorCode::ResourceInUseException.with(format!(
                    "The specified capacity provider is in use and cannot be removed. ({removed})"
                )));
            }
        }
        rec.capacity_providers = assoc.names.clone();
        rec.default_capacity_provider_strategy = assoc.strategy.clone();
        let mut txn = Txn::new().when(keys::cluster(&cluster), rev);
        for (k, r) in &assoc.fences {
            txn = txn.when(k.clone(), *r);
        }
        let txn = txn.put(keys::cluster(&cluster), records::encode(&rec));
        if cas.commit(txn).await? {
            let shown = clusters.describe_record(&rec).await?;
            return Ok(PutClusterCapacityProvidersResponse { cluster: Some(shown) });
        }
    }
}

#[cfg(test)]
mod tests;
