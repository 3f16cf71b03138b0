//! Authentication (SigV4) and, in one place, authorization.
//!
//! Every request must carry a valid AWS Signature Version 4 `Authorization` header made with
//! an access key the store knows. The result is a [`Principal`]; [`authorize`] is the single
//! hook where IAM policies will be evaluated once IAM lands.
//!
//! Two kinds of principal today (issue #10):
//! * **administrator** keys (the bootstrap key in `DATA_DIR/credentials`): everything;
//! * **instance** keys ([`tokens`]: issued to an agent that joined with a join token, bound
//!   to its container instance): only [`INSTANCE_ACTIONS`], and only for that instance
//!   ([`authorize_instance`], which the front end calls with the instance a request names or
//!   the instance of the task it reports on). Anything else is `AccessDeniedException`
//!   naming the action.

pub mod bootstrap;
pub mod secrets;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use berth_sigv4::{RequestParts, Verifier, parse_authorization};
use berth_store::Store;
use berth_wire::{AwsError, common};
use time::Duration;

pub use bootstrap::{BootstrapKey, bootstrap_admin_key};
pub use secrets::MasterKey;

use crate::clock::Clock;
use crate::records;
use berth_model::keys;
use berth_model::records::AccessKeyRecord;

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// e.g. `arn:aws:iam::123456789012:root`.
    pub arn: String,
    pub account_id: String,
    pub access_key_id: String,
    /// Set for an instance key: the container instance ARN it is bound to.
    pub instance: Option<String>,
}

struct KeyEntry {
    secret: String,
    principal: Arc<Principal>,
}

/// Verifies signatures against the access keys in the store.
pub struct Authenticator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    verifier: Verifier,
    /// Opens the secrets sealed in the store.
    master_key: Arc<MasterKey>,
    region: String,
    account_id: String,
    /// Access keys seen so far. Keys are only ever added by this process or found in the store
    /// on a miss, so a key created by another server is found on first use.
    keys: RwLock<HashMap<String, Arc<KeyEntry>>>,
}

impl Authenticator {
    /// An authenticator for requests to `region`, accepting signatures within `max_skew`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        region: &str,
        account_id: &str,
        max_skew: Duration,
        master_key: Arc<MasterKey>,
    ) -> Self {
        Self {
            store,
            clock,
            verifier: Verifier::new(max_skew),
            master_key,
            region: region.to_string(),
            account_id: account_id.to_string(),
            keys: RwLock::new(HashMap::new()),
        }
    }

    async fn key(&self, access_key_id: &str) -> Result<Option<Arc<KeyEntry>>, AwsError> {
        if let Some(k) = self.keys.read().expect("key cache lock").get(access_key_id) {
            return Ok(Some(k.clone()));
        }
        let Some((rec, _)) =
            records::get::<AccessKeyRecord>(&*self.store, &keys::access_key(access_key_id)).await?
        else {
            return Ok(None);
        };
        if rec.status != "Active" {
            return Ok(None);
        }
        let secret =
            self.master_key.open(&rec.access_key_id, &rec.secret_access_key).map_err(|e| {
                tracing::error!(access_key_id, error = %e, "cannot open a stored secret");
                berth_wire::ecs::ErrorCode::ServerException.with(format!(
                    "Berth cannot open the stored secret of this access key ({e}); check the server's master key file."
                ))
            })?;
        let entry = Arc::new(KeyEntry {
            secret,
            principal: Arc::new(Principal {
                arn: rec.principal_arn,
                account_id: self.account_id.clone(),
                access_key_id: rec.access_key_id,
                instance: rec.container_instance_arn,
            }),
        });
        self.keys.write().expect("key cache lock").insert(access_key_id.to_string(), entry.clone());
        Ok(Some(entry))
    }

    /// Issues an access key bound to container instance `instance_arn` ([`tokens`]).
    pub async fn issue_instance_key(
        &self,
        instance_arn: &str,
    ) -> Result<(String, String), AwsError> {
        tokens::issue_instance_key(&*self.store, &*self.clock, &self.master_key, instance_arn).await
    }

    /// Authenticates one request signed for `service`.
    pub async fn authenticate(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        service: &str,
    ) -> Result<Arc<Principal>, AwsError> {
        let Some(authz) = parts.headers.get(http::header::AUTHORIZATION) else {
            return Err(common::missing_authentication_token());
        };
        let authz = authz.to_str().map_err(|_| {
            common::signature(
                "IncompleteSignatureException",
                "Authorization header is not valid ASCII.",
            )
        })?;
        let auth = parse_authorization(authz).map_err(sig_error)?;
        if auth.service != service {
            return Err(common::signature(
                "InvalidSignatureException",
                format!("Credential should be scoped to correct service: '{service}'. "),
            ));
        }
        if auth.region != self.region {
            return Err(common::signature(
                "InvalidSignatureException",
                format!(
                    "Credential should be scoped to a valid region, not '{}'. This Berth server serves region '{}': use --region {} (or AWS_REGION={}).",
                    auth.region, self.region, self.region, self.region
                ),
            ));
        }
        let Some(key) = self.key(&auth.access_key_id).await? else {
            return Err(common::unrecognized_client());
        };
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            if let Ok(v) = value.to_str() {
                headers.push((name.as_str(), v));
            }
        }
        let req = RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &headers,
            body,
        };
        self.verifier.verify(&req, &auth, &key.secret, self.clock.now()).map_err(sig_error)?;
        Ok(key.principal.clone())
    }
}

/// A SigV4 failure as AWS answers it: 400 for a malformed signature, 403 for a refused one.
fn sig_error(e: berth_sigv4::SigV4Error) -> AwsError {
    let code = e.aws_code();
    let status = if code == "IncompleteSignatureException" { 400 } else { 403 };
    AwsError::new(code, status, e.to_string())
}

/// What a request wants to do, for authorization.
#[derive(Clone, Copy, Debug)]
pub struct Action<'a> {
    /// e.g. `ecs`.
    pub service: &'a str,
    /// e.g. `DescribeClusters`.
    pub operation: &'a str,
}

/// The service name of the agent channel's actions (`Poll`, `Report`, `Join`).
pub const AGENT_SERVICE: &str = "berth-agent";
/// The service name of Berth's administration API (join tokens).
pub const ADMIN_SERVICE: &str = "berth-admin";

/// What an instance key may do: `(service, operation)`. Each of them is further limited to
/// the key's own instance by [`authorize_instance`].
pub const INSTANCE_ACTIONS: &[(&str, &str)] = &[
    (AGENT_SERVICE, "Poll"),
    (AGENT_SERVICE, "Report"),
    ("ecs", "RegisterContainerInstance"),
    ("ecs", "SubmitTaskStateChange"),
    ("ecs", "SubmitContainerStateChange"),
];

fn access_denied(message: String) -> AwsError {
    berth_wire::ecs::ErrorCode::AccessDeniedException.with(message)
}

/// The single authorization decision point. An administrator key may do everything; an
/// instance key only [`INSTANCE_ACTIONS`]. IAM users and policies will be evaluated here.
pub fn authorize(principal: &Principal, action: Action<'_>) -> Result<(), AwsError> {
    let Some(instance) = &principal.instance else { return Ok(()) };
    if INSTANCE_ACTIONS.contains(&(action.service, action.operation)) {
        return Ok(());
    }
    Err(access_denied(format!(
        "User: {} is not authorized to perform: {}:{} (the access key of container instance {instance} may only poll and report for that instance)",
        principal.arn, action.service, action.operation
    )))
}

/// The second half of the decision for an instance key: the container instance the request
/// acts on (the one it names, or the one the task it reports on is placed on) must be its
/// own. `None`: the request names no instance (a new registration), or its task is unknown.
/// Administrator keys pass.
pub fn authorize_instance(
    principal: &Principal,
    action: Action<'_>,
    target: Option<&str>,
) -> Result<(), AwsError> {
    let Some(own) = &principal.instance else { return Ok(()) };
    match target {
        Some(t) if t == own => Ok(()),
        Some(t) => Err(access_denied(format!(
            "User: {} is not authorized to perform: {}:{} on container instance {t}: an instance key acts for its own instance only",
            principal.arn, action.service, action.operation
        ))),
        None => Err(access_denied(format!(
            "User: {} is not authorized to perform: {}:{} on anything but its own container instance {own}",
            principal.arn, action.service, action.operation
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/a";
    const OTHER: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/b";

    fn principal(instance: Option<&str>) -> Principal {
        Principal {
            arn: instance.unwrap_or("arn:aws:iam::000000000000:root").into(),
            account_id: "000000000000".into(),
            access_key_id: "AKIATEST".into(),
            instance: instance.map(str::to_string),
        }
    }

    fn act<'a>(service: &'a str, operation: &'a str) -> Action<'a> {
        Action { service, operation }
    }

    #[test]
    fn an_administrator_may_do_everything() {
        let admin = principal(None);
        for (s, o) in
            [("ecs", "RunTask"), (ADMIN_SERVICE, "CreateJoinToken"), (AGENT_SERVICE, "Poll")]
        {
            authorize(&admin, act(s, o)).unwrap();
            authorize_instance(&admin, act(s, o), Some(OTHER)).unwrap();
            authorize_instance(&admin, act(s, o), None).unwrap();
        }
    }

    #[test]
    fn an_instance_key_may_only_poll_and_report_for_its_own_instance() {
        let inst = principal(Some(OWN));
        for (s, o) in INSTANCE_ACTIONS {
            authorize(&inst, act(s, o)).unwrap();
            authorize_instance(&inst, act(s, o), Some(OWN)).unwrap();
            let e = authorize_instance(&inst, act(s, o), Some(OTHER)).unwrap_err();
            assert_eq!(e.code, "AccessDeniedException");
            assert!(e.message.contains(OTHER), "{}", e.message);
            assert!(authorize_instance(&inst, act(s, o), None).is_err());
        }
        for (s, o) in [
            ("ecs", "RunTask"),
            ("ecs", "ListClusters"),
            ("ecs", "DeregisterContainerInstance"),
            (ADMIN_SERVICE, "CreateJoinToken"),
            (AGENT_SERVICE, "Join"),
        ] {
            let e = authorize(&inst, act(s, o)).unwrap_err();
            assert_eq!(e.code, "AccessDeniedException");
            assert!(e.message.contains(&format!("{s}:{o}")), "{}", e.message);
        }
    }
}
