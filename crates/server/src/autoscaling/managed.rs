//! ECS managed scaling, carried out: every pass of the Auto Scaling controller runs
//! [`berth_controllers::managed_scaling::decide`] for each ACTIVE Auto Scaling group capacity
//! provider whose `managedScaling` is ENABLED, and applies the decision to its group.
//!
//! ```text
//!  ecs/capacity-providers/* ─┐  the group (autoScalingGroupArn: its name or ARN)
//!  its members + their container instances (ACTIVE / DRAINING, tasks not STOPPED)
//!  tasks waiting in PROVISIONING for the provider (cpu, memory)
//!        │
//!        ▼ managed_scaling::decide (pure)
//!  desired capacity ─▶ the group record (the group controller launches / terminates)
//!  protect / unprotect ─▶ the members' scale-in protection (managed termination protection)
//!  drain / reactivate ─▶ UpdateContainerInstancesState DRAINING / ACTIVE
//!  terminate (drained and empty) ─▶ TerminateInstances, desired capacity decremented with it
//! ```
//!
//! Contract and invariants:
//! * level-triggered like the group controller; what the pure decision needs from earlier
//!   passes (since when the metric has been below target, which instances this controller
//!   drained) is kept in the store, one record per provider ([`STATE`]`<provider>`, written
//!   only when it changes), so a server restarted mid scale-in resumes it: the instances it
//!   had drained are still its own to terminate once empty, and the scale-in wait goes on
//!   from where it was;
//! * the desired capacity is written with compare-and-set on the group record and always
//!   within the group's bounds; an instance is terminated only once drained and running no
//!   task, never in the pass that drains it;
//! * the provider's instances carry `ecs.capacity-provider=<provider>`: the group controller
//!   sets it on the instances it launches for a group a provider names.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use berth_controllers::managed_scaling::{
    self as ms, GroupBounds, InstanceView, Resources, Settings,
};
use berth_instances::record::{InstanceRecord, InstanceState};
use berth_model::keys;
use berth_model::lifecycle::{InstanceStatus, TaskStatus};
use berth_model::records::{ContainerInstanceRecord, TaskRecord};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::{
    Api as _, CapacityProvider, CapacityProviderStatus, ContainerInstanceStatus,
    ContainerInstancesApi as _, ManagedScalingStatus, ManagedTerminationProtection,
    UpdateContainerInstancesStateRequest,
};

use super::{AutoScaling, GroupRecord, key, now};
use crate::ecs::{Ecs, RequestContext};
use crate::records;

/// What managed scaling keeps between passes (a cache of the [`Persisted`] records).
#[derive(Default)]
pub(crate) struct Memory {
    below_target_since: HashMap<String, f64>,
    drained: HashSet<String>,
    /// Providers whose record was read since this server started.
    loaded: HashSet<String>,
}

/// The store prefix of managed scaling's per-provider state.
pub(crate) const STATE: &str = "autoscaling/managed-scaling/";

/// One provider's state between passes, in the store under [`STATE`]`<provider>`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Persisted {
    #[serde(default)]
    below_target_since: Option<f64>,
    /// Members of the provider's group this controller drained for scale-in (sorted).
    #[serde(default)]
    drained: Vec<String>,
}

impl Memory {
    /// The provider's state as `memory` holds it, restricted to `members`.
    fn persisted(&self, provider: &str, members: &[InstanceRecord]) -> Persisted {
        let mut drained: Vec<String> =
            members.iter().filter(|r| self.drained.contains(&r.id)).map(|r| r.id.clone()).collect();
        drained.sort();
        Persisted { below_target_since: self.below_target_since.get(provider).copied(), drained }
    }
}

/// Whether a capacity provider's `autoScalingGroupArn` names `g` (its name or its ARN).
pub(crate) fn names_group(asg_arn: &str, g: &GroupRecord) -> bool {
    asg_arn == g.name
        || asg_arn == g.arn
        || asg_arn.rsplit_once(":autoScalingGroupName/").is_some_and(|(_, n)| n == g.name)
}

/// The ACTIVE providers of the region (any scaling setting).
pub(crate) async fn providers(asg: &AutoScaling) -> Result<Vec<CapacityProvider>, AwsError> {
    let recs = asg
        .store()
        .range(Range::prefix(keys::CAPACITY_PROVIDERS))
        .await
        .map_err(crate::error::store)?;
    Ok(records::decode_all::<CapacityProvider>(recs)?
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.status == Some(CapacityProviderStatus::Active))
        .collect())
}

fn controller_ctx() -> RequestContext {
    RequestContext {
        principal: Arc::new(crate::auth::Principal {
            arn: "arn:aws:iam::000000000000:berth-managed-scaling".into(),
            account_id: String::new(),
            access_key_id: String::new(),
            instance: None,
        }),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// The live container instance a member registered, if any.
async fn container_instance(
    asg: &AutoScaling,
    r: &InstanceRecord,
) -> Result<Option<ContainerInstanceRecord>, AwsError> {
    let Some(e) = asg
        .store()
        .get(&keys::instance_by_ec2(&r.ecs_cluster, &r.id))
        .await
        .map_err(crate::error::store)?
    else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&e.value).to_string();
    Ok(records::get::<ContainerInstanceRecord>(
        asg.store(),
        &keys::container_instance(&r.ecs_cluster, &id),
    )
    .await?
    .map(|(c, _)| c)
    .filter(|c| matches!(c.status, InstanceStatus::Active | InstanceStatus::Draining)))
}

/// How many tasks on container instance `id` are not STOPPED.
async fn tasks_on(asg: &AutoScaling, id: &str) -> Result<u32, AwsError> {
    let recs = asg
        .store()
        .range(Range::prefix(&keys::instance_tasks_prefix(id)))
        .await
        .map_err(crate::error::store)?;
    Ok(recs.iter().filter(|r| r.value.as_ref() != TaskStatus::Stopped.as_str().as_bytes()).count()
        as u32)
}

/// The cpu and memory of every task waiting in PROVISIONING for `provider`.
async fn waiting_for(asg: &AutoScaling, provider: &str) -> Result<Vec<Resources>, AwsError> {
    let prefix = crate::ecs::fargate::PROVISIONING;
    let entries = asg.store().range(Range::prefix(prefix)).await.map_err(crate::error::store)?;
    let mut out = vec![];
    for e in entries {
        let Some((cluster, id)) = e.key.strip_prefix(prefix).and_then(|r| r.rsplit_once('/'))
        else {
            continue;
        };
        let Some((t, _)) =
            records::get::<TaskRecord>(asg.store(), &keys::task(cluster, id)).await?
        else {
            continue;
        };
        if t.task.capacity_provider_name.as_deref() == Some(provider)
            && t.instance_id.is_empty()
            && t.last_status() == TaskStatus::Provisioning
        {
            out.push(Resources {
                cpu: t.reserved_cpu.max(0) as u32,
                memory_mib: t.reserved_memory_mib.max(0) as u32,
            });
        }
    }
    Ok(out)
}

/// One managed scaling pass over every provider (see the module docs).
pub(crate) async fn pass(
    asg: &AutoScaling,
    ecs: &Ecs,
    scale_in_after_secs: u32,
    memory: &mut Memory,
) -> Result<(), AwsError> {
    let providers = providers(asg).await?;
    if providers.is_empty() {
        return Ok(());
    }
    let groups = asg.groups().await?;
    for p in providers {
        let Some(a) = &p.auto_scaling_group_provider else { continue };
        let Some(m) = &a.managed_scaling else { continue };
        if m.status != Some(ManagedScalingStatus::Enabled) {
            continue;
        }
        let arn = a.auto_scaling_group_arn.clone().unwrap_or_default();
        let Some((g, _)) = groups.iter().find(|(g, _)| names_group(&arn, g)) else { continue };
        let name = p.name.clone().unwrap_or_default();
        let settings = Settings {
            target_capacity: m.target_capacity.unwrap_or(100).clamp(1, 100) as u32,
            minimum_scaling_step_size: m.minimum_scaling_step_size.unwrap_or(1).max(1) as u32,
            maximum_scaling_step_size: m.maximum_scaling_step_size.unwrap_or(10_000).max(1) as u32,
            instance_warmup_period: m.instance_warmup_period.unwrap_or(300).max(0) as u32,
            scale_in_after_secs,
            managed_termination_protection: a.managed_termination_protection
                == Some(ManagedTerminationProtection::Enabled),
        };
        if let Err(e) = provider_pass(asg, ecs, &name, g, &settings, memory).await {
            tracing::warn!(provider = %name, group = %g.name, error = %e.message, "managed scaling pass failed");
        }
    }
    Ok(())
}

async fn provider_pass(
    asg: &AutoScaling,
    ecs: &Ecs,
    provider: &str,
    g: &GroupRecord,
    settings: &Settings,
    memory: &mut Memory,
) -> Result<(), AwsError> {
    let (template_version, instance_type) = match asg
        .ec2
        .resolve_template(Some(&g.launch_template.id), None, Some(&g.launch_template.version))
        .await
    {
        Ok((_, v, data)) => (v, data.instance_type.unwrap_or_else(|| "m1.small".into())),
        Err(e) => return Err(e),
    };
    let ty = berth_instances::types::lookup(&instance_type)
        .map_err(|e| AwsError::new("InternalFailure", 500, e.to_string()))?;
    let cap = ty.capacity(berth_instances::types::RESERVED_MEMORY_MIB);
    let members = asg.members(&g.name).await?;
    // The state earlier passes (maybe of an earlier server) left, once per server run.
    let state_key = format!("{STATE}{provider}");
    let stored = records::get::<Persisted>(asg.store(), &state_key).await?.map(|(p, _)| p);
    if memory.loaded.insert(provider.to_string())
        && let Some(p) = &stored
    {
        memory.drained.extend(p.drained.iter().cloned());
        if let Some(t) = p.below_target_since {
            memory.below_target_since.entry(provider.to_string()).or_insert(t);
        }
    }
    let mut views = vec![];
    let mut cis: HashMap<String, ContainerInstanceRecord> = HashMap::new();
    for r in members.iter().filter(|r| r.state.agent_should_run()) {
        let ci = container_instance(asg, r).await?;
        let tasks = match &ci {
            Some(c) => tasks_on(asg, &c.id).await?,
            None => 0,
        };
        views.push(InstanceView {
            instance_id: r.id.clone(),
            zone: r.availability_zone.clone(),
            template_version: r
                .launch_template
                .as_ref()
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0),
            launched_at: r.launch_time,
            registered: ci.is_some(),
            draining: ci.as_ref().is_some_and(|c| c.status == InstanceStatus::Draining),
            drained_for_scale_in: memory.drained.contains(&r.id),
            tasks,
            protected_from_scale_in: r.protected_from_scale_in,
        });
        if let Some(c) = ci {
            cis.insert(r.id.clone(), c);
        }
    }
    let provisioning = waiting_for(asg, provider).await?;
    let t = now();
    let input = ms::Input {
        settings,
        instance_capacity: Resources { cpu: cap.cpu, memory_mib: cap.memory_mib },
        template_version,
        group: GroupBounds {
            min_size: g.min_size,
            max_size: g.max_size,
            desired_capacity: g.desired_capacity,
        },
        instances: &views,
        provisioning: &provisioning,
        now: t,
        below_target_since: memory.below_target_since.get(provider).copied(),
    };
    let d = ms::decide(&input);
    match d.below_target_since {
        Some(s) => memory.below_target_since.insert(provider.to_string(), s),
        None => memory.below_target_since.remove(provider),
    };
    tracing::debug!(
        provider,
        reservation = d.reservation,
        running = d.running,
        needed = d.needed,
        desired = d.desired_capacity,
        "managed scaling"
    );
    // Protection first, so the group's own scale-in never picks a busy instance.
    for (ids, protect) in [(&d.protect, true), (&d.unprotect, false)] {
        if !ids.is_empty() {
            asg.protect(&g.name, ids, protect).await?;
        }
    }
    for (ids, status) in [
        (&d.drain, ContainerInstanceStatus::Draining),
        (&d.reactivate, ContainerInstanceStatus::Active),
    ] {
        for id in ids {
            let Some(ci) = cis.get(id) else { continue };
            let req = UpdateContainerInstancesStateRequest {
                cluster: Some(ci.cluster.clone()),
                container_instances: Some(vec![ci.arn.clone()]),
                status: Some(status),
            };
            ecs.container_instances()
                .update_container_instances_state(&controller_ctx(), req)
                .await?;
            if status == ContainerInstanceStatus::Draining {
                memory.drained.insert(id.clone());
                tracing::info!(provider, instance = %id, "managed scaling drains an instance for scale-in");
            } else {
                memory.drained.remove(id);
            }
        }
    }
    // The new desired capacity, then the drained empty instances out (the group controller
    // sees both at once: they are not replaced).
    if d.desired_capacity != g.desired_capacity || !d.terminate.is_empty() {
        let desired = d.desired_capacity;
        let k = key(&g.name);
        let mut cas = records::Cas::new(asg.store(), format!("Auto Scaling group {}", g.name));
        loop {
            cas.attempt().await?;
            let (mut cur, rev) = asg.group(&g.name).await?;
            cur.desired_capacity = desired.clamp(cur.min_size, cur.max_size);
            if cas.commit(Txn::new().when(&k, rev).put(&k, records::encode(&cur))).await? {
                break;
            }
        }
        if desired != g.desired_capacity {
            tracing::info!(provider, group = %g.name, from = g.desired_capacity, to = desired, reservation = d.reservation, "managed scaling sets the desired capacity");
        }
    }
    for id in &d.terminate {
        asg.ec2.terminate(vec![id.clone()], "Terminated by ECS managed scaling").await?;
        memory.drained.remove(id);
        asg.record_activity(
            &g.name,
            format!("Terminating EC2 instance: {id}"),
            format!(
                "At {} ECS managed scaling of capacity provider {provider} took a drained instance running no task out of service, shrinking the capacity.",
                super::iso8601(t)
            ),
            "Successful",
            None,
        )
        .await?;
    }
    // Forget instances that are gone.
    memory
        .drained
        .retain(|id| members.iter().any(|r| &r.id == id && r.state != InstanceState::Terminated));
    let now_state = memory.persisted(provider, &members);
    if stored.unwrap_or_default() != now_state {
        // One writer (this controller); a blind put is enough.
        records::commit(asg.store(), Txn::new().put(&state_key, records::encode(&now_state)))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_names_its_group_by_name_or_arn() {
        let g = GroupRecord {
            name: "web".into(),
            arn: "arn:aws:autoscaling:us-east-1:1:autoScalingGroup:u-1:autoScalingGroupName/web"
                .into(),
            created_time: 0.0,
            launch_template: super::super::TemplateRef {
                id: "lt-1".into(),
                name: "t".into(),
                version: "$Default".into(),
            },
            min_size: 0,
            max_size: 1,
            desired_capacity: 0,
            subnets: vec![],
            zones: vec![],
            new_instances_protected_from_scale_in: false,
            tags: vec![],
            default_cooldown: 300,
            health_check_type: "EC2".into(),
            health_check_grace_period: 0,
            termination_policies: vec![],
        };
        let cases = [
            ("web", true),
            (g.arn.as_str(), true),
            (
                "arn:aws:autoscaling:us-east-1:1:autoScalingGroup:other:autoScalingGroupName/web",
                true,
            ),
            (
                "arn:aws:autoscaling:us-east-1:1:autoScalingGroup:u-1:autoScalingGroupName/webx",
                false,
            ),
            ("we", false),
            ("", false),
        ];
        for (arn, want) in cases {
            assert_eq!(names_group(arn, &g), want, "{arn}");
        }
    }
}
