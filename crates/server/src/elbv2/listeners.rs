//! CreateListener, DescribeListeners, ModifyListener, DeleteListener, and the actions that
//! listeners and rules share ([`actions`]: wire actions checked and turned into records, and
//! back). A listener's port is unique per load balancer; a write that adds a reference to a
//! target group rewrites that group in the same transaction (see [`berth_model::elbv2`]).

use std::collections::BTreeSet;

use berth_model::elbv2::{self as model, LbType, keys};
use berth_store::{Revision, Txn};
use berth_wire::AwsError;
use berth_wire::elbv2 as wire;

use super::{Elbv2, codes, list, new_id, new_tags, page};
use crate::ecs::RequestContext;
use crate::records::{self, Cas, encode};

/// Content types a fixed response may declare (ELB's list).
const CONTENT_TYPES: [&str; 5] =
    ["text/plain", "text/css", "text/html", "application/javascript", "application/json"];

/// Checks `actions` (given as `param`) for a listener of `lb_type` and turns them into
/// records. Target groups are checked by the caller ([`Elbv2::check_groups`]).
pub(super) fn actions(
    param: &str,
    given: Vec<wire::Action>,
    lb_type: LbType,
) -> Result<Vec<model::ActionRecord>, AwsError> {
    if given.is_empty() {
        return Err(codes::validation(format!("{param}: at least one action is required")));
    }
    if given.len() > 1 {
        return Err(codes::err(
            "TooManyActions",
            format!("{param}: Berth supports exactly one (terminal) action per listener or rule"),
        ));
    }
    let mut out = Vec::new();
    for (i, a) in given.into_iter().enumerate() {
        let p = format!("{param}.member.{}", i + 1);
        if let Some(o) = a.order
            && !(1..=50_000).contains(&o)
        {
            return Err(codes::validation(format!("{p}.Order: {o} is not between 1 and 50000")));
        }
        let alb_only = |what: &str| -> Result<(), AwsError> {
            if lb_type == LbType::Network {
                return Err(codes::err(
                    "InvalidLoadBalancerAction",
                    format!(
                        "{p}.Type: {what} actions are valid on application load balancers only"
                    ),
                ));
            }
            Ok(())
        };
        let rec = match a.r#type {
            Some(wire::ActionTypeEnum::Forward) => {
                let mut groups = Vec::new();
                let mut single = false;
                let mut stickiness = None;
                if let Some(cfg) = a.forward_config {
                    for (j, t) in cfg.target_groups.unwrap_or_default().into_iter().enumerate() {
                        let tp = format!("{p}.ForwardConfig.TargetGroups.member.{}", j + 1);
                        let arn = t.target_group_arn.ok_or_else(|| {
                            codes::validation(format!("{tp}.TargetGroupArn: required"))
                        })?;
                        let weight = t.weight.unwrap_or(1);
                        if !(0..=999).contains(&weight) {
                            return Err(codes::validation(format!(
                                "{tp}.Weight: {weight} is not between 0 and 999"
                            )));
                        }
                        if groups.iter().any(|g: &model::WeightedGroup| g.target_group_arn == arn) {
                            return Err(codes::validation(format!(
                                "{tp}.TargetGroupArn: '{arn}' is given twice"
                            )));
                        }
                        groups.push(model::WeightedGroup {
                            target_group_arn: arn,
                            weight: weight as u32,
                        });
                    }
                    if let Some(s) = cfg.target_group_stickiness_config {
                        let d = s.duration_seconds.unwrap_or(3600);
                        if !(1..=604_800).contains(&d) {
                            return Err(codes::validation(format!(
                                "{p}.ForwardConfig.TargetGroupStickinessConfig.DurationSeconds: {d} is not between 1 and 604800"
                            )));
                        }
                        if s.enabled == Some(true) {
                            stickiness = Some((true, d as u32));
                        }
                    }
                }
                match (a.target_group_arn, groups.len()) {
                    (Some(arn), 0) => {
                        single = true;
                        groups.push(model::WeightedGroup { target_group_arn: arn, weight: 1 });
                    }
                    (Some(arn), 1) if groups[0].target_group_arn == arn => single = true,
                    (Some(_), _) => {
                        return Err(codes::validation(format!(
                            "{p}: TargetGroupArn and ForwardConfig must name the same single target group when both are given"
                        )));
                    }
                    (None, 0) => {
                        return Err(codes::validation(format!(
                            "{p}: a forward action needs TargetGroupArn or ForwardConfig.TargetGroups"
                        )));
                    }
                    (None, n) if n > 5 => {
                        return Err(codes::validation(format!(
                            "{p}.ForwardConfig.TargetGroups: at most 5 target groups"
                        )));
                    }
                    (None, _) => {}
                }
                if lb_type == LbType::Network && groups.len() > 1 {
                    return Err(codes::err(
                        "InvalidLoadBalancerAction",
                        format!(
                            "{p}.ForwardConfig: network load balancers forward to one target group"
                        ),
                    ));
                }
                if groups.iter().all(|g| g.weight == 0) {
                    return Err(codes::validation(format!(
                        "{p}.ForwardConfig.TargetGroups: at least one weight must be above 0"
                    )));
                }
                model::ActionRecord::Forward { target_groups: groups, single, stickiness }
            }
            Some(wire::ActionTypeEnum::FixedResponse) => {
                alb_only("fixed-response")?;
                let cfg = a.fixed_response_config.ok_or_else(|| {
                    codes::validation(format!(
                        "{p}.FixedResponseConfig: required for fixed-response"
                    ))
                })?;
                let code = cfg.status_code.unwrap_or_default();
                let ok = code.len() == 3
                    && code.bytes().all(|b| b.is_ascii_digit())
                    && matches!(code.as_bytes()[0], b'2' | b'4' | b'5');
                if !ok {
                    return Err(codes::validation(format!(
                        "{p}.FixedResponseConfig.StatusCode: '{code}' must be 2XX, 4XX or 5XX"
                    )));
                }
                if let Some(ct) = &cfg.content_type
                    && !CONTENT_TYPES.contains(&ct.as_str())
                {
                    return Err(codes::validation(format!(
                        "{p}.FixedResponseConfig.ContentType: '{ct}' must be one of {}",
                        CONTENT_TYPES.join(", ")
                    )));
                }
                if cfg.message_body.as_ref().is_some_and(|b| b.len() > 1024) {
                    return Err(codes::validation(format!(
                        "{p}.FixedResponseConfig.MessageBody: at most 1024 characters"
                    )));
                }
                model::ActionRecord::FixedResponse {
                    status_code: code,
                    content_type: cfg.content_type,
                    message_body: cfg.message_body,
                }
            }
            Some(wire::ActionTypeEnum::Redirect) => {
                alb_only("redirect")?;
                let cfg = a.redirect_config.ok_or_else(|| {
                    codes::validation(format!("{p}.RedirectConfig: required for redirect"))
                })?;
                let status = cfg.status_code.ok_or_else(|| {
                    codes::validation(format!("{p}.RedirectConfig.StatusCode: required"))
                })?;
                if let Some(proto) = &cfg.protocol
                    && !matches!(proto.as_str(), "HTTP" | "HTTPS" | "#{protocol}")
                {
                    return Err(codes::validation(format!(
                        "{p}.RedirectConfig.Protocol: '{proto}' must be HTTP, HTTPS or #{{protocol}}"
                    )));
                }
                if let Some(path) = &cfg.path
                    && !path.starts_with('/')
                {
                    return Err(codes::validation(format!(
                        "{p}.RedirectConfig.Path: '{path}' must start with '/'"
                    )));
                }
                model::ActionRecord::Redirect {
                    protocol: cfg.protocol,
                    host: cfg.host,
                    port: cfg.port,
                    path: cfg.path,
                    query: cfg.query,
                    status_code: status.as_str().to_string(),
                }
            }
            Some(t) => {
                return Err(codes::validation(format!(
                    "{p}.Type: '{t}' actions are not supported by Berth (forward, fixed-response and redirect are)"
                )));
            }
            None => return Err(codes::validation(format!("{p}.Type: required"))),
        };
        out.push(rec);
    }
    Ok(out)
}

/// Record actions as the wire describes them.
pub(super) fn wire_actions(actions: &[model::ActionRecord]) -> Vec<wire::Action> {
    actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut w = wire::Action { order: Some(i as i32 + 1), ..Default::default() };
            match a {
                model::ActionRecord::Forward { target_groups, single, stickiness } => {
                    w.r#type = Some(wire::ActionTypeEnum::Forward);
                    if *single {
                        w.target_group_arn = Some(target_groups[0].target_group_arn.clone());
                    }
                    w.forward_config = Some(wire::ForwardActionConfig {
                        target_groups: Some(
                            target_groups
                                .iter()
                                .map(|g| wire::TargetGroupTuple {
                                    target_group_arn: Some(g.target_group_arn.clone()),
                                    weight: Some(g.weight as i32),
                                })
                                .collect(),
                        ),
                        target_group_stickiness_config: Some(wire::TargetGroupStickinessConfig {
                            enabled: Some(stickiness.is_some_and(|s| s.0)),
                            duration_seconds: stickiness.map(|s| s.1 as i32),
                        }),
                    });
                }
                model::ActionRecord::FixedResponse { status_code, content_type, message_body } => {
                    w.r#type = Some(wire::ActionTypeEnum::FixedResponse);
                    w.fixed_response_config = Some(wire::FixedResponseActionConfig {
                        status_code: Some(status_code.clone()),
                        content_type: content_type.clone(),
                        message_body: message_body.clone(),
                    });
                }
                model::ActionRecord::Redirect {
                    protocol,
                    host,
                    port,
                    path,
                    query,
                    status_code,
                } => {
                    w.r#type = Some(wire::ActionTypeEnum::Redirect);
                    w.redirect_config = Some(wire::RedirectActionConfig {
                        protocol: Some(protocol.clone().unwrap_or_else(|| "#{protocol}".into())),
                        host: Some(host.clone().unwrap_or_else(|| "#{host}".into())),
                        port: Some(port.clone().unwrap_or_else(|| "#{port}".into())),
                        path: Some(path.clone().unwrap_or_else(|| "/#{path}".into())),
                        query: Some(query.clone().unwrap_or_else(|| "#{query}".into())),
                        status_code: wire::RedirectActionStatusCodeEnum::from_str(status_code),
                    });
                }
            }
            w
        })
        .collect()
}

impl Elbv2 {
    /// Checks that every target group `actions` forward to exists, speaks `protocol` and is
    /// used by no other load balancer than `lb_arn`; answers the transaction compares and
    /// rewrites that pin them (see the module header).
    pub(super) async fn check_groups(
        &self,
        actions: &[&model::ActionRecord],
        protocol: &str,
        lb_arn: &str,
    ) -> Result<Txn, AwsError> {
        let arns: BTreeSet<&str> = actions.iter().flat_map(|a| a.target_groups()).collect();
        let users = self.tg_users().await?;
        let mut txn = Txn::new();
        for arn in arns {
            let (tg, rev): (model::TargetGroupRecord, Revision) = self.target_group(arn).await?;
            if tg.protocol != protocol {
                return Err(codes::err(
                    "IncompatibleProtocols",
                    format!(
                        "Target group '{arn}' has protocol {}; a {protocol} listener needs {protocol}",
                        tg.protocol
                    ),
                ));
            }
            if let Some(u) = users.get(arn)
                && u.iter().any(|l| l != lb_arn)
            {
                return Err(codes::err(
                    "TargetGroupAssociationLimit",
                    format!(
                        "The following target groups cannot be associated with more than one load balancer: {arn}"
                    ),
                ));
            }
            let key = keys::target_group(&tg.id);
            txn = txn.when(&key, rev).put(&key, encode(&tg));
        }
        Ok(txn)
    }

    pub(super) fn wire_listener(&self, l: &model::ListenerRecord) -> wire::Listener {
        wire::Listener {
            listener_arn: Some(l.arn.clone()),
            load_balancer_arn: Some(l.load_balancer_arn.clone()),
            port: Some(i32::from(l.port)),
            protocol: wire::ProtocolEnum::from_str(&l.protocol),
            default_actions: Some(wire_actions(&l.default_actions)),
            ..Default::default()
        }
    }
}

/// The listener protocol a load balancer of `lb_type` takes, from the request's.
fn listener_protocol(
    given: Option<wire::ProtocolEnum>,
    lb_type: LbType,
) -> Result<&'static str, AwsError> {
    match (lb_type, given) {
        (LbType::Application, None | Some(wire::ProtocolEnum::Http)) => Ok("HTTP"),
        (LbType::Network, None | Some(wire::ProtocolEnum::Tcp)) => Ok("TCP"),
        (LbType::Application, Some(p)) => Err(codes::err(
            "UnsupportedProtocol",
            format!(
                "Protocol: '{p}' is not supported on Berth's application load balancers (HTTP is; HTTPS needs TLS termination, not implemented)"
            ),
        )),
        (LbType::Network, Some(p)) => Err(codes::err(
            "UnsupportedProtocol",
            format!("Protocol: '{p}' is not supported on Berth's network load balancers (TCP is)"),
        )),
    }
}

fn port(p: Option<i32>) -> Result<u16, AwsError> {
    match p {
        Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Some(p) => Err(codes::validation(format!("Port: {p} is not between 1 and 65535"))),
        None => Err(codes::validation("Port: required")),
    }
}

impl wire::ListenersApi<RequestContext> for Elbv2 {
    async fn create_listener(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateListenerInput,
    ) -> Result<wire::CreateListenerOutput, AwsError> {
        let lb_arn = input.load_balancer_arn.clone().unwrap_or_default();
        let (lb, _) = self.load_balancer(&lb_arn).await?;
        let protocol = listener_protocol(input.protocol, lb.lb_type)?;
        let port = port(input.port)?;
        if input.certificates.is_some() || input.ssl_policy.is_some() {
            return Err(codes::validation(
                "Certificates: Berth's listeners do not terminate TLS yet (HTTP and TCP only)",
            ));
        }
        let default_actions =
            actions("DefaultActions", input.default_actions.unwrap_or_default(), lb.lb_type)?;
        let tags = new_tags(input.tags)?;
        let id = new_id();
        let rec = model::ListenerRecord {
            arn: self.arn(&format!(
                "listener/{}/{}/{}/{id}",
                lb.lb_type.arn_segment(),
                lb.name,
                lb.id
            )),
            id: id.clone(),
            load_balancer_arn: lb.arn.clone(),
            load_balancer_id: lb.id.clone(),
            protocol: protocol.into(),
            port,
            default_actions,
            default_rule_id: new_id(),
            rules: Vec::new(),
            tags,
        };
        let key = keys::listener(&lb.id, &id);
        let port_key = keys::listener_port(&lb.id, port);
        let mut cas = Cas::new(self.store(), format!("listener of {lb_arn} on port {port}"));
        loop {
            cas.attempt().await?;
            let (_, lb_rev) = self.load_balancer(&lb_arn).await?;
            if self.store().get(&port_key).await.map_err(crate::error::store)?.is_some() {
                return Err(codes::err(
                    "DuplicateListener",
                    format!("A listener already exists on port {port} of '{lb_arn}'"),
                ));
            }
            let refs: Vec<_> = rec.default_actions.iter().collect();
            let lb_key = keys::load_balancer(&lb.id);
            let txn = self
                .check_groups(&refs, protocol, &lb.arn)
                .await?
                .when(&lb_key, lb_rev)
                .when(&port_key, 0)
                .put(&port_key, id.clone())
                .when(&key, 0)
                .put(&key, encode(&rec));
            if cas.commit(txn).await? {
                break;
            }
        }
        tracing::info!(arn = %rec.arn, port, "created listener");
        Ok(wire::CreateListenerOutput { listeners: Some(vec![self.wire_listener(&rec)]) })
    }

    async fn describe_listeners(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeListenersInput,
    ) -> Result<wire::DescribeListenersOutput, AwsError> {
        let arns = input.listener_arns.unwrap_or_default();
        let items: Vec<(String, model::ListenerRecord)> =
            match (&input.load_balancer_arn, arns.is_empty()) {
                (Some(lb), true) => {
                    let (lb, _) = self.load_balancer(lb).await?;
                    list(self.store(), &keys::listeners_of(&lb.id)).await?
                }
                (None, false) => {
                    let mut out = Vec::new();
                    for a in &arns {
                        let (l, _, key) = self.listener(a).await?;
                        if !out.iter().any(|(k, _)| k == &key) {
                            out.push((key, l));
                        }
                    }
                    out.sort_by(|a, b| a.0.cmp(&b.0));
                    out
                }
                _ => {
                    return Err(codes::validation(
                        "LoadBalancerArn or ListenerArns (one of them) must be given",
                    ));
                }
            };
        let (recs, next) = page(items, input.marker.as_deref(), input.page_size)?;
        Ok(wire::DescribeListenersOutput {
            listeners: Some(recs.iter().map(|l| self.wire_listener(l)).collect()),
            next_marker: next,
        })
    }

    async fn modify_listener(
        &self,
        _ctx: &RequestContext,
        input: wire::ModifyListenerInput,
    ) -> Result<wire::ModifyListenerOutput, AwsError> {
        let arn = input.listener_arn.clone().unwrap_or_default();
        if input.certificates.is_some() || input.ssl_policy.is_some() {
            return Err(codes::validation(
                "Certificates: Berth's listeners do not terminate TLS yet (HTTP and TCP only)",
            ));
        }
        let (l0, _, _) = self.listener(&arn).await?;
        let lb_key = keys::load_balancer(&l0.load_balancer_id);
        let (lb, _) = records::get::<model::LoadBalancerRecord>(self.store(), &lb_key)
            .await?
            .ok_or_else(|| codes::listener_not_found(&arn))?;
        let protocol = match input.protocol {
            Some(p) => listener_protocol(Some(p), lb.lb_type)?,
            None => listener_protocol(None, lb.lb_type)?,
        };
        let new_port = input.port.map(|p| port(Some(p))).transpose()?;
        let new_actions =
            input.default_actions.map(|a| actions("DefaultActions", a, lb.lb_type)).transpose()?;
        let mut cas = Cas::new(self.store(), format!("listener {arn}"));
        let rec = loop {
            cas.attempt().await?;
            let (mut l, rev, key) = self.listener(&arn).await?;
            let old_port = l.port;
            if let Some(p) = new_port {
                l.port = p;
            }
            if let Some(a) = &new_actions {
                l.default_actions = a.clone();
            }
            l.protocol = protocol.into();
            let refs: Vec<_> = l.default_actions.iter().collect();
            let mut txn = self
                .check_groups(&refs, protocol, &lb.arn)
                .await?
                .when(&key, rev)
                .put(&key, encode(&l));
            if l.port != old_port {
                let port_key = keys::listener_port(&lb.id, l.port);
                if self.store().get(&port_key).await.map_err(crate::error::store)?.is_some() {
                    return Err(codes::err(
                        "DuplicateListener",
                        format!("A listener already exists on port {} of '{}'", l.port, lb.arn),
                    ));
                }
                txn = txn
                    .when(&port_key, 0)
                    .put(&port_key, l.id.clone())
                    .delete(keys::listener_port(&lb.id, old_port));
            }
            if cas.commit(txn).await? {
                break l;
            }
        };
        Ok(wire::ModifyListenerOutput { listeners: Some(vec![self.wire_listener(&rec)]) })
    }

    async fn delete_listener(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteListenerInput,
    ) -> Result<wire::DeleteListenerOutput, AwsError> {
        let arn = input.listener_arn.unwrap_or_default();
        let mut cas = Cas::new(self.store(), format!("listener {arn}"));
        loop {
            cas.attempt().await?;
            let (l, rev, key) = self.listener(&arn).await?;
            let txn = Txn::new()
                .when(&key, rev)
                .delete(&key)
                .delete(keys::listener_port(&l.load_balancer_id, l.port));
            if cas.commit(txn).await? {
                return Ok(wire::DeleteListenerOutput {});
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(arn: Option<&str>, groups: &[(&str, i32)]) -> wire::Action {
        wire::Action {
            r#type: Some(wire::ActionTypeEnum::Forward),
            target_group_arn: arn.map(str::to_string),
            forward_config: (!groups.is_empty()).then(|| wire::ForwardActionConfig {
                target_groups: Some(
                    groups
                        .iter()
                        .map(|(a, w)| wire::TargetGroupTuple {
                            target_group_arn: Some(a.to_string()),
                            weight: Some(*w),
                        })
                        .collect(),
                ),
                target_group_stickiness_config: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn actions_are_checked_and_round_trip() {
        let a = actions("DefaultActions", vec![fwd(Some("tg"), &[])], LbType::Application).unwrap();
        let w = wire_actions(&a);
        assert_eq!(w[0].target_group_arn.as_deref(), Some("tg"));
        let again = actions("DefaultActions", w, LbType::Application).unwrap();
        assert_eq!(again, a, "a described action is accepted back unchanged");
        let weighted =
            actions("DefaultActions", vec![fwd(None, &[("a", 3), ("b", 1)])], LbType::Application)
                .unwrap();
        assert_eq!(weighted[0].target_groups().collect::<Vec<_>>(), ["a", "b"]);
        let fixed = |code: &str, ct: Option<&str>| wire::Action {
            r#type: Some(wire::ActionTypeEnum::FixedResponse),
            fixed_response_config: Some(wire::FixedResponseActionConfig {
                status_code: Some(code.into()),
                content_type: ct.map(str::to_string),
                message_body: None,
            }),
            ..Default::default()
        };
        let cases: Vec<(Vec<wire::Action>, LbType, &str, &str)> = vec![
            (vec![], LbType::Application, "ValidationError", "DefaultActions:"),
            (
                vec![fwd(None, &[])],
                LbType::Application,
                "ValidationError",
                "DefaultActions.member.1",
            ),
            (
                vec![fwd(None, &[("a", 1000)])],
                LbType::Application,
                "ValidationError",
                "DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.Weight",
            ),
            (
                vec![fwd(None, &[("a", 0)])],
                LbType::Application,
                "ValidationError",
                "DefaultActions",
            ),
            (
                vec![fwd(Some("a"), &[("b", 1)])],
                LbType::Application,
                "ValidationError",
                "DefaultActions",
            ),
            (
                vec![fwd(None, &[("a", 1), ("b", 1)])],
                LbType::Network,
                "InvalidLoadBalancerAction",
                "DefaultActions",
            ),
            (
                vec![fixed("302", None)],
                LbType::Application,
                "ValidationError",
                "DefaultActions.member.1.FixedResponseConfig.StatusCode",
            ),
            (
                vec![fixed("200", Some("x/y"))],
                LbType::Application,
                "ValidationError",
                "DefaultActions.member.1.FixedResponseConfig.ContentType",
            ),
            (
                vec![fixed("200", None)],
                LbType::Network,
                "InvalidLoadBalancerAction",
                "DefaultActions.member.1.Type",
            ),
            (
                vec![fwd(Some("a"), &[]), fwd(Some("b"), &[])],
                LbType::Application,
                "TooManyActions",
                "DefaultActions",
            ),
        ];
        for (given, t, code, param) in cases {
            let e = actions("DefaultActions", given, t).unwrap_err();
            assert_eq!(e.code, code, "{}", e.message);
            assert!(e.message.starts_with(param), "{param}: {}", e.message);
        }
    }

    #[test]
    fn listener_protocols_follow_the_load_balancer_type() {
        assert_eq!(listener_protocol(None, LbType::Network).unwrap(), "TCP");
        assert_eq!(
            listener_protocol(Some(wire::ProtocolEnum::Http), LbType::Application).unwrap(),
            "HTTP"
        );
        for (p, t) in [
            (wire::ProtocolEnum::Tcp, LbType::Application),
            (wire::ProtocolEnum::Https, LbType::Application),
            (wire::ProtocolEnum::Http, LbType::Network),
        ] {
            assert_eq!(listener_protocol(Some(p), t).unwrap_err().code, "UnsupportedProtocol");
        }
    }
}
