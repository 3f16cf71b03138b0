//! The configuration snapshot the control plane hands the data plane: every load balancer with
//! its listeners and rules, and every target group with its health check, attributes and
//! targets, as ELBv2 records describe them.
//!
//! Contract:
//! * A [`Snapshot`] is complete and level-triggered: applying it makes the data plane match it
//!   whatever was applied before (a restarted data plane applies the latest one and converges).
//! * `version` only grows; [`crate::Lb::apply`] ignores a snapshot older than the one applied.
//! * Objects are keyed by their ARN; a listener whose bind address, port and protocol did not
//!   change keeps its socket across snapshots.
//! * [`Snapshot::validate`] rejects what the data plane cannot run (unknown target group
//!   references, bad priorities, malformed matchers) with an error naming the field; the ELBv2
//!   API validates user input earlier with AWS's own messages, so this is a second line.
//!
//! The serde form (camelCase JSON) is what `berth lb` reads from the control plane's watch.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One version of the whole data plane's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Grows with every change the control plane makes (a store revision).
    pub version: u64,
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancer>,
    #[serde(default)]
    pub target_groups: Vec<TargetGroup>,
}

/// `application` (HTTP listeners) or `network` (TCP listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbType {
    Application,
    Network,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    #[serde(rename = "type")]
    pub lb_type: LbType,
    /// The local address every listener of this load balancer binds (loopback for `berth up`).
    pub bind_address: IpAddr,
    /// ALB's `idle_timeout.timeout_seconds`: how long a target may take to answer before the
    /// client gets 504.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

fn default_idle_timeout() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ListenerProtocol {
    Http,
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub arn: String,
    pub protocol: ListenerProtocol,
    /// The port to bind; 0 picks a free one (tests), readable through
    /// [`crate::Lb::listener_addr`].
    pub port: u16,
    pub default_actions: Vec<Action>,
    /// Non-default rules, in any order (matched by ascending priority).
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub arn: String,
    /// 1..=50000; lower numbers are evaluated first.
    pub priority: u32,
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
}

/// One rule condition; a rule matches when all its conditions do, a condition matches when any
/// of its values does (ALB's semantics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum Condition {
    /// Case-sensitive match of the URL path (no query) with `*` and `?` wildcards.
    PathPattern { values: Vec<String> },
    /// Case-insensitive match of the host name (port stripped) with wildcards.
    HostHeader { values: Vec<String> },
    /// A header by name (case-insensitive); values case-insensitive with wildcards.
    #[serde(rename_all = "camelCase")]
    HttpHeader { header_name: String, values: Vec<String> },
    /// Query parameters: each value is a key/value pair (key optional), case-insensitive with
    /// wildcards, matched against the decoded parameters.
    QueryString { values: Vec<QueryPair> },
    /// The client's source address (the connection's peer, not X-Forwarded-For) in a CIDR.
    SourceIp { values: Vec<IpNet> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPair {
    #[serde(default)]
    pub key: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    #[serde(rename_all = "camelCase")]
    Forward {
        target_groups: Vec<WeightedTargetGroup>,
        /// Target-group stickiness of a weighted forward (`AWSALBTG` cookie).
        #[serde(default)]
        stickiness: Option<GroupStickiness>,
    },
    #[serde(rename_all = "camelCase")]
    FixedResponse {
        status_code: u16,
        #[serde(default)]
        content_type: Option<String>,
        #[serde(default)]
        message_body: Option<String>,
    },
    Redirect(Redirect),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTargetGroup {
    pub target_group_arn: String,
    /// 0..=999 as ELB allows; a group with weight 0 gets no traffic.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupStickiness {
    pub enabled: bool,
    pub duration_seconds: u64,
}

/// ELB's redirect action. Each component defaults to the request's own (`#{protocol}`,
/// `#{host}`, `#{port}`, `/#{path}`, `#{query}`) and may use those placeholders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    /// `HTTP_301` or `HTTP_302`.
    pub status_code: RedirectCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedirectCode {
    #[serde(rename = "HTTP_301")]
    Http301,
    #[serde(rename = "HTTP_302")]
    Http302,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TargetProtocol {
    Http,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Instance,
    Ip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub protocol: TargetProtocol,
    /// The default port of targets registered without one.
    pub port: u16,
    pub target_type: TargetType,
    pub health_check: HealthCheck,
    #[serde(default)]
    pub attributes: TargetGroupAttributes,
    #[serde(default)]
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthProtocol {
    Http,
    Tcp,
}

/// `traffic-port` (the target's own port) or a fixed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthPort {
    TrafficPort,
    #[serde(untagged)]
    Port(u16),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub protocol: HealthProtocol,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default = "traffic_port")]
    pub port: HealthPort,
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// ELB's `HttpCode`: `200`, `200,302`, `200-299`.
    #[serde(default = "default_matcher")]
    pub matcher: String,
}

fn yes() -> bool {
    true
}
fn default_path() -> String {
    "/".into()
}
fn traffic_port() -> HealthPort {
    HealthPort::TrafficPort
}
fn default_matcher() -> String {
    "200".into()
}

impl Default for HealthCheck {
    /// ALB's defaults for an HTTP target group.
    fn default() -> Self {
        HealthCheck {
            enabled: true,
            protocol: HealthProtocol::Http,
            path: "/".into(),
            port: HealthPort::TrafficPort,
            interval_seconds: 30,
            timeout_seconds: 5,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: "200".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupAttributes {
    /// `deregistration_delay.timeout_seconds` (ELB's default 300).
    pub deregistration_delay_seconds: u64,
    /// `slow_start.duration_seconds` (0 = off).
    pub slow_start_seconds: u64,
    /// `stickiness.enabled` with `stickiness.type` `lb_cookie`.
    pub stickiness_enabled: bool,
    /// `stickiness.lb_cookie.duration_seconds` (ELB's default one day).
    pub stickiness_duration_seconds: u64,
}

impl Default for TargetGroupAttributes {
    fn default() -> Self {
        TargetGroupAttributes {
            deregistration_delay_seconds: 300,
            slow_start_seconds: 0,
            stickiness_enabled: false,
            stickiness_duration_seconds: 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The instance id or IP the API knows the target by (DescribeTargetHealth's `Id`).
    pub id: String,
    /// Where traffic goes.
    pub ip: IpAddr,
    pub port: u16,
    #[serde(default)]
    pub state: Registration,
}

/// A target the control plane still lists as `deregistering` drains exactly like one that has
/// left the snapshot; the delay runs from when the data plane first saw either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    #[default]
    Registered,
    Deregistering,
}

/// A snapshot the data plane refuses, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

/// Parsed ELB matcher (`200`, `200,302`, `200-299`): inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeMatcher(Vec<(u16, u16)>);

impl CodeMatcher {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| format!("'{part}' is not an HTTP code"))?;
            let hi: u16 = hi.parse().map_err(|_| format!("'{part}' is not an HTTP code"))?;
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(format!("'{part}' is not a code or range within 100-599"));
            }
            ranges.push((lo, hi));
        }
        Ok(CodeMatcher(ranges))
    }

    pub fn matches(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

impl Snapshot {
    /// Checks every reference and value the engine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut groups = HashSet::new();
        for (i, tg) in self.target_groups.iter().enumerate() {
            let f = format!("targetGroups[{i}]");
            if !groups.insert(tg.arn.as_str()) {
                return Err(err(format!("{f}.arn"), format!("duplicate target group {}", tg.arn)));
            }
            let hc = &tg.health_check;
            if hc.interval_seconds == 0 || hc.timeout_seconds == 0 {
                return Err(err(
                    format!("{f}.healthCheck"),
                    "interval and timeout must be at least 1 second",
                ));
            }
            if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
                return Err(err(format!("{f}.healthCheck"), "thresholds must be at least 1"));
            }
            if hc.protocol == HealthProtocol::Http {
                CodeMatcher::parse(&hc.matcher)
                    .map_err(|m| err(format!("{f}.healthCheck.matcher"), m))?;
                if !hc.path.starts_with('/') {
                    return Err(err(format!("{f}.healthCheck.path"), "must start with '/'"));
                }
            }
            let mut seen = HashSet::new();
            for (j, t) in tg.targets.iter().enumerate() {
                if !seen.insert((t.ip, t.port)) {
                    return Err(err(
                        format!("{f}.targets[{j}]"),
                        format!("{}:{} is registered twice", t.ip, t.port),
                    ));
                }
                if t.port == 0 {
                    return Err(err(format!("{f}.targets[{j}].port"), "must be 1-65535"));
                }
            }
        }
        let mut listeners = HashSet::new();
        for (i, lb) in self.load_balancers.iter().enumerate() {
            for (j, l) in lb.listeners.iter().enumerate() {
                let f = format!("loadBalancers[{i}].listeners[{j}]");
                if !listeners.insert(l.arn.as_str()) {
                    return Err(err(format!("{f}.arn"), format!("duplicate listener {}", l.arn)));
                }
                let expected = match lb.lb_type {
                    LbType::Application => ListenerProtocol::Http,
                    LbType::Network => ListenerProtocol::Tcp,
                };
                if l.protocol != expected {
                    return Err(err(
                        format!("{f}.protocol"),
                        format!(
                            "{:?} is not valid on a {:?} load balancer",
                            l.protocol, lb.lb_type
                        ),
                    ));
                }
                if l.default_actions.is_empty() {
                    return Err(err(
                        format!("{f}.defaultActions"),
                        "a listener needs a default action",
                    ));
                }
                check_actions(
                    &l.default_actions,
                    &groups,
                    l.protocol,
                    &format!("{f}.defaultActions"),
                )?;
                let mut priorities = HashSet::new();
                for (k, r) in l.rules.iter().enumerate() {
                    let rf = format!("{f}.rules[{k}]");
                    if l.protocol == ListenerProtocol::Tcp {
                        return Err(err(rf, "TCP listeners have no rules"));
                    }
                    if !(1..=50_000).contains(&r.priority) || !priorities.insert(r.priority) {
                        return Err(err(
                            format!("{rf}.priority"),
                            format!("{} is out of 1-50000 or already used", r.priority),
                        ));
                    }
                    if r.actions.is_empty() {
                        return Err(err(format!("{rf}.actions"), "a rule needs an action"));
                    }
                    check_actions(&r.actions, &groups, l.protocol, &format!("{rf}.actions"))?;
                }
            }
        }
        Ok(())
    }
}

fn check_actions(
    actions: &[Action],
    groups: &HashSet<&str>,
    protocol: ListenerProtocol,
    field: &str,
) -> Result<(), ConfigError> {
    // The first terminal action decides; ELB allows only one.
    for (i, a) in actions.iter().enumerate() {
        let f = format!("{field}[{i}]");
        match a {
            Action::Forward { target_groups, .. } => {
                if target_groups.is_empty() {
                    return Err(err(format!("{f}.targetGroups"), "forward needs a target group"));
                }
                if target_groups.iter().all(|g| g.weight == 0) {
                    return Err(err(
                        format!("{f}.targetGroups"),
                        "at least one weight must be above 0",
                    ));
                }
                for g in target_groups {
                    if !groups.contains(g.target_group_arn.as_str()) {
                        return Err(err(
                            format!("{f}.targetGroups"),
                            format!("unknown target group {}", g.target_group_arn),
                        ));
                    }
                    if g.weight > 999 {
                        return Err(err(format!("{f}.targetGroups"), "weights are 0-999"));
                    }
                }
            }
            Action::FixedResponse { status_code, .. } => {
                if protocol != ListenerProtocol::Http {
                    return Err(err(f, "fixed-response needs an HTTP listener"));
                }
                if !matches!(status_code / 100, 2 | 4 | 5) {
                    return Err(err(format!("{f}.statusCode"), "must be 2XX, 4XX or 5XX"));
                }
            }
            Action::Redirect(r) => {
                if protocol != ListenerProtocol::Http {
                    return Err(err(f, "redirect needs an HTTP listener"));
                }
                if let Some(p) = &r.path
                    && !p.starts_with('/')
                {
                    return Err(err(format!("{f}.path"), "must start with '/'"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_parses_elb_forms() {
        let m = CodeMatcher::parse("200").unwrap();
        assert!(m.matches(200) && !m.matches(201));
        let m = CodeMatcher::parse("200,302").unwrap();
        assert!(m.matches(302) && !m.matches(301));
        let m = CodeMatcher::parse("200-299").unwrap();
        assert!(m.matches(204) && !m.matches(300) && !m.matches(199));
        for bad in ["", "abc", "299-200", "600", "20x"] {
            assert!(CodeMatcher::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snapshot_roundtrips_through_json() {
        let json = r#"{"version":3,"loadBalancers":[{"arn":"lb","name":"web","type":"application",
          "bindAddress":"127.0.0.1","listeners":[{"arn":"l1","protocol":"HTTP","port":0,
          "defaultActions":[{"type":"fixed-response","statusCode":404}],
          "rules":[{"arn":"r1","priority":5,"conditions":[{"field":"path-pattern","values":["/api/*"]},
            {"field":"source-ip","values":["10.0.0.0/8"]},
            {"field":"http-header","headerName":"X-Env","values":["blue"]}],
            "actions":[{"type":"forward","targetGroups":[{"targetGroupArn":"tg","weight":3}]}]}]}]}],
          "targetGroups":[{"arn":"tg","name":"tg","protocol":"HTTP","port":80,"targetType":"ip",
          "healthCheck":{"protocol":"HTTP","port":"traffic-port","intervalSeconds":5,"timeoutSeconds":2,
          "healthyThreshold":2,"unhealthyThreshold":2,"matcher":"200-299"},
          "targets":[{"id":"10.0.0.5","ip":"127.0.0.1","port":8080}]}]}"#;
        let s: Snapshot = serde_json::from_str(json).unwrap();
        s.validate().unwrap();
        assert_eq!(s.target_groups[0].health_check.port, HealthPort::TrafficPort);
        assert_eq!(s.target_groups[0].attributes.deregistration_delay_seconds, 300);
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let p: HealthPort = serde_json::from_str("8081").unwrap();
        assert_eq!(p, HealthPort::Port(8081));
    }

    #[test]
    fn validate_names_the_field() {
        let mut s = Snapshot {
            version: 1,
            load_balancers: vec![LoadBalancer {
                arn: "lb".into(),
                name: "lb".into(),
                lb_type: LbType::Application,
                bind_address: "127.0.0.1".parse().unwrap(),
                idle_timeout_seconds: 60,
                listeners: vec![Listener {
                    arn: "l".into(),
                    protocol: ListenerProtocol::Http,
                    port: 0,
                    default_actions: vec![Action::Forward {
                        target_groups: vec![WeightedTargetGroup {
                            target_group_arn: "nope".into(),
                            weight: 1,
                        }],
                        stickiness: None,
                    }],
                    rules: vec![],
                }],
            }],
            target_groups: vec![],
        };
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "loadBalancers[0].listeners[0].defaultActions[0].targetGroups");
        s.load_balancers[0].listeners[0].protocol = ListenerProtocol::Tcp;
        assert_eq!(s.validate().unwrap_err().field, "loadBalancers[0].listeners[0].protocol");
    }
}
