//! Parameter tags (`wire::TagsApi`): AddTagsToResource, ListTagsForResource,
//! RemoveTagsFromResource, on parameters only (ResourceType `Parameter`).

use super::*;

/// The parameter a tagging request names.
fn tag_target(
    resource_type: Option<wire::ResourceTypeForTagging>,
    id: Option<String>,
) -> Result<String, AwsError> {
    if resource_type != Some(wire::ResourceTypeForTagging::Parameter) {
        return Err(ErrorCode::InvalidResourceType
            .with("ResourceType: Berth's SSM tags parameters only (ResourceType Parameter)."));
    }
    Ok(split_selector(&id.unwrap_or_default()).0)
}

fn invalid_resource(name: &str) -> AwsError {
    ErrorCode::InvalidResourceId.with(format!("The resource ID \"{name}\" is not valid."))
}

impl wire::TagsApi<RequestContext> for Parameters {
    async fn add_tags_to_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::AddTagsToResourceRequest,
    ) -> Result<wire::AddTagsToResourceResult, AwsError> {
        let name = tag_target(input.resource_type, input.resource_id)?;
        let tags = check_tags(input.tags.as_deref().unwrap_or_default())?;
        self.update(&name, |rec| {
            for (k, v) in &tags {
                rec.tags.retain(|(x, _)| x != k);
                rec.tags.push((k.clone(), v.clone()));
            }
            if rec.tags.len() > MAX_TAGS {
                return Err(ErrorCode::TooManyTagsError
                    .with(format!("A parameter can have at most {MAX_TAGS} tags.")));
            }
            Ok(())
        })
        .await
        .map_err(|e| if e.code == "ParameterNotFound" { invalid_resource(&name) } else { e })?;
        Ok(wire::AddTagsToResourceResult {})
    }

    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::ListTagsForResourceRequest,
    ) -> Result<wire::ListTagsForResourceResult, AwsError> {
        let name = tag_target(input.resource_type, input.resource_id)?;
        let Some((rec, _)) = self.get(&name).await? else { return Err(invalid_resource(&name)) };
        Ok(wire::ListTagsForResourceResult {
            tag_list: Some(
                rec.tags
                    .into_iter()
                    .map(|(k, v)| wire::Tag { key: Some(k), value: Some(v) })
                    .collect(),
            ),
        })
    }

    async fn remove_tags_from_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::RemoveTagsFromResourceRequest,
    ) -> Result<wire::RemoveTagsFromResourceResult, AwsError> {
        let name = tag_target(input.resource_type, input.resource_id)?;
        let keys = input.tag_keys.unwrap_or_default();
        self.update(&name, |rec| {
            rec.tags.retain(|(k, _)| !keys.contains(k));
            Ok(())
        })
        .await
        .map_err(|e| if e.code == "ParameterNotFound" { invalid_resource(&name) } else { e })?;
        Ok(wire::RemoveTagsFromResourceResult {})
    }
}
