//! Pure translations between Berth's runtime types and the Docker Engine API's models:
//! [`create_body`] maps a [`ContainerSpec`] to `POST /containers/create`'s body; the `*_from`
//! functions read inspect, list and image answers back. No I/O here, so every mapping is
//! unit-tested without an engine.
//!
//! Contract:
//! * Every [`ContainerSpec`] field is sent or rejected, never silently dropped: values that
//!   do not fit Docker's types (a size beyond `i64`, a non-UTF-8 host path, swap without a
//!   memory limit) are [`RuntimeError::Invalid`].
//! * Unset options stay unset, so the engine (or the image) keeps its own default.
//! * Docker's zero time `0001-01-01T00:00:00Z` reads as `None`; an exit code is reported only
//!   for `exited` / `dead` containers (Docker says 0 for created and running ones).
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use berth_runtime::{
    ContainerSpec, ContainerState, ContainerStatus, ContainerSummary, HealthStatus, ImageInfo,
    MountSource, NetworkAttachment, NetworkMode, PortBinding, Protocol, RuntimeError,
};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerSummaryStateEnum, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, HostConfigLogConfig, ImageInspect, NetworkingConfig,
    PortBinding as DockerPortBinding, ResourcesUlimits,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn invalid(spec: &ContainerSpec, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Invalid { id: spec.name.clone(), message: message.into() }
}

fn to_i64(spec: &ContainerSpec, what: &str, v: u64) -> Result<i64, RuntimeError> {
    i64::try_from(v).map_err(|_| invalid(spec, format!("{what} {v} is too large")))
}

fn nanos(spec: &ContainerSpec, what: &str, d: Duration) -> Result<i64, RuntimeError> {
    i64::try_from(d.as_nanos()).map_err(|_| invalid(spec, format!("{what} {d:?} is too long")))
}

/// Whole seconds, rounded up (Docker's stop timeouts are seconds).
pub(crate) fn ceil_secs(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() { None } else { Some(v) }
}

fn map_of(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Docker's `HostConfig.NetworkMode` string.
pub fn network_mode(mode: &NetworkMode) -> String {
    match mode {
        NetworkMode::Bridge => "bridge".into(),
        NetworkMode::Host => "host".into(),
        NetworkMode::None => "none".into(),
        NetworkMode::Container(id) => format!("container:{id}"),
        NetworkMode::Named(name) => name.clone(),
    }
}

/// The create-container body for `spec`.
pub fn create_body(spec: &ContainerSpec) -> Result<ContainerCreateBody, RuntimeError> {
    if spec.image.is_empty() {
        return Err(invalid(spec, "image is empty"));
    }
    let memory = spec.memory_limit_bytes.map(|m| to_i64(spec, "memory limit", m)).transpose()?;
    let memory_swap = match (spec.max_swap_bytes, memory) {
        (None, _) => None,
        (Some(swap), Some(mem)) => Some(
            mem.checked_add(to_i64(spec, "max swap", swap)?)
                .ok_or_else(|| invalid(spec, "memory limit plus max swap is too large"))?,
        ),
        (Some(_), None) => return Err(invalid(spec, "max_swap_bytes needs memory_limit_bytes")),
    };
    if spec.swappiness.is_some_and(|s| s > 100) {
        return Err(invalid(spec, "swappiness must be 0..=100"));
    }

    // Ports: ExposedPorts lists each container port once; PortBindings may bind it several
    // times.
    let mut exposed: Vec<String> = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        let binding = DockerPortBinding {
            host_ip: Some(p.host_ip.clone().unwrap_or_default()),
            host_port: Some(match p.host_port {
                None | Some(0) => String::new(),
                Some(port) => port.to_string(),
            }),
        };
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }

    let mut binds = Vec::new();
    let mut tmpfs = HashMap::new();
    for m in &spec.mounts {
        if !m.target.starts_with('/') {
            return Err(invalid(spec, format!("mount target {:?} is not absolute", m.target)));
        }
        let ro = if m.read_only { ":ro" } else { "" };
        match &m.source {
            MountSource::HostPath(path) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| invalid(spec, format!("host path {path:?} is not UTF-8")))?;
                if !path.starts_with('/') {
                    return Err(invalid(spec, format!("host path {path:?} is not absolute")));
                }
                binds.push(format!("{path}:{}{ro}", m.target));
            }
            MountSource::Volume(name) => {
                if name.is_empty() || name.contains(['/', ':']) {
                    return Err(invalid(spec, format!("bad volume name {name:?}")));
                }
                binds.push(format!("{name}:{}{ro}", m.target));
            }
            MountSource::Tmpfs { size_bytes, options } => {
                let mut opts: Vec<String> = options.clone();
                if m.read_only {
                    opts.push("ro".into());
                }
                if let Some(size) = size_bytes {
                    opts.push(format!("size={size}"));
                }
                tmpfs.insert(m.target.clone(), opts.join(","));
            }
        }
    }

    let mut extra_hosts: Vec<String> =
        spec.extra_hosts.iter().map(|(host, ip)| format!("{host}:{ip}")).collect();
    if spec.host_gateway {
        extra_hosts.push("host.docker.internal:host-gateway".into());
    }

    let healthcheck = spec
        .healthcheck
        .as_ref()
        .map(|h| -> Result<HealthConfig, RuntimeError> {
            if h.test.is_empty() {
                return Err(invalid(spec, "health check test is empty"));
            }
            Ok(HealthConfig {
                test: Some(h.test.clone()),
                interval: Some(nanos(spec, "health check interval", h.interval)?),
                timeout: Some(nanos(spec, "health check timeout", h.timeout)?),
                retries: Some(i64::from(h.retries)),
                start_period: Some(nanos(spec, "health check start period", h.start_period)?),
                start_interval: None,
            })
        })
        .transpose()?;

    let host_config = HostConfig {
        cpu_shares: spec.cpu_shares.map(|c| to_i64(spec, "cpu shares", c)).transpose()?,
        memory,
        memory_reservation: spec
            .memory_reservation_bytes
            .map(|m| to_i64(spec, "memory reservation", m))
            .transpose()?,
        memory_swap,
        memory_swappiness: spec.swappiness.map(i64::from),
        ulimits: non_empty(
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect(),
        ),
        port_bindings: if bindings.is_empty() { None } else { Some(bindings) },
        network_mode: Some(network_mode(&spec.network_mode)),
        links: non_empty(spec.links.clone()),
        binds: non_empty(binds),
        tmpfs: if tmpfs.is_empty() { None } else { Some(tmpfs) },
        volumes_from: non_empty(
            spec.volumes_from
                .iter()
                .map(
                    |v| {
                        if v.read_only {
                            format!("{}:ro", v.container)
                        } else {
                            v.container.clone()
                        }
                    },
                )
                .collect(),
        ),
        readonly_rootfs: spec.readonly_rootfs.then_some(true),
        privileged: spec.privileged.then_some(true),
        cap_add: non_empty(spec.cap_add.clone()),
        cap_drop: non_empty(spec.cap_drop.clone()),
        init: spec.init.then_some(true),
        shm_size: spec.shm_size_bytes.map(|s| to_i64(spec, "shm size", s)).transpose()?,
        extra_hosts: non_empty(extra_hosts),
        dns: non_empty(spec.dns_servers.clone()),
        dns_search: non_empty(spec.dns_search.clone()),
        sysctls: if spec.sysctls.is_empty() { None } else { Some(map_of(&spec.sysctls)) },
        log_config: spec.log_config.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: if l.options.is_empty() { None } else { Some(map_of(&l.options)) },
        }),
        devices: non_empty(
            spec.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host_path.clone()),
                    path_in_container: Some(
                        d.container_path.clone().unwrap_or_else(|| d.host_path.clone()),
                    ),
                    cgroup_permissions: Some(d.permissions.clone().unwrap_or_else(|| "rwm".into())),
                })
                .collect(),
        ),
        security_opt: non_empty(spec.security_opts.clone()),
        pid_mode: spec.pid_mode.clone(),
        ipc_mode: spec.ipc_mode.clone(),
        cgroup_parent: spec.cgroup_parent.as_deref().map(crate::network::cgroup_parent),
        ..HostConfig::default()
    };
    let networking_config = match (&spec.network_mode, &spec.ipv4_address) {
        (NetworkMode::Named(net), Some(ip)) => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.clone(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(ip.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        (_, Some(_)) => {
            return Err(invalid(spec, "a fixed IPv4 address needs a named network"));
        }
        _ => None,
    };

    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: non_empty(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        labels: if spec.labels.is_empty() { None } else { Some(map_of(&spec.labels)) },
        exposed_ports: non_empty(exposed),
        healthcheck,
        hostname: spec.hostname.clone(),
        stop_timeout: spec.stop_timeout.map(ceil_secs),
        tty: spec.tty.then_some(true),
        open_stdin: spec.interactive.then_some(true),
        network_disabled: spec.network_disabled.then_some(true),
        host_config: Some(host_config),
        networking_config,
        ..ContainerCreateBody::default()
    })
}

/// Parses Docker's RFC 3339 timestamps; the zero time and garbage read as `None`.
pub fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    let s = s?;
    if s.is_empty() || s.starts_with("0001-01-01") {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn state_of(s: Option<&ContainerStateStatusEnum>) -> ContainerState {
    match s {
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING) => {
            ContainerState::Running
        }
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
        Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY) | None => {
            ContainerState::Created
        }
    }
}

fn summary_state_of(s: Option<&ContainerSummaryStateEnum>) -> ContainerState {
    match s {
        Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::STOPPING) => {
            ContainerState::Running
        }
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerState::Exited,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerState::Dead,
        Some(ContainerSummaryStateEnum::CREATED | ContainerSummaryStateEnum::EMPTY) | None => {
            ContainerState::Created
        }
    }
}

fn trim_name(name: &str) -> String {
    name.strip_prefix('/').unwrap_or(name).to_string()
}

fn sorted(m: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

/// Reads an inspect answer.
pub fn status_from(c: &ContainerInspectResponse) -> ContainerStatus {
    let st = c.state.as_ref();
    let state = state_of(st.and_then(|s| s.status.as_ref()));
    let exited = matches!(state, ContainerState::Exited | ContainerState::Dead);
    let health = st.and_then(|s| s.health.as_ref()).and_then(|h| match h.status {
        Some(HealthStatusEnum::STARTING) => Some(HealthStatus::Starting),
        Some(HealthStatusEnum::HEALTHY) => Some(HealthStatus::Healthy),
        Some(HealthStatusEnum::UNHEALTHY) => Some(HealthStatus::Unhealthy),
        _ => None,
    });

    let mut port_bindings = Vec::new();
    let ports = c.network_settings.as_ref().and_then(|n| n.ports.as_ref());
    for (key, binds) in ports.into_iter().flatten() {
        let Some((port, proto)) = key.split_once('/') else { continue };
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => continue,
        };
        let Ok(container_port) = port.parse::<u16>() else { continue };
        for b in binds.iter().flatten() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            port_bindings.push(PortBinding {
                container_port,
                host_port,
                host_ip: b.host_ip.clone().unwrap_or_default(),
                protocol,
            });
        }
    }
    port_bindings.sort();

    let mut networks: Vec<NetworkAttachment> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .into_iter()
        .flatten()
        .map(|(name, ep)| NetworkAttachment {
            name: name.clone(),
            ip_address: ep.ip_address.clone().filter(|ip| !ip.is_empty()),
            mac_address: ep.mac_address.clone().filter(|m| !m.is_empty()),
        })
        .collect();
    // The default bridge first, then by name.
    networks.sort_by(|a, b| (a.name != "bridge", &a.name).cmp(&(b.name != "bridge", &b.name)));
    let ip_address = networks.iter().find_map(|n| n.ip_address.clone());

    let config = c.config.as_ref();
    ContainerStatus {
        id: c.id.clone().unwrap_or_default(),
        name: trim_name(c.name.as_deref().unwrap_or_default()),
        image: config.and_then(|cfg| cfg.image.clone()).unwrap_or_default(),
        image_id: c.image.clone().unwrap_or_default(),
        labels: sorted(config.and_then(|cfg| cfg.labels.as_ref())),
        state,
        exit_code: if exited { st.and_then(|s| s.exit_code) } else { None },
        oom_killed: st.and_then(|s| s.oom_killed).unwrap_or(false),
        error: st.and_then(|s| s.error.clone()).filter(|e| !e.is_empty()),
        created_at: parse_time(c.created.as_deref()),
        started_at: parse_time(st.and_then(|s| s.started_at.as_deref())),
        finished_at: parse_time(st.and_then(|s| s.finished_at.as_deref())),
        health,
        port_bindings,
        ip_address,
        networks,
        pid: st.and_then(|s| s.pid).filter(|p| *p > 0).and_then(|p| u32::try_from(p).ok()),
    }
}

/// Reads one row of a container list.
pub fn summary_from(c: &bollard::models::ContainerSummary) -> ContainerSummary {
    ContainerSummary {
        id: c.id.clone().unwrap_or_default(),
        name: c.names.as_ref().and_then(|n| n.first()).map(|n| trim_name(n)).unwrap_or_default(),
        image: c.image.clone().unwrap_or_default(),
        image_id: c.image_id.clone().unwrap_or_default(),
        labels: sorted(c.labels.as_ref()),
        state: summary_state_of(c.state.as_ref()),
    }
}

/// Reads an image inspect answer.
pub fn image_from(i: &ImageInspect) -> ImageInfo {
    ImageInfo {
        id: i.id.clone().unwrap_or_default(),
        repo_tags: i.repo_tags.clone().unwrap_or_default(),
        repo_digests: i.repo_digests.clone().unwrap_or_default(),
        labels: sorted(i.config.as_ref().and_then(|c| c.labels.as_ref())),
    }
}

/// `amd64`/`x86_64` -> `x86_64`, `aarch64`/`arm64` -> `arm64` (ECS's spelling).
pub fn normalize_arch(arch: &str) -> String {
    match arch {
        "x86_64" | "amd64" => "x86_64".into(),
        "aarch64" | "arm64" => "arm64".into(),
        other => other.to_string(),
    }
}

/// The lines of one frame of Docker's log stream read with `timestamps=true`: each line is
/// `RFC3339NANO TEXT`; a frame without a readable timestamp is dropped (it cannot be ordered
/// or resumed from).
pub(crate) fn log_lines(frame: &[u8], stderr: bool) -> Vec<berth_runtime::LogLine> {
    let text = String::from_utf8_lossy(frame);
    let mut out = Vec::new();
    for line in text.split_terminator('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((ts, rest)) = line.split_once(' ').or(Some((line, ""))) else { continue };
        let Ok(t) = OffsetDateTime::parse(ts, &Rfc3339) else { continue };
        let Ok(timestamp_ns) = i64::try_from(t.unix_timestamp_nanos()) else { continue };
        out.push(berth_runtime::LogLine { timestamp_ns, stderr, text: rest.to_string() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::{Device, HealthCheck, LogConfig, Mount, PortSpec, Ulimit, VolumesFrom};
    use serde_json::{Value, json};

    fn full_spec() -> ContainerSpec {
        ContainerSpec {
            name: "web".into(),
            image: "berth-demo:latest".into(),
            command: Some(vec!["-listen".into(), ":9090".into()]),
            entrypoint: Some(vec!["/hello".into()]),
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            working_dir: Some("/".into()),
            user: Some("1000:1000".into()),
            labels: [("berth.task".to_string(), "t".to_string())].into(),
            cpu_shares: Some(256),
            memory_limit_bytes: Some(64 << 20),
            memory_reservation_bytes: Some(32 << 20),
            max_swap_bytes: Some(0),
            swappiness: Some(10),
            ulimits: vec![Ulimit { name: "nofile".into(), soft: 1024, hard: 4096 }],
            ports: vec![
                PortSpec {
                    container_port: 8080,
                    host_port: None,
                    protocol: Protocol::Tcp,
                    host_ip: None,
                },
                PortSpec {
                    container_port: 8080,
                    host_port: Some(9000),
                    protocol: Protocol::Tcp,
                    host_ip: Some("127.0.0.1".into()),
                },
                PortSpec {
                    container_port: 53,
                    host_port: Some(0),
                    protocol: Protocol::Udp,
                    host_ip: None,
                },
            ],
            network_mode: NetworkMode::Bridge,
            links: vec!["db:database".into()],
            mounts: vec![
                Mount {
                    source: MountSource::HostPath("/srv/data".into()),
                    target: "/data".into(),
                    read_only: true,
                },
                Mount {
                    source: MountSource::Volume("vol1".into()),
                    target: "/v".into(),
                    read_only: false,
                },
                Mount {
                    source: MountSource::Tmpfs {
                        size_bytes: Some(1 << 20),
                        options: vec!["noexec".into()],
                    },
                    target: "/scratch".into(),
                    read_only: false,
                },
            ],
            volumes_from: vec![
                VolumesFrom { container: "abc".into(), read_only: true },
                VolumesFrom { container: "def".into(), read_only: false },
            ],
            healthcheck: Some(HealthCheck {
                test: vec![
                    "CMD".into(),
                    "/hello".into(),
                    "-check".into(),
                    "http://127.0.0.1:8080/health".into(),
                ],
                interval: Duration::from_secs(5),
                timeout: Duration::from_millis(1500),
                retries: 3,
                start_period: Duration::from_secs(10),
            }),
            readonly_rootfs: true,
            privileged: false,
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["MKNOD".into()],
            init: true,
            shm_size_bytes: Some(128 << 20),
            extra_hosts: vec![("db.local".into(), "10.0.0.5".into())],
            host_gateway: true,
            dns_servers: vec!["10.0.0.2".into()],
            dns_search: vec!["example.internal".into()],
            hostname: Some("web-1".into()),
            stop_timeout: Some(Duration::from_millis(2500)),
            sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
            log_config: Some(LogConfig {
                driver: "json-file".into(),
                options: [("max-size".to_string(), "1m".to_string())].into(),
            }),
            devices: vec![Device {
                host_path: "/dev/fuse".into(),
                container_path: None,
                permissions: None,
            }],
            security_opts: vec!["no-new-privileges".into()],
            tty: true,
            interactive: true,
            network_disabled: false,
            pid_mode: Some("host".into()),
            ipc_mode: Some("shareable".into()),
            ipv4_address: None,
            mac_address: None,
            cgroup_parent: Some("berth/t1".into()),
        }
    }

    #[test]
    fn a_fixed_address_goes_to_the_named_network_endpoint() {
        let spec = ContainerSpec {
            name: "pause".into(),
            image: "berth-pause:latest".into(),
            network_mode: NetworkMode::Named("berth-subnet-s1".into()),
            ipv4_address: Some("10.213.1.9".into()),
            ..Default::default()
        };
        let body = serde_json::to_value(create_body(&spec).unwrap()).unwrap();
        assert_eq!(
            body["NetworkingConfig"]["EndpointsConfig"]["berth-subnet-s1"]["IPAMConfig"]["IPv4Address"],
            "10.213.1.9"
        );
        assert_eq!(body["HostConfig"]["NetworkMode"], "berth-subnet-s1");
        let bad = ContainerSpec { network_mode: NetworkMode::Bridge, ..spec };
        assert!(matches!(create_body(&bad), Err(RuntimeError::Invalid { .. })));
    }

    #[test]
    fn every_spec_field_reaches_the_create_body() {
        let body = serde_json::to_value(create_body(&full_spec()).unwrap()).unwrap();
        let hc = &body["HostConfig"];
        assert_eq!(hc["CgroupParent"], "/berth/t1");
        assert_eq!(body["Image"], "berth-demo:latest");
        assert_eq!(body["Cmd"], json!(["-listen", ":9090"]));
        assert_eq!(body["Entrypoint"], json!(["/hello"]));
        assert_eq!(body["Env"], json!(["A=1", "B=x=y"]));
        assert_eq!(body["WorkingDir"], "/");
        assert_eq!(body["User"], "1000:1000");
        assert_eq!(body["Labels"], json!({"berth.task": "t"}));
        assert_eq!(body["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
        assert_eq!(body["Hostname"], "web-1");
        assert_eq!(body["StopTimeout"], 3);
        assert_eq!(body["Tty"], true);
        assert_eq!(body["OpenStdin"], true);
        assert_eq!(body["NetworkDisabled"], Value::Null);
        assert_eq!(
            body["Healthcheck"],
            json!({
                "Test": ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"],
                "Interval": 5_000_000_000i64,
                "Timeout": 1_500_000_000i64,
                "Retries": 3,
                "StartPeriod": 10_000_000_000i64,
            })
        );
        assert_eq!(hc["CpuShares"], 256);
        assert_eq!(hc["Memory"], 64 << 20);
        assert_eq!(hc["MemoryReservation"], 32 << 20);
        assert_eq!(hc["MemorySwap"], 64 << 20);
        assert_eq!(hc["MemorySwappiness"], 10);
        assert_eq!(hc["Ulimits"], json!([{"Name": "nofile", "Soft": 1024, "Hard": 4096}]));
        assert_eq!(
            hc["PortBindings"],
            json!({
                "8080/tcp": [{"HostIp": "", "HostPort": ""}, {"HostIp": "127.0.0.1", "HostPort": "9000"}],
                "53/udp": [{"HostIp": "", "HostPort": ""}],
            })
        );
        assert_eq!(hc["NetworkMode"], "bridge");
        assert_eq!(hc["Links"], json!(["db:database"]));
        assert_eq!(hc["Binds"], json!(["/srv/data:/data:ro", "vol1:/v"]));
        assert_eq!(hc["Tmpfs"], json!({"/scratch": "noexec,size=1048576"}));
        assert_eq!(hc["VolumesFrom"], json!(["abc:ro", "def"]));
        assert_eq!(hc["ReadonlyRootfs"], true);
        assert_eq!(hc["Privileged"], Value::Null);
        assert_eq!(hc["CapAdd"], json!(["NET_ADMIN"]));
        assert_eq!(hc["CapDrop"], json!(["MKNOD"]));
        assert_eq!(hc["Init"], true);
        assert_eq!(hc["ShmSize"], 128 << 20);
        assert_eq!(
            hc["ExtraHosts"],
            json!(["db.local:10.0.0.5", "host.docker.internal:host-gateway"])
        );
        assert_eq!(hc["Dns"], json!(["10.0.0.2"]));
        assert_eq!(hc["DnsSearch"], json!(["example.internal"]));
        assert_eq!(hc["Sysctls"], json!({"net.core.somaxconn": "1024"}));
        assert_eq!(hc["LogConfig"], json!({"Type": "json-file", "Config": {"max-size": "1m"}}));
        assert_eq!(
            hc["Devices"],
            json!([{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}])
        );
        assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges"]));
        assert_eq!(hc["PidMode"], "host");
        assert_eq!(hc["IpcMode"], "shareable");
    }

    #[test]
    fn a_minimal_spec_leaves_engine_defaults() {
        let spec =
            ContainerSpec { name: "m".into(), image: "i".into(), ..ContainerSpec::default() };
        let body = serde_json::to_value(create_body(&spec).unwrap()).unwrap();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&body["HostConfig"]), vec!["NetworkMode"]);
        assert_eq!(keys(&body), vec!["HostConfig", "Image"]);
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let base =
            ContainerSpec { name: "x".into(), image: "i".into(), ..ContainerSpec::default() };
        let bad = |f: &dyn Fn(&mut ContainerSpec)| {
            let mut s = base.clone();
            f(&mut s);
            matches!(create_body(&s), Err(RuntimeError::Invalid { .. }))
        };
        assert!(bad(&|s| s.image.clear()));
        assert!(bad(&|s| s.max_swap_bytes = Some(1)));
        assert!(bad(&|s| s.memory_limit_bytes = Some(u64::MAX)));
        assert!(bad(&|s| s.swappiness = Some(101)));
        assert!(bad(&|s| s.mounts = vec![Mount {
            source: MountSource::HostPath("relative".into()),
            target: "/x".into(),
            read_only: false,
        }]));
        assert!(bad(&|s| s.mounts = vec![Mount {
            source: MountSource::Volume("v".into()),
            target: "x".into(),
            read_only: false,
        }]));
        assert!(bad(&|s| s.healthcheck = Some(HealthCheck {
            test: vec![],
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            retries: 0,
            start_period: Duration::ZERO,
        })));
        assert_eq!(network_mode(&NetworkMode::Container("abc".into())), "container:abc");
        assert_eq!(network_mode(&NetworkMode::Named("mynet".into())), "mynet");
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(30)), 30);
    }

    #[test]
    fn inspect_answers_read_back() {
        // Shaped like Docker 20.10's answer (API 1.41), trimmed.
        let raw = json!({
            "Id": "abc",
            "Created": "2026-11-26T10:00:00.123456789Z",
            "Name": "/web",
            "Image": "sha256:1111",
            "State": {
                "Status": "exited", "Running": false, "Paused": false, "Restarting": false,
                "OOMKilled": true, "Dead": false, "Pid": 0, "ExitCode": 137, "Error": "",
                "StartedAt": "2026-11-26T10:00:01.5Z", "FinishedAt": "2026-11-26T10:00:02Z",
                "Health": {"Status": "unhealthy", "FailingStreak": 3, "Log": []}
            },
            "Config": {"Image": "berth-demo:latest", "Labels": {"a": "b"}},
            "NetworkSettings": {
                "IPAddress": "172.17.0.2",
                "Ports": {
                    "8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}, {"HostIp": "::", "HostPort": "49153"}],
                    "9090/tcp": null
                },
                "Networks": {"bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"}}
            }
        });
        let c: ContainerInspectResponse = serde_json::from_value(raw).unwrap();
        let s = status_from(&c);
        assert_eq!(s.id, "abc");
        assert_eq!(s.name, "web");
        assert_eq!(s.image, "berth-demo:latest");
        assert_eq!(s.image_id, "sha256:1111");
        assert_eq!(s.state, ContainerState::Exited);
        assert_eq!(s.exit_code, Some(137));
        assert!(s.oom_killed);
        assert_eq!(s.error, None);
        assert_eq!(s.health, Some(HealthStatus::Unhealthy));
        assert_eq!(s.host_port(8080, Protocol::Tcp), Some(49153));
        assert_eq!(s.port_bindings.len(), 2);
        assert_eq!(s.ip_address.as_deref(), Some("172.17.0.2"));
        assert_eq!(s.started_at.unwrap().unix_timestamp(), 1_795_687_201);
        assert!(s.created_at.is_some());
        assert_eq!(s.labels.get("a").map(String::as_str), Some("b"));

        let running: ContainerInspectResponse = serde_json::from_value(json!({
            "State": {"Status": "running", "ExitCode": 0, "StartedAt": "2026-11-26T10:00:01Z",
                      "FinishedAt": "0001-01-01T00:00:00Z"}
        }))
        .unwrap();
        let s = status_from(&running);
        assert_eq!(
            (s.state, s.exit_code, s.finished_at, s.health),
            (ContainerState::Running, None, None, None)
        );
    }

    #[test]
    fn arch_names() {
        assert_eq!(normalize_arch("amd64"), "x86_64");
        assert_eq!(normalize_arch("aarch64"), "arm64");
        assert_eq!(normalize_arch("riscv64"), "riscv64");
    }
}

#[cfg(test)]
mod log_line_tests {
    use super::log_lines;

    #[test]
    fn frames_split_into_timestamped_lines() {
        let table: &[(&str, &[(i64, &str)])] = &[
            ("2026-01-01T00:00:00.000000001Z hello\n", &[(1_767_225_600_000_000_001, "hello")]),
            ("2026-01-01T00:00:01Z two words\r\n", &[(1_767_225_601_000_000_000, "two words")]),
            ("2026-01-01T00:00:00.5Z \n", &[(1_767_225_600_500_000_000, "")]),
            (
                "2026-01-01T00:00:00Z a\n2026-01-01T00:00:02Z b\n",
                &[(1_767_225_600_000_000_000, "a"), (1_767_225_602_000_000_000, "b")],
            ),
            ("not a time\n", &[]),
        ];
        for (frame, want) in table {
            let got: Vec<(i64, String)> = log_lines(frame.as_bytes(), true)
                .into_iter()
                .map(|l| (l.timestamp_ns, l.text))
                .collect();
            let want: Vec<(i64, String)> = want.iter().map(|(t, s)| (*t, s.to_string())).collect();
            assert_eq!(got, want, "{frame:?}");
        }
    }
}
