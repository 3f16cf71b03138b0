//! Launch type compatibility (rule 4 of the module's list): what Fargate, EXTERNAL (ECS
//! Anywhere) and ECS Managed Instances refuse; EC2 refuses nothing beyond the general rules.
//! Each `*_issue` function returns the first reason a definition cannot run on its launch
//! type, or `None`; the same functions decide registration (for the launch types the request
//! names) and the derived `compatibilities` (for all of them), so the two never disagree.

use berth_wire::ecs::{Compatibility, LogDriver, NetworkMode, OSFamily, PidMode, ResourceType};

use super::facts::{Facts, cfield, client, is_private_ecr, non_empty};
use super::resources::fargate_memory_allowed;
use crate::ModelError;

/// The first launch type in `requiresCompatibilities` the definition does not satisfy, as its
/// first reason (rule 4).
pub(super) fn check_requires_compatibilities(f: &Facts) -> Result<(), ModelError> {
    for compat in f.req.requires_compatibilities.iter().flatten() {
        let issue = match compat {
            Compatibility::Fargate => fargate_issue(f),
            Compatibility::External => external_issue(f),
            Compatibility::ManagedInstances => managed_instances_issue(f),
            Compatibility::Ec2 => None,
        };
        if let Some(e) = issue {
            return Err(e);
        }
    }
    Ok(())
}

/// The first reason the definition cannot run on Fargate, if any.
pub(super) fn fargate_issue(f: &Facts) -> Option<ModelError> {
    let req = f.req;
    if f.mode != NetworkMode::Awsvpc {
        return Some(client("networkMode", "Fargate only supports network mode 'awsvpc'."));
    }
    let Some(raw_cpu) = req.cpu.as_deref() else {
        return Some(client("cpu", "Fargate requires that 'cpu' be defined at the task level."));
    };
    let Some(raw_memory) = req.memory.as_deref() else {
        return Some(client(
            "memory",
            "Fargate requires that 'memory' be defined at the task level.",
        ));
    };
    let pair_ok =
        matches!((f.task_cpu, f.task_memory), (Some(c), Some(m)) if fargate_memory_allowed(c, m));
    if !pair_ok {
        return Some(client(
            "memory",
            format!(
                "No Fargate configuration exists for given values: {} CPU, {} memory. See the Amazon \
                 ECS documentation for the valid values.",
                raw_cpu.trim(),
                raw_memory.trim()
            ),
        ));
    }
    if req.pid_mode == Some(PidMode::Host) {
        return Some(client("pidMode", "The 'host' pidMode is not supported on Fargate."));
    }
    if req.ipc_mode.is_some() {
        return Some(client("ipcMode", "The 'ipcMode' parameter is not supported on Fargate."));
    }
    if non_empty(&req.placement_constraints) {
        return Some(client(
            "placementConstraints",
            "Task placement constraints are not supported on Fargate.",
        ));
    }
    if non_empty(&req.inference_accelerators) {
        return Some(client(
            "inferenceAccelerators",
            "Elastic Inference accelerators are not supported on Fargate.",
        ));
    }
    for (i, v) in f.volumes().iter().enumerate() {
        let vname = v.name.as_deref().unwrap_or("");
        if v.host.as_ref().is_some_and(|h| h.source_path.as_deref().is_some_and(|p| !p.is_empty()))
        {
            return Some(client(
                format!("volumes[{i}].host.sourcePath"),
                format!(
                    "Volume '{vname}': host 'sourcePath' volumes are not supported on Fargate."
                ),
            ));
        }
        if v.docker_volume_configuration.is_some() {
            return Some(client(
                format!("volumes[{i}].dockerVolumeConfiguration"),
                format!(
                    "Volume '{vname}': 'dockerVolumeConfiguration' is not supported on Fargate."
                ),
            ));
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() {
            return Some(client(
                format!("volumes[{i}].fsxWindowsFileServerVolumeConfiguration"),
                format!(
                    "Volume '{vname}': FSx for Windows File Server volumes are not supported on Fargate."
                ),
            ));
        }
    }
    let has_exec_role = req.execution_role_arn.as_deref().is_some_and(|s| !s.is_empty());
    for (i, c) in f.containers.iter().enumerate() {
        let name = f.name(i);
        let unsupported = |field: &str| {
            Some(client(
                cfield(i, field),
                format!(
                    "Invalid setting for container '{name}'. '{field}' is not supported on Fargate."
                ),
            ))
        };
        if non_empty(&c.links) {
            return unsupported("links");
        }
        if c.privileged == Some(true) {
            return unsupported("privileged");
        }
        if c.disable_networking == Some(true) {
            return unsupported("disableNetworking");
        }
        if non_empty(&c.dns_servers) {
            return unsupported("dnsServers");
        }
        if non_empty(&c.dns_search_domains) {
            return unsupported("dnsSearchDomains");
        }
        if non_empty(&c.extra_hosts) {
            return unsupported("extraHosts");
        }
        if non_empty(&c.docker_security_options) {
            return unsupported("dockerSecurityOptions");
        }
        if c.resource_requirements.iter().flatten().any(|r| r.r#type == Some(ResourceType::Gpu)) {
            return unsupported("resourceRequirements");
        }
        if let Some(lp) = &c.linux_parameters {
            if non_empty(&lp.devices) {
                return unsupported("linuxParameters.devices");
            }
            if lp.shared_memory_size.is_some() {
                return unsupported("linuxParameters.sharedMemorySize");
            }
            if non_empty(&lp.tmpfs) {
                return unsupported("linuxParameters.tmpfs");
            }
            if lp.max_swap.is_some() {
                return unsupported("linuxParameters.maxSwap");
            }
            if lp.swappiness.is_some() {
                return unsupported("linuxParameters.swappiness");
            }
            let adds = lp.capabilities.as_ref().and_then(|k| k.add.as_ref());
            if adds.into_iter().flatten().any(|cap| cap.as_str() != "SYS_PTRACE") {
                return Some(client(
                    cfield(i, "linuxParameters.capabilities.add"),
                    format!(
                        "Invalid setting for container '{name}'. Fargate only supports adding the \
                         'SYS_PTRACE' kernel capability."
                    ),
                ));
            }
        }
        if !has_exec_role {
            let awslogs = c
                .log_configuration
                .as_ref()
                .is_some_and(|l| l.log_driver == Some(LogDriver::Awslogs));
            if awslogs {
                return Some(client(
                    "executionRoleArn",
                    "Fargate requires task definition to have execution role ARN to support log driver awslogs.",
                ));
            }
            if c.image.as_deref().is_some_and(is_private_ecr) {
                return Some(client(
                    "executionRoleArn",
                    "Fargate requires task definition to have execution role ARN to support ECR images.",
                ));
            }
        }
    }
    None
}

/// The first reason the definition cannot run on external instances (ECS Anywhere), if any.
pub(super) fn external_issue(f: &Facts) -> Option<ModelError> {
    let req = f.req;
    if f.mode == NetworkMode::Awsvpc {
        return Some(client(
            "networkMode",
            "Network mode 'awsvpc' is not supported for the EXTERNAL launch type.",
        ));
    }
    for (i, v) in f.volumes().iter().enumerate() {
        if v.efs_volume_configuration.is_some() {
            return Some(client(
                format!("volumes[{i}].efsVolumeConfiguration"),
                "Amazon EFS volumes are not supported for the EXTERNAL launch type.",
            ));
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() {
            return Some(client(
                format!("volumes[{i}].fsxWindowsFileServerVolumeConfiguration"),
                "FSx for Windows File Server volumes are not supported for the EXTERNAL launch type.",
            ));
        }
    }
    if non_empty(&req.inference_accelerators) {
        return Some(client(
            "inferenceAccelerators",
            "Elastic Inference accelerators are not supported for the EXTERNAL launch type.",
        ));
    }
    if req.proxy_configuration.is_some() {
        return Some(client(
            "proxyConfiguration",
            "Proxy configuration is not supported for the EXTERNAL launch type.",
        ));
    }
    None
}

/// The first reason the definition cannot run on ECS Managed Instances, if any.
pub(super) fn managed_instances_issue(f: &Facts) -> Option<ModelError> {
    let req = f.req;
    if !matches!(req.network_mode, Some(NetworkMode::Awsvpc | NetworkMode::Host)) {
        return Some(client(
            "networkMode",
            "Amazon ECS Managed Instances requires network mode 'awsvpc' or 'host'.",
        ));
    }
    let os = req.runtime_platform.as_ref().and_then(|p| p.operating_system_family);
    if os.is_some_and(|os| os != OSFamily::Linux) {
        return Some(client(
            "runtimePlatform.operatingSystemFamily",
            "Amazon ECS Managed Instances only supports Linux containers.",
        ));
    }
    let unsupported = |field: String, what: &str| {
        Some(client(field, format!("'{what}' is not supported on Amazon ECS Managed Instances.")))
    };
    if req.ipc_mode.is_some() {
        return unsupported("ipcMode".into(), "ipcMode");
    }
    if req.ephemeral_storage.is_some() {
        return unsupported("ephemeralStorage".into(), "ephemeralStorage");
    }
    if non_empty(&req.inference_accelerators) {
        return unsupported("inferenceAccelerators".into(), "inferenceAccelerators");
    }
    if req.proxy_configuration.is_some() {
        return unsupported("proxyConfiguration".into(), "proxyConfiguration");
    }
    for (i, v) in f.volumes().iter().enumerate() {
        if v.host.as_ref().is_some_and(|h| h.source_path.as_deref().is_some_and(|p| !p.is_empty()))
        {
            return unsupported(format!("volumes[{i}].host.sourcePath"), "sourcePath");
        }
        if v.docker_volume_configuration.is_some() {
            return unsupported(
                format!("volumes[{i}].dockerVolumeConfiguration"),
                "dockerVolumeConfiguration",
            );
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() {
            return unsupported(
                format!("volumes[{i}].fsxWindowsFileServerVolumeConfiguration"),
                "fsxWindowsFileServerVolumeConfiguration",
            );
        }
    }
    for (i, c) in f.containers.iter().enumerate() {
        let checks: [(&str, bool); 8] = [
            ("links", non_empty(&c.links)),
            ("hostname", c.hostname.as_deref().is_some_and(|h| !h.is_empty())),
            ("dnsServers", non_empty(&c.dns_servers)),
            ("dnsSearchDomains", non_empty(&c.dns_search_domains)),
            ("extraHosts", non_empty(&c.extra_hosts)),
            ("dockerLabels", c.docker_labels.as_ref().is_some_and(|m| !m.is_empty())),
            ("dockerSecurityOptions", non_empty(&c.docker_security_options)),
            ("disableNetworking", c.disable_networking == Some(true)),
        ];
        if let Some((field, _)) = checks.iter().find(|(_, used)| *used) {
            return unsupported(cfield(i, field), field);
        }
        if let Some(lp) = &c.linux_parameters {
            let checks: [(&str, bool); 4] = [
                ("linuxParameters.maxSwap", lp.max_swap.is_some()),
                ("linuxParameters.swappiness", lp.swappiness.is_some()),
                ("linuxParameters.sharedMemorySize", lp.shared_memory_size.is_some()),
                ("linuxParameters.tmpfs", non_empty(&lp.tmpfs)),
            ];
            if let Some((field, _)) = checks.iter().find(|(_, used)| *used) {
                return unsupported(cfield(i, field), field);
            }
        }
    }
    None
}
