//! CloudWatch Logs behind the one endpoint (issue #15), end to end against the real
//! `berth server` with the real AWS CLI: groups, streams, PutLogEvents' validation,
//! GetLogEvents' paging (forward and backward tokens, the same token back at the end),
//! FilterLogEvents with a JSON pattern and the polling `aws logs tail --follow` does (AWS CLI
//! v2 runs FilterLogEvents with `--start-time` and de-duplicates by event id; the installed
//! CLI v1 has no `tail`, so the same calls are made by hand), retention, tags, and events that
//! survive `kill -9` of the server; then the `awslogs` log driver on the real Docker Engine:
//! a task's output read back with get-log-events and filter-log-events, across a `kill -9`
//! of the agent, and a task whose log group is missing failing as ECS reports it.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

const DAY: i64 = 24 * 3600 * 1000;

fn put(s: &ServerProc, group: &str, stream: &str, events: &[(i64, &str)]) -> Value {
    let events: Vec<Value> =
        events.iter().map(|(t, m)| json!({"timestamp": t, "message": m})).collect();
    let r = s.aws(&[
        "logs",
        "put-log-events",
        "--log-group-name",
        group,
        "--log-stream-name",
        stream,
        "--log-events",
        &Value::Array(events).to_string(),
    ]);
    assert!(r.ok, "put-log-events: {}", r.stderr);
    r.json()
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {v}"))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn logs_with_the_aws_cli() {
    let mut s = ServerProc::start(bin()).expect("server");
    let ok = |args: &[&str]| {
        let r = s.aws(args);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r
    };
    ok(&["logs", "create-log-group", "--log-group-name", "/ecs/web", "--tags", "team=a"]);
    s.aws(&["logs", "create-log-group", "--log-group-name", "/ecs/web"])
        .err("ResourceAlreadyExistsException");
    s.aws(&["logs", "create-log-group", "--log-group-name", "bad name!"])
        .err("InvalidParameterException");
    ok(&[
        "logs",
        "create-log-stream",
        "--log-group-name",
        "/ecs/web",
        "--log-stream-name",
        "web/a",
    ]);
    ok(&[
        "logs",
        "create-log-stream",
        "--log-group-name",
        "/ecs/web",
        "--log-stream-name",
        "web/b",
    ]);
    s.aws(&[
        "logs",
        "create-log-stream",
        "--log-group-name",
        "/ecs/nope",
        "--log-stream-name",
        "x",
    ])
    .err("ResourceNotFoundException");

    let groups = ok(&["logs", "describe-log-groups", "--log-group-name-prefix", "/ecs/"]).json();
    let g = &groups["logGroups"][0];
    assert_eq!(g["logGroupName"], "/ecs/web", "{groups}");
    let legacy = g["arn"].as_str().unwrap();
    assert!(
        legacy.starts_with("arn:aws:logs:us-east-1:") && legacy.ends_with(":log-group:/ecs/web:*"),
        "{legacy}"
    );
    let arn = g["logGroupArn"].as_str().unwrap().to_string();
    assert_eq!(
        ok(&["logs", "list-tags-for-resource", "--resource-arn", &arn]).json()["tags"],
        json!({"team": "a"})
    );
    ok(&["logs", "tag-resource", "--resource-arn", &arn, "--tags", "env=dev"]);
    ok(&["logs", "untag-resource", "--resource-arn", &arn, "--tag-keys", "team"]);
    assert_eq!(
        ok(&["logs", "list-tags-log-group", "--log-group-name", "/ecs/web"]).json()["tags"],
        json!({"env": "dev"})
    );

    // PutLogEvents: out of order is fine (stored sorted); too new / too old are rejected by
    // index; a batch spanning over a day is refused.
    let t = now_ms() - 60_000;
    let lines: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
    let mut batch: Vec<(i64, &str)> =
        lines.iter().enumerate().map(|(i, l)| (t + i as i64, l.as_str())).collect();
    batch.swap(3, 7);
    let r = put(&s, "/ecs/web", "web/a", &batch);
    assert!(r.get("rejectedLogEventsInfo").is_none(), "{r}");
    let r = put(
        &s,
        "/ecs/web",
        "web/b",
        &[
            (t, r#"{"level":"error","code":503,"msg":"upstream down"}"#),
            (t + 1, r#"{"level":"info","code":200}"#),
            (t + 3 * 3600 * 1000, "future"),
        ],
    );
    assert_eq!(r["rejectedLogEventsInfo"], json!({"tooNewLogEventStartIndex": 2}), "{r}");
    let r = put(
        &s,
        "/ecs/web",
        "web/b",
        &[(t - 15 * DAY, "ancient"), (t - 15 * DAY + 1, "ancient too")],
    );
    assert_eq!(r["rejectedLogEventsInfo"], json!({"tooOldLogEventEndIndex": 1}), "{r}");
    let span =
        json!([{"timestamp": t - 2 * DAY, "message": "a"}, {"timestamp": t, "message": "b"}])
            .to_string();
    let e = s
        .aws(&[
            "logs",
            "put-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            "web/a",
            "--log-events",
            &span,
        ])
        .err("InvalidParameterException")
        .to_string();
    assert!(e.contains("24 hours"), "{e}");

    // GetLogEvents from the head, 7 per page; and backward (the default) the latest page.
    // GetLogEvents has no CLI paginator: page by hand as the SDKs do, until the forward
    // token comes back unchanged.
    let mut got = vec![];
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec![
            "logs",
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            "web/a",
            "--start-from-head",
            "--limit",
            "7",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t.as_str()]);
        }
        let page = ok(&args).json();
        got.extend(messages(&page));
        pages += 1;
        let next = page["nextForwardToken"].as_str().unwrap().to_string();
        if token.as_deref() == Some(next.as_str()) {
            break;
        }
        token = Some(next);
        assert!(pages < 10, "the token never repeated");
    }
    assert_eq!(got, lines);
    assert_eq!(pages, 6, "5 pages of events (7+7+7+7+2) and the empty last one");
    let last = ok(&[
        "logs",
        "get-log-events",
        "--log-group-name",
        "/ecs/web",
        "--log-stream-name",
        "web/a",
        "--limit",
        "5",
        "--no-paginate",
    ])
    .json();
    assert_eq!(messages(&last), lines[25..].to_vec());
    let fwd = last["nextForwardToken"].as_str().unwrap().to_string();
    let again = ok(&[
        "logs",
        "get-log-events",
        "--log-group-name",
        "/ecs/web",
        "--log-stream-name",
        "web/a",
        "--next-token",
        &fwd,
        "--no-paginate",
    ])
    .json();
    assert!(messages(&again).is_empty());
    assert_eq!(again["nextForwardToken"], fwd.as_str(), "the same token at the end");
    let back = last["nextBackwardToken"].as_str().unwrap().to_string();
    let before = ok(&[
        "logs",
        "get-log-events",
        "--log-group-name",
        "/ecs/web",
        "--log-stream-name",
        "web/a",
        "--next-token",
        &back,
        "--limit",
        "5",
        "--no-paginate",
    ])
    .json();
    assert_eq!(messages(&before), lines[20..25].to_vec());

    // FilterLogEvents: a JSON field, terms, a stream prefix; streams interleaved.
    let found = ok(&[
        "logs",
        "filter-log-events",
        "--log-group-name",
        "/ecs/web",
        "--filter-pattern",
        r#"{ $.level = "error" && $.code >= 500 }"#,
    ])
    .json();
    assert_eq!(messages(&found), [r#"{"level":"error","code":503,"msg":"upstream down"}"#]);
    assert_eq!(found["events"][0]["logStreamName"], "web/b");
    let found = ok(&[
        "logs",
        "filter-log-events",
        "--log-group-name",
        "/ecs/web",
        "--log-stream-name-prefix",
        "web/a",
        "--filter-pattern",
        "\"line 2\" -\"line 21\"",
    ])
    .json();
    assert_eq!(messages(&found).len(), 10, "line 2, line 20, 22..29: {found}");
    s.aws(&[
        "logs",
        "filter-log-events",
        "--log-group-name",
        "/ecs/web",
        "--filter-pattern",
        "{ $.level = ",
    ])
    .err("InvalidParameterException");

    // What `aws logs tail --follow` does: FilterLogEvents from a start time, then again from
    // the last timestamp seen, dropping event ids already printed.
    let since = (t + 29).to_string();
    let first =
        ok(&["logs", "filter-log-events", "--log-group-name", "/ecs/web", "--start-time", &since])
            .json();
    let mut seen: Vec<String> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(messages(&first), ["line 29"]);
    put(&s, "/ecs/web", "web/b", &[(t + 29, "same ms"), (t + 40, "later")]);
    let next =
        ok(&["logs", "filter-log-events", "--log-group-name", "/ecs/web", "--start-time", &since])
            .json();
    let fresh: Vec<&Value> = next["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !seen.contains(&e["eventId"].as_str().unwrap().to_string()))
        .collect();
    let fresh_msgs: Vec<&str> = fresh.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(fresh_msgs, ["same ms", "later"]);
    seen.extend(fresh.iter().map(|e| e["eventId"].as_str().unwrap().to_string()));

    // DescribeLogStreams ordering and paging.
    let by_time = ok(&[
        "logs",
        "describe-log-streams",
        "--log-group-name",
        "/ecs/web",
        "--order-by",
        "LastEventTime",
        "--descending",
        "--query",
        "logStreams[].logStreamName",
        "--output",
        "text",
    ])
    .stdout;
    assert_eq!(by_time.split_whitespace().collect::<Vec<_>>(), ["web/b", "web/a"]);
    let paged =
        ok(&["logs", "describe-log-streams", "--log-group-name", "/ecs/web", "--page-size", "1"])
            .json();
    assert_eq!(paged["logStreams"].as_array().unwrap().len(), 2, "{paged}");
    s.aws(&[
        "logs",
        "describe-log-streams",
        "--log-group-name",
        "/ecs/web",
        "--order-by",
        "LastEventTime",
        "--log-stream-name-prefix",
        "w",
    ])
    .err("InvalidParameterException");

    // Retention: events older than the policy disappear (the sweep runs on PutRetentionPolicy).
    ok(&["logs", "create-log-group", "--log-group-name", "old"]);
    ok(&["logs", "create-log-stream", "--log-group-name", "old", "--log-stream-name", "s"]);
    let now = now_ms();
    put(&s, "old", "s", &[(now - 5 * DAY, "five days old")]);
    put(&s, "old", "s", &[(now - 1000, "fresh")]);
    s.aws(&["logs", "put-retention-policy", "--log-group-name", "old", "--retention-in-days", "2"])
        .err("InvalidParameterException");
    ok(&["logs", "put-retention-policy", "--log-group-name", "old", "--retention-in-days", "3"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = ok(&[
            "logs",
            "get-log-events",
            "--log-group-name",
            "old",
            "--log-stream-name",
            "s",
            "--start-from-head",
        ])
        .json();
        if messages(&got) == ["fresh"] {
            break;
        }
        assert!(Instant::now() < deadline, "retention never applied: {got}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = put(&s, "old", "s", &[(now - 4 * DAY, "expired")]);
    assert_eq!(r["rejectedLogEventsInfo"], json!({"expiredLogEventEndIndex": 0}));

    // Acknowledged events survive kill -9.
    s.kill9();
    s.restart_after_kill9().expect("restart");
    let all = s
        .aws(&[
            "logs",
            "get-log-events",
            "--log-group-name",
            "/ecs/web",
            "--log-stream-name",
            "web/a",
            "--start-from-head",
        ])
        .json();
    assert_eq!(messages(&all), lines);
    ok_after_restart(&s);
}

fn ok_after_restart(s: &ServerProc) {
    let r = s.aws(&["logs", "delete-log-group", "--log-group-name", "/ecs/web"]);
    assert!(r.ok, "{}", r.stderr);
    s.aws(&[
        "logs",
        "get-log-events",
        "--log-group-name",
        "/ecs/web",
        "--log-stream-name",
        "web/a",
    ])
    .err("ResourceNotFoundException");
}

/// Polls DescribeTasks until `pred` holds (bounded).
fn wait_task(s: &ServerProc, arn: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.aws(&["ecs", "describe-tasks", "--cluster", "default", "--tasks", arn]).json();
        let t = d["tasks"][0].clone();
        if pred(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "task never became {what}: {t}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every message of a stream, from the head.
fn stream_messages(s: &ServerProc, group: &str, stream: &str) -> Vec<String> {
    let r = s.aws(&[
        "logs",
        "get-log-events",
        "--log-group-name",
        group,
        "--log-stream-name",
        stream,
        "--start-from-head",
    ]);
    if !r.ok {
        return vec![];
    }
    messages(&r.json())
}

#[test]
fn the_awslogs_driver_ships_a_tasks_output() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let mut agent = AgentProc::start(bin(), &s, &["--memory", "2048"]).expect("agent");
    // The demo app's -print-env prints `NAME=value` lines, sorted, then sleeps; a variable
    // named `{"level":"error","code":503,"x":"` with the value `y"}` prints a JSON line.
    let mut env: Vec<Value> = (0..40)
        .map(|i| json!({"name": format!("LINE_{i:03}"), "value": format!("line {i}")}))
        .collect();
    env.push(json!({"name": r#"{"level":"error","code":503,"x":""#, "value": r#"y"}"#}));
    let awslogs = |group: &str, create: bool| {
        json!({"logDriver": "awslogs", "options": {
        "awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "ecs",
        "awslogs-create-group": if create { "true" } else { "false" }, "mode": "non-blocking", "max-buffer-size": "4m"}})
    };
    s.register_task_definition(&json!({"family": "logger", "containerDefinitions": [
        {"name": "app", "image": "berth-demo:latest", "memory": 16, "command": ["-print-env"],
         "environment": env, "logConfiguration": awslogs("/ecs/logger", true)}]}));
    // A metric filter on the group counts the driver's JSON error lines too.
    assert!(s.aws(&["logs", "create-log-group", "--log-group-name", "/ecs/logger"]).ok);
    let r = s.aws(&[
        "logs",
        "put-metric-filter",
        "--log-group-name",
        "/ecs/logger",
        "--filter-name",
        "code503",
        "--filter-pattern",
        "{ $.code = 503 }",
        "--metric-transformations",
        "metricName=Code503,metricNamespace=Berth/Driver,metricValue=1",
    ]);
    assert!(r.ok, "put-metric-filter: {}", r.stderr);
    let run =
        s.aws(&["ecs", "run-task", "--cluster", "default", "--task-definition", "logger"]).json();
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap_or_else(|| panic!("{run}")).to_string();
    let task_id = arn.rsplit('/').next().unwrap().to_string();
    let stream = format!("ecs/app/{task_id}");
    wait_task(&s, &arn, "RUNNING", |t| t["lastStatus"] == "RUNNING");
    // Once the first lines are in, kill the agent; the restarted one resumes from the cursor.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream_messages(&s, "/ecs/logger", &stream).is_empty() {
        assert!(Instant::now() < deadline, "no line shipped:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.kill9();
    agent.restart().expect("agent restart");
    let want_lines: Vec<String> = (0..40).map(|i| format!("LINE_{i:03}=line {i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = stream_messages(&s, "/ecs/logger", &stream);
        if want_lines.iter().all(|l| got.contains(l)) {
            break got;
        }
        assert!(Instant::now() < deadline, "lines missing: {got:?}\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    for l in &want_lines {
        assert_eq!(got.iter().filter(|g| *g == l).count(), 1, "{l} shipped once: {got:?}");
    }
    let pos: Vec<usize> =
        want_lines.iter().map(|l| got.iter().position(|g| g == l).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    let found = s
        .aws(&[
            "logs",
            "filter-log-events",
            "--log-group-name",
            "/ecs/logger",
            "--filter-pattern",
            "{ $.code = 503 }",
        ])
        .json();
    assert_eq!(messages(&found), [r#"{"level":"error","code":503,"x":"=y"}"#], "{found}");
    assert_eq!(found["events"][0]["logStreamName"], stream.as_str());
    let (from, to) = ((now_ms() - 3_600_000) / 1000, (now_ms() + 120_000) / 1000);
    let st = s
        .aws(&[
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            "Berth/Driver",
            "--metric-name",
            "Code503",
            "--start-time",
            &from.to_string(),
            "--end-time",
            &to.to_string(),
            "--period",
            "3600",
            "--statistics",
            "Sum",
        ])
        .json();
    let sum: f64 =
        st["Datapoints"].as_array().unwrap().iter().map(|d| d["Sum"].as_f64().unwrap()).sum();
    assert_eq!(sum, 1.0, "the driver's shipments feed metric filters: {st}");
    s.aws(&["ecs", "stop-task", "--cluster", "default", "--task", &arn]);
    wait_task(&s, &arn, "STOPPED", |t| t["lastStatus"] == "STOPPED");

    // A group that does not exist, without awslogs-create-group: the task fails to start.
    s.register_task_definition(&json!({"family": "nogroup", "containerDefinitions": [
        {"name": "app", "image": "berth-demo:latest", "memory": 16, "command": ["-print-env"],
         "logConfiguration": awslogs("/ecs/missing", false)}]}));
    let run =
        s.aws(&["ecs", "run-task", "--cluster", "default", "--task-definition", "nogroup"]).json();
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let t = wait_task(&s, &arn, "STOPPED", |t| t["lastStatus"] == "STOPPED");
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotStartContainerError:")
            && reason
                .contains("ResourceNotFoundException: The specified log group does not exist."),
        "{reason}"
    );
    assert!(agent.containers().is_empty(), "containers left behind: {:?}", agent.containers());
}
