//! Every region from one endpoint (issue #11): the boto3 suite tests/py/test_regions.py
//! against ONE real `berth server` (default region us-east-1) and one real `berth agent
//! --region eu-west-1` running tasks on Docker; then agents that join the default region (no
//! `--region`) and, with a join token, ap-southeast-1. Needs the image `berth-demo:latest`
//! (scripts/build-demo-image.sh).

use std::path::Path;
use std::process::Command;

use berth_testkit::{AgentProc, ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn regions_suite() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let flags = ["--region", "eu-west-1", "--memory", "1024", "--metadata-listen", "0"];
    let agent = AgentProc::start(bin(), &s, &flags).expect("agent");
    assert!(
        agent.instance_arn.starts_with("arn:aws:ecs:eu-west-1:"),
        "the agent registered in its region: {}",
        agent.instance_arn
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_regions.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script);
    s.client_env(&mut cmd);
    let out = cmd.env("BERTH_AGENT_INSTANCE", &agent.instance_arn).output().expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "regions suite failed:\n{stderr}\n--- agent log ---\n{}",
        agent.log()
    );
    assert!(stderr.contains("Ran 7 tests") && stderr.contains("\nOK"), "{stderr}");
    // The task it ran has stopped, and the agent removed its container.
    assert!(agent.containers().is_empty(), "containers left behind: {:?}", agent.containers());

    // An agent started without --region joins the server's default region.
    let default = AgentProc::start(bin(), &s, &["--memory", "512", "--metadata-listen", "0"])
        .expect("a second agent");
    assert!(default.instance_arn.starts_with("arn:aws:ecs:us-east-1:"), "{}", default.instance_arn);
    let us = s.aws(&["ecs", "list-container-instances"]).json();
    assert_eq!(us["containerInstanceArns"], serde_json::json!([default.instance_arn]));
    let eu = s.aws(&["--region", "eu-west-1", "ecs", "list-container-instances"]).json();
    assert_eq!(eu["containerInstanceArns"], serde_json::json!([agent.instance_arn]));

    // An agent that joins with a token joins the region it names; its instance key acts in
    // that region only.
    let out = Command::new(bin())
        .args(["token", "create", "--expires-in", "10m", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .expect("berth token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let flags = ["--region", "ap-southeast-1", "--memory", "512", "--metadata-listen", "0"];
    let joined = AgentProc::start_joining(bin(), &s, &token, &flags).expect("agent joins");
    assert!(
        joined.instance_arn.starts_with("arn:aws:ecs:ap-southeast-1:"),
        "{}",
        joined.instance_arn
    );
    let ap = s.aws(&[
        "--region",
        "ap-southeast-1",
        "ecs",
        "describe-container-instances",
        "--container-instances",
        &joined.instance_arn,
    ]);
    assert_eq!(ap.json()["containerInstances"][0]["agentConnected"], true, "it polls there");
    let creds: serde_json::Value = serde_json::from_slice(
        &std::fs::read(joined.data_dir.join("instance-credentials.json")).unwrap(),
    )
    .unwrap();
    let mut cmd = Command::new("aws");
    cmd.args(["--endpoint-url", &s.endpoint, "--region", "us-east-1", "ecs"]);
    cmd.args(["register-container-instance", "--container-instance-arn", &joined.instance_arn]);
    s.client_env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", creds["accessKeyId"].as_str().unwrap())
        .env("AWS_SECRET_ACCESS_KEY", creds["secretAccessKey"].as_str().unwrap());
    let refused = berth_testkit::AwsResult::from(cmd.output().expect("aws"));
    let msg = refused.err("AccessDeniedException");
    assert!(msg.contains("act in region 'us-east-1'"), "{msg}");
}
