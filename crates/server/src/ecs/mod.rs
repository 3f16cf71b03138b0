//! Amazon ECS: one module per resource, each a type that owns that resource's records and
//! implements the generated handler trait of its group of operations directly
//! (`berth_wire::ecs::ClustersApi` and so on), so the generated `dispatch` reaches it with no
//! hand-written trampoline.
//!
//! | module                 | type                 | operations / role                                    |
//! |------------------------|----------------------|------------------------------------------------------|
//! | `clusters`             | [`Clusters`]         | Create/Describe/List/Delete/UpdateCluster(Settings)   |
//! | `capacity_providers`   | [`CapacityProviders`]| Create/Describe/Update/DeleteCapacityProvider, PutClusterCapacityProviders |
//! | `account_settings`     | [`AccountSettings`]  | Put/PutDefault/Delete/ListAccountSettings(s)         |
//! | `task_definitions`     | [`TaskDefinitions`]  | Register/Describe/List/Deregister/Delete, families   |
//! | `container_instances`  | [`ContainerInstances`]| Register/Deregister/Describe/List, state           |
//! | `container_instances::attributes` | [`Attributes`] | Put/Delete/ListAttributes                  |
//! | `tasks`                | [`Tasks`]            | Run/Start/Stop/Describe/ListTasks                    |
//! | `tasks::protection`    | [`TaskProtection`]   | Update/GetTaskProtection                             |
//! | `state_changes`        | [`StateChanges`]     | SubmitTaskStateChange, SubmitContainerStateChange    |
//! | `services`             | [`Services`]         | Create/Update/Delete/Describe/ListServices           |
//! | `services::deployments`| [`ServiceDeployments`]| service deployments and revisions                   |
//! | `services::task_sets`  | [`TaskSets`]         | Create/Describe/Update/DeleteTaskSet, UpdateServicePrimaryTaskSet |
//! | `daemons`              | [`Daemons`]          | daemons and Express Gateway services: validation, then UnsupportedFeatureException |
//! | `tags`                 | [`Tags`]             | Tag/UntagResource, ListTagsForResource               |
//! | `agent_channel`        | [`AgentChannel`]     | the agents' poll and report endpoints                |
//! | `placement`            | [`Placement`]        | RunTask, StartTask and the service controller place here |
//! | `services::controller` | [`ServiceController`]| the service scheduler's executor                     |
//! | `retention`            | [`retention::Retention`]| removes STOPPED tasks, tokens, deleted revisions, orphaned ENIs |
//! | `fargate`              | (functions)          | the Fargate pool (hidden cluster), Fargate checks, PROVISIONING keys |
//! | `awsvpc`               | (functions)          | networkConfiguration checks, ENI allocation / release at placement |
//! | `placement::provision` | [`Placement`]        | places (or times out) Fargate tasks waiting in PROVISIONING |
//!
//! Shared, not owned: [`core::Core`] (store, clock, scope, timing), task record writes with
//! their indexes (`tasks::records`), and instance reservations (`reservations`). Every other
//! operation of the model answers `UnsupportedFeatureException` naming it
//! ([`berth_wire::ecs::Unimplemented`]).

mod account_settings;
mod agent_channel;
mod awsvpc;
mod capacity_providers;
mod clusters;
mod container_instances;
pub mod core;
mod daemons;
mod describe;
pub mod fargate;
#[cfg(test)]
mod fargate_tests;
mod placement;
mod reservations;
pub mod retention;
mod services;
pub(crate) use services::load_balancers;
mod state_changes;
mod tags;
mod task_definitions;
mod tasks;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use berth_model::arn::Scope;
use berth_store::Store;
use berth_wire::ecs::{Api, RegisterContainerInstanceRequest, RegisterContainerInstanceResponse};

pub use self::account_settings::AccountSettings;
pub use self::agent_channel::AgentChannel;
pub use self::capacity_providers::CapacityProviders;
pub use self::clusters::Clusters;
pub use self::container_instances::{Attributes, ContainerInstances};
use self::core::{Core, Timing};
pub use self::daemons::Daemons;
pub use self::placement::Placement;
pub use self::services::Services;
pub use self::services::controller::ServiceController;
pub use self::services::deployments::ServiceDeployments;
pub use self::services::task_sets::TaskSets;
pub use self::state_changes::StateChanges;
pub use self::tags::Tags;
pub use self::task_definitions::TaskDefinitions;
use self::tasks::records::TaskRecords;
pub use self::tasks::spot::Interrupt as SpotInterrupt;
pub use self::tasks::{TaskProtection, Tasks};
use crate::auth::Principal;
use crate::clock::Clock;
use crate::error::store as error_store;

/// Per-request context handed to every operation.
pub struct RequestContext {
    pub principal: Arc<Principal>,
    pub request_id: String,
}

/// The ECS API: its resource modules, wired together once.
pub struct Ecs {
    clusters: Arc<Clusters>,
    capacity_providers: CapacityProviders,
    account_settings: AccountSettings,
    task_definitions: Arc<TaskDefinitions>,
    container_instances: Arc<ContainerInstances>,
    attributes: Attributes,
    tasks: Arc<Tasks>,
    task_protection: TaskProtection,
    state_changes: Arc<StateChanges>,
    services: Arc<Services>,
    task_sets: TaskSets,
    daemons: Daemons,
    service_deployments: ServiceDeployments,
    tags: Tags,
    pub agent_channel: AgentChannel,
    pub service_controller: ServiceController,
    pub retention: retention::Retention,
    /// For [`Ecs::task_instance`] (authorization of instance keys).
    core: Arc<Core>,
    task_records: Arc<TaskRecords>,
}

impl Ecs {
    /// The shared core (the instance controller signs identity documents with its key).
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The task definition a RunTask, StartTask, CreateService, UpdateService or
    /// CreateTaskSet names, for authorization ([`crate::iam::host_access`]): `None` when it
    /// does not resolve (the operation itself then answers ECS's error).
    pub(crate) async fn named_task_definition(
        &self,
        given: &str,
    ) -> Result<Option<Arc<berth_model::records::TaskDefinitionRecord>>, berth_wire::AwsError> {
        match self.task_definitions.by_arn(given).await {
            Ok(rec) => Ok(Some(rec)),
            Err(e) if e.status < 500 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Interrupts FARGATE_SPOT tasks (fault injection; see [`tasks::spot`]).
    pub async fn interrupt_spot(
        &self,
        req: &SpotInterrupt,
    ) -> Result<Vec<berth_wire::ecs::Task>, berth_wire::AwsError> {
        self.tasks.interrupt_spot(req).await
    }

    /// Interrupts Spot tasks at random until `stop` is set (`--spot-interruption-rate`; see
    /// [`tasks::spot`]).
    pub async fn run_random_spot(
        &self,
        rate_per_hour: f64,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        self.tasks.run_random_spot(rate_per_hour, stop).await
    }

    /// The random Spot interruption rate in force (per task-hour; `0`: off).
    pub fn spot_interruption_rate(&self) -> f64 {
        self.core.timing.spot_interruption_rate_per_hour
    }

    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, scope: Scope, timing: Timing) -> Self {
        let core = Arc::new(Core::new(store, clock, scope, timing));
        let clusters = Arc::new(Clusters::new(core.clone()));
        let task_definitions = Arc::new(TaskDefinitions::new(core.clone()));
        let task_records = Arc::new(TaskRecords::new(core.clone()));
        let container_instances =
            Arc::new(ContainerInstances::new(core.clone(), clusters.clone(), task_records.clone()));
        let placement =
            Arc::new(Placement::new(core.clone(), clusters.clone(), task_records.clone()));
        let tasks = Arc::new(Tasks::new(
            core.clone(),
            clusters.clone(),
            task_definitions.clone(),
            task_records.clone(),
            placement.clone(),
        ));
        let state_changes = Arc::new(StateChanges::new(
            core.clone(),
            task_records.clone(),
            task_definitions.clone(),
        ));
        let services =
            Arc::new(Services::new(core.clone(), clusters.clone(), task_definitions.clone()));
        let task_sets = TaskSets::new(
            core.clone(),
            clusters.clone(),
            services.clone(),
            task_definitions.clone(),
        );
        let daemons = Daemons::new(clusters.clone());
        Self {
            task_sets,
            daemons,
            capacity_providers: CapacityProviders::new(core.clone(), clusters.clone()),
            account_settings: AccountSettings::new(core.clone()),
            service_deployments: ServiceDeployments::new(
                core.clone(),
                clusters.clone(),
                services.clone(),
            ),
            tags: Tags::new(
                core.clone(),
                clusters.clone(),
                task_definitions.clone(),
                services.clone(),
            ),
            agent_channel: AgentChannel::new(
                core.clone(),
                state_changes.clone(),
                task_definitions.clone(),
            ),
            retention: retention::Retention::new(core.clone(), task_definitions.clone()),
            attributes: Attributes::new(
                core.clone(),
                clusters.clone(),
                container_instances.clone(),
            ),
            task_protection: TaskProtection::new(
                core.clone(),
                clusters.clone(),
                task_records.clone(),
            ),
            service_controller: ServiceController::new(
                core.clone(),
                task_definitions.clone(),
                task_records.clone(),
                placement,
            ),
            core,
            task_records,
            clusters,
            task_definitions,
            container_instances,
            tasks,
            state_changes,
            services,
        }
    }

    /// The container instance ARN a task is placed on (`None`: no such task), for deciding
    /// whether an instance key may report on it.
    pub async fn task_instance(
        &self,
        cluster: Option<&str>,
        task: &str,
    ) -> Result<Option<String>, berth_wire::AwsError> {
        let mut cluster = self.core.cluster_name(cluster)?;
        if fargate::is_pool(&cluster) {
            // A pool agent's report on a Fargate task: the task's cluster is the pool index's.
            let id = task.rsplit('/').next().unwrap_or_default();
            match self.core.store.get(&fargate::pool_task(id)).await.map_err(error_store)? {
                Some(r) => cluster = String::from_utf8_lossy(&r.value).into_owned(),
                None => return Ok(None),
            }
        }
        let Some(id) = self.core.scope.child_id("task", &cluster, task) else { return Ok(None) };
        let Some((t, _)) = self.task_records.get(&cluster, id).await? else { return Ok(None) };
        if let Some(arn) = t.task.container_instance_arn {
            return Ok(Some(arn));
        }
        // A Fargate task shows no instance: its pool instance's ARN.
        if t.instance_id.is_empty() {
            return Ok(None);
        }
        let key = berth_model::keys::container_instance(fargate::POOL_CLUSTER, &t.instance_id);
        Ok(crate::records::get::<berth_model::records::ContainerInstanceRecord>(
            &*self.core.store,
            &key,
        )
        .await?
        .map(|(i, _)| i.arn))
    }

    /// A task as DescribeTasks shows it, and whether its cluster's `containerInsights`
    /// setting is on, for CloudWatch's ECS metrics (issue #15); `None`: no such task.
    pub(crate) async fn task_for_metrics(
        &self,
        cluster: &str,
        task: &str,
    ) -> Result<Option<(berth_wire::ecs::Task, bool)>, berth_wire::AwsError> {
        let cluster = self.core.cluster_name(Some(cluster))?;
        let Some(id) = self.core.scope.child_id("task", &cluster, task) else { return Ok(None) };
        let Some((t, _)) = self.task_records.get(&cluster, id).await? else { return Ok(None) };
        let insights = crate::records::get::<berth_model::records::ClusterRecord>(
            &*self.core.store,
            &berth_model::keys::cluster(&cluster),
        )
        .await?
        .is_some_and(|(c, _)| {
            c.settings.iter().any(|s| {
                s.name.map(|n| n.as_str()) == Some("containerInsights")
                    && matches!(s.value.as_deref(), Some("enabled" | "enhanced"))
            })
        });
        Ok(Some((t.task, insights)))
    }

    /// RegisterContainerInstance for an agent that joined with a join token: always a new
    /// instance (a `containerInstanceArn` is dropped, and the EC2 instance id is chosen here,
    /// so a token never re-registers, and so takes over, an existing instance).
    pub async fn join_register(
        &self,
        ctx: &RequestContext,
        mut input: RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, berth_wire::AwsError> {
        use berth_wire::ecs::ContainerInstancesApi;
        input.container_instance_arn = None;
        // A document this server signed names its instance: the join keeps its id (the
        // registration checks the signature again). A bad signature is refused.
        if crate::instances::verify_identity(
            &self.core,
            input.instance_identity_document.as_deref(),
            input.instance_identity_document_signature.as_deref(),
        )?
        .is_some()
        {
            return self.container_instances.register_container_instance(ctx, input).await;
        }
        let mut doc: serde_json::Value = input
            .instance_identity_document
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}));
        doc["instanceId"] =
            format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]).into();
        input.instance_identity_document = Some(doc.to_string());
        self.container_instances.register_container_instance(ctx, input).await
    }

    /// Brings records written by older versions up to the current shape; run once at start,
    /// before serving. Idempotent.
    pub async fn upgrade_records(&self) -> Result<(), berth_wire::AwsError> {
        let written = self.container_instances.backfill_ec2_index().await?;
        if written > 0 {
            tracing::info!(written, "indexed container instances by EC2 instance id");
        }
        Ok(())
    }
}

impl Api for Ecs {
    type Context = RequestContext;
    type Clusters = Clusters;
    type CapacityProviders = CapacityProviders;
    type TaskDefinitions = TaskDefinitions;
    type ContainerInstances = ContainerInstances;
    type Attributes = Attributes;
    type Tasks = Tasks;
    type TaskProtection = TaskProtection;
    type StateChanges = StateChanges;
    type Services = Services;
    type ServiceDeployments = ServiceDeployments;
    type TaskSets = TaskSets;
    type Daemons = Daemons;
    type ExpressGatewayServices = Daemons;
    type AccountSettings = AccountSettings;
    type Tags = Tags;

    fn clusters(&self) -> &Clusters {
        &self.clusters
    }
    fn capacity_providers(&self) -> &CapacityProviders {
        &self.capacity_providers
    }
    fn task_definitions(&self) -> &TaskDefinitions {
        &self.task_definitions
    }
    fn container_instances(&self) -> &ContainerInstances {
        &self.container_instances
    }
    fn attributes(&self) -> &Attributes {
        &self.attributes
    }
    fn tasks(&self) -> &Tasks {
        &self.tasks
    }
    fn task_protection(&self) -> &TaskProtection {
        &self.task_protection
    }
    fn state_changes(&self) -> &StateChanges {
        &self.state_changes
    }
    fn services(&self) -> &Services {
        &self.services
    }
    fn service_deployments(&self) -> &ServiceDeployments {
        &self.service_deployments
    }
    fn task_sets(&self) -> &TaskSets {
        &self.task_sets
    }
    fn daemons(&self) -> &Daemons {
        &self.daemons
    }
    fn express_gateway_services(&self) -> &Daemons {
        &self.daemons
    }
    fn account_settings(&self) -> &AccountSettings {
        &self.account_settings
    }
    fn tags(&self) -> &Tags {
        &self.tags
    }
}
