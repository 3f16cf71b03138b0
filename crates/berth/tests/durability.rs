//! An acknowledged write survives `kill -9` of the server.
//!
//! boto3 writers register task definitions as fast as they can and print every acknowledged
//! ARN; the server is SIGKILLed mid-stream; a new server on the same data directory must
//! describe every acknowledged revision with the content that was acknowledged.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use berth_testkit::ServerProc;

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut s = ServerProc::start(Path::new(env!("CARGO_BIN_EXE_berth"))).expect("server starts");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ack_writer.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).stdout(Stdio::piped()).stderr(Stdio::null());
    s.client_env(&mut cmd);
    let mut writer = cmd.spawn().expect("python3");
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    // Kill while writes are in flight: after 300 acknowledgements.
    while acked.len() < 300 {
        let line = lines.next().expect("writer output").expect("utf-8");
        let (arn, value) = line.split_once(' ').expect("arn value");
        acked.push((arn.to_string(), value.to_string()));
    }
    s.kill9();
    // Whatever the writer still prints was acknowledged before the kill.
    for line in lines.map_while(Result::ok) {
        if let Some((arn, value)) = line.split_once(' ') {
            acked.push((arn.to_string(), value.to_string()));
        }
    }
    let _ = writer.wait();

    s.restart_after_kill9().expect("restart on the same data dir");
    // Check every acknowledged revision (batched by family to keep the CLI calls few).
    let check = s.python(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_acked.py"),
        &[&acked.iter().map(|(a, v)| format!("{a}={v}")).collect::<Vec<_>>().join(",")],
    );
    assert!(
        check.status.success(),
        "acknowledged writes lost after kill -9:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(out.trim(), format!("checked {}", acked.len()));
}
