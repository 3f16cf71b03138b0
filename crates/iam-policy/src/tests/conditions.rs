//! Condition operators, set qualifiers and policy variables.

use super::*;

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

#[test]
fn policies_say_which_keys_they_read() {
    let cases: &[(serde_json::Value, bool)] = &[
        // As a condition key, any case.
        (
            json!({"Effect": "Allow", "Action": "ecs:DeleteCluster", "Resource": "*",
                "Condition": {"StringEquals": {"aws:resourcetag/team": "blue"}}}),
            true,
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*",
                "Condition": {"Null": {"aws:ResourceTag/team": "false"}}}),
            true,
        ),
        // As a policy variable in a Resource or in a condition value.
        (
            json!({"Effect": "Allow", "Action": "ecs:*",
                "Resource": "arn:aws:ecs:*:*:cluster/${aws:ResourceTag/team}-*"}),
            true,
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*",
                "Condition": {"StringEquals": {"aws:PrincipalTag/team": "${aws:ResourceTag/team}"}}}),
            true,
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*",
                "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:ecs:*:*:cluster/${aws:ResourceTag/c}"}}}),
            true,
        ),
        // Other tag keys are not resource tags.
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestTag/team": "blue", "aws:PrincipalTag/x": "y"},
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}}),
            false,
        ),
        (json!({"Effect": "Allow", "Action": "*", "Resource": "*"}), false),
    ];
    for (statement, want) in cases {
        let p = idp(json!({"Version": "2012-10-17", "Statement": [statement]}));
        assert_eq!(p.mentions_key("aws:ResourceTag/"), *want, "{statement}");
    }
    let p = idp(json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"aws:RequestTag/a": "b"}}}]}));
    assert!(p.mentions_key("AWS:REQUESTTAG/"));
}
