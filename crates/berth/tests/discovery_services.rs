//! ECS service discovery through Cloud Map (issue #17), end to end with the AWS CLI and the
//! real Docker Engine: `berth up` with its DNS listener on the Docker bridge gateway's port
//! 53 (`--dns-listen 172.17.0.1:53`), so task containers resolve namespace names.
//!
//! In one private namespace (`shop.local`): `api` (awsvpc, A records, TTL 2 s) and `web`
//! (awsvpc, A records) run as ECS services with `serviceRegistries`; `legacy` (bridge mode,
//! an SRV record with `containerName`/`containerPort`) too. The test checks that
//! * a `web` task resolves `api.shop.local` and calls it by name (the demo app's `/fetch`,
//!   run inside the task);
//! * the A records are the tasks' own addresses; scaling `api` to 2 adds the new task within
//!   the TTL of its start;
//! * a killed `api` task leaves DNS before its replacement appears in it (no answer ever
//!   holds both);
//! * the SRV record of the bridge service carries its dynamic host port and the host's
//!   address, and a bridge task reaches itself through the SRV target name;
//! * ECS's rules: a bridge service with an A-only registry, or without containerName /
//!   containerPort, is refused with `InvalidParameterException`.
//!
//! Needs the image `berth-demo:latest`, root (port 53) and the `docker0` bridge.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_dns::client::{DnsMessage, RData, Transport, Type, query};
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

fn ask(dns: SocketAddr, name: &str, t: Type) -> DnsMessage {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(query(dns, name, t, Transport::Udp)).expect("a DNS answer")
}

fn addresses(m: &DnsMessage) -> BTreeSet<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// Asks until `f` accepts the A answer for `name` (within `secs`), returning it.
fn wait_a(
    dns: SocketAddr,
    name: &str,
    secs: u64,
    f: impl Fn(&BTreeSet<String>) -> bool,
) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = addresses(&ask(dns, name, Type::A));
        if f(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{name}: still {got:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP GET from the test (plain HTTP/1.0), the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

struct Cli<'a>(&'a ServerProc);

impl Cli<'_> {
    fn json(&self, args: &[&str]) -> Value {
        let r = self.0.aws(args);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r.json()
    }
    fn err(&self, args: &[&str]) -> String {
        let r = self.0.aws(args);
        assert!(!r.ok, "aws {args:?} succeeded");
        r.stderr
    }
    fn tasks(&self, service: &str) -> Vec<Value> {
        let arns = self.json(&[
            "ecs",
            "list-tasks",
            "--service-name",
            service,
            "--desired-status",
            "RUNNING",
        ]);
        let arns: Vec<String> = arns["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        if arns.is_empty() {
            return vec![];
        }
        let mut args = vec!["ecs", "describe-tasks", "--tasks"];
        args.extend(arns.iter().map(String::as_str));
        self.json(&args)["tasks"].as_array().unwrap().clone()
    }
    /// Waits until `service` has `n` RUNNING tasks; returns them.
    fn running(&self, service: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t: Vec<Value> =
                self.tasks(service).into_iter().filter(|t| t["lastStatus"] == "RUNNING").collect();
            if t.len() == n {
                return t;
            }
            assert!(Instant::now() < deadline, "{service}: {} tasks RUNNING, want {n}", t.len());
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn task_ip(t: &Value) -> String {
    t["containers"][0]["networkInterfaces"][0]["privateIpv4Address"].as_str().unwrap().to_string()
}

fn docker_kill_task(task_arn: &str) {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=com.amazonaws.ecs.task-arn={task_arn}")])
        .output()
        .unwrap();
    let ids: Vec<String> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
    assert!(!ids.is_empty(), "no container of {task_arn}");
    // The app container (not the pause container): killing it ends the task.
    for id in ids {
        let name = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{index .Config.Labels \"com.amazonaws.ecs.container-name\"}}",
                &id,
            ])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&name.stdout).trim() == "app" {
            assert!(Command::new("docker").args(["kill", &id]).output().unwrap().status.success());
        }
    }
}

#[test]
fn services_find_each_other_by_name() {
    require_demo_image();
    let gateway = docker_gateway();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("up");
    let _cleanup = berth_testkit::UpCleanup(data.clone());
    let listen = format!("{gateway}:53");
    let up = ServerProc::start_up(
        bin(),
        &data,
        &["--cpu", "8192", "--memory", "8192", "--dns-listen", &listen],
    )
    .expect("berth up starts");
    let dns: SocketAddr = up.dns.expect("the DNS address");
    assert_eq!(dns.to_string(), listen);
    let cli = Cli(&up);

    let vpc =
        cli.json(&["ec2", "describe-vpcs", "--filters", "Name=is-default,Values=true"])["Vpcs"][0]
            ["VpcId"]
            .as_str()
            .unwrap()
            .to_string();
    let subnet = cli.json(&[
        "ec2",
        "describe-subnets",
        "--filters",
        "Name=default-for-az,Values=true",
    ])["Subnets"][0]["SubnetId"]
        .as_str()
        .unwrap()
        .to_string();
    let sg = cli.json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "shop",
        "--description",
        "shop",
    ])["GroupId"]
        .as_str()
        .unwrap()
        .to_string();
    cli.json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &sg,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "0.0.0.0/0",
    ]);

    let op = cli.json(&[
        "servicediscovery",
        "create-private-dns-namespace",
        "--name",
        "shop.local",
        "--vpc",
        &vpc,
    ])["OperationId"]
        .as_str()
        .unwrap()
        .to_string();
    let ns = cli.json(&["servicediscovery", "get-operation", "--operation-id", &op])["Operation"]
        ["Targets"]["NAMESPACE"]
        .as_str()
        .unwrap()
        .to_string();
    let registry = |name: &str, kind: &str| -> String {
        let records = format!("NamespaceId={ns},DnsRecords=[{{Type={kind},TTL=2}}]");
        cli.json(&["servicediscovery", "create-service", "--name", name, "--dns-config", &records])
            ["Service"]["Arn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let api_reg = registry("api", "A");
    let web_reg = registry("web", "A");
    let legacy_reg = registry("legacy", "SRV");

    // awsvpc services run on Fargate (berth up's local pool host); the bridge one on EC2.
    let td = |family: &str, mode: &str| {
        let mut def = json!({
            "family": family, "networkMode": mode,
            "containerDefinitions": [{
                "name": "app", "image": "berth-demo:latest", "memory": 32,
                "portMappings": [{"containerPort": 8080}],
            }],
        });
        if mode == "awsvpc" {
            def["requiresCompatibilities"] = json!(["FARGATE"]);
            def["cpu"] = json!("256");
            def["memory"] = json!("512");
        }
        up.register_task_definition(&def);
    };
    td("api", "awsvpc");
    td("web", "awsvpc");
    td("legacy", "bridge");
    let net = format!("awsvpcConfiguration={{subnets=[{subnet}],securityGroups=[{sg}]}}");

    // ECS's rules, before anything runs.
    let e = cli.err(&[
        "ecs",
        "create-service",
        "--service-name",
        "bad",
        "--task-definition",
        "legacy",
        "--desired-count",
        "1",
        "--service-registries",
        &format!("registryArn={legacy_reg}"),
    ]);
    assert!(
        e.contains("InvalidParameterException")
            && e.contains("'containerName' and 'containerPort'"),
        "{e}"
    );
    let e = cli.err(&[
        "ecs",
        "create-service",
        "--service-name",
        "bad",
        "--task-definition",
        "legacy",
        "--desired-count",
        "1",
        "--service-registries",
        &format!("registryArn={api_reg},containerName=app,containerPort=8080"),
    ]);
    assert!(e.contains("InvalidParameterException") && e.contains("SRV"), "{e}");
    let e = cli.err(&[
        "ecs",
        "create-service",
        "--service-name",
        "bad",
        "--task-definition",
        "api",
        "--desired-count",
        "1",
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        &net,
        "--service-registries",
        &format!("registryArn={api_reg},containerName=app,containerPort=8080"),
    ]);
    assert!(e.contains("do not require a value for 'containerPort'"), "{e}");

    let t0 = Instant::now();
    let create = |name: &str, td: &str, reg: &str, awsvpc: bool| {
        let mut args = vec![
            "ecs",
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            td,
            "--desired-count",
            "1",
            "--service-registries",
            reg,
        ];
        if awsvpc {
            args.extend(["--launch-type", "FARGATE", "--network-configuration", &net]);
        }
        let s = cli.json(&args);
        assert_eq!(
            s["service"]["serviceRegistries"][0]["registryArn"],
            reg.split(',').next().unwrap().trim_start_matches("registryArn=")
        );
    };
    create("api", "api", &format!("registryArn={api_reg}"), true);
    create("web", "web", &format!("registryArn={web_reg}"), true);
    create(
        "legacy",
        "legacy",
        &format!("registryArn={legacy_reg},containerName=app,containerPort=8080"),
        false,
    );

    // The A records are the tasks' own addresses.
    let api1 = cli.running("api", 1);
    let web1 = cli.running("web", 1);
    let api_ip = task_ip(&api1[0]);
    let web_ip = task_ip(&web1[0]);
    wait_a(dns, "api.shop.local", 10, |a| a.len() == 1 && a.contains(&api_ip));
    wait_a(dns, "web.shop.local", 10, |a| a.len() == 1 && a.contains(&web_ip));
    eprintln!("services registered {:?} after create", t0.elapsed());

    // A web task calls api by name, from inside the task.
    let body = http_get(
        &format!("{web_ip}:8080"),
        "/fetch?url=http://api.shop.local:8080/&timeout_ms=5000",
    );
    assert!(body.contains("Hello, World!"), "web -> api.shop.local: {body}");

    // The bridge service's SRV record: the host's address and the dynamic host port.
    let legacy = cli.running("legacy", 1);
    let host_port = legacy[0]["containers"][0]["networkBindings"][0]["hostPort"].as_i64().unwrap();
    let task_id = legacy[0]["taskArn"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let srv = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = ask(dns, "legacy.shop.local", Type::SRV);
            if !m.answers.is_empty() {
                break m;
            }
            assert!(Instant::now() < deadline, "no SRV answer for legacy.shop.local");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let RData::SRV(rec) = &srv.answers[0].data else { panic!("{srv:?}") };
    assert_eq!(i64::from(rec.port), host_port, "{srv:?}");
    let target = rec.target.to_string();
    assert!(target.starts_with(&format!("{task_id}.legacy.shop.local")), "{target}");
    assert!(
        srv.additionals.iter().any(|r| matches!(&r.data, RData::A(_))),
        "the SRV target's address comes along: {srv:?}"
    );
    // A bridge task resolves the SRV target and reaches the host port through it.
    let target = target.trim_end_matches('.');
    let body = http_get(
        &format!("127.0.0.1:{host_port}"),
        &format!("/fetch?url=http://{target}:{host_port}/&timeout_ms=5000"),
    );
    assert!(body.contains("Hello, World!"), "legacy -> {target}: {body}");

    // Scaling api: the new task appears within the TTL (2 s) of its start.
    cli.json(&["ecs", "update-service", "--service", "api", "--desired-count", "2"]);
    let scaled_at = Instant::now();
    let both = wait_a(dns, "api.shop.local", 60, |a| a.len() == 2);
    let shown_after = scaled_at.elapsed();
    let api2 = cli.running("api", 2);
    let ips: BTreeSet<String> = api2.iter().map(task_ip).collect();
    assert_eq!(both, ips);
    let newest = api2.iter().find(|t| task_ip(t) != api_ip).unwrap();
    let started: f64 = newest["startedAt"].as_f64().unwrap_or_else(|| {
        // The CLI prints timestamps as ISO strings unless told otherwise.
        let s = newest["startedAt"].as_str().unwrap();
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
            .unwrap_or_else(|e| panic!("startedAt {s}: {e}"))
    });
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let since_start = now - started;
    eprintln!(
        "scale-out: in DNS {shown_after:?} after update-service; task started {since_start:.2} s ago when checked"
    );
    // Checked after the DNS answer was seen, so this bounds registration from above.
    assert!(since_start < 2.0 + 3.0, "registered {since_start:.2} s after the task started");

    // A killed task leaves DNS before its replacement appears. (The replacement may get the
    // killed task's address back, so the answers are followed by count: 2, then the survivor
    // alone, then 2 again, never 3.)
    let victim = newest["taskArn"].as_str().unwrap().to_string();
    let survivor = api2.iter().map(task_ip).find(|ip| *ip != task_ip(newest)).unwrap();
    docker_kill_task(&victim);
    let killed_at = Instant::now();
    let mut seen: Vec<BTreeSet<String>> = vec![];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = addresses(&ask(dns, "api.shop.local", Type::A));
        if seen.last() != Some(&a) {
            seen.push(a.clone());
        }
        let left = seen.iter().any(|s| s.len() == 1);
        if left && a.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "api after the kill: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("after the kill ({:?}): {seen:?}", killed_at.elapsed());
    assert!(seen.iter().all(|s| s.len() <= 2 && s.contains(&survivor)), "{seen:?}");
    let alone = seen.iter().position(|s| s.len() == 1).unwrap();
    assert_eq!(seen[alone], BTreeSet::from([survivor.clone()]));
    // The replacement is the one the answer now holds with the survivor.
    let now_running = cli.running("api", 2);
    assert!(now_running.iter().all(|t| t["taskArn"] != victim.as_str()));
    let ips: BTreeSet<String> = now_running.iter().map(task_ip).collect();
    assert_eq!(seen.last().unwrap(), &ips);

    // Cleanup: services down (UpCleanup removes what is left on drop).
    for s in ["api", "web", "legacy"] {
        cli.json(&["ecs", "delete-service", "--service", s, "--force"]);
    }
    wait_a(dns, "api.shop.local", 30, |a| a.is_empty());
}
