//! The second half of the rule table (links, dependsOn, volumes, mount points and the
//! task-level rules): rows in the form [`super::rule_table`] checks.

use super::rule_table::{Client, Invalid, Row, row};
use super::*;

pub(super) fn rows() -> Vec<Row> {
    vec![
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
        row(
            "secrets need executionRoleArn",
            ec2,
            |r| {
                c(r, 0).secrets = Some(vec![berth_wire::ecs::Secret {
                    name: Some("DB".into()),
                    value_from: Some("arn:aws:ssm:us-east-1:123456789012:parameter/db".into()),
                }])
            },
            Client,
            "executionRoleArn",
        ),
        row(
            "repositoryCredentials need executionRoleArn",
            ec2,
            |r| {
                c(r, 0).repository_credentials = Some(berth_wire::ecs::RepositoryCredentials {
                    credentials_parameter: Some(
                        "arn:aws:secretsmanager:us-east-1:123456789012:secret:reg-AbCdEf".into(),
                    ),
                })
            },
            Client,
            "executionRoleArn",
        ),
    ]
}
