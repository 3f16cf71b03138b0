//! Registry credentials as ECR issues them, and the registry's authorization per repository.
//!
//! GetAuthorizationToken answers `base64("AWS:" + password)`, valid 12 hours (no longer than
//! the caller's STS session), and the registry accepts it as HTTP Basic auth (`docker login
//! --username AWS --password-stdin`).
//!
//! The password is `<expiry epoch seconds>.<holder>.<hex HMAC-SHA256>`: the holder
//! ([`Holder`]: the ARN of the principal that called GetAuthorizationToken, the access key id
//! of an STS session, the container instance of an instance key, or a role the agent pulls
//! as) is base64url JSON, and the MAC covers the account, the expiry and the holder, keyed by
//! a 32-byte secret derived from the server's master key ([`crate::auth::MasterKey::derive`],
//! label [`KEY_LABEL`]): no file of its own. A token holds no secret (an ARN, at most an
//! access key id, which is an identifier); nothing is stored per token, so tokens survive a
//! restart and verify without a lookup; none is ever logged. Invariants: a token verifies only
//! under the key and account that minted it, only before its expiry, and its holder cannot be
//! changed without breaking the MAC; comparing MACs takes constant time. Tokens of the
//! previous format (no holder) are refused as invalid: log in again.
//!
//! Every registry request is then authorized ([`TokenAuthorizer`]) for the ECR action its
//! route needs ([`berth_registry::Action`]) on its repository's ARN, with the decision the ECR
//! API makes too ([`super::access::RepositoryAccess`]): AWS's evaluation of the holder's IAM
//! policies AND the repository policy, an explicit deny anywhere winning, then a
//! repository-policy allow naming the holder or an identity allow. The account root
//! (administrator key) may do everything its repository policies do not deny; an instance
//! key's token may only pull (ECS's agent pulling with the instance's rights); a role token
//! ([`EcrService::role_authorization`], a task's execution role) has the role's rights. A
//! denial answers `403 DENIED` with AWS's AccessDenied message, which names the
//! action and the repository ARN.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use berth_registry::{Access, Action, Authorizer, Denial};
use berth_wire::AwsError;
use berth_wire::ecr as wire;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::EcrService;
use super::access::{Caller, RepositoryAccess};
use crate::auth::Principal;
use crate::clock::Clock;
use crate::iam;

/// How long a token is valid (ECR: 12 hours).
pub const TOKEN_LIFETIME_SECS: i64 = 12 * 3600;

/// The label the token key is derived from the master key with.
pub const KEY_LABEL: &str = "berth/ecr/registry-token/v1";

/// Who a token was issued to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The principal's ARN (a role's for a role token).
    #[serde(rename = "a")]
    pub arn: String,
    /// An STS session's access key id (its policies are the session's); empty otherwise.
    #[serde(rename = "k", default, skip_serializing_if = "String::is_empty")]
    pub access_key_id: String,
    /// The container instance of an instance key.
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Minted for a role the agent pulls as (a task's execution role), not for a caller.
    #[serde(rename = "r", default, skip_serializing_if = "std::ops::Not::not")]
    pub role: bool,
}

impl Holder {
    /// The caller of GetAuthorizationToken.
    pub fn caller(p: &Principal) -> Self {
        let session = p.access_key_id.starts_with("ASIA");
        Self {
            arn: p.arn.clone(),
            access_key_id: if session { p.access_key_id.clone() } else { String::new() },
            instance: p.instance.clone(),
            role: false,
        }
    }

    /// A role the agent acts as.
    pub fn role(role_arn: &str) -> Self {
        Self { arn: role_arn.to_string(), access_key_id: String::new(), instance: None, role: true }
    }

    fn principal(&self, account_id: &str) -> Principal {
        Principal {
            arn: self.arn.clone(),
            account_id: account_id.to_string(),
            access_key_id: self.access_key_id.clone(),
            instance: self.instance.clone(),
        }
    }
}

/// The token key.
pub struct TokenKey {
    key: [u8; 32],
    account: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    pub fn new(key: [u8; 32], account: &str) -> Self {
        Self { key, account: account.to_string() }
    }

    fn mac(&self, expiry: i64, holder: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(format!("berth-ecr-token-v2|{}|{expiry}|{holder}", self.account).as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// The password of a token for `holder` expiring at `expiry` (epoch seconds).
    pub fn password(&self, holder: &Holder, expiry: i64) -> String {
        let json = serde_json::to_vec(holder).unwrap_or_default();
        let encoded = URL_SAFE_NO_PAD.encode(json);
        format!("{expiry}.{encoded}.{}", self.mac(expiry, &encoded))
    }

    /// ECR's `authorizationToken`: base64 of `AWS:<password>`.
    pub fn authorization_token(&self, holder: &Holder, expiry: i64) -> String {
        STANDARD.encode(format!("AWS:{}", self.password(holder, expiry)))
    }

    /// Checks an `Authorization` header at `now` (epoch seconds): whom the token was issued to.
    pub fn verify(&self, header: Option<&str>, now: i64) -> Result<Holder, Denial> {
        let Some(h) = header else {
            return Err(Denial::Unauthenticated(
                "no basic auth credentials: log in with `aws ecr get-login-password | docker login --username AWS --password-stdin HOST`".into(),
            ));
        };
        let bad = || Denial::Unauthenticated("Your authorization token is invalid.".into());
        let encoded = h.strip_prefix("Basic ").ok_or_else(bad)?;
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
        if user != "AWS" {
            return Err(bad());
        }
        let mut parts = password.split('.');
        let (Some(expiry), Some(holder), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let expiry: i64 = expiry.parse().map_err(|_| bad())?;
        if !bool::from(self.mac(expiry, holder).as_bytes().ct_eq(mac.as_bytes())) {
            return Err(bad());
        }
        if now >= expiry {
            return Err(Denial::Unauthenticated(
                "Your authorization token has expired. Reauthenticate and try again.".into(),
            ));
        }
        let json = URL_SAFE_NO_PAD.decode(holder).map_err(|_| bad())?;
        serde_json::from_slice(&json).map_err(|_| bad())
    }
}

/// The registry's gate (see the module header).
pub struct TokenAuthorizer {
    key: Arc<TokenKey>,
    clock: Arc<dyn Clock>,
    /// `http://HOST:PORT/`: the realm of the challenge.
    realm: String,
    /// The decision (shared with the ECR API, with its policy cache).
    access: Arc<RepositoryAccess>,
    account_id: String,
    region: String,
}

impl TokenAuthorizer {
    pub(crate) fn new(
        key: Arc<TokenKey>,
        clock: Arc<dyn Clock>,
        realm: String,
        access: Arc<RepositoryAccess>,
        region: String,
    ) -> Self {
        let account_id = key.account.clone();
        Self { key, clock, realm, access, account_id, region }
    }

    /// Decides `action` on `repo` for `holder`.
    async fn decide(
        &self,
        holder: &Holder,
        extensions: &http::Extensions,
        repo: &str,
        action: Action,
        iam_action: &str,
    ) -> Result<(), AwsError> {
        if let Some(instance) = &holder.instance {
            let resource = self.access.arn(repo);
            if action.access() == Access::Pull {
                return Ok(());
            }
            return Err(iam::access_denied(format!(
                "User: {} is not authorized to perform: {iam_action} on resource: {resource}: the token of container instance {instance} may only pull",
                holder.arn
            )));
        }
        let p = holder.principal(&self.account_id);
        let peer = extensions.get::<berth_serve::Peer>();
        let req = iam::Authz {
            action: iam_action.to_string(),
            resources: vec![],
            keys: vec![],
            source_ip: peer.map(|p| p.addr.ip()),
            secure_transport: peer.is_some_and(|p| p.tls),
            region: self.region.clone(),
            ..iam::Authz::default()
        };
        let caller = if holder.role { Caller::Role(&holder.arn) } else { Caller::Principal(&p) };
        self.access.decide(caller, &req, repo).await
    }
}

#[async_trait]
impl Authorizer for TokenAuthorizer {
    fn realm(&self) -> String {
        self.realm.clone()
    }
    async fn authorize(
        &self,
        authorization: Option<&str>,
        extensions: &http::Extensions,
        repository: Option<&str>,
        action: Action,
    ) -> Result<(), Denial> {
        let holder = self.key.verify(authorization, self.clock.now().unix_timestamp())?;
        let (Some(repo), Some(iam_action)) = (repository, action.iam_action()) else {
            return Ok(());
        };
        self.decide(&holder, extensions, repo, action, iam_action)
            .await
            .map_err(|e| Denial::Denied(e.message))
    }
}

impl EcrService {
    /// GetAuthorizationToken's answer for `holder`, expiring at `expiry` at the latest.
    pub(crate) fn authorization_data(
        &self,
        holder: &Holder,
        expiry: i64,
    ) -> wire::AuthorizationData {
        let expiry = expiry.min(self.clock.now().unix_timestamp() + TOKEN_LIFETIME_SECS);
        wire::AuthorizationData {
            authorization_token: Some(self.token_key.authorization_token(holder, expiry)),
            expires_at: Some(expiry as f64),
            proxy_endpoint: Some(format!("http://{}", self.address)),
        }
    }

    /// Registry credentials for pulling as role `role_arn` (a task's execution role): the
    /// agent's path for a task that has one. The token's requests are decided by the role's
    /// own policies and the repository policies; `AccessDeniedException` when the role does
    /// not exist.
    pub(crate) async fn role_authorization(
        &self,
        role_arn: &str,
    ) -> Result<wire::AuthorizationData, AwsError> {
        let Some(role) = self.iam.role(role_arn).await? else {
            return Err(iam::access_denied(format!(
                "Role {role_arn} cannot be found: no registry credentials can be issued for it"
            )));
        };
        Ok(self.authorization_data(&Holder::role(&role.arn), i64::MAX))
    }
}

/// Registry credentials of `req`'s task's execution role, for the agent of the instance the
/// task is placed on (the caller has checked that), to pull the task's images with
/// ([`berth_agent_protocol::REGISTRY_CREDENTIALS_PATH`]).
///
/// Contract: the role comes from the task's own definition revision and its overrides'
/// `executionRoleArn` (the override wins), never from the agent; a STOPPED task gets nothing
/// (`ClientException`); a task without an execution role is an `InvalidParameterException`
/// (the agent pulls with its instance's token then, as ECS does); the role must exist and
/// trust `ecs-tasks.amazonaws.com`, else `AccessDeniedException` naming it, and its policies
/// must allow `ecr:GetAuthorizationToken` (the agent asks as the role); a server without
/// a registry answers `ClientException`. The token's pulls are then decided per repository
/// with the role's policies and the repository policy ([`TokenAuthorizer`]).
pub(crate) async fn task_registry_credentials(
    app: &crate::App,
    region: berth_model::regions::Region,
    ctx: &crate::ecs::RequestContext,
    req: berth_agent_protocol::TaskCredentialsRequest,
) -> Result<berth_agent_protocol::RegistryCredentialsResponse, AwsError> {
    use berth_wire::ecs::ErrorCode;
    let (task, td) =
        crate::secretsmanager::inject::agent_task(app, region, ctx, &req.task_arn, &req.cluster)
            .await?;
    if task.last_status.as_deref() == Some("STOPPED") {
        return Err(ErrorCode::ClientException.with(format!(
            "The task {} is STOPPED: its registry credentials are no longer issued.",
            req.task_arn
        )));
    }
    let Some(role_arn) = task
        .overrides
        .as_ref()
        .and_then(|o| o.execution_role_arn.clone())
        .or_else(|| td.execution_role_arn.clone())
        .filter(|r| !r.is_empty())
    else {
        return Err(ErrorCode::InvalidParameterException
            .with(format!("executionRoleArn: the task {} has no execution role.", req.task_arn)));
    };
    let Some(svc) = app.ecr.as_ref() else {
        return Err(ErrorCode::ClientException
            .with("This server runs no image registry: start it with one to pull from it."));
    };
    let Some(role) = app.iam.role(&role_arn).await? else {
        return Err(iam::access_denied(format!(
            "ECS was unable to assume the execution role '{role_arn}' of this task: the role does not exist."
        )));
    };
    if !crate::task_role::trusts_ecs_tasks(&role.trust_policy, &role.arn) {
        return Err(iam::access_denied(format!(
            "ECS was unable to assume the execution role '{role_arn}' of this task. Please verify that the role has a trust relationship with ecs-tasks.amazonaws.com."
        )));
    }
    // As ECS's agent does, the role itself asks for the token.
    crate::iam::authorize_as_role(app, &role.arn, "ecr:GetAuthorizationToken", "*").await?;
    let data = svc.role_authorization(&role.arn).await?;
    tracing::info!(task = %req.task_arn, role = %role.arn, "execution role registry credentials issued");
    Ok(berth_agent_protocol::RegistryCredentialsResponse {
        role_arn: role.arn.clone(),
        authorization_token: data.authorization_token.unwrap_or_default(),
        expires_at: data.expires_at.unwrap_or_default(),
        proxy_endpoint: data.proxy_endpoint.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
