//! AccessDenied messages, context keys, and the parser's shapes and errors.

use super::*;

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
