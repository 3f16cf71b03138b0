//! Security group rules between EC2's wire shapes and the stored
//! [`SecurityGroupRule`]s: what an `IpPermission` (or the legacy flat parameters) asks for,
//! which stored rule it is, and how stored rules are shown again.
//!
//! Contract: one stored rule per (protocol, port range, peer); an `IpPermission` with several
//! ranges or groups becomes several rules. Two rules are the same rule when protocol, ports
//! and peer are equal (the description does not count), as EC2 decides duplicates. Ports:
//! every protocol (`-1`) has none; TCP and UDP need `FromPort` <= `ToPort` within 0-65535
//! (`-1`/`-1` meaning every port); ICMP's `FromPort` is the type and `ToPort` the code, `-1`
//! meaning any. CIDRs are IPv4 and kept canonical (`10.1.2.3/8` is `10.0.0.0/8`).

use berth_model::network::{IpProtocol, Ipv4Net, Peer, SecurityGroupRecord, SecurityGroupRule};
use berth_wire::AwsError;
use berth_wire::ec2 as wire;

use super::codes;

/// A rule's peer as a request names it (a group by name is resolved by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PeerRef {
    Cidr(String),
    GroupId(String),
    GroupName(String),
}

/// One rule a request asks for (or names, to revoke).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Wanted {
    pub protocol: IpProtocol,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub peer: PeerRef,
    pub description: Option<String>,
}

/// The legacy flat parameters (`IpProtocol`, `FromPort`, `ToPort`, `CidrIp`,
/// `SourceSecurityGroupName`) as one `IpPermission`; `None` when none is given.
pub(super) fn flat(
    ip_protocol: Option<String>,
    from_port: Option<i32>,
    to_port: Option<i32>,
    cidr_ip: Option<String>,
    source_group_name: Option<String>,
) -> Option<wire::IpPermission> {
    if ip_protocol.is_none() && cidr_ip.is_none() && source_group_name.is_none() {
        return None;
    }
    // A source group alone grants every protocol, as EC2 documents.
    let ip_protocol = ip_protocol.or_else(|| source_group_name.as_ref().map(|_| "-1".into()));
    Some(wire::IpPermission {
        ip_protocol,
        from_port,
        to_port,
        ip_ranges: cidr_ip.map(|c| vec![wire::IpRange { cidr_ip: Some(c), description: None }]),
        user_id_group_pairs: source_group_name
            .map(|n| vec![wire::UserIdGroupPair { group_name: Some(n), ..Default::default() }]),
        ..Default::default()
    })
}

fn ports(
    protocol: IpProtocol,
    from: Option<i32>,
    to: Option<i32>,
    at: &str,
) -> Result<(Option<i32>, Option<i32>), AwsError> {
    match protocol {
        IpProtocol::All => Ok((None, None)),
        IpProtocol::Tcp | IpProtocol::Udp => {
            let (Some(from), Some(to)) = (from, to) else {
                return Err(codes::invalid(format!(
                    "{at}: FromPort and ToPort are required for protocol {}.",
                    protocol.as_ec2()
                )));
            };
            if from == -1 && to == -1 {
                return Ok((Some(0), Some(65535)));
            }
            if !(0..=65535).contains(&from) || !(0..=65535).contains(&to) || from > to {
                return Err(codes::invalid(format!(
                    "{at}: invalid port range {from}-{to}: ports are 0-65535 and FromPort may not exceed ToPort."
                )));
            }
            Ok((Some(from), Some(to)))
        }
        IpProtocol::Icmp => {
            let check = |v: Option<i32>, what: &str| -> Result<Option<i32>, AwsError> {
                match v {
                    None | Some(-1) => Ok(None),
                    Some(x) if (0..=255).contains(&x) => Ok(Some(x)),
                    Some(x) => Err(codes::invalid(format!(
                        "{at}: invalid ICMP {what} {x}: 0-255, or -1 for any."
                    ))),
                }
            };
            Ok((check(from, "type")?, check(to, "code")?))
        }
    }
}

/// A CIDR as stored: IPv4, canonical.
pub(super) fn cidr(c: &str, at: &str) -> Result<String, AwsError> {
    let net: Ipv4Net = c.trim().parse().map_err(|_| {
        codes::invalid(format!(
            "Value ({c}) for parameter {at} is invalid: not an IPv4 CIDR block."
        ))
    })?;
    Ok(net.trunc().to_string())
}

fn description(d: Option<String>, at: &str) -> Result<Option<String>, AwsError> {
    if let Some(d) = &d
        && d.chars().count() > 255
    {
        return Err(codes::invalid(format!("{at}: a rule description is at most 255 characters.")));
    }
    Ok(d)
}

/// The rules `perms` ask for, in request order.
pub(super) fn wanted(perms: &[wire::IpPermission]) -> Result<Vec<Wanted>, AwsError> {
    let mut out = Vec::new();
    for (i, p) in perms.iter().enumerate() {
        let at = format!("IpPermissions.{}", i + 1);
        let proto_s =
            p.ip_protocol.as_deref().ok_or_else(|| codes::missing(&format!("{at}.IpProtocol")))?;
        let protocol = IpProtocol::parse(proto_s).ok_or_else(|| {
            codes::invalid(format!(
                "Value ({proto_s}) for parameter {at}.IpProtocol is invalid: Berth supports tcp, udp, icmp and -1 (all)."
            ))
        })?;
        let (from_port, to_port) = ports(protocol, p.from_port, p.to_port, &at)?;
        if p.ipv6_ranges.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(codes::invalid(format!(
                "{at}.Ipv6Ranges: Berth's security groups are IPv4 only."
            )));
        }
        if p.prefix_list_ids.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(codes::invalid(format!("{at}.PrefixListIds: Berth has no prefix lists.")));
        }
        let before = out.len();
        for (j, r) in p.ip_ranges.iter().flatten().enumerate() {
            let rat = format!("{at}.IpRanges.{}", j + 1);
            let c = r.cidr_ip.as_deref().ok_or_else(|| codes::missing(&format!("{rat}.CidrIp")))?;
            out.push(Wanted {
                protocol,
                from_port,
                to_port,
                peer: PeerRef::Cidr(cidr(c, &format!("{rat}.CidrIp"))?),
                description: description(r.description.clone(), &rat)?,
            });
        }
        for (j, g) in p.user_id_group_pairs.iter().flatten().enumerate() {
            let gat = format!("{at}.Groups.{}", j + 1);
            let peer = match (&g.group_id, &g.group_name) {
                (Some(id), _) => PeerRef::GroupId(id.clone()),
                (None, Some(name)) => PeerRef::GroupName(name.clone()),
                (None, None) => return Err(codes::missing(&format!("{gat}.GroupId"))),
            };
            out.push(Wanted {
                protocol,
                from_port,
                to_port,
                peer,
                description: description(g.description.clone(), &gat)?,
            });
        }
        if out.len() == before {
            return Err(codes::invalid(format!(
                "{at}: name at least one IpRanges CIDR or UserIdGroupPairs group."
            )));
        }
    }
    Ok(out)
}

/// Whether two rules are the same rule (the description does not count).
pub(super) fn same(a: &SecurityGroupRule, b: &SecurityGroupRule) -> bool {
    a.protocol == b.protocol
        && a.from_port == b.from_port
        && a.to_port == b.to_port
        && a.peer == b.peer
}

/// How EC2 words a rule in its duplicate and not-found messages.
pub(super) fn describe(r: &SecurityGroupRule) -> String {
    let peer = match &r.peer {
        Peer::Cidr(c) => c.clone(),
        Peer::Group(g) => g.clone(),
    };
    let port = |p: Option<i32>| p.map_or("-1".to_string(), |p| p.to_string());
    format!(
        "peer: {peer}, {}, from port: {}, to port: {}, ALLOW",
        r.protocol.as_ec2().to_uppercase(),
        port(r.from_port),
        port(r.to_port)
    )
}

fn wire_ports(r: &SecurityGroupRule) -> (Option<i32>, Option<i32>) {
    match r.protocol {
        IpProtocol::All => (None, None),
        _ => (Some(r.from_port.unwrap_or(-1)), Some(r.to_port.unwrap_or(-1))),
    }
}

/// Stored rules as EC2's `IpPermissions`: rules of one protocol and port range together.
pub(super) fn permissions(rules: &[SecurityGroupRule], owner: &str) -> Vec<wire::IpPermission> {
    let mut out: Vec<(IpProtocol, Option<i32>, Option<i32>, wire::IpPermission)> = Vec::new();
    for r in rules {
        let idx = match out
            .iter()
            .position(|(p, f, t, _)| *p == r.protocol && *f == r.from_port && *t == r.to_port)
        {
            Some(i) => i,
            None => {
                let (from_port, to_port) = wire_ports(r);
                out.push((
                    r.protocol,
                    r.from_port,
                    r.to_port,
                    wire::IpPermission {
                        ip_protocol: Some(r.protocol.as_ec2().to_string()),
                        from_port,
                        to_port,
                        ip_ranges: Some(vec![]),
                        ipv6_ranges: Some(vec![]),
                        prefix_list_ids: Some(vec![]),
                        user_id_group_pairs: Some(vec![]),
                    },
                ));
                out.len() - 1
            }
        };
        let perm = &mut out[idx].3;
        match &r.peer {
            Peer::Cidr(c) => perm.ip_ranges.get_or_insert_default().push(wire::IpRange {
                cidr_ip: Some(c.clone()),
                description: r.description.clone(),
            }),
            Peer::Group(g) => {
                perm.user_id_group_pairs.get_or_insert_default().push(wire::UserIdGroupPair {
                    group_id: Some(g.clone()),
                    user_id: Some(owner.to_string()),
                    description: r.description.clone(),
                    ..Default::default()
                })
            }
        }
    }
    out.into_iter().map(|(_, _, _, p)| p).collect()
}

/// One stored rule as `DescribeSecurityGroupRules` shows it.
pub(super) fn wire_rule(
    g: &SecurityGroupRecord,
    r: &SecurityGroupRule,
    egress: bool,
    arn: String,
) -> wire::SecurityGroupRule {
    let (from_port, to_port) = match r.protocol {
        IpProtocol::All => (Some(-1), Some(-1)),
        _ => wire_ports(r),
    };
    let (cidr_ipv4, referenced_group_info) = match &r.peer {
        Peer::Cidr(c) => (Some(c.clone()), None),
        Peer::Group(id) => (
            None,
            Some(wire::ReferencedSecurityGroup {
                group_id: Some(id.clone()),
                user_id: Some(g.owner_id.clone()),
                ..Default::default()
            }),
        ),
    };
    wire::SecurityGroupRule {
        security_group_rule_id: Some(r.id.clone()),
        group_id: Some(g.id.clone()),
        group_owner_id: Some(g.owner_id.clone()),
        is_egress: Some(egress),
        ip_protocol: Some(r.protocol.as_ec2().to_string()),
        from_port,
        to_port,
        cidr_ipv4,
        referenced_group_info,
        description: r.description.clone(),
        security_group_rule_arn: Some(arn),
        tags: Some(vec![]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(proto: &str, from: Option<i32>, to: Option<i32>, cidrs: &[&str]) -> wire::IpPermission {
        wire::IpPermission {
            ip_protocol: Some(proto.into()),
            from_port: from,
            to_port: to,
            ip_ranges: Some(
                cidrs
                    .iter()
                    .map(|c| wire::IpRange { cidr_ip: Some(c.to_string()), description: None })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn rule(w: &Wanted) -> SecurityGroupRule {
        SecurityGroupRule {
            id: "sgr-x".into(),
            protocol: w.protocol,
            from_port: w.from_port,
            to_port: w.to_port,
            peer: match &w.peer {
                PeerRef::Cidr(c) => Peer::Cidr(c.clone()),
                PeerRef::GroupId(g) | PeerRef::GroupName(g) => Peer::Group(g.clone()),
            },
            description: w.description.clone(),
        }
    }

    #[test]
    fn permissions_become_one_rule_per_peer() {
        let w = wanted(&[perm("tcp", Some(80), Some(81), &["10.1.2.3/8", "0.0.0.0/0"])]).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].peer, PeerRef::Cidr("10.0.0.0/8".into()), "canonical");
        let all = wanted(&[perm("-1", Some(5), Some(6), &["0.0.0.0/0"])]).unwrap();
        assert_eq!((all[0].from_port, all[0].to_port), (None, None));
        let every = wanted(&[perm("6", Some(-1), Some(-1), &["0.0.0.0/0"])]).unwrap();
        assert_eq!(
            (every[0].protocol, every[0].from_port, every[0].to_port),
            (IpProtocol::Tcp, Some(0), Some(65535))
        );
        let icmp = wanted(&[perm("icmp", Some(8), Some(-1), &["0.0.0.0/0"])]).unwrap();
        assert_eq!((icmp[0].from_port, icmp[0].to_port), (Some(8), None));
        for bad in [
            perm("tcp", Some(90), Some(80), &["0.0.0.0/0"]),
            perm("tcp", None, None, &["0.0.0.0/0"]),
            perm("tcp", Some(0), Some(70000), &["0.0.0.0/0"]),
            perm("gre", None, None, &["0.0.0.0/0"]),
            perm("tcp", Some(1), Some(1), &["300.0.0.0/8"]),
            perm("tcp", Some(1), Some(1), &[]),
        ] {
            let e = wanted(std::slice::from_ref(&bad)).unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue", "{bad:?}");
            assert!(e.message.contains("IpPermissions.1"), "{}", e.message);
        }
    }

    #[test]
    fn duplicates_ignore_descriptions_and_rendering_groups_by_ports() {
        let a = wanted(&[perm("tcp", Some(80), Some(80), &["0.0.0.0/0"])]).unwrap();
        let mut b = a[0].clone();
        b.description = Some("web".into());
        assert!(same(&rule(&a[0]), &rule(&b)));
        let mut c = a[0].clone();
        c.to_port = Some(81);
        assert!(!same(&rule(&a[0]), &rule(&c)));
        assert_eq!(
            describe(&rule(&a[0])),
            "peer: 0.0.0.0/0, TCP, from port: 80, to port: 80, ALLOW"
        );
        let rules = [rule(&a[0]), rule(&b), rule(&c)];
        let p = permissions(&rules, "000000000000");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].ip_ranges.as_ref().unwrap().len(), 2);
        assert_eq!(p[1].to_port, Some(81));
    }

    #[test]
    fn flat_parameters_are_one_permission() {
        let p = flat(Some("tcp".into()), Some(8080), Some(8080), Some("0.0.0.0/0".into()), None)
            .unwrap();
        let w = wanted(&[p]).unwrap();
        assert_eq!(w[0].from_port, Some(8080));
        let g = flat(None, None, None, None, Some("web".into())).unwrap();
        let w = wanted(&[g]).unwrap();
        assert_eq!(
            (w[0].protocol, w[0].peer.clone()),
            (IpProtocol::All, PeerRef::GroupName("web".into()))
        );
        assert!(flat(None, Some(1), None, None, None).is_none());
    }
}
