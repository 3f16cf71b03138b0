//! Tags: TagResource, UntagResource, ListTagsForResource, for every taggable resource Berth
//! has (clusters, task definitions and services so far). Resources are named by ARN only, as in ECS.

use berth_model::arn::ResourceRef;
use berth_model::tags;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use std::sync::Arc;

use super::RequestContext;
use super::clusters::Clusters;
use super::core::{Core, cluster_not_found};
use super::services::Services;
use super::task_definitions::TaskDefinitions;
use crate::error;

/// Tags of every taggable resource, each kept on its owner's record and edited through the
/// owner's interface.
pub struct Tags {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    task_definitions: Arc<TaskDefinitions>,
    services: Arc<Services>,
}

fn not_found(arn: &str) -> AwsError {
    ErrorCode::ResourceNotFoundException.with(format!("The specified resource is not found: {arn}"))
}

/// ListTagsForResource's answer for a missing task definition or service: its model lists no
/// ResourceNotFoundException, so it is the parameter that is invalid.
fn list_not_found(arn: &str) -> AwsError {
    error::invalid(format!("The specified resource is not found: {arn}"))
}

impl Tags {
    pub fn new(
        core: Arc<Core>,
        clusters: Arc<Clusters>,
        task_definitions: Arc<TaskDefinitions>,
        services: Arc<Services>,
    ) -> Self {
        Self { core, clusters, task_definitions, services }
    }

    fn resource(&self, arn: Option<&str>) -> Result<ResourceRef, AwsError> {
        let arn = arn.unwrap_or("");
        // A resource minted with a short ARN (a long-ARN-format account setting disabled)
        // carries no cluster, and ECS refuses to tag it.
        let short = self.core.scope.ecs_resource(arn).and_then(|r| r.split_once('/')).is_some_and(
            |(kind, rest)| {
                matches!(kind, "service" | "task" | "container-instance")
                    && !rest.is_empty()
                    && !rest.contains('/')
            },
        );
        if short {
            return Err(error::invalid("Long arn format must be used for tagging operations"));
        }
        self.core.scope.resource(arn).ok_or_else(|| {
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
                if self.clusters.live_cluster(&name).await?.is_none() {
                    return Err(cluster_not_found());
                }
                self.clusters
                    .update_cluster_record(&name, |rec| {
                        rec.tags = f(&rec.tags)?;
                        Ok(())
                    })
                    .await?;
            }
            ResourceRef::TaskDefinition { family, revision } => {
                if !self.task_definitions.update_tags(&family, revision, f).await? {
                    return Err(not_found(arn));
                }
            }
            ResourceRef::Service { cluster, name } => {
                let edited = self
                    .services
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
}

impl TagsApi<RequestContext> for Tags {
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
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

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: UntagResourceRequest,
    ) -> Result<UntagResourceResponse, AwsError> {
        let arn = input.resource_arn.unwrap_or_default();
        let r = self.resource(Some(&arn))?;
        let keys = input.tag_keys.unwrap_or_default();
        self.edit_tags(&arn, r, |existing| Ok(tags::remove(existing, &keys))).await?;
        Ok(UntagResourceResponse {})
    }

    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: ListTagsForResourceRequest,
    ) -> Result<ListTagsForResourceResponse, AwsError> {
        let arn = input.resource_arn.unwrap_or_default();
        let tags = match self.resource(Some(&arn))? {
            ResourceRef::Cluster(name) => match self.clusters.live_cluster(&name).await? {
                Some((rec, _)) => rec.tags,
                None => return Err(cluster_not_found()),
            },
            ResourceRef::TaskDefinition { family, revision } => self
                .task_definitions
                .tags(&family, revision)
                .await?
                .ok_or_else(|| list_not_found(&arn))?,
            ResourceRef::Service { cluster, name } => {
                match self.services.find_service(&cluster, &name).await? {
                    Some((rec, _, _)) => rec.tags,
                    None => return Err(list_not_found(&arn)),
                }
            }
        };
        Ok(ListTagsForResourceResponse { tags: Some(tags) })
    }
}
