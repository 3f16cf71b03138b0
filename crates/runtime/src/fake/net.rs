//! The fake's networks and shared cgroups: Docker's rules where the agent can tell.

use std::collections::BTreeMap;

use super::State;
use crate::{ContainerSpec, NetworkInfo, NetworkMode, NetworkSpec, ObjectKind, RuntimeError};

/// `(network address, mask)` of an IPv4 CIDR.
pub(crate) fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, mask))
}

/// Whether two CIDRs share an address.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    match (parse_cidr(a), parse_cidr(b)) {
        (Some((na, ma)), Some((nb, mb))) => {
            let m = ma & mb;
            na & m == nb & m
        }
        _ => false,
    }
}

pub(super) fn default_networks() -> BTreeMap<String, NetworkInfo> {
    BTreeMap::from([(
        "bridge".to_string(),
        NetworkInfo {
            id: format!("{:064x}", 0xb1u64),
            name: "bridge".into(),
            driver: "bridge".into(),
            subnets: vec!["172.17.0.0/16".into()],
            labels: BTreeMap::new(),
        },
    )])
}

pub(super) fn create_network(st: &mut State, spec: &NetworkSpec) -> Result<(), RuntimeError> {
    if parse_cidr(&spec.subnet).is_none() {
        return Err(RuntimeError::Invalid {
            id: spec.name.clone(),
            message: format!("invalid subnet {}", spec.subnet),
        });
    }
    if let Some(existing) = st.networks.get(&spec.name) {
        if existing.subnets == [spec.subnet.clone()] {
            return Ok(());
        }
        return Err(RuntimeError::Conflict {
            id: spec.name.clone(),
            message: format!("network with name {} already exists", spec.name),
        });
    }
    if st.networks.values().any(|n| n.subnets.iter().any(|s| overlaps(s, &spec.subnet))) {
        return Err(RuntimeError::Conflict {
            id: spec.name.clone(),
            message: "Pool overlaps with other one on this address space".into(),
        });
    }
    let n = st.networks.len() as u64 + 1;
    st.networks.insert(
        spec.name.clone(),
        NetworkInfo {
            id: format!("{:064x}", 0xf00 + n),
            name: spec.name.clone(),
            driver: "bridge".into(),
            subnets: vec![spec.subnet.clone()],
            labels: spec.labels.clone(),
        },
    );
    Ok(())
}

pub(super) fn remove_network(st: &mut State, name: &str) -> Result<(), RuntimeError> {
    if !st.networks.contains_key(name) {
        return Ok(());
    }
    if st.containers.values().any(|c| c.spec.network_mode == NetworkMode::Named(name.into())) {
        return Err(RuntimeError::Conflict {
            id: name.to_string(),
            message: format!("error while removing network: network {name} has active endpoints"),
        });
    }
    st.networks.remove(name);
    Ok(())
}

pub(super) fn remove_cgroup(st: &mut State, name: &str) -> Result<(), RuntimeError> {
    if st.containers.values().any(|c| c.spec.cgroup_parent.as_deref() == Some(name)) {
        return Err(RuntimeError::Conflict {
            id: name.to_string(),
            message: "cgroup still has containers".into(),
        });
    }
    st.cgroups.remove(name);
    Ok(())
}

/// Docker's checks at create: the named network exists, a fixed address is inside its subnet
/// and not another container's; a fixed address needs a named network.
pub(super) fn check_create(
    st: &State,
    spec: &ContainerSpec,
    name: &str,
) -> Result<(), RuntimeError> {
    let invalid = |message: String| RuntimeError::Invalid { id: name.to_string(), message };
    let NetworkMode::Named(net) = &spec.network_mode else {
        if spec.ipv4_address.is_some() {
            return Err(invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        return Ok(());
    };
    let network = st
        .networks
        .get(net)
        .ok_or_else(|| RuntimeError::NotFound { kind: ObjectKind::Network, id: net.clone() })?;
    if let Some(ip) = &spec.ipv4_address {
        let inside = network.subnets.iter().any(|s| overlaps(s, &format!("{ip}/32")));
        if !inside {
            return Err(invalid(format!("Address {ip} is not in the subnet of network {net}")));
        }
        let taken = st.containers.values().any(|c| {
            c.spec.network_mode == spec.network_mode && c.spec.ipv4_address.as_ref() == Some(ip)
        });
        if taken {
            return Err(RuntimeError::Conflict {
                id: name.to_string(),
                message: format!("Address already in use: {ip}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_overlap_when_they_share_an_address() {
        assert!(overlaps("10.0.0.0/8", "10.213.1.0/24"));
        assert!(overlaps("10.213.1.0/24", "10.213.1.5/32"));
        assert!(!overlaps("10.213.1.0/24", "10.213.2.0/24"));
        assert!(!overlaps("172.17.0.0/16", "172.31.0.0/20"));
        assert!(!overlaps("bad", "10.0.0.0/8"));
    }
}
