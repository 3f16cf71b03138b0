//! The fixtures the seeds refer to, and a valid request for every operation.

use super::*;

/// What an agent advertises that the full task definition needs.
pub(crate) const CAPABILITIES: &[&str] = &[
    "com.amazonaws.ecs.capability.logging-driver.json-file",
    "com.amazonaws.ecs.capability.docker-remote-api.1.18",
    "com.amazonaws.ecs.capability.docker-remote-api.1.19",
    "com.amazonaws.ecs.capability.docker-remote-api.1.21",
    "com.amazonaws.ecs.capability.docker-remote-api.1.25",
    "com.amazonaws.ecs.capability.docker-remote-api.1.29",
    "com.amazonaws.ecs.capability.task-iam-role",
    "ecs.capability.secrets.ssm.environment-variables",
    "ecs.capability.env-files.s3",
    "ecs.capability.container-health-check",
    "ecs.capability.container-ordering",
];

pub(crate) fn arn_of(v: &Value, member: &str) -> String {
    v[member].as_str().unwrap_or_else(|| panic!("no {member} in {v}")).to_string()
}

pub(crate) fn small_td(family: &str) -> Value {
    json!({"family": family, "containerDefinitions": [
        {"name": "a", "image": "berth-demo:latest", "cpu": 8, "memory": 8}]})
}

pub(crate) fn victim_service() -> Value {
    json!({"cluster": CLUSTER, "serviceName": "victim", "taskDefinition": "fz-small",
        "desiredCount": 0})
}

// ---------------------------------------------------------------------------------------------
// Fixtures and seeds.

pub(crate) struct Fixture {
    pub(crate) cluster_arn: String,
    pub(crate) td: String,
    pub(crate) victim_td: String,
    pub(crate) deleted_td: String,
    pub(crate) instance: String,
    pub(crate) victim_instance: String,
    pub(crate) task: String,
    pub(crate) victim_task: String,
    pub(crate) service_arn: String,
    pub(crate) deployment: String,
    pub(crate) revision: String,
}

pub(crate) fn full_td(family: &str) -> Value {
    json!({
        "family": family,
        "taskRoleArn": "arn:aws:iam::123456789012:role/fz-task",
        "executionRoleArn": "arn:aws:iam::123456789012:role/fz-exec",
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "cpu": "512",
        "memory": "1024",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "berth-demo:latest",
                "cpu": 256,
                "memory": 256,
                "memoryReservation": 128,
                "essential": true,
                "portMappings": [
                    {"containerPort": 8080, "hostPort": 0, "protocol": "tcp", "name": "http"},
                    {"containerPort": 9090, "protocol": "udp"}
                ],
                "environment": [{"name": "MODE", "value": "fuzz"}, {"name": "LANG", "value": "C"}],
                "environmentFiles": [{"value": "arn:aws:s3:::bucket/env", "type": "s3"}],
                "secrets": [{"name": "TOKEN",
                    "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/token"}],
                "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10,
                    "timeout": 5, "retries": 3, "startPeriod": 1},
                "command": ["/hello", "--port", "8080"],
                "entryPoint": ["/bin/sh", "-c"],
                "workingDirectory": "/",
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/data",
                    "readOnly": false}],
                "volumesFrom": [{"sourceContainer": "side", "readOnly": true}],
                "dependsOn": [{"containerName": "side", "condition": "START"}],
                "links": ["side"],
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
                "dockerLabels": {"team": "berth", "é": "ü"},
                "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}},
                "stopTimeout": 10,
                "startTimeout": 30,
                "user": "1000:1000",
                "readonlyRootFilesystem": false,
                "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.1"}],
                "linuxParameters": {"initProcessEnabled": true, "sharedMemorySize": 64,
                    "tmpfs": [{"containerPath": "/tmp", "size": 64, "mountOptions": ["rw"]}]},
                "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}]
            },
            {
                "name": "side",
                "image": "berth-demo:latest",
                "memory": 64,
                "essential": false,
                "environment": [{"name": "ROLE", "value": "side"}]
            }
        ],
        "volumes": [
            {"name": "data", "dockerVolumeConfiguration": {"scope": "task", "driver": "local",
                "labels": {"a": "b"}}},
            {"name": "scratch"}
        ],
        "placementConstraints": [{"type": "memberOf",
            "expression": "attribute:ecs.availability-zone == fz-a"}],
        "tags": [{"key": "team", "value": "berth"}, {"key": "env", "value": "fuzz"}]
    })
}

pub(crate) async fn fixture(f: &mut Fuzzer) {
    let c = f
        .ok(
            "CreateCluster",
            json!({"clusterName": CLUSTER, "tags": [{"key": "k", "value": "v"}],
                "settings": [{"name": "containerInsights", "value": "disabled"}]}),
        )
        .await;
    f.fixture.cluster_arn = arn_of(&c["cluster"], "clusterArn");
    f.ok("CreateCluster", json!({"clusterName": "fz-victim"})).await;
    let td = f.ok("RegisterTaskDefinition", full_td(CLUSTER)).await;
    f.fixture.td = arn_of(&td["taskDefinition"], "taskDefinitionArn");
    f.ok("RegisterTaskDefinition", small_td("fz-small")).await;
    let v = f.ok("RegisterTaskDefinition", small_td("fz-victim")).await;
    f.fixture.victim_td = arn_of(&v["taskDefinition"], "taskDefinitionArn");
    f.fixture.deleted_td = f.inactive_td().await;
    f.fixture.instance = f.register_instance("i-00000000000000fz1").await;
    f.fixture.victim_instance = f.register_instance("i-0000000000000victim").await;
    let r =
        f.ok("RunTask", json!({"cluster": CLUSTER, "taskDefinition": CLUSTER, "count": 1})).await;
    assert_eq!(r["failures"], json!([]), "{r}");
    f.fixture.task = arn_of(&r["tasks"][0], "taskArn");
    f.fixture.victim_task = f.run_small().await.expect("a task for StopTask");
    let s = f
        .ok(
            "CreateService",
            json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "fz-small",
                "desiredCount": 1}),
        )
        .await;
    f.fixture.service_arn = arn_of(&s["service"], "serviceArn");
    f.ok("CreateService", victim_service()).await;
    let d = f.ok("ListServiceDeployments", json!({"cluster": CLUSTER, "service": "web"})).await;
    let first = &d["serviceDeployments"][0];
    f.fixture.deployment = arn_of(first, "serviceDeploymentArn");
    f.fixture.revision = arn_of(first, "targetServiceRevisionArn");
}

/// Operations the server answers `UnsupportedFeatureException` for, with plausible inputs.
pub(crate) fn unsupported_seeds() -> Vec<(&'static str, Value)> {
    vec![
        (
            "ExecuteCommand",
            json!({"cluster": CLUSTER, "task": "t", "command": "sh",
            "interactive": true}),
        ),
        (
            "CreateDaemon",
            json!({"daemonName": "fz-daemon", "clusterArn": CLUSTER,
                "daemonTaskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:daemon-task-definition/d:1",
                "capacityProviderArns": ["arn:aws:ecs:us-east-1:123456789012:capacity-provider/mi"],
                "tags": [{"key": "a", "value": "b"}], "clientToken": "t1"}),
        ),
        (
            "CreateExpressGatewayService",
            json!({"executionRoleArn": "arn:aws:iam::123456789012:role/exec",
                "infrastructureRoleArn": "arn:aws:iam::123456789012:role/infra",
                "serviceName": "fz-express", "cluster": CLUSTER,
                "primaryContainer": {"image": "berth-demo:latest", "containerPort": 8080}}),
        ),
    ]
}

/// A valid request for every implemented operation, against the fixtures.
pub(crate) fn seeds(x: &Fixture) -> Vec<(&'static str, Value)> {
    let mut s = vec![
        (
            "CreateCluster",
            json!({"clusterName": "fz-new", "tags": [{"key": "a", "value": "b"}],
                "settings": [{"name": "containerInsights", "value": "enabled"}],
                "configuration": {"executeCommandConfiguration": {"logging": "DEFAULT"}},
                "capacityProviders": ["FARGATE"],
                "defaultCapacityProviderStrategy": [
                    {"capacityProvider": "FARGATE", "weight": 1, "base": 0}]}),
        ),
        (
            "DescribeClusters",
            json!({"clusters": [CLUSTER, x.cluster_arn, "missing"],
                "include": ["STATISTICS", "TAGS", "SETTINGS", "CONFIGURATIONS", "ATTACHMENTS"]}),
        ),
        ("ListClusters", json!({"maxResults": 10, "nextToken": null})),
        ("DeleteCluster", json!({"cluster": "fz-victim"})),
        (
            "UpdateCluster",
            json!({"cluster": CLUSTER,
                "settings": [{"name": "containerInsights", "value": "disabled"}],
                "configuration": {"executeCommandConfiguration": {"logging": "OVERRIDE",
                    "logConfiguration": {"cloudWatchLogGroupName": "g",
                        "s3BucketName": "b", "s3KeyPrefix": "p"}}}}),
        ),
        (
            "UpdateClusterSettings",
            json!({"cluster": CLUSTER,
                "settings": [{"name": "containerInsights", "value": "enabled"}]}),
        ),
        ("RegisterTaskDefinition", full_td("fz-reg")),
        (
            "DescribeTaskDefinition",
            json!({"taskDefinition": format!("{CLUSTER}:1"), "include": ["TAGS"]}),
        ),
        (
            "ListTaskDefinitions",
            json!({"familyPrefix": "fz", "status": "ACTIVE", "sort": "DESC", "maxResults": 5}),
        ),
        (
            "ListTaskDefinitionFamilies",
            json!({"familyPrefix": "fz", "status": "ALL", "maxResults": 5}),
        ),
        ("DeregisterTaskDefinition", json!({"taskDefinition": x.victim_td})),
        ("DeleteTaskDefinitions", json!({"taskDefinitions": [x.deleted_td]})),
        (
            "RegisterContainerInstance",
            json!({
                "cluster": CLUSTER,
                "instanceIdentityDocument": json!({"instanceId": "i-00000000000000fz2",
                    "availabilityZone": "fz-a", "instanceType": "m5.large"}).to_string(),
                "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
                    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2376"]},
                    {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
                    {"name": "GPU", "type": "STRINGSET", "stringSetValue": ["gpu-0"]},
                    {"name": "DISK", "type": "LONG", "longValue": 100_000},
                    {"name": "WEIGHT", "type": "DOUBLE", "doubleValue": 1.5}
                ],
                "versionInfo": {"agentVersion": "1.0", "agentHash": "h",
                    "dockerVersion": "25.0"},
                "attributes": [{"name": "ecs.availability-zone", "value": "fz-a"},
                    {"name": "stack", "value": "prod"}],
                "tags": [{"key": "k", "value": "v"}]
            }),
        ),
        (
            "DeregisterContainerInstance",
            json!({"cluster": CLUSTER, "containerInstance": x.victim_instance, "force": true}),
        ),
        (
            "DescribeContainerInstances",
            json!({"cluster": CLUSTER, "containerInstances": [x.instance, "missing"],
                "include": ["TAGS", "CONTAINER_INSTANCE_HEALTH"]}),
        ),
        (
            "ListContainerInstances",
            json!({"cluster": CLUSTER,
                "filter": "attribute:ecs.availability-zone in [fz-a, fz-b] and runningTasksCount >= 0",
                "status": "ACTIVE", "maxResults": 10}),
        ),
        (
            "UpdateContainerInstancesState",
            json!({"cluster": CLUSTER, "containerInstances": [x.instance], "status": "ACTIVE"}),
        ),
        (
            "PutAttributes",
            json!({"cluster": CLUSTER, "attributes": [
                {"name": "stack", "value": "prod", "targetType": "container-instance",
                    "targetId": x.instance},
                {"name": "flag", "targetId": x.instance}]}),
        ),
        (
            "DeleteAttributes",
            json!({"cluster": CLUSTER, "attributes": [
                {"name": "flag", "targetType": "container-instance", "targetId": x.instance}]}),
        ),
        (
            "ListAttributes",
            json!({"cluster": CLUSTER, "targetType": "container-instance",
                "attributeName": "stack", "attributeValue": "prod", "maxResults": 10}),
        ),
        (
            "RunTask",
            json!({
                "cluster": CLUSTER,
                "taskDefinition": CLUSTER,
                "count": 1,
                "startedBy": "fuzz",
                "group": "family:fz",
                "launchType": "EC2",
                "clientToken": "fz-token",
                "enableECSManagedTags": true,
                "propagateTags": "TASK_DEFINITION",
                "referenceId": "ref",
                "overrides": {
                    "cpu": "512", "memory": "1024",
                    "taskRoleArn": "arn:aws:iam::123456789012:role/other",
                    "containerOverrides": [{
                        "name": "web",
                        "command": ["/hello", "--verbose"],
                        "environment": [{"name": "EXTRA", "value": "1"}],
                        "cpu": 128, "memory": 200, "memoryReservation": 100,
                        "resourceRequirements": [{"type": "GPU", "value": "0"}]
                    }],
                    "ephemeralStorage": {"sizeInGiB": 30}
                },
                "placementConstraints": [{"type": "memberOf",
                    "expression": "attribute:ecs.availability-zone == fz-a"},
                    {"type": "distinctInstance"}],
                "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                    {"type": "binpack", "field": "memory"}, {"type": "random"}],
                "tags": [{"key": "run", "value": "fuzz"}]
            }),
        ),
        (
            "StartTask",
            json!({"cluster": CLUSTER, "taskDefinition": "fz-small",
                "containerInstances": [x.instance], "startedBy": "fuzz", "group": "g",
                "overrides": {"containerOverrides": [{"name": "a",
                    "environment": [{"name": "X", "value": "y"}]}]},
                "tags": [{"key": "a", "value": "b"}]}),
        ),
        ("StopTask", json!({"cluster": CLUSTER, "task": x.victim_task, "reason": "fuzzed"})),
        (
            "DescribeTasks",
            json!({"cluster": CLUSTER, "tasks": [x.task, "missing"], "include": ["TAGS"]}),
        ),
        (
            "ListTasks",
            json!({"cluster": CLUSTER, "containerInstance": x.instance, "family": CLUSTER,
                "startedBy": "fuzz", "desiredStatus": "RUNNING", "launchType": "EC2",
                "maxResults": 10}),
        ),
        (
            "UpdateTaskProtection",
            json!({"cluster": CLUSTER, "tasks": [x.task], "protectionEnabled": true,
                "expiresInMinutes": 60}),
        ),
        ("GetTaskProtection", json!({"cluster": CLUSTER, "tasks": [x.task]})),
        (
            "SubmitTaskStateChange",
            json!({"cluster": CLUSTER, "task": x.task, "status": "RUNNING", "reason": "r",
                "containers": [{"containerName": "web", "runtimeId": "abc", "exitCode": 0,
                    "status": "RUNNING", "reason": "r",
                    "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 8080,
                        "hostPort": 32768, "protocol": "tcp"}]}],
                "pullStartedAt": 1_700_000_000.5, "pullStoppedAt": 1_700_000_001.0,
                "executionStoppedAt": 1_700_000_002.0}),
        ),
        (
            "SubmitContainerStateChange",
            json!({"cluster": CLUSTER, "task": x.task, "containerName": "side",
                "runtimeId": "def", "status": "RUNNING", "exitCode": 0, "reason": "r",
                "networkBindings": [{"bindIP": "::", "containerPort": 9090, "hostPort": 9090,
                    "protocol": "udp", "containerPortRange": "9090-9091",
                    "hostPortRange": "9090-9091"}]}),
        ),
        (
            "CreateService",
            json!({
                "cluster": CLUSTER,
                "serviceName": "fz-new",
                "taskDefinition": "fz-small",
                "desiredCount": 0,
                "launchType": "EC2",
                "schedulingStrategy": "REPLICA",
                "clientToken": "fz-svc",
                "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 50,
                    "deploymentCircuitBreaker": {"enable": true, "rollback": true}},
                "deploymentController": {"type": "ECS"},
                "placementConstraints": [{"type": "distinctInstance"}],
                "placementStrategy": [{"type": "spread", "field": "instanceId"}],
                "healthCheckGracePeriodSeconds": 0,
                "enableECSManagedTags": true,
                "propagateTags": "SERVICE",
                "tags": [{"key": "svc", "value": "fuzz"}]
            }),
        ),
        (
            "UpdateService",
            json!({"cluster": CLUSTER, "service": "web", "desiredCount": 1,
                "taskDefinition": "fz-small", "forceNewDeployment": false,
                "deploymentConfiguration": {"maximumPercent": 150, "minimumHealthyPercent": 100,
                    "deploymentCircuitBreaker": {"enable": false, "rollback": false}},
                "placementConstraints": [],
                "placementStrategy": [{"type": "binpack", "field": "cpu"}],
                "healthCheckGracePeriodSeconds": 5}),
        ),
        ("DeleteService", json!({"cluster": CLUSTER, "service": "victim", "force": false})),
        (
            "DescribeServices",
            json!({"cluster": CLUSTER, "services": ["web", x.service_arn, "missing"],
                "include": ["TAGS"]}),
        ),
        (
            "ListServices",
            json!({"cluster": CLUSTER, "launchType": "EC2", "schedulingStrategy": "REPLICA",
                "maxResults": 10}),
        ),
        (
            "ListServiceDeployments",
            json!({"cluster": CLUSTER, "service": "web", "status": ["SUCCESSFUL", "PENDING"],
                "createdAt": {"before": 4_000_000_000.0, "after": 0}, "maxResults": 5}),
        ),
        ("DescribeServiceDeployments", json!({"serviceDeploymentArns": [x.deployment]})),
        ("DescribeServiceRevisions", json!({"serviceRevisionArns": [x.revision]})),
        (
            "StopServiceDeployment",
            json!({"serviceDeploymentArn": x.deployment, "stopType": "ABORT"}),
        ),
        (
            "TagResource",
            json!({"resourceArn": x.service_arn, "tags": [{"key": "k", "value": "v"},
                {"key": "ü", "value": ""}]}),
        ),
        ("UntagResource", json!({"resourceArn": x.td, "tagKeys": ["env", "nope"]})),
        ("ListTagsForResource", json!({"resourceArn": x.cluster_arn})),
        // Account settings (DeleteAccountSetting's setting is put back after each success).
        (
            "PutAccountSetting",
            json!({"name": "fargateTaskRetirementWaitPeriod", "value": "14",
                "principalArn": "arn:aws:iam::123456789012:root"}),
        ),
        ("PutAccountSettingDefault", json!({"name": "containerInsights", "value": "disabled"})),
        ("DeleteAccountSetting", json!({"name": "fargateTaskRetirementWaitPeriod"})),
        (
            "ListAccountSettings",
            json!({"name": "containerInsights", "value": "disabled", "effectiveSettings": true,
                "maxResults": 5, "principalArn": "arn:aws:iam::123456789012:user/u"}),
        ),
        // Capacity providers (fz-cp is created again after each DeleteCapacityProvider).
        (
            "CreateCapacityProvider",
            json!({"name": "fz-cp", "tags": [{"key": "k", "value": "v"}],
                "autoScalingGroupProvider": {"autoScalingGroupArn": "asg-fz",
                    "managedScaling": {"status": "ENABLED", "targetCapacity": 90,
                        "minimumScalingStepSize": 1, "maximumScalingStepSize": 10,
                        "instanceWarmupPeriod": 60},
                    "managedTerminationProtection": "ENABLED", "managedDraining": "DISABLED"}}),
        ),
        (
            "DescribeCapacityProviders",
            json!({"capacityProviders": ["fz-cp", "FARGATE", "missing"], "include": ["TAGS"],
                "maxResults": 2}),
        ),
        (
            "UpdateCapacityProvider",
            json!({"name": "fz-cp", "autoScalingGroupProvider": {
                "managedScaling": {"status": "DISABLED"},
                "managedTerminationProtection": "DISABLED"}}),
        ),
        (
            "PutClusterCapacityProviders",
            json!({"cluster": CLUSTER, "capacityProviders": ["FARGATE", "fz-cp"],
                "defaultCapacityProviderStrategy": []}),
        ),
        (
            "PutClusterCapacityProviders",
            json!({"cluster": CLUSTER, "capacityProviders": ["FARGATE"],
                "defaultCapacityProviderStrategy": []}),
        ),
        ("DeleteCapacityProvider", json!({"capacityProvider": "fz-cp"})),
    ];
    s.extend(unsupported_seeds());
    s
}
