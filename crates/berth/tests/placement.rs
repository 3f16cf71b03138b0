//! The placement engine end to end: `berth server` and four `berth agent` processes with
//! different availability zones, instance types and attributes, on the real Docker Engine,
//! driven by boto3 (tests/py/test_placement.py). Needs the image `berth-demo:latest`.

use std::path::Path;

use berth_testkit::{AgentProc, ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn placement_suite() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    // (zone, instance type, extra attributes)
    let hosts: [(&str, &str, &[&str]); 4] = [
        ("us-east-1a", "m5.large", &[]),
        ("us-east-1b", "m5.large", &[]),
        ("us-east-1c", "c5.large", &[]),
        ("us-east-1a", "c5.large", &["--attribute", "stack=prod"]),
    ];
    let agents: Vec<AgentProc> = hosts
        .iter()
        .map(|(az, ty, extra)| {
            let mut args =
                vec!["--availability-zone", az, "--instance-type", ty, "--memory", "2048"];
            args.extend_from_slice(extra);
            AgentProc::start(bin(), &s, &args).expect("agent")
        })
        .collect();
    let arns: Vec<&str> = agents.iter().map(|a| a.instance_arn.as_str()).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_placement.py");
    let out = s.python(&script, &[&arns.join(",")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "placement suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 9 tests") && stderr.contains("\nOK"), "{stderr}");
}
