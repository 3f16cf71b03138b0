//! The task metadata endpoint across a `kill -9` of `berth up` (issue #10, defect 9): a
//! container that asks for its metadata as its first action gets its own `DockerId`; after a
//! restart on the same data directory the adopted container's URI still answers (same address,
//! token recovered from its label) and a task started right after the restart gets an answer
//! to its first request. Needs `berth-demo:latest` (scripts/build-demo-image.sh), whose
//! `-get URL` mode prints what one GET of the metadata URI answered, before anything else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_testkit::{ServerProc, require_demo_image};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Removes every container of the instance when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        berth_testkit::remove_instance_objects(&self.0);
    }
}

/// The full id of the container of task `arn`, once it exists (bounded).
fn container_of(arn: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--no-trunc", "--filter"])
            .arg(format!("label=com.amazonaws.ecs.task-arn={arn}"))
            .output()
            .expect("docker");
        let ids = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !ids.is_empty() {
            return ids;
        }
        assert!(Instant::now() < deadline, "task {arn} never got a container");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the container's `-get` printed first: (status line, body), once it has (bounded).
fn first_answer(id: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("docker").args(["logs", id]).output().expect("docker logs");
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = log.lines();
        if let (Some(status), Some(body)) = (lines.next(), lines.next()) {
            return (status.to_string(), body.to_string());
        }
        assert!(Instant::now() < deadline, "container {id} printed no answer: {log:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts the container's first request was answered 200 at once and showed its own id.
#[track_caller]
fn assert_answered_with_its_id(arn: &str, id: &str) -> Value {
    let (status, body) = first_answer(id);
    let ms: u64 = status
        .strip_prefix("get: 200 ")
        .and_then(|s| s.strip_suffix("ms"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the first metadata request failed: {status} {body}"));
    assert!(ms < 3000, "the first metadata request took {ms} ms");
    let task: Value = serde_json::from_str(&body).expect("task metadata JSON");
    assert_eq!(task["TaskARN"], arn);
    assert_eq!(task["Containers"][0]["DockerId"], id, "the container sees its own id: {task}");
    task
}

/// One HTTP GET from the host; the body.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

fn run_task(up: &ServerProc) -> String {
    let run = up.aws(&["ecs", "run-task", "--task-definition", "md"]).json();
    run["tasks"][0]["taskArn"].as_str().expect("a task").to_string()
}

#[test]
fn metadata_answers_at_once_and_survives_a_kill_9_of_berth_up() {
    require_demo_image();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("up");
    // Port 0: a free port on the bridge gateway, chosen now and kept in the data directory
    // (the default, 51679, may be taken by another test's `berth up`).
    let flags = ["--memory", "1024", "--metadata-listen", "0"];
    let mut up = ServerProc::start_up(bin(), &data, &flags).expect("berth up starts");
    let list = up.aws(&["ecs", "list-container-instances"]).json();
    let instance = list["containerInstanceArns"][0].as_str().expect("registered").to_string();
    let cleanup = Cleanup(instance);

    up.register_task_definition(&serde_json::json!({"family": "md", "containerDefinitions": [{
        "name": "c", "image": "berth-demo:latest", "memory": 16,
        "command": ["-get", "${ECS_CONTAINER_METADATA_URI_V4}/task", "-listen", ":8080"],
        "portMappings": [{"containerPort": 8080}]}]}));

    // Its first action: the container sees its task, PENDING, with its own DockerId.
    let first = run_task(&up);
    let first_id = container_of(&first);
    assert_answered_with_its_id(&first, &first_id);
    up.aws(&["ecs", "wait", "tasks-running", "--tasks", &first]).json();
    let t = up.aws(&["ecs", "describe-tasks", "--tasks", &first]).json();
    let port = t["tasks"][0]["containers"][0]["networkBindings"][0]["hostPort"].as_i64().unwrap();
    let app = format!("127.0.0.1:{port}");
    let uri = http_get(&app, "/env")
        .lines()
        .find_map(|l| l.strip_prefix("ECS_CONTAINER_METADATA_URI_V4=").map(str::to_string))
        .expect("the metadata URI is in the environment");

    // kill -9, then a new `berth up` on the same data directory.
    up.kill9();
    drop(up);
    let up = ServerProc::start_up(bin(), &data, &flags).expect("berth up restarts");

    // (b) A task started right after the restart: its first request is answered.
    let second = run_task(&up);
    let second_id = container_of(&second);
    assert_answered_with_its_id(&second, &second_id);

    // (a) The adopted container's URI (same address, same token) still answers.
    let fetched = http_get(&app, &format!("/fetch?url={uri}/task"));
    let (status, body) = fetched.split_once('\n').expect("status and body");
    assert_eq!(status, "200", "the adopted container's metadata: {fetched}");
    let task: Value = serde_json::from_str(body).expect("task metadata JSON");
    assert_eq!(task["TaskARN"], first.as_str());
    assert_eq!(task["Containers"][0]["DockerId"], first_id.as_str());
    assert_eq!(task["KnownStatus"], "RUNNING", "{task}");

    // The token is in a label, and nowhere in the logs.
    let token = uri.rsplit('/').next().unwrap().split('-').next().unwrap().to_string();
    let label = Command::new("docker")
        .args(["inspect", "-f", "{{index .Config.Labels \"berth.metadata-token\"}}", &first_id])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), token);
    drop(up);
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(!log.contains(&token), "a metadata token was logged");
    drop(cleanup);
}
