//! ECS Service Connect (issue #17), end to end with the AWS CLI and the real Docker Engine:
//! `berth up --service-connect-address <docker0's address>`, an HTTP namespace `shop`, and two
//! bridge-mode services of the demo image in it:
//! * `callee` publishes its port `api` (`appProtocol` http, dynamic host ports, a container
//!   health check) as discovery name `api` with the client alias `api.shop:PORT`;
//! * `caller` is a client-only Service Connect service.
//!
//! Checks: ECS's validation (a `portName` the task definition does not name; TLS refused as
//! unsupported); DescribeServices shows the deployment's `serviceConnectConfiguration`
//! (namespace ARN) and `serviceConnectResources` (the Cloud Map service ECS creates);
//! ListServicesByNamespace lists both services; a `caller` task calls `http://api.shop:PORT/`
//! (the demo app's `/fetch`, run inside the task) and gets the callee's answer; a forced
//! deployment of `callee` under a bounded load loop through the caller (sequential requests,
//! each one a call from inside the caller task through the proxy) loses zero requests.
//!
//! Needs the image `berth-demo:latest` and the `docker0` bridge.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_testkit::{ServerProc, require_demo_image};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// The Docker bridge gateway (`docker0`'s address).
fn docker_gateway() -> IpAddr {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "docker0"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let cidr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1).expect("docker0 inet");
    cidr.split('/').next().unwrap().parse().unwrap()
}

fn wait_until(what: &str, secs: u64, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json_of(s: &ServerProc, args: &[&str]) -> Value {
    let r = s.aws(args);
    assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
    r.json()
}

/// One GET on a fresh connection: (status, body), or `None` when the exchange failed.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Whether a `/fetch` through the caller reached the callee (`200` from the callee, its body).
fn fetched_ok(r: &Option<(u16, String)>) -> bool {
    matches!(r, Some((200, body)) if body.starts_with("200\n") && body.contains("Hello, World!"))
}

fn running_tasks(s: &ServerProc, service: &str) -> Vec<Value> {
    let arns = json_of(
        s,
        &["ecs", "list-tasks", "--service-name", service, "--desired-status", "RUNNING"],
    );
    let arns: Vec<&str> =
        arns["taskArns"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    if arns.is_empty() {
        return vec![];
    }
    let mut args = vec!["ecs", "describe-tasks", "--tasks"];
    args.extend(arns);
    json_of(s, &args)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["lastStatus"] == "RUNNING")
        .cloned()
        .collect()
}

fn service(s: &ServerProc, name: &str) -> Value {
    json_of(s, &["ecs", "describe-services", "--services", name])["services"][0].clone()
}

#[test]
fn services_call_each_other_through_service_connect() {
    require_demo_image();
    let gateway = docker_gateway();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("up");
    let _cleanup = berth_testkit::UpCleanup(data.clone());
    let up = ServerProc::start_up(
        bin(),
        &data,
        &["--cpu", "8192", "--memory", "8192", "--service-connect-address", &gateway.to_string()],
    )
    .expect("berth up starts");
    let ns = json_of(&up, &["servicediscovery", "create-http-namespace", "--name", "shop"]);
    assert!(ns["OperationId"].is_string(), "{ns}");
    let ns_arn = json_of(&up, &["servicediscovery", "list-namespaces"])["Namespaces"][0]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    // A free port on the proxy's address for the client alias.
    let alias_port =
        std::net::TcpListener::bind((gateway, 0)).unwrap().local_addr().unwrap().port();

    for (family, port_name) in [("callee", "api"), ("caller", "web")] {
        up.register_task_definition(&json!({
            "family": family, "networkMode": "bridge",
            "containerDefinitions": [{
                "name": "app", "image": "berth-demo:latest", "memory": 32,
                "portMappings": [{"containerPort": 8080, "name": port_name, "appProtocol": "http"}],
                "healthCheck": {
                    "command": ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"],
                    "interval": 5, "timeout": 2, "retries": 3
                },
            }],
        }));
    }
    let sc = |services: Value| {
        json!({"enabled": true, "namespace": "shop", "services": services}).to_string()
    };
    let callee_sc = sc(json!([{
        "portName": "api", "discoveryName": "api",
        "clientAliases": [{"port": alias_port, "dnsName": "api.shop"}],
    }]));
    let create = |name: &str, count: &str, conf: &str| {
        let family = if name == "bad" { "callee" } else { name };
        up.aws(&[
            "ecs",
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            family,
            "--desired-count",
            count,
            "--deployment-configuration",
            "maximumPercent=200,minimumHealthyPercent=100",
            "--service-connect-configuration",
            conf,
        ])
    };

    // ECS's rules first.
    let bad = create("bad", "1", &sc(json!([{"portName": "nope"}])));
    assert!(
        !bad.ok
            && bad.stderr.contains("InvalidParameterException")
            && bad.stderr.contains("'nope'"),
        "{}",
        bad.stderr
    );
    let tls = create(
        "bad",
        "1",
        &sc(json!([{"portName": "api", "tls": {"issuerCertificateAuthority": {}}}])),
    );
    assert!(
        !tls.ok
            && tls.stderr.contains("UnsupportedFeatureException")
            && tls.stderr.contains("services[0].tls"),
        "{}",
        tls.stderr
    );

    let r = create("callee", "2", &callee_sc);
    assert!(r.ok, "{}", r.stderr);
    let r = create("caller", "1", &sc(json!([])));
    assert!(r.ok, "{}", r.stderr);

    // DescribeServices and ListServicesByNamespace.
    let d = &service(&up, "callee")["deployments"][0];
    assert_eq!(d["serviceConnectConfiguration"]["namespace"], ns_arn.as_str(), "{d}");
    assert_eq!(
        d["serviceConnectConfiguration"]["services"][0]["clientAliases"][0]["dnsName"],
        "api.shop"
    );
    let res = &d["serviceConnectResources"][0];
    assert_eq!(res["discoveryName"], "api", "{d}");
    let discovery_arn = res["discoveryArn"].as_str().unwrap();
    assert!(
        discovery_arn.contains(":servicediscovery:") && discovery_arn.contains(":service/srv-")
    );
    let listed = json_of(&up, &["ecs", "list-services-by-namespace", "--namespace", "shop"]);
    assert_eq!(listed["serviceArns"].as_array().unwrap().len(), 2, "{listed}");

    wait_until("2 callee tasks and 1 caller task running", 90, || {
        running_tasks(&up, "callee").len() == 2 && running_tasks(&up, "caller").len() == 1
    });
    let caller = &running_tasks(&up, "caller")[0];
    let host_port = caller["containers"][0]["networkBindings"][0]["hostPort"].as_i64().unwrap();
    let caller_addr = format!("127.0.0.1:{host_port}");
    let fetch = format!("/fetch?url=http://api.shop:{alias_port}/&timeout_ms=5000");
    let mut last = None;
    wait_until("the caller reaches api.shop through the proxy", 60, || {
        last = get(&caller_addr, &fetch);
        fetched_ok(&last)
    });

    // A deployment of the callee under a bounded load loop from the caller.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let (addr, path) = (caller_addr.clone(), fetch.clone());
        std::thread::spawn(move || {
            let mut first_failure = None;
            // Bounded: at most 20,000 requests, one at a time.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = get(&addr, &path);
                if fetched_ok(&r) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    first_failure.get_or_insert(r);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            first_failure
        })
    };
    let old: Vec<String> = running_tasks(&up, "callee")
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    let started = Instant::now();
    json_of(&up, &["ecs", "update-service", "--service", "callee", "--force-new-deployment"]);
    wait_until("the callee deployment to complete", 120, || {
        let s = service(&up, "callee");
        let deps = s["deployments"].as_array().unwrap();
        let tasks = running_tasks(&up, "callee");
        deps.len() == 1
            && deps[0]["rolloutState"] == "COMPLETED"
            && tasks.len() == 2
            && tasks.iter().all(|t| !old.contains(&t["taskArn"].as_str().unwrap().to_string()))
    });
    // The old tasks are gone (stopped after draining).
    let mut args = vec!["ecs", "describe-tasks", "--tasks"];
    args.extend(old.iter().map(String::as_str));
    wait_until("the old callee tasks to stop", 60, || {
        json_of(&up, &args)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["lastStatus"] == "STOPPED")
    });
    // Some more load on the new tasks only.
    let settle = ok.load(Ordering::Relaxed) + 20;
    wait_until("20 more requests", 30, || ok.load(Ordering::Relaxed) >= settle);
    stop.store(true, Ordering::Relaxed);
    let first_failure = load.join().unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "deployment under load: {ok} requests ok, {failed} failed, in {:?}",
        started.elapsed()
    );
    assert_eq!(failed, 0, "requests failed during the deployment; first: {first_failure:?}");
    assert!(ok >= 50, "too few requests to judge: {ok}");

    for s in ["callee", "caller"] {
        json_of(&up, &["ecs", "delete-service", "--service", s, "--force"]);
    }
    wait_until("the services' tasks to stop", 60, || {
        running_tasks(&up, "callee").is_empty() && running_tasks(&up, "caller").is_empty()
    });
}
