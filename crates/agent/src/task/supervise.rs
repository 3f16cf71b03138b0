//! A running task: the actor waits for a reason to look, re-reads what that reason names, and
//! reports what changed.
//!
//! Contract:
//! * Reasons to re-read a container: an event about it, or a (re)subscription of the event
//!   stream (all containers), from the actor's [`Watch`](crate::events::Watch); its exit
//!   (a wait on each running container, which also catches an exit whose event was lost);
//!   and every [`SAFETY_NET_PERIOD`] for running containers with a health check. Nothing is
//!   read while nothing happens.
//! * The task's state is published when a re-read changed a container's status, health, exit
//!   code or reason; an essential container found stopped ends supervision
//!   (`EssentialContainerExited`), a non-essential one is reported and the task goes on.

use std::time::Duration;

use berth_model::lifecycle::TaskStatus;
use berth_wire::ecs::TaskStopCode;
use tokio::sync::mpsc;

use super::{REWAIT_DELAY, SAFETY_NET_PERIOD, TaskActor};

impl TaskActor {
    /// Watches a running task until it must stop: desired STOPPED, or an essential container
    /// exited. Non-essential exits are reported and the task goes on.
    pub(super) async fn supervise(&mut self) {
        // A container can exit before it is watched (an instant crash, an OOM kill during
        // start-up): an essential one that already has stops the task now.
        if self.runs.iter().any(|r| r.essential() && r.status == TaskStatus::Stopped) {
            self.stop_code.get_or_insert(TaskStopCode::EssentialContainerExited);
            self.stopped_reason.get_or_insert_with(|| "Essential container in task exited".into());
            return;
        }
        let (exit_tx, mut exits) = mpsc::unbounded_channel::<usize>();
        let runtime = self.ctx.runtime.clone();
        let watch_exit = |i: usize, id: String, delay: Duration| {
            let rt = runtime.clone();
            let tx = exit_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(e) = rt.wait_exit(&id).await {
                    tracing::debug!(container = %id, error = %e, "waiting for the exit failed");
                }
                let _ = tx.send(i);
            });
        };
        for (i, r) in self.runs.iter().enumerate() {
            if let (Some(id), TaskStatus::Running) = (r.id.clone(), r.status) {
                watch_exit(i, id, Duration::ZERO);
            }
        }
        // Security groups of the latest poll: changes during start-up, then every change.
        let mut groups = self.ctx.network.groups.subscribe();
        if let Err((_, e)) = self.apply_firewall(false).await {
            tracing::warn!(task = %self.arn, error = %e, "cannot apply security groups");
        }
        let start = tokio::time::Instant::now() + SAFETY_NET_PERIOD;
        let mut safety_net = tokio::time::interval_at(start, SAFETY_NET_PERIOD);
        safety_net.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.wants_stop() {
                return;
            }
            let before: Vec<_> = self.runs.iter().map(|r| r.observed()).collect();
            let read: Vec<usize> = tokio::select! {
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        self.detached = true;
                        return;
                    }
                    continue;
                }
                Some(i) = exits.recv() => {
                    self.refresh(i).await;
                    if self.runs[i].status != TaskStatus::Stopped {
                        // The wait ended without an exit (an engine hiccup): watch again.
                        if let Some(id) = self.runs[i].id.clone() {
                            watch_exit(i, id, REWAIT_DELAY);
                        }
                    }
                    vec![i]
                }
                changed = self.watch.changed() => self.refresh_changed(&changed).await,
                Ok(()) = groups.changed() => {
                    if let Err((_, e)) = self.apply_firewall(false).await {
                        tracing::warn!(task = %self.arn, error = %e, "cannot apply security groups");
                    }
                    continue;
                }
                _ = safety_net.tick() => {
                    let due: Vec<usize> = (0..self.runs.len())
                        .filter(|&i| {
                            let r = &self.runs[i];
                            r.status == TaskStatus::Running && r.def.health_check.is_some()
                        })
                        .collect();
                    for &i in &due {
                        self.refresh(i).await;
                    }
                    due
                }
            };
            let after: Vec<_> = self.runs.iter().map(|r| r.observed()).collect();
            if before != after {
                self.publish();
            }
            let essential_exit = read.iter().any(|&i| {
                let r = &self.runs[i];
                r.status == TaskStatus::Stopped && r.essential()
            });
            if essential_exit {
                self.stop_code.get_or_insert(TaskStopCode::EssentialContainerExited);
                self.stopped_reason
                    .get_or_insert_with(|| "Essential container in task exited".into());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_agent_protocol::{DesiredTask, TaskReport};
    use berth_model::lifecycle::DesiredTaskStatus;
    use berth_runtime::HealthStatus as RtHealth;
    use berth_runtime::fake::{FakeRuntime, Op};
    use berth_wire::ecs::{HealthStatus, TaskDefinition};
    use tokio::sync::watch;
    use tokio::time::Instant;

    use super::*;
    use crate::events::{self, Router};
    use crate::spec::LABEL_INSTANCE;
    use crate::task::TaskContext;

    const INSTANCE: &str = "arn:aws:ecs:us-east-1:1:container-instance/c/i";

    /// One task on the fake runtime, with the agent's event follower running.
    struct Harness {
        fake: Arc<FakeRuntime>,
        reports: mpsc::UnboundedReceiver<TaskReport>,
        _desired: watch::Sender<DesiredTask>,
        follower: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        fn start(containers: serde_json::Value) -> Harness {
            let fake = Arc::new(FakeRuntime::new());
            fake.add_image("img");
            let td: TaskDefinition = serde_json::from_value(serde_json::json!({
                "family": "f", "revision": 1, "containerDefinitions": containers
            }))
            .unwrap();
            let router = Router::new();
            let follower = tokio::spawn(events::follow(
                fake.clone(),
                vec![(LABEL_INSTANCE.to_string(), INSTANCE.to_string())],
                router.clone(),
            ));
            let (tx, reports) = mpsc::unbounded_channel();
            let ctx = TaskContext {
                runtime: fake.clone(),
                cluster: "c".into(),
                instance_arn: INSTANCE.into(),
                reports: tx,
                metadata_base: None,
                metadata: None,
                availability_zone: "az".into(),
                events: router,
                network: Default::default(),
                pull_auth: Default::default(),
                logs: None,
            };
            let (desired, rx) = watch::channel(DesiredTask {
                task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
                desired_status: DesiredTaskStatus::Running,
                last_status: TaskStatus::Pending,
                task_definition: td,
                ..Default::default()
            });
            tokio::spawn(TaskActor::new(ctx, rx).run());
            Harness { fake, reports, _desired: desired, follower }
        }

        /// The first report (from now on) that `pred` accepts.
        async fn report_where(&mut self, pred: impl Fn(&TaskReport) -> bool) -> TaskReport {
            let wait = async {
                loop {
                    let r = self.reports.recv().await.expect("the actor reports");
                    if pred(&r) {
                        return r;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(600), wait).await.expect("such a report")
        }

        /// Runtime id of the task's container `name`.
        fn id(&self, name: &str) -> String {
            self.fake
                .container_ids()
                .into_iter()
                .find(|id| {
                    let spec = self.fake.spec(id).unwrap();
                    spec.labels.get(crate::spec::LABEL_CONTAINER_NAME).map(String::as_str)
                        == Some(name)
                })
                .expect("the container exists")
        }

        /// Waits for RUNNING, then makes `web` healthy and waits for that report: from then
        /// on no earlier event is left for the actor to handle. Returns `web`'s id.
        async fn settle(&mut self) -> String {
            self.report_where(running).await;
            let web = self.id("web");
            assert!(self.fake.set_health(&web, RtHealth::Healthy));
            self.report_where(|r| health_of(r, "web") == Some(HealthStatus::Healthy)).await;
            self.fake.clear_calls();
            web
        }

        fn inspected(&self) -> Vec<String> {
            self.fake
                .calls_of(Op::Inspect)
                .into_iter()
                .map(|c| match c {
                    berth_runtime::fake::Call::Inspect(id) => id,
                    _ => unreachable!(),
                })
                .collect()
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.follower.abort();
        }
    }

    fn health_of(r: &TaskReport, name: &str) -> Option<HealthStatus> {
        r.container_health.iter().find(|h| h.container_name == name).map(|h| h.health_status)
    }

    fn running(r: &TaskReport) -> bool {
        r.change.status.as_deref() == Some("RUNNING")
    }

    const WEB_AND_SIDECAR: &str = r#"[
        {"name": "web", "image": "img", "memory": 16,
         "healthCheck": {"command": ["CMD", "/hello", "-check"], "interval": 5}},
        {"name": "sidecar", "image": "img", "memory": 16, "essential": false}
    ]"#;

    #[tokio::test(start_paused = true)]
    async fn a_health_event_makes_the_actor_re_read_and_report_the_change() {
        let mut h = Harness::start(serde_json::from_str(WEB_AND_SIDECAR).unwrap());
        let web = h.settle().await;
        let t0 = Instant::now();
        assert!(h.fake.set_health(&web, RtHealth::Unhealthy));
        let r = h.report_where(|r| health_of(r, "web") == Some(HealthStatus::Unhealthy)).await;
        assert!(running(&r));
        assert!(t0.elapsed() < Duration::from_secs(1), "at once, not on a timer");
        assert_eq!(h.inspected(), vec![web.clone()], "only the container the event named");

        h.fake.clear_calls();
        assert!(h.fake.set_health(&web, RtHealth::Healthy));
        h.report_where(|r| health_of(r, "web") == Some(HealthStatus::Healthy)).await;
        assert_eq!(h.inspected(), vec![web]);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_re_read_while_nothing_changes_but_the_safety_net() {
        let mut h = Harness::start(serde_json::from_str(WEB_AND_SIDECAR).unwrap());
        let web = h.settle().await;
        tokio::time::sleep(SAFETY_NET_PERIOD - Duration::from_secs(1)).await;
        assert!(h.fake.calls().is_empty(), "no call at all: {:?}", h.fake.calls());
        // The safety net: the health-checked container alone, once per period.
        tokio::time::sleep(SAFETY_NET_PERIOD * 2).await;
        assert_eq!(h.inspected(), vec![web.clone(), web]);
        assert!(h.reports.try_recv().is_err(), "nothing changed: nothing reported");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_missed_by_a_lost_event_is_caught_by_the_safety_net() {
        let mut h = Harness::start(serde_json::from_str(WEB_AND_SIDECAR).unwrap());
        let web = h.settle().await;
        let t0 = Instant::now();
        h.fake.mute_events(true);
        h.fake.set_health(&web, RtHealth::Unhealthy);
        h.report_where(|r| health_of(r, "web") == Some(HealthStatus::Unhealthy)).await;
        assert!(t0.elapsed() <= SAFETY_NET_PERIOD + Duration::from_secs(1));
        assert!(t0.elapsed() >= SAFETY_NET_PERIOD - Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_event_stream_is_re_subscribed_and_every_container_re_read() {
        let mut h = Harness::start(serde_json::from_str(WEB_AND_SIDECAR).unwrap());
        let (web, sidecar) = (h.settle().await, h.id("sidecar"));
        let t0 = Instant::now();
        // The stream drops; what happens before the agent is subscribed again has no event.
        h.fake.drop_event_streams();
        assert!(h.fake.set_health(&web, RtHealth::Unhealthy));
        let r = h.report_where(|r| health_of(r, "web") == Some(HealthStatus::Unhealthy)).await;
        assert!(running(&r));
        assert!(t0.elapsed() < Duration::from_secs(5), "by the re-subscription, not a timer");
        assert_eq!(h.fake.calls_of(Op::Events).len(), 1, "subscribed again");
        // Every container is re-read, the one without a health check or an event too.
        let mut inspected = h.inspected();
        inspected.sort();
        let mut both = vec![web.clone(), sidecar];
        both.sort();
        assert_eq!(inspected, both);
        // Followed again: the next change arrives as an event.
        h.fake.clear_calls();
        h.fake.set_health(&web, RtHealth::Healthy);
        h.report_where(|r| health_of(r, "web") == Some(HealthStatus::Healthy)).await;
        assert_eq!(h.inspected(), vec![web]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_die_event_of_an_essential_container_stops_the_task() {
        let mut h = Harness::start(serde_json::from_str(WEB_AND_SIDECAR).unwrap());
        let web = h.settle().await;
        h.fake.oom_kill(&web);
        let last = h.report_where(|r| r.change.status.as_deref() == Some("STOPPED")).await;
        assert_eq!(last.stop_code, Some(TaskStopCode::EssentialContainerExited));
        assert!(h.fake.container_ids().is_empty(), "containers are removed");
    }
}
