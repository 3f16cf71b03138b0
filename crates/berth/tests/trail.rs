//! The audit trail (issue #16), end to end against the real `berth server` with the real AWS
//! CLI and boto3: every call is recorded (allowed and denied, with who, from where and the
//! request parameters), `aws cloudtrail lookup-events` finds them by each lookup attribute and
//! pages them, sensitive request members are hidden (and appear nowhere in `trail.db`), and
//! bad lookups get CloudTrail's error codes. Needs no Docker.

use std::path::Path;
use std::process::Command;

use berth_testkit::{AwsResult, ServerProc};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn ok(s: &ServerProc, args: &[&str]) -> Value {
    let r = s.aws(args);
    assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
    r.json()
}

/// The events LookupEvents returns for one attribute (all pages, newest first).
fn lookup(s: &ServerProc, key: &str, value: &str) -> Vec<Value> {
    let attr = format!("AttributeKey={key},AttributeValue={value}");
    let r = ok(s, &["cloudtrail", "lookup-events", "--lookup-attributes", &attr]);
    r["Events"].as_array().cloned().unwrap_or_default()
}

fn record(e: &Value) -> Value {
    serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap()
}

#[test]
fn every_call_is_recorded_and_looked_up_with_secrets_hidden() {
    let s = ServerProc::start(bin()).expect("server");
    let secret = "trail-secret-value-8d1f2c";
    ok(&s, &["ecs", "create-cluster", "--cluster-name", "audited"]);
    ok(&s, &["ecs", "describe-clusters", "--clusters", "audited"]);
    ok(
        &s,
        &[
            "ssm",
            "put-parameter",
            "--name",
            "/trail/db-password",
            "--type",
            "SecureString",
            "--value",
            secret,
        ],
    );
    ok(&s, &["secretsmanager", "create-secret", "--name", "trail-db", "--secret-string", secret]);

    // A denied call: an IAM user without policies.
    ok(&s, &["iam", "create-user", "--user-name", "mallory"]);
    let key = ok(&s, &["iam", "create-access-key", "--user-name", "mallory"]);
    let mut cmd = Command::new("aws");
    cmd.arg("--endpoint-url").arg(&s.endpoint).args(["--output", "json"]);
    s.client_env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", key["AccessKey"]["AccessKeyId"].as_str().unwrap())
        .env("AWS_SECRET_ACCESS_KEY", key["AccessKey"]["SecretAccessKey"].as_str().unwrap())
        .args(["ecs", "delete-cluster", "--cluster", "audited"]);
    let denied = AwsResult::from(cmd.output().unwrap());
    denied.err("AccessDeniedException");

    // By event name: the allowed CreateCluster, with who, where from and what it asked.
    let created = lookup(&s, "EventName", "CreateCluster");
    assert_eq!(created.len(), 1, "{created:?}");
    let c = record(&created[0]);
    assert_eq!(c["eventSource"], "ecs.amazonaws.com");
    assert_eq!(c["requestParameters"]["clusterName"], "audited");
    assert_eq!(c["userIdentity"]["type"], "Root");
    assert_eq!(c["sourceIPAddress"], "127.0.0.1");
    assert!(c["userAgent"].as_str().unwrap_or_default().contains("aws-cli"), "{c}");
    assert_eq!(c["readOnly"], false);
    assert!(c.get("errorCode").is_none(), "{c}");
    assert_eq!(created[0]["Username"], "root");

    // The denied call, by user name: recorded with AccessDenied.
    let by_mallory = lookup(&s, "Username", "mallory");
    assert_eq!(by_mallory.len(), 1, "{by_mallory:?}");
    let d = record(&by_mallory[0]);
    assert_eq!(d["eventName"], "DeleteCluster");
    assert_eq!(d["errorCode"], "AccessDeniedException");
    assert!(d["errorMessage"].as_str().unwrap().contains("ecs:DeleteCluster"), "{d}");
    assert_eq!(d["userIdentity"]["type"], "IAMUser");

    // By resource name (the cluster, named by name or ARN), read-only flag, source, key.
    let on_cluster = lookup(&s, "ResourceName", "audited");
    let names: Vec<&str> = on_cluster.iter().map(|e| e["EventName"].as_str().unwrap()).collect();
    assert_eq!(names, ["DeleteCluster", "DescribeClusters", "CreateCluster"], "newest first");
    let reads = lookup(&s, "ReadOnly", "true");
    assert!(reads.iter().any(|e| e["EventName"] == "DescribeClusters"));
    assert!(reads.iter().all(|e| e["ReadOnly"] == "true"));
    assert_eq!(lookup(&s, "EventSource", "ssm.amazonaws.com").len(), 1);
    let admin_key = s.admin_key().unwrap().0;
    assert!(lookup(&s, "AccessKeyId", &admin_key).len() >= 4);

    // Secrets are hidden in the events and appear nowhere in the trail's file.
    let put = record(&lookup(&s, "EventName", "PutParameter")[0]);
    assert_eq!(put["requestParameters"]["Value"], "HIDDEN_DUE_TO_SECURITY_REASONS");
    assert_eq!(put["requestParameters"]["Name"], "/trail/db-password");
    let cs = record(&lookup(&s, "EventName", "CreateSecret")[0]);
    assert_eq!(cs["requestParameters"]["SecretString"], "HIDDEN_DUE_TO_SECURITY_REASONS");
    for f in ["trail.db", "trail.db-wal"] {
        if let Ok(bytes) = std::fs::read(s.data_dir.join(f)) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret is in {f}"
            );
        }
    }

    // Errors as CloudTrail's.
    let two = s.aws(&[
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=A",
        "AttributeKey=Username,AttributeValue=B",
    ]);
    two.err("InvalidLookupAttributesException");
    s.aws(&["cloudtrail", "lookup-events", "--max-results", "51"]).err("InvalidParameterException");
    s.aws(&["cloudtrail", "lookup-events", "--next-token", "nope"])
        .err("InvalidNextTokenException");

    // boto3's paginator walks every event exactly once, two per page.
    let out =
        s.python(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/test_trail.py")), &[]);
    assert!(
        out.status.success(),
        "test_trail.py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
