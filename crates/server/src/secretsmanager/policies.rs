//! Resource policies (GetResourcePolicy, PutResourcePolicy, DeleteResourcePolicy,
//! ValidateResourcePolicy) and tags (TagResource, UntagResource).
//!
//! A policy is parsed with `berth_iam_policy` as a resource-based policy before it is
//! stored (`MalformedPolicyDocumentException` with IAM's message otherwise); with
//! `BlockPublicPolicy` (AWS's default on PutResourcePolicy is off) a statement that allows
//! every principal (`"*"` or `{"AWS": "*"}`) without a condition is refused with
//! `PublicPolicyException`. Stored policies are not evaluated yet (IAM on calls is the other
//! half of issue #16).

use berth_iam_policy::{Policy, PolicyKind};
use berth_wire::AwsError;
use berth_wire::secretsmanager as wire;
use wire::ErrorCode;

use super::secrets::{MAX_TAGS, check_tags};
use super::{SecretsManager, invalid_param};
use crate::ecs::RequestContext;

/// Largest policy document (AWS: 20 KiB).
const MAX_POLICY_BYTES: usize = 20_480;

/// Parses `doc` as a resource policy; the problem as AWS words it otherwise.
fn parse(doc: &str) -> Result<(), AwsError> {
    if doc.is_empty() || doc.len() > MAX_POLICY_BYTES {
        return Err(invalid_param(format!(
            "ResourcePolicy: must be 1 to {MAX_POLICY_BYTES} characters."
        )));
    }
    Policy::parse(doc, PolicyKind::Resource)
        .map(|_| ())
        .map_err(|e| ErrorCode::MalformedPolicyDocumentException.with(e.to_string()))
}

/// Whether a statement of `doc` allows anyone at all, unconditionally.
fn is_public(doc: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(doc) else { return false };
    let statements = match &v["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        s @ serde_json::Value::Object(_) => vec![s.clone()],
        _ => return false,
    };
    let star = |p: &serde_json::Value| match p {
        serde_json::Value::String(s) => s == "*",
        serde_json::Value::Array(a) => a.iter().any(|x| x == "*"),
        _ => false,
    };
    statements.iter().any(|s| {
        s["Effect"] == "Allow"
            && s.get("Condition").is_none()
            && (star(&s["Principal"]) || star(&s["Principal"]["AWS"]))
    })
}

impl wire::PoliciesApi<RequestContext> for SecretsManager {
    async fn get_resource_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::GetResourcePolicyRequest,
    ) -> Result<wire::GetResourcePolicyResponse, AwsError> {
        let (rec, _) = self.find_live(input.secret_id.as_deref().unwrap_or_default()).await?;
        Ok(wire::GetResourcePolicyResponse {
            arn: Some(rec.arn),
            name: Some(rec.name),
            resource_policy: rec.policy,
        })
    }

    async fn put_resource_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::PutResourcePolicyRequest,
    ) -> Result<wire::PutResourcePolicyResponse, AwsError> {
        let doc = input.resource_policy.unwrap_or_default();
        parse(&doc)?;
        if input.block_public_policy.unwrap_or(false) && is_public(&doc) {
            return Err(ErrorCode::PublicPolicyException.with(
                "The BlockPublicPolicy parameter is set to true, and the resource policy did not prevent broad access to the secret.",
            ));
        }
        let id = input.secret_id.unwrap_or_default();
        let (rec, ()) = self
            .update(&id, true, |rec| {
                rec.policy = Some(doc.clone());
                Ok(())
            })
            .await?;
        Ok(wire::PutResourcePolicyResponse { arn: Some(rec.arn), name: Some(rec.name) })
    }

    async fn delete_resource_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteResourcePolicyRequest,
    ) -> Result<wire::DeleteResourcePolicyResponse, AwsError> {
        let id = input.secret_id.unwrap_or_default();
        let (rec, ()) = self
            .update(&id, true, |rec| {
                rec.policy = None;
                Ok(())
            })
            .await?;
        Ok(wire::DeleteResourcePolicyResponse { arn: Some(rec.arn), name: Some(rec.name) })
    }

    async fn validate_resource_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::ValidateResourcePolicyRequest,
    ) -> Result<wire::ValidateResourcePolicyResponse, AwsError> {
        if let Some(id) = input.secret_id.as_deref() {
            self.find(id).await?;
        }
        let doc = input.resource_policy.unwrap_or_default();
        let errors = match parse(&doc) {
            Ok(()) => vec![],
            Err(e) => vec![wire::ValidationErrorsEntry {
                check_name: Some("POLICY_SYNTAX".into()),
                error_message: Some(e.message),
            }],
        };
        Ok(wire::ValidateResourcePolicyResponse {
            policy_validation_passed: Some(errors.is_empty()),
            validation_errors: Some(errors),
        })
    }
}

impl wire::TagsApi<RequestContext> for SecretsManager {
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::TagResourceRequest,
    ) -> Result<wire::Empty, AwsError> {
        let tags = check_tags(input.tags.as_deref().unwrap_or_default())?;
        let id = input.secret_id.unwrap_or_default();
        self.update(&id, true, |rec| {
            for (k, v) in &tags {
                rec.tags.retain(|(x, _)| x != k);
                rec.tags.push((k.clone(), v.clone()));
            }
            if rec.tags.len() > MAX_TAGS {
                return Err(ErrorCode::LimitExceededException
                    .with(format!("A secret can have at most {MAX_TAGS} tags.")));
            }
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagResourceRequest,
    ) -> Result<wire::Empty, AwsError> {
        let keys = input.tag_keys.unwrap_or_default();
        let id = input.secret_id.unwrap_or_default();
        self.update(&id, true, |rec| {
            rec.tags.retain(|(k, _)| !keys.contains(k));
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }
}
