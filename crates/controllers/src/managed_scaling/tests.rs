use proptest::prelude::*;

use super::*;

const BIN: Resources = Resources { cpu: 2048, memory_mib: 3840 };

fn inst(id: &str, tasks: u32) -> InstanceView {
    InstanceView {
        instance_id: id.into(),
        zone: "us-east-1a".into(),
        template_version: 1,
        launched_at: 0.0,
        registered: true,
        draining: false,
        drained_for_scale_in: false,
        tasks,
        protected_from_scale_in: false,
    }
}

fn task(cpu: u32, memory_mib: u32) -> Resources {
    Resources { cpu, memory_mib }
}

fn input<'a>(
    settings: &'a Settings,
    instances: &'a [InstanceView],
    provisioning: &'a [Resources],
    group: (u32, u32, u32),
    now: f64,
    below: Option<f64>,
) -> Input<'a> {
    Input {
        settings,
        instance_capacity: BIN,
        template_version: 1,
        group: GroupBounds { min_size: group.0, max_size: group.1, desired_capacity: group.2 },
        instances,
        provisioning,
        now,
        below_target_since: below,
    }
}

#[test]
fn reservation_matches_ecs_examples() {
    let s = Settings::default();
    let half = task(1024, 1024);
    let huge = task(4096, 512);
    // (instances' task counts, provisioning, M, N, reservation, unplaceable)
    type Row = (Vec<u32>, Vec<Resources>, u32, u32, f64, u32);
    let table: Vec<Row> = vec![
        // No tasks and no instances: 100 (nothing to do).
        (vec![], vec![], 0, 0, 100.0, 0),
        // Tasks waiting and no instance: 200.
        (vec![], vec![half], 1, 0, 200.0, 0),
        // One of two instances busy, nothing waiting: 50.
        (vec![3, 0], vec![], 1, 2, 50.0, 0),
        (vec![1, 1], vec![], 2, 2, 100.0, 0),
        // Both busy, three half-instance tasks waiting: two more instances, M = 4.
        (vec![1, 1], vec![half, half, half], 4, 2, 200.0, 0),
        // Waiting tasks always need at least one more instance.
        (vec![1, 1, 1], vec![task(1, 1)], 4, 3, 400.0 / 3.0, 0),
        // A task bigger than any instance of the type is ignored.
        (vec![1, 0], vec![huge], 1, 2, 50.0, 1),
    ];
    for (tasks, provisioning, m, n, r, unplaceable) in table {
        let insts: Vec<InstanceView> =
            tasks.iter().enumerate().map(|(i, t)| inst(&format!("i-{i}"), *t)).collect();
        let d = decide(&input(&s, &insts, &provisioning, (0, 10, insts.len() as u32), 0.0, None));
        assert_eq!(
            (d.needed, d.running, d.unplaceable_tasks),
            (m, n, unplaceable),
            "{tasks:?} {provisioning:?}"
        );
        assert!((d.reservation - r).abs() < 1e-9, "{tasks:?}: {} vs {r}", d.reservation);
    }
}

#[test]
fn bin_packing_counts_instances() {
    assert_eq!(instances_for(&[], BIN), (0, 0));
    assert_eq!(instances_for(&[task(1024, 512); 4], BIN), (2, 0), "cpu-bound");
    assert_eq!(instances_for(&[task(256, 1920); 5], BIN), (3, 0), "memory-bound");
    // First-fit decreasing pairs a large task with a small one.
    let mixed = [task(1536, 512), task(512, 512), task(1536, 512), task(512, 512)];
    assert_eq!(instances_for(&mixed, BIN), (2, 0));
    assert_eq!(instances_for(&[task(4096, 1)], BIN), (0, 1));
}

#[test]
fn scale_out_by_the_shortfall_within_steps_and_bounds() {
    let tasks = [task(1024, 1024); 4]; // two instances' worth
    let cases = [
        // (min step, max step, group max, expected desired from 0)
        (1, 10_000, 10, 2),
        (1, 1, 10, 1),
        (3, 10, 10, 3),
        (1, 10_000, 1, 1),
    ];
    for (min_step, max_step, max, want) in cases {
        let s = Settings {
            minimum_scaling_step_size: min_step,
            maximum_scaling_step_size: max_step,
            ..Settings::default()
        };
        let d = decide(&input(&s, &[], &tasks, (0, max, 0), 0.0, None));
        assert_eq!(d.desired_capacity, want, "steps {min_step}..{max_step}, max {max}");
    }
    // Target 50: two busy instances want four.
    let s = Settings { target_capacity: 50, ..Settings::default() };
    let busy = [inst("i-1", 1), inst("i-2", 2)];
    let d = decide(&input(&s, &busy, &[], (0, 10, 2), 0.0, None));
    assert_eq!(d.desired_capacity, 4);
}

#[test]
fn warming_instances_are_not_launched_twice() {
    let s = Settings::default();
    let mut launching = inst("i-new", 0);
    launching.registered = false;
    launching.launched_at = 100.0;
    let insts = [inst("i-1", 1), launching];
    let waiting = [task(1024, 1024)];
    // Within the warm-up period the launching instance covers the need.
    let d = decide(&input(&s, &insts, &waiting, (0, 10, 2), 350.0, None));
    assert_eq!(d.desired_capacity, 2);
    // Past it (never registered), it no longer counts: scale out again.
    let d = decide(&input(&s, &insts, &waiting, (0, 10, 2), 400.0, None));
    assert_eq!(d.desired_capacity, 3);
}

#[test]
fn scale_in_waits_drains_then_terminates_only_empty_instances() {
    let s = Settings { managed_termination_protection: true, ..Settings::default() };
    let mut insts = vec![inst("i-1", 2), inst("i-2", 0), inst("i-3", 0)];
    insts[1].protected_from_scale_in = true;
    // Below target (33%) for less than 15 minutes: nothing but the mark and protection.
    let d = decide(&input(&s, &insts, &[], (0, 10, 3), 1000.0, None));
    assert_eq!(d.below_target_since, Some(1000.0));
    assert!(d.drain.is_empty() && d.terminate.is_empty());
    assert_eq!((d.protect.clone(), d.unprotect.clone()), (vec!["i-1".into()], vec!["i-2".into()]));
    let d = decide(&input(&s, &insts, &[], (0, 10, 3), 1899.0, Some(1000.0)));
    assert!(d.drain.is_empty());
    // After 900 s: drain both empty instances, terminate nothing yet.
    let d = decide(&input(&s, &insts, &[], (0, 10, 3), 1900.0, Some(1000.0)));
    assert_eq!(d.drain, ["i-2", "i-3"]);
    assert!(d.terminate.is_empty());
    assert_eq!(d.desired_capacity, 3);
    // Next pass: both drained and empty: terminated, desired down to 1.
    for i in &mut insts[1..] {
        i.draining = true;
        i.drained_for_scale_in = true;
    }
    let d = decide(&input(&s, &insts, &[], (0, 10, 3), 1960.0, Some(1000.0)));
    assert_eq!(d.terminate, ["i-2", "i-3"]);
    assert_eq!(d.desired_capacity, 1);
    // The minimum size is kept.
    insts.iter_mut().for_each(|i| {
        i.draining = false;
        i.drained_for_scale_in = false;
    });
    let d = decide(&input(&s, &insts, &[], (2, 10, 3), 1900.0, Some(1000.0)));
    assert_eq!(d.drain.len(), 1);
    // Back above the target: the mark is cleared.
    let busy = [inst("i-1", 1)];
    assert_eq!(decide(&input(&s, &busy, &[], (0, 10, 1), 5.0, Some(1.0))).below_target_since, None);
}

#[test]
fn drained_instances_are_reactivated_before_launching() {
    let s = Settings::default();
    let mut insts = vec![inst("i-1", 1), inst("i-2", 0)];
    insts[1].draining = true;
    insts[1].drained_for_scale_in = true;
    let d = decide(&input(&s, &insts, &[task(1024, 1024)], (0, 10, 2), 0.0, None));
    assert_eq!(d.reactivate, ["i-2"]);
    assert!(d.terminate.is_empty(), "a reactivated instance is not terminated");
    // M = 3 wants three; i-1 and i-2 cover two, one more is launched.
    assert_eq!(d.desired_capacity, 3);
}

fn arb_instance(i: usize) -> impl Strategy<Value = InstanceView> {
    (0u32..4, any::<bool>(), 0u8..6, any::<bool>(), 0u32..1000, 0usize..3).prop_map(
        move |(tasks, registered, drain, protected, at, zone)| InstanceView {
            instance_id: format!("i-{i:03}"),
            zone: format!("z{zone}"),
            template_version: 1,
            launched_at: f64::from(at),
            registered: registered || drain > 0,
            draining: drain >= 4,
            drained_for_scale_in: drain == 5,
            tasks,
            protected_from_scale_in: protected,
        },
    )
}

/// Settings, instances, waiting tasks, (min, max, desired), now, below-target mark.
type Case = (Settings, Vec<InstanceView>, Vec<Resources>, (u32, u32, u32), f64, Option<f64>);

fn arb_case() -> impl Strategy<Value = Case> {
    let settings = (1u32..=100, 1u32..4, 1u32..6, 0u32..400, 0u32..1200, any::<bool>()).prop_map(
        |(target, min_step, extra, warm, after, mtp)| Settings {
            target_capacity: target,
            minimum_scaling_step_size: min_step,
            maximum_scaling_step_size: min_step + extra,
            instance_warmup_period: warm,
            scale_in_after_secs: after,
            managed_termination_protection: mtp,
        },
    );
    let instances = (0usize..10).prop_flat_map(|n| (0..n).map(arb_instance).collect::<Vec<_>>());
    let tasks = prop::collection::vec((1u32..3000, 1u32..5000).prop_map(|(c, m)| task(c, m)), 0..8);
    let group = (0u32..4, 0u32..10, 0u32..15).prop_map(|(min, extra, d)| (min, min + extra, d));
    (settings, instances, tasks, group, 0u32..3000, prop::option::of(0u32..3000))
        .prop_map(|(s, i, t, g, now, below)| (s, i, t, g, f64::from(now), below.map(f64::from)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn decisions_keep_every_promise((s, insts, waiting, group, now, below) in arb_case()) {
        let inp = input(&s, &insts, &waiting, group, now, below);
        let d = decide(&inp);
        let (min, max, desired) = group;
        prop_assert!(d.desired_capacity >= min && d.desired_capacity <= max);
        let by_id = |id: &str| insts.iter().find(|i| i.instance_id == id).unwrap();
        for id in &d.terminate {
            let i = by_id(id);
            prop_assert!(i.drained_for_scale_in && i.draining && i.tasks == 0, "{i:?}");
            prop_assert!(!d.drain.contains(id) && !d.reactivate.contains(id));
        }
        for id in &d.drain {
            let i = by_id(id);
            prop_assert!(i.registered && !i.draining);
            if s.managed_termination_protection {
                prop_assert!(i.tasks == 0, "drained a busy instance under protection");
            } else {
                prop_assert!(!i.protected_from_scale_in);
            }
            // Drained only after the metric stayed below target long enough.
            let since = d.below_target_since.expect("below target");
            prop_assert!(now - since >= f64::from(s.scale_in_after_secs));
        }
        for id in &d.reactivate {
            prop_assert!(by_id(id).drained_for_scale_in);
        }
        if s.managed_termination_protection {
            for i in &insts {
                let protected = (i.protected_from_scale_in || d.protect.contains(&i.instance_id))
                    && !d.unprotect.contains(&i.instance_id);
                prop_assert_eq!(protected, i.tasks > 0, "{:?}", i);
            }
        } else {
            prop_assert!(d.protect.is_empty() && d.unprotect.is_empty());
        }
        // Reservation.
        if d.running == 0 {
            prop_assert!(d.reservation == 100.0 && d.needed == 0 || d.reservation == 200.0);
        } else {
            prop_assert!((d.reservation - f64::from(d.needed) * 100.0 / f64::from(d.running)).abs() < 1e-9);
        }
        // A scale-out step is within the step sizes unless the maximum size cut it.
        let before = desired.max(min).min(max);
        if d.terminate.is_empty() && d.desired_capacity > before {
            let step = d.desired_capacity - before;
            prop_assert!(step <= s.maximum_scaling_step_size);
            prop_assert!(step >= s.minimum_scaling_step_size || d.desired_capacity == max);
        }
    }

    #[test]
    fn bin_packing_is_between_the_bounds(tasks in prop::collection::vec(
        (1u32..3000, 1u32..5000).prop_map(|(c, m)| task(c, m)), 0..30)
    ) {
        let (bins, unplaceable) = instances_for(&tasks, BIN);
        let fit: Vec<&Resources> =
            tasks.iter().filter(|t| t.cpu <= BIN.cpu && t.memory_mib <= BIN.memory_mib).collect();
        prop_assert_eq!(unplaceable as usize, tasks.len() - fit.len());
        let cpu: u32 = fit.iter().map(|t| t.cpu).sum();
        let mem: u32 = fit.iter().map(|t| t.memory_mib).sum();
        prop_assert!(bins >= cpu.div_ceil(BIN.cpu) && bins >= mem.div_ceil(BIN.memory_mib));
        prop_assert!(bins as usize <= fit.len());
    }
}
