//! AWS Cloud Map and its DNS server (issue #17), end to end against one real `berth server`:
//! the AWS CLI creates a private DNS namespace on the default VPC, a service with A and SRV
//! records and a custom health check, and registers two instances; `discover-instances`
//! (sent to the endpoint itself: the data directory's config disables botocore's `data-`
//! host prefix) returns them, and the server's DNS listener answers both A records and the
//! SRV ports over UDP and TCP (asked with a DNS client in the test). An instance set
//! UNHEALTHY leaves DNS, a deregistered one too, an unknown name is NXDOMAIN, and the errors
//! carry Cloud Map's codes. boto3 then pages ListNamespaces and runs DiscoverInstances.
//! Needs no Docker.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_dns::client::{DnsMessage, RData, ResponseCode, Transport, Type, query};
use berth_testkit::ServerProc;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn ask(dns: SocketAddr, name: &str, t: Type, transport: Transport) -> DnsMessage {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(query(dns, name, t, transport)).expect("a DNS answer")
}

/// The sorted A addresses of an answer.
fn addresses(m: &DnsMessage) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Asks until the A answer for `name` is `want` (the DNS view follows the store within a
/// moment); panics with the last answer after 10 s.
fn wait_for_addresses(dns: SocketAddr, name: &str, want: &[&str]) -> DnsMessage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = ask(dns, name, Type::A, Transport::Udp);
        if addresses(&m) == want {
            return m;
        }
        assert!(Instant::now() < deadline, "{name}: still {:?}, want {want:?}", addresses(&m));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cloud_map_and_its_dns_with_the_aws_cli_and_boto3() {
    let s = ServerProc::start(bin()).expect("server");
    let dns = s.dns.expect("the server prints its DNS address");
    let text = |args: &[&str]| -> String {
        let mut a = args.to_vec();
        a.extend(["--output", "text"]);
        let r = s.aws(&a);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r.stdout.trim().to_string()
    };

    // A private namespace on the default VPC; its operation is already done.
    let vpc = text(&[
        "ec2",
        "describe-vpcs",
        "--filters",
        "Name=is-default,Values=true",
        "--query",
        "Vpcs[0].VpcId",
    ]);
    let op = text(&[
        "servicediscovery",
        "create-private-dns-namespace",
        "--name",
        "berth.local",
        "--vpc",
        &vpc,
        "--creator-request-id",
        "ns-req-1",
        "--query",
        "OperationId",
    ]);
    let got = s.aws(&["servicediscovery", "get-operation", "--operation-id", &op]).json();
    assert_eq!(got["Operation"]["Status"], "SUCCESS", "{got}");
    assert_eq!(got["Operation"]["Type"], "CREATE_NAMESPACE");
    let ns = got["Operation"]["Targets"]["NAMESPACE"].as_str().unwrap().to_string();
    assert!(ns.starts_with("ns-"), "{ns}");
    let desc = s.aws(&["servicediscovery", "get-namespace", "--id", &ns]).json();
    assert_eq!(desc["Namespace"]["Type"], "DNS_PRIVATE");
    assert_eq!(
        desc["Namespace"]["Arn"],
        format!("arn:aws:servicediscovery:us-east-1:{}:namespace/{ns}", berth_testkit::ACCOUNT_ID)
    );
    let zone = desc["Namespace"]["Properties"]["DnsProperties"]["HostedZoneId"].as_str().unwrap();
    assert!(zone.starts_with('Z'), "{zone}");

    // A service with A and SRV records and a custom health check.
    let svc = text(&[
        "servicediscovery",
        "create-service",
        "--name",
        "web",
        "--namespace-id",
        &ns,
        "--dns-config",
        "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=10},{Type=SRV,TTL=10}]",
        "--health-check-custom-config",
        "FailureThreshold=1",
        "--query",
        "Service.Id",
    ]);
    assert!(svc.starts_with("srv-"), "{svc}");
    for (id, ip, port) in [("i-1", "10.1.0.1", "8080"), ("i-2", "10.1.0.2", "8081")] {
        let attrs = format!("AWS_INSTANCE_IPV4={ip},AWS_INSTANCE_PORT={port},color=blue");
        let op = text(&[
            "servicediscovery",
            "register-instance",
            "--service-id",
            &svc,
            "--instance-id",
            id,
            "--attributes",
            &attrs,
            "--query",
            "OperationId",
        ]);
        assert!(!op.is_empty());
    }
    let found = s
        .aws(&[
            "servicediscovery",
            "discover-instances",
            "--namespace-name",
            "berth.local",
            "--service-name",
            "web",
        ])
        .json();
    let mut ids: Vec<&str> = found["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["i-1", "i-2"], "{found}");
    assert_eq!(found["Instances"][0]["HealthStatus"], "HEALTHY");
    assert_eq!(found["Instances"][0]["Attributes"]["color"], "blue");
    assert!(found["InstancesRevision"].as_i64().is_some(), "{found}");

    // DNS: both addresses, over UDP and TCP, and the SRV ports.
    wait_for_addresses(dns, "web.berth.local", &["10.1.0.1", "10.1.0.2"]);
    let tcp = ask(dns, "web.berth.local", Type::A, Transport::Tcp);
    assert_eq!(addresses(&tcp), ["10.1.0.1", "10.1.0.2"]);
    assert!(tcp.metadata.authoritative);
    assert_eq!(tcp.answers[0].ttl, 10);
    let srv = ask(dns, "web.berth.local", Type::SRV, Transport::Udp);
    let mut ports: Vec<u16> = srv
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    ports.sort();
    assert_eq!(ports, [8080, 8081], "{srv:?}");
    let target = ask(dns, "i-1.web.berth.local", Type::A, Transport::Udp);
    assert_eq!(addresses(&target), ["10.1.0.1"], "the SRV target resolves");

    // UNHEALTHY leaves DNS and the default discovery; ALL still shows it.
    assert!(
        s.aws(&[
            "servicediscovery",
            "update-instance-custom-health-status",
            "--service-id",
            &svc,
            "--instance-id",
            "i-2",
            "--status",
            "UNHEALTHY",
        ])
        .ok
    );
    wait_for_addresses(dns, "web.berth.local", &["10.1.0.1"]);
    let healthy = text(&[
        "servicediscovery",
        "discover-instances",
        "--namespace-name",
        "berth.local",
        "--service-name",
        "web",
        "--query",
        "Instances[].InstanceId",
    ]);
    assert_eq!(healthy, "i-1");
    let all = s
        .aws(&[
            "servicediscovery",
            "discover-instances",
            "--namespace-name",
            "berth.local",
            "--service-name",
            "web",
            "--health-status",
            "ALL",
            "--query-parameters",
            "color=blue",
        ])
        .json();
    assert_eq!(all["Instances"].as_array().unwrap().len(), 2, "{all}");
    let status =
        s.aws(&["servicediscovery", "get-instances-health-status", "--service-id", &svc]).json();
    assert_eq!(status["Status"]["i-2"], "UNHEALTHY", "{status}");

    // Deregistered: gone. An unknown name: NXDOMAIN.
    assert!(
        s.aws(&[
            "servicediscovery",
            "deregister-instance",
            "--service-id",
            &svc,
            "--instance-id",
            "i-1"
        ])
        .ok
    );
    let empty = wait_for_addresses(dns, "web.berth.local", &[]);
    assert_eq!(empty.metadata.response_code, ResponseCode::NoError, "the name stays, empty");
    let nx = ask(dns, "nope.berth.local", Type::A, Transport::Udp);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let nx = ask(dns, "nope.berth.local", Type::A, Transport::Tcp);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);

    // Errors, with Cloud Map's codes.
    s.aws(&["servicediscovery", "get-namespace", "--id", "ns-0000000000000000"])
        .err("NamespaceNotFound");
    s.aws(&["servicediscovery", "get-service", "--id", "srv-0000000000000000"])
        .err("ServiceNotFound");
    s.aws(&["servicediscovery", "get-instance", "--service-id", &svc, "--instance-id", "i-1"])
        .err("InstanceNotFound");
    s.aws(&[
        "servicediscovery",
        "create-private-dns-namespace",
        "--name",
        "berth.local",
        "--vpc",
        &vpc,
    ])
    .err("NamespaceAlreadyExists");
    let bad_vpc = s
        .aws(&[
            "servicediscovery",
            "create-private-dns-namespace",
            "--name",
            "x.local",
            "--vpc",
            "vpc-nope",
        ])
        .err("InvalidInput")
        .to_string();
    assert!(bad_vpc.contains("Vpc"), "{bad_vpc}");
    s.aws(&["servicediscovery", "create-service", "--name", "web", "--namespace-id", &ns])
        .err("ServiceAlreadyExists");
    s.aws(&["servicediscovery", "delete-namespace", "--id", &ns]).err("ResourceInUse");
    s.aws(&["servicediscovery", "delete-service", "--id", &svc]).err("ResourceInUse");
    s.aws(&[
        "servicediscovery",
        "register-instance",
        "--service-id",
        &svc,
        "--instance-id",
        "i-3",
        "--attributes",
        "AWS_INSTANCE_IPV4=10.1.0.3",
    ])
    .err("InvalidInput");
    s.aws(&[
        "servicediscovery",
        "discover-instances",
        "--namespace-name",
        "nope.local",
        "--service-name",
        "web",
    ])
    .err("NamespaceNotFound");
    let http = text(&[
        "servicediscovery",
        "create-http-namespace",
        "--name",
        "plain",
        "--query",
        "OperationId",
    ]);
    let http_ns = text(&[
        "servicediscovery",
        "get-operation",
        "--operation-id",
        &http,
        "--query",
        "Operation.Targets.NAMESPACE",
    ]);
    let api = text(&[
        "servicediscovery",
        "create-service",
        "--name",
        "api",
        "--namespace-id",
        &http_ns,
        "--query",
        "Service.Id",
    ]);
    s.aws(&[
        "servicediscovery",
        "update-instance-custom-health-status",
        "--service-id",
        &api,
        "--instance-id",
        "x",
        "--status",
        "HEALTHY",
    ])
    .err("CustomHealthNotFound");
    let arn =
        format!("arn:aws:servicediscovery:us-east-1:{}:service/{api}", berth_testkit::ACCOUNT_ID);
    assert!(
        s.aws(&[
            "servicediscovery",
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "Key=team,Value=a"
        ])
        .ok
    );
    let tags = text(&[
        "servicediscovery",
        "list-tags-for-resource",
        "--resource-arn",
        &arn,
        "--query",
        "Tags[0].Value",
    ]);
    assert_eq!(tags, "a");

    // boto3: ListNamespaces through its paginator (pages of one), DiscoverInstances.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sd.py");
    std::fs::write(
        &script,
        r#"
import os, sys, boto3
sd = boto3.client("servicediscovery", endpoint_url=os.environ["BERTH_ENDPOINT"])
pages = list(sd.get_paginator("list_namespaces").paginate(PaginationConfig={"PageSize": 1}))
names = sorted(n["Name"] for p in pages for n in p["Namespaces"])
assert len(pages) >= 2, pages
assert names == ["berth.local", "plain"], names
private = sd.list_namespaces(Filters=[{"Name": "TYPE", "Values": ["DNS_PRIVATE"]}])["Namespaces"]
assert [n["Name"] for n in private] == ["berth.local"], private
found = sd.discover_instances(NamespaceName="berth.local", ServiceName="web", HealthStatus="HEALTHY_OR_ELSE_ALL")
assert [i["InstanceId"] for i in found["Instances"]] == ["i-2"], found
try:
    sd.get_service(Id="srv-nope")
    sys.exit("get_service should fail")
except sd.exceptions.ServiceNotFound:
    pass
print("ok")
"#,
    )
    .unwrap();
    let out = s.python(&script, &[]);
    assert!(
        out.status.success(),
        "boto3: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Everything can go, in order.
    assert!(
        s.aws(&[
            "servicediscovery",
            "deregister-instance",
            "--service-id",
            &svc,
            "--instance-id",
            "i-2"
        ])
        .ok
    );
    assert!(s.aws(&["servicediscovery", "delete-service", "--id", &svc]).ok);
    assert!(s.aws(&["servicediscovery", "delete-namespace", "--id", &ns]).ok);
    let gone = ask(dns, "web.berth.local", Type::A, Transport::Udp);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = gone;
    while last.metadata.authoritative {
        assert!(Instant::now() < deadline, "the zone is still served: {last:?}");
        std::thread::sleep(Duration::from_millis(50));
        last = ask(dns, "web.berth.local", Type::A, Transport::Udp);
    }
    let ops = s
        .aws(&[
            "servicediscovery",
            "list-operations",
            "--filters",
            "Name=TYPE,Values=DELETE_NAMESPACE,Condition=EQ",
        ])
        .json();
    assert_eq!(ops["Operations"].as_array().unwrap().len(), 1, "{ops}");
}
