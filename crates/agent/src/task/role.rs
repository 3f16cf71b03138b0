//! The task role (issue #16): the actor's side of [`crate::task_credentials`].
//!
//! Contract:
//! * a task with a `taskRoleArn` (its definition's, or RunTask's override) gets its role's
//!   credentials from the control plane before anything is pulled or created; failing to get
//!   them fails the task (`TaskFailedToStart`, `ResourceInitializationError: ...`);
//! * every container of such a task gets `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN`, and the label
//!   [`LABEL_CREDENTIALS`](crate::task_credentials::LABEL_CREDENTIALS) so that a restarted
//!   agent adopting the task serves the same URI and token;
//! * the credentials are fetched again [`REFRESH_BEFORE`](crate::task_credentials::REFRESH_BEFORE)
//!   before they expire, by a background task the actor aborts when the task stops;
//! * who may ask follows the task's containers' addresses (or the host, in host mode) at
//!   every publish; a STOPPED task's entry is removed. The token is never logged.

use std::time::Duration;

use berth_agent_protocol::TaskCredentialsRequest;
use berth_model::lifecycle::TaskStatus;
use berth_wire::ecs::TaskStopCode;

use super::{TaskActor, now};
use crate::registry_auth::PullAuth;
use crate::task_credentials::{self as tc, Sources, Store};

/// A name and its value (an environment variable or a label).
type KeyValue = (String, String);

/// The task's credentials id and token, and the refresher.
pub(super) struct RoleCredentials {
    pub id: String,
    pub token: String,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl RoleCredentials {
    pub(super) fn adopted(id: String, token: String) -> Self {
        Self { id, token, refresher: None }
    }
}

impl Drop for RoleCredentials {
    fn drop(&mut self) {
        if let Some(h) = self.refresher.take() {
            h.abort();
        }
    }
}

impl TaskActor {
    /// The task's role: RunTask's override, else the definition's.
    fn task_role_arn(&self) -> Option<String> {
        self.desired
            .borrow()
            .overrides
            .as_ref()
            .and_then(|o| o.task_role_arn.clone())
            .or_else(|| self.td.task_role_arn.clone())
            .filter(|r| !r.is_empty())
    }

    fn credentials_store(&self) -> Option<&Store> {
        self.ctx.metadata.as_ref().map(|m| &m.credentials)
    }

    /// The endpoint's port (from the metadata base `http://IP:PORT/v4`).
    fn credentials_port(&self) -> Option<u16> {
        let base = self.ctx.metadata_base.as_deref()?.strip_prefix("http://")?;
        base.split('/').next()?.rsplit_once(':')?.1.parse().ok()
    }

    /// Gets the task role's credentials and keeps them fresh (see the module header).
    pub(super) async fn ensure_role_credentials(&mut self) -> Result<(), (TaskStopCode, String)> {
        let Some(role) = self.task_role_arn() else { return Ok(()) };
        if self.role_creds.as_ref().is_some_and(|c| c.refresher.is_some()) {
            return Ok(());
        }
        let failed = |why: String| {
            (
                TaskStopCode::TaskFailedToStart,
                format!(
                    "ResourceInitializationError: unable to get credentials for the task role {role}: {why}"
                ),
            )
        };
        let Some(store) = self.credentials_store().cloned() else {
            return Err(failed("this agent serves no task metadata endpoint".into()));
        };
        let rc = self.role_creds.get_or_insert_with(|| {
            let (id, token) = tc::mint();
            RoleCredentials::adopted(id, token)
        });
        store.register(&rc.id, &rc.token);
        let id = rc.id.clone();
        let req = TaskCredentialsRequest {
            container_instance_arn: self.ctx.instance_arn.clone(),
            cluster: self.ctx.cluster.clone(),
            task_arn: self.arn.clone(),
        };
        let pull = self.ctx.pull_auth.clone();
        let mut tries = 0;
        let creds = loop {
            match pull.task_credentials(&req).await {
                None => return Err(failed("this agent has no control plane".into())),
                Some(Ok(c)) => break c,
                Some(Err(e)) if e.is_transient() && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                }
                Some(Err(e)) => return Err(failed(e.to_string())),
            }
        };
        let expiration = creds.expiration;
        store.set_credentials(&id, creds);
        self.publish_role_sources();
        let refresher = tokio::spawn(refresh(pull, store, id, req, expiration));
        if let Some(rc) = &mut self.role_creds {
            rc.refresher = Some(refresher);
        }
        Ok(())
    }

    /// The variables and label a container of the task gets.
    pub(super) fn role_env(&self) -> Option<(Vec<KeyValue>, KeyValue)> {
        let rc = self.role_creds.as_ref()?;
        let port = self.credentials_port()?;
        Some((
            vec![
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), tc::full_uri(port, &rc.id)),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), rc.token.clone()),
            ],
            (tc::LABEL_CREDENTIALS.into(), format!("{} {}", rc.id, rc.token)),
        ))
    }

    /// Who may ask for the task's credentials now; a stopped task's entry goes.
    pub(super) fn publish_role_sources(&self) {
        let (Some(store), Some(rc)) = (self.credentials_store(), self.role_creds.as_ref()) else {
            return;
        };
        if self.known == TaskStatus::Stopped {
            store.remove(&rc.id);
            if let Some(h) = &rc.refresher {
                h.abort();
            }
            return;
        }
        let host = self.td.network_mode.is_some_and(|m| m.as_str() == "host");
        let sources = if host {
            Sources::Host
        } else {
            Sources::Addresses(
                self.runs.iter().filter_map(|r| r.ip.as_deref()?.parse().ok()).collect(),
            )
        };
        store.set_sources(&rc.id, sources);
    }
}

/// Fetches the credentials again before they expire, until the server refuses for good (the
/// task stopped) or the actor aborts it.
async fn refresh(
    pull: PullAuth,
    store: Store,
    id: String,
    req: TaskCredentialsRequest,
    mut expiration: f64,
) {
    loop {
        tokio::time::sleep(tc::refresh_delay(expiration, now())).await;
        match pull.task_credentials(&req).await {
            None => return,
            Some(Ok(c)) => {
                expiration = c.expiration;
                store.set_credentials(&id, c);
                tracing::debug!(task = %req.task_arn, "task role credentials refreshed");
            }
            Some(Err(e)) if e.is_transient() => {
                // Again in 30 s.
                expiration = now() + tc::REFRESH_BEFORE.as_secs_f64() + 30.0;
            }
            Some(Err(e)) => {
                tracing::warn!(task = %req.task_arn, error = %e, "task role credentials not refreshed");
                return;
            }
        }
    }
}
