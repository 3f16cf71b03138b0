//! CreateTargetGroup, ModifyTargetGroup, DescribeTargetGroups, DeleteTargetGroup and the
//! target group attributes. Health check settings are validated as ELB documents them
//! ([`health_check`], a pure function), with ELB's defaults per protocol.

use std::collections::{BTreeMap, HashSet};

use berth_model::elbv2::{self as model, keys};
use berth_model::network;
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::elbv2 as wire;

use super::load_balancers::{check_attribute, check_name};
use super::{Elbv2, codes, list, new_id, new_tags, page};
use crate::ecs::RequestContext;
use crate::records::{self, Cas, encode};

/// The health check settings a create or modify call gives (all optional).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct HealthInput {
    pub protocol: Option<wire::ProtocolEnum>,
    pub port: Option<String>,
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub interval: Option<i32>,
    pub timeout: Option<i32>,
    pub healthy: Option<i32>,
    pub unhealthy: Option<i32>,
    pub matcher: Option<wire::Matcher>,
}

fn range(param: &str, v: i32, lo: i32, hi: i32) -> Result<u32, AwsError> {
    if !(lo..=hi).contains(&v) {
        return Err(codes::validation(format!("{param}: {v} is not between {lo} and {hi}")));
    }
    Ok(v as u32)
}

/// The health check of a target group of `protocol`: `base` (the current one, or `None` for
/// ELB's defaults) with `input` applied, checked.
pub(super) fn health_check(
    protocol: &str,
    base: Option<&model::HealthCheckRecord>,
    input: &HealthInput,
) -> Result<model::HealthCheckRecord, AwsError> {
    let hc_protocol = match input.protocol {
        None => base.map(|b| b.protocol.clone()).unwrap_or_else(|| protocol.to_string()),
        Some(wire::ProtocolEnum::Http) => "HTTP".into(),
        Some(wire::ProtocolEnum::Tcp) if protocol == "TCP" => "TCP".into(),
        Some(p) => {
            return Err(codes::validation(format!(
                "HealthCheckProtocol: '{p}' is not valid for a target group of protocol {protocol} (Berth checks HTTP{})",
                if protocol == "TCP" { " and TCP" } else { "" }
            )));
        }
    };
    let http = hc_protocol == "HTTP";
    let port = match input.port.as_deref() {
        None => base.map(|b| b.port.clone()).unwrap_or_else(|| "traffic-port".into()),
        Some("traffic-port") => "traffic-port".into(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n >= 1 => n.to_string(),
            _ => {
                return Err(codes::validation(format!(
                    "HealthCheckPort: '{p}' must be 'traffic-port' or a port 1-65535"
                )));
            }
        },
    };
    let defaults = (30, if http { 5 } else { 10 }, 5, 2);
    let interval = match input.interval {
        Some(v) => range("HealthCheckIntervalSeconds", v, 5, 300)?,
        None => base.map(|b| b.interval_seconds).unwrap_or(defaults.0),
    };
    let timeout = match input.timeout {
        Some(v) => range("HealthCheckTimeoutSeconds", v, 2, 120)?,
        // ELB's default, shortened below a shorter interval given with it.
        None => base.map(|b| b.timeout_seconds).unwrap_or(defaults.1.min(interval - 1)),
    };
    if timeout >= interval {
        return Err(codes::validation(format!(
            "HealthCheckTimeoutSeconds: {timeout} must be smaller than the interval ({interval})"
        )));
    }
    let healthy = match input.healthy {
        Some(v) => range("HealthyThresholdCount", v, 2, 10)?,
        None => base.map(|b| b.healthy_threshold).unwrap_or(defaults.2),
    };
    let unhealthy = match input.unhealthy {
        Some(v) => range("UnhealthyThresholdCount", v, 2, 10)?,
        None => base.map(|b| b.unhealthy_threshold).unwrap_or(defaults.3),
    };
    let (path, matcher) = if http {
        let path = match &input.path {
            Some(p) if !p.starts_with('/') || p.len() > 1024 => {
                return Err(codes::validation(format!(
                    "HealthCheckPath: '{p}' must start with '/' and be at most 1024 characters"
                )));
            }
            Some(p) => p.clone(),
            None => base.and_then(|b| b.path.clone()).unwrap_or_else(|| "/".into()),
        };
        let matcher = match input.matcher.as_ref() {
            Some(m) if m.grpc_code.is_some() => {
                return Err(codes::validation(
                    "Matcher.GrpcCode: gRPC health checks are not supported",
                ));
            }
            Some(m) => {
                let code = m.http_code.clone().unwrap_or_default();
                berth_lb::config::CodeMatcher::parse(&code)
                    .map_err(|e| codes::validation(format!("Matcher.HttpCode: {e}")))?;
                code
            }
            None => base.and_then(|b| b.matcher.clone()).unwrap_or_else(|| "200".into()),
        };
        (Some(path), Some(matcher))
    } else {
        if input.path.is_some() {
            return Err(codes::validation("HealthCheckPath: only HTTP health checks have a path"));
        }
        if input.matcher.is_some() {
            return Err(codes::validation("Matcher: only HTTP health checks have a matcher"));
        }
        (None, None)
    };
    Ok(model::HealthCheckRecord {
        enabled: input.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        protocol: hc_protocol,
        port,
        path,
        interval_seconds: interval,
        timeout_seconds: timeout,
        healthy_threshold: healthy,
        unhealthy_threshold: unhealthy,
        matcher,
    })
}

impl Elbv2 {
    pub(super) fn wire_tg(
        &self,
        r: &model::TargetGroupRecord,
        lb_arns: Vec<String>,
    ) -> wire::TargetGroup {
        let hc = &r.health_check;
        wire::TargetGroup {
            target_group_arn: Some(r.arn.clone()),
            target_group_name: Some(r.name.clone()),
            protocol: wire::ProtocolEnum::from_str(&r.protocol),
            port: Some(i32::from(r.port)),
            vpc_id: Some(r.vpc_id.clone()),
            health_check_protocol: wire::ProtocolEnum::from_str(&hc.protocol),
            health_check_port: Some(hc.port.clone()),
            health_check_enabled: Some(hc.enabled),
            health_check_interval_seconds: Some(hc.interval_seconds as i32),
            health_check_timeout_seconds: Some(hc.timeout_seconds as i32),
            healthy_threshold_count: Some(hc.healthy_threshold as i32),
            unhealthy_threshold_count: Some(hc.unhealthy_threshold as i32),
            health_check_path: hc.path.clone(),
            matcher: hc
                .matcher
                .clone()
                .map(|m| wire::Matcher { http_code: Some(m), grpc_code: None }),
            load_balancer_arns: Some(lb_arns),
            target_type: wire::TargetTypeEnum::from_str(&r.target_type),
            protocol_version: (r.protocol == "HTTP").then(|| "HTTP1".into()),
            ip_address_type: Some(wire::TargetGroupIpAddressTypeEnum::Ipv4),
            ..Default::default()
        }
    }

    /// Target group ARN -> the load balancers whose listeners forward to it.
    pub(super) async fn tg_users(&self) -> Result<BTreeMap<String, Vec<String>>, AwsError> {
        let listeners: Vec<(String, model::ListenerRecord)> =
            list(self.store(), keys::LISTENERS).await?;
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, l) in &listeners {
            for tg in l.target_groups() {
                let v = out.entry(tg.to_string()).or_default();
                if !v.contains(&l.load_balancer_arn) {
                    v.push(l.load_balancer_arn.clone());
                }
            }
        }
        Ok(out)
    }
}

impl wire::TargetGroupsApi<RequestContext> for Elbv2 {
    async fn create_target_group(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateTargetGroupInput,
    ) -> Result<wire::CreateTargetGroupOutput, AwsError> {
        let name = input.name.clone().unwrap_or_default();
        check_name("Name", &name)?;
        let target_type = match input.target_type {
            None | Some(wire::TargetTypeEnum::Instance) => "instance",
            Some(wire::TargetTypeEnum::Ip) => "ip",
            Some(t) => {
                return Err(codes::validation(format!(
                    "TargetType: '{t}' is not supported by Berth (instance and ip are)"
                )));
            }
        };
        let protocol = match input.protocol {
            Some(wire::ProtocolEnum::Http) => "HTTP",
            Some(wire::ProtocolEnum::Tcp) => "TCP",
            Some(p) => {
                return Err(codes::validation(format!(
                    "Protocol: '{p}' is not supported by Berth (HTTP and TCP are)"
                )));
            }
            None => {
                return Err(codes::validation("Protocol: required for instance and ip targets"));
            }
        };
        if input.protocol_version.as_deref().is_some_and(|v| v != "HTTP1") {
            return Err(codes::validation("ProtocolVersion: Berth's target groups speak HTTP1"));
        }
        let port = match input.port {
            Some(p) => range("Port", p, 1, 65535)? as u16,
            None => return Err(codes::validation("Port: required for instance and ip targets")),
        };
        let vpc_id = input
            .vpc_id
            .clone()
            .ok_or_else(|| codes::validation("VpcId: required for instance and ip targets"))?;
        if records::get::<network::VpcRecord>(self.store(), &network::keys::vpc(&vpc_id))
            .await?
            .is_none()
        {
            return Err(codes::validation(format!("VpcId: the VPC '{vpc_id}' does not exist")));
        }
        let hc = health_check(
            protocol,
            None,
            &HealthInput {
                protocol: input.health_check_protocol,
                port: input.health_check_port.clone(),
                enabled: input.health_check_enabled,
                path: input.health_check_path.clone(),
                interval: input.health_check_interval_seconds,
                timeout: input.health_check_timeout_seconds,
                healthy: input.healthy_threshold_count,
                unhealthy: input.unhealthy_threshold_count,
                matcher: input.matcher.clone(),
            },
        )?;
        let id = new_id();
        let rec = model::TargetGroupRecord {
            arn: self.arn(&format!("targetgroup/{name}/{id}")),
            id: id.clone(),
            name: name.clone(),
            protocol: protocol.into(),
            port,
            vpc_id,
            target_type: target_type.into(),
            health_check: hc,
            attributes: model::default_tg_attributes(protocol),
            targets: Vec::new(),
            tags: new_tags(input.tags)?,
        };
        let name_key = keys::target_group_name(&name);
        let mut cas = Cas::new(self.store(), format!("target group {name}"));
        loop {
            cas.attempt().await?;
            if let Some(e) = self.store().get(&name_key).await.map_err(crate::error::store)? {
                let id = String::from_utf8_lossy(&e.value).to_string();
                if let Some((x, _)) =
                    records::get::<model::TargetGroupRecord>(self.store(), &keys::target_group(&id))
                        .await?
                    && x.protocol == rec.protocol
                    && x.port == rec.port
                    && x.vpc_id == rec.vpc_id
                    && x.target_type == rec.target_type
                    && x.health_check == rec.health_check
                {
                    // ELB answers the existing group when the settings are the same.
                    let users = self.tg_users().await?.remove(&x.arn).unwrap_or_default();
                    return Ok(wire::CreateTargetGroupOutput {
                        target_groups: Some(vec![self.wire_tg(&x, users)]),
                    });
                }
                return Err(codes::err(
                    "DuplicateTargetGroupName",
                    format!(
                        "A target group with the same name '{name}' exists, with other settings"
                    ),
                ));
            }
            let key = keys::target_group(&rec.id);
            let txn = Txn::new()
                .when(&name_key, 0)
                .put(&name_key, rec.id.clone())
                .when(&key, 0)
                .put(&key, encode(&rec));
            if cas.commit(txn).await? {
                break;
            }
        }
        tracing::info!(arn = %rec.arn, "created target group");
        Ok(wire::CreateTargetGroupOutput { target_groups: Some(vec![self.wire_tg(&rec, vec![])]) })
    }

    async fn modify_target_group(
        &self,
        _ctx: &RequestContext,
        input: wire::ModifyTargetGroupInput,
    ) -> Result<wire::ModifyTargetGroupOutput, AwsError> {
        let arn = input.target_group_arn.clone().unwrap_or_default();
        let (tg, _) = self.target_group(&arn).await?;
        let change = HealthInput {
            protocol: input.health_check_protocol,
            port: input.health_check_port,
            enabled: input.health_check_enabled,
            path: input.health_check_path,
            interval: input.health_check_interval_seconds,
            timeout: input.health_check_timeout_seconds,
            healthy: input.healthy_threshold_count,
            unhealthy: input.unhealthy_threshold_count,
            matcher: input.matcher,
        };
        health_check(&tg.protocol, Some(&tg.health_check), &change)?;
        let updated = records::update::<model::TargetGroupRecord, _>(
            self.store(),
            &keys::target_group(&tg.id),
            &arn,
            |r| {
                r.health_check = health_check(&r.protocol, Some(&r.health_check), &change)?;
                Ok(())
            },
        )
        .await?
        .filter(|r| r.arn == arn)
        .ok_or_else(|| codes::tg_not_found(&arn))?;
        let users = self.tg_users().await?.remove(&arn).unwrap_or_default();
        Ok(wire::ModifyTargetGroupOutput {
            target_groups: Some(vec![self.wire_tg(&updated, users)]),
        })
    }

    async fn modify_target_group_attributes(
        &self,
        _ctx: &RequestContext,
        input: wire::ModifyTargetGroupAttributesInput,
    ) -> Result<wire::ModifyTargetGroupAttributesOutput, AwsError> {
        let arn = input.target_group_arn.unwrap_or_default();
        let (tg, _) = self.target_group(&arn).await?;
        let changes: Vec<(String, String)> = input
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.key.unwrap_or_default(), a.value.unwrap_or_default()))
            .collect();
        let mut seen = HashSet::new();
        for (k, v) in &changes {
            check_attribute(&tg.attributes, k, v)?;
            if !seen.insert(k) {
                return Err(codes::validation(format!("Attributes: '{k}' is given twice")));
            }
            if k == "stickiness.type" && tg.protocol == "HTTP" && v != "lb_cookie" {
                return Err(codes::validation(format!(
                    "Attributes: stickiness.type '{v}' is not supported by Berth (lb_cookie is)"
                )));
            }
        }
        let updated = records::update::<model::TargetGroupRecord, _>(
            self.store(),
            &keys::target_group(&tg.id),
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
        .ok_or_else(|| codes::tg_not_found(&arn))?;
        Ok(wire::ModifyTargetGroupAttributesOutput { attributes: Some(tg_attributes(&updated)) })
    }

    async fn describe_target_group_attributes(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeTargetGroupAttributesInput,
    ) -> Result<wire::DescribeTargetGroupAttributesOutput, AwsError> {
        let (tg, _) = self.target_group(&input.target_group_arn.unwrap_or_default()).await?;
        Ok(wire::DescribeTargetGroupAttributesOutput { attributes: Some(tg_attributes(&tg)) })
    }

    async fn describe_target_groups(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeTargetGroupsInput,
    ) -> Result<wire::DescribeTargetGroupsOutput, AwsError> {
        let all: Vec<(String, model::TargetGroupRecord)> =
            list(self.store(), keys::TARGET_GROUPS).await?;
        let arns = input.target_group_arns.unwrap_or_default();
        let names = input.names.unwrap_or_default();
        let given = [!arns.is_empty(), !names.is_empty(), input.load_balancer_arn.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(codes::validation(
                "LoadBalancerArn, TargetGroupArns and Names cannot be combined",
            ));
        }
        for a in &arns {
            if !all.iter().any(|(_, r)| &r.arn == a) {
                return Err(codes::tg_not_found(a));
            }
        }
        for n in &names {
            if !all.iter().any(|(_, r)| &r.name == n) {
                return Err(codes::tg_not_found(n));
            }
        }
        let users = self.tg_users().await?;
        if let Some(lb) = &input.load_balancer_arn {
            self.load_balancer(lb).await?;
        }
        let chosen: Vec<_> = all
            .into_iter()
            .filter(|(_, r)| {
                (arns.is_empty() || arns.contains(&r.arn))
                    && (names.is_empty() || names.contains(&r.name))
                    && input
                        .load_balancer_arn
                        .as_ref()
                        .is_none_or(|lb| users.get(&r.arn).is_some_and(|u| u.contains(lb)))
            })
            .collect();
        let (recs, next) = page(chosen, input.marker.as_deref(), input.page_size)?;
        Ok(wire::DescribeTargetGroupsOutput {
            target_groups: Some(
                recs.iter()
                    .map(|r| self.wire_tg(r, users.get(&r.arn).cloned().unwrap_or_default()))
                    .collect(),
            ),
            next_marker: next,
        })
    }

    async fn delete_target_group(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteTargetGroupInput,
    ) -> Result<wire::DeleteTargetGroupOutput, AwsError> {
        let arn = input.target_group_arn.unwrap_or_default();
        let mut cas = Cas::new(self.store(), format!("target group {arn}"));
        loop {
            cas.attempt().await?;
            let (tg, rev) = self.target_group(&arn).await?;
            if let Some(lbs) = self.tg_users().await?.get(&arn) {
                return Err(codes::err(
                    "ResourceInUse",
                    format!(
                        "Target group '{arn}' is currently in use by a listener or a rule of {}",
                        lbs.join(", ")
                    ),
                ));
            }
            let key = keys::target_group(&tg.id);
            let txn =
                Txn::new().when(&key, rev).delete(&key).delete(keys::target_group_name(&tg.name));
            if cas.commit(txn).await? {
                tracing::info!(arn = %arn, "deleted target group");
                return Ok(wire::DeleteTargetGroupOutput {});
            }
        }
    }
}

fn tg_attributes(r: &model::TargetGroupRecord) -> Vec<wire::TargetGroupAttribute> {
    r.attributes
        .iter()
        .map(|(k, v)| wire::TargetGroupAttribute { key: Some(k.clone()), value: Some(v.clone()) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_checks_take_elb_defaults_and_limits() {
        let hc = health_check("HTTP", None, &HealthInput::default()).unwrap();
        assert_eq!(
            (hc.interval_seconds, hc.timeout_seconds, hc.healthy_threshold, hc.unhealthy_threshold),
            (30, 5, 5, 2)
        );
        assert_eq!((hc.path.as_deref(), hc.matcher.as_deref()), (Some("/"), Some("200")));
        let tcp = health_check("TCP", None, &HealthInput::default()).unwrap();
        assert_eq!((tcp.protocol.as_str(), tcp.timeout_seconds, tcp.path), ("TCP", 10, None));
        let short = HealthInput { interval: Some(5), ..Default::default() };
        assert_eq!(health_check("TCP", None, &short).unwrap().timeout_seconds, 4);
        let m = |c: &str| Some(wire::Matcher { http_code: Some(c.into()), grpc_code: None });
        let cases: Vec<(HealthInput, &str)> = vec![
            (HealthInput { interval: Some(4), ..Default::default() }, "HealthCheckIntervalSeconds"),
            (HealthInput { timeout: Some(1), ..Default::default() }, "HealthCheckTimeoutSeconds"),
            (
                HealthInput { interval: Some(5), timeout: Some(5), ..Default::default() },
                "HealthCheckTimeoutSeconds",
            ),
            (HealthInput { healthy: Some(11), ..Default::default() }, "HealthyThresholdCount"),
            (HealthInput { unhealthy: Some(1), ..Default::default() }, "UnhealthyThresholdCount"),
            (HealthInput { path: Some("x".into()), ..Default::default() }, "HealthCheckPath"),
            (HealthInput { matcher: m("600"), ..Default::default() }, "Matcher.HttpCode"),
            (HealthInput { port: Some("0".into()), ..Default::default() }, "HealthCheckPort"),
            (
                HealthInput { protocol: Some(wire::ProtocolEnum::Tcp), ..Default::default() },
                "HealthCheckProtocol",
            ),
        ];
        for (input, param) in cases {
            let e = health_check("HTTP", None, &input).unwrap_err();
            assert_eq!(e.code, "ValidationError");
            assert!(e.message.starts_with(param), "{param}: {}", e.message);
        }
        // A modify keeps what it does not change.
        let changed = health_check(
            "HTTP",
            Some(&hc),
            &HealthInput { matcher: m("200-299"), ..Default::default() },
        )
        .unwrap();
        assert_eq!(changed.matcher.as_deref(), Some("200-299"));
        assert_eq!(changed.interval_seconds, 30);
    }
}
