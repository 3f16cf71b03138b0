//! The service scheduler: keeps a service's desired count of tasks running, rolls deployments
//! forward within `minimumHealthyPercent` / `maximumPercent`, trips the circuit breaker and
//! rolls back, runs one task per eligible instance for DAEMON services, moves tasks off
//! DRAINING instances and replaces the tasks of lost instances.
//!
//! # Rules (ECS's rolling update, "Amazon ECS services" and "Deployment circuit breaker")
//!
//! * **Healthy.** A task counts towards the minimum healthy when it is RUNNING and, if an
//!   essential container has a health check, the task is HEALTHY; without health checks once
//!   it has been RUNNING for [`Input::settle_secs`] (ECS waits 40 seconds). A RUNNING task
//!   that is UNHEALTHY after `healthCheckGracePeriodSeconds` is stopped and replaced.
//! * **Bounds.** With `D` the desired count: tasks of the service that are desired RUNNING
//!   never exceed `floor(D x max% / 100)` because of a start, and healthy tasks never fall
//!   below `ceil(D x min% / 100)` because of a stop this controller makes (tasks that are
//!   not healthy are stopped freely). Scaling in (more tasks of the PRIMARY deployment than
//!   `D`) is not bounded by the minimum.
//! * **Order.** Stops: lost instances' tasks, unhealthy tasks, not-yet-healthy tasks of old
//!   deployments and of DRAINING instances, surplus PRIMARY tasks (not-yet-healthy first,
//!   then from the busiest zone and instance, keeping the service balanced),
//!   then healthy old tasks and healthy tasks on DRAINING instances while the minimum allows.
//!   Starts: PRIMARY tasks up to `D` (not counting those on DRAINING instances), within the
//!   maximum, unless the deployment FAILED or its launch delay has not passed.
//! * **Completion.** The PRIMARY deployment is COMPLETED when it has `D` healthy tasks, none
//!   on a DRAINING instance, and no other deployment has a task left; deployments without
//!   tasks become INACTIVE.
//! * **Failures.** A task that stops before it was ever healthy, other than by the scheduler
//!   or a user, is a failed task of its deployment. Three in a row start ECS's growing launch
//!   delay (10 s, doubling, at most 15 minutes; a healthy task resets it). With the circuit
//!   breaker on, `failedTasks >= clamp(ceil(D / 2), 3, 200)` marks an IN_PROGRESS PRIMARY
//!   FAILED and stops its launches; with rollback, a new PRIMARY deployment of the last
//!   COMPLETED deployment's task definition starts.
//! * **Lost instances** (Berth, past ECS): a task on an instance whose agent has been silent
//!   longer than the loss grace is stopped (desired STOPPED, so the agent stops it if it comes
//!   back) and no longer counts, so a replacement starts elsewhere.
//! * **DAEMON**: `D` is the number of eligible instances (ACTIVE, not lost, meeting the
//!   constraints); each gets one task; a task anywhere else, or a second one on an instance,
//!   is stopped; an old deployment's task is stopped (within the minimum) before its
//!   instance gets the new one.
//! * **Task scale-in protection**: a healthy protected task is never chosen for scale-in or
//!   replaced by a deployment; the deployment waits for the protection to end.
//! * **Steady state**: one deployment, COMPLETED, running = desired, nothing pending and
//!   nothing started or stopped in this pass. Announced once, and again every 6 hours.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::lifecycle::TaskStatus;
use berth_model::service::{DeploymentRecord, failure_threshold, maximum_tasks, minimum_healthy};
use berth_model::service_rules::ServiceSettings;
use berth_wire::ecs::DeploymentRolloutState;

/// How often "has reached a steady state" is repeated while it lasts (ECS: every 6 hours).
pub const STEADY_REPEAT_SECS: f64 = 6.0 * 3600.0;
/// Consecutive failures before launches are delayed.
pub const THROTTLE_AFTER: u32 = 3;
/// The first launch delay, doubled per further failure, capped at [`MAX_LAUNCH_DELAY_SECS`].
pub const FIRST_LAUNCH_DELAY_SECS: f64 = 10.0;
/// ECS's cap on the launch delay.
pub const MAX_LAUNCH_DELAY_SECS: f64 = 900.0;

/// The service's settings the controller needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub name: String,
    /// As the API validated them (desired count, percents, circuit breaker, grace period).
    pub settings: ServiceSettings,
    /// DeleteService was called: scale to zero, then the service becomes INACTIVE.
    pub deleting: bool,
}

/// Health as the task reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

/// One task of the service (from the service's task index).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    pub id: String,
    /// Its deployment (`startedBy`).
    pub deployment: String,
    pub last_status: TaskStatus,
    pub desired_running: bool,
    pub health: Health,
    /// An essential container has a health check.
    pub has_health_check: bool,
    /// When it reached RUNNING (epoch seconds).
    pub started_at: Option<f64>,
    pub instance_id: String,
    /// Stopped by the service scheduler or a user (not a failure).
    pub stopped_on_purpose: bool,
    /// The controller has seen it healthy before.
    pub was_healthy: bool,
    /// Scale-in protection is on (UpdateTaskProtection): neither scale-in nor a deployment
    /// stops it while it is healthy.
    pub protected: bool,
}

/// One container instance of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceView {
    pub id: String,
    /// ACTIVE (else DRAINING).
    pub active: bool,
    /// Its agent has been silent longer than the loss grace.
    pub lost: bool,
    /// Seconds since its agent was last heard from.
    pub silent_secs: f64,
    /// For DAEMON services: ACTIVE, not lost and meeting the service's constraints.
    pub daemon_eligible: bool,
    /// Its `ecs.availability-zone`, which scale-in keeps balanced.
    pub zone: Option<String>,
}

/// Everything one pass reads.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub config: &'a Config,
    /// Newest first; `[0]` is PRIMARY.
    pub deployments: &'a [DeploymentRecord],
    /// Ended deployments, newest first (rollback targets).
    pub past_deployments: &'a [DeploymentRecord],
    pub tasks: &'a [TaskView],
    /// The cluster's registered instances; a task whose instance is missing here was on an
    /// instance that is gone.
    pub instances: &'a [InstanceView],
    pub steady_since: Option<f64>,
    /// Epoch seconds.
    pub now: f64,
    /// How long a task without health checks must run to count as healthy.
    pub settle_secs: f64,
}

/// Why the controller stops a task; the executor turns it into `stoppedReason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopWhy {
    /// Rolling deployment, scale-in, DAEMON cleanup.
    Scaling { deployment: String },
    /// UNHEALTHY after the grace period.
    Unhealthy,
    /// On a DRAINING instance.
    Draining,
    /// Its instance's agent has been silent for `silent_secs`.
    InstanceLost { instance: String, silent_secs: u64 },
}

/// Tasks to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub deployment: String,
    pub count: u32,
    /// DAEMON: the instance it must run on.
    pub instance: Option<String>,
}

/// What one pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub start: Vec<Start>,
    pub stop: Vec<(String, StopWhy)>,
    /// STOPPED tasks now accounted for: drop them from the service's index.
    pub forget: Vec<String>,
    /// Tasks seen healthy for the first time.
    pub mark_healthy: Vec<String>,
    /// The deployments after this pass, newest first.
    pub deployments: Vec<DeploymentRecord>,
    /// Deployments that became INACTIVE in this pass.
    pub retired: Vec<DeploymentRecord>,
    /// Event messages, oldest first, without the `(service NAME) ` prefix's timestamp.
    pub events: Vec<String>,
    pub steady_since: Option<f64>,
    /// The service's task definition changed (a rollback).
    pub task_definition: Option<String>,
    /// A deleting service has no task left: it becomes INACTIVE.
    pub finished: bool,
}

/// A live task with what this pass knows of it.
struct Live<'a> {
    t: &'a TaskView,
    healthy: bool,
    draining: bool,
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

/// Runs one pass.
pub fn reconcile(input: &Input<'_>) -> Decision {
    let cfg = input.config;
    let now = input.now;
    let name = &cfg.name;
    let mut d = Decision { deployments: input.deployments.to_vec(), ..Default::default() };
    if d.deployments.is_empty() {
        d.finished =
            cfg.deleting && input.tasks.iter().all(|t| t.last_status == TaskStatus::Stopped);
        d.forget = input
            .tasks
            .iter()
            .filter(|t| t.last_status == TaskStatus::Stopped)
            .map(|t| t.id.clone())
            .collect();
        return d;
    }
    let instances: BTreeMap<&str, &InstanceView> =
        input.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let dep_index: BTreeMap<String, usize> =
        d.deployments.iter().enumerate().map(|(i, dep)| (dep.id.clone(), i)).collect();

    // 1. Account for STOPPED tasks; drop lost and unhealthy ones; classify the rest.
    let mut live: Vec<Live<'_>> = Vec::new();
    for t in input.tasks {
        let dep = dep_index.get(&t.deployment).copied();
        if t.last_status == TaskStatus::Stopped {
            d.forget.push(t.id.clone());
            if !t.was_healthy
                && !t.stopped_on_purpose
                && let Some(i) = dep
            {
                record_failure(&mut d, i, now, name);
            }
            continue;
        }
        if !t.desired_running {
            continue; // already being stopped
        }
        let inst = instances.get(t.instance_id.as_str());
        match inst {
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
                record_failure(&mut d, i, now, name);
            }
            continue;
        }
        let healthy = running
            && if t.has_health_check {
                t.health == Health::Healthy
            } else {
                ran_for >= input.settle_secs
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

    let primary_id = d.deployments[0].id.clone();
    let primary_open = d.deployments[0].rollout_state != DeploymentRolloutState::Failed
        && now >= d.deployments[0].next_launch_at;

    // DAEMON: the instances that should run a task.
    let eligible: BTreeSet<&str> = input
        .instances
        .iter()
        .filter(|i| i.daemon_eligible && i.active && !i.lost)
        .map(|i| i.id.as_str())
        .collect();
    let desired = if cfg.deleting {
        0
    } else if cfg.settings.daemon {
        eligible.len() as i32
    } else {
        cfg.settings.desired_count.max(0)
    };
    let min_healthy = minimum_healthy(desired, cfg.settings.minimum_healthy_percent);
    let max_tasks = maximum_tasks(desired, cfg.settings.maximum_percent).max(desired);

    let mut stopping: BTreeSet<String> = BTreeSet::new();
    let stop = |d: &mut Decision, stopping: &mut BTreeSet<String>, l: &Live<'_>, why: StopWhy| {
        if stopping.insert(l.t.id.clone()) {
            d.stop.push((l.t.id.clone(), why));
        }
    };
    let scaling = |dep: &str| StopWhy::Scaling { deployment: dep.to_string() };

    // 2. Stops that need no permission: tasks that are not healthy and should go. An old
    // deployment's task that is RUNNING but not yet healthy (starting up) is kept while
    // replacements can still start and the PRIMARY is not fully healthy: it is about to serve.
    let is_primary = |l: &Live<'_>| l.t.deployment == primary_id;
    let occupying_before = input
        .tasks
        .iter()
        .filter(|t| t.last_status != TaskStatus::Stopped)
        .filter(|t| instances.get(t.instance_id.as_str()).is_some_and(|i| !i.lost))
        .count() as i32;
    let primary_healthy_now =
        live.iter().filter(|l| is_primary(l) && l.healthy && !l.draining).count() as i32;
    let keep_starting = primary_healthy_now < desired && occupying_before < max_tasks;
    for l in &live {
        if l.healthy {
            continue;
        }
        if !is_primary(l) {
            if keep_starting && l.t.last_status == TaskStatus::Running {
                continue;
            }
            stop(&mut d, &mut stopping, l, scaling(&l.t.deployment));
        } else if l.draining {
            stop(&mut d, &mut stopping, l, StopWhy::Draining);
        } else if cfg.settings.daemon && !eligible.contains(l.t.instance_id.as_str()) {
            stop(&mut d, &mut stopping, l, scaling(&primary_id));
        }
    }
    // Surplus PRIMARY tasks (scale-in, or a second DAEMON task on an instance).
    let mut primary_good: Vec<&Live<'_>> = live
        .iter()
        .filter(|l| is_primary(l) && !l.draining && !stopping.contains(&l.t.id))
        .filter(|l| !cfg.settings.daemon || eligible.contains(l.t.instance_id.as_str()))
        .collect();
    if cfg.settings.daemon {
        let mut seen = BTreeSet::new();
        // Keep the healthy (then oldest) task of each instance.
        primary_good.sort_by(|a, b| {
            b.healthy.cmp(&a.healthy).then(
                a.t.started_at.partial_cmp(&b.t.started_at).unwrap_or(std::cmp::Ordering::Equal),
            )
        });
        let mut keep = Vec::new();
        for l in primary_good {
            if seen.insert(l.t.instance_id.as_str()) {
                keep.push(l);
            } else {
                stop(&mut d, &mut stopping, l, scaling(&primary_id));
            }
        }
        primary_good = keep;
    } else if primary_good.len() as i32 > desired {
        // Scale-in keeps the service balanced, as ECS's default spread does: one task at a
        // time, a not-yet-healthy one first, then one from the zone, then the instance, that
        // runs the most of the service's tasks, the most recently started first. Protected
        // healthy tasks stay.
        let zone_of = |l: &Live<'_>| {
            instances.get(l.t.instance_id.as_str()).and_then(|i| i.zone.clone()).unwrap_or_default()
        };
        let mut surplus = primary_good.len() - desired as usize;
        while surplus > 0 {
            let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
            let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
            for l in &primary_good {
                *per_zone.entry(zone_of(l)).or_default() += 1;
                *per_instance.entry(l.t.instance_id.as_str()).or_default() += 1;
            }
            let pick = primary_good
                .iter()
                .enumerate()
                .filter(|(_, l)| !(l.t.protected && l.healthy))
                .max_by(|(_, a), (_, b)| {
                    (!a.healthy)
                        .cmp(&!b.healthy)
                        .then(per_zone[&zone_of(a)].cmp(&per_zone[&zone_of(b)]))
                        .then(
                            per_instance[a.t.instance_id.as_str()]
                                .cmp(&per_instance[b.t.instance_id.as_str()]),
                        )
                        .then(
                            a.t.started_at
                                .partial_cmp(&b.t.started_at)
                                .unwrap_or(std::cmp::Ordering::Equal),
                        )
                        .then(b.t.id.cmp(&a.t.id))
                })
                .map(|(i, _)| i);
            let Some(i) = pick else { break };
            let l = primary_good.remove(i);
            stop(&mut d, &mut stopping, l, scaling(&primary_id));
            surplus -= 1;
        }
    }
    // Healthy tasks that should go, while the minimum allows: old deployments' (oldest
    // deployment first), then those on DRAINING instances, then DAEMON tasks off eligible
    // instances.
    let mut healthy_total =
        live.iter().filter(|l| l.healthy && !stopping.contains(&l.t.id)).count() as i32;
    let mut candidates: Vec<(&Live<'_>, StopWhy, usize)> = Vec::new();
    for l in live.iter().filter(|l| l.healthy && !l.t.protected && !stopping.contains(&l.t.id)) {
        let rank = dep_index.get(&l.t.deployment).copied().unwrap_or(usize::MAX);
        if !is_primary(l) {
            candidates.push((l, scaling(&l.t.deployment), usize::MAX - rank));
        } else if l.draining {
            candidates.push((l, StopWhy::Draining, 0));
        } else if cfg.settings.daemon && !eligible.contains(l.t.instance_id.as_str()) {
            candidates.push((l, scaling(&primary_id), 0));
        }
    }
    candidates.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.t.id.cmp(&b.0.t.id)));
    for (l, why, _) in candidates {
        // Tasks on lost or vanished instances are gone already; tasks off DAEMON-eligible
        // instances and DAEMON old tasks follow the same minimum.
        if healthy_total - 1 < min_healthy {
            break;
        }
        healthy_total -= 1;
        stop(&mut d, &mut stopping, l, why);
    }

    // 3. Starts. Every task that is not STOPPED yet occupies its place, including those being
    // stopped (by this pass or earlier), except on lost or vanished instances.
    let remaining: Vec<&Live<'_>> = live.iter().filter(|l| !stopping.contains(&l.t.id)).collect();
    let occupying: Vec<&TaskView> = input
        .tasks
        .iter()
        .filter(|t| t.last_status != TaskStatus::Stopped)
        .filter(|t| instances.get(t.instance_id.as_str()).is_some_and(|i| !i.lost))
        .collect();
    let total = occupying.len() as i32;
    if primary_open && !cfg.deleting {
        if cfg.settings.daemon {
            // One per eligible instance that has no task of the service left at all.
            let occupied: BTreeSet<&str> =
                occupying.iter().map(|t| t.instance_id.as_str()).collect();
            for inst in &eligible {
                if !occupied.contains(inst) {
                    d.start.push(Start {
                        deployment: primary_id.clone(),
                        count: 1,
                        instance: Some((*inst).to_string()),
                    });
                }
            }
        } else {
            let want = desired - primary_good.len() as i32;
            let room = max_tasks - total;
            let n = want.min(room);
            if n > 0 {
                d.start.push(Start {
                    deployment: primary_id.clone(),
                    count: n as u32,
                    instance: None,
                });
            }
        }
    }

    // 4. Deployment bookkeeping.
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
    // A deployment still "has tasks" while any of them is not STOPPED yet (on an instance that
    // can still report), including those being stopped: completion waits for them.
    let occupied: BTreeSet<&str> = occupying.iter().map(|t| t.deployment.as_str()).collect();
    let others_have_tasks = remaining.iter().any(|l| l.t.deployment != primary_id)
        || occupied.iter().any(|dep| *dep != primary_id);
    let primary_healthy = remaining
        .iter()
        .filter(|l| l.t.deployment == primary_id && l.healthy && !l.draining)
        .count() as i32;
    let primary_count = remaining.iter().filter(|l| l.t.deployment == primary_id).count() as i32;

    // Circuit breaker.
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
    if rolled_back {
        let failed_id = d.deployments[0].id.clone();
        let reason = |to: &str| {
            format!("ECS deployment circuit breaker: rolling back to deploymentId {to}.")
        };
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
    } else {
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
    // Old deployments with no task left become INACTIVE.
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

    // 5. Steady state.
    let p = &d.deployments[0];
    let steady = d.deployments.len() == 1
        && p.rollout_state == DeploymentRolloutState::Completed
        && p.running_count == desired
        && p.pending_count == 0
        && d.start.is_empty()
        && d.stop.is_empty();
    d.steady_since = match (steady, input.steady_since) {
        (false, _) => None,
        (true, Some(since)) if now - since < STEADY_REPEAT_SECS => Some(since),
        (true, _) => {
            d.events.push(format!("(service {name}) has reached a steady state."));
            Some(now)
        }
    };
    d.finished = cfg.deleting && occupying.is_empty() && d.start.is_empty();
    d
}

#[cfg(test)]
mod tests;
