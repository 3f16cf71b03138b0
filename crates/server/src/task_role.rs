//! Task role credentials for the agents ([`berth_agent_protocol::CREDENTIALS_PATH`]):
//! temporary credentials of a task's `taskRoleArn`, minted for the agent of the instance the
//! task is placed on (the caller has checked that), which serves them to that task's
//! containers only.
//!
//! Contract:
//! * the role comes from the task's own definition revision and its overrides' `taskRoleArn`
//!   (the override wins), never from the agent;
//! * a task that is STOPPED (its last known status) gets nothing more: `ClientException`;
//! * the role must exist and its trust policy must let `ecs-tasks.amazonaws.com` assume it,
//!   as ECS requires, else `AccessDeniedException` naming the role;
//! * the credentials are an STS session ([`crate::sts::issue_role_session`]) named after
//!   the task id: calls made with them are authorized as the role and recorded as
//!   `assumed-role/ROLE/TASK_ID`; they expire after [`DURATION_SECONDS`]. Never logged.

use berth_agent_protocol::{TaskCredentialsRequest, TaskCredentialsResponse};
use berth_iam_policy as policy;
use berth_model::regions::Region;
use berth_wire::AwsError;
use berth_wire::ecs as ecs_wire;

use crate::App;
use crate::ecs::RequestContext;

/// How long one set of task credentials lasts (the agent asks again well before).
pub(crate) const DURATION_SECONDS: i64 = 3600;

/// The service principal that must be trusted by a task role.
const ECS_TASKS: &str = "ecs-tasks.amazonaws.com";

/// Mints credentials of `req`'s task's role in `region`.
pub(crate) async fn issue(
    app: &App,
    region: Region,
    ctx: &RequestContext,
    req: TaskCredentialsRequest,
) -> Result<TaskCredentialsResponse, AwsError> {
    let (task, td) =
        crate::secretsmanager::inject::agent_task(app, region, ctx, &req.task_arn, &req.cluster)
            .await?;
    if task.last_status.as_deref() == Some("STOPPED") {
        return Err(ecs_wire::ErrorCode::ClientException.with(format!(
            "The task {} is STOPPED: its role credentials are no longer issued.",
            req.task_arn
        )));
    }
    let Some(role_arn) = task
        .overrides
        .as_ref()
        .and_then(|o| o.task_role_arn.clone())
        .or_else(|| td.task_role_arn.clone())
        .filter(|r| !r.is_empty())
    else {
        return Err(ecs_wire::ErrorCode::InvalidParameterException
            .with(format!("taskRoleArn: the task {} has no task role.", req.task_arn)));
    };
    let Some(role) = app.iam.role(&role_arn).await? else {
        return Err(crate::iam::access_denied(format!(
            "ECS was unable to assume the role '{role_arn}' that was provided for this task: the role does not exist."
        )));
    };
    if !trusts_ecs_tasks(&role.trust_policy, &role.arn) {
        return Err(crate::iam::access_denied(format!(
            "ECS was unable to assume the role '{role_arn}' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."
        )));
    }
    let task_id = req.task_arn.rsplit('/').next().unwrap_or_default().to_string();
    let creds = crate::sts::issue_role_session(app, &role, &task_id, DURATION_SECONDS).await?;
    tracing::info!(task = %req.task_arn, role = %role.arn, "task role credentials issued");
    Ok(TaskCredentialsResponse {
        role_arn: role.arn.clone(),
        access_key_id: creds.access_key_id.unwrap_or_default(),
        secret_access_key: creds.secret_access_key.unwrap_or_default(),
        session_token: creds.session_token.unwrap_or_default(),
        expiration: creds.expiration.unwrap_or_default(),
    })
}

/// Whether `trust` (a role's trust policy) lets ECS's task service assume the role.
pub(crate) fn trusts_ecs_tasks(trust: &str, role_arn: &str) -> bool {
    let Ok(trust) = policy::Policy::parse(trust, policy::PolicyKind::Trust) else { return false };
    let ctx = policy::RequestContext::new(
        policy::Principal::service(ECS_TASKS),
        "sts:AssumeRole",
        role_arn,
    );
    let set = policy::PolicySet {
        identity: vec![],
        resource: Some(&trust),
        boundary: None,
        session: vec![],
        resource_policy_required: true,
    };
    set.evaluate(&ctx).access_denied_message(&ctx).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_in_ecs_tasks_decides() {
        let role = "arn:aws:iam::123456789012:role/app";
        let doc = |principal: &str, effect: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}","Principal":{principal},"Action":"sts:AssumeRole"}}]}}"#
            )
        };
        let cases = [
            (doc(r#"{"Service":"ecs-tasks.amazonaws.com"}"#, "Allow"), true),
            (doc(r#"{"Service":["ec2.amazonaws.com","ecs-tasks.amazonaws.com"]}"#, "Allow"), true),
            (doc(r#"{"Service":"ec2.amazonaws.com"}"#, "Allow"), false),
            (doc(r#"{"AWS":"arn:aws:iam::123456789012:root"}"#, "Allow"), false),
            (doc(r#"{"Service":"ecs-tasks.amazonaws.com"}"#, "Deny"), false),
            ("not json".to_string(), false),
        ];
        for (trust, want) in cases {
            assert_eq!(trusts_ecs_tasks(&trust, role), want, "{trust}");
        }
    }
}
