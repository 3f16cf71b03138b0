//! Agent-backed EC2 instances (issue #12), end to end against the real `berth server` with the
//! AWS CLI: the SSM parameter names Berth's image, `run-instances` with `ECS_CLUSTER=` user
//! data starts an agent that joins that cluster with the instance type's CPU and memory and
//! the instance's id, a task runs on it, `terminate-instances` deregisters it and its agent
//! process goes away; EC2's error codes for bad input. Needs Docker and the image
//! `berth-demo:latest` (scripts/build-demo-image.sh). Every container the instances ran is
//! removed by its instance label.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::{ServerProc, remove_instance_objects, require_demo_image};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Removes the containers of the container instances it was given, whatever happens.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for arn in &self.0 {
            remove_instance_objects(arn);
        }
    }
}

/// The pids of the `berth agent` processes whose command line names `instance_id`.
fn agent_pids(instance_id: &str) -> Vec<u32> {
    let mut pids = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).to_string()).collect();
        if args.iter().any(|a| a == "agent") && args.iter().any(|a| a == instance_id) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn run_instances_joins_the_cluster_and_terminate_removes_it() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let mut cleanup = Cleanup(vec![]);

    // The SSM parameter ECS users read names Berth's image.
    let p = s
        .aws(&[
            "ssm",
            "get-parameters",
            "--names",
            "/aws/service/ecs/optimized-ami/amazon-linux-2/recommended",
            "/no/such/parameter",
        ])
        .json();
    let doc: Value =
        serde_json::from_str(p["Parameters"][0]["Value"].as_str().expect("a value")).unwrap();
    let image = doc["image_id"].as_str().unwrap().to_string();
    assert_eq!(image, berth_instances_image_id());
    assert_eq!(p["InvalidParameters"], serde_json::json!(["/no/such/parameter"]));
    let sub = s
        .aws(&[
            "ssm",
            "get-parameter",
            "--name",
            "/aws/service/ecs/optimized-ami/amazon-linux-2/recommended/image_id",
            "--query",
            "Parameter.Value",
            "--output",
            "text",
        ])
        .stdout;
    assert_eq!(sub.trim(), image);
    s.aws(&["ssm", "get-parameter", "--name", "/nope"]).err("ParameterNotFound");

    // Bad input answers EC2's codes and launches nothing.
    let run = |extra: &[&str]| {
        let mut a = vec!["ec2", "run-instances"];
        a.extend_from_slice(extra);
        s.aws(&a)
    };
    run(&["--image-id", "ami-nothex", "--instance-type", "t3.small"]).err("InvalidAMIID.Malformed");
    run(&["--image-id", &image, "--instance-type", "t3.small", "--count", "0"])
        .err("InvalidParameterValue");
    run(&[
        "--image-id",
        &image,
        "--instance-type",
        "t3.small",
        "--subnet-id",
        "subnet-0000000000000000a",
    ])
    .err("InvalidSubnetID.NotFound");
    run(&[
        "--image-id",
        &image,
        "--instance-type",
        "t3.small",
        "--security-group-ids",
        "sg-0000000000000000a",
    ])
    .err("InvalidGroup.NotFound");
    s.aws(&["ec2", "describe-instances", "--instance-ids", "i-0000000000000000a"])
        .err("InvalidInstanceID.NotFound");
    s.aws(&["ec2", "terminate-instances", "--instance-ids", "bogus"])
        .err("InvalidInstanceID.Malformed");
    let none = s.aws(&["ec2", "describe-instances"]).json();
    assert_eq!(none["Reservations"], serde_json::json!([]), "{none}");

    // run-instances with ECS_CLUSTER user data -> running -> a container instance in `web`.
    let user_data = "#!/bin/bash\necho ECS_CLUSTER=web >> /etc/ecs/ecs.config\n";
    assert!(s.aws(&["ecs", "create-cluster", "--cluster-name", "web"]).ok);
    let started = Instant::now();
    let r = run(&[
        "--image-id",
        &image,
        "--instance-type",
        "t3.small",
        "--user-data",
        user_data,
        "--client-token",
        "tok-1",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=web-1}]",
    ])
    .json();
    let inst = &r["Instances"][0];
    let id = inst["InstanceId"].as_str().expect("InstanceId").to_string();
    assert_eq!(inst["State"]["Name"], "pending", "{r}");
    assert_eq!(inst["InstanceType"], "t3.small");
    assert_eq!(inst["Placement"]["AvailabilityZone"], "us-east-1a");
    assert!(inst["PrivateIpAddress"].as_str().unwrap().starts_with("172.31."), "{inst}");
    // The same client token answers the same reservation.
    let again =
        run(&["--image-id", &image, "--instance-type", "t3.small", "--client-token", "tok-1"])
            .json();
    assert_eq!(again["Instances"][0]["InstanceId"], id.as_str());
    assert_eq!(again["ReservationId"], r["ReservationId"]);

    assert!(s.aws(&["ec2", "wait", "instance-running", "--instance-ids", &id]).ok);
    let running_at = started.elapsed();
    let arns = s.aws(&["ecs", "list-container-instances", "--cluster", "web"]).json();
    let arn = arns["containerInstanceArns"][0].as_str().expect("a container instance").to_string();
    cleanup.0.push(arn.clone());
    let ci = s
        .aws(&[
            "ecs",
            "describe-container-instances",
            "--cluster",
            "web",
            "--container-instances",
            &arn,
        ])
        .json();
    let ci = &ci["containerInstances"][0];
    eprintln!("run-instances to container instance ACTIVE: {:.1} s", running_at.as_secs_f64());
    assert_eq!(ci["ec2InstanceId"], id.as_str(), "{ci}");
    assert_eq!(ci["status"], "ACTIVE");
    let cpu = ci["registeredResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "CPU")
        .map(|r| r["integerValue"].as_i64().unwrap());
    assert_eq!(cpu, Some(2048), "t3.small has 2 vCPU: {ci}");
    let mem = ci["registeredResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "MEMORY")
        .map(|r| r["integerValue"].as_i64().unwrap())
        .unwrap();
    assert!((1500..2048).contains(&mem), "t3.small has 2 GiB less the reserve: {mem}");
    let d = s
        .aws(&[
            "ec2",
            "describe-instances",
            "--filters",
            "Name=instance-state-name,Values=running",
            "Name=tag:Name,Values=web-1",
        ])
        .json();
    assert_eq!(d["Reservations"][0]["Instances"][0]["InstanceId"], id.as_str(), "{d}");
    assert_eq!(agent_pids(&id).len(), 1, "one agent process for the instance");
    let zone = ci["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "ecs.availability-zone")
        .map(|a| a["value"].clone());
    assert_eq!(zone, Some(Value::from("us-east-1a")), "the signed document's zone: {ci}");

    // Its identity document, signed by the server, is in its data directory, as IMDS serves
    // it; the agent joined with it and signs with a key of its own (never the admin's).
    let agent_dir = s.data_dir.join("instances").join(&id);
    let document = std::fs::read_to_string(agent_dir.join("identity-document.json")).unwrap();
    let signature = std::fs::read_to_string(agent_dir.join("identity-document.sig")).unwrap();
    let d: Value = serde_json::from_str(&document).unwrap();
    for (k, v) in [
        ("instanceId", id.as_str()),
        ("region", "us-east-1"),
        ("availabilityZone", "us-east-1a"),
        ("instanceType", "t3.small"),
        ("imageId", image.as_str()),
        ("privateIp", inst["PrivateIpAddress"].as_str().unwrap()),
    ] {
        assert_eq!(d[k], v, "{k} in {document}");
    }
    assert!(d["pendingTime"].as_str().unwrap().ends_with('Z'), "{document}");
    assert_eq!(d["accountId"].as_str().unwrap().len(), 12, "{document}");
    let own: Value = serde_json::from_str(
        &std::fs::read_to_string(agent_dir.join("instance-credentials.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(own["containerInstanceArn"], arn.as_str());
    assert_ne!(own["accessKeyId"].as_str().unwrap(), s.admin_key().unwrap().0);
    // RegisterContainerInstance: a valid document fixes the EC2 id and zone whatever the
    // attributes claim; an altered or forged one is refused with ECS's error.
    assert!(s.aws(&["ecs", "create-cluster", "--cluster-name", "idcheck"]).ok);
    let register = |doc: &str, sig: &str| {
        s.aws(&[
            "ecs",
            "register-container-instance",
            "--cluster",
            "idcheck",
            "--instance-identity-document",
            doc,
            "--instance-identity-document-signature",
            sig,
            "--total-resources",
            "name=CPU,type=INTEGER,integerValue=1024",
            "name=MEMORY,type=INTEGER,integerValue=1024",
            "--attributes",
            "name=ecs.availability-zone,value=us-east-1c",
        ])
    };
    let altered = document.replace("us-east-1a", "us-east-1b");
    assert!(register(&altered, &signature).err("ClientException").contains("not valid"));
    register(&document, "Zm9yZ2VkIHNpZ25hdHVyZQ==").err("ClientException");
    let ok = register(&document, &signature).json();
    let ok = &ok["containerInstance"];
    assert_eq!(ok["ec2InstanceId"], id.as_str(), "{ok}");
    let zone =
        ok["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "ecs.availability-zone");
    assert_eq!(zone.unwrap()["value"], "us-east-1a", "{ok}");
    let other = ok["containerInstanceArn"].as_str().unwrap().to_string();
    assert!(
        s.aws(&[
            "ecs",
            "deregister-container-instance",
            "--cluster",
            "idcheck",
            "--container-instance",
            &other
        ])
        .ok
    );

    // A task runs on it.
    s.register_task_definition(&serde_json::json!({"family": "on-ec2", "containerDefinitions": [
        {"name": "web", "image": "berth-demo:latest", "memory": 32}]}));
    let t = s.aws(&["ecs", "run-task", "--cluster", "web", "--task-definition", "on-ec2"]).json();
    let task = t["tasks"][0]["taskArn"].as_str().expect("a task").to_string();
    assert_eq!(t["tasks"][0]["containerInstanceArn"], arn.as_str());
    assert!(s.aws(&["ecs", "wait", "tasks-running", "--cluster", "web", "--tasks", &task]).ok);

    // Stop and start: the instance's tasks stop with it, the agent goes and comes back as
    // the same container instance.
    let stop = s.aws(&["ec2", "stop-instances", "--instance-ids", &id]).json();
    assert_eq!(stop["StoppingInstances"][0]["CurrentState"]["Name"], "stopping", "{stop}");
    // (Polled: the CLI's waiter polls only every 15 s.)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = s.aws(&[
            "ec2",
            "describe-instances",
            "--instance-ids",
            &id,
            "--query",
            "Reservations[0].Instances[0].State.Name",
            "--output",
            "text",
        ]);
        if st.stdout.trim() == "stopped" {
            break;
        }
        assert!(Instant::now() < deadline, "{id} never stopped: {}", st.stdout);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(agent_pids(&id).is_empty(), "a stopped instance runs no agent");
    let stopped = s.aws(&["ecs", "describe-tasks", "--cluster", "web", "--tasks", &task]).json();
    let stopped = &stopped["tasks"][0];
    assert_eq!(stopped["lastStatus"], "STOPPED", "{stopped}");
    assert_eq!(stopped["stoppedReason"], format!("Host EC2 (instance {id}) stopped/terminated."));
    let left = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=com.amazonaws.ecs.task-arn={task}")])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "a stopped instance's task container still runs");
    s.aws(&["ec2", "stop-instances", "--instance-ids", &id, "bogus"])
        .err("InvalidInstanceID.Malformed");
    let start = s.aws(&["ec2", "start-instances", "--instance-ids", &id]).json();
    assert_eq!(start["StartingInstances"][0]["PreviousState"]["Name"], "stopped", "{start}");
    assert!(s.aws(&["ec2", "wait", "instance-running", "--instance-ids", &id]).ok);
    let arns = s.aws(&["ecs", "list-container-instances", "--cluster", "web"]).json();
    assert_eq!(arns["containerInstanceArns"], serde_json::json!([arn.as_str()]), "the same one");

    // Terminate: the container instance is deregistered, the agent goes away.
    let term = s.aws(&["ec2", "terminate-instances", "--instance-ids", &id]).json();
    assert_eq!(term["TerminatingInstances"][0]["PreviousState"]["Name"], "running", "{term}");
    assert_eq!(term["TerminatingInstances"][0]["CurrentState"]["Name"], "shutting-down");
    assert!(s.aws(&["ec2", "wait", "instance-terminated", "--instance-ids", &id]).ok);
    let ci = s
        .aws(&[
            "ecs",
            "describe-container-instances",
            "--cluster",
            "web",
            "--container-instances",
            &arn,
        ])
        .json();
    assert_eq!(ci["containerInstances"][0]["status"], "INACTIVE", "{ci}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent_pids(&id).is_empty() {
        assert!(Instant::now() < deadline, "the agent of {id} is still running");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.aws(&["ec2", "start-instances", "--instance-ids", &id]).err("IncorrectInstanceState");
}

fn berth_instances_image_id() -> &'static str {
    "ami-0be7000000000000a"
}
