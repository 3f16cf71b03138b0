//! FARGATE_SPOT at the ECS level: interruptions (injected and at random) and the
//! Spot-to-Fargate fallback of tagged clusters, on the helpers of the parent module.

use super::*;
/// A FARGATE_SPOT interruption stops the oldest RUNNING Spot task with AWS's stop code and
/// reason; FARGATE tasks are never picked; a service replaces the interrupted task without
/// counting it as a failure.
#[tokio::test]
async fn a_spot_interruption_stops_a_spot_task_and_its_service_replaces_it() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    default_cluster(&h).await;
    let sn = subnet(&*h.store, "subnet-0d0d0d0d0d0d0d0d0", "10.9.0.0/24", "us-east-1a").await;
    let pool = register(&h, POOL_CLUSTER, 8192, 16384).await;
    let td = fargate_td(&h, "web").await;
    let strategy = |p: &str| CapacityProviderStrategyItem {
        capacity_provider: Some(p.into()),
        base: None,
        weight: Some(1),
    };
    let put = PutClusterCapacityProvidersRequest {
        cluster: Some("default".into()),
        capacity_providers: Some(vec!["FARGATE".into(), "FARGATE_SPOT".into()]),
        default_capacity_provider_strategy: Some(vec![]),
    };
    ecs.clusters().put_cluster_capacity_providers(&ctx, put).await.unwrap();
    let on = RunTaskRequest {
        capacity_provider_strategy: Some(vec![strategy("FARGATE")]),
        launch_type: None,
        ..run_fargate(&td, &sn, 1)
    };
    let on_demand = ecs.tasks().run_task(&ctx, on).await.unwrap().tasks.unwrap().remove(0);
    let req = CreateServiceRequest {
        service_name: Some("spot".into()),
        task_definition: Some(td.clone()),
        desired_count: Some(2),
        capacity_provider_strategy: Some(vec![strategy("FARGATE_SPOT")]),
        network_configuration: Some(net(&[&sn], &[])),
        ..Default::default()
    };
    ecs.services().create_service(&ctx, req).await.unwrap();
    let service_tasks = async || {
        let list = ListTasksRequest {
            service_name: Some("spot".into()),
            desired_status: Some(DesiredStatus::Running),
            ..Default::default()
        };
        ecs.tasks().list_tasks(&ctx, list).await.unwrap().task_arns.unwrap()
    };
    super::super::testing::passes_until(&h, "two spot tasks", async || {
        service_tasks().await.len() == 2
    })
    .await;
    // The pool agent reports every task RUNNING (the on-demand one first: oldest).
    let mut seq = 0;
    let mut arns = vec![on_demand.task_arn.clone().unwrap()];
    arns.extend(service_tasks().await);
    for arn in &arns {
        seq += 1;
        ecs.agent_channel.agent_report(&ctx, report(arn, &pool, "RUNNING", seq)).await.unwrap();
    }
    let all = ecs.interrupt_spot(&SpotInterrupt { count: Some(1), ..Default::default() }).await;
    let hit = all.unwrap();
    assert_eq!(hit.len(), 1);
    let t = &hit[0];
    assert_eq!(t.capacity_provider_name.as_deref(), Some("FARGATE_SPOT"));
    assert_eq!(t.stop_code, Some(TaskStopCode::SpotInterruption));
    assert_eq!(t.stopped_reason.as_deref(), Some("Your Spot Task was interrupted."));
    assert_eq!(t.desired_status.as_deref(), Some("STOPPED"));
    // Naming an on-demand task is refused; naming the interrupted one again does nothing.
    let named = |arn: &str| SpotInterrupt { task: Some(arn.into()), ..Default::default() };
    let e = ecs.interrupt_spot(&named(arns[0].as_str())).await.unwrap_err();
    assert!(e.message.contains("FARGATE_SPOT"), "{}", e.message);
    let again = ecs.interrupt_spot(&named(t.task_arn.as_deref().unwrap())).await.unwrap();
    assert!(again.is_empty());
    // The agent stops it; the service starts a replacement and stays healthy.
    seq += 1;
    let stopped = report(t.task_arn.as_deref().unwrap(), &pool, "STOPPED", seq);
    ecs.agent_channel.agent_report(&ctx, stopped).await.unwrap();
    let gone = t.task_arn.clone().unwrap();
    super::super::testing::passes_until(&h, "a replacement", async || {
        let now = service_tasks().await;
        now.len() == 2 && !now.contains(&gone)
    })
    .await;
    let d = DescribeServicesRequest { services: Some(vec!["spot".into()]), ..Default::default() };
    let s = ecs.services().describe_services(&ctx, d).await.unwrap().services.unwrap().remove(0);
    let dep = &s.deployments.unwrap()[0];
    assert_eq!(dep.failed_tasks, Some(0), "an interruption is not a task failure");
}

/// Spot capacity taken away: a plain cluster's Spot share waits in PROVISIONING; a cluster
/// tagged `berth:fargate-spot-fallback=enabled` places it on FARGATE (tagged, with an event),
/// and moves it back to FARGATE_SPOT, one task at a time, once Spot capacity returns.
#[tokio::test]
async fn without_spot_capacity_a_tagged_cluster_falls_back_to_fargate_and_returns() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    default_cluster(&h).await;
    let sn = subnet(&*h.store, "subnet-0e0e0e0e0e0e0e0e0", "10.10.0.0/24", "us-east-1a").await;
    let pool = register(&h, POOL_CLUSTER, 8192, 16384).await;
    let td = fargate_td(&h, "web").await;
    let spot_only = vec![CapacityProviderStrategyItem {
        capacity_provider: Some("FARGATE_SPOT".into()),
        base: None,
        weight: Some(1),
    }];
    for cluster in ["plain", "tagged"] {
        let tags = (cluster == "tagged").then(|| {
            vec![Tag { key: Some(fargate::FALLBACK_TAG.into()), value: Some("enabled".into()) }]
        });
        let c = CreateClusterRequest {
            cluster_name: Some(cluster.into()),
            capacity_providers: Some(vec!["FARGATE".into(), "FARGATE_SPOT".into()]),
            tags,
            ..Default::default()
        };
        ecs.clusters().create_cluster(&ctx, c).await.unwrap();
        let req = CreateServiceRequest {
            cluster: Some(cluster.into()),
            service_name: Some("web".into()),
            task_definition: Some(td.clone()),
            desired_count: Some(2),
            capacity_provider_strategy: Some(spot_only.clone()),
            network_configuration: Some(net(&[&sn], &[])),
            ..Default::default()
        };
        if cluster == "tagged" {
            fargate::set_spot_available(&*h.store, false, 0.0).await.unwrap();
        }
        ecs.services().create_service(&ctx, req).await.unwrap();
    }
    assert!(!fargate::spot_available(&*h.store).await.unwrap());
    let tasks = async |cluster: &str| {
        let list = ListTasksRequest {
            cluster: Some(cluster.into()),
            service_name: Some("web".into()),
            desired_status: Some(DesiredStatus::Running),
            ..Default::default()
        };
        let arns = ecs.tasks().list_tasks(&ctx, list).await.unwrap().task_arns.unwrap();
        if arns.is_empty() {
            return vec![];
        }
        let d = DescribeTasksRequest {
            cluster: Some(cluster.into()),
            tasks: Some(arns),
            include: Some(vec![TaskField::Tags]),
        };
        ecs.tasks().describe_tasks(&ctx, d).await.unwrap().tasks.unwrap()
    };
    super::super::testing::passes_until(&h, "two tasks each", async || {
        tasks("plain").await.len() == 2 && tasks("tagged").await.len() == 2
    })
    .await;
    // The plain cluster placed its first service before Spot went away: those run on Spot.
    // Its new tasks would wait; the tagged cluster's run on FARGATE, tagged, with an event.
    let tagged = tasks("tagged").await;
    for t in &tagged {
        assert_eq!(t.capacity_provider_name.as_deref(), Some("FARGATE"), "{t:?}");
        assert!(fargate::is_fallback_task(t), "{t:?}");
    }
    let service = async |cluster: &str| {
        let d = DescribeServicesRequest {
            cluster: Some(cluster.into()),
            services: Some(vec!["web".into()]),
            ..Default::default()
        };
        ecs.services().describe_services(&ctx, d).await.unwrap().services.unwrap().remove(0)
    };
    let events = |s: &Service| -> Vec<String> {
        s.events.iter().flatten().filter_map(|e| e.message.clone()).collect()
    };
    let ev = events(&service("tagged").await);
    assert!(
        ev.iter().any(|m| m.contains("FARGATE_SPOT has no capacity") && m.contains("on FARGATE")),
        "{ev:?}"
    );
    // A new Spot task of the plain cluster waits in PROVISIONING (no fallback there).
    let run = RunTaskRequest {
        cluster: Some("plain".into()),
        capacity_provider_strategy: Some(spot_only.clone()),
        launch_type: None,
        ..run_fargate(&td, &sn, 1)
    };
    let waiting = ecs.tasks().run_task(&ctx, run).await.unwrap().tasks.unwrap().remove(0);
    assert_eq!(waiting.last_status.as_deref(), Some("PROVISIONING"));
    assert_eq!(waiting.capacity_provider_name.as_deref(), Some("FARGATE_SPOT"));
    // The pool runs the fallback tasks.
    let mut seq = 0;
    for t in &tagged {
        seq += 1;
        let r = report(t.task_arn.as_deref().unwrap(), &pool, "RUNNING", seq);
        ecs.agent_channel.agent_report(&ctx, r).await.unwrap();
    }
    // Spot returns: the waiting task is placed; the fallback tasks move back one at a time.
    fargate::set_spot_available(&*h.store, true, 1.0).await.unwrap();
    let waiting_arn = waiting.task_arn.clone().unwrap();
    super::super::testing::passes_until(&h, "the waiting Spot task placed", async || {
        describe(&h, "plain", &waiting_arn).await.last_status.as_deref() == Some("PENDING")
    })
    .await;
    let first = tagged[0].task_arn.clone().unwrap();
    let second = tagged[1].task_arn.clone().unwrap();
    let mut moved = BTreeSet::new();
    for _ in 0..2 {
        super::super::testing::passes_until(&h, "a fallback task is stopped", async || {
            let now: Vec<String> =
                tasks("tagged").await.iter().filter_map(|t| t.task_arn.clone()).collect();
            [&first, &second].iter().any(|a| !now.contains(a) && !moved.contains(*a))
        })
        .await;
        let now: Vec<Task> = tasks("tagged").await;
        let gone: Vec<String> = [&first, &second]
            .iter()
            .filter(|a| !now.iter().any(|t| t.task_arn.as_ref() == Some(**a)))
            .filter(|a| !moved.contains(**a))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(gone.len(), 1, "one at a time");
        moved.insert(gone[0].clone());
        seq += 1;
        let r = report(&gone[0], &pool, "STOPPED", seq);
        ecs.agent_channel.agent_report(&ctx, r).await.unwrap();
        super::super::testing::passes_until(&h, "a Spot replacement", async || {
            let now = tasks("tagged").await;
            now.len() == 2
                && now.iter().any(|t| {
                    t.capacity_provider_name.as_deref() == Some("FARGATE_SPOT")
                        && !moved.contains(t.task_arn.as_ref().unwrap())
                })
        })
        .await;
        for t in tasks("tagged").await {
            if t.last_status.as_deref() != Some("RUNNING") {
                seq += 1;
                let r = report(t.task_arn.as_deref().unwrap(), &pool, "RUNNING", seq);
                ecs.agent_channel.agent_report(&ctx, r).await.unwrap();
            }
        }
    }
    let now = tasks("tagged").await;
    assert!(
        now.iter().all(|t| t.capacity_provider_name.as_deref() == Some("FARGATE_SPOT")),
        "{now:?}"
    );
    let ev = events(&service("tagged").await);
    assert!(ev.iter().any(|m| m.contains("back to FARGATE_SPOT")), "{ev:?}");
}

/// The random interruption rate is a Poisson process per task-hour.
#[test]
fn interruption_chance_follows_the_rate() {
    use super::super::tasks::spot::interruption_chance;
    let table = [
        (0.0, 10.0, 0.0),
        (-1.0, 10.0, 0.0),
        (f64::NAN, 10.0, 0.0),
        (1.0, 0.0, 0.0),
        (1.0, 3600.0, 1.0 - (-1.0f64).exp()),
        (3600.0, 1.0, 1.0 - (-1.0f64).exp()),
        (6.0, 10.0, 1.0 - (-6.0 * 10.0 / 3600.0f64).exp()),
    ];
    for (rate, secs, want) in table {
        let got = interruption_chance(rate, secs);
        assert!((got - want).abs() < 1e-12, "rate {rate} over {secs} s: {got} != {want}");
    }
    assert!(interruption_chance(1e9, 10.0) <= 1.0);
}

/// A random pass interrupts only RUNNING Spot tasks whose draw falls under the chance.
#[tokio::test]
async fn a_random_spot_pass_interrupts_running_spot_tasks_by_draw() {
    let h = Harness::new();
    let ctx = h.ctx();
    let ecs = &h.ecs;
    default_cluster(&h).await;
    let sn = subnet(&*h.store, "subnet-0e0e0e0e0e0e0e0e0", "10.9.1.0/24", "us-east-1a").await;
    let pool = register(&h, POOL_CLUSTER, 8192, 16384).await;
    let td = fargate_td(&h, "web").await;
    let put = PutClusterCapacityProvidersRequest {
        cluster: Some("default".into()),
        capacity_providers: Some(vec!["FARGATE".into(), "FARGATE_SPOT".into()]),
        default_capacity_provider_strategy: Some(vec![]),
    };
    ecs.clusters().put_cluster_capacity_providers(&ctx, put).await.unwrap();
    let run = |p: &str| RunTaskRequest {
        capacity_provider_strategy: Some(vec![CapacityProviderStrategyItem {
            capacity_provider: Some(p.into()),
            base: None,
            weight: Some(1),
        }]),
        launch_type: None,
        ..run_fargate(&td, &sn, 1)
    };
    let mut arns = Vec::new();
    for p in ["FARGATE", "FARGATE_SPOT", "FARGATE_SPOT"] {
        let t = ecs.tasks().run_task(&ctx, run(p)).await.unwrap().tasks.unwrap().remove(0);
        arns.push(t.task_arn.unwrap());
    }
    // Only the first two are RUNNING: the third Spot task is still PENDING.
    for (seq, arn) in arns.iter().take(2).enumerate() {
        let r = report(arn, &pool, "RUNNING", seq as u64 + 1);
        ecs.agent_channel.agent_report(&ctx, r).await.unwrap();
    }
    let none = ecs.tasks.random_spot_pass(0.5, || 0.5).await.unwrap();
    assert!(none.is_empty(), "a draw at the chance is not under it");
    let zero = ecs.tasks.random_spot_pass(0.0, || 0.0).await.unwrap();
    assert!(zero.is_empty(), "a zero chance interrupts nothing");
    let hit = ecs.tasks.random_spot_pass(0.5, || 0.0).await.unwrap();
    let hit: Vec<_> = hit.iter().map(|t| t.task_arn.clone().unwrap()).collect();
    assert_eq!(hit, vec![arns[1].clone()], "only the RUNNING Spot task");
    let again = ecs.tasks.random_spot_pass(1.0, || 0.0).await.unwrap();
    assert!(again.is_empty(), "an interrupted task is not interrupted twice");
}
