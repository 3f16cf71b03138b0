//! The Auto Scaling API and one controller pass over a real store (no agents: the pass only
//! writes instance records, which is all the instance controller reads).

use std::collections::HashMap;
use std::sync::Arc;

use berth_wire::autoscaling::{self as wire, GroupsApi, InstancesApi};
use berth_wire::ec2::{self as wire_ec2, LaunchTemplatesApi};

use super::*;
use crate::auth::Principal;

fn setup() -> (tempfile::TempDir, Arc<AutoScaling>, RequestContext) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let region = berth_model::regions::lookup("us-east-1").unwrap();
    let ec2 = Arc::new(Ec2::new(store.clone(), region, "123456789012"));
    let asg = Arc::new(AutoScaling::new(store, region, "123456789012", ec2));
    let ctx = RequestContext {
        principal: Arc::new(Principal {
            arn: "arn:aws:iam::123456789012:root".into(),
            account_id: "123456789012".into(),
            access_key_id: "AKID".into(),
            instance: None,
        }),
        request_id: "r".into(),
    };
    (dir, asg, ctx)
}

async fn template(asg: &AutoScaling, ctx: &RequestContext) -> String {
    asg.ec2.ensure_default().await.unwrap();
    asg.ec2
        .create_launch_template(
            ctx,
            wire_ec2::CreateLaunchTemplateRequest {
                launch_template_name: Some("ltemplate".into()),
                launch_template_data: Some(wire_ec2::RequestLaunchTemplateData {
                    image_id: Some(berth_instances::image::BERTH_IMAGE_ID.into()),
                    instance_type: wire_ec2::InstanceType::from_str("t3.small"),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .launch_template
        .unwrap()
        .launch_template_id
        .unwrap()
}

fn create(
    name: &str,
    min: i32,
    max: i32,
    desired: Option<i32>,
) -> wire::CreateAutoScalingGroupType {
    wire::CreateAutoScalingGroupType {
        auto_scaling_group_name: Some(name.into()),
        launch_template: Some(wire::LaunchTemplateSpecification {
            launch_template_name: Some("ltemplate".into()),
            version: Some("$Latest".into()),
            ..Default::default()
        }),
        min_size: Some(min),
        max_size: Some(max),
        desired_capacity: desired,
        availability_zones: Some(vec!["us-east-1a".into(), "us-east-1b".into()]),
        tags: Some(vec![wire::Tag {
            key: Some("team".into()),
            value: Some("a".into()),
            propagate_at_launch: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

async fn describe(asg: &AutoScaling, ctx: &RequestContext, name: &str) -> wire::AutoScalingGroup {
    asg.describe_auto_scaling_groups(
        ctx,
        wire::AutoScalingGroupNamesType {
            auto_scaling_group_names: Some(vec![name.into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .auto_scaling_groups
    .unwrap()
    .remove(0)
}

#[tokio::test]
async fn groups_are_validated_as_auto_scaling_does() {
    let (_dir, asg, ctx) = setup();
    template(&asg, &ctx).await;
    let cases: [(wire::CreateAutoScalingGroupType, &str, &str); 5] = [
        (create("g", 3, 2, None), "ValidationError", "Max bound, 2"),
        (create("g", 0, 2, Some(3)), "ValidationError", "Desired capacity:3"),
        (
            wire::CreateAutoScalingGroupType { launch_template: None, ..create("g", 0, 1, None) },
            "ValidationError",
            "LaunchTemplate",
        ),
        (
            wire::CreateAutoScalingGroupType {
                availability_zones: None,
                ..create("g", 0, 1, None)
            },
            "ValidationError",
            "Availability Zone or VPC Subnet",
        ),
        (
            wire::CreateAutoScalingGroupType {
                vpc_zone_identifier: Some("subnet-0000000000000000a".into()),
                ..create("g", 0, 1, None)
            },
            "ValidationError",
            "subnet-0000000000000000a",
        ),
    ];
    for (req, code, text) in cases {
        let e = asg.create_auto_scaling_group(&ctx, req).await.unwrap_err();
        assert_eq!(e.code, code, "{}", e.message);
        assert!(e.message.contains(text), "{}", e.message);
    }
    let mut bad_lt = create("g", 0, 1, None);
    bad_lt.launch_template.as_mut().unwrap().launch_template_name = Some("nope".into());
    let e = asg.create_auto_scaling_group(&ctx, bad_lt).await.unwrap_err();
    assert!(e.message.contains("nope"), "{}", e.message);
    asg.create_auto_scaling_group(&ctx, create("g", 0, 2, Some(1))).await.unwrap();
    let e = asg.create_auto_scaling_group(&ctx, create("g", 0, 2, Some(1))).await.unwrap_err();
    assert_eq!(e.code, "AlreadyExists");
    let e = asg
        .set_desired_capacity(
            &ctx,
            wire::SetDesiredCapacityType {
                auto_scaling_group_name: Some("g".into()),
                desired_capacity: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "ValidationError");
    assert!(e.message.contains("above max value 2"), "{}", e.message);
    // Pages of one.
    asg.create_auto_scaling_group(&ctx, create("h", 0, 2, Some(0))).await.unwrap();
    let page = asg
        .describe_auto_scaling_groups(
            &ctx,
            wire::AutoScalingGroupNamesType { max_records: Some(1), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(page.auto_scaling_groups.unwrap()[0].auto_scaling_group_name.as_deref(), Some("g"));
    let next = asg
        .describe_auto_scaling_groups(
            &ctx,
            wire::AutoScalingGroupNamesType {
                max_records: Some(1),
                next_token: page.next_token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(next.auto_scaling_groups.unwrap()[0].auto_scaling_group_name.as_deref(), Some("h"));
    assert_eq!(next.next_token, None);
}

#[tokio::test]
async fn the_controller_launches_and_terminates_members() {
    let (_dir, asg, ctx) = setup();
    let lt = template(&asg, &ctx).await;
    asg.create_auto_scaling_group(&ctx, create("g", 0, 3, Some(2))).await.unwrap();
    let mut failures = HashMap::new();
    controller::pass_for_tests(&asg, &mut failures).await.unwrap();
    controller::pass_for_tests(&asg, &mut failures).await.unwrap();
    let g = describe(&asg, &ctx, "g").await;
    let members = g.instances.unwrap();
    assert_eq!(members.len(), 2, "launched once, not twice");
    let zones: Vec<_> = members.iter().map(|m| m.availability_zone.clone().unwrap()).collect();
    assert!(zones.contains(&"us-east-1a".to_string()) && zones.contains(&"us-east-1b".to_string()));
    let recs = asg.members("g").await.unwrap();
    for r in &recs {
        assert!(r.tags.iter().any(|t| t.key == GROUP_TAG && t.value == "g"), "{:?}", r.tags);
        assert!(r.tags.iter().any(|t| t.key == "team" && t.value == "a"));
        assert_eq!(r.launch_template, Some((lt.clone(), "1".into())));
    }
    // Protect one; scale to 0: only the other goes.
    let protected = recs[0].id.clone();
    asg.set_instance_protection(
        &ctx,
        wire::SetInstanceProtectionQuery {
            instance_ids: Some(vec![protected.clone()]),
            auto_scaling_group_name: Some("g".into()),
            protected_from_scale_in: Some(true),
        },
    )
    .await
    .unwrap();
    let e = asg
        .delete_auto_scaling_group(
            &ctx,
            wire::DeleteAutoScalingGroupType {
                auto_scaling_group_name: Some("g".into()),
                force_delete: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceInUse");
    asg.set_desired_capacity(
        &ctx,
        wire::SetDesiredCapacityType {
            auto_scaling_group_name: Some("g".into()),
            desired_capacity: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    controller::pass_for_tests(&asg, &mut failures).await.unwrap();
    let live: Vec<_> = asg
        .members("g")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.state != InstanceState::ShuttingDown)
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, protected, "a protected member is never scaled in");
    // TerminateInstanceInAutoScalingGroup below min with a decrement is refused.
    asg.update_auto_scaling_group(
        &ctx,
        wire::UpdateAutoScalingGroupType {
            auto_scaling_group_name: Some("g".into()),
            min_size: Some(1),
            desired_capacity: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let e = asg
        .terminate_instance_in_auto_scaling_group(
            &ctx,
            wire::TerminateInstanceInAutoScalingGroupType {
                instance_id: Some(protected.clone()),
                should_decrement_desired_capacity: Some(true),
            },
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("min size"), "{}", e.message);
    // ForceDelete terminates every member and removes the group.
    asg.delete_auto_scaling_group(
        &ctx,
        wire::DeleteAutoScalingGroupType {
            auto_scaling_group_name: Some("g".into()),
            force_delete: Some(true),
        },
    )
    .await
    .unwrap();
    assert!(asg.members("g").await.unwrap().iter().all(|r| r.state == InstanceState::ShuttingDown));
    assert_eq!(asg.group("g").await.unwrap_err().code, "ValidationError");
}
