//! Host access on the real Docker Engine (issue #10): a privileged task fails placement with
//! `ATTRIBUTE` while only a default agent is there, runs on an agent started with
//! `--allow-privileged`, and is refused by a default agent even when the control plane is
//! told (by a hand-put attribute) to send it there; an ordinary container runs with
//! `no-new-privileges`. Needs `berth-demo:latest` (scripts/build-demo-image.sh). Every
//! container is removed by the agents' instance label when they drop.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::Value;

const PRIVILEGED_ATTR: &str = "com.amazonaws.ecs.capability.privileged-container";

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

/// `docker inspect` of the one container of task `arn`: its HostConfig.
fn host_config(arn: &str) -> Value {
    let ps = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=com.amazonaws.ecs.task-arn={arn}")])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&ps.stdout).trim().to_string();
    assert!(!id.is_empty() && !id.contains('\n'), "one container for {arn}: {id:?}");
    let out = std::process::Command::new("docker").args(["inspect", &id]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("docker inspect JSON");
    v[0]["HostConfig"].clone()
}

fn run(s: &ServerProc, family: &str) -> Value {
    s.aws(&["ecs", "run-task", "--cluster", "default", "--task-definition", family]).json()
}

fn stop(s: &ServerProc, arn: &str) {
    s.aws(&["ecs", "stop-task", "--cluster", "default", "--task", arn]).json();
    wait_task(s, arn, "STOPPED", |t| t["lastStatus"] == "STOPPED");
}

#[test]
fn privileged_tasks_need_an_agent_that_allows_them() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let plain = AgentProc::start(bin(), &s, &["--memory", "512"]).expect("default agent");
    s.register_task_definition(&serde_json::json!({"family": "priv", "containerDefinitions": [
        {"name": "web", "image": "berth-demo:latest", "memory": 16, "privileged": true}]}));
    s.register_task_definition(&serde_json::json!({"family": "plain", "containerDefinitions": [
        {"name": "web", "image": "berth-demo:latest", "memory": 16}]}));

    // Only a default agent: the privileged task fits nowhere.
    let r = run(&s, "priv");
    assert_eq!(r["tasks"], serde_json::json!([]), "{r}");
    assert_eq!(r["failures"][0]["reason"], "ATTRIBUTE", "{r}");
    assert_eq!(r["failures"][0]["arn"], plain.instance_arn.as_str());
    let detail = r["failures"][0]["detail"].as_str().unwrap();
    assert!(detail.contains(PRIVILEGED_ATTR) && detail.contains("--allow-privileged"), "{detail}");

    // An ordinary container runs with no-new-privileges.
    let arn = run(&s, "plain")["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    wait_task(&s, &arn, "RUNNING", |t| t["lastStatus"] == "RUNNING");
    let hc = host_config(&arn);
    assert_eq!(hc["SecurityOpt"], serde_json::json!(["no-new-privileges"]), "{hc}");
    assert_eq!(hc["Privileged"], false);
    stop(&s, &arn);

    // An agent started with --allow-privileged advertises it and gets the task.
    let open = AgentProc::start(bin(), &s, &["--memory", "512", "--allow-privileged"])
        .expect("privileged agent");
    let r = run(&s, "priv");
    assert_eq!(r["failures"], serde_json::json!([]), "{r}");
    let arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert_eq!(r["tasks"][0]["containerInstanceArn"], open.instance_arn.as_str());
    // The agent starts it. (A Docker Engine that itself runs without all capabilities, as in
    // some CI sandboxes, cannot start a privileged container: then the engine's refusal is
    // the reason, never the agent's.)
    let t = wait_task(&s, &arn, "RUNNING or STOPPED", |t| {
        t["lastStatus"] == "RUNNING" || t["lastStatus"] == "STOPPED"
    });
    if t["lastStatus"] == "RUNNING" {
        let hc = host_config(&arn);
        assert_eq!(hc["Privileged"], true, "{hc}");
        stop(&s, &arn);
    } else {
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("CannotStartContainerError: start failed"),
            "the engine, not the agent, refused: {t}"
        );
    }

    // Defence in depth: told by hand that the default agent allows it, the control plane
    // sends the task there, and the agent refuses to start it.
    s.aws(&[
        "ecs",
        "put-attributes",
        "--cluster",
        "default",
        "--attributes",
        &format!("name={PRIVILEGED_ATTR},targetId={}", plain.instance_arn),
    ])
    .json();
    let r = s
        .aws(&[
            "ecs",
            "start-task",
            "--cluster",
            "default",
            "--task-definition",
            "priv",
            "--container-instances",
            &plain.instance_arn,
        ])
        .json();
    let arn = r["tasks"][0]["taskArn"].as_str().expect("placed on the default agent").to_string();
    let t = wait_task(&s, &arn, "STOPPED", |t| t["lastStatus"] == "STOPPED");
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.contains("containerDefinitions[0].privileged")
            && reason.contains("--allow-privileged"),
        "{reason}"
    );
    assert!(plain.containers().is_empty(), "the refused task created nothing");
    drop(open);
    drop(plain);
}
