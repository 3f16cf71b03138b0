//! awsvpc networking for ECS tasks: checking a request's `networkConfiguration` against the
//! region's subnets and security groups ([`plan`]), allocating each task's elastic network
//! interface at placement ([`allocate`], [`write`]), showing it as ECS does (the task's
//! `ElasticNetworkInterface` attachment and its containers' `networkInterfaces`), and
//! releasing it when the task has stopped ([`release`]).
//!
//! Contract (the store layout is `berth_model::network`'s):
//! * an ENI is written in the same transaction that commits its task: its record, its
//!   address key (`ec2/eni-ips/<subnet>/<ip>`, compared on absence so two placements never
//!   take one address: the loser re-plans) and one `ec2/sg-members/<group>/<eni>` key per
//!   security group;
//! * it is deleted, with all those keys, in the transaction that records the task STOPPED
//!   (`tasks::records`), and a sweep ([`sweep`]) removes any ENI whose task is gone or
//!   STOPPED, so a crash or an older server leaves nothing behind for long;
//! * an interface's MAC address is derived from its IP address ([`mac_for`]), so a reused
//!   address never leaves stale neighbour entries behind;
//! * subnets are chosen to spread a job's tasks over the given subnets (and so zones),
//!   each task taking the subnet with the fewest of the job's ENIs that still has a free
//!   address; a task that finds no free address in any subnet is not placed (a RunTask
//!   failure `RESOURCE:ENI` naming the subnets, as an exhausted subnet makes ECS fail).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use berth_model::network::{self, Ipv4Net, NetworkInterfaceRecord, SubnetRecord, keys as nkeys};
use berth_store::{Range, Store, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use crate::error;
use crate::records;

/// ECS's attachment type of a task's network interface.
pub const ENI_ATTACHMENT: &str = "ElasticNetworkInterface";
/// Most subnets in one `awsvpcConfiguration` (ECS's limit).
pub const MAX_SUBNETS: usize = 16;
/// Most security groups in one `awsvpcConfiguration` (ECS's limit).
pub const MAX_SECURITY_GROUPS: usize = 5;
/// The failure reason of a task no subnet had an address for.
pub const ENI_FAILURE: &str = "RESOURCE:ENI";

/// A checked `awsvpcConfiguration`: the subnets (with their parsed CIDRs), the security
/// groups and whether to assign a public address.
#[derive(Clone, Debug)]
pub struct NetworkPlan {
    pub subnets: Vec<(SubnetRecord, Ipv4Net)>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

/// One allocated interface, not yet stored.
#[derive(Clone, Debug)]
pub struct Allocation {
    pub eni: NetworkInterfaceRecord,
    pub private_dns_name: String,
}

/// Checks what RunTask / CreateService / UpdateService give as `networkConfiguration` for a
/// task definition of network mode `mode`: required for `awsvpc` (and refused otherwise, with
/// ECS's messages); subnets 1-16 that exist in this region's store, all in one VPC; security
/// groups at most 5 that exist in that VPC (default: the VPC's `default` group);
/// `assignPublicIp ENABLED` only for Fargate. `None` for a task definition that is not awsvpc.
pub async fn plan(
    store: &dyn Store,
    mode: Option<NetworkMode>,
    given: Option<&NetworkConfiguration>,
    fargate: bool,
) -> Result<Option<NetworkPlan>, AwsError> {
    let awsvpc = mode == Some(NetworkMode::Awsvpc);
    let cfg = given.and_then(|n| n.awsvpc_configuration.as_ref());
    let Some(cfg) = cfg else {
        if awsvpc {
            return Err(error::invalid(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ));
        }
        return Ok(None);
    };
    if !awsvpc {
        return Err(error::invalid(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        ));
    }
    let subnet_ids = cfg.subnets.clone().unwrap_or_default();
    if subnet_ids.is_empty() {
        return Err(error::invalid(
            "networkConfiguration.awsvpcConfiguration.subnets can not be empty.",
        ));
    }
    if subnet_ids.len() > MAX_SUBNETS {
        return Err(error::invalid(format!(
            "networkConfiguration.awsvpcConfiguration.subnets: at most {MAX_SUBNETS} subnets are allowed; got {}.",
            subnet_ids.len()
        )));
    }
    let group_ids = cfg.security_groups.clone().unwrap_or_default();
    if group_ids.len() > MAX_SECURITY_GROUPS {
        return Err(error::invalid(format!(
            "networkConfiguration.awsvpcConfiguration.securityGroups: at most {MAX_SECURITY_GROUPS} security groups are allowed; got {}.",
            group_ids.len()
        )));
    }
    let assign_public_ip = cfg.assign_public_ip == Some(AssignPublicIp::Enabled);
    if assign_public_ip && !fargate {
        return Err(error::invalid(
            "networkConfiguration.awsvpcConfiguration.assignPublicIp: Assign public IP is not supported for this launch type.",
        ));
    }
    let mut subnets: Vec<(SubnetRecord, Ipv4Net)> = Vec::with_capacity(subnet_ids.len());
    for id in &subnet_ids {
        if subnets.iter().any(|(s, _)| &s.id == id) {
            continue;
        }
        let found = records::get::<SubnetRecord>(store, &nkeys::subnet(id)).await?;
        let Some((s, _)) = found else {
            return Err(error::invalid(format!(
                "Error retrieving subnet information for [{id}]: The subnet ID '{id}' does not exist (ErrorCode: InvalidSubnetID.NotFound)"
            )));
        };
        let cidr: Ipv4Net = s.cidr_block.parse().map_err(|_| {
            error::invalid(format!("Subnet {id} has no valid IPv4 CIDR block ({}).", s.cidr_block))
        })?;
        if let Some((first, _)) = subnets.first()
            && first.vpc_id != s.vpc_id
        {
            return Err(error::invalid(format!(
                "networkConfiguration.awsvpcConfiguration.subnets: subnets {} ({}) and {id} ({}) are in different VPCs; all the subnets of a task must be in one VPC.",
                first.id, first.vpc_id, s.vpc_id
            )));
        }
        subnets.push((s, cidr));
    }
    let vpc = subnets[0].0.vpc_id.clone();
    let mut security_groups = Vec::with_capacity(group_ids.len().max(1));
    for id in &group_ids {
        let found =
            records::get::<network::SecurityGroupRecord>(store, &nkeys::security_group(id)).await?;
        let Some((g, _)) = found else {
            return Err(error::invalid(format!(
                "Error retrieving security group information for [{id}]: The security group '{id}' does not exist (ErrorCode: InvalidGroup.NotFound)"
            )));
        };
        if g.vpc_id != vpc {
            return Err(error::invalid(format!(
                "Security group {id} and subnet {} belong to different networks (VPCs {} and {vpc}).",
                subnets[0].0.id, g.vpc_id
            )));
        }
        if !security_groups.contains(id) {
            security_groups.push(id.clone());
        }
    }
    if security_groups.is_empty() {
        let key = nkeys::security_group_name(&vpc, network::DEFAULT_SECURITY_GROUP);
        let found = store.get(&key).await.map_err(error::store)?;
        let Some(r) = found else {
            return Err(error::invalid(format!(
                "networkConfiguration.awsvpcConfiguration.securityGroups: none given, and VPC {vpc} has no default security group."
            )));
        };
        security_groups.push(String::from_utf8_lossy(&r.value).trim_matches('"').to_string());
    }
    Ok(Some(NetworkPlan { subnets, security_groups, assign_public_ip }))
}

/// Allocates up to `count` interfaces for `plan` against the addresses taken now (read
/// here; the caller commits them with [`write`], whose compare on absence catches a
/// concurrent taker). Fewer than `count` when the subnets run out of addresses.
pub async fn allocate(
    store: &dyn Store,
    plan: &NetworkPlan,
    count: usize,
    region: &str,
    owner_id: &str,
) -> Result<Vec<Allocation>, AwsError> {
    let mut taken: Vec<BTreeSet<Ipv4Addr>> = Vec::with_capacity(plan.subnets.len());
    for (s, _) in &plan.subnets {
        let prefix = nkeys::eni_ips_prefix(&s.id);
        let recs = store.range(Range::prefix(&prefix)).await.map_err(error::store)?;
        taken.push(
            recs.iter().filter_map(|r| r.key.strip_prefix(prefix.as_str())?.parse().ok()).collect(),
        );
    }
    let mut mine = vec![0usize; plan.subnets.len()];
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        // The subnet with the fewest of this job's interfaces that has a free address.
        let mut order: Vec<usize> = (0..plan.subnets.len()).collect();
        order.sort_by_key(|&i| (mine[i], i));
        let Some((i, ip)) = order
            .into_iter()
            .find_map(|i| network::allocate_ip(plan.subnets[i].1, &taken[i]).map(|ip| (i, ip)))
        else {
            break;
        };
        taken[i].insert(ip);
        mine[i] += 1;
        let (subnet, _) = &plan.subnets[i];
        out.push(Allocation {
            eni: NetworkInterfaceRecord {
                id: network::new_id("eni"),
                subnet_id: subnet.id.clone(),
                vpc_id: subnet.vpc_id.clone(),
                availability_zone: subnet.availability_zone.clone(),
                private_ip: ip,
                mac_address: mac_for(ip),
                security_groups: plan.security_groups.clone(),
                status: "in-use".into(),
                description: String::new(),
                task_arn: String::new(),
                attachment_id: uuid::Uuid::new_v4().to_string(),
                owner_id: owner_id.to_string(),
                tags: if plan.assign_public_ip {
                    vec![network::Tag { key: PUBLIC_IP_TAG.into(), value: "ENABLED".into() }]
                } else {
                    vec![]
                },
            },
            private_dns_name: network::private_dns_name(ip, region),
        });
    }
    Ok(out)
}

/// The MAC address of the interface holding `ip`: locally administered and derived from
/// the address, as Docker derives its containers' (`02:42:` and the IPv4 address). An
/// address reused by a later task then keeps its MAC, so the neighbour (ARP) entries the host
/// and other tasks hold for it stay right; with a fresh random MAC they point at the old
/// interface until they expire, and the new task is unreachable meanwhile. Unique wherever
/// the address is (one bridge per subnet).
pub fn mac_for(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0e:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Gives `task` its interface: the ENI record names the task, and the task carries the
/// `ElasticNetworkInterface` attachment (PRECREATED) and its containers the address.
pub fn attach(a: &mut Allocation, task: &mut Task) {
    let arn = task.task_arn.clone().unwrap_or_default();
    a.eni.description = format!("arn:aws:ecs:task-eni/{}", arn.rsplit('/').next().unwrap_or(""));
    a.eni.task_arn = arn;
    let kv = |n: &str, v: String| KeyValuePair { name: Some(n.into()), value: Some(v) };
    let attachment = Attachment {
        id: Some(a.eni.attachment_id.clone()),
        r#type: Some(ENI_ATTACHMENT.into()),
        status: Some("PRECREATED".into()),
        details: Some(vec![
            kv("subnetId", a.eni.subnet_id.clone()),
            kv("networkInterfaceId", a.eni.id.clone()),
            kv("macAddress", a.eni.mac_address.clone()),
            kv("privateDnsName", a.private_dns_name.clone()),
            kv("privateIPv4Address", a.eni.private_ip.to_string()),
        ]),
    };
    task.attachments.get_or_insert_with(Vec::new).push(attachment);
    for c in task.containers.iter_mut().flatten() {
        c.network_interfaces = Some(vec![berth_wire::ecs::NetworkInterface {
            attachment_id: Some(a.eni.attachment_id.clone()),
            private_ipv4_address: Some(a.eni.private_ip.to_string()),
            ipv6_address: None,
        }]);
    }
    task.availability_zone = Some(a.eni.availability_zone.clone());
}

/// The tag an interface carries when its task asked `assignPublicIp ENABLED`.
pub const PUBLIC_IP_TAG: &str = "aws:ecs:assignPublicIp";

/// `ecs/sg-changed/<group>`: rewritten whenever the group's members change (an interface
/// comes or goes), so that the agents enforcing the group see a newer revision even when a
/// member key is deleted (the agent channel's poll version, [`crate::ecs::AgentChannel`]).
pub fn group_changed(group_id: &str) -> String {
    format!("{GROUP_CHANGED}{group_id}")
}
/// Prefix of [`group_changed`].
pub const GROUP_CHANGED: &str = "ecs/sg-changed/";

/// Adds to `txn` the writes that store an allocated interface: its record, its address
/// (compared on absence) and its security group memberships.
pub fn write(txn: Txn, eni: &NetworkInterfaceRecord) -> Txn {
    let ip_key = nkeys::eni_ip(&eni.subnet_id, eni.private_ip);
    let mut txn = txn
        .put(nkeys::eni(&eni.id), records::encode(eni))
        .when(ip_key.clone(), 0)
        .put(ip_key, eni.id.clone().into_bytes());
    for g in &eni.security_groups {
        txn = txn
            .put(nkeys::security_group_member(g, &eni.id), eni.private_ip.to_string())
            .put(group_changed(g), Vec::new());
    }
    txn
}

/// Adds to `txn` the deletes that release an interface and its keys.
pub fn release(txn: Txn, eni: &NetworkInterfaceRecord) -> Txn {
    let mut txn =
        txn.delete(nkeys::eni(&eni.id)).delete(nkeys::eni_ip(&eni.subnet_id, eni.private_ip));
    for g in &eni.security_groups {
        txn =
            txn.delete(nkeys::security_group_member(g, &eni.id)).put(group_changed(g), Vec::new());
    }
    txn
}

/// Whether the interface's task asked for a public address.
pub fn assigns_public_ip(eni: &NetworkInterfaceRecord) -> bool {
    eni.tags.iter().any(|t| t.key == PUBLIC_IP_TAG && t.value == "ENABLED")
}

/// The ENI id a task's attachment names, if it has one.
pub fn task_eni_id(task: &Task) -> Option<&str> {
    task.attachments
        .iter()
        .flatten()
        .filter(|a| a.r#type.as_deref() == Some(ENI_ATTACHMENT))
        .find_map(|a| {
            a.details
                .iter()
                .flatten()
                .find(|d| d.name.as_deref() == Some("networkInterfaceId"))
                .and_then(|d| d.value.as_deref())
        })
}

/// Sets the status of the task's ENI attachment (`ATTACHED`, `DELETED`...).
pub fn set_attachment_status(task: &mut Task, status: &str) {
    for a in task.attachments.iter_mut().flatten() {
        if a.r#type.as_deref() == Some(ENI_ATTACHMENT) {
            a.status = Some(status.to_string());
        }
    }
}

/// The ENI record of a task, if it still exists.
pub async fn task_eni(
    store: &dyn Store,
    task: &Task,
) -> Result<Option<(NetworkInterfaceRecord, u64)>, AwsError> {
    match task_eni_id(task) {
        Some(id) => records::get(store, &nkeys::eni(id)).await,
        None => Ok(None),
    }
}

/// The agent's view of a task's interface.
pub fn task_network(
    eni: &NetworkInterfaceRecord,
    subnet_cidr: &str,
    region: &str,
    assign_public_ip: bool,
) -> Option<network::TaskNetwork> {
    let cidr: Ipv4Net = subnet_cidr.parse().ok()?;
    Some(network::TaskNetwork {
        eni_id: eni.id.clone(),
        subnet_id: eni.subnet_id.clone(),
        vpc_id: eni.vpc_id.clone(),
        subnet_cidr: cidr.trunc().to_string(),
        gateway: network::gateway(cidr),
        private_ip: eni.private_ip,
        mac_address: eni.mac_address.clone(),
        private_dns_name: network::private_dns_name(eni.private_ip, region),
        security_groups: eni.security_groups.clone(),
        assign_public_ip,
    })
}

/// Removes every ENI whose task is gone or STOPPED (level-triggered repair after a crash
/// or a task record removed by other means). `task_state` gives, from a task ARN, `None` when
/// the task no longer exists and else whether it is STOPPED. Returns how many were removed.
pub async fn sweep<F, Fut>(store: &dyn Store, task_state: F) -> Result<usize, AwsError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<bool>, AwsError>>,
{
    let recs = store.range(Range::prefix(nkeys::ENIS)).await.map_err(error::store)?;
    let mut removed = 0;
    let mut by_task: BTreeMap<String, Vec<(NetworkInterfaceRecord, u64)>> = BTreeMap::new();
    for r in recs {
        let Ok(eni) = serde_json::from_slice::<NetworkInterfaceRecord>(&r.value) else { continue };
        if eni.task_arn.is_empty() {
            continue; // not a task's interface
        }
        by_task.entry(eni.task_arn.clone()).or_default().push((eni, r.mod_revision));
    }
    for (arn, enis) in by_task {
        // Gone (`None`) or STOPPED.
        let gone = task_state(arn).await?.unwrap_or(true);
        if !gone {
            continue;
        }
        for (eni, rev) in enis {
            let txn = release(Txn::new().when(nkeys::eni(&eni.id), rev), &eni);
            if records::commit(store, txn).await? {
                removed += 1;
            }
        }
    }
    Ok(removed)
}
