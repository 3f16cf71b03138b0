//! Amazon ECS: one module per resource, each holding that resource's operations.
//!
//! * `clusters.rs`: CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster,
//!   UpdateClusterSettings.
//! * `task_definitions.rs`: RegisterTaskDefinition, DescribeTaskDefinition,
//!   ListTaskDefinitions, ListTaskDefinitionFamilies, DeregisterTaskDefinition,
//!   DeleteTaskDefinitions.
//! * `tags.rs`: TagResource, UntagResource, ListTagsForResource.
//! * `container_instances.rs`: RegisterContainerInstance, DeregisterContainerInstance,
//!   DescribeContainerInstances, ListContainerInstances, UpdateContainerInstancesState,
//!   PutAttributes, ListAttributes, DeleteAttributes.
//! * `tasks.rs`: RunTask, StartTask, StopTask, DescribeTasks, ListTasks,
//!   SubmitTaskStateChange, SubmitContainerStateChange, and the agent channel (poll, report).
//! * `services.rs`: CreateService, UpdateService, DeleteService, DescribeServices,
//!   ListServices; `service_controller.rs` runs the service scheduler over them;
//!   `service_deployments.rs`: ListServiceDeployments, DescribeServiceDeployments,
//!   DescribeServiceRevisions, StopServiceDeployment.
//! * `task_protection.rs`: UpdateTaskProtection, GetTaskProtection.
//!
//! Every other operation of the model answers `UnsupportedFeatureException` naming it (the
//! generated trait's default).

mod clusters;
mod container_instances;
mod service_controller;
mod service_deployments;
mod services;
mod tags;
mod task_definitions;
mod task_protection;
mod tasks;

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
    /// An instance whose agent has not polled for this long shows agentConnected=false.
    agent_timeout_secs: f64,
    /// How often agents are told to poll at the latest.
    agent_heartbeat_secs: u32,
    /// After this long without a heartbeat, an instance's service tasks are replaced.
    instance_lost_after_secs: f64,
    /// How long a service task without health checks must run to count as healthy.
    service_settle_secs: f64,
    /// Wakes the service controller after an API change.
    services_wake: tokio::sync::Notify,
}

/// Number of lock stripes.
const STRIPES: usize = 64;

impl EcsService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, scope: Scope) -> Self {
        let stripes = (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        Self {
            store,
            clock,
            scope,
            stripes,
            agent_timeout_secs: 45.0,
            agent_heartbeat_secs: 15,
            instance_lost_after_secs: 120.0,
            service_settle_secs: 40.0,
            services_wake: tokio::sync::Notify::new(),
        }
    }

    /// Sets when a silent instance's service tasks are replaced, and how long a service task
    /// without health checks must run to count as healthy.
    pub fn with_service_timing(
        mut self,
        instance_lost_after: std::time::Duration,
        settle: std::time::Duration,
    ) -> Self {
        self.instance_lost_after_secs = instance_lost_after.as_secs_f64();
        self.service_settle_secs = settle.as_secs_f64();
        self
    }

    /// Sets how long an agent may stay silent before its instance shows disconnected, and
    /// derives the poll interval agents are told to keep (a third of it).
    pub fn with_agent_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.agent_timeout_secs = timeout.as_secs_f64();
        self.agent_heartbeat_secs = (timeout.as_secs() / 3).clamp(1, 60) as u32;
        self
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
    async fn register_container_instance(
        &self,
        _ctx: &RequestContext,
        input: RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, AwsError> {
        self.register_container_instance_op(input).await
    }
    async fn deregister_container_instance(
        &self,
        _ctx: &RequestContext,
        input: DeregisterContainerInstanceRequest,
    ) -> Result<DeregisterContainerInstanceResponse, AwsError> {
        self.deregister_container_instance_op(input).await
    }
    async fn describe_container_instances(
        &self,
        _ctx: &RequestContext,
        input: DescribeContainerInstancesRequest,
    ) -> Result<DescribeContainerInstancesResponse, AwsError> {
        self.describe_container_instances_op(input).await
    }
    async fn list_container_instances(
        &self,
        _ctx: &RequestContext,
        input: ListContainerInstancesRequest,
    ) -> Result<ListContainerInstancesResponse, AwsError> {
        self.list_container_instances_op(input).await
    }
    async fn update_container_instances_state(
        &self,
        _ctx: &RequestContext,
        input: UpdateContainerInstancesStateRequest,
    ) -> Result<UpdateContainerInstancesStateResponse, AwsError> {
        self.update_container_instances_state_op(input).await
    }
    async fn put_attributes(
        &self,
        _ctx: &RequestContext,
        input: PutAttributesRequest,
    ) -> Result<PutAttributesResponse, AwsError> {
        self.put_attributes_op(input).await
    }
    async fn list_attributes(
        &self,
        _ctx: &RequestContext,
        input: ListAttributesRequest,
    ) -> Result<ListAttributesResponse, AwsError> {
        self.list_attributes_op(input).await
    }
    async fn delete_attributes(
        &self,
        _ctx: &RequestContext,
        input: DeleteAttributesRequest,
    ) -> Result<DeleteAttributesResponse, AwsError> {
        self.delete_attributes_op(input).await
    }
    async fn run_task(
        &self,
        _ctx: &RequestContext,
        input: RunTaskRequest,
    ) -> Result<RunTaskResponse, AwsError> {
        self.run_task_op(input).await
    }
    async fn start_task(
        &self,
        _ctx: &RequestContext,
        input: StartTaskRequest,
    ) -> Result<StartTaskResponse, AwsError> {
        self.start_task_op(input).await
    }
    async fn stop_task(
        &self,
        _ctx: &RequestContext,
        input: StopTaskRequest,
    ) -> Result<StopTaskResponse, AwsError> {
        self.stop_task_op(input).await
    }
    async fn describe_tasks(
        &self,
        _ctx: &RequestContext,
        input: DescribeTasksRequest,
    ) -> Result<DescribeTasksResponse, AwsError> {
        self.describe_tasks_op(input).await
    }
    async fn create_service(
        &self,
        ctx: &RequestContext,
        input: CreateServiceRequest,
    ) -> Result<CreateServiceResponse, AwsError> {
        self.create_service_op(ctx, input).await
    }
    async fn update_service(
        &self,
        _ctx: &RequestContext,
        input: UpdateServiceRequest,
    ) -> Result<UpdateServiceResponse, AwsError> {
        self.update_service_op(input).await
    }
    async fn delete_service(
        &self,
        _ctx: &RequestContext,
        input: DeleteServiceRequest,
    ) -> Result<DeleteServiceResponse, AwsError> {
        self.delete_service_op(input).await
    }
    async fn describe_services(
        &self,
        _ctx: &RequestContext,
        input: DescribeServicesRequest,
    ) -> Result<DescribeServicesResponse, AwsError> {
        self.describe_services_op(input).await
    }
    async fn list_services(
        &self,
        _ctx: &RequestContext,
        input: ListServicesRequest,
    ) -> Result<ListServicesResponse, AwsError> {
        self.list_services_op(input).await
    }
    async fn list_service_deployments(
        &self,
        _ctx: &RequestContext,
        input: ListServiceDeploymentsRequest,
    ) -> Result<ListServiceDeploymentsResponse, AwsError> {
        self.list_service_deployments_op(input).await
    }
    async fn describe_service_deployments(
        &self,
        _ctx: &RequestContext,
        input: DescribeServiceDeploymentsRequest,
    ) -> Result<DescribeServiceDeploymentsResponse, AwsError> {
        self.describe_service_deployments_op(input).await
    }
    async fn describe_service_revisions(
        &self,
        _ctx: &RequestContext,
        input: DescribeServiceRevisionsRequest,
    ) -> Result<DescribeServiceRevisionsResponse, AwsError> {
        self.describe_service_revisions_op(input).await
    }
    async fn stop_service_deployment(
        &self,
        _ctx: &RequestContext,
        input: StopServiceDeploymentRequest,
    ) -> Result<StopServiceDeploymentResponse, AwsError> {
        self.stop_service_deployment_op(input).await
    }
    async fn update_task_protection(
        &self,
        _ctx: &RequestContext,
        input: UpdateTaskProtectionRequest,
    ) -> Result<UpdateTaskProtectionResponse, AwsError> {
        self.update_task_protection_op(input).await
    }
    async fn get_task_protection(
        &self,
        _ctx: &RequestContext,
        input: GetTaskProtectionRequest,
    ) -> Result<GetTaskProtectionResponse, AwsError> {
        self.get_task_protection_op(input).await
    }
    async fn list_tasks(
        &self,
        _ctx: &RequestContext,
        input: ListTasksRequest,
    ) -> Result<ListTasksResponse, AwsError> {
        self.list_tasks_op(input).await
    }
    async fn submit_task_state_change(
        &self,
        _ctx: &RequestContext,
        input: SubmitTaskStateChangeRequest,
    ) -> Result<SubmitTaskStateChangeResponse, AwsError> {
        self.submit_task_state_change_op(input).await
    }
    async fn submit_container_state_change(
        &self,
        _ctx: &RequestContext,
        input: SubmitContainerStateChangeRequest,
    ) -> Result<SubmitContainerStateChangeResponse, AwsError> {
        self.submit_container_state_change_op(input).await
    }
}
