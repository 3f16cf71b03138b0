//! Instance attributes: PutAttributes, DeleteAttributes, ListAttributes. Attributes live on
//! the instance record (at most 1,000), so placement sees them in the same read.

use std::collections::BTreeMap;

use berth_model::keys;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use std::sync::Arc;

use berth_store::Txn;

use super::ContainerInstances;
use super::view::instance_not_found;
use crate::ecs::RequestContext;
use crate::ecs::clusters::Clusters;
use crate::ecs::core::Core;
use crate::error;
use crate::pagination::Page;
use crate::records;

/// Owns the attributes of container instances (kept on the instance records).
pub struct Attributes {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    instances: Arc<ContainerInstances>,
}

impl Attributes {
    pub fn new(
        core: Arc<Core>,
        clusters: Arc<Clusters>,
        instances: Arc<ContainerInstances>,
    ) -> Self {
        Self { core, clusters, instances }
    }

    /// Validates an attribute of PutAttributes / DeleteAttributes and resolves its target.
    fn attribute_target(&self, cluster: &str, a: &Attribute, i: usize) -> Result<String, AwsError> {
        let name = a.name.as_deref().unwrap_or("");
        if name.is_empty() || name.len() > 128 {
            return Err(error::invalid(format!("attributes[{i}].name must be 1-128 characters.")));
        }
        if let Some(v) = &a.value
            && (v.is_empty() || v.len() > 128 || v.starts_with(' ') || v.ends_with(' '))
        {
            return Err(error::invalid(format!(
                "attributes[{i}].value must be 1-128 characters and not start or end with a space."
            )));
        }
        let target = a.target_id.as_deref().unwrap_or("");
        if a.target_type.is_none() && !target.starts_with("arn:") {
            return Err(error::invalid(format!(
                "attributes[{i}].targetType is required when targetId is not an ARN."
            )));
        }
        self.core
            .scope
            .child_id("container-instance", cluster, target)
            .map(str::to_string)
            .ok_or_else(|| instance_not_found(target))
    }

    async fn edit_instance_attributes(
        &self,
        cluster: &str,
        attrs: &[Attribute],
        put: bool,
    ) -> Result<(), AwsError> {
        if attrs.is_empty() || attrs.len() > 10 {
            return Err(error::invalid("attributes must hold between 1 and 10 attributes."));
        }
        let mut by_target: BTreeMap<String, Vec<&Attribute>> = BTreeMap::new();
        for (i, a) in attrs.iter().enumerate() {
            by_target.entry(self.attribute_target(cluster, a, i)?).or_default().push(a);
        }
        for (id, attrs) in by_target {
            let what = format!("container instance {id}");
            {
                let mut cas = records::Cas::new(&*self.core.store, &what);
                'cas: loop {
                    cas.attempt().await?;
                    let Some((mut rec, rev)) = self.instances.live_instance(cluster, &id).await?
                    else {
                        // A missing cluster is ClusterNotFoundException, as ECS answers (read
                        // only once the instance is missing).
                        self.clusters.existing_cluster(Some(cluster)).await?;
                        return Err(ErrorCode::TargetNotFoundException.with(format!(
                            "Container instance {id} not found in cluster {cluster}."
                        )));
                    };
                    for a in &attrs {
                        rec.attributes.retain(|x| x.name != a.name);
                        if put {
                            rec.attributes.push(Attribute {
                                name: a.name.clone(),
                                value: a.value.clone(),
                                target_type: None,
                                target_id: None,
                            });
                        }
                    }
                    if rec.attributes.len() > 1000 {
                        return Err(ErrorCode::AttributeLimitExceededException
                            .with("An instance can have at most 1000 attributes."));
                    }
                    rec.version += 1;
                    let key = keys::container_instance(cluster, &rec.id);
                    let txn = Txn::new().when(key.clone(), rev).put(key, records::encode(&rec));
                    if cas.commit(txn).await? {
                        break 'cas;
                    }
                }
            };
        }
        Ok(())
    }

    fn echo_attributes(&self, cluster: &str, attrs: &[Attribute]) -> Vec<Attribute> {
        attrs
            .iter()
            .map(|a| {
                let target = a.target_id.clone().unwrap_or_default();
                // As ECS echoes them: targetType only if the request gave it.
                Attribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                    target_type: a.target_type,
                    target_id: Some(if target.starts_with("arn:") {
                        target
                    } else {
                        self.core.scope.container_instance_arn(cluster, &target)
                    }),
                }
            })
            .collect()
    }
}

impl AttributesApi<RequestContext> for Attributes {
    async fn put_attributes(
        &self,
        _ctx: &RequestContext,
        input: PutAttributesRequest,
    ) -> Result<PutAttributesResponse, AwsError> {
        let cluster = self.core.cluster_name(input.cluster.as_deref())?;
        let attrs = input.attributes.unwrap_or_default();
        self.edit_instance_attributes(&cluster, &attrs, true).await?;
        Ok(PutAttributesResponse { attributes: Some(self.echo_attributes(&cluster, &attrs)) })
    }

    async fn delete_attributes(
        &self,
        _ctx: &RequestContext,
        input: DeleteAttributesRequest,
    ) -> Result<DeleteAttributesResponse, AwsError> {
        let cluster = self.core.cluster_name(input.cluster.as_deref())?;
        let attrs = input.attributes.unwrap_or_default();
        self.edit_instance_attributes(&cluster, &attrs, false).await?;
        Ok(DeleteAttributesResponse { attributes: Some(self.echo_attributes(&cluster, &attrs)) })
    }

    async fn list_attributes(
        &self,
        _ctx: &RequestContext,
        input: ListAttributesRequest,
    ) -> Result<ListAttributesResponse, AwsError> {
        let cluster = self.clusters.existing_cluster(input.cluster.as_deref()).await?;
        if input.attribute_value.is_some() && input.attribute_name.is_none() {
            return Err(error::invalid("attributeValue can only be used with attributeName."));
        }
        let page = Page::parse(input.max_results, input.next_token.as_deref(), 100, "")?;
        let mut all: Vec<(String, Attribute)> = Vec::new();
        for (rec, _) in self.instances.cluster_instances(&cluster).await? {
            for a in &rec.attributes {
                if input.attribute_name.as_ref().is_some_and(|n| a.name.as_ref() != Some(n)) {
                    continue;
                }
                if input.attribute_value.as_ref().is_some_and(|v| a.value.as_ref() != Some(v)) {
                    continue;
                }
                let sort_key = format!("{}\u{1}{}", rec.id, a.name.clone().unwrap_or_default());
                all.push((
                    sort_key,
                    // ListAttributes' answer names the target by ARN only (no targetType).
                    Attribute {
                        name: a.name.clone(),
                        value: a.value.clone(),
                        target_type: None,
                        target_id: Some(rec.arn.clone()),
                    },
                ));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let start = page.after.as_ref().map_or(0, |a| all.partition_point(|(k, _)| k <= a));
        let rest = &all[start..];
        let more = rest.len() > page.limit;
        let shown = &rest[..rest.len().min(page.limit)];
        let token =
            if more { shown.last().map(|(k, _)| crate::pagination::token(k)) } else { None };
        Ok(ListAttributesResponse {
            attributes: Some(shown.iter().map(|(_, a)| a.clone()).collect()),
            next_token: token,
        })
    }
}
