//! Task definitions: the rules `RegisterTaskDefinition` enforces, and the record ECS returns.
//!
//! [`validate`] checks a request the way ECS does at registration and returns the first rule
//! broken as a [`ModelError`] naming the field (dotted path from the request root, e.g.
//! `containerDefinitions[1].portMappings[0].hostPort`). Everything is a `ClientException`
//! except the tag rules, which ECS answers with `InvalidParameterException`. Checks run in this
//! order:
//!
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
//! 9. At least one essential container (`essential` defaults to true).
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

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use berth_wire::ecs::{
    Attribute, Compatibility, ContainerCondition, ContainerDefinition, EFSAuthorizationConfigIAM,
    EFSTransitEncryption, LogDriver, NetworkMode, OSFamily, PidMode, RegisterTaskDefinitionRequest,
    ResourceType, Scope, TaskDefinition, TaskDefinitionStatus, TransportProtocol,
};
use regex::Regex;

use crate::ModelError;

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

/// Fargate task sizes: task CPU units → (smallest memory MiB, largest, step). 256 CPU units are
/// listed apart because their memory values (512, 1024, 2048) do not share one step.
const FARGATE_RANGES: &[(u32, u32, u32, u32)] = &[
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16_384, 1024),
    (4096, 8192, 30_720, 1024),
    (8192, 16_384, 61_440, 4096),
    (16_384, 32_768, 122_880, 8192),
];
const FARGATE_256_MEMORY: &[u32] = &[512, 1024, 2048];

/// Whether Fargate offers a task of `cpu` units with `memory_mib` MiB:
///
/// | CPU units | Memory (MiB)                        |
/// |-----------|-------------------------------------|
/// | 256       | 512, 1024, 2048                     |
/// | 512       | 1024 to 4096 in steps of 1024       |
/// | 1024      | 2048 to 8192 in steps of 1024       |
/// | 2048      | 4096 to 16384 in steps of 1024      |
/// | 4096      | 8192 to 30720 in steps of 1024      |
/// | 8192      | 16384 to 61440 in steps of 4096     |
/// | 16384     | 32768 to 122880 in steps of 8192    |
pub fn fargate_memory_allowed(cpu: u32, memory_mib: u32) -> bool {
    fargate_memory_values(cpu).contains(&memory_mib)
}

/// The memory sizes (MiB) Fargate offers for `cpu` units, ascending; empty for a CPU size
/// Fargate does not offer.
pub fn fargate_memory_values(cpu: u32) -> Vec<u32> {
    if cpu == 256 {
        return FARGATE_256_MEMORY.to_vec();
    }
    FARGATE_RANGES
        .iter()
        .filter(|&&(c, ..)| c == cpu)
        .flat_map(|&(_, lo, hi, step)| (lo..=hi).step_by(step as usize))
        .collect()
}

/// Task-level CPU as ECS accepts it: CPU units ("1024") or vCPUs ("1 vCPU", "0.5 vcpu",
/// "2vCPU"), whitespace around ignored. `None` if unparseable or not a whole number of units.
pub fn parse_task_cpu(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Some(n) = parse_whole(t) {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    scaled(lower.strip_suffix("vcpu")?.trim_end(), 1024)
}

/// Task-level memory as ECS accepts it, in MiB: MiB ("2048") or GB ("2 GB", "2GB", "0.5 gb"),
/// whitespace around ignored. `None` if unparseable or not a whole number of MiB.
pub fn parse_task_memory_mib(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Some(n) = parse_whole(t) {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    scaled(lower.strip_suffix("gb")?.trim_end(), 1024)
}

/// A plain unsigned integer ("1024").
fn parse_whole(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `num` ("1", "0.5", "2.25") times `unit`, if that is a whole number fitting in `u32`.
fn scaled(num: &str, unit: u32) -> Option<u32> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if num.contains('.') && (frac.is_empty() || frac.len() > 9) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let frac_value: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    let denom = 10u64.pow(frac.len() as u32);
    let frac_units = frac_value * u64::from(unit);
    if !frac_units.is_multiple_of(denom) {
        return None;
    }
    let total = int.checked_mul(u64::from(unit))?.checked_add(frac_units / denom)?;
    u32::try_from(total).ok()
}

/// What registration records about the request: where, which revision, when and by whom.
pub struct RegisterContext<'a> {
    pub region: &'a str,
    pub account_id: &'a str,
    pub revision: i32,
    /// Epoch seconds.
    pub registered_at: f64,
    /// The caller's principal ARN.
    pub registered_by: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Shared analysis

/// The facts about a request that several rules need, computed leniently (an unparseable value
/// is `None`) so that [`build`] can use them too.
struct Facts<'a> {
    req: &'a RegisterTaskDefinitionRequest,
    containers: &'a [ContainerDefinition],
    /// The effective network mode (`bridge` when absent).
    mode: NetworkMode,
    task_cpu: Option<u32>,
    task_memory: Option<u32>,
    /// Container name → index (first occurrence).
    index: HashMap<&'a str, usize>,
}

impl<'a> Facts<'a> {
    fn new(req: &'a RegisterTaskDefinitionRequest) -> Self {
        let containers = req.container_definitions.as_deref().unwrap_or(&[]);
        let mut index = HashMap::new();
        for (i, c) in containers.iter().enumerate() {
            if let Some(n) = c.name.as_deref() {
                index.entry(n).or_insert(i);
            }
        }
        Facts {
            req,
            containers,
            mode: req.network_mode.unwrap_or(NetworkMode::Bridge),
            task_cpu: req.cpu.as_deref().and_then(parse_task_cpu),
            task_memory: req.memory.as_deref().and_then(parse_task_memory_mib),
            index,
        }
    }

    /// The name of container `i` for messages.
    fn name(&self, i: usize) -> &'a str {
        self.containers[i].name.as_deref().unwrap_or("")
    }

    fn volumes(&self) -> &'a [berth_wire::ecs::Volume] {
        self.req.volumes.as_deref().unwrap_or(&[])
    }
}

fn cfield(i: usize, rest: &str) -> String {
    if rest.is_empty() {
        format!("containerDefinitions[{i}]")
    } else {
        format!("containerDefinitions[{i}].{rest}")
    }
}

fn client(field: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::client(field, message)
}

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

fn name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(&RE, r"^[A-Za-z0-9_-]{1,255}$")
}

fn port_name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(&RE, r"^[a-z0-9_][a-z0-9_-]{0,63}$")
}

fn ecr_image_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(&RE, r"^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")
}

fn s3_arn_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(&RE, r"^arn:aws[a-z-]*:s3:::[^/]+/.+$")
}

/// A private Amazon ECR image (pulled with ECR credentials).
fn is_private_ecr(image: &str) -> bool {
    ecr_image_re().is_match(image)
}

fn non_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn is_essential(c: &ContainerDefinition) -> bool {
    c.essential.unwrap_or(true)
}

fn proto_str(p: Option<TransportProtocol>) -> &'static str {
    p.unwrap_or(TransportProtocol::Tcp).as_str()
}

fn absolute_path(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'\\' || b[2] == b'/'))
}

/// "start-end" with 1 <= start < end <= 65535.
fn parse_port_range(s: &str) -> Option<(i64, i64)> {
    let (a, b) = s.split_once('-')?;
    let parse = |x: &str| -> Option<i64> {
        let x = x.trim();
        if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) || x.len() > 5 {
            return None;
        }
        x.parse().ok()
    };
    let (a, b) = (parse(a)?, parse(b)?);
    (1 <= a && a < b && b <= 65_535).then_some((a, b))
}

// ---------------------------------------------------------------------------------------------
// validate

/// Validates a RegisterTaskDefinition request as ECS does; the first rule broken is returned,
/// naming the field. See the module documentation for the rules and their order.
pub fn validate(req: &RegisterTaskDefinitionRequest) -> Result<(), ModelError> {
    check_family(req)?;
    let facts = Facts::new(req);
    check_container_identities(&facts)?;
    check_task_size(&facts)?;
    for compat in req.requires_compatibilities.iter().flatten() {
        let issue = match compat {
            Compatibility::Fargate => fargate_issue(&facts),
            Compatibility::External => external_issue(&facts),
            Compatibility::ManagedInstances => managed_instances_issue(&facts),
            Compatibility::Ec2 => None,
        };
        if let Some(e) = issue {
            return Err(e);
        }
    }
    check_volumes(&facts)?;
    for i in 0..facts.containers.len() {
        check_container(&facts, i)?;
    }
    check_task_ports(&facts)?;
    check_links_acyclic(&facts)?;
    check_depends_on_acyclic(&facts)?;
    check_task_resources(&facts)?;
    if !facts.containers.iter().any(is_essential) {
        return Err(client(
            "containerDefinitions",
            "Task definition must have at least one essential container.",
        ));
    }
    check_placement_constraints(req)?;
    check_proxy_configuration(&facts)?;
    if let Some(es) = &req.ephemeral_storage {
        let size = es.size_in_gi_b.unwrap_or(0);
        if !(21..=200).contains(&size) {
            return Err(client(
                "ephemeralStorage.sizeInGiB",
                format!(
                    "Invalid 'ephemeralStorage' setting: sizeInGiB must be between 21 and 200, got {size}."
                ),
            ));
        }
    }
    check_tags(req)
}

fn check_family(req: &RegisterTaskDefinitionRequest) -> Result<(), ModelError> {
    let Some(family) = req.family.as_deref() else {
        return Err(client("family", "Family must be specified."));
    };
    let len = family.chars().count();
    if !(1..=255).contains(&len) {
        return Err(client(
            "family",
            format!("Family name must be between 1 and 255 characters long, got {len}."),
        ));
    }
    if !name_re().is_match(family) {
        return Err(client(
            "family",
            "Family contains invalid characters. Up to 255 letters (uppercase and lowercase), \
             numbers, hyphens, and underscores are allowed.",
        ));
    }
    Ok(())
}

fn check_container_identities(f: &Facts) -> Result<(), ModelError> {
    if f.containers.is_empty() {
        return Err(client("containerDefinitions", "Container list cannot be empty."));
    }
    if f.containers.len() > MAX_CONTAINERS {
        return Err(client(
            "containerDefinitions",
            format!(
                "Too many containers: a task definition can have at most {MAX_CONTAINERS} containers, got {}.",
                f.containers.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in f.containers.iter().enumerate() {
        let name = match c.name.as_deref() {
            None | Some("") => {
                return Err(client(cfield(i, "name"), "Container name must be specified."));
            }
            Some(n) => n,
        };
        if !name_re().is_match(name) {
            return Err(client(
                cfield(i, "name"),
                format!(
                    "Invalid container name '{name}'. Up to 255 letters (uppercase and lowercase), \
                     numbers, hyphens, and underscores are allowed."
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(client(cfield(i, "name"), format!("Duplicate container name '{name}'.")));
        }
        match c.image.as_deref() {
            None | Some("") => {
                return Err(client(
                    cfield(i, "image"),
                    format!("Invalid setting for container '{name}'. 'image' must be specified."),
                ));
            }
            Some(img) if img.chars().count() > 255 || img.chars().any(char::is_whitespace) => {
                return Err(client(
                    cfield(i, "image"),
                    format!(
                        "Invalid 'image' setting for container '{name}'. Up to 255 characters \
                         without whitespace are allowed."
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_task_size(f: &Facts) -> Result<(), ModelError> {
    if let Some(raw) = f.req.cpu.as_deref() {
        match f.task_cpu {
            Some(cpu) if (TASK_CPU_RANGE.0..=TASK_CPU_RANGE.1).contains(&cpu) => {}
            _ => {
                return Err(client(
                    "cpu",
                    format!(
                        "Invalid 'cpu' setting for task: '{raw}'. Specify CPU units between {} and {} \
                         (for example 1024) or vCPUs (for example 1 vCPU).",
                        TASK_CPU_RANGE.0, TASK_CPU_RANGE.1
                    ),
                ));
            }
        }
    }
    if let Some(raw) = f.req.memory.as_deref() {
        match f.task_memory {
            Some(m) if m >= MIN_MEMORY_MIB => {}
            _ => {
                return Err(client(
                    "memory",
                    format!(
                        "Invalid 'memory' setting for task: '{raw}'. Specify MiB (for example 2048, \
                         at least {MIN_MEMORY_MIB}) or GB (for example 2 GB)."
                    ),
                ));
            }
        }
    }
    Ok(())
}

// --- launch type compatibility ----------------------------------------------------------------

/// The first reason the definition cannot run on Fargate, if any.
fn fargate_issue(f: &Facts) -> Option<ModelError> {
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
fn external_issue(f: &Facts) -> Option<ModelError> {
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
fn managed_instances_issue(f: &Facts) -> Option<ModelError> {
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

// --- volumes ----------------------------------------------------------------------------------

fn check_volumes(f: &Facts) -> Result<(), ModelError> {
    let mut seen = HashSet::new();
    for (i, v) in f.volumes().iter().enumerate() {
        let field = |rest: &str| format!("volumes[{i}].{rest}");
        let name = match v.name.as_deref() {
            None | Some("") => return Err(client(field("name"), "Volume name must be specified.")),
            Some(n) => n,
        };
        if !name_re().is_match(name) {
            return Err(client(
                field("name"),
                format!(
                    "Invalid volume name '{name}'. Up to 255 letters (uppercase and lowercase), \
                     numbers, hyphens, and underscores are allowed."
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(client(field("name"), format!("Duplicate volume name '{name}'.")));
        }
        let kinds = [
            v.host.is_some(),
            v.docker_volume_configuration.is_some(),
            v.efs_volume_configuration.is_some(),
            v.fsx_windows_file_server_volume_configuration.is_some(),
            v.s3files_volume_configuration.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(client(
                format!("volumes[{i}]"),
                format!(
                    "Invalid setting for volume '{name}'. Specify only one of 'host', \
                     'dockerVolumeConfiguration', 'efsVolumeConfiguration', \
                     'fsxWindowsFileServerVolumeConfiguration' and 's3filesVolumeConfiguration'."
                ),
            ));
        }
        if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.as_deref())
            && !path.is_empty()
            && !absolute_path(path)
        {
            return Err(client(
                field("host.sourcePath"),
                format!(
                    "Invalid setting for volume '{name}'. 'sourcePath' must be an absolute path."
                ),
            ));
        }
        if let Some(d) = &v.docker_volume_configuration
            && d.autoprovision == Some(true)
            && d.scope.unwrap_or(Scope::Task) != Scope::Shared
        {
            return Err(client(
                field("dockerVolumeConfiguration.autoprovision"),
                format!(
                    "Invalid setting for volume '{name}'. 'autoprovision' is only supported \
                         when 'scope' is 'shared'."
                ),
            ));
        }
        if let Some(e) = &v.efs_volume_configuration {
            let auth = e.authorization_config.as_ref();
            let iam = auth.is_some_and(|a| a.iam == Some(EFSAuthorizationConfigIAM::Enabled));
            let access_point =
                auth.is_some_and(|a| a.access_point_id.as_deref().is_some_and(|s| !s.is_empty()));
            let encrypted = e.transit_encryption == Some(EFSTransitEncryption::Enabled);
            if (iam || access_point) && !encrypted {
                return Err(client(
                    field("efsVolumeConfiguration.transitEncryption"),
                    format!(
                        "Invalid setting for volume '{name}'. Transit encryption must be enabled \
                         when IAM authorization or an access point is used."
                    ),
                ));
            }
            if access_point
                && e.root_directory.as_deref().is_some_and(|r| !r.is_empty() && r != "/")
            {
                return Err(client(
                    field("efsVolumeConfiguration.rootDirectory"),
                    format!(
                        "Invalid setting for volume '{name}'. When an access point is used, \
                         'rootDirectory' must be omitted or set to '/'."
                    ),
                ));
            }
        }
    }
    Ok(())
}

// --- containers -------------------------------------------------------------------------------

fn check_container(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    check_container_resources(f, i)?;
    check_port_mappings(f, i)?;

    if non_empty(&c.links) && f.mode != NetworkMode::Bridge {
        return Err(client(
            cfield(i, "links"),
            format!(
                "Invalid setting for container '{name}'. Links are not supported when \
                 networkMode={}; they are only supported with the bridge network mode.",
                f.mode.as_str()
            ),
        ));
    }
    for (j, link) in c.links.iter().flatten().enumerate() {
        let (target, alias) =
            link.split_once(':').map_or((link.as_str(), None), |(t, a)| (t, Some(a)));
        let known = f.index.get(target).is_some_and(|&t| t != i);
        if target.is_empty() || alias == Some("") || !known {
            return Err(client(
                cfield(i, &format!("links[{j}]")),
                format!(
                    "Invalid link '{link}' for container '{name}': links must name another container \
                     of the task definition, as 'name' or 'name:alias'."
                ),
            ));
        }
    }

    if f.mode == NetworkMode::Awsvpc && c.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
        return Err(client(
            cfield(i, "hostname"),
            format!(
                "Invalid setting for container '{name}'. The 'hostname' parameter is not supported \
                 when networkMode=awsvpc."
            ),
        ));
    }

    for (j, d) in c.depends_on.iter().flatten().enumerate() {
        let field = |rest: &str| cfield(i, &format!("dependsOn[{j}].{rest}"));
        let target = d.container_name.as_deref().unwrap_or("");
        let Some(&t) = f.index.get(target) else {
            return Err(client(
                field("containerName"),
                format!(
                    "Invalid 'dependsOn' setting for container '{name}': container '{target}' is not \
                     defined in the task definition."
                ),
            ));
        };
        if t == i {
            return Err(client(
                field("containerName"),
                format!(
                    "Invalid 'dependsOn' setting for container '{name}': a container cannot depend on itself."
                ),
            ));
        }
        let Some(condition) = d.condition else {
            return Err(client(
                field("condition"),
                format!(
                    "Invalid 'dependsOn' setting for container '{name}': the dependency on container \
                     '{target}' must have a condition."
                ),
            ));
        };
        let tc = &f.containers[t];
        match condition {
            ContainerCondition::Healthy if tc.health_check.is_none() => {
                return Err(client(
                    field("condition"),
                    format!(
                        "Invalid 'dependsOn' setting for container '{name}': dependency on container \
                         '{target}' with condition HEALTHY requires a healthCheck on '{target}'."
                    ),
                ));
            }
            ContainerCondition::Complete | ContainerCondition::Success if is_essential(tc) => {
                return Err(client(
                    field("condition"),
                    format!(
                        "Invalid 'dependsOn' setting for container '{name}': condition {} cannot be \
                         set on essential container '{target}'.",
                        condition.as_str()
                    ),
                ));
            }
            _ => {}
        }
    }

    for (j, v) in c.volumes_from.iter().flatten().enumerate() {
        let source = v.source_container.as_deref().unwrap_or("");
        if f.index.get(source).is_none_or(|&s| s == i) {
            return Err(client(
                cfield(i, &format!("volumesFrom[{j}].sourceContainer")),
                format!(
                    "Invalid 'volumesFrom' setting for container '{name}': sourceContainer '{source}' \
                     must name another container of the task definition."
                ),
            ));
        }
    }

    let volume_names: HashSet<&str> =
        f.volumes().iter().filter_map(|v| v.name.as_deref()).collect();
    for (j, m) in c.mount_points.iter().flatten().enumerate() {
        let source = m.source_volume.as_deref().unwrap_or("");
        if !volume_names.contains(source) {
            return Err(client(
                cfield(i, &format!("mountPoints[{j}].sourceVolume")),
                format!(
                    "Invalid 'mountPoints' setting for container '{name}': volume '{source}' is not defined."
                ),
            ));
        }
        let path = m.container_path.as_deref().unwrap_or("");
        if !absolute_path(path) {
            return Err(client(
                cfield(i, &format!("mountPoints[{j}].containerPath")),
                format!(
                    "Invalid 'mountPoints' setting for container '{name}': containerPath must be an \
                     absolute path."
                ),
            ));
        }
    }

    if let Some(hc) = &c.health_check {
        check_health_check(i, name, hc)?;
    }

    for (j, u) in c.ulimits.iter().flatten().enumerate() {
        if let (Some(soft), Some(hard)) = (u.soft_limit, u.hard_limit)
            && soft > hard
        {
            return Err(client(
                cfield(i, &format!("ulimits[{j}].softLimit")),
                format!(
                    "Invalid 'ulimits' setting for container '{name}': softLimit ({soft}) must be \
                         less than or equal to hardLimit ({hard})."
                ),
            ));
        }
    }

    for (j, e) in c.environment.iter().flatten().enumerate() {
        if e.name.as_deref().is_none_or(str::is_empty) {
            return Err(client(
                cfield(i, &format!("environment[{j}].name")),
                format!(
                    "Invalid 'environment' setting for container '{name}': variable names cannot be empty."
                ),
            ));
        }
    }

    for (j, e) in c.environment_files.iter().flatten().enumerate() {
        if e.r#type.is_none() {
            return Err(client(
                cfield(i, &format!("environmentFiles[{j}].type")),
                format!(
                    "Invalid 'environmentFiles' setting for container '{name}': type must be 's3'."
                ),
            ));
        }
        if !e.value.as_deref().is_some_and(|v| s3_arn_re().is_match(v)) {
            return Err(client(
                cfield(i, &format!("environmentFiles[{j}].value")),
                format!(
                    "Invalid 'environmentFiles' setting for container '{name}': value must be the ARN \
                     of an Amazon S3 object."
                ),
            ));
        }
    }

    if let Some(t) = c.stop_timeout
        && !(0..=120).contains(&t)
    {
        return Err(client(
            cfield(i, "stopTimeout"),
            format!(
                "Invalid 'stopTimeout' setting for container '{name}': must be between 0 and 120 seconds."
            ),
        ));
    }
    if let Some(t) = c.start_timeout
        && t < 0
    {
        return Err(client(
            cfield(i, "startTimeout"),
            format!("Invalid 'startTimeout' setting for container '{name}': must be 0 or greater."),
        ));
    }
    Ok(())
}

fn check_container_resources(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    if let Some(cpu) = c.cpu
        && cpu < 0
    {
        return Err(client(
            cfield(i, "cpu"),
            format!("Invalid 'cpu' setting for container '{name}': must be 0 or greater."),
        ));
    }
    let min = MIN_MEMORY_MIB as i32;
    if let Some(m) = c.memory
        && m < min
    {
        return Err(client(
            cfield(i, "memory"),
            format!("Invalid 'memory' setting for container '{name}': the minimum is {min} MiB."),
        ));
    }
    if let Some(r) = c.memory_reservation
        && r < min
    {
        return Err(client(
            cfield(i, "memoryReservation"),
            format!(
                "Invalid 'memoryReservation' setting for container '{name}': the minimum is {min} MiB."
            ),
        ));
    }
    if let (Some(m), Some(r)) = (c.memory, c.memory_reservation)
        && r > m
    {
        return Err(client(
            cfield(i, "memoryReservation"),
            format!(
                "Invalid setting for container '{name}'. 'memoryReservation' must be less than or \
                     equal to 'memory'."
            ),
        ));
    }
    match f.task_memory {
        None if c.memory.is_none() && c.memory_reservation.is_none() => {
            return Err(client(
                cfield(i, "memory"),
                format!(
                    "Invalid setting for container '{name}'. At least one of 'memory' or \
                     'memoryReservation' must be specified."
                ),
            ));
        }
        Some(task) => {
            if let Some(m) = c.memory
                && i64::from(m) > i64::from(task)
            {
                return Err(client(
                    cfield(i, "memory"),
                    format!(
                        "Invalid setting for container '{name}'. 'memory' ({m} MiB) must be less \
                             than or equal to the task memory ({task} MiB)."
                    ),
                ));
            }
        }
        None => {}
    }
    Ok(())
}

fn check_port_mappings(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    let mappings = c.port_mappings.as_deref().unwrap_or(&[]);
    if f.mode == NetworkMode::None && !mappings.is_empty() {
        return Err(client(
            cfield(i, "portMappings"),
            format!(
                "Invalid setting for container '{name}'. Port mappings are not supported when \
                 networkMode=none."
            ),
        ));
    }
    // (first port, last port, protocol) of the mappings seen so far.
    let mut taken: Vec<(i64, i64, &str)> = Vec::new();
    for (j, pm) in mappings.iter().enumerate() {
        let field = |rest: &str| cfield(i, &format!("portMappings[{j}].{rest}"));
        let bad = |rest: &str, why: String| {
            Err(client(
                field(rest),
                format!("Invalid 'portMappings' setting for container '{name}': {why}"),
            ))
        };
        let proto = proto_str(pm.protocol);
        let (first, last) = if let Some(range) = pm.container_port_range.as_deref() {
            let Some((a, b)) = parse_port_range(range) else {
                return bad(
                    "containerPortRange",
                    format!(
                        "containerPortRange '{range}' must be 'start-end' with 1 <= start < end <= 65535."
                    ),
                );
            };
            if pm.container_port.is_some() || pm.host_port.is_some() {
                return bad(
                    "containerPortRange",
                    "containerPort and hostPort cannot be set together with containerPortRange."
                        .into(),
                );
            }
            if f.mode == NetworkMode::Host {
                return bad(
                    "containerPortRange",
                    "containerPortRange is only supported with the awsvpc and bridge network modes.".into(),
                );
            }
            (a, b)
        } else {
            let Some(port) = pm.container_port else {
                return bad("containerPort", "containerPort must be specified.".into());
            };
            if !(1..=65_535).contains(&port) {
                return bad(
                    "containerPort",
                    format!("containerPort {port} must be between 1 and 65535."),
                );
            }
            if let Some(host) = pm.host_port {
                if !(0..=65_535).contains(&host) {
                    return bad(
                        "hostPort",
                        format!("hostPort {host} must be between 0 and 65535."),
                    );
                }
                if matches!(f.mode, NetworkMode::Awsvpc | NetworkMode::Host) && host != port {
                    return Err(client(
                        field("hostPort"),
                        format!(
                            "When networkMode={}, the host ports and container ports in port mappings must match.",
                            f.mode.as_str()
                        ),
                    ));
                }
            }
            (i64::from(port), i64::from(port))
        };
        if taken.iter().any(|&(a, b, p)| p == proto && first <= b && a <= last) {
            let what = match pm.container_port_range.as_deref() {
                Some(r) => {
                    format!("container port range {r}/{proto} overlaps another port mapping.")
                }
                None => format!("container port {first}/{proto} is mapped more than once."),
            };
            return bad(
                if pm.container_port_range.is_some() {
                    "containerPortRange"
                } else {
                    "containerPort"
                },
                what,
            );
        }
        taken.push((first, last, proto));
        if let Some(pname) = pm.name.as_deref()
            && !port_name_re().is_match(pname)
        {
            return bad(
                "name",
                format!(
                    "name '{pname}' must be 1-64 lowercase letters, numbers, underscores and \
                         hyphens, not starting with a hyphen."
                ),
            );
        }
    }
    Ok(())
}

fn check_health_check(
    i: usize,
    name: &str,
    hc: &berth_wire::ecs::HealthCheck,
) -> Result<(), ModelError> {
    let field = |rest: &str| cfield(i, &format!("healthCheck.{rest}"));
    let command = hc.command.as_deref().unwrap_or(&[]);
    let ok = match command.first().map(String::as_str) {
        Some("NONE") => true,
        Some("CMD" | "CMD-SHELL") => command.len() >= 2,
        _ => false,
    };
    if !ok {
        return Err(client(
            field("command"),
            format!(
                "Invalid 'healthCheck' setting for container '{name}': command must start with 'CMD' \
                 or 'CMD-SHELL' followed by the command to run, or be 'NONE'."
            ),
        ));
    }
    let ranges: [(&str, Option<i32>, i32, i32); 4] = [
        ("interval", hc.interval, 5, 300),
        ("timeout", hc.timeout, 2, 120),
        ("retries", hc.retries, 1, 10),
        ("startPeriod", hc.start_period, 0, 300),
    ];
    for (member, value, lo, hi) in ranges {
        if let Some(v) = value
            && !(lo..=hi).contains(&v)
        {
            return Err(client(
                field(member),
                format!(
                    "Invalid 'healthCheck' setting for container '{name}': {member} must be between \
                         {lo} and {hi}, got {v}."
                ),
            ));
        }
    }
    Ok(())
}

// --- across the task --------------------------------------------------------------------------

fn check_task_ports(f: &Facts) -> Result<(), ModelError> {
    let mut host_ports: HashMap<(i64, &str), &str> = HashMap::new();
    let mut port_names: HashSet<&str> = HashSet::new();
    for (i, c) in f.containers.iter().enumerate() {
        for (j, pm) in c.port_mappings.iter().flatten().enumerate() {
            if let Some(pname) = pm.name.as_deref()
                && !port_names.insert(pname)
            {
                return Err(client(
                    cfield(i, &format!("portMappings[{j}].name")),
                    format!(
                        "Port mapping name '{pname}' is used more than once in the task definition."
                    ),
                ));
            }
            if pm.container_port_range.is_some() {
                continue;
            }
            let host = match f.mode {
                NetworkMode::Awsvpc | NetworkMode::Host => pm.host_port.or(pm.container_port),
                _ => pm.host_port,
            };
            let Some(host) = host.filter(|&h| h != 0) else {
                continue;
            };
            let proto = proto_str(pm.protocol);
            if let Some(other) = host_ports.insert((i64::from(host), proto), f.name(i)) {
                return Err(client(
                    cfield(i, &format!("portMappings[{j}].hostPort")),
                    format!(
                        "Host port {host}/{proto} of container '{}' is already used by container '{other}'. \
                         A host port can be mapped only once in a task definition.",
                        f.name(i)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A cycle in the directed graph `edges` (node → targets), as the nodes along it with the first
/// repeated at the end.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    fn visit(
        n: usize,
        edges: &[Vec<usize>],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[n] = 1;
        path.push(n);
        for &t in &edges[n] {
            match state[t] {
                0 => {
                    if let Some(c) = visit(t, edges, state, path) {
                        return Some(c);
                    }
                }
                1 => {
                    let start = path.iter().position(|&p| p == t).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(t);
                    return Some(cycle);
                }
                _ => {}
            }
        }
        path.pop();
        state[n] = 2;
        None
    }
    let mut state = vec![0u8; edges.len()];
    for n in 0..edges.len() {
        if state[n] == 0
            && let Some(c) = visit(n, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn cycle_error(f: &Facts, cycle: &[usize], member: &str, what: &str) -> ModelError {
    let names: Vec<&str> = cycle.iter().map(|&i| f.name(i)).collect();
    client(
        cfield(cycle[0], member),
        format!("Invalid '{member}' setting: {what} form a cycle: {}.", names.join(" -> ")),
    )
}

fn check_links_acyclic(f: &Facts) -> Result<(), ModelError> {
    let edges: Vec<Vec<usize>> = f
        .containers
        .iter()
        .map(|c| {
            c.links
                .iter()
                .flatten()
                .filter_map(|l| f.index.get(l.split(':').next().unwrap_or("")).copied())
                .collect()
        })
        .collect();
    match find_cycle(&edges) {
        Some(cycle) => Err(cycle_error(f, &cycle, "links", "container links")),
        None => Ok(()),
    }
}

fn check_depends_on_acyclic(f: &Facts) -> Result<(), ModelError> {
    let edges: Vec<Vec<usize>> = f
        .containers
        .iter()
        .map(|c| {
            c.depends_on
                .iter()
                .flatten()
                .filter_map(|d| f.index.get(d.container_name.as_deref().unwrap_or("")).copied())
                .collect()
        })
        .collect();
    match find_cycle(&edges) {
        Some(cycle) => Err(cycle_error(f, &cycle, "dependsOn", "container dependencies")),
        None => Ok(()),
    }
}

fn check_task_resources(f: &Facts) -> Result<(), ModelError> {
    if let Some(task_cpu) = f.task_cpu {
        let sum: i64 = f.containers.iter().map(|c| i64::from(c.cpu.unwrap_or(0))).sum();
        if sum > i64::from(task_cpu) {
            return Err(client(
                "cpu",
                format!(
                    "Invalid 'cpu' setting for task: the containers' cpu values add up to {sum}, more \
                     than the task cpu ({task_cpu})."
                ),
            ));
        }
    }
    if let Some(task_memory) = f.task_memory {
        let sum: i64 = f
            .containers
            .iter()
            .map(|c| i64::from(c.memory_reservation.or(c.memory).unwrap_or(0)))
            .sum();
        if sum > i64::from(task_memory) {
            return Err(client(
                "memory",
                format!(
                    "Invalid 'memory' setting for task: the containers' memory reservations add up to \
                     {sum} MiB, more than the task memory ({task_memory} MiB)."
                ),
            ));
        }
    }
    Ok(())
}

fn check_placement_constraints(req: &RegisterTaskDefinitionRequest) -> Result<(), ModelError> {
    let constraints = req.placement_constraints.as_deref().unwrap_or(&[]);
    if constraints.len() > MAX_PLACEMENT_CONSTRAINTS {
        return Err(client(
            "placementConstraints",
            format!(
                "Too many placement constraints: a task definition can have at most \
                 {MAX_PLACEMENT_CONSTRAINTS}, got {}.",
                constraints.len()
            ),
        ));
    }
    for (i, pc) in constraints.iter().enumerate() {
        if pc.r#type.is_none() {
            return Err(client(
                format!("placementConstraints[{i}].type"),
                "Placement constraint type must be specified; memberOf is the only task definition \
                 placement constraint type.",
            ));
        }
        if pc.expression.as_deref().is_none_or(|e| e.trim().is_empty()) {
            return Err(client(
                format!("placementConstraints[{i}].expression"),
                "A memberOf placement constraint requires an expression.",
            ));
        }
    }
    Ok(())
}

fn check_proxy_configuration(f: &Facts) -> Result<(), ModelError> {
    let Some(proxy) = &f.req.proxy_configuration else {
        return Ok(());
    };
    let target = proxy.container_name.as_deref().unwrap_or("");
    if !f.index.contains_key(target) {
        return Err(client(
            "proxyConfiguration.containerName",
            format!(
                "Invalid 'proxyConfiguration' setting: container '{target}' is not defined in the task definition."
            ),
        ));
    }
    if f.mode != NetworkMode::Awsvpc {
        return Err(client(
            "proxyConfiguration",
            "Invalid 'proxyConfiguration' setting: proxy configuration requires networkMode=awsvpc.",
        ));
    }
    Ok(())
}

fn check_tags(req: &RegisterTaskDefinitionRequest) -> Result<(), ModelError> {
    crate::tags::validate(req.tags.as_deref().unwrap_or(&[]), "tags")
}

// ---------------------------------------------------------------------------------------------
// build

/// Builds the stored/returned TaskDefinition from a validated request, as ECS returns it: every
/// request member except `tags` (the caller keeps them), task `cpu`/`memory` as numeric strings,
/// container defaults filled, and `taskDefinitionArn`, `family`, `revision`, `status` ACTIVE,
/// `registeredAt`, `registeredBy`, `requiresAttributes` and `compatibilities` set.
pub fn build(req: &RegisterTaskDefinitionRequest, ctx: &RegisterContext) -> TaskDefinition {
    let facts = Facts::new(req);
    let family = req.family.clone().unwrap_or_default();
    let containers =
        facts.containers.iter().map(|c| normalized_container(c, req.network_mode)).collect();
    let attributes: Vec<Attribute> = requires_attributes(req)
        .into_iter()
        .map(|name| Attribute { name: Some(name), ..Default::default() })
        .collect();
    TaskDefinition {
        task_definition_arn: Some(format!(
            "arn:aws:ecs:{}:{}:task-definition/{}:{}",
            ctx.region, ctx.account_id, family, ctx.revision
        )),
        container_definitions: Some(containers),
        family: Some(family),
        task_role_arn: req.task_role_arn.clone(),
        execution_role_arn: req.execution_role_arn.clone(),
        network_mode: req.network_mode,
        revision: Some(ctx.revision),
        volumes: Some(req.volumes.clone().unwrap_or_default()),
        status: Some(TaskDefinitionStatus::Active),
        requires_attributes: (!attributes.is_empty()).then_some(attributes),
        placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
        compatibilities: Some(compatibilities(req)),
        runtime_platform: req.runtime_platform.clone(),
        requires_compatibilities: req.requires_compatibilities.clone(),
        cpu: req.cpu.as_deref().map(|s| normalized(s, parse_task_cpu(s))),
        memory: req.memory.as_deref().map(|s| normalized(s, parse_task_memory_mib(s))),
        inference_accelerators: req.inference_accelerators.clone(),
        pid_mode: req.pid_mode,
        ipc_mode: req.ipc_mode,
        proxy_configuration: req.proxy_configuration.clone(),
        registered_at: Some(ctx.registered_at),
        deregistered_at: None,
        delete_requested_at: None,
        registered_by: Some(ctx.registered_by.to_string()),
        ephemeral_storage: req.ephemeral_storage.clone(),
        enable_fault_injection: req.enable_fault_injection,
    }
}

fn normalized(raw: &str, parsed: Option<u32>) -> String {
    parsed.map_or_else(|| raw.to_string(), |n| n.to_string())
}

/// A container definition with the defaults ECS fills in its answers.
fn normalized_container(
    c: &ContainerDefinition,
    network_mode: Option<NetworkMode>,
) -> ContainerDefinition {
    let mut c = c.clone();
    c.cpu.get_or_insert(0);
    c.essential.get_or_insert(true);
    c.environment.get_or_insert_with(Vec::new);
    c.mount_points.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    c.system_controls.get_or_insert_with(Vec::new);
    let host_is_container = matches!(network_mode, Some(NetworkMode::Awsvpc | NetworkMode::Host));
    for pm in c.port_mappings.get_or_insert_with(Vec::new) {
        pm.protocol.get_or_insert(TransportProtocol::Tcp);
        if host_is_container && pm.host_port.is_none() && pm.container_port_range.is_none() {
            pm.host_port = pm.container_port;
        }
    }
    if let Some(hc) = &mut c.health_check {
        hc.interval.get_or_insert(30);
        hc.timeout.get_or_insert(5);
        hc.retries.get_or_insert(3);
    }
    c
}

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

const REMOTE_API: &str = "com.amazonaws.ecs.capability.docker-remote-api.";

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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_wire::ecs::{
        ContainerDependency, DockerVolumeConfiguration, EFSAuthorizationConfig,
        EFSVolumeConfiguration, EnvironmentFile, EnvironmentFileType, EphemeralStorage,
        FirelensConfiguration, FirelensConfigurationType, HealthCheck, HostVolumeProperties,
        IpcMode, KernelCapabilities, KeyValuePair, LinuxParameters, LogConfiguration, MountPoint,
        PortMapping, ProxyConfiguration, RepositoryCredentials, Secret, Tag,
        TaskDefinitionPlacementConstraint, TaskDefinitionPlacementConstraintType, Ulimit,
        UlimitName, Volume, VolumeFrom,
    };
    use std::collections::BTreeMap;

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
        HealthCheck {
            command: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn awslogs() -> LogConfiguration {
        LogConfiguration { log_driver: Some(LogDriver::Awslogs), ..Default::default() }
    }

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
            row(
                "family characters",
                ec2,
                |r| r.family = Some("my family!".into()),
                Client,
                "family",
            ),
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
            row(
                "fargate network mode set",
                fargate,
                |r| r.network_mode = None,
                Client,
                "networkMode",
            ),
            row("fargate task cpu", fargate, |r| r.cpu = None, Client, "cpu"),
            row("fargate task memory", fargate, |r| r.memory = None, Client, "memory"),
            row(
                "fargate size table",
                fargate,
                |r| r.memory = Some("4096".into()),
                Client,
                "memory",
            ),
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
            row(
                "fargate ipcMode",
                fargate,
                |r| r.ipc_mode = Some(IpcMode::Task),
                Client,
                "ipcMode",
            ),
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
                |r| {
                    c(r, 0).image =
                        Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1".into())
                },
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
                    c(r, 0).docker_labels =
                        Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
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
                |r| {
                    c(r, 0).depends_on = Some(vec![depends("app", Some(ContainerCondition::Start))])
                },
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
                |r| {
                    c(r, 0).depends_on =
                        Some(vec![depends("db", Some(ContainerCondition::Healthy))])
                },
                Client,
                "containerDefinitions[0].dependsOn[0].condition",
            ),
            row(
                "COMPLETE not on essential containers",
                ec2_two,
                |r| {
                    c(r, 0).depends_on =
                        Some(vec![depends("db", Some(ContainerCondition::Complete))])
                },
                Client,
                "containerDefinitions[0].dependsOn[0].condition",
            ),
            row(
                "dependencies acyclic",
                ec2_two,
                |r| {
                    c(r, 0).depends_on = Some(vec![depends("db", Some(ContainerCondition::Start))]);
                    c(r, 1).depends_on =
                        Some(vec![depends("app", Some(ContainerCondition::Start))]);
                },
                Client,
                "containerDefinitions[0].dependsOn",
            ),
            // volumesFrom
            row(
                "volumesFrom source exists",
                ec2,
                |r| {
                    c(r, 0).volumes_from = Some(vec![VolumeFrom {
                        source_container: Some("db".into()),
                        read_only: None,
                    }])
                },
                Client,
                "containerDefinitions[0].volumesFrom[0].sourceContainer",
            ),
            row(
                "volumesFrom not itself",
                ec2,
                |r| {
                    c(r, 0).volumes_from = Some(vec![VolumeFrom {
                        source_container: Some("app".into()),
                        read_only: None,
                    }])
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
                    c(r, 0).environment = Some(vec![KeyValuePair {
                        name: Some(String::new()),
                        value: Some("v".into()),
                    }])
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
    fn bases_are_valid() {
        for base in [ec2 as fn() -> Req, ec2_two, fargate] {
            assert_eq!(validate(&base()), Ok(()));
        }
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

    fn valid_cases() -> Vec<(&'static str, Req)> {
        let mut cases = vec![("ec2 bridge with memory", ec2()), ("fargate 256/512", fargate())];

        let mut r = fargate();
        r.cpu = Some("1 vCPU".into());
        r.memory = Some("2 GB".into());
        cases.push(("fargate with vCPU/GB strings", r));

        let mut r = ec2();
        r.container_definitions =
            Some(vec![container("web"), container("api"), container("migrate")]);
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
            capabilities: Some(KernelCapabilities {
                add: Some(vec!["SYS_PTRACE".into()]),
                drop: None,
            }),
            init_process_enabled: Some(true),
            ..Default::default()
        });
        r.tags = Some((0..50).map(|i| tag(&format!("key {i}:/=+-@_."), "value")).collect());
        cases.push(("fargate with ECR, awslogs, EFS access point, 50 tags", r));

        let mut r = ec2();
        r.network_mode = Some(NetworkMode::Host);
        r.requires_compatibilities = Some(vec![
            Compatibility::Ec2,
            Compatibility::External,
            Compatibility::ManagedInstances,
        ]);
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

    #[test]
    fn fargate_table_documented_pairs_and_neighbours() {
        let documented: Vec<(u32, Vec<u32>)> = vec![
            (256, vec![512, 1024, 2048]),
            (512, (1..=4).map(|g| g * 1024).collect()),
            (1024, (2..=8).map(|g| g * 1024).collect()),
            (2048, (4..=16).map(|g| g * 1024).collect()),
            (4096, (8..=30).map(|g| g * 1024).collect()),
            (8192, (16..=60).step_by(4).map(|g| g * 1024).collect()),
            (16_384, (32..=120).step_by(8).map(|g| g * 1024).collect()),
        ];
        for (cpu, memories) in &documented {
            assert_eq!(&fargate_memory_values(*cpu), memories, "cpu {cpu}");
            for &m in memories {
                assert!(fargate_memory_allowed(*cpu, m), "{cpu}/{m} should be allowed");
            }
            let (lo, hi) = (memories[0], *memories.last().unwrap());
            for m in [lo - 1, lo - 512, hi + 1, hi + 512, hi + 1024, lo + 1] {
                assert!(!fargate_memory_allowed(*cpu, m), "{cpu}/{m} should be refused");
            }
        }
        for cpu in [0, 128, 255, 257, 768, 3072, 32_768] {
            assert!(fargate_memory_values(cpu).is_empty(), "cpu {cpu}");
        }
        assert!(!fargate_memory_allowed(8192, 18_432), "8 vCPU steps by 4 GB");
        assert!(!fargate_memory_allowed(16_384, 36_864), "16 vCPU steps by 8 GB");
        assert!(!fargate_memory_allowed(256, 1536));
    }

    #[test]
    fn fargate_validation_follows_the_table() {
        for (cpu, memory, ok) in [
            ("256", "512", true),
            ("256", "4096", false),
            ("16384", "122880", true),
            ("512", "512", false),
        ] {
            let mut r = fargate();
            r.cpu = Some(cpu.into());
            r.memory = Some(memory.into());
            assert_eq!(validate(&r).is_ok(), ok, "{cpu}/{memory}: {:?}", validate(&r));
        }
        let mut r = fargate();
        r.memory = Some("4096".into());
        assert_eq!(
            validate(&r).unwrap_err().to_string(),
            "No Fargate configuration exists for given values: 256 CPU, 4096 memory. See the Amazon ECS \
             documentation for the valid values."
        );
    }

    #[test]
    fn task_size_strings() {
        for (s, want) in [
            ("1024", Some(1024)),
            (" 256 ", Some(256)),
            ("1 vCPU", Some(1024)),
            ("1 vcpu", Some(1024)),
            ("0.5 vcpu", Some(512)),
            ("0.25 vCPU", Some(256)),
            ("0.125 vCPU", Some(128)),
            ("2vCPU", Some(2048)),
            ("16 VCPU", Some(16_384)),
            ("0.3 vCPU", None),
            ("vCPU", None),
            (".5 vCPU", None),
            ("1. vCPU", None),
            ("-1", None),
            ("1 GB", None),
            ("", None),
            ("abc", None),
        ] {
            assert_eq!(parse_task_cpu(s), want, "cpu {s:?}");
        }
        for (s, want) in [
            ("2048", Some(2048)),
            ("2 GB", Some(2048)),
            ("2GB", Some(2048)),
            ("2 gb", Some(2048)),
            ("0.5 GB", Some(512)),
            ("1.5GB", Some(1536)),
            ("120 GB", Some(122_880)),
            ("2 MB", None),
            ("2 GiB", None),
            ("GB", None),
            ("1 vCPU", None),
            ("99999999999", None),
        ] {
            assert_eq!(parse_task_memory_mib(s), want, "memory {s:?}");
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
    fn build_sets_identity_and_copies_members() {
        let mut r = fargate();
        r.cpu = Some("1 vCPU".into());
        r.memory = Some("2 GB".into());
        r.task_role_arn = Some("arn:aws:iam::123456789012:role/task".into());
        r.execution_role_arn = Some("arn:aws:iam::123456789012:role/exec".into());
        r.pid_mode = Some(PidMode::Task);
        r.enable_fault_injection = Some(true);
        r.ephemeral_storage = Some(EphemeralStorage { size_in_gi_b: Some(30) });
        r.tags = Some(vec![tag("team", "web")]);
        r.proxy_configuration =
            Some(ProxyConfiguration { container_name: Some("app".into()), ..Default::default() });
        assert_eq!(validate(&r), Ok(()));
        let td = build(&r, &ctx());
        assert_eq!(
            td.task_definition_arn.as_deref(),
            Some("arn:aws:ecs:eu-west-1:123456789012:task-definition/api:3")
        );
        assert_eq!(td.family.as_deref(), Some("api"));
        assert_eq!(td.revision, Some(3));
        assert_eq!(td.status, Some(TaskDefinitionStatus::Active));
        assert_eq!(td.registered_at, Some(1_700_000_000.5));
        assert_eq!(td.registered_by.as_deref(), Some("arn:aws:iam::123456789012:user/dev"));
        assert_eq!(td.cpu.as_deref(), Some("1024"));
        assert_eq!(td.memory.as_deref(), Some("2048"));
        assert_eq!(td.network_mode, Some(NetworkMode::Awsvpc));
        assert_eq!(td.requires_compatibilities, Some(vec![Compatibility::Fargate]));
        assert_eq!(td.task_role_arn, r.task_role_arn);
        assert_eq!(td.execution_role_arn, r.execution_role_arn);
        assert_eq!(td.pid_mode, Some(PidMode::Task));
        assert_eq!(td.enable_fault_injection, Some(true));
        assert_eq!(td.ephemeral_storage, r.ephemeral_storage);
        assert_eq!(td.proxy_configuration, r.proxy_configuration);
        assert_eq!(td.volumes, Some(vec![]));
        assert_eq!(td.placement_constraints, Some(vec![]));
        assert_eq!(td.deregistered_at, None);
        let json = serde_json::to_value(&td).unwrap();
        assert!(json.get("tags").is_none());
    }

    #[test]
    fn build_fills_container_defaults_as_ecs_echoes_them() {
        let mut r = fargate();
        c(&mut r, 0).port_mappings = Some(vec![
            port(80, None),
            PortMapping { container_port_range: Some("8000-8010".into()), ..Default::default() },
        ]);
        c(&mut r, 0).health_check = Some(health(&["CMD-SHELL", "true"]));
        let td = build(&r, &ctx());
        let json = serde_json::to_value(&td).unwrap();
        let c0 = &json["containerDefinitions"][0];
        assert_eq!(c0["cpu"], 0);
        assert_eq!(c0["essential"], true);
        for empty in ["environment", "mountPoints", "volumesFrom", "systemControls"] {
            assert_eq!(c0[empty], serde_json::json!([]), "{empty}");
        }
        assert_eq!(
            c0["portMappings"][0],
            serde_json::json!({"containerPort": 80, "hostPort": 80, "protocol": "tcp"})
        );
        assert_eq!(
            c0["portMappings"][1],
            serde_json::json!({"containerPortRange": "8000-8010", "protocol": "tcp"})
        );
        assert_eq!(
            c0["healthCheck"],
            serde_json::json!({"command": ["CMD-SHELL", "true"], "interval": 30, "timeout": 5, "retries": 3})
        );
        assert!(c0.get("memory").is_none());

        // Bridge: no host port invented, explicit values kept, absent networkMode stays absent.
        let mut r = ec2();
        c(&mut r, 0).cpu = Some(128);
        c(&mut r, 0).essential = Some(true);
        c(&mut r, 0).port_mappings = Some(vec![port(80, None)]);
        let json = serde_json::to_value(build(&r, &ctx())).unwrap();
        let c0 = &json["containerDefinitions"][0];
        assert_eq!(c0["cpu"], 128);
        assert_eq!(
            c0["portMappings"][0],
            serde_json::json!({"containerPort": 80, "protocol": "tcp"})
        );
        assert!(json.get("networkMode").is_none());
        assert!(json.get("requiresCompatibilities").is_none());
        assert!(json.get("requiresAttributes").is_none(), "no features, no attributes");
        assert!(json.get("cpu").is_none());

        let json = serde_json::to_value(build(&ec2(), &ctx())).unwrap();
        assert_eq!(json["containerDefinitions"][0]["portMappings"], serde_json::json!([]));
    }

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
        c0.health_check = Some(HealthCheck {
            start_period: Some(60),
            ..health(&["CMD-SHELL", "curl -f localhost"])
        });
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
            built
                .iter()
                .all(|a| a.value.is_none() && a.target_type.is_none() && a.target_id.is_none())
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
}
