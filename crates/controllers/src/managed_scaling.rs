//! ECS managed scaling of an Auto Scaling group capacity provider, as a pure decision: the
//! provider's settings, its group's instances, the tasks waiting for it and the time in; the
//! metric, the group's new desired capacity and what to protect, drain and terminate out.
//! The server carries it out (SetDesiredCapacity, SetInstanceProtection, the container
//! instance's DRAINING status, TerminateInstanceInAutoScalingGroup with a decrement) and
//! keeps [`Decision::below_target_since`] for the next pass.
//!
//! # The metric (ECS developer guide, "Managed scaling behavior", and the "Deep dive on
//! Amazon ECS cluster auto scaling" it cites)
//!
//! `CapacityProviderReservation = M / N x 100`, where
//! * `N` is the number of the group's instances already running (registered container
//!   instances, ACTIVE or DRAINING);
//! * `M` is the number of instances needed: with no task waiting, the instances running at
//!   least one task (daemon tasks are not counted: the caller passes non-daemon counts);
//!   with tasks waiting in PROVISIONING for this provider, `N` plus the fewest new instances
//!   of the group's type that hold them, computed by first-fit-decreasing bin packing of
//!   their cpu and memory onto instance-sized bins, and at least `N + 1` (tasks that fit no
//!   instance of the type are ignored and reported: no instance can ever run them);
//! * with `N = 0`: `100` when `M = 0` (nothing to do), `200` when `M > 0`.
//!
//! # Scaling (target tracking on the metric)
//!
//! * The instances wanted are `ceil(M x 100 / targetCapacity)` (`0` when `M = 0`).
//! * **Scale-out** when that is above the active instances (`N` less those this controller
//!   is draining) plus the instances launched within `instanceWarmupPeriod` that have not
//!   registered yet (they are on their way: nothing is launched twice for one need).
//!   Instances this controller is draining are reactivated first; the rest raises the
//!   desired capacity by the shortfall clamped to `[minimumScalingStepSize,
//!   maximumScalingStepSize]`, within the group's maximum.
//! * **Scale-in** only when the metric has been below the target for `scale_in_after_secs`
//!   without a break (ECS's scale-in alarm: 15 one-minute datapoints, so 900 s by default).
//!   The step sizes bound scale-out only, as ECS documents. The active instances above
//!   `max(wanted, minSize)` are drained (the container instance set DRAINING, so nothing new
//!   is placed there), chosen by the group's termination policy
//!   ([`crate::asg::scale_in_choice`]). With managed termination protection only instances
//!   running no task are chosen; without it, every unprotected instance is a candidate,
//!   emptiest first.
//! * **Drain first, then terminate**: an instance this controller drained is terminated (and
//!   the desired capacity decremented with it) once it runs no task, never in the pass that
//!   drains it.
//! * **Managed termination protection**: every instance running a task is protected from
//!   scale-in in the group, every one running none is not; so neither the group's own
//!   scale-in nor this controller ever terminates an instance that runs tasks.
//! * The desired capacity is always within the group's `[minSize, maxSize]`.

use std::collections::BTreeSet;

use crate::asg::{Candidate, bounded, scale_in_choice};

/// ECS's defaults.
pub const DEFAULT_TARGET_CAPACITY: u32 = 100;
pub const DEFAULT_MINIMUM_STEP: u32 = 1;
pub const DEFAULT_MAXIMUM_STEP: u32 = 10_000;
pub const DEFAULT_WARMUP_SECS: u32 = 300;
/// 15 one-minute datapoints below the target.
pub const DEFAULT_SCALE_IN_AFTER_SECS: u32 = 900;

/// The provider's `managedScaling` and `managedTerminationProtection`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// 1..=100.
    pub target_capacity: u32,
    pub minimum_scaling_step_size: u32,
    pub maximum_scaling_step_size: u32,
    /// `instanceWarmupPeriod`, seconds.
    pub instance_warmup_period: u32,
    /// How long the metric must stay below the target before scale-in.
    pub scale_in_after_secs: u32,
    pub managed_termination_protection: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            target_capacity: DEFAULT_TARGET_CAPACITY,
            minimum_scaling_step_size: DEFAULT_MINIMUM_STEP,
            maximum_scaling_step_size: DEFAULT_MAXIMUM_STEP,
            instance_warmup_period: DEFAULT_WARMUP_SECS,
            scale_in_after_secs: DEFAULT_SCALE_IN_AFTER_SECS,
            managed_termination_protection: false,
        }
    }
}

/// CPU units and memory MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    pub cpu: u32,
    pub memory_mib: u32,
}

/// One instance of the group.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceView {
    /// The EC2 instance id.
    pub instance_id: String,
    pub zone: String,
    pub template_version: u64,
    /// Epoch seconds.
    pub launched_at: f64,
    /// Its container instance is registered (ACTIVE or DRAINING).
    pub registered: bool,
    /// Its container instance is DRAINING.
    pub draining: bool,
    /// This controller drained it for scale-in (the caller keeps the mark).
    pub drained_for_scale_in: bool,
    /// Non-daemon tasks on it that are not STOPPED.
    pub tasks: u32,
    /// The group's scale-in protection, as it is now.
    pub protected_from_scale_in: bool,
}

/// The group's capacity settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBounds {
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
}

/// Everything one pass reads.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub settings: &'a Settings,
    /// What one instance of the group's type registers.
    pub instance_capacity: Resources,
    /// The group's launch template version (for the termination order).
    pub template_version: u64,
    pub group: GroupBounds,
    pub instances: &'a [InstanceView],
    /// The cpu and memory of each task waiting in PROVISIONING for this provider.
    pub provisioning: &'a [Resources],
    pub now: f64,
    /// From the previous pass's decision.
    pub below_target_since: Option<f64>,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// `N`.
    pub running: u32,
    /// `M`.
    pub needed: u32,
    /// `CapacityProviderReservation`, percent.
    pub reservation: f64,
    /// Waiting tasks no instance of the type can hold.
    pub unplaceable_tasks: u32,
    /// The group's new desired capacity.
    pub desired_capacity: u32,
    /// Set scale-in protection on these (managed termination protection).
    pub protect: Vec<String>,
    /// Clear it on these.
    pub unprotect: Vec<String>,
    /// Set their container instances DRAINING, marked as drained for scale-in.
    pub drain: Vec<String>,
    /// Set back to ACTIVE (drained for scale-in, needed again).
    pub reactivate: Vec<String>,
    /// Terminate, decrementing the desired capacity (already done in `desired_capacity`).
    pub terminate: Vec<String>,
    /// Keep for the next pass.
    pub below_target_since: Option<f64>,
}

/// How many bins of `bin` hold `tasks` by first-fit decreasing (largest cpu + memory share
/// first), and how many tasks fit no bin at all.
pub fn instances_for(tasks: &[Resources], bin: Resources) -> (u32, u32) {
    let fits = |t: &Resources| t.cpu <= bin.cpu && t.memory_mib <= bin.memory_mib;
    let unplaceable = tasks.iter().filter(|t| !fits(t)).count() as u32;
    let mut sorted: Vec<&Resources> = tasks.iter().filter(|t| fits(t)).collect();
    let weight = |t: &Resources| {
        f64::from(t.cpu) / f64::from(bin.cpu.max(1))
            + f64::from(t.memory_mib) / f64::from(bin.memory_mib.max(1))
    };
    sorted.sort_by(|a, b| weight(b).total_cmp(&weight(a)));
    // Free (cpu, memory) per open bin.
    let mut bins: Vec<(u32, u32)> = vec![];
    for t in sorted {
        match bins.iter_mut().find(|(c, m)| *c >= t.cpu && *m >= t.memory_mib) {
            Some((c, m)) => {
                *c -= t.cpu;
                *m -= t.memory_mib;
            }
            None => bins.push((bin.cpu - t.cpu, bin.memory_mib - t.memory_mib)),
        }
    }
    (bins.len() as u32, unplaceable)
}

/// `(M, N, reservation, unplaceable)` (module docs).
pub fn reservation(input: &Input<'_>) -> (u32, u32, f64, u32) {
    let n = input.instances.iter().filter(|i| i.registered).count() as u32;
    let (new, unplaceable) = instances_for(input.provisioning, input.instance_capacity);
    let m = if new > 0 {
        n + new.max(1)
    } else {
        input.instances.iter().filter(|i| i.registered && i.tasks > 0).count() as u32
    };
    let r = match (n, m) {
        (0, 0) => 100.0,
        (0, _) => 200.0,
        _ => f64::from(m) * 100.0 / f64::from(n),
    };
    (m, n, r, unplaceable)
}

/// One pass (module docs).
pub fn decide(input: &Input<'_>) -> Decision {
    let s = input.settings;
    let target = s.target_capacity.clamp(1, 100);
    let (m, n, r, unplaceable) = reservation(input);
    let g = input.group;
    let mut d = Decision {
        running: n,
        needed: m,
        reservation: r,
        unplaceable_tasks: unplaceable,
        desired_capacity: bounded(g.desired_capacity, g.min_size, g.max_size),
        ..Default::default()
    };
    let wanted = if m == 0 { 0 } else { (m * 100).div_ceil(target) };
    let ours = |i: &InstanceView| i.registered && i.draining && i.drained_for_scale_in;
    let active = input.instances.iter().filter(|i| i.registered && !ours(i)).count() as u32;
    let warming = input
        .instances
        .iter()
        .filter(|i| {
            !i.registered && input.now - i.launched_at < f64::from(s.instance_warmup_period)
        })
        .count() as u32;
    let mut reactivated = BTreeSet::new();

    if wanted > active + warming {
        d.below_target_since = None;
        let mut short = wanted - active - warming;
        for i in input.instances.iter().filter(|i| ours(i)) {
            if short == 0 {
                break;
            }
            reactivated.insert(i.instance_id.clone());
            short -= 1;
        }
        if short > 0 {
            let step =
                short.clamp(s.minimum_scaling_step_size.max(1), s.maximum_scaling_step_size.max(1));
            d.desired_capacity = d.desired_capacity.saturating_add(step).min(g.max_size);
        }
    } else if r < f64::from(target) {
        let since = input.below_target_since.unwrap_or(input.now);
        d.below_target_since = Some(since);
        if input.now - since >= f64::from(s.scale_in_after_secs) {
            let keep = wanted.max(g.min_size);
            let excess = active.saturating_sub(keep) as usize;
            let mut candidates: Vec<(&InstanceView, Candidate)> = input
                .instances
                .iter()
                .filter(|i| i.registered && !i.draining)
                .filter(|i| {
                    if s.managed_termination_protection {
                        i.tasks == 0
                    } else {
                        !i.protected_from_scale_in
                    }
                })
                .map(|i| {
                    let c = Candidate {
                        instance_id: i.instance_id.clone(),
                        zone: i.zone.clone(),
                        template_version: i.template_version,
                        launched_at: i.launched_at,
                        protected: false,
                    };
                    (i, c)
                })
                .collect();
            // Emptiest first (all empty under managed termination protection); the
            // termination policy among the emptiest.
            let fewest = candidates.iter().map(|(i, _)| i.tasks).min().unwrap_or(0);
            candidates.retain(|(i, _)| i.tasks == fewest || s.managed_termination_protection);
            let cs: Vec<Candidate> = candidates.into_iter().map(|(_, c)| c).collect();
            d.drain = scale_in_choice(input.template_version, &cs, excess).0;
        }
    } else {
        d.below_target_since = None;
    }

    d.reactivate = reactivated.iter().cloned().collect();
    d.terminate = input
        .instances
        .iter()
        .filter(|i| ours(i) && i.tasks == 0 && !reactivated.contains(&i.instance_id))
        .map(|i| i.instance_id.clone())
        .collect();
    d.desired_capacity =
        d.desired_capacity.saturating_sub(d.terminate.len() as u32).max(g.min_size).min(g.max_size);
    if s.managed_termination_protection {
        for i in input.instances {
            let busy = i.tasks > 0;
            if busy && !i.protected_from_scale_in {
                d.protect.push(i.instance_id.clone());
            } else if !busy && i.protected_from_scale_in {
                d.unprotect.push(i.instance_id.clone());
            }
        }
    }
    d
}

#[cfg(test)]
mod tests;
