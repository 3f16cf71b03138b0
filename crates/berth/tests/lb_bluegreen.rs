//! Traffic-shifting deployments behind a load balancer (issue #13), end to end: one real
//! `berth server` and one `berth agent` on the real Docker Engine, driven by the boto3 suite
//! tests/py/test_bluegreen.py (a BLUE_GREEN deployment under constant load loses zero
//! requests and ends with production on the new revision; a LINEAR deployment's sampled
//! traffic split follows its steps; a failing green rolls back with production never
//! pointed at it). Minutes are scaled to seconds with the Berth-only service tag
//! `berth:deployment-minute-secs`.
//!
//! Needs the image `berth-demo:latest`.

use std::path::Path;

use berth_testkit::{AgentProc, ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn blue_green_linear_and_rollback() {
    require_demo_image();
    let s = ServerProc::start_with(bin(), &["--service-settle-secs", "1"]).expect("server");
    let _agent = AgentProc::start(bin(), &s, &["--memory", "2048"]).expect("agent");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_bluegreen.py");
    let out = s.python(&script, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "blue/green suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 1 test") && stderr.contains("\nOK"), "{stderr}");
    let log = std::fs::read_to_string(s.data_dir.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
