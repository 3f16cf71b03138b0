//! FARGATE_SPOT interruptions, injected: what AWS does when it reclaims Spot capacity, on
//! demand (`berth spot interrupt`, the admin API's `/berth/admin/v1/spot/interrupt`), so a
//! user can see their service survive it.
//!
//! Contract: an interruption picks RUNNING tasks whose capacity provider is FARGATE_SPOT (the
//! one named, else those of the named cluster, else of every cluster of the region, at most
//! `count`, oldest first) and stops each as AWS stops an interrupted Spot task: desired
//! STOPPED with `stopCode` `SpotInterruption` and `stoppedReason` "Your Spot Task was
//! interrupted.". The agent's usual stop carries out the two-minute warning: SIGTERM, then
//! SIGKILL once the container's `stopTimeout` has passed (at most 120 s, as Fargate caps it).
//! A service replaces the task as it replaces any task stopped under it; an interruption does
//! not count as a failure of the service's deployment (it is not the task's doing).
//! Idempotent: a task already desired STOPPED is left as it is and not reported.
//!
//! Random interruptions (`--spot-interruption-rate PER_HOUR`, off by default): every
//! [`RANDOM_TICK`] each RUNNING Spot task of the region is interrupted with the chance
//! [`interruption_chance`] gives, a Poisson process of `PER_HOUR` interruptions per task-hour,
//! so a service's resilience to Spot can be tested without waiting on AWS's real reclaims.
//! The draw is the only impure step ([`Tasks::random_spot_pass`] takes the draws as a
//! function, so tests decide them).

use berth_model::keys;
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_store::Range;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::{Tasks, task_not_found};
use crate::error;

/// The stopped reason AWS gives an interrupted Spot task.
pub const SPOT_INTERRUPTED: &str = "Your Spot Task was interrupted.";
/// The capacity provider whose tasks can be interrupted.
pub const SPOT: &str = "FARGATE_SPOT";

/// How often the random interruption pass runs.
pub const RANDOM_TICK: std::time::Duration = std::time::Duration::from_secs(10);

/// The chance that a task is interrupted within `elapsed_secs`, when interruptions come as a
/// Poisson process of `rate_per_hour` per task-hour: `1 - e^(-rate x hours)`. `0` for a rate
/// or a time that is not positive (or not a number).
pub fn interruption_chance(rate_per_hour: f64, elapsed_secs: f64) -> f64 {
    if !(rate_per_hour > 0.0 && elapsed_secs > 0.0) {
        return 0.0;
    }
    1.0 - (-rate_per_hour * elapsed_secs / 3600.0).exp()
}

/// What an interruption is to pick.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Interrupt {
    /// The cluster (name or ARN); `None`: every cluster of the region.
    #[serde(default)]
    pub cluster: Option<String>,
    /// One task (id or ARN; needs `cluster` unless the ARN names it).
    #[serde(default)]
    pub task: Option<String>,
    /// At most this many tasks (default 1).
    #[serde(default)]
    pub count: Option<u32>,
}

impl Tasks {
    /// The names of the region's live clusters.
    async fn cluster_names(&self) -> Result<Vec<String>, AwsError> {
        Ok(self
            .core
            .store
            .range(Range::prefix(keys::CLUSTERS))
            .await
            .map_err(error::store)?
            .iter()
            .filter_map(|r| r.key.strip_prefix(keys::CLUSTERS).map(str::to_string))
            .collect())
    }

    /// Interrupts FARGATE_SPOT tasks as [`Interrupt`] says; returns them as DescribeTasks
    /// shows them after the interruption.
    pub async fn interrupt_spot(&self, req: &Interrupt) -> Result<Vec<Task>, AwsError> {
        let count = req.count.unwrap_or(1) as usize;
        if count == 0 {
            return Err(error::invalid("count must be at least 1."));
        }
        let clusters = match (&req.cluster, &req.task) {
            (Some(c), _) => vec![self.clusters.existing_cluster(Some(c.as_str())).await?],
            (None, Some(t)) if t.starts_with("arn:") => {
                let cluster = t
                    .rsplit_once('/')
                    .and_then(|(head, _)| head.rsplit_once('/'))
                    .map(|(_, c)| c.to_string())
                    .ok_or_else(|| {
                        error::invalid(
                            "task: a short task ARN names no cluster; give cluster as well.",
                        )
                    })?;
                vec![self.clusters.existing_cluster(Some(&cluster)).await?]
            }
            (None, Some(_)) => vec![self.clusters.existing_cluster(None).await?],
            (None, None) => self.cluster_names().await?,
        };
        // Candidates: (started at, cluster, task id), RUNNING on FARGATE_SPOT, desired RUNNING.
        let mut candidates = Vec::new();
        for cluster in &clusters {
            let ids: Vec<String> = match &req.task {
                Some(t) => {
                    let Some(id) = self.core.scope.child_id("task", cluster, t) else {
                        return Err(task_not_found());
                    };
                    vec![id.to_string()]
                }
                None => self
                    .core
                    .store
                    .range(Range::prefix(&keys::cluster_tasks_by_status_prefix(
                        cluster,
                        TaskStatus::Running,
                    )))
                    .await
                    .map_err(error::store)?
                    .iter()
                    .filter_map(|r| r.key.rsplit('/').next().map(str::to_string))
                    .collect(),
            };
            for id in ids {
                let Some((rec, _)) = self.task_records.get(cluster, &id).await? else {
                    if req.task.is_some() {
                        return Err(task_not_found());
                    }
                    continue;
                };
                let spot = rec.task.capacity_provider_name.as_deref() == Some(SPOT);
                if req.task.is_some() && !spot {
                    return Err(error::invalid(format!(
                        "task {id} does not run on the FARGATE_SPOT capacity provider; only Spot tasks can be interrupted."
                    )));
                }
                if spot
                    && rec.last_status() == TaskStatus::Running
                    && rec.desired_status() == DesiredTaskStatus::Running
                {
                    candidates.push((rec.task.started_at.unwrap_or(0.0), cluster.clone(), id));
                }
            }
        }
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        let mut out = Vec::new();
        for (_, cluster, id) in candidates.into_iter().take(count) {
            if let Some(task) = self.interrupt_one(&cluster, &id).await? {
                out.push(task);
            }
        }
        Ok(out)
    }

    /// Interrupts one task if it is still desired RUNNING; returns it as interrupted.
    async fn interrupt_one(&self, cluster: &str, id: &str) -> Result<Option<Task>, AwsError> {
        let now = self.core.now();
        let mut interrupted = false;
        let rec = self
            .task_records
            .update(cluster, id, |t| {
                interrupted = false;
                if t.desired_status() == DesiredTaskStatus::Running {
                    t.set_desired_status(DesiredTaskStatus::Stopped);
                    t.task.stop_code = Some(TaskStopCode::SpotInterruption);
                    t.task.stopped_reason = Some(SPOT_INTERRUPTED.into());
                    t.task.stopping_at = Some(now);
                    interrupted = true;
                }
                Ok(())
            })
            .await?;
        Ok(rec.filter(|_| interrupted).map(|rec| {
            tracing::info!(task = %id, cluster = %cluster, "FARGATE_SPOT task interrupted");
            rec.task
        }))
    }

    /// One pass of random interruptions: each RUNNING, desired-RUNNING Spot task of the region
    /// is interrupted when `draw()` (uniform in `[0, 1)`) falls under `chance`. Returns the
    /// tasks interrupted.
    pub async fn random_spot_pass(
        &self,
        chance: f64,
        mut draw: impl FnMut() -> f64,
    ) -> Result<Vec<Task>, AwsError> {
        let mut out = Vec::new();
        if chance <= 0.0 {
            return Ok(out);
        }
        for cluster in self.cluster_names().await? {
            let ids: Vec<String> = self
                .core
                .store
                .range(Range::prefix(&keys::cluster_tasks_by_status_prefix(
                    &cluster,
                    TaskStatus::Running,
                )))
                .await
                .map_err(error::store)?
                .iter()
                .filter_map(|r| r.key.rsplit('/').next().map(str::to_string))
                .collect();
            for id in ids {
                let Some((rec, _)) = self.task_records.get(&cluster, &id).await? else { continue };
                let live = rec.task.capacity_provider_name.as_deref() == Some(SPOT)
                    && rec.last_status() == TaskStatus::Running
                    && rec.desired_status() == DesiredTaskStatus::Running;
                if live
                    && draw() < chance
                    && let Some(task) = self.interrupt_one(&cluster, &id).await?
                {
                    out.push(task);
                }
            }
        }
        Ok(out)
    }

    /// Interrupts Spot tasks at random, `rate_per_hour` per task-hour, every [`RANDOM_TICK`],
    /// until `stop` is set. A failed pass is logged and the next one tries again.
    pub async fn run_random_spot(
        &self,
        rate_per_hour: f64,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let chance = interruption_chance(rate_per_hour, RANDOM_TICK.as_secs_f64());
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RANDOM_TICK) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.random_spot_pass(chance, || rng.random::<f64>()).await {
                tracing::warn!(code = e.code, message = %e.message, "random Spot interruption pass failed");
            }
        }
    }
}
