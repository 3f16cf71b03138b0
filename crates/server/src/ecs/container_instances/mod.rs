//! Container instances: RegisterContainerInstance, DeregisterContainerInstance,
//! DescribeContainerInstances, ListContainerInstances, UpdateContainerInstancesState, and the
//! attribute operations PutAttributes, ListAttributes, DeleteAttributes.
//!
//! Invariants:
//! * an instance lives at `ecs/instances/<cluster>/<id>` while ACTIVE or DRAINING, and moves to
//!   `ecs/instances-inactive/...` when deregistered, in one transaction that also fences the
//!   cluster record (so a cluster cannot be deleted under a registration);
//! * `used_*` on the record is the sum of what its not-yet-STOPPED tasks reserve; placement
//!   and task completion change it with compare-and-set on the record, never elsewhere;
//! * `agentConnected` is derived at read time from the heartbeat key, which only polls write.

mod agent_ops;
mod attributes;
pub use self::attributes::Attributes;
mod view;

use std::sync::Arc;

use berth_model::keys;
use berth_model::lifecycle::{DesiredTaskStatus, InstanceStatus, TaskStatus};
use berth_model::records::{ContainerInstanceRecord, ContainerStatusExt, HeartbeatRecord};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

pub(crate) use self::view::snapshot_of;
use self::view::{DEFAULT_RESERVED_PORTS, instance_not_found, ports_resource, resource};
use super::RequestContext;
use super::clusters::Clusters;
use super::core::Core;
use super::describe::ByIds;
use super::tasks::records::TaskRecords;
use crate::error;
use crate::pagination::Page;
use crate::records;

/// Owns container instance records, their heartbeats and desired-state markers.
pub struct ContainerInstances {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    task_records: Arc<TaskRecords>,
}

impl ContainerInstances {
    pub fn new(core: Arc<Core>, clusters: Arc<Clusters>, task_records: Arc<TaskRecords>) -> Self {
        Self { core, clusters, task_records }
    }
}

impl ContainerInstancesApi<RequestContext> for ContainerInstances {
    async fn discover_poll_endpoint(
        &self,
        _ctx: &RequestContext,
        input: DiscoverPollEndpointRequest,
    ) -> Result<DiscoverPollEndpointResponse, AwsError> {
        self.discover_poll_endpoint_op(input).await
    }

    async fn update_container_agent(
        &self,
        _ctx: &RequestContext,
        input: UpdateContainerAgentRequest,
    ) -> Result<UpdateContainerAgentResponse, AwsError> {
        self.update_container_agent_op(input).await
    }

    async fn register_container_instance(
        &self,
        ctx: &RequestContext,
        input: RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, AwsError> {
        let cluster = self.core.cluster_name(input.cluster.as_deref())?;
        // A new instance's ARN format: the registering principal's
        // containerInstanceLongArnFormat account setting (an instance key: the account's).
        let principal = ctx.principal.instance.is_none().then_some(ctx.principal.arn.as_str());
        let long_arn = crate::ecs::account_settings::long_arn_format(
            &self.core,
            principal,
            SettingName::ContainerInstanceLongArnFormat,
        )
        .await?;
        let doc: serde_json::Value = match input.instance_identity_document.as_deref() {
            Some(d) if !d.is_empty() => serde_json::from_str(d).map_err(|e| {
                error::invalid(format!("instanceIdentityDocument is not valid JSON: {e}"))
            })?,
            _ => serde_json::Value::Null,
        };
        // A document this server signed fixes the EC2 id and the zone; a bad signature is
        // ECS's ClientException (`crate::instances::verify_identity`).
        let verified = crate::instances::verify_identity(
            &self.core,
            input.instance_identity_document.as_deref(),
            input.instance_identity_document_signature.as_deref(),
        )?;
        let ec2_id = verified
            .as_ref()
            .map(|d| d.instance_id.clone())
            .or_else(|| doc["instanceId"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]));
        let total = input.total_resources.clone().unwrap_or_default();
        for name in ["CPU", "MEMORY"] {
            let ok = resource(&total, name).is_some_and(|r| {
                r.integer_value.is_some_and(|v| v > 0)
                    || r.long_value.is_some_and(|v| v > 0)
                    || r.double_value.is_some_and(|v| v > 0.0)
            });
            if !ok {
                return Err(error::invalid(format!(
                    "totalResources must include a positive {name} resource."
                )));
            }
        }
        let mut registered = total.clone();
        if resource(&registered, "PORTS").is_none() {
            registered.push(ports_resource(
                "PORTS",
                DEFAULT_RESERVED_PORTS.iter().map(u16::to_string).collect(),
            ));
        }
        if resource(&registered, "PORTS_UDP").is_none() {
            registered.push(ports_resource("PORTS_UDP", vec![]));
        }
        let tags = input.tags.clone().unwrap_or_default();
        berth_model::tags::validate(&tags, "tags").map_err(error::model)?;
        let mut attributes = input.attributes.clone().unwrap_or_default();
        for (i, a) in attributes.iter().enumerate() {
            if a.name.as_deref().is_none_or(str::is_empty) {
                return Err(error::invalid(format!("attributes[{i}].name is required.")));
            }
        }
        if let Some(d) = &verified {
            // The signed document's zone and type win over what the agent claims.
            for (name, value) in [
                ("ecs.availability-zone", &d.availability_zone),
                ("ecs.instance-type", &d.instance_type),
            ] {
                attributes.retain(|a| a.name.as_deref() != Some(name));
                attributes.push(berth_wire::ecs::Attribute {
                    name: Some(name.into()),
                    value: Some(value.clone()),
                    ..Default::default()
                });
            }
        }

        let what = format!("cluster {cluster}");
        let rec = {
            let mut cas = records::Cas::new(&*self.core.store, &what);
            'cas: loop {
                cas.attempt().await?;
                let cluster_rev = self.clusters.for_registration(&cluster).await?;
                // Re-registration: by ARN, else by the EC2 instance id already in the cluster.
                let existing = match input.container_instance_arn.as_deref() {
                    Some(arn) => match self.live_instance(&cluster, arn).await? {
                        Some(found) => Some(found),
                        None => {
                            return Err(error::client(format!(
                                "The container instance {arn} is not registered in cluster {cluster}; register without containerInstanceArn to get a new one."
                            )));
                        }
                    },
                    None => self.by_ec2_id(&cluster, &ec2_id).await?,
                };
                // The EC2 id index entry this registration leaves (its revision fences a
                // concurrent registration of the same EC2 instance).
                let index_key = keys::instance_by_ec2(
                    &cluster,
                    existing.as_ref().map_or(&ec2_id, |(r, _)| &r.ec2_instance_id),
                );
                let index_rev = self
                    .core
                    .store
                    .get(&index_key)
                    .await
                    .map_err(error::store)?
                    .map_or(0, |r| r.mod_revision);
                let now = self.core.now();
                let (rec, compare) = match existing {
                    Some((mut rec, rev)) => {
                        rec.registered_resources = registered.clone();
                        rec.attributes = attributes.clone();
                        rec.version_info = input.version_info.clone();
                        if !tags.is_empty() {
                            rec.tags = tags.clone();
                        }
                        rec.epoch += 1;
                        rec.version += 1;
                        (rec, rev)
                    }
                    None => {
                        let id = berth_model::arn::new_resource_id(long_arn);
                        let rec = ContainerInstanceRecord {
                            arn: self.core.scope.container_instance_arn(&cluster, &id),
                            id,
                            cluster: cluster.clone(),
                            ec2_instance_id: ec2_id.clone(),
                            status: InstanceStatus::Active,
                            registered_resources: registered.clone(),
                            used_cpu: 0,
                            used_memory_mib: 0,
                            used_ports_tcp: vec![],
                            used_ports_udp: vec![],
                            task_groups: Default::default(),
                            attributes: attributes.clone(),
                            version_info: input.version_info.clone(),
                            tags: tags.clone(),
                            registered_at: now,
                            epoch: 1,
                            version: 1,
                        };
                        (rec, 0)
                    }
                };
                let key = keys::container_instance(&cluster, &rec.id);
                let txn = Txn::new()
                    .when(keys::cluster(&cluster), cluster_rev)
                    .when(key.clone(), compare)
                    .when(index_key.clone(), index_rev)
                    .put(key, records::encode(&rec))
                    .put(index_key, rec.id.clone())
                    .put(
                        keys::instance_heartbeat(&rec.id),
                        records::encode(&HeartbeatRecord { last_seen: now }),
                    )
                    .put(keys::instance_desired(&rec.id), Vec::new());
                if cas.commit(txn).await? {
                    break 'cas rec;
                }
            }
        };
        Ok(RegisterContainerInstanceResponse {
            container_instance: Some(self.instance_to_wire(&rec, true).await?),
        })
    }

    async fn deregister_container_instance(
        &self,
        _ctx: &RequestContext,
        input: DeregisterContainerInstanceRequest,
    ) -> Result<DeregisterContainerInstanceResponse, AwsError> {
        let cluster = self.core.cluster_name(input.cluster.as_deref())?;
        let given = input.container_instance.clone().unwrap_or_default();
        let force = input.force.unwrap_or(false);
        let what = format!("container instance {given}");
        let rec = {
            let mut cas = records::Cas::new(&*self.core.store, &what);
            'cas: loop {
                cas.attempt().await?;
                let Some((mut rec, rev)) = self.live_instance(&cluster, &given).await? else {
                    // A missing cluster is ClusterNotFoundException, as ECS answers.
                    self.clusters.existing_cluster(Some(&cluster)).await?;
                    return Err(instance_not_found(&given));
                };
                let task_keys = self
                    .core
                    .store
                    .range(Range::prefix(&keys::instance_tasks_prefix(&rec.id)))
                    .await
                    .map_err(error::store)?;
                if !task_keys.is_empty() && !force {
                    return Err(error::invalid(format!(
                        "The container instance still has {} task(s) that are not stopped: stop them first, or deregister with --force (Berth then stops them).",
                        task_keys.len()
                    )));
                }
                rec.status = InstanceStatus::Inactive;
                rec.version += 1;
                let mut txn = Txn::new()
                    .when(keys::container_instance(&cluster, &rec.id), rev)
                    .delete(keys::container_instance(&cluster, &rec.id))
                    .delete(keys::instance_by_ec2(&cluster, &rec.ec2_instance_id))
                    .put(
                        keys::inactive_container_instance(&cluster, &rec.id),
                        records::encode(&rec),
                    )
                    .delete(keys::instance_heartbeat(&rec.id))
                    .put(keys::instance_desired(&rec.id), Vec::new());
                // Forced: the instance's tasks can never report again; they are stopped here, and
                // the agent, should it still be alive, stops their containers on its next poll.
                let now = self.core.now();
                for tk in &task_keys {
                    let Some(task_id) = tk.key.rsplit('/').next() else { continue };
                    let Some((before, trev)) = self.task_records.get(&cluster, task_id).await?
                    else {
                        continue;
                    };
                    let mut t = before.clone();
                    t.set_last_status(TaskStatus::Stopped);
                    t.set_desired_status(DesiredTaskStatus::Stopped);
                    t.task.stopped_at = Some(now);
                    t.task.execution_stopped_at.get_or_insert(now);
                    t.task.stop_code.get_or_insert(TaskStopCode::TerminationNotice);
                    t.task.stopped_reason.get_or_insert_with(|| {
                        "Container instance deregistered (forced) while the task was running".into()
                    });
                    for c in t.task.containers.iter_mut().flatten() {
                        c.set_status(TaskStatus::Stopped);
                    }
                    t.task.version = Some(t.task.version.unwrap_or(0) + 1);
                    let tkey = keys::task(&cluster, task_id);
                    txn = txn.when(tkey.clone(), trev).put(tkey, records::encode(&t));
                    txn = TaskRecords::reindex(txn, &before, &t);
                }
                if cas.commit(txn).await? {
                    break 'cas rec;
                }
            }
        };
        Ok(DeregisterContainerInstanceResponse {
            container_instance: Some(self.instance_to_wire(&rec, false).await?),
        })
    }

    async fn describe_container_instances(
        &self,
        _ctx: &RequestContext,
        input: DescribeContainerInstancesRequest,
    ) -> Result<DescribeContainerInstancesResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.container_instances.unwrap_or_default();
        if given.is_empty() || given.len() > 100 {
            return Err(error::invalid(
                "containerInstances must name between 1 and 100 instances.",
            ));
        }
        let with_tags = input.include.unwrap_or_default().contains(&ContainerInstanceField::Tags);
        let mut out = ByIds::new();
        for g in &given {
            let found = match self.core.scope.child_id("container-instance", &cluster, g) {
                None => None,
                Some(id) => match self.live_instance(&cluster, id).await? {
                    Some((r, _)) => Some(r),
                    None => records::get::<ContainerInstanceRecord>(
                        &*self.core.store,
                        &keys::inactive_container_instance(&cluster, id),
                    )
                    .await?
                    .map(|(r, _)| r),
                },
            };
            let shown = match found {
                Some(r) => Some(self.instance_to_wire(&r, with_tags).await?),
                None => None,
            };
            out.record(g, shown, |name| self.core.scope.container_instance_arn(&cluster, name));
        }
        Ok(DescribeContainerInstancesResponse {
            container_instances: Some(out.found),
            failures: Some(out.failures),
        })
    }

    async fn list_container_instances(
        &self,
        _ctx: &RequestContext,
        input: ListContainerInstancesRequest,
    ) -> Result<ListContainerInstancesResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let filter = match input.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(src) => Some(
                berth_scheduler::wire::expression(src, "filter")
                    .map_err(|e| error::invalid(e.to_string()))?,
            ),
            None => None,
        };
        let prefix = keys::cluster_instances_prefix(&cluster);
        let page = Page::parse(input.max_results, input.next_token.as_deref(), 100, &prefix)?;
        let want = input.status.map(InstanceStatus::from_wire);
        if matches!(
            want,
            Some(
                InstanceStatus::Inactive
                    | InstanceStatus::Registering
                    | InstanceStatus::Deregistering
                    | InstanceStatus::RegistrationFailed
            )
        ) {
            // Berth registers and deregisters atomically: instances are never in these states.
            return Ok(ListContainerInstancesResponse {
                container_instance_arns: Some(vec![]),
                next_token: None,
            });
        }
        let (keys_page, next) = if want.is_none() && filter.is_none() {
            page.keys(&*self.core.store, &prefix, false).await?
        } else {
            // Filter within the cluster's instances: one range read, then the status and the
            // expression (evaluated as the scheduler sees each instance) per instance.
            let mut ks = Vec::new();
            for (r, _) in self.cluster_instances(&cluster).await? {
                let key = keys::container_instance(&cluster, &r.id);
                if want.is_some_and(|w| r.status != w)
                    || page.after.as_ref().is_some_and(|a| &key <= a)
                {
                    continue;
                }
                if let Some(f) = &filter
                    && !f.eval(&self.snapshot(&r).await?)
                {
                    continue;
                }
                ks.push(key);
            }
            let more = ks.len() > page.limit;
            ks.truncate(page.limit);
            let token = if more { ks.last().map(|k| crate::pagination::token(k)) } else { None };
            (ks, token)
        };
        let arns = keys_page
            .iter()
            .filter_map(|k| k.rsplit('/').next())
            .map(|id| self.core.scope.container_instance_arn(&cluster, id))
            .collect();
        Ok(ListContainerInstancesResponse { container_instance_arns: Some(arns), next_token: next })
    }

    async fn update_container_instances_state(
        &self,
        _ctx: &RequestContext,
        input: UpdateContainerInstancesStateRequest,
    ) -> Result<UpdateContainerInstancesStateResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let status = match input.status {
            Some(ContainerInstanceStatus::Active) => InstanceStatus::Active,
            Some(ContainerInstanceStatus::Draining) => InstanceStatus::Draining,
            other => {
                return Err(error::invalid(format!(
                    "status must be ACTIVE or DRAINING, not {}.",
                    other.map(|s| s.as_str()).unwrap_or("absent")
                )));
            }
        };
        let given = input.container_instances.unwrap_or_default();
        if given.is_empty() || given.len() > 10 {
            return Err(error::invalid("containerInstances must name between 1 and 10 instances."));
        }
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for g in &given {
            let what = format!("container instance {g}");
            let updated = {
                let mut cas = records::Cas::new(&*self.core.store, &what);
                'cas: loop {
                    cas.attempt().await?;
                    let Some((mut rec, rev)) = self.live_instance(&cluster, g).await? else {
                        break 'cas None;
                    };
                    if rec.status == status {
                        break 'cas Some(rec);
                    }
                    rec.status = status;
                    rec.version += 1;
                    let key = keys::container_instance(&cluster, &rec.id);
                    let txn = Txn::new()
                        .when(key.clone(), rev)
                        .put(key, records::encode(&rec))
                        .put(keys::instance_desired(&rec.id), Vec::new());
                    if cas.commit(txn).await? {
                        break 'cas Some(rec);
                    }
                }
            };
            match updated {
                Some(rec) => out.push(self.instance_to_wire(&rec, false).await?),
                None => failures.push(Failure {
                    arn: Some(g.clone()),
                    reason: Some("MISSING".into()),
                    detail: None,
                }),
            }
        }
        Ok(UpdateContainerInstancesStateResponse {
            container_instances: Some(out),
            failures: Some(failures),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_wire::ecs::*;

    use crate::ecs::testing::*;

    #[tokio::test]
    async fn an_agent_silent_past_the_timeout_shows_disconnected_until_it_polls() {
        let h = Harness::new();
        let ctx = h.ctx();
        let arn = register_instance(&h.ecs, &ctx).await;
        let connected = async || {
            let req = DescribeContainerInstancesRequest {
                container_instances: Some(vec![arn.clone()]),
                ..Default::default()
            };
            let out = h.ecs.container_instances().describe_container_instances(&ctx, req).await;
            out.unwrap().container_instances.unwrap()[0].agent_connected.unwrap()
        };
        assert!(connected().await, "registration is a heartbeat");
        h.clock.advance(Duration::from_secs(45));
        assert!(connected().await, "45 s is still within --agent-timeout-secs");
        h.clock.advance(Duration::from_secs(1));
        assert!(!connected().await);
        heartbeat(&h.ecs, &ctx, &arn).await;
        assert!(connected().await);
    }

    fn registration(ec2_id: &str) -> RegisterContainerInstanceRequest {
        let int = |name: &str, v: i32| Resource {
            name: Some(name.into()),
            r#type: Some("INTEGER".into()),
            integer_value: Some(v),
            ..Default::default()
        };
        RegisterContainerInstanceRequest {
            instance_identity_document: Some(format!(r#"{{"instanceId":"{ec2_id}"}}"#)),
            total_resources: Some(vec![int("CPU", 1024), int("MEMORY", 2048)]),
            ..Default::default()
        }
    }

    async fn register(h: &Harness, ec2_id: &str) -> ContainerInstance {
        let ctx = h.ctx();
        let out =
            h.ecs.container_instances().register_container_instance(&ctx, registration(ec2_id));
        out.await.expect("registered").container_instance.unwrap()
    }

    #[tokio::test]
    async fn re_registering_an_ec2_instance_finds_it_by_its_index_until_deregistered() {
        let h = Harness::new();
        let first = register(&h, "i-0aaaaaaaaaaaaaaa1").await;
        let other = register(&h, "i-0aaaaaaaaaaaaaaa2").await;
        assert_ne!(first.container_instance_arn, other.container_instance_arn);
        let again = register(&h, "i-0aaaaaaaaaaaaaaa1").await;
        assert_eq!(again.container_instance_arn, first.container_instance_arn, "same instance");
        assert!(again.version > first.version, "re-registration bumps the version");

        let req = DeregisterContainerInstanceRequest {
            container_instance: first.container_instance_arn.clone(),
            ..Default::default()
        };
        h.ecs.container_instances().deregister_container_instance(&h.ctx(), req).await.unwrap();
        let fresh = register(&h, "i-0aaaaaaaaaaaaaaa1").await;
        assert_ne!(
            fresh.container_instance_arn, first.container_instance_arn,
            "after deregistration the EC2 instance registers as a new container instance"
        );
    }

    #[tokio::test]
    async fn concurrent_registrations_of_one_ec2_instance_make_one_container_instance() {
        let h = Harness::new();
        let regs = (0..8).map(|_| register(&h, "i-0bbbbbbbbbbbbbbb1"));
        let arns: std::collections::BTreeSet<_> = futures_util::future::join_all(regs)
            .await
            .into_iter()
            .map(|ci| ci.container_instance_arn.unwrap())
            .collect();
        assert_eq!(arns.len(), 1, "{arns:?}");
    }

    #[tokio::test]
    async fn instances_registered_before_the_index_are_indexed_at_start() {
        let h = Harness::new();
        let first = register(&h, "i-0ccccccccccccccc1").await;
        // As an older server left it: the instance record without its index entry.
        let (cluster, ec2) = ("default", "i-0ccccccccccccccc1");
        let txn = berth_store::Txn::new().delete(berth_model::keys::instance_by_ec2(cluster, ec2));
        assert!(h.store.txn(txn).await.unwrap().committed());
        assert_eq!(h.ecs.container_instances.backfill_ec2_index().await.unwrap(), 1);
        assert_eq!(h.ecs.container_instances.backfill_ec2_index().await.unwrap(), 0, "idempotent");
        let again = register(&h, ec2).await;
        assert_eq!(again.container_instance_arn, first.container_instance_arn);
    }
}
