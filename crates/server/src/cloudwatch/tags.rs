//! Alarm tags (`wire::TagsApi`): TagResource, UntagResource, ListTagsForResource.

use super::*;

impl wire::TagsApi<RequestContext> for Region<'_> {
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::TagResourceInput,
    ) -> Result<wire::TagResourceOutput, AwsError> {
        let tags = input.tags.unwrap_or_default();
        let all = self
            .tags_of(input.resource_arn.as_deref().unwrap_or_default(), move |t| {
                for n in tags {
                    t.retain(|o| o.key != n.key);
                    t.push(n);
                }
            })
            .await?;
        if all.len() > 50 {
            return Err(ErrorCode::LimitExceededFault.with("An alarm has at most 50 tags."));
        }
        Ok(wire::TagResourceOutput {})
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagResourceInput,
    ) -> Result<wire::UntagResourceOutput, AwsError> {
        let keys = input.tag_keys.unwrap_or_default();
        self.tags_of(input.resource_arn.as_deref().unwrap_or_default(), move |t| {
            t.retain(|o| !keys.iter().any(|k| o.key.as_deref() == Some(k.as_str())));
        })
        .await?;
        Ok(wire::UntagResourceOutput {})
    }

    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::ListTagsForResourceInput,
    ) -> Result<wire::ListTagsForResourceOutput, AwsError> {
        let tags = self.tags_of(input.resource_arn.as_deref().unwrap_or_default(), |_| {}).await?;
        Ok(wire::ListTagsForResourceOutput { tags: Some(tags) })
    }
}
