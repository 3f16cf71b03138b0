//! [`task_requirements`]: what one task of a task definition holds on its container instance,
//! by ECS's rules.
//!
//! * **cpu**: the task-level `cpu` (the override's when given) when set; otherwise the sum of
//!   the containers' `cpu` (each container's override first; absent counts 0).
//! * **memory**: the task-level `memory` (the override's when given) when set; otherwise the
//!   sum over containers of `memoryReservation` when the container has one, else `memory`
//!   (each field's container override first). ECS: "If you specify `memoryReservation`, then
//!   that value is subtracted from the available memory resources for the container instance
//!   where the container is placed. Otherwise, the value of `memory` is used."
//!   (`ContainerDefinition.memoryReservation`, ECS API reference).
//! * **Static host ports**, per protocol (`tcp` when absent), by network mode:
//!   `bridge` (the default): each mapping's non-zero `hostPort` (0 or absent is a dynamic port,
//!   which never conflicts); `host`: the `hostPort`, else the `containerPort` (the container
//!   binds the host's port); `awsvpc` and `none`: none (an awsvpc task has its own network
//!   interface). `containerPortRange` mappings are dynamic. Sorted, without duplicates.
//! * **required attributes**: the names in `requiresAttributes`, then those the definition's
//!   host access settings need ([`berth_model::host_access::required_attributes`]:
//!   privileged, added capabilities, host namespaces, security options, host paths, volume
//!   driver options), first occurrence order, without duplicates. These are derived here
//!   rather than stored in `requiresAttributes`, so that definitions registered earlier are
//!   covered and DescribeTaskDefinition keeps ECS's list.
//!
//! Task-level sizes parse as registration accepts them ("1024", "1 vCPU", "2 GB"); a value
//! that does not parse counts as absent. Unusable numbers (negative, out of the port range)
//! count as absent too: registration refuses them, so only a corrupt record could carry one.

use berth_model::task_definition::{parse_task_cpu, parse_task_memory_mib};
use berth_wire::ecs::{
    ContainerDefinition, ContainerOverride, NetworkMode, TaskDefinition, TaskOverride,
    TransportProtocol,
};

use crate::TaskRequirements;

/// What one task of `td`, run with `overrides`, needs from a container instance (rules in the
/// module docs).
pub fn task_requirements(
    td: &TaskDefinition,
    overrides: Option<&TaskOverride>,
) -> TaskRequirements {
    let containers = td.container_definitions.as_deref().unwrap_or_default();
    let container_override = |c: &ContainerDefinition| -> Option<&ContainerOverride> {
        let name = c.name.as_deref()?;
        overrides?.container_overrides.iter().flatten().find(|o| o.name.as_deref() == Some(name))
    };
    let task_level =
        |over: Option<&String>, own: Option<&String>, parse: fn(&str) -> Option<u32>| {
            over.and_then(|s| parse(s)).or_else(|| own.and_then(|s| parse(s))).map(i64::from)
        };

    let cpu = task_level(overrides.and_then(|o| o.cpu.as_ref()), td.cpu.as_ref(), parse_task_cpu)
        .unwrap_or_else(|| {
            containers
                .iter()
                .map(|c| {
                    let o = container_override(c);
                    non_negative(o.and_then(|o| o.cpu).or(c.cpu))
                })
                .sum()
        });
    let memory_mib = task_level(
        overrides.and_then(|o| o.memory.as_ref()),
        td.memory.as_ref(),
        parse_task_memory_mib,
    )
    .unwrap_or_else(|| {
        containers
            .iter()
            .map(|c| {
                let o = container_override(c);
                let reservation = o.and_then(|o| o.memory_reservation).or(c.memory_reservation);
                let hard = o.and_then(|o| o.memory).or(c.memory);
                non_negative(reservation.or(hard))
            })
            .sum()
    });

    let mode = td.network_mode.unwrap_or(NetworkMode::Bridge);
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for pm in containers.iter().flat_map(|c| c.port_mappings.iter().flatten()) {
        if pm.container_port_range.is_some() {
            continue;
        }
        let host = match mode {
            NetworkMode::Bridge => pm.host_port,
            NetworkMode::Host => pm.host_port.or(pm.container_port),
            NetworkMode::Awsvpc | NetworkMode::None => None,
        };
        let Some(port) = host.and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0) else {
            continue;
        };
        match pm.protocol.unwrap_or(TransportProtocol::Tcp) {
            TransportProtocol::Tcp => tcp.push(port),
            TransportProtocol::Udp => udp.push(port),
        }
    }
    for ports in [&mut tcp, &mut udp] {
        ports.sort_unstable();
        ports.dedup();
    }

    let mut required_attributes: Vec<String> = Vec::new();
    for name in td.requires_attributes.iter().flatten().filter_map(|a| a.name.as_ref()) {
        if !required_attributes.contains(name) {
            required_attributes.push(name.clone());
        }
    }
    for name in berth_model::host_access::required_attributes(td) {
        if !required_attributes.contains(&name) {
            required_attributes.push(name);
        }
    }

    TaskRequirements {
        cpu,
        memory_mib,
        host_ports_tcp: tcp,
        host_ports_udp: udp,
        required_attributes,
    }
}

fn non_negative(v: Option<i32>) -> i64 {
    v.map_or(0, |v| i64::from(v.max(0)))
}

#[cfg(test)]
mod tests {
    use berth_wire::ecs::{Attribute, PortMapping};

    use super::*;

    fn container(
        name: &str,
        cpu: Option<i32>,
        memory: Option<i32>,
        reservation: Option<i32>,
    ) -> ContainerDefinition {
        ContainerDefinition {
            name: Some(name.into()),
            image: Some("busybox".into()),
            cpu,
            memory,
            memory_reservation: reservation,
            ..Default::default()
        }
    }

    fn td(containers: Vec<ContainerDefinition>) -> TaskDefinition {
        TaskDefinition { container_definitions: Some(containers), ..Default::default() }
    }

    fn pm(container: i32, host: Option<i32>, udp: bool) -> PortMapping {
        PortMapping {
            container_port: Some(container),
            host_port: host,
            protocol: Some(if udp { TransportProtocol::Udp } else { TransportProtocol::Tcp }),
            ..Default::default()
        }
    }

    fn with_ports(mode: Option<NetworkMode>, mappings: Vec<PortMapping>) -> TaskDefinition {
        let mut c = container("web", None, Some(64), None);
        c.port_mappings = Some(mappings);
        TaskDefinition { network_mode: mode, ..td(vec![c]) }
    }

    fn co(
        name: &str,
        cpu: Option<i32>,
        memory: Option<i32>,
        reservation: Option<i32>,
    ) -> ContainerOverride {
        ContainerOverride {
            name: Some(name.into()),
            cpu,
            memory,
            memory_reservation: reservation,
            ..Default::default()
        }
    }

    fn sized(cpu: i64, memory_mib: i64) -> TaskRequirements {
        TaskRequirements { cpu, memory_mib, ..Default::default() }
    }

    #[test]
    fn sizes() {
        let two = || {
            td(vec![
                container("a", Some(256), Some(512), None),
                container("b", Some(128), Some(256), None),
            ])
        };
        let task_level = |cpu: &str, mem: &str| TaskDefinition {
            cpu: Some(cpu.into()),
            memory: Some(mem.into()),
            ..two()
        };
        let over = |cpu: Option<&str>, mem: Option<&str>, containers: Vec<ContainerOverride>| {
            TaskOverride {
                cpu: cpu.map(Into::into),
                memory: mem.map(Into::into),
                container_overrides: Some(containers),
                ..Default::default()
            }
        };
        let cases: Vec<(&str, TaskDefinition, Option<TaskOverride>, TaskRequirements)> = vec![
            ("summed over containers", two(), None, sized(384, 768)),
            ("task-level cpu and memory win", task_level("1024", "2048"), None, sized(1024, 2048)),
            ("task-level in vCPU and GB", task_level("0.5 vCPU", "1 GB"), None, sized(512, 1024)),
            (
                "task-level cpu only: memory summed",
                TaskDefinition { cpu: Some("2048".into()), ..two() },
                None,
                sized(2048, 768),
            ),
            (
                "task-level memory only: cpu summed",
                TaskDefinition { memory: Some("4096".into()), ..two() },
                None,
                sized(384, 4096),
            ),
            (
                "memoryReservation is what is reserved when both are set",
                td(vec![container("a", None, Some(512), Some(128))]),
                None,
                sized(0, 128),
            ),
            (
                "memoryReservation alone",
                td(vec![
                    container("a", Some(10), None, Some(300)),
                    container("b", None, Some(100), None),
                ]),
                None,
                sized(10, 400),
            ),
            (
                "no cpu anywhere counts zero",
                td(vec![container("a", None, Some(64), None)]),
                None,
                sized(0, 64),
            ),
            (
                "container overrides of cpu and memory",
                two(),
                Some(over(None, None, vec![co("a", Some(1024), Some(1024), None)])),
                sized(1152, 1280),
            ),
            (
                "override of memory keeps the definition's reservation",
                td(vec![container("a", None, Some(512), Some(128))]),
                Some(over(None, None, vec![co("a", None, Some(1024), None)])),
                sized(0, 128),
            ),
            (
                "override of memoryReservation",
                td(vec![container("a", None, Some(512), None)]),
                Some(over(None, None, vec![co("a", None, None, Some(200))])),
                sized(0, 200),
            ),
            (
                "override naming no container is ignored",
                two(),
                Some(over(None, None, vec![co("zzz", Some(4096), Some(4096), None)])),
                sized(384, 768),
            ),
            (
                "task-level overrides win over the definition's task level",
                task_level("1024", "2048"),
                Some(over(Some("2 vCPU"), Some("3072"), vec![])),
                sized(2048, 3072),
            ),
            (
                "task-level overrides win over summed containers",
                two(),
                Some(over(Some("512"), Some("1024"), vec![co("a", Some(4096), Some(4096), None)])),
                sized(512, 1024),
            ),
            (
                "container overrides do not change task-level sizes",
                task_level("1024", "2048"),
                Some(over(None, None, vec![co("a", Some(4096), Some(4096), None)])),
                sized(1024, 2048),
            ),
            (
                "unparseable task-level size counts as absent",
                TaskDefinition { cpu: Some("lots".into()), ..two() },
                None,
                sized(384, 768),
            ),
        ];
        for (name, def, o, want) in cases {
            assert_eq!(task_requirements(&def, o.as_ref()), want, "{name}");
        }
    }

    #[test]
    fn ports_by_network_mode() {
        let mappings = || {
            vec![
                pm(80, Some(8080), false),
                pm(81, Some(0), false),
                pm(82, None, false),
                pm(53, Some(5353), true),
                pm(54, None, true),
            ]
        };
        let range = PortMapping {
            container_port_range: Some("9000-9010".into()),
            protocol: Some(TransportProtocol::Tcp),
            ..Default::default()
        };
        /// (name, mode, mappings, expected tcp, expected udp)
        type Case = (&'static str, Option<NetworkMode>, Vec<PortMapping>, Vec<u16>, Vec<u16>);
        let cases: Vec<Case> = vec![
            ("bridge by default: static host ports only", None, mappings(), vec![8080], vec![5353]),
            ("bridge explicit", Some(NetworkMode::Bridge), mappings(), vec![8080], vec![5353]),
            (
                "host: the container port is the host port",
                Some(NetworkMode::Host),
                vec![pm(80, Some(80), false), pm(81, None, false), pm(53, None, true)],
                vec![80, 81],
                vec![53],
            ),
            (
                "awsvpc: no host ports",
                Some(NetworkMode::Awsvpc),
                vec![pm(80, Some(80), false), pm(53, Some(53), true)],
                vec![],
                vec![],
            ),
            ("none: no host ports", Some(NetworkMode::None), mappings(), vec![], vec![]),
            (
                "protocol defaults to tcp",
                None,
                vec![PortMapping { protocol: None, ..pm(80, Some(8080), false) }],
                vec![8080],
                vec![],
            ),
            (
                "port ranges are dynamic",
                None,
                vec![range.clone(), pm(80, Some(8080), false)],
                vec![8080],
                vec![],
            ),
            (
                "same port on tcp and udp",
                None,
                vec![pm(53, Some(53), false), pm(53, Some(53), true)],
                vec![53],
                vec![53],
            ),
            (
                "sorted and deduplicated",
                None,
                vec![pm(2, Some(9000), false), pm(1, Some(443), false), pm(3, Some(9000), false)],
                vec![443, 9000],
                vec![],
            ),
            (
                "out-of-range host port ignored",
                None,
                vec![pm(80, Some(70000), false)],
                vec![],
                vec![],
            ),
        ];
        for (name, mode, maps, tcp, udp) in cases {
            let r = task_requirements(&with_ports(mode, maps), None);
            assert_eq!((r.host_ports_tcp, r.host_ports_udp), (tcp, udp), "{name}");
        }
    }

    #[test]
    fn ports_from_every_container() {
        let mut a = container("a", None, Some(64), None);
        a.port_mappings = Some(vec![pm(80, Some(8080), false)]);
        let mut b = container("b", None, Some(64), None);
        b.port_mappings = Some(vec![pm(80, Some(8081), false), pm(53, Some(53), true)]);
        let r = task_requirements(&td(vec![a, b]), None);
        assert_eq!(r.host_ports_tcp, vec![8080, 8081]);
        assert_eq!(r.host_ports_udp, vec![53]);
    }

    #[test]
    fn required_attributes() {
        let attr = |n: &str| Attribute { name: Some(n.into()), ..Default::default() };
        /// (name, requiresAttributes, expected names)
        type Case = (&'static str, Option<Vec<Attribute>>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            ("none", None, vec![]),
            ("empty", Some(vec![]), vec![]),
            (
                "in order, deduplicated",
                Some(vec![
                    attr("com.amazonaws.ecs.capability.docker-remote-api.1.21"),
                    attr("ecs.capability.task-eni"),
                    attr("com.amazonaws.ecs.capability.docker-remote-api.1.21"),
                ]),
                vec![
                    "com.amazonaws.ecs.capability.docker-remote-api.1.21",
                    "ecs.capability.task-eni",
                ],
            ),
            ("nameless entries skipped", Some(vec![Attribute::default(), attr("x")]), vec!["x"]),
        ];
        for (name, attrs, want) in cases {
            let def = TaskDefinition { requires_attributes: attrs, ..td(vec![]) };
            assert_eq!(task_requirements(&def, None).required_attributes, want, "{name}");
        }
    }

    #[test]
    fn registered_definition_round_trip() {
        // A definition as RegisterTaskDefinition stores it (hostPort filled for host mode,
        // protocol filled, task sizes normalised) gives the same answer as the raw one.
        let raw: TaskDefinition = serde_json::from_value(serde_json::json!({
            "family": "web",
            "networkMode": "host",
            "cpu": "512",
            "containerDefinitions": [
                {"name": "web", "image": "nginx", "memory": 256, "memoryReservation": 128,
                 "portMappings": [{"containerPort": 80}, {"containerPort": 53, "protocol": "udp"}]}
            ],
            "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.21"}]
        }))
        .unwrap();
        assert_eq!(
            task_requirements(&raw, None),
            TaskRequirements {
                cpu: 512,
                memory_mib: 128,
                host_ports_tcp: vec![80],
                host_ports_udp: vec![53],
                // Host networking is host access (berth_model::host_access).
                required_attributes: vec![
                    "com.amazonaws.ecs.capability.docker-remote-api.1.21".into(),
                    "berth.capability.host-namespaces".into()
                ],
            }
        );
    }
}
