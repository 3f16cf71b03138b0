//! What an ECS container definition means on a container runtime: the one place that turns a
//! task definition (plus RunTask overrides) into [`ContainerSpec`]s, as the ECS agent does.
//!
//! Labels: every container carries the ECS agent's labels (`com.amazonaws.ecs.cluster`,
//! `com.amazonaws.ecs.task-arn`, `com.amazonaws.ecs.container-name`,
//! `com.amazonaws.ecs.task-definition-family`, `com.amazonaws.ecs.task-definition-version`)
//! and `berth.container-instance-arn`, so a restarted agent adopts exactly its own containers
//! even when several agents share one Docker Engine.
//!
//! Security: every unprivileged container gets `no-new-privileges` ([`security_opts`]); which
//! dangerous settings a task may use at all is the agent's host access policy
//! (`berth_model::host_access`), checked before a task starts.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_runtime::{
    ContainerSpec, HealthCheck, LogConfig, Mount, MountSource, NetworkMode, PortSpec, Protocol,
    Ulimit, VolumeSpec, VolumesFrom,
};
use berth_wire::ecs::{ContainerDefinition, TaskDefinition, TaskOverride, TransportProtocol};

/// Label: the task's ARN.
pub const LABEL_TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
/// Label: the container's name in the task definition.
pub const LABEL_CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
/// Label: the cluster.
pub const LABEL_CLUSTER: &str = "com.amazonaws.ecs.cluster";
/// Label: the instance whose agent owns the container.
pub const LABEL_INSTANCE: &str = "berth.container-instance-arn";

const MIB: u64 = 1024 * 1024;

/// Who the task belongs to, for names and labels.
pub struct TaskIdentity<'a> {
    pub cluster: &'a str,
    pub instance_arn: &'a str,
    pub task_arn: &'a str,
    /// The task id (last segment of its ARN).
    pub task_id: &'a str,
}

/// The Docker name of a task's container: `ecs-<family>-<revision>-<name>-<task id>`.
pub fn container_name(td: &TaskDefinition, name: &str, task_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
            .collect()
    };
    format!(
        "ecs-{}-{}-{}-{}",
        clean(td.family.as_deref().unwrap_or("task")),
        td.revision.unwrap_or(0),
        clean(name),
        task_id
    )
}

/// The Docker volume a task-definition volume maps to, when it is a Docker volume: task-scoped
/// volumes get a per-task name, shared ones keep theirs.
pub fn volume_for(td: &TaskDefinition, volume: &str, id: &TaskIdentity<'_>) -> Option<VolumeSpec> {
    let v = td.volumes.iter().flatten().find(|v| v.name.as_deref() == Some(volume))?;
    if v.host.as_ref().is_some_and(|h| h.source_path.is_some()) {
        return None;
    }
    let dvc = v.docker_volume_configuration.as_ref();
    let shared = dvc.and_then(|d| d.scope).is_some_and(|s| s.as_str() == "shared");
    let name = if shared {
        volume.to_string()
    } else {
        format!(
            "ecs-{}-{}-{volume}-{}",
            td.family.as_deref().unwrap_or("task"),
            td.revision.unwrap_or(0),
            id.task_id
        )
    };
    let mut labels: BTreeMap<String, String> =
        dvc.and_then(|d| d.labels.clone()).unwrap_or_default();
    if !shared {
        labels.insert(LABEL_TASK_ARN.into(), id.task_arn.into());
    }
    labels.insert(LABEL_INSTANCE.into(), id.instance_arn.into());
    Some(VolumeSpec {
        name,
        driver: dvc.and_then(|d| d.driver.clone()),
        driver_opts: dvc.and_then(|d| d.driver_opts.clone()).unwrap_or_default(),
        labels,
    })
}

/// A container's Docker security options: its `dockerSecurityOptions`, plus
/// `no-new-privileges` (no process in it gains privileges through setuid binaries or file
/// capabilities) unless it is privileged, where it would protect nothing and break what such
/// containers run (sudo, systemd). ECS adds it only when asked; Berth always does.
pub fn security_opts(def: &ContainerDefinition) -> Vec<String> {
    let mut opts = def.docker_security_options.clone().unwrap_or_default();
    let has_nnp =
        opts.iter().any(|o| o.trim().to_ascii_lowercase().starts_with("no-new-privileges"));
    if def.privileged != Some(true) && !has_nnp {
        opts.push(NO_NEW_PRIVILEGES.into());
    }
    opts
}

/// The security option every unprivileged container gets.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges";

/// The runtime spec of one container. `names` maps the task's container names to their
/// runtime names (for links), `ids` to their runtime ids where created (for volumesFrom).
pub fn container_spec(
    td: &TaskDefinition,
    def: &ContainerDefinition,
    overrides: Option<&TaskOverride>,
    id: &TaskIdentity<'_>,
    metadata_uri: Option<&str>,
    ids: &BTreeMap<String, String>,
) -> ContainerSpec {
    let name = def.name.clone().unwrap_or_default();
    let o = overrides
        .and_then(|o| o.container_overrides.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name.as_deref() == Some(name.as_str())));
    let mut env: Vec<(String, String)> = def
        .environment
        .iter()
        .flatten()
        .filter_map(|kv| Some((kv.name.clone()?, kv.value.clone().unwrap_or_default())))
        .collect();
    for kv in o.and_then(|o| o.environment.as_ref()).into_iter().flatten() {
        if let Some(n) = &kv.name {
            env.retain(|(k, _)| k != n);
            env.push((n.clone(), kv.value.clone().unwrap_or_default()));
        }
    }
    env.push(("AWS_EXECUTION_ENV".into(), "AWS_ECS_EC2".into()));
    if let Some(uri) = metadata_uri {
        env.push(("ECS_CONTAINER_METADATA_URI_V4".into(), uri.to_string()));
        env.push(("ECS_CONTAINER_METADATA_URI".into(), uri.to_string()));
    }

    let mut labels: BTreeMap<String, String> = def.docker_labels.clone().unwrap_or_default();
    labels.insert(LABEL_CLUSTER.into(), id.cluster.into());
    labels.insert(LABEL_TASK_ARN.into(), id.task_arn.into());
    labels.insert(LABEL_CONTAINER_NAME.into(), name.clone());
    labels.insert(
        "com.amazonaws.ecs.task-definition-family".into(),
        td.family.clone().unwrap_or_default(),
    );
    labels.insert(
        "com.amazonaws.ecs.task-definition-version".into(),
        td.revision.unwrap_or(0).to_string(),
    );
    labels.insert(LABEL_INSTANCE.into(), id.instance_arn.into());

    let network_mode = match td.network_mode.map(|m| m.as_str()) {
        Some("host") => NetworkMode::Host,
        Some("none") => NetworkMode::None,
        _ => NetworkMode::Bridge,
    };
    let ports = def
        .port_mappings
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(PortSpec {
                container_port: u16::try_from(p.container_port?).ok()?,
                host_port: p.host_port.and_then(|h| u16::try_from(h).ok()).filter(|h| *h != 0),
                protocol: if p.protocol == Some(TransportProtocol::Udp) {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                host_ip: None,
            })
        })
        .collect();
    let links = def
        .links
        .iter()
        .flatten()
        .map(|l| {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            format!("{}:{alias}", container_name(td, target, id.task_id))
        })
        .collect();
    let mut mounts: Vec<Mount> = def
        .mount_points
        .iter()
        .flatten()
        .filter_map(|m| {
            let vol = m.source_volume.as_deref()?;
            let v = td.volumes.iter().flatten().find(|v| v.name.as_deref() == Some(vol))?;
            let source = match v.host.as_ref().and_then(|h| h.source_path.clone()) {
                Some(path) => MountSource::HostPath(path.into()),
                None => MountSource::Volume(volume_for(td, vol, id)?.name),
            };
            Some(Mount {
                source,
                target: m.container_path.clone()?,
                read_only: m.read_only.unwrap_or(false),
            })
        })
        .collect();
    let lp = def.linux_parameters.as_ref();
    for t in lp.and_then(|l| l.tmpfs.as_ref()).into_iter().flatten() {
        if let Some(path) = &t.container_path {
            mounts.push(Mount {
                source: MountSource::Tmpfs {
                    size_bytes: t.size.map(|s| s.max(0) as u64 * MIB),
                    options: t.mount_options.clone().unwrap_or_default(),
                },
                target: path.clone(),
                read_only: false,
            });
        }
    }
    let volumes_from = def
        .volumes_from
        .iter()
        .flatten()
        .filter_map(|v| {
            let src = v.source_container.as_deref()?;
            Some(VolumesFrom {
                container: ids
                    .get(src)
                    .cloned()
                    .unwrap_or_else(|| container_name(td, src, id.task_id)),
                read_only: v.read_only.unwrap_or(false),
            })
        })
        .collect();
    let healthcheck = def.health_check.as_ref().and_then(|h| {
        let test = h.command.clone()?;
        let secs = |v: Option<i32>, d: u64| Duration::from_secs(v.map_or(d, |v| v.max(0) as u64));
        Some(HealthCheck {
            test,
            interval: secs(h.interval, 30),
            timeout: secs(h.timeout, 5),
            retries: h.retries.map_or(3, |r| r.max(0) as u32),
            start_period: secs(h.start_period, 0),
        })
    });
    let cpu = o.and_then(|o| o.cpu).or(def.cpu).unwrap_or(0);
    let memory = o.and_then(|o| o.memory).or(def.memory);
    let reservation = o.and_then(|o| o.memory_reservation).or(def.memory_reservation);
    let log_config = def.log_configuration.as_ref().and_then(|l| {
        let driver = l.log_driver?.as_str().to_string();
        // awslogs: the engine keeps the output with its own local driver and the agent ships it
        // to Berth's log store (`crate::logs`); Docker's awslogs driver would call AWS.
        if driver == "awslogs" {
            return None;
        }
        Some(LogConfig { driver, options: l.options.clone().unwrap_or_default() })
    });

    ContainerSpec {
        name: container_name(td, &name, id.task_id),
        image: def.image.clone().unwrap_or_default(),
        command: o.and_then(|o| o.command.clone()).or_else(|| def.command.clone()),
        entrypoint: def.entry_point.clone(),
        env,
        working_dir: def.working_directory.clone(),
        user: def.user.clone(),
        labels,
        // Docker's minimum weight is 2; ECS's cpu 0 means "no reservation".
        cpu_shares: Some(u64::try_from(cpu).unwrap_or(0).max(2)),
        memory_limit_bytes: memory.map(|m| m.max(0) as u64 * MIB),
        memory_reservation_bytes: reservation.map(|m| m.max(0) as u64 * MIB),
        max_swap_bytes: lp.and_then(|l| l.max_swap).map(|s| s.max(0) as u64 * MIB),
        swappiness: lp.and_then(|l| l.swappiness).map(|s| s.clamp(0, 100) as u8),
        ulimits: def
            .ulimits
            .iter()
            .flatten()
            .filter_map(|u| {
                Some(Ulimit {
                    name: u.name?.as_str().to_string(),
                    soft: i64::from(u.soft_limit?),
                    hard: i64::from(u.hard_limit?),
                })
            })
            .collect(),
        ports,
        network_mode,
        links,
        mounts,
        volumes_from,
        healthcheck,
        readonly_rootfs: def.readonly_root_filesystem.unwrap_or(false),
        privileged: def.privileged.unwrap_or(false),
        cap_add: lp
            .and_then(|l| l.capabilities.as_ref())
            .and_then(|c| c.add.clone())
            .unwrap_or_default(),
        cap_drop: lp
            .and_then(|l| l.capabilities.as_ref())
            .and_then(|c| c.drop.clone())
            .unwrap_or_default(),
        init: lp.and_then(|l| l.init_process_enabled).unwrap_or(false),
        shm_size_bytes: lp.and_then(|l| l.shared_memory_size).map(|s| s.max(0) as u64 * MIB),
        extra_hosts: def
            .extra_hosts
            .iter()
            .flatten()
            .filter_map(|h| Some((h.hostname.clone()?, h.ip_address.clone()?)))
            .collect(),
        host_gateway: true,
        dns_servers: def.dns_servers.clone().unwrap_or_default(),
        dns_search: def.dns_search_domains.clone().unwrap_or_default(),
        hostname: def.hostname.clone(),
        stop_timeout: def.stop_timeout.map(|s| Duration::from_secs(s.max(0) as u64)),
        sysctls: def
            .system_controls
            .iter()
            .flatten()
            .filter_map(|s| Some((s.namespace.clone()?, s.value.clone()?)))
            .collect(),
        log_config,
        security_opts: security_opts(def),
        tty: def.pseudo_terminal.unwrap_or(false),
        interactive: def.interactive.unwrap_or(false),
        network_disabled: def.disable_networking.unwrap_or(false),
        pid_mode: (td.pid_mode.map(|m| m.as_str()) == Some("host")).then(|| "host".to_string()),
        ipc_mode: match td.ipc_mode.map(|m| m.as_str()) {
            Some("host") => Some("host".into()),
            Some("none") => Some("none".into()),
            _ => None,
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_wire::ecs::*;

    fn td() -> TaskDefinition {
        serde_json::from_value(serde_json::json!({
            "family": "web", "revision": 3,
            "containerDefinitions": [
                {"name": "app", "image": "berth-demo:latest", "cpu": 256, "memory": 128, "memoryReservation": 64,
                 "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}, {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}],
                 "environment": [{"name": "A", "value": "1"}], "links": ["db:database"],
                 "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}, {"sourceVolume": "host", "containerPath": "/h"}],
                 "healthCheck": {"command": ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"], "interval": 5},
                 "linuxParameters": {"initProcessEnabled": true, "tmpfs": [{"containerPath": "/tmp", "size": 16}]},
                 "logConfiguration": {"logDriver": "awslogs", "options": {}}},
                {"name": "db", "image": "db", "memory": 64}
            ],
            "volumes": [{"name": "data", "dockerVolumeConfiguration": {"scope": "task"}}, {"name": "host", "host": {"sourcePath": "/srv"}}]
        }))
        .unwrap()
    }

    #[test]
    fn maps_a_container_definition() {
        let td = td();
        let id =
            TaskIdentity { cluster: "c", instance_arn: "arn:i", task_arn: "arn:t", task_id: "abc" };
        let overrides = TaskOverride {
            container_overrides: Some(vec![ContainerOverride {
                name: Some("app".into()),
                command: Some(vec!["-x".into()]),
                environment: Some(vec![KeyValuePair {
                    name: Some("A".into()),
                    value: Some("2".into()),
                }]),
                memory: Some(256),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let s = container_spec(
            &td,
            &td.container_definitions.as_ref().unwrap()[0],
            Some(&overrides),
            &id,
            Some("http://m/v4/x"),
            &BTreeMap::new(),
        );
        assert_eq!(s.name, "ecs-web-3-app-abc");
        assert_eq!(s.command, Some(vec!["-x".to_string()]));
        assert!(s.env.contains(&("A".into(), "2".into())));
        assert!(!s.env.contains(&("A".into(), "1".into())));
        assert!(s.env.contains(&("ECS_CONTAINER_METADATA_URI_V4".into(), "http://m/v4/x".into())));
        assert_eq!(s.memory_limit_bytes, Some(256 * MIB));
        assert_eq!(s.memory_reservation_bytes, Some(64 * MIB));
        assert_eq!(s.cpu_shares, Some(256));
        assert_eq!(s.ports[0].host_port, None);
        assert_eq!(s.ports[1].host_port, Some(5353));
        assert_eq!(s.ports[1].protocol, Protocol::Udp);
        assert_eq!(s.links, vec!["ecs-web-3-db-abc:database".to_string()]);
        assert_eq!(s.mounts[0].source, MountSource::Volume("ecs-web-3-data-abc".into()));
        assert!(s.mounts[0].read_only);
        assert_eq!(s.mounts[1].source, MountSource::HostPath("/srv".into()));
        assert!(
            matches!(s.mounts[2].source, MountSource::Tmpfs { size_bytes: Some(b), .. } if b == 16 * MIB)
        );
        let hc = s.healthcheck.unwrap();
        assert_eq!(
            (hc.interval, hc.timeout, hc.retries),
            (Duration::from_secs(5), Duration::from_secs(5), 3)
        );
        assert!(s.init);
        assert_eq!(s.log_config, None, "awslogs falls back to the engine's default driver");
        assert_eq!(s.labels[LABEL_TASK_ARN], "arn:t");
        assert_eq!(s.labels[LABEL_INSTANCE], "arn:i");
        let db = container_spec(
            &td,
            &td.container_definitions.as_ref().unwrap()[1],
            None,
            &id,
            None,
            &BTreeMap::new(),
        );
        assert_eq!(db.cpu_shares, Some(2), "cpu 0 is Docker's minimum weight");
        assert_eq!(s.security_opts, vec![NO_NEW_PRIVILEGES.to_string()]);
    }

    #[test]
    fn no_new_privileges_unless_privileged() {
        let def =
            |v: serde_json::Value| -> ContainerDefinition { serde_json::from_value(v).unwrap() };
        // (container definition, security options)
        let rows = [
            (serde_json::json!({"name": "a"}), vec!["no-new-privileges"]),
            (
                serde_json::json!({"name": "a", "dockerSecurityOptions": ["label:disable"]}),
                vec!["label:disable", "no-new-privileges"],
            ),
            (
                serde_json::json!({"name": "a", "dockerSecurityOptions": ["no-new-privileges:true"]}),
                vec!["no-new-privileges:true"],
            ),
            (serde_json::json!({"name": "a", "privileged": true}), vec![]),
            (serde_json::json!({"name": "a", "privileged": false}), vec!["no-new-privileges"]),
        ];
        for (d, want) in rows {
            assert_eq!(security_opts(&def(d.clone())), want, "{d}");
        }
    }
}
