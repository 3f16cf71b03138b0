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
//! * `berth_agent_stats_reports_total`: usage reports received from agents;
//! * the scheduler: `berth_scheduler_placements_total` per `result` (`placed`: tasks placed,
//!   `failed`: placement failures answered, `error`: calls that answered an error) and
//!   `berth_scheduler_placement_duration_seconds` (histogram, one observation per RunTask,
//!   StartTask or service placement, from the decision to the commit);
//! * reconcile loops, per `controller` and `region`: `berth_controller_pass_duration_seconds`
//!   (histogram), `berth_controller_passes_total` per `result` (`ok`, `failed`) and
//!   `berth_controller_lag_seconds` (gauge: seconds since the loop last finished a pass; a
//!   loop that stalls or died shows it growing past its period). Controllers: `service`,
//!   `application-autoscaling`, `autoscaling`, `load-balancer-data-plane`.
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
    placement_latency: Histogram,
    /// result -> count.
    placements: BTreeMap<&'static str, u64>,
    /// (controller, region) -> pass durations.
    passes: BTreeMap<(&'static str, String), Histogram>,
    /// (controller, region, result) -> passes.
    pass_results: BTreeMap<(&'static str, String, &'static str), u64>,
    /// (controller, region) -> when its last pass ended.
    last_pass: BTreeMap<(&'static str, String), Instant>,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, b) in BOUNDS.iter().enumerate() {
            if seconds <= *b {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// The histogram's lines for `name` with labels `l` (`a="b",...`, may be empty).
    fn render(&self, o: &mut String, name: &str, l: &str) {
        let sep = if l.is_empty() { "" } else { "," };
        for (i, b) in BOUNDS.iter().enumerate() {
            let _ = writeln!(o, "{name}_bucket{{{l}{sep}le=\"{b}\"}} {}", self.buckets[i]);
        }
        let _ = writeln!(o, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {}", self.count);
        let braced = if l.is_empty() { String::new() } else { format!("{{{l}}}") };
        let _ = writeln!(o, "{name}_sum{braced} {}", self.sum);
        let _ = writeln!(o, "{name}_count{braced} {}", self.count);
    }
}

/// Records one placement call: `placed` tasks placed and `failed` failures answered, or
/// `None` when it answered an error; `seconds` it took.
pub(crate) fn observe_placement(outcome: Option<(usize, usize)>, seconds: f64) {
    let mut r = registry();
    r.placement_latency.observe(seconds);
    match outcome {
        Some((placed, failed)) => {
            *r.placements.entry("placed").or_default() += placed as u64;
            *r.placements.entry("failed").or_default() += failed as u64;
        }
        None => *r.placements.entry("error").or_default() += 1,
    }
}

/// Records one pass of reconcile loop `controller` in `region`, begun at `started`.
pub(crate) fn observe_pass(controller: &'static str, region: &str, started: Instant, ok: bool) {
    let now = Instant::now();
    let mut r = registry();
    let key = (controller, region.to_string());
    r.passes.entry(key.clone()).or_default().observe((now - started).as_secs_f64());
    let result = if ok { "ok" } else { "failed" };
    *r.pass_results.entry((controller, region.to_string(), result)).or_default() += 1;
    r.last_pass.insert(key, now);
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records one API request.
pub(crate) fn observe_request(service: &str, operation: &str, status: u16, seconds: f64) {
    let mut r = registry();
    r.latency.entry((service.to_string(), operation.to_string())).or_default().observe(seconds);
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
    o.push_str("# HELP berth_scheduler_placements_total Tasks the scheduler placed, placement failures it answered, calls that failed.\n");
    o.push_str("# TYPE berth_scheduler_placements_total counter\n");
    for result in ["placed", "failed", "error"] {
        let n = r.placements.get(result).copied().unwrap_or(0);
        let _ = writeln!(o, "berth_scheduler_placements_total{{result=\"{result}\"}} {n}");
    }
    o.push_str("# HELP berth_scheduler_placement_duration_seconds Time to decide and commit one placement.\n");
    o.push_str("# TYPE berth_scheduler_placement_duration_seconds histogram\n");
    r.placement_latency.render(&mut o, "berth_scheduler_placement_duration_seconds", "");
    o.push_str(
        "# HELP berth_controller_pass_duration_seconds Duration of a reconcile loop's pass.\n",
    );
    o.push_str("# TYPE berth_controller_pass_duration_seconds histogram\n");
    for ((c, region), h) in &r.passes {
        let l = format!("controller=\"{c}\",region=\"{}\"", label(region));
        h.render(&mut o, "berth_controller_pass_duration_seconds", &l);
    }
    o.push_str("# HELP berth_controller_passes_total Reconcile loop passes by result.\n");
    o.push_str("# TYPE berth_controller_passes_total counter\n");
    for ((c, region, result), n) in &r.pass_results {
        let _ = writeln!(
            o,
            "berth_controller_passes_total{{controller=\"{c}\",region=\"{}\",result=\"{result}\"}} {n}",
            label(region)
        );
    }
    o.push_str("# HELP berth_controller_lag_seconds Seconds since a reconcile loop last finished a pass.\n");
    o.push_str("# TYPE berth_controller_lag_seconds gauge\n");
    for ((c, region), at) in &r.last_pass {
        let _ = writeln!(
            o,
            "berth_controller_lag_seconds{{controller=\"{c}\",region=\"{}\"}} {}",
            label(region),
            at.elapsed().as_secs_f64()
        );
    }
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

    /// The value of the line that starts with `series ` (`None`: no such line).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn placements_and_reconcile_passes_are_counted_and_timed() {
        // The registry is process-wide (other tests place tasks too): counters only grow.
        let before = value(&super::render(), "berth_scheduler_placements_total{result=\"placed\"}")
            .unwrap_or(0.0);
        super::observe_placement(Some((3, 1)), 0.02);
        super::observe_placement(None, 0.001);
        // A region no other test uses: exact figures.
        let started = std::time::Instant::now() - std::time::Duration::from_millis(30);
        super::observe_pass("service", "test-lag-1", started, true);
        super::observe_pass("service", "test-lag-1", std::time::Instant::now(), false);
        let t = super::render();
        let placed = value(&t, "berth_scheduler_placements_total{result=\"placed\"}").unwrap();
        assert!(placed >= before + 3.0, "{placed} after {before}");
        assert!(value(&t, "berth_scheduler_placements_total{result=\"error\"}").unwrap() >= 1.0);
        assert!(value(&t, "berth_scheduler_placement_duration_seconds_count").unwrap() >= 2.0);
        assert!(t.contains("# TYPE berth_scheduler_placement_duration_seconds histogram"));
        let l = "controller=\"service\",region=\"test-lag-1\"";
        let series = |name: &str, extra: &str| value(&t, &format!("{name}{{{l}{extra}}}"));
        assert_eq!(series("berth_controller_pass_duration_seconds_count", ""), Some(2.0));
        assert_eq!(
            series("berth_controller_pass_duration_seconds_bucket", ",le=\"0.01\""),
            Some(1.0)
        );
        assert_eq!(
            series("berth_controller_pass_duration_seconds_bucket", ",le=\"0.05\""),
            Some(2.0)
        );
        assert_eq!(series("berth_controller_passes_total", ",result=\"ok\""), Some(1.0));
        assert_eq!(series("berth_controller_passes_total", ",result=\"failed\""), Some(1.0));
        let lag = series("berth_controller_lag_seconds", "").unwrap();
        assert!((0.0..5.0).contains(&lag), "{lag}");
    }
}
