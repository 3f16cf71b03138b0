use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use crate::client::{Transport, query};
use crate::*;

fn inst(id: &str, ip: [u8; 4], port: Option<u16>) -> Instance {
    Instance { id: id.into(), ipv4: Some(Ipv4Addr::from(ip)), port, ..Default::default() }
}

fn service(
    name: &str,
    routing: Routing,
    kinds: &[RecordKind],
    instances: Vec<Instance>,
) -> Service {
    Service {
        name: name.into(),
        routing,
        records: kinds.iter().map(|&kind| RecordConfig { kind, ttl: 30 }).collect(),
        instances,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        zones: vec![
            Zone {
                name: "example.local".into(),
                services: vec![
                    service(
                        "web",
                        Routing::Multivalue,
                        &[RecordKind::A, RecordKind::Srv],
                        vec![
                            inst("i-1", [10, 0, 0, 1], Some(8080)),
                            inst("i-2", [10, 0, 0, 2], Some(8081)),
                        ],
                    ),
                    service(
                        "v6",
                        Routing::Multivalue,
                        &[RecordKind::Aaaa],
                        vec![Instance {
                            id: "a".into(),
                            ipv6: Some(Ipv6Addr::LOCALHOST),
                            ..Default::default()
                        }],
                    ),
                    service(
                        "one",
                        Routing::Weighted,
                        &[RecordKind::A],
                        vec![inst("x", [10, 0, 1, 1], None), inst("y", [10, 0, 1, 2], None)],
                    ),
                    service(
                        "alias",
                        Routing::Weighted,
                        &[RecordKind::Cname],
                        vec![Instance {
                            id: "c".into(),
                            cname: Some("www.example.com".into()),
                            ..Default::default()
                        }],
                    ),
                    service("empty", Routing::Multivalue, &[RecordKind::A], vec![]),
                    service("bad name", Routing::Multivalue, &[RecordKind::A], vec![]),
                ],
            },
            // A nested zone wins for its names.
            Zone {
                name: "inner.example.local".into(),
                services: vec![service(
                    "db",
                    Routing::Multivalue,
                    &[RecordKind::A],
                    vec![inst("d", [10, 9, 9, 9], None)],
                )],
            },
            Zone { name: "".into(), services: vec![] },
        ],
    }
}

fn lname(s: &str) -> LowerName {
    LowerName::new(&Name::from_ascii(s).unwrap())
}

/// (code, answer values as text, has SOA, additionals as text)
type Summary = (ResponseCode, Vec<String>, bool, Vec<String>);

fn summary(a: Answer) -> Option<Summary> {
    match a {
        Answer::Forward => None,
        Answer::Authoritative { code, answers, soa, additionals } => {
            let text = |rs: Vec<hickory_proto::rr::Record>| {
                let mut v: Vec<String> =
                    rs.iter().map(|r| format!("{} {}", r.ttl, r.data)).collect();
                v.sort();
                v
            };
            Some((code, text(answers), !soa.is_empty(), text(additionals)))
        }
    }
}

#[test]
fn snapshots_compile_to_the_record_sets_cloud_map_publishes() {
    let (table, applied) = Table::compile(&snapshot());
    assert_eq!(applied.zones, 2);
    assert_eq!(applied.skipped.len(), 2, "{:?}", applied.skipped);
    assert!(applied.skipped.iter().any(|s| s.contains("bad name")), "{:?}", applied.skipped);
    assert_eq!(table.zones(), ["inner.example.local.", "example.local."]);
    let no = ResponseCode::NoError;
    let nx = ResponseCode::NXDomain;
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, RecordType, Option<Summary>)> = vec![
        (
            "web.example.local.",
            RecordType::A,
            Some((no, s(&["30 10.0.0.1", "30 10.0.0.2"]), false, vec![])),
        ),
        (
            "WEB.Example.Local.",
            RecordType::A,
            Some((no, s(&["30 10.0.0.1", "30 10.0.0.2"]), false, vec![])),
        ),
        (
            "web.example.local.",
            RecordType::SRV,
            Some((
                no,
                s(&["30 1 10 8080 i-1.web.example.local.", "30 1 10 8081 i-2.web.example.local."]),
                false,
                s(&["30 10.0.0.1", "30 10.0.0.2"]),
            )),
        ),
        ("i-1.web.example.local.", RecordType::A, Some((no, s(&["30 10.0.0.1"]), false, vec![]))),
        ("web.example.local.", RecordType::AAAA, Some((no, vec![], true, vec![]))),
        ("v6.example.local.", RecordType::AAAA, Some((no, s(&["30 ::1"]), false, vec![]))),
        (
            "alias.example.local.",
            RecordType::A,
            Some((no, s(&["30 www.example.com."]), false, vec![])),
        ),
        ("empty.example.local.", RecordType::A, Some((no, vec![], true, vec![]))),
        ("nope.example.local.", RecordType::A, Some((nx, vec![], true, vec![]))),
        ("x.nope.example.local.", RecordType::A, Some((nx, vec![], true, vec![]))),
        ("db.inner.example.local.", RecordType::A, Some((no, s(&["30 10.9.9.9"]), false, vec![]))),
        ("web.inner.example.local.", RecordType::A, Some((nx, vec![], true, vec![]))),
        ("example.local.", RecordType::A, Some((no, vec![], true, vec![]))),
        ("example.com.", RecordType::A, None),
        ("local.", RecordType::A, None),
        ("notexample.local.", RecordType::A, None),
    ];
    for (name, qtype, want) in cases {
        assert_eq!(summary(table.lookup(&lname(name), qtype, 0)), want, "{name} {qtype}");
    }
    // The apex answers its SOA.
    match table.lookup(&lname("example.local."), RecordType::SOA, 0) {
        Answer::Authoritative { answers, .. } => {
            assert_eq!(answers.len(), 1);
            assert!(matches!(answers[0].data, RData::SOA(_)));
        }
        a => panic!("{a:?}"),
    }
}

#[test]
fn weighted_answers_carry_one_value_and_rotate() {
    let (table, _) = Table::compile(&snapshot());
    let mut seen = std::collections::BTreeSet::new();
    for turn in 0..4 {
        let (_, answers, _, _) =
            summary(table.lookup(&lname("one.example.local."), RecordType::A, turn)).unwrap();
        assert_eq!(answers.len(), 1);
        seen.insert(answers[0].clone());
    }
    assert_eq!(seen.len(), 2, "both values take turns");
}

#[test]
fn multivalue_answers_carry_at_most_eight() {
    let instances = (1..=12).map(|i| inst(&format!("i{i}"), [10, 0, 0, i], None)).collect();
    let snap = Snapshot {
        zones: vec![Zone {
            name: "ns".into(),
            services: vec![service("s", Routing::Multivalue, &[RecordKind::A], instances)],
        }],
    };
    let (table, _) = Table::compile(&snap);
    let (_, answers, _, _) = summary(table.lookup(&lname("s.ns."), RecordType::A, 5)).unwrap();
    assert_eq!(answers.len(), MAX_MULTIVALUE);
}

#[test]
fn resolv_conf_lines_give_the_upstreams() {
    let text = "# comment\nsearch example\nnameserver 10.0.0.2\nnameserver fe80::1%eth0 # x\nnameserver bogus\noptions ndots:5\n  nameserver 1.1.1.1\n";
    let want: Vec<SocketAddr> = vec![
        "10.0.0.2:53".parse().unwrap(),
        "[fe80::1]:53".parse().unwrap(),
        "1.1.1.1:53".parse().unwrap(),
    ];
    assert_eq!(parse_resolv_conf(text), want);
    assert!(parse_resolv_conf("").is_empty());
}

fn localhost() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

fn a_values(m: &hickory_proto::op::Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn the_server_answers_over_udp_and_tcp_and_forwards_the_rest() {
    // The upstream: another Berth DNS server, authoritative for `upstream.test`.
    let upstream = Dns::new(vec![]);
    upstream.apply(&Snapshot {
        zones: vec![Zone {
            name: "upstream.test".into(),
            services: vec![service(
                "far",
                Routing::Multivalue,
                &[RecordKind::A],
                vec![inst("f", [192, 0, 2, 7], None)],
            )],
        }],
    });
    let up = upstream.serve(localhost()).await.unwrap();

    let dns = Dns::new(vec![up.local_addr()]);
    let applied = dns.apply(&snapshot());
    assert_eq!(applied.zones, 2);
    let l = dns.serve(localhost()).await.unwrap();
    let at = l.local_addr();
    for t in [Transport::Udp, Transport::Tcp] {
        let m = query(at, "web.example.local.", RecordType::A, t).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert!(m.metadata.authoritative);
        assert_eq!(a_values(&m), ["10.0.0.1", "10.0.0.2"], "{t:?}");
        let m = query(at, "web.example.local.", RecordType::SRV, t).await.unwrap();
        let ports: Vec<u16> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(s.port),
                _ => None,
            })
            .collect();
        assert_eq!(ports.len(), 2);
        assert!(ports.contains(&8080) && ports.contains(&8081));
        assert_eq!(m.additionals.len(), 2, "the targets' addresses ride along");
        let m = query(at, "nope.example.local.", RecordType::A, t).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1, "with the zone's SOA");
        // Forwarded: the upstream's answer, and its NXDOMAIN.
        let m = query(at, "far.upstream.test.", RecordType::A, t).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_values(&m), ["192.0.2.7"], "{t:?}");
        let m = query(at, "near.upstream.test.", RecordType::A, t).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    // An apply replaces the whole table.
    dns.apply(&Snapshot {
        zones: vec![Zone {
            name: "example.local".into(),
            services: vec![service(
                "web",
                Routing::Multivalue,
                &[RecordKind::A],
                vec![inst("i-2", [10, 0, 0, 2], None)],
            )],
        }],
    });
    let m = query(at, "web.example.local.", RecordType::A, Transport::Udp).await.unwrap();
    assert_eq!(a_values(&m), ["10.0.0.2"]);
    let m = query(at, "db.inner.example.local.", RecordType::A, Transport::Udp).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "now inside example.local only");

    // Without upstreams, outside names fail (SERVFAIL), quickly.
    up.shutdown().await;
    let lonely = Dns::new(vec![]);
    let l2 = lonely.serve(localhost()).await.unwrap();
    let m = query(l2.local_addr(), "example.com.", RecordType::A, Transport::Udp).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    l2.shutdown().await;
    l.shutdown().await;
}
