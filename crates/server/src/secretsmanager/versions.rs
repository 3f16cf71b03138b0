//! Versions: ListSecretVersionIds and UpdateSecretVersionStage (staging labels move as the
//! module header says).

use berth_wire::AwsError;
use berth_wire::secretsmanager as wire;

use super::{AWSCURRENT, SecretsManager, invalid_param};
use crate::ecs::RequestContext;

impl wire::VersionsApi<RequestContext> for SecretsManager {
    async fn list_secret_version_ids(
        &self,
        _ctx: &RequestContext,
        input: wire::ListSecretVersionIdsRequest,
    ) -> Result<wire::ListSecretVersionIdsResponse, AwsError> {
        let (rec, _) = self.find(input.secret_id.as_deref().unwrap_or_default()).await?;
        let deprecated = input.include_deprecated.unwrap_or(false);
        // Newest first, as AWS lists them.
        let versions: Vec<_> = rec
            .versions
            .iter()
            .rev()
            .filter(|v| deprecated || !v.stages.is_empty())
            .map(|v| wire::SecretVersionsListEntry {
                version_id: Some(v.id.clone()),
                version_stages: Some(v.stages.clone()),
                last_accessed_date: v.last_accessed,
                created_date: Some(v.created),
                kms_key_ids: Some(vec!["DefaultEncryptionKey".into()]),
            })
            .collect();
        let (offset, limit) =
            super::secrets::page_bounds(input.next_token.as_deref(), input.max_results)?;
        let next_token = super::secrets::page_token(offset, limit, versions.len());
        Ok(wire::ListSecretVersionIdsResponse {
            versions: Some(versions.into_iter().skip(offset).take(limit).collect()),
            next_token,
            arn: Some(rec.arn),
            name: Some(rec.name),
        })
    }

    async fn update_secret_version_stage(
        &self,
        _ctx: &RequestContext,
        input: wire::UpdateSecretVersionStageRequest,
    ) -> Result<wire::UpdateSecretVersionStageResponse, AwsError> {
        let id = input.secret_id.unwrap_or_default();
        let stage = input.version_stage.unwrap_or_default();
        if stage.is_empty() || stage.len() > 256 {
            return Err(invalid_param("VersionStage: must be 1 to 256 characters."));
        }
        let (rec, ()) = self
            .update(&id, true, |rec| {
                let holder = rec.staged(&stage).map(|v| v.id.clone());
                if let Some(to) = &input.move_to_version_id
                    && rec.version(to).is_none()
                {
                    return Err(super::not_found(format!(
                        "MoveToVersionId: Secrets Manager can't find the specified secret version {to}."
                    )));
                }
                match (&holder, &input.remove_from_version_id) {
                    (Some(h), Some(from)) if h != from => {
                        return Err(invalid_param(format!(
                            "The staging label {stage} is currently attached to version {h}, not to version {from}: RemoveFromVersionId must name the version it is on."
                        )));
                    }
                    (Some(h), None) if input.move_to_version_id.as_deref() != Some(h.as_str()) => {
                        return Err(invalid_param(format!(
                            "The staging label {stage} is currently attached to version {h}: give RemoveFromVersionId {h} to move it."
                        )));
                    }
                    (None, Some(from)) => {
                        return Err(invalid_param(format!(
                            "RemoveFromVersionId: the staging label {stage} is not attached to version {from}."
                        )));
                    }
                    _ => {}
                }
                match &input.move_to_version_id {
                    Some(to) => rec.move_stage(&stage, to),
                    None => {
                        if stage == AWSCURRENT {
                            return Err(invalid_param(
                                "You can't remove the staging label AWSCURRENT without moving it to another version (MoveToVersionId).",
                            ));
                        }
                        for v in &mut rec.versions {
                            v.stages.retain(|s| *s != stage);
                        }
                    }
                }
                rec.last_changed = super::now();
                Ok(())
            })
            .await?;
        Ok(wire::UpdateSecretVersionStageResponse { arn: Some(rec.arn), name: Some(rec.name) })
    }
}
