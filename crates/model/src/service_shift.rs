//! Traffic-shifting deployments (`deploymentConfiguration.strategy` `BLUE_GREEN`, `LINEAR`,
//! `CANARY`): the settings a service keeps ([`ShiftSettings`]), the rules CreateService and
//! UpdateService apply to them, and the progress each deployment records
//! ([`TrafficShiftRecord`]). The stage logic itself is `berth_controllers::traffic_shift`.
//!
//! Rules (the ECS API reference: DeploymentConfiguration, LinearConfiguration,
//! CanaryConfiguration, AdvancedConfiguration), checked in this order, on update after the
//! given members are merged into the current ones (a member left out keeps its value):
//! * `bakeTimeInMinutes`, `linearConfiguration.stepBakeTimeInMinutes` and
//!   `canaryConfiguration.canaryBakeTimeInMinutes`: 0-1440;
//! * `linearConfiguration.stepPercent`: a multiple of 0.1 from 3.0 to 100.0 (default 10.0,
//!   step bake default 6 minutes); only with strategy `LINEAR`;
//! * `canaryConfiguration.canaryPercent`: a multiple of 0.1 from 0.1 to 100.0 (default 5.0,
//!   canary bake default 10 minutes); only with strategy `CANARY`;
//! * `bakeTimeInMinutes` defaults to 0 (Berth; ECS asks for it with `BLUE_GREEN`);
//! * `lifecycleHooks`: only with a traffic-shifting strategy; given, they replace the
//!   service's hooks (an empty list clears them). `AWS_LAMBDA` hooks (the default target
//!   type) are unsupported (Berth has no function runtime to invoke:
//!   `UnsupportedFeatureException`). A `PAUSE` hook ([`PauseHook`]) names at least one of
//!   `lifecycleStages`; `timeoutConfiguration.timeoutInMinutes` is 1-20160 (default 1440)
//!   and `action` defaults to `ROLLBACK` (ECS's defaults); `hookTargetArn`, `roleArn` and
//!   `hookDetails` do not apply to PAUSE hooks (ECS: "not applicable") and are dropped;
//! * a traffic-shifting strategy needs `loadBalancers` whose every entry has
//!   `advancedConfiguration` with `alternateTargetGroupArn` and `productionListenerRule`
//!   (Berth shifts traffic only through an ELBv2 listener rule: [`check_advanced`]).
//!
//! Berth-only knob: the server scales every minute above by `BERTH_DEPLOYMENT_MINUTE_SECS`
//! seconds (default 60) so tests can run a LINEAR deployment in seconds.

use berth_wire::ecs::{
    AdvancedConfiguration, CanaryConfiguration, DeploymentConfiguration, DeploymentLifecycleHook,
    DeploymentLifecycleHookAction, DeploymentLifecycleHookStage, DeploymentLifecycleHookStatus,
    DeploymentLifecycleHookTargetType, DeploymentLifecycleHookTimeoutConfiguration,
    DeploymentStrategy, LinearConfiguration, LoadBalancer,
};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::service_rules::ServiceRuleError;

/// Longest bake time ECS allows, in minutes.
pub const MAX_BAKE_MINUTES: i32 = 1440;
/// A PAUSE hook's timeout when `timeoutConfiguration` leaves it out, in minutes (ECS: 24 h).
pub const DEFAULT_HOOK_TIMEOUT_MINUTES: i32 = 1440;
/// Longest PAUSE hook timeout ECS allows, in minutes (14 days).
pub const MAX_HOOK_TIMEOUT_MINUTES: i32 = 20160;

/// A `PAUSE` deployment lifecycle hook: the deployment waits at each of `stages` for
/// ContinueServiceDeployment, at most `timeout_minutes`, then takes `timeout_action`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseHook {
    /// At least one, as given (duplicates removed).
    pub stages: Vec<DeploymentLifecycleHookStage>,
    /// 1-20160.
    pub timeout_minutes: i32,
    pub timeout_action: DeploymentLifecycleHookAction,
}

impl PauseHook {
    /// The wire shape DescribeServices shows.
    pub fn render(&self) -> DeploymentLifecycleHook {
        DeploymentLifecycleHook {
            target_type: Some(DeploymentLifecycleHookTargetType::Pause),
            lifecycle_stages: Some(self.stages.clone()),
            timeout_configuration: Some(DeploymentLifecycleHookTimeoutConfiguration {
                timeout_in_minutes: Some(self.timeout_minutes),
                action: Some(self.timeout_action),
            }),
            ..Default::default()
        }
    }
}

/// One PAUSE hook reached by a deployment at one stage (DescribeServiceDeployments'
/// `lifecycleHookDetails`). Invariant: `status` is `AWAITING_ACTION` until
/// ContinueServiceDeployment (`SUCCEEDED` for CONTINUE, `FAILED` for ROLLBACK) or the
/// timeout (`TIMED_OUT`) resolves it, and then `resolved_at` is set; it never changes again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRun {
    /// Unique among the service's deployments: [`TrafficShiftRecord::hook_id`].
    pub hook_id: String,
    /// Position of the hook in the deployment's [`TrafficShiftRecord::hooks`].
    pub hook: usize,
    pub stage: DeploymentLifecycleHookStage,
    /// The production traffic-shift steps already taken when the run was entered: 0, except
    /// for the later runs of a `PRODUCTION_TRAFFIC_SHIFT` hook under `LINEAR` and `CANARY`,
    /// which ECS invokes before every step (run `k` holds the traffic at step `k`'s weights
    /// until it is resolved).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub step: u32,
    pub status: DeploymentLifecycleHookStatus,
    /// Epoch seconds.
    pub entered_at: f64,
    pub expires_at: f64,
    pub timeout_action: DeploymentLifecycleHookAction,
    #[serde(default)]
    pub resolved_at: Option<f64>,
}

/// A traffic-shifting service's strategy and timings; percentages in tenths of a percent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShiftSettings {
    /// `BLUE_GREEN`, `LINEAR` or `CANARY`.
    pub strategy: DeploymentStrategy,
    pub bake_time_minutes: i32,
    pub step_percent_tenths: u32,
    pub step_bake_minutes: i32,
    pub canary_percent_tenths: u32,
    pub canary_bake_minutes: i32,
    /// PAUSE lifecycle hooks, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<PauseHook>,
}

impl ShiftSettings {
    fn new(strategy: DeploymentStrategy) -> Self {
        Self {
            strategy,
            bake_time_minutes: 0,
            step_percent_tenths: 100,
            step_bake_minutes: 6,
            canary_percent_tenths: 50,
            canary_bake_minutes: 10,
            hooks: Vec::new(),
        }
    }

    /// Renders the members of `DeploymentConfiguration` these settings describe.
    pub fn render(&self, dc: &mut DeploymentConfiguration) {
        dc.strategy = Some(self.strategy);
        dc.bake_time_in_minutes = Some(self.bake_time_minutes);
        match self.strategy {
            DeploymentStrategy::Linear => {
                dc.linear_configuration = Some(LinearConfiguration {
                    step_percent: Some(f64::from(self.step_percent_tenths) / 10.0),
                    step_bake_time_in_minutes: Some(self.step_bake_minutes),
                })
            }
            DeploymentStrategy::Canary => {
                dc.canary_configuration = Some(CanaryConfiguration {
                    canary_percent: Some(f64::from(self.canary_percent_tenths) / 10.0),
                    canary_bake_time_in_minutes: Some(self.canary_bake_minutes),
                })
            }
            _ => {}
        }
        if !self.hooks.is_empty() {
            dc.lifecycle_hooks = Some(self.hooks.iter().map(PauseHook::render).collect());
        }
    }
}

/// Progress of one traffic-shifting deployment, kept on its deployment record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficShiftRecord {
    /// Its tasks register in the alternate target groups
    /// (`advancedConfiguration.alternateTargetGroupArn`) rather than the primary ones.
    pub alternate: bool,
    /// It replaces a deployment that serves production (false for a service's first
    /// deployment, which takes production directly).
    #[serde(default)]
    pub shifting: bool,
    /// When every green task was first healthy in the green target groups.
    #[serde(default)]
    pub green_ready_at: Option<f64>,
    /// When production traffic started to shift.
    #[serde(default)]
    pub production_shift_started: Option<f64>,
    /// The lifecycle stage last recorded (`ServiceDeploymentLifecycleStage` wire name).
    #[serde(default)]
    pub stage: Option<String>,
    /// The service's PAUSE hooks when the deployment started (a later UpdateService does not
    /// change a deployment under way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<PauseHook>,
    /// The hooks reached so far, in the order reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hook_runs: Vec<HookRun>,
    /// More than one service revision was ACTIVE when the deployment started: it passes
    /// through ECS's `RECONCILE_SERVICE` stage.
    #[serde(default)]
    pub reconcile: bool,
    /// Random, fixed at creation: makes hook ids unique across deployments.
    #[serde(default)]
    pub hook_seed: String,
}

impl TrafficShiftRecord {
    /// The id of the run of hook `hook` (its position) at `stage` after `step` production
    /// steps ([`HookRun::step`]): stable across passes and restarts, unique across
    /// deployments through [`TrafficShiftRecord::hook_seed`].
    pub fn hook_id(&self, hook: usize, stage: DeploymentLifecycleHookStage, step: u32) -> String {
        let stage = stage.as_str().to_ascii_lowercase();
        match step {
            0 => format!("ecs-pause-{}{hook}-{stage}", self.hook_seed),
            k => format!("ecs-pause-{}{hook}-{stage}-step{k}", self.hook_seed),
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ServiceRuleError {
    ServiceRuleError::Invalid(ModelError::invalid(field, message))
}

fn unsupported(field: impl Into<String>, message: impl Into<String>) -> ServiceRuleError {
    ServiceRuleError::Unsupported { field: field.into(), message: message.into() }
}

const P: &str = "deploymentConfiguration";

fn minutes(member: &str, v: i32) -> Result<i32, ServiceRuleError> {
    if !(0..=MAX_BAKE_MINUTES).contains(&v) {
        return Err(invalid(
            format!("{P}.{member}"),
            format!("{P}.{member} must be between 0 and {MAX_BAKE_MINUTES} minutes; got {v}."),
        ));
    }
    Ok(v)
}

/// A percentage in tenths, a multiple of 0.1 within `lo..=hi` (tenths).
fn tenths(member: &str, v: f64, lo: u32, hi: u32) -> Result<u32, ServiceRuleError> {
    let t = (v * 10.0).round();
    let ok =
        v.is_finite() && (v * 10.0 - t).abs() < 1e-6 && t >= f64::from(lo) && t <= f64::from(hi);
    if !ok {
        return Err(invalid(
            format!("{P}.{member}"),
            format!(
                "{P}.{member} must be a multiple of 0.1 from {:.1} to {:.1}; got {v}.",
                f64::from(lo) / 10.0,
                f64::from(hi) / 10.0
            ),
        ));
    }
    Ok(t as u32)
}

/// Merges `dc` into `current` (the service's traffic-shift settings, `None` for ROLLING) and
/// checks the result (see the module header). Returns the new settings.
pub fn apply(
    dc: &DeploymentConfiguration,
    current: Option<&ShiftSettings>,
) -> Result<Option<ShiftSettings>, ServiceRuleError> {
    let mut s = match dc.strategy {
        None => current.cloned(),
        Some(DeploymentStrategy::Rolling) => None,
        Some(st) => Some(match current {
            Some(c) => ShiftSettings { strategy: st, ..c.clone() },
            None => ShiftSettings::new(st),
        }),
    };
    let strategy = s.as_ref().map(|s| s.strategy);
    if let Some(b) = dc.bake_time_in_minutes {
        let b = minutes("bakeTimeInMinutes", b)?;
        match s.as_mut() {
            Some(s) => s.bake_time_minutes = b,
            None => {
                return Err(invalid(
                    format!("{P}.bakeTimeInMinutes"),
                    format!(
                        "{P}.bakeTimeInMinutes applies to the BLUE_GREEN, LINEAR and CANARY strategies; set strategy or omit bakeTimeInMinutes."
                    ),
                ));
            }
        }
    }
    if let Some(l) = &dc.linear_configuration {
        let Some(s) = s.as_mut().filter(|_| strategy == Some(DeploymentStrategy::Linear)) else {
            return Err(invalid(
                format!("{P}.linearConfiguration"),
                format!(
                    "{P}.linearConfiguration is only valid when the deployment strategy is LINEAR."
                ),
            ));
        };
        if let Some(p) = l.step_percent {
            s.step_percent_tenths = tenths("linearConfiguration.stepPercent", p, 30, 1000)?;
        }
        if let Some(m) = l.step_bake_time_in_minutes {
            s.step_bake_minutes = minutes("linearConfiguration.stepBakeTimeInMinutes", m)?;
        }
    }
    if let Some(c) = &dc.canary_configuration {
        let Some(s) = s.as_mut().filter(|_| strategy == Some(DeploymentStrategy::Canary)) else {
            return Err(invalid(
                format!("{P}.canaryConfiguration"),
                format!(
                    "{P}.canaryConfiguration is only valid when the deployment strategy is CANARY."
                ),
            ));
        };
        if let Some(p) = c.canary_percent {
            s.canary_percent_tenths = tenths("canaryConfiguration.canaryPercent", p, 1, 1000)?;
        }
        if let Some(m) = c.canary_bake_time_in_minutes {
            s.canary_bake_minutes = minutes("canaryConfiguration.canaryBakeTimeInMinutes", m)?;
        }
    }
    if let Some(hooks) = &dc.lifecycle_hooks {
        let mut parsed = Vec::with_capacity(hooks.len());
        for (i, h) in hooks.iter().enumerate() {
            let f = format!("{P}.lifecycleHooks[{i}]");
            if s.is_none() {
                return Err(invalid(
                    f,
                    format!(
                        "{P}.lifecycleHooks apply to the BLUE_GREEN, LINEAR and CANARY strategies; set strategy or omit lifecycleHooks."
                    ),
                ));
            }
            parsed.push(pause_hook(&f, h)?);
        }
        if let Some(s) = s.as_mut() {
            s.hooks = parsed;
        }
    }
    Ok(s)
}

/// Hook `h` (named `f` in errors) as a [`PauseHook`] (see the module header).
fn pause_hook(f: &str, h: &DeploymentLifecycleHook) -> Result<PauseHook, ServiceRuleError> {
    if h.target_type.unwrap_or(DeploymentLifecycleHookTargetType::AwsLambda)
        == DeploymentLifecycleHookTargetType::AwsLambda
    {
        return Err(unsupported(
            format!("{f}.targetType"),
            format!(
                "{f}.targetType AWS_LAMBDA: Berth has no Lambda function runtime to invoke lifecycle hooks with. Use targetType PAUSE, or omit lifecycleHooks."
            ),
        ));
    }
    let mut stages: Vec<DeploymentLifecycleHookStage> = Vec::new();
    for st in h.lifecycle_stages.iter().flatten() {
        if !stages.contains(st) {
            stages.push(*st);
        }
    }
    if stages.is_empty() {
        return Err(invalid(
            format!("{f}.lifecycleStages"),
            format!(
                "{f}.lifecycleStages must name at least one stage ({}).",
                DeploymentLifecycleHookStage::VALUES.join(", ")
            ),
        ));
    }
    let t = h.timeout_configuration.as_ref();
    let timeout_minutes =
        t.and_then(|t| t.timeout_in_minutes).unwrap_or(DEFAULT_HOOK_TIMEOUT_MINUTES);
    if !(1..=MAX_HOOK_TIMEOUT_MINUTES).contains(&timeout_minutes) {
        return Err(invalid(
            format!("{f}.timeoutConfiguration.timeoutInMinutes"),
            format!(
                "{f}.timeoutConfiguration.timeoutInMinutes must be between 1 and {MAX_HOOK_TIMEOUT_MINUTES}; got {timeout_minutes}."
            ),
        ));
    }
    Ok(PauseHook {
        stages,
        timeout_minutes,
        timeout_action: t.and_then(|t| t.action).unwrap_or(DeploymentLifecycleHookAction::Rollback),
    })
}

/// The `advancedConfiguration` of `lb` (entry `i`) checked for shape; `shifting`: the service
/// uses a traffic-shifting strategy, which needs it.
pub fn check_advanced(i: usize, lb: &LoadBalancer, shifting: bool) -> Result<(), ServiceRuleError> {
    let f = |m: &str| format!("loadBalancers[{i}].advancedConfiguration{m}");
    let Some(a) = &lb.advanced_configuration else {
        if shifting {
            return Err(unsupported(
                f(""),
                format!(
                    "{}: Berth runs BLUE_GREEN, LINEAR and CANARY deployments by moving an ELBv2 listener rule between two target groups: give advancedConfiguration (alternateTargetGroupArn, productionListenerRule) on every loadBalancers entry, or use strategy ROLLING.",
                    f("")
                ),
            ));
        }
        return Ok(());
    };
    let AdvancedConfiguration { alternate_target_group_arn, production_listener_rule, .. } = a;
    if alternate_target_group_arn.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            f(".alternateTargetGroupArn"),
            format!(
                "{} is required: the target group green tasks register in.",
                f(".alternateTargetGroupArn")
            ),
        ));
    }
    if *alternate_target_group_arn == lb.target_group_arn {
        return Err(invalid(
            f(".alternateTargetGroupArn"),
            format!("{} must differ from targetGroupArn.", f(".alternateTargetGroupArn")),
        ));
    }
    if production_listener_rule.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            f(".productionListenerRule"),
            format!(
                "{} is required: the listener rule (or NLB listener) whose forward action carries production traffic.",
                f(".productionListenerRule")
            ),
        ));
    }
    Ok(())
}

/// A service's `loadBalancers` against its strategy: a traffic-shifting (`shift`) service is
/// a REPLICA service with load balancers whose every entry has `advancedConfiguration`.
pub fn check_service(
    lbs: &[LoadBalancer],
    shift: Option<&ShiftSettings>,
    daemon: bool,
) -> Result<(), ServiceRuleError> {
    let Some(s) = shift else { return Ok(()) };
    if daemon {
        return Err(invalid(
            format!("{P}.strategy"),
            format!(
                "{P}.strategy {}: a DAEMON service runs one task per instance and deploys with ROLLING only.",
                s.strategy
            ),
        ));
    }
    if lbs.is_empty() {
        return Err(unsupported(
            "loadBalancers",
            format!(
                "{P}.strategy {}: Berth shifts traffic between two target groups of an ELBv2 listener rule, so the service needs loadBalancers with advancedConfiguration; without a load balancer use strategy ROLLING.",
                s.strategy
            ),
        ));
    }
    for (i, lb) in lbs.iter().enumerate() {
        check_advanced(i, lb, true)?;
    }
    Ok(())
}

/// The traffic record of a new deployment of a service with `lbs`, replacing `deployments`
/// (newest first; empty for CreateService's): `None` without `advancedConfiguration`; the
/// first deployment serves from the primary target groups; a new deployment under a
/// traffic-shifting strategy (`shift`) takes the side opposite the one serving (the newest
/// deployment that completed, else the PRIMARY's) and keeps the strategy's PAUSE hooks; under
/// ROLLING it stays on that side.
pub fn new_record(
    deployments: &[crate::service::DeploymentRecord],
    lbs: &[LoadBalancer],
    shift: Option<&ShiftSettings>,
) -> Option<TrafficShiftRecord> {
    if !lbs.iter().any(|l| l.advanced_configuration.is_some()) {
        return None;
    }
    let side =
        |d: &crate::service::DeploymentRecord| d.traffic.as_ref().is_some_and(|t| t.alternate);
    let Some(serving) = deployments.iter().find(|d| d.completed).or(deployments.first()) else {
        return Some(TrafficShiftRecord::default());
    };
    let serving = side(serving);
    let shifting = shift.is_some();
    Some(TrafficShiftRecord {
        alternate: serving != shifting,
        shifting,
        hooks: shift.map(|s| s.hooks.clone()).unwrap_or_default(),
        reconcile: shifting && deployments.len() > 1,
        hook_seed: if shifting { hook_seed() } else { String::new() },
        ..Default::default()
    })
}

/// Twelve random lowercase letters and digits.
fn hook_seed() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let (mut a, _) = uuid::Uuid::new_v4().as_u64_pair();
    (0..12)
        .map(|_| {
            let c = ALPHABET[(a % ALPHABET.len() as u64) as usize] as char;
            a /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Out {
        Ok(Option<ShiftSettings>),
        Invalid(&'static str),
        Unsupported(&'static str),
    }

    fn run(dc: DeploymentConfiguration, cur: Option<&ShiftSettings>) -> Out {
        match apply(&dc, cur) {
            Ok(s) => Out::Ok(s),
            Err(ServiceRuleError::Invalid(e)) => {
                Out::Invalid(Box::leak(e.field().to_string().into_boxed_str()))
            }
            Err(ServiceRuleError::Unsupported { field, .. }) => {
                Out::Unsupported(Box::leak(field.into_boxed_str()))
            }
        }
    }

    #[test]
    fn strategies_merge_and_check() {
        let bg = ShiftSettings::new(DeploymentStrategy::BlueGreen);
        let dc = |st: Option<DeploymentStrategy>| DeploymentConfiguration {
            strategy: st,
            ..Default::default()
        };
        let linear = |p: f64, m: i32| DeploymentConfiguration {
            linear_configuration: Some(LinearConfiguration {
                step_percent: Some(p),
                step_bake_time_in_minutes: Some(m),
            }),
            ..dc(Some(DeploymentStrategy::Linear))
        };
        let hook = |t: Option<DeploymentLifecycleHookTargetType>| DeploymentConfiguration {
            lifecycle_hooks: Some(vec![DeploymentLifecycleHook {
                target_type: t,
                ..Default::default()
            }]),
            ..dc(Some(DeploymentStrategy::BlueGreen))
        };
        use DeploymentLifecycleHookStage::{PostTestTrafficShift as PostTest, PreScaleUp};
        let pause = |stages: Vec<DeploymentLifecycleHookStage>,
                     t: Option<DeploymentLifecycleHookTimeoutConfiguration>| {
            DeploymentConfiguration {
                lifecycle_hooks: Some(vec![DeploymentLifecycleHook {
                    target_type: Some(DeploymentLifecycleHookTargetType::Pause),
                    lifecycle_stages: Some(stages),
                    hook_target_arn: Some("ignored".into()),
                    timeout_configuration: t,
                    ..Default::default()
                }]),
                ..dc(Some(DeploymentStrategy::BlueGreen))
            }
        };
        let with_hook = ShiftSettings {
            hooks: vec![PauseHook {
                stages: vec![PostTest],
                timeout_minutes: 5,
                timeout_action: DeploymentLifecycleHookAction::Rollback,
            }],
            ..bg.clone()
        };
        let cases: Vec<(&str, DeploymentConfiguration, Option<&ShiftSettings>, Out)> = vec![
            ("rolling", dc(Some(DeploymentStrategy::Rolling)), Some(&bg), Out::Ok(None)),
            ("kept", dc(None), Some(&bg), Out::Ok(Some(bg.clone()))),
            (
                "blue/green",
                dc(Some(DeploymentStrategy::BlueGreen)),
                None,
                Out::Ok(Some(bg.clone())),
            ),
            (
                "bake",
                DeploymentConfiguration { bake_time_in_minutes: Some(5), ..dc(None) },
                Some(&bg),
                Out::Ok(Some(ShiftSettings { bake_time_minutes: 5, ..bg.clone() })),
            ),
            (
                "bake too long",
                DeploymentConfiguration { bake_time_in_minutes: Some(1441), ..dc(None) },
                Some(&bg),
                Out::Invalid("deploymentConfiguration.bakeTimeInMinutes"),
            ),
            (
                "bake without strategy",
                DeploymentConfiguration { bake_time_in_minutes: Some(1), ..dc(None) },
                None,
                Out::Invalid("deploymentConfiguration.bakeTimeInMinutes"),
            ),
            (
                "linear",
                linear(25.0, 1),
                None,
                Out::Ok(Some(ShiftSettings {
                    step_percent_tenths: 250,
                    step_bake_minutes: 1,
                    ..ShiftSettings::new(DeploymentStrategy::Linear)
                })),
            ),
            (
                "linear step too small",
                linear(2.9, 1),
                None,
                Out::Invalid("deploymentConfiguration.linearConfiguration.stepPercent"),
            ),
            (
                "linear step not a tenth",
                linear(10.05, 1),
                None,
                Out::Invalid("deploymentConfiguration.linearConfiguration.stepPercent"),
            ),
            (
                "linear config with blue/green",
                DeploymentConfiguration {
                    strategy: Some(DeploymentStrategy::BlueGreen),
                    ..linear(10.0, 1)
                },
                None,
                Out::Invalid("deploymentConfiguration.linearConfiguration"),
            ),
            (
                "canary",
                DeploymentConfiguration {
                    canary_configuration: Some(CanaryConfiguration {
                        canary_percent: Some(0.1),
                        canary_bake_time_in_minutes: None,
                    }),
                    ..dc(Some(DeploymentStrategy::Canary))
                },
                None,
                Out::Ok(Some(ShiftSettings {
                    canary_percent_tenths: 1,
                    ..ShiftSettings::new(DeploymentStrategy::Canary)
                })),
            ),
            (
                "lambda hook",
                hook(None),
                None,
                Out::Unsupported("deploymentConfiguration.lifecycleHooks[0].targetType"),
            ),
            (
                "pause hook without stages",
                hook(Some(DeploymentLifecycleHookTargetType::Pause)),
                None,
                Out::Invalid("deploymentConfiguration.lifecycleHooks[0].lifecycleStages"),
            ),
            (
                "pause hook, defaults",
                pause(vec![PostTest, PostTest, PreScaleUp], None),
                None,
                Out::Ok(Some(ShiftSettings {
                    hooks: vec![PauseHook {
                        stages: vec![PostTest, PreScaleUp],
                        timeout_minutes: 1440,
                        timeout_action: DeploymentLifecycleHookAction::Rollback,
                    }],
                    ..bg.clone()
                })),
            ),
            (
                "pause hook, timeout",
                pause(
                    vec![PostTest],
                    Some(DeploymentLifecycleHookTimeoutConfiguration {
                        timeout_in_minutes: Some(20160),
                        action: Some(DeploymentLifecycleHookAction::Continue),
                    }),
                ),
                None,
                Out::Ok(Some(ShiftSettings {
                    hooks: vec![PauseHook {
                        stages: vec![PostTest],
                        timeout_minutes: 20160,
                        timeout_action: DeploymentLifecycleHookAction::Continue,
                    }],
                    ..bg.clone()
                })),
            ),
            (
                "pause hook, timeout too long",
                pause(
                    vec![PostTest],
                    Some(DeploymentLifecycleHookTimeoutConfiguration {
                        timeout_in_minutes: Some(20161),
                        action: None,
                    }),
                ),
                None,
                Out::Invalid(
                    "deploymentConfiguration.lifecycleHooks[0].timeoutConfiguration.timeoutInMinutes",
                ),
            ),
            (
                "hooks kept when left out",
                dc(None),
                Some(&with_hook),
                Out::Ok(Some(with_hook.clone())),
            ),
            (
                "hooks cleared by an empty list",
                DeploymentConfiguration { lifecycle_hooks: Some(vec![]), ..dc(None) },
                Some(&with_hook),
                Out::Ok(Some(bg.clone())),
            ),
            (
                "hook with rolling",
                DeploymentConfiguration {
                    strategy: Some(DeploymentStrategy::Rolling),
                    ..hook(Some(DeploymentLifecycleHookTargetType::Pause))
                },
                None,
                Out::Invalid("deploymentConfiguration.lifecycleHooks[0]"),
            ),
        ];
        for (case, dc, cur, want) in cases {
            assert_eq!(run(dc, cur), want, "{case}");
        }
    }

    #[test]
    fn advanced_configuration_shape() {
        let adv = |alt: &str, prod: &str| LoadBalancer {
            target_group_arn: Some("tg-a".into()),
            advanced_configuration: Some(AdvancedConfiguration {
                alternate_target_group_arn: Some(alt.into()),
                production_listener_rule: Some(prod.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let plain = LoadBalancer { target_group_arn: Some("tg-a".into()), ..Default::default() };
        // (case, entry, shifting, error field or None)
        let cases = [
            ("complete", adv("tg-b", "rule"), true, None),
            ("plain, rolling", plain.clone(), false, None),
            ("plain, shifting", plain, true, Some("loadBalancers[0].advancedConfiguration")),
            (
                "no alternate",
                adv("", "rule"),
                true,
                Some("loadBalancers[0].advancedConfiguration.alternateTargetGroupArn"),
            ),
            (
                "same group",
                adv("tg-a", "rule"),
                true,
                Some("loadBalancers[0].advancedConfiguration.alternateTargetGroupArn"),
            ),
            (
                "no production rule",
                adv("tg-b", ""),
                false,
                Some("loadBalancers[0].advancedConfiguration.productionListenerRule"),
            ),
        ];
        for (case, lb, shifting, want) in cases {
            let got = check_advanced(0, &lb, shifting).err().map(|e| e.field().to_string());
            assert_eq!(got.as_deref(), want, "{case}");
        }
    }

    #[test]
    fn new_deployments_take_the_side_opposite_the_serving_one() {
        use crate::service::DeploymentRecord;
        let adv = LoadBalancer {
            advanced_configuration: Some(AdvancedConfiguration::default()),
            ..Default::default()
        };
        let dep = |alternate: bool, completed: bool| DeploymentRecord {
            completed,
            traffic: Some(TrafficShiftRecord { alternate, ..Default::default() }),
            ..DeploymentRecord::new("d".into(), "td".into(), None, 1, 0.0)
        };
        let rec = |alternate: bool, shifting: bool| Some((alternate, shifting));
        // (case, deployments, load balancers, shifting, expected)
        let cases = [
            ("no advanced configuration", vec![], vec![LoadBalancer::default()], true, None),
            ("first deployment", vec![], vec![adv.clone()], true, rec(false, false)),
            ("blue on primary", vec![dep(false, true)], vec![adv.clone()], true, rec(true, true)),
            ("blue on alternate", vec![dep(true, true)], vec![adv.clone()], true, rec(false, true)),
            (
                "superseding a green in progress",
                vec![dep(true, false), dep(false, true)],
                vec![adv.clone()],
                true,
                rec(true, true),
            ),
            ("rolling stays", vec![dep(true, true)], vec![adv.clone()], false, rec(true, false)),
        ];
        for (case, deps, lbs, shifting, want) in cases {
            let settings = ShiftSettings {
                hooks: vec![PauseHook {
                    stages: vec![DeploymentLifecycleHookStage::PostScaleUp],
                    timeout_minutes: 1,
                    timeout_action: DeploymentLifecycleHookAction::Continue,
                }],
                ..ShiftSettings::new(DeploymentStrategy::BlueGreen)
            };
            let got = new_record(&deps, &lbs, shifting.then_some(&settings));
            assert_eq!(got.as_ref().map(|r| (r.alternate, r.shifting)), want, "{case}");
            if let Some(r) = got {
                // A shifting deployment keeps the hooks, a seed for their ids, and whether
                // it starts with more than one revision ACTIVE.
                assert_eq!(r.hooks.len(), usize::from(r.shifting), "{case}");
                assert_eq!(r.hook_seed.len(), if r.shifting { 12 } else { 0 }, "{case}");
                assert_eq!(r.reconcile, r.shifting && deps.len() > 1, "{case}");
            }
        }
    }
}
