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
//!   **Behind load balancers** ([`TaskView::target_health`]) a task is healthy only once every
//!   target group says its target is healthy (and its container health checks pass, if
//!   any; the settle time then does not apply), and a RUNNING task whose target is
//!   `unhealthy` after the grace period is stopped and replaced (ECS's "failed ELB health
//!   checks"); it counts as a failure of its deployment if it was never healthy.
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
//! * **Capacity provider strategy** (REPLICA, the PRIMARY deployment's): starts are split
//!   across its providers counting the PRIMARY tasks kept per provider, `base` first, then
//!   the weights (`berth_scheduler::capacity::launches`); scale-in stops from the provider
//!   furthest above its share (tasks of providers not in the strategy first), then by the
//!   zone and instance rules above (`berth_scheduler::capacity::scale_in_from`).
//! * **Steady state**: one deployment, COMPLETED, running = desired, nothing pending and
//!   nothing started or stopped in this pass. Announced once, and again every 6 hours.
//!
//! # Stages of a pass
//!
//! [`reconcile`] runs them in this order; each reads what the earlier ones decided.
//!
//! 1. `account`: every task of the service accounted for once (forgotten, stopped for a lost
//!    instance or for being unhealthy, or live), failures recorded.
//! 2. `stops`: which live tasks to stop, in the order above, within the minimum healthy.
//! 3. `starts`: how many PRIMARY tasks to start (DAEMON: on which instances), within the
//!    maximum.
//! 4. `deployments`: deployment counts, the circuit breaker and rollback, completion, and
//!    retiring deployments without tasks.
//! 5. The steady-state event and whether a deleting service is finished.

mod account;
mod deployments;
mod starts;
mod stops;

use std::collections::{BTreeMap, BTreeSet};

use berth_model::lifecycle::TaskStatus;
use berth_model::service::{DeploymentRecord, maximum_tasks, minimum_healthy};
use berth_model::service_rules::ServiceSettings;
use berth_scheduler::capacity::ProviderShare;
use berth_wire::ecs::{CapacityProviderStrategyItem, DeploymentRolloutState};

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
    /// A traffic-shifting deployment (`crate::traffic_shift`) has not reached `CLEAN_UP`:
    /// the PRIMARY (green) starts its full count beside the old deployments' tasks (the
    /// maximum is at least `D` plus their tasks), and the old (blue) tasks that run are not
    /// stopped for the deployment; lost, draining-instance and unhealthy ones still are.
    pub hold_old: bool,
    /// A PAUSE lifecycle hook holds a traffic-shifting deployment before `SCALE_UP`
    /// (`crate::traffic_shift`): no PRIMARY task starts.
    pub hold_new: bool,
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
    /// The capacity provider it was placed with (`capacityProviderName`).
    pub capacity_provider: Option<String>,
    /// The service has load balancers: what its target groups say of this task's targets
    /// (`None`: the service has none). See [`TargetHealth`].
    pub target_health: Option<TargetHealth>,
}

/// What a service task's target groups say of its targets (the task's worst target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetHealth {
    /// Healthy in every target group of the service.
    Healthy,
    /// Not registered yet, or registered and still `initial` somewhere.
    Pending,
    /// `unhealthy` in `target_group` (its ARN).
    Unhealthy { target_group: String },
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
    /// Its target is `unhealthy` in `target_group` (an ARN) after the grace period.
    ElbUnhealthy { target_group: String },
}

/// Tasks to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub deployment: String,
    pub count: u32,
    /// DAEMON: the instance it must run on.
    pub instance: Option<String>,
    /// A deployment with a capacity provider strategy: the provider whose instances take
    /// these tasks (see [`berth_scheduler::capacity::launches`]).
    pub capacity_provider: Option<String>,
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
    /// `EXTERNAL` services: the task sets after this pass (see [`crate::task_sets`]); `None`
    /// leaves the record's task sets as they are.
    pub task_sets: Option<Vec<berth_model::task_set::TaskSetRecord>>,
}

/// A live task with what this pass knows of it.
struct Live<'a> {
    t: &'a TaskView,
    healthy: bool,
    draining: bool,
}

/// What every stage of one pass reads: the input, its indexes, and the targets the service's
/// settings and the cluster give. Built once per pass from the input alone; never changed.
struct Pass<'a> {
    input: &'a Input<'a>,
    /// The cluster's instances by id.
    instances: BTreeMap<&'a str, &'a InstanceView>,
    /// Deployment id -> position, newest first (`0` is PRIMARY).
    dep_index: BTreeMap<String, usize>,
    primary_id: String,
    /// DAEMON: the instances that should run a task.
    eligible: BTreeSet<&'a str>,
    /// `D`: 0 while deleting, the eligible instances for DAEMON, else the desired count.
    desired: i32,
    /// `ceil(D x min% / 100)`.
    min_healthy: i32,
    /// `floor(D x max% / 100)`, at least `D`.
    max_tasks: i32,
    /// Every task that is not STOPPED yet occupies its place, including those being stopped
    /// (by this pass or earlier), except on lost or vanished instances.
    occupying: Vec<&'a TaskView>,
    /// The PRIMARY deployment's capacity provider strategy (REPLICA only; empty: none).
    shares: Vec<ProviderShare>,
}

impl<'a> Pass<'a> {
    /// Indexes `input` and derives the targets; `input` has at least one deployment.
    fn new(input: &'a Input<'a>) -> Self {
        let cfg = input.config;
        let instances: BTreeMap<&str, &InstanceView> =
            input.instances.iter().map(|i| (i.id.as_str(), i)).collect();
        let dep_index: BTreeMap<String, usize> =
            input.deployments.iter().enumerate().map(|(i, dep)| (dep.id.clone(), i)).collect();
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
        let mut max_tasks = maximum_tasks(desired, cfg.settings.maximum_percent).max(desired);
        let occupying: Vec<&TaskView> = input
            .tasks
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            // (A task not yet placed, waiting for Fargate capacity, occupies its slot.)
            .filter(|t| {
                t.instance_id.is_empty()
                    || instances.get(t.instance_id.as_str()).is_some_and(|i| !i.lost)
            })
            .collect();
        if cfg.hold_old {
            let old = occupying.iter().filter(|t| t.deployment != input.deployments[0].id).count();
            max_tasks = max_tasks.max(desired + old as i32);
        }
        Pass {
            input,
            instances,
            dep_index,
            primary_id: input.deployments[0].id.clone(),
            eligible,
            desired,
            min_healthy,
            max_tasks,
            occupying,
            shares: if cfg.settings.daemon {
                Vec::new()
            } else {
                strategy_shares(&input.deployments[0].capacity_provider_strategy)
            },
        }
    }

    /// The position in [`Pass::shares`] of `l`'s capacity provider (`None`: not in the
    /// strategy, or the service has none).
    fn share_of(&self, l: &Live<'_>) -> Option<usize> {
        let name = l.t.capacity_provider.as_deref()?;
        self.shares.iter().position(|s| s.capacity_provider == name)
    }

    /// `l` belongs to the PRIMARY deployment.
    fn is_primary(&self, l: &Live<'_>) -> bool {
        l.t.deployment == self.primary_id
    }
}

/// A deployment's capacity provider strategy as the split arithmetic takes it (the API
/// validated it; a missing `base` or `weight` is 0, as ECS defaults them).
pub fn strategy_shares(items: &[CapacityProviderStrategyItem]) -> Vec<ProviderShare> {
    items
        .iter()
        .map(|i| ProviderShare {
            capacity_provider: i.capacity_provider.clone().unwrap_or_default(),
            base: i.base.unwrap_or(0).max(0) as u32,
            weight: i.weight.unwrap_or(0).max(0) as u32,
        })
        .collect()
}

/// Runs one pass: the stages of the module documentation, in order.
pub fn reconcile(input: &Input<'_>) -> Decision {
    let cfg = input.config;
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
    let pass = Pass::new(input);

    // 1. Account for STOPPED tasks; drop lost and unhealthy ones; classify the rest.
    let live = account::account_tasks(&pass, &mut d);
    // 2. Stops, in the order of the module documentation.
    let stops = stops::decide_stops(&pass, &live, &mut d);
    // 3. Starts.
    starts::decide_starts(&pass, &stops, &mut d);
    // 4. Deployment bookkeeping, over the live tasks this pass does not stop.
    let remaining: Vec<&Live<'_>> =
        live.iter().filter(|l| !stops.stopping.contains(&l.t.id)).collect();
    deployments::update_deployments(&pass, &remaining, &mut d);
    // 5. Steady state.
    steady_state(&pass, &mut d);
    d.finished = cfg.deleting && pass.occupying.is_empty() && d.start.is_empty();
    d
}

/// Stage 5: `steady_since` after this pass, announcing the steady state when it starts and
/// again every [`STEADY_REPEAT_SECS`] while it lasts.
fn steady_state(pass: &Pass<'_>, d: &mut Decision) {
    let input = pass.input;
    let now = input.now;
    let name = &input.config.name;
    let desired = pass.desired;
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
}

#[cfg(test)]
mod tests;
