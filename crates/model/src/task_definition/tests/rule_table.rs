//! One row per rule: a valid base request, one mutation that breaks that rule alone, and the
//! error class and field ECS answers with. [`validate`] must answer exactly that for every row.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Client,
    Invalid,
}
use Kind::{Client, Invalid};

struct Row {
    rule: &'static str,
    base: fn() -> Req,
    mutate: fn(&mut Req),
    kind: Kind,
    field: &'static str,
}

fn row(
    rule: &'static str,
    base: fn() -> Req,
    mutate: fn(&mut Req),
    kind: Kind,
    field: &'static str,
) -> Row {
    Row { rule, base, mutate, kind, field }
}

fn rows() -> Vec<Row> {
    vec![
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
        // links
        row(
            "link target exists",
            ec2,
            |r| c(r, 0).links = Some(vec!["db".into()]),
            Client,
            "containerDefinitions[0].links[0]",
        ),
        row(
            "link not to itself",
            ec2,
            |r| c(r, 0).links = Some(vec!["app".into()]),
            Client,
            "containerDefinitions[0].links[0]",
        ),
        row(
            "link alias non-empty",
            ec2_two,
            |r| c(r, 0).links = Some(vec!["db:".into()]),
            Client,
            "containerDefinitions[0].links[0]",
        ),
        row(
            "links acyclic",
            ec2_two,
            |r| {
                c(r, 0).links = Some(vec!["db".into()]);
                c(r, 1).links = Some(vec!["app:web".into()]);
            },
            Client,
            "containerDefinitions[0].links",
        ),
        // dependsOn
        row(
            "dependency target exists",
            ec2,
            |r| c(r, 0).depends_on = Some(vec![depends("db", Some(ContainerCondition::Start))]),
            Client,
            "containerDefinitions[0].dependsOn[0].containerName",
        ),
        row(
            "dependency not on itself",
            ec2,
            |r| c(r, 0).depends_on = Some(vec![depends("app", Some(ContainerCondition::Start))]),
            Client,
            "containerDefinitions[0].dependsOn[0].containerName",
        ),
        row(
            "dependency condition required",
            ec2_two,
            |r| c(r, 0).depends_on = Some(vec![depends("db", None)]),
            Client,
            "containerDefinitions[0].dependsOn[0].condition",
        ),
        row(
            "HEALTHY needs a health check",
            ec2_two,
            |r| c(r, 0).depends_on = Some(vec![depends("db", Some(ContainerCondition::Healthy))]),
            Client,
            "containerDefinitions[0].dependsOn[0].condition",
        ),
        row(
            "COMPLETE not on essential containers",
            ec2_two,
            |r| c(r, 0).depends_on = Some(vec![depends("db", Some(ContainerCondition::Complete))]),
            Client,
            "containerDefinitions[0].dependsOn[0].condition",
        ),
        row(
            "dependencies acyclic",
            ec2_two,
            |r| {
                c(r, 0).depends_on = Some(vec![depends("db", Some(ContainerCondition::Start))]);
                c(r, 1).depends_on = Some(vec![depends("app", Some(ContainerCondition::Start))]);
            },
            Client,
            "containerDefinitions[0].dependsOn",
        ),
        // volumesFrom
        row(
            "volumesFrom source exists",
            ec2,
            |r| {
                c(r, 0).volumes_from =
                    Some(vec![VolumeFrom { source_container: Some("db".into()), read_only: None }])
            },
            Client,
            "containerDefinitions[0].volumesFrom[0].sourceContainer",
        ),
        row(
            "volumesFrom not itself",
            ec2,
            |r| {
                c(r, 0).volumes_from =
                    Some(vec![VolumeFrom { source_container: Some("app".into()), read_only: None }])
            },
            Client,
            "containerDefinitions[0].volumesFrom[0].sourceContainer",
        ),
        // mountPoints
        row(
            "mount volume defined",
            ec2,
            |r| {
                c(r, 0).mount_points = Some(vec![MountPoint {
                    source_volume: Some("data".into()),
                    container_path: Some("/data".into()),
                    read_only: None,
                }])
            },
            Client,
            "containerDefinitions[0].mountPoints[0].sourceVolume",
        ),
        row(
            "mount path absolute",
            ec2,
            |r| {
                r.volumes = Some(vec![volume("data")]);
                c(r, 0).mount_points = Some(vec![MountPoint {
                    source_volume: Some("data".into()),
                    container_path: Some("data".into()),
                    read_only: None,
                }]);
            },
            Client,
            "containerDefinitions[0].mountPoints[0].containerPath",
        ),
        row(
            "mount path required",
            ec2,
            |r| {
                r.volumes = Some(vec![volume("data")]);
                c(r, 0).mount_points = Some(vec![MountPoint {
                    source_volume: Some("data".into()),
                    container_path: None,
                    read_only: None,
                }]);
            },
            Client,
            "containerDefinitions[0].mountPoints[0].containerPath",
        ),
        // volumes
        row(
            "volume name required",
            ec2,
            |r| r.volumes = Some(vec![Volume::default()]),
            Client,
            "volumes[0].name",
        ),
        row(
            "volume name characters",
            ec2,
            |r| r.volumes = Some(vec![volume("my data")]),
            Client,
            "volumes[0].name",
        ),
        row(
            "volume name unique",
            ec2,
            |r| r.volumes = Some(vec![volume("data"), volume("data")]),
            Client,
            "volumes[1].name",
        ),
        row(
            "host sourcePath absolute",
            ec2,
            |r| {
                r.volumes = Some(vec![Volume {
                    host: Some(HostVolumeProperties { source_path: Some("data".into()) }),
                    ..volume("data")
                }])
            },
            Client,
            "volumes[0].host.sourcePath",
        ),
        row(
            "one volume kind",
            ec2,
            |r| {
                r.volumes = Some(vec![Volume {
                    host: Some(HostVolumeProperties::default()),
                    docker_volume_configuration: Some(DockerVolumeConfiguration::default()),
                    ..volume("data")
                }])
            },
            Client,
            "volumes[0]",
        ),
        row(
            "autoprovision needs shared scope",
            ec2,
            |r| {
                r.volumes = Some(vec![Volume {
                    docker_volume_configuration: Some(DockerVolumeConfiguration {
                        scope: Some(Scope::Task),
                        autoprovision: Some(true),
                        ..Default::default()
                    }),
                    ..volume("data")
                }])
            },
            Client,
            "volumes[0].dockerVolumeConfiguration.autoprovision",
        ),
        row(
            "EFS IAM needs transit encryption",
            ec2,
            |r| {
                r.volumes = Some(vec![Volume {
                    efs_volume_configuration: Some(EFSVolumeConfiguration {
                        file_system_id: Some("fs-1234".into()),
                        authorization_config: Some(EFSAuthorizationConfig {
                            access_point_id: None,
                            iam: Some(EFSAuthorizationConfigIAM::Enabled),
                        }),
                        ..Default::default()
                    }),
                    ..volume("data")
                }])
            },
            Client,
            "volumes[0].efsVolumeConfiguration.transitEncryption",
        ),
        row(
            "EFS access point root directory",
            ec2,
            |r| {
                r.volumes = Some(vec![Volume {
                    efs_volume_configuration: Some(EFSVolumeConfiguration {
                        file_system_id: Some("fs-1234".into()),
                        root_directory: Some("/data".into()),
                        transit_encryption: Some(EFSTransitEncryption::Enabled),
                        authorization_config: Some(EFSAuthorizationConfig {
                            access_point_id: Some("fsap-1234".into()),
                            iam: None,
                        }),
                        ..Default::default()
                    }),
                    ..volume("data")
                }])
            },
            Client,
            "volumes[0].efsVolumeConfiguration.rootDirectory",
        ),
        // healthCheck
        row(
            "health command non-empty",
            ec2,
            |r| c(r, 0).health_check = Some(health(&[])),
            Client,
            "containerDefinitions[0].healthCheck.command",
        ),
        row(
            "health command CMD/CMD-SHELL",
            ec2,
            |r| c(r, 0).health_check = Some(health(&["curl", "localhost"])),
            Client,
            "containerDefinitions[0].healthCheck.command",
        ),
        row(
            "health command has a command",
            ec2,
            |r| c(r, 0).health_check = Some(health(&["CMD"])),
            Client,
            "containerDefinitions[0].healthCheck.command",
        ),
        row(
            "health interval 5-300",
            ec2,
            |r| {
                c(r, 0).health_check =
                    Some(HealthCheck { interval: Some(4), ..health(&["CMD", "true"]) })
            },
            Client,
            "containerDefinitions[0].healthCheck.interval",
        ),
        row(
            "health timeout 2-120",
            ec2,
            |r| {
                c(r, 0).health_check =
                    Some(HealthCheck { timeout: Some(121), ..health(&["CMD", "true"]) })
            },
            Client,
            "containerDefinitions[0].healthCheck.timeout",
        ),
        row(
            "health retries 1-10",
            ec2,
            |r| {
                c(r, 0).health_check =
                    Some(HealthCheck { retries: Some(0), ..health(&["CMD", "true"]) })
            },
            Client,
            "containerDefinitions[0].healthCheck.retries",
        ),
        row(
            "health startPeriod 0-300",
            ec2,
            |r| {
                c(r, 0).health_check =
                    Some(HealthCheck { start_period: Some(301), ..health(&["CMD", "true"]) })
            },
            Client,
            "containerDefinitions[0].healthCheck.startPeriod",
        ),
        // ulimits, environment, environmentFiles
        row(
            "ulimit soft <= hard",
            ec2,
            |r| {
                c(r, 0).ulimits = Some(vec![Ulimit {
                    name: Some(UlimitName::Nofile),
                    soft_limit: Some(2048),
                    hard_limit: Some(1024),
                }])
            },
            Client,
            "containerDefinitions[0].ulimits[0].softLimit",
        ),
        row(
            "environment names non-empty",
            ec2,
            |r| {
                c(r, 0).environment =
                    Some(vec![KeyValuePair { name: Some(String::new()), value: Some("v".into()) }])
            },
            Client,
            "containerDefinitions[0].environment[0].name",
        ),
        row(
            "environment file type",
            ec2,
            |r| {
                c(r, 0).environment_files = Some(vec![EnvironmentFile {
                    value: Some("arn:aws:s3:::bucket/app.env".into()),
                    r#type: None,
                }])
            },
            Client,
            "containerDefinitions[0].environmentFiles[0].type",
        ),
        row(
            "environment file is an S3 object ARN",
            ec2,
            |r| {
                c(r, 0).environment_files = Some(vec![EnvironmentFile {
                    value: Some("s3://bucket/app.env".into()),
                    r#type: Some(EnvironmentFileType::S3),
                }])
            },
            Client,
            "containerDefinitions[0].environmentFiles[0].value",
        ),
        // timeouts
        row(
            "stopTimeout <= 120",
            ec2,
            |r| c(r, 0).stop_timeout = Some(121),
            Client,
            "containerDefinitions[0].stopTimeout",
        ),
        row(
            "stopTimeout >= 0",
            ec2,
            |r| c(r, 0).stop_timeout = Some(-1),
            Client,
            "containerDefinitions[0].stopTimeout",
        ),
        row(
            "startTimeout >= 0",
            ec2,
            |r| c(r, 0).start_timeout = Some(-1),
            Client,
            "containerDefinitions[0].startTimeout",
        ),
        // placement constraints
        row(
            "at most 10 placement constraints",
            ec2,
            |r| {
                let pc = TaskDefinitionPlacementConstraint {
                    r#type: Some(TaskDefinitionPlacementConstraintType::MemberOf),
                    expression: Some("attribute:ecs.os-type == linux".into()),
                };
                r.placement_constraints = Some(vec![pc; 11]);
            },
            Client,
            "placementConstraints",
        ),
        row(
            "placement constraint type",
            ec2,
            |r| {
                r.placement_constraints = Some(vec![TaskDefinitionPlacementConstraint {
                    r#type: None,
                    expression: Some("attribute:ecs.os-type == linux".into()),
                }])
            },
            Client,
            "placementConstraints[0].type",
        ),
        row(
            "memberOf expression",
            ec2,
            |r| {
                r.placement_constraints = Some(vec![TaskDefinitionPlacementConstraint {
                    r#type: Some(TaskDefinitionPlacementConstraintType::MemberOf),
                    expression: None,
                }])
            },
            Client,
            "placementConstraints[0].expression",
        ),
        // proxy configuration
        row(
            "proxy container exists",
            fargate,
            |r| {
                r.proxy_configuration = Some(ProxyConfiguration {
                    container_name: Some("envoy".into()),
                    ..Default::default()
                })
            },
            Client,
            "proxyConfiguration.containerName",
        ),
        row(
            "proxy needs awsvpc",
            ec2,
            |r| {
                r.proxy_configuration = Some(ProxyConfiguration {
                    container_name: Some("app".into()),
                    ..Default::default()
                })
            },
            Client,
            "proxyConfiguration",
        ),
        // ephemeral storage
        row(
            "ephemeral storage >= 21",
            fargate,
            |r| r.ephemeral_storage = Some(EphemeralStorage { size_in_gi_b: Some(20) }),
            Client,
            "ephemeralStorage.sizeInGiB",
        ),
        row(
            "ephemeral storage <= 200",
            fargate,
            |r| r.ephemeral_storage = Some(EphemeralStorage { size_in_gi_b: Some(201) }),
            Client,
            "ephemeralStorage.sizeInGiB",
        ),
        // tags
        row(
            "at most 50 tags",
            ec2,
            |r| r.tags = Some((0..51).map(|i| tag(&format!("k{i}"), "v")).collect()),
            Invalid,
            "tags",
        ),
        row(
            "tag key non-empty",
            ec2,
            |r| r.tags = Some(vec![tag("", "v")]),
            Invalid,
            "tags[0].key",
        ),
        row(
            "tag key <= 128",
            ec2,
            |r| r.tags = Some(vec![tag(&"k".repeat(129), "v")]),
            Invalid,
            "tags[0].key",
        ),
        row(
            "tag key characters",
            ec2,
            |r| r.tags = Some(vec![tag("a*b", "v")]),
            Invalid,
            "tags[0].key",
        ),
        row(
            "tag value <= 256",
            ec2,
            |r| r.tags = Some(vec![tag("k", &"v".repeat(257))]),
            Invalid,
            "tags[0].value",
        ),
        row(
            "tag key not aws:",
            ec2,
            |r| r.tags = Some(vec![tag("AWS:owner", "v")]),
            Invalid,
            "tags[0].key",
        ),
        row(
            "tag keys unique",
            ec2,
            |r| r.tags = Some(vec![tag("team", "a"), tag("team", "b")]),
            Invalid,
            "tags[1].key",
        ),
    ]
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
