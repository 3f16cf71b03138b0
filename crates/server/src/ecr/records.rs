//! ECR's records in the store and the registry's [`Metadata`] over them, so the ECR API and
//! the `/v2/` data plane read and write the same repositories, images and tags (and both
//! survive a crash: every write is one store transaction).
//!
//! Layout (in a region's view of the store; `!` cannot occur in a repository name, so a
//! repository's prefix never matches another's keys):
//! * `ecr/repos/<name>`: [`RepoRecord`];
//! * `ecr/images/<name>!<digest>`: [`ImageRecord`] (the manifest itself, small, is kept here);
//! * `ecr/tags/<name>!<tag>`: the digest the tag points at;
//! * `ecr/layers/<name>!<digest>`: a blob the repository holds ([`LayerRecord`]).
//!
//! Invariants: a tag record always names an image record of its repository (they are written
//! and deleted in the same transaction); in an `IMMUTABLE` repository a tag record, once
//! written, never changes its digest (the compare on the tag key makes the check atomic).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use berth_registry::meta::{MetaError, Metadata, NewManifest, RepoSettings, StoredManifest};
use berth_registry::{Digest, Reference};
use berth_store::{Range, Store, Txn};
use berth_wire::AwsError;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, epoch_seconds};
use crate::records::{self, Cas, encode};

pub const REPOS: &str = "ecr/repos/";
pub const IMAGES: &str = "ecr/images/";
pub const TAGS: &str = "ecr/tags/";
pub const LAYERS: &str = "ecr/layers/";

pub fn repo_key(name: &str) -> String {
    format!("{REPOS}{name}")
}
pub fn images_prefix(repo: &str) -> String {
    format!("{IMAGES}{repo}!")
}
pub fn image_key(repo: &str, digest: &str) -> String {
    format!("{IMAGES}{repo}!{digest}")
}
pub fn tags_prefix(repo: &str) -> String {
    format!("{TAGS}{repo}!")
}
pub fn tag_key(repo: &str, tag: &str) -> String {
    format!("{TAGS}{repo}!{tag}")
}
pub fn layers_prefix(repo: &str) -> String {
    format!("{LAYERS}{repo}!")
}
pub fn layer_key(repo: &str, digest: &str) -> String {
    format!("{LAYERS}{repo}!{digest}")
}
/// `ecr/lifecycle-previews/<name>`: the last lifecycle policy preview of a repository.
pub fn preview_key(repo: &str) -> String {
    format!("ecr/lifecycle-previews/{repo}")
}

/// A repository.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepoRecord {
    pub name: String,
    pub arn: String,
    pub registry_id: String,
    pub created_at: f64,
    /// `MUTABLE` or `IMMUTABLE`.
    pub image_tag_mutability: String,
    pub scan_on_push: bool,
    /// `AES256` (default), `KMS` or `KMS_DSSE`.
    pub encryption_type: String,
    #[serde(default)]
    pub kms_key: Option<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub lifecycle_policy: Option<String>,
    #[serde(default)]
    pub lifecycle_policy_updated_at: Option<f64>,
    #[serde(default)]
    pub repository_policy: Option<String>,
}

impl RepoRecord {
    pub fn immutable(&self) -> bool {
        self.image_tag_mutability == "IMMUTABLE"
    }
}

/// An image (a stored manifest).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub digest: String,
    pub media_type: String,
    pub manifest: String,
    pub size: u64,
    pub pushed_at: f64,
    pub blobs: Vec<(String, u64)>,
    #[serde(default)]
    pub children: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub artifact_media_type: Option<String>,
}

/// A blob a repository holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LayerRecord {
    pub size: u64,
    pub linked_at: f64,
}

/// The tag's digest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TagRecord {
    pub digest: String,
}

fn meta_err(e: AwsError) -> MetaError {
    MetaError::Store(format!("{}: {}", e.code, e.message))
}

/// The part after `prefix` of each key of a range read.
fn suffixes(recs: &[berth_store::Record], prefix: &str) -> Vec<String> {
    recs.iter().filter_map(|r| r.key.strip_prefix(prefix).map(str::to_string)).collect()
}

/// The registry's metadata over one region's view of the store.
pub struct EcrMetadata {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
}

impl EcrMetadata {
    pub async fn repo(&self, name: &str) -> Result<Option<(RepoRecord, u64)>, AwsError> {
        records::get(&*self.store, &repo_key(name)).await
    }

    async fn require(&self, name: &str) -> Result<u64, MetaError> {
        match self.repo(name).await.map_err(meta_err)? {
            Some((_, rev)) => Ok(rev),
            None => Err(MetaError::NameUnknown(name.to_string())),
        }
    }

    /// Every tag of `repo` with its digest, in tag order.
    pub async fn tag_list(&self, repo: &str) -> Result<Vec<(String, String)>, AwsError> {
        let prefix = tags_prefix(repo);
        let recs = self.store.range(Range::prefix(&prefix)).await.map_err(crate::error::store)?;
        let names = suffixes(&recs, &prefix);
        let tags = records::decode_all::<TagRecord>(recs)?;
        Ok(names.into_iter().zip(tags).map(|(n, (t, _))| (n, t.digest)).collect())
    }

    /// Every image of `repo`, in digest order.
    pub async fn images(&self, repo: &str) -> Result<Vec<ImageRecord>, AwsError> {
        let recs = self
            .store
            .range(Range::prefix(&images_prefix(repo)))
            .await
            .map_err(crate::error::store)?;
        Ok(records::decode_all::<ImageRecord>(recs)?.into_iter().map(|(i, _)| i).collect())
    }

    pub async fn image(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<(ImageRecord, u64)>, AwsError> {
        records::get(&*self.store, &image_key(repo, digest)).await
    }

    /// Deletes images (and every tag naming them) in one transaction per image; the ones
    /// actually deleted.
    pub async fn delete_images(
        &self,
        repo: &str,
        digests: &[String],
    ) -> Result<Vec<String>, AwsError> {
        let mut deleted = vec![];
        for d in digests {
            let mut cas = Cas::new(&*self.store, format!("image {repo}@{d}"));
            loop {
                cas.attempt().await?;
                let Some((_, rev)) = self.image(repo, d).await? else { break };
                let mut txn = Txn::new().when(image_key(repo, d), rev).delete(image_key(repo, d));
                let prefix = tags_prefix(repo);
                let recs =
                    self.store.range(Range::prefix(&prefix)).await.map_err(crate::error::store)?;
                for r in recs {
                    let t: TagRecord = serde_json::from_slice(&r.value)
                        .map_err(|e| crate::error::corrupt(&r.key, e))?;
                    if t.digest == *d {
                        txn = txn.when(r.key.clone(), r.mod_revision).delete(r.key);
                    }
                }
                if cas.commit(txn).await? {
                    deleted.push(d.clone());
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

#[async_trait]
impl Metadata for EcrMetadata {
    async fn repository(&self, repo: &str) -> Result<Option<RepoSettings>, MetaError> {
        Ok(self
            .repo(repo)
            .await
            .map_err(meta_err)?
            .map(|(r, _)| RepoSettings { immutable_tags: r.immutable() }))
    }

    async fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, MetaError> {
        self.require(repo).await?;
        let digest = match reference {
            Reference::Digest(d) => d.to_string(),
            Reference::Tag(t) => {
                match records::get::<TagRecord>(&*self.store, &tag_key(repo, t))
                    .await
                    .map_err(meta_err)?
                {
                    Some((t, _)) => t.digest,
                    None => return Ok(None),
                }
            }
        };
        let Some((img, _)) = self.image(repo, &digest).await.map_err(meta_err)? else {
            return Ok(None);
        };
        let digest = Digest::parse(&img.digest).map_err(|e| MetaError::Store(e.to_string()))?;
        Ok(Some(StoredManifest {
            digest,
            media_type: img.media_type,
            bytes: img.manifest.into_bytes(),
        }))
    }

    async fn put_manifest(&self, repo: &str, m: NewManifest) -> Result<(), MetaError> {
        let digest = m.digest.to_string();
        let manifest = String::from_utf8(m.bytes.clone())
            .map_err(|_| MetaError::Store("the manifest is not UTF-8".into()))?;
        let mut cas = Cas::new(&*self.store, format!("image {repo}@{digest}"));
        loop {
            cas.attempt().await.map_err(meta_err)?;
            let Some((rec, repo_rev)) = self.repo(repo).await.map_err(meta_err)? else {
                return Err(MetaError::NameUnknown(repo.to_string()));
            };
            let ikey = image_key(repo, &digest);
            let existing = self.image(repo, &digest).await.map_err(meta_err)?;
            let image_rev = existing.as_ref().map_or(0, |(_, r)| *r);
            let image = ImageRecord {
                digest: digest.clone(),
                media_type: m.media_type.clone(),
                manifest: manifest.clone(),
                size: m.image_size,
                // A re-push of the same image keeps its first push time.
                pushed_at: existing
                    .as_ref()
                    .map_or_else(|| epoch_seconds(self.clock.now()), |(i, _)| i.pushed_at),
                blobs: m.blobs.iter().map(|(d, n)| (d.to_string(), *n)).collect(),
                children: m.children.iter().map(|d| d.to_string()).collect(),
                subject: m.subject.as_ref().map(|d| d.to_string()),
                artifact_media_type: m.artifact_media_type.clone(),
            };
            let mut txn = Txn::new().when(repo_key(repo), repo_rev).when(&ikey, image_rev);
            if existing.as_ref().is_none_or(|(i, _)| *i != image) {
                txn = txn.put(&ikey, encode(&image));
            }
            if let Some(tag) = &m.tag {
                let tkey = tag_key(repo, tag);
                let current =
                    records::get::<TagRecord>(&*self.store, &tkey).await.map_err(meta_err)?;
                let tag_rev = current.as_ref().map_or(0, |(_, r)| *r);
                match current {
                    Some((t, _)) if t.digest == digest => {}
                    Some(_) if rec.immutable() => {
                        return Err(MetaError::TagImmutable {
                            repository: repo.to_string(),
                            tag: tag.clone(),
                        });
                    }
                    _ => {
                        txn = txn
                            .when(&tkey, tag_rev)
                            .put(&tkey, encode(&TagRecord { digest: digest.clone() }))
                    }
                }
            }
            if cas.commit(txn).await.map_err(meta_err)? {
                return Ok(());
            }
        }
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        self.require(repo).await?;
        let deleted = self.delete_images(repo, &[digest.to_string()]).await.map_err(meta_err)?;
        Ok(!deleted.is_empty())
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetaError> {
        self.require(repo).await?;
        let key = tag_key(repo, tag);
        let Some((_, rev)) =
            records::get::<TagRecord>(&*self.store, &key).await.map_err(meta_err)?
        else {
            return Ok(false);
        };
        records::commit(&*self.store, Txn::new().when(&key, rev).delete(&key))
            .await
            .map_err(meta_err)
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>, MetaError> {
        self.require(repo).await?;
        Ok(self.tag_list(repo).await.map_err(meta_err)?.into_iter().map(|(t, _)| t).collect())
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Vec<StoredManifest>, MetaError> {
        self.require(repo).await?;
        let mut out = vec![];
        for i in self.images(repo).await.map_err(meta_err)? {
            if i.subject.as_deref() == Some(digest.as_str())
                && let Ok(d) = Digest::parse(&i.digest)
            {
                out.push(StoredManifest {
                    digest: d,
                    media_type: i.media_type,
                    bytes: i.manifest.into_bytes(),
                });
            }
        }
        Ok(out)
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), MetaError> {
        let repo_rev = self.require(repo).await?;
        let rec = LayerRecord { size, linked_at: epoch_seconds(self.clock.now()) };
        let txn = Txn::new()
            .when(repo_key(repo), repo_rev)
            .put(layer_key(repo, digest.as_str()), encode(&rec));
        match records::commit(&*self.store, txn).await.map_err(meta_err)? {
            true => Ok(()),
            // The repository changed meanwhile: it may have been deleted.
            false => match self.require(repo).await {
                Ok(_) => Box::pin(self.link_blob(repo, digest, size)).await,
                Err(e) => Err(e),
            },
        }
    }

    async fn blob_linked(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        let got = self.store.get(&layer_key(repo, digest.as_str())).await;
        Ok(got.map_err(|e| MetaError::Store(e.to_string()))?.is_some())
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<(), MetaError> {
        records::commit(&*self.store, Txn::new().delete(layer_key(repo, digest.as_str())))
            .await
            .map_err(meta_err)?;
        Ok(())
    }

    async fn referenced_blobs(&self) -> Result<HashSet<Digest>, MetaError> {
        let recs = self
            .store
            .range(Range::prefix(IMAGES))
            .await
            .map_err(|e| MetaError::Store(e.to_string()))?;
        let mut out = HashSet::new();
        for (i, _) in records::decode_all::<ImageRecord>(recs).map_err(meta_err)? {
            for (d, _) in i.blobs {
                if let Ok(d) = Digest::parse(&d) {
                    out.insert(d);
                }
            }
        }
        Ok(out)
    }

    async fn forget_blobs(&self, digests: &[Digest]) -> Result<(), MetaError> {
        if digests.is_empty() {
            return Ok(());
        }
        let doomed: HashSet<&str> = digests.iter().map(Digest::as_str).collect();
        let recs = self
            .store
            .range(Range::prefix(LAYERS))
            .await
            .map_err(|e| MetaError::Store(e.to_string()))?;
        let mut txn = Txn::new();
        for r in recs {
            if r.key.rsplit_once('!').is_some_and(|(_, d)| doomed.contains(d)) {
                txn = txn.delete(r.key);
            }
        }
        if !txn.ops.is_empty() {
            records::commit(&*self.store, txn).await.map_err(meta_err)?;
        }
        Ok(())
    }
}
