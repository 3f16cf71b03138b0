//! Elastic Load Balancing (v2) as the store keeps it: load balancers, target groups with their
//! registered targets, and listeners with their rules (issue #13).
//!
//! This module is the contract between the ELBv2 API (`berth_server::elbv2`, which writes these
//! records) and the load balancer data plane (which turns them into a `berth_lb::Snapshot`,
//! inside `berth up` today and in a separate `berth lb` process later).
//!
//! Invariants:
//! * every record lives in its region's view of the store under `elbv2/` ([`keys`]);
//! * a load balancer's name and a target group's name are unique per region: the name keys
//!   (`elbv2/lb-names/<name>`, `elbv2/tg-names/<name>`) are created with compare-and-set on
//!   absence in the same transaction as the record, and deleted with it;
//! * a listener's port is unique per load balancer (`elbv2/listener-ports/<lb-id>/<port>`,
//!   created and deleted with the listener);
//! * a listener record holds its non-default rules, so a priority is unique per listener and
//!   `SetRulePriorities` is one compare-and-set;
//! * every target group a listener or rule forwards to exists: writes that add a reference
//!   rewrite the referenced target groups in the same transaction (compare-and-set on their
//!   revisions), and DeleteTargetGroup deletes with compare-and-set on the revision it
//!   checked for references, so a reference and a delete cannot both commit;
//! * a deregistered target leaves the record at once; the data plane drains it for the
//!   group's deregistration delay (it is what DescribeTargetHealth then shows `draining`).
//!
//! ARNs are AWS's shapes: `arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/NAME/ID`
//! (`net/` for network load balancers), `targetgroup/NAME/ID`, `listener/app/NAME/LBID/ID`,
//! `listener-rule/app/NAME/LBID/LISTENERID/ID`; ids are 16 hex digits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A tag as ELB keeps it (value may be empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// `application` or `network`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbType {
    Application,
    Network,
}

impl LbType {
    pub fn as_str(self) -> &'static str {
        match self {
            LbType::Application => "application",
            LbType::Network => "network",
        }
    }
    /// The ARN segment: `app` or `net`.
    pub fn arn_segment(self) -> &'static str {
        match self {
            LbType::Application => "app",
            LbType::Network => "net",
        }
    }
}

/// One subnet of a load balancer, with its zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbSubnet {
    pub subnet_id: String,
    pub zone: String,
}

/// `elbv2/load-balancers/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerRecord {
    pub arn: String,
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub lb_type: LbType,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    pub vpc_id: String,
    pub subnets: Vec<LbSubnet>,
    pub security_groups: Vec<String>,
    /// `ipv4` or `dualstack`.
    pub ip_address_type: String,
    pub dns_name: String,
    pub created_time: f64,
    /// Every attribute with its value (ELB's defaults filled in at creation).
    pub attributes: BTreeMap<String, String>,
    pub tags: Vec<Tag>,
}

/// The health check of a target group, as the API describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckRecord {
    pub enabled: bool,
    /// `HTTP`, `TCP`.
    pub protocol: String,
    /// `traffic-port` or a port number.
    pub port: String,
    /// HTTP checks only.
    pub path: Option<String>,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// HTTP checks only: `200`, `200,302`, `200-299`.
    pub matcher: Option<String>,
}

/// A registered target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// The instance id or IP address.
    pub id: String,
    pub port: u16,
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Where an `instance` target's traffic goes when the registrar knows it (an ECS service
    /// task's host, registered by the service controller); `None`: resolved from the EC2
    /// instance record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::IpAddr>,
}

/// `elbv2/target-groups/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupRecord {
    pub arn: String,
    pub id: String,
    pub name: String,
    /// `HTTP` or `TCP`.
    pub protocol: String,
    pub port: u16,
    pub vpc_id: String,
    /// `instance` or `ip`.
    pub target_type: String,
    pub health_check: HealthCheckRecord,
    pub attributes: BTreeMap<String, String>,
    pub targets: Vec<TargetRecord>,
    pub tags: Vec<Tag>,
}

/// One target group of a forward action, with its weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedGroup {
    pub target_group_arn: String,
    pub weight: u32,
}

/// A listener or rule action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ActionRecord {
    /// `TargetGroupArn` alone is stored as one group of weight 1, `single` set so it is
    /// described the way it was given.
    Forward {
        target_groups: Vec<WeightedGroup>,
        #[serde(default)]
        single: bool,
        #[serde(default)]
        stickiness: Option<(bool, u32)>,
    },
    FixedResponse {
        status_code: String,
        content_type: Option<String>,
        message_body: Option<String>,
    },
    Redirect {
        protocol: Option<String>,
        host: Option<String>,
        port: Option<String>,
        path: Option<String>,
        query: Option<String>,
        /// `HTTP_301` or `HTTP_302`.
        status_code: String,
    },
}

impl ActionRecord {
    /// The target groups this action forwards to.
    pub fn target_groups(&self) -> impl Iterator<Item = &str> {
        let groups: &[WeightedGroup] = match self {
            ActionRecord::Forward { target_groups, .. } => target_groups,
            _ => &[],
        };
        groups.iter().map(|g| g.target_group_arn.as_str())
    }
}

/// A query-string condition's pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPair {
    pub key: Option<String>,
    pub value: String,
}

/// A rule condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum ConditionRecord {
    PathPattern { values: Vec<String> },
    HostHeader { values: Vec<String> },
    HttpHeader { header_name: String, values: Vec<String> },
    QueryString { values: Vec<QueryPair> },
    SourceIp { values: Vec<String> },
}

impl ConditionRecord {
    /// The condition's `Field`.
    pub fn field(&self) -> &'static str {
        match self {
            ConditionRecord::PathPattern { .. } => "path-pattern",
            ConditionRecord::HostHeader { .. } => "host-header",
            ConditionRecord::HttpHeader { .. } => "http-header",
            ConditionRecord::QueryString { .. } => "query-string",
            ConditionRecord::SourceIp { .. } => "source-ip",
        }
    }
}

/// A non-default rule of a listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub arn: String,
    pub id: String,
    pub priority: u32,
    pub conditions: Vec<ConditionRecord>,
    pub actions: Vec<ActionRecord>,
    pub tags: Vec<Tag>,
}

/// `elbv2/listeners/<lb-id>/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRecord {
    pub arn: String,
    pub id: String,
    pub load_balancer_arn: String,
    pub load_balancer_id: String,
    /// `HTTP` or `TCP`.
    pub protocol: String,
    pub port: u16,
    pub default_actions: Vec<ActionRecord>,
    /// The id of the listener's default rule (DescribeRules lists it with `IsDefault`).
    pub default_rule_id: String,
    pub rules: Vec<RuleRecord>,
    pub tags: Vec<Tag>,
}

impl ListenerRecord {
    /// Every target group the listener's actions and rules forward to.
    pub fn target_groups(&self) -> impl Iterator<Item = &str> {
        self.default_actions
            .iter()
            .chain(self.rules.iter().flat_map(|r| r.actions.iter()))
            .flat_map(|a| a.target_groups())
    }
}

/// ELB's defaults of a load balancer's attributes.
pub fn default_lb_attributes(lb_type: LbType) -> BTreeMap<String, String> {
    let pairs: &[(&str, &str)] = match lb_type {
        LbType::Application => &[
            ("deletion_protection.enabled", "false"),
            ("idle_timeout.timeout_seconds", "60"),
            ("routing.http2.enabled", "true"),
            ("routing.http.drop_invalid_header_fields.enabled", "false"),
            ("routing.http.xff_header_processing.mode", "append"),
            ("access_logs.s3.enabled", "false"),
            ("access_logs.s3.bucket", ""),
            ("access_logs.s3.prefix", ""),
            ("load_balancing.cross_zone.enabled", "true"),
        ],
        LbType::Network => &[
            ("deletion_protection.enabled", "false"),
            ("load_balancing.cross_zone.enabled", "false"),
            ("access_logs.s3.enabled", "false"),
            ("access_logs.s3.bucket", ""),
            ("access_logs.s3.prefix", ""),
        ],
    };
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// ELB's defaults of a target group's attributes.
pub fn default_tg_attributes(protocol: &str) -> BTreeMap<String, String> {
    let mut pairs: Vec<(&str, &str)> =
        vec![("deregistration_delay.timeout_seconds", "300"), ("stickiness.enabled", "false")];
    if protocol == "TCP" {
        pairs.extend([("stickiness.type", "source_ip"), ("proxy_protocol_v2.enabled", "false")]);
    } else {
        pairs.extend([
            ("stickiness.type", "lb_cookie"),
            ("stickiness.lb_cookie.duration_seconds", "86400"),
            ("slow_start.duration_seconds", "0"),
            ("load_balancing.algorithm.type", "round_robin"),
        ]);
    }
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The store keys of ELBv2's records.
pub mod keys {
    /// Prefix of every ELBv2 record.
    pub const ROOT: &str = "elbv2/";
    /// Prefix of every load balancer.
    pub const LOAD_BALANCERS: &str = "elbv2/load-balancers/";
    pub fn load_balancer(id: &str) -> String {
        format!("{LOAD_BALANCERS}{id}")
    }
    /// `elbv2/lb-names/<name>`: the value is the id.
    pub fn load_balancer_name(name: &str) -> String {
        format!("elbv2/lb-names/{}", name.to_ascii_lowercase())
    }
    /// Prefix of every target group.
    pub const TARGET_GROUPS: &str = "elbv2/target-groups/";
    pub fn target_group(id: &str) -> String {
        format!("{TARGET_GROUPS}{id}")
    }
    /// `elbv2/tg-names/<name>`: the value is the id.
    pub fn target_group_name(name: &str) -> String {
        format!("elbv2/tg-names/{}", name.to_ascii_lowercase())
    }
    /// Prefix of every listener.
    pub const LISTENERS: &str = "elbv2/listeners/";
    /// Prefix of one load balancer's listeners.
    pub fn listeners_of(lb_id: &str) -> String {
        format!("{LISTENERS}{lb_id}/")
    }
    pub fn listener(lb_id: &str, id: &str) -> String {
        format!("{LISTENERS}{lb_id}/{id}")
    }
    /// `elbv2/listener-ports/<lb-id>/<port>`: the value is the listener id.
    pub fn listener_port(lb_id: &str, port: u16) -> String {
        format!("elbv2/listener-ports/{lb_id}/{port}")
    }
}

/// The parts of an ELBv2 ARN this region minted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedArn {
    LoadBalancer { name: String, id: String },
    TargetGroup { name: String, id: String },
    Listener { lb_id: String, id: String },
    Rule { lb_id: String, listener_id: String, id: String },
}

/// Parses `arn` when it is an ELBv2 ARN of `region` and `account`.
pub fn parse_arn(arn: &str, partition: &str, region: &str, account: &str) -> Option<ParsedArn> {
    let prefix = format!("arn:{partition}:elasticloadbalancing:{region}:{account}:");
    let rest = arn.strip_prefix(&prefix)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let typed = |t: &str| t == "app" || t == "net";
    match parts.as_slice() {
        ["loadbalancer", t, name, id] if typed(t) => {
            Some(ParsedArn::LoadBalancer { name: name.to_string(), id: id.to_string() })
        }
        ["targetgroup", name, id] => {
            Some(ParsedArn::TargetGroup { name: name.to_string(), id: id.to_string() })
        }
        ["listener", t, _name, lb, id] if typed(t) => {
            Some(ParsedArn::Listener { lb_id: lb.to_string(), id: id.to_string() })
        }
        ["listener-rule", t, _name, lb, l, id] if typed(t) => Some(ParsedArn::Rule {
            lb_id: lb.to_string(),
            listener_id: l.to_string(),
            id: id.to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_by_kind() {
        let p = "arn:aws:elasticloadbalancing:us-east-1:000000000000:";
        let cases = [
            (
                format!("{p}loadbalancer/app/web/0123456789abcdef"),
                Some(ParsedArn::LoadBalancer { name: "web".into(), id: "0123456789abcdef".into() }),
            ),
            (
                format!("{p}targetgroup/tg/aa"),
                Some(ParsedArn::TargetGroup { name: "tg".into(), id: "aa".into() }),
            ),
            (
                format!("{p}listener/net/web/lb/l"),
                Some(ParsedArn::Listener { lb_id: "lb".into(), id: "l".into() }),
            ),
            (
                format!("{p}listener-rule/app/web/lb/l/r"),
                Some(ParsedArn::Rule {
                    lb_id: "lb".into(),
                    listener_id: "l".into(),
                    id: "r".into(),
                }),
            ),
            (format!("{p}loadbalancer/gwy/web/x"), None),
            ("arn:aws:elasticloadbalancing:eu-west-1:000000000000:targetgroup/tg/aa".into(), None),
            ("nonsense".into(), None),
        ];
        for (arn, want) in cases {
            assert_eq!(parse_arn(&arn, "aws", "us-east-1", "000000000000"), want, "{arn}");
        }
    }

    #[test]
    fn records_roundtrip() {
        let a = ActionRecord::Forward {
            target_groups: vec![WeightedGroup { target_group_arn: "x".into(), weight: 1 }],
            single: true,
            stickiness: None,
        };
        let back: ActionRecord = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        let c = ConditionRecord::HttpHeader { header_name: "X".into(), values: vec!["v".into()] };
        let back: ConditionRecord =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(default_tg_attributes("HTTP")["deregistration_delay.timeout_seconds"], "300");
    }
}
