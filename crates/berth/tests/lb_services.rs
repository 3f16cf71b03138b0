//! Services behind a load balancer (issue #13), end to end with the AWS CLI against one real
//! `berth server` and one `berth agent` on the real Docker Engine: an ALB, a listener and an
//! `instance` target group in front of a bridge-mode service of the demo image (dynamic host
//! ports). Checks, in order, on the one server:
//! * `loadBalancers` validation (a missing target group, a container the task definition does
//!   not have; the other rules are unit-tested in `berth_model::service_rules` and
//!   `ecs::services::load_balancers`);
//! * tasks register once RUNNING and the deployment completes only once the target group
//!   says they are healthy; DescribeServices shows `loadBalancers` and the events
//!   "registered 1 targets in (target-group ...)";
//! * a rolling update under constant load through the ALB (a bounded client loop on
//!   loopback) loses zero requests: old tasks are deregistered and drain (DEACTIVATING) before
//!   they stop;
//! * a task whose health check starts failing (`POST /health/fail` to the demo app) is seen
//!   unhealthy by the target group, stopped with ECS's "failed ELB health checks" event and
//!   replaced; a task whose container is `docker kill`ed is replaced and its target
//!   deregistered;
//! * a user's StopTask of a task, under load: DEACTIVATING with its target draining, then
//!   STOPPED, with zero requests lost;
//! * UpdateService `--load-balancers` to another target group (the new deployment's tasks
//!   register there, the old ones leave the first group and stop), then `[]` (none).
//!
//! Needs the image `berth-demo:latest`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn wait_until(what: &str, secs: u64, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn text(s: &ServerProc, args: &[&str]) -> String {
    let mut a = args.to_vec();
    a.extend(["--output", "text"]);
    let r = s.aws(&a);
    assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
    r.stdout.trim().to_string()
}

fn json_of(s: &ServerProc, args: &[&str]) -> Value {
    let r = s.aws(args);
    assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
    r.json()
}

/// One HTTP/1.1 request on a fresh connection: the status code, or `None` if the
/// connection failed or the answer was not HTTP.
fn http(addr: &str, method: &str, path: &str) -> Option<u16> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    c.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    c.read_to_end(&mut out).ok()?;
    let head = String::from_utf8_lossy(&out);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A bounded client loop through the load balancer: counts answers and failures (non-2xx or
/// no answer) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let handle = std::thread::spawn(move || {
            let mut failures = Vec::new();
            // Bounded: at most 5 minutes of requests whatever happens.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match http(&addr, "GET", "/") {
                    Some(code) if (200..300).contains(&code) => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        f.fetch_add(1, Ordering::SeqCst);
                        failures.push(format!("{other:?}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            failures
        });
        Load { stop, ok, failed, handle: Some(handle) }
    }

    /// Stops the loop: (answered 2xx, failed, the failures).
    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.handle.take().unwrap().join().unwrap();
        (self.ok.load(Ordering::SeqCst), self.failed.load(Ordering::SeqCst), failures)
    }
}

/// Target id:port -> state of the group's targets.
fn target_health(s: &ServerProc, tg: &str) -> Vec<(String, String)> {
    json_of(s, &["elbv2", "describe-target-health", "--target-group-arn", tg])
        ["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                format!("{}:{}", d["Target"]["Id"].as_str().unwrap(), d["Target"]["Port"]),
                d["TargetHealth"]["State"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn service(s: &ServerProc, name: &str) -> Value {
    json_of(s, &["ecs", "describe-services", "--services", name])["services"][0].clone()
}

/// The service's tasks desired RUNNING, described.
fn running_tasks(s: &ServerProc, name: &str) -> Vec<Value> {
    let arns = json_of(s, &["ecs", "list-tasks", "--service-name", name])["taskArns"].clone();
    let arns: Vec<&str> = arns.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    if arns.is_empty() {
        return vec![];
    }
    let mut args = vec!["ecs", "describe-tasks", "--tasks"];
    args.extend(arns);
    json_of(s, &args)["tasks"].as_array().unwrap().clone()
}

/// The service has `n` tasks, its one deployment COMPLETED, and `n` healthy targets.
fn settled(s: &ServerProc, name: &str, tg: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let last = service(s, name);
        let targets = target_health(s, tg);
        let deps = last["deployments"].as_array().cloned().unwrap_or_default();
        let healthy = targets.iter().filter(|(_, st)| st == "healthy").count();
        if deps.len() == 1
            && deps[0]["rolloutState"] == "COMPLETED"
            && last["runningCount"] == json!(n)
            && healthy == n
            && targets.len() == n
        {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {name} settled with {n} healthy targets in {tg}: targets {targets:?}, deployments {}, events {}",
            last["deployments"],
            last["events"]
                .as_array()
                .map(|e| e
                    .iter()
                    .take(8)
                    .map(|e| e["message"].to_string())
                    .collect::<Vec<_>>()
                    .join("\n"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The service has an event "(service web) registered N targets in (target-group TG)" (or
/// deregistered).
fn registration_event(svc: &Value, verb: &str, tg: &str) -> bool {
    svc["events"].as_array().unwrap().iter().any(|e| {
        let m = e["message"].as_str().unwrap_or_default();
        m.strip_prefix(&format!("(service web) {verb} "))
            .and_then(|rest| rest.strip_suffix(&format!(" targets in (target-group {tg})")))
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 1))
    })
}

fn host_port(task: &Value) -> u64 {
    task["containers"][0]["networkBindings"][0]["hostPort"].as_u64().expect("host port")
}

#[test]
fn services_behind_a_load_balancer() {
    require_demo_image();
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
    let s = ServerProc::start_with(bin(), &["--service-settle-secs", "1"]).expect("server");
    let _agent = AgentProc::start(bin(), &s, &["--memory", "2048"]).expect("agent");

    // The load balancer: ALB, an instance target group checked fast, a listener.
    let vpc = text(
        &s,
        &[
            "ec2",
            "describe-vpcs",
            "--filters",
            "Name=is-default,Values=true",
            "--query",
            "Vpcs[0].VpcId",
        ],
    );
    let subnets = text(
        &s,
        &[
            "ec2",
            "describe-subnets",
            "--filters",
            "Name=default-for-az,Values=true",
            "--query",
            "Subnets[].SubnetId",
        ],
    );
    let subnets: Vec<&str> = subnets.split_whitespace().collect();
    let mut args = vec!["elbv2", "create-load-balancer", "--name", "svc", "--subnets"];
    args.extend(&subnets[..2]);
    args.extend(["--query", "LoadBalancers[0].LoadBalancerArn"]);
    let lb = text(&s, &args);
    let tg_args = |name: &'static str, kind: &'static str| {
        vec![
            "elbv2",
            "create-target-group",
            "--name",
            name,
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--vpc-id",
            Box::leak(vpc.clone().into_boxed_str()),
            "--target-type",
            kind,
            "--health-check-path",
            "/health",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
            "--unhealthy-threshold-count",
            "2",
            "--query",
            "TargetGroups[0].TargetGroupArn",
        ]
    };
    let tg = text(&s, &tg_args("web", "instance"));
    text(
        &s,
        &[
            "elbv2",
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg,
            "--attributes",
            // Long enough for the test's describe-tasks loop (one AWS CLI call a turn, over
            // a second on a loaded machine) to see the DEACTIVATING window.
            "Key=deregistration_delay.timeout_seconds,Value=6",
        ],
    );
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let listener = text(
        &s,
        &[
            "elbv2",
            "create-listener",
            "--load-balancer-arn",
            &lb,
            "--protocol",
            "HTTP",
            "--port",
            &port,
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg}"),
            "--query",
            "Listeners[0].ListenerArn",
        ],
    );
    let addr = format!("127.0.0.1:{port}");

    let td = |version: &str| {
        let td = json!({"family": "lbweb", "containerDefinitions": [{
            "name": "web", "image": "berth-demo:latest", "memory": 16, "essential": true, "stopTimeout": 2,
            "environment": [{"name": "VERSION", "value": version}],
            "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]});
        s.register_task_definition(&td)["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let td1 = td("1");
    let lbs = |tg: &str, container: &str, port: u16| {
        format!(
            "[{{\"targetGroupArn\":\"{tg}\",\"containerName\":\"{container}\",\"containerPort\":{port}}}]"
        )
    };
    let create = |name: &str, lbs: &str| {
        s.aws(&[
            "ecs",
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            &td1,
            "--desired-count",
            "2",
            "--load-balancers",
            lbs,
            "--deployment-configuration",
            "minimumHealthyPercent=100,maximumPercent=200",
        ])
    };

    phase("load balancer ready");
    // Validation, as ECS answers it.
    let missing = tg.replace(tg.rsplit('/').next().unwrap(), "0123456789abcdef");
    let e = create("bad", &lbs(&missing, "web", 8080));
    assert!(
        e.stderr.contains("InvalidParameterException") && e.stderr.contains("does not exist"),
        "{}",
        e.stderr
    );
    let e = create("bad", &lbs(&tg, "nope", 8080));
    assert!(e.stderr.contains("The container nope does not exist"), "{}", e.stderr);
    phase("validation done");
    // The service: both tasks register and the deployment completes once they are healthy.
    let r = create("web", &lbs(&tg, "web", 8080));
    assert!(r.ok, "{}", r.stderr);
    let svc = settled(&s, "web", &tg, 2);
    assert_eq!(svc["loadBalancers"][0]["targetGroupArn"], json!(tg));
    assert_eq!(svc["loadBalancers"][0]["containerPort"], json!(8080));
    let events = svc["events"].to_string();
    assert!(registration_event(&svc, "registered", &tg), "{events}");
    assert_eq!(http(&addr, "GET", "/"), Some(200));

    phase("service settled");
    // A rolling update under constant load loses nothing.
    let load = Load::start(addr.clone());
    std::thread::sleep(Duration::from_millis(500));
    let old: Vec<String> =
        running_tasks(&s, "web").iter().map(|t| t["taskArn"].as_str().unwrap().into()).collect();
    let td2 = td("2");
    text(
        &s,
        &[
            "ecs",
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &td2,
            "--query",
            "service.serviceName",
        ],
    );
    // The old tasks pass through DEACTIVATING (deregistered, draining) before they stop.
    let mut saw_deactivating = false;
    wait_until("the old tasks to stop", 90, || {
        let mut args = vec!["ecs", "describe-tasks", "--tasks"];
        args.extend(old.iter().map(String::as_str));
        let tasks = json_of(&s, &args)["tasks"].as_array().unwrap().clone();
        saw_deactivating |= tasks.iter().any(|t| t["lastStatus"] == "DEACTIVATING");
        tasks.iter().all(|t| t["lastStatus"] == "STOPPED")
    });
    let svc = settled(&s, "web", &tg, 2);
    let (ok, failed, failures) = load.finish();
    assert_eq!(failed, 0, "requests lost during the rolling update: {failures:?}");
    assert!(ok > 50, "the load loop ran: {ok} requests");
    assert!(saw_deactivating, "an old task was seen DEACTIVATING");
    assert!(running_tasks(&s, "web").iter().all(|t| t["taskDefinitionArn"] == json!(td2)));
    let events = svc["events"].to_string();
    assert!(registration_event(&svc, "deregistered", &tg), "{events}");

    phase("rolling update done");
    // A task whose health check fails is stopped for failing ELB health checks and replaced.
    let tasks = running_tasks(&s, "web");
    let sick = tasks[0]["taskArn"].as_str().unwrap().to_string();
    let sick_id = sick.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        http(&format!("127.0.0.1:{}", host_port(&tasks[0])), "POST", "/health/fail"),
        Some(200)
    );
    wait_until("the failing task to be stopped", 60, || {
        let t = json_of(&s, &["ecs", "describe-tasks", "--tasks", &sick])["tasks"][0].clone();
        t["desiredStatus"] == "STOPPED"
    });
    let t = json_of(&s, &["ecs", "describe-tasks", "--tasks", &sick])["tasks"][0].clone();
    assert_eq!(
        t["stoppedReason"],
        json!(format!("Task failed ELB health checks in (target-group {tg})")),
        "{t}"
    );
    let svc = settled(&s, "web", &tg, 2);
    let events = svc["events"].to_string();
    assert!(
        events.contains(&format!(
            "(service web) (task {sick_id}) failed ELB health checks in (target-group {tg})"
        )),
        "{events}"
    );

    phase("ELB health failure replaced");
    // docker kill of a task: replaced, its target deregistered.
    let tasks = running_tasks(&s, "web");
    let victim = tasks[0]["taskArn"].as_str().unwrap().to_string();
    let victim_port = host_port(&tasks[0]);
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=com.amazonaws.ecs.task-arn={victim}")])
        .output()
        .unwrap();
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!cid.is_empty(), "the task's container");
    let killed = std::process::Command::new("docker").args(["kill", &cid]).output().unwrap();
    assert!(killed.status.success(), "docker kill: {killed:?}");
    wait_until("the killed task to be replaced", 90, || {
        let running = running_tasks(&s, "web");
        running.len() == 2 && running.iter().all(|t| t["taskArn"] != json!(victim))
    });
    settled(&s, "web", &tg, 2);
    assert!(
        target_health(&s, &tg).iter().all(|(id, _)| !id.ends_with(&format!(":{victim_port}"))),
        "the killed task's target is deregistered"
    );

    phase("killed task replaced");
    // A user's StopTask under load: the task is deregistered and drains (DEACTIVATING, its
    // target `draining`) before its container stops, and no request is lost.
    let load = Load::start(addr.clone());
    std::thread::sleep(Duration::from_millis(500));
    let tasks = running_tasks(&s, "web");
    let stopped = tasks[0]["taskArn"].as_str().unwrap().to_string();
    let stopped_port = host_port(&tasks[0]);
    let t = json_of(&s, &["ecs", "stop-task", "--task", &stopped, "--reason", "by hand"]);
    assert_eq!(t["task"]["desiredStatus"], "STOPPED", "{t}");
    assert_eq!(t["task"]["lastStatus"], "DEACTIVATING", "{t}");
    assert_eq!(t["task"]["stopCode"], "UserInitiated", "{t}");
    wait_until("its target to drain", 30, || {
        target_health(&s, &tg)
            .iter()
            .any(|(id, st)| id.ends_with(&format!(":{stopped_port}")) && st == "draining")
    });
    wait_until("the stopped task to be STOPPED", 60, || {
        json_of(&s, &["ecs", "describe-tasks", "--tasks", &stopped])["tasks"][0]["lastStatus"]
            == "STOPPED"
    });
    settled(&s, "web", &tg, 2);
    let (ok, failed, failures) = load.finish();
    assert_eq!(failed, 0, "requests lost during a user's StopTask: {failures:?}");
    assert!(ok > 50, "the load loop ran: {ok} requests");

    phase("user StopTask drained");
    // UpdateService moves the service to another target group: a new deployment whose tasks
    // register there while the old ones deregister from the first group and stop.
    let tg2 = text(&s, &tg_args("web2", "instance"));
    text(
        &s,
        &[
            "elbv2",
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg2,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=2",
        ],
    );
    // The listener forwards to both (the second at weight 0), so the second group has a
    // load balancer, as a service's target group must.
    let both = json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": tg, "Weight": 1}, {"TargetGroupArn": tg2, "Weight": 0}]}}]);
    text(
        &s,
        &[
            "elbv2",
            "modify-listener",
            "--listener-arn",
            &listener,
            "--default-actions",
            &both.to_string(),
            "--query",
            "Listeners[0].ListenerArn",
        ],
    );
    let old: Vec<String> =
        running_tasks(&s, "web").iter().map(|t| t["taskArn"].as_str().unwrap().into()).collect();
    let r = s.aws(&[
        "ecs",
        "update-service",
        "--service",
        "web",
        "--load-balancers",
        &lbs(&tg2, "web", 8080),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let svc = settled(&s, "web", &tg2, 2);
    assert_eq!(svc["loadBalancers"][0]["targetGroupArn"], json!(tg2));
    wait_until("the first group's targets to leave", 60, || {
        target_health(&s, &tg).iter().all(|(_, st)| st == "draining")
    });
    let mut args = vec!["ecs", "describe-tasks", "--tasks"];
    args.extend(old.iter().map(String::as_str));
    assert!(
        json_of(&s, &args)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["desiredStatus"] == "STOPPED"),
        "the tasks of the first group were replaced"
    );
    text(
        &s,
        &[
            "elbv2",
            "modify-listener",
            "--listener-arn",
            &listener,
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg2}"),
            "--query",
            "Listeners[0].ListenerArn",
        ],
    );
    wait_until("answers through the second group", 30, || http(&addr, "GET", "/") == Some(200));
    // An empty list removes them: the next deployment's tasks register nowhere and the
    // second group empties.
    let r = s.aws(&["ecs", "update-service", "--service", "web", "--load-balancers", "[]"]);
    assert!(r.ok, "{}", r.stderr);
    wait_until("the deployment without load balancers", 90, || {
        let svc = service(&s, "web");
        let deps = svc["deployments"].as_array().cloned().unwrap_or_default();
        deps.len() == 1 && deps[0]["rolloutState"] == "COMPLETED" && svc["runningCount"] == json!(2)
    });
    wait_until("the second group to empty", 60, || {
        target_health(&s, &tg2).iter().all(|(_, st)| st == "draining")
    });
    assert_eq!(service(&s, "web")["loadBalancers"], json!([]));

    phase("load balancers changed and removed");
    // Clean up: the service goes, and its targets with it.
    text(
        &s,
        &[
            "ecs",
            "update-service",
            "--service",
            "web",
            "--desired-count",
            "0",
            "--query",
            "service.serviceName",
        ],
    );
    wait_until("the targets to be deregistered", 60, || {
        target_health(&s, &tg).iter().all(|(_, st)| st == "draining")
    });
    text(
        &s,
        &["ecs", "delete-service", "--service", "web", "--force", "--query", "service.serviceName"],
    );
    wait_until("the service's tasks to stop", 60, || running_tasks(&s, "web").is_empty());
    let log = std::fs::read_to_string(s.data_dir.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
