//! AWS STS: `GetCallerIdentity` (who signed the request: the account root, an IAM user or a
//! role session `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`), `AssumeRole` and
//! `GetSessionToken`. Account-wide: every region's scope reaches it.
//!
//! AssumeRole's decision is one evaluation of AWS's logic with the role's trust policy as the
//! resource policy (it must name the caller, or its account together with an identity-based
//! `sts:AssumeRole` allow), the caller's own policies, boundary and session policies
//! ([`crate::iam::Iam::authorize_assume`]). The temporary credentials (`ASIA...`, a secret
//! and a session token) are an access key like any other, sealed at rest, plus an
//! `IamSession` record holding the token's SHA-256, the expiry, the role, the session policy
//! and the session tags; `auth` verifies the token and the expiry on every request
//! (`ExpiredToken` once past it). Role chaining (a session assuming a role) is limited to
//! one hour, as in AWS.

use berth_iam_policy as policy;
use berth_model::iam::{self as model, IamSession};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::sts as wire;
use rand::Rng;
use sha2::Digest;

use crate::App;
use crate::ecs::RequestContext;
use crate::iam::{self, Who};
use crate::records;

/// The STS API for one request.
pub(crate) struct Sts<'a> {
    pub app: &'a App,
}

impl wire::Api for Sts<'_> {
    type Context = RequestContext;
    type Identity = Self;
    type Sessions = Self;
    fn identity(&self) -> &Self {
        self
    }
    fn sessions(&self) -> &Self {
        self
    }
}

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new("ValidationError", 400, message)
}

impl wire::IdentityApi<RequestContext> for Sts<'_> {
    async fn get_caller_identity(
        &self,
        ctx: &RequestContext,
        _input: wire::GetCallerIdentityRequest,
    ) -> Result<wire::GetCallerIdentityResponse, AwsError> {
        let p = &ctx.principal;
        // The account's root user's id is the account id; a user's its AIDA id; a session's
        // ROLEID:SESSION; an instance key's, its key.
        let user_id = if p.arn.ends_with(":root") {
            p.account_id.clone()
        } else {
            match self.app.iam.caller_user_id(p).await? {
                Some(id) => id,
                None => p.access_key_id.clone(),
            }
        };
        Ok(wire::GetCallerIdentityResponse {
            user_id: Some(user_id),
            account: Some(p.account_id.clone()),
            arn: Some(p.arn.clone()),
        })
    }
}

/// A session token: long and random, as AWS's are.
fn session_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    let tail: String =
        (0..356).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("IQoJb3JpZ2luX2VjE{tail}")
}

fn valid_session_name(n: &str) -> bool {
    (2..=64).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

impl Sts<'_> {
    /// Issues temporary credentials and records the session.
    async fn issue(
        &self,
        mut session: IamSession,
        duration: i64,
    ) -> Result<wire::Credentials, AwsError> {
        let iam = &self.app.iam;
        let (akid, secret, rec) = crate::auth::tokens::new_key(
            &*iam.store,
            &*iam.clock,
            &iam.master_key,
            "ASIA",
            &session.arn,
        )
        .await?;
        let token = session_token();
        session.access_key_id = akid.clone();
        session.token_sha256 = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        session.expires_at = rec.created_at + duration as f64;
        let key = model::session_key(&akid);
        records::commit(&*iam.store, Txn::new().put(&key, records::encode(&session))).await?;
        Ok(wire::Credentials {
            access_key_id: Some(akid),
            secret_access_key: Some(secret),
            session_token: Some(token),
            expiration: Some(session.expires_at),
        })
    }
}

/// Temporary credentials of a session of `role` named `session_name`, issued by Berth itself
/// (no caller assumes it; e.g. a task's role for its containers, [`crate::task_role`]):
/// `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`, lasting `duration` seconds.
pub(crate) async fn issue_role_session(
    app: &App,
    role: &model::IamRole,
    session_name: &str,
    duration: i64,
) -> Result<wire::Credentials, AwsError> {
    let partition = role.arn.split(':').nth(1).unwrap_or("aws");
    let session = IamSession {
        access_key_id: String::new(),
        token_sha256: String::new(),
        expires_at: 0.0,
        arn: format!(
            "arn:{partition}:sts::{}:assumed-role/{}/{session_name}",
            app.iam.account_id, role.name
        ),
        role_arn: Some(role.arn.clone()),
        user_id: format!("{}:{session_name}", role.id),
        policy: None,
        policy_arns: vec![],
        tags: vec![],
    };
    Sts { app }.issue(session, duration).await
}

impl wire::SessionsApi<RequestContext> for Sts<'_> {
    async fn assume_role(
        &self,
        ctx: &RequestContext,
        input: wire::AssumeRoleRequest,
    ) -> Result<wire::AssumeRoleResponse, AwsError> {
        let role_arn = input.role_arn.unwrap_or_default();
        let session_name = input.role_session_name.unwrap_or_default();
        if !valid_session_name(&session_name) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64"
            )));
        }
        if let Some(doc) = &input.policy {
            crate::iam::api::parse_document(doc, policy::PolicyKind::Session)?;
        }
        let policy_arns: Vec<String> =
            input.policy_arns.unwrap_or_default().into_iter().filter_map(|p| p.arn).collect();
        let tags: Vec<(String, String)> = input
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        let role = self.app.iam.role(&role_arn).await?;
        let role = match role {
            Some(r) => r,
            None => {
                return Err(iam::access_denied(format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    ctx.principal.arn
                )));
            }
        };
        self.app.iam.authorize_assume(&ctx.principal, &role, &session_name, &tags).await?;
        let chained = iam::who(&ctx.principal) == Who::Session;
        let max = if chained { 3600 } else { i64::from(role.max_session_duration) };
        let duration = i64::from(input.duration_seconds.unwrap_or(3600));
        if duration < 900 {
            return Err(invalid(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
            )));
        }
        if duration > max {
            return Err(invalid(format!(
                "The requested DurationSeconds exceeds the {} set for this role.",
                if chained {
                    "1 hour session limit for roles assumed by role chaining"
                } else {
                    "MaxSessionDuration"
                }
            )));
        }
        let partition = ctx.principal.arn.split(':').nth(1).unwrap_or("aws").to_string();
        let session_arn = format!(
            "arn:{partition}:sts::{}:assumed-role/{}/{session_name}",
            self.app.iam.account_id, role.name
        );
        let user_id = format!("{}:{session_name}", role.id);
        let session = IamSession {
            access_key_id: String::new(),
            token_sha256: String::new(),
            expires_at: 0.0,
            arn: session_arn.clone(),
            role_arn: Some(role.arn.clone()),
            user_id: user_id.clone(),
            policy: input.policy.clone(),
            policy_arns,
            tags,
        };
        let creds = self.issue(session, duration).await?;
        tracing::info!(role = %role.arn, session = %session_arn, by = %ctx.principal.arn, "role assumed");
        Ok(wire::AssumeRoleResponse {
            credentials: Some(creds),
            assumed_role_user: Some(wire::AssumedRoleUser {
                assumed_role_id: Some(user_id),
                arn: Some(session_arn),
            }),
            packed_policy_size: input
                .policy
                .as_ref()
                .map(|p| (p.len() * 100 / 2048).min(100) as i32),
            source_identity: None,
        })
    }

    async fn get_session_token(
        &self,
        ctx: &RequestContext,
        input: wire::GetSessionTokenRequest,
    ) -> Result<wire::GetSessionTokenResponse, AwsError> {
        let p = &ctx.principal;
        let (max, default) = match iam::who(p) {
            Who::Root => (3600, 3600),
            Who::User(_) => (129_600, 43_200),
            _ => {
                return Err(iam::access_denied(
                    "Cannot call GetSessionToken with session credentials",
                ));
            }
        };
        let duration = i64::from(input.duration_seconds.unwrap_or(default));
        if !(900..=max).contains(&duration) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and {max}"
            )));
        }
        let user_id = self.app.iam.caller_user_id(p).await?.unwrap_or_else(|| p.account_id.clone());
        let session = IamSession {
            access_key_id: String::new(),
            token_sha256: String::new(),
            expires_at: 0.0,
            arn: p.arn.clone(),
            role_arn: None,
            user_id,
            policy: None,
            policy_arns: vec![],
            tags: vec![],
        };
        let creds = self.issue(session, duration).await?;
        Ok(wire::GetSessionTokenResponse { credentials: Some(creds) })
    }
}
