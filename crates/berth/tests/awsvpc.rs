//! Fargate and awsvpc end to end: `berth up` (a server, its local agent and its local Fargate
//! pool host) on the real Docker Engine, driven by boto3's ECS and EC2 clients
//! (tests/py/test_awsvpc.py): tasks with their own addresses on the default VPC, security
//! groups enforced and updated live, a FARGATE / FARGATE_SPOT split, a Fargate service.
//! Needs the image `berth-demo:latest`.

use std::path::Path;

use berth_testkit::{ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Removes the containers of every instance of the server when dropped (the test's own
/// cleanup, after the suite's own stops).
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for arn in &self.0 {
            berth_testkit::remove_instance_objects(arn);
        }
    }
}

#[test]
fn awsvpc_suite() {
    require_demo_image();
    let tmp = tempfile::tempdir().unwrap();
    let up = ServerProc::start_up(bin(), &tmp.path().join("up"), &["--memory", "2048"])
        .expect("berth up starts");
    let list = up.aws(&["ecs", "list-container-instances"]).json();
    let instances: Vec<String> = list["containerInstanceArns"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let _cleanup = Cleanup(instances);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_awsvpc.py");
    let out = up.python(&script, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "awsvpc suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 4 tests") && stderr.contains("\nOK"), "{stderr}");
}
