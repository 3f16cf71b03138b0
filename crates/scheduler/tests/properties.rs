//! Property tests of `place`: for random snapshots and requests, no instance is overcommitted
//! on cpu, memory or static ports; placements plus unplaced equal the count; only ACTIVE,
//! connected instances carrying the required attributes receive tasks; failures are unique per
//! (instance, reason) and present exactly when something was left unplaced.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use berth_scheduler::{
    InstanceSnapshot, InstanceStatus, PlacementError, PlacementRequest, Resources,
    TaskRequirements, place,
};
use proptest::prelude::*;

/// Ports drawn from a small range so that conflicts are common.
fn ports() -> impl Strategy<Value = BTreeSet<u16>> {
    prop::collection::btree_set(8000u16..8006, 0..3)
}

fn status() -> impl Strategy<Value = InstanceStatus> {
    prop_oneof![
        4 => Just(InstanceStatus::Active),
        1 => Just(InstanceStatus::Draining),
        1 => Just(InstanceStatus::Registering),
        1 => Just(InstanceStatus::Deregistering),
        1 => Just(InstanceStatus::Inactive),
    ]
}

const ATTRS: [&str; 3] = ["a1", "a2", "a3"];

fn instance(i: usize) -> impl Strategy<Value = InstanceSnapshot> {
    (
        status(),
        prop::bool::weighted(0.85),
        0i64..4096,
        0i64..8192,
        ports(),
        ports(),
        prop::collection::btree_set(prop::sample::select(&ATTRS[..]), 0..=3),
    )
        .prop_map(move |(status, agent_connected, cpu, mem, tcp, udp, attrs)| {
            InstanceSnapshot {
                arn: format!("arn:aws:ecs:us-east-1:000000000000:container-instance/c/{i}"),
                status,
                agent_connected,
                remaining: Resources { cpu, memory_mib: mem },
                used_ports_tcp: tcp,
                used_ports_udp: udp,
                attributes: attrs
                    .into_iter()
                    .map(|a| (a.to_string(), None))
                    .collect::<BTreeMap<_, _>>(),
            }
        })
}

fn instances() -> impl Strategy<Value = Vec<InstanceSnapshot>> {
    (0usize..6).prop_flat_map(|n| (0..n).map(instance).collect::<Vec<_>>())
}

fn request() -> impl Strategy<Value = PlacementRequest> {
    (
        0u32..=10,
        0i64..2048,
        0i64..4096,
        ports(),
        ports(),
        prop::collection::btree_set(prop::sample::select(&ATTRS[..]), 0..=1),
    )
        .prop_map(|(count, cpu, mem, tcp, udp, attrs)| PlacementRequest {
            count,
            requirements: TaskRequirements {
                cpu,
                memory_mib: mem,
                host_ports_tcp: tcp.into_iter().collect(),
                host_ports_udp: udp.into_iter().collect(),
                required_attributes: attrs.into_iter().map(String::from).collect(),
            },
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_overcommits_and_accounts_for_every_task(insts in instances(), req in request()) {
        let plan = match place(&insts, &req) {
            Err(PlacementError::NoContainerInstances) => {
                prop_assert!(insts.iter().all(|i| i.status != InstanceStatus::Active));
                return Ok(());
            }
            Ok(plan) => plan,
        };
        prop_assert!(insts.iter().any(|i| i.status == InstanceStatus::Active));
        prop_assert_eq!(plan.placements.len() as u32 + plan.unplaced, req.count);
        for (i, p) in plan.placements.iter().enumerate() {
            prop_assert_eq!(p.task_index, i as u32);
        }

        let by_arn: HashMap<&str, &InstanceSnapshot> =
            insts.iter().map(|i| (i.arn.as_str(), i)).collect();
        let r = &req.requirements;
        let mut per_instance: HashMap<&str, u32> = HashMap::new();
        for p in &plan.placements {
            let inst = by_arn[p.instance_arn.as_str()];
            prop_assert_eq!(inst.status, InstanceStatus::Active);
            prop_assert!(inst.agent_connected);
            prop_assert!(r.required_attributes.iter().all(|a| inst.attributes.contains_key(a)));
            *per_instance.entry(inst.arn.as_str()).or_default() += 1;
        }
        for (arn, n) in per_instance {
            let inst = by_arn[arn];
            let n = i64::from(n);
            prop_assert!(n * r.cpu <= inst.remaining.cpu, "cpu overcommitted on {}", arn);
            prop_assert!(n * r.memory_mib <= inst.remaining.memory_mib, "memory overcommitted on {}", arn);
            // Static ports: taken at most once, and never one already used.
            if !r.host_ports_tcp.is_empty() {
                prop_assert_eq!(n, 1, "tcp host ports placed twice on {}", arn);
                prop_assert!(r.host_ports_tcp.iter().all(|p| !inst.used_ports_tcp.contains(p)));
            }
            if !r.host_ports_udp.is_empty() {
                prop_assert_eq!(n, 1, "udp host ports placed twice on {}", arn);
                prop_assert!(r.host_ports_udp.iter().all(|p| !inst.used_ports_udp.contains(p)));
            }
        }

        // Failures: present exactly when a task was left unplaced, unique, on ACTIVE instances.
        prop_assert_eq!(plan.failures.is_empty(), plan.unplaced == 0);
        let mut seen = HashSet::new();
        for f in &plan.failures {
            let arn = f.arn.as_deref().expect("placement failures name an instance");
            prop_assert!(seen.insert((arn, f.reason.as_str())), "duplicate failure {:?}", f);
            prop_assert_eq!(by_arn[arn].status, InstanceStatus::Active);
        }
    }

    #[test]
    fn deterministic(insts in instances(), req in request()) {
        prop_assert_eq!(place(&insts, &req), place(&insts, &req));
    }
}
