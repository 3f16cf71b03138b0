//! The members ECS derives from a definition rather than taking from the request:
//! `compatibilities` (every launch type whose rules the definition satisfies, judged by the
//! same functions registration uses) and `requiresAttributes` (the container instance
//! capabilities the features used need). Both are pure functions of the request, in a stable
//! order, without duplicates.

use berth_wire::ecs::{Compatibility, LogDriver, NetworkMode, RegisterTaskDefinitionRequest};

use super::facts::{Facts, is_private_ecr, non_empty};
use super::launch_types::{external_issue, fargate_issue, managed_instances_issue};

/// The launch types the definition satisfies, in the order ECS lists them: `EXTERNAL`, `EC2`,
/// `FARGATE`, `MANAGED_INSTANCES`. `EC2` is always present.
pub fn compatibilities(req: &RegisterTaskDefinitionRequest) -> Vec<Compatibility> {
    let facts = Facts::new(req);
    let mut out = Vec::with_capacity(4);
    if external_issue(&facts).is_none() {
        out.push(Compatibility::External);
    }
    out.push(Compatibility::Ec2);
    if fargate_issue(&facts).is_none() {
        out.push(Compatibility::Fargate);
    }
    if managed_instances_issue(&facts).is_none() {
        out.push(Compatibility::ManagedInstances);
    }
    out
}

pub(super) const REMOTE_API: &str = "com.amazonaws.ecs.capability.docker-remote-api.";

/// The container instance attributes ECS requires for the features the definition uses, without
/// duplicates, in a stable order (container features in container order, then task features):
///
/// | Feature | Attributes |
/// |---|---|
/// | `logConfiguration` with driver *d* | `com.amazonaws.ecs.capability.logging-driver.`*d*, `…docker-remote-api.1.19` |
/// | `awslogs` with `executionRoleArn` | `ecs.capability.execution-role-awslogs` |
/// | awslogs option `mode` / `max-buffer-size` | `…docker-remote-api.1.28` |
/// | awslogs option `awslogs-create-group` | `…docker-remote-api.1.29` |
/// | log `secretOptions` | `ecs.capability.secrets.{asm,ssm}.bootstrap.log-driver` |
/// | private Amazon ECR image | `com.amazonaws.ecs.capability.ecr-auth`, plus `ecs.capability.execution-role-ecr-pull` with `executionRoleArn` |
/// | `repositoryCredentials` | `ecs.capability.private-registry-authentication.secretsmanager` |
/// | `secrets` (Secrets Manager ARN / other) | `ecs.capability.secrets.asm.environment-variables` / `ecs.capability.secrets.ssm.environment-variables` |
/// | `environmentFiles` | `ecs.capability.env-files.s3` |
/// | `memoryReservation` | `…docker-remote-api.1.21` |
/// | `ulimits`, `dockerLabels` | `…docker-remote-api.1.18` |
/// | `healthCheck` | `ecs.capability.container-health-check`, and `…docker-remote-api.1.29` with `startPeriod`, else `…1.24` |
/// | `linuxParameters.initProcessEnabled` | `…docker-remote-api.1.25` |
/// | `privileged` | `com.amazonaws.ecs.capability.privileged-container` |
/// | `dependsOn` | `ecs.capability.container-ordering` |
/// | `firelensConfiguration` type *t* | `ecs.capability.firelens.`*t*; `config-file-type` s3/file adds `ecs.capability.firelens.options.config.{s3,file}` |
/// | `taskRoleArn` | `com.amazonaws.ecs.capability.task-iam-role`; in `host` mode also `…task-iam-role-network-host` |
/// | networkMode `awsvpc` | `ecs.capability.task-eni`, `…docker-remote-api.1.18` |
/// | `pidMode` / `ipcMode` | `ecs.capability.pid-ipc-namespace-sharing` |
/// | EFS volume | `ecs.capability.efs`; with `authorizationConfig` also `ecs.capability.efsAuth` |
/// | FSx for Windows File Server volume | `ecs.capability.fsxWindowsFileServer` |
/// | Docker volume with a driver other than `local` | `ecs.capability.docker-plugin.`*driver* |
/// | `proxyConfiguration` | `ecs.capability.aws-appmesh` |
/// | `inferenceAccelerators` | `ecs.capability.task-eia` |
pub fn requires_attributes(req: &RegisterTaskDefinitionRequest) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !out.contains(&name) {
            out.push(name);
        }
    };
    let exec_role = req.execution_role_arn.as_deref().is_some_and(|s| !s.is_empty());
    let secret_kind = |value_from: &str| {
        if value_from.contains(":secretsmanager:") { "asm" } else { "ssm" }
    };

    for c in req.container_definitions.iter().flatten() {
        if let Some(log) = &c.log_configuration {
            if let Some(driver) = log.log_driver {
                add(format!("com.amazonaws.ecs.capability.logging-driver.{}", driver.as_str()));
                add(format!("{REMOTE_API}1.19"));
                if driver == LogDriver::Awslogs {
                    if exec_role {
                        add("ecs.capability.execution-role-awslogs".into());
                    }
                    let options = log.options.as_ref();
                    let has = |k: &str| options.is_some_and(|o| o.contains_key(k));
                    if has("mode") || has("max-buffer-size") {
                        add(format!("{REMOTE_API}1.28"));
                    }
                    if has("awslogs-create-group") {
                        add(format!("{REMOTE_API}1.29"));
                    }
                }
            }
            for s in log.secret_options.iter().flatten() {
                let kind = secret_kind(s.value_from.as_deref().unwrap_or(""));
                add(format!("ecs.capability.secrets.{kind}.bootstrap.log-driver"));
            }
        }
        if c.image.as_deref().is_some_and(is_private_ecr) {
            add("com.amazonaws.ecs.capability.ecr-auth".into());
            if exec_role {
                add("ecs.capability.execution-role-ecr-pull".into());
            }
        }
        if c.repository_credentials.is_some() {
            add("ecs.capability.private-registry-authentication.secretsmanager".into());
        }
        for s in c.secrets.iter().flatten() {
            let kind = secret_kind(s.value_from.as_deref().unwrap_or(""));
            add(format!("ecs.capability.secrets.{kind}.environment-variables"));
        }
        if non_empty(&c.environment_files) {
            add("ecs.capability.env-files.s3".into());
        }
        if c.memory_reservation.is_some() {
            add(format!("{REMOTE_API}1.21"));
        }
        if non_empty(&c.ulimits) || c.docker_labels.as_ref().is_some_and(|m| !m.is_empty()) {
            add(format!("{REMOTE_API}1.18"));
        }
        if let Some(hc) = &c.health_check {
            add("ecs.capability.container-health-check".into());
            // ECS names the one version the health check needs: 1.29 with startPeriod.
            let version = if hc.start_period.is_some() { "1.29" } else { "1.24" };
            add(format!("{REMOTE_API}{version}"));
        }
        if c.linux_parameters.as_ref().is_some_and(|lp| lp.init_process_enabled == Some(true)) {
            add(format!("{REMOTE_API}1.25"));
        }
        if c.privileged == Some(true) {
            add("com.amazonaws.ecs.capability.privileged-container".into());
        }
        if non_empty(&c.depends_on) {
            add("ecs.capability.container-ordering".into());
        }
        if let Some(fl) = &c.firelens_configuration {
            if let Some(t) = fl.r#type {
                add(format!("ecs.capability.firelens.{}", t.as_str()));
            }
            match fl.options.as_ref().and_then(|o| o.get("config-file-type")).map(String::as_str) {
                Some("s3") => add("ecs.capability.firelens.options.config.s3".into()),
                Some("file") => add("ecs.capability.firelens.options.config.file".into()),
                _ => {}
            }
        }
    }

    if req.task_role_arn.as_deref().is_some_and(|s| !s.is_empty()) {
        add("com.amazonaws.ecs.capability.task-iam-role".into());
        if req.network_mode == Some(NetworkMode::Host) {
            add("com.amazonaws.ecs.capability.task-iam-role-network-host".into());
        }
    }
    if req.network_mode == Some(NetworkMode::Awsvpc) {
        add("ecs.capability.task-eni".into());
        add(format!("{REMOTE_API}1.18"));
    }
    if req.pid_mode.is_some() || req.ipc_mode.is_some() {
        add("ecs.capability.pid-ipc-namespace-sharing".into());
    }
    for v in req.volumes.iter().flatten() {
        if let Some(efs) = &v.efs_volume_configuration {
            add("ecs.capability.efs".into());
            if efs.authorization_config.is_some() {
                add("ecs.capability.efsAuth".into());
            }
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() {
            add("ecs.capability.fsxWindowsFileServer".into());
        }
        if let Some(driver) =
            v.docker_volume_configuration.as_ref().and_then(|d| d.driver.as_deref())
            && !driver.is_empty()
            && driver != "local"
        {
            add(format!("ecs.capability.docker-plugin.{driver}"));
        }
    }
    if req.proxy_configuration.is_some() {
        add("ecs.capability.aws-appmesh".into());
    }
    if non_empty(&req.inference_accelerators) {
        add("ecs.capability.task-eia".into());
    }
    out
}
