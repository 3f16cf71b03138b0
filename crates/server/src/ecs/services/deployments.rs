//! Service deployments and revisions as ECS's newer API shows them: ListServiceDeployments,
//! DescribeServiceDeployments, DescribeServiceRevisions, StopServiceDeployment, and
//! ContinueServiceDeployment for deployments paused at a PAUSE lifecycle hook (the runs are
//! kept on the deployment's traffic record: `berth_controllers::traffic_shift`).
//!
//! Every deployment of a service is one service deployment
//! (`arn:...:service-deployment/CLUSTER/SERVICE/ID`) whose target is one service revision
//! (`arn:...:service-revision/CLUSTER/SERVICE/ID`, same ID: the 19 digits of the deployment's
//! `ecs-svc/` id). Status mapping:
//!
//! | deployment                                          | service deployment status |
//! |-----------------------------------------------------|---------------------------|
//! | COMPLETED                                           | SUCCESSFUL                |
//! | IN_PROGRESS, PRIMARY                                | IN_PROGRESS               |
//! | IN_PROGRESS, superseded by a newer deployment       | STOPPED                   |
//! | FAILED or stopped, the service rolling back from it | ROLLBACK_IN_PROGRESS      |
//! | FAILED or stopped, the rollback completed           | ROLLBACK_SUCCESSFUL       |
//! | FAILED or stopped without rollback                  | STOPPED                   |

use berth_model::service::{DeploymentRecord, ServiceRecord};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use std::sync::Arc;

use super::super::RequestContext;
use super::super::clusters::Clusters;
use super::super::core::Core;
use super::Services;
use crate::error;

/// Serves a service's deployments and revisions, read from the service record.
pub struct ServiceDeployments {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    services: Arc<Services>,
}

/// A parsed service-deployment or service-revision ARN.
struct Ref {
    cluster: String,
    service: String,
    /// `ecs-svc/<digits>`.
    deployment: String,
}

impl ServiceDeployments {
    pub fn new(core: Arc<Core>, clusters: Arc<Clusters>, services: Arc<Services>) -> Self {
        Self { core, clusters, services }
    }

    fn service_revision_arn(&self, rec: &ServiceRecord, deployment: &str) -> String {
        let id = deployment.strip_prefix("ecs-svc/").unwrap_or(deployment);
        self.core.scope.ecs_arn(&format!("service-revision/{}/{}/{id}", rec.cluster, rec.name))
    }

    fn parse_ref(&self, arn: &str, kind: &str) -> Option<Ref> {
        let rest = self.core.scope.ecs_resource(arn)?.strip_prefix(kind)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (Some(c), Some(s), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        (!c.is_empty() && !s.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| Ref {
            cluster: c.to_string(),
            service: s.to_string(),
            deployment: format!("ecs-svc/{id}"),
        })
    }

    /// The service and the deployment an ARN names.
    async fn resolve(
        &self,
        arn: &str,
        kind: &str,
    ) -> Result<Option<(ServiceRecord, DeploymentRecord)>, AwsError> {
        let Some(r) = self.parse_ref(arn, kind) else { return Ok(None) };
        let Some((rec, _, _)) = self.services.find_service(&r.cluster, &r.service).await? else {
            return Ok(None);
        };
        let dep = rec
            .deployments
            .iter()
            .chain(&rec.past_deployments)
            .find(|d| d.id == r.deployment)
            .cloned();
        Ok(dep.map(|d| (rec, d)))
    }

    fn deployment_status(
        rec: &ServiceRecord,
        d: &DeploymentRecord,
    ) -> (ServiceDeploymentStatus, String) {
        let primary = rec.deployments.first();
        let rolling_back_from_me = rec
            .deployments
            .iter()
            .chain(&rec.past_deployments)
            .find(|x| x.rollback_from.as_deref() == Some(d.id.as_str()));
        match d.rollout_state {
            DeploymentRolloutState::Completed => {
                (ServiceDeploymentStatus::Successful, d.rollout_state_reason.clone())
            }
            DeploymentRolloutState::InProgress if primary.is_some_and(|p| p.id == d.id) => {
                (ServiceDeploymentStatus::InProgress, d.rollout_state_reason.clone())
            }
            DeploymentRolloutState::InProgress => (
                ServiceDeploymentStatus::Stopped,
                "Superseded by a newer deployment of the service.".into(),
            ),
            DeploymentRolloutState::Failed => match rolling_back_from_me {
                Some(b)
                    if b.rollout_state == DeploymentRolloutState::Completed
                        || (b.completed
                            && b.rollout_state != DeploymentRolloutState::InProgress) =>
                {
                    (ServiceDeploymentStatus::RollbackSuccessful, d.rollout_state_reason.clone())
                }
                Some(_) => {
                    (ServiceDeploymentStatus::RollbackInProgress, d.rollout_state_reason.clone())
                }
                None => (ServiceDeploymentStatus::Stopped, d.rollout_state_reason.clone()),
            },
        }
    }

    fn service_deployment(&self, rec: &ServiceRecord, d: &DeploymentRecord) -> ServiceDeployment {
        let (status, reason) = Self::deployment_status(rec, d);
        // The revisions it replaced: the deployments older than it that still had tasks when it
        // started are not recorded; the one before it is the useful answer.
        let all: Vec<&DeploymentRecord> =
            rec.deployments.iter().chain(&rec.past_deployments).collect();
        let older = all.iter().filter(|x| x.created_at < d.created_at).max_by(|a, b| {
            a.created_at.partial_cmp(&b.created_at).unwrap_or(std::cmp::Ordering::Equal)
        });
        ServiceDeployment {
            service_deployment_arn: Some(self.services.service_deployment_arn(rec, &d.id)),
            service_arn: rec.service.service_arn.clone(),
            cluster_arn: rec.service.cluster_arn.clone(),
            created_at: Some(d.created_at),
            started_at: Some(d.created_at),
            finished_at: d.finished_at,
            updated_at: Some(d.updated_at),
            source_service_revisions: Some(
                older
                    .map(|o| {
                        vec![ServiceRevisionSummary {
                            arn: Some(self.service_revision_arn(rec, &o.id)),
                            requested_task_count: Some(o.desired_count),
                            running_task_count: Some(o.running_count),
                            pending_task_count: Some(o.pending_count),
                            ..Default::default()
                        }]
                    })
                    .unwrap_or_default(),
            ),
            target_service_revision: Some(ServiceRevisionSummary {
                arn: Some(self.service_revision_arn(rec, &d.id)),
                requested_task_count: Some(d.desired_count),
                running_task_count: Some(d.running_count),
                pending_task_count: Some(d.pending_count),
                ..Default::default()
            }),
            status: Some(status),
            status_reason: Some(reason),
            deployment_configuration: Some(berth_model::service_rules::deployment_configuration(
                &rec.settings,
            )),
            deployment_circuit_breaker: Some(ServiceDeploymentCircuitBreaker {
                status: Some(if !rec.settings.circuit_breaker {
                    ServiceDeploymentRollbackMonitorsStatus::Disabled
                } else if d.rollout_state == DeploymentRolloutState::Failed {
                    ServiceDeploymentRollbackMonitorsStatus::Triggered
                } else {
                    ServiceDeploymentRollbackMonitorsStatus::Monitoring
                }),
                failure_count: Some(d.failed_tasks),
                threshold: Some(berth_model::service::failure_threshold(d.desired_count)),
            }),
            // Traffic-shifting deployments: the lifecycle stage their last pass recorded.
            lifecycle_stage: d
                .traffic
                .as_ref()
                .and_then(|t| t.stage.clone())
                .and_then(|st| serde_json::from_value(serde_json::Value::String(st)).ok()),
            // PAUSE hooks the deployment reached, in the order reached. A deployment no longer
            // in progress (superseded, rolled back) awaits nothing: a run it left waiting shows
            // FAILED, as ContinueServiceDeployment refuses it.
            lifecycle_hook_details: d.traffic.as_ref().filter(|t| !t.hook_runs.is_empty()).map(
                |t| {
                    t.hook_runs
                        .iter()
                        .map(|run| DeploymentLifecycleHookDetail {
                            hook_id: Some(run.hook_id.clone()),
                            target_type: Some(DeploymentLifecycleHookTargetType::Pause),
                            target_arn: None,
                            status: Some(match run.status {
                                DeploymentLifecycleHookStatus::AwaitingAction
                                    if status != ServiceDeploymentStatus::InProgress =>
                                {
                                    DeploymentLifecycleHookStatus::Failed
                                }
                                s => s,
                            }),
                            expires_at: Some(run.expires_at),
                            timeout_action: Some(run.timeout_action),
                        })
                        .collect()
                },
            ),
            rollback: d.rollback_from.as_ref().map(|from| Rollback {
                reason: Some(format!("Rolled back from deployment {from}.")),
                started_at: Some(d.updated_at),
                service_revision_arn: Some(self.service_revision_arn(rec, &d.id)),
            }),
            ..Default::default()
        }
    }
}

impl ServiceDeploymentsApi<RequestContext> for ServiceDeployments {
    async fn list_service_deployments(
        &self,
        _ctx: &RequestContext,
        input: ListServiceDeploymentsRequest,
    ) -> Result<ListServiceDeploymentsResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.service.clone().unwrap_or_default();
        let name = self
            .core
            .scope
            .child_id("service", &cluster, &given)
            .ok_or_else(|| ErrorCode::ServiceNotFoundException.with("Service not found."))?
            .to_string();
        let Some((rec, _, _)) = self.services.find_service(&cluster, &name).await? else {
            return Err(ErrorCode::ServiceNotFoundException.with("Service not found."));
        };
        let limit = match input.max_results {
            None => 20,
            Some(n) if (1..=100).contains(&n) => n as usize,
            Some(n) => {
                return Err(error::invalid(format!(
                    "maxResults must be between 1 and 100; got {n}."
                )));
            }
        };
        let mut all: Vec<&DeploymentRecord> =
            rec.deployments.iter().chain(&rec.past_deployments).collect();
        all.sort_by(|a, b| {
            b.created_at.partial_cmp(&a.created_at).unwrap_or(std::cmp::Ordering::Equal)
        });
        let wanted = input.status.clone().unwrap_or_default();
        let items: Vec<ServiceDeploymentBrief> = all
            .into_iter()
            .filter(|d| {
                input.created_at.as_ref().is_none_or(|c| {
                    c.before.is_none_or(|b| d.created_at < b)
                        && c.after.is_none_or(|a| d.created_at > a)
                })
            })
            .map(|d| {
                let (status, reason) = Self::deployment_status(&rec, d);
                ServiceDeploymentBrief {
                    service_deployment_arn: Some(self.services.service_deployment_arn(&rec, &d.id)),
                    service_arn: rec.service.service_arn.clone(),
                    cluster_arn: rec.service.cluster_arn.clone(),
                    started_at: Some(d.created_at),
                    created_at: Some(d.created_at),
                    finished_at: d.finished_at,
                    target_service_revision_arn: Some(self.service_revision_arn(&rec, &d.id)),
                    status: Some(status),
                    status_reason: Some(reason),
                }
            })
            .filter(|b| wanted.is_empty() || b.status.is_some_and(|s| wanted.contains(&s)))
            .collect();
        // The token is the index of the next item in this (newest first) listing.
        let start = match input.next_token.as_deref() {
            None => 0,
            Some(t) => t
                .strip_prefix("sd-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n <= items.len())
                .ok_or_else(|| error::invalid("nextToken is not a token this listing returned."))?,
        };
        let end = (start + limit).min(items.len());
        Ok(ListServiceDeploymentsResponse {
            service_deployments: Some(items[start..end].to_vec()),
            next_token: (end < items.len()).then(|| format!("sd-{end}")),
        })
    }

    async fn describe_service_deployments(
        &self,
        _ctx: &RequestContext,
        input: DescribeServiceDeploymentsRequest,
    ) -> Result<DescribeServiceDeploymentsResponse, AwsError> {
        let arns = input.service_deployment_arns.unwrap_or_default();
        if arns.is_empty() || arns.len() > 20 {
            return Err(error::invalid("serviceDeploymentArns must name between 1 and 20 ARNs."));
        }
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for arn in &arns {
            match self.resolve(arn, "service-deployment").await? {
                Some((rec, d)) => out.push(self.service_deployment(&rec, &d)),
                None => failures.push(Failure {
                    arn: Some(arn.clone()),
                    reason: Some("MISSING".into()),
                    detail: None,
                }),
            }
        }
        Ok(DescribeServiceDeploymentsResponse {
            service_deployments: Some(out),
            failures: Some(failures),
        })
    }

    async fn describe_service_revisions(
        &self,
        _ctx: &RequestContext,
        input: DescribeServiceRevisionsRequest,
    ) -> Result<DescribeServiceRevisionsResponse, AwsError> {
        let arns = input.service_revision_arns.unwrap_or_default();
        if arns.is_empty() || arns.len() > 20 {
            return Err(error::invalid("serviceRevisionArns must name between 1 and 20 ARNs."));
        }
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for arn in &arns {
            match self.resolve(arn, "service-revision").await? {
                Some((rec, d)) => out.push(ServiceRevision {
                    service_revision_arn: Some(arn.clone()),
                    service_arn: rec.service.service_arn.clone(),
                    cluster_arn: rec.service.cluster_arn.clone(),
                    task_definition: Some(d.task_definition.clone()),
                    launch_type: d.launch_type,
                    load_balancers: Some(vec![]),
                    service_registries: Some(vec![]),
                    created_at: Some(d.created_at),
                    ..Default::default()
                }),
                None => failures.push(Failure {
                    arn: Some(arn.clone()),
                    reason: Some("MISSING".into()),
                    detail: None,
                }),
            }
        }
        Ok(DescribeServiceRevisionsResponse {
            service_revisions: Some(out),
            failures: Some(failures),
        })
    }

    /// Resolves the PAUSE hook run `hookId` of the service deployment, which must be the
    /// service's IN_PROGRESS (PRIMARY) deployment with that run `AWAITING_ACTION`: CONTINUE
    /// (the default) marks it SUCCEEDED and the next controller pass moves on; ROLLBACK marks it
    /// FAILED and rolls the deployment back as StopServiceDeployment's ROLLBACK does. Errors: a
    /// malformed ARN or unknown deployment is ServiceDeploymentNotFoundException; a `hookId`
    /// the deployment never reached is InvalidParameterException; a deployment that is not in
    /// progress, or a hook already resolved, is ClientException; a ROLLBACK with no completed
    /// deployment to return to is ClientException (nothing changes).
    async fn continue_service_deployment(
        &self,
        _ctx: &RequestContext,
        input: ContinueServiceDeploymentRequest,
    ) -> Result<ContinueServiceDeploymentResponse, AwsError> {
        let arn = input.service_deployment_arn.clone().unwrap_or_default();
        let hook_id = input.hook_id.clone().unwrap_or_default();
        if hook_id.is_empty() {
            return Err(error::invalid("hookId must name the lifecycle hook to continue."));
        }
        let action = input.action.unwrap_or(DeploymentLifecycleHookAction::Continue);
        let not_found = || {
            ErrorCode::ServiceDeploymentNotFoundException
                .with(format!("The service deployment {arn} was not found."))
        };
        let r = self.parse_ref(&arn, "service-deployment").ok_or_else(not_found)?;
        let now = self.core.now();
        let updated = self
            .services
            .update_service_record(&r.cluster, &r.service, |rec| {
                let Some(pos) = rec.deployments.iter().position(|d| d.id == r.deployment) else {
                    return Err(if rec.past_deployments.iter().any(|d| d.id == r.deployment) {
                        ErrorCode::ClientException.with(format!(
                            "The service deployment {arn} has ended; only an IN_PROGRESS deployment paused at a lifecycle hook can be continued."
                        ))
                    } else {
                        not_found()
                    });
                };
                let dep = &rec.deployments[pos];
                let Some(run) = dep
                    .traffic
                    .as_ref()
                    .and_then(|t| t.hook_runs.iter().find(|x| x.hook_id == hook_id))
                else {
                    return Err(error::invalid(format!(
                        "hookId {hook_id} does not name a lifecycle hook of the service deployment {arn}; DescribeServiceDeployments lists its lifecycleHookDetails."
                    )));
                };
                if pos != 0 || dep.rollout_state != DeploymentRolloutState::InProgress {
                    return Err(ErrorCode::ClientException.with(format!(
                        "The service deployment {arn} is not IN_PROGRESS; only an IN_PROGRESS deployment paused at a lifecycle hook can be continued."
                    )));
                }
                if run.status != DeploymentLifecycleHookStatus::AwaitingAction {
                    return Err(ErrorCode::ClientException.with(format!(
                        "The lifecycle hook {hook_id} is {}, not AWAITING_ACTION.",
                        run.status.as_str()
                    )));
                }
                let stage = run.stage;
                let status = if action == DeploymentLifecycleHookAction::Rollback {
                    DeploymentLifecycleHookStatus::Failed
                } else {
                    DeploymentLifecycleHookStatus::Succeeded
                };
                let mut message = format!(
                    "(service {}) (deployment {}) PAUSE hook {hook_id} at lifecycle stage {}: {} by ContinueServiceDeployment.",
                    rec.name,
                    r.deployment,
                    stage.as_str(),
                    action.as_str()
                );
                if action == DeploymentLifecycleHookAction::Rollback {
                    let how = StopPrimary {
                        rollback: true,
                        reason: format!(
                            "Rolled back by ContinueServiceDeployment at lifecycle hook {hook_id} ({}).",
                            stage.as_str()
                        ),
                        cause: format!("ContinueServiceDeployment (hook {hook_id})"),
                        how: "ROLLBACK",
                    };
                    let (m, td) = stop_primary(
                        &rec.name,
                        &mut rec.deployments,
                        &rec.past_deployments,
                        rec.settings.desired_count,
                        &how,
                        now,
                    )
                    .map_err(|_| {
                        ErrorCode::ClientException.with(
                            "The service has no completed deployment to roll back to; continue the deployment (action CONTINUE), or update the service instead.",
                        )
                    })?;
                    message = format!("{message} {m}");
                    if let Some(td) = td {
                        rec.service.task_definition = Some(td);
                    }
                    rec.steady_since = None;
                }
                let dep =
                    rec.deployments.iter_mut().find(|d| d.id == r.deployment).expect("listed");
                if let Some(run) = dep
                    .traffic
                    .as_mut()
                    .and_then(|t| t.hook_runs.iter_mut().find(|x| x.hook_id == hook_id))
                {
                    run.status = status;
                    run.resolved_at = Some(now);
                }
                dep.updated_at = now;
                rec.events.insert(
                    0,
                    ServiceEvent {
                        id: Some(uuid::Uuid::new_v4().to_string()),
                        created_at: Some(now),
                        message: Some(message),
                    },
                );
                rec.events.truncate(berth_model::service::MAX_EVENTS);
                Ok(())
            })
            .await?;
        match updated {
            Some(_) => Ok(ContinueServiceDeploymentResponse { service_deployment_arn: Some(arn) }),
            // Only an INACTIVE service (or none) is left: nothing is in progress.
            None => Err(match self.services.find_service(&r.cluster, &r.service).await? {
                Some(_) => ErrorCode::ClientException
                    .with("The service is INACTIVE; its deployments have ended."),
                None => not_found(),
            }),
        }
    }

    /// Stops the service's IN_PROGRESS deployment: ROLLBACK (the default) returns the service
    /// to its last completed deployment; ABORT only stops launching the deployment's tasks.
    async fn stop_service_deployment(
        &self,
        _ctx: &RequestContext,
        input: StopServiceDeploymentRequest,
    ) -> Result<StopServiceDeploymentResponse, AwsError> {
        let arn = input.service_deployment_arn.clone().unwrap_or_default();
        let Some(r) = self.parse_ref(&arn, "service-deployment") else {
            return Err(ErrorCode::ServiceDeploymentNotFoundException
                .with(format!("The service deployment {arn} was not found.")));
        };
        let rollback = input.stop_type != Some(StopServiceDeploymentStopType::Abort);
        let not_found = || {
            ErrorCode::ServiceDeploymentNotFoundException
                .with(format!("The service deployment {arn} was not found."))
        };
        let now = self.core.now();
        let updated = self
            .services
            .update_service_record(&r.cluster, &r.service, |rec| {
                let Some(pos) = rec.deployments.iter().position(|d| d.id == r.deployment) else {
                    return Err(if rec.past_deployments.iter().any(|d| d.id == r.deployment) {
                        ErrorCode::ConflictException.with(
                            "The service deployment has already ended; only an IN_PROGRESS deployment can be stopped.",
                        )
                    } else {
                        not_found()
                    });
                };
                if pos != 0 || rec.deployments[0].rollout_state != DeploymentRolloutState::InProgress
                {
                    return Err(ErrorCode::ConflictException
                        .with("Only the service's IN_PROGRESS deployment can be stopped."));
                }
                stop_deployment(rec, rollback, now)
            })
            .await?;
        match updated {
            Some(_) => Ok(StopServiceDeploymentResponse { service_deployment_arn: Some(arn) }),
            // Only an INACTIVE service (or none) is left: nothing is in progress.
            None => Err(match self.services.find_service(&r.cluster, &r.service).await? {
                Some(_) => ErrorCode::ConflictException
                    .with("The service is INACTIVE; its deployments have ended."),
                None => not_found(),
            }),
        }
    }
}

/// Stops the PRIMARY deployment of `rec` (IN_PROGRESS) for StopServiceDeployment: see
/// [`stop_primary`].
fn stop_deployment(rec: &mut ServiceRecord, rollback: bool, now: f64) -> Result<(), AwsError> {
    let how = if rollback { "ROLLBACK" } else { "ABORT" };
    let stop = StopPrimary {
        rollback,
        reason: format!("Stopped by StopServiceDeployment ({how})."),
        cause: "StopServiceDeployment".into(),
        how,
    };
    let (message, td) = stop_primary(
        &rec.name,
        &mut rec.deployments,
        &rec.past_deployments,
        rec.settings.desired_count,
        &stop,
        now,
    )?;
    if let Some(td) = td {
        rec.service.task_definition = Some(td);
    }
    rec.events.insert(
        0,
        ServiceEvent {
            id: Some(uuid::Uuid::new_v4().to_string()),
            created_at: Some(now),
            message: Some(message),
        },
    );
    rec.events.truncate(berth_model::service::MAX_EVENTS);
    rec.steady_since = None;
    Ok(())
}

/// How [`stop_primary`] stops a deployment.
pub(super) struct StopPrimary {
    /// Roll back (else only stop launching: ABORT).
    pub(super) rollback: bool,
    /// The stopped deployment's `rolloutStateReason`.
    pub(super) reason: String,
    /// What stopped it, for the rollback target's reason ("after CAUSE").
    pub(super) cause: String,
    /// `ROLLBACK` or `ABORT`, for the event.
    pub(super) how: &'static str,
}

/// Stops the PRIMARY deployment (`deployments[0]`, IN_PROGRESS) of service `name`, FAILED:
/// ABORT only stops its launches; ROLLBACK also makes the last completed deployment PRIMARY
/// again (keeping its tasks), or starts a new deployment of its task definition if it has
/// ended (`berth_model::service::roll_back`). Returns the event message and, for a rollback,
/// the service's task definition now; ConflictException (nothing changed) when a rollback has
/// no completed deployment to return to.
pub(super) fn stop_primary(
    name: &str,
    deployments: &mut Vec<DeploymentRecord>,
    past: &[DeploymentRecord],
    desired: i32,
    how: &StopPrimary,
    now: f64,
) -> Result<(String, Option<String>), AwsError> {
    let stopped_id = deployments[0].id.clone();
    let mut message =
        format!("(service {name}) (deployment {stopped_id}) deployment stopped ({}).", how.how);
    let mut task_definition = None;
    if how.rollback {
        let reason = |to: &str| format!("Rolling back to deploymentId {to} after {}.", how.cause);
        let Some((_, td)) =
            berth_model::service::roll_back(deployments, past, desired, now, reason)
        else {
            return Err(ErrorCode::ConflictException.with(
                "The service has no completed deployment to roll back to; use stopType ABORT, or update the service instead.",
            ));
        };
        message.push_str(&format!(" Rolling back to task definition {td}."));
        task_definition = Some(td);
    }
    let stopped = deployments.iter_mut().find(|d| d.id == stopped_id).expect("still listed");
    stopped.status = if how.rollback { "ACTIVE".into() } else { "PRIMARY".into() };
    stopped.rollout_state = DeploymentRolloutState::Failed;
    stopped.rollout_state_reason = how.reason.clone();
    stopped.finished_at = Some(now);
    stopped.updated_at = now;
    Ok((message, task_definition))
}
