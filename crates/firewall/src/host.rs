//! The host's rules between the subnet bridges of one VPC: AWS's "local" route, which lets
//! every subnet of a VPC reach every other, on a host where each subnet is a Docker bridge
//! and Docker isolates bridges from each other (its `DOCKER-ISOLATION-STAGE-*` chains) and
//! masquerades whatever leaves a bridge for another interface.
//!
//! ```text
//!  [Bridge] (every Berth subnet bridge on the host, with its VPC) ──vpc_links()──▶ VpcLinks
//!      ──Firewall::apply_vpc_links──▶ iptables-restore --noflush (two chains of Berth's own)
//! ```
//! Contract:
//! * [`vpc_links`] is pure and deterministic: for every ordered pair of distinct bridges of
//!   one VPC, `filter` chain [`FILTER_CHAIN`] accepts forwarding from the first bridge's
//!   device to the second's, and `nat` chain [`NAT_CHAIN`] accepts (exempts from Docker's
//!   masquerading) packets from the first's CIDR leaving by the second's device, so the
//!   receiving task sees the sender's own address and its security groups (enforced inside
//!   each task's namespace, see [`crate::compile`]) judge the real peer. Bridges of different
//!   VPCs get nothing: Docker's isolation keeps dropping their traffic. Bridges without a
//!   VPC (an older server) are left out.
//! * Applying replaces the contents of exactly those two chains (created when missing) in
//!   one `iptables-restore --noflush` transaction; no rule of Docker's is edited. The chains
//!   are reached by one jump each: from `DOCKER-USER` (which Docker's `FORWARD` calls first)
//!   and from the top of `nat POSTROUTING` (Docker inserts each new network's `MASQUERADE`
//!   rule at the top, so the jump is moved back above it on every apply). Empty chains (no
//!   two bridges of one VPC left) and their jumps stay: they match nothing.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use berth_model::network::Ipv4Net;

/// Berth's `filter` chain of VPC-internal forwarding (jumped to from `DOCKER-USER`).
pub const FILTER_CHAIN: &str = "BERTH-VPC";
/// Berth's `nat` chain exempting VPC-internal traffic from masquerading (jumped to from the
/// top of `POSTROUTING`).
pub const NAT_CHAIN: &str = "BERTH-VPC-NAT";

/// One subnet bridge on the host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bridge {
    /// Its Linux device (`br-<first 12 hex digits of the network id>`).
    pub device: String,
    /// The VPC its subnet belongs to (empty: unknown).
    pub vpc_id: String,
    pub cidr: Ipv4Net,
}

/// The compiled host rules: the contents of [`FILTER_CHAIN`] and [`NAT_CHAIN`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VpcLinks {
    /// `-A BERTH-VPC ...` lines.
    pub filter: Vec<String>,
    /// `-A BERTH-VPC-NAT ...` lines.
    pub nat: Vec<String>,
}

impl VpcLinks {
    /// The `iptables-restore --noflush` input: both chains declared (so flushed) and
    /// refilled, in one transaction per table.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (table, chain, rules) in
            [("filter", FILTER_CHAIN, &self.filter), ("nat", NAT_CHAIN, &self.nat)]
        {
            let _ = writeln!(s, "*{table}\n:{chain} - [0:0]");
            for r in rules {
                let _ = writeln!(s, "{r}");
            }
            s.push_str("COMMIT\n");
        }
        s
    }
}

/// Whether a device name is one iptables accepts and Docker makes (no option injection).
fn valid_device(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 15
        && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !d.starts_with('-')
}

/// The rules letting the bridges of each VPC reach each other (see the module docs).
pub fn vpc_links(bridges: &[Bridge]) -> VpcLinks {
    let set: BTreeSet<&Bridge> =
        bridges.iter().filter(|b| !b.vpc_id.is_empty() && valid_device(&b.device)).collect();
    let mut links = VpcLinks::default();
    for a in &set {
        for b in &set {
            if a.vpc_id != b.vpc_id || a.device == b.device {
                continue;
            }
            links
                .filter
                .push(format!("-A {FILTER_CHAIN} -i {} -o {} -j ACCEPT", a.device, b.device));
            links.nat.push(format!("-A {NAT_CHAIN} -s {} -o {} -j ACCEPT", a.cidr, b.device));
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br(device: &str, vpc: &str, cidr: &str) -> Bridge {
        Bridge { device: device.into(), vpc_id: vpc.into(), cidr: cidr.parse().unwrap() }
    }

    #[test]
    fn bridges_of_one_vpc_are_linked_both_ways_and_other_vpcs_are_not() {
        let a = br("br-aaa", "vpc-1", "10.0.1.0/24");
        let b = br("br-bbb", "vpc-1", "10.0.2.0/24");
        let c = br("br-ccc", "vpc-2", "10.1.1.0/24");
        let d = br("br-ddd", "", "10.2.1.0/24");
        let evil = br("-j DROP", "vpc-1", "10.0.3.0/24");
        // (bridges, filter rules, nat rules)
        let table: Vec<(Vec<Bridge>, Vec<&str>, Vec<&str>)> = vec![
            (vec![], vec![], vec![]),
            (vec![a.clone()], vec![], vec![]),
            (vec![a.clone(), c.clone(), d.clone()], vec![], vec![]),
            (
                vec![b.clone(), a.clone(), c.clone(), evil, a.clone()],
                vec![
                    "-A BERTH-VPC -i br-aaa -o br-bbb -j ACCEPT",
                    "-A BERTH-VPC -i br-bbb -o br-aaa -j ACCEPT",
                ],
                vec![
                    "-A BERTH-VPC-NAT -s 10.0.1.0/24 -o br-bbb -j ACCEPT",
                    "-A BERTH-VPC-NAT -s 10.0.2.0/24 -o br-aaa -j ACCEPT",
                ],
            ),
        ];
        for (bridges, filter, nat) in table {
            let links = vpc_links(&bridges);
            assert_eq!(links.filter, filter, "{bridges:?}");
            assert_eq!(links.nat, nat, "{bridges:?}");
        }
    }

    #[test]
    fn the_restore_text_flushes_and_refills_both_chains() {
        let links = vpc_links(&[br("br-a", "v", "10.0.1.0/24"), br("br-b", "v", "10.0.2.0/24")]);
        let text = links.text();
        assert!(text.starts_with("*filter\n:BERTH-VPC - [0:0]\n-A BERTH-VPC -i br-a"), "{text}");
        assert!(text.contains("COMMIT\n*nat\n:BERTH-VPC-NAT - [0:0]\n-A BERTH-VPC-NAT"), "{text}");
        assert!(text.ends_with("COMMIT\n"));
        assert_eq!(VpcLinks::default().text().matches("COMMIT").count(), 2);
    }
}
