//! The control plane as the agent uses it: [`ControlPlane`], three calls. [`Client`] is the
//! real one (SigV4-signed HTTP); unit tests put a fake behind the same trait.
//!
//! Contract (what the agent's loops rely on; every implementation keeps it):
//! * [`ControlPlane::register`] is RegisterContainerInstance. Naming a
//!   `containerInstanceArn` the server does not know fails with [`ClientError::Aws`] code
//!   `ClientException` (the agent then registers as a new instance).
//! * [`ControlPlane::poll`] answers the complete desired state of the instance: at once when
//!   its `version` is newer than `seen_version`, otherwise when it changes or after about
//!   `wait_seconds` (then with the same version). The call is bounded: it fails
//!   ([`ClientError::Transport`]) rather than hang past the hold.
//! * [`ControlPlane::report`] is `Ok` only once the server has acknowledged the report; an
//!   error for which [`ClientError::is_transient`] holds may succeed if retried, any other
//!   means the server refused this report for good.
//! * Calls are independent and may run concurrently (the poll loop and the report delivery
//!   share one control plane).

use std::time::Duration;

use async_trait::async_trait;
use berth_agent_protocol::{
    JOIN_PATH, JoinRequest, JoinResponse, POLL_PATH, PollRequest, PollResponse, REPORT_PATH,
    TaskReport,
};
use berth_wire::ecs::{RegisterContainerInstanceRequest, RegisterContainerInstanceResponse};

use crate::client::{Client, ClientError};

/// How much longer than the server's hold a poll may take before it counts as lost.
const POLL_GRACE: Duration = Duration::from_secs(10);
/// The bound on one report.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The control plane, as the agent talks to it.
#[async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    /// RegisterContainerInstance.
    async fn register(
        &self,
        req: &RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, ClientError>;

    /// One (long) poll for the instance's desired state.
    async fn poll(&self, req: &PollRequest) -> Result<PollResponse, ClientError>;

    /// Delivers one task report; `Ok` once acknowledged.
    async fn report(&self, report: &TaskReport) -> Result<(), ClientError>;

    /// Exchanges a join token for a new instance's registration and its own access key, and
    /// signs every later call with that key.
    async fn join(&self, req: &JoinRequest) -> Result<JoinResponse, ClientError> {
        let _ = req;
        Err(ClientError::Decode {
            op: "Join".into(),
            message: "this control plane does not support join tokens".into(),
        })
    }

    /// ECR's GetAuthorizationToken: credentials for pulling from the control plane's image
    /// registry. `Ok(None)`: it runs none.
    async fn registry_token(&self) -> Result<Option<RegistryToken>, ClientError> {
        Ok(None)
    }

    /// The values of a task's `secrets` and `repositoryCredentials`
    /// ([`berth_agent_protocol::SECRETS_PATH`]); held in memory only.
    async fn task_secrets(
        &self,
        req: &berth_agent_protocol::TaskSecretsRequest,
    ) -> Result<berth_agent_protocol::TaskSecretsResponse, ClientError> {
        let _ = req;
        Err(ClientError::Decode {
            op: "TaskSecrets".into(),
            message: "this control plane does not resolve secrets".into(),
        })
    }

    /// Temporary credentials of a task's role ([`berth_agent_protocol::CREDENTIALS_PATH`]);
    /// held in memory only.
    async fn task_credentials(
        &self,
        req: &berth_agent_protocol::TaskCredentialsRequest,
    ) -> Result<berth_agent_protocol::TaskCredentialsResponse, ClientError> {
        let _ = req;
        Err(ClientError::Decode {
            op: "TaskCredentials".into(),
            message: "this control plane does not issue task role credentials".into(),
        })
    }

    /// Registry credentials of a task's execution role
    /// ([`berth_agent_protocol::REGISTRY_CREDENTIALS_PATH`]); held in memory only.
    async fn task_registry_credentials(
        &self,
        req: &berth_agent_protocol::TaskCredentialsRequest,
    ) -> Result<RegistryToken, ClientError> {
        let _ = req;
        Err(ClientError::Decode {
            op: "TaskRegistryCredentials".into(),
            message: "this control plane does not issue execution role registry credentials".into(),
        })
    }

    /// Ships log lines of the `awslogs` driver ([`berth_agent_protocol::LOGS_PATH`]).
    async fn ship_logs(
        &self,
        shipment: &berth_agent_protocol::LogShipment,
    ) -> Result<berth_agent_protocol::LogShipmentAck, ClientError> {
        let _ = shipment;
        Err(ClientError::Decode {
            op: "ShipLogs".into(),
            message: "this control plane does not take logs".into(),
        })
    }

    /// Reports the instance's tasks' resource use ([`berth_agent_protocol::STATS_PATH`]).
    async fn report_stats(
        &self,
        report: &berth_agent_protocol::StatsReport,
    ) -> Result<(), ClientError> {
        let _ = report;
        Err(ClientError::Decode {
            op: "ReportStats".into(),
            message: "this control plane does not take usage samples".into(),
        })
    }
}

/// Registry credentials, as GetAuthorizationToken answers them.
#[derive(Clone, PartialEq)]
pub struct RegistryToken {
    /// base64 of `AWS:<password>`.
    pub authorization_token: String,
    /// Epoch seconds.
    pub expires_at: f64,
    /// `http://HOST:PORT` of the registry.
    pub proxy_endpoint: String,
}

impl std::fmt::Debug for RegistryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryToken")
            .field("expires_at", &self.expires_at)
            .field("proxy_endpoint", &self.proxy_endpoint)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ControlPlane for Client {
    async fn register(
        &self,
        req: &RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, ClientError> {
        self.ecs("RegisterContainerInstance", req).await
    }

    async fn poll(&self, req: &PollRequest) -> Result<PollResponse, ClientError> {
        let timeout = Duration::from_secs(u64::from(req.wait_seconds)) + POLL_GRACE;
        self.agent(POLL_PATH, req, timeout).await
    }

    async fn report(&self, report: &TaskReport) -> Result<(), ClientError> {
        self.agent::<_, serde_json::Value>(REPORT_PATH, report, REPORT_TIMEOUT).await.map(|_| ())
    }

    async fn ship_logs(
        &self,
        shipment: &berth_agent_protocol::LogShipment,
    ) -> Result<berth_agent_protocol::LogShipmentAck, ClientError> {
        self.agent(berth_agent_protocol::LOGS_PATH, shipment, Duration::from_secs(30)).await
    }

    async fn report_stats(
        &self,
        report: &berth_agent_protocol::StatsReport,
    ) -> Result<(), ClientError> {
        self.agent::<_, serde_json::Value>(berth_agent_protocol::STATS_PATH, report, REPORT_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn task_secrets(
        &self,
        req: &berth_agent_protocol::TaskSecretsRequest,
    ) -> Result<berth_agent_protocol::TaskSecretsResponse, ClientError> {
        self.agent(berth_agent_protocol::SECRETS_PATH, req, REPORT_TIMEOUT).await
    }

    async fn task_credentials(
        &self,
        req: &berth_agent_protocol::TaskCredentialsRequest,
    ) -> Result<berth_agent_protocol::TaskCredentialsResponse, ClientError> {
        self.agent(berth_agent_protocol::CREDENTIALS_PATH, req, REPORT_TIMEOUT).await
    }

    async fn task_registry_credentials(
        &self,
        req: &berth_agent_protocol::TaskCredentialsRequest,
    ) -> Result<RegistryToken, ClientError> {
        let r: berth_agent_protocol::RegistryCredentialsResponse = self
            .agent(berth_agent_protocol::REGISTRY_CREDENTIALS_PATH, req, REPORT_TIMEOUT)
            .await?;
        Ok(RegistryToken {
            authorization_token: r.authorization_token,
            expires_at: r.expires_at,
            proxy_endpoint: r.proxy_endpoint,
        })
    }

    async fn registry_token(&self) -> Result<Option<RegistryToken>, ClientError> {
        let answer: Result<serde_json::Value, _> =
            self.ecr("GetAuthorizationToken", &serde_json::json!({})).await;
        let v = match answer {
            Ok(v) => v,
            // A server without a registry (or ECR) refuses the call itself.
            Err(ClientError::Aws { status, .. }) if status < 500 => return Ok(None),
            Err(e) => return Err(e),
        };
        let d = &v["authorizationData"][0];
        Ok(match (d["authorizationToken"].as_str(), d["proxyEndpoint"].as_str()) {
            (Some(t), Some(p)) => Some(RegistryToken {
                authorization_token: t.to_string(),
                expires_at: d["expiresAt"].as_f64().unwrap_or(0.0),
                proxy_endpoint: p.to_string(),
            }),
            _ => None,
        })
    }

    async fn join(&self, req: &JoinRequest) -> Result<JoinResponse, ClientError> {
        let resp: JoinResponse = self.unsigned(JOIN_PATH, req, REPORT_TIMEOUT).await?;
        self.set_credentials(berth_sigv4::Credentials {
            access_key_id: resp.access_key_id.clone(),
            secret_access_key: resp.secret_access_key.clone(),
            session_token: None,
        });
        Ok(resp)
    }
}
