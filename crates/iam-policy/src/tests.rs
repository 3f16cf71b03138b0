//! Table tests built from the examples of AWS's IAM user guide (policy
//! evaluation logic, condition operators, policy variables), parser error
//! tables, and property tests.

use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::json;
use time::macros::datetime;

use crate::*;

const ACCT: &str = "123456789012";

fn user(name: &str) -> Principal {
    Principal::from_arn(&format!("arn:aws:iam::{ACCT}:user/{name}"))
}

fn session(role: &str, name: &str) -> Principal {
    Principal::assumed_role(
        &format!("arn:aws:sts::{ACCT}:assumed-role/{role}/{name}"),
        &format!("arn:aws:iam::{ACCT}:role/{role}"),
    )
}

fn cluster(name: &str) -> String {
    format!("arn:aws:ecs:us-east-1:{ACCT}:cluster/{name}")
}

fn parse(kind: PolicyKind, v: serde_json::Value) -> Policy {
    Policy::from_value(&v, kind).unwrap_or_else(|e| panic!("{e} at {}: {v}", e.element()))
}

fn idp(v: serde_json::Value) -> Policy {
    parse(PolicyKind::Identity, v)
}

/// An identity policy of one statement.
fn stmt(effect: &str, action: serde_json::Value, resource: serde_json::Value) -> Policy {
    idp(
        json!({"Version": "2012-10-17", "Statement": {"Effect": effect, "Action": action, "Resource": resource}}),
    )
}

fn allow_with(action: &str, resource: &str, cond: serde_json::Value) -> Policy {
    idp(json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": action, "Resource": resource, "Condition": cond
    }]}))
}

fn eval_id(policies: &[&Policy], ctx: &RequestContext) -> Decision {
    evaluate_identity(policies, ctx)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Allow,
    Explicit(PolicyType),
    Implicit(PolicyType),
}

fn check(name: &str, d: &Decision, want: Want) {
    let got = match d {
        Decision::Allow(_) | Decision::AllowRoot => Want::Allow,
        Decision::ExplicitDeny(r) => Want::Explicit(r.policy_type),
        Decision::ImplicitDeny(t) => Want::Implicit(t.to_owned()),
    };
    assert_eq!(got, want, "case {name}: decision {d}");
}

use PolicyType::*;

// ---------------------------------------------------------------- evaluation

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

// ---------------------------------------------------------------- conditions

#[test]
fn condition_table() {
    let t0 = datetime!(2026-06-15 12:00:00 UTC);
    type Row = (&'static str, serde_json::Value, Vec<(&'static str, &'static str)>, bool);
    let rows: Vec<Row> = vec![
        // String operators; values case-sensitive, key names not.
        ("StringEquals match", json!({"StringEquals": {"aws:username": "bob"}}), vec![], true),
        (
            "StringEquals key name any case",
            json!({"StringEquals": {"AWS:UserName": "bob"}}),
            vec![],
            true,
        ),
        (
            "StringEquals value case-sensitive",
            json!({"StringEquals": {"aws:username": "Bob"}}),
            vec![],
            false,
        ),
        (
            "StringEqualsIgnoreCase",
            json!({"StringEqualsIgnoreCase": {"aws:username": "BOB"}}),
            vec![],
            true,
        ),
        (
            "StringNotEqualsIgnoreCase",
            json!({"StringNotEqualsIgnoreCase": {"aws:username": "BOB"}}),
            vec![],
            false,
        ),
        (
            "StringEquals no wildcard",
            json!({"StringEquals": {"aws:username": "b*"}}),
            vec![],
            false,
        ),
        ("StringLike wildcard", json!({"StringLike": {"aws:username": "b*"}}), vec![], true),
        ("StringLike ?", json!({"StringLike": {"aws:username": "b?b"}}), vec![], true),
        ("StringNotLike", json!({"StringNotLike": {"aws:username": ["a*", "c*"]}}), vec![], true),
        (
            "OR across values",
            json!({"StringEquals": {"aws:username": ["alice", "bob"]}}),
            vec![],
            true,
        ),
        (
            "AND across keys",
            json!({"StringEquals": {"aws:username": "bob", "ecs:cluster": "x"}}),
            vec![("ecs:cluster", "y")],
            false,
        ),
        (
            "AND across operators",
            json!({"StringEquals": {"aws:username": "bob"}, "StringLike": {"ecs:cluster": "prod-*"}}),
            vec![("ecs:cluster", "prod-1")],
            true,
        ),
        (
            "missing key: positive false",
            json!({"StringEquals": {"ecs:cluster": "x"}}),
            vec![],
            false,
        ),
        (
            "missing key: negated true",
            json!({"StringNotEquals": {"ecs:cluster": "x"}}),
            vec![],
            true,
        ),
        (
            "IfExists with missing key",
            json!({"StringEqualsIfExists": {"ecs:cluster": "x"}}),
            vec![],
            true,
        ),
        (
            "IfExists with present key",
            json!({"StringEqualsIfExists": {"ecs:cluster": "x"}}),
            vec![("ecs:cluster", "y")],
            false,
        ),
        (
            "variable in condition",
            json!({"StringEquals": {"aws:ResourceTag/owner": "${aws:username}"}}),
            vec![("aws:ResourceTag/owner", "bob")],
            true,
        ),
        (
            "variable missing in condition",
            json!({"StringEquals": {"aws:ResourceTag/owner": "${aws:PrincipalTag/x}"}}),
            vec![("aws:ResourceTag/owner", "bob")],
            false,
        ),
        (
            "tag key in name case-insensitive",
            json!({"StringEquals": {"aws:PrincipalTag/Team": "ops"}}),
            vec![("aws:principaltag/team", "ops")],
            true,
        ),
        // Numeric.
        (
            "NumericLessThan",
            json!({"NumericLessThan": {"ecs:count": 10}}),
            vec![("ecs:count", "9")],
            true,
        ),
        (
            "NumericLessThan boundary",
            json!({"NumericLessThan": {"ecs:count": "10"}}),
            vec![("ecs:count", "10")],
            false,
        ),
        (
            "NumericLessThanEquals",
            json!({"NumericLessThanEquals": {"ecs:count": "10"}}),
            vec![("ecs:count", "10")],
            true,
        ),
        (
            "NumericGreaterThan decimal",
            json!({"NumericGreaterThan": {"ecs:count": "1.5"}}),
            vec![("ecs:count", "2")],
            true,
        ),
        (
            "NumericEquals",
            json!({"NumericEquals": {"ecs:count": "3"}}),
            vec![("ecs:count", "3.0")],
            true,
        ),
        (
            "NumericNotEquals",
            json!({"NumericNotEquals": {"ecs:count": "3"}}),
            vec![("ecs:count", "4")],
            true,
        ),
        (
            "Numeric non-number",
            json!({"NumericEquals": {"ecs:count": "3"}}),
            vec![("ecs:count", "three")],
            false,
        ),
        // Dates (aws:CurrentTime = 2026-06-15T12:00:00Z).
        (
            "DateLessThan",
            json!({"DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}),
            vec![],
            true,
        ),
        (
            "DateGreaterThan",
            json!({"DateGreaterThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}),
            vec![],
            false,
        ),
        (
            "Date bare day",
            json!({"DateGreaterThanEquals": {"aws:CurrentTime": "2026-06-15"}}),
            vec![],
            true,
        ),
        (
            "Date epoch policy value",
            json!({"DateLessThan": {"aws:CurrentTime": 1781600000}}),
            vec![],
            true,
        ),
        (
            "Date epoch key",
            json!({"DateEquals": {"aws:EpochTime": "2026-06-15T12:00:00Z"}}),
            vec![],
            true,
        ),
        (
            "Date with offset",
            json!({"DateEquals": {"aws:CurrentTime": "2026-06-15T14:00:00+02:00"}}),
            vec![],
            true,
        ),
        (
            "DateNotEquals",
            json!({"DateNotEquals": {"aws:CurrentTime": "2026-06-15T12:00:01Z"}}),
            vec![],
            true,
        ),
        // Bool, Binary.
        (
            "Bool false",
            json!({"Bool": {"aws:SecureTransport": "false"}}),
            vec![("aws:SecureTransport", "false")],
            true,
        ),
        (
            "Bool JSON boolean",
            json!({"Bool": {"aws:SecureTransport": true}}),
            vec![("aws:SecureTransport", "true")],
            true,
        ),
        (
            "Bool mismatch",
            json!({"Bool": {"aws:SecureTransport": "true"}}),
            vec![("aws:SecureTransport", "false")],
            false,
        ),
        ("Bool missing", json!({"Bool": {"aws:MultiFactorAuthPresent": "false"}}), vec![], false),
        (
            "BoolIfExists missing",
            json!({"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}),
            vec![],
            true,
        ),
        (
            "BinaryEquals",
            json!({"BinaryEquals": {"ecs:blob": "QmluYXJ5VmFsdWU="}}),
            vec![("ecs:blob", "QmluYXJ5VmFsdWU=")],
            true,
        ),
        (
            "BinaryEquals differs",
            json!({"BinaryEquals": {"ecs:blob": "QmluYXJ5VmFsdWU="}}),
            vec![("ecs:blob", "QmluYXJ5VmFsdWF=")],
            false,
        ),
        // IP addresses.
        (
            "IpAddress in CIDR",
            json!({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}),
            vec![("aws:SourceIp", "203.0.113.77")],
            true,
        ),
        (
            "IpAddress outside",
            json!({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}),
            vec![("aws:SourceIp", "198.51.100.1")],
            false,
        ),
        (
            "IpAddress single host",
            json!({"IpAddress": {"aws:SourceIp": "198.51.100.1"}}),
            vec![("aws:SourceIp", "198.51.100.1")],
            true,
        ),
        (
            "IpAddress v6",
            json!({"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]}}),
            vec![("aws:SourceIp", "2001:db8:1234:5678::1")],
            true,
        ),
        (
            "IpAddress v4 vs v6 CIDR",
            json!({"IpAddress": {"aws:SourceIp": "2001:DB8::/32"}}),
            vec![("aws:SourceIp", "10.0.0.1")],
            false,
        ),
        (
            "NotIpAddress",
            json!({"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}}),
            vec![("aws:SourceIp", "192.0.2.1")],
            true,
        ),
        (
            "NotIpAddress inside",
            json!({"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}}),
            vec![("aws:SourceIp", "10.1.2.3")],
            false,
        ),
        (
            "IpAddress garbage request value",
            json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            vec![("aws:SourceIp", "nope")],
            false,
        ),
        // ARNs.
        (
            "ArnLike",
            json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/b*"}}),
            vec![],
            true,
        ),
        (
            "ArnEquals wildcards too",
            json!({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:user/*"}}),
            vec![],
            true,
        ),
        (
            "ArnLike segments",
            json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:bob"}}),
            vec![],
            false,
        ),
        (
            "ArnNotLike",
            json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}),
            vec![],
            true,
        ),
        (
            "ArnLike with a variable",
            json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/${aws:username}"}}),
            vec![],
            true,
        ),
        (
            "ArnLike with an unresolved variable",
            json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/${aws:PrincipalTag/none}"}}),
            vec![],
            false,
        ),
        (
            "ArnLike on a non-ARN",
            json!({"ArnLike": {"ecs:thing": "arn:*"}}),
            vec![("ecs:thing", "notarn")],
            false,
        ),
        // Null.
        ("Null true on missing", json!({"Null": {"aws:TokenIssueTime": "true"}}), vec![], true),
        ("Null false on present", json!({"Null": {"aws:username": "false"}}), vec![], true),
        ("Null true on present", json!({"Null": {"aws:username": "true"}}), vec![], false),
    ];
    let policy_for = |cond: &serde_json::Value| allow_with("ecs:RunTask", "*", cond.clone());
    for (name, cond, keys, want) in rows {
        let mut ctx = RequestContext::new(user("bob"), "ecs:RunTask", "*").with_time(t0);
        for (k, v) in keys {
            ctx.set(k, v);
        }
        let p = policy_for(&cond);
        assert_eq!(eval_id(&[&p], &ctx).is_allowed(), want, "case {name}: {cond}");
    }
}

#[test]
fn set_qualifiers() {
    type Row = (&'static str, serde_json::Value, Option<Vec<&'static str>>, bool);
    let rows: Vec<Row> = vec![
        (
            "ForAllValues on missing key is true",
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}),
            None,
            true,
        ),
        (
            "ForAllValues on empty set is true",
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}),
            Some(vec![]),
            true,
        ),
        (
            "ForAllValues subset",
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}),
            Some(vec!["env"]),
            true,
        ),
        (
            "ForAllValues not subset",
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}),
            Some(vec!["env", "cost"]),
            false,
        ),
        (
            "ForAnyValue on missing key is false",
            json!({"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}),
            None,
            false,
        ),
        (
            "ForAnyValue on empty set is false",
            json!({"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}),
            Some(vec![]),
            false,
        ),
        (
            "ForAnyValue one matches",
            json!({"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}),
            Some(vec!["cost", "env"]),
            true,
        ),
        (
            "ForAnyValue none match",
            json!({"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}),
            Some(vec!["cost"]),
            false,
        ),
        (
            "ForAnyValue:StringLike",
            json!({"ForAnyValue:StringLike": {"aws:TagKeys": ["e*"]}}),
            Some(vec!["cost", "env"]),
            true,
        ),
        (
            "ForAllValues:StringNotEquals",
            json!({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}}),
            Some(vec!["a", "b"]),
            true,
        ),
        (
            "ForAllValues:StringNotEquals hit",
            json!({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}}),
            Some(vec!["a", "secret"]),
            false,
        ),
        (
            "ForAnyValue:StringNotEquals",
            json!({"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["a"]}}),
            Some(vec!["a", "b"]),
            true,
        ),
        (
            "ForAnyValue IfExists missing",
            json!({"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": ["env"]}}),
            None,
            true,
        ),
        ("Null true on empty set", json!({"Null": {"aws:TagKeys": "true"}}), Some(vec![]), true),
        (
            "unqualified multivalued: any",
            json!({"StringEquals": {"aws:TagKeys": "env"}}),
            Some(vec!["cost", "env"]),
            true,
        ),
        (
            "unqualified multivalued negated",
            json!({"StringNotEquals": {"aws:TagKeys": "env"}}),
            Some(vec!["cost", "env"]),
            false,
        ),
    ];
    for (name, cond, tags, want) in rows {
        let mut ctx = RequestContext::new(user("bob"), "ecs:TagResource", "*");
        if let Some(tags) = tags {
            ctx.set_multi("aws:TagKeys", tags);
        }
        let p = allow_with("ecs:TagResource", "*", cond.clone());
        assert_eq!(eval_id(&[&p], &ctx).is_allowed(), want, "case {name}: {cond}");
    }
}

// ---------------------------------------------------------------- variables

#[test]
fn policy_variables() {
    let home = |version: &str| {
        idp(json!({"Version": version, "Statement": {"Effect": "Allow", "Action": "s3:*",
            "Resource": "arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*"}}))
    };
    let v2012 = home("2012-10-17");
    let v2008 = home("2008-10-17");
    let obj = |who: &str| format!("arn:aws:s3:::amzn-s3-demo-bucket/home/{who}/notes.txt");
    let ctx = |p: Principal, r: &str| RequestContext::new(p, "s3:GetObject", r);
    assert!(eval_id(&[&v2012], &ctx(user("bob"), &obj("bob"))).is_allowed());
    assert!(!eval_id(&[&v2012], &ctx(user("bob"), &obj("alice"))).is_allowed());
    // A role session has no aws:username: the statement matches nothing.
    assert!(!eval_id(&[&v2012], &ctx(session("r", "s"), &obj("s"))).is_allowed());
    // 2008-10-17: no variables; the text is literal.
    assert!(!eval_id(&[&v2008], &ctx(user("bob"), &obj("bob"))).is_allowed());
    assert!(
        eval_id(
            &[&v2008],
            &ctx(user("bob"), "arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/x")
        )
        .is_allowed()
    );

    // Defaults and tags.
    let team =
        idp(json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecs:*",
        "Resource": "arn:aws:ecs:*:*:cluster/${aws:PrincipalTag/team, 'shared'}-*"}}));
    let c = |p, r: &str| RequestContext::new(p, "ecs:DescribeClusters", r);
    assert!(eval_id(&[&team], &c(user("bob"), &cluster("shared-1"))).is_allowed());
    assert!(
        eval_id(
            &[&team],
            &c(user("bob"), &cluster("ops-1")).with_principal_tags([("team", "ops")])
        )
        .is_allowed()
    );
    assert!(
        !eval_id(
            &[&team],
            &c(user("bob"), &cluster("shared-1")).with_principal_tags([("team", "ops")])
        )
        .is_allowed()
    );
    // Substituted values are literal: a tag value `*` is not a wildcard.
    assert!(
        !eval_id(&[&team], &c(user("bob"), &cluster("ops-1")).with_principal_tags([("team", "*")]))
            .is_allowed()
    );
    // ${*} is a literal star.
    let star =
        idp(json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecs:*",
        "Resource": "arn:aws:ecs:*:*:cluster/a${*}b"}}));
    assert!(eval_id(&[&star], &c(user("bob"), &cluster("a*b"))).is_allowed());
    assert!(!eval_id(&[&star], &c(user("bob"), &cluster("axb"))).is_allowed());
    // Multivalued keys cannot be variables.
    let mv =
        idp(json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecs:*",
        "Resource": "arn:aws:ecs:*:*:cluster/${aws:TagKeys}"}}));
    assert!(
        !eval_id(&[&mv], &c(user("bob"), &cluster("env")).with_multi("aws:TagKeys", ["env"]))
            .is_allowed()
    );
    // A variable may be the whole resource segment and contain colons? No:
    // it is substituted, then the ARN is split, like IAM does.
    let arnvar = idp(
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iam:GetUser",
        "Resource": "arn:aws:iam::*:user/${aws:username}"}}),
    );
    let me = format!("arn:aws:iam::{ACCT}:user/bob");
    assert!(
        eval_id(&[&arnvar], &RequestContext::new(user("bob"), "iam:GetUser", &me)).is_allowed()
    );
}

// ---------------------------------------------------------------- messages

#[test]
fn access_denied_messages() {
    let admin = stmt("Allow", json!("*"), json!("*"));
    let deny = stmt("Deny", json!("ecs:DeleteCluster"), json!("*"))
        .with_label(format!("arn:aws:iam::{ACCT}:policy/NoDelete"));
    let inline_deny =
        stmt("Deny", json!("ecs:DeleteCluster"), json!("*")).with_label("user/bob/inline/x");
    let ctx = RequestContext::new(user("bob"), "ecs:DeleteCluster", &cluster("prod"));
    let head = format!(
        "User: arn:aws:iam::{ACCT}:user/bob is not authorized to perform: ecs:DeleteCluster on resource: {}",
        cluster("prod")
    );
    assert_eq!(
        eval_id(&[], &ctx).access_denied_message(&ctx).unwrap(),
        format!("{head} because no identity-based policy allows the ecs:DeleteCluster action")
    );
    assert_eq!(
        eval_id(&[&admin, &deny], &ctx).access_denied_message(&ctx).unwrap(),
        format!(
            "{head} with an explicit deny in an identity-based policy: arn:aws:iam::{ACCT}:policy/NoDelete"
        )
    );
    assert_eq!(
        eval_id(&[&admin, &inline_deny], &ctx).access_denied_message(&ctx).unwrap(),
        format!("{head} with an explicit deny in an identity-based policy")
    );
    let boundary = parse(
        PolicyKind::PermissionsBoundary,
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecs:Describe*", "Resource": "*"}}),
    );
    let d = PolicySet { identity: vec![&admin], boundary: Some(&boundary), ..Default::default() }
        .evaluate(&ctx);
    assert_eq!(
        d.access_denied_message(&ctx).unwrap(),
        format!("{head} because no permissions boundary allows the ecs:DeleteCluster action")
    );
    let allow = eval_id(&[&admin], &ctx);
    assert!(allow.access_denied_message(&ctx).is_none());
    match allow {
        Decision::Allow(r) => {
            assert_eq!((r.policy_type, r.policy_index, r.statement), (IdentityBased, 0, 0));
        }
        other => panic!("{other}"),
    }
    // The deciding statement is named.
    let named = idp(json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "A", "Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Sid": "NoProd", "Effect": "Deny", "Action": "*", "Resource": cluster("prod")}]}))
    .with_label("p");
    match eval_id(&[&admin, &named], &ctx) {
        Decision::ExplicitDeny(r) => {
            assert_eq!(r.sid.as_deref(), Some("NoProd"));
            assert_eq!((r.policy_index, r.statement, r.policy.as_deref()), (1, 1, Some("p")));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn context_keys_from_principal() {
    let ctx = RequestContext::new(
        Principal::from_arn(&format!("arn:aws:iam::{ACCT}:user/division/bob")),
        "ecs:ListClusters",
        "*",
    )
    .with_source_ip(IpAddr::from([10, 0, 0, 1]))
    .with_secure_transport(true)
    .with_time(datetime!(2026-01-02 03:04:05.678 UTC));
    let get = |k: &str| ctx.get(k).map(|v| v.values().join(","));
    assert_eq!(get("aws:username").as_deref(), Some("bob"));
    assert_eq!(get("AWS:PrincipalAccount").as_deref(), Some(ACCT));
    assert_eq!(get("aws:principaltype").as_deref(), Some("User"));
    assert_eq!(get("aws:CurrentTime").as_deref(), Some("2026-01-02T03:04:05Z"));
    assert_eq!(get("aws:EpochTime").as_deref(), Some("1767323045"));
    assert_eq!(get("aws:SourceIp").as_deref(), Some("10.0.0.1"));
    assert_eq!(get("aws:SecureTransport").as_deref(), Some("true"));
    let s = RequestContext::new(session("app", "s1"), "x:y", "*");
    assert_eq!(
        s.get("aws:PrincipalArn").map(|v| v.values()[0].clone()),
        Some(format!("arn:aws:iam::{ACCT}:role/app"))
    );
    assert!(s.get("aws:username").is_none());
    let svc =
        RequestContext::new(Principal::service("ecs-tasks.amazonaws.com"), "sts:AssumeRole", "*");
    assert_eq!(
        svc.get("aws:PrincipalServiceName").map(|v| v.values()[0].as_str()),
        Some("ecs-tasks.amazonaws.com")
    );
    assert!(svc.get("aws:PrincipalArn").is_none());
    let root =
        RequestContext::new(Principal::from_arn(&format!("arn:aws:iam::{ACCT}:root")), "x:y", "*");
    assert_eq!(root.get("aws:PrincipalType").map(|v| v.values()[0].as_str()), Some("Account"));
}

// ---------------------------------------------------------------- parsing

#[test]
fn parses_iam_shapes() {
    // Statement as object; strings or arrays; no Version.
    let p = Policy::parse(
        r#"{"Statement": {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}}"#,
        PolicyKind::Identity,
    )
    .unwrap();
    assert_eq!(p.version(), Version::V2008_10_17);
    assert_eq!(p.statements().len(), 1);
    let p = Policy::parse(
        r#"{"Version": "2012-10-17", "Id": "x", "Statement": [
            {"Sid": "One", "Effect": "Deny", "NotAction": ["iam:*"], "NotResource": ["arn:aws:iam::*:role/x"]},
            {"Effect": "Allow", "Action": ["*"], "Resource": ["*"],
             "Condition": {"Bool": {"aws:SecureTransport": true}, "NumericLessThan": {"s3:max-keys": 10}}}]}"#,
        PolicyKind::Identity,
    )
    .unwrap();
    assert_eq!(p.id(), Some("x"));
    assert_eq!(p.statements()[0].sid(), Some("One"));
    assert_eq!(p.statements()[0].effect(), Effect::Deny);
    // Resource policy without Resource (ECR style); Principal forms.
    Policy::parse(
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Pull from anywhere!", "Effect": "Allow", "Principal": {"AWS": ["123456789012", "arn:aws:iam::123456789012:role/r"]}, "Action": "ecr:BatchGetImage"},
            {"Effect": "Allow", "Principal": {"Service": ["ecs.amazonaws.com"], "Federated": "cognito-identity.amazonaws.com"}, "Action": "ecr:*"},
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "ecr:*"}]}"#,
        PolicyKind::Resource,
    )
    .unwrap();
}

#[test]
fn parse_error_table() {
    use PolicyKind::*;
    let rows: Vec<(&str, PolicyKind, &str, &str, &str)> = vec![
        // (document, kind, message, element, name)
        ("{", Identity, "This policy contains invalid Json", "Policy", "bad json"),
        (
            "[]",
            Identity,
            "Syntax errors in policy. Policy: the policy must be a JSON object",
            "Policy",
            "not an object",
        ),
        (
            r#"{"Version":"2012-10-17"}"#,
            Identity,
            "Syntax errors in policy. Statement: missing required element Statement",
            "Statement",
            "no Statement",
        ),
        (
            r#"{"Version":"2013-01-01","Statement":[]}"#,
            Identity,
            "The policy must contain a valid version string",
            "Version",
            "bad version",
        ),
        (
            r#"{"Version":"2012-10-17","Statment":[]}"#,
            Identity,
            "Syntax errors in policy. Statment: unknown element Statment",
            "Statment",
            "misspelt top level",
        ),
        (
            r#"{"Statement":"x"}"#,
            Identity,
            "Syntax errors in policy. Statement: Statement must be an object or an array of objects",
            "Statement",
            "statement string",
        ),
        (
            r#"{"Statement":[1]}"#,
            Identity,
            "Syntax errors in policy. Statement[0]: a statement must be a JSON object",
            "Statement[0]",
            "statement number",
        ),
        (
            r#"{"Statement":{"Action":"s3:*","Resource":"*"}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Effect: missing required element Effect",
            "Statement[0].Effect",
            "no effect",
        ),
        (
            r#"{"Statement":{"Effect":"allow","Action":"s3:*","Resource":"*"}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Effect: Effect must be \"Allow\" or \"Deny\", not \"allow\"",
            "Statement[0].Effect",
            "effect case",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#,
            Identity,
            "Policy statement must contain actions.",
            "Statement[0].Action",
            "no action",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}"#,
            Identity,
            "Policy statement must contain actions.",
            "Statement[0].Action",
            "empty action",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*"}}"#,
            Identity,
            "Policy statement must contain resources.",
            "Statement[0].Resource",
            "no resource",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":[]}}"#,
            Identity,
            "Policy statement must contain resources.",
            "Statement[0].Resource",
            "empty resource",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","NotResource":[]}}"#,
            Resource,
            "Policy statement must contain resources.",
            "Statement[0].NotResource",
            "empty resource list in a resource policy",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"GetObject","Resource":"*"}}"#,
            Identity,
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            "Statement[0].Action",
            "no vendor",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","NotAction":":x","Resource":"*"}}"#,
            Identity,
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            "Statement[0].NotAction",
            "empty vendor",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","NotAction":"s3:x","Resource":"*"}}"#,
            Identity,
            "Syntax errors in policy. Statement[0]: a statement cannot have both Action and NotAction",
            "Statement[0]",
            "both actions",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","NotResource":"*"}}"#,
            Identity,
            "Syntax errors in policy. Statement[0]: a statement cannot have both Resource and NotResource",
            "Statement[0]",
            "both resources",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"bucket"}}"#,
            Identity,
            "Resource bucket must be in ARN format or \"*\".",
            "Statement[0].Resource",
            "resource not arn",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":5}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Resource: must be a string or an array of strings",
            "Statement[0].Resource",
            "resource number",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":["s3:*",1],"Resource":"*"}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Action: every entry must be a string",
            "Statement[0].Action",
            "action number",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
            Identity,
            "Policy document should not specify a principal.",
            "Statement[0].Principal",
            "principal in identity",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","NotPrincipal":"*","Action":"s3:*","Resource":"*"}}"#,
            PermissionsBoundary,
            "Policy document should not specify a principal.",
            "Statement[0].NotPrincipal",
            "principal in boundary",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}"#,
            Trust,
            "Missing required field Principal",
            "Statement[0].Principal",
            "trust without principal",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
            Resource,
            "Missing required field Principal",
            "Statement[0].Principal",
            "resource policy without principal",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Resource":"*"}}"#,
            Trust,
            "Has prohibited field Resource",
            "Statement[0].Resource",
            "trust with resource",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","NotResource":"*"}}"#,
            Trust,
            "Has prohibited field NotResource",
            "Statement[0].NotResource",
            "trust with notresource",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"sts:AssumeRole"}}"#,
            Trust,
            "Invalid principal in policy: \"AWS\":\"bob\"",
            "Statement[0].Principal.AWS",
            "principal not arn",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/*"},"Action":"sts:AssumeRole"}}"#,
            Trust,
            "Invalid principal in policy: \"AWS\":\"arn:aws:iam::123456789012:user/*\"",
            "Statement[0].Principal.AWS",
            "principal wildcard",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"Robot":"x"},"Action":"sts:AssumeRole"}}"#,
            Trust,
            "Invalid principal in policy: \"Robot\":\"x\"",
            "Statement[0].Principal.Robot",
            "principal kind",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"ecs *"},"Action":"sts:AssumeRole"}}"#,
            Trust,
            "Invalid principal in policy: \"Service\":\"ecs *\"",
            "Statement[0].Principal.Service",
            "service name",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"arn:aws:iam::123456789012:root","Action":"sts:AssumeRole"}}"#,
            Trust,
            "Syntax errors in policy. Statement[0].Principal: a principal must be \"*\" or an object such as {\"AWS\": ...}, not \"arn:aws:iam::123456789012:root\"",
            "Statement[0].Principal",
            "principal string",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","NotPrincipal":"*","Action":"s3:*"}}"#,
            Resource,
            "Syntax errors in policy. Statement[0]: a statement cannot have both Principal and NotPrincipal",
            "Statement[0]",
            "both principals",
        ),
        (
            r#"{"Statement":{"Sid":"has space","Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
            Identity,
            "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*",
            "Statement[0].Sid",
            "sid chars",
        ),
        (
            r#"{"Statement":[{"Sid":"A","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#,
            Identity,
            "Statement IDs (SID) in a single policy must be unique.",
            "Statement[1].Sid",
            "sid dup",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Conditions":{}}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Conditions: unknown element Conditions",
            "Statement[0].Conditions",
            "misspelt element",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEqual":{"aws:username":"x"}}}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Condition.StringEqual: Invalid Condition type : StringEqual",
            "Statement[0].Condition.StringEqual",
            "bad operator",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"NullIfExists":{"aws:username":"true"}}}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Condition.NullIfExists: Invalid Condition type : NullIfExists",
            "Statement[0].Condition.NullIfExists",
            "null ifexists",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"username":"x"}}}}"#,
            Identity,
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            "Statement[0].Condition.StringEquals.username",
            "key without vendor",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"aws:username":{"a":1}}}}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Condition.StringEquals.aws:username: a condition value must be a string, number or boolean",
            "Statement[0].Condition.StringEquals.aws:username",
            "condition value object",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":"x"}}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Condition.StringEquals: a condition operator must map keys to values",
            "Statement[0].Condition.StringEquals",
            "condition op not object",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":[]}}"#,
            Identity,
            "Syntax errors in policy. Statement[0].Condition: Condition must be an object",
            "Statement[0].Condition",
            "condition array",
        ),
        (
            r#"{"Version":2012,"Statement":[]}"#,
            Identity,
            "The policy must contain a valid version string",
            "Version",
            "version number",
        ),
    ];
    for (doc, kind, msg, element, name) in rows {
        let err = Policy::parse(doc, kind).err().unwrap_or_else(|| panic!("case {name}: parsed"));
        assert_eq!(err.to_string(), msg, "case {name}");
        assert_eq!(err.element(), element, "case {name}");
        assert_eq!(err.aws_code(), "MalformedPolicyDocument");
    }
}

#[test]
fn resource_policy_sids_may_have_spaces() {
    Policy::parse(
        r#"{"Statement":{"Sid":"Allow pulls","Effect":"Allow","Principal":"*","Action":"ecr:*"}}"#,
        PolicyKind::Resource,
    )
    .unwrap();
}

// ---------------------------------------------------------------- properties

const ACTIONS: [&str; 6] = ["ecs:*", "ecs:Describe*", "ecs:RunTask", "iam:*", "*", "ecs:?unTask"];
const RESOURCES: [&str; 5] = [
    "*",
    "arn:aws:ecs:*:*:cluster/*",
    "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
    "arn:aws:ecs:*:*:cluster/dev-*",
    "arn:aws:ecs:us-east-1:123456789012:*",
];
const REQ_ACTIONS: [&str; 4] =
    ["ecs:RunTask", "ecs:DescribeClusters", "iam:CreateUser", "s3:GetObject"];
const REQ_RESOURCES: [&str; 3] = [
    "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
    "arn:aws:ecs:us-east-1:123456789012:cluster/dev-1",
    "*",
];

fn arb_statement() -> impl Strategy<Value = serde_json::Value> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::subsequence(ACTIONS.to_vec(), 1..3),
        any::<bool>(),
        prop::sample::subsequence(RESOURCES.to_vec(), 1..3),
        prop::option::of(prop::sample::select(vec!["prod", "dev-*", "x"])),
    )
        .prop_map(|(allow, not_action, actions, not_resource, resources, cond)| {
            let mut s = serde_json::Map::new();
            s.insert("Effect".into(), json!(if allow { "Allow" } else { "Deny" }));
            s.insert((if not_action { "NotAction" } else { "Action" }).into(), json!(actions));
            s.insert(
                (if not_resource { "NotResource" } else { "Resource" }).into(),
                json!(resources),
            );
            if let Some(c) = cond {
                s.insert("Condition".into(), json!({"StringLikeIfExists": {"ecs:cluster": c}}));
            }
            serde_json::Value::Object(s)
        })
}

fn arb_policy() -> impl Strategy<Value = Vec<serde_json::Value>> {
    prop::collection::vec(arb_statement(), 0..4)
}

fn compile(stmts: &[serde_json::Value]) -> Policy {
    idp(json!({"Version": "2012-10-17", "Statement": stmts}))
}

proptest! {
    #[test]
    fn adding_a_deny_never_allows_more(
        policies in prop::collection::vec(arb_policy(), 0..4),
        extra in arb_statement(),
        at in 0usize..4,
        action in prop::sample::select(REQ_ACTIONS.to_vec()),
        resource in prop::sample::select(REQ_RESOURCES.to_vec()),
        cluster in prop::option::of(prop::sample::select(vec!["prod", "dev-1"])),
    ) {
        let mut ctx = RequestContext::new(user("bob"), action, resource);
        if let Some(c) = cluster { ctx.set("ecs:cluster", c); }
        let before: Vec<Policy> = policies.iter().map(|p| compile(p)).collect();
        let refs: Vec<&Policy> = before.iter().collect();
        let d0 = eval_id(&refs, &ctx);

        // The same statement as a Deny, added to one of the policies (or a new one).
        let mut deny = extra.clone();
        deny["Effect"] = json!("Deny");
        let mut after_src = policies.clone();
        if after_src.is_empty() || at >= after_src.len() { after_src.push(vec![deny]); } else { after_src[at].push(deny); }
        let after: Vec<Policy> = after_src.iter().map(|p| compile(p)).collect();
        let refs: Vec<&Policy> = after.iter().collect();
        let d1 = eval_id(&refs, &ctx);
        prop_assert!(d0.is_allowed() || !d1.is_allowed(), "a Deny turned {d0} into {d1}");
        // When that statement applies to the request, the answer is an explicit deny.
        let mut alone = extra.clone();
        alone["Effect"] = json!("Allow");
        if eval_id(&[&compile(&[alone])], &ctx).is_allowed() {
            prop_assert!(matches!(d1, Decision::ExplicitDeny(_)), "applicable Deny gave {d1}");
        }

        // And an Allow never takes an Allow away.
        let mut allow = extra;
        allow["Effect"] = json!("Allow");
        let mut after_src = policies;
        after_src.push(vec![allow]);
        let after: Vec<Policy> = after_src.iter().map(|p| compile(p)).collect();
        let refs: Vec<&Policy> = after.iter().collect();
        let d2 = eval_id(&refs, &ctx);
        prop_assert!(!d0.is_allowed() || d2.is_allowed(), "an Allow turned {d0} into {d2}");
    }

    #[test]
    fn boundary_never_widens(
        identity in arb_policy(),
        boundary in arb_policy(),
        action in prop::sample::select(REQ_ACTIONS.to_vec()),
        resource in prop::sample::select(REQ_RESOURCES.to_vec()),
    ) {
        let ctx = RequestContext::new(user("bob"), action, resource);
        let id = compile(&identity);
        let b = parse(PolicyKind::PermissionsBoundary, json!({"Version": "2012-10-17", "Statement": boundary}));
        let without = eval_id(&[&id], &ctx);
        let with = PolicySet { identity: vec![&id], boundary: Some(&b), ..Default::default() }.evaluate(&ctx);
        prop_assert!(without.is_allowed() || !with.is_allowed());
        // With a boundary, allowed means both allow on their own.
        if with.is_allowed() {
            prop_assert!(eval_id(&[&b], &ctx).is_allowed());
        }
    }

    /// The wildcard matcher agrees with a regex translation of the pattern.
    #[test]
    fn glob_agrees_with_regex(pat in "[ab*?]{0,8}", s in "[ab]{0,10}") {
        let re = format!(
            "^(?s:{})$",
            pat.chars().map(|c| match c { '*' => ".*".to_string(), '?' => ".".to_string(), c => c.to_string() }).collect::<String>()
        );
        let re = regex::Regex::new(&re).expect("valid regex");
        let p = stmt("Allow", json!("ecs:RunTask"), json!(format!("arn:aws:s3:::{pat}")));
        let ctx = RequestContext::new(user("bob"), "ecs:RunTask", &format!("arn:aws:s3:::{s}"));
        prop_assert_eq!(eval_id(&[&p], &ctx).is_allowed(), re.is_match(&s));
    }

    /// Parsing never panics, whatever the JSON.
    #[test]
    fn parse_never_panics(doc in "\\PC{0,200}") {
        let _ = Policy::parse(&doc, PolicyKind::Identity);
        let _ = Policy::parse(&doc, PolicyKind::Resource);
    }
}
