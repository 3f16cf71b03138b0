//! Authentication (SigV4) and, in one place, authorization.
//!
//! Every request must carry a valid AWS Signature Version 4 `Authorization` header made with
//! an access key the store knows. The result is a [`Principal`]; [`authorize`] is the single
//! hook where IAM policies will be evaluated once IAM lands (today every authenticated
//! principal is the account's administrator).

pub mod bootstrap;
pub mod secrets;

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
            }),
        });
        self.keys.write().expect("key cache lock").insert(access_key_id.to_string(), entry.clone());
        Ok(Some(entry))
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

/// The single authorization decision point. Today every authenticated principal holds an
/// administrator key; IAM users and policies will be evaluated here.
pub fn authorize(principal: &Principal, action: Action<'_>) -> Result<(), AwsError> {
    let _ = (principal, action);
    Ok(())
}
