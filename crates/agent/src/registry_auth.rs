//! Which registry an image comes from, and the credentials to pull it with (issue #14).
//!
//! An image on the control plane's registry is named either by its `repositoryUri`
//! (`HOST:PORT/repo:tag`, the registry's own address) or in AWS's form
//! `ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo:tag`, which is rewritten to the registry's
//! address. Either is pulled with an ECR authorization token from the control plane, cached
//! until shortly before it expires: for a task with an execution role, the role's token
//! ([`berth_agent_protocol::REGISTRY_CREDENTIALS_PATH`], cached per role), whose pulls the
//! registry decides with the role's policies and the repository policy, as ECS pulls with the
//! execution role; for a task without one, the instance's (GetAuthorizationToken signed with
//! the agent's key: pull only). A role token that cannot be had fails the pull (never a
//! silent fall-back to the instance's rights). Any other image is pulled as named, without
//! credentials. The decisions ([`registry_host`], [`is_ecr_host`], [`rewrite`],
//! [`basic_credentials`]) are pure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_runtime::RegistryAuth;

use crate::control::{ControlPlane, RegistryToken};

/// The registry host of `image` (`HOST[:PORT]`), `None` for Docker Hub names.
pub fn registry_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// Whether `host` is an ECR registry's name in AWS's form
/// (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`, or `.amazonaws.com.cn`).
pub fn is_ecr_host(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    let tail_ok =
        matches!(parts.get(4..), Some(["amazonaws", "com"]) | Some(["amazonaws", "com", "cn"]));
    parts.len() >= 6
        && parts[0].len() == 12
        && parts[0].bytes().all(|b| b.is_ascii_digit())
        && parts[1] == "dkr"
        && parts[2] == "ecr"
        && !parts[3].is_empty()
        && tail_ok
}

/// `image` with its registry host replaced by `host`.
pub fn rewrite(image: &str, host: &str) -> String {
    match image.split_once('/') {
        Some((_, rest)) => format!("{host}/{rest}"),
        None => image.to_string(),
    }
}

/// The user name and password an `authorizationToken` (base64 of `USER:PASSWORD`) holds.
pub fn basic_credentials(token: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(token).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `http://HOST:PORT` -> `HOST:PORT`.
fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    rest.trim_end_matches('/')
}

/// Resolves images to pull against the control plane's registry.
#[derive(Clone, Default)]
pub struct PullAuth {
    control: Option<Arc<dyn ControlPlane>>,
    cache: Arc<tokio::sync::Mutex<Option<RegistryToken>>>,
    /// Execution roles' tokens, by role ARN.
    roles: Arc<tokio::sync::Mutex<HashMap<String, RegistryToken>>>,
}

/// Whether `t` is still good for at least five minutes at `now` (epoch seconds).
fn fresh(t: &RegistryToken, now: f64) -> bool {
    t.expires_at - now > 300.0
}

impl PullAuth {
    /// Credentials from `control`.
    pub fn new(control: Arc<dyn ControlPlane>) -> Self {
        Self { control: Some(control), cache: Default::default(), roles: Default::default() }
    }

    /// A token valid for at least five more minutes, from the cache or fetched.
    async fn token(&self) -> Option<RegistryToken> {
        let control = self.control.as_ref()?;
        let mut cache = self.cache.lock().await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        if let Some(t) = cache.as_ref().filter(|t| fresh(t, now)) {
            return Some(t.clone());
        }
        match control.registry_token().await {
            Ok(t) => {
                cache.clone_from(&t);
                t
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot get registry credentials from the control plane");
                None
            }
        }
    }

    /// A task's secrets from the control plane (issue #16); `None` without one.
    pub async fn task_secrets(
        &self,
        req: &berth_agent_protocol::TaskSecretsRequest,
    ) -> Option<Result<berth_agent_protocol::TaskSecretsResponse, crate::client::ClientError>> {
        Some(self.control.as_ref()?.task_secrets(req).await)
    }

    /// A task's role credentials from the control plane (issue #16); `None` without one.
    pub async fn task_credentials(
        &self,
        req: &berth_agent_protocol::TaskCredentialsRequest,
    ) -> Option<Result<berth_agent_protocol::TaskCredentialsResponse, crate::client::ClientError>>
    {
        Some(self.control.as_ref()?.task_credentials(req).await)
    }

    /// The token of execution role `role_arn` for `task`, from the cache or fetched (a few
    /// retries on transient failures); the error says why not.
    async fn role_token(
        &self,
        role_arn: &str,
        task: &berth_agent_protocol::TaskCredentialsRequest,
    ) -> Result<RegistryToken, String> {
        let Some(control) = self.control.as_ref() else {
            return Err("this agent has no control plane to get registry credentials from".into());
        };
        let mut roles = self.roles.lock().await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        if let Some(t) = roles.get(role_arn).filter(|t| fresh(t, now)) {
            return Ok(t.clone());
        }
        let mut tries = 0;
        let token = loop {
            match control.task_registry_credentials(task).await {
                Ok(t) => break t,
                Err(e) if e.is_transient() && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                }
                Err(e) => {
                    return Err(format!(
                        "unable to retrieve registry credentials for the execution role {role_arn}: {e}"
                    ));
                }
            }
        };
        roles.insert(role_arn.to_string(), token.clone());
        Ok(token)
    }

    /// The reference to pull for `image` and the credentials to present, for a task whose
    /// execution role is `execution` (its ARN and the request naming the task), if any.
    /// `Err`: the image is on Berth's registry and the execution role's credentials cannot be
    /// had (why, for `CannotPullContainerError`).
    pub async fn resolve(
        &self,
        image: &str,
        execution: Option<(&str, &berth_agent_protocol::TaskCredentialsRequest)>,
    ) -> Result<(String, Option<RegistryAuth>), String> {
        let unchanged = || Ok((image.to_string(), None));
        let Some(host) = registry_host(image) else { return unchanged() };
        let Some(token) = self.token().await else { return unchanged() };
        let registry = endpoint_host(&token.proxy_endpoint).to_string();
        let reference = if is_ecr_host(host) {
            rewrite(image, &registry)
        } else if host == registry {
            image.to_string()
        } else {
            return unchanged();
        };
        let token = match execution {
            Some((role_arn, task)) => self.role_token(role_arn, task).await?,
            None => token,
        };
        let auth = basic_credentials(&token.authorization_token).map(|(username, password)| {
            RegistryAuth { username, password, server_address: registry.clone() }
        });
        Ok((reference, auth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_rewrites() {
        assert_eq!(registry_host("busybox:1"), None);
        assert_eq!(registry_host("library/busybox"), None);
        assert_eq!(registry_host("127.0.0.1:5000/app:v1"), Some("127.0.0.1:5000"));
        assert_eq!(registry_host("localhost/app"), Some("localhost"));
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        assert!(is_ecr_host(ecr));
        assert!(is_ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"));
        for not in [
            "public.ecr.aws",
            "12345.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1.example.com",
            "127.0.0.1:5000",
        ] {
            assert!(!is_ecr_host(not), "{not}");
        }
        assert_eq!(
            rewrite(&format!("{ecr}/team/app:v1"), "127.0.0.1:5000"),
            "127.0.0.1:5000/team/app:v1"
        );
        assert_eq!(
            basic_credentials(&STANDARD.encode("AWS:p:w")),
            Some(("AWS".into(), "p:w".into()))
        );
        assert_eq!(basic_credentials("!!"), None);
        assert_eq!(endpoint_host("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
