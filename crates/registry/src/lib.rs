//! Berth's image registry data plane: the OCI Distribution Spec v1.1 API (`/v2/...`) as an
//! axum [`Router`], over content-addressed blob storage on disk ([`blobs`]) and a narrow
//! metadata trait ([`meta::Metadata`]) the control plane implements on its store.
//!
//! ```text
//!  docker push/pull ──> router (auth, routes, OCI error bodies)     http.rs
//!                        ├─> BlobStore: blobs/sha256/.., uploads/<id>  blobs.rs (streamed, verified, fsynced)
//!                        ├─> manifest::parse (4 media types)           manifest.rs (pure)
//!                        └─> dyn Metadata (repositories, manifests, tags, blob links)
//!  control plane ──> Registry::push_manifest (ECR PutImage), collect_garbage (gc.rs: pure mark + sweep)
//! ```
//! Contract: every request is authorized ([`Authorizer`]) for the ECR action it takes on its
//! repository ([`Action`], from its route and method: `http.rs`'s `required_action`) before
//! anything about it is revealed; a missing or bad credential answers `401` with
//! `WWW-Authenticate: Basic realm=...`, a refused one `403 DENIED` with the authorizer's
//! message. A cross-repository mount also needs [`Action::GetDownloadUrlForLayer`] on its
//! source (without it the request becomes an ordinary upload, as the spec says). Blobs are
//! served in large pieces read by one blocking thread per download, ranges included. Errors
//! are OCI error bodies (`{"errors":[{"code","message","detail"}]}`). A manifest is stored only once every blob it references is in its repository and every
//! manifest an index lists is stored. Nothing a client sends can make a handler panic.
#![forbid(unsafe_code)]

pub mod blobs;
pub mod digest;
pub mod gc;
mod http;
pub mod manifest;
pub mod meta;
pub mod upload;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::Router;

pub use blobs::{BlobError, BlobStore};
pub use digest::{Digest, Reference};
pub use gc::GcReport;
pub use meta::{MetaError, Metadata, NewManifest, RepoSettings, StoredManifest};

/// Largest manifest accepted, in bytes (ECR's limit is 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// What a request wants to do to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
    Delete,
}

/// The ECR permission a registry request needs, as ECR names it for the Docker Registry
/// API: what IAM policies and repository policies allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `/v2/` itself, or a path or method the API does not have: authentication only.
    Login,
    /// Reading a manifest or the referrers of one.
    BatchGetImage,
    /// Whether a blob is there (`HEAD`).
    BatchCheckLayerAvailability,
    /// Reading a blob (also what a cross-repository mount needs on its source).
    GetDownloadUrlForLayer,
    /// Listing tags.
    ListImages,
    /// Starting an upload (monolithic or mount included).
    InitiateLayerUpload,
    /// Sending a chunk of an upload, asking where it stands, cancelling it.
    UploadLayerPart,
    /// Finishing an upload.
    CompleteLayerUpload,
    /// Storing a manifest.
    PutImage,
    /// Deleting a manifest, a tag or a blob link.
    BatchDeleteImage,
}

impl Action {
    /// The IAM action, `ecr:...`; `None` for [`Action::Login`].
    pub fn iam_action(self) -> Option<&'static str> {
        Some(match self {
            Action::Login => return None,
            Action::BatchGetImage => "ecr:BatchGetImage",
            Action::BatchCheckLayerAvailability => "ecr:BatchCheckLayerAvailability",
            Action::GetDownloadUrlForLayer => "ecr:GetDownloadUrlForLayer",
            Action::ListImages => "ecr:ListImages",
            Action::InitiateLayerUpload => "ecr:InitiateLayerUpload",
            Action::UploadLayerPart => "ecr:UploadLayerPart",
            Action::CompleteLayerUpload => "ecr:CompleteLayerUpload",
            Action::PutImage => "ecr:PutImage",
            Action::BatchDeleteImage => "ecr:BatchDeleteImage",
        })
    }

    /// Which kind of access it is.
    pub fn access(self) -> Access {
        match self {
            Action::Login
            | Action::BatchGetImage
            | Action::BatchCheckLayerAvailability
            | Action::GetDownloadUrlForLayer
            | Action::ListImages => Access::Pull,
            Action::InitiateLayerUpload
            | Action::UploadLayerPart
            | Action::CompleteLayerUpload
            | Action::PutImage => Access::Push,
            Action::BatchDeleteImage => Access::Delete,
        }
    }
}

/// Why a request was not authorized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No credential, or one that is not valid (answered `401` with a Basic challenge).
    Unauthenticated(String),
    /// A valid credential that may not do this (`403 DENIED`).
    Denied(String),
}

/// Decides who may do what.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// The realm of the `WWW-Authenticate: Basic` challenge.
    fn realm(&self) -> String;
    /// Whether a request carrying `authorization` (the header, if any) may take `action` on
    /// `repository` (`None` with [`Action::Login`]: the `/v2/` base check). `extensions` are
    /// the request's (what the server put there about the connection, e.g. its peer).
    async fn authorize(
        &self,
        authorization: Option<&str>,
        extensions: &::http::Extensions,
        repository: Option<&str>,
        action: Action,
    ) -> Result<(), Denial>;
}

/// Lets every request through (tests, or a registry behind another gate).
pub struct AllowAll;

#[async_trait]
impl Authorizer for AllowAll {
    fn realm(&self) -> String {
        "berth".into()
    }
    async fn authorize(
        &self,
        _: Option<&str>,
        _: &::http::Extensions,
        _: Option<&str>,
        _: Action,
    ) -> Result<(), Denial> {
        Ok(())
    }
}

/// An error as the distribution API answers it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RegistryError {
    /// The OCI error code (`BLOB_UNKNOWN`, `MANIFEST_INVALID`...).
    pub code: &'static str,
    pub status: u16,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

impl RegistryError {
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self { code, status, message: message.into(), detail: None }
    }
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

impl From<BlobError> for RegistryError {
    fn from(e: BlobError) -> Self {
        match &e {
            BlobError::UploadUnknown(_) => Self::new("BLOB_UPLOAD_UNKNOWN", 404, e.to_string()),
            BlobError::DigestMismatch { .. } => Self::new("DIGEST_INVALID", 400, e.to_string()),
            BlobError::Body(_) => Self::new("BLOB_UPLOAD_INVALID", 400, e.to_string()),
            BlobError::Io { .. } => {
                tracing::error!(error = %e, "registry storage failed");
                Self::new("UNKNOWN", 500, "the registry could not read or write its storage")
            }
        }
    }
}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match &e {
            MetaError::NameUnknown(_) => Self::new("NAME_UNKNOWN", 404, e.to_string()),
            MetaError::TagImmutable { .. } => Self::new("TAG_INVALID", 400, e.to_string()),
            MetaError::Store(_) => {
                tracing::error!(error = %e, "registry metadata failed");
                Self::new("UNKNOWN", 500, "the registry could not read or write its metadata")
            }
        }
    }
}

/// A registry: blob storage, metadata and the authorizer.
pub struct Registry {
    blobs: BlobStore,
    meta: Arc<dyn Metadata>,
    auth: Arc<dyn Authorizer>,
    /// Held shared by whatever makes a blob live (upload finish, mount, manifest push),
    /// exclusively by the collector's sweep ([`gc`]).
    gc_lock: tokio::sync::RwLock<()>,
}

impl Registry {
    /// A registry keeping its blobs under `root`.
    pub fn open(
        root: &Path,
        meta: Arc<dyn Metadata>,
        auth: Arc<dyn Authorizer>,
    ) -> Result<Self, BlobError> {
        Ok(Self { blobs: BlobStore::open(root)?, meta, auth, gc_lock: Default::default() })
    }

    /// The `/v2/` API.
    pub fn router(self: Arc<Self>) -> Router {
        http::router(self)
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn metadata(&self) -> &Arc<dyn Metadata> {
        &self.meta
    }

    /// Checks a manifest pushed to `repo` (parses it, checks `expected` digest if given and
    /// that everything it references is there) and stores it, tagged `tag` if given. Its
    /// digest. The same path serves `PUT /v2/<name>/manifests/<ref>` and ECR's `PutImage`.
    pub async fn push_manifest(
        &self,
        repo: &str,
        content_type: Option<&str>,
        bytes: &[u8],
        tag: Option<&str>,
        expected: Option<&Digest>,
    ) -> Result<(Digest, manifest::Parsed), RegistryError> {
        if self.meta.repository(repo).await?.is_none() {
            return Err(MetaError::NameUnknown(repo.to_string()).into());
        }
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::new(
                "SIZE_INVALID",
                400,
                format!(
                    "the manifest is {} bytes; at most {MAX_MANIFEST_BYTES} are accepted",
                    bytes.len()
                ),
            ));
        }
        let parsed = manifest::parse(content_type, bytes).map_err(|e| match e {
            manifest::ManifestError::MediaType(_) => {
                RegistryError::new("MANIFEST_INVALID", 400, e.to_string())
            }
            manifest::ManifestError::Invalid(_) => {
                RegistryError::new("MANIFEST_INVALID", 400, e.to_string())
            }
        })?;
        let digest = Digest::of(bytes);
        if let Some(want) = expected
            && *want != digest
        {
            return Err(RegistryError::new(
                "DIGEST_INVALID",
                400,
                format!("the manifest's digest is {digest}, not {want} as its reference names"),
            ));
        }
        let _live = self.gc_lock.read().await;
        for b in parsed.blobs() {
            let linked = self.meta.blob_linked(repo, &b.digest).await?;
            if !linked || self.blobs.stat(&b.digest).await?.is_none() {
                return Err(RegistryError::new(
                    "MANIFEST_BLOB_UNKNOWN",
                    404,
                    format!(
                        "blob {} the manifest references is not in repository {repo}",
                        b.digest
                    ),
                )
                .with_detail(serde_json::json!({"digest": b.digest.as_str()})));
            }
        }
        for m in &parsed.manifests {
            if self.meta.manifest(repo, &Reference::Digest(m.digest.clone())).await?.is_none() {
                return Err(RegistryError::new(
                    "MANIFEST_BLOB_UNKNOWN",
                    404,
                    format!("manifest {} the index lists is not in repository {repo}", m.digest),
                )
                .with_detail(serde_json::json!({"digest": m.digest.as_str()})));
            }
        }
        let new = NewManifest {
            digest: digest.clone(),
            media_type: parsed.media_type.clone(),
            bytes: bytes.to_vec(),
            tag: tag.map(str::to_string),
            blobs: parsed.blobs().into_iter().map(|d| (d.digest, d.size)).collect(),
            children: parsed.manifests.iter().map(|d| d.digest.clone()).collect(),
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            image_size: parsed.image_size(),
            artifact_media_type: parsed.config.as_ref().map(|c| c.media_type.clone()),
        };
        self.meta.put_manifest(repo, new).await?;
        Ok((digest, parsed))
    }

    /// Collects garbage: deletes every blob no stored manifest references that was last
    /// written at least `grace` ago, and every upload session untouched for
    /// [`gc::UPLOAD_EXPIRY`] ([`gc`]).
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GcReport, RegistryError> {
        let _sweep = self.gc_lock.write().await;
        let on_disk = self.blobs.list().await?;
        let referenced = self.meta.referenced_blobs().await?;
        let doomed = gc::sweepable(&on_disk, &referenced, SystemTime::now(), grace);
        let mut report =
            GcReport { blobs_kept: on_disk.len() - doomed.len(), ..Default::default() };
        // Links first: a blob no repository lists is never served, so a crash between the two
        // steps leaves a file the next collection removes, never a link to nothing.
        self.meta.forget_blobs(&doomed).await?;
        // The blob directory may be shared with other servers, whose uploads this process's
        // lock does not hold off: a blob re-written since the decision is kept, the others
        // are set aside and come back should a manifest have been stored referencing one
        // meanwhile (a push through another server); only then are they deleted ([`gc`]).
        let now = SystemTime::now();
        let mut aside = vec![];
        for d in &doomed {
            let path = self.blobs.path(d);
            match gc::set_aside(&path, now, grace).await {
                Ok(true) => aside.push(d.clone()),
                Ok(false) => report.blobs_kept += 1,
                Err(source) => return Err(BlobError::Io { path, source }.into()),
            }
        }
        let referenced =
            if aside.is_empty() { referenced } else { self.meta.referenced_blobs().await? };
        for d in &aside {
            let path = self.blobs.path(d);
            let size = on_disk.iter().find(|b| &b.digest == d).map_or(0, |b| b.size);
            let back = referenced.contains(d);
            gc::settle(&path, back).await.map_err(|source| BlobError::Io { path, source })?;
            if back {
                report.blobs_kept += 1;
            } else {
                report.blobs_deleted += 1;
                report.bytes_freed += size;
            }
        }
        // Blobs a collection set aside and never settled (it crashed, or the server stopped).
        let root = self.blobs.path(&Digest::of(b""));
        if let Some(sha256) = root.parent().and_then(std::path::Path::parent) {
            let recovered = gc::recover_aside(sha256, &referenced, now)
                .await
                .map_err(|source| BlobError::Io { path: sha256.to_path_buf(), source })?;
            report.blobs_deleted += recovered;
        }
        let (purged, freed) =
            self.blobs.purge_abandoned(gc::UPLOAD_EXPIRY, SystemTime::now()).await?;
        report.uploads_purged = purged;
        report.upload_bytes_freed = freed;
        if purged > 0 {
            tracing::info!(uploads = purged, bytes = freed, "abandoned registry uploads discarded");
        }
        if report.blobs_deleted > 0 {
            tracing::info!(
                deleted = report.blobs_deleted,
                bytes = report.bytes_freed,
                kept = report.blobs_kept,
                "registry garbage collected"
            );
        }
        Ok(report)
    }
}
