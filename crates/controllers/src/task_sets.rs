//! The task set scheduler: for a service with the `EXTERNAL` deployment controller, keeps
//! each task set at its computed desired count and keeps the sets' counts and stability.
//! Pure: a snapshot and the time in, a [`TaskSetDecision`] out; the server carries it out.
//!
//! # Rules
//!
//! * **Target.** A set runs `computedDesiredCount = ceil(D x scale% / 100)` tasks, `D` the
//!   service's desired count ([`berth_model::task_set::computed_desired_count`]); a DRAINING
//!   set, and every set of a service being deleted, runs 0.
//! * **Accounting** (each task once, in this order): a STOPPED task is forgotten, and counts
//!   as a failure of its set if it stopped before it ever ran and nobody stopped it on
//!   purpose; a task already desired STOPPED is left to stop; a task on a lost or vanished
//!   instance is stopped (and replaced); a task of no known set is stopped; a RUNNING task
//!   UNHEALTHY past the grace period is stopped; a task on a DRAINING instance is stopped
//!   (and replaced). The rest are the set's live tasks.
//! * **Scaling.** Fewer live tasks than the target: start the difference (unless the set's
//!   launch delay, which three failures in a row start, has not passed); more: stop the
//!   surplus, tasks not yet RUNNING first, then the most recently started. A set with a
//!   capacity provider strategy splits its launches across it from what each provider runs
//!   (`berth_scheduler::capacity::launches`) and scales in from the provider furthest above
//!   its share (`berth_scheduler::capacity::scale_in_from`). Task sets are
//!   scaled by their owner (the external controller), so no minimum healthy or maximum
//!   percent bounds apply between sets.
//! * **Counts.** `runningCount` / `pendingCount` are the live tasks kept, RUNNING or not;
//!   `stabilityStatus` is STEADY_STATE when the set runs exactly its target with nothing
//!   pending and nothing started or stopped in this pass, else STABILIZING;
//!   `stabilityStatusAt` and `updatedAt` move when they change.
//! * **Removal.** A DRAINING set with no task left that is not STOPPED is removed. A service
//!   being deleted is finished when none of its tasks is left and nothing is to start.

use std::collections::BTreeMap;

use berth_model::lifecycle::TaskStatus;
use berth_model::task_set::{self as ts, TaskSetRecord};
use berth_scheduler::capacity::ProviderShare;
use berth_wire::ecs::StabilityStatus;

use crate::service::{
    FIRST_LAUNCH_DELAY_SECS, Health, InstanceView, MAX_LAUNCH_DELAY_SECS, Start, StopWhy,
    THROTTLE_AFTER, TaskView,
};

/// Everything one pass over an `EXTERNAL` service reads.
#[derive(Clone, Debug)]
pub struct TaskSetInput<'a> {
    /// The service's name (for events).
    pub name: &'a str,
    /// The service's desired count `D`.
    pub desired_count: i32,
    /// DeleteService was called: every set runs 0, then the service becomes INACTIVE.
    pub deleting: bool,
    pub health_check_grace_period_seconds: i32,
    /// The service's task sets.
    pub task_sets: &'a [TaskSetRecord],
    /// The service's tasks; `deployment` is the task set id.
    pub tasks: &'a [TaskView],
    /// The cluster's registered instances.
    pub instances: &'a [InstanceView],
    /// Epoch seconds.
    pub now: f64,
}

/// What one pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskSetDecision {
    /// `deployment` is the task set id (the tasks' `startedBy`).
    pub start: Vec<Start>,
    pub stop: Vec<(String, StopWhy)>,
    /// STOPPED tasks now accounted for: drop them from the service's index.
    pub forget: Vec<String>,
    /// The task sets after this pass (removed ones left out), in their order.
    pub task_sets: Vec<TaskSetRecord>,
    /// DRAINING sets removed in this pass.
    pub removed: Vec<String>,
    /// Event messages, oldest first.
    pub events: Vec<String>,
    /// A deleting service has no task left: it becomes INACTIVE.
    pub finished: bool,
}

/// Runs one pass (see the module documentation).
pub fn reconcile(input: &TaskSetInput<'_>) -> TaskSetDecision {
    let now = input.now;
    let mut d = TaskSetDecision { task_sets: input.task_sets.to_vec(), ..Default::default() };
    let index: BTreeMap<&str, usize> =
        input.task_sets.iter().enumerate().map(|(i, s)| (s.id(), i)).collect();
    let instances: BTreeMap<&str, &InstanceView> =
        input.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut live: Vec<Vec<&TaskView>> = vec![Vec::new(); input.task_sets.len()];
    // Tasks not STOPPED yet on an instance that can still report, per set id.
    let mut occupying: BTreeMap<&str, usize> = BTreeMap::new();
    for t in input.tasks {
        let set = index.get(t.deployment.as_str()).copied();
        if t.last_status == TaskStatus::Stopped {
            d.forget.push(t.id.clone());
            if !t.stopped_on_purpose
                && t.started_at.is_none()
                && let Some(i) = set
            {
                record_failure(&mut d, i, now, input.name);
            }
            continue;
        }
        let inst = instances.get(t.instance_id.as_str());
        if inst.is_some_and(|i| !i.lost) {
            *occupying.entry(t.deployment.as_str()).or_default() += 1;
        }
        if !t.desired_running {
            continue;
        }
        match inst {
            None => {
                let why = StopWhy::InstanceLost { instance: t.instance_id.clone(), silent_secs: 0 };
                d.stop.push((t.id.clone(), why));
                continue;
            }
            Some(i) if i.lost => {
                let why = StopWhy::InstanceLost {
                    instance: i.id.clone(),
                    silent_secs: i.silent_secs as u64,
                };
                d.stop.push((t.id.clone(), why));
                continue;
            }
            _ => {}
        }
        let Some(i) = set else {
            d.stop.push((t.id.clone(), StopWhy::Scaling { deployment: t.deployment.clone() }));
            continue;
        };
        let ran_for = t.started_at.map(|s| now - s).unwrap_or(0.0);
        if t.last_status == TaskStatus::Running
            && t.has_health_check
            && t.health == Health::Unhealthy
            && ran_for >= f64::from(input.health_check_grace_period_seconds)
        {
            d.stop.push((t.id.clone(), StopWhy::Unhealthy));
            continue;
        }
        if inst.is_some_and(|i| !i.active) {
            d.stop.push((t.id.clone(), StopWhy::Draining));
            continue;
        }
        if t.last_status == TaskStatus::Running {
            d.task_sets[i].consecutive_failures = 0;
        }
        live[i].push(t);
    }

    for (i, tasks) in live.iter_mut().enumerate() {
        let set = &input.task_sets[i];
        let id = set.id().to_string();
        let target = if input.deleting || set.status() == ts::DRAINING {
            0
        } else {
            ts::computed_desired_count(input.desired_count, set.scale_percent())
        };
        let mut changed = false;
        let shares = crate::service::strategy_shares(
            set.task_set.capacity_provider_strategy.as_deref().unwrap_or_default(),
        );
        if tasks.len() > target as usize {
            // Not yet RUNNING first, then the most recently started, then by id.
            tasks.sort_by(|a, b| {
                let ra = a.last_status == TaskStatus::Running;
                let rb = b.last_status == TaskStatus::Running;
                ra.cmp(&rb)
                    .then(
                        b.started_at
                            .partial_cmp(&a.started_at)
                            .unwrap_or(std::cmp::Ordering::Equal),
                    )
                    .then(a.id.cmp(&b.id))
            });
            for t in scale_in(&shares, tasks, tasks.len() - target as usize) {
                d.stop.push((t, StopWhy::Scaling { deployment: id.clone() }));
            }
            changed = true;
        } else if tasks.len() < target as usize && now >= d.task_sets[i].next_launch_at {
            let count = target as u32 - tasks.len() as u32;
            if shares.is_empty() {
                d.start.push(Start {
                    deployment: id.clone(),
                    count,
                    instance: None,
                    capacity_provider: None,
                });
            } else {
                // Split across the set's strategy from what each provider runs now.
                let per = berth_scheduler::capacity::launches(
                    &shares,
                    &per_provider(&shares, tasks),
                    count,
                );
                for (share, n) in shares.iter().zip(per).filter(|(_, n)| *n > 0) {
                    d.start.push(Start {
                        deployment: id.clone(),
                        count: n,
                        instance: None,
                        capacity_provider: Some(share.capacity_provider.clone()),
                    });
                }
            }
            changed = true;
        } else if tasks.len() < target as usize {
            changed = true;
        }
        let running = tasks.iter().filter(|t| t.last_status == TaskStatus::Running).count() as i32;
        let pending = tasks.len() as i32 - running;
        let stability = if changed {
            StabilityStatus::Stabilizing
        } else {
            ts::stability(target, running, pending)
        };
        let w = &mut d.task_sets[i].task_set;
        let counts = (Some(target), Some(running), Some(pending));
        if (w.computed_desired_count, w.running_count, w.pending_count) != counts {
            (w.computed_desired_count, w.running_count, w.pending_count) = counts;
            w.updated_at = Some(now);
        }
        if w.stability_status != Some(stability) {
            w.stability_status = Some(stability);
            w.stability_status_at = Some(now);
        }
    }

    // DRAINING sets with nothing left go.
    let mut kept = Vec::with_capacity(d.task_sets.len());
    for s in std::mem::take(&mut d.task_sets) {
        let left = occupying.get(s.id()).copied().unwrap_or(0);
        if s.status() == ts::DRAINING && left == 0 {
            d.removed.push(s.id().to_string());
        } else {
            kept.push(s);
        }
    }
    d.task_sets = kept;
    d.finished = input.deleting && occupying.values().all(|n| *n == 0) && d.start.is_empty();
    d
}

/// How many of `tasks` each provider of `shares` runs, in strategy order (tasks of a provider
/// outside the strategy count for none).
fn per_provider(shares: &[ProviderShare], tasks: &[&TaskView]) -> Vec<u32> {
    shares
        .iter()
        .map(|s| {
            tasks
                .iter()
                .filter(|t| t.capacity_provider.as_deref() == Some(&s.capacity_provider))
                .count() as u32
        })
        .collect()
}

/// The ids of `n` tasks to stop for a scale-in, `tasks` sorted by preference (first stopped
/// first). Without a strategy, the first `n`; with one, each stop comes from the provider
/// furthest above its share of what is left (`berth_scheduler::capacity::scale_in_from`), its
/// most preferred task; tasks of providers outside the strategy go first.
fn scale_in(shares: &[ProviderShare], tasks: &mut Vec<&TaskView>, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n && !tasks.is_empty() {
        let at = if shares.is_empty() {
            0
        } else if let Some(k) = tasks.iter().position(|t| {
            !shares.iter().any(|s| t.capacity_provider.as_deref() == Some(&s.capacity_provider))
        }) {
            k
        } else {
            let current = per_provider(shares, tasks);
            let stoppable: Vec<bool> = current.iter().map(|c| *c > 0).collect();
            let Some(j) = berth_scheduler::capacity::scale_in_from(shares, &current, &stoppable)
            else {
                break;
            };
            let name = shares[j].capacity_provider.as_str();
            tasks
                .iter()
                .position(|t| t.capacity_provider.as_deref() == Some(name))
                .expect("the provider runs a task")
        };
        out.push(tasks.remove(at).id.clone());
    }
    out
}

/// A task of set `i` stopped before it ever ran: three in a row delay the set's launches
/// (10 s, doubling, at most 15 minutes), as for deployments.
fn record_failure(d: &mut TaskSetDecision, i: usize, now: f64, name: &str) {
    let s = &mut d.task_sets[i];
    s.consecutive_failures += 1;
    if s.consecutive_failures >= THROTTLE_AFTER {
        let delay = (FIRST_LAUNCH_DELAY_SECS
            * 2f64.powi((s.consecutive_failures - THROTTLE_AFTER) as i32))
        .min(MAX_LAUNCH_DELAY_SECS);
        s.next_launch_at = now + delay;
        d.events.push(format!(
            "(service {name}) (taskSet {}) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
            s.id()
        ));
    }
}

#[cfg(test)]
mod tests;
