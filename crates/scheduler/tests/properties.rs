//! Property tests of placement over random clusters and requests:
//! * no instance is ever overcommitted on cpu, memory or static ports, and placements plus
//!   unplaced equal the count;
//! * every placement satisfies every constraint; failures are unique and present exactly when
//!   something was left unplaced;
//! * the indexed engine ([`ClusterState`]) gives exactly the plans of the plain scan
//!   ([`reference::place`]), request after request on the same state;
//! * spread over an attribute is balanced within one task when capacity allows;
//! * binpack uses no more instances than the brute-force optimum on homogeneous clusters;
//! * the same inputs (and seed) always give the same plan.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use berth_scheduler::{
    BinpackField, ClusterState, Constraint, Expr, InstanceSnapshot, InstanceStatus, PlacementError,
    PlacementRequest, Plan, Resources, SpreadField, Strategy as Rule, TaskRequirements, place,
    reference,
};
use proptest::prelude::*;

/// Ports drawn from a small range so that conflicts are common.
fn ports() -> impl Strategy<Value = BTreeSet<u16>> {
    prop::collection::btree_set(8000u16..8006, 0..3)
}

/// An amount up to `max`: mostly a few round values, so that ties between instances and exact
/// fits are common, sometimes anything.
fn amount(max: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => (0i64..=4).prop_map(move |k| k * max / 4),
        1 => 0i64..max,
    ]
}

fn status() -> impl Strategy<Value = InstanceStatus> {
    prop_oneof![
        6 => Just(InstanceStatus::Active),
        1 => Just(InstanceStatus::Draining),
        1 => Just(InstanceStatus::Inactive),
    ]
}

const ATTRS: [&str; 3] = ["a1", "a2", "a3"];
const AZS: [&str; 3] = ["az-a", "az-b", "az-c"];
const TYPES: [&str; 2] = ["small", "large"];
const GROUPS: [&str; 3] = ["g1", "g2", "family:web"];

/// Expressions the generated requests use; some read only attributes (static), some read
/// task groups or counts (dynamic).
const EXPRESSIONS: [&str; 8] = [
    "attribute:type == small",
    "attribute:zone in [az-a, az-b]",
    "attribute:zone != az-c or attribute:type == large",
    "not(attribute:type == large)",
    "attribute:a1 exists",
    "task:group == g2",
    "not(task:group == g1)",
    "runningTasksCount < 2",
];

fn instance(i: usize) -> impl Strategy<Value = InstanceSnapshot> {
    (
        (status(), prop::bool::weighted(0.9), amount(4096), amount(8192), ports(), ports()),
        (
            prop::collection::btree_set(prop::sample::select(&ATTRS[..]), 0..=3),
            prop::option::weighted(0.9, prop::sample::select(&AZS[..])),
            prop::sample::select(&TYPES[..]),
            prop::collection::btree_map(prop::sample::select(&GROUPS[..]), 1u32..3, 0..3),
            0u32..4,
        ),
    )
        .prop_map(
            move |(
                (status, agent_connected, cpu, mem, tcp, udp),
                (attrs, az, ty, groups, running),
            )| {
                let mut s =
                    InstanceSnapshot::new(format!("ci/{i}"), Resources { cpu, memory_mib: mem });
                s.status = status;
                s.agent_connected = agent_connected;
                s.used_ports_tcp = tcp;
                s.used_ports_udp = udp;
                s.attributes =
                    std::sync::Arc::new(attrs.into_iter().map(|a| (a.to_string(), None)).collect());
                if let Some(az) = az {
                    std::sync::Arc::make_mut(&mut s.attributes)
                        .insert("zone".into(), Some(az.into()));
                }
                std::sync::Arc::make_mut(&mut s.attributes).insert("type".into(), Some(ty.into()));
                s.task_groups = groups.into_iter().map(|(g, n)| (g.to_string(), n)).collect();
                s.running_tasks_count = running;
                s
            },
        )
}

fn instances(max: usize) -> impl Strategy<Value = Vec<InstanceSnapshot>> {
    (0usize..max).prop_flat_map(|n| (0..n).map(instance).collect::<Vec<_>>())
}

fn strategy() -> impl Strategy<Value = Rule> {
    prop_oneof![
        Just(Rule::Binpack(BinpackField::Cpu)),
        Just(Rule::Binpack(BinpackField::Memory)),
        Just(Rule::Spread(SpreadField::InstanceId)),
        Just(Rule::Spread(SpreadField::Attribute("zone".into()))),
        Just(Rule::Spread(SpreadField::Attribute("type".into()))),
        Just(Rule::Random),
    ]
}

fn constraint() -> impl Strategy<Value = Option<Constraint>> {
    prop_oneof![
        1 => Just(Some(Constraint::DistinctInstance)),
        3 => prop::sample::select(&EXPRESSIONS[..])
            .prop_map(|e| Expr::parse(e).ok().map(|expression| Constraint::MemberOf { expression })),
    ]
}

fn request() -> impl Strategy<Value = PlacementRequest> {
    (
        (0u32..=10, amount(1024), amount(2048), ports(), ports()),
        prop::collection::btree_set(prop::sample::select(&ATTRS[..]), 0..=1),
        prop::sample::select(&GROUPS[..]),
        prop::collection::vec(constraint(), 0..3),
        prop::collection::vec(strategy(), 0..4),
        any::<u64>(),
    )
        .prop_map(
            |((count, cpu, mem, tcp, udp), attrs, group, constraints, strategies, seed)| {
                PlacementRequest {
                    count,
                    requirements: TaskRequirements {
                        cpu,
                        memory_mib: mem,
                        host_ports_tcp: tcp.into_iter().collect(),
                        host_ports_udp: udp.into_iter().collect(),
                        required_attributes: attrs.into_iter().map(String::from).collect(),
                    },
                    group: group.into(),
                    constraints: constraints.into_iter().flatten().collect(),
                    strategies,
                    seed,
                    targets: Vec::new(),
                }
            },
        )
}

/// Checks one plan against the snapshot it was made from.
fn check_plan(
    insts: &[InstanceSnapshot],
    req: &PlacementRequest,
    plan: &Plan,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(plan.placements.len() as u32 + plan.unplaced, req.count);
    let by_arn: HashMap<&str, &InstanceSnapshot> =
        insts.iter().map(|i| (i.arn.as_str(), i)).collect();
    let r = &req.requirements;
    let mut per_instance: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, p) in plan.placements.iter().enumerate() {
        prop_assert_eq!(p.task_index, i as u32);
        let inst = by_arn[p.instance_arn.as_str()];
        prop_assert_eq!(inst.status, InstanceStatus::Active);
        prop_assert!(inst.agent_connected);
        prop_assert!(r.required_attributes.iter().all(|a| inst.attributes.contains_key(a)));
        // Every constraint holds against the instance as it was when the task was placed.
        let before = per_instance.get(inst.arn.as_str()).copied().unwrap_or(0);
        let mut at_the_time = inst.clone();
        *at_the_time.task_groups.entry(req.group.clone()).or_default() += before;
        for c in &req.constraints {
            match c {
                Constraint::MemberOf { expression } => prop_assert!(
                    expression.eval(&at_the_time),
                    "{} is false on {}",
                    expression.source(),
                    inst.arn
                ),
                Constraint::DistinctInstance => prop_assert_eq!(
                    at_the_time.task_groups.get(&req.group).copied().unwrap_or(0),
                    0,
                    "distinctInstance broken on {}",
                    inst.arn
                ),
            }
        }
        *per_instance.entry(inst.arn.as_str()).or_default() += 1;
    }
    for (arn, n) in per_instance {
        let inst = by_arn[arn];
        let n = i64::from(n);
        prop_assert!(
            n * r.cpu.max(0) <= inst.remaining.cpu.max(0) || r.cpu <= 0,
            "cpu overcommitted on {}",
            arn
        );
        prop_assert!(
            n * r.memory_mib.max(0) <= inst.remaining.memory_mib.max(0) || r.memory_mib <= 0,
            "memory overcommitted on {}",
            arn
        );
        if !r.host_ports_tcp.is_empty() {
            prop_assert_eq!(n, 1, "tcp host ports placed twice on {}", arn);
            prop_assert!(r.host_ports_tcp.iter().all(|p| !inst.used_ports_tcp.contains(p)));
        }
        if !r.host_ports_udp.is_empty() {
            prop_assert_eq!(n, 1, "udp host ports placed twice on {}", arn);
            prop_assert!(r.host_ports_udp.iter().all(|p| !inst.used_ports_udp.contains(p)));
        }
    }
    prop_assert_eq!(plan.failures.is_empty(), plan.unplaced == 0);
    let mut seen = HashSet::new();
    for f in &plan.failures {
        let arn = f.arn.as_deref().expect("placement failures name an instance");
        prop_assert!(seen.insert((arn, f.reason.as_str())), "duplicate failure {:?}", f);
        prop_assert_eq!(by_arn[arn].status, InstanceStatus::Active);
    }
    Ok(())
}

/// `n` identical empty ACTIVE instances spread over the three zones.
fn homogeneous(n: usize, cpu: i64, mem: i64) -> Vec<InstanceSnapshot> {
    (0..n)
        .map(|i| {
            InstanceSnapshot::new(format!("ci/{i}"), Resources { cpu, memory_mib: mem })
                .with_attribute("zone", Some(AZS[i % 3]))
        })
        .collect()
}

/// The fewest instances that can hold `count` tasks of `cpu`/`mem`, by trying every
/// assignment (small cases only).
fn brute_force_min_instances(
    insts: &[InstanceSnapshot],
    count: usize,
    cpu: i64,
    mem: i64,
) -> Option<usize> {
    fn go(
        insts: &mut [InstanceSnapshot],
        left: usize,
        cpu: i64,
        mem: i64,
        used: &mut Vec<bool>,
        best: &mut Option<usize>,
    ) {
        if left == 0 {
            let n = used.iter().filter(|u| **u).count();
            if best.is_none_or(|b| n < b) {
                *best = Some(n);
            }
            return;
        }
        for i in 0..insts.len() {
            if insts[i].remaining.cpu >= cpu && insts[i].remaining.memory_mib >= mem {
                insts[i].remaining.cpu -= cpu;
                insts[i].remaining.memory_mib -= mem;
                let was = used[i];
                used[i] = true;
                go(insts, left - 1, cpu, mem, used, best);
                used[i] = was;
                insts[i].remaining.cpu += cpu;
                insts[i].remaining.memory_mib += mem;
            }
        }
    }
    let mut insts = insts.to_vec();
    let mut used: Vec<bool> =
        insts.iter().map(|i| i.task_groups.values().any(|n| *n > 0)).collect();
    let mut best = None;
    go(&mut insts, count, cpu, mem, &mut used, &mut best);
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn plans_are_sound(insts in instances(7), req in request()) {
        match place(&insts, &req) {
            Err(PlacementError::NoContainerInstances) => {
                prop_assert!(insts.iter().all(|i| i.status != InstanceStatus::Active));
            }
            Ok(plan) => check_plan(&insts, &req, &plan)?,
        }
    }

    #[test]
    fn indexed_engine_matches_the_reference(
        insts in instances(9),
        reqs in prop::collection::vec(request(), 1..5),
    ) {
        // One long-lived state against several requests, as a server would keep it.
        let mut state = ClusterState::new(insts.clone());
        let mut scanning = ClusterState::new(insts.clone()).without_indexes();
        let mut plain = insts;
        for req in &reqs {
            let want = reference::place(&plain, req);
            let got = state.place(req);
            prop_assert_eq!(&got, &want, "request {:?}", req);
            prop_assert_eq!(&scanning.place(req), &want, "scanning, request {:?}", req);
            if let Ok(plan) = want {
                // Apply the plan to the reference snapshot the way a commit would.
                for p in &plan.placements {
                    let s = plain.iter_mut().find(|s| s.arn == p.instance_arn).unwrap();
                    s.remaining.cpu -= req.requirements.cpu.max(0);
                    s.remaining.memory_mib -= req.requirements.memory_mib.max(0);
                    s.used_ports_tcp.extend(&req.requirements.host_ports_tcp);
                    s.used_ports_udp.extend(&req.requirements.host_ports_udp);
                    *s.task_groups.entry(req.group.clone()).or_default() += 1;
                }
                prop_assert_eq!(state.instances(), &plain[..]);
            }
        }
    }

    #[test]
    fn deterministic(insts in instances(7), req in request()) {
        prop_assert_eq!(place(&insts, &req), place(&insts, &req));
    }

    #[test]
    fn spread_over_an_attribute_is_balanced_within_one(
        n in 3usize..30,
        count in 1u32..=10,
        rounds in 1usize..6,
        then in prop::option::of(strategy()),
    ) {
        let insts = homogeneous(n, 4096, 8192);
        let mut state = ClusterState::new(insts);
        let mut strategies = vec![Rule::Spread(SpreadField::Attribute("zone".into()))];
        strategies.extend(then);
        let mut per_zone: BTreeMap<String, u32> = AZS.iter().map(|z| (z.to_string(), 0)).collect();
        for round in 0..rounds {
            let req = PlacementRequest {
                count,
                requirements: TaskRequirements { cpu: 16, memory_mib: 16, ..Default::default() },
                group: "service:web".into(),
                strategies: strategies.clone(),
                seed: round as u64,
                ..Default::default()
            };
            let plan = state.place(&req).unwrap();
            prop_assert_eq!(plan.unplaced, 0);
            for p in &plan.placements {
                let i: usize = p.instance_arn.trim_start_matches("ci/").parse().unwrap();
                *per_zone.get_mut(AZS[i % 3]).unwrap() += 1;
            }
            let max = per_zone.values().max().unwrap();
            let min = per_zone.values().min().unwrap();
            prop_assert!(max - min <= 1, "unbalanced: {:?}", per_zone);
        }
    }

    #[test]
    fn binpack_uses_no_more_instances_than_the_optimum_on_homogeneous_clusters(
        n in 1usize..5,
        slots_cpu in 1i64..5,
        used in prop::collection::vec(0i64..4, 5),
        count in 1u32..7,
        field in prop::sample::select(vec![BinpackField::Cpu, BinpackField::Memory]),
    ) {
        // Every instance registers the same capacity; some already run tasks.
        let (cpu, mem) = (256i64, 512i64);
        let mut insts = homogeneous(n, cpu * slots_cpu, mem * 4);
        for (i, s) in insts.iter_mut().enumerate() {
            let u = used[i].min(slots_cpu);
            s.remaining.cpu -= u * cpu;
            s.remaining.memory_mib -= u * mem;
            if u > 0 {
                s.task_groups.insert("other".into(), u as u32);
            }
        }
        let req = PlacementRequest {
            count,
            requirements: TaskRequirements { cpu, memory_mib: mem, ..Default::default() },
            group: "g".into(),
            strategies: vec![Rule::Binpack(field)],
            ..Default::default()
        };
        let plan = place(&insts, &req).unwrap();
        if plan.unplaced == 0 {
            let mut in_use: BTreeSet<&str> = insts
                .iter()
                .filter(|s| s.task_groups.values().any(|n| *n > 0))
                .map(|s| s.arn.as_str())
                .collect();
            in_use.extend(plan.placements.iter().map(|p| p.instance_arn.as_str()));
            let best = brute_force_min_instances(&insts, count as usize, cpu, mem).unwrap();
            prop_assert!(in_use.len() <= best, "binpack used {} instances, the optimum {}", in_use.len(), best);
        } else {
            prop_assert!(brute_force_min_instances(&insts, count as usize, cpu, mem).is_none());
        }
    }
}
