//! One row per rule: a valid base request, one mutation that breaks that rule alone, and the
//! error class and field ECS answers with. [`validate`] must answer exactly that for every row.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Client,
    Invalid,
}
pub(super) use Kind::{Client, Invalid};

pub(super) struct Row {
    rule: &'static str,
    base: fn() -> Req,
    mutate: fn(&mut Req),
    kind: Kind,
    field: &'static str,
}

pub(super) fn row(
    rule: &'static str,
    base: fn() -> Req,
    mutate: fn(&mut Req),
    kind: Kind,
    field: &'static str,
) -> Row {
    Row { rule, base, mutate, kind, field }
}

fn rows() -> Vec<Row> {
    let mut rows = vec![
        // family
        row("family required", ec2, |r| r.family = None, Client, "family"),
        row("family empty", ec2, |r| r.family = Some(String::new()), Client, "family"),
        row("family too long", ec2, |r| r.family = Some("f".repeat(256)), Client, "family"),
        row("family characters", ec2, |r| r.family = Some("my family!".into()), Client, "family"),
        // container list, names, images
        row(
            "containers required",
            ec2,
            |r| r.container_definitions = None,
            Client,
            "containerDefinitions",
        ),
        row(
            "containers empty",
            ec2,
            |r| r.container_definitions = Some(vec![]),
            Client,
            "containerDefinitions",
        ),
        row(
            "at most 10 containers",
            ec2,
            |r| {
                r.container_definitions =
                    Some((0..11).map(|i| container(&format!("c{i}"))).collect())
            },
            Client,
            "containerDefinitions",
        ),
        row(
            "container name required",
            ec2,
            |r| c(r, 0).name = None,
            Client,
            "containerDefinitions[0].name",
        ),
        row(
            "container name characters",
            ec2,
            |r| c(r, 0).name = Some("a b".into()),
            Client,
            "containerDefinitions[0].name",
        ),
        row(
            "container name too long",
            ec2,
            |r| c(r, 0).name = Some("n".repeat(256)),
            Client,
            "containerDefinitions[0].name",
        ),
        row(
            "container name unique",
            ec2_two,
            |r| c(r, 1).name = Some("app".into()),
            Client,
            "containerDefinitions[1].name",
        ),
        row(
            "image required",
            ec2,
            |r| c(r, 0).image = None,
            Client,
            "containerDefinitions[0].image",
        ),
        row(
            "image empty",
            ec2,
            |r| c(r, 0).image = Some(String::new()),
            Client,
            "containerDefinitions[0].image",
        ),
        row(
            "image whitespace",
            ec2,
            |r| c(r, 0).image = Some("nginx latest".into()),
            Client,
            "containerDefinitions[0].image",
        ),
        row(
            "image too long",
            ec2,
            |r| c(r, 0).image = Some("i".repeat(256)),
            Client,
            "containerDefinitions[0].image",
        ),
        // essential
        row(
            "one essential container",
            ec2,
            |r| c(r, 0).essential = Some(false),
            Client,
            "containerDefinitions",
        ),
        // memory
        row(
            "memory or reservation without task memory",
            ec2,
            |r| c(r, 0).memory = None,
            Client,
            "containerDefinitions[0].memory",
        ),
        row(
            "memory minimum",
            ec2,
            |r| c(r, 0).memory = Some(4),
            Client,
            "containerDefinitions[0].memory",
        ),
        row(
            "reservation minimum",
            ec2,
            |r| c(r, 0).memory_reservation = Some(5),
            Client,
            "containerDefinitions[0].memoryReservation",
        ),
        row(
            "reservation <= memory",
            ec2,
            |r| c(r, 0).memory_reservation = Some(1024),
            Client,
            "containerDefinitions[0].memoryReservation",
        ),
        row(
            "container memory <= task memory",
            ec2,
            |r| r.memory = Some("256".into()),
            Client,
            "containerDefinitions[0].memory",
        ),
        row(
            "reservations fit the task memory",
            ec2_two,
            |r| {
                r.memory = Some("1024".into());
                c(r, 0).memory = Some(600);
                c(r, 1).memory = None;
                c(r, 1).memory_reservation = Some(600);
            },
            Client,
            "memory",
        ),
        row("task memory parses", ec2, |r| r.memory = Some("lots".into()), Client, "memory"),
        row("task memory positive", ec2, |r| r.memory = Some("0".into()), Client, "memory"),
        // cpu
        row(
            "container cpu >= 0",
            ec2,
            |r| c(r, 0).cpu = Some(-1),
            Client,
            "containerDefinitions[0].cpu",
        ),
        row(
            "container cpu fits the task cpu",
            ec2_two,
            |r| {
                r.cpu = Some("256".into());
                c(r, 0).cpu = Some(200);
                c(r, 1).cpu = Some(200);
            },
            Client,
            "cpu",
        ),
        row("task cpu parses", ec2, |r| r.cpu = Some("fast".into()), Client, "cpu"),
        row("task cpu minimum", ec2, |r| r.cpu = Some("64".into()), Client, "cpu"),
        // Fargate
        row(
            "fargate awsvpc",
            fargate,
            |r| r.network_mode = Some(NetworkMode::Bridge),
            Client,
            "networkMode",
        ),
        row("fargate network mode set", fargate, |r| r.network_mode = None, Client, "networkMode"),
        row("fargate task cpu", fargate, |r| r.cpu = None, Client, "cpu"),
        row("fargate task memory", fargate, |r| r.memory = None, Client, "memory"),
        row("fargate size table", fargate, |r| r.memory = Some("4096".into()), Client, "memory"),
        row(
            "fargate links",
            fargate,
            |r| c(r, 0).links = Some(vec!["db".into()]),
            Client,
            "containerDefinitions[0].links",
        ),
        row(
            "fargate privileged",
            fargate,
            |r| c(r, 0).privileged = Some(true),
            Client,
            "containerDefinitions[0].privileged",
        ),
        row(
            "fargate dnsServers",
            fargate,
            |r| c(r, 0).dns_servers = Some(vec!["10.0.0.2".into()]),
            Client,
            "containerDefinitions[0].dnsServers",
        ),
        row(
            "fargate pidMode host",
            fargate,
            |r| r.pid_mode = Some(PidMode::Host),
            Client,
            "pidMode",
        ),
        row("fargate ipcMode", fargate, |r| r.ipc_mode = Some(IpcMode::Task), Client, "ipcMode"),
        row(
            "fargate host volumes",
            fargate,
            |r| {
                r.volumes = Some(vec![Volume {
                    host: Some(HostVolumeProperties { source_path: Some("/data".into()) }),
                    ..volume("data")
                }])
            },
            Client,
            "volumes[0].host.sourcePath",
        ),
        row(
            "fargate docker volumes",
            fargate,
            |r| {
                r.volumes = Some(vec![Volume {
                    docker_volume_configuration: Some(DockerVolumeConfiguration::default()),
                    ..volume("data")
                }])
            },
            Client,
            "volumes[0].dockerVolumeConfiguration",
        ),
        row(
            "fargate awslogs needs execution role",
            fargate,
            |r| c(r, 0).log_configuration = Some(awslogs()),
            Client,
            "executionRoleArn",
        ),
        row(
            "fargate ECR image needs execution role",
            fargate,
            |r| c(r, 0).image = Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1".into()),
            Client,
            "executionRoleArn",
        ),
        row(
            "fargate placement constraints",
            fargate,
            |r| {
                r.placement_constraints = Some(vec![TaskDefinitionPlacementConstraint {
                    r#type: Some(TaskDefinitionPlacementConstraintType::MemberOf),
                    expression: Some("attribute:ecs.instance-type =~ t2.*".into()),
                }])
            },
            Client,
            "placementConstraints",
        ),
        row(
            "fargate capabilities",
            fargate,
            |r| {
                c(r, 0).linux_parameters = Some(LinuxParameters {
                    capabilities: Some(KernelCapabilities {
                        add: Some(vec!["NET_ADMIN".into()]),
                        drop: None,
                    }),
                    ..Default::default()
                })
            },
            Client,
            "containerDefinitions[0].linuxParameters.capabilities.add",
        ),
        // EXTERNAL and MANAGED_INSTANCES
        row(
            "external without awsvpc",
            ec2,
            |r| {
                r.requires_compatibilities = Some(vec![Compatibility::External]);
                r.network_mode = Some(NetworkMode::Awsvpc);
            },
            Client,
            "networkMode",
        ),
        row(
            "managed instances network mode",
            ec2,
            |r| r.requires_compatibilities = Some(vec![Compatibility::ManagedInstances]),
            Client,
            "networkMode",
        ),
        row(
            "managed instances dockerLabels",
            ec2,
            |r| {
                r.requires_compatibilities = Some(vec![Compatibility::ManagedInstances]);
                r.network_mode = Some(NetworkMode::Awsvpc);
                c(r, 0).docker_labels = Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
            },
            Client,
            "containerDefinitions[0].dockerLabels",
        ),
        row(
            "managed instances Linux only",
            ec2,
            |r| {
                r.requires_compatibilities = Some(vec![Compatibility::ManagedInstances]);
                r.network_mode = Some(NetworkMode::Awsvpc);
                r.runtime_platform = Some(berth_wire::ecs::RuntimePlatform {
                    cpu_architecture: None,
                    operating_system_family: Some(OSFamily::WindowsServer2022Full),
                });
            },
            Client,
            "runtimePlatform.operatingSystemFamily",
        ),
        // network modes and port mappings
        row(
            "awsvpc host port = container port",
            ec2,
            |r| {
                r.network_mode = Some(NetworkMode::Awsvpc);
                c(r, 0).port_mappings = Some(vec![port(80, Some(8080))]);
            },
            Client,
            "containerDefinitions[0].portMappings[0].hostPort",
        ),
        row(
            "host mode host port = container port",
            ec2,
            |r| {
                r.network_mode = Some(NetworkMode::Host);
                c(r, 0).port_mappings = Some(vec![port(80, Some(0))]);
            },
            Client,
            "containerDefinitions[0].portMappings[0].hostPort",
        ),
        row(
            "awsvpc hostname",
            ec2,
            |r| {
                r.network_mode = Some(NetworkMode::Awsvpc);
                c(r, 0).hostname = Some("web".into());
            },
            Client,
            "containerDefinitions[0].hostname",
        ),
        row(
            "awsvpc links",
            ec2_two,
            |r| {
                r.network_mode = Some(NetworkMode::Awsvpc);
                c(r, 0).links = Some(vec!["db".into()]);
            },
            Client,
            "containerDefinitions[0].links",
        ),
        row(
            "host links",
            ec2_two,
            |r| {
                r.network_mode = Some(NetworkMode::Host);
                c(r, 0).links = Some(vec!["db".into()]);
            },
            Client,
            "containerDefinitions[0].links",
        ),
        row(
            "no port mappings with none",
            ec2,
            |r| {
                r.network_mode = Some(NetworkMode::None);
                c(r, 0).port_mappings = Some(vec![port(80, None)]);
            },
            Client,
            "containerDefinitions[0].portMappings",
        ),
        row(
            "containerPort required",
            ec2,
            |r| c(r, 0).port_mappings = Some(vec![PortMapping::default()]),
            Client,
            "containerDefinitions[0].portMappings[0].containerPort",
        ),
        row(
            "containerPort >= 1",
            ec2,
            |r| c(r, 0).port_mappings = Some(vec![port(0, None)]),
            Client,
            "containerDefinitions[0].portMappings[0].containerPort",
        ),
        row(
            "containerPort <= 65535",
            ec2,
            |r| c(r, 0).port_mappings = Some(vec![port(70_000, None)]),
            Client,
            "containerDefinitions[0].portMappings[0].containerPort",
        ),
        row(
            "hostPort <= 65535",
            ec2,
            |r| c(r, 0).port_mappings = Some(vec![port(80, Some(70_000))]),
            Client,
            "containerDefinitions[0].portMappings[0].hostPort",
        ),
        row(
            "container port once per protocol",
            ec2,
            |r| c(r, 0).port_mappings = Some(vec![port(80, Some(8080)), port(80, Some(8081))]),
            Client,
            "containerDefinitions[0].portMappings[1].containerPort",
        ),
        row(
            "host port once per protocol",
            ec2_two,
            |r| {
                c(r, 0).port_mappings = Some(vec![port(80, Some(8080))]);
                c(r, 1).port_mappings = Some(vec![port(81, Some(8080))]);
            },
            Client,
            "containerDefinitions[1].portMappings[0].hostPort",
        ),
        row(
            "awsvpc containers share ports",
            ec2_two,
            |r| {
                r.network_mode = Some(NetworkMode::Awsvpc);
                c(r, 0).port_mappings = Some(vec![port(80, None)]);
                c(r, 1).port_mappings = Some(vec![port(80, None)]);
            },
            Client,
            "containerDefinitions[1].portMappings[0].hostPort",
        ),
        row(
            "port range format",
            ec2,
            |r| {
                c(r, 0).port_mappings = Some(vec![PortMapping {
                    container_port_range: Some("8000".into()),
                    ..Default::default()
                }])
            },
            Client,
            "containerDefinitions[0].portMappings[0].containerPortRange",
        ),
        row(
            "port range start < end",
            ec2,
            |r| {
                c(r, 0).port_mappings = Some(vec![PortMapping {
                    container_port_range: Some("9000-8000".into()),
                    ..Default::default()
                }])
            },
            Client,
            "containerDefinitions[0].portMappings[0].containerPortRange",
        ),
        row(
            "port range without ports",
            ec2,
            |r| {
                c(r, 0).port_mappings = Some(vec![PortMapping {
                    container_port_range: Some("8000-8010".into()),
                    container_port: Some(8000),
                    ..Default::default()
                }])
            },
            Client,
            "containerDefinitions[0].portMappings[0].containerPortRange",
        ),
        row(
            "port range overlap",
            ec2,
            |r| {
                c(r, 0).port_mappings = Some(vec![
                    port(8005, None),
                    PortMapping {
                        container_port_range: Some("8000-8010".into()),
                        ..Default::default()
                    },
                ])
            },
            Client,
            "containerDefinitions[0].portMappings[1].containerPortRange",
        ),
        row(
            "port mapping name format",
            ec2,
            |r| {
                c(r, 0).port_mappings =
                    Some(vec![PortMapping { name: Some("Web".into()), ..port(80, None) }])
            },
            Client,
            "containerDefinitions[0].portMappings[0].name",
        ),
        row(
            "port mapping name unique",
            ec2_two,
            |r| {
                c(r, 0).port_mappings =
                    Some(vec![PortMapping { name: Some("web".into()), ..port(80, None) }]);
                c(r, 1).port_mappings =
                    Some(vec![PortMapping { name: Some("web".into()), ..port(81, None) }]);
            },
            Client,
            "containerDefinitions[1].portMappings[0].name",
        ),
    ];
    rows.extend(super::rule_table_more::rows());
    rows
}

#[test]
fn each_rule_rejects_its_violation() {
    let mut failures = Vec::new();
    for row in rows() {
        let mut req = (row.base)();
        (row.mutate)(&mut req);
        let got = validate(&req);
        let ok = match &got {
            Err(e @ ModelError::Client { .. }) => row.kind == Client && e.field() == row.field,
            Err(e @ ModelError::InvalidParameter { .. }) => {
                row.kind == Invalid && e.field() == row.field
            }
            Ok(()) => false,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?} at {}, got {:?}",
                row.rule, row.kind, row.field, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
