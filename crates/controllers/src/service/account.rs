//! Stage 1 of a pass: every task of the service is accounted for exactly once. A STOPPED task
//! is forgotten, and counts as a failure of its deployment if it was never healthy and
//! nobody stopped it on purpose. A RUNNING task whose target is `unhealthy` past the grace
//! period is stopped the same way as one that fails its container health checks. A task on a lost or vanished instance is stopped. A RUNNING
//! task UNHEALTHY past the grace period is stopped, and counts as a failure if it was never
//! healthy. Every other task desired RUNNING is live, classified healthy or not and
//! draining or not. A task seen healthy for the first time is marked, and resets its
//! deployment's consecutive failures.

use berth_model::lifecycle::TaskStatus;
use berth_wire::ecs::DeploymentRolloutState;

use super::{
    Decision, FIRST_LAUNCH_DELAY_SECS, Health, Live, MAX_LAUNCH_DELAY_SECS, Pass, StopWhy,
    THROTTLE_AFTER, TargetHealth,
};

/// Stage 1: the live tasks, after forgetting STOPPED ones and stopping those on lost
/// instances or unhealthy past the grace period.
pub(super) fn account_tasks<'a>(pass: &Pass<'a>, d: &mut Decision) -> Vec<Live<'a>> {
    let input = pass.input;
    let cfg = input.config;
    let now = input.now;
    let name = &cfg.name;
    let mut live: Vec<Live<'a>> = Vec::new();
    for t in input.tasks {
        let dep = pass.dep_index.get(&t.deployment).copied();
        if t.last_status == TaskStatus::Stopped {
            d.forget.push(t.id.clone());
            if !t.was_healthy
                && !t.stopped_on_purpose
                && let Some(i) = dep
            {
                record_failure(d, i, now, name);
            }
            continue;
        }
        if !t.desired_running {
            continue; // already being stopped
        }
        let inst = pass.instances.get(t.instance_id.as_str());
        match inst {
            // Not placed yet (a Fargate task waiting in PROVISIONING for capacity): no
            // instance to lose; it counts as pending.
            None if t.instance_id.is_empty() => {}
            None => {
                d.stop.push((
                    t.id.clone(),
                    StopWhy::InstanceLost { instance: t.instance_id.clone(), silent_secs: 0 },
                ));
                continue;
            }
            Some(i) if i.lost => {
                d.stop.push((
                    t.id.clone(),
                    StopWhy::InstanceLost {
                        instance: i.id.clone(),
                        silent_secs: i.silent_secs as u64,
                    },
                ));
                continue;
            }
            _ => {}
        }
        let running = t.last_status == TaskStatus::Running;
        let ran_for = t.started_at.map(|s| now - s).unwrap_or(0.0);
        if running
            && t.has_health_check
            && t.health == Health::Unhealthy
            && ran_for >= f64::from(cfg.settings.health_check_grace_period_seconds)
        {
            d.stop.push((t.id.clone(), StopWhy::Unhealthy));
            // Stopped by the scheduler, but for failing: it counts (the breaker's second stage).
            if !t.was_healthy
                && let Some(i) = dep
            {
                record_failure(d, i, now, name);
            }
            continue;
        }
        let grace_over = ran_for >= f64::from(cfg.settings.health_check_grace_period_seconds);
        if running
            && grace_over
            && let Some(TargetHealth::Unhealthy { target_group }) = &t.target_health
        {
            d.stop
                .push((t.id.clone(), StopWhy::ElbUnhealthy { target_group: target_group.clone() }));
            if !t.was_healthy
                && let Some(i) = dep
            {
                record_failure(d, i, now, name);
            }
            continue;
        }
        let healthy = running
            && match &t.target_health {
                // Behind load balancers: the target groups decide (and container health
                // checks too, if any).
                Some(th) => {
                    *th == TargetHealth::Healthy
                        && (!t.has_health_check || t.health == Health::Healthy)
                }
                None if t.has_health_check => t.health == Health::Healthy,
                None => ran_for >= input.settle_secs,
            };
        if healthy && !t.was_healthy {
            d.mark_healthy.push(t.id.clone());
            if let Some(i) = dep {
                d.deployments[i].consecutive_failures = 0;
            }
        }
        let draining = inst.is_some_and(|i| !i.active);
        live.push(Live { t, healthy, draining });
    }
    live
}

/// A task of deployment `i` failed before it was ever healthy.
fn record_failure(d: &mut Decision, i: usize, now: f64, name: &str) {
    let dep = &mut d.deployments[i];
    dep.consecutive_failures += 1;
    if dep.rollout_state == DeploymentRolloutState::InProgress {
        dep.failed_tasks += 1;
    }
    if dep.consecutive_failures >= THROTTLE_AFTER {
        let delay = (FIRST_LAUNCH_DELAY_SECS
            * 2f64.powi((dep.consecutive_failures - THROTTLE_AFTER) as i32))
        .min(MAX_LAUNCH_DELAY_SECS);
        dep.next_launch_at = now + delay;
        d.events.push(format!(
            "(service {name}) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide."
        ));
    }
}
