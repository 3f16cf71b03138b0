//! Fargate and awsvpc at the ECS level, on the SQLite store: the pool, task fields, the
//! PROVISIONING wait and its timeout, the FARGATE / FARGATE_SPOT split, ENI allocation,
//! release and the agent channel's network and security groups.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use berth_agent_protocol::{PollRequest, TaskReport};
use berth_model::network::{
    self, IpProtocol, Peer, SecurityGroupRecord, SecurityGroupRule, SubnetRecord, keys as nkeys,
};
use berth_store::{Range, Store, Txn};
use berth_wire::ecs::*;

use super::SpotInterrupt;
use super::fargate::{self, POOL_CLUSTER};
use super::testing::{Harness, task_definition};
use crate::records;

mod spot;

const VPC: &str = "vpc-0123456789abcdef0";

/// Writes a subnet of `cidr` in zone `zone` (and, once, the VPC's default security group,
/// `sg-default0000000000`); returns the subnet id.
async fn subnet(store: &dyn Store, id: &str, cidr: &str, zone: &str) -> String {
    let s = SubnetRecord {
        id: id.into(),
        vpc_id: VPC.into(),
        cidr_block: cidr.into(),
        availability_zone: zone.into(),
        availability_zone_id: "use1-az1".into(),
        default_for_az: true,
        map_public_ip_on_launch: true,
        state: "available".into(),
        owner_id: "000000000000".into(),
        tags: vec![],
    };
    let g = group("sg-default0000000000", vec![]);
    let txn = Txn::new()
        .put(nkeys::subnet(id), records::encode(&s))
        .put(nkeys::security_group(&g.id), records::encode(&g))
        .put(nkeys::security_group_name(VPC, "default"), g.id.clone());
    assert!(store.txn(txn).await.unwrap().committed());
    id.to_string()
}

fn group(id: &str, ingress: Vec<SecurityGroupRule>) -> SecurityGroupRecord {
    SecurityGroupRecord {
        id: id.into(),
        name: id.into(),
        description: "d".into(),
        vpc_id: VPC.into(),
        owner_id: "000000000000".into(),
        ingress,
        egress: vec![],
        tags: vec![],
    }
}

fn tcp(port: i32, peer: Peer) -> SecurityGroupRule {
    SecurityGroupRule {
        id: network::new_id("sgr"),
        protocol: IpProtocol::Tcp,
        from_port: Some(port),
        to_port: Some(port),
        peer,
        description: None,
    }
}

async fn put_group(store: &dyn Store, g: &SecurityGroupRecord) {
    let txn = Txn::new().put(nkeys::security_group(&g.id), records::encode(g));
    assert!(store.txn(txn).await.unwrap().committed());
}

fn resources(cpu: i32, memory: i32) -> Vec<Resource> {
    let int = |name: &str, v: i32| Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(v),
        ..Default::default()
    };
    vec![int("CPU", cpu), int("MEMORY", memory)]
}

/// Registers an instance in `cluster` (the pool's, or a user's: then able to run awsvpc
/// tasks); returns its ARN.
async fn register(h: &Harness, cluster: &str, cpu: i32, memory: i32) -> String {
    let req = RegisterContainerInstanceRequest {
        cluster: Some(cluster.into()),
        total_resources: Some(resources(cpu, memory)),
        attributes: Some(
            ["ecs.capability.task-eni", "com.amazonaws.ecs.capability.docker-remote-api.1.18"]
                .iter()
                .map(|n| Attribute { name: Some(n.to_string()), ..Default::default() })
                .collect(),
        ),
        ..Default::default()
    };
    let out = h.ecs.container_instances().register_container_instance(&h.ctx(), req).await;
    out.unwrap().container_instance.unwrap().container_instance_arn.unwrap()
}

/// Creates the `default` cluster (a Fargate-only account has no instance to create it).
async fn default_cluster(h: &Harness) {
    let c = CreateClusterRequest::default();
    h.ecs.clusters().create_cluster(&h.ctx(), c).await.unwrap();
}

/// Registers an awsvpc revision of `family` that Fargate can run (0.25 vCPU, 512 MiB).
async fn fargate_td(h: &Harness, family: &str) -> String {
    let req = RegisterTaskDefinitionRequest {
        family: Some(family.into()),
        requires_compatibilities: Some(vec![Compatibility::Fargate]),
        network_mode: Some(NetworkMode::Awsvpc),
        cpu: Some("256".into()),
        memory: Some("512".into()),
        container_definitions: Some(vec![ContainerDefinition {
            name: Some("app".into()),
            image: Some("berth-demo:latest".into()),
            port_mappings: Some(vec![PortMapping {
                container_port: Some(8080),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let out = h.ecs.task_definitions().register_task_definition(&h.ctx(), req).await;
    out.unwrap().task_definition.unwrap().task_definition_arn.unwrap()
}

fn net(subnets: &[&str], groups: &[&str]) -> NetworkConfiguration {
    NetworkConfiguration {
        awsvpc_configuration: Some(AwsVpcConfiguration {
            subnets: Some(subnets.iter().map(|s| s.to_string()).collect()),
            security_groups: (!groups.is_empty())
                .then(|| groups.iter().map(|s| s.to_string()).collect()),
            assign_public_ip: None,
        }),
    }
}

fn run_fargate(td: &str, subnet: &str, count: i32) -> RunTaskRequest {
    RunTaskRequest {
        task_definition: Some(td.into()),
        launch_type: Some(LaunchType::Fargate),
        network_configuration: Some(net(&[subnet], &[])),
        count: Some(count),
        ..Default::default()
    }
}

fn detail<'a>(t: &'a Task, name: &str) -> Option<&'a str> {
    let a = t
        .attachments
        .as_ref()?
        .iter()
        .find(|a| a.r#type.as_deref() == Some("ElasticNetworkInterface"))?;
    a.details.iter().flatten().find(|d| d.name.as_deref() == Some(name))?.value.as_deref()
}

fn attachment_status(t: &Task) -> Option<&str> {
    t.attachments.as_ref()?.first()?.status.as_deref()
}

async fn describe(h: &Harness, cluster: &str, arn: &str) -> Task {
    let req = DescribeTasksRequest {
        cluster: Some(cluster.into()),
        tasks: Some(vec![arn.into()]),
        ..Default::default()
    };
    h.ecs.tasks().describe_tasks(&h.ctx(), req).await.unwrap().tasks.unwrap().remove(0)
}

fn poll(cluster: &str, arn: &str, seen: u64, wait: u32) -> PollRequest {
    PollRequest {
        cluster: cluster.into(),
        container_instance_arn: arn.into(),
        seen_version: seen,
        wait_seconds: wait,
    }
}

/// What the pool agent reports for a task, as the agent channel carries it.
fn report(arn: &str, instance: &str, status: &str, seq: u64) -> TaskReport {
    TaskReport {
        change: SubmitTaskStateChangeRequest {
            cluster: Some(POOL_CLUSTER.into()),
            task: Some(arn.into()),
            status: Some(status.into()),
            ..Default::default()
        },
        container_instance_arn: instance.into(),
        epoch: 1,
        seq,
        ..Default::default()
    }
}

async fn keys_under(store: &dyn Store, prefix: &str) -> Vec<String> {
    store.range(Range::prefix(prefix)).await.unwrap().into_iter().map(|r| r.key).collect()
}

#[tokio::test]
async fn a_fargate_task_runs_on_the_hidden_pool_and_shows_as_ecs_shows_it() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    let sn = subnet(&*h.store, "subnet-0aaaaaaaaaaaaaaaa", "172.31.16.0/20", "us-east-1b").await;
    let pool = register(&h, POOL_CLUSTER, 4096, 8192).await;
    let own = register(&h, "default", 2048, 4096).await;
    let td = fargate_td(&h, "web").await;

    let out = ecs.tasks().run_task(&ctx, run_fargate(&td, &sn, 1)).await.unwrap();
    assert_eq!(out.failures.unwrap(), vec![]);
    let task = out.tasks.unwrap().remove(0);
    let arn = task.task_arn.clone().unwrap();
    assert!(arn.contains(":task/default/"), "stored in the user's cluster: {arn}");
    assert_eq!(task.launch_type, Some(LaunchType::Fargate));
    assert_eq!(task.capacity_provider_name.as_deref(), Some("FARGATE"));
    assert_eq!(task.platform_version.as_deref(), Some("1.4.0"));
    assert_eq!(task.platform_family.as_deref(), Some("Linux"));
    assert_eq!(task.availability_zone.as_deref(), Some("us-east-1b"));
    assert_eq!(task.container_instance_arn, None, "Fargate tasks name no instance");
    assert_eq!(task.last_status.as_deref(), Some("PENDING"));
    assert_eq!(attachment_status(&task), Some("PRECREATED"));
    let ip = detail(&task, "privateIPv4Address").unwrap().to_string();
    assert_eq!(ip, "172.31.16.4", "the subnet's first address after AWS's reserved ones");
    assert_eq!(detail(&task, "subnetId"), Some(sn.as_str()));
    assert_eq!(detail(&task, "privateDnsName"), Some("ip-172-31-16-4.ec2.internal"));
    let eni = detail(&task, "networkInterfaceId").unwrap().to_string();
    assert!(eni.starts_with("eni-"), "{eni}");
    // Derived from the address, so a reused address keeps its MAC (no stale ARP entries).
    assert_eq!(detail(&task, "macAddress"), Some("0e:00:ac:1f:10:04"));
    let nic = &task.containers.as_ref().unwrap()[0].network_interfaces.as_ref().unwrap()[0];
    assert_eq!(nic.private_ipv4_address.as_deref(), Some(ip.as_str()));
    assert_eq!(nic.attachment_id, task.attachments.as_ref().unwrap()[0].id);

    // The pool host is nobody's container instance, and its cluster is hidden.
    let list = ListContainerInstancesRequest::default();
    let listed = ecs.container_instances().list_container_instances(&ctx, list).await.unwrap();
    assert_eq!(listed.container_instance_arns.unwrap(), vec![own.clone()]);
    let d = DescribeClustersRequest::default();
    let c = ecs.clusters().describe_clusters(&ctx, d).await.unwrap().clusters.unwrap().remove(0);
    assert_eq!(c.registered_container_instances_count, Some(1));
    let all = ecs.clusters().list_clusters(&ctx, ListClustersRequest::default()).await.unwrap();
    assert!(all.cluster_arns.unwrap().iter().all(|a| !a.ends_with(POOL_CLUSTER)));
    let d =
        DescribeClustersRequest { clusters: Some(vec![POOL_CLUSTER.into()]), ..Default::default() };
    let d = ecs.clusters().describe_clusters(&ctx, d).await.unwrap();
    assert!(d.clusters.unwrap().is_empty());
    assert_eq!(d.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
    let create =
        CreateClusterRequest { cluster_name: Some(POOL_CLUSTER.into()), ..Default::default() };
    assert!(ecs.clusters().create_cluster(&ctx, create).await.is_err());
    // An EC2 task never lands on the pool.
    let ec2_td = task_definition(ecs, &ctx, "plain").await;
    let run =
        RunTaskRequest { task_definition: Some(ec2_td), count: Some(3), ..Default::default() };
    for t in ecs.tasks().run_task(&ctx, run).await.unwrap().tasks.unwrap() {
        assert_eq!(t.container_instance_arn.as_deref(), Some(own.as_str()));
    }

    // The pool agent's poll carries the task with its network, launch type and rules.
    let answer = ecs.agent_channel.agent_poll(&ctx, poll(POOL_CLUSTER, &pool, 0, 0)).await.unwrap();
    assert_eq!(answer.tasks.len(), 1);
    let desired = &answer.tasks[0];
    assert_eq!(desired.task_arn, arn);
    assert_eq!(desired.launch_type, Some(LaunchType::Fargate));
    let n = desired.network.as_ref().expect("the task's network");
    assert_eq!(n.private_ip.to_string(), ip);
    assert_eq!(n.gateway.to_string(), "172.31.16.1");
    assert_eq!(n.subnet_cidr, "172.31.16.0/20");
    assert_eq!(n.security_groups, vec!["sg-default0000000000".to_string()]);
    assert_eq!(answer.security_groups.len(), 1);

    // Its reports (naming the pool cluster) reach the task; the attachment follows.
    let mut r = report(&arn, &pool, "RUNNING", 1);
    r.change.attachments = Some(vec![AttachmentStateChange {
        attachment_arn: Some(format!(
            "arn:aws:ecs:us-east-1:000000000000:attachment/{}",
            task.attachments.as_ref().unwrap()[0].id.clone().unwrap()
        )),
        status: Some("ATTACHED".into()),
    }]);
    ecs.agent_channel.agent_report(&ctx, r).await.unwrap();
    let t = describe(&h, "default", &arn).await;
    assert_eq!(
        (t.last_status.as_deref(), attachment_status(&t)),
        (Some("RUNNING"), Some("ATTACHED"))
    );
    // Another instance's report on it is refused.
    let e = ecs.agent_channel.agent_report(&ctx, report(&arn, &own, "STOPPED", 2)).await;
    assert!(e.is_err());

    // Stopped: the interface and its keys are released in the same transaction, and the
    // pool instance's reservation with it.
    let stop = StopTaskRequest { task: Some(arn.clone()), ..Default::default() };
    ecs.tasks().stop_task(&ctx, stop).await.unwrap();
    ecs.agent_channel.agent_report(&ctx, report(&arn, &pool, "STOPPED", 3)).await.unwrap();
    let t = describe(&h, "default", &arn).await;
    assert_eq!(
        (t.last_status.as_deref(), attachment_status(&t)),
        (Some("STOPPED"), Some("DELETED"))
    );
    assert!(keys_under(&*h.store, nkeys::ENIS).await.is_empty());
    assert!(keys_under(&*h.store, &nkeys::eni_ips_prefix(&sn)).await.is_empty());
    assert!(
        keys_under(&*h.store, &nkeys::security_group_members_prefix("sg-default0000000000"))
            .await
            .is_empty()
    );
    let pool_id = pool.rsplit('/').next().unwrap();
    let key = berth_model::keys::container_instance(POOL_CLUSTER, pool_id);
    let (i, _) = records::get::<berth_model::records::ContainerInstanceRecord>(&*h.store, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((i.used_cpu, i.used_memory_mib), (0, 0), "the reservation is released");
    // Nobody addresses the pool's cluster through the API.
    let d = DescribeContainerInstancesRequest {
        cluster: Some(POOL_CLUSTER.into()),
        container_instances: Some(vec![pool.clone()]),
        ..Default::default()
    };
    let e = ecs.container_instances().describe_container_instances(&ctx, d).await.unwrap_err();
    assert_eq!(e.code, "ClusterNotFoundException");
    let run = RunTaskRequest { cluster: Some(POOL_CLUSTER.into()), ..run_fargate(&td, &sn, 1) };
    assert_eq!(ecs.tasks().run_task(&ctx, run).await.unwrap_err().code, "ClusterNotFoundException");
}

#[tokio::test]
async fn a_fargate_task_waits_in_provisioning_then_runs_or_times_out() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    default_cluster(&h).await;
    let sn = subnet(&*h.store, "subnet-0bbbbbbbbbbbbbbbb", "10.0.0.0/24", "us-east-1a").await;
    let td = fargate_td(&h, "web").await;
    // No pool host at all: the task waits, desired RUNNING, its address already held.
    let out = ecs.tasks().run_task(&ctx, run_fargate(&td, &sn, 1)).await.unwrap();
    assert_eq!(out.failures.unwrap(), vec![]);
    let waiting = out.tasks.unwrap().remove(0);
    let arn = waiting.task_arn.clone().unwrap();
    assert_eq!(waiting.last_status.as_deref(), Some("PROVISIONING"));
    assert_eq!(waiting.desired_status.as_deref(), Some("RUNNING"));
    ecs.service_controller.service_pass().await.unwrap();
    assert_eq!(describe(&h, "default", &arn).await.last_status.as_deref(), Some("PROVISIONING"));

    // Capacity appears: the next pass places it on the pool host, whose poll now has it.
    let pool = register(&h, POOL_CLUSTER, 1024, 2048).await;
    let mut placed = false;
    for _ in 0..50 {
        tokio::task::yield_now().await;
        ecs.service_controller.service_pass().await.unwrap();
        if describe(&h, "default", &arn).await.last_status.as_deref() == Some("PENDING") {
            placed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(placed, "the waiting task was placed once capacity appeared");
    let answer = ecs.agent_channel.agent_poll(&ctx, poll(POOL_CLUSTER, &pool, 0, 0)).await.unwrap();
    assert_eq!(
        answer.tasks.iter().map(|t| t.task_arn.as_str()).collect::<Vec<_>>(),
        [arn.as_str()]
    );

    // The host is full now (1024 units, 4 x 256): five more, one waits; the clock passes
    // the timeout (the injected clock) and it stops with ECS's capacity message.
    let out = ecs.tasks().run_task(&ctx, run_fargate(&td, &sn, 4)).await.unwrap();
    let statuses: Vec<_> = out
        .tasks
        .unwrap()
        .into_iter()
        .map(|t| (t.task_arn.unwrap(), t.last_status.unwrap()))
        .collect();
    let (late, _) = statuses.iter().find(|(_, s)| s == "PROVISIONING").expect("one waits").clone();
    assert_eq!(statuses.iter().filter(|(_, s)| s == "PENDING").count(), 3);
    h.clock.advance(Duration::from_secs(fargate::PROVISIONING_TIMEOUT_SECS as u64 - 10));
    ecs.service_controller.service_pass().await.unwrap();
    assert_eq!(describe(&h, "default", &late).await.last_status.as_deref(), Some("PROVISIONING"));
    h.clock.advance(Duration::from_secs(11));
    ecs.service_controller.service_pass().await.unwrap();
    let t = describe(&h, "default", &late).await;
    assert_eq!(t.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(t.stop_code, Some(TaskStopCode::TaskFailedToStart));
    assert_eq!(t.stopped_reason.as_deref(), Some(fargate::CAPACITY_UNAVAILABLE));
    let ip = detail(&t, "privateIPv4Address").unwrap().parse().unwrap();
    assert!(
        h.store.get(&nkeys::eni_ip(&sn, ip)).await.unwrap().is_none(),
        "its address is free again"
    );
    assert!(keys_under(&*h.store, fargate::PROVISIONING).await.is_empty());

    // StopTask on a waiting task stops it at once (nothing runs).
    let pool_full = run_fargate(&td, &sn, 1);
    let w = ecs.tasks().run_task(&ctx, pool_full).await.unwrap().tasks.unwrap().remove(0);
    assert_eq!(w.last_status.as_deref(), Some("PROVISIONING"));
    let stop = StopTaskRequest { task: w.task_arn.clone(), ..Default::default() };
    let s = ecs.tasks().stop_task(&ctx, stop).await.unwrap().task.unwrap();
    assert_eq!(s.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(s.stop_code, Some(TaskStopCode::UserInitiated));
}

#[tokio::test]
async fn a_fargate_and_spot_strategy_splits_as_the_scheduler_computes() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    let sn = subnet(&*h.store, "subnet-0cccccccccccccccc", "10.1.0.0/24", "us-east-1a").await;
    register(&h, POOL_CLUSTER, 8192, 16384).await;
    let c = CreateClusterRequest {
        cluster_name: Some("prod".into()),
        capacity_providers: Some(vec!["FARGATE".into(), "FARGATE_SPOT".into()]),
        default_capacity_provider_strategy: Some(vec![
            CapacityProviderStrategyItem {
                capacity_provider: Some("FARGATE".into()),
                base: Some(2),
                weight: Some(1),
            },
            CapacityProviderStrategyItem {
                capacity_provider: Some("FARGATE_SPOT".into()),
                base: None,
                weight: Some(3),
            },
        ]),
        ..Default::default()
    };
    ecs.clusters().create_cluster(&ctx, c).await.unwrap();
    let td = fargate_td(&h, "web").await;
    // The cluster's default strategy applies (no launch type given).
    let run = RunTaskRequest {
        cluster: Some("prod".into()),
        task_definition: Some(td),
        network_configuration: Some(net(&[&sn], &[])),
        count: Some(6),
        ..Default::default()
    };
    let tasks = ecs.tasks().run_task(&ctx, run).await.unwrap().tasks.unwrap();
    let count =
        |p: &str| tasks.iter().filter(|t| t.capacity_provider_name.as_deref() == Some(p)).count();
    assert_eq!((count("FARGATE"), count("FARGATE_SPOT")), (3, 3));
    assert!(tasks.iter().all(|t| t.launch_type == Some(LaunchType::Fargate)));
    assert!(tasks.iter().all(|t| t.last_status.as_deref() == Some("PENDING")));
    let ips: BTreeSet<_> = tasks.iter().map(|t| detail(t, "privateIPv4Address").unwrap()).collect();
    assert_eq!(ips.len(), 6, "one address per task");
    // A mix of Fargate and instance providers is refused, as ECS refuses it.
    let mixed = RunTaskRequest {
        cluster: Some("prod".into()),
        task_definition: Some("web".into()),
        capacity_provider_strategy: Some(vec![
            CapacityProviderStrategyItem {
                capacity_provider: Some("FARGATE".into()),
                base: None,
                weight: Some(1),
            },
            CapacityProviderStrategyItem {
                capacity_provider: Some("cp-a".into()),
                base: None,
                weight: Some(1),
            },
        ]),
        ..Default::default()
    };
    assert_eq!(
        ecs.tasks().run_task(&ctx, mixed).await.unwrap_err().code,
        "InvalidParameterException"
    );
}

#[tokio::test]
async fn concurrent_run_tasks_never_share_an_address_and_a_full_subnet_fails_the_rest() {
    let h = Harness::new();
    let ctx = Arc::new(h.ctx());
    let ecs = &h.ecs;
    let wide = subnet(&*h.store, "subnet-0dddddddddddddddd", "10.2.0.0/24", "us-east-1a").await;
    let small = subnet(&*h.store, "subnet-0eeeeeeeeeeeeeeee", "10.3.0.0/28", "us-east-1a").await;
    for _ in 0..4 {
        register(&h, "default", 16384, 32768).await;
    }
    // An awsvpc task definition for EC2.
    let req = RegisterTaskDefinitionRequest {
        family: Some("vpc".into()),
        network_mode: Some(NetworkMode::Awsvpc),
        container_definitions: Some(vec![ContainerDefinition {
            name: Some("app".into()),
            image: Some("berth-demo:latest".into()),
            memory: Some(16),
            ..Default::default()
        }]),
        ..Default::default()
    };
    ecs.task_definitions().register_task_definition(&ctx, req).await.unwrap();
    let run = |subnet: &str, count: i32| RunTaskRequest {
        task_definition: Some("vpc".into()),
        network_configuration: Some(net(&[subnet], &[])),
        count: Some(count),
        ..Default::default()
    };
    // 16 RunTasks of 5 at once against one subnet.
    let runs = (0..16).map(|_| ecs.tasks().run_task(&ctx, run(&wide, 5)));
    let mut ips = Vec::new();
    for out in futures_util::future::join_all(runs).await {
        let out = out.unwrap();
        assert_eq!(out.failures.unwrap(), vec![]);
        for t in out.tasks.unwrap() {
            assert_eq!(t.launch_type, Some(LaunchType::Ec2));
            ips.push(detail(&t, "privateIPv4Address").unwrap().to_string());
        }
    }
    let distinct: BTreeSet<_> = ips.iter().collect();
    assert_eq!((ips.len(), distinct.len()), (80, 80), "every address handed out once");
    assert_eq!(keys_under(&*h.store, &nkeys::eni_ips_prefix(&wide)).await.len(), 80);

    // A /28 has 11 usable addresses: 10 + 1 fit, the 12th task fails RESOURCE:ENI.
    let first = ecs.tasks().run_task(&ctx, run(&small, 10)).await.unwrap();
    assert_eq!(first.tasks.unwrap().len(), 10);
    let out = ecs.tasks().run_task(&ctx, run(&small, 2)).await.unwrap();
    assert_eq!(out.tasks.unwrap().len(), 1);
    let f = out.failures.unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason.as_deref(), Some("RESOURCE:ENI"));
    assert!(f[0].detail.as_deref().unwrap().contains(&small), "{f:?}");
}

#[tokio::test]
async fn network_configuration_is_checked_as_ecs_checks_it() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    let sn = subnet(&*h.store, "subnet-0ffffffffffffffff", "10.4.0.0/24", "us-east-1a").await;
    register(&h, "default", 4096, 8192).await;
    let td = fargate_td(&h, "web").await;
    let plain = task_definition(ecs, &ctx, "plain").await;
    let cases: Vec<(RunTaskRequest, &str, &str)> = vec![
        (
            RunTaskRequest { task_definition: Some(td.clone()), ..Default::default() },
            "InvalidParameterException",
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ),
        (
            RunTaskRequest {
                task_definition: Some(plain.clone()),
                network_configuration: Some(net(&[&sn], &[])),
                ..Default::default()
            },
            "InvalidParameterException",
            "Network Configuration is not valid for the given networkMode of this task definition.",
        ),
        (
            RunTaskRequest {
                task_definition: Some(td.clone()),
                network_configuration: Some(net(&["subnet-0000000000000dead"], &[])),
                ..Default::default()
            },
            "InvalidParameterException",
            "subnet-0000000000000dead",
        ),
        (
            RunTaskRequest {
                task_definition: Some(td.clone()),
                network_configuration: Some(net(&[&sn], &["sg-00000000000000bad"])),
                ..Default::default()
            },
            "InvalidParameterException",
            "sg-00000000000000bad",
        ),
        (
            RunTaskRequest {
                task_definition: Some(td.clone()),
                network_configuration: Some(NetworkConfiguration {
                    awsvpc_configuration: Some(AwsVpcConfiguration {
                        subnets: Some(vec![sn.clone()]),
                        security_groups: None,
                        assign_public_ip: Some(AssignPublicIp::Enabled),
                    }),
                }),
                ..Default::default()
            },
            "InvalidParameterException",
            "Assign public IP is not supported for this launch type.",
        ),
        (
            RunTaskRequest {
                task_definition: Some(td.clone()),
                network_configuration: Some(net(&vec![sn.as_str(); 17], &[])),
                ..Default::default()
            },
            "InvalidParameterException",
            "at most 16 subnets",
        ),
        (
            RunTaskRequest {
                task_definition: Some(plain.clone()),
                launch_type: Some(LaunchType::Fargate),
                ..Default::default()
            },
            "InvalidParameterException",
            "Task definition does not support launch_type FARGATE.",
        ),
        (
            RunTaskRequest { platform_version: Some("1.3.0".into()), ..run_fargate(&td, &sn, 1) },
            "InvalidParameterException",
            "platformVersion",
        ),
    ];
    for (i, (req, code, needle)) in cases.into_iter().enumerate() {
        let e = ecs.tasks().run_task(&ctx, req).await.unwrap_err();
        assert_eq!(e.code, code, "case {i}: {}", e.message);
        assert!(e.message.contains(needle), "case {i}: {}", e.message);
    }
    // Nothing was allocated by any refused request.
    assert!(keys_under(&*h.store, nkeys::ENIS).await.is_empty());
}

#[tokio::test]
async fn a_security_group_change_bumps_the_poll_version_and_wakes_the_poll() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    default_cluster(&h).await;
    let sn = subnet(&*h.store, "subnet-0a0a0a0a0a0a0a0a0", "10.5.0.0/24", "us-east-1a").await;
    let web = group("sg-0web0000000000000", vec![]);
    let db = group("sg-0db00000000000000", vec![tcp(5432, Peer::Group(web.id.clone()))]);
    put_group(&*h.store, &web).await;
    put_group(&*h.store, &db).await;
    let pool = register(&h, POOL_CLUSTER, 4096, 8192).await;
    let td = fargate_td(&h, "db").await;
    let run = RunTaskRequest {
        network_configuration: Some(net(&[&sn], &[&db.id])),
        ..run_fargate(&td, &sn, 1)
    };
    ecs.tasks().run_task(&ctx, run).await.unwrap();
    let first = ecs.agent_channel.agent_poll(&ctx, poll(POOL_CLUSTER, &pool, 0, 0)).await.unwrap();
    let rules = &first.security_groups;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].group_id, db.id);
    assert!(rules[0].ingress[0].peers.is_empty(), "web has no members yet");

    // An edited rule (as AuthorizeSecurityGroupIngress writes it) wakes a held poll.
    let held = ecs.agent_channel.agent_poll(&ctx, poll(POOL_CLUSTER, &pool, first.version, 10));
    tokio::pin!(held);
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut held).await.is_err());
    let mut edited = db.clone();
    edited.ingress.push(tcp(8080, Peer::Cidr("0.0.0.0/0".into())));
    put_group(&*h.store, &edited).await;
    let second = tokio::time::timeout(Duration::from_secs(1), &mut held)
        .await
        .expect("answered within a second")
        .unwrap();
    assert!(second.version > first.version);
    assert_eq!(second.security_groups[0].ingress.len(), 2);

    // A member of a referenced group coming (a web task starting) bumps it too.
    let held = ecs.agent_channel.agent_poll(&ctx, poll(POOL_CLUSTER, &pool, second.version, 10));
    tokio::pin!(held);
    let run = RunTaskRequest {
        network_configuration: Some(net(&[&sn], &[&web.id])),
        ..run_fargate(&td, &sn, 1)
    };
    let web_task = ecs.tasks().run_task(&ctx, run).await.unwrap().tasks.unwrap().remove(0);
    let third = tokio::time::timeout(Duration::from_secs(1), &mut held).await.unwrap().unwrap();
    assert!(third.version > second.version);
    let db_rules = third.security_groups.iter().find(|g| g.group_id == db.id).unwrap();
    let web_ip = detail(&web_task, "privateIPv4Address").unwrap();
    assert_eq!(db_rules.ingress[0].peers, vec![format!("{web_ip}/32").parse().unwrap()]);
}

#[tokio::test]
async fn a_fargate_service_gives_each_task_its_own_interface() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    default_cluster(&h).await;
    let sn = subnet(&*h.store, "subnet-0b0b0b0b0b0b0b0b0", "10.6.0.0/24", "us-east-1a").await;
    register(&h, POOL_CLUSTER, 4096, 8192).await;
    let td = fargate_td(&h, "web").await;
    let req = CreateServiceRequest {
        service_name: Some("web".into()),
        task_definition: Some(td),
        desired_count: Some(3),
        launch_type: Some(LaunchType::Fargate),
        network_configuration: Some(net(&[&sn], &[])),
        ..Default::default()
    };
    let s = ecs.services().create_service(&ctx, req).await.unwrap().service.unwrap();
    assert_eq!(s.network_configuration, Some(net(&[&sn], &[])));
    assert_eq!(s.platform_version.as_deref(), Some("LATEST"));
    super::testing::passes_until(&h, "three tasks", async || {
        let list = ListTasksRequest { service_name: Some("web".into()), ..Default::default() };
        ecs.tasks().list_tasks(&ctx, list).await.unwrap().task_arns.unwrap().len() == 3
    })
    .await;
    let list = ListTasksRequest { service_name: Some("web".into()), ..Default::default() };
    let arns = ecs.tasks().list_tasks(&ctx, list).await.unwrap().task_arns.unwrap();
    let d = DescribeTasksRequest { tasks: Some(arns), ..Default::default() };
    let tasks = ecs.tasks().describe_tasks(&ctx, d).await.unwrap().tasks.unwrap();
    let enis: BTreeSet<_> =
        tasks.iter().map(|t| detail(t, "networkInterfaceId").unwrap()).collect();
    assert_eq!(enis.len(), 3);
    assert!(tasks.iter().all(|t| t.launch_type == Some(LaunchType::Fargate)));
    let d = DescribeServicesRequest { services: Some(vec!["web".into()]), ..Default::default() };
    let s = ecs.services().describe_services(&ctx, d).await.unwrap().services.unwrap().remove(0);
    let dep = &s.deployments.unwrap()[0];
    assert_eq!(dep.network_configuration, Some(net(&[&sn], &[])));
    // A service without the network its awsvpc definition needs is refused.
    let bad = CreateServiceRequest {
        service_name: Some("bad".into()),
        task_definition: Some("web".into()),
        desired_count: Some(1),
        launch_type: Some(LaunchType::Fargate),
        ..Default::default()
    };
    let e = ecs.services().create_service(&ctx, bad).await.unwrap_err();
    assert!(e.message.contains("Network Configuration must be provided"), "{}", e.message);
}

#[tokio::test]
async fn the_sweep_releases_interfaces_whose_task_is_gone() {
    let h = Harness::new();
    let sn = subnet(&*h.store, "subnet-0c0c0c0c0c0c0c0c0", "10.7.0.0/24", "us-east-1a").await;
    let orphan = network::NetworkInterfaceRecord {
        id: "eni-0000000000000dead".into(),
        subnet_id: sn.clone(),
        vpc_id: VPC.into(),
        availability_zone: "us-east-1a".into(),
        private_ip: "10.7.0.9".parse().unwrap(),
        mac_address: network::new_mac(),
        security_groups: vec!["sg-default0000000000".into()],
        status: "in-use".into(),
        description: String::new(),
        task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef".into(),
        attachment_id: "x".into(),
        owner_id: "000000000000".into(),
        tags: vec![],
    };
    let txn = super::awsvpc::write(Txn::new(), &orphan);
    assert!(h.store.txn(txn).await.unwrap().committed());
    assert_eq!(h.ecs.retention.reap_enis().await.unwrap(), 1);
    assert!(
        keys_under(&*h.store, "ec2/").await.iter().all(|k| !k.contains("eni")),
        "{:?}",
        keys_under(&*h.store, "ec2/").await
    );
}

#[tokio::test]
async fn a_fargate_service_waits_for_capacity_without_churning() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    default_cluster(&h).await;
    let sn = subnet(&*h.store, "subnet-0d0d0d0d0d0d0d0d0", "10.8.0.0/24", "us-east-1a").await;
    // Room for two 256-unit tasks only.
    register(&h, POOL_CLUSTER, 512, 8192).await;
    let td = fargate_td(&h, "web").await;
    let req = CreateServiceRequest {
        service_name: Some("web".into()),
        task_definition: Some(td),
        desired_count: Some(3),
        launch_type: Some(LaunchType::Fargate),
        network_configuration: Some(net(&[&sn], &[])),
        ..Default::default()
    };
    ecs.services().create_service(&ctx, req).await.unwrap();
    for _ in 0..20 {
        tokio::task::yield_now().await;
        ecs.service_controller.service_pass().await.unwrap();
    }
    let ctx = &ctx;
    let all = async |desired: DesiredStatus| {
        let list = ListTasksRequest {
            service_name: Some("web".into()),
            desired_status: Some(desired),
            ..Default::default()
        };
        ecs.tasks().list_tasks(ctx, list).await.unwrap().task_arns.unwrap()
    };
    let live = all(DesiredStatus::Running).await;
    assert_eq!(live.len(), 3, "two placed, one waiting");
    let stopped = all(DesiredStatus::Stopped).await;
    assert!(stopped.is_empty(), "the waiting task is not replaced over and over");
    let d = DescribeTasksRequest { tasks: Some(live), ..Default::default() };
    let tasks = ecs.tasks().describe_tasks(ctx, d).await.unwrap().tasks.unwrap();
    let waiting = tasks.iter().filter(|t| t.last_status.as_deref() == Some("PROVISIONING")).count();
    assert_eq!(waiting, 1);
}

/// A task set on Fargate runs its tasks on the pool in its own awsvpc network (the set's
/// network configuration, not the service's), and is checked as a Fargate service is.
#[tokio::test]
async fn a_fargate_task_set_runs_in_its_own_network_on_the_pool() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    default_cluster(&h).await;
    let sn = subnet(&*h.store, "subnet-0f0f0f0f0f0f0f0f0", "10.9.2.0/24", "us-east-1a").await;
    register(&h, POOL_CLUSTER, 4096, 8192).await;
    let td = fargate_td(&h, "web").await;
    let create = CreateServiceRequest {
        service_name: Some("ext".into()),
        desired_count: Some(2),
        deployment_controller: Some(DeploymentController {
            r#type: Some(DeploymentControllerType::External),
        }),
        ..Default::default()
    };
    ecs.services().create_service(&ctx, create).await.unwrap();
    let set = |network: Option<NetworkConfiguration>| CreateTaskSetRequest {
        service: Some("ext".into()),
        task_definition: Some(td.clone()),
        launch_type: Some(LaunchType::Fargate),
        network_configuration: network,
        ..Default::default()
    };
    // Without the network an awsvpc definition needs: refused, nothing created.
    let e = ecs.task_sets().create_task_set(&ctx, set(None)).await.unwrap_err();
    assert!(e.message.contains("Network Configuration must be provided"), "{}", e.message);
    let bad_version = CreateTaskSetRequest {
        platform_version: Some("1.3.0".into()),
        ..set(Some(net(&[&sn], &[])))
    };
    let e = ecs.task_sets().create_task_set(&ctx, bad_version).await.unwrap_err();
    assert!(e.message.contains("platformVersion"), "{}", e.message);
    let made = ecs.task_sets().create_task_set(&ctx, set(Some(net(&[&sn], &[])))).await.unwrap();
    let made = made.task_set.unwrap();
    assert_eq!(made.network_configuration, Some(net(&[&sn], &[])));
    assert_eq!(made.platform_version.as_deref(), Some("LATEST"));
    assert_eq!(made.platform_family.as_deref(), Some("Linux"));
    super::testing::passes_until(&h, "two set tasks", async || {
        let list = ListTasksRequest { service_name: Some("ext".into()), ..Default::default() };
        ecs.tasks().list_tasks(&ctx, list).await.unwrap().task_arns.unwrap().len() == 2
    })
    .await;
    let list = ListTasksRequest { service_name: Some("ext".into()), ..Default::default() };
    let arns = ecs.tasks().list_tasks(&ctx, list).await.unwrap().task_arns.unwrap();
    let d = DescribeTasksRequest { tasks: Some(arns), ..Default::default() };
    let tasks = ecs.tasks().describe_tasks(&ctx, d).await.unwrap().tasks.unwrap();
    assert!(tasks.iter().all(|t| t.launch_type == Some(LaunchType::Fargate)));
    assert!(tasks.iter().all(|t| t.started_by == made.id));
    let enis: BTreeSet<_> =
        tasks.iter().map(|t| detail(t, "networkInterfaceId").unwrap()).collect();
    assert_eq!(enis.len(), 2, "each task has its own interface");
    let subnets: BTreeSet<_> = tasks.iter().map(|t| detail(t, "subnetId").unwrap()).collect();
    assert_eq!(subnets, BTreeSet::from([sn.as_str()]));
}
