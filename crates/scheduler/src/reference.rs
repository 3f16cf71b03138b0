//! The placement rules written as plainly as possible: every task scans every instance,
//! computes every key from scratch, and takes the smallest. Slow (O(instances x strategies)
//! per task) and obviously right; the property tests check that [`crate::ClusterState`]'s
//! indexed paths give exactly the same plans. Not for production use.

use std::collections::HashSet;

use crate::rules::{Needs, constraint_refusal, consume_snapshot, random_key, resource_refusal};
use crate::{
    BinpackField, InstanceSnapshot, InstanceStatus, MAX_STRATEGIES, Placement, PlacementError,
    PlacementFailure, PlacementRequest, Plan, SpreadField, Strategy,
};

/// Same contract as [`crate::place`].
pub fn place(
    instances: &[InstanceSnapshot],
    req: &PlacementRequest,
) -> Result<Plan, PlacementError> {
    let mut slots = instances.to_vec();
    if !slots.iter().any(|s| s.status == InstanceStatus::Active) {
        return Err(PlacementError::NoContainerInstances);
    }
    let needs = Needs::new(&req.requirements);
    let group = req.group.as_str();
    let strategies = &req.strategies[..req.strategies.len().min(MAX_STRATEGIES)];
    let refusal = |s: &InstanceSnapshot| {
        resource_refusal(s, &needs)
            .or_else(|| req.constraints.iter().find_map(|c| constraint_refusal(s, c, group)))
    };
    let mut plan = Plan::default();
    for ti in 0..req.count {
        let mut best: Option<(Vec<i64>, usize)> = None;
        for (i, s) in slots.iter().enumerate() {
            if s.status != InstanceStatus::Active || refusal(s).is_some() {
                continue;
            }
            let key: Vec<i64> = strategies
                .iter()
                .map(|st| match st {
                    Strategy::Binpack(BinpackField::Cpu) => s.remaining.cpu,
                    Strategy::Binpack(BinpackField::Memory) => s.remaining.memory_mib,
                    Strategy::Spread(SpreadField::InstanceId) => {
                        i64::from(s.task_groups.get(group).copied().unwrap_or(0))
                    }
                    Strategy::Spread(SpreadField::Attribute(name)) => {
                        let mine = s.attributes.get(name).and_then(|v| v.as_deref());
                        slots
                            .iter()
                            .filter(|o| o.attributes.get(name).and_then(|v| v.as_deref()) == mine)
                            .map(|o| i64::from(o.task_groups.get(group).copied().unwrap_or(0)))
                            .sum()
                    }
                    Strategy::Random => random_key(req.seed, ti, i as u32),
                })
                .collect();
            if best.as_ref().is_none_or(|(bk, bi)| (&key, i) < (bk, *bi)) {
                best = Some((key, i));
            }
        }
        match best {
            Some((_, i)) => {
                consume_snapshot(&mut slots[i], &needs, group);
                plan.placements
                    .push(Placement { instance_arn: slots[i].arn.clone(), task_index: ti });
            }
            None => {
                let mut seen = HashSet::new();
                for s in slots.iter().filter(|s| s.status == InstanceStatus::Active) {
                    if let Some(why) = refusal(s)
                        && seen.insert((s.arn.clone(), why))
                    {
                        plan.failures.push(PlacementFailure {
                            arn: Some(s.arn.clone()),
                            reason: why.into(),
                        });
                    }
                }
                plan.unplaced = req.count - ti;
                break;
            }
        }
    }
    Ok(plan)
}
