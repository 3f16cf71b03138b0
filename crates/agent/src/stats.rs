//! The resource usage sampler (issue #15): every [`interval`] it reads each running container
//! of this instance's tasks through [`Runtime::usage`] and reports the CPU and memory each
//! task used to the server ([`berth_agent_protocol::STATS_PATH`]), which publishes them as
//! CloudWatch's `AWS/ECS` metrics.
//!
//! Contract:
//! * CPU is the container's CPU time over the interval between two samples, in ECS CPU units
//!   (1024 = one core busy all the time); a container seen for the first time is reported on
//!   the next sample (one sample gives no rate);
//! * memory is the current use without the page cache;
//! * a failed report is dropped (a missing datapoint), never retried or queued;
//! * the agent's own figures (samples, reports, failures, the latest usage per task) are
//!   served as Prometheus text by [`render`] at the metadata endpoint's `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use berth_agent_protocol::{ContainerUsage, StatsReport, TaskUsage};
use berth_runtime::Runtime;

use crate::control::ControlPlane;
use crate::spec::{LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN};

/// The sampling interval: `BERTH_STATS_INTERVAL_SECS` (1 to 300), else 10 s.
pub fn interval() -> Duration {
    let secs = std::env::var("BERTH_STATS_INTERVAL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (1..=300).contains(s))
        .unwrap_or(10);
    Duration::from_secs(secs)
}

#[derive(Default)]
struct Figures {
    samples: u64,
    reports: u64,
    report_failures: u64,
    /// task ARN -> (CPU units, memory bytes).
    tasks: BTreeMap<String, (f64, u64)>,
}

static FIGURES: LazyLock<Mutex<Figures>> = LazyLock::new(Mutex::default);

fn figures() -> std::sync::MutexGuard<'static, Figures> {
    FIGURES.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The agent's figures as Prometheus text (format 0.0.4).
pub fn render() -> String {
    let f = figures();
    let mut o = String::new();
    for (name, help, v) in [
        ("berth_agent_stats_samples_total", "Usage samples taken.", f.samples),
        ("berth_agent_stats_reports_total", "Usage reports delivered to the server.", f.reports),
        (
            "berth_agent_stats_report_failures_total",
            "Usage reports the server did not take.",
            f.report_failures,
        ),
    ] {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    o.push_str("# HELP berth_agent_task_cpu_units CPU units a task used over the last interval (1024 = one core).\n");
    o.push_str("# TYPE berth_agent_task_cpu_units gauge\n");
    for (t, (cpu, _)) in &f.tasks {
        let _ = writeln!(o, "berth_agent_task_cpu_units{{task=\"{t}\"}} {cpu}");
    }
    o.push_str("# HELP berth_agent_task_memory_bytes Memory a task uses.\n");
    o.push_str("# TYPE berth_agent_task_memory_bytes gauge\n");
    for (t, (_, mem)) in &f.tasks {
        let _ = writeln!(o, "berth_agent_task_memory_bytes{{task=\"{t}\"}} {mem}");
    }
    o
}

/// The sampler of one registration.
pub struct Sampler {
    pub runtime: Arc<dyn Runtime>,
    pub control: Arc<dyn ControlPlane>,
    pub cluster: String,
    pub instance_arn: String,
    pub interval: Duration,
}

impl Sampler {
    /// Samples and reports until the task is aborted.
    pub async fn run(self) {
        let mut previous: HashMap<String, (u64, Instant)> = HashMap::new();
        loop {
            tokio::time::sleep(self.interval).await;
            let tasks = self.sample(&mut previous).await;
            if tasks.is_empty() {
                continue;
            }
            let report = StatsReport {
                container_instance_arn: self.instance_arn.clone(),
                cluster: self.cluster.clone(),
                tasks,
            };
            let ok = self.control.report_stats(&report).await;
            let mut f = figures();
            match ok {
                Ok(()) => f.reports += 1,
                Err(e) => {
                    f.report_failures += 1;
                    tracing::debug!(error = %e, "usage report not taken");
                }
            }
        }
    }

    /// One sample of every running container of this instance, by task. `previous` holds each
    /// container's CPU time at its last sample.
    pub async fn sample(&self, previous: &mut HashMap<String, (u64, Instant)>) -> Vec<TaskUsage> {
        let labels = [(LABEL_INSTANCE.to_string(), self.instance_arn.clone())];
        let Ok(found) = self.runtime.list(&labels).await else { return Vec::new() };
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let mut by_task: BTreeMap<String, Vec<ContainerUsage>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for c in found.into_iter().filter(|c| c.state.is_running()) {
            let (Some(task), Some(name)) =
                (c.labels.get(LABEL_TASK_ARN), c.labels.get(LABEL_CONTAINER_NAME))
            else {
                continue;
            };
            let Ok(Some(u)) = self.runtime.usage(&c.id).await else { continue };
            seen.insert(c.id.clone());
            let at = Instant::now();
            let before = previous.insert(c.id.clone(), (u.cpu_total_ns, at));
            let Some((ns, then)) = before else { continue };
            let elapsed = at.duration_since(then).as_nanos().max(1) as f64;
            let cpu_units = u.cpu_total_ns.saturating_sub(ns) as f64 / elapsed * 1024.0;
            by_task.entry(task.clone()).or_default().push(ContainerUsage {
                name: name.clone(),
                cpu_units,
                memory_bytes: u.memory_bytes,
            });
        }
        previous.retain(|id, _| seen.contains(id));
        let mut f = figures();
        f.samples += 1;
        f.tasks.clear();
        by_task
            .into_iter()
            .map(|(task_arn, containers)| {
                let cpu = containers.iter().map(|c| c.cpu_units).sum();
                let mem = containers.iter().map(|c| c.memory_bytes).sum();
                f.tasks.insert(task_arn.clone(), (cpu, mem));
                TaskUsage { task_arn, timestamp: now_ms, containers }
            })
            .collect()
    }
}
