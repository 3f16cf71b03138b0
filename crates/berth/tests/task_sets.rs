//! Task sets and the agent-facing and not-yet-supported operations end to end: one
//! `berth server` and one real `berth agent` on the real Docker Engine; the task sets of an
//! EXTERNAL service driven by boto3 (tests/py/test_task_sets.py), then DiscoverPollEndpoint,
//! UpdateContainerAgent, SubmitAttachmentStateChanges, ContinueServiceDeployment and the
//! daemon and Express Gateway operations with the AWS CLI, against the same server.
//! Needs the image `berth-demo:latest`.

use std::path::Path;

use berth_testkit::{AgentProc, ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn task_sets_suite() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let a = AgentProc::start(bin(), &s, &["--memory", "2048"]).expect("agent");
    // This server's ARN prefix (`arn:aws:ecs:REGION:ACCOUNT:`), from the instance's ARN.
    let prefix = &a.instance_arn[..a.instance_arn.find("container-instance/").expect("arn")];

    // Task sets on Docker (boto3).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_task_sets.py");
    let out = s.python(&script, &[&a.instance_arn]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "task sets suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 1 test") && stderr.contains("\nOK"), "{stderr}");

    // DiscoverPollEndpoint: the server's own endpoint; nothing for telemetry or Service
    // Connect, which Berth does not have.
    let d =
        s.aws(&["ecs", "discover-poll-endpoint", "--container-instance", &a.instance_arn]).json();
    assert_eq!(d["endpoint"].as_str(), Some(s.endpoint.as_str()), "{d}");
    assert!(d.get("telemetryEndpoint").is_none() && d.get("serviceConnectEndpoint").is_none());
    s.aws(&[
        "ecs",
        "discover-poll-endpoint",
        "--container-instance",
        "arn:aws:ecs:us-east-1:000000000000:task/x/y",
    ])
    .err("InvalidParameterException");

    // UpdateContainerAgent: Berth's agent is updated with the binary, never in place.
    let msg = s
        .aws(&["ecs", "update-container-agent", "--container-instance", &a.instance_arn])
        .err("NoUpdateAvailableException")
        .to_string();
    assert!(msg.contains("berth binary"), "{msg}");
    s.aws(&["ecs", "update-container-agent", "--container-instance", "0123456789abcdef"])
        .err("InvalidParameterException");
    s.aws(&["ecs", "update-container-agent", "--cluster", "nope", "--container-instance", "x"])
        .err("ClusterNotFoundException");

    // SubmitAttachmentStateChanges: validated; no task carries an attachment without awsvpc.
    let att = format!("{prefix}attachment/3c1b8d2e-0000-4000-8000-000000000001");
    let msg = s
        .aws(&[
            "ecs",
            "submit-attachment-state-changes",
            "--attachments",
            &format!("attachmentArn={att},status=ATTACHED"),
        ])
        .err("InvalidParameterException")
        .to_string();
    assert!(msg.contains("attachments[0].attachmentArn") && msg.contains("no task"), "{msg}");
    let msg = s
        .aws(&[
            "ecs",
            "submit-attachment-state-changes",
            "--attachments",
            &format!("attachmentArn={att},status=GLUED"),
        ])
        .err("InvalidParameterException")
        .to_string();
    assert!(msg.contains("attachments[0].status"), "{msg}");

    // ContinueServiceDeployment: an ARN that names no service deployment.
    s.aws(&[
        "ecs",
        "continue-service-deployment",
        "--service-deployment-arn",
        &format!("{prefix}service-deployment/default/none/abc"),
        "--hook-id",
        "h1",
    ])
    .err("ServiceDeploymentNotFoundException");

    // Daemons and Express Gateway services: validation first, then what Berth lacks.
    let daemon = |name: &str| {
        s.aws(&[
            "ecs",
            "create-daemon",
            "--daemon-name",
            name,
            "--daemon-task-definition-arn",
            "arn:aws:ecs:us-east-1:000000000000:daemon-task-definition/logs:1",
            "--capacity-provider-arns",
            "arn:aws:ecs:us-east-1:000000000000:capacity-provider/mi",
        ])
    };
    let msg = daemon("log-router").err("UnsupportedFeatureException").to_string();
    assert!(msg.contains("Managed Instances") && msg.contains("DAEMON"), "{msg}");
    let msg = daemon("log router").err("InvalidParameterException").to_string();
    assert!(msg.contains("daemonName"), "{msg}");
    s.aws(&["ecs", "describe-daemon", "--daemon-arn", "logs"]).err("InvalidParameterException");
    s.aws(&["ecs", "list-daemons"]).err("UnsupportedFeatureException");
    let msg = s
        .aws(&[
            "ecs",
            "create-express-gateway-service",
            "--execution-role-arn",
            "arn:aws:iam::000000000000:role/exec",
            "--infrastructure-role-arn",
            "arn:aws:iam::000000000000:role/infra",
            "--primary-container",
            "image=berth-demo:latest",
        ])
        .err("UnsupportedFeatureException")
        .to_string();
    assert!(msg.contains("Application Load Balancer"), "{msg}");
    s.aws(&[
        "ecs",
        "create-express-gateway-service",
        "--execution-role-arn",
        "exec",
        "--infrastructure-role-arn",
        "arn:aws:iam::000000000000:role/infra",
        "--primary-container",
        "image=berth-demo:latest",
    ])
    .err("InvalidParameterException");
}
