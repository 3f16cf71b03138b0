//! Stage 2 of a pass: which live tasks to stop, and why. Each task is stopped at most once,
//! in the order of the module documentation: first the tasks that are not healthy and should
//! go (no permission needed), then surplus PRIMARY tasks (scale-in keeps zones and instances
//! balanced; DAEMON keeps one task per eligible instance), then healthy tasks that should go
//! (old deployments', on DRAINING instances, off DAEMON-eligible instances) only while the
//! healthy count stays at or above the minimum. A healthy protected task is never chosen.

use std::collections::{BTreeMap, BTreeSet};

use berth_model::lifecycle::TaskStatus;

use super::{Decision, Live, Pass, StopWhy};

/// What stage 2 decided, besides the stops it added to the decision.
pub(super) struct Stops {
    /// The live tasks this stage stops.
    pub(super) stopping: BTreeSet<String>,
    /// PRIMARY tasks kept: not draining, not stopped, and (DAEMON) one per eligible instance.
    pub(super) primary_kept: usize,
    /// Of those, how many each provider of the PRIMARY's strategy runs (in strategy order).
    pub(super) kept_per_provider: Vec<u32>,
}

/// Stage 2: the stops, in order; each task at most once.
pub(super) fn decide_stops(pass: &Pass<'_>, live: &[Live<'_>], d: &mut Decision) -> Stops {
    let mut stopping: BTreeSet<String> = BTreeSet::new();
    stop_not_healthy(pass, live, d, &mut stopping);
    let kept = stop_surplus_primary(pass, live, d, &mut stopping);
    let mut kept_per_provider = vec![0u32; pass.shares.len()];
    for l in &kept {
        if let Some(j) = pass.share_of(l) {
            kept_per_provider[j] += 1;
        }
    }
    stop_healthy_within_minimum(pass, live, d, &mut stopping);
    Stops { stopping, primary_kept: kept.len(), kept_per_provider }
}

/// Stops `l` for `why`, unless this stage already stops it.
fn stop(d: &mut Decision, stopping: &mut BTreeSet<String>, l: &Live<'_>, why: StopWhy) {
    if stopping.insert(l.t.id.clone()) {
        d.stop.push((l.t.id.clone(), why));
    }
}

/// A stop by the service scheduler for deployment `dep`.
fn scaling(dep: &str) -> StopWhy {
    StopWhy::Scaling { deployment: dep.to_string() }
}

/// Stops that need no permission: tasks that are not healthy and should go. An old
/// deployment's task that is RUNNING but not yet healthy (starting up) is kept while
/// replacements can still start and the PRIMARY is not fully healthy: it is about to serve.
fn stop_not_healthy(
    pass: &Pass<'_>,
    live: &[Live<'_>],
    d: &mut Decision,
    stopping: &mut BTreeSet<String>,
) {
    let cfg = pass.input.config;
    let desired = pass.desired;
    let max_tasks = pass.max_tasks;
    let occupying_before = pass.occupying.len() as i32;
    let primary_healthy_now =
        live.iter().filter(|l| pass.is_primary(l) && l.healthy && !l.draining).count() as i32;
    let keep_starting = primary_healthy_now < desired && occupying_before < max_tasks;
    for l in live {
        if l.healthy {
            continue;
        }
        if !pass.is_primary(l) {
            let held = cfg.hold_old && !l.draining;
            if (keep_starting || held) && l.t.last_status == TaskStatus::Running {
                continue;
            }
            stop(d, stopping, l, scaling(&l.t.deployment));
        } else if l.draining {
            stop(d, stopping, l, StopWhy::Draining);
        } else if cfg.settings.daemon && !pass.eligible.contains(l.t.instance_id.as_str()) {
            stop(d, stopping, l, scaling(&pass.primary_id));
        }
    }
}

/// Surplus PRIMARY tasks (scale-in, or a second DAEMON task on an instance); returns the
/// PRIMARY tasks kept.
fn stop_surplus_primary<'l>(
    pass: &Pass<'_>,
    live: &'l [Live<'l>],
    d: &mut Decision,
    stopping: &mut BTreeSet<String>,
) -> Vec<&'l Live<'l>> {
    let cfg = pass.input.config;
    let desired = pass.desired;
    let mut primary_good: Vec<&Live<'_>> = live
        .iter()
        .filter(|l| pass.is_primary(l) && !l.draining && !stopping.contains(&l.t.id))
        .filter(|l| !cfg.settings.daemon || pass.eligible.contains(l.t.instance_id.as_str()))
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
                stop(d, stopping, l, scaling(&pass.primary_id));
            }
        }
        primary_good = keep;
    } else if primary_good.len() as i32 > desired {
        // Scale-in keeps the service balanced, as ECS's default spread does: one task at a
        // time, a not-yet-healthy one first, then one from the zone, then the instance, that
        // runs the most of the service's tasks, the most recently started first. Protected
        // healthy tasks stay. With a capacity provider strategy, the task comes from the
        // provider furthest above its share (one not in the strategy first).
        let zone_of = |l: &Live<'_>| {
            pass.instances
                .get(l.t.instance_id.as_str())
                .and_then(|i| i.zone.clone())
                .unwrap_or_default()
        };
        let mut surplus = primary_good.len() - desired as usize;
        while surplus > 0 {
            let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
            let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
            for l in &primary_good {
                *per_zone.entry(zone_of(l)).or_default() += 1;
                *per_instance.entry(l.t.instance_id.as_str()).or_default() += 1;
            }
            let provider = scale_in_provider(pass, &primary_good);
            let pick = primary_good
                .iter()
                .enumerate()
                .filter(|(_, l)| !(l.t.protected && l.healthy))
                .filter(|(_, l)| provider.is_none_or(|p| pass.share_of(l) == p))
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
            stop(d, stopping, l, scaling(&pass.primary_id));
            surplus -= 1;
        }
    }
    primary_good
}

/// With a capacity provider strategy, the provider scale-in stops from next
/// (`Some(None)`: a provider the strategy does not name); `None` without a strategy or when
/// no task may be stopped.
fn scale_in_provider(pass: &Pass<'_>, kept: &[&Live<'_>]) -> Option<Option<usize>> {
    if pass.shares.is_empty() {
        return None;
    }
    let stoppable = |l: &&&Live<'_>| !(l.t.protected && l.healthy);
    if kept.iter().filter(stoppable).any(|l| pass.share_of(l).is_none()) {
        return Some(None);
    }
    let mut current = vec![0u32; pass.shares.len()];
    let mut may_stop = vec![false; pass.shares.len()];
    for l in kept {
        if let Some(j) = pass.share_of(l) {
            current[j] += 1;
            may_stop[j] |= stoppable(&l);
        }
    }
    berth_scheduler::capacity::scale_in_from(&pass.shares, &current, &may_stop).map(Some)
}

/// Healthy tasks that should go, while the minimum allows: old deployments' (oldest
/// deployment first), then those on DRAINING instances, then DAEMON tasks off eligible
/// instances.
fn stop_healthy_within_minimum(
    pass: &Pass<'_>,
    live: &[Live<'_>],
    d: &mut Decision,
    stopping: &mut BTreeSet<String>,
) {
    let cfg = pass.input.config;
    let min_healthy = pass.min_healthy;
    let mut healthy_total =
        live.iter().filter(|l| l.healthy && !stopping.contains(&l.t.id)).count() as i32;
    let mut candidates: Vec<(&Live<'_>, StopWhy, usize)> = Vec::new();
    for l in live.iter().filter(|l| l.healthy && !l.t.protected && !stopping.contains(&l.t.id)) {
        let rank = pass.dep_index.get(&l.t.deployment).copied().unwrap_or(usize::MAX);
        if !pass.is_primary(l) {
            if cfg.hold_old && !l.draining {
                continue;
            }
            candidates.push((l, scaling(&l.t.deployment), usize::MAX - rank));
        } else if l.draining {
            candidates.push((l, StopWhy::Draining, 0));
        } else if cfg.settings.daemon && !pass.eligible.contains(l.t.instance_id.as_str()) {
            candidates.push((l, scaling(&pass.primary_id), 0));
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
        stop(d, stopping, l, why);
    }
}
