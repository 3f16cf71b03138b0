//! ECR's image operations (the `ImagesApi` group): list, describe, get, put and delete
//! images, and layer availability; every write goes through the registry's one push path.

use super::*;

impl wire::ImagesApi<RequestContext> for Ecr<'_> {
    async fn list_images(
        &self,
        _ctx: &RequestContext,
        input: wire::ListImagesRequest,
    ) -> Result<wire::ListImagesResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (repo, _) = s.repo(input.repository_name.as_deref()).await?;
        let status = input.filter.and_then(|f| f.tag_status);
        let tags = s.meta.tag_list(&repo.name).await?;
        let tagged: HashSet<&str> = tags.iter().map(|(_, d)| d.as_str()).collect();
        let mut ids: Vec<(String, wire::ImageIdentifier)> = vec![];
        if !matches!(status, Some(wire::TagStatus::Untagged)) {
            for (t, d) in &tags {
                ids.push((format!("t{t}"), image_id(d, Some(t))));
            }
        }
        if !matches!(status, Some(wire::TagStatus::Tagged)) {
            for img in s.meta.images(&repo.name).await? {
                if !tagged.contains(img.digest.as_str()) {
                    ids.push((format!("u{}", img.digest), image_id(&img.digest, None)));
                }
            }
        }
        let (image_ids, next_token) =
            page(ids, input.max_results, input.next_token.as_deref(), 100)?;
        Ok(wire::ListImagesResponse { image_ids: Some(image_ids), next_token })
    }

    async fn describe_images(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeImagesRequest,
    ) -> Result<wire::DescribeImagesResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (repo, _) = s.repo(input.repository_name.as_deref()).await?;
        let tags = s.tag_map(&repo.name).await?;
        let tags_of = |digest: &str| -> Vec<String> {
            tags.iter().filter(|(_, d)| d.as_str() == digest).map(|(t, _)| t.clone()).collect()
        };
        if let Some(ids) = input.image_ids.filter(|i| !i.is_empty()) {
            let mut out = vec![];
            for id in &ids {
                match s.resolve(&repo.name, &tags, id).await? {
                    Resolved::Found(img) => {
                        out.push(s.detail(&repo.name, &img, &tags_of(&img.digest)))
                    }
                    Resolved::Failure(_) => {
                        return Err(ErrorCode::ImageNotFoundException.with(format!(
                            "The image with imageId {} does not exist within the repository with name '{}' in the registry with id '{}'",
                            describe_id(id),
                            repo.name,
                            s.account_id
                        )));
                    }
                }
            }
            return Ok(wire::DescribeImagesResponse { image_details: Some(out), next_token: None });
        }
        let status = input.filter.and_then(|f| f.tag_status);
        let mut items = vec![];
        for img in s.meta.images(&repo.name).await? {
            let t = tags_of(&img.digest);
            let keep = match status {
                Some(wire::TagStatus::Tagged) => !t.is_empty(),
                Some(wire::TagStatus::Untagged) => t.is_empty(),
                _ => true,
            };
            if keep {
                items.push((img.digest.clone(), s.detail(&repo.name, &img, &t)));
            }
        }
        let (details, next_token) =
            page(items, input.max_results, input.next_token.as_deref(), 100)?;
        Ok(wire::DescribeImagesResponse { image_details: Some(details), next_token })
    }

    async fn batch_get_image(
        &self,
        _ctx: &RequestContext,
        input: wire::BatchGetImageRequest,
    ) -> Result<wire::BatchGetImageResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (repo, _) = s.repo(input.repository_name.as_deref()).await?;
        let tags = s.tag_map(&repo.name).await?;
        let (mut images, mut failures) = (vec![], vec![]);
        for id in input.image_ids.unwrap_or_default() {
            match s.resolve(&repo.name, &tags, &id).await? {
                Resolved::Found(img) => images.push(wire::Image {
                    registry_id: Some(s.account_id.clone()),
                    repository_name: Some(repo.name.clone()),
                    image_id: Some(image_id(&img.digest, id.image_tag.as_deref())),
                    image_manifest: Some(img.manifest),
                    image_manifest_media_type: Some(img.media_type),
                }),
                Resolved::Failure(f) => failures.push(f),
            }
        }
        Ok(wire::BatchGetImageResponse { images: Some(images), failures: Some(failures) })
    }

    async fn put_image(
        &self,
        _ctx: &RequestContext,
        input: wire::PutImageRequest,
    ) -> Result<wire::PutImageResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (repo, _) = s.repo(input.repository_name.as_deref()).await?;
        let manifest = input.image_manifest.unwrap_or_default();
        if let Some(t) = &input.image_tag {
            berth_registry::digest::valid_tag(t)
                .map_err(|e| invalid(format!("Invalid parameter at 'imageTag': {e}")))?;
        }
        let expected = match &input.image_digest {
            Some(d) => Some(
                Digest::parse(d)
                    .map_err(|e| invalid(format!("Invalid parameter at 'imageDigest': {e}")))?,
            ),
            None => None,
        };
        let digest = Digest::of(manifest.as_bytes());
        let existing = s.meta.image(&repo.name, digest.as_str()).await?;
        if existing.is_some() {
            let tags = s.tag_map(&repo.name).await?;
            let same = match &input.image_tag {
                Some(t) => tags.get(t) == Some(&digest.to_string()),
                None => true,
            };
            if same {
                return Err(ErrorCode::ImageAlreadyExistsException.with(format!(
                    "Image with digest '{digest}'{} already exists in the repository with name '{}' in registry with id '{}'",
                    input.image_tag.as_ref().map(|t| format!(" and tag '{t}'")).unwrap_or_default(),
                    repo.name,
                    s.account_id
                )));
            }
        }
        let pushed = s
            .registry
            .push_manifest(
                &repo.name,
                input.image_manifest_media_type.as_deref(),
                manifest.as_bytes(),
                input.image_tag.as_deref(),
                expected.as_ref(),
            )
            .await;
        let (digest, parsed) = pushed.map_err(|e| match e.code {
            "TAG_INVALID" => ErrorCode::ImageTagAlreadyExistsException.with(e.message),
            "MANIFEST_BLOB_UNKNOWN" => {
                let d = e.detail.as_ref().and_then(|d| d["digest"].as_str()).unwrap_or_default().to_string();
                ErrorCode::LayersNotFoundException.with(format!(
                    "Layers with digests '[{d}]' required for pushing image into repository with name '{}' in the registry with id '{}' do not exist",
                    repo.name, s.account_id
                ))
            }
            "DIGEST_INVALID" => ErrorCode::ImageDigestDoesNotMatchException.with(e.message),
            "NAME_UNKNOWN" => s.not_found(&repo.name),
            "UNKNOWN" => common::internal(e.message),
            _ => invalid(format!("Invalid parameter at 'imageManifest': {}", e.message)),
        })?;
        Ok(wire::PutImageResponse {
            image: Some(wire::Image {
                registry_id: Some(s.account_id.clone()),
                repository_name: Some(repo.name.clone()),
                image_id: Some(image_id(digest.as_str(), input.image_tag.as_deref())),
                image_manifest: Some(manifest),
                image_manifest_media_type: Some(parsed.media_type),
            }),
        })
    }

    async fn batch_delete_image(
        &self,
        _ctx: &RequestContext,
        input: wire::BatchDeleteImageRequest,
    ) -> Result<wire::BatchDeleteImageResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (repo, _) = s.repo(input.repository_name.as_deref()).await?;
        let (mut deleted, mut failures) = (vec![], vec![]);
        for id in input.image_ids.unwrap_or_default() {
            let tags = s.tag_map(&repo.name).await?;
            let img = match s.resolve(&repo.name, &tags, &id).await? {
                Resolved::Found(img) => img,
                Resolved::Failure(f) => {
                    failures.push(f);
                    continue;
                }
            };
            let tags_of_img: Vec<&String> =
                tags.iter().filter(|(_, d)| **d == img.digest).map(|(t, _)| t).collect();
            match (&id.image_digest, &id.image_tag) {
                // By tag: the tag goes; the image goes with its last tag (as ECR does).
                (None, Some(t)) if tags_of_img.len() > 1 => {
                    use berth_registry::Metadata;
                    s.meta
                        .delete_tag(&repo.name, t)
                        .await
                        .map_err(|e| common::internal(e.to_string()))?;
                    deleted.push(image_id(&img.digest, Some(t)));
                }
                _ => {
                    s.meta.delete_images(&repo.name, std::slice::from_ref(&img.digest)).await?;
                    if tags_of_img.is_empty() {
                        deleted.push(image_id(&img.digest, None));
                    }
                    for t in tags_of_img {
                        deleted.push(image_id(&img.digest, Some(t)));
                    }
                }
            }
        }
        Ok(wire::BatchDeleteImageResponse { image_ids: Some(deleted), failures: Some(failures) })
    }

    async fn batch_check_layer_availability(
        &self,
        _ctx: &RequestContext,
        input: wire::BatchCheckLayerAvailabilityRequest,
    ) -> Result<wire::BatchCheckLayerAvailabilityResponse, AwsError> {
        use berth_registry::Metadata;
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (repo, _) = s.repo(input.repository_name.as_deref()).await?;
        let (mut layers, mut failures) = (vec![], vec![]);
        for d in input.layer_digests.unwrap_or_default() {
            let Ok(digest) = Digest::parse(&d) else {
                failures.push(wire::LayerFailure {
                    layer_digest: Some(d),
                    failure_code: Some(wire::LayerFailureCode::InvalidLayerDigest),
                    failure_reason: Some("Invalid layer digest".into()),
                });
                continue;
            };
            let linked = s
                .meta
                .blob_linked(&repo.name, &digest)
                .await
                .map_err(|e| common::internal(e.to_string()))?;
            let size =
                if linked { s.registry.blobs().stat(&digest).await.ok().flatten() } else { None };
            layers.push(wire::Layer {
                layer_digest: Some(d),
                layer_availability: Some(if size.is_some() {
                    wire::LayerAvailability::Available
                } else {
                    wire::LayerAvailability::Unavailable
                }),
                layer_size: size.map(|n| n as i64),
                media_type: None,
            });
        }
        Ok(wire::BatchCheckLayerAvailabilityResponse {
            layers: Some(layers),
            failures: Some(failures),
        })
    }
}
