//! Fargate and awsvpc end to end (issue #12): `berth up` serves the Fargate pool with its
//! second local agent; the AWS CLI creates a VPC, a subnet and a security group open on port
//! 8080 through the EC2 API, runs a FARGATE task there and reaches it on its own address; the task shows as ECS shows a Fargate task, the pool host is nobody's
//! container instance, and the task's interface is released when it stops.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::ServerProc;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
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
fn a_fargate_task_runs_on_berth_up_in_its_own_vpc() {
    berth_testkit::require_demo_image();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("up");
    let _cleanup = berth_testkit::UpCleanup(data.clone());
    let up = ServerProc::start_up(bin(), &data, &["--memory", "2048"]).expect("berth up starts");

    // Only the host's own instance is the user's; the pool's cluster is hidden.
    let list = up.aws(&["ecs", "list-container-instances"]).json();
    assert_eq!(list["containerInstanceArns"].as_array().unwrap().len(), 1, "{list}");
    let clusters = up.aws(&["ecs", "list-clusters"]).json();
    assert_eq!(clusters["clusterArns"].as_array().unwrap().len(), 1, "{clusters}");

    // A VPC of its own (a CIDR no other test's Docker networks are likely to use on this
    // host: every default VPC is 172.31.0.0/16), a subnet in zone a and a group open on 8080,
    // all through the EC2 API.
    let text = |args: &[&str]| -> String {
        let mut a = args.to_vec();
        a.extend(["--output", "text"]);
        let r = up.aws(&a);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r.stdout.trim().to_string()
    };
    let octet = 100 + std::process::id() % 100;
    let vpc = text(&[
        "ec2",
        "create-vpc",
        "--cidr-block",
        &format!("10.{octet}.0.0/16"),
        "--query",
        "Vpc.VpcId",
    ]);
    let subnet = text(&[
        "ec2",
        "create-subnet",
        "--vpc-id",
        &vpc,
        "--cidr-block",
        &format!("10.{octet}.1.0/24"),
        "--availability-zone",
        "us-east-1a",
        "--query",
        "Subnet.SubnetId",
    ]);
    let sg = text(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "web",
        "--description",
        "web tasks",
        "--vpc-id",
        &vpc,
        "--query",
        "GroupId",
    ]);
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
    assert_eq!(ip, format!("10.{octet}.1.4"), "the subnet's first usable address");

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

    spot_falls_back_to_fargate_and_returns(&up, &data, &network);
}

/// `berth spot capacity --unavailable`: a service of a cluster tagged
/// `berth:fargate-spot-fallback=enabled` runs its FARGATE_SPOT share on FARGATE, and moves
/// it back to FARGATE_SPOT once `berth spot capacity --available`.
fn spot_falls_back_to_fargate_and_returns(up: &ServerProc, data: &Path, network: &str) {
    let spot = |flag: &str| {
        let out = std::process::Command::new(bin())
            .args(["spot", "capacity", flag, "--data-dir"])
            .arg(data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let c = up.aws(&[
        "ecs",
        "create-cluster",
        "--cluster-name",
        "fb",
        "--capacity-providers",
        "FARGATE",
        "FARGATE_SPOT",
        "--tags",
        "key=berth:fargate-spot-fallback,value=enabled",
    ]);
    assert!(c.ok, "{}", c.stderr);
    assert!(spot("--unavailable").contains("unavailable"));
    let svc = up.aws(&[
        "ecs",
        "create-service",
        "--cluster",
        "fb",
        "--service-name",
        "fb-web",
        "--task-definition",
        "fg",
        "--desired-count",
        "1",
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE_SPOT,weight=1",
        "--network-configuration",
        network,
    ]);
    assert!(svc.ok, "{}", svc.stderr);
    // The one RUNNING task of the service, once there is one on `provider`.
    let running_on =
        |provider: &str| -> serde_json::Value {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let l = up
                    .aws(&["ecs", "list-tasks", "--cluster", "fb", "--service-name", "fb-web"])
                    .json();
                let arns: Vec<&str> =
                    l["taskArns"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
                if !arns.is_empty() {
                    let mut a = vec![
                        "ecs",
                        "describe-tasks",
                        "--cluster",
                        "fb",
                        "--include",
                        "TAGS",
                        "--tasks",
                    ];
                    a.extend(&arns);
                    let d = up.aws(&a).json();
                    if let Some(t) = d["tasks"].as_array().unwrap().iter().find(|t| {
                        t["lastStatus"] == "RUNNING" && t["capacityProviderName"] == provider
                    }) {
                        return t.clone();
                    }
                }
                assert!(Instant::now() < deadline, "no RUNNING task on {provider}: {l}");
                std::thread::sleep(Duration::from_millis(250));
            }
        };
    let fallback = running_on("FARGATE");
    assert!(fallback["tags"].to_string().contains("berth:fargate-spot-fallback"), "{fallback}");
    assert!(spot("--available").contains("available"));
    let back = running_on("FARGATE_SPOT");
    assert_ne!(back["taskArn"], fallback["taskArn"]);
    let events = up
        .aws(&["ecs", "describe-services", "--cluster", "fb", "--services", "fb-web"])
        .json()["services"][0]["events"]
        .to_string();
    assert!(events.contains("FARGATE_SPOT has no capacity"), "{events}");
    assert!(events.contains("back to FARGATE_SPOT"), "{events}");
    assert!(
        up.aws(&["ecs", "delete-service", "--cluster", "fb", "--service", "fb-web", "--force"]).ok
    );
    let arn = back["taskArn"].as_str().unwrap();
    assert!(up.aws(&["ecs", "wait", "tasks-stopped", "--cluster", "fb", "--tasks", arn]).ok);
}
