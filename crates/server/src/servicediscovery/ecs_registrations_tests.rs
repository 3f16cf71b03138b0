//! The pure halves of ECS service discovery: who should be registered, and the plan.

use super::*;
use berth_model::servicediscovery::{DnsConfigRecord, DnsRecordConfig, RoutingPolicy};
use berth_wire::ecs::{Attachment, Container, KeyValuePair, NetworkBinding, Service};

const SRV_ID: &str = "srv-web";

fn registry(kinds: &[DnsRecordKind], custom: bool) -> model::ServiceRecord {
    model::ServiceRecord {
        id: SRV_ID.into(),
        arn: format!("arn:aws:servicediscovery:us-east-1:000000000000:service/{SRV_ID}"),
        name: "web".into(),
        namespace_id: "ns-1".into(),
        description: None,
        service_type: "DNS_HTTP".into(),
        dns_config: Some(DnsConfigRecord {
            routing_policy: RoutingPolicy::Multivalue,
            records: kinds.iter().map(|k| DnsRecordConfig { kind: *k, ttl: 10 }).collect(),
        }),
        custom_health: custom.then_some(1),
        creator_request_id: None,
        create_date: 0.0,
        tags: vec![],
    }
}

fn td(mode: NetworkMode, health_check: bool) -> TaskDefinition {
    serde_json::from_value(serde_json::json!({
        "family": "web", "revision": 1, "networkMode": mode.as_str(),
        "containerDefinitions": [{
            "name": "web", "image": "x",
            "portMappings": [{"containerPort": 8080}],
            "healthCheck": if health_check { serde_json::json!({"command": ["CMD", "true"]}) } else { serde_json::Value::Null },
        }],
    }))
    .unwrap()
}

const TD_ARN: &str = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1";

fn task(id: &str, running: bool, health: Option<HealthStatus>) -> TaskRecord {
    let mut t: TaskRecord = serde_json::from_value(serde_json::json!({
        "id": id, "cluster": "default", "instanceId": "i1",
        "task": {
            "taskDefinitionArn": TD_ARN,
            "lastStatus": if running { "RUNNING" } else { "PENDING" },
            "desiredStatus": "RUNNING",
            "availabilityZone": "us-east-1a",
        },
        "reservedCpu": 0, "reservedMemoryMib": 0, "reservedPortsTcp": [], "reservedPortsUdp": [],
    }))
    .unwrap();
    t.task.health_status = health;
    t.task.attachments = Some(vec![Attachment {
        details: Some(vec![KeyValuePair {
            name: Some("privateIPv4Address".into()),
            value: Some(format!("10.0.0.{}", id.len())),
        }]),
        ..Default::default()
    }]);
    t.task.containers = Some(vec![Container {
        name: Some("web".into()),
        network_bindings: Some(vec![NetworkBinding {
            container_port: Some(8080),
            host_port: Some(32768),
            ..Default::default()
        }]),
        ..Default::default()
    }]);
    t
}

fn snapshot(
    mode: NetworkMode,
    checks: bool,
    reg: ServiceRegistry,
    tasks: Vec<TaskRecord>,
) -> Snapshot {
    let mut s = Snapshot { region: "us-east-1".into(), ..Default::default() };
    s.services.push(EcsService {
        name: "web".into(),
        cluster: "default".into(),
        service: Service { service_registries: Some(vec![reg]), ..Default::default() },
        ..serde_json::from_value(serde_json::json!({
            "name": "web", "cluster": "default", "service": {},
            "settings": berth_model::service_rules::ServiceSettings::defaults(false),
            "deployments": [], "version": 1,
        }))
        .unwrap()
    });
    s.tasks.insert(("default".into(), "web".into()), tasks);
    s.task_definitions.insert(TD_ARN.into(), td(mode, checks));
    let inst: ContainerInstanceRecord = serde_json::from_value(serde_json::json!({
        "id": "i1", "arn": "arn", "cluster": "default", "ec2InstanceId": "i-1", "status": "ACTIVE",
        "registeredResources": [], "usedCpu": 0, "usedMemoryMib": 0,
        "usedPortsTcp": [], "usedPortsUdp": [],
        "attributes": [{"name": HOST_IPV4_ATTRIBUTE, "value": "192.0.2.2"}],
        "versionInfo": null, "tags": [], "registeredAt": 0.0, "epoch": 1, "version": 1,
    }))
    .unwrap();
    s.instances.insert("i1".into(), inst);
    s
}

fn arn_reg() -> ServiceRegistry {
    ServiceRegistry {
        registry_arn: Some(format!(
            "arn:aws:servicediscovery:us-east-1:000000000000:service/{SRV_ID}"
        )),
        ..Default::default()
    }
}

#[test]
fn awsvpc_tasks_register_their_own_address_once_running() {
    let mut s = snapshot(
        NetworkMode::Awsvpc,
        false,
        arn_reg(),
        vec![task("aaaa", true, None), task("bbbbbb", false, None)],
    );
    s.registries.insert(SRV_ID.into(), registry(&[DnsRecordKind::A], false));
    let w = desired(&s);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].task_id, "aaaa");
    let a = &w[0].attributes;
    assert_eq!(a[attributes::IPV4], "10.0.0.4");
    assert!(!a.contains_key(attributes::PORT));
    assert_eq!(a[ECS_CLUSTER_NAME], "default");
    assert_eq!(a[ECS_SERVICE_NAME], "web");
    assert_eq!(a[ECS_TASK_DEFINITION_FAMILY], "web");
    assert_eq!(a[AVAILABILITY_ZONE], "us-east-1a");
    assert_eq!(a[REGION], "us-east-1");
}

#[test]
fn bridge_tasks_register_the_host_and_the_dynamic_port() {
    let reg = ServiceRegistry {
        container_name: Some("web".into()),
        container_port: Some(8080),
        ..arn_reg()
    };
    let mut s = snapshot(NetworkMode::Bridge, false, reg, vec![task("aaaa", true, None)]);
    s.registries.insert(SRV_ID.into(), registry(&[DnsRecordKind::Srv], false));
    let w = desired(&s);
    assert_eq!(w[0].attributes[attributes::IPV4], "192.0.2.2");
    assert_eq!(w[0].attributes[attributes::PORT], "32768");
}

#[test]
fn health_checks_gate_registration_and_custom_health_follows_them() {
    let tasks = vec![
        task("aaaa", true, Some(HealthStatus::Healthy)),
        task("bbbbbb", true, Some(HealthStatus::Unknown)),
        task("cccccccc", true, Some(HealthStatus::Unhealthy)),
    ];
    let mut s = snapshot(NetworkMode::Awsvpc, true, arn_reg(), tasks.clone());
    s.registries.insert(SRV_ID.into(), registry(&[DnsRecordKind::A], false));
    let ids: Vec<_> = desired(&s).into_iter().map(|w| w.task_id).collect();
    assert_eq!(ids, ["aaaa"]);

    // With custom health: an unhealthy registered task turns UNHEALTHY, not deregistered.
    let mut s = snapshot(NetworkMode::Awsvpc, true, arn_reg(), tasks);
    s.registries.insert(SRV_ID.into(), registry(&[DnsRecordKind::A], true));
    let w = desired(&s);
    let registered: Vec<InstanceRecord> = w
        .iter()
        .map(|w| InstanceRecord {
            id: w.task_id.clone(),
            service_id: w.service_id.clone(),
            attributes: w.attributes.clone(),
            creator_request_id: None,
            health: Health::Healthy,
            create_date: 0.0,
        })
        .collect();
    let changes = plan(&w, &registered, &s.registries);
    assert_eq!(
        changes,
        vec![Change::Health(SRV_ID.into(), "cccccccc".into(), Health::Unhealthy)],
        "{changes:?}"
    );
    // Not registered yet: only the healthy one registers.
    let changes = plan(&w, &[], &s.registries);
    assert_eq!(changes.len(), 1);
    assert!(matches!(&changes[0], Change::Register(w) if w.task_id == "aaaa"));
}

#[test]
fn stopping_tasks_and_strays_are_deregistered_but_others_instances_are_kept() {
    let mut stopping = task("aaaa", true, None);
    stopping.set_desired_status(DesiredTaskStatus::Stopped);
    let mut s = snapshot(NetworkMode::Awsvpc, false, arn_reg(), vec![stopping]);
    s.registries.insert(SRV_ID.into(), registry(&[DnsRecordKind::A], false));
    let w = desired(&s);
    assert!(w.is_empty());
    let inst = |id: &str, ecs: bool| InstanceRecord {
        id: id.into(),
        service_id: SRV_ID.into(),
        attributes: if ecs {
            [(ECS_CLUSTER_NAME, "default"), (ECS_SERVICE_NAME, "web")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        } else {
            BTreeMap::new()
        },
        creator_request_id: None,
        health: Health::Unknown,
        create_date: 0.0,
    };
    let changes = plan(&w, &[inst("aaaa", true), inst("manual", false)], &s.registries);
    assert_eq!(changes, vec![Change::Deregister(SRV_ID.into(), "aaaa".into())]);
}
