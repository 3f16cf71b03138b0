//! Daemons (the twelve operations of `DaemonsApi`) and Express Gateway services (the four of
//! `ExpressGatewayServicesApi`): ECS runs daemons on managed instances, through capacity
//! providers, and Express Gateway services behind an Application Load Balancer with auto
//! scaling on Fargate. Berth has none of these yet, so every operation checks its input as
//! ECS documents it (bad input gets `InvalidParameterException` / `ClientException` naming
//! the member, an unknown cluster `ClusterNotFoundException`) and then answers a precise
//! `UnsupportedFeatureException` saying what Berth lacks. Nothing is stored.
//!
//! Invariant: no operation here has an effect; the rules are pure ([`check_name`],
//! [`check_arn`], [`check_role_arn`], [`check_max_results`]) and table-tested.

use std::sync::Arc;

use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::RequestContext;
use super::clusters::Clusters;
use crate::error;

/// What a daemon needs that Berth lacks.
const DAEMONS_LATER: &str = "ECS daemons run on Amazon ECS Managed Instances through capacity providers, which Berth does not implement yet. To run one task on every container instance, create a service with schedulingStrategy DAEMON instead.";
/// What an Express Gateway service needs that Berth lacks.
const EXPRESS_LATER: &str = "Express Gateway services run on Fargate behind an Application Load Balancer with Application Auto Scaling, none of which Berth implements yet. Register a task definition and create a service instead.";

fn daemons_unsupported(op: &str) -> AwsError {
    ErrorCode::UnsupportedFeatureException.with(format!("{op}: {DAEMONS_LATER}"))
}

fn express_unsupported(op: &str) -> AwsError {
    ErrorCode::UnsupportedFeatureException.with(format!("{op}: {EXPRESS_LATER}"))
}

/// A daemon or service name: 1-255 letters, numbers, underscores and hyphens.
pub fn check_name(field: &str, name: &str) -> Result<(), AwsError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(error::invalid(format!(
            "Invalid {field} '{name}': names can have up to 255 characters: letters (uppercase and lowercase), numbers, underscores, and hyphens."
        )))
    }
}

/// An ECS ARN of `kind` (`daemon`, `daemon-deployment`, `service`...): `arn:PARTITION:ecs:
/// REGION:ACCOUNT:KIND/...`.
pub fn check_arn(field: &str, kind: &str, arn: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "ecs"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix(kind).is_some_and(|r| r.starts_with('/') && r.len() > 1);
    if ok {
        Ok(())
    } else {
        Err(error::invalid(format!(
            "{field}: '{arn}' is not a valid ARN of an ECS {kind} (arn:aws:ecs:REGION:ACCOUNT:{kind}/...)."
        )))
    }
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/NAME`.
pub fn check_role_arn(field: &str, arn: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|n| !n.is_empty());
    if ok {
        Ok(())
    } else {
        Err(error::invalid(format!(
            "{field}: '{arn}' is not a valid IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)."
        )))
    }
}

/// `maxResults`: 1-100 when given.
pub fn check_max_results(m: Option<i32>) -> Result<(), AwsError> {
    match m {
        Some(n) if !(1..=100).contains(&n) => {
            Err(error::invalid(format!("maxResults must be between 1 and 100; got {n}.")))
        }
        _ => Ok(()),
    }
}

fn check_list_non_empty<T>(field: &str, v: Option<&[T]>) -> Result<(), AwsError> {
    if v.is_none_or(<[T]>::is_empty) {
        return Err(error::invalid(format!("{field} must name at least one.")));
    }
    Ok(())
}

fn check_tags(t: Option<&[Tag]>) -> Result<(), AwsError> {
    berth_model::tags::validate(t.unwrap_or(&[]), "tags").map_err(error::model)
}

fn non_empty(field: &str, v: Option<&str>) -> Result<(), AwsError> {
    if v.is_none_or(str::is_empty) {
        return Err(error::invalid(format!("{field} must not be empty.")));
    }
    Ok(())
}

/// The daemon and Express Gateway service operations (see the module header).
pub struct Daemons {
    clusters: Arc<Clusters>,
}

impl Daemons {
    pub fn new(clusters: Arc<Clusters>) -> Self {
        Self { clusters }
    }

    /// A `clusterArn` / `cluster` member, when given, names an existing cluster.
    async fn check_cluster(&self, cluster: Option<&str>) -> Result<(), AwsError> {
        if let Some(c) = cluster {
            self.clusters.existing_cluster(Some(c)).await?;
        }
        Ok(())
    }
}

impl DaemonsApi<RequestContext> for Daemons {
    async fn create_daemon(
        &self,
        _ctx: &RequestContext,
        input: CreateDaemonRequest,
    ) -> Result<CreateDaemonResponse, AwsError> {
        check_name("daemonName", input.daemon_name.as_deref().unwrap_or(""))?;
        non_empty("daemonTaskDefinitionArn", input.daemon_task_definition_arn.as_deref())?;
        check_list_non_empty("capacityProviderArns", input.capacity_provider_arns.as_deref())?;
        check_tags(input.tags.as_deref())?;
        if let Some(t) = &input.client_token {
            berth_model::service_rules::validate_client_token(t)
                .map_err(|e| error::invalid(e.to_string()))?;
        }
        self.check_cluster(input.cluster_arn.as_deref()).await?;
        Err(daemons_unsupported("CreateDaemon"))
    }

    async fn update_daemon(
        &self,
        _ctx: &RequestContext,
        input: UpdateDaemonRequest,
    ) -> Result<UpdateDaemonResponse, AwsError> {
        check_arn("daemonArn", "daemon", input.daemon_arn.as_deref().unwrap_or(""))?;
        non_empty("daemonTaskDefinitionArn", input.daemon_task_definition_arn.as_deref())?;
        check_list_non_empty("capacityProviderArns", input.capacity_provider_arns.as_deref())?;
        Err(daemons_unsupported("UpdateDaemon"))
    }

    async fn delete_daemon(
        &self,
        _ctx: &RequestContext,
        input: DeleteDaemonRequest,
    ) -> Result<DeleteDaemonResponse, AwsError> {
        check_arn("daemonArn", "daemon", input.daemon_arn.as_deref().unwrap_or(""))?;
        Err(daemons_unsupported("DeleteDaemon"))
    }

    async fn describe_daemon(
        &self,
        _ctx: &RequestContext,
        input: DescribeDaemonRequest,
    ) -> Result<DescribeDaemonResponse, AwsError> {
        check_arn("daemonArn", "daemon", input.daemon_arn.as_deref().unwrap_or(""))?;
        Err(daemons_unsupported("DescribeDaemon"))
    }

    async fn list_daemons(
        &self,
        _ctx: &RequestContext,
        input: ListDaemonsRequest,
    ) -> Result<ListDaemonsResponse, AwsError> {
        check_max_results(input.max_results)?;
        self.check_cluster(input.cluster_arn.as_deref()).await?;
        Err(daemons_unsupported("ListDaemons"))
    }

    async fn describe_daemon_deployments(
        &self,
        _ctx: &RequestContext,
        input: DescribeDaemonDeploymentsRequest,
    ) -> Result<DescribeDaemonDeploymentsResponse, AwsError> {
        check_list_non_empty("daemonDeploymentArns", input.daemon_deployment_arns.as_deref())?;
        for a in input.daemon_deployment_arns.iter().flatten() {
            check_arn("daemonDeploymentArns", "daemon-deployment", a)?;
        }
        Err(daemons_unsupported("DescribeDaemonDeployments"))
    }

    async fn list_daemon_deployments(
        &self,
        _ctx: &RequestContext,
        input: ListDaemonDeploymentsRequest,
    ) -> Result<ListDaemonDeploymentsResponse, AwsError> {
        check_arn("daemonArn", "daemon", input.daemon_arn.as_deref().unwrap_or(""))?;
        check_max_results(input.max_results)?;
        Err(daemons_unsupported("ListDaemonDeployments"))
    }

    async fn describe_daemon_revisions(
        &self,
        _ctx: &RequestContext,
        input: DescribeDaemonRevisionsRequest,
    ) -> Result<DescribeDaemonRevisionsResponse, AwsError> {
        check_list_non_empty("daemonRevisionArns", input.daemon_revision_arns.as_deref())?;
        for a in input.daemon_revision_arns.iter().flatten() {
            check_arn("daemonRevisionArns", "daemon-revision", a)?;
        }
        Err(daemons_unsupported("DescribeDaemonRevisions"))
    }

    async fn register_daemon_task_definition(
        &self,
        _ctx: &RequestContext,
        input: RegisterDaemonTaskDefinitionRequest,
    ) -> Result<RegisterDaemonTaskDefinitionResponse, AwsError> {
        check_name("family", input.family.as_deref().unwrap_or(""))?;
        check_list_non_empty("containerDefinitions", input.container_definitions.as_deref())?;
        check_tags(input.tags.as_deref())?;
        Err(daemons_unsupported("RegisterDaemonTaskDefinition"))
    }

    async fn delete_daemon_task_definition(
        &self,
        _ctx: &RequestContext,
        input: DeleteDaemonTaskDefinitionRequest,
    ) -> Result<DeleteDaemonTaskDefinitionResponse, AwsError> {
        non_empty("daemonTaskDefinition", input.daemon_task_definition.as_deref())?;
        Err(daemons_unsupported("DeleteDaemonTaskDefinition"))
    }

    async fn describe_daemon_task_definition(
        &self,
        _ctx: &RequestContext,
        input: DescribeDaemonTaskDefinitionRequest,
    ) -> Result<DescribeDaemonTaskDefinitionResponse, AwsError> {
        non_empty("daemonTaskDefinition", input.daemon_task_definition.as_deref())?;
        Err(daemons_unsupported("DescribeDaemonTaskDefinition"))
    }

    async fn list_daemon_task_definitions(
        &self,
        _ctx: &RequestContext,
        input: ListDaemonTaskDefinitionsRequest,
    ) -> Result<ListDaemonTaskDefinitionsResponse, AwsError> {
        check_max_results(input.max_results)?;
        if input.family.is_some() && input.family_prefix.is_some() {
            return Err(error::invalid(
                "family and familyPrefix can't be given together: give one of them.",
            ));
        }
        Err(daemons_unsupported("ListDaemonTaskDefinitions"))
    }
}

impl ExpressGatewayServicesApi<RequestContext> for Daemons {
    async fn create_express_gateway_service(
        &self,
        _ctx: &RequestContext,
        input: CreateExpressGatewayServiceRequest,
    ) -> Result<CreateExpressGatewayServiceResponse, AwsError> {
        check_role_arn("executionRoleArn", input.execution_role_arn.as_deref().unwrap_or(""))?;
        check_role_arn(
            "infrastructureRoleArn",
            input.infrastructure_role_arn.as_deref().unwrap_or(""),
        )?;
        if let Some(t) = &input.task_role_arn {
            check_role_arn("taskRoleArn", t)?;
        }
        if let Some(n) = &input.service_name {
            check_name("serviceName", n)?;
        }
        let image = input.primary_container.as_ref().and_then(|c| c.image.as_deref());
        non_empty("primaryContainer.image", image)?;
        if let Some(p) = input.primary_container.as_ref().and_then(|c| c.container_port)
            && !(1..=65535).contains(&p)
        {
            return Err(error::invalid(format!(
                "primaryContainer.containerPort must be between 1 and 65535; got {p}."
            )));
        }
        check_tags(input.tags.as_deref())?;
        self.check_cluster(input.cluster.as_deref()).await?;
        Err(express_unsupported("CreateExpressGatewayService"))
    }

    async fn delete_express_gateway_service(
        &self,
        _ctx: &RequestContext,
        input: DeleteExpressGatewayServiceRequest,
    ) -> Result<DeleteExpressGatewayServiceResponse, AwsError> {
        check_arn("serviceArn", "service", input.service_arn.as_deref().unwrap_or(""))?;
        Err(express_unsupported("DeleteExpressGatewayService"))
    }

    async fn describe_express_gateway_service(
        &self,
        _ctx: &RequestContext,
        input: DescribeExpressGatewayServiceRequest,
    ) -> Result<DescribeExpressGatewayServiceResponse, AwsError> {
        check_arn("serviceArn", "service", input.service_arn.as_deref().unwrap_or(""))?;
        Err(express_unsupported("DescribeExpressGatewayService"))
    }

    async fn update_express_gateway_service(
        &self,
        _ctx: &RequestContext,
        input: UpdateExpressGatewayServiceRequest,
    ) -> Result<UpdateExpressGatewayServiceResponse, AwsError> {
        check_arn("serviceArn", "service", input.service_arn.as_deref().unwrap_or(""))?;
        if let Some(r) = &input.execution_role_arn {
            check_role_arn("executionRoleArn", r)?;
        }
        if let Some(r) = &input.task_role_arn {
            check_role_arn("taskRoleArn", r)?;
        }
        Err(express_unsupported("UpdateExpressGatewayService"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_table() {
        let ok = |r: Result<(), AwsError>| r.is_ok();
        assert!(ok(check_name("daemonName", "log-router_1")));
        assert!(!ok(check_name("daemonName", "")));
        assert!(!ok(check_name("daemonName", "a.b")));
        assert!(!ok(check_name("daemonName", &"a".repeat(256))));
        let e = check_name("daemonName", "a b").unwrap_err();
        assert_eq!(e.code, "InvalidParameterException");
        assert!(e.message.contains("daemonName"), "{}", e.message);

        let arn = "arn:aws:ecs:us-east-1:123456789012:daemon/default/logs";
        assert!(ok(check_arn("daemonArn", "daemon", arn)));
        for bad in [
            "",
            "logs",
            "arn:aws:ecs:us-east-1:123456789012:service/default/logs",
            "arn:aws:ecs:us-east-1:12345:daemon/x",
            "arn:aws:iam:us-east-1:123456789012:daemon/x",
            "arn:aws:ecs:us-east-1:123456789012:daemon/",
        ] {
            let e = check_arn("daemonArn", "daemon", bad).unwrap_err();
            assert!(e.message.starts_with("daemonArn:"), "{bad}: {}", e.message);
        }

        assert!(ok(check_role_arn("executionRoleArn", "arn:aws:iam::123456789012:role/exec")));
        for bad in [
            "exec",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert!(!ok(check_role_arn("executionRoleArn", bad)), "{bad}");
        }

        for (m, good) in
            [(None, true), (Some(1), true), (Some(100), true), (Some(0), false), (Some(101), false)]
        {
            assert_eq!(ok(check_max_results(m)), good, "{m:?}");
        }
    }

    #[test]
    fn unsupported_messages_say_what_is_missing() {
        let d = daemons_unsupported("CreateDaemon");
        assert_eq!(d.code, "UnsupportedFeatureException");
        assert!(d.message.contains("Managed Instances") && d.message.contains("DAEMON"));
        let e = express_unsupported("CreateExpressGatewayService");
        assert!(
            e.message.contains("Application Load Balancer") && e.message.contains("Auto Scaling")
        );
    }
}
