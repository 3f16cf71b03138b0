//! TagResource, UntagResource, ListTagsForResource on namespaces and services (tags live in
//! each resource's own record).

use berth_model::servicediscovery::{self as model, keys};
use berth_wire::AwsError;
use berth_wire::servicediscovery as wire;
use wire::ErrorCode;

use super::{CloudMap, codes, wire_tags};
use crate::ecs::RequestContext;
use crate::records;

/// Cloud Map's limit of tags per resource.
const MAX_TAGS: usize = 50;

/// `tags` with `add` merged in (a key given again replaces its value).
pub(super) fn merge(
    mut tags: Vec<model::Tag>,
    add: Vec<wire::Tag>,
) -> Result<Vec<model::Tag>, AwsError> {
    for (i, t) in add.into_iter().enumerate() {
        let Some(key) = t.key.filter(|k| !k.is_empty() && k.len() <= 128) else {
            return Err(codes::invalid(format!(
                "Tags[{i}].Key: a tag key is 1 to 128 characters."
            )));
        };
        if key.starts_with("aws:") {
            return Err(codes::invalid(format!("Tags[{i}].Key: the 'aws:' prefix is reserved.")));
        }
        let value = t.value.unwrap_or_default();
        if value.len() > 256 {
            return Err(codes::invalid(format!("Tags[{i}].Value: at most 256 characters.")));
        }
        match tags.iter_mut().find(|x| x.key == key) {
            Some(x) => x.value = value,
            None => tags.push(model::Tag { key, value }),
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(ErrorCode::TooManyTagsException
            .with(format!("A resource can have at most {MAX_TAGS} tags."))
            .with_member("ResourceName", ""));
    }
    Ok(tags)
}

/// What an ARN names.
enum Resource {
    Namespace(String),
    Service(String),
}

impl CloudMap {
    fn resource(&self, arn: &str) -> Result<Resource, AwsError> {
        let prefix = self.arn("");
        let not_found =
            || ErrorCode::ResourceNotFoundException.with(format!("Resource not found: {arn}"));
        let Some(rest) = arn.strip_prefix(&prefix) else {
            if arn.starts_with("arn:") {
                return Err(not_found());
            }
            return Err(codes::invalid(format!("ResourceARN: '{arn}' is not an ARN.")));
        };
        match rest.split_once('/') {
            Some(("namespace", id)) => Ok(Resource::Namespace(id.to_string())),
            Some(("service", id)) => Ok(Resource::Service(id.to_string())),
            _ => Err(not_found()),
        }
    }

    /// Rewrites the tags of `arn` with `f`; answers the tags after.
    async fn edit_tags(
        &self,
        arn: &str,
        f: impl Fn(Vec<model::Tag>) -> Result<Vec<model::Tag>, AwsError>,
    ) -> Result<Vec<model::Tag>, AwsError> {
        let not_found =
            || ErrorCode::ResourceNotFoundException.with(format!("Resource not found: {arn}"));
        match self.resource(arn)? {
            Resource::Namespace(id) => {
                let out = records::update::<model::NamespaceRecord, _>(
                    self.store(),
                    &keys::namespace(&id),
                    &format!("namespace {id}"),
                    |r| {
                        r.tags = f(std::mem::take(&mut r.tags))?;
                        Ok(())
                    },
                )
                .await?;
                out.map(|r| r.tags).ok_or_else(not_found)
            }
            Resource::Service(id) => {
                let out = records::update::<model::ServiceRecord, _>(
                    self.store(),
                    &keys::service(&id),
                    &format!("service {id}"),
                    |r| {
                        r.tags = f(std::mem::take(&mut r.tags))?;
                        Ok(())
                    },
                )
                .await?;
                out.map(|r| r.tags).ok_or_else(not_found)
            }
        }
    }
}

impl wire::TagsApi<RequestContext> for CloudMap {
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::TagResourceRequest,
    ) -> Result<wire::TagResourceResponse, AwsError> {
        let add = input.tags.unwrap_or_default();
        self.edit_tags(&input.resource_arn.unwrap_or_default(), |t| merge(t, add.clone())).await?;
        Ok(wire::TagResourceResponse {})
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagResourceRequest,
    ) -> Result<wire::UntagResourceResponse, AwsError> {
        let keys = input.tag_keys.unwrap_or_default();
        self.edit_tags(&input.resource_arn.unwrap_or_default(), |mut t| {
            t.retain(|x| !keys.contains(&x.key));
            Ok(t)
        })
        .await?;
        Ok(wire::UntagResourceResponse {})
    }

    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::ListTagsForResourceRequest,
    ) -> Result<wire::ListTagsForResourceResponse, AwsError> {
        let arn = input.resource_arn.unwrap_or_default();
        let tags = self.edit_tags(&arn, Ok).await?;
        Ok(wire::ListTagsForResourceResponse { tags: Some(wire_tags(&tags)) })
    }
}
