//! The agent runs awsvpc tasks on the real Docker Engine with the host's iptables: each task
//! gets its own address on its subnet's bridge (all its containers share it), its security
//! groups are enforced in its namespace and follow a changed poll within a second, the task
//! metadata endpoint answers from inside the task with the awsvpc network, a task exceeding
//! its task-level memory is OOM-killed and reported as ECS reports it, and stopping the tasks
//! removes pause containers, the bridge and the task cgroups. Tasks in two subnets of one VPC
//! reach each other (their own addresses, under their security groups) and a task in another
//! VPC reaches neither; the host's links between the bridges go with the bridges.
//!
//! A scripted control plane stands in for the server (the server's placement of awsvpc tasks
//! is built separately). Everything is labelled with this run's instance ARN and removed by
//! it when the guard drops, also when the test fails.
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_agent::client::ClientError;
use berth_agent::control::ControlPlane;
use berth_agent::{Agent, AgentConfig};
use berth_agent_protocol::{DesiredTask, PollRequest, PollResponse, TaskReport};
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_model::network::{IpProtocol, ResolvedRule, SecurityGroupRules, TaskNetwork};
use berth_runtime::Runtime;
use berth_runtime_docker::{DEMO_IMAGE, DockerRuntime, demo};
use berth_wire::ecs::{
    ContainerInstance, RegisterContainerInstanceRequest, RegisterContainerInstanceResponse,
};
use tokio::sync::watch;

/// The server's side of the channel, scripted.
struct Script {
    arn: String,
    desired: watch::Sender<PollResponse>,
    reports: Mutex<Vec<TaskReport>>,
}

#[async_trait]
impl ControlPlane for Script {
    async fn register(
        &self,
        _: &RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, ClientError> {
        Ok(RegisterContainerInstanceResponse {
            container_instance: Some(ContainerInstance {
                container_instance_arn: Some(self.arn.clone()),
                ..Default::default()
            }),
        })
    }

    async fn poll(&self, req: &PollRequest) -> Result<PollResponse, ClientError> {
        let mut rx = self.desired.subscribe();
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(u64::from(req.wait_seconds));
        loop {
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
        self.reports.lock().unwrap().push(report.clone());
        if report.change.status.as_deref() == Some("STOPPED") {
            let task = report.change.task.clone();
            self.desired.send_modify(|d| {
                d.tasks.retain(|t| Some(&t.task_arn) != task.as_ref());
                d.version += 1;
            });
        }
        Ok(())
    }
}

impl Script {
    fn set(&self, f: impl FnOnce(&mut PollResponse)) {
        self.desired.send_modify(|d| {
            f(d);
            d.version += 1;
        });
    }

    fn last(&self, task: &str) -> Option<TaskReport> {
        let r = self.reports.lock().unwrap();
        r.iter().rev().find(|r| r.change.task.as_deref() == Some(task)).cloned()
    }

    async fn wait_status(&self, task: &str, status: &str) -> TaskReport {
        let t0 = Instant::now();
        loop {
            if let Some(r) = self.last(task)
                && r.change.status.as_deref() == Some(status)
            {
                return r;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "{task} never {status}: {:?}",
                self.last(task)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Removes the run's containers, networks and cgroups on drop.
struct Cleanup {
    instance: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let instance = self.instance.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
                async move {
                    let rt = DockerRuntime::connect().unwrap();
                    let labels =
                        [(berth_agent::spec::LABEL_INSTANCE.to_string(), instance.clone())];
                    for c in rt.list(&labels).await.unwrap_or_default() {
                        let _ = rt.remove(&c.id).await;
                    }
                    for n in rt.list_networks(&labels).await.unwrap_or_default() {
                        let _ = rt.remove_network(&n.name).await;
                    }
                    let id = instance.rsplit('/').next().unwrap_or_default();
                    for g in rt.list_cgroups(&format!("berth/{id}/")).await.unwrap_or_default() {
                        let _ = rt.remove_cgroup(&g).await;
                    }
                    let _ = rt.remove_cgroup(&format!("berth/{id}")).await;
                },
            )
        })
        .join();
    }
}

fn demo_image() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().join("demo-static");
    let binary = demo::build_static_binary(&root, &target).expect("static hello");
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
            async move {
                let rt = DockerRuntime::connect().unwrap();
                rt.ensure_demo_image(&binary, DEMO_IMAGE).await.expect("demo image");
            },
        )
    })
    .join()
    .unwrap();
}

fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn rule(protocol: IpProtocol, port: Option<i32>, peer: &str) -> ResolvedRule {
    ResolvedRule { protocol, from_port: port, to_port: port, peers: vec![peer.parse().unwrap()] }
}

fn sg(id: &str, ingress: Vec<ResolvedRule>) -> SecurityGroupRules {
    SecurityGroupRules {
        group_id: id.into(),
        ingress,
        egress: vec![rule(IpProtocol::All, None, "0.0.0.0/0")],
    }
}

fn awsvpc_task(
    arn: &str,
    containers: serde_json::Value,
    memory: &str,
    subnet: (&str, Ipv4Addr),
    host: u8,
    group: &str,
) -> DesiredTask {
    let base = u32::from(subnet.1);
    let private_ip = Ipv4Addr::from(base + u32::from(host));
    DesiredTask {
        task_arn: arn.into(),
        desired_status: DesiredTaskStatus::Running,
        last_status: TaskStatus::Pending,
        task_definition: serde_json::from_value(serde_json::json!({
            "family": "awsvpc-test", "revision": 1, "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": memory,
            "containerDefinitions": containers,
        }))
        .unwrap(),
        launch_type: Some(berth_wire::ecs::LaunchType::Fargate),
        network: Some(TaskNetwork {
            eni_id: format!("eni-{host:017x}"),
            subnet_id: format!("subnet-{:017x}", base),
            vpc_id: "vpc-awsvpc-test".into(),
            subnet_cidr: subnet.0.into(),
            gateway: Ipv4Addr::from(base + 1),
            private_ip,
            mac_address: format!("0e:00:00:00:00:{host:02x}"),
            private_dns_name: format!(
                "ip-{}.ec2.internal",
                private_ip.to_string().replace('.', "-")
            ),
            security_groups: vec![group.into()],
            assign_public_ip: false,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awsvpc_tasks_get_their_own_address_security_groups_and_task_limits() {
    let fw = berth_firewall::Iptables::new();
    fw.available().await.expect("nsenter and iptables-restore");
    demo_image();
    let run = format!(
        "{}-{:x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
    );
    let instance = format!("arn:aws:ecs:us-east-1:000000000000:container-instance/awsvpc/{run}");
    let _cleanup = Cleanup { instance: instance.clone() };
    let x = (std::process::id() % 200 + 30) as u8;
    let cidr = format!("10.213.{x}.0/24");
    let subnet = (cidr.as_str(), Ipv4Addr::new(10, 213, x, 0));
    let (a_ip, b_ip) = (Ipv4Addr::new(10, 213, x, 10), Ipv4Addr::new(10, 213, x, 11));
    let arn = |id: &str| format!("arn:aws:ecs:us-east-1:000000000000:task/awsvpc/{id}{run}");
    let (a, b, c) = (arn("a"), arn("b"), arn("c"));
    let web = |name: &str, listen: &str| serde_json::json!({"name": name, "image": DEMO_IMAGE, "command": ["-listen", listen], "portMappings": [{"containerPort": 8080}]});
    let script = Arc::new(Script {
        arn: instance.clone(),
        desired: watch::channel(PollResponse::default()).0,
        reports: Mutex::new(vec![]),
    });
    // A: two containers, admits 8081 from anywhere; B admits 8080 from anywhere.
    script.set(|d| {
        d.epoch = 1;
        d.tasks = vec![
            awsvpc_task(
                &a,
                serde_json::json!([web("web", ":8080"), web("side", ":8081")]),
                "256",
                subnet,
                10,
                "sg-a",
            ),
            awsvpc_task(&b, serde_json::json!([web("web", ":8080")]), "256", subnet, 11, "sg-b"),
        ];
        d.security_groups = vec![
            sg("sg-a", vec![rule(IpProtocol::Tcp, Some(8081), "0.0.0.0/0")]),
            sg("sg-b", vec![rule(IpProtocol::Tcp, Some(8080), "0.0.0.0/0")]),
        ];
    });
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        server: "http://unused.invalid".into(),
        cluster: "awsvpc".into(),
        data_dir: dir.path().to_path_buf(),
        region: "us-east-1".into(),
        instance_type: "t3.micro".into(),
        availability_zone: "us-east-1a".into(),
        attributes: vec![],
        cpu: None,
        memory_mib: None,
        credentials: None,
        // Where awsvpc tasks reach the host: Docker's bridge address, any port.
        metadata_listen: Some("172.17.0.1:0".parse().unwrap()),
        host_access: Default::default(),
    };
    let rt: Arc<dyn Runtime> = Arc::new(DockerRuntime::connect().unwrap());
    let agent = Agent::register_with(config, rt.clone(), script.clone()).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(agent.run(async move {
        let _ = stop_rx.await;
    }));

    let ra = script.wait_status(&a, "RUNNING").await;
    script.wait_status(&b, "RUNNING").await;
    assert!(ra.change.containers.iter().flatten().all(|c| c.status.as_deref() == Some("RUNNING")));

    let a8080 = SocketAddr::from((a_ip, 8080));
    let b8080 = SocketAddr::from((b_ip, 8080));
    let side = get(SocketAddr::from((a_ip, 8081)), "/", Duration::from_secs(2)).expect("A:8081");
    assert!(side.contains("Hello"), "A's second container answers on A's address: {side}");
    assert!(get(a8080, "/", Duration::from_millis(500)).is_err(), "sg-a does not admit 8080");
    let b_fetch_a = |ms: u64| {
        get(
            b8080,
            &format!("/fetch?url=http://{a_ip}:8080/&timeout_ms={ms}"),
            Duration::from_secs(5),
        )
        .unwrap_or_default()
    };
    assert!(!b_fetch_a(500).contains("200\nHello"), "B cannot reach A yet");

    // sg-a admits sg-b (resolved to B's address): B reaches A within a second; the host
    // still cannot.
    let t0 = Instant::now();
    script.set(|d| {
        d.security_groups[0].ingress.push(rule(IpProtocol::Tcp, Some(8080), &format!("{b_ip}/32")));
    });
    let mut took = None;
    while t0.elapsed() < Duration::from_secs(1) {
        if b_fetch_a(100).contains("200\nHello") {
            took = Some(t0.elapsed());
            break;
        }
    }
    let took = took.expect("B reaches A within a second of the poll carrying the rule");
    println!(
        "security group update: B reached A {:.1} ms after the poll changed",
        took.as_secs_f64() * 1000.0
    );
    assert!(get(a8080, "/", Duration::from_millis(500)).is_err(), "the host is still not admitted");

    // The task metadata endpoint answers from inside B with the awsvpc network.
    let env = get(b8080, "/env", Duration::from_secs(2)).unwrap();
    let uri = env
        .lines()
        .find_map(|l| l.strip_prefix("ECS_CONTAINER_METADATA_URI_V4="))
        .expect("metadata URI")
        .to_string();
    let meta =
        get(b8080, &format!("/fetch?url={uri}/task&timeout_ms=2000"), Duration::from_secs(5))
            .unwrap();
    assert!(meta.contains("200\n"), "{meta}");
    for want in [
        "\"NetworkMode\":\"awsvpc\"",
        &format!("\"{b_ip}\""),
        "\"MACAddress\":\"0e:00:00:00:00:0b\"",
        &format!("\"IPv4SubnetCIDRBlock\":\"{cidr}\""),
    ] {
        assert!(meta.contains(want), "{want} in {meta}");
    }

    // C: 64 MiB for the whole task; its container allocates beyond it.
    script.set(|d| {
        d.tasks.push(awsvpc_task(
            &c,
            serde_json::json!([{"name": "hog", "image": DEMO_IMAGE, "command": ["-alloc"]}]),
            "64",
            subnet,
            12,
            "sg-b",
        ));
    });
    let rc = script.wait_status(&c, "STOPPED").await;
    let hog = &rc.change.containers.as_ref().unwrap()[0];
    assert_eq!(hog.exit_code, Some(137), "{rc:?}");
    assert_eq!(
        hog.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage")
    );

    // Stop A and B: everything of theirs goes, the bridge and the cgroups too.
    script.set(|d| {
        for t in &mut d.tasks {
            t.desired_status = DesiredTaskStatus::Stopped;
        }
    });
    script.wait_status(&a, "STOPPED").await;
    script.wait_status(&b, "STOPPED").await;
    let labels = [(berth_agent::spec::LABEL_INSTANCE.to_string(), instance.clone())];
    let t0 = Instant::now();
    loop {
        let left =
            rt.list(&labels).await.unwrap().len() + rt.list_networks(&labels).await.unwrap().len();
        let id = instance.rsplit('/').next().unwrap();
        let cgroups = rt.list_cgroups(&format!("berth/{id}/")).await.unwrap();
        if left == 0 && cgroups.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{left} containers/networks and {cgroups:?} left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), agent_task).await;
}

/// `iptables -S <chain>` of the host (filter, or `nat`).
fn chain_rules(table: &str, chain: &str) -> String {
    let out = std::process::Command::new("iptables")
        .args(["-w", "-t", table, "-S", chain])
        .output()
        .expect("iptables");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnets_of_one_vpc_reach_each_other_under_their_security_groups_and_other_vpcs_do_not() {
    let fw = berth_firewall::Iptables::new();
    fw.available().await.expect("nsenter and iptables-restore");
    demo_image();
    let run = format!(
        "{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let instance = format!("arn:aws:ecs:us-east-1:000000000000:container-instance/vpcs/{run}");
    let _cleanup = Cleanup { instance: instance.clone() };
    // Three subnets next to the other test's: 1 and 2 in one VPC, 3 in another.
    let x = (std::process::id() % 200 + 30) as u8;
    let cidrs: Vec<String> = (1..=3).map(|i| format!("10.213.{}.0/24", x + i)).collect();
    let base = |i: usize| Ipv4Addr::new(10, 213, x + i as u8 + 1, 0);
    let ip = |i: usize, host: u8| Ipv4Addr::from(u32::from(base(i)) + u32::from(host));
    let arn = |id: &str| format!("arn:aws:ecs:us-east-1:000000000000:task/vpcs/{id}{run}");
    let (a, b, c, d) = (arn("a"), arn("b"), arn("c"), arn("d"));
    let web = serde_json::json!([{"name": "web", "image": DEMO_IMAGE, "portMappings": [{"containerPort": 8080}]}]);
    let task = |arn: &str, i: usize, host: u8, group: &str, vpc: &str| {
        let mut t = awsvpc_task(arn, web.clone(), "256", (&cidrs[i], base(i)), host, group);
        t.network.as_mut().unwrap().vpc_id = vpc.into();
        t
    };
    let (vpc1, vpc2) = (format!("vpc-1{run}"), format!("vpc-2{run}"));
    let anywhere = "10.213.0.0/16";
    let script = Arc::new(Script {
        arn: instance.clone(),
        desired: watch::channel(PollResponse::default()).0,
        reports: Mutex::new(vec![]),
    });
    // A (subnet 1) admits only B (subnet 2); B, C (subnet 3, the other VPC) and D (subnet
    // 2) admit all of 10.213.0.0/16.
    script.set(|d_| {
        d_.epoch = 1;
        d_.tasks = vec![
            task(&a, 0, 10, "sg-a", &vpc1),
            task(&b, 1, 10, "sg-open", &vpc1),
            task(&c, 2, 10, "sg-open", &vpc2),
            task(&d, 1, 11, "sg-open", &vpc1),
        ];
        d_.security_groups = vec![
            sg("sg-a", vec![rule(IpProtocol::Tcp, Some(8080), &format!("{}/32", ip(1, 10)))]),
            sg("sg-open", vec![rule(IpProtocol::Tcp, Some(8080), anywhere)]),
        ];
    });
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        server: "http://unused.invalid".into(),
        cluster: "vpcs".into(),
        data_dir: dir.path().to_path_buf(),
        region: "us-east-1".into(),
        instance_type: "t3.micro".into(),
        availability_zone: "us-east-1a".into(),
        attributes: vec![],
        cpu: None,
        memory_mib: None,
        credentials: None,
        metadata_listen: Some("172.17.0.1:0".parse().unwrap()),
        host_access: Default::default(),
    };
    let rt: Arc<dyn Runtime> = Arc::new(DockerRuntime::connect().unwrap());
    let agent = Agent::register_with(config, rt.clone(), script.clone()).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(agent.run(async move {
        let _ = stop_rx.await;
    }));
    for t in [&a, &b, &c, &d] {
        script.wait_status(t, "RUNNING").await;
    }
    // `from` fetches `to`:8080 (the host asks `from`, which its group must admit: not A's).
    let fetch = |from: Ipv4Addr, to: Ipv4Addr| {
        get(
            SocketAddr::from((from, 8080)),
            &format!("/fetch?url=http://{to}:8080/&timeout_ms=700"),
            Duration::from_secs(5),
        )
        .unwrap_or_default()
        .contains("200\nHello")
    };
    let (ia, ib, ic, id) = (ip(0, 10), ip(1, 10), ip(2, 10), ip(1, 11));
    assert!(fetch(ib, ia), "B reaches A across subnets, seen with its own address");
    assert!(!fetch(id, ia), "D, in B's subnet, is not in A's group: dropped");
    assert!(!fetch(ib, ic), "B cannot reach C in another VPC, though C admits it");
    assert!(!fetch(ic, ib), "nor C B");
    // The host's chain links exactly the bridges of the first VPC.
    let labels = [(berth_agent::spec::LABEL_INSTANCE.to_string(), instance.clone())];
    let nets = rt.list_networks(&labels).await.unwrap();
    let device = |cidr: &str| {
        let n = nets.iter().find(|n| n.subnets.iter().any(|s| s == cidr)).expect("a bridge");
        format!("br-{}", &n.id[..12])
    };
    let (d1, d2, d3) = (device(&cidrs[0]), device(&cidrs[1]), device(&cidrs[2]));
    let rules = chain_rules("filter", "BERTH-VPC");
    assert!(rules.contains(&format!("-A BERTH-VPC -i {d1} -o {d2} -j ACCEPT")), "{rules}");
    assert!(rules.contains(&format!("-A BERTH-VPC -i {d2} -o {d1} -j ACCEPT")), "{rules}");
    assert!(!rules.contains(&d3), "{rules}");
    let nat = chain_rules("nat", "POSTROUTING");
    // Above Docker's masquerading of our subnets (other networks made since may be above it:
    // their rules match only their own sources).
    let at = |needle: &str| nat.lines().position(|l| l.contains(needle));
    let jump = at("-A POSTROUTING -j BERTH-VPC-NAT").expect("the jump");
    for cidr in &cidrs[..2] {
        assert!(at(&format!("-s {cidr} ")).is_some_and(|m| jump < m), "{nat}");
    }

    // Stopped: the bridges go after their linger, and their links with them.
    script.set(|d_| {
        for t in &mut d_.tasks {
            t.desired_status = DesiredTaskStatus::Stopped;
        }
    });
    for t in [&a, &b, &c, &d] {
        script.wait_status(t, "STOPPED").await;
    }
    let t0 = Instant::now();
    loop {
        let rules = chain_rules("filter", "BERTH-VPC");
        let left = rt.list_networks(&labels).await.unwrap().len();
        if left == 0 && !rules.contains(&d1) && !rules.contains(&d2) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{left} bridges left; {rules}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), agent_task).await;
}
