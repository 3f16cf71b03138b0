//! The registry's metadata (repositories, manifests, tags, which blobs each repository holds)
//! behind a narrow trait, so the control plane keeps it in its own store and its ECR API and
//! this data plane agree on it; [`MemoryMetadata`] keeps it in memory for tests.
//!
//! Contract of every implementation:
//! * a repository must exist (created through the control plane) before anything is pushed
//!   to it: every call on an unknown repository is [`MetaError::NameUnknown`];
//! * [`Metadata::put_manifest`] stores the manifest and (when given) points the tag at it in
//!   one atomic step; in a repository with immutable tags, moving an existing tag to another
//!   digest is [`MetaError::TagImmutable`] and changes nothing;
//! * deleting a manifest removes every tag that points at it;
//! * [`Metadata::referenced_blobs`] is every blob some stored manifest of any repository
//!   references: what garbage collection must keep.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::digest::{Digest, Reference};

/// What the data plane needs to know of a repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoSettings {
    /// Tags may not be moved to another image (ECR's `IMMUTABLE`).
    pub immutable_tags: bool,
}

/// A stored manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A manifest to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// The tag to point at it, if pushed by tag.
    pub tag: Option<String>,
    /// The blobs it references, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// The manifests it lists (an index).
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
    /// Its config and layers' total size (ECR's `imageSizeInBytes`).
    pub image_size: u64,
    /// The media type of its config, when it has one.
    pub artifact_media_type: Option<String>,
}

/// Errors of the metadata store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("The repository with name '{0}' does not exist in the registry")]
    NameUnknown(String),
    #[error(
        "The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable."
    )]
    TagImmutable { repository: String, tag: String },
    #[error("metadata store: {0}")]
    Store(String),
}

/// The metadata the registry keeps (see the module header for the contract).
#[async_trait]
pub trait Metadata: Send + Sync + 'static {
    async fn repository(&self, repo: &str) -> Result<Option<RepoSettings>, MetaError>;
    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, MetaError>;
    async fn put_manifest(&self, repo: &str, manifest: NewManifest) -> Result<(), MetaError>;
    /// Deletes the manifest and its tags; false when absent.
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError>;
    /// Removes one tag (the manifest stays); false when absent.
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetaError>;
    /// The repository's tags, sorted.
    async fn tags(&self, repo: &str) -> Result<Vec<String>, MetaError>;
    /// The manifests whose `subject` is `digest`.
    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Vec<StoredManifest>, MetaError>;
    /// Records that `repo` holds blob `digest` (uploaded or mounted there).
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), MetaError>;
    /// Whether `repo` holds blob `digest`.
    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError>;
    /// Forgets that `repo` holds blob `digest`.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<(), MetaError>;
    /// Every blob a stored manifest references (see the module header).
    async fn referenced_blobs(&self) -> Result<HashSet<Digest>, MetaError>;
    /// Forgets every repository's link to these blobs (they were collected).
    async fn forget_blobs(&self, digests: &[Digest]) -> Result<(), MetaError>;
}

#[derive(Default)]
struct Repo {
    settings: RepoSettings,
    manifests: HashMap<Digest, (StoredManifest, NewManifest)>,
    tags: BTreeMap<String, Digest>,
    blobs: HashSet<Digest>,
}

/// An in-memory [`Metadata`], for tests.
#[derive(Default)]
pub struct MemoryMetadata {
    repos: Mutex<HashMap<String, Repo>>,
}

impl MemoryMetadata {
    /// Creates a repository.
    pub fn create_repository(&self, name: &str, settings: RepoSettings) {
        self.lock().insert(name.to_string(), Repo { settings, ..Default::default() });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Repo>> {
        self.repos.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with<T>(&self, repo: &str, f: impl FnOnce(&mut Repo) -> T) -> Result<T, MetaError> {
        let mut repos = self.lock();
        let r = repos.get_mut(repo).ok_or_else(|| MetaError::NameUnknown(repo.to_string()))?;
        Ok(f(r))
    }
}

#[async_trait]
impl Metadata for MemoryMetadata {
    async fn repository(&self, repo: &str) -> Result<Option<RepoSettings>, MetaError> {
        Ok(self.lock().get(repo).map(|r| r.settings.clone()))
    }
    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, MetaError> {
        self.with(repo, |r| {
            let digest = match reference {
                Reference::Digest(d) => Some(d.clone()),
                Reference::Tag(t) => r.tags.get(t).cloned(),
            };
            digest.and_then(|d| r.manifests.get(&d)).map(|(m, _)| m.clone())
        })
    }
    async fn put_manifest(&self, repo: &str, m: NewManifest) -> Result<(), MetaError> {
        self.with(repo, |r| {
            if let Some(tag) = &m.tag
                && r.settings.immutable_tags
                && r.tags.get(tag).is_some_and(|d| *d != m.digest)
            {
                return Err(MetaError::TagImmutable {
                    repository: repo.to_string(),
                    tag: tag.clone(),
                });
            }
            if let Some(tag) = &m.tag {
                r.tags.insert(tag.clone(), m.digest.clone());
            }
            let stored = StoredManifest {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                bytes: m.bytes.clone(),
            };
            r.manifests.insert(m.digest.clone(), (stored, m));
            Ok(())
        })?
    }
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        self.with(repo, |r| {
            r.tags.retain(|_, d| d != digest);
            r.manifests.remove(digest).is_some()
        })
    }
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetaError> {
        self.with(repo, |r| r.tags.remove(tag).is_some())
    }
    async fn tags(&self, repo: &str) -> Result<Vec<String>, MetaError> {
        self.with(repo, |r| r.tags.keys().cloned().collect())
    }
    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Vec<StoredManifest>, MetaError> {
        self.with(repo, |r| {
            let mut v: Vec<_> = r
                .manifests
                .values()
                .filter(|(_, n)| n.subject.as_ref() == Some(digest))
                .map(|(m, _)| m.clone())
                .collect();
            v.sort_by(|a, b| a.digest.cmp(&b.digest));
            v
        })
    }
    async fn link_blob(&self, repo: &str, digest: &Digest, _size: u64) -> Result<(), MetaError> {
        self.with(repo, |r| {
            r.blobs.insert(digest.clone());
        })
    }
    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        self.with(repo, |r| r.blobs.contains(digest))
    }
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<(), MetaError> {
        self.with(repo, |r| {
            r.blobs.remove(digest);
        })
    }
    async fn referenced_blobs(&self) -> Result<HashSet<Digest>, MetaError> {
        Ok(self
            .lock()
            .values()
            .flat_map(|r| {
                r.manifests.values().flat_map(|(_, n)| n.blobs.iter().map(|b| b.0.clone()))
            })
            .collect())
    }
    async fn forget_blobs(&self, digests: &[Digest]) -> Result<(), MetaError> {
        for r in self.lock().values_mut() {
            for d in digests {
                r.blobs.remove(d);
            }
        }
        Ok(())
    }
}
