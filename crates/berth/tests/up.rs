//! `berth up`: a control plane and an agent in one process. A task started through it keeps
//! running across a clean stop (Ctrl-C) and is adopted by the next `berth up`.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::ServerProc;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Removes every container of the instance when dropped (the test's own cleanup).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        berth_testkit::remove_instance_objects(&self.0);
    }
}

#[test]
fn berth_up_runs_tasks_and_adopts_them_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("up");
    let mut up =
        ServerProc::start_up(bin(), &data, &["--memory", "1024"]).expect("berth up starts");
    let list = up.aws(&["ecs", "list-container-instances"]).json();
    let instance =
        list["containerInstanceArns"][0].as_str().expect("the host is registered").to_string();
    let _cleanup = Cleanup(instance.clone());

    up.register_task_definition(&serde_json::json!({"family": "up", "containerDefinitions": [
        {"name": "web", "image": "berth-demo:latest", "memory": 16, "portMappings": [{"containerPort": 8080}]}]}));
    let run = up.aws(&["ecs", "run-task", "--task-definition", "up"]).json();
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    up.aws(&["ecs", "wait", "tasks-running", "--tasks", &arn]).json();

    // Ctrl-C stops berth up cleanly; the task's container keeps running.
    assert!(up.interrupt(), "berth up exits 0 on Ctrl-C");
    let running = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=com.amazonaws.ecs.task-arn={arn}")])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&running.stdout).trim().is_empty(),
        "the task's container survives"
    );

    // The next berth up is the same instance and adopts the task.
    let up2 = ServerProc::start_up(bin(), &data, &["--memory", "1024"]).expect("berth up restarts");
    let list = up2.aws(&["ecs", "list-container-instances"]).json();
    assert_eq!(list["containerInstanceArns"], serde_json::json!([instance]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = up2
            .aws(&["ecs", "describe-container-instances", "--container-instances", &instance])
            .json();
        if d["containerInstances"][0]["agentConnected"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the agent never reconnected");
        std::thread::sleep(Duration::from_millis(300));
    }
    let t = up2.aws(&["ecs", "describe-tasks", "--tasks", &arn]).json();
    assert_eq!(t["tasks"][0]["lastStatus"], "RUNNING");
    up2.aws(&["ecs", "stop-task", "--task", &arn]).json();
    up2.aws(&["ecs", "wait", "tasks-stopped", "--tasks", &arn]).json();
    let t = up2.aws(&["ecs", "describe-tasks", "--tasks", &arn]).json();
    assert_eq!(t["tasks"][0]["stopCode"], "UserInitiated");
}

#[test]
fn berth_up_with_the_operators_certificate_starts_its_agent_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The operator's own certificate (self-signed here) for the address the agent dials.
    let issued =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // `start_up` returns once `berth up` prints its address, which it does only after its
    // agent has registered: over TLS, pinned to the operator's certificate.
    let up = ServerProc::start_up(
        bin(),
        &data,
        &["--memory", "1024", "--tls", "on", "--tls-cert", cert_s, "--tls-key", key_s],
    )
    .expect("berth up starts with the operator's certificate");
    assert!(up.is_tls(), "{}", up.endpoint);
    // A client trusting that certificate sees the registered host.
    let mut cmd = std::process::Command::new("aws");
    cmd.args(["--endpoint-url", &up.endpoint, "--ca-bundle", cert_s, "--output", "json"])
        .args(["ecs", "list-container-instances"]);
    up.client_env(&mut cmd);
    cmd.env("AWS_CA_BUNDLE", &cert);
    let out = cmd.output().expect("the AWS CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let instances = list["containerInstanceArns"].as_array().cloned().unwrap_or_default();
    let _cleanup = Cleanup(instances.first().and_then(|v| v.as_str()).unwrap_or("").to_string());
    assert_eq!(instances.len(), 1, "its agent registered: {list}");
}
