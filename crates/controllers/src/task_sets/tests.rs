//! Table tests of the task set scheduler: one pass from a snapshot, and a small simulated
//! world that applies decisions until the sets are steady.

use super::*;
use berth_wire::ecs::{Scale, ScaleUnit, TaskSet};

fn set(id: &str, status: &str, percent: f64) -> TaskSetRecord {
    TaskSetRecord {
        task_set: TaskSet {
            id: Some(id.into()),
            status: Some(status.into()),
            task_definition: Some("td:1".into()),
            scale: Some(Scale { value: Some(percent), unit: Some(ScaleUnit::Percent) }),
            ..Default::default()
        },
        client_token: None,
        consecutive_failures: 0,
        next_launch_at: 0.0,
    }
}

fn instance(id: &str) -> InstanceView {
    InstanceView {
        id: id.into(),
        active: true,
        lost: false,
        silent_secs: 0.0,
        daemon_eligible: true,
        zone: None,
    }
}

fn task(id: &str, set: &str, status: TaskStatus, started_at: Option<f64>) -> TaskView {
    TaskView {
        id: id.into(),
        deployment: set.into(),
        last_status: status,
        desired_running: true,
        health: Health::Unknown,
        has_health_check: false,
        started_at,
        instance_id: "i1".into(),
        stopped_on_purpose: false,
        was_healthy: false,
        protected: false,
        capacity_provider: None,
        target_health: None,
    }
}

fn running(id: &str, set: &str, at: f64) -> TaskView {
    task(id, set, TaskStatus::Running, Some(at))
}

fn input<'a>(
    desired: i32,
    sets: &'a [TaskSetRecord],
    tasks: &'a [TaskView],
    instances: &'a [InstanceView],
) -> TaskSetInput<'a> {
    TaskSetInput {
        name: "web",
        desired_count: desired,
        deleting: false,
        health_check_grace_period_seconds: 0,
        task_sets: sets,
        tasks,
        instances,
        now: 1000.0,
    }
}

fn starts(d: &TaskSetDecision) -> Vec<(&str, u32)> {
    d.start.iter().map(|s| (s.deployment.as_str(), s.count)).collect()
}

fn stops(d: &TaskSetDecision) -> Vec<&str> {
    d.stop.iter().map(|(id, _)| id.as_str()).collect()
}

#[test]
fn one_pass_table() {
    let inst = [instance("i1")];
    let a = || set("ecs-svc/1", ts::PRIMARY, 100.0);
    let b = |p: f64| set("ecs-svc/2", ts::ACTIVE, p);
    // (name, desired, sets, tasks, starts, stops)
    type Case = (
        &'static str,
        i32,
        Vec<TaskSetRecord>,
        Vec<TaskView>,
        Vec<(&'static str, u32)>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "empty sets start their computed counts",
            4,
            vec![a(), b(50.0)],
            vec![],
            vec![("ecs-svc/1", 4), ("ecs-svc/2", 2)],
            vec![],
        ),
        ("scale 0 starts nothing", 4, vec![b(0.0)], vec![], vec![], vec![]),
        ("rounds up: 3 x 50% = 2", 3, vec![b(50.0)], vec![], vec![("ecs-svc/2", 2)], vec![]),
        (
            "partial: starts the difference",
            4,
            vec![a()],
            vec![running("t1", "ecs-svc/1", 1.0)],
            vec![("ecs-svc/1", 3)],
            vec![],
        ),
        (
            "scale-in stops pending first, then the newest",
            1,
            vec![a()],
            vec![
                running("old", "ecs-svc/1", 1.0),
                running("new", "ecs-svc/1", 5.0),
                task("pend", "ecs-svc/1", TaskStatus::Pending, None),
            ],
            vec![],
            vec!["pend", "new"],
        ),
        (
            "DRAINING set stops everything",
            4,
            vec![a(), set("ecs-svc/2", ts::DRAINING, 50.0)],
            vec![running("t1", "ecs-svc/1", 1.0), running("t2", "ecs-svc/2", 1.0)],
            vec![("ecs-svc/1", 3)],
            vec!["t2"],
        ),
        (
            "a task of an unknown set is stopped",
            0,
            vec![],
            vec![running("orphan", "ecs-svc/9", 1.0)],
            vec![],
            vec!["orphan"],
        ),
        (
            "a task on a vanished instance is stopped and replaced",
            1,
            vec![a()],
            vec![TaskView { instance_id: "gone".into(), ..running("t1", "ecs-svc/1", 1.0) }],
            vec![("ecs-svc/1", 1)],
            vec!["t1"],
        ),
        (
            "a task already stopping is left alone and not counted",
            1,
            vec![a()],
            vec![TaskView { desired_running: false, ..running("t1", "ecs-svc/1", 1.0) }],
            vec![("ecs-svc/1", 1)],
            vec![],
        ),
        (
            "unhealthy past the grace period is replaced",
            1,
            vec![a()],
            vec![TaskView {
                has_health_check: true,
                health: Health::Unhealthy,
                ..running("t1", "ecs-svc/1", 1.0)
            }],
            vec![("ecs-svc/1", 1)],
            vec!["t1"],
        ),
    ];
    for (name, desired, sets, tasks, want_starts, want_stops) in cases {
        let d = reconcile(&input(desired, &sets, &tasks, &inst));
        assert_eq!(starts(&d), want_starts, "{name}");
        assert_eq!(stops(&d), want_stops, "{name}");
    }
}

#[test]
fn counts_and_stability() {
    let inst = [instance("i1")];
    let sets = [set("ecs-svc/1", ts::PRIMARY, 100.0), set("ecs-svc/2", ts::ACTIVE, 50.0)];
    let tasks = [
        running("a1", "ecs-svc/1", 1.0),
        running("a2", "ecs-svc/1", 1.0),
        running("b1", "ecs-svc/2", 1.0),
        task("b2", "ecs-svc/2", TaskStatus::Pending, None),
    ];
    let d = reconcile(&input(2, &sets, &tasks, &inst));
    // 2 x 50% = 1, but set 2 has two live tasks: the pending one goes.
    assert!(d.start.is_empty());
    assert_eq!(stops(&d), vec!["b2"]);
    let a = &d.task_sets[0].task_set;
    assert_eq!(
        (a.computed_desired_count, a.running_count, a.pending_count),
        (Some(2), Some(2), Some(0))
    );
    assert_eq!(a.stability_status, Some(StabilityStatus::SteadyState));
    assert_eq!(a.stability_status_at, Some(1000.0));
    let b = &d.task_sets[1].task_set;
    assert_eq!(
        (b.computed_desired_count, b.running_count, b.pending_count),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(b.stability_status, Some(StabilityStatus::Stabilizing));

    // A second pass with nothing changed leaves the timestamps alone.
    let again =
        reconcile(&TaskSetInput { now: 2000.0, ..input(2, &d.task_sets, &tasks[..3], &inst) });
    let a2 = &again.task_sets[0].task_set;
    assert_eq!(a2.stability_status_at, Some(1000.0));
    assert_eq!(a2.updated_at, Some(1000.0));
    assert_eq!(again.task_sets[1].task_set.stability_status, Some(StabilityStatus::SteadyState));
}

#[test]
fn draining_set_is_removed_once_its_tasks_stopped_and_deleting_finishes() {
    let inst = [instance("i1")];
    let sets = [set("ecs-svc/1", ts::DRAINING, 100.0)];
    let stopping = [TaskView { desired_running: false, ..running("t1", "ecs-svc/1", 1.0) }];
    let d = reconcile(&input(2, &sets, &stopping, &inst));
    assert!(d.removed.is_empty(), "a task is still stopping");
    let stopped = [task("t1", "ecs-svc/1", TaskStatus::Stopped, Some(1.0))];
    let d = reconcile(&input(2, &sets, &stopped, &inst));
    assert_eq!(d.removed, vec!["ecs-svc/1".to_string()]);
    assert_eq!(d.forget, vec!["t1".to_string()]);
    assert!(d.task_sets.is_empty());

    // Deleting: everything scales to 0; finished once nothing is left.
    let sets = [set("ecs-svc/2", ts::PRIMARY, 100.0)];
    let live = [running("t2", "ecs-svc/2", 1.0)];
    let del = |tasks| TaskSetInput { deleting: true, ..input(2, &sets, tasks, &inst) };
    let d = reconcile(&del(&live));
    assert_eq!(stops(&d), vec!["t2"]);
    assert!(!d.finished);
    let d = reconcile(&del(&[]));
    assert!(d.finished && d.start.is_empty());
}

#[test]
fn failures_delay_launches() {
    let inst = [instance("i1")];
    let mut sets = vec![set("ecs-svc/1", ts::PRIMARY, 100.0)];
    let mut now = 1000.0;
    for n in 1..=4u32 {
        let failed = [task(&format!("f{n}"), "ecs-svc/1", TaskStatus::Stopped, None)];
        let d = reconcile(&TaskSetInput { now, ..input(1, &sets, &failed, &inst) });
        sets = d.task_sets.clone();
        assert_eq!(sets[0].consecutive_failures, n);
        if n < THROTTLE_AFTER {
            assert_eq!(starts(&d), vec![("ecs-svc/1", 1)], "failure {n}");
        } else {
            assert!(d.start.is_empty(), "failure {n}: delayed");
            let delay = FIRST_LAUNCH_DELAY_SECS * 2f64.powi((n - THROTTLE_AFTER) as i32);
            assert_eq!(sets[0].next_launch_at, now + delay);
            assert!(d.events[0].contains("unable to consistently start tasks"));
        }
        now += 1.0;
    }
    // After the delay the set launches again.
    let d = reconcile(&TaskSetInput { now: sets[0].next_launch_at, ..input(1, &sets, &[], &inst) });
    assert_eq!(starts(&d), vec![("ecs-svc/1", 1)]);
}

/// Applies decisions in a small world (starts become RUNNING the next pass, stops STOPPED)
/// and checks the sets follow the service's desired count.
#[test]
fn simulated_sets_follow_the_desired_count() {
    let inst = [instance("i1"), instance("i2")];
    let mut sets = vec![set("ecs-svc/1", ts::PRIMARY, 100.0), set("ecs-svc/2", ts::ACTIVE, 50.0)];
    let mut tasks: Vec<TaskView> = Vec::new();
    let mut next = 0;
    let mut run = |desired: i32, sets: &mut Vec<TaskSetRecord>, tasks: &mut Vec<TaskView>| {
        for pass in 0..10 {
            let d = reconcile(&TaskSetInput {
                now: 1000.0 + f64::from(pass),
                ..input(desired, sets, tasks, &inst)
            });
            tasks.retain(|t| !d.forget.contains(&t.id));
            for t in tasks.iter_mut() {
                if d.stop.iter().any(|(id, _)| id == &t.id) {
                    t.last_status = TaskStatus::Stopped;
                    t.desired_running = false;
                    t.stopped_on_purpose = true;
                }
            }
            for s in &d.start {
                for _ in 0..s.count {
                    next += 1;
                    tasks.push(running(&format!("t{next}"), &s.deployment, f64::from(next)));
                }
            }
            *sets = d.task_sets;
        }
        let live = |id: &str| {
            tasks
                .iter()
                .filter(|t| t.deployment == id && t.last_status != TaskStatus::Stopped)
                .count()
        };
        (live("ecs-svc/1"), live("ecs-svc/2"))
    };
    // (desired, tasks of the 100% set, tasks of the 50% set)
    for (desired, want_a, want_b) in [(4, 4, 2), (6, 6, 3), (3, 3, 2), (0, 0, 0), (2, 2, 1)] {
        assert_eq!(run(desired, &mut sets, &mut tasks), (want_a, want_b), "desired {desired}");
        for s in &sets {
            assert_eq!(s.task_set.stability_status, Some(StabilityStatus::SteadyState));
        }
    }
}

/// A set with a capacity provider strategy launches across it from what each provider runs,
/// and scales in from the provider furthest above its share.
#[test]
fn a_set_with_a_strategy_splits_launches_and_scale_in_by_provider() {
    use berth_wire::ecs::CapacityProviderStrategyItem;
    let item = |name: &str, base: i32, weight: i32| CapacityProviderStrategyItem {
        capacity_provider: Some(name.into()),
        base: Some(base),
        weight: Some(weight),
    };
    let mut s = set("ts1", ts::ACTIVE, 100.0);
    s.task_set.capacity_provider_strategy = Some(vec![item("a", 2, 1), item("b", 0, 3)]);
    let sets = [s];
    let instances = [instance("i1")];
    // From nothing to 6: a gets its base of 2, then 1:3 of the rest (a 3, b 3).
    let d = reconcile(&input(6, &sets, &[], &instances));
    let per: Vec<(Option<&str>, u32)> =
        d.start.iter().map(|s| (s.capacity_provider.as_deref(), s.count)).collect();
    assert_eq!(per, vec![(Some("a"), 3), (Some("b"), 3)]);
    // Two of b's already run: the remaining four go a 3, b 1.
    let on = |id: &str, p: &str| TaskView {
        capacity_provider: Some(p.into()),
        ..running(id, "ts1", 1.0)
    };
    let tasks = [on("t1", "b"), on("t2", "b")];
    let d = reconcile(&input(6, &sets, &tasks, &instances));
    let per: Vec<(Option<&str>, u32)> =
        d.start.iter().map(|s| (s.capacity_provider.as_deref(), s.count)).collect();
    assert_eq!(per, vec![(Some("a"), 3), (Some("b"), 1)]);
    // Eight running, a 6 and b 2, scaled to 4: a task of a provider outside the strategy goes
    // first, then stops come from the provider above its share until the split of 4 holds.
    let mut tasks: Vec<TaskView> = (0..6).map(|i| on(&format!("a{i}"), "a")).collect();
    tasks.extend((0..2).map(|i| on(&format!("b{i}"), "b")));
    tasks.push(on("x0", "x"));
    let d = reconcile(&input(4, &sets, &tasks, &instances));
    let stopped = stops(&d);
    assert_eq!(stopped.len(), 5);
    assert_eq!(stopped[0], "x0");
    let from_a = stopped.iter().filter(|id| id.starts_with('a')).count();
    let from_b = stopped.iter().filter(|id| id.starts_with('b')).count();
    let shares = crate::service::strategy_shares(
        sets[0].task_set.capacity_provider_strategy.as_deref().unwrap(),
    );
    let target = berth_scheduler::capacity::split(&shares, 4);
    assert_eq!(
        vec![6 - from_a as u32, 2 - from_b as u32],
        target,
        "what is left is the split of 4"
    );
}
