//! The pure compiler: a task's security groups ([`SecurityGroupRules`]) to the `filter` table
//! of its own network namespace, as `iptables-restore` input ([`Ruleset`]).
//!
//! Semantics (AWS's security groups, enforced at the task's own interface):
//! * policy DROP on INPUT, OUTPUT and FORWARD: whatever no rule admits is dropped silently,
//!   so a blocked connection times out as it does in AWS (no RST, no ICMP unreachable);
//! * loopback is always allowed (containers of one task talk over `lo`, and Docker's embedded
//!   DNS answers on 127.0.0.11);
//! * stateful: packets of a connection the rules admitted (`ESTABLISHED,RELATED`) pass both
//!   ways, so replies need no rule;
//! * ingress: a packet entering the task is accepted when some ingress rule of some group
//!   matches its protocol, port (or ICMP type/code) and source; egress likewise by
//!   destination. Groups are a union: order does not matter, and the output is sorted and
//!   deduplicated so equal rule sets compile to identical text (the agent re-applies only
//!   when the text changes);
//! * a rule with no peers (a group reference whose group has no members) admits nothing;
//! * `-1` (all protocols) ignores ports; TCP/UDP `None` ports mean every port; ICMP's
//!   `from_port` is the type and `to_port` the code, `None` (or `-1`) meaning any;
//! * [`Options::always_egress`]: endpoints the task may always reach whatever its egress rules
//!   (the task metadata endpoint, as AWS's link-local endpoints are never filtered by
//!   security groups).
//!
//! Only the `filter` table is written: `iptables-restore` (without `--noflush`) replaces that
//! table as one transaction and leaves the `nat` table (Docker's embedded DNS redirection)
//! untouched.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use berth_model::network::{IpProtocol, Ipv4Net, ResolvedRule, SecurityGroupRules};

/// Things the compiled rules admit beyond the groups' rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `(address, tcp port)` the task may always connect to.
    pub always_egress: Vec<(Ipv4Addr, u16)>,
}

/// A compiled ruleset: the complete `filter` table of one task's network namespace, as
/// `iptables-restore` reads it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ruleset {
    text: String,
}

impl Ruleset {
    /// The `iptables-restore` input.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The `-A` lines (for tests and logs).
    pub fn rules(&self) -> Vec<&str> {
        self.text.lines().filter(|l| l.starts_with("-A ")).collect()
    }
}

/// Direction of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    In,
    Out,
}

/// The match of one rule without its peer: protocol and ports, as iptables arguments.
fn proto_match(r: &ResolvedRule) -> Option<String> {
    // EC2 spells "any" as -1; treat negative bounds as unset.
    let from = r.from_port.filter(|p| *p >= 0);
    let to = r.to_port.filter(|p| *p >= 0);
    Some(match r.protocol {
        IpProtocol::All => String::new(),
        IpProtocol::Tcp | IpProtocol::Udp => {
            let p = r.protocol.as_ec2();
            match (from, to) {
                (None, None) => format!("-p {p}"),
                (Some(a), None) | (None, Some(a)) => {
                    if a > 65535 {
                        return None;
                    }
                    format!("-p {p} -m {p} --dport {a}")
                }
                (Some(a), Some(b)) => {
                    let (a, b) = (a.min(b), a.max(b));
                    if b > 65535 {
                        return None;
                    }
                    if a == b {
                        format!("-p {p} -m {p} --dport {a}")
                    } else if a == 0 && b == 65535 {
                        format!("-p {p}")
                    } else {
                        format!("-p {p} -m {p} --dport {a}:{b}")
                    }
                }
            }
        }
        IpProtocol::Icmp => match (from, to) {
            (None, _) => "-p icmp".to_string(),
            (Some(t), None) if t <= 255 => format!("-p icmp -m icmp --icmp-type {t}"),
            (Some(t), Some(c)) if t <= 255 && c <= 255 => {
                format!("-p icmp -m icmp --icmp-type {t}/{c}")
            }
            _ => return None,
        },
    })
}

/// Compiles the rules of every group the task is in (`groups`; duplicates and order do not
/// matter) into its namespace's `filter` table.
pub fn compile(groups: &[SecurityGroupRules], opts: &Options) -> Ruleset {
    let mut allow: BTreeSet<(Dir, String, String)> = BTreeSet::new();
    for g in groups {
        for (dir, rules) in [(Dir::In, &g.ingress), (Dir::Out, &g.egress)] {
            for r in rules {
                let Some(m) = proto_match(r) else { continue };
                for peer in &r.peers {
                    allow.insert((dir, peer_match(dir, *peer), m.clone()));
                }
            }
        }
    }
    let mut text =
        String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n");
    text.push_str("-A INPUT -i lo -j ACCEPT\n");
    text.push_str("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    text.push_str("-A OUTPUT -o lo -j ACCEPT\n");
    text.push_str("-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    let always: BTreeSet<(Ipv4Addr, u16)> = opts.always_egress.iter().copied().collect();
    for (ip, port) in always {
        let _ = writeln!(text, "-A OUTPUT -d {ip}/32 -p tcp -m tcp --dport {port} -j ACCEPT");
    }
    for (dir, peer, m) in &allow {
        let chain = if *dir == Dir::In { "INPUT" } else { "OUTPUT" };
        let parts: Vec<&str> =
            [chain, peer.as_str(), m.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
        let _ = writeln!(text, "-A {} -j ACCEPT", parts.join(" "));
    }
    text.push_str("COMMIT\n");
    Ruleset { text }
}

fn peer_match(dir: Dir, peer: Ipv4Net) -> String {
    let peer = peer.trunc();
    if peer.prefix_len() == 0 {
        return String::new();
    }
    match dir {
        Dir::In => format!("-s {peer}"),
        Dir::Out => format!("-d {peer}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: IpProtocol, from: Option<i32>, to: Option<i32>, peers: &[&str]) -> ResolvedRule {
        ResolvedRule {
            protocol: p,
            from_port: from,
            to_port: to,
            peers: peers.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn group(
        id: &str,
        ingress: Vec<ResolvedRule>,
        egress: Vec<ResolvedRule>,
    ) -> SecurityGroupRules {
        SecurityGroupRules { group_id: id.into(), ingress, egress }
    }

    /// The rules beyond the fixed prelude (loopback, conntrack).
    fn extra(groups: &[SecurityGroupRules]) -> Vec<String> {
        compile(groups, &Options::default())
            .rules()
            .into_iter()
            .filter(|l| !l.contains(" lo ") && !l.contains("conntrack"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn an_empty_group_admits_nothing_but_loopback_and_replies() {
        let rs = compile(&[group("sg-e", vec![], vec![])], &Options::default());
        assert_eq!(
            rs.text(),
            "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n\
             -A INPUT -i lo -j ACCEPT\n\
             -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A OUTPUT -o lo -j ACCEPT\n\
             -A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             COMMIT\n"
        );
        assert_eq!(compile(&[], &Options::default()), rs, "no group at all is the same");
    }

    #[test]
    fn each_rule_kind_compiles_to_its_match() {
        let table: Vec<(ResolvedRule, &str)> = vec![
            (
                rule(IpProtocol::Tcp, Some(8080), Some(8080), &["0.0.0.0/0"]),
                "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
            ),
            (
                rule(IpProtocol::Tcp, Some(1000), Some(2000), &["10.0.0.0/8"]),
                "-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 1000:2000 -j ACCEPT",
            ),
            (
                rule(IpProtocol::Udp, Some(53), Some(53), &["10.1.2.3/32"]),
                "-A INPUT -s 10.1.2.3/32 -p udp -m udp --dport 53 -j ACCEPT",
            ),
            (
                rule(IpProtocol::Tcp, None, None, &["192.168.0.0/16"]),
                "-A INPUT -s 192.168.0.0/16 -p tcp -j ACCEPT",
            ),
            (
                rule(IpProtocol::Tcp, Some(0), Some(65535), &["192.168.0.0/16"]),
                "-A INPUT -s 192.168.0.0/16 -p tcp -j ACCEPT",
            ),
            (
                rule(IpProtocol::All, Some(22), Some(22), &["172.16.0.0/12"]),
                "-A INPUT -s 172.16.0.0/12 -j ACCEPT",
            ),
            (rule(IpProtocol::Icmp, None, None, &["0.0.0.0/0"]), "-A INPUT -p icmp -j ACCEPT"),
            (
                rule(IpProtocol::Icmp, Some(-1), Some(-1), &["0.0.0.0/0"]),
                "-A INPUT -p icmp -j ACCEPT",
            ),
            (
                rule(IpProtocol::Icmp, Some(8), None, &["0.0.0.0/0"]),
                "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT",
            ),
            (
                rule(IpProtocol::Icmp, Some(8), Some(-1), &["0.0.0.0/0"]),
                "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT",
            ),
            (
                rule(IpProtocol::Icmp, Some(3), Some(4), &["0.0.0.0/0"]),
                "-A INPUT -p icmp -m icmp --icmp-type 3/4 -j ACCEPT",
            ),
            (
                // A host bit set in the peer is truncated to the network.
                rule(IpProtocol::Tcp, Some(80), Some(80), &["10.9.9.9/8"]),
                "-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 80 -j ACCEPT",
            ),
        ];
        for (r, want) in table {
            let got = extra(&[group("sg-1", vec![r.clone()], vec![])]);
            assert_eq!(got, vec![want.to_string()], "{r:?}");
        }
    }

    #[test]
    fn out_of_range_ports_and_empty_peers_admit_nothing() {
        let g = group(
            "sg-1",
            vec![
                rule(IpProtocol::Tcp, Some(1), Some(70000), &["0.0.0.0/0"]),
                rule(IpProtocol::Icmp, Some(300), None, &["0.0.0.0/0"]),
                rule(IpProtocol::Tcp, Some(80), Some(80), &[]),
            ],
            vec![],
        );
        assert!(extra(&[g]).is_empty());
    }

    #[test]
    fn egress_matches_the_destination() {
        let g = group(
            "sg-1",
            vec![],
            vec![
                rule(IpProtocol::All, None, None, &["0.0.0.0/0"]),
                rule(IpProtocol::Tcp, Some(443), Some(443), &["10.0.0.0/24"]),
            ],
        );
        assert_eq!(
            extra(&[g]),
            vec![
                "-A OUTPUT -j ACCEPT".to_string(),
                "-A OUTPUT -d 10.0.0.0/24 -p tcp -m tcp --dport 443 -j ACCEPT".to_string(),
            ]
        );
    }

    #[test]
    fn groups_are_a_union_sorted_and_deduplicated() {
        let a = group(
            "sg-a",
            vec![rule(IpProtocol::Tcp, Some(80), Some(80), &["10.0.0.1/32", "10.0.0.2/32"])],
            vec![],
        );
        let b = group(
            "sg-b",
            vec![
                rule(IpProtocol::Tcp, Some(80), Some(80), &["10.0.0.2/32"]),
                rule(IpProtocol::Udp, Some(9000), Some(9001), &["10.0.0.3/32"]),
            ],
            vec![],
        );
        let ab = compile(&[a.clone(), b.clone()], &Options::default());
        let ba = compile(&[b, a.clone(), a], &Options::default());
        assert_eq!(ab, ba, "order and repetition of groups do not matter");
        assert_eq!(
            extra(&[ab_groups()]),
            Vec::<String>::new(),
            "sanity: a group with no rules adds nothing"
        );
        let lines: Vec<&str> = ab.rules().into_iter().skip(4).collect();
        assert_eq!(
            lines,
            vec![
                "-A INPUT -s 10.0.0.1/32 -p tcp -m tcp --dport 80 -j ACCEPT",
                "-A INPUT -s 10.0.0.2/32 -p tcp -m tcp --dport 80 -j ACCEPT",
                "-A INPUT -s 10.0.0.3/32 -p udp -m udp --dport 9000:9001 -j ACCEPT",
            ]
        );
    }

    fn ab_groups() -> SecurityGroupRules {
        group("sg-none", vec![], vec![])
    }

    #[test]
    fn always_allowed_endpoints_precede_the_rules() {
        let opts = Options { always_egress: vec![(Ipv4Addr::new(172, 17, 0, 1), 51679)] };
        let rs = compile(&[], &opts);
        assert!(
            rs.rules()
                .contains(&"-A OUTPUT -d 172.17.0.1/32 -p tcp -m tcp --dport 51679 -j ACCEPT"),
            "{}",
            rs.text()
        );
    }
}
