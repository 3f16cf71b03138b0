//! PAUSE deployment lifecycle hooks and ContinueServiceDeployment (issue #13), end to end:
//! one real `berth server` and one `berth agent` on the real Docker Engine, driven by
//! tests/py/test_pause_hooks.py (boto3 and the AWS CLI): a BLUE_GREEN deployment paused at
//! POST_TEST_TRAFFIC_SHIFT keeps production on blue until `aws ecs
//! continue-service-deployment` completes it; `--action ROLLBACK` and a hook's timeout with
//! action ROLLBACK return production to blue. Minutes are scaled to seconds with the
//! Berth-only service tag `berth:deployment-minute-secs`.
//!
//! Needs the image `berth-demo:latest`.

use std::path::Path;

use berth_testkit::{AgentProc, ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn pause_hooks_continue_roll_back_and_time_out() {
    require_demo_image();
    let s = ServerProc::start_with(bin(), &["--service-settle-secs", "1"]).expect("server");
    let _agent = AgentProc::start(bin(), &s, &["--memory", "2048"]).expect("agent");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_pause_hooks.py");
    let out = s.python(&script, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "pause hook suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 1 test") && stderr.contains("\nOK"), "{stderr}");
    let log = std::fs::read_to_string(s.data_dir.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
