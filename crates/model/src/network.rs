//! The EC2 networking domain Berth's awsvpc tasks live in: VPCs, subnets, security groups and
//! the elastic network interfaces (ENIs) of tasks, as the store keeps them.
//!
//! Three parts of Berth meet here, and this module is their contract:
//! * the EC2 API (`berth_server::ec2`) creates, describes and deletes VPCs, subnets and
//!   security groups, and edits security group rules;
//! * ECS placement allocates one ENI per awsvpc task (an address from one of the task's
//!   subnets, [`allocate_ip`]) in the same transaction that places the task, and releases it
//!   when the task has stopped;
//! * agents receive each awsvpc task's [`TaskNetwork`] and the rules of its security groups
//!   ([`SecurityGroupRules`]) and enforce them.
//!
//! Invariants:
//! * every record lives in its region's view of the store under `ec2/` ([`keys`]); ids are
//!   EC2-shaped (`vpc-`, `subnet-`, `sg-`, `eni-`, `sgr-` followed by 17 hex digits);
//! * an address is taken in a subnet exactly when `ec2/eni-ips/<subnet>/<ip>` exists, written
//!   and deleted in the same transaction as its ENI record (compare-and-set on absence), so two
//!   placements can never hand out one address;
//! * AWS's reserved addresses of a subnet (the network address, the next three, and the
//!   broadcast address) are never allocated; the first of the next three (`.1` in a /24) is
//!   the subnet's gateway ([`gateway`]), which the agent gives the subnet's bridge;
//! * a security group's rules are the whole truth for its members: a member's firewall
//!   allows exactly what the union of its groups' rules allows (stateful: replies to allowed
//!   traffic are allowed), and nothing else.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use ipnet::Ipv4Net;

/// The default VPC's CIDR block, as in every AWS region.
pub const DEFAULT_VPC_CIDR: &str = "172.31.0.0/16";
/// How many availability zones each region has in Berth (`<region>a`, `b`, `c`).
pub const ZONES_PER_REGION: usize = 3;
/// The name of every VPC's default security group.
pub const DEFAULT_SECURITY_GROUP: &str = "default";

/// A resource tag as EC2 keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// `ec2/vpcs/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcRecord {
    pub id: String,
    pub cidr_block: String,
    pub is_default: bool,
    /// `available` (Berth creates VPCs synchronously).
    pub state: String,
    pub owner_id: String,
    pub tags: Vec<Tag>,
}

/// `ec2/subnets/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRecord {
    pub id: String,
    pub vpc_id: String,
    pub cidr_block: String,
    /// `us-east-1a`...
    pub availability_zone: String,
    /// `use1-az1`...
    pub availability_zone_id: String,
    pub default_for_az: bool,
    pub map_public_ip_on_launch: bool,
    pub state: String,
    pub owner_id: String,
    pub tags: Vec<Tag>,
}

/// `ec2/security-groups/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub ingress: Vec<SecurityGroupRule>,
    pub egress: Vec<SecurityGroupRule>,
    pub tags: Vec<Tag>,
}

/// One rule of a security group, in one direction. EC2's `IpPermission` with several ranges
/// or groups is stored as one rule per range or group (each has its own `sgr-` id, as
/// `DescribeSecurityGroupRules` shows them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    /// `sgr-...`.
    pub id: String,
    pub protocol: IpProtocol,
    /// First port (or ICMP type) of the range; `None` for every port (`-1` on the wire).
    pub from_port: Option<i32>,
    /// Last port (or ICMP code); `None` for every port.
    pub to_port: Option<i32>,
    pub peer: Peer,
    pub description: Option<String>,
}

/// The IP protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    /// `-1`: every protocol (the rule's ports are ignored).
    All,
    Tcp,
    Udp,
    Icmp,
}

impl IpProtocol {
    /// EC2's spelling (`-1`, `tcp`, `udp`, `icmp`).
    pub fn as_ec2(self) -> &'static str {
        match self {
            Self::All => "-1",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
        }
    }
    /// Parses EC2's spellings, protocol numbers included (`6`, `17`, `1`, `-1`, `all`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "-1" | "all" => Some(Self::All),
            "tcp" | "6" => Some(Self::Tcp),
            "udp" | "17" => Some(Self::Udp),
            "icmp" | "1" => Some(Self::Icmp),
            _ => None,
        }
    }
}

/// Whom a rule admits (ingress: the source; egress: the destination).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Peer {
    /// An IPv4 CIDR (`0.0.0.0/0`, `10.0.0.0/8`).
    Cidr(String),
    /// The members of a security group (by id).
    Group(String),
}

/// `ec2/enis/<id>`: an awsvpc task's network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterfaceRecord {
    /// `eni-...`.
    pub id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub private_ip: Ipv4Addr,
    /// `0e:xx:xx:xx:xx:xx` (locally administered, unicast).
    pub mac_address: String,
    pub security_groups: Vec<String>,
    /// `in-use` while attached to a task.
    pub status: String,
    pub description: String,
    /// The ARN of the task it belongs to.
    pub task_arn: String,
    /// The ECS attachment id (a UUID) the task's `attachments` shows.
    pub attachment_id: String,
    pub owner_id: String,
    pub tags: Vec<Tag>,
}

/// What an agent needs to give one awsvpc task its network (carried in the agent protocol's
/// desired task).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskNetwork {
    pub eni_id: String,
    pub subnet_id: String,
    /// The subnet's VPC: the agent lets the bridges of one VPC reach each other (empty from
    /// an older server: no links).
    #[serde(default)]
    pub vpc_id: String,
    /// The subnet's CIDR (`172.31.0.0/20`): the agent's bridge for this subnet uses it.
    pub subnet_cidr: String,
    /// The subnet's gateway ([`gateway`]).
    pub gateway: Ipv4Addr,
    pub private_ip: Ipv4Addr,
    pub mac_address: String,
    /// `ip-172-31-1-5.<region>.compute.internal`.
    pub private_dns_name: String,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

/// The rules of one security group as an agent enforces them: group references already
/// resolved to the addresses of the group's current members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupRules {
    pub group_id: String,
    pub ingress: Vec<ResolvedRule>,
    pub egress: Vec<ResolvedRule>,
}

/// One rule with its peer as a set of IPv4 networks (a group reference with no members
/// resolves to none and admits nothing).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRule {
    pub protocol: IpProtocol,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub peers: Vec<Ipv4Net>,
}

/// The store keys of this module's records. Each region's view holds its own.
pub mod keys {
    /// Prefix of every VPC.
    pub const VPCS: &str = "ec2/vpcs/";
    pub fn vpc(id: &str) -> String {
        format!("{VPCS}{id}")
    }
    /// Prefix of every subnet.
    pub const SUBNETS: &str = "ec2/subnets/";
    pub fn subnet(id: &str) -> String {
        format!("{SUBNETS}{id}")
    }
    /// Prefix of every security group.
    pub const SECURITY_GROUPS: &str = "ec2/security-groups/";
    pub fn security_group(id: &str) -> String {
        format!("{SECURITY_GROUPS}{id}")
    }
    /// `ec2/sg-names/<vpc>/<name>`: group names are unique per VPC; the value is the id.
    pub fn security_group_name(vpc_id: &str, name: &str) -> String {
        format!("ec2/sg-names/{vpc_id}/{name}")
    }
    /// Prefix of every ENI.
    pub const ENIS: &str = "ec2/enis/";
    pub fn eni(id: &str) -> String {
        format!("{ENIS}{id}")
    }
    /// `ec2/eni-ips/<subnet>/<ip>`: the address is taken; the value is the ENI id.
    pub fn eni_ip(subnet_id: &str, ip: std::net::Ipv4Addr) -> String {
        format!("ec2/eni-ips/{subnet_id}/{ip}")
    }
    /// Prefix of the taken addresses of one subnet.
    pub fn eni_ips_prefix(subnet_id: &str) -> String {
        format!("ec2/eni-ips/{subnet_id}/")
    }
    /// `ec2/sg-members/<group>/<eni>`: the ENI is in the group; the value is its address.
    /// Written and deleted with the ENI.
    pub fn security_group_member(group_id: &str, eni_id: &str) -> String {
        format!("ec2/sg-members/{group_id}/{eni_id}")
    }
    /// Prefix of one group's members.
    pub fn security_group_members_prefix(group_id: &str) -> String {
        format!("ec2/sg-members/{group_id}/")
    }
    /// `ec2/default-vpc`: the id of the region's default VPC, once created.
    pub const DEFAULT_VPC: &str = "ec2/default-vpc";
}

/// A new EC2-shaped id: `prefix-` and 17 lowercase hex digits.
pub fn new_id(prefix: &str) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &u[..17])
}

/// A locally administered unicast MAC address for a new ENI.
pub fn new_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("0e:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4])
}

/// The gateway of a subnet: its network address plus one (AWS's VPC router address).
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The first free address of `subnet` not in `taken`, skipping AWS's five reserved addresses;
/// `None` when the subnet is full. Pure: the caller commits the choice with compare-and-set
/// on [`keys::eni_ip`] and picks again on conflict.
pub fn allocate_ip(subnet: Ipv4Net, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let first = u32::from(subnet.network()).checked_add(4)?;
    let last = u32::from(subnet.broadcast()).checked_sub(1)?;
    (first..=last).map(Ipv4Addr::from).find(|ip| !taken.contains(ip))
}

/// How many addresses of `subnet` tasks can use (EC2's `AvailableIpAddressCount` with none
/// taken).
pub fn usable_addresses(subnet: Ipv4Net) -> u32 {
    let size = 1u64 << (32 - u32::from(subnet.prefix_len()));
    size.saturating_sub(5) as u32
}

/// The availability zones of `region` (`<region>a`...) with their zone ids
/// (`<region code>-az1`...).
pub fn zones(region: &str) -> Vec<(String, String)> {
    let code: String = region
        .split('-')
        .enumerate()
        .map(|(i, part)| match i {
            0 => part.to_string(),
            1 => part.chars().next().map(String::from).unwrap_or_default(),
            _ => part.to_string(),
        })
        .collect();
    (0..ZONES_PER_REGION)
        .map(|i| (format!("{region}{}", (b'a' + i as u8) as char), format!("{code}-az{}", i + 1)))
        .collect()
}

/// The default subnets: one /20 per zone of the default VPC, in zone order (172.31.0.0/20,
/// 172.31.16.0/20, 172.31.32.0/20), as AWS lays them out.
pub fn default_subnet_cidrs() -> Vec<Ipv4Net> {
    let vpc: Ipv4Net = DEFAULT_VPC_CIDR.parse().expect("constant CIDR");
    vpc.subnets(20).expect("/20 within /16").take(ZONES_PER_REGION).collect()
}

/// The private DNS name EC2 gives `ip` in `region`.
pub fn private_dns_name(ip: Ipv4Addr, region: &str) -> String {
    let dashed = ip.to_string().replace('.', "-");
    if region == "us-east-1" {
        format!("ip-{dashed}.ec2.internal")
    } else {
        format!("ip-{dashed}.{region}.compute.internal")
    }
}

/// Resolves `groups`' rules for an agent: each group-referencing rule becomes the /32s of the
/// referenced group's members (`members(group)`), each CIDR rule its network. Rules whose
/// CIDR does not parse are dropped (the API never stores one).
pub fn resolve(
    group: &SecurityGroupRecord,
    members: &dyn Fn(&str) -> Vec<Ipv4Addr>,
) -> SecurityGroupRules {
    let one = |r: &SecurityGroupRule| -> ResolvedRule {
        let peers: BTreeSet<Ipv4Net> = match &r.peer {
            Peer::Cidr(c) => c.parse::<Ipv4Net>().map(|n| n.trunc()).into_iter().collect(),
            Peer::Group(g) => members(g)
                .into_iter()
                .map(|ip| Ipv4Net::new(ip, 32).expect("/32 is valid"))
                .collect(),
        };
        ResolvedRule {
            protocol: r.protocol,
            from_port: r.from_port,
            to_port: r.to_port,
            peers: peers.into_iter().collect(),
        }
    };
    SecurityGroupRules {
        group_id: group.id.clone(),
        ingress: group.ingress.iter().map(one).collect(),
        egress: group.egress.iter().map(one).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocation_skips_reserved_and_taken_addresses() {
        let s = net("10.0.1.0/28");
        assert_eq!(allocate_ip(s, &BTreeSet::new()), Some("10.0.1.4".parse().unwrap()));
        let taken: BTreeSet<Ipv4Addr> =
            ["10.0.1.4", "10.0.1.5"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(allocate_ip(s, &taken), Some("10.0.1.6".parse().unwrap()));
        let full: BTreeSet<Ipv4Addr> = (4..=14).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect();
        assert_eq!(allocate_ip(s, &full), None, "broadcast (.15) is never handed out");
        assert_eq!(usable_addresses(s), 11);
        assert_eq!(usable_addresses(net("172.31.0.0/20")), 4091);
        assert_eq!(gateway(net("172.31.16.0/20")), Ipv4Addr::new(172, 31, 16, 1));
    }

    #[test]
    fn default_layout_matches_aws() {
        let cidrs: Vec<String> = default_subnet_cidrs().iter().map(|n| n.to_string()).collect();
        assert_eq!(cidrs, ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"]);
        assert_eq!(
            zones("us-east-1"),
            [
                ("us-east-1a".to_string(), "use1-az1".to_string()),
                ("us-east-1b".to_string(), "use1-az2".to_string()),
                ("us-east-1c".to_string(), "use1-az3".to_string()),
            ]
        );
        assert_eq!(zones("ap-southeast-2")[1].1, "aps2-az2");
        assert_eq!(
            private_dns_name(Ipv4Addr::new(172, 31, 1, 5), "eu-west-1"),
            "ip-172-31-1-5.eu-west-1.compute.internal"
        );
        assert_eq!(
            private_dns_name(Ipv4Addr::new(172, 31, 1, 5), "us-east-1"),
            "ip-172-31-1-5.ec2.internal"
        );
    }

    #[test]
    fn ids_and_macs_are_ec2_shaped() {
        let id = new_id("sg");
        assert!(id.starts_with("sg-") && id.len() == 20, "{id}");
        let mac = new_mac();
        assert_eq!(mac.len(), 17);
        assert!(mac.starts_with("0e:"));
    }

    #[test]
    fn group_references_resolve_to_member_addresses() {
        let rule = |peer: Peer| SecurityGroupRule {
            id: "sgr-1".into(),
            protocol: IpProtocol::Tcp,
            from_port: Some(8080),
            to_port: Some(8080),
            peer,
            description: None,
        };
        let g = SecurityGroupRecord {
            id: "sg-a".into(),
            name: "a".into(),
            description: "d".into(),
            vpc_id: "vpc-1".into(),
            owner_id: "0".into(),
            ingress: vec![rule(Peer::Group("sg-b".into())), rule(Peer::Cidr("10.1.2.3/8".into()))],
            egress: vec![rule(Peer::Group("sg-empty".into()))],
            tags: vec![],
        };
        let members = |g: &str| -> Vec<Ipv4Addr> {
            match g {
                "sg-b" => vec![Ipv4Addr::new(172, 31, 0, 9), Ipv4Addr::new(172, 31, 0, 5)],
                _ => vec![],
            }
        };
        let r = resolve(&g, &members);
        assert_eq!(r.ingress[0].peers, vec![net("172.31.0.5/32"), net("172.31.0.9/32")]);
        assert_eq!(r.ingress[1].peers, vec![net("10.0.0.0/8")]);
        assert!(r.egress[0].peers.is_empty(), "an empty group admits nothing");
    }
}
