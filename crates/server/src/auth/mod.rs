//! Authentication (SigV4) and, in one place, authorization.
//!
//! Every request must carry a valid AWS Signature Version 4 `Authorization` header made with
//! an access key the store knows. The result is a [`Principal`]; [`authorize_call`] is the
//! single decision every AWS front end (JSON, query, EC2) makes before any service code runs.
//!
//! Four kinds of principal (issues #10 and #16):
//! * **administrator** keys (the bootstrap key in `DATA_DIR/credentials`, the account root):
//!   everything;
//! * **instance** keys ([`tokens`]: issued to an agent that joined with a join token, bound
//!   to its container instance): only [`INSTANCE_ACTIONS`], and only for that instance
//!   ([`authorize_instance`], which the front end calls with the instance a request names or
//!   the instance of the task it reports on). Anything else is `AccessDeniedException`
//!   naming the action;
//! * **IAM users' keys** (`AKIA...`, created with `iam create-access-key`): an `Inactive` or
//!   deleted key is unknown (`UnrecognizedClientException`, `InvalidClientTokenId` in the
//!   query protocol); the cache of keys follows the store's change feed;
//! * **STS session keys** (`ASIA...`): also need their session token
//!   (`X-Amz-Security-Token`, compared by SHA-256 in constant time) and are refused after
//!   their expiry with `ExpiredTokenException` (`ExpiredToken`).
//!
//! Users and sessions are decided by their policies ([`crate::iam`]); Berth's own endpoints
//! (agent channel, admin API) refuse them ([`authorize`] fails closed for them).
//!
//! Regions (issue #11): every region botocore lists is served; a request's region is the one
//! in its credential scope, and the signature is verified with exactly that scope. A region
//! botocore does not list is refused as AWS refuses a scope of an invalid region
//! (`InvalidSignatureException`). An instance key acts only in its instance's region
//! ([`authorize_region`]).

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
use berth_model::regions::{self, Region};

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
    /// Set for an STS session's key (`ASIA...`): what its requests must also carry.
    session: Option<SessionCheck>,
}

/// What a session key's requests must satisfy beyond the signature.
struct SessionCheck {
    /// SHA-256 (hex) of the session token (`X-Amz-Security-Token`).
    token_sha256: String,
    /// Epoch seconds.
    expires_at: f64,
}

/// Verifies signatures against the access keys in the store.
pub struct Authenticator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    verifier: Verifier,
    /// Opens the secrets sealed in the store.
    master_key: Arc<MasterKey>,
    /// The configured default region, named in the refusal of an unknown one.
    default_region: Region,
    account_id: String,
    /// Access keys seen so far. Keys are only ever added by this process or found in the store
    /// on a miss, so a key created by another server is found on first use.
    keys: Arc<RwLock<HashMap<String, Arc<KeyEntry>>>>,
}

impl Authenticator {
    /// An authenticator for requests to every region, accepting signatures within `max_skew`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        default_region: Region,
        account_id: &str,
        max_skew: Duration,
        master_key: Arc<MasterKey>,
    ) -> Self {
        Self {
            store,
            clock,
            verifier: Verifier::new(max_skew),
            master_key,
            default_region,
            account_id: account_id.to_string(),
            keys: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Follows the store's change feed: a key whose record changes (an IAM user's key made
    /// inactive or deleted, possibly by another server) is dropped from the cache and looked
    /// up again on its next use; a lagging feed drops the whole cache.
    pub fn follow_changes(&self) {
        let cache = self.keys.clone();
        let mut changes = self.store.changes();
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(c) => {
                        for op in &c.ops {
                            let k = match op {
                                berth_store::Op::Put { key, .. } => key,
                                berth_store::Op::Delete { key } => key,
                            };
                            if let Some(id) = k.strip_prefix(keys::ACCESS_KEYS) {
                                cache.write().expect("key cache lock").remove(id);
                            }
                        }
                    }
                    Err(berth_store::RecvError::Lagged(_)) => {
                        cache.write().expect("key cache lock").clear();
                    }
                    Err(berth_store::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Drops one key from the cache (after this server changed or deleted it).
    pub fn forget(&self, access_key_id: &str) {
        self.keys.write().expect("key cache lock").remove(access_key_id);
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
        let session = if access_key_id.starts_with("ASIA") {
            let Some((s, _)) = records::get::<berth_model::iam::IamSession>(
                &*self.store,
                &berth_model::iam::session_key(access_key_id),
            )
            .await?
            else {
                return Ok(None);
            };
            Some(SessionCheck { token_sha256: s.token_sha256, expires_at: s.expires_at })
        } else {
            None
        };
        let entry = Arc::new(KeyEntry {
            session,
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

    /// Authenticates one request signed for `service`: who signed it, and for which region.
    pub async fn authenticate(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        service: &str,
    ) -> Result<Authenticated, AwsError> {
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
        let Some(region) = regions::lookup(&auth.region) else {
            return Err(invalid_region(&auth.region, self.default_region));
        };
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
        if let Some(session) = &key.session {
            let token = parts
                .headers
                .get("x-amz-security-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| {
                    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                        .find(|(k, _)| k == "X-Amz-Security-Token")
                        .map(|(_, v)| v.into_owned())
                });
            let Some(token) = token else {
                return Err(common::unrecognized_client());
            };
            use sha2::Digest;
            let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
            if !constant_time_eq(hash.as_bytes(), session.token_sha256.as_bytes()) {
                return Err(common::unrecognized_client());
            }
            if crate::clock::epoch_seconds(self.clock.now()) >= session.expires_at {
                return Err(AwsError::new(
                    "ExpiredTokenException",
                    400,
                    "The security token included in the request is expired",
                ));
            }
        }
        Ok(Authenticated { principal: key.principal.in_partition(region.partition), region })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request whose signature checked out.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// Who signed it (its ARN in the partition of `region`).
    pub principal: Arc<Principal>,
    /// The region of its credential scope, the one its signature was verified with.
    pub region: Region,
}

impl Principal {
    /// The same principal as seen in `partition`: an account principal's ARN, made in the
    /// default region's partition, becomes `arn:<partition>:...` (the root of an account in
    /// cn-north-1 is `arn:aws-cn:iam::ACCOUNT:root`). Shared, not copied, when nothing
    /// changes; an instance key keeps its instance's ARN.
    pub fn in_partition(self: &Arc<Self>, partition: &str) -> Arc<Self> {
        let rest = self.arn.strip_prefix("arn:").and_then(|a| a.split_once(':'));
        match rest {
            Some((own, rest)) if own != partition && self.instance.is_none() => {
                Arc::new(Principal { arn: format!("arn:{partition}:{rest}"), ..(**self).clone() })
            }
            _ => self.clone(),
        }
    }
}

/// AWS's refusal of a credential scope naming a region it does not serve, with what to do.
pub fn invalid_region(given: &str, default: Region) -> AwsError {
    common::signature(
        "InvalidSignatureException",
        format!(
            "Credential should be scoped to a valid region, not '{given}'. Berth serves every AWS region botocore lists (for example {}); sign for one of them with --region or AWS_REGION (this server's default region is {}).",
            regions::EXAMPLES,
            default.name
        ),
    )
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
    (AGENT_SERVICE, "ShipLogs"),
    // Its tasks' CPU and memory samples, for CloudWatch's ECS metrics (issue #15).
    (AGENT_SERVICE, "ReportStats"),
    // A task's secrets, resolved for its own instance (issue #16).
    (AGENT_SERVICE, "FetchSecrets"),
    // Its tasks' role credentials, for their containers (issue #16).
    (AGENT_SERVICE, "FetchCredentials"),
    // Its tasks' execution roles' registry credentials, for their image pulls (issue #14).
    (AGENT_SERVICE, "FetchRegistryCredentials"),
    ("ecs", "RegisterContainerInstance"),
    ("ecs", "SubmitTaskStateChange"),
    ("ecs", "SubmitContainerStateChange"),
    // Pulling task images from Berth's registry (issue #14), as ECS's agent does with ECR.
    ("ecr", "GetAuthorizationToken"),
];

fn access_denied(message: String) -> AwsError {
    berth_wire::ecs::ErrorCode::AccessDeniedException.with(message)
}

/// The single authorization decision point. An administrator key may do everything; an
/// instance key only [`INSTANCE_ACTIONS`]. IAM users and policies will be evaluated here.
pub fn authorize(principal: &Principal, action: Action<'_>) -> Result<(), AwsError> {
    match crate::iam::who(principal) {
        crate::iam::Who::User(_) | crate::iam::Who::Session => {
            // Fails closed: the front ends decide IAM principals with [`authorize_call`];
            // Berth's own endpoints (agent channel, admin API) are not theirs.
            return Err(access_denied(format!(
                "User: {} is not authorized to perform: {}:{}",
                principal.arn, action.service, action.operation
            )));
        }
        _ => {}
    }
    let Some(instance) = &principal.instance else { return Ok(()) };
    if INSTANCE_ACTIONS.contains(&(action.service, action.operation)) {
        return Ok(());
    }
    Err(access_denied(format!(
        "User: {} is not authorized to perform: {}:{} (the access key of container instance {instance} may only poll and report for that instance)",
        principal.arn, action.service, action.operation
    )))
}

/// The decision for one API call, with what the request names: the administrator passes,
/// an instance key is decided by [`authorize`], an IAM user or a role session by its
/// policies ([`crate::iam`]) on the resources of the request
/// ([`crate::iam::resources`]) with the tags it carries and, when a policy of the caller reads
/// them, the tags of those resources ([`crate::iam::tags`]). ECR calls are decided with the
/// repository policies (and tags) of the repositories they name, which bind the
/// administrator too ([`crate::ecr::access`]). Every call that gets here is recorded in the
/// audit trail, allowed or denied ([`crate::cloudtrail::note`]).
pub(crate) async fn authorize_call(
    app: &crate::App,
    signed: &Authenticated,
    parts: &http::request::Parts,
    action: Action<'_>,
    body: crate::iam::resources::Body<'_>,
) -> Result<(), AwsError> {
    use crate::iam::{self, Who, resources};
    crate::cloudtrail::note(parts, signed, action, body);
    let p = &signed.principal;
    match iam::who(p) {
        Who::Root if action.service != "ecr" => return Ok(()),
        Who::Instance => return authorize(p, action),
        Who::Root | Who::User(_) | Who::Session => {}
    }
    let scope = resources::Scope {
        partition: signed.region.partition,
        region: signed.region.name,
        account: &p.account_id,
    };
    let r = match body {
        resources::Body::Json(b) if action.service == "ecs" => {
            resources::ecs(scope, action.operation, b)
        }
        resources::Body::Json(b) => resources::json(scope, action.service, action.operation, b),
        resources::Body::Form(f) => {
            resources::form(scope, action.service, action.operation, f, &p.arn)
        }
    };
    let peer = parts.extensions.get::<berth_serve::Peer>();
    let mut req = iam::Authz {
        action: format!("{}:{}", action.service, action.operation),
        resources: r.arns,
        keys: r.keys,
        source_ip: peer.map(|p| p.addr.ip()),
        secure_transport: peer.is_some_and(|p| p.tls),
        region: signed.region.name.to_string(),
        request_tags: iam::tags::request_tags(action.service, action.operation, body),
        resource_tags: vec![],
    };
    if action.service == "ecr" {
        // Repositories' tags are read with their policies there.
        return crate::ecr::access::authorize_call(app, p, &req).await;
    }
    // `aws:ResourceTag/*`: looked up only when a policy of the caller reads them.
    if app.iam.reads_resource_tags(p).await? {
        for arn in req.resources.iter().filter(|a| a.starts_with("arn:")) {
            if req.resource_tags.iter().any(|(a, _)| a == arn) {
                continue;
            }
            let tags = iam::tags::tags_of(app, arn).await;
            req.resource_tags.push((arn.clone(), tags));
        }
    }
    app.iam.authorize(p, &req).await?;
    // Berth's host-access actions for a task definition reaching into the host (issue #16).
    if let resources::Body::Json(b) = body
        && action.service == "ecs"
    {
        iam::host_access::authorize(app, signed, action.operation, b, &req).await?;
    }
    // iam:PassRole for every role the request hands to tasks (issue #16).
    if let resources::Body::Json(b) = body
        && action.service == "ecs"
    {
        let roles = resources::ecs_passed_roles(action.operation, b);
        if !roles.is_empty() {
            req.action = "iam:PassRole".into();
            req.resources = roles;
            req.keys = vec![("iam:PassedToService".into(), "ecs-tasks.amazonaws.com".into())];
            req.request_tags = None;
            req.resource_tags.clear();
            app.iam.authorize(p, &req).await?;
        }
    }
    Ok(())
}

/// An instance key acts only in the region of its instance (the region in its instance's
/// ARN); administrator keys act in every region.
pub fn authorize_region(principal: &Principal, region: Region) -> Result<(), AwsError> {
    let Some(own) = &principal.instance else { return Ok(()) };
    let own_region = own.split(':').nth(3).unwrap_or_default();
    if own_region == region.name {
        return Ok(());
    }
    Err(access_denied(format!(
        "User: {} is not authorized to act in region '{}': the access key of container instance {own} acts in its own region '{own_region}' only",
        principal.arn, region.name
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
    fn instance_keys_act_in_their_own_region_only() {
        let r = |n: &str| regions::lookup(n).unwrap();
        let admin = principal(None);
        let inst = principal(Some(OWN));
        let cn = "arn:aws-cn:ecs:cn-north-1:000000000000:container-instance/default/a";
        let cases: &[(&Principal, &str, bool)] = &[
            (&admin, "us-east-1", true),
            (&admin, "eu-west-1", true),
            (&admin, "cn-north-1", true),
            (&inst, "us-east-1", true),
            (&inst, "eu-west-1", false),
            (&inst, "us-east-2", false),
        ];
        for (p, region, ok) in cases {
            let got = authorize_region(p, r(region));
            assert_eq!(got.is_ok(), *ok, "{} in {region}", p.arn);
            if let Err(e) = got {
                assert_eq!(e.code, "AccessDeniedException");
                assert!(
                    e.message.contains(region) && e.message.contains("us-east-1"),
                    "{}",
                    e.message
                );
            }
        }
        let cn_inst = principal(Some(cn));
        assert!(authorize_region(&cn_inst, r("cn-north-1")).is_ok());
        assert!(authorize_region(&cn_inst, r("cn-northwest-1")).is_err());
    }

    #[test]
    fn principals_take_the_partition_of_the_requests_region() {
        let admin = Arc::new(principal(None));
        assert!(Arc::ptr_eq(&admin.in_partition("aws"), &admin));
        assert_eq!(admin.in_partition("aws-cn").arn, "arn:aws-cn:iam::000000000000:root");
        assert_eq!(admin.in_partition("aws-us-gov").arn, "arn:aws-us-gov:iam::000000000000:root");
        let cn = admin.in_partition("aws-cn");
        assert_eq!(cn.in_partition("aws").arn, "arn:aws:iam::000000000000:root");
        let inst = Arc::new(principal(Some(OWN)));
        assert_eq!(inst.in_partition("aws-cn").arn, OWN, "an instance key is its instance's");
    }

    #[test]
    fn an_unknown_region_is_refused_saying_what_to_do() {
        let e = invalid_region("xx-bogus-1", regions::lookup("us-east-1").unwrap());
        assert_eq!((e.code, e.status), ("InvalidSignatureException", 403));
        assert!(
            e.message
                .starts_with("Credential should be scoped to a valid region, not 'xx-bogus-1'.")
        );
        assert!(e.message.contains("--region") && e.message.contains("us-east-1"), "{}", e.message);
    }

    /// A session key: accepted with its token until it expires (`ExpiredTokenException`),
    /// refused without its token or with another one.
    #[tokio::test]
    async fn session_keys_need_their_token_and_expire() {
        use crate::clock::ManualClock;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let master = Arc::new(MasterKey::from_bytes(&[3; 32]));
        let arn = "arn:aws:sts::000000000000:assumed-role/r/s";
        let (akid, secret, rec) =
            tokens::new_key(&*store, &*clock, &master, "ASIA", arn).await.unwrap();
        use sha2::Digest;
        let session = berth_model::iam::IamSession {
            access_key_id: akid.clone(),
            token_sha256: hex::encode(sha2::Sha256::digest(b"the-token")),
            expires_at: rec.created_at + 900.0,
            arn: arn.into(),
            role_arn: Some("arn:aws:iam::000000000000:role/r".into()),
            user_id: "AROA:s".into(),
            policy: None,
            policy_arns: vec![],
            tags: vec![],
        };
        let key = berth_model::iam::session_key(&akid);
        store.txn(berth_store::Txn::new().put(&key, records::encode(&session))).await.unwrap();
        let auth = Authenticator::new(
            store.clone(),
            clock.clone(),
            regions::lookup("us-east-1").unwrap(),
            "000000000000",
            Duration::minutes(5),
            master,
        );
        let request = |token: Option<&str>| {
            let signer = berth_sigv4::Signer::new(
                berth_sigv4::Credentials {
                    access_key_id: akid.clone(),
                    secret_access_key: secret.clone(),
                    session_token: token.map(str::to_string),
                },
                "us-east-1",
                "sts",
            );
            let headers = [("host", "localhost")];
            let parts =
                RequestParts { method: "POST", path: "/", query: "", headers: &headers, body: b"" };
            let mut b =
                http::Request::builder().method("POST").uri("/").header("host", "localhost");
            for (k, v) in signer.sign(&parts, clock.now()) {
                b = b.header(k, v);
            }
            b.body(()).unwrap().into_parts().0
        };
        let ok = auth.authenticate(&request(Some("the-token")), b"", "sts").await.unwrap();
        assert_eq!(ok.principal.arn, arn);
        let e = auth.authenticate(&request(None), b"", "sts").await.unwrap_err();
        assert_eq!(e.code, "UnrecognizedClientException");
        let e = auth.authenticate(&request(Some("other")), b"", "sts").await.unwrap_err();
        assert_eq!(e.code, "UnrecognizedClientException");
        clock.advance(std::time::Duration::from_secs(901));
        let e = auth.authenticate(&request(Some("the-token")), b"", "sts").await.unwrap_err();
        assert_eq!(e.code, "ExpiredTokenException");
        assert_eq!(e.message, "The security token included in the request is expired");
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
