//! Fargate and awsvpc end to end (issue #12): `berth up` serves the Fargate pool with its
//! second local agent; the AWS CLI finds the default VPC's subnet through the EC2 API, opens
//! port 8080 in the default security group, runs a FARGATE task there and reaches it on its
//! own address; the task shows as ECS shows a Fargate task, the pool host is nobody's
//! container instance, and the task's interface is released when it stops.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_testkit::ServerProc;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// On drop, removes what the two local agents of a `berth up` on this data directory
/// created: containers and volumes by instance label, and the subnet bridges (networks
/// labelled with the instance).
struct Cleanup(PathBuf);

impl Cleanup {
    fn instance_arns(&self) -> Vec<String> {
        ["agent", "fargate-agent"]
            .iter()
            .filter_map(|d| std::fs::read(self.0.join(d).join("agent-state.json")).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter_map(|v| {
                v.as_object()?
                    .values()
                    .filter_map(|x| x.as_str())
                    .find(|s| s.contains(":container-instance/"))
                    .map(str::to_string)
            })
            .collect()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for arn in self.instance_arns() {
            berth_testkit::remove_instance_objects(&arn);
            let label = format!("label=berth.container-instance-arn={arn}");
            let out = std::process::Command::new("docker")
                .args(["network", "ls", "-q", "--filter", &label])
                .output();
            if let Ok(o) = out {
                for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = std::process::Command::new("docker").args(["network", "rm", id]).output();
                }
            }
        }
    }
}

/// `GET http://ip:8080/`'s body, or the error.
fn get(ip: &str) -> std::io::Result<String> {
    let addr = format!("{ip}:8080").parse().expect("an address");
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn a_fargate_task_runs_on_berth_up_in_the_default_vpc() {
    berth_testkit::require_demo_image();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("up");
    let _cleanup = Cleanup(data.clone());
    let up = ServerProc::start_up(bin(), &data, &["--memory", "2048"]).expect("berth up starts");

    // Only the host's own instance is the user's; the pool's cluster is hidden.
    let list = up.aws(&["ecs", "list-container-instances"]).json();
    assert_eq!(list["containerInstanceArns"].as_array().unwrap().len(), 1, "{list}");
    let clusters = up.aws(&["ecs", "list-clusters"]).json();
    assert_eq!(clusters["clusterArns"].as_array().unwrap().len(), 1, "{clusters}");

    // The default VPC's subnet in zone a, and its default group opened on 8080.
    let subnets = up
        .aws(&["ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true"])
        .json();
    let subnet = subnets["Subnets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["AvailabilityZone"] == "us-east-1a")
        .expect("a default subnet in us-east-1a")["SubnetId"]
        .as_str()
        .unwrap()
        .to_string();
    let groups = up
        .aws(&["ec2", "describe-security-groups", "--filters", "Name=group-name,Values=default"])
        .json();
    let sg = groups["SecurityGroups"][0]["GroupId"].as_str().expect("the default group").to_string();
    let open = up.aws(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &sg,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "0.0.0.0/0",
    ]);
    assert!(open.ok, "{}", open.stderr);

    up.register_task_definition(&serde_json::json!({
        "family": "fg", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "web", "image": "berth-demo:latest",
            "portMappings": [{"containerPort": 8080}]}]}));
    let network = format!(
        r#"{{"awsvpcConfiguration":{{"subnets":["{subnet}"],"securityGroups":["{sg}"],"assignPublicIp":"ENABLED"}}}}"#
    );
    let run = up
        .aws(&[
            "ecs",
            "run-task",
            "--task-definition",
            "fg",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            &network,
        ])
        .json();
    assert_eq!(run["failures"], serde_json::json!([]), "{run}");
    let t = &run["tasks"][0];
    let arn = t["taskArn"].as_str().unwrap().to_string();
    assert_eq!(t["launchType"], "FARGATE");
    assert_eq!(t["capacityProviderName"], "FARGATE");
    assert_eq!(t["platformVersion"], "1.4.0");
    assert_eq!(t["platformFamily"], "Linux");
    assert_eq!(t["availabilityZone"], "us-east-1a");
    assert!(t.get("containerInstanceArn").is_none(), "{t}");
    let att = &t["attachments"][0];
    assert_eq!(att["type"], "ElasticNetworkInterface");
    let detail = |name: &str| -> String {
        att["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .and_then(|d| d["value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let ip = detail("privateIPv4Address");
    let eni = detail("networkInterfaceId");
    assert!(ip.starts_with("172.31."), "an address of the default subnet: {ip}");

    let waited = up.aws(&["ecs", "wait", "tasks-running", "--tasks", &arn]);
    let d = up.aws(&["ecs", "describe-tasks", "--tasks", &arn]).json();
    assert!(waited.ok, "the task never ran: {}", d["tasks"][0]);
    assert_eq!(d["tasks"][0]["attachments"][0]["status"], "ATTACHED");

    // The task answers on its own address from the host.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        match get(&ip) {
            Ok(b) if b.contains("200") => break b,
            other => {
                assert!(Instant::now() < deadline, "{ip}:8080 never answered: {other:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(body.contains("Hello"), "{body}");

    // EC2 sees the task's interface.
    let nics = up.aws(&["ec2", "describe-network-interfaces"]).json();
    assert!(nics.to_string().contains(&eni), "{nics}");

    up.aws(&["ecs", "stop-task", "--task", &arn]).json();
    assert!(up.aws(&["ecs", "wait", "tasks-stopped", "--tasks", &arn]).ok);
    let d = up.aws(&["ecs", "describe-tasks", "--tasks", &arn]).json();
    assert_eq!(d["tasks"][0]["attachments"][0]["status"], "DELETED");
    let nics = up.aws(&["ec2", "describe-network-interfaces"]).json();
    assert!(!nics.to_string().contains(&eni), "released: {nics}");
}
