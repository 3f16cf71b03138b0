//! The awsvpc path of the task actor on the fake runtime and the recording firewall: set-up
//! order, firewall updates, teardown in reverse, and a clashing subnet.

use std::sync::Arc;
use std::time::Duration;

use berth_agent_protocol::{DesiredTask, TaskReport};
use berth_firewall::RecordingFirewall;
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_model::network::{IpProtocol, ResolvedRule, SecurityGroupRules, TaskNetwork};
use berth_runtime::fake::{Call, FakeRuntime};
use berth_runtime::{NetworkMode, NetworkSpec, Runtime};
use berth_wire::ecs::{TaskDefinition, TaskStopCode};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::events::Router;
use crate::task::{TaskActor, TaskContext};

const INSTANCE: &str = "arn:aws:ecs:us-east-1:1:container-instance/c/inst1";

fn group(port: i32) -> SecurityGroupRules {
    SecurityGroupRules {
        group_id: "sg-a".into(),
        ingress: vec![ResolvedRule {
            protocol: IpProtocol::Tcp,
            from_port: Some(port),
            to_port: Some(port),
            peers: vec!["0.0.0.0/0".parse().unwrap()],
        }],
        egress: vec![],
    }
}

struct Run {
    fake: Arc<FakeRuntime>,
    fw: RecordingFirewall,
    networking: Networking,
    desired: watch::Sender<DesiredTask>,
    reports: mpsc::UnboundedReceiver<TaskReport>,
    actor: tokio::task::JoinHandle<()>,
}

fn start(fake: Arc<FakeRuntime>) -> Run {
    start_with_pool(fake, 0)
}

fn start_with_pool(fake: Arc<FakeRuntime>, pool: usize) -> Run {
    fake.add_image("img");
    let fw = RecordingFirewall::new();
    let networking = Networking::new(Arc::new(fw.clone())).with_pool(pool);
    networking.set_groups(&[group(8080)]);
    let td: TaskDefinition = serde_json::from_value(serde_json::json!({
        "family": "web", "revision": 1, "networkMode": "awsvpc", "cpu": "256", "memory": "512",
        "containerDefinitions": [
            {"name": "app", "image": "img", "portMappings": [{"containerPort": 8080}]},
            {"name": "side", "image": "img", "essential": false}
        ]
    }))
    .unwrap();
    let (tx, reports) = mpsc::unbounded_channel();
    let ctx = TaskContext {
        runtime: fake.clone(),
        cluster: "c".into(),
        instance_arn: INSTANCE.into(),
        reports: tx,
        metadata_base: Some("http://172.17.0.1:51679/v4".into()),
        metadata: None,
        availability_zone: "az".into(),
        events: Router::new(),
        network: networking.clone(),
        pull_auth: Default::default(),
        logs: None,
    };
    let (desired, rx) = watch::channel(DesiredTask {
        task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
        desired_status: DesiredTaskStatus::Running,
        last_status: TaskStatus::Pending,
        task_definition: td,
        launch_type: Some(berth_wire::ecs::LaunchType::Fargate),
        network: Some(TaskNetwork {
            eni_id: "eni-1".into(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            subnet_cidr: "10.213.7.0/24".into(),
            gateway: "10.213.7.1".parse().unwrap(),
            private_ip: "10.213.7.10".parse().unwrap(),
            mac_address: "0e:00:00:00:00:01".into(),
            private_dns_name: "ip-10-213-7-10.ec2.internal".into(),
            security_groups: vec!["sg-a".into()],
            assign_public_ip: false,
        }),
        dns_servers: vec!["10.213.7.2".into()],
        ..Default::default()
    });
    let actor = tokio::spawn(TaskActor::new(ctx, rx).run());
    Run { fake, fw, networking, desired, reports, actor }
}

async fn until(reports: &mut mpsc::UnboundedReceiver<TaskReport>, status: &str) -> TaskReport {
    loop {
        let r = tokio::time::timeout(Duration::from_secs(60), reports.recv())
            .await
            .expect("a report in time")
            .expect("reports");
        if r.change.status.as_deref() == Some(status) {
            return r;
        }
    }
}

fn position(calls: &[Call], f: impl Fn(&Call) -> bool) -> usize {
    calls.iter().position(f).unwrap_or_else(|| panic!("no such call in {calls:#?}"))
}

#[tokio::test(start_paused = true)]
async fn an_awsvpc_task_gets_cgroup_bridge_pause_firewall_then_containers_and_loses_them_in_reverse()
 {
    let mut run = start(Arc::new(FakeRuntime::new()));
    until(&mut run.reports, "RUNNING").await;
    let calls = run.fake.calls();
    let cgroup = position(&calls, |c| matches!(c, Call::CreateCgroup(_)));
    let bridge = position(&calls, |c| matches!(c, Call::CreateNetwork(_)));
    let pause =
        position(&calls, |c| matches!(c, Call::Create(s) if s.labels.contains_key(LABEL_PAUSE)));
    let first =
        position(&calls, |c| matches!(c, Call::Create(s) if !s.labels.contains_key(LABEL_PAUSE)));
    assert!(cgroup < bridge && bridge < pause && cgroup < first, "{calls:#?}");
    // The bridge is new: the VPC links were applied before the pause container was made.
    assert!(!run.fw.vpc_links().is_empty());

    // The cgroup holds the task's size; the bridge the subnet; the pause the ENI's address.
    let Call::CreateCgroup(cg) = &calls[cgroup] else { unreachable!() };
    assert_eq!(cg.name, "berth/inst1/t1");
    assert_eq!(cg.memory_limit_bytes, Some(512 << 20));
    assert_eq!(cg.cpu_millis, Some(250));
    let Call::CreateNetwork(n) = &calls[bridge] else { unreachable!() };
    assert_eq!((n.name.as_str(), n.subnet.as_str()), ("berth-subnet-subnet-1", "10.213.7.0/24"));
    assert_eq!(n.gateway.as_deref(), Some("10.213.7.1"));
    let Call::Create(p) = &calls[pause] else { unreachable!() };
    assert_eq!(p.ipv4_address.as_deref(), Some("10.213.7.10"));
    assert_eq!(p.mac_address.as_deref(), Some("0e:00:00:00:00:01"));
    assert_eq!(p.hostname.as_deref(), Some("ip-10-213-7-10.ec2.internal"));
    assert_eq!(p.network_mode, NetworkMode::Named("berth-subnet-subnet-1".into()));
    assert_eq!(p.dns_servers, ["10.213.7.2"]);
    let Call::CreateNetwork(n) = &calls[bridge] else { unreachable!() };
    assert_eq!(n.labels.get(LABEL_VPC).map(String::as_str), Some("vpc-1"));
    let pause_id = run
        .fake
        .container_ids()
        .into_iter()
        .find(|id| run.fake.spec(id).is_some_and(|s| s.labels.contains_key(LABEL_PAUSE)));
    let pause_id = pause_id.expect("pause container");
    // Every container joins the pause container's namespace (by its name: it may be created
    // before the pause container is) and the task cgroup, publishing nothing on the host.
    for c in calls.iter().filter_map(|c| match c {
        Call::Create(s) if !s.labels.contains_key(LABEL_PAUSE) => Some(s),
        _ => None,
    }) {
        assert_eq!(c.network_mode, NetworkMode::Container(pause_name(Some("web"), "t1")));
        assert_eq!(c.cgroup_parent.as_deref(), Some("berth/inst1/t1"));
        assert!(c.ports.is_empty() && c.extra_hosts.is_empty() && !c.host_gateway);
    }
    // The firewall went into the pause container's namespace before the first container.
    let pid = run.fake.inspect(&pause_id).await.unwrap().unwrap().pid.unwrap();
    let applied = run.fw.applied();
    assert_eq!(applied.len(), 1, "applied once at start-up");
    assert_eq!(applied[0].0, pid);
    let rules = applied[0].1.rules();
    assert!(rules.contains(&"-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT"), "{rules:?}");
    assert!(
        rules.contains(&"-A OUTPUT -d 172.17.0.1/32 -p tcp -m tcp --dport 51679 -j ACCEPT"),
        "the metadata endpoint stays reachable: {rules:?}"
    );
    assert!(
        rules.contains(&"-A OUTPUT -d 169.254.170.2/32 -p tcp -m tcp --dport 51679 -j ACCEPT"),
        "task role credentials stay reachable: {rules:?}"
    );

    // Unchanged rules re-sent change nothing; a changed rule is applied at once.
    run.networking.set_groups(&[group(8080)]);
    run.networking.set_groups(&[group(9090)]);
    let t0 = tokio::time::Instant::now();
    while run.fw.applied().len() < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    let applied = run.fw.applied();
    assert_eq!(applied.len(), 2);
    assert!(applied[1].1.rules().contains(&"-A INPUT -p tcp -m tcp --dport 9090 -j ACCEPT"));

    // Stop: containers, then pause and cgroup go; the bridge after BRIDGE_LINGER.
    run.fake.clear_calls();
    let stopped = tokio::time::Instant::now();
    let pause = pause_name(Some("web"), "t1");
    run.desired.send_modify(|d| d.desired_status = DesiredTaskStatus::Stopped);
    until(&mut run.reports, "STOPPED").await;
    tokio::time::timeout(Duration::from_secs(60), run.actor).await.unwrap().unwrap();
    let calls = run.fake.calls();
    let last_container = calls
        .iter()
        .rposition(|c| matches!(c, Call::Remove(id) if *id != pause_id && *id != pause))
        .expect("containers removed");
    let pause_gone =
        position(&calls, |c| matches!(c, Call::Remove(id) if *id == pause_id || *id == pause));
    let cgroup_gone = position(&calls, |c| matches!(c, Call::RemoveCgroup(_)));
    assert!(last_container < pause_gone && pause_gone < cgroup_gone);
    assert!(run.fake.container_ids().is_empty());
    assert!(run.fake.cgroups().is_empty());
    assert_eq!(run.fake.networks().len(), 2, "the subnet's bridge lingers");
    while run.fake.networks().len() > 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped.elapsed() >= BRIDGE_LINGER, "{:?}", stopped.elapsed());
    assert!(!run.fake.calls().iter().any(|c| matches!(c, Call::CreateNetwork(_))));
}

#[tokio::test(start_paused = true)]
async fn a_subnet_that_overlaps_a_docker_network_fails_the_task_naming_both() {
    let fake = Arc::new(FakeRuntime::new());
    fake.create_network(&NetworkSpec {
        name: "someone-elses".into(),
        subnet: "10.213.0.0/16".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut run = start(fake);
    let r = until(&mut run.reports, "STOPPED").await;
    assert_eq!(r.stop_code, Some(TaskStopCode::TaskFailedToStart));
    let reason = r.change.reason.unwrap();
    assert!(
        reason.contains("subnet-1")
            && reason.contains("someone-elses")
            && reason.contains("10.213.0.0/16"),
        "{reason}"
    );
    assert!(
        !run.fake
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Create(s) if s.labels.contains_key(LABEL_PAUSE))),
        "no pause container was made"
    );
    assert!(run.fake.container_ids().is_empty(), "the task's container is removed again");
    assert!(run.fake.cgroups().is_empty(), "the cgroup made first is removed again");
    assert!(run.fw.applied().is_empty());
}

/// The ids of the fake's containers that carry `label`.
fn labelled(fake: &FakeRuntime, label: &str) -> Vec<String> {
    fake.container_ids()
        .into_iter()
        .filter(|id| fake.spec(id).is_some_and(|s| s.labels.contains_key(label)))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_warm_pause_container_gets_the_rules_then_the_task_address_and_the_pool_refills() {
    let mut run = start_with_pool(Arc::new(FakeRuntime::new()), 2);
    until(&mut run.reports, "RUNNING").await;
    let calls = run.fake.calls();
    // The pool's container: on `none`, no cgroup, labelled for the pool and the instance.
    let made =
        position(&calls, |c| matches!(c, Call::Create(s) if s.labels.contains_key(LABEL_POOL)));
    let Call::Create(p) = &calls[made] else { unreachable!() };
    assert_eq!(p.network_mode, NetworkMode::None);
    assert!(p.name.starts_with(&pool_name_prefix(INSTANCE)), "{}", p.name);
    assert_eq!(p.labels.get(crate::spec::LABEL_INSTANCE).map(String::as_str), Some(INSTANCE));
    assert!(p.cgroup_parent.is_none() && p.ipv4_address.is_none());
    // Made with the task's resolvers (Docker keeps them when it moves onto the bridge).
    assert_eq!(p.dns_servers, ["10.213.7.2"]);
    assert_eq!(p.labels.get(LABEL_POOL_DNS).map(String::as_str), Some("10.213.7.2"));
    // Handed out: named for the task, then moved onto the subnet with the ENI's address and
    // MAC; the task's first container starts only after that.
    let renamed = position(&calls, |c| matches!(c, Call::Rename { .. }));
    let moved = position(&calls, |c| matches!(c, Call::MoveToNetwork { .. }));
    let bridge = position(&calls, |c| matches!(c, Call::CreateNetwork(_)));
    let Call::Rename { id: pause_id, name } = &calls[renamed] else { unreachable!() };
    assert_eq!(name, &pause_name(Some("web"), "t1"));
    let Call::MoveToNetwork { id, to } = &calls[moved] else { unreachable!() };
    assert_eq!(id, pause_id);
    assert_eq!(to.name, "berth-subnet-subnet-1");
    assert_eq!(to.ip_address.as_deref(), Some("10.213.7.10"));
    assert_eq!(to.mac_address.as_deref(), Some("0e:00:00:00:00:01"));
    let app_start = position(
        &calls,
        |c| matches!(c, Call::Start(id) if id != pause_id && run.fake.spec(id).is_some_and(|s| !s.labels.contains_key(LABEL_POOL))),
    );
    assert!(renamed < moved && bridge < moved && moved < app_start, "{calls:#?}");
    // Its rules went in once, into its namespace.
    let pid = run.fake.inspect(pause_id).await.unwrap().unwrap().pid.unwrap();
    let applied = run.fw.applied();
    assert_eq!(applied.len(), 1, "applied once");
    assert_eq!(applied[0].0, pid);
    // Every container of the task joins it and the task cgroup.
    for c in calls.iter().filter_map(|c| match c {
        Call::Create(s) if !s.labels.contains_key(LABEL_PAUSE) => Some(s),
        _ => None,
    }) {
        assert_eq!(c.network_mode, NetworkMode::Container(pause_id.clone()));
        assert_eq!(c.cgroup_parent.as_deref(), Some("berth/inst1/t1"));
    }
    // The pool refills to its size in the background.
    while run.networking.pool.idle() < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(labelled(&run.fake, LABEL_POOL).len(), 3, "two idle and the task's");
    for id in labelled(&run.fake, LABEL_POOL) {
        assert_eq!(run.fake.spec(&id).unwrap().dns_servers, ["10.213.7.2"], "replenished alike");
    }

    // A rule change reaches the running task.
    run.networking.set_groups(&[group(9090)]);
    while run.fw.applied().len() < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // Stop: the task's pause container goes, then its bridge and cgroup; the idle ones stay
    // until the agent shuts down.
    run.desired.send_modify(|d| d.desired_status = DesiredTaskStatus::Stopped);
    until(&mut run.reports, "STOPPED").await;
    tokio::time::timeout(Duration::from_secs(60), run.actor).await.unwrap().unwrap();
    assert!(run.fake.inspect(pause_id).await.unwrap().is_none());
    assert!(run.fake.cgroups().is_empty());
    assert_eq!(labelled(&run.fake, LABEL_POOL).len(), 2);
    // No task holds one for POOL_LINGER: the idle ones go too.
    let t0 = tokio::time::Instant::now();
    while !run.fake.container_ids().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t0.elapsed() >= POOL_LINGER - Duration::from_secs(1), "{:?}", t0.elapsed());
    while run.fake.networks().len() > 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.networking.shutdown(run.fake.as_ref(), INSTANCE).await;
}

#[tokio::test(start_paused = true)]
async fn cleanup_adopts_idle_warm_containers_and_removes_stale_ones() {
    let fake = Arc::new(FakeRuntime::new());
    let image = fake.pause_image().await.unwrap();
    let make = |name: String, running: bool| {
        let fake = fake.clone();
        let image = image.clone();
        async move {
            let spec = berth_runtime::ContainerSpec {
                name,
                image,
                labels: [
                    (crate::spec::LABEL_INSTANCE.to_string(), INSTANCE.to_string()),
                    (LABEL_PAUSE.to_string(), "1".to_string()),
                    (LABEL_POOL.to_string(), "1".to_string()),
                ]
                .into(),
                network_mode: NetworkMode::None,
                ..Default::default()
            };
            let id = fake.create(&spec).await.unwrap();
            if running {
                fake.start(&id).await.unwrap();
            }
            id
        }
    };
    let prefix = pool_name_prefix(INSTANCE);
    let idle = make(format!("{prefix}a"), true).await;
    let surplus = [make(format!("{prefix}b"), true).await, make(format!("{prefix}c"), true).await];
    let dead = make(format!("{prefix}d"), false).await;
    let live = make(pause_name(Some("web"), "t1"), true).await;
    let orphan = make(pause_name(Some("web"), "gone"), true).await;
    let networking = Networking::new(Arc::new(RecordingFirewall::new())).with_pool(2);
    cleanup(fake.as_ref(), &networking, INSTANCE, &["t1".to_string()]).await;
    let left = fake.container_ids();
    assert_eq!(networking.pool.idle(), 2, "adopted up to the size");
    assert!(left.contains(&idle) && left.contains(&live), "{left:?}");
    assert!(!left.contains(&dead) && !left.contains(&orphan), "{left:?}");
    assert_eq!(surplus.iter().filter(|s| left.contains(s)).count(), 1, "one surplus removed");
    // Level-triggered: a second pass changes nothing.
    cleanup(fake.as_ref(), &networking, INSTANCE, &["t1".to_string()]).await;
    assert_eq!(fake.container_ids().len(), left.len());
    assert_eq!(networking.pool.idle(), 2);
}
