//! Traffic-shifting deployments (ECS's `deploymentConfiguration.strategy` `BLUE_GREEN`,
//! `LINEAR`, `CANARY`): which lifecycle stage a deployment is in, what weights the
//! production listener rule's forward action gives the blue (old) and green (new) target
//! groups, and where PAUSE lifecycle hooks hold it. Pure: the clock and every observation
//! come in through [`plan`]'s [`Observed`] and the deployment's record; the server
//! (`server/src/ecs/services/controller/traffic.rs`) applies the weights to the production
//! and test listener rules, holds the blue tasks until `CLEAN_UP` (and the green ones before
//! `SCALE_UP` while a hook holds there), stores the record the plan returns, and rolls back
//! when the plan says so.
//!
//! Stages, in ECS's order (`ServiceDeploymentLifecycleStage`), each hook point in brackets
//! (`DeploymentLifecycleHookStage`): [`RECONCILE_SERVICE`, only when the deployment started
//! with more than one revision ACTIVE] [`PRE_SCALE_UP`], `SCALE_UP` (green tasks start
//! behind the alternate target group) until green is healthy at full size (latched),
//! [`POST_SCALE_UP`] [`TEST_TRAFFIC_SHIFT`], then the test listener rule points at green
//! [`POST_TEST_TRAFFIC_SHIFT`] [`PRE_PRODUCTION_TRAFFIC_SHIFT`] [`PRODUCTION_TRAFFIC_SHIFT`];
//! then `PRODUCTION_TRAFFIC_SHIFT` proper, from the pass that passes the last of those points:
//! * `BLUE_GREEN`: green takes 100% at once;
//! * `LINEAR { step, step_bake }`: green takes `step`% more every `step_bake` seconds
//!   (`step`, `2 x step`, ... capped at 100);
//! * `CANARY { percent, bake }`: green takes `percent`% for `bake` seconds, then 100%;
//!
//! with, under `LINEAR` and `CANARY`, the `PRODUCTION_TRAFFIC_SHIFT` hooks held again before
//! every later step (ECS invokes that stage's hooks at each production step): a step is
//! taken when it is due and its runs are resolved, and the next step's wait counts from then;
//!
//! then [`POST_PRODUCTION_TRAFFIC_SHIFT`], `BAKE_TIME` for `bake_time` seconds from when
//! production reached 100% or that hook was resolved, whichever is later (blue kept for a
//! rollback), then `CLEAN_UP` (blue scaled in).
//!
//! PAUSE hooks: at a hook point, every hook of the deployment naming that stage gets a run
//! ([`HookRun`], `AWAITING_ACTION`, expiring `timeoutInMinutes` later), entered in the pass
//! that reaches the point; the deployment stays there, production and test traffic as they
//! are at that point, until every run is resolved: `SUCCEEDED` (ContinueServiceDeployment
//! CONTINUE) or `TIMED_OUT` with action `CONTINUE` passes; `FAILED` (ROLLBACK) or `TIMED_OUT`
//! with `ROLLBACK` makes the plan ask for a rollback, with 100% of production on blue at once.
//! A run times out in the first pass at or after `expiresAt`, and counts as resolved at
//! `expiresAt`. Each hook point is passed once per deployment, and `PRODUCTION_TRAFFIC_SHIFT`
//! once more per later production step ([`HookRun::step`]).
//! Weights are integers 0-100 that always sum to 100 (ELB's weights are 0-999 per group; the
//! rule gets these as they are).

use berth_model::service_shift::{HookRun, ShiftSettings, TrafficShiftRecord};
use berth_wire::ecs::DeploymentLifecycleHookAction as Action;
use berth_wire::ecs::DeploymentLifecycleHookStage as HookStage;
use berth_wire::ecs::DeploymentLifecycleHookStatus as HookStatus;
use berth_wire::ecs::DeploymentStrategy;

/// A traffic-shifting strategy and its timings, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    BlueGreen,
    /// `linearConfiguration`: `step_percent` (ECS: 3.0-100.0), `step_bake_secs`.
    Linear {
        step_percent: f64,
        step_bake_secs: f64,
    },
    /// `canaryConfiguration`: `canary_percent` (ECS: 0.1-100.0), `canary_bake_secs`.
    Canary {
        canary_percent: f64,
        canary_bake_secs: f64,
    },
}

/// ECS's lifecycle stages of a traffic-shifting deployment, as DescribeServiceDeployments
/// names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    ReconcileService,
    PreScaleUp,
    ScaleUp,
    PostScaleUp,
    TestTrafficShift,
    PostTestTrafficShift,
    ProductionTrafficShift,
    PostProductionTrafficShift,
    BakeTime,
    CleanUp,
    /// Finished: blue is gone, green serves everything.
    Done,
}

impl Stage {
    /// The wire name (`ServiceDeploymentLifecycleStage`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ReconcileService => "RECONCILE_SERVICE",
            Stage::PreScaleUp => "PRE_SCALE_UP",
            Stage::ScaleUp => "SCALE_UP",
            Stage::PostScaleUp => "POST_SCALE_UP",
            Stage::TestTrafficShift => "TEST_TRAFFIC_SHIFT",
            Stage::PostTestTrafficShift => "POST_TEST_TRAFFIC_SHIFT",
            Stage::ProductionTrafficShift => "PRODUCTION_TRAFFIC_SHIFT",
            Stage::PostProductionTrafficShift => "POST_PRODUCTION_TRAFFIC_SHIFT",
            Stage::BakeTime => "BAKE_TIME",
            Stage::CleanUp | Stage::Done => "CLEAN_UP",
        }
    }
}

/// One pass's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Shift {
    pub stage: Stage,
    /// Production rule's weights: (blue, green), summing to 100.
    pub production: (u32, u32),
    /// The test rule forwards to green.
    pub test_on_green: bool,
    /// A PAUSE hook holds the deployment here.
    pub paused: bool,
    /// When the next time-based change is due (a step, the end of a bake, the earliest
    /// expiry of the hooks holding the deployment), if any.
    pub next_change_at: Option<f64>,
}

/// How many production steps `strategy` takes to put 100% on green: 1 for `BLUE_GREEN` (and
/// a 100% step or canary), `ceil(100 / step)` for `LINEAR`, 2 for `CANARY`.
pub fn steps(strategy: &Strategy) -> u32 {
    match strategy {
        Strategy::BlueGreen => 1,
        Strategy::Linear { step_percent, .. } => {
            (100.0 / step_percent.clamp(1.0, 100.0)).ceil() as u32
        }
        Strategy::Canary { canary_percent, .. } => {
            if *canary_percent >= 100.0 {
                1
            } else {
                2
            }
        }
    }
}

/// Green's production percentage once step `k` (1-based) is taken.
pub fn step_green(strategy: &Strategy, k: u32) -> u32 {
    if k >= steps(strategy) {
        return 100;
    }
    match strategy {
        Strategy::BlueGreen => 100,
        Strategy::Linear { step_percent, .. } => {
            (f64::from(k) * step_percent.clamp(1.0, 100.0)).min(100.0).round() as u32
        }
        Strategy::Canary { canary_percent, .. } => canary_percent.clamp(0.0, 100.0).round() as u32,
    }
}

/// Seconds a step holds before the next one is due.
fn step_bake(strategy: &Strategy) -> f64 {
    match strategy {
        Strategy::BlueGreen => 0.0,
        Strategy::Linear { step_bake_secs, .. } => step_bake_secs.max(0.0),
        Strategy::Canary { canary_bake_secs, .. } => canary_bake_secs.max(0.0),
    }
}

/// Green's production percentage `elapsed` seconds into a production shift no hook holds,
/// and when it next changes (seconds from the shift's start).
pub fn green_percent(strategy: &Strategy, elapsed: f64) -> (u32, Option<f64>) {
    let (n, bake) = (steps(strategy), step_bake(strategy));
    let k = if bake == 0.0 { n } else { ((elapsed / bake).floor() as u32 + 1).min(n) };
    (step_green(strategy, k), (k < n).then(|| f64::from(k) * bake))
}

/// How long a production shift no hook holds takes to reach 100% green.
pub fn shift_duration(strategy: &Strategy) -> f64 {
    f64::from(steps(strategy) - 1) * step_bake(strategy)
}

impl Strategy {
    /// The strategy `s` describes, with each minute `minute_secs` seconds long (60, or
    /// Berth's test knob); also returns `bakeTimeInMinutes` in seconds.
    pub fn from_settings(s: &ShiftSettings, minute_secs: f64) -> (Strategy, f64) {
        let secs = |m: i32| f64::from(m.max(0)) * minute_secs;
        let strategy = match s.strategy {
            DeploymentStrategy::Linear => Strategy::Linear {
                step_percent: f64::from(s.step_percent_tenths) / 10.0,
                step_bake_secs: secs(s.step_bake_minutes),
            },
            DeploymentStrategy::Canary => Strategy::Canary {
                canary_percent: f64::from(s.canary_percent_tenths) / 10.0,
                canary_bake_secs: secs(s.canary_bake_minutes),
            },
            _ => Strategy::BlueGreen,
        };
        (strategy, secs(s.bake_time_minutes))
    }
}

/// What one pass sees of a traffic-shifting deployment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed {
    /// Green (PRIMARY) tasks RUNNING and healthy in every green target group.
    pub green_healthy: u32,
    /// The service's desired count.
    pub desired: u32,
    /// Tasks of the other deployments not STOPPED yet.
    pub blue_tasks: u32,
    pub now: f64,
}

/// One pass's plan for a traffic-shifting deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub shift: Shift,
    /// The deployment's record after this pass (stage, readiness, production start, hook
    /// runs).
    pub record: TrafficShiftRecord,
    /// Keep the blue tasks (the stage is before `CLEAN_UP`).
    pub hold_blue: bool,
    /// Start no green task (a hook holds the deployment before `SCALE_UP`).
    pub hold_green: bool,
    /// Roll the deployment back: this hook run was resolved `FAILED` or timed out with
    /// action `ROLLBACK`.
    pub rollback: Option<HookRun>,
}

/// What the hooks at one point say.
enum Gate {
    Open,
    /// Held until at least this time (the earliest expiry of the runs awaiting action).
    Paused(f64),
    Rollback(HookRun),
}

/// Enters, times out and reads the runs of `r`'s hooks at `stage` after `step` production
/// steps (see the module header).
fn gate(
    r: &mut TrafficShiftRecord,
    stage: HookStage,
    step: u32,
    now: f64,
    minute_secs: f64,
) -> Gate {
    let mut paused: Option<f64> = None;
    let mut rollback = None;
    let hooks = r.hooks.clone();
    for (i, h) in hooks.iter().enumerate() {
        if !h.stages.contains(&stage) {
            continue;
        }
        let pos = match r
            .hook_runs
            .iter()
            .position(|x| x.hook == i && x.stage == stage && x.step == step)
        {
            Some(p) => p,
            None => {
                let run = HookRun {
                    hook_id: r.hook_id(i, stage, step),
                    hook: i,
                    stage,
                    step,
                    status: HookStatus::AwaitingAction,
                    entered_at: now,
                    expires_at: now + f64::from(h.timeout_minutes.max(1)) * minute_secs,
                    timeout_action: h.timeout_action,
                    resolved_at: None,
                };
                r.hook_runs.push(run);
                r.hook_runs.len() - 1
            }
        };
        let run = &mut r.hook_runs[pos];
        if run.status == HookStatus::AwaitingAction && now >= run.expires_at {
            run.status = HookStatus::TimedOut;
            run.resolved_at = Some(run.expires_at);
        }
        match (run.status, run.timeout_action) {
            (HookStatus::AwaitingAction | HookStatus::InProgress, _) => {
                paused = Some(paused.map_or(run.expires_at, |p: f64| p.min(run.expires_at)));
            }
            (HookStatus::Succeeded, _) | (HookStatus::TimedOut, Action::Continue) => {}
            (HookStatus::Failed, _) | (HookStatus::TimedOut, Action::Rollback) => {
                rollback.get_or_insert_with(|| run.clone());
            }
        }
    }
    match (rollback, paused) {
        (Some(run), _) => Gate::Rollback(run),
        (None, Some(until)) => Gate::Paused(until),
        (None, None) => Gate::Open,
    }
}

/// The pass's plan (see the module header) for the deployment recorded as `rec` under
/// `strategy`, with `bake_secs` of `bakeTimeInMinutes` and hook timeouts counted in minutes
/// of `minute_secs` seconds: green is ready once it first runs its full count healthy
/// (latched: a green task replaced later does not take traffic back); production starts
/// shifting in the pass that passes the last hook point before it (so the weights of the
/// first step apply at once); blue is held until `CLEAN_UP`.
pub fn plan(
    strategy: &Strategy,
    bake_secs: f64,
    minute_secs: f64,
    rec: &TrafficShiftRecord,
    obs: Observed,
) -> Plan {
    let now = obs.now;
    let mut r = rec.clone();
    let shift = |stage, production, test_on_green| Shift {
        stage,
        production,
        test_on_green,
        paused: false,
        next_change_at: None,
    };
    let finish = |mut r: TrafficShiftRecord, shift: Shift, hold_green, rollback| {
        r.stage = Some(shift.stage.as_str().to_string());
        Plan { hold_blue: shift.stage < Stage::CleanUp, shift, record: r, hold_green, rollback }
    };
    // Hook points before production shifts: (applies, hook stage, stage shown, test rule on
    // green, green launches held).
    let before_production = [
        (r.reconcile, HookStage::ReconcileService, Stage::ReconcileService, false, true),
        (true, HookStage::PreScaleUp, Stage::PreScaleUp, false, true),
        (true, HookStage::PostScaleUp, Stage::PostScaleUp, false, false),
        (true, HookStage::TestTrafficShift, Stage::TestTrafficShift, false, false),
        (true, HookStage::PostTestTrafficShift, Stage::PostTestTrafficShift, true, false),
        (true, HookStage::PreProductionTrafficShift, Stage::ProductionTrafficShift, true, false),
        (true, HookStage::ProductionTrafficShift, Stage::ProductionTrafficShift, true, false),
    ];
    for (applies, hook_stage, stage, test_on_green, hold_green) in before_production {
        if !applies {
            continue;
        }
        if hook_stage == HookStage::PostScaleUp {
            // SCALE_UP lies between PRE_SCALE_UP and POST_SCALE_UP.
            if r.green_ready_at.is_none() && obs.green_healthy >= obs.desired {
                r.green_ready_at = Some(now);
            }
            if r.green_ready_at.is_none() {
                return finish(r, shift(Stage::ScaleUp, (100, 0), false), false, None);
            }
        }
        match gate(&mut r, hook_stage, 0, now, minute_secs) {
            Gate::Open => {}
            Gate::Paused(until) => {
                let s = Shift {
                    paused: true,
                    next_change_at: Some(until),
                    ..shift(stage, (100, 0), test_on_green)
                };
                return finish(r, s, hold_green, None);
            }
            Gate::Rollback(run) => {
                return finish(r, shift(stage, (100, 0), false), hold_green, Some(run));
            }
        }
    }
    // Step 1 is taken in the pass that passes the hook points above; each later step when
    // it is due (`step_bake` after the one before) and its PRODUCTION_TRAFFIC_SHIFT runs
    // are resolved.
    let started = *r.production_shift_started.get_or_insert(now);
    let weights = |k| {
        let green = step_green(strategy, k);
        (100 - green, green)
    };
    let (mut step, mut taken_at) = (1, started);
    while step < steps(strategy) {
        let due = taken_at + step_bake(strategy);
        let at_step = shift(Stage::ProductionTrafficShift, weights(step), true);
        if now < due {
            return finish(r, Shift { next_change_at: Some(due), ..at_step }, false, None);
        }
        match gate(&mut r, HookStage::ProductionTrafficShift, step, now, minute_secs) {
            Gate::Open => {
                taken_at = r
                    .hook_runs
                    .iter()
                    .filter(|x| x.stage == HookStage::ProductionTrafficShift && x.step == step)
                    .filter_map(|x| x.resolved_at)
                    .fold(due, f64::max);
                step += 1;
            }
            Gate::Paused(until) => {
                let s = Shift { paused: true, next_change_at: Some(until), ..at_step };
                return finish(r, s, false, None);
            }
            Gate::Rollback(run) => {
                let s = shift(Stage::ProductionTrafficShift, (100, 0), false);
                return finish(r, s, false, Some(run));
            }
        }
    }
    match gate(&mut r, HookStage::PostProductionTrafficShift, 0, now, minute_secs) {
        Gate::Open => {}
        Gate::Paused(until) => {
            let s = Shift {
                paused: true,
                next_change_at: Some(until),
                ..shift(Stage::PostProductionTrafficShift, (0, 100), true)
            };
            return finish(r, s, false, None);
        }
        Gate::Rollback(run) => {
            let s = shift(Stage::PostProductionTrafficShift, (100, 0), false);
            return finish(r, s, false, Some(run));
        }
    }
    // 100% on green since `taken_at`; the bake starts once the hooks there are resolved.
    let bake_from = r
        .hook_runs
        .iter()
        .filter(|x| x.stage == HookStage::PostProductionTrafficShift)
        .filter_map(|x| x.resolved_at)
        .fold(taken_at, f64::max);
    if now < bake_from + bake_secs {
        let s = Shift {
            next_change_at: Some(bake_from + bake_secs),
            ..shift(Stage::BakeTime, (0, 100), true)
        };
        return finish(r, s, false, None);
    }
    let stage = if obs.blue_tasks == 0 { Stage::Done } else { Stage::CleanUp };
    finish(r, shift(stage, (0, 100), true), false, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_weights_follow_the_strategy() {
        let linear = Strategy::Linear { step_percent: 25.0, step_bake_secs: 60.0 };
        let odd = Strategy::Linear { step_percent: 30.0, step_bake_secs: 10.0 };
        let canary = Strategy::Canary { canary_percent: 10.0, canary_bake_secs: 300.0 };
        // (strategy, seconds into the shift, green %, next change at)
        let cases = [
            (&Strategy::BlueGreen, 0.0, 100, None),
            (&linear, 0.0, 25, Some(60.0)),
            (&linear, 59.9, 25, Some(60.0)),
            (&linear, 60.0, 50, Some(120.0)),
            (&linear, 150.0, 75, Some(180.0)),
            (&linear, 180.0, 100, None),
            (&linear, 9999.0, 100, None),
            (&odd, 0.0, 30, Some(10.0)),
            (&odd, 20.0, 90, Some(30.0)),
            (&odd, 30.0, 100, None),
            (&canary, 0.0, 10, Some(300.0)),
            (&canary, 299.0, 10, Some(300.0)),
            (&canary, 300.0, 100, None),
        ];
        for (s, t, green, next) in cases {
            assert_eq!(green_percent(s, t), (green, next), "{s:?} at {t}");
        }
        assert_eq!(shift_duration(&linear), 180.0);
        assert_eq!(shift_duration(&odd), 30.0);
        assert_eq!(shift_duration(&canary), 300.0);
    }

    fn record(ready: Option<f64>, started: Option<f64>) -> TrafficShiftRecord {
        TrafficShiftRecord {
            green_ready_at: ready,
            production_shift_started: started,
            shifting: true,
            ..Default::default()
        }
    }

    fn obs(green: u32, blue: u32, now: f64) -> Observed {
        Observed { green_healthy: green, desired: 2, blue_tasks: blue, now }
    }

    #[test]
    fn a_pass_plans_from_what_it_sees() {
        let linear = Strategy::Linear { step_percent: 50.0, step_bake_secs: 10.0 };
        let canary = Strategy::Canary { canary_percent: 20.0, canary_bake_secs: 60.0 };
        // (case, strategy, recorded, observed, stage, (blue, green), hold blue,
        //  (ready, started) after)
        let cases = [
            (
                "green starting",
                &linear,
                record(None, None),
                obs(1, 2, 100.0),
                Stage::ScaleUp,
                (100, 0),
                true,
                (None, None),
            ),
            (
                "green ready: first step at once",
                &linear,
                record(None, None),
                obs(2, 2, 100.0),
                Stage::ProductionTrafficShift,
                (50, 50),
                true,
                (Some(100.0), Some(100.0)),
            ),
            (
                "a green task replaced later keeps the shift going",
                &linear,
                record(Some(100.0), Some(100.0)),
                obs(1, 2, 110.0),
                Stage::BakeTime,
                (0, 100),
                true,
                (Some(100.0), Some(100.0)),
            ),
            (
                "bake over: clean up",
                &linear,
                record(Some(100.0), Some(100.0)),
                obs(2, 2, 141.0),
                Stage::CleanUp,
                (0, 100),
                false,
                (Some(100.0), Some(100.0)),
            ),
            (
                "blue gone",
                &linear,
                record(Some(100.0), Some(100.0)),
                obs(2, 0, 200.0),
                Stage::Done,
                (0, 100),
                false,
                (Some(100.0), Some(100.0)),
            ),
            (
                "canary",
                &canary,
                record(Some(1000.0), Some(1000.0)),
                obs(2, 2, 1010.0),
                Stage::ProductionTrafficShift,
                (80, 20),
                true,
                (Some(1000.0), Some(1000.0)),
            ),
            (
                "canary baking",
                &canary,
                record(Some(1000.0), Some(1000.0)),
                obs(2, 2, 1080.0),
                Stage::BakeTime,
                (0, 100),
                true,
                (Some(1000.0), Some(1000.0)),
            ),
        ];
        for (case, strategy, r, o, stage, weights, hold, after) in cases {
            let p = plan(strategy, 30.0, 60.0, &r, o);
            assert_eq!(
                (
                    p.shift.stage,
                    p.shift.production,
                    p.hold_blue,
                    (p.record.green_ready_at, p.record.production_shift_started)
                ),
                (stage, weights, hold, after),
                "{case}"
            );
            assert_eq!(p.shift.production.0 + p.shift.production.1, 100, "{case}");
            assert_eq!(p.record.stage.as_deref(), Some(stage.as_str()), "{case}");
            assert!(!p.shift.paused && !p.hold_green && p.rollback.is_none(), "{case}");
        }
        let p = plan(&canary, 120.0, 60.0, &record(Some(1000.0), Some(1000.0)), obs(2, 2, 1010.0));
        assert_eq!(p.shift.next_change_at, Some(1060.0));
        let p = plan(&canary, 120.0, 60.0, &record(Some(1000.0), Some(1000.0)), obs(2, 2, 1100.0));
        assert_eq!(p.shift.next_change_at, Some(1180.0));
        let bg = ShiftSettings {
            strategy: DeploymentStrategy::Canary,
            bake_time_minutes: 2,
            step_percent_tenths: 100,
            step_bake_minutes: 6,
            canary_percent_tenths: 5,
            canary_bake_minutes: 3,
            hooks: vec![],
        };
        assert_eq!(
            Strategy::from_settings(&bg, 1.0),
            (Strategy::Canary { canary_percent: 0.5, canary_bake_secs: 3.0 }, 2.0)
        );
    }

    use berth_model::service_shift::PauseHook;

    fn hook(stages: &[HookStage], minutes: i32, action: Action) -> PauseHook {
        PauseHook { stages: stages.to_vec(), timeout_minutes: minutes, timeout_action: action }
    }

    /// What an operator does before a pass: ContinueServiceDeployment on the run of hook
    /// `i` at `stage` (`SUCCEEDED` for CONTINUE, `FAILED` for ROLLBACK).
    #[derive(Clone, Copy, Debug)]
    enum Op {
        None,
        Resolve(usize, HookStage, HookStatus),
    }

    /// Expected of one pass.
    #[derive(Debug, PartialEq)]
    struct Want {
        stage: Stage,
        production: (u32, u32),
        test_on_green: bool,
        paused: bool,
        hold_green: bool,
        /// The rollback's hook stage and status.
        rollback: Option<(HookStage, HookStatus)>,
    }

    fn want(stage: Stage, production: (u32, u32), test: bool, paused: bool) -> Want {
        Want { stage, production, test_on_green: test, paused, hold_green: false, rollback: None }
    }

    /// Runs passes in order, carrying the record from one to the next (as the server stores
    /// it), each after its operator action: (time, green healthy, blue tasks, action, want).
    fn walk(
        strategy: &Strategy,
        bake: f64,
        start: TrafficShiftRecord,
        passes: Vec<(f64, u32, u32, Op, Want)>,
    ) -> TrafficShiftRecord {
        let mut r = start;
        for (now, green, blue, op, w) in passes {
            if let Op::Resolve(i, stage, status) = op {
                let run = r
                    .hook_runs
                    .iter_mut()
                    .rfind(|x| x.hook == i && x.stage == stage)
                    .unwrap_or_else(|| panic!("no run of hook {i} at {stage:?} at {now}"));
                assert_eq!(run.status, HookStatus::AwaitingAction, "at {now}");
                run.status = status;
                run.resolved_at = Some(now);
            }
            let p = plan(strategy, bake, 1.0, &r, obs(green, blue, now));
            let got = Want {
                stage: p.shift.stage,
                production: p.shift.production,
                test_on_green: p.shift.test_on_green,
                paused: p.shift.paused,
                hold_green: p.hold_green,
                rollback: p.rollback.as_ref().map(|x| (x.stage, x.status)),
            };
            assert_eq!(got, w, "pass at {now}");
            r = p.record;
        }
        r
    }

    #[test]
    fn pause_hooks_hold_each_stage_in_order() {
        use HookStage::*;
        use HookStatus::*;
        let start = TrafficShiftRecord {
            hooks: vec![
                hook(&[PreScaleUp], 2, Action::Continue),
                hook(&[PostTestTrafficShift, PostProductionTrafficShift], 10, Action::Rollback),
            ],
            hook_seed: "seed".into(),
            ..record(None, None)
        };
        let held_green = |stage| Want { hold_green: true, ..want(stage, (100, 0), false, true) };
        let end = walk(
            &Strategy::BlueGreen,
            3.0,
            start,
            vec![
                (0.0, 0, 2, Op::None, held_green(Stage::PreScaleUp)),
                (1.9, 0, 2, Op::None, held_green(Stage::PreScaleUp)),
                // Timed out with CONTINUE: green scales up.
                (2.0, 0, 2, Op::None, want(Stage::ScaleUp, (100, 0), false, false)),
                (2.5, 1, 2, Op::None, want(Stage::ScaleUp, (100, 0), false, false)),
                // Green ready: the test rule moves, production waits.
                (3.0, 2, 2, Op::None, want(Stage::PostTestTrafficShift, (100, 0), true, true)),
                (4.9, 2, 2, Op::None, want(Stage::PostTestTrafficShift, (100, 0), true, true)),
                // CONTINUE: production flips at once, then the next hook holds.
                (
                    5.0,
                    2,
                    2,
                    Op::Resolve(1, PostTestTrafficShift, Succeeded),
                    want(Stage::PostProductionTrafficShift, (0, 100), true, true),
                ),
                (
                    6.0,
                    2,
                    2,
                    Op::Resolve(1, PostProductionTrafficShift, Succeeded),
                    want(Stage::BakeTime, (0, 100), true, false),
                ),
                // The bake runs from the CONTINUE (6 s), not from production's 100% (5 s).
                (8.9, 2, 2, Op::None, want(Stage::BakeTime, (0, 100), true, false)),
                (9.0, 2, 2, Op::None, want(Stage::CleanUp, (0, 100), true, false)),
                (10.0, 2, 0, Op::None, want(Stage::Done, (0, 100), true, false)),
            ],
        );
        // (id, stage, status, entered, expires, resolved)
        type Run<'a> = (&'a str, HookStage, HookStatus, f64, f64, Option<f64>);
        let runs: Vec<Run> = end
            .hook_runs
            .iter()
            .map(|x| {
                (x.hook_id.as_str(), x.stage, x.status, x.entered_at, x.expires_at, x.resolved_at)
            })
            .collect();
        assert_eq!(
            runs,
            vec![
                ("ecs-pause-seed0-pre_scale_up", PreScaleUp, TimedOut, 0.0, 2.0, Some(2.0)),
                (
                    "ecs-pause-seed1-post_test_traffic_shift",
                    PostTestTrafficShift,
                    Succeeded,
                    3.0,
                    13.0,
                    Some(5.0)
                ),
                (
                    "ecs-pause-seed1-post_production_traffic_shift",
                    PostProductionTrafficShift,
                    Succeeded,
                    5.0,
                    15.0,
                    Some(6.0)
                ),
            ]
        );
        assert_eq!(end.production_shift_started, Some(5.0));
    }

    #[test]
    fn pause_hooks_roll_back_and_wait_for_every_hook() {
        use HookStage::*;
        use HookStatus::*;
        let linear = Strategy::Linear { step_percent: 50.0, step_bake_secs: 10.0 };
        let blue = |stage| want(stage, (100, 0), false, false);
        let rollback = |stage, at, status| Want { rollback: Some((at, status)), ..blue(stage) };
        // A timeout with ROLLBACK; production never moved.
        walk(
            &linear,
            0.0,
            TrafficShiftRecord {
                hooks: vec![hook(&[PostScaleUp], 5, Action::Rollback)],
                ..record(None, None)
            },
            vec![
                (0.0, 2, 2, Op::None, want(Stage::PostScaleUp, (100, 0), false, true)),
                (4.9, 2, 2, Op::None, want(Stage::PostScaleUp, (100, 0), false, true)),
                (5.0, 2, 2, Op::None, rollback(Stage::PostScaleUp, PostScaleUp, TimedOut)),
            ],
        );
        // ROLLBACK after production reached 100%: production goes back to blue at once.
        walk(
            &linear,
            0.0,
            TrafficShiftRecord {
                hooks: vec![hook(&[PostProductionTrafficShift], 60, Action::Continue)],
                ..record(None, None)
            },
            vec![
                (0.0, 2, 2, Op::None, want(Stage::ProductionTrafficShift, (50, 50), true, false)),
                (
                    10.0,
                    2,
                    2,
                    Op::None,
                    want(Stage::PostProductionTrafficShift, (0, 100), true, true),
                ),
                (
                    11.0,
                    2,
                    2,
                    Op::Resolve(0, PostProductionTrafficShift, Failed),
                    rollback(Stage::PostProductionTrafficShift, PostProductionTrafficShift, Failed),
                ),
            ],
        );
        // Two hooks at one stage: both must be resolved; RECONCILE_SERVICE only applies to a
        // deployment that started with several revisions ACTIVE.
        let two = vec![
            hook(&[ReconcileService, TestTrafficShift], 60, Action::Rollback),
            hook(&[TestTrafficShift], 60, Action::Rollback),
        ];
        walk(
            &Strategy::BlueGreen,
            0.0,
            TrafficShiftRecord { hooks: two.clone(), ..record(None, None) },
            vec![
                (0.0, 2, 2, Op::None, want(Stage::TestTrafficShift, (100, 0), false, true)),
                (
                    1.0,
                    2,
                    2,
                    Op::Resolve(1, TestTrafficShift, Succeeded),
                    want(Stage::TestTrafficShift, (100, 0), false, true),
                ),
                (
                    2.0,
                    2,
                    2,
                    Op::Resolve(0, TestTrafficShift, Succeeded),
                    want(Stage::CleanUp, (0, 100), true, false),
                ),
            ],
        );
        walk(
            &Strategy::BlueGreen,
            0.0,
            TrafficShiftRecord { hooks: two, reconcile: true, ..record(None, None) },
            vec![
                (
                    0.0,
                    0,
                    2,
                    Op::None,
                    Want {
                        hold_green: true,
                        ..want(Stage::ReconcileService, (100, 0), false, true)
                    },
                ),
                (
                    1.0,
                    0,
                    2,
                    Op::Resolve(0, ReconcileService, Succeeded),
                    want(Stage::ScaleUp, (100, 0), false, false),
                ),
            ],
        );
    }

    #[test]
    fn production_traffic_shift_hooks_hold_every_step() {
        use HookStage::*;
        use HookStatus::*;
        let linear = Strategy::Linear { step_percent: 25.0, step_bake_secs: 10.0 };
        let start = TrafficShiftRecord {
            hooks: vec![hook(&[ProductionTrafficShift], 60, Action::Rollback)],
            hook_seed: "s".into(),
            ..record(None, None)
        };
        let go = |production| want(Stage::ProductionTrafficShift, production, true, false);
        let held = |production| want(Stage::ProductionTrafficShift, production, true, true);
        let end = walk(
            &linear,
            0.0,
            start.clone(),
            vec![
                // Before the first step, as with BLUE_GREEN.
                (0.0, 2, 2, Op::None, held((100, 0))),
                (1.0, 2, 2, Op::Resolve(0, ProductionTrafficShift, Succeeded), go((75, 25))),
                (10.9, 2, 2, Op::None, go((75, 25))),
                // Step 2 is due: held at step 1's weights until the run is resolved.
                (11.0, 2, 2, Op::None, held((75, 25))),
                (14.0, 2, 2, Op::None, held((75, 25))),
                (15.0, 2, 2, Op::Resolve(0, ProductionTrafficShift, Succeeded), go((50, 50))),
                // Step 3's wait counts from the CONTINUE (15 s), not from when step 2 was due.
                (24.9, 2, 2, Op::None, go((50, 50))),
                (25.0, 2, 2, Op::None, held((50, 50))),
                (26.0, 2, 2, Op::Resolve(0, ProductionTrafficShift, Succeeded), go((25, 75))),
                (36.0, 2, 2, Op::None, held((25, 75))),
                (
                    37.0,
                    2,
                    2,
                    Op::Resolve(0, ProductionTrafficShift, Succeeded),
                    want(Stage::CleanUp, (0, 100), true, false),
                ),
            ],
        );
        let ids: Vec<(&str, u32, f64)> =
            end.hook_runs.iter().map(|x| (x.hook_id.as_str(), x.step, x.entered_at)).collect();
        assert_eq!(
            ids,
            vec![
                ("ecs-pause-s0-production_traffic_shift", 0, 0.0),
                ("ecs-pause-s0-production_traffic_shift-step1", 1, 11.0),
                ("ecs-pause-s0-production_traffic_shift-step2", 2, 25.0),
                ("ecs-pause-s0-production_traffic_shift-step3", 3, 36.0),
            ]
        );
        // ROLLBACK at a later step puts production back on blue at once.
        walk(
            &linear,
            0.0,
            start.clone(),
            vec![
                (0.0, 2, 2, Op::None, held((100, 0))),
                (1.0, 2, 2, Op::Resolve(0, ProductionTrafficShift, Succeeded), go((75, 25))),
                (11.0, 2, 2, Op::None, held((75, 25))),
                (
                    12.0,
                    2,
                    2,
                    Op::Resolve(0, ProductionTrafficShift, Failed),
                    Want {
                        rollback: Some((ProductionTrafficShift, Failed)),
                        ..want(Stage::ProductionTrafficShift, (100, 0), false, false)
                    },
                ),
            ],
        );
        // CANARY: before the canary, then before 100%; a timeout with CONTINUE takes the step.
        let canary = Strategy::Canary { canary_percent: 10.0, canary_bake_secs: 30.0 };
        let start = TrafficShiftRecord {
            hooks: vec![hook(&[ProductionTrafficShift], 5, Action::Continue)],
            ..record(None, None)
        };
        walk(
            &canary,
            0.0,
            start,
            vec![
                (0.0, 2, 2, Op::None, held((100, 0))),
                (5.0, 2, 2, Op::None, go((90, 10))),
                (35.0, 2, 2, Op::None, held((90, 10))),
                (40.0, 2, 2, Op::None, want(Stage::CleanUp, (0, 100), true, false)),
            ],
        );
        // BLUE_GREEN has one production step: the hook holds once.
        assert_eq!((steps(&Strategy::BlueGreen), steps(&canary), steps(&linear)), (1, 2, 4));
        let full = Strategy::Canary { canary_percent: 100.0, canary_bake_secs: 30.0 };
        assert_eq!((steps(&full), green_percent(&full, 0.0)), (1, (100, None)));
    }
}
