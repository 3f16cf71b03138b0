//! The pure decisions (attribute checks, discovery filters, DNS zones) with tables, and the
//! API's invariants against a real SQLite store.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_model::servicediscovery::{
    DnsConfigRecord, DnsRecordConfig, DnsRecordKind, Health, InstanceRecord, NamespaceKind,
    NamespaceRecord, RoutingPolicy, ServiceRecord,
};
use berth_wire::servicediscovery::{
    self as wire, InstancesApi, NamespacesApi, OperationsApi, ServicesApi, TagsApi,
};

use super::*;
use crate::auth::Principal;

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn service(kinds: &[DnsRecordKind], custom: bool) -> ServiceRecord {
    ServiceRecord {
        id: "srv-1".into(),
        arn: "arn".into(),
        name: "web".into(),
        namespace_id: "ns-1".into(),
        description: None,
        service_type: "DNS_HTTP".into(),
        dns_config: (!kinds.is_empty()).then(|| DnsConfigRecord {
            routing_policy: RoutingPolicy::Multivalue,
            records: kinds.iter().map(|&kind| DnsRecordConfig { kind, ttl: 10 }).collect(),
        }),
        custom_health: custom.then_some(1),
        creator_request_id: None,
        create_date: 0.0,
        tags: vec![],
    }
}

/// (record types, custom health check, attributes, initial health or a part of the error)
type RegistrationCase<'a> =
    (&'a [DnsRecordKind], bool, Vec<(&'a str, &'a str)>, Result<Health, &'a str>);

/// (query parameters, optional parameters, health filter, service has a health check, ids)
type DiscoveryCase<'a> = (
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    wire::HealthStatusFilter,
    bool,
    Vec<&'a str>,
);

#[test]
fn registrations_carry_what_the_services_records_need() {
    use DnsRecordKind::*;
    let ip = ("AWS_INSTANCE_IPV4", "10.0.0.1");
    let port = ("AWS_INSTANCE_PORT", "80");
    let cases: Vec<RegistrationCase> = vec![
        (&[A], false, vec![ip], Ok(Health::Unknown)),
        (&[A], true, vec![ip], Ok(Health::Healthy)),
        (&[A], true, vec![ip, ("AWS_INIT_HEALTH_STATUS", "UNHEALTHY")], Ok(Health::Unhealthy)),
        (
            &[A],
            false,
            vec![ip, ("AWS_INIT_HEALTH_STATUS", "HEALTHY")],
            Err("AWS_INIT_HEALTH_STATUS"),
        ),
        (&[A], true, vec![ip, ("AWS_INIT_HEALTH_STATUS", "MAYBE")], Err("AWS_INIT_HEALTH_STATUS")),
        (&[A], false, vec![], Err("AWS_INSTANCE_IPV4")),
        (&[A], false, vec![("AWS_INSTANCE_IPV4", "10.0.0")], Err("not an IPv4")),
        (&[Aaaa], false, vec![ip], Err("AWS_INSTANCE_IPV6")),
        (&[A, Aaaa], false, vec![("AWS_INSTANCE_IPV6", "::1")], Ok(Health::Unknown)),
        (&[A, Srv], false, vec![ip], Err("AWS_INSTANCE_PORT")),
        (&[A, Srv], false, vec![ip, port], Ok(Health::Unknown)),
        (&[A, Srv], false, vec![ip, ("AWS_INSTANCE_PORT", "70000")], Err("not a port")),
        (&[Srv], false, vec![port], Err("give an address")),
        (&[Cname], false, vec![], Err("AWS_INSTANCE_CNAME")),
        (&[], false, vec![("anything", "goes")], Ok(Health::Unknown)),
    ];
    for (kinds, custom, a, want) in cases {
        let got = super::instances::check_attributes(&service(kinds, custom), &attrs(&a));
        match (got, want) {
            (Ok(h), Ok(w)) => assert_eq!(h, w, "{kinds:?} {a:?}"),
            (Err(e), Err(w)) => {
                assert_eq!(e.code, "InvalidInput");
                assert!(e.message.contains(w), "{kinds:?} {a:?}: {}", e.message);
            }
            (got, want) => panic!("{kinds:?} {a:?}: got {got:?}, want {want:?}"),
        }
    }
    let many: BTreeMap<String, String> = (0..31).map(|i| (format!("k{i}"), "v".into())).collect();
    assert!(super::instances::check_attributes(&service(&[], false), &many).is_err());
}

#[test]
fn dns_record_configurations_follow_cloud_maps_rules() {
    let r = |t: wire::RecordType, ttl: i64| wire::DnsRecord { r#type: Some(t), ttl: Some(ttl) };
    use wire::RecordType as T;
    let cases: Vec<(Vec<wire::DnsRecord>, RoutingPolicy, Option<&str>)> = vec![
        (vec![r(T::A, 60), r(T::Srv, 60)], RoutingPolicy::Multivalue, None),
        (vec![], RoutingPolicy::Multivalue, Some("at least one")),
        (vec![r(T::A, 60), r(T::A, 10)], RoutingPolicy::Multivalue, Some("twice")),
        (vec![r(T::A, -1)], RoutingPolicy::Multivalue, Some("TTL")),
        (vec![r(T::Cname, 60)], RoutingPolicy::Weighted, None),
        (vec![r(T::Cname, 60)], RoutingPolicy::Multivalue, Some("WEIGHTED")),
        (vec![r(T::Cname, 60), r(T::A, 60)], RoutingPolicy::Weighted, Some("combined")),
    ];
    for (records, routing, want) in cases {
        let got = super::services::dns_records(&records, routing);
        match want {
            None => assert!(got.is_ok(), "{records:?}: {got:?}"),
            Some(w) => {
                let e = got.unwrap_err();
                assert_eq!(e.code, "InvalidInput");
                assert!(e.message.contains(w) && e.message.contains("DnsConfig"), "{}", e.message);
            }
        }
    }
}

fn inst(id: &str, health: Health, a: &[(&str, &str)]) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        service_id: "srv-1".into(),
        attributes: attrs(a),
        creator_request_id: None,
        health,
        create_date: 0.0,
    }
}

#[test]
fn discovery_filters_by_parameters_then_health() {
    use wire::HealthStatusFilter as F;
    let all = vec![
        inst("a", Health::Healthy, &[("env", "prod"), ("zone", "a")]),
        inst("b", Health::Unhealthy, &[("env", "prod"), ("zone", "b")]),
        inst("c", Health::Healthy, &[("env", "dev"), ("zone", "a")]),
    ];
    let q = |pairs: &[(&str, &str)]| attrs(pairs);
    let cases: Vec<DiscoveryCase> = vec![
        (q(&[]), q(&[]), F::Healthy, true, vec!["a", "c"]),
        (q(&[]), q(&[]), F::All, true, vec!["a", "b", "c"]),
        (q(&[]), q(&[]), F::Unhealthy, true, vec!["b"]),
        (q(&[]), q(&[]), F::Healthy, false, vec!["a", "b", "c"]),
        (q(&[("env", "prod")]), q(&[]), F::Healthy, true, vec!["a"]),
        (q(&[("env", "prod")]), q(&[("zone", "b")]), F::All, true, vec!["b"]),
        (q(&[("env", "prod")]), q(&[("zone", "z")]), F::All, true, vec!["a", "b"]),
        (q(&[("env", "prod"), ("zone", "b")]), q(&[]), F::Healthy, true, vec![]),
        (q(&[("env", "prod"), ("zone", "b")]), q(&[]), F::HealthyOrElseAll, true, vec!["b"]),
        (q(&[]), q(&[]), F::HealthyOrElseAll, true, vec!["a", "c"]),
    ];
    for (query, optional, health, checked, want) in cases {
        let got: Vec<&str> = super::instances::discover(&all, &query, &optional, health, checked)
            .into_iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(got, want, "{query:?} {optional:?} {health:?} {checked}");
    }
}

#[test]
fn dns_zones_hold_the_serving_instances_of_dns_services() {
    let ns = |id: &str, name: &str, kind| NamespaceRecord {
        id: id.into(),
        arn: String::new(),
        name: name.into(),
        kind,
        description: None,
        vpc: None,
        hosted_zone_id: None,
        soa_ttl: None,
        http_name: name.into(),
        creator_request_id: None,
        operation_id: None,
        create_date: 0.0,
        tags: vec![],
    };
    let namespaces = vec![
        ns("ns-1", "a.local", NamespaceKind::DnsPrivate),
        ns("ns-2", "b.example", NamespaceKind::DnsPublic),
        ns("ns-3", "http-only", NamespaceKind::Http),
    ];
    let mut web = service(&[DnsRecordKind::A, DnsRecordKind::Srv], true);
    web.id = "srv-1".into();
    let mut api = service(&[], false);
    api.id = "srv-2".into();
    api.name = "api".into();
    let ip =
        |v: &str| vec![("AWS_INSTANCE_IPV4", v.to_string()), ("AWS_INSTANCE_PORT", "8080".into())];
    let mk = |id: &str, h, a: Vec<(&str, String)>, svc: &str| {
        let mut i = inst(id, h, &a.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
        i.service_id = svc.into();
        i
    };
    let instances = vec![
        mk("i-1", Health::Healthy, ip("10.0.0.1"), "srv-1"),
        mk("i-2", Health::Unhealthy, ip("10.0.0.2"), "srv-1"),
        mk("i-3", Health::Unknown, ip("10.0.0.3"), "srv-1"),
        mk("i-4", Health::Healthy, ip("10.0.0.4"), "srv-2"),
    ];
    let z = super::dns::zones(&namespaces, &[web, api], &instances);
    assert_eq!(z.len(), 2, "HTTP namespaces have no zone");
    assert_eq!(z[0].name, "a.local");
    assert_eq!(z[0].services.len(), 1, "only services with a DnsConfig");
    let s = &z[0].services[0];
    let ids: Vec<&str> = s.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["i-1", "i-3"], "UNHEALTHY instances leave DNS");
    assert_eq!(s.instances[0].ipv4, Some([10, 0, 0, 1].into()));
    assert_eq!(s.instances[0].port, Some(8080));
    assert_eq!(s.records.len(), 2);
    assert!(z[1].services.is_empty());
}

fn setup() -> (tempfile::TempDir, CloudMap, RequestContext) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let region = berth_model::regions::lookup("us-east-1").unwrap();
    let feed = Arc::new(dns::DnsFeed::with(berth_dns::Dns::new(vec![])));
    let cm = CloudMap::new(store, region, "123456789012", feed);
    let ctx = RequestContext {
        principal: Arc::new(Principal {
            arn: "arn:aws:iam::123456789012:root".into(),
            account_id: "123456789012".into(),
            access_key_id: "AKID".into(),
            instance: None,
        }),
        request_id: "r".into(),
    };
    (dir, cm, ctx)
}

#[tokio::test]
async fn the_api_keeps_its_invariants() {
    let (_dir, cm, ctx) = setup();
    let vpc =
        crate::ec2::ensure_default_vpc(cm.store(), "us-east-1", "123456789012").await.unwrap().id;
    let create =
        |name: &str, vpc: Option<&str>, req: Option<&str>| wire::CreatePrivateDnsNamespaceRequest {
            name: Some(name.into()),
            vpc: vpc.map(str::to_string),
            creator_request_id: req.map(str::to_string),
            ..Default::default()
        };
    // The VPC must exist.
    let e = cm
        .create_private_dns_namespace(&ctx, create("a.local", Some("vpc-nope"), None))
        .await
        .unwrap_err();
    assert_eq!((e.code, e.message.contains("Vpc")), ("InvalidInput", true));
    let e = cm.create_private_dns_namespace(&ctx, create("a.local", None, None)).await.unwrap_err();
    assert!(e.message.starts_with("Vpc"), "{}", e.message);
    let e = cm
        .create_private_dns_namespace(&ctx, create("bad name", Some(&vpc), None))
        .await
        .unwrap_err();
    assert!(e.message.starts_with("Name"), "{}", e.message);
    let op = cm
        .create_private_dns_namespace(&ctx, create("a.local", Some(&vpc), Some("req-1")))
        .await
        .unwrap()
        .operation_id
        .unwrap();
    // A retry with the same request id answers the same operation; another is refused.
    let again = cm
        .create_private_dns_namespace(&ctx, create("A.local.", Some(&vpc), Some("req-1")))
        .await
        .unwrap()
        .operation_id
        .unwrap();
    assert_eq!(op, again);
    let e = cm
        .create_private_dns_namespace(&ctx, create("a.local", Some(&vpc), None))
        .await
        .unwrap_err();
    assert_eq!(e.code, "NamespaceAlreadyExists");
    let got = cm
        .get_operation(
            &ctx,
            wire::GetOperationRequest { operation_id: Some(op.clone()), ..Default::default() },
        )
        .await
        .unwrap()
        .operation
        .unwrap();
    assert_eq!(got.status, Some(wire::OperationStatus::Success));
    let ns_id = got.targets.unwrap()[&wire::OperationTargetType::Namespace].clone();
    let ns = cm
        .get_namespace(&ctx, wire::GetNamespaceRequest { id: Some(ns_id.clone()) })
        .await
        .unwrap()
        .namespace
        .unwrap();
    let zone = ns.properties.unwrap().dns_properties.unwrap().hosted_zone_id.unwrap();
    assert!(zone.starts_with('Z') && zone.len() == 21, "{zone}");
    assert_eq!(
        ns.arn.unwrap(),
        format!("arn:aws:servicediscovery:us-east-1:123456789012:namespace/{ns_id}")
    );

    // A service; the namespace cannot go while it has one.
    let svc = cm
        .create_service(
            &ctx,
            wire::CreateServiceRequest {
                name: Some("web".into()),
                namespace_id: Some(ns_id.clone()),
                dns_config: Some(wire::DnsConfig {
                    dns_records: Some(vec![wire::DnsRecord {
                        r#type: Some(wire::RecordType::A),
                        ttl: Some(10),
                    }]),
                    ..Default::default()
                }),
                health_check_custom_config: Some(wire::HealthCheckCustomConfig::default()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .service
        .unwrap();
    let svc_id = svc.id.unwrap();
    assert_eq!(svc.r#type, Some(wire::ServiceType::DnsHttp));
    let e = cm
        .create_service(
            &ctx,
            wire::CreateServiceRequest {
                name: Some("WEB".into()),
                namespace_id: Some(ns_id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "ServiceAlreadyExists");
    let e = cm
        .delete_namespace(&ctx, wire::DeleteNamespaceRequest { id: Some(ns_id.clone()) })
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceInUse");

    // Instances: registered, health set, listed; the service cannot go while it has them.
    let reg = |id: &str, ip: &str| wire::RegisterInstanceRequest {
        service_id: Some(svc_id.clone()),
        instance_id: Some(id.into()),
        attributes: Some(attrs(&[("AWS_INSTANCE_IPV4", ip)])),
        ..Default::default()
    };
    cm.register_instance(&ctx, reg("i-1", "10.0.0.1")).await.unwrap();
    cm.register_instance(&ctx, reg("i-2", "10.0.0.2")).await.unwrap();
    let e = cm.register_instance(&ctx, reg("bad id!", "10.0.0.2")).await.unwrap_err();
    assert!(e.message.starts_with("InstanceId"), "{}", e.message);
    cm.update_instance_custom_health_status(
        &ctx,
        wire::UpdateInstanceCustomHealthStatusRequest {
            service_id: Some(svc_id.clone()),
            instance_id: Some("i-2".into()),
            status: Some(wire::CustomHealthStatus::Unhealthy),
        },
    )
    .await
    .unwrap();
    let health = cm
        .get_instances_health_status(
            &ctx,
            wire::GetInstancesHealthStatusRequest {
                service_id: Some(svc_id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(health["i-1"], wire::HealthStatus::Healthy);
    assert_eq!(health["i-2"], wire::HealthStatus::Unhealthy);
    let zones = cm.dns_zones().await.unwrap();
    assert_eq!(zones[0].services[0].instances.len(), 1, "{zones:?}");
    let e = cm
        .delete_service(&ctx, wire::DeleteServiceRequest { id: Some(svc_id.clone()) })
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceInUse");
    // Pages of one.
    let p1 = cm
        .list_instances(
            &ctx,
            wire::ListInstancesRequest {
                service_id: Some(svc_id.clone()),
                max_results: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p1.instances.unwrap()[0].id.as_deref(), Some("i-1"));
    let p2 = cm
        .list_instances(
            &ctx,
            wire::ListInstancesRequest {
                service_id: Some(svc_id.clone()),
                max_results: Some(1),
                next_token: p1.next_token,
            },
        )
        .await
        .unwrap();
    assert_eq!(p2.instances.unwrap()[0].id.as_deref(), Some("i-2"));
    assert_eq!(p2.next_token, None);

    // Tags on the service's ARN.
    let arn = format!("arn:aws:servicediscovery:us-east-1:123456789012:service/{svc_id}");
    cm.tag_resource(
        &ctx,
        wire::TagResourceRequest {
            resource_arn: Some(arn.clone()),
            tags: Some(vec![wire::Tag { key: Some("team".into()), value: Some("a".into()) }]),
        },
    )
    .await
    .unwrap();
    let tags = cm
        .list_tags_for_resource(
            &ctx,
            wire::ListTagsForResourceRequest { resource_arn: Some(arn.clone()) },
        )
        .await
        .unwrap()
        .tags
        .unwrap();
    assert_eq!(tags.len(), 1);
    let e = cm
        .list_tags_for_resource(
            &ctx,
            wire::ListTagsForResourceRequest {
                resource_arn: Some(
                    "arn:aws:servicediscovery:us-east-1:123456789012:service/srv-nope".into(),
                ),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");

    // Everything goes, in order.
    for id in ["i-1", "i-2"] {
        cm.deregister_instance(
            &ctx,
            wire::DeregisterInstanceRequest {
                service_id: Some(svc_id.clone()),
                instance_id: Some(id.into()),
            },
        )
        .await
        .unwrap();
    }
    let e = cm
        .deregister_instance(
            &ctx,
            wire::DeregisterInstanceRequest {
                service_id: Some(svc_id.clone()),
                instance_id: Some("i-1".into()),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "InstanceNotFound");
    cm.delete_service(&ctx, wire::DeleteServiceRequest { id: Some(svc_id.clone()) }).await.unwrap();
    cm.delete_namespace(&ctx, wire::DeleteNamespaceRequest { id: Some(ns_id.clone()) })
        .await
        .unwrap();
    let e =
        cm.get_namespace(&ctx, wire::GetNamespaceRequest { id: Some(ns_id) }).await.unwrap_err();
    assert_eq!(e.code, "NamespaceNotFound");
    // The name is free again.
    cm.create_private_dns_namespace(&ctx, create("a.local", Some(&vpc), None)).await.unwrap();
}
