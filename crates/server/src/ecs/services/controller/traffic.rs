//! One service pass's traffic shifting (services whose `loadBalancers` have
//! `advancedConfiguration`; strategies `BLUE_GREEN`, `LINEAR`, `CANARY`), executing
//! `berth_controllers::traffic_shift::plan` (pure) against the ELBv2 listener rules.
//!
//! Level-triggered, from the service record and the tasks alone (a restart mid-deployment
//! resumes where the record says):
//! * the PRIMARY deployment's traffic record names its side (`alternate`: its tasks register
//!   in `alternateTargetGroupArn`, else in `targetGroupArn`); the other side is blue;
//! * a PRIMARY that is shifting (a traffic-shifting deployment that replaced a serving one,
//!   IN_PROGRESS) gets the plan's weights on the production listener rule (blue's group,
//!   green's group) and the test listener rule on green once the plan says so; blue's tasks
//!   are held (the pure service controller's `hold_old`) until `CLEAN_UP`;
//! * a FAILED PRIMARY that was shifting (circuit breaker without rollback, or
//!   StopServiceDeployment ABORT) keeps production on blue and blue's tasks;
//! * any other PRIMARY (the first deployment, a completed one, the target of a rollback)
//!   gets 100% of production and test traffic on its side: a rollback flips back;
//! * PAUSE lifecycle hooks: the plan's record (hook runs included) is stored on the PRIMARY;
//!   a hook holding the deployment before `SCALE_UP` holds the PRIMARY's launches
//!   (`hold_new`); a hook resolved `FAILED` or timed out with `ROLLBACK` makes the pass
//!   return [`TrafficPass::rollback`], which the executor applies as StopServiceDeployment's
//!   ROLLBACK does (production is already back on blue in this pass's rules);
//! * one minute of the strategy's bake times and hook timeouts is
//!   `Timing::deployment_minute_secs` seconds (60), or the service tag [`MINUTE_TAG`]'s value
//!   (Berth-only test knobs);
//! * both rules always forward to both groups (weight 0 for the side not served: the group
//!   stays in use, so green is health-checked before it takes traffic); a rule is written
//!   only when its groups or its split differ.

use berth_controllers::service::{TargetHealth, TaskView};
use berth_controllers::traffic_shift::{self, Observed, Stage, Strategy};
use berth_model::lifecycle::TaskStatus;
use berth_model::service::ServiceRecord;
use berth_model::service_shift::TrafficShiftRecord;
use berth_wire::AwsError;
use berth_wire::ecs::DeploymentLifecycleHookStatus as HookStatus;
use berth_wire::ecs::DeploymentRolloutState;

use super::super::load_balancers::LoadBalancing;

/// What the pass decided for the service's traffic.
pub(super) struct TrafficPass {
    /// Keep the old deployments' tasks (the controller's `hold_old`).
    pub(super) hold_old: bool,
    /// The PRIMARY's traffic record after this pass, if it changed.
    pub(super) primary: Option<TrafficShiftRecord>,
    /// Start no PRIMARY task (a PAUSE hook holds it before `SCALE_UP`).
    pub(super) hold_new: bool,
    /// Roll the PRIMARY back, for this reason (a PAUSE hook said so).
    pub(super) rollback: Option<String>,
}

/// The service tag that scales a deployment minute to that many seconds for this service
/// (a Berth-only test knob, like the server's `BERTH_DEPLOYMENT_MINUTE_SECS`).
pub const MINUTE_TAG: &str = "berth:deployment-minute-secs";

/// The service's [`MINUTE_TAG`], if it holds a positive number.
fn minute_tag(rec: &ServiceRecord) -> Option<f64> {
    rec.tags
        .iter()
        .find(|t| t.key.as_deref() == Some(MINUTE_TAG))
        .and_then(|t| t.value.as_deref()?.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// Whether `current` forwards to the groups of `want` (a group of weight 0 included: it
/// keeps the group in use, so the data plane health-checks green before it takes traffic)
/// and splits traffic as `want` does (by share of the total).
fn same_split(current: &[(String, u32)], want: &[(String, u32)]) -> bool {
    let set = |g: &[(String, u32)]| {
        g.iter().map(|x| x.0.clone()).collect::<std::collections::BTreeSet<String>>()
    };
    if set(current) != set(want) {
        return false;
    }
    let share = |groups: &[(String, u32)], arn: &str| {
        let total: u32 = groups.iter().map(|g| g.1).sum();
        let w: u32 = groups.iter().filter(|g| g.0 == arn).map(|g| g.1).sum();
        if total == 0 { 0.0 } else { f64::from(w) / f64::from(total) }
    };
    let arns: Vec<&str> = current.iter().chain(want).map(|g| g.0.as_str()).collect();
    arns.iter().all(|a| (share(current, a) - share(want, a)).abs() < 1e-9)
}

/// Plans and applies the service's traffic for this pass (see the module header).
pub(super) async fn traffic_pass(
    lb: &dyn LoadBalancing,
    rec: &ServiceRecord,
    tasks: &[TaskView],
    minute_secs: f64,
    now: f64,
    events: &mut Vec<String>,
) -> Result<TrafficPass, AwsError> {
    let none = TrafficPass { hold_old: false, primary: None, hold_new: false, rollback: None };
    let entries: Vec<(&str, &str, Option<&str>, Option<&str>)> = rec
        .service
        .load_balancers
        .iter()
        .flatten()
        .filter_map(|e| {
            let a = e.advanced_configuration.as_ref()?;
            Some((
                e.target_group_arn.as_deref()?,
                a.alternate_target_group_arn.as_deref()?,
                a.production_listener_rule.as_deref(),
                a.test_listener_rule.as_deref(),
            ))
        })
        .collect();
    let Some(primary) = rec.deployments.first() else { return Ok(none) };
    if entries.is_empty() {
        return Ok(none);
    }
    let record = primary.traffic.clone().unwrap_or_default();
    let green_alternate = record.alternate;
    let shifting = record.shifting && !primary.completed;
    // (blue %, green %), test rule on green, hold blue, hold green, the record after this pass.
    let mut rollback = None;
    let (production, test_on_green, hold, hold_new, after) = if !shifting {
        ((0, 100), true, false, false, record.clone())
    } else if primary.rollout_state == DeploymentRolloutState::Failed {
        ((100, 0), false, true, false, TrafficShiftRecord { stage: None, ..record.clone() })
    } else {
        let minute_secs = minute_tag(rec).unwrap_or(minute_secs);
        let (strategy, bake) = match &rec.settings.shift {
            Some(s) => Strategy::from_settings(s, minute_secs),
            None => (Strategy::BlueGreen, 0.0),
        };
        let green_healthy = tasks
            .iter()
            .filter(|t| t.deployment == primary.id)
            .filter(|t| t.last_status == TaskStatus::Running && t.desired_running)
            .filter(|t| t.target_health == Some(TargetHealth::Healthy))
            .count() as u32;
        let blue_tasks = tasks
            .iter()
            .filter(|t| t.deployment != primary.id && t.last_status != TaskStatus::Stopped)
            .count() as u32;
        let obs = Observed {
            green_healthy,
            desired: rec.settings.desired_count.max(0) as u32,
            blue_tasks,
            now,
        };
        let p = traffic_shift::plan(&strategy, bake, minute_secs, &record, obs);
        let stage = p.shift.stage;
        let after = p.record;
        let head = format!("(service {}) (deployment {})", rec.name, primary.id);
        if record.stage.as_deref() != after.stage.as_deref() && stage != Stage::Done {
            events.push(format!("{head} entered lifecycle stage {}.", stage.as_str()));
        }
        for run in &after.hook_runs {
            let was = record.hook_runs.iter().find(|x| x.hook_id == run.hook_id).map(|x| x.status);
            match (was, run.status) {
                (None, HookStatus::AwaitingAction) => events.push(format!(
                    "{head} paused at lifecycle stage {}{} by PAUSE hook {}: call ContinueServiceDeployment (CONTINUE or ROLLBACK) within {:.0} seconds, else {}.",
                    run.stage.as_str(),
                    match run.step {
                        0 => String::new(),
                        k => format!(" (after production step {k}, green at {}%)", p.shift.production.1),
                    },
                    run.hook_id,
                    (run.expires_at - now).max(0.0),
                    run.timeout_action.as_str()
                )),
                (Some(HookStatus::AwaitingAction), HookStatus::TimedOut) => events.push(format!(
                    "{head} PAUSE hook {} timed out at lifecycle stage {}: {}.",
                    run.hook_id,
                    run.stage.as_str(),
                    run.timeout_action.as_str()
                )),
                _ => {}
            }
        }
        if let Some(run) = &p.rollback {
            let why = if run.status == HookStatus::TimedOut {
                "timed out"
            } else {
                "was resolved with ROLLBACK"
            };
            rollback = Some(format!(
                "PAUSE hook {} at lifecycle stage {} {why}",
                run.hook_id,
                run.stage.as_str()
            ));
        }
        (p.shift.production, p.shift.test_on_green, p.hold_blue, p.hold_green, after)
    };
    for (tg, alt, prod, test) in entries {
        let (green_tg, blue_tg) = if green_alternate { (alt, tg) } else { (tg, alt) };
        let split = |blue: u32, green: u32| {
            // The primary group first, as users write the rule.
            let mut v = vec![(blue_tg.to_string(), blue), (green_tg.to_string(), green)];
            if green_tg == tg {
                v.reverse();
            }
            v
        };
        let want_prod = split(production.0, production.1);
        let want_test = if test_on_green { split(0, 100) } else { split(100, 0) };
        for (rule, want, what) in [(prod, want_prod, "production"), (test, want_test, "test")] {
            let Some(rule) = rule.filter(|r| !r.is_empty()) else { continue };
            let Some(current) = lb.forward_groups(rule).await? else { continue };
            if same_split(&current, &want) {
                continue;
            }
            if lb.set_forward_groups(rule, want.clone()).await? {
                let green = want.iter().find(|g| g.0 == green_tg).map_or(0, |g| g.1);
                events.push(format!(
                    "(service {}) (deployment {}) {what} traffic: {green}% to (target-group {green_tg}), {}% to (target-group {blue_tg}) on (listener-rule {rule}).",
                    rec.name,
                    primary.id,
                    100 - green
                ));
            }
        }
    }
    let changed = primary.traffic.as_ref() != Some(&after);
    Ok(TrafficPass { hold_old: hold, primary: changed.then_some(after), hold_new, rollback })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_compare_by_share() {
        let v = |a: u32, b: u32| vec![("a".to_string(), a), ("b".to_string(), b)];
        let cases = [
            ("single group, weight 1", vec![("a".to_string(), 1)], v(100, 0), false),
            ("same shares", v(1, 1), v(50, 50), true),
            ("different", v(90, 10), v(80, 20), false),
            ("flipped", vec![("a".to_string(), 1)], v(0, 100), false),
        ];
        for (case, current, want, same) in cases {
            assert_eq!(same_split(&current, &want), same, "{case}");
        }
    }
}
