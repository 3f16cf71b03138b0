use super::*;
use crate::ecs::testing::{Harness, task_definition};

#[test]
fn names() {
    let long = "a".repeat(256);
    let cases: &[(&str, bool)] = &[
        ("web-asg_1", true),
        ("A", true),
        ("FARGATE", false),
        ("FARGATE_SPOT", false),
        ("fargate-mine", false),
        ("AWSprovider", false),
        ("ecs_x", false),
        ("my.provider", false),
        ("", false),
        (&long, false),
        ("prov/x", false),
    ];
    for (name, ok) in cases {
        let got = validate_name(name);
        assert_eq!(got.is_ok(), *ok, "{name}: {got:?}");
        if let Err(e) = got {
            assert_eq!(e.code, "InvalidParameterException");
            assert!(e.message.starts_with("name: "), "{}", e.message);
        }
    }
}

#[test]
fn managed_scaling_defaults_and_steps() {
    let d = managed_scaling(None).unwrap();
    assert_eq!(d.status, Some(ManagedScalingStatus::Disabled));
    assert_eq!(
        (
            d.target_capacity,
            d.minimum_scaling_step_size,
            d.maximum_scaling_step_size,
            d.instance_warmup_period
        ),
        (Some(100), Some(1), Some(10_000), Some(300))
    );
    let cases: &[(Option<i32>, Option<i32>, bool)] = &[
        (Some(5), Some(5), true),
        (Some(6), Some(5), false),
        (Some(10_000), None, true),
        (None, Some(1), true),
    ];
    for (min, max, ok) in cases {
        let m = ManagedScaling {
            minimum_scaling_step_size: *min,
            maximum_scaling_step_size: *max,
            ..Default::default()
        };
        assert_eq!(managed_scaling(Some(&m)).is_ok(), *ok, "{min:?} {max:?}");
    }
    // Termination protection needs managed scaling.
    let asg = |scaling: Option<ManagedScalingStatus>, protect| AutoScalingGroupProvider {
        managed_scaling: scaling.map(|s| ManagedScaling { status: Some(s), ..Default::default() }),
        managed_termination_protection: Some(protect),
        ..Default::default()
    };
    use ManagedScalingStatus::*;
    use ManagedTerminationProtection as P;
    for (a, ok) in [
        (asg(Some(Enabled), P::Enabled), true),
        (asg(Some(Disabled), P::Enabled), false),
        (asg(None, P::Enabled), false),
        (asg(None, P::Disabled), true),
    ] {
        assert_eq!(check_termination_protection(&a).is_ok(), ok, "{a:?}");
    }
}

#[test]
fn strategy_decisions() {
    let item = |n: &str, b: i32, w: i32| CapacityProviderStrategyItem {
        capacity_provider: Some(n.into()),
        base: Some(b),
        weight: Some(w),
    };
    let cluster = |providers: &[&str], default: &[(&str, i32, i32)]| ClusterRecord {
        name: "c".into(),
        arn: "arn".into(),
        status: berth_model::records::ClusterStatus::Active,
        settings: vec![],
        configuration: None,
        tags: vec![],
        capacity_providers: providers.iter().map(|p| p.to_string()).collect(),
        default_capacity_provider_strategy: default
            .iter()
            .map(|(n, b, w)| item(n, *b, *w))
            .collect(),
        created_at: 0.0,
    };
    let with_default = cluster(&["a", "b"], &[("a", 0, 1)]);
    let no_default = cluster(&["a", "b"], &[]);
    let names = |r: Result<Option<Vec<ProviderShare>>, AwsError>| {
        r.map(|o| o.map(|v| v.into_iter().map(|s| s.capacity_provider).collect::<Vec<_>>()))
            .map_err(|e| e.message)
    };
    let given = [item("b", 1, 1)];
    let unknown = [item("x", 0, 1)];
    let heavy = [item("a", 0, 1001)];
    type Case<'a> = (
        &'a str,
        Option<&'a [CapacityProviderStrategyItem]>,
        Option<LaunchType>,
        &'a ClusterRecord,
        Result<Option<Vec<&'a str>>, &'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        ("request's strategy", Some(&given), None, &with_default, Ok(Some(vec!["b"]))),
        ("cluster default", None, None, &with_default, Ok(Some(vec!["a"]))),
        ("empty list is none", Some(&[]), None, &with_default, Ok(Some(vec!["a"]))),
        ("launch type skips the default", None, Some(LaunchType::Ec2), &with_default, Ok(None)),
        ("no default: launch type EC2", None, None, &no_default, Ok(None)),
        (
            "both",
            Some(&given),
            Some(LaunchType::Ec2),
            &with_default,
            Err("Specifying both a launch type"),
        ),
        (
            "not associated",
            Some(&unknown[..]),
            None,
            &with_default,
            Err(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated",
            ),
        ),
        (
            "bad weight",
            Some(&heavy[..]),
            None,
            &with_default,
            Err("capacityProviderStrategy[0].weight"),
        ),
    ];
    for (name, given, lt, c, want) in cases {
        let got = names(strategy_for(given, lt, c));
        match (got, want) {
            (Ok(g), Ok(w)) => {
                assert_eq!(g, w.map(|v| v.into_iter().map(String::from).collect()), "{name}")
            }
            (Err(g), Err(w)) => assert!(g.starts_with(w), "{name}: {g}"),
            (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
        }
    }
}

async fn register_in(h: &Harness, provider: Option<&str>) -> String {
    let ctx = h.ctx();
    let int = |name: &str, v: i32| Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(v),
        ..Default::default()
    };
    let req = RegisterContainerInstanceRequest {
        total_resources: Some(vec![int("CPU", 2048), int("MEMORY", 4096)]),
        attributes: provider.map(|p| {
            vec![Attribute {
                name: Some(capacity::PROVIDER_ATTRIBUTE.into()),
                value: Some(p.into()),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let out = h.ecs.container_instances().register_container_instance(&ctx, req).await;
    out.unwrap().container_instance.unwrap().container_instance_arn.unwrap()
}

fn create(name: &str, asg: &str) -> CreateCapacityProviderRequest {
    CreateCapacityProviderRequest {
        name: Some(name.into()),
        auto_scaling_group_provider: Some(AutoScalingGroupProvider {
            auto_scaling_group_arn: Some(asg.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn lifecycle_and_placement() {
    use berth_wire::ecs::{ClustersApi, TasksApi};
    let h = Harness::new();
    let ctx = h.ctx();
    let api = h.ecs.capacity_providers();
    let a = api.create_capacity_provider(&ctx, create("cp-a", "asg-a")).await.unwrap();
    let a = a.capacity_provider.unwrap();
    assert_eq!(a.status, Some(CapacityProviderStatus::Active));
    assert_eq!(
        a.capacity_provider_arn.as_deref(),
        Some("arn:aws:ecs:us-east-1:000000000000:capacity-provider/cp-a")
    );
    let asg = a.auto_scaling_group_provider.unwrap();
    assert_eq!(asg.managed_termination_protection, Some(ManagedTerminationProtection::Disabled));
    assert_eq!(asg.managed_draining, Some(ManagedDraining::Enabled));
    api.create_capacity_provider(&ctx, create("cp-b", "asg-b")).await.unwrap();
    let dup = api.create_capacity_provider(&ctx, create("cp-a", "asg-z")).await.unwrap_err();
    assert_eq!(dup.code, "ClientException");
    let same_asg = api.create_capacity_provider(&ctx, create("cp-c", "asg-a")).await.unwrap_err();
    assert_eq!(same_asg.code, "ClientException");
    assert!(same_asg.message.contains("cp-a"), "{}", same_asg.message);

    // Describe: the built-ins first, then the account's; pagination; MISSING.
    let all = api
        .describe_capacity_providers(&ctx, DescribeCapacityProvidersRequest::default())
        .await
        .unwrap();
    let names: Vec<String> =
        all.capacity_providers.unwrap().into_iter().map(|p| p.name.unwrap()).collect();
    assert_eq!(names, ["FARGATE", "FARGATE_SPOT", "cp-a", "cp-b"]);
    let first = DescribeCapacityProvidersRequest { max_results: Some(3), ..Default::default() };
    let p1 = api.describe_capacity_providers(&ctx, first.clone()).await.unwrap();
    assert_eq!(p1.capacity_providers.unwrap().len(), 3);
    let p2 = DescribeCapacityProvidersRequest { next_token: p1.next_token, ..first };
    let p2 = api.describe_capacity_providers(&ctx, p2).await.unwrap();
    assert_eq!(p2.capacity_providers.unwrap()[0].name.as_deref(), Some("cp-b"));
    assert_eq!(p2.next_token, None);
    let named = DescribeCapacityProvidersRequest {
        capacity_providers: Some(vec!["cp-b".into(), "nope".into()]),
        ..Default::default()
    };
    let named = api.describe_capacity_providers(&ctx, named).await.unwrap();
    assert_eq!(named.capacity_providers.unwrap().len(), 1);
    assert_eq!(named.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));

    // Associate both with a cluster, with a default strategy.
    let c = CreateClusterRequest { cluster_name: Some("default".into()), ..Default::default() };
    h.ecs.clusters().create_cluster(&ctx, c).await.unwrap();
    let item = |n: &str, b: i32, w: i32| CapacityProviderStrategyItem {
        capacity_provider: Some(n.into()),
        base: Some(b),
        weight: Some(w),
    };
    let put = PutClusterCapacityProvidersRequest {
        cluster: Some("default".into()),
        capacity_providers: Some(vec!["cp-a".into(), "cp-b".into(), "FARGATE".into()]),
        default_capacity_provider_strategy: Some(vec![item("cp-a", 1, 1), item("cp-b", 0, 3)]),
    };
    let cluster =
        h.ecs.clusters().put_cluster_capacity_providers(&ctx, put).await.unwrap().cluster.unwrap();
    assert_eq!(cluster.capacity_providers.unwrap(), ["cp-a", "cp-b", "FARGATE"]);
    let bad = PutClusterCapacityProvidersRequest {
        cluster: Some("default".into()),
        capacity_providers: Some(vec!["cp-a".into()]),
        default_capacity_provider_strategy: Some(vec![item("cp-b", 0, 1)]),
    };
    let e = h.ecs.clusters().put_cluster_capacity_providers(&ctx, bad).await.unwrap_err();
    assert!(e.message.contains("not associated with the cluster"), "{}", e.message);
    let missing = PutClusterCapacityProvidersRequest {
        cluster: Some("nope".into()),
        capacity_providers: Some(vec![]),
        default_capacity_provider_strategy: Some(vec![]),
    };
    let e = h.ecs.clusters().put_cluster_capacity_providers(&ctx, missing).await.unwrap_err();
    assert_eq!(e.code, "ClusterNotFoundException");

    // Placement: one instance per provider and one in none; the default strategy
    // (cp-a base 1 weight 1, cp-b weight 3) splits 9 tasks 1 + 2 on cp-a, 6 on cp-b.
    let on_a = register_in(&h, Some("cp-a")).await;
    let on_b = register_in(&h, Some("cp-b")).await;
    let _other = register_in(&h, None).await;
    let td = task_definition(&h.ecs, &ctx, "web").await;
    let run =
        RunTaskRequest { task_definition: Some(td.clone()), count: Some(9), ..Default::default() };
    let out = h.ecs.tasks().run_task(&ctx, run).await.unwrap();
    assert_eq!(out.failures.unwrap(), vec![]);
    let tasks = out.tasks.unwrap();
    let count = |inst: &str, cp: &str| {
        tasks
            .iter()
            .filter(|t| {
                t.container_instance_arn.as_deref() == Some(inst)
                    && t.capacity_provider_name.as_deref() == Some(cp)
            })
            .count()
    };
    assert_eq!((count(&on_a, "cp-a"), count(&on_b, "cp-b")), (3, 6));
    // launchType EC2 ignores the default strategy: no provider recorded.
    let run = RunTaskRequest {
        task_definition: Some(td.clone()),
        launch_type: Some(LaunchType::Ec2),
        ..Default::default()
    };
    let t = h.ecs.tasks().run_task(&ctx, run).await.unwrap().tasks.unwrap();
    assert_eq!(t[0].capacity_provider_name, None);
    // FARGATE with a task definition Fargate cannot run: ECS's refusal, nothing placed.
    let run = RunTaskRequest {
        task_definition: Some(td.clone()),
        capacity_provider_strategy: Some(vec![item("FARGATE", 0, 1)]),
        ..Default::default()
    };
    let e = h.ecs.tasks().run_task(&ctx, run).await.unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    assert_eq!(e.message, "Task definition does not support launch_type FARGATE.");
    // A provider without instances: its share fails with CAPACITY_PROVIDER.
    api.create_capacity_provider(&ctx, create("cp-empty", "asg-e")).await.unwrap();
    let put = PutClusterCapacityProvidersRequest {
        cluster: Some("default".into()),
        capacity_providers: Some(vec!["cp-a".into(), "cp-b".into(), "cp-empty".into()]),
        default_capacity_provider_strategy: Some(vec![]),
    };
    h.ecs.clusters().put_cluster_capacity_providers(&ctx, put).await.unwrap();
    let run = RunTaskRequest {
        task_definition: Some(td.clone()),
        count: Some(2),
        capacity_provider_strategy: Some(vec![item("cp-a", 0, 1), item("cp-empty", 0, 1)]),
        ..Default::default()
    };
    let out = h.ecs.tasks().run_task(&ctx, run).await.unwrap();
    assert_eq!(out.tasks.unwrap().len(), 1);
    let f = out.failures.unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason.as_deref(), Some("CAPACITY_PROVIDER"));
    assert!(f[0].arn.as_deref().unwrap().ends_with("capacity-provider/cp-empty"));

    // cp-a runs tasks: it can't be removed from the cluster; deleting it fails (DELETE_FAILED).
    let keep_b = PutClusterCapacityProvidersRequest {
        cluster: Some("default".into()),
        capacity_providers: Some(vec!["cp-b".into()]),
        default_capacity_provider_strategy: Some(vec![]),
    };
    let e = h.ecs.clusters().put_cluster_capacity_providers(&ctx, keep_b).await.unwrap_err();
    assert_eq!(e.code, "ResourceInUseException");
    let del = DeleteCapacityProviderRequest {
        capacity_provider: Some("cp-empty".into()),
        ..Default::default()
    };
    let d =
        api.delete_capacity_provider(&ctx, del.clone()).await.unwrap().capacity_provider.unwrap();
    assert_eq!(d.status, Some(CapacityProviderStatus::Active));
    assert_eq!(d.update_status, Some(CapacityProviderUpdateStatus::DeleteFailed));
    assert!(d.update_status_reason.unwrap().contains("associated with cluster: default"));
    let fargate = DeleteCapacityProviderRequest {
        capacity_provider: Some("FARGATE".into()),
        ..Default::default()
    };
    assert_eq!(
        api.delete_capacity_provider(&ctx, fargate).await.unwrap_err().code,
        "ClientException"
    );
    // Disassociated (it runs nothing), it deletes: INACTIVE, still describable by name.
    let put = PutClusterCapacityProvidersRequest {
        cluster: Some("default".into()),
        capacity_providers: Some(vec!["cp-a".into(), "cp-b".into()]),
        default_capacity_provider_strategy: Some(vec![]),
    };
    h.ecs.clusters().put_cluster_capacity_providers(&ctx, put).await.unwrap();
    let d = api.delete_capacity_provider(&ctx, del).await.unwrap().capacity_provider.unwrap();
    assert_eq!(d.status, Some(CapacityProviderStatus::Inactive));
    assert_eq!(d.update_status, Some(CapacityProviderUpdateStatus::DeleteComplete));
    let named = DescribeCapacityProvidersRequest {
        capacity_providers: Some(vec!["cp-empty".into()]),
        ..Default::default()
    };
    let p = api.describe_capacity_providers(&ctx, named).await.unwrap().capacity_providers.unwrap();
    assert_eq!(p[0].status, Some(CapacityProviderStatus::Inactive));

    // Update: managed scaling on, then termination protection.
    let upd = UpdateCapacityProviderRequest {
        name: Some("cp-b".into()),
        auto_scaling_group_provider: Some(AutoScalingGroupProviderUpdate {
            managed_scaling: Some(ManagedScaling {
                status: Some(ManagedScalingStatus::Enabled),
                target_capacity: Some(80),
                ..Default::default()
            }),
            managed_termination_protection: Some(ManagedTerminationProtection::Enabled),
            ..Default::default()
        }),
        ..Default::default()
    };
    let u = api.update_capacity_provider(&ctx, upd).await.unwrap().capacity_provider.unwrap();
    assert_eq!(u.update_status, Some(CapacityProviderUpdateStatus::UpdateComplete));
    let asg = u.auto_scaling_group_provider.unwrap();
    assert_eq!(asg.managed_scaling.unwrap().target_capacity, Some(80));
    assert_eq!(asg.managed_termination_protection, Some(ManagedTerminationProtection::Enabled));
}

/// A service's tasks per (capacity provider, instance ARN).
type Split = std::collections::BTreeMap<(String, String), i32>;

#[tokio::test]
async fn services_run_by_their_capacity_provider_strategy() {
    use berth_wire::ecs::{ClustersApi, ServicesApi, TasksApi};
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    let api = ecs.capacity_providers();
    for (name, asg) in [("cp-a", "asg-a"), ("cp-b", "asg-b")] {
        api.create_capacity_provider(&ctx, create(name, asg)).await.unwrap();
    }
    let c = CreateClusterRequest { cluster_name: Some("default".into()), ..Default::default() };
    ecs.clusters().create_cluster(&ctx, c).await.unwrap();
    let item = |n: &str, b: i32, w: i32| CapacityProviderStrategyItem {
        capacity_provider: Some(n.into()),
        base: Some(b),
        weight: Some(w),
    };
    let put = PutClusterCapacityProvidersRequest {
        cluster: Some("default".into()),
        capacity_providers: Some(vec!["cp-a".into(), "cp-b".into()]),
        default_capacity_provider_strategy: Some(vec![item("cp-b", 0, 1)]),
    };
    ecs.clusters().put_cluster_capacity_providers(&ctx, put).await.unwrap();
    let on_a = register_in(&h, Some("cp-a")).await;
    let on_b = register_in(&h, Some("cp-b")).await;
    let td = task_definition(ecs, &ctx, "web").await;
    let service = |name: &str, n: i32| CreateServiceRequest {
        service_name: Some(name.into()),
        task_definition: Some(td.clone()),
        desired_count: Some(n),
        ..Default::default()
    };

    // cp-a base 2 weight 1, cp-b weight 1: shown as given (base and weight filled), no
    // launch type, on the service and its deployment.
    let given = vec![
        item("cp-a", 2, 1),
        CapacityProviderStrategyItem {
            capacity_provider: Some("cp-b".into()),
            weight: Some(1),
            base: None,
        },
    ];
    let shown = vec![item("cp-a", 2, 1), item("cp-b", 0, 1)];
    let req = CreateServiceRequest { capacity_provider_strategy: Some(given), ..service("web", 6) };
    let s = ecs.services().create_service(&ctx, req).await.unwrap().service.unwrap();
    assert_eq!(s.launch_type, None);
    assert_eq!(s.capacity_provider_strategy.as_ref(), Some(&shown));
    let dep = &s.deployments.as_ref().unwrap()[0];
    assert_eq!((dep.launch_type, dep.capacity_provider_strategy.as_ref()), (None, Some(&shown)));

    // The controller starts 4 on cp-a's instance and 2 on cp-b's, each recording its provider.
    let split = async |name: &str| {
        let tasks = crate::ecs::testing::service_tasks(ecs, &ctx, name).await;
        let arns: Vec<String> = tasks.iter().map(|t| t.0.clone()).collect();
        let mut out = std::collections::BTreeMap::new();
        if arns.is_empty() {
            return out;
        }
        let req = DescribeTasksRequest { tasks: Some(arns), ..Default::default() };
        for t in ecs.tasks().describe_tasks(&ctx, req).await.unwrap().tasks.unwrap() {
            let key =
                (t.capacity_provider_name.unwrap_or_default(), t.container_instance_arn.unwrap());
            *out.entry(key).or_insert(0) += 1;
        }
        out
    };
    let passes = async |until: &dyn Fn(&Split) -> bool, name: &str| {
        for _ in 0..100 {
            tokio::task::yield_now().await;
            ecs.service_controller.service_pass().await.unwrap();
            if until(&split(name).await) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("never reached the split; now {:?}", split(name).await);
    };
    let want = std::collections::BTreeMap::from([
        (("cp-a".to_string(), on_a.clone()), 4),
        (("cp-b".to_string(), on_b.clone()), 2),
    ]);
    passes(&|got| *got == want, "web").await;

    // Without launchType or a strategy: the cluster's default; launchType EC2: none.
    let s = ecs.services().create_service(&ctx, service("dflt", 1)).await.unwrap().service.unwrap();
    assert_eq!(
        (s.launch_type, s.capacity_provider_strategy),
        (None, Some(vec![item("cp-b", 0, 1)]))
    );
    let req = CreateServiceRequest { launch_type: Some(LaunchType::Ec2), ..service("ec2", 0) };
    let s = ecs.services().create_service(&ctx, req).await.unwrap().service.unwrap();
    assert_eq!((s.launch_type, s.capacity_provider_strategy), (Some(LaunchType::Ec2), None));
    // DAEMON services take no strategy.
    let req = CreateServiceRequest {
        scheduling_strategy: Some(SchedulingStrategy::Daemon),
        desired_count: None,
        capacity_provider_strategy: Some(vec![item("cp-a", 0, 1)]),
        ..service("daemon", 0)
    };
    let e = ecs.services().create_service(&ctx, req).await.unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    assert!(e.message.contains("capacityProviderStrategy"), "{}", e.message);

    // UpdateService: a changed strategy needs forceNewDeployment (ECS's rule) ...
    let update =
        |strategy: Vec<CapacityProviderStrategyItem>, force: Option<bool>| UpdateServiceRequest {
            service: Some("web".into()),
            capacity_provider_strategy: Some(strategy),
            force_new_deployment: force,
            ..Default::default()
        };
    let e = ecs.services().update_service(&ctx, update(vec![item("cp-b", 0, 1)], None)).await;
    let e = e.unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    assert!(e.message.contains("you must force a new deployment"), "{}", e.message);
    // ... the same one does not ...
    ecs.services().update_service(&ctx, update(shown.clone(), None)).await.unwrap();
    // ... and with it, the new deployment carries the new strategy and moves every task.
    let s = ecs.services().update_service(&ctx, update(vec![item("cp-b", 0, 1)], Some(true))).await;
    let s = s.unwrap().service.unwrap();
    let deps = s.deployments.unwrap();
    assert_eq!(deps.len(), 2);
    assert_eq!(deps[0].capacity_provider_strategy, Some(vec![item("cp-b", 0, 1)]));
    assert_eq!(deps[1].capacity_provider_strategy, Some(shown.clone()));
    let all_b = std::collections::BTreeMap::from([(("cp-b".to_string(), on_b.clone()), 6)]);
    passes(&|got| *got == all_b, "web").await;
    // An empty list goes back to launch type EC2, again only with a new deployment.
    let s = ecs.services().update_service(&ctx, update(vec![], Some(true))).await.unwrap();
    let s = s.service.unwrap();
    assert_eq!((s.launch_type, s.capacity_provider_strategy), (Some(LaunchType::Ec2), None));
    let dep = &s.deployments.unwrap()[0];
    assert_eq!(
        (dep.launch_type, dep.capacity_provider_strategy.as_ref()),
        (Some(LaunchType::Ec2), None)
    );
}

#[tokio::test]
async fn a_service_on_fargate_needs_a_fargate_task_definition() {
    use berth_wire::ecs::{ClustersApi, ServicesApi};
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    let c = CreateClusterRequest {
        cluster_name: Some("default".into()),
        capacity_providers: Some(vec!["FARGATE".into()]),
        ..Default::default()
    };
    ecs.clusters().create_cluster(&ctx, c).await.unwrap();
    let _any = register_in(&h, None).await;
    let td = task_definition(ecs, &ctx, "web").await;
    let req = CreateServiceRequest {
        service_name: Some("far".into()),
        task_definition: Some(td),
        desired_count: Some(1),
        capacity_provider_strategy: Some(vec![CapacityProviderStrategyItem {
            capacity_provider: Some("FARGATE".into()),
            weight: Some(1),
            base: None,
        }]),
        ..Default::default()
    };
    // No silent fallback to the cluster's instances: refused as ECS refuses it.
    let e = ecs.services().create_service(&ctx, req).await.unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    assert_eq!(e.message, "Task definition does not support launch_type FARGATE.");
    let d = DescribeServicesRequest { services: Some(vec!["far".into()]), ..Default::default() };
    let out = ecs.services().describe_services(&ctx, d).await.unwrap();
    assert!(out.services.unwrap().is_empty());
}
