//! The agent's loops on fakes: a [`FakeControlPlane`] behind [`ControlPlane`] and the
//! [`FakeRuntime`]; every test runs on tokio's paused clock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use berth_agent_protocol::{DesiredTask, PollRequest, PollResponse, TaskReport};
use berth_model::lifecycle::{DesiredTaskStatus, InstanceStatus, TaskStatus};
use berth_runtime::fake::{Call, FakeRuntime, Op};
use berth_runtime::{ContainerSpec, Runtime};
use berth_wire::ecs::{
    ContainerInstance, RegisterContainerInstanceRequest, RegisterContainerInstanceResponse,
    TaskDefinition,
};
use tokio::sync::{oneshot, watch};

use crate::client::ClientError;
use crate::control::ControlPlane;
use crate::spec::{LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN};
use crate::{Agent, AgentConfig};

const ARN: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/fake";

/// What the fake control plane saw and holds.
#[derive(Default)]
struct Seen {
    registrations: Vec<RegisterContainerInstanceRequest>,
    polls: Vec<PollRequest>,
    /// Every report attempt, failed or not, in order.
    attempts: Vec<TaskReport>,
    /// The reports acknowledged, in order.
    acked: Vec<TaskReport>,
    /// This many next report attempts fail as if the server were unreachable.
    failing_reports: usize,
    /// This many next reports are applied but their answers lost (as a timeout would).
    lost_answers: usize,
    /// The report attempts answered stale (not newer than what was applied to the task).
    stale: Vec<TaskReport>,
    /// The one container instance the server knows (registrations get this ARN).
    instance: String,
}

/// A control plane in memory: long polls on the desired state the test sets, acknowledges
/// reports unless told to fail them, knows one instance ARN. As the server does, it stops
/// listing a task once a STOPPED report of it is acknowledged.
struct FakeControlPlane {
    seen: Mutex<Seen>,
    desired: watch::Sender<PollResponse>,
    /// Bumped after every call, for [`FakeControlPlane::wait_until`].
    progress: watch::Sender<u64>,
}

impl FakeControlPlane {
    fn new() -> Arc<Self> {
        let (desired, _) = watch::channel(PollResponse {
            instance_status: InstanceStatus::Active,
            ..Default::default()
        });
        let (progress, _) = watch::channel(0);
        let seen = Seen { instance: ARN.into(), ..Seen::default() };
        Arc::new(Self { seen: Mutex::new(seen), desired, progress })
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    /// The instance's desired state from now on (a new version, epoch 1).
    fn set_desired(&self, status: InstanceStatus, tasks: Vec<DesiredTask>) {
        self.desired.send_modify(|d| {
            d.version += 1;
            d.epoch = 1;
            d.instance_status = status;
            d.tasks = tasks;
        });
    }

    fn fail_reports(&self, n: usize) {
        self.seen().failing_reports = n;
    }

    fn lose_answers(&self, n: usize) {
        self.seen().lost_answers = n;
    }

    /// The server no longer knows the instance (an older database was restored): it knows
    /// no task, and the next registration without an ARN gets `next`.
    fn forget_instance(&self, next: &str) {
        self.seen().instance = next.into();
        self.desired.send_modify(|d| {
            d.version += 1;
            d.tasks.clear();
        });
        self.bump();
    }

    /// Waits (up to 10 min of tokio time) until `pred` holds.
    async fn wait_until(&self, what: &str, pred: impl Fn(&Seen) -> bool) {
        let wait = async {
            let mut rx = self.progress.subscribe();
            loop {
                if pred(&self.seen()) {
                    return;
                }
                rx.changed().await.expect("the fake lives");
            }
        };
        tokio::time::timeout(Duration::from_secs(600), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }
}

#[async_trait]
impl ControlPlane for FakeControlPlane {
    async fn register(
        &self,
        req: &RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, ClientError> {
        self.seen().registrations.push(req.clone());
        self.bump();
        let known = self.seen().instance.clone();
        if req.container_instance_arn.as_deref().is_some_and(|a| a != known) {
            return Err(ClientError::Aws {
                code: "ClientException".into(),
                message: "no such container instance".into(),
                status: 400,
            });
        }
        Ok(RegisterContainerInstanceResponse {
            container_instance: Some(ContainerInstance {
                container_instance_arn: Some(known),
                ..Default::default()
            }),
        })
    }

    async fn poll(&self, req: &PollRequest) -> Result<PollResponse, ClientError> {
        let mut rx = self.desired.subscribe();
        self.seen().polls.push(req.clone());
        self.bump();
        let hold = Duration::from_secs(u64::from(req.wait_seconds));
        let deadline = tokio::time::Instant::now() + hold;
        let unknown = || ClientError::Aws {
            code: berth_agent_protocol::errors::INSTANCE_UNKNOWN.into(),
            message: "not a container instance of this server".into(),
            status: 404,
        };
        loop {
            if self.seen().instance != req.container_instance_arn {
                return Err(unknown());
            }
            let current = rx.borrow_and_update().clone();
            if current.version > req.seen_version {
                return Ok(current);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Ok(current);
            }
        }
    }

    async fn report(&self, report: &TaskReport) -> Result<(), ClientError> {
        let result = {
            let mut seen = self.seen();
            seen.attempts.push(report.clone());
            if seen.failing_reports > 0 {
                seen.failing_reports -= 1;
                Err(ClientError::Transport {
                    endpoint: "fake".into(),
                    message: "connection refused".into(),
                })
            } else if last(&seen, report.change.task.as_deref().unwrap_or_default())
                .is_some_and(|r| (report.epoch, report.seq) <= (r.epoch, r.seq))
            {
                // As the server fences: not newer than what was applied to the task.
                seen.stale.push(report.clone());
                Err(ClientError::Aws {
                    code: berth_agent_protocol::errors::STALE_REPORT.into(),
                    message: "stale".into(),
                    status: 409,
                })
            } else {
                seen.acked.push(report.clone());
                if seen.lost_answers > 0 {
                    seen.lost_answers -= 1;
                    Err(ClientError::Transport {
                        endpoint: "fake".into(),
                        message: "no answer within 10s".into(),
                    })
                } else {
                    Ok(())
                }
            }
        };
        let applied = cp_applied(&self.seen(), report);
        if applied && status_of(report) == "STOPPED" {
            self.desired.send_if_modified(|d| {
                let before = d.tasks.len();
                d.tasks.retain(|t| Some(t.task_arn.as_str()) != report.change.task.as_deref());
                let changed = d.tasks.len() != before;
                if changed {
                    d.version += 1;
                }
                changed
            });
        }
        self.bump();
        result
    }
}

fn config(data_dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        server: "http://unused.invalid".into(),
        cluster: "default".into(),
        data_dir: data_dir.to_path_buf(),
        region: "us-east-1".into(),
        instance_type: "t3.micro".into(),
        availability_zone: "us-east-1a".into(),
        attributes: vec![],
        cpu: None,
        memory_mib: None,
        credentials: None,
        metadata_listen: Some("127.0.0.1:0".parse().unwrap()),
        host_access: Default::default(),
    }
}

fn task_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:000000000000:task/default/{id}")
}

/// Task `id` with one container `a` of image `img`, wanted `desired_status`.
fn desired(id: &str, desired_status: DesiredTaskStatus) -> DesiredTask {
    let td: TaskDefinition = serde_json::from_value(serde_json::json!({
        "family": "f", "revision": 1,
        "containerDefinitions": [{"name": "a", "image": "img", "memory": 16}]
    }))
    .unwrap();
    DesiredTask {
        task_arn: task_arn(id),
        desired_status,
        last_status: TaskStatus::Pending,
        task_definition: td,
        ..Default::default()
    }
}

fn status_of(r: &TaskReport) -> &str {
    r.change.status.as_deref().unwrap_or_default()
}

/// A registered agent running on the fakes until the returned sender is used (or dropped).
struct Running {
    stop: Option<oneshot::Sender<()>>,
    run: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: tempfile::TempDir,
}

impl Running {
    async fn start(rt: &Arc<FakeRuntime>, cp: &Arc<FakeControlPlane>) -> Running {
        let mut info = rt.info().await.unwrap();
        info.bridge_gateway = None; // the metadata endpoint on 127.0.0.1
        rt.set_info(info);
        let dir = tempfile::tempdir().unwrap();
        let agent = Agent::register_with(config(dir.path()), rt.clone(), cp.clone())
            .await
            .expect("registers");
        assert_eq!(agent.instance_arn(), ARN);
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(agent.run(async {
            let _ = stopped.await;
        }));
        Running { stop: Some(stop), run, dir }
    }

    async fn shutdown(mut self) {
        drop(self.stop.take());
        tokio::time::timeout(Duration::from_secs(60), &mut self.run)
            .await
            .expect("the agent stops")
            .unwrap()
            .unwrap();
    }
}

fn runtime() -> Arc<FakeRuntime> {
    let rt = Arc::new(FakeRuntime::new());
    rt.add_image("img");
    rt
}

/// Labels of a container the agent would have made for task `id` on instance `instance`.
fn labels(instance: Option<&str>, task: Option<&str>) -> ContainerSpec {
    let mut spec = ContainerSpec { image: "img".into(), ..ContainerSpec::default() };
    if let Some(i) = instance {
        spec.labels.insert(LABEL_INSTANCE.into(), i.into());
    }
    if let Some(t) = task {
        spec.labels.insert(LABEL_TASK_ARN.into(), task_arn(t));
        spec.labels.insert(LABEL_CONTAINER_NAME.into(), "a".into());
    }
    spec
}

#[tokio::test(start_paused = true)]
async fn desired_tasks_from_a_poll_are_started_by_their_actors() {
    let (rt, cp) = (runtime(), FakeControlPlane::new());
    let agent = Running::start(&rt, &cp).await;
    cp.set_desired(
        InstanceStatus::Active,
        vec![desired("t1", DesiredTaskStatus::Running), desired("t2", DesiredTaskStatus::Running)],
    );
    cp.wait_until("both tasks are reported RUNNING", |s| {
        ["t1", "t2"].iter().all(|t| last(s, t).is_some_and(|r| status_of(r) == "RUNNING"))
    })
    .await;
    let mut tasks: Vec<String> = rt
        .list(&[(LABEL_INSTANCE.to_string(), ARN.to_string())])
        .await
        .unwrap()
        .into_iter()
        .inspect(|c| assert!(c.state.is_running(), "{c:?}"))
        .map(|c| c.labels[LABEL_TASK_ARN].clone())
        .collect();
    tasks.sort();
    assert_eq!(tasks, vec![task_arn("t1"), task_arn("t2")], "one container per task");
    let polls = cp.seen().polls.clone();
    assert!(polls.iter().all(|p| p.container_instance_arn == ARN && p.cluster == "default"));
    assert!(polls.windows(2).all(|w| w[0].seen_version <= w[1].seen_version));
    // A desired-state change reaches the actor: t2 is stopped, t1 goes on.
    cp.set_desired(
        InstanceStatus::Active,
        vec![desired("t1", DesiredTaskStatus::Running), desired("t2", DesiredTaskStatus::Stopped)],
    );
    cp.wait_until("t2 is reported STOPPED", |s| {
        last(s, "t2").is_some_and(|r| status_of(r) == "STOPPED")
    })
    .await;
    assert_eq!(rt.container_ids().len(), 1);
    agent.shutdown().await;
    assert_eq!(rt.container_ids().len(), 1, "a stopping agent leaves its tasks running");
    assert!(rt.calls_of(Op::Events).len() == 1, "one event subscription");
}

/// The newest acknowledged report of task `id`.
fn cp_last(cp: &FakeControlPlane, id: &str) -> Option<TaskReport> {
    last(&cp.seen(), id).cloned()
}

/// The newest acknowledged report of task `id` (a task id or ARN) in `seen` (for
/// [`FakeControlPlane::wait_until`]).
fn last<'a>(seen: &'a Seen, id: &str) -> Option<&'a TaskReport> {
    let arn = if id.starts_with("arn:") { id.to_string() } else { task_arn(id) };
    seen.acked.iter().rev().find(|r| r.change.task.as_deref() == Some(arn.as_str()))
}

/// Whether `report` was applied (acknowledged or not).
fn cp_applied(seen: &Seen, report: &TaskReport) -> bool {
    seen.acked.last() == Some(report)
}

#[tokio::test(start_paused = true)]
async fn failed_reports_are_retried_until_acknowledged_and_none_is_lost() {
    let (rt, cp) = (runtime(), FakeControlPlane::new());
    let agent = Running::start(&rt, &cp).await;
    cp.fail_reports(6);
    cp.set_desired(
        InstanceStatus::Active,
        vec![desired("t1", DesiredTaskStatus::Running), desired("t2", DesiredTaskStatus::Running)],
    );
    cp.wait_until("both tasks are acknowledged RUNNING", |s| {
        ["t1", "t2"].iter().all(|t| last(s, t).is_some_and(|r| status_of(r) == "RUNNING"))
    })
    .await;
    {
        let seen = cp.seen();
        assert!(seen.attempts.len() >= seen.acked.len() + 6, "the failures were retried");
        for r in &seen.attempts {
            assert_eq!(r.epoch, 1, "stamped with the poll's epoch");
            assert_eq!(r.container_instance_arn, ARN);
        }
        // Per task, acknowledged reports only move forward (newer sequence numbers).
        for t in ["t1", "t2"] {
            let seqs: Vec<u64> = seen
                .acked
                .iter()
                .filter(|r| r.change.task.as_deref() == Some(task_arn(t).as_str()))
                .map(|r| r.seq)
                .collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{t}: {seqs:?}");
        }
    }
    // While the server keeps failing, the newest state waits; it is delivered once it answers.
    cp.fail_reports(usize::MAX);
    cp.set_desired(
        InstanceStatus::Active,
        vec![desired("t1", DesiredTaskStatus::Stopped), desired("t2", DesiredTaskStatus::Running)],
    );
    cp.wait_until("t1's STOPPED report was attempted", |s| {
        s.attempts.iter().any(|r| {
            r.change.task.as_deref() == Some(task_arn("t1").as_str()) && status_of(r) == "STOPPED"
        })
    })
    .await;
    let acked_before = cp.seen().acked.len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(cp.seen().acked.len(), acked_before, "nothing acknowledged while failing");
    cp.fail_reports(0);
    cp.wait_until("t1 is acknowledged STOPPED", |s| {
        last(s, "t1").is_some_and(|r| status_of(r) == "STOPPED")
    })
    .await;
    let stopped = cp_last(&cp, "t1").unwrap();
    assert_eq!(stopped.change.containers.as_ref().unwrap()[0].status.as_deref(), Some("STOPPED"));
    assert!(rt.container_ids().len() == 1, "t1's container is removed, t2's runs");
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn orphans_are_removed_and_other_containers_left_alone() {
    let (rt, cp) = (runtime(), FakeControlPlane::new());
    let mut made = Vec::new();
    for (name, spec) in [
        ("orphan", labels(Some(ARN), Some("gone"))),
        ("adopted", labels(Some(ARN), Some("t1"))),
        ("other-instance", labels(Some("arn:other"), Some("gone"))),
        ("no-task-label", labels(Some(ARN), None)),
        ("not-berth", labels(None, None)),
    ] {
        let id = rt.create(&ContainerSpec { name: name.into(), ..spec }).await.unwrap();
        rt.start(&id).await.unwrap();
        made.push((name, id));
    }
    let id = |n: &str| made.iter().find(|(m, _)| *m == n).unwrap().1.clone();
    rt.clear_calls();
    let agent = Running::start(&rt, &cp).await;
    cp.set_desired(InstanceStatus::Active, vec![desired("t1", DesiredTaskStatus::Running)]);
    // The loop removes orphans after acting on an answer, before it polls again.
    cp.wait_until("the answer was acted on", |s| s.polls.len() >= 2).await;
    cp.wait_until("t1 is reported RUNNING", |s| {
        last(s, "t1").is_some_and(|r| status_of(r) == "RUNNING")
    })
    .await;
    let mut left = rt.container_ids();
    left.sort();
    let mut expected =
        vec![id("adopted"), id("other-instance"), id("no-task-label"), id("not-berth")];
    expected.sort();
    assert_eq!(left, expected, "only the orphan is gone");
    assert!(
        rt.calls().contains(&Call::Stop { id: id("orphan"), timeout: Duration::from_secs(10) })
    );
    assert!(rt.calls_of(Op::Create).is_empty(), "t1's container is adopted, not created again");
    let r = cp_last(&cp, "t1").unwrap();
    assert_eq!(r.change.containers.unwrap()[0].runtime_id, Some(id("adopted")));
    for (_, i) in &made {
        if *i != id("orphan") {
            assert!(!rt.calls().contains(&Call::Remove(i.clone())), "{i} left alone");
        }
    }
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_inactive_instance_stops_its_tasks_and_the_agent_ends() {
    let (rt, cp) = (runtime(), FakeControlPlane::new());
    let agent = Running::start(&rt, &cp).await;
    cp.set_desired(InstanceStatus::Active, vec![desired("t1", DesiredTaskStatus::Running)]);
    cp.wait_until("t1 is reported RUNNING", |s| {
        last(s, "t1").is_some_and(|r| status_of(r) == "RUNNING")
    })
    .await;
    // Deregistered: the server still lists the task as wanted RUNNING.
    cp.set_desired(InstanceStatus::Inactive, vec![desired("t1", DesiredTaskStatus::Running)]);
    let ended = tokio::time::timeout(Duration::from_secs(600), agent.run)
        .await
        .expect("the agent ends by itself")
        .unwrap();
    ended.unwrap();
    let stopped = cp_last(&cp, "t1").expect("reported");
    assert_eq!(status_of(&stopped), "STOPPED");
    assert!(rt.container_ids().is_empty(), "the task's container is removed");
}

#[tokio::test(start_paused = true)]
async fn an_instance_of_another_region_registers_as_a_new_one() {
    let (rt, cp) = (runtime(), FakeControlPlane::new());
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = "arn:aws:ecs:eu-west-1:000000000000:container-instance/default/old";
    crate::state::save(
        dir.path(),
        &crate::state::AgentState {
            cluster: "default".into(),
            ec2_instance_id: "i-0123456789abcdef0".into(),
            container_instance_arn: Some(elsewhere.into()),
        },
    )
    .unwrap();
    // Configured for us-east-1: the eu-west-1 instance is not re-registered there.
    let agent = Agent::register_with(config(dir.path()), rt.clone(), cp.clone()).await.unwrap();
    assert_eq!(agent.instance_arn(), ARN);
    let regs = cp.seen().registrations.clone();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].container_instance_arn, None);
    let doc: serde_json::Value =
        serde_json::from_str(regs[0].instance_identity_document.as_deref().unwrap()).unwrap();
    assert_eq!(doc["region"], "us-east-1");
}

#[test]
fn arns_of_other_regions() {
    let cases = [
        ("arn:aws:ecs:eu-west-1:1:container-instance/c/i", "us-east-1", true),
        ("arn:aws:ecs:us-east-1:1:container-instance/c/i", "us-east-1", false),
        ("arn:aws-cn:ecs:cn-north-1:1:container-instance/c/i", "cn-north-1", false),
        ("arn:forgotten", "us-east-1", false),
        ("", "us-east-1", false),
    ];
    for (arn, region, want) in cases {
        assert_eq!(crate::in_another_region(arn, region), want, "{arn} in {region}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_instance_the_server_forgot_registers_as_a_new_one() {
    let (rt, cp) = (runtime(), FakeControlPlane::new());
    let dir = tempfile::tempdir().unwrap();
    crate::state::save(
        dir.path(),
        &crate::state::AgentState {
            cluster: "default".into(),
            ec2_instance_id: "i-0123456789abcdef0".into(),
            container_instance_arn: Some("arn:forgotten".into()),
        },
    )
    .unwrap();
    let agent = Agent::register_with(config(dir.path()), rt.clone(), cp.clone()).await.unwrap();
    assert_eq!(agent.instance_arn(), ARN);
    let regs = cp.seen().registrations.clone();
    assert_eq!(regs.len(), 2);
    assert_eq!(regs[0].container_instance_arn.as_deref(), Some("arn:forgotten"));
    assert_eq!(regs[1].container_instance_arn, None);
    let st = crate::state::load(dir.path()).unwrap().unwrap();
    assert_eq!(st.container_instance_arn.as_deref(), Some(ARN));
    assert_eq!(st.ec2_instance_id, "i-0123456789abcdef0", "the same host identity");
}

#[tokio::test(start_paused = true)]
async fn an_instance_the_server_does_not_know_registers_again_and_keeps_its_containers() {
    let (rt, cp) = (runtime(), FakeControlPlane::new());
    let agent = Running::start(&rt, &cp).await;
    cp.set_desired(InstanceStatus::Active, vec![desired("t1", DesiredTaskStatus::Running)]);
    cp.wait_until("t1 is reported RUNNING", |s| {
        last(s, "t1").is_some_and(|r| status_of(r) == "RUNNING")
    })
    .await;
    let t1_container = rt.container_ids();
    assert_eq!(t1_container.len(), 1);
    rt.clear_calls();
    // The server forgets the instance (an older database restored, or another server).
    const NEW: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/new";
    cp.forget_instance(NEW);
    cp.wait_until("the new instance's answer was acted on", |s| {
        s.polls.iter().filter(|p| p.container_instance_arn == NEW).count() >= 2
    })
    .await;
    {
        let seen = cp.seen();
        assert_eq!(seen.registrations.len(), 2);
        let again = &seen.registrations[1];
        assert_eq!(again.container_instance_arn, None, "registered as a new instance");
        assert_eq!(
            again.instance_identity_document, seen.registrations[0].instance_identity_document,
            "the same host identity"
        );
    }
    assert!(rt.calls_of(Op::Stop).is_empty(), "nothing stopped: {:?}", rt.calls());
    assert!(rt.calls_of(Op::Remove).is_empty(), "nothing removed: {:?}", rt.calls());
    assert_eq!(rt.container_ids(), t1_container, "t1's container runs on");
    let st = crate::state::load(agent.dir.path()).unwrap().unwrap();
    assert_eq!(st.container_instance_arn.as_deref(), Some(NEW));
    // The new instance runs what it is given, labelled as its own.
    cp.set_desired(InstanceStatus::Active, vec![desired("t2", DesiredTaskStatus::Running)]);
    cp.wait_until("t2 is reported RUNNING", |s| {
        last(s, "t2").is_some_and(|r| status_of(r) == "RUNNING")
    })
    .await;
    assert_eq!(cp_last(&cp, "t2").unwrap().container_instance_arn, NEW);
    let mine = rt.list(&[(LABEL_INSTANCE.to_string(), NEW.to_string())]).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert!(rt.calls_of(Op::Stop).is_empty() && rt.calls_of(Op::Remove).is_empty());
    agent.shutdown().await;
    assert_eq!(rt.container_ids().len(), 2, "both tasks' containers stay");
}

#[tokio::test(start_paused = true)]
async fn a_stale_report_is_dropped_and_the_agent_polls_again() {
    let (rt, cp) = (runtime(), FakeControlPlane::new());
    let agent = Running::start(&rt, &cp).await;
    // The first report is applied but its answer lost: its retry is stale.
    cp.lose_answers(1);
    cp.set_desired(InstanceStatus::Active, vec![desired("t1", DesiredTaskStatus::Running)]);
    cp.wait_until("t1 is acknowledged RUNNING", |s| {
        last(s, "t1").is_some_and(|r| status_of(r) == "RUNNING")
    })
    .await;
    cp.wait_until("a retry was answered stale", |s| !s.stale.is_empty()).await;
    cp.wait_until("the agent polled again from scratch", |s| {
        s.polls.iter().filter(|p| p.seen_version == 0).count() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    {
        let seen = cp.seen();
        assert_eq!(seen.stale.len(), 1, "{:?}", seen.stale);
        let stale = &seen.stale[0];
        let tries = seen.attempts.iter().filter(|r| r.seq == stale.seq).count();
        assert_eq!(tries, 2, "sent, retried once (stale), then dropped");
    }
    agent.shutdown().await;
}
