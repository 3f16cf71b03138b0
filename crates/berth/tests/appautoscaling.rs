//! Application Auto Scaling that really scales ECS services (issue #15), end to end against
//! the real `berth server` and `berth agent` on the real Docker Engine, with the real AWS CLI:
//! the API's errors and round trips (targets, policies, scheduled actions, activities, tags),
//! a scheduled action that changes a service's desired count, and a target tracking policy at
//! 50% CPU on a service whose task burns a CPU that scales out within a few evaluation periods
//! and back in after the load stops, with activities that say why.
//!
//! Timing: the server runs with `--app-autoscaling-period-secs 2` (target tracking's high
//! alarm needs 3 periods, its low alarm 15), the agent samples usage every second
//! (`BERTH_STATS_INTERVAL_SECS`), and the policy's cooldowns are 5 s.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Polls `f` until it answers `Some`, at most `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

const DIM: &str = "ecs:service:DesiredCount";

fn desired(s: &ServerProc, service: &str) -> i64 {
    let out = s.aws(&["ecs", "describe-services", "--services", service]).json();
    out["services"][0]["desiredCount"].as_i64().unwrap_or(-1)
}

fn activities(s: &ServerProc, resource: &str) -> Vec<Value> {
    let out = s
        .aws(&[
            "application-autoscaling",
            "describe-scaling-activities",
            "--service-namespace",
            "ecs",
            "--resource-id",
            resource,
            "--scalable-dimension",
            DIM,
        ])
        .json();
    out["ScalingActivities"].as_array().cloned().unwrap_or_default()
}

fn register(s: &ServerProc, resource: &str, min: &str, max: &str) -> berth_testkit::AwsResult {
    s.aws(&[
        "application-autoscaling",
        "register-scalable-target",
        "--service-namespace",
        "ecs",
        "--resource-id",
        resource,
        "--scalable-dimension",
        DIM,
        "--min-capacity",
        min,
        "--max-capacity",
        max,
    ])
}

#[test]
fn application_auto_scaling_scales_ecs_services() {
    require_demo_image();
    let started = Instant::now();
    let s = ServerProc::start_with(
        bin(),
        &["--app-autoscaling-period-secs", "2", "--service-settle-secs", "1"],
    )
    .expect("server");
    let _agent = AgentProc::start_with_env(bin(), &s, &[], &[("BERTH_STATS_INTERVAL_SECS", "1")])
        .expect("agent");
    let ok = |args: &[&str]| {
        let r = s.aws(args);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r.json()
    };

    // The CPU burner: 256 units reserved, so one busy core is about 400% of its reservation;
    // each of its tasks burns for 15 s from its start, then idles. It starts at desired 0:
    // registering its target with MinCapacity 1 starts the first task.
    s.register_task_definition(&json!({
        "family": "burn",
        "containerDefinitions": [{"name": "app", "image": "berth-demo:latest", "cpu": 256,
            "memory": 32, "command": ["-burn", "15"]}]
    }));
    s.register_task_definition(&json!({
        "family": "idle",
        "containerDefinitions": [{"name": "app", "image": "berth-demo:latest", "memory": 32}]
    }));
    for svc in ["burn", "idle"] {
        ok(&[
            "ecs",
            "create-service",
            "--service-name",
            svc,
            "--task-definition",
            svc,
            "--desired-count",
            "0",
        ]);
    }

    // --- Target tracking at 50% CPU on the burner: out to the maximum (the API cases below
    // run while its load winds down), then back in.
    register(&s, "service/default/burn", "1", "3").json();
    let policy = ok(&[
        "application-autoscaling",
        "put-scaling-policy",
        "--service-namespace",
        "ecs",
        "--resource-id",
        "service/default/burn",
        "--scalable-dimension",
        DIM,
        "--policy-name",
        "cpu50",
        "--policy-type",
        "TargetTrackingScaling",
        "--target-tracking-scaling-policy-configuration",
        r#"{"TargetValue": 50, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}, "ScaleOutCooldown": 5, "ScaleInCooldown": 5}"#,
    ]);
    let alarms: Vec<String> = policy["Alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(alarms.len(), 2, "{policy}");
    assert!(alarms[0].starts_with("TargetTracking-service/default/burn-AlarmHigh-"), "{alarms:?}");
    // The alarms exist in CloudWatch.
    let cw = ok(&[
        "cloudwatch",
        "describe-alarms",
        "--alarm-name-prefix",
        "TargetTracking-service/default/burn-",
    ]);
    let mut names: Vec<&str> = cw["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["AlarmName"].as_str())
        .collect();
    names.sort();
    let mut want: Vec<&str> = alarms.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(names, want);

    wait_for(30, "the minimum capacity to start the burner", || {
        (desired(&s, "burn") == 1).then_some(())
    });
    let out_at = Instant::now();
    wait_for(60, "the CPU load to scale the burner out to 3", || {
        (desired(&s, "burn") == 3).then_some(())
    });
    eprintln!("scaled out after {:.1} s", out_at.elapsed().as_secs_f64());
    let acts = activities(&s, "service/default/burn");
    let out = acts
        .iter()
        .find(|a| a["Description"] == "Setting desired count to 3.")
        .unwrap_or_else(|| panic!("no scale-out activity: {acts:?}"));
    let cause = out["Cause"].as_str().unwrap();
    assert!(
        cause.starts_with(&format!("monitor alarm {} in state ALARM", alarms[0]))
            && cause.ends_with("triggered policy cpu50"),
        "{cause}"
    );
    assert_eq!(out["StatusCode"], "Successful");
    // ECS carries the change out (UpdateService's path): three tasks run.
    wait_for(30, "the burner's three tasks", || {
        let out = s.aws(&["ecs", "describe-services", "--services", "burn"]).json();
        (out["services"][0]["runningCount"].as_i64() == Some(3)).then_some(())
    });
    let scaled_out = Instant::now();

    // --- The API's errors.
    let e = register(&s, "service/default/nope", "1", "2");
    assert!(
        e.err("ValidationException").contains("ECS service doesn't exist: service/default/nope")
    );
    let e = register(&s, "service/default/idle", "3", "2");
    assert!(e.err("ValidationException").contains("cannot be greater than maximum"));
    let e = s.aws(&[
        "application-autoscaling",
        "register-scalable-target",
        "--service-namespace",
        "dynamodb",
        "--resource-id",
        "table/t",
        "--scalable-dimension",
        "dynamodb:table:ReadCapacityUnits",
        "--min-capacity",
        "1",
        "--max-capacity",
        "2",
    ]);
    assert!(e.err("ValidationException").contains("Berth scales ECS services only"));
    let e = s.aws(&[
        "application-autoscaling",
        "delete-scaling-policy",
        "--service-namespace",
        "ecs",
        "--resource-id",
        "service/default/idle",
        "--scalable-dimension",
        DIM,
        "--policy-name",
        "p",
    ]);
    e.err("ObjectNotFoundException");

    // --- A scheduled action raises the idle service's floor: its desired count follows.
    let arn = register(&s, "service/default/idle", "0", "3").json()["ScalableTargetARN"]
        .as_str()
        .unwrap()
        .to_string();
    let targets = ok(&[
        "application-autoscaling",
        "describe-scalable-targets",
        "--service-namespace",
        "ecs",
        "--resource-ids",
        "service/default/idle",
    ]);
    assert_eq!(targets["ScalableTargets"].as_array().map(Vec::len), Some(1), "{targets}");
    let t = &targets["ScalableTargets"][0];
    assert_eq!(
        (t["ResourceId"].as_str(), t["MinCapacity"].as_i64(), t["MaxCapacity"].as_i64()),
        (Some("service/default/idle"), Some(0), Some(3))
    );
    assert_eq!(t["ScalableTargetARN"].as_str(), Some(arn.as_str()));
    let e = s.aws(&[
        "application-autoscaling", "put-scaling-policy", "--service-namespace", "ecs",
        "--resource-id", "service/default/idle", "--scalable-dimension", DIM,
        "--policy-name", "alb", "--policy-type", "TargetTrackingScaling",
        "--target-tracking-scaling-policy-configuration",
        r#"{"TargetValue": 100, "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget", "ResourceLabel": "app/lb/1/tg/2"}}"#,
    ]);
    assert!(e.err("ValidationException").contains("ResourceLabel app/lb/1/tg/2 is not valid"));
    let e = s.aws(&[
        "application-autoscaling",
        "put-scheduled-action",
        "--service-namespace",
        "ecs",
        "--resource-id",
        "service/default/idle",
        "--scalable-dimension",
        DIM,
        "--scheduled-action-name",
        "bad",
        "--schedule",
        "cron(0 10 * * * *)",
        "--scalable-target-action",
        "MinCapacity=1",
    ]);
    assert!(e.err("ValidationException").contains("must be '?'"));
    // At a time some seconds ahead (an `at` already past when it is put never fires).
    let soon =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 15;
    let at = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{soon}"), "+at(%Y-%m-%dT%H:%M:%S)"])
        .output()
        .expect("date");
    let at = String::from_utf8(at.stdout).unwrap().trim().to_string();
    ok(&[
        "application-autoscaling",
        "put-scheduled-action",
        "--service-namespace",
        "ecs",
        "--resource-id",
        "service/default/idle",
        "--scalable-dimension",
        DIM,
        "--scheduled-action-name",
        "floor",
        "--schedule",
        &at,
        "--scalable-target-action",
        "MinCapacity=2,MaxCapacity=3",
    ]);
    let listed = ok(&[
        "application-autoscaling",
        "describe-scheduled-actions",
        "--service-namespace",
        "ecs",
    ]);
    assert_eq!(listed["ScheduledActions"][0]["Schedule"].as_str(), Some(at.as_str()));
    wait_for(60, "the scheduled action to raise the desired count to 2", || {
        (desired(&s, "idle") == 2).then_some(())
    });
    let acts = activities(&s, "service/default/idle");
    let causes: Vec<&str> = acts.iter().filter_map(|a| a["Cause"].as_str()).collect();
    assert!(causes.contains(&"scheduled action name floor was triggered"), "{causes:?}");
    assert!(
        acts.iter().any(|a| a["Description"] == "Setting desired count to 2."
            && a["StatusCode"] == "Successful"),
        "{acts:?}"
    );
    // Tags, then the target goes with its scheduled action.
    ok(&["application-autoscaling", "tag-resource", "--resource-arn", &arn, "--tags", "team=web"]);
    let tags = ok(&["application-autoscaling", "list-tags-for-resource", "--resource-arn", &arn]);
    assert_eq!(tags["Tags"]["team"].as_str(), Some("web"));
    ok(&[
        "application-autoscaling",
        "deregister-scalable-target",
        "--service-namespace",
        "ecs",
        "--resource-id",
        "service/default/idle",
        "--scalable-dimension",
        DIM,
    ]);
    let listed = ok(&[
        "application-autoscaling",
        "describe-scheduled-actions",
        "--service-namespace",
        "ecs",
    ]);
    assert_eq!(listed["ScheduledActions"].as_array().map(Vec::len), Some(0));
    ok(&["ecs", "update-service", "--service", "idle", "--desired-count", "0"]);

    wait_for(90, "the idle burner to scale back in to 1", || {
        (desired(&s, "burn") == 1).then_some(())
    });
    eprintln!("scaled in {:.1} s after scaling out", scaled_out.elapsed().as_secs_f64());
    let acts = activities(&s, "service/default/burn");
    let back = acts
        .iter()
        .find(|a| a["Description"] == "Setting desired count to 1.")
        .unwrap_or_else(|| panic!("no scale-in activity: {acts:?}"));
    let cause = back["Cause"].as_str().unwrap();
    assert!(
        cause.starts_with(&format!("monitor alarm {} in state ALARM", alarms[1]))
            && cause.contains("-AlarmLow-"),
        "{cause}"
    );

    ok(&["ecs", "update-service", "--service", "burn", "--desired-count", "0"]);
    ok(&[
        "application-autoscaling",
        "deregister-scalable-target",
        "--service-namespace",
        "ecs",
        "--resource-id",
        "service/default/burn",
        "--scalable-dimension",
        DIM,
    ]);
    let cw = ok(&["cloudwatch", "describe-alarms", "--alarm-name-prefix", "TargetTracking-"]);
    assert_eq!(cw["MetricAlarms"].as_array().map(Vec::len), Some(0), "alarms go with the target");
    eprintln!("wall time {:.1} s", started.elapsed().as_secs_f64());
}
