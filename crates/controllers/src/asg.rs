//! An Auto Scaling group's reconciliation as a pure decision: the group's settings and its
//! member instances in, the instances to launch and terminate out. The server carries the
//! decision out (RunInstances-style launches of the launch template into the chosen subnets,
//! TerminateInstances) and runs it again on its next pass: level-triggered, so a lost
//! wake-up or a restart only delays convergence.
//!
//! # Rules (EC2 Auto Scaling's user guide: "Set capacity limits", "Availability Zone
//! balancing", "Health checks", "Termination policies", "Instance scale-in protection")
//!
//! * **Bounds.** The capacity the group keeps is its desired capacity within
//!   `[min_size, max_size]` ([`Decision::desired_capacity`]; the API refuses a desired
//!   capacity outside, the controller clamps anyway).
//! * **Counted members** are the healthy instances that are pending or in service; members
//!   already terminating are not counted (their replacements launch at once, as EC2 Auto
//!   Scaling does).
//! * **Health.** An unhealthy member (its instance stopped, terminated outside the group, or
//!   impaired) is terminated and replaced, protected or not (scale-in protection does not
//!   cover health replacement).
//! * **Launches** go one at a time to the group's zone with the fewest counted members
//!   (ties: the zone of the earliest subnet in the group's list), and within the zone to the
//!   subnet with the fewest (ties: list order): AZ balancing.
//! * **Scale-in** (the Default termination policy, simplified as documented): repeatedly,
//!   among members not protected from scale-in, keep those in the zones with the most
//!   counted members (protected ones count towards their zone; tied zones are pooled), then
//!   take the member launched from a launch template version other than the group's, the
//!   oldest version first, then the oldest launch (EC2's "closest to the next billing hour"
//!   is simplified to oldest), then the lowest id. **A protected member is never
//!   chosen**; what protection leaves in excess is reported
//!   ([`Decision::blocked_by_protection`]), not forced.
//! * Not modelled: AZ rebalancing of an already unbalanced group (only new launches and
//!   scale-in choices balance it), warm pools, lifecycle hooks (managed scaling drains
//!   through the container instance instead, [`crate::managed_scaling`]), mixed instance
//!   policies.

use std::collections::BTreeMap;

/// One of the group's subnets (`VPCZoneIdentifier`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub subnet_id: String,
    pub zone: String,
}

/// What the group is asked to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    /// In the order given; at least one (the API requires it).
    pub subnets: Vec<Subnet>,
    /// The launch template version new members get (its image, type and UserData are the
    /// executor's business).
    pub template_version: u64,
    /// `NewInstancesProtectedFromScaleIn`.
    pub new_instances_protected_from_scale_in: bool,
}

/// Where a member is in the group's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Pending,
    InService,
    /// Being terminated (by this controller or by TerminateInstanceInAutoScalingGroup).
    Terminating,
}

/// One member instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub instance_id: String,
    pub zone: String,
    pub subnet_id: String,
    pub lifecycle: Lifecycle,
    pub healthy: bool,
    pub template_version: u64,
    /// Epoch seconds.
    pub launched_at: f64,
    pub protected_from_scale_in: bool,
}

/// A new member to launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub subnet_id: String,
    pub zone: String,
    pub protected_from_scale_in: bool,
}

/// Why a member is terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Unhealthy,
    ScaleIn,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The desired capacity within the group's bounds.
    pub desired_capacity: u32,
    pub launches: Vec<Launch>,
    /// In the order chosen.
    pub terminations: Vec<(String, Reason)>,
    /// Members that scale-in would remove but that are protected.
    pub blocked_by_protection: u32,
}

/// `desired` within `[min, max]` (`max` wins should `min` exceed it).
pub fn bounded(desired: u32, min: u32, max: u32) -> u32 {
    desired.max(min).min(max)
}

/// The group's decision (see the module docs).
pub fn reconcile(config: &GroupConfig, members: &[Member]) -> Decision {
    let desired = bounded(config.desired_capacity, config.min_size, config.max_size);
    let mut decision = Decision { desired_capacity: desired, ..Default::default() };
    let live: Vec<&Member> =
        members.iter().filter(|m| m.lifecycle != Lifecycle::Terminating).collect();
    for m in live.iter().filter(|m| !m.healthy) {
        decision.terminations.push((m.instance_id.clone(), Reason::Unhealthy));
    }
    let counted: Vec<&Member> = live.into_iter().filter(|m| m.healthy).collect();
    let n = counted.len() as u32;
    if n < desired {
        decision.launches = launches(config, &counted, desired - n);
    } else if n > desired {
        let (chosen, blocked) = scale_in_choice(
            config.template_version,
            &counted.iter().map(|m| Candidate::of(m)).collect::<Vec<_>>(),
            (n - desired) as usize,
        );
        decision.terminations.extend(chosen.into_iter().map(|id| (id, Reason::ScaleIn)));
        decision.blocked_by_protection = blocked as u32;
    }
    decision
}

/// `count` launches balanced over the group's zones and subnets.
fn launches(config: &GroupConfig, counted: &[&Member], count: u32) -> Vec<Launch> {
    // Zones and subnets in the group's order, with their counted members.
    let mut zones: Vec<(&str, usize)> = vec![];
    let mut subnets: Vec<(&Subnet, usize)> = vec![];
    for s in &config.subnets {
        if !zones.iter().any(|(z, _)| *z == s.zone) {
            let n = counted.iter().filter(|m| m.zone == s.zone).count();
            zones.push((&s.zone, n));
        }
        let n = counted.iter().filter(|m| m.subnet_id == s.subnet_id).count();
        subnets.push((s, n));
    }
    let mut out = vec![];
    for _ in 0..count {
        // min_by_key keeps the first of equals: list order breaks ties.
        let Some(zi) = (0..zones.len()).min_by_key(|&i| zones[i].1) else { break };
        let zone = zones[zi].0;
        let si = (0..subnets.len())
            .filter(|&i| subnets[i].0.zone == zone)
            .min_by_key(|&i| subnets[i].1)
            .expect("every zone comes from a subnet");
        zones[zi].1 += 1;
        subnets[si].1 += 1;
        out.push(Launch {
            subnet_id: subnets[si].0.subnet_id.clone(),
            zone: zone.to_string(),
            protected_from_scale_in: config.new_instances_protected_from_scale_in,
        });
    }
    out
}

/// What the termination policy looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub instance_id: String,
    pub zone: String,
    pub template_version: u64,
    pub launched_at: f64,
    /// Never chosen.
    pub protected: bool,
}

impl Candidate {
    fn of(m: &Member) -> Self {
        Self {
            instance_id: m.instance_id.clone(),
            zone: m.zone.clone(),
            template_version: m.template_version,
            launched_at: m.launched_at,
            protected: m.protected_from_scale_in,
        }
    }
}

/// Up to `count` of `members` to remove by the Default termination policy (module docs);
/// protected ones are never chosen. Returns the chosen ids in order and how many more were
/// wanted but protected. `current_version` is the group's launch template version (members
/// of other versions go first, the oldest first).
pub fn scale_in_choice(
    current_version: u64,
    members: &[Candidate],
    count: usize,
) -> (Vec<String>, usize) {
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for m in members {
        *per_zone.entry(&m.zone).or_default() += 1;
    }
    let mut left: Vec<&Candidate> = members.iter().filter(|m| !m.protected).collect();
    let mut chosen = vec![];
    while chosen.len() < count && !left.is_empty() {
        // The zones with the most members that still have a candidate, pooled.
        let most = left.iter().map(|m| per_zone[m.zone.as_str()]).max().expect("not empty");
        let (i, _) = left
            .iter()
            .enumerate()
            .filter(|(_, m)| per_zone[m.zone.as_str()] == most)
            .min_by(|(_, a), (_, b)| {
                let stale = |m: &Candidate| m.template_version == current_version;
                stale(a)
                    .cmp(&stale(b))
                    .then(a.template_version.cmp(&b.template_version))
                    .then(a.launched_at.total_cmp(&b.launched_at))
                    .then(a.instance_id.cmp(&b.instance_id))
            })
            .expect("a zone with the most has a candidate");
        let m = left.remove(i);
        *per_zone.get_mut(m.zone.as_str()).expect("counted") -= 1;
        chosen.push(m.instance_id.clone());
    }
    let blocked = count - chosen.len();
    (chosen, blocked)
}

#[cfg(test)]
mod tests;
