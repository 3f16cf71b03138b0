//! Launch templates and Auto Scaling groups of agent-backed instances (issue #12), end to end
//! against one real `berth server` with the AWS CLI: a launch template whose UserData names
//! the cluster, a group of 0..2 desired 1 makes one container instance appear, set-desired
//! capacity 0 takes it away (the instance terminates, its agent exits, the container
//! instance deregisters); EC2's and Auto Scaling's error codes for bad input; an Auto
//! Scaling group capacity provider with managed scaling: a task that fits no instance waits
//! in PROVISIONING, the group scales out, the task runs on the new instance (protected from
//! scale-in while it does), and once it stops the instance is drained and terminated. Needs Docker
//! and the image `berth-demo:latest` (scripts/build-demo-image.sh). Every container the
//! instances ran, and their cgroups, are removed by instance.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_testkit::{ServerProc, remove_instance_objects, require_demo_image};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// One server for the whole binary: the parts run in order against it (a shared server
/// in a static would never be dropped, leaving its process behind).
#[test]
fn autoscaling_end_to_end() {
    require_demo_image();
    // Managed scaling scales in after 5 s below target (ECS: 900).
    let s = ServerProc::start_with(bin(), &["--scale-in-after-secs", "5"]).expect("server");
    launch_templates_answer_as_ec2_does(&s);
    a_group_of_agent_backed_instances_follows_its_desired_capacity(&s);
    managed_scaling_adds_an_instance_for_waiting_tasks_and_drains_it_after(&s);
}

/// Standard base64 with padding.
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Container instances seen, cleaned up at the end of each test.
struct Cleanup(Mutex<Vec<String>>);

impl Cleanup {
    fn add(&self, arn: &str) {
        let mut v = self.0.lock().unwrap();
        if !v.iter().any(|a| a == arn) {
            v.push(arn.to_string());
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for arn in self.0.lock().unwrap().iter() {
            remove_instance_objects(arn);
        }
    }
}

/// Polls `f` until it answers `Some`, at most `secs` seconds.
fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls until instance `id` is terminated (the CLI's waiter polls only every 15 s).
fn wait_terminated(s: &ServerProc, id: &str) {
    until(&format!("{id} terminated"), 90, || {
        let d = s
            .aws(&[
                "ec2",
                "describe-instances",
                "--instance-ids",
                id,
                "--query",
                "Reservations[0].Instances[0].State.Name",
                "--output",
                "text",
            ])
            .stdout;
        (d.trim() == "terminated").then_some(())
    });
}

fn user_data(cluster: &str) -> String {
    b64(format!("#!/bin/bash\necho ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config\n").as_bytes())
}

fn image() -> &'static str {
    "ami-0be7000000000000a"
}

fn active_instances(s: &ServerProc, cluster: &str) -> Vec<Value> {
    let arns = s.aws(&["ecs", "list-container-instances", "--cluster", cluster]).json();
    let arns: Vec<String> = arns["containerInstanceArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    if arns.is_empty() {
        return vec![];
    }
    let mut args = vec!["ecs", "describe-container-instances", "--cluster", cluster];
    args.push("--container-instances");
    args.extend(arns.iter().map(String::as_str));
    let d = s.aws(&args).json();
    d["containerInstances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "ACTIVE")
        .cloned()
        .collect()
}

fn launch_templates_answer_as_ec2_does(s: &ServerProc) {
    let data = format!(
        r#"{{"ImageId":"{}","InstanceType":"t3.small","UserData":"{}"}}"#,
        image(),
        user_data("lt-test")
    );
    let lt = s
        .aws(&[
            "ec2",
            "create-launch-template",
            "--launch-template-name",
            "lt-basic",
            "--launch-template-data",
            &data,
        ])
        .json();
    let id = lt["LaunchTemplate"]["LaunchTemplateId"].as_str().unwrap().to_string();
    assert_eq!(lt["LaunchTemplate"]["LatestVersionNumber"], 1, "{lt}");
    s.aws(&[
        "ec2",
        "create-launch-template",
        "--launch-template-name",
        "lt-basic",
        "--launch-template-data",
        &data,
    ])
    .err("InvalidLaunchTemplateName.AlreadyExistsException");
    s.aws(&["ec2", "describe-launch-templates", "--launch-template-ids", "lt-0000000000000000a"])
        .err("InvalidLaunchTemplateId.NotFound");
    let v2 = s
        .aws(&[
            "ec2",
            "create-launch-template-version",
            "--launch-template-id",
            &id,
            "--source-version",
            "1",
            "--launch-template-data",
            r#"{"InstanceType":"t3.medium"}"#,
        ])
        .json();
    assert_eq!(v2["LaunchTemplateVersion"]["VersionNumber"], 2, "{v2}");
    assert_eq!(v2["LaunchTemplateVersion"]["LaunchTemplateData"]["ImageId"], image());
    s.aws(&[
        "ec2",
        "modify-launch-template",
        "--launch-template-id",
        &id,
        "--default-version",
        "7",
    ])
    .err("InvalidLaunchTemplateId.VersionNotFound");
    let m = s
        .aws(&[
            "ec2",
            "modify-launch-template",
            "--launch-template-id",
            &id,
            "--default-version",
            "2",
        ])
        .json();
    assert_eq!(m["LaunchTemplate"]["DefaultVersionNumber"], 2, "{m}");
    let vs = s
        .aws(&[
            "ec2",
            "describe-launch-template-versions",
            "--launch-template-name",
            "lt-basic",
            "--versions",
            "$Default",
            "1",
        ])
        .json();
    let types: Vec<&str> = vs["LaunchTemplateVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["LaunchTemplateData"]["InstanceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["t3.medium", "t3.small"], "{vs}");
    s.aws(&["ec2", "delete-launch-template", "--launch-template-name", "lt-basic"]);
    s.aws(&["ec2", "describe-launch-templates", "--launch-template-names", "lt-basic"])
        .err("InvalidLaunchTemplateName.NotFoundException");
}

fn a_group_of_agent_backed_instances_follows_its_desired_capacity(s: &ServerProc) {
    let cleanup = Cleanup(Mutex::new(vec![]));
    let cluster = "asg-basic";
    assert!(s.aws(&["ecs", "create-cluster", "--cluster-name", cluster]).ok);
    let data = format!(
        r#"{{"ImageId":"{}","InstanceType":"t3.small","UserData":"{}"}}"#,
        image(),
        user_data(cluster)
    );
    assert!(
        s.aws(&[
            "ec2",
            "create-launch-template",
            "--launch-template-name",
            "asg-basic",
            "--launch-template-data",
            &data,
        ])
        .ok
    );
    let subnet = s
        .aws(&[
            "ec2",
            "describe-subnets",
            "--filters",
            "Name=default-for-az,Values=true",
            "--query",
            "Subnets[0].SubnetId",
            "--output",
            "text",
        ])
        .stdout
        .trim()
        .to_string();
    let create = |name: &str, extra: &[&str]| {
        let mut a = vec![
            "autoscaling",
            "create-auto-scaling-group",
            "--auto-scaling-group-name",
            name,
            "--launch-template",
            "LaunchTemplateName=asg-basic,Version=$Latest",
            "--vpc-zone-identifier",
            &subnet,
        ];
        a.extend_from_slice(extra);
        s.aws(&a)
    };
    // Bad input: Auto Scaling's codes, naming what is wrong.
    let e = create("bad", &["--min-size", "2", "--max-size", "1"]);
    assert!(e.err("ValidationError").contains("min bound"), "{}", e.stderr);
    let e = create("bad", &["--min-size", "0", "--max-size", "1", "--desired-capacity", "3"]);
    assert!(e.err("ValidationError").contains("Desired capacity"), "{}", e.stderr);
    s.aws(&[
        "autoscaling",
        "set-desired-capacity",
        "--auto-scaling-group-name",
        "nope",
        "--desired-capacity",
        "1",
    ])
    .err("ValidationError");

    let started = Instant::now();
    assert!(
        create(
            "asg-basic",
            &[
                "--min-size",
                "0",
                "--max-size",
                "2",
                "--desired-capacity",
                "1",
                "--tags",
                "Key=team,Value=blue,PropagateAtLaunch=true",
            ]
        )
        .ok
    );
    create("asg-basic", &["--min-size", "0", "--max-size", "2"]).err("AlreadyExists");
    let ci = until("a container instance", 60, || {
        let v = active_instances(s, cluster);
        for c in &v {
            cleanup.add(c["containerInstanceArn"].as_str().unwrap());
        }
        (v.len() == 1).then(|| v[0].clone())
    });
    eprintln!(
        "create-auto-scaling-group to ACTIVE container instance: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let id = ci["ec2InstanceId"].as_str().unwrap().to_string();
    let g = until("the member in service", 30, || {
        let g = s
            .aws(&[
                "autoscaling",
                "describe-auto-scaling-groups",
                "--auto-scaling-group-names",
                "asg-basic",
            ])
            .json();
        let g = g["AutoScalingGroups"][0].clone();
        (g["Instances"][0]["LifecycleState"] == "InService").then_some(g)
    });
    assert_eq!(g["Instances"][0]["InstanceId"], id.as_str(), "{g}");
    assert_eq!(g["DesiredCapacity"], 1);
    let tagged = s
        .aws(&[
            "ec2",
            "describe-instances",
            "--filters",
            "Name=tag:aws:autoscaling:groupName,Values=asg-basic",
            "Name=tag:team,Values=blue",
            "--query",
            "Reservations[].Instances[].InstanceId",
        ])
        .json();
    assert_eq!(tagged, serde_json::json!([id.as_str()]));
    let ai =
        s.aws(&["autoscaling", "describe-auto-scaling-instances", "--instance-ids", &id]).json();
    assert_eq!(ai["AutoScalingInstances"][0]["AutoScalingGroupName"], "asg-basic", "{ai}");
    s.aws(&["autoscaling", "delete-auto-scaling-group", "--auto-scaling-group-name", "asg-basic"])
        .err("ResourceInUse");

    // Desired 0: the instance terminates and its container instance goes.
    assert!(
        s.aws(&[
            "autoscaling",
            "set-desired-capacity",
            "--auto-scaling-group-name",
            "asg-basic",
            "--desired-capacity",
            "0",
        ])
        .ok
    );
    wait_terminated(s, &id);
    assert!(active_instances(s, cluster).is_empty(), "the container instance is deregistered");
    let acts = s
        .aws(&[
            "autoscaling",
            "describe-scaling-activities",
            "--auto-scaling-group-name",
            "asg-basic",
            "--query",
            "Activities[].Description",
        ])
        .json();
    assert_eq!(
        acts,
        serde_json::json!([
            format!("Terminating EC2 instance: {id}"),
            format!("Launching a new EC2 instance: {id}")
        ])
    );
    assert!(
        s.aws(&[
            "autoscaling",
            "delete-auto-scaling-group",
            "--auto-scaling-group-name",
            "asg-basic"
        ])
        .ok
    );
    let none = s
        .aws(&[
            "autoscaling",
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            "asg-basic",
        ])
        .json();
    assert_eq!(none["AutoScalingGroups"], serde_json::json!([]));
}

fn managed_scaling_adds_an_instance_for_waiting_tasks_and_drains_it_after(s: &ServerProc) {
    let cleanup = Cleanup(Mutex::new(vec![]));
    let cluster = "asg-managed";
    assert!(s.aws(&["ecs", "create-cluster", "--cluster-name", cluster]).ok);
    let data = format!(
        r#"{{"ImageId":"{}","InstanceType":"t3.small","UserData":"{}"}}"#,
        image(),
        user_data(cluster)
    );
    assert!(
        s.aws(&[
            "ec2",
            "create-launch-template",
            "--launch-template-name",
            "asg-managed",
            "--launch-template-data",
            &data,
        ])
        .ok
    );
    assert!(
        s.aws(&[
            "autoscaling",
            "create-auto-scaling-group",
            "--auto-scaling-group-name",
            "asg-managed",
            "--launch-template",
            "LaunchTemplateName=asg-managed",
            "--availability-zones",
            "us-east-1a",
            "--min-size",
            "0",
            "--max-size",
            "2",
            "--desired-capacity",
            "0",
            "--new-instances-protected-from-scale-in",
        ])
        .ok
    );
    let arn = s
        .aws(&[
            "autoscaling",
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            "asg-managed",
            "--query",
            "AutoScalingGroups[0].AutoScalingGroupARN",
            "--output",
            "text",
        ])
        .stdout
        .trim()
        .to_string();
    assert!(arn.starts_with("arn:aws:autoscaling:us-east-1:"), "{arn}");
    let provider = format!(
        "autoScalingGroupArn={arn},managedScaling={{status=ENABLED,targetCapacity=100,minimumScalingStepSize=1,maximumScalingStepSize=1,instanceWarmupPeriod=120}},managedTerminationProtection=ENABLED"
    );
    assert!(
        s.aws(&[
            "ecs",
            "create-capacity-provider",
            "--name",
            "asg-managed-cp",
            "--auto-scaling-group-provider",
            &provider,
        ])
        .ok
    );
    assert!(
        s.aws(&[
            "ecs",
            "put-cluster-capacity-providers",
            "--cluster",
            cluster,
            "--capacity-providers",
            "asg-managed-cp",
            "--default-capacity-provider-strategy",
            "capacityProvider=asg-managed-cp,weight=1",
        ])
        .ok
    );
    // DescribeClusters ATTACHMENTS: the provider's managed scaling policy, as ECS shows it.
    let c = s
        .aws(&["ecs", "describe-clusters", "--clusters", cluster, "--include", "ATTACHMENTS"])
        .json();
    let c = &c["clusters"][0];
    assert_eq!(c["attachmentsStatus"], "UPDATE_COMPLETE", "{c}");
    let a = &c["attachments"][0];
    assert_eq!(
        (a["type"].as_str(), a["status"].as_str()),
        (Some("as_policy"), Some("CREATED")),
        "{c}"
    );
    assert_eq!(
        a["details"][0],
        serde_json::json!({"name": "capacityProviderName", "value": "asg-managed-cp"})
    );
    assert_eq!(a["details"][1]["name"], "scalingPolicyName");
    assert!(a["details"][1]["value"].as_str().unwrap().starts_with("ECSManagedAutoScalingPolicy-"));
    assert_eq!(a["id"].as_str().unwrap().len(), 36, "{a}");
    let plain = s.aws(&["ecs", "describe-clusters", "--clusters", cluster]).json();
    assert!(plain["clusters"][0].get("attachments").is_none(), "only when asked: {plain}");
    s.register_task_definition(
        &serde_json::json!({"family": "asg-managed", "containerDefinitions": [
        {"name": "web", "image": "berth-demo:latest", "memory": 1024, "cpu": 1024}]}),
    );
    // No instance yet: the task waits in PROVISIONING instead of failing.
    let started = Instant::now();
    let t = s
        .aws(&[
            "ecs",
            "run-task",
            "--cluster",
            cluster,
            "--task-definition",
            "asg-managed",
            "--capacity-provider-strategy",
            "capacityProvider=asg-managed-cp,weight=1",
        ])
        .json();
    assert_eq!(t["failures"], serde_json::json!([]), "{t}");
    let task = t["tasks"][0]["taskArn"].as_str().expect("a task").to_string();
    assert_eq!(t["tasks"][0]["lastStatus"], "PROVISIONING", "{t}");
    assert_eq!(t["tasks"][0]["capacityProviderName"], "asg-managed-cp");
    // Managed scaling raises the desired capacity; the instance joins; the task runs there.
    let ci = until("a container instance of the provider", 90, || {
        let v = active_instances(s, cluster);
        for c in &v {
            cleanup.add(c["containerInstanceArn"].as_str().unwrap());
        }
        v.first().cloned()
    });
    let attrs = ci["attributes"].as_array().unwrap();
    assert!(
        attrs
            .iter()
            .any(|a| a["name"] == "ecs.capacity-provider" && a["value"] == "asg-managed-cp"),
        "{ci}"
    );
    assert!(s.aws(&["ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", &task]).ok);
    eprintln!(
        "run-task (PROVISIONING) to RUNNING on a scaled-out instance: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let d = s.aws(&["ecs", "describe-tasks", "--cluster", cluster, "--tasks", &task]).json();
    assert_eq!(d["tasks"][0]["containerInstanceArn"], ci["containerInstanceArn"], "{d}");
    let id = ci["ec2InstanceId"].as_str().unwrap().to_string();
    let g = s
        .aws(&[
            "autoscaling",
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            "asg-managed",
        ])
        .json();
    assert_eq!(g["AutoScalingGroups"][0]["DesiredCapacity"], 1, "{g}");
    // Managed termination protection: the instance running a task is protected.
    until("the busy instance protected", 30, || {
        let a = s
            .aws(&["autoscaling", "describe-auto-scaling-instances", "--instance-ids", &id])
            .json();
        (a["AutoScalingInstances"][0]["ProtectedFromScaleIn"] == true).then_some(())
    });
    // Stop the task: below target for 5 s, the instance is drained, then terminated.
    assert!(s.aws(&["ecs", "stop-task", "--cluster", cluster, "--task", &task]).ok);
    assert!(s.aws(&["ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", &task]).ok);
    let stopped = Instant::now();
    wait_terminated(s, &id);
    eprintln!(
        "task stopped to instance terminated (scale-in after 5 s): {:.1} s",
        stopped.elapsed().as_secs_f64()
    );
    let ci = s
        .aws(&[
            "ecs",
            "describe-container-instances",
            "--cluster",
            cluster,
            "--container-instances",
            ci["containerInstanceArn"].as_str().unwrap(),
        ])
        .json();
    assert_eq!(ci["containerInstances"][0]["status"], "INACTIVE", "{ci}");
    let g = s
        .aws(&[
            "autoscaling",
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            "asg-managed",
        ])
        .json();
    assert_eq!(g["AutoScalingGroups"][0]["DesiredCapacity"], 0, "{g}");
}
