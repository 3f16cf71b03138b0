//! RegisterTargets, DeregisterTargets, DescribeTargetHealth. Registration edits the target
//! group's record; health comes from the region's data plane ([`berth_lb::Lb::group_health`]):
//! a registered target the data plane has not seen yet is `initial`
//! (`Elb.RegistrationInProgress`), a deregistered one it still drains is `draining`
//! (`Target.DeregistrationInProgress`), a target named but not registered is `unused`
//! (`Target.NotRegistered`), an instance target whose instance is neither pending nor running
//! is `unused` (`Target.InvalidState`).

use std::net::IpAddr;

use berth_instances::record::{self as irec, InstanceRecord, InstanceState};
use berth_model::elbv2::{self as model, keys};
use berth_wire::AwsError;
use berth_wire::elbv2 as wire;

use super::{Elbv2, codes};
use crate::ecs::RequestContext;
use crate::records;

/// ELB's limit of targets per target group.
const MAX_TARGETS: usize = 1000;

/// The targets a call names, with their ports (the group's port when none is given).
fn named(
    given: Option<Vec<wire::TargetDescription>>,
    tg: &model::TargetGroupRecord,
) -> Result<Vec<model::TargetRecord>, AwsError> {
    let given = given.unwrap_or_default();
    if given.is_empty() {
        return Err(codes::validation("Targets: at least one target is required"));
    }
    let mut out = Vec::new();
    for (i, t) in given.into_iter().enumerate() {
        let p = format!("Targets.member.{}", i + 1);
        let id =
            t.id.filter(|s| !s.is_empty())
                .ok_or_else(|| codes::validation(format!("{p}.Id: required")))?;
        let port = match t.port {
            None => tg.port,
            Some(n) if (1..=65535).contains(&n) => n as u16,
            Some(n) => {
                return Err(codes::validation(format!("{p}.Port: {n} is not between 1 and 65535")));
            }
        };
        if tg.target_type == "ip" && id.parse::<IpAddr>().is_err() {
            return Err(codes::err(
                "InvalidTarget",
                format!(
                    "{p}.Id: '{id}' is not an IP address (the target group's targets are of type ip)"
                ),
            ));
        }
        if tg.target_type == "instance" && !id.starts_with("i-") {
            return Err(codes::err(
                "InvalidTarget",
                format!(
                    "{p}.Id: '{id}' is not an instance id (the target group's targets are of type instance)"
                ),
            ));
        }
        out.push(model::TargetRecord {
            id,
            port,
            availability_zone: t.availability_zone,
            address: None,
        });
    }
    Ok(out)
}

/// Where traffic to an instance target goes: the host its agent runs on. Agents of
/// RunInstances run on the server's own host, so their tasks' host ports are on loopback.
pub(super) fn instance_address(rec: &InstanceRecord) -> Option<IpAddr> {
    matches!(rec.state, InstanceState::Pending | InstanceState::Running)
        .then_some(IpAddr::from([127, 0, 0, 1]))
}

impl wire::TargetsApi<RequestContext> for Elbv2 {
    async fn register_targets(
        &self,
        _ctx: &RequestContext,
        input: wire::RegisterTargetsInput,
    ) -> Result<wire::RegisterTargetsOutput, AwsError> {
        let arn = input.target_group_arn.unwrap_or_default();
        let (tg, _) = self.target_group(&arn).await?;
        let targets = named(input.targets, &tg)?;
        if tg.target_type == "instance" {
            let mut bad = Vec::new();
            for t in &targets {
                let rec = records::get::<InstanceRecord>(self.store(), &irec::key(&t.id)).await?;
                if rec.is_none_or(|(r, _)| instance_address(&r).is_none()) {
                    bad.push(t.id.clone());
                }
            }
            if !bad.is_empty() {
                return Err(codes::err(
                    "InvalidTarget",
                    format!(
                        "The following targets are not in a running state and cannot be registered: '{}'",
                        bad.join("', '")
                    ),
                ));
            }
        }
        records::update::<model::TargetGroupRecord, _>(
            self.store(),
            &keys::target_group(&tg.id),
            &arn,
            |r| {
                for t in &targets {
                    if !r.targets.iter().any(|x| x.id == t.id && x.port == t.port) {
                        r.targets.push(t.clone());
                    }
                }
                if r.targets.len() > MAX_TARGETS {
                    return Err(codes::err(
                        "TooManyTargets",
                        format!("A target group can have at most {MAX_TARGETS} targets"),
                    ));
                }
                Ok(())
            },
        )
        .await?
        .filter(|r| r.arn == arn)
        .ok_or_else(|| codes::tg_not_found(&arn))?;
        Ok(wire::RegisterTargetsOutput {})
    }

    async fn deregister_targets(
        &self,
        _ctx: &RequestContext,
        input: wire::DeregisterTargetsInput,
    ) -> Result<wire::DeregisterTargetsOutput, AwsError> {
        let arn = input.target_group_arn.unwrap_or_default();
        let (tg, _) = self.target_group(&arn).await?;
        let targets = named(input.targets, &tg)?;
        records::update::<model::TargetGroupRecord, _>(
            self.store(),
            &keys::target_group(&tg.id),
            &arn,
            |r| {
                let missing: Vec<String> = targets
                    .iter()
                    .filter(|t| !r.targets.iter().any(|x| x.id == t.id && x.port == t.port))
                    .map(|t| format!("Id={},Port={}", t.id, t.port))
                    .collect();
                if !missing.is_empty() {
                    return Err(codes::err(
                        "InvalidTarget",
                        format!(
                            "The following targets are not registered in target group '{arn}': {}",
                            missing.join("; ")
                        ),
                    ));
                }
                r.targets.retain(|x| !targets.iter().any(|t| x.id == t.id && x.port == t.port));
                Ok(())
            },
        )
        .await?
        .filter(|r| r.arn == arn)
        .ok_or_else(|| codes::tg_not_found(&arn))?;
        Ok(wire::DeregisterTargetsOutput {})
    }

    async fn describe_target_health(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeTargetHealthInput,
    ) -> Result<wire::DescribeTargetHealthOutput, AwsError> {
        let arn = input.target_group_arn.unwrap_or_default();
        let (tg, _) = self.target_group(&arn).await?;
        let reports = self.lb.group_health(&arn).unwrap_or_default();
        let asked = match input.targets {
            Some(t) if !t.is_empty() => Some(named(Some(t), &tg)?),
            _ => None,
        };
        let hc_port = |port: u16| {
            if tg.health_check.port == "traffic-port" {
                port.to_string()
            } else {
                tg.health_check.port.clone()
            }
        };
        // Instance targets whose instance is not pending or running (the data plane leaves
        // them out): ELB's `unused` / `Target.InvalidState`.
        let mut stopped = std::collections::HashSet::new();
        if tg.target_type == "instance" {
            for t in tg.targets.iter().filter(|t| t.address.is_none()) {
                let rec = records::get::<InstanceRecord>(self.store(), &irec::key(&t.id)).await?;
                if rec.is_none_or(|(r, _)| instance_address(&r).is_none()) {
                    stopped.insert(t.id.clone());
                }
            }
        }
        let describe = |t: &model::TargetRecord| {
            let registered = tg.targets.iter().any(|x| x.id == t.id && x.port == t.port);
            let report = reports.iter().find(|r| r.id == t.id && r.port == t.port);
            let (state, reason, description) = match (registered, report) {
                (_, Some(r)) => (
                    r.state.as_str().to_string(),
                    r.reason.map(|x| x.code().to_string()),
                    r.description.clone(),
                ),
                (true, None) if stopped.contains(&t.id) => (
                    "unused".into(),
                    Some("Target.InvalidState".into()),
                    Some("Target is in the stopped state".into()),
                ),
                (true, None) => (
                    "initial".into(),
                    Some("Elb.RegistrationInProgress".into()),
                    Some("Target registration is in progress".into()),
                ),
                (false, None) => (
                    "unused".into(),
                    Some("Target.NotRegistered".into()),
                    Some("Target is not registered to the target group".into()),
                ),
            };
            wire::TargetHealthDescription {
                target: Some(wire::TargetDescription {
                    id: Some(t.id.clone()),
                    port: Some(i32::from(t.port)),
                    availability_zone: t.availability_zone.clone(),
                    ..Default::default()
                }),
                health_check_port: Some(hc_port(t.port)),
                target_health: Some(wire::TargetHealth {
                    state: wire::TargetHealthStateEnum::from_str(&state),
                    reason: reason.as_deref().and_then(wire::TargetHealthReasonEnum::from_str),
                    description,
                }),
                ..Default::default()
            }
        };
        let mut out: Vec<wire::TargetHealthDescription> = Vec::new();
        match asked {
            Some(asked) => out.extend(asked.iter().map(describe)),
            None => {
                out.extend(tg.targets.iter().map(describe));
                // Deregistered targets the data plane still drains.
                for r in reports.iter().filter(|r| {
                    r.state == berth_lb::HealthState::Draining
                        && !tg.targets.iter().any(|x| x.id == r.id && x.port == r.port)
                }) {
                    out.push(describe(&model::TargetRecord {
                        id: r.id.clone(),
                        port: r.port,
                        availability_zone: None,
                        address: None,
                    }));
                }
            }
        }
        Ok(wire::DescribeTargetHealthOutput { target_health_descriptions: Some(out) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg(target_type: &str) -> model::TargetGroupRecord {
        model::TargetGroupRecord {
            arn: "arn".into(),
            id: "id".into(),
            name: "tg".into(),
            protocol: "HTTP".into(),
            port: 80,
            vpc_id: "vpc".into(),
            target_type: target_type.into(),
            health_check: super::super::target_groups::health_check(
                "HTTP",
                None,
                &Default::default(),
            )
            .unwrap(),
            attributes: Default::default(),
            targets: vec![],
            tags: vec![],
        }
    }

    fn t(id: &str, port: Option<i32>) -> wire::TargetDescription {
        wire::TargetDescription { id: Some(id.into()), port, ..Default::default() }
    }

    #[test]
    fn targets_take_the_group_port_and_type() {
        let got =
            named(Some(vec![t("10.0.0.1", None), t("10.0.0.2", Some(8080))]), &tg("ip")).unwrap();
        assert_eq!((got[0].port, got[1].port), (80, 8080));
        let cases = [
            (vec![], "ip", "ValidationError"),
            (vec![t("i-123", None)], "ip", "InvalidTarget"),
            (vec![t("10.0.0.1", None)], "instance", "InvalidTarget"),
            (vec![t("10.0.0.1", Some(0))], "ip", "ValidationError"),
        ];
        for (given, kind, code) in cases {
            assert_eq!(named(Some(given), &tg(kind)).unwrap_err().code, code);
        }
    }
}
