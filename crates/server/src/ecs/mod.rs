//! Amazon ECS: one module per resource, each holding that resource's operations.
//!
//! * `clusters.rs`: CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster,
//!   UpdateClusterSettings.
//! * `task_definitions.rs`: RegisterTaskDefinition, DescribeTaskDefinition,
//!   ListTaskDefinitions, ListTaskDefinitionFamilies, DeregisterTaskDefinition,
//!   DeleteTaskDefinitions.
//! * `tags.rs`: TagResource, UntagResource, ListTagsForResource.
//!
//! Every other operation of the model answers `UnsupportedFeatureException` naming it (the
//! generated trait's default).

mod clusters;
mod tags;
mod task_definitions;

use std::sync::Arc;

use berth_model::arn::Scope;
use berth_store::Store;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use crate::auth::Principal;
use crate::clock::Clock;

/// Per-request context handed to every operation.
pub struct RequestContext {
    pub principal: Arc<Principal>,
    pub request_id: String,
}

/// The ECS API over the store.
pub struct EcsService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    scope: Scope,
    /// Striped locks that serialise this server's writers of one record group (a task
    /// definition family, a cluster), so concurrent requests queue instead of burning
    /// compare-and-set retries against each other. Correctness never depends on them: the
    /// store's compare-and-set still guards against every other writer (other servers).
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// Number of lock stripes.
const STRIPES: usize = 64;

impl EcsService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, scope: Scope) -> Self {
        let stripes = (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        Self { store, clock, scope, stripes }
    }

    /// The stripe lock for a record group, e.g. a family's key.
    async fn serialise(&self, group: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        group.hash(&mut h);
        self.stripes[(h.finish() as usize) % STRIPES].lock().await
    }

    fn now(&self) -> f64 {
        crate::clock::epoch_seconds(self.clock.now())
    }
}

/// The cluster ECS uses wherever `cluster` is omitted.
pub const DEFAULT_CLUSTER: &str = "default";

impl Api for EcsService {
    type Context = RequestContext;

    async fn create_cluster(
        &self,
        _ctx: &RequestContext,
        input: CreateClusterRequest,
    ) -> Result<CreateClusterResponse, AwsError> {
        self.create_cluster_op(input).await
    }
    async fn describe_clusters(
        &self,
        _ctx: &RequestContext,
        input: DescribeClustersRequest,
    ) -> Result<DescribeClustersResponse, AwsError> {
        self.describe_clusters_op(input).await
    }
    async fn list_clusters(
        &self,
        _ctx: &RequestContext,
        input: ListClustersRequest,
    ) -> Result<ListClustersResponse, AwsError> {
        self.list_clusters_op(input).await
    }
    async fn delete_cluster(
        &self,
        _ctx: &RequestContext,
        input: DeleteClusterRequest,
    ) -> Result<DeleteClusterResponse, AwsError> {
        self.delete_cluster_op(input).await
    }
    async fn update_cluster(
        &self,
        _ctx: &RequestContext,
        input: UpdateClusterRequest,
    ) -> Result<UpdateClusterResponse, AwsError> {
        self.update_cluster_op(input).await
    }
    async fn update_cluster_settings(
        &self,
        _ctx: &RequestContext,
        input: UpdateClusterSettingsRequest,
    ) -> Result<UpdateClusterSettingsResponse, AwsError> {
        self.update_cluster_settings_op(input).await
    }
    async fn register_task_definition(
        &self,
        ctx: &RequestContext,
        input: RegisterTaskDefinitionRequest,
    ) -> Result<RegisterTaskDefinitionResponse, AwsError> {
        self.register_task_definition_op(ctx, input).await
    }
    async fn describe_task_definition(
        &self,
        _ctx: &RequestContext,
        input: DescribeTaskDefinitionRequest,
    ) -> Result<DescribeTaskDefinitionResponse, AwsError> {
        self.describe_task_definition_op(input).await
    }
    async fn list_task_definitions(
        &self,
        _ctx: &RequestContext,
        input: ListTaskDefinitionsRequest,
    ) -> Result<ListTaskDefinitionsResponse, AwsError> {
        self.list_task_definitions_op(input).await
    }
    async fn list_task_definition_families(
        &self,
        _ctx: &RequestContext,
        input: ListTaskDefinitionFamiliesRequest,
    ) -> Result<ListTaskDefinitionFamiliesResponse, AwsError> {
        self.list_task_definition_families_op(input).await
    }
    async fn deregister_task_definition(
        &self,
        _ctx: &RequestContext,
        input: DeregisterTaskDefinitionRequest,
    ) -> Result<DeregisterTaskDefinitionResponse, AwsError> {
        self.deregister_task_definition_op(input).await
    }
    async fn delete_task_definitions(
        &self,
        _ctx: &RequestContext,
        input: DeleteTaskDefinitionsRequest,
    ) -> Result<DeleteTaskDefinitionsResponse, AwsError> {
        self.delete_task_definitions_op(input).await
    }
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: TagResourceRequest,
    ) -> Result<TagResourceResponse, AwsError> {
        self.tag_resource_op(input).await
    }
    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: UntagResourceRequest,
    ) -> Result<UntagResourceResponse, AwsError> {
        self.untag_resource_op(input).await
    }
    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: ListTagsForResourceRequest,
    ) -> Result<ListTagsForResourceResponse, AwsError> {
        self.list_tags_for_resource_op(input).await
    }
}
