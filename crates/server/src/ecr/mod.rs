//! Amazon ECR (issue #14): the JSON 1.1 API (`AmazonEC2ContainerRegistry_V20150921`, wire
//! types generated from botocore's `ecr` model for the operations Berth implements) over the
//! same records the registry's `/v2/` data plane ([`berth_registry`]) reads and writes
//! ([`records`]), and the registry's credentials ([`token`]).
//!
//! Contract:
//! * requests are SigV4-signed for `ecr` and routed here by their credential scope; every
//!   answer is an AWS JSON error or the model's output shape;
//! * a call on a repository is authorized with its repository policy, as a registry request
//!   is ([`access`]: one decision, one policy cache);
//! * one registry serves the server's default region: ECR calls signed for another region
//!   are refused with `InvalidParameterException` naming the region to use;
//! * `repositoryUri` is `<registry address>/<name>` (the address `--registry-listen` bound,
//!   or `--registry-address`); GetAuthorizationToken's `proxyEndpoint` is
//!   `http://<registry address>`;
//! * PutImage goes through [`berth_registry::Registry::push_manifest`], the path `docker
//!   push` takes, so both enforce the same checks (layers present, tag immutability);
//! * deleting an image never deletes blobs: garbage collection does, later ([`berth_registry::gc`]).

pub(crate) mod access;
mod images;
pub mod lifecycle;
pub mod records;
mod repositories;
pub mod token;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_model::regions::Region;
use berth_registry::{Digest, Registry};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::common;
use berth_wire::ecr as wire;
use wire::ErrorCode;

use crate::App;
use crate::clock::{Clock, epoch_seconds};
use crate::ecs::RequestContext;
use crate::records::{self as recs, Cas, encode};
use records::{EcrMetadata, ImageRecord, RepoRecord};

/// The registry as the control plane runs it.
pub(crate) struct EcrService {
    pub registry: Arc<Registry>,
    pub meta: Arc<EcrMetadata>,
    /// `HOST:PORT` clients push to.
    pub address: String,
    pub token_key: Arc<token::TokenKey>,
    pub clock: Arc<dyn Clock>,
    pub region: Region,
    pub account_id: String,
    pub gc_interval: std::time::Duration,
    pub gc_grace: std::time::Duration,
    /// Finds roles and sessions.
    pub(crate) iam: Arc<crate::iam::Iam>,
    /// Decides registry requests ([`token::TokenAuthorizer`]) and API calls on repositories.
    pub(crate) access: Arc<access::RepositoryAccess>,
}

impl EcrService {
    /// Binds the registry's port and opens its storage (`DATA_DIR/registry`); its token key is
    /// derived from `master`; its requests are decided with `iam`. Nothing when no registry
    /// is configured.
    pub(crate) async fn start(
        config: &crate::ServerConfig,
        view: Arc<dyn berth_store::Store>,
        clock: Arc<dyn Clock>,
        region: Region,
        master: &crate::auth::MasterKey,
        iam: Arc<crate::iam::Iam>,
    ) -> Result<(Option<tokio::net::TcpListener>, Option<Arc<Self>>), crate::StartError> {
        let Some(addr) = config.registry.listen else { return Ok((None, None)) };
        let listen_err = |source| crate::StartError::Listen { addr, source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen_err)?;
        let mut bound = listener.local_addr().map_err(listen_err)?;
        if bound.ip().is_unspecified() {
            bound.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let address = config.registry.address.clone().unwrap_or_else(|| bound.to_string());
        let token_key =
            Arc::new(token::TokenKey::new(master.derive(token::KEY_LABEL), &config.account_id));
        let meta = Arc::new(EcrMetadata { store: view, clock: clock.clone() });
        let access = Arc::new(access::RepositoryAccess::new(
            iam.clone(),
            meta.clone(),
            format!(
                "arn:{}:ecr:{}:{}:repository/",
                region.partition, region.name, config.account_id
            ),
        ));
        let authorizer = Arc::new(token::TokenAuthorizer::new(
            token_key.clone(),
            clock.clone(),
            format!("http://{address}/"),
            access.clone(),
            region.name.to_string(),
        ));
        let root =
            config.registry.blob_dir.clone().unwrap_or_else(|| config.data_dir.join("registry"));
        if config.etcd.is_some() && config.registry.blob_dir.is_none() {
            tracing::warn!(
                root = %root.display(),
                "the registry keeps its blobs in this server's data directory: with several servers on one etcd store, give them one shared --registry-blob-dir, or an image pushed through one cannot be pulled through another"
            );
        }
        let registry = Registry::open(&root, meta.clone(), authorizer).map_err(|e| {
            crate::StartError::Config(format!("cannot open the registry storage: {e}"))
        })?;
        let svc = Self {
            registry: Arc::new(registry),
            meta,
            address,
            token_key,
            clock,
            region,
            account_id: config.account_id.clone(),
            gc_interval: config.registry.gc_interval,
            gc_grace: config.registry.gc_grace,
            iam,
            access,
        };
        Ok((Some(listener), Some(Arc::new(svc))))
    }

    /// Serves the registry on `listener` until `down` turns true, and runs its collection
    /// and lifecycle loop until `stop` does, on the leader only (`leading`: its store writes
    /// carry the term's fence; the blob directory may be shared by every server). Uploads may
    /// take long: the body timeout is an hour, not the API's.
    pub(crate) fn spawn(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: &tokio::sync::watch::Sender<bool>,
        leading: crate::Leading,
        mut limits: berth_serve::Limits,
        mut down: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        crate::supervise_leading(
            "registry garbage collection".into(),
            stop,
            leading,
            move |mut stop| {
                let me = me.clone();
                async move {
                    loop {
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => return,
                            _ = tokio::time::sleep(me.gc_interval) => {}
                        }
                        me.housekeeping(me.gc_grace).await;
                    }
                }
            },
        );
        limits.body_read_timeout = std::time::Duration::from_secs(3600);
        let router = self.registry.clone().router();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = down.wait_for(|d| *d).await;
            };
            if let Err(e) = berth_serve::serve(listener, router, limits, stopped).await {
                tracing::error!(error = %e, "the registry stopped serving");
            }
        })
    }

    /// Applies lifecycle policies, then collects blobs unreferenced for `grace`.
    pub async fn housekeeping(&self, grace: std::time::Duration) -> berth_registry::GcReport {
        if let Err(e) = self.apply_lifecycle_policies().await {
            tracing::warn!(error = %e.message, "applying lifecycle policies failed");
        }
        match self.registry.collect_garbage(grace).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "registry garbage collection failed");
                Default::default()
            }
        }
    }
}

/// The ECR API of the registry's region.
pub(crate) struct Ecr<'a> {
    svc: &'a EcrService,
}

fn invalid(message: impl Into<String>) -> AwsError {
    ErrorCode::InvalidParameterException.with(message)
}

impl EcrService {
    fn arn(&self, name: &str) -> String {
        format!(
            "arn:{}:ecr:{}:{}:repository/{name}",
            self.region.partition, self.region.name, self.account_id
        )
    }

    fn view(&self, r: &RepoRecord) -> wire::Repository {
        wire::Repository {
            repository_arn: Some(r.arn.clone()),
            registry_id: Some(r.registry_id.clone()),
            repository_name: Some(r.name.clone()),
            repository_uri: Some(format!("{}/{}", self.address, r.name)),
            created_at: Some(r.created_at),
            image_tag_mutability: Some(if r.immutable() {
                wire::ImageTagMutability::Immutable
            } else {
                wire::ImageTagMutability::Mutable
            }),
            image_scanning_configuration: Some(wire::ImageScanningConfiguration {
                scan_on_push: Some(r.scan_on_push),
            }),
            encryption_configuration: Some(wire::EncryptionConfiguration {
                encryption_type: Some(match r.encryption_type.as_str() {
                    "KMS" => wire::EncryptionType::Kms,
                    "KMS_DSSE" => wire::EncryptionType::KmsDsse,
                    _ => wire::EncryptionType::Aes256,
                }),
                kms_key: r.kms_key.clone(),
            }),
            ..Default::default()
        }
    }

    fn not_found(&self, name: &str) -> AwsError {
        ErrorCode::RepositoryNotFoundException.with(format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            self.account_id
        ))
    }

    fn check_registry_id(&self, id: Option<&str>) -> Result<(), AwsError> {
        match id {
            Some(id) if id != self.account_id => Err(invalid(format!(
                "registryId: '{id}' is not this account's registry ('{}').",
                self.account_id
            ))),
            _ => Ok(()),
        }
    }

    async fn repo(&self, name: Option<&str>) -> Result<(RepoRecord, u64), AwsError> {
        let name = name.unwrap_or_default();
        self.meta.repo(name).await?.ok_or_else(|| self.not_found(name))
    }

    /// Edits a repository record in place.
    async fn update_repo(
        &self,
        name: Option<&str>,
        f: impl Fn(&mut RepoRecord),
    ) -> Result<RepoRecord, AwsError> {
        let name = name.unwrap_or_default();
        let key = records::repo_key(name);
        let mut cas = Cas::new(&*self.meta.store, format!("repository {name}"));
        loop {
            cas.attempt().await?;
            let (mut rec, rev) = self.repo(Some(name)).await?;
            f(&mut rec);
            if cas.commit(Txn::new().when(&key, rev).put(&key, encode(&rec))).await? {
                return Ok(rec);
            }
        }
    }

    /// The repository an ARN names.
    fn repo_of_arn(&self, arn: Option<&str>) -> Result<String, AwsError> {
        let arn = arn.unwrap_or_default();
        let prefix = format!(
            "arn:{}:ecr:{}:{}:repository/",
            self.region.partition, self.region.name, self.account_id
        );
        arn.strip_prefix(&prefix)
            .filter(|n| berth_registry::digest::valid_repository(n).is_ok())
            .map(str::to_string)
            .ok_or_else(|| {
                invalid(format!(
                    "Invalid parameter at 'resourceArn': '{arn}' is not the ARN of a repository of this registry ({prefix}NAME)."
                ))
            })
    }
}

/// Tags sorted by key, validated (ECR: at most 50, keys 1-128, values up to 256).
fn merge_tags(
    current: &[(String, String)],
    add: &[wire::Tag],
) -> Result<Vec<(String, String)>, AwsError> {
    let mut map: BTreeMap<String, String> = current.iter().cloned().collect();
    for t in add {
        let key = t.key.clone().unwrap_or_default();
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
            return Err(ErrorCode::InvalidTagParameterException.with(format!(
                "Tag key '{key}' is invalid: 1 to 128 characters, not starting with 'aws:'."
            )));
        }
        let value = t.value.clone().unwrap_or_default();
        if value.len() > 256 {
            return Err(ErrorCode::InvalidTagParameterException
                .with(format!("The value of tag '{key}' is longer than 256 characters.")));
        }
        map.insert(key, value);
    }
    if map.len() > 50 {
        return Err(ErrorCode::TooManyTagsException
            .with("A repository can have at most 50 tags.".to_string()));
    }
    Ok(map.into_iter().collect())
}

fn image_id(digest: &str, tag: Option<&str>) -> wire::ImageIdentifier {
    wire::ImageIdentifier {
        image_digest: Some(digest.to_string()),
        image_tag: tag.map(str::to_string),
    }
}

fn describe_id(id: &wire::ImageIdentifier) -> String {
    let mut parts = vec![];
    if let Some(d) = &id.image_digest {
        parts.push(format!("imageDigest:'{d}'"));
    }
    if let Some(t) = &id.image_tag {
        parts.push(format!("imageTag:'{t}'"));
    }
    format!("{{{}}}", parts.join(", "))
}

/// What an image identifier resolves to.
enum Resolved {
    Found(ImageRecord),
    Failure(wire::ImageFailure),
}

fn failure(id: &wire::ImageIdentifier, code: wire::ImageFailureCode, reason: &str) -> Resolved {
    Resolved::Failure(wire::ImageFailure {
        image_id: Some(id.clone()),
        failure_code: Some(code),
        failure_reason: Some(reason.to_string()),
    })
}

impl EcrService {
    /// Resolves an image identifier in `repo` (`tags`: the repository's tag -> digest).
    async fn resolve(
        &self,
        repo: &str,
        tags: &BTreeMap<String, String>,
        id: &wire::ImageIdentifier,
    ) -> Result<Resolved, AwsError> {
        use wire::ImageFailureCode as F;
        let by_tag = match &id.image_tag {
            Some(t) => match tags.get(t) {
                Some(d) => Some(d.clone()),
                None => return Ok(failure(id, F::ImageNotFound, "Requested image not found")),
            },
            None => None,
        };
        let digest = match (&id.image_digest, by_tag) {
            (Some(d), Some(t)) if *d != t => {
                return Ok(failure(
                    id,
                    F::ImageTagDoesNotMatchDigest,
                    "Invalid parameter: the image tag does not match the digest",
                ));
            }
            (Some(d), _) => {
                if Digest::parse(d).is_err() {
                    return Ok(failure(
                        id,
                        F::InvalidImageDigest,
                        "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
                    ));
                }
                d.clone()
            }
            (None, Some(t)) => t,
            (None, None) => {
                return Ok(failure(
                    id,
                    F::MissingDigestAndTag,
                    "Invalid request parameters: both tag and digest cannot be null",
                ));
            }
        };
        match self.meta.image(repo, &digest).await? {
            Some((img, _)) => Ok(Resolved::Found(img)),
            None => Ok(failure(id, F::ImageNotFound, "Requested image not found")),
        }
    }

    async fn tag_map(&self, repo: &str) -> Result<BTreeMap<String, String>, AwsError> {
        Ok(self.meta.tag_list(repo).await?.into_iter().collect())
    }

    fn detail(&self, repo: &str, img: &ImageRecord, tags: &[String]) -> wire::ImageDetail {
        wire::ImageDetail {
            registry_id: Some(self.account_id.clone()),
            repository_name: Some(repo.to_string()),
            image_digest: Some(img.digest.clone()),
            image_tags: (!tags.is_empty()).then(|| tags.to_vec()),
            image_size_in_bytes: Some(img.size as i64),
            image_pushed_at: Some(img.pushed_at),
            image_manifest_media_type: Some(img.media_type.clone()),
            artifact_media_type: img.artifact_media_type.clone(),
            subject_manifest_digest: img.subject.clone(),
            image_status: Some(wire::ImageStatus::Active),
            ..Default::default()
        }
    }
}

/// One page of `items` (sorted by their key) after the token's key.
fn page<T>(
    items: Vec<(String, T)>,
    max_results: Option<i32>,
    next_token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let limit = match max_results {
        None => max,
        Some(n) if n >= 1 && n as usize <= 1000 => n as usize,
        Some(n) => return Err(invalid(format!("maxResults must be between 1 and 1000; got {n}."))),
    };
    let after = match next_token {
        None | Some("") => None,
        Some(t) => Some(
            URL_SAFE_NO_PAD.decode(t).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(
                || {
                    invalid(
                        "Invalid parameter at 'nextToken': use the nextToken of the previous page.",
                    )
                },
            )?,
        ),
    };
    let mut rest: Vec<(String, T)> =
        items.into_iter().filter(|(k, _)| after.as_ref().is_none_or(|a| k > a)).collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let token = if more { rest.last().map(|(k, _)| URL_SAFE_NO_PAD.encode(k)) } else { None };
    Ok((rest.into_iter().map(|(_, t)| t).collect(), token))
}

impl wire::AuthorizationApi<RequestContext> for Ecr<'_> {
    /// The token carries the caller ([`token::Holder`]); a session's token expires with the
    /// session at the latest.
    async fn get_authorization_token(
        &self,
        ctx: &RequestContext,
        input: wire::GetAuthorizationTokenRequest,
    ) -> Result<wire::GetAuthorizationTokenResponse, AwsError> {
        let s = self.svc;
        for id in input.registry_ids.iter().flatten() {
            s.check_registry_id(Some(id))?;
        }
        let holder = token::Holder::caller(&ctx.principal);
        let mut expiry = i64::MAX;
        if !holder.access_key_id.is_empty()
            && let Some((session, _)) = crate::records::get::<berth_model::iam::IamSession>(
                &*s.iam.store,
                &berth_model::iam::session_key(&holder.access_key_id),
            )
            .await?
        {
            expiry = session.expires_at as i64;
        }
        Ok(wire::GetAuthorizationTokenResponse {
            authorization_data: Some(vec![s.authorization_data(&holder, expiry)]),
        })
    }
}

impl wire::TagsApi<RequestContext> for Ecr<'_> {
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::TagResourceRequest,
    ) -> Result<wire::TagResourceResponse, AwsError> {
        let s = self.svc;
        let name = s.repo_of_arn(input.resource_arn.as_deref())?;
        let add = input.tags.unwrap_or_default();
        let (current, _) = s.repo(Some(&name)).await?;
        merge_tags(&current.tags, &add)?;
        s.update_repo(Some(&name), |r| {
            if let Ok(t) = merge_tags(&r.tags, &add) {
                r.tags = t;
            }
        })
        .await?;
        Ok(wire::TagResourceResponse {})
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagResourceRequest,
    ) -> Result<wire::UntagResourceResponse, AwsError> {
        let s = self.svc;
        let name = s.repo_of_arn(input.resource_arn.as_deref())?;
        let keys: HashSet<String> = input.tag_keys.unwrap_or_default().into_iter().collect();
        s.update_repo(Some(&name), |r| r.tags.retain(|(k, _)| !keys.contains(k))).await?;
        Ok(wire::UntagResourceResponse {})
    }

    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::ListTagsForResourceRequest,
    ) -> Result<wire::ListTagsForResourceResponse, AwsError> {
        let s = self.svc;
        let name = s.repo_of_arn(input.resource_arn.as_deref())?;
        let (rec, _) = s.repo(Some(&name)).await?;
        Ok(wire::ListTagsForResourceResponse {
            tags: Some(
                rec.tags
                    .into_iter()
                    .map(|(k, v)| wire::Tag { key: Some(k), value: Some(v) })
                    .collect(),
            ),
        })
    }
}

/// A repository policy: stored and returned as given once it is a JSON IAM policy document
/// (an object with a `Statement`) that parses as a resource policy; the registry and the API
/// enforce it with the caller's IAM policies ([`access`]).
fn check_policy_text(text: &str) -> Result<(), AwsError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        invalid(format!("Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided' ({e})"))
    })?;
    if !v.is_object() || v.get("Statement").is_none() {
        return Err(invalid(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided' (an IAM policy document with a Statement)",
        ));
    }
    berth_iam_policy::Policy::parse(text, berth_iam_policy::PolicyKind::Resource).map_err(|e| {
        invalid(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided' ({e})"
        ))
    })?;
    Ok(())
}

impl EcrService {
    fn policy_not_found(&self, repo: &str) -> AwsError {
        ErrorCode::RepositoryPolicyNotFoundException.with(format!(
            "Repository policy does not exist for the repository with name '{repo}' in the registry with id '{}'",
            self.account_id
        ))
    }
}

impl wire::PoliciesApi<RequestContext> for Ecr<'_> {
    async fn set_repository_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::SetRepositoryPolicyRequest,
    ) -> Result<wire::SetRepositoryPolicyResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let text = input.policy_text.unwrap_or_default();
        check_policy_text(&text)?;
        let rec = s
            .update_repo(input.repository_name.as_deref(), |r| {
                r.repository_policy = Some(text.clone())
            })
            .await?;
        Ok(wire::SetRepositoryPolicyResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            policy_text: Some(text),
        })
    }

    async fn get_repository_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::GetRepositoryPolicyRequest,
    ) -> Result<wire::GetRepositoryPolicyResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (rec, _) = s.repo(input.repository_name.as_deref()).await?;
        let text = rec.repository_policy.ok_or_else(|| s.policy_not_found(&rec.name))?;
        Ok(wire::GetRepositoryPolicyResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            policy_text: Some(text),
        })
    }

    async fn delete_repository_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteRepositoryPolicyRequest,
    ) -> Result<wire::DeleteRepositoryPolicyResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (rec, _) = s.repo(input.repository_name.as_deref()).await?;
        let text = rec.repository_policy.clone().ok_or_else(|| s.policy_not_found(&rec.name))?;
        s.update_repo(Some(&rec.name), |r| r.repository_policy = None).await?;
        Ok(wire::DeleteRepositoryPolicyResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            policy_text: Some(text),
        })
    }
}

impl wire::Api for Ecr<'_> {
    type Context = RequestContext;
    type Repositories = Self;
    type Images = Self;
    type Authorization = Self;
    type Lifecycle = Self;
    type Policies = Self;
    type Tags = Self;
    fn repositories(&self) -> &Self {
        self
    }
    fn images(&self) -> &Self {
        self
    }
    fn authorization(&self) -> &Self {
        self
    }
    fn lifecycle(&self) -> &Self {
        self
    }
    fn policies(&self) -> &Self {
        self
    }
    fn tags(&self) -> &Self {
        self
    }
}

/// Serves one ECR request (already routed here by its `ecr` credential scope).
pub(crate) async fn serve(
    app: &App,
    req: axum::extract::Request,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let call = crate::protocol::json_call(
        app,
        req,
        request_id,
        &crate::protocol::JsonService {
            signing_name: wire::SIGNING_NAME,
            target_prefix: wire::TARGET_PREFIX,
            title: "Amazon ECR",
            from_name: wire::Operation::from_name,
            name: wire::Operation::name,
        },
    )
    .await?;
    let Some(svc) = app.ecr.as_ref() else {
        return Err(invalid("This Berth server runs no registry (it was started without one)."));
    };
    if call.region != svc.region {
        return Err(invalid(format!(
            "Berth's registry serves region {} (the server's default region); sign ECR requests for {} (got {}).",
            svc.region.name, svc.region.name, call.region.name
        )));
    }
    wire::dispatch(&Ecr { svc }, &call.ctx, call.op, &call.body).await
}

#[cfg(test)]
mod tests;
