//! The server's Prometheus text endpoint, `GET /metrics` (issue #15).
//!
//! Contract: the text exposition format 0.0.4, unauthenticated (as Prometheus scrapes it; it
//! names operations, clusters, services and tasks, no secrets):
//! * `berth_api_request_duration_seconds` (histogram) per `service` (SigV4 signing name) and
//!   `operation` (`X-Amz-Target`'s operation; form-encoded requests show `form`), with
//!   `berth_api_requests_total` per the same and `code` (HTTP status);
//! * `berth_ecs_task_cpu_utilization_percent` and `berth_ecs_task_memory_utilization_percent`
//!   per `cluster`, `service` and `task`, from the latest agent sample (tasks not sampled for
//!   five minutes drop out);
//! * `berth_agent_stats_reports_total`: usage reports received from agents.
//!
//! Figures live in a process-wide registry (one server per process in production; tests
//! that start several servers in one process see their sum).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

/// Bucket bounds of the latency histogram, in seconds.
const BOUNDS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    latency: BTreeMap<(String, String), Histogram>,
    requests: BTreeMap<(String, String, u16), u64>,
    /// (cluster, service, task) -> (cpu %, memory %, when).
    tasks: BTreeMap<(String, String, String), (f64, f64, Instant)>,
    stats_reports: u64,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records one API request.
pub(crate) fn observe_request(service: &str, operation: &str, status: u16, seconds: f64) {
    let mut r = registry();
    let h = r.latency.entry((service.to_string(), operation.to_string())).or_default();
    for (i, b) in BOUNDS.iter().enumerate() {
        if seconds <= *b {
            h.buckets[i] += 1;
        }
    }
    h.count += 1;
    h.sum += seconds;
    *r.requests.entry((service.to_string(), operation.to_string(), status)).or_default() += 1;
}

/// Records one task's latest usage.
pub(crate) fn observe_task(
    cluster: &str,
    task: &berth_wire::ecs::Task,
    usage: &berth_agent_protocol::TaskUsage,
) {
    let samples = super::ecs_metrics::task_samples(cluster, task, false, usage);
    let get = |name: &str| {
        samples
            .iter()
            .find(|s| s.key.name == name && s.key.dimensions.len() == 1)
            .map_or(0.0, |s| s.agg.sum)
    };
    let service = task
        .group
        .as_deref()
        .and_then(|g| g.strip_prefix("service:"))
        .unwrap_or_default()
        .to_string();
    let mut r = registry();
    r.stats_reports += 1;
    r.tasks.insert(
        (cluster.to_string(), service, usage.task_arn.clone()),
        (get("CPUUtilization"), get("MemoryUtilization"), Instant::now()),
    );
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text.
pub(crate) fn render() -> String {
    let mut r = registry();
    r.tasks.retain(|_, (_, _, at)| at.elapsed().as_secs() < 300);
    let mut o = String::new();
    o.push_str("# HELP berth_api_request_duration_seconds API request latency.\n");
    o.push_str("# TYPE berth_api_request_duration_seconds histogram\n");
    for ((svc, op), h) in &r.latency {
        let l = format!("service=\"{}\",operation=\"{}\"", label(svc), label(op));
        for (i, b) in BOUNDS.iter().enumerate() {
            let _ = writeln!(
                o,
                "berth_api_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {}",
                h.buckets[i]
            );
        }
        let _ =
            writeln!(o, "berth_api_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(o, "berth_api_request_duration_seconds_sum{{{l}}} {}", h.sum);
        let _ = writeln!(o, "berth_api_request_duration_seconds_count{{{l}}} {}", h.count);
    }
    o.push_str("# HELP berth_api_requests_total API requests by answer status.\n");
    o.push_str("# TYPE berth_api_requests_total counter\n");
    for ((svc, op, code), n) in &r.requests {
        let _ = writeln!(
            o,
            "berth_api_requests_total{{service=\"{}\",operation=\"{}\",code=\"{code}\"}} {n}",
            label(svc),
            label(op)
        );
    }
    o.push_str("# HELP berth_ecs_task_cpu_utilization_percent A task's CPU use, percent of its reservation.\n");
    o.push_str("# TYPE berth_ecs_task_cpu_utilization_percent gauge\n");
    for ((c, s, t), (cpu, _, _)) in &r.tasks {
        let _ = writeln!(
            o,
            "berth_ecs_task_cpu_utilization_percent{{cluster=\"{}\",service=\"{}\",task=\"{}\"}} {cpu}",
            label(c),
            label(s),
            label(t)
        );
    }
    o.push_str("# HELP berth_ecs_task_memory_utilization_percent A task's memory use, percent of its reservation.\n");
    o.push_str("# TYPE berth_ecs_task_memory_utilization_percent gauge\n");
    for ((c, s, t), (_, mem, _)) in &r.tasks {
        let _ = writeln!(
            o,
            "berth_ecs_task_memory_utilization_percent{{cluster=\"{}\",service=\"{}\",task=\"{}\"}} {mem}",
            label(c),
            label(s),
            label(t)
        );
    }
    o.push_str("# HELP berth_agent_stats_reports_total Task usage samples received from agents.\n");
    o.push_str("# TYPE berth_agent_stats_reports_total counter\n");
    let _ = writeln!(o, "berth_agent_stats_reports_total {}", r.stats_reports);
    o
}

/// `GET /metrics`.
pub(crate) async fn serve() -> axum::response::Response {
    let mut resp = axum::response::Response::new(axum::body::Body::from(render()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Axum middleware recording every request at `/` into the latency histogram.
pub(crate) async fn measure(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path() != "/" {
        return next.run(req).await;
    }
    let h = req.headers();
    let service = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unsigned")
        .to_string();
    let operation = h
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split_once('.').map(|(_, op)| op))
        .unwrap_or("form")
        .to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    observe_request(&service, &operation, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_text_holds_histograms_and_counters() {
        super::observe_request("ecs", "ListClusters", 200, 0.003);
        let t = super::render();
        assert!(t.contains(
            "berth_api_request_duration_seconds_bucket{service=\"ecs\",operation=\"ListClusters\",le=\"0.005\"}"
        ));
        assert!(t.contains(
            "berth_api_requests_total{service=\"ecs\",operation=\"ListClusters\",code=\"200\"}"
        ));
        assert!(t.contains("# TYPE berth_api_request_duration_seconds histogram"));
    }
}
