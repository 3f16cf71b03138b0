//! The derived members: `compatibilities` and `requiresAttributes` as ECS answers them for
//! recorded definitions.

use super::*;

#[test]
fn compatibilities_as_ecs_derives_them() {
    use Compatibility::{Ec2, External, Fargate, ManagedInstances};
    assert_eq!(compatibilities(&ec2()), vec![External, Ec2], "plain bridge");
    assert_eq!(build(&ec2(), &ctx()).compatibilities, Some(vec![External, Ec2]));
    assert_eq!(
        compatibilities(&fargate()),
        vec![Ec2, Fargate, ManagedInstances],
        "awsvpc with a Fargate size"
    );

    let mut r = fargate();
    r.requires_compatibilities = None;
    assert_eq!(
        compatibilities(&r),
        vec![Ec2, Fargate, ManagedInstances],
        "requiresCompatibilities absent"
    );

    let mut r = ec2();
    r.network_mode = Some(NetworkMode::Awsvpc);
    assert_eq!(compatibilities(&r), vec![Ec2, ManagedInstances], "awsvpc without task size");

    let mut r = ec2();
    r.network_mode = Some(NetworkMode::Host);
    assert_eq!(compatibilities(&r), vec![External, Ec2, ManagedInstances], "host");

    let mut r = ec2();
    r.cpu = Some("256".into());
    r.memory = Some("512".into());
    assert_eq!(compatibilities(&r), vec![External, Ec2], "bridge with a Fargate size");

    let mut r = fargate();
    c(&mut r, 0).privileged = Some(true);
    assert_eq!(compatibilities(&r), vec![Ec2, ManagedInstances], "privileged");

    let mut r = fargate();
    c(&mut r, 0).docker_labels = Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
    assert_eq!(compatibilities(&r), vec![Ec2, Fargate], "docker labels");

    let mut r = ec2();
    r.volumes = Some(vec![Volume {
        efs_volume_configuration: Some(EFSVolumeConfiguration {
            file_system_id: Some("fs-1".into()),
            ..Default::default()
        }),
        ..volume("efs")
    }]);
    assert_eq!(compatibilities(&r), vec![Ec2], "EFS in bridge mode");
}

fn attrs(r: &Req) -> Vec<String> {
    let mut v = requires_attributes(r);
    let unique: HashSet<&String> = v.iter().collect();
    assert_eq!(unique.len(), v.len(), "duplicates in {v:?}");
    v.sort();
    v
}

fn names(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|s| s.replace("api.", "com.amazonaws.ecs.capability.docker-remote-api."))
        .collect();
    v.sort();
    v
}

#[test]
fn requires_attributes_for_a_plain_definition_are_empty() {
    assert!(requires_attributes(&ec2()).is_empty());
    assert_eq!(build(&ec2(), &ctx()).requires_attributes, None);
}

/// Fargate, awsvpc, awslogs with an execution role, task role, health check with startPeriod,
/// init process (an ECS answer recorded for such a definition).
#[test]
fn requires_attributes_fargate_web_service() {
    let mut r = fargate();
    r.cpu = Some("1024".into());
    r.memory = Some("2048".into());
    r.execution_role_arn = Some("arn:aws:iam::123456789012:role/exec".into());
    r.task_role_arn = Some("arn:aws:iam::123456789012:role/task".into());
    let c0 = c(&mut r, 0);
    c0.log_configuration = Some(awslogs());
    c0.health_check =
        Some(HealthCheck { start_period: Some(60), ..health(&["CMD-SHELL", "curl -f localhost"]) });
    c0.linux_parameters =
        Some(LinuxParameters { init_process_enabled: Some(true), ..Default::default() });
    assert_eq!(
        attrs(&r),
        names(&[
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "ecs.capability.execution-role-awslogs",
            "api.1.19",
            "com.amazonaws.ecs.capability.task-iam-role",
            "api.1.25",
            "ecs.capability.container-health-check",
            "api.1.18",
            "ecs.capability.task-eni",
            "api.1.29",
        ])
    );
    let td = build(&r, &ctx());
    let built = td.requires_attributes.unwrap();
    assert!(
        built.iter().all(|a| a.value.is_none() && a.target_type.is_none() && a.target_id.is_none())
    );
    assert_eq!(built.len(), 9);
}

/// Health check without startPeriod, private ECR image, awslogs options.
#[test]
fn requires_attributes_ecr_health_check_and_log_options() {
    let mut r = fargate();
    r.execution_role_arn = Some("arn:aws:iam::123456789012:role/exec".into());
    let c0 = c(&mut r, 0);
    c0.image = Some("123456789012.dkr.ecr.eu-central-1.amazonaws.com/rag:latest".into());
    c0.memory_reservation = Some(256);
    c0.log_configuration = Some(LogConfiguration {
        options: Some(BTreeMap::from([
            ("mode".to_string(), "non-blocking".to_string()),
            ("awslogs-create-group".to_string(), "true".to_string()),
        ])),
        ..awslogs()
    });
    assert_eq!(
        attrs(&r),
        names(&[
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "ecs.capability.execution-role-awslogs",
            "com.amazonaws.ecs.capability.ecr-auth",
            "ecs.capability.execution-role-ecr-pull",
            "api.1.19",
            "api.1.28",
            "api.1.29",
            "api.1.21",
            "api.1.18",
            "ecs.capability.task-eni",
        ])
    );
    c(&mut r, 0).health_check = Some(health(&["CMD-SHELL", "true"]));
    let got = attrs(&r);
    assert!(got.contains(&"ecs.capability.container-health-check".to_string()));
    assert!(got.contains(&format!("{REMOTE_API}1.24")));
}

/// EC2 bridge: privileged, private registry credentials, SSM secret, firelens, dependsOn...
#[test]
fn requires_attributes_ec2_features() {
    let mut r = ec2_two();
    r.task_role_arn = Some("arn:aws:iam::123456789012:role/task".into());
    r.execution_role_arn = Some("arn:aws:iam::123456789012:role/exec".into());
    let c0 = c(&mut r, 0);
    c0.privileged = Some(true);
    c0.repository_credentials =
        Some(RepositoryCredentials { credentials_parameter: Some("docker-hub".into()) });
    c0.secrets = Some(vec![
        Secret { name: Some("TOKEN".into()), value_from: Some("/team/token".into()) },
        Secret {
            name: Some("DB".into()),
            value_from: Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:db".into()),
        },
    ]);
    c0.ulimits = Some(vec![Ulimit {
        name: Some(UlimitName::Nofile),
        soft_limit: Some(1),
        hard_limit: Some(2),
    }]);
    c0.environment_files = Some(vec![EnvironmentFile {
        value: Some("arn:aws:s3:::b/a.env".into()),
        r#type: Some(EnvironmentFileType::S3),
    }]);
    c0.depends_on = Some(vec![depends("db", Some(ContainerCondition::Start))]);
    c0.log_configuration = Some(LogConfiguration {
        log_driver: Some(LogDriver::Awsfirelens),
        secret_options: Some(vec![Secret {
            name: Some("apikey".into()),
            value_from: Some("/logs/key".into()),
        }]),
        ..Default::default()
    });
    let c1 = c(&mut r, 1);
    c1.firelens_configuration = Some(FirelensConfiguration {
        r#type: Some(FirelensConfigurationType::Fluentbit),
        options: Some(BTreeMap::from([("config-file-type".to_string(), "s3".to_string())])),
    });
    r.pid_mode = Some(PidMode::Task);
    assert_eq!(
        attrs(&r),
        names(&[
            "com.amazonaws.ecs.capability.logging-driver.awsfirelens",
            "api.1.19",
            "ecs.capability.secrets.ssm.bootstrap.log-driver",
            "ecs.capability.private-registry-authentication.secretsmanager",
            "ecs.capability.secrets.ssm.environment-variables",
            "ecs.capability.secrets.asm.environment-variables",
            "ecs.capability.env-files.s3",
            "api.1.18",
            "com.amazonaws.ecs.capability.privileged-container",
            "ecs.capability.container-ordering",
            "ecs.capability.firelens.fluentbit",
            "ecs.capability.firelens.options.config.s3",
            "com.amazonaws.ecs.capability.task-iam-role",
            "ecs.capability.pid-ipc-namespace-sharing",
        ])
    );
    assert_eq!(validate(&r), Ok(()));
}

#[test]
fn requires_attributes_task_features() {
    let mut r = ec2();
    r.network_mode = Some(NetworkMode::Host);
    r.task_role_arn = Some("arn:aws:iam::123456789012:role/task".into());
    r.volumes = Some(vec![
        Volume {
            efs_volume_configuration: Some(EFSVolumeConfiguration {
                file_system_id: Some("fs-1".into()),
                transit_encryption: Some(EFSTransitEncryption::Enabled),
                authorization_config: Some(EFSAuthorizationConfig {
                    access_point_id: None,
                    iam: Some(EFSAuthorizationConfigIAM::Enabled),
                }),
                ..Default::default()
            }),
            ..volume("efs")
        },
        Volume {
            docker_volume_configuration: Some(DockerVolumeConfiguration {
                scope: Some(Scope::Shared),
                autoprovision: Some(true),
                driver: Some("rexray/ebs".into()),
                ..Default::default()
            }),
            ..volume("ebs")
        },
    ]);
    assert_eq!(validate(&r), Ok(()));
    assert_eq!(
        attrs(&r),
        names(&[
            "com.amazonaws.ecs.capability.task-iam-role",
            "com.amazonaws.ecs.capability.task-iam-role-network-host",
            "ecs.capability.efs",
            "ecs.capability.efsAuth",
            "ecs.capability.docker-plugin.rexray/ebs",
        ])
    );
}

#[test]
fn requires_attributes_order_is_stable() {
    let mut r = fargate();
    r.task_role_arn = Some("arn:aws:iam::123456789012:role/task".into());
    c(&mut r, 0).memory_reservation = Some(128);
    assert_eq!(
        requires_attributes(&r),
        vec![
            format!("{REMOTE_API}1.21"),
            "com.amazonaws.ecs.capability.task-iam-role".to_string(),
            "ecs.capability.task-eni".to_string(),
            format!("{REMOTE_API}1.18"),
        ]
    );
}
