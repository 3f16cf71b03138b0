//! The agent-facing operations of the container instance group: DiscoverPollEndpoint and
//! UpdateContainerAgent.
//!
//! * DiscoverPollEndpoint answers this server's own endpoint (`endpoint`), the address
//!   Berth's agents poll (`/berth/agent/v1/poll`) and report to. Berth has no separate
//!   telemetry or Service Connect endpoint, so `telemetryEndpoint` and
//!   `serviceConnectEndpoint` are omitted. A `containerInstance` given as an ARN must name a
//!   container instance. The cluster is not checked (ECS's model lists no
//!   ClusterNotFoundException here: an agent asks before it registers).
//! * UpdateContainerAgent: Berth's agent is part of the `berth` binary and is updated with it
//!   on its host, never in place by the control plane. An instance whose agent reported no
//!   version is ECS's `MissingVersionException`; any other is `NoUpdateAvailableException`
//!   (there is never an update the control plane can push). Unknown clusters and instances
//!   are refused first, as in the other instance operations.

use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::ContainerInstances;
use super::view::instance_not_found;
use crate::error;

/// The `UpdateContainerAgent` answer for an instance whose agent reported `version`.
pub fn update_answer(version: Option<&VersionInfo>) -> AwsError {
    match version.and_then(|v| v.agent_version.as_deref()).filter(|v| !v.is_empty()) {
        None => ErrorCode::MissingVersionException.with(
            "Amazon ECS is unable to determine the current version of the container agent on the container instance: its agent reported no versionInfo.agentVersion. Berth's agent is updated with the berth binary on its host.",
        ),
        Some(v) => ErrorCode::NoUpdateAvailableException.with(format!(
            "There is no update available for your container agent (version {v}): Berth's agent is part of the berth binary and is updated by installing a newer berth on its host and restarting `berth agent`, not in place through UpdateContainerAgent."
        )),
    }
}

impl ContainerInstances {
    pub(super) async fn discover_poll_endpoint_op(
        &self,
        input: DiscoverPollEndpointRequest,
    ) -> Result<DiscoverPollEndpointResponse, AwsError> {
        if let Some(given) = input.container_instance.as_deref()
            && given.starts_with("arn:")
            && !self
                .core
                .scope
                .ecs_resource(given)
                .is_some_and(|r| r.starts_with("container-instance/"))
        {
            return Err(error::invalid(format!(
                "containerInstance: '{given}' is not a container instance ARN of this account and region."
            )));
        }
        let endpoint = self.core.endpoint().ok_or_else(|| {
            ErrorCode::ServerException
                .with("The server's endpoint is not known yet; retry in a moment.")
        })?;
        Ok(DiscoverPollEndpointResponse {
            endpoint: Some(endpoint),
            telemetry_endpoint: None,
            service_connect_endpoint: None,
        })
    }

    pub(super) async fn update_container_agent_op(
        &self,
        input: UpdateContainerAgentRequest,
    ) -> Result<UpdateContainerAgentResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        let given = input.container_instance.clone().unwrap_or_default();
        let Some((rec, _)) = self.live_instance(&cluster, &given).await? else {
            return Err(instance_not_found(&given));
        };
        Err(update_answer(rec.version_info.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_answers() {
        let v = |a: Option<&str>| VersionInfo {
            agent_version: a.map(Into::into),
            ..Default::default()
        };
        let cases = [
            (None, "MissingVersionException"),
            (Some(v(None)), "MissingVersionException"),
            (Some(v(Some(""))), "MissingVersionException"),
            (Some(v(Some("0.1.0"))), "NoUpdateAvailableException"),
        ];
        for (version, code) in cases {
            let e = update_answer(version.as_ref());
            assert_eq!(e.code, code, "{version:?}");
        }
        assert!(update_answer(Some(&v(Some("0.1.0")))).message.contains("0.1.0"));
    }
}
