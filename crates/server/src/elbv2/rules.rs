//! CreateRule, DescribeRules, ModifyRule, DeleteRule, SetRulePriorities. Rules live in their
//! listener's record (priorities unique per listener, one compare-and-set per change); every
//! listener also has a default rule (its default actions), described with `IsDefault` and
//! priority `default`, which can be neither deleted nor given conditions or a priority.

use std::collections::HashSet;

use berth_model::elbv2::{self as model, LbType, ParsedArn, keys};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::elbv2 as wire;

use super::listeners::{actions, wire_actions};
use super::{Elbv2, codes, new_id, new_tags, page};
use crate::ecs::RequestContext;
use crate::records::{Cas, encode};

/// ELB's limit on the condition values of one rule.
const MAX_VALUES: usize = 5;

fn check_values(p: &str, values: &[String], allowed: fn(char) -> bool) -> Result<(), AwsError> {
    if values.is_empty() {
        return Err(codes::validation(format!("{p}: at least one value is required")));
    }
    for v in values {
        if v.is_empty() || v.chars().count() > 128 || !v.chars().all(allowed) {
            return Err(codes::validation(format!(
                "{p}: '{v}' must be 1-128 characters of the ones ELB allows for this condition"
            )));
        }
    }
    Ok(())
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?=%;,".contains(c)
}
fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.*?".contains(c)
}
fn any_char(c: char) -> bool {
    !c.is_control()
}

/// Checks a rule's conditions (given as `Conditions`) and turns them into records.
pub(super) fn conditions(
    given: Vec<wire::RuleCondition>,
) -> Result<Vec<model::ConditionRecord>, AwsError> {
    if given.is_empty() {
        return Err(codes::validation("Conditions: a rule needs at least one condition"));
    }
    let mut out = Vec::new();
    let mut once = HashSet::new();
    let mut total = 0;
    for (i, c) in given.into_iter().enumerate() {
        let p = format!("Conditions.member.{}", i + 1);
        let field = c.field.clone().unwrap_or_default();
        if c.regex_values.is_some() {
            return Err(codes::validation(format!("{p}.RegexValues: not supported by Berth")));
        }
        let legacy = c.values.clone();
        // `Values` is the legacy form of host-header and path-pattern only, and may not be
        // combined with the field's config.
        let pick = |config: Option<Vec<String>>, name: &str| -> Result<Vec<String>, AwsError> {
            match (legacy.clone(), config) {
                (Some(a), Some(b)) if a == b => Ok(a),
                (Some(_), Some(_)) => {
                    Err(codes::validation(format!("{p}: give Values or {name}.Values, not both")))
                }
                (Some(v), None) | (None, Some(v)) => Ok(v),
                (None, None) => Err(codes::validation(format!("{p}.{name}.Values: required"))),
            }
        };
        let rec = match field.as_str() {
            "path-pattern" => {
                let v = pick(
                    c.path_pattern_config
                        .and_then(|x| x.regex_values.is_none().then_some(x.values).flatten()),
                    "PathPatternConfig",
                )?;
                check_values(&format!("{p}.PathPatternConfig.Values"), &v, path_char)?;
                model::ConditionRecord::PathPattern { values: v }
            }
            "host-header" => {
                let v = pick(c.host_header_config.and_then(|x| x.values), "HostHeaderConfig")?;
                check_values(&format!("{p}.HostHeaderConfig.Values"), &v, host_char)?;
                model::ConditionRecord::HostHeader { values: v }
            }
            "http-header" => {
                if legacy.is_some() {
                    return Err(codes::validation(format!(
                        "{p}.Values: use HttpHeaderConfig for http-header"
                    )));
                }
                let cfg = c.http_header_config.ok_or_else(|| {
                    codes::validation(format!("{p}.HttpHeaderConfig: required for http-header"))
                })?;
                let name = cfg.http_header_name.unwrap_or_default();
                if name.is_empty()
                    || name.len() > 40
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                {
                    return Err(codes::validation(format!(
                        "{p}.HttpHeaderConfig.HttpHeaderName: '{name}' must be 1-40 letters, digits, hyphens and underscores"
                    )));
                }
                let v = cfg.values.unwrap_or_default();
                check_values(&format!("{p}.HttpHeaderConfig.Values"), &v, any_char)?;
                model::ConditionRecord::HttpHeader { header_name: name, values: v }
            }
            "query-string" => {
                if legacy.is_some() {
                    return Err(codes::validation(format!(
                        "{p}.Values: use QueryStringConfig for query-string"
                    )));
                }
                let pairs = c.query_string_config.and_then(|x| x.values).unwrap_or_default();
                if pairs.is_empty() {
                    return Err(codes::validation(format!(
                        "{p}.QueryStringConfig.Values: required"
                    )));
                }
                let mut vals = Vec::new();
                for (j, q) in pairs.into_iter().enumerate() {
                    let value = q.value.filter(|v| !v.is_empty()).ok_or_else(|| {
                        codes::validation(format!(
                            "{p}.QueryStringConfig.Values.member.{}.Value: required",
                            j + 1
                        ))
                    })?;
                    vals.push(model::QueryPair { key: q.key, value });
                }
                model::ConditionRecord::QueryString { values: vals }
            }
            "source-ip" => {
                if legacy.is_some() {
                    return Err(codes::validation(format!(
                        "{p}.Values: use SourceIpConfig for source-ip"
                    )));
                }
                let v = c.source_ip_config.and_then(|x| x.values).unwrap_or_default();
                if v.is_empty() {
                    return Err(codes::validation(format!("{p}.SourceIpConfig.Values: required")));
                }
                for cidr in &v {
                    if cidr.parse::<ipnet::IpNet>().is_err() {
                        return Err(codes::validation(format!(
                            "{p}.SourceIpConfig.Values: '{cidr}' is not a CIDR block"
                        )));
                    }
                }
                model::ConditionRecord::SourceIp { values: v }
            }
            "http-request-method" => {
                return Err(codes::validation(format!(
                    "{p}.Field: http-request-method conditions are not supported by Berth"
                )));
            }
            other => {
                return Err(codes::validation(format!(
                    "{p}.Field: '{other}' must be one of path-pattern, host-header, http-header, query-string, source-ip"
                )));
            }
        };
        total += match &rec {
            model::ConditionRecord::PathPattern { values }
            | model::ConditionRecord::HostHeader { values }
            | model::ConditionRecord::HttpHeader { values, .. }
            | model::ConditionRecord::SourceIp { values } => values.len(),
            model::ConditionRecord::QueryString { values } => values.len(),
        };
        let single = matches!(field.as_str(), "path-pattern" | "host-header" | "source-ip");
        if single && !once.insert(field.clone()) {
            return Err(codes::validation(format!(
                "{p}.Field: a rule may have one '{field}' condition"
            )));
        }
        out.push(rec);
    }
    if total > MAX_VALUES {
        return Err(codes::err(
            "TooManyRules",
            format!(
                "Conditions: a rule may have at most {MAX_VALUES} condition values; got {total}"
            ),
        ));
    }
    Ok(out)
}

fn wire_conditions(c: &[model::ConditionRecord]) -> Vec<wire::RuleCondition> {
    c.iter()
        .map(|c| {
            let mut w =
                wire::RuleCondition { field: Some(c.field().to_string()), ..Default::default() };
            match c {
                model::ConditionRecord::PathPattern { values } => {
                    w.values = Some(values.clone());
                    w.path_pattern_config = Some(wire::PathPatternConditionConfig {
                        values: Some(values.clone()),
                        regex_values: None,
                    });
                }
                model::ConditionRecord::HostHeader { values } => {
                    w.values = Some(values.clone());
                    w.host_header_config = Some(wire::HostHeaderConditionConfig {
                        values: Some(values.clone()),
                        regex_values: None,
                    });
                }
                model::ConditionRecord::HttpHeader { header_name, values } => {
                    w.http_header_config = Some(wire::HttpHeaderConditionConfig {
                        http_header_name: Some(header_name.clone()),
                        values: Some(values.clone()),
                        regex_values: None,
                    });
                }
                model::ConditionRecord::QueryString { values } => {
                    w.query_string_config = Some(wire::QueryStringConditionConfig {
                        values: Some(
                            values
                                .iter()
                                .map(|q| wire::QueryStringKeyValuePair {
                                    key: q.key.clone(),
                                    value: Some(q.value.clone()),
                                })
                                .collect(),
                        ),
                    });
                }
                model::ConditionRecord::SourceIp { values } => {
                    w.source_ip_config =
                        Some(wire::SourceIpConditionConfig { values: Some(values.clone()) });
                }
            }
            w
        })
        .collect()
}

fn priority(p: Option<i32>, param: &str) -> Result<u32, AwsError> {
    match p {
        Some(p) if (1..=50_000).contains(&p) => Ok(p as u32),
        Some(p) => Err(codes::validation(format!("{param}: {p} is not between 1 and 50000"))),
        None => Err(codes::validation(format!("{param}: required"))),
    }
}

impl Elbv2 {
    pub(super) fn rule_arn(&self, l: &model::ListenerRecord, rule_id: &str) -> String {
        // listener/app/NAME/LBID/LID -> listener-rule/app/NAME/LBID/LID/RID
        let tail = l.arn.split_once(":listener/").map(|(_, t)| t).unwrap_or_default();
        self.arn(&format!("listener-rule/{tail}/{rule_id}"))
    }

    fn wire_rules(&self, l: &model::ListenerRecord) -> Vec<(String, wire::Rule)> {
        let mut out: Vec<(String, wire::Rule)> = l
            .rules
            .iter()
            .map(|r| {
                (
                    format!("{:05}", r.priority),
                    wire::Rule {
                        rule_arn: Some(r.arn.clone()),
                        priority: Some(r.priority.to_string()),
                        conditions: Some(wire_conditions(&r.conditions)),
                        actions: Some(wire_actions(&r.actions)),
                        is_default: Some(false),
                        ..Default::default()
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.push((
            "default".into(),
            wire::Rule {
                rule_arn: Some(self.rule_arn(l, &l.default_rule_id)),
                priority: Some("default".into()),
                conditions: Some(Vec::new()),
                actions: Some(wire_actions(&l.default_actions)),
                is_default: Some(true),
                ..Default::default()
            },
        ));
        out
    }

    /// The listener of a rule ARN and the listener's LB type; `RuleNotFound` otherwise.
    async fn rule_listener(
        &self,
        rule_arn: &str,
    ) -> Result<(model::ListenerRecord, berth_store::Revision, String, LbType), AwsError> {
        let Some(ParsedArn::Rule { lb_id, listener_id, .. }) = self.parse(rule_arn) else {
            return Err(codes::rule_not_found(rule_arn));
        };
        let larn_key = keys::listener(&lb_id, &listener_id);
        let Some((l, rev)) =
            crate::records::get::<model::ListenerRecord>(self.store(), &larn_key).await?
        else {
            return Err(codes::rule_not_found(rule_arn));
        };
        let lb_type =
            if l.arn.contains(":listener/net/") { LbType::Network } else { LbType::Application };
        let known = self.rule_arn(&l, &l.default_rule_id) == rule_arn
            || l.rules.iter().any(|r| r.arn == rule_arn);
        if !known {
            return Err(codes::rule_not_found(rule_arn));
        }
        Ok((l, rev, larn_key, lb_type))
    }
}

impl wire::RulesApi<RequestContext> for Elbv2 {
    async fn create_rule(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateRuleInput,
    ) -> Result<wire::CreateRuleOutput, AwsError> {
        let larn = input.listener_arn.clone().unwrap_or_default();
        if input.transforms.is_some() {
            return Err(codes::validation("Transforms: not supported by Berth"));
        }
        let prio = priority(input.priority, "Priority")?;
        let (l0, _, _) = self.listener(&larn).await?;
        if l0.protocol == "TCP" {
            return Err(codes::validation(
                "ListenerArn: rules are for HTTP listeners; a TCP listener has only its default action",
            ));
        }
        let conds = conditions(input.conditions.unwrap_or_default())?;
        let acts = actions("Actions", input.actions.unwrap_or_default(), LbType::Application)?;
        let tags = new_tags(input.tags)?;
        let id = new_id();
        let mut cas = Cas::new(self.store(), format!("listener {larn}"));
        let rule = loop {
            cas.attempt().await?;
            let (mut l, rev, key) = self.listener(&larn).await?;
            if l.rules.iter().any(|r| r.priority == prio) {
                return Err(codes::err(
                    "PriorityInUse",
                    format!("Priority '{prio}' is currently in use on listener '{larn}'"),
                ));
            }
            if l.rules.len() >= 100 {
                return Err(codes::err("TooManyRules", "A listener can have at most 100 rules"));
            }
            let rule = model::RuleRecord {
                arn: self.rule_arn(&l, &id),
                id: id.clone(),
                priority: prio,
                conditions: conds.clone(),
                actions: acts.clone(),
                tags: tags.clone(),
            };
            l.rules.push(rule.clone());
            let refs: Vec<_> = rule.actions.iter().collect();
            let txn = self
                .check_groups(&refs, &l.protocol, &l.load_balancer_arn)
                .await?
                .when(&key, rev)
                .put(&key, encode(&l));
            if cas.commit(txn).await? {
                break (l, rule);
            }
        };
        let described = self.wire_rules(&rule.0);
        Ok(wire::CreateRuleOutput {
            rules: Some(
                described
                    .into_iter()
                    .filter(|(_, w)| w.rule_arn.as_deref() == Some(rule.1.arn.as_str()))
                    .map(|(_, w)| w)
                    .collect(),
            ),
        })
    }

    async fn describe_rules(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeRulesInput,
    ) -> Result<wire::DescribeRulesOutput, AwsError> {
        let arns = input.rule_arns.unwrap_or_default();
        let items: Vec<(String, wire::Rule)> = match (&input.listener_arn, arns.is_empty()) {
            (Some(larn), true) => {
                let (l, _, _) = self.listener(larn).await?;
                self.wire_rules(&l)
            }
            (None, false) => {
                let mut out = Vec::new();
                for (i, a) in arns.iter().enumerate() {
                    let (l, _, _, _) = self.rule_listener(a).await?;
                    for (k, w) in self.wire_rules(&l) {
                        if w.rule_arn.as_deref() == Some(a.as_str()) {
                            out.push((format!("{i:03}{k}"), w));
                        }
                    }
                }
                out
            }
            _ => {
                return Err(codes::validation(
                    "ListenerArn or RuleArns (one of them) must be given",
                ));
            }
        };
        let (rules, next) = page(items, input.marker.as_deref(), input.page_size)?;
        Ok(wire::DescribeRulesOutput { rules: Some(rules), next_marker: next })
    }

    async fn modify_rule(
        &self,
        _ctx: &RequestContext,
        input: wire::ModifyRuleInput,
    ) -> Result<wire::ModifyRuleOutput, AwsError> {
        let arn = input.rule_arn.clone().unwrap_or_default();
        if input.transforms.is_some() {
            return Err(codes::validation("Transforms: not supported by Berth"));
        }
        let (_, _, _, lb_type) = self.rule_listener(&arn).await?;
        let conds = input.conditions.map(conditions).transpose()?;
        let acts = input.actions.map(|a| actions("Actions", a, lb_type)).transpose()?;
        let mut cas = Cas::new(self.store(), format!("rule {arn}"));
        let l = loop {
            cas.attempt().await?;
            let (mut l, rev, key, _) = self.rule_listener(&arn).await?;
            if self.rule_arn(&l, &l.default_rule_id) == arn {
                if conds.is_some() {
                    return Err(codes::err(
                        "OperationNotPermitted",
                        "Conditions: the default rule has no conditions",
                    ));
                }
                if let Some(a) = &acts {
                    l.default_actions = a.clone();
                }
            } else if let Some(r) = l.rules.iter_mut().find(|r| r.arn == arn) {
                if let Some(c) = &conds {
                    r.conditions = c.clone();
                }
                if let Some(a) = &acts {
                    r.actions = a.clone();
                }
            }
            let refs: Vec<_> = acts.iter().flatten().collect();
            let txn = self
                .check_groups(&refs, &l.protocol, &l.load_balancer_arn)
                .await?
                .when(&key, rev)
                .put(&key, encode(&l));
            if cas.commit(txn).await? {
                break l;
            }
        };
        Ok(wire::ModifyRuleOutput {
            rules: Some(
                self.wire_rules(&l)
                    .into_iter()
                    .filter(|(_, w)| w.rule_arn.as_deref() == Some(arn.as_str()))
                    .map(|(_, w)| w)
                    .collect(),
            ),
        })
    }

    async fn delete_rule(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteRuleInput,
    ) -> Result<wire::DeleteRuleOutput, AwsError> {
        let arn = input.rule_arn.unwrap_or_default();
        let mut cas = Cas::new(self.store(), format!("rule {arn}"));
        loop {
            cas.attempt().await?;
            let (mut l, rev, key, _) = self.rule_listener(&arn).await?;
            if self.rule_arn(&l, &l.default_rule_id) == arn {
                return Err(codes::err(
                    "OperationNotPermitted",
                    "The default rule of a listener cannot be deleted",
                ));
            }
            l.rules.retain(|r| r.arn != arn);
            if cas.commit(Txn::new().when(&key, rev).put(&key, encode(&l))).await? {
                return Ok(wire::DeleteRuleOutput {});
            }
        }
    }

    async fn set_rule_priorities(
        &self,
        _ctx: &RequestContext,
        input: wire::SetRulePrioritiesInput,
    ) -> Result<wire::SetRulePrioritiesOutput, AwsError> {
        let pairs = input.rule_priorities.unwrap_or_default();
        if pairs.is_empty() {
            return Err(codes::validation("RulePriorities: at least one pair is required"));
        }
        let mut wanted = Vec::new();
        for (i, p) in pairs.into_iter().enumerate() {
            let param = format!("RulePriorities.member.{}", i + 1);
            let arn = p
                .rule_arn
                .ok_or_else(|| codes::validation(format!("{param}.RuleArn: required")))?;
            let prio = priority(p.priority, &format!("{param}.Priority"))?;
            if wanted.iter().any(|(a, _)| a == &arn) {
                return Err(codes::validation(format!("{param}.RuleArn: '{arn}' is given twice")));
            }
            wanted.push((arn, prio));
        }
        let first = self.rule_listener(&wanted[0].0).await?;
        let mut cas = Cas::new(self.store(), format!("listener {}", first.0.arn));
        let l = loop {
            cas.attempt().await?;
            let (mut l, rev, key, _) = self.rule_listener(&wanted[0].0).await?;
            for (arn, prio) in &wanted {
                if self.rule_arn(&l, &l.default_rule_id) == *arn {
                    return Err(codes::err(
                        "OperationNotPermitted",
                        "The default rule's priority cannot be changed",
                    ));
                }
                match l.rules.iter_mut().find(|r| &r.arn == arn) {
                    Some(r) => r.priority = *prio,
                    None => {
                        // In another listener, or gone.
                        self.rule_listener(arn).await?;
                        return Err(codes::validation(format!(
                            "RulePriorities: rule '{arn}' is not on listener '{}'; set the priorities of one listener's rules per call",
                            l.arn
                        )));
                    }
                }
            }
            let mut seen = HashSet::new();
            for r in &l.rules {
                if !seen.insert(r.priority) {
                    return Err(codes::err(
                        "PriorityInUse",
                        format!(
                            "Priority '{}' is currently in use on listener '{}'",
                            r.priority, l.arn
                        ),
                    ));
                }
            }
            if cas.commit(Txn::new().when(&key, rev).put(&key, encode(&l))).await? {
                break l;
            }
        };
        let arns: Vec<&str> = wanted.iter().map(|(a, _)| a.as_str()).collect();
        Ok(wire::SetRulePrioritiesOutput {
            rules: Some(
                self.wire_rules(&l)
                    .into_iter()
                    .filter(|(_, w)| w.rule_arn.as_deref().is_some_and(|a| arns.contains(&a)))
                    .map(|(_, w)| w)
                    .collect(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(field: &str, values: &[&str]) -> wire::RuleCondition {
        wire::RuleCondition {
            field: Some(field.into()),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn conditions_are_checked_as_elb_documents() {
        let ok = conditions(vec![
            cond("path-pattern", &["/api/*"]),
            cond("host-header", &["*.example.com"]),
        ])
        .unwrap();
        assert_eq!(ok.len(), 2);
        // Described conditions carry both forms, the same values: accepted back.
        assert_eq!(conditions(wire_conditions(&ok)).unwrap(), ok);
        let header = wire::RuleCondition {
            field: Some("http-header".into()),
            http_header_config: Some(wire::HttpHeaderConditionConfig {
                http_header_name: Some("X-Env".into()),
                values: Some(vec!["blue".into()]),
                regex_values: None,
            }),
            ..Default::default()
        };
        conditions(vec![header.clone()]).unwrap();
        let cases: Vec<(Vec<wire::RuleCondition>, &str, &str)> = vec![
            (vec![], "ValidationError", "Conditions:"),
            (
                vec![cond("path-pattern", &["/a b"])],
                "ValidationError",
                "Conditions.member.1.PathPatternConfig.Values",
            ),
            (
                vec![cond("host-header", &["a_b"])],
                "ValidationError",
                "Conditions.member.1.HostHeaderConfig.Values",
            ),
            (vec![cond("nope", &["x"])], "ValidationError", "Conditions.member.1.Field"),
            (vec![cond("http-header", &["x"])], "ValidationError", "Conditions.member.1.Values"),
            (
                vec![cond("path-pattern", &["/a"]), cond("path-pattern", &["/b"])],
                "ValidationError",
                "Conditions.member.2.Field",
            ),
            (
                vec![cond("path-pattern", &["/1", "/2", "/3", "/4", "/5", "/6"])],
                "TooManyRules",
                "Conditions:",
            ),
        ];
        for (given, code, param) in cases {
            let e = conditions(given).unwrap_err();
            assert_eq!(e.code, code, "{}", e.message);
            assert!(e.message.starts_with(param), "{param}: {}", e.message);
        }
    }
}
