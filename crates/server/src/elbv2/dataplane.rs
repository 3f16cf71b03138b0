//! The region's load balancer data plane, fed from the ELBv2 records: a supervised,
//! level-triggered loop ([`run`]) that reads every load balancer, listener, target group and
//! the EC2 instances instance targets name, builds a whole [`berth_lb::Snapshot`]
//! ([`snapshot`], pure) and applies it ([`berth_lb::Lb::apply`]).
//!
//! Invariants:
//! * a pass runs on any store change (at most every [`MIN_GAP`]) and at least every
//!   [`PERIOD`]; a pass that fails is logged and retried by the next; the snapshot version is
//!   the store revision read before the records, so versions only grow;
//! * the snapshot is always valid for the engine: a target whose address cannot be resolved
//!   (an instance that is gone) or that duplicates another's address and port in its group is
//!   left out (logged), never failing the whole snapshot;
//! * listeners bind on [`Elbv2::bind`] and their record's port; a port that cannot be bound
//!   is logged once per change and kept in [`Elbv2::bind_errors`] (DescribeLoadBalancers then
//!   shows the load balancer `active_impaired` naming the listener and the error); the next
//!   pass retries it;
//! * when the loop stops, every listener closes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use berth_instances::record::{self as irec, InstanceRecord};
use berth_lb::config as lbc;
use berth_model::elbv2::{self as model, LbType, keys};
use berth_wire::AwsError;
use tokio::sync::watch;

use super::{Elbv2, list, targets::instance_address};

/// Longest wait between passes (health is the data plane's own; this only bounds how long a
/// missed change could go unapplied).
pub const PERIOD: Duration = Duration::from_secs(5);
/// Shortest gap between two passes (store changes come in bursts).
pub const MIN_GAP: Duration = Duration::from_millis(100);

/// The region's data plane loop, until `stop` is set.
pub(crate) async fn run(elb: Arc<Elbv2>, mut stop: watch::Receiver<bool>) {
    let mut changes = elb.store.watch();
    loop {
        if *stop.borrow() {
            elb.lb.shutdown();
            return;
        }
        let started = std::time::Instant::now();
        let result = pass(&elb).await;
        crate::cloudwatch::prometheus::observe_pass(
            "load-balancer-data-plane",
            elb.region.name,
            started,
            result.is_ok(),
        );
        if let Err(e) = result {
            tracing::warn!(region = elb.region.name, error = %e.message, "load balancer data plane pass failed");
        }
        tokio::time::sleep(MIN_GAP).await;
        tokio::select! {
            _ = stop.changed() => {}
            _ = changes.changed() => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// What [`snapshot`] reads.
pub(super) struct Records {
    pub version: u64,
    pub load_balancers: Vec<model::LoadBalancerRecord>,
    pub listeners: Vec<model::ListenerRecord>,
    pub target_groups: Vec<model::TargetGroupRecord>,
    /// Instance id -> its address, for instance targets.
    pub instances: HashMap<String, IpAddr>,
}

async fn pass(elb: &Elbv2) -> Result<(), AwsError> {
    let store = elb.store();
    let version = store.revision().await.map_err(crate::error::store)?;
    let load_balancers: Vec<model::LoadBalancerRecord> =
        list(store, keys::LOAD_BALANCERS).await?.into_iter().map(|(_, v)| v).collect();
    let target_groups: Vec<model::TargetGroupRecord> =
        list(store, keys::TARGET_GROUPS).await?.into_iter().map(|(_, v)| v).collect();
    if load_balancers.is_empty() && target_groups.is_empty() && elb.lb.version().is_none() {
        return Ok(()); // nothing ever configured in this region
    }
    let listeners: Vec<model::ListenerRecord> =
        list(store, keys::LISTENERS).await?.into_iter().map(|(_, v)| v).collect();
    let mut instances = HashMap::new();
    if target_groups.iter().any(|t| t.target_type == "instance" && !t.targets.is_empty()) {
        let recs: Vec<(String, InstanceRecord)> = list(store, irec::INSTANCES).await?;
        for (_, r) in recs {
            if let Some(ip) = instance_address(&r) {
                instances.insert(r.id.clone(), ip);
            }
        }
    }
    let records = Records { version, load_balancers, listeners, target_groups, instances };
    let (snap, skipped) = snapshot(&records, elb.bind);
    for s in skipped {
        tracing::debug!(region = elb.region.name, "{s}");
    }
    let applied = elb
        .lb
        .apply(&snap)
        .map_err(|e| AwsError::new("InternalFailure", 500, format!("data plane refused: {e}")))?;
    let now: HashMap<String, String> = applied.bind_errors.into_iter().collect();
    let mut kept = elb.bind_errors.lock().unwrap_or_else(PoisonError::into_inner);
    for (arn, e) in &now {
        if kept.get(arn) != Some(e) {
            tracing::warn!(listener = %arn, error = %e, "load balancer listener cannot bind its port; retrying on every pass");
        }
    }
    *kept = now;
    Ok(())
}

fn action(a: &model::ActionRecord) -> Option<lbc::Action> {
    Some(match a {
        model::ActionRecord::Forward { target_groups, stickiness, .. } => lbc::Action::Forward {
            target_groups: target_groups
                .iter()
                .map(|g| lbc::WeightedTargetGroup {
                    target_group_arn: g.target_group_arn.clone(),
                    weight: g.weight,
                })
                .collect(),
            stickiness: stickiness.map(|(enabled, d)| lbc::GroupStickiness {
                enabled,
                duration_seconds: u64::from(d),
            }),
        },
        model::ActionRecord::FixedResponse { status_code, content_type, message_body } => {
            lbc::Action::FixedResponse {
                status_code: status_code.parse().ok()?,
                content_type: content_type.clone(),
                message_body: message_body.clone(),
            }
        }
        model::ActionRecord::Redirect { protocol, host, port, path, query, status_code } => {
            lbc::Action::Redirect(lbc::Redirect {
                protocol: protocol.clone(),
                host: host.clone(),
                port: port.clone(),
                path: path.clone(),
                query: query.clone(),
                status_code: if status_code == "HTTP_301" {
                    lbc::RedirectCode::Http301
                } else {
                    lbc::RedirectCode::Http302
                },
            })
        }
    })
}

fn condition(c: &model::ConditionRecord) -> lbc::Condition {
    match c {
        model::ConditionRecord::PathPattern { values } => {
            lbc::Condition::PathPattern { values: values.clone() }
        }
        model::ConditionRecord::HostHeader { values } => {
            lbc::Condition::HostHeader { values: values.clone() }
        }
        model::ConditionRecord::HttpHeader { header_name, values } => {
            lbc::Condition::HttpHeader { header_name: header_name.clone(), values: values.clone() }
        }
        model::ConditionRecord::QueryString { values } => lbc::Condition::QueryString {
            values: values
                .iter()
                .map(|q| lbc::QueryPair { key: q.key.clone(), value: q.value.clone() })
                .collect(),
        },
        model::ConditionRecord::SourceIp { values } => lbc::Condition::SourceIp {
            values: values.iter().filter_map(|v| v.parse().ok()).collect(),
        },
    }
}

fn attr<T: std::str::FromStr>(
    attrs: &std::collections::BTreeMap<String, String>,
    k: &str,
    d: T,
) -> T {
    attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// The data plane's snapshot of `r`, with listeners on `bind`, and what was left out and why.
pub(super) fn snapshot(r: &Records, bind: IpAddr) -> (lbc::Snapshot, Vec<String>) {
    let mut skipped = Vec::new();
    let mut target_groups = Vec::new();
    for tg in &r.target_groups {
        let hc = &tg.health_check;
        let mut seen = HashSet::new();
        let mut targets = Vec::new();
        for t in &tg.targets {
            let ip = if tg.target_type == "ip" {
                t.id.parse().ok()
            } else {
                t.address.or_else(|| r.instances.get(&t.id).copied())
            };
            let Some(ip) = ip else {
                skipped.push(format!(
                    "target {}:{} of {}: no address (instance gone?)",
                    t.id, t.port, tg.arn
                ));
                continue;
            };
            if !seen.insert((ip, t.port)) {
                skipped.push(format!(
                    "target {}:{} of {}: {ip}:{} is already a target of the group",
                    t.id, t.port, tg.arn, t.port
                ));
                continue;
            }
            targets.push(lbc::Target {
                id: t.id.clone(),
                ip,
                port: t.port,
                state: lbc::Registration::Registered,
            });
        }
        let http = hc.protocol == "HTTP";
        target_groups.push(lbc::TargetGroup {
            arn: tg.arn.clone(),
            name: tg.name.clone(),
            protocol: if tg.protocol == "TCP" {
                lbc::TargetProtocol::Tcp
            } else {
                lbc::TargetProtocol::Http
            },
            port: tg.port,
            target_type: if tg.target_type == "ip" {
                lbc::TargetType::Ip
            } else {
                lbc::TargetType::Instance
            },
            health_check: lbc::HealthCheck {
                enabled: hc.enabled,
                protocol: if http { lbc::HealthProtocol::Http } else { lbc::HealthProtocol::Tcp },
                path: hc.path.clone().unwrap_or_else(|| "/".into()),
                port: match hc.port.parse::<u16>() {
                    Ok(p) => lbc::HealthPort::Port(p),
                    Err(_) => lbc::HealthPort::TrafficPort,
                },
                interval_seconds: u64::from(hc.interval_seconds.max(1)),
                timeout_seconds: u64::from(hc.timeout_seconds.max(1)),
                healthy_threshold: hc.healthy_threshold.max(1),
                unhealthy_threshold: hc.unhealthy_threshold.max(1),
                matcher: hc.matcher.clone().unwrap_or_else(|| "200".into()),
            },
            attributes: lbc::TargetGroupAttributes {
                deregistration_delay_seconds: attr(
                    &tg.attributes,
                    "deregistration_delay.timeout_seconds",
                    300,
                ),
                slow_start_seconds: attr(&tg.attributes, "slow_start.duration_seconds", 0),
                stickiness_enabled: attr(&tg.attributes, "stickiness.enabled", false)
                    && tg.attributes.get("stickiness.type").map(String::as_str)
                        == Some("lb_cookie"),
                stickiness_duration_seconds: attr(
                    &tg.attributes,
                    "stickiness.lb_cookie.duration_seconds",
                    86_400,
                ),
            },
            targets,
        });
    }
    let groups: HashSet<&str> = r.target_groups.iter().map(|t| t.arn.as_str()).collect();
    let mut load_balancers = Vec::new();
    for lb in &r.load_balancers {
        let mut listeners = Vec::new();
        for l in r.listeners.iter().filter(|l| l.load_balancer_arn == lb.arn) {
            if let Some(missing) = l.target_groups().find(|g| !groups.contains(g)) {
                skipped.push(format!("listener {}: target group {missing} is gone", l.arn));
                continue;
            }
            let default_actions: Vec<_> = l.default_actions.iter().filter_map(action).collect();
            if default_actions.is_empty() {
                skipped.push(format!("listener {}: no default action", l.arn));
                continue;
            }
            listeners.push(lbc::Listener {
                arn: l.arn.clone(),
                protocol: if l.protocol == "TCP" {
                    lbc::ListenerProtocol::Tcp
                } else {
                    lbc::ListenerProtocol::Http
                },
                port: l.port,
                default_actions,
                rules: l
                    .rules
                    .iter()
                    .map(|rule| lbc::Rule {
                        arn: rule.arn.clone(),
                        priority: rule.priority,
                        conditions: rule.conditions.iter().map(condition).collect(),
                        actions: rule.actions.iter().filter_map(action).collect(),
                    })
                    .filter(|rule| !rule.actions.is_empty())
                    .collect(),
            });
        }
        load_balancers.push(lbc::LoadBalancer {
            arn: lb.arn.clone(),
            name: lb.name.clone(),
            lb_type: match lb.lb_type {
                LbType::Application => lbc::LbType::Application,
                LbType::Network => lbc::LbType::Network,
            },
            bind_address: bind,
            idle_timeout_seconds: attr(&lb.attributes, "idle_timeout.timeout_seconds", 60),
            listeners,
        });
    }
    (lbc::Snapshot { version: r.version, load_balancers, target_groups }, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg(arn: &str, kind: &str, targets: &[(&str, u16)]) -> model::TargetGroupRecord {
        model::TargetGroupRecord {
            arn: arn.into(),
            id: arn.into(),
            name: arn.into(),
            protocol: "HTTP".into(),
            port: 80,
            vpc_id: "vpc".into(),
            target_type: kind.into(),
            health_check: super::super::target_groups::health_check(
                "HTTP",
                None,
                &Default::default(),
            )
            .unwrap(),
            attributes: model::default_tg_attributes("HTTP"),
            targets: targets
                .iter()
                .map(|(id, port)| model::TargetRecord {
                    id: id.to_string(),
                    port: *port,
                    availability_zone: None,
                    address: None,
                })
                .collect(),
            tags: vec![],
        }
    }

    fn forward(arn: &str) -> model::ActionRecord {
        model::ActionRecord::Forward {
            target_groups: vec![model::WeightedGroup { target_group_arn: arn.into(), weight: 1 }],
            single: true,
            stickiness: None,
        }
    }

    #[test]
    fn snapshots_are_valid_whatever_the_records_say() {
        let lb = model::LoadBalancerRecord {
            arn: "lb".into(),
            id: "lbid".into(),
            name: "web".into(),
            lb_type: LbType::Application,
            scheme: "internal".into(),
            vpc_id: "vpc".into(),
            subnets: vec![],
            security_groups: vec![],
            ip_address_type: "ipv4".into(),
            dns_name: "x".into(),
            created_time: 0.0,
            attributes: model::default_lb_attributes(LbType::Application),
            tags: vec![],
        };
        let listener = |arn: &str, tg: &str| model::ListenerRecord {
            arn: arn.into(),
            id: arn.into(),
            load_balancer_arn: "lb".into(),
            load_balancer_id: "lbid".into(),
            protocol: "HTTP".into(),
            port: 0,
            default_actions: vec![forward(tg)],
            default_rule_id: "d".into(),
            rules: vec![model::RuleRecord {
                arn: format!("{arn}/r"),
                id: "r".into(),
                priority: 5,
                conditions: vec![model::ConditionRecord::PathPattern {
                    values: vec!["/a*".into()],
                }],
                actions: vec![forward(tg)],
                tags: vec![],
            }],
            tags: vec![],
        };
        let r = Records {
            version: 7,
            load_balancers: vec![lb],
            listeners: vec![listener("l1", "ip-tg"), listener("l2", "gone")],
            target_groups: vec![
                // Two ids resolving to one address: the second is left out.
                tg("inst-tg", "instance", &[("i-1", 8080), ("i-2", 8080), ("i-gone", 8080)]),
                tg("ip-tg", "ip", &[("10.0.0.1", 80), ("10.0.0.1", 80)]),
            ],
            instances: [
                ("i-1".to_string(), IpAddr::from([127, 0, 0, 1])),
                ("i-2".to_string(), IpAddr::from([127, 0, 0, 1])),
            ]
            .into_iter()
            .collect(),
        };
        let (snap, skipped) = snapshot(&r, IpAddr::from([127, 0, 0, 1]));
        snap.validate().unwrap();
        assert_eq!(snap.version, 7);
        assert_eq!(snap.target_groups[0].targets.len(), 1);
        assert_eq!(snap.target_groups[1].targets.len(), 1);
        assert_eq!(
            snap.load_balancers[0].listeners.len(),
            1,
            "the listener to a gone group is left out"
        );
        assert_eq!(snap.load_balancers[0].listeners[0].rules.len(), 1);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
    }
}
