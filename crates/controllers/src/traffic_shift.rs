//! Traffic-shifting deployments (ECS's `deploymentConfiguration.strategy` `BLUE_GREEN`,
//! `LINEAR`, `CANARY`): which lifecycle stage a deployment is in and what weights the
//! production listener rule's forward action gives the blue (old) and green (new) target
//! groups. Pure: the clock and every observation come in through [`Progress`] (or, for a
//! whole pass, [`plan`]'s [`Observed`] and [`Recorded`]); the server
//! (`server/src/ecs/services/controller/traffic.rs`) applies the weights to the production
//! and test listener rules, holds the blue tasks until `CLEAN_UP`, and records the stage for
//! DescribeServiceDeployments.
//!
//! Stages, in ECS's order (`ServiceDeploymentLifecycleStage`): `SCALE_UP` (green tasks start
//! behind the alternate target group) until green is healthy at full size; then
//! `TEST_TRAFFIC_SHIFT` (the test listener rule points at green) and
//! `POST_TEST_TRAFFIC_SHIFT`; then `PRODUCTION_TRAFFIC_SHIFT`:
//! * `BLUE_GREEN`: green takes 100% at once;
//! * `LINEAR { step, step_bake }`: green takes `step`% more every `step_bake` seconds
//!   (`step`, `2 x step`, ... capped at 100);
//! * `CANARY { percent, bake }`: green takes `percent`% for `bake` seconds, then 100%;
//!
//! then `BAKE_TIME` for `bake_time` seconds (blue kept for a rollback), then `CLEAN_UP`
//! (blue scaled in). A PAUSE lifecycle hook on a stage holds the deployment at the start of
//! that stage until ContinueServiceDeployment. A rollback at any stage puts 100% back on blue.
//! Weights are integers 0-100 that always sum to 100 (ELB's weights are 0-999 per group; the
//! rule gets these as they are).

use berth_model::service_shift::ShiftSettings;
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
    ScaleUp,
    TestTrafficShift,
    PostTestTrafficShift,
    ProductionTrafficShift,
    BakeTime,
    CleanUp,
    /// Finished: blue is gone, green serves everything.
    Done,
}

impl Stage {
    /// The wire name (`ServiceDeploymentLifecycleStage`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ScaleUp => "SCALE_UP",
            Stage::TestTrafficShift => "TEST_TRAFFIC_SHIFT",
            Stage::PostTestTrafficShift => "POST_TEST_TRAFFIC_SHIFT",
            Stage::ProductionTrafficShift => "PRODUCTION_TRAFFIC_SHIFT",
            Stage::BakeTime => "BAKE_TIME",
            Stage::CleanUp | Stage::Done => "CLEAN_UP",
        }
    }
}

/// What the deployment has reached so far (recorded by the server between passes).
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Green runs its full count, every task healthy in the alternate target group.
    pub green_ready: bool,
    /// When production traffic started to shift (epoch seconds), once it has.
    pub production_shift_started: Option<f64>,
    /// Blue has been scaled in.
    pub blue_gone: bool,
    /// Stages held by a PAUSE hook that ContinueServiceDeployment has not released yet.
    pub paused_at: Vec<Stage>,
    /// The deployment is rolling back.
    pub rolling_back: bool,
    pub now: f64,
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
    /// When the next time-based change is due (for the server's wake-up), if any.
    pub next_change_at: Option<f64>,
}

/// Green's production percentage `elapsed` seconds into the production shift, and when it
/// next changes (seconds from the shift's start).
pub fn green_percent(strategy: &Strategy, elapsed: f64) -> (u32, Option<f64>) {
    match strategy {
        Strategy::BlueGreen => (100, None),
        Strategy::Linear { step_percent, step_bake_secs } => {
            let step = step_percent.clamp(1.0, 100.0);
            let bake = step_bake_secs.max(0.0);
            let steps_needed = (100.0 / step).ceil() as u32;
            let done = if bake == 0.0 {
                steps_needed
            } else {
                ((elapsed / bake).floor() as u32 + 1).min(steps_needed)
            };
            let pct = (f64::from(done) * step).min(100.0).round() as u32;
            let next = (done < steps_needed).then(|| f64::from(done) * bake);
            (pct, next)
        }
        Strategy::Canary { canary_percent, canary_bake_secs } => {
            if elapsed < *canary_bake_secs {
                ((canary_percent.clamp(0.0, 100.0)).round() as u32, Some(*canary_bake_secs))
            } else {
                (100, None)
            }
        }
    }
}

/// The stage and weights for `p` under `strategy`, with `bake_secs` of `bakeTimeInMinutes`.
pub fn decide(strategy: &Strategy, bake_secs: f64, p: &Progress) -> Shift {
    let blue_only = |stage, paused| Shift {
        stage,
        production: (100, 0),
        test_on_green: false,
        paused,
        next_change_at: None,
    };
    if p.rolling_back {
        return blue_only(Stage::ScaleUp, false);
    }
    let held = |s: Stage| p.paused_at.contains(&s);
    if !p.green_ready {
        return blue_only(Stage::ScaleUp, held(Stage::ScaleUp));
    }
    if held(Stage::TestTrafficShift) {
        return blue_only(Stage::TestTrafficShift, true);
    }
    if held(Stage::PostTestTrafficShift) {
        return Shift { test_on_green: true, ..blue_only(Stage::PostTestTrafficShift, true) };
    }
    let Some(started) = p.production_shift_started else {
        // Ready to start shifting production traffic (the server records the start).
        let paused = held(Stage::ProductionTrafficShift);
        return Shift { test_on_green: true, ..blue_only(Stage::ProductionTrafficShift, paused) };
    };
    let elapsed = (p.now - started).max(0.0);
    let (green, next) = green_percent(strategy, elapsed);
    if green < 100 {
        return Shift {
            stage: Stage::ProductionTrafficShift,
            production: (100 - green, green),
            test_on_green: true,
            paused: false,
            next_change_at: next.map(|n| started + n),
        };
    }
    // 100% on green since `full_at`.
    let full_at = started + shift_duration(strategy);
    let all_green = Shift {
        stage: Stage::BakeTime,
        production: (0, 100),
        test_on_green: true,
        paused: false,
        next_change_at: None,
    };
    if p.now < full_at + bake_secs {
        return Shift { next_change_at: Some(full_at + bake_secs), ..all_green };
    }
    if held(Stage::CleanUp) {
        return Shift { stage: Stage::CleanUp, paused: true, ..all_green };
    }
    Shift { stage: if p.blue_gone { Stage::Done } else { Stage::CleanUp }, ..all_green }
}

/// How long production traffic takes to reach 100% green.
pub fn shift_duration(strategy: &Strategy) -> f64 {
    match strategy {
        Strategy::BlueGreen => 0.0,
        Strategy::Linear { step_percent, step_bake_secs } => {
            let steps = (100.0 / step_percent.clamp(1.0, 100.0)).ceil();
            (steps - 1.0).max(0.0) * step_bake_secs.max(0.0)
        }
        Strategy::Canary { canary_bake_secs, .. } => canary_bake_secs.max(0.0),
    }
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

/// What the deployment recorded in earlier passes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Recorded {
    pub green_ready_at: Option<f64>,
    pub production_shift_started: Option<f64>,
}

/// One pass's plan for a traffic-shifting deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub shift: Shift,
    /// What to record for the next pass.
    pub recorded: Recorded,
    /// Keep the blue tasks (the stage is before `CLEAN_UP`).
    pub hold_blue: bool,
}

/// The pass's plan: green is ready once it first runs its full count healthy (latched: a
/// green task replaced later does not take traffic back); production starts shifting in the
/// pass that finds green ready (so the weights of the first step apply at once); blue is
/// held until `CLEAN_UP`.
pub fn plan(strategy: &Strategy, bake_secs: f64, rec: Recorded, obs: Observed) -> Plan {
    let mut recorded = rec;
    if recorded.green_ready_at.is_none() && obs.green_healthy >= obs.desired {
        recorded.green_ready_at = Some(obs.now);
    }
    let progress = |r: &Recorded| Progress {
        green_ready: r.green_ready_at.is_some(),
        production_shift_started: r.production_shift_started,
        blue_gone: obs.blue_tasks == 0,
        paused_at: Vec::new(),
        rolling_back: false,
        now: obs.now,
    };
    let mut shift = decide(strategy, bake_secs, &progress(&recorded));
    if shift.stage == Stage::ProductionTrafficShift
        && !shift.paused
        && recorded.production_shift_started.is_none()
    {
        recorded.production_shift_started = Some(obs.now);
        shift = decide(strategy, bake_secs, &progress(&recorded));
    }
    let hold_blue = shift.stage < Stage::CleanUp;
    Plan { shift, recorded, hold_blue }
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

    fn progress(now: f64) -> Progress {
        Progress {
            green_ready: true,
            production_shift_started: Some(1000.0),
            blue_gone: false,
            paused_at: vec![],
            rolling_back: false,
            now,
        }
    }

    #[test]
    fn stages_in_order_with_hooks_and_rollback() {
        let canary = Strategy::Canary { canary_percent: 20.0, canary_bake_secs: 60.0 };
        let bake = 120.0;
        // (case, progress, stage, (blue, green), test on green, paused)
        let cases = [
            (
                "scaling up",
                Progress { green_ready: false, production_shift_started: None, ..progress(0.0) },
                Stage::ScaleUp,
                (100, 0),
                false,
                false,
            ),
            (
                "held before test traffic",
                Progress {
                    production_shift_started: None,
                    paused_at: vec![Stage::TestTrafficShift],
                    ..progress(0.0)
                },
                Stage::TestTrafficShift,
                (100, 0),
                false,
                true,
            ),
            (
                "held after test traffic",
                Progress {
                    production_shift_started: None,
                    paused_at: vec![Stage::PostTestTrafficShift],
                    ..progress(0.0)
                },
                Stage::PostTestTrafficShift,
                (100, 0),
                true,
                true,
            ),
            (
                "ready for production",
                Progress { production_shift_started: None, ..progress(0.0) },
                Stage::ProductionTrafficShift,
                (100, 0),
                true,
                false,
            ),
            ("canary", progress(1010.0), Stage::ProductionTrafficShift, (80, 20), true, false),
            ("baking", progress(1100.0), Stage::BakeTime, (0, 100), true, false),
            ("clean up", progress(1181.0), Stage::CleanUp, (0, 100), true, false),
            (
                "held before clean up",
                Progress { paused_at: vec![Stage::CleanUp], ..progress(1181.0) },
                Stage::CleanUp,
                (0, 100),
                true,
                true,
            ),
            (
                "done",
                Progress { blue_gone: true, ..progress(1181.0) },
                Stage::Done,
                (0, 100),
                true,
                false,
            ),
            (
                "rolling back mid-shift",
                Progress { rolling_back: true, ..progress(1010.0) },
                Stage::ScaleUp,
                (100, 0),
                false,
                false,
            ),
        ];
        for (case, p, stage, weights, test, paused) in cases {
            let s = decide(&canary, bake, &p);
            assert_eq!(
                (s.stage, s.production, s.test_on_green, s.paused),
                (stage, weights, test, paused),
                "{case}"
            );
            assert_eq!(s.production.0 + s.production.1, 100, "{case}");
        }
        assert_eq!(decide(&canary, bake, &progress(1010.0)).next_change_at, Some(1060.0));
        assert_eq!(decide(&canary, bake, &progress(1100.0)).next_change_at, Some(1180.0));
    }

    #[test]
    fn a_pass_plans_from_what_it_sees() {
        let linear = Strategy::Linear { step_percent: 50.0, step_bake_secs: 10.0 };
        let obs =
            |green, blue, now| Observed { green_healthy: green, desired: 2, blue_tasks: blue, now };
        let rec =
            |ready, started| Recorded { green_ready_at: ready, production_shift_started: started };
        // (case, recorded, observed, stage, (blue, green), hold blue, recorded after)
        let cases = [
            (
                "green starting",
                rec(None, None),
                obs(1, 2, 100.0),
                Stage::ScaleUp,
                (100, 0),
                true,
                rec(None, None),
            ),
            (
                "green ready: first step at once",
                rec(None, None),
                obs(2, 2, 100.0),
                Stage::ProductionTrafficShift,
                (50, 50),
                true,
                rec(Some(100.0), Some(100.0)),
            ),
            (
                "a green task replaced later keeps the shift going",
                rec(Some(100.0), Some(100.0)),
                obs(1, 2, 110.0),
                Stage::BakeTime,
                (0, 100),
                true,
                rec(Some(100.0), Some(100.0)),
            ),
            (
                "bake over: clean up",
                rec(Some(100.0), Some(100.0)),
                obs(2, 2, 141.0),
                Stage::CleanUp,
                (0, 100),
                false,
                rec(Some(100.0), Some(100.0)),
            ),
            (
                "blue gone",
                rec(Some(100.0), Some(100.0)),
                obs(2, 0, 200.0),
                Stage::Done,
                (0, 100),
                false,
                rec(Some(100.0), Some(100.0)),
            ),
        ];
        for (case, r, o, stage, weights, hold, after) in cases {
            let p = plan(&linear, 30.0, r, o);
            assert_eq!(
                (p.shift.stage, p.shift.production, p.hold_blue, p.recorded),
                (stage, weights, hold, after),
                "{case}"
            );
        }
        let bg = ShiftSettings {
            strategy: DeploymentStrategy::Canary,
            bake_time_minutes: 2,
            step_percent_tenths: 100,
            step_bake_minutes: 6,
            canary_percent_tenths: 5,
            canary_bake_minutes: 3,
        };
        assert_eq!(
            Strategy::from_settings(&bg, 1.0),
            (Strategy::Canary { canary_percent: 0.5, canary_bake_secs: 3.0 }, 2.0)
        );
    }
}
