//! The `berth agent` flags the launcher relies on, against a real server:
//! * `--ec2-instance-id` makes the container instance's `ec2InstanceId` the instance's id
//!   (with an access key; a join token's server assigns its own) and registers
//!   `ecs.instance-id`;
//! * `--exit-with-parent` ends the agent when the thread that started it exits, and at once
//!   when `BERTH_PARENT_PID` is not its parent.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_instances::launcher::process::{JoinCredential, ProcessConfig, ProcessLauncher};
use berth_instances::launcher::{self, HostLauncher};
use berth_instances::record::InstanceRecord;
use berth_testkit::ServerProc;

fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_instance_agent_registers_with_the_instance_id() {
    let bin = berth_testkit::cargo_bin("berth", "berth").expect("the berth binary");
    let server = ServerProc::start(&bin).expect("server");
    let (access_key_id, secret_access_key) = server.admin_key().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ProcessConfig::new(
        server.endpoint.clone(),
        tmp.path(),
        JoinCredential::AccessKey { access_key_id, secret_access_key },
    )
    .unwrap();
    config.program = bin;
    let rec: InstanceRecord = serde_json::from_value(serde_json::json!({
        "id": "i-0123456789abcdef1", "imageId": "ami-berth", "instanceType": "c6i.xlarge",
        "subnetId": "subnet-1", "vpcId": "vpc-1", "availabilityZone": "us-east-1c",
        "privateIp": "172.31.32.4", "state": "pending", "launchTime": 0.0,
        "stateChangedAt": 0.0, "keyName": null, "ecsCluster": "default",
    }))
    .unwrap();
    let l = ProcessLauncher::new(config).unwrap();
    let (specs, _) = launcher::desired_specs([&rec], "us-east-1");
    assert!(launcher::converge(&l, &specs).1.is_empty());
    let ci = wait_for(60, "the instance in cluster default", || {
        let arns = server.aws(&["ecs", "list-container-instances"]).json();
        let arn = arns["containerInstanceArns"][0].as_str()?.to_string();
        let d = server
            .aws(&["ecs", "describe-container-instances", "--container-instances", &arn])
            .json();
        Some(d["containerInstances"][0].clone())
    });
    assert_eq!(ci["ec2InstanceId"], "i-0123456789abcdef1");
    let attr =
        |n: &str| ci["attributes"].as_array().unwrap().iter().find(|a| a["name"] == n).cloned();
    assert_eq!(attr("ecs.instance-id").unwrap()["value"], "i-0123456789abcdef1");
    assert_eq!(attr("ecs.instance-type").unwrap()["value"], "c6i.xlarge");
    let cpu = ci["registeredResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "CPU")
        .and_then(|r| r["integerValue"].as_i64());
    assert_eq!(cpu, Some(4096));
    l.shutdown();
    assert!(l.running().is_empty());
}

/// Starts `berth agent --exit-with-parent` for `server` with `BERTH_PARENT_PID`.
fn agent(
    bin: &std::path::Path,
    server: &ServerProc,
    dir: &std::path::Path,
    parent: u32,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["agent", "--exit-with-parent", "--server", &server.endpoint, "--data-dir"])
        .arg(dir)
        .env("AWS_SHARED_CREDENTIALS_FILE", server.credentials_file())
        .env("BERTH_PARENT_PID", parent.to_string())
        .env("BERTH_LOG", "warn")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn an_agent_started_with_exit_with_parent_dies_with_its_starter() {
    let bin = berth_testkit::cargo_bin("berth", "berth").expect("the berth binary");
    let server = ServerProc::start(&bin).expect("server");
    let tmp = tempfile::tempdir().unwrap();

    // A parent pid that is not its parent: it refuses to run.
    let out = agent(&bin, &server, &tmp.path().join("a"), 1).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has exited"));

    // Started from a thread that then ends: the agent gets SIGTERM and exits.
    let mut cmd = agent(&bin, &server, &tmp.path().join("b"), std::process::id());
    let mut child = std::thread::spawn(move || {
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let registered =
            BufReader::new(out).lines().map_while(Result::ok).any(|l| l.starts_with("registered "));
        assert!(registered, "the agent never registered");
        child
    })
    .join()
    .unwrap();
    let status = wait_for(30, "the agent to exit after its starter", || child.try_wait().unwrap());
    // A clean exit when its SIGTERM handler was in place, else SIGTERM's default action:
    // either way the agent is gone, and nothing but SIGTERM ended it.
    use std::os::unix::process::ExitStatusExt;
    assert!(status.success() || status.signal() == Some(15), "{status}");
}
