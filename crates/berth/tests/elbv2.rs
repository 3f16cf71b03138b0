//! ELBv2 behind the one endpoint (issue #13), end to end against one real `berth server`: the
//! AWS CLI (load balancer waiters, a listener whose port is taken shows the load balancer
//! `active_impaired` and recovers once the port is free, error codes), then the boto3 suite
//! tests/py/test_elbv2.py (rules routing by path and host to real HTTP backends, health
//! checks, draining, a network load balancer's TCP listener, errors, pagination). Needs no Docker.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::ServerProc;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Polls `check` every 100 ms until it answers `Some`, for at most `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn elbv2_end_to_end() {
    let s = ServerProc::start(bin()).expect("server");
    cli(&s);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_elbv2.py");
    let out = s.python(&script, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "elbv2 boto3 suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 4 tests") && stderr.contains("\nOK"), "{stderr}");
    let log = std::fs::read_to_string(s.data_dir.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

fn cli(s: &ServerProc) {
    let text = |args: &[&str]| -> String {
        let mut a = args.to_vec();
        a.extend(["--output", "text"]);
        let r = s.aws(&a);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r.stdout.trim().to_string()
    };
    let subnets = text(&[
        "ec2",
        "describe-subnets",
        "--filters",
        "Name=default-for-az,Values=true",
        "--query",
        "Subnets[].SubnetId",
    ]);
    let subnets: Vec<&str> = subnets.split_whitespace().collect();
    assert_eq!(subnets.len(), 3, "{subnets:?}");
    let lb = text(&[
        "elbv2",
        "create-load-balancer",
        "--name",
        "cli",
        "--subnets",
        subnets[0],
        subnets[1],
        "--query",
        "LoadBalancers[0].LoadBalancerArn",
    ]);
    assert!(s.aws(&["elbv2", "wait", "load-balancer-available", "--load-balancer-arns", &lb]).ok);
    s.aws(&["elbv2", "create-load-balancer", "--name", "cli", "--subnets", subnets[1], subnets[2]])
        .err("DuplicateLoadBalancerName");
    s.aws(&["elbv2", "describe-load-balancers", "--names", "missing"]).err("LoadBalancerNotFound");

    // A listener on a port something else holds: the load balancer says so, and recovers
    // once the port is free.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().unwrap().port().to_string();
    let listener = text(&[
        "elbv2",
        "create-listener",
        "--load-balancer-arn",
        &lb,
        "--protocol",
        "HTTP",
        "--port",
        &port,
        "--default-actions",
        r#"Type=fixed-response,FixedResponseConfig={StatusCode=418,ContentType=text/plain,MessageBody=teapot}"#,
        "--query",
        "Listeners[0].ListenerArn",
    ]);
    let state = |s: &ServerProc| {
        let v = s.aws(&["elbv2", "describe-load-balancers", "--load-balancer-arns", &lb]).json();
        v["LoadBalancers"][0]["State"].clone()
    };
    let impaired = wait_for("the listener's bind error", Duration::from_secs(30), || {
        let st = state(s);
        (st["Code"] == "active_impaired").then_some(st)
    });
    let reason = impaired["Reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&listener) && reason.contains(&port), "{impaired}");
    drop(holder);
    wait_for("the listener to bind", Duration::from_secs(30), || {
        (state(s)["Code"] == "active").then_some(())
    });
    let answer = wait_for("the fixed response", Duration::from_secs(10), || {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", " %{http_code}", &format!("http://127.0.0.1:{port}/x")])
            .output()
            .ok()?;
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        body.ends_with("418").then_some(body)
    });
    assert_eq!(answer, "teapot 418");
    assert!(s.aws(&["elbv2", "delete-load-balancer", "--load-balancer-arn", &lb]).ok);
    assert!(s.aws(&["elbv2", "wait", "load-balancers-deleted", "--load-balancer-arns", &lb]).ok);
}
