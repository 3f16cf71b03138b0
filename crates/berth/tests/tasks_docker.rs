//! Tasks on the real Docker Engine: `berth server` and `berth agent` as real processes, driven
//! by the AWS CLI and boto3 (with ECS's waiters). Needs the image `berth-demo:latest`
//! (scripts/build-demo-image.sh; `.ci/run` builds it).

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Polls DescribeTasks until `pred` holds (bounded).
fn wait_task(s: &ServerProc, arn: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.aws(&["ecs", "describe-tasks", "--cluster", "default", "--tasks", arn]).json();
        let t = d["tasks"][0].clone();
        if pred(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "task never became {what}: {t}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn tasks_suite() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let agent = AgentProc::start(bin(), &s, &["--memory", "4096"]).expect("agent");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_tasks.py");
    let out = s.python(&script, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tasks suite failed:\n{stderr}\n--- agent log ---\n{}",
        agent.log()
    );
    assert!(stderr.contains("Ran 7 tests") && stderr.contains("\nOK"), "{stderr}");
    // Every task the suite ran has stopped, and the agent removed their containers.
    assert!(agent.containers().is_empty(), "containers left behind: {:?}", agent.containers());
}

#[test]
fn a_restarted_agent_adopts_its_running_task() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let mut agent = AgentProc::start(bin(), &s, &["--memory", "2048"]).expect("agent");
    s.register_task_definition(&serde_json::json!({"family": "adopt", "containerDefinitions": [
        {"name": "web", "image": "berth-demo:latest", "memory": 16, "portMappings": [{"containerPort": 8080}]}]}));
    let run =
        s.aws(&["ecs", "run-task", "--cluster", "default", "--task-definition", "adopt"]).json();
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    wait_task(&s, &arn, "RUNNING", |t| t["lastStatus"] == "RUNNING");
    let before = agent.containers();
    assert_eq!(before.len(), 1);

    let instance = agent.instance_arn.clone();
    let again = agent.restart().expect("agent restarts");
    assert_eq!(again, instance, "a restarted agent is the same container instance");
    // Give the new agent a few polls, then check nothing was started twice.
    let ci = s
        .aws(&[
            "ecs",
            "describe-container-instances",
            "--cluster",
            "default",
            "--container-instances",
            &instance,
        ])
        .json();
    assert_eq!(ci["containerInstances"][0]["agentConnected"], true);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(agent.containers(), before, "no duplicate container after restart");
    let t = wait_task(&s, &arn, "RUNNING", |t| t["lastStatus"] == "RUNNING");
    assert_eq!(t["taskArn"], arn.as_str());

    s.aws(&["ecs", "stop-task", "--cluster", "default", "--task", &arn]).json();
    let t = wait_task(&s, &arn, "STOPPED", |t| t["lastStatus"] == "STOPPED");
    assert_eq!(t["stopCode"], "UserInitiated");
}

#[test]
fn a_second_agent_is_a_second_instance() {
    let s = ServerProc::start(bin()).expect("server");
    let a = AgentProc::start(bin(), &s, &["--memory", "1024", "--availability-zone", "zone-a"])
        .expect("agent a");
    let b = AgentProc::start(
        bin(),
        &s,
        &[
            "--memory",
            "512",
            "--cpu",
            "512",
            "--availability-zone",
            "zone-b",
            "--instance-type",
            "t3.small",
            "--attribute",
            "stack=prod",
        ],
    )
    .expect("agent b");
    assert_ne!(a.instance_arn, b.instance_arn);
    let list = s.aws(&["ecs", "list-container-instances", "--cluster", "default"]).json();
    assert_eq!(list["containerInstanceArns"].as_array().unwrap().len(), 2);
    let d = s
        .aws(&[
            "ecs",
            "describe-container-instances",
            "--cluster",
            "default",
            "--container-instances",
            &b.instance_arn,
        ])
        .json();
    let ci = &d["containerInstances"][0];
    let attr = |n: &str| {
        ci["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .map(|a| a["value"].clone())
    };
    assert_eq!(attr("ecs.availability-zone"), Some(Value::from("zone-b")));
    assert_eq!(attr("ecs.instance-type"), Some(Value::from("t3.small")));
    assert_eq!(attr("stack"), Some(Value::from("prod")));
    assert!(attr("com.amazonaws.ecs.capability.docker-remote-api.1.24").is_some());
    let cpu =
        ci["registeredResources"].as_array().unwrap().iter().find(|r| r["name"] == "CPU").unwrap();
    assert_eq!(cpu["integerValue"], 512);
    assert_eq!(ci["agentConnected"], true);
    assert_eq!(ci["status"], "ACTIVE");
    // Draining stops new placements there.
    s.aws(&[
        "ecs",
        "update-container-instances-state",
        "--cluster",
        "default",
        "--container-instances",
        &b.instance_arn,
        "--status",
        "DRAINING",
    ])
    .json();
    let d = s
        .aws(&["ecs", "list-container-instances", "--cluster", "default", "--status", "DRAINING"])
        .json();
    assert_eq!(d["containerInstanceArns"], serde_json::json!([b.instance_arn]));
}
