//! CloudWatch metrics and alarms behind the one endpoint (issue #15), end to end against the
//! real `berth server` and `berth agent` on the real Docker Engine, with the real AWS CLI and
//! boto3 (`py/test_cloudwatch.py`): PutMetricData (and its validation), GetMetricStatistics,
//! GetMetricData with metric math, ListMetrics; an alarm set to ALARM by SetAlarmState and
//! brought back by evaluation, then to ALARM by real evaluation of put data with a 10-second
//! period, and back; its history and tags; a service whose container burns CPU shows
//! `AWS/ECS` `CPUUtilization` above zero for its service; the Prometheus text endpoint.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_testkit::{AgentProc, ServerProc, require_demo_image};
use serde_json::json;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Polls `f` until it answers `Some`, at most `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `GET path` on the server's plain-HTTP endpoint.
fn http_get(endpoint: &str, path: &str) -> String {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn cloudwatch_with_the_aws_cli_and_boto3() {
    require_demo_image();
    let s = ServerProc::start(bin()).expect("server");
    let agent = AgentProc::start_with_env(bin(), &s, &[], &[("BERTH_STATS_INTERVAL_SECS", "1")])
        .expect("agent");
    let ok = |args: &[&str]| {
        let r = s.aws(args);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r
    };

    // A service whose task burns one CPU for 90 s, started first so that its samples flow
    // while the rest runs. 256 units reserved: one busy core is about 400%.
    s.register_task_definition(&json!({
        "family": "burn",
        "containerDefinitions": [{"name": "app", "image": "berth-demo:latest", "cpu": 256,
            "memory": 32, "command": ["-burn", "90"]}]
    }));
    ok(&[
        "ecs",
        "create-service",
        "--service-name",
        "burn",
        "--task-definition",
        "burn",
        "--desired-count",
        "1",
    ]);

    // The boto3 half (metric math, paging, error codes, and an alarm through SetAlarmState
    // and real evaluation, which waits on 10-second periods) runs while the CLI half does.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_cloudwatch.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script)
        .arg("b")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    s.client_env(&mut cmd);
    let python = cmd.spawn().expect("python3");

    // PutMetricData and GetMetricStatistics.
    let t0 = (now_s() / 60.0).floor() * 60.0 - 300.0;
    let data = json!([
        {"MetricName": "Latency", "Dimensions": [{"Name": "Api", "Value": "get"}],
         "Timestamp": t0, "Values": [10.0, 20.0, 30.0], "Counts": [1.0, 1.0, 2.0], "Unit": "Milliseconds"},
        {"MetricName": "Latency", "Dimensions": [{"Name": "Api", "Value": "get"}],
         "Timestamp": t0 + 60.0, "StatisticValues": {"SampleCount": 2.0, "Sum": 100.0, "Minimum": 40.0, "Maximum": 60.0}},
        {"MetricName": "Latency", "Dimensions": [{"Name": "Api", "Value": "put"}],
         "Timestamp": t0, "Value": 5.0}
    ]);
    ok(&[
        "cloudwatch",
        "put-metric-data",
        "--namespace",
        "App/Web",
        "--metric-data",
        &data.to_string(),
    ]);
    let st = ok(&[
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "App/Web",
        "--metric-name",
        "Latency",
        "--dimensions",
        "Name=Api,Value=get",
        "--start-time",
        &format!("{t0}"),
        "--end-time",
        &format!("{}", t0 + 120.0),
        "--period",
        "60",
        "--statistics",
        "Sum",
        "Average",
        "Minimum",
        "Maximum",
        "SampleCount",
        "--extended-statistics",
        "p50",
    ])
    .json();
    let mut points = st["Datapoints"].as_array().unwrap().clone();
    points.sort_by(|a, b| a["Timestamp"].as_str().cmp(&b["Timestamp"].as_str()));
    assert_eq!(points.len(), 2, "{st}");
    assert_eq!(st["Label"], "Latency");
    let p = &points[0];
    assert_eq!((p["SampleCount"].as_f64(), p["Sum"].as_f64()), (Some(4.0), Some(90.0)), "{p}");
    assert_eq!(
        (p["Minimum"].as_f64(), p["Maximum"].as_f64(), p["Average"].as_f64()),
        (Some(10.0), Some(30.0), Some(22.5)),
        "{p}"
    );
    assert_eq!(p["ExtendedStatistics"]["p50"].as_f64(), Some(20.0), "{p}");
    assert_eq!(p["Unit"], "Milliseconds");
    assert_eq!(points[1]["Average"].as_f64(), Some(50.0), "{}", points[1]);
    assert!(
        points[1].get("ExtendedStatistics").is_none_or(|e| e.as_object().unwrap().is_empty()),
        "no percentiles from a statistic set: {}",
        points[1]
    );

    // Validation, with the query protocol's codes.
    s.aws(&[
        "cloudwatch",
        "put-metric-data",
        "--namespace",
        "AWS/ECS",
        "--metric-name",
        "x",
        "--value",
        "1",
    ])
    .err("InvalidParameterValue");
    let bad = json!([{"MetricName": "x", "Value": 1.0, "StatisticValues":
        {"SampleCount": 1.0, "Sum": 1.0, "Minimum": 1.0, "Maximum": 1.0}}]);
    s.aws(&[
        "cloudwatch",
        "put-metric-data",
        "--namespace",
        "App/Web",
        "--metric-data",
        &bad.to_string(),
    ])
    .err("InvalidParameterCombination");
    let msg = s
        .aws(&[
            "cloudwatch",
            "put-metric-data",
            "--namespace",
            "App/Web",
            "--metric-data",
            r#"[{"MetricName":"x","Values":[1,2],"Counts":[1]}]"#,
        ])
        .err("InvalidParameterValue")
        .to_string();
    assert!(msg.contains("MetricData.member.1.Values"), "{msg}");
    s.aws(&[
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "App/Web",
        "--metric-name",
        "Latency",
        "--start-time",
        &format!("{t0}"),
        "--end-time",
        &format!("{}", t0 + 86400.0),
        "--period",
        "7",
        "--statistics",
        "Sum",
    ])
    .err("InvalidParameterValue");

    // ListMetrics.
    let l = ok(&["cloudwatch", "list-metrics", "--namespace", "App/Web"]).json();
    assert_eq!(l["Metrics"].as_array().unwrap().len(), 2, "{l}");
    let l = ok(&["cloudwatch", "list-metrics", "--dimensions", "Name=Api,Value=put"]).json();
    assert_eq!(l["Metrics"][0]["Dimensions"], json!([{"Name": "Api", "Value": "put"}]), "{l}");
    let l =
        ok(&["cloudwatch", "list-metrics", "--namespace", "App/Web", "--recently-active", "PT3H"])
            .json();
    assert_eq!(l["Metrics"].as_array().unwrap().len(), 2, "{l}");

    // GetMetricData with math.
    let q = json!([
        {"Id": "g", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "App/Web",
            "MetricName": "Latency", "Dimensions": [{"Name": "Api", "Value": "get"}]}, "Period": 60, "Stat": "Sum"}},
        {"Id": "p", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "App/Web",
            "MetricName": "Latency", "Dimensions": [{"Name": "Api", "Value": "put"}]}, "Period": 60, "Stat": "Sum"}},
        {"Id": "both", "Expression": "(g + p) * 2"},
        {"Id": "avg", "Expression": "AVG([g, p])"}
    ]);
    let d = ok(&[
        "cloudwatch",
        "get-metric-data",
        "--metric-data-queries",
        &q.to_string(),
        "--start-time",
        &format!("{t0}"),
        "--end-time",
        &format!("{}", t0 + 120.0),
    ])
    .json();
    let r = d["MetricDataResults"].as_array().unwrap();
    let by = |id: &str| r.iter().find(|x| x["Id"] == id).unwrap_or_else(|| panic!("{id} in {d}"));
    assert_eq!(by("both")["Values"], json!([190.0]), "(90 + 5) * 2 where both have data: {d}");
    assert_eq!(by("avg")["Values"], json!([100.0, 47.5]), "newest first: {d}");
    assert_eq!(r.len(), 2, "ReturnData false hides g and p: {d}");

    // The alarm flow in boto3 (still running, see above) leaves alarm "hot" behind.
    let py = python.wait_with_output().expect("python3");
    assert!(py.status.success(), "boto3: {}", String::from_utf8_lossy(&py.stderr));
    let h = ok(&["cloudwatch", "describe-alarm-history", "--alarm-name", "hot"]).json();
    let items = h["AlarmHistoryItems"].as_array().unwrap();
    assert!(items.iter().any(|i| i["HistoryItemType"] == "ConfigurationUpdate"), "{h}");
    assert!(items.iter().filter(|i| i["HistoryItemType"] == "StateUpdate").count() >= 4, "{h}");
    ok(&["cloudwatch", "delete-alarms", "--alarm-names", "hot"]);
    s.aws(&["cloudwatch", "delete-alarms", "--alarm-names", "hot"]).err("ResourceNotFound");
    assert_eq!(ok(&["cloudwatch", "describe-alarms"]).json()["MetricAlarms"], json!([]));

    // The burning service's CPU, as ECS publishes it.
    let cpu = wait_for(60, "CPUUtilization of the service", || {
        let now = now_s();
        let st = s.aws(&[
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            "AWS/ECS",
            "--metric-name",
            "CPUUtilization",
            "--dimensions",
            "Name=ClusterName,Value=default",
            "Name=ServiceName,Value=burn",
            "--start-time",
            &format!("{}", now - 600.0),
            "--end-time",
            &format!("{}", now + 60.0),
            "--period",
            "60",
            "--statistics",
            "Maximum",
        ]);
        let v = st.json()["Datapoints"]
            .as_array()?
            .iter()
            .filter_map(|d| d["Maximum"].as_f64())
            .fold(0.0, f64::max);
        (v > 50.0).then_some(v)
    });
    eprintln!("CPUUtilization of the burning service: {cpu:.0}%");
    let l = ok(&[
        "cloudwatch",
        "list-metrics",
        "--namespace",
        "AWS/ECS",
        "--metric-name",
        "MemoryUtilization",
    ])
    .json();
    assert!(l["Metrics"].as_array().unwrap().len() >= 2, "per cluster and per service: {l}");

    // Prometheus text.
    let text = http_get(&s.endpoint, "/metrics");
    assert!(text.contains("berth_api_request_duration_seconds_bucket{service=\"monitoring\",operation=\"PutMetricData\""), "{text}");
    assert!(
        text.contains(
            "berth_ecs_task_cpu_utilization_percent{cluster=\"default\",service=\"burn\""
        ),
        "{text}"
    );

    ok(&["ecs", "update-service", "--service", "burn", "--desired-count", "0"]);
    ok(&["ecs", "delete-service", "--service", "burn", "--force"]);
    drop(agent);
}
