//! [`place`]: first fit over a working copy of the snapshot (rules in the crate docs).
//!
//! Invariant: the working copy only ever shrinks (`remaining` goes down, port sets grow), so a
//! task that fits nowhere means every later identical task fits nowhere too.

use std::collections::{BTreeSet, HashSet};

use crate::{
    InstanceSnapshot, InstanceStatus, Placement, PlacementError, PlacementFailure,
    PlacementRequest, PlacementStrategy, Plan, Resources, TaskRequirements, reason,
};

/// One candidate instance as the plan has consumed it so far.
struct Working<'a> {
    snapshot: &'a InstanceSnapshot,
    remaining: Resources,
    used_tcp: BTreeSet<u16>,
    used_udp: BTreeSet<u16>,
}

/// A task's needs, normalised once per request.
struct Needs<'a> {
    cpu: i64,
    memory_mib: i64,
    tcp: BTreeSet<u16>,
    udp: BTreeSet<u16>,
    attributes: &'a [String],
}

impl<'a> Needs<'a> {
    fn new(r: &'a TaskRequirements) -> Self {
        Self {
            cpu: r.cpu.max(0),
            memory_mib: r.memory_mib.max(0),
            tcp: r.host_ports_tcp.iter().copied().collect(),
            udp: r.host_ports_udp.iter().copied().collect(),
            attributes: &r.required_attributes,
        }
    }
}

impl Working<'_> {
    /// The first reason this instance refuses the task, in the documented order.
    fn refusal(&self, needs: &Needs<'_>) -> Option<&'static str> {
        let s = self.snapshot;
        if !s.agent_connected {
            return Some(reason::AGENT);
        }
        if !needs.attributes.iter().all(|a| s.attributes.contains_key(a)) {
            return Some(reason::ATTRIBUTE);
        }
        if needs.cpu > self.remaining.cpu {
            return Some(reason::RESOURCE_CPU);
        }
        if needs.memory_mib > self.remaining.memory_mib {
            return Some(reason::RESOURCE_MEMORY);
        }
        if !needs.tcp.is_disjoint(&self.used_tcp) {
            return Some(reason::RESOURCE_PORTS);
        }
        if !needs.udp.is_disjoint(&self.used_udp) {
            return Some(reason::RESOURCE_PORTS_UDP);
        }
        None
    }

    fn consume(&mut self, needs: &Needs<'_>) {
        self.remaining.cpu -= needs.cpu;
        self.remaining.memory_mib -= needs.memory_mib;
        self.used_tcp.extend(&needs.tcp);
        self.used_udp.extend(&needs.udp);
    }
}

/// Places `req.count` tasks on `instances` (see the crate docs for the rules, the failure
/// reasons and their source). Pure and deterministic.
pub fn place(
    instances: &[InstanceSnapshot],
    req: &PlacementRequest,
) -> Result<Plan, PlacementError> {
    let mut candidates: Vec<Working<'_>> = instances
        .iter()
        .filter(|i| i.status == InstanceStatus::Active)
        .map(|i| Working {
            snapshot: i,
            remaining: i.remaining,
            used_tcp: i.used_ports_tcp.clone(),
            used_udp: i.used_ports_udp.clone(),
        })
        .collect();
    if candidates.is_empty() {
        return Err(PlacementError::NoContainerInstances);
    }
    let needs = Needs::new(&req.requirements);
    let mut plan = Plan::default();
    for task_index in 0..req.count {
        let chosen = match req.strategy {
            PlacementStrategy::FirstFit => first_fit(&candidates, &needs),
        };
        match chosen {
            Ok(i) => {
                candidates[i].consume(&needs);
                plan.placements.push(Placement {
                    instance_arn: candidates[i].snapshot.arn.clone(),
                    task_index,
                });
            }
            Err(refusals) => {
                let mut seen = HashSet::new();
                for (i, why) in refusals {
                    let arn = &candidates[i].snapshot.arn;
                    if seen.insert((arn, why)) {
                        plan.failures.push(PlacementFailure {
                            arn: Some(arn.clone()),
                            reason: why.to_string(),
                        });
                    }
                }
                // Nothing changed, so the remaining tasks would be refused identically.
                plan.unplaced = req.count - task_index;
                break;
            }
        }
    }
    Ok(plan)
}

/// The index of the first candidate that takes the task, or every candidate's refusal.
fn first_fit(
    candidates: &[Working<'_>],
    needs: &Needs<'_>,
) -> Result<usize, Vec<(usize, &'static str)>> {
    let mut refusals = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        match c.refusal(needs) {
            None => return Ok(i),
            Some(why) => refusals.push((i, why)),
        }
    }
    Err(refusals)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::DEFAULT_RESERVED_PORTS;

    /// An ACTIVE, connected instance named `arn` with `cpu` units and `mem` MiB free and the
    /// default reserved ports taken.
    fn inst(arn: &str, cpu: i64, mem: i64) -> InstanceSnapshot {
        InstanceSnapshot {
            arn: arn.into(),
            status: InstanceStatus::Active,
            agent_connected: true,
            remaining: Resources { cpu, memory_mib: mem },
            used_ports_tcp: DEFAULT_RESERVED_PORTS.into_iter().collect(),
            used_ports_udp: BTreeSet::new(),
            attributes: BTreeMap::new(),
        }
    }

    fn req(count: u32, cpu: i64, mem: i64) -> PlacementRequest {
        PlacementRequest {
            count,
            requirements: TaskRequirements { cpu, memory_mib: mem, ..Default::default() },
            ..Default::default()
        }
    }

    /// A plan written compactly: placements as `arn` per task index, failures as
    /// `(arn, reason)`.
    fn plan(placed: &[&str], failures: &[(&str, &str)], unplaced: u32) -> Plan {
        Plan {
            placements: placed
                .iter()
                .enumerate()
                .map(|(i, a)| Placement { instance_arn: (*a).into(), task_index: i as u32 })
                .collect(),
            failures: failures
                .iter()
                .map(|(a, r)| PlacementFailure { arn: Some((*a).into()), reason: (*r).into() })
                .collect(),
            unplaced,
        }
    }

    #[test]
    fn recorded_plans() {
        let a = || inst("a", 1024, 2048);
        let b = || inst("b", 1024, 2048);
        let c = || inst("c", 1024, 2048);
        let with_tcp = |mut i: InstanceSnapshot, p: u16| {
            i.used_ports_tcp.insert(p);
            i
        };
        let ports = |count, tcp: &[u16], udp: &[u16]| {
            let mut r = req(count, 128, 128);
            r.requirements.host_ports_tcp = tcp.to_vec();
            r.requirements.host_ports_udp = udp.to_vec();
            r
        };
        let draining = || InstanceSnapshot { status: InstanceStatus::Draining, ..b() };
        let disconnected = || InstanceSnapshot { agent_connected: false, ..b() };
        let needs_attr = || {
            let mut r = req(1, 128, 128);
            r.requirements.required_attributes = vec![
                "ecs.capability.task-eni".into(),
                "com.amazonaws.ecs.capability.ecr-auth".into(),
            ];
            r
        };
        let with_attrs = |mut i: InstanceSnapshot, names: &[&str]| {
            i.attributes = names.iter().map(|n| ((*n).to_string(), None)).collect();
            i
        };

        let cases: Vec<(&str, Vec<InstanceSnapshot>, PlacementRequest, Plan)> = vec![
            (
                "enough capacity: first fit packs the first instance",
                vec![a(), b()],
                req(3, 256, 512),
                plan(&["a", "a", "a"], &[], 0),
            ),
            ("zero tasks", vec![a()], req(0, 256, 512), plan(&[], &[], 0)),
            (
                "cpu exhausted after 4 tasks on one instance",
                vec![a()],
                req(6, 256, 64),
                plan(&["a", "a", "a", "a"], &[("a", reason::RESOURCE_CPU)], 2),
            ),
            (
                "cpu spills over to the next instance",
                vec![a(), b()],
                req(6, 256, 64),
                plan(&["a", "a", "a", "a", "b", "b"], &[], 0),
            ),
            (
                "memory exhausted",
                vec![a()],
                req(3, 0, 1000),
                plan(&["a", "a"], &[("a", reason::RESOURCE_MEMORY)], 1),
            ),
            (
                "cpu is checked before memory",
                vec![inst("a", 100, 100)],
                req(1, 200, 200),
                plan(&[], &[("a", reason::RESOURCE_CPU)], 1),
            ),
            (
                "zero-cpu tasks fit an instance with no cpu left",
                vec![inst("a", 0, 300)],
                req(3, 0, 100),
                plan(&["a", "a", "a"], &[], 0),
            ),
            (
                "static port: one task per instance, then RESOURCE:PORTS once",
                vec![a()],
                ports(2, &[8080], &[]),
                plan(&["a"], &[("a", reason::RESOURCE_PORTS)], 1),
            ),
            (
                "static port already used on the first instance",
                vec![with_tcp(a(), 8080), b()],
                ports(2, &[8080], &[]),
                plan(&["b"], &[("a", reason::RESOURCE_PORTS), ("b", reason::RESOURCE_PORTS)], 1),
            ),
            (
                "reserved ports are ports like any other",
                vec![a()],
                ports(1, &[22], &[]),
                plan(&[], &[("a", reason::RESOURCE_PORTS)], 1),
            ),
            (
                "dynamic ports never conflict",
                vec![a()],
                ports(4, &[], &[]),
                plan(&["a", "a", "a", "a"], &[], 0),
            ),
            (
                "udp and tcp ports are separate",
                vec![with_tcp(a(), 53)],
                ports(1, &[], &[53]),
                plan(&["a"], &[], 0),
            ),
            (
                "udp conflict is RESOURCE:PORTS_UDP",
                vec![a(), b()],
                ports(3, &[], &[53]),
                plan(
                    &["a", "b"],
                    &[("a", reason::RESOURCE_PORTS_UDP), ("b", reason::RESOURCE_PORTS_UDP)],
                    1,
                ),
            ),
            (
                "tcp is checked before udp",
                vec![a()],
                ports(2, &[80], &[53]),
                plan(&["a"], &[("a", reason::RESOURCE_PORTS)], 1),
            ),
            (
                "draining instance skipped silently",
                vec![draining(), c()],
                req(1, 256, 256),
                plan(&["c"], &[], 0),
            ),
            (
                "draining instance reported nowhere even when nothing fits",
                vec![draining(), inst("c", 0, 0)],
                req(1, 256, 256),
                plan(&[], &[("c", reason::RESOURCE_CPU)], 1),
            ),
            (
                "disconnected agent: AGENT, and the task goes elsewhere",
                vec![disconnected(), c()],
                req(1, 256, 256),
                plan(&["c"], &[], 0),
            ),
            (
                "disconnected agent: AGENT reported when nothing fits",
                vec![disconnected(), inst("c", 0, 0)],
                req(1, 256, 256),
                plan(&[], &[("b", reason::AGENT), ("c", reason::RESOURCE_CPU)], 1),
            ),
            (
                "AGENT comes before resources",
                vec![InstanceSnapshot { agent_connected: false, ..inst("a", 0, 0) }],
                req(1, 256, 256),
                plan(&[], &[("a", reason::AGENT)], 1),
            ),
            (
                "required attribute missing: ATTRIBUTE",
                vec![with_attrs(a(), &["ecs.capability.task-eni"])],
                needs_attr(),
                plan(&[], &[("a", reason::ATTRIBUTE)], 1),
            ),
            (
                "attribute present on the second instance",
                vec![
                    a(),
                    with_attrs(
                        b(),
                        &["ecs.capability.task-eni", "com.amazonaws.ecs.capability.ecr-auth"],
                    ),
                ],
                needs_attr(),
                plan(&["b"], &[], 0),
            ),
            (
                "ATTRIBUTE comes before resources",
                vec![inst("a", 0, 0)],
                needs_attr(),
                plan(&[], &[("a", reason::ATTRIBUTE)], 1),
            ),
            (
                "count 10 across 3 instances of 4, 3 and 3 slots",
                vec![a(), inst("b", 768, 2048), inst("c", 1024, 768)],
                req(10, 256, 256),
                plan(&["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"], &[], 0),
            ),
            (
                "count 10 across 3 instances with room for 8",
                vec![inst("a", 512, 4096), inst("b", 1024, 4096), inst("c", 512, 4096)],
                req(10, 256, 256),
                plan(
                    &["a", "a", "b", "b", "b", "b", "c", "c"],
                    &[
                        ("a", reason::RESOURCE_CPU),
                        ("b", reason::RESOURCE_CPU),
                        ("c", reason::RESOURCE_CPU),
                    ],
                    2,
                ),
            ),
            (
                "each instance reports its own first reason",
                vec![inst("a", 100, 4096), inst("b", 4096, 100), with_tcp(c(), 80)],
                ports(1, &[80], &[]),
                plan(
                    &[],
                    &[
                        ("a", reason::RESOURCE_CPU),
                        ("b", reason::RESOURCE_MEMORY),
                        ("c", reason::RESOURCE_PORTS),
                    ],
                    1,
                ),
            ),
            (
                "duplicate ARNs in the snapshot are reported once",
                vec![inst("a", 0, 0), inst("a", 0, 0)],
                req(1, 1, 1),
                plan(&[], &[("a", reason::RESOURCE_CPU)], 1),
            ),
        ];
        for (name, instances, request, want) in cases {
            assert_eq!(place(&instances, &request), Ok(want), "{name}");
        }
    }

    #[test]
    fn no_active_instance_is_an_error() {
        let draining =
            InstanceSnapshot { status: InstanceStatus::Draining, ..inst("a", 1024, 1024) };
        let inactive =
            InstanceSnapshot { status: InstanceStatus::Inactive, ..inst("b", 1024, 1024) };
        for (name, instances) in
            [("empty cluster", vec![]), ("only draining and inactive", vec![draining, inactive])]
        {
            let err = place(&instances, &req(1, 1, 1)).unwrap_err();
            assert_eq!(err, PlacementError::NoContainerInstances, "{name}");
            assert_eq!(err.to_string(), "No Container Instances were found in your cluster.");
        }
        let disconnected = InstanceSnapshot { agent_connected: false, ..inst("a", 1024, 1024) };
        assert_eq!(
            place(&[disconnected], &req(1, 1, 1)),
            Ok(plan(&[], &[("a", reason::AGENT)], 1)),
            "an ACTIVE instance with a disconnected agent is found"
        );
    }

    #[test]
    fn plan_serialises_for_recording() {
        let p = place(&[inst("a", 256, 256)], &req(2, 256, 1)).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({
                "placements": [{"instanceArn": "a", "taskIndex": 0}],
                "failures": [{"arn": "a", "reason": "RESOURCE:CPU"}],
                "unplaced": 1
            })
        );
        let r: PlacementRequest =
            serde_json::from_value(serde_json::json!({"count": 1, "requirements": {
                "cpu": 1, "memoryMib": 2, "hostPortsTcp": [], "hostPortsUdp": [], "requiredAttributes": []
            }}))
            .unwrap();
        assert_eq!(r.strategy, PlacementStrategy::FirstFit);
    }

    #[test]
    fn instance_status_strings() {
        for s in [
            InstanceStatus::Active,
            InstanceStatus::Draining,
            InstanceStatus::Registering,
            InstanceStatus::Deregistering,
            InstanceStatus::Inactive,
        ] {
            assert_eq!(s.as_str().parse::<InstanceStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("active".parse::<InstanceStatus>().is_err());
    }
}
