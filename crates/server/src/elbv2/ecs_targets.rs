//! ELBv2's side of services behind load balancers: [`LoadBalancing`] for the ECS service
//! controller. Registration edits the target group's record with compare-and-set, as
//! RegisterTargets and DeregisterTargets do (the data plane follows the record; a
//! deregistered target drains for the group's deregistration delay); target health is the
//! data plane's, as DescribeTargetHealth answers it.
//!
//! Invariant: [`LoadBalancing::sync_targets`] only removes targets the caller says it owns,
//! so targets a user registered by hand in the same group are never touched.

use berth_model::elbv2::{self as model, ParsedArn, keys};
use berth_wire::AwsError;

use super::Elbv2;
use crate::ecs::load_balancers::{
    BoxFuture, ForwardGroups, LoadBalancing, ServiceTarget, TargetGroupInfo, TargetState,
};
use crate::records;

/// Default `deregistration_delay.timeout_seconds` (ELB's).
const DEFAULT_DEREGISTRATION_DELAY: u32 = 300;

fn same(r: &model::TargetRecord, t: &ServiceTarget) -> bool {
    r.id == t.id && r.port == t.port
}

impl Elbv2 {
    /// The store key of the listener that holds `rule` (a rule or listener ARN).
    fn rule_key(&self, rule: &str) -> Option<String> {
        match self.parse(rule)? {
            ParsedArn::Rule { lb_id, listener_id, .. } => {
                Some(keys::listener(&lb_id, &listener_id))
            }
            ParsedArn::Listener { lb_id, id } => Some(keys::listener(&lb_id, &id)),
            _ => None,
        }
    }

    /// The actions of `rule` in `l`: a listener ARN or its default rule's names the default
    /// actions.
    fn rule_actions<'l>(
        &self,
        l: &'l mut model::ListenerRecord,
        rule: &str,
    ) -> Option<&'l mut Vec<model::ActionRecord>> {
        if l.arn == rule || self.rule_arn(l, &l.default_rule_id) == rule {
            return Some(&mut l.default_actions);
        }
        l.rules.iter_mut().find(|r| r.arn == rule).map(|r| &mut r.actions)
    }
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

    fn forward_groups<'a>(
        &'a self,
        rule: &'a str,
    ) -> BoxFuture<'a, Result<Option<ForwardGroups>, AwsError>> {
        Box::pin(async move {
            let Some(key) = self.rule_key(rule) else { return Ok(None) };
            let Some((mut l, _)) =
                records::get::<model::ListenerRecord>(self.store(), &key).await?
            else {
                return Ok(None);
            };
            let Some(actions) = self.rule_actions(&mut l, rule) else { return Ok(None) };
            Ok(actions.iter().find_map(|a| match a {
                model::ActionRecord::Forward { target_groups, .. } => Some(
                    target_groups.iter().map(|g| (g.target_group_arn.clone(), g.weight)).collect(),
                ),
                _ => None,
            }))
        })
    }

    fn set_forward_groups<'a>(
        &'a self,
        rule: &'a str,
        groups: Vec<(String, u32)>,
    ) -> BoxFuture<'a, Result<bool, AwsError>> {
        Box::pin(async move {
            let Some(key) = self.rule_key(rule) else { return Ok(false) };
            let mut changed = false;
            records::update::<model::ListenerRecord, _>(self.store(), &key, rule, |l| {
                changed = false;
                let Some(actions) = self.rule_actions(l, rule) else { return Ok(()) };
                for a in actions.iter_mut() {
                    if let model::ActionRecord::Forward { target_groups, single, .. } = a {
                        let want: Vec<model::WeightedGroup> = groups
                            .iter()
                            .map(|(arn, weight)| model::WeightedGroup {
                                target_group_arn: arn.clone(),
                                weight: *weight,
                            })
                            .collect();
                        if *target_groups != want {
                            *target_groups = want;
                            *single = false;
                            changed = true;
                        }
                        break;
                    }
                }
                Ok(())
            })
            .await?;
            Ok(changed)
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
