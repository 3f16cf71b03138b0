//! Evaluation: identity, resource, boundary, session and trust policies.

use super::*;

#[test]
fn identity_policy_table() {
    let admin = stmt("Allow", json!("*"), json!("*"));
    let ecs_read = stmt("Allow", json!(["ecs:Describe*", "ecs:List*"]), json!("*"));
    let deny_prod = stmt("Deny", json!("ecs:*"), json!(cluster("prod")));
    let not_iam = idp(json!({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}}));
    let not_prod = idp(json!({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Action": "ecs:*", "NotResource": cluster("prod")}}));
    let only_bucket = idp(json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*",
         "NotResource": ["arn:aws:s3:::amzn-s3-demo-bucket", "arn:aws:s3:::amzn-s3-demo-bucket/*"]}]}));
    let q_action = stmt("Allow", json!("ecs:Describe?lusters"), json!("*"));
    let per_cluster = stmt("Allow", json!("ecs:*"), json!("arn:aws:ecs:*:*:cluster/dev-*"));

    let bob = || user("bob");
    type Row<'a> = (&'a str, Vec<&'a Policy>, &'a str, String, Want);
    let rows: Vec<Row> = vec![
        (
            "no policy: implicit deny",
            vec![],
            "ecs:ListClusters",
            "*".into(),
            Want::Implicit(IdentityBased),
        ),
        ("admin allows", vec![&admin], "ecs:DeleteCluster", cluster("x"), Want::Allow),
        ("wildcard action", vec![&ecs_read], "ecs:DescribeClusters", cluster("x"), Want::Allow),
        (
            "wildcard action, other verb",
            vec![&ecs_read],
            "ecs:DeleteCluster",
            cluster("x"),
            Want::Implicit(IdentityBased),
        ),
        (
            "action case-insensitive",
            vec![&ecs_read],
            "ECS:describeclusters",
            cluster("x"),
            Want::Allow,
        ),
        ("? matches one char", vec![&q_action], "ecs:DescribeClusters", "*".into(), Want::Allow),
        (
            "? needs exactly one char",
            vec![&q_action],
            "ecs:DescribeXXlusters",
            "*".into(),
            Want::Implicit(IdentityBased),
        ),
        (
            "explicit deny beats allow",
            vec![&admin, &deny_prod],
            "ecs:DescribeClusters",
            cluster("prod"),
            Want::Explicit(IdentityBased),
        ),
        (
            "deny elsewhere leaves allow",
            vec![&admin, &deny_prod],
            "ecs:DescribeClusters",
            cluster("dev"),
            Want::Allow,
        ),
        (
            "deny order does not matter",
            vec![&deny_prod, &admin],
            "ecs:DescribeClusters",
            cluster("prod"),
            Want::Explicit(IdentityBased),
        ),
        ("NotAction allows the rest", vec![&not_iam], "ecs:ListClusters", "*".into(), Want::Allow),
        (
            "NotAction excludes",
            vec![&not_iam],
            "iam:CreateUser",
            "*".into(),
            Want::Implicit(IdentityBased),
        ),
        (
            "NotAction case-insensitive",
            vec![&not_iam],
            "IAM:createuser",
            "*".into(),
            Want::Implicit(IdentityBased),
        ),
        (
            "NotResource allows others",
            vec![&not_prod],
            "ecs:DescribeClusters",
            cluster("dev"),
            Want::Allow,
        ),
        (
            "NotResource excludes",
            vec![&not_prod],
            "ecs:DescribeClusters",
            cluster("prod"),
            Want::Implicit(IdentityBased),
        ),
        (
            "Deny+NotResource: inside bucket",
            vec![&only_bucket],
            "s3:GetObject",
            "arn:aws:s3:::amzn-s3-demo-bucket/k".into(),
            Want::Allow,
        ),
        (
            "Deny+NotResource: other bucket",
            vec![&only_bucket],
            "s3:GetObject",
            "arn:aws:s3:::other/k".into(),
            Want::Explicit(IdentityBased),
        ),
        (
            "resource wildcard in segment",
            vec![&per_cluster],
            "ecs:DescribeClusters",
            cluster("dev-1"),
            Want::Allow,
        ),
        (
            "resource wildcard no match",
            vec![&per_cluster],
            "ecs:DescribeClusters",
            cluster("prod"),
            Want::Implicit(IdentityBased),
        ),
        (
            "ARN resource vs request *",
            vec![&per_cluster],
            "ecs:ListClusters",
            "*".into(),
            Want::Implicit(IdentityBased),
        ),
        (
            "resource case-sensitive",
            vec![&per_cluster],
            "ecs:DescribeClusters",
            cluster("DEV-1"),
            Want::Implicit(IdentityBased),
        ),
    ];
    for (name, pols, action, resource, want) in rows {
        let ctx = RequestContext::new(bob(), action, &resource);
        check(name, &eval_id(&pols, &ctx), want);
    }
}

#[test]
fn boundaries_sessions_and_resource_policies() {
    let ecs_and_iam = stmt("Allow", json!(["ecs:*", "iam:*"]), json!("*"));
    let ecs_only = parse(
        PolicyKind::PermissionsBoundary,
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}}),
    );
    let session_describe = parse(
        PolicyKind::Session,
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecs:Describe*", "Resource": "*"}}),
    );
    let secret = format!("arn:aws:secretsmanager:us-east-1:{ACCT}:secret:db-AbCdEf");
    let res_to = |principal: serde_json::Value| {
        parse(
            PolicyKind::Resource,
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": principal,
                "Action": "secretsmanager:GetSecretValue", "Resource": "*"}}),
        )
    };
    let to_bob = res_to(json!({"AWS": format!("arn:aws:iam::{ACCT}:user/bob")}));
    let to_role = res_to(json!({"AWS": format!("arn:aws:iam::{ACCT}:role/app")}));
    let to_session = res_to(json!({"AWS": format!("arn:aws:sts::{ACCT}:assumed-role/app/s1")}));
    let to_account = res_to(json!({"AWS": ACCT}));
    let to_everyone = res_to(json!("*"));
    let deny_all_res = parse(
        PolicyKind::Resource,
        json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "*"}}),
    );
    let get_secret = stmt("Allow", json!("secretsmanager:GetSecretValue"), json!("*"));
    let nothing_boundary = parse(
        PolicyKind::PermissionsBoundary,
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}}),
    );

    struct Row<'a> {
        name: &'a str,
        who: Principal,
        action: &'a str,
        resource: String,
        set: PolicySet<'a>,
        want: Want,
    }
    let bob = || user("bob");
    let rows = vec![
        Row {
            name: "boundary intersects: inside",
            who: bob(),
            action: "ecs:RunTask",
            resource: "*".into(),
            set: PolicySet {
                identity: vec![&ecs_and_iam],
                boundary: Some(&ecs_only),
                ..Default::default()
            },
            want: Want::Allow,
        },
        Row {
            name: "boundary intersects: outside",
            who: bob(),
            action: "iam:CreateUser",
            resource: "*".into(),
            set: PolicySet {
                identity: vec![&ecs_and_iam],
                boundary: Some(&ecs_only),
                ..Default::default()
            },
            want: Want::Implicit(PermissionsBoundary),
        },
        Row {
            name: "boundary alone grants nothing",
            who: bob(),
            action: "ecs:RunTask",
            resource: "*".into(),
            set: PolicySet { boundary: Some(&ecs_only), ..Default::default() },
            want: Want::Implicit(IdentityBased),
        },
        Row {
            name: "session policy intersects",
            who: session("app", "s1"),
            action: "ecs:DescribeTasks",
            resource: "*".into(),
            set: PolicySet {
                identity: vec![&ecs_and_iam],
                session: vec![&session_describe],
                ..Default::default()
            },
            want: Want::Allow,
        },
        Row {
            name: "session policy limits",
            who: session("app", "s1"),
            action: "ecs:RunTask",
            resource: "*".into(),
            set: PolicySet {
                identity: vec![&ecs_and_iam],
                session: vec![&session_describe],
                ..Default::default()
            },
            want: Want::Implicit(Session),
        },
        Row {
            name: "resource policy naming the user suffices",
            who: bob(),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet { resource: Some(&to_bob), ..Default::default() },
            want: Want::Allow,
        },
        Row {
            name: "resource grant to user not limited by boundary",
            who: bob(),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet {
                resource: Some(&to_bob),
                boundary: Some(&nothing_boundary),
                ..Default::default()
            },
            want: Want::Allow,
        },
        Row {
            name: "resource policy naming someone else",
            who: user("alice"),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet { resource: Some(&to_bob), ..Default::default() },
            want: Want::Implicit(IdentityBased),
        },
        Row {
            name: "resource grant to role ARN reaches its session",
            who: session("app", "s1"),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet { resource: Some(&to_role), ..Default::default() },
            want: Want::Allow,
        },
        Row {
            name: "resource grant to role ARN limited by session policy",
            who: session("app", "s1"),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet {
                resource: Some(&to_role),
                session: vec![&session_describe],
                ..Default::default()
            },
            want: Want::Implicit(Session),
        },
        Row {
            name: "resource grant to session ARN is final",
            who: session("app", "s1"),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet {
                resource: Some(&to_session),
                session: vec![&session_describe],
                ..Default::default()
            },
            want: Want::Allow,
        },
        Row {
            name: "resource grant to account needs identity allow",
            who: bob(),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet { resource: Some(&to_account), ..Default::default() },
            want: Want::Implicit(IdentityBased),
        },
        Row {
            name: "resource grant to account plus identity allow",
            who: bob(),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet {
                identity: vec![&get_secret],
                resource: Some(&to_account),
                ..Default::default()
            },
            want: Want::Allow,
        },
        Row {
            name: "resource grant to everyone",
            who: user("carol"),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet { resource: Some(&to_everyone), ..Default::default() },
            want: Want::Allow,
        },
        Row {
            name: "identity alone without resource policy",
            who: bob(),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet { identity: vec![&get_secret], ..Default::default() },
            want: Want::Allow,
        },
        Row {
            name: "resource deny beats identity allow",
            who: bob(),
            action: "secretsmanager:GetSecretValue",
            resource: secret.clone(),
            set: PolicySet {
                identity: vec![&get_secret],
                resource: Some(&deny_all_res),
                ..Default::default()
            },
            want: Want::Explicit(ResourceBased),
        },
        Row {
            name: "root allowed without policies",
            who: Principal::from_arn(&format!("arn:aws:iam::{ACCT}:root")),
            action: "ecs:DeleteCluster",
            resource: cluster("x"),
            set: PolicySet::default(),
            want: Want::Allow,
        },
        Row {
            name: "root stopped by resource deny",
            who: Principal::from_arn(&format!("arn:aws:iam::{ACCT}:root")),
            action: "ecs:DeleteCluster",
            resource: cluster("x"),
            set: PolicySet { resource: Some(&deny_all_res), ..Default::default() },
            want: Want::Explicit(ResourceBased),
        },
    ];
    for r in rows {
        let ctx = RequestContext::new(r.who, r.action, &r.resource);
        check(r.name, &r.set.evaluate(&ctx), r.want);
    }
}

#[test]
fn trust_policies() {
    let trust = parse(
        PolicyKind::Trust,
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"},
            {"Sid": "Bob", "Effect": "Allow", "Principal": {"AWS": [format!("arn:aws:iam::{ACCT}:user/bob")]}, "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:root")}, "Action": "sts:AssumeRole",
             "Condition": {"StringEquals": {"aws:PrincipalTag/team": "ops"}}}
        ]}),
    );
    let role = format!("arn:aws:iam::{ACCT}:role/app");
    let may_assume = stmt("Allow", json!("sts:AssumeRole"), json!(role));
    let rows: Vec<(&str, RequestContext, Vec<&Policy>, Want)> = vec![
        (
            "service trusted",
            RequestContext::new(
                Principal::service("ecs-tasks.amazonaws.com"),
                "sts:AssumeRole",
                &role,
            ),
            vec![],
            Want::Allow,
        ),
        (
            "service name case-insensitive",
            RequestContext::new(
                Principal::service("ECS-Tasks.amazonaws.com"),
                "sts:AssumeRole",
                &role,
            ),
            vec![],
            Want::Allow,
        ),
        (
            "other service",
            RequestContext::new(
                Principal::service("lambda.amazonaws.com"),
                "sts:AssumeRole",
                &role,
            ),
            vec![],
            Want::Implicit(ResourceBased),
        ),
        (
            "user named directly",
            RequestContext::new(user("bob"), "sts:AssumeRole", &role),
            vec![],
            Want::Allow,
        ),
        (
            "account named, no identity allow",
            RequestContext::new(user("carol"), "sts:AssumeRole", &role)
                .with("aws:PrincipalTag/team", "ops"),
            vec![],
            Want::Implicit(IdentityBased),
        ),
        (
            "account named, identity allow",
            RequestContext::new(user("carol"), "sts:AssumeRole", &role)
                .with("aws:PrincipalTag/team", "ops"),
            vec![&may_assume],
            Want::Allow,
        ),
        (
            "account named, condition fails",
            RequestContext::new(user("carol"), "sts:AssumeRole", &role)
                .with("aws:PrincipalTag/team", "dev"),
            vec![&may_assume],
            Want::Implicit(ResourceBased),
        ),
        (
            "wrong action",
            RequestContext::new(user("bob"), "sts:TagSession", &role),
            vec![],
            Want::Implicit(ResourceBased),
        ),
    ];
    for (name, ctx, identity, want) in rows {
        let set = PolicySet {
            identity,
            resource: Some(&trust),
            resource_policy_required: true,
            ..Default::default()
        };
        check(name, &set.evaluate(&ctx), want);
    }
}

#[test]
fn not_principal() {
    let p = parse(
        PolicyKind::Resource,
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Deny",
            "NotPrincipal": {"AWS": [format!("arn:aws:iam::{ACCT}:user/bob"), format!("arn:aws:iam::{ACCT}:root")]},
            "Action": "s3:*", "Resource": "*"}}),
    );
    let admin = stmt("Allow", json!("*"), json!("*"));
    let set = PolicySet { identity: vec![&admin], resource: Some(&p), ..Default::default() };
    let ctx = |who| RequestContext::new(who, "s3:GetObject", "arn:aws:s3:::b/k");
    check("bob excluded from deny", &set.evaluate(&ctx(user("bob"))), Want::Allow);
    check("alice denied", &set.evaluate(&ctx(user("alice"))), Want::Explicit(ResourceBased));
    // A session is excluded only if its role and the session are listed too.
    check(
        "session denied",
        &set.evaluate(&ctx(session("app", "s"))),
        Want::Explicit(ResourceBased),
    );
}
