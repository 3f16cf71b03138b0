//! The process launcher against a real `berth server`: two instances' agents join the cluster
//! their UserData names with their type's capacity and the instance id attribute; a
//! terminated instance's agent stops and its container instance is gone from the cluster; a
//! new launcher (a restarted server) brings the surviving instance back as the same container
//! instance; dropping the launcher leaves no agent process behind.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use berth_instances::launcher::process::{JoinCredential, ProcessConfig, ProcessLauncher};
use berth_instances::launcher::{self, HostLauncher};
use berth_instances::record::{InstanceRecord, InstanceState};
use berth_testkit::ServerProc;
use serde_json::Value;

/// Waits (polling) until `f` returns `Some`, at most `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn record(id: &str, ty: &str, zone: &str, ip: &str, user_data: &str) -> InstanceRecord {
    serde_json::from_value(serde_json::json!({
        "id": id, "imageId": "ami-berth", "instanceType": ty, "subnetId": "subnet-1",
        "vpcId": "vpc-1", "availabilityZone": zone, "privateIp": ip, "state": "pending",
        "launchTime": 0.0, "stateChangedAt": 0.0, "keyName": null, "ecsCluster": "web",
        "userData": base64::engine::general_purpose::STANDARD.encode(user_data),
    }))
    .unwrap()
}

/// The cluster's container instances by their `ecs.instance-id` attribute.
fn instances(server: &ServerProc, status: &str) -> BTreeMap<String, Value> {
    let arns = server
        .aws(&["ecs", "list-container-instances", "--cluster", "web", "--status", status])
        .json();
    let arns: Vec<&str> = arns["containerInstanceArns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if arns.is_empty() {
        return BTreeMap::new();
    }
    let mut args = vec!["ecs", "describe-container-instances", "--cluster", "web"];
    args.push("--container-instances");
    args.extend(arns);
    let d = server.aws(&args).json();
    d["containerInstances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|ci| {
            let id = ci["attributes"]
                .as_array()?
                .iter()
                .find(|a| a["name"] == "ecs.instance-id")?["value"]
                .as_str()?
                .to_string();
            Some((id, ci.clone()))
        })
        .collect()
}

fn resource(ci: &Value, name: &str) -> i64 {
    ci["registeredResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["integerValue"].as_i64())
        .unwrap_or(-1)
}

fn attribute<'a>(ci: &'a Value, name: &str) -> Option<&'a str> {
    ci["attributes"].as_array()?.iter().find(|a| a["name"] == name)?["value"].as_str()
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: it has exited and only awaits its parent.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn instances_join_their_cluster_and_leave_when_terminated() {
    let bin = berth_testkit::cargo_bin("berth", "berth").expect("the berth binary");
    let server = ServerProc::start(&bin).expect("server");
    server.aws(&["ecs", "create-cluster", "--cluster-name", "web"]).json();
    let token = Command::new(&bin)
        .args(["token", "create", "--expires-in", "1h", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .expect("berth token create");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let mut config = ProcessConfig::new(
        server.endpoint.clone(),
        tmp.path(),
        JoinCredential::JoinToken(token.clone()),
    )
    .unwrap();
    config.program = bin.clone();
    config.grace = Duration::from_secs(20);
    let ud = "#!/bin/bash\necho ECS_CLUSTER=web >> /etc/ecs/ecs.config\n\
              echo 'ECS_INSTANCE_ATTRIBUTES={\"stack\":\"test\"}' >> /etc/ecs/ecs.config\n";
    let mut recs = vec![
        record("i-0000000000000000a", "t3.small", "us-east-1a", "172.31.0.4", ud),
        record("i-0000000000000000b", "m5.large", "us-east-1b", "172.31.16.4", ud),
    ];
    let launcher = ProcessLauncher::new(config.clone()).unwrap();
    let pass = |l: &ProcessLauncher, recs: &[InstanceRecord]| {
        let (specs, errors) = launcher::desired_specs(recs, "us-east-1");
        assert!(errors.is_empty(), "{errors:?}");
        let (_, failed) = launcher::converge(l, &specs);
        assert!(failed.is_empty(), "{failed:?}");
    };
    pass(&launcher, &recs);

    let started = Instant::now();
    let joined = wait_for(90, "two container instances in cluster web", || {
        let m = instances(&server, "ACTIVE");
        (m.len() == 2).then_some(m)
    });
    eprintln!("two instances registered {:?} after RunInstances", started.elapsed());
    let a = &joined["i-0000000000000000a"];
    let b = &joined["i-0000000000000000b"];
    assert_eq!((resource(a, "CPU"), resource(a, "MEMORY")), (2048, 2048 - 256), "t3.small");
    assert_eq!((resource(b, "CPU"), resource(b, "MEMORY")), (2048, 8192 - 256), "m5.large");
    assert_eq!(attribute(a, "ecs.instance-type"), Some("t3.small"));
    assert_eq!(attribute(b, "ecs.availability-zone"), Some("us-east-1b"));
    assert_eq!(attribute(a, "stack"), Some("test"), "ECS_INSTANCE_ATTRIBUTES");
    assert_eq!(a["agentConnected"], true);
    for r in recs.iter_mut() {
        r.state = r.state.on_agent_up().unwrap();
    }
    assert!(tmp.path().join("instances/i-0000000000000000a/agent.log").exists());

    // Terminate b, as TerminateInstances will: shutting-down, deregister (force), stop.
    recs[1].state = recs[1].state.on_terminate().unwrap();
    let b_arn = b["containerInstanceArn"].as_str().unwrap().to_string();
    server
        .aws(&[
            "ecs",
            "deregister-container-instance",
            "--cluster",
            "web",
            "--container-instance",
            &b_arn,
            "--force",
        ])
        .json();
    let stopping = Instant::now();
    pass(&launcher, &recs);
    wait_for(30, "b's agent to exit", || {
        (!launcher.running().iter().any(|r| r.spec.instance_id == "i-0000000000000000b"))
            .then_some(())
    });
    let stop_took = stopping.elapsed();
    eprintln!("b's agent stopped in {stop_took:?}");
    assert!(stop_took < Duration::from_secs(20), "b exited by itself, before SIGKILL");
    let changes = launcher::gone(&recs, &launcher.running());
    assert_eq!(changes, vec![("i-0000000000000000b".to_string(), InstanceState::Terminated)]);
    recs[1].state = changes[0].1;
    let active = instances(&server, "ACTIVE");
    assert_eq!(active.keys().collect::<Vec<_>>(), ["i-0000000000000000a"]);
    let gone = server
        .aws(&[
            "ecs",
            "describe-container-instances",
            "--cluster",
            "web",
            "--container-instances",
            &b_arn,
        ])
        .json();
    assert_eq!(gone["containerInstances"][0]["status"], "INACTIVE");

    // StopInstances on a: its agent gets SIGTERM and exits by itself (well before SIGKILL);
    // the container instance stays registered, as ECS keeps a stopped instance's.
    let a_arn = a["containerInstanceArn"].as_str().unwrap().to_string();
    recs[0].state = recs[0].state.on_stop("i-0000000000000000a").unwrap().unwrap();
    let stopping = Instant::now();
    pass(&launcher, &recs);
    wait_for(30, "a's agent to exit", || launcher.running().is_empty().then_some(()));
    let stop_took = stopping.elapsed();
    eprintln!("a's agent stopped on SIGTERM in {stop_took:?}");
    assert!(stop_took < Duration::from_secs(20), "a exited on SIGTERM, before SIGKILL");
    let changes = launcher::gone(&recs, &launcher.running());
    assert_eq!(changes, vec![("i-0000000000000000a".to_string(), InstanceState::Stopped)]);
    recs[0].state = changes[0].1;
    assert!(instances(&server, "ACTIVE").contains_key("i-0000000000000000a"));
    // StartInstances: the same data directory, so the same container instance.
    recs[0].state = recs[0].state.on_start("i-0000000000000000a").unwrap().unwrap();
    pass(&launcher, &recs);
    wait_for(60, "a back after StartInstances", || {
        let m = instances(&server, "ACTIVE");
        (m.len() == 1
            && m["i-0000000000000000a"]["agentConnected"] == true
            && m["i-0000000000000000a"]["containerInstanceArn"] == a_arn.as_str()
            && launcher.running().len() == 1)
            .then_some(())
    });

    // A restarted server: the old launcher's agents end, a new launcher brings a back as the
    // same container instance.
    let a_pid = launcher.running()[0].pid.unwrap();
    drop(launcher);
    assert!(!alive(a_pid), "the agent outlived its launcher");
    let relaunched = ProcessLauncher::new(config).unwrap();
    pass(&relaunched, &recs);
    assert_eq!(relaunched.running().len(), 1, "only the running instance gets an agent");
    wait_for(60, "a back, connected", || {
        let m = instances(&server, "ACTIVE");
        (m.len() == 1
            && m["i-0000000000000000a"]["agentConnected"] == true
            && m["i-0000000000000000a"]["containerInstanceArn"] == a_arn.as_str())
        .then_some(())
    });
    let pid = relaunched.running()[0].pid.unwrap();
    relaunched.shutdown();
    assert!(!alive(pid));
    assert!(relaunched.running().is_empty());
}
