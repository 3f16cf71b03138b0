//! Tags: TagResource, UntagResource, ListTagsForResource, for every taggable resource Berth
//! has (clusters, task definitions and services so far). Resources are named by ARN only, as in ECS.

use berth_model::arn::ResourceRef;
use berth_model::tags;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::EcsService;
use crate::error;

fn not_found(arn: &str) -> AwsError {
    ErrorCode::ResourceNotFoundException.with(format!("The specified resource is not found: {arn}"))
}

impl EcsService {
    fn resource(&self, arn: Option<&str>) -> Result<ResourceRef, AwsError> {
        let arn = arn.unwrap_or("");
        self.scope.resource(arn).ok_or_else(|| {
            error::invalid(format!(
                "resourceArn '{arn}' is not the ARN of a taggable resource of this account and region."
            ))
        })
    }

    async fn edit_tags(
        &self,
        arn: &str,
        r: ResourceRef,
        f: impl Fn(&[Tag]) -> Result<Vec<Tag>, AwsError>,
    ) -> Result<(), AwsError> {
        match r {
            ResourceRef::Cluster(name) => {
                if self.live_cluster(&name).await?.is_none() {
                    return Err(ErrorCode::ClusterNotFoundException.with("Cluster not found."));
                }
                self.update_cluster_record(&name, |rec| {
                    rec.tags = f(&rec.tags)?;
                    Ok(())
                })
                .await?;
            }
            ResourceRef::TaskDefinition { family, revision } => {
                if !self.update_task_definition_tags(&family, revision, f).await? {
                    return Err(not_found(arn));
                }
            }
            ResourceRef::Service { cluster, name } => {
                let edited = self
                    .update_service_record(&cluster, &name, |rec| {
                        rec.tags = f(&rec.tags)?;
                        Ok(())
                    })
                    .await?;
                if edited.is_none() {
                    return Err(not_found(arn));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn tag_resource_op(
        &self,
        input: TagResourceRequest,
    ) -> Result<TagResourceResponse, AwsError> {
        let arn = input.resource_arn.unwrap_or_default();
        let r = self.resource(Some(&arn))?;
        let new = input.tags.unwrap_or_default();
        tags::validate(&new, "tags").map_err(error::model)?;
        self.edit_tags(&arn, r, |existing| {
            let merged = tags::merge(existing, &new);
            if merged.len() > tags::MAX_TAGS {
                return Err(error::invalid(format!(
                    "The resource would have {} tags; at most {} are allowed.",
                    merged.len(),
                    tags::MAX_TAGS
                )));
            }
            Ok(merged)
        })
        .await?;
        Ok(TagResourceResponse {})
    }

    pub(super) async fn untag_resource_op(
        &self,
        input: UntagResourceRequest,
    ) -> Result<UntagResourceResponse, AwsError> {
        let arn = input.resource_arn.unwrap_or_default();
        let r = self.resource(Some(&arn))?;
        let keys = input.tag_keys.unwrap_or_default();
        self.edit_tags(&arn, r, |existing| Ok(tags::remove(existing, &keys))).await?;
        Ok(UntagResourceResponse {})
    }

    pub(super) async fn list_tags_for_resource_op(
        &self,
        input: ListTagsForResourceRequest,
    ) -> Result<ListTagsForResourceResponse, AwsError> {
        let arn = input.resource_arn.unwrap_or_default();
        let tags = match self.resource(Some(&arn))? {
            ResourceRef::Cluster(name) => match self.live_cluster(&name).await? {
                Some((rec, _)) => rec.tags,
                None => return Err(ErrorCode::ClusterNotFoundException.with("Cluster not found.")),
            },
            ResourceRef::TaskDefinition { family, revision } => self
                .task_definition_tags(&family, revision)
                .await?
                .ok_or_else(|| not_found(&arn))?,
            ResourceRef::Service { cluster, name } => {
                match self.find_service(&cluster, &name).await? {
                    Some((rec, _, _)) => rec.tags,
                    None => return Err(not_found(&arn)),
                }
            }
        };
        Ok(ListTagsForResourceResponse { tags: Some(tags) })
    }
}
