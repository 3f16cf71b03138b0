//! ELBv2's side of services behind load balancers: [`LoadBalancing`] for the ECS service
//! controller. Registration edits the target group's record with compare-and-set, as
//! RegisterTargets and DeregisterTargets do (the data plane follows the record; a
//! deregistered target drains for the group's deregistration delay); target health is the
//! data plane's, as DescribeTargetHealth answers it.
//!
//! Invariant: [`LoadBalancing::sync_targets`] only removes targets the caller says it owns,
//! so targets a user registered by hand in the same group are never touched.

use berth_model::elbv2::{self as model, keys};
use berth_wire::AwsError;

use super::Elbv2;
use crate::ecs::load_balancers::{
    BoxFuture, LoadBalancing, ServiceTarget, TargetGroupInfo, TargetState,
};
use crate::records;

/// Default `deregistration_delay.timeout_seconds` (ELB's).
const DEFAULT_DEREGISTRATION_DELAY: u32 = 300;

fn same(r: &model::TargetRecord, t: &ServiceTarget) -> bool {
    r.id == t.id && r.port == t.port
}

impl LoadBalancing for Elbv2 {
    fn target_group<'a>(
        &'a self,
        arn: &'a str,
    ) -> BoxFuture<'a, Result<Option<TargetGroupInfo>, AwsError>> {
        Box::pin(async move {
            let tg = match Elbv2::target_group(self, arn).await {
                Ok((tg, _)) => tg,
                Err(e) if e.code == "TargetGroupNotFound" => return Ok(None),
                Err(e) => return Err(e),
            };
            let users = self.tg_users().await?;
            Ok(Some(TargetGroupInfo {
                arn: tg.arn.clone(),
                target_type: tg.target_type.clone(),
                deregistration_delay_secs: tg
                    .attributes
                    .get("deregistration_delay.timeout_seconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(DEFAULT_DEREGISTRATION_DELAY),
                load_balancer_arns: users.get(&tg.arn).cloned().unwrap_or_default(),
            }))
        })
    }

    fn sync_targets<'a>(
        &'a self,
        arn: &'a str,
        want: Vec<ServiceTarget>,
        owned: Vec<ServiceTarget>,
    ) -> BoxFuture<'a, Result<(usize, usize), AwsError>> {
        Box::pin(async move {
            let tg = match Elbv2::target_group(self, arn).await {
                Ok((tg, _)) => tg,
                Err(e) if e.code == "TargetGroupNotFound" => return Ok((0, 0)),
                Err(e) => return Err(e),
            };
            let needed = |r: &model::TargetGroupRecord| {
                let add = want.iter().filter(|t| !r.targets.iter().any(|x| same(x, t))).count();
                let remove = r
                    .targets
                    .iter()
                    .filter(|x| owned.iter().any(|t| same(x, t)))
                    .filter(|x| !want.iter().any(|t| same(x, t)))
                    .count();
                (add, remove)
            };
            if needed(&tg) == (0, 0) {
                return Ok((0, 0));
            }
            let mut counts = (0, 0);
            records::update::<model::TargetGroupRecord, _>(
                self.store(),
                &keys::target_group(&tg.id),
                arn,
                |r| {
                    counts = needed(r);
                    r.targets.retain(|x| {
                        !owned.iter().any(|t| same(x, t)) || want.iter().any(|t| same(x, t))
                    });
                    for t in &want {
                        if !r.targets.iter().any(|x| same(x, t)) {
                            r.targets.push(model::TargetRecord {
                                id: t.id.clone(),
                                port: t.port,
                                availability_zone: None,
                                address: t.address,
                            });
                        }
                    }
                    Ok(())
                },
            )
            .await?;
            Ok(counts)
        })
    }

    fn target_state(&self, arn: &str, target: &ServiceTarget) -> TargetState {
        let Some(reports) = self.lb.group_health(arn) else { return TargetState::Other };
        match reports.iter().find(|r| r.id == target.id && r.port == target.port) {
            Some(r) if r.state == berth_lb::HealthState::Healthy => TargetState::Healthy,
            Some(r) if r.state == berth_lb::HealthState::Unhealthy => TargetState::Unhealthy,
            _ => TargetState::Other,
        }
    }
}
