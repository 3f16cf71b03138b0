//! Fargate and awsvpc end to end: `berth up` (a server, its local agent and its local Fargate
//! pool host) on the real Docker Engine, driven by boto3's ECS and EC2 clients
//! (tests/py/test_awsvpc.py): tasks with their own addresses on the default VPC, security
//! groups enforced and updated live, a FARGATE / FARGATE_SPOT split, a Fargate service, a
//! Spot interruption (`berth spot interrupt`) replaced by its service. The agents keep a warm
//! pool of pause containers (`--awsvpc-warm-pool 2`), so the pool's path runs here on the real
//! engine (tests/fargate.rs runs the default, cold path).
//! Needs the image `berth-demo:latest`.

use std::path::Path;

use berth_testkit::{ServerProc, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn awsvpc_suite() {
    require_demo_image();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("up");
    let _cleanup = berth_testkit::UpCleanup(data.clone());
    // Capacity registered for the suite's tasks (0.25 vCPU / 512 MiB each, a dozen at most at
    // once): the demo server uses a few MiB of it.
    let up = ServerProc::start_up(
        bin(),
        &data,
        &["--cpu", "16384", "--memory", "16384", "--awsvpc-warm-pool", "2"],
    )
    .expect("berth up starts");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_awsvpc.py");
    let out = up.python(&script, &[bin().to_str().unwrap(), data.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "awsvpc suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 5 tests") && stderr.contains("\nOK"), "{stderr}");
}
