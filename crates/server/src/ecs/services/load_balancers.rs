//! Services behind load balancers (`loadBalancers`): the checks CreateService and
//! UpdateService make against the target groups and the task definition, the target each
//! service task registers, and the narrow interface ([`LoadBalancing`]) through which the
//! service controller reads target groups, edits their targets and reads their health.
//!
//! ELBv2 implements [`LoadBalancing`] (`crate::elbv2::ecs_targets`) over its own records: a
//! registration is a change of the target group's record (what RegisterTargets writes), so
//! the data plane follows it through its store watch like any other change. Health comes
//! from the region's data plane, as DescribeTargetHealth answers it.
//!
//! Rules (ECS's, "Use load balancing to distribute Amazon ECS service traffic"):
//! * each entry names a target group that exists and is associated with a load balancer (a
//!   listener or rule forwards to it), a container of the task definition, and a
//!   `containerPort` that container maps;
//! * target type `ip` needs the `awsvpc` network mode; `instance` needs `bridge` or `host`;
//! * the target of a task: `instance` groups get the container instance's EC2 id and the
//!   host port of the mapping (dynamic ports included), with the host's address (Berth's
//!   agents on the server's host: loopback); `ip` groups get the task's ENI address and the
//!   container port.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use berth_model::records::TaskRecord;
use berth_wire::AwsError;
use berth_wire::ecs::{AdvancedConfiguration, LoadBalancer, NetworkMode, TaskDefinition};

use crate::error;

/// A forward action's target groups (ARNs) and their weights.
pub type ForwardGroups = Vec<(String, u32)>;

/// A boxed future of [`LoadBalancing`]'s methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the service controller needs of a target group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetGroupInfo {
    pub arn: String,
    /// `instance` or `ip`.
    pub target_type: String,
    /// `deregistration_delay.timeout_seconds`: how long a deregistered target drains (a
    /// service task stays DEACTIVATING this long before it is stopped).
    pub deregistration_delay_secs: u32,
    /// The load balancers whose listeners or rules forward to it.
    pub load_balancer_arns: Vec<String>,
}

/// One target of a service task.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceTarget {
    pub id: String,
    pub port: u16,
    /// Where an `instance` target's traffic goes (see the module header).
    pub address: Option<IpAddr>,
}

/// A target's state as the data plane reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    Healthy,
    Unhealthy,
    /// `initial`, not seen yet, or anything else that is neither.
    Other,
}

/// The region's load balancing, as services use it.
pub trait LoadBalancing: Send + Sync {
    /// The target group `arn`, if it exists.
    fn target_group<'a>(
        &'a self,
        arn: &'a str,
    ) -> BoxFuture<'a, Result<Option<TargetGroupInfo>, AwsError>>;

    /// In one compare-and-set on the target group `arn`: registers every target of `want`
    /// that is missing and deregisters every target of `owned` that is registered but not in
    /// `want`. Returns how many it registered and deregistered (`(0, 0)` for a group that
    /// no longer exists).
    fn sync_targets<'a>(
        &'a self,
        arn: &'a str,
        want: Vec<ServiceTarget>,
        owned: Vec<ServiceTarget>,
    ) -> BoxFuture<'a, Result<(usize, usize), AwsError>>;

    /// The data plane's state of one target of `arn`.
    fn target_state(&self, arn: &str, target: &ServiceTarget) -> TargetState;

    /// The target groups and weights of the forward action of `rule` (a listener rule ARN,
    /// or a listener ARN for its default action); `None` if it does not exist or does not
    /// forward.
    fn forward_groups<'a>(
        &'a self,
        rule: &'a str,
    ) -> BoxFuture<'a, Result<Option<ForwardGroups>, AwsError>> {
        let _ = rule;
        Box::pin(async { Ok(None) })
    }

    /// Sets the forward action of `rule` (as [`LoadBalancing::forward_groups`]) to `groups`
    /// in one compare-and-set, keeping its stickiness; returns whether it changed.
    fn set_forward_groups<'a>(
        &'a self,
        rule: &'a str,
        groups: Vec<(String, u32)>,
    ) -> BoxFuture<'a, Result<bool, AwsError>> {
        let _ = (rule, groups);
        Box::pin(async { Ok(false) })
    }
}

/// The ECS error for a bad `loadBalancers` entry.
fn invalid(i: usize, member: &str, message: String) -> AwsError {
    error::invalid(format!("loadBalancers[{i}].{member}: {message}"))
}

/// CreateService's and UpdateService's checks of `lbs` (already shape-checked by
/// `service_rules::check_load_balancers`) against the target groups and `td`.
pub async fn check(
    lb: Option<&dyn LoadBalancing>,
    lbs: &[LoadBalancer],
    td: &TaskDefinition,
) -> Result<(), AwsError> {
    if lbs.is_empty() {
        return Ok(());
    }
    let Some(lb) = lb else {
        return Err(berth_wire::ecs::ErrorCode::UnsupportedFeatureException
            .with("loadBalancers: this server has no ELBv2 service to register targets with."));
    };
    let mode = td.network_mode.unwrap_or(NetworkMode::Bridge);
    for (i, entry) in lbs.iter().enumerate() {
        let arn = entry.target_group_arn.as_deref().unwrap_or_default();
        if let Some(adv) = &entry.advanced_configuration {
            check_advanced(lb, i, arn, adv).await?;
        }
        let Some(tg) = lb.target_group(arn).await? else {
            return Err(invalid(
                i,
                "targetGroupArn",
                format!("The target group with targetGroupArn {arn} does not exist."),
            ));
        };
        if tg.load_balancer_arns.is_empty() {
            return Err(invalid(
                i,
                "targetGroupArn",
                format!(
                    "The target group with targetGroupArn {arn} does not have an associated load balancer."
                ),
            ));
        }
        match (tg.target_type.as_str(), mode) {
            ("ip", NetworkMode::Awsvpc) => {}
            ("instance", NetworkMode::Bridge | NetworkMode::Host) => {}
            (kind, mode) => {
                let need = if kind == "ip" { "awsvpc" } else { "bridge or host" };
                return Err(invalid(
                    i,
                    "targetGroupArn",
                    format!(
                        "The provided target group {arn} has target type {kind}, which is incompatible with the {mode} network mode specified in the task definition (target type {kind} needs network mode {need})."
                    ),
                ));
            }
        }
        let name = entry.container_name.as_deref().unwrap_or_default();
        let Some(container) =
            td.container_definitions.iter().flatten().find(|c| c.name.as_deref() == Some(name))
        else {
            return Err(invalid(
                i,
                "containerName",
                format!("The container {name} does not exist in the task definition."),
            ));
        };
        let port = entry.container_port.unwrap_or_default();
        let mapped =
            container.port_mappings.iter().flatten().any(|m| m.container_port == Some(port));
        if !mapped {
            return Err(invalid(
                i,
                "containerPort",
                format!(
                    "The container {name} did not have a container port {port} defined (give it a portMappings entry with containerPort {port})."
                ),
            ));
        }
    }
    Ok(())
}

/// `advancedConfiguration` of entry `i` (primary target group `primary`): the alternate
/// target group exists with the primary's target type; the production listener rule (and
/// the test rule, if any) exists and forwards to the primary or the alternate group.
async fn check_advanced(
    lb: &dyn LoadBalancing,
    i: usize,
    primary: &str,
    adv: &AdvancedConfiguration,
) -> Result<(), AwsError> {
    let m = |s: &str| format!("advancedConfiguration.{s}");
    let alt = adv.alternate_target_group_arn.as_deref().unwrap_or_default();
    let Some(alt_tg) = lb.target_group(alt).await? else {
        return Err(invalid(
            i,
            &m("alternateTargetGroupArn"),
            format!("The target group with targetGroupArn {alt} does not exist."),
        ));
    };
    if let Some(p) = lb.target_group(primary).await?
        && p.target_type != alt_tg.target_type
    {
        return Err(invalid(
            i,
            &m("alternateTargetGroupArn"),
            format!(
                "The alternate target group {alt} has target type {}, the target group {primary} has {}: both must have the same target type.",
                alt_tg.target_type, p.target_type
            ),
        ));
    }
    let rules = [
        ("productionListenerRule", adv.production_listener_rule.as_deref()),
        ("testListenerRule", adv.test_listener_rule.as_deref()),
    ];
    for (member, rule) in rules {
        let Some(rule) = rule.filter(|r| !r.is_empty()) else { continue };
        let Some(groups) = lb.forward_groups(rule).await? else {
            return Err(invalid(
                i,
                &m(member),
                format!(
                    "The listener rule {rule} does not exist or has no forward action (give the ARN of a listener rule, or of a listener for its default action, that forwards to {primary})."
                ),
            ));
        };
        if !groups.iter().any(|(g, _)| g == primary || g == alt) {
            return Err(invalid(
                i,
                &m(member),
                format!(
                    "The listener rule {rule} forwards to neither {primary} nor {alt}: point its forward action at the service's target groups."
                ),
            ));
        }
    }
    Ok(())
}

/// The target `task` registers for `entry` in a group of `target_type`, once RUNNING; `None`
/// while it has no address or binding yet. `ec2_instance_id` is its container instance's.
pub fn task_target(
    task: &TaskRecord,
    entry: &LoadBalancer,
    target_type: &str,
    ec2_instance_id: Option<&str>,
) -> Option<ServiceTarget> {
    let port = u16::try_from(entry.container_port?).ok()?;
    if target_type == "ip" {
        let ip = task
            .task
            .attachments
            .iter()
            .flatten()
            .flat_map(|a| a.details.iter().flatten())
            .find(|d| d.name.as_deref() == Some("privateIPv4Address"))
            .and_then(|d| d.value.as_deref())
            .and_then(|v| v.parse::<IpAddr>().ok())?;
        return Some(ServiceTarget { id: ip.to_string(), port, address: None });
    }
    let name = entry.container_name.as_deref()?;
    let container =
        task.task.containers.iter().flatten().find(|c| c.name.as_deref() == Some(name))?;
    let host_port = container
        .network_bindings
        .iter()
        .flatten()
        .find(|b| b.container_port == Some(i32::from(port)) && b.host_port.is_some())
        .and_then(|b| b.host_port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)?;
    Some(ServiceTarget {
        id: ec2_instance_id?.to_string(),
        port: host_port,
        // Berth's agents run on the server's host (see the module header).
        address: Some(IpAddr::from([127, 0, 0, 1])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_wire::ecs::*;

    fn task(bindings: Vec<(i32, i32)>, eni: Option<&str>) -> TaskRecord {
        let container = Container {
            name: Some("web".into()),
            network_bindings: Some(
                bindings
                    .into_iter()
                    .map(|(c, h)| NetworkBinding {
                        container_port: Some(c),
                        host_port: Some(h),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let attachments = eni.map(|ip| {
            vec![Attachment {
                details: Some(vec![KeyValuePair {
                    name: Some("privateIPv4Address".into()),
                    value: Some(ip.into()),
                }]),
                ..Default::default()
            }]
        });
        TaskRecord {
            id: "t".into(),
            cluster: "c".into(),
            instance_id: "ci".into(),
            task: Task { containers: Some(vec![container]), attachments, ..Default::default() },
            reserved_cpu: 0,
            reserved_memory_mib: 0,
            reserved_ports_tcp: vec![],
            reserved_ports_udp: vec![],
            protected_until: None,
            report_mark: None,
        }
    }

    fn entry(port: i32) -> LoadBalancer {
        LoadBalancer {
            target_group_arn: Some("arn:tg".into()),
            container_name: Some("web".into()),
            container_port: Some(port),
            ..Default::default()
        }
    }

    /// Target groups by ARN: (type, associated with a load balancer).
    struct Fake(Vec<(&'static str, &'static str, bool)>);

    impl LoadBalancing for Fake {
        fn target_group<'a>(
            &'a self,
            arn: &'a str,
        ) -> BoxFuture<'a, Result<Option<TargetGroupInfo>, AwsError>> {
            let found = self.0.iter().find(|g| g.0 == arn).map(|g| TargetGroupInfo {
                arn: g.0.into(),
                target_type: g.1.into(),
                deregistration_delay_secs: 300,
                load_balancer_arns: if g.2 { vec!["arn:lb".into()] } else { vec![] },
            });
            Box::pin(async move { Ok(found) })
        }
        fn sync_targets<'a>(
            &'a self,
            _: &'a str,
            _: Vec<ServiceTarget>,
            _: Vec<ServiceTarget>,
        ) -> BoxFuture<'a, Result<(usize, usize), AwsError>> {
            Box::pin(async { Ok((0, 0)) })
        }
        fn target_state(&self, _: &str, _: &ServiceTarget) -> TargetState {
            TargetState::Other
        }
    }

    fn td(mode: NetworkMode) -> TaskDefinition {
        TaskDefinition {
            network_mode: Some(mode),
            container_definitions: Some(vec![ContainerDefinition {
                name: Some("web".into()),
                port_mappings: Some(vec![PortMapping {
                    container_port: Some(8080),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn load_balancers_are_checked_against_target_groups_and_the_task_definition() {
        let fake = Fake(vec![
            ("arn:inst", "instance", true),
            ("arn:ip", "ip", true),
            ("arn:alone", "instance", false),
        ]);
        let e = |tg: &str, name: &str, port: i32| LoadBalancer {
            target_group_arn: Some(tg.into()),
            container_name: Some(name.into()),
            container_port: Some(port),
            ..Default::default()
        };
        // (case, entry, network mode, expected error fragment or None)
        let cases = [
            ("bridge, instance", e("arn:inst", "web", 8080), NetworkMode::Bridge, None),
            ("host, instance", e("arn:inst", "web", 8080), NetworkMode::Host, None),
            ("awsvpc, ip", e("arn:ip", "web", 8080), NetworkMode::Awsvpc, None),
            ("missing", e("arn:nope", "web", 8080), NetworkMode::Bridge, Some("does not exist")),
            (
                "no load balancer",
                e("arn:alone", "web", 8080),
                NetworkMode::Bridge,
                Some("does not have an associated load balancer"),
            ),
            (
                "ip with bridge",
                e("arn:ip", "web", 8080),
                NetworkMode::Bridge,
                Some("target type ip"),
            ),
            (
                "instance with awsvpc",
                e("arn:inst", "web", 8080),
                NetworkMode::Awsvpc,
                Some("target type instance"),
            ),
            (
                "no such container",
                e("arn:inst", "api", 8080),
                NetworkMode::Bridge,
                Some("The container api does not exist"),
            ),
            (
                "port not mapped",
                e("arn:inst", "web", 9090),
                NetworkMode::Bridge,
                Some("loadBalancers[0].containerPort"),
            ),
        ];
        for (case, entry, mode, want) in cases {
            let got = check(Some(&fake), &[entry], &td(mode)).await;
            match want {
                None => assert!(got.is_ok(), "{case}: {got:?}"),
                Some(w) => {
                    let err = got.expect_err(case);
                    assert_eq!(err.code, "InvalidParameterException", "{case}");
                    assert!(err.message.contains(w), "{case}: {}", err.message);
                }
            }
        }
        // Without ELBv2 in the server: refused as unsupported.
        let got = check(None, &[e("arn:inst", "web", 8080)], &td(NetworkMode::Bridge)).await;
        assert_eq!(got.unwrap_err().code, "UnsupportedFeatureException");
    }

    #[test]
    fn targets_follow_the_network_mode() {
        let lo = Some(IpAddr::from([127, 0, 0, 1]));
        // (case, task, entry, target type, expected)
        let cases = [
            (
                "bridge, dynamic host port",
                task(vec![(8080, 32768)], None),
                entry(8080),
                "instance",
                Some(ServiceTarget { id: "i-1".into(), port: 32768, address: lo }),
            ),
            ("bridge, not bound yet", task(vec![], None), entry(8080), "instance", None),
            ("bridge, other port", task(vec![(9090, 32768)], None), entry(8080), "instance", None),
            (
                "awsvpc",
                task(vec![], Some("172.31.0.9")),
                entry(8080),
                "ip",
                Some(ServiceTarget { id: "172.31.0.9".into(), port: 8080, address: None }),
            ),
            ("awsvpc, no address yet", task(vec![], None), entry(8080), "ip", None),
        ];
        for (case, t, e, kind, want) in cases {
            assert_eq!(task_target(&t, &e, kind, Some("i-1")), want, "{case}");
        }
    }
}
