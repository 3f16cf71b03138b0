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

use std::collections::BTreeMap;

use berth_model::keys;
use berth_model::records::{ContainerInstanceRecord, HeartbeatRecord, TaskRecord};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::{DEFAULT_CLUSTER, EcsService};
use crate::error;
use crate::pagination::Page;
use crate::records::{self, CAS_ATTEMPTS};

/// Ports ECS reserves on every instance (SSH, Docker, the ECS agent's introspection ports).
pub const DEFAULT_RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];

/// A registered resource by name.
pub(super) fn resource<'a>(rs: &'a [Resource], name: &str) -> Option<&'a Resource> {
    rs.iter().find(|r| r.name.as_deref() == Some(name))
}

fn int_resource(name: &str, v: i64) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(i32::try_from(v).unwrap_or(i32::MAX)),
        double_value: Some(0.0),
        long_value: Some(0),
        ..Default::default()
    }
}

fn ports_resource(name: &str, ports: Vec<String>) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(ports),
        double_value: Some(0.0),
        long_value: Some(0),
        integer_value: Some(0),
    }
}

/// Registered CPU / memory of an instance.
pub(super) fn registered_int(rec: &ContainerInstanceRecord, name: &str) -> i64 {
    resource(&rec.registered_resources, name)
        .map(|r| {
            r.integer_value
                .map(i64::from)
                .or(r.long_value.filter(|v| *v != 0))
                .or(r.double_value.map(|d| d as i64))
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Registered (reserved) ports of an instance.
pub(super) fn registered_ports(rec: &ContainerInstanceRecord, name: &str) -> Vec<u16> {
    resource(&rec.registered_resources, name)
        .and_then(|r| r.string_set_value.as_ref())
        .map(|v| v.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

fn instance_not_found(given: &str) -> AwsError {
    error::invalid(format!("Container instance '{given}' not found in the cluster."))
}

impl EcsService {
    /// Seconds since the instance's agent last polled, or `None` if it never did.
    async fn heartbeat_age(&self, id: &str) -> Result<Option<f64>, AwsError> {
        Ok(records::get::<HeartbeatRecord>(&*self.store, &keys::instance_heartbeat(id))
            .await?
            .map(|(h, _)| (self.now() - h.last_seen).max(0.0)))
    }

    /// Whether the instance's agent is connected now.
    pub(super) async fn agent_connected(&self, id: &str) -> Result<bool, AwsError> {
        Ok(self.heartbeat_age(id).await?.is_some_and(|age| age <= self.agent_timeout_secs))
    }

    /// Counts of the instance's PENDING (any status before RUNNING) and RUNNING tasks.
    pub(super) async fn instance_task_counts(&self, id: &str) -> Result<(i32, i32), AwsError> {
        let recs = self
            .store
            .range(Range::prefix(&keys::instance_tasks_prefix(id)))
            .await
            .map_err(error::store)?;
        let (mut pending, mut running) = (0, 0);
        for r in recs {
            match &r.value[..] {
                b"RUNNING" => running += 1,
                b"PROVISIONING" | b"PENDING" | b"ACTIVATING" => pending += 1,
                _ => {}
            }
        }
        Ok((pending, running))
    }

    pub(super) async fn instance_to_wire(
        &self,
        rec: &ContainerInstanceRecord,
        with_tags: bool,
    ) -> Result<ContainerInstance, AwsError> {
        let mut tcp: Vec<u16> = registered_ports(rec, "PORTS");
        tcp.extend(&rec.used_ports_tcp);
        tcp.sort_unstable();
        tcp.dedup();
        let mut udp: Vec<u16> = registered_ports(rec, "PORTS_UDP");
        udp.extend(&rec.used_ports_udp);
        udp.sort_unstable();
        udp.dedup();
        let remaining = vec![
            int_resource("CPU", registered_int(rec, "CPU") - rec.used_cpu),
            int_resource("MEMORY", registered_int(rec, "MEMORY") - rec.used_memory_mib),
            ports_resource("PORTS", tcp.iter().map(u16::to_string).collect()),
            ports_resource("PORTS_UDP", udp.iter().map(u16::to_string).collect()),
        ];
        let live = rec.status != "INACTIVE";
        let (pending, running) =
            if live { self.instance_task_counts(&rec.id).await? } else { (0, 0) };
        Ok(ContainerInstance {
            container_instance_arn: Some(rec.arn.clone()),
            ec2_instance_id: Some(rec.ec2_instance_id.clone()),
            version: Some(rec.version),
            version_info: rec.version_info.clone(),
            remaining_resources: Some(remaining),
            registered_resources: Some(rec.registered_resources.clone()),
            status: Some(rec.status.clone()),
            agent_connected: Some(live && self.agent_connected(&rec.id).await?),
            running_tasks_count: Some(running),
            pending_tasks_count: Some(pending),
            attributes: Some(rec.attributes.clone()),
            registered_at: Some(rec.registered_at),
            attachments: Some(vec![]),
            tags: with_tags.then(|| rec.tags.clone()),
            ..Default::default()
        })
    }

    /// The live (ACTIVE or DRAINING) record of an instance named by id or ARN.
    pub(super) async fn live_instance(
        &self,
        cluster: &str,
        given: &str,
    ) -> Result<Option<(ContainerInstanceRecord, u64)>, AwsError> {
        let Some(id) = self.scope.child_id("container-instance", cluster, given) else {
            return Ok(None);
        };
        records::get(&*self.store, &keys::container_instance(cluster, id)).await
    }

    /// Every live instance of a cluster with its revision (the scheduler's snapshot).
    pub(super) async fn cluster_instances(
        &self,
        cluster: &str,
    ) -> Result<Vec<(ContainerInstanceRecord, u64)>, AwsError> {
        let recs = self
            .store
            .range(Range::prefix(&keys::cluster_instances_prefix(cluster)))
            .await
            .map_err(error::store)?;
        recs.into_iter()
            .map(|r| {
                serde_json::from_slice(&r.value)
                    .map(|v| (v, r.mod_revision))
                    .map_err(|e| error::corrupt(&r.key, e))
            })
            .collect()
    }

    /// The cluster record's revision, creating `default` on first use as ECS does for
    /// instances. Errors with ClusterNotFoundException for any other missing cluster.
    async fn cluster_for_registration(&self, name: &str) -> Result<u64, AwsError> {
        if let Some((_, rev)) = self.live_cluster(name).await? {
            return Ok(rev);
        }
        if name == DEFAULT_CLUSTER {
            self.create_cluster_op(CreateClusterRequest::default()).await?;
            if let Some((_, rev)) = self.live_cluster(name).await? {
                return Ok(rev);
            }
        }
        Err(ErrorCode::ClusterNotFoundException.with("Cluster not found."))
    }

    pub(super) async fn register_container_instance_op(
        &self,
        input: RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, AwsError> {
        let cluster = self.cluster_name(input.cluster.as_deref())?;
        let doc: serde_json::Value = match input.instance_identity_document.as_deref() {
            Some(d) if !d.is_empty() => serde_json::from_str(d).map_err(|e| {
                error::invalid(format!("instanceIdentityDocument is not valid JSON: {e}"))
            })?,
            _ => serde_json::Value::Null,
        };
        let ec2_id = doc["instanceId"]
            .as_str()
            .map(str::to_string)
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
        let attributes = input.attributes.clone().unwrap_or_default();
        for (i, a) in attributes.iter().enumerate() {
            if a.name.as_deref().is_none_or(str::is_empty) {
                return Err(error::invalid(format!("attributes[{i}].name is required.")));
            }
        }

        for _ in 0..CAS_ATTEMPTS {
            let cluster_rev = self.cluster_for_registration(&cluster).await?;
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
                None => self
                    .cluster_instances(&cluster)
                    .await?
                    .into_iter()
                    .find(|(r, _)| r.ec2_instance_id == ec2_id),
            };
            let now = self.now();
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
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    let rec = ContainerInstanceRecord {
                        arn: self.scope.container_instance_arn(&cluster, &id),
                        id,
                        cluster: cluster.clone(),
                        ec2_instance_id: ec2_id.clone(),
                        status: "ACTIVE".into(),
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
                .put(key, records::encode(&rec))
                .put(
                    keys::instance_heartbeat(&rec.id),
                    records::encode(&HeartbeatRecord { last_seen: now }),
                )
                .put(keys::instance_desired(&rec.id), Vec::new());
            if records::commit(&*self.store, txn).await? {
                return Ok(RegisterContainerInstanceResponse {
                    container_instance: Some(self.instance_to_wire(&rec, true).await?),
                });
            }
        }
        Err(error::contention(&format!("cluster {cluster}")))
    }

    pub(super) async fn deregister_container_instance_op(
        &self,
        input: DeregisterContainerInstanceRequest,
    ) -> Result<DeregisterContainerInstanceResponse, AwsError> {
        let cluster = self.cluster_name(input.cluster.as_deref())?;
        let given = input.container_instance.clone().unwrap_or_default();
        let force = input.force.unwrap_or(false);
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut rec, rev)) = self.live_instance(&cluster, &given).await? else {
                return Err(instance_not_found(&given));
            };
            let task_keys = self
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
            rec.status = "INACTIVE".into();
            rec.version += 1;
            let mut txn = Txn::new()
                .when(keys::container_instance(&cluster, &rec.id), rev)
                .delete(keys::container_instance(&cluster, &rec.id))
                .put(keys::inactive_container_instance(&cluster, &rec.id), records::encode(&rec))
                .delete(keys::instance_heartbeat(&rec.id))
                .put(keys::instance_desired(&rec.id), Vec::new());
            // Forced: the instance's tasks can never report again; they are stopped here, and
            // the agent, should it still be alive, stops their containers on its next poll.
            let now = self.now();
            for tk in &task_keys {
                let Some(task_id) = tk.key.rsplit('/').next() else { continue };
                let tkey = keys::task(&cluster, task_id);
                let Some((mut t, trev)) = records::get::<TaskRecord>(&*self.store, &tkey).await?
                else {
                    continue;
                };
                let from = t.task.last_status.clone().unwrap_or_default();
                let desired = t.task.desired_status.clone().unwrap_or_default();
                t.task.last_status = Some("STOPPED".into());
                t.task.desired_status = Some("STOPPED".into());
                t.task.stopped_at = Some(now);
                t.task.execution_stopped_at.get_or_insert(now);
                t.task.stop_code.get_or_insert(TaskStopCode::TerminationNotice);
                t.task.stopped_reason.get_or_insert_with(|| {
                    "Container instance deregistered (forced) while the task was running".into()
                });
                for c in t.task.containers.iter_mut().flatten() {
                    c.last_status = Some("STOPPED".into());
                }
                t.task.version = Some(t.task.version.unwrap_or(0) + 1);
                txn = txn
                    .when(tkey.clone(), trev)
                    .put(tkey, records::encode(&t))
                    .delete(keys::instance_task(&rec.id, task_id))
                    .delete(keys::live_task(&cluster, task_id))
                    .delete(keys::task_by_status(&cluster, &from, task_id))
                    .put(keys::task_by_status(&cluster, "STOPPED", task_id), Vec::new())
                    .delete(keys::task_by_desired(&cluster, &desired, task_id))
                    .put(keys::task_by_desired(&cluster, "STOPPED", task_id), Vec::new());
            }
            if records::commit(&*self.store, txn).await? {
                return Ok(DeregisterContainerInstanceResponse {
                    container_instance: Some(self.instance_to_wire(&rec, false).await?),
                });
            }
        }
        Err(error::contention(&format!("container instance {given}")))
    }

    pub(super) async fn describe_container_instances_op(
        &self,
        input: DescribeContainerInstancesRequest,
    ) -> Result<DescribeContainerInstancesResponse, AwsError> {
        let cluster = self.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.container_instances.unwrap_or_default();
        if given.is_empty() || given.len() > 100 {
            return Err(error::invalid(
                "containerInstances must name between 1 and 100 instances.",
            ));
        }
        let with_tags = input.include.unwrap_or_default().contains(&ContainerInstanceField::Tags);
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for g in &given {
            let found = match self.scope.child_id("container-instance", &cluster, g) {
                None => None,
                Some(id) => match self.live_instance(&cluster, id).await? {
                    Some((r, _)) => Some(r),
                    None => records::get::<ContainerInstanceRecord>(
                        &*self.store,
                        &keys::inactive_container_instance(&cluster, id),
                    )
                    .await?
                    .map(|(r, _)| r),
                },
            };
            match found {
                Some(r) => out.push(self.instance_to_wire(&r, with_tags).await?),
                None => failures.push(Failure {
                    arn: Some(if g.starts_with("arn:") {
                        g.clone()
                    } else {
                        self.scope.container_instance_arn(&cluster, g)
                    }),
                    reason: Some("MISSING".into()),
                    detail: None,
                }),
            }
        }
        Ok(DescribeContainerInstancesResponse {
            container_instances: Some(out),
            failures: Some(failures),
        })
    }

    pub(super) async fn list_container_instances_op(
        &self,
        input: ListContainerInstancesRequest,
    ) -> Result<ListContainerInstancesResponse, AwsError> {
        let cluster = self.existing_cluster(input.cluster.as_deref()).await?;
        let filter = match input.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(src) => Some(
                berth_scheduler::wire::expression(src, "filter")
                    .map_err(|e| error::invalid(e.to_string()))?,
            ),
            None => None,
        };
        let prefix = keys::cluster_instances_prefix(&cluster);
        let page = Page::parse(input.max_results, input.next_token.as_deref(), 100, &prefix)?;
        let want = input.status.map(|s| s.as_str());
        if want == Some("INACTIVE")
            || matches!(want, Some("REGISTERING" | "DEREGISTERING" | "REGISTRATION_FAILED"))
        {
            // Berth registers and deregisters atomically: instances are never in these states.
            return Ok(ListContainerInstancesResponse {
                container_instance_arns: Some(vec![]),
                next_token: None,
            });
        }
        let (keys_page, next) = if want.is_none() && filter.is_none() {
            page.keys(&*self.store, &prefix, false).await?
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
            .map(|id| self.scope.container_instance_arn(&cluster, id))
            .collect();
        Ok(ListContainerInstancesResponse { container_instance_arns: Some(arns), next_token: next })
    }

    pub(super) async fn update_container_instances_state_op(
        &self,
        input: UpdateContainerInstancesStateRequest,
    ) -> Result<UpdateContainerInstancesStateResponse, AwsError> {
        let cluster = self.cluster_name(input.cluster.as_deref())?;
        let status = match input.status {
            Some(ContainerInstanceStatus::Active) => "ACTIVE",
            Some(ContainerInstanceStatus::Draining) => "DRAINING",
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
        'each: for g in &given {
            for _ in 0..CAS_ATTEMPTS {
                let Some((mut rec, rev)) = self.live_instance(&cluster, g).await? else {
                    failures.push(Failure {
                        arn: Some(g.clone()),
                        reason: Some("MISSING".into()),
                        detail: None,
                    });
                    continue 'each;
                };
                if rec.status != status {
                    rec.status = status.into();
                    rec.version += 1;
                    let key = keys::container_instance(&cluster, &rec.id);
                    let txn = Txn::new()
                        .when(key.clone(), rev)
                        .put(key, records::encode(&rec))
                        .put(keys::instance_desired(&rec.id), Vec::new());
                    if !records::commit(&*self.store, txn).await? {
                        continue;
                    }
                }
                out.push(self.instance_to_wire(&rec, false).await?);
                continue 'each;
            }
            return Err(error::contention(&format!("container instance {g}")));
        }
        Ok(UpdateContainerInstancesStateResponse {
            container_instances: Some(out),
            failures: Some(failures),
        })
    }

    /// Validates an attribute of PutAttributes / DeleteAttributes and resolves its target.
    fn attribute_target(&self, cluster: &str, a: &Attribute, i: usize) -> Result<String, AwsError> {
        let name = a.name.as_deref().unwrap_or("");
        if name.is_empty() || name.len() > 128 {
            return Err(error::invalid(format!("attributes[{i}].name must be 1-128 characters.")));
        }
        if let Some(v) = &a.value
            && (v.is_empty() || v.len() > 128 || v.starts_with(' ') || v.ends_with(' '))
        {
            return Err(error::invalid(format!(
                "attributes[{i}].value must be 1-128 characters and not start or end with a space."
            )));
        }
        let target = a.target_id.as_deref().unwrap_or("");
        if a.target_type.is_none() && !target.starts_with("arn:") {
            return Err(error::invalid(format!(
                "attributes[{i}].targetType is required when targetId is not an ARN."
            )));
        }
        self.scope
            .child_id("container-instance", cluster, target)
            .map(str::to_string)
            .ok_or_else(|| instance_not_found(target))
    }

    async fn edit_instance_attributes(
        &self,
        cluster: &str,
        attrs: &[Attribute],
        put: bool,
    ) -> Result<(), AwsError> {
        if attrs.is_empty() || attrs.len() > 10 {
            return Err(error::invalid("attributes must hold between 1 and 10 attributes."));
        }
        let mut by_target: BTreeMap<String, Vec<&Attribute>> = BTreeMap::new();
        for (i, a) in attrs.iter().enumerate() {
            by_target.entry(self.attribute_target(cluster, a, i)?).or_default().push(a);
        }
        for (id, attrs) in by_target {
            let mut done = false;
            for _ in 0..CAS_ATTEMPTS {
                let Some((mut rec, rev)) = self.live_instance(cluster, &id).await? else {
                    return Err(ErrorCode::TargetNotFoundException
                        .with(format!("Container instance {id} not found in cluster {cluster}.")));
                };
                for a in &attrs {
                    rec.attributes.retain(|x| x.name != a.name);
                    if put {
                        rec.attributes.push(Attribute {
                            name: a.name.clone(),
                            value: a.value.clone(),
                            target_type: None,
                            target_id: None,
                        });
                    }
                }
                if rec.attributes.len() > 1000 {
                    return Err(ErrorCode::AttributeLimitExceededException
                        .with("An instance can have at most 1000 attributes."));
                }
                rec.version += 1;
                let key = keys::container_instance(cluster, &rec.id);
                let txn = Txn::new().when(key.clone(), rev).put(key, records::encode(&rec));
                if records::commit(&*self.store, txn).await? {
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(error::contention(&format!("container instance {id}")));
            }
        }
        Ok(())
    }

    fn echo_attributes(&self, cluster: &str, attrs: &[Attribute]) -> Vec<Attribute> {
        attrs
            .iter()
            .map(|a| {
                let target = a.target_id.clone().unwrap_or_default();
                Attribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                    target_type: Some(TargetType::ContainerInstance),
                    target_id: Some(if target.starts_with("arn:") {
                        target
                    } else {
                        self.scope.container_instance_arn(cluster, &target)
                    }),
                }
            })
            .collect()
    }

    pub(super) async fn put_attributes_op(
        &self,
        input: PutAttributesRequest,
    ) -> Result<PutAttributesResponse, AwsError> {
        let cluster = self.cluster_name(input.cluster.as_deref())?;
        let attrs = input.attributes.unwrap_or_default();
        self.edit_instance_attributes(&cluster, &attrs, true).await?;
        Ok(PutAttributesResponse { attributes: Some(self.echo_attributes(&cluster, &attrs)) })
    }

    pub(super) async fn delete_attributes_op(
        &self,
        input: DeleteAttributesRequest,
    ) -> Result<DeleteAttributesResponse, AwsError> {
        let cluster = self.cluster_name(input.cluster.as_deref())?;
        let attrs = input.attributes.unwrap_or_default();
        self.edit_instance_attributes(&cluster, &attrs, false).await?;
        Ok(DeleteAttributesResponse { attributes: Some(self.echo_attributes(&cluster, &attrs)) })
    }

    pub(super) async fn list_attributes_op(
        &self,
        input: ListAttributesRequest,
    ) -> Result<ListAttributesResponse, AwsError> {
        let cluster = self.existing_cluster(input.cluster.as_deref()).await?;
        if input.attribute_value.is_some() && input.attribute_name.is_none() {
            return Err(error::invalid("attributeValue can only be used with attributeName."));
        }
        let page = Page::parse(input.max_results, input.next_token.as_deref(), 100, "")?;
        let mut all: Vec<(String, Attribute)> = Vec::new();
        for (rec, _) in self.cluster_instances(&cluster).await? {
            for a in &rec.attributes {
                if input.attribute_name.as_ref().is_some_and(|n| a.name.as_ref() != Some(n)) {
                    continue;
                }
                if input.attribute_value.as_ref().is_some_and(|v| a.value.as_ref() != Some(v)) {
                    continue;
                }
                let sort_key = format!("{}\u{1}{}", rec.id, a.name.clone().unwrap_or_default());
                all.push((
                    sort_key,
                    Attribute {
                        name: a.name.clone(),
                        value: a.value.clone(),
                        target_type: Some(TargetType::ContainerInstance),
                        target_id: Some(rec.arn.clone()),
                    },
                ));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let start = page.after.as_ref().map_or(0, |a| all.partition_point(|(k, _)| k <= a));
        let rest = &all[start..];
        let more = rest.len() > page.limit;
        let shown = &rest[..rest.len().min(page.limit)];
        let token =
            if more { shown.last().map(|(k, _)| crate::pagination::token(k)) } else { None };
        Ok(ListAttributesResponse {
            attributes: Some(shown.iter().map(|(_, a)| a.clone()).collect()),
            next_token: token,
        })
    }
}
