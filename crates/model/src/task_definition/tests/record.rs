//! [`build`]: the record keeps the request's members, normalises sizes and fills container
//! defaults exactly as ECS echoes them.

use super::*;

#[test]
fn build_sets_identity_and_copies_members() {
    let mut r = fargate();
    r.cpu = Some("1 vCPU".into());
    r.memory = Some("2 GB".into());
    r.task_role_arn = Some("arn:aws:iam::123456789012:role/task".into());
    r.execution_role_arn = Some("arn:aws:iam::123456789012:role/exec".into());
    r.pid_mode = Some(PidMode::Task);
    r.enable_fault_injection = Some(true);
    r.ephemeral_storage = Some(EphemeralStorage { size_in_gi_b: Some(30) });
    r.tags = Some(vec![tag("team", "web")]);
    r.proxy_configuration =
        Some(ProxyConfiguration { container_name: Some("app".into()), ..Default::default() });
    assert_eq!(validate(&r), Ok(()));
    let td = build(&r, &ctx());
    assert_eq!(
        td.task_definition_arn.as_deref(),
        Some("arn:aws:ecs:eu-west-1:123456789012:task-definition/api:3")
    );
    assert_eq!(td.family.as_deref(), Some("api"));
    assert_eq!(td.revision, Some(3));
    assert_eq!(td.status, Some(TaskDefinitionStatus::Active));
    assert_eq!(td.registered_at, Some(1_700_000_000.5));
    assert_eq!(td.registered_by.as_deref(), Some("arn:aws:iam::123456789012:user/dev"));
    assert_eq!(td.cpu.as_deref(), Some("1024"));
    assert_eq!(td.memory.as_deref(), Some("2048"));
    assert_eq!(td.network_mode, Some(NetworkMode::Awsvpc));
    assert_eq!(td.requires_compatibilities, Some(vec![Compatibility::Fargate]));
    assert_eq!(td.task_role_arn, r.task_role_arn);
    assert_eq!(td.execution_role_arn, r.execution_role_arn);
    assert_eq!(td.pid_mode, Some(PidMode::Task));
    assert_eq!(td.enable_fault_injection, Some(true));
    assert_eq!(td.ephemeral_storage, r.ephemeral_storage);
    assert_eq!(td.proxy_configuration, r.proxy_configuration);
    assert_eq!(td.volumes, Some(vec![]));
    assert_eq!(td.placement_constraints, Some(vec![]));
    assert_eq!(td.deregistered_at, None);
    let json = serde_json::to_value(&td).unwrap();
    assert!(json.get("tags").is_none());
}

#[test]
fn build_fills_container_defaults_as_ecs_echoes_them() {
    let mut r = fargate();
    c(&mut r, 0).port_mappings = Some(vec![
        port(80, None),
        PortMapping { container_port_range: Some("8000-8010".into()), ..Default::default() },
    ]);
    c(&mut r, 0).health_check = Some(health(&["CMD-SHELL", "true"]));
    let td = build(&r, &ctx());
    let json = serde_json::to_value(&td).unwrap();
    let c0 = &json["containerDefinitions"][0];
    assert_eq!(c0["cpu"], 0);
    assert_eq!(c0["essential"], true);
    for empty in ["environment", "mountPoints", "volumesFrom", "systemControls"] {
        assert_eq!(c0[empty], serde_json::json!([]), "{empty}");
    }
    assert_eq!(
        c0["portMappings"][0],
        serde_json::json!({"containerPort": 80, "hostPort": 80, "protocol": "tcp"})
    );
    assert_eq!(
        c0["portMappings"][1],
        serde_json::json!({"containerPortRange": "8000-8010", "protocol": "tcp"})
    );
    assert_eq!(
        c0["healthCheck"],
        serde_json::json!({"command": ["CMD-SHELL", "true"], "interval": 30, "timeout": 5, "retries": 3})
    );
    assert!(c0.get("memory").is_none());

    // Bridge: no host port invented, explicit values kept, absent networkMode stays absent.
    let mut r = ec2();
    c(&mut r, 0).cpu = Some(128);
    c(&mut r, 0).essential = Some(true);
    c(&mut r, 0).port_mappings = Some(vec![port(80, None)]);
    let json = serde_json::to_value(build(&r, &ctx())).unwrap();
    let c0 = &json["containerDefinitions"][0];
    assert_eq!(c0["cpu"], 128);
    assert_eq!(c0["portMappings"][0], serde_json::json!({"containerPort": 80, "protocol": "tcp"}));
    assert!(json.get("networkMode").is_none());
    assert!(json.get("requiresCompatibilities").is_none());
    assert!(json.get("requiresAttributes").is_none(), "no features, no attributes");
    assert!(json.get("cpu").is_none());

    let json = serde_json::to_value(build(&ec2(), &ctx())).unwrap();
    assert_eq!(json["containerDefinitions"][0]["portMappings"], serde_json::json!([]));
}
