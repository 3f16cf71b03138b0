//! Runs the conformance suite (tests/py/test_conformance.py: AWS's error codes, messages and
//! response shapes across every implemented operation) against the real `berth server`. No
//! agent: container instances are registered by hand, so nothing runs on Docker.

use std::path::Path;

use berth_testkit::ServerProc;

#[test]
fn conformance_suite() {
    let s = ServerProc::start(Path::new(env!("CARGO_BIN_EXE_berth"))).expect("server starts");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_conformance.py");
    let out = s.python(&script, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "conformance suite failed:\n{stderr}");
    assert!(stderr.contains("OK"), "{stderr}");
}
