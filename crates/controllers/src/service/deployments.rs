//! Stage 4 of a pass: the deployments after it. Counts follow the live tasks the pass does not
//! stop (the PRIMARY's desired count is `D`, an old deployment's is what it still runs). The
//! circuit breaker marks an IN_PROGRESS PRIMARY FAILED at the failure threshold, withdraws
//! its starts and, with rollback, makes the last COMPLETED deployment's task definition the
//! new PRIMARY. Otherwise the PRIMARY is COMPLETED once it alone has tasks, `D` of them, all
//! healthy and none draining, with nothing to start. Old deployments without a task left
//! become INACTIVE; a deployment keeps its tasks while any is not STOPPED yet.

use std::collections::BTreeSet;

use berth_model::lifecycle::TaskStatus;
use berth_model::service::failure_threshold;
use berth_wire::ecs::DeploymentRolloutState;

use super::{Decision, Live, Pass};

/// Stage 4: counts, the circuit breaker (and rollback) or completion, then retirement, over
/// the `remaining` live tasks.
pub(super) fn update_deployments(pass: &Pass<'_>, remaining: &[&Live<'_>], d: &mut Decision) {
    update_counts(pass, remaining, d);
    // A deployment still "has tasks" while any of them is not STOPPED yet (on an instance that
    // can still report), including those being stopped: completion waits for them.
    let occupied: BTreeSet<&str> = pass.occupying.iter().map(|t| t.deployment.as_str()).collect();
    let others_have_tasks = remaining.iter().any(|l| l.t.deployment != pass.primary_id)
        || occupied.iter().any(|dep| *dep != pass.primary_id);
    let primary_healthy = remaining
        .iter()
        .filter(|l| l.t.deployment == pass.primary_id && l.healthy && !l.draining)
        .count() as i32;
    let primary_count =
        remaining.iter().filter(|l| l.t.deployment == pass.primary_id).count() as i32;

    let rolled_back = trip_circuit_breaker(pass, d);
    if rolled_back {
        roll_back(pass, primary_count, d);
    } else {
        complete_primary(pass, primary_healthy, primary_count, others_have_tasks, d);
    }
    retire(pass, remaining, &occupied, rolled_back, d);
}

/// Each deployment's running, pending and desired counts; `updatedAt` moves only on a change.
fn update_counts(pass: &Pass<'_>, remaining: &[&Live<'_>], d: &mut Decision) {
    let now = pass.input.now;
    let desired = pass.desired;
    for (i, dep) in d.deployments.iter_mut().enumerate() {
        let mine: Vec<&&Live<'_>> = remaining.iter().filter(|l| l.t.deployment == dep.id).collect();
        let running = mine.iter().filter(|l| l.t.last_status == TaskStatus::Running).count() as i32;
        let pending = mine.len() as i32 - running;
        let new_desired = if i == 0 { desired } else { mine.len() as i32 };
        if (dep.running_count, dep.pending_count, dep.desired_count)
            != (running, pending, new_desired)
        {
            dep.running_count = running;
            dep.pending_count = pending;
            dep.desired_count = new_desired;
            dep.updated_at = now;
        }
    }
}

/// The circuit breaker: whether it tripped on the PRIMARY and rollback is on.
fn trip_circuit_breaker(pass: &Pass<'_>, d: &mut Decision) -> bool {
    let cfg = pass.input.config;
    let now = pass.input.now;
    let name = &cfg.name;
    let desired = pass.desired;
    let threshold = failure_threshold(desired);
    let mut rolled_back = false;
    {
        let p = &mut d.deployments[0];
        if cfg.settings.circuit_breaker
            && p.rollout_state == DeploymentRolloutState::InProgress
            && p.failed_tasks >= threshold
        {
            p.rollout_state = DeploymentRolloutState::Failed;
            p.rollout_state_reason =
                "ECS deployment circuit breaker: tasks failed to start.".into();
            p.finished_at = Some(now);
            p.updated_at = now;
            d.events.push(format!(
                "(service {name}) (deployment {}) deployment failed: tasks failed to start.",
                p.id
            ));
            d.start.retain(|s| s.deployment != p.id);
            rolled_back = cfg.settings.rollback;
        }
    }
    rolled_back
}

/// Rolls back to the last COMPLETED deployment, which takes over the failed PRIMARY's
/// `primary_count` tasks as its desired count; says so, or that there is none.
fn roll_back(pass: &Pass<'_>, primary_count: i32, d: &mut Decision) {
    let input = pass.input;
    let now = input.now;
    let name = &input.config.name;
    let desired = pass.desired;
    let failed_id = d.deployments[0].id.clone();
    let reason =
        |to: &str| format!("ECS deployment circuit breaker: rolling back to deploymentId {to}.");
    match berth_model::service::roll_back(
            &mut d.deployments,
            input.past_deployments,
            desired,
            now,
            reason,
        ) {
            Some((target, td)) => {
                d.events.push(format!(
                    "(service {name}) (deployment {failed_id}) rolling back to deployment {target} (task definition {td})."
                ));
                d.task_definition = Some(td);
                d.deployments[1].desired_count = primary_count;
            }
            None => d.events.push(format!(
                "(service {name}) (deployment {failed_id}) can't roll back: the service has no completed deployment to return to."
            )),
        }
}

/// Marks the PRIMARY COMPLETED when it alone has tasks, `D` of them, all healthy and not
/// draining, and nothing is to start.
fn complete_primary(
    pass: &Pass<'_>,
    primary_healthy: i32,
    primary_count: i32,
    others_have_tasks: bool,
    d: &mut Decision,
) {
    let now = pass.input.now;
    let name = &pass.input.config.name;
    let desired = pass.desired;
    let p = &mut d.deployments[0];
    if p.rollout_state == DeploymentRolloutState::InProgress
        && primary_healthy == desired
        && primary_count == desired
        && !others_have_tasks
        && d.start.is_empty()
    {
        p.rollout_state = DeploymentRolloutState::Completed;
        p.rollout_state_reason = format!("ECS deployment {} completed.", p.id);
        p.completed = true;
        p.finished_at = Some(now);
        p.updated_at = now;
        d.events.push(format!("(service {name}) (deployment {}) deployment completed.", p.id));
    }
}

/// Old deployments with no task left (live, or `occupied` by a task not STOPPED yet) become
/// INACTIVE, except the rollback target.
fn retire(
    pass: &Pass<'_>,
    remaining: &[&Live<'_>],
    occupied: &BTreeSet<&str>,
    rolled_back: bool,
    d: &mut Decision,
) {
    let now = pass.input.now;
    let mut kept = Vec::with_capacity(d.deployments.len());
    for (i, mut dep) in std::mem::take(&mut d.deployments).into_iter().enumerate() {
        let has_tasks = remaining.iter().any(|l| l.t.deployment == dep.id)
            || occupied.contains(dep.id.as_str());
        if i > 0 && !has_tasks && !(rolled_back && i == 1) {
            dep.status = "INACTIVE".into();
            dep.updated_at = now;
            dep.finished_at.get_or_insert(now);
            d.retired.push(dep);
        } else {
            kept.push(dep);
        }
    }
    d.deployments = kept;
}
