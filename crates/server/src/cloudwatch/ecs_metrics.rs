//! ECS's own metrics from the agents' usage samples ([`berth_agent_protocol::STATS_PATH`]).
//!
//! Contract, per reported task (the caller checked each is the reporting instance's own):
//! * `AWS/ECS` `CPUUtilization` and `MemoryUtilization` per {ClusterName, ServiceName} for a
//!   service's task (its group `service:NAME`) and per {ClusterName} for every task, as ECS
//!   computes them: the units used as a percent of the units reserved, the task-level `cpu` /
//!   `memory` when the task has one, else the sum of its containers' (`memory`, or
//!   `memoryReservation`). A task that reserves no CPU counts against one vCPU (1024 units),
//!   one without any memory figure against the memory it uses (never a division by zero);
//! * with the cluster's `containerInsights` setting on, `ECS/ContainerInsights` task metrics
//!   too: `CpuUtilized`, `CpuReserved`, `MemoryUtilized`, `MemoryReserved` (MiB) per
//!   {ClusterName, TaskDefinitionFamily} and per {ClusterName, ServiceName} for a service;
//! * every datapoint is stored at 1-second resolution with the sample's timestamp, so both
//!   1-minute periods and finer ones answer.

use std::sync::Arc;

use berth_agent_protocol::{StatsReport, TaskUsage};
use berth_metricstore::{Agg, MetricKey, Sample};

use super::CloudWatch;

/// The units a task reserves: (CPU units, memory MiB).
fn reserved(task: &berth_wire::ecs::Task) -> (f64, f64) {
    let num = |s: &Option<String>| s.as_deref().and_then(|v| v.trim().parse::<f64>().ok());
    let containers = task.containers.as_deref().unwrap_or_default();
    let cpu = num(&task.cpu)
        .unwrap_or_else(|| containers.iter().filter_map(|c| num(&c.cpu)).sum::<f64>());
    let mem = num(&task.memory).unwrap_or_else(|| {
        containers
            .iter()
            .filter_map(|c| num(&c.memory).or_else(|| num(&c.memory_reservation)))
            .sum()
    });
    (if cpu > 0.0 { cpu } else { 1024.0 }, mem)
}

fn sample(ns: &str, name: &str, dims: &[(&str, &str)], at_ms: i64, v: f64, unit: &str) -> Sample {
    let dims: Vec<(String, String)> =
        dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut agg = Agg::value(v, 1.0);
    agg.unit = Some(unit.to_string());
    Sample { key: MetricKey::new(ns, name, &dims), at_ms, resolution_secs: 1, agg }
}

/// The datapoints one task's usage yields.
pub(crate) fn task_samples(
    cluster: &str,
    task: &berth_wire::ecs::Task,
    insights: bool,
    usage: &TaskUsage,
) -> Vec<Sample> {
    let (cpu_reserved, mem_reserved) = reserved(task);
    let cpu_used: f64 = usage.containers.iter().map(|c| c.cpu_units).sum();
    let mem_used =
        usage.containers.iter().map(|c| c.memory_bytes).sum::<u64>() as f64 / 1_048_576.0;
    let cpu_pct = cpu_used / cpu_reserved * 100.0;
    let mem_pct = if mem_reserved > 0.0 { mem_used / mem_reserved * 100.0 } else { 100.0 };
    let service = task.group.as_deref().and_then(|g| g.strip_prefix("service:"));
    let at = usage.timestamp;
    let mut out = vec![
        sample("AWS/ECS", "CPUUtilization", &[("ClusterName", cluster)], at, cpu_pct, "Percent"),
        sample("AWS/ECS", "MemoryUtilization", &[("ClusterName", cluster)], at, mem_pct, "Percent"),
    ];
    if let Some(s) = service {
        let d = [("ClusterName", cluster), ("ServiceName", s)];
        out.push(sample("AWS/ECS", "CPUUtilization", &d, at, cpu_pct, "Percent"));
        out.push(sample("AWS/ECS", "MemoryUtilization", &d, at, mem_pct, "Percent"));
    }
    if insights {
        let family = task
            .task_definition_arn
            .as_deref()
            .and_then(|a| a.rsplit('/').next())
            .and_then(|f| f.split(':').next())
            .unwrap_or_default()
            .to_string();
        let mut dim_sets: Vec<Vec<(&str, &str)>> =
            vec![vec![("ClusterName", cluster), ("TaskDefinitionFamily", family.as_str())]];
        if let Some(s) = service {
            dim_sets.push(vec![("ClusterName", cluster), ("ServiceName", s)]);
        }
        for d in &dim_sets {
            let ns = "ECS/ContainerInsights";
            out.push(sample(ns, "CpuUtilized", d, at, cpu_used, "None"));
            out.push(sample(ns, "CpuReserved", d, at, cpu_reserved, "None"));
            out.push(sample(ns, "MemoryUtilized", d, at, mem_used, "Megabytes"));
            out.push(sample(ns, "MemoryReserved", d, at, mem_reserved, "Megabytes"));
        }
    }
    out
}

/// Publishes one agent report in `region` (tasks the server does not know are skipped).
pub(crate) async fn publish(
    cw: &Arc<CloudWatch>,
    ecs: &crate::ecs::Ecs,
    region: &'static str,
    report: StatsReport,
) -> Result<(), berth_wire::AwsError> {
    let mut samples = Vec::new();
    for usage in &report.tasks {
        let Some((task, insights)) = ecs.task_for_metrics(&report.cluster, &usage.task_arn).await?
        else {
            continue;
        };
        let cluster = task
            .cluster_arn
            .as_deref()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or(report.cluster.as_str())
            .to_string();
        samples.extend(task_samples(&cluster, &task, insights, usage));
        crate::cloudwatch::prometheus::observe_task(&cluster, &task, usage);
    }
    if !samples.is_empty() {
        cw.put_samples(region, samples).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_agent_protocol::ContainerUsage;

    fn task(cpu: Option<&str>, mem: Option<&str>, group: &str) -> berth_wire::ecs::Task {
        berth_wire::ecs::Task {
            cpu: cpu.map(str::to_string),
            memory: mem.map(str::to_string),
            group: Some(group.to_string()),
            task_definition_arn: Some("arn:aws:ecs:us-east-1:0:task-definition/web:3".into()),
            containers: Some(vec![berth_wire::ecs::Container {
                cpu: Some("128".into()),
                memory: Some("64".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn usage(cpu_units: f64, mib: u64) -> TaskUsage {
        TaskUsage {
            task_arn: "t".into(),
            timestamp: 1_000,
            containers: vec![ContainerUsage {
                name: "c".into(),
                cpu_units,
                memory_bytes: mib << 20,
            }],
        }
    }

    fn value(samples: &[Sample], ns: &str, name: &str, ndims: usize) -> f64 {
        samples
            .iter()
            .find(|s| {
                s.key.namespace == ns && s.key.name == name && s.key.dimensions.len() == ndims
            })
            .map(|s| s.agg.sum)
            .unwrap()
    }

    #[test]
    fn utilization_is_a_percent_of_the_reservation() {
        // task-level 256 units and 512 MiB: 128 units and 128 MiB used are 50% and 25%
        let s = task_samples(
            "c",
            &task(Some("256"), Some("512"), "service:web"),
            false,
            &usage(128.0, 128),
        );
        assert_eq!(value(&s, "AWS/ECS", "CPUUtilization", 2), 50.0);
        assert_eq!(value(&s, "AWS/ECS", "MemoryUtilization", 2), 25.0);
        assert_eq!(value(&s, "AWS/ECS", "CPUUtilization", 1), 50.0);
        assert!(s.iter().all(|x| x.key.namespace == "AWS/ECS"));
        // container-level reservations when the task has none
        let s = task_samples("c", &task(None, None, "family:web"), true, &usage(256.0, 32));
        assert_eq!(value(&s, "AWS/ECS", "CPUUtilization", 1), 200.0);
        assert_eq!(value(&s, "AWS/ECS", "MemoryUtilization", 1), 50.0);
        assert!(!s.iter().any(|x| x.key.dimensions.iter().any(|(k, _)| k == "ServiceName")));
        assert_eq!(value(&s, "ECS/ContainerInsights", "CpuReserved", 2), 128.0);
        assert!(
            s.iter()
                .any(|x| x.key.dimensions.contains(&("TaskDefinitionFamily".into(), "web".into())))
        );
    }
}
