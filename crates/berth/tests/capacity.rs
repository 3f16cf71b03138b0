//! Account settings and capacity providers end to end: `berth server` and two `berth agent`
//! processes, each the capacity of one capacity provider (`--capacity-provider`), on the real
//! Docker Engine, driven by boto3 (tests/py/test_capacity.py): RunTask, a service and a task
//! set split across the two by a capacity provider strategy; short service ARNs. Needs the image `berth-demo:latest`.

use std::path::Path;

use berth_testkit::{AgentProc, ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn capacity_suite() {
    require_demo_image();
    // Service tasks (no health checks) count as healthy after 1 s, not ECS's 40.
    let s = ServerProc::start_with(bin(), &["--service-settle-secs", "1"]).expect("server");
    let agents: Vec<AgentProc> = ["cp-a", "cp-b"]
        .iter()
        .map(|p| {
            let args = ["--capacity-provider", p, "--memory", "1024"];
            AgentProc::start(bin(), &s, &args).expect("agent")
        })
        .collect();
    let arns: Vec<&str> = agents.iter().map(|a| a.instance_arn.as_str()).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_capacity.py");
    let out = s.python(&script, &[&arns.join(",")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "capacity suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 5 tests") && stderr.contains("\nOK"), "{stderr}");
}
