//! Trust between the server and agents (issue #10), end to end: `berth server --tls on`, a
//! join token from `berth token`, an agent that joins over TLS pinned to the generated CA and
//! runs a task with its own instance key, that key refused everything else, and the AWS CLI
//! over TLS with `--ca-bundle`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn token_cmd(s: &ServerProc, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(&s.data_dir)
        .env("BERTH_LOG", "warn")
        .output()
        .expect("berth token");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// POSTs `body` to `path`, SigV4-signed with (akid, secret) by botocore, over TLS trusting
/// the server's CA; returns (status, body).
fn signed_post(
    s: &ServerProc,
    path: &str,
    body: &Value,
    akid: &str,
    secret: &str,
) -> (u16, String) {
    const SCRIPT: &str = r#"
import sys, ssl, urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
endpoint, path, body, akid, secret, ca = sys.argv[1:7]
req = AWSRequest(method="POST", url=endpoint + path, data=body.encode(),
                 headers={"content-type": "application/json"})
SigV4Auth(Credentials(akid, secret), "ecs", "us-east-1").add_auth(req)
r = urllib.request.Request(endpoint + path, data=body.encode(), method="POST",
                           headers=dict(req.headers.items()))
try:
    resp = urllib.request.urlopen(r, context=ssl.create_default_context(cafile=ca), timeout=30)
    print(resp.status); print(resp.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &s.endpoint, path, &body.to_string(), akid, secret])
        .arg(s.ca_file())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let (status, rest) = text.split_once('\n').unwrap_or((&text, ""));
    (status.trim().parse().unwrap_or(0), rest.to_string())
}

fn wait_task(s: &ServerProc, arn: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.aws(&["ecs", "describe-tasks", "--tasks", arn]).json();
        let t = d["tasks"][0].clone();
        if t["lastStatus"] == status {
            return t;
        }
        assert!(Instant::now() < deadline, "task never became {status}: {t}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn an_agent_joins_over_tls_with_a_token_and_its_key_acts_for_its_instance_only() {
    require_demo_image();
    let s = ServerProc::start_with(bin(), &["--tls", "on"]).expect("server");
    assert!(s.endpoint.starts_with("https://127.0.0.1:"), "{}", s.endpoint);
    assert!(s.ca_file().exists());

    // The AWS CLI over TLS: with the CA it works, without it the certificate is refused.
    s.aws(&["ecs", "list-clusters"]).json();
    let mut bare = Command::new("aws");
    bare.args(["--endpoint-url", &s.endpoint, "ecs", "list-clusters"]);
    s.client_env(&mut bare);
    bare.env_remove("AWS_CA_BUNDLE");
    let out = bare.output().expect("aws");
    assert!(!out.status.success(), "an unpinned client must not trust the server's certificate");

    // A join token.
    let (ok, token, err) =
        token_cmd(&s, &["create", "--expires-in", "10m", "--description", "e2e"]);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("berth-join."), "{token}");
    let (ok, list, err) = token_cmd(&s, &["list"]);
    assert!(ok, "{err}");
    assert!(list.contains("active") && list.contains("e2e"), "{list}");

    // The agent joins with it, over TLS pinned to the CA, without the administrator's key.
    let mut agent =
        AgentProc::start_joining(bin(), &s, &token, &["--memory", "1024"]).expect("agent joins");
    let creds_path = agent.data_dir.join("instance-credentials.json");
    let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let creds: Value = serde_json::from_slice(&std::fs::read(&creds_path).unwrap()).unwrap();
    assert_eq!(creds["containerInstanceArn"], agent.instance_arn.as_str());
    let akid = creds["accessKeyId"].as_str().unwrap().to_string();
    let secret = creds["secretAccessKey"].as_str().unwrap().to_string();
    let (admin_akid, _) = s.admin_key().unwrap();
    assert_ne!(akid, admin_akid);

    // A task runs on it: its polls and reports go through with the instance key.
    s.register_task_definition(&serde_json::json!({"family": "trust", "containerDefinitions": [
        {"name": "web", "image": "berth-demo:latest", "memory": 16}]}));
    let run = s.aws(&["ecs", "run-task", "--task-definition", "trust"]).json();
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    wait_task(&s, &task, "RUNNING");

    // The instance key may not call anything else...
    let mut as_instance = Command::new("aws");
    as_instance.args(["--endpoint-url", &s.endpoint, "--ca-bundle"]).arg(s.ca_file()).args([
        "ecs",
        "run-task",
        "--task-definition",
        "trust",
    ]);
    s.client_env(&mut as_instance);
    as_instance.env("AWS_ACCESS_KEY_ID", &akid).env("AWS_SECRET_ACCESS_KEY", &secret);
    let refused = berth_testkit::AwsResult::from(as_instance.output().expect("aws"));
    let msg = refused.err("AccessDeniedException");
    assert!(msg.contains("RunTask"), "{msg}");

    // ...nor poll or report for another instance.
    let other = s
        .aws(&[
            "ecs",
            "register-container-instance",
            "--total-resources",
            "name=CPU,type=INTEGER,integerValue=1024",
            "name=MEMORY,type=INTEGER,integerValue=1024",
        ])
        .json();
    let other_arn = other["containerInstance"]["containerInstanceArn"].as_str().unwrap();
    let (status, body) = signed_post(
        &s,
        "/berth/agent/v1/poll",
        &serde_json::json!({"cluster": "default", "containerInstanceArn": other_arn, "seenVersion": 0, "waitSeconds": 0}),
        &akid,
        &secret,
    );
    assert!(status >= 400 && body.contains("AccessDeniedException"), "{status} {body}");
    let (status, body) = signed_post(
        &s,
        "/berth/agent/v1/report",
        &serde_json::json!({"cluster": "default", "task": task, "status": "STOPPED", "containerInstanceArn": other_arn}),
        &akid,
        &secret,
    );
    assert!(status >= 400 && body.contains("AccessDeniedException"), "{status} {body}");
    // The admin API is the administrator's alone.
    let (status, body) =
        signed_post(&s, "/berth/admin/v1/join-tokens/list", &serde_json::json!({}), &akid, &secret);
    assert!(status >= 400 && body.contains("AccessDeniedException"), "{status} {body}");

    // A revoked token joins nobody; the agent that joined keeps its key across a restart.
    let id = token.split('.').nth(1).unwrap().to_string();
    let (ok, out, err) = token_cmd(&s, &["revoke", &id]);
    assert!(ok && out.contains(&id), "{out}{err}");
    let again = AgentProc::start_joining(bin(), &s, &token, &["--memory", "512"]);
    let Err(e) = again else { panic!("a revoked token joined") };
    assert!(e.to_string().contains("AccessDeniedException"), "{e}");
    let instance = agent.instance_arn.clone();
    assert_eq!(agent.restart().expect("restarts"), instance, "the same instance, its saved key");

    s.aws(&["ecs", "stop-task", "--task", &task]).json();
    let t = wait_task(&s, &task, "STOPPED");
    assert_eq!(t["stopCode"], "UserInitiated");
}
