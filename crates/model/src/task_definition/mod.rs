//! Task definitions: the rules `RegisterTaskDefinition` enforces, and the record ECS returns.
//!
//! [`validate`] checks a request the way ECS does at registration and returns the first rule
//! broken as a [`ModelError`] naming the field (dotted path from the request root, e.g.
//! `containerDefinitions[1].portMappings[0].hostPort`). Everything is a `ClientException`
//! except the tag rules, which ECS answers with `InvalidParameterException`. Checks run in this
//! order:
//!
//! 0. **size**: the request's compact JSON is at most 64 KiB ([`MAX_TASK_DEFINITION_BYTES`];
//!    ECS: "Actual length: 'N'. Max allowed length is '65536' bytes.").
//! 1. **family**: required, 1-255 letters, numbers, hyphens and underscores.
//! 2. **containerDefinitions**: 1 to 10 containers; each has a unique name (1-255 letters,
//!    numbers, hyphens, underscores) and an image (non-empty, at most 255 characters, no
//!    whitespace).
//! 3. **Task size**: `cpu` parses as CPU units or vCPUs ("1024", "1 vCPU", "0.5 vcpu") and lies
//!    in 128..=196608; `memory` parses as MiB or GB ("2048", "2 GB", "2GB") and is at least
//!    6 MiB.
//! 4. **requiresCompatibilities**: the definition must satisfy every launch type it names:
//!    * `FARGATE`: networkMode `awsvpc`; task `cpu` and `memory` set and a pair of the Fargate
//!      table ([`fargate_memory_allowed`]); no `pidMode` "host", `ipcMode`,
//!      `placementConstraints`, `inferenceAccelerators`; no volumes with a host `sourcePath`,
//!      `dockerVolumeConfiguration` or FSx for Windows File Server; no container with `links`,
//!      `privileged`, `disableNetworking`, `dnsServers`, `dnsSearchDomains`, `extraHosts`,
//!      `dockerSecurityOptions`, GPU `resourceRequirements`, `linuxParameters` `devices`,
//!      `sharedMemorySize`, `tmpfs`, `maxSwap`, `swappiness` or a capability other than
//!      `SYS_PTRACE`; an `executionRoleArn` when a container logs with `awslogs` or pulls a
//!      private Amazon ECR image.
//!    * `EXTERNAL` (ECS Anywhere): no `awsvpc`, EFS or FSx volumes, `inferenceAccelerators` or
//!      `proxyConfiguration`.
//!    * `MANAGED_INSTANCES`: Linux only; networkMode set to `awsvpc` or `host`; none of the
//!      parameters ECS Managed Instances does not support (`links`, `hostname`, `dnsServers`,
//!      `dnsSearchDomains`, `extraHosts`, `dockerLabels`, `dockerSecurityOptions`,
//!      `disableNetworking`, `linuxParameters` `maxSwap`/`swappiness`/`sharedMemorySize`/`tmpfs`,
//!      `ipcMode`, `ephemeralStorage`, `inferenceAccelerators`, `proxyConfiguration`, host
//!      `sourcePath`, Docker and FSx volumes).
//!    * `EC2` adds nothing beyond the general rules.
//! 5. **volumes**: each has a unique name (1-255 letters, numbers, hyphens, underscores) and at
//!    most one of `host`, `dockerVolumeConfiguration`, `efsVolumeConfiguration`,
//!    `fsxWindowsFileServerVolumeConfiguration`, `s3filesVolumeConfiguration`; a host
//!    `sourcePath` is absolute; `autoprovision` only with `scope` "shared"; EFS IAM
//!    authorization or an access point needs transit encryption, and an access point needs the
//!    root directory omitted or "/".
//! 6. **Each container**:
//!    * `cpu` >= 0; `memory` and `memoryReservation` >= 6 MiB; `memoryReservation` <=
//!      `memory`; without task-level memory at least one of them; with task-level memory,
//!      `memory` <= the task's.
//!    * `portMappings`: none when networkMode is `none`; `containerPort` 1-65535 (required
//!      unless `containerPortRange` is given); `hostPort` 0-65535 and, for `awsvpc` and
//!      `host`, equal to `containerPort`; `containerPortRange` "start-end" with
//!      1 <= start < end <= 65535, without `containerPort`/`hostPort`, not in `host` mode; no
//!      container port mapped twice for one protocol; `name` 1-64 lowercase letters, numbers,
//!      underscores, hyphens (not leading).
//!    * `links`: only in `bridge` mode (the default); each "name" or "name:alias" names another
//!      container.
//!    * `hostname`: not with `awsvpc`.
//!    * `dependsOn`: `containerName` names another container; `condition` is set; `HEALTHY`
//!      needs the target to have a `healthCheck`; `COMPLETE`/`SUCCESS` targets are not
//!      essential.
//!    * `volumesFrom`: `sourceContainer` names another container.
//!    * `mountPoints`: `sourceVolume` names a volume of the task; `containerPath` is set and
//!      absolute (`/x` or `C:\x`).
//!    * `healthCheck`: `command` starts with `CMD` or `CMD-SHELL` followed by the command, or is
//!      `NONE`; `interval` 5-300, `timeout` 2-120, `retries` 1-10, `startPeriod` 0-300.
//!    * `ulimits`: `softLimit` <= `hardLimit`.
//!    * `environment`: every name non-empty (duplicates are allowed, as in ECS).
//!    * `environmentFiles`: `type` set and `value` an Amazon S3 object ARN.
//!    * `stopTimeout` 0-120, `startTimeout` >= 0.
//! 7. **Across the task**: no non-zero host port mapped twice per protocol (for `awsvpc` and
//!    `host` the host port is the container port); port mapping names unique; `links` and
//!    `dependsOn` each free of cycles (the error lists the cycle).
//! 8. **Task resources**: with task-level `cpu`, the containers' `cpu` sum to no more; with
//!    task-level `memory`, the containers' reservations (`memoryReservation`, else `memory`)
//!    sum to no more.
//! 9. At least one essential container (`essential` defaults to true); containers'
//!    `secrets` or `repositoryCredentials` need an `executionRoleArn` ("When you are
//!    specifying container secrets, you must also specify a value for 'executionRoleArn'.").
//! 10. **placementConstraints**: at most 10, each `memberOf` with an `expression`
//!     (`distinctInstance` is not a task definition constraint: the wire enum refuses it).
//! 11. **proxyConfiguration**: `containerName` names a container; networkMode `awsvpc`.
//! 12. **ephemeralStorage**: `sizeInGiB` 21-200.
//! 13. **tags** (`InvalidParameterException`): at most 50; keys 1-128 and values 0-256
//!     characters of letters, numbers, spaces and `_ . : / = + - @`; keys unique and not
//!     starting with `aws:` in any case.
//!
//! [`build`] turns a validated request into the [`TaskDefinition`] ECS stores and returns: every
//! request member except `tags`, task `cpu`/`memory` normalised to numeric strings ("1 vCPU" →
//! "1024", "2 GB" → "2048"), container defaults filled as ECS echoes them (`cpu` 0, `essential`
//! true, empty `portMappings`, `environment`, `mountPoints`, `volumesFrom`, `systemControls`;
//! `protocol` "tcp"; `hostPort` = `containerPort` for `awsvpc`/`host`; health check `interval`
//! 30, `timeout` 5, `retries` 3), empty task `volumes` and `placementConstraints`, and the
//! derived members:
//! * `compatibilities`: every launch type whose rules (step 4) the definition satisfies, in
//!   ECS's order `EXTERNAL`, `EC2`, `FARGATE`, `MANAGED_INSTANCES` (`EC2` always). A plain
//!   bridge definition gives `["EXTERNAL", "EC2"]`; an awsvpc one with a Fargate size gives
//!   `["EC2", "FARGATE", "MANAGED_INSTANCES"]`, as ECS has answered since Managed Instances
//!   launched.
//! * `requiresAttributes`: the container instance capabilities the features used need (see
//!   [`requires_attributes`]), deduplicated, in a stable order; absent when none.
//!
//! `networkMode` stays absent when the request leaves it out (`bridge` is then the effective
//! mode, as ECS documents), like `requiresCompatibilities`.
//!
//! Each rule group lives in its own file: `naming` (1, 2), `resources` (3, and the sizes of
//! 6 and 8), `launch_types` (4), `volumes` (5, `volumesFrom`, `mountPoints`), `containers`
//! (6, 9), `network` (port mappings, `hostname`, task-wide ports), `dependencies` (`links`,
//! `dependsOn`, cycles), `task_level` (10-13). `record` ([`build`]) and `derived` make the
//! record. [`validate`] below is the only place that fixes the order of the rules.
//!
//! [`TaskDefinition`]: berth_wire::ecs::TaskDefinition

mod containers;
mod dependencies;
mod derived;
mod facts;
mod launch_types;
mod naming;
mod network;
mod record;
mod resources;
mod task_level;
mod volumes;

use berth_wire::ecs::RegisterTaskDefinitionRequest;

use crate::ModelError;
use containers::{check_container, check_essential};
use dependencies::{check_depends_on_acyclic, check_links_acyclic};
use facts::Facts;
use launch_types::check_requires_compatibilities;
use naming::{check_container_identities, check_family};
use network::check_task_ports;
use resources::{check_task_resources, check_task_size};
use task_level::{
    check_ephemeral_storage, check_execution_role_needed, check_placement_constraints,
    check_proxy_configuration, check_tags,
};
use volumes::check_volumes;

pub use derived::{compatibilities, requires_attributes};
pub use record::{RegisterContext, build};
pub use resources::{
    fargate_memory_allowed, fargate_memory_values, parse_task_cpu, parse_task_memory_mib,
};

/// Most containers a task definition may have.
pub const MAX_CONTAINERS: usize = 10;
/// Most placement constraints a task definition may have.
pub const MAX_PLACEMENT_CONSTRAINTS: usize = 10;
/// Most tags a resource may have.
pub use crate::tags::MAX_TAGS;
/// Smallest memory (MiB) a container or task may have.
pub const MIN_MEMORY_MIB: u32 = 6;
/// Task-level CPU bounds (units) for definitions not checked against the Fargate table.
pub const TASK_CPU_RANGE: (u32, u32) = (128, 196_608);
/// Largest task definition ECS registers: the request's JSON, in bytes (64 KiB).
pub const MAX_TASK_DEFINITION_BYTES: usize = 64 * 1024;

/// Validates a RegisterTaskDefinition request as ECS does; the first rule broken is returned,
/// naming the field. See the module documentation for the rules and their order.
pub fn validate(req: &RegisterTaskDefinitionRequest) -> Result<(), ModelError> {
    check_json_size(req)?;
    check_family(req)?;
    let facts = Facts::new(req);
    check_container_identities(&facts)?;
    check_task_size(&facts)?;
    check_requires_compatibilities(&facts)?;
    check_volumes(&facts)?;
    for i in 0..facts.containers.len() {
        check_container(&facts, i)?;
    }
    check_task_ports(&facts)?;
    check_links_acyclic(&facts)?;
    check_depends_on_acyclic(&facts)?;
    check_task_resources(&facts)?;
    check_essential(&facts)?;
    check_execution_role_needed(req)?;
    check_placement_constraints(req)?;
    check_proxy_configuration(&facts)?;
    check_ephemeral_storage(req)?;
    check_tags(req)
}

/// The request's compact JSON must fit [`MAX_TASK_DEFINITION_BYTES`], in ECS's wording.
fn check_json_size(req: &RegisterTaskDefinitionRequest) -> Result<(), ModelError> {
    /// Counts what is written, keeping nothing.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Serialising plain data into a writer that never fails cannot fail; if it somehow did,
    // the count so far still bounds what was seen.
    let _ = serde_json::to_writer(&mut n, req);
    if n.0 > MAX_TASK_DEFINITION_BYTES {
        return Err(ModelError::client(
            "taskDefinition",
            format!(
                "Actual length: '{}'. Max allowed length is '{MAX_TASK_DEFINITION_BYTES}' bytes. \
                 A task definition's JSON may be at most 64 KiB.",
                n.0
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
