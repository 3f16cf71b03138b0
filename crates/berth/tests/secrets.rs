//! Secrets Manager, SSM Parameter Store and secrets in containers (issue #16), end to end
//! against one real `berth server` with the real AWS CLI and boto3 (`py/test_secrets.py`):
//! the APIs' cases (version stages, idempotency tokens, deletion and restore, policies, tags,
//! filters and paging, binary secrets, BatchGetSecretValue; parameters with versions, labels,
//! selectors, paths, filters, tiers, SecureString), then a task on a real
//! agent (joined with a join token, so it acts with its own instance key) whose container
//! gets a Secrets Manager secret, a JSON key of one and an SSM SecureString in its
//! environment through its execution role; a role without the permission, and a missing
//! secret, stop their tasks as ECS does. Finally the values are searched for in the whole
//! server data directory, the agent's, both logs, the task metadata endpoint, and
//! describe-tasks / describe-task-definition output: they appear nowhere.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn ok(s: &ServerProc, args: &[&str]) -> Value {
    let r = s.aws(args);
    assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
    if r.stdout.trim().is_empty() { Value::Null } else { r.json() }
}

/// The AWS CLI's side of the APIs (the cases in depth run through boto3, in one process:
/// `py/test_secrets.py`).
fn apis_with_the_cli(s: &ServerProc) {
    let created =
        ok(s, &["secretsmanager", "create-secret", "--name", "cli/db", "--secret-string", "first"]);
    let arn = created["ARN"].as_str().unwrap().to_string();
    let suffix = arn.strip_prefix("arn:aws:secretsmanager:us-east-1:123456789012:secret:cli/db-");
    assert!(suffix.is_some_and(|x| x.len() == 6), "{arn}");
    ok(
        s,
        &["secretsmanager", "put-secret-value", "--secret-id", &arn, "--secret-string", "second"],
    );
    let prev = ok(
        s,
        &[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            "cli/db",
            "--version-stage",
            "AWSPREVIOUS",
        ],
    );
    assert_eq!(prev["SecretString"], "first");
    let d = ok(s, &["secretsmanager", "describe-secret", "--secret-id", &arn]);
    assert!(d.get("SecretString").is_none() && !d.to_string().contains("second"), "{d}");
    assert_eq!(d["VersionIdsToStages"].as_object().unwrap().len(), 2, "{d}");
    ok(
        s,
        &[
            "secretsmanager",
            "delete-secret",
            "--secret-id",
            "cli/db",
            "--recovery-window-in-days",
            "7",
        ],
    );
    s.aws(&["secretsmanager", "get-secret-value", "--secret-id", "cli/db"])
        .err("InvalidRequestException");
    ok(
        s,
        &[
            "ssm",
            "put-parameter",
            "--name",
            "/cli/key",
            "--value",
            "sekrit",
            "--type",
            "SecureString",
        ],
    );
    s.aws(&["ssm", "put-parameter", "--name", "/cli/key", "--value", "x", "--type", "String"])
        .err("ParameterAlreadyExists");
    let p = ok(s, &["ssm", "get-parameter", "--name", "/cli/key", "--with-decryption"]);
    assert_eq!(p["Parameter"]["Value"], "sekrit");
    let by_path = ok(s, &["ssm", "get-parameters-by-path", "--path", "/cli"]);
    assert_ne!(by_path["Parameters"][0]["Value"], "sekrit", "sealed without decryption");
    s.aws(&["ssm", "get-parameter", "--name", "/cli/none"]).err("ParameterNotFound");
}

fn wait_task(s: &ServerProc, arn: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.aws(&["ecs", "describe-tasks", "--cluster", "default", "--tasks", arn]).json();
        let t = d["tasks"][0].clone();
        if pred(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "task never got there: {t}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn run(s: &ServerProc, family: &str) -> String {
    let r = ok(s, &["ecs", "run-task", "--cluster", "default", "--task-definition", family]);
    r["tasks"][0]["taskArn"].as_str().unwrap_or_else(|| panic!("{r}")).to_string()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn secrets_and_parameters_reach_the_container_and_nothing_else() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    apis_with_the_cli(&s);
    let out =
        s.python(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_secrets.py"), &[]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && report.contains("Ran 6 tests"), "boto3:\n{report}");

    // The values a task gets: distinctive, so a search cannot hit anything else.
    let nonce = format!(
        "{:x}{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos(),
        std::process::id()
    );
    let db_pass = format!("dbpass-{nonce}");
    let api_key = format!("apikey-{nonce}");
    let token = format!("ssmtoken-{nonce}");
    let db = ok(
        &s,
        &["secretsmanager", "create-secret", "--name", "task/db", "--secret-string", &db_pass],
    );
    let db_arn = db["ARN"].as_str().unwrap().to_string();
    let doc = json!({"api_key": api_key, "user": "svc"}).to_string();
    let js = ok(
        &s,
        &["secretsmanager", "create-secret", "--name", "task/json", "--secret-string", &doc],
    );
    let js_arn = js["ARN"].as_str().unwrap().to_string();
    ok(
        &s,
        &[
            "ssm",
            "put-parameter",
            "--name",
            "/task/token",
            "--value",
            &token,
            "--type",
            "SecureString",
        ],
    );
    // The execution role may read them; another role may not.
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    .to_string();
    for role in ["exec", "bare"] {
        ok(
            &s,
            &["iam", "create-role", "--role-name", role, "--assume-role-policy-document", &trust],
        );
    }
    let allow = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": "arn:aws:secretsmanager:us-east-1:123456789012:secret:task/*"},
        {"Effect": "Allow", "Action": "ssm:GetParameters",
         "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/task/*"}]})
    .to_string();
    ok(
        &s,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "exec",
            "--policy-name",
            "secrets",
            "--policy-document",
            &allow,
        ],
    );
    let role_arn = |r: &str| format!("arn:aws:iam::123456789012:role/{r}");
    let td = |family: &str, role: &str, secrets: Value| {
        s.register_task_definition(&json!({"family": family, "executionRoleArn": role_arn(role),
            "containerDefinitions": [{"name": "app", "image": "berth-demo:latest", "memory": 16,
            "command": ["-print-env"], "environment": [{"name": "PLAIN", "value": "visible"}],
            "secrets": secrets}]}))
    };
    td(
        "with-secrets",
        "exec",
        json!([
        {"name": "DB_PASS", "valueFrom": db_arn},
        {"name": "API_KEY", "valueFrom": format!("{js_arn}:api_key::")},
        {"name": "TOKEN", "valueFrom": "/task/token"}]),
    );
    td("denied", "bare", json!([{"name": "DB_PASS", "valueFrom": db_arn}]));
    td(
        "missing",
        "exec",
        json!([{"name": "X",
        "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:task/none-AbCdEf"}]),
    );

    // An agent that acts with its own instance key.
    let out = Command::new(bin())
        .args(["token", "create", "--expires-in", "10m", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .expect("berth token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let join = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let agent = AgentProc::start_joining(bin(), &s, &join, &["--memory", "1024"]).expect("agent");

    let arn = run(&s, "with-secrets");
    wait_task(&s, &arn, |t| t["lastStatus"] == "RUNNING");
    let ids = String::from_utf8(
        Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=com.amazonaws.ecs.task-arn={arn}")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id =
        ids.lines().next().unwrap_or_else(|| panic!("no container:\n{}", agent.log())).to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let env = loop {
        let o = Command::new("docker").args(["logs", &id]).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if text.contains("PLAIN=visible") {
            break text;
        }
        assert!(Instant::now() < deadline, "no env printed: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for want in
        [format!("DB_PASS={db_pass}"), format!("API_KEY={api_key}"), format!("TOKEN={token}")]
    {
        assert!(env.lines().any(|l| l == want), "{want} missing from the container's env:\n{env}");
    }

    // Denied and missing secrets stop their tasks as ECS does.
    for (family, why) in [("denied", "AccessDenied"), ("missing", "ResourceNotFoundException")] {
        let t = wait_task(&s, &run(&s, family), |t| t["lastStatus"] == "STOPPED");
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(
                "ResourceInitializationError: unable to pull secrets or registry auth"
            ) && reason.contains(why),
            "{family}: {t}"
        );
        assert_eq!(t["stopCode"], "TaskFailedToStart", "{t}");
    }

    // The values appear nowhere but in the container.
    let metadata_uri = env
        .lines()
        .find_map(|l| l.strip_prefix("ECS_CONTAINER_METADATA_URI_V4="))
        .expect("a metadata URI")
        .to_string();
    let mut outputs = vec![
        ok(&s, &["ecs", "describe-tasks", "--cluster", "default", "--tasks", &arn]).to_string(),
        ok(&s, &["ecs", "describe-task-definition", "--task-definition", "with-secrets"])
            .to_string(),
        ok(&s, &["ecs", "list-tasks", "--cluster", "default"]).to_string(),
        agent.log(),
        std::fs::read_to_string(s.data_dir.with_extension("log")).unwrap_or_default(),
    ];
    for path in ["", "/task"] {
        let o =
            Command::new("curl").args(["-sf", &format!("{metadata_uri}{path}")]).output().unwrap();
        assert!(o.status.success(), "metadata {path}: {o:?}");
        outputs.push(String::from_utf8_lossy(&o.stdout).into_owned());
    }
    for value in [&db_pass, &api_key, &token] {
        for (i, o) in outputs.iter().enumerate() {
            assert!(!o.contains(value.as_str()), "output {i} holds {value}:\n{o}");
        }
        let found = files_containing(&s.data_dir, value);
        assert!(found.is_empty(), "server data dir: {found:?}");
        let found = files_containing(&agent.data_dir, value);
        assert!(found.is_empty(), "agent data dir: {found:?}");
    }
    drop(agent);
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=com.amazonaws.ecs.task-arn={arn}")])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "containers left behind");
}
