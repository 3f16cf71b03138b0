//! Task secrets for the agents ([`berth_agent_protocol::SECRETS_PATH`]): the values of a
//! task's containers' `secrets` and `repositoryCredentials`, resolved by the server for the
//! agent of the instance the task is placed on (the caller has checked that), read as the
//! task's execution role.
//!
//! Contract:
//! * what is resolved comes from the task's own definition revision (and its overrides'
//!   `executionRoleArn`), never from the agent;
//! * `valueFrom` is a Secrets Manager secret ARN, optionally followed by
//!   `:json-key:version-stage:version-id` (each part may be empty: AWSCURRENT, the whole
//!   string), an SSM parameter ARN, or a parameter name; a SecureString is decrypted;
//! * every read is checked against the execution role in ONE place, [`check_execution_role`];
//! * a value that cannot be read makes the answer's `failure` ECS's reason, naming what and
//!   why (`ResourceInitializationError: unable to pull secrets or registry auth: ...`), never
//!   the value of anything; values are never logged;
//! * with an execution role, what else the agent does for the task is checked against it
//!   first ([`check_execution_uses`]): pulling Amazon ECR images (`ecr:GetAuthorizationToken`,
//!   `ecr:BatchGetImage` on the repository) and `awslogs` writes (`logs:CreateLogStream`,
//!   `logs:PutLogEvents`, and `logs:CreateLogGroup` with `awslogs-create-group`); a missing
//!   permission is the answer's `failure` in ECS's words. Without one, images and logs are
//!   not checked (the agent's instance key pulls and ships, as before).

use berth_agent_protocol::{ContainerSecrets, TaskSecretsRequest, TaskSecretsResponse};
use berth_model::regions::{self, Region};
use berth_wire::AwsError;
use berth_wire::ecs::{self as ecs_wire, Api as _, TaskDefinitionsApi as _, TasksApi as _};

use super::{SecretValue, SecretsManager};
use crate::App;
use crate::ecs::RequestContext;

const PREFIX: &str = "ResourceInitializationError: unable to pull secrets or registry auth";

/// The task an agent asks about (`task_arn`, in `agent_cluster` when its ARN names none, as a
/// Fargate pool agent's do) and its task definition, read with the agent's request context;
/// shared by the secrets and the task role credentials endpoints.
pub(crate) async fn agent_task(
    app: &App,
    region: Region,
    ctx: &RequestContext,
    task_arn: &str,
    agent_cluster: &str,
) -> Result<(ecs_wire::Task, ecs_wire::TaskDefinition), AwsError> {
    let ecs = app.regions.ecs(region);
    // The task's own cluster is in its ARN (`task/CLUSTER/ID`); a Fargate pool agent names
    // the pool's.
    let cluster = task_arn
        .rsplit_once(":task/")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or(agent_cluster.to_string(), |(c, _)| c.to_string());
    let tasks = ecs
        .tasks()
        .describe_tasks(
            ctx,
            ecs_wire::DescribeTasksRequest {
                cluster: Some(cluster),
                tasks: Some(vec![task_arn.to_string()]),
                ..Default::default()
            },
        )
        .await?;
    let Some(task) = tasks.tasks.unwrap_or_default().into_iter().next() else {
        return Err(ecs_wire::ErrorCode::InvalidParameterException
            .with(format!("The task {} does not exist.", task_arn)));
    };
    let td = ecs
        .task_definitions()
        .describe_task_definition(
            ctx,
            ecs_wire::DescribeTaskDefinitionRequest {
                task_definition: task.task_definition_arn.clone(),
                ..Default::default()
            },
        )
        .await?
        .task_definition
        .unwrap_or_default();
    Ok((task, td))
}

/// Resolves `req`'s task's secrets in `region`.
pub(crate) async fn resolve(
    app: &App,
    region: Region,
    ctx: &RequestContext,
    req: TaskSecretsRequest,
) -> Result<TaskSecretsResponse, AwsError> {
    let (task, td) = agent_task(app, region, ctx, &req.task_arn, &req.cluster).await?;
    let role = task
        .overrides
        .as_ref()
        .and_then(|o| o.execution_role_arn.clone())
        .or_else(|| td.execution_role_arn.clone())
        .filter(|r| !r.is_empty());
    if let Some(role) = role.as_deref()
        && let Err(why) = check_execution_uses(app, region, role, &td).await
    {
        return Ok(TaskSecretsResponse { containers: vec![], failure: Some(why) });
    }
    let mut out = TaskSecretsResponse::default();
    for def in td.container_definitions.iter().flatten() {
        let secrets = def.secrets.as_deref().unwrap_or_default();
        let creds =
            def.repository_credentials.as_ref().and_then(|r| r.credentials_parameter.clone());
        if secrets.is_empty() && creds.is_none() {
            continue;
        }
        let mut c = ContainerSecrets {
            container_name: def.name.clone().unwrap_or_default(),
            ..Default::default()
        };
        for s in secrets {
            let name = s.name.clone().unwrap_or_default();
            let from = s.value_from.clone().unwrap_or_default();
            match read(app, region, role.as_deref(), &from).await {
                Ok(v) => c.environment.push((name, v)),
                Err(why) => return Ok(failed(why)),
            }
        }
        if let Some(from) = creds {
            let json = match read(app, region, role.as_deref(), &from).await {
                Ok(v) => v,
                Err(why) => return Ok(failed(why)),
            };
            let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            match (v["username"].as_str(), v["password"].as_str()) {
                (Some(u), Some(p)) => c.registry_credentials = Some((u.into(), p.into())),
                _ => {
                    return Ok(failed(format!(
                        "execution resource retrieval failed: the repositoryCredentials secret {from} is not JSON with \"username\" and \"password\""
                    )));
                }
            }
        }
        out.containers.push(c);
    }
    Ok(out)
}

fn failed(why: String) -> TaskSecretsResponse {
    TaskSecretsResponse { containers: vec![], failure: Some(format!("{PREFIX}: {why}")) }
}

/// The ONE place where reading a secret or parameter as a task's execution role is
/// authorized: the role's own policies (IAM's [`crate::iam::authorize_as_role`]) must allow
/// `action` on `resource`. A task without an execution role reads no secret, as in ECS.
/// Secrets Manager resource policies are stored, not consulted here yet.
async fn check_execution_role(
    app: &App,
    role: Option<&str>,
    action: &str,
    resource: &str,
) -> Result<(), String> {
    let Some(role) = role else {
        return Err(format!(
            "the task has no executionRoleArn, which {action} on {resource} needs"
        ));
    };
    crate::iam::authorize_as_role(app, role, action, resource)
        .await
        .map_err(|e| format!("{}: {}", e.code, e.message))
}

/// `(region, repository)` of an Amazon ECR image (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG|@DIGEST]`).
fn ecr_repository(image: &str) -> Option<(&str, &str)> {
    let (host, rest) = image.split_once('/')?;
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() < 6 || parts[1] != "dkr" || parts[2] != "ecr" || parts[4] != "amazonaws" {
        return None;
    }
    let repo = rest.split('@').next()?;
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    Some((parts[3], repo))
}

/// What the execution role must allow for the task's images and logs, as `(action, resource,
/// what fails)`.
fn execution_uses(
    region: Region,
    account: &str,
    td: &ecs_wire::TaskDefinition,
) -> Vec<(&'static str, String, &'static str)> {
    let mut out = Vec::new();
    for def in td.container_definitions.iter().flatten() {
        if let Some((r, repo)) = def.image.as_deref().and_then(ecr_repository) {
            out.push(("ecr:GetAuthorizationToken", "*".to_string(), "ecr"));
            out.push((
                "ecr:BatchGetImage",
                format!("arn:{}:ecr:{r}:{account}:repository/{repo}", region.partition),
                "ecr",
            ));
        }
        let Some(lc) = &def.log_configuration else { continue };
        if lc.log_driver.map(|d| d.as_str().to_string()).as_deref() != Some("awslogs") {
            continue;
        }
        let opts = lc.options.clone().unwrap_or_default();
        let Some(group) = opts.get("awslogs-group") else { continue };
        let r = opts.get("awslogs-region").map_or(region.name, |r| r.as_str());
        let group_arn = format!("arn:{}:logs:{r}:{account}:log-group:{group}", region.partition);
        if opts.get("awslogs-create-group").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            out.push(("logs:CreateLogGroup", format!("{group_arn}:*"), "logs"));
        }
        out.push(("logs:CreateLogStream", format!("{group_arn}:log-stream:*"), "logs"));
        out.push(("logs:PutLogEvents", format!("{group_arn}:log-stream:*"), "logs"));
    }
    out.dedup();
    out
}

/// Checks [`execution_uses`] against `role`; the first refusal in ECS's words.
async fn check_execution_uses(
    app: &App,
    region: Region,
    role: &str,
    td: &ecs_wire::TaskDefinition,
) -> Result<(), String> {
    for (action, resource, what) in execution_uses(region, &app.account_id, td) {
        if let Err(e) = check_execution_role(app, Some(role), action, &resource).await {
            return Err(if what == "ecr" {
                format!(
                    "{PREFIX}: execution resource retrieval failed: unable to retrieve ecr registry auth: service call has been retried 1 time(s): {e}"
                )
            } else {
                format!(
                    "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: failed to create Cloudwatch log stream: {e}"
                )
            });
        }
    }
    Ok(())
}

/// The value `value_from` names, read as `role`, or why not (ECS's wording).
async fn read(
    app: &App,
    region: Region,
    role: Option<&str>,
    value_from: &str,
) -> Result<String, String> {
    let parts: Vec<&str> = value_from.split(':').collect();
    if parts.len() >= 7 && parts[0] == "arn" && parts[2] == "secretsmanager" {
        let arn = parts[..7].join(":");
        let json_key = parts.get(7).copied().filter(|s| !s.is_empty());
        let stage = parts.get(8).copied().filter(|s| !s.is_empty());
        let version = parts.get(9).copied().filter(|s| !s.is_empty());
        check_execution_role(app, role, "secretsmanager:GetSecretValue", &arn).await.map_err(
            |e| {
                format!(
                    "execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {arn} from secrets manager: {e}"
                )
            },
        )?;
        let fail = |e: String| {
            format!(
                "execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {arn} from secrets manager: {e}"
            )
        };
        let Some(in_region) = regions::lookup(parts[3]) else {
            return Err(fail(format!("InvalidParameterException: {} is not a region", parts[3])));
        };
        let sm = SecretsManager::new(
            app.regions.services(in_region).view.clone(),
            app.vault.clone(),
            in_region,
            &app.account_id,
        );
        let value = sm
            .read_value(&arn, version, stage)
            .await
            .map_err(|e| fail(format!("{}: {}", e.code, e.message)))?;
        let text = match value {
            SecretValue::String(s) => s,
            SecretValue::Binary(b) => b,
        };
        let Some(k) = json_key else { return Ok(text) };
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
            format!(
                "execution resource retrieval failed: secret {arn}: the secret is not JSON, so it has no key {k}"
            )
        })?;
        return match &doc[k] {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Null => Err(format!(
                "execution resource retrieval failed: retrieved secret from Secrets Manager did not contain json key {k}"
            )),
            other => Ok(other.to_string()),
        };
    }
    // An SSM parameter, by ARN (possibly another region's) or by name.
    let in_region = if parts.len() >= 6 && parts[0] == "arn" && parts[2] == "ssm" {
        regions::lookup(parts[3]).unwrap_or(region)
    } else {
        region
    };
    let parameter_arn = if value_from.starts_with("arn:") {
        value_from.to_string()
    } else {
        let sep = if value_from.starts_with('/') { "" } else { "/" };
        format!(
            "arn:{}:ssm:{}:{}:parameter{sep}{value_from}",
            in_region.partition, in_region.name, app.account_id
        )
    };
    check_execution_role(app, role, "ssm:GetParameters", &parameter_arn).await.map_err(|e| {
        format!(
            "execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): {e}"
        )
    })?;
    crate::ssm::read_parameter(app, in_region, value_from).await.map_err(|e| {
        if e.code == "ParameterNotFound" {
            format!(
                "execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): invalid parameters: {value_from}"
            )
        } else {
            format!(
                "execution resource retrieval failed: unable to retrieve secrets from ssm: {}: {}",
                e.code, e.message
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_images_name_their_repository() {
        let cases = [
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1", Some(("us-east-1", "app"))),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app",
                Some(("eu-west-1", "team/app")),
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:ab",
                Some(("us-east-1", "app")),
            ),
            ("localhost:5000/app:1", None),
            ("busybox:latest", None),
            ("public.ecr.aws/nginx/nginx:1", None),
        ];
        for (image, want) in cases {
            assert_eq!(ecr_repository(image), want, "{image}");
        }
    }

    #[test]
    fn images_and_awslogs_need_the_execution_role() {
        let region = regions::lookup("us-east-1").unwrap();
        let td: ecs_wire::TaskDefinition = serde_json::from_value(serde_json::json!({
            "containerDefinitions": [
                {"name": "a", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
                 "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": "/ecs/app", "awslogs-create-group": "true"}}},
                {"name": "b", "image": "busybox"}]
        }))
        .unwrap();
        let got: Vec<(&str, String)> = execution_uses(region, "123456789012", &td)
            .into_iter()
            .map(|(a, r, _)| (a, r))
            .collect();
        let g = "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/app";
        assert_eq!(
            got,
            vec![
                ("ecr:GetAuthorizationToken", "*".to_string()),
                (
                    "ecr:BatchGetImage",
                    "arn:aws:ecr:us-east-1:123456789012:repository/app".to_string()
                ),
                ("logs:CreateLogGroup", format!("{g}:*")),
                ("logs:CreateLogStream", format!("{g}:log-stream:*")),
                ("logs:PutLogEvents", format!("{g}:log-stream:*")),
            ]
        );
        let plain: ecs_wire::TaskDefinition = serde_json::from_value(serde_json::json!({
            "containerDefinitions": [{"name": "b", "image": "busybox"}]
        }))
        .unwrap();
        assert!(execution_uses(region, "123456789012", &plain).is_empty());
    }
}
