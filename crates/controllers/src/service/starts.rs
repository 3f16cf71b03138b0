//! Stage 3 of a pass: the PRIMARY tasks to start. Replica services start up to `D` PRIMARY
//! tasks (counting the PRIMARY tasks kept, not those on DRAINING instances) and never push the
//! tasks occupying a place above the maximum; DAEMON services start one task on each eligible
//! instance that has no task of the service left. Nothing starts while the service is being
//! deleted, after the PRIMARY deployment FAILED, before its launch delay has passed, or while
//! a PAUSE hook holds it before `SCALE_UP` (`Config::hold_new`). With
//! a capacity provider strategy the replica starts are one [`Start`] per provider that gets
//! tasks, split from the PRIMARY tasks each provider keeps.

use std::collections::BTreeSet;

use berth_wire::ecs::DeploymentRolloutState;

use super::stops::Stops;
use super::{Decision, Pass, Start};

/// Stage 3: adds the starts, given the PRIMARY tasks stage 2 left running.
pub(super) fn decide_starts(pass: &Pass<'_>, stops: &Stops, d: &mut Decision) {
    let primary_kept = stops.primary_kept;
    let cfg = pass.input.config;
    let now = pass.input.now;
    let primary_open = d.deployments[0].rollout_state != DeploymentRolloutState::Failed
        && now >= d.deployments[0].next_launch_at
        && !cfg.hold_new;
    let total = pass.occupying.len() as i32;
    if primary_open && !cfg.deleting {
        if cfg.settings.daemon {
            // One per eligible instance that has no task of the service left at all.
            let occupied: BTreeSet<&str> =
                pass.occupying.iter().map(|t| t.instance_id.as_str()).collect();
            for inst in &pass.eligible {
                if !occupied.contains(inst) {
                    d.start.push(Start {
                        deployment: pass.primary_id.clone(),
                        count: 1,
                        instance: Some((*inst).to_string()),
                        capacity_provider: None,
                    });
                }
            }
        } else {
            let want = pass.desired - primary_kept as i32;
            let room = pass.max_tasks - total;
            let n = want.min(room);
            if n > 0 && pass.shares.is_empty() {
                d.start.push(Start {
                    deployment: pass.primary_id.clone(),
                    count: n as u32,
                    instance: None,
                    capacity_provider: None,
                });
            } else if n > 0 {
                // Split across the strategy from what each provider runs now.
                let per = berth_scheduler::capacity::launches(
                    &pass.shares,
                    &stops.kept_per_provider,
                    n as u32,
                );
                for (share, count) in pass.shares.iter().zip(per) {
                    if count > 0 {
                        d.start.push(Start {
                            deployment: pass.primary_id.clone(),
                            count,
                            instance: None,
                            capacity_provider: Some(share.capacity_provider.clone()),
                        });
                    }
                }
            }
        }
    }
}
