//! A highly available control plane (issue #18), everything started by the test on this
//! machine: a three-member etcd cluster on ephemeral ports, three `berth server`s sharing it
//! (one master key, `--leader-lease-secs 2`), two `berth agent`s given all three URLs, the
//! real Docker Engine. One test, in phases, on the same servers:
//! 1. `kill -9` of the leader in the middle of a rolling deployment: another server leads
//!    within 10 s, the deployment completes, exactly the desired count runs and no task was
//!    started twice (one container per task ever);
//! 2. `kill -9` of one etcd member: the API keeps answering; writes acknowledged before and
//!    after survive (read from each remaining server);
//! 3. the leader SIGSTOPped past its lease, then SIGCONT: another server leads meanwhile; the
//!    old one logs that it lost leadership and, should a controller of its try to write, that
//!    the write was refused by its fence (never a commit); a task stopped meanwhile on its
//!    agents is reported STOPPED (their reports are not lost).
//!
//! The leader is read from etcd's election (the value each server campaigns with is its
//! endpoint). Skipped with a message without etcd (unless CI is set); needs `berth-demo:latest`.
//! Everything is removed at the end: processes (dropped), etcd and data directories (temp
//! dirs), containers (the agents' instance labels).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_store::etcd_process::{EtcdCluster, etcd_for_test};
use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn wait_until(what: &str, secs: u64, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Who leads, as etcd's election says (the leader's endpoint).
struct LeaderWatch {
    rt: tokio::runtime::Runtime,
    seen: tokio::sync::watch::Receiver<Option<String>>,
    _leadership: berth_store::EtcdLeadership,
    _store: berth_store::EtcdStore,
}

impl LeaderWatch {
    fn new(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (store, leadership) = rt.block_on(async {
            let store = berth_store::EtcdStore::connect_url(url).await.unwrap();
            let l = berth_store::EtcdLeadership::new(&store, "observer", Duration::from_secs(2));
            (store, l)
        });
        use berth_store::Leadership;
        let seen = leadership.observe();
        Self { rt, seen, _leadership: leadership, _store: store }
    }

    fn leader(&self) -> Option<String> {
        self.seen.borrow().clone()
    }

    /// Waits for a leader other than `not`; returns it and how long it took.
    fn wait_other(&mut self, not: Option<&str>, secs: u64) -> (String, Duration) {
        let start = Instant::now();
        let seen = &mut self.seen;
        let got = self.rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(secs),
                seen.wait_for(|v| v.as_deref().is_some_and(|v| Some(v) != not)),
            )
            .await
            .map(|r| r.unwrap().clone())
        });
        match got {
            Ok(Some(v)) => (v, start.elapsed()),
            _ => panic!("no leader other than {not:?} within {secs} s"),
        }
    }
}

fn service(s: &ServerProc, name: &str) -> Value {
    s.aws(&["ecs", "describe-services", "--services", name]).json()["services"][0].clone()
}

fn task_arns(s: &ServerProc, name: &str, status: &str) -> Vec<String> {
    let out =
        s.aws(&["ecs", "list-tasks", "--service-name", name, "--desired-status", status]).json();
    out["taskArns"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

fn describe_tasks(s: &ServerProc, arns: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let mut args = vec!["ecs", "describe-tasks", "--tasks"];
        args.extend(chunk.iter().map(String::as_str));
        out.extend(s.aws(&args).json()["tasks"].as_array().unwrap().iter().cloned());
    }
    out
}

/// Containers (running or not) of a task, by ECS's task ARN label.
fn containers_of(task: &str, all: bool) -> usize {
    let mut args = vec!["ps", "-q"];
    if all {
        args.push("-a");
    }
    let filter = format!("label=com.amazonaws.ecs.task-arn={task}");
    args.extend(["--filter", &filter]);
    let out = Command::new("docker").args(&args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().count()
}

fn register(s: &ServerProc, version: &str) -> String {
    let td = serde_json::json!({"family": "ha-web", "containerDefinitions": [{
        "name": "web", "image": "berth-demo:latest", "memory": 16, "essential": true,
        "environment": [{"name": "VERSION", "value": version}],
        "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]});
    s.register_task_definition(&td)["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_string()
}

fn server_log(s: &ServerProc) -> String {
    std::fs::read_to_string(s.data_dir.with_extension("log")).unwrap_or_default()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn servers_fail_over_with_nothing_lost() {
    let Some(etcd_bin) = etcd_for_test("servers_fail_over_with_nothing_lost") else { return };
    require_demo_image();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let flags = ["--heartbeat-interval=50", "--election-timeout=500", "--max-txn-ops=1024"];
    let mut etcd = EtcdCluster::start(&etcd_bin, &tmp.path().join("etcd"), 3, &flags).unwrap();
    let url = etcd.url("berth/");
    let key_file = tmp.path().join("master.key");
    let key = key_file.display().to_string();
    let args = [
        "--store",
        url.as_str(),
        "--key-file",
        key.as_str(),
        "--leader-lease-secs",
        "2",
        "--service-settle-secs",
        "1",
        "--dns-listen",
        "off",
    ];
    // The first creates the master key; the others share it.
    let first = ServerProc::start_with(bin(), &args).expect("server 1");
    let mut servers = vec![first];
    for i in 2..=3 {
        servers.push(
            ServerProc::start_with(bin(), &args).unwrap_or_else(|e| panic!("server {i}: {e}")),
        );
    }
    let mut leader_watch = LeaderWatch::new(&url);
    let (leader, _) = leader_watch.wait_other(None, 20);
    let by_endpoint =
        |servers: &[ServerProc], e: &str| servers.iter().position(|s| s.endpoint == e).unwrap();
    let mut lead = by_endpoint(&servers, &leader);

    // Two agents, each given all three servers, the leader's first.
    let urls_from = |i: usize| -> String {
        (0..3).map(|k| servers[(i + k) % 3].endpoint.clone()).collect::<Vec<_>>().join(",")
    };
    let agent_args = ["--memory", "2048"];
    let a1 = AgentProc::start_with_env(
        bin(),
        &servers[lead],
        &agent_args,
        &[("BERTH_SERVER", &urls_from(lead))],
    )
    .expect("agent 1");
    let a2 = AgentProc::start_with_env(
        bin(),
        &servers[(lead + 1) % 3],
        &agent_args,
        &[("BERTH_SERVER", &urls_from((lead + 1) % 3))],
    )
    .expect("agent 2");

    // Phase 1: kill -9 of the leader in the middle of a rolling deployment.
    let any = (lead + 1) % 3;
    let v1 = register(&servers[any], "1");
    let created = servers[any].aws(&[
        "ecs",
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        &v1,
        "--desired-count",
        "4",
        "--deployment-configuration",
        "maximumPercent=125,minimumHealthyPercent=100",
    ]);
    created.json();
    wait_until("4 tasks of v1 running", 60, || {
        let svc = service(&servers[any], "web");
        svc["runningCount"] == 4 && svc["deployments"].as_array().map(Vec::len) == Some(1)
    });
    let v2 = register(&servers[any], "2");
    servers[any]
        .aws(&["ecs", "update-service", "--service", "web", "--task-definition", &v2])
        .json();
    wait_until("the rollout to start", 30, || {
        let arns = task_arns(&servers[any], "web", "RUNNING");
        describe_tasks(&servers[any], &arns).iter().any(|t| t["taskDefinitionArn"] == v2.as_str())
    });
    let old = servers[lead].endpoint.clone();
    servers[lead].kill9();
    let (new_leader, took) = leader_watch.wait_other(Some(&old), 10);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!(
        "phase 1: {new_leader} leads {:.1} s after the leader was killed",
        took.as_secs_f64()
    );
    let dead = lead;
    lead = by_endpoint(&servers, &new_leader);
    let any = (0..3).find(|i| *i != dead && *i != lead).unwrap();
    wait_until("the deployment to complete", 60, || {
        let svc = service(&servers[any], "web");
        svc["runningCount"] == 4
            && svc["deployments"].as_array().map(Vec::len) == Some(1)
            && svc["deployments"][0]["taskDefinition"] == v2.as_str()
            && svc["deployments"][0]["rolloutState"] == "COMPLETED"
    });
    let running = task_arns(&servers[any], "web", "RUNNING");
    let described = describe_tasks(&servers[any], &running);
    assert_eq!(described.len(), 4, "exactly the desired count: {described:?}");
    for t in &described {
        assert_eq!(t["taskDefinitionArn"], v2.as_str());
        assert_eq!(t["lastStatus"], "RUNNING", "{t}");
        let arn = t["taskArn"].as_str().unwrap();
        assert_eq!(containers_of(arn, false), 1, "one running container for {arn}");
    }
    let stopped = task_arns(&servers[any], "web", "STOPPED");
    for arn in running.iter().chain(&stopped) {
        assert!(containers_of(arn, true) <= 1, "task {arn} was started twice");
    }

    // Phase 2: kill -9 of one etcd member; the API keeps answering, nothing acknowledged lost.
    let live: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    servers[live[0]].aws(&["ecs", "create-cluster", "--cluster-name", "before"]).json();
    etcd.member(0).kill9();
    for (n, i) in live.iter().enumerate() {
        let name = format!("after-{n}");
        servers[*i].aws(&["ecs", "create-cluster", "--cluster-name", &name]).json();
    }
    for i in &live {
        let out = servers[*i].aws(&["ecs", "list-clusters"]).json();
        let arns = out["clusterArns"].to_string();
        for name in ["before", "after-0", "after-1"] {
            assert!(arns.contains(&format!("cluster/{name}\"")), "server {i} lost {name}: {arns}");
        }
    }
    etcd.member(0).restart().expect("etcd member back");

    // Phase 3: the leader paused past its lease, then resumed.
    let pid = servers[lead].pid().unwrap();
    let paused = servers[lead].endpoint.clone();
    let other = live.iter().copied().find(|i| *i != lead).unwrap();
    let victim = running[0].clone();
    signal(pid, "-STOP");
    let (next, took) = leader_watch.wait_other(Some(&paused), 15);
    eprintln!("phase 3: {next} leads {:.1} s after the leader was paused", took.as_secs_f64());
    assert_eq!(next, servers[other].endpoint, "the only other live server leads");
    // Work for the controllers while the old leader is paused: one more task, one stopped.
    servers[other]
        .aws(&["ecs", "stop-task", "--task", &victim, "--reason", "stopped during the pause"])
        .json();
    std::thread::sleep(Duration::from_secs(3)); // past the lease, by a margin
    signal(pid, "-CONT");
    wait_until("the paused server to notice it lost leadership", 15, || {
        server_log(&servers[lead]).contains("leadership lost")
    });
    let log = server_log(&servers[lead]);
    let fenced = log.matches("fenced write refused").count();
    eprintln!("phase 3: the resumed server had {fenced} controller write(s) refused by the fence");
    assert_eq!(leader_watch.leader().as_deref(), Some(servers[other].endpoint.as_str()));
    // The stopped task is reported stopped, and the service is whole again.
    wait_until("the stopped task's report", 60, || {
        describe_tasks(&servers[other], std::slice::from_ref(&victim))[0]["lastStatus"] == "STOPPED"
    });
    wait_until("the service to be whole again", 60, || {
        let svc = service(&servers[other], "web");
        svc["runningCount"] == 4 && task_arns(&servers[other], "web", "RUNNING").len() == 4
    });
    for arn in task_arns(&servers[other], "web", "RUNNING") {
        assert_eq!(containers_of(&arn, true), 1, "task {arn}: one container, started once");
    }
    eprintln!("ha test took {:.1} s", started.elapsed().as_secs_f64());
    drop((a1, a2));
    drop(servers);
}

/// `aws` against `endpoint` with the credentials in `data_dir` (any server's: they share the
/// administrator key), for client threads that must not hold a `ServerProc`.
fn aws_at(endpoint: &str, data_dir: &Path, args: &[&str]) -> berth_testkit::AwsResult {
    let mut cmd = Command::new("aws");
    cmd.args(["--endpoint-url", endpoint, "--output", "json"]).args(args);
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"] {
        cmd.env_remove(k);
    }
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", data_dir.join("credentials"))
        .env("AWS_CONFIG_FILE", data_dir.join("config"))
        .env("AWS_DEFAULT_REGION", berth_testkit::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_PAGER", "");
    berth_testkit::AwsResult::from(cmd.output().unwrap())
}

/// A Jepsen-style check, behind `BERTH_HA_LONG=1`: client threads call RunTask with client
/// tokens (retrying each token on the next server until one answers) while servers are killed
/// and restarted at random; afterwards every acknowledged task exists exactly once (by its
/// token, carried in `startedBy`) and no instance holds more memory than it registered.
#[test]
fn run_task_is_exactly_once_while_servers_die() {
    if std::env::var_os("BERTH_HA_LONG").is_none_or(|v| v != "1") {
        eprintln!("SKIPPED run_task_is_exactly_once_while_servers_die: set BERTH_HA_LONG=1");
        return;
    }
    let Some(etcd_bin) = etcd_for_test("run_task_is_exactly_once_while_servers_die") else {
        return;
    };
    require_demo_image();
    let tmp = tempfile::tempdir().unwrap();
    let flags = ["--heartbeat-interval=50", "--election-timeout=500", "--max-txn-ops=1024"];
    let _etcd = EtcdCluster::start(&etcd_bin, &tmp.path().join("etcd"), 3, &flags).unwrap();
    let url = _etcd.url("berth/");
    let key = tmp.path().join("master.key").display().to_string();
    let args =
        ["--store", &url, "--key-file", &key, "--leader-lease-secs", "2", "--dns-listen", "off"];
    let mut servers: Vec<ServerProc> =
        (0..3).map(|_| ServerProc::start_with(bin(), &args).expect("server")).collect();
    let endpoints: Vec<String> = servers.iter().map(|s| s.endpoint.clone()).collect();
    let creds_dir = servers[0].data_dir.clone();
    let all = endpoints.join(",");
    let agent_args = ["--memory", "256"];
    let agents: Vec<AgentProc> = (0..2)
        .map(|i| {
            AgentProc::start_with_env(bin(), &servers[i], &agent_args, &[("BERTH_SERVER", &all)])
                .expect("agent")
        })
        .collect();
    let td = serde_json::json!({"family": "jepsen", "containerDefinitions": [{
        "name": "c", "image": "berth-demo:latest", "memory": 16, "essential": true}]});
    servers[0].register_task_definition(&td);

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (endpoints, creds_dir) = (endpoints.clone(), creds_dir.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..12 {
                    let token = format!("jepsen-{t}-{i}");
                    let mut k = t + i;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let out = aws_at(
                            &endpoints[k % 3],
                            &creds_dir,
                            &[
                                "ecs",
                                "run-task",
                                "--task-definition",
                                "jepsen",
                                "--client-token",
                                &token,
                                "--started-by",
                                &token,
                            ],
                        );
                        if out.ok {
                            let v: Value = serde_json::from_str(&out.stdout).unwrap();
                            if let Some(arn) = v["tasks"][0]["taskArn"].as_str() {
                                acked.push((token.clone(), arn.to_string()));
                            }
                            break; // placed, or refused for capacity: either way answered
                        }
                        assert!(
                            Instant::now() < deadline,
                            "{token}: no server answered: {}",
                            out.stderr
                        );
                        k += 1;
                    }
                }
                acked
            })
        })
        .collect();
    let chaos = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut round = 0usize;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1500));
                let victim = round % 3;
                servers[victim].restart_same_port_after_kill9().expect("restart");
                round += 1;
            }
            (servers, round)
        })
    };
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.join().unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (servers, kills) = chaos.join().unwrap();
    eprintln!("{} tasks acknowledged while {kills} servers were killed and restarted", acked.len());
    assert!(!acked.is_empty());
    let s = &servers[0];
    for (token, arn) in &acked {
        let mut found = Vec::new();
        for status in ["RUNNING", "STOPPED"] {
            let out = s
                .aws(&["ecs", "list-tasks", "--started-by", token, "--desired-status", status])
                .json();
            found.extend(out["taskArns"].as_array().unwrap().iter().map(|a| a.to_string()));
        }
        assert_eq!(found, [format!("\"{arn}\"")], "token {token}: exactly its acknowledged task");
    }
    let out = s.aws(&["ecs", "list-container-instances"]).json();
    let arns: Vec<&str> = out["containerInstanceArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mut args = vec!["ecs", "describe-container-instances", "--container-instances"];
    args.extend(&arns);
    for ci in s.aws(&args).json()["containerInstances"].as_array().unwrap() {
        let memory = |field: &str| {
            ci[field].as_array().unwrap().iter().find(|r| r["name"] == "MEMORY").unwrap()
                ["integerValue"]
                .as_i64()
                .unwrap()
        };
        let (registered, remaining) = (memory("registeredResources"), memory("remainingResources"));
        assert!(remaining >= 0 && remaining <= registered, "overcommitted: {ci}");
        let out = s
            .aws(&[
                "ecs",
                "list-tasks",
                "--container-instance",
                ci["containerInstanceArn"].as_str().unwrap(),
            ])
            .json();
        let n = out["taskArns"].as_array().unwrap().len() as i64;
        assert!(n * 16 <= registered, "{n} tasks of 16 MiB on {registered} MiB: {ci}");
    }
    drop(agents);
}
