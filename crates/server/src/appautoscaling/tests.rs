//! The API and controller passes over a real store, a real ECS (services only: desired counts
//! need no instances), a moved clock and [`FakeMetrics`].

use std::sync::Arc;
use std::time::Duration;

use berth_wire::appautoscaling::{
    self as wire, ActivitiesApi, ScalableTargetsApi, ScalingPoliciesApi, ScheduledActionsApi,
    TagsApi,
};
use berth_wire::ecs::{self as ecs_wire, Api as _, ClustersApi, ServicesApi, TaskDefinitionsApi};

use super::metrics::FakeMetrics;
use super::*;
use crate::clock::ManualClock;

const REGION: &str = "us-east-1";
const RID: &str = "service/default/web";
const PERIOD: Duration = Duration::from_secs(60);

struct World {
    aas: AppAutoScaling,
    clock: Arc<ManualClock>,
    metrics: Arc<FakeMetrics>,
    ctx: RequestContext,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let clock = Arc::new(ManualClock::new(time::macros::datetime!(2026-12-02 10:00 UTC)));
    let region = berth_model::regions::lookup(REGION).unwrap();
    let ecs = Arc::new(Ecs::new(
        store.clone(),
        clock.clone(),
        berth_model::arn::Scope::new(REGION, "000000000000"),
        crate::ecs::core::Timing::default(),
    ));
    let metrics = Arc::new(FakeMetrics::default());
    let link = Arc::new(CloudWatchLink::default());
    let _ = link.metrics.set(metrics.clone());
    let _ = link.alarms.set(metrics.clone());
    let ctx = controller_ctx("000000000000");
    ecs.clusters().create_cluster(&ctx, ecs_wire::CreateClusterRequest::default()).await.unwrap();
    ecs.task_definitions()
        .register_task_definition(
            &ctx,
            ecs_wire::RegisterTaskDefinitionRequest {
                family: Some("web".into()),
                container_definitions: Some(vec![ecs_wire::ContainerDefinition {
                    name: Some("app".into()),
                    image: Some("berth-demo:latest".into()),
                    memory: Some(64),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ecs.services()
        .create_service(
            &ctx,
            ecs_wire::CreateServiceRequest {
                service_name: Some("web".into()),
                task_definition: Some("web".into()),
                desired_count: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let aas = AppAutoScaling::new(store, region, "000000000000", ecs, clock.clone(), link, PERIOD);
    World { aas, clock, metrics, ctx, _dir: dir }
}

impl World {
    fn id(&self) -> TargetId {
        TargetId {
            namespace: "ecs".into(),
            resource_id: RID.into(),
            dimension: ECS_DIMENSION.into(),
        }
    }

    async fn register(&self, min: i32, max: i32) -> Result<String, AwsError> {
        self.aas
            .register_scalable_target(
                &self.ctx,
                wire::RegisterScalableTargetRequest {
                    service_namespace: Some(wire::ServiceNamespace::Ecs),
                    resource_id: Some(RID.into()),
                    scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
                    min_capacity: Some(min),
                    max_capacity: Some(max),
                    ..Default::default()
                },
            )
            .await
            .map(|r| r.scalable_target_arn.unwrap())
    }

    async fn desired(&self) -> u32 {
        self.aas.service_desired(&self.id()).await.unwrap().unwrap()
    }

    /// A datapoint of the service's CPU in each of the last `n` periods.
    fn cpu(&self, n: usize, value: f64) {
        let now = self.aas.now_ms();
        for k in 0..n as i64 {
            self.metrics.put(
                REGION,
                "AWS/ECS",
                "CPUUtilization",
                &[("ClusterName", "default"), ("ServiceName", "web")],
                now - k * PERIOD.as_millis() as i64 - 1_000,
                value,
            );
        }
    }

    async fn activities(&self) -> Vec<wire::ScalingActivity> {
        self.aas
            .describe_scaling_activities(
                &self.ctx,
                wire::DescribeScalingActivitiesRequest {
                    service_namespace: Some(wire::ServiceNamespace::Ecs),
                    resource_id: Some(RID.into()),
                    scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .scaling_activities
            .unwrap()
    }

    async fn put_tracking(
        &self,
        predefined: wire::MetricType,
    ) -> Result<wire::PutScalingPolicyResponse, AwsError> {
        self.aas
            .put_scaling_policy(
                &self.ctx,
                wire::PutScalingPolicyRequest {
                    policy_name: Some("cpu50".into()),
                    service_namespace: Some(wire::ServiceNamespace::Ecs),
                    resource_id: Some(RID.into()),
                    scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
                    policy_type: Some(wire::PolicyType::TargetTrackingScaling),
                    target_tracking_scaling_policy_configuration: Some(
                        wire::TargetTrackingScalingPolicyConfiguration {
                            target_value: Some(50.0),
                            predefined_metric_specification: Some(
                                wire::PredefinedMetricSpecification {
                                    predefined_metric_type: Some(predefined),
                                    ..Default::default()
                                },
                            ),
                            scale_out_cooldown: Some(60),
                            scale_in_cooldown: Some(120),
                            ..Default::default()
                        },
                    ),
                    ..Default::default()
                },
            )
            .await
    }
}

#[tokio::test]
async fn the_api_validates_targets_and_policies_as_aws_does() {
    let w = world().await;
    // A service that does not exist.
    let e = w
        .aas
        .register_scalable_target(
            &w.ctx,
            wire::RegisterScalableTargetRequest {
                service_namespace: Some(wire::ServiceNamespace::Ecs),
                resource_id: Some("service/default/nope".into()),
                scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
                min_capacity: Some(1),
                max_capacity: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        ("ValidationException", "ECS service doesn't exist: service/default/nope")
    );
    let e = w.register(5, 2).await.unwrap_err();
    assert!(e.message.contains("cannot be greater than maximum"), "{}", e.message);
    // A policy before the target.
    let e = w.put_tracking(wire::MetricType::ECSServiceAverageCPUUtilization).await.unwrap_err();
    assert_eq!(e.code, "ObjectNotFoundException");
    let arn = w.register(1, 4).await.unwrap();
    assert!(
        arn.starts_with("arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/")
    );
    // Registering again updates it (same ARN).
    assert_eq!(w.register(1, 5).await.unwrap(), arn);
    let e = w.put_tracking(wire::MetricType::ALBRequestCountPerTarget).await.unwrap_err();
    assert!(e.message.contains("ResourceLabel is not valid"), "{}", e.message);
    let e = w.put_tracking(wire::MetricType::DynamoDBReadCapacityUtilization).await.unwrap_err();
    assert!(e.message.contains("not valid for service namespace ecs"), "{}", e.message);
    let out = w.put_tracking(wire::MetricType::ECSServiceAverageCPUUtilization).await.unwrap();
    let names: Vec<String> =
        out.alarms.unwrap().into_iter().map(|a| a.alarm_name.unwrap()).collect();
    assert_eq!(names.len(), 2);
    assert!(names[0].starts_with("TargetTracking-service/default/web-AlarmHigh-"), "{names:?}");
    assert!(names[1].starts_with("TargetTracking-service/default/web-AlarmLow-"), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(w.metrics.alarm_names(REGION), sorted, "the alarms exist in CloudWatch");
    let high = w
        .metrics
        .alarms
        .lock()
        .unwrap()
        .get(&(REGION.to_string(), names[0].clone()))
        .cloned()
        .unwrap();
    assert_eq!(
        (high.threshold, high.evaluation_periods, high.metric.as_str()),
        (50.0, 3, "CPUUtilization")
    );
    assert_eq!(high.alarm_actions, vec![out.policy_arn.clone().unwrap()]);
    // An update keeps the alarm names.
    let again = w.put_tracking(wire::MetricType::ECSServiceAverageMemoryUtilization).await.unwrap();
    assert_eq!(again.policy_arn, out.policy_arn);
    assert_eq!(
        again.alarms.unwrap().into_iter().map(|a| a.alarm_name.unwrap()).collect::<Vec<_>>(),
        names
    );
    // Step scaling: steps must not leave gaps.
    let step = |steps: Vec<wire::StepAdjustment>| wire::PutScalingPolicyRequest {
        policy_name: Some("steps".into()),
        service_namespace: Some(wire::ServiceNamespace::Ecs),
        resource_id: Some(RID.into()),
        scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
        policy_type: Some(wire::PolicyType::StepScaling),
        step_scaling_policy_configuration: Some(wire::StepScalingPolicyConfiguration {
            adjustment_type: Some(wire::AdjustmentType::ChangeInCapacity),
            step_adjustments: Some(steps),
            cooldown: Some(60),
            ..Default::default()
        }),
        ..Default::default()
    };
    let adj = |lo: Option<f64>, hi: Option<f64>, n| wire::StepAdjustment {
        metric_interval_lower_bound: lo,
        metric_interval_upper_bound: hi,
        scaling_adjustment: Some(n),
    };
    let e = w
        .aas
        .put_scaling_policy(
            &w.ctx,
            step(vec![adj(Some(0.0), Some(10.0), 1), adj(Some(20.0), None, 2)]),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("gap"), "{}", e.message);
    w.aas
        .put_scaling_policy(
            &w.ctx,
            step(vec![adj(Some(0.0), Some(10.0), 1), adj(Some(10.0), None, 2)]),
        )
        .await
        .unwrap();
    let policies = w
        .aas
        .describe_scaling_policies(
            &w.ctx,
            wire::DescribeScalingPoliciesRequest {
                service_namespace: Some(wire::ServiceNamespace::Ecs),
                max_results: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(policies.scaling_policies.unwrap().len(), 1);
    assert!(policies.next_token.is_some(), "two policies, pages of one");
    // Tags on the target.
    w.aas
        .tag_resource(
            &w.ctx,
            wire::TagResourceRequest {
                resource_arn: Some(arn.clone()),
                tags: Some([("team".to_string(), "a".to_string())].into()),
            },
        )
        .await
        .unwrap();
    let tags = w
        .aas
        .list_tags_for_resource(
            &w.ctx,
            wire::ListTagsForResourceRequest { resource_arn: Some(arn.clone()) },
        )
        .await
        .unwrap();
    assert_eq!(tags.tags.unwrap().get("team").map(String::as_str), Some("a"));
    // Deregistering removes the policies and their alarms.
    w.aas
        .deregister_scalable_target(
            &w.ctx,
            wire::DeregisterScalableTargetRequest {
                service_namespace: Some(wire::ServiceNamespace::Ecs),
                resource_id: Some(RID.into()),
                scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
            },
        )
        .await
        .unwrap();
    assert!(w.metrics.alarm_names(REGION).is_empty(), "alarms deleted with the target");
    assert!(w.aas.policies_of(&w.id()).await.unwrap().is_empty());
    let e = w.put_tracking(wire::MetricType::ECSServiceAverageCPUUtilization).await.unwrap_err();
    assert_eq!(e.code, "ObjectNotFoundException");
    assert!(e.message.contains(
        "No scalable target registered for service namespace: ecs, resource ID: service/default/web"
    ));
}

#[tokio::test]
async fn target_tracking_scales_out_then_in_after_its_cooldowns() {
    let w = world().await;
    w.register(1, 4).await.unwrap();
    w.put_tracking(wire::MetricType::ECSServiceAverageCPUUtilization).await.unwrap();
    // Below three periods of data nothing happens.
    w.cpu(2, 100.0);
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.desired().await, 1);
    // Three periods at 100% against a 50% target: ceil(1 x 100 / 50) = 2.
    w.cpu(3, 100.0);
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.desired().await, 2);
    let acts = w.activities().await;
    assert_eq!(acts.len(), 1);
    let cause = acts[0].cause.clone().unwrap();
    assert!(
        cause.starts_with("monitor alarm TargetTracking-service/default/web-AlarmHigh-")
            && cause.ends_with(" in state ALARM triggered policy cpu50"),
        "{cause}"
    );
    assert_eq!(acts[0].description.as_deref(), Some("Setting desired count to 2."));
    assert_eq!(acts[0].status_code, Some(wire::ScalingActivityStatusCode::Successful));
    // Within the scale-out cooldown (60 s) the same alarm changes nothing.
    w.clock.advance(Duration::from_secs(30));
    w.cpu(3, 100.0);
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.desired().await, 2, "scale-out cooldown");
    // After it, 4 (capped at max 4 from ceil(2 x 100 / 50)).
    w.clock.advance(Duration::from_secs(60));
    w.cpu(3, 100.0);
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.desired().await, 4);
    // The load stops: 15 periods at 10% -> ceil(4 x 10 / 50) = 1, after the cooldowns.
    w.clock.advance(Duration::from_secs(20 * 60));
    w.cpu(15, 10.0);
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.desired().await, 1);
    let acts = w.activities().await;
    assert!(acts[0].cause.as_deref().unwrap().contains("-AlarmLow-"), "{:?}", acts[0].cause);
    assert_eq!(acts.len(), 3);
}

#[test]
fn alb_resource_labels_name_the_target_group_dimension() {
    let table = [
        (
            Some("app/web/50dc6c495c0c9188/targetgroup/blue/73e2d6bc24d8a067"),
            Some("targetgroup/blue/73e2d6bc24d8a067"),
        ),
        (Some("app/web/1/targetgroup/blue"), None),
        (Some("net/web/1/targetgroup/blue/2"), None),
        (Some("app/web/1/target-group/blue/2"), None),
        (Some("app//1/targetgroup/blue/2"), None),
        (Some("targetgroup/blue/2"), None),
        (None, None),
    ];
    for (label, want) in table {
        assert_eq!(alb_target_group(label).ok().as_deref(), want, "{label:?}");
    }
}

/// The load balancer's published request counts (the publisher's own samples) drive an
/// `ALBRequestCountPerTarget` policy: the ResourceLabel names the very dimension published.
#[tokio::test]
async fn alb_request_count_per_target_tracking_scales_on_the_published_counts() {
    let w = world().await;
    w.register(1, 6).await.unwrap();
    let lb =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/50dc6c495c0c9188";
    let tg =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/blue/73e2d6bc24d8a067";
    let out = w
        .aas
        .put_scaling_policy(
            &w.ctx,
            wire::PutScalingPolicyRequest {
                policy_name: Some("rps".into()),
                service_namespace: Some(wire::ServiceNamespace::Ecs),
                resource_id: Some(RID.into()),
                scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
                policy_type: Some(wire::PolicyType::TargetTrackingScaling),
                target_tracking_scaling_policy_configuration: Some(
                    wire::TargetTrackingScalingPolicyConfiguration {
                        target_value: Some(100.0),
                        predefined_metric_specification: Some(
                            wire::PredefinedMetricSpecification {
                                predefined_metric_type: Some(
                                    wire::MetricType::ALBRequestCountPerTarget,
                                ),
                                resource_label: Some(
                                    "app/web/50dc6c495c0c9188/targetgroup/blue/73e2d6bc24d8a067"
                                        .into(),
                                ),
                            },
                        ),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.alarms.unwrap().len(), 2);
    // Three minutes at 300 requests a minute on the one healthy target, as the publisher
    // turns the data plane's counter into datapoints.
    let owners: std::collections::BTreeMap<String, Vec<String>> =
        [(tg.to_string(), vec![lb.to_string()])].into();
    let mut publisher = crate::elbv2::metrics::RequestMetrics::default();
    let now = w.aas.now_ms();
    let period = PERIOD.as_millis() as i64;
    let mut total = 0;
    publisher.samples(
        &[berth_lb::GroupRequests {
            target_group_arn: tg.into(),
            requests: 0,
            healthy: 1,
            registered: 1,
        }],
        &owners,
        now - 4 * period,
    );
    for k in (0..3).rev() {
        total += 300;
        let counts = [berth_lb::GroupRequests {
            target_group_arn: tg.into(),
            requests: total,
            healthy: 1,
            registered: 1,
        }];
        for s in publisher.samples(&counts, &owners, now - k * period - 1_000) {
            let dims: Vec<(&str, &str)> =
                s.key.dimensions.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            w.metrics.put(REGION, &s.key.namespace, &s.key.name, &dims, s.at_ms, s.agg.sum);
        }
    }
    controller::pass(&w.aas).await.unwrap();
    // ceil(1 x 300 / 100) = 3.
    assert_eq!(w.desired().await, 3);
    let acts = w.activities().await;
    assert!(
        acts[0].cause.as_deref().unwrap().contains("triggered policy rps"),
        "{:?}",
        acts[0].cause
    );
}

#[tokio::test]
async fn bounds_and_scheduled_actions_move_the_desired_count() {
    let w = world().await;
    w.register(2, 5).await.unwrap();
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.desired().await, 2, "brought up to the minimum");
    assert_eq!(w.activities().await[0].cause.as_deref(), Some("minimum capacity was set to 2"));
    let put =
        |name: &str, schedule: &str, tz: Option<&str>, min, max| wire::PutScheduledActionRequest {
            service_namespace: Some(wire::ServiceNamespace::Ecs),
            scheduled_action_name: Some(name.into()),
            resource_id: Some(RID.into()),
            scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
            schedule: Some(schedule.into()),
            timezone: tz.map(str::to_string),
            scalable_target_action: Some(wire::ScalableTargetAction {
                min_capacity: min,
                max_capacity: max,
            }),
            ..Default::default()
        };
    for (bad, why) in [
        (put("x", "rate(1 minutes)", None, Some(1), None), "rate"),
        (put("x", "cron(0 10 * * * *)", None, Some(1), None), "'?'"),
        (put("x", "at(2026-12-02T10:01:00)", Some("Mars/Olympus"), Some(1), None), "timezone"),
        (put("x", "at(2026-12-02T10:01:00)", None, Some(4), Some(3)), "MinCapacity (4)"),
    ] {
        let e = w.aas.put_scheduled_action(&w.ctx, bad).await.unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert!(e.message.contains(why), "{why}: {}", e.message);
    }
    // 10:01 UTC is 11:01 in Paris: the action fires a minute from now.
    w.aas
        .put_scheduled_action(
            &w.ctx,
            put("up", "at(2026-12-02T11:01:00)", Some("Europe/Paris"), Some(4), Some(6)),
        )
        .await
        .unwrap();
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.desired().await, 2, "not yet");
    w.clock.advance(Duration::from_secs(61));
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.desired().await, 4);
    let acts = w.activities().await;
    // Both activities start at the same instant (the paused clock): their order is not
    // defined, their content is.
    let newest: std::collections::BTreeSet<_> =
        acts[..2].iter().map(|a| a.description.as_deref().unwrap_or_default()).collect();
    assert_eq!(
        newest,
        ["Setting desired count to 4.", "Setting min capacity to 4 and max capacity to 6"].into()
    );
    let bounds = acts[..2]
        .iter()
        .find(|a| a.description.as_deref().is_some_and(|d| d.starts_with("Setting min")))
        .unwrap();
    assert_eq!(bounds.cause.as_deref(), Some("scheduled action name up was triggered"));
    // It fired once: nothing more on later passes.
    w.clock.advance(Duration::from_secs(120));
    controller::pass(&w.aas).await.unwrap();
    assert_eq!(w.activities().await.len(), 3);
    let listed = w
        .aas
        .describe_scheduled_actions(
            &w.ctx,
            wire::DescribeScheduledActionsRequest {
                service_namespace: Some(wire::ServiceNamespace::Ecs),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .scheduled_actions
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].timezone.as_deref(), Some("Europe/Paris"));
}
