//! Network modes and port mappings (the `portMappings` and `hostname` rules of rule 6, and the
//! task-wide port rules of rule 7). The effective mode is `bridge` when absent. In `awsvpc`
//! and `host` mode the host port *is* the container port; in `bridge` a host port of 0 (or
//! none) is dynamic and never conflicts. Ports conflict per protocol (`tcp` when absent).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use berth_wire::ecs::{NetworkMode, TransportProtocol};
use regex::Regex;

use super::facts::{Facts, cfield, client, regex};
use crate::ModelError;

/// Rule 6 for container `i`'s `portMappings`: valid ports or range for the network mode, no
/// container port mapped twice per protocol, valid names.
pub(super) fn check_port_mappings(f: &Facts, i: usize) -> Result<(), ModelError> {
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

/// `hostname` of container `i`: not with `awsvpc`.
pub(super) fn check_hostname(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    if f.mode == NetworkMode::Awsvpc && c.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
        return Err(client(
            cfield(i, "hostname"),
            format!(
                "Invalid setting for container '{name}'. The 'hostname' parameter is not supported \
                 when networkMode=awsvpc."
            ),
        ));
    }
    Ok(())
}

/// Rule 7: no non-zero host port mapped twice per protocol across the task, and port mapping
/// names unique across the task.
pub(super) fn check_task_ports(f: &Facts) -> Result<(), ModelError> {
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

/// A port mapping `name`: 1-64 lowercase letters, numbers, underscores, hyphens (not leading).
fn port_name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(&RE, r"^[a-z0-9_][a-z0-9_-]{0,63}$")
}

/// A mapping's protocol as ECS spells it; `tcp` when absent.
fn proto_str(p: Option<TransportProtocol>) -> &'static str {
    p.unwrap_or(TransportProtocol::Tcp).as_str()
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
