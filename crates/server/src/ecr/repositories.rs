//! ECR's repository operations (the `RepositoriesApi` group): create, describe, delete, and
//! the repository settings (tag mutability, scanning configuration).

use super::*;

impl wire::RepositoriesApi<RequestContext> for Ecr<'_> {
    async fn create_repository(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateRepositoryRequest,
    ) -> Result<wire::CreateRepositoryResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let name = input.repository_name.unwrap_or_default();
        berth_registry::digest::valid_repository(&name).map_err(|_| {
            invalid(format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*'' (got '{name}')"
            ))
        })?;
        let immutable = match input.image_tag_mutability {
            None | Some(wire::ImageTagMutability::Mutable) => false,
            Some(wire::ImageTagMutability::Immutable) => true,
            Some(other) => {
                return Err(invalid(format!(
                    "imageTagMutability {other:?} (with exclusion filters) is not supported by Berth yet; use MUTABLE or IMMUTABLE."
                )));
            }
        };
        let enc = input.encryption_configuration.unwrap_or_default();
        let encryption_type = match enc.encryption_type {
            None | Some(wire::EncryptionType::Aes256) => {
                if enc.kms_key.is_some() {
                    return Err(invalid(
                        "encryptionConfiguration.kmsKey: a KMS key needs encryptionType KMS or KMS_DSSE.",
                    ));
                }
                "AES256"
            }
            Some(wire::EncryptionType::Kms) => "KMS",
            Some(wire::EncryptionType::KmsDsse) => "KMS_DSSE",
        };
        let tags = merge_tags(&[], &input.tags.unwrap_or_default())?;
        let rec = RepoRecord {
            arn: s.arn(&name),
            name: name.clone(),
            registry_id: s.account_id.clone(),
            created_at: epoch_seconds(s.clock.now()),
            image_tag_mutability: if immutable { "IMMUTABLE" } else { "MUTABLE" }.into(),
            scan_on_push: input
                .image_scanning_configuration
                .and_then(|c| c.scan_on_push)
                .unwrap_or(false),
            encryption_type: encryption_type.into(),
            kms_key: enc.kms_key,
            tags,
            lifecycle_policy: None,
            lifecycle_policy_updated_at: None,
            repository_policy: None,
        };
        let key = records::repo_key(&name);
        let created =
            recs::commit(&*s.meta.store, Txn::new().when(&key, 0).put(&key, encode(&rec))).await?;
        if !created {
            return Err(ErrorCode::RepositoryAlreadyExistsException.with(format!(
                "The repository with name '{name}' already exists in the registry with id '{}'",
                s.account_id
            )));
        }
        tracing::info!(repository = %name, immutable, "ECR repository created");
        Ok(wire::CreateRepositoryResponse { repository: Some(s.view(&rec)) })
    }

    async fn describe_repositories(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeRepositoriesRequest,
    ) -> Result<wire::DescribeRepositoriesResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        if let Some(names) = input.repository_names.filter(|n| !n.is_empty()) {
            if input.next_token.is_some() || input.max_results.is_some() {
                return Err(invalid(
                    "nextToken and maxResults cannot be used with repositoryNames.",
                ));
            }
            let mut out = vec![];
            for n in names {
                out.push(s.view(&s.repo(Some(&n)).await?.0));
            }
            return Ok(wire::DescribeRepositoriesResponse {
                repositories: Some(out),
                next_token: None,
            });
        }
        let all =
            s.meta.store.range(Range::prefix(records::REPOS)).await.map_err(crate::error::store)?;
        let all: Vec<(String, RepoRecord)> = recs::decode_all::<RepoRecord>(all)?
            .into_iter()
            .map(|(r, _)| (r.name.clone(), r))
            .collect();
        let (page, next_token) = page(all, input.max_results, input.next_token.as_deref(), 100)?;
        Ok(wire::DescribeRepositoriesResponse {
            repositories: Some(page.iter().map(|r| s.view(r)).collect()),
            next_token,
        })
    }

    async fn delete_repository(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteRepositoryRequest,
    ) -> Result<wire::DeleteRepositoryResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let name = input.repository_name.unwrap_or_default();
        let force = input.force.unwrap_or(false);
        let mut cas = Cas::new(&*s.meta.store, format!("repository {name}"));
        let rec = loop {
            cas.attempt().await?;
            let (rec, rev) = s.repo(Some(&name)).await?;
            let mut txn = Txn::new()
                .when(records::repo_key(&name), rev)
                .delete(records::repo_key(&name))
                .delete(records::preview_key(&name));
            for prefix in [
                records::images_prefix(&name),
                records::tags_prefix(&name),
                records::layers_prefix(&name),
            ] {
                let found = s
                    .meta
                    .store
                    .range(Range::prefix(&prefix))
                    .await
                    .map_err(crate::error::store)?;
                if prefix.starts_with(records::IMAGES) && !found.is_empty() && !force {
                    return Err(ErrorCode::RepositoryNotEmptyException.with(format!(
                        "The repository with name '{name}' in registry with id '{}' cannot be deleted because it still contains images",
                        s.account_id
                    )));
                }
                for r in found {
                    txn = txn.when(r.key.clone(), r.mod_revision).delete(r.key);
                }
            }
            if cas.commit(txn).await? {
                break rec;
            }
        };
        tracing::info!(repository = %name, force, "ECR repository deleted");
        Ok(wire::DeleteRepositoryResponse { repository: Some(s.view(&rec)) })
    }

    async fn put_image_tag_mutability(
        &self,
        _ctx: &RequestContext,
        input: wire::PutImageTagMutabilityRequest,
    ) -> Result<wire::PutImageTagMutabilityResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let value = match input.image_tag_mutability {
            Some(wire::ImageTagMutability::Mutable) => "MUTABLE",
            Some(wire::ImageTagMutability::Immutable) => "IMMUTABLE",
            other => {
                return Err(invalid(format!(
                    "imageTagMutability {other:?} is not supported by Berth yet; use MUTABLE or IMMUTABLE."
                )));
            }
        };
        let rec = s
            .update_repo(input.repository_name.as_deref(), |r| {
                r.image_tag_mutability = value.into()
            })
            .await?;
        Ok(wire::PutImageTagMutabilityResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name.clone()),
            image_tag_mutability: s.view(&rec).image_tag_mutability,
            ..Default::default()
        })
    }

    async fn put_image_scanning_configuration(
        &self,
        _ctx: &RequestContext,
        input: wire::PutImageScanningConfigurationRequest,
    ) -> Result<wire::PutImageScanningConfigurationResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let scan = input.image_scanning_configuration.and_then(|c| c.scan_on_push).unwrap_or(false);
        let rec =
            s.update_repo(input.repository_name.as_deref(), |r| r.scan_on_push = scan).await?;
        Ok(wire::PutImageScanningConfigurationResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            image_scanning_configuration: Some(wire::ImageScanningConfiguration {
                scan_on_push: Some(scan),
            }),
        })
    }
}
