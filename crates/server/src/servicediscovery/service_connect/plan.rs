//! The pure half of Service Connect's data plane: from what the services of a region publish
//! ([`Published`]) to the proxy's configuration, a [`berth_lb::Snapshot`] ([`snapshot`]).
//!
//! Layout of the snapshot (one load balancer, bound to the Service Connect address):
//! * one target group per published (namespace, `discoveryName`), its targets the endpoints
//!   (ready tasks' address and port), a TCP health check every second (one pass makes a new
//!   endpoint healthy, two failures unhealthy; a refused connection ejects it at once), a
//!   deregistration delay of [`DRAIN_SECS`] during which requests in flight finish;
//! * one listener per client alias port: an HTTP listener (`appProtocol` `http`) routes by
//!   the `Host` header (each alias `dnsName`), or forwards everything when one alias has the
//!   port; a TCP listener (no `appProtocol`) forwards to the one alias that has the port.
//! * Conflicts, decided in service ARN order so every pass decides the same: an alias
//!   `dnsName:port` published twice, or a port shared by several aliases when one of them is
//!   TCP (a TCP stream names no host). The later alias is left out and reported.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_lb::Snapshot;
use berth_lb::config::{
    Action, Condition, HealthCheck, HealthProtocol, LbType, Listener, ListenerProtocol,
    LoadBalancer, Rule, Target, TargetGroup, TargetGroupAttributes, TargetProtocol, TargetType,
    WeightedTargetGroup,
};

/// How long an endpoint that left the set keeps its requests in flight (the proxy's
/// deregistration delay), and how long a service task stays DEACTIVATING before it stops.
pub const DRAIN_SECS: u64 = 3;

/// One ready task of a published service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub task_id: String,
    pub ip: IpAddr,
    pub port: u16,
}

/// One Service Connect service (`services[]` entry) of one ECS service.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// The ECS service's ARN (the order conflicts are decided in).
    pub service_arn: String,
    pub namespace_arn: String,
    pub discovery_name: String,
    /// Client aliases: (`dnsName`, port).
    pub aliases: Vec<(String, u16)>,
    /// `appProtocol` `http`: requests are routed (and retried) as HTTP; else TCP.
    pub http: bool,
    pub endpoints: Vec<Endpoint>,
}

/// An alias left out of the snapshot, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub service_arn: String,
    pub alias: String,
    pub reason: String,
}

/// The target group ARN of a published service.
fn group_arn(p: &Published) -> String {
    format!("{}/service-connect/{}", p.namespace_arn, p.discovery_name)
}

/// The proxy's configuration (see the module header); `version` is the snapshot's.
pub fn snapshot(version: u64, bind: IpAddr, published: &[Published]) -> (Snapshot, Vec<Conflict>) {
    let mut ordered: Vec<&Published> = published.iter().collect();
    ordered.sort_by(|a, b| {
        (&a.service_arn, &a.discovery_name).cmp(&(&b.service_arn, &b.discovery_name))
    });
    let mut groups: BTreeMap<String, TargetGroup> = BTreeMap::new();
    // Port -> (HTTP?, [(dnsName, group ARN)]).
    let mut ports: BTreeMap<u16, (bool, Vec<(String, String)>)> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for p in ordered {
        let arn = group_arn(p);
        if groups.contains_key(&arn) {
            conflicts.push(Conflict {
                service_arn: p.service_arn.clone(),
                alias: p.discovery_name.clone(),
                reason: format!(
                    "the discoveryName '{}' is already published in this namespace by another service",
                    p.discovery_name
                ),
            });
            continue;
        }
        let mut endpoints = p.endpoints.clone();
        endpoints.sort();
        endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
        groups.insert(
            arn.clone(),
            TargetGroup {
                arn: arn.clone(),
                name: p.discovery_name.clone(),
                protocol: if p.http { TargetProtocol::Http } else { TargetProtocol::Tcp },
                port: endpoints.first().map_or(1, |e| e.port),
                target_type: TargetType::Ip,
                health_check: HealthCheck {
                    enabled: true,
                    protocol: HealthProtocol::Tcp,
                    interval_seconds: 1,
                    timeout_seconds: 1,
                    healthy_threshold: 1,
                    unhealthy_threshold: 2,
                    ..HealthCheck::default()
                },
                attributes: TargetGroupAttributes {
                    deregistration_delay_seconds: DRAIN_SECS,
                    ..TargetGroupAttributes::default()
                },
                targets: endpoints
                    .iter()
                    .map(|e| Target {
                        id: e.task_id.clone(),
                        ip: e.ip,
                        port: e.port,
                        state: Default::default(),
                    })
                    .collect(),
            },
        );
        for (dns, port) in &p.aliases {
            let dns = dns.to_ascii_lowercase();
            let alias = format!("{dns}:{port}");
            let entry = ports.entry(*port).or_insert((p.http, Vec::new()));
            let clash = if entry.1.iter().any(|(d, _)| *d == dns) {
                Some(format!("the client alias {alias} is already published by another service"))
            } else if !(entry.1.is_empty() || entry.0 && p.http) {
                Some(format!(
                    "port {port} is already used by another client alias, and a TCP alias (no appProtocol http) needs a port of its own"
                ))
            } else {
                None
            };
            match clash {
                Some(reason) => {
                    conflicts.push(Conflict { service_arn: p.service_arn.clone(), alias, reason })
                }
                None => entry.1.push((dns, arn.clone())),
            }
        }
    }
    let forward = |arn: &str| Action::Forward {
        target_groups: vec![WeightedTargetGroup { target_group_arn: arn.to_string(), weight: 1 }],
        stickiness: None,
    };
    let listeners = ports
        .into_iter()
        .map(|(port, (http, aliases))| {
            let arn = format!("service-connect/listener/{port}");
            let protocol = if http { ListenerProtocol::Http } else { ListenerProtocol::Tcp };
            if aliases.len() == 1 {
                return Listener {
                    arn,
                    protocol,
                    port,
                    default_actions: vec![forward(&aliases[0].1)],
                    rules: vec![],
                };
            }
            let rules = aliases
                .iter()
                .enumerate()
                .map(|(i, (dns, group))| Rule {
                    arn: format!("{arn}/rule/{dns}"),
                    priority: i as u32 + 1,
                    conditions: vec![Condition::HostHeader { values: vec![dns.clone()] }],
                    actions: vec![forward(group)],
                })
                .collect();
            Listener {
                arn,
                protocol,
                port,
                default_actions: vec![Action::FixedResponse {
                    status_code: 404,
                    content_type: Some("text/plain".into()),
                    message_body: Some(format!(
                        "No Service Connect client alias on port {port} matches the request's Host.\n"
                    )),
                }],
                rules,
            }
        })
        .collect::<Vec<_>>();
    // HTTP aliases on an application load balancer, TCP ones on a network load balancer:
    // the engine accepts each protocol only on its own kind.
    let (http, tcp): (Vec<_>, Vec<_>) =
        listeners.into_iter().partition(|l| l.protocol == ListenerProtocol::Http);
    let load_balancers = [
        ("service-connect", LbType::Application, http),
        ("service-connect-tcp", LbType::Network, tcp),
    ]
    .into_iter()
    .filter(|(_, _, listeners)| !listeners.is_empty())
    .map(|(name, lb_type, listeners)| LoadBalancer {
        arn: name.into(),
        name: name.into(),
        lb_type,
        bind_address: bind,
        idle_timeout_seconds: 60,
        listeners,
    })
    .collect();
    let snap = Snapshot { version, load_balancers, target_groups: groups.into_values().collect() };
    (snap, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, port: u16) -> Endpoint {
        Endpoint { task_id: id.into(), ip: "10.0.0.1".parse().unwrap(), port }
    }

    fn publ(svc: &str, name: &str, aliases: &[(&str, u16)], http: bool) -> Published {
        Published {
            service_arn: format!("arn:svc/{svc}"),
            namespace_arn: "arn:ns".into(),
            discovery_name: name.into(),
            aliases: aliases.iter().map(|(d, p)| (d.to_string(), *p)).collect(),
            http,
            endpoints: vec![ep("t1", 32768), ep("t2", 32769)],
        }
    }

    /// (case, published, listeners as (port, protocol, default forwards?, rule hosts),
    /// conflicting aliases)
    #[test]
    fn snapshot_table() {
        type Want = Vec<(u16, ListenerProtocol, bool, Vec<&'static str>)>;
        type Case = (&'static str, Vec<Published>, Want, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            ("nothing published", vec![], vec![], vec![]),
            (
                "one HTTP alias forwards everything",
                vec![publ("a", "api", &[("api.shop", 80)], true)],
                vec![(80, ListenerProtocol::Http, true, vec![])],
                vec![],
            ),
            (
                "two HTTP aliases on one port route by host",
                vec![
                    publ("a", "api", &[("api.shop", 80)], true),
                    publ("b", "web", &[("web.shop", 80)], true),
                ],
                vec![(80, ListenerProtocol::Http, false, vec!["api.shop", "web.shop"])],
                vec![],
            ),
            (
                "a TCP alias needs its own port",
                vec![
                    publ("a", "api", &[("api.shop", 80)], true),
                    publ("b", "db", &[("db.shop", 80), ("db.shop", 5432)], false),
                ],
                vec![
                    (80, ListenerProtocol::Http, true, vec![]),
                    (5432, ListenerProtocol::Tcp, true, vec![]),
                ],
                vec!["db.shop:80"],
            ),
            (
                "the same alias twice: the first service keeps it",
                vec![
                    publ("b", "web", &[("api.shop", 80)], true),
                    publ("a", "api", &[("API.shop", 80)], true),
                ],
                vec![(80, ListenerProtocol::Http, true, vec![])],
                vec!["api.shop:80"],
            ),
            (
                "a discoveryName twice in a namespace",
                vec![
                    publ("a", "api", &[("api.shop", 80)], true),
                    publ("b", "api", &[("other", 81)], true),
                ],
                vec![(80, ListenerProtocol::Http, true, vec![])],
                vec!["api"],
            ),
        ];
        for (name, published, want, want_conflicts) in cases {
            let (snap, conflicts) = snapshot(7, "172.17.0.1".parse().unwrap(), &published);
            snap.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            let got: Want = snap
                .load_balancers
                .iter()
                .flat_map(|lb| lb.listeners.iter())
                .map(|l| {
                    let fwd = matches!(l.default_actions[0], Action::Forward { .. });
                    let hosts = l
                        .rules
                        .iter()
                        .flat_map(|r| match &r.conditions[0] {
                            Condition::HostHeader { values } => values.clone(),
                            _ => vec![],
                        })
                        .map(|h| -> &'static str { Box::leak(h.into_boxed_str()) })
                        .collect();
                    (l.port, l.protocol, fwd, hosts)
                })
                .collect();
            assert_eq!(got, want, "{name}");
            let c: Vec<&str> = conflicts.iter().map(|c| c.alias.as_str()).collect();
            assert_eq!(c, want_conflicts, "{name}");
            for g in &snap.target_groups {
                assert_eq!(g.targets.len(), 2, "{name}");
                assert_eq!(g.attributes.deregistration_delay_seconds, DRAIN_SECS);
            }
        }
    }
}
