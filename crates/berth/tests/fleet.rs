//! The fleet simulator end to end: a real `berth server` and `berth-loadgen fleet` simulating
//! 20 container instances (three availability zones, three instance types) in one process over
//! the real agent protocol, with no Docker, driven by the AWS CLI: RunTask, a REPLICA service
//! and its rolling update, StopTask, and the fleet's clean stop with deregistration.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_testkit::ServerProc;
use serde_json::Value;

const INSTANCES: usize = 20;
const CLUSTER: &str = "fleet";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// `berth-loadgen fleet` as a child process; killed on drop.
struct Fleet {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    status_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn start(s: &ServerProc, instances: usize) -> Self {
        let loadgen =
            berth_testkit::cargo_bin("berth-bench", "berth-loadgen").expect("build berth-loadgen");
        let dir = tempfile::tempdir().expect("temp dir");
        let status_file = dir.path().join("status.json");
        let mut child = Command::new(loadgen)
            .args(["fleet", "--endpoint", &s.endpoint, "--cluster", CLUSTER])
            .arg("--credentials")
            .arg(s.credentials_file())
            .args(["--instances", &instances.to_string(), "--progress-secs", "1", "--deregister"])
            .arg("--status-file")
            .arg(&status_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn berth-loadgen fleet");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child: Some(child), lines, status_file, _dir: dir }
    }

    /// Waits for a stdout line containing `what`; returns it.
    fn wait_line(&self, what: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(l) => seen.push(l),
                Err(_) => {
                    panic!("the fleet never printed {what:?}; it printed:\n{}", seen.join("\n"))
                }
            }
        }
    }

    fn status(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.status_file).expect("status file"))
            .expect("status JSON")
    }

    /// Ctrl-C; returns whether it exited 0.
    fn interrupt(&mut self) -> bool {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
        c.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until<T>(what: &str, secs: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_string()).collect()
}

fn describe_tasks(s: &ServerProc, arns: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let mut args = vec!["ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks"];
        args.extend(chunk.iter().map(String::as_str));
        let v = s.aws(&args).json();
        assert_eq!(v["failures"].as_array().map_or(0, Vec::len), 0, "{v}");
        out.extend(v["tasks"].as_array().expect("tasks").iter().cloned());
    }
    out
}

/// Waits until every task of `arns` has lastStatus `status`; returns them.
fn wait_tasks(s: &ServerProc, arns: &[String], status: &str) -> Vec<Value> {
    wait_until(&format!("{} tasks {status}", arns.len()), 60, || {
        let tasks = describe_tasks(s, arns);
        tasks.iter().all(|t| t["lastStatus"] == status).then_some(tasks)
    })
}

fn service_task_arns(s: &ServerProc, name: &str) -> Vec<String> {
    strings(
        &s.aws(&["ecs", "list-tasks", "--cluster", CLUSTER, "--service-name", name]).json()["taskArns"],
    )
}

/// Tasks per availability zone, checking each task's zone against its instance's.
fn per_zone(tasks: &[Value], zone_of: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in tasks {
        let inst = t["containerInstanceArn"].as_str().expect("instance");
        let zone = zone_of.get(inst).unwrap_or_else(|| panic!("unknown instance {inst}"));
        assert_eq!(t["availabilityZone"].as_str(), Some(zone.as_str()), "{t}");
        *out.entry(zone.clone()).or_default() += 1;
    }
    out
}

/// Polls DescribeServices until the service is in steady state on `td`: one deployment,
/// COMPLETED, runningCount == desiredCount.
fn settled_on(s: &ServerProc, name: &str, td: &str) -> Value {
    wait_until(&format!("service {name} steady on {td}"), 90, || {
        let svc = s
            .aws(&["ecs", "describe-services", "--cluster", CLUSTER, "--services", name])
            .json()["services"][0]
            .clone();
        let deps = svc["deployments"].as_array().map_or(0, Vec::len);
        (deps == 1
            && svc["deployments"][0]["taskDefinition"] == td
            && svc["deployments"][0]["rolloutState"] == "COMPLETED"
            && svc["runningCount"] == svc["desiredCount"])
            .then_some(svc)
    })
}

#[test]
fn a_simulated_fleet_runs_tasks_and_a_service_across_three_zones() {
    let s = ServerProc::start_with(bin(), &["--service-settle-secs", "1"]).expect("server");
    let mut fleet = Fleet::start(&s, INSTANCES);
    fleet.wait_line(&format!("all {INSTANCES} instances registered"), 120);

    // The instances as the API shows them: 3 zones, 3 types, resources matching the type.
    let arns = strings(
        &s.aws(&["ecs", "list-container-instances", "--cluster", CLUSTER]).json()["containerInstanceArns"],
    );
    assert_eq!(arns.len(), INSTANCES);
    let mut args = vec!["ecs", "describe-container-instances", "--cluster", CLUSTER];
    args.push("--container-instances");
    args.extend(arns.iter().map(String::as_str));
    let described = s.aws(&args).json()["containerInstances"].clone();
    let mut zone_of = BTreeMap::new();
    let mut types = BTreeSet::new();
    let cpu_of = BTreeMap::from([("m5.large", 2048), ("m5.xlarge", 4096), ("c5.2xlarge", 8192)]);
    for ci in described.as_array().expect("instances") {
        let attr = |n: &str| {
            ci["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == n))
                .and_then(|x| x["value"].as_str())
                .unwrap_or_else(|| panic!("attribute {n} missing: {ci}"))
                .to_string()
        };
        let ty = attr("ecs.instance-type");
        let cpu = ci["registeredResources"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["name"] == "CPU"))
            .and_then(|x| x["integerValue"].as_i64());
        assert_eq!(cpu, cpu_of.get(ty.as_str()).copied(), "{ci}");
        assert_eq!(ci["agentConnected"], true, "{ci}");
        assert_eq!(attr("ecs.os-type"), "linux");
        types.insert(ty);
        zone_of.insert(
            ci["containerInstanceArn"].as_str().unwrap().to_string(),
            attr("ecs.availability-zone"),
        );
    }
    let zones: BTreeSet<_> = zone_of.values().cloned().collect();
    assert_eq!(zones.len(), 3, "{zones:?}");
    assert_eq!(types.len(), 3, "{types:?}");

    let td = |marker: &str| {
        serde_json::json!({"family": "fleet-web", "containerDefinitions": [{
            "name": "web", "image": "berth-demo:latest", "cpu": 64, "memory": 128,
            "essential": true, "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "environment": [{"name": "MARKER", "value": marker}]}]})
    };
    let td1 = s.register_task_definition(&td("1"))["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_string();

    // RunTask, count 10, three times, spread over zones then instances.
    let mut run = Vec::new();
    for _ in 0..3 {
        let v = s
            .aws(&[
                "ecs",
                "run-task",
                "--cluster",
                CLUSTER,
                "--task-definition",
                &td1,
                "--count",
                "10",
                "--placement-strategy",
                "type=spread,field=attribute:ecs.availability-zone",
                "type=spread,field=instanceId",
            ])
            .json();
        assert_eq!(v["failures"].as_array().map_or(0, Vec::len), 0, "{v}");
        let tasks = v["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 10, "{v}");
        run.extend(tasks.iter().map(|t| t["taskArn"].as_str().unwrap().to_string()));
    }
    let running = wait_tasks(&s, &run, "RUNNING");
    let zones_run = per_zone(&running, &zone_of);
    assert_eq!(zones_run.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{zones_run:?}");
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &running {
        *per_instance.entry(t["containerInstanceArn"].as_str().unwrap()).or_default() += 1;
        assert!(t["startedAt"].is_number(), "{t}");
        let c = &t["containers"][0];
        assert_eq!(c["lastStatus"], "RUNNING", "{t}");
        assert!(c["networkBindings"][0]["hostPort"].as_i64().unwrap_or(0) >= 32768, "{t}");
    }
    assert!(per_instance.values().all(|&n| n <= 2), "{per_instance:?}");
    assert!(fleet.status()["started"].as_u64().unwrap() >= 30);

    // A REPLICA service of 30 tasks reaches steady state, balanced over the zones.
    s.aws(&[
        "ecs",
        "create-service",
        "--cluster",
        CLUSTER,
        "--service-name",
        "web",
        "--task-definition",
        &td1,
        "--desired-count",
        "30",
    ])
    .json();
    let svc = settled_on(&s, "web", &td1);
    assert_eq!(svc["runningCount"], 30, "{svc}");
    let svc_tasks = describe_tasks(&s, &service_task_arns(&s, "web"));
    assert_eq!(svc_tasks.len(), 30);
    assert!(svc_tasks.iter().all(|t| t["lastStatus"] == "RUNNING"));
    let zones_svc = per_zone(&svc_tasks, &zone_of);
    assert_eq!(zones_svc.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{zones_svc:?}");

    // A rolling update: every task replaced by one of the new revision.
    let td2 = s.register_task_definition(&td("2"))["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_string();
    s.aws(&[
        "ecs",
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        "web",
        "--task-definition",
        &td2,
    ])
    .json();
    settled_on(&s, "web", &td2);
    let svc_tasks = wait_until("only new tasks in the service", 60, || {
        let tasks = describe_tasks(&s, &service_task_arns(&s, "web"));
        tasks
            .iter()
            .all(|t| t["taskDefinitionArn"] == td2.as_str() && t["lastStatus"] == "RUNNING")
            .then_some(tasks)
    });
    assert_eq!(svc_tasks.len(), 30);
    // The fleet's own view: no task of the old revision runs beyond the 30 RunTask ones.
    wait_until("the fleet to run 30 tasks of each revision", 30, || {
        let by_td = fleet.status()["runningByTaskDefinition"].clone();
        (by_td[&td1] == 30 && by_td[&td2] == 30).then_some(())
    });

    // StopTask: the agents report STOPPED.
    let stopped: Vec<String> = run[..5].to_vec();
    for t in &stopped {
        s.aws(&["ecs", "stop-task", "--cluster", CLUSTER, "--task", t, "--reason", "enough"])
            .json();
    }
    for t in wait_tasks(&s, &stopped, "STOPPED") {
        assert_eq!(t["stopCode"], "UserInitiated", "{t}");
        assert_eq!(t["stoppedReason"], "enough", "{t}");
        assert_eq!(t["containers"][0]["lastStatus"], "STOPPED", "{t}");
        assert_eq!(t["containers"][0]["exitCode"], 0, "{t}");
    }
    let rest = describe_tasks(&s, &run[5..]);
    assert!(rest.iter().all(|t| t["lastStatus"] == "RUNNING"));
    wait_until("the fleet to count the stops", 30, || {
        let st = fleet.status();
        (st["running"] == 55 && st["stopped"].as_u64().unwrap() >= 35).then_some(())
    });
    assert_eq!(fleet.status()["errors"], 0, "{}", fleet.status());

    // Ctrl-C: the fleet deregisters its instances and exits cleanly.
    assert!(fleet.interrupt(), "the fleet did not exit cleanly on SIGINT");
    let left = s.aws(&["ecs", "list-container-instances", "--cluster", CLUSTER]).json();
    assert_eq!(left["containerInstanceArns"].as_array().map_or(0, Vec::len), 0, "{left}");
}
