//! The service controller's pass over a service with the `EXTERNAL` deployment controller:
//! `berth_controllers::task_sets::reconcile` (pure) decides from the same snapshot the
//! rolling scheduler reads (the service's indexed tasks, the cluster's instances); this
//! executes it with the same stop and start steps (each task set's tasks are placed with its
//! own task definition, `startedBy` = the task set id, the service's group and placement),
//! then stores the sets' counts and stability with the same compare-and-set commit.

use berth_controllers::service::{Decision, InstanceView, TaskView};
use berth_controllers::task_sets::{self as ctl, TaskSetInput};
use berth_model::service::ServiceRecord;
use berth_wire::AwsError;

use super::{ClusterView, ServiceController};

/// What one pass over an `EXTERNAL` service reads.
pub(super) struct TaskSetPass<'a> {
    pub(super) cluster: &'a str,
    pub(super) rec: &'a ServiceRecord,
    pub(super) rev: u64,
    pub(super) tasks: &'a [TaskView],
    pub(super) instances: &'a [InstanceView],
    pub(super) view: &'a ClusterView,
    pub(super) now: f64,
    pub(super) deleting: bool,
}

impl ServiceController {
    pub(super) async fn reconcile_task_sets(&self, p: TaskSetPass<'_>) -> Result<(), AwsError> {
        let rec = p.rec;
        let d = ctl::reconcile(&TaskSetInput {
            name: &rec.name,
            desired_count: rec.settings.desired_count,
            deleting: p.deleting,
            health_check_grace_period_seconds: rec.settings.health_check_grace_period_seconds,
            task_sets: &rec.task_sets,
            tasks: p.tasks,
            instances: p.instances,
            now: p.now,
        });
        let mut events = d.events.clone();
        self.execute_stops(p.cluster, &rec.name, &d.stop, &Default::default(), &mut events).await?;
        let td_of = |id: &str| {
            rec.task_sets.iter().find(|s| s.id() == id).map(|s| s.task_definition().to_string())
        };
        self.execute_starts(p.cluster, rec, &d.start, &td_of, p.view, &mut events).await?;
        for id in &d.removed {
            events.push(format!(
                "(service {}) (taskSet {id}) was deleted: its tasks have stopped.",
                rec.name
            ));
        }
        let decision = Decision {
            forget: d.forget,
            deployments: rec.deployments.clone(),
            steady_since: rec.steady_since,
            task_sets: Some(d.task_sets),
            finished: d.finished,
            ..Default::default()
        };
        self.commit_service(p.cluster, rec, p.rev, &decision, events, p.now).await
    }
}
