//! Clusters: CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster,
//! UpdateClusterSettings.
//!
//! A cluster lives at `ecs/clusters/<name>` while ACTIVE; DeleteCluster moves it to
//! `ecs/clusters-inactive/<name>` (INACTIVE, still describable) in one transaction, and
//! CreateCluster of the same name brings it back. CreateCluster is idempotent by name.

use berth_model::arn::validate_cluster_name;
use berth_model::lifecycle::TaskStatus;
use berth_model::records::{ClusterRecord, ClusterStatus};
use berth_model::{keys, tags};
use berth_store::{Txn, prefix_end};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use std::sync::Arc;

use super::RequestContext;
use super::core::{Core, DEFAULT_CLUSTER, cluster_not_found};
use crate::error;
use crate::pagination::Page;
use crate::records;

/// Owns the cluster records (`ecs/clusters/`, `ecs/clusters-inactive/`).
pub struct Clusters {
    core: Arc<Core>,
}

/// What DescribeClusters' `include` asked for.
#[derive(Clone, Copy, Default)]
struct Includes {
    settings: bool,
    statistics: bool,
    tags: bool,
    configurations: bool,
    attachments: bool,
}

impl Includes {
    const ALL: Includes = Includes {
        settings: true,
        statistics: false,
        tags: true,
        configurations: true,
        attachments: false,
    };
}

/// A UUID-shaped id that is a pure function of `seed` (an attachment keeps its id across
/// describes without being stored).
fn stable_uuid(seed: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Counts of what a cluster holds, read from the store's per-cluster indexes.
#[derive(Default)]
struct Counts {
    instances: u64,
    running: u64,
    pending: u64,
    live_tasks: u64,
    /// ACTIVE and DRAINING services (a cluster holding either can't be deleted).
    services: u64,
    /// DRAINING services (deleted, their tasks still stopping).
    draining_services: u64,
}

fn validate_settings(settings: &[ClusterSetting]) -> Result<(), AwsError> {
    for (i, s) in settings.iter().enumerate() {
        if s.name.is_none() {
            return Err(error::invalid(format!("settings[{i}].name is required.")));
        }
        match s.value.as_deref() {
            Some("enabled" | "disabled" | "enhanced") => {}
            other => {
                return Err(error::invalid(format!(
                    "settings[{i}].value '{}' is not valid for containerInsights: use enabled, enhanced or disabled.",
                    other.unwrap_or("")
                )));
            }
        }
    }
    Ok(())
}

fn merge_settings(existing: &mut Vec<ClusterSetting>, new: &[ClusterSetting]) {
    for s in new {
        match existing.iter_mut().find(|e| e.name == s.name) {
            Some(e) => e.value = s.value.clone(),
            None => existing.push(s.clone()),
        }
    }
}

impl Clusters {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Resolves a `cluster` member to the name of a live cluster, or ClusterNotFoundException.
    /// The Fargate pool's hidden cluster is nobody's to address (its hosts are never listed,
    /// described or given tasks through the API).
    pub(super) async fn existing_cluster(&self, cluster: Option<&str>) -> Result<String, AwsError> {
        let name = self.core.cluster_name(cluster)?;
        if super::fargate::is_pool(&name) || self.live_cluster(&name).await?.is_none() {
            return Err(cluster_not_found());
        }
        Ok(name)
    }

    async fn counts(&self, name: &str) -> Result<Counts, AwsError> {
        let count = |prefix: String| async move {
            self.core.store.count(&prefix, &prefix_end(&prefix)).await.map_err(error::store)
        };
        Ok(Counts {
            instances: count(keys::cluster_instances_prefix(name)).await?,
            running: count(keys::cluster_tasks_by_status_prefix(name, TaskStatus::Running)).await?,
            pending: count(keys::cluster_tasks_by_status_prefix(name, TaskStatus::Pending)).await?,
            live_tasks: count(keys::cluster_live_tasks_prefix(name)).await?,
            services: count(keys::cluster_services_prefix(name)).await?,
            draining_services: self.draining_services(name).await?,
        })
    }

    /// Services of the cluster that are DRAINING. Only each record's status is decoded.
    async fn draining_services(&self, name: &str) -> Result<u64, AwsError> {
        #[derive(serde::Deserialize)]
        struct StatusOnly {
            #[serde(default)]
            service: Option<ServiceStatus>,
        }
        #[derive(serde::Deserialize)]
        struct ServiceStatus {
            #[serde(default)]
            status: Option<String>,
        }
        let recs = self
            .core
            .store
            .range(berth_store::Range::prefix(&keys::cluster_services_prefix(name)))
            .await
            .map_err(error::store)?;
        let mut n = 0;
        for r in recs {
            let s: StatusOnly =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            n += u64::from(s.service.and_then(|s| s.status).as_deref() == Some("DRAINING"));
        }
        Ok(n)
    }

    async fn to_wire(&self, rec: &ClusterRecord, inc: Includes) -> Result<Cluster, AwsError> {
        let counts = if rec.status == ClusterStatus::Active {
            self.counts(&rec.name).await?
        } else {
            Counts::default()
        };
        let i32c = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
        let statistics = if inc.statistics {
            let kv = |name: &str, n: u64| KeyValuePair {
                name: Some(name.into()),
                value: Some(n.to_string()),
            };
            vec![
                kv("runningEC2TasksCount", counts.running),
                kv("runningFargateTasksCount", 0),
                kv("pendingEC2TasksCount", counts.pending),
                kv("pendingFargateTasksCount", 0),
                kv("runningExternalTasksCount", 0),
                kv("pendingExternalTasksCount", 0),
                kv("activeEC2ServiceCount", counts.services - counts.draining_services),
                kv("activeFargateServiceCount", 0),
                kv("drainingEC2ServiceCount", counts.draining_services),
                kv("drainingFargateServiceCount", 0),
                kv("activeExternalServiceCount", 0),
                kv("drainingExternalServiceCount", 0),
            ]
        } else {
            vec![]
        };
        // ATTACHMENTS: as ECS shows them, one `as_policy` (the group's managed target
        // tracking policy) per Auto Scaling group provider with managed scaling ENABLED;
        // Berth applies associations at once, so they are CREATED and UPDATE_COMPLETE.
        let mut attachments = Vec::new();
        if inc.attachments {
            for name in &rec.capacity_providers {
                if !super::capacity_providers::scales(&*self.core.store, name).await? {
                    continue;
                }
                let kv = |n: &str, v: String| KeyValuePair { name: Some(n.into()), value: Some(v) };
                attachments.push(Attachment {
                    id: Some(stable_uuid(&format!("{}/{name}", rec.arn))),
                    r#type: Some("as_policy".into()),
                    status: Some("CREATED".into()),
                    details: Some(vec![
                        kv("capacityProviderName", name.clone()),
                        kv(
                            "scalingPolicyName",
                            format!(
                                "ECSManagedAutoScalingPolicy-{}",
                                stable_uuid(&format!("policy/{}/{name}", rec.arn))
                            ),
                        ),
                    ]),
                });
            }
        }
        Ok(Cluster {
            attachments_status: inc.attachments.then(|| "UPDATE_COMPLETE".to_string()),
            attachments: inc.attachments.then_some(attachments),
            cluster_arn: Some(rec.arn.clone()),
            cluster_name: Some(rec.name.clone()),
            status: Some(rec.status.as_str().to_string()),
            registered_container_instances_count: Some(i32c(counts.instances)),
            running_tasks_count: Some(i32c(counts.running)),
            pending_tasks_count: Some(i32c(counts.pending)),
            active_services_count: Some(i32c(counts.services - counts.draining_services)),
            statistics: Some(statistics),
            tags: Some(if inc.tags { rec.tags.clone() } else { vec![] }),
            settings: inc.settings.then(|| rec.settings.clone()),
            configuration: if inc.configurations { rec.configuration.clone() } else { None },
            capacity_providers: Some(rec.capacity_providers.clone()),
            default_capacity_provider_strategy: Some(
                rec.default_capacity_provider_strategy.clone(),
            ),
            ..Default::default()
        })
    }

    /// A cluster as CreateCluster and PutClusterCapacityProviders answer it.
    pub(super) async fn describe_record(&self, rec: &ClusterRecord) -> Result<Cluster, AwsError> {
        self.to_wire(rec, Includes::ALL).await
    }

    /// The live cluster record and its revision.
    pub(super) async fn live_cluster(
        &self,
        name: &str,
    ) -> Result<Option<(ClusterRecord, u64)>, AwsError> {
        records::get::<ClusterRecord>(&*self.core.store, &keys::cluster(name)).await
    }

    /// Read-modify-write of a live cluster with compare-and-set.
    pub(super) async fn update_cluster_record(
        &self,
        name: &str,
        f: impl FnMut(&mut ClusterRecord) -> Result<(), AwsError>,
    ) -> Result<ClusterRecord, AwsError> {
        records::update(&*self.core.store, &keys::cluster(name), &format!("cluster {name}"), f)
            .await?
            .ok_or_else(cluster_not_found)
    }

    /// The live cluster's revision for a container instance registration, creating `default`
    /// on first use as ECS does. ClusterNotFoundException for any other missing cluster.
    pub(super) async fn for_registration(&self, name: &str) -> Result<u64, AwsError> {
        if let Some((_, rev)) = self.live_cluster(name).await? {
            return Ok(rev);
        }
        if name == DEFAULT_CLUSTER || super::fargate::is_pool(name) {
            // `default`, as ECS; and the Fargate pool's hidden cluster, when its first host
            // registers.
            let req =
                CreateClusterRequest { cluster_name: Some(name.to_string()), ..Default::default() };
            self.create(req, None).await?;
            if let Some((_, rev)) = self.live_cluster(name).await? {
                return Ok(rev);
            }
        }
        Err(cluster_not_found())
    }

    /// CreateCluster: idempotent by name. `principal` is the caller, whose
    /// `containerInsights` account setting is the new cluster's default (`None`: the
    /// account's default).
    async fn create(
        &self,
        input: CreateClusterRequest,
        principal: Option<&str>,
    ) -> Result<Cluster, AwsError> {
        let name = input.cluster_name.clone().unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
        validate_cluster_name(&name, "clusterName").map_err(error::model)?;
        let tags = input.tags.clone().unwrap_or_default();
        tags::validate(&tags, "tags").map_err(error::model)?;
        let settings = input.settings.clone().unwrap_or_default();
        validate_settings(&settings)?;
        if input.service_connect_defaults.is_some() {
            return Err(ErrorCode::UnsupportedFeatureException.with(
                "serviceConnectDefaults needs Cloud Map namespaces, which Berth does not implement yet.",
            ));
        }
        let insights = if settings.is_empty() {
            super::account_settings::effective_value(
                &self.core,
                principal,
                SettingName::ContainerInsights,
            )
            .await?
        } else {
            String::new()
        };
        let rec = {
            let mut cas = records::Cas::new(&*self.core.store, format!("cluster {name}"));
            'cas: loop {
                cas.attempt().await?;
                if let Some((rec, _)) = self.live_cluster(&name).await? {
                    break 'cas rec;
                }
                let assoc = super::capacity_providers::resolve_associations(
                    &self.core,
                    input.capacity_providers.as_deref().unwrap_or_default(),
                    input.default_capacity_provider_strategy.as_deref().unwrap_or_default(),
                )
                .await?;
                let rec = ClusterRecord {
                    name: name.clone(),
                    arn: self.core.scope.cluster_arn(&name),
                    status: ClusterStatus::Active,
                    settings: if settings.is_empty() {
                        vec![ClusterSetting {
                            name: Some(ClusterSettingName::ContainerInsights),
                            value: Some(insights.clone()),
                        }]
                    } else {
                        settings.clone()
                    },
                    configuration: input.configuration.clone(),
                    tags: tags.clone(),
                    capacity_providers: assoc.names,
                    default_capacity_provider_strategy: assoc.strategy,
                    created_at: self.core.now(),
                };
                let mut txn = Txn::new().when(keys::cluster(&name), 0);
                for (key, rev) in assoc.fences {
                    txn = txn.when(key, rev);
                }
                let txn = txn
                    .put(keys::cluster(&name), records::encode(&rec))
                    .delete(keys::inactive_cluster(&name));
                if cas.commit(txn).await? {
                    break 'cas rec;
                }
            }
        };
        self.to_wire(&rec, Includes::ALL).await
    }
}

impl ClustersApi<RequestContext> for Clusters {
    async fn create_cluster(
        &self,
        ctx: &RequestContext,
        input: CreateClusterRequest,
    ) -> Result<CreateClusterResponse, AwsError> {
        if input.cluster_name.as_deref().is_some_and(super::fargate::is_pool) {
            return Err(error::invalid(format!(
                "clusterName: '{}' is reserved by Berth for its Fargate capacity; choose another name.",
                super::fargate::POOL_CLUSTER
            )));
        }
        Ok(CreateClusterResponse {
            cluster: Some(self.create(input, Some(&ctx.principal.arn)).await?),
        })
    }

    async fn describe_clusters(
        &self,
        _ctx: &RequestContext,
        input: DescribeClustersRequest,
    ) -> Result<DescribeClustersResponse, AwsError> {
        let given = input.clusters.unwrap_or_else(|| vec![DEFAULT_CLUSTER.to_string()]);
        if given.len() > 100 {
            return Err(error::invalid("clusters can name at most 100 clusters."));
        }
        let mut inc = Includes::default();
        for f in input.include.unwrap_or_default() {
            match f {
                ClusterField::Settings => inc.settings = true,
                ClusterField::Statistics => inc.statistics = true,
                ClusterField::Tags => inc.tags = true,
                ClusterField::Configurations => inc.configurations = true,
                ClusterField::Attachments => inc.attachments = true,
            }
        }
        let mut clusters = Vec::new();
        let mut failures = Vec::new();
        for g in &given {
            let missing = |arn: String| Failure {
                arn: Some(arn),
                reason: Some("MISSING".into()),
                ..Default::default()
            };
            let Some(name) =
                self.core.scope.cluster_name(g).filter(|n| !super::fargate::is_pool(n))
            else {
                // (The Fargate pool's hidden cluster is nobody's to describe.)
                failures.push(missing(g.clone()));
                continue;
            };
            let rec = match self.live_cluster(name).await? {
                Some((r, _)) => Some(r),
                None => {
                    records::get::<ClusterRecord>(&*self.core.store, &keys::inactive_cluster(name))
                        .await?
                        .map(|(r, _)| r)
                }
            };
            match rec {
                Some(r) => clusters.push(self.to_wire(&r, inc).await?),
                None => failures.push(missing(self.core.scope.cluster_arn(name))),
            }
        }
        Ok(DescribeClustersResponse { clusters: Some(clusters), failures: Some(failures) })
    }

    async fn list_clusters(
        &self,
        _ctx: &RequestContext,
        input: ListClustersRequest,
    ) -> Result<ListClustersResponse, AwsError> {
        let page =
            Page::parse(input.max_results, input.next_token.as_deref(), 100, keys::CLUSTERS)?;
        let (keys, next) = page.keys(&*self.core.store, keys::CLUSTERS, false).await?;
        let arns = keys
            .iter()
            .filter_map(|k| k.strip_prefix(keys::CLUSTERS))
            .filter(|n| !super::fargate::is_pool(n))
            .map(|n| self.core.scope.cluster_arn(n))
            .collect();
        Ok(ListClustersResponse { cluster_arns: Some(arns), next_token: next })
    }

    async fn delete_cluster(
        &self,
        _ctx: &RequestContext,
        input: DeleteClusterRequest,
    ) -> Result<DeleteClusterResponse, AwsError> {
        let name = self.core.cluster_name(input.cluster.as_deref())?;
        let rec = {
            let mut cas = records::Cas::new(&*self.core.store, format!("cluster {name}"));
            'cas: loop {
                cas.attempt().await?;
                let Some((mut rec, rev)) = self.live_cluster(&name).await? else {
                    return Err(cluster_not_found());
                };
                let c = self.counts(&name).await?;
                if c.instances > 0 {
                    return Err(ErrorCode::ClusterContainsContainerInstancesException.with(
                        "The Cluster cannot be deleted while Container Instances are active or draining.",
                    ));
                }
                if c.services > 0 {
                    return Err(ErrorCode::ClusterContainsServicesException
                        .with("The Cluster cannot be deleted while Services are active."));
                }
                if c.live_tasks > 0 {
                    return Err(ErrorCode::ClusterContainsTasksException
                        .with("The Cluster cannot be deleted while Tasks are active."));
                }
                rec.status = ClusterStatus::Inactive;
                // Writers that add instances, tasks or services to a cluster compare the cluster
                // key's revision in the same transaction, so nothing can join a cluster between
                // the counts above and this delete.
                let txn = Txn::new()
                    .when(keys::cluster(&name), rev)
                    .delete(keys::cluster(&name))
                    .put(keys::inactive_cluster(&name), records::encode(&rec));
                if cas.commit(txn).await? {
                    break 'cas rec;
                }
            }
        };
        Ok(DeleteClusterResponse { cluster: Some(self.to_wire(&rec, Includes::ALL).await?) })
    }

    async fn update_cluster(
        &self,
        _ctx: &RequestContext,
        input: UpdateClusterRequest,
    ) -> Result<UpdateClusterResponse, AwsError> {
        let name = self.core.cluster_name(input.cluster.as_deref())?;
        let settings = input.settings.clone().unwrap_or_default();
        validate_settings(&settings)?;
        if input.service_connect_defaults.is_some() {
            return Err(ErrorCode::UnsupportedFeatureException.with(
                "serviceConnectDefaults needs Cloud Map namespaces, which Berth does not implement yet.",
            ));
        }
        let rec = self
            .update_cluster_record(&name, |rec| {
                merge_settings(&mut rec.settings, &settings);
                if let Some(c) = &input.configuration {
                    rec.configuration = Some(c.clone());
                }
                Ok(())
            })
            .await?;
        Ok(UpdateClusterResponse { cluster: Some(self.to_wire(&rec, Includes::ALL).await?) })
    }

    async fn put_cluster_capacity_providers(
        &self,
        _ctx: &RequestContext,
        input: PutClusterCapacityProvidersRequest,
    ) -> Result<PutClusterCapacityProvidersResponse, AwsError> {
        super::capacity_providers::put_cluster_capacity_providers(&self.core, self, input).await
    }

    async fn update_cluster_settings(
        &self,
        _ctx: &RequestContext,
        input: UpdateClusterSettingsRequest,
    ) -> Result<UpdateClusterSettingsResponse, AwsError> {
        let name = self.core.cluster_name(input.cluster.as_deref())?;
        let settings = input.settings.unwrap_or_default();
        validate_settings(&settings)?;
        let rec = self
            .update_cluster_record(&name, |rec| {
                merge_settings(&mut rec.settings, &settings);
                Ok(())
            })
            .await?;
        Ok(UpdateClusterSettingsResponse {
            cluster: Some(self.to_wire(&rec, Includes::ALL).await?),
        })
    }
}
