//! The Auto Scaling group controller: one supervised, level-triggered loop per region that
//! runs [`berth_controllers::asg::reconcile`] for every group and carries its decision out.
//!
//! ```text
//!  autoscaling/groups/* + ec2/instances/* (members: autoScalingGroup = name)
//!        │ snapshot
//!        ▼
//!  asg::reconcile (pure) ──▶ launches: Ec2::launch (RunInstances' path) from the group's
//!                             launch template, into the chosen subnet, tagged
//!                             aws:autoscaling:groupName (+ the tags PropagateAtLaunch)
//!                        ──▶ terminations: Ec2::terminate (the instance controller stops
//!                             the agent and deregisters its container instance)
//! ```
//!
//! Contract and invariants:
//! * a pass reads every group and every instance and acts on the difference; a launch writes
//!   its instance record before the pass ends, so the next pass counts it: nothing is
//!   launched twice for one need, and a pass that fails half-way is finished by the next;
//! * passes run on any store change (at most every [`MIN_GAP`]) and at least every
//!   [`PERIOD`];
//! * every launch and termination is recorded as a scaling activity; a launch that cannot
//!   happen (the template lost its image, the subnet is full) is recorded once as a
//!   `Failed` activity per distinct cause, and retried by every pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_controllers::asg::{self, GroupConfig, Lifecycle, Member, Reason, Subnet};
use berth_instances::record::{InstanceRecord, InstanceState, LaunchParams};
use berth_model::network::Tag;
use berth_wire::AwsError;
use tokio::sync::watch;

use super::{AutoScaling, GROUP_TAG, GroupRecord, iso8601, now};

/// Longest wait between passes.
pub const PERIOD: Duration = Duration::from_secs(2);
/// Shortest gap between two passes.
pub const MIN_GAP: Duration = Duration::from_millis(200);

/// One region's loop, until `stop` is set.
pub(crate) async fn run(asg: Arc<AutoScaling>, mut stop: watch::Receiver<bool>) {
    let mut changes = asg.store.watch();
    let mut failures: HashMap<String, String> = HashMap::new();
    let mut memory = super::managed::Memory::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let started = std::time::Instant::now();
        let mut ok = true;
        if let Some((ecs, scale_in_after)) = asg.managed.get()
            && let Err(e) = super::managed::pass(&asg, ecs, *scale_in_after, &mut memory).await
        {
            ok = false;
            tracing::warn!(region = asg.region.name, error = %e.message, "managed scaling pass failed");
        }
        if let Err(e) = pass(&asg, &mut failures).await {
            ok = false;
            tracing::warn!(region = asg.region.name, error = %e.message, "Auto Scaling pass failed");
        }
        crate::cloudwatch::prometheus::observe_pass("autoscaling", asg.region.name, started, ok);
        tokio::time::sleep(MIN_GAP).await;
        tokio::select! {
            _ = stop.changed() => {}
            _ = changes.changed() => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// The member view the pure decision reads.
pub(crate) fn member(r: &InstanceRecord) -> Member {
    Member {
        instance_id: r.id.clone(),
        zone: r.availability_zone.clone(),
        subnet_id: r.subnet_id.clone(),
        lifecycle: match r.state {
            InstanceState::Pending => Lifecycle::Pending,
            InstanceState::ShuttingDown | InstanceState::Terminated => Lifecycle::Terminating,
            _ => Lifecycle::InService,
        },
        healthy: r.state.agent_should_run(),
        template_version: template_version(r),
        launched_at: r.launch_time,
        protected_from_scale_in: r.protected_from_scale_in,
    }
}

fn template_version(r: &InstanceRecord) -> u64 {
    r.launch_template.as_ref().and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
}

/// One pass over every group of the region.
async fn pass(asg: &AutoScaling, failures: &mut HashMap<String, String>) -> Result<(), AwsError> {
    let groups = asg.groups().await?;
    if groups.is_empty() {
        return Ok(());
    }
    let all = asg.ec2.instances_all().await?;
    let subnets = crate::ec2::subnets_all(asg.store()).await?;
    let providers = super::managed::providers(asg).await?;
    for (g, _) in groups {
        // The capacity provider that names the group: its instances carry its attribute.
        let provider = providers
            .iter()
            .find(|p| {
                p.auto_scaling_group_provider
                    .as_ref()
                    .and_then(|a| a.auto_scaling_group_arn.as_deref())
                    .is_some_and(|arn| super::managed::names_group(arn, &g))
            })
            .and_then(|p| p.name.clone());
        let members: Vec<&InstanceRecord> = all
            .iter()
            .filter(|r| {
                r.auto_scaling_group.as_deref() == Some(g.name.as_str())
                    && r.state != InstanceState::Terminated
            })
            .collect();
        if let Err(e) =
            reconcile_group(asg, &g, &members, &subnets, provider.as_deref(), failures).await
        {
            tracing::warn!(group = %g.name, error = %e.message, "Auto Scaling group pass failed");
        }
    }
    Ok(())
}

async fn reconcile_group(
    asg: &AutoScaling,
    g: &GroupRecord,
    members: &[&InstanceRecord],
    subnets: &[berth_model::network::SubnetRecord],
    provider: Option<&str>,
    failures: &mut HashMap<String, String>,
) -> Result<(), AwsError> {
    let resolved = asg
        .ec2
        .resolve_template(Some(&g.launch_template.id), None, Some(&g.launch_template.version))
        .await;
    let config = GroupConfig {
        name: g.name.clone(),
        min_size: g.min_size,
        max_size: g.max_size,
        desired_capacity: g.desired_capacity,
        subnets: g
            .subnets
            .iter()
            .filter_map(|id| {
                subnets
                    .iter()
                    .find(|s| &s.id == id)
                    .map(|s| Subnet { subnet_id: s.id.clone(), zone: s.availability_zone.clone() })
            })
            .collect(),
        template_version: resolved.as_ref().map(|(_, v, _)| *v).unwrap_or(0),
        new_instances_protected_from_scale_in: g.new_instances_protected_from_scale_in,
    };
    let view: Vec<Member> = members.iter().map(|r| member(r)).collect();
    let decision = asg::reconcile(&config, &view);
    let stamp = iso8601(now());
    for (id, reason) in &decision.terminations {
        let cause = match reason {
            Reason::Unhealthy => format!(
                "At {stamp} an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped."
            ),
            Reason::ScaleIn => format!(
                "At {stamp} a user request update of AutoScalingGroup constraints to min: {}, max: {}, desired: {} changing the desired capacity resulted in the termination of an instance.",
                g.min_size, g.max_size, decision.desired_capacity
            ),
        };
        asg.ec2.terminate(vec![id.clone()], "Terminated by Auto Scaling").await?;
        tracing::info!(group = %g.name, instance = %id, ?reason, "Auto Scaling terminated an instance");
        asg.record_activity(
            &g.name,
            format!("Terminating EC2 instance: {id}"),
            cause,
            "Successful",
            None,
        )
        .await?;
    }
    if decision.launches.is_empty() {
        failures.remove(&g.name);
        return Ok(());
    }
    if config.subnets.is_empty() {
        return fail(asg, g, failures, "None of the group's subnets exists any more.".into()).await;
    }
    let (template_id, version, data) = match resolved {
        Ok(r) => r,
        Err(e) => return fail(asg, g, failures, e.message).await,
    };
    let Some(image_id) = data.image_id.clone() else {
        return fail(
            asg,
            g,
            failures,
            format!("The launch template {template_id} version {version} has no ImageId."),
        )
        .await;
    };
    let mut tags = data.instance_tags.clone();
    for t in g.tags.iter().filter(|t| t.propagate_at_launch) {
        tags.retain(|x| x.key != t.key);
        tags.push(Tag { key: t.key.clone(), value: t.value.clone() });
    }
    tags.push(Tag { key: GROUP_TAG.into(), value: g.name.clone() });
    for launch in &decision.launches {
        let params = LaunchParams {
            image_id: image_id.clone(),
            instance_type: data.instance_type.clone().unwrap_or_else(|| "m1.small".into()),
            user_data: data.user_data.clone(),
            tags: tags.clone(),
            key_name: data.key_name.clone(),
            client_token: None,
            auto_scaling_group: Some(g.name.clone()),
            launch_template: Some((template_id.clone(), version.to_string())),
            protected_from_scale_in: launch.protected_from_scale_in,
            ecs_attributes: provider
                .map(|p| (berth_scheduler::capacity::PROVIDER_ATTRIBUTE.to_string(), p.to_string()))
                .into_iter()
                .collect(),
        };
        match asg
            .ec2
            .launch(params, Some(launch.subnet_id.clone()), data.security_group_ids.clone(), 1, 1)
            .await
        {
            Ok((_, launched)) => {
                failures.remove(&g.name);
                for r in launched {
                    tracing::info!(group = %g.name, instance = %r.id, "Auto Scaling launched an instance");
                    let cause = format!(
                        "At {stamp} an instance was started in response to a difference between desired and actual capacity, increasing the capacity from {} to {}.",
                        view.iter().filter(|m| m.lifecycle != Lifecycle::Terminating).count(),
                        decision.desired_capacity
                    );
                    asg.record_activity(
                        &g.name,
                        format!("Launching a new EC2 instance: {}", r.id),
                        cause,
                        "Successful",
                        None,
                    )
                    .await?;
                }
            }
            Err(e) if e.status < 500 => return fail(asg, g, failures, e.message).await,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Records a failed launch once per distinct cause.
async fn fail(
    asg: &AutoScaling,
    g: &GroupRecord,
    failures: &mut HashMap<String, String>,
    message: String,
) -> Result<(), AwsError> {
    if failures.get(&g.name) == Some(&message) {
        return Ok(());
    }
    tracing::warn!(group = %g.name, error = %message, "Auto Scaling cannot launch");
    failures.insert(g.name.clone(), message.clone());
    asg.record_activity(
        &g.name,
        "Launching a new EC2 instance.  Status Reason: launch failed".into(),
        format!(
            "At {} an instance was started in response to a difference between desired and actual capacity.",
            iso8601(now())
        ),
        "Failed",
        Some(message),
    )
    .await
}

/// One pass, for the module's tests.
#[cfg(test)]
pub(crate) async fn pass_for_tests(
    asg: &AutoScaling,
    failures: &mut HashMap<String, String>,
) -> Result<(), AwsError> {
    pass(asg, failures).await
}
