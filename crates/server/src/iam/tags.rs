//! Tag-based authorization (issue #16): the tags a request carries (`aws:RequestTag/KEY`,
//! `aws:TagKeys`) and the tags of the resources it names (`aws:ResourceTag/KEY`).
//!
//! Contract:
//! * [`request_tags`] reads the request's body as the Service Authorization Reference lists
//!   the keys: ECS `tags` (`[{key, value}]`) on CreateCluster, CreateService,
//!   RegisterTaskDefinition, RunTask, StartTask, CreateCapacityProvider, CreateTaskSet and
//!   TagResource, `tagKeys` on UntagResource; CloudWatch Logs `tags` (a map) on
//!   CreateLogGroup, TagResource and TagLogGroup, `tagKeys` on UntagResource and `tags` (a
//!   list of keys) on UntagLogGroup; ECR `tags` (`[{Key, Value}]`) on CreateRepository and
//!   TagResource, `tagKeys` on UntagResource; Secrets Manager `Tags` on CreateSecret and
//!   TagResource, `TagKeys` on UntagResource; SSM `Tags` on PutParameter and
//!   AddTagsToResource, `TagKeys` on RemoveTagsFromResource; form-encoded IAM and ELBv2
//!   `Tags.member.N.Key/Value` on every operation that carries them (IAM's Create*/Tag*,
//!   ELBv2's CreateLoadBalancer, CreateTargetGroup, CreateListener, CreateRule, AddTags) and
//!   `TagKeys.member.N` (IAM's Untag*, ELBv2's RemoveTags);
//! * a request with no tag and no tag key has no [`RequestTags`]: neither `aws:RequestTag/*`
//!   nor `aws:TagKeys` is set, so `Null` sees them missing and `ForAllValues` holds, as AWS
//!   documents. `aws:TagKeys` is one multivalued key (the tags' keys, or the keys to remove);
//! * [`tags_of`] looks up the tags of one resource by ARN in Berth's own records: ECS
//!   clusters, services, task definitions (`family:revision`), tasks, container instances
//!   and capacity providers; CloudWatch Logs log groups; ECR repositories; Secrets Manager
//!   secrets; SSM parameters; IAM users and roles. An ARN of another account, of an unknown
//!   region, service or resource type, or of a resource that does not exist has no tags
//!   (`aws:ResourceTag/*` stay missing). A task definition named by family only
//!   (`family:*`, RunTask's latest revision) has none either: the request does not name one
//!   revision.

use std::collections::BTreeMap;

use berth_model::keys;
use berth_wire::query::Form;
use serde::Deserialize;
use serde_json::Value;

use crate::App;
use crate::iam::resources::Body;
use crate::records;

/// The tags a request carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestTags {
    /// `aws:RequestTag/KEY` each.
    pub tags: Vec<(String, String)>,
    /// `aws:TagKeys`: the keys of `tags`, or the keys an untag request removes.
    pub keys: Vec<String>,
}

impl RequestTags {
    fn from_tags(tags: Vec<(String, String)>) -> Option<Self> {
        let keys = tags.iter().map(|(k, _)| k.clone()).collect();
        Self { tags, keys }.nonempty()
    }

    fn from_keys(keys: Vec<String>) -> Option<Self> {
        Self { tags: vec![], keys }.nonempty()
    }

    fn nonempty(self) -> Option<Self> {
        (!self.keys.is_empty()).then_some(self)
    }
}

/// Where a JSON operation carries its tags.
enum Shape {
    /// `[{key|Key, value|Value}]` under the member.
    List(&'static str),
    /// `{key: value}` under the member.
    Map(&'static str),
    /// `[key]` under the member: tag keys only.
    Keys(&'static str),
}

fn json_shape(service: &str, operation: &str) -> Option<Shape> {
    use Shape::*;
    Some(match (service, operation) {
        (
            "ecs",
            "CreateCluster"
            | "CreateService"
            | "RegisterTaskDefinition"
            | "RunTask"
            | "StartTask"
            | "CreateCapacityProvider"
            | "CreateTaskSet"
            | "TagResource",
        ) => List("tags"),
        ("ecs" | "ecr" | "logs", "UntagResource") => Keys("tagKeys"),
        ("logs", "CreateLogGroup" | "TagResource" | "TagLogGroup") => Map("tags"),
        ("logs", "UntagLogGroup") => Keys("tags"),
        ("ecr", "CreateRepository" | "TagResource") => List("tags"),
        ("secretsmanager", "CreateSecret" | "TagResource") => List("Tags"),
        ("secretsmanager", "UntagResource") => Keys("TagKeys"),
        ("ssm", "PutParameter" | "AddTagsToResource") => List("Tags"),
        ("ssm", "RemoveTagsFromResource") => Keys("TagKeys"),
        _ => return None,
    })
}

fn field<'v>(v: &'v Value, names: [&str; 2]) -> Option<&'v str> {
    names.iter().find_map(|n| v.get(n).and_then(Value::as_str))
}

/// The tags `body` carries for `service:operation` (see the module header).
pub(crate) fn request_tags(service: &str, operation: &str, body: Body<'_>) -> Option<RequestTags> {
    match body {
        Body::Json(b) => {
            let shape = json_shape(service, operation)?;
            let v: Value = serde_json::from_slice(b).ok()?;
            match shape {
                Shape::List(m) => RequestTags::from_tags(
                    v.get(m)?
                        .as_array()?
                        .iter()
                        .filter_map(|t| {
                            let k = field(t, ["key", "Key"])?;
                            Some((k.to_string(), field(t, ["value", "Value"])?.to_string()))
                        })
                        .collect(),
                ),
                Shape::Map(m) => RequestTags::from_tags(
                    v.get(m)?
                        .as_object()?
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect(),
                ),
                Shape::Keys(m) => RequestTags::from_keys(
                    v.get(m)?.as_array()?.iter().filter_map(|k| Some(k.as_str()?.into())).collect(),
                ),
            }
        }
        Body::Form(f) if matches!(service, "iam" | "elasticloadbalancing") => form_tags(f),
        Body::Form(_) => None,
    }
}

/// `Tags.member.N.Key/Value`, else `TagKeys.member.N`.
fn form_tags(f: &Form) -> Option<RequestTags> {
    let read = |f: &Form, k: &str| -> Result<Option<(String, String)>, berth_wire::AwsError> {
        Ok(f.get(&format!("{k}.Key"))
            .map(|key| (key.to_string(), f.get(&format!("{k}.Value")).unwrap_or("").to_string())))
    };
    if let Ok(Some(tags)) = f.list("Tags", Some("member"), read)
        && !tags.is_empty()
    {
        return RequestTags::from_tags(tags);
    }
    let keys =
        f.list("TagKeys", Some("member"), |f, k| Ok(f.get(k).map(str::to_string))).ok()??;
    RequestTags::from_keys(keys)
}

/// An ECS tag as records keep it.
#[derive(Deserialize)]
struct StoredTag {
    #[serde(alias = "Key")]
    key: Option<String>,
    #[serde(alias = "Value")]
    value: Option<String>,
}

/// Any record with ECS `tags`, read for them alone.
#[derive(Deserialize)]
struct Tagged {
    #[serde(default)]
    tags: Vec<StoredTag>,
}

/// A task record, read for its tags alone.
#[derive(Deserialize)]
struct TaggedTask {
    task: Tagged,
}

impl Tagged {
    fn pairs(self) -> Vec<(String, String)> {
        self.tags.into_iter().filter_map(|t| Some((t.key?, t.value.unwrap_or_default()))).collect()
    }
}

/// The tags of the resource `arn` names (see the module header); none when it has none or
/// Berth has no such resource.
pub(crate) async fn tags_of(app: &App, arn: &str) -> Vec<(String, String)> {
    match lookup(app, arn).await {
        Ok(Some(tags)) => tags,
        Ok(None) => vec![],
        Err(e) => {
            tracing::debug!(%arn, error = %e.message, "cannot read the resource's tags");
            vec![]
        }
    }
}

async fn lookup(
    app: &App,
    arn: &str,
) -> Result<Option<Vec<(String, String)>>, berth_wire::AwsError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, service, region, account, resource] = parts[..] else {
        return Ok(None);
    };
    if account != app.account_id {
        return Ok(None);
    }
    if service == "iam" {
        return app.iam.entity_tags(resource).await;
    }
    let Some(region) = berth_model::regions::lookup(region).filter(|r| r.partition == partition)
    else {
        return Ok(None);
    };
    match service {
        "ecs" => {
            let view = app.regions.services(region).view.clone();
            let Some((kind, rest)) = resource.split_once('/') else { return Ok(None) };
            let key = match (kind, rest.split_once('/')) {
                ("cluster", None) => keys::cluster(rest),
                ("capacity-provider", None) => keys::capacity_provider(rest),
                ("service", Some((c, n))) => keys::service(c, n),
                ("container-instance", Some((c, id))) => keys::container_instance(c, id),
                ("task", Some((c, id))) => {
                    return Ok(records::get::<TaggedTask>(&*view, &keys::task(c, id))
                        .await?
                        .map(|(t, _)| t.task.pairs()));
                }
                ("task-definition", None) => {
                    let Some((family, rev)) = rest.rsplit_once(':') else { return Ok(None) };
                    let Ok(rev) = rev.parse() else { return Ok(None) };
                    keys::task_definition(family, rev)
                }
                _ => return Ok(None),
            };
            Ok(records::get::<Tagged>(&*view, &key).await?.map(|(t, _)| t.pairs()))
        }
        "logs" => {
            let Some(name) = resource.strip_prefix("log-group:") else { return Ok(None) };
            let name = name.strip_suffix(":*").unwrap_or(name);
            Ok(app
                .logs
                .group_tags(region.name, name)
                .await
                .map(|t: BTreeMap<_, _>| t.into_iter().collect()))
        }
        "ecr" => {
            let Some(ecr) = app.ecr.as_ref() else { return Ok(None) };
            let Some(repo) = ecr.access.repository_of(arn) else { return Ok(None) };
            Ok(ecr.meta.repo(repo).await?.map(|(r, _)| r.tags))
        }
        "secretsmanager" => Ok(crate::secretsmanager::secret_tags(app, region, arn).await),
        "ssm" => {
            let Some(name) = resource.strip_prefix("parameter/") else { return Ok(None) };
            crate::ssm::parameter_tags(app, region, name).await
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
