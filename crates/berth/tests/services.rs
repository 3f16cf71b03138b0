//! Services end to end: `berth server` and real `berth agent` processes on the real Docker
//! Engine, driven by boto3 (tests/py/test_services.py) and the AWS CLI with ECS's waiters.
//! Needs the image `berth-demo:latest`.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// A server whose services count a task without health checks healthy after 1 s (ECS: 40).
fn server(extra: &[&str]) -> ServerProc {
    let mut args = vec!["--service-settle-secs", "1"];
    args.extend_from_slice(extra);
    ServerProc::start_with(bin(), &args).expect("server")
}

fn agent(s: &ServerProc, az: &str) -> AgentProc {
    AgentProc::start(bin(), s, &["--availability-zone", az, "--memory", "2048"]).expect("agent")
}

fn register(s: &ServerProc, family: &str) -> String {
    let td = serde_json::json!({"family": family, "containerDefinitions": [{
        "name": "web", "image": "berth-demo:latest", "memory": 16, "essential": true,
        "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]});
    s.register_task_definition(&td)["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_string()
}

/// Polls DescribeServices until the condition of ECS's `services-stable` waiter holds (one
/// deployment, runningCount == desiredCount) and returns the service. (The CLI's own waiter
/// polls every 15 s; `cli_waiter_stable` uses it once.)
fn stable(s: &ServerProc, name: &str) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        last =
            s.aws(&["ecs", "describe-services", "--services", name]).json()["services"][0].clone();
        if last["deployments"].as_array().map(Vec::len) == Some(1)
            && last["runningCount"] == last["desiredCount"]
        {
            return last;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("service {name} never became stable: {last}");
}

/// Stable with its deployment COMPLETED (every task healthy): a safe point to update from.
fn settled(s: &ServerProc, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let svc = stable(s, name);
        if svc["deployments"][0]["rolloutState"] == "COMPLETED" {
            return svc;
        }
        assert!(Instant::now() < deadline, "{name} never completed its deployment: {svc}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `aws ecs wait services-stable`: the AWS CLI's own waiter.
fn cli_waiter_stable(s: &ServerProc, name: &str) {
    let w = s.aws(&["ecs", "wait", "services-stable", "--services", name]);
    assert!(w.ok, "aws ecs wait services-stable failed: {}", w.stderr);
}

/// The service's RUNNING-desired tasks as (task ARN, instance ARN, task definition ARN).
fn tasks(s: &ServerProc, name: &str) -> Vec<(String, String, String)> {
    let arns = s.aws(&["ecs", "list-tasks", "--service-name", name]).json()["taskArns"].clone();
    let arns: Vec<String> =
        arns.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    if arns.is_empty() {
        return vec![];
    }
    let mut args = vec!["ecs", "describe-tasks", "--tasks"];
    args.extend(arns.iter().map(String::as_str));
    s.aws(&args).json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["taskArn"].as_str().unwrap().to_string(),
                t["containerInstanceArn"].as_str().unwrap().to_string(),
                t["taskDefinitionArn"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_until(what: &str, secs: u64, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn services_suite() {
    require_demo_image();
    let s = server(&[]);
    let a = agent(&s, "us-east-1a");
    let b = agent(&s, "us-east-1b");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_services.py");
    let out = s.python(&script, &[&format!("{},{}", a.instance_arn, b.instance_arn)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "services suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 8 tests") && stderr.contains("\nOK"), "{stderr}");
}

#[test]
fn a_daemon_service_runs_on_every_instance_and_follows_joins() {
    require_demo_image();
    let s = server(&[]);
    let mut agents: Vec<AgentProc> =
        ["us-east-1a", "us-east-1b", "us-east-1c"].iter().map(|az| agent(&s, az)).collect();
    let td = register(&s, "daemon");
    let c = s.aws(&[
        "ecs",
        "create-service",
        "--service-name",
        "d",
        "--task-definition",
        &td,
        "--scheduling-strategy",
        "DAEMON",
    ]);
    assert!(c.ok, "{}", c.stderr);
    cli_waiter_stable(&s, "d");
    let svc = stable(&s, "d");
    assert_eq!(svc["desiredCount"], 3);
    let on = |s: &ServerProc| {
        let mut v: Vec<String> = tasks(s, "d").into_iter().map(|t| t.1).collect();
        v.sort();
        v
    };
    let mut want: Vec<String> = agents.iter().map(|a| a.instance_arn.clone()).collect();
    want.sort();
    assert_eq!(on(&s), want, "one task on each instance");
    // A fourth instance joins: it gets its task.
    agents.push(agent(&s, "us-east-1a"));
    wait_until("a task on the new instance", 60, || on(&s).len() == 4);
    let svc = stable(&s, "d");
    assert_eq!((svc["desiredCount"].as_i64(), svc["runningCount"].as_i64()), (Some(4), Some(4)));
    let mut want: Vec<String> = agents.iter().map(|a| a.instance_arn.clone()).collect();
    want.sort();
    assert_eq!(on(&s), want);
    // One drains: its task stops and is not placed elsewhere.
    let drained = agents[0].instance_arn.clone();
    let r = s.aws(&[
        "ecs",
        "update-container-instances-state",
        "--container-instances",
        &drained,
        "--status",
        "DRAINING",
    ]);
    assert!(r.ok, "{}", r.stderr);
    wait_until("the drained instance's task to stop", 60, || {
        let o = on(&s);
        o.len() == 3 && !o.contains(&drained)
    });
    assert_eq!(stable(&s, "d")["runningCount"], 3);
}

#[test]
fn tasks_of_a_killed_agent_are_replaced_and_the_surplus_stops_when_it_returns() {
    require_demo_image();
    // Agents poll every second; an instance silent for 6 s is lost.
    let s = server(&["--agent-timeout-secs", "3", "--instance-lost-after-secs", "6"]);
    let mut a = agent(&s, "us-east-1a");
    let b = agent(&s, "us-east-1b");
    let td = register(&s, "lost");
    let c = s.aws(&[
        "ecs",
        "create-service",
        "--service-name",
        "l",
        "--task-definition",
        &td,
        "--desired-count",
        "4",
    ]);
    assert!(c.ok, "{}", c.stderr);
    stable(&s, "l");
    let on_a = tasks(&s, "l").iter().filter(|t| t.1 == a.instance_arn).count();
    assert_eq!(on_a, 2, "spread over the two zones");
    a.kill9();
    // Its containers keep running, but its tasks are replaced on b after the grace period.
    wait_until("replacements on b", 90, || {
        let t = tasks(&s, "l");
        t.len() == 4 && t.iter().all(|t| t.1 == b.instance_arn)
    });
    let svc = stable(&s, "l");
    assert_eq!(svc["runningCount"], 4);
    let events = svc["events"].to_string();
    assert!(events.contains("whose agent has been silent for"), "{events}");
    assert_eq!(a.containers().len(), 2, "the killed agent's containers still exist");
    // The agent comes back: its copies were desired STOPPED, so it stops them; 4 remain.
    a.restart().expect("agent restart");
    wait_until("the surplus to stop", 60, || {
        std::process::Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=berth.container-instance-arn={}", a.instance_arn),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().is_empty())
            .unwrap_or(false)
    });
    let svc = stable(&s, "l");
    assert_eq!(svc["runningCount"], 4);
    assert!(tasks(&s, "l").iter().all(|t| t.1 == b.instance_arn));
}

#[test]
fn a_rolling_deployment_survives_a_server_restart() {
    require_demo_image();
    let mut s = ServerProc::start_with(bin(), &["--service-settle-secs", "5"]).expect("server");
    let _a = agent(&s, "us-east-1a");
    let v1 = register(&s, "restart");
    let v2 = register(&s, "restart");
    let c = s.aws(&[
        "ecs",
        "create-service",
        "--service-name",
        "r",
        "--task-definition",
        &v1,
        "--desired-count",
        "3",
        "--deployment-configuration",
        "minimumHealthyPercent=100,maximumPercent=134",
    ]);
    assert!(c.ok, "{}", c.stderr);
    settled(&s, "r");
    let u = s.aws(&["ecs", "update-service", "--service", "r", "--task-definition", &v2]);
    assert!(u.ok, "{}", u.stderr);
    // Mid-deployment (one new task at a time, each needing 5 s to count): kill the server while
    // an old task still runs. (A loaded machine may observe the deployment late: one old task
    // left is still mid-deployment.)
    wait_until("the deployment to start", 30, || tasks(&s, "r").iter().any(|t| t.2 == v2));
    let before = tasks(&s, "r");
    assert!(before.iter().any(|t| t.2 == v1), "mid-deployment: {before:?}");
    s.restart_same_port_after_kill9().expect("restart");
    let svc = settled(&s, "r");
    assert_eq!(svc["taskDefinition"], v2.as_str());
    assert_eq!(svc["deployments"].as_array().map(Vec::len), Some(1));
    let t = tasks(&s, "r");
    assert_eq!(t.len(), 3);
    assert!(t.iter().all(|t| t.2 == v2), "{t:?}");
}
