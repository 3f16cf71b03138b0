//! The rules of [`super`] as tables and examples: every rule has a row that breaks it (and
//! only it) on a request that is otherwise valid, and every valid shape ECS accepts passes.
//! Shared fixtures live here; each submodule tests one part of the module.

use std::collections::{BTreeMap, HashSet};

use berth_wire::ecs::{
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency,
    DockerVolumeConfiguration, EFSAuthorizationConfig, EFSAuthorizationConfigIAM,
    EFSTransitEncryption, EFSVolumeConfiguration, EnvironmentFile, EnvironmentFileType,
    EphemeralStorage, FirelensConfiguration, FirelensConfigurationType, HealthCheck,
    HostVolumeProperties, IpcMode, KernelCapabilities, KeyValuePair, LinuxParameters,
    LogConfiguration, LogDriver, MountPoint, NetworkMode, OSFamily, PidMode, PortMapping,
    ProxyConfiguration, RegisterTaskDefinitionRequest, RepositoryCredentials, Scope, Secret, Tag,
    TaskDefinitionPlacementConstraint, TaskDefinitionPlacementConstraintType, TaskDefinitionStatus,
    TransportProtocol, Ulimit, UlimitName, Volume, VolumeFrom,
};

use super::derived::REMOTE_API;
use super::*;

mod derived_members;
mod record;
mod rule_table;
mod rule_table_more;
mod sizes;

type Req = RegisterTaskDefinitionRequest;

fn container(name: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some("nginx:latest".into()),
        memory: Some(512),
        ..Default::default()
    }
}

/// EC2, bridge (default), one container with memory.
fn ec2() -> Req {
    Req {
        family: Some("web".into()),
        container_definitions: Some(vec![container("app")]),
        ..Default::default()
    }
}

/// Same with a second container "db".
fn ec2_two() -> Req {
    let mut r = ec2();
    r.container_definitions.as_mut().unwrap().push(container("db"));
    r
}

/// Fargate 256/512 awsvpc, one container without memory.
fn fargate() -> Req {
    Req {
        family: Some("api".into()),
        network_mode: Some(NetworkMode::Awsvpc),
        requires_compatibilities: Some(vec![Compatibility::Fargate]),
        cpu: Some("256".into()),
        memory: Some("512".into()),
        container_definitions: Some(vec![ContainerDefinition {
            name: Some("app".into()),
            image: Some("nginx:latest".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn c(r: &mut Req, i: usize) -> &mut ContainerDefinition {
    &mut r.container_definitions.as_mut().unwrap()[i]
}

fn port(container_port: i32, host_port: Option<i32>) -> PortMapping {
    PortMapping { container_port: Some(container_port), host_port, ..Default::default() }
}

fn volume(name: &str) -> Volume {
    Volume { name: Some(name.into()), ..Default::default() }
}

fn tag(k: &str, v: &str) -> Tag {
    Tag { key: Some(k.into()), value: Some(v.into()) }
}

fn depends(target: &str, condition: Option<ContainerCondition>) -> ContainerDependency {
    ContainerDependency { container_name: Some(target.into()), condition }
}

fn health(cmd: &[&str]) -> HealthCheck {
    HealthCheck { command: Some(cmd.iter().map(|s| s.to_string()).collect()), ..Default::default() }
}

fn awslogs() -> LogConfiguration {
    LogConfiguration { log_driver: Some(LogDriver::Awslogs), ..Default::default() }
}

#[test]
fn bases_are_valid() {
    for base in [ec2 as fn() -> Req, ec2_two, fargate] {
        assert_eq!(validate(&base()), Ok(()));
    }
}

fn valid_cases() -> Vec<(&'static str, Req)> {
    let mut cases = vec![("ec2 bridge with memory", ec2()), ("fargate 256/512", fargate())];

    let mut r = fargate();
    r.cpu = Some("1 vCPU".into());
    r.memory = Some("2 GB".into());
    cases.push(("fargate with vCPU/GB strings", r));

    let mut r = ec2();
    r.container_definitions = Some(vec![container("web"), container("api"), container("migrate")]);
    c(&mut r, 0).depends_on = Some(vec![depends("api", Some(ContainerCondition::Healthy))]);
    c(&mut r, 1).health_check = Some(health(&["CMD-SHELL", "curl -f localhost || exit 1"]));
    c(&mut r, 1).depends_on = Some(vec![depends("migrate", Some(ContainerCondition::Success))]);
    c(&mut r, 2).essential = Some(false);
    cases.push(("dependsOn chain without cycle", r));

    let mut r = ec2_two();
    c(&mut r, 0).links = Some(vec!["db:database".into()]);
    c(&mut r, 0).port_mappings = Some(vec![port(80, Some(0)), port(80, None)]);
    c(&mut r, 0).port_mappings.as_mut().unwrap()[1].protocol = Some(TransportProtocol::Udp);
    c(&mut r, 1).port_mappings = Some(vec![port(80, Some(0))]);
    cases.push(("bridge links, dynamic ports, tcp+udp on one port", r));

    let mut r = fargate();
    c(&mut r, 0).port_mappings = Some(vec![
        PortMapping { name: Some("web-80-tcp".into()), ..port(80, Some(80)) },
        PortMapping { container_port_range: Some("8000-8010".into()), ..Default::default() },
    ]);
    cases.push(("awsvpc matching host port and a port range", r));

    // What the CDK sends: empty lists of Fargate-unsupported parameters.
    let mut r = fargate();
    let c0 = c(&mut r, 0);
    c0.links = Some(vec![]);
    c0.dns_servers = Some(vec![]);
    c0.dns_search_domains = Some(vec![]);
    c0.extra_hosts = Some(vec![]);
    c0.docker_security_options = Some(vec![]);
    c0.ulimits = Some(vec![]);
    c0.docker_labels = Some(BTreeMap::new());
    cases.push(("fargate with empty lists", r));

    let mut r = fargate();
    r.execution_role_arn = Some("arn:aws:iam::123456789012:role/exec".into());
    r.volumes = Some(vec![Volume {
        efs_volume_configuration: Some(EFSVolumeConfiguration {
            file_system_id: Some("fs-1234".into()),
            root_directory: Some("/".into()),
            transit_encryption: Some(EFSTransitEncryption::Enabled),
            authorization_config: Some(EFSAuthorizationConfig {
                access_point_id: Some("fsap-1234".into()),
                iam: Some(EFSAuthorizationConfigIAM::Enabled),
            }),
            ..Default::default()
        }),
        ..volume("shared")
    }]);
    let c0 = c(&mut r, 0);
    c0.image = Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app@sha256:abc".into());
    c0.log_configuration = Some(awslogs());
    c0.mount_points = Some(vec![MountPoint {
        source_volume: Some("shared".into()),
        container_path: Some("/mnt/shared".into()),
        read_only: Some(true),
    }]);
    c0.linux_parameters = Some(LinuxParameters {
        capabilities: Some(KernelCapabilities { add: Some(vec!["SYS_PTRACE".into()]), drop: None }),
        init_process_enabled: Some(true),
        ..Default::default()
    });
    r.tags = Some((0..50).map(|i| tag(&format!("key {i}:/=+-@_."), "value")).collect());
    cases.push(("fargate with ECR, awslogs, EFS access point, 50 tags", r));

    let mut r = ec2();
    r.network_mode = Some(NetworkMode::Host);
    r.requires_compatibilities =
        Some(vec![Compatibility::Ec2, Compatibility::External, Compatibility::ManagedInstances]);
    c(&mut r, 0).port_mappings = Some(vec![port(8080, None)]);
    cases.push(("host mode on EC2, EXTERNAL and MANAGED_INSTANCES", r));

    let mut r = ec2();
    r.cpu = Some("0.5 vcpu".into());
    r.memory = Some("1GB".into());
    c(&mut r, 0).memory = None;
    cases.push(("EC2 with task size and no container memory", r));
    cases
}

#[test]
fn valid_requests_pass() {
    for (label, req) in valid_cases() {
        assert_eq!(validate(&req), Ok(()), "{label}");
    }
}

fn ctx() -> RegisterContext<'static> {
    RegisterContext {
        region: "eu-west-1",
        account_id: "123456789012",
        revision: 3,
        registered_at: 1_700_000_000.5,
        registered_by: "arn:aws:iam::123456789012:user/dev",
    }
}

#[test]
fn errors_name_containers_and_use_ecs_wording() {
    let mut r = ec2();
    c(&mut r, 0).memory = None;
    assert_eq!(
        validate(&r).unwrap_err().to_string(),
        "Invalid setting for container 'app'. At least one of 'memory' or 'memoryReservation' must be specified."
    );
    let mut r = ec2();
    r.network_mode = Some(NetworkMode::Awsvpc);
    c(&mut r, 0).port_mappings = Some(vec![port(80, Some(81))]);
    assert_eq!(
        validate(&r).unwrap_err().to_string(),
        "When networkMode=awsvpc, the host ports and container ports in port mappings must match."
    );
    let mut r = ec2();
    r.container_definitions = Some(vec![]);
    assert_eq!(validate(&r).unwrap_err().to_string(), "Container list cannot be empty.");
    let mut r = ec2();
    r.container_definitions = Some(vec![container("a"), container("b"), container("c")]);
    c(&mut r, 0).depends_on = Some(vec![depends("b", Some(ContainerCondition::Start))]);
    c(&mut r, 1).depends_on = Some(vec![depends("c", Some(ContainerCondition::Start))]);
    c(&mut r, 2).depends_on = Some(vec![depends("a", Some(ContainerCondition::Start))]);
    let err = validate(&r).unwrap_err();
    assert_eq!(err.field(), "containerDefinitions[0].dependsOn");
    assert!(err.to_string().contains("a -> b -> c -> a"), "{err}");
}
