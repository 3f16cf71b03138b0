//! Task role credentials inside containers (issue #16), end to end against one real
//! `berth server` and a real agent joined with a join token (so it acts with its own instance
//! key): a bridge-mode task whose role allows `ecs:ListClusters` runs an unmodified boto3
//! program (`py/task_role.py boto`, the host's Python bind-mounted read-only into the demo
//! image) that picks its credentials up with no configuration but what the agent gives the
//! container, sees itself as `assumed-role/ROLE/TASK_ID`, lists clusters and is denied
//! CreateCluster. A second task cannot get the first one's credentials (its token, its own
//! token on the other's id, no token, a wrong id); the host (not a container of the task) is
//! refused; after the first task stops, its credentials are gone from the agent and the server
//! mints no more. Needs `berth-demo:latest` and root (iptables).

use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn ok(s: &ServerProc, args: &[&str]) -> Value {
    let r = s.aws(args);
    assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
    if r.stdout.trim().is_empty() { Value::Null } else { r.json() }
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Docker's default bridge gateway (the host's address containers reach).
fn gateway() -> Ipv4Addr {
    let gw = docker(&["network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"]);
    if let Ok(ip) = gw.parse() {
        return ip;
    }
    // Docker names no gateway: the subnet's first address.
    let subnet =
        docker(&["network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Subnet}}"]);
    let net: Ipv4Addr = subnet.split('/').next().unwrap_or_default().parse().expect("subnet");
    Ipv4Addr::from(u32::from(net) + 1)
}

/// Forwards connections to `gw:PORT` (reachable from bridge containers) to `to` (the
/// server, on loopback); returns `gw:PORT`.
fn forward(gw: Ipv4Addr, to: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind((gw, 0)).expect("bind on the bridge gateway");
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let Ok(s) = TcpStream::connect(to) else { continue };
            let (c2, s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &c, &mut &s);
                let _ = s.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &s2, &mut &c2);
                let _ = c2.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// The host directories the container's Python needs, read-only: the system's libraries,
/// the loader cache, and the interpreter's prefix (with boto3) when outside `/usr`.
fn python_mounts() -> (String, Vec<String>) {
    let o = Command::new("python3")
        .args([
            "-c",
            "import os,sys,boto3;print(os.path.realpath(sys.executable));print(sys.base_prefix);\
             print(os.path.dirname(os.path.dirname(boto3.__file__)))",
        ])
        .output()
        .expect("python3 with boto3");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut lines = text.lines();
    let exe = lines.next().expect("python's path").to_string();
    let mut dirs: Vec<String> = vec!["/usr".into(), "/lib".into(), "/etc/ld.so.cache".into()];
    if Path::new("/lib64").exists() {
        dirs.push("/lib64".into());
    }
    for d in lines {
        if !dirs.iter().any(|m| d == m || d.starts_with(&format!("{m}/"))) {
            dirs.push(d.to_string());
        }
    }
    (exe, dirs)
}

/// The agent's rules for 169.254.170.2 go with the test (the agent is SIGKILLed).
struct Dnat(SocketAddr);

impl Drop for Dnat {
    fn drop(&mut self) {
        for chain in ["PREROUTING", "OUTPUT"] {
            let _ = Command::new("iptables")
                .args(["-t", "nat", "-D", chain, "-d", "169.254.170.2/32", "-p", "tcp"])
                .args(["--dport", &self.0.port().to_string(), "-m", "comment"])
                .args(["--comment", "berth task credentials", "-j", "DNAT"])
                .args(["--to-destination", &self.0.to_string()])
                .output();
        }
    }
}

fn wait_task(s: &ServerProc, arn: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.aws(&["ecs", "describe-tasks", "--cluster", "default", "--tasks", arn]).json();
        let t = d["tasks"][0].clone();
        if t["lastStatus"] == status {
            return t;
        }
        assert!(Instant::now() < deadline, "task never {status}: {t}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The first line the task's container printed, as JSON (bounded).
fn printed(arn: &str, agent: &AgentProc) -> (String, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let id =
            docker(&["ps", "-aq", "--filter", &format!("label=com.amazonaws.ecs.task-arn={arn}")]);
        if !id.is_empty() {
            let o = Command::new("docker").args(["logs", &id]).output().unwrap();
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            if let Some(line) = out.lines().next() {
                let v = serde_json::from_str(line)
                    .unwrap_or_else(|_| panic!("{line}\n{}", String::from_utf8_lossy(&o.stderr)));
                return (id, v);
            }
            assert!(
                Instant::now() < deadline,
                "nothing printed: {}\nagent:\n{}",
                String::from_utf8_lossy(&o.stderr),
                agent.log()
            );
        }
        assert!(Instant::now() < deadline, "no container for {arn}:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A container's value of variable `name`.
fn env_of(id: &str, name: &str) -> String {
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", id]);
    let env: Vec<String> = serde_json::from_str(&env).unwrap();
    env.iter()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("{name} not in {env:?}"))
}

/// GET `url` with `token` from the host: the status code.
fn host_get(url: &str, token: &str) -> String {
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5"])
        .args(["-H", &format!("Authorization: {token}"), url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_task_role_reaches_boto3_in_its_container_and_nowhere_else() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let gw = gateway();
    let server_addr: SocketAddr =
        s.endpoint.trim_start_matches("http://").parse().expect("server address");
    let reach = forward(gw, server_addr);

    // The role: trusted by ECS tasks, allowed ListClusters only.
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    ok(
        &s,
        &[
            "iam",
            "create-role",
            "--role-name",
            "app",
            "--assume-role-policy-document",
            &trust.to_string(),
        ],
    );
    let allow = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}]});
    ok(
        &s,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "app",
            "--policy-name",
            "list",
            "--policy-document",
            &allow.to_string(),
        ],
    );

    let (python, dirs) = python_mounts();
    let py_dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let mut mounts: Vec<String> = dirs.clone();
    mounts.push(py_dir.display().to_string());
    let volumes: Vec<Value> = mounts
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"name": format!("v{i}"), "host": {"sourcePath": p}}))
        .collect();
    let mount_points: Vec<Value> = mounts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at =
                if *p == py_dir.display().to_string() { "/berth-py".into() } else { p.clone() };
            json!({"sourceVolume": format!("v{i}"), "containerPath": at, "readOnly": true})
        })
        .collect();
    s.register_task_definition(&json!({"family": "boto",
        "taskRoleArn": "arn:aws:iam::123456789012:role/app",
        "volumes": volumes,
        "containerDefinitions": [{"name": "app", "image": "berth-demo:latest", "memory": 256,
            "entryPoint": [python], "command": ["/berth-py/task_role.py", "boto"],
            "mountPoints": mount_points,
            "environment": [
                {"name": "BERTH_ENDPOINT", "value": format!("http://{reach}")},
                {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"}]}]}));

    let out = Command::new(bin())
        .args(["token", "create", "--expires-in", "10m", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .expect("berth token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let join = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let allowed = mounts.join(",");
    let agent = AgentProc::start_joining(
        bin(),
        &s,
        &join,
        &["--memory", "2048", "--allow-host-paths", &allowed],
    )
    .expect("agent");
    let endpoint: SocketAddr = std::fs::read_to_string(agent.data_dir.join("metadata-address"))
        .expect("metadata address")
        .trim()
        .parse()
        .unwrap();
    let _dnat = Dnat(endpoint);

    let run = |overrides: Option<Value>| {
        let mut args = vec!["ecs", "run-task", "--cluster", "default", "--task-definition", "boto"];
        let o = overrides.map(|o| o.to_string());
        if let Some(o) = &o {
            args.extend(["--overrides", o.as_str()]);
        }
        let r = ok(&s, &args);
        r["tasks"][0]["taskArn"].as_str().unwrap_or_else(|| panic!("{r}")).to_string()
    };

    // 1. boto3 in the container: no configuration, the role's permissions, nothing more.
    let first = run(None);
    wait_task(&s, &first, "RUNNING");
    let (id1, got) = printed(&first, &agent);
    let task_id = first.rsplit('/').next().unwrap();
    assert_eq!(got["method"], "container-role", "{got}");
    assert_eq!(
        got["arn"],
        format!("arn:aws:sts::123456789012:assumed-role/app/{task_id}"),
        "{got}"
    );
    assert!(got["clusters"].as_array().is_some(), "{got}");
    assert_eq!(got["denied"], "AccessDeniedException", "{got}");
    assert!(got["denied_message"].as_str().unwrap_or("").contains("ecs:CreateCluster"), "{got}");
    let uri1 = env_of(&id1, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    let token1 = env_of(&id1, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    assert!(uri1.starts_with("http://169.254.170.2:"), "{uri1}");
    assert!(!agent.log().contains(&token1), "the token is in the agent's log");

    // 2. Another task (same role) cannot get the first one's credentials.
    let probe = json!({"containerOverrides": [{"name": "app",
        "command": ["/berth-py/task_role.py", "probe", uri1, token1]}]});
    let second = run(Some(probe));
    let (_, p) = printed(&second, &agent);
    assert_eq!(p["own"], 200, "{p}");
    for (case, want) in [
        ("other_with_its_token", 403),
        ("other_with_own_token", 403),
        ("own_with_other_token", 403),
        ("own_without_token", 401),
        ("wrong_id", 404),
    ] {
        assert_eq!(p[case], want, "{case}: {p}");
    }

    // 3. The host is not a container of the task: refused, on either address.
    let cred_path = uri1.split_once("/v2/").map(|(_, p)| format!("/v2/{p}")).unwrap();
    let direct = format!("http://{endpoint}{cred_path}");
    assert_eq!(host_get(&direct, &token1), "403");
    assert_ne!(host_get(&uri1, &token1), "200");

    // 4. While the task runs the server mints for its instance; after it stops, neither the
    //    agent nor the server gives anything.
    let server_call = |task: &str| -> Value {
        let o = s.python(&py_dir.join("task_role.py"), &["server", task, &agent.instance_arn]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        serde_json::from_str(text.trim())
            .unwrap_or_else(|_| panic!("{text}\n{}", String::from_utf8_lossy(&o.stderr)))
    };
    let minted = server_call(&first);
    assert_eq!(minted["status"], 200, "{minted}");
    assert_eq!(minted["key"], "ASIA", "{minted}");
    ok(&s, &["ecs", "stop-task", "--cluster", "default", "--task", &first]);
    wait_task(&s, &first, "STOPPED");
    assert_eq!(host_get(&direct, &token1), "404", "after stop");
    let refused = server_call(&first);
    assert_eq!(refused["status"], 400, "{refused}");
    assert_eq!(refused["code"], "ClientException", "{refused}");

    ok(&s, &["ecs", "stop-task", "--cluster", "default", "--task", &second]);
    wait_task(&s, &second, "STOPPED");
    drop(agent);
    let _ = std::io::stdout().flush();
}
