//! The scale benchmark's drivers (bench/scale.sh): RunTask throughput from concurrent callers,
//! a service from CreateService to steady state and through a rolling update, and waiting on
//! a fleet's status file. Each prints one JSON line the script reads; each has a time cap and
//! says so rather than hanging on a slow server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::Api;

/// Registers a one-container task definition with no Docker needs beyond its reservation;
/// returns its ARN. `marker` goes into an environment variable (a new revision each time).
pub async fn register_task_definition(
    api: &Api,
    family: &str,
    cpu: u32,
    memory: u32,
    marker: &str,
) -> anyhow::Result<String> {
    let td = json!({
        "family": family,
        "containerDefinitions": [{
            "name": "app", "image": "berth-demo:latest", "essential": true,
            "cpu": cpu, "memory": memory,
            "environment": [{"name": "MARKER", "value": marker}],
        }],
    });
    let out: Value = api
        .ecs("RegisterTaskDefinition", &td)
        .await
        .map_err(|e| anyhow::anyhow!("RegisterTaskDefinition: {e}"))?;
    out["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("RegisterTaskDefinition returned no ARN: {out}"))
}

/// A RunTask load: `callers` closed loops of RunTask with `count` tasks each, until `tasks`
/// tasks are placed or `seconds` pass.
#[derive(Clone, Debug)]
pub struct RunTaskLoad {
    pub cluster: String,
    pub task_definition: String,
    pub count: u64,
    pub callers: usize,
    pub tasks: u64,
    pub seconds: f64,
    pub started_by: String,
}

/// Runs the load; returns the JSON line to print.
pub async fn run_tasks(api: &Api, load: &RunTaskLoad) -> Value {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(load.seconds);
    let remaining = Arc::new(AtomicU64::new(load.tasks));
    let placed = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..load.callers.max(1) {
        let api = api.clone();
        let load = load.clone();
        let remaining = remaining.clone();
        let placed = placed.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            let (mut calls, mut failures, mut errors, mut cut) = (0u64, 0u64, 0u64, false);
            let mut last_error = None;
            let mut last_done = Instant::now();
            loop {
                if tokio::time::Instant::now() >= deadline {
                    cut = true;
                    break;
                }
                let Ok(n) = remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                    (r > 0).then(|| r - r.min(load.count))
                }) else {
                    break;
                };
                let n = n.min(load.count);
                let body = json!({
                    "cluster": load.cluster, "taskDefinition": load.task_definition,
                    "count": n, "startedBy": load.started_by,
                });
                let t0 = Instant::now();
                let call = api.ecs::<_, Value>("RunTask", &body);
                let Ok(r) = tokio::time::timeout_at(deadline, call).await else {
                    cut = true; // the time cap passed during the call: it does not count
                    break;
                };
                calls += 1;
                match r {
                    Ok(v) => {
                        lat.push(t0.elapsed().as_micros() as u64);
                        last_done = Instant::now();
                        let got = v["tasks"].as_array().map_or(0, Vec::len) as u64;
                        let failed = v["failures"].as_array().map_or(0, Vec::len) as u64;
                        placed.fetch_add(got, Ordering::Relaxed);
                        failures += failed;
                        if got < n {
                            remaining.fetch_add(n - got, Ordering::AcqRel);
                            if let Some(f) = v["failures"].get(0) {
                                last_error = Some(format!("placement failure: {f}"));
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        last_error = Some(e.to_string());
                        remaining.fetch_add(n, Ordering::AcqRel);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (lat, calls, failures, errors, cut, last_error, last_done)
        });
    }
    let mut lat = Vec::new();
    let (mut calls, mut failures, mut errors, mut timed_out) = (0u64, 0u64, 0u64, false);
    let mut last_error = None;
    let mut last_done = started;
    while let Some(r) = set.join_next().await {
        let Ok((l, c, f, e, cut, le, done)) = r else { continue };
        lat.extend(l);
        calls += c;
        failures += f;
        errors += e;
        timed_out |= cut;
        last_error = last_error.or(le);
        last_done = last_done.max(done);
    }
    let tasks = placed.load(Ordering::Relaxed);
    let seconds = if timed_out {
        load.seconds
    } else {
        last_done.duration_since(started).as_secs_f64().max(1e-3)
    };
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() { 0.0 } else { lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1e3 }
    };
    json!({
        "op": "runtask",
        "calls": calls,
        "tasks": tasks,
        "target": load.tasks,
        "failures": failures,
        "errors": errors,
        "seconds": seconds,
        "tasks_per_s": tasks as f64 / seconds,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "timed_out": timed_out && tasks < load.tasks,
        "last_error": last_error,
    })
}

/// Reads a fleet's status file (`berth-loadgen fleet --status-file`).
pub fn read_fleet_status(path: &std::path::Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// How many tasks of `task_definition` the fleet runs, by its status file.
fn fleet_running_of(status: Option<&std::path::Path>, task_definition: &str) -> Option<u64> {
    let v = read_fleet_status(status?)?;
    Some(v["runningByTaskDefinition"][task_definition].as_u64().unwrap_or(0))
}

async fn describe_service(api: &Api, cluster: &str, name: &str) -> Option<Value> {
    let v: Value =
        api.ecs("DescribeServices", &json!({"cluster": cluster, "services": [name]})).await.ok()?;
    v["services"].get(0).cloned()
}

/// Whether the service is in ECS's steady state on `task_definition`: one deployment, of it,
/// COMPLETED, runningCount == desiredCount.
fn steady_on(svc: &Value, task_definition: &str) -> bool {
    let deps = svc["deployments"].as_array();
    deps.map(Vec::len) == Some(1)
        && svc["deployments"][0]["taskDefinition"] == task_definition
        && svc["deployments"][0]["rolloutState"] == "COMPLETED"
        && svc["runningCount"] == svc["desiredCount"]
}

/// Polls the service every 250 ms until `done`, at most `cap`; returns (seconds or None on
/// timeout, the last service seen).
async fn wait_service(
    api: &Api,
    cluster: &str,
    name: &str,
    started: Instant,
    cap: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> (Option<f64>, Value) {
    let mut last = Value::Null;
    let mut printed = Instant::now();
    while started.elapsed() < cap {
        if let Some(svc) = describe_service(api, cluster, name).await {
            last = svc;
            if done(&last) {
                return (Some(started.elapsed().as_secs_f64()), last);
            }
        }
        if printed.elapsed() >= Duration::from_secs(10) {
            printed = Instant::now();
            eprintln!(
                "service {name}: {:.0} s, running {} of {}, {} deployment(s)",
                started.elapsed().as_secs_f64(),
                last["runningCount"],
                last["desiredCount"],
                last["deployments"].as_array().map_or(0, Vec::len)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (None, last)
}

/// A service benchmark: CreateService of `count` tasks until steady, then (with `update`) a
/// rolling update to a new revision until the deployment completes and, when a fleet status
/// file is given, the fleet runs no task of the old revision.
#[derive(Clone, Debug)]
pub struct ServiceBench {
    pub cluster: String,
    pub name: String,
    pub family: String,
    pub count: u64,
    pub cpu: u32,
    pub memory: u32,
    pub create_cap: Duration,
    pub update: bool,
    pub update_cap: Duration,
    pub fleet_status: Option<std::path::PathBuf>,
}

/// Runs it; returns one JSON line per phase.
pub async fn service_bench(api: &Api, b: &ServiceBench) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let v1 = register_task_definition(api, &b.family, b.cpu, b.memory, "v1").await?;
    let started = Instant::now();
    let _: Value = api
        .ecs(
            "CreateService",
            &json!({
                "cluster": b.cluster, "serviceName": b.name, "taskDefinition": v1,
                "desiredCount": b.count, "launchType": "EC2",
                "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100},
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("CreateService: {e}"))?;
    let (secs, last) =
        wait_service(api, &b.cluster, &b.name, started, b.create_cap, |s| steady_on(s, &v1)).await;
    out.push(json!({
        "op": "service-create", "tasks": b.count, "seconds": secs,
        "timed_out": secs.is_none(), "cap_seconds": b.create_cap.as_secs(),
        "running": last["runningCount"],
    }));
    if !b.update || secs.is_none() {
        return Ok(out);
    }
    let v2 = register_task_definition(api, &b.family, b.cpu, b.memory, "v2").await?;
    let started = Instant::now();
    let _: Value = api
        .ecs(
            "UpdateService",
            &json!({"cluster": b.cluster, "service": b.name, "taskDefinition": v2}),
        )
        .await
        .map_err(|e| anyhow::anyhow!("UpdateService: {e}"))?;
    let fleet = b.fleet_status.clone();
    let (secs, last) = wait_service(api, &b.cluster, &b.name, started, b.update_cap, |s| {
        steady_on(s, &v2) && fleet_running_of(fleet.as_deref(), &v1).is_none_or(|n| n == 0)
    })
    .await;
    out.push(json!({
        "op": "service-update", "tasks": b.count, "seconds": secs,
        "timed_out": secs.is_none(), "cap_seconds": b.update_cap.as_secs(),
        "running": last["runningCount"],
        "deployments": last["deployments"].as_array().map_or(0, Vec::len),
        "old_tasks_running": fleet_running_of(b.fleet_status.as_deref(), &v1),
    }));
    Ok(out)
}

/// Waits until the fleet's status file shows `field >= at_least`, at most `cap`.
pub async fn wait_fleet(
    path: &std::path::Path,
    field: &str,
    at_least: u64,
    cap: Duration,
) -> Value {
    let started = Instant::now();
    let mut last = Value::Null;
    loop {
        if let Some(v) = read_fleet_status(path) {
            last = v;
            if last[field].as_u64().is_some_and(|n| n >= at_least) {
                break;
            }
        }
        if started.elapsed() >= cap {
            return json!({
                "op": "wait-fleet", "field": field, "target": at_least, "timed_out": true,
                "seconds": started.elapsed().as_secs_f64(), "value": last[field], "status": last,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    json!({
        "op": "wait-fleet", "field": field, "target": at_least, "timed_out": false,
        "seconds": started.elapsed().as_secs_f64(), "value": last[field],
    })
}
