//! CloudWatch Logs metric filters (issue #15), end to end against the real `berth server`
//! with the real AWS CLI (and boto3 for the 100-per-group quota): PutMetricFilter and its
//! validation, DescribeMetricFilters (by group and prefix, by metric across groups, in pages),
//! TestMetricFilter (JSON and space-delimited patterns), events put with PutLogEvents read
//! back as datapoints with `get-metric-statistics` (a count, a value with a dimension, a
//! space-delimited field, the default value of a minute without a match), an alarm on a
//! filter's metric going to ALARM, DeleteMetricFilter, and filters deleted with their group.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_testkit::ServerProc;
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn put(s: &ServerProc, group: &str, stream: &str, events: &[(i64, &str)]) {
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
}

/// `get-metric-statistics` of one metric around `at_ms`: (timestamp, statistic) pairs.
fn stats(
    s: &ServerProc,
    name: &str,
    stat: &str,
    dims: &[&str],
    from_ms: i64,
    to_ms: i64,
) -> Vec<(String, f64)> {
    let (from, to) = ((from_ms / 1000).to_string(), (to_ms / 1000).to_string());
    let mut args = vec![
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "Berth/Test",
        "--metric-name",
        name,
        "--start-time",
        &from,
        "--end-time",
        &to,
        "--period",
        "60",
        "--statistics",
        stat,
    ];
    if !dims.is_empty() {
        args.push("--dimensions");
        args.extend_from_slice(dims);
    }
    let r = s.aws(&args);
    let v = r.json();
    let mut points: Vec<(String, f64)> = v["Datapoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no datapoints in {v}"))
        .iter()
        .map(|d| (d["Timestamp"].to_string(), d[stat].as_f64().unwrap()))
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    points
}

fn total(points: &[(String, f64)]) -> f64 {
    points.iter().map(|p| p.1).sum()
}

#[test]
fn metric_filters_with_the_aws_cli() {
    let s = ServerProc::start(bin()).expect("server");
    let ok = |args: &[&str]| {
        let r = s.aws(args);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r
    };
    for g in ["/app", "/other"] {
        ok(&["logs", "create-log-group", "--log-group-name", g]);
        ok(&["logs", "create-log-stream", "--log-group-name", g, "--log-stream-name", "s"]);
    }
    let put_filter = |group: &str, name: &str, pattern: &str, t: &str| {
        s.aws(&[
            "logs",
            "put-metric-filter",
            "--log-group-name",
            group,
            "--filter-name",
            name,
            "--filter-pattern",
            pattern,
            "--metric-transformations",
            t,
        ])
    };
    let r = put_filter(
        "/app",
        "errors",
        "{ $.status = 500 }",
        "metricName=Errors,metricNamespace=Berth/Test,metricValue=1,defaultValue=0,unit=Count",
    );
    assert!(r.ok, "{}", r.stderr);
    let r = put_filter(
        "/app",
        "latency",
        "{ $.latency = * }",
        r#"[{"metricName":"Latency","metricNamespace":"Berth/Test","metricValue":"$.latency","dimensions":{"Path":"$.path"},"unit":"Milliseconds"}]"#,
    );
    assert!(r.ok, "{}", r.stderr);
    let r = put_filter(
        "/app",
        "not-found-bytes",
        "[ip, ..., status = 404, bytes]",
        "metricName=NotFoundBytes,metricNamespace=Berth/Test,metricValue=$bytes",
    );
    assert!(r.ok, "{}", r.stderr);
    let r = put_filter(
        "/other",
        "errors",
        "ERROR",
        "metricName=Errors,metricNamespace=Berth/Test,metricValue=1",
    );
    assert!(r.ok, "{}", r.stderr);

    // Bad filters are refused naming what is wrong.
    let t1 = "metricName=M,metricNamespace=N,metricValue=1";
    for (group, pattern, t, code, why) in [
        ("/nope", "ERROR", t1, "ResourceNotFoundException", "log group does not exist"),
        ("/app", "{ $.a = ", t1, "InvalidParameterException", "filterPattern"),
        (
            "/app",
            "ERROR",
            "metricName=M,metricNamespace=N,metricValue=$.x",
            "InvalidParameterException",
            "metricValue",
        ),
        (
            "/app",
            "{ $.a = 1 }",
            "metricName=M,metricNamespace=N,metricValue=1,defaultValue=0,dimensions={A=$.a}",
            "InvalidParameterException",
            "defaultValue",
        ),
        (
            "/app",
            "ERROR",
            "metricName=M:x,metricNamespace=N,metricValue=1",
            "InvalidParameterException",
            "metricName",
        ),
    ] {
        let e = put_filter(group, "bad", pattern, t);
        assert!(e.err(code).contains(why), "{pattern} / {t}: {}", e.stderr);
    }
    let two = r#"[{"metricName":"A","metricNamespace":"N","metricValue":"1"},{"metricName":"B","metricNamespace":"N","metricValue":"1"}]"#;
    let e = put_filter("/app", "bad", "ERROR", two);
    assert!(e.err("InvalidParameterException").contains("metricTransformations"));
    let e = s.aws(&[
        "logs",
        "put-metric-filter",
        "--log-group-name",
        "/app",
        "--filter-name",
        "bad",
        "--filter-pattern",
        "ERROR",
        "--metric-transformations",
        t1,
        "--apply-on-transformed-logs",
    ]);
    assert!(
        !e.ok
            && e.stderr.contains("InvalidParameterException")
            && e.stderr.contains("applyOnTransformedLogs"),
        "{}",
        e.stderr
    );

    // Describe: one group's filters (in pages of one), by prefix, by metric across groups.
    let d =
        ok(&["logs", "describe-metric-filters", "--log-group-name", "/app", "--page-size", "1"])
            .json();
    let names: Vec<&str> = d["metricFilters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filterName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["errors", "latency", "not-found-bytes"], "{d}");
    let first = &d["metricFilters"][0];
    assert_eq!(first["filterPattern"], "{ $.status = 500 }");
    assert_eq!(first["logGroupName"], "/app");
    assert!(first["creationTime"].as_i64().unwrap() > 0, "{first}");
    assert_eq!(
        first["metricTransformations"],
        json!([{"metricName": "Errors", "metricNamespace": "Berth/Test", "metricValue": "1",
                "defaultValue": 0.0, "unit": "Count"}])
    );
    assert_eq!(
        d["metricFilters"][1]["metricTransformations"][0]["dimensions"],
        json!({"Path": "$.path"})
    );
    let page =
        ok(&["logs", "describe-metric-filters", "--log-group-name", "/app", "--max-items", "2"])
            .json();
    assert_eq!(page["metricFilters"].as_array().unwrap().len(), 2, "{page}");
    let token = page["NextToken"].as_str().expect("a token for the rest").to_string();
    let rest = ok(&[
        "logs",
        "describe-metric-filters",
        "--log-group-name",
        "/app",
        "--max-items",
        "2",
        "--starting-token",
        &token,
    ])
    .json();
    assert_eq!(rest["metricFilters"][0]["filterName"], "not-found-bytes", "{rest}");
    assert!(rest.get("NextToken").is_none(), "{rest}");
    let by_prefix = ok(&[
        "logs",
        "describe-metric-filters",
        "--log-group-name",
        "/app",
        "--filter-name-prefix",
        "lat",
    ])
    .json();
    assert_eq!(by_prefix["metricFilters"].as_array().unwrap().len(), 1, "{by_prefix}");
    let by_metric = ok(&[
        "logs",
        "describe-metric-filters",
        "--metric-name",
        "Errors",
        "--metric-namespace",
        "Berth/Test",
    ])
    .json();
    let groups: Vec<&str> = by_metric["metricFilters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["logGroupName"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["/app", "/other"], "{by_metric}");
    s.aws(&["logs", "describe-metric-filters", "--metric-name", "Errors"])
        .err("InvalidParameterException");
    let lg = ok(&["logs", "describe-log-groups", "--log-group-name-prefix", "/app"]).json();
    assert_eq!(lg["logGroups"][0]["metricFilterCount"], 3, "{lg}");

    // TestMetricFilter.
    let t = ok(&[
        "logs",
        "test-metric-filter",
        "--filter-pattern",
        "{ $.status = 500 }",
        "--log-event-messages",
        r#"{"status":200}"#,
        r#"{"status":500,"path":"/a"}"#,
        "not json",
    ])
    .json();
    assert_eq!(
        t["matches"],
        json!([{"eventNumber": 2, "eventMessage": r#"{"status":500,"path":"/a"}"#,
                "extractedValues": {"$.status": "500"}}])
    );
    let t = ok(&[
        "logs",
        "test-metric-filter",
        "--filter-pattern",
        "[ip, ..., status = 4*, bytes]",
        "--log-event-messages",
        r#"10.0.0.1 - - [02/Dec/2026:10:00:00 +0000] "GET /x HTTP/1.1" 404 512"#,
        r#"10.0.0.1 - - [02/Dec/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 99"#,
    ])
    .json();
    assert_eq!(t["matches"][0]["eventNumber"], 1, "{t}");
    assert_eq!(
        t["matches"][0]["extractedValues"],
        json!({"$ip": "10.0.0.1", "$status": "404", "$bytes": "512"})
    );
    assert_eq!(t["matches"].as_array().unwrap().len(), 1, "{t}");
    s.aws(&["logs", "test-metric-filter", "--filter-pattern", "[a,", "--log-event-messages", "x"])
        .err("InvalidParameterException");

    // Ingest: the filters' datapoints are in the metric store when put-log-events answers.
    let now = now_ms();
    let at = now - now.rem_euclid(60_000) - 120_000 + 5_000; // inside a minute two ago
    put(
        &s,
        "/app",
        "s",
        &[
            (at, r#"{"status":500,"path":"/a","latency":10}"#),
            (at + 1, r#"{"status":500,"path":"/a","latency":30}"#),
            (at + 2, r#"{"status":200,"path":"/b","latency":7}"#),
            (at + 3, r#"{"status":500}"#),
            (at + 4, r#"10.1.1.1 - - [x] "GET /gone" 404 2048"#),
            (at + 5, r#"10.1.1.2 - - [x] "GET /" 200 4096"#),
        ],
    );
    let (from, to) = (at - 600_000, now + 120_000);
    let errors = stats(&s, "Errors", "Sum", &[], from, to);
    assert_eq!(total(&errors), 3.0, "{errors:?}");
    let lat = stats(&s, "Latency", "Average", &["Name=Path,Value=/a"], from, to);
    assert_eq!(lat.iter().map(|p| p.1).collect::<Vec<_>>(), [20.0], "{lat:?}");
    let lat_b = stats(&s, "Latency", "Sum", &["Name=Path,Value=/b"], from, to);
    assert_eq!(total(&lat_b), 7.0, "{lat_b:?}");
    let bytes = stats(&s, "NotFoundBytes", "Sum", &[], from, to);
    assert_eq!(total(&bytes), 2048.0, "{bytes:?}");
    // A minute with events but no match publishes the default value (0) once.
    let quiet = at - 240_000;
    put(&s, "/app", "s", &[(quiet, r#"{"status":200}"#), (quiet + 1, "hello")]);
    let q = stats(&s, "Errors", "SampleCount", &[], quiet - 5_000, quiet + 55_000);
    assert_eq!(q.iter().map(|p| p.1).collect::<Vec<_>>(), [1.0], "{q:?}");
    assert_eq!(total(&stats(&s, "Errors", "Sum", &[], quiet - 5_000, quiet + 55_000)), 0.0);
    // The ERROR filter of /other publishes to the same metric.
    put(&s, "/other", "s", &[(at, "ERROR one"), (at + 1, "fine")]);
    assert_eq!(total(&stats(&s, "Errors", "Sum", &[], from, to)), 4.0);

    // An alarm on the filter's metric goes to ALARM as errors keep coming.
    ok(&[
        "cloudwatch",
        "put-metric-alarm",
        "--alarm-name",
        "app-errors",
        "--namespace",
        "Berth/Test",
        "--metric-name",
        "Errors",
        "--statistic",
        "Sum",
        "--period",
        "60",
        "--evaluation-periods",
        "1",
        "--threshold",
        "2",
        "--comparison-operator",
        "GreaterThanOrEqualToThreshold",
    ]);
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let t = now_ms();
        put(&s, "/app", "s", &[(t, r#"{"status":500}"#), (t + 1, r#"{"status":500}"#)]);
        let a = ok(&["cloudwatch", "describe-alarms", "--alarm-names", "app-errors"]).json();
        if a["MetricAlarms"][0]["StateValue"] == "ALARM" {
            break;
        }
        assert!(Instant::now() < deadline, "the alarm never fired: {a}");
        std::thread::sleep(Duration::from_secs(2));
    }
    ok(&["cloudwatch", "delete-alarms", "--alarm-names", "app-errors"]);

    // Delete one filter; deleting the group deletes the rest.
    ok(&["logs", "delete-metric-filter", "--log-group-name", "/app", "--filter-name", "latency"]);
    s.aws(&[
        "logs",
        "delete-metric-filter",
        "--log-group-name",
        "/app",
        "--filter-name",
        "latency",
    ])
    .err("ResourceNotFoundException");
    let d = ok(&["logs", "describe-metric-filters", "--log-group-name", "/app"]).json();
    assert_eq!(d["metricFilters"].as_array().unwrap().len(), 2, "{d}");
    ok(&["logs", "delete-log-group", "--log-group-name", "/app"]);
    s.aws(&["logs", "describe-metric-filters", "--log-group-name", "/app"])
        .err("ResourceNotFoundException");
    ok(&["logs", "create-log-group", "--log-group-name", "/app"]);
    let d = ok(&["logs", "describe-metric-filters", "--log-group-name", "/app"]).json();
    assert_eq!(d["metricFilters"], json!([]), "{d}");

    // The quota: 100 filters per group (boto3, for speed).
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("quota.py");
    std::fs::write(
        &script,
        r#"
import boto3, botocore.exceptions, os
c = boto3.client("logs", endpoint_url=os.environ["BERTH_ENDPOINT"])
t = [{"metricName": "M", "metricNamespace": "Berth/Test", "metricValue": "1"}]
for i in range(100):
    c.put_metric_filter(logGroupName="/app", filterName=f"f{i:03}", filterPattern="ERROR",
                        metricTransformations=t)
c.put_metric_filter(logGroupName="/app", filterName="f050", filterPattern="WARN",
                    metricTransformations=t)
try:
    c.put_metric_filter(logGroupName="/app", filterName="extra", filterPattern="ERROR",
                        metricTransformations=t)
    raise SystemExit("the 101st filter was accepted")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "LimitExceededException", e.response
print("ok")
"#,
    )
    .unwrap();
    let out = s.python(&script, &[]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
