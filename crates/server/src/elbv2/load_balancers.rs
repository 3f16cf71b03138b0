//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer and the load balancer
//! attributes. A load balancer's subnets and security groups are the region's EC2 records;
//! it is `active` as soon as it is created (its listeners bind when the data plane applies).

use std::collections::HashSet;

use berth_model::elbv2::{self as model, LbType, keys};
use berth_model::network::{self, SecurityGroupRecord, SubnetRecord};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::elbv2 as wire;

use super::{Elbv2, codes, list, new_id, new_tags, page};
use crate::ecs::RequestContext;
use crate::records::{self, Cas, encode};

/// ELB's name rule for load balancers and target groups: 1-32 letters, digits and hyphens,
/// not starting or ending with a hyphen.
pub(super) fn check_name(param: &str, name: &str) -> Result<(), AwsError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(codes::validation(format!(
            "{param}: '{name}' must be 1-32 letters, digits and hyphens, and must not begin or end with a hyphen"
        )));
    }
    Ok(())
}

/// Checks an attribute change against ELB's keys and value rules.
pub(super) fn check_attribute(
    known: &std::collections::BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> Result<(), AwsError> {
    if !known.contains_key(key) {
        return Err(codes::validation(format!("Attributes: attribute key '{key}' is not valid")));
    }
    let bad = |why: &str| {
        Err(codes::validation(format!("Attributes: '{value}' is not valid for '{key}': {why}")))
    };
    let int = value.parse::<i64>();
    match key {
        k if k.ends_with(".enabled") && value != "true" && value != "false" => {
            bad("must be true or false")
        }
        "idle_timeout.timeout_seconds" if !matches!(int, Ok(1..=4000)) => bad("must be 1-4000"),
        "deregistration_delay.timeout_seconds" if !matches!(int, Ok(0..=3600)) => {
            bad("must be 0-3600")
        }
        "slow_start.duration_seconds" if !matches!(int, Ok(0) | Ok(30..=900)) => {
            bad("must be 0 or 30-900")
        }
        "stickiness.lb_cookie.duration_seconds" if !matches!(int, Ok(1..=604_800)) => {
            bad("must be 1-604800")
        }
        "stickiness.type" if !matches!(value, "lb_cookie" | "source_ip" | "app_cookie") => {
            bad("must be lb_cookie, app_cookie or source_ip")
        }
        "load_balancing.algorithm.type" if value != "round_robin" => {
            bad("Berth balances round_robin only")
        }
        _ => Ok(()),
    }
}

impl Elbv2 {
    fn wire_lb(&self, r: &model::LoadBalancerRecord) -> wire::LoadBalancer {
        wire::LoadBalancer {
            load_balancer_arn: Some(r.arn.clone()),
            dns_name: Some(r.dns_name.clone()),
            canonical_hosted_zone_id: Some("Z0BERTHLOCAL".into()),
            created_time: Some(r.created_time),
            load_balancer_name: Some(r.name.clone()),
            scheme: wire::LoadBalancerSchemeEnum::from_str(&r.scheme),
            vpc_id: Some(r.vpc_id.clone()),
            state: Some(self.lb_state(r)),
            r#type: wire::LoadBalancerTypeEnum::from_str(r.lb_type.as_str()),
            availability_zones: Some(
                r.subnets
                    .iter()
                    .map(|s| wire::AvailabilityZone {
                        zone_name: Some(s.zone.clone()),
                        subnet_id: Some(s.subnet_id.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            security_groups: (r.lb_type == LbType::Application).then(|| r.security_groups.clone()),
            ip_address_type: wire::IpAddressType::from_str(&r.ip_address_type),
            ..Default::default()
        }
    }

    /// `active`, or `active_impaired` naming the listeners whose ports cannot be bound.
    fn lb_state(&self, r: &model::LoadBalancerRecord) -> wire::LoadBalancerState {
        let mine = format!("/{}/{}/", r.name, r.id);
        let mut errors: Vec<String> = self
            .bind_errors()
            .into_iter()
            .filter(|(arn, _)| arn.contains(&mine))
            .map(|(arn, e)| format!("listener {arn} cannot bind {e}"))
            .collect();
        errors.sort();
        if errors.is_empty() {
            return wire::LoadBalancerState {
                code: Some(wire::LoadBalancerStateEnum::Active),
                reason: None,
            };
        }
        wire::LoadBalancerState {
            code: Some(wire::LoadBalancerStateEnum::ActiveImpaired),
            reason: Some(errors.join("; ")),
        }
    }

    /// The subnets a create call names, checked against the EC2 records.
    async fn lb_subnets(
        &self,
        input: &wire::CreateLoadBalancerInput,
        lb_type: LbType,
    ) -> Result<Vec<SubnetRecord>, AwsError> {
        let mut ids: Vec<(String, String)> = Vec::new();
        for (i, s) in input.subnets.iter().flatten().enumerate() {
            ids.push((format!("Subnets.member.{}", i + 1), s.clone()));
        }
        for (i, m) in input.subnet_mappings.iter().flatten().enumerate() {
            let p = format!("SubnetMappings.member.{}.SubnetId", i + 1);
            let id =
                m.subnet_id.clone().ok_or_else(|| codes::validation(format!("{p}: required")))?;
            ids.push((p, id));
        }
        if input.subnets.is_some() && input.subnet_mappings.is_some() {
            return Err(codes::validation("Subnets: give Subnets or SubnetMappings, not both"));
        }
        let mut out: Vec<SubnetRecord> = Vec::new();
        for (param, id) in ids {
            let Some((s, _)) =
                records::get::<SubnetRecord>(self.store(), &network::keys::subnet(&id)).await?
            else {
                return Err(codes::err(
                    "SubnetNotFound",
                    format!("{param}: the subnet ID '{id}' is not valid"),
                ));
            };
            if out.iter().any(|o| o.id == s.id) {
                continue;
            }
            if out.iter().any(|o| o.availability_zone == s.availability_zone) {
                return Err(codes::invalid_config(format!(
                    "A load balancer cannot be attached to multiple subnets in the same Availability Zone ({})",
                    s.availability_zone
                )));
            }
            if let Some(first) = out.first()
                && first.vpc_id != s.vpc_id
            {
                return Err(codes::invalid_config(format!(
                    "{param}: subnet '{}' is in VPC '{}', not '{}' like the others",
                    s.id, s.vpc_id, first.vpc_id
                )));
            }
            out.push(s);
        }
        if lb_type == LbType::Application && out.len() < 2 {
            return Err(codes::validation(
                "Subnets: at least two subnets in two different Availability Zones must be specified",
            ));
        }
        if out.is_empty() {
            return Err(codes::validation("Subnets: at least one subnet must be specified"));
        }
        Ok(out)
    }

    /// The security groups of an application load balancer (its VPC's `default` group when
    /// none is given), checked against the EC2 records.
    async fn lb_security_groups(
        &self,
        given: Option<&Vec<String>>,
        vpc_id: &str,
    ) -> Result<Vec<String>, AwsError> {
        let Some(given) = given.filter(|g| !g.is_empty()) else {
            let key = network::keys::security_group_name(vpc_id, network::DEFAULT_SECURITY_GROUP);
            let id = self.store().get(&key).await.map_err(crate::error::store)?;
            return Ok(id
                .map(|e| String::from_utf8_lossy(&e.value).to_string())
                .into_iter()
                .collect());
        };
        let mut out = Vec::new();
        for (i, id) in given.iter().enumerate() {
            match records::get::<SecurityGroupRecord>(
                self.store(),
                &network::keys::security_group(id),
            )
            .await?
            {
                Some((g, _)) if g.vpc_id == vpc_id => {
                    if !out.contains(id) {
                        out.push(id.clone());
                    }
                }
                Some((g, _)) => {
                    return Err(codes::err(
                        "InvalidSecurityGroup",
                        format!(
                            "SecurityGroups.member.{}: security group '{id}' is in VPC '{}', not the load balancer's '{vpc_id}'",
                            i + 1,
                            g.vpc_id
                        ),
                    ));
                }
                None => {
                    return Err(codes::err(
                        "InvalidSecurityGroup",
                        format!(
                            "SecurityGroups.member.{}: security group '{id}' does not exist",
                            i + 1
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }
}

impl wire::LoadBalancersApi<RequestContext> for Elbv2 {
    async fn create_load_balancer(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateLoadBalancerInput,
    ) -> Result<wire::CreateLoadBalancerOutput, AwsError> {
        let name = input.name.clone().unwrap_or_default();
        check_name("Name", &name)?;
        if name.to_ascii_lowercase().starts_with("internal-") {
            return Err(codes::validation("Name: must not begin with 'internal-'"));
        }
        let lb_type = match input.r#type {
            None | Some(wire::LoadBalancerTypeEnum::Application) => LbType::Application,
            Some(wire::LoadBalancerTypeEnum::Network) => LbType::Network,
            Some(t) => {
                return Err(codes::validation(format!(
                    "Type: '{t}' load balancers are not supported by Berth (application and network are)"
                )));
            }
        };
        if lb_type == LbType::Network && input.security_groups.is_some() {
            // Modern NLBs take security groups; Berth does not filter their traffic yet.
            return Err(codes::validation(
                "SecurityGroups: Berth's network load balancers do not take security groups",
            ));
        }
        let ip_type = match input.ip_address_type {
            None | Some(wire::IpAddressType::Ipv4) => "ipv4",
            Some(t) => {
                return Err(codes::validation(format!(
                    "IpAddressType: '{t}' is not supported by Berth (ipv4 is)"
                )));
            }
        };
        let scheme = input.scheme.map(|s| s.as_str()).unwrap_or("internet-facing").to_string();
        let subnets = self.lb_subnets(&input, lb_type).await?;
        let vpc_id = subnets[0].vpc_id.clone();
        let security_groups = if lb_type == LbType::Application {
            self.lb_security_groups(input.security_groups.as_ref(), &vpc_id).await?
        } else {
            Vec::new()
        };
        let tags = new_tags(input.tags)?;
        let id = new_id();
        let mut rec = model::LoadBalancerRecord {
            arn: self.arn(&format!("loadbalancer/{}/{name}/{id}", lb_type.arn_segment())),
            id: id.clone(),
            name: name.clone(),
            lb_type,
            scheme,
            vpc_id,
            subnets: subnets
                .iter()
                .map(|s| model::LbSubnet {
                    subnet_id: s.id.clone(),
                    zone: s.availability_zone.clone(),
                })
                .collect(),
            security_groups,
            ip_address_type: ip_type.into(),
            dns_name: self.dns_name(&name, &id),
            created_time: crate::clock::epoch_seconds(time::OffsetDateTime::now_utc()),
            attributes: model::default_lb_attributes(lb_type),
            tags,
        };
        let name_key = keys::load_balancer_name(&name);
        let mut cas = Cas::new(self.store(), format!("load balancer {name}"));
        loop {
            cas.attempt().await?;
            if let Some(e) = self.store().get(&name_key).await.map_err(crate::error::store)? {
                let id = String::from_utf8_lossy(&e.value).to_string();
                let existing = records::get::<model::LoadBalancerRecord>(
                    self.store(),
                    &keys::load_balancer(&id),
                )
                .await?;
                if let Some((x, _)) = existing {
                    // ELB answers the existing one when the settings are the same.
                    let same = x.lb_type == rec.lb_type
                        && x.scheme == rec.scheme
                        && x.subnets == rec.subnets
                        && x.security_groups == rec.security_groups;
                    if same {
                        return Ok(wire::CreateLoadBalancerOutput {
                            load_balancers: Some(vec![self.wire_lb(&x)]),
                        });
                    }
                }
                return Err(codes::err(
                    "DuplicateLoadBalancerName",
                    format!(
                        "A load balancer with the same name '{name}' exists, with other settings"
                    ),
                ));
            }
            let key = keys::load_balancer(&rec.id);
            let txn = Txn::new()
                .when(&name_key, 0)
                .put(&name_key, rec.id.clone())
                .when(&key, 0)
                .put(&key, encode(&rec));
            if cas.commit(txn).await? {
                break;
            }
            rec.created_time = crate::clock::epoch_seconds(time::OffsetDateTime::now_utc());
        }
        tracing::info!(arn = %rec.arn, "created load balancer");
        Ok(wire::CreateLoadBalancerOutput { load_balancers: Some(vec![self.wire_lb(&rec)]) })
    }

    async fn describe_load_balancers(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeLoadBalancersInput,
    ) -> Result<wire::DescribeLoadBalancersOutput, AwsError> {
        let all: Vec<(String, model::LoadBalancerRecord)> =
            list(self.store(), keys::LOAD_BALANCERS).await?;
        let arns = input.load_balancer_arns.unwrap_or_default();
        let names = input.names.unwrap_or_default();
        if !arns.is_empty() && !names.is_empty() {
            return Err(codes::validation("LoadBalancerArns and Names cannot be given together"));
        }
        if arns.len() > 20 {
            return Err(codes::validation("LoadBalancerArns: at most 20 per call"));
        }
        for a in &arns {
            if !all.iter().any(|(_, r)| &r.arn == a) {
                return Err(codes::lb_not_found(a));
            }
        }
        for n in &names {
            if !all.iter().any(|(_, r)| &r.name == n) {
                return Err(codes::lb_not_found(n));
            }
        }
        let chosen: Vec<_> = all
            .into_iter()
            .filter(|(_, r)| {
                (arns.is_empty() || arns.contains(&r.arn))
                    && (names.is_empty() || names.contains(&r.name))
            })
            .collect();
        let (recs, next) = page(chosen, input.marker.as_deref(), input.page_size)?;
        Ok(wire::DescribeLoadBalancersOutput {
            load_balancers: Some(recs.iter().map(|r| self.wire_lb(r)).collect()),
            next_marker: next,
        })
    }

    async fn delete_load_balancer(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteLoadBalancerInput,
    ) -> Result<wire::DeleteLoadBalancerOutput, AwsError> {
        let arn = input.load_balancer_arn.unwrap_or_default();
        let mut cas = Cas::new(self.store(), format!("load balancer {arn}"));
        loop {
            cas.attempt().await?;
            let (lb, rev) = self.load_balancer(&arn).await?;
            if lb.attributes.get("deletion_protection.enabled").map(String::as_str) == Some("true")
            {
                return Err(codes::err(
                    "OperationNotPermitted",
                    format!(
                        "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
                    ),
                ));
            }
            let key = keys::load_balancer(&lb.id);
            let mut txn =
                Txn::new().when(&key, rev).delete(&key).delete(keys::load_balancer_name(&lb.name));
            let listeners: Vec<(String, model::ListenerRecord)> =
                list(self.store(), &keys::listeners_of(&lb.id)).await?;
            for (k, l) in listeners {
                txn = txn.delete(k).delete(keys::listener_port(&lb.id, l.port));
            }
            if cas.commit(txn).await? {
                tracing::info!(arn = %arn, "deleted load balancer");
                return Ok(wire::DeleteLoadBalancerOutput {});
            }
        }
    }

    async fn modify_load_balancer_attributes(
        &self,
        _ctx: &RequestContext,
        input: wire::ModifyLoadBalancerAttributesInput,
    ) -> Result<wire::ModifyLoadBalancerAttributesOutput, AwsError> {
        let arn = input.load_balancer_arn.unwrap_or_default();
        let (lb, _) = self.load_balancer(&arn).await?;
        let changes: Vec<(String, String)> = input
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.key.unwrap_or_default(), a.value.unwrap_or_default()))
            .collect();
        let mut seen = HashSet::new();
        for (k, v) in &changes {
            check_attribute(&lb.attributes, k, v)?;
            if !seen.insert(k) {
                return Err(codes::validation(format!("Attributes: '{k}' is given twice")));
            }
        }
        let updated = records::update::<model::LoadBalancerRecord, _>(
            self.store(),
            &keys::load_balancer(&lb.id),
            &arn,
            |r| {
                for (k, v) in &changes {
                    r.attributes.insert(k.clone(), v.clone());
                }
                Ok(())
            },
        )
        .await?
        .filter(|r| r.arn == arn)
        .ok_or_else(|| codes::lb_not_found(&arn))?;
        Ok(wire::ModifyLoadBalancerAttributesOutput { attributes: Some(lb_attributes(&updated)) })
    }

    async fn describe_load_balancer_attributes(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeLoadBalancerAttributesInput,
    ) -> Result<wire::DescribeLoadBalancerAttributesOutput, AwsError> {
        let (lb, _) = self.load_balancer(&input.load_balancer_arn.unwrap_or_default()).await?;
        Ok(wire::DescribeLoadBalancerAttributesOutput { attributes: Some(lb_attributes(&lb)) })
    }
}

fn lb_attributes(r: &model::LoadBalancerRecord) -> Vec<wire::LoadBalancerAttribute> {
    r.attributes
        .iter()
        .map(|(k, v)| wire::LoadBalancerAttribute { key: Some(k.clone()), value: Some(v.clone()) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_elb_rules() {
        for ok in ["web", "a", "web-1", &"x".repeat(32)] {
            check_name("Name", ok).unwrap();
        }
        for bad in ["", "-web", "web-", "we_b", "wéb", &"x".repeat(33)] {
            let e = check_name("Name", bad).unwrap_err();
            assert_eq!(e.code, "ValidationError");
            assert!(e.message.starts_with("Name:"), "{}", e.message);
        }
    }

    #[test]
    fn attributes_are_checked() {
        let known = model::default_lb_attributes(LbType::Application);
        check_attribute(&known, "idle_timeout.timeout_seconds", "30").unwrap();
        let tg = model::default_tg_attributes("HTTP");
        check_attribute(&tg, "deregistration_delay.timeout_seconds", "0").unwrap();
        check_attribute(&tg, "slow_start.duration_seconds", "30").unwrap();
        let cases = [
            (&known, "idle_timeout.timeout_seconds", "0"),
            (&known, "deletion_protection.enabled", "yes"),
            (&known, "no.such.key", "1"),
            (&tg, "deregistration_delay.timeout_seconds", "3601"),
            (&tg, "slow_start.duration_seconds", "10"),
            (&tg, "stickiness.type", "cookie"),
        ];
        for (known, k, v) in cases {
            assert_eq!(
                check_attribute(known, k, v).unwrap_err().code,
                "ValidationError",
                "{k}={v}"
            );
        }
    }
}
