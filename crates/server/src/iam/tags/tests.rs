use super::*;

fn tags(pairs: &[(&str, &str)]) -> Option<RequestTags> {
    let tags: Vec<(String, String)> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Some(RequestTags { keys: tags.iter().map(|(k, _)| k.clone()).collect(), tags })
}

fn keys(ks: &[&str]) -> Option<RequestTags> {
    Some(RequestTags { tags: vec![], keys: ks.iter().map(|k| k.to_string()).collect() })
}

#[test]
fn json_requests_carry_their_tags() {
    let blue = tags(&[("team", "blue"), ("env", "dev")]);
    let cases: &[(&str, &str, &str, Option<RequestTags>)] = &[
        (
            "ecs",
            "CreateCluster",
            r#"{"clusterName":"c","tags":[{"key":"team","value":"blue"},{"key":"env","value":"dev"}]}"#,
            blue.clone(),
        ),
        ("ecs", "CreateCluster", r#"{"clusterName":"c"}"#, None),
        ("ecs", "CreateCluster", r#"{"clusterName":"c","tags":[]}"#, None),
        (
            "ecs",
            "RunTask",
            r#"{"taskDefinition":"t","tags":[{"key":"a","value":""}]}"#,
            tags(&[("a", "")]),
        ),
        (
            "ecs",
            "CreateService",
            r#"{"serviceName":"s","tags":[{"key":"a","value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        (
            "ecs",
            "RegisterTaskDefinition",
            r#"{"family":"f","tags":[{"key":"a","value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        (
            "ecs",
            "CreateTaskSet",
            r#"{"service":"s","tags":[{"key":"a","value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        (
            "ecs",
            "CreateCapacityProvider",
            r#"{"name":"p","tags":[{"key":"a","value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        (
            "ecs",
            "TagResource",
            r#"{"resourceArn":"x","tags":[{"key":"a","value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        ("ecs", "UntagResource", r#"{"resourceArn":"x","tagKeys":["a","b"]}"#, keys(&["a", "b"])),
        ("ecs", "UntagResource", r#"{"resourceArn":"x","tagKeys":[]}"#, None),
        // Operations that carry no tags, whatever their body says.
        ("ecs", "DescribeClusters", r#"{"tags":[{"key":"a","value":"b"}]}"#, None),
        ("ecs", "UpdateService", r#"{"tags":[{"key":"a","value":"b"}]}"#, None),
        (
            "logs",
            "CreateLogGroup",
            r#"{"logGroupName":"g","tags":{"env":"dev","team":"blue"}}"#,
            tags(&[("env", "dev"), ("team", "blue")]),
        ),
        ("logs", "TagResource", r#"{"resourceArn":"x","tags":{"a":"b"}}"#, tags(&[("a", "b")])),
        ("logs", "TagLogGroup", r#"{"logGroupName":"g","tags":{"a":"b"}}"#, tags(&[("a", "b")])),
        ("logs", "UntagResource", r#"{"resourceArn":"x","tagKeys":["a"]}"#, keys(&["a"])),
        ("logs", "UntagLogGroup", r#"{"logGroupName":"g","tags":["a"]}"#, keys(&["a"])),
        (
            "ecr",
            "CreateRepository",
            r#"{"repositoryName":"r","tags":[{"Key":"a","Value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        (
            "ecr",
            "TagResource",
            r#"{"resourceArn":"x","tags":[{"Key":"a","Value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        ("ecr", "UntagResource", r#"{"resourceArn":"x","tagKeys":["a"]}"#, keys(&["a"])),
        ("ecr", "DescribeRepositories", r#"{"tags":[{"Key":"a","Value":"b"}]}"#, None),
        (
            "secretsmanager",
            "CreateSecret",
            r#"{"Name":"s","Tags":[{"Key":"a","Value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        (
            "secretsmanager",
            "TagResource",
            r#"{"SecretId":"s","Tags":[{"Key":"a","Value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        ("secretsmanager", "UntagResource", r#"{"SecretId":"s","TagKeys":["a"]}"#, keys(&["a"])),
        (
            "ssm",
            "PutParameter",
            r#"{"Name":"p","Tags":[{"Key":"a","Value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        (
            "ssm",
            "AddTagsToResource",
            r#"{"ResourceId":"p","Tags":[{"Key":"a","Value":"b"}]}"#,
            tags(&[("a", "b")]),
        ),
        (
            "ssm",
            "RemoveTagsFromResource",
            r#"{"ResourceId":"p","TagKeys":["a","c"]}"#,
            keys(&["a", "c"]),
        ),
        ("ssm", "PutParameter", "not json", None),
    ];
    for (service, op, body, want) in cases {
        let got = request_tags(service, op, Body::Json(body.as_bytes()));
        assert_eq!(&got, want, "{service}:{op} {body}");
    }
}

#[test]
fn form_requests_carry_their_tags() {
    let form = |s: &str| Form::parse(s.as_bytes(), berth_wire::query::Flavor::Query);
    let cases: &[(&str, &str, &str, Option<RequestTags>)] = &[
        (
            "iam",
            "CreateUser",
            "Action=CreateUser&UserName=u&Tags.member.1.Key=team&Tags.member.1.Value=blue&Tags.member.2.Key=env&Tags.member.2.Value=dev",
            tags(&[("team", "blue"), ("env", "dev")]),
        ),
        ("iam", "CreateUser", "Action=CreateUser&UserName=u", None),
        (
            "iam",
            "TagRole",
            "Action=TagRole&RoleName=r&Tags.member.1.Key=a&Tags.member.1.Value=b",
            tags(&[("a", "b")]),
        ),
        (
            "iam",
            "UntagUser",
            "Action=UntagUser&UserName=u&TagKeys.member.1=a&TagKeys.member.2=b",
            keys(&["a", "b"]),
        ),
        (
            "elasticloadbalancing",
            "CreateLoadBalancer",
            "Action=CreateLoadBalancer&Name=lb&Tags.member.1.Key=a&Tags.member.1.Value=b",
            tags(&[("a", "b")]),
        ),
        (
            "elasticloadbalancing",
            "AddTags",
            "Action=AddTags&ResourceArns.member.1=x&Tags.member.1.Key=a",
            tags(&[("a", "")]),
        ),
        (
            "elasticloadbalancing",
            "RemoveTags",
            "Action=RemoveTags&ResourceArns.member.1=x&TagKeys.member.1=a",
            keys(&["a"]),
        ),
        // EC2's tags are TagSpecifications: not read.
        ("ec2", "CreateVpc", "Action=CreateVpc&Tags.member.1.Key=a&Tags.member.1.Value=b", None),
    ];
    for (service, op, body, want) in cases {
        let f = form(body);
        let got = request_tags(service, op, Body::Form(&f));
        assert_eq!(&got, want, "{service}:{op} {body}");
    }
}

#[test]
fn stored_tags_read_from_records_of_any_shape() {
    let cluster: Tagged = serde_json::from_str(
        r#"{"name":"c","status":"ACTIVE","tags":[{"key":"team","value":"blue"},{"key":"k"}],"createdAt":1.0}"#,
    )
    .unwrap();
    assert_eq!(
        cluster.pairs(),
        vec![("team".to_string(), "blue".to_string()), ("k".to_string(), String::new())]
    );
    let untagged: Tagged = serde_json::from_str(r#"{"name":"c"}"#).unwrap();
    assert!(untagged.pairs().is_empty());
    let task: TaggedTask =
        serde_json::from_str(r#"{"id":"t","task":{"tags":[{"key":"a","value":"b"}]}}"#).unwrap();
    assert_eq!(task.task.pairs(), vec![("a".to_string(), "b".to_string())]);
}
