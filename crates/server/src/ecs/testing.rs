//! Test support: the ECS modules wired over a real store in a temporary directory, with a
//! clock the test moves.

use std::sync::Arc;

use berth_model::arn::Scope;
use berth_store::{SqliteStore, Store};
use berth_wire::ecs::*;

use super::core::Timing;
use super::{Ecs, RequestContext};
use crate::auth::Principal;
use crate::clock::ManualClock;

/// An [`Ecs`] on a fresh store, and its clock.
pub struct Harness {
    pub ecs: Ecs,
    pub clock: Arc<ManualClock>,
    /// The store under `ecs` (to plant records as older versions wrote them).
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Must run inside a tokio runtime (the caches follow the store's change feed).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("berth.db")).expect("store"));
        let clock = Arc::new(ManualClock::new(time::macros::datetime!(2026-12-01 12:00 UTC)));
        let scope = Scope::new("us-east-1", "000000000000");
        let ecs = Ecs::new(store.clone(), clock.clone(), scope, Timing::default());
        Self { ecs, clock, store, _dir: dir }
    }

    /// A request context for the account's root.
    pub fn ctx(&self) -> RequestContext {
        RequestContext {
            principal: Arc::new(Principal {
                arn: "arn:aws:iam::000000000000:root".into(),
                account_id: "000000000000".into(),
                access_key_id: "AKIDTEST".into(),
                instance: None,
            }),
            request_id: "test".into(),
        }
    }
}

/// Registers an instance (2 vCPU, 4 GiB) in the `default` cluster; returns its ARN.
pub async fn register_instance(ecs: &Ecs, ctx: &RequestContext) -> String {
    register_instance_in(ecs, ctx, None).await
}

/// Registers an instance (2 vCPU, 4 GiB) in the `default` cluster, in an availability zone.
pub async fn register_instance_in(ecs: &Ecs, ctx: &RequestContext, zone: Option<&str>) -> String {
    let int = |name: &str, v: i32| Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(v),
        ..Default::default()
    };
    let req = RegisterContainerInstanceRequest {
        total_resources: Some(vec![int("CPU", 2048), int("MEMORY", 4096)]),
        attributes: zone.map(|z| {
            vec![Attribute {
                name: Some("ecs.availability-zone".into()),
                value: Some(z.into()),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let out = ecs.container_instances().register_container_instance(ctx, req).await;
    out.expect("registered").container_instance.unwrap().container_instance_arn.unwrap()
}

/// Registers a revision of `family` (one 128 MiB container); returns its ARN.
pub async fn task_definition(ecs: &Ecs, ctx: &RequestContext, family: &str) -> String {
    let req = RegisterTaskDefinitionRequest {
        family: Some(family.into()),
        container_definitions: Some(vec![ContainerDefinition {
            name: Some("app".into()),
            image: Some("berth-demo:latest".into()),
            memory: Some(128),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let out = ecs.task_definitions().register_task_definition(ctx, req).await;
    out.expect("registered").task_definition.unwrap().task_definition_arn.unwrap()
}

/// The agent's poll without waiting: its heartbeat.
pub async fn heartbeat(ecs: &Ecs, ctx: &RequestContext, instance_arn: &str) {
    let req = berth_agent_protocol::PollRequest {
        cluster: "default".into(),
        container_instance_arn: instance_arn.into(),
        seen_version: u64::MAX,
        wait_seconds: 0,
    };
    ecs.agent_channel.agent_poll(ctx, req).await.expect("poll");
}

/// The agent reports a task RUNNING.
pub async fn report_running(ecs: &Ecs, ctx: &RequestContext, task_arn: &str) {
    let req = SubmitTaskStateChangeRequest {
        task: Some(task_arn.into()),
        status: Some(berth_model::lifecycle::TaskStatus::Running.to_string()),
        ..Default::default()
    };
    ecs.state_changes().submit_task_state_change(ctx, req).await.expect("report");
}

/// The service's tasks desired RUNNING: (task ARN, instance ARN).
pub async fn service_tasks(
    ecs: &Ecs,
    ctx: &RequestContext,
    service: &str,
) -> Vec<(String, String)> {
    let list = ListTasksRequest { service_name: Some(service.into()), ..Default::default() };
    let arns = ecs.tasks().list_tasks(ctx, list).await.expect("list").task_arns.unwrap();
    if arns.is_empty() {
        return vec![];
    }
    let req = DescribeTasksRequest { tasks: Some(arns), ..Default::default() };
    let tasks = ecs.tasks().describe_tasks(ctx, req).await.expect("describe").tasks.unwrap();
    tasks.into_iter().map(|t| (t.task_arn.unwrap(), t.container_instance_arn.unwrap())).collect()
}

/// Runs service controller passes (each after letting the caches follow the store) until
/// `done`; panics naming `what` after 200.
pub async fn passes_until<F: AsyncFnMut() -> bool>(h: &Harness, what: &str, mut done: F) {
    for _ in 0..200 {
        tokio::task::yield_now().await;
        h.ecs.service_controller.service_pass().await.expect("pass");
        if done().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("the controller never reached: {what}");
}
