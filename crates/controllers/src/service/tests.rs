//! The service scheduler over simulated time: a small world applies each decision (starts
//! become PENDING then RUNNING, stops become STOPPED one tick later) and the tests assert the
//! rolling-update bounds at every tick, not only the end state.

use super::*;
use berth_model::service::{DeploymentRecord, failure_threshold};

/// How tasks of a task definition behave in the simulated world.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Runs and passes its health check.
    Healthy,
    /// Never starts: stops before RUNNING (e.g. its image does not exist).
    FailsToStart,
    /// Runs but turns UNHEALTHY.
    Unhealthy,
}

struct World {
    cfg: Config,
    deployments: Vec<DeploymentRecord>,
    past: Vec<DeploymentRecord>,
    tasks: Vec<TaskView>,
    instances: Vec<InstanceView>,
    steady_since: Option<f64>,
    now: f64,
    next_id: u32,
    /// task id -> task definition.
    td_of: BTreeMap<String, String>,
    /// Ticks a stopping task still runs (containers take a while to stop).
    stopping: BTreeMap<String, u32>,
    events: Vec<String>,
    /// Largest number of non-STOPPED tasks, and (once a deployment has completed) smallest
    /// number of healthy ones, seen at any tick: the bounds a rolling update must keep.
    max_seen: i32,
    min_healthy_seen: i32,
}

fn instance(id: &str) -> InstanceView {
    InstanceView {
        id: id.into(),
        active: true,
        lost: false,
        silent_secs: 0.0,
        daemon_eligible: true,
        zone: Some(format!("zone-{id}")),
    }
}

fn config(desired: i32, min: i32, max: i32) -> Config {
    Config {
        name: "web".into(),
        settings: ServiceSettings {
            daemon: false,
            desired_count: desired,
            minimum_healthy_percent: min,
            maximum_percent: max,
            circuit_breaker: true,
            rollback: true,
            health_check_grace_period_seconds: 0,
            shift: None,
        },
        deleting: false,
        hold_old: false,
        hold_new: false,
    }
}

fn behaviour(td: &str) -> Behaviour {
    match td {
        "td:bad" => Behaviour::FailsToStart,
        "td:sick" => Behaviour::Unhealthy,
        _ => Behaviour::Healthy,
    }
}

impl World {
    fn new(cfg: Config, instances: &[&str]) -> Self {
        let dep = DeploymentRecord::new(
            "ecs-svc/1".into(),
            "td:1".into(),
            None,
            cfg.settings.desired_count,
            0.0,
        );
        Self {
            cfg,
            deployments: vec![dep],
            past: vec![],
            tasks: vec![],
            instances: instances.iter().map(|i| instance(i)).collect(),
            steady_since: None,
            now: 0.0,
            next_id: 0,
            td_of: BTreeMap::new(),
            stopping: BTreeMap::new(),
            events: vec![],
            max_seen: 0,
            min_healthy_seen: i32::MAX,
        }
    }

    /// UpdateService with a new task definition.
    fn deploy(&mut self, td: &str) {
        let n = self.deployments.len() + self.past.len() + 1;
        for d in &mut self.deployments {
            d.status = "ACTIVE".into();
        }
        let dep = DeploymentRecord::new(
            format!("ecs-svc/{n}"),
            td.into(),
            None,
            self.cfg.settings.desired_count,
            self.now,
        );
        self.deployments.insert(0, dep);
        self.steady_since = None;
    }

    fn td_of_deployment(&self, id: &str) -> String {
        self.deployments
            .iter()
            .chain(&self.past)
            .find(|d| d.id == id)
            .expect("known deployment")
            .task_definition
            .clone()
    }

    /// One controller pass, then one tick of the world.
    fn step(&mut self) -> Decision {
        let d = reconcile(&Input {
            config: &self.cfg,
            deployments: &self.deployments,
            past_deployments: &self.past,
            tasks: &self.tasks,
            instances: &self.instances,
            steady_since: self.steady_since,
            now: self.now,
            settle_secs: 0.0,
        });
        for (id, _) in &d.stop {
            let t = self.tasks.iter_mut().find(|t| &t.id == id).expect("stops name known tasks");
            assert!(t.desired_running, "stopped twice: {id}");
            t.desired_running = false;
            t.stopped_on_purpose = true;
            self.stopping.insert(id.clone(), 2);
        }
        self.tasks.retain(|t| !d.forget.contains(&t.id));
        for id in &d.mark_healthy {
            self.tasks.iter_mut().find(|t| &t.id == id).expect("known task").was_healthy = true;
        }
        self.deployments = d.deployments.clone();
        for r in &d.retired {
            self.past.insert(0, r.clone());
        }
        self.steady_since = d.steady_since;
        self.events.extend(d.events.iter().cloned());
        let usable: Vec<String> =
            self.instances.iter().filter(|i| i.active && !i.lost).map(|i| i.id.clone()).collect();
        for s in &d.start {
            for _ in 0..s.count {
                self.next_id += 1;
                let id = format!("t{}", self.next_id);
                let instance = s
                    .instance
                    .clone()
                    .unwrap_or_else(|| usable[self.next_id as usize % usable.len()].clone());
                self.td_of.insert(id.clone(), self.td_of_deployment(&s.deployment));
                self.tasks.push(TaskView {
                    id,
                    deployment: s.deployment.clone(),
                    last_status: TaskStatus::Pending,
                    desired_running: true,
                    health: Health::Unknown,
                    has_health_check: true,
                    started_at: None,
                    instance_id: instance,
                    stopped_on_purpose: false,
                    was_healthy: false,
                    protected: false,
                    capacity_provider: s.capacity_provider.clone(),
                    target_health: None,
                });
            }
        }
        // The world moves: stops complete, pending tasks start (or fail), health settles.
        self.now += 1.0;
        let now = self.now;
        for t in &mut self.tasks {
            if t.last_status == TaskStatus::Stopped {
                continue;
            }
            let lost = self.instances.iter().find(|i| i.id == t.instance_id).is_none_or(|i| i.lost);
            if lost {
                continue; // nobody reports for a lost instance
            }
            if !t.desired_running {
                let left = self.stopping.entry(t.id.clone()).or_insert(0);
                *left = left.saturating_sub(1);
                if *left == 0 {
                    t.last_status = TaskStatus::Stopped;
                }
                continue;
            }
            match (behaviour(&self.td_of[&t.id]), t.last_status) {
                (Behaviour::FailsToStart, _) => t.last_status = TaskStatus::Stopped,
                (_, TaskStatus::Pending) => {
                    t.last_status = TaskStatus::Running;
                    t.started_at = Some(now);
                }
                (Behaviour::Healthy, TaskStatus::Running) => t.health = Health::Healthy,
                (Behaviour::Unhealthy, TaskStatus::Running) => t.health = Health::Unhealthy,
                _ => {}
            }
        }
        // Bounds, counted as a sampler would.
        let live =
            self.tasks.iter().filter(|t| t.last_status != TaskStatus::Stopped).count() as i32;
        let healthy = self
            .tasks
            .iter()
            .filter(|t| t.last_status == TaskStatus::Running && t.health == Health::Healthy)
            .count() as i32;
        self.max_seen = self.max_seen.max(live);
        if self.past.iter().chain(&self.deployments).any(|d| d.completed) {
            self.min_healthy_seen = self.min_healthy_seen.min(healthy);
        }
        d
    }

    fn run_until(&mut self, what: &str, mut done: impl FnMut(&World) -> bool) {
        for _ in 0..300 {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!("never {what}; events: {:#?}\ndeployments: {:#?}", self.events, self.deployments);
    }

    fn primary(&self) -> &DeploymentRecord {
        &self.deployments[0]
    }

    fn running(&self, td: &str) -> usize {
        self.tasks
            .iter()
            .filter(|t| {
                t.last_status == TaskStatus::Running && t.desired_running && self.td_of[&t.id] == td
            })
            .count()
    }

    fn steady(&self) -> bool {
        self.steady_since.is_some()
    }
}

#[test]
fn a_new_service_starts_its_tasks_and_reaches_a_steady_state() {
    let mut w = World::new(config(3, 100, 200), &["a", "b", "c"]);
    let first = w.step();
    assert_eq!(
        first.start,
        vec![Start {
            deployment: "ecs-svc/1".into(),
            count: 3,
            instance: None,
            capacity_provider: None
        }]
    );
    w.run_until("steady", World::steady);
    assert_eq!(w.running("td:1"), 3);
    assert_eq!(w.primary().rollout_state, DeploymentRolloutState::Completed);
    assert!(
        w.events.iter().any(|e| e == "(service web) (deployment ecs-svc/1) deployment completed.")
    );
    assert_eq!(
        w.events.last().map(String::as_str),
        Some("(service web) has reached a steady state.")
    );
    // Steady stays quiet: nothing started or stopped, no event repeated within six hours.
    let n = w.events.len();
    for _ in 0..5 {
        let d = w.step();
        assert!(d.start.is_empty() && d.stop.is_empty());
    }
    assert_eq!(w.events.len(), n);
}

#[test]
fn a_stopped_task_is_replaced() {
    let mut w = World::new(config(2, 100, 200), &["a", "b"]);
    w.run_until("steady", World::steady);
    // Something kills one task (not the scheduler) after it had been healthy.
    let victim = w.tasks[0].id.clone();
    w.tasks[0].last_status = TaskStatus::Stopped;
    let d = w.step();
    assert!(d.forget.contains(&victim));
    assert_eq!(d.start.iter().map(|s| s.count).sum::<u32>(), 1);
    assert_eq!(
        w.primary().failed_tasks,
        0,
        "a task that had been healthy is no deployment failure"
    );
    w.run_until("steady again", World::steady);
    assert_eq!(w.running("td:1"), 2);
}

#[test]
fn rolling_updates_keep_within_the_minimum_and_maximum() {
    for (desired, min, max) in
        [(4, 100, 200), (4, 50, 100), (3, 50, 150), (5, 100, 120), (6, 0, 100), (1, 0, 100)]
    {
        let mut w = World::new(config(desired, min, max), &["a", "b", "c"]);
        w.run_until("steady", World::steady);
        w.max_seen = 0;
        w.deploy("td:2");
        let mut completed_early = false;
        w.run_until("rolled out", |w| {
            if w.primary().task_definition == "td:2"
                && w.primary().rollout_state == DeploymentRolloutState::Completed
                && w.tasks
                    .iter()
                    .any(|t| t.last_status != TaskStatus::Stopped && w.td_of[&t.id] == "td:1")
            {
                completed_early = true;
            }
            w.steady() && w.primary().task_definition == "td:2"
        });
        assert!(!completed_early, "COMPLETED while an old task was still not STOPPED");
        assert_eq!(w.running("td:2"), desired as usize);
        assert_eq!(w.running("td:1"), 0);
        assert_eq!(w.deployments.len(), 1);
        assert_eq!(w.past[0].status, "INACTIVE");
        let hi = maximum_tasks(desired, max).max(desired);
        let lo = minimum_healthy(desired, min);
        assert!(
            w.max_seen <= hi,
            "({desired},{min},{max}): {} tasks at once, max {hi}",
            w.max_seen
        );
        assert!(
            w.min_healthy_seen >= lo,
            "({desired},{min},{max}): {} healthy, min {lo}",
            w.min_healthy_seen
        );
    }
}

#[test]
fn the_circuit_breaker_fails_the_deployment_and_rolls_back() {
    let mut w = World::new(config(4, 100, 200), &["a", "b"]);
    w.run_until("steady", World::steady);
    w.deploy("td:bad");
    w.run_until("back on td:1", |w| w.steady() && w.primary().task_definition == "td:1");
    let failed =
        w.past.iter().find(|d| d.task_definition == "td:bad").expect("the failed deployment");
    assert_eq!(failed.rollout_state, DeploymentRolloutState::Failed);
    assert!(failed.failed_tasks >= failure_threshold(4));
    assert_eq!(
        failed.rollout_state_reason,
        "ECS deployment circuit breaker: tasks failed to start."
    );
    assert_eq!(w.primary().rollback_from.as_deref(), Some(failed.id.as_str()));
    assert!(w.events.iter().any(|e| e.contains("rolling back to deployment ecs-svc/1")));
    assert_eq!(w.running("td:1"), 4);
    assert_eq!(w.primary().id, "ecs-svc/1", "the completed deployment is PRIMARY again");
    assert!(
        w.tasks.iter().all(|t| t.deployment == "ecs-svc/1"),
        "its tasks kept running: none was replaced"
    );
    assert!(w.min_healthy_seen >= 4, "the old tasks kept serving throughout");
    assert!(w.events.iter().any(|e| e.contains("deployment failed: tasks failed to start.")));
}

#[test]
fn without_rollback_a_failed_deployment_stops_launching() {
    let mut cfg = config(2, 100, 200);
    cfg.settings.rollback = false;
    let mut w = World::new(cfg, &["a"]);
    w.run_until("steady", World::steady);
    w.deploy("td:bad");
    w.run_until("failed", |w| w.primary().rollout_state == DeploymentRolloutState::Failed);
    for _ in 0..10 {
        assert!(w.step().start.is_empty());
    }
    assert_eq!(w.running("td:1"), 2, "the old tasks keep serving");
}

#[test]
fn repeated_failures_delay_launches_more_and_more() {
    let mut cfg = config(1, 100, 200);
    cfg.settings.circuit_breaker = false;
    let mut w = World::new(cfg, &["a"]);
    w.deployments[0].task_definition = "td:bad".into(); // created with an image that fails
    let mut starts = vec![];
    for _ in 0..200 {
        let t = w.now;
        if !w.step().start.is_empty() {
            starts.push(t);
        }
    }
    let gaps: Vec<f64> = starts.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(gaps.len() >= 5, "{starts:?}");
    assert!(gaps[..2].iter().all(|g| *g <= 2.0), "the first failures retry at once: {gaps:?}");
    assert!(gaps[3..].iter().all(|g| *g >= 10.0), "then a delay: {gaps:?}");
    assert!(gaps[3..].windows(2).all(|p| p[1] >= p[0]), "growing: {gaps:?}");
    assert!(
        w.events.iter().any(|e| e.contains("is unable to consistently start tasks successfully"))
    );
}

#[test]
fn unhealthy_tasks_are_stopped_and_count_as_failures() {
    let mut cfg = config(2, 100, 200);
    cfg.settings.circuit_breaker = false;
    let mut w = World::new(cfg, &["a", "b"]);
    w.run_until("steady", World::steady);
    w.deploy("td:sick");
    for _ in 0..8 {
        let d = w.step();
        assert!(
            !d.stop.iter().any(|(id, _)| w.td_of[id] == "td:1"),
            "healthy old tasks stay while the new ones are unhealthy"
        );
        assert!(
            d.stop.iter().all(|(id, why)| w.td_of[id] == "td:sick" && *why == StopWhy::Unhealthy)
        );
    }
    assert!(w.primary().failed_tasks > 0);
    assert_eq!(w.running("td:1"), 2);
}

#[test]
fn draining_moves_tasks_before_stopping_them() {
    let mut w = World::new(config(4, 100, 200), &["a", "b"]);
    w.run_until("steady", World::steady);
    assert!(w.tasks.iter().any(|t| t.instance_id == "a"));
    w.instances[0].active = false; // a is DRAINING
    w.run_until("moved", |w| {
        w.steady()
            && w.tasks.iter().all(|t| t.instance_id == "b" || t.last_status == TaskStatus::Stopped)
    });
    assert!(w.min_healthy_seen >= 4, "replacements were healthy before the drained tasks stopped");
    assert_eq!(w.running("td:1"), 4);
}

#[test]
fn tasks_of_a_lost_instance_are_replaced_and_the_surplus_stops_when_it_returns() {
    let mut w = World::new(config(4, 100, 200), &["a", "b"]);
    w.run_until("steady", World::steady);
    let on_a = w.tasks.iter().filter(|t| t.instance_id == "a").count();
    assert!(on_a > 0);
    w.instances[0].lost = true;
    w.instances[0].silent_secs = 70.0;
    let d = w.step();
    let lost = d.stop.iter().filter(|(_, why)| matches!(why, StopWhy::InstanceLost { .. })).count();
    assert_eq!(lost, on_a);
    assert_eq!(d.start.iter().map(|s| s.count).sum::<u32>() as usize, on_a);
    w.run_until("replaced", World::steady);
    // The agent comes back: its tasks are desired STOPPED, so they stop; exactly 4 remain.
    w.instances[0].lost = false;
    w.run_until("the old copies stopped", |w| {
        w.tasks.iter().all(|t| t.instance_id != "a") && w.steady()
    });
    assert_eq!(w.running("td:1"), 4);
}

#[test]
fn scale_to_zero_and_back_then_delete() {
    let mut w = World::new(config(3, 100, 200), &["a"]);
    w.run_until("steady", World::steady);
    w.cfg.settings.desired_count = 0;
    w.run_until("empty", |w| w.steady() && w.tasks.is_empty());
    w.cfg.settings.desired_count = 2;
    w.run_until("two", |w| w.steady() && w.running("td:1") == 2);
    w.cfg.deleting = true;
    let finished = (0..10).any(|_| w.step().finished);
    assert!(finished);
    assert!(w.tasks.iter().all(|t| t.last_status == TaskStatus::Stopped));
}

#[test]
fn daemon_runs_one_task_per_eligible_instance() {
    let mut cfg = config(0, 0, 100);
    cfg.settings.daemon = true;
    let mut w = World::new(cfg, &["a", "b", "c"]);
    let d = w.step();
    let mut on: Vec<String> = d.start.iter().map(|s| s.instance.clone().expect("placed")).collect();
    on.sort();
    assert_eq!(on, ["a", "b", "c"]);
    w.run_until("steady", World::steady);
    assert_eq!(w.primary().desired_count, 3);
    // A fourth instance joins; an ineligible one never gets a task.
    w.instances.push(instance("d"));
    w.instances.push(InstanceView { daemon_eligible: false, ..instance("e") });
    w.run_until("four", |w| w.steady() && w.running("td:1") == 4);
    assert!(w.tasks.iter().all(|t| t.instance_id != "e"));
    // b drains: its task stops and is not replaced elsewhere.
    w.instances[1].active = false;
    w.run_until("three", |w| w.steady() && w.running("td:1") == 3);
    assert!(w.tasks.iter().all(|t| t.instance_id != "b" || t.last_status == TaskStatus::Stopped));
    // A new revision replaces each instance's task in place.
    w.deploy("td:2");
    w.run_until("rolled", |w| w.steady() && w.running("td:2") == 3);
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for t in w.tasks.iter().filter(|t| t.last_status != TaskStatus::Stopped) {
        *per.entry(t.instance_id.as_str()).or_default() += 1;
    }
    assert!(per.values().all(|n| *n == 1), "{per:?}");
}

#[test]
fn an_old_task_still_starting_up_is_kept_while_replacements_can_start() {
    let mut w = World::new(config(2, 100, 200), &["a", "b"]);
    w.step(); // start 2; they run, health not known yet
    assert!(
        w.tasks.iter().all(|t| t.last_status == TaskStatus::Running && t.health == Health::Unknown)
    );
    w.deploy("td:2");
    let d = w.step();
    assert!(d.stop.is_empty(), "starting tasks are about to serve: {:?}", d.stop);
    assert_eq!(d.start.iter().map(|s| s.count).sum::<u32>(), 2);
    w.run_until("rolled out", |w| w.steady() && w.primary().task_definition == "td:2");
    assert_eq!(w.running("td:2"), 2);
}

#[test]
fn protected_tasks_survive_scale_in() {
    let mut w = World::new(config(3, 100, 200), &["a"]);
    w.run_until("steady", World::steady);
    let keep = w.tasks[2].id.clone();
    w.tasks[2].protected = true;
    w.cfg.settings.desired_count = 1;
    w.run_until("one left", |w| w.steady() && w.running("td:1") == 1);
    assert_eq!(
        w.tasks
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .map(|t| &t.id)
            .collect::<Vec<_>>(),
        vec![&keep]
    );
}

#[test]
fn scale_in_keeps_the_zones_balanced() {
    let mut w = World::new(config(9, 100, 200), &["a", "b", "c"]);
    w.run_until("steady", World::steady);
    let per_zone = |w: &World| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for t in
            w.tasks.iter().filter(|t| t.last_status == TaskStatus::Running && t.desired_running)
        {
            *m.entry(t.instance_id.clone()).or_default() += 1;
        }
        m
    };
    assert_eq!(per_zone(&w).values().copied().collect::<Vec<_>>(), [3, 3, 3]);
    w.cfg.settings.desired_count = 4;
    w.run_until("four", |w| w.steady() && w.running("td:1") == 4);
    let mut counts: Vec<usize> = per_zone(&w).values().copied().collect();
    counts.sort();
    assert_eq!(counts, [1, 1, 2], "balanced within one");
}

/// The running tasks per capacity provider (`-` for none).
fn per_provider(w: &World) -> BTreeMap<String, usize> {
    let mut m: BTreeMap<String, usize> = BTreeMap::new();
    for t in w.tasks.iter().filter(|t| t.last_status == TaskStatus::Running && t.desired_running) {
        *m.entry(t.capacity_provider.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
    }
    m
}

fn item(name: &str, base: i32, weight: i32) -> CapacityProviderStrategyItem {
    CapacityProviderStrategyItem {
        capacity_provider: Some(name.into()),
        base: Some(base),
        weight: Some(weight),
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn a_capacity_provider_strategy_splits_starts_and_scale_in() {
    let mut w = World::new(config(6, 100, 200), &["a", "b"]);
    w.deployments[0].capacity_provider_strategy = vec![item("cp-a", 2, 1), item("cp-b", 0, 1)];
    let first = w.step();
    let split: Vec<(Option<&str>, u32)> =
        first.start.iter().map(|s| (s.capacity_provider.as_deref(), s.count)).collect();
    assert_eq!(split, [(Some("cp-a"), 4), (Some("cp-b"), 2)], "base 2, then 1:1");
    w.run_until("steady", World::steady);
    assert_eq!(per_provider(&w), counts(&[("cp-a", 4), ("cp-b", 2)]));

    // A task lost on cp-b is replaced on cp-b.
    let on_b = w
        .tasks
        .iter()
        .position(|t| t.capacity_provider.as_deref() == Some("cp-b"))
        .expect("a task on cp-b");
    w.tasks[on_b].last_status = TaskStatus::Stopped;
    w.tasks[on_b].desired_running = false;
    let d = w.step();
    let split: Vec<(Option<&str>, u32)> =
        d.start.iter().map(|s| (s.capacity_provider.as_deref(), s.count)).collect();
    assert_eq!(split, [(Some("cp-b"), 1)]);
    w.run_until("steady again", |w| w.steady() && w.running("td:1") == 6);

    // Scale-in keeps the split of every count: 4 is 2 (base) + 1:1 of 2, 2 is the base alone.
    w.cfg.settings.desired_count = 4;
    w.run_until("four", |w| w.steady() && w.running("td:1") == 4);
    assert_eq!(per_provider(&w), counts(&[("cp-a", 3), ("cp-b", 1)]));
    w.cfg.settings.desired_count = 2;
    w.run_until("two", |w| w.steady() && w.running("td:1") == 2);
    assert_eq!(per_provider(&w), counts(&[("cp-a", 2)]));
}

#[test]
fn scale_in_stops_tasks_of_providers_the_strategy_no_longer_names_first() {
    let mut w = World::new(config(4, 100, 200), &["a", "b"]);
    w.run_until("steady", World::steady);
    assert_eq!(per_provider(&w), counts(&[("-", 4)]));
    // The deployment now names cp-a (as if the tasks had been started before it did).
    w.deployments[0].capacity_provider_strategy = vec![item("cp-a", 0, 1)];
    w.cfg.settings.desired_count = 6;
    w.run_until("six", |w| w.steady() && w.running("td:1") == 6);
    assert_eq!(per_provider(&w), counts(&[("-", 4), ("cp-a", 2)]));
    w.cfg.settings.desired_count = 2;
    w.run_until("two", |w| w.steady() && w.running("td:1") == 2);
    assert_eq!(per_provider(&w), counts(&[("cp-a", 2)]));
}

#[test]
fn a_task_waiting_for_fargate_capacity_is_neither_lost_nor_replaced() {
    let mut w = World::new(config(2, 100, 200), &["a"]);
    w.run_until("steady", World::steady);
    // One task waits unplaced, as a Fargate task in PROVISIONING does: no instance yet.
    let t = &mut w.tasks[0];
    t.instance_id = String::new();
    t.last_status = TaskStatus::Provisioning;
    t.health = Health::Unknown;
    t.started_at = None;
    let waiting = t.id.clone();
    let d = w.step();
    assert!(
        d.stop.iter().all(|(id, _)| id != &waiting),
        "a task with no instance yet is not lost: {:?}",
        d.stop
    );
    assert_eq!(d.start.iter().map(|s| s.count).sum::<u32>(), 0, "it occupies its slot");
}

/// One RUNNING task of a one-task service behind a load balancer, as the target group sees it.
fn behind_lb(target: TargetHealth, ran_for: f64, has_health_check: bool) -> TaskView {
    TaskView {
        id: "t1".into(),
        deployment: "ecs-svc/1".into(),
        last_status: TaskStatus::Running,
        desired_running: true,
        health: if has_health_check { Health::Healthy } else { Health::Unknown },
        has_health_check,
        started_at: Some(100.0 - ran_for),
        instance_id: "a".into(),
        stopped_on_purpose: false,
        was_healthy: false,
        protected: false,
        capacity_provider: None,
        target_health: Some(target),
    }
}

#[test]
fn behind_a_load_balancer_the_target_group_decides_health() {
    let unhealthy = || TargetHealth::Unhealthy { target_group: "arn:tg".into() };
    // (case, target health, seconds running, container health check, grace period,
    //  expected: marked healthy, stopped for failing ELB health checks)
    let cases = [
        (
            "pending target, long past the settle time",
            TargetHealth::Pending,
            500.0,
            false,
            0,
            false,
            false,
        ),
        (
            "healthy target, before the settle time",
            TargetHealth::Healthy,
            1.0,
            false,
            0,
            true,
            false,
        ),
        ("healthy target and container check", TargetHealth::Healthy, 1.0, true, 0, true, false),
        ("unhealthy target, no grace", unhealthy(), 1.0, false, 0, false, true),
        ("unhealthy target within the grace period", unhealthy(), 10.0, false, 60, false, false),
        ("unhealthy target after the grace period", unhealthy(), 61.0, false, 60, false, true),
    ];
    for (case, target, ran_for, check, grace, healthy, stopped) in cases {
        let mut cfg = config(1, 100, 200);
        cfg.settings.health_check_grace_period_seconds = grace;
        let deps = [DeploymentRecord::new("ecs-svc/1".into(), "td:1".into(), None, 1, 0.0)];
        let tasks = [behind_lb(target, ran_for, check)];
        let d = reconcile(&Input {
            config: &cfg,
            deployments: &deps,
            past_deployments: &[],
            tasks: &tasks,
            instances: &[instance("a")],
            steady_since: None,
            now: 100.0,
            settle_secs: 40.0,
        });
        assert_eq!(d.mark_healthy.contains(&"t1".to_string()), healthy, "{case}");
        let elb_stop = d.stop.iter().any(|(id, why)| {
            id == "t1" && *why == StopWhy::ElbUnhealthy { target_group: "arn:tg".into() }
        });
        assert_eq!(elb_stop, stopped, "{case}: {:?}", d.stop);
        // A task stopped before it was ever healthy is a failure of its deployment.
        assert_eq!(d.deployments[0].failed_tasks, i32::from(stopped), "{case}");
        // The replacement starts at once.
        assert_eq!(d.start.iter().map(|s| s.count).sum::<u32>(), u32::from(stopped), "{case}");
    }
}

#[test]
fn a_rolling_update_behind_a_load_balancer_waits_for_the_new_target() {
    // Old task healthy, its replacement RUNNING but its target still initial: the old one
    // stays (minimum 100%); once the new target is healthy, the old one is stopped.
    let cfg = config(1, 100, 200);
    let deps = [
        DeploymentRecord::new("ecs-svc/2".into(), "td:2".into(), None, 1, 50.0),
        DeploymentRecord::new("ecs-svc/1".into(), "td:1".into(), None, 1, 0.0),
    ];
    let old = TaskView {
        id: "old".into(),
        deployment: "ecs-svc/1".into(),
        was_healthy: true,
        ..behind_lb(TargetHealth::Healthy, 90.0, false)
    };
    for (new_target, old_stops) in [(TargetHealth::Pending, false), (TargetHealth::Healthy, true)] {
        let new = TaskView {
            id: "new".into(),
            deployment: "ecs-svc/2".into(),
            ..behind_lb(new_target.clone(), 5.0, false)
        };
        let tasks = [old.clone(), new];
        let d = reconcile(&Input {
            config: &cfg,
            deployments: &deps,
            past_deployments: &[],
            tasks: &tasks,
            instances: &[instance("a")],
            steady_since: None,
            now: 100.0,
            settle_secs: 40.0,
        });
        assert_eq!(d.stop.iter().any(|(id, _)| id == "old"), old_stops, "{new_target:?}");
        assert!(d.start.is_empty());
    }
}

#[test]
fn a_pause_hook_before_scale_up_holds_the_new_deployments_launches() {
    let mut w = World::new(config(2, 100, 200), &["a", "b"]);
    w.run_until("steady", World::steady);
    w.cfg.hold_old = true;
    w.cfg.hold_new = true;
    w.deploy("td:2");
    for _ in 0..10 {
        let d = w.step();
        assert!(d.start.is_empty(), "started while held: {:?}", d.start);
    }
    assert_eq!((w.running("td:1"), w.running("td:2")), (2, 0));
    // Released: green starts its full count beside blue, which the shift still holds.
    w.cfg.hold_new = false;
    w.run_until("green running", |w| w.running("td:2") == 2);
    assert_eq!(w.running("td:1"), 2);
}
