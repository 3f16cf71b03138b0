//! The Application Auto Scaling controller: one supervised, level-triggered loop per region
//! that, every evaluation period, evaluates every scalable target's scheduled actions, bounds
//! and policies, and changes the ECS service's desired count through UpdateService.
//!
//! ```text
//!  appautoscaling/targets, policies, scheduled ──▶ pass (every period)
//!      + ECS DescribeServices (desired count)          │ MetricSource: one window per period
//!      + CloudWatch (MetricSource, AlarmSink)          ▼
//!  berth_controllers::app_scaling (pure) ──▶ UpdateService(desiredCount) + a scaling activity
//!                                         ──▶ CAS on the policy (lastScaleOut / lastScaleIn)
//! ```
//!
//! Contract and invariants:
//! * a pass reads everything afresh: a missed pass, a restart or a conflict delays scaling by
//!   one period, never doubles it (a policy's cooldown memory and a scheduled action's
//!   `evaluatedTo` are written with compare-and-set after the change they guard);
//! * order within a target: scheduled actions (they move the bounds), then the bounds (a
//!   desired count outside `[min, max]` is brought inside), then each policy in name order on
//!   the count the previous step left;
//! * target tracking reads its metric's statistic over each of the last
//!   `evaluation_range(LOW_DATAPOINTS)` periods ending now, as its alarms would; step scaling reads the alarms
//!   whose actions name the policy ([`super::metrics::AlarmSink::alarms_with_action`]) and the
//!   breach of each one in ALARM over its own period;
//! * every change is recorded as an activity worded as AWS words it; a change ECS refuses is
//!   recorded as `Failed` with ECS's message.

use std::sync::Arc;

use berth_controllers::app_scaling::{
    self as pure, Alarm, Bounds, Decision, LOW_DATAPOINTS, TargetTracking, TrackingInput,
};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::appautoscaling::{self as wire, ScalingActivityStatusCode as Status};
use tokio::sync::watch;

use super::metrics::{AlarmSpec, Comparison, Statistic};
use super::{AppAutoScaling, PolicyRecord, ScheduledRecord, TargetId, TargetRecord};
use crate::records;

/// One region's loop, until `stop` is set.
pub(crate) async fn run(aas: Arc<AppAutoScaling>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let started = std::time::Instant::now();
        let result = pass(&aas).await;
        crate::cloudwatch::prometheus::observe_pass(
            "application-autoscaling",
            aas.region.name,
            started,
            result.is_ok(),
        );
        if let Err(e) = result {
            tracing::warn!(region = aas.region.name, error = %e.message, "Application Auto Scaling pass failed");
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(aas.period) => {}
        }
    }
}

/// The alarms target tracking keeps for `policy` (AlarmHigh, AlarmLow), as AWS creates them:
/// high after 3 periods above the target, low after 15 below 90% of it.
pub(crate) fn alarm_specs(
    policy: &PolicyRecord,
    namespace: &str,
    metric: &str,
    dimensions: &[(String, String)],
    statistic: Statistic,
    target: f64,
    period: std::time::Duration,
) -> Vec<AlarmSpec> {
    let period_secs = period.as_secs().max(1) as u32;
    policy
        .alarms
        .iter()
        .filter_map(|a| a.alarm_name.clone())
        .map(|name| {
            let high = name.contains("-AlarmHigh-");
            let (n, threshold, comparison) = if high {
                (pure::HIGH_DATAPOINTS, target, Comparison::GreaterThanThreshold)
            } else {
                (LOW_DATAPOINTS, target * pure::LOW_FACTOR, Comparison::LessThanThreshold)
            };
            AlarmSpec {
                description: format!(
                    "DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {}.",
                    policy.arn
                ),
                name,
                namespace: namespace.into(),
                metric: metric.into(),
                dimensions: dimensions.to_vec(),
                statistic,
                period_secs,
                evaluation_periods: n as u32,
                datapoints_to_alarm: n as u32,
                threshold,
                comparison,
                alarm_actions: vec![policy.arn.clone()],
            }
        })
        .collect()
}

/// One pass over every scalable target of the region.
pub(crate) async fn pass(aas: &AppAutoScaling) -> Result<(), AwsError> {
    for (target, _) in aas.targets().await? {
        if let Err(e) = target_pass(aas, target).await {
            tracing::warn!(error = %e.message, "Application Auto Scaling target pass failed");
        }
    }
    Ok(())
}

fn successful(n: u32) -> Option<String> {
    Some(format!("Successfully set desired count to {n}. Change successfully fulfilled by ecs."))
}

/// Sets the desired count and records the activity (Failed with ECS's message if refused).
async fn scale(
    aas: &AppAutoScaling,
    id: &TargetId,
    to: u32,
    cause: String,
) -> Result<bool, AwsError> {
    let description = format!("Setting desired count to {to}.");
    match aas.set_desired(id, to).await {
        Ok(()) => {
            aas.record_activity(id, description, cause, Status::Successful, successful(to)).await?;
            Ok(true)
        }
        Err(e) => {
            aas.record_activity(
                id,
                description,
                cause,
                Status::Failed,
                Some(format!("Failed to set desired count to {to}: {}", e.message)),
            )
            .await?;
            Ok(false)
        }
    }
}

async fn target_pass(aas: &AppAutoScaling, mut target: TargetRecord) -> Result<(), AwsError> {
    let id = target.id();
    let Some(mut desired) = aas.service_desired(&id).await? else { return Ok(()) };
    let now_ms = aas.now_ms();

    // Scheduled actions move the bounds.
    for (action, rev) in aas.scheduled_of(&id).await? {
        if let Some(t) = scheduled_pass(aas, &id, &mut target, action, rev, now_ms).await? {
            target = t;
        }
    }

    // The bounds.
    let bounds = Bounds { min: target.min, max: target.max };
    let inside = bounds.clamp(i64::from(desired));
    if inside != desired {
        let cause = if desired < target.min {
            format!("minimum capacity was set to {}", target.min)
        } else {
            format!("maximum capacity was set to {}", target.max)
        };
        if scale(aas, &id, inside, cause).await? {
            desired = inside;
        }
    }

    // The policies.
    let suspended = &target.suspended;
    let out_suspended = suspended.dynamic_scaling_out_suspended == Some(true);
    let in_suspended = suspended.dynamic_scaling_in_suspended == Some(true);
    for (policy, rev) in aas.policies_of(&id).await? {
        let decision = match policy.policy_type {
            wire::PolicyType::TargetTrackingScaling => {
                tracking_decision(
                    aas,
                    &id,
                    &policy,
                    desired,
                    bounds,
                    now_ms,
                    (out_suspended, in_suspended),
                )
                .await?
            }
            wire::PolicyType::StepScaling => {
                step_decision(aas, &policy, desired, bounds, now_ms, (out_suspended, in_suspended))
                    .await?
            }
            wire::PolicyType::PredictiveScaling => None,
        };
        let Some((Decision::Scale { alarm, to, .. }, alarm_name)) = decision else { continue };
        let cause =
            format!("monitor alarm {alarm_name} in state ALARM triggered policy {}", policy.name);
        if !scale(aas, &id, to, cause).await? {
            continue;
        }
        desired = to;
        // The cooldown memory, after the change it guards.
        let key = id.policy(&policy.name);
        let mut p = policy.clone();
        match alarm {
            Alarm::High => p.last_scale_out = Some(now_ms),
            Alarm::Low => p.last_scale_in = Some(now_ms),
        }
        if !records::commit(&*aas.store, Txn::new().when(&key, rev).put(&key, records::encode(&p)))
            .await?
        {
            tracing::debug!(policy = %policy.name, "policy changed during its evaluation; its cooldown restarts next pass");
        }
    }
    Ok(())
}

/// Fires `action` if its schedule fired since it was last evaluated; returns the target as
/// the action left it.
async fn scheduled_pass(
    aas: &AppAutoScaling,
    id: &TargetId,
    target: &mut TargetRecord,
    action: ScheduledRecord,
    rev: u64,
    now_ms: i64,
) -> Result<Option<TargetRecord>, AwsError> {
    if action.evaluated_to >= now_ms {
        return Ok(None);
    }
    let key = id.scheduled(&action.name);
    let (Ok(schedule), Ok(tz)) =
        (pure::Schedule::parse(&action.schedule), pure::time_zone(action.timezone.as_deref()))
    else {
        return Ok(None);
    };
    let anchor =
        action.start.map(|s| (s * 1000.0) as i64).unwrap_or((action.created * 1000.0) as i64);
    let fired = schedule.latest_fire(
        &tz,
        anchor,
        (action.evaluated_to, now_ms),
        action.start.map(|s| (s * 1000.0) as i64),
        action.end.map(|s| (s * 1000.0) as i64),
    );
    let mut next = action.clone();
    next.evaluated_to = now_ms;
    // Claim the firing first: a lost compare means another writer moved it (skip this pass).
    if !records::commit(&*aas.store, Txn::new().when(&key, rev).put(&key, records::encode(&next)))
        .await?
    {
        return Ok(None);
    }
    if fired.is_none() || target.suspended.scheduled_scaling_suspended == Some(true) {
        return Ok(None);
    }
    // Apply the action's bounds to the target.
    let tkey = id.key();
    let mut cas = records::Cas::new(&*aas.store, format!("scalable target {}", id.resource_id));
    let updated = loop {
        cas.attempt().await?;
        let Some((mut t, trev)) = records::get::<TargetRecord>(&*aas.store, &tkey).await? else {
            return Ok(None);
        };
        if let Some(min) = action.action.min_capacity {
            t.min = min.max(0) as u32;
            t.max = t.max.max(t.min);
        }
        if let Some(max) = action.action.max_capacity {
            t.max = max.max(0) as u32;
            t.min = t.min.min(t.max);
        }
        if cas.commit(Txn::new().when(&tkey, trev).put(&tkey, records::encode(&t))).await? {
            break t;
        }
    };
    let description = match (action.action.min_capacity, action.action.max_capacity) {
        (Some(a), Some(b)) => format!("Setting min capacity to {a} and max capacity to {b}"),
        (Some(a), None) => format!("Setting min capacity to {a}"),
        (None, Some(b)) => format!("Setting max capacity to {b}"),
        (None, None) => "Setting no capacity".into(),
    };
    aas.record_activity(
        id,
        description,
        format!("scheduled action name {} was triggered", action.name),
        Status::Successful,
        None,
    )
    .await?;
    *target = updated.clone();
    Ok(Some(updated))
}

async fn tracking_decision(
    aas: &AppAutoScaling,
    id: &TargetId,
    policy: &PolicyRecord,
    desired: u32,
    bounds: Bounds,
    now_ms: i64,
    suspended: (bool, bool),
) -> Result<Option<(Decision, String)>, AwsError> {
    let Some(c) = policy.tracking.as_ref() else { return Ok(None) };
    let Some(source) = aas.cloudwatch.metrics.get() else { return Ok(None) };
    let Ok((ns, metric, dims, stat)) = super::tracked_metric(id, c) else { return Ok(None) };
    let period_ms = aas.period.as_millis().max(1) as i64;
    let windows = pure::evaluation_range(LOW_DATAPOINTS);
    let mut points = Vec::with_capacity(windows);
    for k in (0..windows as i64).rev() {
        let end = now_ms - k * period_ms;
        let v = source
            .statistic(aas.region.name, &ns, &metric, &dims, stat, end - period_ms, end)
            .await
            .map_err(|e| AwsError::new("InternalServiceException", 500, e.0))?;
        points.push(v);
    }
    let settings = TargetTracking {
        target: c.target_value.unwrap_or_default(),
        scale_out_cooldown_ms: i64::from(c.scale_out_cooldown.unwrap_or(300).max(0)) * 1000,
        scale_in_cooldown_ms: i64::from(c.scale_in_cooldown.unwrap_or(300).max(0)) * 1000,
        disable_scale_in: c.disable_scale_in == Some(true),
    };
    let input = TrackingInput {
        current: desired,
        bounds,
        datapoints: &points,
        last_scale_out_ms: policy.last_scale_out,
        last_scale_in_ms: policy.last_scale_in,
        now_ms,
        scale_out_suspended: suspended.0,
        scale_in_suspended: suspended.1,
    };
    let decision = pure::target_tracking(&settings, &input);
    let alarm_name = |kind: &str| {
        policy
            .alarms
            .iter()
            .filter_map(|a| a.alarm_name.clone())
            .find(|n| n.contains(&format!("-{kind}-")))
            .unwrap_or_else(|| format!("TargetTracking-{}-{kind}", id.resource_id))
    };
    Ok(match decision {
        Decision::Scale { alarm: Alarm::High, .. } | Decision::Held { alarm: Alarm::High, .. } => {
            Some((decision, alarm_name("AlarmHigh")))
        }
        Decision::Scale { alarm: Alarm::Low, .. } | Decision::Held { alarm: Alarm::Low, .. } => {
            Some((decision, alarm_name("AlarmLow")))
        }
        Decision::Ok => None,
    })
}

async fn step_decision(
    aas: &AppAutoScaling,
    policy: &PolicyRecord,
    desired: u32,
    bounds: Bounds,
    now_ms: i64,
    suspended: (bool, bool),
) -> Result<Option<(Decision, String)>, AwsError> {
    let Some(c) = policy.step.as_ref() else { return Ok(None) };
    let (Some(source), Some(alarms)) = (aas.cloudwatch.metrics.get(), aas.cloudwatch.alarms.get())
    else {
        return Ok(None);
    };
    let Ok(step) = super::step_policy(c) else { return Ok(None) };
    let views = match alarms.alarms_with_action(aas.region.name, &policy.arn).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(policy = %policy.name, error = %e, "step scaling cannot read its alarms");
            return Ok(None);
        }
    };
    let last = policy.last_scale_out.max(policy.last_scale_in);
    for a in views.into_iter().filter(|a| a.in_alarm) {
        let period_ms = i64::from(a.period_secs.max(1)) * 1000;
        let value = source
            .statistic(
                aas.region.name,
                &a.namespace,
                &a.metric,
                &a.dimensions,
                a.statistic,
                now_ms - period_ms,
                now_ms,
            )
            .await
            .map_err(|e| AwsError::new("InternalServiceException", 500, e.0))?;
        let Some(value) = value else { continue };
        let d = pure::step_scaling(
            &step,
            desired,
            bounds,
            value - a.threshold,
            value,
            last,
            now_ms,
            suspended,
        );
        if !matches!(d, Decision::Ok) {
            return Ok(Some((d, a.name)));
        }
    }
    Ok(None)
}
