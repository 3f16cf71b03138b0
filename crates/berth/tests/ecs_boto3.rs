//! Runs the boto3 suite (tests/py/test_ecs_boto3.py) against the real `berth server`.

use std::path::Path;

use berth_testkit::ServerProc;

#[test]
fn boto3_suite() {
    let s = ServerProc::start(Path::new(env!("CARGO_BIN_EXE_berth"))).expect("server starts");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_ecs_boto3.py");
    let out = s.python(&script, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "boto3 suite failed:\n{stderr}");
    assert!(stderr.contains("OK"), "{stderr}");
}
