//! Subnet bridges: made on a task's first use, kept [`BRIDGE_LINGER`] after the last task of
//! the subnet here ended (the next task of the subnet, the common case of a service replacing
//! its tasks, finds it ready: making one costs 60-100 ms of the task's start), then removed;
//! and the host's VPC links between them ([`berth_firewall::host`]): the bridges of one VPC
//! reach each other, as the subnets of a VPC do in AWS through its local route, and those of
//! different VPCs do not.
//!
//! Contract:
//! * a bridge carries [`LABEL_SUBNET`], [`LABEL_VPC`] and the creating instance's label;
//! * the VPC links are recomputed from every Berth bridge on the host (any agent's: the
//!   chains are the host's) and applied whenever this process makes or removes a bridge, or
//!   first sees one it did not make, before the task using it starts; [`cleanup`] also
//!   re-applies them when they changed or every [`LINKS_REFRESH`] (another process's agent
//!   may have applied an older view);
//! * failing to apply them is logged, not fatal: the task still reaches its own subnet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_firewall::{Bridge, VpcLinks};
use berth_model::network::TaskNetwork;
use berth_runtime::{NetworkSpec, Runtime, RuntimeError};
use berth_wire::ecs::TaskStopCode;
use tokio::time::Instant;

use super::{LABEL_SUBNET, Networking, bridge_name, failed};
use crate::spec::LABEL_INSTANCE;

/// Label on a subnet bridge: its VPC.
pub const LABEL_VPC: &str = "berth.vpc";
/// How long an unused bridge stays after its last task here ended.
pub const BRIDGE_LINGER: Duration = Duration::from_secs(10);
/// How often [`cleanup`] re-applies unchanged VPC links.
pub const LINKS_REFRESH: Duration = Duration::from_secs(30);

/// The process's view of its bridges (shared by the agents of one process, like the lock).
#[derive(Default)]
pub struct BridgeState {
    /// When each bridge's last task here ended (removal waits [`BRIDGE_LINGER`] from it).
    released: Mutex<HashMap<String, Instant>>,
    /// Bridges the links were last applied with, the links, and when.
    linked: Mutex<Option<(BTreeSet<String>, VpcLinks, Instant)>>,
}

/// The process's [`BridgeState`].
pub(super) fn bridge_state() -> Arc<BridgeState> {
    static STATE: std::sync::OnceLock<Arc<BridgeState>> = std::sync::OnceLock::new();
    STATE.get_or_init(Default::default).clone()
}

impl BridgeState {
    fn knows(&self, name: &str) -> bool {
        let linked = self.linked.lock().unwrap_or_else(|e| e.into_inner());
        linked.as_ref().is_some_and(|(names, _, _)| names.contains(name))
    }

    fn lingering(&self, name: &str) -> bool {
        let released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        released.get(name).is_some_and(|t| t.elapsed() < BRIDGE_LINGER)
    }
}

/// Creates the subnet's bridge unless it exists; a CIDR overlapping another network fails,
/// naming it (looked up only then: the common case is one engine call). A bridge this
/// process has not linked yet gets the VPC links first. Call with [`Networking::bridges`]
/// held.
pub(super) async fn ensure_bridge(
    rt: &dyn Runtime,
    networking: &Networking,
    net: &TaskNetwork,
    instance_arn: &str,
) -> Result<(), (TaskStopCode, String)> {
    let name = bridge_name(&net.subnet_id);
    let mut labels = BTreeMap::from([
        (LABEL_SUBNET.to_string(), net.subnet_id.clone()),
        (LABEL_INSTANCE.to_string(), instance_arn.to_string()),
    ]);
    if !net.vpc_id.is_empty() {
        labels.insert(LABEL_VPC.to_string(), net.vpc_id.clone());
    }
    let spec = NetworkSpec {
        name: name.clone(),
        subnet: net.subnet_cidr.clone(),
        gateway: Some(net.gateway.to_string()),
        labels,
    };
    let Err(e) = rt.create_network(&spec).await else {
        if !networking.vpc.knows(&name) {
            sync_vpc_links(rt, networking, true).await;
        }
        return Ok(());
    };
    let all = rt
        .list_networks(&[])
        .await
        .map_err(|e| failed(format!("CannotCreateNetworkError: {e}")))?;
    if let Some(other) = all
        .iter()
        .filter(|n| n.name != name)
        .find(|n| n.subnets.iter().any(|s| overlaps(s, &net.subnet_cidr)))
    {
        return Err(failed(format!(
            "CannotCreateNetworkError: subnet {} ({}) overlaps Docker network {} ({})",
            net.subnet_id,
            net.subnet_cidr,
            other.name,
            other.subnets.join(", ")
        )));
    }
    Err(failed(format!(
        "CannotCreateNetworkError: bridge {name} for subnet {} ({}): {e}",
        net.subnet_id, net.subnet_cidr
    )))
}

/// The task using `subnet_id`'s bridge ended: the bridge is removed after [`BRIDGE_LINGER`]
/// unless a task uses it by then (or another ends later, which schedules its own removal).
pub(super) fn release_bridge(rt: Arc<dyn Runtime>, networking: &Networking, subnet_id: &str) {
    let name = bridge_name(subnet_id);
    let at = Instant::now();
    networking.vpc.released.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), at);
    let networking = networking.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(at + BRIDGE_LINGER).await;
        let latest =
            networking.vpc.released.lock().unwrap_or_else(|e| e.into_inner()).get(&name).copied();
        if latest != Some(at) {
            return;
        }
        let _guard = networking.bridges.lock().await;
        remove_bridge(rt.as_ref(), &networking, &name).await;
    });
}

/// Removes bridge `name` unless it is in use; then the links follow. Call with the lock held.
async fn remove_bridge(rt: &dyn Runtime, networking: &Networking, name: &str) {
    match rt.remove_network(name).await {
        Ok(()) => {
            tracing::debug!(network = %name, "removed an unused subnet bridge");
            networking.vpc.released.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
            sync_vpc_links(rt, networking, true).await;
        }
        Err(RuntimeError::Conflict { .. }) => {}
        Err(RuntimeError::NotFound { .. }) => {
            networking.vpc.released.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        }
        Err(e) => tracing::warn!(network = %name, error = %e, "cannot remove the bridge"),
    }
}

/// Level-triggered (from the agent's cleanup): removes this instance's bridges that no
/// container uses and that are not lingering, and refreshes the VPC links. Call with the
/// lock held.
pub(super) async fn cleanup(rt: &dyn Runtime, networking: &Networking, instance_arn: &str) {
    let labels = [(LABEL_INSTANCE.to_string(), instance_arn.to_string())];
    if let Ok(nets) = rt.list_networks(&labels).await {
        for n in nets.iter().filter(|n| n.labels.contains_key(LABEL_SUBNET)) {
            if !networking.vpc.lingering(&n.name) {
                remove_bridge(rt, networking, &n.name).await;
            }
        }
    }
    sync_vpc_links(rt, networking, false).await;
}

/// The host's Berth bridges, as the firewall sees them.
fn host_bridges(nets: &[berth_runtime::NetworkInfo]) -> Vec<(String, Bridge)> {
    nets.iter()
        .filter(|n| n.labels.contains_key(LABEL_SUBNET) && n.id.len() >= 12)
        .filter_map(|n| {
            let cidr = n.subnets.first()?.parse().ok()?;
            let bridge = Bridge {
                device: format!("br-{}", &n.id[..12]),
                vpc_id: n.labels.get(LABEL_VPC).cloned().unwrap_or_default(),
                cidr,
            };
            Some((n.name.clone(), bridge))
        })
        .collect()
}

/// Recomputes the VPC links from the host's bridges and applies them (`force`; else only
/// when they changed or [`LINKS_REFRESH`] passed).
async fn sync_vpc_links(rt: &dyn Runtime, networking: &Networking, force: bool) {
    let nets = match rt.list_networks(&[]).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list networks for the VPC links");
            return;
        }
    };
    let bridges = host_bridges(&nets);
    let names: BTreeSet<String> = bridges.iter().map(|(n, _)| n.clone()).collect();
    let links = berth_firewall::vpc_links(&bridges.into_iter().map(|(_, b)| b).collect::<Vec<_>>());
    let fresh = {
        let linked = networking.vpc.linked.lock().unwrap_or_else(|e| e.into_inner());
        linked
            .as_ref()
            .is_some_and(|(n, l, at)| *n == names && *l == links && at.elapsed() < LINKS_REFRESH)
    };
    if fresh && !force {
        return;
    }
    match networking.firewall.apply_vpc_links(&links).await {
        Ok(()) => {
            *networking.vpc.linked.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((names, links, Instant::now()));
        }
        Err(e) => tracing::warn!(error = %e, "cannot apply the links between a VPC's bridges"),
    }
}

/// Whether two IPv4 CIDRs share an address.
pub(super) fn overlaps(a: &str, b: &str) -> bool {
    match (a.parse::<berth_model::network::Ipv4Net>(), b.parse::<berth_model::network::Ipv4Net>()) {
        (Ok(a), Ok(b)) => a.contains(&b.network()) || b.contains(&a.network()),
        _ => false,
    }
}
