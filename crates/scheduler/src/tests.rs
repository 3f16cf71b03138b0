//! Recorded plans: tables of snapshot, request and the exact plan expected.

use crate::*;

/// An ACTIVE, connected instance named `arn` with `cpu` units and `mem` MiB free and the
/// default reserved ports taken.
fn inst(arn: &str, cpu: i64, mem: i64) -> InstanceSnapshot {
    InstanceSnapshot::new(arn, Resources { cpu, memory_mib: mem })
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
        r.requirements.required_attributes =
            vec!["ecs.capability.task-eni".into(), "com.amazonaws.ecs.capability.ecr-auth".into()];
        r
    };
    let with_attrs = |mut i: InstanceSnapshot, names: &[&str]| {
        i.attributes =
            std::sync::Arc::new(names.iter().map(|n| ((*n).to_string(), None)).collect());
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
    let draining = InstanceSnapshot { status: InstanceStatus::Draining, ..inst("a", 1024, 1024) };
    let inactive = InstanceSnapshot { status: InstanceStatus::Inactive, ..inst("b", 1024, 1024) };
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
    assert!(r.strategies.is_empty() && r.constraints.is_empty());
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

#[test]
fn set_instance_plans_as_a_fresh_state_would() {
    let spread = PlacementRequest {
        strategies: vec![
            Strategy::Spread(SpreadField::Attribute("zone".into())),
            Strategy::Binpack(BinpackField::Memory),
        ],
        ..req(3, 128, 256)
    };
    let snaps: Vec<InstanceSnapshot> = (0..6)
        .map(|i| {
            inst(&format!("i{i}"), 1024, 2048)
                .with_attribute("zone", Some(if i % 2 == 0 { "a" } else { "b" }))
        })
        .collect();
    let mut state = ClusterState::new(snaps.clone());
    state.place(&spread).unwrap(); // builds the views and partitions, consumes
    let mut changed = state.instances().to_vec();
    // A task stopped on i0 (resources back), i3 drained, i4's agent disconnected, and i5's
    // RUNNING count went up (the one change that keeps the indexes).
    changed[0].remaining = Resources { cpu: 1024, memory_mib: 2048 };
    changed[3].status = InstanceStatus::Draining;
    changed[4].agent_connected = false;
    changed[5].running_tasks_count += 2;
    for (i, s) in changed.iter().enumerate() {
        state.set_instance(i, s.clone());
    }
    assert_eq!(state.instances(), &changed[..]);
    let mut fresh = ClusterState::new(changed.clone());
    for _ in 0..4 {
        assert_eq!(state.place(&spread), fresh.place(&spread));
    }
    let mut drained = state.instances().to_vec();
    for s in &mut drained {
        s.status = InstanceStatus::Draining;
    }
    for (i, s) in drained.into_iter().enumerate() {
        state.set_instance(i, s);
    }
    assert!(matches!(state.place(&spread), Err(PlacementError::NoContainerInstances)));
}

#[test]
fn targets_place_one_task_on_each_named_instance_in_order() {
    let mut draining = inst("c", 1024, 1024);
    draining.status = InstanceStatus::Draining;
    let mut state = ClusterState::new(vec![inst("a", 1024, 1024), inst("b", 256, 256), draining]);
    let req = PlacementRequest {
        targets: vec!["a".into(), "a".into(), "b".into(), "b".into(), "c".into(), "z".into()],
        ..req(1, 256, 256)
    };
    let plan = state.place(&req).unwrap();
    let on: Vec<(&str, u32)> =
        plan.placements.iter().map(|p| (p.instance_arn.as_str(), p.task_index)).collect();
    assert_eq!(on, vec![("a", 0), ("a", 1), ("b", 2)], "b takes one, then it is full");
    let why: Vec<(&str, &str)> =
        plan.failures.iter().map(|f| (f.arn.as_deref().unwrap(), f.reason.as_str())).collect();
    assert_eq!(why, vec![("b", "RESOURCE:CPU"), ("c", "DRAINING"), ("z", "MISSING")]);
    assert_eq!(plan.unplaced, 3);
    assert_eq!(state.instances()[0].remaining.cpu, 512, "the state reflects the plan");
}

/// Host access settings (issue #10): a task asking for one goes only where the agent
/// advertises it; elsewhere it fails with ATTRIBUTE, and [`missing_attributes`] names it.
#[test]
fn host_access_settings_need_the_agent_to_allow_them() {
    use berth_model::host_access::ATTR_PRIVILEGED;
    let td: berth_wire::ecs::TaskDefinition = serde_json::from_value(serde_json::json!({
        "family": "p",
        "containerDefinitions": [{"name": "a", "image": "i", "memory": 16, "privileged": true}],
        "volumes": [{"name": "h", "host": {"sourcePath": "/srv/data/x"}}]
    }))
    .unwrap();
    let requirements = task_requirements(&td, None);
    assert_eq!(
        requirements.required_attributes,
        vec![ATTR_PRIVILEGED.to_string(), "berth.capability.host-path/srv/data/x".to_string()]
    );
    let request = PlacementRequest { count: 1, requirements, ..Default::default() };
    let default_agent = inst("a", 1024, 2048);
    assert_eq!(
        place(std::slice::from_ref(&default_agent), &request).unwrap(),
        plan(&[], &[("a", reason::ATTRIBUTE)], 1)
    );
    assert_eq!(
        missing_attributes(&default_agent, &request.requirements),
        vec![ATTR_PRIVILEGED.to_string(), "berth.capability.host-path/srv/data/x".to_string()]
    );
    let privileged_only = inst("b", 1024, 2048).with_attribute(ATTR_PRIVILEGED, None);
    assert_eq!(
        missing_attributes(&privileged_only, &request.requirements),
        vec!["berth.capability.host-path/srv/data/x".to_string()]
    );
    // A parent directory's attribute allows the path.
    let allowed = inst("c", 1024, 2048)
        .with_attribute(ATTR_PRIVILEGED, None)
        .with_attribute("berth.capability.host-path/srv", None);
    assert_eq!(
        place(&[default_agent, privileged_only, allowed], &request).unwrap(),
        plan(&["c"], &[], 0)
    );
}
