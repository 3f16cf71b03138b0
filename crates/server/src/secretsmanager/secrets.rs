//! Secrets: CreateSecret, GetSecretValue, BatchGetSecretValue, PutSecretValue, UpdateSecret,
//! DescribeSecret, ListSecrets, DeleteSecret, RestoreSecret (see the module header for the
//! invariants they keep).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::secretsmanager as wire;
use wire::{ErrorCode, FilterNameStringType};

use super::{
    AWSCURRENT, KEY_PREFIX, SecretRecord, SecretValue, SecretsManager, check_name, invalid_param,
    invalid_request, key, now, records, value_of, version_token,
};
use crate::ecs::RequestContext;

/// Largest page of ListSecrets / BatchGetSecretValue.
const MAX_PAGE: i32 = 100;
/// Most tags on a secret.
pub(super) const MAX_TAGS: usize = 50;

impl SecretsManager {
    /// Every secret of the region, decoded, in name order.
    async fn all(&self) -> Result<Vec<SecretRecord>, AwsError> {
        let recs =
            self.store().range(Range::prefix(KEY_PREFIX)).await.map_err(crate::error::store)?;
        let now = now();
        Ok(records::decode_all::<SecretRecord>(recs)?
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.purge_at.is_none_or(|t| t > now))
            .collect())
    }

    /// The answer of GetSecretValue for `rec`'s selected version (marking it accessed is
    /// left out: a read never writes).
    fn value_answer(
        &self,
        rec: &SecretRecord,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<wire::GetSecretValueResponse, AwsError> {
        let v = rec.select(version_id, stage)?;
        let value = rec.open(self.cipher(), v)?;
        let (secret_string, secret_binary) = match value {
            SecretValue::String(s) => (Some(s), None),
            SecretValue::Binary(b) => (None, Some(b)),
        };
        Ok(wire::GetSecretValueResponse {
            arn: Some(rec.arn.clone()),
            name: Some(rec.name.clone()),
            version_id: Some(v.id.clone()),
            secret_string,
            secret_binary,
            version_stages: Some(v.stages.clone()),
            created_date: Some(v.created),
        })
    }

    /// The plain value of `id` at `version_id` / `stage`, for task secrets ([`super::inject`]).
    pub(crate) async fn read_value(
        &self,
        id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<SecretValue, AwsError> {
        let (rec, _) = self.find_live(id).await?;
        let v = rec.select(version_id, stage)?;
        rec.open(self.cipher(), v)
    }
}

/// Whether `rec` passes every filter (AWS: each filter's values are alternatives, filters
/// combine with AND; a value starting with `!` negates; names, descriptions and tags match
/// by prefix).
fn matches(rec: &SecretRecord, filters: &[wire::Filter]) -> Result<bool, AwsError> {
    for f in filters {
        let Some(k) = f.key else {
            return Err(invalid_param("Filters[].Key: required."));
        };
        let values = f.values.clone().unwrap_or_default();
        let mut hit = values.is_empty();
        for v in &values {
            let (neg, v) = match v.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, v.as_str()),
            };
            let pre = |s: &str| s.to_lowercase().starts_with(&v.to_lowercase());
            let m = match k {
                FilterNameStringType::Name => pre(&rec.name),
                FilterNameStringType::Description => rec.description.as_deref().is_some_and(pre),
                FilterNameStringType::TagKey => rec.tags.iter().any(|(k, _)| pre(k)),
                FilterNameStringType::TagValue => rec.tags.iter().any(|(_, x)| pre(x)),
                FilterNameStringType::PrimaryRegion => false,
                FilterNameStringType::OwningService => false,
                FilterNameStringType::All => {
                    pre(&rec.name)
                        || rec.description.as_deref().is_some_and(pre)
                        || rec.tags.iter().any(|(k, x)| pre(k) || pre(x))
                }
            };
            hit |= m != neg;
        }
        if !hit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `(offset, limit)` of a page request.
pub(super) fn page_bounds(
    next_token: Option<&str>,
    max: Option<i32>,
) -> Result<(usize, usize), AwsError> {
    let limit = match max {
        None => MAX_PAGE as usize,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n as usize,
        Some(n) => {
            return Err(invalid_param(format!("MaxResults: must be 1 to {MAX_PAGE}, got {n}.")));
        }
    };
    let offset = match next_token {
        None => 0,
        Some(t) => URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| {
                ErrorCode::InvalidNextTokenException.with("The NextToken value is not valid.")
            })?,
    };
    Ok((offset, limit))
}

pub(super) fn page_token(offset: usize, limit: usize, total: usize) -> Option<String> {
    (offset + limit < total).then(|| URL_SAFE_NO_PAD.encode(format!("o:{}", offset + limit)))
}

pub(super) fn check_tags(tags: &[wire::Tag]) -> Result<Vec<(String, String)>, AwsError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let k = t.key.clone().unwrap_or_default();
        if k.is_empty() || k.len() > 128 {
            return Err(invalid_param(format!("Tags[{i}].Key: must be 1 to 128 characters.")));
        }
        if k.to_lowercase().starts_with("aws:") {
            return Err(invalid_param(format!("Tags[{i}].Key: the aws: prefix is reserved.")));
        }
        let v = t.value.clone().unwrap_or_default();
        if v.len() > 256 {
            return Err(invalid_param(format!("Tags[{i}].Value: at most 256 characters.")));
        }
        out.retain(|(x, _)| *x != k);
        out.push((k, v));
    }
    Ok(out)
}

impl wire::SecretsApi<RequestContext> for SecretsManager {
    async fn create_secret(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateSecretRequest,
    ) -> Result<wire::CreateSecretResponse, AwsError> {
        let name = input.name.unwrap_or_default();
        check_name(&name)?;
        if input.add_replica_regions.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(invalid_request(
                "AddReplicaRegions: Berth does not replicate secrets to other regions.",
            ));
        }
        let value = value_of(input.secret_string, input.secret_binary, false)?;
        let version = version_token(input.client_request_token)?;
        let tags = check_tags(input.tags.as_deref().unwrap_or_default())?;
        if tags.len() > MAX_TAGS {
            return Err(invalid_param(format!("Tags: at most {MAX_TAGS} tags.")));
        }
        let k = key(&name);
        let mut cas = records::Cas::new(self.store(), format!("secret {name}"));
        loop {
            cas.attempt().await?;
            let existing = records::get::<SecretRecord>(self.store(), &k).await?;
            let rev = existing.as_ref().map_or(0, |(_, rev)| *rev);
            let now = now();
            match existing {
                Some((rec, _)) if rec.purge_at.is_none_or(|t| t > now) => {
                    if rec.deleted_at.is_some() {
                        return Err(invalid_request(
                            "You can't create this secret because a secret with this name is already scheduled for deletion.",
                        ));
                    }
                    // A retry of the same request (same token, same value) answers it again.
                    if let Some(v) = &value
                        && let Some(ver) = rec.version(&version)
                        && rec.open(self.cipher(), ver)? == *v
                    {
                        return Ok(wire::CreateSecretResponse {
                            arn: Some(rec.arn.clone()),
                            name: Some(rec.name.clone()),
                            version_id: Some(version),
                            replication_status: None,
                        });
                    }
                    return Err(ErrorCode::ResourceExistsException.with(format!(
                        "The operation failed because the secret {name} already exists."
                    )));
                }
                _ => {}
            }
            let mut rec = SecretRecord {
                arn: self.new_arn(&name),
                name: name.clone(),
                description: input.description.clone(),
                kms_key_id: input.kms_key_id.clone(),
                secret_type: input.r#type.clone(),
                created: now,
                last_changed: now,
                last_accessed: None,
                deleted_at: None,
                purge_at: None,
                tags: tags.clone(),
                policy: None,
                versions: Vec::new(),
            };
            if let Some(v) = &value {
                rec.add_version(self.cipher(), &version, v, &[AWSCURRENT.to_string()], now)?;
            }
            // Created when absent, or over a record whose recovery window has passed.
            let txn = Txn::new().when(&k, rev).put(&k, records::encode(&rec));
            if cas.commit(txn).await? {
                return Ok(wire::CreateSecretResponse {
                    arn: Some(rec.arn),
                    name: Some(rec.name),
                    version_id: value.map(|_| version),
                    replication_status: None,
                });
            }
        }
    }

    async fn get_secret_value(
        &self,
        _ctx: &RequestContext,
        input: wire::GetSecretValueRequest,
    ) -> Result<wire::GetSecretValueResponse, AwsError> {
        let (rec, _) = self.find_live(input.secret_id.as_deref().unwrap_or_default()).await?;
        self.value_answer(&rec, input.version_id.as_deref(), input.version_stage.as_deref())
    }

    async fn batch_get_secret_value(
        &self,
        _ctx: &RequestContext,
        input: wire::BatchGetSecretValueRequest,
    ) -> Result<wire::BatchGetSecretValueResponse, AwsError> {
        let mut values = Vec::new();
        let mut errors = Vec::new();
        let mut next_token = None;
        match (input.secret_id_list, input.filters) {
            (Some(_), Some(_)) => {
                return Err(invalid_param(
                    "Either 'SecretIdList' or 'Filters' must be provided, but not both.",
                ));
            }
            (Some(ids), None) => {
                if ids.len() > 20 {
                    return Err(invalid_param("SecretIdList: at most 20 secrets."));
                }
                for id in ids {
                    let got = match self.find_live(&id).await {
                        Ok((rec, _)) => self.value_answer(&rec, None, None),
                        Err(e) => Err(e),
                    };
                    match got {
                        Ok(v) => values.push(entry(v)),
                        Err(e) => errors.push(wire::APIErrorType {
                            secret_id: Some(id),
                            error_code: Some(e.code.to_string()),
                            message: Some(e.message),
                        }),
                    }
                }
            }
            (None, Some(filters)) => {
                let mut all = Vec::new();
                for rec in self.all().await? {
                    if rec.deleted_at.is_none() && matches(&rec, &filters)? {
                        all.push(rec);
                    }
                }
                let (offset, limit) =
                    page_bounds(input.next_token.as_deref(), input.max_results.or(Some(20)))?;
                next_token = page_token(offset, limit, all.len());
                for rec in all.iter().skip(offset).take(limit) {
                    match self.value_answer(rec, None, None) {
                        Ok(v) => values.push(entry(v)),
                        Err(e) => errors.push(wire::APIErrorType {
                            secret_id: Some(rec.arn.clone()),
                            error_code: Some(e.code.to_string()),
                            message: Some(e.message),
                        }),
                    }
                }
            }
            (None, None) => {
                return Err(invalid_param("Either 'SecretIdList' or 'Filters' must be provided."));
            }
        }
        Ok(wire::BatchGetSecretValueResponse {
            secret_values: Some(values),
            next_token,
            errors: Some(errors),
        })
    }

    async fn put_secret_value(
        &self,
        _ctx: &RequestContext,
        input: wire::PutSecretValueRequest,
    ) -> Result<wire::PutSecretValueResponse, AwsError> {
        let id = input.secret_id.unwrap_or_default();
        let value =
            value_of(input.secret_string, input.secret_binary, true)?.expect("required above");
        let version = version_token(input.client_request_token)?;
        let stages = input.version_stages.unwrap_or_else(|| vec![AWSCURRENT.to_string()]);
        if stages.is_empty() || stages.len() > 20 {
            return Err(invalid_param("VersionStages: give 1 to 20 staging labels."));
        }
        let cipher = self.cipher();
        let (rec, ()) = self
            .update(&id, true, |rec| {
                rec.add_version(cipher, &version, &value, &stages, now())?;
                Ok(())
            })
            .await?;
        let v = rec.version(&version).map(|v| v.stages.clone()).unwrap_or_default();
        Ok(wire::PutSecretValueResponse {
            arn: Some(rec.arn),
            name: Some(rec.name),
            version_id: Some(version),
            version_stages: Some(v),
        })
    }

    async fn update_secret(
        &self,
        _ctx: &RequestContext,
        input: wire::UpdateSecretRequest,
    ) -> Result<wire::UpdateSecretResponse, AwsError> {
        let id = input.secret_id.unwrap_or_default();
        let value = value_of(input.secret_string, input.secret_binary, false)?;
        let version = version_token(input.client_request_token)?;
        let cipher = self.cipher();
        let (rec, added) = self
            .update(&id, true, |rec| {
                if let Some(d) = &input.description {
                    rec.description = Some(d.clone());
                }
                if let Some(k) = &input.kms_key_id {
                    rec.kms_key_id = Some(k.clone());
                }
                if let Some(t) = &input.r#type {
                    rec.secret_type = Some(t.clone());
                }
                let now = now();
                rec.last_changed = now;
                match &value {
                    Some(v) => {
                        rec.add_version(cipher, &version, v, &[AWSCURRENT.to_string()], now)?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .await?;
        Ok(wire::UpdateSecretResponse {
            arn: Some(rec.arn),
            name: Some(rec.name),
            version_id: added.then_some(version),
        })
    }

    async fn describe_secret(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeSecretRequest,
    ) -> Result<wire::DescribeSecretResponse, AwsError> {
        let (rec, _) = self.find(input.secret_id.as_deref().unwrap_or_default()).await?;
        let tags = rec.wire_tags();
        Ok(wire::DescribeSecretResponse {
            version_ids_to_stages: Some(rec.stages_map()),
            arn: Some(rec.arn),
            name: Some(rec.name),
            r#type: rec.secret_type,
            description: rec.description,
            kms_key_id: rec.kms_key_id,
            rotation_enabled: Some(false),
            last_changed_date: Some(rec.last_changed),
            last_accessed_date: rec.last_accessed,
            deleted_date: rec.deleted_at,
            tags: (!tags.is_empty()).then_some(tags),
            created_date: Some(rec.created),
            primary_region: None,
            ..Default::default()
        })
    }

    async fn list_secrets(
        &self,
        _ctx: &RequestContext,
        input: wire::ListSecretsRequest,
    ) -> Result<wire::ListSecretsResponse, AwsError> {
        let filters = input.filters.unwrap_or_default();
        let include_deleted = input.include_planned_deletion.unwrap_or(false);
        let mut all = Vec::new();
        for rec in self.all().await? {
            if (include_deleted || rec.deleted_at.is_none()) && matches(&rec, &filters)? {
                all.push(rec);
            }
        }
        // AWS lists by creation date, newest first unless asked otherwise; the name breaks ties.
        all.sort_by(|a, b| a.created.total_cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        let by_name = matches!(input.sort_by, Some(wire::SortByType::Name));
        if by_name {
            all.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let asc = match input.sort_order {
            Some(wire::SortOrderType::Asc) => true,
            Some(wire::SortOrderType::Desc) => false,
            None => by_name,
        };
        if !asc {
            all.reverse();
        }
        let (offset, limit) = page_bounds(input.next_token.as_deref(), input.max_results)?;
        let next_token = page_token(offset, limit, all.len());
        let list = all
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|rec| {
                let tags = rec.wire_tags();
                wire::SecretListEntry {
                    secret_versions_to_stages: Some(rec.stages_map()),
                    arn: Some(rec.arn),
                    name: Some(rec.name),
                    r#type: rec.secret_type,
                    description: rec.description,
                    kms_key_id: rec.kms_key_id,
                    rotation_enabled: Some(false),
                    last_changed_date: Some(rec.last_changed),
                    last_accessed_date: rec.last_accessed,
                    deleted_date: rec.deleted_at,
                    tags: (!tags.is_empty()).then_some(tags),
                    created_date: Some(rec.created),
                    ..Default::default()
                }
            })
            .collect();
        Ok(wire::ListSecretsResponse { secret_list: Some(list), next_token })
    }

    async fn delete_secret(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteSecretRequest,
    ) -> Result<wire::DeleteSecretResponse, AwsError> {
        let id = input.secret_id.unwrap_or_default();
        let force = input.force_delete_without_recovery.unwrap_or(false);
        if force && input.recovery_window_in_days.is_some() {
            return Err(invalid_param(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
            ));
        }
        let days = input.recovery_window_in_days.unwrap_or(30);
        if !force && !(7..=30).contains(&days) {
            return Err(invalid_param(format!(
                "RecoveryWindowInDays: must be 7 to 30 days, got {days}."
            )));
        }
        if force {
            let mut cas = records::Cas::new(self.store(), format!("secret {id}"));
            loop {
                cas.attempt().await?;
                let (rec, rev) = self.find(&id).await?;
                let k = key(&rec.name);
                if cas.commit(Txn::new().when(&k, rev).delete(&k)).await? {
                    return Ok(wire::DeleteSecretResponse {
                        arn: Some(rec.arn),
                        name: Some(rec.name),
                        deletion_date: Some(now()),
                    });
                }
            }
        }
        let (rec, ()) = self
            .update(&id, false, |rec| {
                if rec.deleted_at.is_some() {
                    return Err(super::marked_for_deletion());
                }
                let now = now();
                rec.deleted_at = Some(now);
                rec.purge_at = Some(now + days as f64 * 86_400.0);
                Ok(())
            })
            .await?;
        Ok(wire::DeleteSecretResponse {
            arn: Some(rec.arn),
            name: Some(rec.name),
            deletion_date: rec.purge_at,
        })
    }

    async fn restore_secret(
        &self,
        _ctx: &RequestContext,
        input: wire::RestoreSecretRequest,
    ) -> Result<wire::RestoreSecretResponse, AwsError> {
        let id = input.secret_id.unwrap_or_default();
        let (rec, ()) = self
            .update(&id, false, |rec| {
                rec.deleted_at = None;
                rec.purge_at = None;
                Ok(())
            })
            .await?;
        Ok(wire::RestoreSecretResponse { arn: Some(rec.arn), name: Some(rec.name) })
    }
}

fn entry(v: wire::GetSecretValueResponse) -> wire::SecretValueEntry {
    wire::SecretValueEntry {
        arn: v.arn,
        name: v.name,
        version_id: v.version_id,
        secret_binary: v.secret_binary,
        secret_string: v.secret_string,
        version_stages: v.version_stages,
        created_date: v.created_date,
    }
}
