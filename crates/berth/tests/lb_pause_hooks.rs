//! PAUSE deployment lifecycle hooks and ContinueServiceDeployment (issue #13), end to end:
//! one real `berth server` and one `berth agent` on the real Docker Engine, driven by
//! tests/py/test_pause_hooks.py (boto3 and the AWS CLI): a BLUE_GREEN deployment paused at
//! POST_TEST_TRAFFIC_SHIFT keeps production on blue until `aws ecs
//! continue-service-deployment` completes it; `--action ROLLBACK` and a hook's timeout with
//! action ROLLBACK return production to blue. Minutes are scaled to seconds with the
//! Berth-only service tag `berth:deployment-minute-secs`. Also: LINEAR's PRODUCTION_TRAFFIC_SHIFT
//! hook at every step, a paused deployment superseded, and one that survives the server's
//! `kill -9` and restart.
//!
//! Needs the image `berth-demo:latest`.

use std::path::Path;
use std::process::Command;

use berth_testkit::{AgentProc, ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn pause_hooks_continue_roll_back_and_time_out() {
    require_demo_image();
    let mut s = ServerProc::start_with(bin(), &["--service-settle-secs", "1"]).expect("server");
    let _agent = AgentProc::start(bin(), &s, &["--memory", "2048"]).expect("agent");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_pause_hooks.py");
    let state = tempfile::NamedTempFile::new().expect("state file");
    let run = |s: &ServerProc, class: &str| {
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(class).env("BERTH_PAUSE_STATE", state.path());
        s.client_env(&mut cmd);
        let out = cmd.output().expect("python3");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{stderr}");
        assert!(out.status.success(), "{class} failed:\n{stderr}");
        assert!(stderr.contains("Ran 1 test") && stderr.contains("\nOK"), "{stderr}");
    };
    run(&s, "PauseHooks");
    // A deployment is paused at a hook: kill the server without any shutdown and start it
    // again on the same data directory and port (the agent reconnects where it was).
    s.restart_same_port_after_kill9().expect("restart");
    run(&s, "AfterRestart");
    let log = std::fs::read_to_string(s.data_dir.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
