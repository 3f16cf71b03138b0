use super::*;
use crate::ecs::testing::{Harness, register_instance, task_definition};

const ROOT: &str = "arn:aws:iam::000000000000:root";
const USER: &str = "arn:aws:iam::000000000000:user/dev/alice";

#[test]
fn values_per_setting() {
    use SettingName::*;
    let cases: &[(SettingName, &str, bool)] = &[
        (TaskLongArnFormat, "enabled", true),
        (TaskLongArnFormat, "disabled", true),
        (TaskLongArnFormat, "on", false),
        (ServiceLongArnFormat, "disabled", true),
        (ContainerInstanceLongArnFormat, "enhanced", false),
        (ContainerInsights, "enhanced", true),
        (ContainerInsights, "enabled", true),
        (ContainerInsights, "off", false),
        (TagResourceAuthorization, "on", true),
        (TagResourceAuthorization, "enabled", false),
        (FargateTaskRetirementWaitPeriod, "14", true),
        (FargateTaskRetirementWaitPeriod, "3", false),
        (DefaultLogDriverMode, "non-blocking", true),
        (DefaultLogDriverMode, "enabled", false),
        (AwsvpcTrunking, "enabled", true),
        (FargateFIPSMode, "disabled", true),
        (FargateEventWindows, "enabled", true),
        (GuardDutyActivate, "on", false),
    ];
    for (name, value, ok) in cases {
        let got = validate_value(*name, value);
        assert_eq!(got.is_ok(), *ok, "{} = {value}: {got:?}", name.as_str());
        if let Err(e) = got {
            assert_eq!(e.code, "InvalidParameterException");
        }
    }
    // Every setting's default is one of its values.
    for name in all_names() {
        let s = spec(name);
        assert!(s.values.contains(&s.default), "{}", name.as_str());
    }
    assert_eq!(all_names().count(), SettingName::VALUES.len());
}

#[test]
fn principals() {
    let cases: &[(&str, Option<PrincipalKind>)] = &[
        (ROOT, Some(PrincipalKind::Root)),
        (USER, Some(PrincipalKind::UserOrRole)),
        ("arn:aws:iam::000000000000:role/ecsAdmin", Some(PrincipalKind::UserOrRole)),
        ("arn:aws:iam::111111111111:root", None),
        ("arn:aws:sts::000000000000:assumed-role/r/session", None),
        ("arn:aws:iam::000000000000:group/devs", None),
        ("arn:aws:iam::000000000000:user/", None),
        ("arn:aws-cn:iam::000000000000:root", None),
        ("alice", None),
    ];
    for (arn, want) in cases {
        let got = principal_kind("aws", "000000000000", arn, "principalArn");
        assert_eq!(got.as_ref().ok().copied(), *want, "{arn}");
        if let Err(e) = got {
            assert!(e.message.starts_with("principalArn: "), "{}", e.message);
        }
    }
}

#[test]
fn effective_precedence() {
    let set = |p: &str, v: &str| Setting {
        name: Some(SettingName::ContainerInsights),
        value: Some(v.into()),
        principal_arn: Some(p.into()),
        r#type: Some(SettingType::User),
    };
    let own = set(USER, "enhanced");
    let root = set(ROOT, "enabled");
    let n = SettingName::ContainerInsights;
    let cases: &[(Option<&Setting>, Option<&Setting>, &str, &str)] = &[
        (Some(&own), Some(&root), "enhanced", USER),
        (None, Some(&root), "enabled", ROOT),
        (None, None, "disabled", ROOT),
    ];
    for (o, r, value, from) in cases {
        let got = effective(n, ROOT, *o, *r);
        assert_eq!(got.value.as_deref(), Some(*value));
        assert_eq!(got.principal_arn.as_deref(), Some(*from));
    }
    assert_eq!(effective(n, ROOT, None, None).r#type, Some(SettingType::AwsManaged));
}

fn ctx_as(h: &Harness, arn: &str) -> RequestContext {
    let mut ctx = h.ctx();
    let mut p = (*ctx.principal).clone();
    p.arn = arn.into();
    ctx.principal = Arc::new(p);
    ctx
}

#[tokio::test]
async fn put_list_delete_round_trip() {
    let h = Harness::new();
    let api = h.ecs.account_settings();
    let (root, user) = (h.ctx(), ctx_as(&h, USER));
    // Nothing set: no explicit settings; the effective ones are AWS's defaults.
    let list = |ctx: &RequestContext, req: ListAccountSettingsRequest| {
        let ctx = RequestContext { principal: ctx.principal.clone(), request_id: "t".into() };
        async move { api.list_account_settings(&ctx, req).await.unwrap() }
    };
    let none = list(&root, ListAccountSettingsRequest::default()).await;
    assert_eq!(none.settings.unwrap().len(), 0);
    let eff = ListAccountSettingsRequest { effective_settings: Some(true), ..Default::default() };
    let page = list(&root, eff.clone()).await;
    assert_eq!(page.settings.as_ref().unwrap().len(), 10, "a page is at most 10");
    assert!(page.next_token.is_some());
    let rest =
        list(&root, ListAccountSettingsRequest { next_token: page.next_token, ..eff.clone() })
            .await;
    assert_eq!(rest.settings.unwrap().len(), SettingName::VALUES.len() - 10);
    assert_eq!(rest.next_token, None);

    // The account default, then the user's own override.
    let put_default = PutAccountSettingDefaultRequest {
        name: Some(SettingName::ContainerInsights),
        value: Some("enabled".into()),
    };
    let s = api.put_account_setting_default(&user, put_default).await.unwrap().setting.unwrap();
    assert_eq!(s.principal_arn.as_deref(), Some(ROOT), "defaults are the root user's");
    let put = PutAccountSetting {
        name: SettingName::ContainerInsights,
        value: "enhanced",
        principal: Some(USER),
    };
    api.put_account_setting(&root, put.request()).await.unwrap();
    let named = |p: Option<&str>, effective: bool| ListAccountSettingsRequest {
        name: Some(SettingName::ContainerInsights),
        principal_arn: p.map(str::to_string),
        effective_settings: Some(effective),
        ..Default::default()
    };
    let value = |r: ListAccountSettingsResponse| {
        r.settings.unwrap().into_iter().map(|s| s.value.unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(value(list(&user, named(None, true)).await), ["enhanced"]);
    assert_eq!(value(list(&root, named(Some(USER), false)).await), ["enhanced"]);
    assert_eq!(value(list(&root, named(None, true)).await), ["enabled"]);
    // The value filter.
    let filtered =
        ListAccountSettingsRequest { value: Some("enabled".into()), ..named(Some(USER), true) };
    assert!(value(list(&root, filtered).await).is_empty());
    // Delete the override: the user falls back to the account default.
    let del = DeleteAccountSettingRequest {
        name: Some(SettingName::ContainerInsights),
        principal_arn: Some(USER.into()),
    };
    let gone = api.delete_account_setting(&root, del.clone()).await.unwrap().setting.unwrap();
    assert_eq!(gone.value.as_deref(), Some("enhanced"));
    assert_eq!(value(list(&user, named(None, true)).await), ["enabled"]);
    let again = api.delete_account_setting(&root, del).await.unwrap_err();
    assert_eq!(again.code, "InvalidParameterException");
    // Errors.
    fn bad<'a>(
        name: SettingName,
        value: &'a str,
        principal: Option<&'a str>,
    ) -> PutAccountSetting<'a> {
        PutAccountSetting { name, value, principal }
    }
    for (req, field) in [
        (bad(SettingName::TaskLongArnFormat, "yes", None), "value: "),
        (bad(SettingName::GuardDutyActivate, "on", None), "name: "),
        (bad(SettingName::FargateTaskRetirementWaitPeriod, "0", Some(USER)), "principalArn: "),
        (
            bad(SettingName::TaskLongArnFormat, "enabled", Some("arn:aws:iam::1:root")),
            "principalArn: ",
        ),
    ] {
        let e = api.put_account_setting(&root, req.request()).await.unwrap_err();
        assert_eq!(e.code, "InvalidParameterException", "{}", e.message);
        assert!(e.message.starts_with(field), "{}", e.message);
    }
    let e = list(&root, ListAccountSettingsRequest::default()).await;
    assert!(e.settings.is_some());
    let value_only =
        ListAccountSettingsRequest { value: Some("enabled".into()), ..Default::default() };
    let e = api.list_account_settings(&root, value_only).await.unwrap_err();
    assert!(e.message.starts_with("value: "), "{}", e.message);
}

struct PutAccountSetting<'a> {
    name: SettingName,
    value: &'a str,
    principal: Option<&'a str>,
}

impl PutAccountSetting<'_> {
    fn request(&self) -> PutAccountSettingRequest {
        PutAccountSettingRequest {
            name: Some(self.name),
            value: Some(self.value.into()),
            principal_arn: self.principal.map(str::to_string),
        }
    }
}

/// `taskLongArnFormat` and `containerInstanceLongArnFormat` disabled: new tasks and
/// instances get short ARNs, which resolve everywhere; earlier ones keep theirs.
#[tokio::test]
async fn short_arn_formats_take_effect_for_new_resources() {
    use berth_wire::ecs::{ContainerInstancesApi, TasksApi};
    let h = Harness::new();
    let ctx = h.ctx();
    let long_instance = register_instance(&h.ecs, &ctx).await;
    assert!(long_instance.contains(":container-instance/default/"), "{long_instance}");
    for name in [SettingName::TaskLongArnFormat, SettingName::ContainerInstanceLongArnFormat] {
        let req = PutAccountSettingRequest {
            name: Some(name),
            value: Some("disabled".into()),
            principal_arn: None,
        };
        h.ecs.account_settings().put_account_setting(&ctx, req).await.unwrap();
    }
    let short_instance = register_instance(&h.ecs, &ctx).await;
    let id = short_instance.rsplit('/').next().unwrap();
    assert_eq!(
        short_instance,
        format!("arn:aws:ecs:us-east-1:000000000000:container-instance/{id}")
    );
    let td = task_definition(&h.ecs, &ctx, "web").await;
    let run = RunTaskRequest { task_definition: Some(td), count: Some(2), ..Default::default() };
    let tasks = h.ecs.tasks().run_task(&ctx, run).await.unwrap().tasks.unwrap();
    assert_eq!(tasks.len(), 2);
    let arn = tasks[0].task_arn.clone().unwrap();
    let id = arn.rsplit('/').next().unwrap();
    assert_eq!(arn, format!("arn:aws:ecs:us-east-1:000000000000:task/{id}"));
    // The short ARNs resolve: DescribeTasks, ListTasks, DescribeContainerInstances, StopTask.
    let described = h
        .ecs
        .tasks()
        .describe_tasks(
            &ctx,
            DescribeTasksRequest { tasks: Some(vec![arn.clone()]), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(described.tasks.unwrap()[0].task_arn.as_deref(), Some(arn.as_str()));
    let listed = h.ecs.tasks().list_tasks(&ctx, ListTasksRequest::default()).await.unwrap();
    assert!(listed.task_arns.unwrap().contains(&arn));
    let ci = DescribeContainerInstancesRequest {
        container_instances: Some(vec![short_instance.clone(), long_instance.clone()]),
        ..Default::default()
    };
    let found = h.ecs.container_instances().describe_container_instances(&ctx, ci).await.unwrap();
    assert_eq!(found.container_instances.unwrap().len(), 2);
    let stop = StopTaskRequest { task: Some(arn.clone()), ..Default::default() };
    let stopped = h.ecs.tasks().stop_task(&ctx, stop).await.unwrap().task.unwrap();
    assert_eq!(stopped.desired_status.as_deref(), Some("STOPPED"));
    // Back to the long format for new tasks.
    let req = PutAccountSettingRequest {
        name: Some(SettingName::TaskLongArnFormat),
        value: Some("enabled".into()),
        principal_arn: None,
    };
    h.ecs.account_settings().put_account_setting(&ctx, req).await.unwrap();
    let td = task_definition(&h.ecs, &ctx, "web").await;
    let run = RunTaskRequest { task_definition: Some(td), ..Default::default() };
    let t = h.ecs.tasks().run_task(&ctx, run).await.unwrap().tasks.unwrap();
    assert!(t[0].task_arn.as_deref().unwrap().contains(":task/default/"));
}

#[tokio::test]
async fn container_insights_is_the_default_of_new_clusters() {
    use berth_wire::ecs::ClustersApi;
    let h = Harness::new();
    let ctx = h.ctx();
    let insights = |c: Cluster| c.settings.unwrap()[0].value.clone().unwrap();
    let create =
        |name: &str| CreateClusterRequest { cluster_name: Some(name.into()), ..Default::default() };
    let before = h.ecs.clusters().create_cluster(&ctx, create("a")).await.unwrap();
    assert_eq!(insights(before.cluster.unwrap()), "disabled");
    let req = PutAccountSettingDefaultRequest {
        name: Some(SettingName::ContainerInsights),
        value: Some("enhanced".into()),
    };
    h.ecs.account_settings().put_account_setting_default(&ctx, req).await.unwrap();
    let after = h.ecs.clusters().create_cluster(&ctx, create("b")).await.unwrap();
    assert_eq!(insights(after.cluster.unwrap()), "enhanced");
    // A cluster's own setting wins.
    let own = CreateClusterRequest {
        settings: Some(vec![ClusterSetting {
            name: Some(ClusterSettingName::ContainerInsights),
            value: Some("enabled".into()),
        }]),
        ..create("c")
    };
    let c = h.ecs.clusters().create_cluster(&ctx, own).await.unwrap();
    assert_eq!(insights(c.cluster.unwrap()), "enabled");
}

/// `serviceLongArnFormat` disabled: a new service gets `service/<name>`, which ListServices,
/// DescribeServices and UpdateService accept and show as minted; it cannot be tagged (as in
/// ECS); a service created before keeps its long ARN, and a later one gets the long format
/// again once the setting is enabled.
#[tokio::test]
async fn short_service_arns_for_services_created_with_the_setting_disabled() {
    use berth_wire::ecs::{ClustersApi, ServicesApi, TagsApi};
    let h = Harness::new();
    let ctx = h.ctx();
    let c = CreateClusterRequest { cluster_name: Some("default".into()), ..Default::default() };
    h.ecs.clusters().create_cluster(&ctx, c).await.unwrap();
    let td = task_definition(&h.ecs, &ctx, "web").await;
    let create = |name: &str| CreateServiceRequest {
        service_name: Some(name.into()),
        task_definition: Some(td.clone()),
        desired_count: Some(0),
        ..Default::default()
    };
    let svc = |r: CreateServiceResponse| r.service.unwrap().service_arn.unwrap();
    let long = svc(h.ecs.services().create_service(&ctx, create("before")).await.unwrap());
    assert_eq!(long, "arn:aws:ecs:us-east-1:000000000000:service/default/before");
    let set = |value: &str| PutAccountSettingRequest {
        name: Some(SettingName::ServiceLongArnFormat),
        value: Some(value.into()),
        principal_arn: None,
    };
    h.ecs.account_settings().put_account_setting(&ctx, set("disabled")).await.unwrap();
    let short = svc(h.ecs.services().create_service(&ctx, create("after")).await.unwrap());
    assert_eq!(short, "arn:aws:ecs:us-east-1:000000000000:service/after");

    let listed = h.ecs.services().list_services(&ctx, ListServicesRequest::default()).await;
    let mut arns = listed.unwrap().service_arns.unwrap();
    arns.sort();
    assert_eq!(arns, vec![short.clone(), long.clone()]);
    let described = h
        .ecs
        .services()
        .describe_services(
            &ctx,
            DescribeServicesRequest {
                services: Some(vec![short.clone(), long.clone()]),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .services
        .unwrap();
    let shown: Vec<_> = described.iter().map(|s| s.service_arn.clone().unwrap()).collect();
    assert_eq!(shown, vec![short.clone(), long.clone()]);
    let update = UpdateServiceRequest {
        service: Some(short.clone()),
        desired_count: Some(0),
        ..Default::default()
    };
    let updated = h.ecs.services().update_service(&ctx, update).await.unwrap().service.unwrap();
    assert_eq!(updated.service_arn.as_deref(), Some(short.as_str()));

    let tag = |arn: &str| TagResourceRequest {
        resource_arn: Some(arn.into()),
        tags: Some(vec![Tag { key: Some("k".into()), value: Some("v".into()) }]),
    };
    let e = h.ecs.tags().tag_resource(&ctx, tag(&short)).await.unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    assert_eq!(e.message, "Long arn format must be used for tagging operations");
    h.ecs.tags().tag_resource(&ctx, tag(&long)).await.unwrap();

    h.ecs.account_settings().put_account_setting(&ctx, set("enabled")).await.unwrap();
    let again = svc(h.ecs.services().create_service(&ctx, create("later")).await.unwrap());
    assert_eq!(again, "arn:aws:ecs:us-east-1:000000000000:service/default/later");
}
