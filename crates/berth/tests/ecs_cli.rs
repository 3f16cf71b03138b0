//! End to end with the real AWS CLI against the real `berth server` binary.

use std::path::Path;

use berth_testkit::{ACCOUNT_ID, ServerProc};
use serde_json::{Value, json};

fn server() -> ServerProc {
    ServerProc::start(Path::new(env!("CARGO_BIN_EXE_berth"))).expect("server starts")
}

fn write_json(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    format!("file://{}", p.display())
}

#[test]
fn clusters_with_the_aws_cli() {
    let s = server();
    let arn = format!("arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/web");

    let created = s
        .aws(&[
            "ecs",
            "create-cluster",
            "--cluster-name",
            "web",
            "--tags",
            "key=team,value=core",
            "--settings",
            "name=containerInsights,value=enabled",
        ])
        .json();
    assert_eq!(created["cluster"]["clusterArn"], arn);
    assert_eq!(created["cluster"]["status"], "ACTIVE");
    assert_eq!(
        created["cluster"]["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );

    // Idempotent by name: the same cluster comes back.
    let again = s.aws(&["ecs", "create-cluster", "--cluster-name", "web"]).json();
    assert_eq!(again["cluster"]["clusterArn"], arn);
    assert_eq!(again["cluster"]["tags"], json!([{"key": "team", "value": "core"}]));

    // `default` is what ECS uses when no name is given.
    let default = s.aws(&["ecs", "create-cluster"]).json();
    assert_eq!(default["cluster"]["clusterName"], "default");

    let d = s
        .aws(&[
            "ecs",
            "describe-clusters",
            "--clusters",
            "web",
            &arn,
            "nope",
            "--include",
            "TAGS",
            "STATISTICS",
            "SETTINGS",
        ])
        .json();
    assert_eq!(d["clusters"].as_array().unwrap().len(), 2);
    assert_eq!(d["clusters"][0]["registeredContainerInstancesCount"], 0);
    assert_eq!(d["clusters"][0]["tags"], json!([{"key": "team", "value": "core"}]));
    assert!(
        d["clusters"][0]["statistics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|kv| kv["name"] == "runningEC2TasksCount")
    );
    assert_eq!(
        d["failures"],
        json!([{"arn": format!("arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/nope"), "reason": "MISSING"}])
    );
    // Without include, no tags and no settings.
    let plain = s.aws(&["ecs", "describe-clusters", "--clusters", "web"]).json();
    assert_eq!(plain["clusters"][0]["tags"], json!([]));
    assert!(plain["clusters"][0].get("settings").is_none());

    let list = s.aws(&["ecs", "list-clusters"]).json();
    assert_eq!(
        list["clusterArns"],
        json!([format!("arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/default"), arn])
    );

    let upd = s
        .aws(&[
            "ecs",
            "update-cluster-settings",
            "--cluster",
            "web",
            "--settings",
            "name=containerInsights,value=disabled",
        ])
        .json();
    assert_eq!(upd["cluster"]["settings"][0]["value"], "disabled");

    // Tags by ARN.
    s.aws(&["ecs", "tag-resource", "--resource-arn", &arn, "--tags", "key=env,value=prod"]).json();
    s.aws(&["ecs", "untag-resource", "--resource-arn", &arn, "--tag-keys", "team"]).json();
    let tags = s.aws(&["ecs", "list-tags-for-resource", "--resource-arn", &arn]).json();
    assert_eq!(tags["tags"], json!([{"key": "env", "value": "prod"}]));
    s.aws(&["ecs", "tag-resource", "--resource-arn", &arn, "--tags", "key=aws:x,value=1"])
        .err("InvalidParameterException");

    // Delete: INACTIVE, still describable, gone from the list; unknown clusters are errors.
    let del = s.aws(&["ecs", "delete-cluster", "--cluster", "web"]).json();
    assert_eq!(del["cluster"]["status"], "INACTIVE");
    let d = s.aws(&["ecs", "describe-clusters", "--clusters", "web"]).json();
    assert_eq!(d["clusters"][0]["status"], "INACTIVE");
    let list = s.aws(&["ecs", "list-clusters"]).json();
    assert_eq!(list["clusterArns"].as_array().unwrap().len(), 1);
    s.aws(&["ecs", "delete-cluster", "--cluster", "web"]).err("ClusterNotFoundException");
    s.aws(&[
        "ecs",
        "update-cluster-settings",
        "--cluster",
        "nope",
        "--settings",
        "name=containerInsights,value=enabled",
    ])
    .err("ClusterNotFoundException");
    s.aws(&["ecs", "create-cluster", "--cluster-name", "bad name"])
        .err("InvalidParameterException");
    // Re-creating a deleted cluster makes it ACTIVE again.
    let back = s.aws(&["ecs", "create-cluster", "--cluster-name", "web"]).json();
    assert_eq!(back["cluster"]["status"], "ACTIVE");
}

#[test]
fn task_definitions_with_the_aws_cli() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let td = json!({
        "family": "hello",
        "containerDefinitions": [{
            "name": "web",
            "image": "berth-demo:latest",
            "memory": 64,
            "cpu": 128,
            "essential": true,
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "environment": [{"name": "GREETING", "value": "Hello"}],
            "healthCheck": {"command": ["CMD", "/hello", "-check"], "interval": 5, "timeout": 2, "retries": 3}
        }],
        "tags": [{"key": "app", "value": "hello"}]
    });
    let input = write_json(tmp.path(), "td.json", &td);
    let r1 = s.aws(&["ecs", "register-task-definition", "--cli-input-json", &input]).json();
    let t = &r1["taskDefinition"];
    let arn1 = format!("arn:aws:ecs:us-east-1:{ACCOUNT_ID}:task-definition/hello:1");
    assert_eq!(t["taskDefinitionArn"], arn1);
    assert_eq!(t["revision"], 1);
    assert_eq!(t["status"], "ACTIVE");
    assert_eq!(t["containerDefinitions"][0]["portMappings"][0]["protocol"], "tcp");
    assert!(t["registeredAt"].is_number());
    assert_eq!(t["registeredBy"], format!("arn:aws:iam::{ACCOUNT_ID}:root"));
    assert!(t["compatibilities"].as_array().unwrap().contains(&json!("EC2")));
    assert_eq!(r1["tags"], json!([{"key": "app", "value": "hello"}]));

    let r2 = s.aws(&["ecs", "register-task-definition", "--cli-input-json", &input]).json();
    assert_eq!(r2["taskDefinition"]["revision"], 2);

    // By family (latest ACTIVE), family:revision and ARN.
    let latest = s.aws(&["ecs", "describe-task-definition", "--task-definition", "hello"]).json();
    assert_eq!(latest["taskDefinition"]["revision"], 2);
    // As ECS answers (describe-task-definition's example): `tags` empty without include TAGS.
    assert_eq!(latest["tags"], json!([]));
    let one = s
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "hello:1",
            "--include",
            "TAGS",
        ])
        .json();
    assert_eq!(one["taskDefinition"]["revision"], 1);
    assert_eq!(one["tags"], json!([{"key": "app", "value": "hello"}]));
    let by_arn = s.aws(&["ecs", "describe-task-definition", "--task-definition", &arn1]).json();
    assert_eq!(
        by_arn["taskDefinition"]["containerDefinitions"],
        one["taskDefinition"]["containerDefinitions"]
    );
    s.aws(&["ecs", "describe-task-definition", "--task-definition", "nope"]).err("ClientException");

    // Pagination across pages: the CLI follows nextToken with --page-size.
    for _ in 0..23 {
        s.aws(&["ecs", "register-task-definition", "--cli-input-json", &input]).json();
    }
    let all = s
        .aws(&[
            "ecs",
            "list-task-definitions",
            "--family-prefix",
            "hello",
            "--sort",
            "DESC",
            "--page-size",
            "7",
        ])
        .json();
    let arns: Vec<&str> =
        all["taskDefinitionArns"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(arns.len(), 25);
    assert!(arns[0].ends_with("hello:25") && arns[24].ends_with("hello:1"), "{arns:?}");
    let first_page =
        s.aws(&["ecs", "list-task-definitions", "--max-items", "10", "--page-size", "4"]).json();
    assert_eq!(first_page["taskDefinitionArns"].as_array().unwrap().len(), 10);
    assert!(first_page["NextToken"].is_string());

    // Deregister: INACTIVE, still describable by revision, no longer the family's latest.
    let dereg =
        s.aws(&["ecs", "deregister-task-definition", "--task-definition", "hello:25"]).json();
    assert_eq!(dereg["taskDefinition"]["status"], "INACTIVE");
    assert!(dereg["taskDefinition"]["deregisteredAt"].is_number());
    let latest = s.aws(&["ecs", "describe-task-definition", "--task-definition", "hello"]).json();
    assert_eq!(latest["taskDefinition"]["revision"], 24);
    let inactive = s.aws(&["ecs", "list-task-definitions", "--status", "INACTIVE"]).json();
    assert_eq!(
        inactive["taskDefinitionArns"],
        json!([format!("arn:aws:ecs:us-east-1:{ACCOUNT_ID}:task-definition/hello:25")])
    );

    let families =
        s.aws(&["ecs", "list-task-definition-families", "--family-prefix", "hel"]).json();
    assert_eq!(families["families"], json!(["hello"]));

    // Delete needs INACTIVE first.
    let del = s
        .aws(&["ecs", "delete-task-definitions", "--task-definitions", "hello:25", "hello:24"])
        .json();
    assert_eq!(del["taskDefinitions"][0]["status"], "DELETE_IN_PROGRESS");
    assert_eq!(del["failures"][0]["arn"], "hello:24");

    // A new registration after deregistrations still gets the next revision.
    let r26 = s.aws(&["ecs", "register-task-definition", "--cli-input-json", &input]).json();
    assert_eq!(r26["taskDefinition"]["revision"], 26);
}

#[test]
fn invalid_task_definitions_name_the_field() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            json!({"family": "x", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64, "essential": false}]}),
            "ClientException",
            "essential",
        ),
        (
            json!({"family": "x", "containerDefinitions": [{"name": "a", "image": "i"}]}),
            "ClientException",
            "memory",
        ),
        (
            json!({"family": "x", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc", "cpu": "256", "memory": "4096",
                 "containerDefinitions": [{"name": "a", "image": "i"}]}),
            "ClientException",
            "Fargate",
        ),
        (
            json!({"family": "bad family!", "containerDefinitions": [{"name": "a", "image": "i", "memory": 64}]}),
            "ClientException",
            "amily",
        ),
    ];
    for (i, (td, code, needle)) in cases.iter().enumerate() {
        let input = write_json(tmp.path(), &format!("bad{i}.json"), td);
        let out = s.aws(&["ecs", "register-task-definition", "--cli-input-json", &input]);
        let msg = out.err(code);
        assert!(msg.contains(needle), "case {i}: expected '{needle}' in {msg}");
    }
    // Nothing was stored by the refused requests.
    let fams = s.aws(&["ecs", "list-task-definition-families"]).json();
    assert_eq!(fams["families"], json!([]));
}

#[test]
fn authentication_failures_use_aws_codes() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let (akid, _secret) = s.admin_key().unwrap();

    let run_with = |creds: &str| {
        let path = tmp.path().join("creds");
        std::fs::write(&path, creds).unwrap();
        let mut cmd = std::process::Command::new("aws");
        cmd.args(["--endpoint-url", &s.endpoint, "ecs", "list-clusters"]);
        s.client_env(&mut cmd);
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", &path);
        berth_testkit::AwsResult::from(cmd.output().unwrap())
    };
    run_with(&format!(
        "[default]\naws_access_key_id = {akid}\naws_secret_access_key = wrongwrongwrong\n"
    ))
    .err("InvalidSignatureException");
    run_with(
        "[default]\naws_access_key_id = AKIAUNKNOWNUNKNOWN00\naws_secret_access_key = whatever\n",
    )
    .err("UnrecognizedClientException");
    // A region AWS does not have is refused with a message that says what to do (every
    // real region is served: tests/py/test_regions.py).
    let out = s.aws(&["--region", "xx-bogus-1", "ecs", "list-clusters"]);
    let msg = out.err("InvalidSignatureException");
    assert!(msg.contains("valid region, not 'xx-bogus-1'") && msg.contains("us-east-1"), "{msg}");
}

#[test]
fn unimplemented_operations_say_so() {
    let s = server();
    let out = s.aws(&["ecs", "list-daemons"]);
    assert!(out.err("UnsupportedFeatureException").contains("ListDaemons"));
    // Implemented since issue #17: an unknown namespace is ECS's own error.
    let out = s.aws(&["ecs", "list-services-by-namespace", "--namespace", "ns"]);
    assert!(out.err("NamespaceNotFoundException").contains("'ns'"));
}

#[test]
fn credentials_file_is_private_and_stable_across_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = server();
    let before = s.admin_key().unwrap();
    let mode = std::fs::metadata(s.credentials_file()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    s.aws(&["ecs", "create-cluster", "--cluster-name", "kept"]).json();
    std::fs::remove_file(s.credentials_file()).unwrap();
    s.restart_after_kill9().unwrap();
    assert_eq!(
        s.admin_key().unwrap(),
        before,
        "a restart keeps the same key and rewrites the file"
    );
    let d = s.aws(&["ecs", "describe-clusters", "--clusters", "kept"]).json();
    assert_eq!(d["clusters"][0]["status"], "ACTIVE");
}
