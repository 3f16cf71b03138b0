//! The data directory through the real binary (issue #10, defects 5 and 6): a second
//! `berth server` or `berth up` on a directory in use exits non-zero naming the directory and
//! the holder's pid; a directory open to other users is refused with the fix. No Docker
//! needed: both refusals come before anything else starts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::ServerProc;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Runs `berth <sub>` on `data_dir` to completion (at most 30 s): (exit success, stderr).
fn run_to_exit(sub: &str, data_dir: &Path) -> (bool, String) {
    let mut child = Command::new(bin())
        .args([sub, "--listen", "127.0.0.1:0", "--account-id", "123456789012"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth {sub} on a data directory in use did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.success(), err)
}

#[test]
fn a_second_server_or_up_on_a_data_directory_in_use_exits_with_a_clear_error() {
    let first = ServerProc::start(bin()).expect("first server");
    let pid = first.pid().unwrap();
    for sub in ["server", "up"] {
        let (ok, err) = run_to_exit(sub, &first.data_dir);
        assert!(!ok, "a second `berth {sub}` started on a data directory in use: {err}");
        assert!(err.contains("in use by another berth server"), "{err}");
        assert!(err.contains(&first.data_dir.display().to_string()), "{err}");
        assert!(err.contains(&format!("pid {pid}")), "{err}");
    }
    // The first server is unaffected.
    let r = first.aws(&["ecs", "list-clusters"]);
    assert!(r.ok, "{}", r.stderr);
}

#[test]
fn a_data_directory_open_to_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, err) = run_to_exit("server", &dir);
    assert!(!ok);
    assert!(err.contains(&format!("chmod 700 {}", dir.display())), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
